//! What people wrote, read back: a customer's interactions (with their summaries) and
//! purchases, a case's messages (description, responses, hold and reopen reasons,
//! resolution, the customer's comment) and a task's description and comments. Each is
//! folded on demand from the one record's stream (the views keep no free text), after the
//! same scope check as the record itself: a record out of scope is NOT_FOUND.

use async_graphql::{Context, Object, SimpleObject};
use oacis_domain::authz::Permission;
use oacis_domain::case::CaseEvent;
use oacis_domain::customer::CustomerEvent;
use oacis_domain::ids::{CaseId, CustomerId, TaskId};
use oacis_domain::task::TaskEvent;
use oacis_domain::DomainEvent;
use oacis_eventlog::{EventStore, Record, StreamId, Version};

use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, time_text, Direction, InteractionChannel};
use super::{app, caller, views};
use crate::access::resource;

/// Records read per page of a stream.
const PAGE: usize = 1_000;

/// Every event of `stream`, decoded, with the record it came from.
async fn events_of<E: DomainEvent>(ctx: &Context<'_>, stream: &str) -> ApiResult<Vec<(Record, E)>> {
    let store = app(ctx)?.bus.store();
    let stream = StreamId::new(stream.to_owned()).map_err(ApiError::internal)?;
    let mut out = Vec::new();
    let mut from = Version(1);
    loop {
        let page = store.read_stream(&stream, from, PAGE).await?;
        let full = page.len() == PAGE;
        for record in page {
            from = record.version.next();
            let event: E = oacis_projections::decode::decode_event(&record, store.keys().map(|k| &**k))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            out.push((record, event));
        }
        if !full {
            return Ok(out);
        }
    }
}

/// An interaction with a customer.
#[derive(SimpleObject, Debug, Clone)]
pub struct InteractionNode {
    /// Its id.
    pub id: String,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    /// How.
    pub channel: InteractionChannel,
    /// Who started it.
    pub direction: Direction,
    /// What was said or done.
    pub summary: String,
    /// Staff who took part (user ids).
    pub participants: Vec<String>,
    /// Who logged it.
    pub logged_by: String,
    /// Its log position.
    pub seq: u64,
}

/// A purchase, and its reversal if any.
#[derive(SimpleObject, Debug, Clone)]
pub struct PurchaseNode {
    /// Its id (what `reversePurchase` takes).
    pub id: String,
    /// Product.
    pub product: String,
    /// How many.
    pub quantity: u32,
    /// Total in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The purchase's date, `YYYY-MM-DD`.
    pub purchased_on: String,
    /// Whether it was reversed.
    pub reversed: bool,
    /// Why, if reversed.
    pub reversal_reason: Option<String>,
}

/// One written entry of a case or task: what was written, by whom, when.
#[derive(SimpleObject, Debug, Clone)]
pub struct NoteNode {
    /// What it is: `description`, `response`, `hold`, `resolution`, `reopen`, `rating`,
    /// `comment`, `cancellation`.
    pub kind: String,
    /// The text.
    pub text: String,
    /// Who wrote it (user id, or `system`).
    pub author: String,
    /// When it was recorded (RFC 3339).
    pub at: String,
}

fn note(kind: &str, text: &str, record: &Record) -> NoteNode {
    NoteNode {
        kind: kind.to_owned(),
        text: text.to_owned(),
        author: record.meta.actor.clone(),
        at: record.recorded_at.to_rfc3339().unwrap_or_default(),
    }
}

/// Queries of what people wrote.
#[derive(Default, Debug)]
pub struct NotesQuery;

#[Object]
impl NotesQuery {
    /// A customer's interactions, oldest first (`customer.read`).
    async fn interactions(&self, ctx: &Context<'_>, customer: String) -> ApiResult<Vec<InteractionNode>> {
        let id = readable_customer(ctx, &customer)?;
        let events = events_of::<CustomerEvent>(ctx, &id.stream()).await?;
        Ok(events
            .into_iter()
            .filter_map(|(record, event)| match event {
                CustomerEvent::InteractionLogged(e) => Some(InteractionNode {
                    id: e.interaction_id.0.to_string(),
                    occurred_at: time_text(e.occurred_at),
                    channel: e.channel.into(),
                    direction: e.direction.into(),
                    summary: e.summary,
                    participants: e.participants.iter().map(ToString::to_string).collect(),
                    logged_by: record.meta.actor.clone(),
                    seq: record.seq.0,
                }),
                _ => None,
            })
            .collect())
    }

    /// A customer's purchases, oldest first, with their reversals (`customer.read`).
    async fn purchases(&self, ctx: &Context<'_>, customer: String) -> ApiResult<Vec<PurchaseNode>> {
        let id = readable_customer(ctx, &customer)?;
        let mut purchases: Vec<PurchaseNode> = Vec::new();
        for (_, event) in events_of::<CustomerEvent>(ctx, &id.stream()).await? {
            match event {
                CustomerEvent::PurchaseRecorded(e) => purchases.push(PurchaseNode {
                    id: e.purchase_id.0.to_string(),
                    product: e.product,
                    quantity: e.quantity,
                    amount_minor: e.amount_minor,
                    currency: e.currency,
                    purchased_on: e.purchased_on.to_string(),
                    reversed: false,
                    reversal_reason: None,
                }),
                CustomerEvent::PurchaseReversed(e) => {
                    let id = e.purchase_id.0.to_string();
                    if let Some(p) = purchases.iter_mut().find(|p| p.id == id) {
                        p.reversed = true;
                        p.reversal_reason = Some(e.reason);
                    }
                }
                _ => {}
            }
        }
        Ok(purchases)
    }

    /// What was written on a service case, oldest first (`case.read`).
    async fn case_notes(&self, ctx: &Context<'_>, case: String) -> ApiResult<Vec<NoteNode>> {
        let caller = caller(ctx)?;
        let id = CaseId(parse_id("case", &case)?);
        if views(ctx, |v| super::work::case_of(v, caller, id))?.is_none() {
            return Err(ApiError::NotFound("case"));
        }
        let events = events_of::<CaseEvent>(ctx, &id.stream()).await?;
        Ok(events
            .iter()
            .filter_map(|(record, event)| match event {
                CaseEvent::CaseOpened(e) => Some(note("description", &e.description, record)),
                CaseEvent::CaseResponded(e) => Some(note("response", &e.message, record)),
                CaseEvent::CasePutOnHold(e) => Some(note("hold", &e.reason, record)),
                CaseEvent::CaseResolved(e) => Some(note("resolution", &e.resolution, record)),
                CaseEvent::CaseReopened(e) => Some(note("reopen", &e.reason, record)),
                CaseEvent::CaseRated(e) => {
                    let text =
                        format!("{}/5{}", e.score, e.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default());
                    Some(note("rating", &text, record))
                }
                _ => None,
            })
            .collect())
    }

    /// A task's description and comments, oldest first (`task.read`).
    async fn task_notes(&self, ctx: &Context<'_>, task: String) -> ApiResult<Vec<NoteNode>> {
        let caller = caller(ctx)?;
        let id = TaskId(parse_id("task", &task)?);
        if views(ctx, |v| super::work::task_of(v, caller, id))?.is_none() {
            return Err(ApiError::NotFound("task"));
        }
        let events = events_of::<TaskEvent>(ctx, &id.stream()).await?;
        Ok(events
            .iter()
            .filter_map(|(record, event)| match event {
                TaskEvent::TaskCreated(e) => e.description.as_deref().map(|d| note("description", d, record)),
                TaskEvent::TaskCommented(e) => Some(note("comment", &e.text, record)),
                TaskEvent::TaskStatusChanged(e) => e.reason.as_deref().map(|r| note("cancellation", r, record)),
                _ => None,
            })
            .collect())
    }
}

/// The customer named by `text`, if the caller may read it (NOT_FOUND otherwise).
fn readable_customer(ctx: &Context<'_>, text: &str) -> ApiResult<CustomerId> {
    let caller = caller(ctx)?;
    let id = CustomerId(parse_id("customer", text)?);
    let visible = views(ctx, |v| {
        v.directory.get(id).is_some_and(|row| {
            caller.may(Permission::CustomerRead, &resource(&v.access, Some(row.owner), Some(row.department)))
        })
    })?;
    if visible {
        Ok(id)
    } else {
        Err(ApiError::NotFound("customer"))
    }
}
