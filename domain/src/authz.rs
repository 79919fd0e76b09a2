//! Authorization: one pure function of (principal, permission, resource) that every API path
//! calls, over a fixed catalogue of permissions and four scopes. Deny is the default; every
//! decision says why.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{DepartmentId, RoleId, UserId};

/// Declares the permission catalogue once: variant, wire name, and description.
macro_rules! permissions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// Something a role may allow.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Permission {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)+
        }

        impl Permission {
            /// Every permission.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            /// The wire name, e.g. `customer.read`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }

            /// The permission with wire name `name`.
            #[must_use]
            pub fn parse(name: &str) -> Option<Permission> {
                match name { $($name => Some(Permission::$variant),)+ _ => None }
            }
        }
    };
}

permissions! {
    /// See customers (personal data masked).
    CustomerRead = "customer.read",
    /// Register and change customers, log interactions and purchases.
    CustomerWrite = "customer.write",
    /// See customers' personal data unmasked (each such read is recorded).
    CustomerReadPersonal = "customer.read_personal",
    /// Export customer lists.
    CustomerExport = "customer.export",
    /// Merge duplicate customers.
    CustomerMerge = "customer.merge",
    /// Undo a merge of customers (administrators only by default).
    CustomerUnmerge = "customer.unmerge",
    /// Erase a customer's personal data for good (administrators only by default).
    CustomerErase = "customer.erase",
    /// Transfer customers to another owner.
    CustomerTransfer = "customer.transfer",
    /// Undo a whole import of customers (administrators only by default).
    CustomerImportUndo = "customer.import_undo",
    /// See service cases.
    CaseRead = "case.read",
    /// Open and work service cases.
    CaseWrite = "case.write",
    /// Assign service cases.
    CaseAssign = "case.assign",
    /// See tasks.
    TaskRead = "task.read",
    /// Create and work tasks.
    TaskWrite = "task.write",
    /// Assign tasks to others.
    TaskAssign = "task.assign",
    /// Manage users and departments.
    UserAdmin = "user.admin",
    /// Manage roles and grants.
    RoleAdmin = "role.admin",
    /// Read audit trails.
    AuditRead = "audit.read",
    /// Read analytics.
    AnalyticsRead = "analytics.read",
    /// Run backups, restores and verification.
    BackupRun = "backup.run",
    /// Publish approval definitions and working calendars.
    ApprovalDefine = "approval.define",
    /// See every approval in scope (by the submitter's department), and the approval figures.
    ApprovalAudit = "approval.audit",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Records the principal owns.
    Own,
    /// Records of the principal's department.
    Department,
    /// Records of the principal's department and every department below it.
    DepartmentTree,
    /// Every record.
    All,
}

/// One role held by the principal, with its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRole {
    /// The role.
    pub role: RoleId,
    /// Its name, for explanations.
    pub name: String,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
    /// How far.
    pub scope: Scope,
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// The user's department.
    pub department: Option<DepartmentId>,
    /// Whether the account may act at all (active, not locked).
    pub active: bool,
    /// Roles held.
    pub roles: Vec<HeldRole>,
}

/// What is acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// Its owner, if owned.
    pub owner: Option<UserId>,
    /// Its department and that department's ancestors, nearest first (empty if none).
    pub departments: Vec<DepartmentId>,
}

impl Resource {
    /// A resource that belongs to nobody (system-wide actions such as backups): only `All`
    /// reaches it.
    #[must_use]
    pub fn global() -> Self {
        Resource::default()
    }
}

/// Why a decision went the way it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Allowed by this role at this scope.
    Granted {
        /// The role.
        role: String,
        /// Its scope.
        scope: Scope,
    },
    /// The account is inactive or locked.
    Inactive,
    /// No held role has the permission.
    NoPermission,
    /// A role has the permission, but not over this record.
    OutOfScope,
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether to allow.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
}

fn reaches(principal: &Principal, scope: Scope, resource: &Resource) -> bool {
    match scope {
        Scope::All => true,
        Scope::Own => resource.owner == Some(principal.user),
        Scope::Department => {
            principal.department.is_some() && resource.departments.first() == principal.department.as_ref()
        }
        Scope::DepartmentTree => principal.department.is_some_and(|d| resource.departments.contains(&d)),
    }
}

/// Decides whether `principal` may do what `permission` covers to `resource`.
#[must_use]
pub fn authorize(principal: &Principal, permission: Permission, resource: &Resource) -> Decision {
    if !principal.active {
        return Decision { allowed: false, reason: Reason::Inactive };
    }
    let mut holds = false;
    for held in principal.roles.iter().filter(|r| r.permissions.contains(&permission)) {
        holds = true;
        if reaches(principal, held.scope, resource) {
            return Decision { allowed: true, reason: Reason::Granted { role: held.name.clone(), scope: held.scope } };
        }
    }
    let reason = if holds { Reason::OutOfScope } else { Reason::NoPermission };
    Decision { allowed: false, reason }
}

/// A role shipped with every installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRole {
    /// Its name.
    pub name: &'static str,
    /// What it allows.
    pub permissions: BTreeSet<Permission>,
}

/// The default roles: administrator, manager, sales, service, analyst, auditor.
#[must_use]
pub fn default_roles() -> Vec<DefaultRole> {
    use Permission as P;
    let role =
        |name, permissions: &[Permission]| DefaultRole { name, permissions: permissions.iter().copied().collect() };
    vec![
        role("administrator", Permission::ALL),
        role(
            "manager",
            &[
                P::CustomerRead,
                P::CustomerWrite,
                P::CustomerReadPersonal,
                P::CustomerExport,
                P::CustomerMerge,
                P::CustomerTransfer,
                P::CaseRead,
                P::CaseWrite,
                P::CaseAssign,
                P::TaskRead,
                P::TaskWrite,
                P::TaskAssign,
                P::AnalyticsRead,
                P::ApprovalAudit,
            ],
        ),
        role(
            "sales",
            &[P::CustomerRead, P::CustomerWrite, P::CustomerReadPersonal, P::CaseRead, P::TaskRead, P::TaskWrite],
        ),
        role("service", &[P::CustomerRead, P::CaseRead, P::CaseWrite, P::TaskRead, P::TaskWrite]),
        role("analyst", &[P::CustomerRead, P::CaseRead, P::TaskRead, P::AnalyticsRead]),
        role("auditor", &[P::CustomerRead, P::CaseRead, P::TaskRead, P::AuditRead, P::ApprovalAudit]),
    ]
}
