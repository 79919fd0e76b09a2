//! Property tests: random command sequences never panic, every decided event survives the
//! round trip through its payload, folding the history equals the state built step by step,
//! and the cross-aggregate invariants hold (no department cycle, merge chains end at a
//! customer that is not merged).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::BTreeMap;

use common::{customer, dept, id, later, person, user};
use oacis_domain::case::{CaseCommand, ServiceCase};
use oacis_domain::customer::{Customer, CustomerCommand, CustomerState, CustomerStatus};
use oacis_domain::department::{Department, DepartmentCommand, DepartmentState, DepartmentStatus};
use oacis_domain::ids::{CaseId, DepartmentId, TaskId, Timestamp};
use oacis_domain::task::{Priority, Task, TaskCommand};
use oacis_domain::{Aggregate, Context, DomainEvent};
use proptest::prelude::*;

/// Applies `commands` one by one, checking payload round trips and fold equivalence.
fn run<A: Aggregate>(commands: Vec<A::Command>) -> A::State {
    let mut state = A::State::default();
    let mut history = Vec::new();
    for (step, command) in commands.into_iter().enumerate() {
        let ctx = later(step as i64);
        if let Ok(events) = A::decide(&state, command, &ctx) {
            for event in events {
                let decoded =
                    A::Event::decode(event.kind(), event.schema(), &event.payload()).expect("payload decodes");
                assert_eq!(decoded, event, "round trip of {}", event.kind());
                state = A::evolve(state, &event);
                history.push(event);
            }
        }
    }
    assert_eq!(A::fold(&history), state, "fold of the history differs from the incremental state");
    state
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![Just(Priority::Low), Just(Priority::Normal), Just(Priority::High), Just(Priority::Urgent)]
}

fn task_command() -> impl Strategy<Value = TaskCommand> {
    let time = (0i64..200).prop_map(|m| Some(later(m).now));
    prop_oneof![
        (priority(), time.clone(), time.clone()).prop_map(|(priority, due, reminder)| {
            TaskCommand::Create {
                id: TaskId(id(1)),
                title: "任务".into(),
                description: None,
                priority,
                assignee: user(1),
                due,
                reminder,
                related: None,
            }
        }),
        (0u128..3).prop_map(|n| TaskCommand::Reassign { assignee: user(n) }),
        Just(TaskCommand::Start),
        Just(TaskCommand::Complete),
        Just(TaskCommand::Reopen),
        Just(TaskCommand::Cancel { reason: "不需要了".into() }),
        (0u128..5)
            .prop_map(|n| TaskCommand::Comment { id: oacis_domain::ids::EntryId(id(100 + n)), text: "备注".into() }),
        priority().prop_map(|priority| TaskCommand::ChangePriority { priority }),
        time.clone().prop_map(|due| TaskCommand::ChangeDue { due }),
        time.prop_map(|reminder| TaskCommand::SetReminder { reminder }),
    ]
}

fn case_command() -> impl Strategy<Value = CaseCommand> {
    prop_oneof![
        Just(CaseCommand::Open {
            id: CaseId(id(1)),
            customer: customer(1),
            subject: "故障".into(),
            description: "无法登录".into(),
            channel: oacis_domain::customer::InteractionChannel::Email,
            priority: Priority::High,
        }),
        (0u128..3).prop_map(|n| CaseCommand::Assign { assignee: user(n) }),
        Just(CaseCommand::Respond { message: "处理中".into() }),
        Just(CaseCommand::Hold { reason: "等待".into() }),
        Just(CaseCommand::Resolve { resolution: "已解决".into() }),
        Just(CaseCommand::Close),
        Just(CaseCommand::Reopen { reason: "复现".into() }),
        (0i64..500).prop_map(|m| CaseCommand::SetFollowUp { at: Some(Timestamp(later(0).now.0 + m * 60_000_000)) }),
        (0u8..7).prop_map(|score| CaseCommand::Rate { score, comment: None }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn task_histories_are_consistent(commands in proptest::collection::vec(task_command(), 0..40)) {
        let state = run::<Task>(commands);
        if let (Some(due), Some(reminder)) = (state.due, state.reminder) {
            prop_assert!(reminder <= due);
        }
    }

    #[test]
    fn case_histories_are_consistent(commands in proptest::collection::vec(case_command(), 0..40)) {
        let state = run::<ServiceCase>(commands);
        if let (Some(first), Some(opened)) = (state.first_response_at, state.opened_at) {
            prop_assert!(first >= opened);
        }
    }

    #[test]
    fn department_trees_never_get_a_cycle(ops in proptest::collection::vec((0u128..8, proptest::option::of(0u128..8), any::<bool>()), 0..60)) {
        let mut tree: BTreeMap<DepartmentId, DepartmentState> = BTreeMap::new();
        for (step, (who, parent, create)) in ops.into_iter().enumerate() {
            let ctx = later(step as i64);
            let (who, parent) = (dept(who), parent.map(dept));
            let state = tree.get(&who).cloned().unwrap_or_default();
            let parent_open = parent.and_then(|p| tree.get(&p)).is_some_and(|p| p.status == DepartmentStatus::Open);
            let command = if create {
                DepartmentCommand::Create { id: who, name: "部门".into(), parent, parent_open }
            } else {
                DepartmentCommand::Move { parent, parent_ancestors: ancestors(&tree, parent), parent_open }
            };
            if let Ok(events) = Department::decide(&state, command, &ctx) {
                let next = events.iter().fold(state, Department::evolve);
                tree.insert(who, next);
            }
            for start in tree.keys() {
                prop_assert!(ancestors(&tree, Some(*start)).len() <= tree.len(), "cycle through {start:?}");
            }
        }
    }

    #[test]
    fn merge_chains_end_at_a_customer_that_is_not_merged(ops in proptest::collection::vec((0u128..6, 0u128..6, 0u8..3), 0..60)) {
        let mut customers: BTreeMap<u128, CustomerState> = BTreeMap::new();
        for n in 0..6u128 {
            let ctx = later(0);
            let command = CustomerCommand::Register { id: customer(n), profile: person("客户"), owner: user(1), department: dept(1) };
            let events = Customer::decide(&CustomerState::default(), command, &ctx).expect("register");
            customers.insert(n, events.iter().fold(CustomerState::default(), Customer::evolve));
        }
        for (step, (duplicate, survivor, action)) in ops.into_iter().enumerate() {
            let ctx = later(step as i64 + 1);
            let state = customers[&duplicate].clone();
            let command = match action {
                0 => CustomerCommand::MergeInto { survivor: customer(survivor), survivor_status: customers[&survivor].status },
                1 => CustomerCommand::Archive { reason: "无效".into() },
                _ => CustomerCommand::Restore,
            };
            if let Ok(events) = Customer::decide(&state, command, &ctx) {
                customers.insert(duplicate, events.iter().fold(state, Customer::evolve));
            }
            for start in customers.keys() {
                let mut at = *start;
                for _ in 0..=customers.len() {
                    match customers[&at].merged_into {
                        Some(next) => at = customers.iter().find(|(_, c)| c.id == Some(next)).map(|(n, _)| *n).expect("survivor exists"),
                        None => break,
                    }
                }
                prop_assert_ne!(customers[&at].status, CustomerStatus::Merged, "chain from {} does not end", start);
            }
        }
    }
}

/// The chain of ancestors of `department`, nearest first, stopping at a repeat.
fn ancestors(tree: &BTreeMap<DepartmentId, DepartmentState>, department: Option<DepartmentId>) -> Vec<DepartmentId> {
    let mut chain = Vec::new();
    let mut at = department.and_then(|d| tree.get(&d)).and_then(|s| s.parent);
    while let Some(d) = at {
        if chain.contains(&d) {
            chain.push(d);
            break;
        }
        chain.push(d);
        at = tree.get(&d).filter(|s| s.status == DepartmentStatus::Open).and_then(|s| s.parent);
    }
    chain
}

#[test]
fn the_ancestor_helper_detects_a_cycle_it_is_given() {
    let mut tree = BTreeMap::new();
    for (child, parent) in [(1, 2), (2, 1)] {
        tree.insert(
            dept(child),
            DepartmentState {
                id: Some(dept(child)),
                status: DepartmentStatus::Open,
                name: None,
                parent: Some(dept(parent)),
                leader: None,
            },
        );
    }
    assert!(ancestors(&tree, Some(dept(1))).len() > tree.len());
    let _ = Context::new(None, Timestamp(0));
}
