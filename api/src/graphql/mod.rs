//! The GraphQL schema: its roots, the request context every resolver reads, and the limits.
//!
//! One module per area (`session`, `customers`, `work` for cases and tasks, `people` for
//! users, departments, roles and grants, `insight` for analytics and audit). Resolvers are
//! thin: they turn input into domain commands for [`crate::command::CommandBus`] and read the
//! views; rules live in the domain, data in the views, scope and masking in
//! [`crate::access`], error codes in [`error`].

pub mod approvals;
pub mod customers;
pub mod documents;
pub mod error;
pub mod expansion;
pub mod feeds;
pub mod insight;
pub mod integrity;
pub mod notes;
pub mod people;
pub mod scalars;
pub mod session;
pub mod transfer;
pub mod work;

use std::net::IpAddr;
use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{Context, MergedObject, Schema};
use oacis_projections::Views;

use crate::access::{Caller, Reveal};
use crate::command::Origin;
use crate::server::AppState;
use error::{ApiError, ApiResult};

/// The query root.
#[derive(MergedObject, Default)]
pub struct Query(
    session::SessionQuery,
    customers::CustomerQuery,
    customers::DuplicateQuery,
    work::WorkQuery,
    people::PeopleQuery,
    insight::InsightQuery,
    notes::NotesQuery,
    transfer::TransferQuery,
    integrity::IntegrityQuery,
    approvals::ApprovalQuery,
);

/// The mutation root.
#[derive(MergedObject, Default)]
pub struct Mutation(
    session::SessionMutation,
    customers::CustomerMutation,
    work::WorkMutation,
    people::PeopleMutation,
    transfer::TransferMutation,
    integrity::IntegrityMutation,
    approvals::ApprovalMutation,
);

/// The roots hold no data: they are named by their type alone.
macro_rules! debug_as_name {
    ($($root:ty),*) => {$(
        impl std::fmt::Debug for $root {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($root))
            }
        }
    )*};
}
debug_as_name!(Query, Mutation);

/// The schema type.
pub type OacisSchema = Schema<Query, Mutation, feeds::LiveSubscription>;

/// Largest `first` of any connection.
pub const MAX_PAGE: i32 = 100;
/// Page size when `first` is not given.
pub const DEFAULT_PAGE: i32 = 20;
/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complexity points a query may cost (a connection costs `first` times its node).
pub const MAX_COMPLEXITY: usize = 5_000;
/// Most directives in one query.
pub const MAX_DIRECTIVES: usize = 50;

/// Builds the schema with every limit set (each is off by default in async-graphql).
#[must_use]
pub fn schema(state: Arc<AppState>) -> OacisSchema {
    Schema::build(Query::default(), Mutation::default(), feeds::LiveSubscription)
        .data(state)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_directives(MAX_DIRECTIVES)
        .extension(crate::server::metrics::RootFields)
        .finish()
}

/// The schema without server state, for printing the SDL.
#[must_use]
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), feeds::LiveSubscription).finish().sdl()
}

/// The cost of a connection field: `first` (default [`DEFAULT_PAGE`]) times its node.
#[must_use]
pub fn weighted(first: Option<i32>, child: usize) -> usize {
    let first = usize::try_from(first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)).unwrap_or(1);
    first.saturating_mul(child.max(1))
}

/// What a request brings besides its query: who asks, from where, and what it revealed.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The signed-in caller, if the token was valid.
    pub caller: Option<Caller>,
    /// The request's correlation id.
    pub correlation_id: uuid::Uuid,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Personal data shown unmasked.
    pub reveal: Reveal,
    /// The `Authorization` value the caller came with (none: no header), so that live feeds
    /// can check the session again.
    pub authorization: Option<String>,
    /// Whether the request came over a WebSocket, where only subscriptions are served (the
    /// access log of personal data reads is written for HTTP responses).
    pub websocket: bool,
}

/// The server state.
pub fn app<'a>(ctx: &Context<'a>) -> ApiResult<&'a Arc<AppState>> {
    ctx.data::<Arc<AppState>>().map_err(|e| ApiError::internal(e.message))
}

/// The request context; refuses queries and mutations sent over a WebSocket.
pub fn request<'a>(ctx: &Context<'a>) -> ApiResult<&'a RequestCtx> {
    let request = ctx.data::<RequestCtx>().map_err(|e| ApiError::internal(e.message))?;
    if request.websocket && ctx.query_env.operation.node.ty != OperationType::Subscription {
        return Err(ApiError::field(
            "operation",
            oacis_domain::FieldCode::InvalidFormat,
            "a WebSocket serves subscriptions only; send queries and mutations with POST /graphql",
        ));
    }
    Ok(request)
}

/// The signed-in caller, refusing one who must change its password first.
pub fn caller<'a>(ctx: &Context<'a>) -> ApiResult<&'a Caller> {
    let caller = signed_in(ctx)?;
    if caller.must_change_password {
        return Err(ApiError::PasswordChangeRequired);
    }
    Ok(caller)
}

/// The signed-in caller acting on its own account (sign-out, password, profile): never the
/// anonymous user, whose account is changed only by signing in as it.
pub fn own_account<'a>(ctx: &Context<'a>) -> ApiResult<&'a Caller> {
    let caller = signed_in(ctx)?;
    if caller.anonymous {
        return Err(ApiError::Forbidden("the anonymous user's own account changes only after signing in as it".into()));
    }
    Ok(caller)
}

/// The signed-in caller, even one who must change its password.
pub fn signed_in<'a>(ctx: &Context<'a>) -> ApiResult<&'a Caller> {
    request(ctx)?.caller.as_ref().ok_or(ApiError::Unauthenticated)
}

/// The origin of a command issued by this request.
pub fn origin(ctx: &Context<'_>, idempotency_key: Option<String>) -> ApiResult<Origin> {
    let request = request(ctx)?;
    if let Some(key) = &idempotency_key {
        if key.is_empty() || key.len() > 128 {
            return Err(ApiError::field(
                "clientMutationId",
                oacis_domain::FieldCode::OutOfRange,
                "must have 1 to 128 bytes",
            ));
        }
    }
    Ok(Origin {
        actor: request.caller.as_ref().map(|c| c.user),
        correlation_id: request.correlation_id,
        client_addr: request.client_ip.map(|ip| ip.to_string()),
        expected_version: None,
        // Only with a key: the arguments may hold secrets, and the fingerprint is kept in the log.
        fingerprint: idempotency_key.as_ref().map(|_| request_fingerprint(ctx)),
        idempotency_key,
    })
}

/// BLAKE3 of the field being resolved and its arguments (variables substituted, sorted by
/// name): what a retry with the same idempotency key must repeat.
fn request_fingerprint(ctx: &Context<'_>) -> [u8; 32] {
    let field = ctx.field();
    let mut arguments: Vec<(String, String)> = field
        .arguments()
        .map(|args| args.into_iter().map(|(name, value)| (name.to_string(), value.to_string())).collect())
        .unwrap_or_default();
    arguments.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(field.name().as_bytes());
    for (name, value) in arguments {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// Reads the live views.
pub fn views<R>(ctx: &Context<'_>, f: impl FnOnce(&Views) -> R) -> ApiResult<R> {
    Ok(app(ctx)?.bus.projections().read(f)?)
}

/// Refuses a page size outside 0..=[`MAX_PAGE`] (0: no rows, for `totalCount` and
/// `hasNextPage` alone, as Relay allows).
pub fn page_size(first: Option<i32>) -> ApiResult<usize> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(ApiError::field("first", oacis_domain::FieldCode::OutOfRange, "must be 0 to 100"));
    }
    usize::try_from(first).map_err(ApiError::internal)
}

/// The extra fields of every connection.
#[derive(async_graphql::SimpleObject, Debug)]
pub struct Counted {
    /// How many records match in all (only those the caller may see).
    pub total_count: u64,
}

/// A page of an already filtered and sorted list, as a Relay connection: the rows after the
/// one whose cursor is `after` (from the start if it is unknown), at most `first`.
pub fn connection<T: async_graphql::OutputType>(
    rows: Vec<T>,
    cursor_of: impl Fn(&T) -> String,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<async_graphql::connection::Connection<String, T, Counted>> {
    connection_of(rows, cursor_of, first, after, |row| row)
}

/// [`connection`] over `rows` that turns only the page's rows into nodes with `node`, so a
/// long list costs its cursors, not its nodes.
pub fn connection_of<R, T: async_graphql::OutputType>(
    rows: Vec<R>,
    cursor_of: impl Fn(&R) -> String,
    first: Option<i32>,
    after: Option<String>,
    node: impl Fn(R) -> T,
) -> ApiResult<async_graphql::connection::Connection<String, T, Counted>> {
    let size = page_size(first)?;
    let total = rows.len();
    let start = match after.as_deref() {
        None => 0,
        // A cursor that names no row (mistyped, or its row left the list) is refused rather
        // than read as the start, which would show the first page again.
        Some(a) => rows.iter().position(|r| cursor_of(r) == a).map(|i| i + 1).ok_or_else(|| {
            ApiError::field("after", oacis_domain::FieldCode::InvalidFormat, "no row of this list has this cursor")
        })?,
    };
    let has_next = total > start.saturating_add(size);
    let mut connection = async_graphql::connection::Connection::with_additional_fields(
        start > 0,
        has_next,
        Counted { total_count: u64::try_from(total).unwrap_or(u64::MAX) },
    );
    for row in rows.into_iter().skip(start).take(size) {
        let cursor = cursor_of(&row);
        connection.edges.push(async_graphql::connection::Edge::new(cursor, node(row)));
    }
    Ok(connection)
}

/// Executes `command` on `stream` for a record the caller has already been checked against,
/// and answers the mutation's payload.
pub async fn execute<A>(
    ctx: &Context<'_>,
    id: impl std::fmt::Display,
    stream: String,
    command: A::Command,
    key: Option<String>,
) -> ApiResult<scalars::MutationResult>
where
    A: oacis_domain::Aggregate + 'static,
    A::Command: Clone + std::fmt::Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
{
    execute_expecting::<A>(ctx, id, stream, command, key, None).await
}

/// The erasure of `subject`'s personal data (the caller has checked the permission), as a
/// mutation's answer.
pub async fn erase(
    ctx: &Context<'_>,
    id: impl std::fmt::Display,
    subject: crate::erasure::Subject,
    reason: String,
    key: Option<String>,
) -> ApiResult<scalars::MutationResult> {
    let origin = origin(ctx, key.clone())?;
    let executed = crate::erasure::erase(&app(ctx)?.bus, subject, reason, &origin).await?;
    Ok(scalars::MutationResult::new(id, executed, key))
}

/// As [`execute`], refusing with CONFLICT if the stream is not at `expected_version`.
pub async fn execute_expecting<A>(
    ctx: &Context<'_>,
    id: impl std::fmt::Display,
    stream: String,
    command: A::Command,
    key: Option<String>,
    expected_version: Option<u64>,
) -> ApiResult<scalars::MutationResult>
where
    A: oacis_domain::Aggregate + 'static,
    A::Command: Clone + std::fmt::Debug + Send + Sync + 'static,
    A::State: Send + Sync + 'static,
{
    let origin = crate::command::Origin { expected_version, ..origin(ctx, key.clone())? };
    let executed = app(ctx)?.bus.execute::<A>(stream, command, &origin).await?;
    Ok(scalars::MutationResult::new(id, executed, key))
}

/// The log position an as-of read names: `asOfSeq`, or the last seq recorded at or before
/// `asOf` (RFC 3339; found by a binary search of the log); `None` for "now".
///
/// # Errors
/// VALIDATION for both given at once, for an `asOfSeq` past the log's head (as this server
/// knows it), or for an `asOf` in the future: a state the log has not reached is not
/// answered as the current one.
pub async fn as_of(ctx: &Context<'_>, seq: Option<u64>, time: Option<&str>) -> ApiResult<Option<oacis_eventlog::Seq>> {
    use oacis_eventlog::EventStore;
    match (seq, time) {
        (Some(_), Some(_)) => {
            Err(ApiError::field("asOfSeq", oacis_domain::FieldCode::InvalidFormat, "give asOfSeq or asOf, not both"))
        }
        (Some(seq), None) => {
            let head = app(ctx)?.bus.store().head().seq.0;
            if seq > head {
                return Err(ApiError::field(
                    "asOfSeq",
                    oacis_domain::FieldCode::OutOfRange,
                    format!("is past the log's head (seq {head})"),
                ));
            }
            Ok(Some(oacis_eventlog::Seq(seq)))
        }
        (None, Some(time)) => {
            let t = scalars::parse_time("asOf", time)?;
            // The future has not been recorded: answering it with the present would pass it off
            // as a state the log holds. (Clock skew of a few minutes is allowed.)
            if t.0 > crate::command::now().0.saturating_add(oacis_domain::customer::CLOCK_SKEW_US) {
                return Err(ApiError::field("asOf", oacis_domain::FieldCode::OutOfRange, "is in the future"));
            }
            let store = app(ctx)?.bus.store();
            Ok(Some(oacis_projections::seq_at_time(store, oacis_eventlog::Timestamp(t.0)).await?))
        }
        (None, None) => Ok(None),
    }
}
