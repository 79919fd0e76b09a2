//! A running approval (流程实例): one stream per instance, its tasks included, so that an
//! expected-version append settles races such as two 或签 approvers acting at once.
//!
//! Flow: `submit` fixes the form, its hash and the route (the approval and CC nodes the form
//! passes, see [`DefinitionBody::route`]) and enters the first node. Entering an approval node
//! resolves its approvers from the [`OrgFacts`] the caller supplies and writes them into the
//! event, so a replay never consults the organisation again; a CC node informs and passes on.
//! A node passes or fails by its [`Mode`]; after the last node the approval is approved, after
//! a failed node (or a rejection) rejected. A return (退回) goes back to an earlier node of the
//! route or to the submitter, who may change the form and resubmit the same instance.
//!
//! Invariants:
//! - `decide` is pure: time comes from the [`Context`], the definition version and the
//!   organisation's facts from the command's [`Environment`]. Every command on a submitted
//!   approval must bring the version it started with (same BLAKE3 hash) or is refused.
//! - Automatic steps (a node passed, the next node entered, 或签 siblings cancelled, a
//!   consecutive repeat approver auto-passed with reason `approve_sequent`) are appended with
//!   the decision that causes them, in the same append.
//! - Routing rules: an approver list that resolves to nobody goes to the administrators,
//!   never passes by itself; a submitter who would approve their own request involving money
//!   is replaced by their nearest leader who is not themself; the same approver at two
//!   consecutive approval nodes passes the second automatically, unless the node was entered
//!   again through a return or withdrawal.
//! - Each refused operation returns a typed error and no events.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::calendar::{OnDue, WorkCalendar};
use super::definition::{Approvers, DefinitionBody, FieldAccess, Mode, Node, PublishedDefinition};
use super::form::{check_values, form_hash, money_total, FormValues};
use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::customer::MAX_TEXT_CHARS;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{ApprovalDefinitionId, ApprovalId, DepartmentId, RoleId, Timestamp, UserId};
use crate::validate::Validator;

/// The least time between two urges (催办) of one approval, in seconds.
pub const URGE_INTERVAL_SECS: i64 = 600;
/// Most users added as signers or copied at once.
pub const MAX_ADDED_USERS: usize = 20;

/// What the organisation says about the submitter, read by the caller when a command may
/// enter a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgFacts {
    /// The submitter's department (recorded on submit; the approval's scope).
    pub department: Option<DepartmentId>,
    /// Leaders of the submitter's department and of each department above it, nearest first
    /// (`None` for a department without a leader).
    pub leaders: Vec<Option<UserId>>,
    /// Members of the roles the definition names, in a stable order.
    pub role_members: BTreeMap<RoleId, Vec<UserId>>,
    /// Leaders of the departments the definition names (department heads).
    pub heads: BTreeMap<DepartmentId, UserId>,
    /// Users who may act (active accounts); anyone else resolved is left out.
    pub active: BTreeSet<UserId>,
    /// Who receives tasks no rule finds anyone for.
    pub administrators: Vec<UserId>,
    /// For assignees of live tasks: their own leader (of their department, or of the one above
    /// when they lead it), for tasks that go to the leader when they fall due.
    pub leader_of: BTreeMap<UserId, UserId>,
}

/// What a decision on an approval reads besides its state: the definition version it runs
/// on and the organisation's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// For `Submit`, the version to start on (the latest); afterwards the pinned one.
    pub definition: PublishedDefinition,
    /// The organisation as it is now.
    pub org: OrgFacts,
    /// The working calendar as published now (due times of tasks created by the command).
    pub calendar: WorkCalendar,
}

/// What can be asked of an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCommand {
    /// The operation.
    pub act: Act,
    /// The definition and the organisation.
    pub env: Environment,
}

/// The operations on an approval. Tasks are numbered within their approval from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Start an approval (提交).
    Submit {
        /// Chosen by the caller.
        id: ApprovalId,
        /// The filled-in form.
        form: FormValues,
        /// For nodes whose approvers the submitter picks: node id to users.
        picked: BTreeMap<String, Vec<UserId>>,
    },
    /// Approve one's task (同意), changing the form fields the node lets its approvers write.
    Approve {
        /// The task.
        task: u32,
        /// Optional comment.
        comment: Option<String>,
        /// New values of writable fields (empty: no change). The route stays the one the
        /// form took when submitted.
        edits: FormValues,
    },
    /// Reject (驳回): the approval ends rejected.
    Reject {
        /// The task.
        task: u32,
        /// Why (required).
        comment: String,
    },
    /// Return (退回) to an earlier node of the route, or to the submitter (`to: None`).
    Return {
        /// The task.
        task: u32,
        /// The node id to return to.
        to: Option<String>,
        /// Why (required).
        comment: String,
    },
    /// The submitter resubmits a returned approval, with a changed form or the same one.
    Resubmit {
        /// The form now.
        form: FormValues,
    },
    /// Give one's task to someone else for good (转办). An approval administrator
    /// (`OrgFacts::administrators`) may also transfer a running task whose assignee may no
    /// longer act (not in `OrgFacts::active`: deactivated), which would wait for good.
    Transfer {
        /// The task.
        task: u32,
        /// The new assignee.
        to: UserId,
        /// Optional comment.
        comment: Option<String>,
    },
    /// Let someone else work one's task (委派); it comes back, and the owner decides.
    Delegate {
        /// The task.
        task: u32,
        /// Who works it.
        to: UserId,
        /// Optional comment.
        comment: Option<String>,
    },
    /// The delegate hands the task back with their opinion.
    ResolveDelegation {
        /// The task.
        task: u32,
        /// The delegate's opinion.
        comment: Option<String>,
    },
    /// 加签: `Before` (前加签), these users approve first while the actor's task waits;
    /// `After` (后加签), they approve once the actor has, and the actor's approval counts when
    /// they all have. One task takes signers of one kind only.
    AddSigners {
        /// The actor's task.
        task: u32,
        /// Before or after the actor.
        kind: SignKind,
        /// Who signs.
        users: Vec<UserId>,
        /// Optional comment.
        comment: Option<String>,
    },
    /// 减签: remove a signer the actor added, while their task is running.
    RemoveSigner {
        /// The added signer's task.
        task: u32,
    },
    /// An approver takes back their approval (撤回) while nothing was decided after it.
    Withdraw {
        /// The task the actor approved.
        task: u32,
    },
    /// Copy users (抄送), by the submitter or an approver.
    Cc {
        /// Who.
        to: Vec<UserId>,
        /// Optional comment.
        comment: Option<String>,
    },
    /// The submitter cancels a running or returned approval (撤销).
    Cancel {
        /// Why.
        reason: String,
    },
    /// The submitter urges the current approvers (催办), at most once per
    /// [`URGE_INTERVAL_SECS`].
    Urge,
    /// The scheduler (no actor needed): applies each node's rule to its running tasks that
    /// fell due by the context's time; nothing when none did.
    Tick,
}

/// Whether added signers approve before or after the task they were added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignKind {
    /// 前加签.
    Before,
    /// 后加签.
    After,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Not submitted.
    #[default]
    Absent,
    /// Waiting for approvers.
    Running,
    /// Returned to the submitter.
    Returned,
    /// Approved at the last node.
    Approved,
    /// Rejected.
    Rejected,
    /// Cancelled by the submitter.
    Cancelled,
}

impl crate::aggregate::Lifecycle for ApprovalStatus {
    const ENTITY: &'static str = "approval";
    const ABSENT: Self = ApprovalStatus::Absent;

    fn name(self) -> &'static str {
        match self {
            ApprovalStatus::Absent => "absent",
            ApprovalStatus::Running => "running",
            ApprovalStatus::Returned => "returned",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Its assignee may act.
    Running,
    /// Waiting for signers added before it (前加签).
    Waiting,
    /// A signer added after its parent (后加签), waiting for the parent's approval.
    Queued,
    /// Approved by its assignee, waiting for the signers added after it (后加签).
    Approving,
    /// Worked by a delegate (委派).
    Delegated,
    /// Approved.
    Approved,
    /// Passed without its assignee (see [`AutoReason`]).
    AutoApproved,
    /// Rejected.
    Rejected,
    /// Returned.
    Returned,
    /// Its approval was taken back (撤回).
    Withdrawn,
    /// Ended without a decision.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task still waits for someone.
    #[must_use]
    pub fn live(self) -> bool {
        matches!(
            self,
            TaskStatus::Running
                | TaskStatus::Waiting
                | TaskStatus::Delegated
                | TaskStatus::Queued
                | TaskStatus::Approving
        )
    }

    /// Whether someone can act on the task now (what a to-do list shows).
    #[must_use]
    pub fn actionable(self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::Delegated)
    }

    fn approved(self) -> bool {
        matches!(self, TaskStatus::Approved | TaskStatus::AutoApproved)
    }
}

/// A task in the folded approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskState {
    /// The node it belongs to.
    pub node: String,
    /// Who acts on it now.
    pub assignee: UserId,
    /// Who it comes back to while delegated.
    pub owner: Option<UserId>,
    /// Where it stands.
    pub status: TaskStatus,
    /// The task a signer was added to.
    pub parent: Option<u32>,
    /// For an added signer: before or after its parent.
    pub sign: Option<SignKind>,
    /// Which entry of its node it belongs to (a node entered again starts a new entry).
    pub entry: u32,
    /// The ordinal of the decision on it (for 撤回: nothing decided after it).
    pub decided: Option<u32>,
    /// Decisions made before it was created.
    pub born: u32,
    /// When it falls due.
    pub due: Option<Timestamp>,
    /// Whether its due time was handled.
    pub timed_out: bool,
}

/// The folded approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalState {
    /// Its id.
    pub id: Option<ApprovalId>,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// The version it runs on.
    pub definition: Option<DefinitionRef>,
    /// Who submitted it.
    pub submitter: Option<UserId>,
    /// The submitter's department when submitting.
    pub department: Option<DepartmentId>,
    /// When it was first submitted.
    pub submitted_at: Timestamp,
    /// The form as last submitted.
    pub form: FormValues,
    /// Users picked per node.
    pub picked: BTreeMap<String, Vec<UserId>>,
    /// The route's node ids.
    pub route: Vec<String>,
    /// Index in `route` of the current node.
    pub at: usize,
    /// Approvers resolved for the current node, in order.
    pub approvers: Vec<UserId>,
    /// The current node's mode.
    pub mode: Option<Mode>,
    /// Entries of nodes so far (the current entry's number).
    pub entry: u32,
    /// Whether the current node was entered through a return or withdrawal.
    pub reentered: bool,
    /// Tasks by number.
    pub tasks: BTreeMap<u32, TaskState>,
    /// Decisions so far.
    pub decisions: u32,
    /// Who approved the last approval node that passed (for 去重).
    pub last_passed: Vec<UserId>,
    /// When it was last urged.
    pub last_urged: Option<Timestamp>,
    /// Everyone copied so far.
    pub copied: BTreeSet<UserId>,
}

impl ApprovalState {
    /// The current entry's top-level tasks (signers excluded).
    fn node_tasks(&self) -> impl Iterator<Item = (&u32, &TaskState)> {
        self.tasks.iter().filter(|(_, t)| t.entry == self.entry && t.parent.is_none())
    }

    fn live_tasks(&self) -> Vec<u32> {
        self.tasks.iter().filter(|(_, t)| t.status.live()).map(|(n, _)| *n).collect()
    }
}

/// The definition version an approval runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionRef {
    /// The definition.
    pub definition_id: ApprovalDefinitionId,
    /// Its version.
    pub version: u32,
    /// BLAKE3 of the version's body.
    pub hash: String,
}

/// Why the routing did something other than the definition's plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum RoutingNote {
    /// Nobody was found; the administrators got the node.
    MissingApprovers,
    /// The submitter would have approved their own request involving money; their leader
    /// does instead.
    SelfApprovalToLeader {
        /// Who approves instead.
        leader: UserId,
    },
    /// A resolved user may not act (inactive) and was left out.
    Inactive {
        /// Who.
        user: UserId,
    },
}

/// Why a task passed without its assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoReason {
    /// The assignee approved the approval node just before (去重, consecutive repeats).
    ApproveSequent,
}

/// Why a task ended without a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Its node was decided by others (或签, or a 会签 ratio reached or out of reach).
    NodeDecided,
    /// The approval was rejected.
    Rejected,
    /// The approval was returned.
    Returned,
    /// An approval before it was withdrawn.
    Withdrawn,
    /// The submitter cancelled the approval.
    ApprovalCancelled,
    /// The signer was removed (减签).
    SignerRemoved,
}

/// The outcome of a finished approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
}

/// Payload of `ApprovalSubmitted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSubmitted {
    /// The approval.
    pub approval_id: ApprovalId,
    /// The version it runs on.
    pub definition: DefinitionRef,
    /// Who submitted.
    pub submitter: UserId,
    /// The submitter's department then.
    pub department: Option<DepartmentId>,
    /// When (the decision's time).
    pub at: Timestamp,
    /// The form.
    pub form: FormValues,
    /// BLAKE3 of the form's bytes.
    pub form_hash: String,
    /// Users picked per node.
    pub picked: BTreeMap<String, Vec<UserId>>,
    /// The route's node ids.
    pub route: Vec<String>,
}

/// Payload of `ApprovalFormEdited`: an approver changed writable fields when approving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalFormEdited {
    /// The approver's task.
    pub task: u32,
    /// Who.
    pub by: UserId,
    /// The whole form after the change.
    pub form: FormValues,
    /// BLAKE3 of the form's bytes.
    pub form_hash: String,
}

/// Payload of `ApprovalResubmitted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResubmitted {
    /// The form now.
    pub form: FormValues,
    /// BLAKE3 of the form's bytes.
    pub form_hash: String,
    /// The route for that form.
    pub route: Vec<String>,
}

/// Payload of `ApprovalNodeEntered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalNodeEntered {
    /// The node.
    pub node: String,
    /// Approvers resolved, in order.
    pub approvers: Vec<UserId>,
    /// How they decide.
    pub mode: Mode,
    /// What the routing rules did.
    pub notes: Vec<RoutingNote>,
    /// Entered again through a return or withdrawal (no automatic pass).
    pub reentered: bool,
}

/// Payload of `ApprovalNodePassed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalNodePassed {
    /// The node.
    pub node: String,
}

/// Payload of `ApprovalTaskCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskCreated {
    /// Its number.
    pub task: u32,
    /// Its node.
    pub node: String,
    /// Who acts.
    pub assignee: UserId,
    /// The task a signer was added to.
    pub parent: Option<u32>,
    /// For an added signer: before or after its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignKind>,
    /// When it falls due, where its node says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<TaskDue>,
}

/// A task's due time, as computed when it was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDue {
    /// When.
    pub at: Timestamp,
    /// The working calendar's version it was counted on (empty: none published).
    pub calendar: String,
    /// Whether weekends alone were counted for some date (no calendar for its year).
    pub weekends_only: bool,
}

/// Payload of `ApprovalTaskTimedOut`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskTimedOut {
    /// The task.
    pub task: u32,
    /// What its node's rule did.
    pub action: OnDue,
    /// Who it went to (for `transfer_to_leader`).
    pub to: Option<UserId>,
}

/// Payload of a decision on a task (`ApprovalTaskApproved`, `ApprovalTaskRejected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDecision {
    /// The task.
    pub task: u32,
    /// Who decided.
    pub by: UserId,
    /// Their comment.
    pub comment: Option<String>,
}

/// Payload of `ApprovalTaskAutoApproved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskAutoApproved {
    /// The task.
    pub task: u32,
    /// Why.
    pub reason: AutoReason,
}

/// Payload of `ApprovalTaskCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskCancelled {
    /// The task.
    pub task: u32,
    /// Why.
    pub reason: CancelReason,
}

/// Payload of `ApprovalTaskCompleted`: a task approved with signers after it counts as
/// approved once they all approved (or were removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskCompleted {
    /// The task.
    pub task: u32,
}

/// Payload of `ApprovalTaskResumed`: a task whose signers added before it all approved runs
/// again, or a signer added after a task runs once that task was approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTaskResumed {
    /// The task.
    pub task: u32,
}

/// Payload of `ApprovalTaskTransferred` and `ApprovalTaskDelegated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskHandover {
    /// The task.
    pub task: u32,
    /// Who had it.
    pub from: UserId,
    /// Who has it now.
    pub to: UserId,
    /// Comment.
    pub comment: Option<String>,
}

/// Payload of `ApprovalSignersAdded` (前加签 or 后加签); the signers' tasks follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSignersAdded {
    /// The task they were added to.
    pub task: u32,
    /// Before or after it.
    pub kind: SignKind,
    /// Who added them.
    pub by: UserId,
    /// The signers.
    pub users: Vec<UserId>,
    /// Comment.
    pub comment: Option<String>,
}

/// Payload of `ApprovalReturned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalReturned {
    /// The task returned.
    pub task: u32,
    /// Who returned it.
    pub by: UserId,
    /// The node returned to; `None` for the submitter.
    pub to: Option<String>,
    /// Why.
    pub comment: String,
}

/// Payload of `ApprovalWithdrawn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalWithdrawn {
    /// The task whose approval is taken back.
    pub task: u32,
    /// Who.
    pub by: UserId,
}

/// Payload of `ApprovalCcSent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCcSent {
    /// The CC node, or `None` for a copy sent by hand.
    pub node: Option<String>,
    /// Who sent it by hand.
    pub by: Option<UserId>,
    /// Who is copied.
    pub to: Vec<UserId>,
    /// Comment.
    pub comment: Option<String>,
}

/// Payload of `ApprovalUrged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalUrged {
    /// Who urged.
    pub by: UserId,
    /// When.
    pub at: Timestamp,
    /// The tasks urged.
    pub tasks: Vec<u32>,
}

/// Payload of `ApprovalCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCompleted {
    /// How it ended.
    pub outcome: Outcome,
}

/// Payload of `ApprovalCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCancelled {
    /// Who.
    pub by: UserId,
    /// Why.
    pub reason: String,
}

events! {
    /// What happens to an approval.
    pub enum ApprovalEvent {
        /// Submitted.
        ApprovalSubmitted(ApprovalSubmitted) = 1,
        /// Resubmitted after a return to the submitter.
        ApprovalResubmitted(ApprovalResubmitted) = 1,
        /// An approver changed writable fields.
        ApprovalFormEdited(ApprovalFormEdited) = 1,
        /// A node was entered and its approvers resolved.
        ApprovalNodeEntered(ApprovalNodeEntered) = 1,
        /// A node passed.
        ApprovalNodePassed(ApprovalNodePassed) = 1,
        /// A task was created.
        ApprovalTaskCreated(ApprovalTaskCreated) = 1,
        /// A task was approved.
        ApprovalTaskApproved(TaskDecision) = 1,
        /// A task was rejected.
        ApprovalTaskRejected(TaskDecision) = 1,
        /// A task passed by a routing rule.
        ApprovalTaskAutoApproved(ApprovalTaskAutoApproved) = 1,
        /// A task ended without a decision.
        ApprovalTaskCancelled(ApprovalTaskCancelled) = 1,
        /// A waiting task runs (again).
        ApprovalTaskResumed(ApprovalTaskResumed) = 1,
        /// A task approved with signers after it counts as approved.
        ApprovalTaskCompleted(ApprovalTaskCompleted) = 1,
        /// A task was given to someone else.
        ApprovalTaskTransferred(TaskHandover) = 1,
        /// A task was delegated.
        ApprovalTaskDelegated(TaskHandover) = 1,
        /// Signers were added before a task.
        ApprovalSignersAdded(ApprovalSignersAdded) = 1,
        /// A delegated task came back to its owner.
        ApprovalDelegationResolved(TaskDecision) = 1,
        /// Returned.
        ApprovalReturned(ApprovalReturned) = 1,
        /// An approval was taken back.
        ApprovalWithdrawn(ApprovalWithdrawn) = 1,
        /// Users were copied.
        ApprovalCcSent(ApprovalCcSent) = 1,
        /// The submitter urged the approvers.
        ApprovalUrged(ApprovalUrged) = 1,
        /// A task fell due and its node's rule was applied.
        ApprovalTaskTimedOut(ApprovalTaskTimedOut) = 1,
        /// Approved or rejected.
        ApprovalCompleted(ApprovalCompleted) = 1,
        /// Cancelled by the submitter.
        ApprovalCancelled(ApprovalCancelled) = 1,
    }
}

/// The approval aggregate.
#[derive(Debug)]
pub struct Approval;

/// Events decided so far, with the state they lead to.
struct Draft<'a> {
    state: ApprovalState,
    events: Vec<ApprovalEvent>,
    body: &'a DefinitionBody,
    org: &'a OrgFacts,
    calendar: &'a WorkCalendar,
    now: Timestamp,
}

impl Draft<'_> {
    fn push(&mut self, event: ApprovalEvent) {
        self.state = Approval::evolve(std::mem::take(&mut self.state), &event);
        self.events.push(event);
    }

    fn cancel(&mut self, tasks: Vec<u32>, reason: CancelReason) {
        for task in tasks {
            self.push(ApprovalEvent::ApprovalTaskCancelled(ApprovalTaskCancelled { task, reason }));
        }
    }

    fn create_task(&mut self, assignee: UserId, parent: Option<(u32, SignKind)>) -> u32 {
        let (parent, sign) = (parent.map(|p| p.0), parent.map(|p| p.1));
        let task = self.state.tasks.keys().next_back().map_or(1, |n| n + 1);
        let node = self.state.route.get(self.state.at).cloned().unwrap_or_default();
        let due = match self.body.node(&node) {
            Some(Node::Approval { due: Some(rule), .. }) => {
                let due = rule.due(self.calendar, self.now);
                Some(TaskDue { at: due.at, calendar: self.calendar.version.clone(), weekends_only: due.weekends_only })
            }
            _ => None,
        };
        self.push(ApprovalEvent::ApprovalTaskCreated(ApprovalTaskCreated { task, node, assignee, parent, sign, due }));
        if parent.is_none() && !self.state.reentered && self.state.last_passed.contains(&assignee) {
            self.push(ApprovalEvent::ApprovalTaskAutoApproved(ApprovalTaskAutoApproved {
                task,
                reason: AutoReason::ApproveSequent,
            }));
        }
        task
    }

    /// Resolves `rule` for the current approval, with the routing rules applied.
    fn resolve(&self, node: &str, rule: &Approvers) -> Result<(Vec<UserId>, Vec<RoutingNote>), DomainError> {
        let state = &self.state;
        let org = self.org;
        let found: Vec<UserId> = match rule {
            Approvers::Users { users } => users.clone(),
            Approvers::Role { role } => org.role_members.get(role).cloned().unwrap_or_default(),
            Approvers::DepartmentHead { department } => org.heads.get(department).copied().into_iter().collect(),
            Approvers::Leader { level } => {
                org.leaders.get(usize::from(*level).saturating_sub(1)).copied().flatten().into_iter().collect()
            }
            Approvers::LeaderChain { levels } => {
                org.leaders.iter().take(usize::from(*levels)).flatten().copied().collect()
            }
            Approvers::Picked => state.picked.get(node).cloned().unwrap_or_default(),
            Approvers::FormField { field } => state
                .form
                .get(field)
                .and_then(|v| v.as_str())
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .map(UserId)
                .into_iter()
                .collect(),
        };
        let mut notes = Vec::new();
        let mut approvers: Vec<UserId> = Vec::new();
        for user in found {
            if !org.active.contains(&user) {
                notes.push(RoutingNote::Inactive { user });
            } else if !approvers.contains(&user) {
                approvers.push(user);
            }
        }
        let submitter = state.submitter;
        if submitter.is_some_and(|s| approvers.contains(&s)) && money_total(&self.body.form, &state.form) > 0 {
            let leader =
                org.leaders.iter().flatten().copied().find(|l| Some(*l) != submitter && org.active.contains(l));
            approvers.retain(|u| Some(*u) != submitter);
            if let Some(leader) = leader {
                if !approvers.contains(&leader) {
                    approvers.push(leader);
                }
                notes.push(RoutingNote::SelfApprovalToLeader { leader });
            }
        }
        if approvers.is_empty() {
            approvers = org.administrators.iter().copied().filter(|a| org.active.contains(a)).collect();
            notes.push(RoutingNote::MissingApprovers);
            if approvers.is_empty() {
                return Err(DomainError::Rule(format!(
                    "node {node:?} has no approver and there is no active administrator"
                )));
            }
        }
        Ok((approvers, notes))
    }

    /// Enters the route's node `index` (or completes the approval after the last one).
    fn enter(&mut self, index: usize, reentered: bool) -> Result<(), DomainError> {
        let Some(id) = self.state.route.get(index).cloned() else {
            self.push(ApprovalEvent::ApprovalCompleted(ApprovalCompleted { outcome: Outcome::Approved }));
            return Ok(());
        };
        match self.body.node(&id) {
            Some(Node::Approval { approvers, mode, .. }) => {
                let (approvers, notes) = self.resolve(&id, approvers)?;
                let mode = *mode;
                self.push(ApprovalEvent::ApprovalNodeEntered(ApprovalNodeEntered {
                    node: id,
                    approvers: approvers.clone(),
                    mode,
                    notes,
                    reentered,
                }));
                let first = if mode == Mode::Sequential { &approvers[..1] } else { &approvers[..] };
                for assignee in first {
                    self.create_task(*assignee, None);
                }
                Ok(())
            }
            Some(Node::Cc { to, .. }) => {
                let (to, _) = self.resolve(&id, to)?;
                self.push(ApprovalEvent::ApprovalCcSent(ApprovalCcSent {
                    node: Some(id),
                    by: None,
                    to,
                    comment: None,
                }));
                self.enter(index + 1, false)
            }
            // A route holds only approval and CC nodes of its own version (checked on submit).
            Some(Node::Condition { .. }) | None => {
                Err(DomainError::Rule(format!("node {id:?} is not on this version")))
            }
        }
    }

    /// Applies what the tasks' states imply: signers done, a node passed or failed, the next
    /// node entered. Runs until nothing follows.
    fn settle(&mut self) -> Result<(), DomainError> {
        // Each round either stops or passes a node or creates a task, so the route bounds it.
        for _ in 0..=(self.state.route.len() + 1) * (self.state.approvers.len() + 2) + MAX_ADDED_USERS {
            if self.state.status != ApprovalStatus::Running {
                return Ok(());
            }
            let state = &self.state;
            let signers_done = |n: u32| state.tasks.values().filter(|c| c.parent == Some(n)).all(|c| !c.status.live());
            let resumed: Vec<u32> = state
                .tasks
                .iter()
                .filter(|(n, t)| t.status == TaskStatus::Waiting && signers_done(**n))
                .map(|(n, _)| *n)
                .collect();
            let completed: Vec<u32> = state
                .tasks
                .iter()
                .filter(|(n, t)| t.status == TaskStatus::Approving && signers_done(**n))
                .map(|(n, _)| *n)
                .collect();
            if !resumed.is_empty() || !completed.is_empty() {
                for task in resumed {
                    self.push(ApprovalEvent::ApprovalTaskResumed(ApprovalTaskResumed { task }));
                }
                for task in completed {
                    self.push(ApprovalEvent::ApprovalTaskCompleted(ApprovalTaskCompleted { task }));
                }
                continue;
            }
            let signer_rejected = state
                .tasks
                .values()
                .any(|t| t.entry == state.entry && t.parent.is_some() && t.status == TaskStatus::Rejected);
            let rejected = state.node_tasks().any(|(_, t)| t.status == TaskStatus::Rejected);
            let approved = state.node_tasks().filter(|(_, t)| t.status.approved()).count();
            let live = state.node_tasks().filter(|(_, t)| t.status.live()).count();
            let total = state.approvers.len();
            let passed = match state.mode {
                _ if signer_rejected => Some(false),
                Some(Mode::Any) if approved > 0 => Some(true),
                Some(Mode::Any) => rejected.then_some(false),
                Some(Mode::All { pass_percent }) => {
                    let need = total * usize::from(pass_percent);
                    if approved * 100 >= need {
                        Some(true)
                    } else if (approved + live) * 100 < need {
                        Some(false)
                    } else {
                        None
                    }
                }
                Some(Mode::Sequential) => {
                    if rejected {
                        Some(false)
                    } else if live > 0 {
                        None
                    } else if let Some(next) = state.approvers.get(approved) {
                        let next = *next;
                        self.create_task(next, None);
                        continue;
                    } else {
                        Some(true)
                    }
                }
                None => None,
            };
            match passed {
                None => return Ok(()),
                Some(true) => {
                    let node = state.route.get(state.at).cloned().unwrap_or_default();
                    let rest = self.state.live_tasks();
                    self.cancel(rest, CancelReason::NodeDecided);
                    self.push(ApprovalEvent::ApprovalNodePassed(ApprovalNodePassed { node }));
                    self.enter(self.state.at + 1, false)?;
                }
                Some(false) => {
                    let rest = self.state.live_tasks();
                    self.cancel(rest, CancelReason::Rejected);
                    self.push(ApprovalEvent::ApprovalCompleted(ApprovalCompleted { outcome: Outcome::Rejected }));
                }
            }
        }
        Err(DomainError::Rule("the approval's automatic steps did not settle".into()))
    }
}

fn comment(v: &mut Validator, comment: Option<&str>) -> Option<String> {
    v.optional_text("comment", comment, MAX_TEXT_CHARS)
}

fn required_comment(comment: &str) -> Result<String, DomainError> {
    let mut v = Validator::new();
    let text = v.text("comment", comment, MAX_TEXT_CHARS);
    v.finish(text)
}

fn optional_comment(text: Option<&str>) -> Result<Option<String>, DomainError> {
    let mut v = Validator::new();
    let text = comment(&mut v, text);
    v.finish(text)
}

/// The form checked against `body`, with the route it takes.
fn route_for(body: &DefinitionBody, form: &FormValues) -> Result<Vec<String>, DomainError> {
    let mut v = Validator::new();
    check_values(&mut v, &body.form, form);
    v.finish(())?;
    let route: Vec<String> = body.route(form).iter().map(|n| n.id().to_owned()).collect();
    if route.is_empty() {
        return Err(DomainError::Rule("this form's route has no node".into()));
    }
    Ok(route)
}

impl ApprovalState {
    /// The task `n`, which `actor` must hold in one of `statuses`.
    fn own_task(
        &self,
        n: u32,
        actor: UserId,
        statuses: &[TaskStatus],
        action: &'static str,
    ) -> Result<&TaskState, DomainError> {
        use crate::aggregate::Lifecycle as _;
        self.status.require(&[ApprovalStatus::Running], action)?;
        let task = self.tasks.get(&n).ok_or(DomainError::NotFound { entity: "approval task" })?;
        if task.assignee != actor {
            return Err(DomainError::NotYours { entity: "approval task", action, who: "its assignee" });
        }
        if !statuses.contains(&task.status) {
            return Err(DomainError::InvalidTransition { entity: "approval task", status: task.status.name(), action });
        }
        Ok(task)
    }
}

impl ApprovalState {
    /// Checks a 转办 or 委派 of `task` by `actor` to `to`.
    #[allow(clippy::too_many_arguments)]
    fn handover(
        &self,
        task: u32,
        actor: UserId,
        to: UserId,
        comment: Option<&str>,
        org: &OrgFacts,
        money: bool,
        action: &'static str,
    ) -> Result<TaskHandover, DomainError> {
        // A running task whose assignee may no longer act (deactivated, locked) would wait
        // for good: an approval administrator transfers it for them.
        let stranded = self
            .tasks
            .get(&task)
            .filter(|t| t.status == TaskStatus::Running && !org.active.contains(&t.assignee))
            .map(|t| t.assignee);
        let from = match stranded {
            Some(assignee) if action == "transfer" && org.administrators.contains(&actor) => {
                use crate::aggregate::Lifecycle as _;
                self.status.require(&[ApprovalStatus::Running], action)?;
                assignee
            }
            _ => self.own_task(task, actor, &[TaskStatus::Running], action)?.assignee,
        };
        let mut v = Validator::new();
        let comment = self::comment(&mut v, comment);
        if let Some((code, message)) = self.refuse_assignee(from, to, org, money) {
            v.fail("to", code, message);
        }
        v.finish(TaskHandover { task, from, to, comment })
    }

    /// Why `user` may not be given a task of this approval's current node by `actor`, if not:
    /// the actor themself, an inactive user, the submitter of a request involving money
    /// (who never approves it), or someone holding a task at the node already.
    fn refuse_assignee(
        &self,
        actor: UserId,
        user: UserId,
        org: &OrgFacts,
        money: bool,
    ) -> Option<(FieldCode, &'static str)> {
        if user == actor {
            Some((FieldCode::InvalidFormat, "the task is yours already"))
        } else if !org.active.contains(&user) {
            Some((FieldCode::InvalidFormat, "not an active user"))
        } else if money && self.submitter == Some(user) {
            Some((FieldCode::InvalidFormat, "the submitter does not approve their own request involving money"))
        } else if self.tasks.values().any(|t| t.entry == self.entry && t.status.live() && t.assignee == user) {
            Some((FieldCode::Duplicate, "already has a task at this node"))
        } else {
            None
        }
    }
}

impl TaskStatus {
    fn name(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting for added signers",
            TaskStatus::Queued => "waiting for the approval it follows",
            TaskStatus::Approving => "approved, waiting for added signers",
            TaskStatus::Delegated => "delegated",
            TaskStatus::Approved => "approved",
            TaskStatus::AutoApproved => "passed automatically",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Returned => "returned",
            TaskStatus::Withdrawn => "withdrawn",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

impl Aggregate for Approval {
    type State = ApprovalState;
    type Command = ApprovalCommand;
    type Event = ApprovalEvent;

    #[allow(clippy::too_many_lines)] // one arm per operation
    fn decide(
        state: &ApprovalState,
        command: ApprovalCommand,
        ctx: &Context,
    ) -> Result<Vec<ApprovalEvent>, DomainError> {
        use crate::aggregate::Lifecycle as _;
        use ApprovalEvent as E;
        let ApprovalCommand { act, env } = command;
        let actor = match (ctx.actor, &act) {
            (Some(actor), _) => actor,
            // The scheduler's ticks act for nobody; the timeline records them as the system's.
            (None, Act::Tick) => UserId(uuid::Uuid::nil()),
            (None, _) => return Err(DomainError::Rule("an approval needs an acting user".into())),
        };
        let definition = &env.definition;
        if definition.body.hash() != definition.hash {
            return Err(DomainError::Rule("the definition's hash does not match its body".into()));
        }
        if let Some(pinned) = &state.definition {
            if pinned.hash != definition.hash {
                return Err(DomainError::Rule(format!(
                    "this approval runs on version {} (hash {}); give that version",
                    pinned.version, pinned.hash
                )));
            }
        }
        let mut draft = Draft {
            state: state.clone(),
            events: Vec::new(),
            body: &definition.body,
            org: &env.org,
            calendar: &env.calendar,
            now: ctx.now,
        };
        let submitter = state.submitter;
        let money = money_total(&definition.body.form, &state.form) > 0;
        match act {
            Act::Submit { id, form, picked } => {
                if state.status != ApprovalStatus::Absent {
                    return Err(DomainError::AlreadyExists { entity: "approval" });
                }
                let route = route_for(&definition.body, &form)?;
                let mut v = Validator::new();
                for (node, users) in &picked {
                    let picks =
                        matches!(definition.body.node(node), Some(Node::Approval { approvers: Approvers::Picked, .. }));
                    v.require(
                        picks,
                        format!("picked.{node}"),
                        FieldCode::InvalidFormat,
                        "this node's approvers are not picked",
                    );
                    v.at_most(&format!("picked.{node}"), users, MAX_ADDED_USERS);
                    v.distinct(&format!("picked.{node}"), users);
                }
                v.finish(())?;
                draft.push(E::ApprovalSubmitted(ApprovalSubmitted {
                    approval_id: id,
                    definition: DefinitionRef {
                        definition_id: definition.definition_id,
                        version: definition.version,
                        hash: definition.hash.clone(),
                    },
                    submitter: actor,
                    department: env.org.department,
                    at: ctx.now,
                    form_hash: form_hash(&form),
                    form,
                    picked,
                    route,
                }));
                draft.enter(0, false)?;
            }
            Act::Approve { task, comment, edits } => {
                let held = state.own_task(task, actor, &[TaskStatus::Running], "approve")?;
                let comment = optional_comment(comment.as_deref())?;
                if !edits.is_empty() {
                    let mut v = Validator::new();
                    for field in edits.keys() {
                        v.require(
                            definition.body.access(&held.node, field) == FieldAccess::Write,
                            format!("edits.{field}"),
                            FieldCode::InvalidFormat,
                            "this node's approvers may not change this field",
                        );
                    }
                    v.finish(())?;
                    let mut form = state.form.clone();
                    form.extend(edits);
                    form.retain(|_, value| !value.is_null());
                    let mut v = Validator::new();
                    check_values(&mut v, &definition.body.form, &form);
                    v.finish(())?;
                    if form != state.form {
                        draft.push(E::ApprovalFormEdited(ApprovalFormEdited {
                            task,
                            by: actor,
                            form_hash: form_hash(&form),
                            form,
                        }));
                    }
                }
                draft.push(E::ApprovalTaskApproved(TaskDecision { task, by: actor, comment }));
                // Signers added after this task start now.
                let queued: Vec<u32> = state
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.parent == Some(task) && t.status == TaskStatus::Queued)
                    .map(|(n, _)| *n)
                    .collect();
                for signer in queued {
                    draft.push(E::ApprovalTaskResumed(ApprovalTaskResumed { task: signer }));
                }
            }
            Act::Reject { task, comment } => {
                state.own_task(task, actor, &[TaskStatus::Running], "reject")?;
                let comment = Some(required_comment(&comment)?);
                draft.push(E::ApprovalTaskRejected(TaskDecision { task, by: actor, comment }));
            }
            Act::Return { task, to, comment } => {
                let held = state.own_task(task, actor, &[TaskStatus::Running], "return")?;
                let comment = required_comment(&comment)?;
                let target = match &to {
                    None => None,
                    Some(node) => match state.route.iter().position(|n| n == node) {
                        Some(i) if i < state.at && held.parent.is_none() => Some(i),
                        _ => {
                            return Err(DomainError::Validation(vec![crate::error::FieldError {
                                field: "to".into(),
                                code: FieldCode::InvalidFormat,
                                message: format!(
                                    "an approval returns only to an earlier node of its route or to the submitter, not {node:?}"
                                ),
                            }]))
                        }
                    },
                };
                let rest: Vec<u32> = state.live_tasks().into_iter().filter(|n| *n != task).collect();
                draft.push(E::ApprovalReturned(ApprovalReturned { task, by: actor, to, comment }));
                draft.cancel(rest, CancelReason::Returned);
                if let Some(index) = target {
                    draft.enter(index, true)?;
                }
            }
            Act::Resubmit { form } => {
                if state.status != ApprovalStatus::Absent && submitter != Some(actor) {
                    return Err(DomainError::NotYours { entity: "approval", action: "resubmit", who: "its submitter" });
                }
                state.status.require(&[ApprovalStatus::Returned], "resubmit")?;
                let route = route_for(&definition.body, &form)?;
                draft.push(E::ApprovalResubmitted(ApprovalResubmitted { form_hash: form_hash(&form), form, route }));
                draft.enter(0, false)?;
            }
            Act::Transfer { task, to, comment } => {
                let handover = state.handover(task, actor, to, comment.as_deref(), &env.org, money, "transfer")?;
                draft.push(E::ApprovalTaskTransferred(handover));
            }
            Act::Delegate { task, to, comment } => {
                let handover = state.handover(task, actor, to, comment.as_deref(), &env.org, money, "delegate")?;
                draft.push(E::ApprovalTaskDelegated(handover));
            }
            Act::ResolveDelegation { task, comment } => {
                state.own_task(task, actor, &[TaskStatus::Delegated], "hand back")?;
                let comment = optional_comment(comment.as_deref())?;
                draft.push(E::ApprovalDelegationResolved(TaskDecision { task, by: actor, comment }));
            }
            Act::AddSigners { task, kind, users, comment } => {
                state.own_task(task, actor, &[TaskStatus::Running], "add signers to")?;
                let mixed =
                    state.tasks.values().any(|c| c.parent == Some(task) && c.status.live() && c.sign != Some(kind));
                if mixed {
                    return Err(DomainError::Rule(
                        "this task has signers of the other kind; remove them before adding these".into(),
                    ));
                }
                let mut v = Validator::new();
                let comment = self::comment(&mut v, comment.as_deref());
                v.require(!users.is_empty(), "users", FieldCode::Required, "name at least one signer");
                if users.len() > MAX_ADDED_USERS {
                    v.at_most("users", &users, MAX_ADDED_USERS);
                    return v.finish(()).map(|()| Vec::new());
                }
                v.distinct("users", &users);
                for (i, user) in users.iter().enumerate() {
                    if let Some((code, message)) = state.refuse_assignee(actor, *user, &env.org, money) {
                        v.fail(format!("users[{i}]"), code, message);
                    }
                }
                v.finish(())?;
                draft.push(E::ApprovalSignersAdded(ApprovalSignersAdded {
                    task,
                    kind,
                    by: actor,
                    users: users.clone(),
                    comment,
                }));
                for user in users {
                    draft.create_task(user, Some((task, kind)));
                }
            }
            Act::RemoveSigner { task } => {
                state.status.require(&[ApprovalStatus::Running], "remove a signer from")?;
                let signer = state.tasks.get(&task).ok_or(DomainError::NotFound { entity: "approval task" })?;
                let parent = signer.parent.and_then(|p| state.tasks.get(&p));
                match parent {
                    Some(parent) if parent.assignee == actor => {}
                    Some(_) => {
                        return Err(DomainError::NotYours {
                            entity: "approval task",
                            action: "remove",
                            who: "who added the signer",
                        })
                    }
                    None => {
                        return Err(DomainError::Validation(vec![crate::error::FieldError {
                            field: "task".into(),
                            code: FieldCode::InvalidFormat,
                            message: format!("task {task} is not an added signer"),
                        }]))
                    }
                }
                if !signer.status.live() {
                    return Err(DomainError::InvalidTransition {
                        entity: "approval task",
                        status: signer.status.name(),
                        action: "remove",
                    });
                }
                draft.cancel(vec![task], CancelReason::SignerRemoved);
            }
            Act::Withdraw { task } => {
                state.status.require(&[ApprovalStatus::Running], "withdraw an approval of")?;
                let held = state.tasks.get(&task).ok_or(DomainError::NotFound { entity: "approval task" })?;
                if held.assignee != actor {
                    return Err(DomainError::NotYours {
                        entity: "approval task",
                        action: "withdraw",
                        who: "who approved it",
                    });
                }
                if held.status != TaskStatus::Approved || held.parent.is_some() {
                    return Err(DomainError::InvalidTransition {
                        entity: "approval task",
                        status: held.status.name(),
                        action: "withdraw",
                    });
                }
                if held.decided != Some(state.decisions) {
                    return Err(DomainError::InvalidTransition {
                        entity: "approval task",
                        status: "followed by a later decision",
                        action: "withdraw",
                    });
                }
                // What the approval caused: tasks created at or after it.
                let caused: Vec<u32> = state
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.status.live() && Some(t.born) >= held.decided)
                    .map(|(n, _)| *n)
                    .collect();
                let same_entry = held.entry == state.entry;
                draft.push(E::ApprovalWithdrawn(ApprovalWithdrawn { task, by: actor }));
                draft.cancel(caused, CancelReason::Withdrawn);
                if !same_entry {
                    // The node passed: it is entered again for the withdrawer alone, whose
                    // approval was the one taken back.
                    let node = held.node.clone();
                    draft.push(E::ApprovalNodeEntered(ApprovalNodeEntered {
                        node,
                        approvers: vec![actor],
                        mode: Mode::Any,
                        notes: Vec::new(),
                        reentered: true,
                    }));
                }
                // The approver decides again.
                draft.create_task(actor, None);
            }
            Act::Cc { to, comment } => {
                state.status.require(
                    &[
                        ApprovalStatus::Running,
                        ApprovalStatus::Returned,
                        ApprovalStatus::Approved,
                        ApprovalStatus::Rejected,
                    ],
                    "copy",
                )?;
                let involved = submitter == Some(actor) || state.tasks.values().any(|t| t.assignee == actor);
                if !involved {
                    return Err(DomainError::NotYours {
                        entity: "approval",
                        action: "copy",
                        who: "its submitter and approvers",
                    });
                }
                let mut v = Validator::new();
                let comment = self::comment(&mut v, comment.as_deref());
                v.require(!to.is_empty(), "to", FieldCode::Required, "name at least one user");
                if to.len() > MAX_ADDED_USERS {
                    // One error, not one per entry of an oversized list.
                    v.at_most("to", &to, MAX_ADDED_USERS);
                    return v.finish(()).map(|()| Vec::new());
                }
                v.distinct("to", &to);
                for (i, user) in to.iter().enumerate() {
                    v.require(
                        env.org.active.contains(user),
                        format!("to[{i}]"),
                        FieldCode::InvalidFormat,
                        "not an active user",
                    );
                }
                v.finish(())?;
                // Those who see it already (copied before, or its submitter) are not copied again.
                let to: Vec<UserId> =
                    to.into_iter().filter(|u| !state.copied.contains(u) && Some(*u) != submitter).collect();
                if to.is_empty() {
                    return Ok(Vec::new());
                }
                draft.push(E::ApprovalCcSent(ApprovalCcSent { node: None, by: Some(actor), to, comment }));
            }
            Act::Cancel { reason } => {
                state.status.require(&[ApprovalStatus::Running, ApprovalStatus::Returned], "cancel")?;
                if submitter != Some(actor) {
                    return Err(DomainError::NotYours { entity: "approval", action: "cancel", who: "its submitter" });
                }
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, MAX_TEXT_CHARS);
                let reason = v.finish(reason)?;
                let rest = state.live_tasks();
                draft.cancel(rest, CancelReason::ApprovalCancelled);
                draft.push(E::ApprovalCancelled(ApprovalCancelled { by: actor, reason }));
            }
            Act::Urge => {
                state.status.require(&[ApprovalStatus::Running], "urge")?;
                if submitter != Some(actor) {
                    return Err(DomainError::NotYours { entity: "approval", action: "urge", who: "its submitter" });
                }
                if let Some(last) = state.last_urged {
                    let elapsed = (ctx.now.0 - last.0) / 1_000_000;
                    if elapsed < URGE_INTERVAL_SECS {
                        return Err(DomainError::TooSoon {
                            action: "urge",
                            retry_after_secs: URGE_INTERVAL_SECS - elapsed,
                        });
                    }
                }
                draft.push(E::ApprovalUrged(ApprovalUrged { by: actor, at: ctx.now, tasks: state.live_tasks() }));
            }
            Act::Tick => {
                if state.status != ApprovalStatus::Running {
                    return Ok(Vec::new());
                }
                for (task, held) in &state.tasks {
                    let fell_due = held.due.is_some_and(|due| due <= ctx.now) && !held.timed_out;
                    if !fell_due || !matches!(held.status, TaskStatus::Running | TaskStatus::Delegated) {
                        continue;
                    }
                    let rule = match definition.body.node(&held.node) {
                        Some(Node::Approval { due: Some(rule), .. }) => *rule,
                        _ => continue,
                    };
                    let busy = |user: &UserId| {
                        state.tasks.values().any(|t| t.entry == state.entry && t.status.live() && t.assignee == *user)
                    };
                    let (action, to) = match rule.on_due {
                        OnDue::TransferToLeader => {
                            let owner = held.owner.unwrap_or(held.assignee);
                            let leader = env
                                .org
                                .leader_of
                                .get(&owner)
                                .copied()
                                .into_iter()
                                .chain(env.org.administrators.iter().copied())
                                .find(|u| *u != owner && env.org.active.contains(u) && !busy(u));
                            // With nobody to give it to, the assignee is reminded instead.
                            leader.map_or((OnDue::Remind, None), |l| (OnDue::TransferToLeader, Some(l)))
                        }
                        other => (other, None),
                    };
                    draft.push(E::ApprovalTaskTimedOut(ApprovalTaskTimedOut { task: *task, action, to }));
                }
            }
        }
        draft.settle()?;
        Ok(draft.events)
    }

    fn evolve(mut state: ApprovalState, event: &ApprovalEvent) -> ApprovalState {
        use ApprovalEvent as E;
        let decide = |state: &mut ApprovalState, task: u32, status: TaskStatus| {
            state.decisions += 1;
            let ordinal = state.decisions;
            if let Some(t) = state.tasks.get_mut(&task) {
                t.status = status;
                t.decided = Some(ordinal);
            }
        };
        match event {
            E::ApprovalSubmitted(e) => {
                state.id = Some(e.approval_id);
                state.status = ApprovalStatus::Running;
                state.definition = Some(e.definition.clone());
                state.submitter = Some(e.submitter);
                state.department = e.department;
                state.submitted_at = e.at;
                state.form = e.form.clone();
                state.picked = e.picked.clone();
                state.route = e.route.clone();
                state.at = 0;
            }
            E::ApprovalResubmitted(e) => {
                state.status = ApprovalStatus::Running;
                state.form = e.form.clone();
                state.route = e.route.clone();
                state.at = 0;
                state.last_passed.clear();
            }
            E::ApprovalNodeEntered(e) => {
                state.at = state.route.iter().position(|n| *n == e.node).unwrap_or(state.at);
                state.approvers = e.approvers.clone();
                state.mode = Some(e.mode);
                state.entry += 1;
                state.reentered = e.reentered;
            }
            E::ApprovalNodePassed(e) => {
                state.last_passed = state
                    .tasks
                    .values()
                    .filter(|t| t.entry == state.entry && t.node == e.node && t.parent.is_none() && t.status.approved())
                    .map(|t| t.assignee)
                    .collect();
            }
            E::ApprovalTaskCreated(e) => {
                if e.sign != Some(SignKind::After) {
                    if let Some(parent) = e.parent.and_then(|p| state.tasks.get_mut(&p)) {
                        parent.status = TaskStatus::Waiting;
                    }
                }
                state.tasks.insert(
                    e.task,
                    TaskState {
                        node: e.node.clone(),
                        assignee: e.assignee,
                        owner: None,
                        status: if e.sign == Some(SignKind::After) { TaskStatus::Queued } else { TaskStatus::Running },
                        parent: e.parent,
                        sign: e.sign,
                        entry: state.entry,
                        decided: None,
                        born: state.decisions,
                        due: e.due.as_ref().map(|d| d.at),
                        timed_out: false,
                    },
                );
            }
            E::ApprovalTaskApproved(e) => {
                let waits = state
                    .tasks
                    .values()
                    .any(|c| c.parent == Some(e.task) && c.sign == Some(SignKind::After) && c.status.live());
                decide(&mut state, e.task, if waits { TaskStatus::Approving } else { TaskStatus::Approved });
            }
            E::ApprovalTaskCompleted(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.status = TaskStatus::Approved;
                }
            }
            E::ApprovalTaskRejected(e) => decide(&mut state, e.task, TaskStatus::Rejected),
            E::ApprovalTaskAutoApproved(e) => decide(&mut state, e.task, TaskStatus::AutoApproved),
            E::ApprovalReturned(e) => {
                decide(&mut state, e.task, TaskStatus::Returned);
                if e.to.is_none() {
                    state.status = ApprovalStatus::Returned;
                    state.approvers.clear();
                    state.mode = None;
                }
            }
            E::ApprovalTaskCancelled(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.status = TaskStatus::Cancelled;
                }
            }
            E::ApprovalTaskResumed(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.status = TaskStatus::Running;
                }
            }
            E::ApprovalTaskTransferred(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.assignee = e.to;
                }
            }
            E::ApprovalTaskDelegated(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.owner = Some(e.from);
                    t.assignee = e.to;
                    t.status = TaskStatus::Delegated;
                }
            }
            E::ApprovalDelegationResolved(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.assignee = t.owner.take().unwrap_or(t.assignee);
                    t.status = TaskStatus::Running;
                }
            }
            E::ApprovalWithdrawn(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.status = TaskStatus::Withdrawn;
                }
                state.decisions += 1;
            }
            E::ApprovalCcSent(e) => {
                state.copied.extend(e.to.iter().copied());
                if let Some(node) = &e.node {
                    state.at = state.route.iter().position(|n| n == node).unwrap_or(state.at);
                }
            }
            E::ApprovalUrged(e) => state.last_urged = Some(e.at),
            E::ApprovalSignersAdded(_) => {}
            E::ApprovalFormEdited(e) => state.form = e.form.clone(),
            E::ApprovalTaskTimedOut(e) => {
                if let Some(t) = state.tasks.get_mut(&e.task) {
                    t.timed_out = true;
                }
                match (e.action, e.to) {
                    (OnDue::Approve, _) => decide(&mut state, e.task, TaskStatus::AutoApproved),
                    (OnDue::Reject, _) => decide(&mut state, e.task, TaskStatus::Rejected),
                    (OnDue::TransferToLeader, Some(to)) => {
                        if let Some(t) = state.tasks.get_mut(&e.task) {
                            t.assignee = to;
                            t.owner = None;
                            t.status = TaskStatus::Running;
                        }
                    }
                    _ => {}
                }
            }
            E::ApprovalCompleted(e) => {
                state.status = match e.outcome {
                    Outcome::Approved => ApprovalStatus::Approved,
                    Outcome::Rejected => ApprovalStatus::Rejected,
                };
            }
            E::ApprovalCancelled(_) => state.status = ApprovalStatus::Cancelled,
        }
        state
    }
}
