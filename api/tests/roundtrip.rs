//! Property: for generated valid rows (people and organisations, several phones and e-mails,
//! tags, segments, every source word, business times with offsets), importing them, exporting
//! every customer (as CSV or `.xlsx`) and importing that export again changes nothing: every
//! row is `unchanged`, no customer stream gets an event, and the next export is byte for byte
//! the one before. Runs in-process on one store shared by every case.
//!
//! Also: an undo of an import still being written is refused (on a store of its own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use clap::Parser;
use oacis_api::access::Caller;
use oacis_api::server::{App, ServeArgs};
use oacis_api::transfer::export::export;
use oacis_api::transfer::import::{import, ImportOptions, Report};
use oacis_api::transfer::table::Format;
use oacis_eventlog::{EventStore, Seq};
use oacis_projections::views::directory::{DirectoryQuery, Order, SortKey};
use proptest::prelude::*;

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    serve: ServeArgs,
}

struct Shared {
    runtime: tokio::runtime::Runtime,
    app: App,
    caller: Caller,
    _dir: tempfile::TempDir,
}

/// The store the round-trip cases share (every case exports all of it, so nothing else
/// writes there).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(open)
}

fn open() -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let argv = ["oacis", "--data", data.to_str().unwrap(), "--admin-password", "Round-Trip-2026!"];
    let app = runtime.block_on(App::open(Settings::parse_from(argv).serve)).unwrap();
    let caller = app.state.bus.projections().read(|v| Caller::acting_as(&v.access, "admin")).unwrap().unwrap();
    Shared { runtime, app, caller, _dir: dir }
}

/// One generated customer row, as the columns of the file.
#[derive(Debug, Clone)]
struct Row {
    kind: &'static str,
    name: String,
    industry: Option<&'static str>,
    phones: Vec<String>,
    emails: Vec<String>,
    tags: Vec<&'static str>,
    segment: Option<&'static str>,
    source: &'static str,
    registered_at: Option<String>,
    last_contact: Option<String>,
}

fn time_text(seconds: i64, offset_hours: i8) -> String {
    let offset = time::UtcOffset::from_hms(offset_hours, 0, 0).unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap().to_offset(offset);
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn row() -> impl Strategy<Value = Row> {
    let name =
        prop::string::string_regex("[A-Za-z王李张刘陈杨赵黄周吴][a-z伟芳娜敏静丽强磊军洋]{1,6}( [A-Z][a-z]{1,5})?")
            .unwrap();
    let phone = (0u8..10, 0u32..100_000_000).prop_map(|(d, n)| format!("13{d}{n:08}"));
    let email = prop::string::string_regex("[a-z][a-z0-9]{0,7}@(example\\.com|mail\\.example\\.cn)").unwrap();
    let tags = prop::sample::subsequence(vec!["VIP", "重点客户", "老客户", "需回访", "new"], 0..=3);
    let time = (1_500_000_000i64..1_760_000_000, -5i8..=9);
    (
        any::<bool>(),
        name,
        prop::option::of(prop::sample::select(vec!["制造业", "信息技术", "金融", "retail"])),
        prop::collection::vec(phone, 0..=2),
        prop::collection::vec(email, 0..=2),
        tags,
        prop::option::of(prop::sample::select(vec!["smb", "enterprise", "key-account"])),
        prop::sample::select(vec!["website", "referral", "转介绍", "展会", "cold_call", "partner", "wechat", "other"]),
        (prop::option::of(time.clone()), prop::option::of(time)),
    )
        .prop_map(|(person, name, industry, phones, emails, tags, segment, source, (registered, contact))| {
            let mut emails = emails;
            emails.sort();
            emails.dedup();
            let mut phones = phones;
            phones.sort();
            phones.dedup();
            Row {
                kind: if person { "person" } else { "organisation" },
                name,
                industry: if person { None } else { industry },
                phones,
                emails,
                tags,
                segment,
                source,
                registered_at: registered.map(|(s, o)| time_text(s, o)),
                last_contact: contact.map(|(s, o)| time_text(s, o)),
            }
        })
}

fn csv_of(rows: &[Row], batch: u64) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "external_id",
        "kind",
        "name",
        "industry",
        "phones",
        "emails",
        "tags",
        "segment",
        "source",
        "registered_at",
        "last_contact",
    ])
    .unwrap();
    for (i, r) in rows.iter().enumerate() {
        out.write_record([
            format!("RT-{batch}-{i}").as_str(),
            r.kind,
            &r.name,
            r.industry.unwrap_or(""),
            &r.phones.join(";"),
            &r.emails.join(";"),
            &r.tags.join("、"),
            r.segment.unwrap_or(""),
            r.source,
            r.registered_at.as_deref().unwrap_or(""),
            r.last_contact.as_deref().unwrap_or(""),
        ])
        .unwrap();
    }
    out.into_inner().unwrap()
}

async fn run(bytes: &[u8], name: &str) -> Report {
    let s = shared();
    let options = ImportOptions::new(name.into());
    import(&s.app.state.bus, &s.caller, None, bytes, &options, &mut |_, _| {}).await.unwrap()
}

async fn export_all(format: Format) -> Vec<u8> {
    let s = shared();
    let query = DirectoryQuery { sort: vec![(SortKey::Name, Order::Ascending)], ..DirectoryQuery::default() };
    export(&s.app.state.bus, &s.caller, None, query, "round trip".into(), format).await.unwrap().bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn import_then_export_then_import_changes_nothing(rows in prop::collection::vec(row(), 1..10), xlsx in any::<bool>()) {
        static BATCH: AtomicU64 = AtomicU64::new(0);
        let batch = BATCH.fetch_add(1, Ordering::Relaxed);
        let s = shared();
        s.runtime.block_on(async {
            let bus = &s.app.state.bus;
            let first = run(&csv_of(&rows, batch), "generated.csv").await;
            let refused: Vec<_> = first.rows.iter().filter(|r| !r.errors.is_empty()).collect();
            prop_assert!(refused.is_empty(), "valid rows refused: {refused:?}");
            prop_assert_eq!(first.totals.registered, rows.len() as u64);

            let before = export_all(Format::Csv).await;
            let format = if xlsx { Format::Xlsx } else { Format::Csv };
            let file = export_all(format).await;
            let head = bus.store().head().seq;
            let again = run(&file, if xlsx { "export.xlsx" } else { "export.csv" }).await;
            let t = again.totals;
            prop_assert_eq!((t.registered, t.updated, t.refused), (0, 0, 0), "{:?}", again.rows.iter().find(|r| r.outcome != oacis_api::transfer::import::Outcome::Unchanged));
            prop_assert_eq!(t.unchanged, t.rows);
            // Only the import's own stream was written to: no customer changed.
            let written = bus.store().read_all(Seq(head.0 + 1), 10_000).await.unwrap();
            let customers: Vec<_> = written.iter().filter(|r| !r.stream.as_str().starts_with("import-")).map(|r| (r.stream.as_str().to_owned(), r.kind.as_str().to_owned())).collect();
            prop_assert!(customers.is_empty(), "the re-import wrote {customers:?}");
            prop_assert_eq!(export_all(Format::Csv).await, before);
            Ok(())
        })?;
    }
}

/// An undo of an import still being written is refused (it would archive the rows written so
/// far and leave the rest); once the import has finished, the undo archives every row.
#[test]
fn an_import_being_written_cannot_be_undone() {
    use oacis_api::transfer::import::undo;
    use oacis_api::transfer::ImportError;
    use oacis_domain::import::ImportStatus;
    let s = &open();
    s.runtime.block_on(async {
        let rows: String = (0..4_000).map(|i| format!("写入中{i},13{:09}\n", 700_000_000 + i)).collect();
        let file = format!("name,phones\n{rows}");
        let bus = s.app.state.bus.clone();
        let caller = s.caller.clone();
        let writing = tokio::spawn(async move {
            let options = ImportOptions::new("writing.csv".into());
            import(&bus, &caller, None, file.as_bytes(), &options, &mut |_, _| {}).await.unwrap()
        });
        let bus = &s.app.state.bus;
        let mut refused = 0;
        let mut undone_after_finish = false;
        while !writing.is_finished() {
            let running = bus
                .projections()
                .read(|v| {
                    v.audit
                        .imports()
                        .find(|i| i.file_name == "writing.csv" && i.status == ImportStatus::Running)
                        .map(|i| i.id)
                })
                .unwrap();
            if let Some(id) = running {
                match undo(bus, &s.caller, None, id, true).await {
                    Err(ImportError::Running(_)) => refused += 1,
                    // The import finished between the look and the undo: the undo took it all.
                    Ok(undone) => {
                        assert_eq!(undone.archived, 4_000, "an undo went through while the import was being written");
                        undone_after_finish = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let report = writing.await.unwrap();
        assert!(refused > 0, "the import was never seen running");
        if undone_after_finish {
            return;
        }
        let id = oacis_domain::ids::ImportId(report.import_id.unwrap().parse().unwrap());
        let undone = undo(bus, &s.caller, None, id, false).await.unwrap();
        assert_eq!(undone.archived, 4_000);
    });
}
