//! Model-based property test: random appends over several streams, with conflicts, repeated
//! command ids, concurrent groups and reopens, checked against an in-memory reference log.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::HashMap;

use common::{meta, open, runtime, stream};
use oacis_eventlog::{AppendError, Appended, EventStore, ExpectedVersion, NewEvent, Seq, SledStore, Version};
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
    Append {
        stream: u8,
        expect: Expect,
        events: u8,
        command: u8,
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
    prop_oneof![
        6 => (0u8..4, expect, 1u8..4, 0u8..12).prop_map(|(stream, expect, events, command)| Op::Append { stream, expect, events, command }),
        2 => proptest::collection::vec(0u8..4, 2..12).prop_map(|streams| Op::Concurrent { streams }),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: what the log must hold.
#[derive(Default)]
struct Model {
    records: Vec<(String, u64, Vec<u8>)>,
    versions: HashMap<String, u64>,
    commands: HashMap<u128, Appended>,
}

impl Model {
    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// Applies an append the way the log must, returning the expected outcome.
    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        payloads: Vec<Vec<u8>>,
        command: u128,
    ) -> Result<Appended, Version> {
        if let Some(first) = self.commands.get(&command) {
            return Ok(*first);
        }
        let actual = Version(self.version(stream));
        if !expected.admits(actual) {
            return Err(actual);
        }
        let first_seq = Seq(self.records.len() as u64 + 1);
        let mut version = actual.0;
        for payload in payloads {
            version += 1;
            self.records.push((stream.to_owned(), version, payload));
        }
        self.versions.insert(stream.to_owned(), version);
        let outcome = Appended {
            first_seq,
            last_seq: Seq(self.records.len() as u64),
            version: Version(version),
            duplicate: false,
        };
        self.commands.insert(command, Appended { duplicate: true, ..outcome });
        Ok(outcome)
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

async fn check_contents(store: &SledStore, model: &Model) {
    let all = store.read_all(Seq(1), usize::MAX).await.expect("read_all");
    let seen: Vec<_> = all.iter().map(|r| (r.stream.to_string(), r.version.0, r.payload.clone())).collect();
    assert_eq!(seen, model.records);
    for name in model.versions.keys() {
        let of_stream = store.read_stream(&stream(name), Version(1), usize::MAX).await.expect("read_stream");
        let expected: Vec<_> = model.records.iter().filter(|r| &r.0 == name).cloned().collect();
        let seen: Vec<_> = of_stream.iter().map(|r| (r.stream.to_string(), r.version.0, r.payload.clone())).collect();
        assert_eq!(seen, expected);
    }
    let report = store.verify(&mut |_| {}).expect("chain verifies");
    assert_eq!(report.records, model.records.len() as u64);
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let mut model = Model::default();
    let mut store = Some(open(dir.path()));
    let mut fresh_command = 1_000u128;
    for (step, op) in ops.into_iter().enumerate() {
        let salt = step as u64;
        match op {
            Op::Append { stream: s, expect, events, command } => {
                let name = format!("stream-{s}");
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::Exact(v) => ExpectedVersion::Exact(Version(v)),
                    Expect::Current => ExpectedVersion::Exact(Version(model.version(&name))),
                };
                let payloads = payloads(events, salt);
                let live = store.as_ref().expect("open");
                let got =
                    rt.block_on(live.append(stream(&name), expected, events_of(&payloads), meta(u128::from(command))));
                let want = model.append(&name, expected, payloads, u128::from(command));
                match (got, want) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want),
                    (Err(AppendError::Conflict { actual, .. }), Err(want)) => {
                        assert_eq!(actual, want)
                    }
                    (got, want) => panic!("step {step}: store said {got:?}, model said {want:?}"),
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
                    let want =
                        model.append(&name, ExpectedVersion::Any, payloads, command).expect("Any never conflicts");
                    assert_eq!(got, want);
                }
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(open(dir.path()));
            }
        }
    }
    let live = store.take().expect("open");
    rt.block_on(check_contents(&live, &model));
    drop(live);
    rt.block_on(check_contents(&open(dir.path()), &model));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_log_matches_a_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
