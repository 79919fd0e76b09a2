//! Approvals over GraphQL, as an office runs them: an administrator sets a department's
//! leader, a finance role and a reimbursement definition; a salesperson's ¥6,000 claim goes
//! to the manager then finance while ¥4,000 skips finance; lists and timelines answer each
//! person; two approvers of an any-one node race and one gets CONFLICT; and every refusal is
//! typed (FORBIDDEN, NOT_FOUND, RATE_LIMITED, VALIDATION) with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";

struct Office {
    server: Server,
    /// The data folder, removed after the server (fields drop in order).
    dir: tempfile::TempDir,
}

impl Office {
    /// A server on a fresh data folder, and the administrator's token.
    fn start() -> (Office, String) {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
        let admin = server.first_sign_in("admin", PASSWORD, "Sesame-Changed-77");
        (Office { server, dir }, admin)
    }

    /// A new department (under `parent`), by id.
    fn department(&self, admin: &str, name: &str, parent: Option<&str>) -> String {
        let create = "mutation($n: String!, $p: String) { createDepartment(name: $n, parent: $p) { id } }";
        self.id(admin, create, json!({ "n": name, "p": parent }))
    }

    /// Makes `leader` the leader of `department`.
    fn lead(&self, admin: &str, department: &str, leader: &str) {
        let set = "mutation($d: String!, $l: String) { setDepartmentLeader(id: $d, leader: $l) { events } }";
        self.ask(admin, set, json!({ "d": department, "l": leader }));
    }

    /// Publishes a definition's first version, by id.
    fn publish(&self, admin: &str, body: Value) -> String {
        self.id(admin, "mutation($b: JSON!) { publishApprovalDefinition(definition: $b) { id } }", json!({ "b": body }))
    }

    fn ask(&self, token: &str, query: &str, variables: Value) -> Value {
        let answer = self.server.gql(Some(token), query, variables);
        assert!(answer["errors"].is_null(), "{query}: {answer}");
        answer["data"].clone()
    }

    fn id(&self, token: &str, query: &str, variables: Value) -> String {
        let data = self.ask(token, query, variables);
        let (_, result) = data.as_object().unwrap().iter().next().unwrap();
        result["id"].as_str().unwrap().to_owned()
    }

    fn user(&self, admin: &str, name: &str, no: &str, department: &str) -> (String, String) {
        let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
        let id = self.id(admin, create, json!({ "u": name, "e": no, "d": department }));
        let token = self.server.first_sign_in(name, "Initial-Pass-9", "Changed-Pass-77");
        (id, token)
    }

    fn inbox(&self, token: &str) -> Value {
        self.ask(
            token,
            "{ approvals(list: INBOX) { totalCount edges { node { id status myTasks currentNode } } } }",
            json!({}),
        )["approvals"]
            .clone()
    }

    fn approval(&self, token: &str, id: &str) -> Value {
        self.ask(
            token,
            "query($id: String!) { approval(id: $id) { id name status route currentNode formHash definitionVersion definitionHash submitter tasks { number node assignee status } timeline { seq kind actor detail } } }",
            json!({ "id": id }),
        )["approval"]
            .clone()
    }

    fn approve(&self, token: &str, id: &str, task: u64, comment: &str) -> Value {
        self.server.gql(
            Some(token),
            "mutation($id: String!, $t: Int!, $c: String) { approveApprovalTask(id: $id, task: $t, comment: $c) { id seq events } }",
            json!({ "id": id, "t": task, "c": comment }),
        )
    }
}

fn reimbursement(finance_role: &str) -> Value {
    json!({
        "name": "费用报销",
        "form": [
            { "name": "amount", "label": "金额", "type": "money", "required": true },
            { "name": "reason", "label": "事由", "type": "text", "max": 200, "required": true }
        ],
        "nodes": [
            { "type": "approval", "id": "manager", "name": "部门经理", "approvers": { "kind": "leader", "level": 1 }, "mode": { "kind": "any" } },
            { "type": "condition", "id": "big", "name": "大于5000元", "default": [], "branches": [{
                "when": { "and": true, "groups": [{ "and": true, "rules": [{ "field": "amount", "op": "gt", "value": 500000 }] }] },
                "nodes": [{ "type": "approval", "id": "finance", "name": "财务", "approvers": { "kind": "role", "role": finance_role }, "mode": { "kind": "any" } }]
            }]}
        ]
    })
}

/// 2026's National Day as a calendar's `days`: 1-7 October off, Saturday 10 October worked.
fn national_day() -> Value {
    let mut days: Vec<Value> =
        (1..=7).map(|d| json!({ "date": format!("2026-10-0{d}"), "off": true, "name": "国庆节" })).collect();
    days.push(json!({ "date": "2026-10-10", "off": false, "name": "国庆节调休" }));
    Value::Array(days)
}

const SUBMIT: &str = "mutation($d: String!, $f: JSON!) { submitApproval(definition: $d, form: $f) { id seq events } }";

#[test]
fn reimbursements_route_by_amount_and_every_refusal_is_typed() {
    let (office, admin) = Office::start();
    let sales = office.department(&admin, "销售一部", None);
    let (_li_id, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (wang_id, wang) = office.user(&admin, "wang.fang", "E-2", &sales);
    let (zhao_id, zhao) = office.user(&admin, "zhao.lei", "E-3", &sales);
    let (_qian_id, qian) = office.user(&admin, "qian.min", "E-4", &sales);
    office.lead(&admin, &sales, &wang_id);
    let leader = office.ask(&admin, "{ departments { id leader } }", json!({}));
    assert!(leader["departments"].as_array().unwrap().iter().any(|d| d["id"] == sales && d["leader"] == wang_id));
    let finance =
        office.id(&admin, r#"mutation { defineRole(name: "finance", permissions: ["task.read"]) { id } }"#, json!({}));
    office.ask(
        &admin,
        "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: OWN) { id } }",
        json!({ "u": zhao_id, "r": finance }),
    );

    // Only holders of approval.define publish; a definition with an unknown field in a
    // condition is refused by field.
    let publish = "mutation($b: JSON!) { publishApprovalDefinition(definition: $b) { id version events } }";
    let refused = office.server.gql(Some(&li), publish, json!({ "b": reimbursement(&finance) }));
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    let mut broken = reimbursement(&finance);
    broken["nodes"][1]["branches"][0]["when"]["groups"][0]["rules"][0]["field"] = json!("amout");
    let refused = office.server.gql(Some(&admin), publish, json!({ "b": broken }));
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    assert!(refused.to_string().contains("nodes[1].branches[0].when.groups[0].rules[0]"), "{refused}");
    // A shape error names where it is.
    let mut shapeless = reimbursement(&finance);
    shapeless["nodes"][0]["mode"] = json!({ "kind": "all" });
    let refused = office.server.gql(Some(&admin), publish, json!({ "b": shapeless }));
    assert_eq!(refused["errors"][0]["extensions"]["fields"][0]["path"], "definition.nodes[0]", "{refused}");
    assert!(refused.to_string().contains("pass_percent"), "{refused}");
    let definition = office.id(&admin, publish, json!({ "b": reimbursement(&finance) }));
    let listed = office.ask(&li, "{ approvalDefinitions { id version name hash } }", json!({}));
    assert_eq!(listed["approvalDefinitions"][0]["version"], 1);
    assert_eq!(listed["approvalDefinitions"][0]["name"], "费用报销");

    // A form with problems gets every field error at once, and nothing is written.
    let bad =
        office.server.gql(Some(&li), SUBMIT, json!({ "d": definition, "f": { "amount": 12.5, "colour": "red" } }));
    assert_eq!(code(&bad), "VALIDATION", "{bad}");
    let fields: Vec<&str> = bad["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["form.colour", "form.amount", "form.reason"]);
    assert_eq!(office.inbox(&wang)["totalCount"], 0);

    // ¥6,000: the manager, then finance.
    let big = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 600_000, "reason": "客户拜访差旅" } }));
    let inbox = office.inbox(&wang);
    assert_eq!(inbox["totalCount"], 1, "{inbox}");
    assert_eq!(inbox["edges"][0]["node"]["currentNode"], "manager");
    let task = inbox["edges"][0]["node"]["myTasks"][0].as_u64().unwrap();
    // Someone else's task: FORBIDDEN to a participant (the submitter); to those with no part
    // in it yet (finance before its node, a colleague) the approval does not exist.
    assert_eq!(code(&office.approve(&li, &big, task, "自己批")), "FORBIDDEN");
    assert_eq!(code(&office.approve(&zhao, &big, task, "抢先")), "NOT_FOUND");
    assert_eq!(code(&office.approve(&qian, &big, task, "抢先")), "NOT_FOUND");
    let hidden =
        office.server.gql(Some(&qian), "query($id: String!) { approval(id: $id) { id } }", json!({ "id": big }));
    assert_eq!(code(&hidden), "NOT_FOUND");
    // The submitter urges once; again at once is RATE_LIMITED.
    let urge = "mutation($id: String!) { urgeApproval(id: $id) { events } }";
    assert!(office.server.gql(Some(&li), urge, json!({ "id": big }))["errors"].is_null());
    assert_eq!(code(&office.server.gql(Some(&li), urge, json!({ "id": big }))), "RATE_LIMITED");

    let approved = office.approve(&wang, &big, task, "同意");
    assert!(approved["errors"].is_null(), "{approved}");
    assert_eq!(office.inbox(&wang)["totalCount"], 0);
    let inbox = office.inbox(&zhao);
    assert_eq!(inbox["edges"][0]["node"]["currentNode"], "finance");
    let task = inbox["edges"][0]["node"]["myTasks"][0].as_u64().unwrap();
    assert!(office.approve(&zhao, &big, task, "财务已核")["errors"].is_null());
    let shown = office.approval(&li, &big);
    assert_eq!(shown["status"], "APPROVED");
    assert_eq!(shown["route"], json!(["manager", "finance"]));
    assert_eq!(shown["definitionVersion"], 1);
    assert_eq!(shown["formHash"].as_str().unwrap().len(), 64);
    let decisions: Vec<(String, String)> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ApprovalTaskApproved")
        .map(|e| (e["detail"]["by"].as_str().unwrap().to_owned(), e["detail"]["comment"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(decisions, [(wang_id.clone(), "同意".to_owned()), (zhao_id.clone(), "财务已核".to_owned())]);
    let done = office.ask(&wang, "{ approvals(list: DONE) { totalCount } }", json!({}));
    let lost =
        office.server.gql(Some(&wang), "{ approvals(list: DONE, after: \"garbage\") { totalCount } }", json!({}));
    assert_eq!(code(&lost), "VALIDATION", "an unknown cursor is refused, not read as the start: {lost}");
    assert_eq!(done["approvals"]["totalCount"], 1);

    // ¥4,000 skips finance.
    let small = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 400_000, "reason": "办公用品" } }));
    let task = office.inbox(&wang)["edges"][0]["node"]["myTasks"][0].as_u64().unwrap();
    assert!(office.approve(&wang, &small, task, "同意")["errors"].is_null());
    let shown = office.approval(&li, &small);
    assert_eq!((shown["status"].as_str(), shown["route"].clone()), (Some("APPROVED"), json!(["manager"])));
    assert_eq!(office.inbox(&zhao)["totalCount"], 0);
    let submitted = office.ask(&li, "{ approvals(list: SUBMITTED, status: APPROVED) { totalCount } }", json!({}));
    assert_eq!(submitted["approvals"]["totalCount"], 2);
    // The administrator audits every approval; the salesperson may not list them all.
    let all = office.ask(&admin, "{ approvals(list: ALL) { totalCount } }", json!({}));
    assert_eq!(all["approvals"]["totalCount"], 2);
    let refused = office.server.gql(Some(&qian), "{ approvals(list: ALL) { totalCount } }", json!({}));
    assert_eq!(code(&refused), "FORBIDDEN");
}

#[test]
fn of_two_any_one_approvers_acting_at_once_one_decides_and_the_other_gets_conflict() {
    let (office, admin) = Office::start();
    let sales = office.department(&admin, "采购部", None);
    let (_, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (a_id, a) = office.user(&admin, "buyer.a", "E-2", &sales);
    let (b_id, b) = office.user(&admin, "buyer.b", "E-3", &sales);
    let body = json!({
        "name": "采购",
        "form": [{ "name": "amount", "label": "金额", "type": "money", "required": true }],
        "nodes": [{ "type": "approval", "id": "buyers", "name": "采购审批", "approvers": { "kind": "users", "users": [a_id, b_id] }, "mode": { "kind": "any" } }]
    });
    let definition = office.publish(&admin, body);
    for round in 0..3 {
        let id = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 10_000 + round } }));
        let ta = office.approval(&a, &id)["tasks"].as_array().unwrap().iter().find(|t| t["assignee"] == a_id).unwrap()
            ["number"]
            .as_u64()
            .unwrap();
        let tb = office.approval(&b, &id)["tasks"].as_array().unwrap().iter().find(|t| t["assignee"] == b_id).unwrap()
            ["number"]
            .as_u64()
            .unwrap();
        let reject = "mutation($id: String!, $t: Int!) { rejectApprovalTask(id: $id, task: $t, comment: \"不同意\") { events } }";
        let (first, second) = std::thread::scope(|s| {
            let one = s.spawn(|| office.approve(&a, &id, ta, "同意"));
            let two = s.spawn(|| office.server.gql(Some(&b), reject, json!({ "id": id, "t": tb })));
            (one.join().unwrap(), two.join().unwrap())
        });
        let codes = [first["errors"].is_null(), second["errors"].is_null()];
        assert_eq!(codes.iter().filter(|ok| **ok).count(), 1, "{first} / {second}");
        let loser = if codes[0] { &second } else { &first };
        assert_eq!(code(loser), "CONFLICT", "{loser}");
        let shown = office.approval(&li, &id);
        let expected = if codes[0] { "APPROVED" } else { "REJECTED" };
        assert_eq!(shown["status"], expected);
        let decided = shown["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "ApprovalTaskApproved" || e["kind"] == "ApprovalTaskRejected")
            .count();
        assert_eq!(decided, 1, "{shown}");
    }
}

#[derive(clap::Parser)]
struct Settings {
    #[command(flatten)]
    serve: oacis_api::server::ServeArgs,
}

/// Beijing local time (UTC+8) as UTC microseconds.
fn beijing(date: &str, hour: i64) -> i64 {
    let days = oacis_domain::ids::Date::parse(date).unwrap().days();
    (days * 24 + hour - 8) * 3_600_000_000
}

#[test]
fn a_task_due_in_one_working_day_from_the_friday_before_an_adjusted_saturday_goes_to_the_leader_that_saturday() {
    use clap::Parser as _;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let now = Arc::new(AtomicI64::new(beijing("2026-10-09", 15)));
    let clock = {
        let now = now.clone();
        Arc::new(move || oacis_domain::ids::Timestamp(now.load(Ordering::SeqCst)))
    };
    // Sessions that outlive the simulated day between submission and due time.
    let argv = [
        "oacis",
        "--data",
        data_dir.to_str().unwrap(),
        "--admin-password",
        PASSWORD,
        "--session-idle-minutes",
        "10000",
        "--session-max-hours",
        "1000",
    ];
    let app = runtime
        .block_on(oacis_api::server::App::open_with_clock(Settings::parse_from(argv).serve, Some(clock)))
        .unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = app.clone();
    runtime.spawn(async move { served.serve_on(listener).await });
    let ask = |token: &str, query: &str, variables: Value| {
        let answer = oacis_tests::gql(&addr, Some(token), query, variables);
        assert!(answer["errors"].is_null(), "{query}: {answer}");
        answer["data"].clone()
    };
    let first = |data: Value| data.as_object().unwrap().values().next().unwrap()["id"].as_str().unwrap().to_owned();
    let admin = oacis_tests::first_sign_in(&addr, "admin", PASSWORD, "Sesame-Changed-77");
    let top = first(ask(&admin, r#"mutation { createDepartment(name: "华东总部") { id } }"#, json!({})));
    let office = first(ask(
        &admin,
        "mutation($p: String) { createDepartment(name: \"行政部\", parent: $p) { id } }",
        json!({ "p": top }),
    ));
    let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let mut people = Vec::new();
    for (name, no, department) in [("clerk", "E-1", &office), ("head", "E-2", &office), ("director", "E-3", &top)] {
        let id = first(ask(&admin, create, json!({ "u": name, "e": no, "d": department })));
        let token = oacis_tests::first_sign_in(&addr, name, "Initial-Pass-9", "Changed-Pass-77");
        people.push((id, token));
    }
    let [(_, clerk), (head_id, _), (director_id, director)] = people.try_into().unwrap();
    let leader = "mutation($d: String!, $l: String) { setDepartmentLeader(id: $d, leader: $l) { events } }";
    ask(&admin, leader, json!({ "d": office, "l": head_id }));
    ask(&admin, leader, json!({ "d": top, "l": director_id }));

    // 2026's National Day: 1-7 October off, Saturday 10 October worked.
    let days = national_day();
    let publish = "mutation($d: JSON!) { publishWorkingCalendar(year: 2026, days: $d, papers: [\"国务院办公厅通知\"]) { events } }";
    ask(&admin, publish, json!({ "d": days }));
    let refused = oacis_tests::gql(&addr, Some(&clerk), publish, json!({ "d": days }));
    assert_eq!(code(&refused), "FORBIDDEN");
    let body = json!({
        "name": "用章申请",
        "form": [{ "name": "purpose", "label": "用途", "type": "text", "max": 100, "required": true }],
        "nodes": [{ "type": "approval", "id": "head", "name": "部门负责人", "approvers": { "kind": "leader", "level": 1 },
                    "mode": { "kind": "any" }, "due": { "working_days": 1, "on_due": "transfer_to_leader" } }]
    });
    let definition = first(ask(
        &admin,
        "mutation($b: JSON!) { publishApprovalDefinition(definition: $b) { id } }",
        json!({ "b": body }),
    ));

    let mut feed = oacis_tests::Subscriber::connect(&addr, Some(&director)).unwrap();
    feed.subscribe("n", "subscription { notifications { kind record detail } }", json!({}));
    let waited = std::time::Instant::now();
    while app.state.live.feeds_open() < 1 {
        assert!(waited.elapsed().as_secs() < 20, "the subscription never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let id = first(ask(&clerk, SUBMIT, json!({ "d": definition, "f": { "purpose": "合同盖章" } })));
    let task = "query($id: String!) { approval(id: $id) { tasks { number assignee due timedOut } timeline { kind } } }";
    let shown = ask(&clerk, task, json!({ "id": id }));
    assert_eq!(shown["approval"]["tasks"][0]["assignee"], head_id.as_str());
    assert_eq!(
        shown["approval"]["tasks"][0]["due"], "2026-10-10T07:00:00.000000Z",
        "15:00 in Beijing on the worked Saturday"
    );

    // An hour before, nothing; at the due time the timer hands the task to the director.
    now.store(beijing("2026-10-10", 14), Ordering::SeqCst);
    app.state.live.clock_moved();
    now.store(beijing("2026-10-10", 15), Ordering::SeqCst);
    app.state.live.clock_moved();
    let note = loop {
        let message = feed.receive();
        if message["type"] == "next" {
            assert!(message["payload"]["errors"].is_null(), "{message}");
            break message["payload"]["data"]["notifications"].clone();
        }
    };
    assert_eq!((note["kind"].as_str(), note["record"].as_str()), (Some("approval_task"), Some(id.as_str())), "{note}");
    let shown = ask(&director, task, json!({ "id": id }));
    assert_eq!(shown["approval"]["tasks"][0]["assignee"], director_id.as_str());
    assert_eq!(shown["approval"]["tasks"][0]["timedOut"], true);
    let kinds: Vec<&str> =
        shown["approval"]["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "ApprovalTaskTimedOut").count(), 1, "{kinds:?}");
    runtime.block_on(async { app.state.live.stop() });
}

/// The task number `token`'s holder can act on in approval `id`.
fn my_task(office: &Office, token: &str, id: &str) -> u64 {
    let shown = office.ask(token, "query($id: String!) { approval(id: $id) { myTasks } }", json!({ "id": id }));
    shown["approval"]["myTasks"][0].as_u64().unwrap_or_else(|| panic!("no task of mine: {shown}"))
}

#[test]
fn pinning_signers_withdrawal_return_hidden_fields_and_self_approval_over_graphql() {
    let (office, admin) = Office::start();
    let head = office.department(&admin, "集团总部", None);
    let sales = office.department(&admin, "销售部", Some(&head));
    let (_, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (wang_id, wang) = office.user(&admin, "wang.fang", "E-2", &sales);
    let (zhao_id, zhao) = office.user(&admin, "zhao.lei", "E-3", &sales);
    let (signer_id, signer) = office.user(&admin, "sun.li", "E-4", &sales);
    let (boss_id, boss) = office.user(&admin, "zhou.zong", "E-5", &head);
    office.lead(&admin, &sales, &wang_id);
    office.lead(&admin, &head, &boss_id);
    let finance =
        office.id(&admin, r#"mutation { defineRole(name: "finance", permissions: ["task.read"]) { id } }"#, json!({}));
    office.ask(
        &admin,
        "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: OWN) { id } }",
        json!({ "u": zhao_id, "r": finance }),
    );
    let mut v1 = reimbursement(&finance);
    v1["nodes"][0]["fields"] = json!({ "amount": "write", "reason": "hidden" });
    let publish =
        "mutation($id: String, $b: JSON!) { publishApprovalDefinition(id: $id, definition: $b) { id version events } }";
    let definition = office.id(&admin, publish, json!({ "id": null, "b": v1 }));
    let show = "query($id: String!) { approval(id: $id) { status route definitionVersion formHash form currentNode tasks { number assignee status sign } timeline { kind detail } } }";
    let shown = |token: &str, id: &str| office.ask(token, show, json!({ "id": id }))["approval"].clone();

    // Pinning: v2 is published while X runs; X finishes on v1, Y starts on v2.
    let x = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 600_000, "reason": "差旅" } }));
    let mut v2 = v1.clone();
    v2["nodes"].as_array_mut().unwrap().push(json!({ "type": "approval", "id": "ceo", "name": "总经理", "approvers": { "kind": "users", "users": [boss_id] }, "mode": { "kind": "any" } }));
    let published = office.ask(&admin, publish, json!({ "id": definition, "b": v2 }));
    assert_eq!(published["publishApprovalDefinition"]["version"], 2, "{published}");
    // The manager does not see the hidden reason, in the form or in the timeline.
    let seen = shown(&wang, &x);
    assert_eq!(seen["form"], json!({ "amount": 600_000 }));
    assert!(!seen["timeline"].to_string().contains("差旅"), "{seen}");
    assert_eq!(shown(&li, &x)["form"]["reason"], "差旅");
    // Nor in the log read as an audit trail, though he may audit it; an auditor who approves
    // nothing of it sees the whole form.
    let auditing = office.id(
        &admin,
        r#"mutation { defineRole(name: "auditing", permissions: ["audit.read"]) { id } }"#,
        json!({}),
    );
    office.ask(
        &admin,
        "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }",
        json!({ "u": wang_id, "r": auditing }),
    );
    let submitted = r#"{ events(kinds: ["ApprovalSubmitted"], first: 100) { stream payload } }"#;
    let of_x = |token: &str| {
        let answer = office.ask(token, submitted, json!({}));
        let stream = format!("approval-{x}");
        answer["events"].as_array().unwrap().iter().find(|e| e["stream"] == stream.as_str()).unwrap()["payload"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let to_him = of_x(&wang);
    assert!(!to_him.contains("差旅") && to_him.contains("600000"), "{to_him}");
    assert!(to_him.contains(r#""form_hash":"""#), "{to_him}");
    assert!(of_x(&admin).contains("差旅"));
    assert!(office.approve(&wang, &x, my_task(&office, &wang, &x), "同意")["errors"].is_null());
    assert!(office.approve(&zhao, &x, my_task(&office, &zhao, &x), "同意")["errors"].is_null());
    let seen = shown(&li, &x);
    assert_eq!((seen["status"].as_str(), seen["definitionVersion"].as_u64()), (Some("APPROVED"), Some(1)));
    assert_eq!(seen["route"], json!(["manager", "finance"]));

    // 前加签 on Y (v2): the manager waits for the signer; an edit of a writable field changes the hash.
    let y = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 600_000, "reason": "采购" } }));
    let seen = shown(&li, &y);
    assert_eq!(
        (seen["route"].clone(), seen["definitionVersion"].as_u64()),
        (json!(["manager", "finance", "ceo"]), Some(2))
    );
    let first_hash = seen["formHash"].clone();
    let add = "mutation($id: String!, $t: Int!, $u: [String!]!) { addApprovalSigners(id: $id, task: $t, kind: BEFORE, users: $u) { events } }";
    let manager_task = my_task(&office, &wang, &y);
    office.ask(&wang, add, json!({ "id": y, "t": manager_task, "u": [signer_id] }));
    let statuses: Vec<(String, String)> = shown(&li, &y)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["assignee"].as_str().unwrap().to_owned(), t["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(statuses, [(wang_id.clone(), "WAITING".to_owned()), (signer_id.clone(), "RUNNING".to_owned())]);
    assert_eq!(office.inbox(&wang)["totalCount"], 0, "a waiting task is not on the to-do list");
    assert!(office.approve(&signer, &y, my_task(&office, &signer, &y), "可以")["errors"].is_null());
    let approve_edit =
        "mutation($id: String!, $t: Int!, $e: JSON) { approveApprovalTask(id: $id, task: $t, edits: $e) { events } }";
    let hidden_edit =
        office.server.gql(Some(&wang), approve_edit, json!({ "id": y, "t": manager_task, "e": { "reason": "改" } }));
    assert_eq!(code(&hidden_edit), "VALIDATION", "{hidden_edit}");
    office.ask(&wang, approve_edit, json!({ "id": y, "t": manager_task, "e": { "amount": 550_000 } }));
    let seen = shown(&li, &y);
    assert_ne!(seen["formHash"], first_hash);
    assert_eq!(seen["form"]["amount"], 550_000);
    assert_eq!(seen["currentNode"], "finance");

    // 撤回: before finance acts, the manager takes the approval back and decides again.
    let withdraw = "mutation($id: String!, $t: Int!) { withdrawApprovalTask(id: $id, task: $t) { events } }";
    office.ask(&wang, withdraw, json!({ "id": y, "t": manager_task }));
    assert_eq!(office.inbox(&zhao)["totalCount"], 0);
    let again = my_task(&office, &wang, &y);
    assert!(office.approve(&wang, &y, again, "再次同意")["errors"].is_null());
    assert!(office.approve(&zhao, &y, my_task(&office, &zhao, &y), "同意")["errors"].is_null());
    // Once finance has approved, the manager's withdrawal is refused and nothing is written.
    let before = shown(&li, &y)["timeline"].as_array().unwrap().len();
    let refused = office.server.gql(Some(&wang), withdraw, json!({ "id": y, "t": again }));
    assert_eq!(code(&refused), "CONFLICT", "{refused}");
    assert_eq!(shown(&li, &y)["timeline"].as_array().unwrap().len(), before);

    // 退回 to the submitter and resubmission with a new amount: routed again, new form hash.
    let give_back =
        "mutation($id: String!, $t: Int!) { returnApprovalTask(id: $id, task: $t, comment: \"请补发票\") { events } }";
    office.ask(&boss, give_back, json!({ "id": y, "t": my_task(&office, &boss, &y) }));
    assert_eq!(shown(&li, &y)["status"], "RETURNED");
    let resubmit = "mutation($id: String!, $f: JSON!) { resubmitApproval(id: $id, form: $f) { events } }";
    office.ask(&li, resubmit, json!({ "id": y, "f": { "amount": 400_000, "reason": "采购（补票）" } }));
    let seen = shown(&li, &y);
    assert_eq!(seen["route"], json!(["manager", "ceo"]));
    let kinds: Vec<&str> = seen["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"ApprovalReturned") && kinds.contains(&"ApprovalResubmitted"), "{kinds:?}");
    let approved_before: usize = kinds.iter().filter(|k| **k == "ApprovalTaskApproved").count();
    assert_eq!(approved_before, 4, "the earlier approvals stay in the history");

    // Self-approval: the manager's own claim goes to the leader above them, with the reason.
    let own = office.id(&wang, SUBMIT, json!({ "d": definition, "f": { "amount": 100_000, "reason": "培训费" } }));
    let seen = shown(&wang, &own);
    let entered =
        seen["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "ApprovalNodeEntered").unwrap().clone();
    assert_eq!(entered["detail"]["approvers"], json!([boss_id]));
    assert_eq!(entered["detail"]["notes"][0]["note"], "self_approval_to_leader", "{entered}");
    assert_eq!(office.inbox(&boss)["totalCount"], 1, "the manager's own claim");
    assert_eq!(office.inbox(&wang)["edges"][0]["node"]["id"], y.as_str(), "Y, resubmitted, is at the manager again");
}

#[test]
fn leave_is_reserved_on_submission_released_on_rejection_taken_on_approval_and_never_overdrawn() {
    let (office, admin) = Office::start();
    let sales = office.department(&admin, "销售部", None);
    let (li_id, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (wang_id, wang) = office.user(&admin, "wang.fang", "E-2", &sales);
    let (_, qian) = office.user(&admin, "qian.min", "E-3", &sales);
    office.lead(&admin, &sales, &wang_id);
    let days = national_day();
    office.ask(
        &admin,
        "mutation($d: JSON!) { publishWorkingCalendar(year: 2026, days: $d, papers: [\"国务院办公厅通知\"]) { events } }",
        json!({ "d": days }),
    );
    // Leave counts against the year of submission (China Standard Time).
    let year = oacis_domain::ids::Date::of_timestamp(oacis_api::command::now(), 480).unwrap().year();
    let credit = "mutation($o: String!, $y: Int!, $a: Int!) { creditLedger(kind: LEAVE, owner: $o, category: \"annual\", year: $y, amount: $a, reason: \"年假5天\") { id } }";
    assert_eq!(code(&office.server.gql(Some(&li), credit, json!({ "o": li_id, "y": year, "a": 10 }))), "FORBIDDEN");
    office.ask(&admin, credit, json!({ "o": li_id, "y": year, "a": 10 }));
    let body = json!({
        "name": "请假",
        "form": [{ "name": "days", "label": "请假日期", "type": "date_range", "required": true },
                 { "name": "reason", "label": "事由", "type": "text", "max": 200, "required": true }],
        "nodes": [{ "type": "approval", "id": "manager", "name": "经理", "approvers": { "kind": "leader", "level": 1 }, "mode": { "kind": "any" } }],
        "ledger": { "kind": "leave", "leave_type": "annual", "range_field": "days" }
    });
    let definition = office.publish(&admin, body.clone());
    let balance = |token: &str| {
        office.server.gql(
            Some(token),
            "query($o: String!, $y: Int!) { ledger(kind: LEAVE, owner: $o, category: \"annual\", year: $y) { credited taken reserved available entries { kind } } }",
            json!({ "o": li_id, "y": year }),
        )
    };
    let figures = |token: &str| {
        let b = balance(token);
        assert!(b["errors"].is_null(), "{b}");
        let l = &b["data"]["ledger"];
        (
            l["credited"].as_i64().unwrap(),
            l["taken"].as_i64().unwrap(),
            l["reserved"].as_i64().unwrap(),
            l["available"].as_i64().unwrap(),
        )
    };
    assert_eq!(figures(&li), (10, 0, 0, 10));
    assert_eq!(code(&balance(&qian)), "NOT_FOUND", "a colleague does not see someone's leave");
    assert_eq!(figures(&admin), (10, 0, 0, 10));

    // Thursday afternoon to the worked Saturday's morning: 4 half days reserved.
    let leave = |from: &str, from_half: &str, to: &str, to_half: &str| json!({ "d": definition, "f": { "days": { "from": from, "from_half": from_half, "to": to, "to_half": to_half }, "reason": "家事" } });
    let first = office.id(&li, SUBMIT, leave("2026-10-08", "pm", "2026-10-10", "am"));
    assert_eq!(figures(&li), (10, 0, 4, 6));
    // More than is left is refused, and nothing is written: no approval, no reservation.
    let too_much = office.server.gql(Some(&li), SUBMIT, leave("2026-11-02", "am", "2026-11-06", "pm"));
    assert_eq!(code(&too_much), "VALIDATION", "{too_much}");
    assert!(too_much.to_string().contains("6 half days available, 10 asked"), "{too_much}");
    assert_eq!(too_much["errors"][0]["extensions"]["fields"][0]["path"], "form.days", "{too_much}");
    let submitted = office.ask(&li, "{ approvals(list: SUBMITTED) { totalCount } }", json!({}));
    assert_eq!(submitted["approvals"]["totalCount"], 1);
    assert_eq!(figures(&li), (10, 0, 4, 6));
    // Rejected: released.
    let reject =
        "mutation($id: String!, $t: Int!) { rejectApprovalTask(id: $id, task: $t, comment: \"旺季\") { events } }";
    office.ask(&wang, reject, json!({ "id": first, "t": my_task(&office, &wang, &first) }));
    assert_eq!(figures(&li), (10, 0, 0, 10));
    // Approved: taken.
    let second = office.id(&li, SUBMIT, leave("2026-11-02", "am", "2026-11-03", "pm"));
    assert_eq!(figures(&li), (10, 0, 4, 6));
    assert!(office.approve(&wang, &second, my_task(&office, &wang, &second), "同意")["errors"].is_null());
    assert_eq!(figures(&li), (10, 4, 0, 6));
    let entries = balance(&li)["data"]["ledger"]["entries"].clone();
    let kinds: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["LedgerCredited", "LedgerReserved", "LedgerReleased", "LedgerReserved", "LedgerTaken"]);
    // Days already taken, or asked for twice at once, are not asked for again: of two
    // requests for one afternoon sent together, one is refused on the form's range.
    let again = office.server.gql(Some(&li), SUBMIT, leave("2026-11-03", "am", "2026-11-03", "am"));
    assert_eq!(code(&again), "VALIDATION", "{again}");
    assert_eq!(again["errors"][0]["extensions"]["fields"][0]["path"], "form.days", "{again}");
    let twice: Vec<Value> = std::thread::scope(|scope| {
        let sends: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| office.server.gql(Some(&li), SUBMIT, leave("2026-11-04", "pm", "2026-11-04", "pm")))
            })
            .collect();
        sends.into_iter().map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(twice.iter().filter(|a| a["errors"].is_null()).count(), 1, "{twice:?}");
    assert!(twice.iter().any(|a| code(a) == "VALIDATION"), "{twice:?}");
    assert_eq!(figures(&li), (10, 4, 1, 5));
    // Leave of another type on days already taken is refused too (read from every leave
    // ledger of the submitter); on other days it is not.
    let mut sick = body.clone();
    sick["name"] = json!("病假");
    sick["ledger"]["leave_type"] = json!("sick");
    let sick_definition = office.publish(&admin, sick);
    let sick_credit = "mutation($o: String!, $y: Int!) { creditLedger(kind: LEAVE, owner: $o, category: \"sick\", year: $y, amount: 10, reason: \"病假\") { id } }";
    office.ask(&admin, sick_credit, json!({ "o": li_id, "y": year }));
    let sick_leave = |from: &str, to: &str| json!({ "d": sick_definition, "f": { "days": { "from": from, "to": to }, "reason": "病" } });
    let crossing = office.server.gql(Some(&li), SUBMIT, sick_leave("2026-11-02", "2026-11-02"));
    assert_eq!(code(&crossing), "VALIDATION", "{crossing}");
    assert_eq!(crossing["errors"][0]["extensions"]["fields"][0]["path"], "form.days", "{crossing}");
    assert!(office.server.gql(Some(&li), SUBMIT, sick_leave("2026-11-09", "2026-11-09"))["errors"].is_null());
    // Sent at the same instant, a morning's annual leave and that day's sick leave (two
    // ledgers, checked through the views) are not both accepted.
    for day in ["2026-11-16", "2026-11-17", "2026-11-18"] {
        let pair: Vec<Value> = std::thread::scope(|scope| {
            let annual = scope.spawn(|| office.server.gql(Some(&li), SUBMIT, leave(day, "am", day, "am")));
            let sick = scope.spawn(|| office.server.gql(Some(&li), SUBMIT, sick_leave(day, day)));
            [annual, sick].into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert_eq!(pair.iter().filter(|a| a["errors"].is_null()).count(), 1, "{day}: {pair:?}");
        assert!(pair.iter().any(|a| code(a) == "VALIDATION"), "{day}: {pair:?}");
    }
}

#[test]
fn a_customer_discount_approval_shows_on_the_customers_timeline_and_in_the_managers_figures() {
    let (office, admin) = Office::start();
    let sales = office.department(&admin, "销售部", None);
    let (_, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (wang_id, wang) = office.user(&admin, "wang.fang", "E-2", &sales);
    office.lead(&admin, &sales, &wang_id);
    let customer = office.id(
        &admin,
        "mutation { registerCustomer(profile: {kind: ORGANISATION, name: \"华东贸易有限公司\", source: OTHER}) { id } }",
        json!({}),
    );
    // A form names only customers its submitter may read: the salesperson reads them all.
    let roles = office.ask(&admin, "{ roles { id name } }", json!({}));
    let sales_role = roles["roles"].as_array().unwrap().iter().find(|r| r["name"] == "sales").unwrap()["id"].clone();
    let li_id = office.ask(&li, "{ me { id } }", json!({}))["me"]["id"].clone();
    let (_, qian) = office.user(&admin, "qian.min", "E-3", &sales);
    let hidden =
        office.server.gql(Some(&qian), SUBMIT, json!({ "d": "00000000-0000-0000-0000-000000000000", "f": {} }));
    assert_eq!(code(&hidden), "NOT_FOUND");
    office.ask(
        &admin,
        "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }",
        json!({ "u": li_id, "r": sales_role }),
    );
    let body = json!({
        "name": "客户折扣",
        "form": [{ "name": "customer", "label": "客户", "type": "customer", "required": true },
                 { "name": "discount", "label": "折扣(%)", "type": "number", "required": true }],
        "nodes": [{ "type": "approval", "id": "manager", "name": "经理", "approvers": { "kind": "leader", "level": 1 }, "mode": { "kind": "any" } }]
    });
    let definition = office.publish(&admin, body);
    let unseen = office.server.gql(
        Some(&qian),
        SUBMIT,
        json!({ "d": definition, "f": { "customer": customer, "discount": 15 } }),
    );
    assert_eq!(code(&unseen), "VALIDATION", "a customer the submitter may not read: {unseen}");
    let first = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "customer": customer, "discount": 15 } }));
    assert!(office.approve(&wang, &first, my_task(&office, &wang, &first), "同意八五折")["errors"].is_null());
    let second = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "customer": customer, "discount": 30 } }));

    let timeline = office.ask(
        &admin,
        "query($c: String!) { customerTimeline(customer: $c) { edges { node { kind recordType recordId } } } }",
        json!({ "c": customer }),
    );
    let approvals: Vec<(String, String)> = timeline["customerTimeline"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["recordType"] == "approval")
        .map(|n| (n["kind"].as_str().unwrap().to_owned(), n["recordId"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        approvals,
        [
            ("ApprovalSubmitted".to_owned(), first.clone()),
            ("ApprovalCompleted".to_owned(), first.clone()),
            ("ApprovalSubmitted".to_owned(), second.clone())
        ]
    );

    // The same approver at two consecutive nodes: the second passes by itself, with its reason.
    let twice = json!({
        "name": "用印",
        "form": [{ "name": "purpose", "label": "用途", "type": "text", "max": 100, "required": true }],
        "nodes": [{ "type": "approval", "id": "leader", "name": "负责人", "approvers": { "kind": "leader", "level": 1 }, "mode": { "kind": "any" } },
                  { "type": "approval", "id": "seal", "name": "印章管理", "approvers": { "kind": "users", "users": [wang_id] }, "mode": { "kind": "any" } }]
    });
    let seal = office.publish(&admin, twice);
    let stamped = office.id(&li, SUBMIT, json!({ "d": seal, "f": { "purpose": "合同盖章" } }));
    assert!(office.approve(&wang, &stamped, my_task(&office, &wang, &stamped), "同意")["errors"].is_null());
    let shown = office.ask(
        &li,
        "query($id: String!) { approval(id: $id) { status timeline { kind detail } } }",
        json!({ "id": stamped }),
    );
    assert_eq!(shown["approval"]["status"], "APPROVED");
    let auto: Vec<&Value> = shown["approval"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ApprovalTaskAutoApproved")
        .collect();
    assert_eq!(auto.len(), 1, "{shown}");
    assert_eq!(auto[0]["detail"]["reason"], "approve_sequent");

    let figures = "{ approvalFigures(definition: \"DEF\") { definitionName node open oldestOpenSeconds overdue passed meanSecondsToPass } }"
        .replace("DEF", &definition);
    let shown = office.ask(&admin, &figures, json!({}));
    let manager = &shown["approvalFigures"][0];
    assert_eq!(
        (manager["definitionName"].as_str(), manager["node"].as_str()),
        (Some("客户折扣"), Some("manager")),
        "{shown}"
    );
    assert_eq!(
        (manager["open"].as_u64(), manager["passed"].as_u64(), manager["overdue"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    assert!(manager["oldestOpenSeconds"].as_i64().unwrap() >= 0 && manager["meanSecondsToPass"].as_i64().unwrap() >= 0);
    assert_eq!(code(&office.server.gql(Some(&li), &figures, json!({}))), "FORBIDDEN");
}

/// A GraphQL multipart request of `uploadAttachment` with one file.
fn upload(server: &Server, token: &str, file_name: &str, file: &[u8]) -> Value {
    let boundary = "oacis-test-boundary";
    let query = "mutation($f: Upload!) { uploadAttachment(file: $f) { name size blake3 } }";
    let operations = json!({ "query": query, "variables": { "f": null } }).to_string();
    let mut body = Vec::new();
    for (name, value) in [("operations", operations.as_str()), ("map", r#"{"0":["variables.f"]}"#)] {
        body.extend(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"0\"; filename=\"{file_name}\"\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, answer) =
        server.post("/graphql", Some(token), &format!("multipart/form-data; boundary={boundary}"), &body);
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn attachments_are_stored_outside_the_log_by_hash_and_shown_to_those_who_see_the_approval() {
    use base64::Engine as _;
    let (office, admin) = Office::start();
    let sales = office.department(&admin, "销售部", None);
    let (_, li) = office.user(&admin, "li.na", "E-1", &sales);
    let (wang_id, wang) = office.user(&admin, "wang.fang", "E-2", &sales);
    let (_, qian) = office.user(&admin, "qian.min", "E-3", &sales);
    office.lead(&admin, &sales, &wang_id);
    let body = json!({
        "name": "费用报销",
        "form": [{ "name": "amount", "label": "金额", "type": "money", "required": true },
                 { "name": "invoice", "label": "发票", "type": "attachment", "required": true }],
        "nodes": [{ "type": "approval", "id": "manager", "name": "经理", "approvers": { "kind": "leader", "level": 1 }, "mode": { "kind": "any" } }]
    });
    let definition = office.publish(&admin, body);
    let pdf = b"%PDF-1.7 \xe5\x8f\x91\xe7\xa5\xa8 invoice 12345".to_vec();
    let uploaded = upload(&office.server, &li, "发票.pdf", &pdf);
    let node = uploaded["data"]["uploadAttachment"].clone();
    let hash = blake3::hash(&pdf).to_hex().to_string();
    assert_eq!(node, json!({ "name": "发票.pdf", "size": pdf.len(), "blake3": hash }), "{uploaded}");
    assert_eq!(
        std::fs::read(office.dir.path().join("attachments").join(&hash)).unwrap(),
        pdf,
        "stored by its hash, outside the log"
    );

    // A form may name only a stored file with its size.
    let forged = json!({ "name": "发票.pdf", "size": pdf.len(), "blake3": "ab".repeat(32) });
    let refused =
        office.server.gql(Some(&li), SUBMIT, json!({ "d": definition, "f": { "amount": 100, "invoice": forged } }));
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    assert!(refused.to_string().contains("form.invoice"), "{refused}");
    let wrong_size = json!({ "name": "发票.pdf", "size": 1, "blake3": hash });
    assert_eq!(
        code(&office.server.gql(
            Some(&li),
            SUBMIT,
            json!({ "d": definition, "f": { "amount": 100, "invoice": wrong_size } })
        )),
        "VALIDATION"
    );
    // Knowing someone else's file's hash and size is not enough to attach it, and the answer is
    // the same as for a file that does not exist.
    let borrowed =
        office.server.gql(Some(&qian), SUBMIT, json!({ "d": definition, "f": { "amount": 100, "invoice": node } }));
    assert_eq!(code(&borrowed), "VALIDATION", "{borrowed}");
    assert_eq!(borrowed["errors"][0]["extensions"]["fields"], refused["errors"][0]["extensions"]["fields"]);
    let id = office.id(&li, SUBMIT, json!({ "d": definition, "f": { "amount": 100, "invoice": node } }));

    let fetch = "query($a: String!, $h: String!) { approvalAttachment(approval: $a, blake3: $h) { name size blake3 contentBase64 } }";
    let fetched = office.ask(&wang, fetch, json!({ "a": id, "h": hash }))["approvalAttachment"].clone();
    let bytes = base64::engine::general_purpose::STANDARD.decode(fetched["contentBase64"].as_str().unwrap()).unwrap();
    assert_eq!((bytes, fetched["name"].as_str()), (pdf, Some("发票.pdf")));
    assert_eq!(code(&office.server.gql(Some(&qian), fetch, json!({ "a": id, "h": hash }))), "NOT_FOUND");
    let other = "cd".repeat(32);
    assert_eq!(code(&office.server.gql(Some(&wang), fetch, json!({ "a": id, "h": other }))), "NOT_FOUND");
    assert_eq!(code(&office.server.gql(Some(&wang), fetch, json!({ "a": id, "h": "../../db" }))), "NOT_FOUND");
}
