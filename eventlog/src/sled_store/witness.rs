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
    /// order, then the latest): each one signed by this store's key must verify, and the
    /// tree's root at each size must be the one signed. Signatures by another key (a key
    /// replaced by the operator) cannot be checked here; their roots still are.
    ///
    /// Errors: [`Error::HeadRecord`] for a bad signature, [`Error::HeadLost`] for a
    /// checkpoint beyond the head, [`Error::RootChanged`] naming the first checkpoint whose
    /// root differs and the range of seqs in which the change lies.
    pub(crate) fn check(&self, head: Head, checkpoints: &[(std::path::PathBuf, Checkpoint)]) -> Result<()> {
        let key = self.public_key();
        let mut last_good = Seq::ZERO;
        let mut other_keys = std::collections::BTreeSet::new();
        for (file, checkpoint) in checkpoints {
            let Some(signed) = &checkpoint.signed else { continue };
            match checkpoint.verify(key) {
                Ok(()) => {}
                Err(SignatureError::OtherKey { found, .. }) => {
                    other_keys.insert(found);
                }
                Err(e) => {
                    return Err(Error::HeadRecord {
                        file: file.clone(),
                        problem: format!("checkpoint at tree size {}: {e}", checkpoint.head.seq),
                    })
                }
            }
            if checkpoint.head.seq > head.seq {
                return Err(Error::HeadLost { file: file.clone(), recorded: checkpoint.head, found: head });
            }
            let found = self.root(checkpoint.head.seq)?;
            if found != signed.merkle_root {
                return Err(Error::RootChanged {
                    file: file.clone(),
                    tree_size: checkpoint.head.seq,
                    recorded: signed.merkle_root,
                    found,
                    changed_from: last_good.next(),
                });
            }
            last_good = last_good.max(checkpoint.head.seq);
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

    /// The inclusion proof of record `seq` in the tree of `tree_size` records, whose record
    /// hash is `record_hash`; `tree_size` at most `durable`.
    pub(crate) fn inclusion(
        &self,
        seq: Seq,
        tree_size: u64,
        record_hash: Hash32,
        durable: Seq,
    ) -> std::result::Result<InclusionProof, ProofError> {
        if tree_size > durable.0 {
            return Err(ProofError::SizeBeyondLog { size: tree_size, available: durable.0 });
        }
        let index = LogIndex::read(&self.index);
        let tree = index.tree();
        let leaf_index = seq.0.checked_sub(1).ok_or(ProofError::IndexBeyondSize { index: 0, size: tree_size })?;
        let path = tree.inclusion_proof(leaf_index, tree_size)?;
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
