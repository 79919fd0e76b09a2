//! The customer timeline: interactions, purchases, service cases, tasks, approvals whose form
//! names the customer (submitted, returned, resubmitted, decided, cancelled) and changes of
//! one customer, in time order. A survivor's timeline includes the customers merged into it.

use crate::view::FastMap as HashMap;
use std::collections::BTreeMap;

use oacis_domain::approval::definition::DefinitionEvent;
use oacis_domain::approval::form::FieldKind;
use oacis_domain::approval::instance::ApprovalEvent;
use oacis_domain::customer::CustomerEvent;
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, CaseId, CustomerId, Timestamp};
use oacis_domain::task::{Related, TaskEvent};
use oacis_domain::DomainEvent;
use oacis_eventlog::Seq;

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, dump_sorted, View};

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineEntry {
    /// When it happened (for interactions, when they took place; otherwise when recorded).
    pub at: Timestamp,
    /// Position in the log.
    pub seq: Seq,
    /// The customer it belongs to (a merged duplicate's entries keep their own).
    pub customer: CustomerId,
    /// The event kind.
    #[serde(with = "crate::snapshot::kind_name")]
    pub kind: crate::snapshot::KindName,
    /// The record it concerns: the customer, a case or a task.
    pub record: RecordRef,
}

/// Which record a timeline entry concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RecordRef {
    /// The customer itself.
    Customer(CustomerId),
    /// One of its service cases.
    Case(CaseId),
    /// A task about it.
    Task(oacis_domain::ids::TaskId),
    /// An approval whose form names it (a discount or a contract, say).
    Approval(ApprovalId),
}

/// The timeline view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    /// Hash maps where every event looks an entry up; `dump` sorts them.
    entries: HashMap<CustomerId, Vec<TimelineEntry>>,
    case_customer: HashMap<CaseId, CustomerId>,
    task_customer: HashMap<oacis_domain::ids::TaskId, CustomerId>,
    merged_into_me: BTreeMap<CustomerId, Vec<CustomerId>>,
    /// Each definition version's customer fields.
    customer_fields: HashMap<(ApprovalDefinitionId, u32), Vec<String>>,
    /// The customers each approval's form names.
    approval_customers: HashMap<ApprovalId, Vec<CustomerId>>,
    /// The definition version of each approval that names a customer.
    approval_definitions: HashMap<ApprovalId, (ApprovalDefinitionId, u32)>,
}

impl Timeline {
    /// The timeline of `customer` and of every customer merged into it, in time order (ties
    /// in log order).
    #[must_use]
    pub fn of(&self, customer: CustomerId) -> Vec<&TimelineEntry> {
        let mut customers = vec![customer];
        let mut i = 0;
        while let Some(c) = customers.get(i).copied() {
            for merged in self.merged_into_me.get(&c).into_iter().flatten() {
                if !customers.contains(merged) {
                    customers.push(*merged);
                }
            }
            i += 1;
        }
        let mut entries: Vec<&TimelineEntry> = customers.iter().filter_map(|c| self.entries.get(c)).flatten().collect();
        entries.sort_by_key(|e| (e.at, e.seq));
        entries
    }

    /// The customer fields of the definition approval `id` runs on (known once it was
    /// submitted with a customer named).
    fn customer_fields_of(&self, id: ApprovalId) -> Option<Vec<String>> {
        self.approval_definitions.get(&id).and_then(|d| self.customer_fields.get(d)).cloned()
    }

    fn push(
        &mut self,
        customer: CustomerId,
        at: Timestamp,
        record: &DomainRecord,
        kind: &'static str,
        about: RecordRef,
    ) {
        let entry = TimelineEntry { at, seq: record.seq, customer, kind, record: about };
        self.entries.entry(customer).or_default().push(entry);
    }
}

impl View for Timeline {
    fn name(&self) -> &'static str {
        "customer_timeline"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        match &record.event {
            AnyEvent::Customer(id, event) => {
                let at = match event {
                    CustomerEvent::InteractionLogged(e) => e.occurred_at,
                    _ => record.recorded_at,
                };
                match event {
                    CustomerEvent::CustomerMerged(e) => self.merged_into_me.entry(e.into).or_default().push(*id),
                    // The duplicate's entries stay its own; the survivor's timeline stops showing them.
                    CustomerEvent::CustomerUnmerged(e) => {
                        if let Some(merged) = self.merged_into_me.get_mut(&e.from) {
                            merged.retain(|m| m != id);
                            if merged.is_empty() {
                                self.merged_into_me.remove(&e.from);
                            }
                        }
                    }
                    _ => {}
                }
                self.push(*id, at, record, event.kind(), RecordRef::Customer(*id));
            }
            AnyEvent::Case(id, event) => {
                let customer = match event {
                    oacis_domain::case::CaseEvent::CaseOpened(e) => {
                        self.case_customer.insert(*id, e.customer_id);
                        e.customer_id
                    }
                    _ => *self.case_customer.get(id).ok_or_else(|| format!("case {} was never opened", id.0))?,
                };
                self.push(customer, record.recorded_at, record, event.kind(), RecordRef::Case(*id));
            }
            AnyEvent::Task(id, event) => {
                if let TaskEvent::TaskCreated(e) = event {
                    let customer = match e.related {
                        Some(Related::Customer(c)) => Some(c),
                        Some(Related::Case(case)) => self.case_customer.get(&case).copied(),
                        None => None,
                    };
                    if let Some(customer) = customer {
                        self.task_customer.insert(*id, customer);
                    }
                }
                if let Some(customer) = self.task_customer.get(id).copied() {
                    self.push(customer, record.recorded_at, record, event.kind(), RecordRef::Task(*id));
                }
            }
            AnyEvent::ApprovalDefinition(_, DefinitionEvent::ApprovalDefinitionPublished(e)) => {
                let d = &e.definition;
                let fields: Vec<String> =
                    d.body.form.iter().filter(|f| f.kind == FieldKind::Customer).map(|f| f.name.clone()).collect();
                if !fields.is_empty() {
                    self.customer_fields.insert((d.definition_id, d.version), fields);
                }
            }
            AnyEvent::Approval(id, event) => {
                let form = match event {
                    ApprovalEvent::ApprovalSubmitted(e) => {
                        let version = (e.definition.definition_id, e.definition.version);
                        let fields = self.customer_fields.get(&version).cloned();
                        if fields.is_some() {
                            self.approval_definitions.insert(*id, version);
                        }
                        fields.map(|f| (f, &e.form))
                    }
                    ApprovalEvent::ApprovalResubmitted(e) => self.customer_fields_of(*id).map(|f| (f, &e.form)),
                    _ => None,
                };
                if let Some((fields, form)) = form {
                    let named: Vec<CustomerId> = fields
                        .iter()
                        .filter_map(|f| {
                            form.get(f).and_then(|v| v.as_str()).and_then(|s| uuid::Uuid::parse_str(s).ok())
                        })
                        .map(CustomerId)
                        .collect();
                    let known = self.approval_customers.entry(*id).or_default();
                    for customer in named {
                        if !known.contains(&customer) {
                            known.push(customer);
                        }
                    }
                }
                let shown = matches!(
                    event,
                    ApprovalEvent::ApprovalSubmitted(_)
                        | ApprovalEvent::ApprovalResubmitted(_)
                        | ApprovalEvent::ApprovalReturned(_)
                        | ApprovalEvent::ApprovalCompleted(_)
                        | ApprovalEvent::ApprovalCancelled(_)
                );
                if shown {
                    for customer in self.approval_customers.get(id).cloned().unwrap_or_default() {
                        self.push(customer, record.recorded_at, record, event.kind(), RecordRef::Approval(*id));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_sorted(out, "timeline.entries", &self.entries);
        dump_lines(out, "timeline.merges", &self.merged_into_me);
        dump_sorted(out, "timeline.approval_customers", &self.approval_customers);
    }
}
