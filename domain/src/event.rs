//! How domain events become log records and back: kind names, schema versions, payload
//! bytes, and the one place where old payloads are upcast.
//!
//! Every aggregate's event enum is declared with [`events!`], which generates the kind name
//! (the variant name, past tense), the schema version, serialization to JSON payload bytes,
//! and decoding through [`upcast`]. A golden JSON sample per kind (`tests/golden/`) makes any
//! change of a payload's shape deliberate: change the shape, bump the schema, and teach
//! [`upcast`] to lift the old one.

use serde_json::Value;

/// Why stored event data could not become a domain event. This means the log holds
/// something this build does not understand: the caller reports the seq and stops.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No event enum has this kind.
    #[error("unknown event kind {kind:?}")]
    UnknownKind {
        /// The stored kind.
        kind: String,
    },
    /// The stored schema is newer than this build knows.
    #[error("{kind} schema {schema} is newer than this build's {known}")]
    FutureSchema {
        /// The kind.
        kind: String,
        /// The stored schema.
        schema: u32,
        /// The newest schema this build knows.
        known: u32,
    },
    /// The payload does not have the shape of its kind and schema.
    #[error("{kind} payload does not match its schema: {reason}")]
    Payload {
        /// The kind.
        kind: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// A domain event as the log stores it.
pub trait DomainEvent: Sized {
    /// Every kind of this enum with its current schema version.
    const KINDS: &'static [(&'static str, u32)];

    /// The kind name, e.g. `CustomerRegistered`.
    fn kind(&self) -> &'static str;

    /// The current schema version of this kind's payload.
    fn schema(&self) -> u32;

    /// The payload as JSON bytes.
    fn payload(&self) -> Vec<u8>;

    /// Decodes a stored event, upcasting older schemas.
    fn decode(kind: &str, schema: u32, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// Lifts a payload stored under `schema` to the `current` schema of `kind`.
///
/// Each step lifts one schema to the next; a kind whose shape changed has an arm for each of
/// its old schemas. Steps without an arm change nothing (a schema bump that only added an
/// optional field still gets an arm, so that the change is written down here).
pub fn upcast(kind: &str, schema: u32, current: u32, value: Value) -> Result<Value, DecodeError> {
    if schema > current || schema == 0 {
        return Err(DecodeError::FutureSchema { kind: kind.to_owned(), schema, known: current });
    }
    let mut value = value;
    let mut at = schema;
    while at < current {
        // UserLoginSucceeded 1 -> 2 added the hash of the session's bearer secret.
        if let (("UserLoginSucceeded", 1), Value::Object(fields)) = ((kind, at), &mut value) {
            fields.entry("token_hash").or_insert(Value::Null);
        }
        at += 1;
    }
    Ok(value)
}

/// Declares an aggregate's event enum: one variant per kind, each wrapping its payload
/// struct, with the schema version after `=`.
#[macro_export]
macro_rules! events {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident($payload:ty) = $schema:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant($payload)),+
        }

        impl $crate::event::DomainEvent for $name {
            const KINDS: &'static [(&'static str, u32)] = &[$((stringify!($variant), $schema)),+];

            fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => stringify!($variant)),+ }
            }

            fn schema(&self) -> u32 {
                match self { $(Self::$variant(_) => $schema),+ }
            }

            fn payload(&self) -> Vec<u8> {
                // Payload structs hold only strings, numbers, lists and string-keyed maps,
                // which always serialize.
                let encoded = match self { $(Self::$variant(p) => serde_json::to_vec(p)),+ };
                encoded.unwrap_or_default()
            }

            fn decode(kind: &str, schema: u32, payload: &[u8]) -> Result<Self, $crate::event::DecodeError> {
                let bad = |e: serde_json::Error| $crate::event::DecodeError::Payload { kind: kind.to_owned(), reason: e.to_string() };
                match kind {
                    $(stringify!($variant) => {
                        if schema == $schema {
                            // The current shape: no upcast, so no detour through a JSON tree.
                            return Ok(Self::$variant(serde_json::from_slice(payload).map_err(bad)?));
                        }
                        let value: serde_json::Value = serde_json::from_slice(payload).map_err(bad)?;
                        let value = $crate::event::upcast(kind, schema, $schema, value)?;
                        Ok(Self::$variant(serde_json::from_value(value).map_err(bad)?))
                    })+
                    _ => Err($crate::event::DecodeError::UnknownKind { kind: kind.to_owned() }),
                }
            }
        }
    };
}
