//! Approval workflows in the domain: the acceptance cases of routing, version pinning,
//! 前加签, 退回 and resubmission, 撤回, the 或签 race, self-approval and 去重, and every
//! refusal with its typed reason and no events.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::BTreeMap;

use common::{id, user};
use oacis_domain::approval::calendar::*;
use oacis_domain::approval::definition::*;
use oacis_domain::approval::form::*;
use oacis_domain::approval::instance::*;
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, Date, DepartmentId, RoleId, Timestamp, UserId};
use oacis_domain::{Aggregate, Context, DomainError, DomainEvent, Scenario};
use serde_json::json;

const SUBMITTER: u128 = 1;
const MANAGER: u128 = 2;
const FINANCE: u128 = 3;
const SIGNER: u128 = 4;
const CEO: u128 = 5;
const DIRECTOR: u128 = 6;
const ADMIN: u128 = 9;

/// The head office, whose head is the CEO.
fn head_office() -> DepartmentId {
    DepartmentId(id(710))
}

fn finance_role() -> RoleId {
    RoleId(id(700))
}

fn at(actor: u128, minutes: i64) -> Context {
    Context::new(Some(user(actor)), Timestamp(1_795_000_000_000_000).plus_minutes(minutes))
}

fn approval(node: &str, approvers: Approvers, mode: Mode) -> Node {
    Node::Approval {
        id: node.into(),
        name: format!("{node} 审批"),
        approvers,
        mode,
        due: None,
        fields: Default::default(),
    }
}

fn amount_over(fen: i64) -> Condition {
    Condition {
        and: true,
        groups: vec![RuleGroup {
            and: true,
            rules: vec![Rule { field: "amount".into(), op: Operator::Gt, value: json!(fen) }],
        }],
    }
}

/// 费用报销: the submitter's leader, then finance above ¥5,000, then `tail`.
fn reimbursement(tail: Vec<Node>) -> DefinitionBody {
    let mut nodes = vec![
        approval("manager", Approvers::Leader { level: 1 }, Mode::Any),
        Node::Condition {
            id: "big".into(),
            name: "金额大于5000元".into(),
            branches: vec![Branch {
                when: amount_over(500_000),
                nodes: vec![approval("finance", Approvers::Role { role: finance_role() }, Mode::Any)],
            }],
            default: vec![],
        },
    ];
    nodes.extend(tail);
    DefinitionBody {
        name: "费用报销".into(),
        form: vec![
            FieldSpec { name: "amount".into(), label: "金额".into(), kind: FieldKind::Money, required: true },
            FieldSpec {
                name: "reason".into(),
                label: "事由".into(),
                kind: FieldKind::Text { max: 200 },
                required: true,
            },
        ],
        nodes,
        ledger: None,
    }
}

fn publish(history: &mut Vec<DefinitionEvent>, body: DefinitionBody) -> PublishedDefinition {
    let mut scenario = Scenario::<Definition>::given(history);
    let events =
        scenario.when(DefinitionCommand::Publish { id: ApprovalDefinitionId(id(600)), body }, &at(ADMIN, 0)).unwrap();
    history.extend(events);
    scenario.state().versions.last().unwrap().clone()
}

fn org() -> OrgFacts {
    OrgFacts {
        department: None,
        leaders: vec![Some(user(MANAGER)), Some(user(DIRECTOR))],
        role_members: BTreeMap::from([(finance_role(), vec![user(FINANCE)])]),
        heads: BTreeMap::from([(head_office(), user(CEO))]),
        active: [SUBMITTER, MANAGER, FINANCE, SIGNER, CEO, DIRECTOR, ADMIN].into_iter().map(user).collect(),
        administrators: vec![user(ADMIN)],
        leader_of: BTreeMap::from([(user(MANAGER), user(DIRECTOR))]),
    }
}

fn form(fen: i64) -> FormValues {
    FormValues::from([("amount".into(), json!(fen)), ("reason".into(), json!("客户拜访差旅"))])
}

/// A running approval and the events that made it.
struct Run {
    scenario: Scenario<Approval>,
    events: Vec<ApprovalEvent>,
    env: Environment,
    /// Minutes the clock moves per event so far.
    pace: i64,
}

impl Run {
    fn submit(definition: &PublishedDefinition, by: u128, values: FormValues) -> Run {
        let env = Environment { definition: definition.clone(), org: org(), calendar: WorkCalendar::default() };
        let mut run = Run { scenario: Scenario::given(&[]), events: Vec::new(), env, pace: 1 };
        run.act(by, Act::Submit { id: ApprovalId(id(800)), form: values, picked: BTreeMap::new() }).unwrap();
        run
    }

    fn act(&mut self, actor: u128, act: Act) -> Result<Vec<ApprovalEvent>, DomainError> {
        let minutes = self.events.len() as i64 * self.pace;
        let events = self.scenario.when(ApprovalCommand { act, env: self.env.clone() }, &at(actor, minutes))?;
        self.events.extend(events.clone());
        // Every step replays: folding the stored history gives the live state.
        assert_eq!(&Approval::fold(&self.events), self.scenario.state());
        Ok(events)
    }

    fn state(&self) -> &ApprovalState {
        self.scenario.state()
    }

    /// The live task of `who`.
    fn task_of(&self, who: u128) -> u32 {
        let live: Vec<u32> = self
            .state()
            .tasks
            .iter()
            .filter(|(_, t)| t.assignee == user(who) && t.status.live())
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(live.len(), 1, "{who} holds {live:?}");
        live[0]
    }

    fn approve(&mut self, who: u128, comment: &str) -> Vec<ApprovalEvent> {
        let task = self.task_of(who);
        self.act(who, Act::Approve { task, comment: Some(comment.into()), edits: FormValues::new() }).unwrap()
    }

    fn kinds(events: &[ApprovalEvent]) -> Vec<&'static str> {
        events.iter().map(DomainEvent::kind).collect()
    }

    fn status_of(&self, task: u32) -> TaskStatus {
        self.state().tasks[&task].status
    }
}

fn first_version() -> (Vec<DefinitionEvent>, PublishedDefinition) {
    let mut history = Vec::new();
    let v1 = publish(&mut history, reimbursement(vec![]));
    (history, v1)
}

#[test]
fn a_6000_yuan_reimbursement_goes_to_the_manager_then_finance_and_4000_skips_finance() {
    let (_, v1) = first_version();
    let mut big = Run::submit(&v1, SUBMITTER, form(600_000));
    assert_eq!(big.state().route, ["manager", "finance"]);
    assert_eq!(big.state().definition.as_ref().unwrap().version, 1);
    big.approve(MANAGER, "同意");
    assert_eq!(big.state().status, ApprovalStatus::Running);
    let events = big.approve(FINANCE, "财务已核");
    assert_eq!(Run::kinds(&events), ["ApprovalTaskApproved", "ApprovalNodePassed", "ApprovalCompleted"]);
    assert_eq!(big.state().status, ApprovalStatus::Approved);
    let approvals: Vec<(UserId, Option<String>)> = big
        .events
        .iter()
        .filter_map(|e| match e {
            ApprovalEvent::ApprovalTaskApproved(d) => Some((d.by, d.comment.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(approvals, [(user(MANAGER), Some("同意".into())), (user(FINANCE), Some("财务已核".into()))]);

    let mut small = Run::submit(&v1, SUBMITTER, form(400_000));
    assert_eq!(small.state().route, ["manager"]);
    small.approve(MANAGER, "同意");
    assert_eq!(small.state().status, ApprovalStatus::Approved);
    assert!(!small.state().tasks.values().any(|t| t.assignee == user(FINANCE)));
}

#[test]
fn a_running_approval_finishes_on_its_version_while_new_ones_start_on_the_next() {
    let (mut history, v1) = first_version();
    let mut running = Run::submit(&v1, SUBMITTER, form(600_000));
    let v2 = publish(
        &mut history,
        reimbursement(vec![approval("ceo", Approvers::DepartmentHead { department: head_office() }, Mode::Any)]),
    );
    assert_eq!((v2.version, v2.hash == v1.hash), (2, false));
    // Publishing the same body again is no new version.
    assert!(Definition::decide(
        &Definition::fold(&history),
        DefinitionCommand::Publish { id: ApprovalDefinitionId(id(600)), body: v2.body.clone() },
        &at(ADMIN, 1)
    )
    .unwrap()
    .is_empty());

    // The running one refuses the new version, nothing appended, and finishes on v1.
    let task = running.task_of(MANAGER);
    let before = running.events.len();
    running.env.definition = v2.clone();
    let refused = running.act(MANAGER, Act::Approve { task, comment: None, edits: FormValues::new() }).unwrap_err();
    assert!(matches!(&refused, DomainError::Rule(m) if m.contains("version 1")), "{refused:?}");
    assert_eq!(running.events.len(), before);
    running.env.definition = v1.clone();
    running.approve(MANAGER, "同意");
    running.approve(FINANCE, "同意");
    assert_eq!(running.state().status, ApprovalStatus::Approved);

    let fresh = Run::submit(&v2, SUBMITTER, form(600_000));
    assert_eq!(fresh.state().route, ["manager", "finance", "ceo"]);
    let mut fresh = fresh;
    fresh.approve(MANAGER, "同意");
    fresh.approve(FINANCE, "同意");
    assert_eq!(fresh.state().route[fresh.state().at], "ceo");
    fresh.approve(CEO, "总部负责人同意");
    assert_eq!(fresh.state().status, ApprovalStatus::Approved);
    assert_eq!(fresh.state().definition.as_ref().unwrap().version, 2);
    // The stored events decode to what was decided: a replay from the log builds the same state.
    let decoded: Vec<ApprovalEvent> =
        running.events.iter().map(|e| ApprovalEvent::decode(e.kind(), e.schema(), &e.payload()).unwrap()).collect();
    assert_eq!(Approval::fold(&decoded), *running.state());
}

#[test]
fn signers_added_before_the_manager_approve_first_and_finance_waits_for_the_manager() {
    let (_, v1) = first_version();
    let mut run = Run::submit(&v1, SUBMITTER, form(600_000));
    let manager = run.task_of(MANAGER);
    let events = run
        .act(
            MANAGER,
            Act::AddSigners {
                task: manager,
                kind: SignKind::Before,
                users: vec![user(SIGNER)],
                comment: Some("请A先看".into()),
            },
        )
        .unwrap();
    assert_eq!(Run::kinds(&events), ["ApprovalSignersAdded", "ApprovalTaskCreated"]);
    assert_eq!(run.status_of(manager), TaskStatus::Waiting);
    let refused =
        run.act(MANAGER, Act::Approve { task: manager, comment: None, edits: FormValues::new() }).unwrap_err();
    assert!(matches!(refused, DomainError::InvalidTransition { action: "approve", .. }), "{refused:?}");
    assert!(!run.state().tasks.values().any(|t| t.assignee == user(FINANCE)));

    let events = run.approve(SIGNER, "可以");
    assert_eq!(Run::kinds(&events), ["ApprovalTaskApproved", "ApprovalTaskResumed"]);
    assert_eq!(run.status_of(manager), TaskStatus::Running);
    assert!(!run.state().tasks.values().any(|t| t.assignee == user(FINANCE)));
    run.approve(MANAGER, "同意");
    assert_eq!(run.state().tasks[&run.task_of(FINANCE)].node, "finance");

    // 后加签: the signer waits for the manager's approval, which counts once the signer approved.
    let mut after = Run::submit(&v1, SUBMITTER, form(600_000));
    let manager = after.task_of(MANAGER);
    let events = after
        .act(
            MANAGER,
            Act::AddSigners { task: manager, kind: SignKind::After, users: vec![user(SIGNER)], comment: None },
        )
        .unwrap();
    assert_eq!(Run::kinds(&events), ["ApprovalSignersAdded", "ApprovalTaskCreated"]);
    let signer = *after.state().tasks.iter().find(|(_, t)| t.assignee == user(SIGNER)).unwrap().0;
    assert_eq!((after.status_of(manager), after.status_of(signer)), (TaskStatus::Running, TaskStatus::Queued));
    let refused =
        after.act(SIGNER, Act::Approve { task: signer, comment: None, edits: FormValues::new() }).unwrap_err();
    assert!(matches!(refused, DomainError::InvalidTransition { .. }), "{refused:?}");
    let refused = after
        .act(MANAGER, Act::AddSigners { task: manager, kind: SignKind::Before, users: vec![user(CEO)], comment: None })
        .unwrap_err();
    assert!(matches!(&refused, DomainError::Rule(m) if m.contains("other kind")), "{refused:?}");
    let events = after.approve(MANAGER, "同意");
    assert_eq!(Run::kinds(&events), ["ApprovalTaskApproved", "ApprovalTaskResumed"]);
    assert_eq!((after.status_of(manager), after.status_of(signer)), (TaskStatus::Approving, TaskStatus::Running));
    assert!(!after.state().tasks.values().any(|t| t.assignee == user(FINANCE)), "finance waits for the signer");
    let events = after.approve(SIGNER, "复核同意");
    assert_eq!(Run::kinds(&events)[..3], ["ApprovalTaskApproved", "ApprovalTaskCompleted", "ApprovalNodePassed"]);
    assert_eq!(after.status_of(manager), TaskStatus::Approved);
    assert_eq!(after.state().tasks[&after.task_of(FINANCE)].node, "finance");

    // 减签: a signer added and then removed lets the waiting task run again.
    let mut other = Run::submit(&v1, SUBMITTER, form(600_000));
    let manager = other.task_of(MANAGER);
    other
        .act(
            MANAGER,
            Act::AddSigners { task: manager, kind: SignKind::Before, users: vec![user(SIGNER)], comment: None },
        )
        .unwrap();
    let signer = other.task_of(SIGNER);
    let refused = other.act(FINANCE, Act::RemoveSigner { task: signer }).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "{refused:?}");
    let events = other.act(MANAGER, Act::RemoveSigner { task: signer }).unwrap();
    assert_eq!(Run::kinds(&events), ["ApprovalTaskCancelled", "ApprovalTaskResumed"]);
    // Nobody may be added twice, nor the actor.
    let refused = other
        .act(
            MANAGER,
            Act::AddSigners {
                task: manager,
                kind: SignKind::Before,
                users: vec![user(MANAGER), user(CEO), user(CEO)],
                comment: None,
            },
        )
        .unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(named, ["users[2]", "users[0]"]);
}

#[test]
fn finance_returns_to_the_submitter_who_resubmits_a_new_amount_on_the_same_approval() {
    let (_, v1) = first_version();
    let mut run = Run::submit(&v1, SUBMITTER, form(600_000));
    let first_hash = form_hash(&form(600_000));
    run.approve(MANAGER, "同意");
    let manager_task = *run.state().tasks.iter().find(|(_, t)| t.assignee == user(MANAGER)).unwrap().0;
    let finance = run.task_of(FINANCE);
    let refused = run.act(FINANCE, Act::Return { task: finance, to: None, comment: "  ".into() }).unwrap_err();
    assert!(matches!(refused, DomainError::Validation(_)));
    run.act(FINANCE, Act::Return { task: finance, to: None, comment: "发票不全".into() }).unwrap();
    assert_eq!(run.state().status, ApprovalStatus::Returned);
    assert_eq!(run.status_of(manager_task), TaskStatus::Approved, "the manager's approval stays in history");

    let refused = run.act(MANAGER, Act::Resubmit { form: form(300_000) }).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "{refused:?}");
    let events = run.act(SUBMITTER, Act::Resubmit { form: form(300_000) }).unwrap();
    let ApprovalEvent::ApprovalResubmitted(resubmitted) = &events[0] else { panic!("{events:?}") };
    assert_ne!(resubmitted.form_hash, first_hash);
    assert_eq!(resubmitted.form_hash, form_hash(&form(300_000)));
    assert_eq!(resubmitted.route, ["manager"]);
    // The route starts again; the repeat approver is not passed automatically after a resubmission.
    run.approve(MANAGER, "同意");
    assert_eq!(run.state().status, ApprovalStatus::Approved);

    // A return to an earlier node re-enters it, with no automatic pass.
    let (mut history, _) = first_version();
    let three = publish(
        &mut history,
        reimbursement(vec![approval("ceo", Approvers::Users { users: vec![user(CEO)] }, Mode::Any)]),
    );
    let mut run = Run::submit(&three, SUBMITTER, form(600_000));
    run.approve(MANAGER, "同意");
    let finance = run.task_of(FINANCE);
    let refused =
        run.act(FINANCE, Act::Return { task: finance, to: Some("ceo".into()), comment: "错".into() }).unwrap_err();
    assert!(
        matches!(&refused, DomainError::Validation(f) if f[0].field == "to" && f[0].message.contains("earlier node")),
        "{refused:?}"
    );
    run.act(FINANCE, Act::Return { task: finance, to: Some("manager".into()), comment: "请经理复核".into() }).unwrap();
    assert_eq!(run.state().route[run.state().at], "manager");
    assert!(run.state().reentered);
    run.approve(MANAGER, "复核同意");
    run.approve(FINANCE, "同意");
    run.approve(CEO, "同意");
    assert_eq!(run.state().status, ApprovalStatus::Approved);
}

#[test]
fn an_approver_withdraws_before_the_next_node_acts_and_is_refused_after() {
    let (mut history, _) = first_version();
    let three = publish(
        &mut history,
        reimbursement(vec![approval("ceo", Approvers::Users { users: vec![user(CEO)] }, Mode::Any)]),
    );
    let mut run = Run::submit(&three, SUBMITTER, form(600_000));
    run.approve(MANAGER, "同意");
    let manager_task = *run.state().tasks.iter().find(|(_, t)| t.assignee == user(MANAGER)).unwrap().0;
    let finance = run.task_of(FINANCE);
    let refused = run.act(FINANCE, Act::Withdraw { task: manager_task }).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "{refused:?}");
    let events = run.act(MANAGER, Act::Withdraw { task: manager_task }).unwrap();
    assert_eq!(
        Run::kinds(&events),
        ["ApprovalWithdrawn", "ApprovalTaskCancelled", "ApprovalNodeEntered", "ApprovalTaskCreated"]
    );
    assert_eq!(run.status_of(finance), TaskStatus::Cancelled);
    assert_eq!(run.status_of(manager_task), TaskStatus::Withdrawn);
    let again = run.task_of(MANAGER);
    assert_eq!(run.state().tasks[&again].node, "manager");

    // Once finance has approved, the manager's approval can no longer be taken back.
    run.approve(MANAGER, "再次同意");
    let manager_task = again;
    run.approve(FINANCE, "同意");
    let before = run.events.len();
    let refused = run.act(MANAGER, Act::Withdraw { task: manager_task }).unwrap_err();
    assert!(
        matches!(
            refused,
            DomainError::InvalidTransition { status: "followed by a later decision", action: "withdraw", .. }
        ),
        "{refused:?}"
    );
    assert_eq!(run.events.len(), before);
}

#[test]
fn in_an_any_one_node_the_first_decision_wins_and_the_other_is_refused() {
    let mut history = Vec::new();
    let body = DefinitionBody {
        name: "采购".into(),
        form: reimbursement(vec![]).form,
        nodes: vec![approval("buyers", Approvers::Users { users: vec![user(FINANCE), user(CEO)] }, Mode::Any)],
        ledger: None,
    };
    let definition = publish(&mut history, body);
    let mut run = Run::submit(&definition, SUBMITTER, form(100));
    let (first, second) = (run.task_of(FINANCE), run.task_of(CEO));
    // Both decide against the same state; the log appends one (expected version), the other
    // decides again against the new state and is refused.
    let state = run.state().clone();
    let reject =
        ApprovalCommand { act: Act::Reject { task: second, comment: "不同意".into() }, env: run.env.clone() };
    assert!(Approval::decide(&state, reject.clone(), &at(CEO, 5)).is_ok());
    let events = run.approve(FINANCE, "同意");
    assert_eq!(
        Run::kinds(&events),
        ["ApprovalTaskApproved", "ApprovalTaskCancelled", "ApprovalNodePassed", "ApprovalCompleted"]
    );
    assert_eq!(run.status_of(first), TaskStatus::Approved);
    let refused = Approval::decide(run.state(), reject, &at(CEO, 6)).unwrap_err();
    assert!(matches!(refused, DomainError::InvalidTransition { .. }), "{refused:?}");
}

#[test]
fn all_must_approve_by_ratio_and_one_after_another() {
    let mut history = Vec::new();
    let three = vec![user(FINANCE), user(CEO), user(SIGNER)];
    let body = DefinitionBody {
        name: "合同会签".into(),
        form: reimbursement(vec![]).form,
        nodes: vec![
            approval("board", Approvers::Users { users: three.clone() }, Mode::All { pass_percent: 60 }),
            approval("chain", Approvers::Users { users: vec![user(DIRECTOR), user(MANAGER)] }, Mode::Sequential),
        ],
        ledger: None,
    };
    let definition = publish(&mut history, body);
    let mut run = Run::submit(&definition, SUBMITTER, form(100));
    let ceo = run.task_of(CEO);
    run.act(CEO, Act::Reject { task: ceo, comment: "保留意见".into() }).unwrap();
    assert_eq!(run.state().status, ApprovalStatus::Running, "two of three can still reach 60%");
    run.approve(FINANCE, "同意");
    assert_eq!(run.state().route[run.state().at], "board");
    run.approve(SIGNER, "同意");
    // 依次: the director first, then the manager.
    assert_eq!(run.state().route[run.state().at], "chain");
    assert!(!run.state().tasks.values().any(|t| t.assignee == user(MANAGER)));
    run.approve(DIRECTOR, "同意");
    run.approve(MANAGER, "同意");
    assert_eq!(run.state().status, ApprovalStatus::Approved);

    let mut failing = Run::submit(&definition, SUBMITTER, form(100));
    for who in [CEO, FINANCE] {
        let task = failing.task_of(who);
        failing.act(who, Act::Reject { task, comment: "不同意".into() }).unwrap();
    }
    assert_eq!(failing.state().status, ApprovalStatus::Rejected);
    assert!(failing.state().tasks.values().all(|t| !t.status.live()));
}

#[test]
fn a_managers_own_request_goes_to_their_leader_and_a_repeat_approver_passes_automatically() {
    let (_, v1) = first_version();
    // The manager submits: their own leader node resolves to themself, money is involved.
    let mut run = Run::submit(&v1, MANAGER, form(100_000));
    let ApprovalEvent::ApprovalNodeEntered(entered) = &run.events[1] else { panic!("{:?}", run.events) };
    assert_eq!(entered.approvers, [user(DIRECTOR)]);
    assert_eq!(entered.notes, [RoutingNote::SelfApprovalToLeader { leader: user(DIRECTOR) }]);
    run.approve(DIRECTOR, "同意");
    assert_eq!(run.state().status, ApprovalStatus::Approved);

    // The director approves two nodes in a row: the second passes by itself, with its reason.
    let mut history = Vec::new();
    let body = DefinitionBody {
        name: "用印".into(),
        form: reimbursement(vec![]).form,
        nodes: vec![
            approval("upper", Approvers::Leader { level: 2 }, Mode::Any),
            Node::Cc { id: "inform".into(), name: "抄送财务".into(), to: Approvers::Role { role: finance_role() } },
            approval("seal", Approvers::Users { users: vec![user(DIRECTOR)] }, Mode::Any),
        ],
        ledger: None,
    };
    let definition = publish(&mut history, body);
    let mut run = Run::submit(&definition, SUBMITTER, form(100));
    let events = run.approve(DIRECTOR, "同意");
    assert_eq!(
        Run::kinds(&events),
        [
            "ApprovalTaskApproved",
            "ApprovalNodePassed",
            "ApprovalCcSent",
            "ApprovalNodeEntered",
            "ApprovalTaskCreated",
            "ApprovalTaskAutoApproved",
            "ApprovalNodePassed",
            "ApprovalCompleted"
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, ApprovalEvent::ApprovalTaskAutoApproved(a) if a.reason == AutoReason::ApproveSequent)));
    assert!(events.iter().any(|e| matches!(e, ApprovalEvent::ApprovalCcSent(c) if c.to == [user(FINANCE)])));
}

#[test]
fn nobody_to_approve_goes_to_the_administrators_never_through() {
    let (_, v1) = first_version();
    let env_org = OrgFacts { leaders: vec![None], ..org() };
    let env = Environment { definition: v1.clone(), org: env_org, calendar: WorkCalendar::default() };
    let mut scenario = Scenario::<Approval>::given(&[]);
    let events = scenario
        .when(
            ApprovalCommand {
                act: Act::Submit { id: ApprovalId(id(801)), form: form(600_000), picked: BTreeMap::new() },
                env: env.clone(),
            },
            &at(SUBMITTER, 0),
        )
        .unwrap();
    let ApprovalEvent::ApprovalNodeEntered(entered) = &events[1] else { panic!("{events:?}") };
    assert_eq!(entered.approvers, [user(ADMIN)]);
    assert_eq!(entered.notes, [RoutingNote::MissingApprovers]);
    assert_eq!(scenario.state().status, ApprovalStatus::Running);

    let nobody = Environment { org: OrgFacts { leaders: vec![None], administrators: vec![], ..org() }, ..env };
    let refused = Approval::decide(
        &ApprovalState::default(),
        ApprovalCommand {
            act: Act::Submit { id: ApprovalId(id(802)), form: form(1), picked: BTreeMap::new() },
            env: nobody,
        },
        &at(SUBMITTER, 0),
    )
    .unwrap_err();
    assert!(matches!(&refused, DomainError::Rule(m) if m.contains("no active administrator")), "{refused:?}");
}

/// Which refusal an operation must get.
type Expected = fn(&DomainError) -> bool;

#[test]
fn each_operation_is_refused_where_its_semantics_say_with_nothing_appended() {
    let (_, v1) = first_version();
    let mut run = Run::submit(&v1, SUBMITTER, form(600_000));
    let manager = run.task_of(MANAGER);
    let before = run.events.len();
    let cases: Vec<(u128, Act, Expected)> = vec![
        (FINANCE, Act::Approve { task: manager, comment: None, edits: FormValues::new() }, |e| {
            matches!(e, DomainError::NotYours { .. })
        }),
        (MANAGER, Act::Approve { task: 99, comment: None, edits: FormValues::new() }, |e| {
            matches!(e, DomainError::NotFound { .. })
        }),
        (MANAGER, Act::Reject { task: manager, comment: String::new() }, |e| matches!(e, DomainError::Validation(_))),
        (MANAGER, Act::Transfer { task: manager, to: user(MANAGER), comment: None }, |e| {
            matches!(e, DomainError::Validation(_))
        }),
        (MANAGER, Act::Transfer { task: manager, to: user(77), comment: None }, |e| {
            matches!(e, DomainError::Validation(_))
        }),
        (MANAGER, Act::ResolveDelegation { task: manager, comment: None }, |e| {
            matches!(e, DomainError::InvalidTransition { .. })
        }),
        (MANAGER, Act::Cancel { reason: "不要了".into() }, |e| matches!(e, DomainError::NotYours { .. })),
        (MANAGER, Act::Resubmit { form: form(1) }, |e| matches!(e, DomainError::NotYours { .. })),
        (SUBMITTER, Act::Resubmit { form: form(1) }, |e| matches!(e, DomainError::InvalidTransition { .. })),
        (MANAGER, Act::Urge, |e| matches!(e, DomainError::NotYours { .. })),
        (SIGNER, Act::Cc { to: vec![user(CEO)], comment: None }, |e| matches!(e, DomainError::NotYours { .. })),
        (SUBMITTER, Act::Submit { id: ApprovalId(id(800)), form: form(1), picked: BTreeMap::new() }, |e| {
            matches!(e, DomainError::AlreadyExists { .. })
        }),
    ];
    for (actor, act, expected) in cases {
        let described = format!("{act:?}");
        let refused = run.act(actor, act).unwrap_err();
        assert!(expected(&refused), "{described}: {refused:?}");
        assert_eq!(run.events.len(), before, "{described} appended");
    }

    // 催办 at most once per interval.
    run.act(SUBMITTER, Act::Urge).unwrap();
    let refused = run.act(SUBMITTER, Act::Urge).unwrap_err();
    assert!(matches!(refused, DomainError::TooSoon { action: "urge", .. }), "{refused:?}");

    // 委派: the delegate hands back, the owner decides.
    run.act(MANAGER, Act::Delegate { task: manager, to: user(SIGNER), comment: Some("请帮忙看".into()) }).unwrap();
    let refused = run.act(SIGNER, Act::Approve { task: manager, comment: None, edits: FormValues::new() }).unwrap_err();
    assert!(matches!(refused, DomainError::InvalidTransition { .. }), "{refused:?}");
    run.act(SIGNER, Act::ResolveDelegation { task: manager, comment: Some("没问题".into()) }).unwrap();
    // 转办: the new assignee decides.
    run.act(MANAGER, Act::Transfer { task: manager, to: user(CEO), comment: None }).unwrap();
    run.approve(CEO, "同意");
    run.act(SUBMITTER, Act::Cancel { reason: "计划取消".into() }).unwrap();
    assert_eq!(run.state().status, ApprovalStatus::Cancelled);
    assert!(run.state().tasks.values().all(|t| !t.status.live()));
}

/// A task whose assignee may no longer act (deactivated) is transferred by an approval
/// administrator for them; while the assignee is active, only they may transfer it, and no
/// one else may rescue it.
#[test]
fn an_administrator_transfers_the_task_of_an_assignee_who_left() {
    let (_, v1) = first_version();
    let mut run = Run::submit(&v1, SUBMITTER, form(600_000));
    let manager = run.task_of(MANAGER);
    let transfer = || Act::Transfer { task: manager, to: user(CEO), comment: Some("经理已离职".into()) };
    let refused = run.act(ADMIN, transfer()).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "while the manager is active: {refused:?}");
    run.env.org.active.remove(&user(MANAGER));
    let refused = run.act(FINANCE, transfer()).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "not an administrator: {refused:?}");
    let refused = run.act(ADMIN, Act::Delegate { task: manager, to: user(CEO), comment: None }).unwrap_err();
    assert!(matches!(refused, DomainError::NotYours { .. }), "a delegation stays the assignee's: {refused:?}");
    let events = run.act(ADMIN, transfer()).unwrap();
    match &events[..] {
        [ApprovalEvent::ApprovalTaskTransferred(h)] => assert_eq!((h.from, h.to), (user(MANAGER), user(CEO))),
        other => panic!("{other:?}"),
    }
    run.approve(CEO, "同意");
    assert!(run.state().tasks[&manager].status != TaskStatus::Running);
}

#[test]
fn forms_and_definitions_report_every_field_error_at_once() {
    let (_, v1) = first_version();
    let values = FormValues::from([
        ("amount".into(), json!(12.5)),
        ("colour".into(), json!("red")),
        ("reason".into(), json!("   ")),
    ]);
    let refused = Approval::decide(
        &ApprovalState::default(),
        ApprovalCommand {
            act: Act::Submit { id: ApprovalId(id(803)), form: values, picked: BTreeMap::new() },
            env: Environment { definition: v1, org: org(), calendar: WorkCalendar::default() },
        },
        &at(SUBMITTER, 0),
    )
    .unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(named, ["form.colour", "form.amount", "form.reason"]);

    let mut body = reimbursement(vec![approval("manager", Approvers::FormField { field: "reason".into() }, Mode::Any)]);
    body.nodes.push(Node::Condition {
        id: "odd".into(),
        name: "条件".into(),
        branches: vec![Branch {
            when: Condition {
                and: false,
                groups: vec![RuleGroup {
                    and: true,
                    rules: vec![
                        Rule { field: "reason".into(), op: Operator::Gt, value: json!("a") },
                        Rule { field: "missing".into(), op: Operator::Eq, value: json!(1) },
                    ],
                }],
            },
            nodes: vec![],
        }],
        default: vec![],
    });
    let refused = Definition::decide(
        &DefinitionState::default(),
        DefinitionCommand::Publish { id: ApprovalDefinitionId(id(601)), body },
        &at(ADMIN, 0),
    )
    .unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        named,
        [
            "nodes[2].approvers",
            "nodes[3].branches[0].when.groups[0].rules[0]",
            "nodes[3].branches[0].when.groups[0].rules[1]",
            "nodes[2].id"
        ]
    );
}

/// One generated operation: (actor, which operation, task number, another user).
fn act_from(op: u8, task: u32, other: u128, amount: i64) -> Act {
    match op {
        0 | 1 => Act::Approve { task, comment: None, edits: FormValues::new() },
        2 => Act::Reject { task, comment: "不同意".into() },
        3 => Act::Return {
            task,
            to: if other.is_multiple_of(2) { None } else { Some("board".into()) },
            comment: "退回".into(),
        },
        4 => Act::Resubmit { form: form(amount) },
        5 => Act::Transfer { task, to: user(other), comment: None },
        6 => Act::Delegate { task, to: user(other), comment: None },
        7 => Act::ResolveDelegation { task, comment: None },
        8 => Act::AddSigners {
            task,
            kind: if amount % 2 == 0 { SignKind::Before } else { SignKind::After },
            users: vec![user(other)],
            comment: None,
        },
        9 => Act::RemoveSigner { task },
        10 => Act::Withdraw { task },
        11 => Act::Cc { to: vec![user(other)], comment: None },
        12 => Act::Urge,
        13 => Act::Tick,
        _ => Act::Cancel { reason: "取消".into() },
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Any sequence of operations, accepted or refused: a refusal appends nothing, the stored
    /// events decode to themselves and fold to the live state, and a finished approval has no
    /// task left waiting.
    #[test]
    fn any_sequence_of_operations_replays_to_the_live_state(
        amount in 0i64..1_000_000,
        steps in proptest::collection::vec((1u128..=6, 0u8..15, 1u32..=10, 1u128..=6, 0i64..1_000_000), 1..60),
    ) {
        let mut history = Vec::new();
        let body = DefinitionBody {
            name: "会签流程".into(),
            form: reimbursement(vec![]).form,
            nodes: vec![
                Node::Approval {
                    id: "board".into(),
                    name: "董事会".into(),
                    approvers: Approvers::Users { users: vec![user(FINANCE), user(CEO), user(SIGNER)] },
                    mode: Mode::All { pass_percent: 60 },
                    due: Some(DueRule { working_days: None, working_hours: Some(1), on_due: OnDue::TransferToLeader }),
                    fields: Default::default(),
                },
                Node::Condition {
                    id: "big".into(),
                    name: "大额".into(),
                    branches: vec![Branch {
                        when: amount_over(500_000),
                        nodes: vec![approval("chain", Approvers::LeaderChain { levels: 2 }, Mode::Sequential)],
                    }],
                    default: vec![approval("any", Approvers::Users { users: vec![user(MANAGER), user(CEO)] }, Mode::Any)],
                },
            ],
            ledger: None,
        };
        let definition = publish(&mut history, body);
        let mut run = Run::submit(&definition, SUBMITTER, form(amount));
        // An hour per event, so that due times pass within a sequence.
        run.pace = 60;
        for (actor, op, task, other, amount) in steps {
            let before = run.events.len();
            match run.act(actor, act_from(op, task, other, amount)) {
                Ok(events) => {
                    for event in &events {
                        let decoded = ApprovalEvent::decode(event.kind(), event.schema(), &event.payload()).unwrap();
                        proptest::prop_assert_eq!(&decoded, event);
                    }
                }
                Err(_) => proptest::prop_assert_eq!(run.events.len(), before),
            }
            let state = run.state();
            if !matches!(state.status, ApprovalStatus::Running) {
                proptest::prop_assert!(state.tasks.values().all(|t| !t.status.live()), "{:?}", state);
            } else {
                proptest::prop_assert!(state.tasks.values().any(|t| t.status.live()), "a running approval waits for someone: {:?}", state);
            }
        }
    }
}

/// 2026's National Day: 1-7 October off, Saturday 10 October worked (调休).
fn national_day() -> WorkCalendar {
    let mut days: Vec<CalendarDay> = (1..=7)
        .map(|d| CalendarDay { date: Date::new(2026, 10, d).unwrap(), off: true, name: "国庆节".into() })
        .collect();
    days.push(CalendarDay { date: Date::parse("2026-10-10").unwrap(), off: false, name: "国庆节调休".into() });
    let published = CalendarYear::decide(
        &CalendarYearState::default(),
        CalendarCommand::PublishYear { year: 2026, days, papers: vec!["国办发明电〔2025〕1号".into()] },
        &at(ADMIN, 0),
    )
    .unwrap();
    let years: Vec<CalendarYearPublished> = published
        .into_iter()
        .map(|e| match e {
            CalendarEvent::CalendarYearPublished(y) => y,
        })
        .collect();
    WorkCalendar::of_years(&years)
}

/// Beijing local time as a UTC timestamp.
fn beijing(date: &str, hour: i64) -> Timestamp {
    Timestamp((Date::parse(date).unwrap().days() * 24 + hour - 8) * 3_600_000_000)
}

#[test]
fn working_days_and_hours_skip_holidays_and_count_adjusted_working_days() {
    let calendar = national_day();
    // Friday 9 October 15:00 + 1 working day: the adjusted working Saturday, 15:00.
    let due = calendar.add_working_days(beijing("2026-10-09", 15), 1);
    assert_eq!(due, Due { at: beijing("2026-10-10", 15), weekends_only: false });
    // 30 September + 1 working day: over the holiday week to Thursday 8 October.
    assert_eq!(calendar.add_working_days(beijing("2026-09-30", 10), 1).at, beijing("2026-10-08", 10));
    // Friday 16:00 + 4 working hours: 2 on Friday, then 09:00-11:00 on the worked Saturday.
    assert_eq!(calendar.add_working_hours(beijing("2026-10-09", 16), 4).at, beijing("2026-10-10", 11));
    // Over lunch: 11:00 + 2 hours is 14:00.
    assert_eq!(calendar.add_working_hours(beijing("2026-10-12", 11), 2).at, beijing("2026-10-12", 14));
    // 2027 has no calendar: weekends only, and it says so.
    let due = calendar.add_working_days(beijing("2027-01-01", 9), 1);
    assert_eq!(due, Due { at: beijing("2027-01-04", 9), weekends_only: true });
    assert!(WorkCalendar::default().add_working_days(beijing("2026-10-09", 9), 1).weekends_only);
    // The days of a NateScarlet/holiday-cn year file read as they are.
    let day: CalendarDay =
        serde_json::from_value(json!({ "name": "元旦", "date": "2026-01-01", "isOffDay": true })).unwrap();
    assert_eq!((day.off, day.name.as_str()), (true, "元旦"));
}

#[test]
fn a_one_working_day_task_submitted_on_the_friday_before_an_adjusted_saturday_falls_due_that_saturday() {
    let mut history = Vec::new();
    let body = DefinitionBody {
        name: "用章申请".into(),
        form: vec![FieldSpec {
            name: "purpose".into(),
            label: "用途".into(),
            kind: FieldKind::Text { max: 100 },
            required: true,
        }],
        nodes: vec![Node::Approval {
            id: "manager".into(),
            name: "经理审批".into(),
            approvers: Approvers::Leader { level: 1 },
            mode: Mode::Any,
            due: Some(DueRule { working_days: Some(1), working_hours: None, on_due: OnDue::TransferToLeader }),
            fields: Default::default(),
        }],
        ledger: None,
    };
    let definition = publish(&mut history, body);
    let env = Environment { definition, org: org(), calendar: national_day() };
    let submitted_at = beijing("2026-10-09", 15);
    let ctx = |actor: Option<u128>, at: Timestamp| Context::new(actor.map(user), at);
    let submit = Act::Submit {
        id: ApprovalId(id(810)),
        form: FormValues::from([("purpose".into(), json!("合同盖章"))]),
        picked: BTreeMap::new(),
    };
    let events = Approval::decide(
        &ApprovalState::default(),
        ApprovalCommand { act: submit, env: env.clone() },
        &ctx(Some(SUBMITTER), submitted_at),
    )
    .unwrap();
    let ApprovalEvent::ApprovalTaskCreated(created) = &events[2] else { panic!("{events:?}") };
    let due = created.due.clone().unwrap();
    assert_eq!(due.at, beijing("2026-10-10", 15));
    assert_eq!((due.calendar.as_str(), due.weekends_only), (env.calendar.version.as_str(), false));
    let state = Approval::fold(&events);

    // A tick before the due time does nothing; after it, the task goes to the manager's leader.
    let tick = ApprovalCommand { act: Act::Tick, env: env.clone() };
    assert!(Approval::decide(&state, tick.clone(), &ctx(None, beijing("2026-10-10", 14))).unwrap().is_empty());
    let timed_out = Approval::decide(&state, tick.clone(), &ctx(None, beijing("2026-10-10", 15))).unwrap();
    assert_eq!(
        timed_out,
        [ApprovalEvent::ApprovalTaskTimedOut(ApprovalTaskTimedOut {
            task: created.task,
            action: OnDue::TransferToLeader,
            to: Some(user(DIRECTOR))
        })]
    );
    let mut history: Vec<ApprovalEvent> = events.clone();
    history.extend(timed_out);
    let state = Approval::fold(&history);
    assert_eq!(state.tasks[&created.task].assignee, user(DIRECTOR));
    // Handled once: a later tick does nothing more.
    assert!(Approval::decide(&state, tick, &ctx(None, beijing("2026-10-12", 9))).unwrap().is_empty());
    // A replay gives the same due time, whatever calendar is published later.
    let replayed = Approval::fold(&history);
    assert_eq!(replayed.tasks[&created.task].due, Some(beijing("2026-10-10", 15)));
    // Only the scheduler acts without a user.
    let refused =
        Approval::decide(&state, ApprovalCommand { act: Act::Urge, env }, &ctx(None, beijing("2026-10-12", 9)))
            .unwrap_err();
    assert!(matches!(refused, DomainError::Rule(_)), "{refused:?}");
}

#[test]
fn money_never_passes_by_itself_when_it_falls_due() {
    let mut body = reimbursement(vec![]);
    body.nodes[0] = Node::Approval {
        id: "manager".into(),
        name: "经理".into(),
        approvers: Approvers::Leader { level: 1 },
        mode: Mode::Any,
        due: Some(DueRule { working_days: Some(2), working_hours: Some(3), on_due: OnDue::Approve }),
        fields: Default::default(),
    };
    let refused = Definition::decide(
        &DefinitionState::default(),
        DefinitionCommand::Publish { id: ApprovalDefinitionId(id(602)), body },
        &at(ADMIN, 0),
    )
    .unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(named, ["nodes[0].due", "nodes[0].due.on_due"]);
}

#[test]
fn approvers_change_only_the_fields_their_node_lets_them_and_the_form_hash_follows() {
    let mut history = Vec::new();
    let mut body = reimbursement(vec![]);
    body.nodes[0] = Node::Approval {
        id: "manager".into(),
        name: "经理".into(),
        approvers: Approvers::Leader { level: 1 },
        mode: Mode::Any,
        due: None,
        fields: BTreeMap::from([("amount".to_owned(), FieldAccess::Write), ("reason".to_owned(), FieldAccess::Hidden)]),
    };
    assert_eq!(body.access("manager", "amount"), FieldAccess::Write);
    assert_eq!(body.access("manager", "reason"), FieldAccess::Hidden);
    assert_eq!(body.access("finance", "amount"), FieldAccess::Read);
    let definition = publish(&mut history, body);
    let mut run = Run::submit(&definition, SUBMITTER, form(600_000));
    let task = run.task_of(MANAGER);
    let before = run.events.len();
    let edit = |field: &str, value: serde_json::Value| FormValues::from([(field.to_owned(), value)]);
    let refused =
        run.act(MANAGER, Act::Approve { task, comment: None, edits: edit("reason", json!("改事由")) }).unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    assert_eq!(fields[0].field, "edits.reason");
    let refused = run.act(MANAGER, Act::Approve { task, comment: None, edits: edit("amount", json!(-5)) }).unwrap_err();
    let DomainError::Validation(fields) = refused else { panic!("{refused:?}") };
    assert_eq!(fields[0].field, "form.amount");
    assert_eq!(run.events.len(), before);
    // 500,000 fen: the route stays the one the form took when submitted (finance follows).
    let events = run
        .act(MANAGER, Act::Approve { task, comment: Some("核减".into()), edits: edit("amount", json!(500_000)) })
        .unwrap();
    let ApprovalEvent::ApprovalFormEdited(edited) = &events[0] else { panic!("{events:?}") };
    assert_eq!(edited.form["amount"], json!(500_000));
    assert_eq!(edited.form_hash, form_hash(&edited.form));
    assert_eq!(run.state().form["amount"], json!(500_000));
    assert_eq!(run.state().route[run.state().at], "finance");
}

#[test]
fn leave_counts_working_half_days_and_a_ledger_reserves_takes_and_releases() {
    use oacis_domain::approval::ledger::*;
    let calendar = national_day();
    let range = |from: &str, from_half: &str, to: &str, to_half: &str| {
        date_range(&json!({ "from": from, "from_half": from_half, "to": to, "to_half": to_half })).unwrap()
    };
    // Thursday afternoon, Friday, the worked Saturday's morning: 1 + 2 + 1.
    assert_eq!(calendar.working_half_days(&range("2026-10-08", "pm", "2026-10-10", "am")), (4, false));
    // The holiday week counts nothing.
    assert_eq!(calendar.working_half_days(&range("2026-10-01", "am", "2026-10-07", "pm")), (0, false));

    let key = leave_key(user(SUBMITTER), "annual", 2026);
    let approval = |n: u128| ApprovalId(id(900 + n));
    let mut ledger = Scenario::<Ledger>::given(&[]);
    let credit =
        LedgerCommand::Credit {
            key: key.clone(), unit: LedgerUnit::HalfDays, amount: 10, reason: "2026年年假".into()
        };
    ledger.when(credit, &at(ADMIN, 0)).unwrap();
    let reserve = |n: u128, amount: i64, allow_negative: bool| LedgerCommand::Reserve {
        key: key.clone(),
        unit: LedgerUnit::HalfDays,
        approval: approval(n),
        amount,
        allow_negative,
        span: None,
    };
    ledger.when(reserve(1, 4, false), &at(SUBMITTER, 1)).unwrap();
    assert_eq!(ledger.state().available(), 6);
    let refused = ledger.when(reserve(2, 7, false), &at(SUBMITTER, 2)).unwrap_err();
    assert!(
        matches!(&refused, DomainError::Validation(f) if f[0].field == "amount" && f[0].message.contains("6 half days available, 7 asked")),
        "{refused:?}"
    );
    // A resubmission replaces its own reservation, counting what it frees.
    let events = ledger.when(reserve(1, 10, false), &at(SUBMITTER, 3)).unwrap();
    assert_eq!(events.iter().map(DomainEvent::kind).collect::<Vec<_>>(), ["LedgerReleased", "LedgerReserved"]);
    assert_eq!(ledger.state().available(), 0);
    // A leave type that allows a negative balance.
    ledger.when(reserve(2, 3, true), &at(SUBMITTER, 4)).unwrap();
    assert_eq!(ledger.state().available(), -3);
    ledger.when(LedgerCommand::Take { approval: approval(1) }, &at(MANAGER, 5)).unwrap();
    ledger.when(LedgerCommand::Release { approval: approval(2) }, &at(MANAGER, 6)).unwrap();
    assert_eq!((ledger.state().taken, ledger.state().available()), (10, 0));
    // Settling again changes nothing; another ledger's key is refused.
    assert!(ledger.when(LedgerCommand::Take { approval: approval(1) }, &at(MANAGER, 7)).unwrap().is_empty());
    let other = LedgerCommand::Credit {
        key: "leave/x/sick/2026".into(),
        unit: LedgerUnit::HalfDays,
        amount: 1,
        reason: "x".into(),
    };
    assert!(matches!(ledger.when(other, &at(ADMIN, 8)), Err(DomainError::Rule(_))));
    assert_eq!(
        oacis_domain::ids::LedgerId::of(&key),
        oacis_domain::ids::LedgerId::of(&leave_key(user(SUBMITTER), "annual", 2026))
    );
}

/// One person is not on leave twice on one half day: a reservation whose days share a half
/// day with another approval's reserved or taken leave on the ledger is refused; released
/// leave frees its days; an approval may move its own.
#[test]
fn leave_that_overlaps_leave_asked_for_or_taken_is_refused() {
    use oacis_domain::approval::form::Half;
    use oacis_domain::approval::ledger::*;
    use oacis_domain::FieldCode;
    let key = leave_key(user(SUBMITTER), "annual", 2026);
    let approval = |n: u128| ApprovalId(id(900 + n));
    let mut ledger = Scenario::<Ledger>::given(&[]);
    let credit = LedgerCommand::Credit { key: key.clone(), unit: LedgerUnit::HalfDays, amount: 40, reason: "x".into() };
    ledger.when(credit, &at(ADMIN, 0)).unwrap();
    let span = |from: &str, from_half, to: &str, to_half| LeaveSpan {
        from: Date::parse(from).unwrap(),
        from_half,
        to: Date::parse(to).unwrap(),
        to_half,
    };
    let reserve = |n: u128, span: LeaveSpan| LedgerCommand::Reserve {
        key: key.clone(),
        unit: LedgerUnit::HalfDays,
        approval: approval(n),
        amount: 2,
        allow_negative: false,
        span: Some(span),
    };
    let events =
        ledger.when(reserve(1, span("2026-12-15", Half::Am, "2026-12-15", Half::Am)), &at(SUBMITTER, 1)).unwrap();
    let stored = serde_json::to_value(&events[0]).unwrap().to_string();
    assert!(
        stored.contains(r#""span":{"from":"2026-12-15","from_half":"am","to":"2026-12-15","to_half":"am"}"#),
        "{stored}"
    );
    // The afternoon of that day is free; the whole day is not.
    ledger.when(reserve(2, span("2026-12-15", Half::Pm, "2026-12-15", Half::Pm)), &at(SUBMITTER, 2)).unwrap();
    let refused = ledger.when(reserve(3, span("2026-12-14", Half::Am, "2026-12-16", Half::Pm)), &at(SUBMITTER, 3));
    match refused {
        Err(DomainError::Validation(fields)) => {
            assert_eq!((fields[0].field.as_str(), fields[0].code), ("span", FieldCode::Duplicate), "{fields:?}")
        }
        other => panic!("{other:?}"),
    }
    // Taken leave keeps its days; released leave frees them; an approval moves its own days.
    ledger.when(LedgerCommand::Take { approval: approval(1) }, &at(MANAGER, 4)).unwrap();
    assert!(ledger.when(reserve(4, span("2026-12-15", Half::Am, "2026-12-15", Half::Am)), &at(SUBMITTER, 5)).is_err());
    ledger.when(LedgerCommand::Release { approval: approval(2) }, &at(MANAGER, 6)).unwrap();
    ledger.when(reserve(4, span("2026-12-15", Half::Pm, "2026-12-16", Half::Am)), &at(SUBMITTER, 7)).unwrap();
    ledger.when(reserve(4, span("2026-12-16", Half::Am, "2026-12-16", Half::Pm)), &at(SUBMITTER, 8)).unwrap();
    assert_eq!(ledger.state().spans.len(), 2, "{:?}", ledger.state().spans);
}

#[test]
fn an_approval_reserves_on_submission_takes_on_approval_and_releases_on_rejection() {
    use oacis_domain::approval::ledger::*;
    let mut history = Vec::new();
    let mut body = reimbursement(vec![]);
    body.form
        .push(FieldSpec { name: "days".into(), label: "日期".into(), kind: FieldKind::DateRange, required: true });
    body.ledger =
        Some(LedgerBinding::Leave { leave_type: "annual".into(), range_field: "days".into(), allow_negative: false });
    let definition = publish(&mut history, body);
    let mut run = Run::submit(&definition, SUBMITTER, {
        let mut f = form(100);
        f.insert(
            "days".into(),
            json!({ "from": "2026-10-08", "from_half": "pm", "to": "2026-10-10", "to_half": "am" }),
        );
        f
    });
    run.env.calendar = national_day();
    let binding = run.env.definition.body.ledger.clone().unwrap();
    let commands = follow(&binding, run.state(), &run.events, &WorkCalendar::default()).unwrap();
    assert!(
        matches!(&commands[..], [LedgerCommand::Reserve { amount: 3, .. }]),
        "weekends only, the Saturday off: {commands:?}"
    );
    let commands = follow(&binding, run.state(), &run.events, &national_day()).unwrap();
    let LedgerCommand::Reserve { key, amount, .. } = &commands[0] else { panic!("{commands:?}") };
    assert_eq!((key.as_str(), *amount), (leave_key(user(SUBMITTER), "annual", 2026).as_str(), 4));
    let events = run.approve(MANAGER, "同意");
    assert!(matches!(
        &follow(&binding, run.state(), &events, &national_day()).unwrap()[..],
        [LedgerCommand::Take { .. }]
    ));
    // A budget binding needs the submitter's department.
    let budget =
        LedgerBinding::Budget { category: "travel".into(), amount_field: "amount".into(), allow_negative: false };
    assert!(matches!(follow(&budget, run.state(), &events, &national_day()), Err(DomainError::Rule(_))));
    let mut dept_state = run.state().clone();
    dept_state.department = Some(head_office());
    let cancelled = [ApprovalEvent::ApprovalCancelled(ApprovalCancelled { by: user(SUBMITTER), reason: "x".into() })];
    let released = follow(&budget, &dept_state, &cancelled, &national_day()).unwrap();
    assert!(matches!(&released[..], [LedgerCommand::Release { .. }]), "{released:?}");
}

#[test]
fn detail_rows_are_checked_row_by_row_and_their_money_counts() {
    let rows = FieldSpec {
        name: "items".into(),
        label: "明细".into(),
        kind: FieldKind::Rows {
            fields: vec![
                FieldSpec {
                    name: "item".into(),
                    label: "品名".into(),
                    kind: FieldKind::Text { max: 50 },
                    required: true,
                },
                FieldSpec { name: "amount".into(), label: "金额".into(), kind: FieldKind::Money, required: true },
            ],
            max: 3,
        },
        required: true,
    };
    let fields = vec![rows];
    let values = |items: serde_json::Value| FormValues::from([("items".to_owned(), items)]);
    let mut v = oacis_domain::validate::Validator::new();
    check_values(
        &mut v,
        &fields,
        &values(
            json!([{ "item": "打印纸", "amount": 12_000 }, { "item": "", "amount": -1 }, 7, { "item": "墨盒", "amount": 1, "colour": "黑" }]),
        ),
    );
    let DomainError::Validation(errors) = v.finish(()).unwrap_err() else { panic!() };
    let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        named,
        ["form.items", "form.items[1].item", "form.items[1].amount", "form.items[2]", "form.items[3].colour"]
    );
    let good = values(json!([{ "item": "打印纸", "amount": 12_000 }, { "item": "墨盒", "amount": 30_000 }]));
    let mut v = oacis_domain::validate::Validator::new();
    check_values(&mut v, &fields, &good);
    assert!(v.is_clean());
    assert_eq!(money_total(&fields, &good), 42_000);
}

#[test]
fn a_submitter_is_never_handed_their_own_money_request_and_a_copy_is_not_repeated() {
    let (_, v1) = first_version();
    let mut run = Run::submit(&v1, SUBMITTER, form(600_000));
    let task = run.task_of(MANAGER);
    let before = run.events.len();
    let field_of = |e: DomainError| match e {
        DomainError::Validation(f) => (f[0].field.clone(), f[0].message.clone()),
        other => panic!("{other:?}"),
    };
    for act in [
        Act::Transfer { task, to: user(SUBMITTER), comment: None },
        Act::Delegate { task, to: user(SUBMITTER), comment: None },
    ] {
        let (field, message) = field_of(run.act(MANAGER, act).unwrap_err());
        assert_eq!(field, "to");
        assert!(message.contains("submitter"), "{message}");
    }
    for kind in [SignKind::Before, SignKind::After] {
        let act = Act::AddSigners { task, kind, users: vec![user(SUBMITTER)], comment: None };
        assert_eq!(field_of(run.act(MANAGER, act).unwrap_err()).0, "users[0]");
    }
    // Transfer to oneself: one error, not two.
    let refused = run.act(MANAGER, Act::Transfer { task, to: user(MANAGER), comment: None }).unwrap_err();
    assert!(matches!(&refused, DomainError::Validation(f) if f.len() == 1), "{refused:?}");
    assert_eq!(run.events.len(), before);

    // Copies: each person once; the submitter is not copied on their own approval.
    assert_eq!(run.act(SUBMITTER, Act::Cc { to: vec![user(CEO)], comment: None }).unwrap().len(), 1);
    assert!(run.act(MANAGER, Act::Cc { to: vec![user(CEO), user(SUBMITTER)], comment: None }).unwrap().is_empty());
    let many: Vec<UserId> = (0..25).map(|n| user(2_000 + n)).collect();
    let DomainError::Validation(errors) = run.act(SUBMITTER, Act::Cc { to: many, comment: None }).unwrap_err() else {
        panic!()
    };
    assert_eq!(errors.len(), 1, "one error for an oversized list: {errors:?}");
}

#[test]
fn calendars_name_their_source_and_keep_to_their_year_and_form_values_keep_to_their_shape() {
    let publish = |year: u16, date: &str, papers: Vec<String>| {
        CalendarYear::decide(
            &CalendarYearState::default(),
            CalendarCommand::PublishYear {
                year,
                days: vec![CalendarDay { date: Date::parse(date).unwrap(), off: true, name: "假日".into() }],
                papers,
            },
            &at(ADMIN, 0),
        )
    };
    let named = |r: Result<Vec<CalendarEvent>, DomainError>| match r.unwrap_err() {
        DomainError::Validation(f) => f.iter().map(|e| e.field.clone()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let notice = || vec!["国务院办公厅通知".to_owned()];
    assert_eq!(named(publish(2027, "2028-01-01", notice())), ["days[0].date", "days"]);
    assert_eq!(named(publish(2026, "2026-10-01", vec![])), ["papers"]);
    assert!(publish(2027, "2026-12-31", notice()).is_err(), "a year of nothing but the December before");
    assert!(publish(2026, "2026-10-01", notice()).is_ok());

    let mut v = oacis_domain::validate::Validator::new();
    let fields = vec![
        FieldSpec { name: "att".into(), label: "附件".into(), kind: FieldKind::Attachment, required: true },
        FieldSpec { name: "days".into(), label: "日期".into(), kind: FieldKind::DateRange, required: true },
        FieldSpec { name: "note".into(), label: "备注".into(), kind: FieldKind::Text { max: 50 }, required: true },
        FieldSpec { name: "amount".into(), label: "金额".into(), kind: FieldKind::Money, required: true },
    ];
    let values = FormValues::from([
        ("att".to_owned(), json!({ "name": "a.pdf", "size": 1, "blake3": "ab".repeat(32), "evil": "x" })),
        ("days".to_owned(), json!({ "from": "2026-10-08", "to": "2026-10-09", "evil": [[[1]]] })),
        ("note".to_owned(), json!("a\u{202e}b")),
        ("amount".to_owned(), json!(i64::MAX)),
    ]);
    check_values(&mut v, &fields, &values);
    let DomainError::Validation(errors) = v.finish(()).unwrap_err() else { panic!() };
    let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(named, ["form.att", "form.days", "form.note", "form.amount"]);
}
