//! The cost of sealing personal data: appends/s (the demo's events, each customer's
//! registration creating its data key, through `append_many` with 64 appends in flight) and
//! rebuild rate (every view replayed, sealed payloads opened) with a key store against the
//! same without one, in the same run, alternating which goes first, over
//! `OACIS_BENCH_ROUNDS` (default 4): the ratio of the best rounds and the median of each
//! round's ratio;
//! and the key store's size per 100,000 subjects.
//!
//! `cargo bench -p oacis-projections --bench sealing` (sizes in customers:
//! `OACIS_BENCH_CUSTOMERS=10000,100000`; scratch folder: `OACIS_BENCH_DIR`).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use std::path::Path;
use std::time::Instant;

use oacis_eventlog::keys::{Kek, KeyStore};
use oacis_eventlog::{EventStore, SledConfig, SledStore};
use oacis_projections::demo::{generate, load, DemoAppend, DemoSize};
use oacis_projections::Views;

/// The allocator the `oacis` binary runs with, so that these figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Run {
    appends_per_sec: f64,
    rebuild_per_sec: f64,
    key_bytes: u64,
    subjects: usize,
}

/// This process's CPU time (user and system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn open(dir: &Path, sealed: bool) -> SledStore {
    let mut config = SledConfig::new(dir);
    if sealed {
        config.keys = Some(KeyStore::open(dir, Kek::from_bytes(&[7; 32])).unwrap());
    }
    SledStore::open(config).unwrap()
}

async fn run(base: &Path, appends: &[DemoAppend], sealed: bool) -> Run {
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = open(dir.path(), sealed);
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let events = load(&store, appends.to_vec(), 64).await.unwrap();
    let appends_per_sec = events as f64 / started.elapsed().as_secs_f64();
    if std::env::var_os("OACIS_BENCH_ONLY").is_some() {
        println!(
            "append phase: {:.2} s wall, {:.2} s CPU",
            started.elapsed().as_secs_f64(),
            cpu_seconds() - cpu_before
        );
    }
    drop(store);
    let store = open(dir.path(), sealed);
    let started = Instant::now();
    let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
    let rebuild_per_sec = views.applied().0 as f64 / started.elapsed().as_secs_f64();
    let subjects = store.keys().map_or(0, |k| k.subjects());
    let key_bytes = std::fs::metadata(dir.path().join("keys").join("journal")).map_or(0, |m| m.len());
    Run { appends_per_sec, rebuild_per_sec, key_bytes, subjects }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("OACIS_BENCH_CUSTOMERS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let rounds: usize = std::env::var("OACIS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(4);
    let base = std::env::var_os("OACIS_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| customers | events | appends/s plain | appends/s sealed | ratio of bests | median ratio | rebuild/s plain | rebuild/s sealed | ratio of bests | median ratio | key store | per 100,000 subjects |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for customers in sizes {
        let appends = generate(DemoSize { customers, seed: 7 }).unwrap();
        let events: usize = appends.iter().map(|a| a.events.len()).sum();
        let (mut plain, mut sealed): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
        // Alternating which goes first, so that neither always follows the other's clean-up.
        for round in 0..rounds {
            for sealing in [round % 2 == 1, round % 2 == 0] {
                // OACIS_BENCH_ONLY=plain|sealed runs one side (for a profile of it).
                match std::env::var("OACIS_BENCH_ONLY").as_deref() {
                    Ok("plain") if sealing => continue,
                    Ok("sealed") if !sealing => continue,
                    _ => {}
                }
                let outcome = runtime.block_on(run(&base, &appends, sealing));
                eprintln!(
                    "round {round} {}: appends/s {:.0}, rebuild/s {:.0}",
                    if sealing { "sealed" } else { "plain" },
                    outcome.appends_per_sec,
                    outcome.rebuild_per_sec
                );
                if sealing { &mut sealed } else { &mut plain }.push(outcome);
            }
        }
        if plain.is_empty() || sealed.is_empty() {
            let runs = if plain.is_empty() { &sealed } else { &plain };
            for run in runs {
                println!(
                    "| {customers} | {events} | appends/s {:.0} | rebuild/s {:.0} |",
                    run.appends_per_sec, run.rebuild_per_sec
                );
            }
            continue;
        }
        let best = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).fold(0.0, f64::max);
        let (ap, as_) = (best(&plain, |r| r.appends_per_sec), best(&sealed, |r| r.appends_per_sec));
        let (rp, rs) = (best(&plain, |r| r.rebuild_per_sec), best(&sealed, |r| r.rebuild_per_sec));
        // Each round's sealed run against its plain run (the two ran back to back), the middle
        // of those ratios: steadier than the ratio of the bests on a shared machine.
        let median = |f: fn(&Run) -> f64| {
            let mut ratios: Vec<f64> = plain.iter().zip(&sealed).map(|(p, s)| f(s) / f(p)).collect();
            ratios.sort_by(f64::total_cmp);
            let mid = ratios.len() / 2;
            if ratios.len() % 2 == 1 {
                ratios[mid]
            } else {
                (ratios[mid - 1] + ratios[mid]) / 2.0
            }
        };
        let (append_median, rebuild_median) = (median(|r| r.appends_per_sec), median(|r| r.rebuild_per_sec));
        let last = sealed.last().unwrap();
        let per_100k = last.key_bytes as f64 * 100_000.0 / last.subjects.max(1) as f64;
        println!(
            "| {customers} | {events} | {ap:.0} | {as_:.0} | {:.2}x | {append_median:.2}x | {rp:.0} | {rs:.0} | {:.2}x | {rebuild_median:.2}x | {} bytes, {} subjects | {:.1} MiB |",
            as_ / ap,
            rs / rp,
            last.key_bytes,
            last.subjects,
            per_100k / 1_048_576.0
        );
    }
}
