//! The log's indexes, kept in memory: each stream's records by version, and each command id's
//! append.
//!
//! They are derived from the records and never stored in sled: `LogIndex::extend` rebuilds
//! them with one pass over the log when a store opens (reading only each record's placement,
//! see `codec::placement`), and the writer extends them after each group it applies. So an
//! append writes exactly its records to sled and nothing else. A clean close writes them to
//! the index snapshot beside the log (`snapshot.rs`); an open that finds a snapshot matching
//! the log reads it and folds only the records after it (`LogIndex::extend`).
//!
//! Invariants:
//! - `streams[s][v - 1]` is the seq of version `v` of stream `s`; the seqs of a stream
//!   increase, and its version is the length of its list.
//! - `commands[c]` is the seq range of the one append written under command id `c` (which
//!   may span several streams). Only the range is kept; what it wrote (streams, versions,
//!   events) is read back from the records when a command id is seen again.
//! - `tree` is the Merkle tree over every record's hash (`crate::merkle`), leaf `i` being seq
//!   `i + 1`: built in the same pass, extended with the same groups.
//! - The index may run ahead of the durable head (the writer adds a group once applied, before
//!   its fdatasync); readers stop at the head they were given.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};

use crate::codec;
use crate::error::{Error, Result};
use crate::merkle::MerkleTree;
use crate::model::{CommandId, Hash32, Seq, StreamId, Version};

pub(crate) use crate::staging::Span;

/// Stream and command indexes over the whole log.
#[derive(Debug, Default)]
pub(crate) struct LogIndex {
    /// foldhash (`hashbrown`'s own default): the writer looks both up for every append, and
    /// an open reads a million of each from the snapshot.
    streams: HashMap<StreamId, Vec<Seq>, foldhash::fast::RandomState>,
    commands: HashMap<CommandId, Span, foldhash::fast::RandomState>,
    tree: MerkleTree,
}

impl LogIndex {
    /// Folds the records after the ones this index holds into it (all of them, into an empty
    /// index), checking as it goes that stream versions are contiguous and that each
    /// command's records are consecutive. `entries` yields `(seq, stored bytes)` gapless from
    /// the seq after the tree's last leaf, as `RecordIter::next_stored` does. The index
    /// ends at an append's boundary (it is only ever taken at a durable head), so no command
    /// is split between it and `entries`.
    pub(crate) fn extend<B: AsRef<[u8]>>(self, entries: impl Iterator<Item = Result<(Seq, B)>>) -> Result<LogIndex> {
        let mut index = self;
        // The command being read and its records so far.
        let mut current: Option<(CommandId, Span)> = None;
        for entry in entries {
            let (seq, stored) = entry?;
            let found = codec::placement(seq, stored.as_ref())?;
            match &mut current {
                Some((command, span)) if *command == found.command_id => span.last = seq,
                _ => {
                    if let Some((command, span)) = current.take() {
                        index.add_command(command, span)?;
                    }
                    current = Some((found.command_id, Span { first: seq, last: seq }));
                }
            }
            index.push_version(found.stream, seq, found.version)?;
            index.tree.push(&found.hash);
        }
        if let Some((command, span)) = current {
            index.add_command(command, span)?;
        }
        Ok(index)
    }

    /// Appends the streams, the commands and the tree to `out`, in the layout of
    /// `snapshot.rs`. Streams and commands are written in the maps' order (a snapshot need
    /// not be canonical: it is read back, never compared).
    pub(crate) fn write_snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.streams.len() as u64).to_le_bytes());
        for (stream, seqs) in &self.streams {
            let name = stream.as_str().as_bytes();
            // Stream ids are at most `Limits::MAX_STREAM_ID_BYTES`, far below a u16.
            out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&(seqs.len() as u64).to_le_bytes());
            for seq in seqs {
                out.extend_from_slice(&seq.0.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.commands.len() as u64).to_le_bytes());
        for (command, span) in &self.commands {
            super::snapshot::write_command(out, command, *span);
        }
        self.tree.write_levels(out);
    }

    /// Reads what [`LogIndex::write_snapshot`] wrote, for a log whose head is at `head`:
    /// every seq must be at most `head`, each stream's seqs must increase, and the tree must
    /// hold `head` leaves.
    pub(crate) fn read_snapshot(
        reader: &mut super::snapshot::Reader<'_>,
        head: Seq,
    ) -> std::result::Result<LogIndex, super::snapshot::Unusable> {
        use super::snapshot::{read_command, read_tree, Unusable};
        let damaged = |what: String| Unusable::Damaged(what);
        let count = reader.count(2 + 8)?;
        let mut streams = HashMap::with_capacity_and_hasher(count, foldhash::fast::RandomState::default());
        for _ in 0..count {
            let len = usize::from(reader.u16()?);
            let name =
                std::str::from_utf8(reader.take(len)?).map_err(|_| damaged("a stream id is not UTF-8".into()))?;
            let id = StreamId::new(name).map_err(|e| damaged(e.to_string()))?;
            let versions = reader.count(8)?;
            let mut seqs = Vec::with_capacity(versions);
            for _ in 0..versions {
                let seq = Seq(reader.u64()?);
                if seq > head || seqs.last().is_some_and(|last| *last >= seq) || seq == Seq::ZERO {
                    return Err(damaged(format!("{name} lists seq {seq} out of order")));
                }
                seqs.push(seq);
            }
            if streams.insert(id, seqs).is_some() {
                return Err(damaged(format!("{name} is listed twice")));
            }
        }
        let count = reader.count(16 + 16)?;
        let mut commands = HashMap::with_capacity_and_hasher(count, foldhash::fast::RandomState::default());
        for _ in 0..count {
            let (command, span) = read_command(reader)?;
            if span.last > head || commands.insert(command, span).is_some() {
                return Err(damaged(format!("command {command} is listed twice or past the head")));
            }
        }
        let tree = read_tree(reader, head)?;
        Ok(LogIndex { streams, commands, tree })
    }

    fn push_version(&mut self, stream: &str, seq: Seq, version: Version) -> Result<()> {
        let seqs = match self.streams.get_mut(stream) {
            Some(seqs) => seqs,
            None => {
                let id = StreamId::new(stream).map_err(|e| Error::corrupt(seq, e.to_string()))?;
                self.streams.entry(id).or_default()
            }
        };
        let expected = Version(seqs.len() as u64 + 1);
        if version != expected {
            return Err(Error::corrupt(seq, format!("{stream} version {version} where {expected} was due")));
        }
        seqs.push(seq);
        Ok(())
    }

    /// Records that `span` holds the one append of `command`.
    pub(crate) fn add_command(&mut self, command: CommandId, span: Span) -> Result<()> {
        match self.commands.insert(command, span) {
            None => Ok(()),
            Some(earlier) => Err(Error::corrupt(
                span.first,
                format!("command {command} was already written at seq {}", earlier.first),
            )),
        }
    }

    /// Records versions `first_version..` of `stream` at the consecutive seqs `first..=last`,
    /// as the writer has just applied them.
    pub(crate) fn add_versions(
        &mut self,
        stream: &StreamId,
        first: Seq,
        last: Seq,
        first_version: Version,
    ) -> Result<()> {
        for k in 0..=(last.0 - first.0) {
            self.push_version(stream.as_str(), Seq(first.0 + k), Version(first_version.0 + k))?;
        }
        Ok(())
    }

    /// Adds the leaves of records just applied, in seq order, right after the tree's last.
    pub(crate) fn add_leaves(&mut self, hashes: &[Hash32]) {
        hashes.iter().for_each(|hash| self.tree.push(hash));
    }

    /// The Merkle tree (it may hold records not yet durable; callers stop at their head).
    pub(crate) fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The shared index for reading; a panic elsewhere cannot leave it half-changed (the
    /// writer changes it only between groups), so a poisoned lock is still read.
    pub(crate) fn read(index: &RwLock<LogIndex>) -> RwLockReadGuard<'_, LogIndex> {
        index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stream's current version (`Version::NONE` if it has no records).
    pub(crate) fn version(&self, stream: &StreamId) -> Version {
        self.streams.get(stream).map_or(Version::NONE, |seqs| Version(seqs.len() as u64))
    }

    /// The seqs of the append written under `command`, if any.
    pub(crate) fn command(&self, command: CommandId) -> Option<Span> {
        self.commands.get(&command).copied()
    }

    /// Seqs of `stream`'s versions from `from` on, at most `max`, none after `head`.
    pub(crate) fn seqs(&self, stream: &StreamId, from: Version, max: usize, head: Seq) -> Vec<(Version, Seq)> {
        let Some(seqs) = self.streams.get(stream) else {
            return Vec::new();
        };
        let skip = usize::try_from(from.0.saturating_sub(1)).unwrap_or(usize::MAX);
        seqs.iter()
            .enumerate()
            .skip(skip)
            .take_while(|(_, seq)| **seq <= head)
            .take(max)
            .map(|(i, seq)| (Version(i as u64 + 1), *seq))
            .collect()
    }

    /// Number of streams.
    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Bytes the indexes hold on the heap: every table slot and control byte, every stream
    /// name and every seq list at its capacity (the allocator's own overhead aside).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let table = |slots: usize, entry: usize| slots * (entry + 1);
        let streams = table(self.streams.capacity(), size_of::<(StreamId, Vec<Seq>)>())
            + self
                .streams
                .iter()
                .map(|(name, seqs)| name.as_str().len() + seqs.capacity() * size_of::<Seq>())
                .sum::<usize>();
        streams + table(self.commands.capacity(), size_of::<(CommandId, Span)>()) + self.tree.heap_bytes()
    }
}
