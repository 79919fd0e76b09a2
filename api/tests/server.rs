//! `oacis serve` end to end: the real binary on a temporary data folder, driven over HTTP on
//! loopback as a client would, checking response bodies, error codes and what survives a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "Sesame-Open-2026";

fn start(dir: &std::path::Path) -> Server {
    Server::start(env!("CARGO_BIN_EXE_oacis"), dir, &[], &[("OACIS_ADMIN_PASSWORD", ADMIN_PASSWORD)])
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    oacis_tests::http(addr, method, path, token, body)
}

fn gql(server: &Server, token: Option<&str>, query: &str, variables: Value) -> Value {
    server.gql(token, query, variables)
}

fn sign_in(server: &Server, name: &str, password: &str) -> Value {
    gql(
        server,
        None,
        "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token mustChangePassword } }",
        json!({ "n": name, "p": password }),
    )
}

fn token_of(answer: &Value, field: &str) -> String {
    answer["data"][field]["token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_owned()
}

/// Signs in as `name` and changes the required password to `new`.
fn first_sign_in(server: &Server, name: &str, password: &str, new: &str) -> String {
    let answer = sign_in(server, name, password);
    assert_eq!(answer["data"]["signIn"]["mustChangePassword"], true, "{answer}");
    let token = token_of(&answer, "signIn");
    let blocked = gql(server, Some(&token), "{ customers { totalCount } }", json!({}));
    assert_eq!(code(&blocked), "PASSWORD_CHANGE_REQUIRED");
    let changed = gql(
        server,
        Some(&token),
        "mutation($c: String!, $n: String!) { changePassword(current: $c, newPassword: $n) { token mustChangePassword } }",
        json!({ "c": password, "n": new }),
    );
    assert_eq!(changed["data"]["changePassword"]["mustChangePassword"], false, "{changed}");
    // The old session ended with the password change.
    let old = gql(server, Some(&token), "{ me { username } }", json!({}));
    assert_eq!(code(&old), "UNAUTHENTICATED", "{old}");
    token_of(&changed, "changePassword")
}

const REGISTER: &str = "mutation($p: ProfileInput!, $k: String) { registerCustomer(profile: $p, clientMutationId: $k) { id seq replayed } }";
const LIST: &str = "query($f: CustomerFilter) { customers(filter: $f, first: 50) { totalCount edges { node { id name phones emails } } } }";

#[test]
fn a_day_in_the_office_with_scopes_masking_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");

    // Unauthenticated callers get nothing.
    let anonymous = gql(&server, None, LIST, json!({}));
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    assert!(anonymous["data"].is_null());

    // The administrator sets up a department and a service colleague.
    let dept = gql(&server, Some(&admin), r#"mutation { createDepartment(name: "华东区") { id } }"#, json!({}));
    let dept = dept["data"]["createDepartment"]["id"].as_str().unwrap().to_owned();
    let user = gql(
        &server,
        Some(&admin),
        "mutation($d: String!) { createUser(username: \"wang.fang\", employeeNo: \"E-1001\", displayName: \"王芳\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }",
        json!({ "d": dept }),
    );
    let user = user["data"]["createUser"]["id"].as_str().unwrap_or_else(|| panic!("{user}")).to_owned();
    let roles = gql(&server, Some(&admin), "{ roles { id name } }", json!({}));
    let service = roles["data"]["roles"].as_array().unwrap().iter().find(|r| r["name"] == "service").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let granted = gql(
        &server,
        Some(&admin),
        "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { seq } }",
        json!({ "u": user, "r": service }),
    );
    assert!(granted["data"]["grantRole"]["seq"].as_u64().is_some(), "{granted}");

    // Customers with Chinese and Latin names.
    let zhang = json!({ "kind": "PERSON", "name": "张伟", "source": "REFERRAL",
        "phones": ["+86 138 1234 5678"], "emails": ["zhang.wei@example.com"] });
    let first = gql(&server, Some(&admin), REGISTER, json!({ "p": zhang, "k": "import-1" }));
    let zhang_id = first["data"]["registerCustomer"]["id"].as_str().unwrap_or_else(|| panic!("{first}")).to_owned();
    let anna = json!({ "kind": "PERSON", "name": "Anna Müller", "source": "WEBSITE", "phones": ["+49 30 1234567"] });
    gql(&server, Some(&admin), REGISTER, json!({ "p": anna }));

    // A retry with the same idempotency key answers the first result and writes nothing.
    let retry = gql(&server, Some(&admin), REGISTER, json!({ "p": zhang, "k": "import-1" }));
    assert_eq!(retry["data"]["registerCustomer"]["id"], zhang_id.as_str());
    assert_eq!(retry["data"]["registerCustomer"]["replayed"], true);
    assert_eq!(retry["data"]["registerCustomer"]["seq"], first["data"]["registerCustomer"]["seq"]);
    // The same key for a different command is refused.
    let reused = gql(&server, Some(&admin), REGISTER, json!({ "p": anna, "k": "import-1" }));
    assert_eq!(code(&reused), "CONFLICT", "{reused}");

    // Invalid input: every field error, and nothing written.
    let before = gql(&server, Some(&admin), LIST, json!({}));
    let bad = json!({ "kind": "PERSON", "name": "", "source": "OTHER", "phones": ["12"], "emails": ["not-mail"] });
    let refused = gql(&server, Some(&admin), REGISTER, json!({ "p": bad }));
    assert_eq!(code(&refused), "VALIDATION");
    let fields: Vec<&str> = refused["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["profile.name", "profile.phones[0]", "profile.emails[0]"]);
    let after = gql(&server, Some(&admin), LIST, json!({}));
    assert_eq!(before, after);
    assert_eq!(after["data"]["customers"]["totalCount"], 2);

    // The administrator sees personal data; the service colleague sees it masked, nowhere raw,
    // and cannot find a customer by a prefix of a phone it may not see.
    assert!(after.to_string().contains("+8613812345678"));
    let wang = first_sign_in(&server, "E-1001", "Initial-Pass-9", "Wang-Fang-Pass-3");
    let masked = gql(&server, Some(&wang), LIST, json!({}));
    let body = masked.to_string();
    assert_eq!(masked["data"]["customers"]["totalCount"], 2, "{body}");
    for raw in ["+8613812345678", "13812345678", "zhang.wei@example.com", "+49301234567"] {
        assert!(!body.contains(raw), "{raw} leaked: {body}");
    }
    assert!(body.contains("+86138****5678") && body.contains("z***@example.com"), "{body}");
    let by_prefix = gql(&server, Some(&wang), LIST, json!({ "f": { "text": "+86138" } }));
    let by_random = gql(&server, Some(&wang), LIST, json!({ "f": { "text": "+86199" } }));
    assert_eq!(by_prefix["data"]["customers"]["totalCount"], by_random["data"]["customers"]["totalCount"]);
    assert_eq!(by_prefix["data"]["customers"]["totalCount"], 0);
    let by_name = gql(&server, Some(&wang), LIST, json!({ "f": { "text": "张" } }));
    assert_eq!(by_name["data"]["customers"]["totalCount"], 1);

    // The service role may not register customers.
    let forbidden = gql(&server, Some(&wang), REGISTER, json!({ "p": anna }));
    assert_eq!(code(&forbidden), "FORBIDDEN", "{forbidden}");

    // A call is logged against the customer; an unknown customer is NOT_FOUND.
    let logged = gql(
        &server,
        Some(&admin),
        "mutation($c: String!) { logInteraction(customer: $c, channel: CALL, direction: OUTBOUND, summary: \"电话回访\") { seq } }",
        json!({ "c": zhang_id }),
    );
    assert!(logged["data"]["logInteraction"]["seq"].as_u64().is_some(), "{logged}");
    let missing = gql(
        &server,
        Some(&admin),
        "mutation { archiveCustomer(id: \"01930000-0000-7000-8000-000000000001\", reason: \"x\") { seq } }",
        json!({}),
    );
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");

    // A restart gives byte-identical answers, and sessions survive it.
    let query = json!({ "query": LIST, "variables": {} }).to_string();
    let (_, before_restart) = http(&server.addr, "POST", "/graphql", Some(&admin), query.as_bytes());
    drop(server);
    let server = start(dir.path());
    let (_, after_restart) = http(&server.addr, "POST", "/graphql", Some(&admin), query.as_bytes());
    assert_eq!(before_restart, after_restart);
    // Idempotency keys outlive the process: the log holds them, with the request's digest.
    let retry = gql(&server, Some(&admin), REGISTER, json!({ "p": zhang, "k": "import-1" }));
    assert_eq!(retry["data"]["registerCustomer"]["id"], zhang_id.as_str(), "{retry}");
    assert_eq!(retry["data"]["registerCustomer"]["replayed"], true);
    let reused = gql(&server, Some(&admin), REGISTER, json!({ "p": anna, "k": "import-1" }));
    assert_eq!(code(&reused), "CONFLICT", "{reused}");
    let out = gql(&server, Some(&admin), "mutation { signOut }", json!({}));
    assert_eq!(out["data"]["signOut"], true);
    assert_eq!(code(&gql(&server, Some(&admin), "{ me { username } }", json!({}))), "UNAUTHENTICATED");
}

#[test]
fn five_bad_passwords_lock_the_account_and_names_are_not_probed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let unknown = sign_in(&server, "nobody", "Whatever-123");
    let wrong = sign_in(&server, "admin", "Wrong-Password-1");
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert_eq!(unknown["errors"][0]["message"], wrong["errors"][0]["message"]);
    for _ in 0..4 {
        assert_eq!(code(&sign_in(&server, "admin", "Wrong-Password-1")), "UNAUTHENTICATED");
    }
    // Locked now: the right password no longer signs in.
    let locked = sign_in(&server, "admin", ADMIN_PASSWORD);
    assert_eq!(code(&locked), "UNAUTHENTICATED", "{locked}");
}

/// A lockout shows in `users` to administrators only: to a colleague the account reads
/// active, so that whoever is guessing learns nothing from it.
#[test]
fn a_lockout_shows_to_administrators_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let root = gql(&server, Some(&admin), "{ departments { id } }", json!({}))["data"]["departments"][0]["id"].clone();
    let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: \"同事\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    for (name, number) in [("colleague", "E-1"), ("target", "E-2")] {
        let made = gql(&server, Some(&admin), create, json!({ "u": name, "e": number, "d": root }));
        assert!(made["errors"].is_null(), "{made}");
    }
    let colleague = first_sign_in(&server, "colleague", "Initial-Pass-9", "Tongshi-Pass-77");
    for _ in 0..5 {
        assert_eq!(code(&sign_in(&server, "target", "Wrong-Password-1")), "UNAUTHENTICATED");
    }
    let status = |token: &str| {
        let users = gql(&server, Some(token), "{ users { username status } }", json!({}));
        users["data"]["users"].as_array().unwrap().iter().find(|u| u["username"] == "target").unwrap()["status"].clone()
    };
    assert_eq!(status(&admin), "LOCKED");
    assert_eq!(status(&colleague), "ACTIVE");
}

/// What `customer(id)` answers is the whole profile: sent back to `updateCustomerProfile` with
/// one edit, it changes that edit alone (the company's size, website and credit code,
/// addresses and social handles were once unreadable, and such a round trip erased them).
#[test]
fn a_profile_read_and_sent_back_changes_only_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let profile = json!({
        "kind": "ORGANISATION", "name": "测试科技有限公司", "source": "REFERRAL", "segment": "smb",
        "company": { "industry": "software", "size": "50-199", "website": "https://test.example.com",
                     "creditCode": "91350100M000100Y43" },
        "phones": ["+8613912345678"], "emails": ["info@test.example.com"],
        "addresses": [{ "country": "CN", "region": "浙江", "city": "杭州", "street": "文一西路 969 号", "postalCode": "311121" }],
        "social": [{ "network": "wechat", "handle": "test_tech" }],
    });
    let registered = gql(&server, Some(&admin), REGISTER, json!({ "p": profile }));
    let id = registered["data"]["registerCustomer"]["id"].as_str().unwrap_or_else(|| panic!("{registered}")).to_owned();
    let read =
        "query($id: String!) { customer(id: $id) { kind name source segment tags phones emails idNumber birthDate \
                company { industry size website creditCode } \
                addresses { country region city street postalCode } social { network handle } } }";
    let before = gql(&server, Some(&admin), read, json!({ "id": id }))["data"]["customer"].clone();
    assert_eq!(before["company"], profile["company"], "{before}");
    assert_eq!(before["addresses"], profile["addresses"], "{before}");
    assert_eq!(before["social"], profile["social"], "{before}");
    let mut edited = before.clone();
    edited["segment"] = json!("key-account");
    let update = "mutation($id: String!, $p: ProfileInput!) { updateCustomerProfile(id: $id, profile: $p) { seq } }";
    let updated = gql(&server, Some(&admin), update, json!({ "id": id, "p": edited }));
    assert!(updated["errors"].is_null(), "{updated}");
    let after = gql(&server, Some(&admin), read, json!({ "id": id }))["data"]["customer"].clone();
    assert_eq!(after, edited, "only the segment changed");
    // A list shows the company as a single read does; addresses are in single reads only.
    let listed = gql(
        &server,
        Some(&admin),
        "{ customers(first: 5) { edges { node { industry company { size creditCode } addresses { city } } } } }",
        json!({}),
    );
    assert_eq!(
        listed["data"]["customers"]["edges"][0]["node"],
        json!({ "industry": "software", "company": { "size": "50-199", "creditCode": "91350100M000100Y43" }, "addresses": [] }),
        "{listed}"
    );

    // As of the registration's seq, the segment it had; past the log's head, or with both a
    // seq and a time, refused (not answered as the current state).
    let seq = registered["data"]["registerCustomer"]["seq"].as_u64().unwrap();
    let as_of = "query($id: String!, $s: Int, $t: String) { customer(id: $id, asOfSeq: $s, asOf: $t) { segment } }";
    let then = gql(&server, Some(&admin), as_of, json!({ "id": id, "s": seq }));
    assert_eq!(then["data"]["customer"]["segment"], "smb", "{then}");
    for (s, t, why) in [
        (json!(seq + 1_000_000), Value::Null, "past the log's head"),
        (json!(seq), json!("2026-01-01T00:00:00Z"), "not both"),
        (Value::Null, json!("2099-01-01T00:00:00Z"), "in the future"),
    ] {
        let refused = gql(&server, Some(&admin), as_of, json!({ "id": id, "s": s, "t": t }));
        assert_eq!(code(&refused), "VALIDATION", "{refused}");
        assert!(refused["errors"][0]["message"].as_str().unwrap().contains(why), "{refused}");
    }
    // A record's history as of a seq the log has not reached is refused alike.
    let history =
        "query($id: String!, $s: Int) { recordHistory(recordType: \"customer\", id: $id, asOfSeq: $s) { seq } }";
    let refused = gql(&server, Some(&admin), history, json!({ "id": id, "s": seq + 1_000_000 }));
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("past the log's head"), "{refused}");
}

/// Requests under one idempotency key sent at once: one is executed; copies of it answer its
/// result, and a different request under the key is told the key was used (never "exists
/// already", decided against the first's pending append).
#[test]
fn requests_sharing_a_key_at_once_get_the_first_result_or_key_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    for round in 0..3 {
        let key = format!("same-key-{round}");
        let answers: Vec<Value> = std::thread::scope(|scope| {
            let sends: Vec<_> = (0..8)
                .map(|i| {
                    let (server, admin, key) = (&server, &admin, &key);
                    scope.spawn(move || {
                        let name = if i % 2 == 0 { "同键甲" } else { "同键乙" };
                        let profile = json!({ "kind": "PERSON", "name": name, "source": "OTHER" });
                        gql(server, Some(admin), REGISTER, json!({ "p": profile, "k": key }))
                    })
                })
                .collect();
            sends.into_iter().map(|s| s.join().unwrap()).collect()
        });
        let ids: std::collections::BTreeSet<&str> =
            answers.iter().filter_map(|a| a["data"]["registerCustomer"]["id"].as_str()).collect();
        assert_eq!(ids.len(), 1, "one customer: {answers:?}");
        let fresh = answers.iter().filter(|a| a["data"]["registerCustomer"]["replayed"] == false).count();
        assert_eq!(fresh, 1, "{answers:?}");
        for answer in answers.iter().filter(|a| !a["errors"].is_null()) {
            assert_eq!(code(answer), "CONFLICT", "{answer}");
            assert!(answer["errors"][0]["message"].as_str().unwrap().contains("was used before"), "{answer}");
        }
    }
}

/// Administration cannot be given away for good: retiring the administrator role, taking
/// role.admin from it, revoking or deactivating the last administrator are refused (nothing
/// in the API could give the rights back); with a second administrator, the first's grant
/// may go.
#[test]
fn the_last_administrator_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let data = |answer: Value| {
        assert!(answer["errors"].is_null(), "{answer}");
        answer["data"].clone()
    };
    let roles = data(gql(&server, Some(&admin), "{ roles { id name permissions } }", json!({})));
    let administrator =
        roles["roles"].as_array().unwrap().iter().find(|r| r["name"] == "administrator").unwrap().clone();
    let me = data(gql(&server, Some(&admin), "{ me { id } }", json!({})))["me"]["id"].clone();
    let grants = data(gql(&server, Some(&admin), "{ grants { id user role } }", json!({})));
    let mine = grants["grants"].as_array().unwrap().iter().find(|g| g["user"] == me).unwrap()["id"].clone();
    let head =
        || data(gql(&server, Some(&admin), "{ verifyChain { headSeq } }", json!({})))["verifyChain"]["headSeq"].clone();
    let before = head();
    let fewer: Vec<&str> = administrator["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|p| *p != "role.admin")
        .collect();
    for (query, variables) in [
        ("mutation($r: String!) { retireRole(role: $r) { seq } }", json!({ "r": administrator["id"] })),
        (
            "mutation($r: String!, $p: [String!]!) { changeRolePermissions(role: $r, permissions: $p) { seq } }",
            json!({ "r": administrator["id"], "p": fewer }),
        ),
        ("mutation($g: String!) { revokeGrant(grant: $g) { seq } }", json!({ "g": mine })),
        ("mutation($u: String!) { setUserState(user: $u, state: DEACTIVATED) { seq } }", json!({ "u": me })),
    ] {
        let refused = gql(&server, Some(&admin), query, variables);
        assert_eq!(code(&refused), "CONFLICT", "{query}: {refused}");
    }
    assert_eq!(head(), before, "nothing written");
    // A second administrator: the first's grant may go.
    let root = data(gql(&server, Some(&admin), "{ departments { id } }", json!({})))["departments"][0]["id"].clone();
    let create = "mutation($d: String!) { createUser(username: \"second.admin\", employeeNo: \"A-2\", displayName: \"乙\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let second = data(gql(&server, Some(&admin), create, json!({ "d": root })))["createUser"]["id"].clone();
    let grant = "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }";
    data(gql(&server, Some(&admin), grant, json!({ "u": second, "r": administrator["id"] })));
    data(gql(&server, Some(&admin), "mutation($g: String!) { revokeGrant(grant: $g) { seq } }", json!({ "g": mine })));
}

/// Siblings are told apart by name (files and people name departments by it), and a role
/// grants something.
#[test]
fn sibling_departments_have_names_of_their_own_and_roles_grant_something() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let create = "mutation($n: String!, $p: String) { createDepartment(name: $n, parent: $p) { id } }";
    let made = |name: &str, parent: Value| gql(&server, Some(&admin), create, json!({ "n": name, "p": parent }));
    let root = made("Head Office", Value::Null)["data"]["createDepartment"]["id"].clone();
    assert!(made("Sales", root.clone())["errors"].is_null());
    let service = made("Service", root.clone())["data"]["createDepartment"]["id"].clone();
    let twin = made(" sales ", root.clone());
    assert_eq!(code(&twin), "VALIDATION", "{twin}");
    assert_eq!(twin["errors"][0]["extensions"]["fields"][0]["path"], "name", "{twin}");
    // Under another parent, the name is free.
    assert!(made("Sales", service.clone())["errors"].is_null());
    let rename = "mutation($id: String!, $n: String!) { renameDepartment(id: $id, name: $n) { seq } }";
    let renamed = gql(&server, Some(&admin), rename, json!({ "id": service, "n": "SALES" }));
    assert_eq!(code(&renamed), "VALIDATION", "{renamed}");
    let empty =
        gql(&server, Some(&admin), "mutation { defineRole(name: \"nothing\", permissions: []) { id } }", json!({}));
    assert_eq!(code(&empty), "VALIDATION", "{empty}");
}

/// A username and an employee number both sign in: neither may be another user's other name
/// (a username equal to someone's employee number took over their sign-in name).
#[test]
fn a_sign_in_name_is_never_another_users() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let root = gql(&server, Some(&admin), "{ departments { id } }", json!({}))["data"]["departments"][0]["id"].clone();
    let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let made = |u: &str, e: &str| gql(&server, Some(&admin), create, json!({ "u": u, "e": e, "d": root }));
    assert!(made("victim1", "E001")["errors"].is_null());
    for (u, e, field) in
        [("E001", "E003", "username"), ("e001", "E004", "username"), ("other1", "Victim1", "employeeNo")]
    {
        let refused = made(u, e);
        assert_eq!(code(&refused), "VALIDATION", "{refused}");
        assert_eq!(refused["errors"][0]["extensions"]["fields"][0]["path"], field, "{refused}");
    }
    // A taken employee number is refused on its own field.
    let taken = made("fresh1", "E001");
    assert_eq!(taken["errors"][0]["extensions"]["fields"][0]["path"], "employeeNo", "{taken}");
    // One's own two names may be the same.
    let same = made("e005", "E005");
    assert!(same["errors"].is_null(), "{same}");
    let users = gql(&server, Some(&admin), "{ users { username } }", json!({}));
    let names: Vec<&str> =
        users["data"]["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert!(!names.contains(&"e001") && !names.contains(&"other1"), "nothing created by a refusal: {names:?}");
    // Paths name the arguments as the request does: a user's profile fields are arguments
    // of their own; a customer's phones are the profile input's own field.
    let blank = made("blank1", "E006");
    let blank = blank["data"]["createUser"]["id"].clone();
    let update = "mutation($u: String!, $d: String!) { updateUserProfile(user: $u, displayName: \"甲\", department: $d, email: \"not-an-address\") { seq } }";
    let refused = gql(&server, Some(&admin), update, json!({ "u": blank, "d": root }));
    assert_eq!(refused["errors"][0]["extensions"]["fields"][0]["path"], "email", "{refused}");
    let refused = gql(
        &server,
        Some(&admin),
        REGISTER,
        json!({ "p": { "kind": "PERSON", "name": "乙", "source": "OTHER", "phones": ["123"] } }),
    );
    assert_eq!(refused["errors"][0]["extensions"]["fields"][0]["path"], "profile.phones[0]", "{refused}");
}

/// A wrong current password in `changePassword` is a failed sign-in: five in a row lock the
/// account and end the session that sent them (a stolen token buys no unlimited guesses).
#[test]
fn wrong_current_passwords_lock_the_account_and_end_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let change = "mutation($c: String!) { changePassword(current: $c, newPassword: \"Another-Pass-2026\") { token } }";
    for i in 0..5 {
        let answer = gql(&server, Some(&admin), change, json!({ "c": format!("Wrong-Guess-{i}") }));
        assert_eq!(code(&answer), "VALIDATION", "{answer}");
        assert_eq!(answer["errors"][0]["extensions"]["fields"][0]["path"], "current", "{answer}");
    }
    let after = gql(&server, Some(&admin), "{ me { username } }", json!({}));
    assert_eq!(code(&after), "UNAUTHENTICATED", "the session ended with the lock: {after}");
    let again = sign_in(&server, "admin", "Sesame-Changed-77");
    assert_eq!(code(&again), "UNAUTHENTICATED", "locked: {again}");
}

/// Wrong passwords and the right one sent at once: while the right one is checked, the
/// others may lock the account; it is then refused like any failure (an answer of its own
/// would tell that the password is right).
#[test]
fn the_right_password_racing_a_lockout_gets_the_answer_of_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..9)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let password = if i == 4 { ADMIN_PASSWORD.to_owned() } else { format!("Wrong-Password-{i}") };
                    sign_in(server, "admin", &password)
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for answer in &answers {
        let code = code(answer);
        assert!(answer["errors"].is_null() || code == "UNAUTHENTICATED" || code == "RATE_LIMITED", "{answer}");
    }
}

#[test]
fn guards_refuse_oversized_deep_wide_and_batched_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let huge = format!("{{\"query\":\"{{ me {{ username }} }}\",\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let (status, _) = http(&server.addr, "POST", "/graphql", Some(&admin), huge.as_bytes());
    assert_eq!(status, 413);
    let too_wide = gql(&server, Some(&admin), "{ customers(first: 101) { totalCount } }", json!({}));
    assert_eq!(code(&too_wide), "VALIDATION", "{too_wide}");
    let deep = format!("{{ me {}username{} }}", "{ ".repeat(20), " }".repeat(20));
    let answer = gql(&server, Some(&admin), &deep, json!({}));
    assert!(answer["errors"].is_array(), "{answer}");
    let costly = "{ a: customers(first: 100) { edges { node { id name phones emails tags segment source owner department status createdAt lastContact } } } b: customers(first: 100) { edges { node { id name phones emails tags segment source owner department status createdAt lastContact } } } c: customers(first: 100) { edges { node { id name phones emails tags segment source owner department status createdAt lastContact } } } d: customers(first: 100) { edges { node { id name phones emails tags segment source owner department status createdAt lastContact } } } }";
    let answer = gql(&server, Some(&admin), costly, json!({}));
    assert!(answer["errors"][0]["message"].as_str().unwrap_or("").contains("complex"), "{answer}");
    // A parse error does not send a hostile document back whole; a document past 128 KiB is
    // not parsed at all (before anything, the caller included, is looked at).
    let broken = gql(&server, None, &"{".repeat(5_000), json!({}));
    assert_eq!(code(&broken), "VALIDATION", "{broken}");
    assert!(broken["errors"][0]["message"].as_str().unwrap().len() < 1_100, "{broken}");
    let long = format!("{{ me {{ {} }} }}", "username ".repeat(20_000));
    let body = json!({ "query": long }).to_string();
    let (status, answer) = http(&server.addr, "POST", "/graphql", None, body.as_bytes());
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("send long values"), "{answer}");
    let (status, answer) = http(&server.addr, "POST", "/graphql", None, br#"{"variables":{}}"#);
    assert_eq!(status, 400, "a request without a query: {answer}");
    assert!(answer.contains("no query"), "{answer}");
    let batch = r#"[{"query":"{ me { username } }"},{"query":"{ me { username } }"}]"#;
    let (status, _) = http(&server.addr, "POST", "/graphql", Some(&admin), batch.as_bytes());
    assert_eq!(status, 400, "one operation per request");
    let (status, _) = http(&server.addr, "GET", "/graphql", None, b"");
    assert_eq!(status, 401, "GraphiQL is for administrators");
    let (status, page) = http(&server.addr, "GET", "/graphql", Some(&admin), b"");
    assert_eq!(status, 200);
    assert!(page.contains("graphiql"));
}

#[test]
fn the_checked_in_sdl_matches_the_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_oacis")).arg("schema").output().expect("run oacis schema");
    let sdl = String::from_utf8(out.stdout).expect("UTF-8");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    if std::env::var_os("OACIS_BLESS_SDL").is_some() {
        std::fs::write(&path, &sdl).expect("write schema.graphql");
    }
    let stored = std::fs::read_to_string(&path).expect("api/schema.graphql");
    assert!(
        stored == sdl,
        "the schema changed: review it, then run with OACIS_BLESS_SDL=1 to update api/schema.graphql"
    );
}

/// Finding a customer by a phone number tells whose the number is: the search is recorded in
/// the caller's access log as a read of that customer's personal data, even with no personal
/// field selected; a search by name is not.
#[test]
fn a_search_that_finds_a_customer_by_a_phone_is_recorded_as_a_read_of_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = first_sign_in(&server, "admin", ADMIN_PASSWORD, "Sesame-Changed-77");
    let profile = json!({ "kind": "PERSON", "name": "陈敏感", "source": "OTHER", "phones": ["+8613812345679"],
                          "idNumber": "11010519491231002X", "birthDate": "1949-12-31" });
    let id = gql(&server, Some(&admin), REGISTER, json!({ "p": profile }))["data"]["registerCustomer"]["id"].clone();
    let reads = || {
        let feed =
            gql(&server, Some(&admin), "{ events(kinds: [\"PersonalDataRead\"], first: 100) { payload } }", json!({}));
        feed["data"]["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{feed}"))
            .iter()
            .map(|e| e["payload"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let search = "query($t: String!) { customers(filter: {text: $t}) { edges { node { id name } } } }";
    let before = reads().len();
    let by_name = gql(&server, Some(&admin), search, json!({ "t": "陈敏" }));
    assert_eq!(by_name["data"]["customers"]["edges"][0]["node"]["id"], id, "{by_name}");
    assert_eq!(reads().len(), before, "a name is not personal data");
    let by_phone = gql(&server, Some(&admin), search, json!({ "t": "138 1234 5679" }));
    assert_eq!(by_phone["data"]["customers"]["edges"][0]["node"]["id"], id, "{by_phone}");
    let after = reads();
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert!(after.last().unwrap().contains(id.as_str().unwrap()), "{after:?}");
    // A list shows the identity number and birth date as a single read does (and records it).
    let listed = gql(&server, Some(&admin), "{ customers { edges { node { idNumber birthDate } } } }", json!({}));
    assert_eq!(
        listed["data"]["customers"]["edges"][0]["node"],
        json!({ "idNumber": "11010519491231002X", "birthDate": "1949-12-31" }),
        "{listed}"
    );
    assert_eq!(reads().len(), before + 2);
    // So does a registration warned of a duplicate by that phone, and an import (a dry run
    // too) that matches or warns by it.
    let twin = json!({ "kind": "PERSON", "name": "另一位", "source": "OTHER", "phones": ["+8613812345679"] });
    let warned = gql(
        &server,
        Some(&admin),
        REGISTER.replace("replayed", "replayed possibleDuplicates { customer fields }").as_str(),
        json!({ "p": twin }),
    );
    assert_eq!(warned["data"]["registerCustomer"]["possibleDuplicates"][0]["customer"], id, "{warned}");
    assert_eq!(reads().len(), before + 3);
    let import =
        "mutation($t: String!) { importCustomers(input: {text: $t, key: PHONE, dryRun: true}) { rows { outcome } } }";
    let matched = gql(&server, Some(&admin), import, json!({ "t": "phones,name\n+8613912345000,新客户\n" }));
    assert!(matched["errors"].is_null(), "{matched}");
    assert_eq!(reads().len(), before + 3, "a phone nobody has tells nothing");
    let matched = gql(&server, Some(&admin), import, json!({ "t": "phones,name\n+8613812345679,陈敏感\n" }));
    assert!(matched["errors"].is_null(), "{matched}");
    // Two customers have it now (the one registered despite the warning): the row is
    // refused as ambiguous, naming both, so both are read.
    let after = reads();
    assert_eq!(after.len(), before + 5, "{matched}");
    assert!(after.iter().rev().take(2).any(|r| r.contains(id.as_str().unwrap())), "{after:?}");
}
