//! Analytics folded from the same log the auditors verify: customer counts by segment,
//! source, owner, department and status; new customers per day, week and month; purchase
//! totals by month and currency; case counts, mean first-response and resolution times and
//! satisfaction; task completion.

use crate::view::FastMap as HashMap;
use std::collections::BTreeMap;

use oacis_domain::case::CaseEvent;
use oacis_domain::customer::{CustomerEvent, CustomerStatus, SourceChannel};
use oacis_domain::ids::{CaseId, CustomerId, DepartmentId, Timestamp, UserId};
use oacis_domain::task::{TaskEvent, TaskStatus};

use crate::decode::{AnyEvent, DomainRecord};
use crate::view::{dump_lines, dump_sorted, View};

const DAY_US: i64 = 86_400_000_000;

/// Days since 1970-01-01 (UTC) of an instant.
fn day(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_US)
}

/// `YYYY-MM` of a day number (proleptic Gregorian; Howard Hinnant's civil-from-days).
fn month(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

/// `YYYY-MM-DD` of a day number.
fn date(days: i64) -> String {
    let month_start = month(days);
    // Find the first day of that month by stepping back; at most 30 steps.
    let mut first = days;
    while month(first - 1) == month_start {
        first -= 1;
    }
    format!("{month_start}-{:02}", days - first + 1)
}

/// The Monday that starts the ISO week of a day number, as `YYYY-MM-DD`.
fn week(days: i64) -> String {
    // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
    date(days - (days + 3).rem_euclid(7))
}

/// The attributes of a customer that analytics group by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CustomerFacts {
    segment: Option<String>,
    source: SourceChannel,
    owner: UserId,
    department: DepartmentId,
    status: CustomerStatus,
    registered_day: i64,
    /// Purchases net of reversals, for value tiers.
    purchases: u32,
    monetary_minor: i64,
    last_purchase: Option<Timestamp>,
}

/// A customer's value tier from recency, frequency and monetary value (RFM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueTier {
    /// No purchase yet.
    Prospect,
    /// RFM score 3-4.
    Low,
    /// RFM score 5-6.
    Medium,
    /// RFM score 7-9.
    High,
}

/// Thresholds of the RFM scores (each 1-3): recency in days since the last purchase,
/// frequency in purchases, monetary value in minor units.
#[derive(Debug, Clone, Copy)]
pub struct RfmThresholds {
    /// Days since the last purchase for recency 3 and 2.
    pub recent_days: (i64, i64),
    /// Purchases for frequency 3 and 2.
    pub frequent: (u32, u32),
    /// Net amount (minor units) for monetary 3 and 2.
    pub valuable_minor: (i64, i64),
}

impl Default for RfmThresholds {
    fn default() -> Self {
        RfmThresholds { recent_days: (30, 90), frequent: (5, 2), valuable_minor: (1_000_000, 100_000) }
    }
}

fn score<T: PartialOrd>(value: T, (best, good): (T, T), higher_is_better: bool) -> u32 {
    let (at_best, at_good) =
        if higher_is_better { (value >= best, value >= good) } else { (value <= best, value <= good) };
    if at_best {
        3
    } else if at_good {
        2
    } else {
        1
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CaseFacts {
    opened_at: Option<Timestamp>,
    first_response_us: Option<i64>,
    resolution_us: Option<i64>,
    rating: Option<u8>,
    closed: bool,
}

/// Totals of purchases, in minor units, net of reversals.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Purchases recorded.
    pub count: u64,
    /// Net amount in minor units.
    pub amount_minor: i64,
}

/// Case figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseFigures {
    /// Cases opened.
    pub opened: u64,
    /// Cases closed.
    pub closed: u64,
    /// Mean time to first response, in seconds.
    pub mean_first_response_s: Option<f64>,
    /// Mean time to (last) resolution, in seconds.
    pub mean_resolution_s: Option<f64>,
    /// Mean satisfaction (1-5).
    pub mean_satisfaction: Option<f64>,
}

/// The analytics view.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Analytics {
    /// Hash maps where every event looks an entry up and every query only counts; `dump`
    /// sorts them. (Cases stay ordered: their means are sums of floats, which depend on order.)
    customers: HashMap<CustomerId, CustomerFacts>,
    purchases: BTreeMap<(String, String), Totals>,
    cases: BTreeMap<CaseId, CaseFacts>,
    tasks: HashMap<oacis_domain::ids::TaskId, TaskStatus>,
    /// The month (`YYYY-MM`, of its business date `purchased_on`) of every purchase, so that
    /// a reversal is taken off the month it was counted in. Derived from the purchases'
    /// events; not dumped (the totals it feeds are).
    purchase_month: HashMap<oacis_domain::ids::EntryId, String>,
}

/// A dimension to count customers by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Segment (`-` for none).
    Segment,
    /// Source channel, named as the API's enum names it (`SALES_VISIT`).
    Source,
    /// Owner (user id).
    Owner,
    /// Department (department id).
    Department,
    /// Status, named as the API's enum names it (`ACTIVE`).
    Status,
    /// Registration day, `YYYY-MM-DD`.
    Day,
    /// Registration week (its Monday), `YYYY-MM-DD`.
    Week,
    /// Registration month, `YYYY-MM`.
    Month,
}

/// A variant's name (`SalesVisit`) as a GraphQL enum value names it (`SALES_VISIT`), so that
/// a bucket's key reads as the value a filter takes.
fn enum_name(variant: &str) -> String {
    let mut name = String::with_capacity(variant.len() + 4);
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

impl Analytics {
    /// Customers (merged ones excluded) counted by `dimension`.
    #[must_use]
    pub fn customers_by(&self, dimension: Dimension) -> BTreeMap<String, u64> {
        self.customers_by_where(dimension, &|_, _| true)
    }

    /// Customers (merged ones excluded) whose owner and department `admit` accepts (a
    /// caller's scope), counted by `dimension`.
    #[must_use]
    pub fn customers_by_where(
        &self,
        dimension: Dimension,
        admit: &dyn Fn(UserId, DepartmentId) -> bool,
    ) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for c in self.customers.values().filter(|c| c.status != CustomerStatus::Merged && admit(c.owner, c.department))
        {
            let key = match dimension {
                Dimension::Segment => c.segment.clone().unwrap_or_else(|| "-".into()),
                Dimension::Source => enum_name(&format!("{:?}", c.source)),
                Dimension::Owner => c.owner.to_string(),
                Dimension::Department => c.department.to_string(),
                Dimension::Status => enum_name(&format!("{:?}", c.status)),
                Dimension::Day => date(c.registered_day),
                Dimension::Week => week(c.registered_day),
                Dimension::Month => month(c.registered_day),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// Purchase totals by (month `YYYY-MM`, currency), net of reversals.
    #[must_use]
    pub fn purchases_by_month(&self) -> BTreeMap<(&str, &str), &Totals> {
        self.purchases
            .iter()
            .filter(|((k, _), _)| !k.starts_with("segment:"))
            .map(|((k, c), t)| ((k.as_str(), c.as_str()), t))
            .collect()
    }

    /// Purchase totals by (segment at the time of purchase, currency), net of reversals.
    #[must_use]
    pub fn purchases_by_segment(&self) -> BTreeMap<(&str, &str), &Totals> {
        self.purchases
            .iter()
            .filter_map(|((k, c), t)| k.strip_prefix("segment:").map(|segment| ((segment, c.as_str()), t)))
            .collect()
    }

    /// Each live customer's value tier as of `now`.
    #[must_use]
    pub fn value_tiers(&self, now: Timestamp, thresholds: RfmThresholds) -> BTreeMap<CustomerId, ValueTier> {
        self.value_tiers_where(now, thresholds, &|_, _| true)
    }

    /// Each live customer's value tier as of `now`, for customers `admit` accepts.
    #[must_use]
    pub fn value_tiers_where(
        &self,
        now: Timestamp,
        thresholds: RfmThresholds,
        admit: &dyn Fn(UserId, DepartmentId) -> bool,
    ) -> BTreeMap<CustomerId, ValueTier> {
        self.customers
            .iter()
            .filter(|(_, c)| c.status != CustomerStatus::Merged && admit(c.owner, c.department))
            .map(|(id, c)| {
                let tier = match c.last_purchase {
                    None => ValueTier::Prospect,
                    Some(last) => {
                        let days = (now.0 - last.0).div_euclid(DAY_US);
                        let rfm = score(days, thresholds.recent_days, false)
                            + score(c.purchases, thresholds.frequent, true)
                            + score(c.monetary_minor, thresholds.valuable_minor, true);
                        match rfm {
                            7..=9 => ValueTier::High,
                            5..=6 => ValueTier::Medium,
                            _ => ValueTier::Low,
                        }
                    }
                };
                (*id, tier)
            })
            .collect()
    }

    /// Case figures.
    #[must_use]
    pub fn cases(&self) -> CaseFigures {
        let to_s = |us: i64| us as f64 / 1e6;
        CaseFigures {
            opened: self.cases.len() as u64,
            closed: self.cases.values().filter(|c| c.closed).count() as u64,
            mean_first_response_s: mean(self.cases.values().filter_map(|c| c.first_response_us).map(to_s)),
            mean_resolution_s: mean(self.cases.values().filter_map(|c| c.resolution_us).map(to_s)),
            mean_satisfaction: mean(self.cases.values().filter_map(|c| c.rating).map(f64::from)),
        }
    }

    /// Share of tasks done among those done, open or in progress (cancelled ones left out).
    #[must_use]
    pub fn task_completion_rate(&self) -> Option<f64> {
        let done = self.tasks.values().filter(|s| **s == TaskStatus::Done).count();
        let counted = self.tasks.values().filter(|s| **s != TaskStatus::Cancelled).count();
        (counted > 0).then(|| done as f64 / counted as f64)
    }

    fn apply_customer(&mut self, id: CustomerId, event: &CustomerEvent, at: Timestamp) -> Result<(), String> {
        if let CustomerEvent::CustomerRegistered(e) = event {
            let facts = CustomerFacts {
                segment: e.profile.segment.clone(),
                source: e.profile.source,
                owner: e.owner,
                department: e.department,
                status: CustomerStatus::Active,
                registered_day: day(at),
                purchases: 0,
                monetary_minor: 0,
                last_purchase: None,
            };
            self.customers.insert(id, facts);
            return Ok(());
        }
        let facts = self.customers.get_mut(&id).ok_or_else(|| format!("customer {id} was never registered"))?;
        match event {
            CustomerEvent::CustomerProfileUpdated(e) => {
                facts.segment = e.profile.segment.clone();
                facts.source = e.profile.source;
            }
            CustomerEvent::CustomerOwnerChanged(e) => {
                facts.owner = e.owner;
                facts.department = e.department;
            }
            CustomerEvent::CustomerArchived(_) => facts.status = CustomerStatus::Archived,
            CustomerEvent::CustomerRestored(_) => facts.status = CustomerStatus::Active,
            CustomerEvent::CustomerMerged(_) => facts.status = CustomerStatus::Merged,
            CustomerEvent::CustomerUnmerged(e) => facts.status = e.status,
            CustomerEvent::PurchaseRecorded(e) => {
                facts.purchases = facts.purchases.saturating_add(1);
                facts.monetary_minor = facts.monetary_minor.saturating_add(e.amount_minor);
                facts.last_purchase = Some(facts.last_purchase.map_or(at, |t| t.max(at)));
                let segment = facts.segment.clone().unwrap_or_else(|| "-".into());
                // By the purchase's own date, not the day it was entered.
                let purchased: String = e.purchased_on.to_string().chars().take(7).collect();
                self.purchase_month.insert(e.purchase_id, purchased.clone());
                for key in [(purchased, e.currency.clone()), (format!("segment:{segment}"), e.currency.clone())] {
                    let totals = self.purchases.entry(key).or_default();
                    totals.count += 1;
                    totals.amount_minor = totals.amount_minor.saturating_add(e.amount_minor);
                }
            }
            CustomerEvent::PurchaseReversed(e) => {
                facts.purchases = facts.purchases.saturating_sub(1);
                facts.monetary_minor = facts.monetary_minor.saturating_sub(e.amount_minor);
                let segment = facts.segment.clone().unwrap_or_else(|| "-".into());
                let purchased = self.purchase_month.get(&e.purchase_id).cloned().unwrap_or_else(|| month(day(at)));
                for key in [(purchased, e.currency.clone()), (format!("segment:{segment}"), e.currency.clone())] {
                    let totals = self.purchases.entry(key).or_default();
                    totals.amount_minor = totals.amount_minor.saturating_sub(e.amount_minor);
                }
            }
            // Business time: a customer imported from another system counts on the day that
            // system registered it.
            CustomerEvent::CustomerImported(e) => {
                if let (true, Some(at)) = (e.registered, e.registered_at) {
                    facts.registered_day = day(at);
                }
            }
            CustomerEvent::CustomerRegistered(_)
            | CustomerEvent::CustomerImportReverted(_)
            | CustomerEvent::CustomerAbsorbed(_)
            | CustomerEvent::CustomerPersonalDataErased(_)
            | CustomerEvent::CustomerReleased(_)
            | CustomerEvent::InteractionLogged(_) => {}
        }
        Ok(())
    }

    fn apply_case(&mut self, id: CaseId, event: &CaseEvent) -> Result<(), String> {
        if let CaseEvent::CaseOpened(e) = event {
            self.cases.insert(id, CaseFacts { opened_at: Some(e.opened_at), ..CaseFacts::default() });
            return Ok(());
        }
        let facts = self.cases.get_mut(&id).ok_or_else(|| format!("case {} was never opened", id.0))?;
        let since_open = |at: Timestamp| facts.opened_at.map(|o| at.0 - o.0);
        match event {
            CaseEvent::CaseResponded(e) if e.first => facts.first_response_us = since_open(e.responded_at),
            CaseEvent::CaseResolved(e) => facts.resolution_us = since_open(e.resolved_at),
            CaseEvent::CaseRated(e) => facts.rating = Some(e.score),
            CaseEvent::CaseClosed(_) => facts.closed = true,
            CaseEvent::CaseReopened(_) => {
                facts.closed = false;
                facts.rating = None;
            }
            _ => {}
        }
        Ok(())
    }
}

impl View for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn apply(&mut self, record: &DomainRecord) -> Result<(), String> {
        match &record.event {
            AnyEvent::Customer(id, event) => self.apply_customer(*id, event, record.recorded_at),
            AnyEvent::Case(id, event) => self.apply_case(*id, event),
            AnyEvent::Task(id, event) => {
                match event {
                    TaskEvent::TaskCreated(_) => {
                        self.tasks.insert(*id, TaskStatus::Open);
                    }
                    TaskEvent::TaskStatusChanged(e) => {
                        *self.tasks.get_mut(id).ok_or_else(|| format!("task {} was never created", id.0))? = e.to;
                    }
                    _ => {}
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn dump(&self, out: &mut String) {
        dump_sorted(out, "analytics.customers", &self.customers);
        dump_lines(out, "analytics.purchases", &self.purchases);
        dump_lines(out, "analytics.cases", &self.cases);
        dump_sorted(out, "analytics.tasks", &self.tasks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_helpers_agree_with_known_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(week(0), "1969-12-29");
        // 2026-11-29 is day 20786, a Sunday; its week starts on Monday 2026-11-23.
        assert_eq!(date(20_786), "2026-11-29");
        assert_eq!(week(20_786), "2026-11-23");
        assert_eq!(month(20_786), "2026-11");
        assert_eq!(date(11_016), "2000-02-29");
    }

    #[test]
    fn keys_of_enums_are_the_api_enum_values() {
        assert_eq!(enum_name(&format!("{:?}", SourceChannel::SalesVisit)), "SALES_VISIT");
        assert_eq!(enum_name(&format!("{:?}", SourceChannel::Referral)), "REFERRAL");
        assert_eq!(enum_name(&format!("{:?}", CustomerStatus::Active)), "ACTIVE");
    }
}
