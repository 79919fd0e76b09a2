//! One row's cells read as customer values: lists split, enumerations named in English or
//! Chinese, dates and times in the forms spreadsheets write, and numbers that a spreadsheet
//! made of phone or identity numbers recovered only when no digit was lost.
//!
//! Invariants:
//! - A column the file does not have leaves its field `None` (an update keeps the value); a
//!   column with an empty cell gives `Some` of nothing (an update clears it).
//! - Every problem is an [`Issue`] naming the row's line and the column's header; a row
//!   with any error is refused whole, with all of them.

use std::collections::BTreeSet;

use oacis_domain::customer::{CustomerKind, CustomerStatus, SourceChannel};
use oacis_domain::ids::{CustomerId, Date, Timestamp};
use serde::Serialize;

use super::columns::{Columns, Field};
use super::table::{Cell, Row};

/// One problem with a row, or a note about how a cell was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, async_graphql::SimpleObject)]
#[graphql(name = "ImportIssue")]
pub struct Issue {
    /// The row's line in the file.
    pub line: u64,
    /// The column's header, when one column is at fault.
    pub column: Option<String>,
    /// The customer field, e.g. `phones[1]`, or `row`.
    pub field: String,
    /// A stable code (`invalid_phone`, `required`, `possible_duplicate`, ...).
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
}

/// The values a row gives; `None` where the file has no column for the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// The customer's id.
    pub id: Option<CustomerId>,
    /// External id (`Some(None)`: the cell is empty).
    pub external_id: Option<Option<String>>,
    /// Person or organisation.
    pub kind: Option<CustomerKind>,
    /// Name.
    pub name: Option<String>,
    /// Organisation name.
    pub company: Option<String>,
    /// Industry.
    pub industry: Option<Option<String>>,
    /// Head count band.
    pub company_size: Option<Option<String>>,
    /// Website.
    pub website: Option<Option<String>>,
    /// Credit code.
    pub credit_code: Option<Option<String>>,
    /// Segment.
    pub segment: Option<Option<String>>,
    /// Source channel.
    pub source: Option<SourceChannel>,
    /// Tags.
    pub tags: Option<BTreeSet<String>>,
    /// Phones as typed (or recovered from a number).
    pub phones: Option<Vec<String>>,
    /// E-mails.
    pub emails: Option<Vec<String>>,
    /// Identity number.
    pub id_number: Option<Option<String>>,
    /// Birth date.
    pub birth_date: Option<Option<Date>>,
    /// Owner as written (id, username or display name).
    pub owner: Option<String>,
    /// Department as written (id or name).
    pub department: Option<String>,
    /// Status.
    pub status: Option<CustomerStatus>,
    /// Registration time (business time).
    pub registered_at: Option<Timestamp>,
    /// Last contact (business time).
    pub last_contact: Option<Timestamp>,
}

/// Reads rows against their columns.
#[derive(Debug)]
pub struct Reader<'a> {
    /// The file's columns.
    pub columns: &'a Columns,
    /// The headers, for issues.
    pub headers: &'a [String],
    /// The offset of times written without one, in minutes east of UTC.
    pub utc_offset_minutes: i32,
}

impl Reader<'_> {
    /// The header of the (first) column that holds `field`, as the file writes it.
    #[must_use]
    pub fn header(&self, field: Field) -> Option<String> {
        self.columns.of(field).next().and_then(|c| self.headers.get(c).cloned())
    }

    /// The row's values, with every error and note found.
    #[must_use]
    pub fn values(&self, row: &Row) -> (Values, Vec<Issue>, Vec<Issue>) {
        let mut r = RowReader { reader: self, row, errors: Vec::new(), notes: Vec::new() };
        if row.extra > 0 {
            r.errors.push(r.issue(
                None,
                "row",
                "invalid_format",
                format!("{} cells beyond the header's columns", row.extra),
            ));
        }
        let values = Values {
            id: r
                .single(Field::Id, |text| {
                    uuid::Uuid::try_parse(text).map(CustomerId).map_err(|_| "is not a UUID".into())
                })
                .flatten(),
            external_id: r.optional_text(Field::ExternalId),
            kind: r.single(Field::Kind, kind).flatten(),
            name: r.text(Field::Name),
            company: r.text(Field::Company),
            industry: r.optional_text(Field::Industry),
            company_size: r.optional_text(Field::CompanySize),
            website: r.optional_text(Field::Website),
            credit_code: r.optional_text(Field::CreditCode),
            segment: r.optional_text(Field::Segment),
            source: r.single(Field::Source, source).map(|s| s.unwrap_or(SourceChannel::Other)),
            tags: r.list(Field::Tags).map(|tags| tags.into_iter().collect()),
            phones: if r.masked(Field::Phones) { None } else { r.phones() },
            emails: if r.masked(Field::Emails) { None } else { r.list(Field::Emails) },
            id_number: if r.masked(Field::IdNumber) { None } else { r.id_number() },
            birth_date: if r.masked(Field::BirthDate) {
                None
            } else {
                r.single(Field::BirthDate, |text| {
                    date_time(text, 0).map(|(date, _)| date).ok_or_else(|| "use a date such as 1990-03-07".into())
                })
            },
            owner: r.text(Field::Owner).filter(|t| !t.is_empty()),
            department: r.text(Field::Department).filter(|t| !t.is_empty()),
            status: r.single(Field::Status, status).flatten(),
            registered_at: r.time(Field::RegisteredAt),
            last_contact: r.time(Field::LastContact),
        };
        (values, r.errors, r.notes)
    }
}

struct RowReader<'a, 'b> {
    reader: &'a Reader<'b>,
    row: &'a Row,
    errors: Vec<Issue>,
    notes: Vec<Issue>,
}

impl<'a> RowReader<'a, '_> {
    fn issue(&self, column: Option<usize>, field: &str, code: &str, message: String) -> Issue {
        Issue {
            line: self.row.line,
            column: column.and_then(|c| self.reader.headers.get(c).cloned()),
            field: field.to_owned(),
            code: code.to_owned(),
            message,
        }
    }

    fn cells(&self, field: Field) -> Vec<(usize, &'a Cell)> {
        self.reader.columns.of(field).filter_map(|c| self.row.cells.get(c).map(|cell| (c, cell))).collect()
    }

    /// The trimmed text of the field's column (`None` without a column).
    fn text(&self, field: Field) -> Option<String> {
        let (_, cell) = *self.cells(field).first()?;
        Some(cell.text().trim().to_owned())
    }

    fn optional_text(&self, field: Field) -> Option<Option<String>> {
        self.text(field).map(|t| (!t.is_empty()).then_some(t))
    }

    /// A single-valued field parsed by `parse` (`Some(None)`: empty cell).
    fn single<T>(&mut self, field: Field, parse: impl Fn(&str) -> Result<T, String>) -> Option<Option<T>> {
        let (column, cell) = *self.cells(field).first()?;
        let text = cell.text();
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        match parse(text) {
            Ok(value) => Some(Some(value)),
            Err(message) => {
                let issue = self.issue(Some(column), field.name(), "invalid_format", format!("{text:?} {message}"));
                self.errors.push(issue);
                Some(None)
            }
        }
    }

    /// Whether the field's cells hold a masked value (`+86139****5678`, `m***@example.com`,
    /// `110105********002X`: an export for a caller without personal data). A masked value
    /// is left out, noted, so that the customer keeps what it has: re-importing such an
    /// export changes nothing.
    fn masked(&mut self, field: Field) -> bool {
        let Some((column, _)) = self.cells(field).into_iter().find(|(_, cell)| cell.text().contains("***")) else {
            return false;
        };
        let note = self.issue(
            Some(column),
            field.name(),
            "masked",
            "is masked (exported without personal data): left out, the customer keeps what it has".into(),
        );
        self.notes.push(note);
        true
    }

    /// Every item of a list field, from all its columns.
    fn list(&self, field: Field) -> Option<Vec<String>> {
        let cells = self.cells(field);
        if cells.is_empty() {
            return None;
        }
        Some(cells.iter().flat_map(|(_, cell)| split_list(&cell.text(), field == Field::Phones)).collect())
    }

    fn phones(&mut self) -> Option<Vec<String>> {
        let cells = self.cells(Field::Phones);
        if cells.is_empty() {
            return None;
        }
        let mut phones = Vec::new();
        for (column, cell) in cells {
            let recovered = match cell {
                Cell::Number(n) => Some(exact_integer(*n).ok_or_else(|| n.to_string())),
                Cell::Text(t) if is_scientific(t.trim()) => Some(scientific_digits(t.trim()).ok_or_else(|| t.clone())),
                _ => None,
            };
            match recovered {
                Some(Ok(digits)) => {
                    let note = self.issue(
                        Some(column),
                        "phones",
                        "number_recovered",
                        format!("the phone was stored as a number; read as {digits} (format the column as text)"),
                    );
                    self.notes.push(note);
                    phones.push(digits);
                }
                Some(Err(shown)) => {
                    let issue = self.issue(
                        Some(column),
                        "phones",
                        "invalid_phone",
                        format!(
                            "{shown} is a phone the spreadsheet turned into a number and rounded; digits are lost: \
                             format the column as text and export the file again"
                        ),
                    );
                    self.errors.push(issue);
                }
                None => phones.extend(split_list(&cell.text(), true)),
            }
        }
        Some(phones)
    }

    fn id_number(&mut self) -> Option<Option<String>> {
        let (column, cell) = *self.cells(Field::IdNumber).first()?;
        let text = cell.text();
        if matches!(cell, Cell::Number(_)) || is_scientific(text.trim()) {
            let issue = self.issue(
                Some(column),
                "id_number",
                "invalid_format",
                format!(
                    "{} is an identity number the spreadsheet turned into a number; its 18 digits do not survive \
                     that: format the column as text and export the file again",
                    text.trim()
                ),
            );
            self.errors.push(issue);
            return Some(None);
        }
        let text = text.trim();
        Some((!text.is_empty()).then(|| text.to_owned()))
    }

    fn time(&mut self, field: Field) -> Option<Timestamp> {
        let offset = self.reader.utc_offset_minutes;
        self.single(field, |text| {
            date_time(text, offset)
                .map(|(_, at)| at)
                .ok_or_else(|| "is not a time; use RFC 3339 (2024-03-07T09:30:00+08:00) or 2024-03-07 09:30".into())
        })
        .flatten()
    }
}

/// Splits a list cell: a PostgreSQL array literal (`{a,"b c"}`), or items separated by
/// `,` `，` `;` `；` `、` `|` or line breaks (for phones, `;ext=` stays part of its number).
#[must_use]
pub fn split_list(text: &str, phones: bool) -> Vec<String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut items = Vec::new();
        let mut current = String::new();
        let mut quoted = false;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' if quoted => current.extend(chars.next()),
                ',' if !quoted => items.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        items.push(current);
        return items.into_iter().map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()).collect();
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let separates = match c {
            ',' | '，' | '；' | '、' | '|' | '\n' | '\r' => true,
            ';' => !(phones && rest.starts_with("ext=")),
            _ => false,
        };
        if separates {
            items.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    items.push(current);
    items.into_iter().map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()).collect()
}

/// Joins a list for an export cell so that [`split_list`] gives it back: `a, b`, or an
/// array literal when an item holds a separator.
#[must_use]
pub fn join_list<'a>(items: impl IntoIterator<Item = &'a str>, phones: bool) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    let plain = items.iter().all(|i| split_list(i, phones) == [i.trim()] && !i.starts_with('{'));
    if plain {
        items.join(", ")
    } else {
        let quoted: Vec<String> =
            items.iter().map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\""))).collect();
        format!("{{{}}}", quoted.join(","))
    }
}

/// `1.3912345678E10` and the like: a number in scientific notation.
fn is_scientific(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else { return false };
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    !mantissa.is_empty()
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.chars().filter(|c| *c == '.').count() <= 1
        && !exponent.is_empty()
        && exponent.chars().all(|c| c.is_ascii_digit())
}

/// The integer a scientific-notation text stands for, if its mantissa holds every digit
/// (`1.3912345678E10` is 13912345678; `1.39123E10` lost five digits: `None`).
fn scientific_digits(text: &str) -> Option<String> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: usize = exponent.trim_start_matches('+').parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if fraction.len() != exponent {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    (digits.len() <= 15).then_some(digits)
}

/// A whole number held exactly by a double (below 2^53), as digits.
fn exact_integer(n: f64) -> Option<String> {
    #[allow(clippy::cast_possible_truncation)]
    (n.fract() == 0.0 && n > 0.0 && n < 9_007_199_254_740_992.0).then(|| format!("{}", n as i64))
}

fn kind(text: &str) -> Result<CustomerKind, String> {
    match text.to_lowercase().as_str() {
        "person" | "individual" | "个人" | "自然人" | "个人客户" => Ok(CustomerKind::Person),
        "organisation" | "organization" | "company" | "企业" | "公司" | "单位" | "机构" | "企业客户" => {
            Ok(CustomerKind::Organisation)
        }
        _ => Err("is not a kind: use person (个人) or organisation (企业)".into()),
    }
}

fn source(text: &str) -> Result<SourceChannel, String> {
    use SourceChannel as S;
    let key: String = text.to_lowercase().chars().filter(|c| !c.is_whitespace() && *c != '_' && *c != '-').collect();
    Ok(match key.as_str() {
        "salesvisit" | "visit" | "销售拜访" | "拜访" | "陌拜" => S::SalesVisit,
        "referral" | "转介绍" | "推荐" | "介绍" => S::Referral,
        "marketresearch" | "市场调研" | "调研" => S::MarketResearch,
        "website" | "web" | "网站" | "官网" | "网络" => S::Website,
        "socialmedia" | "wechat" | "weibo" | "社交媒体" | "微信" | "微博" | "抖音" => S::SocialMedia,
        "event" | "exhibition" | "fair" | "活动" | "展会" | "会议" => S::Event,
        "coldcall" | "电话营销" | "陌生电话" => S::ColdCall,
        "partner" | "reseller" | "合作伙伴" | "渠道" | "代理商" => S::Partner,
        "other" | "其他" | "其它" => S::Other,
        _ => {
            return Err("is not a source: use sales_visit, referral, market_research, website, social_media, \
                        event, cold_call, partner or other (or 拜访, 转介绍, 调研, 官网, 社交媒体, 展会, 电话营销, \
                        合作伙伴, 其他)"
                .into())
        }
    })
}

fn status(text: &str) -> Result<CustomerStatus, String> {
    match text.to_lowercase().as_str() {
        "active" | "正常" | "有效" | "活跃" => Ok(CustomerStatus::Active),
        "archived" | "归档" | "已归档" | "archive" => Ok(CustomerStatus::Archived),
        _ => Err("is not a status an import sets: use active (正常) or archived (归档)".into()),
    }
}

/// A date, or a date and time, as spreadsheets write them: RFC 3339 with its offset, or
/// `2024-03-07`, `2024/3/7`, `2024年3月7日`, with an optional `09:30[:15]` read at
/// `offset_minutes` east of UTC. Gives the date and the instant (midnight for a date).
#[must_use]
pub fn date_time(text: &str, offset_minutes: i32) -> Option<(Date, Timestamp)> {
    let text = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        let date = Date::new(u16::try_from(at.year()).ok()?, u8::from(at.month()), at.day())?;
        return Some((date, Timestamp(i64::try_from(at.unix_timestamp_nanos() / 1_000).ok()?)));
    }
    let numbers: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let date_part_ok = text.chars().all(|c| c.is_ascii_digit() || "-/.年月日 :T".contains(c));
    if !date_part_ok || !(3..=6).contains(&numbers.len()) || numbers[0] < 1000 {
        return None;
    }
    let get = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let date = Date::new(u16::try_from(get(0)).ok()?, u8::try_from(get(1)).ok()?, u8::try_from(get(2)).ok()?)?;
    let (hour, minute, second) = (get(3), get(4), get(5));
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let day = time::Date::from_calendar_date(
        i32::from(u16::try_from(get(0)).ok()?),
        time::Month::try_from(u8::try_from(get(1)).ok()?).ok()?,
        u8::try_from(get(2)).ok()?,
    )
    .ok()?;
    let seconds = day.midnight().assume_utc().unix_timestamp() + i64::from(hour * 3600 + minute * 60 + second)
        - i64::from(offset_minutes) * 60;
    Some((date, Timestamp(seconds * 1_000_000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_every_separator_and_round_trip() {
        assert_eq!(split_list("a, b，c、d;e；f", false), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(split_list("{VIP,\"a,b\",重点客户}", false), ["VIP", "a,b", "重点客户"]);
        assert_eq!(split_list("+861012345678;ext=12; 139", true), ["+861012345678;ext=12", "139"]);
        for items in [vec!["VIP", "重点客户"], vec!["a,b", "c"], vec!["{x}"], vec!["say \"hi\""]] {
            assert_eq!(split_list(&join_list(items.iter().copied(), false), false), items);
        }
    }

    #[test]
    fn numbers_are_recovered_only_when_exact() {
        assert!(is_scientific("1.3912345678E10"));
        assert_eq!(scientific_digits("1.3912345678E10").as_deref(), Some("13912345678"));
        assert_eq!(scientific_digits("1.39123E10"), None);
        assert_eq!(exact_integer(13_912_345_678.0).as_deref(), Some("13912345678"));
        assert_eq!(exact_integer(1.5), None);
        assert!(!is_scientific("+86 139"));
    }

    #[test]
    fn dates_and_times_in_spreadsheet_forms() {
        let (date, at) = date_time("2024-03-07 09:30", 8 * 60).unwrap();
        assert_eq!(date, Date::parse("2024-03-07").unwrap());
        let (_, utc) = date_time("2024-03-07T01:30:00Z", 0).unwrap();
        assert_eq!(at, utc);
        assert_eq!(date_time("2024年3月7日", 0).map(|d| d.0), Date::parse("2024-03-07"));
        assert_eq!(date_time("2024/3/7", 0).map(|d| d.0), Date::parse("2024-03-07"));
        assert_eq!(date_time("2024-02-30", 0), None);
        assert_eq!(date_time("yesterday", 0), None);
        assert_eq!(date_time("07/03/2024", 0), None, "day-first dates are ambiguous");
    }
}
