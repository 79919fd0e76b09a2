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
//! - A command id is written once. When it comes again, its first append's records are read
//!   back (from sled, or from the group being staged) and compared: a true retry is answered
//!   with the first result, anything else is refused. No digest is kept in memory.
//! - A third thread keeps the checkpoint (`crate::checkpoint`): every quarter interval it
//!   records the durable head if it moved and the last checkpoint is half an interval old,
//!   and the writer records it once more when it stops. Only durable heads are recorded
//!   (`heads` is published after the fdatasync), and no append waits for a checkpoint.
//! - Seqs and stream versions are assigned by the writer thread alone, so they are gapless.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};

use super::fault::{FaultPlan, FaultSite};
use super::index::LogIndex;
use super::layout;
use crate::checkpoint::Occasion;
use crate::error::{AppendError, Error, Result};
use crate::limits::Limits;
use crate::model::{AppendMeta, Hash32, Seq, Timestamp};
use crate::staging::Staged;
use crate::store::{Appended, Head, StreamAppend};

/// Groups applied but not yet durable, waiting for the syncer.
const SYNC_QUEUE: usize = 8;

/// What a caller hears: one result per stream of its append.
pub(super) type Answer = Result<Vec<Appended>, AppendError>;

/// One caller's append (of one or more streams), waiting in the queue.
#[derive(Debug)]
pub(super) struct AppendRequest {
    pub appends: Vec<StreamAppend>,
    pub meta: AppendMeta,
    pub reply: oneshot::Sender<Answer>,
}

type Reply = (oneshot::Sender<Answer>, Answer);

/// A group applied to sled, waiting to be made durable and answered.
struct Applied {
    head: Head,
    wrote: bool,
    replies: Vec<Reply>,
}

/// Set once a write, flush or sync failed; every later append is refused.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    reason: Arc<Mutex<Option<String>>>,
    /// Woken when the failure is set, so that a wait for the head to move ends.
    heads: Arc<watch::Sender<Head>>,
}

impl Failure {
    pub(super) fn new(heads: Arc<watch::Sender<Head>>) -> Failure {
        Failure { reason: Arc::default(), heads }
    }

    pub(super) fn get(&self) -> Option<String> {
        self.reason.lock().map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    pub(super) fn set(&self, reason: String) {
        tracing::error!(error = %reason, "event log write failed; refusing further appends");
        match self.reason.lock() {
            Ok(mut slot) => *slot = Some(reason),
            Err(poisoned) => *poisoned.into_inner() = Some(reason),
        }
        self.heads.send_modify(|_| {});
    }
}

fn refuse(replies: impl IntoIterator<Item = oneshot::Sender<Answer>>, reason: &str) {
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
    pub checkpoint: Arc<super::witness::Witness>,
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
        // The checkpoint has a thread of its own, so that the durability path never waits for
        // its fsyncs; if it cannot start, appends are refused like any failure to record.
        let (stop_checkpoints, stop) = std_mpsc::channel::<()>();
        let checkpoints = {
            let syncer = syncer.clone();
            std::thread::Builder::new().name("eventlog-checkpoint".into()).spawn(move || syncer.record_heads(&stop))
        };
        let checkpoints =
            checkpoints.map_err(|e| self.failure.set(format!("cannot start the checkpoint thread: {e}"))).ok();
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
        drop(stop_checkpoints);
        if checkpoints.is_some_and(|thread| thread.join().is_err()) {
            tracing::error!("event log checkpoint thread panicked");
        }
        syncer.record_head_at_shutdown();
    }

    /// Stages and applies one group; returns what the syncer must make durable and answer,
    /// or `None` if the group was refused here.
    fn apply_group(&mut self, group: &mut Vec<AppendRequest>) -> Option<Applied> {
        if let Some(reason) = self.failure.get() {
            refuse(group.drain(..).map(|r| r.reply), &reason);
            return None;
        }
        let recorded_at = Timestamp::now().max(self.last_recorded_at);
        let mut staged = Staged::new(self.head, recorded_at);
        let mut replies = Vec::with_capacity(group.len());
        // Group commit, as Prometheus sees it (no-ops without a recorder).
        #[allow(clippy::cast_precision_loss)]
        metrics::histogram!("oacis_eventlog_group_appends").record(group.len() as f64);
        metrics::counter!("oacis_eventlog_appends_total").increment(u64::try_from(group.len()).unwrap_or(0));
        {
            let index = LogIndex::read(&self.index);
            for request in group.drain(..) {
                let AppendRequest { appends, meta, reply } = request;
                let outcome =
                    match staged.commands.get(&meta.command_id).copied().or_else(|| index.command(meta.command_id)) {
                        Some(first) => staged.repeat(first, meta.command_id, &appends, |seq| {
                            Ok(self.db.get(layout::event_key(seq))?.map(|stored| stored.to_vec()))
                        }),
                        None => staged.stage(|stream| index.version(stream), appends, meta),
                    };
                replies.push((reply, outcome));
            }
        }
        let head = staged.head;
        let wrote = head != self.head;
        if wrote {
            // The Merkle tree's leaf inputs: each stored record ends with its hash.
            let leaves: Vec<Hash32> = staged.records.iter().map(|(_, stored)| stored_hash(stored)).collect();
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
            index.add_leaves(&leaves);
            for (command, span, parts) in &staged.accepted {
                let added = parts
                    .iter()
                    .try_for_each(|(stream, first, last, version)| index.add_versions(stream, *first, *last, *version))
                    .and_then(|()| index.add_command(*command, *span));
                if let Err(e) = added {
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

/// The hash at the end of a stored record (`body || hash`), as staged by the writer.
fn stored_hash(stored: &[u8]) -> Hash32 {
    let mut hash = [0; 32];
    hash.copy_from_slice(&stored[stored.len() - 32..]);
    Hash32(hash)
}

/// Writes a group's records to sled, atomically. A lone record is a plain insert: a sled
/// batch adds a manifest to sled's log, and so a second write and `sync_file_range` to the
/// next flush, which a single-event append would pay for nothing.
fn apply(db: &sled::Db, records: Vec<(Seq, Vec<u8>)>) -> Result<()> {
    if let [(seq, value)] = records.as_slice() {
        db.insert(layout::event_key(*seq), value.as_slice())?;
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (seq, value) in records {
        batch.insert(&layout::event_key(seq), value);
    }
    Ok(db.apply_batch(batch)?)
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

    /// The checkpoint thread: every tick, records the durable head if it moved and is due,
    /// until `stop` closes. A failure to write it stops appends: the log would be running
    /// without its outside witness.
    fn record_heads(&self, stop: &std_mpsc::Receiver<()>) {
        while let Err(std_mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(self.checkpoint.recorder.tick()) {
            self.record_head();
        }
    }

    fn record_head(&self) {
        if self.failure.get().is_some() {
            return;
        }
        // Copied out first: `Failure::set` notifies through `heads`, which a borrow would block.
        let head = *self.heads.borrow();
        if let Err(e) = self.checkpoint.record(head, Occasion::Tick) {
            self.failure.set(format!("cannot record the acknowledged head: {e}"));
        }
    }

    /// Records the durable head in the checkpoint as the writer stops (unless a failure left
    /// the state on disk unknown).
    fn record_head_at_shutdown(&self) {
        if self.failure.get().is_some() {
            return;
        }
        let head = *self.heads.borrow();
        if let Err(e) = self.checkpoint.record(head, Occasion::Boundary) {
            tracing::error!(error = %e, "cannot record the acknowledged head at shutdown");
        }
    }

    /// Flush, then fdatasync: after this returns `Ok` every applied batch survives a crash or
    /// power loss (sled's flush ends in `sync_file_range`, which flushes neither the device
    /// cache nor the file's size, hence the fdatasync).
    fn sync(&self) -> Result<()> {
        let started = std::time::Instant::now();
        arrive(self.fault.as_ref(), FaultSite::Flush, &self.data_path)?;
        self.db.flush()?;
        arrive(self.fault.as_ref(), FaultSite::Sync, &self.data_path)?;
        self.data_file.sync_data().map_err(|e| Error::io(&self.data_path, e))?;
        metrics::histogram!("oacis_eventlog_sync_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}
