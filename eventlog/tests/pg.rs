//! The PostgreSQL backend with several nodes on one database, against a real server started
//! by the test (no mocks): two `PgStore`s are two nodes, each with its own writer, tailer and
//! read pool. The model-based contract test runs on it too (`tests/model.rs`).
//!
//! Load durations: `OACIS_PG_LOAD_SECS` (default 30) for the two-node load.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{event, meta, runtime, stream, PgCluster};
use oacis_eventlog::{
    AppendError, Appended, EventStore, ExpectedVersion, NewEvent, PgConfig, PgStore, Record, Seq, StreamAppend,
    Subscription, Version,
};
use tokio::sync::Semaphore;

fn config(url: &str) -> PgConfig {
    PgConfig { poll_interval: Duration::from_millis(100), ..PgConfig::new(url) }
}

async fn node(url: &str) -> PgStore {
    PgStore::open(config(url)).await.expect("open a node")
}

/// Every record, in order, read in pages.
async fn everything<S: EventStore>(store: &S) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let page = store.read_all(Seq(all.len() as u64 + 1), 5_000).await.expect("read_all");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Collects a subscription's seqs until it reaches `last`, failing on any error.
async fn follow_until(feed: &mut impl Subscription, last: Seq, seen: &mut Vec<u64>) {
    while seen.last().copied().unwrap_or(0) < last.0 {
        let record = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("the feed keeps up")
            .expect("the feed stays open")
            .expect("no gap, no broken link");
        seen.push(record.seq.0);
    }
}

/// Checks what every multi-node test must hold: seqs 1..N with no gap, the chain verifies, and
/// each command id's records form one run (no command id written twice).
async fn check_log(store: &PgStore) -> Vec<Record> {
    let all = everything(store).await;
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record.seq.0, i as u64 + 1, "gapless seqs");
    }
    let report = oacis_eventlog::verify::verify_log(store, &mut |_| {}).await.expect("the chain verifies");
    assert_eq!(report.records, all.len() as u64);
    let mut finished = HashSet::new();
    let mut current = None;
    for record in &all {
        let command = record.meta.command_id;
        if current != Some(command) {
            assert!(finished.insert(command), "command {command} written twice");
            current = Some(command);
        }
    }
    all
}

#[test]
fn two_nodes_with_sixteen_writers_each_keep_one_gapless_chain() {
    let seconds: u64 = std::env::var("OACIS_PG_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("load").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let nodes = [node(&url).await, node(&url).await];
        let mut feeds: Vec<_> = nodes.iter().map(|n| n.subscribe(Seq::FIRST)).collect();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut writers = Vec::new();
        for (n, store) in nodes.iter().enumerate() {
            for w in 0..16u64 {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    // Each writer has a stream of its own (exact versions) and shares one with
                    // every other writer (any version), so groups mix both.
                    let own = stream(&format!("node{n}-writer{w}"));
                    let mut version = Version::NONE;
                    let mut acknowledged = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let command = (n as u128) << 96 | u128::from(w) << 64 | u128::from(i);
                        let count = 1 + (i % 3) as usize;
                        let mut appends = vec![StreamAppend {
                            stream: own.clone(),
                            expected: ExpectedVersion::Exact(version),
                            events: (0..count).map(|k| event("Written", i * 10 + k as u64)).collect(),
                        }];
                        if i.is_multiple_of(4) {
                            appends.push(StreamAppend {
                                stream: stream("shared"),
                                expected: ExpectedVersion::Any,
                                events: vec![event("Shared", i)],
                            });
                        }
                        let done = store.append_many(appends, meta(command)).await.expect("append");
                        version = done[0].version;
                        acknowledged.push((command, done));
                        i += 1;
                    }
                    acknowledged
                }));
            }
        }
        let mut acknowledged: Vec<(u128, Vec<Appended>)> = Vec::new();
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
        let events: u64 = acknowledged.iter().flat_map(|(_, d)| d).map(|a| a.last_seq.0 - a.first_seq.0 + 1).sum();
        let all = check_log(&nodes[0]).await;
        assert_eq!(all.len() as u64, events, "N equals the acknowledged count");
        // Each acknowledgement names the records that hold its command.
        let by_seq: HashMap<u64, &Record> = all.iter().map(|r| (r.seq.0, r)).collect();
        for (command, done) in &acknowledged {
            for appended in done {
                for seq in appended.first_seq.0..=appended.last_seq.0 {
                    assert_eq!(by_seq[&seq].meta.command_id.0.as_u128(), *command);
                }
            }
        }
        let last = Seq(events);
        for (feed, store) in feeds.iter_mut().zip(&nodes) {
            let mut seen = Vec::new();
            follow_until(feed, last, &mut seen).await;
            assert_eq!(seen, (1..=events).collect::<Vec<_>>(), "every seq once, in order");
            assert_eq!(store.wait_for(last, Duration::from_secs(5)).await.seq, last);
        }
        eprintln!("two nodes, 32 writers, {seconds} s: {} appends, {events} events", acknowledged.len());
    });
}

#[test]
fn one_command_id_sent_fifty_times_across_two_nodes_appends_once() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("ids").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let nodes = [node(&url).await, node(&url).await];
        let mut copies = Vec::new();
        for i in 0..50 {
            let store = nodes[i % 2].clone();
            copies.push(tokio::spawn(async move {
                let events = vec![event("Paid", 1), event("Paid", 2)];
                store.append(stream("order-1"), ExpectedVersion::NoStream, events, meta(77)).await.expect("append")
            }));
        }
        let mut answers = Vec::new();
        for copy in copies {
            answers.push(copy.await.expect("task"));
        }
        let first: Vec<_> = answers.iter().filter(|a| !a.duplicate).collect();
        assert_eq!(first.len(), 1, "one append");
        for answer in &answers {
            assert_eq!(Appended { duplicate: false, ..*answer }, *first[0], "49 identical answers");
        }
        assert_eq!(check_log(&nodes[0]).await.len(), 2);

        // 20 appends expecting the same version, each batched with a neighbour on a stream of
        // its own: one wins, 19 conflict, and every neighbour lands.
        let mut racers = Vec::new();
        for i in 0..20u64 {
            let store = nodes[(i % 2) as usize].clone();
            racers.push(tokio::spawn(async move {
                let neighbour = store.append(
                    stream(&format!("neighbour-{i}")),
                    ExpectedVersion::NoStream,
                    vec![event("Noted", i)],
                    meta(1_000 + u128::from(i)),
                );
                let racer = store.append(
                    stream("order-1"),
                    ExpectedVersion::Exact(Version(2)),
                    vec![event("Shipped", i)],
                    meta(2_000 + u128::from(i)),
                );
                tokio::join!(neighbour, racer)
            }));
        }
        let mut wins = 0;
        for racer in racers {
            let (neighbour, raced) = racer.await.expect("task");
            assert!(neighbour.is_ok(), "a neighbour is unaffected: {neighbour:?}");
            match raced {
                Ok(done) => {
                    wins += 1;
                    assert_eq!(done.version, Version(3));
                }
                Err(AppendError::Conflict { actual, .. }) => assert!(actual >= Version(2)),
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!(wins, 1, "one success and 19 conflicts");
        assert_eq!(check_log(&nodes[1]).await.len(), 2 + 20 + 1);
    });
}

#[test]
fn a_stalled_head_holder_shows_nothing_early_and_orders_the_next_append_after_it() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("stall").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let gate = Arc::new(Semaphore::new(0));
        let a = PgStore::open(PgConfig { before_commit: Some(gate.clone()), ..config(&url) }).await.expect("node a");
        let b = node(&url).await;
        let mut feed = b.subscribe(Seq::FIRST);
        gate.add_permits(1);
        a.append(stream("base"), ExpectedVersion::NoStream, vec![event("Opened", 0)], meta(1)).await.expect("base");
        // Node a's next transaction writes seq 2 and stalls before its commit, holding the head.
        let stalled = stall_holding_the_head(&a, &url, 2).await;
        // Node b appends meanwhile: it must wait behind the head's holder.
        let waiting = spawn_append(&b, "y", ExpectedVersion::NoStream, event("Y", 2), 3);
        let mut seen = Vec::new();
        follow_until(&mut feed, Seq(1), &mut seen).await;
        for _ in 0..10 {
            assert_eq!(
                b.read_all(Seq(2), 10).await.expect("read").len(),
                0,
                "nothing of the stalled append is visible"
            );
            assert!(b.head().seq <= Seq(1));
            assert!(!waiting.is_finished(), "the next append waits for the head");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gate.add_permits(2);
        let x = stalled.await.expect("task").expect("x");
        let y = waiting.await.expect("task").expect("y");
        assert_eq!((x.first_seq, y.first_seq), (Seq(2), Seq(3)));
        follow_until(&mut feed, Seq(3), &mut seen).await;
        assert_eq!(seen, vec![1, 2, 3]);
        check_log(&b).await;
    });
}

#[test]
fn a_claim_on_a_head_another_node_moved_is_decided_again_after_it() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("claim").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let gate = Arc::new(Semaphore::new(0));
        let a = PgStore::open(PgConfig { before_commit: Some(gate.clone()), ..config(&url) }).await.expect("node a");
        let b = node(&url).await;
        let s = || stream("s");
        // Node b writes alone: its second group on takes the head where b left it, in one
        // round trip, without reading it.
        b.append(s(), ExpectedVersion::NoStream, vec![event("E", 1)], meta(1)).await.expect("s1");
        b.append(s(), ExpectedVersion::Exact(Version(1)), vec![event("E", 2)], meta(2)).await.expect("s2");
        // Node a writes s's version 3 and stalls before its commit, holding the head.
        let stalled = spawn_append(&a, "s", ExpectedVersion::Exact(Version(2)), event("A", 3), 3);
        wait_until(|| holding_the_head(&url), "node a stalls holding the head").await;
        // Node b has not seen a's append: it stages s's version 3 too, and its claim waits for
        // the head.
        let racing = spawn_append(&b, "s", ExpectedVersion::Exact(Version(2)), event("B", 3), 4);
        wait_until(|| writer_waits_in(&url, "oacis_claim_head"), "node b's claim waits for the head").await;
        gate.add_permits(1);
        assert_eq!(stalled.await.expect("task").expect("a's append").version, Version(3));
        // The claim finds the head moved: b decides again under the lock, after a's records.
        let raced = racing.await.expect("task");
        assert!(
            matches!(raced, Err(AppendError::Conflict { actual: Version(3), .. })),
            "b's append is decided against a's version: {raced:?}"
        );
        let next = b.append(s(), ExpectedVersion::Exact(Version(3)), vec![event("B", 4)], meta(5)).await.expect("s4");
        assert_eq!((next.first_seq, next.version), (Seq(4), Version(4)));
        let all = check_log(&b).await;
        let kinds: Vec<&str> = all.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["E", "E", "A", "B"]);
    });
}

#[test]
fn a_lost_connection_while_a_retry_is_written_is_resolved_by_the_head_not_the_command_id() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("unknown_retry").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let a = node(&url).await;
        let first = a.append(stream("s"), ExpectedVersion::Any, vec![event("E", 1)], meta(1)).await.expect("first");
        // A session holds the head row: the writer's next claim waits for it.
        let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        holder.batch_execute("BEGIN; SELECT * FROM oacis_log_head FOR UPDATE").await.expect("hold the head");
        // A retry of the committed command (its caller never heard the answer): its group
        // takes the command id as new, and the connection is cut while it waits.
        let retry = spawn_append(&a, "s", ExpectedVersion::Any, event("E", 1), 1);
        wait_until(|| writer_waits_in(&url, "oacis_claim_head"), "the retry's claim waits for the head").await;
        holder
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'oacis-writer' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("terminate the writer's session");
        holder.batch_execute("ROLLBACK").await.expect("release the head");
        // The command id is in the table (from the first append), but the group is not:
        // the outcome is resolved as not committed, and the retry is answered as the first.
        let again = retry.await.expect("task").expect("the retry is answered");
        assert!(again.duplicate, "{again:?}");
        assert_eq!((again.first_seq, again.version), (first.first_seq, first.version));
        assert_eq!(a.head().seq, Seq(1), "no head published for a group that was not committed");
        let next = a.append(stream("s"), ExpectedVersion::Exact(Version(1)), vec![event("E", 2)], meta(2)).await;
        assert_eq!(next.expect("the log goes on").first_seq, Seq(2));
        assert_eq!(check_log(&a).await.len(), 2);
    });
}

/// A task appending `event` to stream `name` on `store` under command `command`.
fn spawn_append(
    store: &PgStore,
    name: &'static str,
    expected: ExpectedVersion,
    event: NewEvent,
    command: u128,
) -> tokio::task::JoinHandle<Result<Appended, AppendError>> {
    let store = store.clone();
    tokio::spawn(async move { store.append(stream(name), expected, vec![event], meta(command)).await })
}

/// Polls `check` every 20 ms until it holds, for 30 s at most.
async fn wait_until<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a writer's session waits for a lock in a statement naming `call`.
async fn writer_waits_in(url: &str, call: &str) -> bool {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'oacis-writer' \
             AND wait_event_type = 'Lock' AND position($1 in query) > 0",
            &[&call],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) > 0
}

#[test]
fn an_append_that_cannot_get_the_head_in_time_is_refused_as_unavailable_naming_the_lock_timeout() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("lock_timeout").expect("database");
    let rt = runtime();
    rt.block_on(async {
        // Node a stalls before its commit, holding the head; node b waits at most 300 ms.
        let gate = Arc::new(Semaphore::new(0));
        let a = PgStore::open(PgConfig { before_commit: Some(gate.clone()), ..config(&url) }).await.expect("node a");
        let b =
            PgStore::open(PgConfig { lock_timeout: Duration::from_millis(300), ..config(&url) }).await.expect("node b");
        let stalled = stall_holding_the_head(&a, &url, 1).await;
        // The cause is named (the statements pipelined after the lock would only say that the
        // transaction was aborted), and nothing of b's append is written.
        let refused = b
            .append(stream("y"), ExpectedVersion::NoStream, vec![event("Y", 2)], meta(2))
            .await
            .expect_err("no head within the lock timeout");
        // Unavailable: nothing was written, and the caller may try again.
        assert!(
            matches!(refused, oacis_eventlog::AppendError::Store(oacis_eventlog::Error::Unavailable(_))),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert!(message.contains("55P03") && message.contains("lock timeout"), "{message}");
        assert_eq!(message.matches("PostgreSQL").count(), 1, "{message}");
        gate.add_permits(1);
        assert_eq!(stalled.await.expect("task").expect("x").first_seq, Seq(1));
        let all = check_log(&b).await;
        assert_eq!(all.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>(), ["x"]);
    });
}

#[test]
fn stream_versions_a_node_knows_follow_the_other_nodes_appends() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("known_versions").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let (a, b) = (node(&url).await, node(&url).await);
        let s = || stream("s");
        let one = |n: u64| vec![event("E", n)];
        // Each node knows s from its own appends; the other's are caught up with under the
        // head, so that neither answers a conflict it should not nor writes a version twice.
        assert_eq!(b.append(s(), ExpectedVersion::NoStream, one(1), meta(1)).await.unwrap().version, Version(1));
        assert_eq!(
            a.append(s(), ExpectedVersion::Exact(Version(1)), one(2), meta(2)).await.unwrap().version,
            Version(2)
        );
        assert_eq!(
            b.append(s(), ExpectedVersion::Exact(Version(2)), one(3), meta(3)).await.unwrap().version,
            Version(3)
        );
        assert_eq!(b.append(s(), ExpectedVersion::Any, one(4), meta(4)).await.unwrap().version, Version(4));
        let stale = a.append(s(), ExpectedVersion::Exact(Version(2)), one(5), meta(5)).await;
        assert!(
            matches!(stale, Err(AppendError::Conflict { actual: Version(4), .. })),
            "a conflict names the version as the other node left it: {stale:?}"
        );
        assert_eq!(
            a.append(s(), ExpectedVersion::Exact(Version(4)), one(6), meta(6)).await.unwrap().version,
            Version(5)
        );
        // More records than a node catches up with (10,000) since b's last look: b reads s again.
        for batch in 0..101u64 {
            let events = (0..100).map(|k| event("Bulk", batch * 100 + k)).collect();
            a.append(stream("bulk"), ExpectedVersion::Any, events, meta(100 + u128::from(batch))).await.unwrap();
        }
        assert_eq!(
            a.append(s(), ExpectedVersion::Exact(Version(5)), one(7), meta(7)).await.unwrap().version,
            Version(6)
        );
        assert_eq!(
            b.append(s(), ExpectedVersion::Exact(Version(6)), one(8), meta(8)).await.unwrap().version,
            Version(7)
        );
        assert_eq!(b.read_stream(&s(), Version(1), 100).await.unwrap().len(), 7);
        check_log(&b).await;
    });
}

/// Starts node `a`'s append of stream "x" under command `command` (a node whose
/// `before_commit` gate has no permit left) and waits until it holds the head, stalled before
/// its commit; answers the append's task.
async fn stall_holding_the_head(
    a: &PgStore,
    url: &str,
    command: u128,
) -> tokio::task::JoinHandle<Result<Appended, AppendError>> {
    let append = spawn_append(a, "x", ExpectedVersion::NoStream, event("X", 1), command);
    wait_until(|| holding_the_head(url), "the append stalls holding the head").await;
    append
}

/// Whether some session is idle in a transaction (the stalled writer holding the head).
async fn holding_the_head(url: &str) -> bool {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'oacis-writer' AND state = 'idle in transaction'",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) > 0
}

#[test]
fn killed_listeners_and_readers_are_replaced_and_the_feed_has_no_gap() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("listen").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let a = node(&url).await;
        let b = node(&url).await;
        let mut feed = b.subscribe(Seq::FIRST);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let mut written = 0u64;
        for round in 0..6u64 {
            for i in 0..50u64 {
                a.append(
                    stream(&format!("s{}", i % 5)),
                    ExpectedVersion::Any,
                    vec![event("E", round * 100 + i)],
                    meta(u128::from(round * 100 + i + 1)),
                )
                .await
                .expect("append");
                written += 1;
            }
            // Both nodes' listeners are back (they reconnect after each kill), then killed.
            let listeners = "FROM pg_stat_activity WHERE application_name = 'oacis-tailer'";
            while client.query_one(&format!("SELECT count(*) {listeners}"), &[]).await.expect("count").get::<_, i64>(0)
                < 2
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let killed = client
                .query_one(&format!("SELECT count(pg_terminate_backend(pid)) {listeners}"), &[])
                .await
                .expect("terminate the listeners");
            assert_eq!(killed.get::<_, i64>(0), 2);
            // And the read pools' connections: the feed reads again on new ones, never stops.
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'oacis-reader'",
                    &[],
                )
                .await
                .expect("terminate the readers");
        }
        let mut seen = Vec::new();
        follow_until(&mut feed, Seq(written), &mut seen).await;
        assert_eq!(seen, (1..=written).collect::<Vec<_>>());
        assert_eq!(b.wait_for(Seq(written), Duration::from_secs(5)).await.seq, Seq(written));
    });
}

#[test]
fn a_postgres_crash_loses_nothing_acknowledged_and_retries_add_nothing() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("crash").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let store = node(&url).await;
        let payload =
            |w: u64, i: u64| vec![event("Written", w * 1_000_000 + i), event("Written", w * 1_000_000 + i + 1)];
        let mut writers = Vec::new();
        for w in 0..8u64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..400u64 {
                    let command = u128::from(w) << 64 | u128::from(i);
                    let outcome = store
                        .append(stream(&format!("w{w}")), ExpectedVersion::Any, payload(w, i), meta(command))
                        .await;
                    if let Err(e) = &outcome {
                        // The callers are told the store is away (retrying is safe), not that
                        // their append was wrong.
                        assert!(matches!(e, AppendError::Store(oacis_eventlog::Error::Unavailable(_))), "{e}");
                    }
                    let failed = outcome.is_err();
                    outcomes.push((w, i, command, outcome.ok()));
                    if failed {
                        break;
                    }
                }
                outcomes
            }));
        }
        // Crash the server once some appends are acknowledged.
        while store.head().seq < Seq(200) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.crash().expect("crash PostgreSQL");
        let mut outcomes = Vec::new();
        for writer in writers {
            outcomes.extend(writer.await.expect("writer"));
        }
        assert!(outcomes.iter().any(|o| o.3.is_none()), "the crash interrupted some appends");
        cluster.start_again().expect("restart PostgreSQL");
        let reopened = node(&url).await;
        for (w, i, command, acknowledged) in &outcomes {
            // Every acknowledged append is there; a retry under its command id adds nothing and
            // answers the first result. An unacknowledged one lands once.
            let retried = reopened
                .append(stream(&format!("w{w}")), ExpectedVersion::Any, payload(*w, *i), meta(*command))
                .await
                .expect("retry after the restart");
            if let Some(first) = acknowledged {
                assert_eq!(retried, Appended { duplicate: true, ..*first });
            }
        }
        let all = check_log(&reopened).await;
        let commands: HashSet<u128> = outcomes.iter().map(|o| o.2).collect();
        assert_eq!(all.len(), commands.len() * 2, "each append once, whole");
        // The store that lived through the crash works again too (it reconnects).
        store
            .append(stream("after"), ExpectedVersion::NoStream, vec![event("Back", 0)], meta(u128::MAX))
            .await
            .expect("reconnected");
    });
}

#[test]
fn a_node_killed_mid_batch_loses_nothing_acknowledged() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("kill").expect("database");
    let mut acknowledged: Vec<(u64, u64, u128)> = Vec::new();
    for (run, kill_after) in [(0u64, 50usize), (1, 1), (2, 300)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventlog-crash-writer"))
            .args([url.as_str(), &run.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut count = 0;
        for line in lines {
            let line = line.expect("line");
            let mut words = line.split(' ');
            if words.next() == Some("ack") {
                let first: u64 = words.next().unwrap().parse().unwrap();
                let last: u64 = words.next().unwrap().parse().unwrap();
                let command: u128 = words.next().unwrap().parse().unwrap();
                acknowledged.push((first, last, command));
                count += 1;
                if count >= kill_after {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let rt = runtime();
    rt.block_on(async {
        let store = node(&url).await;
        let all = check_log(&store).await;
        for (first, last, command) in &acknowledged {
            let records = &all[(*first - 1) as usize..*last as usize];
            assert!(
                records.iter().all(|r| r.meta.command_id.0.as_u128() == *command),
                "acknowledged append {command} intact"
            );
            assert_eq!((last - first + 1) as u128, 1 + command % 3, "whole");
        }
        // Every command in the log is whole (no partial append of a killed batch).
        let mut runs: HashMap<u128, u128> = HashMap::new();
        for record in &all {
            *runs.entry(record.meta.command_id.0.as_u128()).or_default() += 1;
        }
        for (command, count) in runs {
            assert_eq!(count, 1 + command % 3, "command {command} landed whole");
        }
    });
}

#[test]
fn tables_of_earlier_builds_are_changed_at_open() {
    let cluster = PgCluster::start().expect("cluster");
    let rt = runtime();
    rt.block_on(async {
        let collation = |url: String| async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let row = client
                .query_one(
                    "SELECT collation_name FROM information_schema.columns
                     WHERE table_name = 'oacis_events' AND column_name = 'stream_id'",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, Option<String>>(0)
        };
        // The constraints on previous hashes: (name, kind).
        let once = |url: String| async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let rows = client
                .query(
                    "SELECT conname::text, contype::text FROM pg_constraint
                     WHERE conrelid = 'oacis_events'::regclass AND conname LIKE 'oacis_events_prev_hash%'",
                    &[],
                )
                .await
                .unwrap();
            rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, String>(1))).collect::<Vec<_>>()
        };
        let hash_index = vec![("oacis_events_prev_hash_once".to_string(), "x".to_string())];
        let fresh = cluster.database("collation_fresh").expect("database");
        drop(node(&fresh).await);
        assert_eq!(collation(fresh.clone()).await.as_deref(), Some("C"));
        assert_eq!(once(fresh.clone()).await, hash_index, "an exclusion constraint");
        // A table as earlier builds made it (the database's default collation), with records.
        let older = cluster.database("collation_older").expect("database");
        let store = node(&older).await;
        for i in 0..3u64 {
            store
                .append(stream("s"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i) + 1))
                .await
                .unwrap();
        }
        drop(store);
        let (client, connection) = tokio_postgres::connect(&older, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(
                "ALTER TABLE oacis_events ALTER COLUMN stream_id TYPE text COLLATE \"default\";
                 ALTER TABLE oacis_events DROP CONSTRAINT oacis_events_prev_hash_once;
                 ALTER TABLE oacis_events ADD CONSTRAINT oacis_events_prev_hash_key UNIQUE (prev_hash)",
            )
            .await
            .unwrap();
        assert_eq!(collation(older.clone()).await, None, "the database's default");
        assert_eq!(once(older.clone()).await, [("oacis_events_prev_hash_key".to_string(), "u".to_string())]);
        let store = node(&older).await;
        assert_eq!(collation(older.clone()).await.as_deref(), Some("C"));
        assert_eq!(once(older.clone()).await, hash_index, "the B-tree constraint replaced");
        // The records are as they were, and the stream goes on from its version.
        let next = store.append(stream("s"), ExpectedVersion::Exact(Version(3)), vec![event("E", 3)], meta(4)).await;
        assert_eq!(next.expect("appended").version, Version(4));
        assert_eq!(store.read_stream(&stream("s"), Version(1), 10).await.unwrap().len(), 4);
        check_log(&store).await;
    });
}

#[test]
fn the_database_refuses_a_fork_a_repeated_version_seq_or_command_id() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("constraints").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let store = node(&url).await;
        for i in 1..=3u64 {
            store.append(stream("s"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i))).await.unwrap();
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        // What a faulty node could try to write beside the records: each is refused, naming
        // the constraint, and nothing is written.
        let copy = "INSERT INTO oacis_events (seq, stream_id, version, command_id, prev_hash, hash, record)
                    SELECT $1, $2, $3, command_id, prev_hash, hash, record FROM oacis_events WHERE seq = 2";
        let refused = async |seq: i64, stream: &str, version: i64| {
            let error = client.execute(copy, &[&seq, &stream, &version]).await.expect_err("refused");
            let db = error.as_db_error().expect("a database error");
            (db.code().code().to_string(), db.constraint().unwrap_or_default().to_string())
        };
        let expect = |code: &str, name: &str| (code.to_string(), name.to_string());
        assert_eq!(refused(9, "t", 1).await, expect("23P01", "oacis_events_prev_hash_once"), "a fork");
        // (A copy of record 3 chained to record 3 itself, for the other keys.)
        let other = "INSERT INTO oacis_events (seq, stream_id, version, command_id, prev_hash, hash, record)
                     SELECT $1, $2, $3, command_id, hash, hash, record FROM oacis_events WHERE seq = 3";
        let refused_other = async |seq: i64, stream: &str, version: i64| {
            let error = client.execute(other, &[&seq, &stream, &version]).await.expect_err("refused");
            let db = error.as_db_error().expect("a database error");
            (db.code().code().to_string(), db.constraint().unwrap_or_default().to_string())
        };
        assert_eq!(refused_other(9, "s", 2).await, expect("23505", "oacis_events_stream_id_version_key"));
        assert_eq!(refused_other(2, "t", 1).await, expect("23505", "oacis_events_pkey"));
        let command = client
            .execute("INSERT INTO oacis_commands (command_id, first_seq, last_seq) SELECT command_id, 9, 9 FROM oacis_events WHERE seq = 1", &[])
            .await
            .expect_err("refused");
        assert_eq!(command.as_db_error().and_then(|db| db.constraint()), Some("oacis_commands_pkey"));
        assert_eq!(check_log(&store).await.len(), 3);
    });
}

#[test]
fn bad_connection_strings_and_unreachable_servers_are_typed_errors() {
    let rt = runtime();
    rt.block_on(async {
        let bad = PgStore::open(PgConfig::new("postgres://[::1")).await.expect_err("invalid");
        assert!(bad.to_string().contains("invalid connection string"), "{bad}");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let gone =
            PgStore::open(PgConfig::new(format!("postgres://postgres@127.0.0.1:{port}/x"))).await.expect_err("refused");
        // No server there: unavailable (a caller may try again), naming the cause.
        assert!(matches!(gone, oacis_eventlog::Error::Unavailable(_)), "{gone}");
        assert!(gone.to_string().contains("refused"), "{gone}");
    });
}

#[test]
fn payload_rules_hold_on_postgres_as_on_sled() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("rules").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let store = node(&url).await;
        let not_json =
            NewEvent { kind: oacis_eventlog::EventKind::new("Bad").unwrap(), schema: 1, payload: b"{".to_vec() };
        let refused = store.append(stream("s"), ExpectedVersion::Any, vec![not_json], meta(1)).await;
        assert!(matches!(refused, Err(AppendError::PayloadNotJson { .. })), "{refused:?}");
        let empty = store.append(stream("s"), ExpectedVersion::Any, vec![], meta(2)).await;
        assert!(matches!(empty, Err(AppendError::Empty)));
        assert_eq!(everything(&store).await.len(), 0, "nothing written");
        store.append(stream("s"), ExpectedVersion::NoStream, vec![event("Ok", 1)], meta(3)).await.expect("ok");
        let reused = store.append(stream("t"), ExpectedVersion::Any, vec![event("Other", 1)], meta(3)).await;
        assert!(matches!(reused, Err(AppendError::CommandReused { .. })), "{reused:?}");
        let outcome =
            store.command_outcome(oacis_eventlog::CommandId(uuid::Uuid::from_u128(3))).await.unwrap().unwrap();
        assert_eq!(outcome.appends.len(), 1);
        assert_eq!(check_log(&store).await.len(), 1);
    });
}

#[test]
fn servers_with_key_stores_of_their_own_share_keys_through_the_database() {
    use oacis_eventlog::keys::{Kek, KeyState, KeyStore};

    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("keys").expect("database");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let rt = runtime();
    rt.block_on(async {
        let kek = || Kek::from_bytes(&[5; 32]);
        let with_keys =
            |dir: &std::path::Path| PgConfig { keys: Some(KeyStore::open(dir, kek()).unwrap()), ..config(&url) };
        let a = PgStore::open(with_keys(dirs[0].path())).await.unwrap();
        let b = PgStore::open(with_keys(dirs[1].path())).await.unwrap();
        let personal = NewEvent::json(
            "Registered",
            1,
            &serde_json::json!({ "name": "甲", "personal": { "phone": "+8613900000001" } }),
        )
        .unwrap();
        a.append(stream("customer-1"), ExpectedVersion::NoStream, vec![personal], meta(1)).await.unwrap();
        // Node b reads the record sealed with a's key, and opens it.
        let record = b.read_stream(&stream("customer-1"), Version(1), 10).await.unwrap().remove(0);
        assert!(!String::from_utf8_lossy(&record.payload).contains("+8613900000001"), "sealed in the log");
        let ids = oacis_eventlog::seal::key_ids(&record.payload);
        assert_eq!(ids.len(), 1);
        let b_keys = b.keys().unwrap().clone();
        assert!(
            matches!(b_keys.get(&ids[0]), KeyState::Present(_)),
            "b took a's key in before the reader saw the record"
        );
        let opened = oacis_eventlog::seal::open_record(Some(&b_keys), &record.borrowed()).unwrap();
        assert!(String::from_utf8_lossy(&opened).contains("+8613900000001"));
        // a erases: its key is destroyed and the shared row becomes a tombstone.
        let a_keys = a.keys().unwrap().clone();
        a_keys.erase("customer-1", &ids).unwrap();
        a.share_erasure(&ids).await.unwrap();
        // A server started after the erasure takes in the tombstone, never the key.
        let c = PgStore::open(with_keys(dirs[2].path())).await.unwrap();
        let c_keys = c.keys().unwrap().clone();
        assert!(matches!(c_keys.get(&ids[0]), KeyState::Destroyed));
        let record = c.read_stream(&stream("customer-1"), Version(1), 10).await.unwrap().remove(0);
        let opened = oacis_eventlog::seal::open_record(Some(&c_keys), &record.borrowed()).unwrap();
        assert!(!String::from_utf8_lossy(&opened).contains("+8613900000001"));
        // A server with another key-encryption key is refused at open, naming it.
        let other = tempfile::tempdir().unwrap();
        let refused = PgStore::open(PgConfig {
            keys: Some(KeyStore::open(other.path(), Kek::from_bytes(&[6; 32])).unwrap()),
            ..config(&url)
        })
        .await
        .expect_err("another KEK");
        assert!(refused.to_string().contains("key-encryption key") || refused.to_string().contains("KEK"), "{refused}");
    });
}

#[test]
fn a_frozen_node_holding_the_head_is_cut_off_and_the_others_go_on() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("frozen").expect("database");
    let rt = runtime();
    rt.block_on(async {
        // Node a freezes after its writes, before its commit, holding the head's lock; the
        // server ends its transaction after twice its lock timeout.
        let gate = Arc::new(Semaphore::new(0));
        let a = PgStore::open(PgConfig {
            before_commit: Some(gate.clone()),
            lock_timeout: Duration::from_millis(400),
            ..config(&url)
        })
        .await
        .expect("node a");
        let b = node(&url).await;
        let frozen = stall_holding_the_head(&a, &url, 1).await;
        let started = Instant::now();
        let y =
            b.append(stream("y"), ExpectedVersion::NoStream, vec![event("Y", 2)], meta(2)).await.expect("b goes on");
        assert!(started.elapsed() < Duration::from_secs(4), "b waited {:?}", started.elapsed());
        assert_eq!(y.first_seq, Seq(1), "nothing of the frozen append committed");
        // Node a thaws: its commit fails on the connection the server closed, the command id
        // shows nothing committed, and the append is decided again after b's.
        gate.add_permits(8);
        let x = frozen.await.expect("task").expect("decided again and committed");
        assert_eq!(x.first_seq, Seq(2));
        let all = check_log(&b).await;
        assert_eq!(all.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>(), ["y", "x"]);
    });
}

#[test]
fn a_database_that_lost_committed_records_is_refused() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("rewound").expect("database");
    let dir = tempfile::tempdir().unwrap();
    let head_file = dir.path().join("postgres-head");
    let rt = runtime();
    rt.block_on(async {
        let with_witness = || PgConfig { head_file: Some(head_file.clone()), ..config(&url) };
        let store = PgStore::open(with_witness()).await.unwrap();
        for i in 0..10u64 {
            store
                .append(stream("s"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i) + 1))
                .await
                .unwrap();
        }
        // The server keeps the head it saw committed in its data folder.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&head_file).map_or(true, |t| !t.starts_with("10 ")) {
            assert!(Instant::now() < deadline, "the head file follows the head");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The database goes back to seq 5, as a failover to a lagging replica would.
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(
                "DELETE FROM oacis_events WHERE seq > 5; DELETE FROM oacis_commands WHERE first_seq > 5;
                 UPDATE oacis_log_head SET seq = 5, hash = (SELECT hash FROM oacis_events WHERE seq = 5)",
            )
            .await
            .unwrap();
        // The running server refuses to append on it, naming what was lost.
        let refused = store.append(stream("s"), ExpectedVersion::Any, vec![event("E", 99)], meta(99)).await;
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("acknowledged records are missing"), "{message}");
        assert!(message.contains("seq 10"), "{message}");
        let refusing = store.refusing_appends().expect("the store says why it refuses appends");
        assert!(refusing.contains("acknowledged records are missing"), "{refusing}");
        drop(store);
        // And a restart with its data folder refuses to open.
        let reopened = PgStore::open(with_witness()).await.expect_err("refused at open");
        assert!(matches!(reopened, oacis_eventlog::Error::LogRewound { .. }), "{reopened}");
        // Nothing was appended on the shortened log.
        let plain = node(&url).await;
        assert_eq!(check_log(&plain).await.len(), 5);
    });
}

/// The tailer reads the head every millisecond while this node's writer commits: a head it
/// reads before one the writer publishes while that read is on its way is not the log going
/// back, and appends go on (a false alarm refuses every append from then on).
#[test]
fn a_node_reading_the_head_while_its_writer_commits_does_not_take_it_for_a_rewind() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("own_commits").expect("database");
    let rt = runtime();
    rt.block_on(async {
        let store = PgStore::open(PgConfig { poll_interval: Duration::from_millis(1), ..config(&url) }).await.unwrap();
        let writers: Vec<_> = (0..8u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for i in 0..150u64 {
                        let appended = store
                            .append(
                                stream(&format!("w{w}")),
                                ExpectedVersion::Any,
                                vec![event("E", i)],
                                meta(u128::from(w * 1000 + i + 1)),
                            )
                            .await;
                        refused += usize::from(appended.is_err());
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for writer in writers {
            refused += writer.await.expect("writer");
        }
        assert_eq!(store.refusing_appends(), None);
        assert_eq!(refused, 0);
        assert_eq!(check_log(&store).await.len(), 1200);
    });
}
