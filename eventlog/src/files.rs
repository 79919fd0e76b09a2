//! Files written beside the log through a temporary file and a rename (the checkpoint, the key
//! journal's rewrite, the snapshots): the temporary file is always created new.
//!
//! Invariant: a temporary name that already exists (a file left by a crash, or a symbolic link
//! planted in the data folder) is removed first, and the file is then created with
//! `O_CREAT | O_EXCL` (`create_new`), which never follows a link: no write lands anywhere but
//! in the data folder's own new file.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Creates `path` as a new, empty file for writing, removing whatever file or link had that
/// name; a link is removed, never followed.
///
/// # Errors
/// The operating system's: a directory of that name, no permission, no space.
pub fn create_fresh(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_link_in_the_way_is_replaced_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let temp = dir.path().join("snapshot.new");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        std::io::Write::write_all(&mut create_fresh(&temp).unwrap(), b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&temp).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&temp).unwrap().file_type().is_symlink());
        // A file left by a crash is replaced too.
        std::io::Write::write_all(&mut create_fresh(&temp).unwrap(), b"again").unwrap();
        assert_eq!(std::fs::read(&temp).unwrap(), b"again");
    }
}
