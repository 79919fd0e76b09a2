//! `oacis checkpoint` (issue one, print the public key) and `oacis proof verify`: what an
//! auditor runs offline, with only the public key, on what GraphQL or a backup gave them.
//!
//! Inputs are the objects the GraphQL API returns, saved as JSON files:
//! - a checkpoint: its JSON line (`checkpoint { line }`, a line of a data folder's
//!   `checkpoints` file, or a backup manifest's `checkpoint`);
//! - an inclusion proof: `inclusionProof { seq treeSize recordHash path root }`;
//! - a consistency proof: `consistencyProof { fromSize toSize fromRoot toRoot path }`.
//!
//! Exit codes: 0 verified; 1 does not verify (saying why); 2 could not run (an unreadable
//! file, bad arguments). An ok line says UNANCHORED for a root no checkpoint given signed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oacis_eventlog::checkpoint::{Checkpoint, CheckpointKey, PublicKey, KEY_FILE_NAME};
use oacis_eventlog::merkle::{ConsistencyProof, InclusionProof};
use oacis_eventlog::{Hash32, Seq, SledConfig, SledStore};
use serde::Deserialize;

/// `oacis checkpoint`.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    command: CheckpointCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CheckpointCommand {
    /// Print the public key that checks a data folder's checkpoints (64 hex digits). Reads
    /// only the key file, so it works while the server runs.
    PublicKey {
        /// The data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Issue and keep a checkpoint of a data folder's log now (the server must not be
    /// running on it; while it runs, use the `issueCheckpoint` mutation) and print its line.
    Issue {
        /// The data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

/// `oacis proof`.
#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    #[command(subcommand)]
    command: ProofCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ProofCommand {
    /// Verify a checkpoint's signature, and proofs against it, with only the public key.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["checkpoint", "inclusion", "consistency"])))]
struct VerifyArgs {
    /// The public key (64 hex digits, from `oacis checkpoint public-key`).
    #[arg(long, value_name = "HEX", value_parser = crate::cli::backup::parse_public_key)]
    public_key: PublicKey,
    /// A checkpoint's JSON line (repeatable: for a consistency proof, the checkpoints at
    /// both of its sizes). A proof given with checkpoints must be against their sizes and
    /// roots; without any, its roots are only its own claims (said so as UNANCHORED).
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<PathBuf>,
    /// An inclusion proof (JSON).
    #[arg(long, value_name = "FILE")]
    inclusion: Option<PathBuf>,
    /// A consistency proof (JSON).
    #[arg(long, value_name = "FILE")]
    consistency: Option<PathBuf>,
}

/// A hash in hex, read from JSON.
fn hash(field: &str, text: &str) -> anyhow::Result<Hash32> {
    Hash32::from_hex(text).ok_or_else(|| anyhow::anyhow!("{field}: expected 64 lower-case hex digits"))
}

fn path(texts: &[String]) -> anyhow::Result<Vec<Hash32>> {
    texts.iter().enumerate().map(|(i, t)| hash(&format!("path[{i}]"), t)).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionJson {
    seq: u64,
    tree_size: u64,
    record_hash: String,
    path: Vec<String>,
    root: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyJson {
    from_size: u64,
    to_size: u64,
    from_root: String,
    to_root: String,
    path: Vec<String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(file: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not the expected JSON object", file.display()))
}

pub fn run_checkpoint(args: &CheckpointArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CheckpointCommand::PublicKey { data } => {
            let file = data.join(KEY_FILE_NAME);
            if !file.exists() && !oacis_eventlog::sled_closed::holds_store(data) {
                anyhow::bail!("{} holds no event store", data.display());
            }
            let key = CheckpointKey::read(&file)?;
            println!("{}", key.public().to_hex());
            eprintln!("key id {}", key.public().key_id());
        }
        CheckpointCommand::Issue { data } => {
            if !oacis_eventlog::sled_closed::holds_store(data) {
                anyhow::bail!("{} holds no event store", data.display());
            }
            let store =
                SledStore::open(SledConfig::new(data)).with_context(|| format!("opening {}", data.display()))?;
            println!("{}", store.issue_checkpoint()?.to_line());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_proof(args: &ProofArgs) -> anyhow::Result<ExitCode> {
    let ProofCommand::Verify(args) = &args.command;
    let mut failures = Vec::new();
    // The signed (size, root) pairs the proofs must agree with.
    let mut anchors: Vec<(u64, Hash32)> = Vec::new();
    for file in &args.checkpoint {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let checkpoint = Checkpoint::from_exact_line(text.trim_end_matches('\n'))
            .map_err(|problem| anyhow::anyhow!("{}: {problem}", file.display()))?;
        match (checkpoint.verify(&args.public_key), checkpoint.merkle_root()) {
            (Ok(()), Some(root)) => {
                println!(
                    "ok: checkpoint at tree size {} with root {root} is signed by key {}",
                    checkpoint.head.seq,
                    args.public_key.key_id()
                );
                anchors.push((checkpoint.head.seq.0, root));
            }
            (Err(e), _) => failures.push(format!("checkpoint {}: {e}", file.display())),
            (Ok(()), None) => failures.push(format!("checkpoint {}: not signed", file.display())),
        }
    }
    // Two signed roots for one tree size prove that the log forked (or the key signed a lie).
    for (i, (size, root)) in anchors.iter().enumerate() {
        if let Some((_, other)) = anchors[..i].iter().find(|(s, r)| s == size && r != root) {
            failures.push(format!(
                "the checkpoints given sign two roots for tree size {size} ({other} and {root}): the log forked"
            ));
        }
    }
    // For a tree size: None when no checkpoint names it, else whether the root is the signed one.
    let anchored = |size: u64, root: Hash32| anchors.iter().find(|(s, _)| *s == size).map(|(_, r)| *r == root);
    let unanchored = " (UNANCHORED: no checkpoint of this size was given, so this root is only the proof's claim)";
    if let Some(file) = &args.inclusion {
        let json: InclusionJson = read_json(file)?;
        let proof = (|| {
            Ok::<_, anyhow::Error>(InclusionProof {
                seq: Seq(json.seq),
                tree_size: json.tree_size,
                record_hash: hash("recordHash", &json.record_hash)?,
                path: path(&json.path)?,
                root: hash("root", &json.root)?,
            })
        })()
        .with_context(|| format!("{}", file.display()))?;
        match (proof.verify(), anchored(proof.tree_size, proof.root)) {
            (Err(e), _) => failures.push(format!("inclusion proof {}: {e}", file.display())),
            (Ok(()), Some(false)) => failures.push(format!(
                "inclusion proof {}: its root at tree size {} is not the checkpoint's",
                file.display(),
                proof.tree_size
            )),
            (Ok(()), None) if !anchors.is_empty() => failures.push(format!(
                "inclusion proof {}: it is against tree size {}, and no checkpoint given is of that size",
                file.display(),
                proof.tree_size
            )),
            (Ok(()), signed) => println!(
                "ok: record seq {} (hash {}) is in the tree of size {} with root {}{}",
                proof.seq,
                proof.record_hash,
                proof.tree_size,
                proof.root,
                if signed.is_some() { "" } else { unanchored }
            ),
        }
    }
    if let Some(file) = &args.consistency {
        let json: ConsistencyJson = read_json(file)?;
        let proof = (|| {
            Ok::<_, anyhow::Error>(ConsistencyProof {
                first: json.from_size,
                second: json.to_size,
                first_root: hash("fromRoot", &json.from_root)?,
                second_root: hash("toRoot", &json.to_root)?,
                path: path(&json.path)?,
            })
        })()
        .with_context(|| format!("{}", file.display()))?;
        let ends = [anchored(proof.first, proof.first_root), anchored(proof.second, proof.second_root)];
        match proof.verify() {
            Err(e) => failures.push(format!("consistency proof {}: {e}", file.display())),
            Ok(()) if ends.contains(&Some(false)) => failures.push(format!(
                "consistency proof {}: a root of it is not the one the checkpoint of that size signed",
                file.display()
            )),
            Ok(()) if !anchors.is_empty() && ends == [None, None] => failures.push(format!(
                "consistency proof {}: neither of its sizes ({} and {}) is a checkpoint's given",
                file.display(),
                proof.first,
                proof.second
            )),
            Ok(()) => println!(
                "ok: the tree of size {} (root {}{}) is a prefix of the tree of size {} (root {}{})",
                proof.first,
                proof.first_root,
                if ends[0].is_some() { ", signed" } else { ", UNANCHORED" },
                proof.second,
                proof.second_root,
                if ends[1].is_some() { ", signed" } else { ", UNANCHORED" },
            ),
        }
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in failures {
        println!("FAILED: {failure}");
    }
    Ok(ExitCode::FAILURE)
}
