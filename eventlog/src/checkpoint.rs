//! The checkpoint: a durable record of the acknowledged head, kept outside the storage
//! engine's files.
//!
//! A hash chain shows a changed record but not a missing tail: a log cut short at seq N
//! verifies as well as the full one. The checkpoint is the outside witness. It says "the log
//! held at least `tree_size` records, and the last of them had hash `head_hash`", and opening
//! a store (and `oacis verify --data`) compares the log against it. The store writes it at a
//! bounded interval while appends are acknowledged ([`INTERVAL`]), at clean shutdown, and when
//! it opens.
//!
//! It is one versioned file, `checkpoint` in the data folder, made to grow into the signed
//! checkpoint of an RFC 9162-style Merkle tree: `merkle_root`, `key_id` and `signature` are
//! already fields (absent in format 1, ignored by this build). The file is two lines:
//!
//! ```text
//! {"format":"oacis-checkpoint/1","tree_size":42,"head_hash":"<64 hex>","merkle_root":null,"key_id":null,"signature":null}
//! <BLAKE3 of the first line's bytes, 64 lower-case hex digits>
//! ```
//!
//! Invariants:
//! - A checkpoint names only a durable head: it is written after the fdatasync that made
//!   `tree_size` records durable, never before.
//! - Written atomically: a temporary file, fsync, rename over `checkpoint`, fsync of the
//!   folder. A reader sees the old record or the new one, never a mix.
//! - Its own damage is detected (the checksum line) and reported, never ignored.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Hash32, Seq};
use crate::store::Head;

/// File name of the checkpoint in a data folder.
pub const FILE_NAME: &str = "checkpoint";

/// Format tag of the checkpoint this build writes.
pub const FORMAT: &str = "oacis-checkpoint/1";

/// Default detection window (`SledConfig::checkpoint_interval`): every acknowledged record is
/// in the checkpoint at most this long after its acknowledgement (in practice within three
/// quarters of it: a thread looks every quarter interval and rewrites the checkpoint when the
/// head moved and the last one is half an interval old). So at most this
/// much acknowledged history can be lost without the next open noticing.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Largest checkpoint file accepted, in bytes (a signed one stays far below).
const MAX_FILE_BYTES: u64 = 4 * 1024;

/// The record as stored, fields in file order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    tree_size: u64,
    head_hash: String,
    merkle_root: Option<String>,
    key_id: Option<String>,
    signature: Option<String>,
}

/// Path of the checkpoint in data folder `dir`.
#[must_use]
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads the checkpoint in `dir`: `None` if there is none, [`Error::HeadRecord`] if it is
/// damaged or of another format.
pub fn read(dir: &Path) -> Result<Option<Head>> {
    let file = path_in(dir);
    let bad = |problem: String| Error::HeadRecord { file: file.clone(), problem };
    let size = match std::fs::metadata(&file) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&file, e)),
    };
    if size > MAX_FILE_BYTES {
        return Err(bad(format!("{size} bytes; at most {MAX_FILE_BYTES}")));
    }
    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".into()))?;
    let Some((line, rest)) = text.split_once('\n') else { return Err(bad("no checksum line".into())) };
    if rest.strip_suffix('\n') != Some(blake3::hash(line.as_bytes()).to_hex().as_str()) {
        return Err(bad("checksum does not match".into()));
    }
    let stored: Stored = serde_json::from_str(line).map_err(|e| bad(format!("unreadable: {e}")))?;
    if stored.format != FORMAT {
        return Err(bad(format!("format {:?}; this build reads {FORMAT:?}", stored.format)));
    }
    let hash = Hash32::from_hex(&stored.head_hash).ok_or_else(|| bad("head_hash is not 64 hex digits".into()))?;
    Ok(Some(Head { seq: Seq(stored.tree_size), hash }))
}

/// Writes `head` as the checkpoint of `dir`, atomically and durably.
pub fn write(dir: &Path, head: Head) -> Result<()> {
    let stored = Stored {
        format: FORMAT.to_owned(),
        tree_size: head.seq.0,
        head_hash: head.hash.to_hex(),
        merkle_root: None,
        key_id: None,
        signature: None,
    };
    let line = serde_json::to_string(&stored)
        .map_err(|e| Error::HeadRecord { file: path_in(dir), problem: format!("cannot encode: {e}") })?;
    let text = format!("{line}\n{}\n", blake3::hash(line.as_bytes()).to_hex());
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&temporary, e))?;
    drop(file);
    let target = path_in(dir);
    std::fs::rename(&temporary, &target).map_err(|e| Error::io(&target, e))?;
    File::open(dir).and_then(|folder| folder.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes checkpoints at most twice per interval, from the store's checkpoint thread (and at
/// shutdown from the writer).
#[derive(Debug)]
pub(crate) struct Recorder {
    dir: PathBuf,
    interval: std::time::Duration,
    /// The head last written and when; the lock also keeps two writers from racing.
    last: std::sync::Mutex<(Head, std::time::Instant)>,
}

impl Recorder {
    /// A recorder for `dir`, whose checkpoint holds `written`, writing at most every `interval`.
    pub(crate) fn new(dir: PathBuf, written: Head, interval: std::time::Duration) -> Recorder {
        Recorder { dir, interval, last: std::sync::Mutex::new((written, std::time::Instant::now())) }
    }

    /// How often the checkpoint thread calls [`Recorder::record`]: a quarter interval, but not
    /// more often than every 10 ms.
    pub(crate) fn tick(&self) -> std::time::Duration {
        (self.interval / 4).max(std::time::Duration::from_millis(10))
    }

    /// Records the durable `head` if it moved and the last checkpoint is half an interval old
    /// (or always, with `force`, as at shutdown). Skips if another thread is writing one.
    pub(crate) fn record(&self, head: Head, force: bool) -> Result<()> {
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            Err(std::sync::TryLockError::WouldBlock) if !force => return Ok(()),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            }
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if head.seq <= last.0.seq || (!force && last.1.elapsed() < self.interval / 2) {
            return Ok(());
        }
        write(&self.dir, head)?;
        *last = (head, std::time::Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_checkpoint_reads_back_and_any_changed_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).expect("no file").is_none());
        let head = Head { seq: Seq(42), hash: Hash32([7; 32]) };
        write(dir.path(), head).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(head));
        let bytes = std::fs::read(path_in(dir.path())).expect("bytes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(path_in(dir.path()), &bad).expect("damage");
            assert!(matches!(read(dir.path()), Err(Error::HeadRecord { .. })), "byte {i}");
        }
    }
}
