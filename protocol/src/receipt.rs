//! Delivery receipts (回执): signed statements flowing up the tree so a publisher sees, per
//! region, whether its return-flow data arrived.
//!
//! A receipt summarises a node's whole subtree for one manifest: its own partition (if any)
//! plus the latest receipts of its descendants, so each node sends O(1) receipts per change to
//! its parent, not one per township. A parent verifies its children's signatures; the
//! publisher trusts each tier's attestation for its subtree, as the administrative hierarchy
//! does. Regions with no receipt yet are reported as missing (a bounded sample plus a count).

use std::collections::BTreeMap;

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::manifest::{Hash, PartitionEntry};
use crate::time::UnixMs;
use crate::wire::{check_len, digest, Bounded, LimitError, MISSING_REGIONS_REPORTED_MAX};

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
}

impl Receipt {
    pub fn is_complete(&self) -> bool {
        self.regions_delivered == self.regions_expected
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signer: CertChain,
    pub signature: Signature,
}

impl Bounded for SignedReceipt {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)?;
        check_len(
            "missing regions",
            self.receipt.missing.len(),
            MISSING_REGIONS_REPORTED_MAX,
        )
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
        }
    }

    /// Verifies limits, chain, signature and that the signer is the receipt's region.
    pub fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), ReceiptError> {
        self.check_limits()?;
        let r = &self.receipt;
        if r.regions_delivered > r.regions_expected {
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

/// Latest receipts of a node's descendants for one manifest, and the aggregation into the
/// node's own receipt.
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

    /// Whether some receipt from `region` or one of its ancestors strictly below `me` exists:
    /// that receipt accounts for `region`.
    fn covered(&self, me: RegionCode, region: RegionCode) -> bool {
        std::iter::once(region)
            .chain(region.ancestors())
            .take_while(|r| *r != me)
            .any(|r| self.latest.contains_key(&r))
    }

    /// Aggregates the subtree of `me`: `entries` are the partitions in it, `own_delivered`
    /// says whether `me`'s own partition is stored.
    ///
    /// Receipts nest (a city's covers its counties'), and after a skip-level fallback a node
    /// may hold both a stale receipt from a child and fresher ones from that child's children.
    /// Every receipt is a signed lower bound for its subtree, so for each region the larger of
    /// (its own receipt, the sum over its children) is taken, bottom-up; nothing is counted
    /// twice.
    pub fn summarize(
        &self,
        me: RegionCode,
        manifest: Hash,
        entries: &[PartitionEntry],
        own_delivered: bool,
        seq: u64,
        at: UnixMs,
    ) -> Receipt {
        #[derive(Default)]
        struct Agg {
            delivered: u32,
            records: u64,
            bytes: u64,
            missing: Vec<RegionCode>,
        }
        impl Agg {
            fn add(&mut self, other: Agg) {
                self.delivered = self.delivered.saturating_add(other.delivered);
                self.records = self.records.saturating_add(other.records);
                self.bytes = self.bytes.saturating_add(other.bytes);
                let room = MISSING_REGIONS_REPORTED_MAX.saturating_sub(self.missing.len());
                self.missing.extend(other.missing.into_iter().take(room));
            }
        }
        let mut regions = std::collections::BTreeSet::new();
        for region in self.latest.keys() {
            if *region == me || !me.contains(*region) {
                continue;
            }
            for r in std::iter::once(*region).chain(region.ancestors()) {
                if r == me || !regions.insert(r) {
                    break;
                }
            }
        }
        let mut sums: BTreeMap<RegionCode, Agg> = BTreeMap::new();
        let mut total = Agg::default();
        // RegionCode orders by level: reverse visits children before parents.
        for r in regions.iter().rev() {
            let kids = sums.remove(r).unwrap_or_default();
            let chosen = match self.latest.get(r) {
                Some(rec) if rec.regions_delivered >= kids.delivered => Agg {
                    delivered: rec.regions_delivered,
                    records: rec.records_delivered,
                    bytes: rec.bytes_delivered,
                    missing: rec.missing.clone(),
                },
                _ => kids,
            };
            match r.parent() {
                Some(p) if p != me => sums.entry(p).or_default().add(chosen),
                _ => total.add(chosen),
            }
        }
        let mut r = Receipt {
            region: me,
            manifest,
            seq,
            at,
            regions_expected: entries.len() as u32,
            regions_delivered: total.delivered,
            records_delivered: total.records,
            bytes_delivered: total.bytes,
            missing: total.missing,
        };
        for e in entries {
            if e.region == me {
                if own_delivered {
                    // Saturating: a (signed, but possibly compromised) descendant's counts
                    // must not be able to overflow ours.
                    r.regions_delivered = r.regions_delivered.saturating_add(1);
                    r.records_delivered = r.records_delivered.saturating_add(e.records);
                    r.bytes_delivered = r.bytes_delivered.saturating_add(e.bytes);
                } else if r.missing.len() < MISSING_REGIONS_REPORTED_MAX {
                    r.missing.push(me);
                }
            } else if r.missing.len() < MISSING_REGIONS_REPORTED_MAX && !self.covered(me, e.region)
            {
                r.missing.push(e.region);
            }
        }
        // A descendant's claims are capped by what we know the subtree holds.
        r.regions_delivered = r.regions_delivered.min(r.regions_expected);
        r.missing.sort_unstable();
        r.missing.dedup();
        r
    }
}
