//! How the log is laid out in sled: one tree, records keyed by seq, one atomic batch per group.
//!
//! Everything lives in sled's default tree so that a whole group of appends is one
//! `apply_batch`, which sled applies atomically (sled batches are per tree).
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `e` seq (u64 BE)                      | stored record: `body || hash` (`FORMAT.md`) |
//! | `mformat`                             | [`FORMAT_TAG`]                          |
//!
//! Nothing else is stored: the stream and command indexes are rebuilt in memory from the
//! records when a store opens (`index.rs`). Format 1 also stored them, under the `s` and `c`
//! prefixes; opening a format-1 store removes those entries and rewrites the tag (the records
//! are the same in both formats).

use crate::model::Seq;

/// Store format written into every data folder and checked on open.
pub const FORMAT_TAG: &str = "oacis-eventlog/2";

/// The previous format, which opening migrates (see the module doc).
pub(crate) const FORMAT_TAG_V1: &str = "oacis-eventlog/1";

/// Key prefixes of format 1's stored indexes.
pub(crate) const V1_INDEX_SPACES: [&[u8]; 2] = [b"s", b"c"];

/// sled segment size used by every store (sled refuses to open a store with another size).
/// Its quarter is sled's blob threshold, which must stay far above the largest node
/// (see `Limits::MAX_PAYLOAD_BYTES`).
pub const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

pub(crate) const FORMAT_KEY: &[u8] = b"mformat";
const EVENT: u8 = b'e';

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
