//! Live notifications: the hub that turns acknowledged events and due times into
//! notifications for the people they concern, and the stop signal of every live feed.
//!
//! Two tasks feed the hub:
//! - the **pump** follows the log from its head at start (the store's subscription: each
//!   record once, in order) and raises `task_assigned` and `case_assigned` for the assignee,
//!   `approval_task`, `approval_urged`, `approval_due`, `approval_copied` and
//!   `approval_outcome` (with the outcome) for the people an approval
//!   concerns, and `security_alert` for the account concerned and for administrators, once the audit
//!   view has applied the event that raised it;
//! - the **timer** raises `task_reminder` and `case_follow_up_due` when a reminder or a
//!   follow-up falls due by the command path's clock, and applies approval tasks' due times
//!   ([`crate::approvals::tick_due`]). It sleeps until the earliest due time
//!   the views know of (at most [`TIMER_RECHECK`]), and wakes early when a task or case
//!   changes or the clock is moved ([`Hub::clock_moved`], for clocks that tests drive).
//!
//! Invariants:
//! - A due time fires once, in the window `(last fired, now]`; due times that passed while the
//!   server was down are not fired at start (the task board still lists them).
//! - The hub keeps at most [`BACKLOG`] notifications for subscribers that lag; one that falls
//!   further behind is closed with a reason instead of holding more memory.
//! - After [`Hub::stop`] both tasks end and every live feed closes with a reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oacis_domain::approval::calendar::OnDue;
use oacis_domain::approval::instance::{ApprovalEvent, ApprovalState, TaskStatus};
use oacis_domain::case::CaseEvent;
use oacis_domain::ids::{Timestamp, UserId};
use oacis_domain::task::TaskEvent;
use oacis_eventlog::{EventStore, Seq, Subscription as _};
use oacis_projections::decode::{self, AnyEvent};
use tokio::sync::{broadcast, watch, Notify};

use crate::command::CommandBus;

/// Notifications held for subscribers that have not taken them yet.
pub const BACKLOG: usize = 1_024;
/// The timer looks at the views at least this often, whatever it expects.
pub const TIMER_RECHECK: Duration = Duration::from_secs(30);

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// One user.
    User(UserId),
    /// One user's account, and every administrator (holders of `user.admin`).
    AccountAndAdministrators(UserId),
}

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// A task was created for, or reassigned to, the recipient.
    TaskAssigned,
    /// A service case was assigned to the recipient.
    CaseAssigned,
    /// The reminder of one of the recipient's open tasks fell due.
    TaskReminder,
    /// The follow-up of one of the recipient's unresolved cases fell due.
    CaseFollowUpDue,
    /// The audit trail raised a security alert.
    SecurityAlert,
    /// An approval task came to the recipient: created, transferred, delegated, handed back,
    /// or running again after the signers added before it approved.
    ApprovalTask,
    /// The submitter urged the recipient's approval task (催办).
    ApprovalUrged,
    /// The recipient's approval was approved, rejected, or returned to them.
    ApprovalOutcome,
    /// One of the recipient's approval tasks fell due (its node reminds).
    ApprovalDue,
    /// The recipient was copied on an approval (抄送).
    ApprovalCopied,
}

impl NotificationKind {
    /// The wire name, e.g. `task_reminder`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::TaskAssigned => "task_assigned",
            NotificationKind::CaseAssigned => "case_assigned",
            NotificationKind::TaskReminder => "task_reminder",
            NotificationKind::CaseFollowUpDue => "case_follow_up_due",
            NotificationKind::SecurityAlert => "security_alert",
            NotificationKind::ApprovalTask => "approval_task",
            NotificationKind::ApprovalUrged => "approval_urged",
            NotificationKind::ApprovalOutcome => "approval_outcome",
            NotificationKind::ApprovalDue => "approval_due",
            NotificationKind::ApprovalCopied => "approval_copied",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Who it is for.
    pub recipient: Recipient,
    /// What it says.
    pub kind: NotificationKind,
    /// The record concerned: a task, a case, or (alerts) the account.
    pub record: uuid::Uuid,
    /// In words: the task's title, the case's subject, the alert's detail.
    pub detail: String,
    /// When it happened or fell due (UTC microseconds).
    pub at: Timestamp,
    /// The log position of the event that raised it; `None` for due times.
    pub seq: Option<u64>,
}

/// The hub: a bounded broadcast of notifications, the stop signal, and the timer's wake-up.
#[derive(Debug)]
pub struct Hub {
    sender: broadcast::Sender<Arc<Notification>>,
    stopping: watch::Sender<bool>,
    wake_timer: Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Live feeds running now (each holds a [`FeedSlot`]).
    feeds: watch::Sender<usize>,
}

/// One running live feed, counted by the hub while it lives, so that a stop can wait for
/// the feeds to have sent their closing message.
#[derive(Debug)]
pub struct FeedSlot(Arc<Hub>);

impl FeedSlot {
    /// Counts a feed as running on `hub`.
    #[must_use]
    pub fn new(hub: &Arc<Hub>) -> FeedSlot {
        hub.feeds.send_modify(|n| *n += 1);
        FeedSlot(hub.clone())
    }
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.0.feeds.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            sender: broadcast::channel(BACKLOG).0,
            stopping: watch::channel(false).0,
            wake_timer: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            feeds: watch::channel(0).0,
        }
    }
}

impl Hub {
    /// A receiver of every notification raised from now on.
    #[must_use]
    pub fn receiver(&self) -> broadcast::Receiver<Arc<Notification>> {
        self.sender.subscribe()
    }

    /// A receiver of the stop signal (`true` once the server stops).
    #[must_use]
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Keeps `task` with the hub's own, so that it ends when the server stops.
    pub fn adopt(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(task);
    }

    /// Tells the timer that the clock was moved (clocks that tests drive).
    pub fn clock_moved(&self) {
        self.wake_timer.notify_one();
    }

    /// Live feeds running now.
    #[must_use]
    pub fn feeds_open(&self) -> usize {
        *self.feeds.borrow()
    }

    /// Waits until every live feed has ended (after [`Hub::stop`], once each has sent its
    /// closing error), for at most `deadline`.
    pub async fn drained(&self, deadline: Duration) {
        let mut feeds = self.feeds.subscribe();
        let _ = tokio::time::timeout(deadline, feeds.wait_for(|n| *n == 0)).await;
    }

    /// Ends the pump and the timer and closes every live feed.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for task in tasks {
            task.abort();
        }
    }

    fn raise(&self, notification: Notification) {
        // No receiver is not an error: nobody is listening.
        let _ = self.sender.send(Arc::new(notification));
    }

    /// Raises `notification` as the pump or the timer would (for tests of the feeds).
    #[cfg(test)]
    pub(crate) fn raise_for_test(&self, notification: Notification) {
        self.raise(notification);
    }
}

/// Starts the pump and the timer over `bus` (from the log's head and the clock's now).
pub fn start(hub: &Arc<Hub>, bus: &Arc<CommandBus>) {
    let from = bus.store().head().seq.next();
    let since = bus.now();
    let pump = tokio::spawn(pump(hub.clone(), bus.clone(), from));
    let timer = tokio::spawn(timer(hub.clone(), bus.clone(), since));
    hub.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend([pump, timer]);
}

/// Follows the log from `from`, raising assignments and security alerts.
async fn pump(hub: Arc<Hub>, bus: Arc<CommandBus>, from: Seq) {
    let store = bus.store().clone();
    let mut feed = store.subscribe(from);
    let mut stopping = hub.stopping();
    loop {
        let record = tokio::select! {
            record = feed.next() => record,
            _ = stopping.changed() => return,
        };
        let record = match record {
            Some(Ok(record)) => record,
            Some(Err(e)) => {
                tracing::error!(error = %e, "the notification pump cannot read the log; live notifications stop");
                return;
            }
            None => return,
        };
        let stream = record.stream.as_str();
        let interesting = ["task-", "case-", "user-", "access-", "approval-"].iter().any(|p| stream.starts_with(p));
        if !interesting {
            continue;
        }
        let decoded = match decode::decode(&record, store.keys().map(Arc::as_ref)) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(seq = record.seq.0, error = %e, "the notification pump skips an event it cannot read");
                continue;
            }
        };
        let at = decoded.recorded_at;
        let seq = Some(record.seq.0);
        // Titles, subjects, due times and alerts come from the views, once they have applied
        // this event.
        if bus.projections().wait_for(record.seq).await.is_err() {
            return;
        }
        match &decoded.event {
            AnyEvent::Task(id, event) => {
                let assigned = match event {
                    TaskEvent::TaskCreated(e) => Some((e.assignee, e.title.clone())),
                    TaskEvent::TaskReassigned(e) => {
                        let title =
                            bus.projections().read(|v| v.tasks.get(*id).map(|t| t.title.clone())).ok().flatten();
                        Some((e.to, title.unwrap_or_default()))
                    }
                    _ => None,
                };
                if let Some((assignee, title)) = assigned {
                    let kind = NotificationKind::TaskAssigned;
                    hub.raise(Notification {
                        recipient: Recipient::User(assignee),
                        kind,
                        record: id.0,
                        detail: title,
                        at,
                        seq,
                    });
                }
                // Its reminder may now be the next due time.
                hub.clock_moved();
            }
            AnyEvent::Case(id, event) => {
                if let CaseEvent::CaseAssigned(e) = event {
                    let subject =
                        bus.projections().read(|v| v.cases.get(*id).map(|c| c.subject.clone())).ok().flatten();
                    hub.raise(Notification {
                        recipient: Recipient::User(e.assignee),
                        kind: NotificationKind::CaseAssigned,
                        record: id.0,
                        detail: subject.unwrap_or_default(),
                        at,
                        seq,
                    });
                }
                hub.clock_moved();
            }
            AnyEvent::Approval(id, event) => {
                let (name, state) = bus
                    .projections()
                    .read(|v| v.approvals.get(*id).map(|row| (row.name.clone(), row.state.clone())))
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                // The outcome in words after the name, for those told of one.
                let detail = match event {
                    ApprovalEvent::ApprovalCompleted(c) => format!(
                        "{name}: {}",
                        match c.outcome {
                            oacis_domain::approval::instance::Outcome::Approved => "approved",
                            oacis_domain::approval::instance::Outcome::Rejected => "rejected",
                        }
                    ),
                    ApprovalEvent::ApprovalReturned(_) => format!("{name}: returned"),
                    _ => name.clone(),
                };
                for (recipient, kind) in approval_notices(event, &state) {
                    hub.raise(Notification {
                        recipient: Recipient::User(recipient),
                        kind,
                        record: id.0,
                        detail: detail.clone(),
                        at,
                        seq,
                    });
                }
                // A new or resumed task may be the next due time.
                hub.clock_moved();
            }
            AnyEvent::User(..) | AnyEvent::AccessLog(..) => {
                let raised = bus
                    .projections()
                    .read(|v| {
                        let alerts = v.audit.alerts();
                        let from = alerts.iter().rposition(|a| a.seq() < record.seq).map_or(0, |i| i + 1);
                        alerts[from..].iter().filter(|a| a.seq() == record.seq).cloned().collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for alert in raised {
                    hub.raise(Notification {
                        recipient: Recipient::AccountAndAdministrators(alert.user()),
                        kind: NotificationKind::SecurityAlert,
                        record: alert.user().0,
                        detail: crate::graphql::insight::alert_detail(&alert),
                        at,
                        seq,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Who an approval event concerns, and how; `state` is the approval after the event.
fn approval_notices(event: &ApprovalEvent, state: &ApprovalState) -> Vec<(UserId, NotificationKind)> {
    use ApprovalEvent as E;
    let assignee = |task: u32| state.tasks.get(&task).map(|t| t.assignee);
    let submitter = state.submitter.into_iter();
    match event {
        // A task passed by a routing rule the moment it was created asks nothing of anyone.
        E::ApprovalTaskCreated(e) if state.tasks.get(&e.task).is_some_and(|t| t.status == TaskStatus::AutoApproved) => {
            Vec::new()
        }
        E::ApprovalTaskCreated(e) => vec![(e.assignee, NotificationKind::ApprovalTask)],
        E::ApprovalTaskTransferred(e) | E::ApprovalTaskDelegated(e) => vec![(e.to, NotificationKind::ApprovalTask)],
        E::ApprovalDelegationResolved(e) => {
            assignee(e.task).map(|a| (a, NotificationKind::ApprovalTask)).into_iter().collect()
        }
        E::ApprovalTaskResumed(e) => {
            assignee(e.task).map(|a| (a, NotificationKind::ApprovalTask)).into_iter().collect()
        }
        E::ApprovalUrged(e) => {
            e.tasks.iter().filter_map(|t| assignee(*t)).map(|a| (a, NotificationKind::ApprovalUrged)).collect()
        }
        E::ApprovalCompleted(_) => submitter.map(|s| (s, NotificationKind::ApprovalOutcome)).collect(),
        E::ApprovalCcSent(e) => e.to.iter().map(|u| (*u, NotificationKind::ApprovalCopied)).collect(),
        E::ApprovalTaskTimedOut(e) => match (e.action, e.to) {
            (OnDue::TransferToLeader, Some(to)) => vec![(to, NotificationKind::ApprovalTask)],
            (OnDue::Remind, _) => assignee(e.task).map(|a| (a, NotificationKind::ApprovalDue)).into_iter().collect(),
            _ => Vec::new(),
        },
        E::ApprovalReturned(e) if e.to.is_none() => submitter.map(|s| (s, NotificationKind::ApprovalOutcome)).collect(),
        _ => Vec::new(),
    }
}

/// Raises reminders and follow-ups as they fall due, from `since` on.
async fn timer(hub: Arc<Hub>, bus: Arc<CommandBus>, since: Timestamp) {
    let mut fired_to = since;
    let mut stopping = hub.stopping();
    loop {
        let now = bus.now();
        // Everything due in (fired_to, now]: the window [fired_to + 1, now + 1).
        let (from, to) = (Timestamp(fired_to.0.saturating_add(1)), Timestamp(now.0.saturating_add(1)));
        let (due, next) = bus
            .projections()
            .read(|v| {
                let mut due: Vec<Notification> = v
                    .tasks
                    .reminders_due(from, to)
                    .into_iter()
                    .map(|t| Notification {
                        recipient: Recipient::User(t.assignee),
                        kind: NotificationKind::TaskReminder,
                        record: t.id.0,
                        detail: t.title.clone(),
                        at: t.reminder.unwrap_or(now),
                        seq: None,
                    })
                    .collect();
                due.extend(v.cases.follow_ups_due(from, to).into_iter().filter_map(|c| {
                    Some(Notification {
                        recipient: Recipient::User(c.assignee?),
                        kind: NotificationKind::CaseFollowUpDue,
                        record: c.id.0,
                        detail: c.subject.clone(),
                        at: c.follow_up_at.unwrap_or(now),
                        seq: None,
                    })
                }));
                due.sort_by_key(|n| (n.at, n.record));
                let next = [v.tasks.next_reminder(to), v.cases.next_follow_up(to), v.approvals.next_due_after(now)]
                    .into_iter()
                    .flatten()
                    .min();
                (due, next)
            })
            .unwrap_or_default();
        if now > fired_to {
            fired_to = now;
        }
        for notification in due {
            hub.raise(notification);
        }
        // Approval tasks that fell due get their node's rule, through the log (a no-op for
        // those handled already, so a due time missed while the server was down is applied now).
        if let Err(e) = crate::approvals::tick_due(&bus, now).await {
            tracing::warn!(error = %e, "approval due times could not be read");
        }
        // Sleep until the next due time by this clock (a moved clock or a changed task or case
        // wakes the timer early).
        let wait = next.map_or(TIMER_RECHECK, |at| {
            Duration::from_micros(u64::try_from(at.0.saturating_sub(now.0)).unwrap_or(0)).min(TIMER_RECHECK)
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = hub.wake_timer.notified() => {}
            _ = stopping.changed() => return,
        }
    }
}
