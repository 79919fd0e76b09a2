//! The keys under which two customers may be the same person or organisation, computed from a
//! profile in its stored form (as `decide` wrote it into `CustomerRegistered` or
//! `CustomerProfileUpdated`).
//!
//! Invariants: keys are comparison forms, never stored in an event, so a better rule changes
//! them without touching the log; two profiles share a key exactly when the field means the
//! same thing: the same phone (E.164 and extension), the same mailbox (local part in lower
//! case, ASCII domain), the same identity number or credit code, or, for organisations, the
//! same name once case, width and spacing are set aside. A person's name alone is no key:
//! common Chinese names are held by hundreds of thousands of people.

use crate::customer::{CustomerKind, Profile};
use crate::validate::email_key;
use crate::validate::text::comparison_key;

/// The field on which two customers match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DuplicateField {
    /// A phone in its stored form.
    Phone,
    /// An e-mail's comparison key.
    Email,
    /// The resident identity number.
    IdNumber,
    /// The unified social credit code.
    CreditCode,
    /// An organisation's name key.
    Name,
}

impl DuplicateField {
    /// Every field, in a fixed order (also the order of [`DuplicateField::index`]).
    pub const ALL: [DuplicateField; 5] = [
        DuplicateField::Phone,
        DuplicateField::Email,
        DuplicateField::IdNumber,
        DuplicateField::CreditCode,
        DuplicateField::Name,
    ];

    /// Its position in [`DuplicateField::ALL`] (0-4).
    #[must_use]
    pub fn index(self) -> u8 {
        match self {
            DuplicateField::Phone => 0,
            DuplicateField::Email => 1,
            DuplicateField::IdNumber => 2,
            DuplicateField::CreditCode => 3,
            DuplicateField::Name => 4,
        }
    }

    /// Whether it is personal data (a phone, an e-mail, an identity number): a match on it
    /// tells whose that is.
    #[must_use]
    pub fn is_personal(self) -> bool {
        matches!(self, DuplicateField::Phone | DuplicateField::Email | DuplicateField::IdNumber)
    }

    /// The name the API shows (`phone`, `email`, `id_number`, `credit_code`, `name`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DuplicateField::Phone => "phone",
            DuplicateField::Email => "email",
            DuplicateField::IdNumber => "id_number",
            DuplicateField::CreditCode => "credit_code",
            DuplicateField::Name => "name",
        }
    }
}

/// A customer's duplicate-check keys, each paired with its field; distinct, in field order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuplicateKeys {
    keys: Vec<(DuplicateField, String)>,
}

impl DuplicateKeys {
    /// The keys of a profile in its stored form.
    #[must_use]
    pub fn of(profile: &Profile) -> Self {
        let personal = &profile.personal;
        let mut keys: Vec<(DuplicateField, String)> = Vec::new();
        keys.extend(personal.phones.iter().map(|p| (DuplicateField::Phone, p.clone())));
        keys.extend(personal.emails.iter().map(|e| (DuplicateField::Email, email_key(e))));
        keys.extend(personal.id_number.iter().map(|n| (DuplicateField::IdNumber, n.to_ascii_uppercase())));
        let credit_code = profile.company.as_ref().and_then(|c| c.credit_code.as_ref());
        keys.extend(credit_code.map(|c| (DuplicateField::CreditCode, c.to_ascii_uppercase())));
        if profile.kind == CustomerKind::Organisation {
            let name = comparison_key(&profile.name);
            if !name.is_empty() {
                keys.push((DuplicateField::Name, name));
            }
        }
        keys.sort();
        keys.dedup();
        DuplicateKeys { keys }
    }

    /// Every key with its field.
    pub fn iter(&self) -> impl Iterator<Item = (DuplicateField, &str)> + '_ {
        self.keys.iter().map(|(field, key)| (*field, key.as_str()))
    }

    /// Whether there is no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
