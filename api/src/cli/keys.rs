//! The key-encryption key (KEK) and the key store of a data folder: where the KEK comes from,
//! opening the store with its keys, and `oacis keys rotate`.
//!
//! The KEK is 32 bytes, given as 64 hex digits in `OACIS_KEY_ENCRYPTION_KEY`, or in a file
//! (`--key-file`, `OACIS_KEY_FILE`; default `<data folder>.kek`, beside the data folder and
//! outside it, so that a copy of the folder alone does not hold what opens it). A missing
//! file is generated on first start (owner-only permissions) with a warning; it is never
//! generated for a folder whose key store already holds keys.
//!
//! Invariants: every command that reads or writes events opens the store through
//! [`open_store`], so personal data is always sealed on append and opened on read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::keys::{Kek, KeyStore, JOURNAL, KEY_DIR};
use oacis_eventlog::{EventStore, SledConfig, SledStore};

/// The environment variable that may hold the KEK (64 hex digits).
pub const KEK_VARIABLE: &str = "OACIS_KEY_ENCRYPTION_KEY";

/// Where the key-encryption key is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// The file holding the key-encryption key (64 hex digits; generated if missing on a new
    /// store). Default: `<data folder>.kek` beside the data folder. `OACIS_KEY_ENCRYPTION_KEY`
    /// (64 hex digits) takes precedence.
    #[arg(long, value_name = "FILE", env = "OACIS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The KEK file for `data`.
    ///
    /// # Errors
    /// When no file is given and `data` has no name to put one beside.
    pub fn file_for(&self, data: &Path) -> anyhow::Result<PathBuf> {
        if let Some(file) = &self.key_file {
            return Ok(file.clone());
        }
        let absolute = std::path::absolute(data).with_context(|| format!("resolving {}", data.display()))?;
        let name = absolute.file_name().ok_or_else(|| {
            anyhow::anyhow!("{} has no name to put a key file beside; give --key-file", data.display())
        })?;
        let mut file = name.to_owned();
        file.push(".kek");
        Ok(absolute.with_file_name(file))
    }

    /// The KEK for `data`: from the environment, else from its file (created if missing and
    /// the folder's key store holds no keys yet).
    ///
    /// # Errors
    /// A KEK that is not 64 hex digits; a missing KEK file for a store that has keys; I/O.
    pub fn kek(&self, data: &Path) -> anyhow::Result<Kek> {
        if let Ok(text) = std::env::var(KEK_VARIABLE) {
            return Ok(Kek::from_hex(&text, KEK_VARIABLE)?);
        }
        let file = self.file_for(data)?;
        let journal = data.join(KEY_DIR).join(JOURNAL);
        let has_keys = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
        if has_keys && !file.exists() {
            anyhow::bail!(
                "the key store in {} holds keys, but the key-encryption key file {} is missing: \
                 give --key-file or {KEK_VARIABLE}",
                data.display(),
                file.display()
            );
        }
        let (kek, created) = Kek::load_or_create(&file)?;
        if created {
            tracing::warn!(
                file = %file.display(),
                "generated a new key-encryption key: keep this file safe and apart from the data folder \
                 and its backups; without it no personal data can be read"
            );
        }
        Ok(kek)
    }
}

/// Opens the event store in `data` with its key store (created if new).
///
/// # Errors
/// The KEK's and the key store's errors, and the store's.
pub fn open_store(data: &Path, keys: &KeyArgs) -> anyhow::Result<SledStore> {
    let mut config = SledConfig::new(data);
    config.keys = Some(open_key_store(data, keys)?);
    Ok(SledStore::open(config)?)
}

/// The key store in `data` (created with the folder if new), under the KEK `keys` names.
///
/// # Errors
/// The KEK's and the key store's errors.
pub fn open_key_store(data: &Path, keys: &KeyArgs) -> anyhow::Result<std::sync::Arc<KeyStore>> {
    open_key_store_with(data, keys.kek(data)?)
}

/// The key store in `data` (created with the folder if new) under `kek`.
///
/// # Errors
/// The key store's errors.
pub fn open_key_store_with(data: &Path, kek: oacis_eventlog::keys::Kek) -> anyhow::Result<std::sync::Arc<KeyStore>> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    KeyStore::open(data, kek).with_context(|| format!("opening the key store of {}", data.display()))
}

/// The log `oacis serve` runs on: PostgreSQL when `url` is given (a `postgres://` or
/// `postgresql://` URL, or a libpq string with `host=`), else the embedded store in `data`
/// with sled's page cache at `cache_bytes` and the read-back of the records under an index
/// snapshot held until the server calls `SledStore::start_records_check` (once its views
/// are read); either way with `keys`, the key store in `data`. A database that cannot be
/// reached is tried again for up to [`START_WAIT`].
///
/// # Errors
/// A `url` of another kind; the database's and the store's errors.
pub async fn open_any(
    data: &Path,
    keys: std::sync::Arc<KeyStore>,
    cache_bytes: u64,
    url: Option<&str>,
) -> anyhow::Result<oacis_eventlog::AnyStore> {
    let Some(url) = url else {
        let moved = data.join(crate::cli::migrate::MOVED);
        if moved.exists() {
            anyhow::bail!(
                "the log of {} was copied to PostgreSQL (see {}): start the server with --store <URL> and this folder \
                 as --data; its own copy of the log is older. Remove that file to serve the folder's copy on its own",
                data.display(),
                moved.display()
            );
        }
        let mut config = SledConfig::new(data);
        config.keys = Some(keys);
        config.cache_capacity_bytes = cache_bytes;
        config.defer_records_check = true;
        return Ok(SledStore::open(config)?.into());
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains("host=")) {
        anyhow::bail!(
            "--store takes a PostgreSQL URL (postgres://user@host:port/database); \
             leave it unset for the embedded store in --data"
        );
    }
    let mut config = oacis_eventlog::PgConfig::new(url);
    config.keys = Some(keys);
    config.head_file = Some(data.join(POSTGRES_HEAD));
    // A database not up yet (started together with the servers) is waited for, a while.
    let began = std::time::Instant::now();
    let mut told = None;
    let store = loop {
        match oacis_eventlog::PgStore::open(config.clone()).await {
            Ok(store) => break store,
            Err(oacis_eventlog::Error::Unavailable(why)) if began.elapsed() < START_WAIT => {
                if told.is_none_or(|at: std::time::Instant| at.elapsed() >= std::time::Duration::from_secs(5)) {
                    eprintln!("oacis: waiting for PostgreSQL ({why}); giving up after {} s", START_WAIT.as_secs());
                    told = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("opening the log on PostgreSQL")),
        }
    };
    Ok(store.into())
}

/// How long `oacis serve` waits at start for a PostgreSQL log that cannot be reached.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The file in a PostgreSQL server's data folder that keeps the last committed head it saw.
pub const POSTGRES_HEAD: &str = "postgres-head";

/// `oacis keys`: manage the key store.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Rewrap every data key under a new key-encryption key (the log is not touched). Start
    /// the server with the new key afterwards; the old one no longer opens the store.
    Rotate {
        /// The data folder.
        #[arg(long, value_name = "DIR", env = "OACIS_DATA")]
        data: PathBuf,
        /// The current key-encryption key.
        #[command(flatten)]
        keys: KeyArgs,
        /// The file with the new key-encryption key (64 hex digits; generated if missing).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

pub fn run(args: &KeysArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        KeysCommand::Rotate { data, keys, new_key_file } => {
            if !oacis_eventlog::sled_closed::holds_store(data) || data.join(crate::cli::migrate::MOVED).exists() {
                anyhow::bail!(
                    "{} holds no embedded event store of its own: its log is on PostgreSQL, where every server \
                     shares the keys wrapped by one key-encryption key, and rotating them there is not supported yet",
                    data.display()
                );
            }
            // Opening the event store takes its lock: no server may append (and create keys)
            // while the journal is rewritten.
            let store = open_store(data, keys)?;
            let key_store = store.keys().ok_or_else(|| anyhow::anyhow!("the store has no key store"))?;
            let (new, _) = Kek::load_or_create(new_key_file)?;
            let rewrapped = key_store.rotate(new.clone())?;
            println!("rewrapped {rewrapped} data keys under key-encryption key {}", new.id_hex());
            Ok(ExitCode::SUCCESS)
        }
    }
}
