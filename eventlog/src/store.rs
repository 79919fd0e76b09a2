//! The [`EventStore`] trait: what every backend offers and what every caller may rely on.
//!
//! Callers (command handlers, projections, the CLI) are written against this trait so that a
//! second backend can be added without touching them. The contract, which every backend keeps:
//! - `append` is atomic (all events or none), checks the expected version, and is
//!   acknowledged only once durable; a repeated command id returns the first result.
//! - Reads return only acknowledged records, in `seq` (or stream `version`) order.
//! - A subscription yields every record from its start position exactly once, in order,
//!   first those already stored and then each new one as it is acknowledged.

use std::future::Future;

use crate::error::{AppendError, Result};
use crate::model::{AppendMeta, ExpectedVersion, Hash32, NewEvent, Record, RecordRef, Seq, StreamId, Version};

/// The result of an acknowledged append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the append's first record.
    pub first_seq: Seq,
    /// Seq of its last record.
    pub last_seq: Seq,
    /// The stream's version after the append (the last record's version).
    pub version: Version,
    /// True when the command id had been appended before: nothing was written and the fields
    /// above are those of the first append.
    pub duplicate: bool,
}

impl Appended {
    /// A one-record append at `seq` that left its stream at `version`, as a repeated command
    /// id's answer.
    pub(crate) fn at(seq: Seq, version: Version) -> Appended {
        Appended { first_seq: seq, last_seq: seq, version, duplicate: true }
    }
}

/// The last acknowledged record's position and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Its seq (`Seq::ZERO` for an empty log).
    pub seq: Seq,
    /// Its hash (`Hash32::GENESIS` for an empty log).
    pub hash: Hash32,
}

/// A live feed of records from a starting seq, see [`EventStore::subscribe`].
pub trait Subscription: Send {
    /// The next record; `None` once the store has closed and every record was delivered.
    fn next(&mut self) -> impl Future<Output = Option<Result<Record>>> + Send;
}

/// An append-only, hash-chained event log.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// The feed type [`EventStore::subscribe`] returns.
    type Subscription: Subscription;

    /// Appends `events` to `stream` if its version satisfies `expected`. All events get the
    /// same metadata, consecutive seqs and consecutive stream versions.
    fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        meta: AppendMeta,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send;

    /// Up to `max` records with seq >= `from`, in order.
    fn read_all(&self, from: Seq, max: usize) -> impl Future<Output = Result<Vec<Record>>> + Send;

    /// Reads like [`EventStore::read_all`] but hands each record to `each` borrowed from
    /// storage, collecting what it returns into `out` (cleared first, then returned). A reader
    /// that looks at each record once (a replay) so skips building owned records, and can
    /// reuse `out` from page to page. The default builds owned records and lends them.
    fn read_all_with<T, F>(
        &self,
        from: Seq,
        max: usize,
        mut out: Vec<T>,
        mut each: F,
    ) -> impl Future<Output = Result<Vec<T>>> + Send
    where
        T: Send + 'static,
        F: FnMut(RecordRef<'_>) -> T + Send + 'static,
    {
        async move {
            out.clear();
            for record in self.read_all(from, max).await? {
                out.push(each(record.borrowed()));
            }
            Ok(out)
        }
    }

    /// Up to `max` records of `stream` with version >= `from`, in order.
    fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Record>>> + Send;

    /// The last acknowledged record.
    fn head(&self) -> Head;

    /// Every record with seq >= `from`, then each new one as it is acknowledged.
    fn subscribe(&self, from: Seq) -> Self::Subscription;
}

/// Checks an append against every rule that does not need the store's state, so that a
/// backend refuses bad input before it queues anything.
pub(crate) fn check_append(events: &[NewEvent], meta: &AppendMeta) -> Result<(), AppendError> {
    use crate::limits::Limits;

    if events.is_empty() {
        return Err(AppendError::Empty);
    }
    if events.len() > Limits::MAX_EVENTS_PER_APPEND {
        return Err(AppendError::TooManyEvents { count: events.len(), max: Limits::MAX_EVENTS_PER_APPEND });
    }
    let texts = [
        ("actor", Some(meta.actor.as_str()), Limits::MAX_ACTOR_BYTES),
        ("client_addr", meta.client_addr.as_deref(), Limits::MAX_CLIENT_ADDR_BYTES),
    ];
    for (field, text, max) in texts {
        let size = text.map_or(0, str::len);
        if size > max {
            return Err(AppendError::MetadataTooLong { field, size, max });
        }
    }
    let mut total = 0usize;
    for (index, event) in events.iter().enumerate() {
        let size = event.payload.len();
        if size > Limits::MAX_PAYLOAD_BYTES {
            return Err(AppendError::PayloadTooLarge { index, size, max: Limits::MAX_PAYLOAD_BYTES });
        }
        if event.schema == 0 {
            return Err(AppendError::InvalidSchema { index });
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&event.payload) {
            return Err(AppendError::PayloadNotJson { index, reason: e.to_string() });
        }
        total = total.saturating_add(size);
    }
    if total > Limits::MAX_APPEND_PAYLOAD_BYTES {
        return Err(AppendError::AppendTooLarge { size: total, max: Limits::MAX_APPEND_PAYLOAD_BYTES });
    }
    Ok(())
}
