//! A node's durable store, in memory: it applies the endpoint's `Storage` outputs (in order, as
//! a shell must), holds the chunk data the data plane stored, and hands everything back as one
//! `Saved` after a crash. Transfer records are kept encoded with the protocol's own codec
//! (`encode_value` / `decode_stored`, as the real node persists them), so every restart also
//! checks that a record survives storage. Content is addressed by its hash, as in the node:
//! a record put while this node holds the same content under another record (the previous
//! version's unchanged partition) holds it too, and [`Store::present`] says so — but only if
//! that other record was not dropped first.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use backflow_protocol::attestation::SignedAttestation;
use backflow_protocol::catalog::{Applied, CatalogOrigin, DepartmentCatalog, SignedCatalogUpdate};
use backflow_protocol::catalog_review::{DutyChange, ReviewStorageOp, Submission};
use backflow_protocol::catalog_sync::{
    CatalogStorageOp, OriginRecord, SavedCatalog, SavedEntries, SavedOrigin,
};
use backflow_protocol::cert::Revocation;
use backflow_protocol::endpoint::{Saved, SavedTransfer, Storage};
use backflow_protocol::ledger::head::WitnessedHead;
use backflow_protocol::ledger::witnessing::LedgerStorageOp;
use backflow_protocol::manifest::Hash;
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{StorageOp, TransferRecord};
use backflow_protocol::service_interface::{
    LookupAnswer, LookupRecord, ServiceStorageOp, ServiceUsage,
};
use backflow_protocol::share::{ShareCase, ShareStorageOp, SignedRightsAct, SignedShareAct};
use backflow_protocol::wire::{decode_stored, encode_value};
use backflow_protocol::RegionCode;

/// One partition's content as stored so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// The entry's content hash (the address of the content).
    pub content_hash: Hash,
    /// The content buffer: empty until the first verified run is written (then the
    /// partition's full length), so a record naming thousands of large partitions costs
    /// nothing until data arrives.
    pub bytes: Vec<u8>,
    /// The groups stored (verified and written).
    pub have: BTreeSet<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Transfer records ([`StorageOp::PutTransfer`]), encoded.
    pub records: BTreeMap<Hash, Vec<u8>>,
    /// Descendants' latest receipts ([`StorageOp::PutReceipt`]): (manifest, region) → receipt.
    pub receipts: BTreeMap<(Hash, RegionCode), Receipt>,
    /// Delivery attestations ([`StorageOp::PutAttestation`]): (manifest, region) → attestation.
    pub attestations: BTreeMap<(Hash, RegionCode), Arc<SignedAttestation>>,
    /// Chunk data: (manifest, partition region) → content and stored groups.
    pub data: BTreeMap<(Hash, RegionCode), Partition>,
    /// The catalog log, entries 1.. in order.
    pub catalog_log: Vec<Arc<SignedCatalogUpdate>>,
    /// Every department's catalog as applied from the log, with its record: the shell's
    /// store of entries (the protocol holds only their ids).
    pub catalogs: BTreeMap<CatalogOrigin, (OriginRecord, DepartmentCatalog)>,
    /// Catalog watermarks: sender → (log id, watermark).
    pub watermarks: BTreeMap<RegionCode, (u64, u64)>,
    /// Service interface calls counted per grant ([`ServiceStorageOp::PutUsage`]).
    pub service_usage: BTreeMap<Hash, ServiceUsage>,
    /// The last head witnessed per child, and this node's own last acknowledged
    /// ([`Storage::Ledger`]).
    pub ledger_witnessed: BTreeMap<RegionCode, WitnessedHead>,
    pub ledger_acknowledged: Option<WitnessedHead>,
    pub ledger_parent_head: Option<backflow_protocol::ledger::head::SignedTreeHead>,
    /// Data a provider loaded for a grant's service interface: request → key → record lines.
    pub service_data: BTreeMap<Hash, BTreeMap<String, Vec<Vec<u8>>>>,
    /// Revocations accepted ([`Storage::Revocation`]), in order.
    pub revocations: Vec<Revocation>,
    /// Share cases this node is a party to, by request id ([`ShareStorageOp::PutCase`]).
    pub share_cases: BTreeMap<Hash, ShareCase>,
    /// Share acts held for forwarding, by act id.
    pub share_transit: BTreeMap<Hash, SignedShareAct>,
    pub share_supervised: BTreeMap<Hash, ShareCase>,
    /// Acts on sharing rights, by (department, authority).
    pub share_rights: BTreeMap<(CatalogOrigin, RegionCode), SignedRightsAct>,
    pub share_returned: BTreeMap<Hash, backflow_protocol::share::ReturnedCorrection>,
    pub review_submissions: BTreeMap<u64, Submission>,
    pub review_duty_changes: BTreeMap<u64, DutyChange>,
}

impl Store {
    /// Log entries `from, …` (at most `count_max`), as a node's storage answers
    /// [`CatalogStorageOp::ReadLog`].
    pub fn read_log(&self, from: u64, count_max: usize) -> Vec<Arc<SignedCatalogUpdate>> {
        let start = (from.max(1) - 1) as usize;
        self.catalog_log
            .iter()
            .skip(start)
            .take(count_max)
            .cloned()
            .collect()
    }

    /// A department's catalog as stored (entries included).
    pub fn catalog(&self, origin: &CatalogOrigin) -> Option<&DepartmentCatalog> {
        self.catalogs.get(origin).map(|(_, c)| c)
    }

    /// What a provider's store answers a service interface call with.
    pub fn lookup(&self, request: &Hash, keys: &[String]) -> LookupAnswer {
        let data = self.service_data.get(request);
        let records = keys
            .iter()
            .flat_map(|k| {
                let lines = data.and_then(|d| d.get(k)).cloned().unwrap_or_default();
                lines.into_iter().map(move |line| LookupRecord {
                    key: k.clone(),
                    line,
                })
            })
            .collect();
        LookupAnswer {
            header: b"id,value".to_vec(),
            records,
            truncated: false,
        }
    }

    /// Applies one storage effect, durably (it survives [`super::net::Net::restart`]).
    pub fn apply(&mut self, op: Storage) {
        match op {
            Storage::Ledger(LedgerStorageOp::PutWitnessed { child, head }) => {
                self.ledger_witnessed.insert(child, head);
            }
            Storage::Ledger(LedgerStorageOp::PutParentHead(head)) => {
                self.ledger_parent_head = Some(head);
            }
            Storage::Ledger(LedgerStorageOp::PutAcknowledged(head)) => {
                self.ledger_acknowledged = Some(head);
            }
            Storage::Service(ServiceStorageOp::PutUsage { request, usage }) => {
                self.service_usage.insert(request, usage);
            }
            Storage::ReturnFlow(StorageOp::PutTransfer(rec)) => {
                let h = rec.manifest.manifest.hash();
                for e in &rec.entries {
                    if self.data.contains_key(&(h, e.region)) {
                        continue;
                    }
                    // Content-addressed: what this node holds of the same content under any
                    // record is this entry's too.
                    let held = self
                        .data
                        .values()
                        .find(|p| p.content_hash == e.content_hash && !p.have.is_empty())
                        .cloned();
                    let partition = held.unwrap_or(Partition {
                        content_hash: e.content_hash,
                        ..Partition::default()
                    });
                    self.data.insert((h, e.region), partition);
                }
                let bytes = encode_value(&*rec).expect("a transfer record encodes");
                self.records.insert(h, bytes);
            }
            Storage::ReturnFlow(StorageOp::DropTransfer { manifest }) => {
                self.records.remove(&manifest);
                self.data.retain(|(h, _), _| *h != manifest);
                self.receipts.retain(|(h, _), _| *h != manifest);
                self.attestations.retain(|(h, _), _| *h != manifest);
            }
            Storage::ReturnFlow(StorageOp::PutReceipt { manifest, receipt }) => {
                assert_eq!(receipt.manifest, manifest);
                self.receipts.insert((manifest, receipt.region), receipt);
            }
            Storage::ReturnFlow(StorageOp::PutAttestation {
                manifest,
                attestation,
            }) => {
                assert_eq!(attestation.attestation.manifest, manifest);
                // Overwrites, like the node's store: a node restarted before its own
                // attestation was restored may sign it again (counted once all the same).
                let region = attestation.attestation.region;
                self.attestations.insert((manifest, region), attestation);
            }
            Storage::Catalog(CatalogStorageOp::AppendLog {
                index,
                update,
                record,
            }) => {
                assert_eq!(
                    index,
                    self.catalog_log.len() as u64 + 1,
                    "log appends are contiguous"
                );
                let origin = update.update.origin.clone();
                let (held, catalog) = self
                    .catalogs
                    .entry(origin.clone())
                    .or_insert_with(|| (OriginRecord::default(), DepartmentCatalog::new(origin)));
                assert_eq!(
                    catalog.apply(&update.update),
                    Ok(Applied::Advanced),
                    "the log's versions apply in order"
                );
                assert_eq!(record.seq, catalog.seq);
                *held = record;
                self.catalog_log.push(update);
            }
            // Not a write: the net answers it (`Net::deliver_outputs`).
            Storage::Catalog(CatalogStorageOp::ReadLog { .. }) => {}
            Storage::Revocation(r) => self.revocations.push(r),
            Storage::Share(ShareStorageOp::PutCase(case)) => {
                self.share_cases.insert(case.request.id(), *case);
            }
            Storage::Share(ShareStorageOp::PutTransit(act)) => {
                self.share_transit.insert(act.id(), (*act).clone());
            }
            Storage::Share(ShareStorageOp::DropTransit { act }) => {
                self.share_transit.remove(&act);
            }
            Storage::Share(ShareStorageOp::PutRights(act)) => {
                let key = (act.body.department.clone(), act.body.issuer);
                self.share_rights.insert(key, (*act).clone());
            }
            Storage::Share(ShareStorageOp::PutReturnedCorrection(c)) => {
                self.share_returned.insert(c.request.id(), *c);
            }
            Storage::Share(ShareStorageOp::PutSupervised(case)) => {
                self.share_supervised.insert(case.request.id(), *case);
            }
            Storage::Review(ReviewStorageOp::PutSubmission(s)) => {
                self.review_submissions.insert(s.id, *s);
            }
            Storage::Review(ReviewStorageOp::PutDutyChange(d)) => {
                self.review_duty_changes.insert(d.id, *d);
            }
            Storage::Catalog(CatalogStorageOp::PutWatermark {
                sender,
                log_id,
                watermark,
            }) => {
                self.watermarks.insert(sender, (log_id, watermark));
            }
        }
    }

    /// The group ranges stored for each partition of `manifest`'s record (what a shell hands
    /// `Endpoint::handle_content_present` after the record's `PutTransfer`).
    pub fn present(&self, manifest: &Hash) -> Vec<(RegionCode, Vec<Range<u64>>)> {
        self.data
            .iter()
            .filter(|((h, _), p)| h == manifest && !p.have.is_empty())
            .map(|((_, r), p)| (*r, runs(&p.have)))
            .collect()
    }

    /// A persisted transfer record, decoded.
    pub fn record(&self, manifest: &Hash) -> Option<TransferRecord> {
        let bytes = self.records.get(manifest)?;
        Some(decode_stored(bytes).expect("a stored transfer record decodes"))
    }

    /// Everything persisted, as [`backflow_protocol::Endpoint::new`] takes it back.
    pub fn saved(&self) -> Saved {
        let transfers = self
            .records
            .keys()
            .map(|h| SavedTransfer {
                record: self.record(h).unwrap(),
                stored: self
                    .data
                    .iter()
                    .filter(|((m, _), _)| m == h)
                    .map(|((_, r), p)| (*r, runs(&p.have)))
                    .collect(),
                receipts: self
                    .receipts
                    .iter()
                    .filter(|((m, _), _)| m == h)
                    .map(|(_, r)| r.clone())
                    .collect(),
                attestations: self
                    .attestations
                    .iter()
                    .filter(|((m, _), _)| m == h)
                    .map(|(_, a)| Arc::clone(a))
                    .collect(),
            })
            .collect();
        Saved {
            service_usage: self.service_usage.iter().map(|(r, u)| (*r, *u)).collect(),
            transfers,
            catalog: SavedCatalog {
                log_len: self.catalog_log.len() as u64,
                origins: self
                    .catalogs
                    .iter()
                    .map(|(origin, (record, catalog))| SavedOrigin {
                        origin: origin.clone(),
                        record: *record,
                        entries: SavedEntries::Local(catalog.entries.values().cloned().collect()),
                    })
                    .collect(),
            },
            catalog_watermarks: self
                .watermarks
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
            ledger_witnessed: self
                .ledger_witnessed
                .iter()
                .map(|(c, h)| (*c, h.clone()))
                .collect(),
            ledger_acknowledged: self.ledger_acknowledged.clone(),
            ledger_parent_head: self.ledger_parent_head.clone(),
        }
    }
}

/// The contiguous runs of a set of groups.
pub fn runs(groups: &BTreeSet<u64>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &g in groups {
        match out.last_mut() {
            Some(r) if r.end == g => r.end = g + 1,
            _ => out.push(g..g + 1),
        }
    }
    out
}
