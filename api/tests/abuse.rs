//! What an attacker tried, kept as regression tests: a document that explodes when its
//! fragments are expanded, cursors that probe hidden rows, tasks tied to records out of
//! scope, guessing the current password, duplicate warnings that would confirm masked
//! numbers, and bodies that are not GraphQL requests. Each answers a typed error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";

fn fresh(server: &Server, name: &str, password: &str, new: &str) -> String {
    server.first_sign_in(name, password, new)
}

fn ok(answer: Value, field: &str) -> Value {
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"][field].clone()
}

#[test]
fn attacks_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);

    // A chain of fragments each spreading the next twice: refused before anything walks it.
    let mut bomb = String::from("query { __typename ...F0 }");
    for i in 0..24 {
        bomb.push_str(&format!(" fragment F{i} on Query {{ __typename ...F{n} ...F{n} }}", n = i + 1));
    }
    bomb.push_str(" fragment F24 on Query { __typename }");
    let started = Instant::now();
    let (status, body) = server.http("POST", "/graphql", None, json!({ "query": bomb }).to_string().as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(started.elapsed().as_secs() < 2, "refused at once, not after walking 16M selections");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&body), "VALIDATION");
    // Bodies that are not one GraphQL request answer JSON errors with a code too.
    for bad in [&b"{\"query\": "[..], b"[{\"query\":\"{ __typename }\"}]", b"\xff\xfe", b""] {
        let (status, body) = server.http("POST", "/graphql", None, bad);
        assert_eq!(status, 400);
        assert_eq!(code(&serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))), "VALIDATION");
    }

    let admin = fresh(&server, "admin", PASSWORD, "Sesame-Changed-77");
    let root = ok(server.gql(Some(&admin), "{ departments { id } }", json!({})), "departments")[0]["id"].clone();
    let other = ok(
        server.gql(Some(&admin), r#"mutation { createDepartment(name: "别部") { id } }"#, json!({})),
        "createDepartment",
    )["id"]
        .clone();
    let role = "mutation { defineRole(name: \"writer\", permissions: [\"customer.read\", \"customer.write\", \"task.write\", \"task.read\"]) { id } }";
    let writer_role = ok(server.gql(Some(&admin), role, json!({})), "defineRole")["id"].clone();
    let create = "mutation($d: String!) { createUser(username: \"probe\", employeeNo: \"P-1\", displayName: \"探\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let probe = ok(server.gql(Some(&admin), create, json!({ "d": root })), "createUser")["id"].clone();
    let grant = "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: DEPARTMENT) { id } }";
    ok(server.gql(Some(&admin), grant, json!({ "u": probe, "r": writer_role })), "grantRole");
    let register = "mutation($p: ProfileInput!, $o: String) { registerCustomer(profile: $p, owner: $o) { id possibleDuplicates { customer } } }";
    let visible = ok(
        server.gql(Some(&admin), register, json!({ "p": { "kind": "PERSON", "name": "Zhang Visible", "source": "OTHER", "phones": ["+8613987654321"] } })),
        "registerCustomer",
    )["id"]
        .clone();
    let owner_elsewhere = "mutation($d: String!) { createUser(username: \"owner.x\", employeeNo: \"P-2\", displayName: \"甲\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let elsewhere = ok(server.gql(Some(&admin), owner_elsewhere, json!({ "d": other })), "createUser")["id"].clone();
    let hidden = ok(
        server.gql(
            Some(&admin),
            register,
            json!({ "p": { "kind": "PERSON", "name": "Zhang Secret", "source": "OTHER" }, "o": elsewhere }),
        ),
        "registerCustomer",
    )["id"]
        .clone();
    let head =
        |server: &Server| ok(server.gql(Some(&admin), "{ verifyChain { headSeq ok } }", json!({})), "verifyChain");
    let before = head(&server);

    let token = fresh(&server, "probe", "Initial-Pass-9", "Tester-Pass-2026");
    // A cursor is a place in the order, not a row: one made up around a hidden customer's id
    // answers as one around an id that does not exist, and anything not a cursor is refused.
    let page = "query($a: String) { customers(first: 10, after: $a) { totalCount edges { node { id } } } }";
    let hidden_id = hidden.as_str().unwrap().replace('-', "");
    let answers: Vec<Value> = [format!("c1.{hidden_id}.0.-."), "c1.0193000000007000800000000000dead.0.-.".into()]
        .into_iter()
        .map(|a| server.gql(Some(&token), page, json!({ "a": a })))
        .collect();
    assert!(answers[0]["errors"].is_null(), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);
    let answers: Vec<Value> = [hidden.clone(), json!("c1.x"), json!("x")]
        .into_iter()
        .map(|a| server.gql(Some(&token), page, json!({ "a": a })))
        .collect();
    for answer in &answers {
        assert_eq!(code(answer), "VALIDATION", "{answer}");
        assert_eq!(answer["errors"][0]["message"], answers[0]["errors"][0]["message"]);
    }
    let first =
        ok(server.gql(Some(&token), "{ customers(first: 1) { pageInfo { endCursor } } }", json!({})), "customers");
    let next = server.gql(Some(&token), page, json!({ "a": first["pageInfo"]["endCursor"] }));
    assert!(next["errors"].is_null(), "{next}");
    // A task cannot be tied to a customer out of scope.
    let task = "mutation($c: String!) { createTask(title: \"t\", priority: LOW, relatedCustomer: $c) { id } }";
    assert_eq!(code(&server.gql(Some(&token), task, json!({ "c": hidden }))), "NOT_FOUND");
    // Without customer.read_personal, a matching phone is not confirmed by a warning.
    let same = json!({ "kind": "PERSON", "name": "Zhang Again", "source": "OTHER", "phones": ["+8613987654321"] });
    let again = ok(server.gql(Some(&token), register, json!({ "p": same })), "registerCustomer");
    assert_eq!(again["possibleDuplicates"], json!([]));
    // Without customer.read_personal, a profile update keeps the personal data it cannot see,
    // and may not replace it.
    let update = "mutation($id: String!, $p: ProfileInput!) { updateCustomerProfile(id: $id, profile: $p) { events } }";
    let read = "query($id: String!) { customer(id: $id) { name phones } }";
    let renamed = json!({ "kind": "PERSON", "name": "Zhang Renamed", "source": "OTHER" });
    let updated = ok(server.gql(Some(&token), update, json!({ "id": visible, "p": renamed })), "updateCustomerProfile");
    assert_eq!(updated["events"], 1);
    let seen = ok(server.gql(Some(&admin), read, json!({ "id": visible })), "customer");
    assert_eq!(seen, json!({ "name": "Zhang Renamed", "phones": ["+8613987654321"] }));
    let replacing =
        json!({ "kind": "PERSON", "name": "Zhang Renamed", "source": "OTHER", "phones": ["+8613900000000"] });
    let refused = server.gql(Some(&token), update, json!({ "id": visible, "p": replacing }));
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert_eq!(ok(server.gql(Some(&admin), read, json!({ "id": visible })), "customer"), seen, "nothing changed");
    // A task is not given to someone who may not see its customer (the administrator sees
    // it; the probe does not).
    let give = "mutation($a: String!, $c: String!) { createTask(title: \"t\", priority: LOW, assignee: $a, relatedCustomer: $c) { id } }";
    let given = server.gql(Some(&admin), give, json!({ "a": probe, "c": hidden }));
    assert_eq!(code(&given), "VALIDATION", "{given}");
    assert_eq!(given["errors"][0]["extensions"]["fields"][0]["path"], "assignee", "{given}");
    assert!(server.gql(Some(&admin), give, json!({ "a": probe, "c": visible }))["errors"].is_null());
    // Nor a case: its assignee reads it and its notes as their own.
    let open = "mutation($c: String!) { openCase(customer: $c, subject: \"投诉\", description: \"客户电话已回访\", channel: CALL, priority: HIGH) { id } }";
    let case = ok(server.gql(Some(&admin), open, json!({ "c": hidden })), "openCase")["id"].clone();
    let assign = "mutation($id: String!, $a: String!) { assignCase(id: $id, assignee: $a) { seq } }";
    let assigned = server.gql(Some(&admin), assign, json!({ "id": case, "a": probe }));
    assert_eq!(code(&assigned), "VALIDATION", "{assigned}");
    assert!(
        assigned["errors"][0]["message"].as_str().unwrap().contains("may not see the case's customer"),
        "{assigned}"
    );
    let notes = server.gql(Some(&token), "query($c: String!) { caseNotes(case: $c) { text } }", json!({ "c": case }));
    assert_eq!(code(&notes), "NOT_FOUND", "{notes}");
    let visible_case = ok(server.gql(Some(&admin), open, json!({ "c": visible })), "openCase")["id"].clone();
    assert!(server.gql(Some(&admin), assign, json!({ "id": visible_case, "a": probe }))["errors"].is_null());
    // A customer merged into one out of the caller's scope answers as itself, merged (as
    // the directory lists it), not as missing; the survivor stays out of reach.
    let twin = json!({ "p": { "kind": "PERSON", "name": "Zhang Twin", "source": "OTHER" } });
    let merged = ok(server.gql(Some(&admin), register, twin), "registerCustomer")["id"].clone();
    let merge = "mutation($d: String!, $s: String!) { mergeCustomers(duplicate: $d, survivor: $s) { seq } }";
    ok(server.gql(Some(&admin), merge, json!({ "d": merged, "s": hidden })), "mergeCustomers");
    let read_merged = "query($id: String!) { customer(id: $id) { id status mergedInto } }";
    let as_admin = ok(server.gql(Some(&admin), read_merged, json!({ "id": merged })), "customer");
    assert_eq!(as_admin["id"], hidden, "the administrator reads the survivor");
    let as_probe = ok(server.gql(Some(&token), read_merged, json!({ "id": merged })), "customer");
    assert_eq!(as_probe, json!({ "id": merged, "status": "MERGED", "mergedInto": hidden }));
    let timeline = "query($c: String!) { customerTimeline(customer: $c) { edges { node { customer kind } } } }";
    let own = ok(server.gql(Some(&token), timeline, json!({ "c": merged })), "customerTimeline");
    let entries = own["edges"].as_array().unwrap();
    assert!(!entries.is_empty() && entries.iter().all(|e| e["node"]["customer"] == merged), "its own only: {own}");
    assert_eq!(code(&server.gql(Some(&token), read_merged, json!({ "id": hidden }))), "NOT_FOUND");
    // Guessing the current password counts like failed sign-ins: five lock the account and
    // end the session.
    let guess = "mutation($c: String!) { changePassword(current: $c, newPassword: \"Another-Pass-2026\") { token } }";
    let codes: Vec<String> = (0..7)
        .map(|i| code(&server.gql(Some(&token), guess, json!({ "c": format!("guess-{i}") }))).to_owned())
        .collect();
    assert_eq!(codes[..5], ["VALIDATION"; 5], "{codes:?}");
    assert_eq!(codes[5..], ["UNAUTHENTICATED"; 2], "{codes:?}");

    let after = head(&server);
    assert_eq!(after["ok"], true);
    // Only the probe's sign-ins, its password change and its one registration were written.
    assert!(after["headSeq"].as_u64() > before["headSeq"].as_u64());
}
