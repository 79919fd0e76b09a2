//! Backups of the log: full and incremental, verified on their own, restored into a new
//! folder only after everything checks out.
//!
//! A backup is a folder of three or four files:
//!
//! | file | what |
//! |---|---|
//! | `events.jsonl` | the records `first_seq..=last_seq` in the export format (`FORMAT.md`) |
//! | `manifest.json` | what the backup claims, checked against the files (below) |
//! | `keys.journal` | the key store's journal as it was (wrapped data keys; only with a key store) |
//!
//! The manifest (`oacis-backup/1`): `store` (the hash of record 1: which log this is a backup
//! of), `first_seq`, `last_seq`, `event_count`, `head_hash` (of `last_seq`), `previous` (for an
//! incremental, the previous backup's `{"seq","hash"}` head; `null` for a full one),
//! `merkle_root` (at `last_seq`), `checkpoint` (a signed checkpoint line at `last_seq`),
//! `public_key`, `created_at`, `events_bytes` and `events_blake3` (of `events.jsonl`),
//! `keys_blake3` (of `keys.journal`, or `null`).
//!
//! Invariants:
//! - A backup is written into a temporary folder beside its target, every file fsynced, then
//!   renamed into place and the parent fsynced: a backup folder is complete or absent.
//! - An incremental backup holds exactly the records after its previous backup's head, and
//!   starts only if that head is still in the log with the same hash.
//! - [`verify_chain`] checks a full backup and its incrementals in order, needing no store:
//!   every line (canonical form, hash, chain), each incremental's link, the store id, each
//!   manifest field against what the files hold, the Merkle root recomputed over the whole
//!   chain, and each checkpoint's signature. The first failure names the file and the seq or
//!   field at fault.
//! - [`restore`] verifies the whole chain before it writes anything, and writes only into a
//!   missing or empty folder.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, PublicKey};
use crate::error::Error;
use crate::export;
use crate::keys::{JOURNAL, KEY_DIR};
use crate::merkle::MerkleTree;
use crate::model::{Hash32, Record, Seq, Timestamp};
use crate::store::Head;
use crate::{SledConfig, SledStore};

/// Format tag of the manifests this build writes and reads.
pub const FORMAT: &str = "oacis-backup/1";
/// The manifest's file name in a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The records' file name in a backup folder.
pub const EVENTS: &str = "events.jsonl";
/// The key journal's file name in a backup folder.
pub const KEYS: &str = "keys.journal";
/// Largest manifest read, in bytes (a real one is about 1.5 KB).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Why a backup could not be made, verified or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is unreadable, or a field does not match what the backup holds.
    #[error("{}: field `{field}`: {problem}", file.display())]
    Field {
        /// The file at fault.
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A record in `events.jsonl` does not verify.
    #[error("{}: first bad seq {seq}: {problem}", file.display())]
    Record {
        /// The events file.
        file: PathBuf,
        /// The first bad seq.
        seq: Seq,
        /// What is wrong.
        problem: String,
    },
    /// The earliest backup given is an incremental one: the full backup it builds on is
    /// missing.
    #[error("{} is an incremental backup (it continues from seq {}), and no full backup was given: give the full backup it builds on too (in any order)", file.display(), after.seq)]
    NotFull {
        /// Its manifest.
        file: PathBuf,
        /// The head it continues from.
        after: Head,
    },
    /// An incremental does not continue the backup before it.
    #[error("{} continues from seq {} (hash {}), but the backup before it ends at seq {} (hash {}){}",
            file.display(), found.seq, found.hash, expected.seq, expected.hash,
            if found.seq > expected.seq { ": a backup between them is missing" } else { "" })]
    BrokenLink {
        /// The incremental's manifest.
        file: PathBuf,
        /// The head of the backup before it.
        expected: Head,
        /// The head it says it continues from.
        found: Head,
    },
    /// A backup of another log.
    #[error("{} is a backup of another store (record 1 has hash {found}, not {expected})", file.display())]
    OtherStore {
        /// Its manifest.
        file: PathBuf,
        /// The store id of the chain so far.
        expected: String,
        /// Its store id.
        found: String,
    },
    /// The caller refused before anything was written.
    #[error("{0}")]
    Refused(String),
    /// The restore target holds files.
    #[error("{} is not empty; restore into a new or empty folder", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The backup target exists.
    #[error("{} already exists", path.display())]
    Exists {
        /// The target.
        path: PathBuf,
    },
    /// There is nothing to back up.
    #[error("nothing to back up: {0}")]
    Nothing(String),
    /// No backups were given.
    #[error("no backups given")]
    NoBackups,
    /// The store refused.
    #[error(transparent)]
    Store(#[from] Error),
}

/// A file a backup must hold that is not there is the backup's fault (a [`BackupError::Field`]
/// naming it); any other I/O failure is the machine's.
fn missing_or_io(path: &Path, error: std::io::Error) -> BackupError {
    if error.kind() == std::io::ErrorKind::NotFound {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        return BackupError::Field {
            file: path.to_owned(),
            field: name,
            problem: "missing: not a complete backup".into(),
        };
    }
    BackupError::Io { path: path.to_owned(), source: error }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

/// A head as stored in a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Its seq.
    pub seq: u64,
    /// Its hash, 64 hex digits.
    #[serde(with = "hex32")]
    pub hash: Hash32,
}

mod hex32 {
    use super::Hash32;
    pub fn serialize<S: serde::Serializer>(hash: &Hash32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hash32, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Hash32::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not 64 lower-case hex digits"))
    }
}

/// A backup's manifest (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Hash of record 1, hex: the log this is a backup of.
    #[serde(with = "hex32")]
    pub store: Hash32,
    /// First seq held.
    pub first_seq: u64,
    /// Last seq held.
    pub last_seq: u64,
    /// Records held.
    pub event_count: u64,
    /// Hash of record `last_seq`.
    #[serde(with = "hex32")]
    pub head_hash: Hash32,
    /// For an incremental, the previous backup's head.
    pub previous: Option<Link>,
    /// Merkle root over records `1..=last_seq`.
    #[serde(with = "hex32")]
    pub merkle_root: Hash32,
    /// The signed checkpoint at `last_seq`, as its JSON line.
    pub checkpoint: String,
    /// The public key that signed it, 64 hex digits.
    pub public_key: String,
    /// When the backup was made (RFC 3339).
    pub created_at: String,
    /// Size of `events.jsonl` in bytes.
    pub events_bytes: u64,
    /// BLAKE3 of `events.jsonl`.
    #[serde(with = "hex32")]
    pub events_blake3: Hash32,
    /// BLAKE3 of `keys.journal`, if the backup has one.
    pub keys_blake3: Option<String>,
    /// Ed25519 signature (128 hex digits), by `public_key`, of [`Manifest::signed_bytes`].
    pub signature: String,
}

impl Manifest {
    /// What the signature covers: `oacis-backup/1`, a newline, then the manifest as compact
    /// JSON (fields in the order above) with `signature` empty. Any change to any field
    /// changes these bytes.
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest { signature: String::new(), ..self.clone() };
        // Strings, integers and options only: encoding cannot fail.
        format!("{FORMAT}\n{}", serde_json::to_string(&unsigned).unwrap_or_default()).into_bytes()
    }

    /// The head this backup ends at.
    #[must_use]
    pub fn head(&self) -> Head {
        Head { seq: Seq(self.last_seq), hash: self.head_hash }
    }

    /// Reads the manifest of backup folder `dir`.
    ///
    /// # Errors
    /// [`BackupError::Io`], or [`BackupError::Field`] naming the field that does not parse.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let file = dir.join(MANIFEST);
        let meta = std::fs::metadata(&file).map_err(|e| missing_or_io(&file, e))?;
        if !meta.is_file() {
            return Err(BackupError::Field { file, field: "manifest".into(), problem: "not a regular file".into() });
        }
        let size = meta.len();
        if size > MAX_MANIFEST_BYTES {
            return Err(BackupError::Field {
                file,
                field: "manifest".into(),
                problem: format!("{size} bytes; a manifest has at most {MAX_MANIFEST_BYTES}"),
            });
        }
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| BackupError::Field {
            file: file.clone(),
            field: serde_field(&e.to_string()),
            problem: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(BackupError::Field {
                file,
                field: "format".into(),
                problem: format!("{:?}; this build reads {FORMAT:?}", manifest.format),
            });
        }
        Ok(manifest)
    }
}

/// The field a serde error names (`unknown field `x``, `missing field `x``), else `manifest`
/// (other messages quote the value, not the field).
fn serde_field(message: &str) -> String {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        if let Some(field) = message.split('`').nth(1) {
            return field.to_owned();
        }
    }
    "manifest".to_owned()
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn blake3_file(path: &Path) -> Result<Hash32, BackupError> {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path).map_err(io(path))?;
    std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(Hash32(*hasher.finalize().as_bytes()))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Checks that the files of backup folder `dir` are what its manifest says (their BLAKE3),
/// without reading the records one by one: what an incremental backup asks of its base.
///
/// # Errors
/// [`BackupError::Field`] naming the file whose digest differs; I/O errors.
pub fn check_files(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let events = dir.join(EVENTS);
    if blake3_file(&events)? != manifest.events_blake3 {
        return Err(BackupError::Field {
            file: events,
            field: "events_blake3".into(),
            problem: "the records are not what the manifest says: run `oacis backup verify` on it".into(),
        });
    }
    let keys = dir.join(KEYS);
    let digest = if keys.exists() { Some(blake3_file(&keys)?.to_hex()) } else { None };
    if digest != manifest.keys_blake3 {
        return Err(BackupError::Field {
            file: keys,
            field: "keys_blake3".into(),
            problem: "the key journal is not what the manifest says".into(),
        });
    }
    Ok(())
}

/// Makes a backup of `store` into the new folder `out`: full, or with `previous` (a backup
/// of the same store) the records after its head. Issues (and keeps) a checkpoint at the
/// durable head first and backs up exactly that head, while appends go on. `progress` is
/// called with each seq written.
///
/// # Errors
/// [`BackupError::Exists`]; [`BackupError::Nothing`] for an empty log or no records since
/// `previous`; [`BackupError::OtherStore`] / [`BackupError::BrokenLink`] if `previous` is not
/// a backup of this log as it stands; I/O and store errors. On error nothing is left at `out`.
pub fn write_backup(
    store: &SledStore,
    previous: Option<&Manifest>,
    out: &Path,
    progress: &mut dyn FnMut(Seq),
) -> Result<Manifest, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists { path: out.to_owned() });
    }
    let checkpoint = store.issue_checkpoint()?;
    let head = checkpoint.head;
    if head.seq == Seq::ZERO {
        return Err(BackupError::Nothing("the log is empty".into()));
    }
    let first = store.records(Seq::FIRST).next().ok_or_else(|| Error::corrupt(Seq::FIRST, "record missing"))??;
    let from = match previous {
        None => Seq::FIRST,
        Some(previous) => {
            let file = PathBuf::from(MANIFEST);
            let signed_here = checkpoint::decode_hex::<64>(&previous.signature)
                .is_some_and(|signature| store.checkpoint_key().verifies(&previous.signed_bytes(), &signature));
            if !signed_here {
                return Err(BackupError::Field {
                    file,
                    field: "signature".into(),
                    problem: "the previous backup was not signed by this store's key (changed, or of another store)"
                        .into(),
                });
            }
            if previous.store != first.hash {
                return Err(BackupError::OtherStore {
                    file,
                    expected: first.hash.to_hex(),
                    found: previous.store.to_hex(),
                });
            }
            let at = Seq(previous.last_seq);
            let found = match store.records(at).next() {
                Some(record) if at <= head.seq => record?.hash,
                _ => Hash32::GENESIS,
            };
            if found != previous.head_hash {
                return Err(BackupError::BrokenLink {
                    file,
                    expected: Head { seq: at, hash: found },
                    found: previous.head(),
                });
            }
            if at >= head.seq {
                return Err(BackupError::Nothing(format!("no records after seq {at}, the previous backup's head")));
            }
            at.next()
        }
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| BackupError::Exists { path: out.to_owned() })?;
    let temporary = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    let result = write_into(store, &temporary, from, &checkpoint, first.hash, previous, progress);
    let manifest = match result {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temporary);
            return Err(e);
        }
    };
    std::fs::rename(&temporary, out).map_err(io(out))?;
    sync_dir(parent)?;
    Ok(manifest)
}

fn write_into(
    store: &SledStore,
    dir: &Path,
    from: Seq,
    checkpoint: &Checkpoint,
    store_id: Hash32,
    previous: Option<&Manifest>,
    progress: &mut dyn FnMut(Seq),
) -> Result<Manifest, BackupError> {
    let head = checkpoint.head;
    std::fs::create_dir(dir).map_err(io(dir))?;
    let events = dir.join(EVENTS);
    let file = File::create(&events).map_err(io(&events))?;
    let mut out = std::io::BufWriter::new(Hashing { inner: file, hasher: blake3::Hasher::new(), bytes: 0 });
    let count = head.seq.0 - from.0 + 1;
    let records = store.records(from).take(usize::try_from(count).unwrap_or(usize::MAX));
    let report = export::write_export(records, &mut out, progress)?;
    let hashing = out.into_inner().map_err(|e| BackupError::Io { path: events.clone(), source: e.into_error() })?;
    hashing.inner.sync_all().map_err(io(&events))?;
    if report.head != head {
        return Err(Error::corrupt(report.head.seq.next(), "the log ended before the checkpointed head").into());
    }
    // The key journal as it stands: every key a backed-up record names was durable before
    // the record was acknowledged, so it is in the file (the store need not be open with it).
    let source = store.path().join(KEY_DIR).join(JOURNAL);
    let keys_blake3 = match source.exists() {
        true => {
            let target = dir.join(KEYS);
            std::fs::copy(&source, &target).map_err(io(&source))?;
            File::open(&target).and_then(|f| f.sync_all()).map_err(io(&target))?;
            Some(blake3_file(&target)?.to_hex())
        }
        false => None,
    };
    let merkle_root = checkpoint.merkle_root().ok_or_else(|| Error::corrupt(head.seq, "unsigned checkpoint"))?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        store: store_id,
        first_seq: from.0,
        last_seq: head.seq.0,
        event_count: report.records,
        head_hash: head.hash,
        previous: previous.map(|p| Link { seq: p.last_seq, hash: p.head_hash }),
        merkle_root,
        checkpoint: checkpoint.to_line(),
        public_key: store.checkpoint_key().to_hex(),
        created_at: Timestamp::now().to_rfc3339().unwrap_or_default(),
        events_bytes: hashing.bytes,
        events_blake3: Hash32(*hashing.hasher.finalize().as_bytes()),
        keys_blake3,
        signature: String::new(),
    };
    let manifest = Manifest {
        signature: store.sign(&manifest.signed_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
        ..manifest
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| BackupError::Field {
        file: path.clone(),
        field: "manifest".into(),
        problem: e.to_string(),
    })?;
    let mut file = File::create(&path).map_err(io(&path))?;
    file.write_all(format!("{text}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(manifest)
}

/// What a verified chain of backups holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Each backup's manifest, in order.
    pub manifests: Vec<Manifest>,
    /// The last backup's head.
    pub head: Head,
    /// The Merkle root at that head, recomputed.
    pub merkle_root: Hash32,
    /// The key that signed the checkpoints.
    pub public_key: String,
    /// The backup folders in chain order.
    pub backups: Vec<PathBuf>,
    /// The key journal a restore puts beside the log: the last backup's, or (chosen by
    /// [`restore`]) a newer one of the same store found beside the backups.
    pub key_journal: Option<PathBuf>,
}

/// Verifies a full backup and its incrementals, given in any order, checked in the order of
/// their seqs (see the module doc).
/// With `trusted`, every checkpoint must be signed by that key; otherwise by the key the
/// first manifest names (and the same one throughout). `progress` gets each seq checked.
///
/// # Errors
/// The first problem found, naming the file and the seq or field at fault.
pub fn verify_chain(
    backups: &[PathBuf],
    trusted: Option<&PublicKey>,
    progress: &mut dyn FnMut(Seq),
) -> Result<ChainReport, BackupError> {
    // Given in any order (a shell glob sorts by name): checked in the order of their seqs.
    let mut ordered = Vec::with_capacity(backups.len());
    for dir in backups {
        // A folder that is not there at all is a wrong argument, not a damaged backup.
        if !dir.exists() {
            return Err(BackupError::Io {
                path: dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such backup folder"),
            });
        }
        ordered.push((Manifest::read(dir)?.first_seq, dir.clone()));
    }
    ordered.sort_by_key(|(first, _)| *first);
    if let Some(pair) = ordered.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(BackupError::Field {
            file: pair[1].1.join(MANIFEST),
            field: "first_seq".into(),
            problem: format!("{} starts at seq {} too (the same backup given twice?)", pair[0].1.display(), pair[0].0),
        });
    }
    let backups: Vec<PathBuf> = ordered.into_iter().map(|(_, dir)| dir).collect();
    let mut tree = MerkleTree::new();
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut key: Option<PublicKey> = trusted.cloned();
    let mut head = Head::default();
    for dir in &backups {
        let manifest = Manifest::read(dir)?;
        let file = dir.join(MANIFEST);
        let field =
            |name: &str, problem: String| BackupError::Field { file: file.clone(), field: name.into(), problem };
        match (&manifest.previous, manifests.last()) {
            (Some(after), None) => {
                return Err(BackupError::NotFull { file, after: Head { seq: Seq(after.seq), hash: after.hash } })
            }
            (None, Some(_)) => {
                return Err(field("previous", "a full backup cannot follow another backup in a chain".into()))
            }
            (Some(after), Some(before)) => {
                if manifest.store != before.store {
                    return Err(BackupError::OtherStore {
                        file,
                        expected: before.store.to_hex(),
                        found: manifest.store.to_hex(),
                    });
                }
                let found = Head { seq: Seq(after.seq), hash: after.hash };
                if found != head {
                    return Err(BackupError::BrokenLink { file, expected: head, found });
                }
            }
            (None, None) => {}
        }
        let public = PublicKey::from_hex(&manifest.public_key)
            .ok_or_else(|| field("public_key", "not an Ed25519 public key in 64 hex digits".into()))?;
        match &key {
            Some(expected) if *expected != public => {
                return Err(field(
                    "public_key",
                    format!("key {}; the checkpoints must be signed by {}", public.key_id(), expected.key_id()),
                ))
            }
            _ => key = Some(public.clone()),
        }
        // The records: canonical, hashed, chained from the previous backup's head.
        let events = dir.join(EVENTS);
        let input = File::open(&events).map_err(|e| missing_or_io(&events, e))?;
        let mut reader = BufReader::new(Hashing { inner: input, hasher: blake3::Hasher::new(), bytes: 0 });
        let anchor = manifests.last().map(|_| head);
        let mut first_record: Option<Hash32> = None;
        let check = export::verify_export_each(&mut reader, anchor, &mut |record: &Record| {
            if record.seq == Seq::FIRST {
                first_record = Some(record.hash);
            }
            tree.push(&record.hash);
            progress(record.seq);
        })
        .map_err(|e| match e {
            Error::Corrupt { seq, problem } => BackupError::Record { file: events.clone(), seq, problem },
            Error::Unreadable { offset, reason, .. } => BackupError::Record {
                file: events.clone(),
                seq: head.seq.next(),
                problem: format!("unreadable at byte {}: {reason}", offset.unwrap_or(0)),
            },
            other => BackupError::Store(other),
        })?;
        if manifests.is_empty() && check.continues_from != Head::default() {
            return Err(BackupError::Record {
                file: events,
                seq: check.continues_from.seq.next(),
                problem: "a full backup must start at seq 1".into(),
            });
        }
        if let Some(first) = first_record {
            if first != manifest.store {
                return Err(field("store", format!("record 1 has hash {first}")));
            }
        }
        let hashing = reader.into_inner();
        let report = check.report;
        let expect = |name: &str, claimed: String, found: String| {
            if claimed == found {
                Ok(())
            } else {
                Err(field(name, format!("says {claimed}, the backup holds {found}")))
            }
        };
        expect("first_seq", manifest.first_seq.to_string(), head.seq.next().0.to_string())?;
        expect("last_seq", manifest.last_seq.to_string(), report.head.seq.0.to_string())?;
        expect("event_count", manifest.event_count.to_string(), report.records.to_string())?;
        expect("head_hash", manifest.head_hash.to_hex(), report.head.hash.to_hex())?;
        expect("events_bytes", manifest.events_bytes.to_string(), hashing.bytes.to_string())?;
        let digest = Hash32(*hashing.hasher.finalize().as_bytes());
        expect("events_blake3", manifest.events_blake3.to_hex(), digest.to_hex())?;
        let root = tree.root(tree.size()).map_err(|e| field("merkle_root", e.to_string()))?;
        expect("merkle_root", manifest.merkle_root.to_hex(), root.to_hex())?;
        let signed = Checkpoint::from_line(&manifest.checkpoint).map_err(|p| field("checkpoint", p))?;
        signed.verify(&public).map_err(|e| field("checkpoint", e.to_string()))?;
        if signed.head != report.head || signed.merkle_root() != Some(root) {
            return Err(field(
                "checkpoint",
                format!("signs tree size {}, not this backup's head and root", signed.head.seq),
            ));
        }
        let keys = dir.join(KEYS);
        let keys_digest = if keys.exists() { Some(blake3_file(&keys)?.to_hex()) } else { None };
        if keys_digest != manifest.keys_blake3 {
            return Err(BackupError::Field {
                file: keys,
                field: "keys_blake3".into(),
                problem: format!(
                    "the manifest says {}, the backup holds {}",
                    manifest.keys_blake3.as_deref().unwrap_or("no key journal"),
                    keys_digest.as_deref().unwrap_or("no key journal")
                ),
            });
        }
        Timestamp::parse_rfc3339(&manifest.created_at)
            .ok_or_else(|| field("created_at", "not RFC 3339 with six fractional digits and Z".into()))?;
        // Last, so that a field that disagrees with the files is named above; what is left
        // (the creation time, say) only the signature covers.
        let signature = checkpoint::decode_hex::<64>(&manifest.signature)
            .ok_or_else(|| field("signature", "not 128 lower-case hex digits".into()))?;
        if !public.verifies(&manifest.signed_bytes(), &signature) {
            return Err(field(
                "signature",
                "does not verify: a field of the manifest was changed (or it was signed by another key)".into(),
            ));
        }
        head = report.head;
        manifests.push(manifest);
    }
    let Some(last) = manifests.last() else { return Err(BackupError::NoBackups) };
    let key_journal = backups.last().map(|dir| dir.join(KEYS)).filter(|p| p.exists());
    Ok(ChainReport {
        head,
        merkle_root: last.merkle_root,
        public_key: last.public_key.clone(),
        manifests,
        backups,
        key_journal,
    })
}

/// Restores a chain of backups into `target` (missing, or an empty folder): verifies the
/// whole chain, lets `before_write` refuse (the caller's own checks, such as the KEK), then
/// writes into a temporary folder beside `target` the log, the backups' checkpoints as kept
/// checkpoints, the last backup's key journal, and the checkpoint signing key (`signing_key`,
/// which must be the key that signed the backups, or else a new one), with a latest
/// checkpoint at the restored head signed by that key; lets `after_write` finish the folder
/// (the caller replays the views and applies recorded erasures there); and only then renames
/// it into place. So an interrupted or failed restore leaves no `target` behind (at most the
/// temporary folder, named `.<target>.partial-<pid>`).
///
/// # Errors
/// Everything [`verify_chain`] reports; [`BackupError::TargetNotEmpty`]; what `before_write`
/// answers; I/O and store errors.
pub fn restore(
    backups: &[PathBuf],
    target: &Path,
    signing_key: Option<&Path>,
    trusted: Option<&PublicKey>,
    before_write: &mut dyn FnMut(&ChainReport) -> Result<(), BackupError>,
    after_write: &mut dyn FnMut(&Path) -> Result<(), BackupError>,
    progress: &mut dyn FnMut(&'static str, Seq),
) -> Result<ChainReport, BackupError> {
    let chain = verify_chain(backups, trusted, &mut |seq| progress("verify", seq))?;
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::TargetNotEmpty { path: target.to_owned() });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::Io { path: target.to_owned(), source: e }),
    }
    let key = match signing_key {
        Some(file) => {
            // Checked before anything is written: it must be the key that signed the backups.
            let key = checkpoint::CheckpointKey::read(file)?;
            if key.public().to_hex() != chain.public_key {
                return Err(BackupError::Field {
                    file: file.to_owned(),
                    field: "checkpoint signing key".into(),
                    problem: "it is not the key that signed these backups' checkpoints".into(),
                });
            }
            Some(key)
        }
        None => None,
    };
    let mut chain = chain;
    if let Some(newer) = newer_key_journal(&chain)? {
        chain.key_journal = Some(newer);
    }
    before_write(&chain)?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().ok_or_else(|| BackupError::TargetNotEmpty { path: target.to_owned() })?;
    let temporary = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    if let Err(e) = restore_into(&chain, &temporary, key.as_ref(), progress).and_then(|()| after_write(&temporary)) {
        let _ = std::fs::remove_dir_all(&temporary);
        return Err(e);
    }
    // An empty `target` is replaced by the rename (rename(2) over an empty directory).
    std::fs::rename(&temporary, target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&temporary);
        BackupError::Io { path: target.to_owned(), source: e }
    })?;
    sync_dir(parent)?;
    Ok(chain)
}

/// The key journal of the newest backup of the same store, signed by the same key, that lies
/// beside the chain's backups and ends after the chain (its manifest's signature and the
/// journal's BLAKE3 checked). Restoring a point in time before an erasure then takes the keys
/// as they are after it: data erased since stays erased, while every key the older records
/// need is still there (keys are only ever destroyed by an erasure).
fn newer_key_journal(chain: &ChainReport) -> Result<Option<PathBuf>, BackupError> {
    let Some(first) = chain.manifests.first() else { return Ok(None) };
    let Some(public) = PublicKey::from_hex(&chain.public_key) else { return Ok(None) };
    let mut folders: Vec<PathBuf> = chain.backups.iter().filter_map(|b| b.parent().map(Path::to_path_buf)).collect();
    folders.sort();
    folders.dedup();
    let mut candidates: Vec<(PathBuf, Manifest)> = Vec::new();
    for folder in folders {
        let folder = if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder };
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let dir = entry.path();
            let manifest = match Manifest::read(&dir) {
                Ok(manifest) => manifest,
                // A folder with a backup's files but no readable manifest may be a newer backup
                // of this store: skipping it could bring back data erased since.
                Err(e) if !chain.backups.contains(&dir) && (dir.join(KEYS).exists() || dir.join(EVENTS).exists()) => {
                    return Err(BackupError::Field {
                        file: dir.join(MANIFEST),
                        field: "manifest".into(),
                        problem: format!(
                            "a folder beside the chain holds a backup's files but its manifest cannot be read ({e}); \
                             it may be a newer backup of this store, whose key journal keeps erasures made since: \
                             repair it, or move it away"
                        ),
                    });
                }
                Err(_) => continue,
            };
            let signed = checkpoint::decode_hex::<64>(&manifest.signature)
                .is_some_and(|signature| public.verifies(&manifest.signed_bytes(), &signature));
            let journal = dir.join(KEYS);
            if chain.backups.contains(&dir) {
                continue;
            }
            let found = if journal.exists() { blake3_file(&journal).ok().map(|h| h.to_hex()) } else { None };
            let intact = found == manifest.keys_blake3;
            // One that names this store's key but whose signature does not check out was
            // altered (its other fields, `store` included, cannot be trusted): never skipped.
            let altered = manifest.public_key.eq_ignore_ascii_case(&chain.public_key) && !signed;
            if !altered && (manifest.store != first.store || manifest.last_seq <= chain.head.seq.0) {
                continue;
            }
            if !(signed && intact) {
                // Skipping it would restore keys from before whatever it records: anyone who
                // damages one byte of a newer backup could undo an erasure.
                return Err(BackupError::Field {
                    file: dir.join(if signed { KEYS } else { MANIFEST }),
                    field: if signed { "keys_blake3".into() } else { "signature".into() },
                    problem: "a newer backup of this store lies beside the chain, and its key journal (which keeps \
                              erasures made since) cannot be trusted: repair it, or move it away to restore the \
                              keys as the chain has them"
                        .into(),
                });
            }
            candidates.push((dir, manifest));
        }
    }
    // Only a backup that continues the restored chain (not one of a fork from an older point,
    // whose journal lacks this history's erasures) gives its journal.
    let all: Vec<(PathBuf, Manifest)> =
        chain.backups.iter().cloned().zip(chain.manifests.iter().cloned()).chain(candidates.iter().cloned()).collect();
    let mut line: Vec<&(PathBuf, Manifest)> = candidates
        .iter()
        .filter(|(dir, manifest)| manifest.keys_blake3.is_some() && descends_from(dir, manifest, chain.head, &all))
        .collect();
    line.sort_by_key(|(_, m)| m.last_seq);
    // They must continue it along one line: two that branch apart (a copy restored from an
    // older point and written to, beside the original's later backups) are two histories, and
    // which one's erasures count is for the operator to say.
    for pair in line.windows(2) {
        let ((older_dir, older), (newer_dir, newer)) = (pair[0], pair[1]);
        if !descends_from(newer_dir, newer, older.head(), &all) {
            return Err(BackupError::Field {
                file: newer_dir.join(MANIFEST),
                field: "previous".into(),
                problem: format!(
                    "it and {} both continue the restored chain, in two different ways (a fork): move away the \
                     backups that are not this store's history",
                    older_dir.display()
                ),
            });
        }
    }
    Ok(line.last().map(|(dir, _)| dir.join(KEYS)))
}

/// Whether the history of backup `dir` contains `head`: following `previous` links through
/// `all` to a backup that ends at `head`, or to one that holds `head.seq` with `head.hash`
/// (read from its records).
fn descends_from(dir: &Path, manifest: &Manifest, head: Head, all: &[(PathBuf, Manifest)]) -> bool {
    let (mut dir, mut manifest) = (dir.to_path_buf(), manifest.clone());
    for _ in 0..=all.len() {
        if manifest.head() == head {
            return true;
        }
        if (manifest.first_seq..=manifest.last_seq).contains(&head.seq.0) {
            return record_hash_in(&dir.join(EVENTS), head.seq) == Some(head.hash);
        }
        let Some(link) = manifest.previous else { return false };
        let Some((d, m)) = all.iter().find(|(_, m)| m.head() == Head { seq: Seq(link.seq), hash: link.hash }) else {
            return false;
        };
        (dir, manifest) = (d.clone(), m.clone());
    }
    false
}

/// The hash of record `seq` in an events file, if it holds it.
fn record_hash_in(events: &Path, seq: Seq) -> Option<Hash32> {
    let file = File::open(events).ok()?;
    BufReader::new(file).lines().map_while(Result::ok).find_map(|line| {
        let record = export::record_of_line(seq, &line).ok()?;
        (record.seq == seq).then_some(record.hash)
    })
}

/// Writes everything of a restore into the new folder `dir`.
fn restore_into(
    chain: &ChainReport,
    dir: &Path,
    key: Option<&checkpoint::CheckpointKey>,
    progress: &mut dyn FnMut(&'static str, Seq),
) -> Result<(), BackupError> {
    std::fs::create_dir(dir).map_err(io(dir))?;
    let key = match key {
        Some(key) => {
            let copy = dir.join(checkpoint::KEY_FILE_NAME);
            let seed = key.seed_hex();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&copy).map_err(io(&copy))?;
            file.write_all(format!("{seed}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(io(&copy))?;
            checkpoint::CheckpointKey::read(&copy)?
        }
        None => checkpoint::CheckpointKey::load_or_create(dir)?.0,
    };
    let lines = BackupLines::new(chain.backups.iter().map(|dir| dir.join(EVENTS)).collect());
    let head = SledStore::restore_log(&SledConfig::new(dir), lines, &mut |seq| progress("restore", seq))?;
    for manifest in &chain.manifests {
        let signed = Checkpoint::from_line(&manifest.checkpoint).map_err(|problem| BackupError::Field {
            file: PathBuf::from(MANIFEST),
            field: "checkpoint".into(),
            problem,
        })?;
        checkpoint::keep(dir, &signed)?;
    }
    // The backups' checkpoints are kept under their own key: record that the folder trusts it.
    if key.public().to_hex() != chain.public_key {
        if let Some(public) = PublicKey::from_hex(&chain.public_key) {
            checkpoint::trust_key(dir, &public.key_id())?;
        }
    }
    // The restored log's latest checkpoint, signed by the folder's own key: the store checks
    // the log against it on open.
    checkpoint::write(dir, &Checkpoint::sign(head, chain.merkle_root, Timestamp::now(), &key))?;
    let keys_source = chain.key_journal.as_ref();
    if let Some(source) = keys_source {
        let keys = dir.join(KEY_DIR);
        std::fs::create_dir_all(&keys).map_err(io(&keys))?;
        let journal = keys.join(JOURNAL);
        std::fs::copy(source, &journal).map_err(io(source))?;
        File::open(&journal).and_then(|f| f.sync_all()).map_err(io(&journal))?;
        sync_dir(&keys)?;
    }
    sync_dir(dir)?;
    Ok(())
}

/// The records of verified events files, read again in order for the restore.
struct BackupLines {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, std::io::Lines<BufReader<File>>)>,
    expected: Seq,
    failed: bool,
}

impl BackupLines {
    fn new(files: Vec<PathBuf>) -> BackupLines {
        BackupLines { files: files.into_iter(), current: None, expected: Seq::FIRST, failed: false }
    }

    fn fail(&mut self, error: Error) -> Option<crate::error::Result<Record>> {
        self.failed = true;
        Some(Err(error))
    }
}

impl Iterator for BackupLines {
    type Item = crate::error::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let Some((path, lines)) = &mut self.current else {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(file) => self.current = Some((path, BufReader::new(file).lines())),
                    Err(e) => return self.fail(Error::io(&path, e)),
                }
                continue;
            };
            match lines.next() {
                None => self.current = None,
                Some(Err(e)) => {
                    let error = Error::io(&*path, e);
                    return self.fail(error);
                }
                Some(Ok(line)) => {
                    let record = export::record_of_line(self.expected, &line);
                    self.expected = self.expected.next();
                    return Some(record);
                }
            }
        }
    }
}
