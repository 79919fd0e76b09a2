//! Roles (named sets of permissions) and grants (a role given to a user with a scope), and
//! the reservations that keep usernames, employee numbers and role names unique.
//!
//! Uniqueness is enforced through the log itself: each unique value has a reservation stream
//! ([`UniqueKey::stream`]) that the caller appends to with "must not exist"; the log's
//! expected-version check makes two concurrent claims of one value impossible.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::authz::{Permission, Scope};
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{GrantId, RoleId, UserId};
use crate::validate::{normalise, Validator};

/// The folded role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleState {
    /// Its id.
    pub id: Option<RoleId>,
    /// Its name.
    pub name: Option<String>,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
    /// Whether it was retired (final).
    pub retired: bool,
}

/// What can be asked of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    /// Define a role (its name is reserved by the caller).
    Define {
        /// Chosen by the caller.
        id: RoleId,
        /// Name.
        name: String,
        /// What it allows.
        permissions: BTreeSet<Permission>,
    },
    /// Replace its permissions.
    ChangePermissions {
        /// The new set.
        permissions: BTreeSet<Permission>,
    },
    /// Retire it; grants of it stop counting.
    Retire,
}

/// Payload of `RoleDefined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefined {
    /// The role.
    pub role_id: RoleId,
    /// Name.
    pub name: String,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
}

/// Payload of `RolePermissionsChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePermissionsChanged {
    /// Added.
    pub added: BTreeSet<Permission>,
    /// Removed.
    pub removed: BTreeSet<Permission>,
}

/// Payload of `RoleRetired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRetired {}

events! {
    /// What happens to roles.
    pub enum RoleEvent {
        /// Defined.
        RoleDefined(RoleDefined) = 1,
        /// Permissions changed.
        RolePermissionsChanged(RolePermissionsChanged) = 1,
        /// Retired.
        RoleRetired(RoleRetired) = 1,
    }
}

/// Checks a role name: 1-32 characters.
pub fn checked_role_name(v: &mut Validator, name: &str) -> String {
    v.text("name", name, 32)
}

fn live_role(state: &RoleState, action: &'static str) -> Result<(), DomainError> {
    if state.id.is_none() {
        return Err(DomainError::NotFound { entity: "role" });
    }
    if state.retired {
        return Err(DomainError::InvalidTransition { entity: "role", status: "retired", action });
    }
    Ok(())
}

/// The role aggregate.
#[derive(Debug)]
pub struct Role;

impl Aggregate for Role {
    type State = RoleState;
    type Command = RoleCommand;
    type Event = RoleEvent;

    fn decide(state: &RoleState, command: RoleCommand, _ctx: &Context) -> Result<Vec<RoleEvent>, DomainError> {
        let event = match command {
            RoleCommand::Define { id, name, permissions } => {
                if state.id.is_some() {
                    return Err(DomainError::AlreadyExists { entity: "role" });
                }
                let mut v = Validator::new();
                let name = checked_role_name(&mut v, &name);
                RoleEvent::RoleDefined(RoleDefined { role_id: id, name: v.finish(name)?, permissions })
            }
            RoleCommand::ChangePermissions { permissions } => {
                live_role(state, "change")?;
                let added: BTreeSet<_> = permissions.difference(&state.permissions).copied().collect();
                let removed: BTreeSet<_> = state.permissions.difference(&permissions).copied().collect();
                if added.is_empty() && removed.is_empty() {
                    return Ok(Vec::new());
                }
                RoleEvent::RolePermissionsChanged(RolePermissionsChanged { added, removed })
            }
            RoleCommand::Retire => {
                live_role(state, "retire")?;
                RoleEvent::RoleRetired(RoleRetired {})
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: RoleState, event: &RoleEvent) -> RoleState {
        match event {
            RoleEvent::RoleDefined(e) => {
                state.id = Some(e.role_id);
                state.name = Some(e.name.clone());
                state.permissions = e.permissions.clone();
            }
            RoleEvent::RolePermissionsChanged(e) => {
                state.permissions.extend(e.added.iter().copied());
                state.permissions.retain(|p| !e.removed.contains(p));
            }
            RoleEvent::RoleRetired(_) => state.retired = true,
        }
        state
    }
}

/// The folded grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantState {
    /// Its id.
    pub id: Option<GrantId>,
    /// Holder.
    pub user: Option<UserId>,
    /// Role.
    pub role: Option<RoleId>,
    /// Scope.
    pub scope: Option<Scope>,
    /// Whether revoked (final).
    pub revoked: bool,
}

/// What can be asked of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantCommand {
    /// Give a role to a user.
    Give {
        /// Chosen by the caller.
        id: GrantId,
        /// Holder.
        user: UserId,
        /// Role (must be live: checked by the caller).
        role: RoleId,
        /// Scope.
        scope: Scope,
    },
    /// Take it back.
    Revoke,
}

/// Payload of `RoleGranted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGranted {
    /// The grant.
    pub grant_id: GrantId,
    /// Holder.
    pub user_id: UserId,
    /// Role.
    pub role_id: RoleId,
    /// Scope.
    pub scope: Scope,
}

/// Payload of `RoleRevoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRevoked {
    /// Holder (repeated for the audit trail).
    pub user_id: UserId,
    /// Role (repeated for the audit trail).
    pub role_id: RoleId,
}

events! {
    /// What happens to grants.
    pub enum GrantEvent {
        /// Given.
        RoleGranted(RoleGranted) = 1,
        /// Revoked.
        RoleRevoked(RoleRevoked) = 1,
    }
}

/// The grant aggregate.
#[derive(Debug)]
pub struct Grant;

impl Aggregate for Grant {
    type State = GrantState;
    type Command = GrantCommand;
    type Event = GrantEvent;

    fn decide(state: &GrantState, command: GrantCommand, _ctx: &Context) -> Result<Vec<GrantEvent>, DomainError> {
        match command {
            GrantCommand::Give { id, user, role, scope } => {
                if state.id.is_some() {
                    return Err(DomainError::AlreadyExists { entity: "grant" });
                }
                Ok(vec![GrantEvent::RoleGranted(RoleGranted { grant_id: id, user_id: user, role_id: role, scope })])
            }
            GrantCommand::Revoke => match (state.user, state.role, state.revoked) {
                (Some(user_id), Some(role_id), false) => {
                    Ok(vec![GrantEvent::RoleRevoked(RoleRevoked { user_id, role_id })])
                }
                (Some(_), Some(_), true) => {
                    Err(DomainError::InvalidTransition { entity: "grant", status: "revoked", action: "revoke" })
                }
                _ => Err(DomainError::NotFound { entity: "grant" }),
            },
        }
    }

    fn evolve(mut state: GrantState, event: &GrantEvent) -> GrantState {
        match event {
            GrantEvent::RoleGranted(e) => {
                state.id = Some(e.grant_id);
                state.user = Some(e.user_id);
                state.role = Some(e.role_id);
                state.scope = Some(e.scope);
            }
            GrantEvent::RoleRevoked(_) => state.revoked = true,
        }
        state
    }
}

/// Longest unique value, in characters.
pub const MAX_UNIQUE_CHARS: usize = 64;

/// What kind of value must be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueKind {
    /// A login name.
    Username,
    /// An employee number.
    EmployeeNumber,
    /// A role name.
    RoleName,
}

/// A value that may be held by one owner at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// What kind.
    pub kind: UniqueKind,
    /// The value, normalised so that variants collide (trimmed, NFC, lower case).
    pub value: String,
}

impl UniqueKey {
    /// The key for `value` of `kind`.
    #[must_use]
    pub fn new(kind: UniqueKind, value: &str) -> Self {
        UniqueKey { kind, value: normalise(value).to_lowercase() }
    }

    /// The reservation stream: `unique-<kind>-<BLAKE3 of the value, hex>` (hashed so that any
    /// Unicode value gives a valid, bounded stream name).
    #[must_use]
    pub fn stream(&self) -> String {
        let kind = match self.kind {
            UniqueKind::Username => "username",
            UniqueKind::EmployeeNumber => "employee-number",
            UniqueKind::RoleName => "role-name",
        };
        format!("unique-{kind}-{}", blake3::hash(self.value.as_bytes()).to_hex())
    }
}

/// The folded reservation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservationState {
    /// The current holder.
    pub holder: Option<Uuid>,
}

/// What can be asked of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationCommand {
    /// Claim the value for `owner` (the id of the user or role that will carry it).
    Claim {
        /// The value.
        key: UniqueKey,
        /// Who claims.
        owner: Uuid,
    },
    /// Give the value up.
    Release {
        /// Who gives it up.
        owner: Uuid,
    },
}

/// Payload of `UniqueValueClaimed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueValueClaimed {
    /// What kind.
    pub kind: UniqueKind,
    /// The normalised value.
    pub value: String,
    /// Who holds it.
    pub owner: Uuid,
}

/// Payload of `UniqueValueReleased`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueValueReleased {
    /// Who held it.
    pub owner: Uuid,
}

events! {
    /// What happens to reservations of unique values.
    pub enum ReservationEvent {
        /// Claimed.
        UniqueValueClaimed(UniqueValueClaimed) = 1,
        /// Released.
        UniqueValueReleased(UniqueValueReleased) = 1,
    }
}

/// The reservation aggregate.
#[derive(Debug)]
pub struct Reservation;

impl Aggregate for Reservation {
    type State = ReservationState;
    type Command = ReservationCommand;
    type Event = ReservationEvent;

    fn decide(
        state: &ReservationState,
        command: ReservationCommand,
        _ctx: &Context,
    ) -> Result<Vec<ReservationEvent>, DomainError> {
        match command {
            ReservationCommand::Claim { key, owner } => match state.holder {
                _ if key.value.is_empty() || key.value.chars().count() > MAX_UNIQUE_CHARS => {
                    let mut v = Validator::new();
                    v.fail("value", FieldCode::OutOfRange, format!("must have 1 to {MAX_UNIQUE_CHARS} characters"));
                    v.finish(Vec::new())
                }
                Some(holder) if holder == owner => Ok(Vec::new()),
                Some(_) => Err(DomainError::Validation(vec![crate::error::FieldError {
                    field: match key.kind {
                        UniqueKind::Username => "username".into(),
                        UniqueKind::EmployeeNumber => "employee_no".into(),
                        UniqueKind::RoleName => "name".into(),
                    },
                    code: FieldCode::Duplicate,
                    message: "is taken".into(),
                }])),
                None => Ok(vec![ReservationEvent::UniqueValueClaimed(UniqueValueClaimed {
                    kind: key.kind,
                    value: key.value,
                    owner,
                })]),
            },
            ReservationCommand::Release { owner } => match state.holder {
                Some(holder) if holder == owner => {
                    Ok(vec![ReservationEvent::UniqueValueReleased(UniqueValueReleased { owner })])
                }
                _ => Err(DomainError::NotFound { entity: "reservation" }),
            },
        }
    }

    fn evolve(mut state: ReservationState, event: &ReservationEvent) -> ReservationState {
        match event {
            ReservationEvent::UniqueValueClaimed(e) => state.holder = Some(e.owner),
            ReservationEvent::UniqueValueReleased(_) => state.holder = None,
        }
        state
    }
}
