//! A live feed on the PostgreSQL backend: catch up from a seq, then follow the node's
//! published head (moved by its own writer and by its tailer for other nodes' appends).
//!
//! As on sled, every record comes from the table by seq, so there is no hand-over between
//! catching up and following: no gap and no duplicate. Each record must follow the one
//! before it (seq and hash); a gap or a broken link ends the feed with [`Error::Corrupt`].
//! A read that finds PostgreSQL away ([`Error::Unavailable`]) is tried again, with a backoff
//! up to 2 s, for as long as it takes: followers (the views) never stop for a lost connection.

use std::collections::VecDeque;

use deadpool_postgres::Pool;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::model::{Hash32, Record, Seq};
use crate::store::{Head, Subscription};

/// Records read per refill.
const CHUNK: u64 = 512;
/// First wait after a read finds PostgreSQL away, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// The PostgreSQL backend's [`Subscription`].
#[derive(Debug)]
pub struct PgSubscription {
    pool: Pool,
    shared: Option<std::sync::Arc<super::keys::SharedKeys>>,
    heads: watch::Receiver<Head>,
    next: Seq,
    /// The hash the next record must chain to, once known.
    link: Option<Hash32>,
    buffer: VecDeque<Record>,
    /// The wait before the next read while PostgreSQL is away.
    backoff: std::time::Duration,
}

impl PgSubscription {
    pub(super) fn new(
        pool: Pool,
        shared: Option<std::sync::Arc<super::keys::SharedKeys>>,
        heads: watch::Receiver<Head>,
        from: Seq,
    ) -> Self {
        let next = from.max(Seq::FIRST);
        let link = (next == Seq::FIRST).then_some(Hash32::GENESIS);
        PgSubscription { pool, shared, heads, next, link, buffer: VecDeque::new(), backoff: MIN_BACKOFF }
    }

    async fn refill(&mut self, head: Seq) -> Result<()> {
        let last = Seq(head.0.min(self.next.0.saturating_add(CHUNK - 1)));
        let count = usize::try_from(last.0 - self.next.0 + 1).unwrap_or(usize::MAX);
        let chunk = super::read_range(&self.pool, self.shared.as_deref(), self.next, last, count).await?;
        if chunk.len() != count {
            let missing = Seq(self.next.0 + u64::try_from(chunk.len()).unwrap_or(0));
            return Err(Error::corrupt(missing, format!("missing below the committed head {head}")));
        }
        if let (Some(link), Some(first)) = (self.link, chunk.first()) {
            if first.prev_hash != link {
                return Err(Error::corrupt(first.seq, "not chained to the record before it"));
            }
        }
        self.link = chunk.last().map(|r| r.hash);
        self.next = last.next();
        self.buffer.extend(chunk);
        Ok(())
    }
}

impl Subscription for PgSubscription {
    async fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            let head = self.heads.borrow_and_update().seq;
            if self.next <= head {
                match self.refill(head).await {
                    Ok(()) => {}
                    // The database is away: wait and read again (the feed never skips).
                    Err(Error::Unavailable(reason)) => {
                        tracing::warn!(error = %reason, next = self.next.0, "a log feed waits for PostgreSQL");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
                self.backoff = MIN_BACKOFF;
                continue;
            }
            if self.heads.changed().await.is_err() {
                // The node stopped: deliver what it published last, then end.
                if self.next <= self.heads.borrow().seq {
                    continue;
                }
                return None;
            }
        }
    }
}
