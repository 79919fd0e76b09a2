//! E-mail addresses: the local part as typed, the domain through UTS 46 (the `idna` crate).
//!
//! Stored form: `local@domain`, the local part as typed (trimmed) and the domain in the
//! Unicode form UTS 46 maps it to (lower case, full-width letters and the ideographic full
//! stop `。` mapped, punycode decoded): `user@ｅｘａｍｐｌｅ.ｃｏｍ` and `user@EXAMPLE.com` are
//! stored as `user@example.com`, `user@example.xn--fiqs8s` as `user@example.中国`.
//! Comparison key ([`email_key`]): the local part in lower case and the domain in its ASCII
//! (punycode) form, so every spelling of one mailbox has one key.
//!
//! Invariants: lengths are checked on the ASCII form (labels of 1-63 octets and at most 253
//! for the domain, RFC 1035 / UTS 46 VerifyDnsLength; at most 254 for the address, RFC 5321
//! §4.5.3.1.3 with RFC 3696 errata); the local part is at most 64 octets (RFC 5321
//! §4.5.3.1.1); an invisible, control or direction-override character anywhere refuses the
//! address, because it makes two different addresses look the same.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::error::FieldCode;
use crate::validate::text::{is_control, is_direction_control, is_invisible};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_BYTES: usize = 64;
/// Longest address in its ASCII form, in octets (RFC 5321 forward-path limit less the brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;

/// The stored form of an e-mail address (see the module doc).
///
/// # Errors
/// `FieldCode::InvalidEmail` if it is not `local@domain`, the local part is empty, longer than
/// 64 octets, has spaces, quotes or brackets, or misplaced dots, the domain is refused by
/// UTS 46 (STD3 rules, hyphens checked, DNS lengths verified) or has fewer than two labels or
/// a top-level label that is neither letters nor punycode, or the address holds an invisible,
/// control or direction-override character.
pub fn email(value: &str) -> Result<String, FieldCode> {
    let value = value.trim();
    if value.chars().any(|c| is_invisible(c) || is_control(c) || is_direction_control(c)) {
        return Err(FieldCode::InvalidEmail);
    }
    // A full-width commercial at from a Chinese input method separates like `@`.
    let value = value.replace('＠', "@");
    let (local, domain) = value.rsplit_once('@').ok_or(FieldCode::InvalidEmail)?;
    let local_ok = (1..=MAX_LOCAL_BYTES).contains(&local.len())
        && !local.contains('@')
        && local.chars().all(|c| !c.is_whitespace() && !"\"(),:;<>[\\]".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(FieldCode::InvalidEmail);
    }
    let ascii = ascii_domain(domain)?;
    if local.len() + 1 + ascii.len() > MAX_ADDRESS_BYTES {
        return Err(FieldCode::InvalidEmail);
    }
    let (unicode, result) = Uts46::new().to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Check);
    result.map_err(|_| FieldCode::InvalidEmail)?;
    Ok(format!("{local}@{unicode}"))
}

/// The ASCII form of a domain, checked as [`email`] documents.
fn ascii_domain(domain: &str) -> Result<String, FieldCode> {
    let ascii = Uts46::new()
        .to_ascii(domain.as_bytes(), AsciiDenyList::STD3, Hyphens::Check, DnsLength::Verify)
        .map_err(|_| FieldCode::InvalidEmail)?;
    let mut labels = ascii.split('.');
    let tld = labels.next_back().unwrap_or_default();
    let tld_ok = (tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())) || tld.starts_with("xn--");
    if labels.next().is_none() || !tld_ok {
        return Err(FieldCode::InvalidEmail);
    }
    Ok(ascii.into_owned())
}

/// The comparison key of a stored address: the local part in lower case, `@`, and the domain
/// in ASCII (punycode). An address this build cannot map (stored by an older rule) is its own
/// key, lower-cased.
#[must_use]
pub fn email_key(stored: &str) -> String {
    let Some((local, domain)) = stored.rsplit_once('@') else { return stored.to_lowercase() };
    if domain.is_ascii() {
        return stored.to_lowercase();
    }
    match ascii_domain(domain) {
        Ok(ascii) => format!("{}@{ascii}", local.to_lowercase()),
        Err(_) => stored.to_lowercase(),
    }
}
