//! Crash test: a child process appends in a loop and reports each acknowledged append; it is
//! killed with SIGKILL at random moments (including while it opens the store, when sled writes
//! its snapshot). After every kill the store must open, hold every acknowledged event, verify
//! end to end, and show no partial append (including two-stream appends, which must land on
//! both streams or neither).
//!
//! Cycles: 12 by default; set `OACIS_CRASH_CYCLES` for a longer run.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use oacis_eventlog::Seq;

/// A small deterministic generator, so that a failing run can be repeated with its seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn every_acknowledged_append_survives_sigkill_and_none_lands_partially() -> anyhow::Result<()> {
    let cycles: u64 = std::env::var("OACIS_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("OACIS_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_0AC1);
    let mut random = seed;
    let dir = tempfile::tempdir()?;
    let mut acknowledged: Vec<(u64, u64, u128)> = Vec::new();
    for run in 0..cycles {
        // Kill after this many acknowledgements; 0 kills the child while it opens the store.
        let kill_after = match next_random(&mut random) % 4 {
            0 => 0,
            _ => next_random(&mut random) % 400,
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventlog-crash-writer"))
            .arg(dir.path())
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        if kill_after > 0 {
            while seen < kill_after {
                let Some(line) = lines.next() else { break };
                if parse_ack(&line?, &mut acknowledged) {
                    seen += 1;
                }
            }
        }
        child.kill()?;
        // Lines already written before the kill are acknowledgements too.
        for line in lines {
            parse_ack(&line?, &mut acknowledged);
        }
        child.wait()?;
        check_store(dir.path(), &acknowledged, run, seed);
    }
    assert!(acknowledged.len() > 100, "the children acknowledged too little to prove anything");
    Ok(())
}

fn parse_ack(line: &str, acknowledged: &mut Vec<(u64, u64, u128)>) -> bool {
    let mut words = line.split(' ');
    if words.next() != Some("ack") {
        return false;
    }
    let mut number = || words.next().and_then(|w| w.parse::<u128>().ok()).expect("ack line");
    let (first, last, command) = (number(), number(), number());
    acknowledged.push((first as u64, last as u64, command));
    true
}

fn check_store(dir: &std::path::Path, acknowledged: &[(u64, u64, u128)], run: u64, seed: u64) {
    let context = format!("after kill {run} (seed {seed})");
    let store = oacis_eventlog::SledStore::open(oacis_eventlog::SledConfig::new(dir))
        .unwrap_or_else(|e| panic!("{context}: the store does not open: {e}"));
    let report = store.verify(&mut |_| {}).unwrap_or_else(|e| panic!("{context}: verify failed: {e}"));
    let records =
        store.records(Seq(1)).collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| panic!("{context}: read failed: {e}"));
    assert_eq!(records.len() as u64, report.records);
    let mut per_command: HashMap<u128, Vec<u64>> = HashMap::new();
    let mut paired: HashMap<u128, usize> = HashMap::new();
    for record in &records {
        per_command.entry(record.meta.command_id.0.as_u128()).or_default().push(record.seq.0);
        if record.stream.as_str().ends_with("-pair") {
            *paired.entry(record.meta.command_id.0.as_u128()).or_default() += 1;
        }
    }
    for (command, seqs) in &per_command {
        let intended = 1 + command % 3;
        assert_eq!(seqs.len() as u128, intended, "{context}: command {command} landed partially: {seqs:?}");
        let two_streams = intended >= 2 && command % 2 == 0;
        assert_eq!(paired.get(command).copied().unwrap_or(0), usize::from(two_streams), "{context}: command {command}");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{context}: command {command} is not contiguous");
    }
    for (first, last, command) in acknowledged {
        let seqs = per_command
            .get(command)
            .unwrap_or_else(|| panic!("{context}: acknowledged command {command} (seqs {first}..={last}) is lost"));
        assert_eq!((seqs[0], seqs[seqs.len() - 1]), (*first, *last), "{context}: command {command} moved");
    }
}
