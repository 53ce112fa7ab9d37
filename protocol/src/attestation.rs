//! Delivery attestations (签收): a region's own signed statement that it stores and verified
//! its partition of a dataset version.
//!
//! Completeness at the publisher rests on these, not on the word of the relays in between
//! (#15 item 5). A subtree [`crate::receipt::Receipt`] is a relay's *claim* about its subtree;
//! the partitions a node counts as delivered are its own (if stored) and those whose region
//! signed an attestation that this node verified. Each attestation is made once, by the
//! region's node when its partition is first complete, and travels up with the receipts — every
//! relay verifies it before passing it on (so a hostile child cannot make its parent forward
//! garbage) and forwards it once.
//!
//! # What it proves, and what it does not
//! A relay cannot claim delivery for a region below it without that region's signature: a
//! receipt saying "all delivered" with no attestations counts for nothing, and an attestation
//! signed by anyone but the region itself is refused. But a relay is its subtree's certificate
//! authority (it certifies its children, who certify theirs): it *can* mint a certificate for a
//! township and sign in its name. That forgery is signed evidence against the relay (the
//! minted certificate carries its issuer's signature, and the township's real key differs);
//! detecting it needs the township's real certificate, which its ancestors' revocation and the
//! compliance ledger of issue #19 are for.
//!
//! Cost: one signature per region per version (made once), and one verification per region at
//! each node above it; chains are checked through the trust store's signature memo, so a
//! county's certificate is verified once, not once per township.

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::codec::digest;
use crate::limits::{Bounded, LimitError};
use crate::manifest::{Hash, PartitionEntry};
use crate::time::UnixMs;

const ATTESTATION_DOMAIN: &[u8] = b"backflow/attestation/v1";

/// How long after it was signed an attestation still verifies once its signer's certificate
/// has expired (it travels up after signing, like a catalog version): long enough for a
/// partitioned branch to rejoin, short enough that an expired key cannot backdate for long.
pub const ATTESTATION_SIGNER_GRACE_MS: u64 = 30 * crate::time::DAY_MS;

/// What a region attests: it stores, verified, its partition `content_hash` of `manifest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub region: RegionCode,
    pub manifest: Hash,
    /// The partition's content hash as the manifest lists it: binds the attestation to the
    /// exact bytes delivered.
    pub content_hash: Hash,
    pub at: UnixMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAttestation {
    pub attestation: Attestation,
    pub signer: CertChain,
    pub signature: Signature,
}

impl Bounded for SignedAttestation {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Signed by another region than the one it speaks for (e.g. a relay signing for its
    /// townships).
    #[error("attestation for {region} signed by {signer}")]
    WrongSigner {
        region: RegionCode,
        signer: RegionCode,
    },
    /// Carried by a peer whose subtree does not hold the region, or for a region this node's
    /// subtree does not hold.
    #[error("attestation for {region} carried by {carrier}, outside its subtree")]
    OutOfSubtree {
        region: RegionCode,
        carrier: RegionCode,
    },
    /// The manifest has no partition for the region, or lists other content for it.
    #[error("attestation for {region} does not match the manifest's partition")]
    WrongPartition { region: RegionCode },
}

impl SignedAttestation {
    /// `identity` (the partition's own region) attests `entry` of `manifest`.
    pub fn sign(
        manifest: Hash,
        entry: &PartitionEntry,
        at: UnixMs,
        identity: &NodeIdentity,
    ) -> SignedAttestation {
        debug_assert_eq!(entry.region, identity.region);
        let attestation = Attestation {
            region: entry.region,
            manifest,
            content_hash: entry.content_hash,
            at,
        };
        SignedAttestation {
            signature: identity.sign(&digest(ATTESTATION_DOMAIN, &attestation)),
            attestation,
            signer: identity.chain.clone(),
        }
    }

    /// Verifies limits, that it attests exactly `entry` (the manifest's partition of its
    /// region), the chain (with [`ATTESTATION_SIGNER_GRACE_MS`] past expiry; revocation always
    /// applies), the signature, and that the signer is the attested region itself.
    pub fn verify(
        &self,
        trust: &mut TrustStore,
        now: UnixMs,
        manifest: &Hash,
        entry: &PartitionEntry,
    ) -> Result<(), AttestationError> {
        self.check_limits()?;
        let a = &self.attestation;
        if a.manifest != *manifest
            || a.region != entry.region
            || a.content_hash != entry.content_hash
        {
            return Err(AttestationError::WrongPartition { region: a.region });
        }
        let who = trust.verify_signed_relayed(
            &self.signer,
            now,
            a.at,
            ATTESTATION_SIGNER_GRACE_MS,
            &digest(ATTESTATION_DOMAIN, a),
            &self.signature,
        )?;
        if who.region != a.region {
            return Err(AttestationError::WrongSigner {
                region: a.region,
                signer: who.region,
            });
        }
        Ok(())
    }
}
