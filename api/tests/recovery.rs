//! Audit and recovery end to end: a restore drill (demo data, a full backup and incrementals
//! taken through GraphQL while writes go on, the folder wiped, restored from the backups),
//! and an auditor checking checkpoints and proofs offline with the public key alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use oacis_tests::{code, gql, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn oacis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oacis")).args(args).env("RUST_LOG", "warn").output().expect("run oacis")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(answer: Value, field: &str) -> Value {
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"][field].clone()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts a backup through GraphQL and waits until it is done; answers its name.
fn backup(server: &Server, token: &str, incremental: bool) -> String {
    let started = ok(
        server.gql(
            Some(token),
            "mutation($i: Boolean!) { runBackup(incremental: $i) { name state incremental } }",
            json!({"i": incremental}),
        ),
        "runBackup",
    );
    loop {
        let job = ok(
            server.gql(Some(token), "{ backupJob { name state done total error backup { lastSeq } } }", json!({})),
            "backupJob",
        );
        assert_eq!(job["name"], started["name"]);
        match job["state"].as_str().unwrap() {
            "DONE" => return job["name"].as_str().unwrap().to_owned(),
            "RUNNING" => std::thread::sleep(std::time::Duration::from_millis(50)),
            _ => panic!("backup failed: {job}"),
        }
    }
}

/// Queries whose answers depend only on the log (no session, no clock), compared byte for
/// byte between the original server and the restored one.
const SAME_ANSWERS: &[&str] = &[
    "{ customers(first: 50) { totalCount edges { node { id name kind status version } } } }",
    "{ analytics { customersBy(dimension: SEGMENT) { key count } } }",
    "{ events(fromSeq: 1, first: 30) { seq stream kind hash prevHash } }",
    "{ inclusionProof(seq: 7, treeSize: 300) { seq treeSize recordHash path root } }",
];

fn answers(server: &Server, token: &str) -> Vec<String> {
    SAME_ANSWERS.iter().map(|q| server.gql(Some(token), q, json!({})).to_string()).collect()
}

#[test]
fn restore_drill_backups_taken_under_writes_restore_the_same_log_views_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &data,
        &["--demo", "--demo-customers", "150", "--backup-dir", path(&backups)],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);

    // Writes go on while the backups are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (addr, token, stop, written) = (server.addr.clone(), admin.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let register = "mutation($n: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER, phones: [\"13800138000\"]}) { id } }";
            while !stop.load(Ordering::Relaxed) {
                let n = written.fetch_add(1, Ordering::Relaxed);
                let answer = gql(&addr, Some(&token), register, json!({ "n": format!("恢复测试{n}") }));
                assert!(answer["errors"].is_null(), "{answer}");
            }
        })
    };
    let wait_for = |count: u64| {
        while written.load(Ordering::Relaxed) < count {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for(5);
    let full = backup(&server, &admin, false);
    wait_for(25);
    let first_incremental = backup(&server, &admin, true);
    wait_for(45);
    let second_incremental = backup(&server, &admin, true);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let last_incremental = backup(&server, &admin, true);
    // Nothing written since: a further incremental is refused, and listed backups are four.
    let again = server.gql(Some(&admin), "mutation { runBackup { name } }", json!({}));
    assert_eq!(code(&again), "CONFLICT", "{again}");
    let listed =
        ok(server.gql(Some(&admin), "{ backups { name incremental firstSeq lastSeq } }", json!({})), "backups");
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, [&full, &first_incremental, &second_incremental, &last_incremental]);
    let before = answers(&server, &admin);
    assert_eq!(server.terminate().code(), Some(0));

    let chain: Vec<String> = [&full, &first_incremental, &second_incremental, &last_incremental]
        .iter()
        .map(|n| path(&backups.join(n)).to_owned())
        .collect();
    let chain_args: Vec<&str> = chain.iter().map(String::as_str).collect();
    let public_key = stdout(&oacis(&["checkpoint", "public-key", "--data", path(&data)])).trim().to_owned();
    let verified = stdout(&oacis(&[&["backup", "verify", "--public-key", &public_key][..], &chain_args].concat()));
    assert!(verified.starts_with("ok: 4 backups"), "{verified}");

    // What the original folder holds: head, root and the views' dump.
    let kek = dir.path().join("data.kek");
    let issued = stdout(&oacis(&["checkpoint", "issue", "--data", path(&data)]));
    let original: Value = serde_json::from_str(issued.trim()).unwrap();
    let rebuilt = stdout(&oacis(&["rebuild", "--data", path(&data), "--key-file", path(&kek)]));
    let dump_hash = rebuilt.trim().rsplit(' ').next().unwrap().to_owned();
    let saved_key = dir.path().join("checkpoint.key");
    std::fs::copy(data.join("checkpoint.key"), &saved_key).unwrap();

    // Wipe, then restore.
    std::fs::remove_dir_all(&data).unwrap();
    let restored = dir.path().join("restored");
    let output = oacis(
        &[
            &["restore", "--data", path(&restored), "--key-file", path(&kek), "--checkpoint-key", path(&saved_key)][..],
            &chain_args,
        ]
        .concat(),
    );
    let said = stdout(&output);
    assert!(said.contains(&format!("head {}", original["head_hash"].as_str().unwrap())), "{said}");
    assert!(said.contains(&format!("Merkle root {}", original["merkle_root"].as_str().unwrap())), "{said}");
    assert!(said.contains(&format!("dump hash {dump_hash}")), "{said}");
    let issued = stdout(&oacis(&["checkpoint", "issue", "--data", path(&restored)]));
    let now: Value = serde_json::from_str(issued.trim()).unwrap();
    for field in ["tree_size", "head_hash", "merkle_root", "key_id"] {
        assert_eq!(now[field], original[field], "{field}");
    }
    // A second restore into the same folder is refused, and writes nothing there.
    let refused = oacis(
        &[
            &["restore", "--data", path(&restored), "--key-file", path(&kek), "--public-key", &public_key][..],
            &chain_args,
        ]
        .concat(),
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not empty"), "{refused:?}");

    // The restored server answers the same queries with the same bytes.
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &restored, &["--key-file", path(&kek)], &[]);
    let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
    let token = ok(server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED })), "signIn")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(answers(&server, &token), before);
    drop(server);

    // Restored without the old signing key: a new key signs from now on, and the backups'
    // checkpoints are listed with their own key id and no public key of this store's.
    let renewed = dir.path().join("renewed");
    // Without a key the operator holds, a restore is refused before anything is written.
    let untrusted =
        oacis(&[&["restore", "--data", path(&renewed), "--key-file", path(&kek)][..], &chain_args].concat());
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("--public-key"), "{untrusted:?}");
    assert!(!renewed.exists());
    stdout(&oacis(
        &[
            &["restore", "--data", path(&renewed), "--key-file", path(&kek), "--public-key", &public_key][..],
            &chain_args,
        ]
        .concat(),
    ));
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &renewed, &["--key-file", path(&kek)], &[]);
    let token = ok(server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED })), "signIn")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let latest =
        ok(server.gql(Some(&token), "mutation { issueCheckpoint { keyId publicKey } }", json!({})), "issueCheckpoint");
    assert_ne!(latest["keyId"], original["key_id"]);
    assert!(latest["publicKey"].is_string(), "{latest}");
    let kept = ok(server.gql(Some(&token), "{ checkpoints { treeSize keyId publicKey } }", json!({})), "checkpoints");
    let kept = kept.as_array().unwrap();
    assert_eq!(kept.len(), 5, "{kept:?}");
    for old in &kept[..4] {
        assert_eq!(old["keyId"], original["key_id"], "{old}");
        assert!(old["publicKey"].is_null(), "{old}");
    }
    assert_eq!(kept[4]["publicKey"], latest["publicKey"]);
}

#[test]
fn an_auditor_checks_checkpoints_and_proofs_offline_and_a_changed_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &data,
        &["--demo", "--demo-customers", "20"],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);
    let checkpoint = ok(
        server.gql(
            Some(&admin),
            "mutation { issueCheckpoint { treeSize merkleRoot publicKey keyId line } }",
            json!({}),
        ),
        "issueCheckpoint",
    );
    let size = checkpoint["treeSize"].as_u64().unwrap();
    let public_key = checkpoint["publicKey"].as_str().unwrap().to_owned();
    assert_eq!(stdout(&oacis(&["checkpoint", "public-key", "--data", path(&data)])).trim(), public_key);
    let inclusion = ok(
        server.gql(
            Some(&admin),
            "query($s: Int!, $t: Int!) { inclusionProof(seq: $s, treeSize: $t) { seq treeSize recordHash path root } }",
            json!({"s": 3, "t": size}),
        ),
        "inclusionProof",
    );
    assert_eq!(inclusion["root"], checkpoint["merkleRoot"]);
    let consistency = ok(
        server.gql(Some(&admin), "query($f: Int!, $t: Int!) { consistencyProof(fromSize: $f, toSize: $t) { fromSize toSize fromRoot toRoot path } }", json!({"f": size / 2, "t": size})),
        "consistencyProof",
    );
    // Out of range: VALIDATION on the argument at fault; a caller without audit.read: FORBIDDEN.
    let beyond = server.gql(Some(&admin), "{ inclusionProof(seq: 1, treeSize: 99999999) { root } }", json!({}));
    assert_eq!(code(&beyond), "VALIDATION", "{beyond}");
    assert_eq!(beyond["errors"][0]["extensions"]["fields"][0]["path"], "treeSize", "{beyond}");
    let zero = server.gql(Some(&admin), "{ consistencyProof(fromSize: 0, toSize: 3) { path } }", json!({}));
    assert_eq!(zero["errors"][0]["extensions"]["fields"][0]["path"], "fromSize", "{zero}");
    let printed = server.stderr.lock().unwrap().join("\n");
    let sales_password = printed
        .lines()
        .find_map(|l| {
            l.trim_start().strip_prefix("demo.sales").map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        })
        .unwrap();
    let sales = server.first_sign_in("demo.sales", &sales_password, "Demo-Changed-2026");
    for query in [
        "{ checkpoint { treeSize } }",
        "{ inclusionProof(seq: 1, treeSize: 1) { root } }",
        "mutation { runBackup { name } }",
    ] {
        let refused = server.gql(Some(&sales), query, json!({}));
        assert_eq!(code(&refused), "FORBIDDEN", "{query}: {refused}");
    }
    let unconfigured = server.gql(Some(&admin), "mutation { runBackup { name } }", json!({}));
    assert_eq!(code(&unconfigured), "CONFLICT", "{unconfigured}");
    assert!(unconfigured.to_string().contains("--backup-dir"), "{unconfigured}");

    let write = |name: &str, text: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        file
    };
    let cp = write("checkpoint.json", checkpoint["line"].as_str().unwrap().to_owned());
    let inc = write("inclusion.json", inclusion.to_string());
    let con = write("consistency.json", consistency.to_string());
    let verify = |cp: &Path, inc: &Path, con: &Path| {
        oacis(&[
            "proof",
            "verify",
            "--public-key",
            &public_key,
            "--checkpoint",
            path(cp),
            "--inclusion",
            path(inc),
            "--consistency",
            path(con),
        ])
    };
    let said = stdout(&verify(&cp, &inc, &con));
    assert_eq!(said.lines().filter(|l| l.starts_with("ok: ")).count(), 3, "{said}");
    // The consistency proof's older end has no checkpoint given: said so.
    assert!(said.contains(&format!("tree of size {} (root", size / 2)) && said.contains("UNANCHORED"), "{said}");
    let no_checkpoint = stdout(&oacis(&["proof", "verify", "--public-key", &public_key, "--inclusion", path(&inc)]));
    assert!(no_checkpoint.contains("UNANCHORED"), "{no_checkpoint}");

    // One changed hash in each, in turn: exit 1 naming what failed.
    let mut bad_inclusion = inclusion.clone();
    let first = bad_inclusion["path"][0].as_str().unwrap().to_owned();
    bad_inclusion["path"][0] = json!(format!("{}{}", if first.starts_with('0') { "1" } else { "0" }, &first[1..]));
    let bad_inc = write("bad-inclusion.json", bad_inclusion.to_string());
    let failed = verify(&cp, &bad_inc, &con);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("FAILED: inclusion proof"), "{failed:?}");
    let line = checkpoint["line"].as_str().unwrap();
    let bad_cp = write(
        "bad-checkpoint.json",
        line.replacen(&format!("\"tree_size\":{size}"), &format!("\"tree_size\":{}", size - 1), 1),
    );
    let failed = verify(&bad_cp, &inc, &con);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("signature does not verify"), "{failed:?}");
    let other_key = "0".repeat(63) + "1";
    let failed = oacis(&["proof", "verify", "--public-key", &other_key, "--checkpoint", path(&cp)]);
    assert_ne!(failed.status.code(), Some(0), "{failed:?}");
    // The same signed content written another way is not a checkpoint line.
    let spaced = write("spaced-checkpoint.json", line.replacen("\"tree_size\":", "\"tree_size\": ", 1));
    let failed = oacis(&["proof", "verify", "--public-key", &public_key, "--checkpoint", path(&spaced)]);
    assert_ne!(failed.status.code(), Some(0), "{failed:?}");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("not written as a checkpoint line is"), "{failed:?}");
}

#[test]
fn a_point_in_time_restore_from_before_an_erasure_keeps_the_data_erased() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &data,
        &["--demo", "--demo-customers", "10", "--backup-dir", path(&backups)],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);
    let register = "mutation { registerCustomer(profile: {kind: PERSON, name: \"王芳\", source: OTHER, phones: [\"13912345678\"]}) { id } }";
    let id = ok(server.gql(Some(&admin), register, json!({})), "registerCustomer")["id"].as_str().unwrap().to_owned();
    let before_erasure = backup(&server, &admin, false);
    let erase = "mutation($id: String!) { erasePersonalData(id: $id, reason: \"PIPL art. 47 request\") { seq } }";
    ok(server.gql(Some(&admin), erase, json!({ "id": id })), "erasePersonalData");
    let after_erasure = backup(&server, &admin, true);
    let public_key = ok(server.gql(Some(&admin), "{ checkpoint { publicKey } }", json!({})), "checkpoint")["publicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.terminate().code(), Some(0));
    let kek = dir.path().join("data.kek");
    let phones = |folder: &Path| {
        let server = Server::start(env!("CARGO_BIN_EXE_oacis"), folder, &["--key-file", path(&kek)], &[]);
        let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
        let token = ok(server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED })), "signIn")["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let query = "query($id: String!) { customer(id: $id) { name phones personalDataErased } }";
        ok(server.gql(Some(&token), query, json!({ "id": id })), "customer")
    };

    // `oacis restore BACKUP --data TARGET` with the KEK and the store's public key.
    let restore = |backup: &Path, target: &Path| {
        oacis(&["restore", path(backup), "--data", path(target), "--key-file", path(&kek), "--public-key", &public_key])
    };

    // Only the backup from before the erasure: its own key journal still holds the key, but
    // the newer backup beside it has the keys as they are after the erasure, and is used.
    let restored = dir.path().join("restored");
    let said = stdout(&restore(&backups.join(&before_erasure), &restored));
    assert!(
        said.contains(&format!("key store restored from {}", path(&backups.join(&after_erasure).join("keys.journal")))),
        "{said}"
    );
    let customer = phones(&restored);
    assert_eq!(customer["name"], "王芳");
    assert_eq!(customer["phones"], json!([]), "{customer}");
    assert_eq!(customer["personalDataErased"], true, "the key store's erasure shows: {customer}");

    // A damaged newer backup beside it is not skipped (that would bring the erased data back):
    // the restore is refused, naming it, and writes nothing.
    let journal = backups.join(&after_erasure).join("keys.journal");
    let intact = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, [intact.as_slice(), b"x"].concat()).unwrap();
    let damaged = dir.path().join("damaged");
    let refused = restore(&backups.join(&before_erasure), &damaged);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stdout).contains("keys_blake3"), "{refused:?}");
    assert!(!damaged.exists());
    std::fs::write(&journal, intact).unwrap();
    // So is one whose manifest is gone.
    let manifest = backups.join(&after_erasure).join("manifest.json");
    let kept = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let refused = restore(&backups.join(&before_erasure), &damaged);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stdout).contains("manifest cannot be read"), "{refused:?}");
    assert!(!damaged.exists());
    // Or one whose manifest names another store, under this store's key (its signature then
    // does not check out).
    let text = String::from_utf8(kept.clone()).unwrap();
    let store_at = text.find("\"store\": \"").unwrap() + 10;
    let other = if &text[store_at..=store_at] == "0" { "1" } else { "0" };
    std::fs::write(&manifest, format!("{}{other}{}", &text[..store_at], &text[store_at + 1..])).unwrap();
    let refused = restore(&backups.join(&before_erasure), &damaged);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stdout).contains("signature"), "{refused:?}");
    assert!(!damaged.exists());
    std::fs::write(&manifest, kept).unwrap();

    // A copy restored from the older backup and written to, backed up into the same folder,
    // continues it in another way than the original's later backup: a fork, refused.
    let fork = dir.path().join("fork");
    stdout(&oacis(&[
        "restore",
        path(&backups.join(&before_erasure)),
        "--data",
        path(&fork),
        "--key-file",
        path(&kek),
        "--checkpoint-key",
        path(&data.join("checkpoint.key")),
    ]));
    {
        let server = Server::start(
            env!("CARGO_BIN_EXE_oacis"),
            &fork,
            &["--key-file", path(&kek), "--backup-dir", path(&backups)],
            &[],
        );
        let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
        let token = ok(server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED })), "signIn")["token"]
            .as_str()
            .unwrap()
            .to_owned();
        backup(&server, &token, false);
    }
    let forked = restore(&backups.join(&before_erasure), &damaged);
    assert_eq!(forked.status.code(), Some(1), "{forked:?}");
    assert!(String::from_utf8_lossy(&forked.stdout).contains("a fork"), "{forked:?}");
    assert!(!damaged.exists());

    // The same backup alone, with no newer one beside it, is a return to before the erasure.
    let alone = dir.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    std::fs::rename(backups.join(&before_erasure), alone.join(&before_erasure)).unwrap();
    let back = dir.path().join("back");
    stdout(&restore(&alone.join(&before_erasure), &back));
    assert_eq!(phones(&back)["phones"], json!(["+8613912345678"]));
}

/// A server stopped cleanly records its store's files; a byte flipped in them while nothing
/// runs (a disk's damage) makes the next start refuse with the file and bytes named, before
/// sled's recovery could cut the log at the damage, and leaves the folder as it was.
/// `oacis verify --data` says the same; with the byte restored the server starts with every
/// record.
#[test]
fn damage_done_while_the_server_was_stopped_is_refused_and_the_folder_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let token = server.first_sign_in("admin", PASSWORD, CHANGED);
    let register =
        "mutation($n: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER}) { seq } }";
    for i in 0..200 {
        ok(server.gql(Some(&token), register, json!({ "n": format!("客户{i}") })), "registerCustomer");
    }
    let head = ok(server.gql(Some(&token), "{ verifyChain { headSeq } }", json!({})), "verifyChain")["headSeq"].clone();
    assert!(server.terminate().success());
    assert!(data.join(oacis_eventlog::sled_closed::FILE_NAME).exists(), "recorded at the clean stop");

    let db = data.join("db");
    let intact = std::fs::read(&db).unwrap();
    let written = intact.iter().rposition(|b| *b != 0).unwrap();
    let mut damaged = intact.clone();
    damaged[written / 3] ^= 0x01;
    std::fs::write(&db, &damaged).unwrap();
    let refused = oacis(&["serve", "--data", path(&data), "--listen", "127.0.0.1:0"]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("its file db changed after it was closed cleanly") && said.contains("bytes "), "{said}");
    assert_eq!(std::fs::read(&db).unwrap(), damaged, "the folder is left as it was");
    let verified = oacis(&["verify", "--data", path(&data)]);
    assert!(!verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("changed after it was closed cleanly"));

    std::fs::write(&db, &intact).unwrap();
    // Without the folder's signing key the checkpoints cannot be checked: a check that could
    // not run (2), naming the folder's own file, not the log's fault (1).
    let key = data.join("checkpoint.key");
    let aside = dir.path().join("checkpoint.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let keyless = oacis(&["verify", "--data", path(&data)]);
    assert_eq!(keyless.status.code(), Some(2), "{keyless:?}");
    let said = String::from_utf8_lossy(&keyless.stderr);
    let error = said.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{said}"));
    assert!(error.contains(&format!("{} cannot be used", key.display())) && !error.contains("oacis-verify"), "{said}");
    std::fs::rename(&aside, &key).unwrap();
    assert!(oacis(&["verify", "--data", path(&data)]).status.success());
    // The session signed in before the stop is in the log, and holds.
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &[]);
    let chain = ok(server.gql(Some(&token), "{ verifyChain { ok headSeq } }", json!({})), "verifyChain");
    assert_eq!(chain, json!({ "ok": true, "headSeq": head }));
    assert!(!data.join(oacis_eventlog::sled_closed::FILE_NAME).exists(), "a running server's folder has no record");
}
