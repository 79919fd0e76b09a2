//! The checked-in Merkle and checkpoint vectors (`tests/vectors/merkle.json`) pin the tree,
//! the proofs and the checkpoint encoding; a verifier written from `FORMAT.md` alone (BLAKE3
//! and Ed25519 libraries only, none of this crate's Merkle or checkpoint code) accepts them
//! and refuses every changed one.
//!
//! To regenerate after a deliberate format change: `OACIS_BLESS_VECTORS=1 cargo test -p
//! oacis-eventlog --test merkle_vectors`, then review the diff.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use oacis_eventlog::checkpoint::{Checkpoint, CheckpointKey};
use oacis_eventlog::merkle::MerkleTree;
use oacis_eventlog::{Hash32, Head, Seq, Timestamp};
use serde_json::{json, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/merkle.json");
const LEAVES: u64 = 7;
/// The published test key's seed (never use it for anything else).
const SEED: [u8; 32] = [0x42; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What this crate produces for the vectors.
fn produced() -> Value {
    let leaves: Vec<Hash32> =
        (0..LEAVES).map(|i| Hash32(*blake3::hash(format!("oacis test leaf {i}").as_bytes()).as_bytes())).collect();
    let mut tree = MerkleTree::new();
    leaves.iter().for_each(|l| tree.push(l));
    let hexes = |hashes: &[Hash32]| hashes.iter().map(Hash32::to_hex).collect::<Vec<_>>();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in 1..=LEAVES {
        for seq in 1..=size {
            inclusion.push(json!({
                "seq": seq, "treeSize": size, "recordHash": leaves[seq as usize - 1].to_hex(),
                "path": hexes(&tree.inclusion_proof(seq - 1, size).unwrap()), "root": tree.root(size).unwrap().to_hex(),
            }));
            consistency.push(json!({
                "fromSize": seq, "toSize": size, "fromRoot": tree.root(seq).unwrap().to_hex(),
                "toRoot": tree.root(size).unwrap().to_hex(), "path": hexes(&tree.consistency_proof(seq, size).unwrap()),
            }));
        }
    }
    let key = CheckpointKey::from_seed(&SEED);
    let head = Head { seq: Seq(LEAVES), hash: leaves[LEAVES as usize - 1] };
    let issued_at = Timestamp::parse_rfc3339("2026-11-30T07:00:00.000000Z").unwrap();
    let checkpoint = Checkpoint::sign(head, tree.root(LEAVES).unwrap(), issued_at, &key);
    json!({
        "leaves": hexes(&leaves),
        "roots": (0..=LEAVES).map(|n| tree.root(n).unwrap().to_hex()).collect::<Vec<_>>(),
        "inclusion": inclusion,
        "consistency": consistency,
        "checkpoint": {
            "seed": hex(&SEED),
            "public_key": key.public().to_hex(),
            "message": Checkpoint::message(head, &tree.root(LEAVES).unwrap(), "2026-11-30T07:00:00.000000Z", &key.public().key_id()),
            "line": checkpoint.to_line(),
        },
    })
}

#[test]
fn the_tree_proofs_and_checkpoint_match_the_checked_in_vectors() {
    let produced = produced();
    if std::env::var_os("OACIS_BLESS_VECTORS").is_some() {
        std::fs::write(VECTORS, format!("{}\n", serde_json::to_string_pretty(&produced).unwrap())).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    assert_eq!(stored, produced, "the Merkle or checkpoint encoding changed; bless deliberately");
}

// ---- A verifier from FORMAT.md alone. ----

type H = [u8; 32];

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2));
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn h32(value: &Value) -> H {
    unhex(value.as_str().unwrap()).try_into().unwrap()
}

fn blake(parts: &[&[u8]]) -> H {
    let mut hasher = blake3::Hasher::new();
    parts.iter().for_each(|p| {
        hasher.update(p);
    });
    *hasher.finalize().as_bytes()
}

fn leaf(record_hash: &H) -> H {
    blake(&[&[0], record_hash])
}

fn node(left: &H, right: &H) -> H {
    blake(&[&[1], left, right])
}

/// The root by the definition: empty, leaf, or split at the largest power of two below n.
fn root(leaves: &[H]) -> H {
    match leaves.len() {
        0 => blake(&[]),
        1 => leaf(&leaves[0]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

fn verify_inclusion(proof: &Value) -> bool {
    let (seq, size) = (proof["seq"].as_u64().unwrap(), proof["treeSize"].as_u64().unwrap());
    if seq == 0 || seq > size {
        return false;
    }
    let (mut fnode, mut snode) = (seq - 1, size - 1);
    let mut r = leaf(&h32(&proof["recordHash"]));
    for p in proof["path"].as_array().unwrap() {
        let p = h32(p);
        if snode == 0 {
            return false;
        }
        if fnode % 2 == 1 || fnode == snode {
            r = node(&p, &r);
            while fnode % 2 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node(&r, &p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == h32(&proof["root"])
}

fn verify_consistency(proof: &Value) -> bool {
    let (first, second) = (proof["fromSize"].as_u64().unwrap(), proof["toSize"].as_u64().unwrap());
    let (from_root, to_root) = (h32(&proof["fromRoot"]), h32(&proof["toRoot"]));
    let mut path: Vec<H> = proof["path"].as_array().unwrap().iter().map(h32).collect();
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return path.is_empty() && from_root == to_root;
    }
    if path.is_empty() {
        return false;
    }
    if first.is_power_of_two() {
        path.insert(0, from_root);
    }
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode % 2 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode % 2 == 1 || fnode == snode {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fnode % 2 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == from_root && sr == to_root
}

/// Checks a checkpoint line with a public key: rebuild the six signed lines, verify.
fn verify_checkpoint(line: &str, public_key: &str) -> bool {
    let c: Value = serde_json::from_str(line).unwrap();
    let key_bytes: [u8; 32] = unhex(public_key).try_into().unwrap();
    let key_id = hex(&blake(&[&key_bytes])[..8]);
    if c["format"] != "oacis-checkpoint/2" || c["key_id"] != key_id.as_str() {
        return false;
    }
    let message = format!(
        "oacis-checkpoint/2\ntree_size {}\nhead_hash {}\nmerkle_root {}\nissued_at {}\nkey_id {}\n",
        c["tree_size"],
        c["head_hash"].as_str().unwrap(),
        c["merkle_root"].as_str().unwrap(),
        c["issued_at"].as_str().unwrap(),
        key_id
    );
    let signature: [u8; 64] = unhex(c["signature"].as_str().unwrap()).try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).unwrap();
    ed25519_dalek::Verifier::verify(&key, message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
}

/// Flips one hex digit of the string at `pointer` in `value`.
fn flipped(value: &Value, pointer: &str) -> Value {
    let mut changed = value.clone();
    let text = changed.pointer(pointer).unwrap().as_str().unwrap().to_owned();
    let digit = if text.starts_with('0') { "1" } else { "0" };
    *changed.pointer_mut(pointer).unwrap() = json!(format!("{digit}{}", &text[1..]));
    changed
}

#[test]
fn a_verifier_written_from_the_format_alone_accepts_the_vectors_and_refuses_changes() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let leaves: Vec<H> = v["leaves"].as_array().unwrap().iter().map(h32).collect();
    assert_eq!(blake(&[]), h32(&json!("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")));
    for (n, expected) in v["roots"].as_array().unwrap().iter().enumerate() {
        assert_eq!(root(&leaves[..n]), h32(expected), "root at size {n}");
    }
    for proof in v["inclusion"].as_array().unwrap() {
        assert!(verify_inclusion(proof), "{proof}");
        assert!(!verify_inclusion(&flipped(proof, "/recordHash")), "{proof}");
        assert!(!verify_inclusion(&flipped(proof, "/root")), "{proof}");
        for k in 0..proof["path"].as_array().unwrap().len() {
            assert!(!verify_inclusion(&flipped(proof, &format!("/path/{k}"))), "{proof}");
        }
        let mut moved = proof.clone();
        moved["seq"] = json!(proof["seq"].as_u64().unwrap() % proof["treeSize"].as_u64().unwrap() + 1);
        if moved["seq"] != proof["seq"] {
            assert!(!verify_inclusion(&moved), "{moved}");
        }
    }
    for proof in v["consistency"].as_array().unwrap() {
        assert!(verify_consistency(proof), "{proof}");
        assert!(!verify_consistency(&flipped(proof, "/fromRoot")), "{proof}");
        assert!(!verify_consistency(&flipped(proof, "/toRoot")), "{proof}");
        for k in 0..proof["path"].as_array().unwrap().len() {
            assert!(!verify_consistency(&flipped(proof, &format!("/path/{k}"))), "{proof}");
        }
    }
    let cp = &v["checkpoint"];
    let public_key = cp["public_key"].as_str().unwrap();
    let seed: [u8; 32] = unhex(cp["seed"].as_str().unwrap()).try_into().unwrap();
    assert_eq!(hex(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes()), public_key);
    let line = cp["line"].as_str().unwrap();
    assert!(verify_checkpoint(line, public_key));
    let parsed: Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["merkle_root"], v["roots"][LEAVES as usize]);
    for field in ["/head_hash", "/merkle_root", "/signature"] {
        assert!(!verify_checkpoint(&flipped(&parsed, field).to_string(), public_key), "{field}");
    }
    let mut resized = parsed.clone();
    resized["tree_size"] = json!(LEAVES - 1);
    assert!(!verify_checkpoint(&resized.to_string(), public_key));
    let other = hex(ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
    assert!(!verify_checkpoint(line, &other));
}
