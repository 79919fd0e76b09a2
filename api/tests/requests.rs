//! Request ids: every answer carries `x-request-id` (the client's, or a UUID v7 made for the
//! request), and the events a request writes carry that id as their correlation id, so that
//! a request's log line and its records in the log can be joined. And `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use oacis_tests::{exchange, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn request_id(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-request-id").then(|| value.trim().to_owned())
    })
}

#[test]
fn a_request_id_names_the_answer_and_the_events_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let token = server.first_sign_in("admin", PASSWORD, CHANGED);
    let register = json!({ "query": "mutation { registerCustomer(profile: {kind: PERSON, name: \"请求甲\", source: OTHER}) { id } }" })
        .to_string();
    let json_type = ("content-type", "application/json");

    // The client's id comes back, and becomes the events' correlation id.
    let chosen = "01939a4e-0000-7000-8000-00000000c0de";
    let (status, head, body) = exchange(
        &server.addr,
        "POST",
        "/graphql",
        Some(&token),
        &[json_type, ("x-request-id", chosen)],
        register.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(request_id(&head).as_deref(), Some(chosen), "{head}");
    let id =
        serde_json::from_str::<Value>(&body).unwrap()["data"]["registerCustomer"]["id"].as_str().unwrap().to_owned();

    // Without one, the server makes a UUID for the answer.
    let (_, head, _) = exchange(&server.addr, "POST", "/graphql", Some(&token), &[json_type], register.as_bytes());
    let made = request_id(&head).unwrap_or_else(|| panic!("{head}"));
    assert!(uuid::Uuid::try_parse(&made).is_ok(), "{made}");

    // The seq an answer gave is waited for; one past this log's head, which no answer gave, is
    // refused at once (not held for the consistency bound).
    let seen = head.lines().find_map(|l| l.strip_prefix("oacis-seq: ")).unwrap().trim().to_owned();
    let read = json!({ "query": "{ customers { totalCount } }" }).to_string();
    let (status, _, body) = exchange(
        &server.addr,
        "POST",
        "/graphql",
        Some(&token),
        &[json_type, ("oacis-min-seq", &seen)],
        read.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let ahead = (seen.parse::<u64>().unwrap() + 1_000_000).to_string();
    let asked = std::time::Instant::now();
    let (status, _, body) = exchange(
        &server.addr,
        "POST",
        "/graphql",
        Some(&token),
        &[json_type, ("oacis-min-seq", &ahead)],
        read.as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("past the log's head") && body.contains("VALIDATION"), "{body}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(2), "answered at once");
    server.kill();

    let out_file = dir.path().join("log.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_oacis"))
        .args(["export", "--data", data.to_str().unwrap(), "--out", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<Value> =
        std::fs::read_to_string(&out_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ours: Vec<&Value> = records.iter().filter(|r| r["correlation_id"] == chosen).collect();
    assert!(!ours.is_empty(), "no record carries the request id");
    assert!(
        ours.iter().any(|r| r["kind"] == "CustomerRegistered" && r["stream"] == format!("customer-{id}")),
        "{ours:?}"
    );
    assert!(records.iter().any(|r| r["correlation_id"] == made.as_str()), "the made id is the other request's");
}

/// `/metrics`: the Prometheus text format, for administrators only, with the operations by
/// root field and outcome, their latency histogram, refused sign-ins, the log's appends and
/// syncs, and the views' lag.
#[test]
fn metrics_count_what_the_server_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("data"),
        &[],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let (status, _) = server.http("GET", "/metrics", None, b"");
    assert_eq!(status, 401);
    let wrong = "mutation { signIn(input: {name: \"admin\", password: \"Wrong-Pass-1234\"}) { token } }";
    let _ = server.gql(None, wrong, json!({}));
    let token = server.first_sign_in("admin", PASSWORD, CHANGED);
    let register = "mutation { registerCustomer(profile: {kind: PERSON, name: \"度量甲\", source: OTHER}) { id } }";
    let _ = server.gql(Some(&token), register, json!({}));
    let refused = "mutation { registerCustomer(profile: {kind: PERSON, name: \"\", source: OTHER}) { id } }";
    let _ = server.gql(Some(&token), refused, json!({}));
    let (status, text) = server.http("GET", "/metrics", Some(&token), b"");
    assert_eq!(status, 200, "{text}");
    for expected in [
        "oacis_graphql_operations_total{field=\"registerCustomer\",outcome=\"ok\"} 1",
        "oacis_graphql_operations_total{field=\"registerCustomer\",outcome=\"validation\"} 1",
        "oacis_graphql_operation_duration_seconds_bucket{field=\"registerCustomer\",le=\"10\"} 2",
        "oacis_sign_in_failures_total{reason=\"bad_credentials\"} 1",
        "oacis_eventlog_appends_total ",
        "oacis_eventlog_sync_duration_seconds_bucket{le=",
        "oacis_eventlog_group_appends_count ",
        "oacis_views_lag_events 0",
        "oacis_sessions_open ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains(&token[..20]) && !text.contains("度量甲"), "no ids or data in labels");
}

/// `--anonymous-user`: requests without a token act as that user, with its roles and scopes
/// (the analyst: every customer, personal data masked, no writes); a wrong token is still
/// refused; an administrator is never used so.
#[test]
fn requests_without_a_token_act_as_the_anonymous_user_within_its_rights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let args = ["--demo", "--demo-customers", "200", "--anonymous-user", "demo.analyst"];
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &args, &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    assert!(printed.contains("requests without a token act as the user \"demo.analyst\""), "{printed}");
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);
    let list = "query($f: CustomerFilter) { customers(first: 5, filter: $f) { totalCount nodes { name phones } } }";
    let everyone = server.gql(Some(&admin), list, json!({}));
    let anonymous = server.gql(None, list, json!({}));
    assert!(anonymous["errors"].is_null(), "{anonymous}");
    assert_eq!(anonymous["data"]["customers"]["totalCount"], everyone["data"]["customers"]["totalCount"]);
    let phones: Vec<&str> = anonymous["data"]["customers"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["phones"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()))
        .collect();
    assert!(!phones.is_empty() && phones.iter().all(|p| p.contains('*')), "masked: {phones:?}");
    // The name filter looks at names only; the text filter also at industries and tags.
    let by_name = server.gql(None, list, json!({ "f": { "name": "科技" } }));
    let by_text = server.gql(None, list, json!({ "f": { "text": "科技" } }));
    let (named, texted) = (
        by_name["data"]["customers"]["totalCount"].as_u64().unwrap(),
        by_text["data"]["customers"]["totalCount"].as_u64().unwrap(),
    );
    assert!(named > 0 && named <= texted, "{by_name} {by_text}");
    for node in by_name["data"]["customers"]["nodes"].as_array().unwrap() {
        assert!(node["name"].as_str().unwrap().contains("科技"), "{node}");
    }
    // No writes for an analyst, anonymous or not; a wrong token is not anonymous.
    let write = "mutation { registerCustomer(profile: {kind: PERSON, name: \"匿名\", source: OTHER}) { id } }";
    assert_eq!(oacis_tests::code(&server.gql(None, write, json!({}))), "FORBIDDEN");
    assert_eq!(oacis_tests::code(&server.gql(Some("oacis_nonsense"), list, json!({}))), "UNAUTHENTICATED");
    // Its own account is not the anonymous caller's to change.
    for own in [
        "mutation { signOut }",
        "mutation { changePassword(current: \"x\", newPassword: \"Another-Pass-2026\") { token } }",
    ] {
        assert_eq!(oacis_tests::code(&server.gql(None, own, json!({}))), "FORBIDDEN", "{own}");
    }
    // Not through what a browser sends cross-site without asking: no text/plain, no uploads.
    // Refused by the router itself, in the media type of an executed answer (GraphQL over
    // HTTP: a status other than 200 goes with application/graphql-response+json).
    let media_type = |head: &str| {
        head.lines().find_map(|line| line.strip_prefix("content-type: ").map(str::to_owned)).unwrap_or_default()
    };
    let query = json!({ "query": "{ me { id } }" }).to_string();
    let (status, head, body) =
        exchange(&server.addr, "POST", "/graphql", None, &[("content-type", "text/plain")], query.as_bytes());
    assert_eq!(status, 415, "{body}");
    assert_eq!(media_type(&head), "application/graphql-response+json", "{head}");
    assert_eq!(oacis_tests::code(&serde_json::from_str(&body).expect("a GraphQL body")), "VALIDATION", "{body}");
    let (_, answered, _) =
        exchange(&server.addr, "POST", "/graphql", None, &[("content-type", "application/json")], query.as_bytes());
    assert_eq!(media_type(&answered), media_type(&head), "{answered}");
    let (status, head, body) = exchange(
        &server.addr,
        "POST",
        "/graphql",
        None,
        &[("content-type", "multipart/form-data; boundary=x")],
        b"--x--\r\n",
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(media_type(&head), "application/graphql-response+json", "{head}");
    // So do a path that does not exist and a method that is not answered.
    for (method, path, status, code) in [("GET", "/nowhere", 404, "NOT_FOUND"), ("PUT", "/graphql", 405, "VALIDATION")]
    {
        let (got, head, body) = exchange(&server.addr, method, path, None, &[], b"");
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(media_type(&head), "application/graphql-response+json", "{head}");
        assert_eq!(oacis_tests::code(&serde_json::from_str(&body).expect("a GraphQL body")), code, "{body}");
    }
    // A WebSocket without a token: a program (no Origin) is the anonymous user, a page of
    // another site is refused; a payload that is not an object is refused.
    assert!(oacis_tests::Subscriber::connect(&server.addr, None).is_ok());
    let foreign = [("origin", "http://elsewhere.example")];
    let refused =
        oacis_tests::Subscriber::connect_with_headers(&server.addr, "graphql-transport-ws", &foreign, json!({}))
            .unwrap_err();
    assert!(refused.contains("another site"), "{refused}");
    let refused =
        oacis_tests::Subscriber::connect_with(&server.addr, "graphql-transport-ws", json!({ "authorization": 5 }))
            .unwrap_err();
    assert!(refused.contains("not a string"), "{refused}");

    // Made an administrator while the server runs: no longer used; again once revoked.
    let roles = server.gql(Some(&admin), "{ roles { id name } } ", json!({}));
    let administrator =
        roles["data"]["roles"].as_array().unwrap().iter().find(|r| r["name"] == "administrator").unwrap()["id"].clone();
    let users = server.gql(Some(&admin), "{ users { id username } }", json!({}));
    let analyst = users["data"]["users"].as_array().unwrap().iter().find(|u| u["username"] == "demo.analyst").unwrap()
        ["id"]
        .clone();
    let grant = "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }";
    let granted = server.gql(Some(&admin), grant, json!({ "u": analyst, "r": administrator }));
    assert_eq!(oacis_tests::code(&server.gql(None, list, json!({}))), "UNAUTHENTICATED");
    let revoke = "mutation($g: String!) { revokeGrant(grant: $g) { id } }";
    assert!(server.gql(Some(&admin), revoke, json!({ "g": granted["data"]["grantRole"]["id"] }))["errors"].is_null());
    assert!(server.gql(None, list, json!({}))["errors"].is_null());
    // A password reset (the password must change before the account is used): not used.
    let reset = "mutation($u: String!) { resetPassword(user: $u, newPassword: \"Reset-Pass-2026\") { id } }";
    assert!(server.gql(Some(&admin), reset, json!({ "u": analyst }))["errors"].is_null());
    assert_eq!(oacis_tests::code(&server.gql(None, list, json!({}))), "UNAUTHENTICATED");
    drop(server);

    // An administrator named at start: refused before serving.
    let out = Command::new(env!("CARGO_BIN_EXE_oacis"))
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0", "--anonymous-user", "admin"])
        .env("OACIS_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("--anonymous-user \"admin\" may administer users or roles"), "{printed}");
}

/// A request body that does not arrive within the request timeout is answered 408, not
/// waited for.
#[test]
fn a_body_that_never_arrives_is_answered_408_within_the_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let server =
        Server::start(env!("CARGO_BIN_EXE_oacis"), &dir.path().join("data"), &["--request-timeout-seconds", "1"], &env);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let head =
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"query\":";
    stream.write_all(head.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}
