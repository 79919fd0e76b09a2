//! Personal data sealed inside payloads: the one place this crate looks into a payload.
//!
//! Every JSON object member named [`PERSONAL_MEMBER`] whose value is an object (the domain
//! keeps each event's personal data there) is stored as
//! `{"$sealed2":"<base64url>","key":"<32 hex digits>"}`: the member's JSON text encrypted
//! with AES-256-GCM-SIV (RFC 8452, see [`crate::keys::DataKey::seal`]) under the data key of
//! the record's stream (the subject), named by its id. The nonce is the record's version
//! (8 bytes, little-endian) and the member's place in the payload (4 bytes, little-endian),
//! unique for every value one key seals (a key is given to one stream only) and derived again
//! on opening, so it is not stored. The associated data is the record's stream, version, kind
//! and the member's place, so that a sealed value cannot be moved to another record. The rest
//! of the payload stays as it was, and the record's hash covers the sealed bytes.
//!
//! Records sealed by the first format, `{"$sealed":"<base64url>","key":"..."}`
//! (XChaCha20-Poly1305 with a synthetic 24-byte nonce stored in front of the ciphertext),
//! still open; nothing is sealed that way any more.
//!
//! Payloads are rewritten at the byte level, never parsed into a tree: `"personal":{` and
//! `{"$sealed` can only appear in compact JSON as a member name and an object start
//! (inside a string their quotes would be escaped), and a member's object ends at the brace
//! that balances it outside strings.
//!
//! Invariants:
//! - A payload without such a member is stored exactly as given.
//! - Opening gives back the member's JSON text exactly as it was sealed; for a destroyed key
//!   (an erased subject) it gives `{}` (every personal field empty), and so for a key unknown
//!   to the key store when the key store marks the subject erased; a value that does not
//!   open, or whose key is unknown for a subject not erased, is an error, never empty.
//! - Sealing the same payload for the same record twice gives the same bytes (deterministic
//!   encryption, same key), so a retried append is recognised as the same append.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine as _;

use crate::keys::{DataKey, KeyError, KeyId, KeyState, KeyStore, SIV_NONCE, SIV_TAG};

/// The payload member that holds personal data.
pub const PERSONAL_MEMBER: &str = "personal";

const PERSONAL: &[u8] = b"\"personal\":{";
/// What every sealed value starts with, in both formats.
const SEALED_PREFIX: &[u8] = b"{\"$sealed";
/// The rest of the start of a value sealed with AES-256-GCM-SIV (the format written).
const GCM_SIV_REST: &[u8] = b"2\":\"";
/// The rest of the start of a value sealed with XChaCha20-Poly1305 (the first format).
const XCHACHA_REST: &[u8] = b"\":\"";
const KEY_PART: &[u8] = b"\",\"key\":\"";
const SEALED_END: &[u8] = b"\"}";
const AAD_GCM_SIV: &[u8] = b"oacis personal data v2\0";
const AAD_XCHACHA: &[u8] = b"oacis personal data v1\0";
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Searchers built once: every payload appended or read is searched, and building a
/// searcher costs more than searching a short payload.
static FIND_PERSONAL: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(PERSONAL));
static FIND_SEALED: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(SEALED_PREFIX));

/// The two ways a value is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// AES-256-GCM-SIV, nonce from the record: written now.
    GcmSiv,
    /// XChaCha20-Poly1305, stored synthetic nonce: the first format, opened only.
    XChaCha,
}

fn aad(scheme: Scheme, stream: &str, version: u64, kind: &str, index: u32) -> Vec<u8> {
    let context = match scheme {
        Scheme::GcmSiv => AAD_GCM_SIV,
        Scheme::XChaCha => AAD_XCHACHA,
    };
    let mut out = Vec::with_capacity(context.len() + stream.len() + kind.len() + 14);
    out.extend_from_slice(context);
    out.extend_from_slice(stream.as_bytes());
    out.push(0);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.push(0);
    out.extend_from_slice(&index.to_le_bytes());
    out
}

/// The nonce of the `index`th sealed member of the record at `version` of its stream.
fn nonce(version: u64, index: u32) -> [u8; SIV_NONCE] {
    let mut out = [0u8; SIV_NONCE];
    out[..8].copy_from_slice(&version.to_le_bytes());
    out[8..].copy_from_slice(&index.to_le_bytes());
    out
}

/// Whether `payload` holds a member to seal.
#[must_use]
pub fn may_hold_personal(payload: &[u8]) -> bool {
    FIND_PERSONAL.find(payload).is_some()
}

/// The end (exclusive) of the JSON object that starts at `bytes[0] == b'{'`: the brace that
/// balances it outside strings; `None` if it does not end.
fn object_end(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn push_hex(out: &mut Vec<u8>, id: &KeyId) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in id {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 15)]);
    }
}

fn parse_id(text: &[u8]) -> Option<KeyId> {
    let text = std::str::from_utf8(text).ok()?;
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// `payload` with its personal members sealed for the record (`stream`, `version`, `kind`)
/// with the stream's key (given to it now if it has none); `None` if there is nothing to seal.
///
/// # Errors
/// [`KeyError::Erased`] when the stream's personal data was erased; the key store's errors.
pub fn seal(
    keys: &KeyStore,
    stream: &str,
    version: u64,
    kind: &str,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, KeyError> {
    if !may_hold_personal(payload) {
        return Ok(None);
    }
    let mut key: Option<(KeyId, DataKey)> = None;
    let mut out = Vec::with_capacity(payload.len() + 128);
    let mut at = 0;
    let mut index = 0u32;
    while let Some(found) = FIND_PERSONAL.find(&payload[at..]) {
        let start = at + found + PERSONAL.len() - 1;
        let Some(len) = object_end(&payload[start..]) else { break };
        let member = &payload[start..start + len];
        if key.is_none() {
            match keys.key_for(stream) {
                Ok(found) => key = Some(found),
                // An erased subject's records hold no personal data (the domain keeps its
                // personal part empty): stored as it is, with nothing to seal.
                Err(KeyError::Erased { .. }) if holds_nothing(member) => {
                    out.extend_from_slice(&payload[at..start + len]);
                    at = start + len;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let Some((id, data_key)) = &key else { break };
        let sealed = data_key.seal(&nonce(version, index), &aad(Scheme::GcmSiv, stream, version, kind, index), member);
        out.extend_from_slice(&payload[at..start]);
        out.extend_from_slice(SEALED_PREFIX);
        out.extend_from_slice(GCM_SIV_REST);
        let text = out.len();
        out.resize(text + sealed.len().div_ceil(3) * 4, 0);
        let written = BASE64.encode_slice(&sealed, &mut out[text..]).unwrap_or_default();
        out.truncate(text + written);
        out.extend_from_slice(KEY_PART);
        push_hex(&mut out, id);
        out.extend_from_slice(SEALED_END);
        at = start + len;
        index += 1;
    }
    if index == 0 {
        return Ok(None);
    }
    out.extend_from_slice(&payload[at..]);
    Ok(Some(out))
}

/// Whether a personal member's JSON holds no data: every value in it null, `false`, an empty
/// string, or an empty array or object.
fn holds_nothing(member: &[u8]) -> bool {
    fn empty(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Null | serde_json::Value::Bool(false) => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(items) => items.is_empty(),
            serde_json::Value::Object(map) => map.values().all(empty),
            _ => false,
        }
    }
    serde_json::from_slice::<serde_json::Value>(member).is_ok_and(|v| empty(&v))
}

/// One sealed value found in a payload: where it is, how it was sealed, its ciphertext and
/// its key.
struct Envelope<'a> {
    start: usize,
    end: usize,
    scheme: Option<Scheme>,
    sealed: &'a [u8],
    key: Option<KeyId>,
}

fn envelopes(payload: &[u8]) -> impl Iterator<Item = Envelope<'_>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + FIND_SEALED.find(&payload[at..])?;
        let after = &payload[start + SEALED_PREFIX.len()..];
        let (scheme, rest) = if after.starts_with(GCM_SIV_REST) {
            (Some(Scheme::GcmSiv), GCM_SIV_REST.len())
        } else if after.starts_with(XCHACHA_REST) {
            (Some(Scheme::XChaCha), XCHACHA_REST.len())
        } else {
            (None, 0)
        };
        let body = start + SEALED_PREFIX.len() + rest;
        let quote = body + memchr::memchr(b'"', &payload[body..])?;
        let (key, end) = match payload[quote..].strip_prefix(KEY_PART) {
            Some(rest) if rest.len() >= 32 + SEALED_END.len() && rest[32..].starts_with(SEALED_END) => {
                (parse_id(&rest[..32]), quote + KEY_PART.len() + 32 + SEALED_END.len())
            }
            _ => (None, quote + 1),
        };
        at = end;
        Some(Envelope { start, end, scheme, sealed: &payload[body..quote], key })
    })
}

/// The ids of the keys that sealed `payload`'s values.
#[must_use]
pub fn key_ids(payload: &[u8]) -> Vec<KeyId> {
    envelopes(payload).filter_map(|e| e.key).collect()
}

/// `payload` with its sealed members opened (the stored bytes, borrowed, when nothing is
/// sealed). A member sealed with a destroyed key (an erased subject) opens as `{}`.
///
/// # Errors
/// [`KeyError::Tampered`] when a sealed value does not open with its record's data;
/// [`KeyError::MissingKey`] when its key is unknown to the key store (the key store is not
/// the one written with the log).
pub fn open<'a>(
    keys: &KeyStore,
    stream: &str,
    version: u64,
    kind: &str,
    payload: &'a [u8],
) -> Result<Cow<'a, [u8]>, KeyError> {
    if FIND_SEALED.find(payload).is_none() {
        return Ok(Cow::Borrowed(payload));
    }
    let tampered = || KeyError::Tampered { subject: stream.to_owned() };
    let mut out = Vec::with_capacity(payload.len());
    let mut at = 0;
    for (index, envelope) in (0u32..).zip(envelopes(payload)) {
        let (Some(id), Some(scheme)) = (envelope.key, envelope.scheme) else { return Err(tampered()) };
        out.extend_from_slice(&payload[at..envelope.start]);
        match keys.get(&id) {
            KeyState::Present(key) => {
                // Decoded and opened where the plaintext goes, without a buffer of its own.
                let text = out.len();
                out.resize(text + envelope.sealed.len().div_ceil(4) * 3, 0);
                let decoded = BASE64.decode_slice(envelope.sealed, &mut out[text..]).map_err(|_| tampered())?;
                out.truncate(text + decoded);
                let aad = aad(scheme, stream, version, kind, index);
                let opened = match scheme {
                    Scheme::GcmSiv => {
                        let split = decoded.checked_sub(SIV_TAG).ok_or_else(tampered)? + text;
                        let tag: [u8; SIV_TAG] = out[split..].try_into().map_err(|_| tampered())?;
                        out.truncate(split);
                        key.open_in_place(&nonce(version, index), &aad, &mut out[text..], &tag)
                    }
                    Scheme::XChaCha => {
                        let sealed = out.split_off(text);
                        key.open_xchacha(&aad, &sealed).map(|plain| out.extend_from_slice(&plain)).is_some()
                    }
                };
                if !opened {
                    return Err(tampered());
                }
            }
            KeyState::Destroyed => out.extend_from_slice(b"{}"),
            // An erased subject's keys were all destroyed when it was erased (the journal is
            // rewritten without them, and none is given to it again): one its key store does
            // not know lost its "destroyed" record (a journal cut short at its end).
            KeyState::Missing if keys.is_erased(stream) => out.extend_from_slice(b"{}"),
            KeyState::Missing => return Err(KeyError::MissingKey { subject: stream.to_owned() }),
            KeyState::Damaged => {
                return Err(KeyError::Damaged {
                    path: keys.journal_path(),
                    offset: 0,
                    reason: format!("the key {} of {stream}'s record does not unwrap", crate::keys::hex(&id)),
                })
            }
        }
        at = envelope.end;
    }
    out.extend_from_slice(&payload[at..]);
    Ok(Cow::Owned(out))
}

/// The payload of `record`, opened with `keys` when there are keys (see [`open`]).
///
/// # Errors
/// As [`open`]; [`KeyError::NoKeyStore`] for sealed data read without keys (never read as
/// empty).
pub fn open_record<'a>(keys: Option<&KeyStore>, record: &crate::RecordRef<'a>) -> Result<Cow<'a, [u8]>, KeyError> {
    match keys {
        Some(keys) => open(keys, record.stream, record.version.0, record.kind, record.payload),
        None if FIND_SEALED.find(record.payload).is_some() => {
            Err(KeyError::NoKeyStore { subject: record.stream.to_owned() })
        }
        None => Ok(Cow::Borrowed(record.payload)),
    }
}

/// `appends` with their personal members sealed ([`seal`]) with durable keys from `keys`
/// (unchanged without a key store). When fewer keys are ready than new subjects need, a
/// batch is made durable first (off the runtime); when they run low, the next batch is made
/// in the background (`refilling` says one is being made), so that no append waits for the
/// key store's disk. Shared by every backend, before an append is queued.
///
/// Errors: [`AppendError::PersonalDataNeedsVersion`] for personal data appended with
/// `ExpectedVersion::Any`; [`AppendError::Keys`] if the key store refuses (an erased subject)
/// or cannot write.
pub(crate) async fn seal_appends(
    keys: Option<&std::sync::Arc<KeyStore>>,
    refilling: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut appends: Vec<crate::StreamAppend>,
) -> Result<Vec<crate::StreamAppend>, crate::AppendError> {
    use std::sync::atomic::Ordering;

    use crate::{AppendError, Error, ExpectedVersion};

    let Some(keys) = keys.cloned() else { return Ok(appends) };
    let needed = appends
        .iter()
        .filter(|p| p.events.iter().any(|e| may_hold_personal(&e.payload)))
        .filter(|p| !keys.has_key(p.stream.as_str()))
        .count();
    if needed > 0 {
        let available = keys.available();
        if available < needed {
            // None to hand out: wait for a batch.
            let reserving = keys.clone();
            tokio::task::spawn_blocking(move || reserving.reserve(needed)).await.map_err(|_| Error::Closed)??;
        } else if available < crate::keys::KEY_BATCH / 2 && !refilling.swap(true, Ordering::AcqRel) {
            // Running low: make the next batch in the background, so that no append waits.
            let (reserving, refilling) = (keys.clone(), refilling.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = reserving.reserve(crate::keys::KEY_BATCH) {
                    tracing::warn!(error = %e, "could not make a batch of keys ahead of time");
                }
                refilling.store(false, Ordering::Release);
            });
        }
    }
    for part in &mut appends {
        let first = match part.expected {
            ExpectedVersion::Exact(v) => v.0 + 1,
            ExpectedVersion::NoStream => 1,
            ExpectedVersion::Any => {
                if part.events.iter().any(|e| may_hold_personal(&e.payload)) {
                    return Err(AppendError::PersonalDataNeedsVersion { stream: part.stream.clone() });
                }
                continue;
            }
        };
        for (version, event) in (first..).zip(part.events.iter_mut()) {
            if let Some(payload) = seal(&keys, part.stream.as_str(), version, event.kind.as_str(), &event.payload)? {
                event.payload = payload;
            }
        }
    }
    Ok(appends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Kek, KEY_BYTES};

    #[test]
    fn personal_members_are_sealed_bound_to_their_record_and_opened_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::open(dir.path(), Kek::from_bytes(&[7; KEY_BYTES])).unwrap();
        let payload = br#"{"owner":"u","profile":{"name":"Wang \"Wei\" {","personal":{"phones":["+8613800138000"],"note":"}\"{"},"tags":[]}}"#;
        let sealed = seal(&keys, "customer-1", 1, "CustomerRegistered", payload).unwrap().unwrap();
        assert_eq!(
            seal(&keys, "customer-1", 1, "CustomerRegistered", payload).unwrap().unwrap(),
            sealed,
            "deterministic"
        );
        let next = seal(&keys, "customer-1", 2, "CustomerRegistered", payload).unwrap().unwrap();
        assert_ne!(next, sealed, "the same value in the next record seals to other bytes (another nonce)");
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(!text.contains("138001"), "{text}");
        assert!(
            text.contains(r#""name":"Wang \"Wei\" {""#) && text.ends_with(r#","tags":[]}}"#),
            "the rest as it was: {text}"
        );
        serde_json::from_slice::<serde_json::Value>(&sealed).expect("still JSON");
        assert_eq!(key_ids(&sealed).len(), 1);
        let opened = open(&keys, "customer-1", 1, "CustomerRegistered", &sealed).unwrap();
        assert_eq!(&*opened, payload.as_slice(), "opens to the exact bytes");
        // Moved to another record (version, stream or kind): refused, not emptied.
        for (stream, version, kind) in [
            ("customer-1", 2, "CustomerRegistered"),
            ("customer-1", 1, "CustomerProfileUpdated"),
            ("customer-2", 1, "CustomerRegistered"),
        ] {
            assert!(matches!(open(&keys, stream, version, kind, &sealed), Err(KeyError::Tampered { .. })));
        }
        let mut altered = sealed.clone();
        let at = text.find("$sealed").unwrap() + 12;
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(open(&keys, "customer-1", 1, "CustomerRegistered", &altered), Err(KeyError::Tampered { .. })));
        // Nothing personal: stored as given.
        assert!(seal(&keys, "customer-1", 2, "InteractionLogged", br#"{"note":"\"personal\":{","personal":true}"#)
            .unwrap()
            .is_none());
        // Without keys, sealed data is an error, never empty.
        let other = KeyStore::open(tempfile::tempdir().unwrap().path(), Kek::from_bytes(&[7; KEY_BYTES])).unwrap();
        assert!(matches!(
            open(&other, "customer-1", 1, "CustomerRegistered", &sealed),
            Err(KeyError::MissingKey { .. })
        ));
        // Erased: every personal field empty, the rest intact.
        keys.erase("customer-1", &key_ids(&sealed)).unwrap();
        let opened = open(&keys, "customer-1", 1, "CustomerRegistered", &sealed).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&opened).unwrap();
        assert_eq!(back["profile"]["personal"], serde_json::json!({}));
        assert_eq!(back["profile"]["name"], "Wang \"Wei\" {");
        assert!(matches!(
            seal(&keys, "customer-1", 2, "CustomerProfileUpdated", payload),
            Err(KeyError::Erased { .. })
        ));
        // A key unknown to the key store: empty for the erased subject (its "destroyed" record
        // was lost), an error for any other.
        let hex: String = key_ids(&sealed)[0].iter().map(|b| format!("{b:02x}")).collect();
        let unknown = String::from_utf8(sealed.clone()).unwrap().replace(&hex, &"ab".repeat(16));
        let opened = open(&keys, "customer-1", 1, "CustomerRegistered", unknown.as_bytes()).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&opened).unwrap()["profile"]["personal"],
            serde_json::json!({})
        );
        assert!(matches!(
            open(&keys, "customer-2", 1, "CustomerRegistered", unknown.as_bytes()),
            Err(KeyError::MissingKey { .. })
        ));
        // An erased subject's record with an empty personal part is stored as it is.
        let emptied = br#"{"profile":{"name":"Zed","personal":{"phones":[],"id_number":null,"addresses":[]}}}"#;
        assert!(seal(&keys, "customer-1", 2, "CustomerProfileUpdated", emptied).unwrap().is_none());
    }
}
