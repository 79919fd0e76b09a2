//! Subscriptions catch up and follow live appends with no gap and no duplicate, on both
//! backends.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

#[macro_use]
mod common;

use common::{event, meta, runtime, stream, Backend};
use oacis_eventlog::{EventStore, ExpectedVersion, Seq, Subscription};

const WRITERS: u64 = 8;
const APPENDS_PER_WRITER: u64 = 150;

fn a_subscriber_catching_up_during_appends_sees_every_seq_once_in_order<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        // Some history before anyone subscribes.
        for i in 0..300u64 {
            store
                .append(stream("before"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i) + 1_000_000))
                .await?;
        }
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..APPENDS_PER_WRITER {
                    let command = u128::from(w * 10_000 + i);
                    let events = (0..1 + i % 3).map(|n| event("Live", n)).collect();
                    store.append(stream(&format!("writer-{w}")), ExpectedVersion::Any, events, meta(command)).await?;
                }
                anyhow::Ok(())
            }));
        }
        let mut from_start = store.subscribe(Seq(1));
        let mut from_middle = store.subscribe(Seq(150));
        for writer in writers {
            writer.await??;
        }
        let total = store.head().seq.0;
        assert!(total > 300 + WRITERS * APPENDS_PER_WRITER);
        for (subscription, first) in [(&mut from_start, 1), (&mut from_middle, 150)] {
            for expected in first..=total {
                let record = subscription.next().await.expect("feed open")?;
                assert_eq!(record.seq, Seq(expected));
            }
        }
        // Caught up: the next record arrives only once it is appended.
        let late = store.append(stream("late"), ExpectedVersion::Any, vec![event("Late", 0)], meta(99_999_999)).await?;
        let record = from_start.next().await.expect("feed open")?;
        assert_eq!((record.seq, record.stream.as_str()), (late.first_seq, "late"));
        anyhow::Ok(())
    })
}
on_both!(a_subscriber_catching_up_during_appends_sees_every_seq_once_in_order);

fn a_subscription_ends_after_the_last_record_once_the_store_is_closed<B: Backend>(backend: &B) -> anyhow::Result<()> {
    runtime().block_on(async {
        let store = backend.open_async().await;
        for i in 0..5u64 {
            store.append(stream("s"), ExpectedVersion::Any, vec![event("E", i)], meta(u128::from(i))).await?;
        }
        let mut feed = store.subscribe(Seq(3));
        drop(store);
        let mut seen = Vec::new();
        while let Some(record) = feed.next().await {
            seen.push(record?.seq.0);
        }
        assert_eq!(seen, [3, 4, 5]);
        anyhow::Ok(())
    })
}
on_both!(a_subscription_ends_after_the_last_record_once_the_store_is_closed);
