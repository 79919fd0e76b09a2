//! Tampering with stored records (in sled) or exported lines is detected at the right seq.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{event, meta, open, runtime, stream};
use oacis_eventlog::{codec, export, sled_layout, Error, EventStore, ExpectedVersion, Seq, SledConfig, SledStore};

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
    // check (the last `TAIL_CHECK_RECORDS`) does not reach.
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
