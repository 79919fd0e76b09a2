//! The writer: pipelined group commit of concurrent appends.
//!
//! Two threads own every write to sled. The writer thread takes the appends waiting in the
//! bounded queue (up to `Limits::MAX_GROUP_APPENDS`), checks each against the stream versions
//! and command ids as they stand, including earlier appends not yet durable, stages the
//! accepted records in one sled batch and applies it. When more appends are already waiting,
//! it hands the group's answers to the syncer thread, which flushes sled and fdatasyncs its
//! data file once for every group waiting, and only then publishes the new head and answers
//! the callers; while the syncer waits on the disk, the writer stages the next group. When
//! nothing else is waiting and no group is with the syncer, the writer makes its group durable
//! itself, which spares a lone caller one thread hand-off.
//!
//! Invariants:
//! - One flush at a time, under `Syncer::durability` (concurrent flushes deadlock in sled 0.34,
//!   issue 1308; sled's own periodic flusher is disabled in `SledConfig`).
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};

use super::fault::{FaultPlan, FaultSite};
use super::index::LogIndex;
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
    /// The stream and command indexes, shared with readers; only this thread changes them.
    pub index: Arc<RwLock<LogIndex>>,
}

/// Makes applied groups durable and answers them.
pub(super) struct Syncer {
    /// Held while making groups durable and answering them: one flush at a time.
    pub durability: Mutex<()>,
    /// Groups handed to the syncer thread and not yet answered.
    pub in_flight: AtomicUsize,
    pub db: sled::Db,
    pub data_file: File,
    pub data_path: PathBuf,
    pub heads: Arc<watch::Sender<Head>>,
    pub fault: Option<Arc<FaultPlan>>,
    pub failure: Failure,
}

/// What the group has staged so far, seen by the later appends of the same group.
#[derive(Default)]
struct Staged {
    /// Stored records by key, in seq order.
    records: Vec<([u8; 9], Vec<u8>)>,
    versions: HashMap<StreamId, Version>,
    commands: HashMap<CommandId, Appended>,
    /// The accepted appends, in order, for the index once the batch is applied.
    accepted: Vec<(StreamId, CommandId, Appended)>,
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
        let syncer = Arc::new(syncer);
        let (to_syncer, applied) = std_mpsc::sync_channel(SYNC_QUEUE);
        let thread = {
            let syncer = syncer.clone();
            std::thread::Builder::new().name("eventlog-syncer".into()).spawn(move || syncer.run(applied))
        };
        let thread = match thread {
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
        let mut waiting = None;
        while let Some(first) = waiting.take().or_else(|| queue.blocking_recv()) {
            group.push(first);
            while group.len() < Limits::MAX_GROUP_APPENDS {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let Some(applied) = self.apply_group(&mut group) else { continue };
            waiting = queue.try_recv().ok();
            if waiting.is_none() && syncer.in_flight.load(Ordering::Acquire) == 0 {
                // Nobody else is waiting and every earlier group is answered: no pipeline to
                // keep busy, so the hand-off would only add latency.
                syncer.make_durable_and_answer(&mut vec![applied]);
                continue;
            }
            syncer.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Err(unsent) = to_syncer.send(applied) {
                syncer.in_flight.fetch_sub(1, Ordering::AcqRel);
                refuse(unsent.0.replies.into_iter().map(|(reply, _)| reply), "the syncer thread stopped");
            }
        }
        drop(to_syncer);
        if thread.join().is_err() {
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
        {
            let index = LogIndex::read(&self.index);
            for request in group.drain(..) {
                let AppendRequest { stream, expected, events, meta, reply } = request;
                let outcome = stage(&index, &mut staged, &mut head, recorded_at, stream, expected, events, meta);
                replies.push((reply, outcome));
            }
        }
        let wrote = head != self.head;
        if wrote {
            let applied = arrive(self.fault.as_ref(), FaultSite::Apply, &self.data_path)
                .and_then(|()| apply(&self.db, std::mem::take(&mut staged.records)));
            if let Err(e) = applied {
                let reason = e.to_string();
                self.failure.set(reason.clone());
                refuse(replies.into_iter().map(|(reply, _)| reply), &reason);
                return None;
            }
            self.head = head;
            self.last_recorded_at = recorded_at;
            let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (stream, command, outcome) in &staged.accepted {
                if let Err(e) = index.add(stream, *command, *outcome) {
                    // The writer checked these appends against the same index: a bug, and
                    // the indexes can no longer be trusted until the store is reopened.
                    let reason = e.to_string();
                    self.failure.set(reason.clone());
                    refuse(replies.into_iter().map(|(reply, _)| reply), &reason);
                    return None;
                }
            }
        }
        Some(Applied { head, wrote, replies })
    }
}

/// Writes a group's records to sled, atomically. A lone record is a plain insert: a sled
/// batch adds a manifest to sled's log, and so a second write and `sync_file_range` to the
/// next flush, which a single-event append would pay for nothing.
fn apply(db: &sled::Db, records: Vec<([u8; 9], Vec<u8>)>) -> Result<()> {
    if let [(key, value)] = records.as_slice() {
        db.insert(key, value.as_slice())?;
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (key, value) in records {
        batch.insert(&key, value);
    }
    Ok(db.apply_batch(batch)?)
}

/// Checks one append against the log as it stands (the index plus what this group staged
/// before it) and stages its records.
#[allow(clippy::too_many_arguments)]
fn stage(
    index: &LogIndex,
    staged: &mut Staged,
    head: &mut Head,
    recorded_at: Timestamp,
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    meta: AppendMeta,
) -> Result<Appended, AppendError> {
    if let Some(first) = staged.commands.get(&meta.command_id).copied().or_else(|| index.command(meta.command_id)) {
        return Ok(first);
    }
    let actual = staged.versions.get(&stream).copied().unwrap_or_else(|| index.version(&stream));
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
        staged.records.push((layout::event_key(record.seq), stored));
        *head = Head { seq: record.seq, hash: record.hash };
    }
    let Record { stream, meta, .. } = record;
    let outcome = Appended { first_seq, last_seq: head.seq, version, duplicate: false };
    staged.commands.insert(meta.command_id, Appended { duplicate: true, ..outcome });
    staged.versions.insert(stream.clone(), version);
    staged.accepted.push((stream, meta.command_id, outcome));
    Ok(outcome)
}

impl Syncer {
    fn run(&self, applied: std_mpsc::Receiver<Applied>) {
        let mut waiting = Vec::with_capacity(SYNC_QUEUE);
        while let Ok(first) = applied.recv() {
            waiting.push(first);
            while let Ok(next) = applied.try_recv() {
                waiting.push(next);
            }
            let count = waiting.len();
            self.make_durable_and_answer(&mut waiting);
            // Only after the answers: the writer syncs inline only once this reaches zero.
            self.in_flight.fetch_sub(count, Ordering::AcqRel);
        }
    }

    fn make_durable_and_answer(&self, waiting: &mut Vec<Applied>) {
        let _one_at_a_time = self.durability.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
