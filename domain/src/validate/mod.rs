//! Field validation that reports every problem at once, one error per field, and the stored
//! form of what is kept.
//!
//! Text is kept as typed: trimmed (white space and invisible characters at either end) and
//! checked, never rewritten, because the event log keeps it for ever (see [`text`]); lengths
//! count characters, not bytes (a Chinese name of four characters is four long). Comparison
//! and search keys are where normalisation happens ([`text::comparison_key`]). Phones are
//! parsed by the numbering plan ([`phone`]), e-mail domains go through UTS 46 ([`email`]),
//! identity numbers and credit codes are checked in their whole structure ([`identity`]).
//!
//! Invariant: every field method records at most one error for its field, and list items are
//! named with their index (`profile.tags[2]`).

pub mod email;
pub mod identity;
pub mod phone;
pub mod text;

use unicode_normalization::UnicodeNormalization;

pub use email::{email, email_key};
pub use identity::{credit_code, resident_id};
pub use phone::{phone, Region};

use crate::context::Context;
use crate::error::{DomainError, FieldCode, FieldError};
use crate::ids::Date;
use text::{is_blank, is_control, is_direction_control, trimmed};

/// Collects field errors while checking values, with the settings some checks need: the
/// region that reads national phone numbers and the date of the decision.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
    region: Region,
    today: Option<Date>,
}

/// Trim and NFC: the key of reservation values (usernames, role names), whose stored streams
/// depend on it, so it does not change. Not applied to stored text.
#[must_use]
pub fn normalise(text: &str) -> String {
    text.trim().nfc().collect()
}

/// UTC offset of the easternmost time zone (UTC+14), in minutes: a date that has begun
/// anywhere is not in the future.
const EARLIEST_ZONE_MINUTES: i64 = 14 * 60;

impl Validator {
    /// A validator with no errors yet, reading national phone numbers in China and knowing no
    /// date (birth dates are then not compared with today).
    #[must_use]
    pub fn new() -> Self {
        Validator::default()
    }

    /// A validator for a decision in `ctx`: its phone region and its date.
    #[must_use]
    pub fn in_context(ctx: &Context) -> Self {
        Validator {
            errors: Vec::new(),
            region: ctx.phone_region,
            today: Date::of_timestamp(ctx.now, EARLIEST_ZONE_MINUTES),
        }
    }

    /// Records a problem with `field`.
    pub fn fail(&mut self, field: impl Into<String>, code: FieldCode, message: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), code, message: message.into() });
    }

    /// Records a problem with `field` unless `ok`.
    pub fn require(&mut self, ok: bool, field: impl Into<String>, code: FieldCode, message: impl Into<String>) {
        if !ok {
            self.fail(field, code, message);
        }
    }

    /// Required free text (summaries, reasons, street lines) of 1 to `max` characters, kept as
    /// typed but trimmed. Line breaks and tabs are allowed; other control characters and
    /// direction overrides are refused (`InvalidFormat`); nothing visible is `Required`.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = trimmed(value).to_owned();
        if is_blank(&value) {
            self.fail(field, FieldCode::Required, "is required");
        } else {
            self.checked_chars(field, &value, max, |c| matches!(c, '\n' | '\r' | '\t'));
        }
        value
    }

    /// Optional free text as [`Validator::text`]; nothing visible becomes `None`.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let value = trimmed(value?).to_owned();
        if is_blank(&value) {
            return None;
        }
        self.checked_chars(field, &value, max, |c| matches!(c, '\n' | '\r' | '\t'));
        Some(value)
    }

    /// A required name or other one-line text (tags, segments, handles) of 1 to `max`
    /// characters, kept as typed but trimmed. Control characters (line breaks included) and
    /// direction overrides are refused (`InvalidFormat`); nothing visible is `Required`.
    pub fn name(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = trimmed(value).to_owned();
        if is_blank(&value) {
            self.fail(field, FieldCode::Required, "is required");
        } else if value.chars().any(text::is_refused_in_name) {
            self.fail(field, FieldCode::InvalidFormat, "has a directional mark, separator or non-character");
        } else {
            self.checked_chars(field, &value, max, |_| false);
        }
        value
    }

    /// An optional one-line text as [`Validator::name`]; nothing visible becomes `None`.
    pub fn optional_name(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let value = trimmed(value?).to_owned();
        if is_blank(&value) {
            return None;
        }
        if value.chars().any(text::is_refused_in_name) {
            self.fail(field, FieldCode::InvalidFormat, "has a directional mark, separator or non-character");
        } else {
            self.checked_chars(field, &value, max, |_| false);
        }
        Some(value)
    }

    /// One error at most: a refused character, else too many characters.
    fn checked_chars(&mut self, field: &str, value: &str, max: usize, allowed_control: impl Fn(char) -> bool) {
        if value.chars().any(|c| is_direction_control(c) || (is_control(c) && !allowed_control(c))) {
            self.fail(field, FieldCode::InvalidFormat, "has a control or direction-override character");
        } else {
            self.max_chars(field, value, max);
        }
    }

    fn max_chars(&mut self, field: &str, value: &str, max: usize) {
        let count = value.chars().count();
        if count > max {
            self.fail(field, FieldCode::TooLong, format!("has {count} characters; at most {max}"));
        }
    }

    /// A short identifier of ASCII letters, digits and `extra`, 1 to `max` long: one error,
    /// `Required`, else `InvalidFormat`, else `TooLong`.
    pub fn code(&mut self, field: &str, value: &str, max: usize, extra: &[char]) -> String {
        let value = value.trim().to_owned();
        if value.is_empty() {
            self.fail(field, FieldCode::Required, "is required");
        } else if !value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c)) {
            self.fail(field, FieldCode::InvalidFormat, format!("use ASCII letters, digits or {extra:?}"));
        } else {
            self.max_chars(field, &value, max);
        }
        value
    }

    /// A country as an ISO 3166-1 alpha-2 code (two ASCII letters), upper-cased; one error,
    /// `Required` or `InvalidFormat`.
    pub fn country(&mut self, field: &str, value: &str) -> String {
        let value = value.trim().to_ascii_uppercase();
        if value.is_empty() {
            self.fail(field, FieldCode::Required, "is required");
        } else if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
            self.fail(field, FieldCode::InvalidFormat, "use a two-letter ISO 3166-1 code, e.g. CN");
        }
        value
    }

    /// An e-mail address in its stored form ([`email::email`]); `InvalidEmail` otherwise.
    pub fn email(&mut self, field: &str, value: &str) -> String {
        match email(value) {
            Ok(stored) => stored,
            Err(code) => {
                self.fail(field, code, "is not an e-mail address");
                value.trim().to_owned()
            }
        }
    }

    /// A phone number in its stored form ([`phone::phone`]), national forms read in this
    /// validator's region; `InvalidPhone` otherwise.
    pub fn phone(&mut self, field: &str, value: &str) -> String {
        match phone(value, self.region) {
            Ok(stored) => stored,
            Err(code) => {
                let message = format!(
                    "is not a phone number of the numbering plan (national forms are read in {:?})",
                    self.region
                );
                self.fail(field, code, message);
                value.trim().to_owned()
            }
        }
    }

    /// An 18-character resident identity number ([`identity::resident_id`]), trimmed and with
    /// an upper-case `X`; returns it and its birth date (`None` when refused).
    pub fn resident_id(&mut self, field: &str, value: &str) -> (String, Option<Date>) {
        let value = value.trim().to_ascii_uppercase();
        match resident_id(&value, self.today) {
            Ok(birth) => (value, Some(birth)),
            Err(code) => {
                let message = match code {
                    FieldCode::OutOfRange => "has a birth date after today",
                    FieldCode::InvalidChecksum => "has a wrong check character",
                    _ => "is not an 18-character resident identity number of an existing province and date",
                };
                self.fail(field, code, message);
                (value, None)
            }
        }
    }

    /// An 18-character unified social credit code ([`identity::credit_code`]), trimmed and
    /// upper-cased.
    pub fn credit_code(&mut self, field: &str, value: &str) -> String {
        let value = value.trim().to_ascii_uppercase();
        if let Err(code) = credit_code(&value) {
            self.fail(field, code, "is not a valid unified social credit code (GB 32100-2015)");
        }
        value
    }

    /// Fails unless every value of `values` is distinct.
    pub fn distinct<T: PartialEq>(&mut self, field: &str, values: &[T]) {
        for (i, value) in values.iter().enumerate() {
            let item = format!("{field}[{i}]");
            // An item refused already has its one error.
            if values[..i].contains(value) && !self.errors.iter().any(|e| e.field == item) {
                self.fail(item, FieldCode::Duplicate, "is listed twice");
            }
        }
    }

    /// Fails unless `values` has at most `max` entries.
    pub fn at_most<T>(&mut self, field: &str, values: &[T], max: usize) {
        if values.len() > max {
            self.fail(field, FieldCode::TooLong, format!("has {} entries; at most {max}", values.len()));
        }
    }

    /// Whether no error was recorded so far.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// The reason of an erasure: [`Validator::text`], refusing (`InvalidFormat`) a text that
    /// looks like it holds personal data ([`looks_personal`]); a heuristic, which a person
    /// can get around, meant to stop mistakes. An erasure's reason stays
    /// readable in the log for good, when the personal data it concerns is gone.
    pub fn erasure_reason(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = self.text(field, value, max);
        if looks_personal(&value) {
            self.fail(
                field,
                FieldCode::InvalidFormat,
                "looks like it holds personal data (an e-mail address, a phone or identity number); the reason \
                 stays readable for good: say why, not whose data",
            );
        }
        value
    }

    /// `value` if nothing failed, otherwise every recorded error.
    pub fn finish<T>(self, value: T) -> Result<T, DomainError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(DomainError::Validation(self.errors))
        }
    }
}

/// Whether `text` looks like it holds personal data: an `@` in any form (`@`, `＠`, `﹫`) or
/// `(at)` / `[at]` (an e-mail address), nine digits in a row, or eleven digits apart by at
/// most two characters that are neither letters nor digits (a phone or identity number
/// written with spaces, dashes, slashes, brackets or invisible characters; a date such as
/// 2026-11-30 has eight digits, a date-stamped ticket such as OPS-20261130-77 ten).
#[must_use]
pub fn looks_personal(text: &str) -> bool {
    let lower = text.to_lowercase();
    if text.contains(['@', '＠', '﹫']) || lower.contains("(at)") || lower.contains("[at]") {
        return true;
    }
    let (mut row, mut spaced, mut gap) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        if c.is_numeric() {
            row += 1;
            spaced += 1;
            gap = 0;
            if row >= 9 || spaced >= 11 {
                return true;
            }
        } else {
            row = 0;
            gap += 1;
            if c.is_alphabetic() || gap > 2 {
                spaced = 0;
            }
        }
    }
    false
}
