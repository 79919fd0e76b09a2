//! Users, departments, roles and grants: what administrators manage (`user.admin`,
//! `role.admin`), and the directory everyone signed in may read (profile fields follow each
//! user's privacy setting).

use async_graphql::{Context, Object, SimpleObject};
use oacis_domain::access::{
    Grant, GrantCommand, Reservation, ReservationCommand, Role, RoleCommand, UniqueKey, UniqueKind,
};
use oacis_domain::authz::{Permission, Resource};
use oacis_domain::department::{Department, DepartmentCommand};
use oacis_domain::ids::{DepartmentId, GrantId, RoleId, UserId};
use oacis_domain::user::{User, UserCommand, UserPersonal, UserProfile};
use oacis_domain::FieldCode;

use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, MutationResult, ProfileField, Scope, UserStatus, Visibility};
use super::{app, caller, execute, origin, views};
use crate::access::may_act;
use crate::command::{on, Executed};
use crate::server::bootstrap::create_user;
use oacis_projections::views::access::{AccessChange, UserRow};

/// A user as the directory shows it.
#[derive(SimpleObject, Debug)]
pub struct UserNode {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Employee number.
    pub employee_no: String,
    /// Display name.
    pub display_name: String,
    /// Department id.
    pub department: String,
    /// Account state. A locked account reads `ACTIVE` except to administrators
    /// (`user.admin`): to anyone else a lockout would confirm that a guessed name exists and
    /// is being tried.
    pub status: UserStatus,
    /// Job title, if its owner's privacy setting lets the caller see it.
    pub position: Option<String>,
    /// Phone, likewise.
    pub phone: Option<String>,
    /// E-mail, likewise.
    pub email: Option<String>,
    /// Whether the user's personal data (phone, e-mail) was erased (`eraseUserPersonalData`).
    pub personal_data_erased: bool,
}

impl UserNode {
    /// The user as `caller` may see it: each profile field follows its owner's privacy
    /// setting (everyone; the owner's department; only the owner), and administrators
    /// (`user.admin`) and the owner always see it.
    pub(crate) fn seen_by(row: &UserRow, caller: &crate::access::Caller) -> UserNode {
        use oacis_domain::user::{ProfileField as F, Visibility as V};
        let admin = caller.holds(Permission::UserAdmin);
        let shows = |field: F| {
            admin
                || caller.user == row.id
                || match row.privacy.get(&field).copied().unwrap_or_default() {
                    V::Everyone => true,
                    V::Department => caller.principal.department == Some(row.department),
                    V::OnlyMe => false,
                }
        };
        UserNode {
            id: row.id.to_string(),
            username: row.username.clone(),
            employee_no: row.employee_no.clone(),
            display_name: row.display_name.clone(),
            department: row.department.to_string(),
            status: match row.status {
                oacis_domain::user::UserStatus::Locked if !admin => UserStatus::Active,
                status => status.into(),
            },
            position: row.position.clone().filter(|_| shows(F::Position)),
            phone: row.phone.clone().filter(|_| shows(F::Phone)),
            email: row.email.clone().filter(|_| shows(F::Email)),
            personal_data_erased: row.erased,
        }
    }
}

/// A grant of a role to a user.
#[derive(SimpleObject, Debug)]
pub struct GrantNode {
    /// Id.
    pub id: String,
    /// The holder.
    pub user: String,
    /// The role.
    pub role: String,
    /// How far it reaches.
    pub scope: Scope,
    /// Whether revoked.
    pub revoked: bool,
}

/// A department.
#[derive(SimpleObject, Debug)]
pub struct DepartmentNode {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Parent id.
    pub parent: Option<String>,
    /// Whether open.
    pub open: bool,
    /// Its leader (负责人): user id.
    pub leader: Option<String>,
}

/// A role.
#[derive(SimpleObject, Debug)]
pub struct RoleNode {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Permissions, e.g. `customer.read`.
    pub permissions: Vec<String>,
    /// Whether retired.
    pub retired: bool,
}

/// People queries.
#[derive(Default, Debug)]
pub struct PeopleQuery;

#[Object]
impl PeopleQuery {
    /// Every user (at most a few thousand in an installation; administrators see all, others
    /// too, since colleagues must be found to assign work).
    async fn users(&self, ctx: &Context<'_>) -> ApiResult<Vec<UserNode>> {
        let caller = caller(ctx)?;
        views(ctx, |v| v.access.users().map(|u| UserNode::seen_by(u, caller)).collect())
    }

    /// Every grant (`role.admin` or `user.admin`).
    async fn grants(&self, ctx: &Context<'_>) -> ApiResult<Vec<GrantNode>> {
        let caller = caller(ctx)?;
        if !caller.holds(Permission::RoleAdmin) {
            caller.require(Permission::UserAdmin, &Resource::global())?;
        }
        views(ctx, |v| {
            v.access
                .grants()
                .map(|(id, g)| GrantNode {
                    id: id.to_string(),
                    user: g.user.to_string(),
                    role: g.role.to_string(),
                    scope: g.scope.into(),
                    revoked: g.revoked,
                })
                .collect()
        })
    }

    /// The department tree, as a list with parents.
    async fn departments(&self, ctx: &Context<'_>) -> ApiResult<Vec<DepartmentNode>> {
        caller(ctx)?;
        views(ctx, |v| {
            v.access
                .departments()
                .map(|(id, d)| DepartmentNode {
                    id: id.to_string(),
                    name: d.name.clone(),
                    parent: d.parent.map(|p| p.to_string()),
                    open: d.open,
                    leader: d.leader.map(|l| l.to_string()),
                })
                .collect()
        })
    }

    /// Every role.
    async fn roles(&self, ctx: &Context<'_>) -> ApiResult<Vec<RoleNode>> {
        caller(ctx)?;
        views(ctx, |v| {
            v.access
                .roles()
                .map(|(id, r)| RoleNode {
                    id: id.to_string(),
                    name: r.name.clone(),
                    permissions: r.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
                    retired: r.retired,
                })
                .collect()
        })
    }
}

/// People mutations.
#[derive(Default, Debug)]
pub struct PeopleMutation;

fn admin(ctx: &Context<'_>, permission: Permission) -> ApiResult<()> {
    caller(ctx)?.require(permission, &Resource::global())
}

fn result(id: impl ToString, executed: Executed, key: Option<String>) -> MutationResult {
    MutationResult::new(id, executed, key)
}

#[Object]
impl PeopleMutation {
    /// Creates a user with an initial password that must be changed at first sign-in.
    #[allow(clippy::too_many_arguments)]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        employee_no: String,
        display_name: String,
        department: String,
        initial_password: String,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let department = DepartmentId(parse_id("department", &department)?);
        let known = views(ctx, |v| v.access.department(department).is_some_and(|d| d.open))?;
        if !known {
            return Err(ApiError::field("department", FieldCode::InvalidFormat, "no such open department"));
        }
        // Both sign in: a username that is another user's employee number (or the other way
        // round) would take over that user's sign-in name.
        let (login, number) = (username.trim().to_lowercase(), employee_no.trim().to_lowercase());
        let clash = views(ctx, |v| {
            v.access.users().find_map(|u| {
                if u.employee_no.trim().to_lowercase() == login && u.username != login {
                    Some(("username", "is another user's employee number, which signs in too"))
                } else if u.username == number && u.employee_no.trim().to_lowercase() != number {
                    Some(("employeeNo", "is another user's username, which signs in too"))
                } else {
                    None
                }
            })
        })?;
        if let Some((field, message)) = clash {
            return Err(ApiError::field(field, FieldCode::Duplicate, message));
        }
        let problems = crate::auth::password::policy_problems(&initial_password, &username, &employee_no);
        if let Some(problem) = problems.first() {
            return Err(ApiError::field("initialPassword", FieldCode::InvalidFormat, *problem));
        }
        let state = app(ctx)?;
        let origin = origin(ctx, None)?;
        let user = create_user(state, &username, &employee_no, &display_name, department, &initial_password, &origin)
            .await
            .map_err(|e| match e.downcast::<crate::command::CommandError>() {
                Ok(command) => as_arguments(ApiError::from(command)),
                Err(other) => ApiError::internal(other),
            })?;
        let executed = state.bus.execute::<User>(user.stream(), UserCommand::RequirePasswordChange, &origin).await?;
        Ok(result(user, executed, None))
    }

    /// Creates a department under `parent` (or at the root).
    async fn create_department(
        &self,
        ctx: &Context<'_>,
        name: String,
        parent: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let parent = parent.as_deref().map(|p| parse_id("parent", p).map(DepartmentId)).transpose()?;
        unique_among_siblings(ctx, "name", parent, &name, None)?;
        let parent_open = match parent {
            Some(p) => views(ctx, |v| v.access.department(p).is_some_and(|d| d.open))?,
            None => false,
        };
        let origin = origin(ctx, client_mutation_id.clone())?;
        let id = DepartmentId(origin.new_id("department"));
        let command = DepartmentCommand::Create { id, name, parent, parent_open };
        let executed = app(ctx)?.bus.execute::<Department>(id.stream(), command, &origin).await?;
        Ok(result(id, executed, client_mutation_id))
    }

    /// Grants `role` to `user` with `scope`.
    async fn grant_role(
        &self,
        ctx: &Context<'_>,
        user: String,
        role: String,
        scope: Scope,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::RoleAdmin)?;
        let user = UserId(parse_id("user", &user)?);
        let role = RoleId(parse_id("role", &role)?);
        let (user_known, role_live) =
            views(ctx, |v| (v.access.user(user).is_some(), v.access.role(role).is_some_and(|r| !r.retired)))?;
        if !user_known {
            return Err(ApiError::NotFound("user"));
        }
        if !role_live {
            return Err(ApiError::field("role", FieldCode::InvalidFormat, "no such live role"));
        }
        let origin = origin(ctx, client_mutation_id.clone())?;
        let id = GrantId(origin.new_id("grant"));
        let command = GrantCommand::Give { id, user, role, scope: scope.into() };
        let executed = app(ctx)?.bus.execute::<Grant>(id.stream(), command, &origin).await?;
        Ok(result(id, executed, client_mutation_id))
    }

    /// Revokes a grant; it stops counting at once.
    async fn revoke_grant(&self, ctx: &Context<'_>, grant: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::RoleAdmin)?;
        let id = GrantId(parse_id("grant", &grant)?);
        keeps_administration(ctx, "grant", &AccessChange::RevokeGrant(id))?;
        let executed = app(ctx)?.bus.execute::<Grant>(id.stream(), GrantCommand::Revoke, &origin(ctx, None)?).await?;
        Ok(result(id, executed, None))
    }

    /// Retires a role; its grants stop counting.
    async fn retire_role(&self, ctx: &Context<'_>, role: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::RoleAdmin)?;
        let id = RoleId(parse_id("role", &role)?);
        keeps_administration(ctx, "role", &AccessChange::RetireRole(id))?;
        let executed = app(ctx)?.bus.execute::<Role>(id.stream(), RoleCommand::Retire, &origin(ctx, None)?).await?;
        Ok(result(id, executed, None))
    }

    /// Locks, unlocks, deactivates or reactivates a user; locking and deactivating end
    /// every session of the user.
    async fn set_user_state(
        &self,
        ctx: &Context<'_>,
        user: String,
        state: UserStatus,
        reason: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = UserId(parse_id("user", &user)?);
        let current = views(ctx, |v| v.access.user(id).map(|u| u.status))?.ok_or(ApiError::NotFound("user"))?;
        use oacis_domain::user::UserStatus as S;
        keeps_administration(ctx, "user", &AccessChange::UserStatus(id, state.into()))?;
        let command = match (state.into(), current) {
            (S::Locked, _) => UserCommand::Lock { reason: reason.unwrap_or_default() },
            (S::Deactivated, _) => UserCommand::Deactivate,
            (S::Active, S::Deactivated) => UserCommand::Reactivate,
            (S::Active, _) => UserCommand::Unlock,
            (S::Uncreated, _) => {
                return Err(ApiError::field("state", FieldCode::InvalidFormat, "use ACTIVE, LOCKED or DEACTIVATED"))
            }
        };
        let executed = app(ctx)?.bus.execute::<User>(id.stream(), command, &origin(ctx, None)?).await?;
        Ok(result(id, executed, None))
    }

    /// Ends every session of a user at once (an administrator's revocation).
    async fn revoke_sessions(&self, ctx: &Context<'_>, user: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = UserId(parse_id("user", &user)?);
        if !views(ctx, |v| v.access.user(id).is_some())? {
            return Err(ApiError::NotFound("user"));
        }
        execute::<User>(ctx, id, id.stream(), UserCommand::EndAllSessions, None).await
    }

    /// Erases a user's personal data (phone, e-mail) for good (PIPL art. 47, GDPR art. 17;
    /// needs `user.admin`): records the erasure (who, when, why), then destroys the user's
    /// data keys; the account, its name and its history remain, and every hash of the log
    /// still verifies. Erasing an erased user writes nothing. `reason` stays readable for good:
    /// one that looks like it holds personal data (an e-mail address, a phone or identity
    /// number) is refused.
    async fn erase_user_personal_data(
        &self,
        ctx: &Context<'_>,
        user: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = UserId(parse_id("user", &user)?);
        super::erase(ctx, id, crate::erasure::Subject::User(id), reason, client_mutation_id).await
    }

    /// An administrator's password reset: sets `newPassword` and requires a change at the
    /// user's next sign-in; every session of the user ends.
    async fn reset_password(&self, ctx: &Context<'_>, user: String, new_password: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = UserId(parse_id("user", &user)?);
        let state = app(ctx)?;
        let account = state.bus.state::<User>(&id.stream()).await?;
        if account.id.is_none() {
            return Err(ApiError::NotFound("user"));
        }
        let origin = origin(ctx, None)?;
        super::session::set_password(state, id, &account, &new_password, &origin).await?;
        let executed = state.bus.execute::<User>(id.stream(), UserCommand::RequirePasswordChange, &origin).await?;
        Ok(result(id, executed, None))
    }

    /// Replaces a user's profile (an administrator's, or one's own).
    #[allow(clippy::too_many_arguments)]
    async fn update_user_profile(
        &self,
        ctx: &Context<'_>,
        user: String,
        display_name: String,
        department: String,
        position: Option<String>,
        phone: Option<String>,
        email: Option<String>,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        super::own_account(ctx)?;
        let id = UserId(parse_id("user", &user)?);
        if id != caller.user {
            admin(ctx, Permission::UserAdmin)?;
        }
        let department = DepartmentId(parse_id("department", &department)?);
        if !views(ctx, |v| v.access.department(department).is_some_and(|d| d.open))? {
            return Err(ApiError::field("department", FieldCode::InvalidFormat, "no such open department"));
        }
        if id != caller.user || views(ctx, |v| v.access.user(id).map(|u| u.department))? != Some(department) {
            // Moving someone (oneself included) to another department is an administrator's act.
            admin(ctx, Permission::UserAdmin)?;
        }
        let profile = UserProfile { display_name, department, position, personal: UserPersonal { phone, email } };
        execute::<User>(ctx, id, id.stream(), UserCommand::UpdateProfile { profile }, None).await.map_err(as_arguments)
    }

    /// Sets who may see one of the caller's own profile fields.
    async fn set_privacy(
        &self,
        ctx: &Context<'_>,
        field: ProfileField,
        visibility: Visibility,
    ) -> ApiResult<MutationResult> {
        let caller = caller(ctx)?;
        super::own_account(ctx)?;
        let id = caller.user;
        let command = UserCommand::SetPrivacy { field: field.into(), visibility: visibility.into() };
        execute::<User>(ctx, id, id.stream(), command, None).await
    }

    /// Renames a department.
    async fn rename_department(&self, ctx: &Context<'_>, id: String, name: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = DepartmentId(parse_id("id", &id)?);
        let parent =
            views(ctx, |v| v.access.department(id).map(|d| d.parent))?.ok_or(ApiError::NotFound("department"))?;
        unique_among_siblings(ctx, "name", parent, &name, Some(id))?;
        execute::<Department>(ctx, id, id.stream(), DepartmentCommand::Rename { name }, None).await
    }

    /// Moves a department under another parent (or, without `parent`, to the root); a move
    /// under its own subtree is refused.
    async fn move_department(
        &self,
        ctx: &Context<'_>,
        id: String,
        parent: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = DepartmentId(parse_id("id", &id)?);
        let parent = parent.as_deref().map(|p| parse_id("parent", p).map(DepartmentId)).transpose()?;
        let name =
            views(ctx, |v| v.access.department(id).map(|d| d.name.clone()))?.ok_or(ApiError::NotFound("department"))?;
        unique_among_siblings(ctx, "parent", parent, &name, Some(id))?;
        let (parent_ancestors, parent_open) = views(ctx, |v| match parent {
            Some(p) => (v.access.department_path(p), v.access.department(p).is_some_and(|d| d.open)),
            None => (Vec::new(), false),
        })?;
        let command = DepartmentCommand::Move { parent, parent_ancestors, parent_open };
        execute::<Department>(ctx, id, id.stream(), command, None).await
    }

    /// Names a department's leader (负责人), who approves for its members where an approval
    /// definition says "leader"; without `leader`, clears it.
    async fn set_department_leader(
        &self,
        ctx: &Context<'_>,
        id: String,
        leader: Option<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = DepartmentId(parse_id("id", &id)?);
        let leader = leader.as_deref().map(|l| parse_id("leader", l).map(UserId)).transpose()?;
        let leader_active = views(ctx, |v| leader.and_then(|l| v.access.user(l)).is_some_and(|u| may_act(u.status)))?;
        execute::<Department>(ctx, id, id.stream(), DepartmentCommand::SetLeader { leader, leader_active }, None).await
    }

    /// Closes a department that has no open sub-departments and no members.
    async fn close_department(&self, ctx: &Context<'_>, id: String) -> ApiResult<MutationResult> {
        admin(ctx, Permission::UserAdmin)?;
        let id = DepartmentId(parse_id("id", &id)?);
        let (has_children, has_members) = views(ctx, |v| {
            (
                v.access.departments().any(|(_, d)| d.parent == Some(id) && d.open),
                v.access.users().any(|u| u.department == id && u.status != oacis_domain::user::UserStatus::Deactivated),
            )
        })?;
        execute::<Department>(ctx, id, id.stream(), DepartmentCommand::Close { has_children, has_members }, None).await
    }

    /// Defines a role (its name is reserved: two roles never share one).
    async fn define_role(
        &self,
        ctx: &Context<'_>,
        name: String,
        permissions: Vec<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::RoleAdmin)?;
        let permissions = parse_permissions(&permissions)?;
        if permissions.is_empty() {
            return Err(ApiError::field("permissions", FieldCode::Required, "a role grants at least one permission"));
        }
        let origin = origin(ctx, None)?;
        let id = RoleId(origin.new_id("role"));
        let key = UniqueKey::new(UniqueKind::RoleName, &name);
        let steps = vec![
            on::<Role>(id.stream(), RoleCommand::Define { id, name, permissions }),
            on::<Reservation>(key.stream(), ReservationCommand::Claim { key, owner: id.0 }),
        ];
        let executed = app(ctx)?.bus.execute_steps(steps, &origin).await?;
        Ok(result(id, executed, None))
    }

    /// Replaces a role's permissions; it takes effect for every holder at once.
    async fn change_role_permissions(
        &self,
        ctx: &Context<'_>,
        role: String,
        permissions: Vec<String>,
    ) -> ApiResult<MutationResult> {
        admin(ctx, Permission::RoleAdmin)?;
        let id = RoleId(parse_id("role", &role)?);
        let permissions = parse_permissions(&permissions)?;
        keeps_administration(ctx, "permissions", &AccessChange::RolePermissions(id, permissions.clone()))?;
        execute::<Role>(ctx, id, id.stream(), RoleCommand::ChangePermissions { permissions }, None).await
    }
}

/// VALIDATION on `field` if an open department under `parent` (other than `except`) has
/// `name` already (compared trimmed and case-folded): files and people name departments by
/// name, and two siblings of one name could not be told apart.
fn unique_among_siblings(
    ctx: &Context<'_>,
    field: &str,
    parent: Option<DepartmentId>,
    name: &str,
    except: Option<DepartmentId>,
) -> ApiResult<()> {
    let wanted = name.trim().to_lowercase();
    let taken = views(ctx, |v| {
        v.access.departments().any(|(id, d)| {
            Some(*id) != except && d.open && d.parent == parent && d.name.trim().to_lowercase() == wanted
        })
    })?;
    if taken {
        return Err(ApiError::field(
            field,
            FieldCode::Duplicate,
            format!("a department under the same parent is named {name:?} already"),
        ));
    }
    Ok(())
}

/// CONFLICT if `change` would leave no active user holding `role.admin` and `user.admin`
/// over everything: no one could then give any right back.
fn keeps_administration(ctx: &Context<'_>, field: &str, change: &AccessChange) -> ApiResult<()> {
    if views(ctx, |v| v.access.administration_survives(change))? {
        return Ok(());
    }
    Err(ApiError::Conflict {
        message: format!(
            "refused ({field}): no active user would hold role.admin and user.admin over everything, and no one \
             could give them back; grant them to another user first"
        ),
        version: None,
    })
}

fn parse_permissions(names: &[String]) -> ApiResult<std::collections::BTreeSet<Permission>> {
    let mut errors = Vec::new();
    let mut set = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        match Permission::parse(name) {
            Some(p) => {
                set.insert(p);
            }
            None => errors.push(oacis_domain::FieldError {
                field: format!("permissions[{i}]"),
                code: FieldCode::InvalidFormat,
                message: format!("unknown permission {name:?}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// How a user's stream name begins (`UserId::stream`: `user-<uuid>`).
pub(crate) const USER_STREAM_PREFIX: &str = "user-";

/// The profile fields of the user whose stream is `stream` that their privacy settings keep
/// from `caller` now (`position`; phone and e-mail are personal data, masked apart), by their
/// payload name: so that the log read as an audit trail (`recordHistory`, `events`, the
/// events feed) shows no more of a colleague than `users` does.
pub(crate) fn hidden_user_fields(
    v: &oacis_projections::Views,
    caller: &crate::access::Caller,
    stream: &str,
) -> Vec<&'static str> {
    let Some(id) = stream.strip_prefix(USER_STREAM_PREFIX).and_then(|s| uuid::Uuid::parse_str(s).ok()) else {
        return Vec::new();
    };
    match v.access.user(UserId(id)) {
        Some(row) if row.position.is_some() && UserNode::seen_by(row, caller).position.is_none() => vec!["position"],
        _ => Vec::new(),
    }
}

/// Masks, in a user event's `payload`, the members named `fields` wherever they are.
pub(crate) fn mask_user_fields(payload: &mut serde_json::Value, fields: &[&str]) {
    match payload {
        serde_json::Value::Object(map) => {
            for (name, value) in map.iter_mut() {
                if fields.contains(&name.as_str()) && !value.is_null() {
                    *value = serde_json::Value::String("****".into());
                } else {
                    mask_user_fields(value, fields);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| mask_user_fields(item, fields)),
        _ => {}
    }
}

/// A user command's field errors as the mutations name them: the profile's fields are
/// arguments of their own (`profile.display_name` is `displayName`, `profile.personal.phone`
/// is `phone`).
fn as_arguments(error: ApiError) -> ApiError {
    match error {
        ApiError::Validation(mut fields) => {
            for f in &mut fields {
                if let Some(rest) = f.field.strip_prefix("profile.") {
                    f.field = rest.to_owned();
                }
            }
            ApiError::Validation(fields)
        }
        other => other,
    }
}
