//! Test driver for the crash test (`tests/crash.rs`): opens the store in the folder given as
//! the first argument and appends forever from several tasks, printing one line per
//! acknowledged append: `ack <first_seq> <last_seq> <command>`. The number of events in an
//! append is `1 + command % 3`, so the test can check that no append landed partially.
//! The second argument makes command ids unique across runs.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use oacis_eventlog::{AppendMeta, EventStore, ExpectedVersion, NewEvent, SledConfig, SledStore, StreamId};
use std::io::Write;

const TASKS: u64 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: eventlog-crash-writer DIR RUN")?;
    let run: u64 = args.next().ok_or("usage: eventlog-crash-writer DIR RUN")?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    runtime.block_on(async move {
        let dir = dir;
        let store = SledStore::open(SledConfig::new(dir))?;
        println!("open {}", store.head().seq);
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("crash-{task}"))?;
                for n in 0u64.. {
                    let command = u128::from(run) << 64 | u128::from(task << 32 | n);
                    let count = 1 + command % 3;
                    let events = (0..count)
                        .map(|i| {
                            NewEvent::json(
                                "Written",
                                1,
                                &serde_json::json!({ "run": run, "task": task, "n": n, "i": i }),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let meta = AppendMeta::new(uuid::Uuid::from_u128(command), "crash-writer");
                    let done = store.append(stream.clone(), ExpectedVersion::Any, events, meta).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {} {command}", done.first_seq, done.last_seq)?;
                    out.flush()?;
                }
                Ok::<(), BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    })
}
