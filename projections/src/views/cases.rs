//! Service cases: by status, assignee, priority and customer; first-response and resolution
//! times; overdue follow-ups; satisfaction per case.
//!
//! Invariant: `follow_ups` holds (follow-up time, id) of exactly the unresolved cases with a
//! follow-up, so that the next one and those due in a window are range reads.

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::case::{CaseEvent, CaseStatus};
use oacis_domain::ids::{CaseId, CustomerId, Timestamp, UserId};
use oacis_domain::task::Priority;

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};

/// One case as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseRow {
    /// Its id.
    pub id: CaseId,
    /// The customer.
    pub customer: CustomerId,
    /// Subject.
    pub subject: String,
    /// Where it stands.
    pub status: CaseStatus,
    /// Priority.
    pub priority: Priority,
    /// Who works it.
    pub assignee: Option<UserId>,
    /// Opened.
    pub opened_at: Timestamp,
    /// First response.
    pub first_response_at: Option<Timestamp>,
    /// Last resolution (kept when reopened; `status` says whether it stands).
    pub resolved_at: Option<Timestamp>,
    /// Follow-up due.
    pub follow_up_at: Option<Timestamp>,
    /// Satisfaction (1-5) of the current resolution; none once reopened.
    pub satisfaction: Option<u8>,
}

impl CaseRow {
    /// Its entry in the follow-up index, if it belongs there.
    fn follow_up_key(&self) -> Option<(Timestamp, CaseId)> {
        let unresolved = !matches!(self.status, CaseStatus::Resolved | CaseStatus::Closed);
        self.follow_up_at.filter(|_| unresolved).map(|at| (at, self.id))
    }

    /// Microseconds from opening to first response.
    #[must_use]
    pub fn first_response_us(&self) -> Option<i64> {
        self.first_response_at.map(|t| t.0 - self.opened_at.0)
    }

    /// Microseconds from opening to the last resolution.
    #[must_use]
    pub fn resolution_us(&self) -> Option<i64> {
        self.resolved_at.map(|t| t.0 - self.opened_at.0)
    }
}

/// Which cases to list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Status.
    pub status: Option<CaseStatus>,
    /// Assignee.
    pub assignee: Option<UserId>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Customer.
    pub customer: Option<CustomerId>,
}

/// The service case view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CaseList {
    cases: BTreeMap<CaseId, CaseRow>,
    follow_ups: BTreeSet<(Timestamp, CaseId)>,
}

impl CaseList {
    /// A case.
    #[must_use]
    pub fn get(&self, id: CaseId) -> Option<&CaseRow> {
        self.cases.get(&id)
    }

    /// Cases matching `filter`, most urgent first, then oldest first.
    #[must_use]
    pub fn list(&self, filter: &CaseFilter) -> Vec<&CaseRow> {
        let mut rows: Vec<&CaseRow> = self
            .cases
            .values()
            .filter(|c| {
                filter.status.is_none_or(|s| c.status == s)
                    && filter.assignee.is_none_or(|a| c.assignee == Some(a))
                    && filter.priority.is_none_or(|p| c.priority == p)
                    && filter.customer.is_none_or(|k| c.customer == k)
            })
            .collect();
        rows.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.opened_at.cmp(&b.opened_at)).then(a.id.cmp(&b.id)));
        rows
    }

    /// Unresolved cases whose follow-up is due before `now`, earliest first.
    #[must_use]
    pub fn overdue_follow_ups(&self, now: Timestamp) -> Vec<&CaseRow> {
        self.follow_ups_due(Timestamp(i64::MIN), now)
    }

    /// Unresolved cases whose follow-up falls in `[from, to)`, earliest first (by time, then
    /// id).
    #[must_use]
    pub fn follow_ups_due(&self, from: Timestamp, to: Timestamp) -> Vec<&CaseRow> {
        if from >= to {
            return Vec::new();
        }
        self.follow_ups
            .range((from, CaseId(uuid::Uuid::nil()))..)
            .take_while(|(at, _)| *at < to)
            .filter_map(|(_, id)| self.cases.get(id))
            .collect()
    }

    /// The earliest follow-up of an unresolved case at or after `from`.
    #[must_use]
    pub fn next_follow_up(&self, from: Timestamp) -> Option<Timestamp> {
        self.follow_ups.range((from, CaseId(uuid::Uuid::nil()))..).next().map(|(at, _)| *at)
    }
}

impl View for CaseList {
    fn name(&self) -> &'static str {
        "service_cases"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        let AnyEvent::Case(id, event) = &record.event else { return Ok(()) };
        if let CaseEvent::CaseOpened(e) = event {
            let row = CaseRow {
                id: *id,
                customer: e.customer_id,
                subject: e.subject.clone(),
                status: CaseStatus::New,
                priority: e.priority,
                assignee: None,
                opened_at: e.opened_at,
                first_response_at: None,
                resolved_at: None,
                follow_up_at: None,
                satisfaction: None,
            };
            if let Some(old) = self.cases.insert(*id, row).and_then(|old| old.follow_up_key()) {
                self.follow_ups.remove(&old);
            }
            return Ok(());
        }
        let row = self.cases.get_mut(id).ok_or_else(|| format!("case {} was never opened", id.0))?;
        if let Some(old) = row.follow_up_key() {
            self.follow_ups.remove(&old);
        }
        match event {
            CaseEvent::CaseOpened(_) => {}
            CaseEvent::CaseAssigned(e) => {
                row.assignee = Some(e.assignee);
                if matches!(row.status, CaseStatus::New | CaseStatus::OnHold) {
                    row.status = CaseStatus::Assigned;
                }
            }
            CaseEvent::CaseResponded(e) => {
                row.status = CaseStatus::InProgress;
                row.first_response_at.get_or_insert(e.responded_at);
            }
            CaseEvent::CasePutOnHold(_) => row.status = CaseStatus::OnHold,
            CaseEvent::CaseResolved(e) => {
                row.status = CaseStatus::Resolved;
                row.resolved_at = Some(e.resolved_at);
                row.satisfaction = None;
                row.follow_up_at = None;
            }
            CaseEvent::CaseClosed(_) => row.status = CaseStatus::Closed,
            CaseEvent::CaseReopened(_) => {
                // Unresolved again: the rating was of the resolution it no longer has.
                row.status = CaseStatus::InProgress;
                row.satisfaction = None;
            }
            CaseEvent::CaseFollowUpSet(e) => row.follow_up_at = e.at,
            CaseEvent::CaseRated(e) => row.satisfaction = Some(e.score),
        }
        self.follow_ups.extend(row.follow_up_key());
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_lines(out, self.name(), self.cases.values());
    }
}
