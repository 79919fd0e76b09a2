//! Read-side benchmark: rebuild of every view from the log (events/s, against decoding the
//! same log without views in the same run), customer directory query latency, and memory
//! per 100k customers.
//!
//! `cargo bench -p oacis-projections --bench views` (sizes in customers:
//! `OACIS_BENCH_CUSTOMERS=20000,220000`; scratch folder: `OACIS_BENCH_DIR`).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oacis_domain::customer::SourceChannel;
use oacis_eventlog::{EventStore, Record, Seq, SledConfig, SledStore};
use oacis_projections::decode::decode;
use oacis_projections::demo::{generate, load, DemoSize};
use oacis_projections::views::directory::{DirectoryQuery, Order, SortKey};
use oacis_projections::Views;

/// The allocator the `oacis` binary runs with, so that these figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// What a fresh process sees when it opens the store and replays every view, as the server
/// does at start: the views' resident memory (RSS after the replay minus RSS before it, so that
/// no freed memory of this process is reused) and the replay's rate.
struct FreshStart {
    memory_bytes: u64,
    rebuild_per_sec: f64,
    /// Reading and decoding the log without views, in the same fresh process afterwards.
    decode_per_sec: f64,
}

/// Reads the whole log through `read_all`, page by page, handing each page to `each`.
async fn each_page(store: &SledStore, mut each: impl FnMut(&[Record])) {
    let mut from = Seq(1);
    loop {
        let page = store.read_all(from, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.seq.next();
        each(&page);
    }
}

/// The baseline: reading and decoding every record into domain events, without any view.
async fn read_and_decode_rate(store: &SledStore) -> f64 {
    let started = Instant::now();
    let mut decoded = 0u64;
    each_page(store, |page| {
        for record in page {
            decode(record, None).unwrap();
            decoded += 1;
        }
    })
    .await;
    decoded as f64 / started.elapsed().as_secs_f64()
}

fn fresh_start(data: &std::path::Path) -> FreshStart {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("OACIS_BENCH_MEMORY_OF", data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    FreshStart {
        memory_bytes: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0),
        rebuild_per_sec: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0),
        decode_per_sec: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0),
    }
}

fn fresh_start_child(data: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // Opening reads every record once (to rebuild the log's indexes), as at server start.
        let store = SledStore::open(SledConfig::new(data)).unwrap();
        let before = resident_bytes();
        let started = Instant::now();
        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let rate = views.applied().0 as f64 / started.elapsed().as_secs_f64();
        let after = resident_bytes();
        std::hint::black_box(&views);
        drop(views);
        println!("{} {rate:.0} {:.0}", after.saturating_sub(before), read_and_decode_rate(&store).await);
    });
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Makes the i-th query of one kind.
type QueryShape<'a> = Box<dyn Fn(usize) -> DirectoryQuery + 'a>;

async fn run(base: &std::path::Path, customers: usize) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
    let started = Instant::now();
    let events = load(&store, generate(DemoSize { customers, seed: 42 }).unwrap(), 64).await.unwrap();
    eprintln!("loaded {events} events for {customers} customers in {:.1}s", started.elapsed().as_secs_f64());

    // Baseline: read and decode every record into domain events, without any view. A first
    // pass warms the caches for both measurements.
    let _ = Views::replay(&store, None, &mut |_| {}).await.unwrap();
    let decode_rate = read_and_decode_rate(&store).await;
    let started = Instant::now();
    let mut read = 0u64;
    each_page(&store, |page| read += page.len() as u64).await;
    let read_rate = read as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
    let rebuild_rate = views.applied().0 as f64 / started.elapsed().as_secs_f64();

    // Where the time goes: each view applying already-decoded records on its own.
    let mut decoded = Vec::new();
    each_page(&store, |page| decoded.extend(page.iter().map(|r| decode(r, None).unwrap()))).await;
    let mut per_view = Vec::new();
    {
        use oacis_projections::view::View;
        use oacis_projections::views::{access, analytics, audit, cases, directory, tasks, timeline};
        let mut all: Vec<Box<dyn View>> = vec![
            Box::new(directory::CustomerDirectory::default()),
            Box::new(tasks::TaskBoard::default()),
            Box::new(access::AccessDirectory::default()),
            Box::new(analytics::Analytics::default()),
            Box::new(audit::Audit::default()),
            Box::new(cases::CaseList::default()),
            Box::new(timeline::Timeline::default()),
        ];
        for view in &mut all {
            let started = Instant::now();
            for record in &decoded {
                view.apply(record).unwrap();
            }
            per_view.push((view.name(), decoded.len() as f64 / started.elapsed().as_secs_f64()));
        }
    }
    drop(decoded);

    println!("\n### {customers} customers, {events} events\n");
    println!("| measure | figure | baseline (same run) | ratio |");
    println!("|---|---:|---|---:|");
    println!(
        "| rebuild all views, in the loading process | {rebuild_rate:.0} ev/s | read + decode only: {decode_rate:.0} ev/s | {:.2}x |",
        rebuild_rate / decode_rate
    );
    println!("| read only (records decoded and hash-checked) | {read_rate:.0} ev/s | read + decode only: {decode_rate:.0} ev/s | {:.2}x |", read_rate / decode_rate);
    for (name, rate) in per_view {
        println!(
            "| apply only: {name} | {rate:.0} ev/s | read + decode only: {decode_rate:.0} ev/s | {:.2}x |",
            rate / decode_rate
        );
    }

    let d = &views.directory;
    let owners: Vec<_> =
        d.query(&DirectoryQuery { first: 100, ..Default::default() }).rows.iter().map(|r| r.owner).collect();
    let texts = ["王", "李娜", "müller", "acme", "+86 138", "vip", "科技", "c1234@"];
    let shapes: Vec<(&str, QueryShape)> = vec![
        (
            "text search, 20 per page",
            Box::new(|i| DirectoryQuery { text: Some(texts[i % texts.len()].into()), first: 20, ..Default::default() }),
        ),
        (
            "owner + segment filter",
            Box::new(|i| DirectoryQuery {
                owner: Some(owners[i % owners.len()]),
                segment: Some("smb".into()),
                first: 20,
                ..Default::default()
            }),
        ),
        (
            "source filter, sorted by name, page 3",
            Box::new(|i| {
                let sources = [SourceChannel::Referral, SourceChannel::Website, SourceChannel::Event];
                DirectoryQuery {
                    source: Some(sources[i % 3]),
                    sort: vec![(SortKey::Name, Order::Ascending)],
                    first: 20,
                    ..Default::default()
                }
            }),
        ),
        (
            "everything, sorted by last contact",
            Box::new(|_| DirectoryQuery {
                sort: vec![(SortKey::LastContact, Order::Descending)],
                first: 50,
                ..Default::default()
            }),
        ),
    ];
    for (name, shape) in shapes {
        let mut latencies = Vec::new();
        for i in 0..200 {
            let mut query = shape(i);
            let t = Instant::now();
            let mut page = d.query(&query);
            if name.contains("page 3") {
                for _ in 0..2 {
                    query.after = page.end_cursor.clone();
                    page = d.query(&query);
                }
            }
            latencies.push(t.elapsed());
            std::hint::black_box(page);
        }
        latencies.sort();
        println!(
            "| directory: {name} | p50 {:.2} ms, p99 {:.2} ms | - | - |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    // The child process opens the store itself, so this process lets go of it first.
    drop(views);
    drop(store);
    let fresh = fresh_start(dir.path());
    println!(
        "| rebuild all views, fresh process (server start) | {:.0} ev/s | read + decode only, same process: {:.0} ev/s | {:.2}x |",
        fresh.rebuild_per_sec,
        fresh.decode_per_sec,
        fresh.rebuild_per_sec / fresh.decode_per_sec
    );
    let mib = fresh.memory_bytes as f64 / 1_048_576.0;
    println!(
        "| memory of the views (RSS growth) | {mib:.0} MiB, {:.0} MiB per 100k customers | - | - |",
        mib * 100_000.0 / customers as f64
    );
}

fn main() {
    if let Some(data) = std::env::var_os("OACIS_BENCH_MEMORY_OF") {
        fresh_start_child(std::path::Path::new(&data));
        return;
    }
    let sizes: Vec<usize> = std::env::var("OACIS_BENCH_CUSTOMERS")
        .unwrap_or_else(|_| "22000,100000,220000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let base: PathBuf = std::env::var_os("OACIS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for customers in sizes {
        runtime.block_on(run(&base, customers));
    }
}
