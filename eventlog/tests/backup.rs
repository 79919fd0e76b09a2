//! Backups: a chain of a full backup and incrementals verifies and restores byte for byte;
//! a changed byte, a missing middle incremental, an incremental of another store and a
//! non-empty target are refused with the exact reason, and a refused restore writes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{event, meta, open, runtime, stream};
use oacis_eventlog::backup::{self, BackupError, Manifest};
use oacis_eventlog::{EventStore, ExpectedVersion, Seq, SledConfig, SledStore};

fn append(store: &SledStore, from: u64, count: u64) {
    runtime().block_on(async {
        for i in from..from + count {
            let name = format!("customer-{}", i % 5);
            store
                .append(stream(&name), ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i)))
                .await
                .unwrap();
        }
    });
}

/// A store with a full backup after 40 records and incrementals after 70 and 100.
fn chain(root: &Path, id_offset: u64) -> (SledStore, Vec<PathBuf>) {
    let store = open(&root.join("data"));
    let mut backups: Vec<PathBuf> = Vec::new();
    let mut previous: Option<Manifest> = None;
    for (n, count) in [40, 30, 30].into_iter().enumerate() {
        append(&store, id_offset + store.head().seq.0, count);
        let out = root.join(format!("b{n}"));
        let manifest = backup::write_backup(&store, previous.as_ref(), &out, &mut |_| {}).unwrap();
        assert_eq!(manifest.last_seq, store.head().seq.0);
        backups.push(out);
        previous = Some(manifest);
    }
    (store, backups)
}

#[test]
fn a_chain_of_backups_verifies_and_restores_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backups) = chain(dir.path(), 0);
    let manifests: Vec<Manifest> = backups.iter().map(|b| Manifest::read(b).unwrap()).collect();
    assert_eq!(
        manifests.iter().map(|m| (m.first_seq, m.last_seq, m.event_count)).collect::<Vec<_>>(),
        vec![(1, 40, 40), (41, 70, 30), (71, 100, 30)]
    );
    assert_eq!(manifests[1].previous.map(|l| l.seq), Some(40));
    let report = backup::verify_chain(&backups, Some(&store.checkpoint_key()), &mut |_| {}).unwrap();
    assert_eq!(report.head, store.head());
    assert_eq!(report.merkle_root, store.merkle_root(100).unwrap());
    // Nothing new: no empty incremental.
    let err = backup::write_backup(&store, manifests.last(), &dir.path().join("b3"), &mut |_| {}).unwrap_err();
    assert!(matches!(err, BackupError::Nothing(_)), "{err}");
    assert!(!dir.path().join("b3").exists());
    let original = runtime().block_on(store.read_all(Seq(1), 1_000)).unwrap();
    drop(store);

    let target = dir.path().join("restored");
    let restored =
        backup::restore(&backups, &target, None, None, &mut |_| Ok(()), &mut |_| Ok(()), &mut |_, _| {}).unwrap();
    assert_eq!(restored.head.seq, Seq(100));
    let store = SledStore::open(SledConfig::new(&target)).unwrap();
    assert_eq!(runtime().block_on(store.read_all(Seq(1), 1_000)).unwrap(), original);
    assert_eq!(store.merkle_root(100).unwrap(), report.merkle_root);
    // The backups' checkpoints are kept in the restored folder (signed by the old key).
    let kept = store.kept_checkpoints().unwrap();
    assert_eq!(kept.iter().map(|c| c.head.seq.0).collect::<Vec<_>>()[..3], [40, 70, 100]);
    drop(store);
    // A restore never writes into a folder that holds anything.
    let err =
        backup::restore(&backups, &target, None, None, &mut |_| Ok(()), &mut |_| Ok(()), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, BackupError::TargetNotEmpty { .. }), "{err}");
    // A restore refused by the caller's own check after the chain verified writes nothing,
    // not even its temporary folder; one into an empty folder replaces it.
    let other = dir.path().join("refused");
    let err = backup::restore(
        &backups,
        &other,
        None,
        None,
        &mut |_| Err(BackupError::Refused("no".into())),
        &mut |_| Ok(()),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, BackupError::Refused(_)), "{err}");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().contains("refused")), "{leftovers:?}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    backup::restore(&backups, &empty, None, None, &mut |_| Ok(()), &mut |_| Ok(()), &mut |_, _| {}).unwrap();
    assert_eq!(SledStore::open(SledConfig::new(&empty)).unwrap().head().seq, Seq(100));
}

/// Runs `verify_chain` and, when it fails, a restore into a fresh folder that must stay
/// absent; answers the error.
fn refused(backups: &[PathBuf]) -> BackupError {
    let err = backup::verify_chain(backups, None, &mut |_| {}).unwrap_err();
    let target = backups[0].with_file_name("never-restored");
    assert!(backup::restore(backups, &target, None, None, &mut |_| Ok(()), &mut |_| Ok(()), &mut |_, _| {}).is_err());
    assert!(!target.exists(), "a refused restore wrote {}", target.display());
    err
}

#[test]
fn one_changed_byte_anywhere_in_a_backup_is_refused_naming_the_seq_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, backups) = chain(dir.path(), 0);
    // A byte inside a record's payload in the middle incremental: its seq is named.
    let events = backups[1].join(backup::EVENTS);
    let original = std::fs::read(&events).unwrap();
    let line_start = original.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(4).unwrap().0 + 1;
    let at = line_start + original[line_start..].windows(5).position(|w| w == b"note\\").unwrap();
    let mut changed = original.clone();
    changed[at] = b'N';
    std::fs::write(&events, &changed).unwrap();
    match refused(&backups) {
        BackupError::Record { seq, file, .. } => {
            assert_eq!(seq, Seq(46));
            assert_eq!(file, events);
        }
        other => panic!("expected the record, got {other}"),
    }
    std::fs::write(&events, &original).unwrap();

    // A byte of the manifest: the field is named.
    let manifest = backups[2].join(backup::MANIFEST);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let digit = text.find("\"head_hash\": \"").unwrap() + 15;
    let flipped = if &text[digit..=digit] == "0" { "1" } else { "0" };
    std::fs::write(&manifest, format!("{}{flipped}{}", &text[..digit], &text[digit + 1..])).unwrap();
    match refused(&backups) {
        BackupError::Field { field, file, .. } => {
            assert_eq!(field, "head_hash");
            assert_eq!(file, manifest);
        }
        other => panic!("expected the field, got {other}"),
    }
    std::fs::write(&manifest, &text).unwrap();
    backup::verify_chain(&backups, None, &mut |_| {}).unwrap();

    // Every single-byte change of a whole (small) backup is caught.
    let small = dir.path().join("small");
    let store = open(&dir.path().join("small-data"));
    append(&store, 0, 3);
    backup::write_backup(&store, None, &small, &mut |_| {}).unwrap();
    for name in [backup::EVENTS, backup::MANIFEST] {
        let path = small.join(name);
        let bytes = std::fs::read(&path).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(backup::verify_chain(std::slice::from_ref(&small), None, &mut |_| {}).is_err(), "{name} byte {i}");
        }
        std::fs::write(&path, &bytes).unwrap();
    }
}

#[test]
fn a_missing_middle_incremental_an_incremental_first_or_of_another_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, backups) = chain(dir.path(), 0);
    match refused(&[backups[0].clone(), backups[2].clone()]) {
        BackupError::BrokenLink { expected, found, .. } => assert_eq!((expected.seq, found.seq), (Seq(40), Seq(70))),
        other => panic!("expected a broken link, got {other}"),
    }
    let message =
        backup::verify_chain(&[backups[0].clone(), backups[2].clone()], None, &mut |_| {}).unwrap_err().to_string();
    assert!(message.contains("a backup between them is missing"), "{message}");
    let not_full = refused(&backups[1..]);
    assert!(matches!(not_full, BackupError::NotFull { .. }));
    assert!(not_full.to_string().contains("no full backup was given"), "{not_full}");
    // A folder that is not there is a wrong argument (an I/O error), not a damaged backup.
    let nowhere = dir.path().join("no-such-backup");
    assert!(matches!(refused(&[nowhere]), BackupError::Io { .. }));
    // A backup folder without its records is the backup's fault, named as such.
    let events = backups[1].join(backup::EVENTS);
    std::fs::rename(&events, events.with_extension("moved")).unwrap();
    match refused(&backups) {
        BackupError::Field { file, field, .. } => assert_eq!((file, field.as_str()), (events.clone(), backup::EVENTS)),
        other => panic!("expected the missing file named, got {other}"),
    }
    std::fs::rename(events.with_extension("moved"), &events).unwrap();
    // Given in any order, a chain is checked in the order of its seqs; the same backup twice
    // is refused naming it.
    let shuffled = [backups[2].clone(), backups[0].clone(), backups[1].clone()];
    assert_eq!(backup::verify_chain(&shuffled, None, &mut |_| {}).unwrap().backups, backups);
    match refused(&[backups[0].clone(), backups[1].clone(), backups[1].clone()]) {
        BackupError::Field { field, problem, .. } => {
            assert_eq!(field, "first_seq");
            assert!(problem.contains("given twice"), "{problem}");
        }
        other => panic!("expected the duplicate named, got {other}"),
    }

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_other_store, other_backups) = chain(&other, 10_000);
    match refused(&[backups[0].clone(), other_backups[1].clone()]) {
        BackupError::OtherStore { file, .. } => assert_eq!(file, other_backups[1].join(backup::MANIFEST)),
        other => panic!("expected another store, got {other}"),
    }
    // An incremental made from another store's backup is refused when it is made: that store's
    // key did not sign it.
    let store = open(&dir.path().join("third"));
    append(&store, 20_000, 50);
    let foreign = Manifest::read(&backups[0]).unwrap();
    let err = backup::write_backup(&store, Some(&foreign), &dir.path().join("x"), &mut |_| {}).unwrap_err();
    assert!(matches!(&err, BackupError::Field { field, .. } if field == "signature"), "{err}");
}
