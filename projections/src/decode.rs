//! From log records to domain events: the stream name says which aggregate (and which id),
//! the kind and schema say which event, the payload is decoded through the domain's own
//! decoder (with upcasting).

use oacis_domain::access::{GrantEvent, ReservationEvent, RoleEvent};
use oacis_domain::access_log::AccessLogEvent;
use oacis_domain::case::CaseEvent;
use oacis_domain::customer::CustomerEvent;
use oacis_domain::department::DepartmentEvent;
use oacis_domain::ids::{CaseId, CustomerId, DepartmentId, GrantId, RoleId, TaskId, Timestamp, UserId};
use oacis_domain::task::TaskEvent;
use oacis_domain::user::UserEvent;
use oacis_domain::DomainEvent;
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

fn event<E: DomainEvent>(record: &RecordRef<'_>) -> Result<E, ProjectionError> {
    E::decode(record.kind, record.schema, record.payload)
        .map_err(|e| ProjectionError::Decode { seq: record.seq, reason: e.to_string() })
}

/// Decodes one record.
pub fn decode(record: &Record) -> Result<DomainRecord, ProjectionError> {
    decode_ref(&record.borrowed())
}

/// Decodes one record borrowed from storage (see `EventStore::read_all_with`).
pub fn decode_ref(record: &RecordRef<'_>) -> Result<DomainRecord, ProjectionError> {
    let stream = record.stream;
    let seq = record.seq;
    let (prefix, rest) = stream
        .split_once('-')
        .ok_or_else(|| ProjectionError::Decode { seq, reason: format!("stream {stream} has no aggregate prefix") })?;
    let event = match prefix {
        "customer" => AnyEvent::Customer(CustomerId(id_of(seq, stream, rest)?), event(record)?),
        "case" => AnyEvent::Case(CaseId(id_of(seq, stream, rest)?), event(record)?),
        "task" => AnyEvent::Task(TaskId(id_of(seq, stream, rest)?), event(record)?),
        "user" => AnyEvent::User(UserId(id_of(seq, stream, rest)?), event(record)?),
        "department" => AnyEvent::Department(DepartmentId(id_of(seq, stream, rest)?), event(record)?),
        "role" => AnyEvent::Role(RoleId(id_of(seq, stream, rest)?), event(record)?),
        "grant" => AnyEvent::Grant(GrantId(id_of(seq, stream, rest)?), event(record)?),
        "unique" => AnyEvent::Reservation(event(record)?),
        "access" => AnyEvent::AccessLog(UserId(id_of(seq, stream, rest)?), event(record)?),
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
