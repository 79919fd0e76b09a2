//! Two nodes on one PostgreSQL log: each follows the log with views of its own while both
//! append, and both end with views identical to a fresh rebuild (by the hash of their
//! canonical dump), personal data sealed and erasures included.
//!
//! The two nodes share one key store object here (one process); see ARCHITECTURE.md for
//! what several server processes need.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use oacis_domain::customer::{CustomerEvent, PersonalDataErased};
use oacis_domain::DomainEvent;
use oacis_eventlog::keys::{Kek, KeyStore};
use oacis_eventlog::{
    AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, PgConfig, PgStore, StreamId, Version,
};
use oacis_projections::demo::{generate, load, DemoSize};
use oacis_projections::{Projections, Views};
use oacis_tests::pg::PgCluster;

#[test]
fn two_nodes_following_one_log_have_the_views_of_a_fresh_rebuild() {
    let cluster = PgCluster::start().expect("cluster");
    let url = cluster.database("views").expect("database");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let keys = KeyStore::open(dir.path(), Kek::from_bytes(&[7; 32])).unwrap();
        let node = || PgStore::open(PgConfig { keys: Some(keys.clone()), ..PgConfig::new(url.clone()) });
        let (a, b) = (node().await.unwrap(), node().await.unwrap());
        let (live_a, live_b) =
            (Projections::start(&a, &mut |_| {}).await.unwrap(), Projections::start(&b, &mut |_| {}).await.unwrap());
        let appends = generate(DemoSize { customers: 120, seed: 11 }).unwrap();
        // Each stream goes wholly to one node; both nodes write at once.
        let (to_a, to_b): (Vec<_>, Vec<_>) = appends
            .iter()
            .cloned()
            .partition(|append| blake3::hash(append.stream.as_bytes()).as_bytes()[0].is_multiple_of(2));
        let (loaded_a, loaded_b) = tokio::join!(load(&a, to_a, 8), load(&b, to_b, 8));
        let events = loaded_a.unwrap() + loaded_b.unwrap();
        // One customer erased through node b: the event, then its keys destroyed.
        let stream = appends.iter().map(|a| &a.stream).find(|s| s.starts_with("customer-")).unwrap();
        let id = StreamId::new(stream.clone()).unwrap();
        let records = b.read_stream(&id, Version(1), 1_000).await.unwrap();
        let key_ids: Vec<_> = records.iter().flat_map(|r| oacis_eventlog::seal::key_ids(&r.payload)).collect();
        let erased = CustomerEvent::CustomerPersonalDataErased(PersonalDataErased { reason: "本人申请".into() });
        let event = NewEvent { kind: EventKind::new(erased.kind()).unwrap(), schema: 1, payload: erased.payload() };
        let version = records.last().unwrap().version;
        b.append(id, ExpectedVersion::Exact(version), vec![event], AppendMeta::new(uuid::Uuid::now_v7(), "admin"))
            .await
            .unwrap();
        keys.erase(stream, &key_ids).unwrap();

        let head = b.head().seq;
        assert_eq!(head.0, events + 1);
        a.wait_for(head, std::time::Duration::from_secs(10)).await;
        live_a.wait_for(head).await.unwrap();
        live_b.wait_for(head).await.unwrap();
        let rebuilt = Views::replay(&a, None, &mut |_| {}).await.unwrap();
        assert_eq!(rebuilt.applied(), head);
        assert_eq!(rebuilt.directory.erased().count(), 1);
        assert_eq!(live_a.read(Views::hash).unwrap(), rebuilt.hash(), "node a equals a rebuild");
        assert_eq!(live_b.read(Views::hash).unwrap(), rebuilt.hash(), "node b equals a rebuild");
    });
}
