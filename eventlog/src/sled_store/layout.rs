//! How the log is laid out in sled: one tree, four key spaces, one atomic batch per group.
//!
//! Everything lives in sled's default tree so that a whole group of appends is one
//! `apply_batch`, which sled applies atomically (sled batches are per tree).
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `e` seq (u64 BE)                      | stored record: `body || hash` (`FORMAT.md`) |
//! | `s` len(u8) stream last-version (u64 BE) | first seq, first version (2 x u64 BE) |
//! | `c` command id (16 bytes)             | first seq, last seq, version (3 x u64 BE) |
//! | `mformat`                             | [`FORMAT_TAG`]                          |
//!
//! The `s` and `c` entries are indexes derived from the records, one of each per append: an
//! append's records have consecutive seqs and consecutive versions, so the stream entry keyed
//! by the append's last version locates all of them. `verify_indexes` checks both indexes
//! against the records, and reads through them check that each record found is the one asked
//! for.

use crate::model::{CommandId, Seq, StreamId, Version};
use crate::store::Appended;

/// Store format written into every data folder and checked on open.
pub const FORMAT_TAG: &str = "oacis-eventlog/1";

/// sled segment size used by every store (sled refuses to open a store with another size).
/// Its quarter is sled's blob threshold, which must stay far above the largest node
/// (see `Limits::MAX_PAYLOAD_BYTES`).
pub const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

pub(crate) const FORMAT_KEY: &[u8] = b"mformat";
const EVENT: u8 = b'e';
const STREAM: u8 = b's';
const COMMAND: u8 = b'c';

/// Key of the record at `seq`.
#[must_use]
pub fn event_key(seq: Seq) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = EVENT;
    key[1..].copy_from_slice(&seq.0.to_be_bytes());
    key
}

/// The seq in an event key, if `key` is one.
#[must_use]
pub fn seq_of_event_key(key: &[u8]) -> Option<Seq> {
    match key {
        [EVENT, rest @ ..] => Some(Seq(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

/// First key after every event key.
pub(crate) const EVENT_END: [u8; 1] = [EVENT + 1];

/// Prefix shared by every index key of `stream`. The length byte keeps `a` from being a
/// prefix of `ab`.
#[must_use]
pub fn stream_prefix(stream: &StreamId) -> Vec<u8> {
    let name = stream.as_str().as_bytes();
    let mut key = Vec::with_capacity(name.len() + 10);
    key.push(STREAM);
    // Stream names are at most 128 bytes (`Limits::MAX_STREAM_BYTES`).
    key.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(name);
    key
}

/// Index key of the append of `stream` whose last record has `version`.
#[must_use]
pub fn stream_key(stream: &StreamId, version: Version) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&version.0.to_be_bytes());
    key
}

/// Prefix of every stream index key.
pub(crate) const STREAM_SPACE: [u8; 1] = [STREAM];
/// Prefix of every command key.
pub(crate) const COMMAND_SPACE: [u8; 1] = [COMMAND];

/// Key of a command's outcome.
#[must_use]
pub fn command_key(id: CommandId) -> [u8; 17] {
    let mut key = [0; 17];
    key[0] = COMMAND;
    key[1..].copy_from_slice(id.0.as_bytes());
    key
}

pub(crate) fn encode_outcome(outcome: &Appended) -> [u8; 24] {
    let mut value = [0; 24];
    value[..8].copy_from_slice(&outcome.first_seq.0.to_be_bytes());
    value[8..16].copy_from_slice(&outcome.last_seq.0.to_be_bytes());
    value[16..].copy_from_slice(&outcome.version.0.to_be_bytes());
    value
}

pub(crate) fn decode_outcome(value: &[u8]) -> Option<Appended> {
    let value: &[u8; 24] = value.try_into().ok()?;
    let word = |i: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&value[i..i + 8]);
        u64::from_be_bytes(bytes)
    };
    Some(Appended { first_seq: Seq(word(0)), last_seq: Seq(word(8)), version: Version(word(16)), duplicate: true })
}

/// Value of a stream index entry: the append's first seq and first version.
#[must_use]
pub fn encode_stream_entry(first_seq: Seq, first_version: Version) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&first_seq.0.to_be_bytes());
    value[8..].copy_from_slice(&first_version.0.to_be_bytes());
    value
}

pub(crate) fn decode_stream_entry(value: &[u8]) -> Option<(Seq, Version)> {
    if value.len() != 16 {
        return None;
    }
    Some((Seq(decode_u64(&value[..8])?), Version(decode_u64(&value[8..])?)))
}

pub(crate) fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// The version at the end of a stream index key.
pub(crate) fn version_of_stream_key(key: &[u8]) -> Option<Version> {
    let tail = key.len().checked_sub(8)?;
    decode_u64(&key[tail..]).map(Version)
}
