//! The one command path. Every mutation, the first-start set-up and the demo's users go
//! through [`CommandBus::execute`]: lock the streams, load their folded state (from a bounded
//! cache, brought up to date with the stream's tail), `decide` with `Context { actor, now }`,
//! append with the expected version and a command id, retry on a version conflict, and wait
//! until the views have applied the new seq (read-your-writes).
//!
//! Invariants:
//! - No resolver appends on its own; this is the only caller of `EventStore::append` in the
//!   server.
//! - Decisions on one stream are taken one at a time in this process (a stream lock), against
//!   the cached state, so that concurrent writers to a hot stream do not storm into
//!   conflicts. A command that touches several streams locks them all, in one global order,
//!   so that crossing commands (A merged into B while B is merged into A) are serialised.
//! - A cached state stays in the cache while it is decided on (shared, the stream locked),
//!   and is replaced by the state the appended events reach, at their version. A decision
//!   that is not appended (refused, or a later step of its command refused) leaves it as it
//!   was: the cache may hold states that appends still being made durable will reach, which
//!   the log does not hold yet, so reloading from the log there would decide on a state
//!   behind them (and a command decided on the state of one that then failed could land on a
//!   version another append took). A failed append leaves its streams uncached, so the next
//!   command reloads them from the log.
//! - An idempotency key maps to one command id per actor: a retry with the same key and the
//!   same command returns the first result; the same key with another command is refused.

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use oacis_domain::ids::{Timestamp, UserId};
use oacis_domain::validate::Region;
use oacis_domain::{Aggregate, Context, DomainError, DomainEvent};
use oacis_eventlog::{
    AnyStore, AppendError, AppendMeta, Appended, CommandId, EventKind, EventStore, ExpectedVersion, NewEvent,
    PendingAppend, Seq, StreamAppend, StreamId, Version,
};
use oacis_projections::{ProjectionError, Projections};
use uuid::Uuid;

/// How often a command is decided (first and again after a version conflict) before
/// CONFLICT, when this server is the log's one writer: a conflict then comes only from a
/// stale cached state.
pub const MAX_ATTEMPTS: usize = 3;
/// The same on a log other servers append to (PostgreSQL): their commands on a hot stream
/// can take its next version again and again, so more attempts, each after a random pause
/// of up to 2 ms times the attempts so far, so that two servers' retries drift apart.
pub const MAX_ATTEMPTS_SHARED: usize = 8;
/// Folded states kept in memory (streams).
pub const CACHE_STREAMS: usize = 50_000;
/// Idempotency keys remembered in memory, with their first result.
pub const REMEMBERED_KEYS: usize = 100_000;
/// Stream locks (a stream hashes to one; collisions only serialise unrelated streams).
const STREAM_LOCKS: usize = 4_096;

/// Subject locks ([`CommandBus::lock_subject`]; collisions only serialise unrelated subjects).
const SUBJECT_LOCKS: usize = 256;
/// Records read per page when loading a stream.
const LOAD_PAGE: usize = 2_000;

/// Who issues a command, and the request it came with.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The acting user (`None` for the system itself).
    pub actor: Option<UserId>,
    /// The request's correlation id (also the request id in logs).
    pub correlation_id: Uuid,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The client's idempotency key (`clientMutationId`), if any.
    pub idempotency_key: Option<String>,
    /// A digest of the client's request (operation and arguments), for idempotency checks;
    /// `None` to use the decided commands instead.
    pub fingerprint: Option<[u8; 32]>,
    /// The version the client last saw of the command's first stream (optimistic
    /// concurrency): if the stream has moved on, CONFLICT, without deciding again.
    pub expected_version: Option<u64>,
}

impl Origin {
    /// The system acting on its own (first start, timers).
    #[must_use]
    pub fn system() -> Self {
        Origin { correlation_id: Uuid::now_v7(), ..Origin::default() }
    }

    fn actor_label(&self) -> String {
        self.actor.map_or_else(|| "system".to_owned(), |a| a.to_string())
    }

    /// A new entity id: derived from the idempotency key when there is one (so that a retry
    /// names the same entity), random (UUIDv7) otherwise. `purpose` tells ids of one command
    /// apart.
    #[must_use]
    pub fn new_id(&self, purpose: &str) -> Uuid {
        match &self.idempotency_key {
            Some(key) => derived_uuid(&["entity", &self.actor_label(), key, purpose]),
            None => Uuid::now_v7(),
        }
    }

    fn command_id(&self) -> Uuid {
        match &self.idempotency_key {
            Some(key) => derived_uuid(&["command", &self.actor_label(), key]),
            None => Uuid::now_v7(),
        }
    }
}

/// The keyed requests being executed on this server, by command id: each with the receiver
/// that wakes when it ends.
type Flights = Arc<Mutex<std::collections::HashMap<Uuid, tokio::sync::watch::Receiver<()>>>>;

/// A keyed request being executed, registered under its command id until dropped (whatever
/// its outcome); those waiting on it wake when it is dropped.
struct KeyInFlight {
    map: Flights,
    id: Uuid,
    _done: tokio::sync::watch::Sender<()>,
}

impl KeyInFlight {
    /// Registers `id`, or answers the receiver of the request already registered under it.
    fn enter(map: &Flights, id: Uuid) -> Result<KeyInFlight, tokio::sync::watch::Receiver<()>> {
        let mut flights = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(first) = flights.get(&id) {
            return Err(first.clone());
        }
        let (done, waiting) = tokio::sync::watch::channel(());
        flights.insert(id, waiting);
        Ok(KeyInFlight { map: map.clone(), id, _done: done })
    }
}

impl Drop for KeyInFlight {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.id);
    }
}

/// A UUIDv8 from BLAKE3 of length-prefixed parts.
fn derived_uuid(parts: &[&str]) -> Uuid {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"oacis derived id v1");
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let bytes = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes.as_bytes()[..16]);
    Uuid::new_v8(first)
}

/// What an executed command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executed {
    /// The last seq written (or, when nothing was written, the views' position).
    pub seq: Seq,
    /// The first stream's version after the command.
    pub version: Version,
    /// Events written.
    pub events: usize,
    /// True when this answers a retry of an earlier command with the same idempotency key.
    pub replayed: bool,
}

/// Why a command was not carried out, or not answered. Nothing was appended for any variant
/// but `Store`, whose outcome is unknown, and `Lagging`, whose events are durable (either
/// way a retry with the same idempotency key is safe).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused it (API: VALIDATION, NOT_FOUND or CONFLICT by variant).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The stream kept changing while deciding (API: CONFLICT with the version).
    #[error("{stream} changed during each of {attempts} attempts; it is at version {actual}")]
    Conflict {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: usize,
        /// Its version now.
        actual: Version,
    },
    /// The stream is not at the version the client expected (API: CONFLICT with the version).
    #[error("{stream} is at version {actual}, not the version expected")]
    Stale {
        /// The stream.
        stream: String,
        /// Its version now.
        actual: Version,
    },
    /// The idempotency key was used before for another command (API: CONFLICT).
    #[error("the idempotency key was used before for a different command")]
    KeyReused,
    /// The log refused the events for their form, e.g. too large (API: VALIDATION).
    #[error("the log refused the events: {0}")]
    Refused(AppendError),
    /// The store failed (API: INTERNAL, logged once).
    #[error("event store failure: {0}")]
    Store(oacis_eventlog::Error),
    /// The views failed or did not catch up in time (API: INTERNAL, logged once).
    #[error("read views: {0}")]
    Views(ProjectionError),
    /// The command's events are durable at this seq, but the views did not apply it within the
    /// bound (API: STALE_VIEWS, with the seq).
    #[error("the views did not apply seq {0} within {1:?}")]
    Lagging(Seq, Duration),
    /// The key store failed after the command's events were durable (API: INTERNAL).
    #[error("key store: {0}")]
    Keys(String),
}

/// A stream's folded state (an `Arc` of its aggregate's state, shared while it is decided
/// on) and its version.
type Cached = (Version, Box<dyn Any + Send + Sync>);

/// Puts a decided state into the cache at the version its append reaches.
type Commit = Box<dyn FnOnce(&CommandBus, Version) + Send>;

/// One command's events for one stream, decided and ready to append.
pub struct Decided {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    /// Puts the new state into the cache at the version the append reached.
    commit: Commit,
}

impl Debug for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decided").field("stream", &self.stream).field("events", &self.events.len()).finish()
    }
}

/// The decisions of one step, in the order their events are appended.
pub type DecideMany<'a> = Pin<Box<dyn Future<Output = Result<Vec<Decided>, CommandError>> + Send + 'a>>;

/// One part of a command, with its types erased so that a command touching several
/// aggregates is a list of these (or one step deciding several streams, like a merge).
pub trait Step: Send + Sync + Debug {
    /// The streams it reads and writes (all are locked before it decides).
    fn streams(&self) -> Vec<String>;
    /// Loads the states, decides and stages the events.
    fn decide<'a>(&'a self, bus: &'a CommandBus, ctx: Context) -> DecideMany<'a>;
    /// A fingerprint of the command, for idempotency checks.
    fn fingerprint(&self) -> String;
}

/// `command` for the aggregate `A` on `stream`.
pub struct On<A: Aggregate> {
    stream: String,
    command: A::Command,
    /// How long its decision keeps the state it starts from: until refused when the step is
    /// a command's only one ([`CommandBus::execute`]), always when other steps may refuse
    /// after it.
    keep: Keep,
}

impl<A: Aggregate> Debug for On<A>
where
    A::Command: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("On").field("stream", &self.stream).field("command", &self.command).finish()
    }
}

/// A step: `command` for aggregate `A` on `stream`.
pub fn on<A>(stream: impl Into<String>, command: A::Command) -> Box<dyn Step>
where
    A: Aggregate + 'static,
    A::Command: Clone + Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
{
    Box::new(On::<A> { stream: stream.into(), command, keep: Keep::Always })
}

impl<A> Step for On<A>
where
    A: Aggregate + 'static,
    A::Command: Clone + Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
{
    fn streams(&self) -> Vec<String> {
        vec![self.stream.clone()]
    }

    fn fingerprint(&self) -> String {
        format!("{}|{:?}", self.stream, self.command)
    }

    fn decide<'a>(&'a self, bus: &'a CommandBus, ctx: Context) -> DecideMany<'a> {
        Box::pin(async move {
            Ok(vec![decide_all::<A>(bus, &self.stream, vec![self.command.clone()], ctx, self.keep).await?.0])
        })
    }
}

/// Decides `command` against `stream`'s current state (the caller holds its lock) and stages
/// the events; the new state replaces it in the cache once they are submitted.
pub async fn decide_on<A>(
    bus: &CommandBus,
    stream: &str,
    command: A::Command,
    ctx: Context,
) -> Result<Decided, CommandError>
where
    A: Aggregate + 'static,
    A::State: Send + Sync + 'static,
{
    Ok(decide_all::<A>(bus, stream, vec![command], ctx, Keep::Always).await?.0)
}

/// How long a decision keeps the state it starts from, to leave it in the cache as it was
/// (a state an append still in flight will reach may be there: reloading from the log would
/// decide on one behind it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Until the decision is done: something after it (a later step) may still refuse, so
    /// the state stays in the cache and its events evolve a copy.
    Always,
    /// Until its commands are decided: a command refused puts the state back; once every
    /// command is decided nothing can refuse, and the state, taken out of the cache while it
    /// is decided on, is evolved in place (a customer's state grows with its interactions,
    /// and a copy of it per write made a hot customer's writes slow down as it grew).
    UntilRefused,
}

/// Decides `commands` one after another against `stream`'s state (the caller holds its
/// lock), each against the state the previous one's events lead to, and stages all their
/// events; returns them with the state they reach.
async fn decide_all<A>(
    bus: &CommandBus,
    stream: &str,
    commands: Vec<A::Command>,
    ctx: Context,
    keep: Keep,
) -> Result<(Decided, Vec<A::Event>, Arc<A::State>), CommandError>
where
    A: Aggregate + 'static,
    A::State: Send + Sync + 'static,
{
    let stream_id = StreamId::new(stream.to_owned()).map_err(CommandError::Refused)?;
    let (version, original) = bus.load_state::<A>(&stream_id).await?;
    if keep == Keep::UntilRefused {
        bus.forget(stream);
    }
    // A refusal leaves the cache as it was.
    let refused = |original: Arc<A::State>, e: CommandError| {
        if keep == Keep::UntilRefused {
            bus.put_state(stream.to_owned(), version, original);
        }
        e
    };
    let last = commands.len().saturating_sub(1);
    let mut original = Some(original);
    let mut evolved: Option<A::State> = None;
    let mut decided = Vec::new();
    let mut new_events = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let outcome = match (&evolved, &original) {
            (Some(state), _) => A::decide(state, command, &ctx),
            (None, Some(state)) => A::decide(state, command, &ctx),
            (None, None) => unreachable!("the original is given up only with the last command's events"),
        };
        let kinds = outcome.map_err(CommandError::from).and_then(|events| {
            let kinds = events
                .iter()
                .map(|e| EventKind::new(e.kind()).map_err(CommandError::Refused))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((events, kinds))
        });
        let (events, kinds) = match kinds {
            Ok(decided) => decided,
            Err(e) => {
                return Err(match original {
                    Some(o) => refused(o, e),
                    None => e,
                })
            }
        };
        for (event, kind) in events.into_iter().zip(kinds) {
            new_events.push(NewEvent { kind, schema: event.schema(), payload: event.payload() });
            let state = match (evolved.take(), keep, i == last) {
                (Some(state), _, _) => state,
                // Nothing can refuse any more: the state taken out of the cache is evolved
                // in place (a copy only if something else still shares it).
                (None, Keep::UntilRefused, true) => match original.take() {
                    Some(shared) => Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone()),
                    None => unreachable!("the original is given up once"),
                },
                (None, _, _) => original.as_deref().cloned().unwrap_or_default(),
            };
            evolved = Some(A::evolve(state, &event));
            decided.push(event);
        }
    }
    let expected = if version == Version::NONE { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    let state = match (evolved, original) {
        (Some(state), _) => Arc::new(state),
        (None, Some(original)) => {
            // Nothing decided to change it: back in the cache as it was.
            if keep == Keep::UntilRefused {
                bus.put_state(stream.to_owned(), version, original.clone());
            }
            original
        }
        (None, None) => unreachable!("the original is given up only for an evolved state"),
    };
    let (key, kept) = (stream.to_owned(), state.clone());
    let commit: Commit = Box::new(move |bus, at| bus.put_state(key, at, kept));
    Ok((Decided { stream: stream_id, expected, events: new_events, commit }, decided, state))
}

/// What a [`then`] step derives for its second stream from the first's decided events and
/// the state they reach.
pub type Follow<A, B> = Arc<
    dyn Fn(&<A as Aggregate>::State, &[<A as Aggregate>::Event]) -> Result<Vec<<B as Aggregate>::Command>, DomainError>
        + Send
        + Sync,
>;

/// `command` on `A`'s `stream`, then on `B`'s `second` stream the commands `follow` derives
/// from what `A` decided; both streams are locked and both appends go in together (an
/// approval and the leave or budget it reserves, takes or releases).
pub fn then<A, B>(stream: String, command: A::Command, second: String, follow: Follow<A, B>) -> Box<dyn Step>
where
    A: Aggregate + 'static,
    A::Command: Clone + Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
    A::Event: Send + Sync,
    B: Aggregate + 'static,
    B::Command: Send + Sync,
    B::State: Send + Sync + 'static,
{
    Box::new(Then::<A, B> { stream, command, second, follow })
}

struct Then<A: Aggregate, B: Aggregate> {
    stream: String,
    command: A::Command,
    second: String,
    follow: Follow<A, B>,
}

impl<A: Aggregate, B: Aggregate> Debug for Then<A, B>
where
    A::Command: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Then")
            .field("stream", &self.stream)
            .field("command", &self.command)
            .field("second", &self.second)
            .finish()
    }
}

impl<A, B> Step for Then<A, B>
where
    A: Aggregate + 'static,
    A::Command: Clone + Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
    A::Event: Send + Sync,
    B: Aggregate + 'static,
    B::Command: Send + Sync,
    B::State: Send + Sync + 'static,
{
    fn streams(&self) -> Vec<String> {
        vec![self.stream.clone(), self.second.clone()]
    }

    fn fingerprint(&self) -> String {
        format!("{}|{:?}|{}", self.stream, self.command, self.second)
    }

    fn decide<'a>(&'a self, bus: &'a CommandBus, ctx: Context) -> DecideMany<'a> {
        Box::pin(async move {
            let (first, events, state) =
                decide_all::<A>(bus, &self.stream, vec![self.command.clone()], ctx, Keep::Always).await?;
            let commands = (self.follow)(&state, &events)?;
            if commands.is_empty() {
                return Ok(vec![first]);
            }
            let (second, _, _) = decide_all::<B>(bus, &self.second, commands, ctx, Keep::Always).await?;
            Ok(vec![first, second])
        })
    }
}

/// The command path, shared by every request.
pub struct CommandBus {
    store: AnyStore,
    projections: Arc<Projections>,
    cache: Mutex<LruCache<String, Cached>>,
    keys: Mutex<LruCache<Uuid, ([u8; 32], Executed)>>,
    /// Keyed requests being executed here, by command id: a second request with the same
    /// key waits for the first's outcome and is answered from it ([`KeyInFlight`]).
    in_flight: Flights,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// See [`CommandBus::lock_subject`]; apart from `locks`, so that a command holding a
    /// subject may lock any stream.
    subjects: Vec<tokio::sync::Mutex<()>>,
    wait_bound: Duration,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    region: Region,
}

impl Debug for CommandBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBus").field("wait_bound", &self.wait_bound).finish_non_exhaustive()
    }
}

/// The current time in the domain's unit (UTC microseconds).
#[must_use]
pub fn now() -> Timestamp {
    Timestamp(oacis_eventlog::Timestamp::now().0)
}

impl CommandBus {
    /// A command path over `store`, waiting at most `wait_bound` for the views.
    #[must_use]
    pub fn new(store: impl Into<AnyStore>, projections: Arc<Projections>, wait_bound: Duration) -> Self {
        let (Some(streams), Some(keys)) = (NonZeroUsize::new(CACHE_STREAMS), NonZeroUsize::new(REMEMBERED_KEYS)) else {
            unreachable!("the cache sizes are non-zero constants")
        };
        CommandBus {
            store: store.into(),
            projections,
            cache: Mutex::new(LruCache::new(streams)),
            keys: Mutex::new(LruCache::new(keys)),
            in_flight: Arc::default(),
            locks: (0..STREAM_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            subjects: (0..SUBJECT_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            wait_bound,
            clock: Arc::new(now),
            region: Region::CN,
        }
    }

    /// The same path telling time by `clock` (UTC microseconds) instead of the system's: for
    /// tests that move time themselves.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> Timestamp + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// The same path reading national phone forms as numbers of `region`.
    #[must_use]
    pub fn with_phone_region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// The context of a decision by `actor` now.
    #[must_use]
    pub fn context(&self, actor: Option<UserId>) -> Context {
        Context::new(actor, self.now()).with_phone_region(self.region)
    }

    /// The time now, by this path's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The live views.
    #[must_use]
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// Executes one aggregate command.
    pub async fn execute<A>(
        &self,
        stream: String,
        command: A::Command,
        origin: &Origin,
    ) -> Result<Executed, CommandError>
    where
        A: Aggregate + 'static,
        A::Command: Clone + Debug + Send + Sync + 'static,
        A::State: Send + Sync + 'static,
    {
        // The command's only step: nothing after its decision can refuse, so its state is
        // evolved in place, without the copy a later refusal would need.
        let step: Box<dyn Step> = Box::new(On::<A> { stream, command, keep: Keep::UntilRefused });
        self.execute_steps(vec![step], origin).await
    }

    /// Holds `subject`'s lock until the guard is dropped: for a check that reads the views
    /// across streams (a submitter's leave on every ledger) and the command it guards, which
    /// its streams' locks alone do not keep from racing a request about the same subject.
    /// Held across [`CommandBus::execute_steps`], which returns once the views have the
    /// command's events, the next holder's check sees them. On this server only: requests
    /// to other servers on the same log are not excluded.
    pub async fn lock_subject(&self, subject: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.subjects[lock_slot(subject) % SUBJECT_LOCKS].lock().await
    }

    /// Executes a command that touches one or more streams: every stream is locked, every
    /// step decided, and only if all decisions succeed are the events appended, atomically
    /// (one `append_many`), in the given order. The append is submitted in the log's order
    /// while the locks are held and awaited after they are released, so that the next
    /// command on a hot stream is decided (against the cached state the append will reach)
    /// while this one is made durable.
    pub async fn execute_steps(&self, steps: Vec<Box<dyn Step>>, origin: &Origin) -> Result<Executed, CommandError> {
        let fingerprint = origin.fingerprint.unwrap_or_else(|| {
            let mut hasher = blake3::Hasher::new();
            for step in &steps {
                hasher.update(step.fingerprint().as_bytes());
                hasher.update(b"\n");
            }
            *hasher.finalize().as_bytes()
        });
        let command_id = origin.command_id();
        let keyed = origin.idempotency_key.is_some();
        if keyed {
            if let Some(answer) = self.replay_of(command_id, fingerprint).await? {
                return Ok(answer);
            }
        }
        // One request per key at a time on this server: a copy (or another request under the
        // same key) sent while the first runs waits for it and is answered from its outcome,
        // rather than decided against the state the first's pending append will reach (which
        // answered "exists already" instead of the key's first result or KEY_REUSED).
        let _flight = if keyed {
            loop {
                match KeyInFlight::enter(&self.in_flight, command_id) {
                    Ok(flight) => break Some(flight),
                    Err(mut first) => {
                        let _ = first.changed().await;
                        if let Some(answer) = self.replay_of(command_id, fingerprint).await? {
                            return Ok(answer);
                        }
                    }
                }
            }
        } else {
            None
        };
        let mut slots: Vec<usize> = steps.iter().flat_map(|s| s.streams()).map(|s| lock_slot(&s)).collect();
        slots.sort_unstable();
        slots.dedup();
        let mut attempt = 0;
        let executed = loop {
            attempt += 1;
            let mut guards = Vec::with_capacity(slots.len());
            for slot in &slots {
                guards.push(self.locks[*slot].lock().await);
            }
            // Another request with the same key may have been submitted while this one waited:
            // its outcome (waited for until durable) is the answer.
            if keyed {
                if let Some(answer) = self.replay_of(command_id, fingerprint).await? {
                    return Ok(answer);
                }
            }
            let submitted = self.submit(&steps, origin, command_id, fingerprint).await;
            // The streams are unlocked once the append is submitted, so that the next command
            // on them decides against the states it will reach: if it fails, that version is
            // not taken and the next append fails too. On a log other servers append to, they
            // may take it, and a command decided on a state that never was would be accepted:
            // there, the streams stay locked until the append is answered.
            let held = if self.store.several_writers() {
                Some(guards)
            } else {
                drop(guards);
                None
            };
            let submitted = match submitted {
                Ok(submitted) => submitted,
                // A copy of this keyed request sent at the same time (here or on another
                // server) may have been decided first: the state this one was decided against
                // includes it. Its answer is this one's.
                Err(e) => return self.replayed_or(keyed, command_id, fingerprint, e).await,
            };
            let outcome = match submitted {
                Submitted::Nothing(executed) => Ok(executed),
                Submitted::Pending { pending, streams, events } => match pending.await {
                    Ok(appended) => {
                        if appended.iter().any(|a| a.duplicate) {
                            // The log had this command already: nothing was written, so the
                            // states cached for it are not the log's.
                            streams.iter().for_each(|s| self.forget(s));
                        }
                        Ok(executed_of(&appended, events))
                    }
                    Err(e) => {
                        // The cache holds states this append would have reached: forget them.
                        streams.iter().for_each(|s| self.forget(s));
                        Err(e)
                    }
                },
            };
            drop(held);
            match outcome {
                Ok(executed) => break executed,
                Err(AppendError::Conflict { stream, actual, .. }) => {
                    let shared = self.store.several_writers();
                    let attempts = if shared { MAX_ATTEMPTS_SHARED } else { MAX_ATTEMPTS };
                    if attempt >= attempts {
                        return Err(CommandError::Conflict { stream: stream.as_str().to_owned(), attempts, actual });
                    }
                    tracing::debug!(%stream, %actual, attempt, "version conflict; deciding again");
                    if shared {
                        let mut noise = [0u8; 2];
                        let _ = getrandom::fill(&mut noise);
                        let micros = u64::from(u16::from_le_bytes(noise)) % 2_000 * u64::try_from(attempt).unwrap_or(1);
                        tokio::time::sleep(Duration::from_micros(micros)).await;
                    }
                }
                Err(AppendError::CommandReused { .. }) => {
                    return self.replayed_or(keyed, command_id, fingerprint, CommandError::KeyReused).await
                }
                Err(AppendError::Store(e)) => return Err(CommandError::Store(e)),
                Err(other) => return Err(CommandError::Refused(other)),
            }
        };
        if keyed {
            if let Ok(mut keys) = self.keys.lock() {
                keys.put(command_id, (fingerprint, executed));
            }
        }
        if executed.events > 0 {
            match tokio::time::timeout(self.wait_bound, self.projections.wait_for(executed.seq)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CommandError::Views(e)),
                Err(_) => return Err(CommandError::Lagging(executed.seq, self.wait_bound)),
            }
        }
        Ok(executed)
    }

    /// The causation id of a keyed request with `fingerprint` (see [`causation_of`]).
    fn causation_of(&self, fingerprint: [u8; 32]) -> Uuid {
        causation_of(self.store.keys().map(|k| k.request_digest_key()).as_ref(), fingerprint)
    }

    /// The first result of an idempotency key used before: from memory, or (after a
    /// restart, or from another node) from the log, whose records carry the request's
    /// fingerprint as their causation id. The same key with another request is refused.
    async fn replay_of(&self, command_id: Uuid, fingerprint: [u8; 32]) -> Result<Option<Executed>, CommandError> {
        if let Some(answer) = self.remembered(command_id, fingerprint)? {
            return Ok(Some(answer));
        }
        let Some(outcome) = self.store.command_outcome(CommandId(command_id)).await.map_err(CommandError::Store)?
        else {
            return Ok(None);
        };
        let appended: Vec<Appended> = outcome.appends.iter().map(|(_, a)| *a).collect();
        let Some(first) = appended.first() else { return Ok(None) };
        let record = self.store.read_all(first.first_seq, 1).await.map_err(CommandError::Store)?;
        if record.first().and_then(|r| r.meta.causation_id) != Some(self.causation_of(fingerprint)) {
            return Err(CommandError::KeyReused);
        }
        let events = appended.iter().map(|a| usize::try_from(a.last_seq.0 - a.first_seq.0 + 1).unwrap_or(0)).sum();
        Ok(Some(Executed { replayed: true, ..executed_of(&appended, events) }))
    }

    /// The first result of the same keyed request if the log now holds one (a copy sent at
    /// the same time won), else `error`.
    async fn replayed_or(
        &self,
        keyed: bool,
        command_id: Uuid,
        fingerprint: [u8; 32],
        error: CommandError,
    ) -> Result<Executed, CommandError> {
        if keyed {
            if let Some(answer) = self.replay_of(command_id, fingerprint).await? {
                return Ok(answer);
            }
        }
        Err(error)
    }

    fn remembered(&self, command_id: Uuid, fingerprint: [u8; 32]) -> Result<Option<Executed>, CommandError> {
        let keys = self.keys.lock();
        match keys.ok().and_then(|mut k| k.get(&command_id).copied()) {
            Some((seen, executed)) if seen == fingerprint => Ok(Some(Executed { replayed: true, ..executed })),
            Some(_) => Err(CommandError::KeyReused),
            None => Ok(None),
        }
    }

    /// Decides every step and submits the events (the caller holds the streams' locks).
    async fn submit(
        &self,
        steps: &[Box<dyn Step>],
        origin: &Origin,
        command_id: Uuid,
        fingerprint: [u8; 32],
    ) -> Result<Submitted, CommandError> {
        let ctx = self.context(origin.actor);
        let mut decided = Vec::with_capacity(steps.len());
        for step in steps {
            decided.extend(step.decide(self, ctx).await?);
        }
        let version_of = |d: &Decided| match d.expected {
            ExpectedVersion::Exact(v) => v,
            _ => Version::NONE,
        };
        if let (Some(expected), Some(first)) = (origin.expected_version, decided.first()) {
            let actual = version_of(first);
            if actual.0 != expected {
                return Err(CommandError::Stale { stream: first.stream.as_str().to_owned(), actual });
            }
        }
        let first_version = decided.first().map_or(Version::NONE, version_of);
        let mut parts = Vec::new();
        let mut commits = Vec::new();
        let mut streams = Vec::new();
        let mut events = 0;
        for d in decided {
            let base = version_of(&d);
            if d.events.is_empty() {
                (d.commit)(self, base);
                continue;
            }
            let count = u64::try_from(d.events.len()).unwrap_or(u64::MAX);
            events += d.events.len();
            streams.push(d.stream.as_str().to_owned());
            commits.push((d.commit, Version(base.0 + count)));
            parts.push(StreamAppend { stream: d.stream, expected: d.expected, events: d.events });
        }
        if parts.is_empty() {
            let seq = self.projections.applied();
            return Ok(Submitted::Nothing(Executed { seq, version: first_version, events: 0, replayed: false }));
        }
        let mut meta = AppendMeta::new(command_id, origin.actor_label());
        meta.correlation_id = origin.correlation_id;
        // With an idempotency key, the request's fingerprint goes on the record, so that a
        // retry after a restart is checked against the request that first used the key.
        meta.causation_id = origin.idempotency_key.is_some().then(|| self.causation_of(fingerprint));
        meta.client_addr.clone_from(&origin.client_addr);
        match self.store.submit_many(parts, meta).await {
            Ok(pending) => {
                // Optimistic: the states the append will reach, so the next command on these
                // streams decides against them while this append is made durable. A failed
                // append forgets them.
                for (commit, version) in commits {
                    commit(self, version);
                }
                Ok(Submitted::Pending { pending, streams, events })
            }
            Err(e) => {
                streams.iter().for_each(|s| self.forget(s));
                Err(match e {
                    AppendError::Store(e) => CommandError::Store(e),
                    other => CommandError::Refused(other),
                })
            }
        }
    }

    fn forget(&self, stream: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.pop(stream);
        }
    }

    fn put_state<S: Send + Sync + 'static>(&self, stream: String, version: Version, state: Arc<S>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(stream, (version, Box::new(state)));
        }
    }

    /// The folded state of `stream` and its version, from the cache (where it stays; the
    /// caller holds the stream's lock), with any records appended since read and folded (and
    /// then cached).
    async fn load_state<A>(&self, stream: &StreamId) -> Result<(Version, Arc<A::State>), CommandError>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
    {
        let cached = self.cache.lock().ok().and_then(|mut c| {
            c.get(stream.as_str()).and_then(|(v, s)| s.downcast_ref::<Arc<A::State>>().map(|s| (*v, s.clone())))
        });
        let (mut version, mut shared) = cached.unwrap_or_else(|| (Version::NONE, Arc::new(A::State::default())));
        let mut folded: Option<A::State> = None;
        loop {
            let page = self.store.read_stream(stream, version.next(), LOAD_PAGE).await.map_err(CommandError::Store)?;
            let full = page.len() == LOAD_PAGE;
            for record in page {
                let event: A::Event = oacis_projections::decode::decode_event(&record, self.store.keys().map(|k| &**k))
                    .map_err(CommandError::Views)?;
                let state = folded.take().unwrap_or_else(|| (*shared).clone());
                folded = Some(A::evolve(state, &event));
                version = record.version;
            }
            if !full {
                break;
            }
        }
        if let Some(state) = folded {
            shared = Arc::new(state);
            self.put_state(stream.as_str().to_owned(), version, shared.clone());
        }
        Ok((version, shared))
    }

    /// The current state of `stream`, for a step that holds its lock (facts that `decide`
    /// needs from another aggregate).
    pub async fn peek<A>(&self, stream: &str) -> Result<A::State, CommandError>
    where
        A: Aggregate,
        A::State: Clone + Send + Sync + 'static,
    {
        let id = StreamId::new(stream.to_owned()).map_err(CommandError::Refused)?;
        Ok((*self.load_state::<A>(&id).await?.1).clone())
    }

    /// The current state of `stream` (for reads of facts that `decide` needs from another
    /// aggregate, and for sign-in). Takes the stream's lock briefly.
    pub async fn state<A>(&self, stream: &str) -> Result<A::State, CommandError>
    where
        A: Aggregate,
        A::State: Clone + Send + Sync + 'static,
    {
        let id = StreamId::new(stream.to_owned()).map_err(CommandError::Refused)?;
        let _guard = self.locks[lock_slot(stream)].lock().await;
        Ok((*self.load_state::<A>(&id).await?.1).clone())
    }
}

/// What submitting a command led to.
enum Submitted {
    /// Every decision was empty: nothing to append.
    Nothing(Executed),
    /// The append is in the log's order, not yet durable.
    Pending {
        /// Its answer.
        pending: PendingAppend,
        /// The streams it writes (forgotten by the cache if it fails).
        streams: Vec<String>,
        /// Events in it.
        events: usize,
    },
}

/// The answer to a command from the answers of its parts: the first part's version, the
/// last seq written.
fn executed_of(appended: &[Appended], events: usize) -> Executed {
    let version = appended.first().map_or(Version::NONE, |a| a.version);
    let seq = appended.iter().map(|a| a.last_seq).max().unwrap_or(Seq::ZERO);
    let replayed = appended.iter().any(|a| a.duplicate);
    Executed { seq, version, events, replayed }
}

/// The causation id recorded with a command's events: a UUIDv8 of the request's fingerprint,
/// so that a retried idempotency key can be checked against the request that first used it.
/// With a key store, the fingerprint is first hashed with its request digest key
/// ([`oacis_eventlog::keys::KeyStore::request_digest_key`]): the fingerprint covers the
/// request's arguments, personal data and passwords included, and the log (and every export)
/// keeps the causation id, so an unkeyed one would let anyone with an export confirm guesses of
/// them offline, erased data included.
fn causation_of(digest_key: Option<&[u8; 32]>, fingerprint: [u8; 32]) -> Uuid {
    let digest = match digest_key {
        Some(key) => blake3::keyed_hash(key, &fingerprint),
        None => blake3::Hash::from(fingerprint),
    };
    derived_uuid(&["request", &digest.to_hex()])
}

fn lock_slot(stream: &str) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    stream.hash(&mut hasher);
    usize::try_from(hasher.finish() % STREAM_LOCKS as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use oacis_domain::department::{Department, DepartmentCommand};
    use oacis_domain::ids::DepartmentId;
    use oacis_eventlog::{EventStore, SledConfig, SledStore};
    use oacis_projections::Projections;

    use super::{CommandBus, CommandError, Origin};
    use crate::graphql::error::ApiError;

    /// A write whose views do not catch up in time is durable: it is answered STALE_VIEWS
    /// with its seq (not INTERNAL), and a retry with the same key answers it without a second
    /// write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_write_whose_views_lag_is_answered_with_its_seq_and_a_retry_replays_it() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SledStore::open(SledConfig::new(dir.path())).expect("store");
        let projections = Arc::new(Projections::start(&store, &mut |_| {}).await.expect("views"));
        let bus = CommandBus::new(store.clone(), projections.clone(), Duration::from_millis(200));
        let origin = Origin { idempotency_key: Some("department-1".into()), ..Origin::system() };
        let id = DepartmentId(origin.new_id("department"));
        let create = || DepartmentCommand::Create { id, name: "Sales".into(), parent: None, parent_open: false };
        // The views are held (read-locked) for a second on another thread: they cannot apply.
        let (held, holding) = std::sync::mpsc::channel();
        let holder = std::thread::spawn({
            let projections = projections.clone();
            move || {
                projections
                    .read(|_| {
                        let _ = held.send(());
                        std::thread::sleep(Duration::from_secs(1));
                    })
                    .expect("views readable");
            }
        });
        holding.recv().expect("the views are held");
        let lagging = bus.execute::<Department>(id.stream(), create(), &origin).await.expect_err("views behind");
        let CommandError::Lagging(seq, _) = lagging else { panic!("expected Lagging, got {lagging}") };
        assert_eq!(store.head().seq, seq, "the write is durable");
        let api = ApiError::from(lagging);
        assert_eq!(api.code(), "STALE_VIEWS");
        assert!(api.message().contains(&format!("seq {}", seq.0)), "{}", api.message());
        holder.join().expect("holder");
        let retried = bus.execute::<Department>(id.stream(), create(), &origin).await.expect("replayed");
        assert!(retried.replayed);
        assert_eq!(retried.seq, seq);
        assert_eq!(store.head().seq, seq, "nothing written twice");
    }

    /// A keyed request whose key another request on this server is executing waits for it
    /// and is answered from its outcome: here the first ran another command under the key,
    /// so the second is KeyReused, and writes nothing (it once decided against the first's
    /// pending append and answered "exists already").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_under_a_key_in_flight_waits_for_it_and_is_answered_from_it() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SledStore::open(SledConfig::new(dir.path())).expect("store");
        let projections = Arc::new(Projections::start(&store, &mut |_| {}).await.expect("views"));
        let bus = Arc::new(CommandBus::new(store.clone(), projections, Duration::from_secs(5)));
        let origin = Origin { idempotency_key: Some("department-2".into()), ..Origin::system() };
        let id = DepartmentId(origin.new_id("department"));
        let first = super::KeyInFlight::enter(&bus.in_flight, origin.command_id()).expect("nothing in flight");
        let second = tokio::spawn({
            let (bus, origin) = (bus.clone(), origin.clone());
            async move {
                let create = DepartmentCommand::Create { id, name: "Service".into(), parent: None, parent_open: false };
                bus.execute::<Department>(id.stream(), create, &origin).await
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "waits while the first is in flight");
        assert_eq!(store.head().seq.0, 0, "nothing written meanwhile");
        // The first ends, having run another command under the key.
        let executed = super::Executed {
            seq: oacis_eventlog::Seq(1),
            version: oacis_eventlog::Version(1),
            events: 1,
            replayed: false,
        };
        bus.keys.lock().expect("keys").put(origin.command_id(), ([9u8; 32], executed));
        drop(first);
        let answer = second.await.expect("joined");
        assert!(matches!(answer, Err(CommandError::KeyReused)), "{answer:?}");
        assert_eq!(store.head().seq.0, 0, "nothing written");
    }

    /// A refused decision leaves the state it was decided on in the cache: it may hold a state
    /// an append still being made durable will reach (here put there by hand, at a version
    /// the log does not have yet), and the next command must decide against it, not against
    /// the log's older state (a refusal once dropped it, and two overlapping leave requests
    /// were both accepted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_decision_leaves_the_state_it_was_decided_on_in_the_cache() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SledStore::open(SledConfig::new(dir.path())).expect("store");
        let projections = Arc::new(Projections::start(&store, &mut |_| {}).await.expect("views"));
        let bus = CommandBus::new(store.clone(), projections, Duration::from_secs(5));
        let origin = Origin::system();
        let id = DepartmentId(uuid::Uuid::from_u128(7));
        let create = || DepartmentCommand::Create { id, name: "Sales".into(), parent: None, parent_open: false };
        bus.execute::<Department>(id.stream(), create(), &origin).await.expect("created");
        // A pending append's state: version 2, renamed, not in the log.
        let mut pending = bus.peek::<Department>(&id.stream()).await.expect("state");
        pending.name = Some("Sales and Service".into());
        bus.put_state(id.stream(), oacis_eventlog::Version(2), Arc::new(pending));
        let refused = bus.execute::<Department>(id.stream(), create(), &origin).await;
        assert!(matches!(refused, Err(CommandError::Domain(_))), "{refused:?}");
        let after = bus.peek::<Department>(&id.stream()).await.expect("state");
        assert_eq!(after.name.as_deref(), Some("Sales and Service"), "the pending state, not the log's");
        assert_eq!(store.head().seq.0, 1, "nothing written");
    }

    /// The causation id (kept in the log and every export) of a keyed request is keyed by the
    /// request digest key: stable for retries, and not the plain digest of the arguments,
    /// which anyone holding an export could test guesses of personal data against.
    #[test]
    fn a_causation_id_is_keyed_by_the_request_digest_key() {
        let fingerprint = *blake3::hash(b"registerCustomer\nprofile={phones: [\"+8613800138000\"]}").as_bytes();
        let (one, other) = ([1u8; 32], [2u8; 32]);
        let keyed = super::causation_of(Some(&one), fingerprint);
        assert_eq!(keyed, super::causation_of(Some(&one), fingerprint), "the same for a retry");
        assert_ne!(keyed, super::causation_of(Some(&other), fingerprint));
        assert_ne!(keyed, super::causation_of(None, fingerprint), "not the unkeyed digest");
    }
}
