//! `oacis migrate`: copy an event log between backends (a data folder's embedded store and
//! PostgreSQL, either way), byte for byte, and check that both end at the same head.
//!
//! Records are copied as stored (sealed personal data stays sealed; hashes are not
//! recomputed but checked again as they are written), so the copy is the same log: the same
//! seqs, hashes and head, verifiable with the same `oacis verify` and `FORMAT.md`. The
//! personal-data keys go along: into the database's shared keys (wrapped under the
//! key-encryption key, erasures as tombstones) from a folder's key store, and from the
//! database into the new folder's key store (which needs the servers' key-encryption key).
//!
//! Invariants: the source log is only read. A PostgreSQL target must be empty, or hold a
//! first part of this same log (an interrupted copy; it goes on from there); a folder target
//! must be new. A folder whose log was copied to PostgreSQL is marked ([`MOVED`]), and `oacis
//! serve` refuses to serve its stale copy without `--store`. The command fails, naming the
//! seq, at the first record that does not verify.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use oacis_eventlog::{AnyStore, EventStore, Head, PgConfig, PgStore, Record, Seq, SledConfig, SledStore};

/// Records per page read and written.
const PAGE: usize = 2_000;

/// `oacis migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Where the log is: a data folder (no server running on it), or a `postgres://` URL.
    #[arg(long, value_name = "DIR|URL")]
    from: String,
    /// Where it goes: a `postgres://` URL (an empty database, or one holding the first part
    /// of this same log), or a new data folder.
    #[arg(long, value_name = "DIR|URL")]
    to: String,
    /// The key-encryption key of the personal-data keys: the folder's (default
    /// `<folder>.kek`) when copying to PostgreSQL; the servers' (required when the database
    /// holds keys) when copying to a new folder.
    #[command(flatten)]
    keys: crate::cli::keys::KeyArgs,
}

/// The file `oacis migrate` leaves in a folder whose log it copied to PostgreSQL.
pub const MOVED: &str = "MOVED_TO_POSTGRESQL";

fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

async fn open(location: &str) -> anyhow::Result<AnyStore> {
    Ok(if is_postgres(location) {
        PgStore::open(PgConfig::new(location)).await.context("opening the PostgreSQL log")?.into()
    } else {
        SledStore::open(SledConfig::new(location)).with_context(|| format!("opening {location}"))?.into()
    })
}

/// Runs `oacis migrate`: exit 0 with both heads printed once the copy ends at the source's
/// head.
///
/// # Errors
/// Unusable locations, a target holding another log, a record that does not verify.
pub fn run(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    for location in [&args.from, &args.to] {
        if location.is_empty() || (location.contains("://") && !is_postgres(location)) {
            anyhow::bail!("{location:?} is neither a data folder nor a postgres:// URL");
        }
    }
    if is_postgres(&args.from) == is_postgres(&args.to) {
        anyhow::bail!("migrate copies between a data folder and PostgreSQL: give one of each");
    }
    if !is_postgres(&args.from) && !oacis_eventlog::sled_closed::holds_store(std::path::Path::new(&args.from)) {
        anyhow::bail!("{} holds no event store", args.from);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let target_folder = PathBuf::from(&args.to);
    if !is_postgres(&args.to) && std::fs::read_dir(&target_folder).is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!("{} already exists and is not empty: migrate into a new folder", args.to);
    }
    runtime.block_on(async {
        let source = open(&args.from).await?;
        let head = source.head();
        let copied = if is_postgres(&args.to) {
            let folder = std::path::Path::new(&args.from);
            let keys = if has_keys(folder) { Some(crate::cli::keys::open_key_store(folder, &args.keys)?) } else { None };
            let copied = into_postgres(&source, &args.to, keys).await?;
            let note = format!(
                "The log of this folder was copied to PostgreSQL by `oacis migrate` up to seq {} (hash {}).\n\
                 Serve it with `oacis serve --store <URL> --data <this folder>`: this folder keeps the key store\n\
                 and attachments, and its own copy of the log stops at that seq. Remove this file to serve\n\
                 the folder's copy on its own instead.\n",
                copied.seq, copied.hash
            );
            std::fs::write(folder.join(MOVED), note).with_context(|| format!("marking {}", folder.display()))?;
            copied
        } else {
            // Servers may be appending while the database is copied: the copy ends at the head
            // read when it began.
            into_folder(&source, head.seq, &args.from, target_folder, &args.keys).await?
        };
        if copied != head {
            anyhow::bail!(
                "the copy ends at seq {} hash {}, the source at seq {} hash {}",
                copied.seq,
                copied.hash,
                head.seq,
                head.hash
            );
        }
        println!("copied the log: {} records, head hash {} on both", head.seq, head.hash);
        let now = source.head();
        if now.seq > head.seq {
            println!(
                "the source went on to seq {} meanwhile (servers appending): the copy ends at the head it began at",
                now.seq
            );
        }
        if is_postgres(&args.to) {
            println!(
                "serve it with: oacis serve --store <URL> --data {} (the data folder keeps the key store and attachments; \
                 serving it without --store is refused from now on)",
                args.from
            );
        } else {
            println!(
                "the personal-data keys are in {}/keys; serve it with: oacis serve --data {} --key-file <the servers' key file> \
                 (copy a server's attachments/ folder, if any, into it)",
                args.to, args.to
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn has_keys(folder: &std::path::Path) -> bool {
    let journal = folder.join(oacis_eventlog::keys::KEY_DIR).join(oacis_eventlog::keys::JOURNAL);
    std::fs::metadata(journal).is_ok_and(|m| m.len() > 0)
}

async fn into_postgres(
    source: &AnyStore,
    url: &str,
    keys: Option<std::sync::Arc<oacis_eventlog::keys::KeyStore>>,
) -> anyhow::Result<Head> {
    let target = PgStore::open(PgConfig::new(url)).await.context("opening the PostgreSQL target")?;
    let mut head = target.head();
    let source_head = source.head();
    if head.seq > source_head.seq {
        let at = target.read_all(source_head.seq.max(Seq::FIRST), 1).await?;
        if source_head.seq > Seq::ZERO && at.first().is_some_and(|r| r.hash == source_head.hash) {
            anyhow::bail!(
                "the database already holds this log and more (up to seq {}); this folder's copy stops at seq {}: \
                 serve the database with --store instead",
                head.seq,
                source_head.seq
            );
        }
    }
    if head.seq > Seq::ZERO {
        let at = source.read_all(head.seq, 1).await?;
        if at.first().is_none_or(|r| r.hash != head.hash) {
            anyhow::bail!(
                "the target already holds another log (its seq {} has hash {}); migrate into an empty database",
                head.seq,
                head.hash
            );
        }
        eprintln!("the target holds this log up to seq {}; copying on from there", head.seq);
    }
    // The same log: opening again with the folder's key store shares its keys and erasures.
    let target = match keys {
        Some(keys) => PgStore::open(PgConfig { keys: Some(keys), ..PgConfig::new(url) })
            .await
            .context("sharing the folder's personal-data keys")?,
        None => target,
    };
    let mut progress = crate::progress::Progress::new("migrate", source.head().seq.0);
    loop {
        let page = source.read_all(head.seq.next(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        head = target.import_page(page).await?;
        progress.set(head.seq.0);
    }
    progress.finish();
    Ok(head)
}

async fn into_folder(
    source: &AnyStore,
    end: Seq,
    url: &str,
    dir: PathBuf,
    keys: &crate::cli::keys::KeyArgs,
) -> anyhow::Result<Head> {
    // The shared keys go into the new folder's key store, under the servers' KEK.
    let shared = PgStore::open(PgConfig::new(url)).await?.shared_key_count().await?;
    if shared > 0 {
        if keys.key_file.is_none() && std::env::var(crate::cli::keys::KEK_VARIABLE).is_err() {
            anyhow::bail!(
                "the database holds {shared} personal-data keys wrapped by the servers' key-encryption key: \
                 give it with --key-file FILE (or {})",
                crate::cli::keys::KEK_VARIABLE
            );
        }
        let key_store = crate::cli::keys::open_key_store(&dir, keys)?;
        PgStore::open(PgConfig { keys: Some(key_store), ..PgConfig::new(url) })
            .await
            .context("copying the personal-data keys")?;
    }
    let (pages, mut pending) = tokio::sync::mpsc::channel::<oacis_eventlog::Result<Vec<Record>>>(4);
    let reader = {
        let source = source.clone();
        tokio::spawn(async move {
            let mut from = Seq::FIRST;
            loop {
                let page = source.read_all(from, PAGE).await.map(|mut records| {
                    records.retain(|r| r.seq <= end);
                    records
                });
                let last = page.as_ref().ok().and_then(|p| p.last().map(|r| r.seq));
                let done = page.as_ref().map_or(true, Vec::is_empty);
                if pages.send(page).await.is_err() || done {
                    return;
                }
                from = last.map_or(from, Seq::next);
            }
        })
    };
    let total = end.0;
    let written = tokio::task::spawn_blocking(move || {
        let records = std::iter::from_fn(move || pending.blocking_recv())
            .take_while(|page| page.as_ref().map_or(true, |p| !p.is_empty()))
            .flat_map(|page| match page {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            });
        let mut progress = crate::progress::Progress::new("migrate", total);
        let head = SledStore::restore_log(&SledConfig::new(&dir), records, &mut |seq| progress.set(seq.0));
        progress.finish();
        head.with_context(|| format!("writing the log into {}", dir.display()))
    })
    .await??;
    reader.abort();
    Ok(written)
}
