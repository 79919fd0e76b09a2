//! The access log: reads of personal data and exports, recorded as events so that they are
//! on the same audited record as every change (one stream per acting user).

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{CustomerId, Timestamp};
use crate::validate::Validator;

/// Most records one export may hold.
pub const MAX_EXPORT_RECORDS: u64 = 1_000_000;

/// Most customers one recorded response may name (a page holds at most 100).
pub const MAX_READS_PER_RESPONSE: usize = 500;

/// The folded access log of one user (the user is named by the stream, `access-<user id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogState {
    /// Personal-data reads recorded.
    pub reads: u64,
    /// Records exported in all.
    pub exported: u64,
}

/// What is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogCommand {
    /// The log's user saw a customer's personal data unmasked.
    RecordPersonalDataRead {
        /// The customer.
        customer: CustomerId,
        /// The fields shown, e.g. `phones`.
        fields: Vec<String>,
    },
    /// The log's user saw the personal data of several customers in one response: one
    /// `PersonalDataRead` each, in one append.
    RecordPersonalDataReads {
        /// The customers, each once (at most [`MAX_READS_PER_RESPONSE`]).
        customers: Vec<CustomerId>,
        /// The fields shown, e.g. `phones`.
        fields: Vec<String>,
    },
    /// The log's user exported customers.
    RecordExport {
        /// How many records.
        records: u64,
        /// The query that selected them, as text.
        query: String,
        /// Whether personal data was included.
        personal: bool,
    },
}

/// Payload of `PersonalDataRead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalDataRead {
    /// The customer.
    pub customer_id: CustomerId,
    /// The fields shown.
    pub fields: Vec<String>,
    /// When.
    pub at: Timestamp,
}

/// Payload of `CustomersExported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomersExported {
    /// How many records.
    pub records: u64,
    /// The query.
    pub query: String,
    /// Whether personal data was included.
    pub personal: bool,
    /// When.
    pub at: Timestamp,
}

events! {
    /// What the access log records.
    pub enum AccessLogEvent {
        /// Personal data was shown unmasked.
        PersonalDataRead(PersonalDataRead) = 1,
        /// Customers were exported.
        CustomersExported(CustomersExported) = 1,
    }
}

/// The names of the personal fields shown: 1-20 codes of at most 32 characters.
fn checked_fields(fields: &[String]) -> Result<Vec<String>, DomainError> {
    let mut v = Validator::new();
    v.require(!fields.is_empty(), "fields", FieldCode::Required, "name the fields shown");
    v.at_most("fields", fields, 20);
    let fields: Vec<String> = fields.iter().map(|f| v.code("fields", f, 32, &['_', '.'])).collect();
    v.finish(fields)
}

/// The access log aggregate (stream `access-<user id>`).
#[derive(Debug)]
pub struct AccessLog;

impl Aggregate for AccessLog {
    type State = AccessLogState;
    type Command = AccessLogCommand;
    type Event = AccessLogEvent;

    fn decide(
        _state: &AccessLogState,
        command: AccessLogCommand,
        ctx: &Context,
    ) -> Result<Vec<AccessLogEvent>, DomainError> {
        let event = match command {
            AccessLogCommand::RecordPersonalDataRead { customer, fields } => {
                let fields = checked_fields(&fields)?;
                AccessLogEvent::PersonalDataRead(PersonalDataRead { customer_id: customer, fields, at: ctx.now })
            }
            AccessLogCommand::RecordPersonalDataReads { customers, fields } => {
                let fields = checked_fields(&fields)?;
                let mut v = Validator::new();
                v.require(!customers.is_empty(), "customers", FieldCode::Required, "name the customers shown");
                v.at_most("customers", &customers, MAX_READS_PER_RESPONSE);
                v.distinct("customers", &customers);
                v.finish(())?;
                return Ok(customers
                    .into_iter()
                    .map(|customer_id| {
                        AccessLogEvent::PersonalDataRead(PersonalDataRead {
                            customer_id,
                            fields: fields.clone(),
                            at: ctx.now,
                        })
                    })
                    .collect());
            }
            AccessLogCommand::RecordExport { records, query, personal } => {
                let mut v = Validator::new();
                v.require(
                    records <= MAX_EXPORT_RECORDS,
                    "records",
                    FieldCode::OutOfRange,
                    "too many records for one export",
                );
                let query = v.text("query", &query, 2_000);
                AccessLogEvent::CustomersExported(CustomersExported {
                    records,
                    query: v.finish(query)?,
                    personal,
                    at: ctx.now,
                })
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: AccessLogState, event: &AccessLogEvent) -> AccessLogState {
        match event {
            AccessLogEvent::PersonalDataRead(_) => state.reads += 1,
            AccessLogEvent::CustomersExported(e) => state.exported = state.exported.saturating_add(e.records),
        }
        state
    }
}
