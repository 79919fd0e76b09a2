//! GraphQL over WebSocket (`GET /graphql` with an upgrade): the `graphql-transport-ws`
//! protocol only, authenticated by the `connection_init` payload (browsers cannot set headers
//! on a WebSocket), serving subscriptions only.
//!
//! Invariants:
//! - The connection's caller comes from `connection_init`: `{"authorization": "Bearer <token>"}`
//!   (or `{"token": "<token>"}`); a payload without either is the `--anonymous-user` if one is
//!   set. A wrong or expired token refuses the connection (a close frame saying so), before
//!   any subscription starts. Feeds check the session again as they run (`graphql::feeds`).
//! - A connection from which nothing (not even a `ping`) has come for [`KEEPALIVE`] is closed,
//!   so that idle or half-open connections do not pile up: clients that hold feeds open send
//!   the protocol's `ping` more often than that.
//! - Every operation goes through the same document checks as over HTTP (fragment
//!   expansion), with introspection off; queries and mutations are refused (they are for
//!   `POST /graphql`, where personal-data reads are recorded).
//! - A browser opens WebSockets to any site without asking, so a connection without a token
//!   (the `--anonymous-user`) is refused when its upgrade came with an `Origin` of another
//!   host; with a token it is the token that counts (nothing here reads cookies).
//! - Messages are at most `--max-body-bytes`; a connection holds at most
//!   [`MAX_SUBSCRIPTIONS`] subscriptions at once, each with one root field.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, BoxStream, StreamExt as _};

use super::App;
use crate::access::Reveal;
use crate::graphql::RequestCtx;

/// The one subprotocol served.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// A connection that sends nothing (not even a `ping`) for this long is closed.
pub const KEEPALIVE: Duration = Duration::from_secs(300);
/// Most subscriptions one connection holds at once.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// `GET /graphql`: a WebSocket upgrade for subscriptions, else GraphiQL.
pub async fn get(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    protocol: Result<GraphQLProtocol, StatusCode>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return super::graphiql(&app, &headers);
    };
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == PROTOCOL));
    let (true, Ok(protocol)) = (offered, protocol) else {
        return (StatusCode::BAD_REQUEST, format!("subscriptions use the {PROTOCOL} WebSocket subprotocol"))
            .into_response();
    };
    let upgrade_authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_owned());
    let cross_site = cross_site(&headers);
    let limit = usize::try_from(app.state.config.max_body_bytes).unwrap_or(usize::MAX);
    upgrade.protocols([PROTOCOL]).max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| {
        let state = app.state.clone();
        let open = Arc::new(AtomicUsize::new(0));
        GraphQLWebSocket::new(socket, LiveExecutor { app, open }, protocol)
            .on_connection_init(move |payload| async move {
                let how = Handshake { payload: &payload, upgrade_authorization, cross_site, peer };
                connection_init(&state, &how)
            })
            .keepalive_timeout(KEEPALIVE)
            .serve()
    })
}

/// Whether the upgrade's `Origin` names another host than its `Host` (a page of another site
/// opening the socket). No `Origin` (a program, not a browser) is not cross-site.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    !origin_host.eq_ignore_ascii_case(host)
}

/// What a connection brings to `connection_init`.
struct Handshake<'a> {
    payload: &'a serde_json::Value,
    upgrade_authorization: Option<String>,
    cross_site: bool,
    peer: SocketAddr,
}

/// The connection's data from its `connection_init` payload (or, failing that, the upgrade's
/// `Authorization` header), or the refusal.
fn connection_init(state: &Arc<super::AppState>, how: &Handshake<'_>) -> async_graphql::Result<Data> {
    let refused = |why: &str| async_graphql::Error::new(format!("sign in first: {why}"));
    let payload = match how.payload {
        serde_json::Value::Object(map) => Some(map),
        serde_json::Value::Null => None,
        _ => return Err(refused("the connection_init payload is not an object")),
    };
    let field = |key: &str| -> async_graphql::Result<Option<String>> {
        match payload.and_then(|p| p.get(key)) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(refused(&format!("`{key}` in connection_init is not a string"))),
        }
    };
    let authorization = match (field("authorization")?, field("Authorization")?, field("token")?) {
        (Some(value), _, _) | (None, Some(value), _) => Some(value),
        (None, None, Some(token)) => Some(format!("Bearer {token}")),
        (None, None, None) => how.upgrade_authorization.clone(),
    };
    if authorization.is_none() && how.cross_site {
        return Err(refused("a page of another site may not use the anonymous user"));
    }
    let caller = state
        .caller_for(authorization.as_deref())
        .ok_or_else(|| refused("the token in connection_init is missing, unknown, expired or revoked"))?;
    let mut data = Data::default();
    data.insert(RequestCtx {
        caller: Some(caller),
        correlation_id: uuid::Uuid::now_v7(),
        client_ip: Some(how.peer.ip()),
        reveal: Reveal::default(),
        authorization,
        websocket: true,
    });
    Ok(data)
}

/// The schema behind the same checks as HTTP requests: documents prepared (fragment
/// expansion bounded), introspection off, error codes set.
#[derive(Clone)]
struct LiveExecutor {
    app: App,
    /// Subscriptions of this connection running now.
    open: Arc<AtomicUsize>,
}

/// One running subscription of a connection, counted while it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One response with one error (code VALIDATION).
fn refusal(message: String) -> BoxStream<'static, async_graphql::Response> {
    let refused = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(message, None)]);
    stream::once(async move { super::with_codes(refused) }).boxed()
}

/// Root fields of each subscription operation of `request`'s document (0 when unparsed).
fn subscription_roots(request: &mut async_graphql::Request) -> usize {
    use async_graphql::parser::types::OperationType;
    request.parsed_query().map_or(0, |document| {
        document
            .operations
            .iter()
            .filter(|(_, op)| op.node.ty == OperationType::Subscription)
            .map(|(_, op)| op.node.selection_set.node.items.len())
            .max()
            .unwrap_or(0)
    })
}

impl Executor for LiveExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        // The protocol runs every operation as a stream; one-shot execution is not offered.
        let _ = request;
        async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            "a WebSocket serves subscriptions only; send queries and mutations with POST /graphql",
            None,
        )])
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        if let Err(message) = self.app.state.documents.prepare(&mut request) {
            return refusal(message);
        }
        if subscription_roots(&mut request) > 1 {
            return refusal("one root field per subscription; subscribe to each feed with its own id".into());
        }
        if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_SUBSCRIPTIONS {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return refusal(format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection; complete one first"));
        }
        let slot = Slot(self.open.clone());
        let request = request.disable_introspection();
        self.app
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(move |response| {
                let _running = &slot;
                super::with_codes(response)
            })
            .boxed()
    }
}
