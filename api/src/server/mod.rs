//! The HTTP server: opening the store and views, first-start set-up, the axum router with its
//! tower layers (request ids, request logs, limits, timeouts), token checking, the GraphQL
//! endpoint (and its WebSocket for subscriptions, `websocket.rs`), `/metrics` (`metrics.rs`),
//! HTTPS (`tls.rs`) and the graceful stop on SIGTERM or SIGINT.
//!
//! Invariants:
//! - `/graphql` is the only way in to data; every request's caller is resolved from its
//!   bearer token here, once, before any resolver runs.
//! - The request body is limited before async-graphql reads it (its extractor ignores axum's
//!   default limit); one operation per request (no batches); introspection only for
//!   administrators; every request has a timeout; a panic becomes a 500 with no details.
//! - The responses that showed personal data unmasked are recorded in the caller's access
//!   log before they are sent.

pub mod bootstrap;
pub mod config;
pub mod metrics;
pub mod tls;
pub mod websocket;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oacis_domain::access_log::{AccessLog, AccessLogCommand};
use oacis_domain::authz::Permission;
use oacis_domain::ids::{AccessLogId, EntryId, Timestamp};
use oacis_eventlog::EventStore;
use oacis_projections::{Projections, Views};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::access::{Caller, Reveal};
use crate::auth::password::Hasher;
use crate::auth::throttle::{Throttle, ThrottleConfig};
use crate::auth::token;
use crate::command::{CommandBus, Origin};
use crate::graphql::error::ApiError;
use crate::graphql::{self, OacisSchema, RequestCtx};
pub use config::ServeArgs;

/// Everything the resolvers share.
pub struct AppState {
    /// The command path (and through it the store and the views).
    pub bus: Arc<CommandBus>,
    /// Password hashing.
    pub hasher: Hasher,
    /// Sign-in rate limits.
    pub throttle: Throttle,
    /// The settings.
    pub config: ServeArgs,
    /// When each session was last used (idle expiry); sessions not seen since start count
    /// from their sign-in.
    pub last_seen: Mutex<HashMap<EntryId, Timestamp>>,
    /// Parsed and checked GraphQL documents, by query text.
    pub documents: graphql::documents::Documents,
    /// Users with an import running (one at a time each).
    pub imports: graphql::transfer::Running,
    /// Live notifications and the stop signal of live feeds.
    pub live: Arc<crate::live::Hub>,
    /// Backups taken while serving.
    pub backups: crate::backups::Backups,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A running application: state and schema, ready to be routed.
#[derive(Clone)]
pub struct App {
    /// The shared state.
    pub state: Arc<AppState>,
    /// The GraphQL schema.
    pub schema: OacisSchema,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("state", &self.state).finish_non_exhaustive()
    }
}

/// The header naming a request: kept when the client sends one, made (a UUID v7) when not,
/// returned on the response, and when it is a UUID, the correlation id of every event the
/// request writes.
pub const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Makes request ids: UUID v7.
#[derive(Debug, Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        header::HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).ok().map(RequestId::new)
    }
}

/// How long a mutation waits for the views to apply its events.
const VIEW_WAIT: Duration = Duration::from_secs(5);

impl App {
    /// Opens the store in `config.data`, replays the views (showing progress), and sets up an
    /// empty store (root department, default roles, administrator).
    pub async fn open(config: ServeArgs) -> anyhow::Result<App> {
        App::open_with_clock(config, None).await
    }

    /// [`App::open`], telling time by `clock` (UTC microseconds) when given instead of the
    /// system's: for tests that move time themselves (and tell the timer with
    /// [`crate::live::Hub::clock_moved`]).
    pub async fn open_with_clock(
        config: ServeArgs,
        clock: Option<Arc<dyn Fn() -> oacis_domain::ids::Timestamp + Send + Sync>>,
    ) -> anyhow::Result<App> {
        let region = oacis_domain::validate::Region::parse(&config.default_region).ok_or_else(|| {
            anyhow::anyhow!("--default-region {:?} is not an ISO 3166-1 region", config.default_region)
        })?;
        // A first start's administrator password is checked before anything (the store, the
        // KEK) is created, so that a refused one leaves nothing behind.
        if let (None, false, Some(password)) =
            (&config.store, oacis_eventlog::sled_closed::holds_store(&config.data), &config.admin_password)
        {
            let problems = crate::auth::password::policy_problems(password, "admin", bootstrap::ADMIN_EMPLOYEE_NO);
            if !problems.is_empty() {
                anyhow::bail!("OACIS_ADMIN_PASSWORD is not accepted: it {}", problems.join("; it "));
            }
        }
        // The views' snapshot is read, then opened and decoded, on threads of their own while
        // the key store and the store open (and the executable is hashed for its build id).
        let started = std::time::Instant::now();
        oacis_projections::snapshot::prepare();
        let snapshot_path = oacis_projections::snapshot::path_in(&config.data);
        let kek = config.keys.kek(&config.data)?;
        // The snapshot's one key is looked up first, so that it is opened while the whole key
        // store opens.
        let reading = oacis_projections::snapshot::Reading::begin(&snapshot_path)
            .and_then(|reading| reading.unlock(|id| oacis_eventlog::keys::KeyStore::peek(&config.data, &kek, id)));
        // The embedded store's files are checked against their closed record on a thread of
        // their own while the key store opens; the record is cleared only once the start goes
        // on to open the store (whose own open then finds none).
        let closed_check = config.store.is_none().then(|| {
            let data = config.data.clone();
            std::thread::spawn(move || {
                let recorded = oacis_eventlog::checkpoint::read(&data).ok().flatten().map(|c| c.head);
                oacis_eventlog::sled_closed::check(&data, recorded)
            })
        });
        let keys = crate::cli::keys::open_key_store_with(&config.data, kek);
        if let Some(check) = closed_check {
            check.join().map_err(|_| anyhow::anyhow!("the check of the store's files panicked"))??;
            if keys.is_ok() {
                oacis_eventlog::sled_closed::clear(&config.data)?;
            }
        }
        let keys = keys?;
        let store = crate::cli::keys::open_any(
            &config.data,
            keys,
            config.store_cache_mib.saturating_mul(1 << 20),
            config.store.as_deref(),
        )
        .await?;
        if let oacis_eventlog::AnyStore::Sled(sled) = &store {
            let from = sled.indexes_from_snapshot();
            if from > oacis_eventlog::Seq::ZERO {
                eprintln!(
                    "oacis: log indexes read from the index snapshot at seq {from}; the records under it are read back once the views are ready"
                );
            }
        }
        let views = views_to_start_from(reading, &store, &snapshot_path, started).await;
        let mut progress = crate::progress::Progress::new("replay", store.head().seq.0 - views.applied().0);
        let from = views.applied().0;
        let projections = Projections::start_from(&store, views, &mut |seq| progress.set(seq.0 - from)).await?;
        progress.finish();
        if let oacis_eventlog::AnyStore::Sled(sled) = &store {
            sled.start_records_check();
        }
        let mut bus = CommandBus::new(store, Arc::new(projections), VIEW_WAIT).with_phone_region(region);
        if let Some(clock) = clock {
            bus = bus.with_clock(clock);
        }
        let bus = Arc::new(bus);
        // Erasures recorded in the log win over a key store that still holds their keys.
        let destroyed = crate::erasure::apply_recorded(&bus).await?;
        if destroyed > 0 {
            tracing::warn!(destroyed, "destroyed data keys of customers whose erasure the log records");
        }
        let throttle = Throttle::new(ThrottleConfig {
            per_account_per_minute: config.sign_in_per_account_per_minute,
            per_address_per_minute: config.sign_in_per_address_per_minute,
        });
        let backups = crate::backups::Backups::new(config.backup_dir.clone());
        let state = Arc::new(AppState {
            bus,
            hasher: Hasher::new().await?,
            throttle,
            config,
            last_seen: Mutex::new(HashMap::new()),
            documents: graphql::documents::Documents::default(),
            imports: graphql::transfer::Running::default(),
            live: Arc::new(crate::live::Hub::default()),
            backups,
        });
        {
            // Servers starting together on one database set the organisation up one after
            // the other, each once its views hold what the others wrote.
            let setup = state.bus.store().setup_lock().await?;
            if let Some((_, head)) = &setup {
                state.bus.projections().wait_for(*head).await?;
            }
            bootstrap::first_start(&state).await?;
        }
        crate::live::start(&state.live, &state.bus);
        if let Some(follower) = crate::erasure::follow(&state.bus) {
            state.live.adopt(follower);
        }
        let schema = graphql::schema(state.clone());
        Ok(App { state, schema })
    }

    /// The axum router with every layer.
    pub fn router(&self) -> Router {
        let config = &self.state.config;
        let widest = usize::try_from(config.max_body_bytes.max(config.max_upload_bytes)).unwrap_or(usize::MAX);
        Router::new()
            .route("/graphql", get(websocket::get).post(graphql_post))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics::endpoint))
            // Anything else answers a GraphQL error body too (not an empty one).
            .fallback(|uri: axum::http::Uri| async move {
                error_response(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("no such path {}: GraphQL is at /graphql", uri.path()))
            })
            .method_not_allowed_fallback(|method: axum::http::Method| async move {
                error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "VALIDATION",
                    &format!("{method} is not answered here: POST GraphQL to /graphql (GET opens GraphiQL or a WebSocket)"),
                )
            })
            // The widest limits of any request here; JSON requests are held to the narrower
            // body limit and timeout in `graphql_post`, uploads to these.
            .layer(RequestBodyLimitLayer::new(widest))
            // axum's own 2 MiB default for `Bytes` would cut uploads short of the setting.
            .layer(axum::extract::DefaultBodyLimit::max(widest))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                config.request_timeout().max(Duration::from_secs(config.upload_timeout_seconds)),
            ))
            .layer(CatchPanicLayer::custom(panicked))
            // One log line per request, in a span that carries its request id.
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &axum::http::Request<_>| {
                        let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                        tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                    })
                    .on_request(())
                    .on_response(|response: &Response, latency: Duration, _: &tracing::Span| {
                        let ms = latency.as_secs_f64() * 1_000.0;
                        tracing::info!(target: "oacis::request", status = response.status().as_u16(), ms, "answered");
                    }),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            // Outermost: a request without `x-request-id` gets one (a UUID v7), which every
            // layer inside sees and the response carries back.
            .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
            .with_state(self.clone())
    }

    /// Serves the router on `listener` until the future is dropped, with no signal handling,
    /// TLS or shutdown deadline (those are `serve`'s): for tests and embedding.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn serve_on(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router().into_make_service_with_connect_info::<SocketAddr>()).await
    }

    /// The caller a request's headers name (see [`AppState::caller_for`]).
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Caller> {
        // A header that is not text is a wrong token, never the anonymous user.
        self.state.caller_for(headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("")))
    }
}

impl AppState {
    /// The caller an `Authorization` value (`Bearer <token>`) names, if the token is valid
    /// now; with no value at all, the `--anonymous-user` if one is set. Counts as use of the
    /// session (idle expiry).
    pub fn caller_for(&self, authorization: Option<&str>) -> Option<Caller> {
        let Some(value) = authorization else {
            return self.anonymous();
        };
        let presented = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
        let (session, hash) = token::parse(presented.trim())?;
        let now = self.bus.now();
        let found = self
            .bus
            .projections()
            .read(|views| {
                let access = &views.access;
                let user = access.session_user(session)?;
                let row = user.sessions.get(&session)?;
                let stored = row.token_hash.as_deref()?;
                if !token::matches(&hash, stored) {
                    return None;
                }
                let principal = access.principal(user.id)?;
                Some((user.id, user.must_change_password, row.started_at, principal))
            })
            .ok()??;
        let (user, must_change_password, started_at, principal) = found;
        if now.0 >= started_at.0.saturating_add(self.config.session_max_us()) {
            return None;
        }
        let mut seen = self.last_seen.lock().ok()?;
        let last = seen.get(&session).copied().unwrap_or(started_at);
        if now.0 >= last.0.saturating_add(self.config.session_idle_us()) {
            return None;
        }
        seen.insert(session, now);
        Some(Caller { user, session, principal, must_change_password, anonymous: false })
    }

    /// The `--anonymous-user`, unless unset, missing, inactive, or able to administer users or
    /// roles (then requests without a token stay unauthenticated, and the refusal is logged).
    fn anonymous(&self) -> Option<Caller> {
        let name = self.config.anonymous_user.as_deref()?;
        let (caller, must_change_password) = self
            .bus
            .projections()
            .read(|views| {
                let must_change = views.access.user_by_name(name)?.must_change_password;
                Some((Caller::acting_as(&views.access, name)?, must_change))
            })
            .ok()??;
        // The checks run on every request: say why once per process.
        static WARNED: std::sync::Once = std::sync::Once::new();
        if administers(&caller) {
            WARNED.call_once(|| {
                tracing::warn!(user = name, "the anonymous user may administer users or roles; it is not used");
            });
            return None;
        }
        if must_change_password {
            WARNED.call_once(|| {
                tracing::warn!(user = name, "the anonymous user must change its password first; it is not used");
            });
            return None;
        }
        caller.principal.active.then_some(Caller { anonymous: true, ..caller })
    }
}

/// Whether `caller` may administer users or roles (never an anonymous user).
fn administers(caller: &Caller) -> bool {
    caller.holds(Permission::UserAdmin) || caller.holds(Permission::RoleAdmin)
}

/// `--anonymous-user` checked at start: refused when the user may administer users or roles;
/// when no such active user exists yet, said once (requests without a token are refused until
/// it does).
fn check_anonymous(state: &AppState) -> anyhow::Result<()> {
    let Some(name) = state.config.anonymous_user.as_deref() else { return Ok(()) };
    let found = state.bus.projections().read(|views| Caller::acting_as(&views.access, name))?;
    match found {
        Some(caller) if administers(&caller) => anyhow::bail!(
            "--anonymous-user {name:?} may administer users or roles; name a user without user.admin and role.admin"
        ),
        Some(caller) if caller.principal.active => {
            eprintln!("oacis: requests without a token act as the user {name:?} (--anonymous-user)");
        }
        _ => eprintln!(
            "oacis: --anonymous-user {name:?} is not an active user yet; requests without a token are refused until it is"
        ),
    }
    Ok(())
}

/// A panic in a handler: logged, and answered as a GraphQL error with code INTERNAL and
/// nothing of the panic's message.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "a request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error; it has been logged")
}

/// 200 once the views have applied every event acknowledged when asked (waiting up to
/// [`READY_WAIT`] for them), 503 (with the lag) if they do not,
/// 503 while the log's database cannot be reached, and 503 (with the reason) once the log
/// refuses appends.
async fn readyz(State(app): State<App>) -> Response {
    if let Some(reason) = app.state.bus.store().refusing_appends() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the log refuses appends: {reason}"))
            .into_response();
    }
    if !app.state.bus.store().reachable() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: the log's database cannot be reached").into_response();
    }
    // Under writes the views trail the log by a few records for milliseconds: ready once they
    // reach the head as it is now, within READY_WAIT.
    let head = app.state.bus.store().head().seq;
    let projections = app.state.bus.projections();
    match tokio::time::timeout(READY_WAIT, projections.wait_for(head)).await {
        Ok(Ok(())) => (StatusCode::OK, format!("ready: views at seq {}", projections.applied())).into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the views stopped: {e}")).into_response(),
        Err(_) => {
            let applied = projections.applied();
            let lag = head.0.saturating_sub(applied.0);
            let message = format!(
                "not ready: views at seq {applied}, log at {head} ({lag} behind, not caught up within {} s)",
                READY_WAIT.as_secs()
            );
            (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}

/// How long `/readyz` waits for the views to reach the log's head.
const READY_WAIT: Duration = Duration::from_secs(1);

/// GraphiQL, for signed-in administrators.
fn graphiql(app: &App, headers: &HeaderMap) -> Response {
    // GraphiQL is a tool for administrators; others use POST /graphql.
    // 401 without a session, 403 with one that is not an administrator's (RFC 9110 §15.5.2,
    // §15.5.4).
    let message = "GraphiQL is for signed-in administrators; send queries with POST /graphql";
    match app.authenticate(headers) {
        Some(caller) if caller.holds(Permission::RoleAdmin) => {
            Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish())
                .into_response()
        }
        Some(_) => (StatusCode::FORBIDDEN, message).into_response(),
        None => (StatusCode::UNAUTHORIZED, message).into_response(),
    }
}

async fn graphql_post(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let config = &app.state.config;
    let multipart = content_type.starts_with("multipart/form-data");
    // GraphQL over HTTP: a POST is `application/json`. Other types (`text/plain`, forms) are
    // what a browser sends cross-site without asking first, so they are refused; and the
    // anonymous user takes no uploads (a cross-site form could send one in its name).
    if !multipart && !content_type.starts_with("application/json") {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send GraphQL requests as application/json (or multipart/form-data for uploads)",
        );
    }
    if multipart && !headers.contains_key(header::AUTHORIZATION) {
        let error = ApiError::Unauthenticated;
        return error_response(StatusCode::UNAUTHORIZED, error.code(), &error.message());
    }
    // The body arrives within the request's time (a JSON request's timeout, an upload's),
    // and no further than one byte past its limit.
    let (limit, flag, within) = if multipart {
        (config.max_upload_bytes, "--max-upload-bytes", Duration::from_secs(config.upload_timeout_seconds))
    } else {
        (config.max_body_bytes, "--max-body-bytes", config.request_timeout())
    };
    let most = usize::try_from(limit).unwrap_or(usize::MAX).saturating_add(1);
    let body = match tokio::time::timeout(within, axum::body::to_bytes(body, most)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return too_large(&format!("the request is larger than {limit} bytes ({flag})")),
        Err(_) => {
            return request_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body did not arrive within {} s", within.as_secs()),
            )
        }
    };
    if multipart {
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > config.max_upload_bytes {
            return too_large(&format!(
                "the upload is larger than {} bytes (--max-upload-bytes)",
                config.max_upload_bytes
            ));
        }
        // The GraphQL multipart request (a file upload): one operation, one file.
        let options = async_graphql::http::MultipartOptions::default()
            .max_num_files(1)
            .max_file_size(crate::transfer::table::MAX_FILE_BYTES);
        let reader = futures_util::io::Cursor::new(body.to_vec());
        return match async_graphql::http::receive_body(Some(content_type), reader, options).await {
            Ok(mut request) => match app.state.documents.prepare(&mut request) {
                Ok(()) => answer(&app, Some(peer.ip()), &headers, request).await,
                Err(message) => refused(&message),
            },
            Err(e) => refused(&format!("the body is not a GraphQL multipart request: {e}")),
        };
    }
    if u64::try_from(body.len()).unwrap_or(u64::MAX) > config.max_body_bytes {
        return too_large(&format!(
            "the request is larger than {} bytes (--max-body-bytes); upload files as multipart",
            config.max_body_bytes
        ));
    }
    // One JSON request object per POST: a batch (a JSON array) or a body that is not a
    // request is refused with a GraphQL error body, like any other error.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return refused("one operation per request: batches (JSON arrays) are not accepted");
    }
    let mut request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) => request,
        Err(e) => return refused(&format!("the body is not a GraphQL request in JSON: {e}")),
    };
    // Refuse documents that explode when fragments are expanded before anything walks them.
    // The parse is kept in the request (and for the next request with the same text), so
    // execution does not parse again.
    if let Err(message) = app.state.documents.prepare(&mut request) {
        return refused(&message);
    }
    match tokio::time::timeout(config.request_timeout(), answer(&app, Some(peer.ip()), &headers, request)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "TIMEOUT",
            &format!(
                "the request did not finish within {} s (--request-timeout-seconds); a write in it may \
                 still be recorded: retry it with the same clientMutationId",
                config.request_timeout().as_secs()
            ),
        ),
    }
}

/// 413 with a GraphQL error body (code VALIDATION).
fn too_large(message: &str) -> Response {
    request_error(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// 400 with a GraphQL error body (code VALIDATION).
fn refused(message: &str) -> Response {
    request_error(StatusCode::BAD_REQUEST, message)
}

/// `status` with a GraphQL error body (code VALIDATION): the request itself is at fault.
fn request_error(status: StatusCode, message: &str) -> Response {
    error_response(status, "VALIDATION", message)
}

/// `status` with a GraphQL error body: no data, one error with `message` and `code`.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    error_response_with(status, code, message, serde_json::Map::new())
}

/// Like [`error_response`], with `extensions` beside the code. The media type is the one
/// executed answers have, `application/graphql-response+json` (GraphQL over HTTP, §7.2:
/// the type under which a status other than 200 may carry a GraphQL response).
fn error_response_with(
    status: StatusCode,
    code: &str,
    message: &str,
    mut extensions: serde_json::Map<String, serde_json::Value>,
) -> Response {
    extensions.insert("code".into(), code.into());
    let body = serde_json::json!({ "data": null, "errors": [{ "message": message, "extensions": extensions }] });
    (status, [(header::CONTENT_TYPE, "application/graphql-response+json")], body.to_string()).into_response()
}

/// Executes one GraphQL request for the caller its headers name.
pub async fn answer(
    app: &App,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
) -> Response {
    if let Err(refusal) = caught_up(app, headers).await {
        return refusal;
    }
    // On a log other servers append to, a mutation is decided and authorized only once this
    // server's views hold everything committed when it arrived: a session ended, a role taken
    // away or an account locked on another server then holds here too, not a notification
    // later. A token this server does not know may be from a sign-in on another server (a
    // load balancer sends the next request anywhere): it is asked again after the same wait.
    // (Other reads may trail by a notification; `Oacis-Min-Seq` waits for a write seen
    // elsewhere.)
    let several = app.state.bus.store().several_writers();
    let mut caught_up = false;
    if several && is_mutation(&mut request) {
        if let Err(refusal) = committed_head_reached(app).await {
            return refusal;
        }
        caught_up = true;
    }
    let mut caller = app.authenticate(headers);
    if caller.is_none()
        && several
        && !caught_up
        && headers.contains_key(header::AUTHORIZATION)
        && committed_head_reached(app).await.is_ok()
    {
        caller = app.authenticate(headers);
    }
    let admin = caller.as_ref().is_some_and(|c| c.holds(Permission::RoleAdmin));
    let reveal = Reveal::default();
    // The request's id when it is a UUID (the layer makes one for requests without), so that
    // the request log and the events it wrote share one id.
    let correlation_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::try_parse(v.trim()).ok())
        .unwrap_or_else(uuid::Uuid::now_v7);
    let mut request = request.data(RequestCtx {
        caller: caller.clone(),
        correlation_id,
        client_ip: ip,
        reveal: reveal.clone(),
        authorization: headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_owned()),
        websocket: false,
    });
    if !admin {
        // Said, not answered with nulls: the schema is for administrators (the SDL is in the
        // repository for everyone else).
        if asks_introspection(&mut request) {
            let code = if caller.is_some() { "FORBIDDEN" } else { "UNAUTHENTICATED" };
            return error_response(
                StatusCode::OK,
                code,
                "introspection (__schema, __type) is for signed-in administrators; the schema is in \
                 api/schema.graphql",
            );
        }
        request = request.disable_introspection();
    }
    let response = with_codes(app.schema.execute(request).await);
    if let Some(caller) = &caller {
        let shown = reveal.shown();
        if !shown.is_empty() {
            let origin = Origin {
                actor: Some(caller.user),
                correlation_id,
                client_addr: ip.map(|i| i.to_string()),
                idempotency_key: None,
                expected_version: None,
                fingerprint: None,
            };
            let command =
                AccessLogCommand::RecordPersonalDataReads { customers: shown, fields: vec!["personal".into()] };
            let stream = AccessLogId(caller.user.0).stream();
            if let Err(e) = app.state.bus.execute::<AccessLog>(stream, command, &origin).await {
                // Personal data is shown only once its read is on the record.
                tracing::error!(error = %e, "recording a personal-data read failed; withholding the response");
                let error = ApiError::from(e);
                let status = match error {
                    ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                };
                let message = format!(
                    "the answer shows personal data, and reading it could not be put on the record, so it is \
                     withheld; try again ({})",
                    error.message()
                );
                return error_response(status, error.code(), &message);
            }
        }
    }
    let mut response = async_graphql_axum::GraphQLResponse::from(response).into_response();
    // What the caller has seen: a later request to any server may ask for it.
    let seen = app.state.bus.projections().applied().0;
    if let Ok(value) = header::HeaderValue::from_str(&seen.to_string()) {
        response.headers_mut().insert(SEQ_HEADER, value);
    }
    response
}

/// The response header naming the seq this server's views had applied when it answered
/// (at least the seq of any write the request made).
pub const SEQ_HEADER: &str = "oacis-seq";

/// The request header asking this server to answer only once its views have applied a seq
/// (an `Oacis-Seq` from an earlier response, of any server on the same log).
pub const MIN_SEQ_HEADER: &str = "oacis-min-seq";

/// Waits, up to `--consistency-wait-ms`, for the views to reach the request's
/// `Oacis-Min-Seq`. Refuses with 400 (VALIDATION) when the value is not a number and with
/// 503 (STALE_VIEWS) when the bound passes first.
async fn caught_up(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    // Every value counts (a proxy may have added one): the highest is waited for.
    let mut wanted = None;
    for value in headers.get_all(MIN_SEQ_HEADER) {
        let text = value.to_str().unwrap_or_default().trim();
        let Some(seq) = text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse::<u64>().ok()).flatten() else {
            return Err(refused("Oacis-Min-Seq must be a seq (a whole number from an Oacis-Seq response header)"));
        };
        wanted = wanted.max(Some(seq));
    }
    let Some(wanted) = wanted else { return Ok(()) };
    // On a log this server alone appends to, a seq past its head was never in a response:
    // refused at once, not waited for until the bound. (On a log other servers append to, it
    // may be theirs and not yet followed here: that is waited for.)
    let store = app.state.bus.store();
    let head = store.head().seq.0;
    if wanted > head && !store.several_writers() {
        return Err(refused(&format!(
            "Oacis-Min-Seq {wanted} is past the log's head ({head}): it is not a seq any response gave"
        )));
    }
    views_reach(app, wanted).await
}

/// Waits for the views to reach the log's head as the database holds it now (read once).
async fn committed_head_reached(app: &App) -> Result<(), Response> {
    match app.state.bus.store().committed_head().await {
        Ok(head) => views_reach(app, head.0).await,
        Err(e) => {
            // As the same error met while executing: HTTP 200, the code in the body.
            let error = ApiError::from(e);
            Err(error_response(StatusCode::OK, error.code(), &error.message()))
        }
    }
}

/// Whether the operation `request` runs is a mutation.
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else { return false };
    let kind = match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name.as_str()).map(|operation| operation.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    kind == Some(OperationType::Mutation)
}

/// Whether any operation of `request` selects `__schema` or `__type` at its root (through
/// fragments too; `__typename` is not introspection of the schema).
fn asks_introspection(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
    fn selects(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
        depth < 16
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(field) => matches!(field.node.name.node.as_str(), "__schema" | "__type"),
                Selection::InlineFragment(fragment) => selects(document, &fragment.node.selection_set.node, depth + 1),
                Selection::FragmentSpread(spread) => document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|f| selects(document, &f.node.selection_set.node, depth + 1)),
            })
    }
    let Ok(document) = request.parsed_query() else { return false };
    document.operations.iter().any(|(_, operation)| selects(document, &operation.node.selection_set.node, 0))
}

/// Waits, up to `--consistency-wait-ms`, for the views to reach seq `wanted`: 503
/// (STALE_VIEWS) when the bound passes first.
async fn views_reach(app: &App, wanted: u64) -> Result<(), Response> {
    let projections = app.state.bus.projections();
    // Within the request's own time, so that the answer is STALE_VIEWS, not a timeout.
    let bound = Duration::from_millis(app.state.config.consistency_wait_ms)
        .min(app.state.config.request_timeout().saturating_sub(Duration::from_millis(500)));
    match tokio::time::timeout(bound, projections.wait_for(oacis_eventlog::Seq(wanted))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "views stopped following the log");
            Err(error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error; it has been logged"))
        }
        Err(_) => {
            let at = projections.applied().0;
            let message = format!(
                "this server's views are at seq {at}; seq {wanted} did not reach them within {} ms \
                 (--consistency-wait-ms): retry, or send the request to the server that wrote it",
                bound.as_millis()
            );
            let extensions = serde_json::Map::from_iter([("viewsAt".to_owned(), at.into())]);
            Err(error_response_with(StatusCode::SERVICE_UNAVAILABLE, "STALE_VIEWS", &message, extensions))
        }
    }
}

/// `response` with a code on every error: those raised by async-graphql itself (parse,
/// validation, input coercion, limits) carry none, and they are all about the request's form
/// (VALIDATION).
fn with_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "VALIDATION");
            // The parser's messages quote the input around the fault, then say what was
            // expected: a hostile query of megabytes is not sent back whole, and the end is
            // kept.
            if error.message.len() > MAX_ERROR_MESSAGE_BYTES {
                let half = MAX_ERROR_MESSAGE_BYTES / 2;
                let mut head = half;
                while !error.message.is_char_boundary(head) {
                    head -= 1;
                }
                let mut tail = error.message.len() - half;
                while !error.message.is_char_boundary(tail) {
                    tail += 1;
                }
                error.message = format!("{} … (cut) … {}", &error.message[..head], &error.message[tail..]);
            }
        }
    }
    response
}

/// The longest message of an error async-graphql raises itself, in bytes.
const MAX_ERROR_MESSAGE_BYTES: usize = 1_000;

/// Runs `oacis serve` until interrupted.
pub async fn serve(config: ServeArgs) -> anyhow::Result<()> {
    // Before the store opens, so that its writer's first groups are counted.
    if metrics::install().is_none() {
        tracing::warn!("another metrics recorder is installed; /metrics answers 404");
    }
    // TLS settings are checked before the store is opened.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let listen = config.listen;
    let demo = config.demo;
    // The address is taken before the store is opened or set up: a start that cannot serve
    // (the port in use) creates nothing, and prints no first password it would then lose.
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let app = App::open(config).await?;
    if demo {
        bootstrap::demo(&app.state).await?;
    }
    if let Some(file) = app.state.config.import.clone() {
        bootstrap::import_at_start(&app.state, &file).await?;
    }
    check_anonymous(&app.state)?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, scheme, "oacis is serving GraphQL at /graphql");
    eprintln!("oacis: serving {scheme}://{address}/graphql");
    let upkeep = tokio::spawn(metrics::upkeep());
    let state = app.state.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            state.throttle.retain_recent();
            // Sessions idle past the limit are expired: forget when they were last seen, so
            // the map holds only live sessions.
            let idle_from = state.bus.now().0.saturating_sub(state.config.session_idle_us());
            if let Ok(mut seen) = state.last_seen.lock() {
                seen.retain(|_, at| at.0 > idle_from);
            }
        }
    });
    match tls {
        Some(config) => {
            use axum::serve::ListenerExt as _;
            // `tap_io` gives the listener the peer address as connect info.
            let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            serve_until_stopped(listener, &app).await?;
        }
        None => serve_until_stopped(listener, &app).await?,
    }
    sweeper.abort();
    upkeep.abort();
    app.state.live.stop();
    // axum does not wait for WebSockets: give each feed the moment it needs to send its
    // SHUTTING_DOWN before the process ends.
    app.state.live.drained(Duration::from_secs(app.state.config.shutdown_seconds.min(5))).await;
    save_views_snapshot(&app).await;
    // Every acknowledged append is durable already (acknowledged only after fsync); closing
    // the store ends its writer after the group in hand, writes its index snapshot and
    // releases the folder (whose files `main` then records as closed).
    drop(app);
    eprintln!("oacis: stopped");
    Ok(())
}

/// The views a start goes on from: those of the data folder's views snapshot (being read
/// since `started`) when it is sound and of `store`'s log (`oacis_projections::snapshot`),
/// else fresh ones (a full replay), saying why.
async fn views_to_start_from(
    reading: Result<oacis_projections::snapshot::Reading, oacis_projections::snapshot::Unusable>,
    store: &oacis_eventlog::AnyStore,
    path: &std::path::Path,
    started: std::time::Instant,
) -> Views {
    let read = match reading {
        Ok(reading) => reading.finish(store).await,
        Err(why) => Err(why),
    };
    match read {
        Ok(views) => {
            eprintln!(
                "oacis: views read from the snapshot at seq {} in {:.1} s; replaying the {} records after it",
                views.applied(),
                started.elapsed().as_secs_f64(),
                store.head().seq.0 - views.applied().0
            );
            views
        }
        Err(oacis_projections::snapshot::Unusable::Missing) => Views::default(),
        Err(why) => {
            tracing::warn!(file = %path.display(), reason = %why, "the views snapshot is set aside; replaying the whole log");
            eprintln!("oacis: the views snapshot is set aside ({why}); replaying the whole log");
            Views::default()
        }
    }
}

/// Writes the views snapshot at a clean stop, once no request runs: the next start reads it
/// and replays only the records after it. A snapshot not written only makes that start
/// slower, so a failure is reported and the stop goes on.
async fn save_views_snapshot(app: &App) {
    let started = std::time::Instant::now();
    let path = oacis_projections::snapshot::path_in(&app.state.config.data);
    let bus = &app.state.bus;
    match oacis_projections::snapshot::save(bus.projections(), bus.store(), &path).await {
        Ok(written) => eprintln!(
            "oacis: views snapshot written at seq {} ({:.1} MiB) in {:.1} s",
            written.seq,
            written.bytes as f64 / f64::from(1 << 20),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the views snapshot was not written; the next start replays more of the log");
            eprintln!("oacis: the views snapshot was not written: {e}");
        }
    }
}

/// Serves `app` on `listener` until SIGTERM or SIGINT, then lets requests in flight finish
/// for at most `--shutdown-seconds`.
async fn serve_until_stopped<L>(listener: L, app: &App) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let router = app.router();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let live = app.state.live.clone();
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let which = stop_signal().await;
            eprintln!("oacis: {which}: no new connections; finishing the requests in flight");
            signalled.notify_one();
            // Live feeds end with SHUTTING_DOWN (axum does not wait for WebSockets).
            live.stop();
        });
    let server = std::future::IntoFuture::into_future(server);
    let deadline = Duration::from_secs(app.state.config.shutdown_seconds);
    tokio::select! {
        served = server => served?,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!(seconds = deadline.as_secs(), "requests still in flight at the shutdown deadline; exiting");
        }
    }
    Ok(())
}

/// Waits for SIGTERM (how service managers and containers stop a process) or SIGINT
/// (Ctrl-C); answers which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_answered_as_internal_without_its_message() {
        let response = panicked(Box::new("secret detail at src/x.rs:1".to_owned()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let body = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 16)).expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"code\":\"INTERNAL\"") && !text.contains("secret"), "{text}");
    }
}
