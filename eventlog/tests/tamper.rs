//! Tampering with stored records (in sled) or exported lines is detected at the right seq.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{event, meta, open, runtime, stream};
use oacis_eventlog::{
    checkpoint, codec, export, sled_layout, Error, EventStore, ExpectedVersion, Seq, SledConfig, SledStore,
};

/// A store with `count` records over three streams, closed.
fn filled_store(dir: &std::path::Path, count: u64) {
    runtime().block_on(async {
        let store = open(dir);
        for i in 0..count {
            let name = format!("customer-{}", i % 3);
            store
                .append(stream(&name), ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i)))
                .await
                .expect("append");
        }
    });
}

fn raw_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new().path(dir).segment_size(sled_layout::SEGMENT_SIZE).open().expect("raw sled")
}

/// The seq at which opening and verifying the store first fails, if any.
fn first_bad_seq(dir: &std::path::Path) -> Option<Seq> {
    let outcome = SledStore::open(SledConfig::new(dir)).and_then(|store| store.verify(&mut |_| {}));
    match outcome {
        Ok(_) => None,
        Err(Error::Corrupt { seq, .. }) => Some(seq),
        Err(other) => panic!("expected corruption to be reported as such, got {other}"),
    }
}

#[test]
fn changing_any_byte_of_a_stored_record_is_detected_at_its_seq() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 12);
    let target = Seq(5);
    let key = sled_layout::event_key(target);
    let original = raw_sled(dir.path()).get(key)?.expect("record 5").to_vec();
    for i in 0..original.len() {
        let mut bad = original.clone();
        bad[i] ^= 0x01;
        {
            let db = raw_sled(dir.path());
            db.insert(key, bad)?;
            db.flush()?;
        }
        assert_eq!(first_bad_seq(dir.path()), Some(target), "byte {i} of {}", original.len());
    }
    {
        let db = raw_sled(dir.path());
        db.insert(key, original)?;
        db.flush()?;
    }
    assert_eq!(first_bad_seq(dir.path()), None);
    Ok(())
}

#[test]
fn a_rewritten_record_with_a_recomputed_hash_breaks_the_link_to_the_next_seq() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 12);
    {
        let db = raw_sled(dir.path());
        let key = sled_layout::event_key(Seq(5));
        let mut record = codec::decode(Seq(5), &db.get(key)?.expect("record"))?;
        record.payload = br#"{"n":999}"#.to_vec();
        let stored = codec::seal(&mut record);
        db.insert(key, stored)?;
        db.flush()?;
    }
    assert_eq!(first_bad_seq(dir.path()), Some(Seq(6)));
    Ok(())
}

#[test]
fn a_removed_record_is_detected_at_its_seq() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 12);
    {
        let db = raw_sled(dir.path());
        db.remove(sled_layout::event_key(Seq(4)))?;
        db.flush()?;
    }
    assert_eq!(first_bad_seq(dir.path()), Some(Seq(4)));
    Ok(())
}

#[test]
fn a_version_gap_beyond_the_checked_tail_stops_the_store_from_opening() -> anyhow::Result<()> {
    // The index rebuild on open checks every record's stream version, even where the tail
    // check (the last `TAIL_CHECK_RECORDS`) does not reach; so does the read-back of the
    // records under an index snapshot.
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), oacis_eventlog::TAIL_CHECK_RECORDS + 20);
    {
        let db = raw_sled(dir.path());
        let key = sled_layout::event_key(Seq(5));
        let mut record = codec::decode(Seq(5), &db.get(key)?.expect("record"))?;
        record.version = oacis_eventlog::Version(record.version.0 + 1);
        db.insert(key, codec::seal(&mut record))?;
        db.flush()?;
    }
    // An open from the index snapshot (written at the clean close) finds it when it reads
    // the records under the snapshot back, and refuses appends from then on.
    let store = SledStore::open(SledConfig::new(dir.path()))?;
    assert!(store.indexes_from_snapshot() > Seq(5));
    let err = runtime().block_on(store.records_checked()).unwrap_err();
    assert!(err.to_string().contains("corrupt record at seq 5"), "{err}");
    drop(store);
    std::fs::remove_file(oacis_eventlog::sled_snapshot::path_in(dir.path()))?;
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: Seq(5), .. }), "{err}");
    Ok(())
}

fn export_of(dir: &std::path::Path) -> Vec<u8> {
    let store = open(dir);
    let mut out = Vec::new();
    export::write_export(store.records(Seq::FIRST), &mut out, &mut |_| {}).expect("export");
    out
}

#[test]
fn changing_any_byte_of_an_export_is_detected_at_that_lines_seq() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 4);
    let file = export_of(dir.path());
    let check = export::verify_export(file.as_slice(), None, &mut |_| {})?;
    assert_eq!(check.report.records, 4);
    let mut line_seq = Vec::with_capacity(file.len());
    let mut seq = 1;
    for byte in &file {
        line_seq.push(Seq(seq));
        if *byte == b'\n' {
            seq += 1;
        }
    }
    for i in 0..file.len() {
        for flip in [0x01u8, 0x20] {
            let mut bad = file.clone();
            bad[i] ^= flip;
            match export::verify_export(bad.as_slice(), None, &mut |_| {}) {
                Err(Error::Corrupt { seq, .. }) => {
                    assert_eq!(seq, line_seq[i], "byte {i} ^ {flip:#x}")
                }
                other => panic!("byte {i} ^ {flip:#x} of the export went unnoticed: {other:?}"),
            }
        }
    }
    Ok(())
}

#[test]
fn an_incremental_export_continues_the_chain_of_the_full_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 9);
    let store = open(dir.path());
    let mut first = Vec::new();
    let head = export::write_export(store.records(Seq::FIRST).take(5), &mut first, &mut |_| {})?.head;
    let mut rest = Vec::new();
    export::write_export(store.records(head.seq.next()), &mut rest, &mut |_| {})?;
    let check = export::verify_export(rest.as_slice(), None, &mut |_| {})?;
    assert_eq!(check.continues_from, head);
    assert_eq!(check.report.records, 4);
    export::verify_export(rest.as_slice(), Some(head), &mut |_| {})?;
    let wrong = oacis_eventlog::Head { seq: head.seq, hash: oacis_eventlog::Hash32([1; 32]) };
    let err = export::verify_export(rest.as_slice(), Some(wrong), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: Seq(6), .. }), "{err}");
    Ok(())
}

/// Rewrites the record at `seq` (hash recomputed) through `change`, and removes the latest
/// checkpoint if it names that seq (a signed one cannot be rewritten), as if the record had
/// been stored so: only the chain (and the kept checkpoints) can then tell.
fn rewrite(dir: &std::path::Path, seq: Seq, change: impl FnOnce(&mut oacis_eventlog::Record)) -> anyhow::Result<()> {
    let db = raw_sled(dir);
    let key = sled_layout::event_key(seq);
    let mut record = codec::decode(seq, &db.get(key)?.expect("record"))?;
    change(&mut record);
    db.insert(key, codec::seal(&mut record))?;
    db.flush()?;
    if checkpoint::read(dir)?.is_some_and(|c| c.head.seq == seq) {
        std::fs::remove_file(checkpoint::path_in(dir))?;
    }
    Ok(())
}

#[test]
fn a_stored_payload_that_is_not_utf8_is_refused_by_verify_and_export_alike() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 6);
    let mut payload = br#"{"name":""#.to_vec();
    payload.extend_from_slice(&[0xE5, 0xBC]);
    payload.extend_from_slice(br#""}"#);
    rewrite(dir.path(), Seq(6), |record| record.payload = payload)?;
    // Open re-checks the tail with the same check as verify.
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { seq: Seq(6), problem } if problem.contains("not UTF-8")), "{err}");
    // The export writer refuses it with the same error, from the same function.
    let db = raw_sled(dir.path());
    let record = codec::decode(Seq(6), &db.get(sled_layout::event_key(Seq(6)))?.expect("record"))?;
    let err = export::line_of(&record).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { seq: Seq(6), problem } if problem.contains("not UTF-8")), "{err}");
    Ok(())
}

#[test]
fn a_log_shorter_than_its_checkpoint_or_changed_at_it_does_not_open() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 12);
    // A clean close leaves the checkpoint at the head.
    let head = open(dir.path()).head();
    assert_eq!(checkpoint::read(dir.path())?.map(|c| c.head), Some(head));
    assert_eq!(head.seq, Seq(12));
    let saved = std::fs::read(checkpoint::path_in(dir.path()))?;
    {
        let db = raw_sled(dir.path());
        for seq in 10..=12 {
            db.remove(sled_layout::event_key(Seq(seq)))?;
        }
        db.flush()?;
    }
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    match &err {
        Error::HeadLost { recorded, found, .. } => assert_eq!((recorded.seq, found.seq), (Seq(12), Seq(9))),
        other => panic!("expected the lost range, got {other}"),
    }
    assert!(err.to_string().starts_with("records 10..=12 are missing"), "{err}");
    // Refused again on every open: nothing can be appended over the lost seqs.
    assert!(matches!(SledStore::open(SledConfig::new(dir.path())), Err(Error::HeadLost { .. })));
    assert_eq!(std::fs::read(checkpoint::path_in(dir.path()))?, saved, "the checkpoint must not move");

    // History rewritten consistently up to the checkpoint's seq is caught by its hash.
    let dir = tempfile::tempdir()?;
    filled_store(dir.path(), 12);
    drop(open(dir.path()));
    {
        let db = raw_sled(dir.path());
        let key = sled_layout::event_key(Seq(12));
        let mut record = codec::decode(Seq(12), &db.get(key)?.expect("record"))?;
        record.payload = br#"{"n":-1}"#.to_vec();
        db.insert(key, codec::seal(&mut record))?;
        db.flush()?;
    }
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    // (The kept checkpoint at 12 names it by its Merkle root before the head hash is looked at.)
    assert!(
        matches!(&err, Error::RootChanged { tree_size, changed_from, .. } if *tree_size == Seq(12) && *changed_from == Seq(1)),
        "{err}"
    );

    // A damaged checkpoint is itself reported.
    let mut bytes = std::fs::read(checkpoint::path_in(dir.path()))?;
    bytes[30] ^= 0x01;
    std::fs::write(checkpoint::path_in(dir.path()), bytes)?;
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(err, Error::HeadRecord { .. }), "{err}");
    Ok(())
}
