//! Helpers shared by the event log's integration tests.
#![allow(dead_code)]

use oacis_eventlog::{AppendMeta, NewEvent, SledConfig, SledStore, StreamId};
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
