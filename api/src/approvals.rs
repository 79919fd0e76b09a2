//! What the server hands the approval domain, and the scheduler that applies due times.
//!
//! - [`org_facts`]: the organisation as an approval's decision reads it, from the views: the
//!   submitter's department and the leaders up its path, members of the roles the definition
//!   names, who may act among the users concerned, the approval administrators (holders of
//!   `approval.define`), and each live task's assignee's own leader.
//! - [`environment`]: the pinned definition version, those facts and the working calendar,
//!   for a command on an existing approval.
//! - [`execute`]: a command on an approval, together with the leave or budget ledger step its
//!   definition implies (reserve on submission, take on approval, release on rejection or
//!   cancellation), in one append.
//! - [`tick_due`]: one `Tick` (as the system) for every approval with a task that fell due by
//!   the command path's clock; the live timer calls it whenever a due time passes, so due
//!   times are applied once, by the log's rules, whatever node runs the timer.

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::approval::definition::{Approvers, DefinitionBody};
use oacis_domain::approval::form::FormValues;
use oacis_domain::approval::instance::{Act, Approval, ApprovalCommand, ApprovalState, Environment, OrgFacts};
use oacis_domain::authz::Permission;
use std::sync::Arc;

use oacis_domain::approval::ledger::{self, Ledger};
use oacis_domain::ids::{ApprovalId, LedgerId, Timestamp, UserId};
use oacis_domain::DomainError;
use oacis_projections::views::access::AccessDirectory;
use oacis_projections::{ProjectionError, Views};

use crate::access::may_act;
use crate::command::{then, CommandBus, CommandError, Executed, Follow, Origin};

/// The first leader up `user`'s department path who is not `user`.
fn leader_above(access: &AccessDirectory, user: UserId) -> Option<UserId> {
    let department = access.user(user)?.department;
    access
        .department_path(department)
        .iter()
        .filter_map(|d| access.department(*d).and_then(|row| row.leader))
        .find(|leader| *leader != user)
}

/// The organisation's facts for an approval by `submitter` on `body` (see the module doc),
/// for the users the form, the picks, the approval's tasks (`state`) and the operation
/// (`extra`) name.
#[must_use]
pub fn org_facts(
    v: &Views,
    submitter: UserId,
    body: &DefinitionBody,
    form: &FormValues,
    picked: &BTreeMap<String, Vec<UserId>>,
    state: Option<&ApprovalState>,
    extra: &[UserId],
) -> OrgFacts {
    let access = &v.access;
    let department = access.user(submitter).map(|u| u.department);
    let leaders: Vec<Option<UserId>> = department
        .map(|d| access.department_path(d).iter().map(|d| access.department(*d).and_then(|row| row.leader)).collect())
        .unwrap_or_default();
    let mut roles = BTreeSet::new();
    let mut named: Vec<UserId> = Vec::new();
    let mut heads = BTreeMap::new();
    for (_, _, approvers) in body.approvers() {
        match approvers {
            Approvers::Role { role } => {
                roles.insert(*role);
            }
            Approvers::Users { users } => named.extend(users),
            Approvers::DepartmentHead { department } => {
                heads.insert(*department, access.department(*department).and_then(|row| row.leader));
            }
            _ => {}
        }
    }
    let mut role_members: BTreeMap<_, Vec<UserId>> = BTreeMap::new();
    let mut administrators = Vec::new();
    for (_, grant) in access.grants().filter(|(_, g)| !g.revoked) {
        if roles.contains(&grant.role) {
            let members = role_members.entry(grant.role).or_default();
            if !members.contains(&grant.user) {
                members.push(grant.user);
            }
        }
        let defines =
            access.role(grant.role).is_some_and(|r| !r.retired && r.permissions.contains(&Permission::ApprovalDefine));
        if defines && !administrators.contains(&grant.user) {
            administrators.push(grant.user);
        }
    }
    let assignees: Vec<UserId> = state
        .map(|s| {
            s.tasks.values().filter(|t| t.status.live()).flat_map(|t| [Some(t.assignee), t.owner]).flatten().collect()
        })
        .unwrap_or_default();
    let leader_of: BTreeMap<UserId, UserId> =
        assignees.iter().filter_map(|a| leader_above(access, *a).map(|l| (*a, l))).collect();
    let form_users =
        form.values().filter_map(|value| value.as_str()).filter_map(|s| uuid::Uuid::parse_str(s).ok()).map(UserId);
    let candidates = leaders
        .iter()
        .flatten()
        .copied()
        .chain(role_members.values().flatten().copied())
        .chain(named)
        .chain(heads.values().flatten().copied())
        .chain(picked.values().flatten().copied())
        .chain(form_users)
        .chain(administrators.iter().copied())
        .chain(leader_of.values().copied())
        .chain(assignees)
        .chain(extra.iter().copied())
        .chain([submitter]);
    let active = candidates.filter(|u| access.user(*u).is_some_and(|row| may_act(row.status))).collect();
    let heads = heads.into_iter().filter_map(|(d, leader)| leader.map(|l| (d, l))).collect();
    OrgFacts { department, leaders, role_members, heads, active, administrators, leader_of }
}

/// The environment of a command on approval `id` (its pinned version, the organisation's
/// facts with `form` as the form to route, and the calendar), or `None` if there is no such
/// approval.
#[must_use]
pub fn environment(v: &Views, id: ApprovalId, form: Option<&FormValues>, extra: &[UserId]) -> Option<Environment> {
    let row = v.approvals.get(id)?;
    let pinned = row.state.definition.as_ref()?;
    let definition = v.approvals.definition(pinned.definition_id, Some(pinned.version))?.clone();
    let submitter = row.state.submitter?;
    let form = form.unwrap_or(&row.state.form);
    let org = org_facts(v, submitter, &definition.body, form, &row.state.picked, Some(&row.state), extra);
    Some(Environment { definition, org, calendar: v.approvals.calendar().clone() })
}

/// VALIDATION on the form's range when a leave submission (or resubmission) shares a half day
/// with leave the submitter's other approvals reserved or took on any leave ledger (another
/// leave type, another year). The ledger itself refuses an overlap on its own, race-free;
/// this reads the views, so [`execute`] holds the submitter's subject lock from this check
/// until the views have its events: on one server, two requests of different types sent at
/// the same instant are checked one after the other (on two servers they may both pass).
fn overlaps_other_leave(
    bus: &CommandBus,
    id: ApprovalId,
    binding: &ledger::LedgerBinding,
    command: &ApprovalCommand,
    submitter: UserId,
) -> Result<(), CommandError> {
    let ledger::LedgerBinding::Leave { range_field, .. } = binding else { return Ok(()) };
    let (Act::Submit { form, .. } | Act::Resubmit { form }) = &command.act else { return Ok(()) };
    let Some(range) = form.get(range_field).and_then(|v| oacis_domain::approval::form::date_range(v).ok()) else {
        return Ok(());
    };
    let span = ledger::LeaveSpan::from(range);
    let taken = bus
        .projections()
        .read(|v| v.approvals.leave_of(submitter).into_iter().find(|(other, s)| *other != id && s.overlaps(&span)))
        .map_err(CommandError::Views)?;
    let Some((other, s)) = taken else { return Ok(()) };
    Err(CommandError::Domain(DomainError::Validation(vec![s.overlap_error(other, format!("form.{range_field}"))])))
}

/// Who asks for leave by `command`: the actor of a submission, the first submitter of a
/// resubmission; `None` for any other act or a binding that is not leave.
fn leave_submitter(
    bus: &CommandBus,
    id: ApprovalId,
    binding: &ledger::LedgerBinding,
    command: &ApprovalCommand,
    origin: &Origin,
) -> Result<Option<UserId>, CommandError> {
    match (binding, &command.act) {
        (ledger::LedgerBinding::Leave { .. }, Act::Submit { .. }) => Ok(origin.actor),
        (ledger::LedgerBinding::Leave { .. }, Act::Resubmit { .. }) => bus
            .projections()
            .read(|v| v.approvals.get(id).and_then(|row| row.state.submitter))
            .map_err(CommandError::Views),
        _ => Ok(None),
    }
}

/// Executes `command` on approval `id`: with the ledger step its definition's binding implies
/// (the approval and its leave or budget appended together), or alone.
///
/// # Errors
/// As [`CommandBus::execute_steps`]; a budget binding for a submitter without a department.
pub async fn execute(
    bus: &CommandBus,
    id: ApprovalId,
    command: ApprovalCommand,
    origin: &Origin,
) -> Result<Executed, CommandError> {
    let Some(binding) = command.env.definition.body.ledger.clone() else {
        return bus.execute::<Approval>(id.stream(), command, origin).await;
    };
    let asking = leave_submitter(bus, id, &binding, &command, origin)?;
    let _asking = match asking {
        Some(user) => Some(bus.lock_subject(&format!("leave of {user}")).await),
        None => None,
    };
    if let Some(user) = asking {
        overlaps_other_leave(bus, id, &binding, &command, user)?;
    }
    let (submitter, department, submitted_at) = match &command.act {
        Act::Submit { .. } => (origin.actor, command.env.org.department, bus.now()),
        _ => {
            let row = bus
                .projections()
                .read(|v| v.approvals.get(id).map(|row| row.state.clone()))
                .map_err(CommandError::Views)?;
            let state = row.unwrap_or_default();
            (state.submitter, state.department, state.submitted_at)
        }
    };
    let submitter =
        submitter.ok_or_else(|| CommandError::Domain(DomainError::Rule("an approval needs an acting user".into())))?;
    let (key, _) = ledger::ledger_key(&binding, submitter, department, submitted_at)?;
    let field = match &binding {
        ledger::LedgerBinding::Leave { range_field, .. } => range_field.clone(),
        ledger::LedgerBinding::Budget { amount_field, .. } => amount_field.clone(),
    };
    let calendar = command.env.calendar.clone();
    let locked = key.clone();
    let follow: Follow<Approval, Ledger> = Arc::new(move |state, events| {
        let commands = ledger::follow(&binding, state, events, &calendar)?;
        let submitter = state.submitter.unwrap_or(submitter);
        let (key, _) = ledger::ledger_key(&binding, submitter, state.department, state.submitted_at)?;
        if key != locked {
            return Err(DomainError::Rule("the year changed while deciding; submit again".into()));
        }
        Ok(commands)
    });
    let steps = vec![then::<Approval, Ledger>(id.stream(), command, LedgerId::of(&key).stream(), follow)];
    // The ledger refuses an `amount`; to the submitter that is the form's field.
    bus.execute_steps(steps, origin).await.map_err(|e| match e {
        CommandError::Domain(DomainError::Validation(mut errors)) => {
            for error in &mut errors {
                if error.field == "amount" || error.field == "span" {
                    error.field = format!("form.{field}");
                }
            }
            CommandError::Domain(DomainError::Validation(errors))
        }
        other => other,
    })
}

/// Applies every due time passed by `now`: one `Tick` per approval concerned, as the system.
/// Returns the events written. An approval whose tick fails is logged and left for the next
/// call (its due task stays in the view's due list).
///
/// # Errors
/// The views cannot be read.
pub async fn tick_due(bus: &CommandBus, now: Timestamp) -> Result<usize, ProjectionError> {
    let due = bus.projections().read(|v| v.approvals.due_by(now))?;
    let mut written = 0;
    for id in due {
        let Some(env) = bus.projections().read(|v| environment(v, id, None, &[]))? else { continue };
        let command = ApprovalCommand { act: Act::Tick, env };
        match execute(bus, id, command, &Origin::system()).await {
            Ok(executed) => written += executed.events,
            Err(e) => {
                tracing::warn!(approval = %id, error = %e, "a due approval task could not be handled; retried later")
            }
        }
    }
    Ok(written)
}
