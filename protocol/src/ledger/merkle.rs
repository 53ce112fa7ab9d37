//! The RFC 6962 §2.1 Merkle tree hash of the ledger, computed from stored perfect subtrees.
//!
//! The log may hold millions of entries, kept by the shell in its database; nothing here holds
//! the leaves. What is stored is every *perfect* (complete) subtree hash, addressed by
//! `(level, index)`: node `(l, i)` is the hash of leaves `[i·2^l, (i+1)·2^l)`, level 0 being
//! the leaf hashes. Such a node never changes once its last leaf is appended, so the store is
//! append-only too: [`append`] returns the new leaf plus each perfect subtree it completes
//! (amortised two writes per append, `2n − popcount(n)` nodes for `n` leaves).
//!
//! The hash of any prefix of the log (RFC 6962 `MTH(D[0:n])`) is the right-to-left fold of
//! the perfect subtrees that `n`'s binary digits cut it into — one per set bit, so [`root`]
//! reads O(log n) nodes — and so is every subtree hash an inclusion or consistency proof
//! needs: the RFC's recursion only ever splits a range at a power of two aligned to its start.
//!
//! Hashing (RFC 6962 §2.1): leaf = SHA-256(0x00 ‖ leaf bytes), interior = SHA-256(0x01 ‖ left
//! ‖ right), the empty tree = SHA-256(""). The domain bytes keep a leaf from being passed off
//! as an interior node (second preimages). Proofs are verified in [`super::verify`].

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash (leaf, interior node or root).
pub type Hash = [u8; 32];

/// The root of the empty log: SHA-256 of the empty string (RFC 6962 §2.1, `MTH({})`).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hashes in one inclusion or consistency proof. A log of `n < 2^64` leaves is at most 64
/// levels deep and an honest proof has at most one hash per level, so a longer proof (from a
/// peer) is refused before any hashing.
pub const PROOF_HASHES_MAX: usize = 64;

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Where the shell keeps the log's perfect subtree hashes (RocksDB in the node, a map in
/// simnet and tests). `get(l, i)` is the hash of leaves `[i·2^l, (i+1)·2^l)` once all of them
/// are appended, `None` before (or if storage lost it: every reader here turns `None` into
/// [`MerkleError::MissingNode`], never a panic).
pub trait NodeStore {
    fn get(&self, level: u8, index: u64) -> Option<Hash>;
}

impl NodeStore for HashMap<(u8, u64), Hash> {
    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        HashMap::get(self, &(level, index)).copied()
    }
}

impl NodeStore for BTreeMap<(u8, u64), Hash> {
    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        BTreeMap::get(self, &(level, index)).copied()
    }
}

/// A perfect subtree hash to persist: the hash of leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// Why a tree computation or a proof check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old_size} is above the new size {new_size}")]
    SizeDecreased { old_size: u64, new_size: u64 },
    #[error("proof of {len} hashes exceeds the limit of {max}")]
    ProofTooLong { len: usize, max: usize },
    /// The proof has too few or too many hashes for the sizes it claims to prove.
    #[error("proof of {len} hashes has the wrong length for its tree sizes")]
    ProofLength { len: usize },
    /// The proof is well formed but does not lead to the root(s) given.
    #[error("proof does not lead to the given root")]
    RootMismatch,
    /// The store lacks a node a size at or below its own requires: lost or corrupt storage, or
    /// a size beyond what was appended.
    #[error("tree node (level {level}, index {index}) is missing from the store")]
    MissingNode { level: u8, index: u64 },
    #[error("the log is full (2^64 − 1 entries)")]
    LogFull,
}

fn get<S: NodeStore + ?Sized>(store: &S, level: u32, index: u64) -> Result<Hash, MerkleError> {
    // Levels of a u64-sized tree are below 64: the cast is lossless.
    let level = level as u8;
    store
        .get(level, index)
        .ok_or(MerkleError::MissingNode { level, index })
}

/// The nodes to persist when the leaf with hash `leaf_hash` is appended to a log of `size`
/// leaves (it becomes leaf `size`): the leaf itself, then each perfect subtree it completes,
/// bottom up. Reads one stored left sibling per completed subtree (`size`'s trailing ones).
/// The caller persists all of them before computing the new root.
pub fn append<S: NodeStore + ?Sized>(
    leaf_hash: Hash,
    size: u64,
    store: &S,
) -> Result<Vec<Node>, MerkleError> {
    if size == u64::MAX {
        return Err(MerkleError::LogFull);
    }
    let mut node = Node {
        level: 0,
        index: size,
        hash: leaf_hash,
    };
    let mut nodes = vec![node];
    // A right child (odd index) completes its parent, whose left sibling is already stored.
    while node.index & 1 == 1 {
        let left = get(store, u32::from(node.level), node.index - 1)?;
        node = Node {
            level: node.level + 1,
            index: node.index >> 1,
            hash: node_hash(&left, &node.hash),
        };
        nodes.push(node);
    }
    Ok(nodes)
}

/// `MTH(D[0:size])`: the root of the log's first `size` leaves. O(log size) reads.
pub fn root<S: NodeStore + ?Sized>(size: u64, store: &S) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(0, size, store)
}

/// `MTH(D[start:start+len])` for `start` a multiple of the least power of two
/// ≥ `len` — which every range of the RFC 6962 recursion is. The range is the perfect subtrees
/// of `len`'s set bits, largest first; folded right to left, that is the RFC's split at the
/// largest power of two below `len`, applied recursively.
fn range_hash<S: NodeStore + ?Sized>(start: u64, len: u64, store: &S) -> Result<Hash, MerkleError> {
    if len == 0 {
        return Ok(EMPTY_ROOT);
    }
    // The smallest subtree (lowest set bit) is the rightmost; the fold starts there.
    let mut level = len.trailing_zeros();
    let mut end = start + len - (1 << level);
    let mut acc = get(store, level, end >> level)?;
    let mut rest = len & (len - 1);
    while rest != 0 {
        level = rest.trailing_zeros();
        end -= 1 << level;
        acc = node_hash(&get(store, level, end >> level)?, &acc);
        rest &= rest - 1;
    }
    Ok(acc)
}

/// The largest power of two strictly below `n` (`n ≥ 2`): the RFC 6962 split point `k`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of the perfect subtree of `width` (a power of two) leaves starting at `start`.
fn perfect<S: NodeStore + ?Sized>(start: u64, width: u64, store: &S) -> Result<Hash, MerkleError> {
    let level = width.trailing_zeros();
    get(store, level, start >> level)
}

/// RFC 6962 §2.1.1 `PATH(index, D[0:size])`: the audit path of leaf `index` in the log's
/// first `size` leaves, leaf-most first. O(log size) reads: once the path turns left, every
/// sibling below is a perfect subtree.
pub fn inclusion_proof<S: NodeStore + ?Sized>(
    index: u64,
    size: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Top down over the RFC's recursion on D[start:start+len], `m` relative to `start`; the
    // path lists the siblings bottom up, so it is reversed at the end.
    let (mut start, mut len, mut m) = (0u64, size, index);
    let mut path = Vec::new();
    while len > 1 {
        let k = split(len);
        if m < k {
            path.push(range_hash(start + k, len - k, store)?);
            len = k;
        } else {
            path.push(perfect(start, k, store)?);
            start += k;
            len -= k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 6962 §2.1.2 `PROOF(old_size, D[0:new_size])`: the consistency proof that the log's
/// first `old_size` leaves are a prefix of its first `new_size`. Empty when `old_size` is 0
/// or equal to `new_size` (nothing to prove).
pub fn consistency_proof<S: NodeStore + ?Sized>(
    old_size: u64,
    new_size: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeDecreased { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:start+n], whole), top down; reversed at the end like a path.
    let (mut start, mut n, mut m, mut whole) = (0u64, new_size, old_size, true);
    let mut proof = Vec::new();
    loop {
        if m == n {
            // The old tree's root is this subtree: the verifier knows it unless it is only
            // a part of the old tree (`whole` false).
            if !whole {
                proof.push(range_hash(start, n, store)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(range_hash(start + k, n - k, store)?);
            n = k;
        } else {
            proof.push(perfect(start, k, store)?);
            start += k;
            n -= k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ledger::vectors::{h, hashes, CONSISTENCY, LEAVES, PATHS, ROOTS};
    use proptest::prelude::*;

    /// An in-memory store as the shell keeps it: the nodes [`append`] returned.
    pub(crate) type MemStore = HashMap<(u8, u64), Hash>;

    /// Appends every leaf in turn, persisting what `append` returns, like a shell.
    pub(crate) fn build<L: AsRef<[u8]>>(leaves: &[L]) -> MemStore {
        let mut store = MemStore::new();
        for (i, leaf) in leaves.iter().enumerate() {
            for n in append(leaf_hash(leaf.as_ref()), i as u64, &store).unwrap() {
                store.insert((n.level, n.index), n.hash);
            }
        }
        store
    }

    /// RFC 6962 §2.1 `MTH` straight from the definition, over all leaves in memory.
    fn reference_mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_mth(&leaves[..k]), &reference_mth(&leaves[k..]))
            }
        }
    }

    /// RFC 6962 §2.1.1 `PATH` straight from the definition.
    fn reference_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n as u64) as usize;
        let (mut path, sibling) = if m < k {
            (reference_path(m, &leaves[..k]), reference_mth(&leaves[k..]))
        } else {
            (
                reference_path(m - k, &leaves[k..]),
                reference_mth(&leaves[..k]),
            )
        };
        path.push(sibling);
        path
    }

    /// RFC 6962 §2.1.2 `SUBPROOF` straight from the definition.
    fn reference_subproof(m: usize, leaves: &[Vec<u8>], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole {
                Vec::new()
            } else {
                vec![reference_mth(leaves)]
            };
        }
        let k = split(n as u64) as usize;
        let (mut proof, sibling) = if m <= k {
            (
                reference_subproof(m, &leaves[..k], whole),
                reference_mth(&leaves[k..]),
            )
        } else {
            (
                reference_subproof(m - k, &leaves[k..], false),
                reference_mth(&leaves[..k]),
            )
        };
        proof.push(sibling);
        proof
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root(0, &MemStore::new()).unwrap(), EMPTY_ROOT);
    }

    #[test]
    fn roots_match_the_reference_vectors_at_every_size() {
        let store = build(&LEAVES);
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(
                root(n as u64 + 1, &store).unwrap(),
                h(want),
                "size {}",
                n + 1
            );
        }
    }

    #[test]
    fn proofs_match_the_reference_vectors() {
        let store = build(&LEAVES);
        for (index, size, path) in PATHS {
            let got = inclusion_proof(index, size, &store).unwrap();
            assert_eq!(got, hashes(path), "leaf {index} of {size}");
        }
        for (old, new, proof) in CONSISTENCY {
            let got = consistency_proof(old, new, &store).unwrap();
            assert_eq!(got, hashes(proof), "{old} → {new}");
        }
    }

    #[test]
    fn bad_requests_and_missing_nodes_are_errors_not_panics() {
        let store = build(&LEAVES);
        assert_eq!(
            inclusion_proof(8, 8, &store),
            Err(MerkleError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            consistency_proof(5, 4, &store),
            Err(MerkleError::SizeDecreased {
                old_size: 5,
                new_size: 4
            })
        );
        // Beyond what was appended: the missing node is named.
        assert_eq!(
            root(9, &store),
            Err(MerkleError::MissingNode { level: 0, index: 8 })
        );
        assert!(inclusion_proof(3, u64::MAX, &store).is_err());
        assert!(consistency_proof(7, u64::MAX, &store).is_err());
        assert_eq!(
            append(EMPTY_ROOT, u64::MAX, &store),
            Err(MerkleError::LogFull)
        );
        // Lost storage: appending needs the left sibling.
        let mut lost = store.clone();
        lost.remove(&(0, 6));
        assert_eq!(
            append(EMPTY_ROOT, 7, &lost),
            Err(MerkleError::MissingNode { level: 0, index: 6 })
        );
    }

    #[test]
    fn appends_store_each_perfect_subtree_once() {
        let leaves: Vec<Vec<u8>> = (0u32..1000).map(|i| i.to_le_bytes().to_vec()).collect();
        let store = build(&leaves);
        // n leaves have 2n − popcount(n) perfect subtrees.
        assert_eq!(store.len(), 2 * 1000 - 1000u32.count_ones() as usize);
        assert_eq!(root(1000, &store).unwrap(), reference_mth(&leaves));
        // Appending to a log of 2^k − 1 leaves completes k + 1 nodes (leaf to new top).
        let nodes = append(EMPTY_ROOT, 511, &store).unwrap();
        assert_eq!(nodes.len(), 10);
        assert_eq!((nodes[9].level, nodes[9].index), (9, 0));
    }

    proptest! {
        /// Roots and proofs from the store equal the RFC's definitions over the same leaves.
        #[test]
        fn store_computation_matches_the_rfc_definitions(
            leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..150),
            pick in any::<proptest::sample::Index>(),
            pick_old in any::<proptest::sample::Index>(),
        ) {
            let store = build(&leaves);
            let n = leaves.len();
            for size in 0..=n {
                prop_assert_eq!(root(size as u64, &store).unwrap(), reference_mth(&leaves[..size]));
            }
            let m = pick.index(n);
            prop_assert_eq!(
                inclusion_proof(m as u64, n as u64, &store).unwrap(),
                reference_path(m, &leaves)
            );
            let old = pick_old.index(n) + 1;
            let want = if old == n { Vec::new() } else { reference_subproof(old, &leaves, true) };
            prop_assert_eq!(consistency_proof(old as u64, n as u64, &store).unwrap(), want);
        }
    }
}
