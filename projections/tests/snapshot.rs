//! The views' snapshot: views read from it and then the records after it equal a full
//! replay, in their dump and in what queries answer from their derived indexes; it holds no
//! personal data in the clear; an erasure makes every earlier snapshot unreadable; a snapshot
//! of another log or a damaged one is set aside.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use oacis_domain::customer::{CustomerEvent, PersonalDataErased};
use oacis_domain::DomainEvent;
use oacis_eventlog::keys::{Kek, KeyStore};
use oacis_eventlog::{
    AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, SledConfig, SledStore, StreamId, Version,
};
use oacis_projections::demo::{generate, load, DemoSize};
use oacis_projections::snapshot::{self, Unusable};
use oacis_projections::views::directory::DirectoryQuery;
use oacis_projections::{Projections, Views};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A store sealing personal data under the KEK `[kek; 32]`, as the server opens it.
fn sealed_store(dir: &std::path::Path, kek: u8) -> (SledStore, std::sync::Arc<KeyStore>) {
    let keys = KeyStore::open(dir, Kek::from_bytes(&[kek; 32])).unwrap();
    let mut config = SledConfig::new(dir);
    config.keys = Some(keys.clone());
    (SledStore::open(config).unwrap(), keys)
}

/// A sealed store with `customers` demo customers, its live views, and their snapshot's path
/// once one is saved.
async fn saved(
    dir: &std::path::Path,
    customers: usize,
    seed: u64,
) -> (SledStore, std::sync::Arc<KeyStore>, Projections, std::path::PathBuf) {
    let (store, keys) = sealed_store(dir, 7);
    load(&store, generate(DemoSize { customers, seed }).unwrap(), 8).await.unwrap();
    let live = Projections::start(&store, &mut |_| {}).await.unwrap();
    let path = snapshot::path_in(dir);
    snapshot::save(&live, &store, &path).await.unwrap();
    (store, keys, live, path)
}

/// What the directory's derived indexes answer: a one-character search (postings), a longer
/// one (the search arena), the pages by name (sort index), the counts by segment (the count
/// cube), and the duplicate pairs.
fn derived_answers(views: &Views) -> String {
    let d = &views.directory;
    let mut out = String::new();
    for text in ["王", "李", "科技", "müller"] {
        let page = d.query(&DirectoryQuery { text: Some(text.into()), first: 20, ..Default::default() });
        out += &format!("{text}: {} {:?}\n", page.total, page.rows.iter().map(|r| r.id).collect::<Vec<_>>());
    }
    let by_name = d.query(&DirectoryQuery {
        first: 50,
        sort: vec![(
            oacis_projections::views::directory::SortKey::Name,
            oacis_projections::views::directory::Order::Ascending,
        )],
        ..Default::default()
    });
    out += &format!("by name: {:?}\n", by_name.rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let segment = d.query(&DirectoryQuery { segment: Some("VIP".into()), first: 1, ..Default::default() });
    out += &format!("VIP: {}\n", segment.total);
    out += &format!("pairs: {:?}\n", d.duplicate_pairs(&|_| true, 50, None));
    out
}

/// Erases `stream`'s personal data as the server does: the event, then the keys.
async fn erase(store: &SledStore, keys: &KeyStore, stream: &str) {
    let id = StreamId::new(stream).unwrap();
    let records = store.read_stream(&id, Version(1), 10_000).await.unwrap();
    let key_ids: Vec<_> = records.iter().flat_map(|r| oacis_eventlog::seal::key_ids(&r.payload)).collect();
    let erased = CustomerEvent::CustomerPersonalDataErased(PersonalDataErased { reason: "本人申请".into() });
    let event = NewEvent { kind: EventKind::new(erased.kind()).unwrap(), schema: 1, payload: erased.payload() };
    let version = records.last().unwrap().version;
    store
        .append(id, ExpectedVersion::Exact(version), vec![event], AppendMeta::new(uuid::Uuid::now_v7(), "admin"))
        .await
        .unwrap();
    keys.erase(stream, &key_ids).unwrap();
}

#[test]
fn views_read_from_a_snapshot_then_the_records_after_it_equal_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (store, _keys) = sealed_store(dir.path(), 7);
        let appends = generate(DemoSize { customers: 400, seed: 11 }).unwrap();
        let (first, rest) = appends.split_at(appends.len() / 3);
        let (middle, last) = rest.split_at(rest.len() / 2);
        load(&store, first.to_vec(), 8).await.unwrap();
        let live = Projections::start(&store, &mut |_| {}).await.unwrap();
        let path = snapshot::path_in(dir.path());
        let written = snapshot::save(&live, &store, &path).await.unwrap();
        assert_eq!(written.seq, store.head().seq);
        drop(live);

        // Read back alone: the views of the log up to its seq, derived indexes included.
        let read = snapshot::read(&path, &store).await.unwrap();
        let replayed = Views::replay(&store, Some(written.seq), &mut |_| {}).await.unwrap();
        assert_eq!(read.applied(), written.seq);
        assert_eq!(read.hash(), replayed.hash());
        assert_eq!(derived_answers(&read), derived_answers(&replayed));

        // Then the rest of the log, applied on top and followed live.
        load(&store, middle.to_vec(), 8).await.unwrap();
        let from_snapshot = Projections::start_from(&store, read, &mut |_| {}).await.unwrap();
        load(&store, last.to_vec(), 4).await.unwrap();
        from_snapshot.wait_for(store.head().seq).await.unwrap();
        let full = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        assert_eq!(from_snapshot.read(Views::hash).unwrap(), full.hash());
        assert_eq!(from_snapshot.read(derived_answers).unwrap(), derived_answers(&full));
    });
}

#[test]
fn a_snapshot_holds_no_personal_data_in_the_clear_and_an_erasure_makes_every_earlier_one_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (store, keys, live, path) = saved(dir.path(), 60, 3).await;
        let bytes = std::fs::read(&path).unwrap();
        let (customer, phone) = live
            .read(|v| {
                let page = v.directory.query(&DirectoryQuery { first: 1, ..Default::default() });
                (page.rows[0].id, page.rows[0].phones[0].clone())
            })
            .unwrap();
        assert!(!phone.is_empty());
        assert!(!bytes.windows(phone.len()).any(|w| w == phone.as_bytes()), "a phone in the clear");

        // A KEK rotation rewraps the snapshot's key with the others.
        keys.rotate(Kek::from_bytes(&[8; 32])).unwrap();
        assert!(snapshot::read(&path, &store).await.is_ok());

        erase(&store, &keys, &format!("customer-{}", customer.0)).await;
        let err = snapshot::read(&path, &store).await.unwrap_err();
        assert!(matches!(err, Unusable::KeyGone), "{err}");
        // Reopened, the key store still knows it destroyed it.
        drop((live, store, keys));
        let (store, keys) = sealed_store(dir.path(), 8);
        assert!(matches!(snapshot::read(&path, &store).await, Err(Unusable::KeyGone)));

        // A snapshot written after the erasure opens, with the customer's data gone.
        let live = Projections::start(&store, &mut |_| {}).await.unwrap();
        snapshot::save(&live, &store, &path).await.unwrap();
        let read = snapshot::read(&path, &store).await.unwrap();
        let row = read.directory.get(customer).unwrap().clone();
        assert!(row.erased && row.phones.is_empty(), "{row:?}");
        assert_eq!(read.hash(), live.read(Views::hash).unwrap());
        // Erasing the same customer again destroys nothing, and keeps the snapshot's key.
        erase(&store, &keys, &format!("customer-{}", customer.0)).await;
        assert!(snapshot::read(&path, &store).await.is_ok());
    });
}

#[test]
fn a_snapshot_that_is_damaged_or_of_another_log_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (store, keys, live, path) = saved(dir.path(), 40, 5).await;
        let good = std::fs::read(&path).unwrap();

        assert!(matches!(snapshot::read(&dir.path().join("none"), &store).await, Err(Unusable::Missing)));
        // Any byte of a section changed, or a section cut short.
        for at in [good.len() - 1, good.len() / 2, 200] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = snapshot::read(&path, &store).await.unwrap_err();
            assert!(matches!(err, Unusable::Damaged(_)), "byte {at}: {err}");
        }
        std::fs::write(&path, &good[..good.len() - 10]).unwrap();
        assert!(matches!(snapshot::read(&path, &store).await, Err(Unusable::Damaged(_))));
        // The header's build id is another build's.
        let mut other_build = good.clone();
        other_build[b"OACIS VIEWS SNAPSHOT 1\n".len()] ^= 0x01;
        std::fs::write(&path, &other_build).unwrap();
        assert!(matches!(snapshot::read(&path, &store).await, Err(Unusable::OtherBuild)));

        // Another log (read with this folder's keys, as a server reads it while its store
        // opens): shorter, then longer with other records.
        std::fs::write(&path, &good).unwrap();
        let other_log = |store: SledStore| {
            let reading = snapshot::Reading::begin(&path).unwrap().unlock(|id| keys.get(id)).unwrap();
            async move { reading.finish(&store).await }
        };
        let other = tempfile::tempdir().unwrap();
        let shorter = SledStore::open(SledConfig::new(other.path())).unwrap();
        load(&shorter, generate(DemoSize { customers: 10, seed: 5 }).unwrap(), 8).await.unwrap();
        assert!(matches!(other_log(shorter).await, Err(Unusable::OtherLog(_))));
        let other = tempfile::tempdir().unwrap();
        let longer = SledStore::open(SledConfig::new(other.path())).unwrap();
        load(&longer, generate(DemoSize { customers: 80, seed: 6 }).unwrap(), 8).await.unwrap();
        assert!(longer.head().seq > live.applied());
        assert!(matches!(other_log(longer).await, Err(Unusable::OtherLog(_))));
        assert!(snapshot::read(&path, &store).await.is_ok());
    });
}
