//! What the event log's benchmarks share: the synthetic events, concurrent timed loops and
//! their summary (throughput, p50 and p99 latency).
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oacis_eventlog::{AppendMeta, EventStore, ExpectedVersion, NewEvent, StreamId};

pub const STREAMS: u64 = 10_000;

pub fn payload(i: u64) -> serde_json::Value {
    serde_json::json!({
        "customer_id": format!("0193a5b2-{i:012}"),
        "name": "张伟 Zhang Wei",
        "phone": "+8613800138000",
        "segment": "key-account",
        "amount_minor": i * 100,
        "currency": "CNY",
    })
}

pub fn event(i: u64) -> NewEvent {
    NewEvent::json("PurchaseRecorded", 1, &payload(i)).expect("valid event")
}

pub fn stream(i: u64) -> StreamId {
    StreamId::new(format!("customer-{}", i % STREAMS)).expect("valid stream")
}

#[derive(Default, Clone, Copy)]
pub struct Figure {
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

pub fn summarize(count: u64, elapsed: Duration, mut latencies: Vec<Duration>) -> Figure {
    latencies.sort();
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1e6
    };
    Figure { per_sec: count as f64 / elapsed.as_secs_f64(), p50_us: at(0.50), p99_us: at(0.99) }
}

/// What a measured run saw: items done, time taken, and each operation's latency.
#[derive(Default)]
pub struct Sample {
    pub count: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Sample {
    pub fn absorb(&mut self, other: Sample) {
        self.count += other.count;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    pub fn figure(self) -> Figure {
        summarize(self.count, self.elapsed, self.latencies)
    }
}

/// Runs `clients` concurrent loops of `per_client` operations; each operation counts `weight` items.
pub async fn concurrent_sample<F, Fut>(clients: u64, per_client: u64, weight: u64, op: F) -> Sample
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client as usize);
            for i in 0..per_client {
                let t = Instant::now();
                op(client, i).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    Sample { count: clients * per_client * weight, elapsed: started.elapsed(), latencies }
}

pub struct Counter(pub std::sync::atomic::AtomicU64);

impl Counter {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Durable appends of `batch` events each: `clients` writers, `per_client` appends each,
/// spread over the stores given (one per node).
pub async fn appends<S: EventStore>(
    nodes: &[S],
    ids: &Arc<Counter>,
    clients: u64,
    per_client: u64,
    batch: u64,
) -> Sample {
    let nodes: Vec<S> = nodes.to_vec();
    let ids = ids.clone();
    concurrent_sample(clients, per_client, batch, move |client, _| {
        let store = nodes[(client as usize) % nodes.len()].clone();
        let id = ids.next();
        async move {
            let events = (0..batch).map(|k| event(id * batch + k)).collect();
            let meta = AppendMeta::new(uuid::Uuid::from_u128(u128::from(id) + 1), "bench");
            store.append(stream(id), ExpectedVersion::Any, events, meta).await.expect("append");
        }
    })
    .await
}
