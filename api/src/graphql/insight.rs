//! Analytics for analysts and audit trails for auditors.
//!
//! - Analytics count only what the caller may see: customer figures go through the caller's
//!   `customer.read` scope; purchase, case and task figures, which the views keep only in
//!   total, are answered to callers whose `analytics.read` reaches every record, and refused
//!   (FORBIDDEN) to narrower scopes rather than shown unscoped.
//! - `asOfSeq` on analytics replays the views up to that seq: one pass over the log up to
//!   it, at most [`AS_OF_AT_ONCE`] at a time.
//! - Audit reads need `audit.read`; a record's history also needs the record to be in the
//!   caller's read scope (NOT_FOUND otherwise), and personal values in histories and event
//!   payloads are masked without `customer.read_personal`.

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, SimpleObject};
use oacis_domain::authz::{Permission, Resource};
use oacis_domain::ids::{CustomerId, UserId};
use oacis_eventlog::{AnyStore, EventStore, Record, Seq, StreamId};
use oacis_projections::views::analytics::{Dimension, RfmThresholds};
use oacis_projections::views::audit::Alert;
use oacis_projections::views::directory::Visible;
use oacis_projections::views::timeline::RecordRef;
use oacis_projections::Views;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, time_text, CustomerDimension};
use super::{app, caller, connection, views, Counted};
use crate::access::{mask_all, resource, Caller};

/// As-of analytics computed at once (each is a partial replay of the log).
pub const AS_OF_AT_ONCE: usize = 1;

/// Permits for as-of analytics.
pub static AS_OF_PERMITS: Semaphore = Semaphore::const_new(AS_OF_AT_ONCE);

/// One group of a count.
#[derive(SimpleObject, Debug, Clone)]
pub struct Bucket {
    /// The group's key.
    pub key: String,
    /// How many.
    pub count: u64,
}

/// Purchase totals of one group, net of reversals.
#[derive(SimpleObject, Debug, Clone)]
pub struct PurchaseTotal {
    /// Month (`YYYY-MM`) or segment.
    pub key: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Purchases recorded.
    pub count: u64,
    /// Net amount in minor units.
    pub amount_minor: i64,
}

/// Service case figures.
#[derive(SimpleObject, Debug, Clone)]
pub struct CaseFigures {
    /// Cases opened.
    pub opened: u64,
    /// Cases closed.
    pub closed: u64,
    /// Mean time to first response, seconds.
    pub mean_first_response_seconds: Option<f64>,
    /// Mean time to resolution, seconds.
    pub mean_resolution_seconds: Option<f64>,
    /// Mean satisfaction, 1 to 5.
    pub mean_satisfaction: Option<f64>,
}

/// Figures over the views at one point of the log.
pub struct Analytics {
    views: std::sync::Arc<std::sync::RwLock<Views>>,
    visible: Option<Visible>,
    all: bool,
    now: oacis_domain::ids::Timestamp,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics").field("visible", &self.visible).field("all", &self.all).finish_non_exhaustive()
    }
}

impl Analytics {
    fn read<R>(&self, f: impl FnOnce(&Views) -> R) -> ApiResult<R> {
        let views = self.views.read().map_err(|_| ApiError::internal("views lock poisoned"))?;
        Ok(f(&views))
    }

    fn require_all(&self, what: &str) -> ApiResult<()> {
        if self.all {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{what} are kept only in total: they need analytics.read over all records"
            )))
        }
    }

    fn admits(&self, owner: UserId, department: oacis_domain::ids::DepartmentId) -> bool {
        self.visible.as_ref().is_none_or(|v| v.admits(owner, department))
    }
}

#[Object]
impl Analytics {
    /// The log position these figures are computed at.
    async fn seq(&self) -> ApiResult<u64> {
        self.read(|v| v.applied().0)
    }

    /// Customers (merged ones left out) counted by `dimension`, within the caller's scope.
    async fn customers_by(&self, dimension: CustomerDimension) -> ApiResult<Vec<Bucket>> {
        let dimension: Dimension = dimension.into();
        self.read(|v| {
            v.analytics
                .customers_by_where(dimension, &|o, d| self.admits(o, d))
                .into_iter()
                .map(|(key, count)| Bucket { key, count })
                .collect()
        })
    }

    /// Live customers by value tier (RFM), within the caller's scope.
    async fn value_tiers(&self) -> ApiResult<Vec<Bucket>> {
        self.read(|v| {
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for tier in
                v.analytics.value_tiers_where(self.now, RfmThresholds::default(), &|o, d| self.admits(o, d)).values()
            {
                *counts.entry(format!("{tier:?}")).or_default() += 1;
            }
            counts.into_iter().map(|(key, count)| Bucket { key, count }).collect()
        })
    }

    /// Purchase totals by month and currency.
    async fn purchases_by_month(&self) -> ApiResult<Option<Vec<PurchaseTotal>>> {
        self.require_all("purchase figures")?;
        self.read(|v| Some(totals(v.analytics.purchases_by_month())))
    }

    /// Purchase totals by segment and currency.
    async fn purchases_by_segment(&self) -> ApiResult<Option<Vec<PurchaseTotal>>> {
        self.require_all("purchase figures")?;
        self.read(|v| Some(totals(v.analytics.purchases_by_segment())))
    }

    /// Service case SLA figures and satisfaction.
    async fn cases(&self) -> ApiResult<Option<CaseFigures>> {
        self.require_all("case figures")?;
        self.read(|v| {
            let c = v.analytics.cases();
            Some(CaseFigures {
                opened: c.opened,
                closed: c.closed,
                mean_first_response_seconds: c.mean_first_response_s,
                mean_resolution_seconds: c.mean_resolution_s,
                mean_satisfaction: c.mean_satisfaction,
            })
        })
    }

    /// Share of tasks done among those not cancelled.
    async fn task_completion_rate(&self) -> ApiResult<Option<f64>> {
        self.require_all("task figures")?;
        self.read(|v| v.analytics.task_completion_rate())
    }
}

fn totals(
    map: std::collections::BTreeMap<(&str, &str), &oacis_projections::views::analytics::Totals>,
) -> Vec<PurchaseTotal> {
    map.into_iter()
        .map(|((key, currency), t)| PurchaseTotal {
            key: key.to_owned(),
            currency: currency.to_owned(),
            count: t.count,
            amount_minor: t.amount_minor,
        })
        .collect()
}

/// A field's change in a record's history.
#[derive(SimpleObject, Debug, Clone)]
pub struct FieldChangeNode {
    /// Dotted path, e.g. `profile.name`.
    pub field: String,
    /// The value before (JSON text), masked if personal and not permitted.
    pub before: Option<String>,
    /// The value after (JSON text), masked likewise.
    pub after: String,
    /// Whether the field is personal data.
    pub personal: bool,
}

/// One entry of a record's history.
#[derive(SimpleObject, Debug, Clone)]
pub struct HistoryNode {
    /// Log position.
    pub seq: u64,
    /// When recorded.
    pub at: String,
    /// Who (user id, or `system`).
    pub actor: String,
    /// Event kind.
    pub kind: String,
    /// Field-level changes.
    pub changes: Vec<FieldChangeNode>,
}

/// One of a person's operations.
#[derive(SimpleObject, Debug, Clone)]
pub struct OperationNode {
    /// Log position.
    pub seq: u64,
    /// When.
    pub at: String,
    /// Event kind.
    pub kind: String,
}

/// A sign-in attempt.
#[derive(SimpleObject, Debug, Clone)]
pub struct SignInNode {
    /// Log position.
    pub seq: u64,
    /// When.
    pub at: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Why it failed.
    pub failure: Option<String>,
    /// Client address.
    pub client: Option<String>,
}

/// A security alert.
#[derive(SimpleObject, Debug, Clone)]
pub struct AlertNode {
    /// Log position of the event that raised it.
    pub seq: u64,
    /// `repeated_failed_logins`, `personal_data_volume` or `sign_in_on_blocked_account`.
    pub kind: String,
    /// The account concerned.
    pub user: String,
    /// Details in words.
    pub detail: String,
}

impl AlertNode {
    /// The node of `alert`.
    #[must_use]
    pub fn of(alert: &Alert) -> AlertNode {
        let kind = match alert {
            Alert::RepeatedFailedLogins { .. } => "repeated_failed_logins",
            Alert::PersonalDataVolume { .. } => "personal_data_volume",
            Alert::LoginOnBlockedAccount { .. } => "sign_in_on_blocked_account",
        };
        AlertNode { seq: alert.seq().0, kind: kind.into(), user: alert.user().to_string(), detail: alert_detail(alert) }
    }
}

/// An alert in words.
#[must_use]
pub fn alert_detail(alert: &Alert) -> String {
    match alert {
        Alert::RepeatedFailedLogins { failures, .. } => format!("{failures} failed sign-ins in a short time"),
        Alert::PersonalDataVolume { within_hour, .. } => {
            format!("{within_hour} personal-data reads or exported records within an hour")
        }
        Alert::LoginOnBlockedAccount { reason, .. } => format!("sign-in attempted while {reason:?}"),
    }
}

/// One event of the log.
#[derive(SimpleObject, Debug, Clone)]
pub struct EventNode {
    /// Position (gapless from 1).
    pub seq: u64,
    /// Stream.
    pub stream: String,
    /// Version within the stream.
    pub version: u64,
    /// Kind.
    pub kind: String,
    /// Payload schema.
    pub schema: u32,
    /// When recorded (RFC 3339).
    pub recorded_at: String,
    /// Actor.
    pub actor: String,
    /// The payload (JSON text), its `personal` parts masked without `customer.read_personal`.
    pub payload: String,
    /// BLAKE3 hash of the record, hex.
    pub hash: String,
    /// The previous record's hash, hex.
    pub prev_hash: String,
}

impl EventNode {
    /// Whether `record` is of one of `streams` and one of `kinds` (`None`: any).
    #[must_use]
    pub fn selected(record: &Record, streams: Option<&[String]>, kinds: Option<&[String]>) -> bool {
        streams.is_none_or(|s| s.iter().any(|x| x == record.stream.as_str()))
            && kinds.is_none_or(|k| k.iter().any(|x| x == record.kind.as_str()))
    }

    /// The node of `record` as `caller` may see it: secrets redacted, the `personal` parts
    /// masked unless `personal`, an approval's form fields hidden from `caller` left out
    /// (read from `views`; with no views to read them, the whole form is left out), and a
    /// user's profile fields their privacy settings keep from `caller` masked.
    #[must_use]
    pub fn of(record: &Record, personal: bool, views: &oacis_projections::Projections, caller: &Caller) -> EventNode {
        let mut payload: Value = serde_json::from_slice(&record.payload).unwrap_or(Value::Null);
        redact_secrets(&mut payload);
        let stream = record.stream.as_str();
        // Only an approval's records may hold hidden fields: no views read for the others.
        let hidden = if stream.starts_with(super::approvals::STREAM_PREFIX) {
            views.read(|v| super::approvals::hide_in_payload(v, caller, stream, &mut payload))
        } else if stream.starts_with(super::people::USER_STREAM_PREFIX) {
            // A colleague's profile fields their privacy settings keep from the caller.
            let fields =
                views.read(|v| super::people::hidden_user_fields(v, caller, stream)).unwrap_or(vec!["position"]);
            super::people::mask_user_fields(&mut payload, &fields);
            Ok(())
        } else {
            Ok(())
        };
        if hidden.is_err() {
            if let Some(form) = payload.get_mut("form") {
                *form = Value::Null;
            }
        }
        if !personal {
            mask_personal(&mut payload, false);
        }
        EventNode {
            seq: record.seq.0,
            stream: record.stream.as_str().to_owned(),
            version: record.version.0,
            kind: record.kind.as_str().to_owned(),
            schema: record.schema,
            recorded_at: record.recorded_at.to_rfc3339().unwrap_or_default(),
            actor: record.meta.actor.clone(),
            payload: payload.to_string(),
            hash: record.hash.to_hex(),
            prev_hash: record.prev_hash.to_hex(),
        }
    }
}

/// The result of verifying the whole chain.
#[derive(SimpleObject, Debug, Clone)]
pub struct ChainVerification {
    /// Whether every record checked out.
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// Head seq.
    pub head_seq: u64,
    /// Head hash, hex.
    pub head_hash: String,
    /// The first bad seq, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

/// A customer timeline entry.
#[derive(SimpleObject, Debug, Clone)]
pub struct TimelineNode {
    /// When it happened.
    pub at: String,
    /// Log position.
    pub seq: u64,
    /// The customer it belongs to (a merged duplicate keeps its own).
    pub customer: String,
    /// Event kind.
    pub kind: String,
    /// `customer`, `case` or `task`.
    pub record_type: String,
    /// The record's id.
    pub record_id: String,
}

/// Keys whose values never leave the server: password hashes (an argon2 PHC string invites
/// offline guessing) and session token hashes.
const SECRETS: &[&str] = &["credential", "token_hash"];

/// Replaces the values of secret keys, at any depth, with `[redacted]`.
fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRETS.contains(&key.as_str()) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// Masks every string under a `personal` key.
fn mask_personal(value: &mut Value, inside: bool) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                mask_personal(v, inside || key == "personal");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_personal(v, inside)),
        Value::String(s) if inside => *s = mask_all(s),
        Value::Number(_) | Value::Bool(_) if inside => *value = Value::String("****".into()),
        _ => {}
    }
}

fn audit_caller<'a>(ctx: &Context<'a>) -> ApiResult<&'a Caller> {
    let caller = caller(ctx)?;
    caller.require_any(Permission::AuditRead)?;
    Ok(caller)
}

/// The stream and read resource of a record named by type and id, if the caller may read it.
fn record_stream(v: &Views, caller: &Caller, record_type: &str, id: uuid::Uuid) -> ApiResult<Option<String>> {
    use oacis_domain::ids::{CaseId, DepartmentId, GrantId, RoleId, TaskId};
    let (stream, permission, resource): (String, Permission, Option<Resource>) = match record_type {
        "customer" => {
            let id = CustomerId(id);
            let r = v.directory.get(id).map(|row| resource(&v.access, Some(row.owner), Some(row.department)));
            (id.stream(), Permission::CustomerRead, r)
        }
        "case" => {
            let id = CaseId(id);
            let r = v.cases.get(id).map(|c| {
                let row = v.directory.resolve(c.customer);
                resource(&v.access, c.assignee.or(row.map(|r| r.owner)), row.map(|r| r.department))
            });
            (id.stream(), Permission::CaseRead, r)
        }
        "task" => {
            let id = TaskId(id);
            let r = v
                .tasks
                .get(id)
                .map(|t| resource(&v.access, Some(t.assignee), v.access.user(t.assignee).map(|u| u.department)));
            (id.stream(), Permission::TaskRead, r)
        }
        "user" => {
            let id = UserId(id);
            (
                id.stream(),
                Permission::AuditRead,
                v.access.user(id).map(|u| resource(&v.access, Some(id), Some(u.department))),
            )
        }
        "department" => {
            let id = DepartmentId(id);
            (id.stream(), Permission::AuditRead, v.access.department(id).map(|_| resource(&v.access, None, Some(id))))
        }
        "role" => {
            let id = RoleId(id);
            (id.stream(), Permission::AuditRead, v.access.role(id).map(|_| Resource::global()))
        }
        "grant" => {
            let id = GrantId(id);
            (id.stream(), Permission::AuditRead, v.access.grant(id).map(|_| Resource::global()))
        }
        _ => {
            return Err(ApiError::field(
                "recordType",
                oacis_domain::FieldCode::InvalidFormat,
                "use customer, case, task, user, department, role or grant",
            ))
        }
    };
    Ok(resource.filter(|r| caller.may(permission, r)).map(|_| stream))
}

/// Analytics and audit queries.
#[derive(Default, Debug)]
pub struct InsightQuery;

#[Object]
impl InsightQuery {
    /// Figures for analysts (`analytics.read`), now or as of a past seq (`asOfSeq`) or time
    /// (`asOf`, RFC 3339). An as-of read replays the views up to that point: one pass over
    /// the log, one such read at a time.
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        as_of_seq: Option<u64>,
        as_of: Option<String>,
    ) -> ApiResult<Analytics> {
        let caller = caller(ctx)?;
        let state = app(ctx)?;
        let (visible, all) = views(ctx, |v| -> ApiResult<_> {
            let analytics_scope = caller.visible(Permission::AnalyticsRead, &v.access)?;
            let customer_scope =
                caller.visible(Permission::CustomerRead, &v.access).unwrap_or(Some(Visible::default()));
            // Figures reach no further than both the analytics and the customer scope.
            let visible = match (analytics_scope.clone(), customer_scope) {
                (None, None) => None,
                (Some(a), None) | (None, Some(a)) => Some(a),
                (Some(a), Some(c)) => Some(Visible {
                    owner: a.owner.filter(|o| c.owner == Some(*o)),
                    departments: a.departments.intersection(&c.departments).copied().collect(),
                }),
            };
            Ok((visible.clone(), visible.is_none()))
        })??;
        let now = state.bus.now();
        let shared = match super::as_of(ctx, as_of_seq, as_of.as_deref()).await? {
            None => state.bus.projections().shared(),
            Some(seq) => {
                let _permit = AS_OF_PERMITS.acquire().await.map_err(ApiError::internal)?;
                let until = seq.min(state.bus.store().head().seq);
                let past = Views::replay(state.bus.store(), Some(until), &mut |_| {}).await?;
                std::sync::Arc::new(std::sync::RwLock::new(past))
            }
        };
        Ok(Analytics { views: shared, visible, all, now })
    }

    /// A customer's timeline (interactions, purchases, cases, tasks, changes), merged
    /// duplicates included; of a merged customer, its survivor's, or its own when the caller
    /// may read it but not its survivor.
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn customer_timeline(
        &self,
        ctx: &Context<'_>,
        customer: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, TimelineNode, Counted>> {
        let caller = caller(ctx)?;
        let id = CustomerId(parse_id("customer", &customer)?);
        let rows = views(ctx, |v| {
            // As `customer` answers: the survivor, or the merged customer itself when the
            // caller may read it but not its survivor.
            let readable = |row: &&oacis_projections::views::directory::CustomerRow| {
                caller.may(Permission::CustomerRead, &resource(&v.access, Some(row.owner), Some(row.department)))
            };
            let row = v.directory.resolve(id).filter(readable).or_else(|| v.directory.get(id).filter(readable));
            row.map(|row| {
                v.timeline
                    .of(row.id)
                    .into_iter()
                    .map(|e| {
                        let (record_type, record_id) = match e.record {
                            RecordRef::Customer(c) => ("customer", c.to_string()),
                            RecordRef::Case(c) => ("case", c.to_string()),
                            RecordRef::Task(t) => ("task", t.to_string()),
                            RecordRef::Approval(a) => ("approval", a.to_string()),
                        };
                        TimelineNode {
                            at: time_text(e.at),
                            seq: e.seq.0,
                            customer: e.customer.to_string(),
                            kind: e.kind.to_owned(),
                            record_type: record_type.to_owned(),
                            record_id,
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })?
        .ok_or(ApiError::NotFound("customer"))?;
        connection(rows, |t| t.seq.to_string(), first, after)
    }

    /// A record's history with field-level changes (`audit.read`), up to `asOfSeq`.
    async fn record_history(
        &self,
        ctx: &Context<'_>,
        record_type: String,
        id: String,
        as_of_seq: Option<u64>,
    ) -> ApiResult<Vec<HistoryNode>> {
        let caller = audit_caller(ctx)?;
        let id = parse_id("id", &id)?;
        let stream =
            views(ctx, |v| record_stream(v, caller, &record_type, id))??.ok_or(ApiError::NotFound("record"))?;
        let personal = record_type == "customer"
            && views(ctx, |v| {
                v.directory.get(CustomerId(id)).is_some_and(|row| {
                    caller.may(
                        Permission::CustomerReadPersonal,
                        &resource(&v.access, Some(row.owner), Some(row.department)),
                    )
                })
            })?;
        let hidden_fields = views(ctx, |v| super::people::hidden_user_fields(v, caller, &stream))?;
        let store = app(ctx)?.bus.store();
        let stream = StreamId::new(stream).map_err(ApiError::internal)?;
        let until = super::as_of(ctx, as_of_seq, None).await?.unwrap_or_else(|| store.head().seq);
        let history = oacis_projections::views::audit::record_history(store, &stream, until).await?;
        if personal && record_type == "customer" {
            if let Some(reveal) = super::request(ctx).ok().map(|r| r.reveal.clone()) {
                reveal.note(CustomerId(id));
            }
        }
        Ok(history
            .into_iter()
            .map(|h| HistoryNode {
                seq: h.seq.0,
                at: time_text(h.at),
                actor: h.actor,
                kind: h.kind.to_owned(),
                changes: h
                    .changes
                    .into_iter()
                    .map(|c| {
                        let secret = SECRETS.iter().any(|k| c.field == *k || c.field.ends_with(&format!(".{k}")));
                        if secret {
                            return FieldChangeNode {
                                before: c.before.map(|_| "[redacted]".into()),
                                after: "[redacted]".into(),
                                field: c.field,
                                personal: c.personal,
                            };
                        }
                        let hide = (c.personal && !personal)
                            || c.field.rsplit('.').next().is_some_and(|name| hidden_fields.contains(&name));
                        FieldChangeNode {
                            before: c.before.map(|b| if hide { mask_all(&b) } else { b }),
                            after: if hide { mask_all(&c.after) } else { c.after },
                            field: c.field,
                            personal: c.personal,
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    /// What a person did (`audit.read`), oldest first.
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn operations(
        &self,
        ctx: &Context<'_>,
        user: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, OperationNode, Counted>> {
        let caller = audit_caller(ctx)?;
        let user = UserId(parse_id("user", &user)?);
        let rows = views(ctx, |v| {
            let row = v.access.user(user)?;
            caller.may(Permission::AuditRead, &resource(&v.access, Some(user), Some(row.department))).then(|| {
                v.audit
                    .operations_of(&user.to_string())
                    .iter()
                    .map(|o| OperationNode { seq: o.seq.0, at: time_text(o.at), kind: o.kind.to_owned() })
                    .collect::<Vec<_>>()
            })
        })?
        .ok_or(ApiError::NotFound("user"))?;
        connection(rows, |o| o.seq.to_string(), first, after)
    }

    /// A person's sign-in attempts (`audit.read`), oldest first.
    async fn sign_ins(&self, ctx: &Context<'_>, user: String) -> ApiResult<Vec<SignInNode>> {
        let caller = audit_caller(ctx)?;
        let user = UserId(parse_id("user", &user)?);
        views(ctx, |v| {
            let row = v.access.user(user)?;
            caller.may(Permission::AuditRead, &resource(&v.access, Some(user), Some(row.department))).then(|| {
                v.audit
                    .logins_of(user)
                    .iter()
                    .map(|l| SignInNode {
                        seq: l.seq.0,
                        at: time_text(l.at),
                        succeeded: l.failure.is_none(),
                        failure: l.failure.map(|f| format!("{f:?}")),
                        client: l.client.clone(),
                    })
                    .collect()
            })
        })?
        .ok_or(ApiError::NotFound("user"))
    }

    /// Security alerts (`audit.read` over all records).
    async fn security_alerts(&self, ctx: &Context<'_>) -> ApiResult<Vec<AlertNode>> {
        let caller = audit_caller(ctx)?;
        caller.require(Permission::AuditRead, &Resource::global())?;
        views(ctx, |v| v.audit.alerts().iter().map(AlertNode::of).collect())
    }

    /// Events of the log from `fromSeq` (`audit.read` over all records), optionally only of
    /// some streams or kinds, with each record's hash and its predecessor's.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        from_seq: Option<u64>,
        streams: Option<Vec<String>>,
        kinds: Option<Vec<String>>,
        first: Option<i32>,
    ) -> ApiResult<Vec<EventNode>> {
        let caller = audit_caller(ctx)?;
        caller.require(Permission::AuditRead, &Resource::global())?;
        let size = super::page_size(first)?;
        let personal = caller.may(Permission::CustomerReadPersonal, &Resource::global());
        let store = app(ctx)?.bus.store();
        let mut at = Seq(from_seq.unwrap_or(1).max(1));
        let mut out = Vec::new();
        // Scan in pages until the page is full or the log ends; filters may skip records.
        while out.len() < size {
            let page = store.read_all(at, 1_000).await?;
            let Some(last) = page.last().map(|r| r.seq) else { break };
            for record in page {
                if !EventNode::selected(&record, streams.as_deref(), kinds.as_deref()) || out.len() >= size {
                    continue;
                }
                out.push(EventNode::of(&record, personal, app(ctx)?.bus.projections(), caller));
            }
            at = last.next();
        }
        Ok(out)
    }

    /// Verifies every record's hash and the chain (`audit.read` over all records). Cost: one
    /// pass over the log, so it weighs as much as a whole query may.
    #[graphql(complexity = "super::MAX_COMPLEXITY / 2")]
    async fn verify_chain(&self, ctx: &Context<'_>) -> ApiResult<ChainVerification> {
        let caller = audit_caller(ctx)?;
        caller.require(Permission::AuditRead, &Resource::global())?;
        let store = app(ctx)?.bus.store().clone();
        let outcome = match store {
            AnyStore::Sled(store) => {
                tokio::task::spawn_blocking(move || store.verify(&mut |_| {})).await.map_err(ApiError::internal)?
            }
            postgres @ AnyStore::Postgres(_) => oacis_eventlog::verify::verify_log(&postgres, &mut |_| {}).await,
        };
        Ok(match outcome {
            Ok(report) => ChainVerification {
                ok: true,
                records: report.records,
                head_seq: report.head.seq.0,
                head_hash: report.head.hash.to_hex(),
                first_bad_seq: None,
                problem: None,
            },
            Err(oacis_eventlog::Error::Corrupt { seq, problem }) => ChainVerification {
                ok: false,
                records: seq.0.saturating_sub(1),
                head_seq: store_head(ctx)?.0,
                head_hash: String::new(),
                first_bad_seq: Some(seq.0),
                problem: Some(problem),
            },
            Err(other) => return Err(ApiError::internal(other)),
        })
    }
}

fn store_head(ctx: &Context<'_>) -> ApiResult<Seq> {
    Ok(app(ctx)?.bus.store().head().seq)
}
