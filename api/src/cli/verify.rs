//! `oacis verify`: walk a data folder's log or an export file and name the first bad seq.
//!
//! A data folder is never changed: its log is verified on a temporary copy (sled has no
//! read-only mode; its recovery writes as it opens). Exit codes, as in the README: 0 valid;
//! 1 invalid, naming the first bad seq (or the missing or changed range); 3 unreadable,
//! naming the file and, when known, the byte offset and last good seq; 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::{
    checkpoint, export, verify::VerifyReport, Error, EventStore, FolderCopy, Hash32, Head, Seq, SledConfig, SledStore,
};

use crate::progress::Progress;

/// What to verify.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A data folder.
    #[arg(long, value_name = "DIR", conflicts_with = "file", required_unless_present = "file")]
    data: Option<PathBuf>,
    /// A JSON Lines export.
    #[arg(long, value_name = "EXPORT.jsonl")]
    file: Option<PathBuf>,
    /// With --file: the head the file must continue from (the previous export's last seq and
    /// hash), so that a file whose first lines were cut fails.
    #[arg(long, value_name = "SEQ:HASH", requires = "file", value_parser = parse_anchor)]
    after: Option<Head>,
    /// With --file: a signed checkpoint (its one JSON line, from the `checkpoint` query or the
    /// folder's `checkpoint` file) the file must reach, so that a file whose last lines were
    /// cut fails: the record at its tree size must have its head hash and, in a file from
    /// seq 1, the Merkle root over the records up to it must be its root.
    #[arg(long, value_name = "FILE", requires_all = ["file", "public_key"])]
    checkpoint: Option<PathBuf>,
    /// The public key the checkpoint is signed with (64 hex digits, `oacis checkpoint
    /// public-key`).
    #[arg(long, value_name = "HEX", requires = "checkpoint", value_parser = crate::cli::backup::parse_public_key)]
    public_key: Option<oacis_eventlog::checkpoint::PublicKey>,
}

/// Exit status of a log or file that cannot be read (see the README).
const UNREADABLE: u8 = 3;

fn parse_anchor(text: &str) -> Result<Head, String> {
    let (seq, hash) = text.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq = seq.parse::<u64>().map_err(|e| format!("SEQ: {e}"))?;
    let hash = Hash32::from_hex(hash).ok_or("HASH: expected 64 lower-case hex digits")?;
    Ok(Head { seq: Seq(seq), hash })
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let outcome = match (&args.data, &args.file) {
        (Some(dir), _) => verify_store(dir)?,
        (None, Some(file)) => {
            let signed = match (&args.checkpoint, &args.public_key) {
                (Some(line), Some(key)) => Some(signed_checkpoint(line, key)?),
                _ => None,
            };
            match signed {
                Some(Err(failed)) => {
                    println!("FAILED: {failed}");
                    return Ok(ExitCode::FAILURE);
                }
                Some(Ok(checkpoint)) => verify_file(file, args.after, Some(&checkpoint))?,
                None => verify_file(file, args.after, None)?,
            }
        }
        (None, None) => anyhow::bail!("give --data DIR or --file EXPORT.jsonl"),
    };
    match outcome {
        Ok((report, note)) => {
            println!(
                "ok: {} records in {} streams; head seq {} hash {}{note}",
                report.records, report.streams, report.head.seq, report.head.hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Corrupt { seq, problem }) => {
            println!("FAILED: first bad seq {seq}: {problem}");
            Ok(ExitCode::FAILURE)
        }
        // The folder's signing key is not the log: without it the checkpoints' signatures
        // cannot be checked, which is a check that could not run (2), not a bad log (1).
        Err(e @ Error::CheckpointKey { .. }) => {
            eprintln!("error: {e} (a backup is checked with the public key alone: `oacis backup verify --public-key`)");
            Ok(ExitCode::from(2))
        }
        Err(e @ (Error::HeadLost { .. } | Error::HeadChanged { .. } | Error::RootChanged { .. })) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e @ (Error::Unreadable { .. } | Error::Damaged { .. } | Error::HeadRecord { .. })) => {
            println!("UNREADABLE: {e}");
            Ok(ExitCode::from(UNREADABLE))
        }
        Err(other) => Err(other.into()),
    }
}

/// A verification's report and a note for its ok line.
type Outcome = Result<(VerifyReport, String), Error>;

fn verify_store(dir: &std::path::Path) -> anyhow::Result<Outcome> {
    if !oacis_eventlog::sled_closed::holds_store(dir) {
        // Said out loud, so that a mistyped path is not taken for an empty, valid log.
        anyhow::bail!("{} holds no event store", dir.display());
    }
    let recorded = match checkpoint::read(dir) {
        Ok(recorded) => recorded,
        Err(e) => return Ok(Err(e)),
    };
    let copy = FolderCopy::of(dir).with_context(|| format!("copying {}", dir.display()))?;
    eprintln!(
        "note: verifying a temporary copy of {} ({}); the folder itself is not changed",
        dir.display(),
        copy.path().display()
    );
    let store = match SledStore::open(SledConfig::new(copy.path())).map_err(|e| named_in(e, copy.path(), dir)) {
        Ok(store) => store,
        // A damaged log is a verification result, not a failure to run.
        Err(
            e @ (Error::Corrupt { .. }
            | Error::HeadLost { .. }
            | Error::HeadChanged { .. }
            | Error::RootChanged { .. }
            | Error::CheckpointKey { .. }
            | Error::HeadRecord { .. }
            | Error::Damaged { .. }
            | Error::Unreadable { .. }),
        ) => return Ok(Err(e)),
        Err(e) => return Err(e).with_context(|| format!("opening {}", dir.display())),
    };
    let total = store.head().seq.0;
    let mut progress = Progress::new("verify chain", total);
    let outcome = store.verify(&mut |seq| progress.set(seq.0));
    progress.finish();
    let kept = store.kept_checkpoints().map_or(0, |kept| kept.len());
    let note = match recorded {
        Some(c) if c.signed.is_some() => format!(
            " (checked on a temporary copy; reaches the signed checkpoint at seq {}; Merkle roots match it and {kept} kept checkpoints; key {})",
            c.head.seq,
            store.checkpoint_key().key_id()
        ),
        Some(c) => format!(" (checked on a temporary copy; reaches the checkpoint at seq {})", c.head.seq),
        None => " (checked on a temporary copy; no checkpoint, so a lost tail cannot be ruled out)".to_owned(),
    };
    Ok(outcome.map(|report| (report, note)))
}

/// `e` naming the files of `dir` where it names those of its temporary `copy`.
fn named_in(mut e: Error, copy: &std::path::Path, dir: &std::path::Path) -> Error {
    let path = match &mut e {
        Error::Io { path, .. } | Error::Open { path, .. } => path,
        Error::Damaged { path, reason, .. } => {
            *reason = reason.replace(&copy.display().to_string(), &dir.display().to_string());
            path
        }
        Error::Unreadable { file, .. }
        | Error::HeadLost { file, .. }
        | Error::HeadChanged { file, .. }
        | Error::RootChanged { file, .. }
        | Error::CheckpointKey { file, .. }
        | Error::HeadRecord { file, .. } => file,
        _ => return e,
    };
    if let Ok(rest) = path.strip_prefix(copy) {
        *path = dir.join(rest);
    }
    e
}

/// The checkpoint in `file` if `key` signed it; `Ok(Err(why))` if not (a failed check).
fn signed_checkpoint(
    file: &std::path::Path,
    key: &oacis_eventlog::checkpoint::PublicKey,
) -> anyhow::Result<Result<checkpoint::Checkpoint, String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // Read as `oacis proof verify` reads one: the one line, a final newline allowed.
    let checkpoint = checkpoint::Checkpoint::from_exact_line(text.strip_suffix('\n').unwrap_or(&text))
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", file.display()))?;
    Ok(match checkpoint.verify(key) {
        Ok(()) => Ok(checkpoint),
        Err(e) => Err(format!("checkpoint {}: {e}", file.display())),
    })
}

/// What a file shows of a signed checkpoint's place: the hash of the record at its tree
/// size, and the Merkle root up to it when the file starts at seq 1.
#[derive(Default)]
struct Reached {
    hash: Option<Hash32>,
    tree: Option<oacis_eventlog::merkle::MerkleTree>,
    root: Option<Hash32>,
}

fn verify_file(
    file: &std::path::Path,
    after: Option<Head>,
    signed: Option<&checkpoint::Checkpoint>,
) -> anyhow::Result<Outcome> {
    let metadata = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(
        !metadata.is_dir(),
        "{} is a folder: give an export file (a data folder is --data)",
        file.display()
    );
    let size = metadata.len();
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    // Progress counts records, out of an estimate: an export line is rarely under 300 bytes.
    let mut progress = Progress::estimated("verify", size / 300);
    let target = signed.map_or(Seq::ZERO, |c| c.head.seq);
    let mut reached = Reached {
        tree: (signed.is_some() && after.is_none()).then(oacis_eventlog::merkle::MerkleTree::new),
        ..Reached::default()
    };
    let outcome = export::verify_export_each(std::io::BufReader::new(input), after, &mut |record| {
        progress.set(record.seq.0);
        if record.seq > target {
            return;
        }
        if let Some(tree) = &mut reached.tree {
            tree.push(&record.hash);
            if record.seq == target {
                reached.root = tree.root(target.0).ok();
                reached.tree = None;
            }
        }
        if record.seq == target {
            reached.hash = Some(record.hash);
        }
    });
    progress.finish();
    let outcome = match (outcome, signed) {
        (Ok(check), Some(signed)) if check.continues_from.seq >= signed.head.seq => {
            anyhow::bail!(
                "the file starts after seq {}, the checkpoint's: it holds nothing the checkpoint signed",
                check.continues_from.seq
            )
        }
        (Ok(check), Some(signed)) => {
            let head = check.report.head;
            let root = signed.merkle_root();
            let failed = if head.seq < signed.head.seq {
                Some(format!(
                    "the file ends at seq {} but the signed checkpoint covers seq {}: records {}..={} are missing",
                    head.seq,
                    signed.head.seq,
                    head.seq.next(),
                    signed.head.seq
                ))
            } else if reached.hash.is_some_and(|h| h != signed.head.hash) {
                Some(format!("the record at seq {} is not the one the checkpoint signed", signed.head.seq))
            } else if reached.root.is_some() && reached.root != root {
                Some(format!("the Merkle root up to seq {} is not the checkpoint's", signed.head.seq))
            } else {
                None
            };
            match failed {
                // Missing records: the first bad seq is the first one missing.
                Some(problem) => {
                    let seq = if head.seq < signed.head.seq { head.seq.next() } else { signed.head.seq };
                    return Ok(Err(Error::Corrupt { seq, problem }));
                }
                None => Ok(check),
            }
        }
        (outcome, _) => outcome,
    };
    let last = match &outcome {
        Ok(check) => check.report.head.seq,
        Err(_) => Seq::ZERO,
    };
    let reaches = signed.map(|c| {
        format!(
            "; reaches the signed checkpoint at seq {}{}{}",
            c.head.seq,
            if reached.root.is_some() { ", whose Merkle root it matches" } else { "" },
            if last > c.head.seq {
                format!("; records {}..={last} come after it and are not anchored", c.head.seq.next())
            } else {
                String::new()
            }
        )
    });
    let end = reaches.unwrap_or_else(|| {
        "; its end is not anchored: give --checkpoint and --public-key to check that no records were cut off".into()
    });
    match outcome {
        Ok(check) if check.continues_from.seq.0 > 0 && after.is_none() => {
            let from = check.continues_from;
            let note = format!(
                " (UNANCHORED: the file starts after seq {}; check that it links with --after {}:{}{end})",
                from.seq, from.seq, from.hash
            );
            Ok(Ok((check.report, note)))
        }
        Ok(check) if after.is_some() => Ok(Ok((check.report, format!(" (anchored by --after{end})")))),
        Ok(check) => Ok(Ok((check.report, format!(" (from genesis{end})")))),
        Err(Error::Unreadable { offset, last_good, reason, .. }) => {
            Ok(Err(Error::Unreadable { file: file.to_owned(), offset, last_good, reason }))
        }
        Err(e) => Ok(Err(e)),
    }
}
