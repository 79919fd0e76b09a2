//! The columns of an import or export file: each customer field's name, the header names it
//! is known by (English and Chinese, as CRM and spreadsheet exports write them), and the
//! caller's own mapping for other headers.
//!
//! Invariants:
//! - A header is compared by its key: lower case, without white space, `_`, `-`, `.`, `:`
//!   and brackets (ASCII or full-width), so `Phone No.` and `phone_no` are the same header.
//! - Each single-valued field comes from at most one column; list fields (phones, e-mails,
//!   tags) may come from several, whose values are joined in column order.
//! - An export writes every column under its canonical name, so that an export re-imports
//!   with no mapping.

use std::collections::BTreeMap;

use super::ImportError;

/// Declares the fields once: variant, canonical header, and the other headers it is known by.
macro_rules! fields {
    ($($(#[$doc:meta])* $variant:ident = $name:literal [$($alias:literal),*],)+) => {
        /// A customer field a column can hold.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Field {
            $($(#[$doc])* $variant,)+
        }

        impl Field {
            /// Every field, in export order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),+];

            /// The canonical header, e.g. `phones`.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),+ }
            }

            /// The field a header key (see [`header_key`]) names, if any.
            fn by_key(key: &str) -> Option<Field> {
                $(if key == header_key($name) $(|| key == header_key($alias))* { return Some(Field::$variant); })+
                None
            }
        }
    };
}

fields! {
    /// The customer's id in OACIS (UUID).
    Id = "id" ["customer id", "客户ID", "客户id"],
    /// Another system's key for the customer.
    ExternalId = "external_id" ["external id", "外部编号", "外部ID", "客户编号", "编号", "ERP编号"],
    /// `person` or `organisation` (个人 / 企业).
    Kind = "kind" ["type", "customer type", "类型", "客户类型"],
    /// A person's or an organisation's name.
    Name = "name" ["full name", "customer name", "contact", "姓名", "名称", "客户名称", "客户姓名", "联系人"],
    /// The name of the organisation (an organisation's name when the row has no person name).
    Company = "company" ["company name", "organisation", "organization", "公司", "公司名称", "企业名称", "单位", "单位名称"],
    /// Industry.
    Industry = "industry" ["行业", "所属行业"],
    /// Head count band.
    CompanySize = "company_size" ["size", "headcount", "规模", "公司规模", "人员规模"],
    /// Website.
    Website = "website" ["web", "url", "网站", "网址", "官网"],
    /// Unified social credit code (GB 32100).
    CreditCode = "credit_code" ["unified social credit code", "统一社会信用代码", "社会信用代码", "信用代码"],
    /// Segment.
    Segment = "segment" ["level", "grade", "客户等级", "等级", "客户级别", "级别", "分级"],
    /// Source channel.
    Source = "source" ["channel", "来源", "客户来源", "渠道"],
    /// Tags.
    Tags = "tags" ["tag", "labels", "标签"],
    /// Phones.
    Phones = "phones" ["phone", "mobile", "tel", "telephone", "phone number", "手机", "手机号", "手机号码", "电话", "联系电话", "移动电话"],
    /// E-mail addresses.
    Emails = "emails" ["email", "e-mail", "mail", "邮箱", "电子邮箱", "电子邮件", "邮件"],
    /// Resident identity number (GB 11643).
    IdNumber = "id_number" ["身份证", "身份证号", "身份证号码"],
    /// Birth date.
    BirthDate = "birth_date" ["birthday", "date of birth", "出生日期", "生日"],
    /// Owner: a user's id, username or display name.
    Owner = "owner" ["负责人", "归属人", "客户经理", "所有者"],
    /// Department: its id or name.
    Department = "department" ["dept", "部门", "所属部门"],
    /// `active` or `archived`.
    Status = "status" ["状态", "客户状态"],
    /// When the customer was registered (business time).
    RegisteredAt = "registered_at" ["created_at", "created", "registration date", "注册时间", "创建时间", "登记时间", "录入时间"],
    /// The last contact (business time).
    LastContact = "last_contact" ["last contacted", "最后联系时间", "最近联系时间", "最后联系"],
}

impl Field {
    /// Whether several columns may feed this field.
    #[must_use]
    pub fn is_list(self) -> bool {
        matches!(self, Field::Phones | Field::Emails | Field::Tags)
    }

    /// The field with this canonical name or header alias.
    #[must_use]
    pub fn parse(text: &str) -> Option<Field> {
        Field::by_key(&header_key(text))
    }
}

/// A header's comparison key: lower case, without white space, `_`, `-`, `.`, `:` and
/// brackets (ASCII or full-width).
#[must_use]
pub fn header_key(header: &str) -> String {
    header
        .chars()
        .filter(|c| !c.is_whitespace() && !"_-.:：()（）[]【】".contains(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What each column of a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// Per column, the field it feeds (`None`: ignored).
    pub fields: Vec<Option<Field>>,
    /// Headers that name no field, in column order.
    pub ignored: Vec<String>,
}

impl Columns {
    /// Maps `headers`: the caller's `mapping` (header as written, or its key, to a field's
    /// canonical name, or to `ignore`) first, then the known names.
    ///
    /// # Errors
    /// [`ImportError::Mapping`] for a mapping to no field, for a mapped header the file does
    /// not have, and for two columns feeding one single-valued field.
    pub fn map(headers: &[String], mapping: &[(String, String)]) -> Result<Columns, ImportError> {
        let mut given: BTreeMap<String, Option<Field>> = BTreeMap::new();
        for (header, field) in mapping {
            let target = match field.trim() {
                "ignore" | "-" | "" => None,
                name => Some(Field::ALL.iter().copied().find(|f| f.name() == name).ok_or_else(|| {
                    let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                    ImportError::Mapping(format!(
                        "{header:?} is mapped to {name:?}; use one of {}, or ignore",
                        names.join(", ")
                    ))
                })?),
            };
            let key = header_key(header);
            if !headers.iter().any(|h| header_key(h) == key) {
                return Err(ImportError::Mapping(format!("the file has no column {header:?}")));
            }
            given.insert(key, target);
        }
        let mut fields = Vec::with_capacity(headers.len());
        let mut ignored = Vec::new();
        let mut seen: BTreeMap<Field, usize> = BTreeMap::new();
        for (i, header) in headers.iter().enumerate() {
            let key = header_key(header);
            let field = match given.get(&key) {
                Some(target) => *target,
                None => Field::by_key(&key),
            };
            if let Some(field) = field {
                if let Some(before) = seen.insert(field, i) {
                    if !field.is_list() {
                        return Err(ImportError::Mapping(format!(
                            "columns {} ({:?}) and {} ({:?}) both hold {}; map one of them to another field or to ignore",
                            column_letter(before),
                            headers[before],
                            column_letter(i),
                            header,
                            field.name()
                        )));
                    }
                }
            } else if !header.is_empty() {
                ignored.push(header.clone());
            }
            fields.push(field);
        }
        Ok(Columns { fields, ignored })
    }

    /// The columns feeding `field`, in order.
    pub fn of(&self, field: Field) -> impl Iterator<Item = usize> + '_ {
        self.fields.iter().enumerate().filter(move |(_, f)| **f == Some(field)).map(|(i, _)| i)
    }

    /// Whether some column feeds `field`.
    #[must_use]
    pub fn has(&self, field: Field) -> bool {
        self.fields.contains(&Some(field))
    }
}

/// A column's spreadsheet letter: 0 is `A`, 26 is `AA`.
#[must_use]
pub fn column_letter(index: usize) -> String {
    let mut n = index + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(char::from(b'A' + u8::try_from(rem).unwrap_or(0)));
        n = (n - 1) / 26;
    }
    letters.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn chinese_and_english_headers_map_and_the_callers_mapping_wins() {
        let h = headers(&["姓名", "手机", "Phone No.", "邮箱", "公司", "行业", "来源", "标签", "备注"]);
        let columns = Columns::map(&h, &[("Phone No.".into(), "phones".into())]).unwrap();
        assert_eq!(columns.of(Field::Phones).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(columns.fields[0], Some(Field::Name));
        assert_eq!(columns.fields[4], Some(Field::Company));
        assert_eq!(columns.ignored, ["备注"]);
        let columns = Columns::map(&h, &[("备注".into(), "segment".into()), ("来源".into(), "ignore".into())]).unwrap();
        assert_eq!((columns.fields[8], columns.fields[6]), (Some(Field::Segment), None));
    }

    #[test]
    fn bad_mappings_are_refused_with_what_to_do() {
        let h = headers(&["name", "姓名"]);
        let err = Columns::map(&h, &[]).unwrap_err().to_string();
        assert!(err.contains("columns A (\"name\") and B (\"姓名\") both hold name"), "{err}");
        let err = Columns::map(&h, &[("name".into(), "nickname".into())]).unwrap_err().to_string();
        assert!(err.contains("use one of id, external_id"), "{err}");
        let err = Columns::map(&h, &[("nope".into(), "name".into())]).unwrap_err().to_string();
        assert!(err.contains("no column \"nope\""), "{err}");
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(27), "AB");
    }
}
