//! Customers: the directory as a Relay connection (scoped before it is sorted, paged and
//! counted), one customer by id (now or as of a past seq or time), and every customer
//! command as a mutation. Personal fields go through [`crate::access::Reveal`].

use std::collections::BTreeSet;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, InputObject, Object, SimpleObject};
use oacis_domain::authz::{Permission, Resource};
use oacis_domain::customer::{
    Address, Company, Customer, CustomerCommand, CustomerPersonal, CustomerState, Profile, SocialHandle,
};
use oacis_domain::ids::{CustomerId, Date, DepartmentId, EntryId, UserId};
use oacis_domain::FieldCode;
use oacis_projections::views::directory::{CustomerRow, DirectoryCursor, DirectoryQuery, Order, SortKey};

use super::error::{ApiError, ApiResult};
use super::scalars::{parse_id, parse_optional_time, parse_time, time_text, MutationResult};
use super::scalars::{CustomerKind, CustomerStatus, Direction, InteractionChannel, SourceChannel};
use super::{app, caller, origin, page_size, request, views, Counted};
use crate::access::{mask_all, mask_email, mask_id_number, mask_phone, resource, Caller};

/// A customer as the API shows it.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex, serial)]
pub struct CustomerNode {
    /// Id (UUID).
    pub id: String,
    /// Person or organisation.
    pub kind: CustomerKind,
    /// Name, as typed.
    pub name: String,
    /// Industry (organisations).
    pub industry: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Source channel.
    pub source: SourceChannel,
    /// Owning user id.
    pub owner: String,
    /// Owning department id.
    pub department: String,
    /// Lifecycle.
    pub status: CustomerStatus,
    /// The survivor, once merged.
    pub merged_into: Option<String>,
    /// When registered (RFC 3339; absent in as-of reads).
    pub created_at: Option<String>,
    /// Last interaction (RFC 3339).
    pub last_contact: Option<String>,
    /// The customer's version: send it back as `expectedVersion` to refuse an edit made
    /// on stale data (absent in as-of reads).
    pub version: Option<u64>,
    #[graphql(skip)]
    personal_data_erased: bool,
    #[graphql(skip)]
    raw_phones: Vec<String>,
    #[graphql(skip)]
    raw_emails: Vec<String>,
    #[graphql(skip)]
    raw_id_number: Option<String>,
    #[graphql(skip)]
    raw_birth_date: Option<String>,
    #[graphql(skip)]
    raw_company: Option<Company>,
    #[graphql(skip)]
    raw_addresses: Vec<Address>,
    #[graphql(skip)]
    raw_social: Vec<SocialHandle>,
    #[graphql(skip)]
    customer: CustomerId,
    #[graphql(skip)]
    resource: Resource,
}

#[ComplexObject]
impl CustomerNode {
    /// Whether the customer's personal data was erased (`erasePersonalData`): phones,
    /// e-mails, identity number and birth date are then empty for good, in as-of reads too.
    /// True as well when the key store holds the customer as erased though the log read here
    /// does not (a log restored from before the erasure, beside the keys from after it).
    async fn personal_data_erased(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        use oacis_eventlog::EventStore;
        let keys = app(ctx)?.bus.store().keys().cloned();
        Ok(self.personal_data_erased || keys.is_some_and(|k| k.is_erased(&self.customer.stream())))
    }

    /// Phones in E.164, masked (`+86138****5678`) without `customer.read_personal`.
    async fn phones(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        self.personal(ctx, &self.raw_phones, mask_phone)
    }

    /// E-mail addresses, masked (`z***@example.com`) without `customer.read_personal`.
    async fn emails(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        self.personal(ctx, &self.raw_emails, mask_email)
    }

    /// Resident identity number, masked (`110105********002X`) without
    /// `customer.read_personal`.
    async fn id_number(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let values: Vec<String> = self.raw_id_number.iter().cloned().collect();
        Ok(self.personal(ctx, &values, mask_id_number)?.into_iter().next())
    }

    /// Birth date (`YYYY-MM-DD`), masked as `****` without `customer.read_personal`.
    async fn birth_date(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let values: Vec<String> = self.raw_birth_date.iter().cloned().collect();
        Ok(self.personal(ctx, &values, mask_all)?.into_iter().next())
    }

    /// An organisation's background: industry, head count band, website and credit code
    /// (null for a customer with none).
    async fn company(&self) -> Option<CompanyNode> {
        self.raw_company.as_ref().map(|c| CompanyNode {
            industry: c.industry.clone(),
            size: c.size.clone(),
            website: c.website.clone(),
            credit_code: c.credit_code.clone(),
        })
    }

    /// Postal addresses, street and postal code masked (`****`) without
    /// `customer.read_personal`. Present in single-customer reads (`customer`), not in lists.
    async fn addresses(&self, ctx: &Context<'_>) -> ApiResult<Vec<AddressNode>> {
        let mut shown = Vec::with_capacity(self.raw_addresses.len());
        for a in &self.raw_addresses {
            let postal_code: Vec<String> = a.postal_code.iter().cloned().collect();
            shown.push(AddressNode {
                country: a.country.clone(),
                region: a.region.clone(),
                city: a.city.clone(),
                street: self.personal(ctx, std::slice::from_ref(&a.street), mask_all)?.concat(),
                postal_code: self.personal(ctx, &postal_code, mask_all)?.into_iter().next(),
            });
        }
        Ok(shown)
    }

    /// Social network handles, the handle masked (`****`) without `customer.read_personal`.
    /// Present in single-customer reads (`customer`), not in lists.
    async fn social(&self, ctx: &Context<'_>) -> ApiResult<Vec<SocialHandleNode>> {
        let handles: Vec<String> = self.raw_social.iter().map(|s| s.handle.clone()).collect();
        let shown = self.personal(ctx, &handles, mask_all)?;
        Ok(self
            .raw_social
            .iter()
            .zip(shown)
            .map(|(s, handle)| SocialHandleNode { network: s.network.clone(), handle })
            .collect())
    }
}

/// An organisation's background as the API shows it (the shape of [`CompanyInput`]).
#[derive(SimpleObject, Debug, Clone)]
pub struct CompanyNode {
    /// Industry.
    pub industry: Option<String>,
    /// Head count band, e.g. `50-199`.
    pub size: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// Unified social credit code (GB 32100-2015).
    pub credit_code: Option<String>,
}

/// A postal address as the API shows it (the shape of [`AddressInput`]).
#[derive(SimpleObject, Debug, Clone)]
pub struct AddressNode {
    /// Country, ISO 3166-1 alpha-2 (e.g. `CN`).
    pub country: String,
    /// Province, state or region.
    pub region: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Street, building and room (masked without `customer.read_personal`).
    pub street: String,
    /// Postal code (masked without `customer.read_personal`).
    pub postal_code: Option<String>,
}

/// A social network handle as the API shows it (the shape of [`SocialHandleInput`]).
#[derive(SimpleObject, Debug, Clone)]
pub struct SocialHandleNode {
    /// The network, e.g. `wechat`.
    pub network: String,
    /// The handle on it (masked without `customer.read_personal`).
    pub handle: String,
}

impl CustomerNode {
    fn personal(&self, ctx: &Context<'_>, values: &[String], mask: fn(&str) -> String) -> ApiResult<Vec<String>> {
        let caller = caller(ctx)?;
        let reveal = &request(ctx)?.reveal;
        Ok(values.iter().map(|v| reveal.customer_field(caller, self.customer, &self.resource, v, mask)).collect())
    }

    fn from_row(row: &CustomerRow, resource: Resource) -> Self {
        // The directory keeps, for exports, the identity number, birth date and company
        // background: lists show them as a single read does (addresses and social handles are
        // in the folded state only).
        let more = row.more();
        let company = Company {
            industry: row.industry.clone(),
            size: more.company_size.clone(),
            website: more.website.clone(),
            credit_code: more.credit_code.clone(),
        };
        let has_company = company != Company::default();
        CustomerNode {
            id: row.id.to_string(),
            kind: row.kind.into(),
            name: row.name.clone(),
            industry: row.industry.clone(),
            tags: row.tags.iter().cloned().collect(),
            segment: row.segment.clone(),
            source: row.source.into(),
            owner: row.owner.to_string(),
            department: row.department.to_string(),
            status: row.status.into(),
            merged_into: row.merged_into.map(|m| m.to_string()),
            created_at: Some(time_text(row.created_at)),
            last_contact: row.last_contact.map(time_text),
            version: Some(row.version),
            personal_data_erased: row.erased,
            raw_phones: row.phones.clone(),
            raw_emails: row.emails.clone(),
            raw_id_number: more.id_number,
            raw_birth_date: more.birth_date.map(|d| d.to_string()),
            raw_company: has_company.then_some(company),
            raw_addresses: Vec::new(),
            raw_social: Vec::new(),
            customer: row.id,
            resource,
        }
    }

    fn from_state(id: CustomerId, state: &CustomerState, resource: Resource) -> Option<Self> {
        let profile = state.profile.as_ref()?;
        Some(
            CustomerNode {
                id: id.to_string(),
                kind: profile.kind.into(),
                name: profile.name.clone(),
                industry: profile.company.as_ref().and_then(|c| c.industry.clone()),
                tags: profile.tags.iter().cloned().collect(),
                segment: profile.segment.clone(),
                source: profile.source.into(),
                owner: state.owner.map(|o| o.to_string()).unwrap_or_default(),
                department: state.department.map(|d| d.to_string()).unwrap_or_default(),
                status: state.status.into(),
                merged_into: state.merged_into.map(|m| m.to_string()),
                created_at: None,
                last_contact: state.last_contact.map(time_text),
                version: None,
                personal_data_erased: state.erased,
                raw_phones: profile.personal.phones.clone(),
                raw_emails: profile.personal.emails.clone(),
                raw_id_number: None,
                raw_birth_date: None,
                raw_company: None,
                raw_addresses: Vec::new(),
                raw_social: Vec::new(),
                customer: id,
                resource,
            }
            .with_details(profile),
        )
    }

    /// Takes in what only a customer's folded state holds, for single-customer reads: the
    /// identity number, birth date, company background, addresses and social handles.
    fn with_details(mut self, profile: &Profile) -> Self {
        self.raw_id_number = profile.personal.id_number.clone();
        self.raw_birth_date = profile.personal.birth_date.map(|d| d.to_string());
        self.raw_company = profile.company.clone();
        self.raw_addresses = profile.personal.addresses.clone();
        self.raw_social = profile.personal.social.clone();
        self
    }
}

/// Directory filters; all given ones must hold.
#[derive(InputObject, Debug, Default)]
pub struct CustomerFilter {
    /// Substring of name, industry or tag (and of phone or e-mail for callers who may see
    /// personal data).
    pub text: Option<String>,
    /// Substring of the name alone, case-insensitive (at most 100 characters).
    pub name: Option<String>,
    /// Owner id.
    pub owner: Option<String>,
    /// Department id.
    pub department: Option<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Source channel.
    pub source: Option<SourceChannel>,
    /// Every one of these tags.
    pub tags: Option<Vec<String>>,
    /// Status (default: every status but merged).
    pub status: Option<CustomerStatus>,
    /// Registered at or after (RFC 3339).
    pub registered_from: Option<String>,
    /// Registered before.
    pub registered_to: Option<String>,
    /// Last contact at or after.
    pub contacted_from: Option<String>,
    /// Last contact before.
    pub contacted_to: Option<String>,
}

/// Sort keys of the directory.
#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CustomerOrder {
    /// Name, A to Z.
    NameAsc,
    /// Name, Z to A.
    NameDesc,
    /// Oldest registration first.
    RegisteredAsc,
    /// Newest registration first.
    RegisteredDesc,
    /// Longest since contact first (never contacted last).
    LastContactAsc,
    /// Most recently contacted first.
    LastContactDesc,
}

/// The directory query of a filter and an order, for the caller (whose scope the caller of
/// this adds under the views' lock), `size` rows after the cursor `after`.
pub fn directory_query(
    caller: &Caller,
    filter: CustomerFilter,
    order_by: Option<CustomerOrder>,
    size: usize,
    after: Option<String>,
) -> ApiResult<DirectoryQuery> {
    let sort = match order_by.unwrap_or(CustomerOrder::NameAsc) {
        CustomerOrder::NameAsc => (SortKey::Name, Order::Ascending),
        CustomerOrder::NameDesc => (SortKey::Name, Order::Descending),
        CustomerOrder::RegisteredAsc => (SortKey::CreatedAt, Order::Ascending),
        CustomerOrder::RegisteredDesc => (SortKey::CreatedAt, Order::Descending),
        CustomerOrder::LastContactAsc => (SortKey::LastContact, Order::Ascending),
        CustomerOrder::LastContactDesc => (SortKey::LastContact, Order::Descending),
    };
    for (field, value) in [("filter.text", &filter.text), ("filter.name", &filter.name)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 100) {
            return Err(ApiError::field(field, FieldCode::TooLong, "at most 100 characters"));
        }
    }
    Ok(DirectoryQuery {
        text: filter.text.clone(),
        name: filter.name.clone(),
        search_personal: caller.principal.active && personal_everywhere(caller),
        owner: filter.owner.as_deref().map(|o| parse_id("filter.owner", o).map(UserId)).transpose()?,
        department: filter
            .department
            .as_deref()
            .map(|d| parse_id("filter.department", d).map(DepartmentId))
            .transpose()?,
        segment: filter.segment.clone(),
        source: filter.source.map(Into::into),
        tags: filter.tags.clone().unwrap_or_default(),
        status: filter.status.map(Into::into),
        created_from: parse_optional_time("filter.registeredFrom", filter.registered_from.as_deref())?,
        created_to: parse_optional_time("filter.registeredTo", filter.registered_to.as_deref())?,
        contacted_from: parse_optional_time("filter.contactedFrom", filter.contacted_from.as_deref())?,
        contacted_to: parse_optional_time("filter.contactedTo", filter.contacted_to.as_deref())?,
        sort: vec![sort],
        first: size,
        // A cursor names a place in the order, not a row, so none is refused for its row (one
        // the caller may not read would otherwise be told apart from a made-up one).
        after: after
            .map(|a| {
                DirectoryCursor::decode(&a)
                    .ok_or_else(|| ApiError::field("after", FieldCode::InvalidFormat, "is not a cursor of this list"))
            })
            .transpose()?,
        ..DirectoryQuery::default()
    })
}

/// Customer queries.
#[derive(Default, Debug)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// The customer directory: filters, one sort key, and a page (`first` at most 100).
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        order_by: Option<CustomerOrder>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, CustomerNode, Counted>> {
        let caller = caller(ctx)?;
        let size = page_size(first)?;
        let mut query = directory_query(caller, filter.unwrap_or_default(), order_by, size, after)?;
        let (page, nodes) = views(ctx, |v| -> ApiResult<_> {
            query.visible = caller.visible(Permission::CustomerRead, &v.access)?;
            let mut page = v.directory.query(&query);
            if size == 0 {
                // The directory pages at least one row: whether there was one is the answer.
                page.has_next = !page.rows.is_empty();
                page.rows.clear();
                page.found_by_personal.clear();
            }
            let nodes: Vec<(String, CustomerNode)> = page
                .rows
                .iter()
                .map(|row| {
                    let node = CustomerNode::from_row(row, resource(&v.access, Some(row.owner), Some(row.department)));
                    (DirectoryCursor::of(row).encode(), node)
                })
                .collect();
            Ok((page, nodes))
        })??;
        let mut connection = Connection::with_additional_fields(
            query.after.is_some(),
            page.has_next,
            Counted { total_count: u64::try_from(page.total).unwrap_or(u64::MAX) },
        );
        // A row found through a phone or an e-mail tells whose it is: that is a read of
        // personal data, recorded as one even when no personal field is selected.
        if !page.found_by_personal.is_empty() {
            let reveal = &request(ctx)?.reveal;
            page.found_by_personal.iter().for_each(|id| reveal.note(*id));
        }
        connection.edges.extend(nodes.into_iter().map(|(cursor, node)| Edge::new(cursor, node)));
        Ok(connection)
    }

    /// One customer by id; merged customers resolve to their survivor, or, when the caller
    /// may read the merged customer but not its survivor, answer as they are (status
    /// `MERGED`, `mergedInto`), as the directory lists them. `asOfSeq` or `asOf` (RFC 3339)
    /// folds the customer's stream up to that point instead.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: String,
        as_of_seq: Option<u64>,
        as_of: Option<String>,
    ) -> ApiResult<CustomerNode> {
        let caller = caller(ctx)?;
        let id = CustomerId(parse_id("id", &id)?);
        let state = app(ctx)?;
        let at = super::as_of(ctx, as_of_seq, as_of.as_deref()).await?;
        let Some(at) = at else {
            let node = views(ctx, |v| {
                let readable = |row: &CustomerRow| {
                    let resource = resource(&v.access, Some(row.owner), Some(row.department));
                    caller.may(Permission::CustomerRead, &resource).then(|| CustomerNode::from_row(row, resource))
                };
                v.directory.resolve(id).and_then(readable).or_else(|| v.directory.get(id).and_then(readable))
            })?;
            let node = node.ok_or(ApiError::NotFound("customer"))?;
            // The directory keeps no identity numbers, birth dates, company backgrounds,
            // addresses or social handles; one customer's are read from its folded state.
            let current = state.bus.state::<Customer>(&node.customer.stream()).await?;
            return Ok(match &current.profile {
                Some(profile) => node.with_details(profile),
                None => node,
            });
        };
        let stream = oacis_eventlog::StreamId::new(id.stream()).map_err(ApiError::internal)?;
        let past = oacis_projections::state_as_of::<Customer, _>(state.bus.store(), &stream, at).await?;
        // Scope is judged by the record as it stands now, so that an as-of read cannot reach
        // a record that has left the caller's scope.
        let node = views(ctx, |v| {
            let now = v.directory.get(id)?;
            let resource = resource(&v.access, Some(now.owner), Some(now.department));
            let mut node = caller
                .may(Permission::CustomerRead, &resource)
                .then(|| CustomerNode::from_state(id, &past, resource))??;
            // Erased now means erased in every past state too.
            node.personal_data_erased |= now.erased;
            Some(node)
        })?;
        node.ok_or(ApiError::NotFound("customer"))
    }
}

/// Duplicate queries.
#[derive(Default, Debug)]
pub struct DuplicateQuery;

#[Object]
impl DuplicateQuery {
    /// Candidate duplicate pairs within the caller's read scope, for a data-cleaning pass
    /// (`customer.merge`), ordered by ids.
    #[graphql(complexity = "super::weighted(first, child_complexity)")]
    async fn possible_duplicates(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, DuplicatePairNode, Counted>> {
        let caller = caller(ctx)?;
        caller.require_any(Permission::CustomerMerge)?;
        let size = page_size(first)?;
        let page = views(ctx, |v| -> ApiResult<_> {
            let visible = caller.visible(Permission::CustomerRead, &v.access)?;
            let admit = |row: &CustomerRow| visible.as_ref().is_none_or(|vis| vis.admits(row.owner, row.department));
            let mut page = v.directory.duplicate_pairs(&admit, size, after.as_deref());
            if size == 0 {
                // Pairs are paged at least one at a time: whether there was one is the answer.
                page.has_next = !page.pairs.is_empty();
                page.pairs.clear();
            }
            Ok(page)
        })??;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_next,
            Counted { total_count: u64::try_from(page.total).unwrap_or(u64::MAX) },
        );
        for pair in page.pairs {
            let cursor = format!("{}:{}", pair.first.0, pair.second.0);
            let node = DuplicatePairNode {
                first: pair.first.to_string(),
                second: pair.second.to_string(),
                fields: pair.fields.iter().map(|f| f.name().to_owned()).collect(),
            };
            connection.edges.push(Edge::new(cursor, node));
        }
        Ok(connection)
    }
}

/// Whether every role that lets the caller read customers also lets it read their personal
/// data over at least the same records: only then may a text search look inside phones and
/// e-mails (a match would otherwise reveal a masked number).
pub(crate) fn personal_everywhere(caller: &Caller) -> bool {
    use oacis_domain::authz::Scope as S;
    // Whether a grant at `wider` reaches every record a grant at `narrower` does.
    let covers = |wider: S, narrower: S| {
        wider == S::All || wider == narrower || (wider == S::DepartmentTree && narrower == S::Department)
    };
    let roles = &caller.principal.roles;
    let mut reads = roles.iter().filter(|r| r.permissions.contains(&Permission::CustomerRead)).peekable();
    reads.peek().is_some()
        && reads.all(|r| {
            roles.iter().any(|p| p.permissions.contains(&Permission::CustomerReadPersonal) && covers(p.scope, r.scope))
        })
}

/// A company's background.
#[derive(InputObject, Debug)]
pub struct CompanyInput {
    /// Industry.
    pub industry: Option<String>,
    /// Head count band, e.g. `50-199`.
    pub size: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// Unified social credit code (GB 32100-2015).
    pub credit_code: Option<String>,
}

/// A customer's profile: everything registration and updates set.
#[derive(InputObject, Debug)]
pub struct ProfileInput {
    /// Person or organisation.
    pub kind: CustomerKind,
    /// Name.
    pub name: String,
    /// Organisation background.
    pub company: Option<CompanyInput>,
    /// Source channel.
    pub source: SourceChannel,
    /// Tags.
    #[graphql(default)]
    pub tags: Vec<String>,
    /// Segment.
    pub segment: Option<String>,
    /// Phones (E.164 or a national form).
    #[graphql(default)]
    pub phones: Vec<String>,
    /// E-mail addresses.
    #[graphql(default)]
    pub emails: Vec<String>,
    /// Resident identity number (people).
    pub id_number: Option<String>,
    /// Birth date, `YYYY-MM-DD` (people).
    pub birth_date: Option<String>,
    /// Postal addresses.
    #[graphql(default)]
    pub addresses: Vec<AddressInput>,
    /// Social network handles.
    #[graphql(default)]
    pub social: Vec<SocialHandleInput>,
}

/// A postal address (personal data).
#[derive(InputObject, Debug)]
pub struct AddressInput {
    /// Country, ISO 3166-1 alpha-2 (e.g. `CN`).
    pub country: String,
    /// Province, state or region.
    pub region: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Street, building and room.
    pub street: String,
    /// Postal code.
    pub postal_code: Option<String>,
}

/// A social network handle (personal data).
#[derive(InputObject, Debug)]
pub struct SocialHandleInput {
    /// The network, e.g. `wechat`.
    pub network: String,
    /// The handle on it.
    pub handle: String,
}

impl ProfileInput {
    fn into_profile(self) -> ApiResult<Profile> {
        let birth_date = match self.birth_date.as_deref() {
            Some(text) => Some(
                Date::parse(text)
                    .ok_or_else(|| ApiError::field("profile.birthDate", FieldCode::InvalidFormat, "use YYYY-MM-DD"))?,
            ),
            None => None,
        };
        Ok(Profile {
            kind: self.kind.into(),
            name: self.name,
            company: self.company.map(|c| Company {
                industry: c.industry,
                size: c.size,
                website: c.website,
                credit_code: c.credit_code,
            }),
            source: self.source.into(),
            tags: self.tags.into_iter().collect::<BTreeSet<_>>(),
            segment: self.segment,
            personal: CustomerPersonal {
                phones: self.phones,
                emails: self.emails,
                addresses: self
                    .addresses
                    .into_iter()
                    .map(|a| Address {
                        country: a.country,
                        region: a.region,
                        city: a.city,
                        street: a.street,
                        postal_code: a.postal_code,
                    })
                    .collect(),
                social: self
                    .social
                    .into_iter()
                    .map(|s| SocialHandle { network: s.network, handle: s.handle })
                    .collect(),
                id_number: self.id_number,
                birth_date,
            },
        })
    }
}

/// Customer mutations.
#[derive(Default, Debug)]
pub struct CustomerMutation;

/// The record a customer mutation acts on, checked against the caller's scope. A customer the
/// caller may not even read is NOT_FOUND; one it may read but not change is FORBIDDEN.
fn customer_resource(ctx: &Context<'_>, id: CustomerId, permission: Permission) -> ApiResult<Resource> {
    let caller = caller(ctx)?;
    let resource =
        views(ctx, |v| v.directory.get(id).map(|row| resource(&v.access, Some(row.owner), Some(row.department))))?
            .ok_or(ApiError::NotFound("customer"))?;
    if !caller.may(Permission::CustomerRead, &resource) {
        return Err(ApiError::NotFound("customer"));
    }
    caller.require(permission, &resource)?;
    Ok(resource)
}

async fn run(
    ctx: &Context<'_>,
    id: CustomerId,
    permission: Permission,
    command: CustomerCommand,
    key: Option<String>,
    expected_version: Option<u64>,
) -> ApiResult<MutationResult> {
    customer_resource(ctx, id, permission)?;
    super::execute_expecting::<Customer>(ctx, id, id.stream(), command, key, expected_version).await
}

#[Object]
impl CustomerMutation {
    /// Registers a customer, owned by the caller (or `owner`) in the owner's department.
    /// Customers the caller may see that share a phone, e-mail, identity number, credit code
    /// or organisation name come back as `possibleDuplicates`; with `refuseDuplicates` such a
    /// registration is refused (CONFLICT) instead.
    async fn register_customer(
        &self,
        ctx: &Context<'_>,
        profile: ProfileInput,
        owner: Option<String>,
        refuse_duplicates: Option<bool>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<CustomerPayload> {
        let caller = caller(ctx)?;
        let owner = match owner {
            Some(o) => UserId(parse_id("owner", &o)?),
            None => caller.user,
        };
        let department = views(ctx, |v| v.access.user(owner).map(|u| u.department))?
            .ok_or_else(|| ApiError::field("owner", FieldCode::InvalidFormat, "no such user"))?;
        let resource = views(ctx, |v| resource(&v.access, Some(owner), Some(department)))?;
        caller.require(Permission::CustomerWrite, &resource)?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let id = CustomerId(origin.new_id("customer"));
        let command = CustomerCommand::Register { id, profile: profile.into_profile()?, owner, department };
        let duplicates = possible_duplicates(ctx, &command, id)?;
        if refuse_duplicates.unwrap_or(false) && !duplicates.is_empty() {
            return Err(duplicate_conflict(&duplicates));
        }
        let executed = app(ctx)?.bus.execute::<Customer>(id.stream(), command, &origin).await?;
        Ok(CustomerPayload {
            result: MutationResult::new(id, executed, client_mutation_id),
            possible_duplicates: duplicates,
        })
    }

    /// Replaces a customer's profile; possible duplicates are reported (or, with
    /// `refuseDuplicates`, refused) as on registration. A caller without
    /// `customer.read_personal` on the customer (who sees its personal data masked) leaves
    /// phones, e-mails, identity number, birth date, addresses and social handles out, and
    /// they are kept as they are; sending any of them is FORBIDDEN.
    async fn update_customer_profile(
        &self,
        ctx: &Context<'_>,
        id: String,
        profile: ProfileInput,
        refuse_duplicates: Option<bool>,
        client_mutation_id: Option<String>,
        expected_version: Option<u64>,
    ) -> ApiResult<CustomerPayload> {
        let id = CustomerId(parse_id("id", &id)?);
        let resource = customer_resource(ctx, id, Permission::CustomerWrite)?;
        let profile = profile.into_profile()?;
        let command = if caller(ctx)?.may(Permission::CustomerReadPersonal, &resource) {
            CustomerCommand::UpdateProfile { profile }
        } else if profile.personal == CustomerPersonal::default() {
            CustomerCommand::UpdateProfileKeepingPersonal { profile }
        } else {
            return Err(ApiError::Forbidden(
                "you may not read this customer's personal data, so you may not replace it: leave phones, emails, \
                 idNumber, birthDate, addresses and social out and they are kept as they are"
                    .into(),
            ));
        };
        let duplicates = possible_duplicates(ctx, &command, id)?;
        if refuse_duplicates.unwrap_or(false) && !duplicates.is_empty() {
            return Err(duplicate_conflict(&duplicates));
        }
        let result =
            super::execute_expecting::<Customer>(ctx, id, id.stream(), command, client_mutation_id, expected_version)
                .await?;
        Ok(CustomerPayload { result, possible_duplicates: duplicates })
    }

    /// Undoes a merge (`customer.unmerge`): the duplicate gets back its status, history and
    /// contacts, and the survivor forgets it; both are compensating events.
    async fn unmerge_customer(
        &self,
        ctx: &Context<'_>,
        duplicate: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let duplicate = CustomerId(parse_id("duplicate", &duplicate)?);
        let survivor = views(ctx, |v| v.directory.get(duplicate).and_then(|row| row.merged_into))?
            .ok_or_else(|| ApiError::Conflict { message: "the customer is not merged".into(), version: None })?;
        customer_resource(ctx, duplicate, Permission::CustomerUnmerge)?;
        customer_resource(ctx, survivor, Permission::CustomerUnmerge)?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let step = PairStep::Unmerge { duplicate, survivor };
        let executed = app(ctx)?.bus.execute_steps(vec![Box::new(step)], &origin).await?;
        Ok(MutationResult::new(duplicate, executed, client_mutation_id))
    }

    /// Transfers a customer to another owner (and that owner's department).
    async fn change_customer_owner(
        &self,
        ctx: &Context<'_>,
        id: String,
        owner: String,
        client_mutation_id: Option<String>,
        expected_version: Option<u64>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("id", &id)?);
        let owner = UserId(parse_id("owner", &owner)?);
        let department = views(ctx, |v| v.access.user(owner).map(|u| u.department))?
            .ok_or_else(|| ApiError::field("owner", FieldCode::InvalidFormat, "no such user"))?;
        let command = CustomerCommand::ChangeOwner { owner, department };
        run(ctx, id, Permission::CustomerTransfer, command, client_mutation_id, expected_version).await
    }

    /// Erases a customer's personal data for good (the right to erasure: PIPL art. 47, GDPR
    /// art. 17; needs `customer.erase`): records the erasure (who, when, why) on it and on
    /// every customer merged into it (the same person's other records), then destroys their
    /// data keys, so its phones, e-mails, addresses, identity number and birth
    /// date read as erased everywhere: lists, history, timelines, exports and backups of the
    /// log. Names and other fields remain, and every hash of the log still verifies. Erasing
    /// an erased customer writes nothing. `reason` stays readable for good: one that looks like
    /// it holds personal data (an e-mail address, a phone or identity number) is refused.
    async fn erase_personal_data(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("id", &id)?);
        customer_resource(ctx, id, Permission::CustomerErase)?;
        super::erase(ctx, id, crate::erasure::Subject::Customer(id), reason, client_mutation_id).await
    }

    /// Archives a customer.
    async fn archive_customer(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
        client_mutation_id: Option<String>,
        expected_version: Option<u64>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("id", &id)?);
        run(
            ctx,
            id,
            Permission::CustomerWrite,
            CustomerCommand::Archive { reason },
            client_mutation_id,
            expected_version,
        )
        .await
    }

    /// Restores an archived customer.
    async fn restore_customer(
        &self,
        ctx: &Context<'_>,
        id: String,
        client_mutation_id: Option<String>,
        expected_version: Option<u64>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("id", &id)?);
        run(ctx, id, Permission::CustomerWrite, CustomerCommand::Restore, client_mutation_id, expected_version).await
    }

    /// Merges `duplicate` into `survivor`: both streams are locked and decided together, so
    /// that two crossing merges can never both succeed. Refused when the survivor's personal
    /// data was erased and the duplicate's was not (it would be the survivor's again).
    async fn merge_customers(
        &self,
        ctx: &Context<'_>,
        duplicate: String,
        survivor: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let duplicate = CustomerId(parse_id("duplicate", &duplicate)?);
        let survivor = CustomerId(parse_id("survivor", &survivor)?);
        customer_resource(ctx, duplicate, Permission::CustomerMerge)?;
        customer_resource(ctx, survivor, Permission::CustomerMerge)?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let step = PairStep::Merge { duplicate, survivor };
        let executed = app(ctx)?.bus.execute_steps(vec![Box::new(step)], &origin).await?;
        Ok(MutationResult::new(duplicate, executed, client_mutation_id))
    }

    /// Logs a call, visit, e-mail, message or meeting; answers the interaction's id as `id`.
    #[allow(clippy::too_many_arguments)]
    async fn log_interaction(
        &self,
        ctx: &Context<'_>,
        customer: String,
        channel: InteractionChannel,
        direction: Direction,
        summary: String,
        occurred_at: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("customer", &customer)?);
        let caller = caller(ctx)?;
        let occurred_at = match occurred_at {
            Some(t) => parse_time("occurredAt", &t)?,
            None => app(ctx)?.bus.now(),
        };
        let origin = origin(ctx, client_mutation_id.clone())?;
        let entry = EntryId(origin.new_id("interaction"));
        let command = CustomerCommand::LogInteraction {
            id: entry,
            channel: channel.into(),
            direction: direction.into(),
            summary,
            occurred_at,
            participants: vec![caller.user],
        };
        let result = run(ctx, id, Permission::CustomerWrite, command, client_mutation_id, None).await?;
        Ok(MutationResult { id: entry.0.to_string(), ..result })
    }

    /// Records a purchase; `amountMinor` in the currency's minor unit (fen, cents). Answers
    /// the purchase's id as `id` (what `reversePurchase` takes).
    #[allow(clippy::too_many_arguments)]
    async fn record_purchase(
        &self,
        ctx: &Context<'_>,
        customer: String,
        product: String,
        quantity: u32,
        amount_minor: i64,
        currency: String,
        purchased_on: String,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("customer", &customer)?);
        let purchased_on = Date::parse(&purchased_on)
            .ok_or_else(|| ApiError::field("purchasedOn", FieldCode::InvalidFormat, "use YYYY-MM-DD"))?;
        let origin = origin(ctx, client_mutation_id.clone())?;
        let entry = EntryId(origin.new_id("purchase"));
        let command =
            CustomerCommand::RecordPurchase { id: entry, product, quantity, amount_minor, currency, purchased_on };
        let result = run(ctx, id, Permission::CustomerWrite, command, client_mutation_id, None).await?;
        Ok(MutationResult { id: entry.0.to_string(), ..result })
    }

    /// Reverses a recorded purchase (the only way to correct one).
    async fn reverse_purchase(
        &self,
        ctx: &Context<'_>,
        customer: String,
        purchase: String,
        reason: Option<String>,
        client_mutation_id: Option<String>,
    ) -> ApiResult<MutationResult> {
        let id = CustomerId(parse_id("customer", &customer)?);
        let purchase = EntryId(parse_id("purchase", &purchase)?);
        let command = CustomerCommand::ReversePurchase { id: purchase, reason: reason.unwrap_or_default() };
        run(ctx, id, Permission::CustomerWrite, command, client_mutation_id, None).await
    }
}

/// A command on two customers decided together under both streams' locks: a merge (the
/// duplicate's `CustomerMerged`, with the survivor's status read under the lock, and the
/// survivor's `CustomerAbsorbed`) or its undoing (`CustomerUnmerged` and `CustomerReleased`).
#[derive(Debug)]
enum PairStep {
    Merge { duplicate: CustomerId, survivor: CustomerId },
    Unmerge { duplicate: CustomerId, survivor: CustomerId },
}

impl crate::command::Step for PairStep {
    fn streams(&self) -> Vec<String> {
        let (PairStep::Merge { duplicate, survivor } | PairStep::Unmerge { duplicate, survivor }) = self;
        vec![duplicate.stream(), survivor.stream()]
    }

    fn fingerprint(&self) -> String {
        format!("{self:?}")
    }

    fn decide<'a>(
        &'a self,
        bus: &'a crate::command::CommandBus,
        ctx: oacis_domain::Context,
    ) -> crate::command::DecideMany<'a> {
        use crate::command::decide_on;
        Box::pin(async move {
            let (duplicate, survivor, first, second) = match *self {
                PairStep::Merge { duplicate, survivor } => {
                    let survivor_state = bus.peek::<Customer>(&survivor.stream()).await?;
                    if survivor_state.erased && !bus.peek::<Customer>(&duplicate.stream()).await?.erased {
                        let rule = oacis_domain::DomainError::Rule(
                            "the surviving customer's personal data was erased: another record of the same person \
                             merged into it would give it personal data again; erase that record's personal data \
                             first"
                                .into(),
                        );
                        return Err(rule.into());
                    }
                    let survivor_status = survivor_state.status;
                    let merge = CustomerCommand::MergeInto { survivor, survivor_status };
                    (duplicate, survivor, merge, CustomerCommand::Absorb { duplicate })
                }
                PairStep::Unmerge { duplicate, survivor } => {
                    if bus.peek::<Customer>(&duplicate.stream()).await?.merged_into != Some(survivor) {
                        let rule =
                            oacis_domain::DomainError::Rule("the customer is not merged into that survivor".into());
                        return Err(rule.into());
                    }
                    (duplicate, survivor, CustomerCommand::Unmerge, CustomerCommand::Release { duplicate })
                }
            };
            Ok(vec![
                decide_on::<Customer>(bus, &duplicate.stream(), first, ctx).await?,
                decide_on::<Customer>(bus, &survivor.stream(), second, ctx).await?,
            ])
        })
    }
}

/// A customer that may be the same as the one registered or updated.
#[derive(SimpleObject, Debug, Clone)]
pub struct DuplicateWarning {
    /// The other customer's id.
    pub customer: String,
    /// The fields that match: `phone`, `email`, `id_number`, `credit_code`, `name`.
    pub fields: Vec<String>,
}

/// What a registration or profile update answers.
#[derive(SimpleObject, Debug)]
pub struct CustomerPayload {
    /// The log position reached.
    #[graphql(flatten)]
    pub result: MutationResult,
    /// Customers the caller may see that may be the same.
    pub possible_duplicates: Vec<DuplicateWarning>,
}

/// Two customers that may be the same.
#[derive(SimpleObject, Debug, Clone)]
pub struct DuplicatePairNode {
    /// One of them.
    pub first: String,
    /// The other.
    pub second: String,
    /// The fields they share.
    pub fields: Vec<String>,
}

/// The customers whose personal data the caller may read whose normalised keys the
/// command's profile shares. The command is decided on an empty state to get the stored, normalised profile;
/// an invalid profile answers its validation errors here.
fn possible_duplicates(
    ctx: &Context<'_>,
    command: &CustomerCommand,
    id: CustomerId,
) -> ApiResult<Vec<DuplicateWarning>> {
    use oacis_domain::customer::CustomerEvent;
    use oacis_domain::Aggregate;
    let caller = caller(ctx)?;
    let bus = &app(ctx)?.bus;
    let decision_ctx = bus.context(Some(caller.user));
    let mut empty = CustomerState::default();
    if let CustomerCommand::UpdateProfile { .. } | CustomerCommand::UpdateProfileKeepingPersonal { .. } = command {
        // An update is decided like one on a live customer with the same profile.
        empty.status = oacis_domain::customer::CustomerStatus::Active;
    }
    let events = Customer::decide(&empty, command.clone(), &decision_ctx)?;
    let profile = events.iter().find_map(|e| match e {
        CustomerEvent::CustomerRegistered(r) => Some(&r.profile),
        CustomerEvent::CustomerProfileUpdated(u) => Some(&u.profile),
        _ => None,
    });
    let Some(profile) = profile else { return Ok(Vec::new()) };
    let keys = oacis_domain::duplicate::DuplicateKeys::of(profile);
    let matches = views(ctx, |v| {
        v.directory
            .possible_duplicates_of(&keys, Some(id))
            .into_iter()
            // Only customers whose personal data the caller may read: a match on a masked
            // phone would otherwise confirm it digit by digit.
            .filter(|m| {
                v.directory.get(m.customer).is_some_and(|row| {
                    let r = resource(&v.access, Some(row.owner), Some(row.department));
                    caller.may(Permission::CustomerRead, &r) && caller.may(Permission::CustomerReadPersonal, &r)
                })
            })
            .collect::<Vec<_>>()
    })?;
    // A match on a phone, an e-mail or an identity number tells whose it is: a read of that
    // customer's personal data, recorded as one.
    let reveal = &request(ctx)?.reveal;
    matches.iter().filter(|m| m.fields.iter().any(|f| f.is_personal())).for_each(|m| reveal.note(m.customer));
    Ok(matches
        .into_iter()
        .map(|m| DuplicateWarning {
            customer: m.customer.to_string(),
            fields: m.fields.iter().map(|f| f.name().to_owned()).collect(),
        })
        .collect())
}

fn duplicate_conflict(duplicates: &[DuplicateWarning]) -> ApiError {
    let list: Vec<String> = duplicates.iter().map(|d| format!("{} ({})", d.customer, d.fields.join(", "))).collect();
    ApiError::Conflict { message: format!("possible duplicates: {}", list.join("; ")), version: None }
}
