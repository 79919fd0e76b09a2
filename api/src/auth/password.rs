//! Password hashing (argon2id, PHC strings) and the password policy.
//!
//! Policy: at least [`MIN_LENGTH`] characters, at least three of four character classes
//! (lower case, upper case, digits, anything else), not containing the username or employee
//! number (case-insensitive), and not one of the last `PASSWORD_HISTORY` passwords.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Shortest password, in characters.
pub const MIN_LENGTH: usize = 10;
/// Longest password, in bytes (argon2 accepts more; nobody types more).
pub const MAX_BYTES: usize = 256;
/// Hashes computed at once.
const CONCURRENT_HASHES: usize = 2;

/// Why hashing failed (an internal error: the parameters are fixed).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(pub String);

/// argon2id hashing off the async runtime, at most [`CONCURRENT_HASHES`] at once.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user is unknown, so that a
    /// wrong username takes as long as a wrong password.
    decoy: Arc<String>,
}

impl Hasher {
    /// A hasher, with its decoy hash computed now.
    pub async fn new() -> Result<Self, HashError> {
        let permits = Arc::new(Semaphore::new(CONCURRENT_HASHES));
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| HashError(e.to_string()))?;
        let decoy = blocking_hash(base64_url(&secret)).await?;
        Ok(Hasher { permits, decoy: Arc::new(decoy) })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        blocking_hash(password.to_owned()).await
    }

    /// Whether `password` matches `phc` (against the decoy when `phc` is `None`, answering
    /// false).
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let known = phc.is_some();
        let phc = phc.map_or_else(|| self.decoy.as_str().to_owned(), str::to_owned);
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .map_err(|e| HashError(e.to_string()))?;
        Ok(ok && known)
    }

    /// Whether `password` matches any of `phcs` (for the history rule).
    pub async fn matches_any(&self, password: &str, phcs: &[String]) -> Result<bool, HashError> {
        for phc in phcs {
            if self.verify(password, Some(phc)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

async fn blocking_hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Base64url without padding (RFC 4648 §5).
#[must_use]
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `password` meets the policy for a user with these names; the problems in words.
#[must_use]
pub fn policy_problems(password: &str, username: &str, employee_no: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if password.chars().count() < MIN_LENGTH {
        problems.push("must have at least 10 characters");
    }
    if password.len() > MAX_BYTES {
        problems.push("must have at most 256 bytes");
    }
    let classes = [
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        problems.push("must mix at least three of: lower case, upper case, digits, symbols");
    }
    let lower = password.to_lowercase();
    // Names of fewer than three characters would forbid half of all passwords.
    let contains = |name: &str| name.chars().count() >= 3 && lower.contains(&name.to_lowercase());
    if contains(username) || contains(employee_no) {
        problems.push("must not contain the username or employee number");
    }
    problems
}

/// A generated password that meets the policy: 22 characters of base64url (128 random
/// bits), drawn again until three kinds of character are mixed (almost always the first
/// draw), with no fixed part.
///
/// # Errors
/// [`HashError`] when the system's random source fails.
pub fn generate() -> Result<String, HashError> {
    loop {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| HashError(e.to_string()))?;
        let password = base64_url(&bytes);
        if policy_problems(&password, "", "").is_empty() {
            return Ok(password);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_every_problem() {
        assert!(policy_problems("Correct-Horse-42", "zhang.wei", "E-00042").is_empty());
        assert_eq!(policy_problems("short1A", "x", "y"), ["must have at least 10 characters"]);
        assert_eq!(policy_problems("alllowercaseletters", "x", "y").len(), 1);
        assert_eq!(
            policy_problems("Zhang.Wei-2026!", "zhang.wei", "E-1"),
            ["must not contain the username or employee number"]
        );
        assert_eq!(policy_problems("Password-e-00042", "someone", "E-00042").len(), 1);
        assert!(policy_problems(&generate().unwrap_or_default(), "admin", "0").is_empty());
        // No fixed part: a thousand draws share no suffix, and each is new.
        let drawn: std::collections::BTreeSet<String> = (0..1_000).map(|_| generate().unwrap_or_default()).collect();
        assert_eq!(drawn.len(), 1_000);
        let ends: std::collections::BTreeSet<&str> = drawn.iter().map(|p| &p[p.len() - 3..]).collect();
        assert!(ends.len() > 900, "{} distinct endings", ends.len());
        assert!(drawn.iter().all(|p| policy_problems(p, "", "").is_empty()));
    }
}
