//! Live feeds over WebSocket (`graphql-transport-ws`): `events` from a position then live,
//! each exactly once and in order; `notifications` for assignees, reminders on a clock the
//! test moves, and security alerts; sessions that end close their feeds; a stopping server
//! closes them with a reason; refusals (token, protocol, operation, permission).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use clap::Parser;
use oacis_api::server::{App, ServeArgs};
use oacis_domain::ids::Timestamp;
use oacis_tests::{code, Server, Subscriber};
use serde_json::{json, Value};

const PASSWORD: &str = "Live-Feeds-2026";
const CHANGED: &str = "Live-Changed-77";
const EVENTS: &str =
    "subscription($from: Int, $kinds: [String!]) { events(fromSeq: $from, kinds: $kinds) { seq stream kind payload } }";
const NOTIFICATIONS: &str = "subscription { notifications { kind record detail at seq } }";
const REGISTER: &str = "mutation($n: String!, $p: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER, phones: [$p]}) { id seq } }";

/// A server with a few demo users; answers it, the administrator's token and the demo
/// passwords by user name.
fn start(extra: &[&str]) -> (Server, String, std::collections::HashMap<String, String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--demo", "--demo-customers", "20"];
    args.extend_from_slice(extra);
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("data"),
        &args,
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let printed = server.stderr.lock().unwrap().join("\n");
    let passwords = printed
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, password) = (words.next()?, words.next()?);
            name.starts_with("demo.").then(|| (name.to_owned(), password.to_owned()))
        })
        .collect();
    let admin = server.first_sign_in("admin", PASSWORD, CHANGED);
    (server, admin, passwords, dir)
}

fn sign_in(server: &Server, passwords: &std::collections::HashMap<String, String>, name: &str) -> String {
    let password = passwords.get(name).unwrap_or_else(|| panic!("no demo password for {name}"));
    server.first_sign_in(name, password, "Demo-Changed-2026")
}

fn data<'a>(answer: &'a Value, field: &str) -> &'a Value {
    assert!(answer["errors"].is_null(), "{answer}");
    &answer["data"][field]
}

fn user_id(server: &Server, token: &str) -> String {
    data(&server.gql(Some(token), "{ me { id } }", json!({})), "me")["id"].as_str().unwrap().to_owned()
}

/// Waits (at most 20 s) until the server counts `n` open feeds of kind `feed`: a
/// subscription starts after its `subscribe` message is read, and only from then on sees
/// what happens.
fn wait_open(server: &Server, admin: &str, feed: &str, n: usize) {
    let want = format!("oacis_subscriptions_open{{feed=\"{feed}\"}} {n}\n");
    let started = std::time::Instant::now();
    loop {
        let (_, metrics) = server.http("GET", "/metrics", Some(admin), b"");
        if metrics.contains(&want) {
            return;
        }
        assert!(started.elapsed().as_secs() < 20, "no {want} in {metrics}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The payload of a `next` message for subscription `id`, or the message itself if it is not
/// one.
fn next_of(message: &Value, id: &str) -> Option<Value> {
    (message["type"] == "next" && message["id"] == id).then(|| message["payload"].clone())
}

#[test]
fn events_from_a_position_then_live_each_once_in_order_masked_for_auditors() {
    let (server, admin, passwords, _dir) = start(&[]);
    let register = |n: usize| {
        let answer = server.gql(Some(&admin), REGISTER, json!({ "n": format!("直播客户{n}"), "p": "139 1234 5678" }));
        data(&answer, "registerCustomer")["seq"].as_u64().unwrap()
    };
    let before: Vec<u64> = (0..3).map(register).collect();
    let auditor = sign_in(&server, &passwords, "demo.auditor");
    let from = before[1];
    let mut feed = Subscriber::connect(&server.addr, Some(&auditor)).unwrap();
    feed.subscribe("mid", EVENTS, json!({ "from": from }));
    feed.subscribe("kinds", EVENTS, json!({ "from": 1, "kinds": ["CustomerRegistered"] }));
    // Written while the feeds run: they must arrive after the stored ones, once each.
    let after: Vec<u64> = (3..5).map(register).collect();
    let last = *after.last().unwrap();
    let (mut seqs, mut kinds_seen) = (Vec::new(), Vec::new());
    while seqs.last().is_none_or(|s| *s < last) || kinds_seen.len() < 5 {
        let message = feed.receive();
        if let Some(payload) = next_of(&message, "mid") {
            let event = &payload["data"]["events"];
            let text = event["payload"].as_str().unwrap();
            assert!(!text.contains("13912345678"), "plaintext phone in the feed: {text}");
            seqs.push(event["seq"].as_u64().unwrap());
        } else if let Some(payload) = next_of(&message, "kinds") {
            assert_eq!(payload["data"]["events"]["kind"], "CustomerRegistered", "{payload}");
            kinds_seen.push(payload["data"]["events"]["seq"].as_u64().unwrap());
        } else {
            panic!("unexpected message {message}");
        }
    }
    let want: Vec<u64> = (from..=last).collect();
    assert_eq!(seqs, want, "every event from the position, once, in order");
    assert!(kinds_seen.windows(2).all(|w| w[0] < w[1]), "{kinds_seen:?}");
    // The auditor may not see personal data: the sealed part is masked, not shown.
    let sealed =
        server.gql(Some(&admin), "query($s: Int) { events(fromSeq: $s, first: 1) { payload } }", json!({ "s": from }));
    let masked = server.gql(
        Some(&auditor),
        "query($s: Int) { events(fromSeq: $s, first: 1) { payload } }",
        json!({ "s": from }),
    );
    assert_ne!(sealed, masked, "masking differs by right");
}

#[test]
fn an_ended_session_closes_its_feeds_and_refusals_are_clear() {
    let token = "metrics-token-for-the-live-tests-2026";
    let (server, admin, passwords, _dir) = start(&["--metrics-token", token]);
    let auditor = sign_in(&server, &passwords, "demo.auditor");
    let auditor_id = user_id(&server, &auditor);
    let mut feed = Subscriber::connect(&server.addr, Some(&auditor)).unwrap();
    feed.subscribe("e", EVENTS, json!({}));
    feed.subscribe("n", NOTIFICATIONS, json!({}));
    wait_open(&server, &admin, "events", 1);
    wait_open(&server, &admin, "notifications", 1);
    data(&server.gql(Some(&admin), REGISTER, json!({ "n": "计数", "p": "139 1234 5678" })), "registerCustomer");
    assert!(next_of(&feed.receive(), "e").is_some());
    // The scrape with the metrics token (no session) shows the feed open.
    let (status, metrics) = server.http("GET", "/metrics", Some(token), b"");
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("oacis_subscriptions_open{feed=\"events\"} 1"), "{metrics}");
    assert_eq!(server.http("GET", "/metrics", Some("wrong-token-wrong-token-wrong-token"), b"").0, 401);
    // Signed in, but not an administrator: forbidden, not unauthenticated.
    assert_eq!(server.http("GET", "/metrics", Some(&auditor), b"").0, 403);
    assert_eq!(server.http("GET", "/graphql", Some(&auditor), b"").0, 403);
    assert_eq!(server.http("GET", "/graphql", None, b"").0, 401);

    let revoked = server.gql(
        Some(&admin),
        "mutation($u: String!) { revokeSessions(user: $u) { seq } }",
        json!({ "u": auditor_id }),
    );
    data(&revoked, "revokeSessions");
    let mut closed = BTreeSet::new();
    let mut completed = BTreeSet::new();
    while completed.len() < 2 {
        let message = feed.receive();
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        match message["type"].as_str() {
            Some("next") => {
                let errors = &message["payload"]["errors"];
                if !errors.is_null() {
                    assert_eq!(errors[0]["extensions"]["code"], "UNAUTHENTICATED", "{message}");
                    closed.insert(id);
                }
            }
            Some("complete") => {
                completed.insert(id);
            }
            _ => panic!("unexpected {message}"),
        }
    }
    assert_eq!(closed, ["e".to_owned(), "n".to_owned()].into(), "both feeds closed with UNAUTHENTICATED");
    let (_, metrics) = server.http("GET", "/metrics", Some(token), b"");
    assert!(
        metrics.contains("oacis_subscriptions_closed_total{feed=\"events\",reason=\"unauthenticated\"} 1"),
        "{metrics}"
    );

    // The ended token no longer opens a connection; neither does a made-up one.
    let refused = Subscriber::connect(&server.addr, Some(&auditor)).unwrap_err();
    assert!(refused.contains("sign in first"), "{refused}");
    let refused = Subscriber::connect(&server.addr, None).unwrap_err();
    assert!(refused.contains("sign in first"), "no token, no anonymous user: {refused}");
    // Only graphql-transport-ws.
    let refused = Subscriber::connect_with(&server.addr, "graphql-ws", json!({})).unwrap_err();
    assert!(refused.contains("400"), "{refused}");
    // Queries belong to POST; events need audit.read.
    let sales = sign_in(&server, &passwords, "demo.sales");
    let mut feed = Subscriber::connect(&server.addr, Some(&sales)).unwrap();
    feed.subscribe("q", "{ customers(first: 1) { totalCount } }", json!({}));
    let message = feed.receive();
    assert_eq!(code(&message["payload"]), "VALIDATION", "{message}");
    feed.subscribe("e", EVENTS, json!({}));
    let message = loop {
        let message = feed.receive();
        if message["id"] == "e" {
            break message;
        }
    };
    assert_eq!(code(&message["payload"]), "FORBIDDEN", "{message}");
    // One root field per subscription; at most 32 running on one connection.
    feed.subscribe("two", "subscription { a: notifications { kind } b: notifications { kind } }", json!({}));
    let message = loop {
        let message = feed.receive();
        if message["id"] == "two" {
            break message;
        }
    };
    assert_eq!(code(&message["payload"]), "VALIDATION", "{message}");
    assert!(message["payload"]["errors"][0]["message"].as_str().unwrap().contains("one root field"), "{message}");
    for i in 0..32 {
        feed.subscribe(&format!("n{i}"), NOTIFICATIONS, json!({}));
    }
    feed.subscribe("n32", NOTIFICATIONS, json!({}));
    let message = loop {
        let message = feed.receive();
        if message["id"] == "n32" {
            break message;
        }
    };
    assert!(message["payload"]["errors"][0]["message"].as_str().unwrap().contains("at most 32"), "{message}");
}

#[test]
fn notifications_reach_assignees_and_alerts_reach_administrators() {
    // Five failures raise the alert; the account stays open (a lock would end the session).
    let (server, admin, passwords, _dir) = start(&["--lockout-threshold", "10"]);
    let sales = sign_in(&server, &passwords, "demo.sales");
    let sales_id = user_id(&server, &sales);
    let mut mine = Subscriber::connect(&server.addr, Some(&sales)).unwrap();
    mine.subscribe("n", NOTIFICATIONS, json!({}));
    let mut admins = Subscriber::connect(&server.addr, Some(&admin)).unwrap();
    admins.subscribe("n", NOTIFICATIONS, json!({}));
    wait_open(&server, &admin, "notifications", 2);
    let create = "mutation($a: String!) { createTask(title: \"回访大客户\", priority: HIGH, assignee: $a) { id seq } }";
    let task = data(&server.gql(Some(&admin), create, json!({ "a": sales_id })), "createTask").clone();
    let got = next_of(&mine.receive(), "n").unwrap();
    let note = &got["data"]["notifications"];
    assert_eq!(note["kind"], "task_assigned");
    assert_eq!(note["record"], task["id"]);
    assert_eq!(note["detail"], "回访大客户");
    assert_eq!(note["seq"], task["seq"]);
    // Five failed sign-ins raise an alert about the account: for its owner and for
    // administrators, not for others.
    let wrong = "mutation { signIn(input: {name: \"demo.sales\", password: \"Wrong-Password-1\"}) { token } }";
    for _ in 0..5 {
        assert_eq!(code(&server.gql(None, wrong, json!({}))), "UNAUTHENTICATED");
    }
    for feed in [&mut mine, &mut admins] {
        let alert = loop {
            let note = next_of(&feed.receive(), "n").unwrap();
            if note["data"]["notifications"]["kind"] == "security_alert" {
                break note;
            }
        };
        assert_eq!(alert["data"]["notifications"]["record"], sales_id.as_str(), "{alert}");
    }
}

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn a_reminder_arrives_when_the_clock_the_test_moves_reaches_it() {
    const SECOND: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let now = Arc::new(AtomicI64::new(oacis_api::command::now().0));
    let clock = {
        let now = now.clone();
        Arc::new(move || Timestamp(now.load(Ordering::SeqCst)))
    };
    let argv = ["oacis", "--data", data_dir.to_str().unwrap(), "--admin-password", PASSWORD];
    let app = runtime.block_on(App::open_with_clock(Settings::parse_from(argv).serve, Some(clock))).unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = app.clone();
    runtime.spawn(async move { served.serve_on(listener).await });
    let token = oacis_tests::first_sign_in(&addr, "admin", PASSWORD, CHANGED);
    let mut feed = Subscriber::connect(&addr, Some(&token)).unwrap();
    feed.subscribe("n", NOTIFICATIONS, json!({}));
    // The subscription sees what happens once it runs.
    let waited = std::time::Instant::now();
    while app.state.live.feeds_open() < 1 {
        assert!(waited.elapsed().as_secs() < 20, "the subscription never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let start = now.load(Ordering::SeqCst);
    let reminder = oacis_eventlog::Timestamp(start + 2 * SECOND).to_rfc3339().unwrap();
    let create = "mutation($t: String!, $r: String) { createTask(title: $t, priority: NORMAL, reminder: $r) { id } }";
    let answer = oacis_tests::gql(&addr, Some(&token), create, json!({ "t": "两秒后提醒", "r": reminder }));
    let task = data(&answer, "createTask")["id"].clone();
    let kind_of = |message: Value| {
        let note = next_of(&message, "n").unwrap()["data"]["notifications"].clone();
        (note["kind"].as_str().unwrap().to_owned(), note)
    };
    assert_eq!(kind_of(feed.receive()).0, "task_assigned");
    // One second on: not due yet. A task created now is the next notification, not the
    // reminder.
    now.fetch_add(SECOND, Ordering::SeqCst);
    app.state.live.clock_moved();
    let answer = oacis_tests::gql(&addr, Some(&token), create, json!({ "t": "标记", "r": null }));
    data(&answer, "createTask");
    let (kind, note) = kind_of(feed.receive());
    assert_eq!((kind.as_str(), note["detail"].as_str()), ("task_assigned", Some("标记")), "{note}");
    // Two seconds on: due.
    now.fetch_add(SECOND, Ordering::SeqCst);
    app.state.live.clock_moved();
    let (kind, note) = kind_of(feed.receive());
    assert_eq!(kind, "task_reminder", "{note}");
    assert_eq!(note["record"], task);
    assert_eq!(note["at"].as_str(), Some(reminder.as_str()));
    assert!(note["seq"].is_null());
}

#[test]
fn a_stopping_server_closes_feeds_with_a_reason() {
    let (server, admin, _, _dir) = start(&[]);
    let mut feed = Subscriber::connect(&server.addr, Some(&admin)).unwrap();
    feed.subscribe("e", EVENTS, json!({}));
    wait_open(&server, &admin, "events", 1);
    // A live event proves the feed runs before the stop.
    data(&server.gql(Some(&admin), REGISTER, json!({ "n": "停机前", "p": "139 1234 5678" })), "registerCustomer");
    assert!(next_of(&feed.receive(), "e").is_some());
    // The registration's other events may come first; the closing error comes last.
    let reader = std::thread::spawn(move || loop {
        let message = feed.receive();
        if !message["payload"]["errors"].is_null() {
            break message;
        }
    });
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let message = reader.join().unwrap();
    assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "SHUTTING_DOWN", "{message}");
}
