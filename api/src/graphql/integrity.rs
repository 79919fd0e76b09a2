//! What auditors and operators ask of the log itself: signed checkpoints, RFC 9162 Merkle
//! inclusion and consistency proofs (`audit.read`), and backups taken while the server runs
//! (`backup.run`).
//!
//! Every answer is made of hashes, sizes and signatures, never of payloads, so it reveals no
//! personal data. Proofs are checked offline with `oacis proof verify` and the public key
//! alone; the objects returned here are the files it reads.

use async_graphql::{Context, Enum, Object, SimpleObject};
use oacis_domain::authz::{Permission, Resource};
use oacis_domain::FieldCode;
use oacis_eventlog::backup::Manifest;
use oacis_eventlog::checkpoint::{Checkpoint, PublicKey};
use oacis_eventlog::merkle::ProofError;
use oacis_eventlog::{Hash32, Seq};

use super::error::{ApiError, ApiResult};
use super::{app, caller};
use crate::backups::{Job, JobState, StartError};

/// A signed checkpoint of the log.
#[derive(SimpleObject, Debug, Clone)]
pub struct CheckpointNode {
    /// Records covered (the head's seq).
    pub tree_size: u64,
    /// Hash of the record at `treeSize`, hex.
    pub head_hash: String,
    /// Merkle root over records `1..=treeSize` (RFC 9162 structure, BLAKE3), hex.
    pub merkle_root: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// The signing key's id (16 hex digits).
    pub key_id: String,
    /// Ed25519 signature, 128 hex digits.
    pub signature: String,
    /// The public key that signed it (64 hex digits), when it is this store's key; `null` for
    /// a checkpoint signed by another key (one restored from backups made before the key was
    /// replaced): check that one with the key whose id is `keyId`.
    pub public_key: Option<String>,
    /// The checkpoint's JSON line, byte for byte: save it to check it offline
    /// (`oacis proof verify --checkpoint`).
    pub line: String,
}

impl CheckpointNode {
    fn of(checkpoint: &Checkpoint, key: &PublicKey) -> ApiResult<CheckpointNode> {
        let signed = checkpoint.signed.as_ref().ok_or_else(|| ApiError::internal("unsigned checkpoint"))?;
        Ok(CheckpointNode {
            tree_size: checkpoint.head.seq.0,
            head_hash: checkpoint.head.hash.to_hex(),
            merkle_root: signed.merkle_root.to_hex(),
            issued_at: signed.issued_at.to_rfc3339().unwrap_or_default(),
            key_id: signed.key_id.clone(),
            signature: signed.signature.iter().map(|b| format!("{b:02x}")).collect(),
            public_key: (signed.key_id == key.key_id()).then(|| key.to_hex()),
            line: checkpoint.to_line(),
        })
    }
}

/// An inclusion proof (RFC 9162 §2.1.3): record `seq` is in the tree of `treeSize` records.
#[derive(SimpleObject, Debug, Clone)]
pub struct InclusionProofNode {
    /// The record.
    pub seq: u64,
    /// The tree size the proof is against.
    pub tree_size: u64,
    /// The record's hash (the leaf's input), hex.
    pub record_hash: String,
    /// Sibling hashes from the leaf up, hex.
    pub path: Vec<String>,
    /// The root at `treeSize`, hex.
    pub root: String,
}

/// A consistency proof (RFC 9162 §2.1.4): the tree of `fromSize` records is a prefix of the
/// tree of `toSize` records.
#[derive(SimpleObject, Debug, Clone)]
pub struct ConsistencyProofNode {
    /// The older size.
    pub from_size: u64,
    /// The newer size.
    pub to_size: u64,
    /// Root at `fromSize`, hex.
    pub from_root: String,
    /// Root at `toSize`, hex.
    pub to_root: String,
    /// The proof's hashes, hex.
    pub path: Vec<String>,
}

/// A complete backup in the server's backup folder.
#[derive(SimpleObject, Debug, Clone)]
pub struct BackupNode {
    /// Its folder name.
    pub name: String,
    /// Whether it continues an earlier backup.
    pub incremental: bool,
    /// First seq held.
    pub first_seq: u64,
    /// Last seq held.
    pub last_seq: u64,
    /// Records held.
    pub event_count: u64,
    /// Hash of the last record, hex.
    pub head_hash: String,
    /// Merkle root at `lastSeq`, hex.
    pub merkle_root: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

impl BackupNode {
    fn of(name: String, manifest: &Manifest) -> BackupNode {
        BackupNode {
            name,
            incremental: manifest.previous.is_some(),
            first_seq: manifest.first_seq,
            last_seq: manifest.last_seq,
            event_count: manifest.event_count,
            head_hash: manifest.head_hash.to_hex(),
            merkle_root: manifest.merkle_root.to_hex(),
            created_at: manifest.created_at.clone(),
        }
    }
}

/// Where a backup job stands.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    /// Writing.
    Running,
    /// Complete.
    Done,
    /// Failed; nothing was left behind.
    Failed,
}

/// A backup job.
#[derive(SimpleObject, Debug, Clone)]
pub struct BackupJobNode {
    /// The backup's folder name.
    pub name: String,
    /// Whether it continues an earlier backup.
    pub incremental: bool,
    /// Where it stands.
    pub state: BackupState,
    /// Records written so far.
    pub done: u64,
    /// Records to write.
    pub total: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The backup, once done.
    pub backup: Option<BackupNode>,
}

impl From<Job> for BackupJobNode {
    fn from(job: Job) -> Self {
        BackupJobNode {
            backup: job.manifest.as_ref().map(|m| BackupNode::of(job.name.clone(), m)),
            name: job.name,
            incremental: job.incremental,
            state: match job.state {
                JobState::Running => BackupState::Running,
                JobState::Done => BackupState::Done,
                JobState::Failed => BackupState::Failed,
            },
            done: job.done,
            total: job.total,
            error: job.error,
        }
    }
}

fn hexes(hashes: &[Hash32]) -> Vec<String> {
    hashes.iter().map(Hash32::to_hex).collect()
}

/// A proof asked for outside the log, as a VALIDATION error naming the argument at fault
/// in the API's own terms (seqs from 1, sizes by their argument names).
fn proof_error(error: oacis_eventlog::Error, asked: Asked) -> ApiError {
    let oacis_eventlog::Error::Proof(e) = error else { return ApiError::internal(error) };
    let (field, message) = match (e, asked) {
        (ProofError::SizeBeyondLog { size, available }, Asked::Inclusion { .. }) => {
            ("treeSize", format!("treeSize {size} is beyond the log's {available} acknowledged events"))
        }
        (ProofError::SizeBeyondLog { size, available }, Asked::Consistency { .. }) => {
            ("toSize", format!("toSize {size} is beyond the log's {available} acknowledged events"))
        }
        (_, Asked::Inclusion { seq, tree_size }) => {
            ("seq", format!("seq {seq} is not in a tree of {tree_size} events (seqs run from 1 to treeSize)"))
        }
        (_, Asked::Consistency { from_size, to_size }) => {
            ("fromSize", format!("fromSize {from_size} must be at least 1 and at most toSize {to_size}"))
        }
    };
    ApiError::field(field, FieldCode::OutOfRange, message)
}

/// The arguments of a proof query, for its errors.
#[derive(Debug, Clone, Copy)]
enum Asked {
    Inclusion { seq: u64, tree_size: u64 },
    Consistency { from_size: u64, to_size: u64 },
}

fn require(ctx: &Context<'_>, permission: Permission) -> ApiResult<()> {
    caller(ctx)?.require(permission, &Resource::global())?;
    Ok(())
}

/// Checkpoints and proofs.
#[derive(Default, Debug)]
pub struct IntegrityQuery;

#[Object]
impl IntegrityQuery {
    /// The latest signed checkpoint (`audit.read`): at most about a second behind the
    /// acknowledged head while writes go on.
    async fn checkpoint(&self, ctx: &Context<'_>) -> ApiResult<CheckpointNode> {
        require(ctx, Permission::AuditRead)?;
        let store = embedded(ctx)?;
        CheckpointNode::of(&store.latest_checkpoint(), &store.checkpoint_key())
    }

    /// Every kept checkpoint, oldest first (`audit.read`): a later log can be checked
    /// against each with `consistencyProof`.
    async fn checkpoints(&self, ctx: &Context<'_>) -> ApiResult<Vec<CheckpointNode>> {
        require(ctx, Permission::AuditRead)?;
        let store = embedded(ctx)?;
        let key = store.checkpoint_key();
        let kept = tokio::task::spawn_blocking(move || store.kept_checkpoints())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        kept.iter().map(|c| CheckpointNode::of(c, &key)).collect()
    }

    /// The inclusion proof of event `seq` in the tree of `treeSize` events (`audit.read`;
    /// `treeSize` at most the acknowledged head). VALIDATION on `seq` or `treeSize` when
    /// out of range.
    async fn inclusion_proof(&self, ctx: &Context<'_>, seq: u64, tree_size: u64) -> ApiResult<InclusionProofNode> {
        require(ctx, Permission::AuditRead)?;
        let store = embedded(ctx)?;
        let proof = tokio::task::spawn_blocking(move || store.inclusion_proof(Seq(seq), tree_size))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| proof_error(e, Asked::Inclusion { seq, tree_size }))?;
        Ok(InclusionProofNode {
            seq: proof.seq.0,
            tree_size: proof.tree_size,
            record_hash: proof.record_hash.to_hex(),
            path: hexes(&proof.path),
            root: proof.root.to_hex(),
        })
    }

    /// The consistency proof between tree sizes `fromSize` and `toSize` (`audit.read`;
    /// `0 < fromSize <= toSize <=` the acknowledged head).
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        from_size: u64,
        to_size: u64,
    ) -> ApiResult<ConsistencyProofNode> {
        require(ctx, Permission::AuditRead)?;
        let proof = embedded(ctx)?
            .consistency_proof(from_size, to_size)
            .map_err(|e| proof_error(e, Asked::Consistency { from_size, to_size }))?;
        Ok(ConsistencyProofNode {
            from_size: proof.first,
            to_size: proof.second,
            from_root: proof.first_root.to_hex(),
            to_root: proof.second_root.to_hex(),
            path: hexes(&proof.path),
        })
    }

    /// The running or last backup job (`backup.run`), if any since the server started.
    async fn backup_job(&self, ctx: &Context<'_>) -> ApiResult<Option<BackupJobNode>> {
        require(ctx, Permission::BackupRun)?;
        Ok(app(ctx)?.backups.job().map(BackupJobNode::from))
    }

    /// The complete backups in the backup folder, oldest head first (`backup.run`).
    async fn backups(&self, ctx: &Context<'_>) -> ApiResult<Vec<BackupNode>> {
        require(ctx, Permission::BackupRun)?;
        let listed = app(ctx)?.backups.list().map_err(start_error)?;
        Ok(listed.into_iter().map(|(name, manifest)| BackupNode::of(name, &manifest)).collect())
    }
}

/// The embedded store, for what only it keeps (signed checkpoints, Merkle proofs): CONFLICT
/// on PostgreSQL, naming what to use there instead.
fn embedded(ctx: &Context<'_>) -> ApiResult<oacis_eventlog::SledStore> {
    app(ctx)?.bus.store().sled().cloned().ok_or_else(|| ApiError::Conflict {
        message: "signed checkpoints and Merkle proofs are kept by the embedded store only; this log is on \
                  PostgreSQL: verify it with the `verifyChain` query, or copy it with `oacis migrate --to NEW_DIR` \
                  and run `oacis verify` and `oacis export` there"
            .into(),
        version: None,
    })
}

fn start_error(error: StartError) -> ApiError {
    match error {
        StartError::Folder(_) => ApiError::internal(error),
        other => ApiError::Conflict { message: other.to_string(), version: None },
    }
}

/// Issuing checkpoints and starting backups.
#[derive(Default, Debug)]
pub struct IntegrityMutation;

#[Object]
impl IntegrityMutation {
    /// Issues a checkpoint now, at the acknowledged head, and keeps it (`audit.read`).
    async fn issue_checkpoint(&self, ctx: &Context<'_>) -> ApiResult<CheckpointNode> {
        require(ctx, Permission::AuditRead)?;
        let store = embedded(ctx)?;
        let key = store.checkpoint_key();
        let checkpoint = tokio::task::spawn_blocking(move || store.issue_checkpoint())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        CheckpointNode::of(&checkpoint, &key)
    }

    /// Starts a backup into the server's backup folder (`backup.run`), while writes go on:
    /// incremental on the newest backup of this log there (full if none), or full. Follow it
    /// with `backupJob`. CONFLICT when no `--backup-dir` is set, when one is running, or when
    /// nothing was written since the newest backup.
    async fn run_backup(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = true)] incremental: bool,
    ) -> ApiResult<BackupJobNode> {
        require(ctx, Permission::BackupRun)?;
        let state = app(ctx)?;
        let store = state.bus.store().sled().ok_or(StartError::NotEmbedded).map_err(start_error)?;
        Ok(state.backups.start(store, incremental).map_err(start_error)?.into())
    }
}
