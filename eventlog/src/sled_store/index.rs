//! The log's indexes, kept in memory: each stream's records by version, and each command id's
//! append.
//!
//! They are derived from the records and never stored: `LogIndex::build` rebuilds them with
//! one pass over the log when a store opens (reading only each record's placement, see
//! `codec::placement`), and the writer extends them after each group it applies. So an append
//! writes exactly its records to sled and nothing else, and the indexes can never disagree
//! with the log on disk.
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
    streams: HashMap<StreamId, Vec<Seq>>,
    commands: HashMap<CommandId, Span>,
    tree: MerkleTree,
}

impl LogIndex {
    /// Rebuilds the indexes from every stored record, checking as it goes that stream versions
    /// are contiguous and that each command's records are consecutive. `entries` yields
    /// `(seq, stored bytes)` gapless from seq 1, as `RecordIter::next_stored` does.
    pub(crate) fn build<B: AsRef<[u8]>>(entries: impl Iterator<Item = Result<(Seq, B)>>) -> Result<LogIndex> {
        let mut index = LogIndex::default();
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
