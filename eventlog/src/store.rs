//! The [`EventStore`] trait: what every backend offers and what every caller may rely on.
//!
//! Callers (command handlers, projections, the CLI) are written against this trait so that a
//! second backend can be added without touching them. The contract, which every backend keeps:
//! - `append` and `append_many` are atomic (all events of all streams or none), check every
//!   expected version, and are acknowledged only once durable. A command id is used once: a
//!   true retry (same streams, same events) returns the first result, anything else under the
//!   same id is refused ([`AppendError::CommandReused`]).
//! - Reads return only acknowledged records, in `seq` (or stream `version`) order.
//! - A subscription yields every record from its start position exactly once, in order,
//!   first those already stored and then each new one as it is acknowledged.

use std::future::Future;

use crate::error::{AppendError, Result};
use crate::model::{
    AppendMeta, CommandId, ExpectedVersion, Hash32, NewEvent, Record, RecordRef, Seq, StreamId, Version,
};

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

/// One stream's part of an [`EventStore::append_many`]: its events, appended if the stream's
/// version satisfies `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the caller believes the stream's version is.
    pub expected: ExpectedVersion,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
}

/// What the first append under a command id wrote, see [`EventStore::command_outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The command id.
    pub command_id: CommandId,
    /// Each stream written, in seq order, with its seqs and the version it was left at
    /// (`duplicate` is true in each: this is an earlier append's result).
    pub appends: Vec<(StreamId, Appended)>,
}

impl CommandOutcome {
    /// Rebuilds the outcome from the records of one command, in seq order: each run of
    /// records of one stream is one [`Appended`].
    pub(crate) fn of_records(command_id: CommandId, records: &[Record]) -> CommandOutcome {
        let mut appends: Vec<(StreamId, Appended)> = Vec::new();
        for record in records {
            match appends.last_mut() {
                Some((stream, outcome)) if *stream == record.stream => {
                    outcome.last_seq = record.seq;
                    outcome.version = record.version;
                }
                _ => appends.push((
                    record.stream.clone(),
                    Appended { first_seq: record.seq, last_seq: record.seq, version: record.version, duplicate: true },
                )),
            }
        }
        CommandOutcome { command_id, appends }
    }

    /// Whether `appends` is a true retry of this outcome's append: the same streams in the same
    /// order, each with the same events (kind, schema, payload bytes). Expected versions are
    /// not compared: a retry after success would now conflict.
    pub(crate) fn is_retry_of(&self, records: &[Record], appends: &[StreamAppend]) -> bool {
        let mut records = records.iter();
        self.appends.len() == appends.len()
            && self.appends.iter().zip(appends).all(|((stream, outcome), part)| {
                let count = outcome.last_seq.0 - outcome.first_seq.0 + 1;
                *stream == part.stream
                    && u64::try_from(part.events.len()) == Ok(count)
                    && part.events.iter().all(|event| {
                        records.next().is_some_and(|r| {
                            r.kind == event.kind && r.schema == event.schema && r.payload == event.payload
                        })
                    })
            })
    }
}

/// An append submitted in the log's order and not yet answered, see
/// [`EventStore::submit_many`]. Await it for the answer `append_many` would give.
pub struct PendingAppend(
    /// The answer, once durable or refused.
    pub std::pin::Pin<Box<dyn Future<Output = Result<Vec<Appended>, AppendError>> + Send>>,
);

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingAppend")
    }
}

impl Future for PendingAppend {
    type Output = Result<Vec<Appended>, AppendError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
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

    /// The key store that seals personal data on append, if any: readers open sealed
    /// payloads with it ([`crate::seal::open_record`]). None by default.
    fn keys(&self) -> Option<&std::sync::Arc<crate::keys::KeyStore>> {
        None
    }

    /// Appends `events` to `stream` if its version satisfies `expected`. All events get the
    /// same metadata, consecutive seqs and consecutive stream versions. The one-stream case of
    /// [`EventStore::append_many`], with the same errors.
    fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        meta: AppendMeta,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send {
        async move {
            let mut done = self.append_many(vec![StreamAppend { stream, expected, events }], meta).await?;
            done.pop().ok_or_else(|| AppendError::Store(crate::Error::Closed))
        }
    }

    /// Appends to several streams atomically, for a command that changes two aggregates at
    /// once (a merge writes the duplicate and the survivor; a user creation claims a
    /// uniqueness reservation and writes the user).
    ///
    /// Every part's expected version is checked against the log as it stands, including
    /// appends accepted but not yet durable; then either every part's events land, in the
    /// given order, with consecutive seqs and one sled batch, or none do. Returns one
    /// [`Appended`] per part, in order. One command id covers the whole call: a true retry
    /// returns the first result, all of it, with `duplicate` set.
    ///
    /// Errors: [`AppendError::Conflict`] naming the first part whose version does not match;
    /// [`AppendError::RepeatedStream`] if a stream appears twice; [`AppendError::CommandReused`]
    /// if the command id was used for another append; the input errors of one append, with
    /// the limits ([`crate::Limits`]) applying to the whole call and event indexes counting
    /// across parts in order; [`AppendError::Store`] if the store failed.
    fn append_many(
        &self,
        appends: Vec<StreamAppend>,
        meta: AppendMeta,
    ) -> impl Future<Output = Result<Vec<Appended>, AppendError>> + Send;

    /// [`EventStore::append_many`] in two steps, for callers that pipeline appends to one
    /// stream: the returned future resolves once the append has its place in the log's order
    /// (for the sled store: once it is in the writer's queue, behind every append submitted
    /// before it), and answers a [`PendingAppend`] that resolves like `append_many` once the
    /// append is durable (or refused). A caller may so submit the next append, expecting the
    /// version this one will reach, before this one is durable; the log checks it against
    /// appends not yet durable. The default waits for the whole append (no pipelining).
    fn submit_many(
        &self,
        appends: Vec<StreamAppend>,
        meta: AppendMeta,
    ) -> impl Future<Output = Result<PendingAppend, AppendError>> + Send {
        async move {
            let answer = self.append_many(appends, meta).await;
            Ok(PendingAppend(Box::pin(async move { answer })))
        }
    }

    /// What the first append under `command_id` wrote, once durable; `None` if nothing was
    /// written under it. Lets a caller answer a retried command before deciding it again.
    /// Answered from the in-memory command index and the command's records (read back); if
    /// the append is accepted but not yet durable, waits until it is.
    fn command_outcome(&self, command_id: CommandId) -> impl Future<Output = Result<Option<CommandOutcome>>> + Send;

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
pub(crate) fn check_append(appends: &[StreamAppend], meta: &AppendMeta) -> Result<(), AppendError> {
    use crate::limits::Limits;

    if appends.is_empty() || appends.iter().any(|part| part.events.is_empty()) {
        return Err(AppendError::Empty);
    }
    let count = appends.iter().map(|part| part.events.len()).sum::<usize>();
    if count > Limits::MAX_EVENTS_PER_APPEND {
        return Err(AppendError::TooManyEvents { count, max: Limits::MAX_EVENTS_PER_APPEND });
    }
    for (i, part) in appends.iter().enumerate() {
        if appends[..i].iter().any(|earlier| earlier.stream == part.stream) {
            return Err(AppendError::RepeatedStream { stream: part.stream.clone() });
        }
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
    for (index, event) in appends.iter().flat_map(|part| &part.events).enumerate() {
        let size = event.payload.len();
        if size > Limits::MAX_PAYLOAD_BYTES {
            return Err(AppendError::PayloadTooLarge { index, size, max: Limits::MAX_PAYLOAD_BYTES });
        }
        if event.schema == 0 {
            return Err(AppendError::InvalidSchema { index });
        }
        // serde_json does not check the UTF-8 of strings it skips, so this comes first.
        if let Err(e) = std::str::from_utf8(&event.payload) {
            return Err(AppendError::PayloadNotUtf8 { index, offset: e.valid_up_to() });
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
