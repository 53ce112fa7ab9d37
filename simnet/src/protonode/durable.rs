//! What a node has durably stored (what the node keeps in RocksDB): it survives a crash,
//! and a restart hands it back whole to the endpoint.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use backflow_protocol::attestation::SignedAttestation;
use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::catalog_review::{DutyChange, Submission};
use backflow_protocol::cert::Revocation;
use backflow_protocol::endpoint::{Saved, SavedTransfer};
use backflow_protocol::ledger::head::WitnessedHead;
use backflow_protocol::manifest::{Hash, PartitionEntry};
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::TransferRecord;
use backflow_protocol::service_interface::ServiceUsage;
use backflow_protocol::share::{ShareCase, SignedRightsAct, SignedShareAct};
use backflow_topology::RegionCode;

use crate::catalog_store::CatalogStore;
use crate::ranges::RangeSet;

/// What a node has durably stored: it survives a crash, and a restart hands it back whole.
#[derive(Default)]
pub(super) struct Durable {
    pub(super) records: BTreeMap<Hash, Arc<TransferRecord>>,
    /// Group ranges held, per partition region, of the content named in `content`.
    pub(super) stored: BTreeMap<RegionCode, RangeSet>,
    /// The content hash whose groups `stored` holds, per partition region (storage is
    /// content-addressed, as in the node: a new version's unchanged partition is the same
    /// content, and the same groups).
    pub(super) content: BTreeMap<RegionCode, Hash>,
    /// Descendants' latest receipts, per transfer.
    pub(super) receipts: BTreeMap<Hash, BTreeMap<RegionCode, Receipt>>,
    /// Delivery attestations held, per transfer.
    pub(super) attestations: BTreeMap<Hash, BTreeMap<RegionCode, Arc<SignedAttestation>>>,
    /// The catalog log and every department's record and entries.
    pub(super) catalog: CatalogStore,
    pub(super) cat_watermarks: BTreeMap<RegionCode, (u64, u64)>,
    pub(super) revocations: Vec<Revocation>,
    pub(super) share_cases: BTreeMap<Hash, ShareCase>,
    pub(super) share_transit: BTreeMap<Hash, SignedShareAct>,
    pub(super) share_supervised: BTreeMap<Hash, ShareCase>,
    pub(super) share_rights: BTreeMap<(CatalogOrigin, RegionCode), SignedRightsAct>,
    pub(super) share_returned: BTreeMap<Hash, backflow_protocol::share::ReturnedCorrection>,
    pub(super) review_submissions: BTreeMap<u64, Submission>,
    pub(super) review_duty_changes: BTreeMap<u64, DutyChange>,
    pub(super) service_usage: BTreeMap<Hash, ServiceUsage>,
    /// The compliance ledger's witnessing (the ledger itself is the node's, not modelled).
    pub(super) ledger_witnessed: BTreeMap<RegionCode, WitnessedHead>,
    pub(super) ledger_acknowledged: Option<WitnessedHead>,
    pub(super) ledger_parent_head: Option<backflow_protocol::ledger::head::SignedTreeHead>,
}

impl Durable {
    /// Everything persisted, as [`Endpoint::new`] takes it back at `me`.
    ///
    /// [`Endpoint::new`]: backflow_protocol::Endpoint::new
    pub(super) fn saved(&self, me: RegionCode) -> Saved {
        Saved {
            transfers: self
                .records
                .iter()
                .map(|(hash, record)| SavedTransfer {
                    record: (**record).clone(),
                    stored: self.present(record),
                    receipts: self
                        .receipts
                        .get(hash)
                        .map(|r| r.values().cloned().collect())
                        .unwrap_or_default(),
                    attestations: self
                        .attestations
                        .get(hash)
                        .map(|a| a.values().cloned().collect())
                        .unwrap_or_default(),
                })
                .collect(),
            catalog: self.catalog.saved(me),
            catalog_watermarks: self
                .cat_watermarks
                .iter()
                .map(|(s, (id, w))| (*s, *id, *w))
                .collect(),
            revocations: self.revocations.clone(),
            share_cases: self.share_cases.values().cloned().collect(),
            share_transit: self.share_transit.values().cloned().collect(),
            share_supervised: self.share_supervised.values().cloned().collect(),
            share_rights: self.share_rights.values().cloned().collect(),
            share_returned: self.share_returned.values().cloned().collect(),
            review_submissions: self.review_submissions.values().cloned().collect(),
            review_duty_changes: self.review_duty_changes.values().cloned().collect(),
            service_usage: self.service_usage.iter().map(|(r, u)| (*r, *u)).collect(),
            ledger_witnessed: self
                .ledger_witnessed
                .iter()
                .map(|(c, h)| (*c, h.clone()))
                .collect(),
            ledger_acknowledged: self.ledger_acknowledged.clone(),
            ledger_parent_head: self.ledger_parent_head.clone(),
        }
    }

    /// The groups held of `e`'s content, if any.
    pub(super) fn held(&self, e: &PartitionEntry) -> Option<&RangeSet> {
        if self.content.get(&e.region) != Some(&e.content_hash) {
            return None;
        }
        self.stored.get(&e.region)
    }

    /// Per partition of `record`, the group ranges held of its content.
    pub(super) fn present(&self, record: &TransferRecord) -> Vec<(RegionCode, Vec<Range<u64>>)> {
        record
            .entries
            .iter()
            .filter_map(|e| Some((e.region, self.held(e)?.ranges().to_vec())))
            .filter(|(_, ranges)| !ranges.is_empty())
            .collect()
    }

    /// Whether a persisted record still uses the content held for `region`.
    pub(super) fn content_in_use(&self, region: RegionCode) -> bool {
        let Some(hash) = self.content.get(&region) else {
            return false;
        };
        self.records.values().any(|r| {
            r.entries
                .binary_search_by_key(&region, |e| e.region)
                .is_ok_and(|i| r.entries[i].content_hash == *hash)
        })
    }

    /// Stores verified groups of `e`'s content; returns the groups newly held. Content held
    /// for the region before, if other, is replaced (no persisted record uses it any more).
    pub(super) fn insert(&mut self, e: &PartitionEntry, groups: Range<u64>) -> Vec<Range<u64>> {
        if self.content.insert(e.region, e.content_hash) != Some(e.content_hash) {
            self.stored.remove(&e.region);
        }
        self.stored.entry(e.region).or_default().insert(groups)
    }

    /// Payload bytes held over every transfer.
    pub(super) fn stored_bytes(&self) -> u64 {
        self.records
            .values()
            .flat_map(|rec| rec.entries.iter())
            .filter_map(|e| Some(self.held(e)?.bytes_of(e.bytes)))
            .sum()
    }
}
