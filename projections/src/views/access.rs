//! The directory of users, departments, roles and grants: what the API needs to authorize
//! every request (the principal with its roles, a resource's department path).

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::access::{GrantEvent, RoleEvent};
use oacis_domain::authz::{HeldRole, Permission, Principal, Scope};
use oacis_domain::department::DepartmentEvent;
use oacis_domain::ids::{DepartmentId, EntryId, GrantId, RoleId, Timestamp, UserId};
use oacis_domain::user::{ProfileField, UserEvent, UserStatus, Visibility};

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};

/// A user as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRow {
    /// Its id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Employee number (one may sign in with it too).
    pub employee_no: String,
    /// Display name.
    pub display_name: String,
    /// Department.
    pub department: DepartmentId,
    /// Account state.
    pub status: UserStatus,
    /// Whether the password must change before anything else.
    pub must_change_password: bool,
    /// Job title.
    pub position: Option<String>,
    /// Phone (E.164), shown as the privacy setting allows.
    pub phone: Option<String>,
    /// E-mail, shown as the privacy setting allows.
    pub email: Option<String>,
    /// Who may see each profile field (fields not listed: everyone).
    pub privacy: BTreeMap<ProfileField, Visibility>,
    /// Open sessions.
    pub sessions: BTreeMap<EntryId, SessionRow>,
    /// Whether the user's personal data was erased (phone and e-mail stay empty).
    pub erased: bool,
}

/// An open session: what a bearer token is checked against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRow {
    /// BLAKE3 of the bearer secret, hex (`None` for sessions opened without a token).
    pub token_hash: Option<String>,
    /// When it was opened (for the absolute expiry).
    pub started_at: Timestamp,
}

/// A department in the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DepartmentRow {
    /// Name.
    pub name: String,
    /// Parent.
    pub parent: Option<DepartmentId>,
    /// Whether open.
    pub open: bool,
    /// Its leader (负责人).
    pub leader: Option<UserId>,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleRow {
    /// Name.
    pub name: String,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
    /// Whether retired.
    pub retired: bool,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantRow {
    /// Holder.
    pub user: UserId,
    /// Role.
    pub role: RoleId,
    /// Scope.
    pub scope: Scope,
    /// Whether revoked.
    pub revoked: bool,
}

/// The access directory view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AccessDirectory {
    users: BTreeMap<UserId, UserRow>,
    departments: BTreeMap<DepartmentId, DepartmentRow>,
    roles: BTreeMap<RoleId, RoleRow>,
    grants: BTreeMap<GrantId, GrantRow>,
    /// Derived lookups for authenticating every request (not dumped): the user of each open
    /// session, and each user's grants.
    session_users: BTreeMap<EntryId, UserId>,
    grants_of: BTreeMap<UserId, BTreeSet<GrantId>>,
}

/// A change to who holds what, as a command would make it ([`AccessDirectory::administration_survives`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// A role retired.
    RetireRole(RoleId),
    /// A role's permissions replaced.
    RolePermissions(RoleId, BTreeSet<Permission>),
    /// A grant revoked.
    RevokeGrant(GrantId),
    /// A user locked, deactivated or made active again.
    UserStatus(UserId, UserStatus),
}

impl AccessDirectory {
    /// Whether some active user would still hold both `role.admin` and `user.admin` over
    /// everything (through grants at scope `all`) once `change` is made: one who can give
    /// back any other right, and unlock or reactivate anyone. With none left, no one could
    /// administer again (nothing in the API gives a right without them).
    #[must_use]
    pub fn administration_survives(&self, change: &AccessChange) -> bool {
        self.users
            .iter()
            .filter(|(id, row)| match change {
                AccessChange::UserStatus(user, status) if *user == **id => *status == UserStatus::Active,
                _ => row.status == UserStatus::Active,
            })
            .any(|(id, _)| {
                let mut held = BTreeSet::new();
                let grants = self.grants_of.get(id).into_iter().flatten();
                for (grant_id, grant) in grants.filter_map(|g| self.grants.get(g).map(|row| (g, row))) {
                    if grant.revoked || grant.scope != Scope::All || *change == AccessChange::RevokeGrant(*grant_id) {
                        continue;
                    }
                    let Some(role) = self.roles.get(&grant.role).filter(|r| !r.retired) else { continue };
                    match change {
                        AccessChange::RetireRole(retired) if *retired == grant.role => {}
                        AccessChange::RolePermissions(changed, permissions) if *changed == grant.role => {
                            held.extend(permissions.iter().copied());
                        }
                        _ => held.extend(role.permissions.iter().copied()),
                    }
                }
                held.contains(&Permission::RoleAdmin) && held.contains(&Permission::UserAdmin)
            })
    }

    /// The user whose open session `session` is.
    #[must_use]
    pub fn session_user(&self, session: EntryId) -> Option<&UserRow> {
        self.session_users.get(&session).and_then(|user| self.users.get(user))
    }

    /// A user.
    #[must_use]
    pub fn user(&self, id: UserId) -> Option<&UserRow> {
        self.users.get(&id)
    }

    /// A department.
    #[must_use]
    pub fn department(&self, id: DepartmentId) -> Option<&DepartmentRow> {
        self.departments.get(&id)
    }

    /// `department` and its ancestors, nearest first (what [`oacis_domain::authz::Resource`]
    /// needs). Stops at a repeat, so a damaged tree cannot loop.
    #[must_use]
    pub fn department_path(&self, department: DepartmentId) -> Vec<DepartmentId> {
        let mut path = vec![department];
        let mut at = self.departments.get(&department).and_then(|d| d.parent);
        while let Some(d) = at {
            if path.contains(&d) {
                break;
            }
            path.push(d);
            at = self.departments.get(&d).and_then(|row| row.parent);
        }
        path
    }

    /// The principal for `user`: active unless locked or deactivated, with every role of an
    /// unrevoked grant whose role is not retired.
    #[must_use]
    pub fn principal(&self, user: UserId) -> Option<Principal> {
        let row = self.users.get(&user)?;
        let roles = self
            .grants_of
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.grants.get(id))
            .filter(|g| g.user == user && !g.revoked)
            .filter_map(|g| {
                let role = self.roles.get(&g.role).filter(|r| !r.retired)?;
                Some(HeldRole {
                    role: g.role,
                    name: role.name.clone(),
                    permissions: role.permissions.clone(),
                    scope: g.scope,
                })
            })
            .collect();
        Some(Principal { user, department: Some(row.department), active: row.status == UserStatus::Active, roles })
    }

    /// Users by login name (for authentication).
    #[must_use]
    pub fn user_by_name(&self, username: &str) -> Option<&UserRow> {
        self.users.values().find(|u| u.username == username)
    }

    /// The user a sign-in name names: a username (case-insensitive) or an employee number.
    #[must_use]
    pub fn user_by_sign_in_name(&self, name: &str) -> Option<&UserRow> {
        let lower = name.trim().to_lowercase();
        let trimmed = name.trim();
        self.users
            .values()
            .find(|u| u.username == lower)
            .or_else(|| self.users.values().find(|u| u.employee_no == trimmed))
    }

    /// Every open session, with its user.
    #[must_use]
    pub fn sessions(&self) -> Vec<(UserId, EntryId)> {
        self.users.values().flat_map(|u| u.sessions.keys().map(move |s| (u.id, *s))).collect()
    }

    /// Every user, by id.
    pub fn users(&self) -> impl Iterator<Item = &UserRow> {
        self.users.values()
    }

    /// Every department, by id.
    pub fn departments(&self) -> impl Iterator<Item = (&DepartmentId, &DepartmentRow)> {
        self.departments.iter()
    }

    /// Every role, by id.
    pub fn roles(&self) -> impl Iterator<Item = (&RoleId, &RoleRow)> {
        self.roles.iter()
    }

    /// A role.
    #[must_use]
    pub fn role(&self, id: RoleId) -> Option<&RoleRow> {
        self.roles.get(&id)
    }

    /// Every grant, by id.
    pub fn grants(&self) -> impl Iterator<Item = (&GrantId, &GrantRow)> {
        self.grants.iter()
    }

    /// A grant.
    #[must_use]
    pub fn grant(&self, id: GrantId) -> Option<&GrantRow> {
        self.grants.get(&id)
    }

    /// `department` and every department below it.
    #[must_use]
    pub fn subtree(&self, department: DepartmentId) -> BTreeSet<DepartmentId> {
        let mut found = BTreeSet::from([department]);
        // Parents point up, so walk until no new child appears (the tree is small).
        loop {
            let before = found.len();
            for (id, row) in &self.departments {
                if row.parent.is_some_and(|p| found.contains(&p)) {
                    found.insert(*id);
                }
            }
            if found.len() == before {
                return found;
            }
        }
    }
}

impl View for AccessDirectory {
    fn name(&self) -> &'static str {
        "access_directory"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        match &record.event {
            AnyEvent::User(id, event) => {
                if let UserEvent::UserCreated(e) = event {
                    let row = UserRow {
                        id: *id,
                        username: e.username.clone(),
                        employee_no: e.employee_no.clone(),
                        must_change_password: false,
                        position: e.profile.position.clone(),
                        phone: e.profile.personal.phone.clone(),
                        email: e.profile.personal.email.clone(),
                        privacy: BTreeMap::new(),
                        display_name: e.profile.display_name.clone(),
                        department: e.profile.department,
                        status: UserStatus::Active,
                        sessions: BTreeMap::new(),
                        erased: false,
                    };
                    self.users.insert(*id, row);
                    return Ok(());
                }
                let row = self.users.get_mut(id).ok_or_else(|| format!("user {id} was never created"))?;
                match event {
                    UserEvent::UserProfileUpdated(e) => {
                        row.display_name = e.profile.display_name.clone();
                        row.department = e.profile.department;
                        row.position.clone_from(&e.profile.position);
                        row.phone.clone_from(&e.profile.personal.phone);
                        row.email.clone_from(&e.profile.personal.email);
                    }
                    UserEvent::UserPrivacyChanged(e) => {
                        row.privacy.insert(e.field, e.visibility);
                    }
                    UserEvent::UserPersonalDataErased(_) => {
                        row.phone = None;
                        row.email = None;
                        row.erased = true;
                    }
                    UserEvent::UserLocked(_) => row.status = UserStatus::Locked,
                    UserEvent::UserUnlocked(_) | UserEvent::UserReactivated(_) => row.status = UserStatus::Active,
                    UserEvent::UserDeactivated(_) => row.status = UserStatus::Deactivated,
                    UserEvent::UserLoginSucceeded(e) => {
                        let session = SessionRow { token_hash: e.token_hash.clone(), started_at: e.at };
                        row.sessions.insert(e.session_id, session);
                        self.session_users.insert(e.session_id, *id);
                    }
                    UserEvent::UserPasswordSet(_) => row.must_change_password = false,
                    UserEvent::UserPasswordChangeRequired(_) => row.must_change_password = true,
                    UserEvent::UserSessionEnded(e) => {
                        row.sessions.remove(&e.session_id);
                        self.session_users.remove(&e.session_id);
                    }
                    _ => {}
                }
            }
            AnyEvent::Department(id, event) => match event {
                DepartmentEvent::DepartmentCreated(e) => {
                    self.departments.insert(
                        *id,
                        DepartmentRow { name: e.name.clone(), parent: e.parent, open: true, leader: None },
                    );
                }
                other => {
                    let row =
                        self.departments.get_mut(id).ok_or_else(|| format!("department {id} was never created"))?;
                    match other {
                        DepartmentEvent::DepartmentRenamed(e) => row.name = e.name.clone(),
                        DepartmentEvent::DepartmentMoved(e) => row.parent = e.to,
                        DepartmentEvent::DepartmentLeaderSet(e) => row.leader = e.to,
                        DepartmentEvent::DepartmentClosed(_) => row.open = false,
                        DepartmentEvent::DepartmentCreated(_) => {}
                    }
                }
            },
            AnyEvent::Role(id, event) => match event {
                RoleEvent::RoleDefined(e) => {
                    self.roles.insert(
                        *id,
                        RoleRow { name: e.name.clone(), permissions: e.permissions.clone(), retired: false },
                    );
                }
                other => {
                    let row = self.roles.get_mut(id).ok_or_else(|| format!("role {id} was never defined"))?;
                    match other {
                        RoleEvent::RolePermissionsChanged(e) => {
                            row.permissions.extend(e.added.iter().copied());
                            row.permissions.retain(|p| !e.removed.contains(p));
                        }
                        RoleEvent::RoleRetired(_) => row.retired = true,
                        RoleEvent::RoleDefined(_) => {}
                    }
                }
            },
            AnyEvent::Grant(id, event) => match event {
                GrantEvent::RoleGranted(e) => {
                    self.grants
                        .insert(*id, GrantRow { user: e.user_id, role: e.role_id, scope: e.scope, revoked: false });
                    self.grants_of.entry(e.user_id).or_default().insert(*id);
                }
                GrantEvent::RoleRevoked(_) => {
                    self.grants.get_mut(id).ok_or_else(|| format!("grant {id} was never given"))?.revoked = true;
                }
            },
            _ => {}
        }
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_lines(out, "users", self.users.values());
        dump_lines(out, "departments", &self.departments);
        dump_lines(out, "roles", &self.roles);
        dump_lines(out, "grants", &self.grants);
    }
}
