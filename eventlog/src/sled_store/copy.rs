//! A temporary copy of a data folder, for checks that must leave the original untouched.
//!
//! sled 0.34 has no read-only mode: opening a store runs its recovery, which may write a
//! snapshot, grow or rewrite the data file, and cut a damaged log short. An auditor's check
//! must leave the evidence as it found it, so `oacis verify --data` opens a copy instead.
//!
//! Invariants: the original folder is only read (files are opened for reading and copied);
//! the copy lives in a fresh folder under the system's temporary directory (`TMPDIR`) and is
//! removed when the [`FolderCopy`] is dropped.

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
    /// Copies every file of `original` (recursively) into a new temporary folder.
    /// Errors: [`Error::Io`] naming the file that could not be read or written.
    pub fn of(original: &Path) -> Result<FolderCopy> {
        let name = format!("oacis-verify-{}-{}", std::process::id(), COPIES.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        let copy = FolderCopy { path };
        copy_tree(original, &copy.path)?;
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

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| Error::io(&source, e))?;
        if kind.is_dir() {
            std::fs::create_dir(&target).map_err(|e| Error::io(&target, e))?;
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(|e| Error::io(&source, e))?;
        }
    }
    Ok(())
}
