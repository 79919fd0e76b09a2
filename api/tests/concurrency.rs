//! Facts that `decide` takes from other aggregates must hold under concurrency: two crossing
//! merges sent at the same moment never both succeed, two users registering the same
//! username at once leave exactly one winner, and many writers to one customer all land.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";

fn admin(server: &Server) -> String {
    server.first_sign_in("admin", PASSWORD, "Sesame-Changed-77")
}

fn register(server: &Server, token: &str, name: &str) -> String {
    let query = "mutation($p: ProfileInput!) { registerCustomer(profile: $p) { id } }";
    let answer = server.gql(Some(token), query, json!({ "p": { "kind": "PERSON", "name": name, "source": "OTHER" } }));
    answer["data"]["registerCustomer"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

/// Runs `jobs` on threads released at the same moment; answers their results in order.
fn at_once(server: &Server, token: &str, jobs: Vec<(String, Value)>) -> Vec<Value> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(query, variables)| {
            let (barrier, addr, token) = (barrier.clone(), server.addr.clone(), token.to_owned());
            std::thread::spawn(move || {
                let body = json!({ "query": query, "variables": variables }).to_string();
                barrier.wait();
                let (status, body) = oacis_tests::http(&addr, "POST", "/graphql", Some(&token), body.as_bytes());
                assert_eq!(status, 200, "{body}");
                serde_json::from_str::<Value>(&body).unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn crossing_merges_never_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let token = admin(&server);
    let merge = "mutation($d: String!, $s: String!) { mergeCustomers(duplicate: $d, survivor: $s) { seq } }";
    let status = "query($a: String!, $b: String!) { a: customers(filter: {status: MERGED}, first: 1) { totalCount } x: customer(id: $a) { status mergedInto } y: customer(id: $b) { status mergedInto } }";
    for round in 0..200 {
        let a = register(&server, &token, &format!("甲{round}"));
        let b = register(&server, &token, &format!("乙{round}"));
        let answers = at_once(
            &server,
            &token,
            vec![(merge.into(), json!({ "d": a, "s": b })), (merge.into(), json!({ "d": b, "s": a }))],
        );
        let won: Vec<&Value> = answers.iter().filter(|a| a["errors"].is_null()).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let lost = answers.iter().find(|a| !a["errors"].is_null()).unwrap();
        assert!(["CONFLICT", "VALIDATION"].contains(&code(lost)), "{lost}");
        let after = server.gql(Some(&token), status, json!({ "a": a, "b": b }));
        // Reading a merged customer resolves to its survivor: both ids now answer the survivor.
        assert_eq!(after["data"]["x"], after["data"]["y"], "{after}");
        assert_eq!(after["data"]["x"]["status"], "ACTIVE", "{after}");
    }
    let merged = server.gql(Some(&token), "{ customers(filter: {status: MERGED}) { totalCount } }", json!({}));
    assert_eq!(merged["data"]["customers"]["totalCount"], 200);
}

#[test]
fn two_users_taking_one_username_at_once_leave_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let token = admin(&server);
    let departments = server.gql(Some(&token), "{ departments { id } }", json!({}));
    let root = departments["data"]["departments"][0]["id"].as_str().unwrap().to_owned();
    let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: \"同名\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    for round in 0..20 {
        let username = format!("same.name{round}");
        let answers = at_once(
            &server,
            &token,
            vec![
                (create.into(), json!({ "u": username, "e": format!("X-{round}-1"), "d": root })),
                (create.into(), json!({ "u": username, "e": format!("X-{round}-2"), "d": root })),
            ],
        );
        let won = answers.iter().filter(|a| a["errors"].is_null()).count();
        assert_eq!(won, 1, "round {round}: {answers:?}");
        let lost = answers.iter().find(|a| !a["errors"].is_null()).unwrap();
        assert_eq!(code(lost), "VALIDATION", "{lost}");
        assert_eq!(lost["errors"][0]["extensions"]["fields"][0]["path"], "username", "{lost}");
    }
    let users = server.gql(Some(&token), "{ users { username } }", json!({}));
    let taken = users["data"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"].as_str().unwrap().starts_with("same.name"))
        .count();
    assert_eq!(taken, 20);
}

#[test]
fn many_writers_to_one_customer_all_land_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let token = admin(&server);
    let id = register(&server, &token, "热点客户");
    let log = "mutation($c: String!, $s: String!) { logInteraction(customer: $c, channel: CALL, direction: INBOUND, summary: $s) { seq version } }";
    let jobs: Vec<(String, Value)> =
        (0..32).map(|n| (log.to_owned(), json!({ "c": id, "s": format!("call {n}") }))).collect();
    // Meanwhile /readyz is asked again and again: views trailing the writes by a few records
    // for milliseconds do not make the server "not ready".
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = {
        let (addr, writing) = (server.addr.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while writing.load(std::sync::atomic::Ordering::Acquire) || answers.is_empty() {
                answers.push(oacis_tests::http(&addr, "GET", "/readyz", None, b""));
            }
            answers
        })
    };
    let answers = at_once(&server, &token, jobs);
    writing.store(false, std::sync::atomic::Ordering::Release);
    for (status, body) in probe.join().unwrap() {
        assert_eq!(status, 200, "{body}");
    }
    let mut versions: Vec<u64> = answers
        .iter()
        .map(|a| a["data"]["logInteraction"]["version"].as_u64().unwrap_or_else(|| panic!("{a}")))
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=33).collect::<Vec<u64>>(), "each write got its own version, none lost");
    let history = "query($id: String!) { recordHistory(recordType: \"customer\", id: $id) { kind } }";
    let history = server.gql(Some(&token), history, json!({ "id": id }));
    assert_eq!(history["data"]["recordHistory"].as_array().unwrap().len(), 33);
}
