//! Customers in and out of files: import (CSV or `.xlsx`, validated whole before anything is
//! written, matched to existing customers by a key, written through the one command path,
//! undoable as a whole) and export (CSV or `.xlsx` of any directory query, scoped and
//! masked like every list, recorded in the access log).
//!
//! `table` reads a file into cells, `columns` maps headers to fields, `values` reads a row's
//! cells, `import` plans, writes and undoes an import, `export` writes files.

pub mod columns;
pub mod export;
pub mod import;
pub mod table;
pub mod values;

use crate::command::CommandError;

/// Why an import (or its undo) as a whole could not run. Problems with single rows are not
/// errors: they are in the report.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] table::FileError),
    /// The column mapping is wrong.
    #[error("{0}")]
    Mapping(String),
    /// The caller already runs an import.
    #[error("an import by this user is already running; wait for it to finish")]
    Busy,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such import.
    #[error("no import {0}")]
    NotFound(String),
    /// The import is still being written; it can be undone once it finishes.
    #[error("import {0} is still being written; undo it once it has finished")]
    Running(String),
    /// An undo would override later changes by others (listed).
    #[error("customers changed since the import: {}; undo with force to revert them anyway", .0.join(", "))]
    ChangedSince(Vec<String>),
    /// The command path refused.
    #[error(transparent)]
    Command(#[from] CommandError),
}
