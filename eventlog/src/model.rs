//! The log's vocabulary: positions, names, hashes, timestamps and records.
//!
//! Every name type validates on construction, so a `StreamId` or `EventKind` in hand is
//! always within [`Limits`] and made of the allowed characters. Nothing here knows what a
//! payload means.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppendError;
use crate::limits::Limits;

/// Global position of a record in the log: gapless, starting at 1. `Seq(0)` means "before
/// the first record" (the head of an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Seq(pub u64);

impl Seq {
    /// The head of an empty log.
    pub const ZERO: Seq = Seq(0);
    /// The first record's position.
    pub const FIRST: Seq = Seq(1);

    /// The position after this one.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Position of a record within its stream: gapless, starting at 1. `Version(0)` is the
/// version of a stream that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream with no records.
    pub const NONE: Version = Version(0);

    /// The version after this one.
    #[must_use]
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn name_is_valid(name: &str, max: usize, extra: &[u8]) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Name of a stream, such as `customer-01937c4e-...`: 1 to 128 ASCII letters, digits and
/// `-_.:/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, AppendError> {
        let name = name.into();
        if StreamId::is_valid(&name) {
            Ok(StreamId(name))
        } else {
            Err(AppendError::InvalidStream { name })
        }
    }

    /// Whether `name` is a valid stream name.
    #[must_use]
    pub fn is_valid(name: &str) -> bool {
        name_is_valid(name, Limits::MAX_STREAM_BYTES, b"-_.:/")
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by stream be searched with a `&str` (a `String` and its `str` hash alike).
impl StreamId {
    /// An empty name, only as a stand-in while a value is moved out (never stored).
    pub(crate) fn placeholder() -> Self {
        StreamId(String::new())
    }
}

impl std::borrow::Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Name of an event kind, such as `CustomerRegistered`: 1 to 64 ASCII letters, digits and
/// `-_.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventKind(String);

impl EventKind {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, AppendError> {
        let name = name.into();
        if EventKind::is_valid(&name) {
            Ok(EventKind(name))
        } else {
            Err(AppendError::InvalidKind { name })
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is a valid kind name.
    #[must_use]
    pub fn is_valid(name: &str) -> bool {
        name_is_valid(name, Limits::MAX_KIND_BYTES, b"-_.")
    }

    /// A kind that is overwritten before use (no allocation).
    pub(crate) fn placeholder() -> Self {
        EventKind(String::new())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The `prev_hash` of the first record.
    pub const GENESIS: Hash32 = Hash32([0; 32]);

    /// Lower-case hexadecimal, 64 characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }

    /// Parses exactly 64 lower-case hexadecimal characters.
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Hash32> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        blake3::Hash::from_hex(text).ok().map(|h| Hash32(*h.as_bytes()))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A UTC instant in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time from the system clock (the log's only clock).
    #[must_use]
    pub fn now() -> Timestamp {
        let now = time::OffsetDateTime::now_utc();
        let micros = now.unix_timestamp_nanos() / 1_000;
        Timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// The earliest instant a log may hold: 0000-01-01T00:00:00.000000Z.
    pub const MIN_LOGGED: Timestamp = Timestamp(-62_167_219_200_000_000);
    /// The latest instant a log may hold: 9999-12-31T23:59:59.999999Z.
    pub const MAX_LOGGED: Timestamp = Timestamp(253_402_300_799_999_999);

    /// Whether the instant lies in years 0000-9999, the range RFC 3339 (and so an export)
    /// can write.
    #[must_use]
    pub fn is_loggable(&self) -> bool {
        (Self::MIN_LOGGED..=Self::MAX_LOGGED).contains(self)
    }

    /// RFC 3339 in UTC with exactly six fractional digits, e.g. `2026-11-29T05:36:23.000123Z`.
    /// Returns `None` for instants outside years 0000-9999.
    #[must_use]
    pub fn to_rfc3339(&self) -> Option<String> {
        if !self.is_loggable() {
            return None;
        }
        let nanos = i128::from(self.0) * 1_000;
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
        at.format(&format).ok()
    }

    /// Parses the exact form [`Timestamp::to_rfc3339`] writes.
    #[must_use]
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
        let at = time::PrimitiveDateTime::parse(text, &format).ok()?.assume_utc();
        let micros = at.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros).ok().map(Timestamp)
    }
}

/// The caller-chosen id of a command; an append carrying an id seen before returns the first
/// append's result and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId(pub Uuid);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the caller believes about the stream's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must have no records yet.
    NoStream,
    /// The stream's last record must have exactly this version.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies this expectation.
    #[must_use]
    pub fn admits(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::NONE,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

/// One event to append: its kind, its payload's schema number and the payload (JSON text,
/// stored exactly as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened, e.g. `CustomerRegistered`.
    pub kind: EventKind,
    /// Version of the payload's shape, for upcasting; starts at 1.
    pub schema: u32,
    /// JSON bytes.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// An event from a kind name and any serializable payload.
    pub fn json<T: Serialize>(kind: &str, schema: u32, payload: &T) -> Result<Self, AppendError> {
        let payload =
            serde_json::to_vec(payload).map_err(|e| AppendError::PayloadNotJson { index: 0, reason: e.to_string() })?;
        Ok(NewEvent { kind: EventKind::new(kind)?, schema, payload })
    }
}

/// Who did what, on whose behalf: the metadata shared by every record of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMeta {
    /// Idempotency key of the command that produced the events.
    pub command_id: CommandId,
    /// The acting principal (a user id, or `system`).
    pub actor: String,
    /// Groups the records of one business operation across commands.
    pub correlation_id: Uuid,
    /// The command or event that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// Network address of the client, if the command came over the network.
    pub client_addr: Option<String>,
}

impl AppendMeta {
    /// Metadata for a command with no correlation to others: the correlation id is the
    /// command id.
    #[must_use]
    pub fn new(command_id: Uuid, actor: impl Into<String>) -> Self {
        AppendMeta {
            command_id: CommandId(command_id),
            actor: actor.into(),
            correlation_id: command_id,
            causation_id: None,
            client_addr: None,
        }
    }
}

/// A stored event, as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Global position, gapless from 1.
    pub seq: Seq,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Position within the stream, gapless from 1.
    pub version: Version,
    /// What happened.
    pub kind: EventKind,
    /// Version of the payload's shape.
    pub schema: u32,
    /// When the log recorded it (UTC); never decreases along `seq`.
    pub recorded_at: Timestamp,
    /// Who and why.
    pub meta: AppendMeta,
    /// JSON bytes exactly as appended.
    pub payload: Vec<u8>,
    /// The previous record's hash ([`Hash32::GENESIS`] for seq 1).
    pub prev_hash: Hash32,
    /// BLAKE3 of this record's encoded body (see `FORMAT.md`).
    pub hash: Hash32,
}

/// A stored record borrowed from the bytes it was decoded from: the same fields as [`Record`]
/// (names already checked, hash already verified), without copying them. Readers that only
/// look at each record once (a replay) use it to skip building an owned [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Global position, gapless from 1.
    pub seq: Seq,
    /// The stream the event belongs to (a valid [`StreamId`] name).
    pub stream: &'a str,
    /// Position within the stream, gapless from 1.
    pub version: Version,
    /// What happened (a valid [`EventKind`] name).
    pub kind: &'a str,
    /// Version of the payload's shape.
    pub schema: u32,
    /// When the log recorded it (UTC).
    pub recorded_at: Timestamp,
    /// Idempotency key of the command that wrote it.
    pub command_id: CommandId,
    /// The acting principal.
    pub actor: &'a str,
    /// Groups the records of one business operation.
    pub correlation_id: Uuid,
    /// The command or event that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// Network address of the client, if any.
    pub client_addr: Option<&'a str>,
    /// JSON bytes exactly as appended.
    pub payload: &'a [u8],
    /// The previous record's hash.
    pub prev_hash: Hash32,
    /// BLAKE3 of this record's encoded body.
    pub hash: Hash32,
}

impl Record {
    /// This record, borrowed.
    #[must_use]
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            stream: self.stream.as_str(),
            version: self.version,
            kind: self.kind.as_str(),
            schema: self.schema,
            recorded_at: self.recorded_at,
            command_id: self.meta.command_id,
            actor: &self.meta.actor,
            correlation_id: self.meta.correlation_id,
            causation_id: self.meta.causation_id,
            client_addr: self.meta.client_addr.as_deref(),
            payload: &self.payload,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

impl RecordRef<'_> {
    /// An owned copy, after checking the names (the fields are public, so a `RecordRef` may
    /// not come from a decoder).
    pub fn to_record(self) -> Result<Record, AppendError> {
        StreamId::new(self.stream)?;
        EventKind::new(self.kind)?;
        Ok(self.to_record_checked())
    }

    /// An owned copy of a record whose names a decoder has already checked.
    pub(crate) fn to_record_checked(self) -> Record {
        Record {
            seq: self.seq,
            stream: StreamId(self.stream.to_owned()),
            version: self.version,
            kind: EventKind(self.kind.to_owned()),
            schema: self.schema,
            recorded_at: self.recorded_at,
            meta: AppendMeta {
                command_id: self.command_id,
                actor: self.actor.to_owned(),
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                client_addr: self.client_addr.map(str::to_owned),
            },
            payload: self.payload.to_vec(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}
