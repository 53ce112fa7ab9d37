//! Delivery receipts (回执): signed statements flowing up the tree so a publisher sees, per
//! region, whether its return-flow data arrived.
//!
//! A receipt is a node's signed summary of its subtree for one manifest: a bitmap with one bit
//! per partition of the subtree, in region order (the same order every node sorts its entries
//! in, and a subsequence of every ancestor's), plus counts. It is the relay's *claim*; what a
//! node counts as delivered is its own partition (if stored) and every partition whose own
//! region signed a delivery attestation this node verified ([`crate::attestation`], #15 item 5):
//! a relay cannot claim delivery for a subtree it did not deliver. The attestations travel up
//! *with* the receipts (each forwarded once, at most [`ATTESTATIONS_PER_RECEIPT_MAX`] per
//! receipt), so a node still sends O(1) receipts per change to its parent, not one per township.
//!
//! # Counting each partition exactly once
//! Attestations are kept per region (a grow-only set per manifest), so merging is idempotent,
//! commutative and monotone whichever path an attestation took: after a skip-level fallback a
//! node may receive a township's attestation from the township itself *and* from its county,
//! and it is still counted once. Record and byte totals are recomputed from the manifest's own
//! entries for the delivered set, so a descendant cannot inflate them. Regions not delivered are
//! reported as missing (a bounded sample plus a count).

use std::collections::BTreeMap;

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::attestation::SignedAttestation;
use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::codec::digest;
use crate::limits::{
    check_len, Bounded, LimitError, ATTESTATIONS_PER_RECEIPT_MAX, MISSING_REGIONS_REPORTED_MAX,
    RECEIPT_DELIVERED_BYTES_MAX,
};
use crate::manifest::{Hash, PartitionEntry};
use crate::time::UnixMs;

const RECEIPT_DOMAIN: &[u8] = b"backflow/receipt/v1";

/// What a region attests about its subtree for one manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub region: RegionCode,
    pub manifest: Hash,
    /// Increases with every new receipt for (region, manifest): a newer one replaces an older.
    pub seq: u64,
    pub at: UnixMs,
    /// Partitions in the subtree.
    pub regions_expected: u32,
    /// Partitions verified and stored by their own region's node.
    pub regions_delivered: u32,
    /// Records and bytes in delivered partitions.
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    /// Up to `MISSING_REGIONS_REPORTED_MAX` undelivered regions (the count is
    /// `regions_expected - regions_delivered`).
    pub missing: Vec<RegionCode>,
    /// Bit `i` (LSB first) says the `i`-th partition of the subtree, in region order, is
    /// delivered; `regions_expected.div_ceil(8)` bytes. What aggregation merges (see the module
    /// docs); `regions_delivered` is its population count.
    pub delivered: Vec<u8>,
}

impl Receipt {
    pub fn is_complete(&self) -> bool {
        self.regions_delivered == self.regions_expected
    }

    /// Whether the `i`-th partition of the subtree (region order) is delivered.
    pub fn is_delivered(&self, i: usize) -> bool {
        bit(&self.delivered, i)
    }
}

pub(crate) fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

pub(crate) fn set_bit(bits: &mut [u8], i: usize) {
    bits[i / 8] |= 1 << (i % 8);
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signer: CertChain,
    pub signature: Signature,
    /// Descendants' (and the signer's own) delivery attestations the signer forwards with this
    /// receipt, each signed by its own region — outside the receipt's signature, which adds
    /// nothing to theirs. Verified one by one by the receiver.
    pub attestations: Vec<Arc<SignedAttestation>>,
}

impl Bounded for SignedReceipt {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)?;
        check_len(
            "missing regions",
            self.receipt.missing.len(),
            MISSING_REGIONS_REPORTED_MAX,
        )?;
        check_len(
            "receipt delivered bitmap bytes",
            self.receipt.delivered.len(),
            RECEIPT_DELIVERED_BYTES_MAX,
        )?;
        check_len(
            "attestations per receipt",
            self.attestations.len(),
            ATTESTATIONS_PER_RECEIPT_MAX,
        )?;
        self.attestations.iter().try_for_each(|a| a.check_limits())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("receipt for {region} signed by {signer}")]
    WrongSigner {
        region: RegionCode,
        signer: RegionCode,
    },
    /// The counts disagree with each other or with the delivered bitmap, or (at the receiver)
    /// `expected` is not the number of partitions the manifest has in the signer's region.
    #[error("receipt claims {delivered} of {expected} regions delivered")]
    Inconsistent { delivered: u32, expected: u32 },
}

impl SignedReceipt {
    pub fn sign(receipt: Receipt, identity: &NodeIdentity) -> SignedReceipt {
        debug_assert_eq!(receipt.region, identity.region);
        SignedReceipt {
            signature: identity.sign(&digest(RECEIPT_DOMAIN, &receipt)),
            receipt,
            signer: identity.chain.clone(),
            attestations: Vec::new(),
        }
    }

    /// Verifies limits, that the counts match the delivered bitmap, chain, signature and that
    /// the signer is the receipt's region.
    pub fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), ReceiptError> {
        self.check_limits()?;
        let r = &self.receipt;
        let ones: u32 = r.delivered.iter().map(|b| b.count_ones()).sum();
        let stray =
            (r.regions_expected as usize..r.delivered.len() * 8).any(|i| bit(&r.delivered, i));
        if r.regions_delivered > r.regions_expected
            || r.delivered.len() != (r.regions_expected as usize).div_ceil(8)
            || ones != r.regions_delivered
            || stray
        {
            return Err(ReceiptError::Inconsistent {
                delivered: r.regions_delivered,
                expected: r.regions_expected,
            });
        }
        let who = trust.verify_signed(
            &self.signer,
            now,
            &digest(RECEIPT_DOMAIN, r),
            &self.signature,
        )?;
        if who.region != r.region {
            return Err(ReceiptError::WrongSigner {
                region: r.region,
                signer: who.region,
            });
        }
        Ok(())
    }
}

/// Latest receipts (claims) of a node's descendants for one manifest: per region the receipt
/// with the highest `seq` is kept (a last-writer-wins register), so duplicated or reordered
/// receipts give the same view. What is *counted* comes from attestations ([`summarize`]).
#[derive(Clone, Debug, Default)]
pub struct ReceiptLedger {
    latest: BTreeMap<RegionCode, Receipt>,
}

impl ReceiptLedger {
    /// Records a (verified) receipt; returns whether it was news (newer seq).
    pub fn record(&mut self, receipt: Receipt) -> bool {
        match self.latest.get(&receipt.region) {
            Some(old) if old.seq >= receipt.seq => false,
            _ => {
                self.latest.insert(receipt.region, receipt);
                true
            }
        }
    }

    pub fn get(&self, region: RegionCode) -> Option<&Receipt> {
        self.latest.get(&region)
    }

    /// All recorded receipts, by region.
    pub fn iter(&self) -> impl Iterator<Item = (&RegionCode, &Receipt)> {
        self.latest.iter()
    }
}

/// Summarizes the subtree of `me` for `manifest`: `entries` are the partitions in it, sorted by
/// region (as every node holds them), `own_delivered` says whether `me`'s own partition is
/// stored, and bit `i` of `attested` (LSB first) whether `entries[i]`'s region attested
/// delivery. A partition is delivered if it is `me`'s own and stored, or attested — never on a
/// relay's word. Each partition is counted once.
pub fn summarize(
    me: RegionCode,
    manifest: Hash,
    entries: &[PartitionEntry],
    own_delivered: bool,
    attested: &[u8],
    seq: u64,
    at: UnixMs,
) -> Receipt {
    debug_assert!(entries.windows(2).all(|w| w[0].region < w[1].region));
    let mut r = Receipt {
        region: me,
        manifest,
        seq,
        at,
        // Invariant: entries ≤ PARTITIONS_PER_MANIFEST_MAX (a u32), checked on install.
        regions_expected: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        regions_delivered: 0,
        records_delivered: 0,
        bytes_delivered: 0,
        missing: Vec::new(),
        delivered: vec![0; entries.len().div_ceil(8)],
    };
    for (i, e) in entries.iter().enumerate() {
        let delivered = if e.region == me {
            own_delivered
        } else {
            bit(attested, i)
        };
        if delivered {
            set_bit(&mut r.delivered, i);
            r.regions_delivered += 1;
            // Saturating: the manifest's (signed) sizes may be absurd, never overflowing.
            r.records_delivered = r.records_delivered.saturating_add(e.records);
            r.bytes_delivered = r.bytes_delivered.saturating_add(e.bytes);
        } else if r.missing.len() < MISSING_REGIONS_REPORTED_MAX {
            r.missing.push(e.region);
        }
    }
    debug_assert!(r.regions_delivered <= r.regions_expected);
    r.missing.sort_unstable();
    r
}
