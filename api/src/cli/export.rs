//! `oacis export`: write a data folder's log as JSON Lines, atomically.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::{export, EventStore, Seq, SledConfig, SledStore};

use crate::progress::Progress;

/// What to export, and where.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The data folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The file to write (replaced atomically once complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// First seq to export (for an incremental export after an earlier one's head).
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    from: u64,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    if !args.data.join("db").exists() {
        anyhow::bail!("{} holds no event store", args.data.display());
    }
    let store =
        SledStore::open(SledConfig::new(&args.data)).with_context(|| format!("opening {}", args.data.display()))?;
    let head = store.head().seq;
    let from = Seq(args.from.max(1));
    let partial = args.out.with_extension("partial");
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let mut progress = Progress::new("export", head.0.saturating_sub(from.0 - 1));
    let report = export::write_export(store.records(from), &mut out, &mut |seq| progress.set(seq.0 - (from.0 - 1)))?;
    progress.finish();
    let file = out.into_inner().map_err(|e| e.into_error()).context("writing the export")?;
    file.sync_all().context("syncing the export")?;
    drop(file);
    std::fs::rename(&partial, &args.out).with_context(|| format!("renaming to {}", args.out.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "exported {} records (seq {}..={}); head hash {}",
        report.records, from, report.head.seq, report.head.hash
    )?;
    Ok(ExitCode::SUCCESS)
}
