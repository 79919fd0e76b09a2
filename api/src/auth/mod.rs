//! Authentication: password hashing and policy, bearer tokens, and sign-in throttling.
//!
//! Invariants:
//! - Passwords are hashed with argon2id at the `argon2` crate's defaults (m = 19 MiB, t = 2,
//!   p = 1: the OWASP minimum), off the async runtime and behind a small semaphore, so that a
//!   flood of sign-ins cannot exhaust memory or starve other requests.
//! - A bearer token is `oacis_<session id>_<secret>`: 256 random bits of secret, of which only
//!   BLAKE3 is stored (in the session's `UserLoginSucceeded` event); it is compared in
//!   constant time.

pub mod password;
pub mod throttle;
pub mod token;
