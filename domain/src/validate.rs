//! Field validation that reports every problem at once, and the normalisation applied to
//! what is kept.
//!
//! Text is trimmed and put in Unicode NFC; lengths count characters, not bytes (a Chinese
//! name of four characters is four long). E-mail domains are lower-cased; phones are
//! rewritten in E.164. Formats with a check digit are checked: the 18-character resident
//! identity number (GB 11643) and the unified social credit code (GB 32100).

use unicode_normalization::UnicodeNormalization;

use crate::error::{DomainError, FieldCode, FieldError};
use crate::ids::Date;

/// Collects field errors while normalising values.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

/// Trim and NFC.
#[must_use]
pub fn normalise(text: &str) -> String {
    text.trim().nfc().collect()
}

impl Validator {
    /// A validator with no errors yet.
    #[must_use]
    pub fn new() -> Self {
        Validator::default()
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

    /// Required text of 1 to `max` characters, normalised.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = normalise(value);
        if value.is_empty() {
            self.fail(field, FieldCode::Required, "is required");
        }
        self.max_chars(field, &value, max);
        value
    }

    /// Optional text of at most `max` characters, normalised; empty becomes `None`.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let value = normalise(value?);
        self.max_chars(field, &value, max);
        (!value.is_empty()).then_some(value)
    }

    fn max_chars(&mut self, field: &str, value: &str, max: usize) {
        let count = value.chars().count();
        if count > max {
            self.fail(field, FieldCode::TooLong, format!("has {count} characters; at most {max}"));
        }
    }

    /// A short identifier of ASCII letters, digits and `extra`, 1 to `max` long.
    pub fn code(&mut self, field: &str, value: &str, max: usize, extra: &[char]) -> String {
        let value = value.trim().to_owned();
        if value.is_empty() {
            self.fail(field, FieldCode::Required, "is required");
        } else if !value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c)) {
            self.fail(field, FieldCode::InvalidFormat, format!("use ASCII letters, digits or {extra:?}"));
        }
        self.max_chars(field, &value, max);
        value
    }

    /// An e-mail address: trimmed, domain lower-cased.
    pub fn email(&mut self, field: &str, value: &str) -> String {
        let value = normalise(value);
        match email(&value) {
            Some(normal) => normal,
            None => {
                self.fail(field, FieldCode::InvalidEmail, "is not an e-mail address");
                value
            }
        }
    }

    /// A phone number, rewritten in E.164 (`+` and 8 to 15 digits).
    pub fn phone(&mut self, field: &str, value: &str) -> String {
        match e164(value) {
            Some(normal) => normal,
            None => {
                self.fail(
                    field,
                    FieldCode::InvalidPhone,
                    "is not an international phone number (+country code and number)",
                );
                value.trim().to_owned()
            }
        }
    }

    /// An 18-character resident identity number with a valid birth date and check character.
    pub fn resident_id(&mut self, field: &str, value: &str) -> String {
        let value = value.trim().to_ascii_uppercase();
        if let Err(code) = resident_id(&value) {
            self.fail(field, code, "is not a valid 18-character resident identity number");
        }
        value
    }

    /// An 18-character unified social credit code with a valid check character.
    pub fn credit_code(&mut self, field: &str, value: &str) -> String {
        let value = value.trim().to_ascii_uppercase();
        if let Err(code) = credit_code(&value) {
            self.fail(field, code, "is not a valid unified social credit code");
        }
        value
    }

    /// Fails unless every value of `values` is distinct.
    pub fn distinct<T: PartialEq>(&mut self, field: &str, values: &[T]) {
        for (i, value) in values.iter().enumerate() {
            if values[..i].contains(value) {
                self.fail(format!("{field}[{i}]"), FieldCode::Duplicate, "is listed twice");
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

    /// `value` if nothing failed, otherwise every recorded error.
    pub fn finish<T>(self, value: T) -> Result<T, DomainError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(DomainError::Validation(self.errors))
        }
    }
}

/// The normal form of an e-mail address, if it is one: `local@domain` with the domain
/// lower-cased, at most 254 characters, a local part of 1-64 printable characters without
/// spaces, and a domain of dot-separated labels of letters, digits and inner hyphens whose
/// last label has at least two letters.
#[must_use]
pub fn email(value: &str) -> Option<String> {
    let (local, domain) = value.rsplit_once('@')?;
    let domain = domain.to_lowercase();
    let local_ok = (1..=64).contains(&local.chars().count())
        && !local.contains('@')
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"\"(),:;<>[\\]".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels.last().is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    let normal = format!("{local}@{domain}");
    (local_ok && domain_ok && normal.chars().count() <= 254).then_some(normal)
}

/// E.164 form of a phone number written with a leading `+` or `00`, allowing spaces,
/// hyphens, dots and parentheses between digits: `+` followed by 8 to 15 digits, the first
/// not zero.
#[must_use]
pub fn e164(value: &str) -> Option<String> {
    let value = value.trim();
    let rest = value.strip_prefix('+').or_else(|| value.strip_prefix("00"))?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let ok = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}

/// Checks an 18-character resident identity number: 17 digits (area, birth date `YYYYMMDD`,
/// sequence) and a check character from ISO 7064 MOD 11-2.
pub fn resident_id(value: &str) -> Result<(), FieldCode> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = value.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return Err(FieldCode::InvalidFormat);
    }
    if Date::from_digits(&value[6..10], &value[10..12], &value[12..14]).is_none() {
        return Err(FieldCode::InvalidFormat);
    }
    let sum: u32 = bytes[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let expected = CHECK[(sum % 11) as usize];
    if bytes[17] == expected {
        Ok(())
    } else {
        Err(FieldCode::InvalidChecksum)
    }
}

/// Checks an 18-character unified social credit code: characters from the 31-symbol alphabet
/// (digits and capitals without I, O, S, V, Z) and the check character of GB 32100.
pub fn credit_code(value: &str) -> Result<(), FieldCode> {
    const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let bytes = value.as_bytes();
    if bytes.len() != 18 {
        return Err(FieldCode::InvalidFormat);
    }
    let position = |b: &u8| ALPHABET.iter().position(|a| a == b).and_then(|p| u32::try_from(p).ok());
    let Some(values) = bytes.iter().map(position).collect::<Option<Vec<u32>>>() else {
        return Err(FieldCode::InvalidFormat);
    };
    let sum: u32 = values[..17].iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    if values[17] == check {
        Ok(())
    } else {
        Err(FieldCode::InvalidChecksum)
    }
}
