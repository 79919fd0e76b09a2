//! Helpers shared by the event log's integration tests.
#![allow(dead_code)]

use oacis_eventlog::{AppendMeta, EventStore, NewEvent, PgConfig, PgStore, SledConfig, SledStore, StreamId};
#[allow(unused_imports)]
pub use oacis_tests::pg::PgCluster;
use uuid::Uuid;

pub fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(SledConfig::new(dir)).expect("open store")
}

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream name")
}

pub fn event(kind: &str, n: u64) -> NewEvent {
    NewEvent::json(kind, 1, &serde_json::json!({ "n": n, "note": "备注 note" })).expect("valid event")
}

pub fn meta(command: u128) -> AppendMeta {
    AppendMeta::new(Uuid::from_u128(command), "tester")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A backend the contract tests run against: opens (or reopens) the same log.
pub trait Backend {
    type Store: EventStore;
    fn open(&self, rt: &tokio::runtime::Runtime) -> Self::Store;
    /// Opens from inside the runtime.
    fn open_async(&self) -> impl std::future::Future<Output = Self::Store> + Send;
}

/// sled in a folder.
pub struct Sled(pub std::path::PathBuf);

impl Backend for Sled {
    type Store = SledStore;
    fn open(&self, _: &tokio::runtime::Runtime) -> SledStore {
        open(&self.0)
    }
    async fn open_async(&self) -> SledStore {
        open(&self.0)
    }
}

/// PostgreSQL at a URL.
pub struct Pg(pub String);

impl Backend for Pg {
    type Store = PgStore;
    fn open(&self, rt: &tokio::runtime::Runtime) -> PgStore {
        rt.block_on(self.open_async())
    }
    async fn open_async(&self) -> PgStore {
        PgStore::open(PgConfig::new(self.0.clone())).await.expect("open the PostgreSQL store")
    }
}

/// Runs a contract test, written once against [`Backend`], on sled and on PostgreSQL.
#[allow(unused_macros)]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sled() -> anyhow::Result<()> {
                let dir = tempfile::tempdir()?;
                super::$name(&super::common::Sled(dir.path().to_owned()))
            }

            #[test]
            fn postgres() -> anyhow::Result<()> {
                let cluster = super::common::PgCluster::start()?;
                super::$name(&super::common::Pg(cluster.database("contract")?))
            }
        }
    };
}
