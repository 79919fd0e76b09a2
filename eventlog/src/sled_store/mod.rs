//! The embedded backend: the log in a sled database in one data folder.
//!
//! Writes go through the single [`writer`] thread (group commit); reads go straight to sled
//! and stop at the durable head, the last seq whose group was flushed and fdatasynced, so no
//! reader ever sees a record that has not been acknowledged.
//!
//! Opening a store: removes torn `snap.*.generating` files that an abrupt stop can leave
//! behind (sled 0.34 would otherwise pick them up and refuse to open: sled issues 1527 and
//! 1533; they are incomplete by construction, since sled renames a snapshot only once it is
//! written), checks the store format tag, compares the log with the checkpoint (the
//! acknowledged head recorded outside sled's files, `crate::checkpoint`), verifies the chain's
//! tail, and rebuilds the in-memory indexes. A panic inside sled while the store opens a
//! damaged folder is contained and reported as [`Error::Damaged`], as is sled refusing it.
//!
//! Invariant: a log shorter than the checkpoint, or with another hash at its seq, does not
//! open, so no append can reuse an acknowledged seq; the operator decides what happens next.

pub mod closed;
mod copy;
mod fault;
mod index;
pub mod layout;
pub mod snapshot;
mod subscription;
mod witness;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};

pub use copy::FolderCopy;
pub use fault::{FaultPlan, FaultSite};
pub use subscription::SledSubscription;

use crate::checkpoint;
use crate::codec;
use crate::error::{AppendError, Error, Result};
use crate::keys::KeyStore;
use crate::limits::Limits;
use crate::merkle::{ConsistencyProof, InclusionProof, ProofError};
use crate::model::{AppendMeta, CommandId, Hash32, Record, RecordRef, Seq, StreamId, Timestamp, Version};
use crate::store::{check_append, Appended, CommandOutcome, EventStore, Head, PendingAppend, StreamAppend};
use crate::verify::{ChainCheck, VerifyReport};
use index::LogIndex;
use writer::{AppendRequest, Syncer, Writer};

/// How many records at the end of the log are re-verified every time a store opens.
pub const TAIL_CHECK_RECORDS: u64 = 1_024;

/// Where and how to open a [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// The data folder (created if missing).
    pub path: PathBuf,
    /// sled's page cache, in bytes (default 1 GiB, sled's own default).
    pub cache_capacity_bytes: u64,
    /// The detection window (default [`checkpoint::INTERVAL`], 1 s): every acknowledged
    /// record is in the checkpoint at most this long after its acknowledgement, so a damaged
    /// data file that loses acknowledged records is reported on open unless all of them were
    /// acknowledged within this long before the stop. Longer is cheaper and wider;
    /// `Duration::MAX` writes the checkpoint only on open and at clean shutdown.
    pub checkpoint_interval: std::time::Duration,
    /// How often a checkpoint is kept (appended to `checkpoints`) while the head moves
    /// (default [`checkpoint::KEEP_INTERVAL`], 10 minutes); one is also kept at open, at clean
    /// shutdown and on demand ([`SledStore::issue_checkpoint`]).
    pub checkpoint_keep_every: std::time::Duration,
    /// Failure injection, for tests.
    pub fault: Option<Arc<FaultPlan>>,
    /// The key store: with one, personal members of payloads are sealed on append
    /// ([`crate::seal`]); without, payloads are stored as given.
    pub keys: Option<Arc<KeyStore>>,
    /// Whether the read-back of the records under an index snapshot waits for
    /// [`SledStore::start_records_check`] (default: it starts at open). A server sets it so
    /// that the read-back does not take a core from its own start (reading its views).
    pub defer_records_check: bool,
}

impl SledConfig {
    /// Defaults for a data folder.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledConfig {
            path: path.into(),
            cache_capacity_bytes: 1024 * 1024 * 1024,
            checkpoint_interval: checkpoint::INTERVAL,
            checkpoint_keep_every: checkpoint::KEEP_INTERVAL,
            fault: None,
            keys: None,
            defer_records_check: false,
        }
    }
}

/// The sled-backed [`EventStore`]. Cheap to clone; the last clone dropped stops the writer.
#[derive(Debug, Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    path: PathBuf,
    /// sled's data file, named in read errors.
    data_path: PathBuf,
    failure: writer::Failure,
    queue: Option<mpsc::Sender<AppendRequest>>,
    heads: Arc<watch::Sender<Head>>,
    index: Arc<RwLock<LogIndex>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    keys: Option<Arc<KeyStore>>,
    /// Whether a batch of keys is being made ahead of time.
    refilling: Arc<std::sync::atomic::AtomicBool>,
    /// Signed checkpoints and proofs.
    witness: Arc<witness::Witness>,
    /// The key of the index snapshot's tag (`snapshot.rs`).
    snapshot_tag: [u8; 32],
    /// The check of the records an index snapshot stood for, while it runs.
    under_snapshot: Mutex<Option<UnderSnapshot>>,
    /// Its outcome: `None` while it runs.
    checked: watch::Sender<Option<std::result::Result<(), String>>>,
    /// The seq up to which the open took the indexes from the snapshot.
    from_snapshot: std::sync::atomic::AtomicU64,
}

/// The thread that reads the records an index snapshot stood for, its stop flag, and what
/// holds it back until [`SledStore::start_records_check`] (dropped: it starts).
#[derive(Debug)]
struct UnderSnapshot {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    hold: Option<std::sync::mpsc::Sender<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer after its current group; joining it releases its
        // handle on the database so that the folder can be reopened at once.
        self.queue.take();
        let check = self.under_snapshot.lock().map(|mut c| c.take()).unwrap_or(None);
        if let Some(mut check) = check {
            check.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            check.hold.take();
            // The check itself may hold the last handle when it ends.
            if check.thread.thread().id() != std::thread::current().id() {
                let _ = check.thread.join();
            }
        }
        let handle = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        let Some(handle) = handle else { return };
        if handle.join().is_err() {
            tracing::error!("event log writer thread panicked");
            return;
        }
        self.save_snapshot();
    }
}

impl Inner {
    /// Writes the index snapshot once the writer has stopped: only when no failure was
    /// recorded and the indexes hold exactly the durable head (a group applied but not made
    /// durable would otherwise be in it). A snapshot that cannot be written is only a slower
    /// next open, so the failure is logged.
    fn save_snapshot(&self) {
        let head = *self.heads.borrow();
        let index = LogIndex::read(&self.index);
        // A snapshot is written only from indexes read from the records or from a snapshot
        // whose records were all read back since.
        let checked = matches!(*self.checked.borrow(), Some(Ok(())));
        if !checked || self.failure.get().is_some() || index.tree().size() != head.seq.0 {
            return;
        }
        if let Err(e) = snapshot::save(&self.path, &self.snapshot_tag, head, &index) {
            tracing::warn!(error = %e, "the index snapshot was not written; the next open reads every record");
        }
    }
}

fn remove_torn_snapshots(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing an incomplete sled snapshot left by an abrupt stop");
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// How long `open` waits for the data folder's lock. A store dropped in this process releases
/// its lock only once sled's background threads and deferred frees let go of the file, which
/// can take a moment after the last handle is gone.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_sled(config: &SledConfig, recorded: Option<Head>) -> Result<sled::Db> {
    std::fs::create_dir_all(&config.path).map_err(|e| Error::io(&config.path, e))?;
    // Before sled's recovery, which would cut the log at damage done while it was closed.
    closed::check_and_clear(&config.path, recorded)?;
    remove_torn_snapshots(&config.path)?;
    let sled_config = sled::Config::new()
        .path(&config.path)
        .segment_size(layout::SEGMENT_SIZE)
        .cache_capacity(config.cache_capacity_bytes)
        // Flushes happen one at a time, under the syncer's lock (sled issue 1308); see `writer`.
        .flush_every_ms(None);
    let started = std::time::Instant::now();
    loop {
        match sled_config.open() {
            Ok(db) => {
                // The check above ran before sled's lock was ours: a process that held the
                // folder meanwhile may have recorded it closed since. Whatever was recorded
                // stops holding now that sled writes, so it goes.
                closed::clear(&config.path)?;
                return Ok(db);
            }
            Err(e) if e.to_string().contains("could not acquire lock") && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if e.to_string().contains("could not acquire lock") => {
                return Err(Error::Open {
                    path: config.path.clone(),
                    reason: e.to_string(),
                    advice: "Another process holds this data folder; stop it first",
                })
            }
            // sled refused its own files (its recovery found them inconsistent): damage.
            Err(e) => return Err(Error::Damaged { path: config.path.clone(), reason: e.to_string(), recorded }),
        }
    }
}

fn check_format(db: &sled::Db, path: &Path) -> Result<()> {
    match db.get(layout::FORMAT_KEY)? {
        Some(tag) if tag.as_ref() == layout::FORMAT_TAG.as_bytes() => Ok(()),
        Some(tag) if tag.as_ref() == layout::FORMAT_TAG_V1.as_bytes() => migrate_from_v1(db, path),
        Some(tag) => Err(Error::IncompatibleFormat {
            found: String::from_utf8_lossy(&tag).into_owned(),
            expected: layout::FORMAT_TAG,
        }),
        None if db.is_empty() => {
            db.insert(layout::FORMAT_KEY, layout::FORMAT_TAG.as_bytes())?;
            sync_all(db, path)
        }
        None => Err(Error::IncompatibleFormat { found: String::new(), expected: layout::FORMAT_TAG }),
    }
}

/// Flushes sled and makes its files and their directory entries durable.
fn sync_all(db: &sled::Db, path: &Path) -> Result<()> {
    db.flush()?;
    let data = path.join("db");
    File::open(&data).and_then(|file| file.sync_all()).map_err(|e| Error::io(&data, e))?;
    File::open(path).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(path, e))
}

/// Format 1 stored the stream and command indexes; format 2 rebuilds them in memory. The
/// records are unchanged, so migrating removes the index entries and then rewrites the tag.
/// Interrupted, it is simply done again on the next open.
fn migrate_from_v1(db: &sled::Db, path: &Path) -> Result<()> {
    tracing::info!(path = %path.display(), "migrating the event store from format 1 to 2: dropping stored indexes");
    for space in layout::V1_INDEX_SPACES {
        let mut batch = sled::Batch::default();
        for key in db.scan_prefix(space).keys() {
            batch.remove(key?);
        }
        db.apply_batch(batch)?;
    }
    sync_all(db, path)?;
    db.insert(layout::FORMAT_KEY, layout::FORMAT_TAG.as_bytes())?;
    sync_all(db, path)
}

/// The last stored record, decoded and hash-checked.
fn last_record(db: &sled::Db) -> Result<Option<Record>> {
    let Some(entry) = db.range(layout::event_key(Seq::ZERO).to_vec()..layout::EVENT_END.to_vec()).next_back() else {
        return Ok(None);
    };
    let (key, value) = entry?;
    let seq = layout::seq_of_event_key(&key).ok_or_else(|| Error::corrupt(Seq::ZERO, "malformed event key"))?;
    codec::decode(seq, &value).map(Some)
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl SledStore {
    /// Opens (or creates) the store in `config.path` and starts its writer.
    ///
    /// Errors, besides I/O and format errors: [`Error::HeadLost`] or [`Error::HeadChanged`]
    /// when the log holds less than, or something else than, the acknowledged head in the
    /// checkpoint; [`Error::HeadRecord`] when the checkpoint itself is damaged;
    /// [`Error::Damaged`] when sled refuses the folder's files or panics on them;
    /// [`Error::Corrupt`] when the tail of the chain or a stream's versions do not verify;
    /// [`Error::Open`] when another process holds the folder. In each case nothing is
    /// written to the log. An
    /// operator who restores a backup opens that instead; one who decides to keep a shorter
    /// log moves the `checkpoint` file aside (keeping it as evidence), and the next open
    /// starts a new one at the log's head.
    ///
    /// A folder without a checkpoint (a new store, or one made before checkpoints existed)
    /// gets one at its current head.
    pub fn open(config: SledConfig) -> Result<SledStore> {
        let recorded = checkpoint::read(&config.path)?;
        let kept = checkpoint::read_kept(&config.path)?;
        let signs = !kept.is_empty() || config.path.join(checkpoint::KEY_FILE_NAME).exists();
        if recorded.as_ref().is_some_and(|c| c.signed.is_none()) && signs {
            // Only a folder from before signed checkpoints has an unsigned one.
            return Err(Error::HeadRecord {
                file: checkpoint::path_in(&config.path),
                problem: "an unsigned (format 1) checkpoint in a folder that signs its checkpoints (a downgrade)"
                    .into(),
            });
        }
        let path = config.path.clone();
        // sled 0.34 panics on some damaged files (seen in its `serialization.rs`); damage must be
        // reported, never answered with a panic. Everything sled touches is dropped on unwind.
        let recorded_head = recorded.as_ref().map(|c| c.head);
        let store = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SledStore::open_unguarded(config, recorded, kept)
        }))
        .unwrap_or_else(|panic| {
            Err(Error::Damaged {
                path: path.clone(),
                reason: format!("panicked: {}", panic_message(panic.as_ref())),
                recorded: recorded_head,
            })
        })?;
        closed::opened(&path);
        Ok(store)
    }

    fn open_unguarded(
        config: SledConfig,
        recorded: Option<checkpoint::Checkpoint>,
        kept: Vec<checkpoint::Checkpoint>,
    ) -> Result<SledStore> {
        let db = open_sled(&config, recorded.as_ref().map(|c| c.head))?;
        if let Some(plan) = &config.fault {
            plan.arrive(FaultSite::OpenPanic).map_err(|e| Error::io(&config.path, e))?;
        }
        check_format(&db, &config.path)?;
        let last = last_record(&db)?;
        let head = last.as_ref().map_or_else(Head::default, |r| Head { seq: r.seq, hash: r.hash });
        let data_path = config.path.join("db");
        let data_file = File::open(&data_path).map_err(|e| Error::io(&data_path, e))?;
        let key_file = config.path.join(checkpoint::KEY_FILE_NAME);
        let signed_by = recorded.iter().chain(kept.iter()).find_map(|c| c.signed.as_ref()).map(|s| s.key_id.clone());
        if let (false, Some(key_id)) = (key_file.exists(), signed_by) {
            // A new key would silently stop every signature check on this folder's checkpoints.
            return Err(Error::CheckpointKey {
                file: key_file,
                problem: format!("it is missing, and the folder holds checkpoints signed by key {key_id}"),
            });
        }
        let (key, created) = checkpoint::CheckpointKey::load_or_create(&config.path)?;
        let snapshot_tag = key.derive(snapshot::TAG_CONTEXT);
        witness::check_signatures(key.public(), &config.path, recorded.as_ref(), &kept)?;
        if created {
            tracing::warn!(
                file = %config.path.join(checkpoint::KEY_FILE_NAME).display(),
                "created the checkpoint signing key; give its public key (`oacis checkpoint public-key`) to auditors"
            );
        }
        let index = Arc::new(RwLock::new(LogIndex::default()));
        let witness = Arc::new(witness::Witness {
            recorder: checkpoint::Recorder::new(
                config.path.clone(),
                Arc::new(key),
                recorded.clone().unwrap_or_else(|| checkpoint::Checkpoint::unsigned(Head::default())),
                kept.last().cloned(),
                config.checkpoint_interval,
                config.checkpoint_keep_every,
            ),
            index: index.clone(),
        });
        let (queue, queue_rx) = mpsc::channel(Limits::APPEND_QUEUE);
        let heads = Arc::new(watch::Sender::new(head));
        let failure = writer::Failure::new(heads.clone());
        let store = SledStore {
            inner: Arc::new(Inner {
                db: db.clone(),
                path: config.path.clone(),
                data_path: data_path.clone(),
                failure: failure.clone(),
                queue: Some(queue),
                heads: heads.clone(),
                index,
                writer: Mutex::new(None),
                keys: config.keys.clone(),
                refilling: Arc::default(),
                witness: witness.clone(),
                snapshot_tag,
                under_snapshot: Mutex::new(None),
                checked: watch::Sender::new(None),
                from_snapshot: 0.into(),
            }),
        };
        // A lost tail or a changed head is reported after the kept checkpoints are compared
        // (below): a history rewritten before the tail was cut is a change, not only a loss, and
        // a kept checkpoint that still matches narrows the changed range.
        let deferred = match store.check_against(recorded.as_ref().map(|c| c.head)) {
            Ok(()) => None,
            Err(e @ (Error::HeadLost { .. } | Error::HeadChanged { .. })) => Some(e),
            Err(e) => return Err(e),
        };
        store.check_tail()?;
        let (index, from_snapshot) = store.open_index(&snapshot_tag)?;
        *store.inner.index.write().unwrap_or_else(std::sync::PoisonError::into_inner) = index;
        let file = checkpoint::path_in(&config.path);
        let kept_file = checkpoint::kept_path_in(&config.path);
        let mut witnessed: Vec<_> = kept.into_iter().map(|c| (kept_file.clone(), c)).collect();
        if recorded.is_none() && head.seq > Seq::ZERO {
            tracing::warn!(head = head.seq.0, "no checkpoint in the data folder; starting one at the log's head");
        }
        witnessed.extend(recorded.map(|c| (file, c)));
        witness.check(head, &witnessed)?;
        if let Some(e) = deferred {
            return Err(match e {
                Error::HeadChanged { file, recorded, found, .. } => {
                    // Every kept checkpoint up to the head matched above.
                    let below = witnessed
                        .iter()
                        .map(|(_, c)| c.head.seq)
                        .filter(|s| *s < recorded.seq)
                        .max()
                        .unwrap_or(Seq::ZERO);
                    Error::HeadChanged { file, recorded, found, changed_from: below.next() }
                }
                other => other,
            });
        }
        witness.record(head, checkpoint::Occasion::Boundary)?;
        let writer = Writer {
            db: db.clone(),
            data_path: data_path.clone(),
            head,
            last_recorded_at: last.map_or(Timestamp(i64::MIN), |r| r.recorded_at),
            fault: config.fault.clone(),
            failure: failure.clone(),
            index: store.inner.index.clone(),
        };
        let syncer = Syncer {
            durability: Mutex::new(()),
            in_flight: 0.into(),
            db,
            data_file,
            data_path,
            heads,
            fault: config.fault,
            failure,
            checkpoint: witness,
        };
        let handle = std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run(queue_rx, syncer))
            .map_err(|e| Error::io(&config.path, e))?;
        if let Ok(mut slot) = store.inner.writer.lock() {
            *slot = Some(handle);
        }
        store.check_under_snapshot(from_snapshot, config.defer_records_check)?;
        Ok(store)
    }

    /// Writes `records` (a log from seq 1, in order) into the new, empty store of `config`,
    /// byte for byte as the writer stores them, and makes them durable; answers the head.
    /// Each record's hash and the chain are checked again as they are written. The store is
    /// not opened: the caller adds what belongs beside the log (kept checkpoints, keys) first.
    ///
    /// # Errors
    /// [`Error::Open`] if the folder already holds records; [`Error::Corrupt`] at the first
    /// record whose hash or link does not verify (the folder is then left half written: the
    /// caller restores into a fresh folder and removes it); I/O and sled errors.
    pub fn restore_log(
        config: &SledConfig,
        records: impl Iterator<Item = Result<Record>>,
        progress: &mut dyn FnMut(Seq),
    ) -> Result<Head> {
        /// Records per sled batch.
        const BATCH: usize = 4_096;
        let db = open_sled(config, None)?;
        check_format(&db, &config.path)?;
        if last_record(&db)?.is_some() {
            return Err(Error::Open {
                path: config.path.clone(),
                reason: "the folder already holds an event log".into(),
                advice: "Restore into a new, empty folder",
            });
        }
        let mut chain = ChainCheck::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for record in records {
            let mut record = record?;
            chain.check(&record)?;
            let given = record.hash;
            let stored = codec::seal(&mut record);
            if record.hash != given {
                return Err(Error::corrupt(record.seq, "hash does not match the record's body"));
            }
            batch.insert(&layout::event_key(record.seq), stored);
            pending += 1;
            if pending == BATCH {
                db.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
            progress(record.seq);
        }
        db.apply_batch(batch)?;
        sync_all(&db, &config.path)?;
        Ok(chain.report().head)
    }

    /// The data folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The public key that checks this store's checkpoints.
    #[must_use]
    pub fn checkpoint_key(&self) -> checkpoint::PublicKey {
        self.inner.witness.public_key().clone()
    }

    /// Signs `message` with the store's checkpoint key (Ed25519). Callers prefix their
    /// messages with a format tag of their own (a backup manifest does).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.inner.witness.recorder.key().sign(message)
    }

    /// The latest checkpoint (signed, at a durable head; written at most a second ago while
    /// appends are acknowledged).
    #[must_use]
    pub fn latest_checkpoint(&self) -> checkpoint::Checkpoint {
        self.inner.witness.recorder.latest()
    }

    /// Why this store refuses appends, if it does: a write, flush or sync failed, or a record
    /// under the index snapshot did not check. Appends stay refused until the store is opened
    /// again.
    #[must_use]
    pub fn refusing_appends(&self) -> Option<String> {
        self.inner.failure.get()
    }

    /// Issues a checkpoint now, at the durable head, and keeps it (unless the last kept one
    /// has this head already, which is then answered). Blocks on two fsyncs.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be written; [`Error::WriterFailed`] after a failed write.
    pub fn issue_checkpoint(&self) -> Result<checkpoint::Checkpoint> {
        if let Some(reason) = self.inner.failure.get() {
            return Err(Error::WriterFailed(reason));
        }
        self.inner.witness.record(self.head(), checkpoint::Occasion::Demand)
    }

    /// Every kept checkpoint, oldest first.
    ///
    /// # Errors
    /// As [`checkpoint::read_kept`].
    pub fn kept_checkpoints(&self) -> Result<Vec<checkpoint::Checkpoint>> {
        checkpoint::read_kept(&self.inner.path)
    }

    /// The Merkle root over the first `tree_size` records (at most the durable head).
    ///
    /// # Errors
    /// [`Error::Proof`] ([`ProofError::SizeBeyondLog`]).
    pub fn merkle_root(&self, tree_size: u64) -> Result<Hash32> {
        let durable = self.head().seq.0;
        if tree_size > durable {
            return Err(ProofError::SizeBeyondLog { size: tree_size, available: durable }.into());
        }
        Ok(LogIndex::read(&self.inner.index).tree().root(tree_size)?)
    }

    /// The inclusion proof (RFC 9162 §2.1.3) of record `seq` in the tree of `tree_size`
    /// records (at most the durable head).
    ///
    /// # Errors
    /// [`Error::Proof`] for a size beyond the durable head or a seq not in the tree (seq 0
    /// is reported as leaf index `u64::MAX`); [`Error::Corrupt`] if the record cannot be read.
    pub fn inclusion_proof(&self, seq: Seq, tree_size: u64) -> Result<InclusionProof> {
        let durable = self.head().seq;
        if tree_size > durable.0 {
            return Err(ProofError::SizeBeyondLog { size: tree_size, available: durable.0 }.into());
        }
        if seq == Seq::ZERO || seq.0 > tree_size {
            return Err(ProofError::IndexBeyondSize { index: seq.0.wrapping_sub(1), size: tree_size }.into());
        }
        let record = self.records(seq).next().ok_or_else(|| Error::corrupt(seq, "record missing"))??;
        Ok(self.inner.witness.inclusion(seq, tree_size, record.hash)?)
    }

    /// The consistency proof (RFC 9162 §2.1.4) between tree sizes `first` and `second`.
    ///
    /// # Errors
    /// [`Error::Proof`]: [`ProofError::BadSizes`] unless `0 < first <= second`,
    /// [`ProofError::SizeBeyondLog`].
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        Ok(self.inner.witness.consistency(first, second, self.head().seq)?)
    }

    /// Heap bytes held by the in-memory stream and command indexes.
    #[must_use]
    pub fn index_bytes(&self) -> usize {
        LogIndex::read(&self.inner.index).heap_bytes()
    }

    /// The indexes of the whole log: from the index snapshot and the records after it when
    /// the snapshot is sound and matches the log (its head's hash is the record's at that
    /// seq), else from every record.
    fn open_index(&self, tag_key: &[u8; 32]) -> Result<(LogIndex, Seq)> {
        let head = self.head();
        let (from, index) = match snapshot::load(&self.inner.path, tag_key) {
            Ok((at, index)) => match self.records(at.seq).next().transpose()? {
                _ if at.seq == Seq::ZERO => (Seq::FIRST, index),
                Some(record) if at.seq <= head.seq && record.hash == at.hash => (at.seq.next(), index),
                _ => {
                    tracing::warn!(
                        snapshot = at.seq.0,
                        head = head.seq.0,
                        "the index snapshot does not match the log (another log, or one restored); reading every record"
                    );
                    (Seq::FIRST, LogIndex::default())
                }
            },
            Err(snapshot::Unusable::Missing) => (Seq::FIRST, LogIndex::default()),
            Err(e) => {
                tracing::warn!(reason = %e, "the index snapshot is not usable; reading every record");
                (Seq::FIRST, LogIndex::default())
            }
        };
        let mut stored = self.records(from);
        let index = index.extend(std::iter::from_fn(|| stored.next_stored()))?;
        tracing::info!(
            records = head.seq.0,
            from_snapshot = from.0 - 1,
            streams = index.stream_count(),
            bytes = index.heap_bytes(),
            "event log indexes ready"
        );
        Ok((index, Seq(from.0 - 1)))
    }

    /// Reads back, on a thread of its own, the records `1..=upto` that an index snapshot
    /// stood for at open: each record's hash, the chain's links, seq and version contiguity
    /// ([`ChainCheck`]), and the Merkle root of their hashes against the snapshot's tree at
    /// `upto`. A difference refuses every later append, as a failed write does, with the
    /// first bad seq as the reason. The store is usable (reads and appends) meanwhile;
    /// [`SledStore::records_checked`] waits for the outcome.
    fn check_under_snapshot(&self, upto: Seq, deferred: bool) -> Result<()> {
        self.inner.from_snapshot.store(upto.0, std::sync::atomic::Ordering::Relaxed);
        if upto == Seq::ZERO {
            self.inner.checked.send_replace(Some(Ok(())));
            return Ok(());
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (inner, halt) = (Arc::downgrade(&self.inner), stop.clone());
        let records = RecordIter::new(&self.inner.db, &self.inner.data_path, Seq::FIRST, upto);
        let expected =
            LogIndex::read(&self.inner.index).tree().root(upto.0).map_err(|e| Error::corrupt(upto, e.to_string()))?;
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eventlog-snapshot-check".into())
            .spawn(move || {
                // Ends when the store lets it start (or closes).
                let _ = held.recv();
                let mut chain = ChainCheck::new();
                let mut tree = crate::merkle::MerkleTree::new();
                let mut outcome: std::result::Result<(), String> = Ok(());
                for record in records {
                    if halt.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    match record.and_then(|r| chain.check(&r).map(|()| r.hash)) {
                        Ok(hash) => tree.push(&hash),
                        Err(e) => {
                            outcome = Err(e.to_string());
                            break;
                        }
                    }
                }
                if outcome.is_ok() && tree.root(upto.0).ok() != Some(expected) {
                    outcome =
                        Err(format!("the records 1..={upto} do not have the Merkle root the index snapshot gave them"));
                }
                let Some(inner) = inner.upgrade() else { return };
                if let Err(reason) = &outcome {
                    inner.failure.set(format!("a record under the index snapshot does not check: {reason}"));
                } else {
                    tracing::info!(records = upto.0, "the records under the index snapshot check");
                }
                inner.checked.send_replace(Some(outcome));
            })
            .map_err(|e| Error::io(&self.inner.path, e))?;
        if let Ok(mut slot) = self.inner.under_snapshot.lock() {
            *slot = Some(UnderSnapshot { stop, thread, hold: deferred.then_some(hold) });
        }
        Ok(())
    }

    /// Lets the read-back of the records under the index snapshot start, when the store was
    /// opened with [`SledConfig::defer_records_check`] (else it started at open). Appends
    /// are taken meanwhile; a record found changed refuses the later ones.
    pub fn start_records_check(&self) {
        if let Ok(mut slot) = self.inner.under_snapshot.lock() {
            if let Some(check) = slot.as_mut() {
                check.hold.take();
            }
        }
    }

    /// Waits until the records an index snapshot stood for at open have been read back
    /// (at once when the open read every record). `Err` holds the first problem found;
    /// appends are refused from then on.
    ///
    /// # Errors
    /// [`Error::WriterFailed`] with the problem (a record's seq and what is wrong with it).
    pub async fn records_checked(&self) -> Result<()> {
        let mut checked = self.inner.checked.subscribe();
        let outcome = checked.wait_for(Option::is_some).await.map(|o| o.clone()).ok().flatten();
        match outcome {
            Some(Err(reason)) => Err(Error::WriterFailed(reason)),
            _ => Ok(()),
        }
    }

    /// The seq up to which this open took the indexes from the index snapshot (0: read
    /// every record).
    #[must_use]
    pub fn indexes_from_snapshot(&self) -> Seq {
        Seq(self.inner.from_snapshot.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Compares the log with the checkpoint's acknowledged head.
    fn check_against(&self, recorded: Option<Head>) -> Result<()> {
        let Some(recorded) = recorded else { return Ok(()) };
        let head = self.head();
        let file = checkpoint::path_in(&self.inner.path);
        if head.seq < recorded.seq {
            return Err(Error::HeadLost { file, recorded, found: head });
        }
        if recorded.seq == Seq::ZERO {
            return Ok(());
        }
        let found = match self.records(recorded.seq).next() {
            Some(record) => record?.hash,
            None => return Err(Error::corrupt(recorded.seq, "record missing")),
        };
        if found != recorded.hash {
            return Err(Error::HeadChanged { file, recorded, found, changed_from: Seq::FIRST });
        }
        Ok(())
    }

    fn check_tail(&self) -> Result<()> {
        let head = self.head();
        let start = Seq(head.seq.0.saturating_sub(TAIL_CHECK_RECORDS).max(1));
        let mut previous: Option<Record> = None;
        if start.0 > 1 {
            previous = self.records(Seq(start.0 - 1)).next().transpose()?;
        }
        let mut chain = previous.map_or_else(ChainCheck::new, |p| ChainCheck::after(Head { seq: p.seq, hash: p.hash }));
        for record in self.records(start) {
            chain.check(&record?)?;
        }
        Ok(())
    }

    /// Every acknowledged record from `from` on, decoded and hash-checked (not chain-checked;
    /// see [`SledStore::verify`]). Stops at the first error.
    #[must_use]
    pub fn records(&self, from: Seq) -> RecordIter {
        let from = from.max(Seq::FIRST);
        RecordIter::new(&self.inner.db, &self.inner.data_path, from, self.head().seq)
    }

    /// How many records a read of up to `max` from `from` returns (a page is sized up front:
    /// it is often thousands of records, and growing it by doubling copies them repeatedly).
    fn page_len(&self, from: Seq, max: usize) -> usize {
        let available = self.head().seq.0.saturating_sub(from.max(Seq::FIRST).0 - 1);
        max.min(Limits::MAX_READ_BATCH).min(usize::try_from(available).unwrap_or(usize::MAX))
    }

    fn read_range(&self, from: Seq, max: usize) -> Result<Vec<Record>> {
        self.read_range_with(from, max, Vec::new(), |record| record.to_record_checked())
    }

    fn read_range_with<T>(
        &self,
        from: Seq,
        max: usize,
        mut out: Vec<T>,
        mut each: impl FnMut(RecordRef<'_>) -> T,
    ) -> Result<Vec<T>> {
        let len = self.page_len(from, max);
        out.clear();
        out.reserve(len);
        let mut stored = self.records(from);
        for _ in 0..len {
            let Some(next) = stored.next_stored() else { break };
            let (seq, value) = next?;
            out.push(each(codec::decode_ref(seq, &value)?));
        }
        Ok(out)
    }

    fn read_stream_sync(&self, stream: &StreamId, from: Version, max: usize) -> Result<Vec<Record>> {
        let head = self.head().seq;
        let max = max.min(Limits::MAX_READ_BATCH);
        let wanted = LogIndex::read(&self.inner.index).seqs(stream, from.max(Version(1)), max, head);
        let mut out = Vec::with_capacity(wanted.len());
        for (version, seq) in wanted {
            let stored = self
                .inner
                .db
                .get(layout::event_key(seq))
                .map_err(|e| self.unreadable(&e))?
                .ok_or_else(|| Error::corrupt(seq, format!("indexed as {stream} v{version} but missing")))?;
            let record = codec::decode(seq, &stored)?;
            if record.stream != *stream || record.version != version {
                return Err(Error::corrupt(
                    seq,
                    format!("indexed as {stream} v{version} but is {} v{}", record.stream, record.version),
                ));
            }
            out.push(record);
        }
        Ok(out)
    }

    /// sled could not read a record of a stream. Names the data file; a read by stream does
    /// not walk the log, so no seq was checked before it (`last_good` is 0).
    fn unreadable(&self, error: &sled::Error) -> Error {
        Error::Unreadable {
            file: self.inner.data_path.clone(),
            offset: None,
            last_good: Seq::ZERO,
            reason: error.to_string(),
        }
    }

    /// Walks the whole log: decodes every record and checks its hash, the chain, and seq and
    /// stream-version contiguity. `progress` is called with each checked seq. The first
    /// problem found is returned as [`Error::Corrupt`] naming its seq.
    pub fn verify(&self, progress: &mut dyn FnMut(Seq)) -> Result<VerifyReport> {
        let mut chain = ChainCheck::new();
        for record in self.records(Seq::FIRST) {
            let record = record?;
            chain.check(&record)?;
            progress(record.seq);
        }
        Ok(chain.report())
    }
}

/// Iterator over stored records in seq order, up to a head fixed when it was made.
pub struct RecordIter {
    entries: sled::Iter,
    next: Seq,
    last: Seq,
    /// sled's data file, named if sled cannot read it.
    data_path: PathBuf,
}

impl RecordIter {
    fn new(db: &sled::Db, data_path: &Path, from: Seq, last: Seq) -> Self {
        RecordIter {
            entries: db.range(layout::event_key(from).to_vec()..layout::EVENT_END.to_vec()),
            next: from,
            last,
            data_path: data_path.to_owned(),
        }
    }

    fn fail<T>(&mut self, error: Error) -> Option<Result<T>> {
        self.next = self.last.next();
        Some(Err(error))
    }

    /// The next stored record's seq and bytes, checked to be the next seq but not decoded.
    fn next_stored(&mut self) -> Option<Result<(Seq, sled::IVec)>> {
        if self.next > self.last {
            return None;
        }
        let expected = self.next;
        let (key, value) = match self.entries.next() {
            None => return self.fail(Error::corrupt(expected, "record missing")),
            Some(Err(e)) => {
                let error = Error::Unreadable {
                    file: self.data_path.clone(),
                    offset: None,
                    last_good: Seq(expected.0 - 1),
                    reason: e.to_string(),
                };
                return self.fail(error);
            }
            Some(Ok(entry)) => entry,
        };
        match layout::seq_of_event_key(&key) {
            Some(seq) if seq == expected => {}
            Some(seq) => {
                return self.fail(Error::corrupt(expected, format!("record missing; next stored is seq {seq}")))
            }
            None => return self.fail(Error::corrupt(expected, "malformed event key")),
        }
        self.next = expected.next();
        Some(Ok((expected, value)))
    }
}

impl std::fmt::Debug for RecordIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordIter").field("next", &self.next).field("last", &self.last).finish_non_exhaustive()
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let (seq, value) = match self.next_stored()? {
            Ok(stored) => stored,
            Err(e) => return Some(Err(e)),
        };
        match codec::decode(seq, &value) {
            Ok(record) => Some(Ok(record)),
            Err(e) => self.fail(e),
        }
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|_| Error::Closed)?
}

impl EventStore for SledStore {
    type Subscription = SledSubscription;

    fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.inner.keys.as_ref()
    }

    async fn append_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<Vec<Appended>, AppendError> {
        let appends = crate::seal::seal_appends(self.inner.keys.as_ref(), &self.inner.refilling, appends).await?;
        check_append(&appends, &meta)?;
        let queue = self.inner.queue.as_ref().ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        queue.send(AppendRequest { appends, meta, reply }).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn submit_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<PendingAppend, AppendError> {
        let appends = crate::seal::seal_appends(self.inner.keys.as_ref(), &self.inner.refilling, appends).await?;
        check_append(&appends, &meta)?;
        let queue = self.inner.queue.as_ref().ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        // The queue is FIFO and the writer takes appends in queue order: once sent, this
        // append is ordered after every append sent before it.
        queue.send(AppendRequest { appends, meta, reply }).await.map_err(|_| Error::Closed)?;
        Ok(PendingAppend(Box::pin(async move { answer.await.map_err(|_| Error::Closed)? })))
    }

    async fn command_outcome(&self, command_id: CommandId) -> Result<Option<CommandOutcome>> {
        let Some(span) = LogIndex::read(&self.inner.index).command(command_id) else { return Ok(None) };
        if self.head().seq < span.last {
            // Accepted, not yet durable: wait for its group (or for the writer to fail).
            let failure = self.inner.failure.clone();
            let mut heads = self.inner.heads.subscribe();
            heads.wait_for(|head| head.seq >= span.last || failure.get().is_some()).await.map_err(|_| Error::Closed)?;
            if self.head().seq < span.last {
                return Err(Error::WriterFailed(failure.get().unwrap_or_default()));
            }
        }
        let store = self.clone();
        blocking(move || {
            let count = usize::try_from(span.last.0 - span.first.0 + 1).unwrap_or(usize::MAX);
            let records = store.records(span.first).take(count).collect::<Result<Vec<_>>>()?;
            Ok(Some(CommandOutcome::of_records(command_id, &records)))
        })
        .await
    }

    async fn read_all(&self, from: Seq, max: usize) -> Result<Vec<Record>> {
        let store = self.clone();
        blocking(move || store.read_range(from, max)).await
    }

    async fn read_all_with<T, F>(&self, from: Seq, max: usize, out: Vec<T>, each: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: FnMut(RecordRef<'_>) -> T + Send + 'static,
    {
        let store = self.clone();
        blocking(move || store.read_range_with(from, max, out, each)).await
    }

    async fn read_stream(&self, stream: &StreamId, from: Version, max: usize) -> Result<Vec<Record>> {
        let store = self.clone();
        let stream = stream.clone();
        blocking(move || store.read_stream_sync(&stream, from, max)).await
    }

    fn head(&self) -> Head {
        *self.inner.heads.borrow()
    }

    fn subscribe(&self, from: Seq) -> SledSubscription {
        SledSubscription::new(self.inner.db.clone(), self.inner.data_path.clone(), self.inner.heads.subscribe(), from)
    }
}
