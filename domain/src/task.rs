//! The task aggregate: work with a priority, an assignee, a due time and a reminder, related
//! to a customer or a service case.
//!
//! Status flow: `open ──start──► in_progress ──complete──► done`; `open`/`in_progress`
//! `──cancel──► cancelled`; `open ──complete──► done`; `done`/`cancelled` `──reopen──► open`.
//! Anything else is refused. A reminder is never after the due time.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Lifecycle};
use crate::context::Context;
use crate::customer::MAX_TEXT_CHARS;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{CaseId, CustomerId, EntryId, TaskId, Timestamp, UserId};
use crate::validate::Validator;

/// How urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Whenever.
    Low,
    /// The default.
    Normal,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

/// What a task is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Related {
    /// A customer.
    Customer(CustomerId),
    /// A service case.
    Case(CaseId),
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not created yet.
    #[default]
    Uncreated,
    /// To do.
    Open,
    /// Being done.
    InProgress,
    /// Done.
    Done,
    /// Will not be done.
    Cancelled,
}

impl Lifecycle for TaskStatus {
    const ENTITY: &'static str = "task";
    const ABSENT: Self = TaskStatus::Uncreated;

    fn name(self) -> &'static str {
        match self {
            TaskStatus::Uncreated => "uncreated",
            TaskStatus::Open => "open",
            TaskStatus::InProgress => "in progress",
            TaskStatus::Done => "done",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// The folded task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskState {
    /// Its id.
    pub id: Option<TaskId>,
    /// Where it stands.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Option<Priority>,
    /// Who does it.
    pub assignee: Option<UserId>,
    /// When it is due.
    pub due: Option<Timestamp>,
    /// When to remind.
    pub reminder: Option<Timestamp>,
    /// Comments so far.
    pub comments: Vec<EntryId>,
}

/// What can be asked of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Create a task.
    Create {
        /// Chosen by the caller.
        id: TaskId,
        /// Title.
        title: String,
        /// Details.
        description: Option<String>,
        /// Priority.
        priority: Priority,
        /// Who does it.
        assignee: UserId,
        /// When it is due.
        due: Option<Timestamp>,
        /// When to remind the assignee.
        reminder: Option<Timestamp>,
        /// What it is about.
        related: Option<Related>,
    },
    /// Give it to someone else.
    Reassign {
        /// Who.
        assignee: UserId,
    },
    /// Start work.
    Start,
    /// Finish.
    Complete,
    /// Reopen a done or cancelled task.
    Reopen,
    /// Cancel.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Add a comment.
    Comment {
        /// Chosen by the caller.
        id: EntryId,
        /// The comment.
        text: String,
    },
    /// Change the priority.
    ChangePriority {
        /// The new priority.
        priority: Priority,
    },
    /// Change (or clear) the due time.
    ChangeDue {
        /// When; `None` clears it.
        due: Option<Timestamp>,
    },
    /// Set (or clear) the reminder.
    SetReminder {
        /// When; `None` clears it.
        reminder: Option<Timestamp>,
    },
}

/// Payload of `TaskCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    /// The task.
    pub task_id: TaskId,
    /// Title.
    pub title: String,
    /// Details.
    pub description: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Assignee.
    pub assignee: UserId,
    /// Due.
    pub due: Option<Timestamp>,
    /// Reminder.
    pub reminder: Option<Timestamp>,
    /// What it is about.
    pub related: Option<Related>,
    /// Who created it.
    pub created_by: Option<UserId>,
}

/// Payload of `TaskReassigned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReassigned {
    /// Previous assignee.
    pub from: Option<UserId>,
    /// New assignee.
    pub to: UserId,
}

/// Payload of `TaskStatusChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusChanged {
    /// Before.
    pub from: TaskStatus,
    /// After.
    pub to: TaskStatus,
    /// Why (for cancellations).
    pub reason: Option<String>,
}

/// Payload of `TaskCommented`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCommented {
    /// The comment.
    pub comment_id: EntryId,
    /// Its text.
    pub text: String,
}

/// Payload of `TaskPriorityChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPriorityChanged {
    /// The new priority.
    pub priority: Priority,
}

/// Payload of `TaskScheduleChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskScheduleChanged {
    /// Due time after the change.
    pub due: Option<Timestamp>,
    /// Reminder after the change.
    pub reminder: Option<Timestamp>,
}

events! {
    /// What happens to tasks.
    pub enum TaskEvent {
        /// Created.
        TaskCreated(TaskCreated) = 1,
        /// Given to someone else.
        TaskReassigned(TaskReassigned) = 1,
        /// Started, completed, cancelled or reopened.
        TaskStatusChanged(TaskStatusChanged) = 1,
        /// Commented.
        TaskCommented(TaskCommented) = 1,
        /// Priority changed.
        TaskPriorityChanged(TaskPriorityChanged) = 1,
        /// Due time or reminder changed.
        TaskScheduleChanged(TaskScheduleChanged) = 1,
    }
}

fn check_schedule(v: &mut Validator, due: Option<Timestamp>, reminder: Option<Timestamp>) {
    if let (Some(due), Some(reminder)) = (due, reminder) {
        v.require(reminder <= due, "reminder", FieldCode::OutOfRange, "must not be after the due time");
    }
}

fn transition(
    state: &TaskState,
    allowed: &[TaskStatus],
    to: TaskStatus,
    action: &'static str,
    reason: Option<String>,
) -> Result<TaskEvent, DomainError> {
    state.status.require(allowed, action)?;
    Ok(TaskEvent::TaskStatusChanged(TaskStatusChanged { from: state.status, to, reason }))
}

fn require_live(state: &TaskState, action: &'static str) -> Result<(), DomainError> {
    state.status.require(&[TaskStatus::Open, TaskStatus::InProgress], action)
}

/// The task aggregate.
#[derive(Debug)]
pub struct Task;

impl Aggregate for Task {
    type State = TaskState;
    type Command = TaskCommand;
    type Event = TaskEvent;

    fn decide(state: &TaskState, command: TaskCommand, ctx: &Context) -> Result<Vec<TaskEvent>, DomainError> {
        use TaskCommand as C;
        use TaskEvent as E;
        use TaskStatus as S;
        let event = match command {
            C::Create { id, title, description, priority, assignee, due, reminder, related } => {
                if state.status != S::Uncreated {
                    return Err(DomainError::AlreadyExists { entity: "task" });
                }
                let mut v = Validator::new();
                let title = v.text("title", &title, 200);
                let description = v.optional_text("description", description.as_deref(), MAX_TEXT_CHARS);
                check_schedule(&mut v, due, reminder);
                let (title, description) = v.finish((title, description))?;
                E::TaskCreated(TaskCreated {
                    task_id: id,
                    title,
                    description,
                    priority,
                    assignee,
                    due,
                    reminder,
                    related,
                    created_by: ctx.actor,
                })
            }
            C::Reassign { assignee } => {
                require_live(state, "reassign")?;
                if state.assignee == Some(assignee) {
                    return Ok(Vec::new());
                }
                E::TaskReassigned(TaskReassigned { from: state.assignee, to: assignee })
            }
            C::Start => transition(state, &[S::Open], S::InProgress, "start", None)?,
            C::Complete => transition(state, &[S::Open, S::InProgress], S::Done, "complete", None)?,
            C::Reopen => transition(state, &[S::Done, S::Cancelled], S::Open, "reopen", None)?,
            C::Cancel { reason } => {
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, MAX_TEXT_CHARS);
                let reason = v.finish(reason)?;
                transition(state, &[S::Open, S::InProgress], S::Cancelled, "cancel", Some(reason))?
            }
            C::Comment { id, text } => {
                if state.status == S::Uncreated {
                    return Err(DomainError::NotFound { entity: "task" });
                }
                if state.comments.contains(&id) {
                    return Err(DomainError::AlreadyExists { entity: "comment" });
                }
                let mut v = Validator::new();
                let text = v.text("text", &text, MAX_TEXT_CHARS);
                E::TaskCommented(TaskCommented { comment_id: id, text: v.finish(text)? })
            }
            C::ChangePriority { priority } => {
                require_live(state, "change the priority of")?;
                if state.priority == Some(priority) {
                    return Ok(Vec::new());
                }
                E::TaskPriorityChanged(TaskPriorityChanged { priority })
            }
            C::ChangeDue { due } => {
                require_live(state, "reschedule")?;
                let mut v = Validator::new();
                check_schedule(&mut v, due, state.reminder);
                v.finish(())?;
                E::TaskScheduleChanged(TaskScheduleChanged { due, reminder: state.reminder })
            }
            C::SetReminder { reminder } => {
                require_live(state, "set a reminder on")?;
                let mut v = Validator::new();
                check_schedule(&mut v, state.due, reminder);
                v.finish(())?;
                E::TaskScheduleChanged(TaskScheduleChanged { due: state.due, reminder })
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: TaskState, event: &TaskEvent) -> TaskState {
        use TaskEvent as E;
        match event {
            E::TaskCreated(e) => {
                state.id = Some(e.task_id);
                state.status = TaskStatus::Open;
                state.priority = Some(e.priority);
                state.assignee = Some(e.assignee);
                state.due = e.due;
                state.reminder = e.reminder;
            }
            E::TaskReassigned(e) => state.assignee = Some(e.to),
            E::TaskStatusChanged(e) => state.status = e.to,
            E::TaskCommented(e) => state.comments.push(e.comment_id),
            E::TaskPriorityChanged(e) => state.priority = Some(e.priority),
            E::TaskScheduleChanged(e) => {
                state.due = e.due;
                state.reminder = e.reminder;
            }
        }
        state
    }
}
