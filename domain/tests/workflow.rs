//! Given/when/then for service cases and tasks: every command, accepted and refused, and the
//! status flows.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{ctx, customer, id, later, user};
use oacis_domain::case::*;
use oacis_domain::customer::InteractionChannel;
use oacis_domain::ids::{CaseId, EntryId, TaskId, Timestamp};
use oacis_domain::task::*;
use oacis_domain::{DomainError, Scenario};

fn opened() -> Scenario<ServiceCase> {
    let mut s = Scenario::<ServiceCase>::given(&[]);
    s.when(
        CaseCommand::Open {
            id: CaseId(id(1)),
            customer: customer(1),
            subject: "打印机无法连接".into(),
            description: "自昨天起无法连接网络打印机".into(),
            channel: InteractionChannel::Call,
            priority: Priority::High,
        },
        &ctx(),
    )
    .unwrap();
    s
}

fn transition_refused(result: Result<Vec<CaseEvent>, DomainError>) -> bool {
    matches!(result, Err(DomainError::InvalidTransition { .. }))
}

#[test]
fn a_case_runs_from_opening_to_closing_with_sla_times() {
    let mut s = opened();
    assert_eq!(s.state().status, CaseStatus::New);
    s.when(CaseCommand::Assign { assignee: user(5) }, &later(1)).unwrap();
    assert_eq!(s.state().status, CaseStatus::Assigned);
    let first = s.when(CaseCommand::Respond { message: "已收到，正在处理".into() }, &later(10)).unwrap();
    assert!(matches!(&first[0], CaseEvent::CaseResponded(r) if r.first && r.responded_at == later(10).now));
    let second = s.when(CaseCommand::Respond { message: "请重启路由器".into() }, &later(20)).unwrap();
    assert!(matches!(&second[0], CaseEvent::CaseResponded(r) if !r.first));
    assert_eq!(s.state().first_response_at, Some(later(10).now));
    s.when(CaseCommand::Hold { reason: "等待客户回复".into() }, &later(30)).unwrap();
    assert_eq!(s.state().status, CaseStatus::OnHold);
    s.when(CaseCommand::Resolve { resolution: "更换网线".into() }, &later(60)).unwrap();
    assert_eq!((s.state().status, s.state().resolved_at), (CaseStatus::Resolved, Some(later(60).now)));
    s.when(CaseCommand::Rate { score: 5, comment: Some("很满意".into()) }, &later(61)).unwrap();
    assert!(matches!(s.when(CaseCommand::Rate { score: 4, comment: None }, &later(62)), Err(DomainError::Rule(_))));
    s.when(CaseCommand::Close, &later(70)).unwrap();
    assert_eq!(s.state().status, CaseStatus::Closed);
    assert!(transition_refused(s.when(CaseCommand::Respond { message: "x".into() }, &later(71))));
    assert!(transition_refused(s.when(CaseCommand::Close, &later(71))));
    s.when(CaseCommand::Reopen { reason: "问题复现".into() }, &later(80)).unwrap();
    assert_eq!((s.state().status, s.state().reopened), (CaseStatus::InProgress, 1));
    s.when(CaseCommand::Resolve { resolution: "更换打印机".into() }, &later(90)).unwrap();
    s.when(CaseCommand::Rate { score: 3, comment: None }, &later(91)).unwrap();
}

#[test]
fn case_commands_check_state_and_input() {
    let mut none = Scenario::<ServiceCase>::given(&[]);
    assert_eq!(none.when(CaseCommand::Close, &ctx()), Err(DomainError::NotFound { entity: "service case" }));
    let mut s = opened();
    assert!(transition_refused(s.when(CaseCommand::Close, &ctx())));
    assert!(transition_refused(s.when(CaseCommand::Hold { reason: "x".into() }, &ctx())), "a new case is not held");
    assert!(transition_refused(s.when(CaseCommand::Rate { score: 5, comment: None }, &ctx())));
    assert!(transition_refused(s.when(CaseCommand::Reopen { reason: "x".into() }, &ctx())));
    assert!(matches!(s.when(CaseCommand::Respond { message: "  ".into() }, &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(
        s.when(CaseCommand::SetFollowUp { at: Some(Timestamp(0)) }, &ctx()),
        Err(DomainError::Validation(_))
    ));
    s.when(CaseCommand::SetFollowUp { at: Some(later(60 * 24).now) }, &ctx()).unwrap();
    assert_eq!(s.state().follow_up_at, Some(later(60 * 24).now));
    s.when(CaseCommand::Assign { assignee: user(5) }, &ctx()).unwrap();
    assert_eq!(s.when(CaseCommand::Assign { assignee: user(5) }, &ctx()), Ok(vec![]));
    s.when(CaseCommand::Resolve { resolution: "done".into() }, &ctx()).unwrap();
    assert!(matches!(s.when(CaseCommand::Rate { score: 0, comment: None }, &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(s.when(CaseCommand::Rate { score: 6, comment: None }, &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(
        opened().when(
            CaseCommand::Open {
                id: CaseId(id(1)),
                customer: customer(1),
                subject: "x".into(),
                description: "y".into(),
                channel: InteractionChannel::Email,
                priority: Priority::Low
            },
            &ctx()
        ),
        Err(DomainError::AlreadyExists { .. })
    ));
}

fn created() -> Scenario<Task> {
    let mut s = Scenario::<Task>::given(&[]);
    s.when(
        TaskCommand::Create {
            id: TaskId(id(1)),
            title: "回访客户".into(),
            description: None,
            priority: Priority::Normal,
            assignee: user(1),
            due: Some(later(120).now),
            reminder: Some(later(60).now),
            related: Some(Related::Customer(customer(1))),
        },
        &ctx(),
    )
    .unwrap();
    s
}

#[test]
fn tasks_follow_only_legal_status_transitions() {
    use TaskStatus as S;
    let legal = [
        (S::Open, TaskCommand::Start, S::InProgress),
        (S::Open, TaskCommand::Complete, S::Done),
        (S::InProgress, TaskCommand::Complete, S::Done),
        (S::Open, TaskCommand::Cancel { reason: "x".into() }, S::Cancelled),
        (S::InProgress, TaskCommand::Cancel { reason: "x".into() }, S::Cancelled),
        (S::Done, TaskCommand::Reopen, S::Open),
        (S::Cancelled, TaskCommand::Reopen, S::Open),
    ];
    let reach = |status: S| {
        let mut s = created();
        match status {
            S::InProgress => drop(s.when(TaskCommand::Start, &ctx()).unwrap()),
            S::Done => drop(s.when(TaskCommand::Complete, &ctx()).unwrap()),
            S::Cancelled => drop(s.when(TaskCommand::Cancel { reason: "x".into() }, &ctx()).unwrap()),
            _ => {}
        }
        assert_eq!(s.state().status, status);
        s
    };
    let all = [S::Open, S::InProgress, S::Done, S::Cancelled];
    let commands =
        || [TaskCommand::Start, TaskCommand::Complete, TaskCommand::Cancel { reason: "x".into() }, TaskCommand::Reopen];
    for from in all {
        for command in commands() {
            let expected = legal.iter().find(|(f, c, _)| *f == from && *c == command).map(|l| l.2);
            let mut s = reach(from);
            match (s.when(command.clone(), &ctx()), expected) {
                (Ok(_), Some(to)) => assert_eq!(s.state().status, to),
                (Err(DomainError::InvalidTransition { .. }), None) => {
                    assert_eq!(s.state().status, from)
                }
                (got, want) => panic!("{from:?} + {command:?}: got {got:?}, expected {want:?}"),
            }
        }
    }
}

#[test]
fn task_edits_check_the_schedule_and_the_state() {
    let mut s = created();
    assert!(matches!(
        s.when(TaskCommand::SetReminder { reminder: Some(later(121).now) }, &ctx()),
        Err(DomainError::Validation(_))
    ));
    assert!(matches!(
        s.when(TaskCommand::ChangeDue { due: Some(later(30).now) }, &ctx()),
        Err(DomainError::Validation(_))
    ));
    s.when(TaskCommand::ChangeDue { due: Some(later(240).now) }, &ctx()).unwrap();
    s.when(TaskCommand::SetReminder { reminder: None }, &ctx()).unwrap();
    assert_eq!((s.state().due, s.state().reminder), (Some(later(240).now), None));
    s.when(TaskCommand::ChangePriority { priority: Priority::Urgent }, &ctx()).unwrap();
    assert_eq!(s.when(TaskCommand::ChangePriority { priority: Priority::Urgent }, &ctx()), Ok(vec![]));
    s.when(TaskCommand::Reassign { assignee: user(2) }, &ctx()).unwrap();
    assert_eq!(s.when(TaskCommand::Reassign { assignee: user(2) }, &ctx()), Ok(vec![]));
    s.when(TaskCommand::Comment { id: EntryId(id(50)), text: "已电话联系".into() }, &ctx()).unwrap();
    assert_eq!(
        s.when(TaskCommand::Comment { id: EntryId(id(50)), text: "again".into() }, &ctx()),
        Err(DomainError::AlreadyExists { entity: "comment" })
    );
    s.when(TaskCommand::Complete, &ctx()).unwrap();
    assert!(matches!(
        s.when(TaskCommand::Reassign { assignee: user(3) }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.when(TaskCommand::ChangePriority { priority: Priority::Low }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    // Comments stay possible on finished tasks.
    s.when(TaskCommand::Comment { id: EntryId(id(51)), text: "总结".into() }, &ctx()).unwrap();
    let mut none = Scenario::<Task>::given(&[]);
    assert_eq!(none.when(TaskCommand::Start, &ctx()), Err(DomainError::NotFound { entity: "task" }));
    let bad = Scenario::<Task>::given(&[]).when(
        TaskCommand::Create {
            id: TaskId(id(2)),
            title: "".into(),
            description: None,
            priority: Priority::Low,
            assignee: user(1),
            due: Some(Timestamp(10)),
            reminder: Some(Timestamp(20)),
            related: None,
        },
        &ctx(),
    );
    match bad {
        Err(DomainError::Validation(errors)) => assert_eq!(errors.len(), 2, "{errors:?}"),
        other => panic!("{other:?}"),
    }
}
