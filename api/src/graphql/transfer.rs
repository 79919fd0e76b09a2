//! Import and export of customers over GraphQL: `importCustomers` (the file as a GraphQL
//! multipart upload, or CSV text in the request), `undoCustomerImport`, `customerImports`,
//! and `exportCustomers` (the file base64-encoded in the response).
//!
//! Invariants:
//! - One import at a time per user: a second one is CONFLICT while the first runs.
//! - Row problems are in the report, never errors; errors are for the file, the mapping and
//!   the caller's rights.

use std::collections::HashSet;
use std::sync::Mutex;

use async_graphql::{Context, InputObject, Object, SimpleObject, Upload};
use base64::Engine as _;
use oacis_domain::authz::Permission;
use oacis_domain::ids::{ImportId, UserId};
use oacis_domain::FieldCode;

use super::customers::{directory_query, CustomerFilter, CustomerOrder};
use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, time_text};
use super::{app, caller, request};
use crate::transfer::import::{self, ColumnReport, ImportOptions, MatchKey, Report, RowReport, Totals, UndoReport};
use crate::transfer::table::{Format, TextEncoding, MAX_FILE_BYTES};
use crate::transfer::ImportError;

/// Users with an import running.
#[derive(Debug, Default)]
pub struct Running(Mutex<HashSet<UserId>>);

/// Holds a user's import slot until dropped.
struct Slot<'a>(&'a Running, UserId);

impl Running {
    fn take(&self, user: UserId) -> ApiResult<Slot<'_>> {
        let mut running = self.0.lock().map_err(|_| ApiError::internal("import registry poisoned"))?;
        if !running.insert(user) {
            return Err(ApiError::Conflict { message: ImportError::Busy.to_string(), version: None });
        }
        Ok(Slot(self, user))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0 .0.lock() {
            running.remove(&self.1);
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Command(c) => c.into(),
            ImportError::Forbidden(message) => ApiError::Forbidden(message),
            ImportError::NotFound(_) => ApiError::NotFound("import"),
            ImportError::Busy | ImportError::Running(_) | ImportError::ChangedSince(_) => {
                ApiError::Conflict { message: e.to_string(), version: None }
            }
            ImportError::File(_) | ImportError::Mapping(_) => {
                ApiError::field("file", FieldCode::InvalidFormat, e.to_string())
            }
        }
    }
}

/// A header and the field it holds.
#[derive(InputObject, Debug)]
pub struct ColumnMapping {
    /// The header as the file writes it.
    pub header: String,
    /// A field's name (`name`, `phones`, ..., see the import's columns) or `ignore`.
    pub field: String,
}

/// What to import, and how.
#[derive(InputObject)]
pub struct ImportInput {
    /// The file, as a GraphQL multipart upload (CSV or .xlsx, at most 32 MiB).
    pub file: Option<Upload>,
    /// Or the CSV text itself.
    pub text: Option<String>,
    /// The file's name (recorded with the import; default: the upload's).
    pub file_name: Option<String>,
    /// The format (default: from the file's first bytes).
    pub format: Option<Format>,
    /// A CSV file's text encoding.
    #[graphql(default_with = "TextEncoding::Auto")]
    pub encoding: TextEncoding,
    /// Headers the import does not know, and the fields they hold.
    #[graphql(default)]
    pub mapping: Vec<ColumnMapping>,
    /// What matches rows to customers (default: id, else external_id, else none).
    pub key: Option<MatchKey>,
    /// Validate and report only (the default); `false` writes the valid rows.
    #[graphql(default = true)]
    pub dry_run: bool,
    /// Refuse rows that look like customers already registered.
    #[graphql(default)]
    pub refuse_duplicates: bool,
    /// The offset of times written without one, in minutes east of UTC.
    #[graphql(default = 480)]
    pub utc_offset_minutes: i32,
    /// Leave out refused values a row can do without (a bad phone, a person's industry, an
    /// unknown owner or status), each reported as a warning, instead of refusing the row.
    #[graphql(default)]
    pub omit_invalid_values: bool,
}

impl std::fmt::Debug for ImportInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportInput")
            .field("file_name", &self.file_name)
            .field("dry_run", &self.dry_run)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// An import's report.
#[derive(Debug)]
pub struct ImportReport(Report);

#[Object]
impl ImportReport {
    /// The import's id (absent for a dry run): give it to `undoCustomerImport`.
    async fn import_id(&self) -> Option<&str> {
        self.0.import_id.as_deref()
    }
    /// Whether nothing was written.
    async fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    /// The file's name.
    async fn file_name(&self) -> &str {
        &self.0.file_name
    }
    /// `csv` or `xlsx`.
    async fn format(&self) -> &str {
        self.0.format
    }
    /// The text encoding read (`utf-8`, `utf-16`, `gb18030`) or `xlsx`.
    async fn encoding(&self) -> &str {
        self.0.encoding
    }
    /// BLAKE3 of the file, hex.
    async fn file_blake3(&self) -> &str {
        &self.0.file_blake3
    }
    /// The matching key used.
    async fn key(&self) -> MatchKey {
        self.0.key
    }
    /// Every column and the field it fed.
    async fn columns(&self) -> &[ColumnReport] {
        &self.0.columns
    }
    /// The counts.
    async fn totals(&self) -> Totals {
        self.0.totals
    }
    /// Rows, in file order: by default only those with errors or warnings; at most `first`
    /// (default 1,000). The whole report is in `csv`.
    async fn rows(
        &self,
        #[graphql(default = true)] only_issues: bool,
        #[graphql(default = 1000)] first: usize,
    ) -> Vec<&RowReport> {
        self.0
            .rows
            .iter()
            .filter(|r| !only_issues || !r.errors.is_empty() || !r.warnings.is_empty())
            .take(first)
            .collect()
    }
    /// The whole report as CSV (one line per issue, or per row without any).
    async fn csv(&self) -> String {
        self.0.to_csv()
    }
}

/// An import as the audit trail keeps it.
#[derive(SimpleObject, Debug)]
pub struct CustomerImportNode {
    /// Id.
    pub id: String,
    /// Who started it (user id).
    pub actor: String,
    /// When (RFC 3339).
    pub started_at: String,
    /// The file's name.
    pub file_name: String,
    /// BLAKE3 of the file.
    pub file_blake3: String,
    /// Rows in the file.
    pub rows: u64,
    /// The matching key.
    pub key: String,
    /// `running`, `finished` or `undone`.
    pub status: String,
    /// Customers it registered or changed.
    pub customers: u64,
    /// Who undid it.
    pub undone_by: Option<String>,
    /// When.
    pub undone_at: Option<String>,
}

/// An export file.
#[derive(SimpleObject, Debug)]
pub struct ExportFileNode {
    /// A file name to save it under.
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Customers in it.
    pub rows: u64,
    /// Whether personal data is in it unmasked.
    pub personal: bool,
    /// The file, base64 (RFC 4648).
    pub content_base64: String,
}

/// Import and export mutations.
#[derive(Default, Debug)]
pub struct TransferMutation;

#[Object]
impl TransferMutation {
    /// Imports customers from a CSV or .xlsx file (`customer.write`): a dry run by default,
    /// which validates every row and writes nothing; with `dryRun: false` the valid rows are
    /// written, as the caller, under one correlation id (the import's id).
    async fn import_customers(&self, ctx: &Context<'_>, input: ImportInput) -> ApiResult<ImportReport> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::CustomerWrite)?;
        let (bytes, upload_name) = match (&input.file, input.text) {
            (Some(file), None) => {
                let value = file
                    .value(ctx)
                    .map_err(|e| ApiError::field("input.file", FieldCode::InvalidFormat, e.to_string()))?;
                (value.content.to_vec(), Some(value.filename))
            }
            (None, Some(text)) => (text.into_bytes(), None),
            _ => return Err(ApiError::field("input", FieldCode::Required, "give either file or text")),
        };
        if !(-14 * 60..=14 * 60).contains(&input.utc_offset_minutes) {
            let message = "an offset from UTC lies between -840 and 840 minutes (UTC-14:00 to UTC+14:00)";
            return Err(ApiError::field("input.utcOffsetMinutes", FieldCode::OutOfRange, message));
        }
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ApiError::field("input.file", FieldCode::TooLong, format!("at most {MAX_FILE_BYTES} bytes")));
        }
        let options = ImportOptions {
            file_name: input.file_name.or(upload_name).unwrap_or_else(|| "import.csv".into()),
            format: input.format,
            encoding: input.encoding,
            mapping: input.mapping.into_iter().map(|m| (m.header, m.field)).collect(),
            key: input.key,
            dry_run: input.dry_run,
            refuse_duplicates: input.refuse_duplicates,
            utc_offset_minutes: input.utc_offset_minutes,
            omit_invalid_values: input.omit_invalid_values,
        };
        let state = app(ctx)?;
        let _slot = state.imports.take(caller.user)?;
        let client = request(ctx)?.client_ip.map(|ip| ip.to_string());
        let report = import::import(&state.bus, caller, client, &bytes, &options, &mut |_, _| {}).await?;
        // Rows matched, or warned of, by a phone, an e-mail or an identity number tell whose
        // those are: recorded as reads of those customers' personal data.
        let reveal = &request(ctx)?.reveal;
        report.revealed.iter().for_each(|id| reveal.note(*id));
        Ok(ImportReport(report))
    }

    /// Undoes a whole import (`customer.import_undo`, administrators by default): customers
    /// it registered are archived, customers it updated get their values from before it. If
    /// others changed them since, CONFLICT lists them, unless `force`.
    async fn undo_customer_import(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default)] force: bool,
    ) -> ApiResult<UndoReport> {
        let caller = caller(ctx)?;
        let id = ImportId(parse_id("id", &id)?);
        let state = app(ctx)?;
        let _slot = state.imports.take(caller.user)?;
        let client = request(ctx)?.client_ip.map(|ip| ip.to_string());
        Ok(import::undo(&state.bus, caller, client, id, force).await?)
    }

    /// Exports the customers a directory filter selects, in the caller's scope
    /// (`customer.export`), as CSV or .xlsx; personal data is masked where the caller may not
    /// read it. The export is recorded in the caller's access log first.
    async fn export_customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        order_by: Option<CustomerOrder>,
        #[graphql(default_with = "Format::Csv")] format: Format,
    ) -> ApiResult<ExportFileNode> {
        let caller = caller(ctx)?;
        let described = format!("{filter:?} {order_by:?}");
        let query = directory_query(caller, filter.unwrap_or_default(), order_by, 0, None)?;
        let client = request(ctx)?.client_ip.map(|ip| ip.to_string());
        let file = crate::transfer::export::export(&app(ctx)?.bus, caller, client, query, described, format).await?;
        Ok(ExportFileNode {
            file_name: format!("customers.{}", format.as_str()),
            content_type: file.content_type.to_owned(),
            rows: file.rows,
            personal: file.personal,
            content_base64: base64::engine::general_purpose::STANDARD.encode(&file.bytes),
        })
    }
}

/// Import queries.
#[derive(Default, Debug)]
pub struct TransferQuery;

#[Object]
impl TransferQuery {
    /// Imports of customers, newest first (`audit.read`), at most `first` (default 20, at
    /// most 100).
    async fn customer_imports(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<CustomerImportNode>> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::AuditRead)?;
        let first = super::page_size(Some(first))?;
        let nodes = super::views(ctx, |v| {
            v.audit
                .imports()
                .take(first)
                .map(|i| CustomerImportNode {
                    id: i.id.to_string(),
                    actor: i.actor.clone(),
                    started_at: time_text(i.started_at),
                    file_name: i.file_name.clone(),
                    file_blake3: i.file_blake3.clone(),
                    rows: i.rows,
                    key: i.key.clone(),
                    status: format!("{:?}", i.status).to_lowercase(),
                    customers: u64::try_from(i.customers.len()).unwrap_or(u64::MAX),
                    undone_by: i.undone.as_ref().map(|(who, _)| who.clone()),
                    undone_at: i.undone.as_ref().map(|(_, at)| time_text(*at)),
                })
                .collect()
        })?;
        Ok(nodes)
    }
}
