//! The scope matrix: every default role that reads customers, at each RBAC scope, in a tree
//! of three departments. Lists, `totalCount` and aggregates must return exactly what the
//! scope rules allow when applied record by record, computed here independently of the
//! server; personal data shows unmasked exactly to the roles holding
//! `customer.read_personal`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn sign_in_fresh(server: &Server, name: &str, password: &str) -> String {
    server.first_sign_in(name, password, CHANGED)
}

fn id_of(answer: &Value, field: &str) -> String {
    answer["data"][field]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

#[derive(Debug)]
struct Customer {
    id: String,
    owner: String,
    department: String,
    phone: String,
}

#[test]
fn every_role_and_scope_sees_exactly_what_its_scope_allows() {
    let dir = tempfile::tempdir().unwrap();
    // Two dozen people sign in from one test address within a minute.
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        dir.path(),
        &["--sign-in-per-address-per-minute", "1000"],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = sign_in_fresh(&server, "admin", PASSWORD);
    let gql = |query: &str, variables: Value| server.gql(Some(&admin), query, variables);

    // Three departments in a tree: 华北 with 东北 below it, and 华南 beside it.
    let dept = "mutation($n: String!, $p: String) { createDepartment(name: $n, parent: $p) { id } }";
    let north = id_of(&gql(dept, json!({ "n": "华北" })), "createDepartment");
    let north_east = id_of(&gql(dept, json!({ "n": "东北", "p": north })), "createDepartment");
    let south = id_of(&gql(dept, json!({ "n": "华南" })), "createDepartment");
    let roles: BTreeMap<String, String> = gql("{ roles { id name } }", json!({}))["data"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()))
        .collect();
    let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let grant = "mutation($u: String!, $r: String!, $s: Scope!) { grantRole(user: $u, role: $r, scope: $s) { seq } }";
    let mut n = 0;
    let mut user = |name: &str, department: &str| {
        n += 1;
        id_of(&gql(create, json!({ "u": name, "e": format!("S-{n:03}"), "d": department })), "createUser")
    };

    // Owners of customers in each department, and the users under test, all in 华北.
    let owners = [
        (user("owner.north", &north), north.clone()),
        (user("owner.ne", &north_east), north_east.clone()),
        (user("owner.south", &south), south.clone()),
    ];
    let scopes = ["OWN", "DEPARTMENT", "DEPARTMENT_TREE", "ALL"];
    let role_names = ["manager", "sales", "service", "analyst", "auditor"];
    let mut testers = Vec::new();
    for role in role_names {
        for scope in scopes {
            let name = format!("{role}.{}", scope.to_lowercase().replace('_', "-"));
            let id = user(&name, &north);
            let granted = gql(grant, json!({ "u": id, "r": roles[role], "s": scope }));
            assert!(granted["errors"].is_null(), "{granted}");
            testers.push((name, id, role, scope));
        }
    }

    // Customers: two per owner, and one owned by each user under test.
    let register = "mutation($p: ProfileInput!, $o: String) { registerCustomer(profile: $p, owner: $o) { id } }";
    let mut customers = Vec::new();
    let all_owners: Vec<(String, String)> = owners
        .iter()
        .flat_map(|o| [o.clone(), o.clone()])
        .chain(testers.iter().map(|(_, id, _, _)| (id.clone(), north.clone())))
        .collect();
    for (i, (owner, department)) in all_owners.iter().enumerate() {
        let phone = format!("+86139{:08}", 10_000_000 + i);
        let profile = json!({
            "kind": "PERSON", "name": format!("客户{i}"), "source": "OTHER", "phones": [phone], "segment": format!("seg{}", i % 3),
            "addresses": [{ "country": "CN", "city": "杭州", "street": format!("文一西路{i}号") }],
            "social": [{ "network": "wechat", "handle": format!("wx_handle_{i}") }],
        });
        let id = id_of(&gql(register, json!({ "p": profile, "o": owner })), "registerCustomer");
        customers.push(Customer { id, owner: owner.clone(), department: department.clone(), phone });
    }

    let subtree: BTreeSet<&str> = [north.as_str(), north_east.as_str()].into();
    let list = "{ customers(first: 100) { totalCount edges { node { id phones } } } }";
    let by_department = "{ analytics { customersBy(dimension: DEPARTMENT) { key count } } }";
    for (name, id, role, scope) in &testers {
        let token = sign_in_fresh(&server, name, "Initial-Pass-9");
        // Independently: the scope rule applied record by record.
        let expected: BTreeSet<&str> = customers
            .iter()
            .filter(|c| match *scope {
                "OWN" => c.owner == *id,
                "DEPARTMENT" => c.department == north,
                "DEPARTMENT_TREE" => subtree.contains(c.department.as_str()),
                _ => true,
            })
            .map(|c| c.id.as_str())
            .collect();
        let answer = server.gql(Some(&token), list, json!({}));
        let seen: BTreeSet<&str> = answer["data"]["customers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(seen, expected, "{name}");
        assert_eq!(answer["data"]["customers"]["totalCount"].as_u64(), Some(expected.len() as u64), "{name}");

        // Personal data: unmasked only for roles with customer.read_personal.
        let personal = matches!(*role, "manager" | "sales");
        let body = answer.to_string();
        for customer in customers.iter().filter(|c| expected.contains(c.id.as_str())) {
            assert_eq!(body.contains(&customer.phone), personal, "{name} and {}", customer.phone);
        }

        // Addresses and social handles (single reads): the street and the handle masked
        // alike; the city and the network shown to every reader.
        if let Some(first) = customers.iter().find(|c| expected.contains(c.id.as_str())) {
            let one =
                "query($id: String!) { customer(id: $id) { addresses { city street } social { network handle } } }";
            let read = server.gql(Some(&token), one, json!({ "id": first.id }));
            let i = customers.iter().position(|c| c.id == first.id).unwrap();
            let (street, handle) = if personal {
                (format!("文一西路{i}号"), format!("wx_handle_{i}"))
            } else {
                ("****".to_owned(), "****".to_owned())
            };
            let customer = &read["data"]["customer"];
            assert_eq!(customer["addresses"], json!([{ "city": "杭州", "street": street }]), "{name}: {read}");
            assert_eq!(customer["social"], json!([{ "network": "wechat", "handle": handle }]), "{name}: {read}");
        }

        // Aggregates count the same records.
        let figures = server.gql(Some(&token), by_department, json!({}));
        if matches!(*role, "manager" | "analyst") {
            let mut want: BTreeMap<String, u64> = BTreeMap::new();
            for c in customers.iter().filter(|c| expected.contains(c.id.as_str())) {
                *want.entry(c.department.clone()).or_default() += 1;
            }
            let got: BTreeMap<String, u64> = figures["data"]["analytics"]["customersBy"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {figures}"))
                .iter()
                .map(|b| (b["key"].as_str().unwrap().to_owned(), b["count"].as_u64().unwrap()))
                .collect();
            assert_eq!(got, want, "{name}");
        } else {
            assert_eq!(code(&figures), "FORBIDDEN", "{name}: {figures}");
        }

        // A record outside the scope answers exactly as one that does not exist.
        if let Some(hidden) = customers.iter().find(|c| !expected.contains(c.id.as_str())) {
            let one = "query($id: String!) { customer(id: $id) { id } }";
            let outside = server.gql(Some(&token), one, json!({ "id": hidden.id }));
            let missing = server.gql(Some(&token), one, json!({ "id": "01930000-0000-7000-8000-00000000abcd" }));
            assert_eq!(code(&outside), "NOT_FOUND", "{name}");
            assert_eq!(outside["errors"][0]["message"], missing["errors"][0]["message"]);
        }
    }
}
