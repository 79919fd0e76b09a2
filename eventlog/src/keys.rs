//! The key store: data keys kept outside the log, so that destroying the keys of a subject
//! (the stream whose events carry its personal data) erases that subject's personal data
//! everywhere at once (crypto-shredding) while every record, hash and export stays as it was.
//!
//! Data keys are 32 random bytes with a random 16-byte id, stored only wrapped by the
//! operator's key-encryption key (KEK) with AES-256-GCM-SIV (RFC 8452, RustCrypto's
//! `aes-gcm-siv`), the key id as associated data and its first 12 bytes as the nonce. Keys
//! wrapped by the first format (XChaCha20-Poly1305 with a random nonce, tag 1) still open;
//! rotation rewraps them the new way. Every sealed value in the log names the id of
//! the key that sealed it, so the log itself records which keys a subject's records use. The
//! store is one journal file, `<data>/keys/journal`, beside (never inside) the log's sled
//! database:
//!
//! ```text
//! record  = tag u8 | key id [16] | subject length u16 LE | subject UTF-8
//!           | (tag 5) KEK id [8] | wrapped key [48]
//!           | (tag 1) KEK id [8] | nonce [24] | wrapped key [48]
//!           | check [8] = first 8 bytes of BLAKE3(everything before it in the record)
//! tag     = 5 key (no subject) | 2 subject erased (no key id) | 3 key given to subject
//!           | 4 key destroyed (no subject) | 1 key of the first format (read only)
//! ```
//!
//! Invariants:
//! - Keys are made durable in batches (journal write, then fdatasync) before any of them is
//!   handed out ([`KeyStore::reserve`]), so an append never waits for the key store's disk,
//!   and no acknowledged record's key can be lost by a crash.
//! - A key is given to one subject only. Which subject got it ("given" records) is written
//!   without waiting for the disk: it is a hint for later appends, and the log's own records
//!   name their keys. Keys not given out when the store opens are never handed out (they
//!   may have been used by a record whose "given" record was lost).
//! - A torn last record (a crash during its write) is cut off on open; a damaged record
//!   followed by others is reported, never skipped.
//! - Erasure destroys every key a subject's records name, and rewrites the whole journal
//!   without them (temporary file, fdatasync, rename, folder fsync), so their wrapped bytes
//!   are in no file of the data folder afterwards; the subject stays marked erased, and no
//!   key is given to it again.
//! - Rotation rewraps every key under a new KEK with the same atomic rewrite; the log is not
//!   touched.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use aes_gcm_siv::aead::AeadInPlace;
use aes_gcm_siv::{Aes256GcmSiv, Nonce as SivNonce};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Bytes of a data key and of a KEK.
pub const KEY_BYTES: usize = 32;
const NONCE: usize = 24;
const WRAPPED: usize = KEY_BYTES + 16;
const CHECK: usize = 8;
const TAG_KEY: u8 = 1;
const TAG_ERASED: u8 = 2;
const TAG_GIVEN: u8 = 3;
const TAG_DESTROYED: u8 = 4;
const TAG_KEY_SIV: u8 = 5;
/// Keys made durable at a time.
pub const KEY_BATCH: usize = 2048;

/// A data key's id: 16 random bytes, named (as 32 hex digits) by every value it sealed.
pub type KeyId = [u8; 16];

/// The subject the views' snapshot key is given to ([`KeyStore::snapshot_key`]): it holds a
/// space, which no stream id does, so no record's subject is ever this.
pub const SNAPSHOT_SUBJECT: &str = "views snapshot";
/// The journal's file name inside the key folder.
pub const JOURNAL: &str = "journal";
/// The key folder's name inside the data folder.
pub const KEY_DIR: &str = "keys";
const WRAP_CONTEXT: &[u8] = b"oacis data key v1\0";
const WRAP_CONTEXT_SIV: &[u8] = b"oacis data key v2\0";

/// What went wrong with keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file of the key store or the KEK could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key (the KEK, or the checkpoint signing key) is not 32 bytes (64 hex digits in a file
    /// or variable).
    #[error("the key {origin} is not 64 hex digits (32 bytes)")]
    KekFormat {
        /// Where it came from.
        origin: String,
    },
    /// The journal's keys were wrapped by another KEK than the one given.
    #[error("the key store was wrapped by key-encryption key {stored}, not by the one given ({given}); start with the key it was written with, or rotate")]
    WrongKek {
        /// The id of the KEK the journal names.
        stored: String,
        /// The id of the KEK given.
        given: String,
    },
    /// A record of the journal is damaged (not a torn tail).
    #[error("the key journal {path} is damaged at byte {offset}: {reason}; restore it from a backup")]
    Damaged {
        /// The journal.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The subject's personal data was erased: no key is created for it again.
    #[error("the personal data of {subject} was erased")]
    Erased {
        /// The subject.
        subject: String,
    },
    /// The key store has no key for a subject whose records hold sealed personal data.
    #[error("the key store has no key for {subject}, whose records hold sealed personal data: the key store is older than the log, belongs to another store, or lost its last records (a damaged end of the journal is cut off on open, with a warning); restore the key store that goes with this log")]
    MissingKey {
        /// The subject.
        subject: String,
    },
    /// A record holds sealed personal data but no key store was given to open it.
    #[error("the record holds sealed personal data of {subject}, but no key store was given to open it")]
    NoKeyStore {
        /// The subject.
        subject: String,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A sealed value does not open with its subject's key (altered, moved to another record,
    /// or written under another key).
    #[error("sealed data of {subject} does not open: it was altered or moved from another record")]
    Tampered {
        /// The subject.
        subject: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_owned(), source }
}

/// The operator's key-encryption key.
#[derive(Clone)]
pub struct Kek {
    id: [u8; 8],
    /// Wraps new keys (tag 5 records).
    siv: Aes256GcmSiv,
    /// Unwraps keys of the first format (tag 1 records).
    xchacha: XChaCha20Poly1305,
    /// Keys digests of requests kept in the log ([`KeyStore::request_digest_key`]).
    request_digests: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id_hex())
    }
}

impl Kek {
    /// A KEK from its 32 bytes. Its id (named in errors and in the journal) is the first 8
    /// bytes of a BLAKE3 key derivation from it, which reveals nothing of the key.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Kek {
        let derived = blake3::derive_key("oacis key-encryption key id v1", bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&derived[..8]);
        Kek {
            id,
            siv: Aes256GcmSiv::new(bytes.into()),
            xchacha: XChaCha20Poly1305::new(bytes.into()),
            request_digests: blake3::derive_key("oacis request digest v1", bytes),
        }
    }

    /// A KEK from 64 hex digits (surrounding white space ignored).
    ///
    /// # Errors
    /// [`KeyError::KekFormat`] naming `origin`.
    pub fn from_hex(text: &str, origin: &str) -> Result<Kek, KeyError> {
        Ok(Kek::from_bytes(&parse_hex_key(text, origin)?))
    }

    /// The KEK in the file at `path`; if there is no such file, a new random KEK written there
    /// (owner-only permissions on Unix, fsynced). Answers whether it was created, so that the
    /// caller can warn the operator to keep it safe and apart from the data.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::KekFormat`], [`KeyError::Random`].
    pub fn load_or_create(path: &Path) -> Result<(Kek, bool), KeyError> {
        let (bytes, created) = secret_file(path)?;
        Ok((Kek::from_bytes(&bytes), created))
    }

    /// The id as 16 hex digits.
    #[must_use]
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `key` wrapped with AES-256-GCM-SIV (RFC 8452) under this KEK, with the key id as
    /// associated data and its first 12 bytes as the nonce (ids are random, so nonces do not
    /// repeat; GCM-SIV resists it if they did).
    fn wrap(&self, id: &KeyId, key: &[u8; KEY_BYTES]) -> Result<Wrapped, KeyError> {
        let aad = [WRAP_CONTEXT_SIV, id.as_slice()].concat();
        let sealed = self
            .siv
            .encrypt(SivNonce::from_slice(&id[..SIV_NONCE]), Payload { msg: key, aad: &aad })
            .map_err(|_| KeyError::Random("wrapping failed".into()))?;
        let mut wrapped = [0u8; WRAPPED];
        wrapped.copy_from_slice(&sealed);
        Ok(Wrapped::GcmSiv { sealed: wrapped })
    }

    fn unwrap_key(&self, id: &KeyId, wrapped: &Wrapped) -> Option<[u8; KEY_BYTES]> {
        let context = if wrapped.tag() == TAG_KEY_SIV { WRAP_CONTEXT_SIV } else { WRAP_CONTEXT };
        let aad = [context, id.as_slice()].concat();
        let key = match wrapped {
            Wrapped::GcmSiv { sealed } => {
                self.siv.decrypt(SivNonce::from_slice(&id[..SIV_NONCE]), Payload { msg: sealed, aad: &aad })
            }
            Wrapped::XChaCha { nonce, sealed } => {
                self.xchacha.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            }
        };
        key.ok()?.try_into().ok()
    }
}

/// A data key as the journal keeps it: wrapped by the KEK.
#[derive(Clone, Copy)]
enum Wrapped {
    /// Tag 5: AES-256-GCM-SIV, the nonce taken from the key id (not stored). Written now.
    GcmSiv {
        /// The wrapped key and its tag.
        sealed: [u8; WRAPPED],
    },
    /// Tag 1, the first format: XChaCha20-Poly1305 with a random nonce, stored. Read only
    /// (rotation rewraps these keys as tag 5).
    XChaCha {
        /// The nonce.
        nonce: [u8; NONCE],
        /// The wrapped key and its tag.
        sealed: [u8; WRAPPED],
    },
}

impl Wrapped {
    fn tag(&self) -> u8 {
        match self {
            Wrapped::GcmSiv { .. } => TAG_KEY_SIV,
            Wrapped::XChaCha { .. } => TAG_KEY,
        }
    }

    /// The bytes after the KEK id in the key's record.
    fn body(&self) -> Vec<u8> {
        match self {
            Wrapped::GcmSiv { sealed } => sealed.to_vec(),
            Wrapped::XChaCha { nonce, sealed } => [nonce.as_slice(), sealed].concat(),
        }
    }
}

/// The 32-byte secret in the file at `path` (64 hex digits and a newline); if there is no
/// such file, a new random one written there (owner-only permissions on Unix, fsynced), and
/// `true`. Serves the KEK and the checkpoint signing key.
///
/// # Errors
/// [`KeyError::Io`], [`KeyError::KekFormat`] naming the file, [`KeyError::Random`].
pub fn secret_file(path: &Path) -> Result<([u8; KEY_BYTES], bool), KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((parse_hex_key(&text, &path.display().to_string())?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = random_key()?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io(path))?;
            file.write_all(format!("{hex}\n").as_bytes()).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent).and_then(|folder| folder.sync_all()).map_err(io(parent))?;
            }
            Ok((bytes, true))
        }
        Err(source) => Err(KeyError::Io { path: path.to_owned(), source }),
    }
}

/// 64 hex digits (surrounding white space ignored) as 32 bytes.
pub(crate) fn parse_hex_key(text: &str, origin: &str) -> Result<[u8; KEY_BYTES], KeyError> {
    let text = text.trim();
    let bad = || KeyError::KekFormat { origin: origin.to_owned() };
    if text.len() != 2 * KEY_BYTES || !text.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0u8; KEY_BYTES];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(bytes)
}

fn random_key() -> Result<[u8; KEY_BYTES], KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// One subject's data key, unwrapped (in memory only): its 32 bytes; the ciphers are keyed
/// from them for each use (AES-256 key expansion costs about 0.1 µs, and a million keys held
/// as expanded ciphers would cost a kilobyte each).
#[derive(Clone)]
pub struct DataKey {
    bytes: [u8; KEY_BYTES],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Bytes of an AES-256-GCM-SIV nonce (RFC 8452 §4).
pub const SIV_NONCE: usize = 12;
/// Bytes of an AES-256-GCM-SIV tag, at the end of [`DataKey::seal`]'s output (RFC 8452 §4).
pub const SIV_TAG: usize = 16;

impl DataKey {
    pub(crate) fn new(bytes: &[u8; KEY_BYTES]) -> DataKey {
        DataKey { bytes: *bytes }
    }

    /// `plain` encrypted with AES-256-GCM-SIV (RFC 8452; RustCrypto's `aes-gcm-siv`) under
    /// `nonce`, with `aad` bound to it: ciphertext followed by the 16-byte tag (the nonce is
    /// not part of the output: the caller derives it from the record again). GCM-SIV is
    /// deterministic and resists nonce reuse: sealing the same value with the same nonce and
    /// `aad` twice gives the same bytes, so a retried append is recognised as the same, and a
    /// reused nonce reveals at most that two values are equal (RFC 8452 §9).
    #[must_use]
    pub fn seal(&self, nonce: &[u8; SIV_NONCE], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        // GCM-SIV refuses only plaintexts over 2^36 bytes, far beyond the log's payload limit.
        Aes256GcmSiv::new((&self.bytes).into())
            .encrypt(SivNonce::from_slice(nonce), Payload { msg: plain, aad })
            .unwrap_or_default()
    }

    /// The plaintext of [`DataKey::seal`]'s output, if it opens with `nonce` and `aad`.
    #[must_use]
    pub fn open(&self, nonce: &[u8; SIV_NONCE], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let split = sealed.len().checked_sub(SIV_TAG)?;
        let (body, tag) = sealed.split_at(split);
        let mut plain = body.to_vec();
        self.open_in_place(nonce, aad, &mut plain, tag).then_some(plain)
    }

    /// Opens [`DataKey::seal`]'s output where it lies: `body` (the output without its last
    /// [`SIV_TAG`] bytes, `tag`) becomes the plaintext. `false` (and `body` unchanged) if it
    /// does not open with `nonce` and `aad`, or `tag` is not [`SIV_TAG`] bytes.
    #[must_use]
    pub fn open_in_place(&self, nonce: &[u8; SIV_NONCE], aad: &[u8], body: &mut [u8], tag: &[u8]) -> bool {
        tag.len() == SIV_TAG
            && Aes256GcmSiv::new((&self.bytes).into())
                .decrypt_in_place_detached(SivNonce::from_slice(nonce), aad, body, aes_gcm_siv::Tag::from_slice(tag))
                .is_ok()
    }

    /// The plaintext of a value sealed by the first format (before AES-256-GCM-SIV): a 24-byte
    /// nonce followed by XChaCha20-Poly1305 ciphertext and tag, if it opens with `aad`. Kept
    /// so that records written then still open; nothing is sealed this way any more.
    #[must_use]
    pub fn open_xchacha(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        XChaCha20Poly1305::new((&self.bytes).into()).decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

struct Journal {
    file: File,
    /// Every key held, wrapped, and its data key once unwrapped: the journal is read without
    /// unwrapping (a million keys take seconds to unwrap), and each key is unwrapped the first
    /// time it is asked for ([`KeyStore::unwrapped`]).
    keys: HashMap<KeyId, (OnceLock<DataKey>, Wrapped), foldhash::fast::RandomState>,
    destroyed: BTreeSet<KeyId>,
    /// The key each subject was last given (a hint: the log's records name their keys).
    given: HashMap<String, KeyId, foldhash::fast::RandomState>,
    erased: BTreeSet<String>,
    /// Durable keys not yet given to anyone.
    pool: Vec<KeyId>,
    /// "Given" records not yet written (hints: written with the next batch of keys, when
    /// they reach [`PENDING_HINTS`] bytes, or when the store is dropped).
    pending: Vec<u8>,
}

/// Bytes of "given" records held before they are written.
const PENDING_HINTS: usize = 64 * 1024;

impl Journal {
    fn write_pending(&mut self, path: &Path) -> Result<(), KeyError> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.file.write_all(&pending).map_err(io(path))?;
        }
        Ok(())
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        let path = self.dir.join(JOURNAL);
        if let Err(e) = lock(&self.journal).write_pending(&path) {
            tracing::warn!(error = %e, "could not write the key store's hints; subjects get new keys for new records");
        }
    }
}

/// The key store of one data folder. Shared by every writer and reader of the store.
pub struct KeyStore {
    dir: PathBuf,
    kek: Mutex<Kek>,
    journal: Mutex<Journal>,
    /// Held while a batch of keys is made; only one batch at a time.
    making: Mutex<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Where a key stands.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// The key.
    Present(DataKey),
    /// Destroyed by an erasure.
    Destroyed,
    /// Unknown to this key store (it is older than the log, or another store's).
    Missing,
    /// Held, but its wrapped bytes do not open under the KEK (a damaged journal).
    Damaged,
}

/// One journal record: tag, key id, subject, and for a key (KEK id, wrapped key).
#[derive(Debug)]
struct Entry {
    tag: u8,
    id: KeyId,
    subject: String,
    wrapped: Option<([u8; 8], Wrapped)>,
}

impl std::fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tag() == TAG_KEY_SIV { "Wrapped(AES-256-GCM-SIV)" } else { "Wrapped(XChaCha20-Poly1305)" })
    }
}

/// A record without a key (tags 2, 3, 4).
fn encode_record(tag: u8, id: &KeyId, subject: &str) -> Vec<u8> {
    encode(tag, id, subject, &[])
}

/// A key's record (tag 1 or 5, by how it is wrapped).
fn encode_key(id: &KeyId, kek: &[u8; 8], wrapped: &Wrapped) -> Vec<u8> {
    encode(wrapped.tag(), id, "", &[kek.as_slice(), &wrapped.body()].concat())
}

fn encode(tag: u8, id: &KeyId, subject: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + subject.len() + body.len() + CHECK);
    out.push(tag);
    out.extend_from_slice(id);
    out.extend_from_slice(&u16::try_from(subject.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(body);
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
    out
}

/// The length of the record at the start of `bytes` (tag known), from its tag and its
/// subject's length; `None` if even those are cut short or the tag is unknown.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let tag = *bytes.first()?;
    let len = bytes.get(17..19).map(|l| usize::from(u16::from_le_bytes([l[0], l[1]])))?;
    let body = match tag {
        TAG_KEY => 8 + NONCE + WRAPPED,
        TAG_KEY_SIV => 8 + WRAPPED,
        TAG_GIVEN | TAG_ERASED | TAG_DESTROYED => 0,
        _ => return None,
    };
    Some(19 + len + body + CHECK)
}

/// Decodes the record at the start of `bytes`: `Ok(None)` if it is cut short.
fn decode_record(bytes: &[u8]) -> Result<Option<(Entry, usize)>, String> {
    let Some(&tag) = bytes.first() else { return Ok(None) };
    if !(TAG_KEY..=TAG_KEY_SIV).contains(&tag) {
        return Err(format!("unknown record tag {tag}"));
    }
    let Some(total) = record_len(bytes) else { return Ok(None) };
    let len = usize::from(u16::from_le_bytes([bytes[17], bytes[18]]));
    let Some(record) = bytes.get(..total) else { return Ok(None) };
    let (content, check) = record.split_at(total - CHECK);
    if &blake3::hash(content).as_bytes()[..CHECK] != check {
        return Err("check bytes do not match".into());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&content[1..17]);
    let subject = std::str::from_utf8(&content[19..19 + len]).map_err(|e| e.to_string())?.to_owned();
    let at = 19 + len;
    let array = |from: usize| -> [u8; WRAPPED] {
        let mut out = [0u8; WRAPPED];
        out.copy_from_slice(&content[from..from + WRAPPED]);
        out
    };
    let wrapped = match tag {
        TAG_KEY => {
            let mut nonce = [0u8; NONCE];
            nonce.copy_from_slice(&content[at + 8..at + 8 + NONCE]);
            Some(Wrapped::XChaCha { nonce, sealed: array(at + 8 + NONCE) })
        }
        TAG_KEY_SIV => Some(Wrapped::GcmSiv { sealed: array(at + 8) }),
        _ => None,
    }
    .map(|wrapped| {
        let mut kek = [0u8; 8];
        kek.copy_from_slice(&content[at..at + 8]);
        (kek, wrapped)
    });
    Ok(Some((Entry { tag, id, subject, wrapped }, total)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change under these locks is one insert or remove, so a poisoned lock (a panic
    // elsewhere while holding it) still guards consistent maps.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeyStore {
    /// Opens (creating if needed) the key store in `<data>/keys` under `kek` (every key must
    /// name it; each is unwrapped when first asked for). A torn last record is cut off.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::Damaged`], [`KeyError::WrongKek`].
    pub fn open(data: &Path, kek: Kek) -> Result<Arc<KeyStore>, KeyError> {
        let dir = data.join(KEY_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(JOURNAL);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        // Sized for the records the file can hold (a key's record is the smallest that
        // holds a key; a hint is about as large), so that reading a million does not rehash.
        let expected = bytes.len() / (19 + 8 + WRAPPED + CHECK) / 2;
        let mut journal = Journal {
            file,
            keys: HashMap::with_capacity_and_hasher(expected, foldhash::fast::RandomState::default()),
            destroyed: BTreeSet::new(),
            given: HashMap::with_capacity_and_hasher(expected, foldhash::fast::RandomState::default()),
            erased: BTreeSet::new(),
            pool: Vec::new(),
            pending: Vec::new(),
        };
        let mut at = 0;
        while at < bytes.len() {
            let damaged = |reason: String| KeyError::Damaged { path: path.clone(), offset: at as u64, reason };
            match decode_record(&bytes[at..]) {
                Ok(Some((entry, used))) => {
                    match (entry.tag, entry.wrapped) {
                        (TAG_KEY | TAG_KEY_SIV, Some((kek_id, wrapped))) => {
                            if kek_id != kek.id {
                                return Err(KeyError::WrongKek { stored: hex(&kek_id), given: kek.id_hex() });
                            }
                            journal.keys.insert(entry.id, (OnceLock::new(), wrapped));
                        }
                        (TAG_ERASED, _) => {
                            journal.given.remove(&entry.subject);
                            journal.erased.insert(entry.subject);
                        }
                        (TAG_GIVEN, _) => {
                            journal.given.insert(entry.subject, entry.id);
                        }
                        (TAG_DESTROYED, _) => {
                            journal.keys.remove(&entry.id);
                            journal.destroyed.insert(entry.id);
                        }
                        _ => return Err(damaged("a key record without its key".into())),
                    }
                    at += used;
                }
                // A torn tail: never made durable, so never relied on. Cut it off.
                Ok(None) => {
                    tracing::warn!(
                        journal = %path.display(),
                        offset = at,
                        bytes = bytes.len() - at,
                        "the key journal ends in a record cut short; it is cut off (a crash while it was written)"
                    );
                    journal.file.set_len(at as u64).map_err(io(&path))?;
                    journal.file.sync_data().map_err(io(&path))?;
                    break;
                }
                Err(reason) => return Err(damaged(reason)),
            }
        }
        // Keys not given out before are left unused: a record may have used one whose
        // "given" record was lost, so none is given to anyone else.
        Ok(Arc::new(KeyStore { dir, kek: Mutex::new(kek), journal: Mutex::new(journal), making: Mutex::new(()) }))
    }

    /// The state of one key as an open of the key store in `data` under `kek` would find
    /// it, without opening it: the journal is walked record by record, and only the records
    /// that name `id` are checked and decoded (a million keys' journal in a tenth of a
    /// second, against a second or more to open). For a server that needs one key (its views
    /// snapshot's) while its key store opens. A damaged record for `id`, or a key wrapped
    /// under another KEK, is `Damaged`; an unreadable journal is `Missing` (the open that
    /// follows reports either).
    #[must_use]
    pub fn peek(data: &Path, kek: &Kek, id: &KeyId) -> KeyState {
        let Ok(bytes) = std::fs::read(data.join(KEY_DIR).join(JOURNAL)) else { return KeyState::Missing };
        let mut state = KeyState::Missing;
        let mut at = 0;
        while let Some(len) = bytes.get(at..).and_then(record_len) {
            let Some(record) = bytes.get(at..at + len) else { break };
            if record.get(1..17) == Some(&id[..]) {
                state = match decode_record(record) {
                    Ok(Some((entry, _))) => match (entry.tag, entry.wrapped) {
                        (TAG_KEY | TAG_KEY_SIV, Some((kek_id, wrapped))) if kek_id == kek.id => kek
                            .unwrap_key(id, &wrapped)
                            .map_or(KeyState::Damaged, |plain| KeyState::Present(DataKey::new(&plain))),
                        (TAG_DESTROYED, _) => KeyState::Destroyed,
                        (TAG_GIVEN, _) => state,
                        _ => KeyState::Damaged,
                    },
                    _ => KeyState::Damaged,
                };
            }
            at += len;
        }
        state
    }

    /// The key with `id`.
    #[must_use]
    pub fn get(&self, id: &KeyId) -> KeyState {
        let journal = lock(&self.journal);
        match journal.keys.get(id) {
            Some(held) => match self.unwrapped(id, held) {
                Some(key) => KeyState::Present(key),
                None => KeyState::Damaged,
            },
            None if journal.destroyed.contains(id) => KeyState::Destroyed,
            None => KeyState::Missing,
        }
    }

    /// The error for a held key that does not unwrap.
    fn damaged(&self, id: &KeyId) -> KeyError {
        KeyError::Damaged {
            path: self.dir.join(JOURNAL),
            offset: 0,
            reason: format!("key {} does not unwrap", hex(id)),
        }
    }

    /// The data key of a held key, unwrapped with the KEK the first time (under the journal's
    /// lock, which the caller holds; the KEK's lock is taken after it, as `rotate` does).
    /// `None` if its wrapped bytes do not open under the KEK (a damaged journal).
    fn unwrapped(&self, id: &KeyId, (key, wrapped): &(OnceLock<DataKey>, Wrapped)) -> Option<DataKey> {
        if let Some(key) = key.get() {
            return Some(key.clone());
        }
        let plain = lock(&self.kek).unwrap_key(id, wrapped)?;
        Some(key.get_or_init(|| DataKey::new(&plain)).clone())
    }

    /// A 32-byte secret for keyed digests (BLAKE3 keyed hash) of requests whose digest is kept
    /// in the log (an idempotency key's request fingerprint): derived from the KEK, so every
    /// server sharing the log derives the same one, and nobody holding only the log or an
    /// export can test guesses of the request's personal data against it. It changes with a
    /// KEK rotation.
    #[must_use]
    pub fn request_digest_key(&self) -> [u8; KEY_BYTES] {
        lock(&self.kek).request_digests
    }

    /// How many durable keys wait to be given out.
    #[must_use]
    pub fn available(&self) -> usize {
        lock(&self.journal).pool.len()
    }

    /// Whether `subject` has been given a key (since this store opened, or by a durable hint).
    #[must_use]
    pub fn has_key(&self, subject: &str) -> bool {
        lock(&self.journal).given.contains_key(subject)
    }

    /// Makes durable keys until at least `wanted` wait to be given out: a batch of at least
    /// [`KEY_BATCH`] keys written and fdatasynced at once. Blocking: call it off the async
    /// runtime. Concurrent callers wait for one batch and usually find it enough.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::Random`].
    pub fn reserve(&self, wanted: usize) -> Result<(), KeyError> {
        let _making = lock(&self.making);
        if self.available() >= wanted {
            return Ok(());
        }
        let kek = lock(&self.kek).clone();
        let count = wanted.max(KEY_BATCH);
        let mut bytes = Vec::with_capacity(count * 128);
        let mut made = Vec::with_capacity(count);
        // Ids and keys of the whole batch from one call to the OS.
        const EACH: usize = 16 + KEY_BYTES;
        let mut random = vec![0u8; count * EACH];
        getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
        for chunk in random.chunks_exact(EACH) {
            let (mut id, mut plain) = ([0u8; 16], [0u8; KEY_BYTES]);
            id.copy_from_slice(&chunk[..16]);
            plain.copy_from_slice(&chunk[16..]);
            let wrapped = kek.wrap(&id, &plain)?;
            bytes.extend(encode_key(&id, &kek.id, &wrapped));
            made.push((id, DataKey::new(&plain), wrapped));
        }
        let path = self.dir.join(JOURNAL);
        let file = {
            let mut journal = lock(&self.journal);
            journal.write_pending(&path)?;
            journal.file.write_all(&bytes).map_err(io(&path))?;
            journal.file.try_clone().map_err(io(&path))?
        };
        // Durable before any of them is handed out.
        file.sync_data().map_err(io(&path))?;
        let mut journal = lock(&self.journal);
        for (id, key, wrapped) in made {
            journal.keys.insert(id, (OnceLock::from(key), wrapped));
            journal.pool.push(id);
        }
        Ok(())
    }

    /// The key of `subject`: the one it was given, or a durable one given to it now (noted in
    /// the journal without waiting for the disk). Makes a batch first if none is waiting.
    ///
    /// # Errors
    /// [`KeyError::Erased`] for an erased subject; [`KeyError::Io`], [`KeyError::Random`].
    pub fn key_for(&self, subject: &str) -> Result<(KeyId, DataKey), KeyError> {
        loop {
            {
                let mut journal = lock(&self.journal);
                if journal.erased.contains(subject) {
                    return Err(KeyError::Erased { subject: subject.to_owned() });
                }
                if let Some(id) = journal.given.get(subject).copied() {
                    if let Some(held) = journal.keys.get(&id) {
                        return self.unwrapped(&id, held).map(|key| (id, key)).ok_or_else(|| self.damaged(&id));
                    }
                }
                if let Some(id) = journal.pool.pop() {
                    let record = encode_record(TAG_GIVEN, &id, subject);
                    journal.pending.extend_from_slice(&record);
                    if journal.pending.len() >= PENDING_HINTS {
                        journal.write_pending(&self.dir.join(JOURNAL))?;
                    }
                    journal.given.insert(subject.to_owned(), id);
                    if let Some(held) = journal.keys.get(&id) {
                        return self.unwrapped(&id, held).map(|key| (id, key)).ok_or_else(|| self.damaged(&id));
                    }
                }
            }
            self.reserve(1)?;
        }
    }

    /// The key that seals the views' snapshot (a file beside the log holding the read
    /// views, personal data included), given to [`SNAPSHOT_SUBJECT`]. Unlike a subject's
    /// key, which subject holds it is made durable before it is answered (one fdatasync):
    /// every erasure destroys it ([`KeyStore::erase`]), so that no snapshot taken before an
    /// erasure can be opened after it, and an erasure must find it after a crash.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::Random`].
    pub fn snapshot_key(&self) -> Result<(KeyId, DataKey), KeyError> {
        let given = self.key_for(SNAPSHOT_SUBJECT)?;
        let path = self.dir.join(JOURNAL);
        let file = {
            let mut journal = lock(&self.journal);
            journal.write_pending(&path)?;
            journal.file.try_clone().map_err(io(&path))?
        };
        file.sync_data().map_err(io(&path))?;
        Ok(given)
    }

    /// Erases `subject`: destroys `ids` (every key its records name) and the key it was
    /// given, marks it erased, and rewrites the journal without those keys (atomically), so
    /// their wrapped bytes are in no file afterwards. The views' snapshot key
    /// ([`KeyStore::snapshot_key`]) is destroyed in the same rewrite, so a snapshot taken
    /// before cannot be opened again. Answers how many of the subject's keys were destroyed
    /// (0 when erased before; then nothing is rewritten and the snapshot key is kept).
    /// Callers: [`crate::seal::key_ids`] lists the ids of a record.
    ///
    /// # Errors
    /// [`KeyError::Io`]; then the keys may still be on disk, and erasing again completes it.
    pub fn erase(&self, subject: &str, ids: &[KeyId]) -> Result<usize, KeyError> {
        let mut journal = lock(&self.journal);
        let mut all: Vec<KeyId> = ids.to_vec();
        all.extend(journal.given.remove(subject));
        let mut destroyed = 0;
        for id in &all {
            if journal.keys.remove(id).is_some() {
                destroyed += 1;
            }
            journal.destroyed.insert(*id);
        }
        let newly_erased = journal.erased.insert(subject.to_owned());
        if newly_erased || destroyed > 0 {
            if let Some(id) = journal.given.remove(SNAPSHOT_SUBJECT) {
                journal.keys.remove(&id);
                journal.destroyed.insert(id);
            }
            let kek = lock(&self.kek).clone();
            self.rewrite(&mut journal, &kek)?;
        }
        Ok(destroyed)
    }

    /// Rewraps every key under `new` and rewrites the journal atomically; from then on the
    /// store opens only with `new`. The log is not touched. Answers how many keys were rewrapped.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::Random`], [`KeyError::Damaged`].
    pub fn rotate(&self, new: Kek) -> Result<usize, KeyError> {
        let _making = lock(&self.making);
        let mut journal = lock(&self.journal);
        let old = lock(&self.kek).clone();
        let ids: Vec<KeyId> = journal.keys.keys().copied().collect();
        for id in &ids {
            let Some((key, wrapped)) = journal.keys.get(id).cloned() else { continue };
            let plain = old.unwrap_key(id, &wrapped).ok_or_else(|| KeyError::Damaged {
                path: self.dir.join(JOURNAL),
                offset: 0,
                reason: format!("key {} does not unwrap", hex(id)),
            })?;
            let wrapped = new.wrap(id, &plain)?;
            journal.keys.insert(*id, (key, wrapped));
        }
        self.rewrite(&mut journal, &new)?;
        *lock(&self.kek) = new;
        Ok(ids.len())
    }

    /// Writes every key, hint, erased subject and destroyed id to a new journal (sorted, so
    /// the file is the same for the same state), fdatasyncs it, renames it over the old one
    /// and fsyncs the folder. Keys waiting in the pool are kept (and stay in the pool).
    fn rewrite(&self, journal: &mut Journal, kek: &Kek) -> Result<(), KeyError> {
        let path = self.dir.join(JOURNAL);
        let temp = self.dir.join("journal.new");
        let mut bytes = Vec::new();
        let mut ids: Vec<&KeyId> = journal.keys.keys().collect();
        ids.sort();
        for id in ids {
            if let Some((_, wrapped)) = journal.keys.get(id) {
                bytes.extend(encode_key(id, &kek.id, wrapped));
            }
        }
        let mut given: Vec<(&String, &KeyId)> = journal.given.iter().collect();
        given.sort();
        for (subject, id) in given {
            bytes.extend(encode_record(TAG_GIVEN, id, subject));
        }
        for subject in &journal.erased {
            bytes.extend(encode_record(TAG_ERASED, &[0; 16], subject));
        }
        for id in &journal.destroyed {
            bytes.extend(encode_record(TAG_DESTROYED, id, ""));
        }
        let mut file = crate::files::create_fresh(&temp).map_err(io(&temp))?;
        file.write_all(&bytes).map_err(io(&temp))?;
        file.sync_data().map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        journal.file = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        // The rewrite holds every hint.
        journal.pending.clear();
        Ok(())
    }

    /// The ids of every key held (given out or waiting).
    #[must_use]
    pub fn key_ids(&self) -> Vec<KeyId> {
        lock(&self.journal).keys.keys().copied().collect()
    }

    /// The ids of every key destroyed by an erasure (here, or taken in as destroyed).
    #[must_use]
    pub fn destroyed_ids(&self) -> Vec<KeyId> {
        lock(&self.journal).destroyed.iter().copied().collect()
    }

    /// The ids of the durable keys waiting to be given out.
    #[must_use]
    pub fn waiting_ids(&self) -> Vec<KeyId> {
        lock(&self.journal).pool.clone()
    }

    /// The journal records of the keys `ids` that are held (wrapped under the current KEK,
    /// as [`KeyStore::import`] takes them), for another server sharing the log.
    #[must_use]
    pub fn wrapped_records(&self, ids: &[KeyId]) -> Vec<(KeyId, Vec<u8>)> {
        let journal = lock(&self.journal);
        let kek = lock(&self.kek).id;
        ids.iter()
            .filter_map(|id| {
                let (_, wrapped) = journal.keys.get(id)?;
                Some((*id, encode_key(id, &kek, wrapped)))
            })
            .collect()
    }

    /// Takes in keys made, or destroyed, by another server sharing the log: `Some(record)`
    /// is a key's journal record ([`KeyStore::wrapped_records`]), `None` a key destroyed by an
    /// erasure there. New keys and destroyed marks are written and fdatasynced before this
    /// returns, and the keys are never given out here; a destroyed key held here is destroyed
    /// with the same atomic rewrite as [`KeyStore::erase`]. A key destroyed here is never taken back in. Answers how many keys
    /// were added or destroyed. Blocking: call it off the async runtime.
    ///
    /// # Errors
    /// [`KeyError::WrongKek`] for a key wrapped under another KEK; [`KeyError::Damaged`] for a
    /// record that does not decode, names another id, or does not unwrap; [`KeyError::Io`].
    pub fn import(&self, entries: &[(KeyId, Option<Vec<u8>>)]) -> Result<usize, KeyError> {
        let kek = lock(&self.kek).clone();
        let path = self.dir.join(JOURNAL);
        let damaged = |reason: String| KeyError::Damaged { path: path.clone(), offset: 0, reason };
        let mut added = Vec::new();
        let mut destroyed = Vec::new();
        let mut tombstones = Vec::new();
        {
            let journal = lock(&self.journal);
            for (id, record) in entries {
                if journal.destroyed.contains(id) {
                    continue;
                }
                match record {
                    None if journal.keys.contains_key(id) => destroyed.push(*id),
                    None => tombstones.push(*id),
                    Some(_) if journal.keys.contains_key(id) => {}
                    Some(record) => {
                        let Some((entry, _)) = decode_record(record).map_err(damaged)? else {
                            return Err(damaged(format!("shared key {} is cut short", hex(id))));
                        };
                        let Some((kek_id, wrapped)) = entry.wrapped.filter(|_| entry.id == *id) else {
                            return Err(damaged(format!("shared record for key {} is not that key", hex(id))));
                        };
                        if kek_id != kek.id {
                            return Err(KeyError::WrongKek { stored: hex(&kek_id), given: kek.id_hex() });
                        }
                        let plain = kek
                            .unwrap_key(id, &wrapped)
                            .ok_or_else(|| damaged(format!("shared key {} does not unwrap", hex(id))))?;
                        added.push((*id, DataKey::new(&plain), wrapped, record.clone()));
                    }
                }
            }
        }
        let count = added.len() + destroyed.len() + tombstones.len();
        if !added.is_empty() || !tombstones.is_empty() {
            let mut bytes: Vec<u8> = added.iter().flat_map(|(.., record)| record.iter().copied()).collect();
            for id in &tombstones {
                bytes.extend(encode_record(TAG_DESTROYED, id, ""));
            }
            let file = {
                let mut journal = lock(&self.journal);
                journal.file.write_all(&bytes).map_err(io(&path))?;
                journal.file.try_clone().map_err(io(&path))?
            };
            file.sync_data().map_err(io(&path))?;
            let mut journal = lock(&self.journal);
            for (id, key, wrapped, _) in added {
                journal.keys.insert(id, (OnceLock::from(key), wrapped));
            }
            journal.destroyed.extend(tombstones);
        }
        if !destroyed.is_empty() {
            let mut journal = lock(&self.journal);
            for id in &destroyed {
                journal.keys.remove(id);
                journal.destroyed.insert(*id);
            }
            journal.given.retain(|_, id| !destroyed.contains(id));
            self.rewrite(&mut journal, &kek)?;
        }
        Ok(count)
    }

    /// How many keys are held (given out or waiting), and how many subjects are erased.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let journal = lock(&self.journal);
        (journal.keys.len(), journal.erased.len())
    }

    /// How many subjects were given a key.
    #[must_use]
    pub fn subjects(&self) -> usize {
        lock(&self.journal).given.len()
    }

    /// Whether `subject` was erased.
    #[must_use]
    pub fn is_erased(&self, subject: &str) -> bool {
        lock(&self.journal).erased.contains(subject)
    }

    /// The journal's path.
    #[must_use]
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key wrapped the first way (tag 1: XChaCha20-Poly1305, stored nonce).
    fn wrap_xchacha(kek: &Kek, id: &KeyId, key: &[u8; KEY_BYTES], nonce: [u8; NONCE]) -> Wrapped {
        let aad = [WRAP_CONTEXT, id.as_slice()].concat();
        let sealed = kek.xchacha.encrypt(XNonce::from_slice(&nonce), Payload { msg: key, aad: &aad }).unwrap();
        Wrapped::XChaCha { nonce, sealed: sealed.try_into().unwrap() }
    }

    /// A payload member sealed by the first format (XChaCha20-Poly1305, synthetic nonce in
    /// front), made by that code under the data key `[9; 32]` for the record
    /// (`customer-1`, version 1, `CustomerRegistered`), member 0, with its key in a journal
    /// record of the first format (tag 1): records and key stores written then still open,
    /// through a reopen and a rotation (which rewraps the key the new way).
    #[test]
    fn values_and_keys_of_the_first_format_still_open() {
        const FIRST_FORMAT: &str =
            "XiM73BEQ9hEOfuL-FXoVKGyOaYjPf3WzyLcXs97Pojp7KB6JKgNm_n2o4_2VVQf9FjBIfJGj13RK-8MgWZa90jKm5jf3";
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let id = [0xab; 16];
        let record = encode_key(&id, &kek(1).id, &wrap_xchacha(&kek(1), &id, &[9; KEY_BYTES], [1; NONCE]));
        assert_eq!(record[0], TAG_KEY);
        store.import(&[(id, Some(record))]).unwrap();
        let payload =
            format!(r#"{{"name":"Wang","personal":{{"$sealed":"{FIRST_FORMAT}","key":"{}"}},"tags":[]}}"#, hex(&id));
        let expected = br#"{"name":"Wang","personal":{"phones":["+8613800138000"]},"tags":[]}"#.as_slice();
        let opened = crate::seal::open(&store, "customer-1", 1, "CustomerRegistered", payload.as_bytes()).unwrap();
        assert_eq!(&*opened, expected);
        assert_eq!(crate::seal::key_ids(payload.as_bytes()), vec![id]);
        // Bound to its record as before.
        assert!(matches!(
            crate::seal::open(&store, "customer-1", 2, "CustomerRegistered", payload.as_bytes()),
            Err(KeyError::Tampered { .. })
        ));
        drop(store);
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let opened = crate::seal::open(&store, "customer-1", 1, "CustomerRegistered", payload.as_bytes()).unwrap();
        assert_eq!(&*opened, expected, "a tag 1 record in the journal opens after a reopen");
        assert_eq!(store.rotate(kek(2)).unwrap(), 1);
        drop(store);
        let raw = std::fs::read(dir.path().join(KEY_DIR).join(JOURNAL)).unwrap();
        assert_eq!(raw[0], TAG_KEY_SIV, "rotation rewraps the key the new way");
        let store = KeyStore::open(dir.path(), kek(2)).unwrap();
        let opened = crate::seal::open(&store, "customer-1", 1, "CustomerRegistered", payload.as_bytes()).unwrap();
        assert_eq!(&*opened, expected);
    }

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; KEY_BYTES])
    }

    fn wrapped_of(store: &KeyStore, id: &KeyId) -> [u8; WRAPPED] {
        match lock(&store.journal).keys[id].1 {
            Wrapped::GcmSiv { sealed } | Wrapped::XChaCha { sealed, .. } => sealed,
        }
    }

    #[test]
    fn keys_survive_reopen_erasure_removes_their_bytes_and_rotation_rewraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        store.reserve(2).unwrap();
        assert!(store.available() >= KEY_BATCH);
        let (a_id, a) = store.key_for("customer-a").unwrap();
        assert_eq!(store.key_for("customer-a").unwrap().0, a_id, "one key per subject");
        let (b_id, _) = store.key_for("customer-b").unwrap();
        assert_ne!(a_id, b_id);
        let nonce = [5; SIV_NONCE];
        let sealed = a.seal(&nonce, b"ad", b"13800138000");
        assert_eq!(a.seal(&nonce, b"ad", b"13800138000"), sealed, "deterministic: same input, same bytes");
        assert!(a.open(&nonce, b"other ad", &sealed).is_none(), "bound to its associated data");
        assert!(a.open(&[6; SIV_NONCE], b"ad", &sealed).is_none(), "bound to its nonce");
        let wrapped_a = wrapped_of(&store, &a_id);
        drop(store);

        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        assert_eq!(store.available(), 0, "keys not given out before are never given out");
        let KeyState::Present(again) = store.get(&a_id) else { panic!("key lost") };
        assert_eq!(again.open(&nonce, b"ad", &sealed).unwrap(), b"13800138000");
        assert_eq!(store.key_for("customer-a").unwrap().0, a_id, "the hint survives");
        assert!(matches!(KeyStore::open(dir.path(), kek(2)), Err(KeyError::WrongKek { .. })));

        assert_eq!(store.erase("customer-a", &[a_id]).unwrap(), 1);
        let raw = std::fs::read(store.journal_path()).unwrap();
        assert!(!raw.windows(WRAPPED).any(|w| w == wrapped_a), "wrapped key bytes gone from the journal");
        assert!(matches!(store.get(&a_id), KeyState::Destroyed));
        assert!(matches!(store.key_for("customer-a"), Err(KeyError::Erased { .. })));
        assert_eq!(store.erase("customer-a", &[a_id]).unwrap(), 0, "erasing twice destroys nothing");

        let held = store.counts().0;
        assert_eq!(store.rotate(kek(3)).unwrap(), held);
        drop(store);
        assert!(matches!(KeyStore::open(dir.path(), kek(1)), Err(KeyError::WrongKek { .. })));
        let store = KeyStore::open(dir.path(), kek(3)).unwrap();
        assert!(matches!(store.get(&b_id), KeyState::Present(_)));
        assert!(matches!(store.get(&a_id), KeyState::Destroyed), "destruction survives rotation");
        assert!(store.is_erased("customer-a"));
    }

    #[test]
    fn a_peek_at_one_key_finds_what_an_open_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let (snapshot_id, snapshot_key) = store.snapshot_key().unwrap();
        let (subject_id, _) = store.key_for("customer-p").unwrap();
        drop(store);
        let nonce = [7u8; SIV_NONCE];
        let sealed = snapshot_key.seal(&nonce, b"aad", b"views");
        let KeyState::Present(peeked) = KeyStore::peek(dir.path(), &kek(1), &snapshot_id) else {
            panic!("not present")
        };
        assert_eq!(peeked.open(&nonce, b"aad", &sealed).as_deref(), Some(&b"views"[..]));
        assert!(matches!(KeyStore::peek(dir.path(), &kek(1), &[0x5a; 16]), KeyState::Missing));
        assert!(matches!(KeyStore::peek(dir.path(), &kek(2), &snapshot_id), KeyState::Damaged), "another KEK");
        // An erasure destroys the snapshot key with the subject's.
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        store.erase("customer-p", &[subject_id]).unwrap();
        assert!(matches!(store.get(&snapshot_id), KeyState::Destroyed));
        drop(store);
        assert!(matches!(KeyStore::peek(dir.path(), &kek(1), &snapshot_id), KeyState::Destroyed));
        assert!(matches!(KeyStore::peek(dir.path().join("none").as_path(), &kek(1), &snapshot_id), KeyState::Missing));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_a_damaged_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        store.reserve(1).unwrap();
        store.key_for("user-1").unwrap();
        let path = store.journal_path();
        drop(store);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        assert_eq!(store.counts().0, KEY_BATCH, "the torn hint is dropped, the keys kept");
        assert!(!store.has_key("user-1"));
        drop(store);
        let mut damaged = full.clone();
        damaged[10] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(KeyStore::open(dir.path(), kek(1)), Err(KeyError::Damaged { offset: 0, .. })));
    }

    #[test]
    fn a_kek_file_is_created_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oacis.kek");
        let (first, created) = Kek::load_or_create(&path).unwrap();
        assert!(created);
        let (second, created) = Kek::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.id_hex(), second.id_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(Kek::from_hex("abc", "test"), Err(KeyError::KekFormat { .. })));
    }
}
