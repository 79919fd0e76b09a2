//! Validation with real-world samples: Chinese names and addresses, identity numbers,
//! unified social credit codes, phones as staff type and paste them, internationalised e-mail
//! addresses. Every sample of issue 11 is a named test here; `properties` below generates
//! inputs for each parser.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod common;

use common::{ctx, customer, dept, person, user};
use oacis_domain::customer::CustomerState;
use oacis_domain::customer::{Customer, CustomerCommand, CustomerKind, Profile};
use oacis_domain::ids::Date;
use oacis_domain::validate::identity::organisation_check;
use oacis_domain::validate::text::comparison_key;
use oacis_domain::validate::{credit_code, email, email_key, phone, resident_id, Region, Validator};
use oacis_domain::{Aggregate, Context, DomainError, FieldCode};

fn cn(value: &str) -> Result<String, FieldCode> {
    phone(value, Region::CN)
}

fn today() -> Option<Date> {
    Date::new(2026, 11, 1)
}

/// The field errors of registering `profile`, as (field, code).
fn errors_of(profile: Profile) -> Vec<(String, FieldCode)> {
    let command = CustomerCommand::Register { id: customer(1), profile, owner: user(1), department: dept(1) };
    match Customer::decide(&CustomerState::default(), command, &ctx()) {
        Err(DomainError::Validation(errors)) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
        Err(other) => panic!("expected field errors, got {other}"),
        Ok(_) => Vec::new(),
    }
}

fn registered(profile: Profile) -> Profile {
    let command = CustomerCommand::Register { id: customer(1), profile, owner: user(1), department: dept(1) };
    match Customer::decide(&CustomerState::default(), command, &ctx()).unwrap().pop() {
        Some(oacis_domain::customer::CustomerEvent::CustomerRegistered(e)) => e.profile,
        other => panic!("expected a registration, got {other:?}"),
    }
}

// Phones.

#[test]
fn national_forms_are_read_in_the_default_region_and_stored_in_e164() {
    assert_eq!(cn("13912345678").as_deref(), Ok("+8613912345678"));
    assert_eq!(cn("010-60000000").as_deref(), Ok("+861060000000"));
}

#[test]
fn the_default_region_is_a_setting_of_the_context() {
    let us = Region::parse("us").unwrap();
    assert_eq!(phone("(415) 555-0132", us).as_deref(), Ok("+14155550132"));
    // In China the same digits are a Dandong (0415) fixed line.
    assert_eq!(phone("(415) 555-0132", Region::CN).as_deref(), Ok("+864155550132"));
    let mut p = person("张伟");
    p.personal.phones = vec!["415 555 0132".into()];
    let command = CustomerCommand::Register { id: customer(1), profile: p, owner: user(1), department: dept(1) };
    let in_us = Context::new(ctx().actor, ctx().now).with_phone_region(us);
    let stored = |ctx: &Context| match Customer::decide(&CustomerState::default(), command.clone(), ctx).unwrap().pop()
    {
        Some(oacis_domain::customer::CustomerEvent::CustomerRegistered(e)) => e.profile.personal.phones,
        other => panic!("expected a registration, got {other:?}"),
    };
    assert_eq!(stored(&in_us), ["+14155550132"]);
    assert_eq!(stored(&ctx()), ["+864155550132"]);
    assert_eq!(Region::parse("XX"), None);
    assert_eq!(Context::new(None, ctx().now).phone_region, Region::CN);
}

#[test]
fn the_trunk_prefix_is_not_part_of_an_e164_number() {
    assert_eq!(cn("+86 (0)10 6000 0000").as_deref(), Ok("+861060000000"));
    assert_eq!(cn("+86 010 6000 0000").as_deref(), Ok("+861060000000"));
    assert_eq!(cn("+86 10 6000 0000").as_deref(), Ok("+861060000000"));
}

#[test]
fn numbers_the_plan_rules_out_are_refused() {
    assert_eq!(cn("+86 139 1234 567"), Err(FieldCode::InvalidPhone), "a 10-digit mobile");
    assert_eq!(cn("+0 123 456 789"), Err(FieldCode::InvalidPhone));
    assert_eq!(cn("+86 138 0013 800a"), Err(FieldCode::InvalidPhone), "letters are typos, not vanity digits");
    assert_eq!(cn("+86 10 6000 0000 extension"), Err(FieldCode::InvalidPhone), "an extension without digits");
    assert_eq!(cn(""), Err(FieldCode::InvalidPhone));
}

#[test]
fn short_numbers_the_plan_allows_are_accepted() {
    assert_eq!(cn("+683 7012").as_deref(), Ok("+6837012"));
}

#[test]
fn international_forms_keep_their_own_country() {
    assert_eq!(cn("+86 138-0013-8000").as_deref(), Ok("+8613800138000"));
    assert_eq!(cn("0086 13800138000").as_deref(), Ok("+8613800138000"));
    assert_eq!(cn("+1 (415) 555-0132").as_deref(), Ok("+14155550132"));
    assert_eq!(cn("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
    assert_eq!(cn("+44 (0)20 7946 0958").as_deref(), Ok("+442079460958"));
}

#[test]
fn pasted_forms_are_accepted() {
    assert_eq!(cn("139\u{a0}1234\u{a0}5678").as_deref(), Ok("+8613912345678"), "no-break spaces");
    assert_eq!(cn("139\u{3000}1234\u{3000}5678").as_deref(), Ok("+8613912345678"), "ideographic spaces");
    assert_eq!(cn("＋８６　１３９１２３４５６７８").as_deref(), Ok("+8613912345678"), "full-width");
    assert_eq!(cn("(+86) 139 1234 5678").as_deref(), Ok("+8613912345678"));
    assert_eq!(cn("010\u{2013}6000\u{2013}0000").as_deref(), Ok("+861060000000"), "en dashes");
    assert_eq!(cn("\u{200b}13912345678\u{feff}").as_deref(), Ok("+8613912345678"), "invisible characters");
}

#[test]
fn extensions_are_kept_as_the_numbers_extension() {
    assert_eq!(cn("010-60000000 转 8001").as_deref(), Ok("+861060000000;ext=8001"));
    assert_eq!(cn("010-60000000转8001").as_deref(), Ok("+861060000000;ext=8001"));
    assert_eq!(cn("+86 10 6000 0000 ext. 8001").as_deref(), Ok("+861060000000;ext=8001"));
    assert_eq!(cn("010 6000 0000 分机 8001").as_deref(), Ok("+861060000000;ext=8001"));
    // The stored form reads back as itself (an export re-imported).
    assert_eq!(cn("+861060000000;ext=8001").as_deref(), Ok("+861060000000;ext=8001"));
    assert_eq!(cn("+8613912345678;ext=99").as_deref(), Ok("+8613912345678;ext=99"));
}

// E-mail.

#[test]
fn the_ideographic_full_stop_separates_labels() {
    assert_eq!(email("用户@例子。中国").as_deref(), Ok("用户@例子.中国"));
}

#[test]
fn full_width_domains_are_stored_in_ascii_letters() {
    assert_eq!(email("user@ｅｘａｍｐｌｅ.ｃｏｍ").as_deref(), Ok("user@example.com"));
    assert_eq!(email("Zhang.Wei@Example.COM").as_deref(), Ok("Zhang.Wei@example.com"));
    assert_eq!(email("li.na+crm@mail.qq.com").as_deref(), Ok("li.na+crm@mail.qq.com"));
    assert_eq!(email("user＠example.com").as_deref(), Ok("user@example.com"), "full-width at");
}

#[test]
fn punycode_and_unicode_domains_are_one_mailbox() {
    let ascii = email("user@example.xn--fiqs8s").unwrap();
    let unicode = email("user@example.中国").unwrap();
    assert_eq!(ascii, "user@example.中国");
    assert_eq!(ascii, unicode, "one stored form");
    assert_eq!(email_key(&ascii), "user@example.xn--fiqs8s");
    assert_eq!(email_key(&email("USER@EXAMPLE.中国").unwrap()), email_key(&unicode), "one key");
}

#[test]
fn label_lengths_are_checked_on_the_ascii_form() {
    // 20 distinct Chinese characters are 20 characters but a 64-octet punycode label; 19 make 61.
    let label = |n: u32| (0..n).map(|i| char::from_u32(0x4e00 + i * 397).unwrap()).collect::<String>();
    assert_eq!(email(&format!("a@{}.cn", label(20))), Err(FieldCode::InvalidEmail));
    let accepted = email(&format!("a@{}.cn", label(19))).unwrap();
    assert_eq!(email_key(&accepted).len(), "a@.cn".len() + 61);
    assert_eq!(email(&format!("a@{}.com", "a".repeat(64))), Err(FieldCode::InvalidEmail));
    assert!(email(&format!("a@{}.com", "a".repeat(63))).is_ok());
}

#[test]
fn the_local_part_is_at_most_64_bytes() {
    assert!(email(&format!("{}@example.com", "a".repeat(64))).is_ok());
    assert_eq!(email(&format!("{}@example.com", "a".repeat(65))), Err(FieldCode::InvalidEmail));
    // 22 Chinese characters are 66 bytes.
    assert_eq!(email(&format!("{}@example.com", "用".repeat(22))), Err(FieldCode::InvalidEmail));
}

#[test]
fn invisible_and_direction_override_characters_are_refused_in_addresses() {
    assert_eq!(email("us\u{200B}er@example.com"), Err(FieldCode::InvalidEmail));
    assert_eq!(email("user@exa\u{200B}mple.com"), Err(FieldCode::InvalidEmail));
    assert_eq!(email("\u{202E}moc.elpmaxe@resu"), Err(FieldCode::InvalidEmail));
    assert_eq!(email("user@example.com\u{0}"), Err(FieldCode::InvalidEmail));
}

#[test]
fn malformed_addresses_are_refused() {
    for bad in ["plain", "a@b", "a@@b.com", "a b@c.com", ".a@b.com", "a..b@c.com", "a@-b.com", "a@b.c0m", "", "@b.com"]
    {
        assert_eq!(email(bad), Err(FieldCode::InvalidEmail), "{bad:?}");
    }
}

// Identity numbers and credit codes.

#[test]
fn resident_identity_numbers_are_checked_by_date_and_check_character() {
    for valid in ["11010519491231002X", "440524188001010014", "110101199003074477"] {
        assert!(resident_id(valid, today()).is_ok(), "{valid}");
    }
    assert_eq!(resident_id("110101199003074477", today()), Ok(Date::new(1990, 3, 7).unwrap()));
    assert_eq!(resident_id("110101199003071234", today()), Err(FieldCode::InvalidChecksum));
    assert_eq!(resident_id("110101199002301234", today()), Err(FieldCode::InvalidFormat), "30 February");
    assert_eq!(resident_id("1101011990030712", today()), Err(FieldCode::InvalidFormat), "too short");
    assert_eq!(resident_id("11010119900307123A", today()), Err(FieldCode::InvalidChecksum));
    assert_eq!(resident_id("1101011990030712X4", today()), Err(FieldCode::InvalidFormat), "X inside");
    let mut v = Validator::new();
    assert_eq!(v.resident_id("id", " 11010519491231002x ").0, "11010519491231002X");
    assert!(v.is_clean());
}

#[test]
fn a_birth_date_after_the_decisions_time_is_refused() {
    assert_eq!(resident_id("110105209001010017", today()), Err(FieldCode::OutOfRange));
    let mut p = person("张伟");
    p.personal.id_number = Some("110105209001010017".into());
    assert_eq!(errors_of(p), [("profile.personal.id_number".to_owned(), FieldCode::OutOfRange)]);
}

#[test]
fn the_area_code_must_start_with_a_province_that_exists() {
    assert_eq!(resident_id("000000199003071236", today()), Err(FieldCode::InvalidFormat));
}

#[test]
fn a_birth_date_that_disagrees_with_the_identity_number_is_refused() {
    let mut p = person("张伟");
    p.personal.birth_date = Date::new(1949, 12, 30);
    assert_eq!(errors_of(p.clone()), [("profile.personal.birth_date".to_owned(), FieldCode::Mismatch)]);
    p.personal.birth_date = Date::new(1949, 12, 31);
    assert_eq!(errors_of(p), []);
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
fn an_all_zero_credit_code_is_refused_by_its_structure() {
    // Its GB 32100 check character happens to be right; authority 0 does not exist.
    assert_eq!(credit_code("000000000000000000"), Err(FieldCode::InvalidFormat));
}

#[test]
fn the_embedded_organisation_code_has_its_own_check_character() {
    assert_eq!(organisation_check(b"M000100Y"), Some(b'4'));
    assert_eq!(organisation_check(b"71093465"), Some(b'X'));
    // Change the organisation code's check character and repair the outer one: still refused.
    let inner_wrong = with_outer_check("91350100M000100Y5");
    assert_eq!(credit_code(&inner_wrong), Err(FieldCode::InvalidChecksum));
}

#[test]
fn registration_authority_category_and_area_are_checked() {
    assert_eq!(credit_code(&with_outer_check("94350100M000100Y4")), Err(FieldCode::InvalidFormat), "category 4 of 9");
    assert_eq!(credit_code(&with_outer_check("B1350100M000100Y4")), Err(FieldCode::InvalidFormat), "authority B");
    assert_eq!(credit_code(&with_outer_check("91990100M000100Y4")), Err(FieldCode::InvalidFormat), "area 99");
    assert_eq!(credit_code(&with_outer_check("91100000M000100Y4")), Ok(()), "national registration");
}

/// `first17` with the GB 32100 check character appended.
fn with_outer_check(first17: &str) -> String {
    const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let sum: u32 =
        first17.bytes().zip(WEIGHTS).map(|(b, w)| ALPHABET.iter().position(|a| *a == b).unwrap() as u32 * w).sum();
    format!("{first17}{}", char::from(ALPHABET[((31 - sum % 31) % 31) as usize]))
}

// Names and free text.

#[test]
fn a_name_of_only_invisible_characters_is_missing() {
    assert_eq!(errors_of(person("\u{200B}")), [("profile.name".to_owned(), FieldCode::Required)]);
    assert_eq!(errors_of(person(" \u{3000}\u{feff} ")), [("profile.name".to_owned(), FieldCode::Required)]);
}

#[test]
fn control_characters_and_direction_overrides_are_refused_in_names() {
    assert_eq!(errors_of(person("张\u{0}三")), [("profile.name".to_owned(), FieldCode::InvalidFormat)]);
    assert_eq!(errors_of(person("\u{202E}三张")), [("profile.name".to_owned(), FieldCode::InvalidFormat)]);
    assert_eq!(errors_of(person("张\n三")), [("profile.name".to_owned(), FieldCode::InvalidFormat)]);
}

#[test]
fn names_are_kept_as_typed_and_compared_by_key() {
    // U+F90A is a CJK compatibility ideograph that NFC would turn into U+91D1.
    let stored = registered(person("  \u{F90A}三  "));
    assert_eq!(stored.name, "\u{F90A}三");
    assert_eq!(comparison_key(&stored.name), comparison_key("\u{91D1}三"));
    assert_eq!(comparison_key("Ｚｈａｎｇ Wei"), comparison_key("zhangwei"));
    // A decomposed é stays decomposed; its key equals the composed one's.
    assert_eq!(registered(person("Cafe\u{301}")).name, "Cafe\u{301}");
    assert_eq!(comparison_key("Cafe\u{301}"), comparison_key("Caf\u{e9}"));
}

#[test]
fn free_text_keeps_line_breaks_and_counts_characters() {
    let mut v = Validator::new();
    assert_eq!(v.text("summary", " 第一行\n第二行 ", 10), "第一行\n第二行");
    assert_eq!(v.name("name", "欧阳娜娜", 4), "欧阳娜娜");
    assert!(v.is_clean(), "four Chinese characters fit a limit of four characters (12 bytes)");
    v.name("name", "欧阳娜娜娜", 4);
    v.text("other", "   ", 10);
    v.text("bidi", "a\u{2066}b", 10);
    match v.finish(()) {
        Err(DomainError::Validation(errors)) => {
            let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
            assert_eq!(
                found,
                [("name", FieldCode::TooLong), ("other", FieldCode::Required), ("bidi", FieldCode::InvalidFormat)]
            );
        }
        other => panic!("expected every error at once, got {other:?}"),
    }
}

#[test]
fn one_bad_field_gives_one_error() {
    let mut p = person("张伟");
    p.personal.addresses = vec![oacis_domain::customer::Address {
        country: "China".into(),
        region: None,
        city: Some("北京".into()),
        street: "朝阳区建国路 1 号".into(),
        postal_code: None,
    }];
    assert_eq!(errors_of(p), [("profile.personal.addresses[0].country".to_owned(), FieldCode::InvalidFormat)]);
    let mut p = person("张伟");
    p.personal.phones = vec!["12".into(), "12".into()];
    assert_eq!(
        errors_of(p),
        [
            ("profile.personal.phones[0]".to_owned(), FieldCode::InvalidPhone),
            ("profile.personal.phones[1]".to_owned(), FieldCode::InvalidPhone)
        ],
        "an invalid item is not also reported as listed twice"
    );
}

#[test]
fn list_errors_name_the_item() {
    let mut p = person("张伟");
    p.tags = ["a".to_owned(), "b".to_owned(), "c\u{0}".to_owned()].into();
    assert_eq!(errors_of(p), [("profile.tags[2]".to_owned(), FieldCode::InvalidFormat)]);
    let mut p = person("张伟");
    p.personal.emails = vec!["a@example.com".into(), "A@EXAMPLE.COM".into()];
    assert_eq!(errors_of(p), [("profile.personal.emails[1]".to_owned(), FieldCode::Duplicate)]);
}

#[test]
fn an_organisation_with_a_good_credit_code_registers() {
    let mut p = person("某某科技有限公司");
    p.kind = CustomerKind::Organisation;
    p.personal.id_number = None;
    p.company =
        Some(oacis_domain::customer::Company { credit_code: Some("91350100m000100y43".into()), ..Default::default() });
    let stored = registered(p);
    assert_eq!(stored.company.unwrap().credit_code.as_deref(), Some("91350100M000100Y43"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn resident_id_with_check(first17: &str) -> String {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = first17.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
        format!("{first17}{}", char::from(b"10X98765432"[(sum % 11) as usize]))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any Chinese mobile number, written with any mix of pasted separators, is stored
        /// as the same E.164 number; the stored form reads back as itself.
        #[test]
        fn mobiles_in_any_written_form_have_one_stored_form(
            second in 3u8..10, rest in 0u64..1_000_000_000, seps in proptest::collection::vec(0usize..6, 3),
            plus in any::<bool>(),
        ) {
            // 13x, 15x, 18x, 19x are assigned for every x; others vary, so pick among them.
            let prefix = [3u8, 5, 8, 9][usize::from(second) % 4];
            let digits = format!("1{prefix}{}{rest:08}", second % 10);
            let digits = &digits[..11];
            let sep = ["", " ", "\u{a0}", "\u{3000}", "-", "\u{2013}"];
            let written = format!(
                "{}{}{}{}{}{}",
                if plus { "+86 " } else { "" },
                &digits[..3], sep[seps[0]], &digits[3..7], sep[seps[1]], &digits[7..],
            );
            let stored = cn(&written).unwrap();
            prop_assert_eq!(&stored, &format!("+86{digits}"));
            prop_assert_eq!(cn(&stored).unwrap(), stored);
        }

        /// Whatever is typed, the parser answers (no panic), and what it accepts is E.164,
        /// whose stored form reads back as itself.
        #[test]
        fn the_phone_parser_is_total(text in "\\PC{0,30}") {
            if let Ok(stored) = cn(&text) {
                prop_assert!(stored.starts_with('+'));
                let number = stored.split(";ext=").next().unwrap();
                prop_assert!(number[1..].bytes().all(|b| b.is_ascii_digit()) && number.len() <= 16);
                prop_assert_eq!(cn(&stored), Ok(stored.clone()));
            }
        }

        /// A number with an extension, however typed, is stored in a form that reads back as
        /// itself.
        #[test]
        fn extensions_survive_a_round_trip(digits in "[0-9]{1,6}", word in "( ext | ext\\. | x | 转 | 分机 |;ext=)") {
            let stored = cn(&format!("+86 10 6000 0000{word}{digits}")).unwrap();
            prop_assert_eq!(&stored, &format!("+861060000000;ext={digits}"));
            prop_assert_eq!(cn(&stored), Ok(stored.clone()));
        }

        /// Stored e-mail forms are fixed points, and every accepted address has one key that
        /// its upper-cased domain shares.
        #[test]
        fn email_stored_forms_are_fixed_points(local in "[a-z0-9._+-]{1,20}", labels in proptest::collection::vec("[a-z0-9例子中国]{1,10}", 1..3), tld in "(com|cn|中国|xn--fiqs8s)") {
            let address = format!("{local}@{}.{tld}", labels.join("."));
            if let Ok(stored) = email(&address) {
                prop_assert_eq!(email(&stored).unwrap(), stored.clone());
                let upper = format!("{local}@{}.{}", labels.join(".").to_uppercase(), tld.to_uppercase());
                prop_assert_eq!(email_key(&email(&upper).unwrap()), email_key(&stored));
            }
        }

        /// The e-mail parser answers anything without panicking, and never accepts an
        /// invisible character.
        #[test]
        fn the_email_parser_is_total(text in "\\PC{0,40}") {
            if let Ok(stored) = email(&text) {
                prop_assert!(!stored.chars().any(oacis_domain::validate::text::is_invisible));
            }
        }

        /// Every well-formed resident identity number of a real province and a past date is
        /// accepted, and every one-character change of it is refused.
        #[test]
        fn resident_ids_accept_the_valid_and_refuse_every_change(
            province in proptest::sample::select(vec![11u8, 31, 44, 65, 82]), area in 0u32..10_000,
            days in 0u32..35_000, seq in 0u32..1_000, at in 0usize..18, digit in 0u8..11,
        ) {
            let birth = Date::of_timestamp(oacis_domain::ids::Timestamp(-1_500_000_000_000_000 + i64::from(days) * 86_400_000_000), 0).unwrap();
            let first17 = format!("{province}{area:04}{}{seq:03}", birth.to_string().replace('-', ""));
            let id = resident_id_with_check(&first17);
            prop_assert_eq!(resident_id(&id, today()), Ok(birth));
            let mut changed = id.clone().into_bytes();
            let replacement = if digit == 10 { b'X' } else { b'0' + digit };
            if changed[at] != replacement {
                changed[at] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                prop_assert!(resident_id(&changed, today()).is_err(), "{} accepted", changed);
            }
        }

        /// Every credit code built by the rules is accepted; a changed character is refused.
        #[test]
        fn credit_codes_accept_the_valid_and_refuse_every_change(
            kind in proptest::sample::select(vec!["11", "51", "91", "92", "93", "Y1"]),
            province in proptest::sample::select(vec![10u8, 11, 35, 44, 65]), area in 0u32..10_000,
            body in "[0-9A-HJ-NP-RTUW-Y]{8}", at in 0usize..18, with in 0usize..31,
        ) {
            let check = char::from(organisation_check(body.as_bytes()).unwrap());
            let code = with_outer_check(&format!("{kind}{province}{area:04}{body}{check}"));
            prop_assert_eq!(credit_code(&code), Ok(()));
            let mut changed = code.clone().into_bytes();
            let replacement = b"0123456789ABCDEFGHJKLMNPQRTUWXY"[with];
            if changed[at] != replacement {
                changed[at] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                prop_assert!(credit_code(&changed).is_err(), "{} accepted", changed);
            }
        }

        /// Names are kept as typed (trimmed), and a key never depends on case or width.
        #[test]
        fn names_are_kept_and_keys_fold_case_and_width(name in "[a-zA-Z\u{4e00}-\u{4e20}\u{f900}-\u{f90f} ]{1,20}") {
            let mut v = Validator::new();
            let stored = v.name("name", &name, 100);
            prop_assert_eq!(stored.as_str(), name.trim());
            let wide: String = name.chars().map(|c| if c.is_ascii_alphabetic() { char::from_u32(u32::from(c) + 0xFEE0).unwrap() } else { c }).collect();
            prop_assert_eq!(comparison_key(&wide), comparison_key(&name.to_uppercase()));
        }
    }
}

#[test]
fn names_refuse_marks_separators_tags_and_non_characters_and_a_blank_look_alike_is_missing() {
    for (name, code) in [
        ("张\u{200E}三", FieldCode::InvalidFormat),
        ("张\u{2028}三", FieldCode::InvalidFormat),
        ("张\u{FFF9}三", FieldCode::InvalidFormat),
        ("张\u{E0041}三", FieldCode::InvalidFormat),
        ("张\u{FFFF}三", FieldCode::InvalidFormat),
        ("\u{2800}", FieldCode::Required),
    ] {
        let mut v = Validator::new();
        v.name("name", name, 100);
        match v.finish(()) {
            Err(DomainError::Validation(errors)) => assert_eq!(errors[0].code, code, "{name:?}"),
            other => panic!("{name:?} was accepted: {other:?}"),
        }
    }
    let mut v = Validator::new();
    assert_eq!(v.name("name", "  王\u{91D1}  ", 100), "王\u{91D1}");
    assert!(v.finish(()).is_ok());
}
