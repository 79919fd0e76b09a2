//! `oacis export`: write a data folder's log as JSON Lines, atomically.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::{export, EventStore, Seq, SledConfig, SledStore};

use crate::cli::output::Output;
use crate::progress::Progress;

/// What to export, and where: the log (without a subcommand), or customers.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportArgs {
    /// Customers as CSV or .xlsx instead of the log.
    #[command(subcommand)]
    what: Option<ExportWhat>,
    /// The data folder.
    #[arg(long, value_name = "DIR", required = true)]
    data: Option<PathBuf>,
    /// The file to write (replaced atomically once complete; a pipe or device is written in place).
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    /// First seq to export (for an incremental export after an earlier one's head).
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    from: u64,
}

#[derive(Debug, clap::Subcommand)]
enum ExportWhat {
    /// Customers (any directory filter, in the acting user's scope) as CSV or .xlsx.
    Customers(crate::cli::transfer::ExportCustomersArgs),
}

pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let (data, out_path) = match (&args.what, &args.data, &args.out) {
        (Some(ExportWhat::Customers(customers)), _, _) => return crate::cli::transfer::run_export(customers),
        (None, Some(data), Some(out)) => (data, out),
        _ => anyhow::bail!("give --data and --out"),
    };
    if !oacis_eventlog::sled_closed::holds_store(data) {
        anyhow::bail!("{} holds no event store", data.display());
    }
    anyhow::ensure!(args.from >= 1, "--from 0: seqs start at 1");
    let store = SledStore::open(SledConfig::new(data)).with_context(|| format!("opening {}", data.display()))?;
    let log_head = store.head();
    let head = log_head.seq;
    anyhow::ensure!(
        args.from <= head.0 + 1,
        "--from {}: the log ends at seq {} (hash {}); an export of what follows it starts at {}",
        args.from,
        head,
        log_head.hash,
        head.0 + 1
    );
    let from = Seq(args.from);
    let mut output = Output::create(out_path)?;
    let mut progress = Progress::new("export", head.0.saturating_sub(from.0 - 1));
    let report =
        export::write_export(store.records(from), output.writer(), &mut |seq| progress.set(seq.0 - (from.0 - 1)))?;
    progress.finish();
    output.commit().context("writing the export")?;
    let mut stdout = std::io::stdout().lock();
    if report.records == 0 {
        // Nothing after the head: the head to anchor the next export is the log's.
        writeln!(stdout, "exported 0 records (nothing after seq {}); head hash {}", log_head.seq, log_head.hash)?;
    } else {
        writeln!(
            stdout,
            "exported {} records (seq {}..={}); head hash {}",
            report.records, from, report.head.seq, report.head.hash
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
