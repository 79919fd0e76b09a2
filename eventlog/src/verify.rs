//! Whole-log verification, shared by the store (`SledStore::verify`) and by exports
//! (`export::verify_file`).
//!
//! [`ChainCheck`] is fed records in order and checks what links them: seq contiguity from 1,
//! each stream's versions contiguous from 1, `prev_hash` equal to the previous record's hash,
//! and `recorded_at` never decreasing. It also applies [`check_content`], the rules on a
//! record's own fields that the byte encoding cannot express (payload UTF-8, `recorded_at` in
//! years 0000-9999); the export writer applies the same function, so `verify --data` accepts
//! exactly the logs that `export` can write. (Each record's own hash is checked where its
//! bytes are decoded, in `codec::decode` or the export reader.) The first failure names its seq.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{Record, Seq, StreamId, Timestamp, Version};
use crate::store::Head;

/// What a successful verification saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Distinct streams.
    pub streams: u64,
    /// The last record's seq and hash.
    pub head: Head,
}

/// Checks what a record must hold beyond its encoding: a UTF-8 payload (JSON text, RFC 8259
/// §8.1), a `recorded_at` in years 0000-9999, the sizes of `FORMAT.md`'s table (payload,
/// actor, client address; [`Limits`]) and a schema of 1 or more. Errors are
/// [`Error::Corrupt`] at its seq.
pub fn check_content(record: &Record) -> Result<()> {
    let (seq, payload) = (record.seq, &record.payload);
    if let Err(e) = std::str::from_utf8(payload) {
        return Err(Error::corrupt(seq, format!("payload is not UTF-8 (invalid byte at offset {})", e.valid_up_to())));
    }
    if !record.recorded_at.is_loggable() {
        return Err(Error::corrupt(seq, format!("recorded_at {} is outside years 0000-9999", record.recorded_at.0)));
    }
    // The sizes of FORMAT.md's table, which every append keeps to.
    let too_long = |field: &str, len: usize, most: usize| {
        (len > most).then(|| Error::corrupt(seq, format!("{field} is {len} bytes, more than {most}")))
    };
    let oversized = too_long("payload", payload.len(), Limits::MAX_PAYLOAD_BYTES)
        .or_else(|| too_long("actor", record.meta.actor.len(), Limits::MAX_ACTOR_BYTES))
        .or_else(|| {
            record
                .meta
                .client_addr
                .as_ref()
                .and_then(|a| too_long("client_addr", a.len(), Limits::MAX_CLIENT_ADDR_BYTES))
        });
    if let Some(e) = oversized {
        return Err(e);
    }
    if record.schema == 0 {
        return Err(Error::corrupt(seq, "schema is 0 (schemas start at 1)"));
    }
    Ok(())
}

/// Checks the links between consecutive records.
#[derive(Debug, Default)]
pub struct ChainCheck {
    head: Head,
    /// The previous record's time (none before the first: any time in range may start a log,
    /// 1969 or year 1 too).
    last_recorded_at: Option<Timestamp>,
    versions: HashMap<StreamId, Version>,
    mid_log: bool,
    checked: u64,
}

impl ChainCheck {
    /// A check that expects the log to start at seq 1.
    #[must_use]
    pub fn new() -> Self {
        ChainCheck::default()
    }

    /// A check that continues after `head` (for an incremental export or a tail check). Stream
    /// versions are then only checked for contiguity within what is seen.
    #[must_use]
    pub fn after(head: Head) -> Self {
        ChainCheck { head, mid_log: head.seq != Seq::ZERO, ..ChainCheck::default() }
    }

    /// Checks `record`, whose own hash is already known to match its bytes, against the
    /// records before it.
    pub fn check(&mut self, record: &Record) -> Result<()> {
        let expected_seq = self.head.seq.next();
        let bad = |problem: String| Err(Error::corrupt(record.seq, problem));
        check_content(record)?;
        if record.seq != expected_seq {
            return bad(format!("expected seq {expected_seq}, found {}", record.seq));
        }
        if record.prev_hash != self.head.hash {
            return bad(format!(
                "prev_hash {} does not match the hash {} of seq {}",
                record.prev_hash, self.head.hash, self.head.seq
            ));
        }
        let seen = self.versions.get(&record.stream).copied();
        let contiguous = match seen {
            Some(last) => record.version == last.next(),
            // From genesis every stream starts at version 1; a check that starts mid-log
            // accepts the first version it sees of each stream.
            None => record.version == Version(1) || self.mid_log,
        };
        if !contiguous {
            let last = seen.unwrap_or(Version::NONE);
            return bad(format!("stream {} jumps from version {last} to {}", record.stream, record.version));
        }
        if self.last_recorded_at.is_some_and(|last| record.recorded_at < last) {
            return bad("recorded_at goes back in time".to_owned());
        }
        match self.versions.get_mut(&record.stream) {
            Some(version) => *version = record.version,
            None => {
                self.versions.insert(record.stream.clone(), record.version);
            }
        }
        self.head = Head { seq: record.seq, hash: record.hash };
        self.last_recorded_at = Some(record.recorded_at);
        self.checked += 1;
        Ok(())
    }

    /// The summary of everything checked so far.
    #[must_use]
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            records: self.checked,
            streams: u64::try_from(self.versions.len()).unwrap_or(u64::MAX),
            head: self.head,
        }
    }
}

/// Walks a whole log through any backend's [`crate::EventStore::read_all`], in pages, with
/// the checks of [`ChainCheck`]: every record's hash, the chain, and seq and stream-version
/// contiguity. `progress` is called with each checked seq. The first problem found is
/// returned as [`Error::Corrupt`] naming its seq.
pub async fn verify_log<S: crate::EventStore>(
    store: &S,
    progress: &mut (dyn FnMut(Seq) + Send),
) -> Result<VerifyReport> {
    let mut chain = ChainCheck::new();
    loop {
        let from = chain.report().head.seq.next();
        let page = store.read_all(from, crate::Limits::MAX_READ_BATCH).await?;
        if page.is_empty() {
            return Ok(chain.report());
        }
        for record in &page {
            chain.check(record)?;
            progress(record.seq);
        }
    }
}
