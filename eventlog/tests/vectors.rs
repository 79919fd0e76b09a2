//! The checked-in test vectors (`tests/vectors/`) pin the record encoding and the export
//! format, and an independent verifier written from `FORMAT.md` alone (no use of this crate's
//! codec) accepts them and a real store's export.
//!
//! To regenerate after a deliberate format change: `OACIS_BLESS_VECTORS=1 cargo test -p
//! oacis-eventlog --test vectors`, then review the diff.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use oacis_eventlog::{
    codec, export, AppendMeta, CommandId, EventKind, EventStore, ExpectedVersion, Hash32, Record, Seq, StreamId,
    Timestamp, Version,
};
use serde_json::Value;
use uuid::Uuid;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/chain.jsonl");
const BODIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/bodies.hex");

/// stream, version, kind, schema, actor, causation id, client address, payload.
type Spec<'a> = (&'a str, u64, &'a str, u32, &'a str, Option<u128>, Option<&'a str>, &'a str);

/// Four records covering every optional field present and absent, Unicode text, and escapes.
fn vector_records() -> Vec<Record> {
    let specs: [Spec; 4] = [
        ("customer-0001", 1, "CustomerRegistered", 1, "user-admin", None, None, r#"{"name":"张三","tags":["vip"]}"#),
        (
            "customer-0001",
            2,
            "CustomerRenamed",
            2,
            "user-李四",
            Some(11),
            Some("192.0.2.7:51000"),
            r#"{"name":"Zhang San \"Sam\""}"#,
        ),
        ("task-0009", 1, "TaskCreated", 1, "system", Some(12), None, "{\n  \"title\": \"Call back\\ttomorrow\"\n}"),
        (
            "customer-0001",
            3,
            "PurchaseRecorded",
            1,
            "user-admin",
            None,
            Some("[2001:db8::1]:443"),
            r#"{"amount_minor":129900,"currency":"CNY"}"#,
        ),
    ];
    let mut prev = Hash32::GENESIS;
    let mut records = Vec::new();
    for (i, (stream, version, kind, schema, actor, causation, client, payload)) in specs.into_iter().enumerate() {
        let n = i as u64 + 1;
        let mut record = Record {
            seq: Seq(n),
            stream: StreamId::new(stream).unwrap(),
            version: Version(version),
            kind: EventKind::new(kind).unwrap(),
            schema,
            recorded_at: Timestamp(1_795_000_000_000_000 + n as i64 * 1_234_567),
            meta: AppendMeta {
                command_id: CommandId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + u128::from(n))),
                actor: actor.to_owned(),
                correlation_id: Uuid::from_u128(0xC0_FFEE),
                causation_id: causation.map(Uuid::from_u128),
                client_addr: client.map(str::to_owned),
            },
            payload: payload.as_bytes().to_vec(),
            prev_hash: prev,
            hash: Hash32::GENESIS,
        };
        let _stored = codec::seal(&mut record);
        prev = record.hash;
        records.push(record);
    }
    records
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_encoding_and_the_export_match_the_checked_in_vectors() -> anyhow::Result<()> {
    let records = vector_records();
    let mut lines = String::new();
    let mut bodies = String::new();
    for record in &records {
        lines.push_str(&export::line_of(record)?);
        lines.push('\n');
        bodies.push_str(&hex(&codec::body_bytes(record)));
        bodies.push('\n');
    }
    if std::env::var_os("OACIS_BLESS_VECTORS").is_some() {
        std::fs::write(VECTORS, &lines)?;
        std::fs::write(BODIES, &bodies)?;
    }
    assert_eq!(std::fs::read_to_string(VECTORS)?, lines, "export format changed; see FORMAT.md");
    assert_eq!(std::fs::read_to_string(BODIES)?, bodies, "record encoding changed; see FORMAT.md");
    let check = export::verify_export(std::fs::File::open(VECTORS).map(std::io::BufReader::new)?, None, &mut |_| {})?;
    assert_eq!(check.report.records, 4);
    Ok(())
}

// ---- An independent verifier, written from FORMAT.md alone ----

fn field<'a>(line: &'a Value, name: &str) -> &'a Value {
    line.get(name).unwrap_or_else(|| panic!("missing field {name}"))
}

fn text(line: &Value, name: &str) -> String {
    field(line, name).as_str().unwrap_or_else(|| panic!("{name} is not text")).to_owned()
}

fn number(line: &Value, name: &str) -> u64 {
    field(line, name).as_u64().unwrap_or_else(|| panic!("{name} is not a number"))
}

fn put_text(body: &mut Vec<u8>, value: &[u8]) {
    body.extend_from_slice(&(value.len() as u32).to_be_bytes());
    body.extend_from_slice(value);
}

fn uuid_bytes(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    (0..16).map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("uuid hex")).collect()
}

fn micros_since_epoch(rfc3339: &str) -> i64 {
    // YYYY-MM-DDThh:mm:ss.ffffffZ; days from civil date (Howard Hinnant's algorithm).
    let num = |a: usize, b: usize| rfc3339[a..b].parse::<i64>().expect("digits");
    let (y, m, d) = (num(0, 4), num(5, 7), num(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + num(11, 13) * 3600 + num(14, 16) * 60 + num(17, 19);
    secs * 1_000_000 + num(20, 26)
}

/// The hash of an export line's record per FORMAT.md's body, with `prev` as its prev_hash.
fn stranger_hash(line: &Value, prev: &str) -> String {
    let at = micros_since_epoch(&text(line, "recorded_at"));
    let mut body = Vec::new();
    put_text(&mut body, b"oacis.event.v1");
    body.extend((0..32).map(|k| u8::from_str_radix(&prev[2 * k..2 * k + 2], 16).unwrap()));
    body.extend_from_slice(&number(line, "seq").to_be_bytes());
    put_text(&mut body, text(line, "stream").as_bytes());
    body.extend_from_slice(&number(line, "version").to_be_bytes());
    put_text(&mut body, text(line, "kind").as_bytes());
    body.extend_from_slice(&(number(line, "schema") as u32).to_be_bytes());
    body.extend_from_slice(&at.to_be_bytes());
    put_text(&mut body, text(line, "actor").as_bytes());
    body.extend(uuid_bytes(&text(line, "command_id")));
    body.extend(uuid_bytes(&text(line, "correlation_id")));
    match field(line, "causation_id").as_str() {
        None => body.push(0),
        Some(id) => {
            body.push(1);
            body.extend(uuid_bytes(id));
        }
    }
    match field(line, "client_addr").as_str() {
        None => body.push(0),
        Some(addr) => {
            body.push(1);
            put_text(&mut body, addr.as_bytes());
        }
    }
    put_text(&mut body, text(line, "payload").as_bytes());
    blake3::hash(&body).to_hex().to_string()
}

/// Verifies an export per FORMAT.md (rules 1-7 and the final newline); returns the number of
/// records, or the first problem naming its line, as the page of Python there does.
fn stranger_verify(file: &str) -> Result<usize, String> {
    let Some(body_of_file) = file.strip_suffix('\n').or(file.is_empty().then_some("")) else {
        return Err(format!("line {}: no final newline; the file may be cut short", file.lines().count()));
    };
    let mut prev = "0".repeat(64);
    let mut versions: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut last_at = i64::MIN;
    let mut count = 0;
    let lines = if file.is_empty() { Vec::new() } else { body_of_file.split('\n').collect() };
    for (i, raw) in lines.into_iter().enumerate() {
        let n = i + 1;
        let line: Value = serde_json::from_str(raw).map_err(|e| format!("line {n}: unreadable: {e}"))?;
        let stream = text(&line, "stream");
        let version = number(&line, "version");
        let at = micros_since_epoch(&text(&line, "recorded_at"));
        let hash = stranger_hash(&line, &prev);
        let sized = text(&line, "payload").len() <= 65_536
            && text(&line, "actor").len() <= 256
            && number(&line, "schema") >= 1
            && field(&line, "client_addr").as_str().is_none_or(|a| a.len() <= 128);
        let ok = number(&line, "seq") == n as u64
            && text(&line, "prev_hash") == prev
            && text(&line, "hash") == hash
            && sized
            && version == versions.get(&stream).copied().unwrap_or(0) + 1
            && at >= last_at;
        if !ok {
            return Err(format!("line {n}: first bad seq {n}"));
        }
        prev = hash;
        versions.insert(stream, version);
        last_at = at;
        count += 1;
    }
    Ok(count)
}

/// `file` with `edit` applied to its line `at` (0-based) and every hash from there on
/// computed again, as a forger who knows the format would.
fn rehashed(file: &str, at: usize, edit: impl Fn(&mut Value)) -> String {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, raw) in file.lines().enumerate() {
        let mut line: Value = serde_json::from_str(raw).unwrap();
        if i == at {
            edit(&mut line);
        }
        if i >= at {
            line["prev_hash"] = Value::String(prev.clone());
            line["hash"] = Value::String(stranger_hash(&line, &prev));
        }
        prev = text(&line, "hash");
        // Members in the export's order (FORMAT.md).
        let members: Vec<String> = [
            "seq",
            "stream",
            "version",
            "kind",
            "schema",
            "recorded_at",
            "actor",
            "command_id",
            "correlation_id",
            "causation_id",
            "client_addr",
            "payload",
            "prev_hash",
            "hash",
        ]
        .iter()
        .map(|k| format!("\"{k}\":{}", serde_json::to_string(&line[*k]).unwrap()))
        .collect();
        out.push_str(&format!("{{{}}}\n", members.join(",")));
    }
    out
}

#[test]
fn a_verifier_written_from_the_format_document_accepts_the_vectors_and_a_real_export() -> anyhow::Result<()> {
    assert_eq!(stranger_verify(&std::fs::read_to_string(VECTORS)?), Ok(4));
    assert_eq!(stranger_verify(""), Ok(0));
    let dir = tempfile::tempdir()?;
    let store = common::open(dir.path());
    common::runtime().block_on(async {
        for i in 0..20u64 {
            let name = format!("customer-{}", i % 4);
            store
                .append(
                    common::stream(&name),
                    ExpectedVersion::Any,
                    vec![common::event("Noted", i)],
                    common::meta(u128::from(i)),
                )
                .await?;
        }
        anyhow::Ok(())
    })?;
    let mut out = Vec::new();
    export::write_export(store.records(Seq::FIRST), &mut out, &mut |_| {})?;
    assert_eq!(stranger_verify(std::str::from_utf8(&out)?), Ok(20));
    Ok(())
}

#[test]
fn the_independent_verifier_and_this_crate_refuse_the_same_damaged_files() {
    let file = std::fs::read_to_string(VECTORS).expect("vectors");
    let lines: Vec<&str> = file.lines().collect();
    let damaged = [
        (file.replacen("张三", "张四", 1), "line 1: first bad seq 1"),
        (file.trim_end_matches('\n').to_owned(), "line 4: no final newline; the file may be cut short"),
        (format!("{}\n{{\"seq\":2,\n", lines[0]), "line 2: unreadable"),
        (format!("{}\n{}\n", lines[0], lines[2]), "line 2: first bad seq 2"),
        // Rehashed, and so linked, but past the table's sizes.
    ];
    for (bad, problem) in damaged {
        let theirs = stranger_verify(&bad).expect_err(problem);
        assert!(theirs.starts_with(problem), "{theirs}");
        let ours = export::verify_export(bad.as_bytes(), None, &mut |_| {});
        assert!(ours.is_err(), "this crate accepted what the outside verifier refused: {problem}");
    }
    // Rehashed, and so linked, but past the table's sizes: refused by both for that.
    let oversized = [
        (rehashed(&file, 1, |l| l["actor"] = Value::String("a".repeat(257))), 2, "actor is 257 bytes"),
        (rehashed(&file, 2, |l| l["schema"] = Value::from(0)), 3, "schema is 0"),
        (
            rehashed(&file, 1, |l| l["payload"] = Value::String(format!("\"{}\"", "x".repeat(65_535)))),
            2,
            "payload is 65537 bytes",
        ),
    ];
    for (bad, seq, why) in oversized {
        let theirs = stranger_verify(&bad).expect_err(why);
        assert!(theirs.starts_with(&format!("line {seq}: first bad seq {seq}")), "{theirs}");
        let ours = export::verify_export(bad.as_bytes(), None, &mut |_| {}).expect_err(why).to_string();
        assert!(ours.contains(why) && ours.contains(&format!("seq {seq}")), "{ours}");
    }
}

/// FORMAT.md allows any time in years 0000-9999 and asks only that it never decrease: a log
/// may start before 1970 (a migrated one), and only a step back is refused.
#[test]
fn a_log_may_start_before_1970_and_only_a_step_back_in_time_is_refused() {
    let mut records = vector_records();
    let mut prev = Hash32::GENESIS;
    for (i, record) in records.iter_mut().enumerate() {
        record.recorded_at = Timestamp(-62_135_596_800_000_000 + i as i64);
        record.prev_hash = prev;
        let _stored = codec::seal(record);
        prev = record.hash;
    }
    let mut check = oacis_eventlog::verify::ChainCheck::new();
    for record in &records {
        check.check(record).unwrap_or_else(|e| panic!("seq {}: {e}", record.seq));
    }
    // The second record a microsecond before the first: refused there.
    let mut back = vector_records();
    back[1].recorded_at = Timestamp(back[0].recorded_at.0 - 1);
    back[1].prev_hash = back[0].hash;
    let _stored = codec::seal(&mut back[1]);
    let mut check = oacis_eventlog::verify::ChainCheck::new();
    check.check(&back[0]).unwrap();
    let refused = check.check(&back[1]).unwrap_err().to_string();
    assert!(refused.contains("recorded_at goes back in time"), "{refused}");
}
