//! Signed tree heads: a node's signed commitment to its ledger's size and root at a time, and
//! the parent's countersignature on a head it has checked ([`super::witness`]).
//!
//! A head is what makes the log tamper-*evident*: once a node has signed (size, root), every
//! later head it signs must extend it (a consistency proof shows that), and two heads signed
//! for the same size with different roots are signed evidence of a rewrite. The parent's
//! countersignature ([`WitnessedHead`]) records that the parent saw — and checked — the head,
//! so the node cannot later show an inspector (主管部门, 提供部门, Art. 29: 可以查阅 … 有关记录) a
//! different history than the one its parent holds.
//!
//! Signatures are ed25519 over a domain-separated digest ([`crate::codec::digest`]) as
//! everywhere in the crate, with their own contexts: a tree head signature cannot be replayed
//! as a receipt or a certificate, nor a countersignature as the node's own head.

use backflow_topology::RegionCode;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::merkle::{Hash, PROOF_HASHES_MAX};
use crate::cert::NodeIdentity;
use crate::codec::digest;
use crate::limits::{check_len, Bounded, LimitError};

/// Context of a node's signature on its own tree head.
const TREE_HEAD_DOMAIN: &[u8] = b"backflow/ledger/tree-head/v1";
/// Context of a witness's countersignature on another node's tree head.
const WITNESS_DOMAIN: &[u8] = b"backflow/ledger/witness/v1";

/// A ledger's state: the root of its first `size` entries, as of `time_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Whose ledger.
    pub region: RegionCode,
    pub size: u64,
    /// RFC 6962 `MTH` of the first `size` entries ([`super::merkle::root`]).
    pub root: Hash,
    /// When the node signed it, Unix ms (the shell's `now_ms`).
    pub time_ms: u64,
}

impl TreeHead {
    /// The digest a node signs for this head.
    pub fn signed_digest(&self) -> [u8; 32] {
        digest(TREE_HEAD_DOMAIN, self)
    }
}

/// A tree head signed by its node's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub signature: Signature,
}

/// Why a signed or witnessed head does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("tree head of {region} has a bad signature")]
    BadSignature { region: RegionCode },
    #[error("countersignature by {witness} on the tree head of {region} does not verify")]
    BadWitnessSignature {
        region: RegionCode,
        witness: RegionCode,
    },
    /// Only an ancestor — the region whose node receives the head — witnesses it.
    #[error("{witness} is not above {region} and cannot witness its tree head")]
    WitnessNotAncestor {
        region: RegionCode,
        witness: RegionCode,
    },
}

impl SignedTreeHead {
    /// The node `identity` signs its own ledger's `head`.
    pub fn sign(head: TreeHead, identity: &NodeIdentity) -> SignedTreeHead {
        debug_assert_eq!(head.region, identity.region, "a node signs its own ledger");
        SignedTreeHead {
            signature: identity.sign(&head.signed_digest()),
            head,
        }
    }

    /// Whether `key` (the head's region's key, from its verified certificate chain) signed
    /// it. Strict verification: no weak keys, no malleable signatures.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), HeadError> {
        key.verify_strict(&self.head.signed_digest(), &self.signature)
            .map_err(|_| HeadError::BadSignature {
                region: self.head.region,
            })
    }
}

/// A signed tree head countersigned by a witness (the parent that checked it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedHead {
    pub head: SignedTreeHead,
    pub witness: RegionCode,
    pub witness_signature: Signature,
}

/// What a witness signs: its own region bound to the head it checked. The node's signature is
/// not part of it — the witness vouches for (region, size, root, time), which the node signed.
fn witness_digest(witness: RegionCode, head: &TreeHead) -> [u8; 32] {
    digest(WITNESS_DOMAIN, &(witness, head))
}

impl WitnessedHead {
    /// The witness `identity` countersigns `head`. Call only after the head passed
    /// [`super::witness::check_head`].
    pub fn countersign(head: SignedTreeHead, identity: &NodeIdentity) -> WitnessedHead {
        WitnessedHead {
            witness_signature: identity.sign(&witness_digest(identity.region, &head.head)),
            witness: identity.region,
            head,
        }
    }

    /// Verifies both signatures — the node's with `node_key`, the witness's with
    /// `witness_key` — and that the witness is an ancestor of the head's region.
    pub fn verify(
        &self,
        node_key: &VerifyingKey,
        witness_key: &VerifyingKey,
    ) -> Result<(), HeadError> {
        let region = self.head.head.region;
        if self.witness == region || !self.witness.contains(region) {
            return Err(HeadError::WitnessNotAncestor {
                region,
                witness: self.witness,
            });
        }
        self.head.verify(node_key)?;
        witness_key
            .verify_strict(
                &witness_digest(self.witness, &self.head.head),
                &self.witness_signature,
            )
            .map_err(|_| HeadError::BadWitnessSignature {
                region,
                witness: self.witness,
            })
    }
}

/// A node's new head for its witness, with the consistency proof from the last head the
/// witness acknowledged (empty for the first head). What a shell sends up the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadUpdate {
    pub head: SignedTreeHead,
    /// RFC 6962 consistency proof from the last head the witness countersigned (which the
    /// node knows: the witnessed head comes back to it) to `head`.
    pub consistency: Vec<Hash>,
}

impl Bounded for HeadUpdate {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len(
            "consistency proof hashes",
            self.consistency.len(),
            PROOF_HASHES_MAX,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::codec::{decode_exact, encode_value};
    use crate::ledger::merkle::EMPTY_ROOT;

    /// A node of `region` with the key made from `seed` (chains are not needed here: the
    /// witness knows the child's key from its verified chain).
    pub(crate) fn identity(region: &str, seed: u8) -> NodeIdentity {
        NodeIdentity {
            region: region.parse().unwrap(),
            key: SigningKey::from_bytes(&[seed; 32]),
            chain: Vec::new(),
        }
    }

    fn head(region: RegionCode) -> TreeHead {
        TreeHead {
            region,
            size: 0,
            root: EMPTY_ROOT,
            time_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn a_signed_head_verifies_with_its_key_only() {
        let county = identity("110101", 1);
        let other = identity("110102", 2);
        let signed = SignedTreeHead::sign(head(county.region), &county);
        signed.verify(&county.key.verifying_key()).unwrap();
        assert_eq!(
            signed.verify(&other.key.verifying_key()),
            Err(HeadError::BadSignature {
                region: county.region
            })
        );
        // Any change of what was signed breaks it.
        for change in [
            |h: &mut TreeHead| h.size += 1,
            |h: &mut TreeHead| h.root[31] ^= 1,
            |h: &mut TreeHead| h.time_ms -= 1,
            |h: &mut TreeHead| h.region = "110102".parse().unwrap(),
        ] {
            let mut tampered = signed.clone();
            change(&mut tampered.head);
            assert!(tampered.verify(&county.key.verifying_key()).is_err());
        }
        // It survives the wire.
        let bytes = encode_value(&signed).unwrap();
        assert_eq!(decode_exact::<SignedTreeHead>(&bytes).unwrap(), signed);
    }

    #[test]
    fn a_countersignature_binds_the_witness_and_is_not_a_head_signature() {
        let county = identity("110101", 1);
        let city = identity("1101", 3);
        let signed = SignedTreeHead::sign(head(county.region), &county);
        let witnessed = WitnessedHead::countersign(signed.clone(), &city);
        let (ck, wk) = (county.key.verifying_key(), city.key.verifying_key());
        witnessed.verify(&ck, &wk).unwrap();
        // Keys swapped: both checks fail.
        assert!(witnessed.verify(&wk, &ck).is_err());
        // The countersignature is not a signature of the head by the witness's key.
        let replayed = SignedTreeHead {
            head: signed.head,
            signature: witnessed.witness_signature,
        };
        assert!(replayed.verify(&wk).is_err());
        // Claiming another witness breaks it; a sibling or the node itself cannot witness.
        let mut renamed = witnessed.clone();
        renamed.witness = "11".parse().unwrap();
        assert!(matches!(
            renamed.verify(&ck, &wk),
            Err(HeadError::BadWitnessSignature { .. })
        ));
        for not_above in ["110102", "110101"] {
            let mut w = witnessed.clone();
            w.witness = not_above.parse().unwrap();
            assert!(matches!(
                w.verify(&ck, &wk),
                Err(HeadError::WitnessNotAncestor { .. })
            ));
        }
    }

    #[test]
    fn head_updates_bound_their_proof() {
        let county = identity("110101", 1);
        let mut update = HeadUpdate {
            head: SignedTreeHead::sign(head(county.region), &county),
            consistency: vec![EMPTY_ROOT; PROOF_HASHES_MAX],
        };
        update.check_limits().unwrap();
        update.consistency.push(EMPTY_ROOT);
        assert!(update.check_limits().is_err());
    }
}
