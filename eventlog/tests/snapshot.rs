//! The index snapshot: an open after a clean close takes the indexes from it and reads only
//! the records after it, answers exactly as an open that reads every record, sets aside a
//! snapshot it cannot trust, and reads back the records under it, refusing appends if one
//! of them changed.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{event, meta, open, runtime, stream};
use oacis_eventlog::{
    codec, sled_layout, sled_snapshot, AppendError, Error, EventStore, ExpectedVersion, Seq, SledStore, StreamAppend,
    Version,
};

/// Appends `count` commands from command number `first`: most to one of seven streams,
/// every fifth to two streams at once.
fn fill(store: &SledStore, first: u64, count: u64) {
    runtime().block_on(async {
        for i in first..first + count {
            let one = stream(&format!("customer-{}", i % 7));
            if i % 5 == 0 {
                let two = stream(&format!("task-{}", i % 3));
                let appends = vec![
                    StreamAppend { stream: one, expected: ExpectedVersion::Any, events: vec![event("Changed", i)] },
                    StreamAppend { stream: two, expected: ExpectedVersion::Any, events: vec![event("Linked", i)] },
                ];
                store.append_many(appends, meta(u128::from(i))).await.expect("append_many");
            } else {
                store
                    .append(one, ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i)))
                    .await
                    .expect("append");
            }
        }
    });
}

/// What the indexes answer: every stream's records, every command's outcome, and the Merkle
/// root at every size.
fn answers(store: &SledStore, commands: u64) -> Vec<String> {
    runtime().block_on(async {
        let mut out = Vec::new();
        let names = (0..7).map(|i| format!("customer-{i}")).chain((0..3).map(|i| format!("task-{i}")));
        for name in names {
            let records = store.read_stream(&stream(&name), Version(1), 10_000).await.unwrap();
            out.push(format!("{name}: {:?}", records.iter().map(|r| (r.version, r.seq)).collect::<Vec<_>>()));
        }
        for i in 0..commands {
            let outcome = store.command_outcome(oacis_eventlog::CommandId(uuid::Uuid::from_u128(u128::from(i)))).await;
            out.push(format!("{i}: {:?}", outcome.unwrap()));
        }
        for size in 0..=store.head().seq.0 {
            out.push(format!("{size}: {:?}", store.merkle_root(size).unwrap()));
        }
        out
    })
}

/// The answers of an open that reads every record.
fn answers_without_snapshot(dir: &std::path::Path, commands: u64) -> Vec<String> {
    let snapshot = sled_snapshot::path_in(dir);
    let kept = std::fs::read(&snapshot).unwrap();
    std::fs::remove_file(&snapshot).unwrap();
    let store = open(dir);
    assert_eq!(store.indexes_from_snapshot(), Seq::ZERO);
    let answers = answers(&store, commands);
    drop(store);
    std::fs::write(&snapshot, kept).unwrap();
    answers
}

#[test]
fn an_open_after_a_clean_close_takes_the_indexes_from_the_snapshot_and_answers_as_a_full_read() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    assert_eq!(store.indexes_from_snapshot(), Seq::ZERO, "a new store has none");
    fill(&store, 0, 60);
    let head = store.head();
    drop(store);
    assert!(sled_snapshot::path_in(dir.path()).exists(), "a clean close writes it");

    let full = answers_without_snapshot(dir.path(), 60);
    let store = open(dir.path());
    assert_eq!(store.indexes_from_snapshot(), head.seq);
    assert_eq!(answers(&store, 60), full);
    runtime().block_on(store.records_checked())?;

    // The indexes go on from the snapshot: versions, conflicts and command ids.
    runtime().block_on(async {
        let customer = stream("customer-3");
        let version = store.read_stream(&customer, Version(1), 10_000).await.unwrap().len() as u64;
        let stale = store
            .append(
                customer.clone(),
                ExpectedVersion::Exact(Version(version - 1)),
                vec![event("Changed", 1)],
                meta(1_000),
            )
            .await;
        assert!(matches!(stale, Err(AppendError::Conflict { .. })), "{stale:?}");
        let appended = store
            .append(customer.clone(), ExpectedVersion::Exact(Version(version)), vec![event("Changed", 2)], meta(1_001))
            .await
            .unwrap();
        assert_eq!(appended.version, Version(version + 1));
        // A retry of a command from before the snapshot answers its first append and adds nothing.
        let retried =
            store.append(stream("customer-1"), ExpectedVersion::Any, vec![event("Changed", 1)], meta(1)).await.unwrap();
        assert!(retried.duplicate);
        assert_eq!(
            (retried.first_seq, retried.version),
            (Seq(3), Version(1)),
            "command 1 wrote seq 3, after command 0's two"
        );
    });
    assert_eq!(store.head().seq, Seq(head.seq.0 + 1));
    drop(store);

    // A snapshot older than the log (a crash after an earlier clean close) is read, then the
    // records after it.
    let old = std::fs::read(sled_snapshot::path_in(dir.path()))?;
    let store = open(dir.path());
    fill(&store, 2_000, 25);
    let head = store.head();
    drop(store);
    std::fs::write(sled_snapshot::path_in(dir.path()), old)?;
    let full = answers_without_snapshot(dir.path(), 2_025);
    let store = open(dir.path());
    assert_eq!(store.indexes_from_snapshot(), Seq(head.seq.0 - 25 - 5), "the old snapshot's head");
    assert_eq!(answers(&store, 2_025), full);
    runtime().block_on(store.records_checked())?;
    Ok(())
}

#[test]
fn a_snapshot_that_is_damaged_or_of_another_log_is_set_aside() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    fill(&store, 0, 30);
    drop(store);
    let full = answers_without_snapshot(dir.path(), 30);
    let good = std::fs::read(sled_snapshot::path_in(dir.path()))?;

    // Any changed byte (here: one in the middle, and the last byte of the tag) fails the tag.
    for at in [good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(sled_snapshot::path_in(dir.path()), &bad)?;
        let store = open(dir.path());
        assert_eq!(store.indexes_from_snapshot(), Seq::ZERO, "byte {at}");
        assert_eq!(answers(&store, 30), full);
        drop(store);
    }
    // Cut short.
    std::fs::write(sled_snapshot::path_in(dir.path()), &good[..good.len() - 40])?;
    assert_eq!(open(dir.path()).indexes_from_snapshot(), Seq::ZERO);

    // Another log that shares the checkpoint key (so the tag checks) but not the records.
    let other = tempfile::tempdir()?;
    std::fs::copy(
        dir.path().join(oacis_eventlog::checkpoint::KEY_FILE_NAME),
        other.path().join(oacis_eventlog::checkpoint::KEY_FILE_NAME),
    )?;
    let store = open(other.path());
    fill(&store, 500, 40);
    drop(store);
    std::fs::copy(sled_snapshot::path_in(other.path()), sled_snapshot::path_in(dir.path()))?;
    let store = open(dir.path());
    assert_eq!(store.indexes_from_snapshot(), Seq::ZERO, "the record at its head is not this log's");
    assert_eq!(answers(&store, 30), full);
    Ok(())
}

#[test]
fn a_record_changed_under_the_snapshot_refuses_appends_once_read_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let count = oacis_eventlog::TAIL_CHECK_RECORDS + 20;
    let store = open(dir.path());
    fill(&store, 0, count);
    drop(store);
    // Seq 5 rewritten with its hash recomputed, so that it decodes: only the link to seq 6
    // (and the Merkle root) tell.
    {
        let db = sled::Config::new().path(dir.path()).segment_size(sled_layout::SEGMENT_SIZE).open()?;
        let key = sled_layout::event_key(Seq(5));
        let mut record = codec::decode(Seq(5), &db.get(key)?.expect("record"))?;
        record.payload = br#"{"n":-5}"#.to_vec();
        db.insert(key, codec::seal(&mut record))?;
        db.flush()?;
    }
    let store = open(dir.path());
    assert!(store.indexes_from_snapshot() > Seq(5));
    let err = runtime().block_on(store.records_checked()).unwrap_err();
    assert!(err.to_string().contains("seq 6"), "{err}");
    let refused = runtime().block_on(store.append(
        stream("customer-1"),
        ExpectedVersion::Any,
        vec![event("Changed", 1)],
        meta(99_999),
    ));
    assert!(matches!(refused, Err(AppendError::Store(Error::WriterFailed(_)))), "{refused:?}");
    drop(store);
    // No snapshot is written from indexes whose records did not check; the old one stays,
    // and an open without it stops at the record itself.
    std::fs::remove_file(sled_snapshot::path_in(dir.path()))?;
    let err = SledStore::open(oacis_eventlog::SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(err, Error::RootChanged { .. } | Error::Corrupt { .. }), "{err}");
    Ok(())
}
