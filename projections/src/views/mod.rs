//! The views, one module each.

pub mod access;
pub mod analytics;
pub mod directory;
pub mod tasks;
