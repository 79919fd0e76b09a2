//! Damage to a store left by an abrupt stop: a child process appends until it is killed with
//! SIGKILL, the checkpoint is brought to the last acknowledged head (as the writer does within
//! one interval), and then one byte of sled's data file is flipped at many offsets, each on a
//! fresh copy. Every damage must be either harmless (the store opens and reads back every
//! acknowledged record byte for byte) or reported as an error that names what is wrong; no
//! damage may open silently with less or other history, and none may panic.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use oacis_eventlog::{checkpoint, sled_layout, Error, FolderCopy, Head, Record, Seq, SledConfig, SledStore};

/// Offsets damaged: spread evenly over the data file's written bytes.
const OFFSETS: u64 = 160;

/// Runs the crash writer in `dir` (as its run number `run`) until `acks` appends are
/// acknowledged, kills it, and returns the last acknowledged seq.
fn crash_left_store(dir: &std::path::Path, run: u64, acks: usize) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventlog-crash-writer"))
        .arg(dir)
        .arg(run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = 0u64;
    let mut seen = 0;
    while seen < acks {
        let line = lines.next().expect("the writer runs").unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            last = last.max(rest.split(' ').nth(1).unwrap().parse().unwrap());
            seen += 1;
        }
    }
    child.kill().unwrap();
    for line in lines {
        if let Some(rest) = line.unwrap().strip_prefix("ack ") {
            last = last.max(rest.split(' ').nth(1).unwrap().parse().unwrap());
        }
    }
    child.wait().unwrap();
    last
}

/// The last record key in a sled folder, read with sled alone.
fn raw_last_seq(dir: &std::path::Path) -> Seq {
    let db = sled::Config::new().path(dir).segment_size(sled_layout::SEGMENT_SIZE).open().expect("raw sled opens");
    let last = db.range(sled_layout::event_key(Seq::FIRST)..=sled_layout::event_key(Seq(u64::MAX))).next_back();
    last.map_or(Seq::ZERO, |entry| sled_layout::seq_of_event_key(&entry.expect("raw read").0).expect("event key"))
}

fn read_back(dir: &std::path::Path) -> Result<Vec<Record>, Error> {
    let store = SledStore::open(SledConfig::new(dir))?;
    store.records(Seq::FIRST).collect()
}

#[test]
fn damage_to_a_crash_left_data_file_is_harmless_or_reported_never_silent_never_a_panic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Three runs, each killed: sled's files then hold snapshots and recoveries too.
    let acknowledged = (1..=3).map(|run| crash_left_store(dir.path(), run, 150)).max().unwrap_or(0);
    let records = {
        let copy = FolderCopy::of(dir.path())?;
        read_back(copy.path())?
    };
    assert!(records.len() as u64 >= acknowledged, "acknowledged records lost without damage");
    let at = &records[acknowledged as usize - 1];
    let recorded = Head { seq: at.seq, hash: at.hash };
    // The crash writer's acknowledged head, signed as the store would have (the folder keeps
    // signed checkpoints, so an unsigned one would be refused).
    let (key, _) = checkpoint::CheckpointKey::load_or_create(dir.path())?;
    let mut tree = oacis_eventlog::merkle::MerkleTree::new();
    records[..acknowledged as usize].iter().for_each(|r| tree.push(&r.hash));
    let root = tree.root(acknowledged)?;
    checkpoint::write(
        dir.path(),
        &checkpoint::Checkpoint::sign(recorded, root, oacis_eventlog::Timestamp::now(), &key),
    )?;
    {
        // Undamaged, the crash-left folder opens with every acknowledged record.
        let copy = FolderCopy::of(dir.path())?;
        assert_eq!(read_back(copy.path())?[..acknowledged as usize], records[..acknowledged as usize]);
    }
    let original = std::fs::read(dir.path().join("db"))?;
    let size = original.len();
    // sled preallocates its segments: damage where something is written, spread evenly.
    let written: Vec<usize> = (0..size).filter(|&i| original[i] != 0).collect();
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for k in 0..OFFSETS {
        let offset = written[(k as usize * written.len()) / OFFSETS as usize];
        let copy = FolderCopy::of(dir.path())?;
        let data = copy.path().join("db");
        let mut bytes = std::fs::read(&data)?;
        bytes[offset] ^= [0x01, 0x80, 0x5A, 0xFF][(k % 4) as usize];
        std::fs::write(&data, &bytes)?;
        let outcome = std::panic::catch_unwind(|| read_back(copy.path()))
            .unwrap_or_else(|_| panic!("damage at byte {offset} of {size}: a panic escaped"));
        let context = format!("damage at byte {offset} of {size}");
        let kind = match outcome {
            Ok(found) => {
                assert!(found.len() >= records.len().min(acknowledged as usize), "{context}: opened short");
                assert_eq!(
                    found[..acknowledged as usize],
                    records[..acknowledged as usize],
                    "{context}: opened with other history"
                );
                "harmless"
            }
            Err(Error::HeadLost { recorded: r, found, .. }) => {
                assert_eq!(r, recorded, "{context}");
                assert!(found.seq < recorded.seq, "{context}");
                // The range is right: sled alone, on another copy damaged alike, ends there.
                let again = FolderCopy::of(dir.path())?;
                std::fs::write(again.path().join("db"), &bytes)?;
                assert_eq!(raw_last_seq(again.path()), found.seq, "{context}: wrong range");
                "missing range reported"
            }
            Err(Error::HeadChanged { recorded: r, .. }) => {
                assert_eq!(r, recorded, "{context}");
                "changed head reported"
            }
            Err(Error::Corrupt { seq, .. }) => {
                assert!(seq <= Seq(records.len() as u64 + 1), "{context}: corrupt at {seq}");
                "corrupt seq reported"
            }
            Err(Error::Damaged { recorded: r, reason, .. }) => {
                assert_eq!(r, Some(recorded), "{context}");
                if reason.starts_with("panicked: ") {
                    "engine panic contained"
                } else {
                    "engine refused its files"
                }
            }
            Err(Error::Unreadable { .. }) => "unreadable reported",
            Err(other) => panic!("{context}: unexpected error {other}"),
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    println!("{OFFSETS} damaged copies of a {size}-byte data file ({} bytes written): {outcomes:?}", written.len());
    assert!(outcomes.get("harmless").copied().unwrap_or(0) < OFFSETS, "no damage was detected at all");
    Ok(())
}

/// Damage done to a store closed cleanly (a flipped bit on the disk while no server runs) is
/// refused before sled opens the files: sled's recovery would take the damaged message for
/// a torn write and zero every intact record after it. The folder is left byte for byte as it
/// was, and the error names the file and the bytes; undone, the store opens with every record.
#[test]
fn damage_done_while_closed_is_refused_before_sled_touches_the_files() -> anyhow::Result<()> {
    use oacis_eventlog::{sled_closed, AppendMeta, EventStore, ExpectedVersion, NewEvent, StreamId};
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    {
        let store = SledStore::open(SledConfig::new(dir.path()))?;
        runtime.block_on(async {
            for n in 0..400u64 {
                let event = NewEvent::json("Noted", 1, &serde_json::json!({ "n": n, "note": "x".repeat(300) }))?;
                let meta = AppendMeta::new(uuid::Uuid::from_u128(u128::from(n) + 1), "tester");
                store
                    .append(StreamId::new(format!("note-{}", n % 7))?, ExpectedVersion::Any, vec![event], meta)
                    .await?;
            }
            anyhow::Ok(())
        })?;
    }
    assert!(sled_closed::record(dir.path(), std::time::Duration::from_secs(10))?, "recorded once released");
    let record = dir.path().join(sled_closed::FILE_NAME);
    assert!(record.exists());

    // One byte of the middle of the written records flipped.
    let db = dir.path().join("db");
    let intact = std::fs::read(&db)?;
    let written = intact.iter().rposition(|b| *b != 0).unwrap_or(0);
    let mut damaged = intact.clone();
    damaged[written / 2] ^= 0x20;
    std::fs::write(&db, &damaged)?;
    let refused = SledStore::open(SledConfig::new(dir.path())).expect_err("refused");
    let text = refused.to_string();
    assert!(matches!(refused, Error::Damaged { .. }), "{text}");
    assert!(text.contains("its file db changed after it was closed cleanly"), "{text}");
    // The bytes named are the changed block's, within the file.
    let range = text.split("(bytes ").nth(1).and_then(|r| r.split(" differ").next()).unwrap_or_default().to_owned();
    let (from, to) = range.split_once("..").map(|(a, b)| (a.parse::<usize>(), b.parse::<usize>())).expect("a range");
    let (from, to) = (from?, to?);
    assert!(from <= written / 2 && written / 2 < to && to <= intact.len(), "{text}");
    assert_eq!(std::fs::read(&db)?, damaged, "nothing was written");
    assert!(record.exists(), "the record stays, for the next attempt");

    // Undone: the store opens, reads back every record, and is no longer recorded as closed.
    std::fs::write(&db, &intact)?;
    let records = read_back(dir.path())?;
    assert_eq!(records.len(), 400);
    assert!(!record.exists(), "an open store has no closed record");

    // Closed again, then its data file gone: named as such, not taken for an empty folder.
    assert!(sled_closed::record(dir.path(), std::time::Duration::from_secs(10))?);
    std::fs::rename(&db, dir.path().join("db.aside"))?;
    assert!(sled_closed::holds_store(dir.path()));
    let gone = SledStore::open(SledConfig::new(dir.path())).expect_err("refused").to_string();
    assert!(gone.contains("its file db is gone since it was closed cleanly"), "{gone}");
    assert!(!db.exists(), "nothing was created");
    Ok(())
}

/// A store opened while another process closes the folder: the open checks for a record
/// before sled's lock is its own, and the closing side may record its close in between. The
/// open removes such a record once sled holds the folder, so no record is ever left beside an
/// open store (after a crash, it would have the intact store refused as damaged).
#[test]
fn a_close_recorded_while_another_open_waits_for_the_folder_does_not_outlive_that_open() -> anyhow::Result<()> {
    use oacis_eventlog::sled_closed;
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let first = SledStore::open(SledConfig::new(&path))?;
    // The second open checks now (no record: the first holds the folder) and then waits
    // for sled's lock.
    let waiting = std::thread::spawn({
        let path = path.clone();
        move || SledStore::open(SledConfig::new(&path))
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(first);
    // The closing side records its close as soon as the lock is free, racing the open.
    let recorded = sled_closed::record(&path, std::time::Duration::from_secs(5))?;
    let second = waiting.join().expect("joined")?;
    assert!(
        !path.join(sled_closed::FILE_NAME).exists(),
        "no record beside an open store (the close was recorded first: {recorded})"
    );
    drop(second);
    Ok(())
}
