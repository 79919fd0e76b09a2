//! Import and export of customers, with files as people make them: a GB18030 CSV from a
//! spreadsheet with a title row and half its rows invalid, a UTF-8 CSV with BOM and CRLF,
//! an `.xlsx` with merged header cells, a date column typed as dates and phones typed as
//! numbers; dry runs that write nothing; real runs under one correlation id; exports that
//! re-import unchanged; undo with its refusal when others changed the customers since; and
//! the scope, masking and access-log rules of exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn oacis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oacis")).args(args).output().expect("run oacis")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn outcomes(report: &Value) -> Vec<(u64, String)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

/// An `.xlsx` as an office worker makes it: a merged title, a phone header merged over two
/// columns, registration dates typed as dates, phones typed as numbers.
fn workbook() -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    sheet.merge_range(0, 0, 0, 4, "2026 年客户名单", &Format::new()).unwrap();
    sheet.write_string(1, 0, "姓名").unwrap();
    sheet.merge_range(1, 1, 1, 2, "电话", &Format::new()).unwrap();
    sheet.write_string(1, 3, "登记时间").unwrap();
    sheet.write_string(1, 4, "标签").unwrap();
    sheet.write_string(2, 0, "赵六").unwrap();
    sheet.write_number(2, 1, 13_912_345_670.0).unwrap();
    sheet.write_string(2, 2, "010-6000 0001").unwrap();
    sheet.write_datetime_with_format(2, 3, ExcelDateTime::from_ymd(2018, 6, 1).unwrap(), &date).unwrap();
    sheet.write_string(2, 4, "老客户").unwrap();
    sheet.write_string(3, 0, "钱七").unwrap();
    sheet.write_number(3, 1, 13_912_345_671.0).unwrap();
    book.save_to_buffer().unwrap()
}

#[test]
fn files_as_people_make_them_are_validated_imported_exported_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let demo = oacis(&["demo", "--data", data_arg, "--customers", "40"]);
    assert!(demo.status.success(), "{}", text(&demo));
    let at = |name: &str| dir.path().join(name);
    let run = |args: &[&str]| {
        let mut all = vec!["import", "customers"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data", data_arg]);
        oacis(&all)
    };
    let export = |file: &Path| {
        let out = oacis(&["export", "customers", "--data", data_arg, "--out", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read(file).unwrap()
    };
    let before = export(&at("before.csv"));

    // A GB18030 CSV with a title row and CRLF: half of its rows are wrong.
    let csv = "客户名单（销售部）\r\n姓名,手机,邮箱,来源,标签,注册时间\r\n\
               张三,13912345678,zs@example.com,转介绍,VIP、重点客户,2019-03-01\r\n\
               李四,1.3912345679E10,,官网,,2020/5/6 10:00\r\n\
               王五,12345,bad,火星,,2099-01-01\r\n\
               孙八,1.39123E10,,,,\r\n";
    let (gbk, _, _) = encoding_rs::GB18030.encode(csv);
    std::fs::write(at("a.csv"), &gbk).unwrap();
    let dry = run(&[at("a.csv").to_str().unwrap(), "--dry-run", "--report", at("dry.json").to_str().unwrap()]);
    assert_eq!(dry.status.code(), Some(1), "refused rows exit 1: {}", text(&dry));
    let dry = report(&at("dry.json"));
    assert_eq!(dry["encoding"], "gb18030");
    assert_eq!(
        outcomes(&dry),
        [(3, "accepted".into()), (4, "accepted".into()), (5, "refused".into()), (6, "refused".into())]
    );
    assert_eq!(dry["rows"][1]["warnings"][0]["code"], "number_recovered", "exact float recovered");
    let errors: Vec<(String, String)> = dry["rows"][2]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["column"].as_str().unwrap().to_owned(), e["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        errors,
        [
            ("来源".to_owned(), "invalid_format".to_owned()),
            ("注册时间".to_owned(), "out_of_range".to_owned()),
            ("手机".to_owned(), "invalid_phone".to_owned()),
            ("邮箱".to_owned(), "invalid_email".to_owned()),
        ],
        "every error of the row, each naming its column"
    );
    assert!(dry["rows"][3]["errors"][0]["message"].as_str().unwrap().contains("digits are lost"));
    assert_eq!(export(&at("after-dry.csv")), before, "a dry run writes nothing");

    // The real run writes the valid rows and reports the same; the CSV report names lines.
    let real = run(&[at("a.csv").to_str().unwrap(), "--report", at("real.csv").to_str().unwrap()]);
    assert_eq!(real.status.code(), Some(1));
    let import_id = text(&real).split("import ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    let report_csv = std::fs::read_to_string(at("real.csv")).unwrap();
    assert!(report_csv.contains("5,refused,,error,手机,phones[0],invalid_phone"), "{report_csv}");
    assert!(report_csv.lines().any(|l| l.starts_with("3,registered,")), "{report_csv}");
    let exported = String::from_utf8(export(&at("with-import.csv"))).unwrap();
    let zhang = exported.lines().find(|l| l.contains("张三")).expect("imported").to_owned();
    assert!(zhang.contains("2019-02-28T16:00:00"), "business time kept (+08:00): {zhang}");
    assert!(zhang.contains("+8613912345678") && zhang.contains("\"VIP, 重点客户\""), "{zhang}");

    // A UTF-8 file with BOM and CRLF, and the .xlsx: both read.
    std::fs::write(at("b.csv"), "\u{feff}name,phone,segment\r\n\"Wang, Wei\",+8613800000001,smb\r\n").unwrap();
    let b = run(&[at("b.csv").to_str().unwrap()]);
    assert!(b.status.success(), "{}", text(&b));
    std::fs::write(at("c.xlsx"), workbook()).unwrap();
    let c = run(&[at("c.xlsx").to_str().unwrap(), "--report", at("c.json").to_str().unwrap()]);
    assert!(c.status.success(), "{}", text(&c));
    let c = report(&at("c.json"));
    assert_eq!(c["format"], "xlsx");
    assert_eq!(c["columns"][1]["field"], "phones");
    assert_eq!(c["columns"][2]["field"], "phones", "the merged header names both columns");
    let exported = String::from_utf8(export(&at("with-xlsx.csv"))).unwrap();
    let zhao = exported.lines().find(|l| l.contains("赵六")).unwrap().to_owned();
    assert!(zhao.contains("\"+8613912345670, +861060000001\""), "{zhao}");
    assert!(zhao.contains("2018-05-31T16:00:00"), "the date cell, at +08:00: {zhao}");

    // An export re-imports as an upsert by id with no changes, as CSV and as .xlsx.
    for name in ["round.csv", "round.xlsx"] {
        let out = oacis(&["export", "customers", "--data", data_arg, "--out", at(name).to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let again = run(&[at(name).to_str().unwrap(), "--dry-run", "--report", at("round.json").to_str().unwrap()]);
        assert!(again.status.success(), "{}", text(&again));
        let totals = &report(&at("round.json"))["totals"];
        assert_eq!(totals["unchanged"], totals["rows"], "{name}: {totals}");
        assert_eq!(totals["rows"].as_u64(), Some(40 + 2 + 1 + 2));
    }

    // Malformed files: a clear error naming the line, nothing written.
    std::fs::write(at("bad.csv"), "name,phone\nok,+8613800000009\n\"open,1\n").unwrap();
    let bad = run(&[at("bad.csv").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("line 3: a quoted field starts here and is never closed"), "{}", text(&bad));
    std::fs::write(at("bad.xlsx"), b"PK\x03\x04 not really a workbook").unwrap();
    let bad = run(&[at("bad.xlsx").to_str().unwrap()]);
    assert!(text(&bad).contains("the .xlsx file cannot be read"), "{}", text(&bad));
    let bad = run(&[at("b.csv").to_str().unwrap(), "--map", "name=nickname"]);
    assert!(text(&bad).contains("use one of id, external_id"), "{}", text(&bad));

    // Undo the first import: what it registered is archived; a second undo is refused.
    let undo = oacis(&["import", "undo", &import_id, "--data", data_arg]);
    assert!(undo.status.success(), "{}", text(&undo));
    assert!(text(&undo).contains("archived 2, restored 0"), "{}", text(&undo));
    let again = oacis(&["import", "undo", &import_id, "--data", data_arg]);
    assert!(!again.status.success());
    assert!(text(&again).contains("undone"), "{}", text(&again));
    let exported = String::from_utf8(export(&at("undone.csv"))).unwrap();
    let zhang = exported.lines().find(|l| l.contains("张三")).expect("archived, not deleted");
    assert!(zhang.contains(",archived,"), "{zhang}");
    let verify = oacis(&["verify", "--data", data_arg]);
    assert!(verify.status.success(), "{}", text(&verify));
}

fn sign_in(server: &Server, name: &str, password: &str, new: &str) -> String {
    server.first_sign_in(name, password, new)
}

/// A GraphQL multipart request of `IMPORT` with `input` and one file; answers the status
/// and body.
fn upload(server: &Server, token: &str, input: Value, file_name: &str, file: &[u8]) -> (u16, String) {
    let boundary = "oacis-test-boundary";
    let operations = json!({ "query": IMPORT, "variables": { "i": input } }).to_string();
    let mut body = Vec::new();
    for (name, value) in [("operations", operations.as_str()), ("map", r#"{"0":["variables.i.file"]}"#)] {
        body.extend(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"0\"; filename=\"{file_name}\"\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    server.post("/graphql", Some(token), &format!("multipart/form-data; boundary={boundary}"), &body)
}

fn ok(answer: Value) -> Value {
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"].clone()
}

const IMPORT: &str = "mutation($i: ImportInput!) { importCustomers(input: $i) { importId dryRun encoding \
                      totals { rows registered updated unchanged refused } \
                      rows(onlyIssues: false) { line outcome customer errors { column code } } csv } }";

#[test]
fn imports_over_graphql_are_scoped_recorded_undoable_and_exports_masked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), dir.path(), &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)]);
    let admin = sign_in(&server, "admin", PASSWORD, CHANGED);
    let count = |token: &str| {
        ok(server.gql(Some(token), "{ customers { totalCount } }", json!({})))["customers"]["totalCount"].clone()
    };

    // A dry run (the default) writes nothing and reports every row.
    let csv = "name,phones,segment,external_id\n张伟,13800000001,smb,ERP-1\n李娜,13800000002,vip,ERP-2\n,13800000003,,ERP-3\n";
    let dry = ok(server.gql(Some(&admin), IMPORT, json!({ "i": { "text": csv } })))["importCustomers"].clone();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["totals"], json!({ "rows": 3, "registered": 2, "updated": 0, "unchanged": 0, "refused": 1 }));
    assert_eq!(dry["rows"][2]["errors"][0], json!({ "column": "name", "code": "required" }));
    assert_eq!(count(&admin), 0);

    // The real run: every event by the admin under the import's id; the audit trail shows it.
    let real = ok(server.gql(Some(&admin), IMPORT, json!({ "i": { "text": csv, "dryRun": false } })))
        ["importCustomers"]
        .clone();
    let first_import = real["importId"].as_str().unwrap().to_owned();
    assert_eq!(real["totals"]["registered"], 2);
    assert_eq!(count(&admin), 2);
    let imports = ok(server.gql(Some(&admin), "{ customerImports { id status customers rows key } }", json!({})));
    assert_eq!(
        imports["customerImports"][0],
        json!({ "id": first_import, "status": "finished", "customers": 2, "rows": 3, "key": "external_id" })
    );

    // The same file again matches by external id and changes nothing; a changed segment updates.
    let again = ok(server.gql(Some(&admin), IMPORT, json!({ "i": { "text": csv, "dryRun": false } })))
        ["importCustomers"]
        .clone();
    assert_eq!(again["totals"]["unchanged"], 2);
    let update = "external_id,segment\nERP-1,enterprise\n";
    let update = ok(server.gql(Some(&admin), IMPORT, json!({ "i": { "text": update, "dryRun": false } })))
        ["importCustomers"]
        .clone();
    assert_eq!(update["totals"]["updated"], 1);
    let second_import = update["importId"].as_str().unwrap().to_owned();
    let zhang = update["rows"][0]["customer"].as_str().unwrap().to_owned();

    // Someone changes the customer afterwards: the undo refuses and names it, unless forced.
    let rename = "mutation($id: String!) { updateCustomerProfile(id: $id, profile: {kind: PERSON, name: \"张伟伟\", source: OTHER, segment: \"enterprise\", phones: [\"13800000001\"]}) { id } }";
    ok(server.gql(Some(&admin), rename, json!({ "id": zhang })));
    let undo = "mutation($id: String!, $f: Boolean) { undoCustomerImport(id: $id, force: $f) { archived restored skipped forced } }";
    let refused = server.gql(Some(&admin), undo, json!({ "id": second_import, "f": false }));
    assert_eq!(code(&refused), "CONFLICT", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains(&zhang), "{refused}");
    let forced =
        ok(server.gql(Some(&admin), undo, json!({ "id": second_import, "f": true })))["undoCustomerImport"].clone();
    assert_eq!(forced, json!({ "archived": 0, "restored": 1, "skipped": [], "forced": true }));
    let zhang_now = ok(server.gql(
        Some(&admin),
        "query($id: String!) { customer(id: $id) { segment name } }",
        json!({ "id": zhang }),
    ));
    assert_eq!(zhang_now["customer"]["segment"], "smb", "back to the value before the import");
    assert_eq!(
        code(&server.gql(Some(&admin), undo, json!({ "id": second_import, "f": false }))),
        "CONFLICT",
        "undone once"
    );
    assert_eq!(code(&server.gql(Some(&admin), undo, json!({ "id": uuid_like(), "f": false }))), "NOT_FOUND");

    // A multipart upload of an .xlsx.
    let (status, answer) = upload(&server, &admin, json!({ "file": null, "dryRun": false }), "名单.xlsx", &workbook());
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(ok(answer)["importCustomers"]["totals"]["registered"], 2);
    // An upload past axum's own 2 MiB default: one row with a 3 MB note in a column the
    // import does not know (ignored, and listed in the report).
    let big = format!("name,备注\n赵大,{}\n", "x".repeat(3 << 20));
    let (status, answer) = upload(&server, &admin, json!({ "file": null }), "big.csv", big.as_bytes());
    assert_eq!(status, 200, "{}", &answer[..answer.len().min(500)]);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(ok(answer)["importCustomers"]["totals"]["rows"], 1);

    // A user who may read but not write customers cannot import; not an admin, cannot undo.
    let root = ok(server.gql(Some(&admin), "{ departments { id } }", json!({})))["departments"][0]["id"].clone();
    let create = "mutation($u: String!, $d: String!) { createUser(username: $u, employeeNo: \"E-9001\", displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let define = "mutation($n: String!, $p: [String!]!) { defineRole(name: $n, permissions: $p) { id } }";
    let grant = "mutation($u: String!, $r: String!) { grantRole(user: $u, role: $r, scope: ALL) { id } }";
    let reader =
        ok(server.gql(Some(&admin), create, json!({ "u": "du.reader", "d": root })))["createUser"]["id"].clone();
    let role =
        ok(server.gql(Some(&admin), define, json!({ "n": "导出员", "p": ["customer.read", "customer.export"] })))
            ["defineRole"]["id"]
            .clone();
    ok(server.gql(Some(&admin), grant, json!({ "u": reader, "r": role })));
    let reader = sign_in(&server, "du.reader", "Initial-Pass-9", "Reader-Pass-2026");
    assert_eq!(code(&server.gql(Some(&reader), IMPORT, json!({ "i": { "text": csv } }))), "FORBIDDEN");
    assert_eq!(code(&server.gql(Some(&reader), undo, json!({ "id": first_import, "f": false }))), "FORBIDDEN");
    assert_eq!(code(&server.gql(None, IMPORT, json!({ "i": { "text": csv } }))), "UNAUTHENTICATED");
    // One who may write but not read personal data may not match rows by a phone: a row of
    // a customer whose phone they may not read would be registered again.
    let writer = ok(server.gql(
        Some(&admin),
        "mutation($d: String!) { createUser(username: \"du.writer\", employeeNo: \"E-9002\", displayName: \"录入\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }",
        json!({ "d": root }),
    ))["createUser"]["id"]
        .clone();
    let role = ok(server.gql(Some(&admin), define, json!({ "n": "录入员", "p": ["customer.read", "customer.write"] })))
        ["defineRole"]["id"]
        .clone();
    ok(server.gql(Some(&admin), grant, json!({ "u": writer, "r": role })));
    let writer = sign_in(&server, "du.writer", "Initial-Pass-9", "Luru-Pass-2026");
    let by_phone = json!({ "i": { "text": "phones,name\n+8613800000002,又一位\n", "key": "PHONE", "dryRun": true } });
    let refused = server.gql(Some(&writer), IMPORT, by_phone.clone());
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("customer.read_personal"), "{refused}");
    assert!(server.gql(Some(&admin), IMPORT, by_phone)["errors"].is_null());
    let neither = server.gql(Some(&admin), IMPORT, json!({ "i": {} }));
    assert_eq!(code(&neither), "VALIDATION", "{neither}");
    let unmapped = server.gql(
        Some(&admin),
        IMPORT,
        json!({ "i": { "text": csv, "mapping": [{ "header": "name", "field": "nick" }] } }),
    );
    assert_eq!(code(&unmapped), "VALIDATION", "{unmapped}");

    // Exports: masked without customer.read_personal, unmasked with it, each one recorded.
    let export = "mutation($f: FileFormat) { exportCustomers(format: $f) { rows personal contentType contentBase64 } }";
    let file = |token: &str| {
        let answer = ok(server.gql(Some(token), export, json!({ "f": "CSV" })))["exportCustomers"].clone();
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(answer["contentBase64"].as_str().unwrap()).unwrap();
        (answer, String::from_utf8(bytes).unwrap())
    };
    let (masked, masked_text) = file(&reader);
    assert_eq!((masked["rows"].as_u64(), masked["personal"].as_bool()), (Some(4), Some(false)));
    assert!(masked_text.contains("+86138****0002") && !masked_text.contains("+8613800000002"), "{masked_text}");
    let (full, full_text) = file(&admin);
    assert_eq!(full["personal"], true);
    assert!(full_text.contains("+8613800000002"));
    let xlsx = ok(server.gql(Some(&admin), export, json!({ "f": "XLSX" })))["exportCustomers"].clone();
    assert!(xlsx["contentType"].as_str().unwrap().contains("spreadsheetml"));
    let alerts = ok(server.gql(
        Some(&admin),
        "{ events(kinds: [\"CustomersExported\"], first: 100) { kind payload } }",
        json!({}),
    ));
    let exports: Vec<&Value> =
        alerts["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "CustomersExported").collect();
    assert_eq!(exports.len(), 3, "every export is on the record");
    assert!(exports[0]["payload"].as_str().unwrap().contains("\"records\":4"), "{}", exports[0]);
}

fn uuid_like() -> &'static str {
    "01a22a02-0000-7000-8000-000000000000"
}

/// A file shaped like another system's table dump (the GraphQL peer benchmark's
/// `customers.csv`): PostgreSQL array cells, owners and departments of another system, sales
/// stages for status, a person with an industry, a phone outside the numbering plan.
const FOREIGN: &str = "\
id,kind,name,industry,phones,emails,tags,segment,source,owner,department,status,created_at,last_contact
428474c1-5e9e-4ba7-a6a8-6bd5a7550d23,person,孙淑华,金融,\"{14912345678,13856498502}\",\"{xiulan36@example.com,pingxia@example.com}\",{VIP},smb,partner,e085b021-e0d4-4f2b-935a-b03d8de49eb1,88718c96-6f3d-48f7-b4b1-b64633be40f5,prospect,2024-04-18T12:09:51+08:00,2024-06-25T17:56:47+08:00
0df2d1af-f106-4dbd-a7c8-765c57810ce8,organisation,华远物流有限公司,物流,{13006993709},{},\"{重点客户,大客户}\",enterprise,cold_call,400cb70f-964e-43c0-b4a3-165de1ab3e01,515c6123-6c88-4537-bcf3-bd58da60fb1c,active,2023-01-30T22:46:13+08:00,
6f1f3f39-2d59-4f0e-9f49-0a3c3e8e3a01,person,,,{13006993710},{},{},consumer,wechat,400cb70f-964e-43c0-b4a3-165de1ab3e01,515c6123-6c88-4537-bcf3-bd58da60fb1c,lost,2023-01-30T22:46:13+08:00,
";

#[test]
fn another_systems_dump_loads_at_start_keeping_ids_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("customers.csv");
    std::fs::write(&file, FOREIGN).unwrap();
    let file_arg = file.to_str().unwrap();
    let args = ["--import", file_arg, "--import-map", "owner=ignore,department=ignore", "--import-omit-invalid-values"];
    let env = [("OACIS_ADMIN_PASSWORD", PASSWORD)];
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &args, &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    // The nameless row is refused even so; the others lose only what they could do without.
    assert!(printed.contains("3 rows: registered 2, updated 0, unchanged 0, refused 1"), "{printed}");
    assert!(printed.contains("line 4 [name]"), "{printed}");
    let token = sign_in(&server, "admin", PASSWORD, CHANGED);
    let query = "query($id: String!) { c: customer(id: $id) { name kind industry phones emails tags segment source status createdAt lastContact } \
                 partner: customers(filter: {source: PARTNER}) { totalCount } cold: customers(filter: {source: COLD_CALL}) { totalCount } \
                 all: customers { totalCount } imports: customerImports { fileName rows } }";
    let answer = ok(server.gql(Some(&token), query, json!({ "id": "428474c1-5e9e-4ba7-a6a8-6bd5a7550d23" })));
    let c = &answer["c"];
    assert_eq!(c["name"], "孙淑华");
    assert_eq!(c["industry"], Value::Null, "a person's industry is left out");
    assert_eq!(c["phones"], json!(["+8613856498502"]), "the number outside the plan is left out, the other kept");
    assert_eq!(c["emails"], json!(["xiulan36@example.com", "pingxia@example.com"]));
    assert_eq!(c["tags"], json!(["VIP"]));
    assert_eq!((&c["segment"], &c["source"], &c["status"]), (&json!("smb"), &json!("PARTNER"), &json!("ACTIVE")));
    assert_eq!(c["createdAt"], "2024-04-18T04:09:51.000000Z", "the other system's registration time is kept");
    assert_eq!(c["lastContact"], "2024-06-25T09:56:47.000000Z");
    assert_eq!(answer["partner"]["totalCount"], 1);
    assert_eq!(answer["cold"]["totalCount"], 1);
    assert_eq!(answer["all"]["totalCount"], 2);
    assert_eq!(answer["imports"], json!([{ "fileName": "customers.csv", "rows": 3 }]));
    server.kill();

    // Started again with the same flags: the file is known by its BLAKE3 and not imported again.
    let server = Server::start(env!("CARGO_BIN_EXE_oacis"), &data, &args, &env);
    let printed = server.stderr.lock().unwrap().join("\n");
    assert!(printed.contains("was imported before"), "{printed}");
    let answer = ok(server.gql(Some(&token), query, json!({ "id": "428474c1-5e9e-4ba7-a6a8-6bd5a7550d23" })));
    assert_eq!(answer["imports"].as_array().unwrap().len(), 1);
    server.kill();

    // Without leaving values out, the same rows are refused with every error named; with it,
    // a value left out of an update keeps what the customer has (nothing changes).
    let data_arg = data.to_str().unwrap();
    // A dry run with `extra` flags; it exits 1 (some row is refused); answers its report.
    let dry_run = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["import", "customers", file_arg, "--data", data_arg, "--dry-run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--report", path.to_str().unwrap()]);
        let out = oacis(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        report(&path)
    };
    let strict = dry_run("strict.json", &[]);
    assert_eq!(outcomes(&strict), vec![(2, "refused".into()), (3, "refused".into()), (4, "refused".into())]);
    let codes: Vec<(String, String)> = strict["rows"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap().to_owned(), e["code"].as_str().unwrap().to_owned()))
        .collect();
    // Every problem of the row at once: the owner does not hide the department.
    for expected in [("status", "invalid_format"), ("owner", "not_found"), ("department", "not_found")] {
        assert!(codes.contains(&(expected.0.into(), expected.1.into())), "{codes:?}");
    }
    let lenient = dry_run("lenient.json", &["--omit-invalid-values"]);
    assert_eq!(
        outcomes(&lenient),
        vec![(2, "unchanged".into()), (3, "unchanged".into()), (4, "refused".into())],
        "{lenient}"
    );
    let left_out: Vec<&str> =
        lenient["rows"][0]["warnings"].as_array().unwrap().iter().map(|w| w["field"].as_str().unwrap()).collect();
    for field in ["industry", "phones[0]", "owner", "status"] {
        assert!(left_out.contains(&field), "{left_out:?}");
    }
    assert_eq!(lenient["rows"][2]["errors"][0]["field"], "name");

    // Issues name the file's own headers, whatever field they feed.
    let chinese = dir.path().join("chinese.csv");
    std::fs::write(&chinese, "姓名,行业,负责人,部门\n王五,金融,某人,不存在的部门\n").unwrap();
    let chinese_report = dir.path().join("chinese.json");
    let out = oacis(&[
        "import",
        "customers",
        chinese.to_str().unwrap(),
        "--data",
        data_arg,
        "--dry-run",
        "--report",
        chinese_report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let columns: Vec<(String, String)> = report(&chinese_report)["rows"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap().to_owned(), e["column"].as_str().unwrap_or("<none>").to_owned()))
        .collect();
    for expected in [("owner", "负责人"), ("department", "部门")] {
        assert!(columns.contains(&(expected.0.into(), expected.1.into())), "{columns:?}");
    }
}

/// Two imports undone newest first: the older one's customers moved on only through the
/// newer import and its undo, so the older undo needs no force.
#[test]
fn imports_undone_newest_first_need_no_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let demo = oacis(&["demo", "--data", data_arg, "--customers", "5"]);
    assert!(demo.status.success(), "{}", text(&demo));
    let import = |name: &str, body: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        let out = oacis(&["import", "customers", file.to_str().unwrap(), "--data", data_arg]);
        assert!(out.status.success(), "{}", text(&out));
        let printed = text(&out);
        let id = printed.split("import ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
        (printed, id)
    };
    let (_, first) = import("ext1.csv", "external_id,name,segment\nCRM-001,王小明,silver\nCRM-002,李小红,silver\n");
    let (printed, second) = import("ext2.csv", "external_id,name,segment\nCRM-001,王小明,gold\n");
    assert!(printed.contains("updated 1"), "{printed}");
    let undo = |id: &str| oacis(&["import", "undo", id, "--data", data_arg]);
    // A user who may not write customers is refused before anything is recorded.
    let file = dir.path().join("ext1.csv");
    let service = oacis(&["import", "customers", file.to_str().unwrap(), "--data", data_arg, "--as", "demo.service"]);
    assert_eq!(service.status.code(), Some(2), "{}", text(&service));
    assert!(text(&service).contains("needs customer.write"), "{}", text(&service));
    let out = undo(&second);
    assert!(text(&out).contains("restored 1"), "{}", text(&out));
    let out = undo(&first);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("archived 2"), "{}", text(&out));
}

#[test]
fn uploads_past_the_configured_limit_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("data"),
        &["--max-upload-bytes", "100000"],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = sign_in(&server, "admin", PASSWORD, CHANGED);
    let file = format!("name\n{}", "钱二\n".repeat(20_000));
    let (status, answer) = upload(&server, &admin, json!({ "file": null, "dryRun": false }), "c.csv", file.as_bytes());
    assert_eq!(status, 413, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(code(&answer), "VALIDATION");
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("--max-upload-bytes"), "{answer}");
    let count = ok(server.gql(Some(&admin), "{ customers { totalCount } }", json!({})));
    assert_eq!(count["customers"]["totalCount"], 0);
}

/// An import asks for no more than the caller's rights allow: matching by a phone needs the
/// right to read phones, moving a customer needs `customer.transfer`, an undo needs its
/// permission over every customer the import touched; a masked export re-imports as no
/// change, and a list whose every item is left out keeps the customer's own.
#[test]
fn imports_keep_to_the_callers_rights() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("data"),
        &[],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = sign_in(&server, "admin", PASSWORD, CHANGED);
    let root = ok(server.gql(Some(&admin), "{ departments { id } }", json!({})))["departments"][0]["id"].clone();
    let user_with = |name: &str, number: &str, permissions: &[&str], scope: &str| {
        let create = "mutation($u: String!, $e: String!, $d: String!) { createUser(username: $u, employeeNo: $e, displayName: $u, department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
        let define = "mutation($n: String!, $p: [String!]!) { defineRole(name: $n, permissions: $p) { id } }";
        let grant =
            "mutation($u: String!, $r: String!, $s: Scope!) { grantRole(user: $u, role: $r, scope: $s) { id } }";
        let user = ok(server.gql(Some(&admin), create, json!({ "u": name, "e": number, "d": root })))["createUser"]
            ["id"]
            .clone();
        let role = ok(server.gql(Some(&admin), define, json!({ "n": format!("role-{name}"), "p": permissions })))
            ["defineRole"]["id"]
            .clone();
        ok(server.gql(Some(&admin), grant, json!({ "u": user, "r": role, "s": scope })));
        sign_in(&server, name, "Initial-Pass-9", "Changed-Pass-2026")
    };
    let first = ok(server.gql(
        Some(&admin),
        IMPORT,
        json!({ "i": { "text": "name,phones,emails\n甲,13912340001,a@example.com\n乙,13912340002,b@example.com\n", "dryRun": false } }),
    ));
    let first_import = first["importCustomers"]["importId"].as_str().unwrap().to_owned();
    let jia = first["importCustomers"]["rows"][0]["customer"].as_str().unwrap().to_owned();

    // Without the right to read phones, rows are not matched by one at all (a dry run would
    // say whose number it is; matching none would register the customer again).
    let writer = user_with("w.writer", "E-7001", &["customer.read", "customer.write"], "ALL");
    let probe =
        server.gql(Some(&writer), IMPORT, json!({ "i": { "text": "name,phones\n甲,13912340001\n", "key": "PHONE" } }));
    assert_eq!(code(&probe), "FORBIDDEN", "{probe}");

    // Moving a customer to another owner is a transfer, over GraphQL or in a file.
    let moved = ok(server.gql(
        Some(&writer),
        IMPORT,
        json!({ "i": { "text": format!("id,owner\n{jia},w.writer\n"), "dryRun": false } }),
    ));
    let row = &moved["importCustomers"]["rows"][0];
    assert_eq!(row["outcome"], "REFUSED", "{moved}");
    assert_eq!(row["errors"][0]["code"], "forbidden");

    // Without the right to read personal data, a row may not wipe or replace it; a row that
    // leaves it alone updates the rest.
    let emails = "query($id: String!) { customer(id: $id) { name emails phones } }";
    for text in [format!("id,name,phones,emails\n{jia},甲二,,\n"), format!("id,phones\n{jia},13700000000\n")] {
        let refused = ok(server.gql(Some(&writer), IMPORT, json!({ "i": { "text": text, "dryRun": false } })));
        let row = &refused["importCustomers"]["rows"][0];
        assert_eq!((&row["outcome"], &row["errors"][0]["code"]), (&json!("REFUSED"), &json!("forbidden")), "{refused}");
    }
    let renamed = ok(server.gql(
        Some(&writer),
        IMPORT,
        json!({ "i": { "text": format!("id,name\n{jia},甲二\n"), "dryRun": false } }),
    ));
    assert_eq!(renamed["importCustomers"]["totals"]["updated"], 1, "{renamed}");
    let now = ok(server.gql(Some(&admin), emails, json!({ "id": jia })));
    assert_eq!(
        now["customer"],
        json!({ "name": "甲二", "emails": ["a@example.com"], "phones": ["+8613912340001"] }),
        "personal data as it was"
    );

    // A masked export re-imports as no change, and the real e-mail stays.
    let exporter = user_with("w.exporter", "E-7002", &["customer.read", "customer.write", "customer.export"], "ALL");
    let export = "mutation { exportCustomers(format: CSV) { rows personal contentBase64 } }";
    let file = ok(server.gql(Some(&exporter), export, json!({})))["exportCustomers"].clone();
    assert_eq!(file["personal"], false);
    let bytes = base64::engine::general_purpose::STANDARD.decode(file["contentBase64"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("a***@example.com"), "{text}");
    let again = ok(server.gql(Some(&exporter), IMPORT, json!({ "i": { "text": text, "dryRun": false } })));
    assert_eq!(again["importCustomers"]["totals"]["unchanged"], 2, "{again}");
    let emails = "query($id: String!) { customer(id: $id) { emails phones } }";
    let now = ok(server.gql(Some(&admin), emails, json!({ "id": jia })));
    assert_eq!(now["customer"]["emails"], json!(["a@example.com"]));

    // A phone left out of a list leaves no list: the customer keeps its own.
    let lenient = ok(server.gql(
        Some(&admin),
        IMPORT,
        json!({ "i": { "text": format!("id,phones\n{jia},12345\n"), "dryRun": false, "omitInvalidValues": true } }),
    ));
    assert_eq!(lenient["importCustomers"]["totals"]["unchanged"], 1, "{lenient}");
    let now = ok(server.gql(Some(&admin), emails, json!({ "id": jia })));
    assert_eq!(now["customer"]["phones"], json!(["+8613912340001"]));

    // An id names a customer the user can see: for a user who does not read every
    // customer, a hidden customer's id and an id no one has are refused alike (a dry run
    // cannot tell whether a customer it cannot see exists). A user who reads every customer
    // keeps the id for a new customer.
    let narrow = user_with("w.narrow", "E-7004", &["customer.read", "customer.write"], "OWN");
    let fresh = "0193a5b2-0000-7000-8000-00000000f00d";
    let probe = |token: &str, id: &str| {
        let answer =
            ok(server.gql(Some(token), IMPORT, json!({ "i": { "text": format!("id,name\n{id},探\n"), "key": "ID" } })));
        answer["importCustomers"]["rows"][0].clone()
    };
    let (hidden, missing) = (probe(&narrow, &jia), probe(&narrow, fresh));
    assert_eq!(hidden["outcome"], "REFUSED", "{hidden}");
    assert_eq!(hidden["errors"], missing["errors"], "{hidden} against {missing}");
    assert_eq!(hidden["errors"][0]["code"], "not_found", "{hidden}");
    let kept = probe(&writer, fresh);
    assert_eq!((&kept["outcome"], &kept["customer"]), (&json!("ACCEPTED"), &json!(fresh)), "{kept}");
    let taken = probe(&writer, &jia);
    assert_eq!(taken["outcome"], "WOULD_UPDATE", "visible to this writer: {taken}");

    // Undo needs its permission over every customer the import touched.
    let own = user_with("w.undoer", "E-7003", &["customer.read", "customer.import_undo"], "OWN");
    let undo = "mutation($id: String!) { undoCustomerImport(id: $id, force: true) { archived } }";
    let refused = server.gql(Some(&own), undo, json!({ "id": first_import }));
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(!refused.to_string().contains(&jia), "names no customer outside the scope: {refused}");
    let count = "{ customers(filter: {status: ACTIVE}) { totalCount } }";
    assert_eq!(ok(server.gql(Some(&admin), count, json!({})))["customers"]["totalCount"], 2);

    // A file with no column for the name registers no one: refused whole, naming its headers;
    // one named as a workbook that is text is refused, not read as CSV; a header alone is
    // refused.
    let unnamed = server.gql(Some(&admin), IMPORT, json!({ "i": { "text": "客户名,phones\n张三,13912340009\n" } }));
    assert_eq!(code(&unnamed), "VALIDATION", "{unnamed}");
    assert!(unnamed["errors"][0]["message"].as_str().unwrap().contains("客户名, phones"), "{unnamed}");
    let (status, body) = upload(&server, &admin, json!({ "file": null }), "bad.xlsx", b"name\n\xe4\xb8\x81\n");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, code(&answer)), (200, "VALIDATION"), "{body}");
    assert!(body.contains("not an .xlsx file"), "{body}");
    let header_only = server.gql(Some(&admin), IMPORT, json!({ "i": { "text": "name,phones\n" } }));
    assert!(header_only["errors"][0]["message"].as_str().unwrap().contains("no rows"), "{header_only}");

    // The list of imports keeps to the documented page size.
    let wide = server.gql(Some(&admin), "{ customerImports(first: 100000) { id } }", json!({}));
    assert_eq!(code(&wide), "VALIDATION", "{wide}");
    assert!(ok(server.gql(Some(&admin), "{ customerImports(first: 100) { id } }", json!({})))["customerImports"]
        .as_array()
        .is_some_and(|list| !list.is_empty()));

    // An offset from UTC outside ±14:00 is refused, not clamped.
    let far = server.gql(Some(&admin), IMPORT, json!({ "i": { "text": "name\n丙\n", "utcOffsetMinutes": 100_000 } }));
    assert_eq!(code(&far), "VALIDATION", "{far}");
}

/// A common name matches many customers of a large directory: a row's warning names five of
/// them and counts the rest, so that reports stay readable (and small) at a million.
#[test]
fn a_row_with_many_possible_duplicates_names_five_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let demo = oacis(&["demo", "--data", data_arg, "--customers", "5"]);
    assert!(demo.status.success(), "{}", text(&demo));
    // Organisations: their name is a duplicate key (a person's is not).
    let many: String = (0..8).map(|i| format!("恒信科技有限公司,organisation,M-{i}\n")).collect();
    let file = dir.path().join("many.csv");
    std::fs::write(&file, format!("name,kind,external_id\n{many}")).unwrap();
    let out = oacis(&["import", "customers", file.to_str().unwrap(), "--data", data_arg, "--key", "none"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&file, "name,kind,external_id\n恒信科技有限公司,organisation,N-1\n").unwrap();
    let report_path = dir.path().join("r.json");
    let out = oacis(&[
        "import",
        "customers",
        file.to_str().unwrap(),
        "--data",
        data_arg,
        "--key",
        "none",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report = report(&report_path);
    let warning = report["rows"][0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "possible_duplicate")
        .unwrap_or_else(|| panic!("{report}"))["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(warning.matches(" (name)").count(), 5, "{warning}");
    assert!(warning.ends_with("; and 3 more"), "{warning}");
}
