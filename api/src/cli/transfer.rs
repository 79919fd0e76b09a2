//! `oacis import customers`, `oacis import undo` and `oacis export customers`: customers in
//! and out of CSV and `.xlsx` files on a stopped server's data folder, as a named user (whose
//! roles and scopes apply as they would over GraphQL), with progress on the terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use oacis_domain::authz::Permission;
use oacis_domain::ids::ImportId;
use oacis_projections::views::directory::{DirectoryQuery, Order, SortKey};
use oacis_projections::Projections;

use crate::access::Caller;
use crate::cli::keys::{open_store, KeyArgs};
use crate::command::CommandBus;
use crate::progress::Progress;
use crate::transfer::import::{self, ImportOptions, MatchKey};
use crate::transfer::table::{Format, TextEncoding};

/// Where the data is, and who acts.
#[derive(Debug, clap::Args)]
pub struct Acting {
    /// The data folder.
    #[arg(long, value_name = "DIR", env = "OACIS_DATA")]
    data: PathBuf,
    /// The key-encryption key.
    #[command(flatten)]
    keys: KeyArgs,
    /// The user who acts (username): the events name them, and their roles apply.
    #[arg(long = "as", value_name = "USERNAME", default_value = "admin")]
    user: String,
}

/// `oacis import ...`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: ImportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImportCommand {
    /// Import customers from a CSV or .xlsx file (a dry run with --dry-run).
    Customers(CustomersArgs),
    /// Undo a whole import (archive what it registered, restore what it updated).
    Undo(UndoArgs),
}

/// `oacis import customers FILE`.
#[derive(Debug, clap::Args)]
struct CustomersArgs {
    /// The file (.csv or .xlsx).
    file: PathBuf,
    #[command(flatten)]
    acting: Acting,
    #[command(flatten)]
    how: ImportFlags,
    /// Validate every row and report; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the report here too (`.json`, or `.csv` for one line per issue).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// How a file is read and matched.
#[derive(Debug, Clone, clap::Args)]
struct ImportFlags {
    /// The file's format (default: from its first bytes).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A CSV file's text encoding.
    #[arg(long, value_enum, default_value = "auto")]
    encoding: TextEncoding,
    /// A header the import does not know, and the field it holds (or `ignore`):
    /// `--map "客户名=name"`; repeatable.
    #[arg(long = "map", value_name = "HEADER=FIELD")]
    mapping: Vec<String>,
    /// What matches rows to existing customers (default: id, else external_id, else none).
    #[arg(long, value_enum)]
    key: Option<MatchKey>,
    /// Refuse rows that look like customers already registered.
    #[arg(long)]
    refuse_duplicates: bool,
    /// Leave out refused values a row can do without (a bad phone, a person's industry, an
    /// unknown owner or status), each reported as a warning, instead of refusing the row.
    #[arg(long)]
    omit_invalid_values: bool,
    /// The offset of times written without one, e.g. `+08:00`.
    #[arg(long, value_name = "±HH:MM", default_value = "+08:00", value_parser = parse_offset)]
    utc_offset: i32,
}

impl ImportFlags {
    /// The import's options for `file`.
    fn options(&self, file: &Path, dry_run: bool) -> anyhow::Result<ImportOptions> {
        let mapping = parse_mapping(&self.mapping).context("--map takes HEADER=FIELD")?;
        Ok(ImportOptions {
            file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            format: self.format,
            encoding: self.encoding,
            mapping,
            key: self.key,
            dry_run,
            refuse_duplicates: self.refuse_duplicates,
            utc_offset_minutes: self.utc_offset,
            omit_invalid_values: self.omit_invalid_values,
        })
    }
}

/// `oacis import undo ID`.
#[derive(Debug, clap::Args)]
struct UndoArgs {
    /// The import's id (printed by the import).
    import: uuid::Uuid,
    #[command(flatten)]
    acting: Acting,
    /// Revert customers that others changed since the import too.
    #[arg(long)]
    force: bool,
}

/// `oacis export customers`.
#[derive(Debug, clap::Args)]
pub struct ExportCustomersArgs {
    #[command(flatten)]
    acting: Acting,
    /// The file to write (replaced atomically once complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The format (default: from the file's extension, else CSV).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Only customers whose name, industry or tags contain this text.
    #[arg(long)]
    text: Option<String>,
    /// Only this segment.
    #[arg(long)]
    segment: Option<String>,
    /// Only customers with every one of these tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

/// The bytes of a file to import, read no further than one byte past the size limit (a
/// device or a pipe that never ends is refused, not read into memory).
///
/// # Errors
/// The file cannot be read, or is larger than [`crate::transfer::table::MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let limit = crate::transfer::table::MAX_FILE_BYTES;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(limit).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > limit {
        anyhow::bail!("{} is larger than {limit} bytes; split it", path.display());
    }
    Ok(bytes)
}

/// `HEADER=FIELD` pairs, trimmed; `None` if one has no `=`.
#[must_use]
pub fn parse_mapping(pairs: &[String]) -> Option<Vec<(String, String)>> {
    pairs.iter().map(|m| m.split_once('=').map(|(h, f)| (h.trim().to_owned(), f.trim().to_owned()))).collect()
}

/// Minutes east of UTC from `+08:00`, `-05:30` or `Z`.
fn parse_offset(text: &str) -> Result<i32, String> {
    if text == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err("use ±HH:MM, e.g. +08:00".into()),
    };
    let (h, m) = rest.split_once(':').ok_or("use ±HH:MM, e.g. +08:00")?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| "bad hours")?, m.parse().map_err(|_| "bad minutes")?);
    if h > 14 || m > 59 {
        return Err("the offset is out of range".into());
    }
    Ok(sign * (h * 60 + m))
}

/// Opens the data folder, replays the views, and signs the acting user in (without a
/// session: a command-line user acts with their roles, as over GraphQL).
async fn open(acting: &Acting) -> anyhow::Result<(CommandBus, Caller)> {
    if !oacis_eventlog::sled_closed::holds_store(&acting.data) {
        anyhow::bail!("{} holds no event store", acting.data.display());
    }
    let store = open_store(&acting.data, &acting.keys)?;
    let mut progress = Progress::new("replay", oacis_eventlog::EventStore::head(&store).seq.0);
    let projections = Projections::start(&store, &mut |seq| progress.set(seq.0)).await?;
    progress.finish();
    let bus = CommandBus::new(store, Arc::new(projections), Duration::from_secs(60));
    let caller = bus
        .projections()
        .read(|v| Caller::acting_as(&v.access, &acting.user))?
        .with_context(|| format!("no active user {:?}", acting.user))?;
    Ok((bus, caller))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// `oacis import ...`.
pub fn run_import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        ImportCommand::Customers(args) => run_customers(args),
        ImportCommand::Undo(args) => run_undo(args),
    }
}

fn run_customers(args: &CustomersArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_file(&args.file)?;
    let options = args.how.options(&args.file, args.dry_run)?;
    runtime()?.block_on(async {
        let (bus, caller) = open(&args.acting).await?;
        let report = import_showing_progress(&bus, &caller, &bytes, &options).await?;
        println!("{}", summary(&report));
        if let Some(path) = &args.report {
            let text = if path.extension().is_some_and(|e| e == "csv") {
                report.to_csv()
            } else {
                serde_json::to_string_pretty(&report)?
            };
            crate::cli::output::write_whole(path, text.as_bytes())?;
        }
        Ok(if report.totals.refused > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

/// Imports `bytes` as `caller` with a progress bar on the terminal, then prints the first
/// rows' errors (the totals are [`summary`]).
///
/// # Errors
/// As [`import::import`].
pub async fn import_showing_progress(
    bus: &CommandBus,
    caller: &Caller,
    bytes: &[u8],
    options: &ImportOptions,
) -> anyhow::Result<import::Report> {
    let mut bar: Option<Progress> = None;
    let report = import::import(bus, caller, None, bytes, options, &mut |done, total| {
        bar.get_or_insert_with(|| Progress::new("import", total)).set(done);
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish();
    }
    for (what, shown) in [("error", 20), ("warning", 10)] {
        let issues: Vec<_> =
            report.rows.iter().flat_map(|r| if what == "error" { &r.errors } else { &r.warnings }).collect();
        for issue in issues.iter().take(shown) {
            let column = issue.column.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
            eprintln!("{what}: line {}{column}: {} ({})", issue.line, issue.message, issue.code);
        }
        if issues.len() > shown {
            eprintln!("... and {} more {what}s: the report has them all", issues.len() - shown);
        }
    }
    Ok(report)
}

/// The report's totals in one line, and how to undo a real run.
#[must_use]
pub fn summary(report: &import::Report) -> String {
    let t = report.totals;
    let verb = if report.dry_run { "would register" } else { "registered" };
    let update = if report.dry_run { "would update" } else { "updated" };
    let mut line = format!(
        "{} rows: {verb} {}, {update} {}, unchanged {}, refused {}, with warnings {}",
        t.rows, t.registered, t.updated, t.unchanged, t.refused, t.warned
    );
    if let Some(id) = &report.import_id {
        line.push_str(&format!(
            "\nimport {id} (undo: `oacis import undo {id} --data DIR` on a stopped server, or undoCustomerImport)"
        ));
    }
    line
}

fn run_undo(args: &UndoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (bus, caller) = open(&args.acting).await?;
        let report = import::undo(&bus, &caller, None, ImportId(args.import), args.force).await?;
        println!(
            "import {} undone: archived {}, restored {}, skipped {}",
            report.import_id,
            report.archived,
            report.restored,
            report.skipped.len()
        );
        for skipped in &report.skipped {
            println!("  skipped {skipped}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `oacis export customers`.
pub fn run_export(args: &ExportCustomersArgs) -> anyhow::Result<ExitCode> {
    let format = args.format.unwrap_or(if args.out.extension().is_some_and(|e| e == "xlsx") {
        Format::Xlsx
    } else {
        Format::Csv
    });
    runtime()?.block_on(async {
        let (bus, caller) = open(&args.acting).await?;
        if !caller.holds(Permission::CustomerExport) {
            anyhow::bail!("{} may not export customers (customer.export)", args.acting.user);
        }
        let query = DirectoryQuery {
            text: args.text.clone(),
            segment: args.segment.clone(),
            tags: args.tags.clone(),
            sort: vec![(SortKey::Name, Order::Ascending)],
            ..DirectoryQuery::default()
        };
        let described = format!("cli export: text={:?} segment={:?} tags={:?}", args.text, args.segment, args.tags);
        let file = crate::transfer::export::export(&bus, &caller, None, query, described, format).await?;
        crate::cli::output::write_whole(&args.out, &file.bytes)?;
        println!("exported {} customers to {}", file.rows, args.out.display());
        Ok(ExitCode::SUCCESS)
    })
}
