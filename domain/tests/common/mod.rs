//! Shared fixtures for the domain tests.
#![allow(dead_code, clippy::unwrap_used)]

use oacis_domain::customer::{CustomerKind, CustomerPersonal, Profile, SourceChannel};
use oacis_domain::ids::{CustomerId, DepartmentId, Timestamp, UserId};
use oacis_domain::Context;
use uuid::Uuid;

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n)
}

pub fn ctx() -> Context {
    Context::new(Some(UserId(id(900))), Timestamp(1_795_000_000_000_000))
}

pub fn later(minutes: i64) -> Context {
    Context::new(Some(UserId(id(900))), Timestamp(1_795_000_000_000_000).plus_minutes(minutes))
}

pub fn user(n: u128) -> UserId {
    UserId(id(n))
}

pub fn dept(n: u128) -> DepartmentId {
    DepartmentId(id(n))
}

pub fn customer(n: u128) -> CustomerId {
    CustomerId(id(n))
}

pub fn person(name: &str) -> Profile {
    Profile {
        kind: CustomerKind::Person,
        name: name.into(),
        company: None,
        source: SourceChannel::Referral,
        tags: ["vip".to_owned()].into(),
        segment: Some("key-account".into()),
        personal: CustomerPersonal {
            phones: vec!["+86 138 0013 8000".into()],
            emails: vec!["Zhang.Wei@Example.COM".into()],
            addresses: vec![],
            social: vec![],
            id_number: Some("11010519491231002x".into()),
            birth_date: None,
        },
    }
}
