//! Leave balances and department budgets as ledgers: credits granted by administrators, and
//! amounts reserved when an approval is submitted, taken when it is approved, released when it
//! is rejected or cancelled.
//!
//! Invariants:
//! - A ledger is one stream per key: leave is per user, leave type and year
//!   (`leave/{user}/{type}/{year}`), a budget per department, category and year
//!   (`budget/{department}/{category}/{year}`); [`LedgerId::of`] derives the stream's id from
//!   the key, so anyone who knows the key finds the ledger.
//! - Amounts are integers in the ledger's unit: half days for leave, fen for budgets.
//! - `available = credited - taken - reserved`. A reservation that would make it negative is
//!   refused ([`DomainError::Validation`] on `amount`, naming both figures) unless the binding
//!   allows a negative balance (some leave types do). A leave range without a working half
//!   day is refused, and so is one that shares a half day with leave reserved or taken on the
//!   same ledger by another approval (`span`; the ledger is one stream, so two requests sent
//!   at once cannot both pass).
//! - One reservation per approval: reserving again (a resubmission) releases the old amount
//!   first; taking or releasing an approval with no reservation changes nothing, so the
//!   steps that follow an approval's outcome can be repeated safely.
//! - The approval's decision and its ledger step are appended together (one command over
//!   both streams), so a balance never disagrees with the approvals it counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{ApprovalId, LedgerId, UserId};
use crate::validate::Validator;

/// What a ledger counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerUnit {
    /// Half days of leave.
    HalfDays,
    /// Money in fen.
    Fen,
}

impl LedgerId {
    /// The id of the ledger with `key` (the first 16 bytes of the key's BLAKE3).
    #[must_use]
    pub fn of(key: &str) -> LedgerId {
        let hash = blake3::hash(key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_bytes()[..16]);
        LedgerId(uuid::Uuid::from_bytes(bytes))
    }
}

/// The key of a user's leave ledger.
#[must_use]
pub fn leave_key(user: UserId, leave_type: &str, year: u16) -> String {
    format!("leave/{user}/{leave_type}/{year}")
}

/// The key of a department's budget ledger.
#[must_use]
pub fn budget_key(department: crate::ids::DepartmentId, category: &str, year: u16) -> String {
    format!("budget/{department}/{category}/{year}")
}

/// What can be asked of a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCommand {
    /// Credit (or, negative, debit) the ledger: a year's leave entitlement, a budget.
    Credit {
        /// The ledger's key (checked against the stream on its first event).
        key: String,
        /// Its unit.
        unit: LedgerUnit,
        /// The amount, in the unit.
        amount: i64,
        /// Why.
        reason: String,
    },
    /// Reserve `amount` for an approval (replacing its earlier reservation).
    Reserve {
        /// The ledger's key.
        key: String,
        /// Its unit.
        unit: LedgerUnit,
        /// The approval.
        approval: ApprovalId,
        /// The amount, in the unit.
        amount: i64,
        /// Whether the balance may go below zero.
        allow_negative: bool,
        /// The days a leave asks for (none for a budget): refused if they overlap another
        /// approval's reserved or taken leave on this ledger.
        span: Option<LeaveSpan>,
    },
    /// Take an approval's reservation (it was approved).
    Take {
        /// The approval.
        approval: ApprovalId,
    },
    /// Release an approval's reservation (rejected or cancelled).
    Release {
        /// The approval.
        approval: ApprovalId,
    },
}

/// Payload of `LedgerCredited`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCredited {
    /// The ledger's key.
    pub key: String,
    /// Its unit.
    pub unit: LedgerUnit,
    /// The amount (negative: a debit).
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// Who.
    pub by: Option<UserId>,
}

/// Payload of `LedgerReserved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerReserved {
    /// The ledger's key.
    pub key: String,
    /// Its unit.
    pub unit: LedgerUnit,
    /// The approval.
    pub approval: ApprovalId,
    /// The amount.
    pub amount: i64,
    /// The days of a leave (absent for budgets, and in events written before spans were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<LeaveSpan>,
}

/// The half days a leave runs over, inclusive: from (`from`, `from_half`) to (`to`, `to_half`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveSpan {
    /// First day.
    pub from: crate::ids::Date,
    /// The half it starts in.
    pub from_half: super::form::Half,
    /// Last day.
    pub to: crate::ids::Date,
    /// The half it ends in.
    pub to_half: super::form::Half,
}

impl LeaveSpan {
    /// Whether the two share a half day.
    #[must_use]
    pub fn overlaps(&self, other: &LeaveSpan) -> bool {
        (self.from, self.from_half) <= (other.to, other.to_half)
            && (other.from, other.from_half) <= (self.to, self.to_half)
    }

    /// The refusal of a request overlapping these days, which `approval` reserved or took
    /// (a field error on `field`).
    #[must_use]
    pub fn overlap_error(&self, approval: ApprovalId, field: String) -> crate::error::FieldError {
        crate::error::FieldError {
            field,
            code: FieldCode::Duplicate,
            message: format!(
                "overlaps leave already asked for or taken from {} ({}) to {} ({}) (approval {})",
                self.from,
                self.from_half.as_str(),
                self.to,
                self.to_half.as_str(),
                approval.0
            ),
        }
    }
}

impl From<super::form::DateRange> for LeaveSpan {
    fn from(range: super::form::DateRange) -> Self {
        LeaveSpan { from: range.from.0, from_half: range.from.1, to: range.to.0, to_half: range.to.1 }
    }
}

/// Payload of `LedgerTaken` and `LedgerReleased`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSettled {
    /// The approval.
    pub approval: ApprovalId,
    /// The amount reserved for it.
    pub amount: i64,
}

events! {
    /// What happens to a ledger.
    pub enum LedgerEvent {
        /// Credited or debited.
        LedgerCredited(LedgerCredited) = 1,
        /// An amount reserved for an approval.
        LedgerReserved(LedgerReserved) = 1,
        /// An approval's reservation taken (approved).
        LedgerTaken(LedgerSettled) = 1,
        /// An approval's reservation released (rejected, cancelled, or replaced).
        LedgerReleased(LedgerSettled) = 1,
    }
}

/// The folded ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerState {
    /// Its key, once written.
    pub key: Option<String>,
    /// Its unit, once written.
    pub unit: Option<LedgerUnit>,
    /// Credits less debits.
    pub credited: i64,
    /// Taken by approved approvals.
    pub taken: i64,
    /// Reserved by running approvals.
    pub reserved: BTreeMap<ApprovalId, i64>,
    /// The days of leave reserved or taken, by approval (released ones left out).
    #[serde(default)]
    pub spans: BTreeMap<ApprovalId, LeaveSpan>,
}

impl LedgerState {
    /// What is left to reserve.
    #[must_use]
    pub fn available(&self) -> i64 {
        self.credited - self.taken - self.reserved.values().sum::<i64>()
    }

    fn check_key(&self, key: &str, unit: LedgerUnit) -> Result<(), DomainError> {
        match (&self.key, self.unit) {
            (Some(k), Some(u)) if k != key || u != unit => {
                Err(DomainError::Rule(format!("ledger {k} counts {u:?}, not {key} in {unit:?}")))
            }
            _ => Ok(()),
        }
    }
}

/// Longest leave request, in calendar days.
pub const MAX_LEAVE_DAYS: i64 = 366;

/// Largest amount one entry may carry (10^12: ¥10 billion in fen).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The ledger aggregate.
#[derive(Debug)]
pub struct Ledger;

impl Aggregate for Ledger {
    type State = LedgerState;
    type Command = LedgerCommand;
    type Event = LedgerEvent;

    fn decide(state: &LedgerState, command: LedgerCommand, ctx: &Context) -> Result<Vec<LedgerEvent>, DomainError> {
        use LedgerEvent as E;
        match command {
            LedgerCommand::Credit { key, unit, amount, reason } => {
                state.check_key(&key, unit)?;
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, 200);
                v.require(
                    amount != 0 && amount.abs() <= MAX_AMOUNT,
                    "amount",
                    FieldCode::OutOfRange,
                    "a non-zero amount of at most 10^12",
                );
                let reason = v.finish(reason)?;
                Ok(vec![E::LedgerCredited(LedgerCredited { key, unit, amount, reason, by: ctx.actor })])
            }
            LedgerCommand::Reserve { key, unit, approval, amount, allow_negative, span } => {
                state.check_key(&key, unit)?;
                let mut v = Validator::new();
                v.require((0..=MAX_AMOUNT).contains(&amount), "amount", FieldCode::OutOfRange, "0 to 10^12");
                v.finish(())?;
                let mut events = Vec::new();
                let earlier = state.reserved.get(&approval).copied();
                if earlier == Some(amount) && state.spans.get(&approval) == span.as_ref() {
                    return Ok(events);
                }
                // One person is not on leave twice on one half day.
                if let Some(span) = &span {
                    let overlap = state.spans.iter().find(|(other, s)| **other != approval && s.overlaps(span));
                    if let Some((other, s)) = overlap {
                        return Err(DomainError::Validation(vec![s.overlap_error(*other, "span".into())]));
                    }
                }
                let available = state.available() + earlier.unwrap_or(0);
                if amount > available && !allow_negative {
                    // A leave balance is the submitter's own; a budget's figures are not shown to
                    // everyone who submits against it.
                    let message = match unit {
                        LedgerUnit::HalfDays => {
                            format!("insufficient leave in {key}: {available} half days available, {amount} asked")
                        }
                        LedgerUnit::Fen => format!("the budget {key} does not cover {amount} fen"),
                    };
                    return Err(DomainError::Validation(vec![crate::error::FieldError {
                        field: "amount".into(),
                        code: FieldCode::OutOfRange,
                        message,
                    }]));
                }
                if let Some(earlier) = earlier {
                    events.push(E::LedgerReleased(LedgerSettled { approval, amount: earlier }));
                }
                events.push(E::LedgerReserved(LedgerReserved { key, unit, approval, amount, span }));
                Ok(events)
            }
            LedgerCommand::Take { approval } => Ok(state
                .reserved
                .get(&approval)
                .map(|amount| E::LedgerTaken(LedgerSettled { approval, amount: *amount }))
                .into_iter()
                .collect()),
            LedgerCommand::Release { approval } => Ok(state
                .reserved
                .get(&approval)
                .map(|amount| E::LedgerReleased(LedgerSettled { approval, amount: *amount }))
                .into_iter()
                .collect()),
        }
    }

    fn evolve(mut state: LedgerState, event: &LedgerEvent) -> LedgerState {
        match event {
            LedgerEvent::LedgerCredited(e) => {
                state.key.get_or_insert_with(|| e.key.clone());
                state.unit.get_or_insert(e.unit);
                state.credited += e.amount;
            }
            LedgerEvent::LedgerReserved(e) => {
                state.key.get_or_insert_with(|| e.key.clone());
                state.unit.get_or_insert(e.unit);
                state.reserved.insert(e.approval, e.amount);
                match e.span {
                    Some(span) => state.spans.insert(e.approval, span),
                    None => state.spans.remove(&e.approval),
                };
            }
            LedgerEvent::LedgerTaken(e) => {
                // Taken leave keeps its days.
                state.reserved.remove(&e.approval);
                state.taken += e.amount;
            }
            LedgerEvent::LedgerReleased(e) => {
                state.reserved.remove(&e.approval);
                state.spans.remove(&e.approval);
            }
        }
        state
    }
}

/// What a definition's approvals count against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerBinding {
    /// The submitter's leave of `leave_type`: the working half days of the date range in
    /// `range_field`, on the working calendar.
    Leave {
        /// E.g. `annual`.
        leave_type: String,
        /// A date-range field of the form.
        range_field: String,
        /// Whether the balance may go below zero.
        #[serde(default)]
        allow_negative: bool,
    },
    /// The submitter's department's budget of `category`: the money in `amount_field`.
    Budget {
        /// E.g. `travel`.
        category: String,
        /// A money field of the form.
        amount_field: String,
        /// Whether the budget may be overspent.
        #[serde(default)]
        allow_negative: bool,
    },
}

/// The key and unit of the ledger `binding` counts an approval against: the submitter's leave,
/// or the submitter's department's budget, of the year (China Standard Time) it was first
/// submitted.
///
/// # Errors
/// A budget binding for a submitter without a department.
pub fn ledger_key(
    binding: &LedgerBinding,
    submitter: UserId,
    department: Option<crate::ids::DepartmentId>,
    submitted_at: crate::ids::Timestamp,
) -> Result<(String, LedgerUnit), DomainError> {
    let year =
        crate::ids::Date::of_timestamp(submitted_at, super::calendar::OFFSET_MINUTES).map_or(0, crate::ids::Date::year);
    match binding {
        LedgerBinding::Leave { leave_type, .. } => Ok((leave_key(submitter, leave_type, year), LedgerUnit::HalfDays)),
        LedgerBinding::Budget { category, .. } => {
            let department = department
                .ok_or_else(|| DomainError::Rule("a budget is a department's: the submitter has none".into()))?;
            Ok((budget_key(department, category, year), LedgerUnit::Fen))
        }
    }
}

/// The amount an approval with `form` counts: working half days of its leave range on
/// `calendar`, or the money of its budget field.
#[must_use]
pub fn amount_of(
    binding: &LedgerBinding,
    form: &super::form::FormValues,
    calendar: &super::calendar::WorkCalendar,
) -> i64 {
    match binding {
        LedgerBinding::Leave { range_field, .. } => form
            .get(range_field)
            .and_then(|value| super::form::date_range(value).ok())
            .map_or(0, |range| i64::from(calendar.working_half_days(&range).0)),
        LedgerBinding::Budget { amount_field, .. } => {
            form.get(amount_field).and_then(serde_json::Value::as_i64).unwrap_or(0)
        }
    }
}

/// The ledger commands an approval's new events imply, in order: a submission or
/// resubmission reserves (the amount of the form after the events), an approval takes, a
/// rejection or cancellation releases. `state` is the approval after the events.
///
/// # Errors
/// As [`ledger_key`].
pub fn follow(
    binding: &LedgerBinding,
    state: &super::instance::ApprovalState,
    events: &[super::instance::ApprovalEvent],
    calendar: &super::calendar::WorkCalendar,
) -> Result<Vec<LedgerCommand>, DomainError> {
    use super::instance::{ApprovalEvent as E, Outcome};
    let Some(submitter) = state.submitter else { return Ok(Vec::new()) };
    let (key, unit) = ledger_key(binding, submitter, state.department, state.submitted_at)?;
    let allow_negative = match binding {
        LedgerBinding::Leave { allow_negative, .. } | LedgerBinding::Budget { allow_negative, .. } => *allow_negative,
    };
    let approval = match state.id {
        Some(id) => id,
        None => return Ok(Vec::new()),
    };
    let mut commands = Vec::new();
    for event in events {
        match event {
            E::ApprovalSubmitted(_) | E::ApprovalResubmitted(_) | E::ApprovalFormEdited(_) => {
                let amount = amount_of(binding, &state.form, calendar);
                // A leave's days, checked once read (a budget has none).
                let span = match binding {
                    LedgerBinding::Leave { range_field, .. } => {
                        let range = state.form.get(range_field).and_then(|v| super::form::date_range(v).ok());
                        let days = range.map_or(0, |r| r.to.0.days() - r.from.0.days() + 1);
                        let problem = if amount == 0 {
                            Some("the range holds no working half day")
                        } else if days > MAX_LEAVE_DAYS {
                            Some("a leave request spans at most 366 days")
                        } else {
                            None
                        };
                        if let Some(message) = problem {
                            return Err(DomainError::Validation(vec![crate::error::FieldError {
                                field: format!("form.{range_field}"),
                                code: FieldCode::OutOfRange,
                                message: message.into(),
                            }]));
                        }
                        range.map(LeaveSpan::from)
                    }
                    LedgerBinding::Budget { .. } => None,
                };
                commands.push(LedgerCommand::Reserve {
                    key: key.clone(),
                    unit,
                    approval,
                    amount,
                    allow_negative,
                    span,
                });
            }
            E::ApprovalCompleted(c) if c.outcome == Outcome::Approved => {
                commands.push(LedgerCommand::Take { approval })
            }
            E::ApprovalCompleted(_) | E::ApprovalCancelled(_) => commands.push(LedgerCommand::Release { approval }),
            _ => {}
        }
    }
    Ok(commands)
}
