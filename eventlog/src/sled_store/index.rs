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
//! - `commands[c]` is the outcome of the one append written under command id `c`.
//! - The index may run ahead of the durable head (the writer adds a group once applied, before
//!   its fdatasync); readers stop at the head they were given.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};

use crate::codec;
use crate::error::{Error, Result};
use crate::model::{CommandId, Seq, StreamId, Version};
use crate::store::Appended;

/// Stream and command indexes over the whole log.
#[derive(Debug, Default)]
pub(crate) struct LogIndex {
    streams: HashMap<StreamId, Vec<Seq>>,
    commands: HashMap<CommandId, Appended>,
}

impl LogIndex {
    /// Rebuilds the indexes from every stored record, checking as it goes that stream versions
    /// are contiguous and that each append's records are consecutive. `entries` yields
    /// `(seq, stored bytes)` gapless from seq 1, as `RecordIter::next_stored` does.
    pub(crate) fn build<B: AsRef<[u8]>>(entries: impl Iterator<Item = Result<(Seq, B)>>) -> Result<LogIndex> {
        let mut index = LogIndex::default();
        // The append being read: its stream (a buffer reused from append to append), command
        // and outcome so far.
        let mut stream = String::new();
        let mut current: Option<(CommandId, Appended)> = None;
        for entry in entries {
            let (seq, stored) = entry?;
            let found = codec::placement(seq, stored.as_ref())?;
            match &mut current {
                Some((command, outcome)) if *command == found.command_id && stream == found.stream => {
                    outcome.last_seq = seq;
                    outcome.version = found.version;
                }
                _ => {
                    if let Some((command, outcome)) = current.take() {
                        index.add_command(&stream, command, outcome)?;
                    }
                    stream.clear();
                    stream.push_str(found.stream);
                    current = Some((found.command_id, Appended::at(seq, found.version)));
                }
            }
            index.push_version(found.stream, seq, found.version)?;
        }
        if let Some((command, outcome)) = current {
            index.add_command(&stream, command, outcome)?;
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

    fn add_command(&mut self, stream: &str, command: CommandId, outcome: Appended) -> Result<()> {
        match self.commands.insert(command, outcome) {
            None => Ok(()),
            Some(earlier) => Err(Error::corrupt(
                outcome.first_seq,
                format!("command {command} of {stream} was already written at seq {}", earlier.first_seq),
            )),
        }
    }

    /// Records an append the writer has just applied: `outcome.first_seq..=outcome.last_seq`
    /// hold versions up to `outcome.version` of `stream`.
    pub(crate) fn add(&mut self, stream: &StreamId, command: CommandId, outcome: Appended) -> Result<()> {
        let count = outcome.last_seq.0 - outcome.first_seq.0 + 1;
        let first_version = Version(outcome.version.0 + 1 - count);
        for k in 0..count {
            self.push_version(stream.as_str(), Seq(outcome.first_seq.0 + k), Version(first_version.0 + k))?;
        }
        self.add_command(stream.as_str(), command, Appended { duplicate: true, ..outcome })
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

    /// The first append written under `command`, as a duplicate's answer.
    pub(crate) fn command(&self, command: CommandId) -> Option<Appended> {
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
        streams + table(self.commands.capacity(), size_of::<(CommandId, Appended)>())
    }
}
