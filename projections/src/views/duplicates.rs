//! The duplicate index of the customer directory: which customers hold each normalised key
//! (phone, e-mail, identity number, credit code, organisation name), and the answers built on
//! it: the possible duplicates of a candidate, and the candidate pairs of a data-cleaning pass.
//!
//! A key is held as a 64-bit hash whose top three bits are its field, so one customer costs
//! a few words, not copies of its strings; a lookup is one hash-map probe per key. Two
//! different keys of one field collide with probability about 2^-61 per pair, which could
//! only add a spurious warning.
//!
//! Invariants: derived from the directory's rows, never dumped; answers are sorted by id,
//! never in hash order; a merged customer's keys answer for its survivor.

use crate::view::FastMap as HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use oacis_domain::duplicate::{DuplicateField, DuplicateKeys};
use oacis_domain::ids::CustomerId;

/// Most pairs one page may hold.
pub const MAX_PAIR_PAGE: usize = 100;

/// A customer that may be the same as a candidate, and on which fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateMatch {
    /// The customer (the survivor, when the key belongs to a merged duplicate).
    pub customer: CustomerId,
    /// The fields that match, in [`DuplicateField::ALL`] order.
    pub fields: Vec<DuplicateField>,
}

/// Two customers that may be the same, `first < second` by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePair {
    /// The one with the smaller id.
    pub first: CustomerId,
    /// The one with the larger id.
    pub second: CustomerId,
    /// The fields they share, in [`DuplicateField::ALL`] order.
    pub fields: Vec<DuplicateField>,
}

/// A page of candidate pairs, ordered by (`first`, `second`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPage {
    /// The pairs.
    pub pairs: Vec<DuplicatePair>,
    /// How many visible pairs there are in all.
    pub total: usize,
    /// Cursor of the last pair (`<first>:<second>`), to ask for the next page.
    pub end_cursor: Option<String>,
    /// Whether more pairs follow.
    pub has_next: bool,
}

/// A key's hash with its field in the top three bits.
pub(crate) fn key_hash(field: DuplicateField, key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (u64::from(field.index()) << 61) | (hasher.finish() >> 3)
}

/// The field of a [`key_hash`].
pub(crate) fn field_of(hash: u64) -> DuplicateField {
    let index = usize::try_from(hash >> 61).unwrap_or(0);
    DuplicateField::ALL.get(index).copied().unwrap_or(DuplicateField::Phone)
}

/// Which slots (the directory's per-customer positions) hold each key. Most keys have one
/// holder, so they sit in `one`; a key held twice or more moves to `many`, which is also what
/// the data-cleaning pass walks.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct DuplicateIndex {
    one: HashMap<u64, u32>,
    many: HashMap<u64, Vec<u32>>,
    /// The keys each slot is indexed under.
    keys: Vec<Box<[u64]>>,
}

impl DuplicateIndex {
    /// Indexes `slot` under `keys` instead of what it had.
    pub(crate) fn set(&mut self, slot: u32, keys: &DuplicateKeys) {
        let Ok(at) = usize::try_from(slot) else { return };
        if self.keys.len() <= at {
            self.keys.resize_with(at + 1, Box::default);
        }
        let new: Box<[u64]> = keys.iter().map(|(field, key)| key_hash(field, key)).collect();
        let old = std::mem::replace(&mut self.keys[at], new);
        for hash in old.iter() {
            self.remove(*hash, slot);
        }
        for hash in self.keys[at].clone().iter() {
            self.insert(*hash, slot);
        }
    }

    fn insert(&mut self, hash: u64, slot: u32) {
        if let Some(slots) = self.many.get_mut(&hash) {
            if !slots.contains(&slot) {
                slots.push(slot);
            }
            return;
        }
        match self.one.get(&hash).copied() {
            None => {
                self.one.insert(hash, slot);
            }
            Some(held) if held == slot => {}
            Some(held) => {
                self.one.remove(&hash);
                self.many.insert(hash, vec![held, slot]);
            }
        }
    }

    fn remove(&mut self, hash: u64, slot: u32) {
        if self.one.get(&hash) == Some(&slot) {
            self.one.remove(&hash);
            return;
        }
        if let Some(slots) = self.many.get_mut(&hash) {
            slots.retain(|s| *s != slot);
            if let [last] = slots.as_slice() {
                let last = *last;
                self.many.remove(&hash);
                self.one.insert(hash, last);
            }
        }
    }

    /// The slots holding `hash`.
    /// Drops the slot's keys of `fields` (a customer's personal data erased).
    pub(crate) fn forget_fields(&mut self, slot: u32, fields: &[DuplicateField]) {
        let Some(held) = usize::try_from(slot).ok().and_then(|at| self.keys.get_mut(at)) else { return };
        let (gone, kept): (Vec<u64>, Vec<u64>) = held.iter().partition(|hash| fields.contains(&field_of(**hash)));
        *held = kept.into_boxed_slice();
        for hash in gone {
            self.remove(hash, slot);
        }
    }

    pub(crate) fn holders(&self, hash: u64) -> &[u32] {
        match self.one.get(&hash) {
            Some(slot) => std::slice::from_ref(slot),
            None => self.many.get(&hash).map_or(&[], Vec::as_slice),
        }
    }

    /// Every key held by two or more slots, with its holders (in hash order: callers sort).
    pub(crate) fn shared(&self) -> impl Iterator<Item = (u64, &[u32])> + '_ {
        self.many.iter().map(|(hash, slots)| (*hash, slots.as_slice()))
    }
}
