//! The `oacis` binary's log commands, run as a user would: exit status and output of
//! `verify` and `export` on good and damaged data.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::path::Path;
use std::process::{Command, Output};

use oacis_eventlog::{AppendMeta, EventStore, ExpectedVersion, NewEvent, Seq, SledConfig, SledStore, StreamId};

fn oacis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oacis")).args(args).output().expect("run oacis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fill(dir: &Path, count: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    runtime.block_on(async {
        let store = SledStore::open(SledConfig::new(dir))?;
        for i in 0..count {
            let stream = StreamId::new(format!("customer-{}", i % 5))?;
            let event = NewEvent::json("CustomerNoted", 1, &serde_json::json!({ "i": i, "note": "客户备注" }))?;
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![event],
                    AppendMeta::new(uuid::Uuid::from_u128(u128::from(i) + 1), "cli-test"),
                )
                .await?;
        }
        anyhow::Ok(())
    })
}

#[test]
fn verify_export_and_verify_the_export_of_a_good_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 50)?;
    let out = oacis(&["verify", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok: 50 records in 5 streams; head seq 50 hash "), "{}", text(&out.stdout));
    // Not a terminal: progress comes as plain lines, and log lines carry no colour codes.
    assert!(text(&out.stderr).contains("verify chain: 50/50"), "{}", text(&out.stderr));
    // The copy it verifies holds no snapshot: every record is read.
    assert!(text(&out.stderr).contains("event log indexes ready records=50 from_snapshot=0"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains('\u{1b}'), "{}", text(&out.stderr));

    let file = dir.path().join("log.jsonl");
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file)?.lines().count(), 50);
    let out = oacis(&["verify", "--file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 50 records"));

    let tail = dir.path().join("tail.jsonl");
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", tail.to_str().unwrap(), "--from", "41"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = oacis(&["verify", "--file", tail.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("starts after seq 40"), "{}", text(&out.stdout));
    // Right after the head: nothing to export, and the head to anchor the next one is named;
    // past it, or seq 0, is refused.
    let empty = oacis(&["export", "--data", data.to_str().unwrap(), "--out", tail.to_str().unwrap(), "--from", "51"]);
    assert!(empty.status.success(), "{}", text(&empty.stderr));
    let said = text(&empty.stdout);
    assert!(said.starts_with("exported 0 records (nothing after seq 50); head hash "), "{said}");
    assert!(!said.contains(&"0".repeat(64)), "{said}");
    for (from, why) in [("52", "the log ends at seq 50"), ("0", "seqs start at 1")] {
        let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", tail.to_str().unwrap(), "--from", from]);
        assert_eq!(out.status.code(), Some(2), "{from}");
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
    Ok(())
}

#[test]
fn verify_names_the_first_bad_seq_of_a_damaged_export_and_exits_non_zero() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 30)?;
    let file = dir.path().join("log.jsonl");
    assert!(oacis(&["export", "--data", data.to_str().unwrap(), "--out", file.to_str().unwrap()]).status.success());
    let original = std::fs::read_to_string(&file)?;
    let damaged: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(i, line)| if i == 16 { line.replace("客户备注", "客户备往") } else { line.to_owned() })
        .collect();
    std::fs::write(&file, damaged.join("\n") + "\n")?;
    let out = oacis(&["verify", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("FAILED: first bad seq 17: "), "{}", text(&out.stdout));
    Ok(())
}

#[test]
fn verify_names_the_first_bad_seq_of_a_damaged_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 2_000)?;
    {
        // Damage a record outside the tail that every open re-checks.
        let db = sled::Config::new().path(&data).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        let key = oacis_eventlog::sled_layout::event_key(Seq(123));
        let mut value = db.get(key)?.expect("record 123").to_vec();
        let last = value.len() - 40;
        value[last] ^= 0x04;
        db.insert(key, value)?;
        db.flush()?;
    }
    let out = oacis(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("FAILED: first bad seq 123: "), "{}", text(&out.stdout));
    Ok(())
}

#[test]
fn unusable_arguments_get_a_clear_error() {
    let out = oacis(&["verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--data"), "{}", text(&out.stderr));
    let missing = oacis(&["verify", "--file", "/nonexistent/export.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/nonexistent/export.jsonl"), "{}", text(&missing.stderr));
}

#[test]
fn export_into_a_missing_folder_and_a_store_of_another_format_fail_clearly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 3)?;
    let out = oacis(&[
        "export",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("no/such/dir/x.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/dir"), "{}", text(&out.stderr));
    // Written behind the store's back, its files no longer match what the export's clean
    // close recorded: that is refused first.
    {
        let db = sled::Config::new().path(&data).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        db.insert(b"mformat", b"oacis-eventlog/9".as_slice())?;
        db.flush()?;
    }
    let out = oacis(&["verify", "--data", data.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("changed after it was closed cleanly"), "{}", text(&out.stdout));
    // Without the record, the other format is named.
    std::fs::remove_file(data.join(oacis_eventlog::sled_closed::FILE_NAME))?;
    {
        let db = sled::Config::new().path(&data).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        db.insert(b"mformat", b"oacis-eventlog/9".as_slice())?;
        db.flush()?;
    }
    let out = oacis(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("incompatible store format \"oacis-eventlog/9\""), "{}", text(&out.stderr));
    Ok(())
}

#[test]
fn a_folder_without_a_store_is_named_as_such() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("typo");
    let out =
        oacis(&["export", "--data", empty.to_str().unwrap(), "--out", dir.path().join("x.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("holds no event store"), "{}", text(&out.stderr));
    assert!(!empty.exists(), "export must not create a store");
    let out = oacis(&["verify", "--data", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("holds no event store"), "{}", text(&out.stderr));
    assert!(!empty.exists(), "verify must not create a store");
    let out = oacis(&["checkpoint", "public-key", "--data", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("holds no event store"), "{}", text(&out.stderr));
    // A folder given as an export is named as such (could not run: 2).
    let out = oacis(&["verify", "--file", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is a folder"), "{}", text(&out.stderr));
    Ok(())
}

/// Every file under `dir` with its bytes, in path order.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn verify_leaves_a_data_folder_byte_for_byte_as_it_found_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 40)?;
    // A folder whose log lost acknowledged records: the checkpoint says 40, the log holds 35.
    {
        let db = sled::Config::new().path(&data).segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE).open()?;
        for seq in 36..=40 {
            db.remove(oacis_eventlog::sled_layout::event_key(Seq(seq)))?;
        }
        db.flush()?;
    }
    let before = snapshot(&data);
    let out = oacis(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("FAILED: records 36..=40 are missing"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("verifying a temporary copy"), "{}", text(&out.stderr));
    assert_eq!(snapshot(&data), before, "verify changed the damaged folder");

    let good = dir.path().join("good");
    fill(&good, 10)?;
    let before = snapshot(&good);
    let out = oacis(&["verify", "--data", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("(checked on a temporary copy; reaches the signed checkpoint at seq 10; Merkle roots match it"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(&good), before, "verify changed the folder");
    Ok(())
}

#[test]
fn verify_anchors_an_incremental_export_and_refuses_a_cut_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 20)?;
    let (head, tail) = (dir.path().join("head.jsonl"), dir.path().join("tail.jsonl"));
    assert!(oacis(&["export", "--data", data.to_str().unwrap(), "--out", head.to_str().unwrap()]).status.success());
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", tail.to_str().unwrap(), "--from", "11"]);
    assert!(out.status.success());
    let lines: Vec<String> = std::fs::read_to_string(&head)?.lines().map(str::to_owned).collect();
    let tenth: serde_json::Value = serde_json::from_str(&lines[9])?;
    let anchor = format!("10:{}", tenth["hash"].as_str().unwrap());
    let out = oacis(&["verify", "--file", tail.to_str().unwrap(), "--after", &anchor]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("(anchored by --after; its end is not anchored"), "{}", text(&out.stdout));
    let out = oacis(&["verify", "--file", tail.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout)
            .contains(&format!("UNANCHORED: the file starts after seq 10; check that it links with --after {anchor}")),
        "{}",
        text(&out.stdout)
    );
    // Cut the first two lines: unanchored it still links to something; anchored it fails.
    let cut = dir.path().join("cut.jsonl");
    let text_of_tail = std::fs::read_to_string(&tail)?;
    std::fs::write(&cut, text_of_tail.lines().skip(2).map(|l| format!("{l}\n")).collect::<String>())?;
    let out = oacis(&["verify", "--file", cut.to_str().unwrap(), "--after", &anchor]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("FAILED: first bad seq 11: "), "{}", text(&out.stdout));
    // The final newline removed: refused, naming the last line.
    let whole = std::fs::read_to_string(&head)?;
    std::fs::write(&cut, whole.trim_end_matches('\n'))?;
    let out = oacis(&["verify", "--file", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("FAILED: first bad seq 20: line 20, the last, has no final newline"),
        "{}",
        text(&out.stdout)
    );
    // A folder given as an export is a usage error (2; `a_folder_without_a_store_is_named_as_such`).
    Ok(())
}

#[test]
fn rebuild_replays_the_views_and_prints_the_same_hash_every_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = SledStore::open(SledConfig::new(&data))?;
        let demo = oacis_projections::demo::generate(oacis_projections::demo::DemoSize { customers: 30, seed: 3 })?;
        oacis_projections::demo::load(&store, demo, 4).await?;
        anyhow::Ok(())
    })?;
    let first = oacis(&["rebuild", "--data", data.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("30 customers; dump hash "), "{}", text(&first.stdout));
    assert!(text(&first.stderr).contains("rebuild: "), "plain progress lines: {}", text(&first.stderr));
    let second = oacis(&["rebuild", "--data", data.to_str().unwrap()]);
    assert_eq!(text(&first.stdout), text(&second.stdout));
    let missing = oacis(&["rebuild", "--data", dir.path().join("none").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    Ok(())
}

#[test]
fn export_writes_into_a_pipe_in_place_and_never_replaces_it() -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 20)?;
    let pipe = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&pipe).status()?.success());
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || std::fs::read_to_string(pipe))
    };
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", pipe.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Checked before joining: a reader of a replaced pipe would wait for a writer forever.
    assert!(std::fs::symlink_metadata(&pipe)?.file_type().is_fifo(), "the pipe was replaced by a file");
    let received = reader.join().expect("reader")?;
    assert_eq!(received.lines().count(), 20);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["data", "pipe"]);

    // A regular file is replaced whole, through a symbolic link too, and no temporary stays.
    let file = dir.path().join("log.jsonl");
    std::fs::write(&file, "old\n")?;
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&file, &link)?;
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", link.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&file)?.lines().count(), 20);
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 4);

    // A folder is refused by name and left alone.
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a folder"), "{}", text(&out.stderr));
    Ok(())
}

/// A start that cannot take its address (the port in use) creates nothing: no store, no key,
/// no administrator whose one-time password would be printed and then lost.
#[test]
fn a_server_that_cannot_listen_creates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let data = dir.path().join("data");
    let out = oacis(&["serve", "--demo", "--data", data.to_str().unwrap(), "--listen", &address]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("cannot listen on {address}")), "{}", text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!said.contains("password"), "{said}");
    assert!(!data.exists() && std::fs::read_dir(dir.path())?.count() == 0, "nothing was created");
    drop(taken);
    // Nor one whose first administrator password is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_oacis"))
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("OACIS_ADMIN_PASSWORD", "x")
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("OACIS_ADMIN_PASSWORD is not accepted"), "{}", text(&out.stderr));
    assert!(!data.exists() && std::fs::read_dir(dir.path())?.count() == 0, "nothing was created");
    Ok(())
}

/// An export checked against a signed checkpoint: one whose last lines were cut off fails
/// (an export from genesis alone cannot tell), and the whole one reaches the checkpoint's
/// record and Merkle root; without one, the ok line says its end is not anchored.
#[test]
fn verify_checks_an_export_reaches_a_signed_checkpoint() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fill(&data, 40)?;
    let issued = oacis(&["checkpoint", "issue", "--data", data.to_str().unwrap()]);
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let line = dir.path().join("checkpoint.json");
    std::fs::write(&line, text(&issued.stdout).lines().last().unwrap())?;
    let key = oacis(&["checkpoint", "public-key", "--data", data.to_str().unwrap()]);
    let key = text(&key.stdout).trim().to_owned();
    let file = dir.path().join("log.jsonl");
    assert!(oacis(&["export", "--data", data.to_str().unwrap(), "--out", file.to_str().unwrap()]).status.success());
    let check = |file: &Path| {
        oacis(&[
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--checkpoint",
            line.to_str().unwrap(),
            "--public-key",
            &key,
        ])
    };

    let whole = check(&file);
    assert!(whole.status.success(), "{}{}", text(&whole.stdout), text(&whole.stderr));
    assert!(
        text(&whole.stdout).contains("reaches the signed checkpoint at seq 40, whose Merkle root it matches"),
        "{}",
        text(&whole.stdout)
    );
    let plain = oacis(&["verify", "--file", file.to_str().unwrap()]);
    assert!(text(&plain.stdout).contains("its end is not anchored"), "{}", text(&plain.stdout));

    let all = std::fs::read_to_string(&file)?;
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, all.lines().take(39).map(|l| format!("{l}\n")).collect::<String>())?;
    assert!(oacis(&["verify", "--file", cut.to_str().unwrap()]).status.success(), "alone, a cut file verifies");
    let refused = check(&cut);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stdout).starts_with("FAILED: first bad seq 40: the file ends at seq 39")
            && text(&refused.stdout).contains("records 40..=40 are missing"),
        "{}",
        text(&refused.stdout)
    );

    // Another key's checkpoint is refused as such.
    let other = "0".repeat(63) + "1";
    let wrong = oacis(&[
        "verify",
        "--file",
        file.to_str().unwrap(),
        "--checkpoint",
        line.to_str().unwrap(),
        "--public-key",
        &other,
    ]);
    assert_ne!(wrong.status.code(), Some(0), "{}", text(&wrong.stdout));
    Ok(())
}
