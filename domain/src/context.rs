//! What a decision may know besides the state and the command: who acts and when.

use crate::ids::{Timestamp, UserId};

/// The acting principal and the current time, supplied by the caller. The domain has no
/// clock of its own, so `decide` is a pure function of its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Who issues the command (`None` for the system itself, e.g. at first start).
    pub actor: Option<UserId>,
    /// The time of the decision.
    pub now: Timestamp,
}

impl Context {
    /// A context for `actor` at `now`.
    #[must_use]
    pub fn new(actor: Option<UserId>, now: Timestamp) -> Self {
        Context { actor, now }
    }
}
