//! `oacis erase`: erase a customer's or a user's personal data from the command line (the
//! server must be stopped: the store is opened exclusively). Same effect as the
//! `erasePersonalData` and `eraseUserPersonalData` mutations: the erasure event, recorded as
//! done by the system, then the subject's data keys destroyed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oacis_domain::ids::{CustomerId, UserId};
use oacis_projections::Projections;

use crate::cli::keys::{open_store, KeyArgs};
use crate::command::{CommandBus, Origin};
use crate::erasure::Subject;

/// Whose personal data, and why.
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// The data folder.
    #[arg(long, value_name = "DIR", env = "OACIS_DATA")]
    data: PathBuf,
    /// The key-encryption key.
    #[command(flatten)]
    keys: KeyArgs,
    /// The customer's id (UUID).
    #[arg(long, value_name = "ID", required_unless_present = "user", conflicts_with = "user")]
    customer: Option<uuid::Uuid>,
    /// The user's id (UUID).
    #[arg(long, value_name = "ID")]
    user: Option<uuid::Uuid>,
    /// Why (the request or legal ground; no personal data).
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

pub fn run(args: &EraseArgs) -> anyhow::Result<ExitCode> {
    if !oacis_eventlog::sled_closed::holds_store(&args.data) {
        anyhow::bail!("{} holds no event store", args.data.display());
    }
    let store = open_store(&args.data, &args.keys)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let projections = Projections::start(&store, &mut |_| {}).await?;
        let bus = CommandBus::new(store, Arc::new(projections), Duration::from_secs(30));
        let (subject, named) = match (args.customer, args.user) {
            (Some(id), _) => (Subject::Customer(CustomerId(id)), format!("customer {id}")),
            (None, Some(id)) => (Subject::User(UserId(id)), format!("user {id}")),
            (None, None) => anyhow::bail!("name --customer or --user"),
        };
        let executed = crate::erasure::erase(&bus, subject, args.reason.clone(), &Origin::system()).await?;
        if executed.events == 0 {
            println!("the personal data of {named} was erased before; its keys are destroyed");
        } else {
            println!("erased the personal data of {named} (seq {})", executed.seq);
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
