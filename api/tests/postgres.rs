//! The server on PostgreSQL, end to end against a real cluster the test starts: `oacis
//! serve --store postgres://...` with demo data, writes and reads through GraphQL,
//! read-your-writes by `Oacis-Seq` / `Oacis-Min-Seq`, a restart that replays from the
//! database, what only the embedded store keeps refused with a clear error, and `oacis
//! migrate` both ways with the same head hash (and refusals).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use oacis_tests::pg::PgCluster;
use oacis_tests::{code, exchange, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn oacis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oacis")).args(args).env("RUST_LOG", "warn").output().expect("run oacis")
}

fn out(output: &Output) -> (bool, String) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn ok(answer: &Value, field: &str) -> Value {
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"][field].clone()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A GraphQL POST with extra headers: status, the `oacis-seq` response header, the body.
fn post(
    server: &Server,
    token: &str,
    headers: &[(&str, &str)],
    query: &str,
    variables: Value,
) -> (u16, Option<u64>, Value) {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, head, body) = exchange(&server.addr, "POST", "/graphql", Some(token), &all, body.as_bytes());
    let seq = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("oacis-seq:").map(|v| v.trim().parse().unwrap()));
    (status, seq, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[test]
fn the_server_runs_on_postgres_and_migrate_copies_the_log_both_ways() {
    let cluster = PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let url = cluster.database("oacis").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let args = ["--store", url.as_str(), "--demo", "--demo-customers", "40", "--consistency-wait-ms", "300"];
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &args, &env);
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);

    // A write answers the seq its response saw; a read asking for it is answered.
    let register = "mutation($p: ProfileInput!) { registerCustomer(profile: $p) { id } }";
    let profile =
        json!({ "p": { "kind": "PERSON", "name": "卢 Postgres", "source": "OTHER", "phones": ["+8613912345678"] } });
    let (status, seq, answer) = post(&server, &admin, &[], register, profile);
    assert_eq!(status, 200);
    let id = ok(&answer, "registerCustomer")["id"].as_str().unwrap().to_owned();
    let seq = seq.expect("an oacis-seq header");
    let read = "query($id: String!) { customer(id: $id) { name phones } }";
    let min = seq.to_string();
    let (status, _, answer) = post(&server, &admin, &[("oacis-min-seq", &min)], read, json!({ "id": id }));
    assert_eq!(status, 200);
    assert_eq!(ok(&answer, "customer")["name"], "卢 Postgres");
    assert_eq!(ok(&answer, "customer")["phones"], json!(["+8613912345678"]));
    // A seq the views do not reach within the bound: 503 STALE_VIEWS, naming where they are.
    let ahead = (seq + 1_000_000).to_string();
    let (status, _, answer) = post(&server, &admin, &[("oacis-min-seq", &ahead)], read, json!({ "id": id }));
    assert_eq!((status, code(&answer)), (503, "STALE_VIEWS"), "{answer}");
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("--consistency-wait-ms"));
    let (status, _, answer) = post(&server, &admin, &[("oacis-min-seq", "soon")], read, json!({ "id": id }));
    assert_eq!((status, code(&answer)), (400, "VALIDATION"), "{answer}");

    // The whole chain verifies through the server; checkpoints are the embedded store's.
    let verified = ok(&server.gql(Some(&admin), "{ verifyChain { ok headSeq } }", json!({})), "verifyChain");
    assert_eq!(verified["ok"], true);
    assert!(verified["headSeq"].as_u64().unwrap() >= seq);
    let refused = server.gql(Some(&admin), "{ checkpoint { treeSize } }", json!({}));
    assert_eq!(code(&refused), "CONFLICT");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("PostgreSQL"), "{refused}");
    assert_eq!(server.terminate().code(), Some(0));

    // A restart replays the views from the database.
    let again = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &["--store", url.as_str()], &env);
    // Sessions are in the log: the token from before the restart still works.
    let answer = again.gql(Some(&admin), read, json!({ "id": id }));
    assert_eq!(ok(&answer, "customer")["name"], "卢 Postgres");
    let verified = ok(&again.gql(Some(&admin), "{ verifyChain { ok headSeq headHash } }", json!({})), "verifyChain");
    let head = verified["headSeq"].as_u64().unwrap();
    let hash = verified["headHash"].as_str().unwrap().to_owned();
    assert_eq!(again.terminate().code(), Some(0));

    // PostgreSQL to a new folder, and that folder to a fresh database: the same head.
    let copy = dir.path().join("copy");
    let (done, text) = out(&oacis(&["migrate", "--from", &url, "--to", path(&copy)]));
    assert!(done, "{text}");
    let head_line = format!("{head} records, head hash {hash} on both");
    assert!(text.contains(&head_line), "{text}");
    let (done, text) = out(&oacis(&["verify", "--data", path(&copy)]));
    assert!(done, "{text}");
    let fresh = cluster.database("copy").unwrap();
    let (done, text) = out(&oacis(&["migrate", "--from", path(&copy), "--to", &fresh]));
    assert!(done && text.contains(&head_line), "{text}");
    // Again into the same database: it already holds this log, so nothing is left to copy.
    let (done, text) = out(&oacis(&["migrate", "--from", path(&copy), "--to", &fresh]));
    assert!(done && text.contains("up to seq"), "{text}");

    // Refusals: another log in the target; two folders; a folder that exists.
    let other = dir.path().join("other");
    let (done, text) = out(&oacis(&["demo", "--data", path(&other), "--customers", "3"]));
    assert!(done, "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", path(&other), "--to", &fresh]));
    assert!(!done && text.contains("already holds another log"), "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", path(&other), "--to", path(&copy)]));
    assert!(!done && text.contains("give one of each"), "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", &url, "--to", path(&copy)]));
    assert!(!done && text.contains("already holds an event log"), "{text}");
    let (done, text) = out(&oacis(&["serve", "--data", path(&other), "--store", "mysql://x"]));
    assert!(!done && text.contains("--store takes a PostgreSQL URL"), "{text}");
}
