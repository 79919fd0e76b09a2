//! `oacis erase`: erase a customer's personal data from the command line (the server must be
//! stopped: the store is opened exclusively). Same effect as the `erasePersonalData` mutation:
//! the erasure event, recorded as done by the system, then the customer's data key destroyed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oacis_domain::ids::CustomerId;
use oacis_projections::Projections;

use crate::cli::keys::{open_store, KeyArgs};
use crate::command::{CommandBus, Origin};

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
    #[arg(long, value_name = "ID")]
    customer: uuid::Uuid,
    /// Why (the request or legal ground; no personal data).
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

pub fn run(args: &EraseArgs) -> anyhow::Result<ExitCode> {
    if !args.data.join("db").exists() {
        anyhow::bail!("{} holds no event store", args.data.display());
    }
    let store = open_store(&args.data, &args.keys)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let projections = Projections::start(&store, &mut |_| {}).await?;
        let bus = CommandBus::new(store, Arc::new(projections), Duration::from_secs(30));
        let customer = CustomerId(args.customer);
        let executed = crate::erasure::erase_customer(&bus, customer, args.reason.clone(), &Origin::system()).await?;
        if executed.events == 0 {
            println!("the personal data of customer {customer} was erased before; its key is destroyed");
        } else {
            println!("erased the personal data of customer {customer} (seq {})", executed.seq);
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
