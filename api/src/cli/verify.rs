//! `oacis verify`: walk a data folder's log or an export file and name the first bad seq.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::{export, verify::VerifyReport, Error, EventStore, SledConfig, SledStore};

use crate::progress::Progress;

/// What to verify.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct VerifyArgs {
    /// A data folder.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A JSON Lines export.
    #[arg(long, value_name = "EXPORT.jsonl")]
    file: Option<PathBuf>,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let outcome = match (&args.data, &args.file) {
        (Some(dir), _) => verify_store(dir)?,
        (None, Some(file)) => verify_file(file)?,
        (None, None) => anyhow::bail!("give --data DIR or --file EXPORT.jsonl"),
    };
    match outcome {
        Ok(report) => {
            println!(
                "ok: {} records in {} streams; head seq {} hash {}",
                report.records, report.streams, report.head.seq, report.head.hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Corrupt { seq, problem }) => {
            println!("FAILED: first bad seq {seq}: {problem}");
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other.into()),
    }
}

fn verify_store(dir: &std::path::Path) -> anyhow::Result<Result<VerifyReport, Error>> {
    if !dir.join("db").exists() {
        // Said out loud, so that a mistyped path is not taken for an empty, valid log.
        eprintln!("note: {} held no event store; created an empty one", dir.display());
    }
    let store = match SledStore::open(SledConfig::new(dir)) {
        Ok(store) => store,
        // A damaged tail is a verification result, not a failure to run.
        Err(e @ Error::Corrupt { .. }) => return Ok(Err(e)),
        Err(e) => return Err(e).with_context(|| format!("opening {}", dir.display())),
    };
    let total = store.head().seq.0;
    let mut progress = Progress::new("verify chain", total);
    let outcome = store.verify(&mut |seq| progress.set(seq.0));
    progress.finish();
    Ok(outcome)
}

fn verify_file(file: &std::path::Path) -> anyhow::Result<Result<VerifyReport, Error>> {
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    // Progress counts lines; an export line is rarely under 300 bytes.
    let mut progress = Progress::new("verify", size / 300);
    let outcome = export::verify_export(std::io::BufReader::new(input), None, &mut |seq| progress.set(seq.0));
    progress.finish();
    Ok(outcome.map(|check| {
        if check.continues_from.seq.0 > 0 {
            println!(
                "note: the file starts after seq {}; it links to hash {} (compare with the previous export's head)",
                check.continues_from.seq, check.continues_from.hash
            );
        }
        check.report
    }))
}
