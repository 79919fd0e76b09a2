//! The customer directory: every customer with what staff search, filter and sort by, and
//! queries with cursor pagination and a total count. Merged customers resolve to their
//! survivor and are left out of listings; a survivor is found by the phones and e-mails of
//! the duplicates merged into it, until they are unmerged. Duplicate detection
//! ([`CustomerDirectory::possible_duplicates_of`], [`CustomerDirectory::duplicate_pairs`])
//! looks keys up in the index of `duplicates.rs`.
//!
//! Invariants: only the rows are dumped; everything else (slots, search arena, sort indexes,
//! duplicate index, merges) is derived from them and from the merge events, so a rebuild and
//! a live follower answer alike; no hash-map order reaches an answer.

use crate::view::FastMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use oacis_domain::customer::{CustomerEvent, CustomerKind, CustomerStatus, Profile, SourceChannel};
use oacis_domain::duplicate::{DuplicateField, DuplicateKeys};
use oacis_domain::ids::{CustomerId, Date, DepartmentId, Timestamp, UserId};
use oacis_domain::validate::text::search_key;

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};
use crate::views::duplicates::{
    field_of, key_hash, DuplicateIndex, DuplicateMatch, DuplicatePair, PairPage, MAX_PAIR_PAGE,
};

/// Most rows one page may hold.
pub const MAX_PAGE: usize = 100;

/// One customer as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CustomerRow {
    /// Its id.
    pub id: CustomerId,
    /// Person or organisation.
    pub kind: CustomerKind,
    /// Name.
    pub name: String,
    /// Industry (organisations).
    pub industry: Option<String>,
    /// Phones (personal data: mask unless permitted).
    pub phones: Vec<String>,
    /// E-mails (personal data: mask unless permitted).
    pub emails: Vec<String>,
    /// Tags.
    pub tags: BTreeSet<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Source channel.
    pub source: SourceChannel,
    /// Owner.
    pub owner: UserId,
    /// Department.
    pub department: DepartmentId,
    /// Lifecycle.
    pub status: CustomerStatus,
    /// The survivor, once merged.
    pub merged_into: Option<CustomerId>,
    /// When registered.
    pub created_at: Timestamp,
    /// Last interaction.
    pub last_contact: Option<Timestamp>,
    /// The version of the customer's stream (for optimistic concurrency in clients).
    pub version: u64,
    /// Whether the customer's personal data was erased (phones and e-mails stay empty).
    pub erased: bool,
    /// The fields few rows have and no query filters by (boxed: most rows have none).
    pub more: Option<Box<RowMore>>,
}

/// The profile fields a row keeps for exports only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowMore {
    /// Head count band (organisations).
    pub company_size: Option<String>,
    /// Website (organisations).
    pub website: Option<String>,
    /// Unified social credit code (organisations).
    pub credit_code: Option<String>,
    /// Resident identity number (personal data: mask unless permitted).
    pub id_number: Option<String>,
    /// Birth date (personal data: mask unless permitted).
    pub birth_date: Option<Date>,
    /// Another system's key, set by an import.
    pub external_id: Option<String>,
}

impl RowMore {
    fn is_empty(&self) -> bool {
        *self == RowMore::default()
    }
}

impl CustomerRow {
    fn new(id: CustomerId, profile: &Profile, owner: UserId, department: DepartmentId, at: Timestamp) -> Self {
        let mut row = CustomerRow {
            id,
            kind: profile.kind,
            name: String::new(),
            industry: None,
            phones: Vec::new(),
            emails: Vec::new(),
            tags: BTreeSet::new(),
            segment: None,
            source: profile.source,
            owner,
            department,
            status: CustomerStatus::Active,
            merged_into: None,
            created_at: at,
            last_contact: None,
            version: 1,
            erased: false,
            more: None,
        };
        row.set_profile(profile);
        row
    }

    /// The export-only fields (all empty when the row has none).
    #[must_use]
    pub fn more(&self) -> RowMore {
        self.more.as_deref().cloned().unwrap_or_default()
    }

    fn set_more(&mut self, change: impl FnOnce(&mut RowMore)) {
        let mut more = self.more.take().map_or_else(RowMore::default, |m| *m);
        change(&mut more);
        self.more = (!more.is_empty()).then(|| Box::new(more));
    }

    fn set_profile(&mut self, profile: &Profile) {
        self.kind = profile.kind;
        self.name = profile.name.clone();
        self.industry = profile.company.as_ref().and_then(|c| c.industry.clone());
        self.phones = profile.personal.phones.clone();
        self.emails = profile.personal.emails.clone();
        self.tags = profile.tags.clone();
        self.segment = profile.segment.clone();
        self.source = profile.source;
        let company = profile.company.clone().unwrap_or_default();
        self.set_more(|more| {
            more.company_size = company.size;
            more.website = company.website;
            more.credit_code = company.credit_code;
            more.id_number.clone_from(&profile.personal.id_number);
            more.birth_date = profile.personal.birth_date;
        });
    }

    /// Name, industry and tags as search keys (NFKC, lower case), for substring search by
    /// anyone who may see the row.
    fn search_text(&self) -> String {
        let mut parts = vec![self.name.as_str()];
        parts.extend(self.industry.as_deref());
        parts.extend(self.tags.iter().map(String::as_str));
        search_key(&parts.join("\u{1f}")).replace('\n', " ")
    }
}

/// The search texts of every row in one buffer, one line each, so that a text search is one
/// SIMD pass over contiguous memory instead of a pointer chase per row. A row whose text
/// changes gets a new line; the old one is dead until the buffer is compacted (when half of
/// it is dead). Derived from the rows, so it is not part of the dump.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SearchArena {
    text: Vec<u8>,
    /// (start, end, slot) of every line, in buffer order.
    lines: Vec<(usize, usize, usize)>,
    /// The live line of each slot.
    live: Vec<Option<usize>>,
    dead_bytes: usize,
}

impl SearchArena {
    fn set(&mut self, slot: usize, text: &str) {
        if self.live.len() <= slot {
            self.live.resize(slot + 1, None);
        }
        if let Some(old) = self.live[slot] {
            let (start, end, _) = self.lines[old];
            self.dead_bytes += end - start + 1;
        }
        let start = self.text.len();
        self.text.extend_from_slice(text.as_bytes());
        self.lines.push((start, self.text.len(), slot));
        self.text.push(b'\n');
        self.live[slot] = Some(self.lines.len() - 1);
        if self.dead_bytes > self.text.len() / 2 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let old = std::mem::take(self);
        for (slot, line) in old.live.iter().enumerate() {
            if let Some(line) = line {
                let (start, end, _) = old.lines[*line];
                let text = String::from_utf8_lossy(&old.text[start..end]).into_owned();
                self.set(slot, &text);
            }
        }
    }

    /// The live text of a slot.
    fn line(&self, slot: usize) -> Option<&[u8]> {
        let (start, end, _) = self.lines[(*self.live.get(slot)?)?];
        Some(&self.text[start..end])
    }

    /// The slots whose text contains the needle, each once, in buffer order.
    fn search(&self, finder: &memchr::memmem::Finder<'_>) -> Vec<usize> {
        let mut found = Vec::new();
        let mut at = 0;
        // Matches come in buffer order, so the line holding each is found by walking forward.
        let mut line = 0;
        while let Some(offset) = finder.find(&self.text[at..]) {
            let position = at + offset;
            while line + 1 < self.lines.len() && self.lines[line].1 < position {
                line += 1;
            }
            let (_, end, slot) = self.lines[line];
            if self.live.get(slot) == Some(&Some(line)) {
                found.push(slot);
            }
            at = end + 1;
            if at >= self.text.len() {
                break;
            }
        }
        found
    }
}

/// For each character of the search texts, the slots whose text holds it, in slot order: a
/// search for one character (a Chinese surname) reads its list instead of scanning every
/// text, and a longer needle checks only the texts that hold its rarest character.
/// Derived from the rows, like the arena.
///
/// Beside each list, built on the first search that needs it and dropped whenever a text or
/// a status of one of its slots changes, the same slots in name order with the count of
/// those not merged: a one-character search by name then answers its total and walks only
/// its page.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CharPostings {
    slots: HashMap<char, Vec<u32>>,
    /// Name orders by (character, whether only names that hold it are listed): a cache,
    /// empty in a snapshot.
    #[serde(skip)]
    by_name: Mutex<HashMap<(char, bool), Arc<NameOrder>>>,
}

/// One character's slots in ascending (name, id) order, and how many are not merged.
#[derive(Debug)]
struct NameOrder {
    slots: Vec<u32>,
    not_merged: usize,
}

impl CharPostings {
    /// Drops the name orders of the characters of `text` (a slot holding it changed).
    fn forget_orders(&self, text: &str) {
        let mut orders = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !orders.is_empty() {
            for c in text.chars() {
                orders.remove(&(c, false));
                orders.remove(&(c, true));
            }
        }
    }

    /// Moves `slot` from the characters of `old` to those of `new`.
    fn replace(&mut self, slot: u32, old: Option<&[u8]>, new: &str) {
        let chars = |text: &str| text.chars().collect::<BTreeSet<char>>();
        let old_text = old.map(|o| String::from_utf8_lossy(o).into_owned()).unwrap_or_default();
        self.forget_orders(&old_text);
        self.forget_orders(new);
        let old = chars(&old_text);
        let new = chars(new);
        for gone in old.difference(&new) {
            if let Some(list) = self.slots.get_mut(gone) {
                if let Ok(at) = list.binary_search(&slot) {
                    list.remove(at);
                }
                if list.is_empty() {
                    self.slots.remove(gone);
                }
            }
        }
        for added in new.difference(&old) {
            let list = self.slots.entry(*added).or_default();
            if let Err(at) = list.binary_search(&slot) {
                list.insert(at, slot);
            }
        }
    }

    /// The slots that may hold `needle`: the list of its rarest character (every slot of it
    /// holds the needle when the needle is that one character). Empty when a character of
    /// the needle is in no text.
    fn candidates(&self, needle: &str) -> &[u32] {
        let mut rarest: Option<&[u32]> = None;
        for c in needle.chars() {
            let list = self.slots.get(&c).map_or(&[][..], Vec::as_slice);
            if rarest.is_none_or(|r| list.len() < r.len()) {
                rarest = Some(list);
            }
        }
        rarest.unwrap_or(&[])
    }
}

/// How to order a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By name.
    Name,
    /// By registration time.
    CreatedAt,
    /// By last interaction (never contacted last).
    LastContact,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

/// Which rows a caller may see: those it owns, or those of the listed departments (an RBAC
/// scope turned into a filter, applied before sorting, paging and counting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Rows owned by this user.
    pub owner: Option<UserId>,
    /// Rows of these departments.
    pub departments: BTreeSet<DepartmentId>,
}

impl Visible {
    /// Whether a row with this owner and department is visible.
    #[must_use]
    pub fn admits(&self, owner: UserId, department: DepartmentId) -> bool {
        self.owner == Some(owner) || self.departments.contains(&department)
    }
}

/// A directory query: filters (all must hold), sort keys, and a page.
#[derive(Debug, Clone, Default)]
pub struct DirectoryQuery {
    /// Substring of name, industry or tag (and of phone or e-mail when `search_personal`),
    /// case-insensitive; Chinese as is.
    pub text: Option<String>,
    /// Whether `text` may match inside phones and e-mails.
    pub search_personal: bool,
    /// Substring of the name alone, case-insensitive (compared as search keys, like `text`).
    pub name: Option<String>,
    /// Only rows this admits (`None`: every row).
    pub visible: Option<Visible>,
    /// Owner.
    pub owner: Option<UserId>,
    /// Department.
    pub department: Option<DepartmentId>,
    /// Segment.
    pub segment: Option<String>,
    /// Source channel.
    pub source: Option<SourceChannel>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Status (default: everything but merged).
    pub status: Option<CustomerStatus>,
    /// Registered at or after.
    pub created_from: Option<Timestamp>,
    /// Registered before.
    pub created_to: Option<Timestamp>,
    /// Last contact at or after.
    pub contacted_from: Option<Timestamp>,
    /// Last contact before.
    pub contacted_to: Option<Timestamp>,
    /// Sort keys, most significant first; ties break by id, in the direction of the last key.
    pub sort: Vec<(SortKey, Order)>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub first: usize,
    /// Continue after this place in the sort order.
    pub after: Option<DirectoryCursor>,
    /// Whether `first` may exceed [`MAX_PAGE`], up to [`MAX_EXPORT_ROWS`] (exports).
    pub export: bool,
}

/// Most rows one export reads.
pub const MAX_EXPORT_ROWS: usize = 1_000_000;

impl DirectoryQuery {
    /// `first`, within the page limit of this kind of query.
    fn page_limit(&self) -> usize {
        self.first.clamp(1, if self.export { MAX_EXPORT_ROWS } else { MAX_PAGE })
    }
}

/// Where a page ended (a Relay cursor): the last row's id and its sort values as they were
/// when the page was read, so that the next page goes on from that place in the order even
/// if the row has since been renamed, contacted, merged or moved out of the caller's scope
/// (keyed by the row's id, the next page started wherever the row sorted *now*, and skipped
/// or repeated rows). It names no other row, so a forged one only chooses where a listing
/// starts. Text form ([`DirectoryCursor::encode`]): `c1.<id>.<registered µs>.<last contact
/// µs or ->.<name as hex of its UTF-8>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryCursor {
    id: CustomerId,
    name: String,
    created_at: Timestamp,
    last_contact: Option<Timestamp>,
}

impl DirectoryCursor {
    /// The cursor of `row` as it is now.
    #[must_use]
    pub fn of(row: &CustomerRow) -> Self {
        DirectoryCursor {
            id: row.id,
            name: row.name.clone(),
            created_at: row.created_at,
            last_contact: row.last_contact,
        }
    }

    /// Its text form.
    #[must_use]
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let contact = self.last_contact.map_or_else(|| "-".to_owned(), |t| t.0.to_string());
        let mut out = format!("c1.{}.{}.{contact}.", self.id.0.simple(), self.created_at.0);
        for b in self.name.as_bytes() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Reads a text form; `None` for anything [`DirectoryCursor::encode`] does not write.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(5, '.');
        let (Some("c1"), Some(id), Some(created), Some(contact), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if name.len() % 2 != 0 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..name.len()).step_by(2).map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok()).collect();
        Some(DirectoryCursor {
            id: CustomerId(uuid::Uuid::try_parse(id).ok()?),
            name: String::from_utf8(bytes?).ok()?,
            created_at: Timestamp(created.parse().ok()?),
            last_contact: match contact {
                "-" => None,
                t => Some(Timestamp(t.parse().ok()?)),
            },
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The rows.
    pub rows: Vec<CustomerRow>,
    /// How many rows match in all.
    pub total: usize,
    /// Cursor of the last row, to ask for the next page.
    pub end_cursor: Option<DirectoryCursor>,
    /// Whether more rows follow.
    pub has_next: bool,
    /// The page's rows that the text matched in personal data only (a phone, an e-mail, a
    /// merged duplicate's contacts): showing them tells whose those are.
    pub found_by_personal: Vec<CustomerId>,
}

impl Page {
    /// The page of `first` rows from `walked` (the walk takes one row more, to know whether
    /// more follow), with the query's total.
    fn of(mut walked: Vec<&CustomerRow>, first: usize, total: usize) -> Page {
        let has_next = walked.len() > first;
        walked.truncate(first);
        let rows: Vec<CustomerRow> = walked.into_iter().cloned().collect();
        let end_cursor = rows.last().map(DirectoryCursor::of);
        Page { rows, total, end_cursor, has_next, found_by_personal: Vec::new() }
    }
}

impl DirectoryQuery {
    /// Whether it filters by owner, tags or a time range: filters that only a row-by-row
    /// check answers (no count cube, no character name order).
    fn filters_rows(&self) -> bool {
        self.owner.is_some()
            || !self.tags.is_empty()
            || self.created_from.is_some()
            || self.created_to.is_some()
            || self.contacted_from.is_some()
            || self.contacted_to.is_some()
    }
}

/// The customer directory view.
///
/// Besides the rows (the state that is dumped), it keeps derived structures so that a query
/// costs a pass over compact filter columns plus what the page returns: a slot per customer
/// with its filter columns, the search arena, and one ordered index per sort key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CustomerDirectory {
    /// By id; a hash map because every customer event looks a row up. `dump` sorts it.
    rows: HashMap<CustomerId, CustomerRow>,
    search: SearchArena,
    postings: CharPostings,
    personal_search: SearchArena,
    slot_of: BTreeMap<CustomerId, usize>,
    columns: Vec<Columns>,
    segments: BTreeMap<String, u32>,
    /// The sort indexes, each entry pointing at the customer's slot.
    by_name: BTreeMap<(String, CustomerId), u32>,
    by_created: BTreeMap<(Timestamp, CustomerId), u32>,
    by_contact: BTreeMap<(ContactKey, CustomerId), u32>,
    duplicates: DuplicateIndex,
    /// How many customers have each (status, segment, source, department): the total count
    /// of a query that filters only by these (and by departments, as a department scope
    /// does) is a sum over these cells instead of a scan of every customer. Only summed,
    /// so no hash order reaches an answer.
    cube: HashMap<CubeKey, u64>,
    /// The customers merged directly into each survivor (until unmerged), in merge order.
    absorbed: HashMap<CustomerId, Vec<CustomerId>>,
    /// Customers by external id (an import's matching key), each list in id order.
    external: HashMap<String, Vec<CustomerId>>,
}

/// The stored form of a phone fragment typed with separators or a trunk prefix: digits
/// only (`+` kept at the front, `00` read as `+`), one leading trunk `0` dropped; `None`
/// if the needle is not a phone fragment of at least three digits or is already compact.
fn phone_needle(needle: &str) -> Option<String> {
    let phone_like = needle.chars().all(|c| c.is_ascii_digit() || " -().+\u{a0}\u{3000}".contains(c));
    let digits: String = needle.chars().filter(char::is_ascii_digit).collect();
    if !phone_like || digits.len() < 3 {
        return None;
    }
    let compact = if needle.trim_start().starts_with('+') {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else if let Some(rest) = digits.strip_prefix('0') {
        rest.to_owned()
    } else {
        digits
    };
    (compact != needle).then_some(compact)
}

/// A cell of the count cube: status, segment (interned), source, department.
type CubeKey = (u8, Option<u32>, u8, DepartmentId);

fn status_code(status: CustomerStatus) -> u8 {
    match status {
        CustomerStatus::Unregistered => 0,
        CustomerStatus::Active => 1,
        CustomerStatus::Archived => 2,
        CustomerStatus::Merged => 3,
    }
}

fn source_code(source: SourceChannel) -> u8 {
    match source {
        SourceChannel::SalesVisit => 0,
        SourceChannel::Referral => 1,
        SourceChannel::MarketResearch => 2,
        SourceChannel::Website => 3,
        SourceChannel::SocialMedia => 4,
        SourceChannel::Event => 5,
        SourceChannel::Other => 6,
        SourceChannel::ColdCall => 7,
        SourceChannel::Partner => 8,
    }
}

fn cube_key(c: &Columns) -> CubeKey {
    (status_code(c.status), c.segment, source_code(c.source), c.department)
}

/// Last contact as a sort key: contacted customers by time, then the never contacted.
type ContactKey = (bool, Timestamp);

fn contact_key(last_contact: Option<Timestamp>) -> ContactKey {
    (last_contact.is_none(), last_contact.unwrap_or_default())
}

/// A place in a sort order: a customer's slot, or where a page ended.
#[derive(Clone, Copy)]
enum Place<'a> {
    Slot(usize),
    Cursor(&'a DirectoryCursor),
}

/// What a sort order compares, of one place.
struct SortValues {
    id: CustomerId,
    name_prefix: u128,
    name_len: usize,
    created_at: Timestamp,
    last_contact: Option<Timestamp>,
}

/// What filters look at, per customer, packed together for a fast scan.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Columns {
    id: CustomerId,
    status: CustomerStatus,
    source: SourceChannel,
    owner: UserId,
    department: DepartmentId,
    segment: Option<u32>,
    created_at: Timestamp,
    last_contact: Option<Timestamp>,
    has_tags: bool,
    /// The name's first sixteen bytes, big-endian, zero-padded: orders two names unless
    /// they share those bytes.
    name_prefix: u128,
    /// The name's length in bytes: two names of at most sixteen bytes with the same prefix
    /// and length are equal.
    name_len: usize,
}

/// Bytes of a name held in [`Columns::name_prefix`].
const NAME_PREFIX: usize = 16;

fn name_prefix(name: &str) -> u128 {
    let mut bytes = [0u8; NAME_PREFIX];
    let head = &name.as_bytes()[..name.len().min(NAME_PREFIX)];
    bytes[..head.len()].copy_from_slice(head);
    u128::from_be_bytes(bytes)
}

fn in_range(value: Option<Timestamp>, from: Option<Timestamp>, to: Option<Timestamp>) -> bool {
    match (from, to) {
        (None, None) => true,
        _ => value.is_some_and(|v| from.is_none_or(|f| v >= f) && to.is_none_or(|t| v < t)),
    }
}

impl CustomerDirectory {
    /// A customer's row.
    #[must_use]
    pub fn get(&self, id: CustomerId) -> Option<&CustomerRow> {
        self.rows.get(&id)
    }

    /// Every customer merged into `survivor`, directly or through other merged customers, in
    /// id order: the same person's other records. A scan of every row (for erasures, which are
    /// rare).
    #[must_use]
    pub fn merged_into(&self, survivor: CustomerId) -> Vec<CustomerId> {
        let mut found: Vec<CustomerId> = self
            .rows
            .iter()
            .filter(|(_, row)| row.merged_into.is_some())
            .filter(|(id, _)| {
                let mut at = self.rows.get(id).and_then(|row| row.merged_into);
                for _ in 0..=self.rows.len() {
                    match at {
                        Some(next) if next == survivor => return true,
                        Some(next) => at = self.rows.get(&next).and_then(|row| row.merged_into),
                        None => return false,
                    }
                }
                false
            })
            .map(|(id, _)| *id)
            .collect();
        found.sort_unstable();
        found
    }

    /// The customers whose external id (set by an import) is `external_id`, in id order.
    #[must_use]
    pub fn by_external_id(&self, external_id: &str) -> &[CustomerId] {
        self.external.get(external_id).map_or(&[], Vec::as_slice)
    }

    /// The customer that `id` ends at after following merges.
    #[must_use]
    pub fn resolve(&self, id: CustomerId) -> Option<&CustomerRow> {
        let mut row = self.rows.get(&id)?;
        for _ in 0..=self.rows.len() {
            match row.merged_into.and_then(|next| self.rows.get(&next)) {
                Some(next) => row = next,
                None => return Some(row),
            }
        }
        None
    }

    /// The customers whose personal data was erased, by id.
    pub fn erased(&self) -> impl Iterator<Item = CustomerId> + '_ {
        let mut ids: Vec<CustomerId> = self.rows.values().filter(|row| row.erased).map(|row| row.id).collect();
        ids.sort_unstable();
        ids.into_iter()
    }

    /// How many customers the directory holds (all statuses).
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The customers that may be the same as a candidate with `keys` (from
    /// [`DuplicateKeys::of`] on the profile as decided), with the fields that match, sorted by
    /// id. A key held by a merged duplicate answers for its survivor; `excluding` (the
    /// customer being updated) and the customers merged into it are left out, and so is a
    /// customer whose merge chain does not end. Costs one hash probe per key plus the matches.
    #[must_use]
    pub fn possible_duplicates_of(&self, keys: &DuplicateKeys, excluding: Option<CustomerId>) -> Vec<DuplicateMatch> {
        let mut found: BTreeMap<CustomerId, BTreeSet<DuplicateField>> = BTreeMap::new();
        for (field, key) in keys.iter() {
            for slot in self.duplicates.holders(key_hash(field, key)) {
                let Some(row) = self.live_row_of_slot(*slot) else { continue };
                if Some(row.id) != excluding {
                    found.entry(row.id).or_default().insert(field);
                }
            }
        }
        found
            .into_iter()
            .map(|(customer, fields)| DuplicateMatch { customer, fields: fields.into_iter().collect() })
            .collect()
    }

    /// One page of the pairs of customers that share a key, among those `visible` lets
    /// through (the caller's scope), ordered by (`first`, `second`) id. `first` is the page
    /// size (1 to [`MAX_PAIR_PAGE`]); `after` a cursor from a previous page (`<id>:<id>`; an
    /// unreadable one starts from the beginning). Merged customers count as their survivor.
    /// Costs a walk of the keys held twice or more, then a sort of the visible pairs.
    #[must_use]
    pub fn duplicate_pairs(
        &self,
        visible: &dyn Fn(&CustomerRow) -> bool,
        first: usize,
        after: Option<&str>,
    ) -> PairPage {
        let mut pairs: BTreeMap<(CustomerId, CustomerId), BTreeSet<DuplicateField>> = BTreeMap::new();
        for (hash, slots) in self.duplicates.shared() {
            let mut holders: Vec<&CustomerRow> =
                slots.iter().filter_map(|slot| self.live_row_of_slot(*slot)).filter(|row| visible(row)).collect();
            holders.sort_unstable_by_key(|row| row.id);
            holders.dedup_by_key(|row| row.id);
            for (i, a) in holders.iter().enumerate() {
                for b in &holders[i + 1..] {
                    pairs.entry((a.id, b.id)).or_default().insert(field_of(hash));
                }
            }
        }
        let cursor = after.and_then(|c| {
            let (a, b) = c.split_once(':')?;
            Some((CustomerId(uuid::Uuid::parse_str(a).ok()?), CustomerId(uuid::Uuid::parse_str(b).ok()?)))
        });
        let total = pairs.len();
        let first = first.clamp(1, MAX_PAIR_PAGE);
        let start = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut page: Vec<DuplicatePair> = pairs
            .range((start, std::ops::Bound::Unbounded))
            .take(first + 1)
            .map(|((a, b), fields)| DuplicatePair { first: *a, second: *b, fields: fields.iter().copied().collect() })
            .collect();
        let has_next = page.len() > first;
        page.truncate(first);
        let end_cursor = page.last().map(|p| format!("{}:{}", p.first.0, p.second.0));
        PairPage { pairs: page, total, end_cursor, has_next }
    }

    /// The customer a slot's keys answer for: itself, or its survivor if merged; `None` if
    /// the chain does not end at a customer that is not merged.
    fn live_row_of_slot(&self, slot: u32) -> Option<&CustomerRow> {
        let id = self.columns.get(usize::try_from(slot).ok()?)?.id;
        self.resolve(id).filter(|row| row.status != CustomerStatus::Merged)
    }

    /// The personal search line of `id`: its phones and e-mails and those of every customer
    /// merged into it, directly or through a chain, as search keys. Searched only for
    /// callers who may see personal data, so that a masked number cannot be recovered digit
    /// by digit with substring queries.
    fn personal_search_line(&self, id: CustomerId) -> String {
        let Some(row) = self.rows.get(&id) else { return String::new() };
        let own: Vec<String> = row.phones.iter().chain(&row.emails).map(|c| search_key(c)).collect();
        let mut text = own.join("\u{1f}");
        let mut pending: Vec<CustomerId> = self.absorbed.get(&id).cloned().unwrap_or_default();
        let mut visited = 0;
        while let Some(merged) = pending.pop() {
            visited += 1;
            if visited > self.rows.len() {
                break;
            }
            if let Some(merged_row) = self.rows.get(&merged) {
                for contact in merged_row.phones.iter().chain(&merged_row.emails) {
                    text.push('\u{1f}');
                    text.push_str(&search_key(contact));
                }
            }
            pending.extend(self.absorbed.get(&merged).into_iter().flatten());
        }
        text
    }

    /// Rewrites the search lines of `id` and of every survivor above it.
    fn refresh_search_upward(&mut self, id: CustomerId) {
        let mut at = Some(id);
        for _ in 0..=self.rows.len() {
            let Some(id) = at else { return };
            if let Some(slot) = self.slot_of.get(&id).copied() {
                let public = self.rows.get(&id).map(CustomerRow::search_text).unwrap_or_default();
                if let Ok(slot) = u32::try_from(slot) {
                    self.postings.replace(slot, self.search.line(slot as usize), &public);
                }
                self.search.set(slot, &public);
                let personal = self.personal_search_line(id);
                self.personal_search.set(slot, &personal.replace('\n', " "));
            }
            at = self.rows.get(&id).and_then(|row| row.merged_into);
        }
    }

    fn index_keys(&mut self, id: CustomerId, profile: &Profile) {
        if let Some(slot) = self.slot_of.get(&id).and_then(|slot| u32::try_from(*slot).ok()) {
            self.duplicates.set(slot, &DuplicateKeys::of(profile));
        }
    }

    fn matches(&self, c: &Columns, q: &DirectoryQuery, segment: Option<Option<u32>>) -> bool {
        let status_ok = match q.status {
            Some(status) => c.status == status,
            None => c.status != CustomerStatus::Merged,
        };
        status_ok
            && q.visible.as_ref().is_none_or(|v| v.admits(c.owner, c.department))
            && q.owner.is_none_or(|o| c.owner == o)
            && q.department.is_none_or(|d| c.department == d)
            && segment.is_none_or(|s| s.is_some() && c.segment == s)
            && q.source.is_none_or(|s| c.source == s)
            && in_range(Some(c.created_at), q.created_from, q.created_to)
            && in_range(c.last_contact, q.contacted_from, q.contacted_to)
            && (q.tags.is_empty()
                || (c.has_tags && self.rows.get(&c.id).is_some_and(|row| q.tags.iter().all(|t| row.tags.contains(t)))))
    }

    /// Orders two slots by the sort keys (see [`CustomerDirectory::order_of`]).
    fn compare(&self, a: usize, b: usize, sort: &[(SortKey, Order)]) -> std::cmp::Ordering {
        self.order_of(Place::Slot(a), Place::Slot(b), sort)
    }

    /// Orders two places by the sort keys, a slot's from the filter columns (a name is read
    /// from its row only when both names share their first sixteen bytes and one is longer);
    /// the never contacted sort after every contact in either direction; ties break by id, in
    /// the direction of the last key.
    fn order_of(&self, a: Place<'_>, b: Place<'_>, sort: &[(SortKey, Order)]) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let (x, y) = (self.sort_values(a), self.sort_values(b));
        let sort_last_descending = sort.last().is_some_and(|(_, order)| *order == Order::Descending);
        let flip = |by: std::cmp::Ordering, order: &Order| if *order == Order::Descending { by.reverse() } else { by };
        for (key, order) in sort {
            let by = match key {
                SortKey::Name => flip(
                    x.name_prefix.cmp(&y.name_prefix).then_with(|| {
                        if x.name_len == y.name_len && x.name_len <= NAME_PREFIX {
                            return Equal;
                        }
                        self.name_at(a).cmp(&self.name_at(b))
                    }),
                    order,
                ),
                SortKey::CreatedAt => flip(x.created_at.cmp(&y.created_at), order),
                SortKey::LastContact => match (x.last_contact, y.last_contact) {
                    (Some(p), Some(q)) => flip(p.cmp(&q), order),
                    (None, None) => Equal,
                    (Some(_), None) => Less,
                    (None, Some(_)) => Greater,
                },
            };
            if by != Equal {
                return by;
            }
        }
        let by_id = x.id.cmp(&y.id);
        if sort_last_descending {
            by_id.reverse()
        } else {
            by_id
        }
    }

    /// The sort values of a place.
    fn sort_values(&self, place: Place<'_>) -> SortValues {
        match place {
            Place::Slot(slot) => {
                let c = &self.columns[slot];
                SortValues {
                    id: c.id,
                    name_prefix: c.name_prefix,
                    name_len: c.name_len,
                    created_at: c.created_at,
                    last_contact: c.last_contact,
                }
            }
            Place::Cursor(cursor) => SortValues {
                id: cursor.id,
                name_prefix: name_prefix(&cursor.name),
                name_len: cursor.name.len(),
                created_at: cursor.created_at,
                last_contact: cursor.last_contact,
            },
        }
    }

    /// The whole name of a place.
    fn name_at<'a>(&'a self, place: Place<'a>) -> Option<&'a str> {
        match place {
            Place::Slot(slot) => self.rows.get(&self.columns[slot].id).map(|row| row.name.as_str()),
            Place::Cursor(cursor) => Some(cursor.name.as_str()),
        }
    }

    /// Runs a query: one pass over the compact filter columns (only over the text matches,
    /// when there is a text) to mark and count the matches, then a walk of the sort key's
    /// ordered index from the cursor until the page is full. The page continues after the
    /// cursor's place in the sort order ([`DirectoryCursor`]). Several sort keys fall back to a
    /// partial sort of the matches.
    #[must_use]
    pub fn query(&self, q: &DirectoryQuery) -> Page {
        let needle = q.text.as_deref().map(|t| search_key(t.trim()));
        let needle = needle.as_deref().filter(|n| !n.is_empty());
        let name_needle = q.name.as_deref().map(|t| search_key(t.trim()));
        let name_needle = name_needle.as_deref().filter(|n| !n.is_empty());
        let fast = match (needle, name_needle) {
            (Some(n), None) => self.one_character_by_name(n, false, q),
            (None, Some(n)) => self.one_character_by_name(n, true, q),
            _ => None,
        };
        if let Some(page) = fast {
            return page;
        }
        // Lines never contain a line break, so a needle with one matches nothing.
        let mut public: Option<Vec<usize>> = None;
        let found = needle.map(|n| {
            if n.contains('\n') {
                return Vec::new();
            }
            let finder = memchr::memmem::Finder::new(n.as_bytes());
            let mut slots = self.public_matches(n, &finder);
            if q.search_personal {
                let mut matched = slots.clone();
                matched.sort_unstable();
                public = Some(matched);
                slots.extend(self.personal_search.search(&finder));
                // A phone typed as people write it (`139 1234 5678`, `010-6000 0000`) is
                // looked for as it is stored: E.164, without separators or trunk prefix.
                if let Some(phone) = phone_needle(n) {
                    slots.extend(self.personal_search.search(&memchr::memmem::Finder::new(phone.as_bytes())));
                }
                slots.sort_unstable();
                slots.dedup();
            }
            slots
        });
        let found = match name_needle {
            None => found,
            Some(n) => {
                let finder = memchr::memmem::Finder::new(n.as_bytes());
                let named = self.name_matches(n, &finder);
                Some(match found {
                    Some(mut text) => {
                        text.sort_unstable();
                        named.into_iter().filter(|slot| text.binary_search(slot).is_ok()).collect()
                    }
                    None => named,
                })
            }
        };
        let segment = q.segment.as_ref().map(|s| self.segments.get(s).copied());
        // Either the total comes from the count cube and rows are matched as the page is
        // walked, or one pass over the filter columns marks and counts the matches.
        let (matched, total) = match self.cube_total(q, segment, found.is_some()) {
            Some(total) => (None, total),
            None => {
                let mut matched = vec![false; self.columns.len()];
                let mut total: usize = 0;
                let mut mark = |slot: usize| {
                    if self.matches(&self.columns[slot], q, segment) {
                        matched[slot] = true;
                        total += 1;
                    }
                };
                match &found {
                    Some(slots) => slots.iter().for_each(|slot| mark(*slot)),
                    None => (0..self.columns.len()).for_each(&mut mark),
                }
                (Some(matched), total)
            }
        };
        let counted = matched.is_none();
        let slot_matches = |slot: usize| match &matched {
            Some(marked) => marked.get(slot).copied().unwrap_or(false),
            None => self.columns.get(slot).is_some_and(|c| self.matches(c, q, segment)),
        };
        let first = q.page_limit();
        let after = q.after.as_ref();
        let mut page: Vec<&CustomerRow> = Vec::with_capacity(first.min(MAX_PAGE) + 1);
        {
            let mut take = |entries: &mut dyn Iterator<Item = (CustomerId, u32)>| {
                for (id, _) in entries.filter(|(_, slot)| slot_matches(*slot as usize)).take(first + 1) {
                    if let Some(row) = self.rows.get(&id) {
                        page.push(row);
                    }
                }
            };
            // With few matches, sorting them beats walking an index past the many that do not
            // (when matches are checked during the walk, only with very few).
            let spread = if counted { 64 } else { 8 };
            let selective = total.saturating_mul(spread) < self.columns.len();
            match q.sort.as_slice() {
                _ if selective => {
                    page = self.sorted_matches(&slot_matches, found.as_deref(), after, &q.sort, first + 1)
                }
                [] => {
                    let start = after.map_or(std::ops::Bound::Unbounded, |a| std::ops::Bound::Excluded(a.id));
                    let range = self.slot_of.range((start, std::ops::Bound::Unbounded));
                    for (id, _) in range.filter(|(_, slot)| slot_matches(**slot)).take(first + 1) {
                        if let Some(row) = self.rows.get(id) {
                            page.push(row);
                        }
                    }
                }
                [(SortKey::Name, order)] => {
                    let key = after.map(|a| (a.name.clone(), a.id));
                    take(&mut walk(&self.by_name, key, *order).map(|((_, id), slot)| (*id, *slot)));
                }
                [(SortKey::CreatedAt, order)] => {
                    let key = after.map(|a| (a.created_at, a.id));
                    take(&mut walk(&self.by_created, key, *order).map(|((_, id), slot)| (*id, *slot)));
                }
                [(SortKey::LastContact, Order::Ascending)] => {
                    let key = after.map(|a| (contact_key(a.last_contact), a.id));
                    take(&mut walk(&self.by_contact, key, Order::Ascending).map(|((_, id), slot)| (*id, *slot)));
                }
                // Most recent first, and the never contacted still last: the contacted part of
                // the index backwards, then the rest, backwards as ties break.
                [(SortKey::LastContact, Order::Descending)] => {
                    let never = (contact_key(None), CustomerId(uuid::Uuid::nil()));
                    let (contacted, rest) = match after.map(|a| (contact_key(a.last_contact), a.id)) {
                        None => (Some(self.by_contact.range(..never)), self.by_contact.range(never..)),
                        Some(key) if key.0 .0 => (None, self.by_contact.range(never..key)),
                        Some(key) => (Some(self.by_contact.range(..key)), self.by_contact.range(never..)),
                    };
                    let mut entries = contacted.into_iter().flatten().rev().chain(rest.rev());
                    take(&mut (&mut entries).map(|((_, id), slot)| (*id, *slot)));
                }
                _ => page = self.sorted_matches(&slot_matches, found.as_deref(), after, &q.sort, first + 1),
            }
        }
        let mut page = Page::of(page, first, total);
        if let Some(public) = public {
            page.found_by_personal = page
                .rows
                .iter()
                .filter(|row| self.slot_of.get(&row.id).is_some_and(|slot| public.binary_search(slot).is_err()))
                .map(|row| row.id)
                .collect();
        }
        page
    }

    /// A search for one character, by name, with no filter but the default status (every
    /// status but merged) and no scope, answered from the character's name order: the total
    /// is its count, the page a walk from the cursor. `None` for any other query.
    fn one_character_by_name(&self, needle: &str, names_only: bool, q: &DirectoryQuery) -> Option<Page> {
        let mut chars = needle.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else { return None };
        let [(SortKey::Name, order)] = q.sort.as_slice() else { return None };
        let plain = (names_only || !q.search_personal)
            && !q.filters_rows()
            && q.visible.is_none()
            && q.status.is_none()
            && q.department.is_none()
            && q.segment.is_none()
            && q.source.is_none();
        if !plain || c == '\n' {
            return None;
        }
        let name_order = self.name_order(c, names_only);
        let slots = name_order.as_ref().map_or(&[][..], |o| o.slots.as_slice());
        let sort = [(SortKey::Name, *order)];
        // The walk in the asked order: ascending as stored, descending from the end.
        let at = |i: usize| match order {
            Order::Ascending => slots[i] as usize,
            Order::Descending => slots[slots.len() - 1 - i] as usize,
        };
        // The first position after the cursor's place.
        let start = match &q.after {
            None => 0,
            Some(a) => {
                let (mut low, mut high) = (0, slots.len());
                while low < high {
                    let mid = (low + high) / 2;
                    if self.order_of(Place::Slot(at(mid)), Place::Cursor(a), &sort).is_gt() {
                        high = mid;
                    } else {
                        low = mid + 1;
                    }
                }
                low
            }
        };
        let first = q.page_limit();
        let page: Vec<&CustomerRow> = (start..slots.len())
            .map(at)
            .filter(|slot| self.columns[*slot].status != CustomerStatus::Merged)
            .take(first + 1)
            .filter_map(|slot| self.rows.get(&self.columns[slot].id))
            .collect();
        Some(Page::of(page, first, name_order.map_or(0, |o| o.not_merged)))
    }

    /// The name order of `c`'s slots, built now if no search has needed it since it changed.
    fn name_order(&self, c: char, names_only: bool) -> Option<Arc<NameOrder>> {
        let key = (c, names_only);
        let cached = self.postings.by_name.lock().ok().and_then(|orders| orders.get(&key).cloned());
        if cached.is_some() {
            return cached;
        }
        let mut slots = self.postings.slots.get(&c)?.clone();
        if names_only {
            let mut utf8 = [0; 4];
            let finder = memchr::memmem::Finder::new(c.encode_utf8(&mut utf8).as_bytes());
            slots.retain(|slot| self.name_holds(*slot as usize, &finder));
        }
        let ascending = [(SortKey::Name, Order::Ascending)];
        slots.sort_by(|a, b| self.compare(*a as usize, *b as usize, &ascending));
        let not_merged = slots.iter().filter(|s| self.columns[**s as usize].status != CustomerStatus::Merged).count();
        let built = Arc::new(NameOrder { slots, not_merged });
        if let Ok(mut orders) = self.postings.by_name.lock() {
            orders.insert(key, built.clone());
        }
        Some(built)
    }

    /// Whether the name of `slot` (its search text up to the first field separator) holds
    /// what `finder` looks for.
    fn name_holds(&self, slot: usize, finder: &memchr::memmem::Finder<'_>) -> bool {
        self.search.line(slot).is_some_and(|line| {
            let name = memchr::memchr(0x1f, line).map_or(line, |end| &line[..end]);
            finder.find(name).is_some()
        })
    }

    /// The slots whose name holds `needle`, in ascending slot order: the candidates of the
    /// postings of its rarest character, each checked.
    fn name_matches(&self, needle: &str, finder: &memchr::memmem::Finder<'_>) -> Vec<usize> {
        if needle.contains('\n') {
            return Vec::new();
        }
        self.postings
            .candidates(needle)
            .iter()
            .map(|slot| *slot as usize)
            .filter(|slot| self.name_holds(*slot, finder))
            .collect()
    }

    /// The slots whose public search text holds `needle`: from the postings of its rarest
    /// character when they name few enough texts, else by one pass over the arena.
    fn public_matches(&self, needle: &str, finder: &memchr::memmem::Finder<'_>) -> Vec<usize> {
        let candidates = self.postings.candidates(needle);
        if candidates.len().saturating_mul(4) > self.columns.len() {
            return self.search.search(finder);
        }
        let single = needle.chars().nth(1).is_none();
        candidates
            .iter()
            .map(|slot| *slot as usize)
            .filter(|slot| single || self.search.line(*slot).is_some_and(|line| finder.find(line).is_some()))
            .collect()
    }

    /// The first `limit` matches after the cursor row, by a partial sort of every match
    /// (among `candidates` when a text search has narrowed them).
    fn sorted_matches<'a>(
        &'a self,
        matches: &dyn Fn(usize) -> bool,
        candidates: Option<&[usize]>,
        after: Option<&DirectoryCursor>,
        sort: &[(SortKey, Order)],
        limit: usize,
    ) -> Vec<&'a CustomerRow> {
        // A text search already named the only slots that can match.
        let slots: Box<dyn Iterator<Item = usize>> = match candidates {
            Some(found) => Box::new(found.iter().copied()),
            None => Box::new(0..self.columns.len()),
        };
        // Each match with a coarse key of its first sort key, so that most comparisons read
        // one contiguous array; equal coarse keys fall back to the full order.
        let mut keyed: Vec<(u128, usize)> = slots
            .filter(|slot| matches(*slot))
            .filter(|slot| after.is_none_or(|a| self.order_of(Place::Slot(*slot), Place::Cursor(a), sort).is_gt()))
            .map(|slot| (self.coarse_key(slot, sort.first()), slot))
            .collect();
        let order = |a: &(u128, usize), b: &(u128, usize)| a.0.cmp(&b.0).then_with(|| self.compare(a.1, b.1, sort));
        if keyed.len() > limit {
            keyed.select_nth_unstable_by(limit - 1, order);
            keyed.truncate(limit);
        }
        keyed.sort_by(order);
        keyed.iter().filter_map(|(_, slot)| self.rows.get(&self.columns[*slot].id)).collect()
    }

    /// A key that never orders two slots against `sort_key` (a < b implies key(a) <= key(b)),
    /// in the key's direction; 0 for every slot when there is no sort key.
    fn coarse_key(&self, slot: usize, sort_key: Option<&(SortKey, Order)>) -> u128 {
        // i64 to u128 keeping the order.
        let time = |t: Timestamp| u128::from(t.0.cast_unsigned() ^ (1 << 63));
        let c = &self.columns[slot];
        match sort_key {
            None => 0,
            Some((key, order)) => {
                let key = match key {
                    SortKey::Name => c.name_prefix,
                    SortKey::CreatedAt => time(c.created_at),
                    // The never contacted last in either direction.
                    SortKey::LastContact => match c.last_contact {
                        None => return u128::MAX,
                        Some(t) => time(t),
                    },
                };
                if *order == Order::Descending {
                    !key
                } else {
                    key
                }
            }
        }
    }

    /// Brings the derived structures of `id` in line with its row, given the sort keys it had.
    /// `before.0` is the old name only if it may have changed.
    fn reindex(&mut self, id: CustomerId, before: Option<(Option<String>, Timestamp, Option<Timestamp>)>) {
        let Some(row) = self.rows.get(&id) else { return };
        let slot = self.slot_of.get(&id).copied().unwrap_or(self.columns.len());
        // Slots count customers; four billion of them is beyond any directory in memory.
        let Ok(slot32) = u32::try_from(slot) else { return };
        match before {
            Some((name, created_at, last_contact)) => {
                // Most events change no sort key; only touch the indexes whose key moved.
                if let Some(name) = name.filter(|name| *name != row.name) {
                    self.by_name.remove(&(name, id));
                    self.by_name.insert((row.name.clone(), id), slot32);
                }
                if created_at != row.created_at {
                    self.by_created.remove(&(created_at, id));
                    self.by_created.insert((row.created_at, id), slot32);
                }
                if last_contact != row.last_contact {
                    self.by_contact.remove(&(contact_key(last_contact), id));
                    self.by_contact.insert((contact_key(row.last_contact), id), slot32);
                }
            }
            None => {
                self.by_name.insert((row.name.clone(), id), slot32);
                self.by_created.insert((row.created_at, id), slot32);
                self.by_contact.insert((contact_key(row.last_contact), id), slot32);
            }
        }
        let next_segment = u32::try_from(self.segments.len()).unwrap_or(u32::MAX);
        let segment = row.segment.as_ref().map(|s| match self.segments.get(s) {
            Some(known) => *known,
            None => *self.segments.entry(s.clone()).or_insert(next_segment),
        });
        let columns = Columns {
            id,
            status: row.status,
            source: row.source,
            owner: row.owner,
            department: row.department,
            segment,
            created_at: row.created_at,
            last_contact: row.last_contact,
            has_tags: !row.tags.is_empty(),
            name_prefix: name_prefix(&row.name),
            name_len: row.name.len(),
        };
        *self.cube.entry(cube_key(&columns)).or_insert(0) += 1;
        if slot < self.columns.len() {
            if self.columns[slot].status != columns.status {
                if let Some(line) = self.search.line(slot) {
                    self.postings.forget_orders(&String::from_utf8_lossy(line));
                }
            }
            let old = cube_key(&self.columns[slot]);
            if let Some(count) = self.cube.get_mut(&old) {
                *count = count.saturating_sub(1);
            }
            self.columns[slot] = columns;
        } else {
            self.slot_of.insert(id, slot);
            self.columns.push(columns);
        }
    }

    /// The total of a query that filters only by status, segment, source and departments,
    /// from the count cube; `None` for any other query (it needs a scan).
    fn cube_total(&self, q: &DirectoryQuery, segment: Option<Option<u32>>, text: bool) -> Option<usize> {
        let countable = !text && !q.filters_rows() && q.visible.as_ref().is_none_or(|v| v.owner.is_none());
        if !countable {
            return None;
        }
        let merged = status_code(CustomerStatus::Merged);
        let total: u64 = self
            .cube
            .iter()
            .filter(|((status, seg, source, department), _)| {
                q.status.map_or(*status != merged, |s| *status == status_code(s))
                    && segment.is_none_or(|s| s.is_some() && *seg == s)
                    && q.source.is_none_or(|s| *source == source_code(s))
                    && q.department.is_none_or(|d| *department == d)
                    && q.visible.as_ref().is_none_or(|v| v.departments.contains(department))
            })
            .map(|(_, count)| *count)
            .sum();
        usize::try_from(total).ok()
    }
}

/// The entries of an ordered index after `from` (exclusive), in `order`.
fn walk<'a, K: Ord + Clone>(
    index: &'a BTreeMap<(K, CustomerId), u32>,
    from: Option<(K, CustomerId)>,
    order: Order,
) -> Box<dyn Iterator<Item = (&'a (K, CustomerId), &'a u32)> + 'a> {
    use std::ops::Bound::{Excluded, Unbounded};
    match (order, from) {
        (Order::Ascending, None) => Box::new(index.iter()),
        (Order::Descending, None) => Box::new(index.iter().rev()),
        (Order::Ascending, Some(key)) => Box::new(index.range((Excluded(key), Unbounded))),
        (Order::Descending, Some(key)) => Box::new(index.range((Unbounded, Excluded(key))).rev()),
    }
}

impl View for CustomerDirectory {
    fn name(&self) -> &'static str {
        "customer_directory"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        let AnyEvent::Customer(id, event) = &record.event else { return Ok(()) };
        if let CustomerEvent::CustomerRegistered(e) = event {
            let mut row = CustomerRow::new(*id, &e.profile, e.owner, e.department, record.recorded_at);
            row.version = record.version;
            let before = self.rows.insert(*id, row).map(|old| (Some(old.name), old.created_at, old.last_contact));
            self.reindex(*id, before);
            self.index_keys(*id, &e.profile);
            self.refresh_search_upward(*id);
            return Ok(());
        }
        let row = self.rows.get_mut(id).ok_or_else(|| format!("customer {id} was never registered"))?;
        row.version = record.version;
        let renamed = matches!(event, CustomerEvent::CustomerProfileUpdated(_));
        let before = Some((renamed.then(|| row.name.clone()), row.created_at, row.last_contact));
        let old_external = row.more.as_ref().and_then(|m| m.external_id.clone());
        match event {
            CustomerEvent::CustomerRegistered(_) => {}
            CustomerEvent::CustomerProfileUpdated(e) => {
                row.set_profile(&e.profile);
                self.index_keys(*id, &e.profile);
                self.refresh_search_upward(*id);
            }
            CustomerEvent::CustomerOwnerChanged(e) => {
                row.owner = e.owner;
                row.department = e.department;
            }
            CustomerEvent::CustomerPersonalDataErased(_) => {
                row.phones.clear();
                row.emails.clear();
                row.set_more(|more| {
                    more.id_number = None;
                    more.birth_date = None;
                });
                row.erased = true;
                if let Some(slot) = self.slot_of.get(id).and_then(|slot| u32::try_from(*slot).ok()) {
                    self.duplicates
                        .forget_fields(slot, &[DuplicateField::Phone, DuplicateField::Email, DuplicateField::IdNumber]);
                }
                self.refresh_search_upward(*id);
            }
            CustomerEvent::CustomerArchived(_) => row.status = CustomerStatus::Archived,
            CustomerEvent::CustomerRestored(_) => row.status = CustomerStatus::Active,
            CustomerEvent::CustomerMerged(e) => {
                row.status = CustomerStatus::Merged;
                row.merged_into = Some(e.into);
                self.absorbed.entry(e.into).or_default().push(*id);
                self.refresh_search_upward(e.into);
            }
            CustomerEvent::CustomerUnmerged(e) => {
                row.status = e.status;
                row.merged_into = None;
                if let Some(merged) = self.absorbed.get_mut(&e.from) {
                    merged.retain(|m| m != id);
                    if merged.is_empty() {
                        self.absorbed.remove(&e.from);
                    }
                }
                self.refresh_search_upward(e.from);
            }
            CustomerEvent::InteractionLogged(e) => {
                row.last_contact = Some(row.last_contact.map_or(e.occurred_at, |t| t.max(e.occurred_at)));
            }
            CustomerEvent::CustomerImported(e) => {
                // Business time from the other system: when it registered the customer, and
                // its last contact if later than any known here.
                if let (true, Some(at)) = (e.registered, e.registered_at) {
                    row.created_at = at;
                }
                if let Some(at) = e.last_contact {
                    row.last_contact = Some(row.last_contact.map_or(at, |t| t.max(at)));
                }
                if e.external_id.is_some() {
                    row.set_more(|more| more.external_id.clone_from(&e.external_id));
                }
            }
            CustomerEvent::CustomerImportReverted(e) => {
                row.last_contact = e.last_contact;
                row.set_more(|more| more.external_id.clone_from(&e.external_id));
            }
            CustomerEvent::CustomerAbsorbed(_)
            | CustomerEvent::CustomerReleased(_)
            | CustomerEvent::PurchaseRecorded(_)
            | CustomerEvent::PurchaseReversed(_) => {
                return Ok(());
            }
        }
        let new_external = self.rows.get(id).and_then(|row| row.more.as_ref()?.external_id.clone());
        if new_external != old_external {
            if let Some(old) = old_external {
                if let Some(ids) = self.external.get_mut(&old) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        self.external.remove(&old);
                    }
                }
            }
            if let Some(new) = new_external {
                let ids = self.external.entry(new).or_default();
                if let Err(at) = ids.binary_search(id) {
                    ids.insert(at, *id);
                }
            }
        }
        self.reindex(*id, before);
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        let mut rows: Vec<_> = self.rows.values().collect();
        rows.sort_unstable_by_key(|row| row.id);
        dump_lines(out, self.name(), rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_fragments_are_searched_in_their_stored_form() {
        assert_eq!(phone_needle("139 1234 5678").as_deref(), Some("13912345678"));
        assert_eq!(phone_needle("010-6000 0000").as_deref(), Some("1060000000"));
        assert_eq!(phone_needle("+86 139-1234").as_deref(), Some("+861391234"));
        assert_eq!(phone_needle("0086 139").as_deref(), Some("+86139"));
        assert_eq!(phone_needle("1391234"), None, "already compact");
        assert_eq!(phone_needle("王 139"), None, "not a phone");
        assert_eq!(phone_needle("1-2"), None, "too short");
    }

    #[test]
    fn character_postings_follow_each_text_and_name_the_rarest_list() {
        let mut postings = CharPostings::default();
        postings.replace(0, None, "王伟");
        postings.replace(1, None, "王芳");
        postings.replace(2, None, "李伟");
        assert_eq!(postings.candidates("王"), [0, 1]);
        assert_eq!(postings.candidates("伟"), [0, 2]);
        postings.replace(0, Some("王伟".as_bytes()), "张伟");
        assert_eq!(postings.candidates("王"), [1], "a renamed text leaves its old characters");
        assert_eq!(postings.candidates("张伟"), [0], "the rarest character's list");
        assert!(postings.candidates("赵").is_empty());
        assert!(postings.candidates("王赵").is_empty(), "a character in no text: no candidates");
        postings.replace(1, Some("王芳".as_bytes()), "");
        assert!(!postings.slots.contains_key(&'王'), "empty lists are dropped");
    }

    #[test]
    fn the_search_arena_finds_only_current_texts_and_survives_compaction() {
        let finder = |n: &str| memchr::memmem::Finder::new(n.as_bytes()).into_owned();
        let mut arena = SearchArena::default();
        arena.set(0, "张伟\u{1f}+8613800138000");
        arena.set(1, "anna müller\u{1f}vip");
        for round in 0..50 {
            arena.set(2, &format!("round {round} 客户"));
        }
        assert!(arena.text.len() < 400, "compacted: {} bytes", arena.text.len());
        assert_eq!(arena.search(&finder("round 49")), [2]);
        assert!(arena.search(&finder("round 48")).is_empty(), "old text is dead");
        assert_eq!(arena.search(&finder("客户")), [2]);
        assert_eq!(arena.search(&finder("138")), [0]);
        assert_eq!(arena.search(&finder("\u{1f}")), [0, 1]);
        assert!(arena.search(&finder("zzz")).is_empty());
    }
}
