//! The PostgreSQL writer: group commit under the head row's lock.
//!
//! One task per node owns a connection of its own. It takes the appends waiting in its queue
//! (up to `Limits::MAX_GROUP_APPENDS`, after letting the callers it has just answered queue
//! their next ones, see [`LINGER_YIELDS`]) and writes them in one transaction, in one of two
//! turns ([`Turn`]):
//! - **Lock**: lock the head row and read the stream and version of the records committed
//!   since the versions it knows, and the versions of the streams it does not know (first
//!   round trip, pipelined, see [`Versions`]); decide every append against them ([`Staged`]);
//!   move the head, insert the command ids and records with one `unnest` statement each, send
//!   the wake-up and commit (second round trip, pipelined).
//! - **Claim**, for a node writing alone: decide on the head this writer last committed, and
//!   send everything in one round trip, the transaction beginning with a move of the head row
//!   from that head that fails if another node wrote since (then the group is decided again
//!   in a lock turn).
//!
//! Command ids are checked by their key at the insert; they are read only for a refused
//! append or after the key refused one. Only after the commit does any caller hear its answer.
//!
//! Invariants:
//! - Order comes from the head row's lock, never from a sequence: a transaction holding it is
//!   the only one that can insert, and it commits before the next one can read the head, so
//!   seq N+1 is never visible without seq N, on any node.
//! - The versions a writer knows are used only under the lock, after the records committed
//!   since their head (by any node) have been applied to them, or in a claim that commits
//!   only if the head is still the one they are exact at: a committed decision never rests on
//!   a version older than the head it was written on.
//! - A refusal is answered only from a turn whose head was current: a claim that refuses any
//!   append is decided again under the lock.
//! - A refused append (conflict, reused command id) stages nothing and its neighbours go on.
//! - A commit whose outcome is unknown (the connection failed during the round trip that
//!   writes) is resolved after reconnecting by the record the group would leave at the head:
//!   stored at its seq with its hash, the group committed and is answered; not, nothing of it
//!   committed and it is decided again from the head as it then is. (Not by a command id: a
//!   group's first may be a retry of one committed before.) Nobody hears "ok" for an append
//!   that is not committed.
//! - `lock_timeout`, `idle_in_transaction_session_timeout` and TCP keepalives make a node that
//!   freezes while holding the head release it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use super::{database, schema, PgConfig};
use crate::error::{AppendError, Error, Result};
use crate::limits::Limits;
use crate::model::{AppendMeta, Hash32, Seq, StreamId, Timestamp, Version};
use crate::staging::{Span, Staged};
use crate::store::{Appended, Head, StreamAppend};

/// What a caller hears: one result per stream of its append.
pub(super) type Answer = Result<Vec<Appended>, AppendError>;

/// Attempts at one group before its callers hear a store error.
const ATTEMPTS: u32 = 4;

/// How many times the writer lets other tasks run before it takes a group, when the group
/// before had more than one append. The callers it has just answered then queue their next
/// appends in time to join this group; without it, the callers split into two halves whose
/// groups alternate (measured with 64 writers: 32 appends per group against 63 with it).
/// A lone caller is not delayed.
const LINGER_YIELDS: usize = 8;

/// One caller's append, waiting in the queue.
#[derive(Debug)]
pub(super) struct AppendRequest {
    pub appends: Vec<StreamAppend>,
    pub meta: AppendMeta,
    pub reply: oneshot::Sender<Answer>,
    /// Dropped once the request is answered (committed or refused).
    pub _in_flight: super::InFlight,
}

/// The writer's prepared statements, on its current connection.
struct Statements {
    catch_up: Statement,
    lock_head: Statement,
    commands: Statement,
    streams: Statement,
    range: Statement,
    insert_events: Statement,
    insert_commands: Statement,
    move_head: Statement,
    claim_head: Statement,
    notify: Statement,
}

/// How one attempt at a group ended without a committed answer.
enum Failed {
    /// Nothing of the group is committed: decided again on a fresh connection if `retry`
    /// (the connection failed before the commit), else refused (the database refused a
    /// statement, and deciding again would give the same answer).
    NotCommitted { error: Error, retry: bool },
    /// The connection failed during the round trip that writes: committed or not, to be
    /// resolved by the record the group would leave at the head (`head`: its seq and hash).
    Unknown { error: Error, answers: Vec<Answer>, head: Head },
    /// The database's log is behind a head this server saw committed.
    Rewound(Error),
    /// Nothing is committed, and the group is to be decided again in this turn: a claim
    /// found the head moved (or could not answer a refusal), or the command-id key refused
    /// an id the turn did not read.
    Decide(Turn),
}

/// How a group's transaction takes the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    /// Where this writer left it, in one round trip: the transaction begins by moving the
    /// head row from this writer's last head, and fails if it is no longer there (another
    /// node wrote since). For a node writing alone, every group after the first.
    Claim,
    /// Locked and read first, with the records committed since the known versions (two
    /// round trips); the group's command ids read too if `look_up_commands`.
    Lock { look_up_commands: bool },
}

impl Turn {
    const LOCK: Turn = Turn::Lock { look_up_commands: false };
}

impl Failed {
    fn before_commit(error: tokio_postgres::Error) -> Failed {
        let retry = super::transient(&error);
        // The head not had within `lock_timeout` (another node holds it, frozen or stalled):
        // nothing was written and the caller may try again, as when the database is away.
        let timed_out = error.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
        let error = match database(error) {
            Error::Database(text) if timed_out => Error::Unavailable(text),
            other => other,
        };
        Failed::NotCommitted { error, retry }
    }
}

pub(super) struct PgWriter {
    config: PgConfig,
    heads: Arc<watch::Sender<Head>>,
    connection: Option<(Client, Statements)>,
    /// Held before the commit when set (tests: a transaction stalled while holding the head).
    before_commit: Option<Arc<Semaphore>>,
    /// Set once the database's log was found behind a committed head, here or by the tailer:
    /// appends stop.
    rewound: Arc<OnceLock<String>>,
    /// Stream versions known to this writer (see [`Versions`]).
    versions: Versions,
    /// The recording time of the last head this writer read or committed (recording times
    /// never go back).
    recorded_at: Timestamp,
    /// Whether groups may claim the head (see [`PgWriter::claimable`]).
    claims: bool,
}

/// The versions of the streams this writer has appended to or read, exact as of the head
/// `at`: the head as it was under the lock of the last transaction that read them or
/// committed. Under the next lock, the records committed after `at` by any node (a range of
/// seqs, usually none on a node writing alone) bring them up to that head, so that only the
/// streams not known here are read from the `(stream_id, version)` index (measured, see
/// BENCHMARKS.md: those reads were a quarter of the writer's database backend time at a
/// million records). A claim turn reads the streams it does not know outside any
/// transaction, after `at` was committed: such a version is newer than `at` only if the head
/// moved, and then the claim fails and the next locked turn takes the larger of the two
/// (versions only grow).
#[derive(Default)]
struct Versions {
    at: Option<Head>,
    known: HashMap<StreamId, Version>,
}

impl Versions {
    /// Streams known at most; beyond, the map starts again empty.
    const CAPACITY: usize = 200_000;

    /// Of a group's `streams`, those not known here (all of them if none is known as of a
    /// head). A map at capacity is emptied first, before the group is sorted: whatever this
    /// answers as known stays known until the group is decided.
    fn unknown<'a>(&mut self, streams: &[&'a str]) -> Vec<&'a str> {
        if self.known.len() >= Self::CAPACITY {
            self.known.clear();
        }
        match self.at {
            Some(_) => streams.iter().copied().filter(|name| !self.known.contains_key(*name)).collect(),
            None => streams.to_vec(),
        }
    }

    fn forget(&mut self) {
        self.at = None;
        self.known.clear();
    }

    /// Brings the known versions from their head up to `head`, locked: by `caught_up`, the
    /// (stream, version) of every record committed since (whole commands, each committed at
    /// once), then by `read`, the (stream, last version or NULL) of streams read under the
    /// lock.
    fn bring_up(&mut self, head: Head, caught_up: &[tokio_postgres::Row], read: &[tokio_postgres::Row]) {
        for row in caught_up {
            let (stream, version): (&str, i64) = (row.get(0), row.get(1));
            if let Some(known) = self.known.get_mut(stream) {
                *known = (*known).max(Version(u64::try_from(version).unwrap_or(0)));
            }
        }
        self.learn(read);
        self.at = Some(head);
    }

    /// Takes in the (stream, last version or NULL) of streams read after the head `at`.
    fn learn(&mut self, read: &[tokio_postgres::Row]) {
        for row in read {
            let version = Version(row.get::<_, Option<i64>>(1).map_or(0, |v| u64::try_from(v).unwrap_or(0)));
            if let Ok(stream) = StreamId::new(row.get::<_, &str>(0)) {
                self.known.insert(stream, version);
            }
        }
    }

    /// Records what a group committed (`staged`'s versions), up to its new head.
    fn committed(&mut self, staged: &Staged) {
        self.known.extend(staged.versions.iter().map(|(stream, version)| (stream.clone(), *version)));
        self.at = Some(staged.head);
    }
}

/// Records caught up with under the lock at most; beyond, the known versions are forgotten.
const CATCH_UP_LIMIT: i64 = 10_000;

impl PgWriter {
    pub(super) fn new(config: PgConfig, heads: Arc<watch::Sender<Head>>, rewound: Arc<OnceLock<String>>) -> PgWriter {
        let before_commit = config.before_commit.clone();
        PgWriter {
            config,
            heads,
            connection: None,
            before_commit,
            rewound,
            versions: Versions::default(),
            recorded_at: Timestamp(0),
            claims: false,
        }
    }

    /// Runs until the queue closes and every request is answered.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::with_capacity(Limits::MAX_GROUP_APPENDS);
        // Whether the last group had company: several callers are appending.
        let mut busy = false;
        while let Some(first) = queue.recv().await {
            group.push(first);
            if busy {
                for _ in 0..LINGER_YIELDS {
                    tokio::task::yield_now().await;
                }
            }
            while group.len() < Limits::MAX_GROUP_APPENDS {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            #[allow(clippy::cast_precision_loss)]
            metrics::histogram!("oacis_eventlog_group_appends").record(group.len() as f64);
            metrics::counter!("oacis_eventlog_appends_total").increment(u64::try_from(group.len()).unwrap_or(0));
            busy = group.len() > 1;
            self.commit_group(&mut group).await;
        }
    }

    async fn connect(&mut self) -> Result<()> {
        if self.connection.as_ref().is_some_and(|(client, _)| !client.is_closed()) {
            return Ok(());
        }
        self.connection = None;
        let client = super::connect(&self.config, "oacis-writer").await?;
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{}ms'; SET idle_in_transaction_session_timeout = '{}ms'",
                self.config.lock_timeout.as_millis(),
                self.config.lock_timeout.as_millis() * 2
            ))
            .await
            .map_err(database)?;
        let prepare = |sql| client.prepare(sql);
        let (
            catch_up,
            lock_head,
            commands,
            streams,
            range,
            insert_events,
            insert_commands,
            move_head,
            claim_head,
            notify,
        ) = tokio::try_join!(
            prepare(schema::CATCH_UP),
            prepare(schema::LOCK_HEAD),
            prepare(schema::COMMANDS),
            prepare(schema::STREAMS),
            prepare(schema::RANGE),
            prepare(schema::INSERT_EVENTS),
            prepare(schema::INSERT_COMMANDS),
            prepare(schema::MOVE_HEAD),
            prepare(schema::CLAIM_HEAD),
            prepare(schema::NOTIFY),
        )
        .map_err(database)?;
        let statements = Statements {
            catch_up,
            lock_head,
            commands,
            streams,
            range,
            insert_events,
            insert_commands,
            move_head,
            claim_head,
            notify,
        };
        self.connection = Some((client, statements));
        Ok(())
    }

    /// Decides, writes and answers one group, retrying across lost connections.
    async fn commit_group(&mut self, group: &mut Vec<AppendRequest>) {
        if let Some(reason) = self.rewound.get() {
            for request in group.drain(..) {
                let _ = request.reply.send(Err(Error::WriterFailed(reason.clone()).into()));
            }
            return;
        }
        let mut last_error = String::new();
        // Whether the last failure was the connection's (the callers may retry).
        let mut unavailable = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            if let Err(e) = self.connect().await {
                unavailable = matches!(e, Error::Unavailable(_));
                last_error = cause(&e);
                continue;
            }
            // Each turn decides the group again with more read than the one before.
            let mut turn = if self.claimable() { Turn::Claim } else { Turn::LOCK };
            let outcome = loop {
                match self.attempt(group, turn).await {
                    Err(Failed::Decide(next)) if next > turn => turn = next,
                    outcome => break outcome,
                }
            };
            let (answers, head) = match outcome {
                Ok(done) => done,
                Err(Failed::Decide(_)) => {
                    // Refused by the command-id key although every id was read under the lock.
                    unavailable = false;
                    last_error = "a command id was refused as seen before, yet not found under the lock".into();
                    self.connection = None;
                    break;
                }
                Err(Failed::Rewound(error)) => {
                    unavailable = false;
                    tracing::error!(error = %error, "refusing to append");
                    let _ = self.rewound.set(error.to_string());
                    last_error = cause(&error);
                    break;
                }
                Err(Failed::NotCommitted { error, retry }) => {
                    unavailable = retry || matches!(error, Error::Unavailable(_));
                    last_error = cause(&error);
                    self.connection = None;
                    if retry {
                        continue;
                    }
                    break;
                }
                Err(Failed::Unknown { error, answers, head }) => {
                    unavailable = true;
                    last_error = cause(&error);
                    self.connection = None;
                    match self.committed(head).await {
                        Ok(true) => (answers, head),
                        Ok(false) => continue,
                        Err(e) => {
                            // Still unknown: the callers hear a store error and may retry with
                            // their command ids, which answers them either way.
                            last_error = format!("{last_error}; then, resolving the outcome: {}", cause(&e));
                            break;
                        }
                    }
                }
            };
            super::advance(&self.heads, head);
            for (request, answer) in group.drain(..).zip(answers) {
                // A caller that stopped waiting has gone; its append stands.
                let _ = request.reply.send(answer);
            }
            return;
        }
        tracing::error!(error = %last_error, "PostgreSQL append failed");
        for request in group.drain(..) {
            let error =
                if unavailable { Error::Unavailable(last_error.clone()) } else { Error::Database(last_error.clone()) };
            let _ = request.reply.send(Err(error.into()));
        }
    }

    /// Whether the group that would leave `head` is committed, on a fresh connection: the
    /// record at its seq has its hash. (The hash chain makes that record this group's last
    /// and no other's. A command id would not do: a group's ids are not read before it is
    /// written, so its first may be a retry of one committed long before.)
    async fn committed(&mut self, head: Head) -> Result<bool> {
        self.connect().await?;
        let (client, _) = self.connection.as_ref().ok_or(Error::Closed)?;
        let row = client.query_opt(schema::HASH_AT, &[&sql_seq(head.seq)]).await.map_err(database)?;
        Ok(row.is_some_and(|row| row.get::<_, &[u8]>(0) == head.hash.0.as_slice()))
    }

    /// Whether the next group may take the head where this writer left it ([`Turn::Claim`]):
    /// no claim failed since the last locked turn found no records committed since this
    /// writer's known versions (none to look for on its first turn), and this node has not
    /// seen the head move past the one its known versions are exact at. (A wrong guess costs
    /// one round trip: the claim finds the head moved.)
    fn claimable(&self) -> bool {
        self.claims && self.versions.at.is_some_and(|at| at == *self.heads.borrow())
    }

    /// One transaction for the group: answers and the new head once committed.
    ///
    /// [`Turn::Claim`] writes in one round trip, with no read of the head; [`Turn::Lock`]
    /// locks and reads it first. Either way the group's command ids are taken as new unless
    /// `look_up_commands`: the command-id key refuses any seen before, as it would anyway at
    /// the insert ([`Failed::Decide`]: a retry, rare, decided again with them read), so
    /// reading them first on every group would pay each lookup twice.
    async fn attempt(&mut self, group: &[AppendRequest], turn: Turn) -> Result<(Vec<Answer>, Head), Failed> {
        let Some((client, st)) = self.connection.as_ref() else {
            return Err(Failed::NotCommitted { error: Error::Closed, retry: true });
        };
        let not_committed = Failed::before_commit;
        let rollback = async || {
            let _ = client.batch_execute("ROLLBACK").await;
        };
        // A statement refused: the transaction is ended unless the connection is gone.
        let refused = async |error: tokio_postgres::Error| {
            if !super::transient(&error) {
                rollback().await;
            }
            not_committed(error)
        };
        let mut stream_names: Vec<&str> =
            group.iter().flat_map(|r| r.appends.iter().map(|p| p.stream.as_str())).collect();
        stream_names.sort_unstable();
        stream_names.dedup();
        // Only the streams this writer does not know are read.
        let unknown = self.versions.unknown(&stream_names);
        let (head, commands) = match turn {
            Turn::Claim => {
                let Some(at) = self.versions.at else { return Err(Failed::Decide(Turn::LOCK)) };
                // Read outside any transaction: exact if the claim below finds the head still at
                // `at`, since they are read after it was committed.
                if !unknown.is_empty() {
                    let rows = client.query(&st.streams, &[&unknown]).await.map_err(not_committed)?;
                    self.versions.learn(&rows);
                }
                (at, HashMap::new())
            }
            Turn::Lock { look_up_commands } => {
                let command_ids: Vec<Uuid> =
                    if look_up_commands { group.iter().map(|r| r.meta.command_id.0).collect() } else { Vec::new() };
                // The records committed since the known versions' head are read too (none, if
                // this node alone writes).
                let since = self.versions.at.map_or(i64::MAX, |at| sql_seq(at.seq));
                let (ids, names): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&command_ids], [&unknown]);
                let after: [&(dyn ToSql + Sync); 2] = [&since, &CATCH_UP_LIMIT];
                // (Reads with nothing to read are not sent.)
                let read_if = async |statement: &Statement, params: &[&(dyn ToSql + Sync)], any: bool| {
                    if any {
                        client.query(statement, params).await
                    } else {
                        Ok(Vec::new())
                    }
                };
                // Pipelined statements after a failed one answer "transaction aborted": the
                // first error in statement order is the cause.
                let (begun, head_row, command_rows, stream_rows, caught_up) = tokio::join!(
                    client.batch_execute("BEGIN"),
                    client.query_one(&st.lock_head, &[]),
                    read_if(&st.commands, &ids, !command_ids.is_empty()),
                    read_if(&st.streams, &names, !unknown.is_empty()),
                    client.query(&st.catch_up, &after),
                );
                let read = begun.and(head_row).and_then(|head| Ok((head, command_rows?, stream_rows?, caught_up?)));
                let (head_row, command_rows, stream_rows, caught_up) = match read {
                    Ok(read) => read,
                    Err(error) => return Err(refused(error).await),
                };
                let Some(head) = head_of(head_row.get(0), head_row.get(1)) else {
                    rollback().await;
                    let error = Error::Database("the head row's hash is not 32 bytes".into());
                    return Err(Failed::NotCommitted { error, retry: false });
                };
                // The log never goes back: a head behind (or other than) one this server saw
                // committed means acknowledged records were lost. Nothing more is appended on it.
                let known = *self.heads.borrow();
                if head.seq < known.seq || (head.seq == known.seq && head.hash != known.hash) {
                    rollback().await;
                    self.versions.forget();
                    return Err(Failed::Rewound(Error::LogRewound { known, found: head }));
                }
                self.recorded_at = Timestamp(head_row.get::<_, i64>(2));
                // Nothing committed since this writer's known versions (or none known yet): the
                // next groups claim the head.
                self.claims = caught_up.is_empty();
                // The known versions brought up to this head; too many records since theirs:
                // the group's streams are read again instead.
                if i64::try_from(caught_up.len()).is_ok_and(|n| n >= CATCH_UP_LIMIT) {
                    self.versions.forget();
                    let all = match client.query(&st.streams, &[&stream_names]).await {
                        Ok(rows) => rows,
                        Err(error) => return Err(refused(error).await),
                    };
                    self.versions.bring_up(head, &[], &all);
                } else {
                    self.versions.bring_up(head, &caught_up, &stream_rows);
                }
                (head, spans_of(&command_rows))
            }
        };
        let versions = &self.versions.known;
        // Records of command ids seen before, to answer retries from.
        let written = written_of(client, st, &commands).await.map_err(not_committed)?;
        let mut staged = Staged::new(head, Timestamp::now().max(self.recorded_at));
        let mut answers = Vec::with_capacity(group.len());
        for request in group {
            let command_id = request.meta.command_id;
            let answer =
                match staged.commands.get(&command_id).copied().or_else(|| commands.get(&command_id.0).copied()) {
                    Some(first) => {
                        staged.repeat(first, command_id, &request.appends, |seq| Ok(written.get(&seq.0).cloned()))
                    }
                    None => staged.stage(
                        |stream: &StreamId| versions.get(stream).copied().unwrap_or(Version::NONE),
                        request.appends.clone(),
                        request.meta.clone(),
                    ),
                };
            answers.push(answer);
        }
        let any_refused = answers.iter().any(Result::is_err);
        if turn == Turn::Claim && (any_refused || staged.accepted.is_empty()) {
            // A refusal is answered only under a head known to be current (and a refused
            // append may be a retry, to be answered as the first one).
            return Err(Failed::Decide(Turn::LOCK));
        }
        // A refused append whose command id was not read may be a retry of a committed one,
        // whose answer is the first one's (a refusal stages nothing, so answering it as a
        // retry changes nothing else in the group).
        let refused_ids: Vec<Uuid> = group
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_err())
            .map(|(request, _)| request.meta.command_id.0)
            .filter(|id| !commands.contains_key(id))
            .collect();
        if !refused_ids.is_empty() {
            let rows = client.query(&st.commands, &[&refused_ids]).await.map_err(not_committed)?;
            let seen = spans_of(&rows);
            let written = written_of(client, st, &seen).await.map_err(not_committed)?;
            for (request, answer) in group.iter().zip(answers.iter_mut()) {
                if let Some(first) = seen.get(&request.meta.command_id.0).copied() {
                    *answer = staged.repeat(first, request.meta.command_id, &request.appends, |seq| {
                        Ok(written.get(&seq.0).cloned())
                    });
                }
            }
        }
        if staged.accepted.is_empty() {
            // Nothing to write: every append was refused or a retry.
            rollback().await;
            return Ok((answers, head));
        }
        let rows = Rows::of(&staged);
        let new_head = staged.head;
        let notify = new_head.seq.0.to_string();
        let (new_seq, old_seq) = (sql_seq(new_head.seq), sql_seq(head.seq));
        let (new_hash, old_hash) = (&new_head.hash.0[..], &head.hash.0[..]);
        let events: [&(dyn ToSql + Sync); 7] =
            [&rows.seqs, &rows.streams, &rows.versions, &rows.commands, &rows.prev_hashes, &rows.hashes, &rows.records];
        let spans: [&(dyn ToSql + Sync); 3] = [&rows.command_ids, &rows.command_firsts, &rows.command_lasts];
        let moved: [&(dyn ToSql + Sync); 5] = [&new_seq, &new_hash, &staged.recorded_at.0, &old_seq, &old_hash];
        let wake: [&(dyn ToSql + Sync); 1] = [&notify];
        let claim = turn == Turn::Claim;
        // The head is moved first: a claim's transaction begins here and takes the row with
        // the move (a locked turn holds it already); then the command ids, so that one seen
        // before fails the transaction before its records.
        let (begin, head_move) = if claim { ("BEGIN", &st.claim_head) } else { ("", &st.move_head) };
        let writes = async {
            let (begun, moved, spanned, inserted, woken) = tokio::join!(
                client.batch_execute(begin),
                client.execute(head_move, &moved),
                client.execute(&st.insert_commands, &spans),
                client.execute(&st.insert_events, &events),
                client.query_one(&st.notify, &wake),
            );
            begun?;
            let moved = moved?;
            spanned?;
            inserted?;
            woken.map(|_| moved)
        };
        let committed = match &self.before_commit {
            None => {
                let (written, committed) = tokio::join!(writes, client.batch_execute("COMMIT"));
                written.and_then(|moved| committed.map(|()| moved))
            }
            Some(gate) => match writes.await {
                Ok(done) => {
                    // One permit per commit, used up.
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    client.batch_execute("COMMIT").await.map(|()| done)
                }
                Err(e) => Err(e),
            },
        };
        match committed {
            Ok(1) => {
                self.versions.committed(&staged);
                self.recorded_at = staged.recorded_at;
                Ok((answers, new_head))
            }
            Ok(_) => {
                // The head row was not where this transaction locked it: impossible under the
                // lock, yet committed. Nobody hears "ok"; retries by command id will see it.
                let error = Error::Database("the head row moved under its lock".into());
                Err(Failed::NotCommitted { error, retry: false })
            }
            Err(error) if !super::transient(&error) => {
                rollback().await;
                if claim && raised(&error, schema::HEAD_MOVED) {
                    // Another node wrote since this writer's last head.
                    self.claims = false;
                    return Err(Failed::Decide(Turn::LOCK));
                }
                if refused_by(&error, schema::COMMANDS_KEY) {
                    return Err(Failed::Decide(Turn::Lock { look_up_commands: true }));
                }
                Err(Failed::before_commit(error))
            }
            Err(error) => Err(Failed::Unknown { error: database(error), answers, head: new_head }),
        }
    }
}

/// The group's rows, as the `unnest` statements take them.
pub(super) struct Rows<'a> {
    pub(super) seqs: Vec<i64>,
    pub(super) streams: Vec<&'a str>,
    pub(super) versions: Vec<i64>,
    pub(super) commands: Vec<Uuid>,
    pub(super) prev_hashes: Vec<&'a [u8]>,
    pub(super) hashes: Vec<&'a [u8]>,
    pub(super) records: Vec<&'a [u8]>,
    pub(super) command_ids: Vec<Uuid>,
    pub(super) command_firsts: Vec<i64>,
    pub(super) command_lasts: Vec<i64>,
}

impl<'a> Rows<'a> {
    pub(super) fn of(staged: &'a Staged) -> Rows<'a> {
        let count = staged.records.len();
        let mut rows = Rows {
            seqs: Vec::with_capacity(count),
            streams: Vec::with_capacity(count),
            versions: Vec::with_capacity(count),
            commands: Vec::with_capacity(count),
            prev_hashes: Vec::with_capacity(count),
            hashes: Vec::with_capacity(count),
            records: Vec::with_capacity(count),
            command_ids: Vec::new(),
            command_firsts: Vec::new(),
            command_lasts: Vec::new(),
        };
        let mut at = 0;
        for (command, span, parts) in &staged.accepted {
            rows.command_ids.push(command.0);
            rows.command_firsts.push(sql_seq(span.first));
            rows.command_lasts.push(sql_seq(span.last));
            for (stream, first, last, version) in parts {
                for (offset, seq) in (first.0..=last.0).enumerate() {
                    let stored = staged.records[at].1.as_slice();
                    at += 1;
                    rows.seqs.push(sql_seq(Seq(seq)));
                    rows.streams.push(stream.as_str());
                    rows.versions.push(sql_version(Version(version.0 + offset as u64)));
                    rows.commands.push(command.0);
                    // `body || hash`: the previous hash follows the length-prefixed tag.
                    let tag = 4 + crate::codec::TAG.len();
                    rows.prev_hashes.push(&stored[tag..tag + 32]);
                    rows.hashes.push(&stored[stored.len() - 32..]);
                    rows.records.push(stored);
                }
            }
        }
        rows
    }
}

/// Command spans by command id, from rows of [`schema::COMMANDS`].
fn spans_of(rows: &[tokio_postgres::Row]) -> HashMap<Uuid, Span> {
    rows.iter().map(|row| (row.get(0), Span { first: seq_of(row.get(1)), last: seq_of(row.get(2)) })).collect()
}

/// The stored records of `spans`, by seq: what retries are answered from.
async fn written_of(
    client: &Client,
    st: &Statements,
    spans: &HashMap<Uuid, Span>,
) -> Result<HashMap<u64, Vec<u8>>, tokio_postgres::Error> {
    let mut written = HashMap::new();
    for span in spans.values() {
        let rows = client.query(&st.range, &[&sql_seq(span.first), &sql_seq(span.last), &i64::MAX]).await?;
        written.extend(rows.into_iter().map(|row| (seq_of(row.get(0)).0, row.get(1))));
    }
    Ok(written)
}

/// Whether `error` is a unique violation (SQLSTATE 23505) of the constraint `name`.
fn refused_by(error: &tokio_postgres::Error, name: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION && db.constraint() == Some(name)
    })
}

/// Whether `error` was raised by this backend's own SQL with the SQLSTATE `code`.
fn raised(error: &tokio_postgres::Error, code: &str) -> bool {
    error.as_db_error().is_some_and(|db| db.code().code() == code)
}

/// What went wrong, without the prefix of the error kind (the callers' error adds its own).
fn cause(error: &Error) -> String {
    match error {
        Error::Database(text) | Error::Unavailable(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A seq as PostgreSQL's bigint (seqs stay far below `i64::MAX`).
pub(super) fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

fn sql_version(version: Version) -> i64 {
    i64::try_from(version.0).unwrap_or(i64::MAX)
}

/// A bigint seq read back (the table's CHECK keeps it positive).
pub(super) fn seq_of(value: i64) -> Seq {
    Seq(u64::try_from(value).unwrap_or(0))
}

/// The head row's (seq, hash), if the hash is 32 bytes.
pub(super) fn head_of(seq: i64, hash: &[u8]) -> Option<Head> {
    let hash: [u8; 32] = hash.try_into().ok()?;
    Some(Head { seq: seq_of(seq), hash: Hash32(hash) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamId {
        StreamId::new(name).expect("a valid stream id")
    }

    #[test]
    fn known_versions_answer_the_unknown_streams_and_start_again_when_full() {
        let mut versions = Versions::default();
        assert_eq!(versions.unknown(&["a", "b"]), ["a", "b"], "nothing known before a head");
        versions.known.insert(stream("a"), Version(3));
        assert_eq!(versions.unknown(&["a", "b"]), ["a", "b"], "known only as of a head");
        versions.at = Some(Head::default());
        assert_eq!(versions.unknown(&["a", "b"]), ["b"]);
        // Full: emptied before the group is sorted, so nothing is answered as known and then
        // lost while the group is decided.
        for i in 0..Versions::CAPACITY {
            versions.known.insert(stream(&format!("s{i}")), Version(1));
        }
        assert_eq!(versions.unknown(&["a", "s1"]), ["a", "s1"]);
        assert!(versions.known.is_empty());
        versions.forget();
        assert_eq!(versions.at, None);
    }
}
