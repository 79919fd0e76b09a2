//! The record encoding: the exact bytes that are hashed and stored (`FORMAT.md` is its
//! specification; the two must change together, and `tests/vectors.rs` holds them to it).
//!
//! A stored record is `body || hash` where `hash = BLAKE3(body)` and `body` is the fields in
//! a fixed order, integers big-endian, texts and byte strings prefixed with their length as a
//! u32, optional values prefixed with a presence byte. The body starts with the
//! length-prefixed domain tag [`TAG`] and the previous record's hash, so the chain is part of
//! what is hashed.
//!
//! Invariant: decoding never panics and never trusts a length; every read is bounds-checked
//! against the buffer and against [`Limits`], and any violation is [`Error::Corrupt`] at the
//! record's seq.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{CommandId, EventKind, Hash32, Record, RecordRef, Seq, StreamId, Timestamp, Version};

/// Domain-separation tag at the start of every body.
pub const TAG: &str = "oacis.event.v1";

/// Length of the trailing hash.
pub const HASH_LEN: usize = 32;

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every length is bounded by `Limits` far below u32::MAX before a record is built.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    put_u32(out, len);
    out.extend_from_slice(bytes);
}

fn put_opt_uuid(out: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(id.as_bytes());
        }
    }
}

fn put_opt_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
    }
}

/// The body of `record`: every field but `hash`, in `FORMAT.md` order.
#[must_use]
pub fn body_bytes(record: &Record) -> Vec<u8> {
    let meta = &record.meta;
    let mut out = Vec::with_capacity(record.payload.len() + 256);
    put_bytes(&mut out, TAG.as_bytes());
    out.extend_from_slice(&record.prev_hash.0);
    out.extend_from_slice(&record.seq.0.to_be_bytes());
    put_bytes(&mut out, record.stream.as_str().as_bytes());
    out.extend_from_slice(&record.version.0.to_be_bytes());
    put_bytes(&mut out, record.kind.as_str().as_bytes());
    put_u32(&mut out, record.schema);
    out.extend_from_slice(&record.recorded_at.0.to_be_bytes());
    put_bytes(&mut out, meta.actor.as_bytes());
    out.extend_from_slice(meta.command_id.0.as_bytes());
    out.extend_from_slice(meta.correlation_id.as_bytes());
    put_opt_uuid(&mut out, meta.causation_id);
    put_opt_text(&mut out, meta.client_addr.as_deref());
    put_bytes(&mut out, &record.payload);
    out
}

/// BLAKE3 of a body.
#[must_use]
pub fn hash_body(body: &[u8]) -> Hash32 {
    Hash32(*blake3::hash(body).as_bytes())
}

/// Computes `record.hash` from its other fields and returns the stored form `body || hash`.
#[must_use]
pub fn seal(record: &mut Record) -> Vec<u8> {
    let mut stored = body_bytes(record);
    record.hash = hash_body(&stored);
    stored.extend_from_slice(&record.hash.0);
    stored
}

/// Bounds-checked reader over one stored record.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    seq: Seq,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &str) -> Error {
        Error::corrupt(self.seq, format!("{what} (at byte {})", self.at))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.fail(&format!("truncated {what}")));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn bytes(&mut self, max: usize, what: &str) -> Result<&'a [u8]> {
        let len = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(self.fail(&format!("{what} length {len} exceeds {max}")));
        }
        self.take(len, what)
    }

    fn text(&mut self, max: usize, what: &str) -> Result<&'a str> {
        let bytes = self.bytes(max, what)?;
        std::str::from_utf8(bytes).map_err(|_| self.fail(&format!("{what} is not UTF-8")))
    }

    fn presence(&mut self, what: &str) -> Result<bool> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.fail(&format!("{what} presence byte is {other}"))),
        }
    }

    fn uuid(&mut self, what: &str) -> Result<Uuid> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }
}

/// The fields of a body up to the command id, borrowed from the stored bytes.
struct Leading<'a> {
    prev_hash: Hash32,
    own_seq: Seq,
    stream: &'a str,
    version: Version,
    /// Checked as UTF-8 only where the whole record is decoded.
    kind: &'a [u8],
    schema: u32,
    recorded_at: Timestamp,
    /// Checked as UTF-8 only where the whole record is decoded.
    actor: &'a [u8],
    command_id: CommandId,
}

/// Splits `stored` into body and hash, checks its size, and reads the body's leading fields.
fn read_leading(seq: Seq, stored: &[u8]) -> Result<(Reader<'_>, Leading<'_>, &[u8])> {
    if stored.len() < HASH_LEN {
        return Err(Error::corrupt(seq, "record shorter than its hash"));
    }
    if stored.len() > Limits::MAX_RECORD_BYTES + HASH_LEN {
        return Err(Error::corrupt(seq, format!("record of {} bytes exceeds the limit", stored.len())));
    }
    let (body, stored_hash) = stored.split_at(stored.len() - HASH_LEN);
    let mut r = Reader { bytes: body, at: 0, seq };
    if r.bytes(TAG.len(), "tag")? != TAG.as_bytes() {
        return Err(r.fail("unknown record tag"));
    }
    let leading = Leading {
        prev_hash: Hash32(r.array("prev_hash")?),
        own_seq: Seq(r.u64("seq")?),
        stream: r.text(Limits::MAX_STREAM_BYTES, "stream")?,
        version: Version(r.u64("version")?),
        kind: r.bytes(Limits::MAX_KIND_BYTES, "kind")?,
        schema: r.u32("schema")?,
        recorded_at: Timestamp(i64::from_be_bytes(r.array("recorded_at")?)),
        actor: r.bytes(Limits::MAX_ACTOR_BYTES, "actor")?,
        command_id: CommandId(r.uuid("command_id")?),
    };
    if leading.own_seq != seq {
        return Err(Error::corrupt(seq, format!("record says seq {}", leading.own_seq)));
    }
    Ok((r, leading, stored_hash))
}

/// What the in-memory indexes need from a stored record: where it belongs, and which
/// command wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The record's stream name (not yet checked against the naming rules).
    pub stream: &'a str,
    /// Its version in that stream.
    pub version: Version,
    /// The command id of the append that wrote it.
    pub command_id: CommandId,
    /// The record's stored hash (not checked against its body here): the Merkle tree's leaf
    /// input.
    pub hash: Hash32,
}

/// Reads a stored record's placement without decoding the rest or checking its hash: the
/// cheap pass that rebuilds the indexes when a store opens. Bounds are checked as in
/// [`decode`]; the hash is not (`SledStore::verify` and the tail check on open do that).
pub fn placement(seq: Seq, stored: &[u8]) -> Result<Placement<'_>> {
    let (_, leading, stored_hash) = read_leading(seq, stored)?;
    let hash = Hash32(stored_hash.try_into().map_err(|_| Error::corrupt(seq, "hash is not 32 bytes"))?);
    Ok(Placement { stream: leading.stream, version: leading.version, command_id: leading.command_id, hash })
}

/// Decodes a stored record found at position `seq`, checking its hash against its body and
/// its own seq against `seq`. The chain link (`prev_hash`) is the caller's to check.
pub fn decode(seq: Seq, stored: &[u8]) -> Result<Record> {
    decode_ref(seq, stored).map(|record| record.to_record_checked())
}

/// [`decode`] without copying: the record borrowed from `stored`, with the same checks.
pub fn decode_ref(seq: Seq, stored: &[u8]) -> Result<RecordRef<'_>> {
    let (mut r, leading, stored_hash) = read_leading(seq, stored)?;
    if !StreamId::is_valid(leading.stream) {
        return Err(r.fail("invalid stream name"));
    }
    let kind = std::str::from_utf8(leading.kind).map_err(|_| r.fail("kind is not UTF-8"))?;
    if !EventKind::is_valid(kind) {
        return Err(r.fail("invalid kind name"));
    }
    let actor = std::str::from_utf8(leading.actor).map_err(|_| r.fail("actor is not UTF-8"))?;
    let correlation_id = r.uuid("correlation_id")?;
    let causation_id = if r.presence("causation_id")? { Some(r.uuid("causation_id")?) } else { None };
    let client_addr =
        if r.presence("client_addr")? { Some(r.text(Limits::MAX_CLIENT_ADDR_BYTES, "client_addr")?) } else { None };
    let payload = r.bytes(Limits::MAX_PAYLOAD_BYTES, "payload")?;
    if r.at != r.bytes.len() {
        return Err(r.fail("trailing bytes after payload"));
    }
    let hash = hash_body(r.bytes);
    if hash.0 != stored_hash {
        return Err(Error::corrupt(seq, "hash does not match the record's bytes"));
    }
    Ok(RecordRef {
        seq,
        stream: leading.stream,
        version: leading.version,
        kind,
        schema: leading.schema,
        recorded_at: leading.recorded_at,
        command_id: leading.command_id,
        actor,
        correlation_id,
        causation_id,
        client_addr,
        payload,
        prev_hash: leading.prev_hash,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppendMeta;

    fn sample() -> Record {
        Record {
            seq: Seq(7),
            stream: StreamId::new("customer-1").unwrap(),
            version: Version(3),
            kind: EventKind::new("CustomerRenamed").unwrap(),
            schema: 2,
            recorded_at: Timestamp(1_700_000_000_123_456),
            meta: AppendMeta {
                command_id: CommandId(Uuid::from_u128(1)),
                actor: "用户-7".into(),
                correlation_id: Uuid::from_u128(2),
                causation_id: Some(Uuid::from_u128(3)),
                client_addr: Some("127.0.0.1:9".into()),
            },
            payload: r#"{"name":"张三"}"#.as_bytes().to_vec(),
            prev_hash: Hash32([9; 32]),
            hash: Hash32::GENESIS,
        }
    }

    #[test]
    fn seal_then_decode_round_trips() {
        let mut record = sample();
        let stored = seal(&mut record);
        assert_ne!(record.hash, Hash32::GENESIS);
        assert_eq!(decode(Seq(7), &stored).unwrap(), record);
    }

    #[test]
    fn the_borrowed_decode_reads_the_same_record() {
        let mut record = sample();
        let stored = seal(&mut record);
        let borrowed = decode_ref(Seq(7), &stored).unwrap();
        assert_eq!(borrowed, record.borrowed());
        assert_eq!(borrowed.to_record().unwrap(), record);
    }

    #[test]
    fn decode_refuses_a_record_filed_under_another_seq() {
        let mut record = sample();
        let stored = seal(&mut record);
        let err = decode(Seq(8), &stored).unwrap_err();
        assert!(matches!(err, Error::Corrupt { seq: Seq(8), .. }), "{err}");
    }

    #[test]
    fn placement_reads_stream_version_and_command_without_the_payload() {
        let mut record = sample();
        let stored = seal(&mut record);
        let found = placement(Seq(7), &stored).unwrap();
        assert_eq!(
            found,
            Placement {
                stream: "customer-1",
                version: Version(3),
                command_id: record.meta.command_id,
                hash: record.hash
            }
        );
        assert!(matches!(placement(Seq(8), &stored), Err(Error::Corrupt { seq: Seq(8), .. })));
        for cut in 0..120 {
            assert!(placement(Seq(7), &stored[..cut]).is_err(), "truncation at {cut} went unnoticed");
        }
    }

    #[test]
    fn every_single_byte_change_is_detected_without_panic() {
        let mut record = sample();
        let stored = seal(&mut record);
        for i in 0..stored.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = stored.clone();
                bad[i] ^= flip;
                assert!(decode(Seq(7), &bad).is_err(), "byte {i} ^ {flip:#x} went unnoticed");
            }
        }
        for cut in 0..stored.len() {
            assert!(decode(Seq(7), &stored[..cut]).is_err(), "truncation at {cut} went unnoticed");
        }
    }
}
