//! What counts as invisible, as a control or as a direction override in typed text, and the
//! comparison key of a name.
//!
//! Stored text is kept as typed (trimmed and checked, never rewritten): an event log keeps it
//! for ever, and a normalisation such as NFC would turn the CJK compatibility ideograph U+F90A
//! into U+91D1 and lose what was typed. Comparison and search use [`comparison_key`] instead,
//! computed when needed and never stored in an event.
//!
//! Invariant: the character classes come from the Unicode Character Database: invisible is
//! `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, Unicode 15.1), controls are
//! general category `Cc`, direction controls are the embeddings, overrides and isolates of
//! UAX #9 (U+202A-U+202E, U+2066-U+2069).

use unicode_normalization::UnicodeNormalization;

/// Whether `c` is `Default_Ignorable_Code_Point` (Unicode DerivedCoreProperties.txt): drawn as
/// nothing, such as U+200B ZERO WIDTH SPACE, U+FEFF or U+00AD SOFT HYPHEN.
#[must_use]
pub fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Whether `c` is a bidirectional embedding, override or isolate (UAX #9: U+202A-U+202E,
/// U+2066-U+2069), which can make text display in an order other than the stored one.
#[must_use]
pub fn is_direction_control(c: char) -> bool {
    matches!(u32::from(c), 0x202A..=0x202E | 0x2066..=0x2069)
}

/// Whether `c` has no place in a name although it is not a control: the directional marks
/// (U+200E, U+200F, U+061C), the line and paragraph separators (U+2028, U+2029: general
/// categories `Zl`, `Zp`), the interlinear annotation characters (U+FFF9-U+FFFB), the tag
/// characters (U+E0000-U+E007F) and the noncharacters (U+FDD0-U+FDEF and every code point
/// ending in FFFE or FFFF; Unicode §23.7).
#[must_use]
pub fn is_refused_in_name(c: char) -> bool {
    let code = u32::from(c);
    matches!(code, 0x200E | 0x200F | 0x061C | 0x2028 | 0x2029 | 0xFFF9..=0xFFFB | 0xE0000..=0xE007F | 0xFDD0..=0xFDEF)
        || code & 0xFFFE == 0xFFFE
}

/// Whether `c` is a control character (general category `Cc`).
#[must_use]
pub fn is_control(c: char) -> bool {
    c.is_control()
}

/// `value` without leading and trailing white space and invisible characters. Direction
/// controls stay, so that the checks that refuse them see them.
#[must_use]
pub fn trimmed(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || (is_invisible(c) && !is_direction_control(c)))
}

/// Whether nothing visible is left once white space, invisible characters and blank
/// look-alikes (U+2800 BRAILLE PATTERN BLANK) are removed.
#[must_use]
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| c.is_whitespace() || is_invisible(c) || c == '\u{2800}')
}

/// The key under which two names are the same: NFKC (so full-width letters, compatibility
/// ideographs such as U+F90A and their unified forms compare equal), lower case, without
/// white space or invisible characters. Never stored in an event; views compute it.
#[must_use]
pub fn comparison_key(value: &str) -> String {
    if value.is_ascii() {
        return value
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
    }
    value.nfkc().filter(|c| !c.is_whitespace() && !is_invisible(*c)).flat_map(char::to_lowercase).collect()
}

/// The text the directory searches: NFKC and lower case, invisible characters removed, white
/// space kept (a search for a phrase finds it).
#[must_use]
pub fn search_key(value: &str) -> String {
    if value.is_ascii() {
        return value.to_ascii_lowercase();
    }
    value.nfkc().filter(|c| !is_invisible(*c)).flat_map(char::to_lowercase).collect()
}
