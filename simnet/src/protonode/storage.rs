//! The endpoint's `Storage` effects applied to the node's durable store, and what they tell
//! the rest of the node (content already present, the log read back, share cases' periods).

use backflow_protocol::catalog_review::ReviewStorageOp;
use backflow_protocol::catalog_sync::CatalogStorageOp;
use backflow_protocol::codec::encoded_len;
use backflow_protocol::endpoint::Storage;
use backflow_protocol::ledger::witnessing::LedgerStorageOp;
use backflow_protocol::return_flow::StorageOp;
use backflow_protocol::service_interface::ServiceStorageOp;
use backflow_protocol::share::ShareStorageOp;

use super::ProtoNode;
use crate::engine::{Ctx, Observation};
use crate::protomsg::ProtoMsg;

impl ProtoNode {
    /// Applies one storage effect to the durable store.
    pub(super) fn apply(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, op: Storage) {
        let store = &mut self.store;
        match op {
            Storage::ReturnFlow(StorageOp::PutTransfer(record)) => {
                // Installing a transfer (publish, accepted announce, restore) builds and
                // checks the region tree over its entries and persists the record.
                let per = ctx.costs().transfer_install_cpu_ns_per_partition;
                ctx.charge_cpu_ns(per.saturating_mul(record.entries.len() as u64));
                let hash = record.manifest.manifest.hash();
                // A received record: what is held of its content already (a previous
                // version's unchanged partitions) counts as stored.
                let present = (!record.published).then(|| store.present(&record));
                store.records.insert(hash, record);
                if let (Some(present), Some(ep)) = (present, self.ep.as_mut()) {
                    ep.handle_content_present(self.world.now_ms(ctx.now_us()), &hash, &present);
                }
            }
            Storage::ReturnFlow(StorageOp::PutReceipt { manifest, receipt }) => {
                store
                    .receipts
                    .entry(manifest)
                    .or_default()
                    .insert(receipt.region, receipt);
            }
            Storage::ReturnFlow(StorageOp::PutAttestation {
                manifest,
                attestation,
            }) => {
                store
                    .attestations
                    .entry(manifest)
                    .or_default()
                    .insert(attestation.attestation.region, attestation);
            }
            Storage::ReturnFlow(StorageOp::DropTransfer { manifest }) => {
                if let Some(rec) = store.records.remove(&manifest) {
                    // Content-addressed: content a persisted record still uses (the newer
                    // version's, persisted before this drop) stays.
                    for e in &rec.entries {
                        if !store.content_in_use(e.region) {
                            store.stored.remove(&e.region);
                            store.content.remove(&e.region);
                        }
                    }
                }
                store.receipts.remove(&manifest);
                store.attestations.remove(&manifest);
                self.stored_bytes = store.stored_bytes();
                ctx.observe(Observation::StoredBytes(self.stored_bytes));
            }
            Storage::Catalog(CatalogStorageOp::AppendLog {
                index,
                update,
                record,
            }) => store.catalog.append(index, update, record),
            Storage::Catalog(CatalogStorageOp::ReadLog { from, count_max }) => {
                // A read, answered at once (the writes before it are applied). Reading costs
                // decoding what is read, as receiving it would.
                let updates = store.catalog.read_log(from, count_max);
                let bytes: u64 = updates.iter().map(|u| encoded_len(&**u) as u64).sum();
                let ps = ctx.costs().control_cpu_ps_per_byte;
                ctx.charge_cpu_ns(bytes.saturating_mul(ps) / 1_000);
                ctx.observe(Observation::Note("catalog_log_read"));
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_catalog_log(self.world.now_ms(ctx.now_us()), from, updates);
                }
            }
            Storage::Catalog(CatalogStorageOp::PutWatermark {
                sender,
                log_id,
                watermark,
            }) => {
                store.cat_watermarks.insert(sender, (log_id, watermark));
            }
            Storage::Revocation(r) => store.revocations.push(r),
            Storage::Share(ShareStorageOp::PutRights(act)) => {
                let key = (act.body.department.clone(), act.body.issuer);
                store.share_rights.insert(key, (*act).clone());
            }
            Storage::Share(ShareStorageOp::PutReturnedCorrection(c)) => {
                store.share_returned.insert(c.request.id(), *c);
            }
            Storage::Share(ShareStorageOp::PutCase(case)) => {
                let id = self
                    .share
                    .as_ref()
                    .map_or_else(|| case.request.id(), |a| a.case_id(&case));
                if let Some(actor) = self.share.as_mut() {
                    actor.track_periods(&case, store.share_cases.get(&id));
                }
                store.share_cases.insert(id, *case);
            }
            Storage::Share(ShareStorageOp::PutTransit(act)) => {
                let id = match self.share.as_mut() {
                    Some(actor) => {
                        actor.on_transit_put(&act);
                        actor.act_id(&act)
                    }
                    None => act.id(),
                };
                store.share_transit.insert(id, (*act).clone());
            }
            Storage::Share(ShareStorageOp::DropTransit { act }) => {
                if let Some(actor) = self.share.as_mut() {
                    actor.on_transit_drop(&act);
                }
                store.share_transit.remove(&act);
            }
            Storage::Share(ShareStorageOp::PutSupervised(case)) => {
                let id = self
                    .share
                    .as_ref()
                    .map_or_else(|| case.request.id(), |a| a.case_id(&case));
                store.share_supervised.insert(id, *case);
            }
            Storage::Review(ReviewStorageOp::PutSubmission(s)) => {
                store.review_submissions.insert(s.id, *s);
            }
            Storage::Review(ReviewStorageOp::PutDutyChange(d)) => {
                store.review_duty_changes.insert(d.id, *d);
            }
            Storage::Service(ServiceStorageOp::PutUsage { request, usage }) => {
                store.service_usage.insert(request, usage);
            }
            Storage::Ledger(LedgerStorageOp::PutWitnessed { child, head }) => {
                store.ledger_witnessed.insert(child, head);
            }
            Storage::Ledger(LedgerStorageOp::PutParentHead(head)) => {
                store.ledger_parent_head = Some(head);
            }
            Storage::Ledger(LedgerStorageOp::PutAcknowledged(head)) => {
                store.ledger_acknowledged = Some(head);
            }
        }
    }
}
