//! What every view is: something that folds decoded records and can write a canonical dump.

use crate::decode::DomainRecord;

/// A read model folded from the log.
///
/// Invariants: `apply` is deterministic, and `dump` writes the whole state in a canonical
/// order (ordered maps only; no hash-map iteration order may reach it), so that two builds
/// over the same log dump the same bytes.
pub trait View {
    /// The view's name, for errors and dumps.
    fn name(&self) -> &'static str;

    /// Folds one record. An error means the log and the view disagree (a bug); the caller
    /// stops and reports the seq.
    fn apply(&mut self, record: &DomainRecord) -> Result<(), String>;

    /// Writes the canonical dump.
    fn dump(&self, out: &mut String);
}

/// Writes one line per item of an ordered collection, with a header.
pub fn dump_lines<T: std::fmt::Debug>(out: &mut String, title: &str, items: impl IntoIterator<Item = T>) {
    use std::fmt::Write;
    let _ = writeln!(out, "## {title}");
    for item in items {
        let _ = writeln!(out, "{item:?}");
    }
}
