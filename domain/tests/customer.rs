//! Given/when/then for every customer command, accepted and refused.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{ctx, customer, dept, id, person, user};
use oacis_domain::customer::*;
use oacis_domain::ids::{Date, EntryId, Timestamp};
use oacis_domain::{DomainError, FieldCode, Scenario};

fn registered() -> Scenario<Customer> {
    let mut s = Scenario::<Customer>::given(&[]);
    s.when(
        CustomerCommand::Register { id: customer(1), profile: person("张伟"), owner: user(1), department: dept(1) },
        &ctx(),
    )
    .expect("register");
    s
}

fn field_codes(err: DomainError) -> Vec<(String, FieldCode)> {
    match err {
        DomainError::Validation(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn register_normalises_and_keeps_personal_data_apart() {
    let s = registered();
    let profile = s.state().profile.clone().unwrap();
    assert_eq!(profile.personal.phones, ["+8613800138000"]);
    assert_eq!(profile.personal.emails, ["Zhang.Wei@example.com"]);
    assert_eq!(profile.personal.id_number.as_deref(), Some("11010519491231002X"));
    assert_eq!(s.state().status, CustomerStatus::Active);
    // The payload keeps personal data under one key.
    let event = oacis_domain::Scenario::<Customer>::given(&[])
        .when(
            CustomerCommand::Register {
                id: customer(2), profile: person("李娜"), owner: user(1), department: dept(1)
            },
            &ctx(),
        )
        .unwrap()
        .remove(0);
    let payload: serde_json::Value = serde_json::from_slice(&oacis_domain::DomainEvent::payload(&event)).unwrap();
    let profile = &payload["profile"];
    assert!(profile["personal"]["phones"].is_array());
    for key in ["phones", "emails", "id_number", "addresses"] {
        assert!(profile.get(key).is_none(), "{key} outside `personal`");
    }
}

#[test]
fn register_reports_every_invalid_field_at_once_and_refuses_twice() {
    let mut profile = person("");
    profile.personal.phones = vec!["12345".into(), "+8613800138000".into(), "+86 138 0013 8000".into()];
    profile.personal.emails = vec!["not-an-email".into()];
    profile.personal.id_number = Some("110101199003071234".into());
    profile.company = Some(Company { credit_code: Some("913100006073917301".into()), ..Company::default() });
    let err = Scenario::<Customer>::given(&[])
        .when(CustomerCommand::Register { id: customer(1), profile, owner: user(1), department: dept(1) }, &ctx())
        .unwrap_err();
    let codes = field_codes(err);
    for expected in [
        ("profile.name", FieldCode::Required),
        ("profile.personal.phones[0]", FieldCode::InvalidPhone),
        ("profile.personal.phones[2]", FieldCode::Duplicate),
        ("profile.personal.emails[0]", FieldCode::InvalidEmail),
        ("profile.personal.id_number", FieldCode::InvalidChecksum),
        ("profile.company.credit_code", FieldCode::InvalidChecksum),
        ("profile.company", FieldCode::InvalidFormat),
    ] {
        assert!(codes.iter().any(|(f, c)| f == expected.0 && *c == expected.1), "missing {expected:?} in {codes:?}");
    }
    let mut s = registered();
    let err = s.when(
        CustomerCommand::Register { id: customer(1), profile: person("张伟"), owner: user(1), department: dept(1) },
        &ctx(),
    );
    assert_eq!(err, Err(DomainError::AlreadyExists { entity: "customer" }));
}

#[test]
fn an_organisation_with_background_and_a_chinese_address() {
    let profile = Profile {
        kind: CustomerKind::Organisation,
        name: "福建省某某科技有限公司".into(),
        company: Some(Company {
            industry: Some("软件".into()),
            size: Some("50-199".into()),
            website: Some("https://example.cn".into()),
            credit_code: Some("91350100m000100y43".into()),
        }),
        source: SourceChannel::Event,
        tags: Default::default(),
        segment: None,
        personal: CustomerPersonal {
            addresses: vec![Address {
                country: "cn".into(),
                region: Some("福建省".into()),
                city: Some("福州市".into()),
                street: "鼓楼区五四路 158 号 12 层".into(),
                postal_code: Some("350003".into()),
            }],
            ..CustomerPersonal::default()
        },
    };
    let mut s = Scenario::<Customer>::given(&[]);
    s.when(CustomerCommand::Register { id: customer(3), profile, owner: user(1), department: dept(1) }, &ctx())
        .unwrap();
    let kept = s.state().profile.clone().unwrap();
    assert_eq!(kept.company.unwrap().credit_code.as_deref(), Some("91350100M000100Y43"));
    assert_eq!(kept.personal.addresses[0].country, "CN");
}

#[test]
fn commands_on_a_customer_that_does_not_exist_are_not_found() {
    let mut s = Scenario::<Customer>::given(&[]);
    let commands = [
        CustomerCommand::UpdateProfile { profile: person("x") },
        CustomerCommand::ChangeOwner { owner: user(2), department: dept(2) },
        CustomerCommand::Archive { reason: "x".into() },
        CustomerCommand::Restore,
        CustomerCommand::MergeInto { survivor: customer(9), survivor_status: CustomerStatus::Active },
        CustomerCommand::Absorb { duplicate: customer(9) },
    ];
    for command in commands {
        assert_eq!(s.when(command, &ctx()), Err(DomainError::NotFound { entity: "customer" }));
    }
}

#[test]
fn update_transfer_archive_and_restore() {
    let mut s = registered();
    let events = s.when(CustomerCommand::UpdateProfile { profile: person("张伟（老张）") }, &ctx()).unwrap();
    assert!(matches!(&events[0], CustomerEvent::CustomerProfileUpdated(_)));
    let same = s.when(CustomerCommand::UpdateProfile { profile: person("张伟（老张）") }, &ctx()).unwrap();
    assert!(same.is_empty(), "the same profile again records nothing: {same:?}");
    let events = s.when(CustomerCommand::ChangeOwner { owner: user(2), department: dept(2) }, &ctx()).unwrap();
    assert_eq!(
        events,
        [CustomerEvent::CustomerOwnerChanged(CustomerOwnerChanged {
            from_owner: user(1),
            owner: user(2),
            department: dept(2)
        })]
    );
    assert_eq!(
        s.when(CustomerCommand::ChangeOwner { owner: user(2), department: dept(2) }, &ctx()),
        Ok(vec![]),
        "no-op transfer"
    );
    assert!(matches!(s.when(CustomerCommand::Archive { reason: " ".into() }, &ctx()), Err(DomainError::Validation(_))));
    s.when(CustomerCommand::Archive { reason: "duplicate lead".into() }, &ctx()).unwrap();
    assert_eq!(s.state().status, CustomerStatus::Archived);
    let refused = s.when(CustomerCommand::UpdateProfile { profile: person("x") }, &ctx());
    assert_eq!(
        refused,
        Err(DomainError::InvalidTransition { entity: "customer", status: "archived", action: "update" })
    );
    assert!(matches!(
        s.when(CustomerCommand::Archive { reason: "again".into() }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    s.when(CustomerCommand::Restore, &ctx()).unwrap();
    assert_eq!(s.state().status, CustomerStatus::Active);
    assert!(matches!(s.when(CustomerCommand::Restore, &ctx()), Err(DomainError::InvalidTransition { .. })));
}

#[test]
fn merge_points_to_a_live_survivor_and_freezes_the_duplicate() {
    let mut s = registered();
    assert!(matches!(
        s.when(CustomerCommand::MergeInto { survivor: customer(1), survivor_status: CustomerStatus::Active }, &ctx()),
        Err(DomainError::Rule(_))
    ));
    for dead in [CustomerStatus::Merged, CustomerStatus::Archived, CustomerStatus::Unregistered] {
        assert!(matches!(
            s.when(CustomerCommand::MergeInto { survivor: customer(2), survivor_status: dead }, &ctx()),
            Err(DomainError::Rule(_))
        ));
    }
    s.when(CustomerCommand::MergeInto { survivor: customer(2), survivor_status: CustomerStatus::Active }, &ctx())
        .unwrap();
    assert_eq!((s.state().status, s.state().merged_into), (CustomerStatus::Merged, Some(customer(2))));
    assert!(matches!(
        s.when(CustomerCommand::UpdateProfile { profile: person("x") }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.when(CustomerCommand::MergeInto { survivor: customer(3), survivor_status: CustomerStatus::Active }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));

    let mut survivor = registered();
    survivor.when(CustomerCommand::Absorb { duplicate: customer(7) }, &ctx()).unwrap();
    assert_eq!(survivor.when(CustomerCommand::Absorb { duplicate: customer(7) }, &ctx()), Ok(vec![]));
    assert!(matches!(
        survivor.when(CustomerCommand::Absorb { duplicate: customer(1) }, &ctx()),
        Err(DomainError::Rule(_))
    ));
}

#[test]
fn an_unmerge_gives_the_duplicate_back_its_status_and_the_survivor_forgets_it() {
    let mut s = registered();
    assert!(matches!(s.when(CustomerCommand::Unmerge, &ctx()), Err(DomainError::InvalidTransition { .. })));
    s.when(CustomerCommand::Archive { reason: "重复".into() }, &ctx()).unwrap();
    s.when(CustomerCommand::MergeInto { survivor: customer(2), survivor_status: CustomerStatus::Active }, &ctx())
        .unwrap();
    let events = s.when(CustomerCommand::Unmerge, &ctx()).unwrap();
    assert_eq!(
        events,
        [CustomerEvent::CustomerUnmerged(CustomerUnmerged { from: customer(2), status: CustomerStatus::Archived })]
    );
    assert_eq!((s.state().status, s.state().merged_into), (CustomerStatus::Archived, None));
    assert_eq!(s.state().profile.as_ref().map(|p| p.personal.phones.clone()), Some(vec!["+8613800138000".to_owned()]));
    // Merged again, from active this time, and unmerged: active.
    s.when(CustomerCommand::Restore, &ctx()).unwrap();
    s.when(CustomerCommand::MergeInto { survivor: customer(3), survivor_status: CustomerStatus::Active }, &ctx())
        .unwrap();
    s.when(CustomerCommand::Unmerge, &ctx()).unwrap();
    assert_eq!(s.state().status, CustomerStatus::Active);

    let mut survivor = registered();
    assert!(matches!(
        survivor.when(CustomerCommand::Release { duplicate: customer(7) }, &ctx()),
        Err(DomainError::NotFound { .. })
    ));
    survivor.when(CustomerCommand::Absorb { duplicate: customer(7) }, &ctx()).unwrap();
    survivor.when(CustomerCommand::Release { duplicate: customer(7) }, &ctx()).unwrap();
    assert!(survivor.state().absorbed.is_empty());
    // Absorbing it again after a release is recorded again.
    assert_eq!(survivor.when(CustomerCommand::Absorb { duplicate: customer(7) }, &ctx()).unwrap().len(), 1);
}

#[test]
fn interactions_are_logged_once_and_move_the_last_contact() {
    let mut s = registered();
    let log = |n: u128, summary: &str, at: i64| CustomerCommand::LogInteraction {
        id: EntryId(id(100 + n)),
        channel: InteractionChannel::Call,
        direction: Direction::Inbound,
        summary: summary.into(),
        occurred_at: Timestamp(at),
        participants: vec![user(1)],
    };
    s.when(log(1, "询问报价", 100), &ctx()).unwrap();
    s.when(log(2, "visit", 50), &ctx()).unwrap();
    assert_eq!(s.state().last_contact, Some(Timestamp(100)));
    assert_eq!(s.when(log(1, "again", 200), &ctx()), Err(DomainError::AlreadyExists { entity: "interaction" }));
    assert!(matches!(s.when(log(3, "", 1), &ctx()), Err(DomainError::Validation(_))));
    let too_long = "长".repeat(MAX_TEXT_CHARS + 1);
    assert!(matches!(s.when(log(4, &too_long, 1), &ctx()), Err(DomainError::Validation(_))));
    // An interaction that has not happened yet is refused; a client's clock a little ahead
    // of the server's is allowed for.
    let now = ctx().now.0;
    match s.when(log(5, "next week", now + CLOCK_SKEW_US + 1), &ctx()) {
        Err(DomainError::Validation(fields)) => assert_eq!(fields[0].field, "occurred_at", "{fields:?}"),
        other => panic!("{other:?}"),
    }
    s.when(log(6, "a clock ahead", now + CLOCK_SKEW_US), &ctx()).unwrap();
    assert_eq!(s.state().last_contact, Some(Timestamp(now + CLOCK_SKEW_US)));
}

#[test]
fn purchases_are_corrected_only_by_reversal() {
    let mut s = registered();
    let buy = |n: u128, amount: i64, currency: &str| CustomerCommand::RecordPurchase {
        id: EntryId(id(200 + n)),
        product: "年度服务包".into(),
        quantity: 1,
        amount_minor: amount,
        currency: currency.into(),
        purchased_on: Date::parse("2026-11-10").unwrap(),
    };
    s.when(buy(1, 129_900, "cny"), &ctx()).unwrap();
    assert_eq!(s.state().purchases[&EntryId(id(201))].currency, "CNY");
    assert!(matches!(s.when(buy(2, -5, "CNY"), &ctx()), Err(DomainError::Validation(_))));
    assert!(matches!(s.when(buy(3, 5, "RMB1"), &ctx()), Err(DomainError::Validation(_))));
    // A code of the right shape that ISO 4217 does not list is refused too.
    match s.when(buy(3, 5, "RMB"), &ctx()) {
        Err(DomainError::Validation(fields)) => assert_eq!(fields[0].field, "currency", "{fields:?}"),
        other => panic!("{other:?}"),
    }
    // A purchase on a day no time zone has reached yet is refused; today in UTC+14:00 is not.
    let on = |n: u128, day: &str| CustomerCommand::RecordPurchase {
        id: EntryId(id(250 + n)),
        product: "年度服务包".into(),
        quantity: 1,
        amount_minor: 100,
        currency: "USD".into(),
        purchased_on: Date::parse(day).unwrap(),
    };
    // ctx() is 2026-11-18 17:46:40 UTC: already 2026-11-19 in UTC+14:00.
    match s.when(on(1, "2026-11-20"), &ctx()) {
        Err(DomainError::Validation(fields)) => assert_eq!(fields[0].field, "purchased_on", "{fields:?}"),
        other => panic!("{other:?}"),
    }
    s.when(on(2, "2026-11-19"), &ctx()).unwrap();
    assert_eq!(s.when(buy(1, 1, "CNY"), &ctx()), Err(DomainError::AlreadyExists { entity: "purchase" }));
    let events =
        s.when(CustomerCommand::ReversePurchase { id: EntryId(id(201)), reason: "退款".into() }, &ctx()).unwrap();
    match &events[0] {
        CustomerEvent::PurchaseReversed(e) => {
            assert_eq!((e.amount_minor, e.currency.as_str()), (129_900, "CNY"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.when(CustomerCommand::ReversePurchase { id: EntryId(id(201)), reason: "again".into() }, &ctx()),
        Err(DomainError::InvalidTransition { .. })
    ));
    assert_eq!(
        s.when(CustomerCommand::ReversePurchase { id: EntryId(id(299)), reason: "x".into() }, &ctx()),
        Err(DomainError::NotFound { entity: "purchase" })
    );
}

#[test]
fn a_purchase_amount_beyond_any_real_one_is_refused() {
    let mut s = Scenario::<Customer>::given(&[]);
    s.when(
        CustomerCommand::Register { id: customer(1), profile: person("张伟"), owner: user(1), department: dept(1) },
        &ctx(),
    )
    .unwrap();
    let purchase = |amount_minor| CustomerCommand::RecordPurchase {
        id: EntryId(id(50)),
        product: "服务包".into(),
        quantity: 1,
        amount_minor,
        currency: "CNY".into(),
        purchased_on: Date::parse("2026-11-10").unwrap(),
    };
    assert!(
        matches!(s.when(purchase(i64::MAX), &ctx()), Err(DomainError::Validation(e)) if e[0].field == "amount_minor")
    );
    assert!(s.when(purchase(MAX_AMOUNT_MINOR), &ctx()).is_ok());
}

#[test]
fn erasure_empties_personal_data_for_good_and_is_idempotent() {
    let mut s = registered();
    let refused =
        Scenario::<Customer>::given(&[]).when(CustomerCommand::ErasePersonalData { reason: "x".into() }, &ctx());
    assert!(matches!(refused, Err(DomainError::NotFound { .. })), "nobody to erase");
    // The reason stays readable for good: one that looks like it holds personal data is refused.
    for reason in [
        "客户来电 15811112222 要求删除",
        "mail x@y.com asked",
        "ID 31010419851111777X",
        "call 158 1111 2222",
        "call (138)1234-5678",
        "tel 138/1234/5678",
        "tel 138\u{200b}1234\u{200b}5678",
        "tel １３８１２３４５６７８",
        "mail a.b＠example.com",
        "mail a.b (at) example.com",
    ] {
        let refused = registered().when(CustomerCommand::ErasePersonalData { reason: reason.into() }, &ctx());
        assert!(
            matches!(&refused, Err(DomainError::Validation(errors)) if errors[0].field == "reason" && errors[0].code == FieldCode::InvalidFormat),
            "{reason}: {refused:?}"
        );
    }
    for reason in ["申请单 2026-11-30 第 12 号", "ticket OPS-20261130-77", "request 2026-11-30 to 2026-12-01"] {
        let dated = registered().when(CustomerCommand::ErasePersonalData { reason: reason.into() }, &ctx());
        assert!(dated.is_ok(), "dates and ticket numbers are not personal data: {reason}: {dated:?}");
    }
    let events = s.when(CustomerCommand::ErasePersonalData { reason: "本人申请".into() }, &ctx()).unwrap();
    assert!(matches!(&events[..], [CustomerEvent::CustomerPersonalDataErased(e)] if e.reason == "本人申请"));
    let state = s.state();
    assert!(state.erased);
    let profile = state.profile.clone().unwrap();
    assert_eq!(profile.personal, CustomerPersonal::default());
    assert_eq!(profile.name, "张伟", "names and other fields remain");
    assert!(s.when(CustomerCommand::ErasePersonalData { reason: "again".into() }, &ctx()).unwrap().is_empty());
    // Personal data is not recorded again; the rest of the profile still changes.
    let again = s.when(CustomerCommand::UpdateProfile { profile: person("张伟") }, &ctx());
    assert!(matches!(again, Err(DomainError::Rule(_))), "{again:?}");
    let mut without = person("张伟伟");
    without.personal = CustomerPersonal::default();
    s.when(CustomerCommand::UpdateProfile { profile: without }, &ctx()).unwrap();
    assert_eq!(s.state().profile.clone().unwrap().name, "张伟伟");
}

fn import_row(name: &str) -> ImportRow {
    ImportRow {
        import: oacis_domain::ids::ImportId(id(70)),
        id: customer(1),
        row: 2,
        profile: person(name),
        owner: user(1),
        department: dept(1),
        status: None,
        external_id: Some("ERP-1".into()),
        registered_at: Some(Timestamp(1_600_000_000_000_000)),
        last_contact: Some(Timestamp(1_700_000_000_000_000)),
    }
}

fn kinds(events: &[CustomerEvent]) -> Vec<&'static str> {
    events.iter().map(oacis_domain::DomainEvent::kind).collect()
}

#[test]
fn an_import_registers_with_business_time_and_records_itself_last() {
    let mut s = Scenario::<Customer>::given(&[]);
    let mut row = import_row("张伟");
    row.status = Some(CustomerStatus::Archived);
    let events = s.when(CustomerCommand::Import(Box::new(row)), &ctx()).unwrap();
    assert_eq!(kinds(&events), ["CustomerRegistered", "CustomerArchived", "CustomerImported"]);
    let CustomerEvent::CustomerImported(imported) = &events[2] else { panic!("last is CustomerImported") };
    assert!(imported.registered);
    assert_eq!(imported.preceding, 2);
    assert_eq!(imported.registered_at, Some(Timestamp(1_600_000_000_000_000)));
    assert_eq!(s.state().status, CustomerStatus::Archived);
    assert_eq!(s.state().external_id.as_deref(), Some("ERP-1"));
    assert_eq!(s.state().last_contact, Some(Timestamp(1_700_000_000_000_000)));
}

#[test]
fn an_import_updates_only_what_differs_and_a_same_row_records_nothing() {
    let mut s = registered();
    let mut row = import_row("张伟");
    row.owner = user(2);
    let events = s.when(CustomerCommand::Import(Box::new(row.clone())), &ctx()).unwrap();
    assert_eq!(kinds(&events), ["CustomerOwnerChanged", "CustomerImported"]);
    let CustomerEvent::CustomerImported(imported) = &events[1] else { panic!("last is CustomerImported") };
    assert!(!imported.registered);
    assert_eq!(imported.preceding, 1);
    assert_eq!(imported.registered_at, None, "an update keeps the registration time");
    // The same row again, and a row with an older last contact: nothing to record.
    assert!(s.when(CustomerCommand::Import(Box::new(row.clone())), &ctx()).unwrap().is_empty());
    row.last_contact = Some(Timestamp(1_650_000_000_000_000));
    assert!(s.when(CustomerCommand::Import(Box::new(row)), &ctx()).unwrap().is_empty());
}

#[test]
fn an_import_refuses_bad_rows_with_every_field_and_merged_customers() {
    let mut row = import_row("");
    row.registered_at = Some(ctx().now.plus_minutes(60));
    let err = Scenario::<Customer>::given(&[]).when(CustomerCommand::Import(Box::new(row)), &ctx()).unwrap_err();
    assert_eq!(
        field_codes(err),
        [("registered_at".to_owned(), FieldCode::OutOfRange), ("profile.name".to_owned(), FieldCode::Required)]
    );
    let mut s = registered();
    s.when(CustomerCommand::MergeInto { survivor: customer(2), survivor_status: CustomerStatus::Active }, &ctx())
        .unwrap();
    let err = s.when(CustomerCommand::Import(Box::new(import_row("张伟"))), &ctx()).unwrap_err();
    assert!(matches!(err, DomainError::InvalidTransition { status: "merged", .. }), "{err:?}");
}

#[test]
fn reverting_an_import_archives_what_it_registered_and_restores_what_it_updated() {
    let mut s = Scenario::<Customer>::given(&[]);
    s.when(CustomerCommand::Import(Box::new(import_row("张伟"))), &ctx()).unwrap();
    let import = oacis_domain::ids::ImportId(id(70));
    let events = s.when(CustomerCommand::RevertImport { import, restore: None }, &ctx()).unwrap();
    assert_eq!(kinds(&events), ["CustomerArchived", "CustomerImportReverted"]);
    assert_eq!(s.state().status, CustomerStatus::Archived);
    assert_eq!(s.state().external_id, None);

    let mut s = registered();
    let before = s.state().clone();
    let mut row = import_row("张伟伟");
    row.owner = user(2);
    row.status = Some(CustomerStatus::Archived);
    s.when(CustomerCommand::Import(Box::new(row)), &ctx()).unwrap();
    let restore = ImportRestore {
        profile: before.profile.clone().unwrap(),
        owner: user(1),
        department: dept(1),
        status: CustomerStatus::Active,
        external_id: None,
        last_contact: None,
    };
    let events = s.when(CustomerCommand::RevertImport { import, restore: Some(Box::new(restore)) }, &ctx()).unwrap();
    assert_eq!(
        kinds(&events),
        ["CustomerProfileUpdated", "CustomerOwnerChanged", "CustomerRestored", "CustomerImportReverted"]
    );
    let after = s.state();
    assert_eq!(after.profile, before.profile);
    assert_eq!((after.owner, after.department, after.status), (before.owner, before.department, before.status));
    assert_eq!((&after.external_id, after.last_contact), (&None, None));
}
