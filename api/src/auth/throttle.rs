//! Sign-in throttling by account and by client address (GCRA, the `governor` crate), applied
//! inside the sign-in resolver so that aliases and batched operations in one request each
//! count. Consecutive failures also lock the account through the domain (an event), which
//! holds across restarts; these rate limits bound how fast anyone can try.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Sign-in attempts allowed per minute, per account and per client address.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Per account (sign-in name, lower-cased).
    pub per_account_per_minute: u32,
    /// Per client address.
    pub per_address_per_minute: u32,
}

/// The two keyed limiters.
#[derive(Debug)]
pub struct Throttle {
    accounts: Keyed<String>,
    addresses: Keyed<IpAddr>,
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl Throttle {
    /// Limiters with `config`'s quotas.
    #[must_use]
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            accounts: RateLimiter::keyed(quota(config.per_account_per_minute)),
            addresses: RateLimiter::keyed(quota(config.per_address_per_minute)),
        }
    }

    /// Counts one attempt; `false` when either limit is exhausted.
    #[must_use]
    pub fn allow(&self, account: &str, address: Option<IpAddr>) -> bool {
        let address_ok = address.is_none_or(|a| self.addresses.check_key(&a).is_ok());
        address_ok && self.accounts.check_key(&account.trim().to_lowercase()).is_ok()
    }

    /// Counts one attempt against `account` alone (for guesses made from inside a session,
    /// where the client address adds nothing); `false` when its limit is exhausted.
    #[must_use]
    pub fn allow_account(&self, account: &str) -> bool {
        self.accounts.check_key(&account.trim().to_lowercase()).is_ok()
    }

    /// Forgets keys whose limits have fully recovered (call periodically).
    pub fn retain_recent(&self) {
        self.accounts.retain_recent();
        self.addresses.retain_recent();
    }
}
