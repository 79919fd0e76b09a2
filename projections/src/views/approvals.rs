//! Approvals: published definitions by version, each approval with its folded state and
//! timeline, the lists people work from (to do, done, submitted, copied), the working
//! calendar, and the leave balances and budgets approvals count against.
//!
//! Invariants:
//! - An approval's `state` is the domain's own fold of its stream (`Approval::evolve`), so
//!   the view and the aggregate cannot disagree.
//! - `inbox` holds exactly (assignee, approval, task) of every task someone can act on now
//!   (running or delegated): it is updated from the difference of live tasks before and
//!   after each event, never recomputed.
//! - `due` holds exactly (due time, approval, task) of every live task with a due time not
//!   handled yet, maintained the same way; the working calendar is rebuilt from each year's
//!   latest version whenever one is published.
//! - `done` holds (user, approval) for every user who decided a task of it (approved,
//!   rejected, returned, withdrew, handed back a delegation); `submitted` and `copied` hold
//!   the submitter and everyone copied. Lists are ordered maps, so dumps are canonical.

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::approval::calendar::{CalendarEvent, CalendarYearPublished, WorkCalendar};
use oacis_domain::approval::definition::{DefinitionEvent, PublishedDefinition};
use oacis_domain::approval::instance::{Approval, ApprovalEvent, ApprovalState, ApprovalStatus};
use oacis_domain::approval::ledger::{Ledger, LedgerEvent, LedgerState};
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, LedgerId, Timestamp, UserId};
use oacis_domain::Aggregate as _;

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};

/// One entry of an approval's timeline: the event with the log's facts about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineEntry {
    /// Position in the log.
    pub seq: u64,
    /// When the log recorded it.
    pub at: Timestamp,
    /// Who acted, as the log's metadata names them.
    pub actor: String,
    /// What happened, with its comment, hashes and task.
    pub event: ApprovalEvent,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalRow {
    /// Its id.
    pub id: ApprovalId,
    /// The definition's name (of the version it runs on).
    pub name: String,
    /// The domain's state: status, form, route, tasks.
    pub state: ApprovalState,
    /// When it was submitted.
    pub submitted_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Everything that happened to it, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// The approvals view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Approvals {
    definitions: BTreeMap<ApprovalDefinitionId, Vec<PublishedDefinition>>,
    approvals: BTreeMap<ApprovalId, ApprovalRow>,
    inbox: BTreeSet<(UserId, ApprovalId, u32)>,
    done: BTreeSet<(UserId, ApprovalId)>,
    submitted: BTreeSet<(UserId, ApprovalId)>,
    copied: BTreeSet<(UserId, ApprovalId)>,
    /// (due time, approval, task) of live tasks with a due time not yet handled.
    due: BTreeSet<(Timestamp, ApprovalId, u32)>,
    /// Each year's latest published calendar.
    years: BTreeMap<u16, CalendarYearPublished>,
    /// The calendar of `years`, rebuilt when one is published.
    calendar: WorkCalendar,
    /// Leave balances and budgets.
    ledgers: BTreeMap<LedgerId, LedgerRow>,
}

/// A leave balance or a budget, with every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerRow {
    /// The domain's fold.
    pub state: LedgerState,
    /// Every entry, oldest first: (seq, recorded at, actor, event).
    pub entries: Vec<(u64, Timestamp, String, LedgerEvent)>,
}

/// Which list of a user's approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalList {
    /// With a live task of theirs (待办).
    Inbox,
    /// Where they decided a task (已办).
    Done,
    /// They submitted (我发起的).
    Submitted,
    /// They were copied (抄送我的).
    Copied,
}

impl Approvals {
    /// A definition's version (`None`: the latest).
    #[must_use]
    pub fn definition(&self, id: ApprovalDefinitionId, version: Option<u32>) -> Option<&PublishedDefinition> {
        let versions = self.definitions.get(&id)?;
        match version {
            None => versions.last(),
            Some(v) => versions.iter().find(|d| d.version == v),
        }
    }

    /// Every definition's latest version, by id.
    pub fn definitions(&self) -> impl Iterator<Item = &PublishedDefinition> {
        self.definitions.values().filter_map(|versions| versions.last())
    }

    /// An approval.
    #[must_use]
    pub fn get(&self, id: ApprovalId) -> Option<&ApprovalRow> {
        self.approvals.get(&id)
    }

    /// A user's approvals in `list`, newest submission first, optionally of one status.
    #[must_use]
    pub fn list(&self, user: UserId, list: ApprovalList, status: Option<ApprovalStatus>) -> Vec<&ApprovalRow> {
        let range = |set: &BTreeSet<(UserId, ApprovalId)>| -> Vec<ApprovalId> {
            set.range((user, ApprovalId(uuid::Uuid::nil()))..=(user, ApprovalId(uuid::Uuid::max())))
                .map(|(_, a)| *a)
                .collect()
        };
        let ids: Vec<ApprovalId> = match list {
            ApprovalList::Inbox => {
                let mut ids: Vec<ApprovalId> = self
                    .inbox
                    .range((user, ApprovalId(uuid::Uuid::nil()), 0)..=(user, ApprovalId(uuid::Uuid::max()), u32::MAX))
                    .map(|(_, a, _)| *a)
                    .collect();
                ids.dedup();
                ids
            }
            ApprovalList::Done => range(&self.done),
            ApprovalList::Submitted => range(&self.submitted),
            ApprovalList::Copied => range(&self.copied),
        };
        let mut rows: Vec<&ApprovalRow> = ids
            .iter()
            .filter_map(|id| self.approvals.get(id))
            .filter(|row| status.is_none_or(|s| row.state.status == s))
            .collect();
        rows.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at).then(b.id.cmp(&a.id)));
        rows
    }

    /// Every approval, newest submission first, optionally of one status.
    #[must_use]
    pub fn all(&self, status: Option<ApprovalStatus>) -> Vec<&ApprovalRow> {
        let mut rows: Vec<&ApprovalRow> =
            self.approvals.values().filter(|row| status.is_none_or(|s| row.state.status == s)).collect();
        rows.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at).then(b.id.cmp(&a.id)));
        rows
    }

    /// The days of leave `user`'s approvals reserved or took, on every leave ledger of theirs
    /// (every leave type and year): (approval, its days). Cost: one pass over the ledgers.
    #[must_use]
    pub fn leave_of(&self, user: UserId) -> Vec<(ApprovalId, oacis_domain::approval::ledger::LeaveSpan)> {
        let prefix = format!("leave/{user}/");
        self.ledgers
            .values()
            .filter(|row| row.state.key.as_deref().is_some_and(|k| k.starts_with(&prefix)))
            .flat_map(|row| row.state.spans.iter().map(|(approval, span)| (*approval, *span)))
            .collect()
    }

    /// The ledger with `key` (see `oacis_domain::approval::ledger`).
    #[must_use]
    pub fn ledger(&self, key: &str) -> Option<&LedgerRow> {
        self.ledgers.get(&LedgerId::of(key))
    }

    /// The working calendar as published.
    #[must_use]
    pub fn calendar(&self) -> &WorkCalendar {
        &self.calendar
    }

    /// Each published year's latest calendar, by year.
    pub fn calendar_years(&self) -> impl Iterator<Item = &CalendarYearPublished> {
        self.years.values()
    }

    /// Approvals with a task that fell due by `now` and was not handled yet.
    #[must_use]
    pub fn due_by(&self, now: Timestamp) -> Vec<ApprovalId> {
        let mut ids: Vec<ApprovalId> =
            self.due.range(..=(now, ApprovalId(uuid::Uuid::max()), u32::MAX)).map(|(_, a, _)| *a).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The earliest due time after `now` of a task not handled yet.
    #[must_use]
    pub fn next_due_after(&self, now: Timestamp) -> Option<Timestamp> {
        self.due
            .range((Timestamp(now.0.saturating_add(1)), ApprovalId(uuid::Uuid::nil()), 0)..)
            .next()
            .map(|(at, _, _)| *at)
    }

    /// A user's live tasks of one approval (task numbers).
    #[must_use]
    pub fn tasks_of(&self, user: UserId, approval: ApprovalId) -> Vec<u32> {
        self.inbox.range((user, approval, 0)..=(user, approval, u32::MAX)).map(|(_, _, t)| *t).collect()
    }

    fn apply_approval(&mut self, record: &DomainRecord, id: ApprovalId, event: &ApprovalEvent) {
        let row = self.approvals.entry(id).or_insert_with(|| ApprovalRow {
            id,
            name: String::new(),
            state: ApprovalState::default(),
            submitted_at: record.recorded_at,
            updated_at: record.recorded_at,
            timeline: Vec::new(),
        });
        let live = |state: &ApprovalState| -> BTreeSet<(UserId, u32)> {
            state.tasks.iter().filter(|(_, t)| t.status.actionable()).map(|(n, t)| (t.assignee, *n)).collect()
        };
        let pending = |state: &ApprovalState| -> BTreeSet<(Timestamp, u32)> {
            state
                .tasks
                .iter()
                .filter(|(_, t)| t.status.live() && !t.timed_out)
                .filter_map(|(n, t)| t.due.map(|at| (at, *n)))
                .collect()
        };
        let (before, due_before) = (live(&row.state), pending(&row.state));
        row.state = Approval::evolve(std::mem::take(&mut row.state), event);
        let (after, due_after) = (live(&row.state), pending(&row.state));
        for (at, task) in due_before.difference(&due_after) {
            self.due.remove(&(*at, id, *task));
        }
        for (at, task) in due_after.difference(&due_before) {
            self.due.insert((*at, id, *task));
        }
        for (user, task) in before.difference(&after) {
            self.inbox.remove(&(*user, id, *task));
        }
        for (user, task) in after.difference(&before) {
            self.inbox.insert((*user, id, *task));
        }
        row.updated_at = record.recorded_at;
        match event {
            ApprovalEvent::ApprovalSubmitted(e) => {
                row.submitted_at = record.recorded_at;
                row.name = self
                    .definitions
                    .get(&e.definition.definition_id)
                    .and_then(|versions| versions.iter().find(|d| d.version == e.definition.version))
                    .map(|d| d.body.name.clone())
                    .unwrap_or_default();
                self.submitted.insert((e.submitter, id));
            }
            ApprovalEvent::ApprovalTaskApproved(d)
            | ApprovalEvent::ApprovalTaskRejected(d)
            | ApprovalEvent::ApprovalDelegationResolved(d) => {
                self.done.insert((d.by, id));
            }
            ApprovalEvent::ApprovalReturned(e) => {
                self.done.insert((e.by, id));
            }
            ApprovalEvent::ApprovalWithdrawn(e) => {
                self.done.insert((e.by, id));
            }
            ApprovalEvent::ApprovalCcSent(e) => {
                for user in &e.to {
                    self.copied.insert((*user, id));
                }
            }
            _ => {}
        }
        row.timeline.push(TimelineEntry {
            seq: record.seq.0,
            at: record.recorded_at,
            actor: record.actor.clone(),
            event: event.clone(),
        });
    }
}

impl View for Approvals {
    fn name(&self) -> &'static str {
        "approvals"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        match &record.event {
            AnyEvent::ApprovalDefinition(_, DefinitionEvent::ApprovalDefinitionPublished(e)) => {
                self.definitions.entry(e.definition.definition_id).or_default().push(e.definition.clone());
            }
            AnyEvent::Approval(id, event) => self.apply_approval(record, *id, event),
            AnyEvent::Ledger(id, event) => {
                let row = self.ledgers.entry(*id).or_default();
                row.state = Ledger::evolve(std::mem::take(&mut row.state), event);
                row.entries.push((record.seq.0, record.recorded_at, record.actor.clone(), event.clone()));
            }
            AnyEvent::Calendar(_, CalendarEvent::CalendarYearPublished(e)) => {
                self.years.insert(e.year, e.clone());
                self.calendar = WorkCalendar::of_years(self.years.values());
            }
            _ => {}
        }
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_lines(out, "approval definitions", self.definitions.values().flatten());
        dump_lines(out, "approvals", self.approvals.values());
        dump_lines(out, "approval inbox", &self.inbox);
        dump_lines(out, "approvals done", &self.done);
        dump_lines(out, "approvals submitted", &self.submitted);
        dump_lines(out, "approvals copied", &self.copied);
        dump_lines(out, "approval tasks due", &self.due);
        dump_lines(out, "working calendar years", self.years.values());
        dump_lines(out, "ledgers", &self.ledgers);
    }
}
