//! Working calendars: each year's public holidays and adjusted working days (调休), as the
//! State Council publishes them, and due times counted in working days or working hours.
//!
//! Invariants:
//! - Time is China Standard Time, UTC+8 all year (no daylight saving since 1991).
//! - A date listed in a published year is off or working as listed; any other date is a
//!   working day from Monday to Friday. A date in a year with no published calendar counts
//!   weekends only, and a due time computed over such a date says so (`weekends_only`).
//! - Working days and working hours are kept apart (a working day is never 24 hours):
//!   `N` working days from a moment is the same local time of day on the `N`-th following
//!   working day; working hours count only 09:00-12:00 and 13:00-18:00 of working days.
//! - A year may be published again (a correction); the latest version counts, and names its
//!   source. A file for year `Y` lists dates of `Y` and may list December dates of `Y - 1`
//!   (State Council notices follow the notice's year, so a December date may sit in the next
//!   year's file).
//! - A calendar's version ([`WorkCalendar::version`], stored with each due time) is the
//!   BLAKE3 of one line `<year>:<that year's hash>\n` per published year, in year order.
//! - Due times are computed once, when a task is created, and stored in its event with the
//!   calendar's version, so a replay gives the same due time whatever is published later.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::form::{DateRange, Half};
use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{CalendarYearId, Date, Timestamp};
use crate::validate::Validator;

/// China Standard Time's offset from UTC, in minutes.
pub const OFFSET_MINUTES: i64 = 8 * 60;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// The working hours of a working day, local time, as (start hour, end hour).
pub const WORKING_HOURS: [(i64, i64); 2] = [(9, 12), (13, 18)];
/// Most working days or hours a due rule may count (so that counting is bounded).
pub const MAX_DAYS: u32 = 365;
/// Most working hours a due rule may count.
pub const MAX_HOURS: u32 = 2_000;

/// One listed date of a year's calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarDay {
    /// The date.
    pub date: Date,
    /// Whether it is a day off (a holiday) rather than a working day (调休). Read also as
    /// `isOffDay`, so the `days` of a NateScarlet/holiday-cn year file publish as they are.
    #[serde(alias = "isOffDay")]
    pub off: bool,
    /// What it is, e.g. `国庆节`.
    pub name: String,
}

/// What can be asked of a year's calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarCommand {
    /// Publish (or publish again, corrected) a year's holidays and adjusted working days.
    PublishYear {
        /// The year.
        year: u16,
        /// Its listed dates.
        days: Vec<CalendarDay>,
        /// Where they come from (the notice's address or title).
        papers: Vec<String>,
    },
}

/// Payload of `CalendarYearPublished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarYearPublished {
    /// The year.
    pub year: u16,
    /// 1, 2, ... for the same year.
    pub version: u32,
    /// Its listed dates, in date order.
    pub days: Vec<CalendarDay>,
    /// Where they come from.
    pub papers: Vec<String>,
    /// BLAKE3 of the days' JSON bytes, 64 hex digits.
    pub hash: String,
}

events! {
    /// What happens to a year's working calendar.
    pub enum CalendarEvent {
        /// A year's calendar was published.
        CalendarYearPublished(CalendarYearPublished) = 1,
    }
}

/// The folded year: its latest version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarYearState {
    /// The latest version published.
    pub latest: Option<CalendarYearPublished>,
}

/// A year's working calendar.
#[derive(Debug)]
pub struct CalendarYear;

impl Aggregate for CalendarYear {
    type State = CalendarYearState;
    type Command = CalendarCommand;
    type Event = CalendarEvent;

    fn decide(
        state: &CalendarYearState,
        command: CalendarCommand,
        _ctx: &Context,
    ) -> Result<Vec<CalendarEvent>, DomainError> {
        let CalendarCommand::PublishYear { year, mut days, papers } = command;
        let mut v = Validator::new();
        v.require((2000..=2200).contains(&year), "year", FieldCode::OutOfRange, "2000-2200");
        days.sort_by_key(|d| d.date);
        let dates: Vec<Date> = days.iter().map(|d| d.date).collect();
        v.distinct("days", &dates);
        for (i, day) in days.iter().enumerate() {
            let previous_december = Date::new(year.saturating_sub(1), 12, 1).is_some_and(|first| day.date >= first);
            let fits = day.date.year() == year || (day.date.year() + 1 == year && previous_december);
            v.require(
                fits,
                format!("days[{i}].date"),
                FieldCode::OutOfRange,
                format!("a date of {year} (or of the December before)"),
            );
            v.text(&format!("days[{i}].name"), &day.name, 40);
        }
        v.require(
            days.iter().any(|d| d.date.year() == year),
            "days",
            FieldCode::Required,
            format!("list the holidays and adjusted working days of {year}"),
        );
        v.require(!papers.is_empty(), "papers", FieldCode::Required, "name the notice the dates come from");
        v.at_most("papers", &papers, 10);
        for (i, paper) in papers.iter().enumerate() {
            v.text(&format!("papers[{i}]"), paper, 500);
        }
        v.finish(())?;
        if let Some(latest) = &state.latest {
            if latest.year != year {
                return Err(DomainError::Rule("the year does not match its stream".into()));
            }
            if latest.days == days && latest.papers == papers {
                return Ok(Vec::new());
            }
        }
        let hash = blake3::hash(&serde_json::to_vec(&days).unwrap_or_default()).to_hex().to_string();
        let version = state.latest.as_ref().map_or(1, |l| l.version + 1);
        Ok(vec![CalendarEvent::CalendarYearPublished(CalendarYearPublished { year, version, days, papers, hash })])
    }

    fn evolve(mut state: CalendarYearState, event: &CalendarEvent) -> CalendarYearState {
        let CalendarEvent::CalendarYearPublished(e) = event;
        state.latest = Some(e.clone());
        state
    }
}

impl CalendarYearId {
    /// The stream id of `year`'s calendar (one stream per year).
    #[must_use]
    pub fn of_year(year: u16) -> CalendarYearId {
        CalendarYearId(uuid::Uuid::from_u128(u128::from(year)))
    }
}

/// A due time and whether it was counted over dates no published calendar covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    /// When it falls due.
    pub at: Timestamp,
    /// Whether weekends alone were counted for some date (no calendar for its year).
    pub weekends_only: bool,
}

/// Every published year's latest calendar, as decisions read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkCalendar {
    days: BTreeMap<Date, bool>,
    years: BTreeSet<u16>,
    /// BLAKE3 over the years and their hashes, 64 hex digits (empty with no year published):
    /// which calendar a due time was computed on.
    pub version: String,
}

impl WorkCalendar {
    /// The calendar of these published years (the latest version of each), in any order.
    #[must_use]
    pub fn of_years<'a>(years: impl IntoIterator<Item = &'a CalendarYearPublished>) -> WorkCalendar {
        let mut by_year: Vec<&CalendarYearPublished> = years.into_iter().collect();
        by_year.sort_by_key(|y| y.year);
        let mut calendar = WorkCalendar::default();
        let mut hasher = blake3::Hasher::new();
        for year in &by_year {
            calendar.years.insert(year.year);
            hasher.update(format!("{}:{}\n", year.year, year.hash).as_bytes());
            for day in &year.days {
                // A year's own file decides its dates over a neighbour's.
                if day.date.year() == year.year || !calendar.days.contains_key(&day.date) {
                    calendar.days.insert(day.date, !day.off);
                }
            }
        }
        if !by_year.is_empty() {
            calendar.version = hasher.finalize().to_hex().to_string();
        }
        calendar
    }

    /// Whether `date` is a working day, and whether a published calendar says so.
    #[must_use]
    pub fn working(&self, date: Date) -> (bool, bool) {
        match self.days.get(&date) {
            Some(working) => (*working, true),
            None => (date.weekday() <= 5, self.years.contains(&date.year())),
        }
    }

    fn day_of(&self, days: i64) -> (bool, bool) {
        Date::from_days(days).map_or((false, false), |date| self.working(date))
    }

    /// `days` working days after `from`: the same local time on the `days`-th following
    /// working day.
    #[must_use]
    pub fn add_working_days(&self, from: Timestamp, days: u32) -> Due {
        let offset = OFFSET_MINUTES * 60_000_000;
        let local = from.0.saturating_add(offset);
        let (mut day, time) = (local.div_euclid(DAY_US), local.rem_euclid(DAY_US));
        let (mut left, mut weekends_only) = (days, false);
        // Every 7 days hold a working day unless a calendar lists a whole week off; the bound
        // keeps a calendar of nothing but holidays from looping.
        for _ in 0..(i64::from(days) + 1) * 31 {
            if left == 0 {
                break;
            }
            day += 1;
            let (working, known) = self.day_of(day);
            weekends_only |= !known;
            if working {
                left -= 1;
            }
        }
        Due { at: Timestamp(day * DAY_US + time - offset), weekends_only }
    }

    /// `hours` working hours after `from`, counting only the working hours of working days.
    #[must_use]
    pub fn add_working_hours(&self, from: Timestamp, hours: u32) -> Due {
        let offset = OFFSET_MINUTES * 60_000_000;
        let mut cursor = from.0.saturating_add(offset);
        let mut left = i64::from(hours) * HOUR_US;
        let mut weekends_only = false;
        for _ in 0..(i64::from(hours) / 8 + 2) * 31 {
            let day = cursor.div_euclid(DAY_US);
            let (working, known) = self.day_of(day);
            if working {
                weekends_only |= !known;
                for (start, end) in WORKING_HOURS {
                    let (start, end) = (day * DAY_US + start * HOUR_US, day * DAY_US + end * HOUR_US);
                    if cursor >= end {
                        continue;
                    }
                    cursor = cursor.max(start);
                    let take = left.min(end - cursor);
                    cursor += take;
                    left -= take;
                    if left == 0 {
                        return Due { at: Timestamp(cursor - offset), weekends_only };
                    }
                }
            }
            cursor = (day + 1) * DAY_US;
        }
        Due { at: Timestamp(cursor - offset), weekends_only }
    }
}

impl WorkCalendar {
    /// The working half days of `range` (a morning and an afternoon per working day; the
    /// first day from its half, the last day to its half), and whether weekends alone were
    /// counted for some date.
    #[must_use]
    pub fn working_half_days(&self, range: &DateRange) -> (u32, bool) {
        let (from, to) = (range.from.0.days(), range.to.0.days());
        let (mut halves, mut weekends_only) = (0u32, false);
        for day in from..=to.min(from + 366) {
            let (working, known) = self.day_of(day);
            weekends_only |= !known;
            if !working {
                continue;
            }
            let am = !(day == from && range.from.1 == Half::Pm);
            let pm = !(day == to && range.to.1 == Half::Am);
            halves += u32::from(am) + u32::from(pm);
        }
        (halves, weekends_only)
    }
}

/// When a node's task falls due, and what then happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRule {
    /// Working days after the task is created (exactly one of days and hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_days: Option<u32>,
    /// Working hours after the task is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<u32>,
    /// What happens when it falls due.
    pub on_due: OnDue,
}

impl DueRule {
    /// The due time of a task created at `from`.
    #[must_use]
    pub fn due(&self, calendar: &WorkCalendar, from: Timestamp) -> Due {
        match (self.working_days, self.working_hours) {
            (Some(days), _) => calendar.add_working_days(from, days),
            (None, Some(hours)) => calendar.add_working_hours(from, hours),
            (None, None) => Due { at: from, weekends_only: false },
        }
    }

    /// Checks the rule; `money` says whether the form has a money field (which never passes
    /// by itself).
    pub fn check(&self, v: &mut Validator, path: &str, money: bool) {
        match (self.working_days, self.working_hours) {
            (Some(days), None) => {
                v.require(
                    (1..=MAX_DAYS).contains(&days),
                    format!("{path}.working_days"),
                    FieldCode::OutOfRange,
                    "1-365",
                );
            }
            (None, Some(hours)) => {
                v.require(
                    (1..=MAX_HOURS).contains(&hours),
                    format!("{path}.working_hours"),
                    FieldCode::OutOfRange,
                    "1-2000",
                );
            }
            _ => v.fail(path, FieldCode::InvalidFormat, "give working_days or working_hours, not both"),
        }
        v.require(
            !(money && self.on_due == OnDue::Approve),
            format!("{path}.on_due"),
            FieldCode::InvalidFormat,
            "a form with money never passes by itself; remind, reject or transfer instead",
        );
    }
}

/// What happens to a task that falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDue {
    /// Remind its assignee (once).
    Remind,
    /// Approve it automatically.
    Approve,
    /// Reject it automatically.
    Reject,
    /// Give it to its assignee's leader.
    TransferToLeader,
}
