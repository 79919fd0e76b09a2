//! The form of an approval: typed fields per definition version, the values a submitter
//! fills in, and the conditions that route on them.
//!
//! Invariants:
//! - Money is integer fen (1 yuan = 100 fen), never a float.
//! - A form is a JSON object whose keys are the definition's field names; its stored form is
//!   the one `serde_json` writes (keys sorted), so its BLAKE3 hash is a function of the values.
//! - Validation reports every field's problem at once, named `form.<field>`.
//! - Conditions are data (groups of rules joined by and/or), never scripts; a condition may
//!   only name a field of the form with an operator that fits the field's type, which
//!   [`check_condition`] enforces when a definition is published.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::customer::MAX_TEXT_CHARS;
use crate::error::FieldCode;
use crate::ids::Date;
use crate::validate::text::{is_control, is_direction_control};
use crate::validate::Validator;

/// Largest money value of a field, in fen (10^12: ¥10 billion, the ledgers' limit too).
pub const MAX_FEN: i64 = 1_000_000_000_000;

/// A filled-in form: field name to value.
pub type FormValues = BTreeMap<String, Value>;

/// The type of a form field and how its value is written in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// An amount of money in integer fen (JSON integer ≥ 0).
    Money,
    /// A number (JSON number).
    Number,
    /// Text of at most `max` characters (JSON string).
    Text {
        /// Longest allowed, in characters.
        max: usize,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A span of dates with half days: `{"from": date, "to": date, "from_half": "am"|"pm",
    /// "to_half": "am"|"pm"}`; the halves default to a whole first and last day.
    DateRange,
    /// A user, by id.
    User,
    /// A department, by id.
    Department,
    /// A customer, by id.
    Customer,
    /// One of the listed options.
    Choice {
        /// The options, as shown.
        options: Vec<String>,
    },
    /// A file kept outside the log: `{"name": text, "size": bytes, "blake3": 64 hex digits}`.
    Attachment,
    /// Detail rows (明细): a list of at most `max` objects, each with these fields (which
    /// are not rows themselves).
    Rows {
        /// Each row's fields.
        fields: Vec<FieldSpec>,
        /// Most rows.
        max: usize,
    },
}

impl FieldKind {
    fn ordered(&self) -> bool {
        matches!(self, FieldKind::Money | FieldKind::Number | FieldKind::Date)
    }
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// The key in the values, e.g. `amount`.
    pub name: String,
    /// The label shown, e.g. `金额`.
    pub label: String,
    /// Its type.
    #[serde(flatten)]
    pub kind: FieldKind,
    /// Whether a value must be given.
    #[serde(default)]
    pub required: bool,
}

/// Checks `values` against `fields`: every required field present, every value of its type,
/// no unknown field. Each problem is recorded on `v` as `form.<name>`.
pub fn check_values(v: &mut Validator, fields: &[FieldSpec], values: &FormValues) {
    check_at(v, "form", fields, values);
}

fn check_at(v: &mut Validator, prefix: &str, fields: &[FieldSpec], values: &FormValues) {
    for name in values.keys() {
        if !fields.iter().any(|f| &f.name == name) {
            v.fail(format!("{prefix}.{name}"), FieldCode::InvalidFormat, "no such field in this form");
        }
    }
    for field in fields {
        let path = format!("{prefix}.{}", field.name);
        match (values.get(&field.name), &field.kind) {
            (None | Some(Value::Null), _) => {
                v.require(!field.required, path, FieldCode::Required, "is required");
            }
            (Some(Value::Array(rows)), FieldKind::Rows { fields: row_fields, max }) => {
                v.require(!(field.required && rows.is_empty()), &path, FieldCode::Required, "needs at least one row");
                v.at_most(&path, rows, *max);
                for (i, row) in rows.iter().enumerate() {
                    match serde_json::from_value::<FormValues>(row.clone()) {
                        Ok(row) => check_at(v, &format!("{path}[{i}]"), row_fields, &row),
                        Err(_) => {
                            v.fail(format!("{path}[{i}]"), FieldCode::InvalidFormat, "a row is an object of fields")
                        }
                    }
                }
            }
            (Some(value), kind) => {
                if let Err(message) = check_value(kind, value) {
                    v.fail(path, FieldCode::InvalidFormat, message);
                }
            }
        }
    }
}

fn check_value(kind: &FieldKind, value: &Value) -> Result<(), String> {
    let text = || value.as_str().ok_or_else(|| "must be text".to_owned());
    match kind {
        FieldKind::Money => match value.as_i64() {
            Some(fen) if (0..=MAX_FEN).contains(&fen) => Ok(()),
            _ => Err(format!("must be a whole number of fen, 0 to {MAX_FEN}")),
        },
        FieldKind::Number => value.as_f64().map(|_| ()).ok_or_else(|| "must be a number".into()),
        FieldKind::Text { max } => {
            let t = text()?;
            if t.trim().is_empty() {
                Err("must not be blank".into())
            } else if t.chars().count() > *max {
                Err(format!("must be at most {max} characters"))
            } else if t.chars().any(|c| (is_control(c) && c != '\n' && c != '\t') || is_direction_control(c)) {
                Err("must not hold control characters or direction overrides".into())
            } else {
                Ok(())
            }
        }
        FieldKind::Date => date(value).map(|_| ()),
        FieldKind::DateRange => date_range(value).map(|_| ()),
        FieldKind::User | FieldKind::Department | FieldKind::Customer => {
            uuid::Uuid::parse_str(text()?).map(|_| ()).map_err(|_| "must be an id".into())
        }
        FieldKind::Choice { options } => {
            let t = text()?;
            if options.iter().any(|o| o == t) {
                Ok(())
            } else {
                Err(format!("must be one of {}", options.join(", ")))
            }
        }
        FieldKind::Attachment => attachment(value).map(|_| ()),
        FieldKind::Rows { .. } => Err("must be a list of rows".into()),
    }
}

fn date(value: &Value) -> Result<Date, String> {
    value.as_str().and_then(Date::parse).ok_or_else(|| "must be a date, YYYY-MM-DD".into())
}

/// Half of a day in a date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Half {
    /// Morning.
    Am,
    /// Afternoon.
    Pm,
}

impl Half {
    /// As a form writes it: `am`, `pm`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Half::Am => "am",
            Half::Pm => "pm",
        }
    }
}

/// A checked date range: from (date, half) to (date, half), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First day and the half it starts in.
    pub from: (Date, Half),
    /// Last day and the half it ends in.
    pub to: (Date, Half),
}

/// Reads a date range value (see [`FieldKind::DateRange`]).
///
/// # Errors
/// A sentence for the field when the value is not a date range or ends before it starts.
pub fn date_range(value: &Value) -> Result<DateRange, String> {
    let shape = "must be {\"from\": date, \"to\": date} with optional halves \"am\"/\"pm\"";
    let object = value.as_object().ok_or_else(|| shape.to_owned())?;
    if object.keys().any(|k| !["from", "to", "from_half", "to_half"].contains(&k.as_str())) {
        return Err(shape.to_owned());
    }
    let half = |key: &str, default: Half| match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => serde_json::from_value::<Half>(v.clone()).map_err(|_| shape.to_owned()),
    };
    let from = (object.get("from").map(date).transpose()?.ok_or(shape)?, half("from_half", Half::Am)?);
    let to = (object.get("to").map(date).transpose()?.ok_or(shape)?, half("to_half", Half::Pm)?);
    if to < from {
        return Err("must not end before it starts".into());
    }
    Ok(DateRange { from, to })
}

fn attachment(value: &Value) -> Result<(), String> {
    let shape = "must be {\"name\": text, \"size\": bytes, \"blake3\": 64 hex digits}";
    let object = value.as_object().ok_or(shape)?;
    if object.keys().any(|k| !["name", "size", "blake3"].contains(&k.as_str())) {
        return Err(shape.into());
    }
    let name = object.get("name").and_then(Value::as_str).ok_or(shape)?;
    if name.chars().any(|c| is_control(c) || is_direction_control(c) || c == '/' || c == '\\') {
        return Err("the file name must not hold control characters, direction overrides or path separators".into());
    }
    let hash = object.get("blake3").and_then(Value::as_str).ok_or(shape)?;
    if name.trim().is_empty()
        || name.chars().count() > MAX_TEXT_CHARS
        || object.get("size").and_then(Value::as_u64).is_none()
    {
        return Err(shape.into());
    }
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("blake3 must be 64 lower-case hex digits".into());
    }
    Ok(())
}

/// The BLAKE3 hash of a form's stored bytes, as 64 hex digits.
#[must_use]
pub fn form_hash(values: &FormValues) -> String {
    blake3::hash(&serde_json::to_vec(values).unwrap_or_default()).to_hex().to_string()
}

/// The sum of the form's money fields in fen, detail rows included (what "money" rules look
/// at).
#[must_use]
pub fn money_total(fields: &[FieldSpec], values: &FormValues) -> i64 {
    fields
        .iter()
        .map(|f| match (&f.kind, values.get(&f.name)) {
            (FieldKind::Money, Some(value)) => value.as_i64().unwrap_or(0),
            (FieldKind::Rows { fields: row_fields, .. }, Some(Value::Array(rows))) => rows
                .iter()
                .filter_map(|row| serde_json::from_value::<FormValues>(row.clone()).ok())
                .map(|row| money_total(row_fields, &row))
                .fold(0, i64::saturating_add),
            _ => 0,
        })
        .fold(0, i64::saturating_add)
}

/// A comparison in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than (money, numbers, dates).
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// One of the values given as a list.
    In,
    /// Text that contains the value.
    Contains,
}

/// `field op value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// A field of the form.
    pub field: String,
    /// The comparison.
    pub op: Operator,
    /// What the field's value is compared with (a list for `in`).
    pub value: Value,
}

/// Rules joined by and (`and: true`) or or.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleGroup {
    /// Whether every rule must hold (else any one).
    pub and: bool,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Groups joined by and or or: the condition of a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Whether every group must hold (else any one).
    pub and: bool,
    /// The groups.
    pub groups: Vec<RuleGroup>,
}

impl Condition {
    /// Whether the condition holds for `values`. A missing value satisfies only `ne`.
    #[must_use]
    pub fn holds(&self, values: &FormValues) -> bool {
        let group = |g: &RuleGroup| {
            if g.and {
                g.rules.iter().all(|r| r.holds(values))
            } else {
                g.rules.iter().any(|r| r.holds(values))
            }
        };
        if self.and {
            self.groups.iter().all(group)
        } else {
            self.groups.iter().any(group)
        }
    }
}

impl Rule {
    fn holds(&self, values: &FormValues) -> bool {
        let Some(left) = values.get(&self.field).filter(|v| !v.is_null()) else {
            return self.op == Operator::Ne;
        };
        let ordering = || compare(left, &self.value);
        match self.op {
            Operator::Eq => left == &self.value,
            Operator::Ne => left != &self.value,
            Operator::Gt => ordering().is_some_and(std::cmp::Ordering::is_gt),
            Operator::Ge => ordering().is_some_and(std::cmp::Ordering::is_ge),
            Operator::Lt => ordering().is_some_and(std::cmp::Ordering::is_lt),
            Operator::Le => ordering().is_some_and(std::cmp::Ordering::is_le),
            Operator::In => self.value.as_array().is_some_and(|list| list.contains(left)),
            Operator::Contains => {
                matches!((left.as_str(), self.value.as_str()), (Some(l), Some(r)) if l.contains(r))
            }
        }
    }
}

fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => match (l.as_i64(), r.as_i64()) {
            (Some(l), Some(r)) => Some(l.cmp(&r)),
            _ => l.as_f64()?.partial_cmp(&r.as_f64()?),
        },
        (Value::String(l), Value::String(r)) => Some(Date::parse(l)?.cmp(&Date::parse(r)?)),
        _ => None,
    }
}

/// Checks that `condition` names only fields of `fields`, with operators and values that fit
/// their types; problems are recorded on `v` under `path`.
pub fn check_condition(v: &mut Validator, path: &str, fields: &[FieldSpec], condition: &Condition) {
    v.require(!condition.groups.is_empty(), path, FieldCode::Required, "a condition needs at least one group");
    for (g, group) in condition.groups.iter().enumerate() {
        let group_path = format!("{path}.groups[{g}]");
        v.require(!group.rules.is_empty(), &group_path, FieldCode::Required, "a group needs at least one rule");
        for (r, rule) in group.rules.iter().enumerate() {
            let rule_path = format!("{group_path}.rules[{r}]");
            let Some(field) = fields.iter().find(|f| f.name == rule.field) else {
                v.fail(rule_path, FieldCode::InvalidFormat, format!("no field {:?} in this form", rule.field));
                continue;
            };
            let fits = match rule.op {
                Operator::Gt | Operator::Ge | Operator::Lt | Operator::Le => {
                    field.kind.ordered() && check_value(&field.kind, &rule.value).is_ok()
                }
                Operator::In => rule.value.as_array().is_some_and(|list| {
                    !list.is_empty() && list.iter().all(|item| check_value(&field.kind, item).is_ok())
                }),
                Operator::Contains => matches!(field.kind, FieldKind::Text { .. }) && rule.value.is_string(),
                Operator::Eq | Operator::Ne => check_value(&field.kind, &rule.value).is_ok(),
            };
            v.require(fits, rule_path, FieldCode::InvalidFormat, "the operator or value does not fit the field's type");
        }
    }
}
