//! A day in the office, as new users would live it: an administrator sets up departments,
//! users, a role and grants; a salesperson registers customers, logs visits, records
//! purchases, opens a case and a task for a colleague; the colleague works and closes them;
//! an analyst runs aggregates; an auditor reads histories, operations and sign-ins, walks the
//! event feed's hash chain and verifies it. Every answer is checked by its body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";

struct Office {
    server: Server,
}

impl Office {
    fn ask(&self, token: &str, query: &str, variables: Value) -> Value {
        let answer = self.server.gql(Some(token), query, variables);
        assert!(answer["errors"].is_null(), "{query}: {answer}");
        answer["data"].clone()
    }

    fn sign_in(&self, name: &str, password: &str, new: &str) -> String {
        self.server.first_sign_in(name, password, new)
    }
}

fn id(data: &Value, field: &str) -> String {
    data[field]["id"].as_str().unwrap_or_else(|| panic!("{data}")).to_owned()
}

#[test]
fn a_day_in_the_office() {
    let dir = tempfile::tempdir().unwrap();
    let office = Office {
        server: Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]),
    };
    let (status, body) = office.server.http("GET", "/readyz", None, b"");
    assert_eq!(status, 200, "{body}");
    let admin = office.sign_in("admin", PASSWORD, "Sesame-Changed-77");

    // Morning: the administrator sets up a sales department, people, a role and grants.
    let sales_dept = id(
        &office.ask(&admin, r#"mutation { createDepartment(name: "销售一部") { id } }"#, json!({})),
        "createDepartment",
    );
    let create = "mutation($u: String!, $e: String!, $n: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $n, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let li = id(
        &office.ask(&admin, create, json!({ "u": "li.na", "e": "E-2001", "n": "李娜", "d": sales_dept })),
        "createUser",
    );
    let wang = id(
        &office.ask(&admin, create, json!({ "u": "wang.fang", "e": "E-2002", "n": "王芳", "d": sales_dept })),
        "createUser",
    );
    let zhao = id(
        &office.ask(&admin, create, json!({ "u": "zhao.lei", "e": "E-2003", "n": "赵磊", "d": sales_dept })),
        "createUser",
    );
    let qian = id(
        &office.ask(&admin, create, json!({ "u": "qian.min", "e": "E-2004", "n": "钱敏", "d": sales_dept })),
        "createUser",
    );
    let coordinator = office.ask(
        &admin,
        r#"mutation { defineRole(name: "coordinator", permissions: ["case.write", "case.assign", "task.write", "task.assign", "customer.read"]) { id } }"#,
        json!({}),
    );
    let coordinator = id(&coordinator, "defineRole");
    let unknown = office.server.gql(
        Some(&admin),
        r#"mutation { defineRole(name: "x", permissions: ["customer.fly"]) { id } }"#,
        json!({}),
    );
    assert_eq!(code(&unknown), "VALIDATION");
    let taken = office.server.gql(
        Some(&admin),
        r#"mutation { defineRole(name: "Coordinator", permissions: []) { id } }"#,
        json!({}),
    );
    assert_eq!(code(&taken), "VALIDATION", "role names are unique, case-insensitively: {taken}");
    let roles: BTreeMap<String, String> = office.ask(&admin, "{ roles { id name } }", json!({}))["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()))
        .collect();
    let grant = "mutation($u: String!, $r: String!, $s: Scope!) { grantRole(user: $u, role: $r, scope: $s) { id } }";
    for (user, role, scope) in [
        (&li, roles["sales"].clone(), "DEPARTMENT"),
        (&li, coordinator.clone(), "DEPARTMENT"),
        (&wang, roles["service"].clone(), "DEPARTMENT"),
        (&zhao, roles["analyst"].clone(), "ALL"),
        (&qian, roles["auditor"].clone(), "ALL"),
    ] {
        office.ask(&admin, grant, json!({ "u": user, "r": role, "s": scope }));
    }
    let grants = office.ask(&admin, "{ grants { user role scope revoked } }", json!({}));
    assert_eq!(grants["grants"].as_array().unwrap().len(), 6, "the administrator's and five more");

    // The salesperson's day.
    let li_token = office.sign_in("li.na", "Initial-Pass-9", "Li-Na-Pass-2026");
    let register = "mutation($p: ProfileInput!, $r: Boolean) { registerCustomer(profile: $p, refuseDuplicates: $r) { id seq possibleDuplicates { customer fields } } }";
    let zhang = json!({ "kind": "PERSON", "name": "张伟", "source": "REFERRAL", "phones": ["139 1234 5678"], "emails": ["zhang.wei@example.com"], "segment": "key-account" });
    let zhang_id = id(&office.ask(&li_token, register, json!({ "p": zhang })), "registerCustomer");
    let acme = json!({ "kind": "ORGANISATION", "name": "Acme GmbH", "source": "EVENT", "company": { "industry": "制造" }, "phones": ["+49 30 1234567"] });
    office.ask(&li_token, register, json!({ "p": acme }));
    // The same person typed again, in another form of the same phone: a warning, or a refusal.
    let again =
        json!({ "kind": "PERSON", "name": "张伟 (重复)", "source": "WEBSITE", "phones": ["+86 139-1234-5678"] });
    let refused = office.server.gql(Some(&li_token), register, json!({ "p": again, "r": true }));
    assert_eq!(code(&refused), "CONFLICT", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains(&zhang_id));
    let warned = office.ask(&li_token, register, json!({ "p": again }));
    let duplicate_id = id(&warned, "registerCustomer");
    assert_eq!(
        warned["registerCustomer"]["possibleDuplicates"],
        json!([{ "customer": zhang_id, "fields": ["phone"] }])
    );
    let listed = office.ask(&li_token, "{ customers { totalCount } }", json!({}));
    assert_eq!(listed["customers"]["totalCount"], 3, "the refused registration wrote nothing");

    let visit = "mutation($c: String!) { logInteraction(customer: $c, channel: VISIT, direction: OUTBOUND, summary: \"上门拜访，演示新版本\") { seq } }";
    office.ask(&li_token, visit, json!({ "c": zhang_id }));
    let purchase = "mutation($c: String!) { recordPurchase(customer: $c, product: \"年度服务包\", quantity: 2, amountMinor: 259800, currency: \"CNY\", purchasedOn: \"2026-11-28\") { id seq } }";
    let bought = office.ask(&li_token, purchase, json!({ "c": zhang_id }));
    let purchase_id = id(&bought, "recordPurchase");
    let extra = office.ask(&li_token, purchase, json!({ "c": zhang_id }));
    let reverse = "mutation($c: String!, $p: String!) { reversePurchase(customer: $c, purchase: $p, reason: \"重复录入\") { seq } }";
    office.ask(&li_token, reverse, json!({ "c": zhang_id, "p": id(&extra, "recordPurchase") }));
    let open_case = "mutation($c: String!) { openCase(customer: $c, subject: \"发票抬头错误\", description: \"需要重开发票\", channel: EMAIL, priority: HIGH) { id } }";
    let case_id = id(&office.ask(&li_token, open_case, json!({ "c": zhang_id })), "openCase");
    office.ask(
        &li_token,
        "mutation($id: String!, $a: String!) { assignCase(id: $id, assignee: $a) { seq } }",
        json!({ "id": case_id, "a": wang }),
    );
    let task = "mutation($a: String!, $c: String!) { createTask(title: \"回访张伟\", priority: URGENT, assignee: $a, due: \"2026-12-01T09:00:00+08:00\", relatedCustomer: $c) { id } }";
    let task_id = id(&office.ask(&li_token, task, json!({ "a": wang, "c": zhang_id })), "createTask");

    // An edit made on stale data is refused with the current version.
    let version =
        office.ask(&li_token, "query($id: String!) { customer(id: $id) { version } }", json!({ "id": zhang_id }))
            ["customer"]["version"]
            .clone();
    assert_eq!(version, 5, "registered, visited, purchased twice, one reversed");
    let archive =
        "mutation($id: String!, $v: Int) { archiveCustomer(id: $id, reason: \"测试\", expectedVersion: $v) { seq } }";
    let stale = office.server.gql(Some(&li_token), archive, json!({ "id": zhang_id, "v": 2 }));
    assert_eq!(code(&stale), "CONFLICT");
    assert_eq!(stale["errors"][0]["extensions"]["version"], 5);

    // What was written can be read back.
    let notes = office.ask(&li_token, "query($c: String!) { interactions(customer: $c) { channel summary loggedBy } purchases(customer: $c) { id product amountMinor purchasedOn reversed reversalReason } }", json!({ "c": zhang_id }));
    assert_eq!(notes["interactions"][0]["summary"], "上门拜访，演示新版本");
    assert_eq!(notes["interactions"][0]["loggedBy"], li.as_str());
    let purchases = notes["purchases"].as_array().unwrap();
    assert_eq!(purchases.len(), 2);
    assert_eq!(
        (purchases[0]["id"].as_str(), purchases[0]["reversed"].as_bool()),
        (Some(purchase_id.as_str()), Some(false))
    );
    assert_eq!(purchases[1]["reversalReason"], "重复录入");

    // The colleague works the case and the task.
    let wang_token = office.sign_in("wang.fang", "Initial-Pass-9", "Wang-Fang-Pass-3");
    let mine =
        office.ask(&wang_token, "{ tasks { totalCount edges { node { id title status priority } } } }", json!({}));
    assert_eq!(mine["tasks"]["edges"][0]["node"]["id"], task_id.as_str());
    for step in ["startTask", "completeTask"] {
        office.ask(
            &wang_token,
            &format!("mutation($id: String!) {{ {step}(id: $id) {{ seq }} }}"),
            json!({ "id": task_id }),
        );
    }
    office.ask(
        &wang_token,
        "mutation($id: String!) { commentOnTask(id: $id, text: \"已回访，客户满意\") { seq } }",
        json!({ "id": task_id }),
    );
    for (step, args) in [
        ("respondToCase", ", message: \"已转财务处理\""),
        ("resolveCase", ", resolution: \"已重开发票\""),
        ("rateCase", ", score: 5, comment: \"很快\""),
        ("closeCase", ""),
    ] {
        office.ask(
            &wang_token,
            &format!("mutation($id: String!) {{ {step}(id: $id{args}) {{ seq }} }}"),
            json!({ "id": case_id }),
        );
    }
    let case = office.ask(
        &wang_token,
        "query($id: String!) { case(id: $id) { status satisfaction assignee firstResponseAt } }",
        json!({ "id": case_id }),
    );
    assert_eq!(case["case"]["status"], "CLOSED");
    assert_eq!(case["case"]["satisfaction"], 5);
    let case_notes =
        office.ask(&wang_token, "query($c: String!) { caseNotes(case: $c) { kind text } }", json!({ "c": case_id }));
    let kinds: Vec<&str> =
        case_notes["caseNotes"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["description", "response", "resolution", "rating"]);
    let task_notes = office.ask(
        &wang_token,
        "query($t: String!) { taskNotes(task: $t) { kind text author } }",
        json!({ "t": task_id }),
    );
    assert_eq!(task_notes["taskNotes"][0]["text"], "已回访，客户满意");
    assert_eq!(task_notes["taskNotes"][0]["author"], wang.as_str());
    let done = office.ask(&wang_token, "{ tasks(status: DONE) { totalCount } }", json!({}));
    assert_eq!(done["tasks"]["totalCount"], 1);
    // The service role reads customers masked and may not change them.
    let forbidden = office.server.gql(Some(&wang_token), visit, json!({ "c": zhang_id }));
    assert_eq!(code(&forbidden), "FORBIDDEN");

    // The analyst's figures.
    let zhao_token = office.sign_in("zhao.lei", "Initial-Pass-9", "Zhao-Lei-Pass-4");
    let figures = office.ask(
        &zhao_token,
        "{ analytics { customersBy(dimension: SOURCE) { key count } purchasesByMonth { key currency count amountMinor } cases { opened closed meanSatisfaction } taskCompletionRate valueTiers { key count } } }",
        json!({}),
    );
    let a = &figures["analytics"];
    let sources: BTreeMap<String, u64> = a["customersBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["key"].as_str().unwrap().to_owned(), b["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(sources.values().sum::<u64>(), 3);
    // Keys are the values of the SourceChannel enum, as a filter takes them.
    assert!(
        sources.keys().all(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')),
        "{sources:?}"
    );
    assert_eq!(
        a["purchasesByMonth"],
        // By the purchase's own date; the reversed one counts in its month and is taken off.
        json!([{ "key": "2026-11", "currency": "CNY", "count": 2, "amountMinor": 259800 }])
    );
    assert_eq!((a["cases"]["opened"].clone(), a["cases"]["closed"].clone()), (json!(1), json!(1)));
    assert_eq!(a["cases"]["meanSatisfaction"], 5.0);
    assert_eq!(a["taskCompletionRate"], 1.0);

    // The customer calls again: reopened, the case is unresolved and its rating no longer stands,
    // in the case's row and in the figures alike; when it was last resolved is kept.
    office.ask(
        &wang_token,
        "mutation($id: String!) { reopenCase(id: $id, reason: \"发票金额仍有误\") { seq } }",
        json!({ "id": case_id }),
    );
    let reopened = office.ask(
        &wang_token,
        "query($id: String!) { case(id: $id) { status satisfaction resolvedAt } }",
        json!({ "id": case_id }),
    );
    assert_eq!((&reopened["case"]["status"], &reopened["case"]["satisfaction"]), (&json!("IN_PROGRESS"), &json!(null)));
    assert!(reopened["case"]["resolvedAt"].is_string(), "{reopened}");
    let figures = office.ask(&zhao_token, "{ analytics { cases { opened closed meanSatisfaction } } }", json!({}));
    assert_eq!(figures["analytics"]["cases"], json!({ "opened": 1, "closed": 0, "meanSatisfaction": null }));

    // The administrator undoes a merge of the duplicate.
    office.ask(
        &admin,
        "mutation($d: String!, $s: String!) { mergeCustomers(duplicate: $d, survivor: $s) { seq } }",
        json!({ "d": duplicate_id, "s": zhang_id }),
    );
    let pairs = office.ask(&admin, "{ possibleDuplicates { totalCount } }", json!({}));
    assert_eq!(pairs["possibleDuplicates"]["totalCount"], 0, "a merged pair is no longer a candidate");
    office.ask(
        &admin,
        "mutation($d: String!) { unmergeCustomer(duplicate: $d) { seq } }",
        json!({ "d": duplicate_id }),
    );
    let pairs =
        office.ask(&admin, "{ possibleDuplicates { totalCount edges { node { first second fields } } } }", json!({}));
    assert_eq!(pairs["possibleDuplicates"]["totalCount"], 1, "{pairs}");

    // The auditor's reading.
    let qian_token = office.sign_in("qian.min", "Initial-Pass-9", "Qian-Min-Pass-5");
    let history = office.ask(&qian_token, "query($id: String!) { recordHistory(recordType: \"customer\", id: $id) { seq kind actor changes { field after personal } } }", json!({ "id": zhang_id }));
    let history = history["recordHistory"].as_array().unwrap();
    let kinds: Vec<&str> = history.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "CustomerRegistered",
            "InteractionLogged",
            "PurchaseRecorded",
            "PurchaseRecorded",
            "PurchaseReversed",
            "CustomerAbsorbed",
            "CustomerReleased"
        ]
    );
    assert_eq!(history[0]["actor"], li.as_str());
    let text = serde_json::to_string(history).unwrap();
    assert!(
        !text.contains("+8613912345678") && !text.contains("zhang.wei@example.com"),
        "the auditor may not see personal data: {text}"
    );
    // A colleague's privacy settings, each field's compared with that field's before.
    for (field, visibility) in [("EMAIL", "ONLY_ME"), ("PHONE", "DEPARTMENT"), ("EMAIL", "DEPARTMENT")] {
        office.ask(
            &wang_token,
            &format!("mutation {{ setPrivacy(field: {field}, visibility: {visibility}) {{ seq }} }}"),
            json!({}),
        );
    }
    let wang_history = office.ask(
        &qian_token,
        "query($id: String!) { recordHistory(recordType: \"user\", id: $id) { kind changes { field before after } } }",
        json!({ "id": wang }),
    );
    let privacy: Vec<&Value> = wang_history["recordHistory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "UserPrivacyChanged")
        .map(|h| &h["changes"])
        .collect();
    assert_eq!(privacy.len(), 3, "{wang_history}");
    assert_eq!(
        privacy[2],
        &json!([{ "field": "visibility", "before": "\"only_me\"", "after": "\"department\"" }]),
        "{wang_history}"
    );
    // A job title kept to oneself is masked in the history and the event feed too, as in
    // `users`: the auditor sees that it changed, not what it reads.
    let users = office.ask(&wang_token, "{ users { id department } }", json!({}));
    let department = users["users"].as_array().unwrap().iter().find(|u| u["id"] == wang).unwrap()["department"].clone();
    office.ask(
        &wang_token,
        "mutation($u: String!, $d: String!) { updateUserProfile(user: $u, displayName: \"王芳\", department: $d, position: \"秘密岗位\") { seq } }",
        json!({ "u": wang, "d": department }),
    );
    office.ask(&wang_token, "mutation { setPrivacy(field: POSITION, visibility: ONLY_ME) { seq } }", json!({}));
    let titled = office.ask(
        &qian_token,
        "query($id: String!) { recordHistory(recordType: \"user\", id: $id) { changes { field after } } }",
        json!({ "id": wang }),
    );
    let feed = office.ask(
        &qian_token,
        "query($s: [String!]) { events(streams: $s, first: 100) { payload } }",
        json!({ "s": [format!("user-{wang}")] }),
    );
    for shown in [titled.to_string(), feed.to_string()] {
        assert!(!shown.contains("秘密岗位"), "{shown}");
    }
    assert!(titled.to_string().contains("profile.position"), "{titled}");
    assert!(feed["events"].as_array().unwrap().len() >= 3, "{feed}");
    assert!(feed.to_string().contains("****"), "{feed}");
    let ops = office.ask(
        &qian_token,
        "query($u: String!) { operations(user: $u) { totalCount edges { node { kind } } } }",
        json!({ "u": li }),
    );
    assert!(ops["operations"]["totalCount"].as_u64().unwrap() >= 8, "{ops}");
    let sign_ins =
        office.ask(&qian_token, "query($u: String!) { signIns(user: $u) { succeeded client } }", json!({ "u": wang }));
    assert_eq!(sign_ins["signIns"][0]["succeeded"], true);
    let events = office.ask(
        &qian_token,
        "{ events(fromSeq: 1, first: 60) { seq stream kind hash prevHash payload } }",
        json!({}),
    );
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 60);
    assert_eq!(events[0]["prevHash"], "0".repeat(64));
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"], "the feed shows the chain");
        assert_eq!(pair[1]["seq"].as_u64(), pair[0]["seq"].as_u64().map(|s| s + 1));
    }
    let feed = serde_json::to_string(events).unwrap();
    assert!(!feed.contains("+8613912345678"), "personal parts of payloads are masked in the feed");
    assert!(!feed.contains("$argon2id$"), "password hashes never leave the server: {feed}");
    assert!(feed.contains("[redacted]"));
    let verified = office.ask(&qian_token, "{ verifyChain { ok records headSeq } securityAlerts { kind } }", json!({}));
    assert_eq!(verified["verifyChain"]["ok"], true);
    // The auditor may not change anything, nor open GraphiQL's introspection.
    let denied = office.server.gql(Some(&qian_token), archive, json!({ "id": zhang_id }));
    assert_eq!(code(&denied), "FORBIDDEN");
    // Introspection is refused in words (not answered with nulls), through a fragment too;
    // __typename is not introspection.
    for query in
        ["{ __schema { queryType { name } } }", "{ ...F } fragment F on Query { __type(name: \"Query\") { name } }"]
    {
        let introspect = office.server.gql(Some(&qian_token), query, json!({}));
        assert_eq!(code(&introspect), "FORBIDDEN", "{query}: {introspect}");
        assert!(introspect["data"].is_null(), "{introspect}");
    }
    let anonymous = office.server.gql(None, "{ __schema { queryType { name } } }", json!({}));
    assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    assert_eq!(office.ask(&qian_token, "{ __typename }", json!({}))["__typename"], "Query");
    let admin_introspects = office.ask(&admin, "{ __schema { queryType { name } } }", json!({}));
    assert_eq!(admin_introspects["__schema"]["queryType"]["name"], "Query");

    // Evening: the administrator revokes the colleague's sessions; her token stops working.
    office.ask(&admin, "mutation($u: String!) { revokeSessions(user: $u) { seq } }", json!({ "u": wang }));
    let gone = office.server.gql(Some(&wang_token), "{ me { username } }", json!({}));
    assert_eq!(code(&gone), "UNAUTHENTICATED");
}

/// Paging goes on from where the last page ended, whatever happens to that page's rows in
/// between: a row renamed or contacted after it was shown neither hides the rows after it nor
/// shows those before it again; and the most recently contacted come first, the never
/// contacted last.
#[test]
fn paging_goes_on_from_where_it_was_while_rows_change() {
    let dir = tempfile::tempdir().unwrap();
    let office = Office {
        server: Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]),
    };
    let admin = office.sign_in("admin", PASSWORD, "Sesame-Changed-77");
    let register =
        "mutation($n: String!) { registerCustomer(profile: {kind: PERSON, name: $n, source: OTHER}) { id } }";
    let ids: Vec<String> = (0..24)
        .map(|i| id(&office.ask(&admin, register, json!({ "n": format!("客户{i:02}") })), "registerCustomer"))
        .collect();
    let contact = "mutation($c: String!, $at: String!) { logInteraction(customer: $c, channel: CALL, direction: OUTBOUND, summary: \"回访\", occurredAt: $at) { seq } }";
    for (i, customer) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        office.ask(&admin, contact, json!({ "c": customer, "at": format!("2026-11-{:02}T09:00:00+08:00", 1 + i) }));
    }
    let page = "query($o: CustomerOrder!, $a: String) { customers(orderBy: $o, first: 5, after: $a) { totalCount edges { cursor node { id name lastContact } } pageInfo { endCursor hasNextPage } } }";
    let walk = |order: &str, change: &dyn Fn(&str)| {
        let (mut seen, mut after) = (Vec::<Value>::new(), Value::Null);
        loop {
            let answer = office.ask(&admin, page, json!({ "o": order, "a": after }));
            let connection = &answer["customers"];
            seen.extend(connection["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()));
            if connection["pageInfo"]["hasNextPage"] != true {
                return seen;
            }
            after = connection["pageInfo"]["endCursor"].clone();
            // The page's last row changes before the next page is asked for.
            change(seen.last().unwrap()["id"].as_str().unwrap());
        }
    };
    let unique = |seen: &[Value]| seen.iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();

    // `first: 0` answers the count alone, and whether any row follows.
    let counted = office.ask(&admin, "{ customers(first: 0) { totalCount edges { node { id } } pageInfo { hasNextPage } } tasks(first: 0) { totalCount edges { node { id } } } }", json!({}));
    assert_eq!(
        counted,
        json!({ "customers": { "totalCount": 24, "edges": [], "pageInfo": { "hasNextPage": true } },
                "tasks": { "totalCount": 0, "edges": [] } })
    );
    let newest = walk("LAST_CONTACT_DESC", &|_| {});
    let contacted: Vec<bool> = newest.iter().map(|n| n["lastContact"].is_string()).collect();
    assert_eq!(contacted, [vec![true; 12], vec![false; 12]].concat(), "never contacted last: {newest:?}");
    assert_eq!(newest[0]["name"], "客户22", "the most recent contact first");

    let update = "mutation($id: String!, $n: String!) { updateCustomerProfile(id: $id, profile: {kind: PERSON, name: $n, source: OTHER}) { seq } }";
    let renamed = walk("NAME_ASC", &|last| {
        // Ahead of the place the walk has reached: not shown again.
        office.ask(&admin, update, json!({ "id": last, "n": format!("一{last}") }));
    });
    let mut by_name = unique(&renamed);
    assert_eq!(by_name.len(), 24, "{renamed:?}");
    by_name.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(by_name, all, "each customer once");

    // Contacted now, a row moves past the place reached, and comes again there; no other
    // row is shown twice or left out.
    let now = "2026-11-30T09:00:00+08:00";
    let moved = std::cell::RefCell::new(Vec::new());
    let recontacted = walk("LAST_CONTACT_ASC", &|last| {
        office.ask(&admin, contact, json!({ "c": last, "at": now }));
        moved.borrow_mut().push(last.to_owned());
    });
    let mut by_contact = unique(&recontacted);
    by_contact.sort();
    let mut twice: Vec<String> = by_contact.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect();
    by_contact.dedup();
    assert_eq!(by_contact, all, "each customer shown: {recontacted:?}");
    let mut moved = moved.into_inner();
    moved.sort();
    twice.retain(|id| !moved.contains(id));
    assert!(twice.is_empty() && recontacted.len() <= 24 + moved.len(), "{recontacted:?}");
}
