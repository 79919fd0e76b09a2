//! The OACIS event log: an append-only, BLAKE3 hash-chained sequence of records.
//!
//! This crate owns the record format ([`codec`], specified byte for byte in `FORMAT.md`), the
//! [`EventStore`] trait every backend implements, the embedded sled backend ([`SledStore`]),
//! the PostgreSQL backend for one or several nodes ([`PgStore`]), either of them chosen at run
//! time ([`AnyStore`]),
//! whole-log verification ([`verify`]), the JSON Lines export ([`export`]) and the
//! checkpoint of the acknowledged head kept beside the store ([`checkpoint`]).
//!
//! Invariants kept here:
//! - The log knows nothing of the domain: an event is a stream name, a kind, a schema number
//!   and payload bytes (JSON, stored exactly as given). Nothing in this crate interprets a
//!   payload, except [`seal`]: with a [`keys::KeyStore`] configured, members named `personal`
//!   are stored encrypted with their stream's data key (crypto-shredding).
//! - `seq` is gapless from 1; a stream's `version` is gapless from 1; every record's
//!   `prev_hash` is the previous record's `hash` (the genesis value is 32 zero bytes).
//! - A record's hash covers the exact bytes that are stored; nothing is ever re-serialized
//!   before hashing or verifying.
//! - An append is acknowledged only after its records are on disk (sled flush followed by
//!   fdatasync; on PostgreSQL, the transaction's commit), and either all records of an append
//!   land or none do.
//! - Bytes read back from disk are checked; corruption is an [`Error::Corrupt`] naming the
//!   `seq`, never a panic and never silently repaired.
//! - A store whose log holds less than, or other than, the acknowledged head in its
//!   [`checkpoint`] does not open ([`Error::HeadLost`], [`Error::HeadChanged`]); a panic of the
//!   storage engine on damaged files is contained ([`Error::Damaged`]).
//! - A command id is written once: a true retry gets the first result, any other use of it is
//!   refused ([`AppendError::CommandReused`]).

mod any_store;
pub mod backup;
pub mod checkpoint;
pub mod codec;
mod error;
pub mod export;
pub mod files;
pub mod keys;
mod limits;
pub mod merkle;
mod model;
mod pg_store;
pub mod seal;
mod sled_store;
mod staging;
mod store;
pub mod verify;

pub use any_store::{AnyStore, AnySubscription};
pub use error::{AppendError, Error, Result};
pub use limits::Limits;
pub use model::{
    AppendMeta, CommandId, EventKind, ExpectedVersion, Hash32, NewEvent, Record, RecordRef, Seq, StreamId, Timestamp,
    Version,
};
pub use pg_store::{PgConfig, PgStore, PgSubscription, SetupLock};
pub use sled_store::{
    closed as sled_closed, layout as sled_layout, snapshot as sled_snapshot, FaultPlan, FaultSite, FolderCopy,
    RecordIter, SledConfig, SledStore, SledSubscription, TAIL_CHECK_RECORDS,
};
pub use store::{Appended, CommandOutcome, EventStore, Head, PendingAppend, StreamAppend, Subscription};
