//! The Customer aggregate: a person or organisation, its contact channels, ownership,
//! classification, interactions and purchases, archive and merge.
//!
//! Invariants:
//! - Personal data (phones, e-mails, addresses, social handles, identity number, birth date)
//!   travels only inside [`CustomerPersonal`], a distinct part of the payloads, so that it can
//!   be encrypted per customer and erased without touching the rest.
//! - Purchases are never edited: a correction is a reversal that names the purchase.
//! - A merged customer keeps its history and points to its survivor; it accepts no further
//!   change but an unmerge. Merging into a customer that is itself merged or archived is
//!   refused, so merge chains end at a live customer.
//! - An unmerge is a compensating event, never a deletion: `CustomerUnmerged` on the duplicate
//!   returns it to the status it had before the merge (with its own history and contacts,
//!   which the merge never moved), and `CustomerReleased` on the survivor forgets it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Lifecycle};
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{CustomerId, Date, DepartmentId, EntryId, ImportId, Timestamp, UserId};
use crate::validate::Validator;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest free text (summaries, notes, descriptions), in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// The largest amount of one purchase, in minor units (10^15: ten trillion yuan in fen), so
/// that sums over any realistic number of purchases stay far inside `i64`.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;
/// Most entries in any list (phones, e-mails, tags, ...).
pub const MAX_LIST: usize = 20;
/// Longest short text (tags, segment, industry, product), in characters.
pub const MAX_SHORT_CHARS: usize = 64;
/// Longest external id (another system's key for the customer), in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 64;

/// Whether the customer is a natural person or an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKind {
    /// A natural person.
    Person,
    /// A company or other organisation.
    Organisation,
}

/// How the customer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceChannel {
    /// A sales visit.
    SalesVisit,
    /// Referred by someone.
    Referral,
    /// Market research.
    MarketResearch,
    /// The website.
    Website,
    /// Social media.
    SocialMedia,
    /// An event or fair.
    Event,
    /// Anything else.
    Other,
    /// A call made without prior contact (电话营销).
    ColdCall,
    /// Brought by a partner or reseller (合作伙伴, 渠道).
    Partner,
}

/// A postal address (personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Country (ISO 3166-1 alpha-2, e.g. `CN`).
    pub country: String,
    /// Province, state or region.
    pub region: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Street, building, room.
    pub street: String,
    /// Postal code.
    pub postal_code: Option<String>,
}

/// A social network handle (personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialHandle {
    /// The network, e.g. `wechat`.
    pub network: String,
    /// The handle on it.
    pub handle: String,
}

/// Every piece of personal data of a customer. Stored sealed with the customer's data key;
/// once erased it reads as empty (every field defaults, hence `serde(default)`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerPersonal {
    /// Phones in E.164, with `;ext=<digits>` for an extension (`validate::phone`).
    pub phones: Vec<String>,
    /// E-mail addresses: local part as typed, domain in its UTS 46 Unicode form
    /// (`validate::email`).
    pub emails: Vec<String>,
    /// Postal addresses.
    pub addresses: Vec<Address>,
    /// Social handles.
    pub social: Vec<SocialHandle>,
    /// Resident identity number (people).
    pub id_number: Option<String>,
    /// Birth date (people).
    pub birth_date: Option<Date>,
}

/// Background of an organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Industry.
    pub industry: Option<String>,
    /// Head count band, e.g. `50-199`.
    pub size: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Unified social credit code.
    pub credit_code: Option<String>,
}

/// The profile fields shared by registration and updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Person or organisation.
    pub kind: CustomerKind,
    /// Display name (a person's full name or an organisation's name).
    pub name: String,
    /// Organisation background (organisations only).
    pub company: Option<Company>,
    /// How the customer was found.
    pub source: SourceChannel,
    /// Free tags.
    pub tags: BTreeSet<String>,
    /// Segment, e.g. `key-account`.
    pub segment: Option<String>,
    /// Personal data.
    pub personal: CustomerPersonal,
}

/// Kinds of interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionChannel {
    /// Phone call.
    Call,
    /// E-mail.
    Email,
    /// Text message.
    Sms,
    /// Visit.
    Visit,
    /// Meeting.
    Meeting,
    /// Message on a social network.
    SocialMessage,
}

/// Who started an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The customer reached out.
    Inbound,
    /// Staff reached out.
    Outbound,
}

/// Lifecycle of a customer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    /// Not registered yet.
    #[default]
    Unregistered,
    /// Live.
    Active,
    /// Archived; can be restored.
    Archived,
    /// Merged into another customer; final.
    Merged,
}

impl Lifecycle for CustomerStatus {
    const ENTITY: &'static str = "customer";
    const ABSENT: Self = CustomerStatus::Unregistered;

    fn name(self) -> &'static str {
        match self {
            CustomerStatus::Unregistered => "unregistered",
            CustomerStatus::Active => "active",
            CustomerStatus::Archived => "archived",
            CustomerStatus::Merged => "merged",
        }
    }
}

/// A purchase as kept in the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseState {
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether it was reversed.
    pub reversed: bool,
}

/// The folded customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerState {
    /// Its id (set by registration).
    pub id: Option<CustomerId>,
    /// Lifecycle.
    pub status: CustomerStatus,
    /// The profile as last set.
    pub profile: Option<Profile>,
    /// The owning user.
    pub owner: Option<UserId>,
    /// The owning department.
    pub department: Option<DepartmentId>,
    /// The survivor, once merged.
    pub merged_into: Option<CustomerId>,
    /// The status it had when it was merged (until unmerged).
    pub status_before_merge: Option<CustomerStatus>,
    /// Customers merged into this one.
    pub absorbed: BTreeSet<CustomerId>,
    /// Interactions logged (ids).
    pub interactions: BTreeSet<EntryId>,
    /// Last interaction time.
    pub last_contact: Option<Timestamp>,
    /// Purchases by id.
    pub purchases: BTreeMap<EntryId, PurchaseState>,
    /// Whether its personal data was erased (it stays empty from then on).
    pub erased: bool,
    /// Another system's key for the customer, set by an import.
    pub external_id: Option<String>,
}

/// One row of an import as the importing caller resolved it: the whole profile the customer
/// should have (for an existing customer, its profile with the file's columns laid over it),
/// and the business facts another system kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The import.
    pub import: ImportId,
    /// The customer's id (for a registration, the id the row gives or one the caller chose).
    pub id: CustomerId,
    /// The row's number in the file (1 is the header).
    pub row: u32,
    /// The profile after this row.
    pub profile: Profile,
    /// The owner after this row.
    pub owner: UserId,
    /// The department after this row.
    pub department: DepartmentId,
    /// `Active` or `Archived` when the file says; `None` keeps the status.
    pub status: Option<CustomerStatus>,
    /// Another system's key for the customer (`None` keeps the one it has).
    pub external_id: Option<String>,
    /// When the customer was registered in the other system (business time; only for a
    /// registration, not after the time of the decision).
    pub registered_at: Option<Timestamp>,
    /// The customer's last contact in the other system (business time).
    pub last_contact: Option<Timestamp>,
}

/// What an undone import puts back on a customer it updated: the values before the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRestore {
    /// The profile before.
    pub profile: Profile,
    /// The owner before.
    pub owner: UserId,
    /// The department before.
    pub department: DepartmentId,
    /// The status before (active or archived).
    pub status: CustomerStatus,
    /// The external id before.
    pub external_id: Option<String>,
    /// The last contact to keep (before the import, or later interactions').
    pub last_contact: Option<Timestamp>,
}

/// What can be asked of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    /// Register a new customer.
    Register {
        /// Chosen by the caller.
        id: CustomerId,
        /// Profile.
        profile: Profile,
        /// Owning user.
        owner: UserId,
        /// Owning department.
        department: DepartmentId,
    },
    /// Replace the profile.
    UpdateProfile {
        /// The new profile.
        profile: Profile,
    },
    /// Replace the profile but its personal part, which stays as it is: the update of a caller
    /// who may not read the customer's personal data (it sees it masked), so that what it
    /// cannot see is not lost.
    UpdateProfileKeepingPersonal {
        /// The new profile; its personal part is not used.
        profile: Profile,
    },
    /// Transfer to another owner.
    ChangeOwner {
        /// New owning user.
        owner: UserId,
        /// New owning department.
        department: DepartmentId,
    },
    /// Archive.
    Archive {
        /// Why.
        reason: String,
    },
    /// Restore from the archive.
    Restore,
    /// Merge this (duplicate) customer into `survivor`.
    MergeInto {
        /// The customer that remains.
        survivor: CustomerId,
        /// The survivor's status now (read by the caller from its stream).
        survivor_status: CustomerStatus,
    },
    /// Note, on the survivor, that `duplicate` was merged into it.
    Absorb {
        /// The merged customer.
        duplicate: CustomerId,
    },
    /// Undo this (duplicate) customer's merge: it returns to the status it had before, with
    /// its own history and contacts. An administrator's act (`customer.unmerge`).
    Unmerge,
    /// Note, on the survivor, that `duplicate` was unmerged from it.
    Release {
        /// The customer unmerged.
        duplicate: CustomerId,
    },
    /// Log an interaction.
    LogInteraction {
        /// Chosen by the caller.
        id: EntryId,
        /// How.
        channel: InteractionChannel,
        /// Who started it.
        direction: Direction,
        /// What was said or done.
        summary: String,
        /// When it happened.
        occurred_at: Timestamp,
        /// Staff who took part.
        participants: Vec<UserId>,
    },
    /// Record a purchase.
    RecordPurchase {
        /// Chosen by the caller.
        id: EntryId,
        /// Product name or code.
        product: String,
        /// How many.
        quantity: u32,
        /// Total in minor units (e.g. fen, cents).
        amount_minor: i64,
        /// ISO 4217 code, e.g. `CNY`.
        currency: String,
        /// When.
        purchased_on: Date,
    },
    /// Reverse a recorded purchase (the only way to correct one).
    ReversePurchase {
        /// The purchase.
        id: EntryId,
        /// Why.
        reason: String,
    },
    /// Register or update the customer from one row of an import: `CustomerRegistered` (or
    /// the profile, owner and status changes the row asks for, each through the same rules
    /// as its own command), then `CustomerImported`. A row that changes nothing records
    /// nothing.
    Import(Box<ImportRow>),
    /// Revert what an import did to this customer: archive it if the import registered it
    /// (`restore: None`), or put back the values before (`restore`), then
    /// `CustomerImportReverted`. Merged customers refuse.
    RevertImport {
        /// The import.
        import: ImportId,
        /// The values before, for a customer the import updated.
        restore: Option<Box<ImportRestore>>,
    },
    /// Erase the customer's personal data (the right to erasure: PIPL art. 47, GDPR art. 17).
    /// An administrator's act; the caller destroys the data key once the event is durable.
    /// Erasing an erased customer changes nothing.
    ErasePersonalData {
        /// Why (the request or legal ground), no personal data.
        reason: String,
    },
}

/// Payload of `CustomerRegistered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    /// The customer.
    pub customer_id: CustomerId,
    /// Profile (personal data inside `profile.personal`).
    pub profile: Profile,
    /// Owner.
    pub owner: UserId,
    /// Department.
    pub department: DepartmentId,
}

/// Payload of `CustomerProfileUpdated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfileUpdated {
    /// The new profile.
    pub profile: Profile,
}

/// Payload of `CustomerOwnerChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOwnerChanged {
    /// Previous owner.
    pub from_owner: UserId,
    /// New owner.
    pub owner: UserId,
    /// New department.
    pub department: DepartmentId,
}

/// Payload of `CustomerArchived`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerArchived {
    /// Why.
    pub reason: String,
}

/// Payload of `PersonalDataErased`: who and when are the record's actor and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalDataErased {
    /// Why.
    pub reason: String,
}

/// Payload of `CustomerImported`: the last event of an import's row. Business time
/// (`registered_at`, `last_contact`) is kept apart from the record's own time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImported {
    /// The import.
    pub import_id: ImportId,
    /// The row's number in the file.
    pub row: u32,
    /// Whether the row registered the customer (else it updated it).
    pub registered: bool,
    /// How many events of this row precede this one (so the customer's version before the
    /// row is this record's version minus `preceding` minus one).
    pub preceding: u32,
    /// The external id set by the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When the other system registered the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    /// The last contact the other system knew of (later than any before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Timestamp>,
}

/// Payload of `CustomerImportReverted`: the last event of an import's undoing on a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImportReverted {
    /// The import.
    pub import_id: ImportId,
    /// The external id from now on.
    pub external_id: Option<String>,
    /// The last contact from now on.
    pub last_contact: Option<Timestamp>,
}

/// Payload of `CustomerRestored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRestored {}

/// Payload of `CustomerMerged` (on the duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerMerged {
    /// The survivor.
    pub into: CustomerId,
}

/// Payload of `CustomerAbsorbed` (on the survivor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerAbsorbed {
    /// The merged duplicate.
    pub duplicate: CustomerId,
}

/// Payload of `CustomerUnmerged` (on the former duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUnmerged {
    /// The survivor it was merged into.
    pub from: CustomerId,
    /// The status it returns to (the one it had when merged: active or archived).
    pub status: CustomerStatus,
}

/// Payload of `CustomerReleased` (on the former survivor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerReleased {
    /// The customer unmerged from it.
    pub duplicate: CustomerId,
}

/// Payload of `InteractionLogged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionLogged {
    /// The interaction.
    pub interaction_id: EntryId,
    /// How.
    pub channel: InteractionChannel,
    /// Who started it.
    pub direction: Direction,
    /// What happened.
    pub summary: String,
    /// When.
    pub occurred_at: Timestamp,
    /// Staff who took part.
    pub participants: Vec<UserId>,
}

/// Payload of `PurchaseRecorded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRecorded {
    /// The purchase.
    pub purchase_id: EntryId,
    /// Product.
    pub product: String,
    /// How many.
    pub quantity: u32,
    /// Total in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// When.
    pub purchased_on: Date,
}

/// Payload of `PurchaseReversed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseReversed {
    /// The purchase reversed.
    pub purchase_id: EntryId,
    /// The amount taken back (the original's), in minor units.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: String,
    /// Why.
    pub reason: String,
}

events! {
    /// What happens to customers.
    pub enum CustomerEvent {
        /// A customer was registered.
        CustomerRegistered(CustomerRegistered) = 1,
        /// The profile was replaced.
        CustomerProfileUpdated(CustomerProfileUpdated) = 1,
        /// The customer moved to another owner.
        CustomerOwnerChanged(CustomerOwnerChanged) = 1,
        /// Archived.
        CustomerArchived(CustomerArchived) = 1,
        /// Restored from the archive.
        CustomerRestored(CustomerRestored) = 1,
        /// Merged into a survivor.
        CustomerMerged(CustomerMerged) = 1,
        /// Absorbed a merged duplicate.
        CustomerAbsorbed(CustomerAbsorbed) = 1,
        /// A merge was undone: the duplicate is its own customer again.
        CustomerUnmerged(CustomerUnmerged) = 1,
        /// A merged duplicate was unmerged from this survivor.
        CustomerReleased(CustomerReleased) = 1,
        /// An interaction was logged.
        InteractionLogged(InteractionLogged) = 1,
        /// A purchase was recorded.
        PurchaseRecorded(PurchaseRecorded) = 1,
        /// A purchase was reversed.
        PurchaseReversed(PurchaseReversed) = 1,
        /// The customer's personal data was erased (its data key destroyed).
        CustomerPersonalDataErased(PersonalDataErased) = 1,
        /// A row of an import registered or changed the customer.
        CustomerImported(CustomerImported) = 1,
        /// An import's changes to the customer were reverted.
        CustomerImportReverted(CustomerImportReverted) = 1,
    }
}

/// Checks a profile and puts it in its stored form, reporting every problem, one per field:
/// names and texts as typed (trimmed), phones in E.164 (national forms read in the context's
/// region), e-mails with their UTS 46 domain, identity numbers whole (a birth date not after
/// today, and `personal.birth_date`, if given, equal to the one inside the number).
fn checked_profile(profile: Profile, ctx: &Context) -> Result<Profile, DomainError> {
    let mut v = Validator::in_context(ctx);
    let name = v.name("profile.name", &profile.name, MAX_NAME_CHARS);
    let company = profile.company.map(|c| Company {
        industry: v.optional_name("profile.company.industry", c.industry.as_deref(), MAX_SHORT_CHARS),
        size: v.optional_name("profile.company.size", c.size.as_deref(), MAX_SHORT_CHARS),
        website: v.optional_name("profile.company.website", c.website.as_deref(), 200),
        credit_code: c.credit_code.map(|code| v.credit_code("profile.company.credit_code", &code)),
    });
    if profile.kind == CustomerKind::Person && company.is_some() {
        v.fail("profile.company", FieldCode::InvalidFormat, "a person has no company background");
    }
    let tags: BTreeSet<String> = profile
        .tags
        .iter()
        .enumerate()
        .map(|(i, t)| v.name(&format!("profile.tags[{i}]"), t, MAX_SHORT_CHARS))
        .collect();
    let tag_list: Vec<_> = tags.iter().collect();
    v.at_most("profile.tags", &tag_list, MAX_LIST);
    let segment = v.optional_name("profile.segment", profile.segment.as_deref(), MAX_SHORT_CHARS);
    let p = profile.personal;
    let phones: Vec<String> =
        p.phones.iter().enumerate().map(|(i, x)| v.phone(&format!("profile.personal.phones[{i}]"), x)).collect();
    let emails: Vec<String> =
        p.emails.iter().enumerate().map(|(i, x)| v.email(&format!("profile.personal.emails[{i}]"), x)).collect();
    let email_keys: Vec<String> = emails.iter().map(|e| crate::validate::email_key(e)).collect();
    v.distinct("profile.personal.phones", &phones);
    v.distinct("profile.personal.emails", &email_keys);
    v.at_most("profile.personal.phones", &phones, MAX_LIST);
    v.at_most("profile.personal.emails", &emails, MAX_LIST);
    v.at_most("profile.personal.addresses", &p.addresses, MAX_LIST);
    v.at_most("profile.personal.social", &p.social, MAX_LIST);
    let addresses = p
        .addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let at = |f: &str| format!("profile.personal.addresses[{i}].{f}");
            Address {
                country: v.country(&at("country"), &a.country),
                region: v.optional_name(&at("region"), a.region.as_deref(), MAX_SHORT_CHARS),
                city: v.optional_name(&at("city"), a.city.as_deref(), MAX_SHORT_CHARS),
                street: v.name(&at("street"), &a.street, 200),
                postal_code: v.optional_name(&at("postal_code"), a.postal_code.as_deref(), 16),
            }
        })
        .collect();
    let social = p
        .social
        .iter()
        .enumerate()
        .map(|(i, s)| SocialHandle {
            network: v.name(&format!("profile.personal.social[{i}].network"), &s.network, 32),
            handle: v.name(&format!("profile.personal.social[{i}].handle"), &s.handle, 100),
        })
        .collect();
    let (id_number, id_birth) = match p.id_number {
        Some(n) => {
            let (n, birth) = v.resident_id("profile.personal.id_number", &n);
            (Some(n), birth)
        }
        None => (None, None),
    };
    if let Some(birth_date) = p.birth_date {
        let today = Date::of_timestamp(ctx.now, 14 * 60);
        if today.is_some_and(|today| birth_date > today) {
            v.fail("profile.personal.birth_date", FieldCode::OutOfRange, "is after today");
        } else if id_birth.is_some_and(|id_birth| id_birth != birth_date) {
            v.fail(
                "profile.personal.birth_date",
                FieldCode::Mismatch,
                "differs from the birth date inside the resident identity number",
            );
        }
    }
    if profile.kind == CustomerKind::Organisation && (id_number.is_some() || p.birth_date.is_some()) {
        v.fail("profile.personal", FieldCode::InvalidFormat, "an organisation has no identity number or birth date");
    }
    v.finish(Profile {
        kind: profile.kind,
        name,
        company,
        source: profile.source,
        tags,
        segment,
        personal: CustomerPersonal { phones, emails, addresses, social, id_number, birth_date: p.birth_date },
    })
}

/// A currency as its ISO 4217 alphabetic code (case folded to upper): one of the list's codes
/// (`iso_currency`), so that `RMB` or a typo cannot become a currency of its own in figures.
fn check_currency(v: &mut Validator, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let hint = if code == "RMB" { " (renminbi is CNY)" } else { "" };
    v.require(
        iso_currency::Currency::from_code(&code).is_some(),
        "currency",
        FieldCode::InvalidFormat,
        format!("is not an ISO 4217 currency code{hint}"),
    );
    code
}

/// How far ahead of the server's clock a time of something that happened may be: clients'
/// clocks drift (5 minutes, in microseconds).
pub const CLOCK_SKEW_US: i64 = 5 * 60 * 1_000_000;

/// Whether `at` is not in the future, allowing for [`CLOCK_SKEW_US`].
fn not_ahead(at: Timestamp, ctx: &Context) -> bool {
    at.0 <= ctx.now.0.saturating_add(CLOCK_SKEW_US)
}

const LIVE: &[CustomerStatus] = &[CustomerStatus::Active];

/// The Customer aggregate.
#[derive(Debug)]
pub struct Customer;

impl Aggregate for Customer {
    type State = CustomerState;
    type Command = CustomerCommand;
    type Event = CustomerEvent;

    fn decide(
        state: &CustomerState,
        command: CustomerCommand,
        ctx: &Context,
    ) -> Result<Vec<CustomerEvent>, DomainError> {
        use CustomerCommand as C;
        use CustomerEvent as E;
        let event = match command {
            C::Import(row) => return decide_import(state, *row, ctx),
            C::RevertImport { import, restore } => return decide_revert(state, import, restore.map(|r| *r)),
            C::Register { id, profile, owner, department } => {
                if state.status != CustomerStatus::Unregistered {
                    return Err(DomainError::AlreadyExists { entity: "customer" });
                }
                let profile = checked_profile(profile, ctx)?;
                E::CustomerRegistered(CustomerRegistered { customer_id: id, profile, owner, department })
            }
            C::UpdateProfileKeepingPersonal { mut profile } => {
                profile.personal = state.profile.as_ref().map(|p| p.personal.clone()).unwrap_or_default();
                return Self::decide(state, C::UpdateProfile { profile }, ctx);
            }
            C::UpdateProfile { profile } => {
                state.status.require(LIVE, "update")?;
                if state.erased && profile.personal != CustomerPersonal::default() {
                    return Err(DomainError::Rule(
                        "this customer's personal data was erased; it is not recorded again".into(),
                    ));
                }
                let profile = checked_profile(profile, ctx)?;
                if state.profile.as_ref() == Some(&profile) {
                    // Nothing changes: nothing is recorded.
                    return Ok(Vec::new());
                }
                E::CustomerProfileUpdated(CustomerProfileUpdated { profile })
            }
            C::ErasePersonalData { reason } => {
                if state.status == CustomerStatus::Unregistered {
                    return Err(DomainError::NotFound { entity: "customer" });
                }
                let mut v = Validator::new();
                let reason = v.erasure_reason("reason", &reason, MAX_TEXT_CHARS);
                let reason = v.finish(reason)?;
                if state.erased {
                    return Ok(Vec::new());
                }
                E::CustomerPersonalDataErased(PersonalDataErased { reason })
            }
            C::ChangeOwner { owner, department } => {
                state.status.require(LIVE, "transfer")?;
                let from_owner = state.owner.ok_or(DomainError::NotFound { entity: "customer owner" })?;
                if from_owner == owner && state.department == Some(department) {
                    return Ok(Vec::new());
                }
                E::CustomerOwnerChanged(CustomerOwnerChanged { from_owner, owner, department })
            }
            C::Archive { reason } => {
                state.status.require(LIVE, "archive")?;
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, MAX_TEXT_CHARS);
                E::CustomerArchived(CustomerArchived { reason: v.finish(reason)? })
            }
            C::Restore => {
                state.status.require(&[CustomerStatus::Archived], "restore")?;
                E::CustomerRestored(CustomerRestored {})
            }
            C::MergeInto { survivor, survivor_status } => {
                state.status.require(&[CustomerStatus::Active, CustomerStatus::Archived], "merge")?;
                if Some(survivor) == state.id {
                    return Err(DomainError::Rule("a customer cannot be merged into itself".into()));
                }
                if survivor_status != CustomerStatus::Active {
                    return Err(DomainError::Rule(format!(
                        "the surviving customer is {}; merge into an active customer",
                        survivor_status.name()
                    )));
                }
                E::CustomerMerged(CustomerMerged { into: survivor })
            }
            C::Absorb { duplicate } => {
                state.status.require(LIVE, "absorb into")?;
                if Some(duplicate) == state.id {
                    return Err(DomainError::Rule("a customer cannot absorb itself".into()));
                }
                if state.absorbed.contains(&duplicate) {
                    return Ok(Vec::new());
                }
                E::CustomerAbsorbed(CustomerAbsorbed { duplicate })
            }
            C::Unmerge => {
                state.status.require(&[CustomerStatus::Merged], "unmerge")?;
                let from = state.merged_into.ok_or(DomainError::NotFound { entity: "survivor of the merge" })?;
                // A merge is allowed from active or archived; anything else would be a bug in
                // the history, so the customer comes back active.
                let status = match state.status_before_merge {
                    Some(CustomerStatus::Archived) => CustomerStatus::Archived,
                    _ => CustomerStatus::Active,
                };
                E::CustomerUnmerged(CustomerUnmerged { from, status })
            }
            C::Release { duplicate } => {
                if state.status == CustomerStatus::Unregistered {
                    return Err(DomainError::NotFound { entity: "customer" });
                }
                if !state.absorbed.contains(&duplicate) {
                    return Err(DomainError::NotFound { entity: "merged duplicate" });
                }
                E::CustomerReleased(CustomerReleased { duplicate })
            }
            C::LogInteraction { id, channel, direction, summary, occurred_at, participants } => {
                state.status.require(LIVE, "log an interaction for")?;
                if state.interactions.contains(&id) {
                    return Err(DomainError::AlreadyExists { entity: "interaction" });
                }
                let mut v = Validator::new();
                let summary = v.text("summary", &summary, MAX_TEXT_CHARS);
                v.require(not_ahead(occurred_at, ctx), "occurred_at", FieldCode::OutOfRange, "is in the future");
                v.at_most("participants", &participants, MAX_LIST);
                v.distinct("participants", &participants);
                let summary = v.finish(summary)?;
                E::InteractionLogged(InteractionLogged {
                    interaction_id: id,
                    channel,
                    direction,
                    summary,
                    occurred_at,
                    participants,
                })
            }
            C::RecordPurchase { id, product, quantity, amount_minor, currency, purchased_on } => {
                state.status.require(LIVE, "record a purchase for")?;
                if state.purchases.contains_key(&id) {
                    return Err(DomainError::AlreadyExists { entity: "purchase" });
                }
                let mut v = Validator::new();
                let product = v.name("product", &product, MAX_SHORT_CHARS);
                v.require(quantity >= 1, "quantity", FieldCode::OutOfRange, "must be at least 1");
                v.require(
                    amount_minor >= 0,
                    "amount_minor",
                    FieldCode::OutOfRange,
                    "must not be negative; reverse a purchase instead",
                );
                v.require(
                    amount_minor <= MAX_AMOUNT_MINOR,
                    "amount_minor",
                    FieldCode::OutOfRange,
                    "is more than one purchase can be (10^15 minor units)",
                );
                let currency = check_currency(&mut v, &currency);
                // The latest calendar day anywhere (UTC+14:00) may be today somewhere.
                let latest = Date::of_timestamp(ctx.now, 14 * 60);
                v.require(
                    latest.is_none_or(|latest| purchased_on <= latest),
                    "purchased_on",
                    FieldCode::OutOfRange,
                    "is in the future",
                );
                let (product, currency) = v.finish((product, currency))?;
                E::PurchaseRecorded(PurchaseRecorded {
                    purchase_id: id,
                    product,
                    quantity,
                    amount_minor,
                    currency,
                    purchased_on,
                })
            }
            C::ReversePurchase { id, reason } => {
                state.status.require(&[CustomerStatus::Active, CustomerStatus::Archived], "reverse a purchase of")?;
                let purchase = state.purchases.get(&id).ok_or(DomainError::NotFound { entity: "purchase" })?;
                if purchase.reversed {
                    return Err(DomainError::InvalidTransition {
                        entity: "purchase",
                        status: "reversed",
                        action: "reverse",
                    });
                }
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, MAX_TEXT_CHARS);
                let reason = v.finish(reason)?;
                E::PurchaseReversed(PurchaseReversed {
                    purchase_id: id,
                    amount_minor: purchase.amount_minor,
                    currency: purchase.currency.clone(),
                    reason,
                })
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: CustomerState, event: &CustomerEvent) -> CustomerState {
        use CustomerEvent as E;
        match event {
            E::CustomerRegistered(e) => {
                state.id = Some(e.customer_id);
                state.status = CustomerStatus::Active;
                state.profile = Some(e.profile.clone());
                state.owner = Some(e.owner);
                state.department = Some(e.department);
            }
            E::CustomerProfileUpdated(e) => state.profile = Some(e.profile.clone()),
            E::CustomerPersonalDataErased(_) => {
                state.erased = true;
                if let Some(profile) = &mut state.profile {
                    profile.personal = CustomerPersonal::default();
                }
            }
            E::CustomerOwnerChanged(e) => {
                state.owner = Some(e.owner);
                state.department = Some(e.department);
            }
            E::CustomerArchived(_) => state.status = CustomerStatus::Archived,
            E::CustomerRestored(_) => state.status = CustomerStatus::Active,
            E::CustomerMerged(e) => {
                state.status_before_merge = Some(state.status);
                state.status = CustomerStatus::Merged;
                state.merged_into = Some(e.into);
            }
            E::CustomerAbsorbed(e) => {
                state.absorbed.insert(e.duplicate);
            }
            E::CustomerUnmerged(e) => {
                state.status = e.status;
                state.merged_into = None;
                state.status_before_merge = None;
            }
            E::CustomerReleased(e) => {
                state.absorbed.remove(&e.duplicate);
            }
            E::InteractionLogged(e) => {
                state.interactions.insert(e.interaction_id);
                state.last_contact = Some(state.last_contact.map_or(e.occurred_at, |t| t.max(e.occurred_at)));
            }
            E::PurchaseRecorded(e) => {
                state.purchases.insert(
                    e.purchase_id,
                    PurchaseState { amount_minor: e.amount_minor, currency: e.currency.clone(), reversed: false },
                );
            }
            E::PurchaseReversed(e) => {
                if let Some(purchase) = state.purchases.get_mut(&e.purchase_id) {
                    purchase.reversed = true;
                }
            }
            E::CustomerImported(e) => {
                if e.external_id.is_some() {
                    state.external_id.clone_from(&e.external_id);
                }
                if let Some(at) = e.last_contact {
                    state.last_contact = Some(state.last_contact.map_or(at, |t| t.max(at)));
                }
            }
            E::CustomerImportReverted(e) => {
                state.external_id.clone_from(&e.external_id);
                state.last_contact = e.last_contact;
            }
        }
        state
    }
}

/// Decides one command after others of the same row, folding each result in.
fn then(
    state: &mut CustomerState,
    events: &mut Vec<CustomerEvent>,
    command: CustomerCommand,
    ctx: &Context,
) -> Result<(), DomainError> {
    for event in Customer::decide(state, command, ctx)? {
        *state = Customer::evolve(std::mem::take(state), &event);
        events.push(event);
    }
    Ok(())
}

/// One row of an import: every change through its own command's rules, then
/// `CustomerImported`; nothing when nothing changes.
fn decide_import(state: &CustomerState, row: ImportRow, ctx: &Context) -> Result<Vec<CustomerEvent>, DomainError> {
    let mut v = Validator::in_context(ctx);
    let external_id = row.external_id.as_deref().map(|x| v.name("external_id", x, MAX_EXTERNAL_ID_CHARS));
    for (field, at) in [("registered_at", row.registered_at), ("last_contact", row.last_contact)] {
        v.require(at.is_none_or(|at| not_ahead(at, ctx)), field, FieldCode::OutOfRange, "is in the future");
    }
    if let Some(status) = row.status {
        v.require(
            matches!(status, CustomerStatus::Active | CustomerStatus::Archived),
            "status",
            FieldCode::InvalidFormat,
            "an import sets a customer active or archived",
        );
    }
    // Every field error of the row at once: the import's own and the profile's.
    let (external_id, profile) = match (v.finish(external_id), checked_profile(row.profile, ctx)) {
        (Ok(external_id), Ok(profile)) => (external_id, profile),
        (Err(DomainError::Validation(mut a)), Err(DomainError::Validation(b))) => {
            a.extend(b);
            return Err(DomainError::Validation(a));
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let registering = state.status == CustomerStatus::Unregistered;
    let mut next = state.clone();
    let mut events = Vec::new();
    let archive = CustomerCommand::Archive { reason: format!("archived by import {}", row.import) };
    if registering {
        let register = CustomerCommand::Register { id: row.id, profile, owner: row.owner, department: row.department };
        then(&mut next, &mut events, register, ctx)?;
        if row.status == Some(CustomerStatus::Archived) {
            then(&mut next, &mut events, archive, ctx)?;
        }
        let preceding = u32::try_from(events.len()).unwrap_or(u32::MAX);
        events.push(CustomerEvent::CustomerImported(CustomerImported {
            import_id: row.import,
            row: row.row,
            registered: true,
            preceding,
            external_id,
            registered_at: row.registered_at,
            last_contact: row.last_contact,
        }));
        return Ok(events);
    }
    state.status.require(&[CustomerStatus::Active, CustomerStatus::Archived], "import into")?;
    if row.status == Some(CustomerStatus::Active) && next.status == CustomerStatus::Archived {
        then(&mut next, &mut events, CustomerCommand::Restore, ctx)?;
    }
    if next.profile.as_ref() != Some(&profile) {
        then(&mut next, &mut events, CustomerCommand::UpdateProfile { profile }, ctx)?;
    }
    if next.owner != Some(row.owner) || next.department != Some(row.department) {
        then(
            &mut next,
            &mut events,
            CustomerCommand::ChangeOwner { owner: row.owner, department: row.department },
            ctx,
        )?;
    }
    if row.status == Some(CustomerStatus::Archived) && next.status == CustomerStatus::Active {
        then(&mut next, &mut events, archive, ctx)?;
    }
    let external_id = external_id.filter(|x| next.external_id.as_ref() != Some(x));
    // A later contact than the customer's only: an import never moves it back.
    let last_contact = row.last_contact.filter(|at| next.last_contact.is_none_or(|t| *at > t));
    if events.is_empty() && external_id.is_none() && last_contact.is_none() {
        return Ok(events);
    }
    events.push(CustomerEvent::CustomerImported(CustomerImported {
        import_id: row.import,
        row: row.row,
        registered: false,
        preceding: u32::try_from(events.len()).unwrap_or(u32::MAX),
        external_id,
        registered_at: None,
        last_contact,
    }));
    Ok(events)
}

/// Reverts one import's row: a customer it registered is archived; one it updated gets back
/// its profile, owner, status, external id and last contact. Compensating events, decided
/// without the rules of ordinary edits (an archived customer gets its profile back too), but
/// never on a merged customer and never bringing back erased personal data.
fn decide_revert(
    state: &CustomerState,
    import: ImportId,
    restore: Option<ImportRestore>,
) -> Result<Vec<CustomerEvent>, DomainError> {
    state.status.require(&[CustomerStatus::Active, CustomerStatus::Archived], "undo an import of")?;
    let reason = format!("import {import} undone");
    let mut events = Vec::new();
    let (external_id, last_contact) = match restore {
        None => {
            if state.status == CustomerStatus::Active {
                events.push(CustomerEvent::CustomerArchived(CustomerArchived { reason }));
            }
            (None, state.last_contact)
        }
        Some(before) => {
            let mut profile = before.profile;
            if state.erased {
                profile.personal = CustomerPersonal::default();
            }
            if state.profile.as_ref() != Some(&profile) {
                events.push(CustomerEvent::CustomerProfileUpdated(CustomerProfileUpdated { profile }));
            }
            if state.owner != Some(before.owner) || state.department != Some(before.department) {
                let from_owner = state.owner.ok_or(DomainError::NotFound { entity: "customer owner" })?;
                events.push(CustomerEvent::CustomerOwnerChanged(CustomerOwnerChanged {
                    from_owner,
                    owner: before.owner,
                    department: before.department,
                }));
            }
            match (state.status, before.status) {
                (CustomerStatus::Active, CustomerStatus::Archived) => {
                    events.push(CustomerEvent::CustomerArchived(CustomerArchived { reason }));
                }
                (CustomerStatus::Archived, CustomerStatus::Active) => {
                    events.push(CustomerEvent::CustomerRestored(CustomerRestored {}));
                }
                _ => {}
            }
            (before.external_id, before.last_contact)
        }
    };
    events.push(CustomerEvent::CustomerImportReverted(CustomerImportReverted {
        import_id: import,
        external_id,
        last_contact,
    }));
    Ok(events)
}
