//! Errors of the read side.

use oacis_eventlog::Seq;

/// Why the views could not be built or kept up to date.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A stored event could not be understood (unknown stream, kind or schema, or a payload
    /// of the wrong shape). The views stop here rather than skip it (logged once, internal
    /// error to clients).
    #[error("cannot decode the event at seq {seq}: {reason}")]
    Decode {
        /// The event's position.
        seq: Seq,
        /// What is wrong.
        reason: String,
    },
    /// A view cannot apply an event that decoded fine: the log and the view disagree (a bug).
    #[error("view {view} cannot apply the event at seq {seq}: {reason}")]
    Apply {
        /// The view.
        view: &'static str,
        /// The event's position.
        seq: Seq,
        /// What is wrong.
        reason: String,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] oacis_eventlog::Error),
    /// The demo generator made a command the domain refused, or loading the demo failed
    /// (a bug in the generator, or a store error while loading).
    #[error("demo data: {0}")]
    Demo(String),
    /// The views stopped following the log (after an earlier error, or at shutdown).
    #[error("the views stopped at seq {0}")]
    Stopped(Seq),
    /// The views' snapshot could not be written (`snapshot.rs`); the views themselves are
    /// unaffected.
    #[error("views snapshot: {0}")]
    Snapshot(String),
    /// The operating system refused a thread that a replay applies views on.
    #[error("cannot start a replay thread: {0}")]
    Thread(String),
}
