//! Scope filtering and masking, applied by every resolver through one function each.
//!
//! - [`Caller::require`] is the domain's `authorize` for one record (or a global action);
//! - [`Caller::visible`] turns the caller's scopes for a permission into the directory filter
//!   that every list applies before sorting, paging and counting, so that `totalCount` and
//!   aggregates count only what the caller may see;
//! - [`Reveal`] decides, per record, whether personal data is shown or masked, and collects
//!   the records shown unmasked so that the response is recorded in the caller's access log.
//!
//! Invariant: a record outside the caller's read scope is answered exactly as one that does
//! not exist (NOT_FOUND), so that ids cannot be probed.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use oacis_domain::authz::{authorize, Permission, Principal, Resource, Scope};
use oacis_domain::ids::{CustomerId, DepartmentId, EntryId, UserId};
use oacis_projections::views::access::AccessDirectory;
use oacis_projections::views::directory::Visible;

use crate::graphql::error::{ApiError, ApiResult};

/// The signed-in user behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: UserId,
    /// The session of the request's token.
    pub session: EntryId,
    /// Roles and department, for `authorize`.
    pub principal: Principal,
    /// Whether the password must change before anything else.
    pub must_change_password: bool,
    /// Whether this is the `--anonymous-user` acting for a request without a token (it may
    /// not sign out, change its password or its own profile).
    pub anonymous: bool,
}

impl Caller {
    /// The active user `username` acting outside any session (the command line and start-up
    /// tasks), with their roles as over GraphQL; `None` if there is no such active user.
    #[must_use]
    pub fn acting_as(access: &AccessDirectory, username: &str) -> Option<Caller> {
        let user = access.user_by_name(username)?;
        let principal = access.principal(user.id)?;
        Some(Caller {
            user: user.id,
            session: EntryId(uuid::Uuid::nil()),
            principal,
            must_change_password: false,
            anonymous: false,
        })
    }

    /// Whether any held role has `permission`, whatever its scope.
    #[must_use]
    pub fn holds(&self, permission: Permission) -> bool {
        self.principal.active && self.principal.roles.iter().any(|r| r.permissions.contains(&permission))
    }

    /// Whether the caller may do what `permission` covers to `resource`.
    #[must_use]
    pub fn may(&self, permission: Permission, resource: &Resource) -> bool {
        authorize(&self.principal, permission, resource).allowed
    }

    /// FORBIDDEN unless the caller may act on `resource`.
    pub fn require(&self, permission: Permission, resource: &Resource) -> ApiResult<()> {
        if self.may(permission, resource) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("{permission} is not granted over this record")))
        }
    }

    /// FORBIDDEN unless some role holds `permission` (for actions on no particular record,
    /// and before listing).
    pub fn require_any(&self, permission: Permission) -> ApiResult<()> {
        if self.holds(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("{permission} is not granted")))
        }
    }

    /// The rows a list may show for `permission`: `None` for every row (a role with scope
    /// `all`), otherwise the union of the caller's scopes. FORBIDDEN if no role has it.
    pub fn visible(&self, permission: Permission, access: &AccessDirectory) -> ApiResult<Option<Visible>> {
        self.require_any(permission)?;
        let mut visible = Visible::default();
        for role in self.principal.roles.iter().filter(|r| r.permissions.contains(&permission)) {
            match (role.scope, self.principal.department) {
                (Scope::All, _) => return Ok(None),
                (Scope::Own, _) => visible.owner = Some(self.user),
                (Scope::Department, Some(d)) => {
                    visible.departments.insert(d);
                }
                (Scope::DepartmentTree, Some(d)) => visible.departments.extend(access.subtree(d)),
                (Scope::Department | Scope::DepartmentTree, None) => {}
            }
        }
        Ok(Some(visible))
    }
}

/// Whether a user in `status` may still be given work (active, or locked until an
/// administrator unlocks them; not deactivated).
#[must_use]
pub fn may_act(status: oacis_domain::user::UserStatus) -> bool {
    matches!(status, oacis_domain::user::UserStatus::Active | oacis_domain::user::UserStatus::Locked)
}

/// The resource an owned, departmental record is, for `authorize`.
#[must_use]
pub fn resource(access: &AccessDirectory, owner: Option<UserId>, department: Option<DepartmentId>) -> Resource {
    Resource { owner, departments: department.map(|d| access.department_path(d)).unwrap_or_default() }
}

/// Per request: whether personal data may be shown, and which customers were shown unmasked.
#[derive(Debug, Clone, Default)]
pub struct Reveal {
    shown: Arc<Mutex<BTreeSet<CustomerId>>>,
}

impl Reveal {
    /// `value` unmasked if the caller may read `customer`'s personal data (and the read is
    /// noted), masked with `mask` otherwise.
    pub fn customer_field(
        &self,
        caller: &Caller,
        customer: CustomerId,
        resource: &Resource,
        value: &str,
        mask: fn(&str) -> String,
    ) -> String {
        if caller.may(Permission::CustomerReadPersonal, resource) {
            if let Ok(mut shown) = self.shown.lock() {
                shown.insert(customer);
            }
            value.to_owned()
        } else {
            mask(value)
        }
    }

    /// Notes that `customer`'s personal data was shown unmasked (by a resolver that checked
    /// the permission itself).
    pub fn note(&self, customer: CustomerId) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.insert(customer);
        }
    }

    /// The customers shown unmasked so far.
    #[must_use]
    pub fn shown(&self) -> Vec<CustomerId> {
        self.shown.lock().map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
}

/// `+8613812345678` -> `+86138****5678`: the last four digits and what precedes the middle;
/// an extension (`;ext=8001`, RFC 3966) is masked whole.
#[must_use]
pub fn mask_phone(phone: &str) -> String {
    if let Some((number, _extension)) = phone.split_once(';') {
        return format!("{};ext=****", mask_phone(number));
    }
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..chars.len() - 8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// `zhang@example.com` -> `z***@example.com`.
#[must_use]
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `11010519491231002X` -> `110105********002X`: the area code and the last four characters.
#[must_use]
pub fn mask_id_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// Any other personal text (addresses, handles, dates): fully masked.
#[must_use]
pub fn mask_all(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        "****".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_identifies_nothing() {
        assert_eq!(mask_phone("+8613812345678"), "+86138****5678");
        assert_eq!(mask_phone("+6837012"), "********");
        assert_eq!(mask_phone("+8613912345678;ext=8001"), "+86139****5678;ext=****");
        assert_eq!(mask_email("zhang.wei@example.com"), "z***@example.com");
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        assert_eq!(mask_all("北京市朝阳区"), "****");
    }
}
