//! Merkle proofs and signed checkpoints from a real store: every proof verifies, a forged
//! history fails against an earlier checkpoint, and opening a store checks it against every
//! kept checkpoint.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::{event, meta, open, runtime, stream};
use oacis_eventlog::checkpoint::{self, Checkpoint};
use oacis_eventlog::merkle::{self, MerkleTree, ProofError};
use oacis_eventlog::{codec, sled_layout, Error, EventStore, ExpectedVersion, Hash32, Seq, SledConfig, SledStore};

/// Appends `count` one-event records, issuing (and keeping) a checkpoint after each seq in
/// `checkpoints_at`; answers the checkpoints.
fn fill(store: &SledStore, count: u64, checkpoints_at: &[u64]) -> Vec<Checkpoint> {
    runtime().block_on(async {
        let mut issued = Vec::new();
        let first = store.head().seq.0;
        for i in first..first + count {
            let name = format!("customer-{}", i % 7);
            store
                .append(stream(&name), ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i)))
                .await
                .unwrap();
            if checkpoints_at.contains(&(i + 1)) {
                issued.push(store.issue_checkpoint().unwrap());
            }
        }
        issued
    })
}

#[test]
fn every_inclusion_and_consistency_proof_of_a_store_verifies_and_roots_match_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let issued = fill(&store, 300, &[1, 64, 300]);
    let key = store.checkpoint_key();
    for checkpoint in &issued {
        checkpoint.verify(&key).unwrap();
        assert_eq!(Some(store.merkle_root(checkpoint.head.seq.0).unwrap()), checkpoint.merkle_root());
    }
    assert_eq!(store.kept_checkpoints().unwrap(), issued);
    for size in 1..=300 {
        let root = store.merkle_root(size).unwrap();
        for seq in 1..=size {
            let proof = store.inclusion_proof(Seq(seq), size).unwrap();
            assert_eq!(proof.root, root);
            proof.verify().unwrap_or_else(|e| panic!("seq {seq} size {size}: {e}"));
        }
        for first in 1..=size {
            store.consistency_proof(first, size).unwrap().verify().unwrap();
        }
    }
    // Out of range: typed errors, never a proof.
    assert!(matches!(
        store.inclusion_proof(Seq(301), 301),
        Err(Error::Proof(ProofError::SizeBeyondLog { size: 301, available: 300 }))
    ));
    assert!(matches!(store.inclusion_proof(Seq(0), 10), Err(Error::Proof(ProofError::IndexBeyondSize { .. }))));
    assert!(matches!(store.inclusion_proof(Seq(11), 10), Err(Error::Proof(ProofError::IndexBeyondSize { .. }))));
    assert!(matches!(store.consistency_proof(0, 10), Err(Error::Proof(ProofError::BadSizes { .. }))));
    assert!(matches!(store.consistency_proof(11, 10), Err(Error::Proof(ProofError::BadSizes { .. }))));

    // Larger trees: random seqs and sizes, and any changed hash fails.
    fill(&store, 2_700, &[]);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound + 1
    };
    for _ in 0..300 {
        let size = next(3_000);
        let seq = next(size);
        let mut proof = store.inclusion_proof(Seq(seq), size).unwrap();
        proof.verify().unwrap();
        proof.record_hash.0[5] ^= 1;
        assert_eq!(proof.verify(), Err(ProofError::RootMismatch));
        let first = next(size);
        let mut consistency = store.consistency_proof(first, size).unwrap();
        consistency.verify().unwrap();
        if let Some(hash) = consistency.path.first_mut() {
            hash.0[0] ^= 1;
            assert!(consistency.verify().is_err());
        }
    }
}

/// Rewrites record `seq` and every later record so that the chain verifies again (a forger
/// with write access to the folder), leaving the checkpoint files alone.
fn forge_from(dir: &std::path::Path, seq: u64, head: u64) {
    let db = sled::Config::new().path(dir).segment_size(sled_layout::SEGMENT_SIZE).open().unwrap();
    let mut prev =
        codec::decode(Seq(seq - 1), &db.get(sled_layout::event_key(Seq(seq - 1))).unwrap().unwrap()).unwrap().hash;
    for s in seq..=head {
        let key = sled_layout::event_key(Seq(s));
        let mut record = codec::decode(Seq(s), &db.get(key).unwrap().unwrap()).unwrap();
        if s == seq {
            record.payload = br#"{"n":-1,"note":"forged"}"#.to_vec();
        }
        record.prev_hash = prev;
        let stored = codec::seal(&mut record);
        prev = record.hash;
        db.insert(key, stored).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn a_history_rewritten_after_a_checkpoint_fails_on_open_and_against_the_auditors_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (auditor_copy, key) = {
        let store = open(dir.path());
        let issued = fill(&store, 200, &[40, 120]);
        (issued[1].clone(), store.checkpoint_key())
    };
    forge_from(dir.path(), 50, 200);
    // The kept checkpoints name the range at once: 40 still matches, 120 does not.
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::RootChanged { changed_from: Seq(41), tree_size: Seq(120), .. }), "{err}");
    // The latest checkpoint cannot be re-signed, only removed or downgraded: a downgrade is
    // refused, and without it the kept checkpoints still name the range.
    let latest = checkpoint::read(dir.path()).unwrap().unwrap();
    checkpoint::write(dir.path(), &Checkpoint::unsigned(latest.head)).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::HeadRecord { problem, .. } if problem.contains("unsigned")), "{err}");
    std::fs::remove_file(checkpoint::path_in(dir.path())).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    match &err {
        Error::RootChanged { changed_from, tree_size, .. } => {
            assert_eq!((*changed_from, *tree_size), (Seq(41), Seq(120)))
        }
        other => panic!("expected the changed range, got {other}"),
    }
    assert!(err.to_string().starts_with("records 41..=120 were changed"), "{err}");

    // A forger who also removes the checkpoint files opens the store, but the auditor's copy
    // of checkpoint 120 (signature checked with the public key alone) exposes it.
    std::fs::remove_file(checkpoint::kept_path_in(dir.path())).unwrap();
    let store = open(dir.path());
    auditor_copy.verify(&key).unwrap();
    let proof = store.consistency_proof(120, 200).unwrap();
    let forged_proof = merkle::ConsistencyProof { first_root: auditor_copy.merkle_root().unwrap(), ..proof };
    assert_eq!(forged_proof.verify(), Err(ProofError::RootMismatch));
    // A checkpoint issued before the forgery does not match the forged tree either.
    assert_ne!(store.merkle_root(120).unwrap(), auditor_copy.merkle_root().unwrap());
}

#[test]
fn kept_checkpoints_beyond_the_log_or_with_a_forged_signature_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        fill(&store, 30, &[10, 30]);
    }
    let kept = checkpoint::kept_path_in(dir.path());
    let original = std::fs::read_to_string(&kept).unwrap();
    // A signature changed in its last hex digit.
    let line = original.lines().next().unwrap();
    let digit = line.rfind('"').unwrap() - 1;
    let flipped = if &line[digit..=digit] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &line[..digit], &line[digit + 1..]);
    std::fs::write(&kept, original.replacen(line, &forged, 1)).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err, Error::HeadRecord { problem, .. } if problem.contains("signature does not verify")),
        "{err}"
    );

    // A checkpoint of a longer log (signed by this store's key) than the folder holds.
    std::fs::write(&kept, &original).unwrap();
    let store = open(dir.path());
    let key_seed = std::fs::read_to_string(dir.path().join(checkpoint::KEY_FILE_NAME)).unwrap();
    drop(store);
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&key_seed.trim()[2 * i..2 * i + 2], 16).unwrap();
    }
    let signer = checkpoint::CheckpointKey::from_seed(&seed);
    let beyond = Checkpoint::sign(
        oacis_eventlog::Head { seq: Seq(31), hash: Hash32([1; 32]) },
        Hash32([2; 32]),
        oacis_eventlog::Timestamp::now(),
        &signer,
    );
    checkpoint::keep(dir.path(), &beyond).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err, Error::HeadLost { recorded, found, .. } if recorded.seq == Seq(31) && found.seq == Seq(30)),
        "{err}"
    );

    // The tree the store keeps is the tree of its records' hashes.
    std::fs::write(&kept, &original).unwrap();
    let store = open(dir.path());
    let mut tree = MerkleTree::new();
    let records = runtime().block_on(store.read_all(Seq(1), 100)).unwrap();
    records.iter().for_each(|r| tree.push(&r.hash));
    assert_eq!(tree.root(30).unwrap(), store.merkle_root(30).unwrap());
}

#[test]
fn a_tampered_checkpoint_or_a_missing_or_swapped_key_is_reported_as_such_not_as_a_changed_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        fill(&store, 20, &[10]);
    }
    // The latest checkpoint's tree size changed and its checksum line recomputed: the
    // signature fails, and the log is not blamed.
    let path = checkpoint::path_in(dir.path());
    let original = std::fs::read_to_string(&path).unwrap();
    let line = original.lines().next().unwrap().replacen("\"tree_size\":20", "\"tree_size\":19", 1);
    std::fs::write(&path, format!("{line}\n{}\n", blake3::hash(line.as_bytes()).to_hex())).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err, Error::HeadRecord { problem, .. } if problem.contains("signature does not verify") && problem.contains("not compared")),
        "{err}"
    );
    std::fs::write(&path, &original).unwrap();

    // The signing key removed: refused, not replaced by a new key that would check nothing.
    let key = dir.path().join(checkpoint::KEY_FILE_NAME);
    let seed = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::CheckpointKey { problem, .. } if problem.contains("missing")), "{err}");
    assert!(!key.exists(), "no key may be made over the missing one");
    // Another folder's key put in its place: refused, naming the key the checkpoints were
    // signed with.
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::CheckpointKey { problem, .. } if problem.contains("the key was replaced")), "{err}");
    assert!(err.to_string().contains("no backup holds it"), "{err}");
    // The latest checkpoint alone re-signed by another key, the folder's key unchanged: the
    // checkpoint file is named, not the key.
    std::fs::write(&key, &seed).unwrap();
    let forged = Checkpoint::sign(
        checkpoint::read(dir.path()).unwrap().unwrap().head,
        Hash32([5; 32]),
        oacis_eventlog::Timestamp::now(),
        &checkpoint::CheckpointKey::from_seed(&[0xab; 32]),
    );
    checkpoint::write(dir.path(), &forged).unwrap();
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err, Error::HeadRecord { problem, .. } if problem.contains("checkpoint file was replaced")),
        "{err}"
    );
    std::fs::write(&path, &original).unwrap();
    open(dir.path());
}
