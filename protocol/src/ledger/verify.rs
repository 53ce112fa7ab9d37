//! Verifying the ledger's Merkle proofs, as RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency) state the algorithms.
//!
//! Proofs come from peers: a child proving its new head extends the old one, a node proving an
//! entry is in its log. Both verifiers are total — a proof longer than
//! [`PROOF_HASHES_MAX`] is refused before any hashing, every loop is bounded by the proof's
//! length and the 64 bits of a size, no arithmetic can overflow — and say *why* a proof fails.
//! They need no store: only sizes, roots and the proof.

use super::merkle::{node_hash, Hash, MerkleError, PROOF_HASHES_MAX};

fn check_proof_len(proof: &[Hash]) -> Result<(), MerkleError> {
    if proof.len() > PROOF_HASHES_MAX {
        return Err(MerkleError::ProofTooLong {
            len: proof.len(),
            max: PROOF_HASHES_MAX,
        });
    }
    Ok(())
}

/// Right-shifts `fnode` and `snode` together until `fnode`'s lowest bit is set or it is 0
/// (RFC 9162's step for a node with no right sibling at this level). At most 64 shifts.
fn skip_levels_without_sibling(fnode: &mut u64, snode: &mut u64) {
    while *fnode & 1 == 0 && *fnode != 0 {
        *fnode >>= 1;
        *snode >>= 1;
    }
}

/// Whether `proof` (an RFC 6962 audit path, leaf-most first) proves that the leaf hashing to
/// `leaf_hash` is leaf `index` of the log of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    check_proof_len(proof)?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let wrong_length = || MerkleError::ProofLength { len: proof.len() };
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            skip_levels_without_sibling(&mut fnode, &mut snode);
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Whether `proof` (an RFC 6962 consistency proof) proves that the log of `old_size` leaves
/// with root `old_root` is a prefix of the log of `new_size` leaves with root `new_root`
/// (RFC 9162 §2.1.4.2). Equal sizes are consistent only with equal roots and an empty proof;
/// the empty log is a prefix of every log (an empty proof).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    check_proof_len(proof)?;
    if old_size > new_size {
        return Err(MerkleError::SizeDecreased { old_size, new_size });
    }
    let wrong_length = || MerkleError::ProofLength { len: proof.len() };
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(wrong_length());
        }
        if old_size == new_size && old_root != new_root {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    // 0 < old_size < new_size. When the old tree is a perfect subtree its root is the proof's
    // implicit first element (the RFC prepends it).
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return Err(wrong_length()),
        }
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            skip_levels_without_sibling(&mut fnode, &mut snode);
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root || sr != *new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::merkle::tests::build;
    use crate::ledger::merkle::{consistency_proof, inclusion_proof, leaf_hash, root, EMPTY_ROOT};
    use crate::ledger::vectors::{h, hashes, CONSISTENCY, LEAVES, PATHS, ROOTS};

    /// The reference "some hash" of the transparency-dev tests.
    const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

    fn root_of(size: u64) -> Hash {
        h(ROOTS[size as usize - 1])
    }

    /// Every way the transparency-dev tests corrupt an inclusion proof must fail.
    fn assert_inclusion_corruptions_fail(index: u64, size: u64, proof: &[Hash], root: &Hash) {
        let leaf = leaf_hash(LEAVES[index as usize]);
        let fails = |i: u64, s: u64, l: &Hash, p: &[Hash], r: &Hash| {
            assert!(
                verify_inclusion(l, i, s, p, r).is_err(),
                "verified a corrupted proof: leaf {i} of {s}, {} hashes",
                p.len()
            );
        };
        fails(index.wrapping_sub(1), size, &leaf, proof, root);
        fails(index + 1, size, &leaf, proof, root);
        fails(index ^ 2, size, &leaf, proof, root);
        fails(index, size * 2, &leaf, proof, root);
        fails(index, size / 2, &leaf, proof, root);
        fails(index, size, &leaf_hash(b"WrongLeaf"), proof, root);
        fails(index, size, &leaf, proof, &EMPTY_ROOT);
        fails(index, size, &leaf, proof, &h(SOME_HASH));
        let extended = [proof, &[*root]].concat();
        fails(index, size, &leaf, &extended, root);
        let prepended = [&[*root], proof].concat();
        fails(index, size, &leaf, &prepended, root);
        for i in 0..proof.len() {
            let mut wrong = proof.to_vec();
            wrong[i][0] ^= 8;
            fails(index, size, &leaf, &wrong, root);
        }
        if let Some((_, shorter)) = proof.split_last() {
            fails(index, size, &leaf, shorter, root);
        }
    }

    #[test]
    fn reference_inclusion_proofs_verify_and_corruptions_fail() {
        for (index, size, path) in PATHS {
            let proof = hashes(path);
            let leaf = leaf_hash(LEAVES[index as usize]);
            verify_inclusion(&leaf, index, size, &proof, &root_of(size)).unwrap();
            assert_inclusion_corruptions_fail(index, size, &proof, &root_of(size));
        }
        // Nothing is in the empty log.
        assert_eq!(
            verify_inclusion(&EMPTY_ROOT, 0, 0, &[], &EMPTY_ROOT),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    #[test]
    fn reference_consistency_proofs_verify_and_corruptions_fail() {
        for (old, new, proof) in CONSISTENCY {
            let proof = hashes(proof);
            let (r1, r2) = (root_of(old), root_of(new));
            verify_consistency(old, new, &r1, &r2, &proof).unwrap();
            if proof.is_empty() {
                continue;
            }
            let fails = |o: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash]| {
                assert!(
                    verify_consistency(o, n, a, b, p).is_err(),
                    "verified a corrupted proof {o} → {n} of {} hashes",
                    p.len()
                );
            };
            fails(old - 1, new, &r1, &r2, &proof);
            fails(old + 1, new, &r1, &r2, &proof);
            fails(old ^ 2, new, &r1, &r2, &proof);
            fails(old, new * 2, &r1, &r2, &proof);
            fails(old, new / 2, &r1, &r2, &proof);
            fails(old, new, &h(SOME_HASH), &r2, &proof);
            fails(old, new, &r1, &h(SOME_HASH), &proof);
            fails(old, new, &r2, &r1, &proof);
            fails(old, new, &r1, &r2, &[]);
            for extra in [r1, r2, EMPTY_ROOT] {
                fails(old, new, &r1, &r2, &[&proof[..], &[extra]].concat());
                fails(old, new, &r1, &r2, &[&[extra], &proof[..]].concat());
            }
            fails(old, new, &r1, &r2, &[&[proof[0]], &proof[..]].concat());
            fails(old, new, &r1, &r2, &proof[..proof.len() - 1]);
            for i in 0..proof.len() {
                let mut wrong = proof.clone();
                wrong[i][0] ^= 16;
                fails(old, new, &r1, &r2, &wrong);
            }
        }
    }

    #[test]
    fn trivial_consistency_cases() {
        let (a, b) = (h(SOME_HASH), EMPTY_ROOT);
        // The empty log is a prefix of anything; a log is consistent with itself.
        verify_consistency(0, 0, &a, &a, &[]).unwrap();
        verify_consistency(0, 1, &a, &b, &[]).unwrap();
        verify_consistency(1, 1, &b, &b, &[]).unwrap();
        // Same size, other root: a fork.
        assert_eq!(
            verify_consistency(1, 1, &a, &b, &[]),
            Err(MerkleError::RootMismatch)
        );
        // Going back in time.
        assert!(matches!(
            verify_consistency(2, 1, &a, &b, &[]),
            Err(MerkleError::SizeDecreased { .. })
        ));
        // A proof is needed to grow, and none where there is nothing to prove.
        assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
        for (o, n) in [(0, 0), (0, 1), (1, 1)] {
            assert!(verify_consistency(o, n, &b, &b, &[b]).is_err());
        }
    }

    #[test]
    fn hostile_proofs_are_refused_without_panicking() {
        let long = vec![EMPTY_ROOT; PROOF_HASHES_MAX + 1];
        assert_eq!(
            verify_inclusion(&EMPTY_ROOT, 0, u64::MAX, &long, &EMPTY_ROOT),
            Err(MerkleError::ProofTooLong {
                len: PROOF_HASHES_MAX + 1,
                max: PROOF_HASHES_MAX
            })
        );
        assert!(matches!(
            verify_consistency(1, u64::MAX, &EMPTY_ROOT, &EMPTY_ROOT, &long),
            Err(MerkleError::ProofTooLong { .. })
        ));
        // Extreme sizes and indices with proofs of every length up to the limit.
        let edges = [0, 1, 2, 3, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for len in [0, 1, 63, 64] {
            let proof = vec![EMPTY_ROOT; len];
            for a in edges {
                for b in edges {
                    let _ = verify_inclusion(&EMPTY_ROOT, a, b, &proof, &EMPTY_ROOT);
                    let _ = verify_consistency(a, b, &EMPTY_ROOT, &EMPTY_ROOT, &proof);
                }
            }
        }
    }

    /// The leaves of a generated log: distinct, so every leaf hash is distinct.
    fn log_of(size: usize) -> Vec<Vec<u8>> {
        (0..size as u32).map(|i| i.to_be_bytes().to_vec()).collect()
    }

    proptest! {
        /// Every proof the store generates verifies; a flipped byte in the proof, a root or the
        /// leaf makes it fail.
        #[test]
        fn generated_proofs_verify_and_flipped_bytes_fail(
            size in 1u64..=300,
            pick in any::<proptest::sample::Index>(),
            pick_old in any::<proptest::sample::Index>(),
            flip_at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let leaves = log_of(size as usize);
            let store = build(&leaves);
            let new_root = root(size, &store).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(index, size, &store).unwrap();
                let leaf = leaf_hash(&leaves[index as usize]);
                prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &new_root), Ok(()));
            }
            for old in 0..=size {
                let proof = consistency_proof(old, size, &store).unwrap();
                let old_root = root(old, &store).unwrap();
                prop_assert_eq!(verify_consistency(old, size, &old_root, &new_root, &proof), Ok(()));
            }

            let index = pick.index(size as usize) as u64;
            let leaf = leaf_hash(&leaves[index as usize]);
            let proof = inclusion_proof(index, size, &store).unwrap();
            let byte = flip_at.index(32);
            let mut bad_leaf = leaf;
            bad_leaf[byte] ^= flip;
            prop_assert!(verify_inclusion(&bad_leaf, index, size, &proof, &new_root).is_err());
            let mut bad_root = new_root;
            bad_root[byte] ^= flip;
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &bad_root).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let at = flip_at.index(proof.len() * 32);
                bad[at / 32][at % 32] ^= flip;
                prop_assert!(verify_inclusion(&leaf, index, size, &bad, &new_root).is_err());
            }

            let old = pick_old.index(size as usize) as u64 + 1;
            let old_root = root(old, &store).unwrap();
            let proof = consistency_proof(old, size, &store).unwrap();
            let mut bad_old = old_root;
            bad_old[byte] ^= flip;
            prop_assert!(verify_consistency(old, size, &bad_old, &new_root, &proof).is_err());
            prop_assert!(verify_consistency(old, size, &old_root, &bad_root, &proof).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let at = flip_at.index(proof.len() * 32);
                bad[at / 32][at % 32] ^= flip;
                prop_assert!(verify_consistency(old, size, &old_root, &new_root, &bad).is_err());
            }
        }
    }
}
