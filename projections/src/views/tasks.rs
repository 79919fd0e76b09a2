//! The task board: tasks by assignee, status, priority and due time; overdue tasks; reminders
//! due in a window.
//!
//! Invariant: `reminders` holds (reminder, id) of exactly the open tasks with a reminder, so
//! that the next reminder and those due in a window are range reads.

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::ids::{TaskId, Timestamp, UserId};
use oacis_domain::task::{Priority, Related, TaskEvent, TaskStatus};

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};

/// One task on the board.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRow {
    /// Its id.
    pub id: TaskId,
    /// Title.
    pub title: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Priority,
    /// Who does it.
    pub assignee: UserId,
    /// When it is due.
    pub due: Option<Timestamp>,
    /// When to remind.
    pub reminder: Option<Timestamp>,
    /// What it is about (as JSON in a snapshot: its serde shape is an adjacently tagged enum).
    #[serde(with = "crate::snapshot::as_json")]
    pub related: Option<Related>,
    /// Comments so far.
    pub comments: usize,
}

impl TaskRow {
    fn is_open(&self) -> bool {
        matches!(self.status, TaskStatus::Open | TaskStatus::InProgress)
    }

    /// Its entry in the reminder index, if it belongs there.
    fn reminder_key(&self) -> Option<(Timestamp, TaskId)> {
        self.reminder.filter(|_| self.is_open()).map(|at| (at, self.id))
    }
}

/// The task board view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskBoard {
    tasks: BTreeMap<TaskId, TaskRow>,
    reminders: BTreeSet<(Timestamp, TaskId)>,
}

impl TaskBoard {
    /// A task.
    #[must_use]
    pub fn get(&self, id: TaskId) -> Option<&TaskRow> {
        self.tasks.get(&id)
    }

    /// An assignee's tasks, optionally of one status, most urgent first, then by due time.
    #[must_use]
    pub fn of_assignee(&self, assignee: UserId, status: Option<TaskStatus>) -> Vec<&TaskRow> {
        let mut rows: Vec<&TaskRow> =
            self.tasks.values().filter(|t| t.assignee == assignee && status.is_none_or(|s| t.status == s)).collect();
        rows.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.due.is_none().cmp(&b.due.is_none()))
                .then(a.due.cmp(&b.due))
                .then(a.id.cmp(&b.id))
        });
        rows
    }

    /// Open tasks whose due time is before `now`, earliest first.
    #[must_use]
    pub fn overdue(&self, now: Timestamp) -> Vec<&TaskRow> {
        let mut rows: Vec<&TaskRow> =
            self.tasks.values().filter(|t| t.is_open() && t.due.is_some_and(|d| d < now)).collect();
        rows.sort_by_key(|t| (t.due, t.id));
        rows
    }

    /// Open tasks whose reminder falls in `[from, to)`, earliest first (by reminder, then id).
    #[must_use]
    pub fn reminders_due(&self, from: Timestamp, to: Timestamp) -> Vec<&TaskRow> {
        if from >= to {
            return Vec::new();
        }
        let start = (from, TaskId(uuid::Uuid::nil()));
        self.reminders.range(start..).take_while(|(at, _)| *at < to).filter_map(|(_, id)| self.tasks.get(id)).collect()
    }

    /// The earliest reminder of an open task at or after `from`.
    #[must_use]
    pub fn next_reminder(&self, from: Timestamp) -> Option<Timestamp> {
        self.reminders.range((from, TaskId(uuid::Uuid::nil()))..).next().map(|(at, _)| *at)
    }

    /// Counts of tasks by status.
    #[must_use]
    pub fn status_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for task in self.tasks.values() {
            let name = match task.status {
                TaskStatus::Uncreated => "uncreated",
                TaskStatus::Open => "open",
                TaskStatus::InProgress => "in_progress",
                TaskStatus::Done => "done",
                TaskStatus::Cancelled => "cancelled",
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }
}

impl View for TaskBoard {
    fn name(&self) -> &'static str {
        "task_board"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        let AnyEvent::Task(id, event) = &record.event else { return Ok(()) };
        if let TaskEvent::TaskCreated(e) = event {
            let row = TaskRow {
                id: *id,
                title: e.title.clone(),
                status: TaskStatus::Open,
                priority: e.priority,
                assignee: e.assignee,
                due: e.due,
                reminder: e.reminder,
                related: e.related,
                comments: 0,
            };
            let key = row.reminder_key();
            if let Some(old) = self.tasks.insert(*id, row).and_then(|old| old.reminder_key()) {
                self.reminders.remove(&old);
            }
            self.reminders.extend(key);
            return Ok(());
        }
        let row = self.tasks.get_mut(id).ok_or_else(|| format!("task {} was never created", id.0))?;
        if let Some(old) = row.reminder_key() {
            self.reminders.remove(&old);
        }
        match event {
            TaskEvent::TaskCreated(_) => {}
            TaskEvent::TaskReassigned(e) => row.assignee = e.to,
            TaskEvent::TaskStatusChanged(e) => row.status = e.to,
            TaskEvent::TaskCommented(_) => row.comments += 1,
            TaskEvent::TaskPriorityChanged(e) => row.priority = e.priority,
            TaskEvent::TaskScheduleChanged(e) => {
                row.due = e.due;
                row.reminder = e.reminder;
            }
        }
        self.reminders.extend(row.reminder_key());
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_lines(out, self.name(), self.tasks.values());
    }
}
