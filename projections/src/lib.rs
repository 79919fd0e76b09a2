//! OACIS read models folded from the event log: directories, boards, audit trails and
//! analytics, with checkpoints, rebuild, catch-up and live tail.
//!
//! Invariants (kept as this crate is filled):
//! - Views are derived data: rebuilding them from the log gives byte-identical results.
//! - A view that cannot apply an event stops with an error naming the seq; it never skips.
//!
//! Not built yet: the views arrive with the projections work item; until then this crate
//! is deliberately empty.
