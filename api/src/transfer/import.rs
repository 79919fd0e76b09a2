//! Importing customers: a dry run that validates every row through the domain's own rules and
//! the duplicate detection and writes nothing; a real run that writes the valid rows in
//! batches through the one command path; and the undo of a whole import.
//!
//! Invariants:
//! - The whole file is read, mapped and planned before anything is written: a file that
//!   cannot be read, or a wrong mapping, writes nothing.
//! - A row is decided by `Customer::decide` (`CustomerCommand::Import`), the same code a
//!   real run goes through, so a dry run's verdicts are the real run's, unless the customer
//!   changes in between (then the real run decides again and reports what it found).
//! - Every event of an import has the importing user as actor and the import's id as
//!   correlation id; the import itself is a stream (`import-<id>`): started, finished, undone.
//! - A key matches only customers the caller may read; an update needs `customer.write`
//!   over the customer as it is and as the row leaves it.
//! - An undo refuses, listing them, when customers changed after the import, unless forced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::StreamExt as _;
use oacis_domain::authz::Permission;
use oacis_domain::customer::{
    Company, Customer, CustomerCommand, CustomerEvent, CustomerKind, CustomerPersonal, CustomerState, CustomerStatus,
    ImportRestore, ImportRow, Profile, SourceChannel,
};
use oacis_domain::duplicate::{DuplicateField, DuplicateKeys};
use oacis_domain::ids::{CustomerId, DepartmentId, ImportId, UserId};
use oacis_domain::import::{Import, ImportCommand, ImportCounts, ImportStatus};
use oacis_domain::validate::Validator;
use oacis_domain::{Aggregate, DomainError};
use oacis_eventlog::{EventStore, StreamId, Version};
use oacis_projections::views::access::AccessDirectory;
use oacis_projections::Views;
use serde::Serialize;
use uuid::Uuid;

use super::columns::{Columns, Field};
use super::table::{self, Format, TextEncoding};
use super::values::{Issue, Reader, Values};
use super::ImportError;
use crate::access::{resource, Caller};
use crate::command::{on, CommandBus, Origin, Step};

/// Most possible duplicates one row's warning names (the rest are counted).
const DUPLICATES_NAMED: usize = 5;

/// Rows written per append (each row is two to four events).
pub const BATCH_ROWS: usize = 200;

/// Batches written at once.
pub const BATCHES_IN_FLIGHT: usize = 4;

/// What matches a row to an existing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
#[graphql(name = "ImportKey")]
pub enum MatchKey {
    /// Nothing: every row registers a customer.
    None,
    /// The customer's id in OACIS (a row with an unknown id registers it under that id).
    Id,
    /// Another system's key, kept by earlier imports.
    #[value(alias = "external_id")]
    ExternalId,
    /// A phone, normalised to E.164.
    Phone,
    /// An e-mail, compared by its key (lower-case local part, ASCII domain).
    Email,
    /// A resident identity number.
    #[value(alias = "id_number")]
    IdNumber,
    /// A unified social credit code.
    #[value(alias = "credit_code")]
    CreditCode,
}

impl MatchKey {
    /// The key's name, as stored in the import's start event.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKey::None => "none",
            MatchKey::Id => "id",
            MatchKey::ExternalId => "external_id",
            MatchKey::Phone => "phone",
            MatchKey::Email => "email",
            MatchKey::IdNumber => "id_number",
            MatchKey::CreditCode => "credit_code",
        }
    }

    /// The column the key reads.
    fn field(self) -> Option<Field> {
        match self {
            MatchKey::None => None,
            MatchKey::Id => Some(Field::Id),
            MatchKey::ExternalId => Some(Field::ExternalId),
            MatchKey::Phone => Some(Field::Phones),
            MatchKey::Email => Some(Field::Emails),
            MatchKey::IdNumber => Some(Field::IdNumber),
            MatchKey::CreditCode => Some(Field::CreditCode),
        }
    }
}

/// How to read and write a file.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The file's name (recorded; no path).
    pub file_name: String,
    /// The format (`None`: from the file's first bytes).
    pub format: Option<Format>,
    /// The text encoding of a CSV file.
    pub encoding: TextEncoding,
    /// Header to field name (or `ignore`), for headers the import does not know.
    pub mapping: Vec<(String, String)>,
    /// The matching key (`None`: `id` if the file has an id column, else `external_id` if it
    /// has one, else none).
    pub key: Option<MatchKey>,
    /// Validate and report only.
    pub dry_run: bool,
    /// Refuse rows that look like customers the caller can already see.
    pub refuse_duplicates: bool,
    /// The offset of times written without one, in minutes east of UTC (480: China).
    pub utc_offset_minutes: i32,
    /// Leave out the values a row can do without when they are refused (a bad phone or
    /// e-mail, a person's industry, an unknown owner or status), each noted as a warning,
    /// instead of refusing the row. Errors in the name, kind, id or key still refuse it.
    pub omit_invalid_values: bool,
}

impl ImportOptions {
    /// A real run of the file `file_name` with the defaults: format and encoding detected,
    /// no mapping, the default key, duplicates only noted, times without an offset in
    /// UTC+08:00, refused values refusing their row.
    #[must_use]
    pub fn new(file_name: String) -> ImportOptions {
        ImportOptions {
            file_name,
            format: None,
            encoding: TextEncoding::Auto,
            mapping: Vec::new(),
            key: None,
            dry_run: false,
            refuse_duplicates: false,
            utc_offset_minutes: 480,
            omit_invalid_values: false,
        }
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
#[graphql(name = "ImportOutcome")]
pub enum Outcome {
    /// Dry run: would register a customer.
    Accepted,
    /// Dry run: would change a customer.
    WouldUpdate,
    /// Registered a customer.
    Registered,
    /// Changed a customer.
    Updated,
    /// Matched a customer and changed nothing.
    Unchanged,
    /// Refused, with its errors.
    Refused,
}

impl Outcome {
    /// The outcome's name in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::WouldUpdate => "would_update",
            Outcome::Registered => "registered",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
        }
    }
}

/// One row's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, async_graphql::SimpleObject)]
#[graphql(name = "ImportRow")]
pub struct RowReport {
    /// The row's line in the file.
    pub line: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The customer it registered or matched.
    pub customer: Option<String>,
    /// Why it was refused.
    pub errors: Vec<Issue>,
    /// Notes that did not refuse it (possible duplicates, numbers recovered).
    pub warnings: Vec<Issue>,
}

/// Counts of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, async_graphql::SimpleObject)]
#[graphql(name = "ImportTotals")]
pub struct Totals {
    /// Data rows.
    pub rows: u64,
    /// Rows that register (dry run) or registered a customer.
    pub registered: u64,
    /// Rows that change (dry run) or changed a customer.
    pub updated: u64,
    /// Rows that match a customer and change nothing.
    pub unchanged: u64,
    /// Rows refused.
    pub refused: u64,
    /// Rows with warnings.
    pub warned: u64,
}

/// A column as the import read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, async_graphql::SimpleObject)]
#[graphql(name = "ImportColumn")]
pub struct ColumnReport {
    /// The header.
    pub header: String,
    /// The field it feeds (`None`: ignored).
    pub field: Option<&'static str>,
}

/// The report of an import or a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The import (absent for a dry run).
    pub import_id: Option<String>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The file's name.
    pub file_name: String,
    /// `csv` or `xlsx`.
    pub format: &'static str,
    /// The text encoding read (`utf-8`, `utf-16`, `gb18030`) or `xlsx`.
    pub encoding: &'static str,
    /// BLAKE3 of the file, hex.
    pub file_blake3: String,
    /// The matching key.
    pub key: MatchKey,
    /// Every column.
    pub columns: Vec<ColumnReport>,
    /// The counts.
    pub totals: Totals,
    /// Every row.
    pub rows: Vec<RowReport>,
    /// The existing customers the report ties to the file's phones, e-mails or identity
    /// numbers (matched by a personal key, or named as a possible duplicate on one): it tells
    /// whose those are, a read of their personal data for the caller's access log.
    #[serde(skip)]
    pub revealed: BTreeSet<CustomerId>,
}

impl Report {
    /// The report as CSV: one line per issue (or per row without any), with the columns
    /// `line, outcome, customer, severity, column, field, code, message`.
    #[must_use]
    pub fn to_csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record(["line", "outcome", "customer", "severity", "column", "field", "code", "message"]);
        for row in &self.rows {
            let line = row.line.to_string();
            let customer = row.customer.clone().unwrap_or_default();
            let issues = row.errors.iter().map(|i| ("error", i)).chain(row.warnings.iter().map(|i| ("warning", i)));
            let mut any = false;
            for (severity, issue) in issues {
                any = true;
                let column = issue.column.clone().unwrap_or_default();
                let cells = [
                    line.as_str(),
                    row.outcome.as_str(),
                    &customer,
                    severity,
                    &column,
                    &issue.field,
                    &issue.code,
                    &issue.message,
                ];
                let _ = out.write_record(cells.map(|c| super::table::neutralised(c).into_owned()));
            }
            if !any {
                let _ = out.write_record([line.as_str(), row.outcome.as_str(), &customer, "", "", "", "", ""]);
            }
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// A row on its way through planning.
#[derive(Debug)]
struct Planned {
    line: u64,
    values: Values,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    /// The customer, and whether it exists.
    target: Option<(CustomerId, bool)>,
    owner: Option<UserId>,
    department: Option<DepartmentId>,
    command: Option<ImportRow>,
    outcome: Outcome,
    /// The row updates a customer whose personal data the caller may not read: it may not
    /// change that personal data (it would wipe or overwrite what it cannot see).
    personal_hidden: bool,
    /// Existing customers the row ties to its personal data ([`Report::revealed`]).
    revealed: Vec<CustomerId>,
}

impl Planned {
    /// Leaves out the values the errors are about, if the row can do without every one of
    /// them: each error becomes a warning (its code kept, its message saying so). Answers
    /// whether it did; otherwise nothing changes.
    fn omit_invalid_values(&mut self, key: MatchKey) -> bool {
        let place = |field: &str| -> Option<(String, Option<usize>)> {
            let (name, index) = match field.split_once('[') {
                Some((name, rest)) => (name, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
                None => (field, None),
            };
            let omittable = matches!(
                name,
                "industry"
                    | "company_size"
                    | "website"
                    | "credit_code"
                    | "segment"
                    | "tags"
                    | "phones"
                    | "emails"
                    | "id_number"
                    | "birth_date"
                    | "owner"
                    | "department"
                    | "status"
                    | "registered_at"
                    | "last_contact"
            ) && key.field().is_none_or(|k| k.name() != name);
            omittable.then(|| (name.to_owned(), index))
        };
        let Some(places) = self.errors.iter().map(|e| place(&e.field)).collect::<Option<Vec<_>>>() else {
            return false;
        };
        if places.is_empty() {
            return false;
        }
        let v = &mut self.values;
        let mut dropped: Vec<(String, usize)> = Vec::new();
        for (name, index) in places {
            match (name.as_str(), index) {
                ("phones" | "emails", Some(i)) => dropped.push((name, i)),
                // The reader dropped the phone it could not read; nothing left means no list.
                ("phones", None) => {
                    if v.phones.as_ref().is_some_and(Vec::is_empty) {
                        v.phones = None;
                    }
                }
                ("emails", None) => v.emails = None,
                ("industry", _) => v.industry = None,
                ("company_size", _) => v.company_size = None,
                ("website", _) => v.website = None,
                ("credit_code", _) => v.credit_code = None,
                ("segment", _) => v.segment = None,
                ("tags", _) => v.tags = None,
                ("id_number", _) => v.id_number = None,
                ("birth_date", _) => v.birth_date = None,
                ("owner", _) => v.owner = None,
                ("department", _) => v.department = None,
                ("status", _) => v.status = None,
                ("registered_at", _) => v.registered_at = None,
                _ => v.last_contact = None,
            }
        }
        // Drop list items from the last, so that the indexes still name them.
        dropped.sort_unstable_by_key(|(name, i)| (std::cmp::Reverse(*i), name.clone()));
        dropped.dedup();
        for (name, i) in dropped {
            let list = if name == "phones" { &mut v.phones } else { &mut v.emails };
            if let Some(items) = list.as_mut().filter(|l| i < l.len()) {
                items.remove(i);
                // A list left with nothing is left out whole: the customer keeps its own.
                if items.is_empty() {
                    *list = None;
                }
            }
        }
        for mut issue in std::mem::take(&mut self.errors) {
            issue.message = format!("left out: {}", issue.message);
            self.warnings.push(issue);
        }
        true
    }

    fn error(&mut self, column: Option<String>, field: &str, code: &str, message: impl Into<String>) {
        let issue =
            Issue { line: self.line, column, field: field.to_owned(), code: code.to_owned(), message: message.into() };
        self.errors.push(issue);
    }
}

/// Imports `bytes` as the caller (a dry run with `options.dry_run`), reporting progress as
/// (rows done, rows in all).
///
/// # Errors
/// [`ImportError`] when the file cannot be read, the mapping is wrong, or the log refuses
/// (rows' own problems are in the report).
pub async fn import(
    bus: &CommandBus,
    caller: &Caller,
    client_addr: Option<String>,
    bytes: &[u8],
    options: &ImportOptions,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Report, ImportError> {
    if !caller.holds(Permission::CustomerWrite) {
        return Err(ImportError::Forbidden("importing customers needs customer.write".into()));
    }
    let format = match options.format {
        Some(format) => format,
        None => Format::of(&options.file_name, bytes)?,
    };
    let is_header = |text: &str| Field::parse(text).is_some() || options.mapping.iter().any(|(h, _)| h == text);
    let table = table::read(bytes, format, options.encoding, &is_header)?;
    let columns = Columns::map(&table.headers, &options.mapping)?;
    let key = options.key.unwrap_or(if columns.has(Field::Id) {
        MatchKey::Id
    } else if columns.has(Field::ExternalId) {
        MatchKey::ExternalId
    } else {
        MatchKey::None
    });
    // Without a key every row registers a customer, which needs a name: a file with no
    // column taken for it is refused whole, naming its headers (not refused row by row).
    if key == MatchKey::None && !columns.has(Field::Name) {
        return Err(ImportError::Mapping(format!(
            "no column is the customer's name (the headers are: {}); name one `name` or 客户名称, or map it",
            table.headers.join(", ")
        )));
    }
    // A personal key matches only customers whose personal data the caller may read (so
    // that a dry run does not tell who has a number); the others' rows would be registered
    // again as new customers. So it needs that right wherever the caller reads customers.
    if matches!(key, MatchKey::Phone | MatchKey::Email | MatchKey::IdNumber)
        && !crate::graphql::customers::personal_everywhere(caller)
    {
        return Err(ImportError::Forbidden(format!(
            "matching rows by {} needs customer.read_personal wherever you read customers: a row of a customer \
             whose personal data you may not read would be registered again as a new customer",
            key.as_str()
        )));
    }
    if let Some(field) = key.field().filter(|f| !columns.has(*f)) {
        return Err(ImportError::Mapping(format!(
            "the key {} needs a column of {}; the file has none",
            key.as_str(),
            field.name()
        )));
    }
    let reader = Reader { columns: &columns, headers: &table.headers, utc_offset_minutes: options.utc_offset_minutes };
    let import_id = ImportId(Uuid::now_v7());
    let ctx = bus.context(Some(caller.user));
    let phone_ctx = ctx;

    // Read, match and resolve every row against the views as they are now.
    let mut planned: Vec<Planned> = bus
        .projections()
        .read(|views| {
            let mut seen_keys: HashMap<String, u64> = HashMap::new();
            table
                .rows
                .iter()
                .map(|row| {
                    let (values, errors, warnings) = reader.values(row);
                    let mut plan = Planned {
                        line: row.line,
                        values,
                        errors,
                        warnings,
                        target: None,
                        owner: None,
                        department: None,
                        command: None,
                        outcome: Outcome::Refused,
                        personal_hidden: false,
                        revealed: Vec::new(),
                    };
                    resolve(views, caller, &reader, key, &phone_ctx, &mut seen_keys, &mut plan);
                    // Resolving reports the owner and the department together, so leaving
                    // them out and resolving once more settles the row.
                    if options.omit_invalid_values && plan.omit_invalid_values(key) {
                        plan.target = None;
                        resolve(views, caller, &reader, key, &phone_ctx, &mut seen_keys, &mut plan);
                    }
                    plan
                })
                .collect()
        })
        .map_err(|e| ImportError::Command(crate::command::CommandError::Views(e)))?;

    // Decide every row as the real run will, on the customer as it is now.
    let mut seen_duplicates: HashMap<(DuplicateField, String), u64> = HashMap::new();
    for plan in &mut planned {
        // Rows whose cells had errors are decided too, so that the report has every error.
        let Some((id, exists)) = plan.target else { continue };
        let state = if exists { bus.state::<Customer>(&id.stream()).await? } else { CustomerState::default() };
        let Some(mut row) = import_row(import_id, id, &state, &reader, plan) else { continue };
        if plan.personal_hidden && state.profile.as_ref().is_some_and(|p| p.personal != row.profile.personal) {
            let message = "you may not read this customer's personal data (customer.read_personal), so an import \
                           may not change it: leave its phones, emails, id_number and birth_date cells as exported";
            plan.error(None, "id", "forbidden", message);
            continue;
        }
        let mut decided = Customer::decide(&state, CustomerCommand::Import(Box::new(row.clone())), &ctx);
        if options.omit_invalid_values {
            if let Err(e) = &decided {
                domain_issues(e, &columns, &table.headers, plan);
            }
            if plan.omit_invalid_values(key) {
                let Some(again) = import_row(import_id, id, &state, &reader, plan) else { continue };
                row = again;
                decided = Customer::decide(&state, CustomerCommand::Import(Box::new(row.clone())), &ctx);
            } else if decided.is_err() {
                continue;
            }
        }
        match decided {
            Ok(events) => {
                plan.outcome = match (events.is_empty(), exists, options.dry_run) {
                    (true, _, _) => Outcome::Unchanged,
                    (false, false, true) => Outcome::Accepted,
                    (false, false, false) => Outcome::Registered,
                    (false, true, true) => Outcome::WouldUpdate,
                    (false, true, false) => Outcome::Updated,
                };
                if !exists {
                    if let Some(CustomerEvent::CustomerRegistered(r)) = events.first() {
                        duplicates(bus, caller, &r.profile, options.refuse_duplicates, &mut seen_duplicates, plan);
                    }
                }
                if plan.errors.is_empty() && !events.is_empty() {
                    plan.command = Some(row);
                }
            }
            Err(e) => domain_issues(&e, &columns, &table.headers, plan),
        }
    }
    for plan in &mut planned {
        if !plan.errors.is_empty() {
            plan.outcome = Outcome::Refused;
            plan.command = None;
        }
    }

    let mut report = Report {
        import_id: None,
        dry_run: options.dry_run,
        file_name: options.file_name.clone(),
        format: format.as_str(),
        encoding: table.encoding,
        file_blake3: blake3::hash(bytes).to_hex().to_string(),
        key,
        columns: table
            .headers
            .iter()
            .zip(&columns.fields)
            .map(|(header, field)| ColumnReport { header: header.clone(), field: field.map(Field::name) })
            .collect(),
        totals: Totals::default(),
        rows: Vec::new(),
        revealed: BTreeSet::new(),
    };
    if !options.dry_run {
        report.import_id = Some(import_id.to_string());
        write(bus, caller, client_addr, import_id, &report, &mut planned, progress).await?;
    }
    for plan in planned {
        let totals = &mut report.totals;
        totals.rows += 1;
        match plan.outcome {
            Outcome::Accepted | Outcome::Registered => totals.registered += 1,
            Outcome::WouldUpdate | Outcome::Updated => totals.updated += 1,
            Outcome::Unchanged => totals.unchanged += 1,
            Outcome::Refused => totals.refused += 1,
        }
        if !plan.warnings.is_empty() {
            totals.warned += 1;
        }
        report.revealed.extend(plan.revealed.iter().copied());
        report.rows.push(RowReport {
            line: plan.line,
            outcome: plan.outcome,
            // A dry run names the customers it would change, not ids it made up for new ones.
            customer: plan
                .target
                .filter(|(_, exists)| {
                    plan.outcome != Outcome::Refused && (*exists || !options.dry_run || plan.values.id.is_some())
                })
                .map(|(id, _)| id.to_string()),
            errors: plan.errors,
            warnings: distinct(plan.warnings),
        });
    }
    Ok(report)
}

/// The issues in their order, each once (a row planned again notes its warnings again).
fn distinct(issues: Vec<Issue>) -> Vec<Issue> {
    let mut seen = std::collections::HashSet::new();
    issues.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

/// The import's origin: the caller, with the import's id as correlation id.
fn origin_of(caller: &Caller, import_id: ImportId, client_addr: Option<String>) -> Origin {
    Origin { actor: Some(caller.user), correlation_id: import_id.0, client_addr, ..Origin::default() }
}

/// Imports being written by this process: an undo waits for them to finish.
fn in_flight() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<ImportId>> {
    static IN_FLIGHT: std::sync::Mutex<std::collections::BTreeSet<ImportId>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    IN_FLIGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks an import as being written until dropped.
struct Writing(ImportId);

impl Writing {
    fn start(id: ImportId) -> Writing {
        in_flight().insert(id);
        Writing(id)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        in_flight().remove(&self.0);
    }
}

/// Writes the planned rows: the import's start, the rows in batches (a batch the log refuses
/// is written row by row, so one bad row does not take its neighbours with it), the finish.
async fn write(
    bus: &CommandBus,
    caller: &Caller,
    client_addr: Option<String>,
    import_id: ImportId,
    report: &Report,
    planned: &mut [Planned],
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), ImportError> {
    let _writing = Writing::start(import_id);
    let origin = origin_of(caller, import_id, client_addr);
    let rows = u64::try_from(planned.len()).unwrap_or(u64::MAX);
    let start = ImportCommand::Start {
        id: import_id,
        file_name: report.file_name.clone(),
        file_blake3: report.file_blake3.clone(),
        format: report.format.to_owned(),
        rows,
        key: report.key.as_str().to_owned(),
    };
    bus.execute::<Import>(import_id.stream(), start, &origin).await?;
    progress(0, rows);
    // Batches touch disjoint customers (a file names each customer once), so several are in
    // flight at once: one is decided while others are made durable.
    let origin = &origin;
    let batches: Vec<_> = planned.chunks_mut(BATCH_ROWS).map(|chunk| write_batch(bus, origin, chunk)).collect();
    let mut batches = futures_util::stream::iter(batches).buffer_unordered(BATCHES_IN_FLIGHT);
    let mut done = 0u64;
    while let Some(rows_done) = batches.next().await {
        done += rows_done;
        progress(done, rows);
    }
    drop(batches);
    let mut counts = ImportCounts::default();
    for plan in planned.iter() {
        match plan.outcome {
            Outcome::Registered => counts.registered += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
            _ => counts.refused += 1,
        }
    }
    bus.execute::<Import>(import_id.stream(), ImportCommand::Finish { counts }, origin).await?;
    Ok(())
}

/// Writes one batch of rows (row by row if the log refuses the batch as a whole); answers
/// the rows it covered.
async fn write_batch(bus: &CommandBus, origin: &Origin, chunk: &mut [Planned]) -> u64 {
    let steps: Vec<Box<dyn Step>> = chunk
        .iter()
        .filter_map(|p| {
            let command = p.command.clone()?;
            let (id, _) = p.target?;
            Some(on::<Customer>(id.stream(), CustomerCommand::Import(Box::new(command))))
        })
        .collect();
    if !steps.is_empty() && bus.execute_steps(steps, origin).await.is_err() {
        for plan in chunk.iter_mut() {
            let (Some(command), Some((id, _))) = (plan.command.clone(), plan.target) else { continue };
            let step = on::<Customer>(id.stream(), CustomerCommand::Import(Box::new(command)));
            match bus.execute_steps(vec![step], origin).await {
                Ok(executed) if executed.events == 0 => plan.outcome = Outcome::Unchanged,
                Ok(_) => {}
                Err(e) => {
                    plan.outcome = Outcome::Refused;
                    plan.error(None, "row", "refused", e.to_string());
                }
            }
        }
    }
    u64::try_from(chunk.len()).unwrap_or(0)
}

/// Matches the row to a customer, resolves its owner and department, and checks the
/// caller's rights over both.
fn resolve(
    views: &Views,
    caller: &Caller,
    reader: &Reader<'_>,
    key: MatchKey,
    ctx: &oacis_domain::Context,
    seen_keys: &mut HashMap<String, u64>,
    plan: &mut Planned,
) {
    // A key of personal data (phone, e-mail, identity number) matches only customers whose
    // personal data the caller may read: otherwise a dry run would tell who has a number.
    let personal_key = matches!(key, MatchKey::Phone | MatchKey::Email | MatchKey::IdNumber);
    let readable = |id: CustomerId| {
        views.directory.get(id).is_some_and(|row| {
            let r = resource(&views.access, Some(row.owner), Some(row.department));
            caller.may(Permission::CustomerRead, &r)
                && (!personal_key || caller.may(Permission::CustomerReadPersonal, &r))
        })
    };
    let header = |field: Field| reader.header(field);
    // The row's key value, normalised, and the customers it matches.
    let (key_value, matches): (Option<String>, Vec<CustomerId>) = match key {
        MatchKey::None => (None, Vec::new()),
        MatchKey::Id => match plan.values.id {
            Some(id) => (Some(id.to_string()), vec![id]),
            None => (None, Vec::new()),
        },
        MatchKey::ExternalId => match plan.values.external_id.clone().flatten() {
            Some(x) => (Some(x.clone()), views.directory.by_external_id(&x).to_vec()),
            None => (None, Vec::new()),
        },
        MatchKey::Phone | MatchKey::Email | MatchKey::IdNumber | MatchKey::CreditCode => {
            match key_profile(key, &plan.values, ctx) {
                Some((value, profile)) => {
                    let wanted = match key {
                        MatchKey::Phone => DuplicateField::Phone,
                        MatchKey::Email => DuplicateField::Email,
                        MatchKey::IdNumber => DuplicateField::IdNumber,
                        _ => DuplicateField::CreditCode,
                    };
                    let found = views
                        .directory
                        .possible_duplicates_of(&DuplicateKeys::of(&profile), None)
                        .into_iter()
                        .filter(|m| m.fields.contains(&wanted))
                        .map(|m| m.customer)
                        .collect();
                    (Some(value), found)
                }
                None => (None, Vec::new()),
            }
        }
    };
    if personal_key {
        plan.revealed.extend(matches.iter().copied().filter(|id| readable(*id)));
    }
    if let Some(value) = &key_value {
        if let Some(first) = seen_keys.get(value).filter(|first| **first != plan.line) {
            let message = format!("has the same {} as line {first}", key.as_str());
            plan.error(key.field().and_then(header), key.as_str(), "duplicate", message);
            return;
        }
        seen_keys.insert(value.clone(), plan.line);
    }
    let visible: Vec<CustomerId> = matches.iter().copied().filter(|id| readable(*id)).collect();
    let existing = match (key, visible.as_slice()) {
        (_, [one]) => Some(*one),
        (_, []) => None,
        (_, many) => {
            let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
            let message = format!("matches {} customers by {}: {}", many.len(), key.as_str(), ids.join(", "));
            plan.error(key.field().and_then(header), key.as_str(), "ambiguous", message);
            return;
        }
    };
    // An id a row carries for a new customer is kept only for a caller who reads every
    // customer. For any other, an id it cannot see is refused alike whether a hidden customer
    // has it or none does, so that an import (a dry run above all) cannot tell which.
    if let (None, Some(id)) = (existing, plan.values.id) {
        if !matches!(caller.visible(Permission::CustomerRead, &views.access), Ok(None)) {
            let message = "no customer you may see has this id (a new customer's id is kept only for users who may \
                           read every customer: leave it empty)";
            plan.error(header(Field::Id), "id", "not_found", message);
            return;
        }
        if views.directory.get(id).is_some() {
            plan.error(header(Field::Id), "id", "duplicate", "another customer has this id");
            return;
        }
    }
    let current = existing.and_then(|id| views.directory.get(id));
    let access = &views.access;
    // Both are looked up before either refuses, so that the report names every problem.
    let owner = match plan.values.owner.clone() {
        Some(text) => find_user(access, &text).map_err(|m| (header(Field::Owner), "owner", m)),
        None => Ok(current.map_or(caller.user, |row| row.owner)),
    };
    let department = match plan.values.department.clone() {
        Some(text) => find_department(access, &text).map_err(|m| (header(Field::Department), "department", m)),
        None => match (current, &owner) {
            (Some(row), _) if plan.values.owner.is_none() => Ok(row.department),
            (_, Ok(owner)) => access
                .user(*owner)
                .map(|user| user.department)
                .ok_or_else(|| (header(Field::Owner), "owner", "the owner has no department".to_owned())),
            // The owner's own error says it all.
            (_, Err(_)) => Ok(DepartmentId(Uuid::nil())),
        },
    };
    let (owner, department) = match (owner, department) {
        (Ok(owner), Ok(department)) => (owner, department),
        (owner, department) => {
            for (column, field, message) in [owner.err(), department.err()].into_iter().flatten() {
                plan.error(column, field, "not_found", message);
            }
            return;
        }
    };
    let target = resource(access, Some(owner), Some(department));
    let mut allowed = caller.may(Permission::CustomerWrite, &target);
    if let Some(row) = current {
        let now = resource(access, Some(row.owner), Some(row.department));
        allowed &= caller.may(Permission::CustomerWrite, &now);
        // Moving a customer to another owner or department is a transfer, as it is over
        // `changeCustomerOwner`.
        if (row.owner, row.department) != (owner, department)
            && !(caller.may(Permission::CustomerTransfer, &now) && caller.may(Permission::CustomerTransfer, &target))
        {
            let message = "you may not transfer this customer to another owner or department (customer.transfer)";
            return plan.error(header(Field::Owner), "owner", "forbidden", message);
        }
        plan.personal_hidden = !caller.may(Permission::CustomerReadPersonal, &now);
    }
    if !allowed {
        let message = "you may not write customers of this owner and department (customer.write)";
        return plan.error(None, "owner", "forbidden", message);
    }
    let id = existing.or(plan.values.id).unwrap_or_else(|| CustomerId(Uuid::now_v7()));
    plan.target = Some((id, existing.is_some()));
    plan.owner = Some(owner);
    plan.department = Some(department);
}

/// A profile holding only the row's key value in its stored form (for the duplicate index),
/// and that value as text.
fn key_profile(key: MatchKey, values: &Values, ctx: &oacis_domain::Context) -> Option<(String, Profile)> {
    let mut profile = blank_profile(CustomerKind::Person);
    let mut v = Validator::in_context(ctx);
    let value = match key {
        MatchKey::Phone => {
            let phone = v.phone("phone", values.phones.as_ref()?.first()?);
            profile.personal.phones = vec![phone.clone()];
            phone
        }
        MatchKey::Email => {
            let email = v.email("email", values.emails.as_ref()?.first()?);
            profile.personal.emails = vec![email.clone()];
            oacis_domain::validate::email_key(&email)
        }
        MatchKey::IdNumber => {
            let (number, _) = v.resident_id("id_number", values.id_number.clone().flatten().as_deref()?);
            profile.personal.id_number = Some(number.clone());
            number
        }
        _ => {
            let code = v.credit_code("credit_code", values.credit_code.clone().flatten().as_deref()?);
            profile.kind = CustomerKind::Organisation;
            profile.company = Some(Company { credit_code: Some(code.clone()), ..Company::default() });
            code
        }
    };
    // An invalid key value matches nothing; the row's validation reports it.
    v.finish(()).ok()?;
    Some((value, profile))
}

/// A user by id, username, or display name (when only one user has it).
fn find_user(access: &AccessDirectory, text: &str) -> Result<UserId, String> {
    if let Ok(id) = Uuid::try_parse(text) {
        return access.user(UserId(id)).map(|u| u.id).ok_or_else(|| format!("no user has the id {text}"));
    }
    if let Some(user) = access.user_by_name(text) {
        return Ok(user.id);
    }
    let named: Vec<UserId> = access.users().filter(|u| u.display_name == text).map(|u| u.id).collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no user is called {text:?} (give a username, a user id or a display name)")),
        _ => Err(format!("{} users are called {text:?}; give a username", named.len())),
    }
}

/// A department by id or name (when only one open department has it).
fn find_department(access: &AccessDirectory, text: &str) -> Result<DepartmentId, String> {
    if let Ok(id) = Uuid::try_parse(text) {
        return access
            .department(DepartmentId(id))
            .map(|_| DepartmentId(id))
            .ok_or_else(|| format!("no department has the id {text}"));
    }
    let named: Vec<DepartmentId> =
        access.departments().filter(|(_, d)| d.open && d.name == text).map(|(id, _)| *id).collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no open department is called {text:?}")),
        _ => Err(format!("{} departments are called {text:?}; give its id", named.len())),
    }
}

fn blank_profile(kind: CustomerKind) -> Profile {
    Profile {
        kind,
        name: String::new(),
        company: None,
        source: SourceChannel::Other,
        tags: std::collections::BTreeSet::new(),
        segment: None,
        personal: CustomerPersonal::default(),
    }
}

/// The command for a planned row: the customer's profile (or a new one) with the row's
/// columns laid over it. `None` (with an error on the plan) when the row cannot say what
/// kind of customer it is.
fn import_row(
    import: ImportId,
    id: CustomerId,
    state: &CustomerState,
    reader: &Reader<'_>,
    plan: &mut Planned,
) -> Option<ImportRow> {
    let v = &plan.values;
    let existing = state.profile.clone();
    let org_fields = v.credit_code.clone().flatten().is_some();
    let kind = v.kind.or(existing.as_ref().map(|p| p.kind)).unwrap_or(
        if org_fields
            || (v.name.as_deref().unwrap_or("").is_empty() && v.company.as_deref().is_some_and(|c| !c.is_empty()))
        {
            CustomerKind::Organisation
        } else {
            CustomerKind::Person
        },
    );
    let mut profile = existing.unwrap_or_else(|| blank_profile(kind));
    profile.kind = kind;
    let mut warnings = Vec::new();
    match (kind, v.name.clone().filter(|n| !n.is_empty()), v.company.clone().filter(|c| !c.is_empty())) {
        (_, Some(name), None) => profile.name = name,
        (CustomerKind::Organisation, _, Some(company)) => profile.name = company,
        (CustomerKind::Person, Some(name), Some(_)) => {
            profile.name = name;
            warnings.push(
                "the company column is not kept for a person (register the organisation as a customer of its own)",
            );
        }
        (CustomerKind::Person, None, Some(_)) | (_, None, None) => {
            if v.name.is_some() || v.company.is_some() {
                profile.name = String::new();
            }
        }
    }
    if kind == CustomerKind::Organisation {
        let mut company = profile.company.take().unwrap_or_default();
        for (slot, value) in [
            (&mut company.industry, &v.industry),
            (&mut company.size, &v.company_size),
            (&mut company.website, &v.website),
            (&mut company.credit_code, &v.credit_code),
        ] {
            if let Some(value) = value {
                slot.clone_from(value);
            }
        }
        profile.company = Some(company);
    } else {
        profile.company = None;
        for (field, value) in
            [(Field::Industry, &v.industry), (Field::CompanySize, &v.company_size), (Field::Website, &v.website)]
        {
            if value.as_ref().is_some_and(Option::is_some) {
                let name = field.name();
                let message = format!("a person has no {name}; leave it empty for people, or map the column to ignore");
                plan.errors.push(Issue {
                    line: plan.line,
                    column: reader.header(field),
                    field: name.to_owned(),
                    code: "invalid_format".into(),
                    message,
                });
            }
        }
    }
    if let Some(segment) = &v.segment {
        profile.segment.clone_from(segment);
    }
    if let Some(source) = v.source {
        profile.source = source;
    }
    if let Some(tags) = &v.tags {
        profile.tags.clone_from(tags);
    }
    if let Some(phones) = &v.phones {
        profile.personal.phones.clone_from(phones);
    }
    if let Some(emails) = &v.emails {
        profile.personal.emails.clone_from(emails);
    }
    if let Some(number) = &v.id_number {
        profile.personal.id_number.clone_from(number);
    }
    if let Some(birth) = v.birth_date {
        profile.personal.birth_date = birth;
    }
    for message in warnings {
        plan.warnings.push(Issue {
            line: plan.line,
            column: reader.header(Field::Company),
            field: "company".into(),
            code: "ignored".into(),
            message: message.into(),
        });
    }
    Some(ImportRow {
        import,
        id,
        row: u32::try_from(plan.line).unwrap_or(u32::MAX),
        profile,
        owner: plan.owner?,
        department: plan.department?,
        status: v.status,
        external_id: v.external_id.clone().flatten(),
        registered_at: v.registered_at,
        last_contact: v.last_contact,
    })
}

/// The file's column that a domain field path comes from.
fn column_of(path: &str, columns: &Columns, headers: &[String]) -> Option<String> {
    let field = match path.split(['[', '.']).collect::<Vec<_>>().as_slice() {
        ["profile", "name", ..] => Field::Name,
        ["profile", "company", "industry", ..] => Field::Industry,
        ["profile", "company", "size", ..] => Field::CompanySize,
        ["profile", "company", "website", ..] => Field::Website,
        ["profile", "company", "credit_code", ..] => Field::CreditCode,
        ["profile", "tags", ..] => Field::Tags,
        ["profile", "segment", ..] => Field::Segment,
        ["profile", "personal", "phones", ..] => Field::Phones,
        ["profile", "personal", "emails", ..] => Field::Emails,
        ["profile", "personal", "id_number", ..] => Field::IdNumber,
        ["profile", "personal", "birth_date", ..] => Field::BirthDate,
        ["external_id", ..] => Field::ExternalId,
        ["registered_at", ..] => Field::RegisteredAt,
        ["last_contact", ..] => Field::LastContact,
        ["status", ..] => Field::Status,
        _ => return None,
    };
    // For a list field fed by several columns, the first is named.
    columns.of(field).next().and_then(|c| headers.get(c).cloned())
}

/// A domain refusal as the row's errors, each naming its column.
fn domain_issues(error: &DomainError, columns: &Columns, headers: &[String], plan: &mut Planned) {
    match error {
        DomainError::Validation(fields) => {
            for f in fields {
                let field = f
                    .field
                    .strip_prefix("profile.personal.")
                    .or_else(|| f.field.strip_prefix("profile."))
                    .unwrap_or(&f.field);
                let code =
                    serde_json::to_value(f.code).ok().and_then(|c| c.as_str().map(str::to_owned)).unwrap_or_default();
                let issue = Issue {
                    line: plan.line,
                    column: column_of(&f.field, columns, headers),
                    field: field.to_owned(),
                    code,
                    message: f.message.clone(),
                };
                plan.errors.push(issue);
            }
        }
        other => plan.error(None, "row", "refused", other.to_string()),
    }
}

/// Notes (or, with `refuse`, errors) for a new customer that shares a key with customers
/// the caller may see with their personal data, or with an earlier row of the file.
fn duplicates(
    bus: &CommandBus,
    caller: &Caller,
    profile: &Profile,
    refuse: bool,
    seen: &mut HashMap<(DuplicateField, String), u64>,
    plan: &mut Planned,
) {
    let keys = DuplicateKeys::of(profile);
    // Every visible match is counted; a common name matches many customers of a large
    // directory, so only a few are named and the rest counted.
    let (named, total) = bus
        .projections()
        .read(|v| {
            let mut named = Vec::new();
            let mut total = 0usize;
            for m in v.directory.possible_duplicates_of(&keys, None) {
                let visible = v.directory.get(m.customer).is_some_and(|row| {
                    let r = resource(&v.access, Some(row.owner), Some(row.department));
                    caller.may(Permission::CustomerRead, &r) && caller.may(Permission::CustomerReadPersonal, &r)
                });
                if !visible {
                    continue;
                }
                total += 1;
                if named.len() < DUPLICATES_NAMED {
                    let fields: Vec<&str> = m.fields.iter().map(|f| f.name()).collect();
                    named.push(format!("{} ({})", m.customer, fields.join(", ")));
                    if m.fields.iter().any(|f| f.is_personal()) {
                        plan.revealed.push(m.customer);
                    }
                }
            }
            (named, total)
        })
        .unwrap_or_default();
    let mut messages = Vec::new();
    if total > 0 {
        let more = total - named.len();
        let rest = if more > 0 { format!("; and {more} more") } else { String::new() };
        messages.push(format!("possible duplicate of {}{rest}", named.join("; ")));
    }
    let mut earlier: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (field, key) in keys.iter() {
        match seen.get(&(field, key.to_owned())) {
            Some(line) => earlier.entry(*line).or_default().push(field.name()),
            None => {
                seen.insert((field, key.to_owned()), plan.line);
            }
        }
    }
    for (line, fields) in earlier {
        messages.push(format!("shares {} with line {line} of this file", fields.join(", ")));
    }
    for message in messages {
        let issue =
            Issue { line: plan.line, column: None, field: "row".into(), code: "possible_duplicate".into(), message };
        if refuse {
            plan.errors.push(issue);
        } else {
            plan.warnings.push(issue);
        }
    }
}

/// What an undo did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, async_graphql::SimpleObject)]
#[graphql(name = "ImportUndone")]
pub struct UndoReport {
    /// The import.
    pub import_id: String,
    /// Customers it registered, now archived.
    pub archived: u64,
    /// Customers it updated, now back as before.
    pub restored: u64,
    /// Customers left as they are, each with why.
    pub skipped: Vec<String>,
    /// Whether later changes were overridden.
    pub forced: bool,
}

/// Reverts a whole import as the caller (who needs `customer.import_undo`).
///
/// # Errors
/// `Forbidden` without the permission, `NotFound` for an unknown import, `ChangedSince`
/// (listing them) when customers changed after the import and `force` is not given, and
/// the command path's errors (an import undone before is refused by its stream).
pub async fn undo(
    bus: &CommandBus,
    caller: &Caller,
    client_addr: Option<String>,
    import_id: ImportId,
    force: bool,
) -> Result<UndoReport, ImportError> {
    if !caller.holds(Permission::CustomerImportUndo) {
        return Err(ImportError::Forbidden("undoing an import needs customer.import_undo".into()));
    }
    let summary = bus
        .projections()
        .read(|v| v.audit.import(import_id).cloned())
        .map_err(|e| ImportError::Command(crate::command::CommandError::Views(e)))?
        .ok_or_else(|| ImportError::NotFound(import_id.to_string()))?;
    if in_flight().contains(&import_id) {
        return Err(ImportError::Running(import_id.to_string()));
    }
    // Every customer the import touched must lie in the scope of the caller's
    // `customer.import_undo` (nothing is listed otherwise: the ids are not theirs to see).
    let outside = bus
        .projections()
        .read(|v| {
            summary
                .customers
                .iter()
                .filter(|c| {
                    v.directory.get(c.customer).is_some_and(|row| {
                        !caller.may(
                            Permission::CustomerImportUndo,
                            &resource(&v.access, Some(row.owner), Some(row.department)),
                        )
                    })
                })
                .count()
        })
        .map_err(|e| ImportError::Command(crate::command::CommandError::Views(e)))?;
    if outside > 0 {
        return Err(ImportError::Forbidden(format!(
            "{outside} of the import's customers lie outside the scope of your customer.import_undo"
        )));
    }
    if summary.status == ImportStatus::Undone {
        return Err(ImportError::Command(crate::command::CommandError::Domain(DomainError::InvalidTransition {
            entity: "import",
            status: "undone",
            action: "undo",
        })));
    }
    // One entry per customer: the versions before its first row and after its last.
    let mut touched: BTreeMap<CustomerId, (bool, u64, u64)> = BTreeMap::new();
    for c in &summary.customers {
        let entry = touched.entry(c.customer).or_insert((c.registered, c.before, c.after));
        entry.1 = entry.1.min(c.before);
        entry.2 = entry.2.max(c.after);
    }
    // A customer counts as changed since when what an import sets (profile, owner,
    // department, status, external id) differs from what this import left; a stream that
    // only moved on (a later import undone, interactions logged) has not changed.
    let mut changed: Vec<String> = Vec::new();
    for (id, (_, _, after)) in &touched {
        let moved = bus
            .projections()
            .read(|v| v.directory.get(*id).is_some_and(|row| row.version > *after))
            .map_err(|e| ImportError::Command(crate::command::CommandError::Views(e)))?;
        if !moved {
            continue;
        }
        let left = state_at(bus, *id, *after, &mut |_, _| {}).await?;
        let now = bus.state::<Customer>(&id.stream()).await?;
        let set_by_import =
            |s: &CustomerState| (s.profile.clone(), s.owner, s.department, s.status, s.external_id.clone());
        if set_by_import(&left) != set_by_import(&now) {
            changed.push(id.to_string());
        }
    }
    if !changed.is_empty() && !force {
        return Err(ImportError::ChangedSince(changed));
    }
    let origin = origin_of(caller, ImportId(Uuid::now_v7()), client_addr);
    let mut report = UndoReport { import_id: import_id.to_string(), forced: force, ..UndoReport::default() };
    let mut steps: Vec<(CustomerId, bool, Box<dyn Step>)> = Vec::new();
    for (id, (registered, before, after)) in &touched {
        let restore = if *registered { None } else { Some(Box::new(restore_of(bus, *id, *before, *after).await?)) };
        let step = on::<Customer>(id.stream(), CustomerCommand::RevertImport { import: import_id, restore });
        steps.push((*id, *registered, step));
    }
    for (id, registered, step) in steps {
        match bus.execute_steps(vec![step], &origin).await {
            Ok(_) if registered => report.archived += 1,
            Ok(_) => report.restored += 1,
            Err(crate::command::CommandError::Domain(e)) => report.skipped.push(format!("{id}: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    let undo = ImportCommand::Undo {
        archived: report.archived,
        restored: report.restored,
        skipped: u64::try_from(report.skipped.len()).unwrap_or(u64::MAX),
        forced: force,
    };
    bus.execute::<Import>(import_id.stream(), undo, &origin).await?;
    Ok(report)
}

/// The customer's state at stream version `upto`, folded from its stream (sealed payloads
/// opened); every later event is handed to `later` with its version.
async fn state_at(
    bus: &CommandBus,
    id: CustomerId,
    upto: u64,
    later: &mut (dyn FnMut(u64, &CustomerEvent) + Send),
) -> Result<CustomerState, ImportError> {
    let store = bus.store();
    let stream = StreamId::new(id.stream()).map_err(crate::command::CommandError::Refused)?;
    let keys: Option<Arc<oacis_eventlog::keys::KeyStore>> = store.keys().cloned();
    let mut state = CustomerState::default();
    let mut from = Version(1);
    loop {
        let page = store.read_stream(&stream, from, 1_000).await.map_err(crate::command::CommandError::Store)?;
        let Some(last) = page.last().map(|r| r.version) else { break };
        for record in &page {
            let event: CustomerEvent = oacis_projections::decode::decode_event(record, keys.as_deref())
                .map_err(crate::command::CommandError::Views)?;
            if record.version.0 <= upto {
                state = Customer::evolve(state, &event);
            } else {
                later(record.version.0, &event);
            }
        }
        from = Version(last.0 + 1);
    }
    Ok(state)
}

/// A customer as it was at version `before`, with the last contact of interactions logged
/// after version `after` kept.
async fn restore_of(bus: &CommandBus, id: CustomerId, before: u64, after: u64) -> Result<ImportRestore, ImportError> {
    let mut later_contact = None;
    let state = state_at(bus, id, before, &mut |version, event| {
        if let (true, CustomerEvent::InteractionLogged(e)) = (version > after, event) {
            later_contact =
                Some(later_contact.map_or(e.occurred_at, |t: oacis_domain::ids::Timestamp| t.max(e.occurred_at)));
        }
    })
    .await?;
    let (Some(profile), Some(owner), Some(department)) = (state.profile, state.owner, state.department) else {
        return Err(ImportError::NotFound(format!("customer {id} before the import")));
    };
    let last_contact = match (state.last_contact, later_contact) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let status =
        if state.status == CustomerStatus::Archived { CustomerStatus::Archived } else { CustomerStatus::Active };
    Ok(ImportRestore { profile, owner, department, status, external_id: state.external_id, last_contact })
}
