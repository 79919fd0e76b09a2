//! Personal data encrypted in the log, and erasure that keeps the chain verifiable: the raw
//! files of the data folder and exports never hold personal data in plain text; erasing a
//! customer empties its personal fields everywhere, destroys its key (its bytes are in no
//! file afterwards), keeps every other customer intact and every export verifying; a key
//! store restored from before the erasure does not bring the data back; and a kill -9 in
//! the middle of registrations loses no key of an acknowledged registration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oacis_tests::{code, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Sesame-Open-2026";
const CHANGED: &str = "Sesame-Changed-77";

fn oacis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oacis")).args(args).output().expect("run oacis")
}

fn start(data: &Path) -> Server {
    Server::start(env!("CARGO_BIN_EXE_oacis"), data, &[], &[("OACIS_ADMIN_PASSWORD", PASSWORD)])
}

fn sign_in(server: &Server, first: bool) -> String {
    if first {
        return server.first_sign_in("admin", PASSWORD, CHANGED);
    }
    let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
    let answer = server.gql(None, sign_in, json!({ "n": "admin", "p": CHANGED }));
    answer["data"]["signIn"]["token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

fn ok(answer: Value) -> Value {
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"].clone()
}

const REGISTER: &str = "mutation($p: ProfileInput!) { registerCustomer(profile: $p) { id } }";
const CUSTOMER: &str =
    "query($id: String!) { customer(id: $id) { name phones emails idNumber personalDataErased version } }";

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}

/// The id (32 hex digits) of the key that sealed the first sealed record of `stream` in an
/// export: sealed values name their key (`"key":"<id>"`, escaped inside the export's JSON).
fn key_id_in(export: &str, stream: &str) -> String {
    let line = export.lines().find(|l| l.contains(stream) && l.contains("$sealed")).expect("a sealed record");
    let at = line.find("key\\\":\\\"").or_else(|| line.find("key\":\"")).expect("a key id");
    let rest = line[at + 3..].trim_start_matches(['\\', '"', ':']);
    rest[..32].to_owned()
}

/// The wrapped bytes of key `id` in the key journal (see `oacis_eventlog::keys`: tag 5, id,
/// empty subject, KEK id, wrapped key).
fn wrapped_key(data: &Path, id: &str) -> Vec<u8> {
    let journal = std::fs::read(data.join("keys").join("journal")).unwrap();
    let id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap()).collect();
    let key_record = [&[5u8][..], &id, &[0, 0]].concat();
    let start = journal.windows(key_record.len()).position(|w| w == key_record.as_slice()).expect("key record");
    let wrapped = start + key_record.len() + 8;
    journal[wrapped..wrapped + 48].to_vec()
}

#[test]
fn personal_data_is_sealed_on_disk_and_erasure_shreds_it_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let people = [
        ("王秘密", "+8613811112222", "wang.secret@example.com", Some("11010519491231002X")),
        ("李保留", "+8613933334444", "li.kept@example.com", None),
        ("赵保留", "+8613755556666", "zhao.kept@example.com", None),
    ];
    let server = start(&data);
    let admin = sign_in(&server, true);
    let mut ids = Vec::new();
    for (name, phone, email, id_number) in people {
        let mut profile =
            json!({ "kind": "PERSON", "name": name, "source": "REFERRAL", "phones": [phone], "emails": [email] });
        if let Some(n) = id_number {
            profile["idNumber"] = json!(n);
        }
        ids.push(
            ok(server.gql(Some(&admin), REGISTER, json!({ "p": profile })))["registerCustomer"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A user with a phone and an e-mail (users' personal data is sealed too).
    let root = ok(server.gql(Some(&admin), "{ departments { id } }", json!({})))["departments"][0]["id"].clone();
    let create = "mutation($d: String!) { createUser(username: \"qian.leaver\", employeeNo: \"E-9001\", displayName: \"钱离职\", department: $d, initialPassword: \"Initial-Pass-9\") { id } }";
    let user =
        ok(server.gql(Some(&admin), create, json!({ "d": root })))["createUser"]["id"].as_str().unwrap().to_owned();
    let profile = "mutation($u: String!, $d: String!, $p: String, $e: String) { updateUserProfile(user: $u, displayName: \"钱离职\", department: $d, phone: $p, email: $e) { id } }";
    let user_profile = json!({ "u": user, "d": root, "p": "+8613600007777", "e": "qian.private@example.com" });
    ok(server.gql(Some(&admin), profile, user_profile.clone()));
    // A fourth customer shares the first one's phone: a possible duplicate, until erasure.
    let same_phone = json!({ "kind": "PERSON", "name": "王重复", "source": "OTHER", "phones": ["+8613811112222"] });
    ok(server.gql(Some(&admin), REGISTER, json!({ "p": same_phone })));
    let pairs = "{ possibleDuplicates(first: 10) { totalCount } }";
    assert_eq!(ok(server.gql(Some(&admin), pairs, json!({})))["possibleDuplicates"]["totalCount"], 1);
    // The event feed carries ciphertext, the API plaintext.
    let feed = server.gql(Some(&admin), "{ events(first: 100) { payload } }", json!({})).to_string();
    assert!(!feed.contains("13811112222") && feed.contains("$sealed"), "{feed}");
    let a = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[0] })));
    assert_eq!(a["customer"]["phones"], json!(["+8613811112222"]));
    assert_eq!(a["customer"]["idNumber"], "11010519491231002X");
    server.kill();

    // No personal data in plain text in any file of the data folder, nor in an export.
    for needle in ["13600007777", "qian.private"] {
        assert!(holding(&data, needle.as_bytes()).is_empty(), "{needle} on disk");
    }
    for (_, phone, email, id_number) in people {
        let digits = phone.trim_start_matches("+86");
        for needle in [digits, email].into_iter().chain(id_number) {
            assert!(
                holding(&data, needle.as_bytes()).is_empty(),
                "{needle} on disk: {:?}",
                holding(&data, needle.as_bytes())
            );
        }
    }
    let before = dir.path().join("before.jsonl");
    let out = oacis(&["export", "--data", data.to_str().unwrap(), "--out", before.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = std::fs::read_to_string(&before).unwrap();
    assert!(!exported.contains("13811112222") && !exported.contains("wang.secret"), "plain text in the export");
    let wrapped = wrapped_key(&data, &key_id_in(&exported, &format!("customer-{}", ids[0])));
    assert_eq!(holding(&data, &wrapped).len(), 1, "the wrapped key is in the key journal only");
    let old_journal = std::fs::read(data.join("keys").join("journal")).unwrap();

    // Erase the first customer.
    let server = start(&data);
    let admin = sign_in(&server, false);
    let erase = "mutation($id: String!, $r: String!) { erasePersonalData(id: $id, reason: $r) { id } }";
    assert_eq!(code(&server.gql(None, erase, json!({ "id": ids[0], "r": "本人申请" }))), "UNAUTHENTICATED");
    assert_eq!(code(&server.gql(Some(&admin), erase, json!({ "id": ids[0], "r": " " }))), "VALIDATION");
    let unknown = "01930000-0000-7000-8000-00000000beef";
    assert_eq!(code(&server.gql(Some(&admin), erase, json!({ "id": unknown, "r": "x" }))), "NOT_FOUND");
    // The user's erasure: an administrator's act; the account and its name remain.
    let erase_user = "mutation($u: String!, $r: String!) { eraseUserPersonalData(user: $u, reason: $r) { id } }";
    let users = "{ users { username phone email personalDataErased } }";
    let shown = ok(server.gql(Some(&admin), users, json!({}))).to_string();
    assert!(shown.contains("qian.private@example.com"), "{shown}");
    assert_eq!(code(&server.gql(None, erase_user, json!({ "u": user, "r": "离职" }))), "UNAUTHENTICATED");
    // Someone without `user.admin` or `customer.erase` (here: no role at all) cannot erase.
    let sign_in_as = "mutation { signIn(input: {name: \"qian.leaver\", password: \"Initial-Pass-9\"}) { token } }";
    let first = server.gql(None, sign_in_as, json!({}))["data"]["signIn"]["token"].as_str().unwrap().to_owned();
    let change =
        "mutation { changePassword(current: \"Initial-Pass-9\", newPassword: \"Leaver-Pass-2026\") { token } }";
    let qian = ok(server.gql(Some(&first), change, json!({})))["changePassword"]["token"].as_str().unwrap().to_owned();
    assert_eq!(code(&server.gql(Some(&qian), erase_user, json!({ "u": user, "r": "x" }))), "FORBIDDEN");
    assert_eq!(code(&server.gql(Some(&qian), erase, json!({ "id": ids[1], "r": "x" }))), "NOT_FOUND");
    ok(server.gql(Some(&admin), erase_user, json!({ "u": user, "r": "离职后申请删除" })));
    let listed = ok(server.gql(Some(&admin), users, json!({})))["users"].clone();
    let qian = listed.as_array().unwrap().iter().find(|u| u["username"] == "qian.leaver").unwrap().clone();
    assert_eq!(qian, json!({ "username": "qian.leaver", "phone": null, "email": null, "personalDataErased": true }));
    assert_eq!(code(&server.gql(Some(&admin), profile, user_profile)), "VALIDATION", "not recorded again");
    ok(server.gql(Some(&admin), profile, json!({ "u": user, "d": root })));
    let head = |s: &Server| ok(s.gql(Some(&admin), "{ verifyChain { headSeq ok } }", json!({})))["verifyChain"].clone();
    let registered_at = head(&server)["headSeq"].clone();
    ok(server.gql(Some(&admin), erase, json!({ "id": ids[0], "r": "本人申请删除个人信息" })));
    let erased = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[0] })))["customer"].clone();
    assert_eq!(erased["name"], "王秘密", "names remain");
    assert_eq!((erased["phones"].clone(), erased["emails"].clone()), (json!([]), json!([])));
    assert_eq!((erased["idNumber"].clone(), erased["personalDataErased"].clone()), (Value::Null, json!(true)));
    let kept = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[1] })))["customer"].clone();
    assert_eq!((kept["phones"].clone(), kept["personalDataErased"].clone()), (json!(["+8613933334444"]), json!(false)));
    // As of before the erasure, in history, search and duplicate checks: empty too.
    let past =
        "query($id: String!, $at: Int!) { customer(id: $id, asOfSeq: $at) { phones idNumber personalDataErased } }";
    let then = ok(server.gql(Some(&admin), past, json!({ "id": ids[0], "at": registered_at })))["customer"].clone();
    assert_eq!((then["phones"].clone(), then["personalDataErased"].clone()), (json!([]), json!(true)));
    let history =
        "query($id: String!) { recordHistory(recordType: \"customer\", id: $id) { kind changes { field after } } }";
    let history = ok(server.gql(Some(&admin), history, json!({ "id": ids[0] }))).to_string();
    assert!(!history.contains("13811112222") && history.contains("CustomerPersonalDataErased"), "{history}");
    // Only the customer that shares the phone and was not erased is found by it.
    let search = "query($t: String!) { customers(first: 10, filter: {text: $t}) { nodes { name } } }";
    let found = ok(server.gql(Some(&admin), search, json!({ "t": "13811112222" })))["customers"]["nodes"].clone();
    assert_eq!(found, json!([{ "name": "王重复" }]));
    let found = ok(server.gql(Some(&admin), search, json!({ "t": "13933334444" })))["customers"]["nodes"].clone();
    assert_eq!(found, json!([{ "name": "李保留" }]));
    assert_eq!(ok(server.gql(Some(&admin), pairs, json!({})))["possibleDuplicates"]["totalCount"], 0);
    // Personal data is not recorded again for an erased customer; erasing again writes nothing.
    let update = "mutation($id: String!, $p: ProfileInput!) { updateCustomerProfile(id: $id, profile: $p) { id } }";
    let refill = json!({ "id": ids[0], "p": { "kind": "PERSON", "name": "王秘密", "source": "REFERRAL", "phones": ["+8613811112222"] } });
    assert_eq!(code(&server.gql(Some(&admin), update, refill)), "VALIDATION");
    let rename =
        json!({ "id": ids[0], "p": { "kind": "PERSON", "name": "王已删", "source": "REFERRAL", "segment": "vip" } });
    ok(server.gql(Some(&admin), update, rename));
    assert_eq!(ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[0] })))["customer"]["name"], "王已删");
    let at = head(&server);
    ok(server.gql(Some(&admin), erase, json!({ "id": ids[0], "r": "again" })));
    assert_eq!(head(&server), at, "a second erasure appends nothing");
    assert_eq!(at["ok"], true);
    server.kill();

    // The key's bytes are in no file; the log and both exports verify; the kept customers
    // still open.
    assert!(holding(&data, &wrapped).is_empty(), "wrapped key still on disk: {:?}", holding(&data, &wrapped));
    let after = dir.path().join("after.jsonl");
    assert!(oacis(&["export", "--data", data.to_str().unwrap(), "--out", after.to_str().unwrap()]).status.success());
    for args in [
        vec!["verify", "--data", data.to_str().unwrap()],
        vec!["verify", "--file", before.to_str().unwrap()],
        vec!["verify", "--file", after.to_str().unwrap()],
    ] {
        let out = oacis(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let after_text = std::fs::read_to_string(&after).unwrap();
    assert!(after_text.starts_with(exported.as_str()), "the log's records are unchanged by erasure");

    // A key store restored from before the erasure does not bring the data back.
    std::fs::write(data.join("keys").join("journal"), &old_journal).unwrap();
    let server = start(&data);
    let admin = sign_in(&server, false);
    let restored = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[0] })))["customer"].clone();
    assert_eq!((restored["phones"].clone(), restored["personalDataErased"].clone()), (json!([]), json!(true)));
    let kept = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[2] })))["customer"].clone();
    assert_eq!(kept["phones"], json!(["+8613755556666"]));
    server.kill();
    assert!(holding(&data, &wrapped).is_empty(), "the restored key was destroyed again on start");

    // Rotation: every key rewrapped under a new KEK, the log untouched; the old KEK no longer
    // opens the store, the new one does.
    // The records and head (the checkpoint beside them is rewritten by any open).
    let verify = || {
        let out = String::from_utf8_lossy(&oacis(&["verify", "--data", data.to_str().unwrap()]).stdout).into_owned();
        out.split(" (").next().unwrap_or_default().to_owned()
    };
    let log_before = verify();
    let new_kek = dir.path().join("new.kek");
    let out = oacis(&["keys", "rotate", "--data", data.to_str().unwrap(), "--new-key-file", new_kek.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rewrapped "), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(verify(), log_before, "the same records and head");
    let out = oacis(&["rebuild", "--data", data.to_str().unwrap()]);
    assert!(!out.status.success(), "the old KEK must not open the rotated key store");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key-encryption key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &data,
        &["--key-file", new_kek.to_str().unwrap()],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    let admin = sign_in(&server, false);
    let kept = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": ids[1] })))["customer"].clone();
    assert_eq!(kept["phones"], json!(["+8613933334444"]));
}

#[test]
fn a_kill_during_registrations_loses_no_key_of_an_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut first = true;
    for round in 0..3u64 {
        let server = start(&data);
        let admin = sign_in(&server, first);
        first = false;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                let (addr, admin, stop, acknowledged) =
                    (server.addr.clone(), admin.clone(), stop.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let phone = format!("+86139{:08}", round * 10_000_000 + worker * 1_000_000 + n);
                        let profile =
                            json!({ "kind": "PERSON", "name": "压测客户", "source": "OTHER", "phones": [phone] });
                        let body = json!({ "query": REGISTER, "variables": { "p": profile } }).to_string();
                        // Once the server is killed, connecting fails (the harness panics): stop.
                        let sent = std::panic::catch_unwind(|| {
                            oacis_tests::http(&addr, "POST", "/graphql", Some(&admin), body.as_bytes())
                        });
                        let Ok((status, answer)) = sent else { break };
                        let Ok(answer) = serde_json::from_str::<Value>(&answer) else { continue };
                        if let (200, Some(id)) = (status, answer["data"]["registerCustomer"]["id"].as_str()) {
                            acknowledged.lock().unwrap().push((id.to_owned(), phone));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        // SIGKILL while registrations are in flight.
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "only {} registrations acknowledged", acknowledged.len());
    let server = start(&data);
    let admin = sign_in(&server, false);
    for (id, phone) in &acknowledged {
        let answer = ok(server.gql(Some(&admin), CUSTOMER, json!({ "id": id })));
        assert_eq!(answer["customer"]["phones"], json!([phone]), "customer {id}");
    }
}

/// The customers merged into an erased one are the same person's other records: erased with
/// it, atomically; and no other record of a person is merged into an erased customer.
#[test]
fn erasing_a_customer_erases_the_records_merged_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data);
    let token = sign_in(&server, true);
    let register = |name: &str, phone: &str| {
        let profile = json!({ "kind": "PERSON", "name": name, "source": "OTHER", "phones": [phone] });
        ok(server.gql(Some(&token), REGISTER, json!({ "p": profile })))["registerCustomer"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let merge = "mutation($d: String!, $s: String!) { mergeCustomers(duplicate: $d, survivor: $s) { events } }";
    let (first, second, survivor) =
        (register("钱一", "+8613722223333"), register("钱二", "+8613722224444"), register("钱三", "+8613722225555"));
    // first into second, second into survivor: both are the survivor's.
    ok(server.gql(Some(&token), merge, json!({ "d": first, "s": second })));
    ok(server.gql(Some(&token), merge, json!({ "d": second, "s": survivor })));
    let erase = "mutation($id: String!) { erasePersonalData(id: $id, reason: \"本人申请\") { events } }";
    let erased = ok(server.gql(Some(&token), erase, json!({ "id": survivor })));
    assert_eq!(erased["erasePersonalData"]["events"], 3, "{erased}");
    for id in [&first, &second, &survivor] {
        let customer = ok(server.gql(Some(&token), CUSTOMER, json!({ "id": id })))["customer"].clone();
        assert_eq!(customer["phones"], json!([]), "{customer}");
        assert_eq!(customer["personalDataErased"], true, "{customer}");
    }
    let search = "query($t: String!) { customers(first: 10, filter: {text: $t}) { totalCount } }";
    for phone in ["13722223333", "13722224444", "13722225555"] {
        let found = ok(server.gql(Some(&token), search, json!({ "t": phone })));
        assert_eq!(found["customers"]["totalCount"], 0, "{phone}: {found}");
    }
    // Another record of the person merged into the erased survivor would give it personal data
    // again: refused, and nothing is written.
    let later = register("钱四", "+8613722226666");
    let head = |server: &Server| ok(server.gql(Some(&token), "{ verifyChain { headSeq } }", json!({})));
    let before = head(&server);
    let refused = server.gql(Some(&token), merge, json!({ "d": later, "s": survivor }));
    assert!(refused["errors"][0]["message"].as_str().unwrap_or_default().contains("was erased"), "{refused}");
    assert_eq!(head(&server), before);
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
}
