//! Duplicate-check benchmark: the cost of `CustomerDirectory::possible_duplicates_of` (and of
//! computing the candidate's keys, as the API does at each registration or update) in a
//! directory of 1M customers, and of one page of `duplicate_pairs`.
//!
//! `cargo bench -p oacis-projections --bench duplicates` (sizes in customers:
//! `OACIS_BENCH_CUSTOMERS=1000000`). The directory is built by applying registrations
//! directly, without a log, since only the query is measured; 1% of customers share a phone
//! with an earlier one, 1% an e-mail, and organisations with the same name appear as in real
//! data.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use oacis_domain::customer::{
    Company, CustomerEvent, CustomerKind, CustomerPersonal, CustomerRegistered, Profile, SourceChannel,
};
use oacis_domain::duplicate::DuplicateKeys;
use oacis_domain::ids::{CustomerId, DepartmentId, Timestamp, UserId};
use oacis_eventlog::Seq;
use oacis_projections::decode::{AnyEvent, DomainRecord};
use oacis_projections::demo::Dice;
use oacis_projections::view::View;
use oacis_projections::views::directory::CustomerDirectory;
use uuid::Uuid;

/// The allocator the `oacis` binary runs with, so that these figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周"];
const GIVEN: &[&str] = &["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳"];
const COMPANY: &[&str] = &["华信", "中科", "东方", "新锐", "恒通", "金桥", "天成", "远航", "博雅", "瑞丰"];

fn profile(n: u64, dice: &mut Dice) -> Profile {
    let organisation = dice.chance(30);
    // 1% reuse an earlier customer's phone, 1% an earlier e-mail.
    let earlier = |dice: &mut Dice| if n > 0 && dice.chance(1) { dice.roll() % n } else { n };
    let phone_of = earlier(dice);
    let email_of = earlier(dice);
    let name = if organisation {
        format!("{}{}{}有限公司", dice.pick(COMPANY), dice.pick(COMPANY), dice.below(5_000))
    } else {
        format!("{}{}{}", dice.pick(SURNAMES), dice.pick(GIVEN), dice.pick(GIVEN))
    };
    Profile {
        kind: if organisation { CustomerKind::Organisation } else { CustomerKind::Person },
        name,
        company: organisation.then(|| Company { credit_code: Some(format!("91{n:016}")), ..Company::default() }),
        source: SourceChannel::Website,
        tags: BTreeSet::new(),
        segment: None,
        personal: CustomerPersonal {
            phones: vec![format!("+86139{:08}", phone_of % 100_000_000)],
            emails: vec![format!("c{email_of}@example.com")],
            id_number: (!organisation).then(|| format!("110101{:012}", n)),
            ..CustomerPersonal::default()
        },
    }
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn run(customers: u64) {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let mut directory = CustomerDirectory::default();
    let mut profiles = Vec::with_capacity(20_000);
    // Every customer's keys, for the baseline: the same question answered by a scan.
    let mut all_keys: Vec<DuplicateKeys> = Vec::with_capacity(usize::try_from(customers).unwrap());
    let started = Instant::now();
    for n in 0..customers {
        let profile = profile(n, &mut dice);
        if n % (customers / 10_000).max(1) == 0 {
            profiles.push(profile.clone());
        }
        all_keys.push(DuplicateKeys::of(&profile));
        let id = CustomerId(Uuid::from_u128(u128::from(n) + 1));
        let record = DomainRecord {
            seq: Seq(n + 1),
            version: 1,
            recorded_at: Timestamp(1_800_000_000_000_000),
            actor: "bench".into(),
            event: AnyEvent::Customer(
                id,
                CustomerEvent::CustomerRegistered(CustomerRegistered {
                    customer_id: id,
                    profile,
                    owner: UserId(Uuid::from_u128(1)),
                    department: DepartmentId(Uuid::from_u128(2)),
                }),
            ),
        };
        directory.apply(&record).unwrap();
    }
    eprintln!("built a directory of {customers} customers in {:.1}s", started.elapsed().as_secs_f64());
    // Candidates: the profiles of existing customers (every check finds at least that customer)
    // and fresh ones (most find nothing).
    let fresh: Vec<Profile> = (0..profiles.len() as u64).map(|n| profile(customers + n, &mut dice)).collect();
    for (label, candidates) in [("existing customers' keys", &profiles), ("fresh keys", &fresh)] {
        let mut times = Vec::with_capacity(candidates.len());
        let mut found = 0usize;
        for candidate in candidates.iter() {
            let started = Instant::now();
            let keys = DuplicateKeys::of(candidate);
            let matches = directory.possible_duplicates_of(&keys, None);
            times.push(started.elapsed());
            found += matches.len();
        }
        times.sort_unstable();
        println!(
            "duplicate check at {customers} customers, {label} ({} checks, {found} matches): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            times.len(),
            percentile_us(&times, 0.5),
            percentile_us(&times, 0.99),
            times.last().unwrap().as_secs_f64() * 1e6,
        );
    }
    // Baseline in the same run: a scan comparing the candidate's keys with every customer's.
    let mut times = Vec::new();
    let mut found = 0usize;
    for candidate in profiles.iter().take(20) {
        let started = Instant::now();
        let keys = DuplicateKeys::of(candidate);
        let wanted: Vec<(_, &str)> = keys.iter().collect();
        found += all_keys.iter().filter(|other| other.iter().any(|k| wanted.contains(&k))).count();
        times.push(started.elapsed());
    }
    times.sort_unstable();
    println!(
        "baseline: scanning every customer's keys at {customers} customers ({} checks, {found} matches): p50 {:.1} us",
        times.len(),
        percentile_us(&times, 0.5),
    );
    let started = Instant::now();
    let page = directory.duplicate_pairs(&|_| true, 100, None);
    println!(
        "duplicate pairs at {customers} customers: {} pairs in all, first page of {} in {:.1} ms",
        page.total,
        page.pairs.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn main() {
    let sizes: Vec<u64> = std::env::var("OACIS_BENCH_CUSTOMERS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    for customers in sizes {
        run(customers);
    }
}
