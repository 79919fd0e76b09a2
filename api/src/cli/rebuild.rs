//! `oacis rebuild`: replay every read view from the log and print the hash of their
//! canonical dump, so that two builds (or two machines) can be compared.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::EventStore;
use oacis_projections::Views;

use crate::progress::Progress;

/// Which log to replay.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The data folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The key-encryption key (personal data is opened on replay).
    #[command(flatten)]
    keys: crate::cli::keys::KeyArgs,
}

pub fn run(args: &RebuildArgs) -> anyhow::Result<ExitCode> {
    if !oacis_eventlog::sled_closed::holds_store(&args.data) {
        anyhow::bail!("{} holds no event store", args.data.display());
    }
    let store = crate::cli::keys::open_store(&args.data, &args.keys)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut progress = Progress::new("rebuild", store.head().seq.0);
    let views = runtime.block_on(Views::replay(&store, None, &mut |seq| progress.set(seq.0)))?;
    progress.finish();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "rebuilt the views from {} events: {} customers; dump hash {}",
        views.applied(),
        views.directory.len(),
        views.hash()
    )?;
    Ok(ExitCode::SUCCESS)
}
