//! The OACIS business model: customers, service cases, tasks, users, departments, roles and
//! grants as pure event-sourced aggregates, their validation and the authorization policy.
//!
//! Each aggregate module owns its state, commands and events, and implements [`Aggregate`]:
//! `decide(&State, Command, &Context) -> Result<Vec<Event>, DomainError>` and
//! `evolve(State, &Event) -> State`. Events are declared with [`events!`], which gives each
//! kind its name, schema version and (de)serialization in one place.
//!
//! Invariants:
//! - No I/O, no async, no clock, no randomness: ids arrive in commands, time in [`Context`].
//! - `evolve` is total and infallible; replaying any stored history never fails halfway.
//! - Validation reports every field error at once, one per field; text is kept as typed
//!   (trimmed), and only phones, e-mails and identity codes have a standard stored form.
//! - Personal data sits in a distinct `personal` part of the payloads that carry it.
//! - This crate knows nothing of how events are stored: it never depends on `oacis-eventlog`.

pub mod access;
pub mod access_log;
pub mod aggregate;
pub mod approval;
pub mod authz;
pub mod case;
pub mod context;
pub mod customer;
pub mod department;
pub mod duplicate;
mod error;
pub mod event;
pub mod ids;
pub mod import;
pub mod task;
pub mod user;
pub mod validate;

pub use aggregate::{Aggregate, Scenario};
pub use context::Context;
pub use error::{DomainError, FieldCode, FieldError};
pub use event::{DecodeError, DomainEvent};
