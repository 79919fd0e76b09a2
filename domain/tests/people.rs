//! Given/when/then for users, departments, roles, grants and unique-value reservations.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use std::collections::BTreeSet;

use common::{ctx, dept, id, later, user};
use oacis_domain::access::*;
use oacis_domain::authz::{Permission, Scope};
use oacis_domain::department::*;
use oacis_domain::ids::{EntryId, GrantId, RoleId};
use oacis_domain::user::*;
use oacis_domain::{DomainError, FieldCode, Scenario};

fn profile() -> UserProfile {
    UserProfile {
        display_name: "王芳".into(),
        department: dept(1),
        position: Some("销售经理".into()),
        personal: UserPersonal { phone: Some("+86 139 0000 0001".into()), email: Some("wang.fang@Example.com".into()) },
    }
}

fn created() -> Scenario<User> {
    let mut s = Scenario::<User>::given(&[]);
    s.when(
        UserCommand::Create {
            id: user(1),
            username: " Wang.Fang ".into(),
            employee_no: "E-1001".into(),
            profile: profile(),
        },
        &ctx(),
    )
    .unwrap();
    s
}

const GOOD: PasswordFacts = PasswordFacts { meets_policy: true, recently_used: false };
const ARGON: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

#[test]
fn users_are_created_with_normalised_names_and_checked_fields() {
    let s = created();
    assert_eq!(s.state().username.as_deref(), Some("wang.fang"));
    let bad = Scenario::<User>::given(&[]).when(
        UserCommand::Create {
            id: user(2),
            username: "王".into(),
            employee_no: "E 1".into(),
            profile: UserProfile {
                display_name: " ".into(),
                personal: UserPersonal { phone: Some("123".into()), email: None },
                ..profile()
            },
        },
        &ctx(),
    );
    match bad {
        Err(DomainError::Validation(errors)) => {
            let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["username", "employee_no", "profile.display_name", "profile.personal.phone"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        created().when(
            UserCommand::Create { id: user(1), username: "x12".into(), employee_no: "1".into(), profile: profile() },
            &ctx()
        ),
        Err(DomainError::AlreadyExists { entity: "user" })
    );
}

#[test]
fn passwords_arrive_hashed_and_pass_the_policy() {
    let mut s = created();
    assert!(matches!(
        s.when(UserCommand::SetPassword { credential: "hunter2".into(), facts: GOOD }, &ctx()),
        Err(DomainError::Validation(_))
    ));
    let weak = s.when(
        UserCommand::SetPassword {
            credential: ARGON.into(),
            facts: PasswordFacts { meets_policy: false, recently_used: true },
        },
        &ctx(),
    );
    match weak {
        Err(DomainError::Validation(errors)) => assert_eq!(errors.len(), 2),
        other => panic!("{other:?}"),
    }
    s.when(UserCommand::RequirePasswordChange, &ctx()).unwrap();
    assert!(s.state().must_change_password);
    s.when(UserCommand::SetPassword { credential: ARGON.into(), facts: GOOD }, &ctx()).unwrap();
    assert!(s.state().has_credential && !s.state().must_change_password);
}

#[test]
fn failed_logins_lock_the_account_at_the_threshold_and_unlock_resets() {
    let mut s = created();
    assert!(
        matches!(
            s.when(
                UserCommand::RecordLoginSuccess { session: EntryId(id(70)), client: None, token_hash: None },
                &ctx()
            ),
            Err(DomainError::Rule(_))
        ),
        "no password yet"
    );
    s.when(UserCommand::SetPassword { credential: ARGON.into(), facts: GOOD }, &ctx()).unwrap();
    let fail = || UserCommand::RecordLoginFailure {
        reason: LoginFailure::BadPassword,
        client: Some("203.0.113.9".into()),
        lockout_threshold: 5,
    };
    for n in 1..5 {
        let events = s.when(fail(), &later(n)).unwrap();
        assert_eq!(events.len(), 1);
    }
    let events = s.when(fail(), &later(5)).unwrap();
    assert!(matches!(&events[1], UserEvent::UserLocked(UserLocked { reason: LockReason::FailedLogins(5) })));
    assert_eq!(s.state().status, UserStatus::Locked);
    assert!(matches!(
        s.when(UserCommand::RecordLoginSuccess { session: EntryId(id(70)), client: None, token_hash: None }, &later(6)),
        Err(DomainError::InvalidTransition { .. })
    ));
    // Attempts on a locked account are still recorded, without locking again.
    let events = s
        .when(
            UserCommand::RecordLoginFailure { reason: LoginFailure::Locked, client: None, lockout_threshold: 5 },
            &later(7),
        )
        .unwrap();
    assert_eq!(events.len(), 1);
    s.when(UserCommand::Unlock, &later(8)).unwrap();
    assert_eq!((s.state().status, s.state().consecutive_failures), (UserStatus::Active, 0));
    s.when(UserCommand::RecordLoginSuccess { session: EntryId(id(71)), client: None, token_hash: None }, &later(9))
        .unwrap();
    assert!(s.state().sessions.contains(&EntryId(id(71))));
}

#[test]
fn lock_deactivate_reactivate_sessions_and_privacy() {
    let mut s = created();
    s.when(UserCommand::SetPassword { credential: ARGON.into(), facts: GOOD }, &ctx()).unwrap();
    s.when(UserCommand::RecordLoginSuccess { session: EntryId(id(80)), client: None, token_hash: None }, &ctx())
        .unwrap();
    s.when(UserCommand::SetPrivacy { field: ProfileField::Phone, visibility: Visibility::OnlyMe }, &ctx()).unwrap();
    assert_eq!(
        s.when(UserCommand::SetPrivacy { field: ProfileField::Phone, visibility: Visibility::OnlyMe }, &ctx()),
        Ok(vec![])
    );
    assert_eq!(
        s.when(UserCommand::EndSession { session: EntryId(id(99)) }, &ctx()),
        Err(DomainError::NotFound { entity: "session" })
    );
    assert!(matches!(s.when(UserCommand::Lock { reason: "".into() }, &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(s.when(UserCommand::Unlock, &ctx()), Err(DomainError::InvalidTransition { .. })));
    // Deactivation ends every open session first.
    let events = s.when(UserCommand::Deactivate, &ctx()).unwrap();
    assert!(matches!(&events[0], UserEvent::UserSessionEnded(e) if e.session_id == EntryId(id(80))));
    assert!(matches!(events.last(), Some(UserEvent::UserDeactivated(_))));
    assert!(s.state().sessions.is_empty());
    assert!(matches!(
        s.when(UserCommand::Lock { reason: "x".into() }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    s.when(UserCommand::Reactivate, &ctx()).unwrap();
    assert!(matches!(s.when(UserCommand::Reactivate, &ctx()), Err(DomainError::InvalidTransition { .. })));
    s.when(UserCommand::UpdateProfile { profile: profile() }, &ctx()).unwrap();
    let mut none = Scenario::<User>::given(&[]);
    assert_eq!(none.when(UserCommand::Unlock, &ctx()), Err(DomainError::NotFound { entity: "user" }));
}

#[test]
fn departments_form_a_tree_without_cycles() {
    let mut d = Scenario::<Department>::given(&[]);
    assert!(matches!(
        d.when(
            DepartmentCommand::Create {
                id: dept(2),
                name: "华东销售部".into(),
                parent: Some(dept(1)),
                parent_open: false
            },
            &ctx()
        ),
        Err(DomainError::Rule(_))
    ));
    d.when(
        DepartmentCommand::Create {
            id: dept(2), name: "华东销售部".into(), parent: Some(dept(1)), parent_open: true
        },
        &ctx(),
    )
    .unwrap();
    assert!(matches!(
        Scenario::<Department>::given(&[]).when(
            DepartmentCommand::Create { id: dept(3), name: "x".into(), parent: Some(dept(3)), parent_open: true },
            &ctx()
        ),
        Err(DomainError::Rule(_))
    ));
    // Moving under a descendant (dept 5 sits below dept 2) is a cycle.
    assert!(matches!(
        d.when(
            DepartmentCommand::Move {
                parent: Some(dept(5)),
                parent_ancestors: vec![dept(4), dept(2), dept(1)],
                parent_open: true
            },
            &ctx()
        ),
        Err(DomainError::Rule(_))
    ));
    assert!(matches!(
        d.when(DepartmentCommand::Move { parent: Some(dept(2)), parent_ancestors: vec![], parent_open: true }, &ctx()),
        Err(DomainError::Rule(_))
    ));
    assert!(matches!(
        d.when(
            DepartmentCommand::Move { parent: Some(dept(9)), parent_ancestors: vec![dept(1)], parent_open: false },
            &ctx()
        ),
        Err(DomainError::Rule(_))
    ));
    d.when(
        DepartmentCommand::Move { parent: Some(dept(9)), parent_ancestors: vec![dept(1)], parent_open: true },
        &ctx(),
    )
    .unwrap();
    assert_eq!(d.state().parent, Some(dept(9)));
    assert_eq!(
        d.when(
            DepartmentCommand::Move { parent: Some(dept(9)), parent_ancestors: vec![dept(1)], parent_open: true },
            &ctx()
        ),
        Ok(vec![])
    );
    d.when(DepartmentCommand::Rename { name: "华东大区".into() }, &ctx()).unwrap();
    assert!(matches!(d.when(DepartmentCommand::Rename { name: "".into() }, &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(
        d.when(DepartmentCommand::Close { has_children: true, has_members: false }, &ctx()),
        Err(DomainError::Rule(_))
    ));
    assert!(matches!(
        d.when(DepartmentCommand::Close { has_children: false, has_members: true }, &ctx()),
        Err(DomainError::Rule(_))
    ));
    d.when(DepartmentCommand::Close { has_children: false, has_members: false }, &ctx()).unwrap();
    assert!(matches!(
        d.when(DepartmentCommand::Rename { name: "x".into() }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
}

#[test]
fn roles_change_permissions_and_retire_and_grants_are_revoked_once() {
    let perms = |list: &[Permission]| list.iter().copied().collect::<BTreeSet<_>>();
    let mut r = Scenario::<Role>::given(&[]);
    r.when(
        RoleCommand::Define {
            id: RoleId(id(1)),
            name: "区域经理".into(),
            permissions: perms(&[Permission::CustomerRead]),
        },
        &ctx(),
    )
    .unwrap();
    let events =
        r.when(RoleCommand::ChangePermissions { permissions: perms(&[Permission::CaseRead]) }, &ctx()).unwrap();
    assert_eq!(
        events,
        [RoleEvent::RolePermissionsChanged(RolePermissionsChanged {
            added: perms(&[Permission::CaseRead]),
            removed: perms(&[Permission::CustomerRead])
        })]
    );
    assert_eq!(r.state().permissions, perms(&[Permission::CaseRead]));
    assert_eq!(
        r.when(RoleCommand::ChangePermissions { permissions: perms(&[Permission::CaseRead]) }, &ctx()),
        Ok(vec![])
    );
    r.when(RoleCommand::Retire, &ctx()).unwrap();
    assert!(matches!(r.when(RoleCommand::Retire, &ctx()), Err(DomainError::InvalidTransition { .. })));
    assert!(matches!(
        Scenario::<Role>::given(&[])
            .when(RoleCommand::Define { id: RoleId(id(2)), name: " ".into(), permissions: perms(&[]) }, &ctx()),
        Err(DomainError::Validation(_))
    ));

    let mut g = Scenario::<Grant>::given(&[]);
    assert_eq!(g.when(GrantCommand::Revoke, &ctx()), Err(DomainError::NotFound { entity: "grant" }));
    g.when(
        GrantCommand::Give { id: GrantId(id(5)), user: user(1), role: RoleId(id(1)), scope: Scope::DepartmentTree },
        &ctx(),
    )
    .unwrap();
    assert!(matches!(
        g.when(
            GrantCommand::Give { id: GrantId(id(5)), user: user(1), role: RoleId(id(1)), scope: Scope::All },
            &ctx()
        ),
        Err(DomainError::AlreadyExists { .. })
    ));
    g.when(GrantCommand::Revoke, &ctx()).unwrap();
    assert!(matches!(g.when(GrantCommand::Revoke, &ctx()), Err(DomainError::InvalidTransition { .. })));
}

#[test]
fn unique_values_are_claimed_once_through_their_own_stream() {
    let a = UniqueKey::new(UniqueKind::Username, " Wang.Fang ");
    let b = UniqueKey::new(UniqueKind::Username, "wang.fang");
    assert_eq!(a.stream(), b.stream(), "variants of one value share a stream");
    assert_ne!(a.stream(), UniqueKey::new(UniqueKind::EmployeeNumber, "wang.fang").stream());
    let chinese = UniqueKey::new(UniqueKind::RoleName, "区域经理（华东）");
    assert!(chinese.stream().len() <= 128 && chinese.stream().is_ascii());

    let mut r = Scenario::<Reservation>::given(&[]);
    r.when(ReservationCommand::Claim { key: a.clone(), owner: id(1) }, &ctx()).unwrap();
    assert_eq!(
        r.when(ReservationCommand::Claim { key: a.clone(), owner: id(1) }, &ctx()),
        Ok(vec![]),
        "a retry by the holder"
    );
    match r.when(ReservationCommand::Claim { key: a.clone(), owner: id(2) }, &ctx()) {
        Err(DomainError::Validation(errors)) => {
            assert_eq!((errors[0].field.as_str(), errors[0].code), ("username", FieldCode::Duplicate))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.when(ReservationCommand::Release { owner: id(2) }, &ctx()),
        Err(DomainError::NotFound { entity: "reservation" })
    );
    r.when(ReservationCommand::Release { owner: id(1) }, &ctx()).unwrap();
    r.when(ReservationCommand::Claim { key: a, owner: id(2) }, &ctx()).unwrap();
    let empty = UniqueKey::new(UniqueKind::RoleName, "   ");
    assert!(matches!(
        Scenario::<Reservation>::given(&[]).when(ReservationCommand::Claim { key: empty, owner: id(3) }, &ctx()),
        Err(DomainError::Validation(_))
    ));
}

#[test]
fn the_access_log_records_reads_and_exports() {
    use oacis_domain::access_log::*;
    let mut log = Scenario::<AccessLog>::given(&[]);
    let read = |fields: Vec<String>| AccessLogCommand::RecordPersonalDataRead { customer: common::customer(1), fields };
    log.when(read(vec!["phones".into()]), &ctx()).unwrap();
    assert!(matches!(log.when(read(vec![]), &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(log.when(read(vec!["电话".into()]), &ctx()), Err(DomainError::Validation(_))));
    let export = |records| AccessLogCommand::RecordExport { records, query: "all".into(), personal: true };
    log.when(export(500), &ctx()).unwrap();
    assert!(matches!(log.when(export(MAX_EXPORT_RECORDS + 1), &ctx()), Err(DomainError::Validation(_))));
    assert_eq!((log.state().reads, log.state().exported), (1, 500));
}

#[test]
fn a_failed_login_lock_expires_only_after_its_period_and_an_administrative_one_never() {
    let mut s = created();
    s.when(UserCommand::SetPassword { credential: ARGON.into(), facts: GOOD }, &ctx()).unwrap();
    s.when(UserCommand::RecordLoginSuccess { session: EntryId(id(72)), client: None, token_hash: None }, &ctx())
        .unwrap();
    let fail =
        UserCommand::RecordLoginFailure { reason: LoginFailure::BadPassword, client: None, lockout_threshold: 2 };
    s.when(fail.clone(), &later(1)).unwrap();
    let events = s.when(fail, &later(2)).unwrap();
    // The lock ends the open session too.
    assert!(matches!(&events[1], UserEvent::UserSessionEnded(e) if e.session_id == EntryId(id(72))));
    assert!(s.state().sessions.is_empty() && s.state().locked_by_failures);
    let fifteen_minutes = 15 * 60 * 1_000_000;
    assert!(matches!(
        s.when(UserCommand::ExpireLock { lockout_us: fifteen_minutes }, &later(16)),
        Err(DomainError::Rule(_))
    ));
    s.when(UserCommand::ExpireLock { lockout_us: fifteen_minutes }, &later(17)).unwrap();
    assert_eq!(s.state().status, UserStatus::Active);
    s.when(UserCommand::Lock { reason: "离职交接".into() }, &later(18)).unwrap();
    assert!(matches!(s.when(UserCommand::ExpireLock { lockout_us: 0 }, &later(999)), Err(DomainError::Rule(_))));
}

#[test]
fn a_password_change_revokes_every_session_and_keeps_the_recent_credentials() {
    let mut s = created();
    for n in 0..7u8 {
        let credential = format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${n}");
        s.when(UserCommand::SetPassword { credential, facts: GOOD }, &ctx()).unwrap();
    }
    assert!(s.state().credential.as_deref().is_some_and(|c| c.ends_with("$6")));
    let previous: Vec<_> = s.state().previous_credentials.iter().map(|c| c.chars().last().unwrap()).collect();
    assert_eq!(previous, ['5', '4', '3', '2'], "the current one and four before it");
    s.when(UserCommand::RecordLoginSuccess { session: EntryId(id(73)), client: None, token_hash: None }, &ctx())
        .unwrap();
    let events = s.when(UserCommand::SetPassword { credential: ARGON.into(), facts: GOOD }, &ctx()).unwrap();
    assert!(matches!(&events[0], UserEvent::UserSessionEnded(e) if e.session_id == EntryId(id(73))));
    assert!(s.state().sessions.is_empty());
    let bad_hash = Some("XYZ".into());
    assert!(matches!(
        s.when(
            UserCommand::RecordLoginSuccess { session: EntryId(id(74)), client: None, token_hash: bad_hash },
            &ctx()
        ),
        Err(DomainError::Validation(_))
    ));
}

#[test]
fn a_users_personal_data_is_erased_once_and_not_recorded_again() {
    let refused = Scenario::<User>::given(&[]).when(UserCommand::ErasePersonalData { reason: "x".into() }, &ctx());
    assert_eq!(refused, Err(DomainError::NotFound { entity: "user" }));
    let mut s = created();
    let events = s.when(UserCommand::ErasePersonalData { reason: "离职".into() }, &ctx()).unwrap();
    assert!(matches!(&events[..], [UserEvent::UserPersonalDataErased(e)] if e.reason == "离职"));
    assert!(s.state().erased);
    assert!(s.when(UserCommand::ErasePersonalData { reason: "again".into() }, &ctx()).unwrap().is_empty());
    let again = s.when(UserCommand::UpdateProfile { profile: profile() }, &ctx());
    assert!(matches!(again, Err(DomainError::Rule(_))), "{again:?}");
    let mut without = profile();
    without.personal = UserPersonal::default();
    s.when(UserCommand::UpdateProfile { profile: without }, &ctx()).unwrap();
}
