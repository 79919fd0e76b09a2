//! Service cases and tasks: lists scoped per record, one record (now or as of a past seq),
//! and every command as a mutation.
//!
//! Scope: a task is the assignee's record (owner = assignee, in the assignee's department);
//! a case belongs to its customer's department and to its assignee (or, unassigned, to the
//! customer's owner).

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, SimpleObject};
use oacis_domain::authz::{Permission, Resource};
use oacis_domain::case::{CaseCommand, CaseState, ServiceCase};
use oacis_domain::ids::{CaseId, CustomerId, EntryId, TaskId, UserId};
use oacis_domain::task::{Related, Task, TaskCommand, TaskState};
use oacis_domain::FieldCode;
use oacis_projections::views::access::AccessDirectory;
use oacis_projections::views::cases::{CaseFilter, CaseRow};
use oacis_projections::views::directory::CustomerDirectory;
use oacis_projections::views::tasks::TaskRow;
use oacis_projections::Views;

use super::error::{ApiError, ApiResult};
use super::scalars::{
    parse_id, parse_optional_time, time_text, CaseStatus, InteractionChannel, MutationResult, Priority, TaskStatus,
};
use super::{app, caller, connection, execute, origin, views, Counted};
use crate::access::{resource, Caller};

/// A service case.
#[derive(SimpleObject, Debug, Clone)]
pub struct CaseNode {
    /// Id.
    pub id: String,
    /// The customer.
    pub customer: String,
    /// Subject (absent in as-of reads).
    pub subject: Option<String>,
    /// Status.
    pub status: CaseStatus,
    /// Priority.
    pub priority: Option<Priority>,
    /// Assignee id.
    pub assignee: Option<String>,
    /// When opened.
    pub opened_at: Option<String>,
    /// First response.
    pub first_response_at: Option<String>,
    /// When last resolved (RFC 3339); kept when the case is reopened, so `status` says whether
    /// the resolution stands.
    pub resolved_at: Option<String>,
    /// Follow-up due.
    pub follow_up_at: Option<String>,
    /// Satisfaction, 1 to 5, with the current resolution; null once the case is reopened.
    pub satisfaction: Option<u8>,
}

impl From<&CaseRow> for CaseNode {
    fn from(c: &CaseRow) -> Self {
        CaseNode {
            id: c.id.to_string(),
            customer: c.customer.to_string(),
            subject: Some(c.subject.clone()),
            status: c.status.into(),
            priority: Some(c.priority.into()),
            assignee: c.assignee.map(|a| a.to_string()),
            opened_at: Some(time_text(c.opened_at)),
            first_response_at: c.first_response_at.map(time_text),
            resolved_at: c.resolved_at.map(time_text),
            follow_up_at: c.follow_up_at.map(time_text),
            satisfaction: c.satisfaction,
        }
    }
}

impl CaseNode {
    fn from_state(id: CaseId, s: &CaseState) -> Self {
        CaseNode {
            id: id.to_string(),
            customer: s.customer.map(|c| c.to_string()).unwrap_or_default(),
            subject: None,
            status: s.status.into(),
            priority: s.priority.map(Into::into),
            assignee: s.assignee.map(|a| a.to_string()),
            opened_at: s.opened_at.map(time_text),
            first_response_at: s.first_response_at.map(time_text),
            resolved_at: s.resolved_at.map(time_text),
            follow_up_at: s.follow_up_at.map(time_text),
            satisfaction: None,
        }
    }
}

/// A task.
#[derive(SimpleObject, Debug, Clone)]
pub struct TaskNode {
    /// Id.
    pub id: String,
    /// Title (absent in as-of reads).
    pub title: Option<String>,
    /// Status.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Option<Priority>,
    /// Assignee id.
    pub assignee: Option<String>,
    /// Due (RFC 3339).
    pub due: Option<String>,
    /// Reminder (RFC 3339).
    pub reminder: Option<String>,
    /// The related customer, if any.
    pub related_customer: Option<String>,
    /// The related case, if any.
    pub related_case: Option<String>,
    /// Comments so far.
    pub comments: u64,
}

impl From<&TaskRow> for TaskNode {
    fn from(t: &TaskRow) -> Self {
        let (related_customer, related_case) = related(t.related);
        TaskNode {
            id: t.id.to_string(),
            title: Some(t.title.clone()),
            status: t.status.into(),
            priority: Some(t.priority.into()),
            assignee: Some(t.assignee.to_string()),
            due: t.due.map(time_text),
            reminder: t.reminder.map(time_text),
            related_customer,
            related_case,
            comments: u64::try_from(t.comments).unwrap_or(u64::MAX),
        }
    }
}

impl TaskNode {
    fn from_state(id: TaskId, s: &TaskState) -> Self {
        TaskNode {
            id: id.to_string(),
            title: None,
            status: s.status.into(),
            priority: s.priority.map(Into::into),
            assignee: s.assignee.map(|a| a.to_string()),
            due: s.due.map(time_text),
            reminder: s.reminder.map(time_text),
            related_customer: None,
            related_case: None,
            comments: u64::try_from(s.comments.len()).unwrap_or(u64::MAX),
        }
    }
}

fn related(r: Option<Related>) -> (Option<String>, Option<String>) {
    match r {
        Some(Related::Customer(c)) => (Some(c.to_string()), None),
        Some(Related::Case(c)) => (None, Some(c.to_string())),
        None => (None, None),
    }
}

/// The resource a task is: its assignee's.
fn task_resource(access: &AccessDirectory, assignee: UserId) -> Resource {
    resource(access, Some(assignee), access.user(assignee).map(|u| u.department))
}

/// The resource a case is: its customer's department, owned by its assignee (or, while
/// unassigned, by the customer's owner).
fn case_resource(
    access: &AccessDirectory,
    directory: &CustomerDirectory,
    customer: CustomerId,
    assignee: Option<UserId>,
) -> Resource {
    let row = directory.resolve(customer);
    resource(access, assignee.or(row.map(|r| r.owner)), row.map(|r| r.department))
}

pub(crate) fn case_of(views: &Views, caller: &Caller, id: CaseId) -> Option<(CaseRow, Resource)> {
    let row = views.cases.get(id)?;
    let resource = case_resource(&views.access, &views.directory, row.customer, row.assignee);
    caller.may(Permission::CaseRead, &resource).then(|| (row.clone(), resource))
}

/// Whether `assignee` may read what a task relates to: a task that points at a customer or a
/// case its assignee cannot see is of no use to them (and would show them an id they may not
/// open).
fn assignee_may_see(views: &Views, assignee: UserId, related: Related) -> bool {
    let Some(principal) = views.access.principal(assignee) else { return false };
    let them = Caller {
        user: assignee,
        session: EntryId(uuid::Uuid::nil()),
        principal,
        must_change_password: false,
        anonymous: false,
    };
    match related {
        Related::Customer(id) => views.directory.get(id).is_some_and(|row| {
            them.may(Permission::CustomerRead, &resource(&views.access, Some(row.owner), Some(row.department)))
        }),
        Related::Case(id) => case_of(views, &them, id).is_some(),
    }
}

/// VALIDATION on `assignee` unless the assignee may read `related` ([`assignee_may_see`]), what
/// the `work` (a task, a case) is about.
fn check_assignee_sees(ctx: &Context<'_>, assignee: UserId, related: Option<Related>, work: &str) -> ApiResult<()> {
    let Some(related) = related else { return Ok(()) };
    if views(ctx, |v| assignee_may_see(v, assignee, related))? {
        return Ok(());
    }
    let what = match related {
        Related::Customer(_) => "customer",
        Related::Case(_) => "case",
    };
    Err(ApiError::field(
        "assignee",
        FieldCode::InvalidFormat,
        format!("may not see the {work}'s {what} (their roles do not reach it): give it to someone who may"),
    ))
}

pub(crate) fn task_of(views: &Views, caller: &Caller, id: TaskId) -> Option<(TaskRow, Resource)> {
    let row = views.tasks.get(id)?;
    let resource = task_resource(&views.access, row.assignee);
    caller.may(Permission::TaskRead, &resource).then(|| (row.clone(), resource))
}

/// Case and task queries.
#[derive(Default, Debug)]
pub struct WorkQuery;

#[Object]
impl WorkQuery {
    /// Service cases the caller may see, most urgent first, then oldest.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn cases(
        &self,
        ctx: &Context<'_>,
        status: Option<CaseStatus>,
        assignee: Option<String>,
        priority: Option<Priority>,
        customer: Option<String>,
        overdue_follow_up: Option<bool>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, CaseNode, Counted>> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::CaseRead)?;
        let filter = CaseFilter {
            status: status.map(Into::into),
            assignee: assignee.as_deref().map(|a| parse_id("assignee", a).map(UserId)).transpose()?,
            priority: priority.map(Into::into),
            customer: customer.as_deref().map(|c| parse_id("customer", c).map(CustomerId)).transpose()?,
        };
        let now = app(ctx)?.bus.now();
        let rows = views(ctx, |v| {
            let overdue: Option<std::collections::BTreeSet<CaseId>> = overdue_follow_up
                .filter(|o| *o)
                .map(|_| v.cases.overdue_follow_ups(now).iter().map(|c| c.id).collect());
            v.cases
                .list(&filter)
                .into_iter()
                .filter(|c| overdue.as_ref().is_none_or(|o| o.contains(&c.id)))
                .filter(|c| {
                    caller.may(Permission::CaseRead, &case_resource(&v.access, &v.directory, c.customer, c.assignee))
                })
                .map(CaseNode::from)
                .collect::<Vec<_>>()
        })?;
        connection(rows, |c| c.id.clone(), first, after)
    }

    /// One case; `asOfSeq` (or `asOf`, RFC 3339) folds its stream up to that point.
    async fn case(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of_seq: Option<u64>,
        as_of: Option<String>,
    ) -> ApiResult<CaseNode> {
        let caller = caller(ctx)?;
        let id = CaseId(parse_id("id", &id)?);
        let (row, _) = views(ctx, |v| case_of(v, caller, id))?.ok_or(ApiError::NotFound("case"))?;
        match super::as_of(ctx, as_of_seq, as_of.as_deref()).await? {
            None => Ok(CaseNode::from(&row)),
            Some(seq) => {
                let store = app(ctx)?.bus.store();
                let stream = oacis_eventlog::StreamId::new(id.stream()).map_err(ApiError::internal)?;
                let past = oacis_projections::state_as_of::<ServiceCase, _>(store, &stream, seq).await?;
                Ok(CaseNode::from_state(id, &past))
            }
        }
    }

    /// Tasks the caller may see: its own by default, or `assignee`'s; optionally only
    /// overdue ones or those whose reminder falls due within `remindWithinMinutes`.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        assignee: Option<String>,
        status: Option<TaskStatus>,
        overdue: Option<bool>,
        remind_within_minutes: Option<i32>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, TaskNode, Counted>> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::TaskRead)?;
        let assignee = match assignee {
            Some(a) => UserId(parse_id("assignee", &a)?),
            None => caller.user,
        };
        let now = app(ctx)?.bus.now();
        let window = remind_within_minutes.map(|m| now.plus_minutes(i64::from(m.max(0))));
        let rows = views(ctx, |v| {
            let base: Vec<&TaskRow> = match (overdue, window) {
                (Some(true), _) => v.tasks.overdue(now),
                (_, Some(until)) => v.tasks.reminders_due(now, until),
                _ => v.tasks.of_assignee(assignee, status.map(Into::into)),
            };
            base.into_iter()
                .filter(|t| t.assignee == assignee && status.is_none_or(|s| t.status == s.into()))
                .filter(|t| caller.may(Permission::TaskRead, &task_resource(&v.access, t.assignee)))
                .map(TaskNode::from)
                .collect::<Vec<_>>()
        })?;
        connection(rows, |t| t.id.clone(), first, after)
    }

    /// One task; `asOfSeq` (or `asOf`, RFC 3339) folds its stream up to that point.
    async fn task(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of_seq: Option<u64>,
        as_of: Option<String>,
    ) -> ApiResult<TaskNode> {
        let caller = caller(ctx)?;
        let id = TaskId(parse_id("id", &id)?);
        let (row, _) = views(ctx, |v| task_of(v, caller, id))?.ok_or(ApiError::NotFound("task"))?;
        match super::as_of(ctx, as_of_seq, as_of.as_deref()).await? {
            None => Ok(TaskNode::from(&row)),
            Some(seq) => {
                let store = app(ctx)?.bus.store();
                let stream = oacis_eventlog::StreamId::new(id.stream()).map_err(ApiError::internal)?;
                let past = oacis_projections::state_as_of::<Task, _>(store, &stream, seq).await?;
                Ok(TaskNode::from_state(id, &past))
            }
        }
    }
}

/// A command on an existing case the caller may read, needing `permission` over it.
async fn on_case(
    ctx: &Context<'_>,
    id: &str,
    permission: Permission,
    command: impl FnOnce(&super::scalars::MutationKey) -> CaseCommand,
    key: Option<String>,
) -> ApiResult<MutationResult> {
    let caller = caller(ctx)?;
    let id = CaseId(parse_id("id", id)?);
    let (_, resource) = views(ctx, |v| case_of(v, caller, id))?.ok_or(ApiError::NotFound("case"))?;
    caller.require(permission, &resource)?;
    let command = command(&super::scalars::MutationKey(origin(ctx, key.clone())?));
    execute::<ServiceCase>(ctx, id, id.stream(), command, key).await
}

/// A command on an existing task the caller may read, needing `permission` over it.
async fn on_task(
    ctx: &Context<'_>,
    id: &str,
    permission: Permission,
    command: impl FnOnce(&super::scalars::MutationKey) -> TaskCommand,
    key: Option<String>,
) -> ApiResult<MutationResult> {
    let caller = caller(ctx)?;
    let id = TaskId(parse_id("id", id)?);
    let (_, resource) = views(ctx, |v| task_of(v, caller, id))?.ok_or(ApiError::NotFound("task"))?;
    caller.require(permission, &resource)?;
    let command = command(&super::scalars::MutationKey(origin(ctx, key.clone())?));
    execute::<Task>(ctx, id, id.stream(), command, key).await
}

fn user_in_directory(ctx: &Context<'_>, field: &str, id: &str) -> ApiResult<UserId> {
    let user = UserId(parse_id(field, id)?);
    if views(ctx, |v| v.access.user(user).is_some())? {
        Ok(user)
    } else {
        Err(ApiError::field(field, FieldCode::InvalidFormat, "no such user"))
    }
}

/// Case and task mutations.
#[derive(Default, Debug)]
pub struct WorkMutation;

#[Object]
impl WorkMutation {
    /// Opens a service case for a customer the caller may see.
    #[allow(clippy::too_many_arguments)]
    async fn open_case(
        &self,
        ctx: &Context<'_>,
        customer: String,
        subject: String,
        description: String,
        channel: InteractionChannel,
        priority: Priority,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        let customer = CustomerId(parse_id("customer", &customer)?);
        let resource = views(ctx, |v| {
            let row = v.directory.get(customer)?;
            let read = resource(&v.access, Some(row.owner), Some(row.department));
            caller.may(Permission::CustomerRead, &read).then(|| case_resource(&v.access, &v.directory, customer, None))
        })?
        .ok_or(ApiError::NotFound("customer"))?;
        caller.require(Permission::CaseWrite, &resource)?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let id = CaseId(origin.new_id("case"));
        let command = CaseCommand::Open {
            id,
            customer,
            subject,
            description,
            channel: channel.into(),
            priority: priority.into(),
        };
        execute::<ServiceCase>(ctx, id, id.stream(), command, client_mutation_id).await
    }

    /// Assigns a case (`case.assign`).
    async fn assign_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        assignee: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let assignee = user_in_directory(ctx, "assignee", &assignee)?;
        // A case's assignee reads it (and its notes) as their own: only someone who may read
        // its customer is given it.
        let customer = views(ctx, |v| {
            case_of(v, caller(ctx)?, CaseId(parse_id("id", &id)?))
                .map(|(row, _)| row.customer)
                .ok_or(ApiError::NotFound("case"))
        })??;
        check_assignee_sees(ctx, assignee, Some(Related::Customer(customer)), "case")?;
        on_case(ctx, &id, Permission::CaseAssign, |_| CaseCommand::Assign { assignee }, client_mutation_id).await
    }

    /// Answers the customer.
    async fn respond_to_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        message: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Respond { message }, client_mutation_id).await
    }

    /// Puts a case on hold.
    async fn hold_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Hold { reason }, client_mutation_id).await
    }

    /// Marks a case resolved.
    async fn resolve_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        resolution: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Resolve { resolution }, client_mutation_id).await
    }

    /// Closes a resolved case.
    async fn close_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Close, client_mutation_id).await
    }

    /// Reopens a resolved or closed case.
    async fn reopen_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Reopen { reason }, client_mutation_id).await
    }

    /// Sets (or, without `at`, clears) when to follow up (RFC 3339).
    async fn set_case_follow_up(
        &self,
        ctx: &Context<'_>,
        id: String,
        at: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let at = parse_optional_time("at", at.as_deref())?;
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::SetFollowUp { at }, client_mutation_id).await
    }

    /// Records the customer's satisfaction, 1 (poor) to 5 (excellent).
    async fn rate_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        score: u8,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_case(ctx, &id, Permission::CaseWrite, |_| CaseCommand::Rate { score, comment }, client_mutation_id).await
    }

    /// Creates a task for the caller, or for `assignee` (`task.assign` over the assignee).
    #[allow(clippy::too_many_arguments)]
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        title: String,
        description: Option<String>,
        priority: Priority,
        assignee: Option<String>,
        due: Option<String>,
        reminder: Option<String>,
        related_customer: Option<String>,
        related_case: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        let assignee = match assignee {
            Some(a) => user_in_directory(ctx, "assignee", &a)?,
            None => caller.user,
        };
        let resource = views(ctx, |v| task_resource(&v.access, assignee))?;
        caller.require(Permission::TaskWrite, &resource)?;
        if assignee != caller.user {
            caller.require(Permission::TaskAssign, &resource)?;
        }
        let related = match (related_customer, related_case) {
            (Some(c), None) => {
                let id = CustomerId(parse_id("relatedCustomer", &c)?);
                let readable = views(ctx, |v| {
                    v.directory.get(id).is_some_and(|row| {
                        caller.may(
                            Permission::CustomerRead,
                            &crate::access::resource(&v.access, Some(row.owner), Some(row.department)),
                        )
                    })
                })?;
                if !readable {
                    return Err(ApiError::NotFound("customer"));
                }
                Some(Related::Customer(id))
            }
            (None, Some(c)) => {
                let id = CaseId(parse_id("relatedCase", &c)?);
                if views(ctx, |v| case_of(v, caller, id))?.is_none() {
                    return Err(ApiError::NotFound("case"));
                }
                Some(Related::Case(id))
            }
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "relatedCase",
                    FieldCode::InvalidFormat,
                    "relate a customer or a case, not both",
                ))
            }
        };
        check_assignee_sees(ctx, assignee, related, "task")?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let id = TaskId(origin.new_id("task"));
        let command = TaskCommand::Create {
            id,
            title,
            description,
            priority: priority.into(),
            assignee,
            due: parse_optional_time("due", due.as_deref())?,
            reminder: parse_optional_time("reminder", reminder.as_deref())?,
            related,
        };
        execute::<Task>(ctx, id, id.stream(), command, client_mutation_id).await
    }

    /// Gives a task to someone else (`task.assign`).
    async fn reassign_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        assignee: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let assignee = user_in_directory(ctx, "assignee", &assignee)?;
        let task = TaskId(super::scalars::parse_id("id", &id)?);
        // Only of a task the caller may see (else `on_task` answers NOT_FOUND, as for none).
        let me = caller(ctx)?;
        let related = views(ctx, |v| task_of(v, me, task).and_then(|(row, _)| row.related))?;
        check_assignee_sees(ctx, assignee, related, "task")?;
        on_task(ctx, &id, Permission::TaskAssign, |_| TaskCommand::Reassign { assignee }, client_mutation_id).await
    }

    /// Starts work on a task.
    async fn start_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::Start, client_mutation_id).await
    }

    /// Completes a task.
    async fn complete_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::Complete, client_mutation_id).await
    }

    /// Reopens a done or cancelled task.
    async fn reopen_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::Reopen, client_mutation_id).await
    }

    /// Cancels a task.
    async fn cancel_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::Cancel { reason }, client_mutation_id).await
    }

    /// Comments on a task.
    async fn comment_on_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        text: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(
            ctx,
            &id,
            Permission::TaskWrite,
            |k| TaskCommand::Comment { id: EntryId(k.new_id("comment")), text },
            client_mutation_id,
        )
        .await
    }

    /// Changes a task's priority.
    async fn change_task_priority(
        &self,
        ctx: &Context<'_>,
        id: String,
        priority: Priority,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        on_task(
            ctx,
            &id,
            Permission::TaskWrite,
            |_| TaskCommand::ChangePriority { priority: priority.into() },
            client_mutation_id,
        )
        .await
    }

    /// Changes (or, without `due`, clears) a task's due time (RFC 3339).
    async fn change_task_due(
        &self,
        ctx: &Context<'_>,
        id: String,
        due: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let due = parse_optional_time("due", due.as_deref())?;
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::ChangeDue { due }, client_mutation_id).await
    }

    /// Sets (or, without `reminder`, clears) a task's reminder (RFC 3339).
    async fn set_task_reminder(
        &self,
        ctx: &Context<'_>,
        id: String,
        reminder: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let reminder = parse_optional_time("reminder", reminder.as_deref())?;
        on_task(ctx, &id, Permission::TaskWrite, |_| TaskCommand::SetReminder { reminder }, client_mutation_id).await
    }
}
