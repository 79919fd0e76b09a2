//! The customer directory: every customer with what staff search, filter and sort by, and
//! queries with cursor pagination and a total count. Merged customers resolve to their
//! survivor and are left out of listings.

use std::collections::{BTreeMap, BTreeSet};

use oacis_domain::customer::{CustomerEvent, CustomerKind, CustomerStatus, Profile, SourceChannel};
use oacis_domain::ids::{CustomerId, DepartmentId, Timestamp, UserId};

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, View};

/// Most rows one page may hold.
pub const MAX_PAGE: usize = 100;

/// One customer as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        };
        row.set_profile(profile);
        row
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
    }

    /// Lower-cased name, industry, phones, e-mails and tags, for substring search.
    fn search_text(&self) -> String {
        let mut parts = vec![self.name.as_str()];
        parts.extend(self.industry.as_deref());
        parts.extend(self.phones.iter().map(String::as_str));
        parts.extend(self.emails.iter().map(String::as_str));
        parts.extend(self.tags.iter().map(String::as_str));
        parts.join("\u{1f}").to_lowercase().replace('\n', " ")
    }
}

/// The search texts of every row in one buffer, one line each, so that a text search is one
/// SIMD pass over contiguous memory instead of a pointer chase per row. A row whose text
/// changes gets a new line; the old one is dead until the buffer is compacted (when half of
/// it is dead). Derived from the rows, so it is not part of the dump.
#[derive(Debug, Default)]
struct SearchArena {
    text: Vec<u8>,
    /// (start, end, row) of every line, in buffer order.
    lines: Vec<(usize, usize, CustomerId)>,
    /// The live line of each row.
    live: BTreeMap<CustomerId, usize>,
    dead_bytes: usize,
}

impl SearchArena {
    fn set(&mut self, id: CustomerId, text: &str) {
        if let Some(old) = self.live.get(&id) {
            let (start, end, _) = self.lines[*old];
            self.dead_bytes += end - start + 1;
        }
        let start = self.text.len();
        self.text.extend_from_slice(text.as_bytes());
        self.lines.push((start, self.text.len(), id));
        self.text.push(b'\n');
        self.live.insert(id, self.lines.len() - 1);
        if self.dead_bytes > self.text.len() / 2 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let old = std::mem::take(self);
        for (id, line) in &old.live {
            let (start, end, _) = old.lines[*line];
            let text = String::from_utf8_lossy(&old.text[start..end]).into_owned();
            self.set(*id, &text);
        }
    }

    /// The rows whose text contains the needle.
    fn search(&self, finder: &memchr::memmem::Finder<'_>) -> BTreeSet<CustomerId> {
        let mut found = BTreeSet::new();
        let mut at = 0;
        while let Some(offset) = finder.find(&self.text[at..]) {
            let position = at + offset;
            let line = self.lines.partition_point(|(start, _, _)| *start <= position).saturating_sub(1);
            let (_, end, id) = self.lines[line];
            if self.live.get(&id) == Some(&line) {
                found.insert(id);
            }
            at = end + 1;
            if at >= self.text.len() {
                break;
            }
        }
        found
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

/// A directory query: filters (all must hold), sort keys, and a page.
#[derive(Debug, Clone, Default)]
pub struct DirectoryQuery {
    /// Substring of name, industry, phone, e-mail or tag (case-insensitive; Chinese as is).
    pub text: Option<String>,
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
    /// Sort keys, most significant first; ties break by id.
    pub sort: Vec<(SortKey, Order)>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub first: usize,
    /// Continue after the row with this cursor.
    pub after: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The rows.
    pub rows: Vec<CustomerRow>,
    /// How many rows match in all.
    pub total: usize,
    /// Cursor of the last row, to ask for the next page.
    pub end_cursor: Option<String>,
    /// Whether more rows follow.
    pub has_next: bool,
}

/// The customer directory view.
#[derive(Debug, Default)]
pub struct CustomerDirectory {
    rows: BTreeMap<CustomerId, CustomerRow>,
    search: SearchArena,
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

    fn matches(row: &CustomerRow, q: &DirectoryQuery) -> bool {
        let status_ok = match q.status {
            Some(status) => row.status == status,
            None => row.status != CustomerStatus::Merged,
        };
        status_ok
            && q.owner.is_none_or(|o| row.owner == o)
            && q.department.is_none_or(|d| row.department == d)
            && q.segment.as_ref().is_none_or(|s| row.segment.as_ref() == Some(s))
            && q.source.is_none_or(|s| row.source == s)
            && q.tags.iter().all(|t| row.tags.contains(t))
            && in_range(Some(row.created_at), q.created_from, q.created_to)
            && in_range(row.last_contact, q.contacted_from, q.contacted_to)
    }

    fn compare(a: &CustomerRow, b: &CustomerRow, sort: &[(SortKey, Order)]) -> std::cmp::Ordering {
        for (key, order) in sort {
            let by = match key {
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::CreatedAt => a.created_at.cmp(&b.created_at),
                // Never contacted sorts after every contact in ascending order.
                SortKey::LastContact => match (a.last_contact, b.last_contact) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                },
            };
            let by = if *order == Order::Descending { by.reverse() } else { by };
            if by != std::cmp::Ordering::Equal {
                return by;
            }
        }
        a.id.cmp(&b.id)
    }

    /// Runs a query: one pass over the directory to filter and count, then a partial sort
    /// for the page. The cursor is the id of the last row seen; the page continues after that
    /// row's place in the sort order (even if it no longer matches); an unknown cursor starts
    /// from the beginning.
    #[must_use]
    pub fn query(&self, q: &DirectoryQuery) -> Page {
        let needle = q.text.as_deref().map(|t| oacis_domain::validate::normalise(t).to_lowercase());
        let finder = needle.as_deref().filter(|n| !n.is_empty()).map(|n| memchr::memmem::Finder::new(n.as_bytes()));
        let after = q
            .after
            .as_deref()
            .and_then(|cursor| uuid::Uuid::parse_str(cursor).ok())
            .and_then(|id| self.rows.get(&CustomerId(id)));
        // Lines never contain a line break, so a needle with one matches nothing.
        let found = match (&finder, needle.as_deref()) {
            (Some(_), Some(n)) if n.contains('\n') => Some(BTreeSet::new()),
            (Some(f), _) => Some(self.search.search(f)),
            (None, _) => None,
        };
        let candidates: Box<dyn Iterator<Item = &CustomerRow>> = match &found {
            Some(ids) => Box::new(ids.iter().filter_map(|id| self.rows.get(id))),
            None => Box::new(self.rows.values()),
        };
        let mut total = 0;
        let mut rest: Vec<&CustomerRow> = Vec::new();
        for row in candidates.filter(|r| Self::matches(r, q)) {
            total += 1;
            if after.is_none_or(|a| Self::compare(row, a, &q.sort).is_gt()) {
                rest.push(row);
            }
        }
        let first = q.first.clamp(1, MAX_PAGE);
        let has_next = rest.len() > first;
        if has_next {
            rest.select_nth_unstable_by(first - 1, |a, b| Self::compare(a, b, &q.sort));
            rest.truncate(first);
        }
        rest.sort_by(|a, b| Self::compare(a, b, &q.sort));
        let rows: Vec<CustomerRow> = rest.into_iter().cloned().collect();
        let end_cursor = rows.last().map(|r| r.id.0.to_string());
        Page { rows, total, end_cursor, has_next }
    }
}

impl View for CustomerDirectory {
    fn name(&self) -> &'static str {
        "customer_directory"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        let AnyEvent::Customer(id, event) = &record.event else { return Ok(()) };
        if let CustomerEvent::CustomerRegistered(e) = event {
            let row = CustomerRow::new(*id, &e.profile, e.owner, e.department, record.recorded_at);
            self.search.set(*id, &row.search_text());
            self.rows.insert(*id, row);
            return Ok(());
        }
        let row = self.rows.get_mut(id).ok_or_else(|| format!("customer {id} was never registered"))?;
        match event {
            CustomerEvent::CustomerRegistered(_) => {}
            CustomerEvent::CustomerProfileUpdated(e) => {
                row.set_profile(&e.profile);
                self.search.set(*id, &row.search_text());
            }
            CustomerEvent::CustomerOwnerChanged(e) => {
                row.owner = e.owner;
                row.department = e.department;
            }
            CustomerEvent::CustomerArchived(_) => row.status = CustomerStatus::Archived,
            CustomerEvent::CustomerRestored(_) => row.status = CustomerStatus::Active,
            CustomerEvent::CustomerMerged(e) => {
                row.status = CustomerStatus::Merged;
                row.merged_into = Some(e.into);
            }
            CustomerEvent::InteractionLogged(e) => {
                row.last_contact = Some(row.last_contact.map_or(e.occurred_at, |t| t.max(e.occurred_at)));
            }
            CustomerEvent::CustomerAbsorbed(_)
            | CustomerEvent::PurchaseRecorded(_)
            | CustomerEvent::PurchaseReversed(_) => {}
        }
        Ok(())
    }

    fn dump(&self, out: &mut String) {
        dump_lines(out, self.name(), self.rows.values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_arena_finds_only_current_texts_and_survives_compaction() {
        let id = |n: u128| CustomerId(uuid::Uuid::from_u128(n));
        let finder = |n: &str| memchr::memmem::Finder::new(n.as_bytes()).into_owned();
        let mut arena = SearchArena::default();
        arena.set(id(1), "张伟\u{1f}+8613800138000");
        arena.set(id(2), "anna müller\u{1f}vip");
        for round in 0..50 {
            arena.set(id(3), &format!("round {round} 客户"));
        }
        assert!(arena.text.len() < 400, "compacted: {} bytes", arena.text.len());
        assert_eq!(arena.search(&finder("round 49")), BTreeSet::from([id(3)]));
        assert!(arena.search(&finder("round 48")).is_empty(), "old text is dead");
        assert_eq!(arena.search(&finder("客户")), BTreeSet::from([id(3)]));
        assert_eq!(arena.search(&finder("138")), BTreeSet::from([id(1)]));
        assert_eq!(arena.search(&finder("\u{1f}")), BTreeSet::from([id(1), id(2)]));
        assert!(arena.search(&finder("zzz")).is_empty());
    }
}
