//! The log's Merkle tree, with the structure of RFC 9162 §2.1 (Certificate Transparency
//! v2.0) and BLAKE3 in place of SHA-256: inclusion proofs (§2.1.3) and consistency proofs
//! (§2.1.4), and their verification algorithms (§2.1.3.2, §2.1.4.2).
//!
//! Leaves are the log's records in seq order: the leaf at index `i` (0-based) is the record
//! at seq `i + 1`, and its input is that record's 32-byte `hash` (`FORMAT.md`). With
//! `H` = BLAKE3-256:
//!
//! - the root of the empty tree is `H("")`;
//! - a leaf hash is `H(0x00 || record hash)`;
//! - an interior node is `H(0x01 || left || right)`, where for `n > 1` leaves the left subtree
//!   holds the first `k` leaves, `k` the largest power of two smaller than `n`.
//!
//! [`MerkleTree`] keeps every complete, aligned subtree's hash: level `j` holds the roots of
//! the subtrees of `2^j` leaves starting at multiples of `2^j`. An append adds one leaf and
//! at most `log2(n)` interior hashes (amortised one), never recomputing the tree; a root or
//! a proof at any size up to the current one is assembled from those levels in
//! `O(log n)` hashes. Memory: two hashes per leaf (64 bytes per record), kept in chunks of
//! 8,192 hashes so that growing never copies and never doubles.
//!
//! Invariants: the tree holds exactly the leaves pushed, in order; `levels[j].len` is
//! `leaves >> j`; nothing is ever removed or changed.

use crate::model::Hash32;

/// Prefix of a leaf hash's input (RFC 9162 §2.1.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node's input (RFC 9162 §2.1.1).
pub const NODE_PREFIX: u8 = 0x01;

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A leaf index at or past the tree size (a seq beyond the tree, or seq 0).
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexBeyondSize {
        /// The 0-based leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size larger than the log.
    #[error("tree size {size} is larger than the log ({available} records)")]
    SizeBeyondLog {
        /// The size asked for.
        size: u64,
        /// Records the log holds.
        available: u64,
    },
    /// A consistency proof needs `0 < first <= second`.
    #[error("a consistency proof needs 0 < first <= second; got first {first}, second {second}")]
    BadSizes {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// The proof has more or fewer hashes than its sizes allow.
    #[error("the proof has the wrong number of hashes ({0})")]
    WrongLength(usize),
    /// The root computed from the proof differs from the root given.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
}

/// BLAKE3 of `0x00 || record hash`: the leaf of a record.
#[must_use]
pub fn leaf_hash(record_hash: &Hash32) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(&record_hash.0);
    Hash32(*hasher.finalize().as_bytes())
}

/// BLAKE3 of `0x01 || left || right`: an interior node.
#[must_use]
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(&left.0);
    hasher.update(&right.0);
    Hash32(*hasher.finalize().as_bytes())
}

/// The root of the empty tree: BLAKE3 of no bytes.
#[must_use]
pub fn empty_root() -> Hash32 {
    Hash32(*blake3::hash(&[]).as_bytes())
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Hashes per chunk of a level (256 KiB).
const CHUNK: usize = 8_192;

/// One level's hashes in chunks of [`CHUNK`]: growing never copies, and at most one chunk is
/// partly empty (a `Vec` that doubles would hold up to twice what it needs).
#[derive(Debug, Default, Clone)]
struct Level {
    chunks: Vec<Vec<Hash32>>,
    len: usize,
}

impl Level {
    fn push(&mut self, hash: Hash32) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(hash),
            _ => {
                // The first chunk grows as a `Vec` does (small levels stay small); later ones
                // are allocated whole.
                let capacity = if self.chunks.is_empty() { 1 } else { CHUNK };
                let mut chunk = Vec::with_capacity(capacity);
                chunk.push(hash);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> Hash32 {
        self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The last two hashes (the level has at least two).
    fn last_two(&self) -> (Hash32, Hash32) {
        (self.get(self.len - 2), self.get(self.len - 1))
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity() * std::mem::size_of::<Hash32>()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Hash32>>()
    }
}

/// The Merkle tree over a log's record hashes.
#[derive(Debug, Default, Clone)]
pub struct MerkleTree {
    /// `levels[j]` holds at `i` the root of leaves `i * 2^j .. (i + 1) * 2^j`.
    levels: Vec<Level>,
}

impl MerkleTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// Number of leaves (records).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len as u64)
    }

    /// Appends the leaf of the record whose hash is `record_hash`.
    pub fn push(&mut self, record_hash: &Hash32) {
        let mut node = leaf_hash(record_hash);
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Level::default());
            }
            let row = &mut self.levels[level];
            row.push(node);
            if !row.len.is_multiple_of(2) {
                return;
            }
            let (left, right) = row.last_two();
            node = node_hash(&left, &right);
            level += 1;
        }
    }

    /// Appends every stored hash to `out`: the number of levels (u32 LE), then each level's
    /// length (u64 LE) and hashes, lowest level first. [`MerkleTree::read_levels`] reads it
    /// back; the index snapshot (`sled_store/snapshot.rs`) keeps the tree so.
    pub(crate) fn write_levels(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u32::try_from(self.levels.len()).unwrap_or(u32::MAX).to_le_bytes());
        for level in &self.levels {
            out.extend_from_slice(&(level.len as u64).to_le_bytes());
            for chunk in &level.chunks {
                for hash in chunk {
                    out.extend_from_slice(&hash.0);
                }
            }
        }
    }

    /// Reads what [`MerkleTree::write_levels`] wrote from the front of `bytes`, advancing it;
    /// `None` if it is cut short or its levels' lengths are not those of one tree
    /// (`levels[j].len == leaves >> j`, one level per bit of the leaf count). The hashes
    /// themselves are taken as stored: the caller has authenticated the bytes.
    pub(crate) fn read_levels(bytes: &mut &[u8]) -> Option<MerkleTree> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
            *bytes = rest;
            Some(head)
        }
        let count = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
        let mut levels: Vec<Level> = Vec::with_capacity(count.min(64));
        let mut leaves = 0usize;
        for j in 0..count {
            let len = usize::try_from(u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?)).ok()?;
            if j == 0 {
                leaves = len;
            }
            if len == 0 || len != leaves >> j {
                return None;
            }
            let stored = take(bytes, len.checked_mul(32)?)?;
            let mut level = Level { chunks: Vec::with_capacity(len.div_ceil(CHUNK)), len };
            for part in stored.chunks(CHUNK * 32) {
                let mut chunk = Vec::with_capacity(CHUNK.min(len));
                chunk.extend(part.chunks_exact(32).map(|h| Hash32(h.try_into().unwrap_or([0; 32]))));
                level.chunks.push(chunk);
            }
            levels.push(level);
        }
        let wanted = (usize::BITS - leaves.leading_zeros()) as usize;
        (count == wanted).then_some(MerkleTree { levels })
    }

    /// Heap bytes held (every level at its capacity).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.levels.iter().map(Level::heap_bytes).sum()
    }

    /// MTH of leaves `start..end` (RFC 9162 §2.1.1); `start` is a multiple of the largest
    /// power of two not above `end - start` whenever it is reached through the RFC's split,
    /// so each complete part is one stored node.
    fn subtree(&self, start: u64, end: u64) -> Hash32 {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level].get(usize::try_from(start >> level).unwrap_or(usize::MAX));
        }
        let k = split(n);
        node_hash(&self.subtree(start, start + k), &self.subtree(start + k, end))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeBeyondLog { size, available: self.size() });
        }
        Ok(())
    }

    /// The root of the tree of the first `size` leaves.
    ///
    /// # Errors
    /// [`ProofError::SizeBeyondLog`] if `size` exceeds [`MerkleTree::size`].
    pub fn root(&self, size: u64) -> Result<Hash32, ProofError> {
        self.check_size(size)?;
        Ok(self.subtree(0, size))
    }

    /// The inclusion proof (RFC 9162 §2.1.3.1, `PATH(m, D[n])`) of leaf `index` in the tree of
    /// the first `size` leaves: the sibling hashes from the leaf up to the root.
    ///
    /// # Errors
    /// [`ProofError::SizeBeyondLog`], or [`ProofError::IndexBeyondSize`] if `index >= size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash32>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexBeyondSize { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash32>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`) between the trees of the
    /// first `first` and the first `second` leaves. Empty when `first == second`.
    ///
    /// # Errors
    /// [`ProofError::SizeBeyondLog`], or [`ProofError::BadSizes`] unless `0 < first <= second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash32>, ProofError> {
        self.check_size(second)?;
        if first == 0 || first > second {
            return Err(ProofError::BadSizes { first, second });
        }
        let mut proof = Vec::new();
        if first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        Ok(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash32>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that the leaf `leaf` (a leaf hash, see
/// [`leaf_hash`]) is at `index` in the tree of `size` leaves whose root is `root`.
///
/// # Errors
/// [`ProofError::IndexBeyondSize`], [`ProofError::WrongLength`] or [`ProofError::RootMismatch`].
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash32,
    proof: &[Hash32],
    root: &Hash32,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of `first` leaves with
/// root `first_root` is a prefix of the tree of `second` leaves with root `second_root`.
/// For `first == second` the proof must be empty and the roots equal.
///
/// # Errors
/// [`ProofError::BadSizes`], [`ProofError::WrongLength`] or [`ProofError::RootMismatch`].
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash32,
    second_root: &Hash32,
    proof: &[Hash32],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength(proof.len()));
        }
        return if first_root == second_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength(0));
    }
    let mut path: Vec<Hash32> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// An inclusion proof as given to auditors: record `seq` (leaf `seq - 1`), whose record hash
/// is `record_hash`, is in the tree of `tree_size` records with root `root`.
///
/// Its JSON form (the GraphQL `inclusionProof` object, checked offline by
/// `oacis proof verify --inclusion`): `{"seq":N,"treeSize":N,"recordHash":"<hex>",
/// "path":["<hex>",...],"root":"<hex>"}`, hashes as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The record's seq (1-based).
    pub seq: crate::model::Seq,
    /// The tree size the proof is against.
    pub tree_size: u64,
    /// The record's hash (the leaf's input).
    pub record_hash: Hash32,
    /// Sibling hashes, leaf to root (RFC 9162 §2.1.3.1).
    pub path: Vec<Hash32>,
    /// The tree's root at `tree_size`.
    pub root: Hash32,
}

impl InclusionProof {
    /// Checks the proof (RFC 9162 §2.1.3.2).
    ///
    /// # Errors
    /// [`ProofError`] if it does not lead to `root`.
    pub fn verify(&self) -> Result<(), ProofError> {
        let index = self.seq.0.checked_sub(1).ok_or(ProofError::IndexBeyondSize { index: 0, size: self.tree_size })?;
        verify_inclusion(index, self.tree_size, &leaf_hash(&self.record_hash), &self.path, &self.root)
    }
}

/// A consistency proof as given to auditors: the tree of `first` records (root `first_root`)
/// is a prefix of the tree of `second` records (root `second_root`).
///
/// JSON form (the GraphQL `consistencyProof` object): `{"first":N,"second":N,
/// "firstRoot":"<hex>","secondRoot":"<hex>","path":["<hex>",...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// Root at `first`.
    pub first_root: Hash32,
    /// Root at `second`.
    pub second_root: Hash32,
    /// The proof's hashes (RFC 9162 §2.1.4.1).
    pub path: Vec<Hash32>,
}

impl ConsistencyProof {
    /// Checks the proof (RFC 9162 §2.1.4.2).
    ///
    /// # Errors
    /// [`ProofError`] if the roots are not consistent through it.
    pub fn verify(&self) -> Result<(), ProofError> {
        verify_consistency(self.first, self.second, &self.first_root, &self.second_root, &self.path)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn record_hash(i: u64) -> Hash32 {
        Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes())
    }

    /// MTH straight from RFC 9162 §2.1.1's recursive definition, over leaf inputs.
    fn reference_root(hashes: &[Hash32]) -> Hash32 {
        match hashes.len() {
            0 => empty_root(),
            1 => leaf_hash(&hashes[0]),
            n => {
                let k = usize::try_from(split(n as u64)).expect("fits");
                node_hash(&reference_root(&hashes[..k]), &reference_root(&hashes[k..]))
            }
        }
    }

    fn tree_of(n: u64) -> (MerkleTree, Vec<Hash32>) {
        let hashes: Vec<Hash32> = (0..n).map(record_hash).collect();
        let mut tree = MerkleTree::new();
        hashes.iter().for_each(|h| tree.push(h));
        (tree, hashes)
    }

    #[test]
    fn roots_match_the_recursive_definition_at_every_size() {
        let (tree, hashes) = tree_of(130);
        for size in 0..=130 {
            assert_eq!(tree.root(size).expect("root"), reference_root(&hashes[..size as usize]), "size {size}");
        }
        assert_eq!(tree.root(131), Err(ProofError::SizeBeyondLog { size: 131, available: 130 }));
    }

    #[test]
    fn levels_spanning_several_chunks_give_the_same_roots_and_proofs() {
        let n = 2 * CHUNK as u64 + 777;
        let (tree, hashes) = tree_of(n);
        for size in [CHUNK as u64 - 1, CHUNK as u64, CHUNK as u64 + 1, 2 * CHUNK as u64 + 3, n] {
            let root = reference_root(&hashes[..size as usize]);
            assert_eq!(tree.root(size).expect("root"), root, "size {size}");
            for index in [0, CHUNK as u64 - 1, CHUNK as u64, size - 1].into_iter().filter(|i| *i < size) {
                let proof = tree.inclusion_proof(index, size).expect("proof");
                verify_inclusion(index, size, &leaf_hash(&hashes[index as usize]), &proof, &root).expect("verifies");
            }
        }
        assert!(tree.heap_bytes() < (n as usize * 2 + 3 * CHUNK) * 32, "{} bytes", tree.heap_bytes());
    }

    #[test]
    fn every_inclusion_proof_verifies_and_fails_when_anything_changes() {
        let (tree, hashes) = tree_of(71);
        for size in 1..=70 {
            let root = tree.root(size).expect("root");
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).expect("proof");
                let leaf = leaf_hash(&hashes[index as usize]);
                verify_inclusion(index, size, &leaf, &proof, &root).expect("verifies");
                let wrong_leaf = leaf_hash(&record_hash(1000));
                assert!(verify_inclusion(index, size, &wrong_leaf, &proof, &root).is_err());
                if size > 1 {
                    assert!(verify_inclusion((index + 1) % size, size, &leaf, &proof, &root).is_err());
                    // The size is bound to the root (a checkpoint signs both): the same path
                    // against the next size's root fails.
                    let next_root = tree.root(size + 1).expect("root");
                    assert!(verify_inclusion(index, size + 1, &leaf, &proof, &next_root).is_err());
                    for k in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[k].0[0] ^= 1;
                        assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_fails_when_anything_changes() {
        let (tree, _) = tree_of(70);
        for second in 1..=70 {
            let second_root = tree.root(second).expect("root");
            for first in 1..=second {
                let first_root = tree.root(first).expect("root");
                let proof = tree.consistency_proof(first, second).expect("proof");
                verify_consistency(first, second, &first_root, &second_root, &proof).expect("verifies");
                let other = Hash32([9; 32]);
                assert!(verify_consistency(first, second, &other, &second_root, &proof).is_err());
                assert!(verify_consistency(first, second, &first_root, &other, &proof).is_err());
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k].0[31] ^= 1;
                    assert!(verify_consistency(first, second, &first_root, &second_root, &bad).is_err());
                }
            }
        }
        assert_eq!(tree.consistency_proof(0, 5), Err(ProofError::BadSizes { first: 0, second: 5 }));
    }

    #[test]
    fn a_rewritten_leaf_breaks_consistency_with_the_earlier_root() {
        let (tree, mut hashes) = tree_of(100);
        let old_root = tree.root(60).expect("root");
        hashes[40] = record_hash(7777);
        let mut forged = MerkleTree::new();
        hashes.iter().for_each(|h| forged.push(h));
        let proof = forged.consistency_proof(60, 100).expect("proof");
        let new_root = forged.root(100).expect("root");
        assert_eq!(verify_consistency(60, 100, &old_root, &new_root, &proof), Err(ProofError::RootMismatch));
    }
}
