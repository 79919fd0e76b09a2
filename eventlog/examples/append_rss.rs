//! Resident memory of the event store alone under appends: opens a data folder (for example a
//! copy of one made by `oacis demo --customers 100000`) with the given sled cache, appends
//! 6 rounds of 16 x 400 one-event appends (a ~600-byte payload, one stream, as the mixed
//! soak's writes are), and prints the process's resident memory before each round.
//!
//! `cargo run --release -p oacis-eventlog --example append_rss -- DATA_COPY CACHE_MIB`
//!
//! It writes to the folder: give it a copy.

use oacis_eventlog::{AppendMeta, EventStore, ExpectedVersion, NewEvent, SledConfig, SledStore, StreamId};

/// The allocator the `oacis` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// VmRSS of this process, in MiB.
fn resident_mib() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS")).ok_or("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).ok_or("no value")?.parse()?;
    Ok(kib / 1024)
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(cache)) = (args.next(), args.next()) else {
        return Err("usage: append_rss DATA_COPY CACHE_MIB".into());
    };
    let cache_mib: u64 = cache.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let store = SledStore::open(SledConfig { cache_capacity_bytes: cache_mib << 20, ..SledConfig::new(&dir) })?;
    let payload = serde_json::json!({ "summary": "电话回访，客户满意".repeat(20), "channel": "CALL" });
    let stream = StreamId::new("customer-append-rss")?;
    runtime.block_on(async {
        let base = u128::from(store.head().seq.0);
        for round in 0..6u128 {
            println!("round {round}: resident {} MiB, head seq {}", resident_mib()?, store.head().seq.0);
            let mut writers = Vec::new();
            for writer in 0..16u128 {
                let (store, stream, payload) = (store.clone(), stream.clone(), payload.clone());
                writers.push(tokio::spawn(async move {
                    for i in 0..400u128 {
                        let command = uuid::Uuid::from_u128((base << 32) + (round << 24) + (writer << 16) + i);
                        let event = NewEvent::json("InteractionLogged", 1, &payload)?;
                        store
                            .append(
                                stream.clone(),
                                ExpectedVersion::Any,
                                vec![event],
                                AppendMeta::new(command, "probe"),
                            )
                            .await?;
                    }
                    Ok::<(), BoxError>(())
                }));
            }
            for writer in writers {
                writer.await??;
            }
        }
        println!("end: resident {} MiB, head seq {}", resident_mib()?, store.head().seq.0);
        Ok::<(), BoxError>(())
    })
}
