//! Personal data sealed inside payloads: the one place this crate looks into a payload.
//!
//! Every JSON object member named [`PERSONAL_MEMBER`] whose value is an object (the domain
//! keeps each event's personal data there) is stored as `{"$sealed": "<base64url>"}`: the
//! member's JSON encrypted with the data key of the record's stream (the subject, see
//! [`crate::keys`]), with the record's stream, version, kind and the member's place in the
//! payload as associated data, so that a sealed value cannot be moved to another record. The
//! rest of the payload stays readable JSON, and the record's hash covers the sealed bytes.
//!
//! Invariants:
//! - A payload without such a member is stored exactly as given (no re-serialization).
//! - Opening gives back the member's JSON as it was sealed; for an erased subject it gives
//!   `{}` (every personal field empty); a value that does not open is an error, never empty.
//! - Sealing the same payload for the same record twice gives the same bytes (synthetic
//!   nonce), so a retried append is recognised as the same append.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::keys::{DataKey, KeyError, KeyState, KeyStore};

/// The payload member that holds personal data.
pub const PERSONAL_MEMBER: &str = "personal";
/// The member of a sealed value.
pub const SEALED_MEMBER: &str = "$sealed";

const AAD_CONTEXT: &[u8] = b"oacis personal data v1\0";

fn aad(stream: &str, version: u64, kind: &str, index: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_CONTEXT.len() + stream.len() + kind.len() + 14);
    out.extend_from_slice(AAD_CONTEXT);
    out.extend_from_slice(stream.as_bytes());
    out.push(0);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.push(0);
    out.extend_from_slice(&index.to_le_bytes());
    out
}

/// Whether `payload` may hold a member to seal (a cheap byte search; compact JSON, as the
/// domain writes it, has no space after the colon).
#[must_use]
pub fn may_hold_personal(payload: &[u8]) -> bool {
    memchr::memmem::find(payload, b"\"personal\":{").is_some()
}

/// Visits every object member named `personal` whose value is an object, depth first in
/// document order, with its index.
fn each_personal(
    value: &mut Value,
    index: &mut u32,
    visit: &mut dyn FnMut(u32, &mut Value) -> Result<(), KeyError>,
) -> Result<(), KeyError> {
    match value {
        Value::Object(map) => {
            for (name, member) in map.iter_mut() {
                if name == PERSONAL_MEMBER && member.is_object() {
                    visit(*index, member)?;
                    *index += 1;
                } else {
                    each_personal(member, index, visit)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| each_personal(item, index, visit)),
        _ => Ok(()),
    }
}

/// `payload` with its personal members sealed for the record (`stream`, `version`, `kind`),
/// creating the stream's key if it has none; `None` if there is nothing to seal. The second
/// value is the key store ticket to make durable before the record is appended (0: none).
///
/// # Errors
/// [`KeyError::Erased`] when the stream's personal data was erased; the key store's I/O errors.
pub fn seal(
    keys: &KeyStore,
    stream: &str,
    version: u64,
    kind: &str,
    payload: &[u8],
) -> Result<Option<(Vec<u8>, u64)>, KeyError> {
    if !may_hold_personal(payload) {
        return Ok(None);
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(payload) else { return Ok(None) };
    let mut key: Option<(DataKey, u64)> = None;
    let mut sealed_any = false;
    each_personal(&mut value, &mut 0, &mut |index, member| {
        if key.is_none() {
            key = Some(keys.get_or_create(stream)?);
        }
        let Some((data_key, _)) = &key else { return Ok(()) };
        let plain = serde_json::to_vec(member).unwrap_or_default();
        let sealed = data_key.seal(&aad(stream, version, kind, index), &plain);
        let mut envelope = Map::new();
        envelope.insert(
            SEALED_MEMBER.into(),
            Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)),
        );
        *member = Value::Object(envelope);
        sealed_any = true;
        Ok(())
    })?;
    if !sealed_any {
        return Ok(None);
    }
    let ticket = key.map_or(0, |(_, ticket)| ticket);
    Ok(Some((serde_json::to_vec(&value).unwrap_or_default(), ticket)))
}

/// `payload` with its sealed members opened (the stored bytes, borrowed, when nothing is
/// sealed). An erased stream's members open as `{}`.
///
/// # Errors
/// [`KeyError::Tampered`] when a sealed value does not open with its record's data;
/// [`KeyError::MissingKey`] when its stream has no key and was not erased (the key store is
/// not the one written with the log).
pub fn open<'a>(
    keys: &KeyStore,
    stream: &str,
    version: u64,
    kind: &str,
    payload: &'a [u8],
) -> Result<Cow<'a, [u8]>, KeyError> {
    if memchr::memmem::find(payload, b"\"$sealed\"").is_none() {
        return Ok(Cow::Borrowed(payload));
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(payload) else { return Ok(Cow::Borrowed(payload)) };
    let state = keys.get(stream);
    let tampered = || KeyError::Tampered { subject: stream.to_owned() };
    let mut opened_any = false;
    each_personal(&mut value, &mut 0, &mut |index, member| {
        let Some(Value::String(text)) = member.get(SEALED_MEMBER) else { return Ok(()) };
        let opened = match &state {
            KeyState::Present(key) => {
                let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| tampered())?;
                let plain = key.open(&aad(stream, version, kind, index), &sealed).ok_or_else(tampered)?;
                serde_json::from_slice(&plain).map_err(|_| tampered())?
            }
            KeyState::Erased => Value::Object(Map::new()),
            KeyState::Missing => return Err(KeyError::MissingKey { subject: stream.to_owned() }),
        };
        *member = opened;
        opened_any = true;
        Ok(())
    })?;
    if !opened_any {
        return Ok(Cow::Borrowed(payload));
    }
    Ok(Cow::Owned(serde_json::to_vec(&value).unwrap_or_default()))
}

/// The payload of `record`, opened with `keys` when there are keys (see [`open`]).
///
/// # Errors
/// As [`open`]; [`KeyError::NoKeyStore`] for sealed data read without keys (never read as
/// empty).
pub fn open_record<'a>(keys: Option<&KeyStore>, record: &crate::RecordRef<'a>) -> Result<Cow<'a, [u8]>, KeyError> {
    match keys {
        Some(keys) => open(keys, record.stream, record.version.0, record.kind, record.payload),
        None if memchr::memmem::find(record.payload, b"\"$sealed\"").is_some() => {
            Err(KeyError::NoKeyStore { subject: record.stream.to_owned() })
        }
        None => Ok(Cow::Borrowed(record.payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Kek, KEY_BYTES};

    #[test]
    fn personal_members_are_sealed_bound_to_their_record_and_opened_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::open(dir.path(), Kek::from_bytes(&[7; KEY_BYTES])).unwrap();
        let payload = br#"{"profile":{"name":"Wang Wei","personal":{"phones":["+8613800138000"]}},"owner":"u"}"#;
        let (sealed, ticket) = seal(&keys, "customer-1", 1, "CustomerRegistered", payload).unwrap().unwrap();
        assert!(ticket > 0, "a new key to make durable");
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(!text.contains("138001"), "{text}");
        assert!(text.contains("Wang Wei"), "the rest stays readable");
        let opened = open(&keys, "customer-1", 1, "CustomerRegistered", &sealed).unwrap();
        let back: Value = serde_json::from_slice(&opened).unwrap();
        assert_eq!(back, serde_json::from_slice::<Value>(payload).unwrap());
        // Moved to another record (version, stream or kind): refused, not emptied.
        assert!(matches!(open(&keys, "customer-1", 2, "CustomerRegistered", &sealed), Err(KeyError::Tampered { .. })));
        assert!(matches!(
            open(&keys, "customer-1", 1, "CustomerProfileUpdated", &sealed),
            Err(KeyError::Tampered { .. })
        ));
        assert!(matches!(open(&keys, "customer-2", 1, "CustomerRegistered", &sealed), Err(KeyError::Tampered { .. })));
        // Nothing personal: stored as given.
        assert!(seal(&keys, "customer-1", 2, "InteractionLogged", br#"{"note":"hi","personal":true}"#)
            .unwrap()
            .is_none());
        // Erased: every personal field empty, the rest intact.
        keys.erase("customer-1").unwrap();
        let opened = open(&keys, "customer-1", 1, "CustomerRegistered", &sealed).unwrap();
        let back: Value = serde_json::from_slice(&opened).unwrap();
        assert_eq!(back["profile"]["personal"], serde_json::json!({}));
        assert_eq!(back["profile"]["name"], "Wang Wei");
        assert!(matches!(
            seal(&keys, "customer-1", 2, "CustomerProfileUpdated", payload),
            Err(KeyError::Erased { .. })
        ));
    }
}
