//! The service case aggregate: a customer's request, worked from opening to closing.
//!
//! Status flow (anything else is refused):
//!
//! ```text
//! new ──assign──► assigned ──respond──► in_progress ──resolve──► resolved ──close──► closed
//!  │ respond/resolve    │ hold/resolve      │ hold          ▲        │ reopen      │ reopen
//!  └────────────────────┴──► on_hold ──respond/assign/resolve┘        └─► in_progress ◄┘
//! ```
//!
//! The events carry the times that SLA figures need: `opened_at`, the first `responded_at`,
//! `resolved_at` and `closed_at`. A satisfaction rating (1-5) may be given once per
//! resolution.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Lifecycle};
use crate::context::Context;
use crate::customer::{InteractionChannel, MAX_TEXT_CHARS};
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{CaseId, CustomerId, Timestamp, UserId};
use crate::task::Priority;
use crate::validate::Validator;

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Not opened yet.
    #[default]
    Unopened,
    /// Opened, nobody assigned.
    New,
    /// Assigned, not answered yet.
    Assigned,
    /// Being worked on.
    InProgress,
    /// Waiting (for the customer, a part, ...).
    OnHold,
    /// Solved; may be rated, closed or reopened.
    Resolved,
    /// Done; may be reopened.
    Closed,
}

impl Lifecycle for CaseStatus {
    const ENTITY: &'static str = "service case";
    const ABSENT: Self = CaseStatus::Unopened;

    fn name(self) -> &'static str {
        match self {
            CaseStatus::Unopened => "unopened",
            CaseStatus::New => "new",
            CaseStatus::Assigned => "assigned",
            CaseStatus::InProgress => "in progress",
            CaseStatus::OnHold => "on hold",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Closed => "closed",
        }
    }
}

/// The folded case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseState {
    /// Its id.
    pub id: Option<CaseId>,
    /// The customer it belongs to.
    pub customer: Option<CustomerId>,
    /// Where it stands.
    pub status: CaseStatus,
    /// Who works it.
    pub assignee: Option<UserId>,
    /// Priority.
    pub priority: Option<Priority>,
    /// When it was opened.
    pub opened_at: Option<Timestamp>,
    /// First response.
    pub first_response_at: Option<Timestamp>,
    /// Last resolution.
    pub resolved_at: Option<Timestamp>,
    /// When a follow-up is due.
    pub follow_up_at: Option<Timestamp>,
    /// Whether the current resolution was rated.
    pub rated: bool,
    /// Times reopened.
    pub reopened: u32,
}

/// What can be asked of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseCommand {
    /// Open a case for a customer.
    Open {
        /// Chosen by the caller.
        id: CaseId,
        /// The customer.
        customer: CustomerId,
        /// Short subject.
        subject: String,
        /// What the customer asked.
        description: String,
        /// How it came in.
        channel: InteractionChannel,
        /// Priority.
        priority: Priority,
    },
    /// Give the case to someone.
    Assign {
        /// Who.
        assignee: UserId,
    },
    /// Answer the customer.
    Respond {
        /// The answer.
        message: String,
    },
    /// Put on hold.
    Hold {
        /// Why.
        reason: String,
    },
    /// Mark solved.
    Resolve {
        /// How it was solved.
        resolution: String,
    },
    /// Close a resolved case.
    Close,
    /// Reopen a resolved or closed case.
    Reopen {
        /// Why.
        reason: String,
    },
    /// Set (or clear) when to follow up.
    SetFollowUp {
        /// When; `None` clears it.
        at: Option<Timestamp>,
    },
    /// Record the customer's satisfaction with the resolution.
    Rate {
        /// 1 (poor) to 5 (excellent).
        score: u8,
        /// The customer's words.
        comment: Option<String>,
    },
}

/// Payload of `CaseOpened`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOpened {
    /// The case.
    pub case_id: CaseId,
    /// The customer.
    pub customer_id: CustomerId,
    /// Subject.
    pub subject: String,
    /// Description.
    pub description: String,
    /// How it came in.
    pub channel: InteractionChannel,
    /// Priority.
    pub priority: Priority,
    /// When.
    pub opened_at: Timestamp,
}

/// Payload of `CaseAssigned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseAssigned {
    /// Who.
    pub assignee: UserId,
}

/// Payload of `CaseResponded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResponded {
    /// The answer.
    pub message: String,
    /// When.
    pub responded_at: Timestamp,
    /// Whether this is the case's first response (for SLA figures).
    pub first: bool,
}

/// Payload of `CasePutOnHold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasePutOnHold {
    /// Why.
    pub reason: String,
}

/// Payload of `CaseResolved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResolved {
    /// How.
    pub resolution: String,
    /// When.
    pub resolved_at: Timestamp,
}

/// Payload of `CaseClosed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseClosed {
    /// When.
    pub closed_at: Timestamp,
}

/// Payload of `CaseReopened`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseReopened {
    /// Why.
    pub reason: String,
}

/// Payload of `CaseFollowUpSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFollowUpSet {
    /// When; `None` cleared it.
    pub at: Option<Timestamp>,
}

/// Payload of `CaseRated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRated {
    /// 1 to 5.
    pub score: u8,
    /// The customer's words.
    pub comment: Option<String>,
}

events! {
    /// What happens to service cases.
    pub enum CaseEvent {
        /// Opened.
        CaseOpened(CaseOpened) = 1,
        /// Assigned.
        CaseAssigned(CaseAssigned) = 1,
        /// Answered.
        CaseResponded(CaseResponded) = 1,
        /// Put on hold.
        CasePutOnHold(CasePutOnHold) = 1,
        /// Resolved.
        CaseResolved(CaseResolved) = 1,
        /// Closed.
        CaseClosed(CaseClosed) = 1,
        /// Reopened.
        CaseReopened(CaseReopened) = 1,
        /// Follow-up set or cleared.
        CaseFollowUpSet(CaseFollowUpSet) = 1,
        /// Rated by the customer.
        CaseRated(CaseRated) = 1,
    }
}

fn one_text(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let mut v = Validator::new();
    let value = v.text(field, value, max);
    v.finish(value)
}

/// The service case aggregate.
#[derive(Debug)]
pub struct ServiceCase;

impl Aggregate for ServiceCase {
    type State = CaseState;
    type Command = CaseCommand;
    type Event = CaseEvent;

    fn decide(state: &CaseState, command: CaseCommand, ctx: &Context) -> Result<Vec<CaseEvent>, DomainError> {
        use CaseCommand as C;
        use CaseEvent as E;
        use CaseStatus as S;
        let event = match command {
            C::Open { id, customer, subject, description, channel, priority } => {
                if state.status != S::Unopened {
                    return Err(DomainError::AlreadyExists { entity: "service case" });
                }
                let mut v = Validator::new();
                let subject = v.text("subject", &subject, 200);
                let description = v.text("description", &description, MAX_TEXT_CHARS);
                let (subject, description) = v.finish((subject, description))?;
                E::CaseOpened(CaseOpened {
                    case_id: id,
                    customer_id: customer,
                    subject,
                    description,
                    channel,
                    priority,
                    opened_at: ctx.now,
                })
            }
            C::Assign { assignee } => {
                state.status.require(&[S::New, S::Assigned, S::InProgress, S::OnHold], "assign")?;
                if state.assignee == Some(assignee) {
                    return Ok(Vec::new());
                }
                E::CaseAssigned(CaseAssigned { assignee })
            }
            C::Respond { message } => {
                state.status.require(&[S::New, S::Assigned, S::InProgress, S::OnHold], "respond to")?;
                E::CaseResponded(CaseResponded {
                    message: one_text("message", &message, MAX_TEXT_CHARS)?,
                    responded_at: ctx.now,
                    first: state.first_response_at.is_none(),
                })
            }
            C::Hold { reason } => {
                state.status.require(&[S::Assigned, S::InProgress], "put on hold")?;
                E::CasePutOnHold(CasePutOnHold { reason: one_text("reason", &reason, MAX_TEXT_CHARS)? })
            }
            C::Resolve { resolution } => {
                state.status.require(&[S::New, S::Assigned, S::InProgress, S::OnHold], "resolve")?;
                E::CaseResolved(CaseResolved {
                    resolution: one_text("resolution", &resolution, MAX_TEXT_CHARS)?,
                    resolved_at: ctx.now,
                })
            }
            C::Close => {
                state.status.require(&[S::Resolved], "close")?;
                E::CaseClosed(CaseClosed { closed_at: ctx.now })
            }
            C::Reopen { reason } => {
                state.status.require(&[S::Resolved, S::Closed], "reopen")?;
                E::CaseReopened(CaseReopened { reason: one_text("reason", &reason, MAX_TEXT_CHARS)? })
            }
            C::SetFollowUp { at } => {
                state.status.require(
                    &[S::New, S::Assigned, S::InProgress, S::OnHold, S::Resolved],
                    "schedule a follow-up for",
                )?;
                if let Some(at) = at {
                    if at <= ctx.now {
                        return Err(DomainError::Validation(vec![crate::error::FieldError {
                            field: "at".into(),
                            code: FieldCode::OutOfRange,
                            message: "must be in the future".into(),
                        }]));
                    }
                }
                E::CaseFollowUpSet(CaseFollowUpSet { at })
            }
            C::Rate { score, comment } => {
                state.status.require(&[S::Resolved, S::Closed], "rate")?;
                if state.rated {
                    return Err(DomainError::Rule("this resolution has been rated already".into()));
                }
                let mut v = Validator::new();
                v.require((1..=5).contains(&score), "score", FieldCode::OutOfRange, "must be 1 to 5");
                let comment = v.optional_text("comment", comment.as_deref(), MAX_TEXT_CHARS);
                E::CaseRated(CaseRated { score, comment: v.finish(comment)? })
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: CaseState, event: &CaseEvent) -> CaseState {
        use CaseEvent as E;
        use CaseStatus as S;
        match event {
            E::CaseOpened(e) => {
                state.id = Some(e.case_id);
                state.customer = Some(e.customer_id);
                state.status = S::New;
                state.priority = Some(e.priority);
                state.opened_at = Some(e.opened_at);
            }
            E::CaseAssigned(e) => {
                state.assignee = Some(e.assignee);
                if matches!(state.status, S::New | S::OnHold) {
                    state.status = S::Assigned;
                }
            }
            E::CaseResponded(e) => {
                state.status = S::InProgress;
                state.first_response_at.get_or_insert(e.responded_at);
            }
            E::CasePutOnHold(_) => state.status = S::OnHold,
            E::CaseResolved(e) => {
                state.status = S::Resolved;
                state.resolved_at = Some(e.resolved_at);
                state.rated = false;
                state.follow_up_at = None;
            }
            E::CaseClosed(_) => state.status = S::Closed,
            E::CaseReopened(_) => {
                state.status = S::InProgress;
                state.reopened = state.reopened.saturating_add(1);
            }
            E::CaseFollowUpSet(e) => state.follow_up_at = e.at,
            E::CaseRated(_) => state.rated = true,
        }
        state
    }
}
