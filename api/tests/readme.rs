//! The README's five-minute tour, run as written against a server started with demo data:
//! every step must answer without a GraphQL error, and the steps must show what the README
//! says they show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use oacis_tests::Server;

/// The shell blocks between the tour markers of README.md.
fn tour() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let (_, rest) = readme.split_once("<!-- tour:begin -->").expect("tour start marker");
    let (tour, _) = rest.split_once("<!-- tour:end -->").expect("tour end marker");
    let mut script = String::from("set -eu\n");
    let mut inside = false;
    for line in tour.lines() {
        match (inside, line.trim()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn the_readme_tour_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        dir.path(),
        &["--demo", "--demo-customers", "300"],
        &[("OACIS_ADMIN_PASSWORD", "Tour-Pass-2026")],
    );
    let script = tour();
    assert!(script.contains("G=http://127.0.0.1:8080/graphql"), "the tour names the default address");
    // The only change: the address of this test's server instead of the default port.
    let script = script.replace("http://127.0.0.1:8080/graphql", &format!("http://{}/graphql", server.addr));
    let out = Command::new("bash").arg("-c").arg(&script).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tour failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(answers.len(), 9, "{stdout}");
    for answer in &answers {
        assert!(answer.get("errors").is_none(), "a step failed: {answer}");
    }
    assert_eq!(answers[0]["data"]["customers"]["edges"].as_array().map(Vec::len), Some(3));
    assert!(answers[0]["data"]["customers"]["totalCount"].as_u64() > Some(250));
    let segments = answers[2]["data"]["analytics"]["customersBy"].as_array().unwrap();
    assert!(segments.len() >= 2 && segments.iter().all(|b| b["count"].as_u64() > Some(0)));
    // As of before the change, the customer has her first name and no segment yet.
    let past = &answers[4]["data"]["customer"];
    assert_eq!(past["name"], "李娜");
    assert!(past["segment"].is_null());
    assert_eq!(past["phones"][0], "+8613912345678");
    let history = answers[5]["data"]["recordHistory"].as_array().unwrap();
    let kinds: Vec<&str> = history.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CustomerRegistered", "InteractionLogged", "CustomerProfileUpdated"]);
    // The claim waits for the demo manager, the leader of the administrator's department.
    let claims = &answers[7]["data"]["approvals"];
    assert_eq!(claims["totalCount"], 1, "{claims}");
    let claim = &claims["edges"][0]["node"];
    assert_eq!(
        (claim["name"].as_str(), claim["status"].as_str(), claim["currentNode"].as_str()),
        (Some("费用报销"), Some("RUNNING"), Some("manager"))
    );
    assert_eq!(claim["route"], serde_json::json!(["manager"]));
    let verified = &answers[8]["data"]["verifyChain"];
    assert_eq!(verified["ok"], true);
    assert!(verified["records"].as_u64() > Some(1_000));
}
