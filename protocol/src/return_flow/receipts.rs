//! The return flow's reporting side: receipts up the tree (each node's signed summary of its
//! subtree, retransmitted until acknowledged, with a skip-level fallback), the delivery
//! attestations they carry ([`crate::attestation`]) and the completeness views built from them.
//! Split from the fetch and announce side of [`super::ReturnFlow`] by job; same machine.

use std::sync::Arc;

use backflow_topology::RegionCode;

use super::paths::{data_parent, valid_sources};
use super::{Event, Output, ReturnFlow, ReturnFlowMsg, StorageOp, Transfer};
use crate::attestation::{AttestationError, SignedAttestation};
use crate::cert::TrustStore;
use crate::limits::MISSING_REGIONS_REPORTED_MAX;
use crate::manifest::{Hash, PartitionEntry};
use crate::receipt::{summarize, Receipt, ReceiptError, SignedReceipt};
use crate::time::UnixMs;

impl ReturnFlow {
    /// This node's current aggregate for `manifest` (own partition plus descendants' receipts).
    pub fn completeness(&self, manifest: &Hash) -> Option<Receipt> {
        let t = self.transfers.get(manifest)?;
        Some(self.summary(t, UnixMs::ZERO))
    }

    /// This node's exact view of `region`'s subtree (`region` inside this node's) for
    /// `manifest`: the same union as [`Self::completeness`], restricted to the partitions
    /// under `region`, whichever receipts they were attested by (e.g. for a per-child status
    /// page; summing children's receipts undercounts after a fallback). `region`, `seq` and
    /// `at` of the result are `region`, 0 and 0; `None` if the manifest is unknown.
    pub fn completeness_of(&self, manifest: &Hash, region: RegionCode) -> Option<Receipt> {
        let t = self.transfers.get(manifest)?;
        let all = self.summary(t, UnixMs::ZERO);
        let mut r = Receipt {
            region,
            manifest: *manifest,
            seq: 0,
            at: UnixMs::ZERO,
            regions_expected: 0,
            regions_delivered: 0,
            records_delivered: 0,
            bytes_delivered: 0,
            missing: Vec::new(),
            delivered: Vec::new(),
        };
        let mut bits = Vec::new();
        for (i, e) in t.record.entries.iter().enumerate() {
            if !region.contains(e.region) {
                continue;
            }
            let k = r.regions_expected as usize;
            if k.is_multiple_of(8) {
                bits.push(0u8);
            }
            r.regions_expected += 1;
            if all.is_delivered(i) {
                bits[k / 8] |= 1 << (k % 8);
                r.regions_delivered += 1;
                r.records_delivered = r.records_delivered.saturating_add(e.records);
                r.bytes_delivered = r.bytes_delivered.saturating_add(e.bytes);
            } else if r.missing.len() < MISSING_REGIONS_REPORTED_MAX {
                r.missing.push(e.region);
            }
        }
        r.delivered = bits;
        Some(r)
    }

    /// Latest receipts received from descendants for `manifest`.
    pub fn receipts(&self, manifest: &Hash) -> Vec<Receipt> {
        self.transfers
            .get(manifest)
            .map(|t| t.ledger.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Restart: hands back a descendant's receipt persisted by [`StorageOp::PutReceipt`] (after
    /// [`Self::restore`] of its transfer). Storage is trusted, so the signature is not checked
    /// again, but the receipt must still fit the transfer (a descendant region, the same
    /// partition count); returns whether it was recorded.
    pub fn restore_receipt(&mut self, receipt: Receipt) -> bool {
        let me = self.region();
        let region = receipt.region;
        let Some(t) = self.transfers.get_mut(&receipt.manifest) else {
            return false;
        };
        if !reports_to(me, &t.record.manifest.manifest, region)
            || receipt.regions_expected as usize != t.partitions_under(region)
        {
            return false;
        }
        let recorded = t.ledger.record(receipt);
        if recorded {
            // The aggregate upward may have changed (it is re-sent; receivers are idempotent).
            t.receipt_dirty = true;
            // A descendant that reported is reachable: no need to announce to it again.
            if let Some(target) = t.targets.get_mut(&region) {
                target.acked = true;
            }
        }
        recorded
    }

    /// Restart: hands back an attestation persisted by [`StorageOp::PutAttestation`] (after
    /// [`Self::restore`] of its transfer). Storage is trusted, so the signature is not checked
    /// again, but it must attest a partition of the transfer in this node's subtree with the
    /// content the manifest lists; returns whether it was recorded. A relay forwards restored
    /// attestations again (it cannot know which its parent acknowledged; the parent skips what
    /// it holds before any signature check).
    pub fn restore_attestation(&mut self, attestation: Arc<SignedAttestation>) -> bool {
        let a = &attestation.attestation;
        let (me, own_chain) = (self.region(), &self.config.identity.chain);
        let stale_own = a.region == me && attestation.signer != *own_chain;
        let Some(t) = self.transfers.get_mut(&a.manifest) else {
            return false;
        };
        let Some(i) = t.part_index(a.region) else {
            return false;
        };
        if t.record.entries[i].content_hash != a.content_hash {
            return false;
        }
        // This node's own attestation under a key it no longer holds (it rotated since): not
        // restored, so it is signed again under the current chain — the old one's chain is
        // void once the old key is revoked.
        if stale_own {
            return false;
        }
        let recorded = t.attested.record(i, attestation);
        if recorded {
            t.receipt_dirty = true;
        }
        recorded
    }

    pub(super) fn on_receipt(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        r: &SignedReceipt,
    ) {
        let me = self.region();
        let region = r.receipt.region;
        let reports = self
            .transfers
            .get(&r.receipt.manifest)
            .is_some_and(|t| reports_to(me, &t.record.manifest.manifest, region));
        // (An unknown manifest passes here and is dropped below, unacknowledged.)
        let known = self.transfers.contains_key(&r.receipt.manifest);
        if from != region || (known && !reports) || (!known && !me.contains(region)) {
            self.out.push_back(Output::Event(Event::ReceiptRejected {
                from,
                error: ReceiptError::WrongSigner {
                    region,
                    signer: from,
                },
            }));
            return;
        }
        let manifest = r.receipt.manifest;
        let seq = r.receipt.seq;
        // An unknown manifest (not yet installed here, or superseded) is not acknowledged: the
        // attestations the receipt carries would be lost, so the sender keeps them and falls
        // back to another ancestor (or re-sends when this node announces the manifest to it).
        let Some(t) = self.transfers.get_mut(&manifest) else {
            return;
        };
        // Cheap checks before crypto: already-seen receipts are only acknowledged (so the
        // sender stops), never verified or recorded.
        let news = t
            .ledger
            .get(region)
            .is_none_or(|old| old.seq < r.receipt.seq);
        if news {
            // The bitmap indexes the signer's partitions in region order, which must be
            // exactly ours inside its region (both proven against the same manifest root).
            let expected = t.partitions_under(region);
            let check = if r.receipt.regions_expected as usize != expected {
                Err(ReceiptError::Inconsistent {
                    delivered: r.receipt.regions_delivered,
                    expected: r.receipt.regions_expected,
                })
            } else {
                r.verify(trust, now)
            };
            if let Err(error) = check {
                self.out
                    .push_back(Output::Event(Event::ReceiptRejected { from, error }));
                return;
            }
        }
        // Attestations are taken from every receipt, news or not: each is signed by its own
        // region, so it needs nothing of the carrier's receipt, and held ones are skipped
        // before any signature check (a retransmission costs no crypto). A receipt whose `seq`
        // is stale (even one pushed far ahead) thus never holds attestations back.
        self.take_attestations(now, trust, from, &manifest, &r.attestations);
        if let Some(t) = self.transfers.get_mut(&manifest).filter(|_| news) {
            if t.ledger.record(r.receipt.clone()) {
                t.receipt_dirty = true;
                self.out.push_back(Output::Storage(StorageOp::PutReceipt {
                    manifest,
                    receipt: r.receipt.clone(),
                }));
            }
            // A child that reports is reachable: stop announcing to it.
            if let Some(target) = t.targets.get_mut(&region) {
                target.acked = true;
            }
        }
        self.send(from, ReturnFlowMsg::ReceiptAck { manifest, seq });
        self.drive(now, &manifest);
    }

    /// Sends (or, at the publisher, publishes as an event) this node's subtree receipt.
    pub(super) fn report(&mut self, now: UnixMs, t: &mut Transfer) {
        if t.receipt_dirty && now >= t.receipt_next_send {
            // Time-based so a restarted node's receipts still supersede its earlier ones.
            t.receipt_seq = (t.receipt_seq + 1).max(now.0);
            t.receipt_dirty = false;
            t.receipt_acked = false;
            // Each new receipt tries the data parent first (it may be back).
            if t.receipt_to.is_some() {
                let parent = data_parent(
                    &self.config.routing,
                    self.region(),
                    &t.record.manifest.manifest,
                );
                if parent != t.receipt_to {
                    t.attested.destination_changed();
                }
                t.receipt_to = parent;
                t.receipt_first_sent = None;
                self.attest_own(now, t);
            }
            t.attested.next_batch();
            let summary = self.summary(t, now);
            self.out
                .push_back(Output::Event(Event::Completeness(summary)));
            // Send at once; at the publisher (no source) just debounce the next summary.
            t.receipt_next_send = if t.source.is_some() {
                now
            } else {
                now.plus_ms(self.config.receipt_interval_ms)
            };
        }
        let Some(mut to) = t.receipt_to else {
            return;
        };
        if t.receipt_seq == 0 || t.receipt_acked || now < t.receipt_next_send {
            return;
        }
        let first = *t.receipt_first_sent.get_or_insert(now);
        if now.since_ms(first) >= self.config.source_silence_ms_max {
            // Skip-level fallback for receipts: the next ancestor, round-robin.
            let candidates = valid_sources(self.region(), &t.record.manifest.manifest);
            if let Some(i) = candidates.iter().position(|c| *c == to) {
                to = candidates[(i + 1) % candidates.len()];
            }
            if t.receipt_to != Some(to) {
                t.attested.destination_changed();
                t.attested.next_batch();
            }
            t.receipt_to = Some(to);
            t.receipt_first_sent = Some(now);
        }
        let summary = self.summary(t, now);
        let mut signed = SignedReceipt::sign(summary, &self.config.identity);
        signed.attestations = t.attested.batch().to_vec();
        t.receipt_next_send = now.plus_ms(
            self.config
                .retry_ms
                .min(self.config.receipt_interval_ms)
                .max(1),
        );
        self.send(to, ReturnFlowMsg::Receipt(Arc::new(signed)));
    }

    fn summary(&self, t: &Transfer, now: UnixMs) -> Receipt {
        let me = self.region();
        let own_delivered = t.part_index(me).is_some_and(|i| t.parts[i].have.is_full());
        let entries: &[PartitionEntry] = &t.record.entries;
        summarize(
            me,
            t.hash,
            entries,
            own_delivered,
            t.attested.bits(),
            t.receipt_seq,
            now,
        )
    }

    /// A receiver whose own partition is complete attests it, once per transfer (persisted,
    /// so a restart does not sign again; a second signature would be harmless, counted once).
    fn attest_own(&mut self, now: UnixMs, t: &mut Transfer) {
        let me = self.region();
        let Some(i) = t.part_index(me) else {
            return;
        };
        if t.record.published || !t.parts[i].have.is_full() || t.attested.contains(i) {
            return;
        }
        let a = Arc::new(SignedAttestation::sign(
            t.hash,
            &t.record.entries[i],
            now,
            &self.config.identity,
        ));
        t.attested.record(i, Arc::clone(&a));
        self.out
            .push_back(Output::Storage(StorageOp::PutAttestation {
                manifest: t.hash,
                attestation: a,
            }));
    }

    /// Verifies and records the attestations a (verified) receipt from `from` carries: each
    /// must be for a partition of `manifest` inside `from`'s subtree, signed by that partition's
    /// own region. Already-held ones are skipped before any signature check.
    fn take_attestations(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        manifest: &Hash,
        batch: &[Arc<SignedAttestation>],
    ) {
        let me = self.region();
        let Some(mut t) = self.transfers.remove(manifest) else {
            return;
        };
        let mut news = false;
        for a in batch {
            let region = a.attestation.region;
            let check = if !from.contains(region) || region == me {
                Err(AttestationError::OutOfSubtree {
                    region,
                    carrier: from,
                })
            } else {
                match t.part_index(region) {
                    None => Err(AttestationError::WrongPartition { region }),
                    // Held already: skipped before any signature check — unless it is a newer
                    // attestation of the region (re-signed after a key rotation made the
                    // held one's chain void), which replaces it here and goes on up.
                    Some(i) if t.attested.contains(i) && !t.attested.is_newer(a) => continue,
                    Some(i) => a
                        .verify(trust, now, manifest, &t.record.entries[i])
                        .map(|()| i),
                }
            };
            match check {
                Ok(i) => {
                    t.attested.record_or_replace(i, Arc::clone(a));
                    news = true;
                    self.out
                        .push_back(Output::Storage(StorageOp::PutAttestation {
                            manifest: *manifest,
                            attestation: Arc::clone(a),
                        }));
                }
                Err(error) => self
                    .out
                    .push_back(Output::Event(Event::AttestationRejected { from, error })),
            }
        }
        if news {
            t.receipt_dirty = true;
        }
        self.transfers.insert(*manifest, t);
    }
}

/// Whether `region` reports its receipts for `m` to `me`: a descendant on the tree, or the
/// requester a delivery of `me`'s went to.
fn reports_to(me: RegionCode, m: &crate::manifest::Manifest, region: RegionCode) -> bool {
    if m.is_delivery() {
        return me == m.publisher.region && region == m.scope;
    }
    region != me && me.contains(region)
}
