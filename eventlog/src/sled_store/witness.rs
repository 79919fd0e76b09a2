//! The store's outside witness: signed checkpoints over the in-memory Merkle tree, the check
//! of a log against every checkpoint when it opens, and the proofs auditors ask for.
//!
//! Invariants: a checkpoint is signed over the root of exactly its `tree_size` records,
//! computed from the same tree the proofs come from; proofs are only given for sizes up to
//! the durable head the caller passes (the tree may hold applied records not yet durable).

use std::sync::{Arc, RwLock};

use super::index::LogIndex;
use crate::checkpoint::{Checkpoint, Occasion, PublicKey, Recorder, SignatureError};
use crate::error::{Error, Result};
use crate::merkle::{ConsistencyProof, InclusionProof, ProofError};
use crate::model::{Hash32, Seq};
use crate::store::Head;

/// Checks the signatures of a folder's checkpoints before the log is compared with them, so
/// that a tampered checkpoint is reported as such and not as a changed log: the latest
/// (`recorded`) must be signed by this folder's key `key` (another key means the key file was
/// replaced); a kept one signed by this key must verify (kept ones of other keys come from
/// restored backups and are left to the holders of those keys).
///
/// Errors: [`Error::CheckpointKey`] for a latest checkpoint of another key;
/// [`Error::HeadRecord`] naming the file (and line) of a signature that does not verify.
pub(crate) fn check_signatures(
    key: &PublicKey,
    dir: &std::path::Path,
    recorded: Option<&Checkpoint>,
    kept: &[Checkpoint],
) -> Result<()> {
    let key_file = dir.join(crate::checkpoint::KEY_FILE_NAME);
    let trusted = crate::checkpoint::trusted_keys(dir);
    let mut ours = false;
    let mut untrusted: Option<(usize, String)> = None;
    for (line, checkpoint) in kept.iter().enumerate() {
        match checkpoint.verify(key) {
            Ok(()) => ours = true,
            Err(SignatureError::OtherKey { found, .. }) => {
                if !trusted.contains(&found) && untrusted.is_none() {
                    untrusted = Some((line + 1, found));
                }
            }
            Err(e) => {
                return Err(Error::HeadRecord {
                    file: crate::checkpoint::kept_path_in(dir),
                    problem: format!("line {}, the checkpoint at tree size {}: {e}", line + 1, checkpoint.head.seq),
                })
            }
        }
    }
    if let Some((line, found)) = untrusted {
        // Checkpoints of a key the folder never took over (a restore records the backups'
        // key): either the folder's key was replaced, or the line was.
        return Err(if ours {
            Error::HeadRecord {
                file: crate::checkpoint::kept_path_in(dir),
                problem: format!("line {line} is signed by key {found}, which this folder does not trust"),
            }
        } else {
            Error::CheckpointKey {
                file: key_file,
                problem: format!(
                    "it is key {}, but the folder's kept checkpoints were signed by key {found}, which it does not trust: \
                     the key was replaced",
                    key.key_id()
                ),
            }
        });
    }
    if let Some(latest) = recorded.filter(|c| c.signed.is_some()) {
        match latest.verify(key) {
            Ok(()) => {}
            Err(SignatureError::OtherKey { found, expected }) if ours => {
                return Err(Error::HeadRecord {
                    file: crate::checkpoint::path_in(dir),
                    problem: format!(
                        "it names key {found}, but this folder's key {expected} signed its kept checkpoints: the checkpoint \
                         file was replaced; the log itself was not compared"
                    ),
                })
            }
            Err(SignatureError::OtherKey { found, expected }) => {
                return Err(Error::CheckpointKey {
                    file: key_file,
                    problem: format!("it is key {expected}, but the latest checkpoint names key {found}"),
                })
            }
            Err(e) => {
                return Err(Error::HeadRecord {
                    file: crate::checkpoint::path_in(dir),
                    problem: format!("the checkpoint at tree size {}: {e}; the log itself was not compared", latest.head.seq),
                })
            }
        }
    }
    Ok(())
}

/// The recorder and the tree it signs.
#[derive(Debug)]
pub(crate) struct Witness {
    pub(crate) recorder: Recorder,
    pub(crate) index: Arc<RwLock<LogIndex>>,
}

impl Witness {
    /// The Merkle root over the first `seq` records.
    pub(crate) fn root(&self, seq: Seq) -> Result<Hash32> {
        LogIndex::read(&self.index).tree().root(seq.0).map_err(|e| Error::corrupt(seq, e.to_string()))
    }

    /// Records the durable `head` as `occasion` asks; answers the latest checkpoint.
    pub(crate) fn record(&self, head: Head, occasion: Occasion) -> Result<Checkpoint> {
        self.recorder.record(head, |seq| self.root(seq), occasion)
    }

    /// The public key of this store's checkpoints.
    pub(crate) fn public_key(&self) -> &PublicKey {
        self.recorder.public_key()
    }

    /// Checks the log (whose durable head is `head`) against `checkpoints` (kept ones in
    /// order, then the latest; their signatures already checked by [`check_signatures`]):
    /// none may be beyond the head, and the tree's root at each size must be the one signed.
    ///
    /// Errors: [`Error::HeadLost`] naming the largest checkpointed size beyond the head;
    /// [`Error::RootChanged`] for a checkpoint of this store's key whose root differs, naming
    /// the seqs between the largest smaller size that still matches and it;
    /// [`Error::HeadRecord`] for one of another key that does not match (the log changed since
    /// that key signed, or the line is not genuine: this store cannot tell).
    pub(crate) fn check(&self, head: Head, checkpoints: &[(std::path::PathBuf, Checkpoint)]) -> Result<()> {
        let key_id = self.public_key().key_id();
        let mut matched: Vec<Seq> = Vec::new();
        let mut other_keys = std::collections::BTreeSet::new();
        let mut ordered: Vec<&(std::path::PathBuf, Checkpoint)> = checkpoints.iter().collect();
        ordered.sort_by_key(|(_, c)| c.head.seq);
        // Roots first, up to the head: a history changed and then cut short is reported as
        // changed, not only as lost.
        for (file, checkpoint) in ordered.iter().copied().filter(|(_, c)| c.head.seq <= head.seq) {
            let Some(signed) = &checkpoint.signed else { continue };
            let ours = signed.key_id == key_id;
            if !ours {
                other_keys.insert(signed.key_id.clone());
            }
            let found = self.root(checkpoint.head.seq)?;
            if found == signed.merkle_root {
                matched.push(checkpoint.head.seq);
                continue;
            }
            if !ours {
                return Err(Error::HeadRecord {
                    file: file.clone(),
                    problem: format!(
                        "a checkpoint at tree size {} signed by key {} (not this store's key {key_id}) names root {}, \
                         but the log's root there is {found}: the log changed after that key signed, or the line is not genuine",
                        checkpoint.head.seq, signed.key_id, signed.merkle_root
                    ),
                });
            }
            let below = matched.iter().copied().filter(|s| *s < checkpoint.head.seq).max().unwrap_or(Seq::ZERO);
            return Err(Error::RootChanged {
                file: file.clone(),
                tree_size: checkpoint.head.seq,
                recorded: signed.merkle_root,
                found,
                changed_from: below.next(),
            });
        }
        if let Some((file, beyond)) =
            ordered.iter().filter(|(_, c)| c.head.seq > head.seq).max_by_key(|(_, c)| c.head.seq)
        {
            return Err(Error::HeadLost { file: file.clone(), recorded: beyond.head, found: head });
        }
        if !other_keys.is_empty() {
            tracing::info!(
                keys = ?other_keys,
                "some kept checkpoints were signed by other keys (restored from backups): their roots match the log; \
                 their signatures are for the holders of those public keys to check"
            );
        }
        Ok(())
    }

    /// The inclusion proof of record `seq` (at least 1) in the tree of `tree_size` records,
    /// whose record hash is `record_hash`; the caller has checked both against the durable head.
    pub(crate) fn inclusion(
        &self,
        seq: Seq,
        tree_size: u64,
        record_hash: Hash32,
    ) -> std::result::Result<InclusionProof, ProofError> {
        let index = LogIndex::read(&self.index);
        let tree = index.tree();
        let path = tree.inclusion_proof(seq.0.saturating_sub(1), tree_size)?;
        Ok(InclusionProof { seq, tree_size, record_hash, path, root: tree.root(tree_size)? })
    }

    /// The consistency proof between tree sizes `first` and `second`, at most `durable`.
    pub(crate) fn consistency(
        &self,
        first: u64,
        second: u64,
        durable: Seq,
    ) -> std::result::Result<ConsistencyProof, ProofError> {
        if second > durable.0 {
            return Err(ProofError::SizeBeyondLog { size: second, available: durable.0 });
        }
        let index = LogIndex::read(&self.index);
        let tree = index.tree();
        let path = tree.consistency_proof(first, second)?;
        Ok(ConsistencyProof { first, second, first_root: tree.root(first)?, second_root: tree.root(second)?, path })
    }
}
