//! Backups taken while the server runs (`runBackup`): one job at a time, on a thread of its
//! own, into the folder given by `--backup-dir`, without stopping writes.
//!
//! A job backs up exactly the durable head at its start (it issues and keeps a checkpoint
//! there, see `oacis_eventlog::backup::write_backup`); appends go on meanwhile and land in the
//! next backup. An incremental job continues the newest backup of this store in the folder
//! (the largest `last_seq` whose `store` is this log's), or makes a full one if there is none.
//!
//! Invariants: at most one job runs; a job's backup folder appears only complete (temporary
//! folder, fsync, rename); progress is the number of records written so far.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use oacis_eventlog::backup::{self, Manifest};
use oacis_eventlog::{EventStore, Seq, SledStore};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Writing.
    Running,
    /// The backup is complete.
    Done,
    /// It failed; nothing was left in the folder.
    Failed,
}

/// A backup job, as last seen.
#[derive(Debug, Clone)]
pub struct Job {
    /// The backup's folder name in the backup folder.
    pub name: String,
    /// Whether it continues an earlier backup.
    pub incremental: bool,
    /// Records written so far.
    pub done: u64,
    /// Records to write.
    pub total: u64,
    /// Where it stands.
    pub state: JobState,
    /// Why it failed.
    pub error: Option<String>,
    /// The manifest, once done.
    pub manifest: Option<Manifest>,
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No `--backup-dir`.
    #[error("backups are not configured: start the server with --backup-dir DIR")]
    NotConfigured,
    /// One is running.
    #[error("backup {0} is still running")]
    Running(String),
    /// Nothing was appended since the newest backup (or the log is empty).
    #[error("nothing to back up: the log's head is seq {0}, already in the newest backup")]
    NothingNew(u64),
    /// The log is on PostgreSQL: back it up with the database's own tools (`pg_basebackup`
    /// with WAL archiving) and keep `oacis export` files for a portable, hash-checked copy.
    #[error("online backups are taken of the embedded store only; this log is on PostgreSQL: use pg_basebackup with WAL archiving, and oacis export")]
    NotEmbedded,
    /// The folder cannot be read or created.
    #[error("the backup folder: {0}")]
    Folder(String),
}

/// The backups of one server.
#[derive(Debug)]
pub struct Backups {
    dir: Option<PathBuf>,
    job: Arc<Mutex<Option<Job>>>,
}

impl Backups {
    /// Backups into `dir` (none configured: every start is refused).
    #[must_use]
    pub fn new(dir: Option<PathBuf>) -> Backups {
        Backups { dir, job: Arc::new(Mutex::new(None)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The running or last job.
    #[must_use]
    pub fn job(&self) -> Option<Job> {
        self.lock().clone()
    }

    /// Every complete backup in the folder with its manifest, oldest head first (folders
    /// without a readable manifest are skipped).
    ///
    /// # Errors
    /// [`StartError::NotConfigured`], [`StartError::Folder`].
    pub fn list(&self) -> Result<Vec<(String, Manifest)>, StartError> {
        let dir = self.dir.as_ref().ok_or(StartError::NotConfigured)?;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StartError::Folder(e.to_string())),
        };
        let mut found: Vec<(String, Manifest)> = entries
            .filter_map(Result::ok)
            .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|entry| {
                let manifest = Manifest::read(&entry.path()).ok()?;
                Some((entry.file_name().to_string_lossy().into_owned(), manifest))
            })
            .collect();
        found.sort_by(|a, b| (a.1.last_seq, &a.0).cmp(&(b.1.last_seq, &b.0)));
        Ok(found)
    }

    /// The newest backup in the folder that continues this log as it stands: signed by this
    /// store's key, of this store, and ending at a record the log holds with the same hash.
    /// Anything else in the folder (a copy from elsewhere, a changed manifest, a backup of a
    /// log since restored from an older point) is passed over.
    fn newest_of(&self, store: &SledStore) -> Result<Option<Manifest>, StartError> {
        let key = store.checkpoint_key();
        let store_id = store.records(Seq::FIRST).next().and_then(Result::ok).map(|r| r.hash);
        let head = store.head().seq;
        let continues = |m: &Manifest| {
            let signed = oacis_eventlog::checkpoint::decode_hex::<64>(&m.signature)
                .is_some_and(|signature| key.verifies(&m.signed_bytes(), &signature));
            let in_log = m.last_seq <= head.0
                && store.records(Seq(m.last_seq)).next().and_then(Result::ok).is_some_and(|r| r.hash == m.head_hash);
            signed && Some(m.store) == store_id && in_log
        };
        let dir = self.dir.as_ref().ok_or(StartError::NotConfigured)?;
        let intact = |name: &str, m: &Manifest| oacis_eventlog::backup::check_files(&dir.join(name), m).is_ok();
        Ok(self.list()?.into_iter().rev().find(|(name, m)| continues(m) && intact(name, m)).map(|(_, m)| m))
    }

    /// Starts a job on `store`: incremental on the newest backup of this store in the folder
    /// when `incremental` (full if there is none), else full. Answers the job as started.
    ///
    /// # Errors
    /// [`StartError`]: not configured, one running, an unusable folder.
    pub fn start(&self, store: &SledStore, incremental: bool) -> Result<Job, StartError> {
        let dir = self.dir.clone().ok_or(StartError::NotConfigured)?;
        std::fs::create_dir_all(&dir).map_err(|e| StartError::Folder(format!("{}: {e}", dir.display())))?;
        let mut slot = self.lock();
        if let Some(job) = slot.as_ref().filter(|j| j.state == JobState::Running) {
            return Err(StartError::Running(job.name.clone()));
        }
        let previous = if incremental { self.newest_of(store)? } else { None };
        let stamp =
            oacis_eventlog::Timestamp::now().to_rfc3339().unwrap_or_default().replace([':', '-'], "").replace('.', "-");
        let name = format!("{}-{stamp}", if previous.is_some() { "incremental" } else { "full" });
        let from = previous.as_ref().map_or(1, |p| p.last_seq + 1);
        if store.head().seq.0 < from {
            return Err(StartError::NothingNew(store.head().seq.0));
        }
        let job = Job {
            name: name.clone(),
            incremental: previous.is_some(),
            done: 0,
            total: store.head().seq.0.saturating_sub(from - 1),
            state: JobState::Running,
            error: None,
            manifest: None,
        };
        *slot = Some(job.clone());
        drop(slot);
        let shared = self.job.clone();
        let store = store.clone();
        let out = dir.join(&name);
        let spawned = std::thread::Builder::new().name("oacis-backup".into()).spawn(move || {
            let update = |change: &dyn Fn(&mut Job)| {
                if let Some(job) = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
                    change(job);
                }
            };
            let outcome = backup::write_backup(&store, previous.as_ref(), &out, &mut |seq| {
                if seq.0 % 1_024 == 0 {
                    update(&|job| job.done = seq.0 + 1 - from);
                }
            });
            match outcome {
                Ok(manifest) => {
                    tracing::info!(backup = %out.display(), last_seq = manifest.last_seq, "backup written");
                    update(&|job| {
                        job.done = manifest.event_count;
                        job.total = manifest.event_count;
                        job.state = JobState::Done;
                        job.manifest = Some(manifest.clone());
                    });
                }
                Err(e) => {
                    tracing::error!(backup = %out.display(), error = %e, "backup failed");
                    let message = e.to_string();
                    update(&|job| {
                        job.state = JobState::Failed;
                        job.error = Some(message.clone());
                    });
                }
            }
        });
        if let Err(e) = spawned {
            let message = format!("cannot start the backup thread: {e}");
            if let Some(job) = self.lock().as_mut() {
                job.state = JobState::Failed;
                job.error = Some(message.clone());
            }
            return Err(StartError::Folder(message));
        }
        Ok(job)
    }
}
