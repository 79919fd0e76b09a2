//! Approval workflows (流程审批): definitions published in immutable versions, their typed
//! forms and conditions, and running approvals with their tasks.
//!
//! - [`calendar`]: working calendars with Chinese public holidays, and due times on them.
//! - [`definition`]: the node tree, its checks, its BLAKE3 hash, and the definition aggregate.
//! - [`form`]: typed form fields, values, and the conditions that route on them.
//! - [`instance`]: one approval with its tasks, and every operation on it.
//! - [`ledger`]: leave balances and budgets that approvals reserve, take and release.

pub mod calendar;
pub mod definition;
pub mod form;
pub mod instance;
pub mod ledger;
