//! The OACIS business model: customers, service cases, tasks, users, departments, roles and
//! grants as pure event-sourced aggregates (`decide` / `evolve`), their validation and the
//! authorization policy.
//!
//! Invariants (kept as this crate is filled):
//! - No I/O, no async, no clock, no randomness: ids and time come in as values.
//! - This crate knows nothing of how events are stored: it never depends on `oacis-eventlog`.
//!
//! Not built yet: the aggregates arrive with the domain work item; until then this crate is
//! deliberately empty.
