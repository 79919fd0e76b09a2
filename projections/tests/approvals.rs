//! Approvals through the log: decisions appended with expected versions (the 或签 race is
//! settled by the log), decoded back from stored records, and the approvals view, which
//! answers to-do, done, submitted and copied lists and rebuilds to the same dump as it was
//! followed live.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::collections::BTreeMap;

use oacis_domain::approval::definition::*;
use oacis_domain::approval::form::{FieldKind, FieldSpec, FormValues};
use oacis_domain::approval::instance::*;
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, Timestamp, UserId};
use oacis_domain::{Aggregate, Context, DomainError, DomainEvent};
use oacis_eventlog::{
    AppendError, AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, Seq, SledConfig, SledStore, StreamId,
    Version,
};
use oacis_projections::decode::{decode, AnyEvent};
use oacis_projections::views::approvals::ApprovalList;
use oacis_projections::Views;
use uuid::Uuid;

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(n))
}

fn at(actor: u128, minutes: i64) -> Context {
    Context::new(Some(user(actor)), Timestamp(1_795_000_000_000_000).plus_minutes(minutes))
}

const SUBMITTER: u128 = 1;
const MANAGER: u128 = 2;
const FINANCE: u128 = 3;
const CASHIER: u128 = 4;
const OFFICE: u128 = 5;

fn body() -> DefinitionBody {
    let approval = |id: &str, users: Vec<u128>| Node::Approval {
        id: id.into(),
        name: id.into(),
        approvers: Approvers::Users { users: users.into_iter().map(user).collect() },
        mode: Mode::Any,
        due: None,
        fields: Default::default(),
    };
    DefinitionBody {
        name: "费用报销".into(),
        form: vec![FieldSpec { name: "amount".into(), label: "金额".into(), kind: FieldKind::Money, required: true }],
        nodes: vec![
            approval("manager", vec![MANAGER]),
            Node::Cc {
                id: "office".into(),
                name: "抄送行政".into(),
                to: Approvers::Users { users: vec![user(OFFICE)] },
            },
            approval("finance", vec![FINANCE, CASHIER]),
        ],
        ledger: None,
    }
}

fn new_events<E: DomainEvent>(events: &[E]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent { kind: EventKind::new(e.kind()).unwrap(), schema: e.schema(), payload: e.payload() })
        .collect()
}

/// The approval's state and version, folded from its stored, decoded records.
fn load(store: &SledStore, id: ApprovalId) -> (ApprovalState, Version) {
    let mut events = Vec::new();
    let mut version = Version(0);
    for record in store.records(Seq::FIRST) {
        let record = record.unwrap();
        if let AnyEvent::Approval(of, event) = decode(&record, None).unwrap().event {
            if of == id {
                events.push(event);
                version = record.version;
            }
        }
    }
    (Approval::fold(&events), version)
}

#[test]
fn the_log_settles_the_any_one_race_and_the_view_rebuilds_as_it_followed() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(SledConfig::new(dir.path())).unwrap();
        let meta = |n: u128| AppendMeta::new(Uuid::from_u128(1_000 + n), "approvals-test");
        let definition_id = ApprovalDefinitionId(Uuid::from_u128(60));
        let published = Definition::decide(
            &DefinitionState::default(),
            DefinitionCommand::Publish { id: definition_id, body: body() },
            &at(9, 0),
        )
        .unwrap();
        let definition = Definition::fold(&published).versions[0].clone();
        store
            .append(
                StreamId::new(definition_id.stream()).unwrap(),
                ExpectedVersion::NoStream,
                new_events(&published),
                meta(0),
            )
            .await
            .unwrap();
        // Where each append ended, to look at the view after each decision.
        let mut heads = vec![store.head().seq];
        let env = Environment {
            definition,
            org: OrgFacts { active: (1..=9).map(user).collect(), administrators: vec![user(9)], ..OrgFacts::default() },
            calendar: oacis_domain::approval::calendar::WorkCalendar::default(),
        };
        let id = ApprovalId(Uuid::from_u128(61));
        let stream = StreamId::new(id.stream()).unwrap();
        let mut step = 0;
        let mut act = |actor: u128, act: Act, state: &ApprovalState| {
            step += 1;
            Approval::decide(state, ApprovalCommand { act, env: env.clone() }, &at(actor, step))
        };

        let form = FormValues::from([("amount".to_owned(), serde_json::json!(600_000))]);
        let submitted =
            act(SUBMITTER, Act::Submit { id, form, picked: BTreeMap::new() }, &ApprovalState::default()).unwrap();
        store.append(stream.clone(), ExpectedVersion::NoStream, new_events(&submitted), meta(1)).await.unwrap();
        heads.push(store.head().seq);
        let (state, version) = load(&store, id);
        let approved =
            act(MANAGER, Act::Approve { task: 1, comment: Some("同意".into()), edits: FormValues::new() }, &state)
                .unwrap();
        store.append(stream.clone(), ExpectedVersion::Exact(version), new_events(&approved), meta(2)).await.unwrap();
        heads.push(store.head().seq);

        // Both finance approvers decide against the same version; the log takes the first.
        let (state, version) = load(&store, id);
        assert_eq!(state.tasks.values().filter(|t| t.status.live()).count(), 2);
        let finance = act(FINANCE, Act::Approve { task: 2, comment: None, edits: FormValues::new() }, &state).unwrap();
        let cashier = act(CASHIER, Act::Reject { task: 3, comment: "不同意".into() }, &state).unwrap();
        store.append(stream.clone(), ExpectedVersion::Exact(version), new_events(&finance), meta(3)).await.unwrap();
        heads.push(store.head().seq);
        let lost = store.append(stream.clone(), ExpectedVersion::Exact(version), new_events(&cashier), meta(4)).await;
        assert!(matches!(lost, Err(AppendError::Conflict { .. })), "{lost:?}");
        // Deciding again against the new state: the task was cancelled by the first decision.
        let (state, _) = load(&store, id);
        assert_eq!(state.status, ApprovalStatus::Approved);
        let again = act(CASHIER, Act::Reject { task: 3, comment: "不同意".into() }, &state).unwrap_err();
        assert!(matches!(again, DomainError::InvalidTransition { .. }), "{again:?}");

        // The view, followed record by record, and rebuilt from the log.
        let mut live = Views::default();
        let mut inbox_after = Vec::new();
        for record in store.records(Seq::FIRST) {
            let record = record.unwrap();
            live.apply(&record, None).unwrap();
            if !heads.contains(&record.seq) {
                continue;
            }
            let inbox: Vec<usize> = [MANAGER, FINANCE, CASHIER]
                .into_iter()
                .map(|u| live.approvals.list(user(u), ApprovalList::Inbox, None).len())
                .collect();
            inbox_after.push(inbox);
        }
        assert_eq!(inbox_after, [vec![0, 0, 0], vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 0]]);
        let rebuilt = Views::replay(&store, None, &mut |_| {}).await.unwrap();
        assert_eq!(rebuilt.hash(), live.hash());
        assert!(rebuilt.dump().contains("## approvals copied"));

        let approvals = &rebuilt.approvals;
        let row = approvals.get(id).unwrap();
        assert_eq!((row.name.as_str(), row.state.status), ("费用报销", ApprovalStatus::Approved));
        let kinds: Vec<&str> = row.timeline.iter().map(|e| e.event.kind()).collect();
        assert_eq!(kinds[0], "ApprovalSubmitted");
        assert_eq!(*kinds.last().unwrap(), "ApprovalCompleted");
        let ids =
            |u: u128, list| -> Vec<ApprovalId> { approvals.list(user(u), list, None).iter().map(|r| r.id).collect() };
        assert_eq!(ids(SUBMITTER, ApprovalList::Submitted), [id]);
        assert_eq!(ids(MANAGER, ApprovalList::Done), [id]);
        assert_eq!(ids(FINANCE, ApprovalList::Done), [id]);
        assert!(ids(CASHIER, ApprovalList::Done).is_empty(), "the cashier's decision never reached the log");
        assert_eq!(ids(OFFICE, ApprovalList::Copied), [id]);
        assert!(approvals.list(user(SUBMITTER), ApprovalList::Submitted, Some(ApprovalStatus::Running)).is_empty());
        assert_eq!(approvals.definition(definition_id, None).unwrap().version, 1);
    });
}
