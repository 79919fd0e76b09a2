//! Shapes shared by every area: timestamps as RFC 3339 text, the payload every mutation
//! returns, and GraphQL mirrors of the domain's enumerations.

use async_graphql::{Enum, SimpleObject};
use oacis_domain::ids::Timestamp;
use oacis_domain::FieldCode;

use super::error::{ApiError, ApiResult};
use crate::command::Executed;

/// A domain timestamp (UTC microseconds) as RFC 3339 text.
#[must_use]
pub fn time_text(t: Timestamp) -> String {
    oacis_eventlog::Timestamp(t.0).to_rfc3339().unwrap_or_default()
}

/// RFC 3339 text (any offset, 0 to 9 fractional digits, truncated to microseconds) as a
/// domain timestamp; VALIDATION naming `field` otherwise.
pub fn parse_time(field: &str, text: &str) -> ApiResult<Timestamp> {
    let bad = || ApiError::field(field, FieldCode::InvalidFormat, "use RFC 3339, e.g. 2026-11-29T09:30:00+08:00");
    let at =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).map_err(|_| bad())?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000)).map(Timestamp).map_err(|_| bad())
}

/// An optional RFC 3339 text as a timestamp.
pub fn parse_optional_time(field: &str, text: Option<&str>) -> ApiResult<Option<Timestamp>> {
    text.map(|t| parse_time(field, t)).transpose()
}

/// A UUID argument; VALIDATION naming `field` otherwise.
pub fn parse_id(field: &str, text: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::try_parse(text.trim()).map_err(|_| ApiError::field(field, FieldCode::InvalidFormat, "is not a UUID"))
}

/// The origin of a mutation, lent to a command builder that needs new entity ids.
#[derive(Debug)]
pub struct MutationKey(pub crate::command::Origin);

impl MutationKey {
    /// A new id for `purpose` (derived from the idempotency key when there is one).
    #[must_use]
    pub fn new_id(&self, purpose: &str) -> uuid::Uuid {
        self.0.new_id(purpose)
    }
}

/// What every mutation answers: the log position its events reached.
#[derive(SimpleObject, Debug, Clone)]
pub struct MutationResult {
    /// The id of the record changed or created.
    pub id: String,
    /// The seq of the last event written (send it as the `Oacis-Min-Seq` header of a request
    /// to another server on the same log to read this write there).
    pub seq: u64,
    /// The stream's version after the mutation.
    pub version: u64,
    /// Events written (0 when the mutation changed nothing).
    pub events: u64,
    /// True when this answers a retry with the same `clientMutationId`.
    pub replayed: bool,
    /// The client's idempotency key, echoed.
    pub client_mutation_id: Option<String>,
}

impl MutationResult {
    /// The payload for `executed` on record `id`.
    #[must_use]
    pub fn new(id: impl ToString, executed: Executed, key: Option<String>) -> Self {
        MutationResult {
            id: id.to_string(),
            seq: executed.seq.0,
            version: executed.version.0,
            events: u64::try_from(executed.events).unwrap_or(u64::MAX),
            replayed: executed.replayed,
            client_mutation_id: key,
        }
    }
}

macro_rules! mirror {
    ($($(#[$doc:meta])* $name:ident = $remote:literal { $($variant:ident),+ $(,)? })+) => {$(
        $(#[$doc])*
        #[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
        #[graphql(remote = $remote)]
        pub enum $name { $($variant),+ }
    )+};
}

mirror! {
    /// Person or organisation.
    CustomerKind = "oacis_domain::customer::CustomerKind" { Person, Organisation }
    /// How a customer was found.
    SourceChannel = "oacis_domain::customer::SourceChannel" {
        SalesVisit, Referral, MarketResearch, Website, SocialMedia, Event, Other, ColdCall, Partner
    }
    /// A customer's lifecycle.
    CustomerStatus = "oacis_domain::customer::CustomerStatus" { Unregistered, Active, Archived, Merged }
    /// How an interaction happened.
    InteractionChannel = "oacis_domain::customer::InteractionChannel" {
        Call, Email, Sms, Visit, Meeting, SocialMessage
    }
    /// Who started an interaction.
    Direction = "oacis_domain::customer::Direction" { Inbound, Outbound }
    /// Task and case priority.
    Priority = "oacis_domain::task::Priority" { Low, Normal, High, Urgent }
    /// A task's status.
    TaskStatus = "oacis_domain::task::TaskStatus" { Uncreated, Open, InProgress, Done, Cancelled }
    /// A service case's status.
    CaseStatus = "oacis_domain::case::CaseStatus" { Unopened, New, Assigned, InProgress, OnHold, Resolved, Closed }
    /// How far a grant reaches (RBAC scope).
    Scope = "oacis_domain::authz::Scope" { Own, Department, DepartmentTree, All }
    /// A user profile field whose visibility the user sets.
    ProfileField = "oacis_domain::user::ProfileField" { Phone, Email, Position }
    /// Who may see a profile field.
    Visibility = "oacis_domain::user::Visibility" { Everyone, Department, OnlyMe }
    /// An account's state.
    UserStatus = "oacis_domain::user::UserStatus" { Uncreated, Active, Locked, Deactivated }
    /// What to count customers by: segment, source, owner, department, status, or the day,
    /// week (its Monday) or month of registration.
    CustomerDimension = "oacis_projections::views::analytics::Dimension" {
        Segment, Source, Owner, Department, Status, Day, Week, Month
    }
}
