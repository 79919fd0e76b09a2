//! Signed checkpoints: the durable record of the acknowledged head, grown by the Merkle root
//! at that head and an Ed25519 signature (RFC 8032), kept outside the storage engine's files.
//!
//! A hash chain shows a changed record but not a missing tail: a log cut short at seq N
//! verifies as well as the full one. The checkpoint is the outside witness. It says "the log
//! held at least `tree_size` records, the last of them had hash `head_hash`, and the Merkle
//! tree over them (`crate::merkle`) had root `merkle_root`", signed with the store's
//! checkpoint key so that a copy kept elsewhere cannot be forged. Opening a store (and
//! `oacis verify --data`) compares the log against the latest one and against every kept one.
//!
//! The files in the data folder:
//!
//! - `checkpoint`: the latest checkpoint, rewritten at a bounded interval while appends are
//!   acknowledged ([`INTERVAL`]), at clean shutdown, on demand and when the store opens. Two
//!   lines: the checkpoint's JSON line and the BLAKE3 hex of that line (so that its own damage
//!   is told apart from a forged signature).
//! - `checkpoints`: every kept checkpoint, one JSON line each, appended (and fdatasynced) every
//!   [`KEEP_INTERVAL`] while the head moves, on demand, and at clean shutdown. A later log is
//!   checked against each of them.
//! - `checkpoint.key`: the Ed25519 private key (its 32-byte seed in hex), generated on first
//!   open with owner-only permissions. Its public key is what auditors hold.
//! - `checkpoint.trusted` (only in a restored folder): the ids of other keys whose kept
//!   checkpoints the folder holds, those of the backups it was restored from. Kept checkpoints
//!   of any other key make the open fail (the key or the line was replaced).
//!
//! A checkpoint's JSON line (`FORMAT.md` has the exact rules):
//!
//! ```text
//! {"format":"oacis-checkpoint/2","tree_size":42,"head_hash":"<64 hex>","merkle_root":"<64 hex>",
//!  "issued_at":"2026-11-30T07:00:00.000000Z","key_id":"<16 hex>","signature":"<128 hex>"}
//! ```
//!
//! and the signature covers [`Checkpoint::message`], six lines of text. Format 1 (an unsigned
//! head record without root) is still read; the next write replaces it with format 2.
//!
//! Invariants:
//! - A checkpoint names only a durable head: it is written after the fdatasync that made
//!   `tree_size` records durable, never before.
//! - `checkpoint` is written atomically (temporary file, fsync, rename, fsync of the folder);
//!   a reader sees the old record or the new one. A kept checkpoint is appended whole and
//!   fdatasynced; a torn last line (a crash mid-append) is dropped on the next append.
//! - Damage is detected and reported, never ignored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Hash32, Seq, Timestamp};
use crate::store::Head;

/// File name of the latest checkpoint in a data folder.
pub const FILE_NAME: &str = "checkpoint";
/// File name of the kept checkpoints in a data folder.
pub const KEPT_FILE_NAME: &str = "checkpoints";
/// File name of the checkpoint signing key in a data folder.
pub const KEY_FILE_NAME: &str = "checkpoint.key";

/// Format tag of the checkpoints this build writes.
pub const FORMAT: &str = "oacis-checkpoint/2";
/// The unsigned head record of earlier builds, still read.
const FORMAT_V1: &str = "oacis-checkpoint/1";

/// Default detection window (`SledConfig::checkpoint_interval`): every acknowledged record is
/// in the latest checkpoint at most this long after its acknowledgement (in practice within
/// three quarters of it: a thread looks every quarter interval and rewrites the checkpoint when
/// the head moved and the last one is half an interval old). So at most this much
/// acknowledged history can be lost without the next open noticing.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Default interval between kept checkpoints (`SledConfig::checkpoint_keep_every`) while the
/// head moves: 10 minutes, about 144 lines (some 40 KB) a day.
pub const KEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Largest `checkpoint` file accepted, in bytes.
const MAX_FILE_BYTES: u64 = 4 * 1024;

/// The checkpoint signing key (Ed25519), kept in the data folder, never in the log.
pub struct CheckpointKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", self.public.key_id())
    }
}

impl CheckpointKey {
    /// The key in `dir`'s `checkpoint.key`, created (owner-only, fsynced) if absent; answers
    /// whether it was created.
    ///
    /// # Errors
    /// [`Error::CheckpointKey`] naming the key file if it cannot be read, written or parsed.
    pub fn load_or_create(dir: &Path) -> Result<(CheckpointKey, bool)> {
        let file = dir.join(KEY_FILE_NAME);
        let (seed, created) = crate::keys::secret_file(&file)
            .map_err(|e| Error::CheckpointKey { file: file.clone(), problem: e.to_string() })?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&file) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %file.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the checkpoint signing key is readable by others; chmod 600 it");
            }
        }
        Ok((CheckpointKey::from_seed(&seed), created))
    }

    /// The key in the file `path` (64 hex digits), which must exist.
    ///
    /// # Errors
    /// [`Error::CheckpointKey`] naming the file if it cannot be read or parsed.
    pub fn read(path: &Path) -> Result<CheckpointKey> {
        let bad = |problem: String| Error::CheckpointKey { file: path.to_owned(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let seed = crate::keys::parse_hex_key(&text, &path.display().to_string()).map_err(|e| bad(e.to_string()))?;
        Ok(CheckpointKey::from_seed(&seed))
    }

    /// The key whose 32-byte seed (RFC 8032 §5.1.5) is `seed`.
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> CheckpointKey {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key());
        CheckpointKey { signing, public }
    }

    /// A 32-byte secret for keyed digests of files kept beside the log (BLAKE3 `derive_key`
    /// of `context` over the seed): whoever can make it could also sign checkpoints.
    #[must_use]
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, self.signing.as_bytes())
    }

    /// Its public key.
    #[must_use]
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The 32-byte seed as 64 lower-case hex digits (the form of `checkpoint.key`).
    #[must_use]
    pub fn seed_hex(&self) -> String {
        encode_hex(self.signing.as_bytes())
    }

    /// An Ed25519 signature of `message` (used for checkpoints and backup manifests, whose
    /// messages start with their own format tags, so that one cannot pass for the other).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// An Ed25519 public key that checks checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 64 hex digits (the 32-byte key of RFC 8032 §5.1.5; white space around ignored).
    #[must_use]
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        let bytes = decode_hex::<32>(text.trim())?;
        VerifyingKey::from_bytes(&bytes).ok().map(PublicKey)
    }

    /// The key as 64 lower-case hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        encode_hex(self.0.as_bytes())
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    #[must_use]
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
    }

    /// Its id: the first 8 bytes of BLAKE3 of the 32 key bytes, as 16 lower-case hex digits.
    #[must_use]
    pub fn key_id(&self) -> String {
        encode_hex(&blake3::hash(self.0.as_bytes()).as_bytes()[..8])
    }
}

/// Why a checkpoint's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A format-1 head record carries no signature.
    #[error("the checkpoint is not signed (format 1)")]
    Unsigned,
    /// It names another key than the one given.
    #[error("the checkpoint names key {found}; the key given is {expected}")]
    OtherKey {
        /// The key id the checkpoint names.
        found: String,
        /// The id of the key given.
        expected: String,
    },
    /// The signature does not verify over the checkpoint's message.
    #[error("the signature does not verify")]
    Invalid,
}

/// The root, time and signature a format-2 checkpoint adds to the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The Merkle root over the first `tree_size` records (RFC 9162 structure, BLAKE3).
    pub merkle_root: Hash32,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// The signing key's id ([`PublicKey::key_id`]).
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::message`], 64 bytes.
    pub signature: [u8; 64],
}

/// A checkpoint: the acknowledged head, and (format 2) its Merkle root, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Tree size (the head's seq) and the hash of the record at that seq.
    pub head: Head,
    /// Root and signature; `None` only for a format-1 record read from an older folder.
    pub signed: Option<Signed>,
}

/// The checkpoint as stored, fields in file order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    tree_size: u64,
    head_hash: String,
    merkle_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
    key_id: Option<String>,
    signature: Option<String>,
}

impl Checkpoint {
    /// An unsigned (format-1) record of `head`.
    #[must_use]
    pub fn unsigned(head: Head) -> Checkpoint {
        Checkpoint { head, signed: None }
    }

    /// The text that is signed: six lines, each ended by `\n`:
    /// `oacis-checkpoint/2`, `tree_size <decimal>`, `head_hash <64 hex>`,
    /// `merkle_root <64 hex>`, `issued_at <RFC 3339, 6 fractional digits, Z>`, `key_id <16 hex>`.
    #[must_use]
    pub fn message(head: Head, merkle_root: &Hash32, issued_at: &str, key_id: &str) -> String {
        format!(
            "{FORMAT}\ntree_size {}\nhead_hash {}\nmerkle_root {merkle_root}\nissued_at {issued_at}\nkey_id {key_id}\n",
            head.seq.0, head.hash
        )
    }

    /// A checkpoint of `head` with root `merkle_root`, issued at `issued_at` (clamped to years
    /// 0000-9999) and signed with `key`.
    #[must_use]
    pub fn sign(head: Head, merkle_root: Hash32, issued_at: Timestamp, key: &CheckpointKey) -> Checkpoint {
        let issued_at = issued_at.clamp(Timestamp::MIN_LOGGED, Timestamp::MAX_LOGGED);
        let key_id = key.public.key_id();
        let text = issued_at.to_rfc3339().unwrap_or_default();
        let signature = key.sign(Checkpoint::message(head, &merkle_root, &text, &key_id).as_bytes());
        Checkpoint { head, signed: Some(Signed { merkle_root, issued_at, key_id, signature }) }
    }

    /// Checks the signature with `key`.
    ///
    /// # Errors
    /// [`SignatureError`]: unsigned, signed by another key, or not verifying.
    pub fn verify(&self, key: &PublicKey) -> std::result::Result<(), SignatureError> {
        let signed = self.signed.as_ref().ok_or(SignatureError::Unsigned)?;
        if signed.key_id != key.key_id() {
            return Err(SignatureError::OtherKey { found: signed.key_id.clone(), expected: key.key_id() });
        }
        let text = signed.issued_at.to_rfc3339().ok_or(SignatureError::Invalid)?;
        let message = Checkpoint::message(self.head, &signed.merkle_root, &text, &signed.key_id);
        if key.verifies(message.as_bytes(), &signed.signature) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// The checkpoint's JSON line, without newline (format 2, or 1 if unsigned).
    #[must_use]
    pub fn to_line(&self) -> String {
        let stored = match &self.signed {
            None => Stored {
                format: FORMAT_V1.to_owned(),
                tree_size: self.head.seq.0,
                head_hash: self.head.hash.to_hex(),
                merkle_root: None,
                issued_at: None,
                key_id: None,
                signature: None,
            },
            Some(signed) => Stored {
                format: FORMAT.to_owned(),
                tree_size: self.head.seq.0,
                head_hash: self.head.hash.to_hex(),
                merkle_root: Some(signed.merkle_root.to_hex()),
                issued_at: signed.issued_at.to_rfc3339(),
                key_id: Some(signed.key_id.clone()),
                signature: Some(encode_hex(&signed.signature)),
            },
        };
        // Strings and integers only: encoding cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// [`Checkpoint::from_line`] for a line handed to a verifier: it must also be written
    /// exactly as [`Checkpoint::to_line`] writes it (member order, no spaces), the one form
    /// the project publishes, as export lines must be canonical.
    ///
    /// # Errors
    /// As [`Checkpoint::from_line`], or that the line is not in that form.
    pub fn from_exact_line(line: &str) -> std::result::Result<Checkpoint, String> {
        let checkpoint = Checkpoint::from_line(line)?;
        if checkpoint.to_line() != line {
            return Err("not written as a checkpoint line is (member order, no spaces; FORMAT.md)".into());
        }
        Ok(checkpoint)
    }

    /// Parses a checkpoint's JSON line (either format). The error says which field is wrong.
    ///
    /// # Errors
    /// A description of the first problem found.
    pub fn from_line(line: &str) -> std::result::Result<Checkpoint, String> {
        let stored: Stored = serde_json::from_str(line).map_err(|e| format!("unreadable: {e}"))?;
        let hash = |field: &str, text: &str| {
            Hash32::from_hex(text).ok_or_else(|| format!("{field} is not 64 lower-case hex digits"))
        };
        let head = Head { seq: Seq(stored.tree_size), hash: hash("head_hash", &stored.head_hash)? };
        match stored.format.as_str() {
            FORMAT_V1 => Ok(Checkpoint::unsigned(head)),
            FORMAT => {
                let need = |field: &str, value: Option<String>| value.ok_or_else(|| format!("{field} is missing"));
                let merkle_root = hash("merkle_root", &need("merkle_root", stored.merkle_root)?)?;
                let issued_at = Timestamp::parse_rfc3339(&need("issued_at", stored.issued_at)?)
                    .ok_or("issued_at is not RFC 3339 with six fractional digits and Z")?;
                let key_id = need("key_id", stored.key_id)?;
                if key_id.len() != 16 || decode_hex::<8>(&key_id).is_none() {
                    return Err("key_id is not 16 lower-case hex digits".into());
                }
                let signature = decode_hex::<64>(&need("signature", stored.signature)?)
                    .ok_or("signature is not 128 lower-case hex digits")?;
                Ok(Checkpoint { head, signed: Some(Signed { merkle_root, issued_at, key_id, signature }) })
            }
            other => Err(format!("format {other:?}; this build reads {FORMAT:?} and {FORMAT_V1:?}")),
        }
    }

    /// The Merkle root, if signed.
    #[must_use]
    pub fn merkle_root(&self) -> Option<Hash32> {
        self.signed.as_ref().map(|s| s.merkle_root)
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `2 * N` lower-case hex digits as `N` bytes (`None` for anything else).
#[must_use]
pub fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// File name of the other keys whose checkpoints a data folder keeps (one key id per line):
/// written by a restore for the key that signed the restored backups.
pub const TRUSTED_KEYS_FILE_NAME: &str = "checkpoint.trusted";

/// The key ids `dir` trusts besides its own (none if the file is absent).
#[must_use]
pub fn trusted_keys(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(TRUSTED_KEYS_FILE_NAME))
        .map(|text| text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Records that `dir` keeps checkpoints of `key_id` (written once, by a restore).
pub fn trust_key(dir: &Path, key_id: &str) -> Result<()> {
    let path = dir.join(TRUSTED_KEYS_FILE_NAME);
    let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    file.write_all(format!("{key_id}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&path, e))
}

/// Path of the latest checkpoint in data folder `dir`.
#[must_use]
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Path of the kept checkpoints in data folder `dir`.
#[must_use]
pub fn kept_path_in(dir: &Path) -> PathBuf {
    dir.join(KEPT_FILE_NAME)
}

/// Reads the latest checkpoint in `dir`: `None` if there is none, [`Error::HeadRecord`] if it
/// is damaged or of another format.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    let file = path_in(dir);
    let bad = |problem: String| Error::HeadRecord { file: file.clone(), problem };
    let size = match std::fs::metadata(&file) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&file, e)),
    };
    if size > MAX_FILE_BYTES {
        return Err(bad(format!("{size} bytes; at most {MAX_FILE_BYTES}")));
    }
    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".into()))?;
    let Some((line, rest)) = text.split_once('\n') else { return Err(bad("no checksum line".into())) };
    if rest.strip_suffix('\n') != Some(blake3::hash(line.as_bytes()).to_hex().as_str()) {
        return Err(bad("checksum does not match".into()));
    }
    Checkpoint::from_line(line).map(Some).map_err(bad)
}

/// Writes `checkpoint` as the latest checkpoint of `dir`, atomically and durably.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let line = checkpoint.to_line();
    let text = format!("{line}\n{}\n", blake3::hash(line.as_bytes()).to_hex());
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = crate::files::create_fresh(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&temporary, e))?;
    drop(file);
    let target = path_in(dir);
    std::fs::rename(&temporary, &target).map_err(|e| Error::io(&target, e))?;
    File::open(dir).and_then(|folder| folder.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Every kept checkpoint in `dir`, oldest first (none if the file is absent). A last line
/// without its newline (an append cut by a crash, never acknowledged) is left out.
///
/// # Errors
/// [`Error::HeadRecord`] naming the line of a complete line that does not parse, is unsigned,
/// or whose sizes go backwards.
pub fn read_kept(dir: &Path) -> Result<Vec<Checkpoint>> {
    let file = kept_path_in(dir);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&file, e)),
    };
    let bad =
        |n: usize, problem: String| Error::HeadRecord { file: file.clone(), problem: format!("line {n}: {problem}") };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
    let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| bad(0, format!("not UTF-8: {e}")))?;
    let mut kept: Vec<Checkpoint> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let checkpoint = Checkpoint::from_line(line).map_err(|problem| bad(i + 1, problem))?;
        if checkpoint.signed.is_none() {
            return Err(bad(i + 1, "not signed".into()));
        }
        if kept.last().is_some_and(|last| last.head.seq > checkpoint.head.seq) {
            return Err(bad(i + 1, "tree size below the line before".into()));
        }
        kept.push(checkpoint);
    }
    Ok(kept)
}

/// Appends `checkpoint` to `dir`'s kept checkpoints and fdatasyncs it, first cutting off a
/// torn last line left by a crash.
pub fn keep(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let path = kept_path_in(dir);
    let io = |e| Error::io(&path, e);
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(io)?;
    let length = file.metadata().map_err(io)?.len();
    if length > 0 {
        let bytes = std::fs::read(&path).map_err(io)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
        if complete as u64 != length {
            file.set_len(complete as u64).map_err(io)?;
        }
    }
    let created = length == 0;
    file.write_all(format!("{}\n", checkpoint.to_line()).as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)?;
    if created {
        File::open(dir).and_then(|folder| folder.sync_all()).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// What a call to [`Recorder::record`] must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occasion {
    /// The checkpoint thread's tick: write if the head moved and one is due; keep if due.
    Tick,
    /// Open and clean shutdown: write and keep if the head moved.
    Boundary,
    /// On demand: write and keep now (unless the last kept one has this very head).
    Demand,
}

/// What the recorder last did.
#[derive(Debug)]
struct Last {
    written: Checkpoint,
    written_at: Instant,
    kept_size: Seq,
    kept: Option<Checkpoint>,
    kept_at: Instant,
}

/// Signs and writes checkpoints for one store: from the store's checkpoint thread, at
/// shutdown, and on demand.
#[derive(Debug)]
pub(crate) struct Recorder {
    dir: PathBuf,
    interval: Duration,
    keep_every: Duration,
    key: Arc<CheckpointKey>,
    /// The lock also keeps two writers from racing.
    last: std::sync::Mutex<Last>,
}

impl Recorder {
    /// A recorder for `dir`, whose latest checkpoint is `written` and last kept one `kept`.
    pub(crate) fn new(
        dir: PathBuf,
        key: Arc<CheckpointKey>,
        written: Checkpoint,
        kept: Option<Checkpoint>,
        interval: Duration,
        keep_every: Duration,
    ) -> Recorder {
        let now = Instant::now();
        let kept_size = kept.as_ref().map_or(Seq::ZERO, |k| k.head.seq);
        Recorder {
            dir,
            interval,
            keep_every,
            key,
            last: std::sync::Mutex::new(Last { written, written_at: now, kept_size, kept, kept_at: now }),
        }
    }

    /// How often the checkpoint thread calls [`Recorder::record`]: a quarter interval, but not
    /// more often than every 10 ms.
    pub(crate) fn tick(&self) -> Duration {
        (self.interval / 4).max(Duration::from_millis(10))
    }

    /// The latest checkpoint written.
    pub(crate) fn latest(&self) -> Checkpoint {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).written.clone()
    }

    /// The public key that checks this recorder's signatures.
    pub(crate) fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    /// The signing key.
    pub(crate) fn key(&self) -> &CheckpointKey {
        &self.key
    }

    /// Records the durable `head` (whose Merkle root `root_of` gives) as `occasion` asks, and
    /// answers the latest checkpoint. A tick skips if another thread is writing one.
    pub(crate) fn record(
        &self,
        head: Head,
        root_of: impl Fn(Seq) -> Result<Hash32>,
        occasion: Occasion,
    ) -> Result<Checkpoint> {
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            Err(std::sync::TryLockError::WouldBlock) if occasion == Occasion::Tick => {
                return Ok(self.latest());
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            }
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let moved = head.seq > last.written.head.seq || last.written.signed.is_none();
        let write_due = match occasion {
            Occasion::Tick => moved && last.written_at.elapsed() >= self.interval / 2,
            Occasion::Boundary => moved,
            Occasion::Demand => moved || last.kept_size < head.seq,
        };
        if write_due {
            let checkpoint = Checkpoint::sign(head, root_of(head.seq)?, Timestamp::now(), &self.key);
            write(&self.dir, &checkpoint)?;
            last.written = checkpoint;
            last.written_at = Instant::now();
        }
        let keep_due = last.kept_size < last.written.head.seq
            && match occasion {
                Occasion::Tick => last.kept_at.elapsed() >= self.keep_every,
                Occasion::Boundary | Occasion::Demand => true,
            };
        if keep_due {
            keep(&self.dir, &last.written)?;
            last.kept_size = last.written.head.seq;
            last.kept = Some(last.written.clone());
            last.kept_at = Instant::now();
        }
        Ok(last.written.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(seq: u64) -> (Checkpoint, CheckpointKey) {
        let key = CheckpointKey::from_seed(&[3; 32]);
        let head = Head { seq: Seq(seq), hash: Hash32([7; 32]) };
        (Checkpoint::sign(head, Hash32([9; 32]), Timestamp(1_700_000_000_000_000), &key), key)
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_any_changed_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).expect("no file").is_none());
        let (checkpoint, key) = signed(42);
        write(dir.path(), &checkpoint).expect("write");
        let back = read(dir.path()).expect("read").expect("present");
        assert_eq!(back, checkpoint);
        back.verify(key.public()).expect("signature");
        let bytes = std::fs::read(path_in(dir.path())).expect("bytes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(path_in(dir.path()), &bad).expect("damage");
            assert!(matches!(read(dir.path()), Err(Error::HeadRecord { .. })), "byte {i}");
        }
    }

    #[test]
    fn a_signature_fails_for_any_changed_field_and_for_another_key() {
        let (checkpoint, key) = signed(42);
        let line = checkpoint.to_line();
        for (field, from, to) in [
            ("tree_size", "\"tree_size\":42", "\"tree_size\":43"),
            ("head_hash", "0707", "0708"),
            ("merkle_root", "0909", "0908"),
            ("issued_at", "2023-11-14T22:13:20.000000Z", "2023-11-14T22:13:20.000001Z"),
        ] {
            let forged = Checkpoint::from_line(&line.replacen(from, to, 1)).expect("parses");
            assert_eq!(forged.verify(key.public()), Err(SignatureError::Invalid), "{field}");
        }
        let other = CheckpointKey::from_seed(&[4; 32]);
        assert!(matches!(checkpoint.verify(other.public()), Err(SignatureError::OtherKey { .. })));
        assert_eq!(Checkpoint::unsigned(checkpoint.head).verify(key.public()), Err(SignatureError::Unsigned));
    }

    #[test]
    fn kept_checkpoints_survive_a_torn_last_line_and_refuse_a_damaged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = signed(5);
        let (second, _) = signed(9);
        keep(dir.path(), &first).expect("keep");
        let path = kept_path_in(dir.path());
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"format\":\"oacis-che").expect("torn");
        assert_eq!(read_kept(dir.path()).expect("read"), vec![first.clone()]);
        keep(dir.path(), &second).expect("keep after torn");
        assert_eq!(read_kept(dir.path()).expect("read"), vec![first, second]);
        let text = std::fs::read_to_string(&path).expect("text").replacen("\"tree_size\":9", "\"tree_size\":x", 1);
        std::fs::write(&path, text).expect("damage");
        let error = read_kept(dir.path()).expect_err("damaged");
        assert!(error.to_string().contains("line 2"), "{error}");
    }
}
