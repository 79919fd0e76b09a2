//! Chinese identity numbers and organisation codes, checked in their whole structure: the
//! resident identity number (GB 11643-1999), the unified social credit code (GB 32100-2015)
//! and the organisation code inside it (GB 11714-1997).
//!
//! Invariant: each check returns one code, for the first rule broken in the order shape,
//! check character, then meaning (province, date, authority), so one bad field gives one error.

use crate::error::FieldCode;
use crate::ids::Date;

/// Province-level codes of GB/T 2260 (the first two digits of an area code): 11-15 north,
/// 21-23 north-east, 31-37 east, 41-46 centre and south, 50-54 south-west, 61-65 north-west,
/// 71 Taiwan, 81 Hong Kong, 82 Macao, and 83 used by GB 11643 residence permits of Taiwan
/// residents.
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63,
    64, 65, 71, 81, 82, 83,
];

fn two_digits(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// Checks an 18-character resident identity number (GB 11643-1999): an area code whose first
/// two digits are a province of GB/T 2260, a birth date `YYYYMMDD` that exists and is not
/// after `today`, a sequence, and the ISO 7064 MOD 11-2 check character (`0`-`9` or `X`).
/// Returns the birth date.
///
/// # Errors
/// `InvalidFormat` for the wrong shape, a date that does not exist or an unknown province;
/// `InvalidChecksum` for a wrong check character; `OutOfRange` for a birth date after `today`.
pub fn resident_id(value: &str, today: Option<Date>) -> Result<Date, FieldCode> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = value.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return Err(FieldCode::InvalidFormat);
    }
    let birth = Date::from_digits(&value[6..10], &value[10..12], &value[12..14]).ok_or(FieldCode::InvalidFormat)?;
    let sum: u32 = bytes[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let expected = CHECK.get(usize::try_from(sum % 11).unwrap_or(0)).copied();
    if Some(bytes[17]) != expected {
        return Err(FieldCode::InvalidChecksum);
    }
    if !two_digits(&bytes[..2]).is_some_and(|p| PROVINCES.contains(&p)) {
        return Err(FieldCode::InvalidFormat);
    }
    if today.is_some_and(|today| birth > today) {
        return Err(FieldCode::OutOfRange);
    }
    Ok(birth)
}

/// The 31 characters of GB 32100-2015, by value (digits and capitals without I, O, S, V, Z).
const CREDIT_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Registration authorities (first character) and the categories (second character) each may
/// register, from GB 32100-2015 Annex A with the later assignments `A` (military) and `N`
/// (agricultural collectives).
const AUTHORITIES: &[(u8, &[u8])] = &[
    (b'1', b"1239"),
    (b'2', b"19"),
    (b'3', b"1234579"),
    (b'4', b"19"),
    (b'5', b"1239"),
    (b'6', b"129"),
    (b'7', b"129"),
    (b'8', b"19"),
    (b'9', b"123"),
    (b'A', b"19"),
    (b'N', b"1239"),
    (b'Y', b"1"),
];

/// The GB 11714-1997 check character of an 8-character organisation code body (digits and
/// capitals, A = 10 ... Z = 35): `11 - Σ(value × weight) mod 11`, 10 written `X`, 11 written `0`.
#[must_use]
pub fn organisation_check(body: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    if body.len() != 8 {
        return None;
    }
    let mut sum = 0;
    for (b, w) in body.iter().zip(WEIGHTS) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        sum += value * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        c => b'0' + u8::try_from(c).ok()?,
    })
}

/// Checks an 18-character unified social credit code (GB 32100-2015): registration authority
/// and category (positions 1-2), an area code of GB/T 2260 (3-8: a province, or `10` for
/// national registrations), the organisation code (9-17) with its own GB 11714 check
/// character, and the GB 32100 check character (18, MOD 31).
///
/// # Errors
/// `InvalidFormat` for the wrong length or characters, an unknown authority or category, or
/// an unknown province; `InvalidChecksum` when either check character is wrong.
pub fn credit_code(value: &str) -> Result<(), FieldCode> {
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let bytes = value.as_bytes();
    if bytes.len() != 18 {
        return Err(FieldCode::InvalidFormat);
    }
    let position = |b: &u8| CREDIT_ALPHABET.iter().position(|a| a == b).and_then(|p| u32::try_from(p).ok());
    let Some(values) = bytes.iter().map(position).collect::<Option<Vec<u32>>>() else {
        return Err(FieldCode::InvalidFormat);
    };
    let sum: u32 = values[..17].iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    if values[17] != (31 - sum % 31) % 31 {
        return Err(FieldCode::InvalidChecksum);
    }
    if organisation_check(&bytes[8..16]) != Some(bytes[16]) {
        return Err(FieldCode::InvalidChecksum);
    }
    let authority_ok = AUTHORITIES.iter().any(|(a, categories)| *a == bytes[0] && categories.contains(&bytes[1]));
    let area_ok = bytes[2..8].iter().all(u8::is_ascii_digit)
        && two_digits(&bytes[2..4]).is_some_and(|p| p == 10 || PROVINCES.contains(&p));
    if !authority_ok || !area_ok {
        return Err(FieldCode::InvalidFormat);
    }
    Ok(())
}
