//! The PostgreSQL backend's benchmark, in one run on one throwaway cluster (fsync and
//! synchronous commit on, PostgreSQL's defaults): durable appends with 1, 8 and 64 writers and
//! in 100-event batches, on one node and on two nodes sharing the database; beside the sled
//! backend on the same machine, and beside plain PostgreSQL event tables (a bigserial table,
//! one insert per transaction from 8 clients, and 100 rows per transaction); then replay
//! (`read_all` in pages, every record decoded and its hash checked) against a plain keyset
//! scan of the same table. The append cases run in three interleaved rounds; the best of
//! each is reported.
//!
//! `cargo bench -p oacis-eventlog --bench postgres` (scale: `OACIS_BENCH_PG_SCALE`, default 1;
//! replay size `OACIS_BENCH_PG_REPLAY`, default 200000; `OACIS_BENCH_PG_PREFILL=N` fills both
//! logs and the plain table with N records in 100-event appends before the append cases, to
//! see how their cost grows with the data; `OACIS_PG_SHARED_BUFFERS=1GB` gives PostgreSQL the
//! cache the sled backend has, instead of the server's default 128MB). Prints a Markdown table.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss
)]

mod support;

use std::sync::Arc;
use std::time::Instant;

use oacis_eventlog::{EventStore, PgConfig, PgStore, Seq, SledConfig, SledStore};
use oacis_tests::pg::PgCluster;
use support::{appends, concurrent_sample, payload, stream, Counter, Figure, Sample};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rounds of the append comparisons.
const ROUNDS: usize = 3;

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The plain event table: a bigserial key, a stream, a JSON payload.
async fn plain_table(url: &str) -> Arc<Vec<tokio_postgres::Client>> {
    let first = client(url).await;
    first
        .batch_execute(
            "CREATE TABLE plain_events (id bigserial PRIMARY KEY, stream_id text NOT NULL, payload bytea NOT NULL)",
        )
        .await
        .expect("create");
    let mut clients = vec![first];
    for _ in 1..8 {
        clients.push(client(url).await);
    }
    Arc::new(clients)
}

/// 8 clients, `per_client` transactions of `rows` inserted rows each (one statement).
async fn plain_inserts(
    clients: &Arc<Vec<tokio_postgres::Client>>,
    ids: &Arc<Counter>,
    per_client: u64,
    rows: u64,
) -> Sample {
    let clients = clients.clone();
    let ids = ids.clone();
    concurrent_sample(8, per_client, rows, move |c, _| {
        let clients = clients.clone();
        let id = ids.next();
        async move {
            let client = &clients[c as usize];
            let streams: Vec<String> = (0..rows).map(|k| stream(id * rows + k).to_string()).collect();
            let payloads: Vec<Vec<u8>> = (0..rows).map(|k| payload(id * rows + k).to_string().into_bytes()).collect();
            client
                .execute(
                    "INSERT INTO plain_events (stream_id, payload) SELECT * FROM unnest($1::text[], $2::bytea[])",
                    &[&streams, &payloads],
                )
                .await
                .expect("insert");
        }
    })
    .await
}

/// Seconds of CPU in `/proc/<pid>/stat` fields (0-based after the command name's closing
/// parenthesis is counted as field 1): utime 13, stime 14, cutime 15, cstime 16.
fn cpu_seconds(pid: &str, fields: &[usize]) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let values: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.iter().filter_map(|f| values.get(f - 2)?.parse::<f64>().ok()).sum();
    Some(ticks / 100.0)
}

struct Line {
    case: String,
    oacis: Figure,
    baseline: &'static str,
    base: Figure,
}

fn main() -> Result<(), BoxError> {
    let scale: u64 = std::env::var("OACIS_BENCH_PG_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let replay: u64 = std::env::var("OACIS_BENCH_PG_REPLAY").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let prefill: u64 = std::env::var("OACIS_BENCH_PG_PREFILL").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cluster = PgCluster::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    rt.block_on(async move {
        let ids = Arc::new(Counter(std::sync::atomic::AtomicU64::new(0)));
        let url = cluster.database("bench")?;
        let one = PgStore::open(PgConfig::new(url.clone())).await?;
        let two = PgStore::open(PgConfig::new(url.clone())).await?;
        let sled = SledStore::open(SledConfig::new(dir.path().join("sled")))?;
        let plain_url = cluster.database("plain")?;
        let plain = plain_table(&plain_url).await;
        // Warm-up of every path.
        appends(std::slice::from_ref(&one), &ids, 8, 50, 1).await;
        appends(std::slice::from_ref(&sled), &ids, 8, 50, 1).await;
        plain_inserts(&plain, &ids, 50, 1).await;
        // Logs (and the plain table) filled first, to see how appends cost with the data.
        if prefill > 0 {
            let batches = prefill.div_ceil(100).div_ceil(8);
            appends(std::slice::from_ref(&one), &ids, 8, batches, 100).await;
            appends(std::slice::from_ref(&sled), &ids, 8, batches, 100).await;
            plain_inserts(&plain, &ids, batches, 100).await;
            println!("prefilled: {} records on PostgreSQL, {} on sled\n", one.head().seq.0, sled.head().seq.0);
        }

        // Every case in each of `ROUNDS` rounds, interleaved, so that a slow spell of the
        // shared machine falls on all of them alike; the best round of each is reported.
        let cases = [(1u64, 1_000 * scale, 1u64), (8, 500 * scale, 1), (64, 150 * scale, 1), (8, 20 * scale, 100)];
        let mut best: std::collections::HashMap<String, Figure> = std::collections::HashMap::new();
        let mut keep = |name: String, figure: Figure| {
            let slot = best.entry(name).or_default();
            if figure.per_sec > slot.per_sec {
                *slot = figure;
            }
        };
        for _ in 0..ROUNDS {
            keep("plain 1".into(), plain_inserts(&plain, &ids, 500 * scale, 1).await.figure());
            keep("plain 100".into(), plain_inserts(&plain, &ids, 20 * scale, 100).await.figure());
            for (writers, per, batch) in cases {
                keep(
                    format!("pg {writers} {batch}"),
                    appends(std::slice::from_ref(&one), &ids, writers, per, batch).await.figure(),
                );
                keep(
                    format!("sled {writers} {batch}"),
                    appends(std::slice::from_ref(&sled), &ids, writers, per, batch).await.figure(),
                );
            }
            keep("two nodes".into(), appends(&[one.clone(), two.clone()], &ids, 64, 150 * scale, 1).await.figure());
        }
        let mut lines = Vec::new();
        for (writers, _, batch) in cases {
            let case = if batch == 1 {
                format!("{writers} writers")
            } else {
                format!("{writers} writers, {batch}-event batches")
            };
            let pg = best[&format!("pg {writers} {batch}")];
            let (baseline, base) = if batch == 1 {
                ("plain table, 1 insert/txn, 8 clients", best["plain 1"])
            } else {
                ("plain table, 100 rows/txn, 8 clients", best["plain 100"])
            };
            lines.push(Line { case: case.clone(), oacis: pg, baseline, base });
            lines.push(Line {
                case: format!("{case} (sled backend)"),
                oacis: best[&format!("sled {writers} {batch}")],
                baseline: "PostgreSQL backend, same case",
                base: pg,
            });
        }
        lines.push(Line {
            case: "64 writers on two nodes (32 each)".into(),
            oacis: best["two nodes"],
            baseline: "64 writers on one node",
            base: best["pg 64 1"],
        });

        // Replay: fill to `replay` records, then read everything back both ways.
        let head = one.head().seq.0;
        if head < replay {
            let batches = (replay - head).div_ceil(100);
            appends(std::slice::from_ref(&one), &ids, 8, batches.div_ceil(8), 100).await;
        }
        let total = one.head().seq.0;
        let started = Instant::now();
        let mut from = Seq::FIRST;
        let mut count = 0u64;
        loop {
            let page = one.read_all(from, 2_000).await?;
            let Some(last) = page.last() else { break };
            from = last.seq.next();
            count += page.len() as u64;
        }
        let read = support::summarize(count, started.elapsed(), Vec::new());
        let scan_client = client(&url).await;
        let started = Instant::now();
        let (mut after, mut scanned) = (0i64, 0u64);
        loop {
            let rows = scan_client
                .query("SELECT seq, record FROM oacis_events WHERE seq > $1 ORDER BY seq LIMIT 2000", &[&after])
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            scanned += rows.len() as u64;
        }
        let scan = support::summarize(scanned, started.elapsed(), Vec::new());
        lines.push(Line {
            case: format!("replay, {total} records (read_all, decoded and checked)"),
            oacis: read,
            baseline: "keyset scan of the same table",
            base: scan,
        });

        // The CPU split on this machine: the benchmark process (OACIS's writers and readers)
        // against the PostgreSQL server (its backends are reaped into the postmaster's
        // children time once their connections close).
        drop((one, two, scan_client, plain));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let server_cpu = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid"))
            .ok()
            .and_then(|pid| cpu_seconds(pid.lines().next()?.trim(), &[13, 14, 15, 16]));
        let own_cpu = cpu_seconds("self", &[13, 14]);
        println!("CPU over the run: benchmark process {own_cpu:.1?} s, PostgreSQL server {server_cpu:.1?} s\n");

        println!("| case | OACIS events/s | p50 / p99 ms | baseline | baseline events/s | p50 / p99 ms | ratio |");
        println!("|---|---:|---:|---|---:|---:|---:|");
        for line in lines {
            println!(
                "| {} | {:.0} | {:.2} / {:.2} | {} | {:.0} | {:.2} / {:.2} | {:.2}x |",
                line.case,
                line.oacis.per_sec,
                line.oacis.p50_us / 1_000.0,
                line.oacis.p99_us / 1_000.0,
                line.baseline,
                line.base.per_sec,
                line.base.p50_us / 1_000.0,
                line.base.p99_us / 1_000.0,
                line.oacis.per_sec / line.base.per_sec,
            );
        }
        Ok::<(), BoxError>(())
    })?;
    Ok(())
}
