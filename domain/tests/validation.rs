//! Validation with real-world samples: Chinese names and addresses, identity numbers,
//! unified social credit codes, international phones and e-mail addresses.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use oacis_domain::validate::{credit_code, e164, email, normalise, resident_id, Validator};
use oacis_domain::{DomainError, FieldCode};

#[test]
fn resident_identity_numbers_are_checked_by_date_and_check_character() {
    for valid in ["11010519491231002X", "440524188001010014", "110101199003074477"] {
        assert_eq!(resident_id(valid), Ok(()), "{valid}");
    }
    assert_eq!(resident_id("110101199003071234"), Err(FieldCode::InvalidChecksum));
    assert_eq!(resident_id("110101199002301234"), Err(FieldCode::InvalidFormat), "30 February");
    assert_eq!(resident_id("1101011990030712"), Err(FieldCode::InvalidFormat), "too short");
    assert_eq!(resident_id("11010119900307123A"), Err(FieldCode::InvalidChecksum));
    assert_eq!(resident_id("1101011990030712X4"), Err(FieldCode::InvalidFormat), "X inside");
    // A lower-case x is accepted and normalised by the validator.
    let mut v = Validator::new();
    assert_eq!(v.resident_id("id", " 11010519491231002x "), "11010519491231002X");
    assert!(v.is_clean());
}

#[test]
fn unified_social_credit_codes_are_checked() {
    for valid in ["91350100M000100Y43", "91110000600037341L", "9111000071093465XC", "91440300708461136T"] {
        assert_eq!(credit_code(valid), Ok(()), "{valid}");
    }
    assert_eq!(credit_code("913100006073917301"), Err(FieldCode::InvalidChecksum));
    assert_eq!(credit_code("91350100M000100Y4"), Err(FieldCode::InvalidFormat));
    assert_eq!(credit_code("91350100I000100Y43"), Err(FieldCode::InvalidFormat), "I is not in the alphabet");
}

#[test]
fn phones_are_rewritten_in_e164() {
    assert_eq!(e164("+86 138-0013-8000").as_deref(), Some("+8613800138000"));
    assert_eq!(e164("0086 13800138000").as_deref(), Some("+8613800138000"));
    assert_eq!(e164("+1 (415) 555-0132").as_deref(), Some("+14155550132"));
    assert_eq!(e164("+44 20 7946 0958").as_deref(), Some("+442079460958"));
    assert_eq!(e164("13800138000"), None, "no country code");
    assert_eq!(e164("+0 123 456 789"), None, "country codes do not start with 0");
    assert_eq!(e164("+86 138 0013 8000 12345"), None, "more than 15 digits");
    assert_eq!(e164("+86 138 0013 800a"), None);
}

#[test]
fn email_domains_are_lower_cased_and_shapes_checked() {
    assert_eq!(email("Zhang.Wei@Example.COM").as_deref(), Some("Zhang.Wei@example.com"));
    assert_eq!(email("li.na+crm@mail.qq.com").as_deref(), Some("li.na+crm@mail.qq.com"));
    assert_eq!(email("用户@例子.中国").as_deref(), Some("用户@例子.中国"));
    for bad in ["plain", "a@b", "a@@b.com", "a b@c.com", ".a@b.com", "a..b@c.com", "a@-b.com", "a@b.c0m", ""] {
        assert_eq!(email(bad), None, "{bad:?}");
    }
}

#[test]
fn text_is_trimmed_put_in_nfc_and_counted_in_characters() {
    // "é" as e + combining acute becomes one character.
    assert_eq!(normalise("  Cafe\u{301} "), "Caf\u{e9}");
    let mut v = Validator::new();
    let name = v.text("name", "欧阳娜娜", 4);
    assert_eq!(name, "欧阳娜娜");
    assert!(v.is_clean(), "four Chinese characters fit a limit of four characters (12 bytes)");
    v.text("name", "欧阳娜娜娜", 4);
    v.text("other", "   ", 10);
    match v.finish(()) {
        Err(DomainError::Validation(errors)) => {
            let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
            assert_eq!(found, [("name", FieldCode::TooLong), ("other", FieldCode::Required)]);
        }
        other => panic!("expected every error at once, got {other:?}"),
    }
}
