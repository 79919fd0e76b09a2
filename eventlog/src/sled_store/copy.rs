//! A temporary copy of a data folder, for checks that must leave the original untouched.
//!
//! sled 0.34 has no read-only mode: opening a store runs its recovery, which may write a
//! snapshot, grow or rewrite the data file, and cut a damaged log short. An auditor's check
//! must leave the evidence as it found it, so `oacis verify --data` opens a copy instead.
//!
//! Invariants: the original folder is only read (files are opened for reading and copied);
//! the copy lives in a fresh owner-only folder under the system's temporary directory
//! (`TMPDIR`) and is removed when the [`FolderCopy`] is dropped. The personal-data key store
//! (`keys/`) is never copied: no check on a copy opens sealed data, and a copy left behind by a
//! killed process must not keep keys that a later erasure destroys. Nor are snapshots (files
//! named `*.snapshot`, see `snapshot.rs`): a check reads the records themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A copy of a data folder, deleted on drop.
#[derive(Debug)]
pub struct FolderCopy {
    path: PathBuf,
}

/// Distinguishes copies made by one process.
static COPIES: AtomicU64 = AtomicU64::new(0);

impl FolderCopy {
    /// Copies every file of `original` (recursively) but the key store's folder and the
    /// snapshots into a new owner-only temporary folder.
    /// Errors: [`Error::Io`] naming the file that could not be read or written.
    pub fn of(original: &Path) -> Result<FolderCopy> {
        let name = format!("oacis-verify-{}-{}", std::process::id(), COPIES.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let mut folder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder.create(&path).map_err(|e| Error::io(&path, e))?;
        let copy = FolderCopy { path };
        for entry in std::fs::read_dir(original).map_err(|e| Error::io(original, e))? {
            let entry = entry.map_err(|e| Error::io(original, e))?;
            let name = entry.file_name();
            let snapshot = name.to_string_lossy().ends_with(super::snapshot::SUFFIX);
            if name != crate::keys::KEY_DIR && !snapshot {
                copy_entry(&entry, &copy.path)?;
            }
        }
        Ok(copy)
    }

    /// The copy's folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderCopy {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a temporary copy");
        }
    }
}

fn copy_entry(entry: &std::fs::DirEntry, to: &Path) -> Result<()> {
    let source = entry.path();
    let target = to.join(entry.file_name());
    let kind = entry.file_type().map_err(|e| Error::io(&source, e))?;
    if kind.is_dir() {
        std::fs::create_dir(&target).map_err(|e| Error::io(&target, e))?;
        for inner in std::fs::read_dir(&source).map_err(|e| Error::io(&source, e))? {
            copy_entry(&inner.map_err(|e| Error::io(&source, e))?, &target)?;
        }
    } else if kind.is_file() {
        std::fs::copy(&source, &target).map_err(|e| Error::io(&source, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_every_file_but_the_key_store_and_the_snapshots_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db").join("blobs")).unwrap();
        std::fs::write(dir.path().join("db").join("blobs").join("1"), b"blob").unwrap();
        std::fs::write(dir.path().join("checkpoint.json"), b"{}").unwrap();
        std::fs::create_dir(dir.path().join(crate::keys::KEY_DIR)).unwrap();
        std::fs::write(dir.path().join(crate::keys::KEY_DIR).join(crate::keys::JOURNAL), b"wrapped keys").unwrap();
        std::fs::write(dir.path().join("index.snapshot"), b"indexes").unwrap();
        std::fs::write(dir.path().join("views.snapshot"), b"views").unwrap();
        let copy = FolderCopy::of(dir.path()).unwrap();
        assert!(!copy.path().join("index.snapshot").exists() && !copy.path().join("views.snapshot").exists());
        assert_eq!(std::fs::read(copy.path().join("db").join("blobs").join("1")).unwrap(), b"blob");
        assert_eq!(std::fs::read(copy.path().join("checkpoint.json")).unwrap(), b"{}");
        assert!(!copy.path().join(crate::keys::KEY_DIR).exists(), "the key store is not copied");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(copy.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let path = copy.path().to_owned();
        drop(copy);
        assert!(!path.exists(), "removed on drop");
    }
}
