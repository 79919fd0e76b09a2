//! The server on PostgreSQL, end to end against a real cluster the test starts: `oacis
//! serve --store postgres://...` with demo data, writes and reads through GraphQL,
//! read-your-writes by `Oacis-Seq` / `Oacis-Min-Seq`, a restart that replays from the
//! database, what only the embedded store keeps refused with a clear error, and `oacis
//! migrate` both ways with the same head hash (and refusals); then two servers on one
//! database: writes, sessions, personal-data keys, erasures and lockout shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use oacis_tests::pg::PgCluster;
use oacis_tests::{code, exchange, Server, Subscriber};
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

/// Asks `/readyz` until it answers `status` (10 s at most), whose body must then contain `says`.
fn readyz_until(server: &Server, status: u16, says: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (got, body) = server.http("GET", "/readyz", None, b"");
        if got == status {
            assert!(body.contains(says), "{body}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "/readyz stayed {got}: {body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Sends a keyed `registerCustomer` until it lands (UNAVAILABLE or TIMEOUT meanwhile, 30 s at
/// most), then once more: the same customer, replayed.
fn lands_once(server: &Server, admin: &str, keyed: &str, variables: &Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let landed = loop {
        let answer = server.gql(Some(admin), keyed, variables.clone());
        if answer["errors"].is_null() {
            break answer;
        }
        assert!(["UNAVAILABLE", "TIMEOUT"].contains(&code(&answer)), "{answer}");
        assert!(std::time::Instant::now() < deadline, "the server did not come back: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let again = server.gql(Some(admin), keyed, variables.clone());
    assert_eq!(ok(&again, "registerCustomer")["id"], ok(&landed, "registerCustomer")["id"]);
    assert_eq!(ok(&again, "registerCustomer")["replayed"], true);
}

#[test]
fn the_server_runs_on_postgres_and_migrate_copies_the_log_both_ways() {
    let cluster = PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let url = cluster.database("oacis").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let args = [
        "--store",
        url.as_str(),
        "--demo",
        "--demo-customers",
        "40",
        "--consistency-wait-ms",
        "300",
        "--request-timeout-seconds",
        "3",
    ];
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
    // Every value of a repeated header counts: the highest is waited for, any bad one refused.
    let twice = [("oacis-min-seq", "1"), ("oacis-min-seq", ahead.as_str())];
    let (status, _, answer) = post(&server, &admin, &twice, read, json!({ "id": id }));
    assert_eq!((status, code(&answer)), (503, "STALE_VIEWS"), "{answer}");
    for bad in ["abc", "+5", "-1"] {
        let (status, _, answer) =
            post(&server, &admin, &[("oacis-min-seq", "1"), ("oacis-min-seq", bad)], read, json!({ "id": id }));
        assert_eq!((status, code(&answer)), (400, "VALIDATION"), "{bad}: {answer}");
    }

    // A second customer, erased: its key is destroyed everywhere the log goes.
    let profile =
        json!({ "p": { "kind": "PERSON", "name": "删 Erased", "source": "OTHER", "phones": ["+8613912345670"] } });
    let erased =
        ok(&server.gql(Some(&admin), register, profile), "registerCustomer")["id"].as_str().unwrap().to_owned();
    let erase = "mutation($id: String!, $r: String!) { erasePersonalData(id: $id, reason: $r) { id } }";
    ok(&server.gql(Some(&admin), erase, json!({ "id": erased, "r": "本人申请" })), "erasePersonalData");

    // The whole chain verifies through the server; checkpoints are the embedded store's.
    let verified = ok(&server.gql(Some(&admin), "{ verifyChain { ok headSeq } }", json!({})), "verifyChain");
    assert_eq!(verified["ok"], true);
    assert!(verified["headSeq"].as_u64().unwrap() >= seq);
    let refused = server.gql(Some(&admin), "{ checkpoint { treeSize } }", json!({}));
    assert_eq!(code(&refused), "CONFLICT");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("PostgreSQL"), "{refused}");

    // PostgreSQL goes away: a write is answered UNAVAILABLE (retry is safe); once it is back,
    // the server goes on by itself and the same keyed write lands once.
    cluster.crash().unwrap();
    let keyed = "mutation($p: ProfileInput!, $k: String) { registerCustomer(profile: $p, clientMutationId: $k) { id replayed } }";
    let during = json!({ "p": { "kind": "PERSON", "name": "断 Outage", "source": "OTHER" }, "k": "outage-1" });
    let refused = server.gql(Some(&admin), keyed, during.clone());
    assert_eq!(code(&refused), "UNAVAILABLE", "{refused}");
    // Not ready while the database is away (the tailer notices within its poll).
    readyz_until(&server, 503, "cannot be reached");
    cluster.start_again().unwrap();
    lands_once(&server, &admin, keyed, &during);
    readyz_until(&server, 200, "ready");

    // PostgreSQL hangs (every process stopped, connections open): a write is answered within
    // the request timeout with TIMEOUT (a GraphQL body), /readyz stops saying ready, and once
    // it answers again the same keyed write lands once.
    cluster.freeze(true).unwrap();
    let hung = json!({ "p": { "kind": "PERSON", "name": "挂 Hung", "source": "OTHER" }, "k": "hung-1" });
    let (status, _, answer) = post(&server, &admin, &[], keyed, hung.clone());
    assert_eq!((status, code(&answer)), (503, "TIMEOUT"), "{answer}");
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("same clientMutationId"), "{answer}");
    readyz_until(&server, 503, "cannot be reached");
    cluster.freeze(false).unwrap();
    lands_once(&server, &admin, keyed, &hung);
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

    // PostgreSQL to a new folder, and that folder to a fresh database: the same head, and the
    // personal-data keys (erasures included) go along with the log.
    let kek = dir.path().join("data.kek");
    let copy = dir.path().join("copy");
    let (done, text) = out(&oacis(&["migrate", "--from", &url, "--to", path(&copy)]));
    assert!(!done && text.contains("give it with --key-file"), "the keys need the servers' KEK: {text}");
    let (done, text) = out(&oacis(&["migrate", "--from", &url, "--to", path(&copy), "--key-file", path(&kek)]));
    assert!(done, "{text}");
    let head_line = format!("{head} records, head hash {hash} on both");
    assert!(text.contains(&head_line), "{text}");
    let (done, text) = out(&oacis(&["verify", "--data", path(&copy)]));
    assert!(done, "{text}");
    let fresh = cluster.database("copy").unwrap();
    let (done, text) = out(&oacis(&["migrate", "--from", path(&copy), "--to", &fresh, "--key-file", path(&kek)]));
    assert!(done && text.contains(&head_line), "{text}");
    // Again into the same database: it already holds this log, so nothing is left to copy.
    let (done, text) = out(&oacis(&["migrate", "--from", path(&copy), "--to", &fresh, "--key-file", path(&kek)]));
    assert!(done && text.contains("up to seq"), "{text}");
    // The folder's own copy is stale now: serving it without --store is refused.
    let (done, text) =
        out(&oacis(&["serve", "--data", path(&copy), "--key-file", path(&kek), "--listen", "127.0.0.1:0"]));
    assert!(!done && text.contains("was copied to PostgreSQL"), "{text}");
    // A new server on the fresh database, with a folder of its own, opens every record:
    // the keys came from the folder, the erased customer's as a tombstone.
    let joined = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("joined"),
        &["--store", fresh.as_str(), "--key-file", path(&kek)],
        &env,
    );
    let answer = joined.gql(Some(&admin), read, json!({ "id": id }));
    assert_eq!(ok(&answer, "customer")["phones"], json!(["+8613912345678"]), "{answer}");
    let answer = joined.gql(
        Some(&admin),
        "query($id: String!) { customer(id: $id) { personalDataErased phones } }",
        json!({ "id": erased }),
    );
    assert_eq!(ok(&answer, "customer"), json!({ "personalDataErased": true, "phones": [] }));
    // The database goes back one record, as after a failover to a lagging replica: the server
    // notices within its poll, says why on /readyz, and refuses to write on the shorter log.
    let back = head - 1;
    cluster
        .sql(
            "copy",
            &format!(
                "DELETE FROM oacis_events WHERE seq > {back}; DELETE FROM oacis_commands WHERE last_seq > {back};
                 UPDATE oacis_log_head SET seq = {back}, hash = (SELECT hash FROM oacis_events WHERE seq = {back})"
            ),
        )
        .unwrap();
    readyz_until(&joined, 503, "refuses appends: the database's log is at seq");
    let refused =
        joined.gql(Some(&admin), keyed, json!({ "p": { "kind": "PERSON", "name": "回 Rewound", "source": "OTHER" } }));
    assert_eq!(code(&refused), "INTERNAL", "{refused}");
    drop(joined);

    // Refusals: another log in the target; the same log behind the target; two folders; a
    // folder that exists.
    let other = dir.path().join("other");
    let (done, text) = out(&oacis(&["demo", "--data", path(&other), "--customers", "3"]));
    assert!(done, "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", path(&other), "--to", &fresh]));
    assert!(!done && text.contains("already holds another log"), "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", path(&other), "--to", path(&copy)]));
    assert!(!done && text.contains("give one of each"), "{text}");
    let (done, text) = out(&oacis(&["migrate", "--from", &url, "--to", path(&copy), "--key-file", path(&kek)]));
    assert!(!done && text.contains("migrate into a new folder"), "{text}");
    for (from, to) in [(url.as_str(), "garbage://x"), ("", fresh.as_str())] {
        let (done, text) = out(&oacis(&["migrate", "--from", from, "--to", to]));
        assert!(!done && text.contains("neither a data folder nor a postgres:// URL"), "{text}");
    }
    let missing = dir.path().join("missing");
    let (done, text) = out(&oacis(&["migrate", "--from", path(&missing), "--to", &fresh]));
    assert!(!done && text.contains("holds no event store") && !missing.exists(), "{text}");
    // The shared keys are not rotated from one server's folder.
    let (done, text) =
        out(&oacis(&["keys", "rotate", "--data", path(&data), "--new-key-file", path(&dir.path().join("new.kek"))]));
    assert!(!done && text.contains("rotating them there is not supported"), "{text}");
    let (done, text) = out(&oacis(&["serve", "--data", path(&other), "--store", "mysql://x"]));
    assert!(!done && text.contains("--store takes a PostgreSQL URL"), "{text}");
}

#[test]
fn two_servers_on_one_database_share_writes_keys_and_erasures() {
    let cluster = PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let url = cluster.database("shared").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("shared.kek");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let common = ["--store", url.as_str(), "--key-file", path(&kek)];
    let a_args: Vec<&str> = common.iter().copied().chain(["--demo", "--demo-customers", "20"]).collect();
    let a = Server::start(env!("CARGO_BIN_EXE_oacis"), &dir.path().join("a"), &a_args, &env);
    let b_data = dir.path().join("b");
    let b = Server::start(env!("CARGO_BIN_EXE_oacis"), &b_data, &common, &env);
    // A session opened on a is in the log: b accepts it once its views have it.
    let admin = a.first_sign_in("admin", PASSWORD, CHANGED);
    let (_, seen, _) = post(&a, &admin, &[], "{ me { username } }", json!({}));
    let seen = seen.unwrap().to_string();

    // A live feed on b sees what either server writes.
    let mut feed = Subscriber::connect(&b.addr, Some(&admin)).unwrap();
    let events = "subscription($k: [String!]) { events(kinds: $k) { seq stream kind } }";
    feed.subscribe("e", events, json!({ "k": ["CustomerRegistered"] }));

    let register = "mutation($p: ProfileInput!) { registerCustomer(profile: $p) { id } }";
    let read = "query($id: String!) { customer(id: $id) { name phones personalDataErased } }";
    let mut ids = Vec::new();
    for (writer, reader, phone) in [(&a, &b, "+8613911110001"), (&b, &a, "+8613911110002")] {
        let profile =
            json!({ "p": { "kind": "PERSON", "name": format!("客户 {phone}"), "source": "OTHER", "phones": [phone] } });
        let (status, seq, answer) = post(writer, &admin, &[("oacis-min-seq", &seen)], register, profile);
        assert_eq!(status, 200, "{answer}");
        let id = ok(&answer, "registerCustomer")["id"].as_str().unwrap().to_owned();
        // Read-your-writes on the other server: its personal data opens there too.
        let min = seq.unwrap().to_string();
        let (status, _, answer) = post(reader, &admin, &[("oacis-min-seq", &min)], read, json!({ "id": id }));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(ok(&answer, "customer")["phones"], json!([phone]), "{answer}");
        ids.push(id);
    }

    let mut streams = Vec::new();
    while streams.len() < 2 {
        let message = feed.receive();
        assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some("e")), "{message}");
        streams.push(message["payload"]["data"]["events"]["stream"].as_str().unwrap().to_owned());
    }
    assert_eq!(streams, ids.iter().map(|id| format!("customer-{id}")).collect::<Vec<_>>());
    drop(feed);

    // Copies of one keyed request sent at once to both servers: one registration, and every
    // copy answers with it.
    let keyed = "mutation($p: ProfileInput!, $k: String) { registerCustomer(profile: $p, clientMutationId: $k) { id replayed } }";
    let profile = json!({ "p": { "kind": "PERSON", "name": "同时 Copies", "source": "OTHER" }, "k": "copies-1" });
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let copies: Vec<_> = (0..6)
            .map(|i| {
                let (server, admin, profile) = ([&a, &b][i % 2], &admin, profile.clone());
                scope.spawn(move || {
                    let body = json!({ "query": keyed, "variables": profile }).to_string();
                    let headers = [("content-type", "application/json")];
                    let (status, _, body) =
                        exchange(&server.addr, "POST", "/graphql", Some(admin), &headers, body.as_bytes());
                    let stderr = server.stderr.lock().map(|lines| lines.join("\n")).unwrap_or_default();
                    assert_eq!(status, 200, "{body}\nserver's stderr:\n{stderr}");
                    serde_json::from_str::<Value>(&body).unwrap()
                })
            })
            .collect();
        copies.into_iter().map(|copy| copy.join().unwrap()).collect()
    });
    let registered: Vec<&Value> = answers.iter().map(|answer| &answer["data"]["registerCustomer"]).collect();
    assert!(registered.iter().all(|r| r["id"] == registered[0]["id"]), "{answers:?}");
    assert_eq!(registered.iter().filter(|r| r["replayed"] == false).count(), 1, "{answers:?}");

    // The database copied into a new folder while b takes writes: the copy ends at the head
    // it began at, whole, and verifies.
    let live_copy = dir.path().join("live-copy");
    let writing = std::sync::atomic::AtomicBool::new(true);
    let (copied, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut written = 0;
            while writing.load(std::sync::atomic::Ordering::Acquire) {
                let name = format!("写 Live {written}");
                let answer = b.gql(
                    Some(&admin),
                    register,
                    json!({ "p": { "kind": "PERSON", "name": name, "source": "OTHER" } }),
                );
                ok(&answer, "registerCustomer");
                written += 1;
            }
            written
        });
        let copied = out(&oacis(&["migrate", "--from", &url, "--to", path(&live_copy), "--key-file", path(&kek)]));
        writing.store(false, std::sync::atomic::Ordering::Release);
        (copied, writer.join().unwrap())
    });
    assert!(copied.0 && copied.1.contains("copied the log"), "{}", copied.1);
    assert!(written > 0);
    let (done, text) = out(&oacis(&["verify", "--data", path(&live_copy)]));
    assert!(done, "{text}");

    // A session opened on one server works on the other at once, and one ended there is
    // refused for writes by the other at once (a mutation, or a token not known, waits for
    // the views to hold what the database had committed when it arrived).
    let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
    for round in 0..4 {
        let signed_in = a.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED }));
        let token = ok(&signed_in, "signIn")["token"].as_str().unwrap().to_owned();
        // A session opened on a works on b at once (its next request may go to either).
        let me = b.gql(Some(&token), "{ me { username } }", json!({}));
        assert_eq!(ok(&me, "me")["username"], "admin", "round {round}: {me}");
        let out = a.gql(Some(&token), "mutation { signOut }", json!({}));
        assert_eq!(ok(&out, "signOut"), true);
        let name = format!("登出 Signed out {round}");
        let after =
            b.gql(Some(&token), register, json!({ "p": { "kind": "PERSON", "name": name, "source": "OTHER" } }));
        assert_eq!(code(&after), "UNAUTHENTICATED", "round {round}: {after}");
    }

    // Sixteen interactions logged at once on one customer through both servers: each lands
    // or, after the retries, answers that the record kept changing; none is decided against
    // a state that includes another's append still pending (which, with the other server
    // taking that version, would answer "exists already", or land on a state that never was).
    let log = "mutation($c: String!, $s: String!) { logInteraction(customer: $c, channel: CALL, direction: INBOUND, summary: $s) { seq version } }";
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let (server, admin, id) = ([&a, &b][i % 2], &admin, &ids[0]);
                scope.spawn(move || server.gql(Some(admin), log, json!({ "c": id, "s": format!("call {i}") })))
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    let landed: Vec<&Value> = answers.iter().filter(|answer| answer["errors"].is_null()).collect();
    for refused in answers.iter().filter(|answer| !answer["errors"].is_null()) {
        assert_eq!(code(refused), "CONFLICT", "{refused}");
        assert!(refused["errors"][0]["message"].as_str().unwrap().contains("changed while deciding"), "{refused}");
    }
    let last = landed.iter().map(|answer| answer["data"]["logInteraction"]["seq"].as_u64().unwrap()).max();
    let min = last.unwrap_or(0).to_string();
    let history = "query($id: String!) { recordHistory(recordType: \"customer\", id: $id) { kind } }";
    for server in [&a, &b] {
        let (_, _, answer) = post(server, &admin, &[("oacis-min-seq", &min)], history, json!({ "id": ids[0] }));
        let kinds = answer["data"]["recordHistory"].as_array().unwrap().len();
        assert_eq!(kinds, 1 + landed.len(), "the registration and every landed interaction: {answer}");
    }

    // One user reading personal data on both servers at once: every read is put on that
    // user's access record (one stream both servers append to), and every read is answered.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let reads: Vec<_> = (0..48)
            .map(|i| {
                let (server, admin, id) = ([&a, &b][i % 2], &admin, &ids[0]);
                scope.spawn(move || {
                    let (status, _, answer) = post(server, admin, &[], read, json!({ "id": id }));
                    (status, answer)
                })
            })
            .collect();
        reads.into_iter().map(|read| read.join().unwrap()).collect()
    });
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(ok(answer, "customer")["phones"], json!(["+8613911110001"]), "{answer}");
    }

    // An erasure on a: b shows it erased, and b's own key store destroys the key.
    let erase = "mutation($id: String!, $r: String!) { erasePersonalData(id: $id, reason: $r) { id } }";
    let (status, seq, answer) = post(&a, &admin, &[], erase, json!({ "id": ids[1], "r": "本人申请" }));
    assert_eq!(status, 200, "{answer}");
    let min = seq.unwrap().to_string();
    let (_, _, answer) = post(&b, &admin, &[("oacis-min-seq", &min)], read, json!({ "id": ids[1] }));
    assert_eq!(ok(&answer, "customer")["personalDataErased"], true, "{answer}");
    assert_eq!(ok(&answer, "customer")["phones"], json!([]));
    let (_, _, answer) = post(&b, &admin, &[], read, json!({ "id": ids[0] }));
    assert_eq!(ok(&answer, "customer")["phones"], json!(["+8613911110001"]), "the others intact");
    // Lockout is in the log: five wrong passwords spread over both servers lock the account
    // on both (the per-process rate limits cannot multiply the attempts past it).
    for (i, server) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let wrong = server.gql(None, sign_in, json!({ "n": "admin", "p": format!("Wrong-Password-{i}") }));
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");
    }
    for server in [&b, &a] {
        let locked = server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED }));
        assert_eq!(code(&locked), "UNAUTHENTICATED", "locked on every server: {locked}");
    }
    drop(a);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key_ids = rt.block_on(async {
        let store = oacis_eventlog::PgStore::open(oacis_eventlog::PgConfig::new(url.clone())).await.unwrap();
        let stream = oacis_eventlog::StreamId::new(format!("customer-{}", ids[1])).unwrap();
        let records =
            oacis_eventlog::EventStore::read_stream(&store, &stream, oacis_eventlog::Version(1), 100).await.unwrap();
        records.iter().flat_map(|r| oacis_eventlog::seal::key_ids(&r.payload)).collect::<Vec<_>>()
    });
    assert!(!key_ids.is_empty());
    // b's erasure follower destroys its copy as the event reaches it: its journal then holds
    // a "destroyed" record (tag 4, the id, an empty subject) for each key.
    let journal = b_data.join("keys").join("journal");
    let destroyed = |id: &[u8; 16]| [&[4u8][..], id, &[0, 0]].concat();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !key_ids.iter().all(|id| {
        let bytes = std::fs::read(&journal).unwrap_or_default();
        bytes.windows(19).any(|w| w == destroyed(id).as_slice())
    }) {
        assert!(std::time::Instant::now() < deadline, "b never destroyed its copy of the key");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(b.terminate().code(), Some(0));
    let (kek, _) = oacis_eventlog::keys::Kek::load_or_create(&kek).unwrap();
    let b_keys = oacis_eventlog::keys::KeyStore::open(&b_data, kek).unwrap();
    for id in &key_ids {
        assert!(matches!(b_keys.get(id), oacis_eventlog::keys::KeyState::Destroyed), "b destroyed its copy");
    }
    // A server with another key-encryption key is refused, naming it.
    let other = dir.path().join("other.kek");
    let (done, text) = out(&oacis(&[
        "serve",
        "--data",
        path(&dir.path().join("c")),
        "--store",
        &url,
        "--key-file",
        path(&other),
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(!done && text.contains("key-encryption key"), "{text}");
}

#[test]
fn servers_first_starting_together_set_the_organisation_up_once() {
    let cluster = PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let url = cluster.database("together").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("shared.kek");
    // The shared key exists before either starts (as an operator would provision it).
    oacis_eventlog::keys::Kek::load_or_create(&kek).unwrap();
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let started: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let (data, url, kek) = (dir.path().join(name), url.clone(), kek.clone());
                scope.spawn(move || {
                    Server::start(
                        env!("CARGO_BIN_EXE_oacis"),
                        &data,
                        &["--store", &url, "--key-file", path(&kek)],
                        &env,
                    )
                })
            })
            .collect();
        started.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let admin = servers[0].first_sign_in("admin", PASSWORD, CHANGED);
    let (_, seen, _) = post(&servers[0], &admin, &[], "{ me { username } }", json!({}));
    let seen = seen.unwrap().to_string();
    for server in &servers {
        let query = "{ departments { id parent } roles { name } }";
        let (_, _, answer) = post(server, &admin, &[("oacis-min-seq", &seen)], query, json!({}));
        let roots = ok(&answer, "departments").as_array().unwrap().iter().filter(|d| d["parent"].is_null()).count();
        assert_eq!(roots, 1, "one root department: {answer}");
        let roles: Vec<String> =
            ok(&answer, "roles").as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
        let mut unique = roles.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), roles.len(), "each default role once: {roles:?}");
    }
}

/// A server started before its database (both started together) waits for it, saying so,
/// and serves once it is up.
#[test]
fn a_server_started_before_its_database_waits_for_it() {
    let cluster = PgCluster::start().expect("a throwaway PostgreSQL cluster");
    let url = cluster.database("later").unwrap();
    cluster.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    std::thread::scope(|scope| {
        let database = scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(3));
            cluster.start_again().unwrap();
        });
        let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &dir.path().join("data"), &["--store", &url], &env);
        database.join().unwrap();
        let printed = server.stderr.lock().map(|lines| lines.join("\n")).unwrap_or_default();
        assert!(printed.contains("waiting for PostgreSQL"), "{printed}");
        readyz_until(&server, 200, "ready");
    });
}
