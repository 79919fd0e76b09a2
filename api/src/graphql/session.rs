//! Signing in and out, changing one's password, and `me`.
//!
//! Sign-in answers the same error, after about the same work (an argon2 verification against
//! a decoy hash), for an unknown name, a wrong password and an account that may not sign in.
//! Every failure is an event; consecutive failures lock the account (the domain decides),
//! and the lock lifts itself after the configured period. Rate limits per account and per
//! client address apply inside the resolver, so aliases and batches each count.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use oacis_domain::ids::{Timestamp, UserId};
use oacis_domain::user::{LoginFailure, PasswordFacts, User, UserCommand, UserState, UserStatus, PASSWORD_HISTORY};
use oacis_domain::FieldCode;

use super::error::{ApiError, ApiResult};
use super::scalars::time_text;
use super::{app, origin, request, signed_in, views};
use crate::auth::{password, token};
use crate::command::Origin;
use crate::server::AppState;

/// A signed-in session.
#[derive(SimpleObject, Debug)]
pub struct SignedIn {
    /// The bearer token: send it as `Authorization: Bearer <token>`. Shown only now.
    pub token: String,
    /// When the session ends at the latest (RFC 3339).
    pub expires_at: String,
    /// Whether the password must be changed before anything else.
    pub must_change_password: bool,
    /// The user.
    pub user_id: String,
}

/// Sign-in input.
#[derive(InputObject, Debug)]
pub struct SignInInput {
    /// Username or employee number.
    pub name: String,
    /// Password.
    pub password: String,
}

/// The caller, as it sees itself.
#[derive(SimpleObject, Debug)]
pub struct Me {
    /// User id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Employee number.
    pub employee_no: String,
    /// Display name.
    pub display_name: String,
    /// Department id.
    pub department: String,
    /// Every permission held, with its scope, e.g. `customer.read:all`.
    pub permissions: Vec<String>,
    /// Whether the password must change before anything else.
    pub must_change_password: bool,
}

/// Session queries.
#[derive(Default, Debug)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Me> {
        let caller = signed_in(ctx)?;
        let mut permissions: Vec<String> = caller
            .principal
            .roles
            .iter()
            .flat_map(|r| r.permissions.iter().map(move |p| format!("{p}:{}", scope_name(r.scope))))
            .collect();
        permissions.sort();
        permissions.dedup();
        let row = views(ctx, |v| v.access.user(caller.user).cloned())?.ok_or(ApiError::Unauthenticated)?;
        Ok(Me {
            id: caller.user.to_string(),
            username: row.username,
            employee_no: row.employee_no,
            display_name: row.display_name,
            department: row.department.to_string(),
            permissions,
            must_change_password: caller.must_change_password,
        })
    }
}

fn scope_name(scope: oacis_domain::authz::Scope) -> &'static str {
    use oacis_domain::authz::Scope as S;
    match scope {
        S::Own => "own",
        S::Department => "department",
        S::DepartmentTree => "department_tree",
        S::All => "all",
    }
}

/// Session mutations.
#[derive(Default, Debug)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Signs in by username or employee number; answers a bearer token.
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> ApiResult<SignedIn> {
        let state = app(ctx)?;
        let ip = request(ctx)?.client_ip;
        if !state.throttle.allow(&input.name, ip) {
            metrics::counter!("oacis_sign_in_failures_total", "reason" => "rate_limited").increment(1);
            return Err(ApiError::RateLimited);
        }
        let user = views(ctx, |v| v.access.user_by_sign_in_name(&input.name).map(|u| u.id))?;
        let origin = Origin { actor: user, ..origin(ctx, None)? };
        let Some(user) = user else {
            // Same work as a known name: verify against the decoy.
            let _ = state.hasher.verify(&input.password, None).await.map_err(ApiError::internal)?;
            metrics::counter!("oacis_sign_in_failures_total", "reason" => "bad_credentials").increment(1);
            return Err(ApiError::BadCredentials);
        };
        let stream = user.stream();
        let mut account = state.bus.state::<User>(&stream).await?;
        let now = state.bus.now();
        if account.status == UserStatus::Locked && account.locked_by_failures {
            let expire = UserCommand::ExpireLock { lockout_us: state.config.lockout_us() };
            if state.bus.execute::<User>(stream.clone(), expire, &origin).await.is_ok() {
                account = state.bus.state::<User>(&stream).await?;
            }
        }
        let good =
            state.hasher.verify(&input.password, account.credential.as_deref()).await.map_err(ApiError::internal)?;
        // What is recorded says why; what the client hears is the same in every case.
        let failure = blocked(account.status).or((!good).then_some(LoginFailure::BadPassword));
        if failure.is_some() {
            return refuse_sign_in(state, stream, &origin, failure).await;
        }
        match open_session(state, user, &account, now, &origin).await {
            // The account was locked or deactivated while the password was checked (by
            // failures sent at the same time): the same answer as every failure, or the
            // refusal would tell that this password is the right one; recorded as an attempt
            // on a blocked account when it is one (the audit's alert).
            Err(ApiError::Conflict { .. }) => {
                let status = state.bus.state::<User>(&stream).await?.status;
                refuse_sign_in(state, stream, &origin, blocked(status)).await
            }
            answer => answer,
        }
    }

    /// Ends the caller's session; its token stops working at once.
    async fn sign_out(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let caller = super::own_account(ctx)?;
        let state = app(ctx)?;
        let command = UserCommand::EndSession { session: caller.session };
        state.bus.execute::<User>(caller.user.stream(), command, &origin(ctx, None)?).await?;
        Ok(true)
    }

    /// Changes the caller's own password. Every session of the user ends (the caller's too),
    /// and a new session is opened and returned.
    async fn change_password(&self, ctx: &Context<'_>, current: String, new_password: String) -> ApiResult<SignedIn> {
        let caller = super::own_account(ctx)?;
        let state = app(ctx)?;
        // Guesses of the current password count against the account like sign-ins do.
        if !state.throttle.allow_account(&format!("password-change:{}", caller.user)) {
            return Err(ApiError::RateLimited);
        }
        let stream = caller.user.stream();
        let account = state.bus.state::<User>(&stream).await?;
        let origin = origin(ctx, None)?;
        if !state.hasher.verify(&current, account.credential.as_deref()).await.map_err(ApiError::internal)? {
            // A wrong current password is a failed sign-in: consecutive ones lock the account
            // and end its sessions (a stolen token does not buy unlimited guesses).
            record_failure(state, stream, &origin, LoginFailure::BadPassword).await?;
            return Err(ApiError::field(
                "current",
                FieldCode::InvalidFormat,
                "is not the current password (wrong ones count towards locking the account, as at sign-in)",
            ));
        }
        set_password(state, caller.user, &account, &new_password, &origin).await?;
        let account = state.bus.state::<User>(&stream).await?;
        open_session(state, caller.user, &account, state.bus.now(), &origin).await
    }
}

/// Checks `new_password` against the policy and the history, hashes it and sets it.
pub async fn set_password(
    state: &AppState,
    user: UserId,
    account: &UserState,
    new_password: &str,
    origin: &Origin,
) -> ApiResult<()> {
    let employee_no =
        state.bus.projections().read(|v| v.access.user(user).map(|u| u.employee_no.clone()))?.unwrap_or_default();
    let username = account.username.clone().unwrap_or_default();
    let problems = password::policy_problems(new_password, &username, &employee_no);
    if !problems.is_empty() {
        let fields = problems
            .into_iter()
            .map(|m| oacis_domain::FieldError {
                field: "newPassword".into(),
                code: FieldCode::InvalidFormat,
                message: m.into(),
            })
            .collect();
        return Err(ApiError::Validation(fields));
    }
    let mut history: Vec<String> = account.credential.iter().cloned().collect();
    history.extend(account.previous_credentials.iter().take(PASSWORD_HISTORY - 1).cloned());
    let recently_used = state.hasher.matches_any(new_password, &history).await.map_err(ApiError::internal)?;
    if recently_used {
        return Err(ApiError::field("newPassword", FieldCode::Duplicate, "must differ from the last 5 passwords"));
    }
    let credential = state.hasher.hash(new_password).await.map_err(ApiError::internal)?;
    let facts = PasswordFacts { meets_policy: true, recently_used };
    state.bus.execute::<User>(user.stream(), UserCommand::SetPassword { credential, facts }, origin).await?;
    Ok(())
}

/// Why an account in `status` may not sign in at all, if it may not.
fn blocked(status: UserStatus) -> Option<LoginFailure> {
    match status {
        UserStatus::Locked => Some(LoginFailure::Locked),
        UserStatus::Deactivated => Some(LoginFailure::Deactivated),
        _ => None,
    }
}

/// A refused sign-in: `failure` recorded on the account (if any), and the one answer every
/// failure gets.
async fn refuse_sign_in(
    state: &AppState,
    stream: String,
    origin: &Origin,
    failure: Option<LoginFailure>,
) -> ApiResult<SignedIn> {
    if let Some(reason) = failure {
        record_failure(state, stream, origin, reason).await?;
    }
    metrics::counter!("oacis_sign_in_failures_total", "reason" => "bad_credentials").increment(1);
    Err(ApiError::BadCredentials)
}

/// Records a failed authentication on the account of `stream` (the domain locks it at the
/// configured number of consecutive failures and ends its sessions).
async fn record_failure(state: &AppState, stream: String, origin: &Origin, reason: LoginFailure) -> ApiResult<()> {
    let command = UserCommand::RecordLoginFailure {
        reason,
        client: origin.client_addr.clone(),
        lockout_threshold: state.config.lockout_threshold,
    };
    state.bus.execute::<User>(stream, command, origin).await?;
    Ok(())
}

async fn open_session(
    state: &AppState,
    user: UserId,
    account: &UserState,
    now: Timestamp,
    origin: &Origin,
) -> ApiResult<SignedIn> {
    let issued = token::issue().map_err(ApiError::internal)?;
    let command = UserCommand::RecordLoginSuccess {
        session: issued.session,
        client: origin.client_addr.clone(),
        token_hash: Some(issued.hash),
    };
    state.bus.execute::<User>(user.stream(), command, origin).await?;
    Ok(SignedIn {
        token: issued.token,
        expires_at: time_text(Timestamp(now.0.saturating_add(state.config.session_max_us()))),
        must_change_password: account.must_change_password,
        user_id: user.to_string(),
    })
}
