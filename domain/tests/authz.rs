//! Authorization table tests: every default role against every permission, and every scope
//! against owned, same-department, sub-department, other-department and global resources.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{dept, id, user};
use oacis_domain::authz::*;
use oacis_domain::ids::RoleId;

fn principal(role: &DefaultRole, scope: Scope) -> Principal {
    Principal {
        user: user(1),
        department: Some(dept(10)),
        active: true,
        roles: vec![HeldRole {
            role: RoleId(id(1)),
            name: role.name.into(),
            permissions: role.permissions.clone(),
            scope,
        }],
    }
}

fn role(name: &str) -> DefaultRole {
    default_roles().into_iter().find(|r| r.name == name).expect("default role")
}

#[test]
fn every_default_role_allows_exactly_its_permissions() {
    use Permission as P;
    let table: &[(&str, &[Permission])] = &[
        ("administrator", Permission::ALL),
        (
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
        (
            "sales",
            &[P::CustomerRead, P::CustomerWrite, P::CustomerReadPersonal, P::CaseRead, P::TaskRead, P::TaskWrite],
        ),
        ("service", &[P::CustomerRead, P::CaseRead, P::CaseWrite, P::TaskRead, P::TaskWrite]),
        ("analyst", &[P::CustomerRead, P::CaseRead, P::TaskRead, P::AnalyticsRead]),
        ("auditor", &[P::CustomerRead, P::CaseRead, P::TaskRead, P::AuditRead, P::ApprovalAudit]),
    ];
    assert_eq!(default_roles().len(), table.len());
    let anywhere = Resource::global();
    for (name, allowed) in table {
        let p = principal(&role(name), Scope::All);
        for permission in Permission::ALL {
            let decision = authorize(&p, *permission, &anywhere);
            assert_eq!(decision.allowed, allowed.contains(permission), "{name} / {permission}");
            if !decision.allowed {
                assert_eq!(decision.reason, Reason::NoPermission);
            }
        }
    }
}

#[test]
fn scopes_reach_exactly_their_records() {
    let own = Resource { owner: Some(user(1)), departments: vec![dept(99)] };
    let same_department = Resource { owner: Some(user(2)), departments: vec![dept(10), dept(1)] };
    let sub_department = Resource { owner: Some(user(3)), departments: vec![dept(11), dept(10), dept(1)] };
    let other_department = Resource { owner: Some(user(4)), departments: vec![dept(20), dept(1)] };
    let global = Resource::global();
    let resources = [&own, &same_department, &sub_department, &other_department, &global];
    let table = [
        (Scope::Own, [true, false, false, false, false]),
        (Scope::Department, [false, true, false, false, false]),
        (Scope::DepartmentTree, [false, true, true, false, false]),
        (Scope::All, [true, true, true, true, true]),
    ];
    for (scope, expected) in table {
        let p = principal(&role("sales"), scope);
        for (resource, want) in resources.iter().zip(expected) {
            let decision = authorize(&p, Permission::CustomerRead, resource);
            assert_eq!(decision.allowed, want, "{scope:?} on {resource:?}");
            let reason = if want { Reason::Granted { role: "sales".into(), scope } } else { Reason::OutOfScope };
            assert_eq!(decision.reason, reason);
        }
    }
}

#[test]
fn deny_is_the_default_and_inactive_principals_are_refused() {
    let nobody = Principal { user: user(1), department: None, active: true, roles: vec![] };
    assert_eq!(authorize(&nobody, Permission::CustomerRead, &Resource::global()).reason, Reason::NoPermission);
    let mut locked = principal(&role("administrator"), Scope::All);
    locked.active = false;
    assert_eq!(
        authorize(&locked, Permission::CustomerRead, &Resource::global()),
        Decision { allowed: false, reason: Reason::Inactive }
    );
    // A principal without a department reaches nothing through department scopes.
    let mut homeless = principal(&role("sales"), Scope::DepartmentTree);
    homeless.department = None;
    assert!(!authorize(&homeless, Permission::CustomerRead, &Resource { owner: None, departments: vec![] }).allowed);
}

#[test]
fn the_widest_reaching_role_decides() {
    let mut p = principal(&role("sales"), Scope::Own);
    p.roles.push(HeldRole {
        role: RoleId(id(2)),
        name: "manager".into(),
        permissions: role("manager").permissions,
        scope: Scope::DepartmentTree,
    });
    let sub = Resource { owner: Some(user(5)), departments: vec![dept(11), dept(10)] };
    assert_eq!(
        authorize(&p, Permission::CustomerRead, &sub).reason,
        Reason::Granted { role: "manager".into(), scope: Scope::DepartmentTree }
    );
}

#[test]
fn permission_names_round_trip() {
    for permission in Permission::ALL {
        assert_eq!(Permission::parse(permission.as_str()), Some(*permission));
        let json = serde_json::to_string(permission).unwrap();
        assert_eq!(json, format!("\"{}\"", permission.as_str()));
    }
    assert_eq!(Permission::parse("customer.delete"), None);
}
