//! The views, one module each.

pub mod access;
pub mod analytics;
pub mod approvals;
pub mod audit;
pub mod cases;
pub mod directory;
pub mod duplicates;
pub mod tasks;
pub mod timeline;
