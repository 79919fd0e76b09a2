//! The single writer: group commit of concurrent appends.
//!
//! One thread owns every write to sled. It takes the appends waiting in the bounded queue
//! (up to `Limits::MAX_GROUP_APPENDS`), checks each against the stream versions and command
//! ids as they stand including the earlier appends of the same group, stages all accepted
//! records in one sled batch, applies it, flushes sled and fdatasyncs its data file, and only
//! then publishes the new head and answers the callers.
//!
//! Invariants:
//! - Only this thread flushes sled (concurrent flushes deadlock in sled 0.34, issue 1308;
//!   sled's own periodic flusher is disabled in `SledConfig`).
//! - A caller hears "ok" only after the fdatasync of the group that holds its records.
//! - If applying, flushing or syncing fails, nobody in the group hears "ok", and the writer
//!   refuses every later append: the store's state on disk is unknown until it is reopened.
//! - Seqs and stream versions are assigned here and nowhere else, so they are gapless.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::fault::{FaultPlan, FaultSite};
use super::layout;
use crate::codec;
use crate::error::{AppendError, Error, Result};
use crate::limits::Limits;
use crate::model::{
    AppendMeta, CommandId, ExpectedVersion, NewEvent, Record, StreamId, Timestamp, Version,
};
use crate::store::{Appended, Head};

/// One caller's append, waiting in the queue.
#[derive(Debug)]
pub(super) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub meta: AppendMeta,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

pub(super) struct Writer {
    pub db: sled::Db,
    pub data_file: File,
    pub data_path: PathBuf,
    pub head: Head,
    pub last_recorded_at: Timestamp,
    pub heads: Arc<watch::Sender<Head>>,
    pub fault: Option<Arc<FaultPlan>>,
    pub failed: Option<String>,
    /// Versions of recently written streams, so that most appends need no index lookup.
    /// Holds only durable versions; cleared when it reaches `STREAM_CACHE_ENTRIES`.
    pub versions: HashMap<StreamId, Version>,
}

/// Bound on the writer's stream-version cache.
const STREAM_CACHE_ENTRIES: usize = 100_000;

/// What the group has staged so far, seen by the later appends of the same group.
#[derive(Default)]
struct Staged {
    batch: sled::Batch,
    versions: HashMap<StreamId, Version>,
    commands: HashMap<CommandId, Appended>,
}

impl Writer {
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::with_capacity(Limits::MAX_GROUP_APPENDS);
        while let Some(first) = queue.blocking_recv() {
            group.push(first);
            while group.len() < Limits::MAX_GROUP_APPENDS {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
    }

    fn commit_group(&mut self, group: &mut Vec<AppendRequest>) {
        if let Some(reason) = &self.failed {
            for request in group.drain(..) {
                let _ = request
                    .reply
                    .send(Err(Error::WriterFailed(reason.clone()).into()));
            }
            return;
        }
        let mut staged = Staged::default();
        let mut head = self.head;
        let recorded_at = Timestamp::now().max(self.last_recorded_at);
        let mut replies = Vec::with_capacity(group.len());
        for request in group.drain(..) {
            let AppendRequest {
                stream,
                expected,
                events,
                meta,
                reply,
            } = request;
            let outcome = self.stage(
                &mut staged,
                &mut head,
                recorded_at,
                stream,
                expected,
                events,
                meta,
            );
            replies.push((reply, outcome));
        }
        if head != self.head {
            if let Err(e) = self.write_durably(std::mem::take(&mut staged.batch)) {
                let reason = e.to_string();
                tracing::error!(error = %reason, "event log write failed; refusing further appends");
                self.failed = Some(reason.clone());
                for (reply, _) in replies {
                    let _ = reply.send(Err(Error::WriterFailed(reason.clone()).into()));
                }
                return;
            }
            self.head = head;
            self.last_recorded_at = recorded_at;
            if self.versions.len() + staged.versions.len() > STREAM_CACHE_ENTRIES {
                self.versions.clear();
            }
            self.versions.extend(staged.versions);
            self.heads.send_replace(head);
        }
        for (reply, outcome) in replies {
            // A caller that stopped waiting has gone; its append stands.
            let _ = reply.send(outcome);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stage(
        &self,
        staged: &mut Staged,
        head: &mut Head,
        recorded_at: Timestamp,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        meta: AppendMeta,
    ) -> Result<Appended, AppendError> {
        if let Some(first) = self.earlier_outcome(staged, meta.command_id)? {
            return Ok(first);
        }
        let actual = match staged.versions.get(&stream) {
            Some(version) => *version,
            None => self.stream_version(&stream)?,
        };
        if !expected.admits(actual) {
            return Err(AppendError::Conflict {
                stream,
                expected,
                actual,
            });
        }
        let first_seq = head.seq.next();
        let mut version = actual;
        // One record value is reused for every event of the append, so the metadata is
        // neither cloned nor re-validated per event.
        let mut record = Record {
            seq: head.seq,
            stream,
            version,
            kind: crate::model::EventKind::placeholder(),
            schema: 0,
            recorded_at,
            meta,
            payload: Vec::new(),
            prev_hash: head.hash,
            hash: Default::default(),
        };
        for event in events {
            version = version.next();
            record.seq = head.seq.next();
            record.version = version;
            record.kind = event.kind;
            record.schema = event.schema;
            record.payload = event.payload;
            record.prev_hash = head.hash;
            let stored = codec::seal(&mut record);
            staged.batch.insert(&layout::event_key(record.seq), stored);
            *head = Head { seq: record.seq, hash: record.hash };
        }
        staged.batch.insert(
            layout::stream_key(&record.stream, version),
            &layout::encode_stream_entry(first_seq, actual.next()),
        );
        let Record { stream, meta, .. } = record;
        let outcome = Appended {
            first_seq,
            last_seq: head.seq,
            version,
            duplicate: false,
        };
        staged.batch.insert(
            &layout::command_key(meta.command_id),
            &layout::encode_outcome(&outcome),
        );
        staged.commands.insert(
            meta.command_id,
            Appended {
                duplicate: true,
                ..outcome
            },
        );
        staged.versions.insert(stream, version);
        Ok(outcome)
    }

    fn earlier_outcome(&self, staged: &Staged, id: CommandId) -> Result<Option<Appended>> {
        if let Some(outcome) = staged.commands.get(&id) {
            return Ok(Some(*outcome));
        }
        match self.db.get(layout::command_key(id))? {
            None => Ok(None),
            Some(value) => layout::decode_outcome(&value).map(Some).ok_or_else(|| {
                Error::corrupt(
                    self.head.seq,
                    format!("command index entry of {id} is malformed"),
                )
            }),
        }
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version> {
        if let Some(version) = self.versions.get(stream) {
            return Ok(*version);
        }
        match self
            .db
            .scan_prefix(layout::stream_prefix(stream))
            .next_back()
        {
            None => Ok(Version::NONE),
            Some(entry) => {
                let (key, _) = entry?;
                layout::version_of_stream_key(&key).ok_or_else(|| {
                    Error::corrupt(
                        self.head.seq,
                        format!("stream index key of {stream} is malformed"),
                    )
                })
            }
        }
    }

    fn arrive(&self, site: FaultSite) -> Result<()> {
        match &self.fault {
            Some(plan) => plan.arrive(site).map_err(|e| Error::io(&self.data_path, e)),
            None => Ok(()),
        }
    }

    /// Apply, flush, fdatasync: after this returns `Ok` the batch survives a crash or power
    /// loss (sled's flush ends in `sync_file_range`, which flushes neither the device cache
    /// nor the file's size, hence the fdatasync).
    fn write_durably(&self, batch: sled::Batch) -> Result<()> {
        self.arrive(FaultSite::Apply)?;
        self.db.apply_batch(batch)?;
        self.arrive(FaultSite::Flush)?;
        self.db.flush()?;
        self.arrive(FaultSite::Sync)?;
        self.data_file
            .sync_data()
            .map_err(|e| Error::io(&self.data_path, e))
    }
}
