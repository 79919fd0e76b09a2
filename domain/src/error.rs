//! Why a command was refused.
//!
//! Every variant is an expected outcome that the API reports to the client (the code in each
//! variant's doc); none is an internal failure. Decoding stored events has its own error,
//! [`crate::event::DecodeError`], because it means the log and the code disagree.

use serde::Serialize;

/// A machine-readable reason for one field's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldCode {
    /// The field is required and empty.
    Required,
    /// Longer than allowed (in characters).
    TooLong,
    /// Shorter than allowed (in characters).
    TooShort,
    /// Not a well-formed e-mail address.
    InvalidEmail,
    /// Not a phone number that can be written in E.164.
    InvalidPhone,
    /// The format has a check digit and it does not match.
    InvalidChecksum,
    /// Not of the required shape (characters, pattern).
    InvalidFormat,
    /// Outside the allowed range.
    OutOfRange,
    /// Listed twice where each must be unique.
    Duplicate,
    /// Disagrees with another field, e.g. a birth date other than the one inside the
    /// resident identity number.
    Mismatch,
}

/// One field's problem: where, what, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the command, e.g. `personal.phones[1]`.
    pub field: String,
    /// Machine-readable reason.
    pub code: FieldCode,
    /// Human-readable explanation.
    pub message: String,
}

/// A refused command. Nothing was decided; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// One or more fields are invalid; all of them are listed (API: VALIDATION).
    #[error("{} invalid field(s): {}", .0.len(), .0.iter().map(|e| format!("{} ({:?})", e.field, e.code)).collect::<Vec<_>>().join(", "))]
    Validation(Vec<FieldError>),
    /// The command needs an existing record and there is none (API: NOT_FOUND).
    #[error("{entity} does not exist")]
    NotFound {
        /// What was looked for.
        entity: &'static str,
    },
    /// The command creates a record that exists already (API: CONFLICT).
    #[error("{entity} exists already")]
    AlreadyExists {
        /// What exists.
        entity: &'static str,
    },
    /// The record's status does not allow the command (API: CONFLICT).
    #[error("cannot {action} this {entity}: it is {status}")]
    InvalidTransition {
        /// The kind of record.
        entity: &'static str,
        /// Its status now.
        status: &'static str,
        /// What was attempted.
        action: &'static str,
    },
    /// The record exists but the actor is not the one who may do this to it, e.g. approving
    /// a task assigned to someone else (API: FORBIDDEN).
    #[error("only {who} may {action} this {entity}")]
    NotYours {
        /// The kind of record.
        entity: &'static str,
        /// What was attempted.
        action: &'static str,
        /// Who may, in words (e.g. `its assignee`).
        who: &'static str,
    },
    /// The command is allowed again only later, e.g. urging an approval twice within the
    /// interval (API: RATE_LIMITED).
    #[error("{action} again in {retry_after_secs} s")]
    TooSoon {
        /// What was attempted.
        action: &'static str,
        /// Seconds until it is allowed.
        retry_after_secs: i64,
    },
    /// A business rule refuses the command, e.g. a department cycle (API: VALIDATION).
    #[error("{0}")]
    Rule(String),
}
