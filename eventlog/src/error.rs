//! Errors of the event log.
//!
//! Two enums, because callers handle them differently: [`AppendError`] holds the outcomes an
//! append can expect (a version conflict, input that breaks a rule) that a caller matches on
//! and reports to its client; [`Error`] holds what is wrong with the store itself (I/O,
//! corruption, an incompatible format, a stopped writer), which a caller logs once and
//! surfaces as an internal failure.

use std::path::PathBuf;

use crate::model::{ExpectedVersion, Seq, StreamId, Version};

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
        /// Index of the event in the append.
        index: usize,
    },
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
    /// The store is closed.
    #[error("the event store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(seq: Seq, problem: impl Into<String>) -> Error {
        Error::Corrupt { seq, problem: problem.into() }
    }
}
