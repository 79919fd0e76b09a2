//! Duplicate detection and merges as the directory answers them: the index against a
//! brute-force pass over generated customers (proptest), the search that finds a survivor by
//! a merged duplicate's contacts, and an unmerge that every view follows.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::customer::{
    Company, Customer, CustomerCommand, CustomerEvent, CustomerKind, CustomerPersonal, CustomerState, CustomerStatus,
    Profile, SourceChannel,
};
use oacis_domain::duplicate::{DuplicateField, DuplicateKeys};
use oacis_domain::ids::{CustomerId, DepartmentId, Timestamp, UserId};
use oacis_domain::validate::email_key;
use oacis_domain::validate::text::comparison_key;
use oacis_domain::{Aggregate, Context};
use oacis_eventlog::Seq;
use oacis_projections::decode::{AnyEvent, DomainRecord};
use oacis_projections::views::analytics::Dimension;
use oacis_projections::views::directory::{DirectoryQuery, MAX_PAGE};
use oacis_projections::views::duplicates::{DuplicateMatch, DuplicatePair};
use oacis_projections::Views;
use proptest::prelude::*;
use uuid::Uuid;

fn customer(n: u128) -> CustomerId {
    CustomerId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n))
}

/// Customers decided by the domain and applied to every view, with their states.
#[derive(Default)]
struct World {
    views: Views,
    states: BTreeMap<CustomerId, CustomerState>,
    seq: u64,
}

impl World {
    fn run(&mut self, id: CustomerId, command: CustomerCommand) -> Vec<CustomerEvent> {
        let ctx = Context::new(None, Timestamp(1_800_000_000_000_000).plus_minutes(i64::try_from(self.seq).unwrap()));
        let state = self.states.remove(&id).unwrap_or_default();
        let events = Customer::decide(&state, command, &ctx).unwrap();
        let mut state = state;
        for event in &events {
            state = Customer::evolve(state, event);
            self.seq += 1;
            let record = DomainRecord {
                seq: Seq(self.seq),
                version: self.seq,
                recorded_at: ctx.now,
                actor: "admin".into(),
                event: AnyEvent::Customer(id, event.clone()),
            };
            self.views.apply_decoded(&record).unwrap();
        }
        self.states.insert(id, state);
        events
    }

    fn register(&mut self, id: CustomerId, profile: Profile) {
        let owner = UserId(Uuid::from_u128(1));
        self.run(id, CustomerCommand::Register { id, profile, owner, department: DepartmentId(Uuid::from_u128(2)) });
    }

    fn merge(&mut self, duplicate: CustomerId, survivor: CustomerId) {
        let survivor_status = self.states[&survivor].status;
        self.run(duplicate, CustomerCommand::MergeInto { survivor, survivor_status });
        self.run(survivor, CustomerCommand::Absorb { duplicate });
    }

    fn unmerge(&mut self, duplicate: CustomerId) {
        let survivor = self.states[&duplicate].merged_into.unwrap();
        self.run(duplicate, CustomerCommand::Unmerge);
        self.run(survivor, CustomerCommand::Release { duplicate });
    }

    fn search(&self, text: &str) -> Vec<CustomerId> {
        let page = self.views.directory.query(&DirectoryQuery {
            text: Some(text.into()),
            search_personal: true,
            first: MAX_PAGE,
            ..Default::default()
        });
        page.rows.iter().map(|r| r.id).collect()
    }
}

fn profile(name: &str, kind: CustomerKind, phones: &[&str], emails: &[&str]) -> Profile {
    Profile {
        kind,
        name: name.into(),
        company: (kind == CustomerKind::Organisation).then(Company::default),
        source: SourceChannel::Website,
        tags: BTreeSet::new(),
        segment: None,
        personal: CustomerPersonal {
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            ..CustomerPersonal::default()
        },
    }
}

#[test]
fn after_a_merge_the_duplicates_phones_and_emails_find_the_survivor() {
    let mut w = World::default();
    w.register(customer(1), profile("张伟", CustomerKind::Person, &["13800138000"], &["zw@example.com"]));
    w.register(customer(2), profile("张伟 (重复)", CustomerKind::Person, &["13911112222"], &["zhang.wei@例子.中国"]));
    assert_eq!(w.search("13911112222"), [customer(2)]);
    w.merge(customer(2), customer(1));
    assert_eq!(w.search("+8613911112222"), [customer(1)], "the duplicate's phone finds the survivor");
    assert_eq!(w.search("zhang.wei@例子.中国"), [customer(1)], "so does its e-mail");
    assert_eq!(w.search("138001"), [customer(1)], "and the survivor's own contacts still do");
    // A chain: the survivor merged in turn finds the first duplicate's contacts too.
    w.register(customer(3), profile("张伟 总部", CustomerKind::Person, &["13700000000"], &[]));
    w.merge(customer(1), customer(3));
    assert_eq!(w.search("13911112222"), [customer(3)]);
    // Unmerged, the duplicate is found by its own contacts again, and the survivor is not.
    w.unmerge(customer(1));
    assert_eq!(w.search("13911112222"), [customer(1)]);
    w.unmerge(customer(2));
    assert_eq!(w.search("13911112222"), [customer(2)]);
    assert_eq!(w.search("13800138000"), [customer(1)]);
}

#[test]
fn an_unmerge_gives_the_duplicate_back_its_history_and_every_view_follows() {
    let mut w = World::default();
    w.register(customer(1), profile("李娜", CustomerKind::Person, &["13800138000"], &[]));
    w.register(customer(2), profile("李娜", CustomerKind::Person, &["13800138001"], &[]));
    w.run(customer(2), CustomerCommand::Archive { reason: "重复录入".into() });
    w.merge(customer(2), customer(1));
    let kinds = |w: &World, c| w.views.timeline.of(c).iter().map(|e| (e.customer, e.kind)).collect::<Vec<_>>();
    assert!(kinds(&w, customer(1)).contains(&(customer(2), "CustomerRegistered")));
    let by_status = |w: &World| w.views.analytics.customers_by(Dimension::Status);
    assert_eq!(by_status(&w).get("ARCHIVED"), None, "merged customers are not counted");
    w.unmerge(customer(2));
    // Directory: back to the status it had, pointing nowhere.
    let row = w.views.directory.get(customer(2)).unwrap();
    assert_eq!((row.status, row.merged_into), (CustomerStatus::Archived, None));
    assert_eq!(row.phones, ["+8613800138001"]);
    // Timeline: the survivor's no longer holds the duplicate's entries; the duplicate's are its own.
    assert!(kinds(&w, customer(1)).iter().all(|(c, _)| *c == customer(1)));
    assert_eq!(kinds(&w, customer(2)).last(), Some(&(customer(2), "CustomerUnmerged")));
    assert!(kinds(&w, customer(2)).contains(&(customer(2), "CustomerRegistered")));
    // Analytics: counted again, as archived.
    assert_eq!(by_status(&w).get("ARCHIVED"), Some(&1));
    // Audit: the operation is in the actor's log, on both streams.
    let ops: Vec<&str> = w.views.audit.operations_of("admin").iter().map(|o| o.kind).collect();
    assert!(ops.contains(&"CustomerUnmerged") && ops.contains(&"CustomerReleased"), "{ops:?}");
    // Duplicate checks see it as itself again.
    let keys = DuplicateKeys::of(&w.states[&customer(2)].profile.clone().unwrap());
    assert_eq!(
        w.views.directory.possible_duplicates_of(&keys, None),
        [DuplicateMatch { customer: customer(2), fields: vec![DuplicateField::Phone] }]
    );
}

#[test]
fn registering_with_a_known_key_returns_the_possible_duplicates_and_their_fields() {
    let mut w = World::default();
    let mut org = profile("华为技术有限公司", CustomerKind::Organisation, &["010-60000000"], &["info@example.com"]);
    org.company = Some(Company { credit_code: Some("91440300708461136T".into()), ..Company::default() });
    w.register(customer(1), org);
    let mut person = profile("王芳", CustomerKind::Person, &["+86 139 1234 5678"], &["wang@example.xn--fiqs8s"]);
    person.personal.id_number = Some("110101199003074477".into());
    w.register(customer(2), person);
    // What the API does: decide the registration, then look up the decided profile's keys.
    let mut candidate = profile("华为技术 有限公司", CustomerKind::Organisation, &["+86 (0)10 6000 0000"], &[]);
    candidate.company = Some(Company { credit_code: Some("91440300708461136t".into()), ..Company::default() });
    let events = w.run(customer(3), {
        let owner = UserId(Uuid::from_u128(1));
        CustomerCommand::Register {
            id: customer(3),
            profile: candidate,
            owner,
            department: DepartmentId(Uuid::from_u128(2)),
        }
    });
    let CustomerEvent::CustomerRegistered(registered) = &events[0] else { panic!("{events:?}") };
    let keys = DuplicateKeys::of(&registered.profile);
    assert_eq!(
        w.views.directory.possible_duplicates_of(&keys, Some(customer(3))),
        [DuplicateMatch {
            customer: customer(1),
            fields: vec![DuplicateField::Phone, DuplicateField::CreditCode, DuplicateField::Name]
        }]
    );
    let mut person = profile("王芳芳", CustomerKind::Person, &[], &["WANG@EXAMPLE.中国"]);
    person.personal.id_number = Some("110101199003074477".into());
    let keys = DuplicateKeys::of(&decided(person));
    assert_eq!(
        w.views.directory.possible_duplicates_of(&keys, None),
        [DuplicateMatch { customer: customer(2), fields: vec![DuplicateField::Email, DuplicateField::IdNumber] }]
    );
    // A person's name alone is not a key.
    let keys = DuplicateKeys::of(&decided(profile("王芳", CustomerKind::Person, &[], &[])));
    assert!(w.views.directory.possible_duplicates_of(&keys, None).is_empty());
    // The pairs of the data-cleaning pass, scoped by a predicate.
    let page = w.views.directory.duplicate_pairs(&|_| true, 10, None);
    assert_eq!(page.total, 1);
    assert_eq!(page.pairs[0].first, customer(1));
    assert_eq!(page.pairs[0].second, customer(3));
    let page = w.views.directory.duplicate_pairs(&|row| row.id != customer(3), 10, None);
    assert_eq!(page.total, 0, "a pair needs both customers in scope");
}

fn decided(profile: Profile) -> Profile {
    let command = CustomerCommand::Register {
        id: customer(99),
        profile,
        owner: UserId(Uuid::from_u128(1)),
        department: DepartmentId(Uuid::from_u128(2)),
    };
    let ctx = Context::new(None, Timestamp(1_800_000_000_000_000));
    match Customer::decide(&CustomerState::default(), command, &ctx).unwrap().pop() {
        Some(CustomerEvent::CustomerRegistered(e)) => e.profile,
        other => panic!("{other:?}"),
    }
}

/// Written forms from small pools, so that customers share keys often and through different
/// spellings.
const PHONES: &[&str] = &["13800138000", "+86 138 0013 8000", "+8613900000001", "010-60000000", "+86 (0)10 6000 0000"];
const EMAILS: &[&str] = &["a@example.com", "A@EXAMPLE.COM", "b@例子.中国", "b@xn--fsqu00a.xn--fiqs8s", "c@example.com"];
const IDS: &[&str] = &["110101199003074477", "11010519491231002X", "440524188001010014"];
const CODES: &[&str] = &["91350100M000100Y43", "91110000600037341L"];
const NAMES: &[&str] = &["华为技术有限公司", "华为技术 有限公司", "ＡＢＣ公司", "abc公司", "张伟"];

/// One generated customer: (kind is organisation, name, phone, e-mail, identity number or credit code).
type Spec = (bool, usize, Option<usize>, Option<usize>, Option<usize>);

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        0..NAMES.len(),
        proptest::option::of(0..PHONES.len()),
        proptest::option::of(0..EMAILS.len()),
        proptest::option::of(0..3usize),
    )
}

fn profile_of(spec: &Spec) -> Profile {
    let (organisation, name, phone, email, id) = *spec;
    let kind = if organisation { CustomerKind::Organisation } else { CustomerKind::Person };
    let mut p = profile(
        NAMES[name],
        kind,
        &phone.map(|i| PHONES[i]).into_iter().collect::<Vec<_>>(),
        &email.map(|i| EMAILS[i]).into_iter().collect::<Vec<_>>(),
    );
    match (organisation, id) {
        (true, Some(i)) => {
            p.company = Some(Company { credit_code: Some(CODES[i % CODES.len()].into()), ..Company::default() })
        }
        (false, Some(i)) => p.personal.id_number = Some(IDS[i].into()),
        _ => {}
    }
    p
}

/// The fields on which two stored profiles match, compared field by field.
fn brute_fields(a: &Profile, b: &Profile) -> BTreeSet<DuplicateField> {
    let mut fields = BTreeSet::new();
    if a.personal.phones.iter().any(|p| b.personal.phones.contains(p)) {
        fields.insert(DuplicateField::Phone);
    }
    if a.personal.emails.iter().any(|x| b.personal.emails.iter().any(|y| email_key(x) == email_key(y))) {
        fields.insert(DuplicateField::Email);
    }
    if a.personal.id_number.is_some() && a.personal.id_number == b.personal.id_number {
        fields.insert(DuplicateField::IdNumber);
    }
    let code = |p: &Profile| p.company.as_ref().and_then(|c| c.credit_code.clone());
    if code(a).is_some() && code(a) == code(b) {
        fields.insert(DuplicateField::CreditCode);
    }
    let organisations = a.kind == CustomerKind::Organisation && b.kind == CustomerKind::Organisation;
    if organisations && comparison_key(&a.name) == comparison_key(&b.name) {
        fields.insert(DuplicateField::Name);
    }
    fields
}

/// Characters searched alone, by name: Chinese, full-width and Latin, shared by the names.
const SEARCHED: [&str; 4] = ["公", "伟", "c", "华"];

/// Every page (of two rows) of each one-character search by name, both ways, with totals.
fn one_character_pages(w: &World) -> Vec<(String, usize, Vec<CustomerId>)> {
    use oacis_projections::views::directory::{Order, SortKey};
    let mut out = Vec::new();
    for text in SEARCHED {
        for order in [Order::Ascending, Order::Descending] {
            let mut after = None;
            let mut seen = Vec::new();
            let total = loop {
                let page = w.views.directory.query(&DirectoryQuery {
                    text: Some(text.into()),
                    sort: vec![(SortKey::Name, order)],
                    first: 2,
                    after: after.clone(),
                    ..Default::default()
                });
                seen.extend(page.rows.iter().map(|r| r.id));
                if !page.has_next {
                    break page.total;
                }
                after = page.end_cursor;
            };
            out.push((format!("{text} {order:?}"), total, seen));
        }
    }
    out
}

/// The same, from the folded states: every customer not merged whose name's search key
/// holds the character, by (name, id).
fn brute_one_character_pages(w: &World) -> Vec<(String, usize, Vec<CustomerId>)> {
    use oacis_domain::validate::text::search_key;
    let mut out = Vec::new();
    for text in SEARCHED {
        let mut hits: Vec<(String, CustomerId)> = w
            .states
            .iter()
            .filter(|(_, s)| s.status != CustomerStatus::Merged)
            .map(|(id, s)| (s.profile.clone().unwrap().name, *id))
            .filter(|(name, _)| search_key(name).contains(text))
            .collect();
        hits.sort();
        let ascending: Vec<CustomerId> = hits.iter().map(|(_, id)| *id).collect();
        let descending: Vec<CustomerId> = ascending.iter().rev().copied().collect();
        out.push((format!("{text} Ascending"), ascending.len(), ascending));
        out.push((format!("{text} Descending"), descending.len(), descending));
    }
    out
}

/// Where a customer's keys answer: itself, or the end of its merge chain.
fn resolved(states: &BTreeMap<CustomerId, CustomerState>, mut id: CustomerId) -> CustomerId {
    while let Some(next) = states[&id].merged_into {
        id = next;
    }
    id
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// The index answers exactly what comparing every customer with every other does, after
    /// registrations, profile updates, merges and unmerges.
    #[test]
    fn duplicate_checks_agree_with_a_brute_force_pass(
        specs in proptest::collection::vec(spec(), 2..30),
        updates in proptest::collection::vec((any::<prop::sample::Index>(), spec()), 0..6),
        merges in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<bool>()), 0..8),
        candidate in spec(),
    ) {
        let mut w = World::default();
        let ids: Vec<CustomerId> = (0..specs.len()).map(|n| customer(n as u128 + 1)).collect();
        for (id, spec) in ids.iter().zip(&specs) {
            w.register(*id, profile_of(spec));
        }
        // One-character searches by name build their name orders now; the changes below
        // must drop them.
        let _ = one_character_pages(&w);
        for (at, spec) in &updates {
            let id = ids[at.index(ids.len())];
            w.run(id, CustomerCommand::UpdateProfile { profile: profile_of(spec) });
        }
        for (a, b, undo) in &merges {
            let (duplicate, survivor) = (ids[a.index(ids.len())], ids[b.index(ids.len())]);
            let live = |w: &World, id| w.states[&id].status == CustomerStatus::Active;
            if duplicate != survivor && live(&w, duplicate) && live(&w, survivor) {
                w.merge(duplicate, survivor);
                if *undo {
                    w.unmerge(duplicate);
                }
            }
        }
        prop_assert_eq!(one_character_pages(&w), brute_one_character_pages(&w));
        let profiles: BTreeMap<CustomerId, Profile> =
            w.states.iter().map(|(id, s)| (*id, s.profile.clone().unwrap())).collect();
        let brute = |candidate: &Profile, excluding: Option<CustomerId>| {
            let mut found: BTreeMap<CustomerId, BTreeSet<DuplicateField>> = BTreeMap::new();
            for (id, p) in &profiles {
                let target = resolved(&w.states, *id);
                if Some(target) == excluding {
                    continue;
                }
                let fields = brute_fields(candidate, p);
                if !fields.is_empty() {
                    found.entry(target).or_default().extend(fields);
                }
            }
            found.into_iter().map(|(customer, f)| DuplicateMatch { customer, fields: f.into_iter().collect() }).collect::<Vec<_>>()
        };
        // Every customer checked against the others, as an update would be.
        for id in &ids {
            if w.states[id].status == CustomerStatus::Merged {
                continue;
            }
            let keys = DuplicateKeys::of(&profiles[id]);
            prop_assert_eq!(w.views.directory.possible_duplicates_of(&keys, Some(*id)), brute(&profiles[id], Some(*id)));
        }
        // A new candidate, as a registration would be.
        let candidate = decided(profile_of(&candidate));
        prop_assert_eq!(w.views.directory.possible_duplicates_of(&DuplicateKeys::of(&candidate), None), brute(&candidate, None));
        // The pairs, read page by page, are every pair of resolved customers with a shared field.
        let mut expected: BTreeMap<(CustomerId, CustomerId), BTreeSet<DuplicateField>> = BTreeMap::new();
        for (a, pa) in &profiles {
            for (b, pb) in &profiles {
                let (ra, rb) = (resolved(&w.states, *a), resolved(&w.states, *b));
                let fields = brute_fields(pa, pb);
                if ra < rb && !fields.is_empty() {
                    expected.entry((ra, rb)).or_default().extend(fields);
                }
            }
        }
        let expected: Vec<DuplicatePair> = expected
            .into_iter()
            .map(|((first, second), f)| DuplicatePair { first, second, fields: f.into_iter().collect() })
            .collect();
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = w.views.directory.duplicate_pairs(&|_| true, 3, after.as_deref());
            prop_assert_eq!(page.total, expected.len());
            listed.extend(page.pairs);
            if !page.has_next {
                break;
            }
            after = page.end_cursor;
        }
        prop_assert_eq!(listed, expected);
    }
}
