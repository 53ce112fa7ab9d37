//! The endpoint's events: counted as notes, turned into the engine's observations (data and
//! receipts complete, catalog versions at national), share events handed to the scenario.

use backflow_protocol::catalog_review::ReviewEvent;
use backflow_protocol::catalog_sync::CatalogEvent;
use backflow_protocol::endpoint::Event;
use backflow_protocol::return_flow;
use backflow_protocol::share::ShareEvent;
use backflow_topology::{Level, RegionCode};

use super::ProtoNode;
use crate::engine::{Ctx, Observation};
use crate::protomsg::ProtoMsg;
use crate::world::CHURN_DEPARTMENT;

impl ProtoNode {
    pub(super) fn on_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: Event<RegionCode>) {
        match e {
            Event::ReturnFlow(e) => self.on_rf_event(ctx, e),
            Event::Catalog(e) => match e {
                CatalogEvent::Applied { origin, .. } => {
                    if let (Some(b), Level::National) = (self.bulk.as_mut(), self.me.level()) {
                        b.applied += 1;
                        let step = (b.expected / 100).max(1);
                        if b.applied.is_multiple_of(step) || b.applied == b.expected {
                            ctx.observe(Observation::CatalogChanges(b.applied));
                        }
                    } else if self.me.level() == Level::National
                        && origin.department == CHURN_DEPARTMENT
                    {
                        self.churn_applied += 1;
                        ctx.observe(Observation::CatalogChanges(self.churn_applied));
                    }
                }
                CatalogEvent::Rejected { .. } => ctx.observe(Observation::Note("catalog_rejected")),
                CatalogEvent::UpstreamChanged { .. } => {
                    ctx.observe(Observation::Note("catalog_upstream_changed"))
                }
                CatalogEvent::UpstreamInSync { .. } => {}
                // simnet's storage loses nothing.
                CatalogEvent::LogUnreadable { .. } => {
                    ctx.observe(Observation::Note("catalog_log_unreadable"))
                }
            },
            Event::PeerAdmitted { .. } => {}
            Event::PeerRefused { .. } => ctx.observe(Observation::Note("peer_refused")),
            Event::UnadmittedFrame { .. } => {
                ctx.observe(Observation::Note("frame_from_unadmitted_peer"))
            }
            Event::UnexpectedChunkFrame { .. } => {
                ctx.observe(Observation::Note("chunk_frame_unexpected"))
            }
            Event::RevocationApplied { .. } => ctx.observe(Observation::Note("revocation_applied")),
            Event::Review(ReviewEvent::Overdue { .. }) => {
                ctx.observe(Observation::Note("catalog_review_overdue"))
            }
            Event::Share(e) => {
                ctx.observe(Observation::Note(match e {
                    ShareEvent::CaseChanged { .. } => "share_case_changed",
                    ShareEvent::Overdue { .. } => "share_overdue",
                    ShareEvent::ActRejected { .. } => "share_act_rejected",
                    ShareEvent::RightsChanged { .. } => "sharing_rights_changed",
                    ShareEvent::RightsRejected { .. } => "sharing_rights_rejected",
                    ShareEvent::ReturnedCorrectionChanged { .. } => "returned_correction_changed",
                }));
                self.on_share_event(ctx, e);
            }
            Event::RevocationRejected { .. } => {
                ctx.observe(Observation::Note("revocation_rejected"))
            }
            Event::OwnChainInvalid { .. } => ctx.observe(Observation::Note("own_chain_invalid")),
            Event::DeliveryNotRenewed { .. } => {
                ctx.observe(Observation::Note("delivery_not_renewed"))
            }
            // No simnet scenario searches the catalog.
            Event::Search(_) => ctx.observe(Observation::Note("catalog_search_event")),
            // No simnet scenario opens a service interface (its requests use batch exchange).
            Event::Service(_) => ctx.observe(Observation::Note("service_interface_event")),
            // No simnet scenario keeps a ledger: its heads are the node's shell's to send.
            Event::Ledger(_) => ctx.observe(Observation::Note("ledger_event")),
        }
    }

    fn on_rf_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: return_flow::Event) {
        use return_flow::Event as E;
        match e {
            E::TransferComplete { .. } => ctx.observe(Observation::DataComplete),
            E::Completeness(r) => {
                let manifests = self.world.manifests.len();
                if self.is_publisher() && manifests == 1 {
                    ctx.observe(Observation::PublisherView {
                        delivered: u64::from(r.regions_delivered),
                        expected: u64::from(r.regions_expected),
                    });
                }
                if r.is_complete() && self.is_publisher() {
                    self.manifests_complete.insert(r.manifest);
                    if self.manifests_complete.len() == manifests {
                        ctx.observe(Observation::ReceiptsComplete);
                    }
                }
            }
            E::ManifestAccepted { .. } | E::PartitionComplete { .. } => {}
            E::ManifestRejected { .. } => ctx.observe(Observation::Note("manifest_rejected")),
            E::SourceChanged { .. } => ctx.observe(Observation::Note("source_changed")),
            E::ChunkRejected { .. } => ctx.observe(Observation::Note("chunk_rejected")),
            // simnet's storage does not rot.
            E::ContentDamaged { .. } => ctx.observe(Observation::Note("content_damaged")),
            E::WantRefused { .. } => ctx.observe(Observation::Note("want_refused")),
            E::ReceiptRejected { .. } => ctx.observe(Observation::Note("receipt_rejected")),
            E::AttestationRejected { .. } => ctx.observe(Observation::Note("attestation_rejected")),
            E::TransferExpired { .. } => ctx.observe(Observation::Note("transfer_expired")),
        }
    }
}
