//! Deciding one group of appends against the log as it stands: the part of group commit
//! that every backend shares.
//!
//! A backend's writer holds the head (the sled writer thread by being the only one; the
//! PostgreSQL writer by the head row's lock), and for each append of its group either stages
//! its records, answers it as a true retry of a command id seen before, or refuses it. Later
//! appends of a group see what earlier ones staged (their versions and command ids).
//!
//! Invariants:
//! - Records are staged with consecutive seqs from the head, each chained to the one before;
//!   one record value is reused for every event of an append, so metadata is neither cloned
//!   nor re-validated per event.
//! - A refused append stages nothing; its neighbours in the group are unaffected.
//! - A command id seen before is answered only from its first append's records, compared
//!   with the new request ([`CommandOutcome::is_retry_of`]).

use std::collections::HashMap;

use crate::codec;
use crate::error::{AppendError, Error, Result};
use crate::model::{AppendMeta, CommandId, EventKind, Record, Seq, StreamId, Timestamp, Version};
use crate::store::{Appended, CommandOutcome, Head, StreamAppend};

/// The seqs of one command's records, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Its first record.
    pub first: Seq,
    /// Its last record.
    pub last: Seq,
}

/// One stream's records in a staged append: the stream, its first and last seq, and the
/// version of its first record.
pub(crate) type StagedPart = (StreamId, Seq, Seq, Version);

/// What a group has staged so far, seen by the later appends of the same group.
#[derive(Debug)]
pub(crate) struct Staged {
    /// Seq of the first record staged.
    pub first_seq: Seq,
    /// Stored records (`codec::seal` output), in seq order from `first_seq`.
    pub records: Vec<(Seq, Vec<u8>)>,
    /// Each stream's version after the group's appends so far.
    pub versions: HashMap<StreamId, Version>,
    /// Command ids staged in this group.
    pub commands: HashMap<CommandId, Span>,
    /// The accepted appends, in order, for the backend's indexes once written.
    pub accepted: Vec<(CommandId, Span, Vec<StagedPart>)>,
    /// The head after the last staged record.
    pub head: Head,
    /// The instant every record of the group carries.
    pub recorded_at: Timestamp,
}

impl Staged {
    /// An empty group on top of `head`.
    pub(crate) fn new(head: Head, recorded_at: Timestamp) -> Staged {
        Staged {
            first_seq: head.seq.next(),
            records: Vec::new(),
            versions: HashMap::new(),
            commands: HashMap::new(),
            accepted: Vec::new(),
            head,
            recorded_at,
        }
    }

    /// The stored bytes of `seq` if this group staged it.
    pub(crate) fn stored(&self, seq: Seq) -> Option<&[u8]> {
        let at = seq.0.checked_sub(self.first_seq.0).and_then(|i| usize::try_from(i).ok())?;
        self.records.get(at).map(|(_, stored)| stored.as_slice())
    }

    /// Answers a command id seen before (at `first`, written earlier or staged in this group):
    /// reads its records back (from this group, else through `written`, which returns the
    /// stored bytes of a seq written before the group) and compares them with the new request.
    pub(crate) fn repeat(
        &self,
        first: Span,
        command_id: CommandId,
        appends: &[StreamAppend],
        mut written: impl FnMut(Seq) -> Result<Option<Vec<u8>>>,
    ) -> Result<Vec<Appended>, AppendError> {
        let mut records = Vec::new();
        for seq in first.first.0..=first.last.0 {
            let seq = Seq(seq);
            let record = match self.stored(seq) {
                Some(stored) => codec::decode(seq, stored)?,
                None => {
                    let stored = written(seq)?
                        .ok_or_else(|| Error::corrupt(seq, format!("record of command {command_id} missing")))?;
                    codec::decode(seq, &stored)?
                }
            };
            records.push(record);
        }
        let outcome = CommandOutcome::of_records(command_id, &records);
        if !outcome.is_retry_of(&records, appends) {
            return Err(AppendError::CommandReused { command_id, first_seq: first.first });
        }
        Ok(outcome.appends.into_iter().map(|(_, appended)| appended).collect())
    }

    /// Checks one append (every stream's expected version) against the log as it stands
    /// (`written` gives a stream's version before this group, then what this group staged)
    /// and stages its records.
    pub(crate) fn stage(
        &mut self,
        written: impl Fn(&StreamId) -> Version,
        appends: Vec<StreamAppend>,
        meta: AppendMeta,
    ) -> Result<Vec<Appended>, AppendError> {
        let mut actuals = Vec::with_capacity(appends.len());
        for part in &appends {
            let actual = self.versions.get(&part.stream).copied().unwrap_or_else(|| written(&part.stream));
            if !part.expected.admits(actual) {
                return Err(AppendError::Conflict { stream: part.stream.clone(), expected: part.expected, actual });
            }
            actuals.push(actual);
        }
        let head = &mut self.head;
        let first_seq = head.seq.next();
        let command_id = meta.command_id;
        let mut record = Record {
            seq: head.seq,
            stream: StreamId::placeholder(),
            version: Version::NONE,
            kind: EventKind::placeholder(),
            schema: 0,
            recorded_at: self.recorded_at,
            meta,
            payload: Vec::new(),
            prev_hash: head.hash,
            hash: Default::default(),
        };
        let mut outcomes = Vec::with_capacity(appends.len());
        let mut parts = Vec::with_capacity(appends.len());
        for (part, actual) in appends.into_iter().zip(actuals) {
            let part_first = head.seq.next();
            record.stream = part.stream;
            let mut version = actual;
            for event in part.events {
                version = version.next();
                record.seq = head.seq.next();
                record.version = version;
                record.kind = event.kind;
                record.schema = event.schema;
                record.payload = event.payload;
                record.prev_hash = head.hash;
                let stored = codec::seal(&mut record);
                self.records.push((record.seq, stored));
                *head = Head { seq: record.seq, hash: record.hash };
            }
            let stream = std::mem::replace(&mut record.stream, StreamId::placeholder());
            self.versions.insert(stream.clone(), version);
            parts.push((stream, part_first, head.seq, actual.next()));
            outcomes.push(Appended { first_seq: part_first, last_seq: head.seq, version, duplicate: false });
        }
        let span = Span { first: first_seq, last: head.seq };
        self.commands.insert(command_id, span);
        self.accepted.push((command_id, span, parts));
        Ok(outcomes)
    }
}
