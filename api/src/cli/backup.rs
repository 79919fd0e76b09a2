//! `oacis backup`, `oacis backup verify` and `oacis restore`: verifiable backups of a data
//! folder's log (see `oacis_eventlog::backup` for the format and its checks).
//!
//! Exit codes as `oacis verify`: 0 ok; 1 a backup or chain that does not verify, naming the
//! file and the seq or field at fault; 2 could not run (a path that does not exist, a folder
//! held by a running server, a non-empty restore target).
//!
//! Invariants: `restore` writes nothing unless every backup given verifies, and then replays
//! the views from the restored log and applies the erasures the log records to the restored
//! key store before it reports success, so that a restore never brings erased data back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::backup::{self, BackupError, ChainReport, Manifest};
use oacis_eventlog::checkpoint::PublicKey;
use oacis_eventlog::{EventStore, SledConfig, SledStore};

use crate::progress::Progress;

/// `oacis backup`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Check backups instead of making one.
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The data folder (the server must not be running on it; while it runs, use the
    /// `runBackup` mutation).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The new backup folder to write (must not exist).
    #[arg(long, value_name = "BACKUP")]
    out: Option<PathBuf>,
    /// Make an incremental backup holding only the records after this backup's head.
    #[arg(long, value_name = "BACKUP")]
    since: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum BackupCommand {
    /// Verify a full backup and its incrementals, in order, on their own.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The full backup, then each incremental in order.
    #[arg(required = true, value_name = "BACKUP")]
    backups: Vec<PathBuf>,
    /// The checkpoint public key the backups must be signed with (64 hex digits, as printed
    /// by `oacis checkpoint public-key`). Without it, the key the first backup names.
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    public_key: Option<PublicKey>,
}

/// `oacis restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The full backup, then each incremental in order.
    #[arg(required = true, value_name = "BACKUP")]
    backups: Vec<PathBuf>,
    /// The new data folder (must not exist, or be empty).
    #[arg(long, value_name = "NEW_DIR")]
    data: PathBuf,
    /// The checkpoint signing key of the store the backups came from (its
    /// `checkpoint.key`), so that the restored store goes on signing with it. Without it a
    /// new key is made, and the backups' checkpoints stay checkable with the old public key.
    #[arg(long, value_name = "FILE")]
    checkpoint_key: Option<PathBuf>,
    /// The checkpoint public key the backups must be signed with.
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    public_key: Option<PublicKey>,
    /// The key-encryption key of the backed-up store (needed when the backups hold keys).
    #[command(flatten)]
    keys: crate::cli::keys::KeyArgs,
}

pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(text).ok_or_else(|| {
        "not an Ed25519 public key: expected the 64 lower-case hex digits `oacis checkpoint public-key` prints".into()
    })
}

pub fn run(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(BackupCommand::Verify(verify)) = &args.command {
        return run_verify(verify);
    }
    let (Some(data), Some(out)) = (&args.data, &args.out) else {
        anyhow::bail!("give --data DIR and --out BACKUP (and --since BACKUP for an incremental one)");
    };
    if !oacis_eventlog::sled_closed::holds_store(data) {
        anyhow::bail!("{} holds no event store", data.display());
    }
    let previous = args.since.as_deref().map(Manifest::read).transpose().with_context(|| {
        format!("reading the manifest of --since {}", args.since.as_deref().unwrap_or(Path::new("")).display())
    })?;
    if let (Some(base), Some(manifest)) = (&args.since, &previous) {
        backup::check_files(base, manifest)?;
    }
    let store = SledStore::open(SledConfig::new(data)).with_context(|| format!("opening {}", data.display()))?;
    let manifest = make(&store, previous.as_ref(), out)?;
    print_manifest(out, &manifest);
    Ok(ExitCode::SUCCESS)
}

/// Makes a backup of `store` at `out`, showing progress.
///
/// # Errors
/// As [`backup::write_backup`].
pub fn make(store: &SledStore, previous: Option<&Manifest>, out: &Path) -> Result<Manifest, BackupError> {
    let from = previous.map_or(1, |p| p.last_seq + 1);
    let mut progress = Progress::new("backup", store.head().seq.0.saturating_sub(from - 1));
    let made = backup::write_backup(store, previous, out, &mut |seq| progress.set(seq.0 + 1 - from));
    progress.finish();
    made
}

fn print_manifest(out: &Path, manifest: &Manifest) {
    let kind = if manifest.previous.is_some() { "incremental" } else { "full" };
    println!(
        "{kind} backup {}: seqs {}..={} ({} events), head {}, Merkle root {}, signed by key {}",
        out.display(),
        manifest.first_seq,
        manifest.last_seq,
        manifest.event_count,
        manifest.head_hash,
        manifest.merkle_root,
        PublicKey::from_hex(&manifest.public_key).map(|k| k.key_id()).unwrap_or_default()
    );
}

/// The last seq the backups claim to reach (for progress only; 0 if unreadable).
fn claimed_head(backups: &[PathBuf]) -> u64 {
    backups.iter().filter_map(|dir| Manifest::read(dir).ok()).map(|m| m.last_seq).max().unwrap_or(0)
}

fn run_verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut progress = Progress::new("verify backups", claimed_head(&args.backups));
    let outcome = backup::verify_chain(&args.backups, args.public_key.as_ref(), &mut |seq| progress.set(seq.0));
    progress.finish();
    let trusted = args.public_key.is_some();
    report(outcome.map(|chain| {
        format!(
            "ok: {} backups, seqs 1..={}, head {}, Merkle root {}, checkpoints signed by key {}{}",
            chain.manifests.len(),
            chain.head.seq,
            chain.head.hash,
            chain.merkle_root,
            PublicKey::from_hex(&chain.public_key).map(|k| k.key_id()).unwrap_or_default(),
            if trusted {
                " (the key given)"
            } else {
                " (the key the backups name: give --public-key to check that they are your store's)"
            }
        )
    }))
}

/// Prints the outcome; a backup that does not verify is exit 1, the rest are errors (2).
fn report(outcome: Result<String, BackupError>) -> anyhow::Result<ExitCode> {
    match outcome {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (BackupError::Field { .. }
            | BackupError::Record { .. }
            | BackupError::NotFull { .. }
            | BackupError::BrokenLink { .. }
            | BackupError::OtherStore { .. }),
        ) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// When the chain's last backup holds a key journal, the KEK must be given (never generated:
/// a new one would open nothing) and must open that journal; checked after the chain
/// verifies and before anything is written.
fn check_kek(args: &RestoreArgs, chain: &ChainReport) -> anyhow::Result<()> {
    let Some(journal) = chain.key_journal.clone() else {
        return Ok(());
    };
    if args.keys.key_file.is_none() && std::env::var(crate::cli::keys::KEK_VARIABLE).is_err() {
        anyhow::bail!(
            "the backups hold a key store: give the key-encryption key of the store they came from \
             with --key-file or {}",
            crate::cli::keys::KEK_VARIABLE
        );
    }
    let trial = tempfile_dir()?;
    let keys = trial.join(oacis_eventlog::keys::KEY_DIR);
    std::fs::create_dir_all(&keys)?;
    std::fs::copy(&journal, keys.join(oacis_eventlog::keys::JOURNAL))?;
    let opened = args.keys.kek(&trial).and_then(|kek| Ok(oacis_eventlog::keys::KeyStore::open(&trial, kek)?));
    let _ = std::fs::remove_dir_all(&trial);
    opened.map(|_| ()).with_context(|| {
        format!("the key-encryption key given does not open the backups' key store ({})", journal.display())
    })
}

/// A new private folder under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("oacis-restore-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub fn run_restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    if args.public_key.is_none() && args.checkpoint_key.is_none() {
        // A backup can be re-signed whole by anyone with a key of their own: only a key the
        // operator holds tells the store's backups from a forgery.
        anyhow::bail!(
            "give --public-key HEX (the store's, from `oacis checkpoint public-key`) or --checkpoint-key FILE \
             (its signing key): a restore must know whose backups it trusts"
        );
    }
    let total = claimed_head(&args.backups);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut replayed: Option<(String, usize)> = None;
    let mut progress: Option<(&'static str, Progress)> = None;
    let restored = backup::restore(
        &args.backups,
        &args.data,
        args.checkpoint_key.as_deref(),
        args.public_key.as_ref(),
        &mut |chain| check_kek(args, chain).map_err(|e| BackupError::Refused(format!("{e:#}"))),
        &mut |written| {
            // Views and erasures are made in the temporary folder, before it is renamed into place.
            // The KEK file defaults to the target's (`NEW_DIR.kek`), never the temporary
            // folder's name.
            let mut keys = args.keys.clone();
            if keys.key_file.is_none() {
                keys.key_file =
                    Some(args.keys.file_for(&args.data).map_err(|e| BackupError::Refused(format!("{e:#}")))?);
            }
            let outcome = runtime.block_on(replay(written, &keys));
            replayed = Some(outcome.map_err(|e| BackupError::Refused(format!("{e:#}")))?);
            Ok(())
        },
        &mut |stage, seq| {
            if progress.as_ref().is_none_or(|(s, _)| *s != stage) {
                if let Some((_, done)) = progress.take() {
                    done.finish();
                }
                let label = if stage == "verify" { "verify backups" } else { "restore" };
                progress = Some((stage, Progress::new(label, total)));
            }
            if let Some((_, bar)) = progress.as_mut() {
                bar.set(seq.0);
            }
        },
    );
    if let Some((_, done)) = progress.take() {
        done.finish();
    }
    let restored = match restored {
        Ok(restored) => restored,
        Err(e) => return report(Err(e)),
    };
    let (views_hash, destroyed) = replayed.unwrap_or_default();
    let head = restored.head;
    println!(
        "restored {} backups into {}: seqs 1..={}, head {}, Merkle root {}; views rebuilt, dump hash {views_hash}{}{}",
        restored.manifests.len(),
        args.data.display(),
        head.seq,
        head.hash,
        restored.merkle_root,
        match &restored.key_journal {
            Some(journal) => format!("; key store restored from {}", journal.display()),
            None => String::new(),
        },
        if destroyed > 0 {
            format!("; destroyed {destroyed} data keys of subjects erased in the log")
        } else {
            String::new()
        },
    );
    if args.checkpoint_key.is_none() {
        eprintln!(
            "note: the restored store signs new checkpoints with a new key; the backups' checkpoints stay checkable with key {}",
            PublicKey::from_hex(&restored.public_key).map(|k| k.key_id()).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the restored folder with its keys, replays the views and applies the erasures the
/// log records; answers the views' dump hash and how many keys were destroyed.
async fn replay(data: &Path, keys: &crate::cli::keys::KeyArgs) -> anyhow::Result<(String, usize)> {
    let store = crate::cli::keys::open_store(data, keys).with_context(|| format!("opening {}", data.display()))?;
    let mut progress = Progress::new("replay", store.head().seq.0);
    let projections = oacis_projections::Projections::start(&store, &mut |seq| progress.set(seq.0)).await?;
    progress.finish();
    let bus =
        crate::command::CommandBus::new(store, std::sync::Arc::new(projections), std::time::Duration::from_secs(5));
    let destroyed = crate::erasure::apply_recorded(&bus).await?;
    let hash = bus.projections().read(oacis_projections::Views::hash)?;
    Ok((hash, destroyed))
}
