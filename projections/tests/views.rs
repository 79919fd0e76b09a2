//! The views through events in, answers out: demo data loaded into a real store, then
//! queries; rebuild equals live following; as-of reads; a view that cannot apply an event
//! stops at its seq.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use oacis_domain::customer::{
    Customer, CustomerCommand, CustomerEvent, CustomerStatus, PersonalDataErased, SourceChannel,
};
use oacis_domain::ids::Timestamp;
use oacis_domain::task::TaskStatus;
use oacis_domain::{Aggregate, Context, DomainEvent};
use oacis_eventlog::keys::{Kek, KeyStore};
use oacis_eventlog::{
    AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, Seq, SledConfig, SledStore, StreamId, Version,
};
use oacis_projections::demo::{generate, load, DemoSize};
use oacis_projections::views::analytics::Dimension;
use oacis_projections::views::directory::{DirectoryCursor, DirectoryQuery, Order, SortKey, Visible};
use oacis_projections::{state_as_of, ProjectionError, Projections, Views};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn demo_store(dir: &std::path::Path, customers: usize, seed: u64) -> SledStore {
    let store = SledStore::open(SledConfig::new(dir)).unwrap();
    load(&store, generate(DemoSize { customers, seed }).unwrap(), 16).await.unwrap();
    store
}

#[test]
fn the_directory_searches_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 300, 7).await;
        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let d = &views.directory;
        assert_eq!(d.len(), 300);

        // Chinese substring search, and case-insensitive Latin search.
        let wang = d.query(&DirectoryQuery { text: Some("王".into()), first: 100, ..Default::default() });
        assert!(wang.total > 0);
        assert!(wang.rows.iter().all(|r| r.name.contains('王') || r.tags.iter().any(|t| t.contains('王'))));
        let latin = d.query(&DirectoryQuery { text: Some("müller".into()), first: 100, ..Default::default() });
        assert!(latin.rows.iter().all(|r| r.name.to_lowercase().contains("müller")));
        let by_phone = d.query(&DirectoryQuery {
            text: Some("+86".into()),
            first: 1,
            search_personal: true,
            ..Default::default()
        });
        let masked = d.query(&DirectoryQuery { text: Some("+86".into()), first: 1, ..Default::default() });
        assert_eq!(masked.total, 0, "phones are searched only when the caller may see them");
        let listed = d.query(&DirectoryQuery { first: 1, ..Default::default() });
        assert_eq!(by_phone.total, listed.total, "every live customer has a +86 phone");
        // A scope filter applies before counting and paging.
        let owner = listed.rows[0].owner;
        let visible = Visible { owner: Some(owner), departments: Default::default() };
        let own = d.query(&DirectoryQuery { first: 100, visible: Some(visible), ..Default::default() });
        let expected = d.query(&DirectoryQuery { first: 100, owner: Some(owner), ..Default::default() });
        assert!(own.total > 0 && own.rows.iter().all(|r| r.owner == owner));
        assert_eq!((own.total, own.rows.len()), (expected.total, expected.rows.len()));
        let department = listed.rows[0].department;
        let visible = Visible { owner: None, departments: [department].into() };
        let dept = d.query(&DirectoryQuery { first: 100, visible: Some(visible), ..Default::default() });
        assert!(dept.total >= own.total && dept.rows.iter().all(|r| r.department == department));

        // Filters combine; merged customers are left out unless asked for.
        let all = d.query(&DirectoryQuery { first: 100, status: None, ..Default::default() });
        let merged =
            d.query(&DirectoryQuery { first: 100, status: Some(CustomerStatus::Merged), ..Default::default() });
        assert_eq!(all.total + merged.total, 300);
        for row in &merged.rows {
            let survivor = d.resolve(row.id).unwrap();
            assert_ne!(survivor.status, CustomerStatus::Merged);
        }
        let referrals = d.query(&DirectoryQuery {
            source: Some(SourceChannel::Referral),
            segment: Some("smb".into()),
            first: 100,
            ..Default::default()
        });
        assert!(referrals
            .rows
            .iter()
            .all(|r| r.source == SourceChannel::Referral && r.segment.as_deref() == Some("smb")));

        // Sorting by name descending, then paging through with cursors, sees every row once.
        let sort = vec![(SortKey::Name, Order::Descending)];
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page =
                d.query(&DirectoryQuery { sort: sort.clone(), first: 37, after: after.clone(), ..Default::default() });
            assert_eq!(page.total, all.total);
            seen.extend(page.rows.iter().map(|r| (r.name.clone(), r.id)));
            if !page.has_next {
                break;
            }
            after = page.end_cursor;
        }
        assert_eq!(seen.len(), all.total);
        assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "descending by name");
        let by_contact = d.query(&DirectoryQuery {
            sort: vec![(SortKey::LastContact, Order::Ascending)],
            first: 100,
            ..Default::default()
        });
        let contacts: Vec<_> = by_contact.rows.iter().map(|r| r.last_contact).collect();
        let first_none = contacts.iter().position(Option::is_none).unwrap_or(contacts.len());
        assert!(contacts[first_none..].iter().all(Option::is_none), "never-contacted customers come last");
        assert!(contacts[..first_none].windows(2).all(|w| w[0] <= w[1]));
        let page_cap = d.query(&DirectoryQuery { first: 10_000, ..Default::default() });
        assert_eq!(page_cap.rows.len(), 100, "page size is capped");
    });
}

#[test]
fn the_task_board_access_directory_and_analytics_answer() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 300, 11).await;
        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let counts = views.tasks.status_counts();
        let total_tasks: usize = counts.values().sum();
        assert!(total_tasks > 20, "{counts:?}");
        let far_future = Timestamp(i64::MAX);
        let overdue = views.tasks.overdue(far_future);
        assert_eq!(overdue.len(), counts.get("open").copied().unwrap_or(0));
        assert!(overdue.windows(2).all(|w| w[0].due <= w[1].due));
        let assignee = overdue[0].assignee;
        let mine = views.tasks.of_assignee(assignee, Some(TaskStatus::Open));
        assert!(mine.windows(2).all(|w| w[0].priority >= w[1].priority));
        assert!(!views.tasks.reminders_due(Timestamp(0), far_future).is_empty());

        let user = views.access.user_by_name("user0000").unwrap();
        let principal = views.access.principal(user.id).unwrap();
        assert!(principal.active);
        assert_eq!(principal.roles.len(), 1);
        assert_eq!(principal.roles[0].name, "manager");
        let path = views.access.department_path(user.department);
        assert_eq!(path.len(), 2, "region under the root");

        let by_status = views.analytics.customers_by(Dimension::Status);
        let live = views.directory.query(&DirectoryQuery { first: 1, ..Default::default() }).total as u64;
        assert_eq!(by_status.values().sum::<u64>(), live);
        let by_month = views.analytics.customers_by(Dimension::Month);
        assert!(by_month.keys().all(|m| m.starts_with("2026-")));
        assert_eq!(views.analytics.customers_by(Dimension::Week).values().sum::<u64>(), live);
        let purchases = views.analytics.purchases_by_month();
        assert!(purchases.values().all(|t| t.amount_minor >= 0));
        let by_segment = views.analytics.purchases_by_segment();
        let month_total: i64 = purchases.values().map(|t| t.amount_minor).sum();
        let segment_total: i64 = by_segment.values().map(|t| t.amount_minor).sum();
        assert_eq!(month_total, segment_total, "the same purchases, grouped two ways");
        use oacis_projections::views::analytics::{RfmThresholds, ValueTier};
        let soon = Timestamp(i64::MAX / 2);
        let tiers = views.analytics.value_tiers(Timestamp(2_000_000_000_000_000), RfmThresholds::default());
        assert_eq!(tiers.len() as u64, live);
        assert!(tiers.values().any(|t| *t == ValueTier::Prospect) && tiers.values().any(|t| *t != ValueTier::Prospect));
        // Long after the last purchase, recency drops and no tier can rise.
        let later = views.analytics.value_tiers(soon, RfmThresholds::default());
        assert!(tiers.iter().all(|(id, t)| later[id] <= *t));
        let cases = views.analytics.cases();
        assert!(cases.opened > 0 && cases.closed <= cases.opened);
        assert!(cases.mean_first_response_s.unwrap() > 0.0);
        let satisfaction = cases.mean_satisfaction.unwrap();
        assert!((1.0..=5.0).contains(&satisfaction));
        let rate = views.analytics.task_completion_rate().unwrap();
        assert!((0.0..=1.0).contains(&rate));
    });
}

fn live_equals_rebuild(seed: u64, customers: usize, erasures: usize) {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        // Personal data sealed, as the server stores it.
        let keys = KeyStore::open(dir.path(), Kek::from_bytes(&[9; 32])).unwrap();
        let mut config = SledConfig::new(dir.path());
        config.keys = Some(keys.clone());
        let store = SledStore::open(config).unwrap();
        let live = Projections::start(&store, &mut |_| {}).await.unwrap();
        let appends = generate(DemoSize { customers, seed }).unwrap();
        let (first, rest) = appends.split_at(appends.len() / 3);
        load(&store, first.to_vec(), 4).await.unwrap();
        // A second follower starts mid-way: replay, then follow.
        let late = Projections::start(&store, &mut |_| {}).await.unwrap();
        load(&store, rest.to_vec(), 8).await.unwrap();
        // Erasures: the event, then the key destroyed, as the server does it; followers see
        // the event live, a replay sees sealed data it can no longer open.
        let mut streams: Vec<&String> =
            appends.iter().map(|a| &a.stream).filter(|s| s.starts_with("customer-")).collect();
        streams.sort();
        streams.dedup();
        let mut done = 0;
        for stream in streams.iter().skip(usize::try_from(seed % 7).unwrap()).step_by(3).take(erasures) {
            let id = StreamId::new((*stream).clone()).unwrap();
            let records = store.read_stream(&id, Version(1), 10_000).await.unwrap();
            let version = records.last().unwrap().version;
            let key_ids: Vec<_> = records.iter().flat_map(|r| oacis_eventlog::seal::key_ids(&r.payload)).collect();
            let erased =
                CustomerEvent::CustomerPersonalDataErased(PersonalDataErased { reason: "本人申请".into() });
            let event = NewEvent { kind: EventKind::new(erased.kind()).unwrap(), schema: 1, payload: erased.payload() };
            let meta = AppendMeta::new(uuid::Uuid::now_v7(), "admin");
            store.append(id, ExpectedVersion::Exact(version), vec![event], meta).await.unwrap();
            keys.erase(stream, &key_ids).unwrap();
            done += 1;
        }
        let after_erasure = Projections::start(&store, &mut |_| {}).await.unwrap();
        let head = store.head().seq;
        for follower in [&live, &late, &after_erasure] {
            follower.wait_for(head).await.unwrap();
        }
        let rebuilt = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        assert_eq!(rebuilt.directory.erased().count(), done);
        for follower in [&live, &late, &after_erasure] {
            assert_eq!(follower.read(Views::hash).unwrap(), rebuilt.hash(), "seed {seed}");
        }
        for id in rebuilt.directory.erased() {
            let row = rebuilt.directory.get(id).unwrap();
            assert!(row.phones.is_empty() && row.emails.is_empty(), "{row:?}");
        }
        assert_eq!(rebuilt.applied(), head);
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, failure_persistence: None, ..Default::default() })]

    #[test]
    fn following_live_appends_gives_the_same_views_as_a_rebuild(seed in proptest::prelude::any::<u64>(), customers in 5usize..60, erasures in 0usize..4) {
        live_equals_rebuild(seed, customers, erasures);
    }
}

#[test]
fn as_of_reads_fold_history_up_to_a_past_seq() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 40, 5).await;
        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let row = views.directory.query(&DirectoryQuery { first: 1, ..Default::default() }).rows.remove(0);
        let stream = StreamId::new(row.id.stream()).unwrap();
        let history = store.read_stream(&stream, oacis_eventlog::Version(1), 100).await.unwrap();
        let registered_at = history[0].seq;
        let then = state_as_of::<Customer, _>(&store, &stream, registered_at).await.unwrap();
        assert_eq!(then.status, CustomerStatus::Active);
        assert!(then.interactions.is_empty() && then.purchases.is_empty());
        let now = state_as_of::<Customer, _>(&store, &stream, store.head().seq).await.unwrap();
        let mut folded = Customer::fold(&[]);
        for record in &history {
            let event =
                <Customer as Aggregate>::Event::decode(record.kind.as_str(), record.schema, &record.payload).unwrap();
            folded = Customer::evolve(folded, &event);
        }
        assert_eq!(now, folded);
        assert!(state_as_of::<Customer, _>(&store, &stream, Seq(registered_at.0 - 1)).await.unwrap().id.is_none());

        // As of a time: the last seq recorded by then.
        let all = store.read_all(Seq(1), 10_000).await.unwrap();
        let probe = &all[all.len() / 3];
        let at = oacis_projections::seq_at_time(&store, probe.recorded_at).await.unwrap();
        assert!(at >= probe.seq);
        assert!(all.iter().filter(|r| r.seq > at).all(|r| r.recorded_at > probe.recorded_at));
        assert!(all.iter().filter(|r| r.seq <= at).all(|r| r.recorded_at <= probe.recorded_at));
        assert_eq!(oacis_projections::seq_at_time(&store, oacis_eventlog::Timestamp(0)).await.unwrap(), Seq::ZERO);

        // Analytics as of a past seq: replay into fresh views up to there.
        let half = Seq(store.head().seq.0 / 2);
        let past = Views::replay(&store, Some(half), &mut |_| {}).await.unwrap();
        assert_eq!(past.applied(), half);
        assert!(past.directory.len() <= views.directory.len());
    });
}

#[test]
fn an_event_the_views_cannot_understand_stops_them_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 5, 9).await;
        let live = Projections::start(&store, &mut |_| {}).await.unwrap();
        let stream = StreamId::new("customer-01930000-0000-7000-8000-00000000abcd").unwrap();
        let odd = NewEvent::json("CustomerTeleported", 1, &serde_json::json!({})).unwrap();
        let meta = AppendMeta::new(uuid::Uuid::from_u128(77), "test");
        let bad = store.append(stream, ExpectedVersion::Any, vec![odd], meta).await.unwrap();
        match live.wait_for(bad.first_seq).await {
            Err(ProjectionError::Apply { seq, reason, .. }) => {
                assert_eq!(seq, bad.first_seq);
                assert!(reason.contains("CustomerTeleported"), "{reason}");
            }
            other => panic!("expected the views to stop, got {other:?}"),
        }
        match Views::replay(&store, None, &mut |_| {}).await {
            Err(ProjectionError::Decode { seq, .. }) => assert_eq!(seq, bad.first_seq),
            other => panic!("expected a decode error, got {other:?}"),
        }
        // An event of a customer that was never registered is a view disagreement.
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let id = oacis_domain::ids::CustomerId(uuid::Uuid::from_u128(5));
        let registered = Customer::decide(
            &Default::default(),
            CustomerCommand::Register {
                id,
                profile: oacis_domain::customer::Profile {
                    kind: oacis_domain::customer::CustomerKind::Person,
                    name: "x".into(),
                    company: None,
                    source: SourceChannel::Other,
                    tags: Default::default(),
                    segment: None,
                    personal: Default::default(),
                },
                owner: oacis_domain::ids::UserId(uuid::Uuid::from_u128(1)),
                department: oacis_domain::ids::DepartmentId(uuid::Uuid::from_u128(2)),
            },
            &Context::new(None, Timestamp(0)),
        )
        .unwrap();
        let state = Customer::fold(&registered);
        let archived = Customer::decide(
            &state,
            CustomerCommand::Archive { reason: "x".into() },
            &Context::new(None, Timestamp(1)),
        )
        .unwrap();
        let event = &archived[0];
        let orphan = NewEvent {
            kind: oacis_eventlog::EventKind::new(event.kind()).unwrap(),
            schema: event.schema(),
            payload: event.payload(),
        };
        store
            .append(
                StreamId::new(id.stream()).unwrap(),
                ExpectedVersion::Any,
                vec![orphan],
                AppendMeta::new(uuid::Uuid::from_u128(1), "t"),
            )
            .await
            .unwrap();
        match Views::replay(&store, None, &mut |_| {}).await {
            Err(ProjectionError::Apply { view: "customer_directory", seq: Seq(1), .. }) => {}
            other => panic!("expected the directory to refuse, got {other:?}"),
        }
        // With an undecodable event after it, the replay still reports the first failure:
        // the directory's, at seq 1, not the decode error at seq 2.
        let odd = NewEvent::json("CustomerTeleported", 1, &serde_json::json!({})).unwrap();
        let meta = AppendMeta::new(uuid::Uuid::from_u128(2), "t");
        store.append(StreamId::new(id.stream()).unwrap(), ExpectedVersion::Any, vec![odd], meta).await.unwrap();
        match Views::replay(&store, None, &mut |_| {}).await {
            Err(ProjectionError::Apply { view: "customer_directory", seq: Seq(1), .. }) => {}
            other => panic!("expected the directory's refusal at seq 1, got {other:?}"),
        }
    });
}

#[test]
fn a_replay_over_many_pages_equals_following_the_log_live() {
    // Several replay pages of 2,000 records, so that pages in flight, both appliers and the
    // recycled page buffers all take part; the live follower applies record by record.
    let dir = tempfile::tempdir().unwrap();
    let expected = runtime().block_on(async {
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let live = Projections::start(&store, &mut |_| {}).await.unwrap();
        load(&store, generate(DemoSize { customers: 1_800, seed: 11 }).unwrap(), 16).await.unwrap();
        let head = store.head().seq;
        assert!(head.0 > 7_000, "only {head} events");
        live.wait_for(head).await.unwrap();
        let mut progress = Vec::new();
        let rebuilt = Views::replay(&store, None, &mut |seq| progress.push(seq)).await.unwrap();
        assert_eq!(rebuilt.applied(), head);
        assert_eq!(live.read(Views::hash).unwrap(), rebuilt.hash());
        assert_eq!(progress.last(), Some(&head));
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
        // Up to a seq inside a page.
        let partway = Seq(head.0 / 2 + 7);
        assert_eq!(Views::replay(&store, Some(partway), &mut |_| {}).await.unwrap().applied(), partway);
        rebuilt.hash()
    });
    // The same replay on a single-threaded runtime with one blocking thread: the appliers must
    // not wait on the threads that read their pages.
    let small = tokio::runtime::Builder::new_current_thread().max_blocking_threads(1).enable_all().build().unwrap();
    let again = small.block_on(async {
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let mut progress = |_| {};
        let replay = Views::replay(&store, None, &mut progress);
        tokio::time::timeout(std::time::Duration::from_secs(60), replay)
            .await
            .expect("the replay finishes")
            .unwrap()
            .hash()
    });
    assert_eq!(again, expected);
}

/// Appends the events `decide` gives for `command` on `stream`, as `actor`.
async fn act<A: Aggregate>(
    store: &SledStore,
    stream: &str,
    state: &mut A::State,
    command: A::Command,
    actor: &str,
    minute: i64,
) {
    let ctx = Context::new(None, Timestamp(1_800_000_000_000_000).plus_minutes(minute));
    let events = A::decide(state, command, &ctx).unwrap();
    for event in &events {
        *state = A::evolve(state.clone(), event);
    }
    let batch = events
        .iter()
        .map(|e| NewEvent {
            kind: oacis_eventlog::EventKind::new(e.kind()).unwrap(),
            schema: e.schema(),
            payload: e.payload(),
        })
        .collect();
    let meta = AppendMeta::new(uuid::Uuid::now_v7(), actor);
    store.append(StreamId::new(stream).unwrap(), ExpectedVersion::Any, batch, meta).await.unwrap();
}

#[test]
fn audit_trails_show_field_changes_operations_logins_and_alerts() {
    use oacis_domain::user::{LoginFailure, PasswordFacts, User, UserCommand, UserPersonal, UserProfile};
    use oacis_projections::views::audit::{Alert, FAILED_LOGIN_ALERT};

    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let (id, owner, department) = customer_one();
        let mut profile = zhang_wei(Some("smb"), &["+8613800138000"]);
        let mut customer = Default::default();
        let stream = id.stream();
        act::<Customer>(
            &store,
            &stream,
            &mut customer,
            CustomerCommand::Register { id, profile: profile.clone(), owner, department },
            "alice",
            0,
        )
        .await;
        profile.name = "张伟伟".into();
        profile.personal.phones = vec!["+8613900139000".into()];
        act::<Customer>(&store, &stream, &mut customer, CustomerCommand::UpdateProfile { profile }, "bob", 1).await;

        // A user who fails to log in five times within 15 minutes, gets locked, and tries again.
        let user = oacis_domain::ids::UserId(uuid::Uuid::from_u128(9));
        let user_stream = user.stream();
        let mut account = Default::default();
        let profile =
            UserProfile {
                display_name: "李娜".into(), department, position: None, personal: UserPersonal::default()
            };
        act::<User>(
            &store,
            &user_stream,
            &mut account,
            UserCommand::Create { id: user, username: "li.na".into(), employee_no: "E1".into(), profile },
            "admin",
            2,
        )
        .await;
        let credential = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned();
        act::<User>(
            &store,
            &user_stream,
            &mut account,
            UserCommand::SetPassword { credential, facts: PasswordFacts { meets_policy: true, recently_used: false } },
            "admin",
            3,
        )
        .await;
        for minute in 0..FAILED_LOGIN_ALERT as i64 {
            let failure = UserCommand::RecordLoginFailure {
                reason: LoginFailure::BadPassword,
                client: Some("203.0.113.5".into()),
                lockout_threshold: 5,
            };
            act::<User>(&store, &user_stream, &mut account, failure, "li.na", 10 + minute * 2).await;
        }
        let blocked =
            UserCommand::RecordLoginFailure { reason: LoginFailure::Locked, client: None, lockout_threshold: 5 };
        act::<User>(&store, &user_stream, &mut account, blocked, "li.na", 30).await;

        // Someone reads personal data 150 times, then exports 100 customers with it: the hour's
        // volume crosses the threshold once.
        use oacis_domain::access_log::{AccessLog, AccessLogCommand};
        let reader = oacis_domain::ids::UserId(uuid::Uuid::from_u128(11));
        let access_stream = format!("access-{reader}");
        let mut log = Default::default();
        for i in 0..150 {
            let read = AccessLogCommand::RecordPersonalDataRead { customer: id, fields: vec!["phones".into()] };
            act::<AccessLog>(&store, &access_stream, &mut log, read, "reader", 40 + i / 10).await;
        }
        let export = AccessLogCommand::RecordExport { records: 100, query: "all".into(), personal: true };
        act::<AccessLog>(&store, &access_stream, &mut log, export, "reader", 56).await;
        let read = AccessLogCommand::RecordPersonalDataRead { customer: id, fields: vec!["emails".into()] };
        act::<AccessLog>(&store, &access_stream, &mut log, read, "reader", 57).await;

        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let history = oacis_projections::views::audit::record_history(
            &store,
            &StreamId::new(stream.clone()).unwrap(),
            store.head().seq,
        )
        .await
        .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!((history[1].actor.as_str(), history[1].kind), ("bob", "CustomerProfileUpdated"));
        let changed: Vec<_> = history[1]
            .changes
            .iter()
            .map(|c| (c.field.as_str(), c.before.as_deref(), c.after.as_str(), c.personal))
            .collect();
        assert_eq!(
            changed,
            [
                ("profile.name", Some("\"张伟\""), "\"张伟伟\"", false),
                ("profile.personal.phones.0", Some("\"+8613800138000\""), "\"+8613900139000\"", true),
            ]
        );
        assert_eq!(views.audit.operations_of("bob").len(), 1);
        let first = views.audit.operations_of("alice")[0];
        assert_eq!(store.read_all(first.seq, 1).await.unwrap()[0].stream.as_str(), stream);
        // History as of the registration shows only it.
        let then =
            oacis_projections::views::audit::record_history(&store, &StreamId::new(stream.clone()).unwrap(), first.seq)
                .await
                .unwrap();
        assert_eq!(then.len(), 1);
        assert!(then[0].changes.iter().all(|c| c.before.is_none()));
        let logins = views.audit.logins_of(user);
        assert_eq!(logins.len(), FAILED_LOGIN_ALERT + 1);
        let alerts = views.audit.alerts();
        assert!(matches!(alerts[0], Alert::RepeatedFailedLogins { failures: 5, .. }), "{alerts:?}");
        assert!(matches!(alerts[1], Alert::LoginOnBlockedAccount { reason: LoginFailure::Locked, .. }), "{alerts:?}");
        assert!(matches!(alerts[2], Alert::PersonalDataVolume { within_hour: 250, .. }), "{alerts:?}");
        assert_eq!(alerts.len(), 3, "{alerts:?}");
        assert_eq!(views.audit.operations_of("reader").len(), 152);
    });
}

/// Customer 1, its owner (user 2) and department (3), as the audit tests use them.
fn customer_one() -> (oacis_domain::ids::CustomerId, oacis_domain::ids::UserId, oacis_domain::ids::DepartmentId) {
    (
        oacis_domain::ids::CustomerId(uuid::Uuid::from_u128(1)),
        oacis_domain::ids::UserId(uuid::Uuid::from_u128(2)),
        oacis_domain::ids::DepartmentId(uuid::Uuid::from_u128(3)),
    )
}

/// A person named 张伟, found by referral, with `segment` and `phones`.
fn zhang_wei(segment: Option<&str>, phones: &[&str]) -> oacis_domain::customer::Profile {
    oacis_domain::customer::Profile {
        kind: oacis_domain::customer::CustomerKind::Person,
        name: "张伟".into(),
        company: None,
        source: SourceChannel::Referral,
        tags: Default::default(),
        segment: segment.map(Into::into),
        personal: oacis_domain::customer::CustomerPersonal {
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        },
    }
}

/// An event that adds an entry to a record is compared with that entry alone: a second
/// interaction's summary is new, not a change of the first's; a reversal changes its own
/// purchase.
#[test]
fn a_records_history_compares_each_entry_with_itself() {
    use oacis_domain::customer::{Direction, InteractionChannel};
    use oacis_domain::ids::{Date, EntryId};
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let (id, owner, department) = customer_one();
        let profile = zhang_wei(None, &[]);
        let (mut customer, stream) = (Default::default(), id.stream());
        let register = CustomerCommand::Register { id, profile, owner, department };
        act::<Customer>(&store, &stream, &mut customer, register, "alice", 0).await;
        for (n, summary) in [(1u128, "询价"), (2, "回访")] {
            let log = CustomerCommand::LogInteraction {
                id: EntryId(uuid::Uuid::from_u128(100 + n)),
                channel: InteractionChannel::Call,
                direction: Direction::Inbound,
                summary: summary.into(),
                occurred_at: Timestamp(1_800_000_000_000_000),
                participants: vec![owner],
            };
            act::<Customer>(&store, &stream, &mut customer, log, "alice", 1).await;
        }
        let purchase = EntryId(uuid::Uuid::from_u128(200));
        let buy = CustomerCommand::RecordPurchase {
            id: purchase,
            product: "年度服务包".into(),
            quantity: 1,
            amount_minor: 100,
            currency: "CNY".into(),
            purchased_on: Date::parse("2027-01-10").unwrap(),
        };
        act::<Customer>(&store, &stream, &mut customer, buy, "alice", 2).await;
        let reverse = CustomerCommand::ReversePurchase { id: purchase, reason: "退款".into() };
        act::<Customer>(&store, &stream, &mut customer, reverse, "alice", 3).await;
        let history = oacis_projections::views::audit::record_history(
            &store,
            &StreamId::new(stream.clone()).unwrap(),
            store.head().seq,
        )
        .await
        .unwrap();
        let second = history[2].changes.iter().find(|c| c.field == "summary").unwrap();
        assert_eq!((second.before.as_deref(), second.after.as_str()), (None, "\"回访\""));
        assert!(history[2].changes.iter().all(|c| c.before.is_none()), "{:?}", history[2].changes);
        // The reversal's amount is its purchase's: unchanged, so not listed; its reason is new.
        let reversal: Vec<&str> = history[4].changes.iter().map(|c| c.field.as_str()).collect();
        assert!(!reversal.contains(&"amount_minor") && reversal.contains(&"reason"), "{reversal:?}");
    });
}

#[test]
fn service_cases_and_customer_timelines() {
    use oacis_domain::case::{CaseCommand, CaseStatus, ServiceCase};
    use oacis_domain::customer::InteractionChannel;
    use oacis_domain::ids::CaseId;
    use oacis_domain::task::Priority;
    use oacis_projections::views::cases::CaseFilter;

    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 300, 21).await;
        let customer = oacis_domain::ids::CustomerId(uuid::Uuid::from_u128(4242));
        let case = CaseId(uuid::Uuid::from_u128(4343));
        let mut state = Default::default();
        let stream = case.stream();
        let open = CaseCommand::Open {
            id: case,
            customer,
            subject: "发票".into(),
            description: "开错了".into(),
            channel: InteractionChannel::Call,
            priority: Priority::Urgent,
        };
        act::<ServiceCase>(&store, &stream, &mut state, open, "s", 0).await;
        act::<ServiceCase>(
            &store,
            &stream,
            &mut state,
            CaseCommand::SetFollowUp { at: Some(Timestamp(1_800_000_000_000_000).plus_minutes(60)) },
            "s",
            1,
        )
        .await;
        act::<ServiceCase>(&store, &stream, &mut state, CaseCommand::Respond { message: "收到".into() }, "s", 15).await;

        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let row = views.cases.get(case).unwrap();
        assert_eq!(row.status, CaseStatus::InProgress);
        assert_eq!(row.first_response_us(), Some(15 * 60 * 1_000_000));
        let urgent = views.cases.list(&CaseFilter { priority: Some(Priority::Urgent), ..Default::default() });
        assert_eq!(urgent[0].id, case);
        let overdue = views.cases.overdue_follow_ups(Timestamp(1_800_000_000_000_000).plus_minutes(61));
        assert_eq!(overdue.iter().map(|c| c.id).collect::<Vec<_>>(), [case]);
        assert!(views.cases.overdue_follow_ups(Timestamp(1_800_000_000_000_000).plus_minutes(59)).is_empty());
        let rated = views.cases.list(&CaseFilter { status: Some(CaseStatus::Closed), ..Default::default() });
        assert!(rated.iter().all(|c| c.satisfaction.is_some_and(|s| (1..=5).contains(&s))));

        // Timelines: a demo customer with a case has it, in time order.
        let with_case = views.cases.list(&CaseFilter::default()).into_iter().find(|c| c.customer != customer).unwrap();
        let timeline = views.timeline.of(with_case.customer);
        assert!(timeline.iter().any(|e| e.kind == "CustomerRegistered"));
        assert!(timeline
            .iter()
            .any(|e| e.record == oacis_projections::views::timeline::RecordRef::Case(with_case.id)
                && e.kind == "CaseOpened"));
        assert!(timeline.windows(2).all(|w| (w[0].at, w[0].seq) <= (w[1].at, w[1].seq)));
        // A survivor's timeline includes its merged duplicates.
        let merged = views.directory.query(&DirectoryQuery {
            status: Some(CustomerStatus::Merged),
            first: 1,
            ..Default::default()
        });
        let duplicate = &merged.rows[0];
        let survivor = views.directory.resolve(duplicate.id).unwrap().id;
        let survivor_timeline = views.timeline.of(survivor);
        assert!(survivor_timeline.iter().any(|e| e.customer == duplicate.id && e.kind == "CustomerMerged"));
        assert!(survivor_timeline.iter().any(|e| e.customer == survivor && e.kind == "CustomerAbsorbed"));
    });
}

/// An independent, slow reference for directory queries: filter every row, sort fully,
/// continue after the cursor row.
fn reference_page(
    views: &Views,
    all: &[oacis_projections::views::directory::CustomerRow],
    q: &DirectoryQuery,
    after: Option<&oacis_projections::views::directory::CustomerRow>,
) -> (Vec<uuid::Uuid>, usize, bool) {
    use std::cmp::Ordering;
    let needle = q.text.as_ref().map(|t| t.trim().to_lowercase());
    let name_needle = q.name.as_ref().map(|t| t.trim().to_lowercase());
    let matches = |r: &&oacis_projections::views::directory::CustomerRow| {
        let mut parts = vec![
            r.name.clone(),
            r.industry.clone().unwrap_or_default(),
            r.tags.iter().cloned().collect::<Vec<_>>().join(" "),
        ];
        if q.search_personal {
            parts.push(r.phones.join(" "));
            parts.push(r.emails.join(" "));
            // A survivor is also found by the contacts of every customer merged into it.
            parts.push(
                all.iter()
                    .filter(|m| {
                        m.status == CustomerStatus::Merged
                            && m.id != r.id
                            && views.directory.resolve(m.id).map(|s| s.id) == Some(r.id)
                    })
                    .flat_map(|m| m.phones.iter().chain(&m.emails).cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        let text = parts.join("\u{1f}").to_lowercase();
        q.status.map_or(r.status != CustomerStatus::Merged, |s| r.status == s)
            && q.visible.as_ref().is_none_or(|v| v.owner == Some(r.owner) || v.departments.contains(&r.department))
            && q.department.is_none_or(|d| r.department == d)
            && q.owner.is_none_or(|o| r.owner == o)
            && q.source.is_none_or(|s| r.source == s)
            && q.segment.as_ref().is_none_or(|s| r.segment.as_ref() == Some(s))
            && q.tags.iter().all(|t| r.tags.contains(t))
            && needle.as_ref().is_none_or(|n| text.contains(n.as_str()))
            && name_needle.as_ref().is_none_or(|n| r.name.to_lowercase().contains(n.as_str()))
    };
    let sort_last_descending = q.sort.last().is_some_and(|(_, order)| *order == Order::Descending);
    let compare = |a: &&oacis_projections::views::directory::CustomerRow,
                   b: &&oacis_projections::views::directory::CustomerRow| {
        for (key, order) in &q.sort {
            let by = match key {
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::CreatedAt => a.created_at.cmp(&b.created_at),
                // The never contacted last, in either direction.
                SortKey::LastContact => match (a.last_contact, b.last_contact) {
                    (Some(x), Some(y)) if *order == Order::Descending => y.cmp(&x),
                    (x, y) => (x.is_none(), x).cmp(&(y.is_none(), y)),
                },
            };
            let by = if *order == Order::Descending && *key != SortKey::LastContact { by.reverse() } else { by };
            if by != Ordering::Equal {
                return by;
            }
        }
        // Ties break by id, in the direction of the last sort key.
        let by_id = a.id.cmp(&b.id);
        if sort_last_descending {
            by_id.reverse()
        } else {
            by_id
        }
    };
    let mut rows: Vec<_> = all.iter().filter(matches).collect();
    rows.sort_by(compare);
    let total = rows.len();
    let rest: Vec<_> = rows.into_iter().filter(|r| after.is_none_or(|a| compare(r, &a) == Ordering::Greater)).collect();
    let page: Vec<_> = rest.iter().take(q.first).map(|r| r.id.0).collect();
    (page, total, rest.len() > q.first)
}

#[test]
fn directory_queries_agree_with_a_naive_reference() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = demo_store(dir.path(), 400, 31).await;
        let views = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        let all = views.directory.query(&DirectoryQuery { status: None, first: 100, ..Default::default() });
        let mut every = Vec::new();
        for status in [None, Some(CustomerStatus::Merged)] {
            let mut after = None;
            loop {
                let page = views.directory.query(&DirectoryQuery {
                    status,
                    first: 100,
                    after: after.clone(),
                    ..Default::default()
                });
                every.extend(page.rows.iter().cloned());
                if !page.has_next {
                    break;
                }
                after = page.end_cursor;
            }
        }
        assert_eq!(every.len(), 400);
        let owners: Vec<_> = all.rows.iter().map(|r| r.owner).take(5).collect();
        let departments: Vec<_> =
            every.iter().map(|r| r.department).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let sorts = [
            vec![],
            vec![(SortKey::Name, Order::Ascending)],
            vec![(SortKey::Name, Order::Descending)],
            vec![(SortKey::CreatedAt, Order::Descending)],
            vec![(SortKey::LastContact, Order::Ascending)],
            vec![(SortKey::LastContact, Order::Descending)],
            vec![(SortKey::LastContact, Order::Ascending), (SortKey::Name, Order::Descending)],
        ];
        let mut dice = 7u64;
        let mut roll = |n: usize| {
            dice ^= dice << 13;
            dice ^= dice >> 7;
            dice ^= dice << 17;
            (dice % n as u64) as usize
        };
        for round in 0..300 {
            let mut q =
                DirectoryQuery { sort: sorts[roll(sorts.len())].clone(), first: 1 + roll(25), ..Default::default() };
            match roll(7) {
                0 => {
                    q.text = Some(["王", "MÜLLER", "+86", "vip", "科技", "c1"][roll(6)].into());
                    q.search_personal = roll(2) == 0;
                }
                // Names alone: a tag or a phone in the needle matches no name; with a text
                // filter both must hold.
                5 => {
                    q.name = Some(["王", "MÜLLER", "科技", "伟", "vip", "+86"][roll(6)].into());
                    if roll(3) == 0 {
                        q.text = Some(["vip", "王", "科技"][roll(3)].into());
                    }
                    q.search_personal = roll(2) == 0;
                }
                1 => q.owner = Some(owners[roll(owners.len())]),
                2 => q.source = Some(SourceChannel::Referral),
                3 => q.segment = Some(["smb", "个人", "nope"][roll(3)].into()),
                4 => q.tags = vec!["vip".into()],
                _ => {
                    q.status = Some([CustomerStatus::Archived, CustomerStatus::Merged, CustomerStatus::Active][roll(3)])
                }
            }
            // A cursor is a place: made from a row's sort values as they were, here those of
            // any row, or of a row renamed and contacted since (its cursor keeps the old ones).
            let mut after = None;
            if roll(2) == 0 {
                let mut row = every[roll(every.len())].clone();
                if roll(3) == 0 {
                    row.name = format!("{}{}", ["", "王", "zz"][roll(3)], row.name.chars().rev().collect::<String>());
                    row.last_contact = [None, Some(oacis_domain::ids::Timestamp(roll(1 << 20) as i64))][roll(2)];
                }
                q.after = Some(DirectoryCursor::of(&row));
                after = Some(row);
            }
            // Scopes and departments combine with every filter (counted from the cube or by a
            // scan, depending on the other filters).
            match roll(4) {
                0 => q.department = Some(departments[roll(departments.len())]),
                1 => {
                    let picked = departments.iter().filter(|_| roll(2) == 0).copied().collect();
                    q.visible = Some(Visible { owner: None, departments: picked });
                }
                2 => {
                    let picked = departments.iter().take(1 + roll(2)).copied().collect();
                    q.visible = Some(Visible { owner: Some(owners[roll(owners.len())]), departments: picked });
                }
                _ => {}
            }
            let page = views.directory.query(&q);
            let got: Vec<_> = page.rows.iter().map(|r| r.id.0).collect();
            let (want, total, has_next) = reference_page(&views, &every, &q, after.as_ref());
            assert_eq!((got, page.total, page.has_next), (want, total, has_next), "round {round}: {q:?}");
        }
    });
}
