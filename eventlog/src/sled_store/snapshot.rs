//! The index snapshot: the in-memory indexes (`index.rs`) written beside the log at a clean
//! close, so that the next open reads them back and folds only the records after them,
//! instead of reading every record.
//!
//! The file is `<store>/index.snapshot`, all integers little-endian:
//!
//! | part | bytes |
//! |---|---|
//! | magic | `OACIS INDEX SNAPSHOT 1\n` |
//! | head | seq (u64), hash (32) |
//! | streams | count (u64); each: name length (u16), name (UTF-8), versions (u64), seqs (u64 each) |
//! | commands | count (u64); each: command id (16), first seq (u64), last seq (u64) |
//! | tree | the Merkle tree's levels (`MerkleTree::write_levels`) |
//! | tag | keyed BLAKE3 (32) of everything before, keyed by `TAG_CONTEXT` derived from the checkpoint signing key |
//!
//! Invariants:
//! - A snapshot is written only after the writer has stopped, with no failure recorded, and
//!   only when the indexes hold exactly the durable head; it is written to a temporary file,
//!   fsynced and renamed over the old one, so a crash leaves the old snapshot or the new one.
//! - A snapshot is only ever a shortcut: one that is missing, unreadable, tagged wrongly (not
//!   written with this folder's checkpoint key), ahead of the log, or whose head hash is not
//!   the log's record at that seq is set aside with a warning and the indexes are rebuilt
//!   from every record. The log is append-only, so a snapshot that matches the record at its
//!   seq describes exactly the records up to it.
//! - What an open with a snapshot does not do: read the records before the snapshot's seq
//!   again. A record whose stored hash changed under the snapshot is found by
//!   `oacis verify` (`SledStore::verify`), which reads every record, not at open. The
//!   checkpoints are still compared with the tree, and the head and the last records are
//!   still read from the log.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::merkle::MerkleTree;
use crate::model::{CommandId, Hash32, Seq};
use crate::store::Head;

use super::index::{LogIndex, Span};

/// How every snapshot's file name in a data folder ends (the views' snapshot too): copies
/// made for checks leave them out (`copy.rs`).
pub const SUFFIX: &str = ".snapshot";

/// The snapshot's file name inside the store's folder.
pub const FILE_NAME: &str = "index.snapshot";

/// What the file starts with (the format's version is its last digit).
const MAGIC: &[u8] = b"OACIS INDEX SNAPSHOT 1\n";

/// The BLAKE3 `derive_key` context of the tag's key, derived from the checkpoint key's seed.
pub(crate) const TAG_CONTEXT: &str = "oacis index snapshot tag v1";

/// The snapshot's path in the store folder `dir`.
#[must_use]
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes `index`, which holds exactly the records up to `head`, to `dir`'s snapshot.
pub(crate) fn save(dir: &Path, tag_key: &[u8; 32], head: Head, index: &LogIndex) -> Result<()> {
    let mut bytes = Vec::with_capacity(index.heap_bytes() / 2);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&head.seq.0.to_le_bytes());
    bytes.extend_from_slice(&head.hash.0);
    index.write_snapshot(&mut bytes);
    let tag = blake3::keyed_hash(tag_key, &bytes);
    bytes.extend_from_slice(tag.as_bytes());
    let path = path_in(dir);
    let temp = dir.join(format!("{FILE_NAME}.new"));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| Error::io(&p, e)
    };
    let mut file = crate::files::create_fresh(&temp).map_err(io(&temp))?;
    file.write_all(&bytes).map_err(io(&temp))?;
    file.sync_data().map_err(io(&temp))?;
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// Why a snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    /// There is none.
    #[error("there is none")]
    Missing,
    /// It could not be read, or its bytes are not a snapshot.
    #[error("{0}")]
    Damaged(String),
}

/// Reads `dir`'s snapshot: the head it was written at and the indexes up to it. The caller
/// still checks that head against the log.
pub(crate) fn load(dir: &Path, tag_key: &[u8; 32]) -> std::result::Result<(Head, LogIndex), Unusable> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Damaged(format!("unreadable: {e}"))),
    };
    let damaged = |what: &str| Unusable::Damaged(what.to_owned());
    let Some(body_len) = bytes.len().checked_sub(32) else { return Err(damaged("too short")) };
    let (body, tag) = bytes.split_at(body_len);
    // Compared in constant time by `blake3::Hash`'s `PartialEq`.
    if blake3::keyed_hash(tag_key, body) != blake3::Hash::from_bytes(tag.try_into().map_err(|_| damaged("no tag"))?) {
        return Err(damaged("its tag does not match this folder's checkpoint key"));
    }
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| damaged("not an index snapshot of this format"))?;
    let mut reader = Reader(rest);
    let seq = Seq(reader.u64()?);
    let hash = Hash32(reader.array()?);
    let index = LogIndex::read_snapshot(&mut reader, seq)?;
    if !reader.0.is_empty() {
        return Err(damaged("bytes after the tree"));
    }
    Ok((Head { seq, hash }, index))
}

/// A cursor over a snapshot's bytes; running out is [`Unusable::Damaged`].
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], Unusable> {
        if self.0.len() < n {
            return Err(Unusable::Damaged("cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], Unusable> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// The next little-endian u64.
    pub(crate) fn u64(&mut self) -> std::result::Result<u64, Unusable> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next little-endian u16.
    pub(crate) fn u16(&mut self) -> std::result::Result<u16, Unusable> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `each` bytes, checked against what is left (so a damaged
    /// count cannot ask for a huge allocation).
    pub(crate) fn count(&mut self, each: usize) -> std::result::Result<usize, Unusable> {
        let n = usize::try_from(self.u64()?).map_err(|_| Unusable::Damaged("count too large".into()))?;
        if n.checked_mul(each).is_none_or(|bytes| bytes > self.0.len()) {
            return Err(Unusable::Damaged("count larger than the file".into()));
        }
        Ok(n)
    }
}

/// Writes a command's entry.
pub(crate) fn write_command(out: &mut Vec<u8>, command: &CommandId, span: Span) {
    out.extend_from_slice(command.0.as_bytes());
    out.extend_from_slice(&span.first.0.to_le_bytes());
    out.extend_from_slice(&span.last.0.to_le_bytes());
}

/// Reads a command's entry.
pub(crate) fn read_command(reader: &mut Reader<'_>) -> std::result::Result<(CommandId, Span), Unusable> {
    let id = CommandId(uuid::Uuid::from_bytes(reader.array()?));
    let first = Seq(reader.u64()?);
    let last = Seq(reader.u64()?);
    if first > last || first == Seq::ZERO {
        return Err(Unusable::Damaged(format!("command {id} has the range {first}..{last}")));
    }
    Ok((id, Span { first, last }))
}

/// Reads a tree's levels, which must hold `size` leaves.
pub(crate) fn read_tree(reader: &mut Reader<'_>, size: Seq) -> std::result::Result<MerkleTree, Unusable> {
    let tree = MerkleTree::read_levels(&mut reader.0)
        .ok_or_else(|| Unusable::Damaged("its Merkle tree is not well formed".into()))?;
    if tree.size() != size.0 {
        return Err(Unusable::Damaged(format!("its Merkle tree has {} leaves for seq {size}", tree.size())));
    }
    Ok(tree)
}
