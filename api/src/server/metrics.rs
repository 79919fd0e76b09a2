//! Prometheus metrics: the process-wide recorder (`metrics` facade, rendered by
//! `metrics-exporter-prometheus` in the text exposition format 0.0.4), the GraphQL extension
//! that counts and times each root field, and the `/metrics` endpoint.
//!
//! Names follow the Prometheus conventions (<https://prometheus.io/docs/practices/naming/>):
//! the `oacis_` prefix, base units (`_seconds`), `_total` for counters. Labels take values
//! from small fixed sets (root field names of the schema, outcome codes): never ids.
//!
//! Series:
//! - `oacis_graphql_operations_total{field, outcome}`: root fields resolved (a subscription's
//!   once per item it sends), `outcome` `ok` or the error's code in lower case (`forbidden`,
//!   `validation`, ...); requests refused before execution (parse, validation) are not counted;
//! - `oacis_graphql_operation_duration_seconds{field}`: histogram of their resolution time;
//! - `oacis_sign_in_failures_total{reason}`: refused sign-ins (`bad_credentials`,
//!   `rate_limited`);
//! - `oacis_eventlog_appends_total`, `oacis_eventlog_group_appends` (histogram of appends per
//!   group commit, buckets 1 to 1,024), `oacis_eventlog_sync_duration_seconds` (flush and fdatasync): from the
//!   log's writer;
//! - gauges set when scraped: `oacis_eventlog_head_seq`, `oacis_views_lag_events` (records
//!   the views have not applied yet), `oacis_sessions_open` (sessions seen within the idle
//!   limit);
//! - `oacis_subscriptions_open{feed}` (`events`, `notifications`): live feeds open now, and
//!   `oacis_subscriptions_closed_total{feed, reason}`: feeds the server closed, by the code
//!   of the closing error (`unauthenticated`, `slow_consumer`, `shutting_down`, ...).
//!
//! Scrapers without a session present `--metrics-token` as a bearer token.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{ServerResult, Value};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oacis_domain::authz::Permission;
use oacis_eventlog::EventStore;

use super::App;

/// Histogram buckets, in seconds: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of `oacis_eventlog_group_appends`, a count of appends: 1 to 1,024.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the process-wide recorder once; answers its handle (`None` if another recorder
/// was installed first, in which case the macros report there).
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("oacis_eventlog_group_appends".into()), GROUP_BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// How often the recorder's upkeep drains histogram samples into their buckets.
pub const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the recorder's upkeep every [`UPKEEP`] until the task is aborted. A recorder built
/// without the exporter's HTTP listener keeps every histogram sample in memory until upkeep
/// (or a scrape) drains it: at 2,000 requests/s that is megabytes a minute.
pub async fn upkeep() {
    let Some(handle) = install() else { return };
    let mut every = tokio::time::interval(UPKEEP);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// Counts and times every root field of every operation (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct RootFields;

impl ExtensionFactory for RootFields {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RootFields)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for RootFields {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        // The schema's own field name (never the client's alias): a fixed set of values.
        let field = info.name.to_owned();
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e
                .extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .and_then(|code| match code {
                    Value::String(s) => Some(s.to_lowercase()),
                    _ => None,
                })
                .unwrap_or_else(|| "error".to_owned()),
        };
        metrics::histogram!("oacis_graphql_operation_duration_seconds", "field" => field.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("oacis_graphql_operations_total", "field" => field, "outcome" => outcome).increment(1);
        result
    }
}

/// One open live feed, counted in `oacis_subscriptions_open{feed}` while it lives.
#[derive(Debug)]
pub struct OpenFeed(&'static str);

impl OpenFeed {
    /// Counts a feed of kind `feed` as open.
    #[must_use]
    pub fn new(feed: &'static str) -> OpenFeed {
        metrics::gauge!("oacis_subscriptions_open", "feed" => feed).increment(1.0);
        OpenFeed(feed)
    }

    /// Counts the server's closing of this feed with `code` (an error code).
    pub fn closed(&self, code: &str) {
        metrics::counter!("oacis_subscriptions_closed_total", "feed" => self.0, "reason" => code.to_lowercase())
            .increment(1);
    }
}

impl Drop for OpenFeed {
    fn drop(&mut self) {
        metrics::gauge!("oacis_subscriptions_open", "feed" => self.0).decrement(1.0);
    }
}

/// Whether `headers` carry the `--metrics-token` (compared in constant time).
fn scraper(app: &App, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(expected) = app.state.config.metrics_token.as_deref() else { return false };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// `GET /metrics`: the Prometheus text format, for a scraper presenting `--metrics-token` or a
/// caller holding an administrator's token (`role.admin`); 403 for another signed-in caller,
/// 401 otherwise, 404 when no recorder is installed.
pub async fn endpoint(State(app): State<App>, headers: HeaderMap) -> Response {
    if !scraper(&app, &headers) {
        let message = "metrics are for the metrics token or signed-in administrators";
        match app.authenticate(&headers) {
            Some(caller) if caller.holds(Permission::RoleAdmin) => {}
            Some(_) => return (StatusCode::FORBIDDEN, message).into_response(),
            None => return (StatusCode::UNAUTHORIZED, message).into_response(),
        }
    }
    let Some(handle) = install() else {
        return (StatusCode::NOT_FOUND, "no metrics recorder in this process").into_response();
    };
    let state = &app.state;
    let head = state.bus.store().head().seq.0;
    let applied = state.bus.projections().applied().0;
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!("oacis_eventlog_head_seq").set(head as f64);
        metrics::gauge!("oacis_views_lag_events").set(head.saturating_sub(applied) as f64);
        let open = state.last_seen.lock().map(|seen| seen.len()).unwrap_or(0);
        metrics::gauge!("oacis_sessions_open").set(open as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}
