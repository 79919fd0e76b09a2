//! Bearer tokens: `oacis_<session id, 32 hex digits>_<secret, 43 base64url characters>`.
//!
//! The secret is 32 bytes from the operating system's random source (256 bits); the log keeps
//! only BLAKE3 of it, in hex. Checking a token looks the session up by its id and compares
//! the hashes in constant time (`subtle`).

use oacis_domain::ids::EntryId;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::password::{base64_url, HashError};

/// A token as shown to the client once, with what is stored of it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The session it opens.
    pub session: EntryId,
    /// The whole token (never stored).
    pub token: String,
    /// BLAKE3 of the secret, hex (stored).
    pub hash: String,
}

/// A new token for a new session.
pub fn issue() -> Result<IssuedToken, HashError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| HashError(e.to_string()))?;
    let secret = base64_url(&secret);
    let session = EntryId(Uuid::now_v7());
    let hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
    Ok(IssuedToken { session, token: format!("oacis_{}_{secret}", session.0.simple()), hash })
}

/// The session id and the secret's hash of a presented token (`None` if malformed).
#[must_use]
pub fn parse(token: &str) -> Option<(EntryId, blake3::Hash)> {
    let rest = token.strip_prefix("oacis_")?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 43 {
        return None;
    }
    let session = Uuid::try_parse(id).ok()?;
    Some((EntryId(session), blake3::hash(secret.as_bytes())))
}

/// Whether the presented secret's hash equals the stored hex hash, in constant time.
#[must_use]
pub fn matches(presented: &blake3::Hash, stored_hex: &str) -> bool {
    let presented = presented.to_hex();
    presented.as_bytes().ct_eq(stored_hex.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_back_and_matches_only_its_own_hash() {
        let issued = issue().unwrap_or_else(|e| panic!("{e}"));
        let (session, hash) = parse(&issued.token).unwrap_or_else(|| panic!("parses"));
        assert_eq!(session, issued.session);
        assert!(matches(&hash, &issued.hash));
        let other = issue().unwrap_or_else(|e| panic!("{e}"));
        assert!(!matches(&hash, &other.hash));
        assert!(parse("oacis_zz_yy").is_none());
        assert!(parse(&issued.token.replace("oacis_", "bearer_")).is_none());
    }
}
