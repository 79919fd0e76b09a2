//! The Import aggregate: one import of customers from a file (stream `import-<uuid>`), so
//! that the import as a whole is on the record: who started it, from which file (its BLAKE3
//! hash), what it did, and whether it was undone.
//!
//! The customers themselves carry the import's id in `CustomerImported` (one per row that
//! registered or changed a customer), which is how an undo finds them.
//!
//! Invariants:
//! - An import starts once, finishes at most once, and is undone at most once; an import
//!   stopped half-way (a crash, a refused batch) can be undone without finishing.
//! - No personal data: file names, counts and hashes only.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Lifecycle};
use crate::context::Context;
use crate::error::DomainError;
use crate::events;
use crate::ids::ImportId;
use crate::validate::Validator;

/// Lifecycle of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Not started.
    #[default]
    Absent,
    /// Writing rows (or stopped before it finished).
    Running,
    /// Every row was handled.
    Finished,
    /// Reverted as a whole.
    Undone,
}

impl Lifecycle for ImportStatus {
    const ENTITY: &'static str = "import";
    const ABSENT: Self = ImportStatus::Absent;

    fn name(self) -> &'static str {
        match self {
            ImportStatus::Absent => "absent",
            ImportStatus::Running => "running",
            ImportStatus::Finished => "finished",
            ImportStatus::Undone => "undone",
        }
    }
}

/// What each row of an import came to, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// Rows that registered a customer.
    pub registered: u64,
    /// Rows that changed an existing customer.
    pub updated: u64,
    /// Rows that matched a customer and changed nothing.
    pub unchanged: u64,
    /// Rows refused (with their errors in the report).
    pub refused: u64,
}

/// The folded import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportState {
    /// Lifecycle.
    pub status: ImportStatus,
    /// Rows in the file.
    pub rows: u64,
    /// The outcome, once finished.
    pub counts: Option<ImportCounts>,
}

/// What can be asked of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportCommand {
    /// Start an import (before its first row is written).
    Start {
        /// Chosen by the caller; also the correlation id of every event of the import.
        id: ImportId,
        /// The file's name as given (at most 255 characters).
        file_name: String,
        /// BLAKE3 of the file's bytes, 64 lowercase hex digits.
        file_blake3: String,
        /// `csv` or `xlsx`.
        format: String,
        /// Rows in the file (header excluded).
        rows: u64,
        /// What matched rows to existing customers (`external_id`, `id`, `phone`, ...; `none`).
        key: String,
    },
    /// Every row was handled.
    Finish {
        /// The outcome.
        counts: ImportCounts,
    },
    /// The import was reverted (an administrator's act: `customer.import_undo`).
    Undo {
        /// Customers it registered, now archived.
        archived: u64,
        /// Customers it updated, now back to the values before.
        restored: u64,
        /// Customers left as they are (merged since, or refused the compensation).
        skipped: u64,
        /// Whether later changes by others were overridden.
        forced: bool,
    },
}

/// Payload of `CustomerImportStarted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImportStarted {
    /// The import.
    pub import_id: ImportId,
    /// The file's name.
    pub file_name: String,
    /// BLAKE3 of the file.
    pub file_blake3: String,
    /// `csv` or `xlsx`.
    pub format: String,
    /// Rows in the file.
    pub rows: u64,
    /// The matching key.
    pub key: String,
}

/// Payload of `CustomerImportFinished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImportFinished {
    /// The outcome.
    pub counts: ImportCounts,
}

/// Payload of `CustomerImportUndone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImportUndone {
    /// Customers archived.
    pub archived: u64,
    /// Customers restored.
    pub restored: u64,
    /// Customers left alone.
    pub skipped: u64,
    /// Whether later changes by others were overridden.
    pub forced: bool,
}

events! {
    /// What happens to an import.
    pub enum ImportEvent {
        /// An import started.
        CustomerImportStarted(CustomerImportStarted) = 1,
        /// An import handled every row.
        CustomerImportFinished(CustomerImportFinished) = 1,
        /// An import was undone.
        CustomerImportUndone(CustomerImportUndone) = 1,
    }
}

/// The Import aggregate.
#[derive(Debug)]
pub struct Import;

impl Aggregate for Import {
    type State = ImportState;
    type Command = ImportCommand;
    type Event = ImportEvent;

    fn decide(state: &ImportState, command: ImportCommand, _ctx: &Context) -> Result<Vec<ImportEvent>, DomainError> {
        let event = match command {
            ImportCommand::Start { id, file_name, file_blake3, format, rows, key } => {
                if state.status != ImportStatus::Absent {
                    return Err(DomainError::AlreadyExists { entity: "import" });
                }
                let mut v = Validator::new();
                let file_name = v.name("file_name", &file_name, 255);
                let file_blake3 = v.code("file_blake3", &file_blake3, 64, &[]);
                let format = v.code("format", &format, 8, &[]);
                let key = v.code("key", &key, 32, &['_']);
                let (file_name, file_blake3, format, key) = v.finish((file_name, file_blake3, format, key))?;
                ImportEvent::CustomerImportStarted(CustomerImportStarted {
                    import_id: id,
                    file_name,
                    file_blake3,
                    format,
                    rows,
                    key,
                })
            }
            ImportCommand::Finish { counts } => {
                state.status.require(&[ImportStatus::Running], "finish")?;
                ImportEvent::CustomerImportFinished(CustomerImportFinished { counts })
            }
            ImportCommand::Undo { archived, restored, skipped, forced } => {
                state.status.require(&[ImportStatus::Running, ImportStatus::Finished], "undo")?;
                ImportEvent::CustomerImportUndone(CustomerImportUndone { archived, restored, skipped, forced })
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: ImportState, event: &ImportEvent) -> ImportState {
        match event {
            ImportEvent::CustomerImportStarted(e) => {
                state.status = ImportStatus::Running;
                state.rows = e.rows;
            }
            ImportEvent::CustomerImportFinished(e) => {
                state.status = ImportStatus::Finished;
                state.counts = Some(e.counts);
            }
            ImportEvent::CustomerImportUndone(_) => state.status = ImportStatus::Undone,
        }
        state
    }
}
