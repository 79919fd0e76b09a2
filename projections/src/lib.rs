//! OACIS read models folded from the event log: the customer directory, the task board, the
//! access directory (users, departments, roles, grants, sessions) and analytics, with a
//! canonical dump for comparing builds, replay and live following, read-your-writes, and
//! as-of reads.
//!
//! Invariants:
//! - Views are derived data: rebuilding them from the log gives byte-identical dumps.
//! - A view that cannot apply an event stops with an error naming the seq; it never skips.
//! - Only ordered maps hold view state, so no hash-map iteration order reaches a dump.

pub mod decode;
pub mod demo;
pub mod engine;
mod error;
pub mod snapshot;
pub mod view;
pub mod views;

pub use engine::{seq_at_time, state_as_of, Projections, Views};
pub use error::ProjectionError;
