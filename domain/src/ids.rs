//! Identifiers and time as the domain sees them: newtypes over UUIDs and UTC microseconds.
//!
//! Ids are chosen by the caller (UUIDv7 in practice) and arrive inside commands; the domain
//! never generates one. Time arrives in the [`crate::Context`].

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Declares a UUID newtype with the shared conversions, so that each id is its own type.
macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident => $prefix:literal;)+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The stream prefix of this id's aggregate.
            pub const PREFIX: &'static str = $prefix;

            /// The name of the stream holding this aggregate's events.
            #[must_use]
            pub fn stream(&self) -> String {
                format!("{}-{}", Self::PREFIX, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )+};
}

id_type! {
    /// A customer (person or organisation).
    CustomerId => "customer";
    /// A service case.
    CaseId => "case";
    /// A task.
    TaskId => "task";
    /// A user account.
    UserId => "user";
    /// A department.
    DepartmentId => "department";
    /// A role.
    RoleId => "role";
    /// A grant of a role to a user.
    GrantId => "grant";
    /// The access log of one user (its id is the user's).
    AccessLogId => "access";
    /// One import of customers from a file.
    ImportId => "import";
    /// An approval process definition (all its versions).
    ApprovalDefinitionId => "approvaldef";
    /// One approval (流程实例), its tasks included.
    ApprovalId => "approval";
    /// One year's working calendar (see `CalendarYearId::of_year`).
    CalendarYearId => "calendar";
    /// A leave balance or a budget (see `LedgerId::of`).
    LedgerId => "ledger";
}

/// Ids of entities that live inside an aggregate (interactions, purchases, comments, sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(pub Uuid);

/// A UTC instant in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// This instant plus `minutes`.
    #[must_use]
    pub fn plus_minutes(self, minutes: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(minutes.saturating_mul(60_000_000)))
    }
}

/// A calendar date (proleptic Gregorian), checked on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A date if `year-month-day` exists (years 1000-9999).
    #[must_use]
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1000..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        Date::from_digits(&text[0..4], &text[5..7], &text[8..10])
    }

    /// The calendar date of `at` at UTC offset `offset_minutes` (proleptic Gregorian; the
    /// civil-from-days algorithm of H. Hinnant), or `None` outside years 1000-9999.
    #[must_use]
    pub fn of_timestamp(at: Timestamp, offset_minutes: i64) -> Option<Date> {
        const DAY_US: i64 = 86_400_000_000;
        let local = at.0.checked_add(offset_minutes.checked_mul(60_000_000)?)?;
        Date::from_days(local.div_euclid(DAY_US))
    }

    /// The date `days` days after 1970-01-01 (negative: before), or `None` outside years
    /// 1000-9999 (H. Hinnant's civil-from-days).
    #[must_use]
    pub fn from_days(days: i64) -> Option<Date> {
        let z = days.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(u16::try_from(year).ok()?, u8::try_from(month).ok()?, u8::try_from(day).ok()?)
    }

    /// Days since 1970-01-01 (H. Hinnant's days-from-civil).
    #[must_use]
    pub fn days(self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let yoe = year - era * 400;
        let mp = if month > 2 { month - 3 } else { month + 9 };
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The ISO weekday: 1 = Monday ... 7 = Sunday.
    #[must_use]
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday.
        u8::try_from((self.days() + 3).rem_euclid(7) + 1).unwrap_or(1)
    }

    /// The year.
    #[must_use]
    pub fn year(self) -> u16 {
        self.year
    }

    /// A date from separate digit strings, e.g. the `YYYYMMDD` inside an identity number.
    #[must_use]
    pub fn from_digits(year: &str, month: &str, day: &str) -> Option<Date> {
        let all_digits = [year, month, day].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if !all_digits {
            return None;
        }
        Date::new(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl TryFrom<String> for Date {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Date::parse(&text).ok_or_else(|| format!("{text:?} is not a date (YYYY-MM-DD)"))
    }
}

impl From<Date> for String {
    fn from(date: Date) -> String {
        date.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_weekdays_round_trip() {
        for text in ["1970-01-01", "2000-02-29", "2026-10-10", "1999-12-31", "2100-03-01"] {
            let date = Date::parse(text).unwrap();
            assert_eq!(Date::from_days(date.days()), Some(date), "{text}");
        }
        assert_eq!(Date::parse("1970-01-01").unwrap().days(), 0);
        assert_eq!(Date::parse("1970-01-01").unwrap().weekday(), 4);
        assert_eq!(Date::parse("2026-11-30").unwrap().weekday(), 1);
        assert_eq!(Date::parse("2026-10-10").unwrap().weekday(), 6);
    }

    #[test]
    fn dates_are_checked_including_leap_years() {
        assert!(Date::parse("2024-02-29").is_some());
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("1900-02-29").is_none());
        assert!(Date::parse("2000-02-29").is_some());
        assert!(Date::parse("2026-13-01").is_none());
        assert!(Date::parse("2026-04-31").is_none());
        assert!(Date::parse("2026-4-1").is_none());
        assert_eq!(Date::parse("2026-11-29").map(|d| d.to_string()).as_deref(), Some("2026-11-29"));
    }
}
