//! Model-based property test: random appends of one or several streams at once, with
//! conflicts, true retries, command ids reused for other appends, concurrent groups and
//! reopens, checked against an in-memory reference log (including `command_outcome`). The
//! same cases run against both backends: sled in a temporary folder, and PostgreSQL in a
//! fresh database of a throwaway cluster.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::HashMap;

use common::{meta, runtime, stream, Backend};
use oacis_eventlog::{
    AppendError, Appended, CommandId, EventStore, ExpectedVersion, NewEvent, Seq, StreamAppend, Version,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    Exact(u64),
    /// The stream's true current version (always accepted).
    Current,
}

#[derive(Debug, Clone)]
enum Op {
    /// One call to `append_many` (one part is a plain append); streams may repeat.
    Append {
        parts: Vec<(u8, Expect, u8)>,
        command: u8,
    },
    /// Sends an earlier request again, exactly.
    Retry {
        nth: usize,
    },
    /// Appends with fresh command ids sent at once, so the writer groups them.
    Concurrent {
        streams: Vec<u8>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        (0u64..4).prop_map(Expect::Exact),
        Just(Expect::Current),
    ];
    let part = (0u8..4, expect, 1u8..4);
    prop_oneof![
        6 => (proptest::collection::vec(part, 1..4), 0u8..12).prop_map(|(parts, command)| Op::Append { parts, command }),
        2 => (0usize..64).prop_map(|nth| Op::Retry { nth }),
        2 => proptest::collection::vec(0u8..4, 2..12).prop_map(|streams| Op::Concurrent { streams }),
        1 => Just(Op::Reopen),
    ]
}

/// One part of a request as the model sees it: stream, expectation, payloads.
type Part = (String, ExpectedVersion, Vec<Vec<u8>>);

/// What an append wrote: each stream and its payloads.
type Written = Vec<(String, Vec<Vec<u8>>)>;

/// Why the model refuses an append.
#[derive(Debug, PartialEq)]
enum Refusal {
    Conflict(String, Version),
    Reused,
    Repeated,
}

/// The reference: what the log must hold.
#[derive(Default)]
struct Model {
    records: Vec<(String, u64, Vec<u8>)>,
    versions: HashMap<String, u64>,
    /// Each command's first append: what it wrote, and its answer.
    commands: HashMap<u128, (Written, Vec<Appended>)>,
}

impl Model {
    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// Applies an append the way the log must, returning the expected outcome.
    fn append(&mut self, parts: Vec<Part>, command: u128) -> Result<Vec<Appended>, Refusal> {
        for (i, part) in parts.iter().enumerate() {
            if parts[..i].iter().any(|earlier| earlier.0 == part.0) {
                return Err(Refusal::Repeated);
            }
        }
        let written: Written = parts.iter().map(|(s, _, p)| (s.clone(), p.clone())).collect();
        if let Some((first, outcome)) = self.commands.get(&command) {
            return if *first == written { Ok(outcome.clone()) } else { Err(Refusal::Reused) };
        }
        for (stream, expected, _) in &parts {
            let actual = Version(self.version(stream));
            if !expected.admits(actual) {
                return Err(Refusal::Conflict(stream.clone(), actual));
            }
        }
        let mut outcomes = Vec::new();
        for (stream, _, payloads) in parts {
            let first_seq = Seq(self.records.len() as u64 + 1);
            let mut version = self.version(&stream);
            for payload in payloads {
                version += 1;
                self.records.push((stream.clone(), version, payload));
            }
            self.versions.insert(stream, version);
            outcomes.push(Appended {
                first_seq,
                last_seq: Seq(self.records.len() as u64),
                version: Version(version),
                duplicate: false,
            });
        }
        let answer = outcomes.iter().map(|o| Appended { duplicate: true, ..*o }).collect();
        self.commands.insert(command, (written, answer));
        Ok(outcomes)
    }
}

fn payloads(count: u8, salt: u64) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!(r#"{{"salt":{salt},"i":{i},"名":"值"}}"#).into_bytes()).collect()
}

fn events_of(payloads: &[Vec<u8>]) -> Vec<NewEvent> {
    payloads
        .iter()
        .map(|p| NewEvent { kind: oacis_eventlog::EventKind::new("Happened").unwrap(), schema: 1, payload: p.clone() })
        .collect()
}

async fn check_contents<S: EventStore>(store: &S, model: &Model) {
    let all = store.read_all(Seq(1), usize::MAX).await.expect("read_all");
    let seen: Vec<_> = all.iter().map(|r| (r.stream.to_string(), r.version.0, r.payload.clone())).collect();
    assert_eq!(seen, model.records);
    for name in model.versions.keys() {
        let of_stream = store.read_stream(&stream(name), Version(1), usize::MAX).await.expect("read_stream");
        let expected: Vec<_> = model.records.iter().filter(|r| &r.0 == name).cloned().collect();
        let seen: Vec<_> = of_stream.iter().map(|r| (r.stream.to_string(), r.version.0, r.payload.clone())).collect();
        assert_eq!(seen, expected);
    }
    let report = oacis_eventlog::verify::verify_log(store, &mut |_| {}).await.expect("chain verifies");
    assert_eq!(report.records, model.records.len() as u64);
    for (command, (written, answer)) in &model.commands {
        let outcome = store
            .command_outcome(CommandId(uuid::Uuid::from_u128(*command)))
            .await
            .expect("command_outcome")
            .expect("a written command has an outcome");
        let streams: Vec<_> = outcome.appends.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(streams, written.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
        assert_eq!(outcome.appends.into_iter().map(|(_, a)| a).collect::<Vec<_>>(), *answer);
    }
    let unused = store.command_outcome(CommandId(uuid::Uuid::from_u128(u128::MAX))).await.expect("lookup");
    assert_eq!(unused, None);
}

/// Sends one request to the store and to the model and checks that they agree.
fn send<S: EventStore>(
    rt: &tokio::runtime::Runtime,
    live: &S,
    model: &mut Model,
    parts: Vec<Part>,
    command: u128,
    step: usize,
) {
    let appends = parts
        .iter()
        .map(|(name, expected, payloads)| StreamAppend {
            stream: stream(name),
            expected: *expected,
            events: events_of(payloads),
        })
        .collect();
    let got = rt.block_on(live.append_many(appends, meta(command)));
    let want = model.append(parts, command);
    match (got, want) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "step {step}"),
        (Err(AppendError::Conflict { stream, actual, .. }), Err(Refusal::Conflict(name, want))) => {
            assert_eq!((stream.to_string(), actual), (name, want), "step {step}");
        }
        (Err(AppendError::CommandReused { .. }), Err(Refusal::Reused))
        | (Err(AppendError::RepeatedStream { .. }), Err(Refusal::Repeated)) => {}
        (got, want) => panic!("step {step}: store said {got:?}, model said {want:?}"),
    }
}

fn run<B: Backend>(ops: Vec<Op>, backend: &B, rt: &tokio::runtime::Runtime) {
    let mut model = Model::default();
    let mut store = Some(backend.open(rt));
    let mut fresh_command = 1_000u128;
    let mut sent: Vec<(Vec<Part>, u128)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let salt = step as u64;
        match op {
            Op::Append { parts, command } => {
                let parts: Vec<Part> = parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (s, expect, events))| {
                        let name = format!("stream-{s}");
                        let expected = match expect {
                            Expect::Any => ExpectedVersion::Any,
                            Expect::NoStream => ExpectedVersion::NoStream,
                            Expect::Exact(v) => ExpectedVersion::Exact(Version(v)),
                            Expect::Current => ExpectedVersion::Exact(Version(model.version(&name))),
                        };
                        (name, expected, payloads(events, salt * 10 + i as u64))
                    })
                    .collect();
                sent.push((parts.clone(), u128::from(command)));
                send(rt, store.as_ref().expect("open"), &mut model, parts, u128::from(command), step);
            }
            Op::Retry { nth } => {
                if let Some((parts, command)) = sent.get(nth % sent.len().max(1)).cloned() {
                    send(rt, store.as_ref().expect("open"), &mut model, parts, command, step);
                }
            }
            Op::Concurrent { streams } => {
                let live = store.as_ref().expect("open").clone();
                let mut sent = Vec::new();
                let outcomes = rt.block_on(async {
                    let mut tasks = Vec::new();
                    for (i, s) in streams.iter().enumerate() {
                        fresh_command += 1;
                        let name = format!("stream-{s}");
                        let payloads = payloads(1 + (i % 2) as u8, salt * 100 + i as u64);
                        sent.push((name.clone(), payloads.clone(), fresh_command));
                        let live = live.clone();
                        let command = fresh_command;
                        tasks.push(tokio::spawn(async move {
                            live.append(stream(&name), ExpectedVersion::Any, events_of(&payloads), meta(command)).await
                        }));
                    }
                    let mut outcomes = Vec::new();
                    for task in tasks {
                        outcomes.push(task.await.expect("task").expect("append"));
                    }
                    outcomes
                });
                // The store chose an order; the model follows it and must agree on every field.
                let mut order: Vec<_> = outcomes.into_iter().zip(sent).collect();
                order.sort_by_key(|(outcome, _)| outcome.first_seq);
                for (got, (name, payloads, command)) in order {
                    let want = model
                        .append(vec![(name, ExpectedVersion::Any, payloads)], command)
                        .expect("Any never conflicts");
                    assert_eq!(vec![got], want);
                }
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(backend.open(rt));
            }
        }
    }
    let live = store.take().expect("open");
    rt.block_on(check_contents(&live, &model));
    drop(live);
    rt.block_on(check_contents(&backend.open(rt), &model));
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..40)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_log_matches_a_reference_model(ops in ops()) {
        let dir = tempfile::tempdir().expect("tempdir");
        run(ops, &common::Sled(dir.path().to_owned()), &runtime());
    }
}

/// The same cases on PostgreSQL: one cluster for the run, a fresh database per case.
#[test]
fn the_postgres_log_matches_the_same_reference_model() {
    let cluster = common::PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let rt = runtime();
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&ops(), |ops| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = cluster.database(&format!("model{n}")).expect("a fresh database");
            run(ops, &common::Pg(url), &rt);
            Ok(())
        })
        .expect("every case agrees with the model");
}
