//! Size limits on everything the log accepts or reads back.
//!
//! The same limits bound decoding: a stored record whose lengths exceed them is corrupt, so a
//! damaged length prefix can never make the reader allocate gigabytes.
//!
//! `MAX_PAYLOAD_BYTES` is also what keeps every sled item far below sled's blob threshold
//! (a quarter of the segment size, see `sled_store`): sled 0.34 writes blobs to separate files
//! that its flush never syncs, so the log must never produce one.

/// Upper bounds, in bytes or counts, enforced on append and on decode.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    /// Longest stream name, in bytes (stream names are ASCII).
    pub const MAX_STREAM_BYTES: usize = 128;
    /// Longest event kind, in bytes (kinds are ASCII).
    pub const MAX_KIND_BYTES: usize = 64;
    /// Longest actor, in bytes of UTF-8.
    pub const MAX_ACTOR_BYTES: usize = 256;
    /// Longest client address, in bytes of UTF-8.
    pub const MAX_CLIENT_ADDR_BYTES: usize = 128;
    /// Largest payload of one event, in bytes.
    pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
    /// Most events in one append (one command's events).
    pub const MAX_EVENTS_PER_APPEND: usize = 1_000;
    /// Largest sum of payload bytes in one append.
    pub const MAX_APPEND_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
    /// Largest encoded record: payload plus every other field at its maximum, with headroom.
    pub const MAX_RECORD_BYTES: usize = Self::MAX_PAYLOAD_BYTES + 2 * 1024;
    /// Appends waiting for the writer; further callers wait for room (bounded channel).
    pub const APPEND_QUEUE: usize = 4_096;
    /// Most appends the writer groups into one flush.
    pub const MAX_GROUP_APPENDS: usize = 1_024;
    /// Most records one read call returns.
    pub const MAX_READ_BATCH: usize = 10_000;
}
