//! The one place where errors become GraphQL errors: every failure a resolver can meet maps
//! to a machine code in `extensions.code`, and validation errors carry every field error.
//!
//! Codes: UNAUTHENTICATED, FORBIDDEN, PASSWORD_CHANGE_REQUIRED, VALIDATION, CONFLICT,
//! NOT_FOUND, RATE_LIMITED, UNAVAILABLE, STALE_VIEWS, INTERNAL; and for live feeds, the last item of a closed feed:
//! SLOW_CONSUMER, SHUTTING_DOWN. An internal failure is logged once here and shown to
//! the client as a generic message with the request's correlation id, nothing more.

use async_graphql::ErrorExtensions;
use oacis_domain::{DomainError, FieldCode, FieldError};
use oacis_eventlog::keys::KeyError;
use oacis_eventlog::AppendError;
use oacis_projections::ProjectionError;

use crate::command::CommandError;

/// A resolver's failure.
/// Deliberately not `Display`: async-graphql turns any `Display` error into a message with no
/// code, so this type converts only through [`ErrorExtensions`], which always sets one.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No valid session (API: UNAUTHENTICATED).
    Unauthenticated,
    /// The wrong sign-in name or password, or an account that may not sign in (API:
    /// UNAUTHENTICATED; one message for every case, so that names cannot be probed).
    BadCredentials,
    /// The caller lacks the permission, or the record is out of its scope for a write
    /// (API: FORBIDDEN).
    Forbidden(String),
    /// The caller must change its password first (API: PASSWORD_CHANGE_REQUIRED).
    PasswordChangeRequired,
    /// Invalid input (API: VALIDATION, with `fields`).
    Validation(Vec<FieldError>),
    /// A rule or state refuses the command, or a stale version (API: CONFLICT).
    Conflict {
        /// What conflicts.
        message: String,
        /// The stream's current version, when known.
        version: Option<u64>,
    },
    /// The record does not exist or is out of the caller's scope (API: NOT_FOUND).
    NotFound(&'static str),
    /// Too many attempts (API: RATE_LIMITED).
    RateLimited,
    /// RATE_LIMITED, with when the operation is allowed again.
    TooSoon(String),
    /// Anything unexpected (API: INTERNAL; logged once).
    Internal(String),
    /// The event store cannot be reached for now (PostgreSQL away); nothing was done, or a
    /// write's outcome is unknown: retrying with the same `clientMutationId` is safe (API:
    /// UNAVAILABLE; logged once).
    Unavailable(String),
    /// A write is durable at `seq`, but this server's views did not reach it within `waited`
    /// (API: STALE_VIEWS, with `seq`; logged once).
    ViewsBehind {
        /// The write's last seq.
        seq: u64,
        /// How long the server waited for its views.
        waited: std::time::Duration,
    },
    /// The server closes a live feed (API: `code`, SLOW_CONSUMER or SHUTTING_DOWN).
    FeedClosed {
        /// The code.
        code: &'static str,
        /// Why, and how to go on.
        message: String,
    },
}

impl ApiError {
    /// A one-field validation error.
    #[must_use]
    pub fn field(field: &str, code: FieldCode, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError { field: field.to_owned(), code, message: message.into() }])
    }

    /// An internal error, logged now.
    #[must_use]
    pub fn internal(what: impl std::fmt::Display) -> Self {
        let text = what.to_string();
        tracing::error!(error = %text, "internal error answering a request");
        ApiError::Internal(text)
    }

    /// The message shown to the client.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated => {
                "sign in first: the bearer token is missing, unknown, expired or revoked".into()
            }
            ApiError::BadCredentials => "the sign-in name or password is wrong".into(),
            ApiError::Forbidden(why) => why.clone(),
            ApiError::PasswordChangeRequired => "change your password first (mutation changePassword)".into(),
            // A rule of the command as a whole (no field) reads as itself.
            ApiError::Validation(fields) if fields.iter().all(|f| f.field.is_empty()) => {
                fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ")
            }
            ApiError::Validation(fields) => format!(
                "{} invalid field(s): {}",
                fields.len(),
                fields
                    .iter()
                    .map(|f| if f.field.is_empty() {
                        f.message.clone()
                    } else {
                        format!("{} ({})", input_path(&f.field), f.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            ApiError::Conflict { message, .. } => message.clone(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::RateLimited => "too many attempts; wait a minute".into(),
            ApiError::TooSoon(message) => message.clone(),
            ApiError::Internal(_) => "internal error; it has been logged".into(),
            ApiError::Unavailable(_) => "the event store cannot be reached for now; try again (with the same \
                                         clientMutationId, a retried write is applied at most once)"
                .into(),
            ApiError::ViewsBehind { seq, waited } => format!(
                "the change was recorded (seq {seq}), but this server's views did not reach it within {waited:?}: \
                 read it with the header Oacis-Min-Seq: {seq}, or send the same request with the same \
                 clientMutationId, which answers it without recording it again"
            ),
            ApiError::FeedClosed { message, .. } => message.clone(),
        }
    }

    /// The machine code (`extensions.code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated | ApiError::BadCredentials => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::PasswordChangeRequired => "PASSWORD_CHANGE_REQUIRED",
            ApiError::Validation(_) => "VALIDATION",
            ApiError::Conflict { .. } => "CONFLICT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::RateLimited | ApiError::TooSoon(_) => "RATE_LIMITED",
            ApiError::Internal(_) => "INTERNAL",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::ViewsBehind { .. } => "STALE_VIEWS",
            ApiError::FeedClosed { code, .. } => code,
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message()).extend_with(|_, e| {
            e.set("code", self.code());
            match self {
                ApiError::Validation(fields) => {
                    let list: Vec<async_graphql::Value> = fields
                        .iter()
                        .map(|f| {
                            let mut m = async_graphql::indexmap::IndexMap::new();
                            m.insert(
                                async_graphql::Name::new("path"),
                                async_graphql::Value::from(input_path(&f.field)),
                            );
                            let code = serde_json::to_value(f.code)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            m.insert(async_graphql::Name::new("code"), async_graphql::Value::from(code));
                            m.insert(
                                async_graphql::Name::new("message"),
                                async_graphql::Value::from(f.message.clone()),
                            );
                            async_graphql::Value::Object(m)
                        })
                        .collect();
                    e.set("fields", async_graphql::Value::List(list));
                }
                ApiError::Conflict { version: Some(v), .. } => e.set("version", *v),
                ApiError::ViewsBehind { seq, .. } => e.set("seq", *seq),
                _ => {}
            }
        })
    }
}

/// Arguments that are JSON documents (an approval definition, its form values, the approvers
/// picked by node id, a working calendar's days): a path into one names their keys as they
/// are spelled, snake_case or a definition's own names.
const JSON_ARGUMENTS: &[&str] = &["definition", "form", "picked", "edits", "days"];

/// A field error's path as the request names it: the domain's snake_case names in GraphQL's
/// camelCase (`addresses[0].postal_code` → `addresses[0].postalCode`, `employee_no` →
/// `employeeNo`), without the domain's `personal` grouping, which no input has
/// (`profile.personal.phones[0]` → `profile.phones[0]`); a path into a JSON argument
/// ([`JSON_ARGUMENTS`]) is kept as is.
fn input_path(path: &str) -> String {
    let first = path.split(['.', '[']).next().unwrap_or_default();
    if JSON_ARGUMENTS.contains(&first) {
        return path.to_owned();
    }
    let ungrouped = path.replace(".personal.", ".");
    let path = ungrouped.strip_prefix("personal.").unwrap_or(&ungrouped);
    let mut out = String::with_capacity(path.len());
    let mut upper_next = false;
    for c in path.chars() {
        match c {
            '_' if !out.is_empty() && !out.ends_with(['.', '[']) => upper_next = true,
            c if upper_next => {
                out.extend(c.to_uppercase());
                upper_next = false;
            }
            c => out.push(c),
        }
    }
    out
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        e.extend()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(fields) => ApiError::Validation(fields),
            DomainError::NotFound { entity } => ApiError::NotFound(entity),
            DomainError::AlreadyExists { .. } | DomainError::InvalidTransition { .. } => {
                ApiError::Conflict { message: e.to_string(), version: None }
            }
            DomainError::NotYours { .. } => ApiError::Forbidden(e.to_string()),
            DomainError::TooSoon { .. } => ApiError::TooSoon(e.to_string()),
            DomainError::Rule(message) => {
                ApiError::Validation(vec![FieldError { field: String::new(), code: FieldCode::InvalidFormat, message }])
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Conflict { stream, actual, .. } => ApiError::Conflict {
                message: format!("the record changed while deciding ({stream}); reload and try again"),
                version: Some(actual.0),
            },
            CommandError::Stale { actual, .. } => ApiError::Conflict {
                message: format!("the record is at version {actual}; reload it and try again"),
                version: Some(actual.0),
            },
            CommandError::KeyReused => ApiError::Conflict {
                message: "clientMutationId was used before for a different mutation".into(),
                version: None,
            },
            CommandError::Refused(AppendError::Store(e)) | CommandError::Store(e) => e.into(),
            CommandError::Refused(AppendError::Keys(k)) if !matches!(k, KeyError::Erased { .. }) => {
                ApiError::internal(k)
            }
            CommandError::Refused(refused) => ApiError::field("", FieldCode::OutOfRange, refused.to_string()),
            CommandError::Lagging(seq, waited) => {
                tracing::warn!(seq = seq.0, ?waited, "a write is durable, but the views did not reach it in time");
                ApiError::ViewsBehind { seq: seq.0, waited }
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<oacis_eventlog::Error> for ApiError {
    fn from(e: oacis_eventlog::Error) -> Self {
        match e {
            oacis_eventlog::Error::Unavailable(reason) => {
                tracing::warn!(error = %reason, "the event store is unavailable");
                ApiError::Unavailable(reason)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        ApiError::internal(e)
    }
}

/// Result of a resolver.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_as_itself_and_fields_are_named() {
        let rule: ApiError = DomainError::Rule("a customer cannot be merged into itself".into()).into();
        assert_eq!((rule.code(), rule.message().as_str()), ("VALIDATION", "a customer cannot be merged into itself"));
        let fields = ApiError::Validation(vec![
            FieldError { field: "name".into(), code: FieldCode::Required, message: "is required".into() },
            FieldError { field: String::new(), code: FieldCode::InvalidFormat, message: "no such thing".into() },
        ]);
        assert_eq!(fields.message(), "2 invalid field(s): name (is required); no such thing");
    }

    #[test]
    fn a_path_names_the_field_as_the_request_does() {
        assert_eq!(input_path("addresses[0].postal_code"), "addresses[0].postalCode");
        assert_eq!(input_path("employee_no"), "employeeNo");
        assert_eq!(input_path("phones[1]"), "phones[1]");
        assert_eq!(input_path("profile.personal.addresses[0].postal_code"), "profile.addresses[0].postalCode");
        assert_eq!(input_path("form.leave_days"), "form.leave_days", "a definition's own name");
        assert_eq!(input_path("picked.dept_head"), "picked.dept_head", "a node's id");
        assert_eq!(input_path("definition.nodes[0].pass_percent"), "definition.nodes[0].pass_percent");
        let error = ApiError::Validation(vec![FieldError {
            field: "company.credit_code".into(),
            code: FieldCode::InvalidFormat,
            message: "is not a unified social credit code".into(),
        }]);
        assert_eq!(error.message(), "1 invalid field(s): company.creditCode (is not a unified social credit code)");
        let extended = error.extend();
        let fields = extended.extensions.as_ref().and_then(|e| e.get("fields")).cloned();
        assert_eq!(
            fields.map(|f| f.into_json().unwrap_or_default()),
            Some(
                serde_json::json!([{ "path": "company.creditCode", "code": "invalid_format", "message": "is not a unified social credit code" }])
            )
        );
    }
}
