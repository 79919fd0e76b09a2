//! Errors of the event log.
//!
//! Two enums, because callers handle them differently: [`AppendError`] holds the outcomes an
//! append can expect (a version conflict, input that breaks a rule) that a caller matches on
//! and reports to its client; [`Error`] holds what is wrong with the store itself (I/O,
//! corruption, an incompatible format, a stopped writer), which a caller logs once and
//! surfaces as an internal failure.

use std::path::PathBuf;

use crate::model::{CommandId, ExpectedVersion, Seq, StreamId, Version};
use crate::store::Head;

/// Result with the store-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an append was refused. Every variant except [`AppendError::Store`] means nothing was
/// written and retrying the same request gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream's version is not what the caller expected: reload and decide again
    /// (API: CONFLICT).
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version now.
        actual: Version,
    },
    /// Stream names are 1-128 ASCII letters, digits or `-_.:/` (API: VALIDATION).
    #[error("invalid stream name {name:?}: use 1-128 ASCII letters, digits or -_.:/")]
    InvalidStream {
        /// The refused name.
        name: String,
    },
    /// Event kinds are 1-64 ASCII letters, digits or `-_.` (API: VALIDATION).
    #[error("invalid event kind {name:?}: use 1-64 ASCII letters, digits or -_.")]
    InvalidKind {
        /// The refused kind.
        name: String,
    },
    /// An append must carry at least one event (API: VALIDATION).
    #[error("an append needs at least one event")]
    Empty,
    /// Too many events in one append (API: VALIDATION).
    #[error("{count} events in one append; at most {max}")]
    TooManyEvents {
        /// Events offered.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One payload is too large (API: VALIDATION).
    #[error("payload of event {index} is {size} bytes; at most {max}")]
    PayloadTooLarge {
        /// Index of the event in the append.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payloads of one append are too large together (API: VALIDATION).
    #[error("payloads of one append total {size} bytes; at most {max}")]
    AppendTooLarge {
        /// Their total size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A payload is not UTF-8, so it is not JSON text (RFC 8259 §8.1) and could not be
    /// exported (API: VALIDATION).
    #[error("payload of event {index} is not UTF-8: invalid byte at offset {offset}")]
    PayloadNotUtf8 {
        /// Index of the event in the append (counting across streams, in order).
        index: usize,
        /// Offset of the first byte that is not part of a valid UTF-8 sequence.
        offset: usize,
    },
    /// One call names the same stream twice; put all of a stream's events in one
    /// [`crate::StreamAppend`] (API: VALIDATION).
    #[error("stream {stream} appears more than once in one append")]
    RepeatedStream {
        /// The stream named twice.
        stream: StreamId,
    },
    /// The command id was used before for another append: other streams or other events. Only
    /// a true retry (same streams, same events) is answered with the first result; this one
    /// wrote nothing (API: VALIDATION; the client reused an idempotency key).
    #[error("command id {command_id} was already used for a different append (first written at seq {first_seq})")]
    CommandReused {
        /// The reused command id.
        command_id: CommandId,
        /// Where the first append under it starts.
        first_seq: Seq,
    },
    /// A payload is not one well-formed JSON value (API: VALIDATION).
    #[error("payload of event {index} is not JSON: {reason}")]
    PayloadNotJson {
        /// Index of the event in the append.
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A metadata text field is too long (API: VALIDATION).
    #[error("{field} is {size} bytes; at most {max}")]
    MetadataTooLong {
        /// `actor` or `client_addr`.
        field: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Schema numbers start at 1 (API: VALIDATION).
    #[error("schema of event {index} is 0; schemas start at 1")]
    InvalidSchema {
        /// Index of the event in the append (counting across streams, in order).
        index: usize,
    },
    /// A payload holds personal data but the append does not name the version its records
    /// get (`ExpectedVersion::Any`): sealed data is bound to its record's version, so it must
    /// be known (API: internal error; the domain always names it).
    #[error("stream {stream}: an append with personal data must expect an exact version (or no stream)")]
    PersonalDataNeedsVersion {
        /// The stream.
        stream: StreamId,
    },
    /// The key store refused: the subject's personal data was erased (API: VALIDATION), or
    /// it could not write the key (API: internal error). Nothing was written to the log.
    #[error("key store: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The store failed; the append may or may not be durable. Retrying with the same command
    /// id is safe (API: internal error, logged once).
    #[error(transparent)]
    Store(#[from] Error),
}

/// What is wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// sled reported an error.
    #[error("storage engine error: {0}")]
    Sled(#[from] sled::Error),
    /// sled could not open the data folder. The message says what to do next.
    #[error("cannot open the event store in {path}: {reason}. {advice}")]
    Open {
        /// The data folder.
        path: PathBuf,
        /// What sled said.
        reason: String,
        /// How to recover.
        advice: &'static str,
    },
    /// The storage engine could not read the store's files (not a record that decodes wrongly:
    /// that is [`Error::Corrupt`]). Names what is known: the file, the byte offset when known,
    /// and the last seq read intact before the failure.
    #[error("cannot read {file}{}: {reason} (last good seq {last_good})", offset.map(|o| format!(" at byte {o}")).unwrap_or_default())]
    Unreadable {
        /// The file that could not be read.
        file: PathBuf,
        /// Byte offset in `file`, when known.
        offset: Option<u64>,
        /// The last seq read and checked before the failure (`0` if none).
        last_good: Seq,
        /// What went wrong.
        reason: String,
    },
    /// The storage engine refused the folder's files, or panicked while opening them (the
    /// panic is contained): they are damaged, and nothing was appended. Keep the folder
    /// unchanged and restore the latest backup into a new folder.
    #[error("the event store in {path} is damaged: the storage engine says \"{reason}\"; {}. \
             Keep the folder unchanged for inspection and restore the latest backup into a new folder",
            recorded.map_or_else(|| "no head record".to_owned(), |h| format!("the head record says seq {} hash {}", h.seq, h.hash)))]
    Damaged {
        /// The data folder.
        path: PathBuf,
        /// The engine's error or panic message.
        reason: String,
        /// The acknowledged head recorded outside the engine's files, if readable.
        recorded: Option<Head>,
    },
    /// The log ends before the acknowledged head recorded outside the engine's files: records
    /// `found.seq + 1 ..= recorded.seq` were acknowledged and are gone (the engine cut the log
    /// short while recovering damaged files). The store refuses to open, so nothing can be
    /// appended over the lost seqs until an operator decides (see `SledStore::open`).
    #[error("records {}..={} are missing: the log ends at seq {} but seq {} with hash {} was acknowledged \
             (head record {}). Keep the folder unchanged and restore the latest backup into a new folder",
            found.seq.next(), recorded.seq, found.seq, recorded.seq, recorded.hash, file.display())]
    HeadLost {
        /// The head record file.
        file: PathBuf,
        /// The acknowledged head it holds.
        recorded: Head,
        /// The last record the log holds now.
        found: Head,
    },
    /// The record at the recorded head's seq has another hash: history up to that seq was
    /// rewritten. Handled like [`Error::HeadLost`].
    #[error("records {changed_from}..={} were changed: seq {} has hash {found} but {} was acknowledged (head record {}). \
             Keep the folder unchanged and restore the latest backup into a new folder",
            recorded.seq, recorded.seq, recorded.hash, file.display())]
    HeadChanged {
        /// The head record file.
        file: PathBuf,
        /// The acknowledged head it holds.
        recorded: Head,
        /// The hash the log holds at `recorded.seq` now.
        found: crate::model::Hash32,
        /// One after the largest kept checkpoint whose Merkle root still matches (1 if none).
        changed_from: Seq,
    },
    /// The Merkle root of the log at a checkpoint's tree size differs from the root the
    /// checkpoint signed: at least one record in `changed_from..=tree_size` was changed (the
    /// checkpoints before it still match). Handled like [`Error::HeadLost`].
    #[error("records {changed_from}..={tree_size} were changed: the log's Merkle root at tree size {tree_size} is {found} \
             but the checkpoint in {} signed {recorded}. Keep the folder unchanged and restore the latest backup into a new folder",
            file.display())]
    RootChanged {
        /// The checkpoint file.
        file: PathBuf,
        /// The checkpoint's tree size.
        tree_size: Seq,
        /// The root it signed.
        recorded: crate::model::Hash32,
        /// The root the log has now at that size.
        found: crate::model::Hash32,
        /// One after the largest earlier checkpoint whose root still matches (1 if none).
        changed_from: Seq,
    },
    /// The data folder's checkpoint signing key is missing, unreadable, or not the key that
    /// signed its latest checkpoint. The log is not at fault, and a backup does not hold the
    /// key.
    #[error("the checkpoint signing key {} cannot be used: {problem}. It is this data folder's own key and no backup \
             holds it: put the original back from where you keep it; or, to go on with a new key, move the folder's \
             `checkpoint` and `checkpoints` files aside (auditors check the old ones with the old public key)", file.display())]
    CheckpointKey {
        /// The key file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The head record file itself is unreadable or damaged.
    #[error("the head record {} is damaged: {problem}. Keep the folder unchanged and restore the latest backup", file.display())]
    HeadRecord {
        /// The head record file.
        file: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Stored bytes are damaged or inconsistent at `seq`.
    #[error("corrupt record at seq {seq}: {problem}")]
    Corrupt {
        /// The first position found bad.
        seq: Seq,
        /// What is wrong, in words.
        problem: String,
    },
    /// The data folder holds a store of another format version.
    #[error("incompatible store format {found:?}; this build reads {expected:?}")]
    IncompatibleFormat {
        /// The stored format tag (empty if missing).
        found: String,
        /// The tag this build writes.
        expected: &'static str,
    },
    /// An earlier write or flush failed; the writer stopped so that nothing unacknowledged
    /// can be built upon. Reopen the store (restart the process).
    #[error("the event store stopped after a failed write or flush: {0}; restart to recover")]
    WriterFailed(String),
    /// PostgreSQL refused or could not be reached (the PostgreSQL backend). An append that
    /// reports it may or may not be committed: retry it with the same command id.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// The connection to PostgreSQL was lost or the server is going away (SQLSTATE classes
    /// 08 and 57, or no answer): a read is tried again on a new connection; an append that
    /// reports it may or may not be committed (retry it with the same command id).
    #[error("PostgreSQL unavailable: {0}")]
    Unavailable(String),
    /// The database's log ends before, or differs at, a head this server saw committed:
    /// acknowledged records were lost (a failover to a replica that lagged, a restore to an
    /// earlier point). Appends stop; stop every server on this database and restore the
    /// database to a point that holds the head named here.
    #[error("the database's log is at seq {} (hash {}) but seq {} with hash {} was committed before: \
             acknowledged records are missing (a failover to a lagging replica, or a restore?). Appends are refused; \
             restore the database to a point that holds that head", found.seq, found.hash, known.seq, known.hash)]
    LogRewound {
        /// The head this server saw committed (or recorded in its data folder).
        known: Head,
        /// The database's head now.
        found: Head,
    },
    /// The store is closed.
    #[error("the event store is closed")]
    Closed,
    /// A Merkle root or proof was asked for outside the log.
    #[error(transparent)]
    Proof(#[from] crate::merkle::ProofError),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(seq: Seq, problem: impl Into<String>) -> Error {
        Error::Corrupt { seq, problem: problem.into() }
    }
}
