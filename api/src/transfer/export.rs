//! Exporting customers: the rows of a directory query, in the caller's scope, as CSV (UTF-8
//! with a BOM, so that spreadsheets open Chinese text correctly; CRLF line ends) or `.xlsx`,
//! with personal data masked unless the caller may read it, and the export recorded in the
//! caller's access log with its row count before the file is handed out.
//!
//! Invariants:
//! - The columns are the import's canonical headers, so an export re-imports as an upsert by
//!   `id` that changes nothing (for a caller who sees personal data unmasked).
//! - Every cell is written as text (phones and identity numbers never become numbers).
//! - No file leaves before its `CustomersExported` event is durable.

use oacis_domain::access_log::{AccessLog, AccessLogCommand};
use oacis_domain::authz::Permission;
use oacis_domain::customer::{CustomerKind, CustomerStatus, SourceChannel};
use oacis_domain::ids::{AccessLogId, DepartmentId};
use oacis_projections::views::access::AccessDirectory;
use oacis_projections::views::directory::{CustomerRow, DirectoryQuery, MAX_EXPORT_ROWS};

use super::columns::Field;
use super::table::Format;
use super::values::join_list;
use super::ImportError;
use crate::access::{mask_all, mask_email, mask_id_number, mask_phone, resource, Caller};
use crate::command::{CommandBus, Origin};
use crate::graphql::scalars::time_text;

/// An export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Customers in it.
    pub rows: u64,
    /// Whether personal data is in it unmasked (for some row).
    pub personal: bool,
    /// Its media type.
    pub content_type: &'static str,
}

/// The exported columns, in order (the organisation name is in `name`).
fn columns() -> impl Iterator<Item = Field> {
    Field::ALL.iter().copied().filter(|f| *f != Field::Company)
}

fn kind_text(kind: CustomerKind) -> &'static str {
    match kind {
        CustomerKind::Person => "person",
        CustomerKind::Organisation => "organisation",
    }
}

fn source_text(source: SourceChannel) -> &'static str {
    match source {
        SourceChannel::SalesVisit => "sales_visit",
        SourceChannel::Referral => "referral",
        SourceChannel::MarketResearch => "market_research",
        SourceChannel::Website => "website",
        SourceChannel::SocialMedia => "social_media",
        SourceChannel::Event => "event",
        SourceChannel::Other => "other",
        SourceChannel::ColdCall => "cold_call",
        SourceChannel::Partner => "partner",
    }
}

fn status_text(status: CustomerStatus) -> &'static str {
    match status {
        CustomerStatus::Unregistered => "unregistered",
        CustomerStatus::Active => "active",
        CustomerStatus::Archived => "archived",
        CustomerStatus::Merged => "merged",
    }
}

/// A department as an export names it: its name when no other open department has it,
/// else its id.
fn department_text(access: &AccessDirectory, id: DepartmentId) -> String {
    match access.department(id) {
        Some(d) if access.departments().filter(|(_, o)| o.open && o.name == d.name).count() <= 1 => d.name.clone(),
        _ => id.to_string(),
    }
}

/// One row's cells, personal fields masked unless `personal`.
fn cells(row: &CustomerRow, access: &AccessDirectory, personal: bool) -> Vec<String> {
    let more = row.more();
    let masked = |values: &[String], mask: fn(&str) -> String| -> Vec<String> {
        values.iter().map(|v| if personal { v.clone() } else { mask(v) }).collect()
    };
    columns()
        .map(|field| match field {
            Field::Id => row.id.to_string(),
            Field::ExternalId => more.external_id.clone().unwrap_or_default(),
            Field::Kind => kind_text(row.kind).to_owned(),
            Field::Name => row.name.clone(),
            Field::Company => String::new(),
            Field::Industry => row.industry.clone().unwrap_or_default(),
            Field::CompanySize => more.company_size.clone().unwrap_or_default(),
            Field::Website => more.website.clone().unwrap_or_default(),
            Field::CreditCode => more.credit_code.clone().unwrap_or_default(),
            Field::Segment => row.segment.clone().unwrap_or_default(),
            Field::Source => source_text(row.source).to_owned(),
            Field::Tags => join_list(row.tags.iter().map(String::as_str), false),
            Field::Phones => join_list(masked(&row.phones, mask_phone).iter().map(String::as_str), true),
            Field::Emails => join_list(masked(&row.emails, mask_email).iter().map(String::as_str), false),
            Field::IdNumber => masked(more.id_number.as_slice(), mask_id_number).concat(),
            Field::BirthDate => {
                masked(&more.birth_date.map(|d| d.to_string()).into_iter().collect::<Vec<_>>(), mask_all).concat()
            }
            Field::Owner => access.user(row.owner).map_or_else(|| row.owner.to_string(), |u| u.username.clone()),
            Field::Department => department_text(access, row.department),
            Field::Status => status_text(row.status).to_owned(),
            Field::RegisteredAt => time_text(row.created_at),
            Field::LastContact => row.last_contact.map(time_text).unwrap_or_default(),
        })
        .collect()
}

/// Writes `rows` as a file.
///
/// # Errors
/// [`ImportError::Mapping`] never; `File` if the `.xlsx` writer fails.
fn write(rows: &[Vec<String>], format: Format) -> Result<Vec<u8>, ImportError> {
    let headers: Vec<&str> = columns().map(Field::name).collect();
    match format {
        Format::Csv => {
            let mut out =
                csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(b"\xEF\xBB\xBF".to_vec());
            let failed =
                |e: csv::Error| ImportError::File(super::table::FileError::Csv { line: 0, reason: e.to_string() });
            out.write_record(&headers).map_err(failed)?;
            for row in rows {
                out.write_record(row.iter().map(|cell| super::table::neutralised(cell).into_owned()))
                    .map_err(failed)?;
            }
            out.into_inner()
                .map_err(|e| ImportError::File(super::table::FileError::Csv { line: 0, reason: e.to_string() }))
        }
        Format::Xlsx => {
            let failed =
                |e: rust_xlsxwriter::XlsxError| ImportError::File(super::table::FileError::Xlsx(e.to_string()));
            let mut book = rust_xlsxwriter::Workbook::new();
            let sheet = book.add_worksheet();
            sheet.set_name("customers").map_err(failed)?;
            for (c, header) in headers.iter().enumerate() {
                sheet.write_string(0, u16::try_from(c).unwrap_or(u16::MAX), *header).map_err(failed)?;
            }
            for (r, row) in rows.iter().enumerate() {
                let r = u32::try_from(r + 1).unwrap_or(u32::MAX);
                for (c, cell) in row.iter().enumerate() {
                    if !cell.is_empty() {
                        sheet.write_string(r, u16::try_from(c).unwrap_or(u16::MAX), cell).map_err(failed)?;
                    }
                }
            }
            book.save_to_buffer().map_err(failed)
        }
    }
}

/// Exports the customers `query` selects (its `visible` is replaced by the caller's scope;
/// `first` defaults to every row, at most [`MAX_EXPORT_ROWS`]), recording the export first.
///
/// # Errors
/// `Forbidden` without `customer.export`; the command path's errors if the access log
/// cannot record the export (then no file is made).
pub async fn export(
    bus: &CommandBus,
    caller: &Caller,
    client_addr: Option<String>,
    mut query: DirectoryQuery,
    described: String,
    format: Format,
) -> Result<ExportFile, ImportError> {
    if !caller.holds(Permission::CustomerExport) {
        return Err(ImportError::Forbidden("exporting customers needs customer.export".into()));
    }
    query.export = true;
    if query.first == 0 {
        query.first = MAX_EXPORT_ROWS;
    }
    let (rows, personal) = bus
        .projections()
        .read(|v| -> Result<(Vec<Vec<String>>, bool), ImportError> {
            query.visible = caller
                .visible(Permission::CustomerRead, &v.access)
                .map_err(|_| ImportError::Forbidden("reading customers needs customer.read".into()))?;
            let page = v.directory.query(&query);
            let mut any_personal = false;
            let rows = page
                .rows
                .iter()
                .map(|row| {
                    // Unmasked only where the caller may read this customer's personal data.
                    let r = resource(&v.access, Some(row.owner), Some(row.department));
                    let personal = caller.may(Permission::CustomerReadPersonal, &r);
                    any_personal |= personal && !(row.phones.is_empty() && row.emails.is_empty());
                    cells(row, &v.access, personal)
                })
                .collect();
            Ok((rows, any_personal))
        })
        .map_err(|e| ImportError::Command(crate::command::CommandError::Views(e)))??;
    let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    let origin =
        Origin { actor: Some(caller.user), correlation_id: uuid::Uuid::now_v7(), client_addr, ..Origin::default() };
    let record = AccessLogCommand::RecordExport { records: count, query: described, personal };
    bus.execute::<AccessLog>(AccessLogId(caller.user.0).stream(), record, &origin).await?;
    let bytes = write(&rows, format)?;
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    };
    Ok(ExportFile { bytes, rows: count, personal, content_type })
}
