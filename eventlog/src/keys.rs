//! The key store: one data key per subject (the stream whose events carry the subject's
//! personal data), kept outside the log so that destroying a key erases that subject's
//! personal data everywhere at once (crypto-shredding) while every record, hash and export
//! stays as it was.
//!
//! Data keys are 32 random bytes, stored only wrapped (XChaCha20-Poly1305, RustCrypto's
//! `chacha20poly1305`) by the operator's key-encryption key (KEK), with the subject as
//! associated data so that a wrapped key cannot be filed under another subject. The store is
//! one journal file, `<data>/keys/journal`, beside (never inside) the log's sled database:
//!
//! ```text
//! record  = tag u8 (1 key, 2 erased) | subject length u16 LE | subject UTF-8
//!           | (key only) KEK id [8] | nonce [24] | wrapped key [48]
//!           | check [8] = first 8 bytes of BLAKE3(everything before it in the record)
//! ```
//!
//! Invariants:
//! - A key is durable (journal write followed by fdatasync, [`KeyStore::make_durable`])
//!   before any record sealed with it is handed to the log, so no acknowledged record's key
//!   is lost by a crash. Concurrent callers share one fdatasync (group commit).
//! - A torn last record (a crash during its write) was never made durable, so nothing used
//!   it: it is dropped on open. A damaged record followed by others is reported, never skipped.
//! - Erasure rewrites the whole journal without the key (temporary file, fdatasync, rename,
//!   folder fsync), so the wrapped key's bytes are in no file of the data folder afterwards;
//!   the subject is kept as erased, and no key is ever created for it again.
//! - Rotation rewraps every key under a new KEK with the same atomic rewrite; the log is not
//!   touched.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Bytes of a data key and of a KEK.
pub const KEY_BYTES: usize = 32;
const NONCE: usize = 24;
const WRAPPED: usize = KEY_BYTES + 16;
const CHECK: usize = 8;
const TAG_KEY: u8 = 1;
const TAG_ERASED: u8 = 2;
/// The journal's file name inside the key folder.
pub const JOURNAL: &str = "journal";
/// The key folder's name inside the data folder.
pub const KEY_DIR: &str = "keys";
const WRAP_CONTEXT: &[u8] = b"oacis data key v1\0";

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
    /// The KEK is not 32 bytes (64 hex digits in a file or variable).
    #[error("the key-encryption key {origin} is not 64 hex digits (32 bytes)")]
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
    #[error("the key store has no key for {subject}, whose records hold sealed personal data: it is older than the log or belongs to another store; restore the key store that goes with this log")]
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
    cipher: XChaCha20Poly1305,
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
        Kek { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// A KEK from 64 hex digits (surrounding white space ignored).
    ///
    /// # Errors
    /// [`KeyError::KekFormat`] naming `origin`.
    pub fn from_hex(text: &str, origin: &str) -> Result<Kek, KeyError> {
        let text = text.trim();
        let bad = || KeyError::KekFormat { origin: origin.to_owned() };
        if text.len() != 2 * KEY_BYTES || !text.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Kek::from_bytes(&bytes))
    }

    /// The KEK in the file at `path`; if there is no such file, a new random KEK written there
    /// (owner-only permissions on Unix, fsynced). Answers whether it was created, so that the
    /// caller can warn the operator to keep it safe and apart from the data.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::KekFormat`], [`KeyError::Random`].
    pub fn load_or_create(path: &Path) -> Result<(Kek, bool), KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Kek::from_hex(&text, &path.display().to_string())?, false)),
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
                Ok((Kek::from_bytes(&bytes), true))
            }
            Err(source) => Err(KeyError::Io { path: path.to_owned(), source }),
        }
    }

    /// The id as 16 hex digits.
    #[must_use]
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn wrap(&self, subject: &str, key: &[u8; KEY_BYTES]) -> Result<([u8; NONCE], [u8; WRAPPED]), KeyError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let aad = [WRAP_CONTEXT, subject.as_bytes()].concat();
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: key, aad: &aad })
            .map_err(|_| KeyError::Random("wrapping failed".into()))?;
        let mut wrapped = [0u8; WRAPPED];
        wrapped.copy_from_slice(&sealed);
        Ok((nonce, wrapped))
    }

    fn unwrap_key(&self, subject: &str, nonce: &[u8; NONCE], wrapped: &[u8; WRAPPED]) -> Option<[u8; KEY_BYTES]> {
        let aad = [WRAP_CONTEXT, subject.as_bytes()].concat();
        let key = self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: wrapped, aad: &aad }).ok()?;
        key.try_into().ok()
    }
}

fn random_key() -> Result<[u8; KEY_BYTES], KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// One subject's data key, unwrapped (in memory only).
#[derive(Clone)]
pub struct DataKey {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    fn new(bytes: &[u8; KEY_BYTES]) -> DataKey {
        DataKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
            nonce_key: blake3::derive_key("oacis personal data nonce v1", bytes),
        }
    }

    /// `plain` encrypted with `aad` bound to it: nonce (24 bytes) followed by ciphertext and
    /// tag. The nonce is synthetic, a keyed BLAKE3 hash of `aad` and `plain` (as in SIV
    /// modes, RFC 5297): sealing the same value for the same record twice gives the same
    /// bytes, so a retried append is recognised as the same, and two different values never
    /// share a nonce.
    #[must_use]
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut hasher = blake3::Hasher::new_keyed(&self.nonce_key);
        hasher.update(&u64::try_from(aad.len()).unwrap_or(u64::MAX).to_le_bytes());
        hasher.update(aad);
        hasher.update(plain);
        let mut nonce = [0u8; NONCE];
        hasher.finalize_xof().fill(&mut nonce);
        let sealed = self.cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad }).unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    /// The plaintext of [`DataKey::seal`]'s output, if it opens with `aad`.
    #[must_use]
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

struct Journal {
    file: File,
    keys: HashMap<String, (DataKey, [u8; NONCE], [u8; WRAPPED])>,
    erased: BTreeSet<String>,
    /// Records appended since open (never decreases).
    written: u64,
}

/// The key store of one data folder. Shared by every writer and reader of the store.
pub struct KeyStore {
    dir: PathBuf,
    kek: Mutex<Kek>,
    journal: Mutex<Journal>,
    /// Records known durable; the lock is held across an fdatasync (group commit).
    synced: Mutex<u64>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Where a key lookup stands.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// The subject's key.
    Present(DataKey),
    /// The subject's personal data was erased.
    Erased,
    /// The subject has no key (its records hold no personal data, or the key store is not
    /// the one written with the log).
    Missing,
}

fn encode_record(subject: &str, key: Option<(&[u8; 8], &[u8; NONCE], &[u8; WRAPPED])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + subject.len() + 8 + NONCE + WRAPPED + CHECK);
    out.push(if key.is_some() { TAG_KEY } else { TAG_ERASED });
    out.extend_from_slice(&u16::try_from(subject.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    if let Some((kek, nonce, wrapped)) = key {
        out.extend_from_slice(kek);
        out.extend_from_slice(nonce);
        out.extend_from_slice(wrapped);
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
    out
}

/// One decoded journal record: subject and, for a key, (KEK id, nonce, wrapped key).
type JournalRecord = (String, Option<([u8; 8], [u8; NONCE], [u8; WRAPPED])>);

/// Decodes the record at the start of `bytes`: `Ok(None)` if it is cut short.
fn decode_record(bytes: &[u8]) -> Result<Option<(JournalRecord, usize)>, String> {
    let Some((&tag, rest)) = bytes.split_first() else { return Ok(None) };
    if tag != TAG_KEY && tag != TAG_ERASED {
        return Err(format!("unknown record tag {tag}"));
    }
    let Some(len) = rest.get(..2).map(|l| usize::from(u16::from_le_bytes([l[0], l[1]]))) else { return Ok(None) };
    let body = if tag == TAG_KEY { 8 + NONCE + WRAPPED } else { 0 };
    let total = 3 + len + body + CHECK;
    let Some(record) = bytes.get(..total) else { return Ok(None) };
    let (content, check) = record.split_at(total - CHECK);
    if &blake3::hash(content).as_bytes()[..CHECK] != check {
        return Err("check bytes do not match".into());
    }
    let subject = std::str::from_utf8(&content[3..3 + len]).map_err(|e| e.to_string())?.to_owned();
    let key = (tag == TAG_KEY).then(|| {
        let at = 3 + len;
        let mut kek = [0u8; 8];
        let mut nonce = [0u8; NONCE];
        let mut wrapped = [0u8; WRAPPED];
        kek.copy_from_slice(&content[at..at + 8]);
        nonce.copy_from_slice(&content[at + 8..at + 8 + NONCE]);
        wrapped.copy_from_slice(&content[at + 8 + NONCE..]);
        (kek, nonce, wrapped)
    });
    Ok(Some(((subject, key), total)))
}

impl KeyStore {
    /// Opens (creating if needed) the key store in `<data>/keys`, unwrapping every key with
    /// `kek`. A torn last record is cut off.
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
        let mut keys = HashMap::new();
        let mut erased = BTreeSet::new();
        let mut at = 0;
        while at < bytes.len() {
            let damaged = |reason: String| KeyError::Damaged { path: path.clone(), offset: at as u64, reason };
            match decode_record(&bytes[at..]) {
                Ok(Some(((subject, key), used))) => {
                    match key {
                        Some((kek_id, nonce, wrapped)) => {
                            if kek_id != kek.id {
                                let stored = kek_id.iter().map(|b| format!("{b:02x}")).collect();
                                return Err(KeyError::WrongKek { stored, given: kek.id_hex() });
                            }
                            let plain = kek
                                .unwrap_key(&subject, &nonce, &wrapped)
                                .ok_or_else(|| damaged(format!("the key of {subject} does not unwrap")))?;
                            keys.insert(subject.clone(), (DataKey::new(&plain), nonce, wrapped));
                        }
                        None => {
                            keys.remove(&subject);
                            erased.insert(subject);
                        }
                    }
                    at += used;
                }
                // A torn tail: never made durable, so never used. Cut it off.
                Ok(None) => {
                    file.set_len(at as u64).map_err(io(&path))?;
                    file.sync_data().map_err(io(&path))?;
                    break;
                }
                Err(reason) => return Err(damaged(reason)),
            }
        }
        Ok(Arc::new(KeyStore {
            dir,
            kek: Mutex::new(kek),
            journal: Mutex::new(Journal { file, keys, erased, written: 0 }),
            synced: Mutex::new(0),
        }))
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        // A panic while holding the lock leaves the maps consistent (each change is one insert
        // or remove), so a poisoned lock is still usable.
        self.journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subject's key as things stand.
    #[must_use]
    pub fn get(&self, subject: &str) -> KeyState {
        let journal = self.journal();
        match journal.keys.get(subject) {
            Some((key, _, _)) => KeyState::Present(key.clone()),
            None if journal.erased.contains(subject) => KeyState::Erased,
            None => KeyState::Missing,
        }
    }

    /// The subject's key, created (written to the journal, not yet durable) if it has none.
    /// Answers the key and a ticket for [`KeyStore::make_durable`] (0 when nothing was written).
    ///
    /// # Errors
    /// [`KeyError::Erased`] for an erased subject; [`KeyError::Io`], [`KeyError::Random`].
    pub fn get_or_create(&self, subject: &str) -> Result<(DataKey, u64), KeyError> {
        let mut journal = self.journal();
        if let Some((key, _, _)) = journal.keys.get(subject) {
            return Ok((key.clone(), 0));
        }
        if journal.erased.contains(subject) {
            return Err(KeyError::Erased { subject: subject.to_owned() });
        }
        let plain = random_key()?;
        let kek = self.kek.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (nonce, wrapped) = kek.wrap(subject, &plain)?;
        let record = encode_record(subject, Some((&kek.id, &nonce, &wrapped)));
        let path = self.dir.join(JOURNAL);
        journal.file.write_all(&record).map_err(io(&path))?;
        journal.written += 1;
        let key = DataKey::new(&plain);
        journal.keys.insert(subject.to_owned(), (key.clone(), nonce, wrapped));
        Ok((key, journal.written))
    }

    /// Waits until the journal is on disk up to `ticket` (from [`KeyStore::get_or_create`]).
    /// Callers arriving while an fdatasync runs wait for it and then usually find their key
    /// already covered: one fdatasync serves them all. Blocking: call it off the async runtime.
    ///
    /// # Errors
    /// [`KeyError::Io`].
    pub fn make_durable(&self, ticket: u64) -> Result<(), KeyError> {
        if ticket == 0 {
            return Ok(());
        }
        let mut synced = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *synced >= ticket {
            return Ok(());
        }
        let (file, written) = {
            let journal = self.journal();
            let file = journal.file.try_clone().map_err(io(&self.dir))?;
            (file, journal.written)
        };
        file.sync_data().map_err(io(&self.dir.join(JOURNAL)))?;
        *synced = written;
        Ok(())
    }

    /// Erases `subject`: its key is removed and the journal rewritten without it (atomically),
    /// so its wrapped bytes are in no file afterwards; the subject stays marked erased.
    /// Erasing an erased or unknown subject marks it erased and is otherwise a no-op. Answers
    /// whether a key was destroyed.
    ///
    /// # Errors
    /// [`KeyError::Io`]; then the key may still be on disk, and erasing again completes it.
    pub fn erase(&self, subject: &str) -> Result<bool, KeyError> {
        self.erase_all(std::iter::once(subject)).map(|n| n > 0)
    }

    /// [`KeyStore::erase`] for several subjects with one rewrite (used on open to apply the
    /// erasures recorded in the log to a key store restored from an older backup). Answers
    /// how many keys were destroyed; rewrites nothing when no subject is new.
    ///
    /// # Errors
    /// [`KeyError::Io`].
    pub fn erase_all<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) -> Result<usize, KeyError> {
        let mut journal = self.journal();
        let mut destroyed = 0;
        let mut changed = false;
        for subject in subjects {
            destroyed += usize::from(journal.keys.remove(subject).is_some());
            changed |= journal.erased.insert(subject.to_owned());
        }
        if changed || destroyed > 0 {
            let kek = self.kek.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            self.rewrite(&mut journal, &kek)?;
        }
        Ok(destroyed)
    }

    /// Rewraps every key under `new` and rewrites the journal atomically; from then on the
    /// store opens only with `new`. The log is not touched. Answers how many keys were rewrapped.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::Random`].
    pub fn rotate(&self, new: Kek) -> Result<usize, KeyError> {
        let mut journal = self.journal();
        let subjects: Vec<String> = journal.keys.keys().cloned().collect();
        for subject in &subjects {
            let old = self.kek.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let Some((key, nonce, wrapped)) = journal.keys.get(subject).cloned() else { continue };
            let plain = old.unwrap_key(subject, &nonce, &wrapped).ok_or_else(|| KeyError::Damaged {
                path: self.dir.join(JOURNAL),
                offset: 0,
                reason: format!("the key of {subject} does not unwrap"),
            })?;
            let (nonce, wrapped) = new.wrap(subject, &plain)?;
            journal.keys.insert(subject.clone(), (key, nonce, wrapped));
        }
        self.rewrite(&mut journal, &new)?;
        *self.kek.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
        Ok(subjects.len())
    }

    /// Writes every key and erased subject to a new journal (sorted, so the file is the same
    /// for the same keys), fdatasyncs it, renames it over the old one and fsyncs the folder.
    fn rewrite(&self, journal: &mut Journal, kek: &Kek) -> Result<(), KeyError> {
        let path = self.dir.join(JOURNAL);
        let temp = self.dir.join("journal.new");
        let mut bytes = Vec::new();
        let mut subjects: Vec<&String> = journal.keys.keys().collect();
        subjects.sort();
        for subject in subjects {
            if let Some((_, nonce, wrapped)) = journal.keys.get(subject) {
                bytes.extend(encode_record(subject, Some((&kek.id, nonce, wrapped))));
            }
        }
        for subject in &journal.erased {
            bytes.extend(encode_record(subject, None));
        }
        let mut file = File::create(&temp).map_err(io(&temp))?;
        file.write_all(&bytes).map_err(io(&temp))?;
        file.sync_data().map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        // Everything in the new file is durable; tickets already handed out may sync once
        // more, which is harmless (and `synced` is not touched here: its lock is taken
        // before the journal's, never after).
        journal.file = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        Ok(())
    }

    /// How many subjects have a key, and how many are erased.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let journal = self.journal();
        (journal.keys.len(), journal.erased.len())
    }

    /// Whether `subject` was erased.
    #[must_use]
    pub fn is_erased(&self, subject: &str) -> bool {
        self.journal().erased.contains(subject)
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

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; KEY_BYTES])
    }

    #[test]
    fn keys_survive_reopen_erasure_removes_their_bytes_and_rotation_rewraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let (a, ticket) = store.get_or_create("customer-a").unwrap();
        store.make_durable(ticket).unwrap();
        let (_, ticket) = store.get_or_create("customer-b").unwrap();
        store.make_durable(ticket).unwrap();
        let sealed = a.seal(b"ad", b"13800138000");
        assert_eq!(a.seal(b"ad", b"13800138000"), sealed, "synthetic nonce: same input, same bytes");
        assert!(a.open(b"other ad", &sealed).is_none(), "bound to its associated data");
        let wrapped_a = store.journal().keys["customer-a"].2;
        drop(store);

        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let KeyState::Present(again) = store.get("customer-a") else { panic!("key lost") };
        assert_eq!(again.open(b"ad", &sealed).unwrap(), b"13800138000");
        assert!(matches!(KeyStore::open(dir.path(), kek(2)), Err(KeyError::WrongKek { .. })));

        assert!(store.erase("customer-a").unwrap());
        let raw = std::fs::read(store.journal_path()).unwrap();
        assert!(!raw.windows(WRAPPED).any(|w| w == wrapped_a), "wrapped key bytes gone from the journal");
        assert!(matches!(store.get("customer-a"), KeyState::Erased));
        assert!(matches!(store.get_or_create("customer-a"), Err(KeyError::Erased { .. })));
        assert!(!store.erase("customer-a").unwrap(), "erasing twice destroys nothing");

        assert_eq!(store.rotate(kek(3)).unwrap(), 1);
        drop(store);
        assert!(matches!(KeyStore::open(dir.path(), kek(1)), Err(KeyError::WrongKek { .. })));
        let store = KeyStore::open(dir.path(), kek(3)).unwrap();
        assert!(matches!(store.get("customer-b"), KeyState::Present(_)));
        assert!(matches!(store.get("customer-a"), KeyState::Erased), "erasure survives rotation");
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_a_damaged_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        for s in ["user-1", "user-2"] {
            let (_, t) = store.get_or_create(s).unwrap();
            store.make_durable(t).unwrap();
        }
        let path = store.journal_path();
        drop(store);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        assert_eq!(store.counts(), (1, 0), "the torn key is dropped");
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
