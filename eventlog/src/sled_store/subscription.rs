//! A live feed: catch up from a seq, then follow acknowledged appends.
//!
//! The feed reads from the store itself, in chunks, up to the durable head published by the
//! writer, and waits for the head to move when it has caught up. Because every record comes
//! from the store by seq, there is no hand-over between "catching up" and "live": no gap and
//! no duplicate is possible, and a slow subscriber only falls behind, it never loses records.

use std::collections::VecDeque;

use tokio::sync::watch;

use super::RecordIter;
use crate::error::{Error, Result};
use crate::model::{Record, Seq};
use crate::store::{Head, Subscription};

/// Records read from the store per refill.
const CHUNK: u64 = 512;

/// The sled backend's [`Subscription`].
#[derive(Debug)]
pub struct SledSubscription {
    db: sled::Db,
    /// sled's data file, named in read errors.
    data_path: std::path::PathBuf,
    heads: watch::Receiver<Head>,
    next: Seq,
    buffer: VecDeque<Record>,
}

impl SledSubscription {
    pub(super) fn new(db: sled::Db, data_path: std::path::PathBuf, heads: watch::Receiver<Head>, from: Seq) -> Self {
        SledSubscription { db, data_path, heads, next: from.max(Seq::FIRST), buffer: VecDeque::new() }
    }

    async fn refill(&mut self, head: Seq) -> Result<()> {
        let last = Seq(head.0.min(self.next.0.saturating_add(CHUNK - 1)));
        let db = self.db.clone();
        let data_path = self.data_path.clone();
        let from = self.next;
        let chunk = tokio::task::spawn_blocking(move || {
            RecordIter::new(&db, &data_path, from, last).collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|_| Error::Closed)??;
        self.next = last.next();
        self.buffer.extend(chunk);
        Ok(())
    }
}

impl Subscription for SledSubscription {
    async fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            let head = self.heads.borrow_and_update().seq;
            if self.next <= head {
                if let Err(e) = self.refill(head).await {
                    return Some(Err(e));
                }
                continue;
            }
            if self.heads.changed().await.is_err() {
                // The writer is gone: deliver what it acknowledged last, then end.
                if self.next <= self.heads.borrow().seq {
                    continue;
                }
                return None;
            }
        }
    }
}
