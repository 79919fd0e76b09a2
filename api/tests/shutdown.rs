//! Stopping the server: on SIGTERM during a write load it stops taking connections, lets the
//! requests in flight finish, exits 0, and every mutation it acknowledged is there after a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oacis_tests::Server;
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

#[test]
fn sigterm_during_writes_loses_no_acknowledged_mutation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let token = server.first_sign_in("admin", PASSWORD, CHANGED);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Arc::new(AtomicBool::new(false));
    let register =
        "mutation($n: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER}) { id } }";
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, token, acknowledged, started) =
                (server.addr.clone(), token.clone(), acknowledged.clone(), started.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let body = json!({ "query": register, "variables": { "n": format!("停机{w}-{i}") } }).to_string();
                    // Once the server stops listening, the connection fails: the load is over.
                    let Ok((status, body)) = std::panic::catch_unwind(|| {
                        oacis_tests::http(&addr, "POST", "/graphql", Some(&token), body.as_bytes())
                    }) else {
                        return;
                    };
                    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if let (200, Some(id)) = (status, answer["data"]["registerCustomer"]["id"].as_str()) {
                        acknowledged.lock().unwrap().push(id.to_owned());
                        started.store(true, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let printed = server.stderr.clone();
    let status = server.terminate();
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    let printed = printed.lock().unwrap().join("\n");
    assert!(printed.contains("SIGTERM: no new connections"), "{printed}");
    assert!(printed.contains("oacis: stopped"), "{printed}");

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 4, "the load wrote {} customers", acknowledged.len());
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let sign_in = "mutation($p: String!) { signIn(input: {name: \"admin\", password: $p}) { token } }";
    let token =
        server.gql(None, sign_in, json!({ "p": CHANGED }))["data"]["signIn"]["token"].as_str().unwrap().to_owned();
    let count = server.gql(Some(&token), "{ customers { totalCount } }", json!({}));
    assert!(count["data"]["customers"]["totalCount"].as_u64().unwrap() >= acknowledged.len() as u64, "{count}");
    for id in &acknowledged {
        let answer = server.gql(Some(&token), "query($id: String!) { customer(id: $id) { id } }", json!({ "id": id }));
        assert_eq!(answer["data"]["customer"]["id"], json!(id), "acknowledged {id} is lost: {answer}");
    }
}

#[test]
fn a_restart_after_a_clean_stop_reads_the_snapshots_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let token = server.first_sign_in("admin", PASSWORD, CHANGED);
    let register =
        "mutation($n: String!, $p: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER, phones: [$p]}) { id } }";
    let mut ids = Vec::new();
    for i in 0..12 {
        let answer = server.gql(
            Some(&token),
            register,
            json!({ "n": format!("快照客户{i}"), "p": format!("+86 139 0013 {:04}", 8000 + i) }),
        );
        ids.push(answer["data"]["registerCustomer"]["id"].as_str().unwrap().to_owned());
    }
    let listing = "{ customers(first: 50, filter: {text: \"快照\"}) { totalCount edges { node { id name phones } } } }";
    let before = server.gql(Some(&token), listing, json!({}));
    assert_eq!(before["data"]["customers"]["totalCount"], json!(12), "{before}");
    let printed = server.stderr.clone();
    assert!(server.terminate().success());
    let printed = printed.lock().unwrap().join("\n");
    assert!(printed.contains("oacis: views snapshot written at seq"), "{printed}");
    let before_kill = printed.clone();
    assert!(data.join("views.snapshot").exists() && data.join("index.snapshot").exists());
    // No phone is in the views' snapshot in the clear.
    let snapshot = std::fs::read(data.join("views.snapshot")).unwrap();
    assert!(!snapshot.windows(13).any(|w| w == b"+861390013800"), "a phone in the clear");

    // The restart reads both snapshots and answers as before: the session too.
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    assert!(printed.contains("oacis: log indexes read from the index snapshot at seq"), "{printed}");
    assert!(printed.contains("oacis: views read from the snapshot at seq"), "{printed}");
    assert_eq!(server.gql(Some(&token), listing, json!({})), before);
    // Writes go on from there; a kill (no snapshot written) then a start reads the old
    // snapshot and the records after it.
    let answer = server.gql(Some(&token), register, json!({ "n": "快照之后", "p": "+86 139 0013 9999" }));
    let after = answer["data"]["registerCustomer"]["id"].as_str().unwrap().to_owned();
    server.kill();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    // The snapshot of the first stop, then every record written since (the registration,
    // and the sign-in and the reads of personal data that the access log keeps).
    let first_snapshot = printed_seq(&before_kill, "views snapshot written at seq ");
    assert!(printed.contains(&format!("views read from the snapshot at seq {first_snapshot} ")), "{printed}");
    assert!(!printed.contains("replaying the 0 records"), "{printed}");
    let now = server.gql(Some(&token), listing, json!({}));
    assert_eq!(now["data"]["customers"]["totalCount"], json!(13), "{now}");
    assert!(now.to_string().contains(&after));

    // A snapshot that does not open is set aside, and the start replays the whole log.
    drop(server);
    let mut bytes = std::fs::read(data.join("views.snapshot")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(data.join("views.snapshot"), bytes).unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    assert!(printed.contains("the views snapshot is set aside"), "{printed}");
    assert_eq!(server.gql(Some(&token), listing, json!({}))["data"]["customers"]["totalCount"], json!(13));
}

/// The seq printed right after `prefix` in `printed`.
fn printed_seq(printed: &str, prefix: &str) -> u64 {
    let at = printed.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {printed}")) + prefix.len();
    printed[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}
