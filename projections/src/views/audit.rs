//! Audit trails: per-record history with field-level changes, the per-person operation log,
//! login history and security alerts.
//!
//! A record's history is not kept in memory: [`record_history`] folds the record's stream on
//! demand, so that the view does not hold a second copy of the log. Field-level changes are
//! computed the same way for every event kind: a payload is flattened into `path = value`
//! pairs, and each pair is compared with the value the same path last had in that record's
//! history. Paths under `personal` are flagged, so that readers without the permission see
//! that personal data changed but not what it changed to. The view itself keeps what must be
//! found without knowing the record: each person's operations (seq, time, kind), login
//! attempts and alerts.

use crate::view::FastMap as HashMap;
use std::collections::{BTreeMap, VecDeque};

use oacis_domain::access_log::AccessLogEvent;
use oacis_domain::customer::CustomerEvent;
use oacis_domain::ids::{CustomerId, ImportId, Timestamp, UserId};
use oacis_domain::import::{ImportCounts, ImportEvent, ImportStatus};
use oacis_domain::user::{LoginFailure, UserEvent};
use oacis_domain::DomainEvent;
use oacis_eventlog::{EventStore, Seq, StreamId, Version};
use serde_json::Value;

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, dump_sorted, View};

/// Failed logins of one account within [`FAILED_LOGIN_WINDOW_US`] that raise an alert.
pub const FAILED_LOGIN_ALERT: usize = 5;
/// The window for [`FAILED_LOGIN_ALERT`]: 15 minutes.
pub const FAILED_LOGIN_WINDOW_US: i64 = 15 * 60 * 1_000_000;
/// Personal-data reads plus exported records by one person within an hour that raise an alert.
pub const PERSONAL_DATA_PER_HOUR_ALERT: u64 = 200;
const HOUR_US: i64 = 60 * 60 * 1_000_000;

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Dotted path, e.g. `profile.personal.phones.0`.
    pub field: String,
    /// The value before (JSON text), if the field had one.
    pub before: Option<String>,
    /// The value after (JSON text).
    pub after: String,
    /// Whether the field is personal data.
    pub personal: bool,
}

/// One entry of a record's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the log.
    pub seq: Seq,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// What happened.
    pub kind: &'static str,
    /// Which fields changed.
    pub changes: Vec<FieldChange>,
}

/// One entry of a person's operation log (the record is found by reading `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operation {
    /// Position in the log.
    pub seq: Seq,
    /// When.
    pub at: Timestamp,
    /// What happened.
    #[serde(with = "crate::snapshot::kind_name")]
    pub kind: crate::snapshot::KindName,
}

/// One login attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginAttempt {
    /// Position in the log.
    pub seq: Seq,
    /// When.
    pub at: Timestamp,
    /// `None` for a success, otherwise why it failed.
    pub failure: Option<LoginFailure>,
    /// Client address.
    pub client: Option<String>,
}

/// Something security staff should look at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Alert {
    /// Too many failed logins of one account in a short time.
    RepeatedFailedLogins {
        /// The account.
        user: UserId,
        /// Failures in the window, this one included.
        failures: usize,
        /// The failure that raised it.
        seq: Seq,
    },
    /// One person read or exported more personal data within an hour than the threshold.
    PersonalDataVolume {
        /// The person.
        user: UserId,
        /// Reads plus exported records in the hour up to `seq`.
        within_hour: u64,
        /// The read or export that crossed the threshold.
        seq: Seq,
    },
    /// Someone tried to log in to a locked or deactivated account.
    LoginOnBlockedAccount {
        /// The account.
        user: UserId,
        /// Why it was blocked.
        reason: LoginFailure,
        /// The attempt.
        seq: Seq,
    },
}

impl Alert {
    /// The position of the event that raised it.
    #[must_use]
    pub fn seq(&self) -> Seq {
        match self {
            Alert::RepeatedFailedLogins { seq, .. }
            | Alert::PersonalDataVolume { seq, .. }
            | Alert::LoginOnBlockedAccount { seq, .. } => *seq,
        }
    }

    /// The account it is about.
    #[must_use]
    pub fn user(&self) -> UserId {
        match self {
            Alert::RepeatedFailedLogins { user, .. }
            | Alert::PersonalDataVolume { user, .. }
            | Alert::LoginOnBlockedAccount { user, .. } => *user,
        }
    }
}

/// The audit view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Audit {
    /// Keyed by actor; a hash map because it is looked up on every event, and actor names
    /// share long prefixes that make ordered comparisons slow. `dump` sorts it.
    operations: HashMap<String, Vec<Operation>>,
    logins: BTreeMap<UserId, Vec<LoginAttempt>>,
    recent_failures: BTreeMap<UserId, VecDeque<Timestamp>>,
    /// Per person: (time, amount) of personal-data reads and exports in the last hour.
    recent_personal: BTreeMap<UserId, VecDeque<(Timestamp, u64)>>,
    alerts: Vec<Alert>,
    imports: BTreeMap<ImportId, ImportSummary>,
}

/// A customer an import registered or changed: the stream versions its row's events span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportedCustomer {
    /// The customer.
    pub customer: CustomerId,
    /// The row's number in the file.
    pub row: u32,
    /// Whether the row registered it.
    pub registered: bool,
    /// The customer's version before the row (0 for a registration).
    pub before: u64,
    /// The customer's version after the row (its `CustomerImported`).
    pub after: u64,
}

/// One import of customers as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    /// The import.
    pub id: ImportId,
    /// Who started it.
    pub actor: String,
    /// When it started (the record's time).
    pub started_at: Timestamp,
    /// The file's name.
    pub file_name: String,
    /// BLAKE3 of the file.
    pub file_blake3: String,
    /// Rows in the file.
    pub rows: u64,
    /// The matching key.
    pub key: String,
    /// Lifecycle.
    pub status: ImportStatus,
    /// The outcome, once finished.
    pub counts: Option<ImportCounts>,
    /// Customers it registered or changed, in log order.
    pub customers: Vec<ImportedCustomer>,
    /// Who undid it, and when.
    pub undone: Option<(String, Timestamp)>,
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, inner) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), inner, out);
            }
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn is_personal(path: &str) -> bool {
    path == "personal" || path.starts_with("personal.") || path.contains(".personal.") || path.ends_with(".personal")
}

/// The kind name of a decoded event.
fn kind_of(event: &AnyEvent) -> &'static str {
    match event {
        AnyEvent::Customer(_, e) => e.kind(),
        AnyEvent::Case(_, e) => e.kind(),
        AnyEvent::Task(_, e) => e.kind(),
        AnyEvent::User(_, e) => e.kind(),
        AnyEvent::Department(_, e) => e.kind(),
        AnyEvent::Role(_, e) => e.kind(),
        AnyEvent::Grant(_, e) => e.kind(),
        AnyEvent::Reservation(e) => e.kind(),
        AnyEvent::AccessLog(_, e) => e.kind(),
        AnyEvent::Import(_, e) => e.kind(),
        AnyEvent::ApprovalDefinition(_, e) => e.kind(),
        AnyEvent::Approval(_, e) => e.kind(),
        AnyEvent::Calendar(_, e) => e.kind(),
        AnyEvent::Ledger(_, e) => e.kind(),
    }
}

/// Payload fields that name the entry of a record an event adds or changes (see
/// [`record_history`]); `field` is the profile field a user's privacy setting is about.
const ENTRY_KEYS: &[&str] = &["interaction_id", "purchase_id", "comment_id", "session_id", "approval", "field"];

/// A record's history with field-level changes, oldest first, folded from its stream up to
/// and including `until` (a past seq, for history as of then). Cost: one read of the stream.
pub async fn record_history<S: EventStore>(
    store: &S,
    stream: &StreamId,
    until: Seq,
) -> Result<Vec<HistoryEntry>, crate::ProjectionError> {
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut history = Vec::new();
    let mut from = Version(1);
    loop {
        let page = store.read_stream(stream, from, 1_000).await?;
        let Some(last) = page.last() else { return Ok(history) };
        from = last.version.next();
        for record in page.iter().take_while(|r| r.seq <= until) {
            let keys = store.keys().map(|k| &**k);
            let decoded = crate::decode::decode(record, keys)?;
            let payload = crate::decode::open_record(keys, &record.borrowed())?;
            let value: Value = serde_json::from_slice(&payload)
                .map_err(|e| crate::ProjectionError::Decode { seq: record.seq, reason: e.to_string() })?;
            let mut flat = Vec::new();
            flatten("", &value, &mut flat);
            // An event that adds an entry to its record (an interaction, a purchase, a
            // comment, a session, a ledger's reservation, a field's privacy setting) or
            // changes one is compared with that entry's fields, not with another entry's of
            // the same name.
            let entry = value
                .as_object()
                .and_then(|o| ENTRY_KEYS.iter().find_map(|k| o.get(*k).and_then(Value::as_str)))
                .unwrap_or_default()
                .to_owned();
            let mut changes = Vec::new();
            for (field, after) in flat {
                let key = format!("{entry}\u{1f}{field}");
                let before = known.get(&key).cloned();
                if before.as_ref() != Some(&after) {
                    changes.push(FieldChange {
                        personal: is_personal(&field),
                        field: field.clone(),
                        before,
                        after: after.clone(),
                    });
                    known.insert(key, after);
                }
            }
            history.push(HistoryEntry {
                seq: record.seq,
                at: decoded.recorded_at,
                actor: decoded.actor,
                kind: kind_of(&decoded.event),
                changes,
            });
        }
        if page.iter().any(|r| r.seq > until) {
            return Ok(history);
        }
    }
}

impl Audit {
    /// What a person did, oldest first.
    #[must_use]
    pub fn operations_of(&self, actor: &str) -> &[Operation] {
        self.operations.get(actor).map_or(&[], Vec::as_slice)
    }

    /// A user's login attempts, oldest first.
    #[must_use]
    pub fn logins_of(&self, user: UserId) -> &[LoginAttempt] {
        self.logins.get(&user).map_or(&[], Vec::as_slice)
    }

    /// Every alert raised, oldest first.
    #[must_use]
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    fn record_login(&mut self, user: UserId, record: &DomainRecord, event: &UserEvent) {
        let attempt = match event {
            UserEvent::UserLoginSucceeded(e) => {
                self.recent_failures.remove(&user);
                LoginAttempt { seq: record.seq, at: e.at, failure: None, client: e.client.clone() }
            }
            UserEvent::UserLoginFailed(e) => {
                if matches!(e.reason, LoginFailure::Locked | LoginFailure::Deactivated) {
                    self.alerts.push(Alert::LoginOnBlockedAccount { user, reason: e.reason, seq: record.seq });
                }
                let window = self.recent_failures.entry(user).or_default();
                window.push_back(e.at);
                while window.front().is_some_and(|t| e.at.0 - t.0 > FAILED_LOGIN_WINDOW_US) {
                    window.pop_front();
                }
                if window.len() == FAILED_LOGIN_ALERT {
                    self.alerts.push(Alert::RepeatedFailedLogins { user, failures: window.len(), seq: record.seq });
                }
                LoginAttempt { seq: record.seq, at: e.at, failure: Some(e.reason), client: e.client.clone() }
            }
            _ => return,
        };
        self.logins.entry(user).or_default().push(attempt);
    }
}

impl Audit {
    fn record_personal_access(&mut self, user: UserId, record: &DomainRecord, event: &AccessLogEvent) {
        let (at, amount) = match event {
            AccessLogEvent::PersonalDataRead(e) => (e.at, 1),
            AccessLogEvent::CustomersExported(e) if e.personal => (e.at, e.records),
            AccessLogEvent::CustomersExported(_) => return,
        };
        let window = self.recent_personal.entry(user).or_default();
        window.push_back((at, amount));
        while window.front().is_some_and(|(t, _)| at.0 - t.0 > HOUR_US) {
            window.pop_front();
        }
        let within_hour: u64 = window.iter().map(|(_, n)| n).sum();
        // Alert once when the hour's volume crosses the threshold, not on every read after.
        if within_hour > PERSONAL_DATA_PER_HOUR_ALERT && within_hour - amount <= PERSONAL_DATA_PER_HOUR_ALERT {
            self.alerts.push(Alert::PersonalDataVolume { user, within_hour, seq: record.seq });
        }
    }
}

impl Audit {
    fn record_import(&mut self, id: ImportId, record: &DomainRecord, event: &ImportEvent) {
        match event {
            ImportEvent::CustomerImportStarted(e) => {
                self.imports.insert(
                    id,
                    ImportSummary {
                        id,
                        actor: record.actor.clone(),
                        started_at: record.recorded_at,
                        file_name: e.file_name.clone(),
                        file_blake3: e.file_blake3.clone(),
                        rows: e.rows,
                        key: e.key.clone(),
                        status: ImportStatus::Running,
                        counts: None,
                        customers: Vec::new(),
                        undone: None,
                    },
                );
            }
            ImportEvent::CustomerImportFinished(e) => {
                if let Some(summary) = self.imports.get_mut(&id) {
                    summary.status = ImportStatus::Finished;
                    summary.counts = Some(e.counts);
                }
            }
            ImportEvent::CustomerImportUndone(_) => {
                if let Some(summary) = self.imports.get_mut(&id) {
                    summary.status = ImportStatus::Undone;
                    summary.undone = Some((record.actor.clone(), record.recorded_at));
                }
            }
        }
    }

    /// One import, with the customers it registered or changed.
    #[must_use]
    pub fn import(&self, id: ImportId) -> Option<&ImportSummary> {
        self.imports.get(&id)
    }

    /// Every import, newest first.
    pub fn imports(&self) -> impl Iterator<Item = &ImportSummary> {
        let mut all: Vec<&ImportSummary> = self.imports.values().collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        all.into_iter()
    }
}

impl View for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        let operation = Operation { seq: record.seq, at: record.recorded_at, kind: kind_of(&record.event) };
        match self.operations.get_mut(&record.actor) {
            Some(operations) => operations.push(operation),
            None => {
                self.operations.insert(record.actor.clone(), vec![operation]);
            }
        }
        match &record.event {
            AnyEvent::User(user, event) => self.record_login(*user, record, event),
            AnyEvent::AccessLog(user, event) => self.record_personal_access(*user, record, event),
            AnyEvent::Import(id, event) => self.record_import(*id, record, event),
            AnyEvent::Customer(customer, CustomerEvent::CustomerImported(e)) => {
                let summary = self
                    .imports
                    .get_mut(&e.import_id)
                    .ok_or_else(|| format!("customer {customer} names import {} that never started", e.import_id))?;
                summary.customers.push(ImportedCustomer {
                    customer: *customer,
                    row: e.row,
                    registered: e.registered,
                    before: record.version.saturating_sub(u64::from(e.preceding) + 1),
                    after: record.version,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_sorted(out, "audit.operations", &self.operations);
        dump_lines(out, "audit.logins", &self.logins);
        dump_lines(out, "audit.alerts", &self.alerts);
        dump_lines(out, "audit.recent_failures", &self.recent_failures);
        dump_lines(out, "audit.recent_personal", &self.recent_personal);
        dump_lines(out, "audit.imports", &self.imports);
    }
}
