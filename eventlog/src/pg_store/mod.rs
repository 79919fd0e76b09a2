//! The PostgreSQL backend: the log in a database that several `oacis serve` nodes share.
//!
//! Appends go through each node's [`writer`] (group commit under the head row's lock, see
//! there). Reads go to a small connection pool. Each node follows the log with a tailer: a
//! connection of its own that LISTENs on [`schema::CHANNEL`] and, as a wake-up or every
//! `poll_interval` (NOTIFY is lost while a listener is away), reads the committed head and
//! publishes it; subscriptions and [`EventStore::head`] follow that published head.
//!
//! Invariants:
//! - The record bytes, and so every hash, are those of `FORMAT.md`: an export from either
//!   backend verifies with the same tools. Every read decodes and checks them.
//! - Reads return committed records only, and a committed record is acknowledged (or about
//!   to be: its node answers after the commit). A read or subscription that finds a seq
//!   missing, or a record not chained to the one before, reports [`Error::Corrupt`] and never
//!   skips it.
//! - The published head only moves forward.

mod keys;
mod schema;
mod subscription;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_postgres::{AsyncMessage, NoTls};

pub use subscription::PgSubscription;

use crate::codec;
use crate::error::{AppendError, Error, Result};
use crate::keys::KeyStore;
use crate::limits::Limits;
use crate::model::{AppendMeta, CommandId, Record, Seq, StreamId, Version};
use crate::staging::Span;
use crate::store::{check_append, Appended, CommandOutcome, EventStore, Head, PendingAppend, StreamAppend};
use writer::{head_of, seq_of, sql_seq, AppendRequest, PgWriter};

/// Where and how to open a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A libpq connection string or `postgres://` URL.
    pub url: String,
    /// Read connections in the pool (default 4).
    pub pool_size: usize,
    /// How often the tailer reads the head without a wake-up (default 500 ms).
    pub poll_interval: Duration,
    /// How long an append waits for the head row's lock before its group is refused
    /// (default 5 s; a transaction left idle twice as long is ended by the server).
    pub lock_timeout: Duration,
    /// The key store: with one, personal members of payloads are sealed on append.
    pub keys: Option<Arc<KeyStore>>,
    /// Tests: the writer waits for a permit between its writes and its commit, holding the
    /// head row's lock meanwhile.
    pub before_commit: Option<Arc<Semaphore>>,
    /// A file of this server's (its data folder's) where the last committed head it saw is
    /// kept (`<seq> <hash hex>`, rewritten as the head moves): a database found behind it at
    /// open ([`Error::LogRewound`]) lost acknowledged records. None: no such check at open.
    pub head_file: Option<std::path::PathBuf>,
}

impl PgConfig {
    /// Defaults for a connection string.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: 4,
            poll_interval: Duration::from_millis(500),
            lock_timeout: Duration::from_secs(5),
            keys: None,
            before_commit: None,
            head_file: None,
        }
    }

    /// The parsed connection string; `role` names the connection in `pg_stat_activity`
    /// (`oacis-writer`, `oacis-tailer`, `oacis-reader`) unless the string names one.
    fn parsed(&self, role: &str) -> Result<tokio_postgres::Config> {
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| Error::Database(format!("invalid connection string: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name(role);
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(10)).connect_timeout(Duration::from_secs(10));
        Ok(config)
    }
}

/// The PostgreSQL-backed [`EventStore`]. Cheap to clone; the last clone dropped stops the
/// node's writer and tailer.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    queue: mpsc::Sender<AppendRequest>,
    heads: Arc<watch::Sender<Head>>,
    keys: Option<Arc<KeyStore>>,
    /// The key store's keys shared with the other servers on this log.
    shared: Option<Arc<keys::SharedKeys>>,
    refilling: Arc<std::sync::atomic::AtomicBool>,
    /// Command ids of this server's appends queued or being written, for `command_outcome`.
    in_flight: InFlightMap,
    /// For connections of its own (the setup lock).
    config_for_setup: PgConfig,
    /// Whether the tailer's last read of the head was answered.
    reachable: Arc<std::sync::atomic::AtomicBool>,
    /// Why appends are refused, once the database's log was found behind a head this server
    /// saw committed (by the writer under the lock, or by the tailer).
    rewound: Arc<std::sync::OnceLock<String>>,
    /// Dropped with the store: ends the tailer.
    _stop: oneshot::Sender<()>,
}

/// The setup lock of [`PgStore::setup_lock`]: released when dropped (its connection closes).
#[derive(Debug)]
pub struct SetupLock {
    _client: tokio_postgres::Client,
}

type InFlightMap = Arc<std::sync::Mutex<std::collections::HashMap<CommandId, watch::Receiver<()>>>>;

fn lock_map(map: &InFlightMap) -> std::sync::MutexGuard<'_, std::collections::HashMap<CommandId, watch::Receiver<()>>> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One queued append's command id in the server's in-flight map: removed, and its waiters
/// woken, when the writer drops the answered request.
#[derive(Debug)]
pub(super) struct InFlight {
    map: InFlightMap,
    id: CommandId,
    _done: watch::Sender<()>,
}

impl InFlight {
    fn new(map: &InFlightMap, id: CommandId) -> InFlight {
        let (done, waiting) = watch::channel(());
        lock_map(map).insert(id, waiting);
        InFlight { map: map.clone(), id, _done: done }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = lock_map(&self.map);
        // Only this request's own entry (a copy under the same id may have replaced it).
        if map.get(&self.id).is_some_and(|w| w.same_channel(&self._done.subscribe())) {
            map.remove(&self.id);
        }
    }
}

/// Publishes `head` as this server's committed head if it is further on: the published head
/// only moves forward.
pub(super) fn advance(heads: &watch::Sender<Head>, head: Head) {
    heads.send_if_modified(|known| {
        let moved = head.seq > known.seq;
        if moved {
            *known = head;
        }
        moved
    });
}

/// Whether `error` is the connection's, not the statement's: lost or refused connections,
/// and SQLSTATE classes 08 (connection exception) and 57 (operator intervention, such as a
/// terminated backend or a server shutting down).
pub(crate) fn transient(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_none_or(|db| matches!(&db.code().code()[..2], "08" | "57"))
}

/// A PostgreSQL error as the store reports it, with its cause.
pub(crate) fn database(error: tokio_postgres::Error) -> Error {
    let mut text = match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    };
    if error.as_db_error().is_none() {
        if let Some(cause) = std::error::Error::source(&error) {
            text = format!("{text}: {cause}");
        }
    }
    if transient(&error) {
        Error::Unavailable(text)
    } else {
        Error::Database(text)
    }
}

/// The wake-ups a tailer's connection receives: the highest seq a notification named, and a
/// wake-up of the tailer.
struct Notices {
    /// The highest committed seq named by a notification (`u64::MAX` for a payload that is
    /// not a seq: the head is read).
    highest: std::sync::atomic::AtomicU64,
    wake: mpsc::Sender<()>,
}

impl Notices {
    fn new(wake: mpsc::Sender<()>) -> Arc<Notices> {
        Arc::new(Notices { highest: std::sync::atomic::AtomicU64::new(0), wake })
    }

    fn received(&self, payload: &str) {
        let seq = payload.parse().unwrap_or(u64::MAX);
        self.highest.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
        let _ = self.wake.try_send(());
    }

    /// Whether a notification named a seq beyond `published` (one this server has not
    /// published yet: another node's commit).
    fn beyond(&self, published: Seq) -> bool {
        self.highest.load(std::sync::atomic::Ordering::Acquire) > published.0
    }
}

/// A connection of its own (the writer's, the tailer's), driven on the runtime. Its
/// notifications, if any, go to `notices`.
async fn connect_with(config: &PgConfig, role: &str, notices: Option<Arc<Notices>>) -> Result<tokio_postgres::Client> {
    let (client, mut connection) = config.parsed(role)?.connect(NoTls).await.map_err(database)?;
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if let Some(notices) = &notices {
                        notices.received(notification.payload());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                    break;
                }
            }
        }
    });
    Ok(client)
}

pub(crate) async fn connect(config: &PgConfig, role: &str) -> Result<tokio_postgres::Client> {
    connect_with(config, role, None).await
}

impl PgStore {
    /// Connects, creates the tables if missing, reads the head and starts this node's writer
    /// and tailer.
    ///
    /// Errors: [`Error::Database`] if the database cannot be reached or refuses;
    /// [`Error::IncompatibleFormat`] if its tables were written by another format.
    pub async fn open(config: PgConfig) -> Result<PgStore> {
        let client = connect(&config, "oacis-writer").await?;
        client.batch_execute(schema::CREATE).await.map_err(database)?;
        let row = client.query_one(schema::HEAD, &[]).await.map_err(database)?;
        let format: String = row.get(3);
        if format != schema::FORMAT {
            return Err(Error::IncompatibleFormat { found: format, expected: schema::FORMAT });
        }
        let head = head_of(row.get(0), row.get(1))
            .ok_or_else(|| Error::Database("the head row's hash is not 32 bytes".into()))?;
        if let Some(known) = config.head_file.as_deref().and_then(read_head_file) {
            let at = client.query_opt(schema::HASH_AT, &[&sql_seq(known.seq)]).await.map_err(database)?;
            let found = at.and_then(|row| head_of(sql_seq(known.seq), row.get(0)));
            if known.seq > Seq::ZERO && found != Some(known) {
                return Err(Error::LogRewound { known, found: head });
            }
        }
        drop(client);
        let manager = Manager::from_config(
            config.parsed("oacis-reader")?,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| Error::Database(format!("cannot build the connection pool: {e}")))?;
        let shared = match &config.keys {
            Some(keys) => Some(Arc::new(keys::SharedKeys::open(keys.clone(), &pool).await?)),
            None => None,
        };
        let heads = Arc::new(watch::Sender::new(head));
        let (queue, requests) = mpsc::channel(Limits::APPEND_QUEUE);
        let rewound = Arc::new(std::sync::OnceLock::new());
        tokio::spawn(PgWriter::new(config.clone(), heads.clone(), rewound.clone()).run(requests));
        let (stop, stopped) = oneshot::channel();
        let reachable = Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(tail(config.clone(), heads.clone(), reachable.clone(), rewound.clone(), stopped));
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                queue,
                heads,
                keys: config.keys.clone(),
                shared,
                refilling: Arc::default(),
                in_flight: InFlightMap::default(),
                config_for_setup: config.clone(),
                reachable,
                rewound,
                _stop: stop,
            }),
        })
    }

    /// Waits until this node's published head reaches `seq` (its views may then follow), or
    /// `bound` passes; returns the head then.
    pub async fn wait_for(&self, seq: Seq, bound: Duration) -> Head {
        let mut heads = self.inner.heads.subscribe();
        let _ = tokio::time::timeout(bound, heads.wait_for(|head| head.seq >= seq)).await;
        *self.inner.heads.borrow()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        pooled(&self.inner.pool).await
    }

    /// Takes the database's setup lock (a session advisory lock, held until the returned
    /// guard is dropped), so that servers starting together set up the organisation one after
    /// the other; answers the guard and the committed head, which this server's views should
    /// reach before deciding what is left to set up.
    ///
    /// Errors: [`Error::Database`], [`Error::Unavailable`].
    pub async fn setup_lock(&self) -> Result<(SetupLock, Seq)> {
        let client = connect(&self.inner.config_for_setup, "oacis-setup").await?;
        client.query_one("SELECT pg_advisory_lock(7357002)", &[]).await.map_err(database)?;
        let row = client.query_one(schema::HEAD, &[]).await.map_err(database)?;
        let head = seq_of(row.get(0));
        Ok((SetupLock { _client: client }, head))
    }

    /// The log's head as the database holds it now (committed by any server; this server's
    /// published head may trail it by a notification).
    ///
    /// Errors: [`Error::Unavailable`] if the database cannot be reached; [`Error::Database`].
    pub async fn committed_head(&self) -> Result<Seq> {
        let client = self.client().await?;
        let row = client.query_one(schema::HEAD, &[]).await.map_err(database)?;
        Ok(seq_of(row.get(0)))
    }

    /// Whether the database answered this server's last look at the log's head (every
    /// `poll_interval` at most): false while PostgreSQL is away.
    #[must_use]
    pub fn reachable(&self) -> bool {
        self.inner.reachable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why this server refuses appends, if it does: the database's log was found behind a head
    /// this server saw committed (acknowledged records are missing: a failover to a lagging
    /// replica, a restore). Appends stay refused until the server is restarted on a database
    /// that holds that head.
    #[must_use]
    pub fn refusing_appends(&self) -> Option<String> {
        self.inner.rewound.get().cloned()
    }

    /// How many personal-data keys (tombstones included) the servers on this log share.
    ///
    /// Errors: [`Error::Database`].
    pub async fn shared_key_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client.query_one("SELECT count(*) FROM oacis_keys", &[]).await.map_err(database)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// After an erasure on this server (its key store destroyed `ids`): the keys' shared rows
    /// become tombstones, so that no server takes them in again. Other servers destroy their
    /// copies when they follow the erasure's event (the server's erasure follower).
    ///
    /// Errors: [`Error::Database`]; erasing again completes it.
    pub async fn share_erasure(&self, ids: &[crate::keys::KeyId]) -> Result<()> {
        match &self.inner.shared {
            Some(shared) => shared.destroyed(&self.inner.pool, ids).await,
            None => Ok(()),
        }
    }

    /// Writes `records`, which must continue the log exactly (the first one's seq one past the
    /// head, chained to it), byte for byte as stored, in one transaction under the head's lock;
    /// answers the new head. For copying a log between backends (`oacis migrate`): every hash
    /// and link is checked again, so a copy that passes is the same log.
    ///
    /// Errors: [`Error::Corrupt`] at the first record that does not continue the log or whose
    /// hash does not match its body (nothing of the page is written); [`Error::Database`].
    pub async fn import_page(&self, records: Vec<Record>) -> Result<Head> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(database)?;
        let row = transaction.query_one(schema::LOCK_HEAD, &[]).await.map_err(database)?;
        let head = head_of(row.get(0), row.get(1))
            .ok_or_else(|| Error::Database("the head row's hash is not 32 bytes".into()))?;
        let mut chain = crate::verify::ChainCheck::after(head);
        let mut staged = crate::staging::Staged::new(head, crate::model::Timestamp(row.get::<_, i64>(2)));
        for mut record in records {
            chain.check(&record)?;
            let given = record.hash;
            let stored = codec::seal(&mut record);
            if record.hash != given {
                return Err(Error::corrupt(record.seq, "hash does not match the record's body"));
            }
            staged.versions.insert(record.stream.clone(), record.version);
            let command = record.meta.command_id;
            match staged.accepted.last_mut() {
                Some((last, span, parts)) if *last == command => {
                    span.last = record.seq;
                    match parts.last_mut() {
                        Some((stream, _, end, _)) if *stream == record.stream => *end = record.seq,
                        _ => parts.push((record.stream.clone(), record.seq, record.seq, record.version)),
                    }
                }
                _ => staged.accepted.push((
                    command,
                    Span { first: record.seq, last: record.seq },
                    vec![(record.stream.clone(), record.seq, record.seq, record.version)],
                )),
            }
            staged.recorded_at = record.recorded_at;
            staged.head = Head { seq: record.seq, hash: record.hash };
            staged.records.push((record.seq, stored));
        }
        let rows = writer::Rows::of(&staged);
        let events: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&rows.seqs, &rows.streams, &rows.versions, &rows.commands, &rows.prev_hashes, &rows.hashes, &rows.records];
        transaction.execute(schema::INSERT_EVENTS, &events).await.map_err(database)?;
        // A command split across two pages continues its span.
        transaction
            .execute(
                &format!(
                    "{} ON CONFLICT (command_id) DO UPDATE SET last_seq = EXCLUDED.last_seq",
                    schema::INSERT_COMMANDS
                ),
                &[&rows.command_ids, &rows.command_firsts, &rows.command_lasts],
            )
            .await
            .map_err(database)?;
        let new = staged.head;
        let moved = transaction
            .execute(
                schema::MOVE_HEAD,
                &[&sql_seq(new.seq), &&new.hash.0[..], &staged.recorded_at.0, &sql_seq(head.seq), &&head.hash.0[..]],
            )
            .await
            .map_err(database)?;
        if moved != 1 {
            return Err(Error::Database("the head row moved under its lock".into()));
        }
        transaction.execute(schema::NOTIFY, &[&new.seq.0.to_string()]).await.map_err(database)?;
        transaction.commit().await.map_err(database)?;
        advance(&self.inner.heads, new);
        Ok(new)
    }
}

async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => database(e),
        // No connection to be had (timeouts, a closed pool): the database is away.
        other => Error::Unavailable(format!("no read connection: {other}")),
    })
}

/// Stored records `from..=last` (at most `max`), checked: gapless from `from`, each chained
/// to the one before.
async fn read_range(
    pool: &Pool,
    shared: Option<&keys::SharedKeys>,
    from: Seq,
    last: Seq,
    max: usize,
) -> Result<Vec<Record>> {
    // A connection lost under a read (a terminated backend, a restart) is replaced once.
    match read_range_once(pool, shared, from, last, max).await {
        Err(Error::Unavailable(_)) => read_range_once(pool, shared, from, last, max).await,
        other => other,
    }
}

async fn read_range_once(
    pool: &Pool,
    shared: Option<&keys::SharedKeys>,
    from: Seq,
    last: Seq,
    max: usize,
) -> Result<Vec<Record>> {
    let client = pooled(pool).await?;
    let statement = client.prepare_cached(schema::RANGE).await.map_err(database)?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&sql_seq(from), &sql_seq(last), &max]).await.map_err(database)?;
    let mut records: Vec<Record> = Vec::with_capacity(rows.len());
    for (expected, row) in (from.0..).zip(&rows) {
        let seq = seq_of(row.get(0));
        if seq.0 != expected {
            return Err(Error::corrupt(Seq(expected), format!("missing: the next record stored is seq {seq}")));
        }
        let record = codec::decode(seq, row.get(1))?;
        if let Some(previous) = records.last() {
            if record.prev_hash != previous.hash {
                return Err(Error::corrupt(seq, "not chained to the record before it"));
            }
        }
        records.push(record);
    }
    drop(client);
    if let Some(shared) = shared {
        shared.hold_for(pool, &records).await?;
    }
    Ok(records)
}

/// The head kept in `path` (`<seq> <hash hex>`), if it is there and readable.
fn read_head_file(path: &std::path::Path) -> Option<Head> {
    let text = std::fs::read_to_string(path).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    Some(Head { seq: Seq(seq.parse().ok()?), hash: crate::model::Hash32::from_hex(hash)? })
}

/// Keeps `head` in `path`: a temporary file renamed over it, so that a crash leaves the old
/// head or the new one.
fn write_head_file(path: &std::path::Path, head: Head) -> std::io::Result<()> {
    let temp = path.with_extension("new");
    std::fs::write(&temp, format!("{} {}\n", head.seq, head.hash.to_hex()))?;
    std::fs::rename(&temp, path)
}

/// How long the tailer waits for the head it reads before taking the database for
/// unreachable (a read takes milliseconds even under load).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The tailer: publishes the committed head at each poll and each wake-up naming a seq past
/// what its node has published, until the store closes. A head read behind one published
/// before the read was sent (so committed before it) means the database lost acknowledged
/// records: appends are refused from then on (`rewound`).
async fn tail(
    config: PgConfig,
    heads: Arc<watch::Sender<Head>>,
    reachable: Arc<std::sync::atomic::AtomicBool>,
    rewound: Arc<std::sync::OnceLock<String>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let (wake, mut woken) = mpsc::channel(1);
    let notices = Notices::new(wake);
    let mut client = None;
    let mut kept = None;
    // Whether to read the head: at every poll, and at a wake-up naming a seq not published
    // here yet (this node's own commits are published by its writer: not read again).
    let mut read = true;
    loop {
        if client.as_ref().is_none_or(|c: &tokio_postgres::Client| c.is_closed()) {
            read = true;
            client = match connect_with(&config, "oacis-tailer", Some(notices.clone())).await {
                Ok(c) => match c.batch_execute(&format!("LISTEN {}", schema::CHANNEL)).await {
                    Ok(()) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %database(e), "cannot LISTEN for the log's head; polling");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach PostgreSQL to follow the log");
                    None
                }
            };
        }
        // The head published before the read is sent: committed, so the read sees it or a later
        // one. (One published while the read is on its way, by this node's writer, may be past
        // what the read sees: that is not the log going back.)
        let known = *heads.borrow();
        // A database that hangs (rather than refusing) is unreachable too: the read is given
        // up after HEAD_READ_TIMEOUT and the connection made again.
        let answered = match &client {
            Some(c) if read => match tokio::time::timeout(HEAD_READ_TIMEOUT, c.query_one(schema::HEAD, &[])).await {
                Ok(answered) => Some(answered.map_err(database)),
                Err(_) => Some(Err(Error::Unavailable(format!(
                    "the log's head was not read within {} s",
                    HEAD_READ_TIMEOUT.as_secs()
                )))),
            },
            _ => None,
        };
        if read {
            reachable.store(matches!(answered, Some(Ok(_))), std::sync::atomic::Ordering::Release);
        }
        if let Some(answered) = answered {
            match answered {
                Ok(row) => {
                    if let Some(head) = head_of(row.get(0), row.get(1)) {
                        if head.seq < known.seq {
                            let error = Error::LogRewound { known, found: head };
                            tracing::error!(error = %error, "the database's log went back; refusing to append");
                            let _ = rewound.set(error.to_string());
                        }
                        advance(&heads, head);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's head");
                    client = None;
                }
            }
        }
        let published = *heads.borrow();
        if let Some(path) = config.head_file.as_deref().filter(|_| kept != Some(published)) {
            match write_head_file(path, published) {
                Ok(()) => kept = Some(published),
                Err(e) => tracing::warn!(error = %e, file = %path.display(), "cannot keep the committed head"),
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = woken.recv() => read = notices.beyond(heads.borrow().seq),
            () = tokio::time::sleep(config.poll_interval) => read = true,
        }
    }
}

impl EventStore for PgStore {
    type Subscription = PgSubscription;

    fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.inner.keys.as_ref()
    }

    async fn append_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<Vec<Appended>, AppendError> {
        self.submit_many(appends, meta).await?.await
    }

    async fn submit_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<PendingAppend, AppendError> {
        let appends = crate::seal::seal_appends(self.inner.keys.as_ref(), &self.inner.refilling, appends).await?;
        check_append(&appends, &meta)?;
        if let Some(shared) = &self.inner.shared {
            shared.share_used(&self.inner.pool, &appends).await?;
        }
        let (reply, answer) = oneshot::channel();
        let in_flight = InFlight::new(&self.inner.in_flight, meta.command_id);
        // The queue is FIFO and the writer takes appends in queue order.
        let request = AppendRequest { appends, meta, reply, _in_flight: in_flight };
        self.inner.queue.send(request).await.map_err(|_| Error::Closed)?;
        Ok(PendingAppend(Box::pin(async move { answer.await.map_err(|_| Error::Closed)? })))
    }

    async fn command_outcome(&self, command_id: CommandId) -> Result<Option<CommandOutcome>> {
        // An append of this server under the same id, not yet answered: its outcome first.
        let waiting = lock_map(&self.inner.in_flight).get(&command_id).cloned();
        if let Some(mut done) = waiting {
            let _ = done.changed().await;
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(schema::COMMANDS).await.map_err(database)?;
        let rows = client.query(&statement, &[&vec![command_id.0]]).await.map_err(database)?;
        drop(client);
        let Some(row) = rows.first() else { return Ok(None) };
        let span = Span { first: seq_of(row.get(1)), last: seq_of(row.get(2)) };
        let count = usize::try_from(span.last.0 - span.first.0 + 1).unwrap_or(usize::MAX);
        let records = read_range(&self.inner.pool, self.inner.shared.as_deref(), span.first, span.last, count).await?;
        if records.len() != count {
            return Err(Error::corrupt(span.first, format!("records of command {command_id} missing")));
        }
        Ok(Some(CommandOutcome::of_records(command_id, &records)))
    }

    async fn read_all(&self, from: Seq, max: usize) -> Result<Vec<Record>> {
        let from = from.max(Seq::FIRST);
        read_range(
            &self.inner.pool,
            self.inner.shared.as_deref(),
            from,
            Seq(u64::try_from(i64::MAX).unwrap_or(u64::MAX)),
            max,
        )
        .await
    }

    async fn read_stream(&self, stream: &StreamId, from: Version, max: usize) -> Result<Vec<Record>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(schema::STREAM).await.map_err(database)?;
        let from_version = i64::try_from(from.0.max(1)).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = client.query(&statement, &[&stream.as_str(), &from_version, &max]).await.map_err(database)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let record = codec::decode(seq_of(row.get(0)), row.get(1))?;
            if record.stream != *stream || records.last().is_some_and(|r: &Record| r.version.next() != record.version) {
                return Err(Error::corrupt(record.seq, format!("stream {stream} is not contiguous")));
            }
            records.push(record);
        }
        drop(client);
        if let Some(shared) = &self.inner.shared {
            shared.hold_for(&self.inner.pool, &records).await?;
        }
        Ok(records)
    }

    fn head(&self) -> Head {
        *self.inner.heads.borrow()
    }

    fn subscribe(&self, from: Seq) -> PgSubscription {
        PgSubscription::new(self.inner.pool.clone(), self.inner.shared.clone(), self.inner.heads.subscribe(), from)
    }
}
