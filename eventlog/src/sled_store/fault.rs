//! Failure injection at the writer's three durability steps, for tests that prove a failed
//! write or flush is never acknowledged and stops the writer; and a panic while the store
//! opens, standing in for sled's panics on damaged files, for the test of their containment.

use std::sync::atomic::{AtomicU64, Ordering};

/// A step of the writer's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSite {
    /// Applying the group's batch to sled.
    Apply,
    /// sled's flush of its log.
    Flush,
    /// The fdatasync of sled's data file.
    Sync,
    /// Reading the store while it opens (after sled opened it): arriving here panics, as
    /// sled 0.34 does on some damaged files.
    OpenPanic,
}

/// Makes the writer fail at `site` the `nth` time it gets there (1 = the first time).
#[derive(Debug)]
pub struct FaultPlan {
    site: FaultSite,
    remaining: AtomicU64,
}

impl FaultPlan {
    /// Fail at the `nth` arrival at `site`.
    #[must_use]
    pub fn new(site: FaultSite, nth: u64) -> Self {
        FaultPlan { site, remaining: AtomicU64::new(nth) }
    }

    /// Called by the writer on arriving at `site`; an error means "fail here".
    pub(crate) fn arrive(&self, site: FaultSite) -> std::io::Result<()> {
        if site != self.site {
            return Ok(());
        }
        let before =
            self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1))).unwrap_or(0);
        if before == 1 && site == FaultSite::OpenPanic {
            panic!("injected panic while opening the store");
        }
        if before == 1 {
            Err(std::io::Error::other(format!("injected failure at {site:?}")))
        } else {
            Ok(())
        }
    }
}
