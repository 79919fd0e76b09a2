//! What a decision may know besides the state and the command: who acts, when, and the
//! installation's settings that rules read (the region of national phone numbers).

use crate::ids::{Timestamp, UserId};
use crate::validate::Region;

/// The acting principal, the current time and the settings rules read, supplied by the
/// caller. The domain has no clock and no configuration of its own, so `decide` is a pure
/// function of its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Who issues the command (`None` for the system itself, e.g. at first start).
    pub actor: Option<UserId>,
    /// The time of the decision.
    pub now: Timestamp,
    /// The region whose numbering plan reads phone numbers written without a country code
    /// (default: China).
    pub phone_region: Region,
}

impl Context {
    /// A context for `actor` at `now`, reading national phone numbers in China.
    #[must_use]
    pub fn new(actor: Option<UserId>, now: Timestamp) -> Self {
        Context { actor, now, phone_region: Region::CN }
    }

    /// This context reading national phone numbers in `region` (the server's setting).
    #[must_use]
    pub fn with_phone_region(self, region: Region) -> Self {
        Context { phone_region: region, ..self }
    }
}
