//! The witness check: a parent's pure decision whether a child's new tree head may be
//! countersigned, given the last head it holds for that child.
//!
//! The child may only *append*. Everything else its ledger could do to hide or change a record
//! is named, so the parent (and the authority reading its records) knows what happened:
//! a smaller size ([`WitnessError::Truncated`]), another root for a size already witnessed
//! ([`WitnessError::Forked`] — a rewritten entry), a larger log that does not contain the old
//! one as a prefix ([`WitnessError::Inconsistent`] — rewritten, removed or reordered entries
//! under new ones), a head not signed by the child, or a clock that runs backwards (a
//! backdated head, so entries could be made to look older than they are).
//!
//! Deterministic and sans-IO: `now_ms` is an input, the child's key comes from the chain the
//! caller verified (with the trust store, so a revoked key never gets here), and the proof is checked by [`super::verify::verify_consistency`], which
//! bounds it before hashing. The caller countersigns ([`WitnessedHead::countersign`]) and
//! stores the new head as its last only after `Ok`.
//!
//! [`WitnessedHead::countersign`]: super::head::WitnessedHead::countersign

use backflow_topology::RegionCode;
use ed25519_dalek::VerifyingKey;

use super::head::{SignedTreeHead, TreeHead};
use super::merkle::{Hash, MerkleError, EMPTY_ROOT};
use super::verify::verify_consistency;
use crate::time::MINUTE_MS;

/// How far ahead of the witness's clock a head's time may be. Node clocks drift (NTP keeps
/// them within seconds); a head much further ahead would, once witnessed, make every honest
/// later head look as if time ran backwards.
pub const HEAD_CLOCK_SKEW_MS_MAX: u64 = 5 * MINUTE_MS;

/// What is wrong with a child's new tree head.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("tree head of {got} where the ledger of {expected} was expected")]
    WrongRegion {
        expected: RegionCode,
        got: RegionCode,
    },
    #[error("tree head of {region} has a bad signature")]
    BadSignature { region: RegionCode },
    #[error("tree head of {region} is dated {time_ms}, ahead of the witness's {now_ms}")]
    FromTheFuture {
        region: RegionCode,
        time_ms: u64,
        now_ms: u64,
    },
    #[error("tree head of {region} has size 0 but not the empty tree's root")]
    BadEmptyRoot { region: RegionCode },
    /// The ledger shrank: entries already witnessed are gone.
    #[error("ledger of {region} truncated from {last_size} to {new_size} entries")]
    Truncated {
        region: RegionCode,
        last_size: u64,
        new_size: u64,
    },
    /// Two signed roots for the same size: an entry was rewritten (both heads together are
    /// signed evidence).
    #[error("ledger of {region} forked: another root for size {size}")]
    Forked {
        region: RegionCode,
        size: u64,
        last_root: Hash,
        new_root: Hash,
    },
    /// The new ledger does not extend the witnessed one: entries were rewritten, removed or
    /// reordered before new ones were appended (or the proof is malformed).
    #[error("ledger of {region} at {new_size} entries does not extend the witnessed {last_size}: {reason}")]
    Inconsistent {
        region: RegionCode,
        last_size: u64,
        new_size: u64,
        reason: MerkleError,
    },
    /// Signed earlier than the head already witnessed.
    #[error("tree head of {region} dated {new_ms}, before the witnessed head's {last_ms}")]
    TimeWentBackwards {
        region: RegionCode,
        last_ms: u64,
        new_ms: u64,
    },
}

/// Whether `new`, sent by the node of `child` (whose verified key is `child_key`), may be
/// witnessed when `last` is the last head witnessed for it (`None` before the first), with
/// `proof` the consistency proof from `last` to `new` (empty for the first head, or when the
/// size did not change). `Ok(())` means: countersign it and keep it as the new `last`.
///
/// Checks, in order: region, signature (nothing unsigned is worth a finding), time against
/// `now_ms`, the empty tree's root, then against `last`: truncation, fork, consistency, time.
pub fn check_head(
    child: RegionCode,
    child_key: &VerifyingKey,
    last: Option<&TreeHead>,
    new: &SignedTreeHead,
    proof: &[Hash],
    now_ms: u64,
) -> Result<(), WitnessError> {
    let head = &new.head;
    let region = head.region;
    if region != child {
        return Err(WitnessError::WrongRegion {
            expected: child,
            got: region,
        });
    }
    new.verify(child_key)
        .map_err(|_| WitnessError::BadSignature { region })?;
    if head.time_ms > now_ms.saturating_add(HEAD_CLOCK_SKEW_MS_MAX) {
        return Err(WitnessError::FromTheFuture {
            region,
            time_ms: head.time_ms,
            now_ms,
        });
    }
    if head.size == 0 && head.root != EMPTY_ROOT {
        return Err(WitnessError::BadEmptyRoot { region });
    }
    let Some(last) = last else {
        // The first head: nothing to be consistent with (trust on first use); a proof from
        // nowhere must be empty all the same.
        return verify_consistency(0, head.size, &EMPTY_ROOT, &head.root, proof).map_err(
            |reason| WitnessError::Inconsistent {
                region,
                last_size: 0,
                new_size: head.size,
                reason,
            },
        );
    };
    if head.size < last.size {
        return Err(WitnessError::Truncated {
            region,
            last_size: last.size,
            new_size: head.size,
        });
    }
    if head.size == last.size && head.root != last.root {
        return Err(WitnessError::Forked {
            region,
            size: head.size,
            last_root: last.root,
            new_root: head.root,
        });
    }
    verify_consistency(last.size, head.size, &last.root, &head.root, proof).map_err(|reason| {
        WitnessError::Inconsistent {
            region,
            last_size: last.size,
            new_size: head.size,
            reason,
        }
    })?;
    if head.time_ms < last.time_ms {
        return Err(WitnessError::TimeWentBackwards {
            region,
            last_ms: last.time_ms,
            new_ms: head.time_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::NodeIdentity;
    use crate::ledger::entry::{append_entry, EntryKind, LedgerEntry};
    use crate::ledger::head::tests::identity;
    use crate::ledger::head::WitnessedHead;
    use crate::ledger::merkle::tests::MemStore;
    use crate::ledger::merkle::{consistency_proof, root};

    const T0: u64 = 1_767_225_600_000;

    /// A child's ledger as its shell keeps it.
    struct Ledger {
        store: MemStore,
        size: u64,
    }

    impl Ledger {
        /// A ledger of `subjects.len()` notes, in order.
        fn of(subjects: &[&str]) -> Ledger {
            let mut ledger = Ledger {
                store: MemStore::new(),
                size: 0,
            };
            for subject in subjects {
                ledger.append(subject);
            }
            ledger
        }

        fn append(&mut self, subject: &str) {
            let entry = LedgerEntry {
                seq: self.size,
                time_ms: T0 + self.size,
                region: "110101".parse().unwrap(),
                department: None,
                kind: EntryKind::Note,
                subject: subject.into(),
                detail: String::new(),
            };
            let (_, nodes) = append_entry(&entry, self.size, &self.store).unwrap();
            self.store
                .extend(nodes.into_iter().map(|n| ((n.level, n.index), n.hash)));
            self.size += 1;
        }

        /// The node signs its head at its current size.
        fn head(&self, node: &NodeIdentity, time_ms: u64) -> SignedTreeHead {
            let head = TreeHead {
                region: node.region,
                size: self.size,
                root: root(self.size, &self.store).unwrap(),
                time_ms,
            };
            SignedTreeHead::sign(head, node)
        }

        fn proof_from(&self, old_size: u64) -> Vec<Hash> {
            consistency_proof(old_size, self.size, &self.store).unwrap()
        }
    }

    fn subjects(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("entry-{i}")).collect()
    }

    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    /// The child node, its parent, and a witnessed first head of 6 entries.
    fn setup() -> (NodeIdentity, NodeIdentity, Ledger, TreeHead) {
        let child = identity("110101", 1);
        let parent = identity("1101", 2);
        let ledger = Ledger::of(&refs(&subjects(6)));
        let first = ledger.head(&child, T0 + 1_000);
        check(&child, None, &first, &[], T0 + 1_000).unwrap();
        (child, parent, ledger, first.head)
    }

    fn check(
        child: &NodeIdentity,
        last: Option<&TreeHead>,
        new: &SignedTreeHead,
        proof: &[Hash],
        now_ms: u64,
    ) -> Result<(), WitnessError> {
        check_head(
            child.region,
            &child.key.verifying_key(),
            last,
            new,
            proof,
            now_ms,
        )
    }

    #[test]
    fn a_valid_extension_is_accepted_and_countersigned() {
        let (child, parent, mut ledger, last) = setup();
        for s in ["entry-6", "entry-7", "entry-8"] {
            ledger.append(s);
        }
        let new = ledger.head(&child, T0 + 2_000);
        let proof = ledger.proof_from(last.size);
        assert_eq!(check(&child, Some(&last), &new, &proof, T0 + 2_000), Ok(()));
        let witnessed = WitnessedHead::countersign(new.clone(), &parent);
        witnessed
            .verify(&child.key.verifying_key(), &parent.key.verifying_key())
            .unwrap();
        // The same head again, or re-signed later at the same size, is no finding.
        assert_eq!(
            check(&child, Some(&new.head), &new, &[], T0 + 3_000),
            Ok(())
        );
        let later = ledger.head(&child, T0 + 3_000);
        assert_eq!(
            check(&child, Some(&new.head), &later, &[], T0 + 3_000),
            Ok(())
        );
    }

    #[test]
    fn truncation_is_detected() {
        let (child, _, _, last) = setup();
        let shorter = Ledger::of(&refs(&subjects(4)));
        let new = shorter.head(&child, T0 + 2_000);
        assert_eq!(
            check(&child, Some(&last), &new, &[], T0 + 2_000),
            Err(WitnessError::Truncated {
                region: child.region,
                last_size: 6,
                new_size: 4
            })
        );
    }

    #[test]
    fn two_roots_for_one_size_are_a_fork() {
        let (child, _, _, last) = setup();
        let mut other = subjects(6);
        other[5] = "a different sixth entry".into();
        let forked = Ledger::of(&refs(&other)).head(&child, T0 + 2_000);
        assert!(matches!(
            check(&child, Some(&last), &forked, &[], T0 + 2_000),
            Err(WitnessError::Forked { size: 6, .. })
        ));
    }

    #[test]
    fn a_rewritten_entry_is_a_fork_then_an_inconsistency() {
        let (child, _, _, last) = setup();
        let mut rewritten = subjects(6);
        rewritten[2] = "entry-2, quietly edited".into();
        let mut ledger = Ledger::of(&refs(&rewritten));
        // At the same size: another root.
        let same_size = ledger.head(&child, T0 + 2_000);
        assert!(matches!(
            check(&child, Some(&last), &same_size, &[], T0 + 2_000),
            Err(WitnessError::Forked { .. })
        ));
        // Hidden under new entries: no consistency proof from the witnessed head exists.
        ledger.append("entry-6");
        ledger.append("entry-7");
        let new = ledger.head(&child, T0 + 2_000);
        let proof = ledger.proof_from(last.size);
        assert!(matches!(
            check(&child, Some(&last), &new, &proof, T0 + 2_000),
            Err(WitnessError::Inconsistent {
                last_size: 6,
                new_size: 8,
                reason: MerkleError::RootMismatch,
                ..
            })
        ));
    }

    #[test]
    fn reordered_entries_are_inconsistent() {
        let (child, _, _, last) = setup();
        let mut reordered = subjects(10);
        reordered.swap(1, 4);
        let ledger = Ledger::of(&refs(&reordered));
        let new = ledger.head(&child, T0 + 2_000);
        let proof = ledger.proof_from(last.size);
        assert!(matches!(
            check(&child, Some(&last), &new, &proof, T0 + 2_000),
            Err(WitnessError::Inconsistent { .. })
        ));
    }

    #[test]
    fn signatures_regions_and_times_are_checked() {
        let (child, parent, mut ledger, last) = setup();
        ledger.append("entry-6");
        let proof = ledger.proof_from(last.size);
        // Signed by another key (the parent's), or changed after signing.
        let forged = ledger.head(&parent, T0 + 2_000);
        let forged = SignedTreeHead {
            head: TreeHead {
                region: child.region,
                ..forged.head
            },
            ..forged
        };
        assert_eq!(
            check(&child, Some(&last), &forged, &proof, T0 + 2_000),
            Err(WitnessError::BadSignature {
                region: child.region
            })
        );
        let mut tampered = ledger.head(&child, T0 + 2_000);
        tampered.head.size += 1;
        assert!(matches!(
            check(&child, Some(&last), &tampered, &proof, T0 + 2_000),
            Err(WitnessError::BadSignature { .. })
        ));
        // A head of another ledger than the sender's.
        let sibling = identity("110102", 3);
        let theirs = ledger.head(&sibling, T0 + 2_000);
        assert!(matches!(
            check(&child, Some(&last), &theirs, &proof, T0 + 2_000),
            Err(WitnessError::WrongRegion { .. })
        ));
        // Backdated before the witnessed head, and dated too far ahead.
        let backdated = ledger.head(&child, last.time_ms - 1);
        assert!(matches!(
            check(&child, Some(&last), &backdated, &proof, T0 + 2_000),
            Err(WitnessError::TimeWentBackwards { .. })
        ));
        let ahead = ledger.head(&child, T0 + 2_000 + HEAD_CLOCK_SKEW_MS_MAX + 1);
        assert!(matches!(
            check(&child, Some(&last), &ahead, &proof, T0 + 2_000),
            Err(WitnessError::FromTheFuture { .. })
        ));
        let within_skew = ledger.head(&child, T0 + 2_000 + HEAD_CLOCK_SKEW_MS_MAX);
        assert_eq!(
            check(&child, Some(&last), &within_skew, &proof, T0 + 2_000),
            Ok(())
        );
    }

    #[test]
    fn first_heads_and_hostile_proofs() {
        let child = identity("110101", 1);
        let empty = Ledger::of(&[]);
        check(&child, None, &empty.head(&child, T0), &[], T0).unwrap();
        // An empty ledger has exactly one root.
        let mut bad = empty.head(&child, T0).head;
        bad.root = [7; 32];
        let bad = SignedTreeHead::sign(bad, &child);
        assert_eq!(
            check(&child, None, &bad, &[], T0),
            Err(WitnessError::BadEmptyRoot {
                region: child.region
            })
        );
        // A first head comes without a proof; an over-long proof is refused unhashed.
        let (_, _, ledger, last) = setup();
        let new = ledger.head(&child, T0 + 2_000);
        assert!(matches!(
            check(&child, None, &new, &[[0; 32]], T0 + 2_000),
            Err(WitnessError::Inconsistent { .. })
        ));
        let long = vec![[0; 32]; crate::ledger::merkle::PROOF_HASHES_MAX + 1];
        let mut grown = ledger;
        grown.append("entry-6");
        let new = grown.head(&child, T0 + 2_000);
        assert!(matches!(
            check(&child, Some(&last), &new, &long, T0 + 2_000),
            Err(WitnessError::Inconsistent {
                reason: MerkleError::ProofTooLong { .. },
                ..
            })
        ));
        // A proof that is merely missing is a finding too, not a panic.
        assert!(matches!(
            check(&child, Some(&last), &new, &[], T0 + 2_000),
            Err(WitnessError::Inconsistent { .. })
        ));
    }
}
