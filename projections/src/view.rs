//! What every view is: something that folds decoded records and can write a canonical dump.

use crate::decode::DomainRecord;

/// The hash map of the views' state: foldhash (the hasher `hashbrown` itself defaults to),
/// several times faster than the standard SipHash for the ids and short strings the views
/// look up on every event and read back from a snapshot. Seeded per process, so no order
/// taken from it may reach a dump (`dump_sorted` sorts).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

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

/// Writes one line per entry of a hash map, in key order, with a header: views keep a hash
/// map where they look an entry up on every event, and no hash order may reach a dump.
pub fn dump_sorted<K: Ord + std::fmt::Debug, V: std::fmt::Debug, S>(
    out: &mut String,
    title: &str,
    map: &std::collections::HashMap<K, V, S>,
) {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    dump_lines(out, title, entries);
}
