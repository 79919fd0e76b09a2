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
