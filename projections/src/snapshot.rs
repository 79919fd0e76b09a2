//! The views' snapshot: every view written to one sealed file beside the log, so that a start
//! reads it and replays only the records after it instead of the whole log.
//!
//! The file (`views.snapshot` in the data folder), integers little-endian:
//!
//! | part | bytes |
//! |---|---|
//! | magic | `OACIS VIEWS SNAPSHOT 1\n` |
//! | build | BLAKE3 of the running executable (32) |
//! | seq | the last seq the views applied (u64) |
//! | hash | that record's hash (32) |
//! | key | the id of the data key that seals it (16) |
//! | salt | 16 random bytes |
//! | 2 sections | the customer directory, then every other view (postcard, serde's data model): plain length (u64), then chunks of at most 1 MiB each sealed with AES-256-GCM-SIV (RFC 8452): sealed length (u32), sealed bytes |
//!
//! A chunk's nonce is its section, its index and whether it is the section's last; its
//! associated data is the whole header (magic to salt). So chunks cannot be reordered,
//! dropped, cut short or moved between snapshots without failing to open.
//!
//! Invariants:
//! - The views hold personal data in the clear, so the file is sealed with the key store's
//!   snapshot key (`KeyStore::snapshot_key`), which every erasure destroys: a snapshot written
//!   before an erasure never opens after it, and one written after holds the erased data
//!   no more (the views forget it when they apply the erasure, which precedes the write).
//!   A KEK rotation rewraps it like every key.
//! - Only the build that wrote a snapshot reads it: another build's views may fold the same
//!   records differently (a fixed bug, a new field), and its hashes of duplicate keys may
//!   differ. Any other build replays the log, and writes its own snapshot when it stops.
//! - A snapshot is a shortcut, never a source of truth: one that is missing, of another
//!   build, ahead of the log, about another record at its seq, or that does not open is set
//!   aside with a warning, and the views are replayed from the log. The log is append-only,
//!   so views that applied the records up to a seq whose hash matches are exactly the views
//!   of that log up to that seq.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oacis_eventlog::keys::{DataKey, KeyId, KeyState, SIV_NONCE};
use oacis_eventlog::{EventStore, Hash32, Seq};

use crate::engine::Views;
use crate::error::ProjectionError;
use crate::views::directory::CustomerDirectory;

/// The snapshot's file name in a data folder (it ends in `.snapshot`, which copies made for
/// checks leave out).
pub const FILE_NAME: &str = "views.snapshot";

const MAGIC: &[u8] = b"OACIS VIEWS SNAPSHOT 1\n";

/// Bytes of a header: magic, build, seq, hash, key id, salt.
const HEADER: usize = MAGIC.len() + 32 + 8 + 32 + 16 + 16;

/// Plain bytes per sealed chunk.
const CHUNK: usize = 1 << 20;

/// AES-GCM-SIV's tag.
const TAG: usize = 16;

/// The snapshot's path in the data folder `dir`.
#[must_use]
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// BLAKE3 of the running executable, read once; `None` if it cannot be read (then no
/// snapshot is written or read).
fn build_id() -> Option<[u8; 32]> {
    static BUILD: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    *BUILD.get_or_init(|| {
        let exe = std::env::current_exe().ok()?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(exe).ok()?).ok()?;
        Some(*hasher.finalize().as_bytes())
    })
}

/// Starts computing the build id on a thread of its own, so that a start that reads a
/// snapshot later finds it ready (hashing the executable takes a tenth of a second or more).
pub fn prepare() {
    let _ = std::thread::Builder::new().name("oacis-build-id".into()).spawn(build_id);
}

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The last seq its views applied.
    pub seq: Seq,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The views encoded, before they are sealed: the seq they applied and both sections.
#[derive(Debug)]
pub struct Encoded {
    seq: Seq,
    directory: Vec<u8>,
    others: Vec<u8>,
}

impl Encoded {
    /// Encodes `views` (the directory and the rest on two threads).
    ///
    /// # Errors
    /// [`ProjectionError::Snapshot`] if a view does not encode.
    pub fn of(views: &Views) -> Result<Encoded, ProjectionError> {
        let (directory, others) = std::thread::scope(|scope| {
            let directory = scope.spawn(|| encode(&views.directory));
            (directory.join(), encode(views))
        });
        let directory =
            directory.map_err(|_| ProjectionError::Snapshot("the directory's encoding panicked".into()))??;
        Ok(Encoded { seq: views.applied(), directory, others: others? })
    }
}

/// One section's plain bytes.
fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ProjectionError> {
    postcard::to_allocvec(value).map_err(|e| ProjectionError::Snapshot(format!("encoding: {e}")))
}

/// Writes `encoded` views, whose last record's hash is `hash`, sealed with `key` (the key
/// store's snapshot key, id `key_id`), to `path` through a temporary file beside it,
/// fsynced and renamed over the old one.
///
/// # Errors
/// [`ProjectionError::Snapshot`] when the executable cannot be read (no build id) or on I/O.
pub fn write(
    encoded: &Encoded,
    hash: Hash32,
    key_id: &KeyId,
    key: &DataKey,
    path: &Path,
) -> Result<Written, ProjectionError> {
    let failed = |what: String| ProjectionError::Snapshot(what);
    let build = build_id().ok_or_else(|| failed("the running executable cannot be read".into()))?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| failed(format!("no random bytes: {e}")))?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&build);
    header.extend_from_slice(&encoded.seq.0.to_le_bytes());
    header.extend_from_slice(&hash.0);
    header.extend_from_slice(key_id);
    header.extend_from_slice(&salt);
    // The two sections are sealed on two threads.
    let (directory, others) = std::thread::scope(|scope| {
        let directory = scope.spawn(|| seal_section(0, &encoded.directory, key, &header));
        (directory.join(), seal_section(1, &encoded.others, key, &header))
    });
    let directory = directory.map_err(|_| failed("sealing the directory panicked".into()))?;
    let temp = path.with_extension("snapshot.new");
    let io = |e: std::io::Error| failed(format!("{}: {e}", temp.display()));
    let mut file = std::io::BufWriter::new(oacis_eventlog::files::create_fresh(&temp).map_err(io)?);
    file.write_all(&header).map_err(io)?;
    file.write_all(&directory).map_err(io)?;
    file.write_all(&others).map_err(io)?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_data().map_err(io)?;
    std::fs::rename(&temp, path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    }
    let bytes = (header.len() + directory.len() + others.len()) as u64;
    Ok(Written { seq: encoded.seq, bytes })
}

/// One section: the plain length, then the chunks of `plain` sealed.
fn seal_section(index: u8, plain: &[u8], key: &DataKey, header: &[u8]) -> Vec<u8> {
    let chunks = plain.len().div_ceil(CHUNK).max(1);
    let mut out = Vec::with_capacity(8 + plain.len() + chunks * (4 + TAG));
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    for (i, chunk) in plain.chunks(CHUNK).chain(plain.is_empty().then_some(&[][..])).enumerate() {
        let sealed = key.seal(&nonce(index, i, i + 1 == chunks), header, chunk);
        out.extend_from_slice(&u32::try_from(sealed.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&sealed);
    }
    out
}

/// A chunk's nonce: section, index, last-chunk flag.
fn nonce(section: u8, index: usize, last: bool) -> [u8; SIV_NONCE] {
    let mut nonce = [0u8; SIV_NONCE];
    nonce[0] = section;
    nonce[1] = u8::from(last);
    nonce[2..10].copy_from_slice(&(index as u64).to_le_bytes());
    nonce
}

/// Why a snapshot was set aside.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// There is none.
    #[error("there is none")]
    Missing,
    /// Another build wrote it.
    #[error("another build of the server wrote it")]
    OtherBuild,
    /// Its key was destroyed (an erasure since it was written) or is unknown to this key
    /// store (another data folder's snapshot).
    #[error("its key is not in this key store (destroyed by an erasure since it was written, or another folder's)")]
    KeyGone,
    /// Its views are of another log, or of records this log no longer has.
    #[error("it is not of this log: {0}")]
    OtherLog(String),
    /// It cannot be read, or does not open.
    #[error("{0}")]
    Damaged(String),
}

/// Reads the snapshot at `path` for the log of `store` and answers its views, if it was
/// written by this build, matches the log (the record at its seq has its hash) and opens
/// with the store's key store.
///
/// # Errors
/// [`Unusable`], saying why it was set aside.
pub async fn read<S: EventStore>(path: &Path, store: &S) -> Result<Views, Unusable> {
    let keys = store.keys().ok_or(Unusable::KeyGone)?;
    Reading::begin(path)?.unlock(|id| keys.get(id))?.finish(store).await
}

/// A snapshot being read: the file read on a thread of its own from [`Reading::begin`] on,
/// then opened and decoded there once [`Reading::unlock`] hands it its key, so that a server
/// opens its key store and its store meanwhile; [`Reading::finish`] then checks the snapshot
/// against that store's log.
#[derive(Debug)]
pub struct Reading {
    header: Vec<u8>,
    seq: Seq,
    hash: Hash32,
    key: std::sync::mpsc::Sender<DataKey>,
    decoding: std::thread::JoinHandle<Result<Views, Unusable>>,
}

impl Reading {
    /// Reads the header of the snapshot at `path` and starts reading the rest.
    ///
    /// # Errors
    /// [`Unusable`]: missing, or not a snapshot of this format.
    pub fn begin(path: &Path) -> Result<Reading, Unusable> {
        use std::io::Read as _;
        let damaged = |what: &str| Unusable::Damaged(what.to_owned());
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Damaged(format!("unreadable: {e}"))),
        };
        let mut header = vec![0u8; HEADER];
        file.read_exact(&mut header).map_err(|_| damaged("not a views snapshot of this format"))?;
        if !header.starts_with(MAGIC) {
            return Err(damaged("not a views snapshot of this format"));
        }
        let at = MAGIC.len() + 32;
        let seq = Seq(u64::from_le_bytes(header[at..at + 8].try_into().map_err(|_| damaged("seq"))?));
        let hash = Hash32(header[at + 8..at + 40].try_into().map_err(|_| damaged("hash"))?);
        let (key, unlocked) = std::sync::mpsc::channel::<DataKey>();
        let sealed_under = header.clone();
        let decoding = std::thread::Builder::new()
            .name("oacis-snapshot".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| Unusable::Damaged(format!("unreadable: {e}")))?;
                let read_s = started.elapsed().as_secs_f64();
                // No key: the snapshot was set aside before it was opened.
                let key = unlocked.recv().map_err(|_| Unusable::KeyGone)?;
                decode_body(bytes, read_s, &sealed_under, &key)
            })
            .map_err(|e| Unusable::Damaged(format!("no thread to read it on: {e}")))?;
        Ok(Reading { header, seq, hash, key, decoding })
    }

    /// Lets the reading go on with its key, if this build wrote it and `key_of` (the key
    /// store's `get`, or `KeyStore::peek` before the key store is open) still has the key
    /// that seals it.
    ///
    /// # Errors
    /// [`Unusable::OtherBuild`], [`Unusable::KeyGone`].
    pub fn unlock(self, key_of: impl FnOnce(&KeyId) -> KeyState) -> Result<Reading, Unusable> {
        let field = |at: usize, len: usize| &self.header[MAGIC.len() + at..MAGIC.len() + at + len];
        if Some(field(0, 32)) != build_id().as_ref().map(|b| &b[..]) {
            return Err(Unusable::OtherBuild);
        }
        let key_id: KeyId = field(72, 16).try_into().map_err(|_| Unusable::Damaged("key id".into()))?;
        let KeyState::Present(key) = key_of(&key_id) else { return Err(Unusable::KeyGone) };
        self.key.send(key).map_err(|_| Unusable::Damaged("its reading stopped".into()))?;
        Ok(self)
    }

    /// The views, once read, if the snapshot is of `store`'s log: its seq is at most the
    /// log's head and the record there has its hash.
    ///
    /// # Errors
    /// [`Unusable::OtherLog`], or what reading it found.
    pub async fn finish<S: EventStore>(self, store: &S) -> Result<Views, Unusable> {
        let Reading { seq, hash, decoding, .. } = self;
        let of_this_log = async {
            if seq > store.head().seq {
                return Err(Unusable::OtherLog(format!("it is at seq {seq}, the log ends at {}", store.head().seq)));
            }
            if seq > Seq::ZERO {
                let record = store.read_all(seq, 1).await.map_err(|e| Unusable::Damaged(e.to_string()))?;
                if record.first().map(|r| r.hash) != Some(hash) {
                    return Err(Unusable::OtherLog(format!("the log's record at seq {seq} has another hash")));
                }
            }
            Ok(())
        }
        .await;
        let views = tokio::task::spawn_blocking(move || decoding.join())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| Unusable::Damaged("the snapshot's reading panicked".into()))??;
        of_this_log?;
        if views.applied() != seq {
            return Err(Unusable::Damaged("its views and its header name different seqs".into()));
        }
        Ok(views)
    }
}

/// Opens the rest of the file (after the header, read in `read_s` seconds): every chunk of
/// both sections in place on two threads (half of the bytes each), then moves each section's plain bytes
/// together and decodes the two sections on two threads (the directory on its own).
fn decode_body(mut bytes: Vec<u8>, read_s: f64, header: &[u8], key: &DataKey) -> Result<Views, Unusable> {
    let panicked = |what: &str| Unusable::Damaged(format!("{what} panicked"));
    let first_len = section_len(&bytes)?;
    if section_len(&bytes[first_len..])? != bytes.len() - first_len {
        return Err(Unusable::Damaged("bytes after the last section".into()));
    }
    let started = std::time::Instant::now();
    {
        let (first, rest) = bytes.split_at_mut(first_len);
        let mut sealed = sealed_chunks(0, first)?;
        sealed.extend(sealed_chunks(1, rest)?);
        let total: usize = sealed.iter().map(|c| c.0.len()).sum();
        let mut so_far = 0;
        let split = sealed
            .iter()
            .position(|c| {
                so_far += c.0.len();
                so_far >= total / 2
            })
            .unwrap_or(0);
        let (early, late) = sealed.split_at_mut(split);
        std::thread::scope(|scope| {
            let early = scope.spawn(|| open_chunks(early, key, header));
            let late = open_chunks(late, key, header);
            early.join().map_err(|_| panicked("opening the snapshot"))?.and(late)
        })?;
    }
    let open_s = started.elapsed().as_secs_f64();
    let (first, rest) = bytes.split_at_mut(first_len);
    std::thread::scope(|scope| {
        let directory = scope.spawn(|| decode_section::<CustomerDirectory>(first));
        let others = decode_section::<Views>(rest);
        let (directory, directory_decode_s) = directory.join().map_err(|_| panicked("decoding the directory"))??;
        let (mut views, others_decode_s) = others?;
        tracing::info!(read_s, open_s, directory_decode_s, others_decode_s, "views snapshot read");
        views.directory = directory;
        Ok(views)
    })
}

/// A chunk's sealed bytes (its tag last), in the file's buffer, and its nonce.
type SealedChunk<'a> = (&'a mut [u8], [u8; SIV_NONCE]);

/// A section's sealed chunks, each with its nonce, in order (lengths checked against the
/// section's plain length).
fn sealed_chunks(index: u8, bytes: &mut [u8]) -> Result<Vec<SealedChunk<'_>>, Unusable> {
    let bad = |what: String| Unusable::Damaged(what);
    let plain_len = plain_len(bytes)?;
    let count = plain_len.div_ceil(CHUNK).max(1);
    let mut chunks = Vec::with_capacity(count);
    let mut rest = bytes.get_mut(8..).ok_or_else(|| bad("cut short".into()))?;
    let mut total = 0;
    for i in 0..count {
        let (len, after) = rest.split_at_mut(4.min(rest.len()));
        let len = u32::from_le_bytes((&*len).try_into().map_err(|_| bad("cut short".into()))?) as usize;
        if len < TAG || len > after.len() {
            return Err(bad(format!("section {index}, chunk {i} is cut short")));
        }
        let (sealed, after) = after.split_at_mut(len);
        total += len - TAG;
        chunks.push((sealed, nonce(index, i, i + 1 == count)));
        rest = after;
    }
    if total != plain_len {
        return Err(bad(format!("section {index} holds {total} bytes, not {plain_len}")));
    }
    Ok(chunks)
}

/// Opens chunks in place (each chunk's tag is its last 16 bytes).
fn open_chunks(chunks: &mut [SealedChunk<'_>], key: &DataKey, header: &[u8]) -> Result<(), Unusable> {
    for (sealed, nonce) in chunks.iter_mut() {
        let body_len = sealed.len() - TAG;
        let (body, tag) = sealed.split_at_mut(body_len);
        if !key.open_in_place(nonce, header, body, tag) {
            return Err(Unusable::Damaged(format!("section {}, chunk {} does not open", nonce[0], chunk_index(nonce))));
        }
    }
    Ok(())
}

/// The chunk index a nonce names.
fn chunk_index(nonce: &[u8; SIV_NONCE]) -> u64 {
    let mut index = [0u8; 8];
    index.copy_from_slice(&nonce[2..10]);
    u64::from_le_bytes(index)
}

/// The stored length of the section at the front of `bytes` (its plain length, then each
/// chunk's length and sealed bytes).
fn section_len(bytes: &[u8]) -> Result<usize, Unusable> {
    let cut = || Unusable::Damaged("cut short".into());
    let chunks = plain_len(bytes)?.div_ceil(CHUNK).max(1);
    let mut at = 8usize;
    for _ in 0..chunks {
        let len = u32::from_le_bytes(bytes.get(at..at + 4).ok_or_else(cut)?.try_into().map_err(|_| cut())?) as usize;
        at = at.checked_add(4 + len).ok_or_else(cut)?;
    }
    if at > bytes.len() {
        return Err(cut());
    }
    Ok(at)
}

/// A section's plain length (its first 8 bytes).
fn plain_len(bytes: &[u8]) -> Result<usize, Unusable> {
    let cut = || Unusable::Damaged("cut short".into());
    usize::try_from(u64::from_le_bytes(bytes.get(..8).ok_or_else(cut)?.try_into().map_err(|_| cut())?))
        .map_err(|_| cut())
}

/// Moves an opened section's plain bytes together at its front (each chunk drops its length
/// and tag, so the write position stays behind the read position) and decodes them.
/// Answers the value and the seconds it took.
fn decode_section<T: serde::de::DeserializeOwned>(bytes: &mut [u8]) -> Result<(T, f64), Unusable> {
    let started = std::time::Instant::now();
    let plain_len = plain_len(bytes)?;
    let cut = || Unusable::Damaged("cut short".into());
    let (mut at, mut to) = (8, 0);
    for _ in 0..plain_len.div_ceil(CHUNK).max(1) {
        let len = u32::from_le_bytes(bytes.get(at..at + 4).ok_or_else(cut)?.try_into().map_err(|_| cut())?) as usize;
        let body = len.checked_sub(TAG).ok_or_else(cut)?;
        bytes.copy_within(at + 4..at + 4 + body, to);
        to += body;
        at += 4 + len;
    }
    let value =
        postcard::from_bytes(&bytes[..plain_len]).map_err(|e| Unusable::Damaged(format!("it does not decode: {e}")))?;
    Ok((value, started.elapsed().as_secs_f64()))
}

/// Writes the views of `projections` to `path`, sealed with the key store's snapshot key,
/// once they have applied every record up to the log's head. The key is taken before the
/// views are read, so an erasure after that destroys it and the file never opens; an erasure
/// before is in the views already (its record precedes the head waited for). The views are
/// encoded under their read lock (the follower waits meanwhile), then sealed and written
/// without it.
///
/// # Errors
/// [`ProjectionError::Snapshot`] without a key store, or when the key store or the file
/// cannot be written; [`ProjectionError::Store`] reading the record at the views' seq.
pub async fn save<S: EventStore>(
    projections: &crate::engine::Projections,
    store: &S,
    path: &Path,
) -> Result<Written, ProjectionError> {
    let panicked = |what: &str| ProjectionError::Snapshot(format!("{what} panicked"));
    let keys = store.keys().cloned().ok_or_else(|| ProjectionError::Snapshot("the store has no key store".into()))?;
    let (key_id, key) = tokio::task::spawn_blocking(move || keys.snapshot_key())
        .await
        .map_err(|_| panicked("taking the snapshot key"))?
        .map_err(|e| ProjectionError::Snapshot(e.to_string()))?;
    projections.wait_for(store.head().seq).await?;
    let shared = projections.shared();
    let encoded = tokio::task::spawn_blocking(move || {
        let views = shared.read().map_err(|_| ProjectionError::Snapshot("the views' lock is poisoned".into()))?;
        Encoded::of(&views)
    })
    .await
    .map_err(|_| panicked("encoding the views"))??;
    let hash = match encoded.seq {
        Seq::ZERO => Hash32::GENESIS,
        seq => store.read_all(seq, 1).await?.first().map(|r| r.hash).ok_or(ProjectionError::Stopped(seq))?,
    };
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || write(&encoded, hash, &key_id, &key, &path))
        .await
        .map_err(|_| panicked("writing the snapshot"))?
}

/// A value kept as JSON bytes inside the snapshot's binary encoding: for types whose serde
/// shapes need a self-describing format (internally tagged enums, flattened maps, fields left
/// out when empty), as the domain's approval types have, being made for event payloads.
pub(crate) mod as_json {
    pub(crate) fn serialize<T: serde::Serialize, S: serde::Serializer>(value: &T, to: S) -> Result<S::Ok, S::Error> {
        let json = serde_json::to_vec(value).map_err(serde::ser::Error::custom)?;
        to.serialize_bytes(&json)
    }

    pub(crate) fn deserialize<'de, T: serde::de::DeserializeOwned, D: serde::Deserializer<'de>>(
        from: D,
    ) -> Result<T, D::Error> {
        let json: std::borrow::Cow<'de, [u8]> = serde::Deserialize::deserialize(from)?;
        serde_json::from_slice(&json).map_err(serde::de::Error::custom)
    }
}

/// An event kind's name as the views keep it (the domain's own `&'static str`). An alias, not
/// a reference in the field's type, so that serde does not try to borrow it from the
/// snapshot's bytes: [`kind_name`] reads it back as the domain's name.
pub type KindName = &'static str;

/// The `&'static str` event kind names the views keep, written as text and read back as the
/// domain's own name for the kind (`DomainEvent::KINDS`).
pub(crate) mod kind_name {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use oacis_domain::event::DomainEvent;

    fn known() -> &'static HashMap<&'static str, &'static str> {
        static KNOWN: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
        KNOWN.get_or_init(|| {
            use oacis_domain::{access, access_log, approval, case, customer, department, import, task, user};
            let lists: [&[(&'static str, u32)]; 14] = [
                customer::CustomerEvent::KINDS,
                case::CaseEvent::KINDS,
                task::TaskEvent::KINDS,
                user::UserEvent::KINDS,
                department::DepartmentEvent::KINDS,
                access::RoleEvent::KINDS,
                access::GrantEvent::KINDS,
                access::ReservationEvent::KINDS,
                access_log::AccessLogEvent::KINDS,
                import::ImportEvent::KINDS,
                approval::definition::DefinitionEvent::KINDS,
                approval::instance::ApprovalEvent::KINDS,
                approval::calendar::CalendarEvent::KINDS,
                approval::ledger::LedgerEvent::KINDS,
            ];
            lists.iter().flat_map(|l| l.iter()).map(|(name, _)| (*name, *name)).collect()
        })
    }

    pub(crate) fn serialize<S: serde::Serializer>(kind: &&'static str, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(kind)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(from: D) -> Result<&'static str, D::Error> {
        let name: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(from)?;
        known().get(&*name).copied().ok_or_else(|| serde::de::Error::custom(format!("unknown event kind {name}")))
    }
}
