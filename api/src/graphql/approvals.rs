//! Approvals (流程审批): definitions, the lists people work from, one approval with its
//! tasks and timeline, and every operation as a mutation.
//!
//! Visibility: an approval is seen by its participants (the submitter, anyone who held or
//! holds one of its tasks, anyone copied) and by holders of `approval.audit` over the
//! submitter (owner) and the submitter's department at submission; to anyone else it does not
//! exist (NOT_FOUND). Definitions are read by every signed-in user (to fill in their forms)
//! and published with `approval.define`.
//!
//! Every operation goes through [`act_on`]: the approval's pinned definition version and the
//! organisation's facts (leaders up the submitter's department path, role members, who may
//! act, the approval administrators) are read from the views and handed to the domain, which
//! decides; the command bus appends with the expected version, so of two racing decisions the
//! second is decided again against the new state.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Json, Object, SimpleObject};
use oacis_domain::approval::calendar::{CalendarCommand, CalendarDay, CalendarYear};
use oacis_domain::approval::definition::{
    Definition, DefinitionBody, DefinitionCommand, FieldAccess, PublishedDefinition,
};
use oacis_domain::approval::form::FormValues;
use oacis_domain::approval::instance::{Act, ApprovalCommand, ApprovalEvent, Environment};
use oacis_domain::approval::ledger::{self, Ledger, LedgerCommand, LedgerUnit};
use oacis_domain::authz::Permission;
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, CalendarYearId, DepartmentId, LedgerId, UserId};
use oacis_domain::{DomainEvent, FieldCode};
use oacis_projections::views::approvals::{ApprovalList, ApprovalRow};
use oacis_projections::Views;

use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, time_text, MutationResult};
use super::{app, caller, connection_of, execute, origin, views, Counted};
use crate::access::{resource, Caller};
use crate::attachments::Attachments;

/// Where an approval stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "oacis_domain::approval::instance::ApprovalStatus")]
pub enum ApprovalStatus {
    /// Not submitted.
    Absent,
    /// Waiting for approvers.
    Running,
    /// Returned to the submitter.
    Returned,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Cancelled by the submitter.
    Cancelled,
}

/// Where an approval task stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "oacis_domain::approval::instance::TaskStatus")]
pub enum ApprovalTaskStatus {
    /// Its assignee may act.
    Running,
    /// Waiting for signers added before it.
    Waiting,
    /// A signer added after a task, waiting for that task's approval.
    Queued,
    /// Approved, waiting for the signers added after it.
    Approving,
    /// Worked by a delegate.
    Delegated,
    /// Approved.
    Approved,
    /// Passed by a routing rule.
    AutoApproved,
    /// Rejected.
    Rejected,
    /// Returned.
    Returned,
    /// Its approval was taken back.
    Withdrawn,
    /// Ended without a decision.
    Cancelled,
}

/// Whether added signers approve before or after the task they are added to.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "oacis_domain::approval::instance::SignKind")]
pub enum SignKind {
    /// 前加签: they approve first; the task waits.
    Before,
    /// 后加签: they approve after the task's assignee; the approval counts once they have.
    After,
}

/// Which of the caller's lists.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ApprovalListKind {
    /// With a task of the caller's waiting (待办).
    Inbox,
    /// Where the caller decided a task (已办).
    Done,
    /// Submitted by the caller (我发起的).
    Submitted,
    /// The caller was copied (抄送我的).
    Copied,
    /// Every approval the caller may audit (`approval.audit`, in scope).
    All,
}

/// A published definition version.
#[derive(SimpleObject, Debug, Clone)]
pub struct ApprovalDefinitionNode {
    /// The definition's id (the same for all its versions).
    pub id: String,
    /// 1, 2, ...
    pub version: u32,
    /// BLAKE3 of the version's body (its JSON bytes), 64 hex digits.
    pub hash: String,
    /// Its name.
    pub name: String,
    /// The whole body: `{name, form: [fields], nodes: [nodes]}` (see README, "Approvals").
    pub body: Json<serde_json::Value>,
}

impl From<&PublishedDefinition> for ApprovalDefinitionNode {
    fn from(d: &PublishedDefinition) -> Self {
        ApprovalDefinitionNode {
            id: d.definition_id.to_string(),
            version: d.version,
            hash: d.hash.clone(),
            name: d.body.name.clone(),
            body: Json(serde_json::to_value(&d.body).unwrap_or_default()),
        }
    }
}

/// One task of an approval.
#[derive(SimpleObject, Debug, Clone)]
pub struct ApprovalTaskNode {
    /// Its number within the approval (1, 2, ...): the `task` argument of the operations.
    pub number: u32,
    /// The node it belongs to.
    pub node: String,
    /// Who acts on it (user id).
    pub assignee: String,
    /// Who it comes back to while delegated.
    pub owner: Option<String>,
    /// Where it stands.
    pub status: ApprovalTaskStatus,
    /// For an added signer: before or after its parent.
    pub sign: Option<SignKind>,
    /// The task a signer was added to.
    pub parent: Option<u32>,
    /// When it falls due (RFC 3339), where its node says.
    pub due: Option<String>,
    /// Whether its due time was handled.
    pub timed_out: bool,
}

/// One year's published working calendar.
#[derive(SimpleObject, Debug, Clone)]
pub struct WorkingCalendarYear {
    /// The year.
    pub year: u16,
    /// 1, 2, ... (a year published again, corrected).
    pub version: u32,
    /// BLAKE3 of its days' JSON bytes.
    pub hash: String,
    /// Its listed dates: `[{date, off, name}]`.
    pub days: Json<serde_json::Value>,
    /// Where they come from.
    pub papers: Vec<String>,
}

/// Figures of one node of one definition, over the approvals in the caller's audit scope.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct ApprovalNodeFigures {
    /// The definition.
    pub definition_id: String,
    /// Its name.
    pub definition_name: String,
    /// The node.
    pub node: String,
    /// Running approvals waiting at it now.
    pub open: u64,
    /// How long the oldest of them has waited there, in seconds.
    pub oldest_open_seconds: Option<i64>,
    /// Of them, those with a task past its due time.
    pub overdue: u64,
    /// Times the node passed.
    pub passed: u64,
    /// Mean time from entering the node to passing it, in seconds.
    pub mean_seconds_to_pass: Option<i64>,
}

/// A stored attachment: what a form's attachment field holds.
#[derive(SimpleObject, Debug, Clone)]
pub struct AttachmentNode {
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes, 64 hex digits.
    pub blake3: String,
}

/// An attachment's bytes.
#[derive(SimpleObject, Debug, Clone)]
pub struct AttachmentContent {
    /// The file's name, as the form names it.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes.
    pub blake3: String,
    /// The bytes, in base64 (RFC 4648).
    pub content_base64: String,
}

/// What [`ApprovalNodeFigures`] are summed from.
#[derive(Debug, Default)]
struct Tally {
    name: String,
    open: u64,
    oldest: Option<i64>,
    overdue: u64,
    passed: u64,
    micros_to_pass: i64,
}

/// What a ledger counts.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LedgerKind {
    /// A user's leave of one type, in half days.
    Leave,
    /// A department's budget of one category, in fen.
    Budget,
}

/// A leave balance or a budget.
#[derive(SimpleObject, Debug, Clone)]
pub struct LedgerNode {
    /// Its key: `leave/{user}/{type}/{year}` or `budget/{department}/{category}/{year}`.
    pub key: String,
    /// `half_days` or `fen`.
    pub unit: String,
    /// Credits less debits.
    pub credited: i64,
    /// Taken by approved approvals.
    pub taken: i64,
    /// Reserved by running approvals.
    pub reserved: i64,
    /// What is left to reserve: credited - taken - reserved.
    pub available: i64,
    /// Every entry, oldest first.
    pub entries: Vec<ApprovalTimelineEntry>,
}

/// The key of `kind`'s ledger for `owner` (a user for leave, a department for a budget).
fn ledger_key(kind: LedgerKind, owner: &str, category: &str, year: u16) -> ApiResult<(String, LedgerUnit, uuid::Uuid)> {
    let owner = parse_id("owner", owner)?;
    Ok(match kind {
        LedgerKind::Leave => (ledger::leave_key(UserId(owner), category, year), LedgerUnit::HalfDays, owner),
        LedgerKind::Budget => (ledger::budget_key(DepartmentId(owner), category, year), LedgerUnit::Fen, owner),
    })
}

/// One entry of an approval's timeline.
#[derive(SimpleObject, Debug, Clone)]
pub struct ApprovalTimelineEntry {
    /// Position in the log.
    pub seq: u64,
    /// When it was recorded (RFC 3339).
    pub at: String,
    /// Who acted, as the log records it (user id or `system`).
    pub actor: String,
    /// The event's kind, e.g. `ApprovalTaskApproved`.
    pub kind: String,
    /// The event's payload: task, by, comment, form hash, approvers resolved, reasons.
    pub detail: Json<serde_json::Value>,
}

/// An approval.
#[derive(SimpleObject, Debug, Clone)]
pub struct ApprovalNode {
    /// Id.
    pub id: String,
    /// The definition's name.
    pub name: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Who submitted it (user id).
    pub submitter: String,
    /// The submitter's department at submission.
    pub department: Option<String>,
    /// The definition it runs on.
    pub definition_id: String,
    /// The version it runs on.
    pub definition_version: u32,
    /// That version's BLAKE3 hash.
    pub definition_hash: String,
    /// The form as it stands (as submitted, with approvers' changes to writable fields),
    /// without the fields hidden from the caller at every node where they approve.
    pub form: Json<serde_json::Value>,
    /// BLAKE3 of the form's bytes (empty for a caller from whom a field is hidden).
    pub form_hash: String,
    /// The node ids its form routes through, in order.
    pub route: Vec<String>,
    /// The current node (while running).
    pub current_node: Option<String>,
    /// The caller's tasks waiting on it (numbers).
    pub my_tasks: Vec<u32>,
    /// Every task, oldest first.
    pub tasks: Vec<ApprovalTaskNode>,
    /// When submitted (RFC 3339).
    pub submitted_at: String,
    /// When last changed (RFC 3339).
    pub updated_at: String,
    /// Everything that happened, oldest first.
    pub timeline: Vec<ApprovalTimelineEntry>,
}

/// How an approval's stream name begins (`ApprovalId::stream`: `approval-<uuid>`).
pub(crate) const STREAM_PREFIX: &str = "approval-";

/// Takes out of an approval event's `payload` (a record of `stream`) the form fields
/// `caller` may not see on that approval ([`hidden_fields`]), and blanks its form hash when
/// any is: the log read as an audit trail (`events`, the events feed) shows an approver no
/// more than the approval itself does. Records of other streams are left as they are.
pub(crate) fn hide_in_payload(v: &Views, caller: &Caller, stream: &str, payload: &mut serde_json::Value) {
    let Some(id) = stream.strip_prefix(STREAM_PREFIX).and_then(|s| uuid::Uuid::parse_str(s).ok()) else { return };
    let Some(row) = v.approvals.get(ApprovalId(id)) else { return };
    let hidden = hidden_fields(v, caller, row);
    if hidden.is_empty() {
        return;
    }
    if let Some(form) = payload.get_mut("form").and_then(serde_json::Value::as_object_mut) {
        form.retain(|name, _| !hidden.contains(name));
    }
    if let Some(hash) = payload.get_mut("form_hash") {
        *hash = serde_json::Value::String(String::new());
    }
}

/// The form fields `caller` may not see on `row`: for an approver, those hidden at every
/// node where they hold or held a task, whatever else they may see; for someone only copied,
/// those hidden at any node (a copy never shows more than the approvers see). The submitter,
/// and auditors who approve nothing of it, see every field.
fn hidden_fields(v: &Views, caller: &Caller, row: &ApprovalRow) -> BTreeSet<String> {
    let s = &row.state;
    if s.submitter == Some(caller.user) {
        return BTreeSet::new();
    }
    let audits = || caller.may(Permission::ApprovalAudit, &resource(&v.access, s.submitter, s.department));
    let nodes: BTreeSet<&str> = s
        .tasks
        .values()
        .filter(|t| t.assignee == caller.user || t.owner == Some(caller.user))
        .map(|t| t.node.as_str())
        .collect();
    let Some(body) =
        s.definition.as_ref().and_then(|d| v.approvals.definition(d.definition_id, Some(d.version))).map(|d| &d.body)
    else {
        return BTreeSet::new();
    };
    if nodes.is_empty() {
        if audits() {
            return BTreeSet::new();
        }
        return body
            .form
            .iter()
            .filter(|f| s.route.iter().any(|n| body.access(n, &f.name) == FieldAccess::Hidden))
            .map(|f| f.name.clone())
            .collect();
    }
    body.form
        .iter()
        .filter(|f| nodes.iter().all(|n| body.access(n, &f.name) == FieldAccess::Hidden))
        .map(|f| f.name.clone())
        .collect()
}

/// `value` (a form, or an event payload holding one under `form`) without `hidden` fields,
/// and without the form's hash, which would let short hidden values be guessed.
fn masked(mut value: serde_json::Value, hidden: &BTreeSet<String>) -> serde_json::Value {
    if !hidden.is_empty() {
        if let Some(payload) = value.as_object_mut() {
            payload.remove("form_hash");
        }
        let form = match value.get_mut("form") {
            Some(inner) => inner,
            None => &mut value,
        };
        if let Some(fields) = form.as_object_mut() {
            fields.retain(|name, _| !hidden.contains(name));
        }
    }
    value
}

fn node_of(v: &Views, row: &ApprovalRow, caller: &Caller) -> ApprovalNode {
    let hidden = hidden_fields(v, caller, row);
    let caller = caller.user;
    let s = &row.state;
    let definition = s.definition.clone();
    ApprovalNode {
        id: row.id.to_string(),
        name: row.name.clone(),
        status: s.status.into(),
        submitter: s.submitter.map(|u| u.to_string()).unwrap_or_default(),
        department: s.department.map(|d| d.to_string()),
        definition_id: definition.as_ref().map(|d| d.definition_id.to_string()).unwrap_or_default(),
        definition_version: definition.as_ref().map_or(0, |d| d.version),
        definition_hash: definition.map(|d| d.hash).unwrap_or_default(),
        form: Json(masked(serde_json::to_value(&s.form).unwrap_or_default(), &hidden)),
        form_hash: if hidden.is_empty() { oacis_domain::approval::form::form_hash(&s.form) } else { String::new() },
        route: s.route.clone(),
        current_node: (s.status == oacis_domain::approval::instance::ApprovalStatus::Running)
            .then(|| s.route.get(s.at).cloned())
            .flatten(),
        my_tasks: s
            .tasks
            .iter()
            .filter(|(_, t)| t.assignee == caller && t.status.actionable())
            .map(|(n, _)| *n)
            .collect(),
        tasks: s
            .tasks
            .iter()
            .map(|(n, t)| ApprovalTaskNode {
                number: *n,
                node: t.node.clone(),
                assignee: t.assignee.to_string(),
                owner: t.owner.map(|o| o.to_string()),
                status: t.status.into(),
                sign: t.sign.map(Into::into),
                parent: t.parent,
                due: t.due.map(time_text),
                timed_out: t.timed_out,
            })
            .collect(),
        submitted_at: time_text(row.submitted_at),
        updated_at: time_text(row.updated_at),
        timeline: row
            .timeline
            .iter()
            .map(|e| ApprovalTimelineEntry {
                seq: e.seq,
                at: time_text(e.at),
                actor: e.actor.clone(),
                kind: e.event.kind().to_owned(),
                detail: Json(masked(serde_json::from_slice(&e.event.payload()).unwrap_or_default(), &hidden)),
            })
            .collect(),
    }
}

/// Whether `caller` may see `row`: a participant, or `approval.audit` over it.
fn visible(v: &Views, caller: &Caller, row: &ApprovalRow) -> bool {
    let s = &row.state;
    let user = caller.user;
    let participant = s.submitter == Some(user)
        || s.tasks.values().any(|t| t.assignee == user || t.owner == Some(user))
        || row.timeline.iter().any(|e| match &e.event {
            oacis_domain::approval::instance::ApprovalEvent::ApprovalCcSent(cc) => cc.to.contains(&user),
            _ => false,
        });
    participant || caller.may(Permission::ApprovalAudit, &resource(&v.access, s.submitter, s.department))
}

/// Checks that the form's `user`, `department` and `customer` fields (detail rows included)
/// name records that exist, customers the caller may read.
fn check_references(v: &Views, caller: &Caller, body: &DefinitionBody, form: &FormValues) -> ApiResult<()> {
    use oacis_domain::approval::form::{FieldKind, FieldSpec};
    fn walk(
        v: &Views,
        caller: &Caller,
        prefix: &str,
        fields: &[FieldSpec],
        form: &FormValues,
        errors: &mut Vec<oacis_domain::FieldError>,
    ) {
        for field in fields {
            let path = format!("{prefix}.{}", field.name);
            let Some(value) = form.get(&field.name) else { continue };
            let id = value.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok());
            let known = match (&field.kind, id) {
                (FieldKind::User, Some(id)) => v.access.user(UserId(id)).is_some(),
                (FieldKind::Department, Some(id)) => v.access.department(DepartmentId(id)).is_some(),
                (FieldKind::Customer, Some(id)) => {
                    v.directory.get(oacis_domain::ids::CustomerId(id)).is_some_and(|row| {
                        caller
                            .may(Permission::CustomerRead, &resource(&v.access, Some(row.owner), Some(row.department)))
                    })
                }
                (FieldKind::Rows { fields: inner, .. }, _) => {
                    for (i, row) in value.as_array().into_iter().flatten().enumerate() {
                        if let Ok(row) = serde_json::from_value::<FormValues>(row.clone()) {
                            walk(v, caller, &format!("{path}[{i}]"), inner, &row, errors);
                        }
                    }
                    true
                }
                _ => true,
            };
            if !known {
                errors.push(oacis_domain::FieldError {
                    field: path,
                    code: FieldCode::InvalidFormat,
                    message: "no such record (or not one you may see)".into(),
                });
            }
        }
    }
    let mut errors = Vec::new();
    walk(v, caller, "form", &body.form, form, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Keys a form field's JSON may have, by its type: anything else (a typo such as
/// `"requried"`) is refused rather than dropped.
fn check_field_keys(definition: &serde_json::Value) -> ApiResult<()> {
    fn fields(list: Option<&serde_json::Value>, prefix: &str, errors: &mut Vec<oacis_domain::FieldError>) {
        for (i, field) in list.and_then(serde_json::Value::as_array).into_iter().flatten().enumerate() {
            let Some(object) = field.as_object() else { continue };
            let extra: &[&str] = match object.get("type").and_then(serde_json::Value::as_str) {
                Some("text") => &["max"],
                Some("choice") => &["options"],
                Some("rows") => &["fields", "max"],
                _ => &[],
            };
            for key in object.keys() {
                if !["name", "label", "type", "required"].contains(&key.as_str()) && !extra.contains(&key.as_str()) {
                    errors.push(oacis_domain::FieldError {
                        field: format!("{prefix}[{i}].{key}"),
                        code: FieldCode::InvalidFormat,
                        message: "not a key of this field's type".into(),
                    });
                }
            }
            if object.get("type").and_then(serde_json::Value::as_str) == Some("rows") {
                fields(object.get("fields"), &format!("{prefix}[{i}].fields"), errors);
            }
        }
    }
    let mut errors = Vec::new();
    fields(definition.get("form"), "definition.form", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Checks that the users, roles and departments a definition names exist.
fn check_named(v: &Views, body: &DefinitionBody) -> ApiResult<()> {
    use oacis_domain::approval::definition::Approvers;
    let errors: Vec<oacis_domain::FieldError> = body
        .approvers()
        .into_iter()
        .filter(|(_, _, who)| match who {
            Approvers::Users { users } => !users.iter().all(|u| v.access.user(*u).is_some()),
            Approvers::Role { role } => v.access.role(*role).is_none(),
            Approvers::DepartmentHead { department } => v.access.department(*department).is_none(),
            _ => false,
        })
        .map(|(path, key, _)| oacis_domain::FieldError {
            field: format!("definition.{path}.{key}"),
            code: FieldCode::InvalidFormat,
            message: "names a user, role or department that does not exist".into(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn task_number(task: i32) -> ApiResult<u32> {
    u32::try_from(task)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::field("task", FieldCode::OutOfRange, "a task number is 1 or more"))
}

fn users(field: &str, ids: &[String]) -> ApiResult<Vec<UserId>> {
    ids.iter().enumerate().map(|(i, id)| parse_id(&format!("{field}[{i}]"), id).map(UserId)).collect()
}

/// `value` read as a `T`, a refusal naming where in it the problem is (`definition.nodes[0].mode`).
fn json_at<T: serde::de::DeserializeOwned>(field: &str, value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        let path = if at == "." { field.to_owned() } else { format!("{field}.{at}") };
        ApiError::field(&path, FieldCode::InvalidFormat, e.inner().to_string())
    })
}

fn form_of(field: &str, value: Json<serde_json::Value>) -> ApiResult<FormValues> {
    serde_json::from_value(value.0)
        .map_err(|e| ApiError::field(field, FieldCode::InvalidFormat, format!("must be a JSON object: {e}")))
}

/// Runs `act` on approval `id` for the caller, with the users the act names in `extra`.
async fn act_on(
    ctx: &Context<'_>,
    id: &str,
    act: Act,
    extra: &[UserId],
    key: Option<String>,
) -> ApiResult<MutationResult> {
    let caller = caller(ctx)?;
    let id = ApprovalId(parse_id("id", id)?);
    let form = match &act {
        Act::Resubmit { form } => Some(form),
        _ => None,
    };
    let env = views(ctx, |v| {
        v.approvals.get(id).filter(|row| visible(v, caller, row))?;
        crate::approvals::environment(v, id, form, extra)
    })?
    .ok_or(ApiError::NotFound("approval"))?;
    if let Act::Resubmit { form } | Act::Approve { edits: form, .. } = &act {
        let earlier = views(ctx, |v| v.approvals.get(id).map(|row| row.state.form.clone()))?;
        Attachments::in_data(&app(ctx)?.config.data).check_form(
            &env.definition.body,
            form,
            caller.user,
            earlier.as_ref(),
        )?;
        views(ctx, |v| check_references(v, caller, &env.definition.body, form))??;
    }
    run(ctx, id, ApprovalCommand { act, env }, key).await
}

/// Executes `command` on approval `id` (with its ledger step, if any).
async fn run(
    ctx: &Context<'_>,
    id: ApprovalId,
    command: ApprovalCommand,
    key: Option<String>,
) -> ApiResult<MutationResult> {
    let origin = origin(ctx, key.clone())?;
    let executed = crate::approvals::execute(&app(ctx)?.bus, id, command, &origin).await?;
    Ok(MutationResult::new(id, executed, key))
}

/// Approval queries.
#[derive(Default, Debug)]
pub struct ApprovalQuery;

#[Object]
impl ApprovalQuery {
    /// Every definition's latest version, by name.
    async fn approval_definitions(&self, ctx: &Context<'_>) -> ApiResult<Vec<ApprovalDefinitionNode>> {
        caller(ctx)?;
        let mut list: Vec<ApprovalDefinitionNode> =
            views(ctx, |v| v.approvals.definitions().map(ApprovalDefinitionNode::from).collect())?;
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(list)
    }

    /// One definition's version (without `version`, the latest).
    async fn approval_definition(
        &self,
        ctx: &Context<'_>,
        id: String,
        version: Option<u32>,
    ) -> ApiResult<ApprovalDefinitionNode> {
        caller(ctx)?;
        let id = ApprovalDefinitionId(parse_id("id", &id)?);
        views(ctx, |v| v.approvals.definition(id, version).map(ApprovalDefinitionNode::from))?
            .ok_or(ApiError::NotFound("approval definition"))
    }

    /// The caller's approvals in `list`, newest submission first, optionally of one status;
    /// a Relay connection with `totalCount`.
    async fn approvals(
        &self,
        ctx: &Context<'_>,
        list: ApprovalListKind,
        status: Option<ApprovalStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, ApprovalNode, Counted>> {
        let caller = caller(ctx)?;
        if list == ApprovalListKind::All {
            caller.require_any(Permission::ApprovalAudit)?;
        }
        let status = status.map(Into::into);
        views(ctx, |v| {
            let rows: Vec<&ApprovalRow> = match list {
                ApprovalListKind::Inbox => v.approvals.list(caller.user, ApprovalList::Inbox, status),
                ApprovalListKind::Done => v.approvals.list(caller.user, ApprovalList::Done, status),
                ApprovalListKind::Submitted => v.approvals.list(caller.user, ApprovalList::Submitted, status),
                ApprovalListKind::Copied => v.approvals.list(caller.user, ApprovalList::Copied, status),
                ApprovalListKind::All => v
                    .approvals
                    .all(status)
                    .into_iter()
                    .filter(|row| {
                        caller.may(
                            Permission::ApprovalAudit,
                            &resource(&v.access, row.state.submitter, row.state.department),
                        )
                    })
                    .collect(),
            };
            connection_of(rows, |row| row.id.to_string(), first, after, |row| node_of(v, row, caller))
        })?
    }

    /// Every published year's working calendar (its latest version), by year.
    async fn working_calendar(&self, ctx: &Context<'_>) -> ApiResult<Vec<WorkingCalendarYear>> {
        caller(ctx)?;
        views(ctx, |v| {
            v.approvals
                .calendar_years()
                .map(|y| WorkingCalendarYear {
                    year: y.year,
                    version: y.version,
                    hash: y.hash.clone(),
                    days: Json(serde_json::to_value(&y.days).unwrap_or_default()),
                    papers: y.papers.clone(),
                })
                .collect()
        })
    }

    /// A leave balance (the caller's own, or with `approval.audit` or `approval.define` over
    /// the user) or a department's budget (with `approval.audit` over the department, or
    /// `approval.define`); NOT_FOUND otherwise, and for a ledger with no entry yet.
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        kind: LedgerKind,
        owner: String,
        category: String,
        year: u16,
    ) -> ApiResult<LedgerNode> {
        let caller = caller(ctx)?;
        let (key, _, owner) = ledger_key(kind, &owner, &category, year)?;
        views(ctx, |v| {
            let scope = match kind {
                LedgerKind::Leave => {
                    let department = v.access.user(UserId(owner)).map(|u| u.department);
                    resource(&v.access, Some(UserId(owner)), department)
                }
                LedgerKind::Budget => resource(&v.access, None, Some(DepartmentId(owner))),
            };
            let allowed = (kind == LedgerKind::Leave && owner == caller.user.0)
                || caller.may(Permission::ApprovalAudit, &scope)
                || caller.may(Permission::ApprovalDefine, &scope);
            let row = v.approvals.ledger(&key).filter(|_| allowed)?;
            let s = &row.state;
            Some(LedgerNode {
                key: key.clone(),
                unit: match s.unit {
                    Some(LedgerUnit::Fen) => "fen".into(),
                    _ => "half_days".into(),
                },
                credited: s.credited,
                taken: s.taken,
                reserved: s.reserved.values().sum(),
                available: s.available(),
                entries: row
                    .entries
                    .iter()
                    .map(|(seq, at, actor, event)| ApprovalTimelineEntry {
                        seq: *seq,
                        at: time_text(*at),
                        actor: actor.clone(),
                        kind: event.kind().to_owned(),
                        detail: Json(serde_json::from_slice(&event.payload()).unwrap_or_default()),
                    })
                    .collect(),
            })
        })?
        .ok_or(ApiError::NotFound("ledger"))
    }

    /// Figures per node for managers (`approval.audit`, over the approvals in scope): open at
    /// each node and the oldest's age, overdue, and the mean time to pass; optionally of one
    /// definition. Cost: one pass over the approvals in scope and their timelines.
    async fn approval_figures(
        &self,
        ctx: &Context<'_>,
        definition: Option<String>,
    ) -> ApiResult<Vec<ApprovalNodeFigures>> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::ApprovalAudit)?;
        let only = definition.as_deref().map(|d| parse_id("definition", d).map(ApprovalDefinitionId)).transpose()?;
        let now = app(ctx)?.bus.now();
        views(ctx, |v| {
            // (definition, node) -> (name, open, oldest entry, overdue, passed, total micros to pass)
            let mut figures: BTreeMap<(ApprovalDefinitionId, String), Tally> = BTreeMap::new();
            for row in v.approvals.all(None) {
                let s = &row.state;
                let Some(pinned) = &s.definition else { continue };
                if only.is_some_and(|d| d != pinned.definition_id)
                    || !caller.may(Permission::ApprovalAudit, &resource(&v.access, s.submitter, s.department))
                {
                    continue;
                }
                let mut entered: BTreeMap<&str, i64> = BTreeMap::new();
                for entry in &row.timeline {
                    match &entry.event {
                        ApprovalEvent::ApprovalNodeEntered(e) => {
                            entered.insert(&e.node, entry.at.0);
                        }
                        ApprovalEvent::ApprovalNodePassed(e) => {
                            if let Some(start) = entered.remove(e.node.as_str()) {
                                let f = figures.entry((pinned.definition_id, e.node.clone())).or_default();
                                f.name.clone_from(&row.name);
                                f.passed += 1;
                                f.micros_to_pass += entry.at.0 - start;
                            }
                        }
                        _ => {}
                    }
                }
                if s.status == oacis_domain::approval::instance::ApprovalStatus::Running {
                    let Some(node) = s.route.get(s.at) else { continue };
                    let f = figures.entry((pinned.definition_id, node.clone())).or_default();
                    f.name.clone_from(&row.name);
                    f.open += 1;
                    if let Some(start) = entered.get(node.as_str()) {
                        let age = (now.0 - start) / 1_000_000;
                        f.oldest = Some(f.oldest.map_or(age, |oldest| oldest.max(age)));
                    }
                    if s.tasks.values().any(|t| t.status.live() && t.due.is_some_and(|due| due < now)) {
                        f.overdue += 1;
                    }
                }
            }
            figures
                .into_iter()
                .map(|((definition, node), f)| ApprovalNodeFigures {
                    definition_id: definition.to_string(),
                    definition_name: f.name,
                    node,
                    open: f.open,
                    oldest_open_seconds: f.oldest,
                    overdue: f.overdue,
                    passed: f.passed,
                    mean_seconds_to_pass: (f.passed > 0)
                        .then(|| f.micros_to_pass / i64::try_from(f.passed).unwrap_or(i64::MAX) / 1_000_000),
                })
                .collect()
        })
    }

    /// A file attached to approval `approval` (in a form as submitted, resubmitted or edited),
    /// for those who may see the approval and the field that names it.
    async fn approval_attachment(
        &self,
        ctx: &Context<'_>,
        approval: String,
        blake3: String,
    ) -> ApiResult<AttachmentContent> {
        use base64::Engine as _;
        let caller = caller(ctx)?;
        let id = ApprovalId(parse_id("approval", &approval)?);
        let named = views(ctx, |v| {
            let row = v.approvals.get(id).filter(|row| visible(v, caller, row))?;
            let pinned = row.state.definition.as_ref()?;
            let body = &v.approvals.definition(pinned.definition_id, Some(pinned.version))?.body;
            let hidden = hidden_fields(v, caller, row);
            let forms = std::iter::once(&row.state.form).chain(row.timeline.iter().filter_map(|e| match &e.event {
                ApprovalEvent::ApprovalSubmitted(s) => Some(&s.form),
                ApprovalEvent::ApprovalResubmitted(r) => Some(&r.form),
                ApprovalEvent::ApprovalFormEdited(f) => Some(&f.form),
                _ => None,
            }));
            forms
                .flat_map(|form| {
                    let visible: FormValues = form
                        .iter()
                        .filter(|(k, _)| !hidden.contains(*k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    crate::attachments::named_in(&visible, body)
                })
                .find(|(hash, _, _)| *hash == blake3)
        })?
        .ok_or(ApiError::NotFound("attachment"))?;
        let bytes = Attachments::in_data(&app(ctx)?.config.data)
            .read(&named.0)
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("attachment"))?;
        Ok(AttachmentContent {
            name: named.1,
            size: named.2,
            blake3: named.0,
            content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// One approval, with its tasks and timeline.
    async fn approval(&self, ctx: &Context<'_>, id: String) -> ApiResult<ApprovalNode> {
        let caller = caller(ctx)?;
        let id = ApprovalId(parse_id("id", &id)?);
        views(ctx, |v| v.approvals.get(id).filter(|row| visible(v, caller, row)).map(|row| node_of(v, row, caller)))?
            .ok_or(ApiError::NotFound("approval"))
    }
}

/// Approval mutations.
#[derive(Default, Debug)]
pub struct ApprovalMutation;

#[Object]
impl ApprovalMutation {
    /// Publishes a definition (`approval.define`): without `id` a new one at version 1, with
    /// `id` its next version. Published versions never change; running approvals finish on
    /// theirs. A body equal to the latest version writes nothing.
    async fn publish_approval_definition(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
        definition: Json<serde_json::Value>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        caller.require(Permission::ApprovalDefine, &oacis_domain::authz::Resource::global())?;
        check_field_keys(&definition.0)?;
        let body: DefinitionBody = json_at("definition", definition.0)?;
        views(ctx, |v| check_named(v, &body))??;
        let id = match id {
            Some(id) => {
                let id = ApprovalDefinitionId(parse_id("id", &id)?);
                if views(ctx, |v| v.approvals.definition(id, None).is_none())? {
                    return Err(ApiError::NotFound("approval definition"));
                }
                id
            }
            None => ApprovalDefinitionId(origin(ctx, client_mutation_id.clone())?.new_id("approval definition")),
        };
        // The definition's own rules name places in it: paths into the `definition` argument.
        execute::<Definition>(ctx, id, id.stream(), DefinitionCommand::Publish { id, body }, client_mutation_id)
            .await
            .map_err(|e| match e {
                ApiError::Validation(mut fields) => {
                    for f in fields.iter_mut().filter(|f| !f.field.is_empty() && !f.field.starts_with("definition")) {
                        f.field = format!("definition.{}", f.field);
                    }
                    ApiError::Validation(fields)
                }
                other => other,
            })
    }

    /// Publishes a year's working calendar (`approval.define`): its public holidays and
    /// adjusted working days as the State Council announces them, `days: [{"date":
    /// "2026-10-01", "off": true, "name": "国庆节"}, ...]`, with the notice in `papers`.
    /// Publishing a year again replaces it for due times computed from then on.
    async fn publish_working_calendar(
        &self,
        ctx: &Context<'_>,
        year: u16,
        days: Json<serde_json::Value>,
        papers: Vec<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        caller.require(Permission::ApprovalDefine, &oacis_domain::authz::Resource::global())?;
        let days: Vec<CalendarDay> = json_at("days", days.0)?;
        let id = CalendarYearId::of_year(year);
        let command = CalendarCommand::PublishYear { year, days, papers };
        execute::<CalendarYear>(ctx, year, id.stream(), command, client_mutation_id).await
    }

    /// Stores a file to attach to an approval form (a GraphQL multipart upload, at most 32
    /// MiB): put what this answers into the form's attachment field.
    async fn upload_attachment(&self, ctx: &Context<'_>, file: async_graphql::Upload) -> ApiResult<AttachmentNode> {
        caller(ctx)?;
        let value = file.value(ctx).map_err(|e| ApiError::field("file", FieldCode::InvalidFormat, e.to_string()))?;
        let bytes = value.content;
        if bytes.len() > crate::transfer::table::MAX_FILE_BYTES {
            let limit = crate::transfer::table::MAX_FILE_BYTES;
            return Err(ApiError::field("file", FieldCode::TooLong, format!("at most {limit} bytes")));
        }
        let name = value.filename.trim().to_owned();
        let odd = |c: char| {
            oacis_domain::validate::text::is_control(c)
                || oacis_domain::validate::text::is_direction_control(c)
                || c == '/'
                || c == '\\'
        };
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(odd) {
            let message = "a file name of 1 to 200 characters, without control characters, direction overrides or path separators";
            return Err(ApiError::field("file", FieldCode::InvalidFormat, message));
        }
        let uploader = caller(ctx)?.user;
        let blake3 = Attachments::in_data(&app(ctx)?.config.data).put(&bytes, uploader).map_err(ApiError::internal)?;
        Ok(AttachmentNode { name, size: u64::try_from(bytes.len()).unwrap_or(u64::MAX), blake3 })
    }

    /// Credits (or, negative, debits) a leave balance or a budget (`approval.define`): a
    /// user's year of annual leave in half days, a department's year of travel budget in fen.
    #[allow(clippy::too_many_arguments)]
    async fn credit_ledger(
        &self,
        ctx: &Context<'_>,
        kind: LedgerKind,
        owner: String,
        category: String,
        year: u16,
        amount: i64,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        caller.require(Permission::ApprovalDefine, &oacis_domain::authz::Resource::global())?;
        if !(2000..=2200).contains(&year) {
            return Err(ApiError::field("year", FieldCode::OutOfRange, "2000-2200"));
        }
        let (key, unit, owner) = ledger_key(kind, &owner, &category, year)?;
        let known = views(ctx, |v| match kind {
            LedgerKind::Leave => v.access.user(UserId(owner)).is_some(),
            LedgerKind::Budget => v.access.department(DepartmentId(owner)).is_some(),
        })?;
        if !known {
            return Err(ApiError::field(
                "owner",
                FieldCode::InvalidFormat,
                "no such user (leave) or department (budget)",
            ));
        }
        let mut v = oacis_domain::validate::Validator::new();
        v.code("category", &category, 40, &['_', '-']);
        v.finish(()).map_err(ApiError::from)?;
        let id = LedgerId::of(&key);
        let command = LedgerCommand::Credit { key: key.clone(), unit, amount, reason };
        execute::<Ledger>(ctx, key, id.stream(), command, client_mutation_id).await
    }

    /// Submits an approval on a definition's latest version, with its form (a JSON object of
    /// field values: money in integer fen) and, for nodes whose approvers the submitter picks,
    /// `picked: {"node id": ["user id", ...]}`.
    async fn submit_approval(
        &self,
        ctx: &Context<'_>,
        definition: String,
        form: Json<serde_json::Value>,
        picked: Option<Json<serde_json::Value>>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        let definition_id = ApprovalDefinitionId(parse_id("definition", &definition)?);
        let form = form_of("form", form)?;
        let picked: BTreeMap<String, Vec<UserId>> = match picked {
            None => BTreeMap::new(),
            Some(json) => serde_json::from_value(json.0).map_err(|e| {
                ApiError::field(
                    "picked",
                    FieldCode::InvalidFormat,
                    format!("must map node ids to lists of user ids: {e}"),
                )
            })?,
        };
        let env = views(ctx, |v| {
            let definition = v.approvals.definition(definition_id, None)?.clone();
            let org = crate::approvals::org_facts(v, caller.user, &definition.body, &form, &picked, None, &[]);
            Some(Environment { definition, org, calendar: v.approvals.calendar().clone() })
        })?
        .ok_or(ApiError::NotFound("approval definition"))?;
        Attachments::in_data(&app(ctx)?.config.data).check_form(&env.definition.body, &form, caller.user, None)?;
        views(ctx, |v| check_references(v, caller, &env.definition.body, &form))??;
        let id = ApprovalId(origin(ctx, client_mutation_id.clone())?.new_id("approval"));
        let act = Act::Submit { id, form, picked };
        run(ctx, id, ApprovalCommand { act, env }, client_mutation_id).await
    }

    /// Approves one's task (同意); `edits` changes the form fields the node lets its approvers
    /// write (`{"field": value}`).
    async fn approve_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        comment: Option<String>,
        edits: Option<Json<serde_json::Value>>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let edits = edits.map(|e| form_of("edits", e)).transpose()?.unwrap_or_default();
        act_on(ctx, &id, Act::Approve { task: task_number(task)?, comment, edits }, &[], client_mutation_id).await
    }

    /// Rejects (驳回): the approval ends rejected (in an all-must-approve node, once its pass
    /// ratio is out of reach).
    async fn reject_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        comment: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Reject { task: task_number(task)?, comment }, &[], client_mutation_id).await
    }

    /// Returns (退回) to an earlier node of the route, or without `to` to the submitter.
    async fn return_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        to: Option<String>,
        comment: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Return { task: task_number(task)?, to, comment }, &[], client_mutation_id).await
    }

    /// The submitter resubmits a returned approval with its form as now.
    async fn resubmit_approval(
        &self,
        ctx: &Context<'_>,
        id: String,
        form: Json<serde_json::Value>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Resubmit { form: form_of("form", form)? }, &[], client_mutation_id).await
    }

    /// Gives one's task to someone else for good (转办).
    async fn transfer_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        to: String,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let to = UserId(parse_id("to", &to)?);
        act_on(ctx, &id, Act::Transfer { task: task_number(task)?, to, comment }, &[to], client_mutation_id).await
    }

    /// Lets someone else work one's task (委派); it comes back, and the owner decides.
    async fn delegate_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        to: String,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let to = UserId(parse_id("to", &to)?);
        act_on(ctx, &id, Act::Delegate { task: task_number(task)?, to, comment }, &[to], client_mutation_id).await
    }

    /// The delegate hands a delegated task back with their opinion.
    async fn resolve_approval_delegation(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::ResolveDelegation { task: task_number(task)?, comment }, &[], client_mutation_id).await
    }

    /// 加签: `users` approve before the caller (`BEFORE`, the caller's task waits for them) or
    /// after (`AFTER`, the caller's approval counts once they approved).
    #[allow(clippy::too_many_arguments)]
    async fn add_approval_signers(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        kind: SignKind,
        users: Vec<String>,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let users = self::users("users", &users)?;
        let act = Act::AddSigners { task: task_number(task)?, kind: kind.into(), users: users.clone(), comment };
        act_on(ctx, &id, act, &users, client_mutation_id).await
    }

    /// 减签: removes a signer the caller added, while their task is running.
    async fn remove_approval_signer(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::RemoveSigner { task: task_number(task)? }, &[], client_mutation_id).await
    }

    /// Takes back one's approval (撤回) while nothing was decided after it.
    async fn withdraw_approval_task(
        &self,
        ctx: &Context<'_>,
        id: String,
        task: i32,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Withdraw { task: task_number(task)? }, &[], client_mutation_id).await
    }

    /// Copies users (抄送), by the submitter or an approver.
    async fn copy_approval(
        &self,
        ctx: &Context<'_>,
        id: String,
        to: Vec<String>,
        comment: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let to = users("to", &to)?;
        act_on(ctx, &id, Act::Cc { to: to.clone(), comment }, &to, client_mutation_id).await
    }

    /// The submitter cancels a running or returned approval (撤销).
    async fn cancel_approval(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Cancel { reason }, &[], client_mutation_id).await
    }

    /// The submitter urges the current approvers (催办), at most once per 10 minutes
    /// (RATE_LIMITED otherwise).
    async fn urge_approval(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        act_on(ctx, &id, Act::Urge, &[], client_mutation_id).await
    }
}
