//! Phone numbers parsed by the numbering plan (libphonenumber's metadata, through the
//! `phonenumber` crate) and stored in one form.
//!
//! Stored form: E.164 (`+8613912345678`), followed by `;ext=<digits>` when the number has an
//! extension (the parameter of RFC 3966 `tel:` URIs): `+861060000000;ext=8001`. Two inputs
//! are the same phone exactly when their stored forms are equal, so the stored form is also
//! the duplicate-check key.
//!
//! Invariants: a number the plan rules out (wrong length or range for its country) is refused;
//! a national form is read in the default [`Region`], which arrives as a value (the domain has
//! no configuration); pasted decorations are undone before parsing, never stored.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;

use crate::error::FieldCode;
use crate::validate::text::is_invisible;

/// The region whose numbering plan reads national forms (ISO 3166-1 alpha-2, e.g. `CN`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    id: Id,
    code: [u8; 2],
}

impl Region {
    /// China, the default.
    pub const CN: Region = Region { id: Id::CN, code: *b"CN" };

    /// The region of an ISO 3166-1 alpha-2 code that has a numbering plan (`CN`, `us`), or
    /// `None`.
    #[must_use]
    pub fn parse(code: &str) -> Option<Region> {
        let code = code.trim().to_ascii_uppercase();
        let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
        let id = Id::from_str(&code).ok()?;
        Some(Region { id, code: bytes })
    }

    /// Its ISO 3166-1 alpha-2 code.
    #[must_use]
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("ZZ")
    }
}

impl Default for Region {
    fn default() -> Self {
        Region::CN
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Undoes what pasting adds: full-width forms (U+FF01-U+FF5E, e.g. `＋１３９`) become ASCII,
/// any space (no-break, ideographic, thin) becomes a space, dashes (hyphen, en and em dash,
/// minus sign) become `-`, invisible characters go, a trunk prefix written `(0)` after a
/// country code goes, and the extension words `转` and `分机` become `ext.`.
fn unpasted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let code = u32::from(c);
        let c = match code {
            0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            0x2010..=0x2015 | 0x2212 | 0x30FC | 0xFE63 => '-',
            _ if c.is_whitespace() => ' ',
            _ => c,
        };
        if !is_invisible(c) {
            out.push(c);
        }
    }
    let out = out.replace("分机", " ext. ").replace('转', " ext. ").replace("(0)", " ");
    let out = out.trim();
    // An international call prefix of 00 (China's and most countries') is a `+`.
    match out.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => out.to_owned(),
    }
}

/// Answers of [`phone`] by input and region code.
type Answers = std::collections::HashMap<(String, [u8; 2]), Result<String, FieldCode>>;

/// The stored form of a phone number (see the module doc), reading a national form in
/// `region`.
///
/// # Errors
/// `FieldCode::InvalidPhone` if no number can be read or the plan of its country rules it out
/// (ITU-T E.164 and the national plans as libphonenumber 9.0.33 has them).
pub fn phone(value: &str, region: Region) -> Result<String, FieldCode> {
    // The plan's checks look their patterns up in the crate's regex cache, hashing each
    // pattern text; a command that validates a profile it already validated (an import
    // plans every row, then writes it) asks again for the same numbers. The answer depends
    // on nothing but the arguments, so each thread remembers its last answers.
    thread_local! {
        static RECENT: std::cell::RefCell<Answers> = std::cell::RefCell::default();
    }
    const REMEMBERED: usize = 4_096;
    let key = (value.to_owned(), region.code);
    if let Some(known) = RECENT.with(|r| r.borrow().get(&key).cloned()) {
        return known;
    }
    let answer = phone_uncached(value, region);
    RECENT.with(|r| {
        let mut recent = r.borrow_mut();
        if recent.len() >= REMEMBERED {
            recent.clear();
        }
        recent.insert(key, answer.clone());
    });
    answer
}

fn phone_uncached(value: &str, region: Region) -> Result<String, FieldCode> {
    // The stored form reads back as itself (an export re-imported): its RFC 3966 extension
    // parameter is an extension word to the parser.
    let text = unpasted(value).replacen(";ext=", " ext. ", 1);
    // libphonenumber reads letters as keypad digits (`800a` as `8002`); staff typing a customer's
    // number mean no such thing, so a letter may only start an extension (`ext`, `x`).
    if let Some(at) = text.find(|c: char| c.is_alphabetic()) {
        let rest = text[at..].to_ascii_lowercase();
        if !(rest.starts_with("ext") || rest.starts_with('x')) {
            return Err(FieldCode::InvalidPhone);
        }
    }
    // An international form is read by its own country's plan, never by the default region's.
    let default = (!text.starts_with('+') && !text.starts_with("(+")).then_some(region.id);
    let number = phonenumber::parse(default, &text).map_err(|_| FieldCode::InvalidPhone)?;
    if !number.is_valid() {
        return Err(FieldCode::InvalidPhone);
    }
    // E.164: `+`, country code, national significant number (leading zeros kept): what the
    // crate's `Mode::E164` writes, without the national format lookup it makes first.
    let mut stored = format!("+{}{}", number.country().code(), number.national());
    if let Some(extension) = number.extension() {
        let digits: &str = extension;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldCode::InvalidPhone);
        }
        stored.push_str(";ext=");
        stored.push_str(digits);
    }
    Ok(stored)
}
