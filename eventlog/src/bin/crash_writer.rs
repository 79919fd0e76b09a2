//! Test driver for the crash tests (`tests/crash.rs`, `tests/pg.rs`): opens the store in the
//! folder given as the first argument (or, for a `postgres://` URL, the PostgreSQL store) and appends forever from several tasks, printing one line per
//! acknowledged append: `ack <first_seq> <last_seq> <command>`. The number of events in an
//! append is `1 + command % 3`, so the test can check that no append landed partially.
//! The second argument makes command ids unique across runs. An even command of two or more
//! events is a two-stream `append_many`: its first event goes to the task's `-pair` stream.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use oacis_eventlog::{
    AppendMeta, EventStore, ExpectedVersion, NewEvent, PgConfig, PgStore, SledConfig, SledStore, StreamAppend, StreamId,
};
use std::io::Write;

const TASKS: u64 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: eventlog-crash-writer DIR RUN")?;
    let run: u64 = args.next().ok_or("usage: eventlog-crash-writer DIR RUN")?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    runtime.block_on(async move {
        if dir.starts_with("postgres://") {
            write(PgStore::open(PgConfig::new(dir)).await?, run).await
        } else {
            write(SledStore::open(SledConfig::new(dir))?, run).await
        }
    })
}

async fn write<S: EventStore>(store: S, run: u64) -> Result<(), BoxError> {
    {
        println!("open {}", store.head().seq);
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("crash-{task}"))?;
                let pair = StreamId::new(format!("crash-{task}-pair"))?;
                for n in 0u64.. {
                    let command = u128::from(run) << 64 | u128::from(task << 32 | n);
                    let count = 1 + command % 3;
                    let mut events = (0..count)
                        .map(|i| {
                            NewEvent::json(
                                "Written",
                                1,
                                &serde_json::json!({ "run": run, "task": task, "n": n, "i": i }),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let meta = AppendMeta::new(uuid::Uuid::from_u128(command), "crash-writer");
                    let mut appends = Vec::new();
                    if count >= 2 && command % 2 == 0 {
                        let first = events.remove(0);
                        appends.push(StreamAppend {
                            stream: pair.clone(),
                            expected: ExpectedVersion::Any,
                            events: vec![first],
                        });
                    }
                    appends.push(StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Any, events });
                    let done = store.append_many(appends, meta).await?;
                    let (Some(first), Some(last)) = (done.first(), done.last()) else { return Err("no result".into()) };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {} {command}", first.first_seq, last.last_seq)?;
                    out.flush()?;
                }
                Ok::<(), BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }
}
