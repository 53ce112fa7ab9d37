//! A grant's delivery by batch exchange or file download (批量交换 / 文件下载, Art. 22): the
//! provider's node publishes the granted data as a delivery manifest addressed to the
//! requester's region only ([`crate::manifest::Manifest::delivers`]); the grant admits the
//! requester's node to connect to the provider's directly, wherever the two sit in the tree,
//! and it fetches and verifies the data over the ordinary data plane (signed manifest,
//! bao-verified groups, signed receipt). No relay carries a byte: nodes between the parties
//! see only the signed acts. Once every byte verifies, the requester's node records the
//! delivery ([`crate::share::ShareActKind::DeliveryVerified`]) and the provider, the parties'
//! lowest common superior and the requester all see the case delivered.

use backflow_topology::RegionCode;

use super::Endpoint;
use crate::manifest::{Hash, PartitionEntry, SignedManifest};
use crate::return_flow::ReturnFlowError;
use crate::share::{DeliveryRoute, ShareAct, ShareRejection, ShareState};
use crate::time::UnixMs;

/// Why a delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("no share request {0} at this node")]
    UnknownRequest(String),
    #[error("this node is not the provider's node of request {0}")]
    NotTheProvider(String),
    #[error("request {request} is {state:?}: data is delivered after a grant, once")]
    NotGranted { request: String, state: ShareState },
    #[error(
        "the requester is a department of this node too: nothing to transfer (export the data \
         for it, then record the delivery)"
    )]
    SameNode,
    #[error("the manifest is not a delivery of request {0} to its requester's region")]
    WrongManifest(String),
    #[error(transparent)]
    ReturnFlow(#[from] ReturnFlowError),
    #[error(transparent)]
    Share(#[from] ShareRejection),
}

/// A provider node the requester's node should be connected to for a delivery, and the
/// addresses the provider's start named (the shell dials them while not connected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryDial {
    pub region: RegionCode,
    pub addresses: Vec<String>,
}

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// The provider's `department` starts the delivery of `request` (granted, by batch
    /// exchange or file download): `manifest` — signed by this node, delivering `request` to
    /// the requester's region, its one partition already stored — is published, and the
    /// start, naming the manifest and `addresses` (where the requester's node connects), is
    /// signed by the department and sent to the requester. Returns the manifest's hash.
    pub fn deliver_grant(
        &mut self,
        now: UnixMs,
        request: &Hash,
        department: &str,
        manifest: SignedManifest,
        entries: Vec<PartitionEntry>,
        addresses: Vec<String>,
    ) -> Result<Hash, DeliveryFailure> {
        let short = hex8(request);
        let case = self
            .share
            .case(request)
            .ok_or_else(|| DeliveryFailure::UnknownRequest(short.clone()))?;
        let r = &case.request;
        if r.provider.region != self.region() {
            return Err(DeliveryFailure::NotTheProvider(short));
        }
        if case.state != ShareState::Granted {
            return Err(DeliveryFailure::NotGranted {
                request: short,
                state: case.state,
            });
        }
        if r.requester.region == r.provider.region {
            return Err(DeliveryFailure::SameNode);
        }
        let m = &manifest.manifest;
        if m.delivers != Some(*request) || m.scope != r.requester.region {
            return Err(DeliveryFailure::WrongManifest(short));
        }
        let hash = self.rf.publish(now, &mut self.trust, manifest, entries)?;
        let route = DeliveryRoute {
            manifest: Some(hash),
            addresses,
        };
        let identity = self.rf.identity();
        let act = ShareAct::StartDelivery { route: Some(route) };
        self.share.act(now, identity, request, department, act)?;
        Ok(hash)
    }

    /// Providers this node fetches a delivery from, or has service interface calls waiting
    /// for, and is not connected to now: the shell dials them (at its own redial pace).
    pub fn delivery_dials(&self, now: UnixMs) -> Vec<DeliveryDial> {
        self.share
            .delivery_peers(now)
            .filter_map(|(region, route)| {
                let route = route?;
                let wanted = match &route.manifest {
                    Some(manifest) => !self.rf.is_complete(manifest),
                    None => self.service.wants(region),
                };
                (wanted && self.peer_of(region).is_none()).then(|| DeliveryDial {
                    region,
                    addresses: route.addresses.clone(),
                })
            })
            .collect()
    }

    /// Whether `region` is the other party of a grant this node is delivering or fetching,
    /// or of a service interface open between them.
    pub(super) fn is_delivery_peer(&self, now: UnixMs, region: RegionCode) -> bool {
        self.share.delivery_peers(now).any(|(r, _)| r == region)
    }

    /// Records, signed by this node, every delivery whose data is now complete and verified.
    pub(super) fn record_deliveries(&mut self, now: UnixMs) {
        if !std::mem::take(&mut self.deliveries_completed) {
            return;
        }
        let done: Vec<(Hash, Hash)> = self
            .share
            .cases()
            .filter(|(_, c)| c.state == ShareState::Delivering)
            .filter_map(|(id, c)| Some((*id, c.delivery.as_ref()?.manifest?)))
            .filter(|(_, m)| self.rf.is_complete(m))
            .collect();
        let identity = self.rf.identity();
        for (request, manifest) in done {
            // Only the requester's copy qualifies; a provider's own complete record does not.
            let _ = self
                .share
                .delivery_verified(now, identity, &request, manifest);
        }
    }

    /// Closes the connections a finished (or ended) grant no longer admits.
    pub(super) fn close_finished_deliveries(&mut self, now: UnixMs) {
        let stale: Vec<(P, RegionCode)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.by_grant)
            .filter_map(|(peer, p)| Some((*peer, p.region?)))
            .filter(|(_, r)| !self.is_delivery_peer(now, *r))
            .collect();
        for (peer, region) in stale {
            self.refuse(
                peer,
                super::AdmissionError::NotInLine {
                    region,
                    me: self.region(),
                },
            );
        }
    }
}

fn hex8(h: &Hash) -> String {
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
