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
//! - The cross-site WebSocket concern (a browser sending a site's cookies) does not arise:
//!   nothing here reads cookies, only the token in `connection_init`.

use std::net::SocketAddr;
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
    upgrade.protocols([PROTOCOL]).on_upgrade(move |socket| {
        let state = app.state.clone();
        GraphQLWebSocket::new(socket, LiveExecutor { app }, protocol)
            .on_connection_init(move |payload| async move { connection_init(&state, &payload, peer) })
            .keepalive_timeout(KEEPALIVE)
            .serve()
    })
}

/// The connection's data from its `connection_init` payload, or the refusal.
fn connection_init(
    state: &Arc<super::AppState>,
    payload: &serde_json::Value,
    peer: SocketAddr,
) -> async_graphql::Result<Data> {
    let text = |key: &str| payload.get(key).and_then(serde_json::Value::as_str);
    let authorization = text("authorization")
        .or_else(|| text("Authorization"))
        .map(str::to_owned)
        .or_else(|| text("token").map(|t| format!("Bearer {t}")));
    let caller = state.caller_for(authorization.as_deref()).ok_or_else(|| {
        async_graphql::Error::new("sign in first: the token in connection_init is missing, unknown, expired or revoked")
    })?;
    let mut data = Data::default();
    data.insert(RequestCtx {
        caller: Some(caller),
        correlation_id: uuid::Uuid::now_v7(),
        client_ip: Some(peer.ip()),
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
            let refused = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(message, None)]);
            return stream::once(async move { super::with_codes(refused) }).boxed();
        }
        let request = request.disable_introspection();
        self.app
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(super::with_codes)
            .boxed()
    }
}
