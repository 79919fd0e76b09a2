//! The `oacis` command-line tool: the entry point for operators.
//!
//! Subcommands own one operation each (see `cli/`). Long work reports progress through
//! [`progress::Progress`]. Errors reach the terminal through `anyhow` here and nowhere else;
//! a failed verification exits with status 1 after naming the first bad seq.

use oacis_api::{cli, graphql, server};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: replaying the log allocates and frees millions
/// of small strings across threads, where glibc's malloc spent about a quarter of the time.
/// It is built without transparent huge pages (see the workspace's `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OACIS: an event-sourced customer information system.
#[derive(Debug, Parser)]
#[command(name = "oacis", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the whole event log of a data folder, or an export file.
    Verify(cli::verify::VerifyArgs),
    /// Export the event log as JSON Lines (see eventlog/FORMAT.md).
    Export(cli::export::ExportArgs),
    /// Replay every read view from the log and print the hash of their canonical dump.
    Rebuild(cli::rebuild::RebuildArgs),
    /// Import customers from CSV or .xlsx (validated first; undoable as a whole).
    Import(cli::transfer::ImportArgs),
    /// Erase a customer's personal data (its data key destroyed; the log keeps verifying).
    Erase(cli::erase::EraseArgs),
    /// Manage the key store of personal data.
    Keys(cli::keys::KeysArgs),
    /// Back up a data folder's log (full or incremental), or verify backups.
    Backup(cli::backup::BackupArgs),
    /// Restore verified backups into a new data folder and rebuild its views.
    Restore(cli::backup::RestoreArgs),
    /// Signed checkpoints: issue one, or print the public key that checks them.
    Checkpoint(cli::proof::CheckpointArgs),
    /// Verify checkpoints and Merkle proofs offline, with only the public key.
    Proof(cli::proof::ProofArgs),
    /// Copy the event log between a data folder and PostgreSQL (either way), checking that
    /// both end at the same head.
    Migrate(cli::migrate::MigrateArgs),
    /// Serve GraphQL over HTTP, on the embedded store or on PostgreSQL (see README).
    Serve(server::ServeArgs),
    /// Fill an empty data folder with demo data (customers, users of every default role) and
    /// print the demo users' passwords; then run `oacis serve`.
    Demo(DemoArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,oacis=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let outcome = match args.command {
        Command::Verify(args) => cli::verify::run(&args),
        Command::Export(args) => cli::export::run(&args),
        Command::Rebuild(args) => cli::rebuild::run(&args),
        Command::Erase(args) => cli::erase::run(&args),
        Command::Import(args) => cli::transfer::run_import(&args),
        Command::Keys(args) => cli::keys::run(&args),
        Command::Backup(args) => cli::backup::run(&args),
        Command::Restore(args) => cli::backup::run_restore(&args),
        Command::Checkpoint(args) => cli::proof::run_checkpoint(&args),
        Command::Proof(args) => cli::proof::run_proof(&args),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::Serve(args) => run_server(args),
        Command::Demo(args) => run_demo(&args),
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
    };
    // Each folder whose embedded store the command opened is recorded as closed, so that
    // damage done to its files while nothing runs is refused at the next open, before sled's
    // recovery would cut the log at it.
    for (folder, recorded) in oacis_eventlog::sled_closed::record_opened(std::time::Duration::from_secs(5)) {
        if let Err(e) = recorded {
            tracing::warn!(folder = %folder.display(), error = %e, "the closed store's files were not recorded");
        }
    }
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_server(args: server::ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(server::serve(args))?;
    Ok(ExitCode::SUCCESS)
}

/// What `oacis demo` fills.
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// The data folder (created if missing; must hold no customers yet).
    #[arg(long, value_name = "DIR", env = "OACIS_DATA", default_value = "./oacis-data")]
    data: std::path::PathBuf,
    /// Customers to generate.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    customers: usize,
}

fn run_demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        serve: server::ServeArgs,
    }
    let customers = args.customers.to_string();
    let data = args.data.as_os_str().to_owned();
    let argv: Vec<std::ffi::OsString> =
        vec!["oacis".into(), "--data".into(), data, "--demo-customers".into(), customers.into()];
    let settings = Settings::try_parse_from(argv)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = server::App::open(settings.serve).await?;
        server::bootstrap::demo(&app.state).await
    })?;
    Ok(ExitCode::SUCCESS)
}
