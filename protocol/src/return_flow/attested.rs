//! One transfer's delivery attestations ([`crate::attestation`]): which partitions their own
//! region attested (what completeness counts), and — at a relay — the attestations still to be
//! forwarded upward with the receipts, each once.
//!
//! Forwarding rides on the receipt's own acknowledgement: a receipt `seq` carries one batch
//! (at most [`ATTESTATIONS_PER_RECEIPT_MAX`]); its `ReceiptAck` retires the batch; a newer
//! receipt sent before that puts the batch back first. When receipts change destination (a
//! skip-level fallback, or back to the parent) everything held is forwarded again: the new
//! destination may not have it, and the receiver skips what it already holds before any
//! signature check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backflow_topology::RegionCode;

use crate::attestation::SignedAttestation;
use crate::limits::ATTESTATIONS_PER_RECEIPT_MAX;
use crate::receipt::{bit, set_bit};

#[derive(Clone, Debug)]
pub(super) struct Attested {
    /// Bit `i` (LSB first): `entries[i]`'s region attested delivery, verified here.
    bits: Vec<u8>,
    /// Whether this node forwards attestations (every node but the publisher, which only
    /// counts them: its store keeps them as evidence, its memory only the bits).
    forwards: bool,
    /// Held for forwarding, by region (relays only; bounded by the subtree's partitions).
    held: BTreeMap<RegionCode, Arc<SignedAttestation>>,
    /// Held regions the current receipt destination has not acknowledged.
    unforwarded: BTreeSet<RegionCode>,
    /// The batch travelling with the current receipt `seq`.
    batch: Vec<Arc<SignedAttestation>>,
}

impl Attested {
    pub(super) fn new(entries: usize, forwards: bool) -> Attested {
        Attested {
            bits: vec![0; entries.div_ceil(8)],
            forwards,
            held: BTreeMap::new(),
            unforwarded: BTreeSet::new(),
            batch: Vec::new(),
        }
    }

    pub(super) fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// Whether `entries[i]` is attested.
    pub(super) fn contains(&self, i: usize) -> bool {
        bit(&self.bits, i)
    }

    /// Records the (verified) attestation of `entries[i]`; returns whether it was news.
    pub(super) fn record(&mut self, i: usize, attestation: Arc<SignedAttestation>) -> bool {
        assert!(i < self.bits.len() * 8, "attested index past the entries");
        if self.contains(i) {
            return false;
        }
        set_bit(&mut self.bits, i);
        if self.forwards {
            let region = attestation.attestation.region;
            self.held.insert(region, attestation);
            self.unforwarded.insert(region);
        }
        true
    }

    /// Whether `a` is a later attestation of a region held here (a relay keeps what it holds;
    /// the publisher, holding none, counts each region once and needs no newer one).
    pub(super) fn is_newer(&self, a: &SignedAttestation) -> bool {
        self.held
            .get(&a.attestation.region)
            .is_some_and(|held| held.attestation.at < a.attestation.at)
    }

    /// Records `entries[i]`'s (verified) attestation, replacing a held one of its region (it
    /// is then forwarded again).
    pub(super) fn record_or_replace(&mut self, i: usize, attestation: Arc<SignedAttestation>) {
        if !self.record(i, Arc::clone(&attestation)) && self.forwards {
            let region = attestation.attestation.region;
            self.held.insert(region, attestation);
            self.unforwarded.insert(region);
        }
    }

    /// Forgets `entries[i]`'s attestation (this node's own, to be signed again after a key
    /// rotation).
    pub(super) fn forget(&mut self, i: usize, region: RegionCode) {
        if self.contains(i) {
            self.bits[i / 8] &= !(1 << (i % 8));
            self.held.remove(&region);
            self.unforwarded.remove(&region);
        }
    }

    /// Whether attestations wait for a receipt to carry them.
    pub(super) fn has_unforwarded(&self) -> bool {
        !self.unforwarded.is_empty()
    }

    /// Starts a new receipt: the previous batch, unacknowledged, goes back to the queue; the
    /// next (region order, at most [`ATTESTATIONS_PER_RECEIPT_MAX`]) is taken from it.
    pub(super) fn next_batch(&mut self) {
        for a in self.batch.drain(..) {
            self.unforwarded.insert(a.attestation.region);
        }
        while self.batch.len() < ATTESTATIONS_PER_RECEIPT_MAX {
            let Some(region) = self.unforwarded.pop_first() else {
                break;
            };
            if let Some(a) = self.held.get(&region) {
                self.batch.push(Arc::clone(a));
            }
        }
    }

    /// The batch of the current receipt (re-sent with each retransmission of it).
    pub(super) fn batch(&self) -> &[Arc<SignedAttestation>] {
        &self.batch
    }

    /// The current receipt was acknowledged: its batch is forwarded.
    pub(super) fn batch_acked(&mut self) {
        self.batch.clear();
    }

    /// Receipts go somewhere new: forward everything held again.
    pub(super) fn destination_changed(&mut self) {
        self.batch.clear();
        self.unforwarded = self.held.keys().copied().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::Attestation;
    use crate::cert::NodeIdentity;
    use crate::time::UnixMs;
    use backflow_topology::Level;
    use ed25519_dalek::SigningKey;

    fn attestation(region: RegionCode) -> Arc<SignedAttestation> {
        // Never verified here: this module only counts and queues.
        let national = NodeIdentity::national(SigningKey::from_bytes(&[7; 32]));
        Arc::new(SignedAttestation {
            attestation: Attestation {
                region,
                manifest: [3; 32],
                content_hash: [1; 32],
                at: UnixMs(1),
            },
            signer: national.chain.clone(),
            signature: national.sign(&[0; 32]),
        })
    }

    #[test]
    fn batches_are_bounded_retried_until_acked_and_resent_on_a_new_destination() {
        let n = ATTESTATIONS_PER_RECEIPT_MAX + 10;
        let mut set = Attested::new(n, true);
        for i in 0..n {
            let region = RegionCode::new(Level::Township, 110_101_001 + i as u64).expect("code");
            assert!(set.record(i, attestation(region)));
            assert!(!set.record(i, attestation(region)), "recorded twice");
        }
        assert!((0..n).all(|i| set.contains(i)));
        set.next_batch();
        assert_eq!(set.batch().len(), ATTESTATIONS_PER_RECEIPT_MAX);
        // Not acknowledged: the next receipt carries the same first batch again.
        set.next_batch();
        assert_eq!(set.batch().len(), ATTESTATIONS_PER_RECEIPT_MAX);
        set.batch_acked();
        assert!(set.has_unforwarded());
        set.next_batch();
        assert_eq!(set.batch().len(), 10);
        set.batch_acked();
        set.next_batch();
        assert!(set.batch().is_empty() && !set.has_unforwarded());
        set.destination_changed();
        set.next_batch();
        assert_eq!(set.batch().len(), ATTESTATIONS_PER_RECEIPT_MAX);
    }

    #[test]
    fn a_newer_attestation_replaces_the_held_one_and_goes_up_again() {
        let mut set = Attested::new(2, true);
        let region = RegionCode::new(Level::Township, 110_101_001).expect("code");
        let old = attestation(region);
        assert!(set.record(0, Arc::clone(&old)));
        set.next_batch();
        set.batch_acked();
        assert!(!set.has_unforwarded());
        // Re-signed later (after a key rotation): newer, replaces, forwarded again.
        let mut newer = (*old).clone();
        newer.attestation.at = UnixMs(2);
        let newer = Arc::new(newer);
        assert!(!set.is_newer(&old) && set.is_newer(&newer));
        set.record_or_replace(0, Arc::clone(&newer));
        assert!(set.contains(0) && set.has_unforwarded());
        set.next_batch();
        assert_eq!(set.batch(), &[newer]);
        // Forgotten (this node's own, before signing again): no longer counted or held.
        set.forget(0, region);
        assert!(!set.contains(0));
        set.next_batch();
        assert!(set.batch().is_empty());
    }

    #[test]
    fn the_publisher_counts_without_holding() {
        let mut set = Attested::new(3, false);
        let region = RegionCode::new(Level::Township, 110_101_001).expect("code");
        assert!(set.record(1, attestation(region)));
        assert!(set.contains(1) && !set.contains(0));
        set.next_batch();
        assert!(set.batch().is_empty() && !set.has_unforwarded());
    }
}
