//! From log records to domain events: the stream name says which aggregate (and which id),
//! the kind and schema say which event, the payload is decoded through the domain's own
//! decoder (with upcasting), after its personal data is opened with the store's keys (an
//! erased subject's personal data decodes as empty).

use oacis_domain::access::{GrantEvent, ReservationEvent, RoleEvent};
use oacis_domain::access_log::AccessLogEvent;
use oacis_domain::approval::calendar::CalendarEvent;
use oacis_domain::approval::definition::DefinitionEvent;
use oacis_domain::approval::instance::ApprovalEvent;
use oacis_domain::approval::ledger::LedgerEvent;
use oacis_domain::case::CaseEvent;
use oacis_domain::customer::CustomerEvent;
use oacis_domain::department::DepartmentEvent;
use oacis_domain::ids::{
    ApprovalDefinitionId, ApprovalId, CalendarYearId, CaseId, CustomerId, DepartmentId, GrantId, ImportId, LedgerId,
    RoleId, TaskId, Timestamp, UserId,
};
use oacis_domain::import::ImportEvent;
use oacis_domain::task::TaskEvent;
use oacis_domain::user::UserEvent;
use oacis_domain::DomainEvent;
use std::borrow::Cow;

use oacis_eventlog::keys::KeyStore;
use oacis_eventlog::{Record, RecordRef, Seq};
use uuid::Uuid;

use crate::error::ProjectionError;

/// A domain event with the id of the aggregate it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEvent {
    /// A customer's event.
    Customer(CustomerId, CustomerEvent),
    /// A service case's event.
    Case(CaseId, CaseEvent),
    /// A task's event.
    Task(TaskId, TaskEvent),
    /// A user's event.
    User(UserId, UserEvent),
    /// A department's event.
    Department(DepartmentId, DepartmentEvent),
    /// A role's event.
    Role(RoleId, RoleEvent),
    /// A grant's event.
    Grant(GrantId, GrantEvent),
    /// A unique-value reservation's event.
    Reservation(ReservationEvent),
    /// A user's access-log event (reads of personal data, exports).
    AccessLog(UserId, AccessLogEvent),
    /// An import's event.
    Import(ImportId, ImportEvent),
    /// An approval definition's event.
    ApprovalDefinition(ApprovalDefinitionId, DefinitionEvent),
    /// An approval's event.
    Approval(ApprovalId, ApprovalEvent),
    /// A year's working calendar's event.
    Calendar(CalendarYearId, CalendarEvent),
    /// A leave balance's or budget's event.
    Ledger(LedgerId, LedgerEvent),
}

/// A decoded record: the event and the log's facts about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    /// Position in the log.
    pub seq: Seq,
    /// Version within its stream.
    pub version: u64,
    /// When the log recorded it.
    pub recorded_at: Timestamp,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub event: AnyEvent,
}

fn id_of(seq: Seq, stream: &str, rest: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(rest)
        .map_err(|_| ProjectionError::Decode { seq, reason: format!("stream {stream} has no valid id") })
}

fn event<E: DomainEvent>(record: &RecordRef<'_>, keys: Option<&KeyStore>) -> Result<E, ProjectionError> {
    let payload = open_record(keys, record)?;
    E::decode(record.kind, record.schema, &payload)
        .map_err(|e| ProjectionError::Decode { seq: record.seq, reason: e.to_string() })
}

/// The payload of `record` with its personal data opened (see `oacis_eventlog::seal`).
///
/// # Errors
/// [`ProjectionError::Decode`] when a sealed value does not open.
pub fn open_record<'a>(keys: Option<&KeyStore>, record: &RecordRef<'a>) -> Result<Cow<'a, [u8]>, ProjectionError> {
    oacis_eventlog::seal::open_record(keys, record)
        .map_err(|e| ProjectionError::Decode { seq: record.seq, reason: e.to_string() })
}

/// One record's event, decoded as `E` after its personal data is opened with `keys`.
///
/// # Errors
/// [`ProjectionError::Decode`].
pub fn decode_event<E: DomainEvent>(record: &Record, keys: Option<&KeyStore>) -> Result<E, ProjectionError> {
    event(&record.borrowed(), keys)
}

/// Decodes one record, opening its personal data with `keys` (the store's key store).
pub fn decode(record: &Record, keys: Option<&KeyStore>) -> Result<DomainRecord, ProjectionError> {
    decode_ref(&record.borrowed(), keys)
}

/// Decodes one record borrowed from storage (see `EventStore::read_all_with`).
pub fn decode_ref(record: &RecordRef<'_>, keys: Option<&KeyStore>) -> Result<DomainRecord, ProjectionError> {
    let stream = record.stream;
    let seq = record.seq;
    let (prefix, rest) = stream
        .split_once('-')
        .ok_or_else(|| ProjectionError::Decode { seq, reason: format!("stream {stream} has no aggregate prefix") })?;
    let event = match prefix {
        "customer" => AnyEvent::Customer(CustomerId(id_of(seq, stream, rest)?), event(record, keys)?),
        "case" => AnyEvent::Case(CaseId(id_of(seq, stream, rest)?), event(record, keys)?),
        "task" => AnyEvent::Task(TaskId(id_of(seq, stream, rest)?), event(record, keys)?),
        "user" => AnyEvent::User(UserId(id_of(seq, stream, rest)?), event(record, keys)?),
        "department" => AnyEvent::Department(DepartmentId(id_of(seq, stream, rest)?), event(record, keys)?),
        "role" => AnyEvent::Role(RoleId(id_of(seq, stream, rest)?), event(record, keys)?),
        "grant" => AnyEvent::Grant(GrantId(id_of(seq, stream, rest)?), event(record, keys)?),
        "unique" => AnyEvent::Reservation(event(record, keys)?),
        "access" => AnyEvent::AccessLog(UserId(id_of(seq, stream, rest)?), event(record, keys)?),
        "import" => AnyEvent::Import(ImportId(id_of(seq, stream, rest)?), event(record, keys)?),
        "approvaldef" => {
            AnyEvent::ApprovalDefinition(ApprovalDefinitionId(id_of(seq, stream, rest)?), event(record, keys)?)
        }
        "approval" => AnyEvent::Approval(ApprovalId(id_of(seq, stream, rest)?), event(record, keys)?),
        "calendar" => AnyEvent::Calendar(CalendarYearId(id_of(seq, stream, rest)?), event(record, keys)?),
        "ledger" => AnyEvent::Ledger(LedgerId(id_of(seq, stream, rest)?), event(record, keys)?),
        other => {
            return Err(ProjectionError::Decode {
                seq,
                reason: format!("no aggregate has the stream prefix {other:?}"),
            })
        }
    };
    Ok(DomainRecord {
        seq,
        version: record.version.0,
        recorded_at: Timestamp(record.recorded_at.0),
        actor: record.actor.to_owned(),
        event,
    })
}
