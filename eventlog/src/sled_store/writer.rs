//! The writer: pipelined group commit of concurrent appends.
//!
//! Two threads own every write to sled. The writer thread takes the appends waiting in the
//! bounded queue (up to `Limits::MAX_GROUP_APPENDS`), checks each against the stream versions
//! and command ids as they stand, including earlier appends not yet durable, stages the
//! accepted records in one sled batch and applies it. It hands the group's answers to the
//! syncer thread, which flushes sled and fdatasyncs its data file once for every group waiting,
//! and only then publishes the new head and answers the callers. While the syncer waits on the
//! disk, the writer stages the next group.
//!
//! Invariants:
//! - Only the syncer flushes sled (concurrent flushes deadlock in sled 0.34, issue 1308;
//!   sled's own periodic flusher is disabled in `SledConfig`).
//! - A caller hears "ok" only after the fdatasync that follows its group's batch. Answers that
//!   change nothing (conflicts, repeated command ids) wait for the same point, since they may
//!   depend on groups not yet durable.
//! - Groups are answered in order; the published head only moves forward.
//! - If applying, flushing or syncing fails, nobody waiting hears "ok", and every later append
//!   is refused: the store's state on disk is unknown until it is reopened.
//! - Seqs and stream versions are assigned by the writer thread alone, so they are gapless.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::fault::{FaultPlan, FaultSite};
use super::layout;
use crate::codec;
use crate::error::{AppendError, Error, Result};
use crate::limits::Limits;
use crate::model::{AppendMeta, CommandId, ExpectedVersion, NewEvent, Record, StreamId, Timestamp, Version};
use crate::store::{Appended, Head};

/// Groups applied but not yet durable, waiting for the syncer.
const SYNC_QUEUE: usize = 8;

/// One caller's append, waiting in the queue.
#[derive(Debug)]
pub(super) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub meta: AppendMeta,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

type Reply = (oneshot::Sender<Result<Appended, AppendError>>, Result<Appended, AppendError>);

/// A group applied to sled, waiting to be made durable and answered.
struct Applied {
    head: Head,
    wrote: bool,
    replies: Vec<Reply>,
}

/// Set once a write, flush or sync failed; every later append is refused.
#[derive(Debug, Default, Clone)]
pub(super) struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    fn get(&self) -> Option<String> {
        self.0.lock().map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    fn set(&self, reason: String) {
        tracing::error!(error = %reason, "event log write failed; refusing further appends");
        match self.0.lock() {
            Ok(mut slot) => *slot = Some(reason),
            Err(poisoned) => *poisoned.into_inner() = Some(reason),
        }
    }
}

fn refuse(replies: impl IntoIterator<Item = oneshot::Sender<Result<Appended, AppendError>>>, reason: &str) {
    for reply in replies {
        let _ = reply.send(Err(Error::WriterFailed(reason.to_owned()).into()));
    }
}

pub(super) struct Writer {
    pub db: sled::Db,
    pub data_path: PathBuf,
    /// The last applied record (durable or about to be).
    pub head: Head,
    pub last_recorded_at: Timestamp,
    pub fault: Option<Arc<FaultPlan>>,
    pub failure: Failure,
    /// Versions of recently written streams, so that most appends need no index lookup.
    /// Cleared when it reaches `STREAM_CACHE_ENTRIES`.
    pub versions: HashMap<StreamId, Version>,
}

/// Makes applied groups durable and answers them.
pub(super) struct Syncer {
    pub db: sled::Db,
    pub data_file: File,
    pub data_path: PathBuf,
    pub heads: Arc<watch::Sender<Head>>,
    pub fault: Option<Arc<FaultPlan>>,
    pub failure: Failure,
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

fn arrive(fault: Option<&Arc<FaultPlan>>, site: FaultSite, path: &std::path::Path) -> Result<()> {
    match fault {
        Some(plan) => plan.arrive(site).map_err(|e| Error::io(path, e)),
        None => Ok(()),
    }
}

impl Writer {
    /// Runs the writer and its syncer until the queue closes and every group is answered.
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<AppendRequest>, syncer: Syncer) {
        let (to_syncer, applied) = std_mpsc::sync_channel(SYNC_QUEUE);
        let syncer = std::thread::Builder::new().name("eventlog-syncer".into()).spawn(move || syncer.run(applied));
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                self.failure.set(format!("cannot start the syncer thread: {e}"));
                while let Some(request) = queue.blocking_recv() {
                    refuse([request.reply], &format!("cannot start the syncer thread: {e}"));
                }
                return;
            }
        };
        let mut group = Vec::with_capacity(Limits::MAX_GROUP_APPENDS);
        while let Some(first) = queue.blocking_recv() {
            group.push(first);
            while group.len() < Limits::MAX_GROUP_APPENDS {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if let Some(applied) = self.apply_group(&mut group) {
                if let Err(unsent) = to_syncer.send(applied) {
                    refuse(unsent.0.replies.into_iter().map(|(reply, _)| reply), "the syncer thread stopped");
                }
            }
        }
        drop(to_syncer);
        if syncer.join().is_err() {
            tracing::error!("event log syncer thread panicked");
        }
    }

    /// Stages and applies one group; returns what the syncer must make durable and answer,
    /// or `None` if the group was refused here.
    fn apply_group(&mut self, group: &mut Vec<AppendRequest>) -> Option<Applied> {
        if let Some(reason) = self.failure.get() {
            refuse(group.drain(..).map(|r| r.reply), &reason);
            return None;
        }
        let mut staged = Staged::default();
        let mut head = self.head;
        let recorded_at = Timestamp::now().max(self.last_recorded_at);
        let mut replies = Vec::with_capacity(group.len());
        for request in group.drain(..) {
            let AppendRequest { stream, expected, events, meta, reply } = request;
            let outcome = self.stage(&mut staged, &mut head, recorded_at, stream, expected, events, meta);
            replies.push((reply, outcome));
        }
        let wrote = head != self.head;
        if wrote {
            let applied = arrive(self.fault.as_ref(), FaultSite::Apply, &self.data_path)
                .and_then(|()| Ok(self.db.apply_batch(std::mem::take(&mut staged.batch))?));
            if let Err(e) = applied {
                let reason = e.to_string();
                self.failure.set(reason.clone());
                refuse(replies.into_iter().map(|(reply, _)| reply), &reason);
                return None;
            }
            self.head = head;
            self.last_recorded_at = recorded_at;
            if self.versions.len() + staged.versions.len() > STREAM_CACHE_ENTRIES {
                self.versions.clear();
            }
            self.versions.extend(staged.versions);
        }
        Some(Applied { head, wrote, replies })
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
            return Err(AppendError::Conflict { stream, expected, actual });
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
        let outcome = Appended { first_seq, last_seq: head.seq, version, duplicate: false };
        staged.batch.insert(&layout::command_key(meta.command_id), &layout::encode_outcome(&outcome));
        staged.commands.insert(meta.command_id, Appended { duplicate: true, ..outcome });
        staged.versions.insert(stream, version);
        Ok(outcome)
    }

    fn earlier_outcome(&self, staged: &Staged, id: CommandId) -> Result<Option<Appended>> {
        if let Some(outcome) = staged.commands.get(&id) {
            return Ok(Some(*outcome));
        }
        match self.db.get(layout::command_key(id))? {
            None => Ok(None),
            Some(value) => layout::decode_outcome(&value)
                .map(Some)
                .ok_or_else(|| Error::corrupt(self.head.seq, format!("command index entry of {id} is malformed"))),
        }
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version> {
        if let Some(version) = self.versions.get(stream) {
            return Ok(*version);
        }
        match self.db.scan_prefix(layout::stream_prefix(stream)).next_back() {
            None => Ok(Version::NONE),
            Some(entry) => {
                let (key, _) = entry?;
                layout::version_of_stream_key(&key)
                    .ok_or_else(|| Error::corrupt(self.head.seq, format!("stream index key of {stream} is malformed")))
            }
        }
    }
}

impl Syncer {
    fn run(self, applied: std_mpsc::Receiver<Applied>) {
        let mut waiting = Vec::with_capacity(SYNC_QUEUE);
        while let Ok(first) = applied.recv() {
            waiting.push(first);
            while let Ok(next) = applied.try_recv() {
                waiting.push(next);
            }
            self.make_durable_and_answer(&mut waiting);
        }
    }

    fn make_durable_and_answer(&self, waiting: &mut Vec<Applied>) {
        let failed = self.failure.get().map(Err).unwrap_or(Ok(()));
        let durable = failed.and_then(|()| match waiting.iter().rev().find(|a| a.wrote) {
            Some(last) => self.sync().map(|()| Some(last.head)).map_err(|e| {
                let reason = e.to_string();
                self.failure.set(reason.clone());
                reason
            }),
            None => Ok(None),
        });
        match durable {
            Ok(head) => {
                if let Some(head) = head {
                    self.heads.send_replace(head);
                }
                for (reply, outcome) in waiting.drain(..).flat_map(|a| a.replies) {
                    // A caller that stopped waiting has gone; its append stands.
                    let _ = reply.send(outcome);
                }
            }
            Err(reason) => refuse(waiting.drain(..).flat_map(|a| a.replies).map(|(reply, _)| reply), &reason),
        }
    }

    /// Flush, then fdatasync: after this returns `Ok` every applied batch survives a crash or
    /// power loss (sled's flush ends in `sync_file_range`, which flushes neither the device
    /// cache nor the file's size, hence the fdatasync).
    fn sync(&self) -> Result<()> {
        arrive(self.fault.as_ref(), FaultSite::Flush, &self.data_path)?;
        self.db.flush()?;
        arrive(self.fault.as_ref(), FaultSite::Sync, &self.data_path)?;
        self.data_file.sync_data().map_err(|e| Error::io(&self.data_path, e))
    }
}
