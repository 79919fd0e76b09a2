//! Behaviour of the stores through their public API: appends, conflicts, idempotent
//! retries, limits, reads and reopen on both backends (each such test runs as `<name>::sled`
//! and `<name>::postgres`, against a throwaway cluster); the format check, injected write
//! failures and the rest of what only the embedded store has, on sled.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

#[macro_use]
mod common;

use std::sync::Arc;

use common::{event, meta, open, runtime, stream, Backend};
use oacis_eventlog::{
    AppendError, Error, EventStore, ExpectedVersion, FaultPlan, FaultSite, Hash32, Limits, NewEvent, Seq, SledConfig,
    SledStore, StreamAppend, Version,
};

fn appends_are_numbered_chained_and_readable_by_stream_and_globally<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        let a = stream("customer-a");
        let b = stream("customer-b");
        let first = store
            .append(a.clone(), ExpectedVersion::NoStream, vec![event("Opened", 1), event("Noted", 2)], meta(1))
            .await?;
        assert_eq!(
            (first.first_seq, first.last_seq, first.version, first.duplicate),
            (Seq(1), Seq(2), Version(2), false)
        );
        let second = store.append(b.clone(), ExpectedVersion::Any, vec![event("Opened", 3)], meta(2)).await?;
        assert_eq!((second.first_seq, second.version), (Seq(3), Version(1)));
        let third =
            store.append(a.clone(), ExpectedVersion::Exact(Version(2)), vec![event("Noted", 4)], meta(3)).await?;
        assert_eq!((third.first_seq, third.version), (Seq(4), Version(3)));

        let all = store.read_all(Seq(1), 100).await?;
        assert_eq!(all.iter().map(|r| r.seq.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(all[0].prev_hash, Hash32::GENESIS);
        for pair in all.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert!(pair[1].recorded_at >= pair[0].recorded_at);
        }
        let of_a = store.read_stream(&a, Version(1), 100).await?;
        assert_eq!(of_a.iter().map(|r| (r.seq.0, r.version.0)).collect::<Vec<_>>(), [(1, 1), (2, 2), (4, 3)]);
        let tail_of_a = store.read_stream(&a, Version(3), 100).await?;
        assert_eq!(tail_of_a.len(), 1);
        assert_eq!(store.read_all(Seq(3), 1).await?.len(), 1);
        assert!(store.read_all(Seq(5), 10).await?.is_empty());
        assert_eq!(store.head().seq, Seq(4));
        assert_eq!(store.head().hash, all[3].hash);
        // A payload is stored byte for byte as given.
        assert_eq!(all[0].payload, event("Opened", 1).payload);
        anyhow::Ok(())
    })
}
on_both!(appends_are_numbered_chained_and_readable_by_stream_and_globally);

fn a_stale_expected_version_is_a_conflict_that_writes_nothing<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        let a = stream("task-1");
        store.append(a.clone(), ExpectedVersion::NoStream, vec![event("Created", 1)], meta(1)).await?;
        let cases = [ExpectedVersion::NoStream, ExpectedVersion::Exact(Version(0)), ExpectedVersion::Exact(Version(2))];
        for (i, expected) in cases.into_iter().enumerate() {
            let err =
                store.append(a.clone(), expected, vec![event("Started", 2)], meta(10 + i as u128)).await.unwrap_err();
            match err {
                AppendError::Conflict { stream, actual, .. } => {
                    assert_eq!(stream, a);
                    assert_eq!(actual, Version(1));
                }
                other => panic!("expected a conflict, got {other}"),
            }
        }
        assert_eq!(store.head().seq, Seq(1));
        // The refused command ids were not spent: the same id succeeds once the version is right.
        let ok =
            store.append(a.clone(), ExpectedVersion::Exact(Version(1)), vec![event("Started", 2)], meta(10)).await?;
        assert!(!ok.duplicate);
        anyhow::Ok(())
    })
}
on_both!(a_stale_expected_version_is_a_conflict_that_writes_nothing);

fn a_repeated_command_id_returns_the_first_result_and_writes_nothing_even_after_reopen<B: Backend>(
    backend: &B,
) -> anyhow::Result<()> {
    let rt = runtime();
    let first = rt.block_on(async {
        let store = backend.open_async().await;
        let first =
            store.append(stream("s-1"), ExpectedVersion::Any, vec![event("A", 1), event("B", 2)], meta(7)).await?;
        let again =
            store.append(stream("s-1"), ExpectedVersion::Any, vec![event("A", 1), event("B", 2)], meta(7)).await?;
        assert!(again.duplicate);
        assert_eq!((again.first_seq, again.last_seq, again.version), (first.first_seq, first.last_seq, first.version));
        assert_eq!(store.head().seq, Seq(2));
        anyhow::Ok(first)
    })?;
    rt.block_on(async {
        let store = backend.open_async().await;
        // A true retry with a stale expectation still gets the first result.
        let again = store
            .append(stream("s-1"), ExpectedVersion::Exact(Version(9)), vec![event("A", 1), event("B", 2)], meta(7))
            .await?;
        assert!(again.duplicate);
        assert_eq!((again.first_seq, again.last_seq, again.version), (first.first_seq, first.last_seq, first.version));
        assert_eq!(store.head().seq, Seq(2));
        anyhow::Ok(())
    })
}
on_both!(a_repeated_command_id_returns_the_first_result_and_writes_nothing_even_after_reopen);

fn a_command_id_reused_for_another_stream_or_other_events_is_refused<B: Backend>(backend: &B) -> anyhow::Result<()> {
    let rt = runtime();
    let attempts = [
        (stream("other"), vec![event("A", 1), event("B", 2)]),
        (stream("s-1"), vec![event("A", 1)]),
        (stream("s-1"), vec![event("A", 1), event("B", 3)]),
        (stream("s-1"), vec![event("A", 1), event("C", 2)]),
    ];
    let reused = |outcome: Result<oacis_eventlog::Appended, AppendError>| matches!(outcome, Err(AppendError::CommandReused { command_id, first_seq: Seq(1) }) if command_id == meta(7).command_id);
    rt.block_on(async {
        let store = backend.open_async().await;
        // In the same group as the first append, and in later groups.
        let (first, second) = tokio::join!(
            store.append(stream("s-1"), ExpectedVersion::Any, vec![event("A", 1), event("B", 2)], meta(7)),
            store.append(stream("other"), ExpectedVersion::Any, vec![event("A", 1), event("B", 2)], meta(7)),
        );
        assert_eq!(first?.first_seq, Seq(1));
        assert!(reused(second), "in one group");
        for (target, events) in attempts.clone() {
            assert!(reused(store.append(target, ExpectedVersion::Any, events, meta(7)).await));
        }
        anyhow::Ok(())
    })?;
    rt.block_on(async {
        let store = backend.open_async().await;
        for (target, events) in attempts {
            assert!(reused(store.append(target, ExpectedVersion::Any, events, meta(7)).await), "after reopen");
        }
        assert_eq!(store.head().seq, Seq(2));
        anyhow::Ok(())
    })
}
on_both!(a_command_id_reused_for_another_stream_or_other_events_is_refused);

fn append_many_lands_every_stream_or_none_and_names_the_conflicting_stream<B: Backend>(
    backend: &B,
) -> anyhow::Result<()> {
    let rt = runtime();
    let part = |name: &str, expected, events| StreamAppend { stream: stream(name), expected, events };
    rt.block_on(async {
        let store = backend.open_async().await;
        store.append(stream("customer-a"), ExpectedVersion::NoStream, vec![event("Registered", 1)], meta(1)).await?;
        store.append(stream("customer-b"), ExpectedVersion::NoStream, vec![event("Registered", 2)], meta(2)).await?;
        // Two crossing merges decided against the same versions: exactly one lands.
        let merge = |from: &str, into: &str, command| {
            store.append_many(
                vec![
                    part(from, ExpectedVersion::Exact(Version(1)), vec![event("MergedInto", 3), event("Archived", 4)]),
                    part(into, ExpectedVersion::Exact(Version(1)), vec![event("Absorbed", 5)]),
                ],
                meta(command),
            )
        };
        let (ab, ba) = tokio::join!(merge("customer-a", "customer-b", 10), merge("customer-b", "customer-a", 11));
        let (won, lost) = match (ab, ba) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("exactly one merge must land: {other:?}"),
        };
        assert_eq!(won.len(), 2);
        assert_eq!((won[0].first_seq, won[0].last_seq, won[0].version), (Seq(3), Seq(4), Version(3)));
        assert_eq!((won[1].first_seq, won[1].last_seq, won[1].version), (Seq(5), Seq(5), Version(2)));
        match lost {
            AppendError::Conflict { expected: ExpectedVersion::Exact(Version(1)), actual, .. } => {
                assert!(actual > Version(1));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert_eq!(store.head().seq, Seq(5));
        // A conflict on the second stream writes nothing on the first.
        let refused = store
            .append_many(
                vec![
                    part("customer-c", ExpectedVersion::NoStream, vec![event("Registered", 6)]),
                    part("customer-a", ExpectedVersion::NoStream, vec![event("Absorbed", 7)]),
                ],
                meta(12),
            )
            .await;
        match refused {
            Err(AppendError::Conflict { stream: s, expected: ExpectedVersion::NoStream, actual }) => {
                assert_eq!((s, actual > Version(0)), (stream("customer-a"), true));
            }
            other => panic!("expected a conflict on customer-a, got {other:?}"),
        }
        assert_eq!(store.head().seq, Seq(5));
        assert!(store.read_stream(&stream("customer-c"), Version(1), 10).await?.is_empty());
        // The winner's retry gets all of its first result, and so does a lookup.
        let winner = if won[0].first_seq == Seq(3) && store.read_all(Seq(3), 1).await?[0].stream == stream("customer-a")
        {
            ("customer-a", "customer-b", 10)
        } else {
            ("customer-b", "customer-a", 11)
        };
        let again = merge(winner.0, winner.1, winner.2).await?;
        assert_eq!(again, won.iter().map(|a| oacis_eventlog::Appended { duplicate: true, ..*a }).collect::<Vec<_>>());
        let outcome = store.command_outcome(meta(winner.2).command_id).await?.expect("written");
        assert_eq!(
            outcome.appends.iter().map(|(s, a)| (s.as_str(), a.first_seq, a.version)).collect::<Vec<_>>(),
            [(winner.0, Seq(3), Version(3)), (winner.1, Seq(5), Version(2))]
        );
        // Limits and names apply to the whole call.
        let repeated = store
            .append_many(
                vec![
                    part("customer-d", ExpectedVersion::Any, vec![event("X", 1)]),
                    part("customer-d", ExpectedVersion::Any, vec![event("Y", 2)]),
                ],
                meta(13),
            )
            .await;
        assert!(matches!(repeated, Err(AppendError::RepeatedStream { .. })), "{repeated:?}");
        let half = Limits::MAX_EVENTS_PER_APPEND / 2 + 1;
        let too_many = store
            .append_many(
                vec![
                    part("customer-e", ExpectedVersion::Any, (0..half as u64).map(|n| event("X", n)).collect()),
                    part("customer-f", ExpectedVersion::Any, (0..half as u64).map(|n| event("X", n)).collect()),
                ],
                meta(14),
            )
            .await;
        assert!(matches!(too_many, Err(AppendError::TooManyEvents { .. })), "{too_many:?}");
        assert!(matches!(store.append_many(vec![], meta(15)).await, Err(AppendError::Empty)));
        assert_eq!(store.head().seq, Seq(5));
        anyhow::Ok(())
    })?;
    // After reopen the index is rebuilt from records with the command spanning two streams.
    rt.block_on(async {
        let store = backend.open_async().await;
        let outcome =
            store.command_outcome(meta(10).command_id).await?.or(store.command_outcome(meta(11).command_id).await?);
        assert_eq!(outcome.expect("one merge").appends.len(), 2);
        assert_eq!(store.command_outcome(meta(12).command_id).await?, None);
        anyhow::Ok(())
    })
}
on_both!(append_many_lands_every_stream_or_none_and_names_the_conflicting_stream);

fn a_payload_that_is_not_utf8_is_refused_naming_its_event<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        let mut payload = br#"{"name":""#.to_vec();
        payload.extend_from_slice(&[0xE5, 0xBC]);
        payload.extend_from_slice(br#""}"#);
        let bad = NewEvent { kind: oacis_eventlog::EventKind::new("Named")?, schema: 1, payload };
        let refused = store.append(stream("s"), ExpectedVersion::Any, vec![event("Ok", 1), bad], meta(1)).await;
        assert!(matches!(refused, Err(AppendError::PayloadNotUtf8 { index: 1, offset: 9 })), "{refused:?}");
        assert_eq!(store.head().seq, Seq(0));
        anyhow::Ok(())
    })
}
on_both!(a_payload_that_is_not_utf8_is_refused_naming_its_event);

fn concurrent_appends_with_one_command_id_land_once<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.append(stream("dup"), ExpectedVersion::Any, vec![event("Once", 1)], meta(99)).await
            }));
        }
        let mut fresh = 0;
        for task in tasks {
            let outcome = task.await??;
            assert_eq!(outcome.first_seq, Seq(1));
            fresh += usize::from(!outcome.duplicate);
        }
        assert_eq!(fresh, 1);
        assert_eq!(store.head().seq, Seq(1));
        anyhow::Ok(())
    })
}
on_both!(concurrent_appends_with_one_command_id_land_once);

/// Events and metadata to append, and the error they must get.
type Attempt = (Vec<NewEvent>, oacis_eventlog::AppendMeta, fn(&AppendError) -> bool);

fn input_that_breaks_a_limit_is_refused_with_a_typed_error_and_writes_nothing<B: Backend>(
    backend: &B,
) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        let s = stream("limits");
        let raw =
            |payload: Vec<u8>| NewEvent { kind: oacis_eventlog::EventKind::new("K").unwrap(), schema: 1, payload };
        let big = format!("\"{}\"", "x".repeat(Limits::MAX_PAYLOAD_BYTES));
        let mut long_actor = meta(5);
        long_actor.actor = "a".repeat(Limits::MAX_ACTOR_BYTES + 1);
        let attempts: Vec<Attempt> = vec![
            (vec![], meta(1), |e| matches!(e, AppendError::Empty)),
            (vec![raw(b"{not json".to_vec())], meta(2), |e| matches!(e, AppendError::PayloadNotJson { index: 0, .. })),
            (vec![event("A", 1), raw(b"[1,2".to_vec())], meta(3), |e| {
                matches!(e, AppendError::PayloadNotJson { index: 1, .. })
            }),
            (vec![raw(big.into_bytes())], meta(4), |e| matches!(e, AppendError::PayloadTooLarge { index: 0, .. })),
            (vec![event("A", 1)], long_actor, |e| matches!(e, AppendError::MetadataTooLong { field: "actor", .. })),
            ((0..=Limits::MAX_EVENTS_PER_APPEND as u64).map(|n| event("A", n)).collect(), meta(6), |e| {
                matches!(e, AppendError::TooManyEvents { .. })
            }),
            (vec![NewEvent { schema: 0, ..event("A", 1) }], meta(7), |e| {
                matches!(e, AppendError::InvalidSchema { index: 0 })
            }),
        ];
        for (events, meta, expected) in attempts {
            let err = store.append(s.clone(), ExpectedVersion::Any, events, meta).await.unwrap_err();
            assert!(expected(&err), "unexpected error: {err}");
        }
        let chunk = format!("\"{}\"", "y".repeat(Limits::MAX_PAYLOAD_BYTES - 10));
        let too_much: Vec<_> = (0..(Limits::MAX_APPEND_PAYLOAD_BYTES / Limits::MAX_PAYLOAD_BYTES + 1))
            .map(|_| raw(chunk.clone().into_bytes()))
            .collect();
        let err = store.append(s.clone(), ExpectedVersion::Any, too_much, meta(8)).await.unwrap_err();
        assert!(matches!(err, AppendError::AppendTooLarge { .. }), "{err}");
        assert_eq!(store.head().seq, Seq::ZERO);
        anyhow::Ok(())
    })
}
on_both!(input_that_breaks_a_limit_is_refused_with_a_typed_error_and_writes_nothing);

#[test]
fn names_are_checked() {
    for bad in ["", "has space", "ü", &"x".repeat(Limits::MAX_STREAM_BYTES + 1), "new\nline"] {
        assert!(matches!(oacis_eventlog::StreamId::new(bad), Err(AppendError::InvalidStream { .. })), "{bad:?}");
    }
    for good in ["customer-0193", "a", "role:admin", "x/y.z_1"] {
        assert!(oacis_eventlog::StreamId::new(good).is_ok(), "{good:?}");
    }
    for bad in ["", "Has:Colon", &"k".repeat(Limits::MAX_KIND_BYTES + 1)] {
        assert!(matches!(oacis_eventlog::EventKind::new(bad), Err(AppendError::InvalidKind { .. })), "{bad:?}");
    }
}

#[test]
fn largest_payloads_never_become_unsynced_sled_blobs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let store = open(dir.path());
        let payload = format!("\"{}\"", "z".repeat(Limits::MAX_PAYLOAD_BYTES - 2)).into_bytes();
        let per_append = Limits::MAX_APPEND_PAYLOAD_BYTES / Limits::MAX_PAYLOAD_BYTES;
        for round in 0..4u128 {
            let events: Vec<_> = (0..per_append)
                .map(|_| NewEvent {
                    kind: oacis_eventlog::EventKind::new("Big").unwrap(),
                    schema: 1,
                    payload: payload.clone(),
                })
                .collect();
            store.append(stream("big"), ExpectedVersion::Any, events, meta(round)).await?;
        }
        anyhow::Ok(())
    })?;
    let blobs = dir.path().join("blobs");
    let count = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count, 0, "sled wrote {count} blob files, which its flush does not sync");
    Ok(())
}

fn everything_acknowledged_is_there_after_reopen_and_the_chain_continues<B: Backend>(
    backend: &B,
) -> anyhow::Result<()> {
    let rt = runtime();
    for round in 0..3u64 {
        rt.block_on(async {
            let store = backend.open_async().await;
            assert_eq!(store.head().seq, Seq(round * 10));
            for i in 0..10u64 {
                let command = u128::from(round * 10 + i);
                store
                    .append(
                        stream("reopen"),
                        ExpectedVersion::Exact(Version(round * 10 + i)),
                        vec![event("E", i)],
                        meta(command),
                    )
                    .await?;
            }
            anyhow::Ok(())
        })?;
    }
    let report = rt.block_on(async {
        let store = backend.open_async().await;
        oacis_eventlog::verify::verify_log(&store, &mut |_| {}).await
    })?;
    assert_eq!((report.records, report.streams), (30, 1));
    Ok(())
}
on_both!(everything_acknowledged_is_there_after_reopen_and_the_chain_continues);

#[test]
fn a_store_of_another_format_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    drop(open(dir.path()));
    {
        let db = sled::Config::new().path(dir.path()).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        db.insert(b"mformat", b"oacis-eventlog/0".as_slice())?;
        db.flush()?;
    }
    let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::IncompatibleFormat { found, .. } if found == "oacis-eventlog/0"), "{err}");
    Ok(())
}

#[test]
fn a_format_1_store_is_migrated_by_dropping_its_stored_indexes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime();
    rt.block_on(async {
        let store = open(dir.path());
        for i in 0..5 {
            store.append(stream("customer-1"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i))).await?;
        }
        anyhow::Ok(())
    })?;
    {
        // What format 1 looked like: the same records, plus stored index entries.
        let db = sled::Config::new().path(dir.path()).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        db.insert(b"mformat", b"oacis-eventlog/1".as_slice())?;
        db.insert(b"s\x0acustomer-1\0\0\0\0\0\0\0\x05".as_slice(), [0u8; 16].as_slice())?;
        db.insert(b"c0123456789abcdef".as_slice(), [0u8; 24].as_slice())?;
        db.flush()?;
    }
    rt.block_on(async {
        let store = open(dir.path());
        let records = store.read_stream(&stream("customer-1"), Version(1), 10).await?;
        assert_eq!(records.iter().map(|r| r.version.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        // The indexes are rebuilt from the records: a retried command is still recognised.
        let again = store.append(stream("customer-1"), ExpectedVersion::Any, vec![event("E", 2)], meta(2)).await?;
        assert!(again.duplicate && again.first_seq == Seq(3));
        anyhow::Ok(())
    })?;
    let db = sled::Config::new().path(dir.path()).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
    assert_eq!(db.get(b"mformat")?.as_deref(), Some(b"oacis-eventlog/2".as_slice()));
    assert_eq!(db.scan_prefix(b"s").count() + db.scan_prefix(b"c").count(), 0);
    Ok(())
}

#[test]
fn a_torn_snapshot_left_by_an_abrupt_stop_does_not_stop_the_store_from_opening() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime();
    rt.block_on(async {
        let store = open(dir.path());
        store.append(stream("s"), ExpectedVersion::Any, vec![event("E", 1)], meta(1)).await?;
        anyhow::Ok(())
    })?;
    // What sled leaves when killed while writing a snapshot: a short `.generating` file with a
    // higher LSN than any complete snapshot, which sled 0.34 would pick up and reject.
    std::fs::write(dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"), b"torn")?;
    let store = open(dir.path());
    assert_eq!(store.head().seq, Seq(1));
    assert!(!dir.path().join("snap.7FFFFFFFFFFFFFFF.generating").exists());
    Ok(())
}

fn store_failing_at(dir: &std::path::Path, site: FaultSite) -> SledStore {
    let mut config = SledConfig::new(dir);
    config.fault = Some(Arc::new(FaultPlan::new(site, 2)));
    SledStore::open(config).expect("open store")
}

#[test]
fn a_failed_write_or_flush_is_never_acknowledged_and_stops_the_writer() -> anyhow::Result<()> {
    for site in [FaultSite::Apply, FaultSite::Flush, FaultSite::Sync] {
        let dir = tempfile::tempdir()?;
        let rt = runtime();
        rt.block_on(async {
            let store = store_failing_at(dir.path(), site);
            store.append(stream("f"), ExpectedVersion::Any, vec![event("Ok", 1)], meta(1)).await?;
            let err =
                store.append(stream("f"), ExpectedVersion::Any, vec![event("Lost", 2)], meta(2)).await.unwrap_err();
            assert!(matches!(err, AppendError::Store(Error::WriterFailed(_))), "{site:?}: {err}");
            // Nothing unacknowledged is visible, and the writer refuses to build on an unknown state.
            assert_eq!(store.head().seq, Seq(1));
            assert_eq!(store.read_all(Seq(1), 10).await?.len(), 1);
            let err =
                store.append(stream("f"), ExpectedVersion::Any, vec![event("Later", 3)], meta(3)).await.unwrap_err();
            assert!(matches!(err, AppendError::Store(Error::WriterFailed(_))), "{site:?}: {err}");
            anyhow::Ok(())
        })?;
        // After a restart the acknowledged record is there, the chain verifies, and appends work.
        rt.block_on(async {
            let store = open(dir.path());
            assert!(store.head().seq >= Seq(1));
            store.verify(&mut |_| {})?;
            let next = store.append(stream("f"), ExpectedVersion::Any, vec![event("Again", 4)], meta(4)).await?;
            assert!(!next.duplicate);
            let retried = store.append(stream("f"), ExpectedVersion::Any, vec![event("Lost", 2)], meta(2)).await?;
            assert_eq!(store.read_all(retried.first_seq, 1).await?[0].kind.as_str(), "Lost");
            anyhow::Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn read_all_with_lends_the_same_records_as_read_all_and_stops_at_the_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let store = open(dir.path());
        for i in 0..25 {
            let name = format!("customer-{}", i % 4);
            store.append(stream(&name), ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i))).await?;
        }
        let owned = store.read_all(Seq(6), 10).await?;
        // A reused buffer is cleared first.
        let reused = vec![(Seq(999), String::from("stale"), Vec::new())];
        let lent =
            store.read_all_with(Seq(6), 10, reused, |r| (r.seq, r.stream.to_owned(), r.payload.to_vec())).await?;
        let expected: Vec<_> = owned.iter().map(|r| (r.seq, r.stream.to_string(), r.payload.clone())).collect();
        assert_eq!(lent, expected);
        let tail = store.read_all_with(Seq(20), 100, Vec::new(), |r| r.seq.0).await?;
        assert_eq!(tail, (20..=25).collect::<Vec<_>>());
        // Enough records that seq 3 lies before the tail that opening re-verifies.
        for batch in 0..11u64 {
            let events = (0..100).map(|k| event("Changed", batch * 100 + k)).collect();
            store.append(stream("bulk"), ExpectedVersion::Any, events, meta(u128::from(1_000 + batch))).await?;
        }
        anyhow::Ok(())
    })?;
    // A damaged record is an error at its seq, as with read_all.
    {
        let db = sled::Config::new().path(dir.path()).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        let key = oacis_eventlog::sled_layout::event_key(Seq(3));
        let mut bytes = db.get(key)?.expect("record 3").to_vec();
        // A payload byte (the last one before the 32-byte hash): the stored hash, and so the
        // Merkle tree, is unchanged, and only reading the record finds it.
        let in_payload = bytes.len() - 33;
        bytes[in_payload] ^= 1;
        db.insert(key, bytes.clone())?;
        db.flush()?;
        // Changing the stored hash instead changes the tree: the kept checkpoints catch it on
        // an open that reads every record, naming the range (an open from the index snapshot
        // finds it when it reads the records back: tests/snapshot.rs).
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        db.insert(key, bytes.clone())?;
        db.flush()?;
        drop(db);
        std::fs::remove_file(oacis_eventlog::sled_snapshot::path_in(dir.path()))?;
        let err = SledStore::open(SledConfig::new(dir.path())).unwrap_err();
        assert!(matches!(err, Error::RootChanged { changed_from: Seq(1), tree_size: Seq(1125), .. }), "{err}");
        let db = sled::Config::new().path(dir.path()).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        bytes[last] ^= 1;
        db.insert(key, bytes)?;
        db.flush()?;
    }
    runtime().block_on(async {
        let store = open(dir.path());
        let err = store.read_all_with(Seq(1), 10, Vec::new(), |r| r.seq).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { seq: Seq(3), .. }), "{err}");
        anyhow::Ok(())
    })
}

#[test]
fn the_in_memory_indexes_report_their_size_and_grow_with_the_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        let store = open(dir.path());
        let empty = store.index_bytes();
        for i in 0..200 {
            let name = format!("customer-{}", i % 50);
            store.append(stream(&name), ExpectedVersion::Any, vec![event("Changed", i)], meta(u128::from(i))).await?;
        }
        let filled = store.index_bytes();
        // 200 appends in 50 streams: at least a seq and a command entry (16 + 32 bytes) each.
        assert!(filled >= empty + 200 * 48, "{empty} -> {filled}");
        drop(store);
        // Rebuilt on open, the same log gives indexes of the same order of size.
        let reopened = open(dir.path()).index_bytes();
        assert!(reopened >= 200 * 48 && reopened <= filled * 2, "{filled} vs {reopened}");
        anyhow::Ok(())
    })
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_appends() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    runtime().block_on(async {
        // Interval zero: the checkpoint is due after every durable group.
        let config = SledConfig { checkpoint_interval: std::time::Duration::ZERO, ..SledConfig::new(dir.path()) };
        let store = SledStore::open(config)?;
        // A folder where the temporary file must go: no checkpoint can be written.
        std::fs::create_dir(dir.path().join("checkpoint.tmp"))?;
        // Appends go on being acknowledged until the checkpoint thread (every 10 ms here) has
        // failed to record one; from then on every append is refused.
        let mut refused = None;
        for n in 1..=10_000u64 {
            let outcome =
                store.append(stream("s"), ExpectedVersion::Any, vec![event("A", n)], meta(u128::from(n))).await;
            if let Err(e) = outcome {
                refused = Some(e);
                break;
            }
        }
        match refused {
            Some(AppendError::Store(Error::WriterFailed(reason))) => {
                assert!(reason.contains("cannot record the acknowledged head"), "{reason}")
            }
            other => panic!("expected appends to stop, got {other:?}"),
        }
        let head = store.head().seq;
        let again = store.append(stream("s"), ExpectedVersion::Any, vec![event("B", 1)], meta(1 << 40)).await;
        assert!(matches!(again, Err(AppendError::Store(Error::WriterFailed(_)))), "{again:?}");
        assert_eq!(store.head().seq, head);
        anyhow::Ok(())
    })
}

#[test]
fn a_panic_while_opening_is_contained_and_reported_as_damage_with_the_recorded_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let head = runtime().block_on(async {
        let store = open(dir.path());
        store.append(stream("s"), ExpectedVersion::Any, vec![event("A", 1)], meta(1)).await?;
        anyhow::Ok(store.head())
    })?;
    let config =
        SledConfig { fault: Some(Arc::new(FaultPlan::new(FaultSite::OpenPanic, 1))), ..SledConfig::new(dir.path()) };
    match SledStore::open(config) {
        Err(Error::Damaged { path, reason, recorded }) => {
            assert_eq!(path, dir.path());
            assert_eq!(reason, "panicked: injected panic while opening the store");
            assert_eq!(recorded, Some(head));
        }
        other => panic!("expected the panic to be reported as damage, got {other:?}"),
    }
    // Everything the failed open held was released: the folder opens again, unchanged.
    assert_eq!(open(dir.path()).head(), head);
    Ok(())
}
