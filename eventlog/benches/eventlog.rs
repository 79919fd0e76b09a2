//! Event log benchmark: durable appends (1, 8 and 64 concurrent writers, and 100-event
//! batches), `read_all` and `verify`, at several log sizes, each beside a baseline measured in
//! the same run on the same disk: raw sled insert+flush(+fdatasync), a minimal raw sled group
//! commit, raw sled batch+flush, raw fdatasync, and a raw sled scan with JSON decoding; and the
//! checkpoint's cost: 64 writers on twin stores with and without interval checkpoints.
//!
//! `cargo bench -p oacis-eventlog --bench eventlog` (sizes: `OACIS_BENCH_SIZES=10000,100000`;
//! scratch folder: `OACIS_BENCH_DIR`, default the system temp folder). Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oacis_eventlog::{AppendMeta, EventStore, ExpectedVersion, Seq, SledConfig, SledStore};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The allocator the `oacis` binary runs with, so that these figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod support;
use support::{concurrent_sample, event, payload, stream, summarize, Counter, Figure, Sample, STREAMS};

/// A JSON record shaped like the log's, for the raw scan + decode baseline.
#[derive(Serialize, Deserialize)]
struct JsonRecord {
    seq: u64,
    stream: String,
    version: u64,
    kind: String,
    schema: u32,
    recorded_at: i64,
    actor: String,
    command_id: String,
    payload: serde_json::Value,
    prev_hash: String,
    hash: String,
}

/// Appends timed in the single-writer comparison, for each of the three.
const SINGLE_WRITER_APPENDS: u64 = 4_000;
/// Rounds of the concurrent and batched comparisons.
const ROUNDS: u64 = 4;
/// Rounds of the checkpoint comparison, alternating which store goes first.
const CHECKPOINT_ROUNDS: u64 = 12;
/// Appends per writer in each round of the checkpoint comparison (64 writers).
const CHECKPOINT_ROUND_APPENDS: u64 = 1_000;

async fn store_appends(store: &SledStore, ids: &Arc<Counter>, clients: u64, per_client: u64, batch: u64) -> Figure {
    store_appends_sample(store, ids, clients, per_client, batch).await.figure()
}

async fn store_appends_sample(
    store: &SledStore,
    ids: &Arc<Counter>,
    clients: u64,
    per_client: u64,
    batch: u64,
) -> Sample {
    support::appends(std::slice::from_ref(store), ids, clients, per_client, batch).await
}

/// The single durable writer beside its baselines: one OACIS append (awaiting its durable
/// acknowledgement), then one raw sled insert+flush+fdatasync, then one raw insert+flush, and
/// so on, each timed alone. Taking turns at every operation means a slow spell of the shared
/// disk falls on all three alike, and so does whatever one operation leaves behind for the
/// next: no per-round warm-up lands on any one of them (at 100 per round, one slow start a
/// round is exactly the p99). The flush-only writes leave their file's metadata unsynced; that
/// is settled untimed after each, so that it is not charged to the next operation.
async fn single_writer(
    store: &SledStore,
    ids: &Arc<Counter>,
    raw_db: &sled::Db,
    raw_file: &File,
    raw_next: &Arc<Counter>,
    appends: u64,
) -> Result<[Sample; 3], BoxError> {
    let (store, ids, db, next) = (store.clone(), ids.clone(), raw_db.clone(), raw_next.clone());
    let file = raw_file.try_clone()?;
    // On a runtime worker, as a server's request handler would be.
    let task = tokio::spawn(async move {
        let mut samples: [Sample; 3] = Default::default();
        let timed = |sample: &mut Sample, started: Instant| {
            let took = started.elapsed();
            sample.count += 1;
            sample.elapsed += took;
            sample.latencies.push(took);
        };
        for _ in 0..appends {
            let id = ids.next();
            let meta = AppendMeta::new(uuid::Uuid::from_u128(u128::from(id) + 1), "bench");
            let started = Instant::now();
            store.append(stream(id), ExpectedVersion::Any, vec![event(id)], meta).await.expect("append");
            timed(&mut samples[0], started);
            for (which, fdatasync) in [(1, true), (2, false)] {
                let seq = next.next();
                let started = Instant::now();
                db.insert(seq.to_be_bytes(), json_value(seq)).expect("insert");
                db.flush().expect("flush");
                if fdatasync {
                    file.sync_data().expect("fdatasync");
                }
                timed(&mut samples[which], started);
            }
            file.sync_all().expect("settle the flush-only write");
        }
        samples
    });
    Ok(task.await?)
}

/// The simplest durable group commit on raw sled: one thread, one batch, one flush and one
/// fdatasync per group. No checks, no hashing, no indexes.
struct RawGroupCommit {
    queue: mpsc::Sender<(Vec<u8>, Vec<u8>, oneshot::Sender<()>)>,
}

impl RawGroupCommit {
    fn start(db: sled::Db, data_file: File) -> Self {
        let (queue, mut rx) = mpsc::channel::<(Vec<u8>, Vec<u8>, oneshot::Sender<()>)>(4096);
        std::thread::spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                while let Ok(next) = rx.try_recv() {
                    group.push(next);
                }
                let mut batch = sled::Batch::default();
                for (key, value, _) in &group {
                    batch.insert(key.as_slice(), value.as_slice());
                }
                db.apply_batch(batch).expect("apply");
                db.flush().expect("flush");
                data_file.sync_data().expect("fdatasync");
                for (_, _, done) in group {
                    let _ = done.send(());
                }
            }
        });
        RawGroupCommit { queue }
    }
}

fn raw_sled(path: &Path) -> (sled::Db, File) {
    let db = sled::Config::new()
        .path(path)
        .segment_size(oacis_eventlog::sled_layout::SEGMENT_SIZE)
        // The same cache as the store's, so that both pay the same for misses.
        .cache_capacity(SledConfig::new(path).cache_capacity_bytes)
        .flush_every_ms(None)
        .open()
        .expect("raw sled");
    let file = File::open(path.join("db")).expect("sled data file");
    (db, file)
}

fn json_value(seq: u64) -> Vec<u8> {
    let record = JsonRecord {
        seq,
        stream: stream(seq).to_string(),
        version: seq / STREAMS + 1,
        kind: "PurchaseRecorded".into(),
        schema: 1,
        recorded_at: 1_795_000_000_000_000 + seq as i64,
        actor: "bench".into(),
        command_id: uuid::Uuid::from_u128(u128::from(seq)).to_string(),
        payload: payload(seq),
        prev_hash: blake3::hash(&seq.to_be_bytes()).to_hex().to_string(),
        hash: blake3::hash(&(seq + 1).to_be_bytes()).to_hex().to_string(),
    };
    serde_json::to_vec(&record).expect("json")
}

fn raw_fdatasync(dir: &Path, count: u64) -> Figure {
    let mut file = File::create(dir.join("fsync-probe")).expect("probe file");
    let mut latencies = Vec::new();
    let started = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        file.write_all(&i.to_be_bytes()).expect("write");
        file.sync_data().expect("fdatasync");
        latencies.push(t.elapsed());
    }
    summarize(count, started.elapsed(), latencies)
}

/// `count` checkpoint writes as the checkpoint thread makes them (sign with Ed25519, then
/// temporary file, fsync, rename, fsync of the folder), at most twice a second.
fn checkpoint_writes(dir: &Path, count: u64) -> Figure {
    use oacis_eventlog::checkpoint::{Checkpoint, CheckpointKey};
    let key = CheckpointKey::from_seed(&[9; 32]);
    let mut latencies = Vec::new();
    let started = Instant::now();
    for i in 0..count {
        let head = oacis_eventlog::Head { seq: Seq(i), hash: oacis_eventlog::Hash32([7; 32]) };
        let t = Instant::now();
        let signed = Checkpoint::sign(head, oacis_eventlog::Hash32([8; 32]), oacis_eventlog::Timestamp::now(), &key);
        oacis_eventlog::checkpoint::write(dir, &signed).expect("checkpoint");
        latencies.push(t.elapsed());
    }
    summarize(count, started.elapsed(), latencies)
}

/// Merkle proofs against the whole log: `count` inclusion proofs of random records (made,
/// then verified) beside reading the same records; and consistency proofs from random
/// earlier sizes.
fn proof_rows(store: &SledStore, count: u64) -> Result<Vec<Row>, BoxError> {
    let size = store.head().seq.0;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % size + 1
    };
    let seqs: Vec<u64> = (0..count).map(|_| random()).collect();
    let (mut made, mut checked, mut read) = (Vec::new(), Vec::new(), Vec::new());
    let (mut made_total, mut checked_total, mut read_total) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut path_len = 0;
    for &seq in &seqs {
        let t = Instant::now();
        let proof = store.inclusion_proof(Seq(seq), size)?;
        made.push(t.elapsed());
        made_total += t.elapsed();
        path_len = proof.path.len();
        let t = Instant::now();
        proof.verify()?;
        checked.push(t.elapsed());
        checked_total += t.elapsed();
        let t = Instant::now();
        store.records(Seq(seq)).next().expect("record")?;
        read.push(t.elapsed());
        read_total += t.elapsed();
    }
    let mut consistency = Vec::new();
    let mut consistency_total = Duration::ZERO;
    for &first in &seqs {
        let t = Instant::now();
        store.consistency_proof(first, size)?.verify()?;
        consistency.push(t.elapsed());
        consistency_total += t.elapsed();
    }
    println!("inclusion proofs at {size} records: {path_len} hashes each");
    Ok(vec![
        Row {
            name: "inclusion proof, make (record read + path)".into(),
            ours: summarize(count, made_total, made),
            baseline_name: "read the same record",
            baseline: summarize(count, read_total, read),
            unit: "/s",
            latency: true,
        },
        Row {
            name: "inclusion proof, verify".into(),
            ours: summarize(count, checked_total, checked),
            baseline_name: "-",
            baseline: Figure::default(),
            unit: "/s",
            latency: true,
        },
        Row {
            name: "consistency proof, make + verify".into(),
            ours: summarize(count, consistency_total, consistency),
            baseline_name: "-",
            baseline: Figure::default(),
            unit: "/s",
            latency: true,
        },
    ])
}

struct Row {
    name: String,
    ours: Figure,
    baseline_name: &'static str,
    baseline: Figure,
    unit: &'static str,
    latency: bool,
}

fn print_rows(size: u64, rows: &[Row]) {
    println!("\n### {size} events in the log\n");
    println!("| measure | OACIS | p50 / p99 µs | baseline (same run) | baseline | p50 / p99 µs | ratio |");
    println!("|---|---:|---:|---|---:|---:|---:|");
    for r in rows {
        let lat = |f: &Figure| {
            if r.latency {
                format!("{:.0} / {:.0}", f.p50_us, f.p99_us)
            } else {
                "-".into()
            }
        };
        let measured = r.baseline.per_sec > 0.0;
        let (baseline, baseline_lat, ratio) = if measured {
            let ratio = format!("{:.2}x", r.ours.per_sec / r.baseline.per_sec);
            (format!("{:.0} {}", r.baseline.per_sec, r.unit), lat(&r.baseline), ratio)
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| {} | {:.0} {} | {} | {} | {} | {} | {} |",
            r.name,
            r.ours.per_sec,
            r.unit,
            lat(&r.ours),
            r.baseline_name,
            baseline,
            baseline_lat,
            ratio
        );
    }
}

async fn fill(store: &SledStore, ids: &Arc<Counter>, target: u64) -> Figure {
    let missing = target.saturating_sub(store.head().seq.0);
    store_appends(store, ids, 4, missing / 400, 100).await
}

async fn raw_fill(db: &sled::Db, from: u64, to: u64) {
    let mut seq = from;
    while seq < to {
        let mut batch = sled::Batch::default();
        for _ in 0..1000.min(to - seq) {
            seq += 1;
            batch.insert(&seq.to_be_bytes(), json_value(seq));
        }
        db.apply_batch(batch).expect("raw fill");
    }
    db.flush().expect("flush");
}

async fn run_size(base: &Path, size: u64) -> Result<Vec<Row>, BoxError> {
    let dir = tempfile::tempdir_in(base)?;
    let store = SledStore::open(SledConfig::new(dir.path().join("store")))?;
    let ids = Arc::new(Counter(std::sync::atomic::AtomicU64::new(0)));
    let filled = fill(&store, &ids, size).await;
    eprintln!("filled {} events at {:.0}/s", store.head().seq, filled.per_sec);

    let raw_path = dir.path().join("raw");
    let (raw_db, raw_file) = raw_sled(&raw_path);
    raw_fill(&raw_db, 0, size).await;
    // Let the disk absorb the fills before anything is timed: otherwise their write-back lands
    // on whichever measurement runs first.
    raw_file.sync_all()?;
    File::open(store.path().join("db"))?.sync_all()?;
    // And whatever else is waiting to be written (a build that just finished, say).
    let _ = std::process::Command::new("sync").status();
    let raw_next = Arc::new(Counter(std::sync::atomic::AtomicU64::new(size + 1)));
    let mut rows = Vec::new();

    // Single durable writer, against insert+flush(+fdatasync) one at a time.
    let [single, raw_single, raw_flush_only] =
        single_writer(&store, &ids, &raw_db, &raw_file, &raw_next, SINGLE_WRITER_APPENDS).await?;
    let (single, raw_single, raw_flush_only) = (single.figure(), raw_single.figure(), raw_flush_only.figure());
    rows.push(Row {
        name: "append, 1 writer".into(),
        ours: single,
        baseline_name: "raw insert+flush+fdatasync",
        baseline: raw_single,
        unit: "ev/s",
        latency: true,
    });
    rows.push(Row {
        name: "append, 1 writer".into(),
        ours: single,
        baseline_name: "raw insert+flush (no fdatasync)",
        baseline: raw_flush_only,
        unit: "ev/s",
        latency: true,
    });

    let group = RawGroupCommit::start(raw_db.clone(), raw_file.try_clone()?);
    let group_queue = group.queue.clone();
    // Each comparison takes turns with its baseline in rounds, as the single writer does.
    for (clients, per_client) in [(8u64, 500u64), (64, 200)] {
        let (mut ours, mut baseline) = (Sample::default(), Sample::default());
        for _round in 0..ROUNDS {
            ours.absorb(store_appends_sample(&store, &ids, clients, per_client / ROUNDS, 1).await);
            let (queue, next) = (group_queue.clone(), raw_next.clone());
            baseline.absorb(
                concurrent_sample(clients, per_client / ROUNDS, 1, move |_, _| {
                    let queue = queue.clone();
                    let seq = next.next();
                    async move {
                        let (done, wait) = oneshot::channel();
                        queue.send((seq.to_be_bytes().to_vec(), json_value(seq), done)).await.expect("queue");
                        wait.await.expect("ack");
                    }
                })
                .await,
            );
        }
        rows.push(Row {
            name: format!("append, {clients} writers"),
            ours: ours.figure(),
            baseline_name: "raw group commit (+fdatasync)",
            baseline: baseline.figure(),
            unit: "ev/s",
            latency: true,
        });
    }
    drop(group);

    // The checkpoint's cost: 64 writers on a store that writes its checkpoint as configured
    // by default (every acknowledged record recorded within 1 s), against a twin that writes it
    // only at open and close. Both are new and filled alike; rounds alternate which goes
    // first, and each spans about a second, so that every round of ours includes checkpoint
    // writes.
    let twin = |name: &str, interval: Duration| {
        SledStore::open(SledConfig { checkpoint_interval: interval, ..SledConfig::new(dir.path().join(name)) })
    };
    let checked = twin("store-checkpointed", oacis_eventlog::checkpoint::INTERVAL)?;
    let unchecked = twin("store-no-checkpoint", Duration::MAX)?;
    for twin in [&checked, &unchecked] {
        fill(twin, &ids, size).await;
        File::open(twin.path().join("db"))?.sync_all()?;
    }
    let _ = std::process::Command::new("sync").status();
    let (mut ours, mut baseline) = (Sample::default(), Sample::default());
    // Each round's ratio too: on a shared machine a slow spell of the disk can fall on one side
    // of a round, and the median of the paired ratios is less moved by it than the totals.
    let mut ratios = Vec::new();
    for round in 0..CHECKPOINT_ROUNDS {
        let mut rates = [0.0f64; 2];
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let twin = if side == 0 { &checked } else { &unchecked };
            let sample = store_appends_sample(twin, &ids, 64, CHECKPOINT_ROUND_APPENDS, 1).await;
            rates[side] = sample.count as f64 / sample.elapsed.as_secs_f64();
            if side == 0 {
                ours.absorb(sample)
            } else {
                baseline.absorb(sample)
            }
        }
        ratios.push(rates[0] / rates[1]);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "checkpoint cost at {size} events, 64 writers: median ratio of {} paired rounds {:.3}x (range {:.3}-{:.3}x)",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    drop((checked, unchecked));
    rows.push(Row {
        name: "append, 64 writers, checkpoint every 1 s".into(),
        ours: ours.figure(),
        baseline_name: "same, checkpoint only at open/close",
        baseline: baseline.figure(),
        unit: "ev/s",
        latency: true,
    });

    let (mut batched, mut raw_batched) = (Sample::default(), Sample::default());
    for _round in 0..ROUNDS {
        batched.absorb(store_appends_sample(&store, &ids, 1, 200 / ROUNDS, 100).await);
        let (db, file, next) = (raw_db.clone(), Arc::new(raw_file.try_clone()?), raw_next.clone());
        raw_batched.absorb(
            concurrent_sample(1, 200 / ROUNDS, 100, move |_, _| {
                let mut batch = sled::Batch::default();
                for _ in 0..100 {
                    let seq = next.next();
                    batch.insert(&seq.to_be_bytes(), json_value(seq));
                }
                db.apply_batch(batch).expect("apply");
                db.flush().expect("flush");
                file.sync_data().expect("fdatasync");
                async {}
            })
            .await,
        );
    }
    rows.push(Row {
        name: "append, 100-event batches".into(),
        ours: batched.figure(),
        baseline_name: "raw batch of 100+flush+fdatasync",
        baseline: raw_batched.figure(),
        unit: "ev/s",
        latency: true,
    });

    // Reads of the whole log.
    let head = store.head().seq.0;
    let started = Instant::now();
    let mut from = Seq(1);
    let mut read = 0u64;
    loop {
        let chunk = store.read_all(from, 10_000).await?;
        let Some(last) = chunk.last() else { break };
        from = last.seq.next();
        read += chunk.len() as u64;
    }
    assert_eq!(read, head);
    let ours_read = summarize(read, started.elapsed(), Vec::new());
    let started = Instant::now();
    let mut decoded = 0u64;
    for entry in raw_db.iter() {
        let (_, value) = entry?;
        let record: JsonRecord = serde_json::from_slice(&value)?;
        decoded += u64::from(record.schema);
    }
    let raw_scan = summarize(decoded, started.elapsed(), Vec::new());
    rows.push(Row {
        name: "read_all, decoded".into(),
        ours: ours_read,
        baseline_name: "raw sled scan + JSON decode",
        baseline: raw_scan,
        unit: "ev/s",
        latency: false,
    });

    let started = Instant::now();
    let report = store.verify(&mut |_| {})?;
    let ours_verify = summarize(report.records, started.elapsed(), Vec::new());
    let started = Instant::now();
    let mut hash = [0u8; 32];
    for entry in raw_db.iter() {
        let (_, value) = entry?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&hash).update(&value);
        hash = *hasher.finalize().as_bytes();
    }
    let raw_chain = summarize(raw_db.len() as u64, started.elapsed(), Vec::new());
    rows.push(Row {
        name: "verify".into(),
        ours: ours_verify,
        baseline_name: "raw sled scan + chained BLAKE3",
        baseline: raw_chain,
        unit: "ev/s",
        latency: false,
    });

    // Opening rebuilds the stream and command indexes from every record.
    let path = store.path().to_path_buf();
    drop(store);
    let started = Instant::now();
    let store = SledStore::open(SledConfig::new(&path))?;
    let ours_open = summarize(store.head().seq.0, started.elapsed(), Vec::new());
    let index_bytes_per_record = store.index_bytes() as f64 / store.head().seq.0.max(1) as f64;
    rows.extend(proof_rows(&store, 2_000)?);
    drop(store);
    let started = Instant::now();
    let mut scanned = 0u64;
    for entry in raw_db.iter() {
        scanned += entry?.1.len().min(1) as u64;
    }
    let raw_scan_only = summarize(scanned, started.elapsed(), Vec::new());
    rows.push(Row {
        name: "open (index rebuild)".into(),
        ours: ours_open,
        baseline_name: "raw sled scan",
        baseline: raw_scan_only,
        unit: "ev/s",
        latency: false,
    });

    rows.push(Row {
        name: "index memory (streams + commands + Merkle tree)".into(),
        ours: Figure { per_sec: index_bytes_per_record, ..Figure::default() },
        baseline_name: "-",
        baseline: Figure::default(),
        unit: "bytes/record",
        latency: false,
    });

    rows.push(Row {
        name: "checkpoint write".into(),
        ours: checkpoint_writes(dir.path(), 500),
        baseline_name: "-",
        baseline: Figure::default(),
        unit: "/s",
        latency: true,
    });

    let fsync = raw_fdatasync(dir.path(), 2_000);
    rows.push(Row {
        name: "(disk) fdatasync".into(),
        ours: fsync,
        baseline_name: "-",
        baseline: Figure::default(),
        unit: "/s",
        latency: true,
    });
    Ok(rows)
}

fn main() -> Result<(), BoxError> {
    let sizes: Vec<u64> = std::env::var("OACIS_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let base: PathBuf = std::env::var_os("OACIS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    for size in sizes {
        let rows = runtime.block_on(run_size(&base, size))?;
        print_rows(size, &rows);
    }
    Ok(())
}
