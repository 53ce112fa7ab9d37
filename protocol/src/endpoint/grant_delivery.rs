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
use crate::catalog::SharingMethod;
use crate::manifest::{Hash, PartitionEntry, SignedManifest};
use crate::region_tree::build_manifest;
use crate::return_flow::ReturnFlowError;
use crate::share::{DeliveryRoute, Recipient, ShareAct, ShareRejection, ShareState, UsageRefusal};
use crate::time::UnixMs;
use crate::time::HOUR_MS;

/// Why a delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("no share request {0} at this node")]
    UnknownRequest(String),
    #[error("this node is not the provider's node of request {0}")]
    NotTheProvider(String),
    #[error(
        "request {request} is {state:?}: data is delivered after a grant, once, and again only \
         with the corrected data of an open correction request (Art. 26)"
    )]
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
    #[error(transparent)]
    GrantedData(#[from] UsageRefusal),
    #[error("the renewal of request {0}'s delivery was not recorded: {1}")]
    NotRenewed(String, String),
}

/// A delivery is renewed when its manifest has less than this left and the grant's term of
/// use runs past it: a week, so a requester's node that is down for days still renews in time.
pub const DELIVERY_RENEW_BEFORE_MS: u64 = 7 * 24 * HOUR_MS;
/// Deliveries to renew are looked for at most this often (a day's precision is plenty).
const RENEWAL_CHECK_MS: u64 = HOUR_MS;
/// Kept off the longest manifest validity, so clock skew between the nodes cannot make a
/// renewed manifest look too long.
const RENEWAL_VALIDITY_MARGIN_MS: u64 = HOUR_MS;

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
        // After a grant, once; again only with a correction request's corrected data (Art. 26).
        let versioned = case.delivery.as_ref().is_some_and(|d| d.manifest.is_some());
        let correction = match (case.state, case.open_correction()) {
            (ShareState::Granted, _) => None,
            (ShareState::Delivered, Some(c)) if versioned => Some(c.ordinal),
            (state, _) => {
                return Err(DeliveryFailure::NotGranted {
                    request: short,
                    state,
                })
            }
        };
        if r.requester.region == r.provider.region {
            return Err(DeliveryFailure::SameNode);
        }
        // Nothing is published for a requester whose sharing rights are suspended (Art. 27).
        self.share.check_rights(&r.requester)?;
        let m = &manifest.manifest;
        if m.delivers != Some(*request) || m.scope != r.requester.region {
            return Err(DeliveryFailure::WrongManifest(short));
        }
        // Data granted to this node goes on only with its provider's consent (Art. 25).
        let to = Recipient::Department(r.requester.clone());
        self.check_pass_on(now, &entries, &to)?;
        if let Some(ordinal) = correction {
            // Checked before it is published: a refused act must leave nothing behind.
            let corrected = ShareAct::DeliverCorrection {
                ordinal,
                manifest: manifest.manifest.hash(),
            };
            let mut trial = case.clone();
            let by = crate::share::Party::Provider;
            trial
                .apply(self.share.calendar(), now, by, corrected.clone())
                .map_err(ShareRejection::from)?;
            let hash = self.rf.publish(now, &mut self.trust, manifest, entries)?;
            let identity = self.rf.identity();
            self.share
                .act(now, identity, request, department, corrected)?;
            return Ok(hash);
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

    /// A grant's term of use (使用时限) may outlast what one manifest vouches for (90 days): the
    /// provider's node renews each delivered batch exchange or file download whose manifest
    /// ends within [`DELIVERY_RENEW_BEFORE_MS`] while the term runs on — the same content under
    /// a new version, valid to the term's end or the longest validity — and the requester's
    /// node verifies it again without transferring what it holds. Looked for hourly.
    pub(super) fn renew_deliveries(&mut self, now: UnixMs) {
        if now < self.renewals_due {
            return;
        }
        self.renewals_due = now.plus_ms(RENEWAL_CHECK_MS);
        let me = self.region();
        let due: Vec<(Hash, Hash, UnixMs)> = self
            .share
            .cases()
            .filter(|(_, c)| {
                c.request.provider.region == me
                    && c.request.requester.region != me
                    && c.request.method != SharingMethod::ServiceApi
                    && c.state == ShareState::Delivered
            })
            .filter_map(|(id, c)| Some((*id, c.delivery.as_ref()?.manifest?, c.request.use_until)))
            .filter(|(_, m, use_until)| {
                self.rf.record(m).is_some_and(|r| {
                    let expires = r.manifest.manifest.expires_at;
                    *use_until > expires && now.plus_ms(DELIVERY_RENEW_BEFORE_MS) >= expires
                })
            })
            .collect();
        for (request, manifest, use_until) in due {
            if let Err(e) = self.renew_delivery(now, &request, &manifest, use_until) {
                self.out
                    .push_back(super::Output::Event(super::Event::DeliveryNotRenewed {
                        request,
                        error: e.to_string(),
                    }));
            }
        }
    }

    fn renew_delivery(
        &mut self,
        now: UnixMs,
        request: &Hash,
        manifest: &Hash,
        use_until: UnixMs,
    ) -> Result<(), DeliveryFailure> {
        let short = hex8(request);
        let record = self
            .rf
            .record(manifest)
            .ok_or_else(|| DeliveryFailure::UnknownRequest(short.clone()))?;
        let old = &record.manifest.manifest;
        let longest = self.rf.policy().validity_ms_max - RENEWAL_VALIDITY_MARGIN_MS;
        let entries = record.entries.clone();
        let mut m = build_manifest(
            old.dataset.clone(),
            old.version + 1,
            old.publisher.clone(),
            old.scope,
            now,
            use_until.min(now.plus_ms(longest)),
            Some(*manifest),
            old.schema.clone(),
            &entries,
        )
        .map_err(|e| DeliveryFailure::ReturnFlow(e.into()))?;
        m.delivers = Some(*request);
        let signed = SignedManifest::sign(m, self.rf.identity())
            .map_err(|e| DeliveryFailure::ReturnFlow(e.into()))?;
        let hash = self.rf.publish(now, &mut self.trust, signed, entries)?;
        let identity = self.rf.identity();
        self.share
            .delivery_renewed(now, identity, request, hash)
            .map_err(|e| DeliveryFailure::NotRenewed(short, e.to_string()))?;
        Ok(())
    }

    /// The provider's own copy of a grant's delivery goes once the sharing has ended —
    /// terminated, disposed of, past its term, withdrawn or refused (Art. 27): nothing of it
    /// is served again; the case keeps the record. (The requester's copy goes with its
    /// disposal, [`Endpoint::share_act`].)
    pub(super) fn drop_ended_delivery(&mut self, request: &Hash, state: ShareState) {
        use ShareState as S;
        if !matches!(
            state,
            S::Terminated | S::Disposed | S::Expired | S::Withdrawn | S::Refused
        ) {
            return;
        }
        let Some(case) = self.share.case(request) else {
            return;
        };
        if case.request.provider.region != self.region() {
            return;
        }
        if let Some(m) = case.delivery.as_ref().and_then(|d| d.manifest) {
            self.rf.drop_delivery(&m);
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
