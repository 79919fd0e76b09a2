//! Where a command writes a file it produces (`--out`).
//!
//! Invariants:
//! - A regular file (new, or replacing one) is written whole or not at all: into a temporary
//!   sibling `.NAME.partial-PID`, fsynced, then renamed over the target. A command that fails
//!   or is interrupted before [`Output::commit`] leaves the target as it was (the temporary is
//!   removed when the `Output` is dropped).
//! - Anything else that already exists at the path (a pipe, `/dev/stdout`, `/dev/null`, a
//!   terminal) is written in place and never replaced: renaming over a device would swap it
//!   for a regular file for every program on the machine.
//! - A symbolic link is followed: the file it names is replaced, the link stays.
//! - A folder at the path is refused with an error that names it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A file being written for a command's `--out`.
#[derive(Debug)]
pub struct Output {
    writer: BufWriter<File>,
    target: PathBuf,
    /// The temporary sibling renamed over `target` on commit; `None` when written in place.
    partial: Option<PathBuf>,
}

impl Output {
    /// Starts writing `path`.
    ///
    /// # Errors
    /// The path is a folder, its folder does not exist, or the file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let target = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_owned(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match std::fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => anyhow::bail!("{} is a folder; give a file name", path.display()),
            Ok(meta) if !meta.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .with_context(|| format!("opening {}", path.display()))?;
                return Ok(Self { writer: BufWriter::new(file), target, partial: None });
            }
            _ => {}
        }
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().with_context(|| format!("{} names no file", path.display()))?;
        let partial = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self { writer: BufWriter::new(file), target, partial: Some(partial) })
    }

    /// The writer to fill.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.writer
    }

    /// Flushes, fsyncs a regular file and renames it into place.
    ///
    /// # Errors
    /// Writing, fsync or the rename fails; a regular target is then left as it was.
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.writer.flush().with_context(|| format!("writing {}", self.target.display()))?;
        let Some(partial) = self.partial.take() else {
            return Ok(());
        };
        let result =
            self.writer.get_ref().sync_all().with_context(|| format!("syncing {}", partial.display())).and_then(|()| {
                std::fs::rename(&partial, &self.target)
                    .with_context(|| format!("renaming to {}", self.target.display()))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(partial) = self.partial.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// Writes `bytes` to `path` as [`Output`] does: whole or not at all for a regular file, in
/// place for a pipe or device.
///
/// # Errors
/// As [`Output::create`] and [`Output::commit`].
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = Output::create(path)?;
    out.writer().write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    out.commit()
}
