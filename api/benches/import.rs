//! Importing customers: rows/s of a real import of N generated valid rows (`oacis import
//! customers`' path: read the CSV, validate and plan every row, decide it through the domain,
//! write in batches of 200 rows through the command path, personal data sealed), against a
//! dry run of the same file (read, validate, match and decide; nothing written), and against
//! the log's own batched append rate for the very events the import wrote (read back,
//! opened, and appended to a fresh sealed store one `append_many` per import batch, one after
//! the other as the import does), all in the same run.
//!
//! `cargo bench -p oacis-api --bench import` (sizes in rows: `OACIS_BENCH_ROWS=10000,100000`;
//! scratch folder: `OACIS_BENCH_DIR`).

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use clap::Parser;
use oacis_api::access::Caller;
use oacis_api::server::{App, ServeArgs};
use oacis_api::transfer::import::{import, ImportOptions};
use oacis_eventlog::keys::{Kek, KeyStore};
use oacis_eventlog::seal::open_record;
use oacis_eventlog::{
    AppendMeta, EventStore, ExpectedVersion, NewEvent, Record, Seq, SledConfig, SledStore, StreamAppend, Version,
};

/// The allocator the `oacis` binary runs with, so that these figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    serve: ServeArgs,
}

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"];
const GIVEN: &[&str] = &["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明"];
const INDUSTRIES: &[&str] = &["制造业", "信息技术", "金融", "零售", "教育", "医疗", "物流", "能源"];
const TAGS: &[&str] = &["VIP", "重点客户", "老客户", "需回访", "大客户", "新客户"];
const SEGMENTS: &[&str] = &["enterprise", "smb", "consumer", "government", "education"];
const SOURCES: &[&str] = &["website", "referral", "exhibition", "cold_call", "partner", "wechat"];

/// A deterministic stream of numbers (SplitMix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[usize::try_from(self.next() % from.len() as u64).unwrap()]
    }
}

/// `rows` valid customers as a CSV file: 70 % people, 30 % organisations, 1-2 mobile
/// phones, 0-2 e-mails, 0-2 tags, a registration time in the past three years.
fn csv(rows: usize) -> Vec<u8> {
    let mut mix = Mix(20_261_130);
    let mut out = String::from("external_id,kind,name,industry,phones,emails,tags,segment,source,registered_at\n");
    for i in 0..rows {
        let person = mix.next() % 10 < 7;
        let (kind, name, industry) = if person {
            ("person", format!("{}{}{}", mix.pick(SURNAMES), mix.pick(GIVEN), mix.pick(GIVEN)), "")
        } else {
            ("organisation", format!("{}{}科技有限公司{i}", mix.pick(SURNAMES), mix.pick(GIVEN)), mix.pick(INDUSTRIES))
        };
        let phones: Vec<String> = (0..=(mix.next() % 2))
            .map(|k| format!("13{}{:08}", mix.next() % 10, (i as u64 * 2 + k) % 100_000_000))
            .collect();
        let emails: Vec<String> = (0..(mix.next() % 3)).map(|k| format!("c{i}.{k}@example.com")).collect();
        let tags: Vec<&str> = (0..(mix.next() % 3)).map(|_| mix.pick(TAGS)).collect();
        let day = 1 + mix.next() % 1_000;
        let registered =
            time::OffsetDateTime::from_unix_timestamp(1_750_000_000 - i64::try_from(day).unwrap() * 86_400)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
        let _ = writeln!(
            out,
            "X-{i:07},{kind},{name},{industry},\"{}\",\"{}\",\"{}\",{},{},{registered}",
            phones.join(","),
            emails.join(","),
            tags.join(","),
            mix.pick(SEGMENTS),
            mix.pick(SOURCES),
        );
    }
    out.into_bytes()
}

async fn open(dir: &Path) -> (App, Caller) {
    let data = dir.join("data");
    let argv = ["oacis", "--data", data.to_str().unwrap(), "--admin-password", "Bench-Pass-2026!x"];
    let app = App::open(Settings::parse_from(argv).serve).await.unwrap();
    let caller = app.state.bus.projections().read(|v| Caller::acting_as(&v.access, "admin")).unwrap().unwrap();
    (app, caller)
}

/// The import's appends as the log recorded them: one per command id, in log order, with
/// their payloads opened.
async fn appends_since(store: &impl EventStore, from: Seq) -> Vec<(AppendMeta, Vec<StreamAppend>)> {
    let mut out: Vec<(AppendMeta, Vec<StreamAppend>)> = Vec::new();
    let mut at = from;
    loop {
        let page: Vec<Record> = store.read_all(at, 4_096).await.unwrap();
        let Some(last) = page.last() else { break };
        at = Seq(last.seq.0 + 1);
        for record in &page {
            let payload = open_record(store.keys().map(AsRef::as_ref), &record.borrowed()).unwrap().into_owned();
            let event = NewEvent { kind: record.kind.clone(), schema: record.schema, payload };
            if out.last().is_none_or(|(meta, _)| meta.command_id != record.meta.command_id) {
                out.push((record.meta.clone(), Vec::new()));
            }
            let (_, parts) = out.last_mut().unwrap();
            match parts.last_mut() {
                Some(part) if part.stream == record.stream => part.events.push(event),
                _ => {
                    let before = Version(record.version.0 - 1);
                    let expected =
                        if before.0 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(before) };
                    parts.push(StreamAppend { stream: record.stream.clone(), expected, events: vec![event] });
                }
            }
        }
    }
    out
}

fn main() {
    let sizes: Vec<usize> = std::env::var("OACIS_BENCH_ROWS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let base = std::env::var_os("OACIS_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| rows | dry run rows/s | import rows/s | events | log alone rows/s (events/s) | import / log | import / dry run |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for rows in sizes {
        let file = csv(rows);
        runtime.block_on(async {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let (app, caller) = open(dir.path()).await;
            let bus = &app.state.bus;
            let mut options = ImportOptions::new("bench.csv".into());
            options.dry_run = true;
            let started = Instant::now();
            let dry = import(bus, &caller, None, &file, &options, &mut |_, _| {}).await.unwrap();
            let dry_secs = started.elapsed().as_secs_f64();
            assert_eq!(dry.totals.refused, 0, "{:?}", dry.rows.iter().find(|r| !r.errors.is_empty()));

            options.dry_run = false;
            let from = Seq(bus.store().head().seq.0 + 1);
            let started = Instant::now();
            let real = import(bus, &caller, None, &file, &options, &mut |_, _| {}).await.unwrap();
            let import_secs = started.elapsed().as_secs_f64();
            assert_eq!(real.totals.registered, rows as u64);

            // The same appends, to a fresh sealed store, one after the other.
            let appends = appends_since(bus.store(), from).await;
            let events: usize = appends.iter().flat_map(|(_, parts)| parts.iter().map(|p| p.events.len())).sum();
            let log_dir = tempfile::tempdir_in(&base).unwrap();
            let mut config = SledConfig::new(log_dir.path());
            config.keys = Some(KeyStore::open(log_dir.path(), Kek::from_bytes(&[7; 32])).unwrap());
            let log = SledStore::open(config).unwrap();
            let started = Instant::now();
            for (meta, parts) in appends {
                log.append_many(parts, meta).await.unwrap();
            }
            let log_secs = started.elapsed().as_secs_f64();
            let per = |secs: f64| rows as f64 / secs;
            println!(
                "| {rows} | {:.0} | {:.0} | {events} | {:.0} ({:.0}) | {:.2}x | {:.2}x |",
                per(dry_secs),
                per(import_secs),
                per(log_secs),
                events as f64 / log_secs,
                log_secs / import_secs,
                dry_secs / import_secs,
            );
        });
    }
}
