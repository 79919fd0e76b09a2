//! `oacis migrate`: copy an event log between backends (a data folder's embedded store and
//! PostgreSQL, either way), byte for byte, and check that both end at the same head.
//!
//! Records are copied as stored (sealed personal data stays sealed; hashes are not
//! recomputed but checked again as they are written), so the copy is the same log: the same
//! seqs, hashes and head, verifiable with the same `oacis verify` and `FORMAT.md`. The key
//! store is not part of the log: it stays in the data folder (see the printed advice).
//!
//! Invariants: the source is only read. A PostgreSQL target must be empty, or hold a first
//! part of this same log (an interrupted copy; it goes on from there); a folder target must
//! be new. The command fails, naming the seq, at the first record that does not verify.

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
}

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
    if is_postgres(&args.from) == is_postgres(&args.to) {
        anyhow::bail!("migrate copies between a data folder and PostgreSQL: give one of each");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let source = open(&args.from).await?;
        let head = source.head();
        let copied = if is_postgres(&args.to) {
            into_postgres(&source, &args.to).await?
        } else {
            into_folder(&source, PathBuf::from(&args.to)).await?
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
        if is_postgres(&args.to) {
            println!(
                "serve it with: oacis serve --store <URL> --data {} (the data folder keeps the key store and attachments)",
                args.from
            );
        } else {
            println!("copy the key store (keys/) and attachments/ of the server's data folder into {}", args.to);
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn into_postgres(source: &AnyStore, url: &str) -> anyhow::Result<Head> {
    let target = PgStore::open(PgConfig::new(url)).await.context("opening the PostgreSQL target")?;
    let mut head = target.head();
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

async fn into_folder(source: &AnyStore, dir: PathBuf) -> anyhow::Result<Head> {
    let (pages, mut pending) = tokio::sync::mpsc::channel::<oacis_eventlog::Result<Vec<Record>>>(4);
    let reader = {
        let source = source.clone();
        tokio::spawn(async move {
            let mut from = Seq::FIRST;
            loop {
                let page = source.read_all(from, PAGE).await;
                let last = page.as_ref().ok().and_then(|p| p.last().map(|r| r.seq));
                let done = page.as_ref().map_or(true, Vec::is_empty);
                if pages.send(page).await.is_err() || done {
                    return;
                }
                from = last.map_or(from, Seq::next);
            }
        })
    };
    let total = source.head().seq.0;
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
