//! JSON Lines export of the log, and its verification.
//!
//! One record per line, fields in a fixed order, hashes in lower-case hex, the payload's exact
//! bytes as a JSON string. `FORMAT.md` describes how anyone can re-verify a file with a BLAKE3
//! library; [`verify_export`] is this crate's own verifier.
//!
//! Invariant: the writer is canonical and the verifier holds files to it. A line is accepted
//! only if re-encoding the record it describes gives back exactly that line, and the record's
//! recomputed hash matches; so a change to any byte of a line is detected at that line's seq.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec;
use crate::error::{Error, Result};
use crate::model::{AppendMeta, CommandId, EventKind, Hash32, Record, Seq, StreamId, Timestamp, Version};
use crate::store::Head;
use crate::verify::{ChainCheck, VerifyReport};

/// One line of an export, in field order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    stream: String,
    version: u64,
    kind: String,
    schema: u32,
    recorded_at: String,
    actor: String,
    command_id: Uuid,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    client_addr: Option<String>,
    payload: String,
    prev_hash: String,
    hash: String,
}

/// The export line of `record`, without its newline.
pub fn line_of(record: &Record) -> Result<String> {
    crate::verify::check_content(record)?;
    let recorded_at = record
        .recorded_at
        .to_rfc3339()
        .ok_or_else(|| Error::corrupt(record.seq, "recorded_at outside years 0000-9999"))?;
    let payload =
        String::from_utf8(record.payload.clone()).map_err(|_| Error::corrupt(record.seq, "payload is not UTF-8"))?;
    let line = Line {
        seq: record.seq.0,
        stream: record.stream.as_str().to_owned(),
        version: record.version.0,
        kind: record.kind.as_str().to_owned(),
        schema: record.schema,
        recorded_at,
        actor: record.meta.actor.clone(),
        command_id: record.meta.command_id.0,
        correlation_id: record.meta.correlation_id,
        causation_id: record.meta.causation_id,
        client_addr: record.meta.client_addr.clone(),
        payload,
        prev_hash: record.prev_hash.to_hex(),
        hash: record.hash.to_hex(),
    };
    serde_json::to_string(&line).map_err(|e| Error::corrupt(record.seq, e.to_string()))
}

/// Parses and checks one export line expected to hold `seq`: canonical form and hash.
pub fn record_of_line(seq: Seq, text: &str) -> Result<Record> {
    let bad = |problem: String| Error::corrupt(seq, problem);
    let line: Line = serde_json::from_str(text).map_err(|e| bad(format!("unreadable line: {e}")))?;
    let hash = Hash32::from_hex(&line.hash).ok_or_else(|| bad("hash is not 64 lower-case hex digits".into()))?;
    let record = Record {
        seq: Seq(line.seq),
        stream: StreamId::new(line.stream).map_err(|e| bad(e.to_string()))?,
        version: Version(line.version),
        kind: EventKind::new(line.kind).map_err(|e| bad(e.to_string()))?,
        schema: line.schema,
        recorded_at: Timestamp::parse_rfc3339(&line.recorded_at)
            .ok_or_else(|| bad("recorded_at is not YYYY-MM-DDThh:mm:ss.ffffffZ".into()))?,
        meta: AppendMeta {
            command_id: CommandId(line.command_id),
            actor: line.actor,
            correlation_id: line.correlation_id,
            causation_id: line.causation_id,
            client_addr: line.client_addr,
        },
        payload: line.payload.into_bytes(),
        prev_hash: Hash32::from_hex(&line.prev_hash)
            .ok_or_else(|| bad("prev_hash is not 64 lower-case hex digits".into()))?,
        hash,
    };
    if record.seq != seq {
        return Err(bad(format!("line holds seq {}", record.seq)));
    }
    if codec::hash_body(&codec::body_bytes(&record)) != record.hash {
        return Err(bad("hash does not match the record's fields".into()));
    }
    if line_of(&record)? != text {
        return Err(bad("line is not in canonical form (FORMAT.md, export)".into()));
    }
    Ok(record)
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReport {
    /// Lines written.
    pub records: u64,
    /// The last record written (or the starting head if nothing was).
    pub head: Head,
}

/// Writes `records` as JSON Lines to `out`, calling `progress` with each seq written.
pub fn write_export(
    records: impl Iterator<Item = Result<Record>>,
    out: &mut impl Write,
    progress: &mut dyn FnMut(Seq),
) -> Result<ExportReport> {
    let mut report = ExportReport { records: 0, head: Head::default() };
    for record in records {
        let record = record?;
        let mut line = line_of(&record)?;
        line.push('\n');
        out.write_all(line.as_bytes()).map_err(|e| Error::io("export", e))?;
        report.records += 1;
        report.head = Head { seq: record.seq, hash: record.hash };
        progress(record.seq);
    }
    out.flush().map_err(|e| Error::io("export", e))?;
    Ok(report)
}

/// The outcome of verifying an export file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCheck {
    /// What the chain check saw.
    pub report: VerifyReport,
    /// The head the file continues from: `Head::default()` for a file starting at seq 1,
    /// otherwise the seq before its first line and that line's `prev_hash`, which must be
    /// matched against the previous export's head.
    pub continues_from: Head,
}

/// Verifies an export read from `input`: every line canonical and hash-correct, and the chain
/// unbroken. A file may start after seq 1 (an incremental export); its first `prev_hash` is
/// then reported in [`ExportCheck::continues_from`], or checked against `after` if given.
///
/// Every line must end with `\n` (FORMAT.md): a last line without one means the file may be
/// cut short, and is refused naming it. A read failure is [`Error::Unreadable`] with the byte
/// offset of the line being read (its file named `export`; the caller knows the path).
pub fn verify_export(input: impl BufRead, after: Option<Head>, progress: &mut dyn FnMut(Seq)) -> Result<ExportCheck> {
    verify_export_each(input, after, &mut |record| progress(record.seq))
}

/// [`verify_export`], handing `each` every record once it has been checked (a backup's
/// verifier builds the Merkle tree from them).
pub fn verify_export_each(
    mut input: impl BufRead,
    after: Option<Head>,
    each: &mut dyn FnMut(&Record),
) -> Result<ExportCheck> {
    let mut chain: Option<ChainCheck> = after.map(ChainCheck::after);
    let mut continues_from = after.unwrap_or_default();
    let mut expected = continues_from.seq.next();
    let mut line = Vec::new();
    let mut offset = 0u64;
    for number in 1u64.. {
        line.clear();
        let read = input.read_until(b'\n', &mut line).map_err(|e| Error::Unreadable {
            file: "export".into(),
            offset: Some(offset),
            last_good: Seq(expected.0 - 1),
            reason: e.to_string(),
        })?;
        if read == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            return Err(Error::corrupt(
                expected,
                format!("line {number}, the last, has no final newline: the file may be cut short"),
            ));
        }
        offset += u64::try_from(read).unwrap_or(u64::MAX);
        let text =
            std::str::from_utf8(&line).map_err(|_| Error::corrupt(expected, format!("line {number} is not UTF-8")))?;
        let record = match &chain {
            Some(_) => record_of_line(expected, text)?,
            None => {
                // The first line decides where the file starts.
                let seq = serde_json::from_str::<FirstSeq>(text).map(|f| Seq(f.seq)).unwrap_or(Seq::FIRST);
                let record = record_of_line(seq.max(Seq::FIRST), text)?;
                continues_from = Head { seq: Seq(record.seq.0 - 1), hash: record.prev_hash };
                if record.seq == Seq::FIRST {
                    continues_from = Head::default();
                }
                chain = Some(ChainCheck::after(continues_from));
                record
            }
        };
        if let Some(chain) = chain.as_mut() {
            chain.check(&record)?;
        }
        expected = record.seq.next();
        each(&record);
    }
    let report = chain.map_or_else(|| ChainCheck::new().report(), |c| c.report());
    Ok(ExportCheck { report, continues_from })
}

#[derive(Deserialize)]
struct FirstSeq {
    seq: u64,
}
