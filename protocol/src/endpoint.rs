//! [`Endpoint`]: the one thing a shell drives. In the manner of `quinn-proto`'s endpoint it
//! owns everything protocol-side of a node — the [`TrustStore`], the state machines
//! ([`ReturnFlow`], [`CatalogSync`]; later ones plug in beside them), peer admission and the
//! chunk verdict — and the shells (the real node; simnet) only carry out its outputs with
//! their IO: sockets and RocksDB, or simulated links and memory.
//!
//! # Driving it
//! ```text
//! let (mut ep, report) = Endpoint::new(now, config, saved)?;   // restore in one call
//! loop {
//!     // inputs, as they happen:
//!     ep.handle_connected(now, peer, auth);     // transport up; send it ep.hello()
//!     ep.handle_message(now, peer, msg);        // every control frame (Hello included)
//!     let plan = ep.plan_chunk_frame(peer, &manifest, regions);  // a chunk frame arrived:
//!     //   verify plan.runs against their entries (off the event loop if you like), store
//!     //   what verifies, then:
//!     ep.handle_chunk_verdict(now, plan.from, &manifest, &verdicts);
//!     ep.handle_content_present(now, &manifest, &present);  // right after applying the
//!     //   PutTransfer of a received record: the group ranges already stored for its
//!     //   entries' content hashes (what a previous version shares), as at restart
//!     ep.handle_content_damaged(now, &content, groups); // stored content failed verification
//!     //   (on serve or export): dropped from the index, fetched again
//!     ep.handle_disconnected(peer);
//!     ep.revoke(now, region, key);              // this node revokes a descendant's key
//!     ep.submit_revocation(now, &revocation);   // a revocation from a file (e.g. the root's)
//!     ep.handle_timeout(now);                   // when poll_timeout() is due
//!     // outputs, until None:
//!     while let Some(out) = ep.poll_output() { /* send, serve, store, log, disconnect */ }
//!     //   a `Send` whose message `acknowledges_stored_state()` goes only once every storage
//!     //   effect applied before it is durable (the node syncs its write-ahead log first)
//! }
//! ```
//! `P` is the shell's name for a transport peer (a libp2p `PeerId` in the node, a region in
//! simnet). State machines name peers by [`RegionCode`]: the endpoint admits a peer once its
//! [`Hello`] chain verifies, its leaf key is the key the transport authenticated, and its
//! region is an ancestor or a descendant of this node's; from then on that peer's frames reach
//! the machines as coming from its region, and outputs for that region name that peer.
//! Frames from a peer that is not admitted are dropped (and reported).
//!
//! # Trust stays in force
//! Admission is not once per connection. Every admitted peer's chain is checked again when a
//! revocation arrives and when the chain's earliest certificate expires ([`Self::poll_timeout`]
//! includes that instant); a peer whose chain no longer verifies is refused and disconnected
//! like one that never did, and its later hellos fail admission. Revocations spread as
//! [`crate::revocation_gossip`] says, and are persisted ([`Storage::Revocation`]) before they
//! are passed on.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use backflow_topology::RegionCode;

use crate::attestation::SignedAttestation;
use crate::calendar::WorkingCalendar;
use crate::catalog::{CatalogOrigin, SignedCatalogUpdate};
use crate::catalog_search::{CatalogSearch, SearchEvent, SearchOutput};
use crate::catalog_sync::{
    CatalogEvent, CatalogOutput, CatalogStorageOp, CatalogSync, CatalogSyncConfig,
    CatalogSyncError, SavedCatalog,
};
use crate::cert::{CertChain, CertError, NodeIdentity, Revocation, TrustStore};
use crate::service_interface::{
    ServiceEvent, ServiceInterface, ServiceOutput, ServiceStorageOp, ServiceUsage,
};

mod admission;
mod catalog_search;
mod data_path;
mod departments;
mod grant_delivery;
mod ledger_inspection;
mod ledger_witness;
mod pass_on;
mod returned_corrections;
mod service_calls;
mod trust_in_force;

pub use admission::{auth_of_key, AdmissionError, PeerAuth};
pub use data_path::{ChunkPlan, PlannedRun, RunVerdict};
use departments::catalog_attribute;
pub use departments::CatalogReviewFailure;
pub use grant_delivery::{DeliveryDial, DeliveryFailure, DELIVERY_RENEW_BEFORE_MS};

use crate::catalog_review::{
    CatalogReview, DutyChange, ReviewEvent, ReviewOutput, ReviewStorageOp, Submission,
};
use crate::chunk::ChunkFrame;
use crate::ledger::head::WitnessedHead;
use crate::ledger::witnessing::{LedgerEvent, LedgerStorageOp, Witnessing};
use crate::manifest::{DatasetId, Hash, PartitionEntry, SignedManifest};
use crate::receipt::Receipt;
use crate::return_flow::{
    self, DataRouting, ReturnFlow, ReturnFlowConfig, ReturnFlowError, ServePart, StorageOp,
    TransferRecord,
};
use crate::share::{
    ShareCase, ShareEvent, ShareOutput, ShareService, ShareStorageOp, SignedShareAct,
};
use crate::time::UnixMs;
use crate::tuning::{Tuning, TuningError};
use crate::wire::{Hello, Message};

/// Peers tracked at once (connected, admitted or not). A node talks to its ancestors and its
/// descendants; the largest subtree of direct children is a county's ~100 townships, and
/// skip-level fallback adds grandchildren. Beyond this, new connections are refused rather
/// than letting a flood of dials grow the table without bound.
pub const PEERS_MAX: usize = 16_384;
/// A connected peer must pass admission (its `Hello`) within this long, or it is refused and
/// disconnected: a connection that never introduces itself holds a slot of `PEERS_MAX` and a
/// transport connection for nothing. An honest hello is the first frame on a connection, sent
/// right after the transport handshake, so seconds are ample even on a slow link.
pub const HELLO_MS_MAX: u64 = 10_000;

/// How a node is set up; the same for the real node and a simulated one.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub identity: NodeIdentity,
    /// The trust anchor and what is already known (revocations); the endpoint owns it from here.
    pub trust: TrustStore,
    pub tuning: Tuning,
    /// Data-plane routing, the same on every node (default: the strict region tree).
    pub routing: DataRouting,
    /// This node's catalog log id (fresh when the log is created; persisted with it).
    pub catalog_log_id: u64,
}

/// What the shell persisted, handed back in one piece at start (or after a crash).
#[derive(Clone, Debug, Default)]
pub struct Saved {
    pub transfers: Vec<SavedTransfer>,
    /// The catalog as persisted from [`CatalogStorageOp::AppendLog`]: the log's length and
    /// every department's record and entries (this node's own departments' whole, others'
    /// ids); the log's entries stay in storage ([`CatalogStorageOp::ReadLog`]).
    pub catalog: SavedCatalog,
    /// (sender, log id, watermark) as persisted by [`CatalogStorageOp::PutWatermark`].
    pub catalog_watermarks: Vec<(RegionCode, u64, u64)>,
    /// Revocations as persisted by [`Storage::Revocation`] (verified before they were).
    pub revocations: Vec<Revocation>,
    /// Share requests this node is a party to ([`ShareStorageOp::PutCase`]).
    pub share_cases: Vec<ShareCase>,
    /// Share acts held for forwarding ([`ShareStorageOp::PutTransit`], not yet dropped).
    pub share_transit: Vec<SignedShareAct>,
    /// Supervisory copies of cases ([`ShareStorageOp::PutSupervised`]).
    pub share_supervised: Vec<ShareCase>,
    /// Acts in force on departments' sharing rights ([`ShareStorageOp::PutRights`]).
    pub share_rights: Vec<crate::share::SignedRightsAct>,
    /// Correction requests against returned data ([`ShareStorageOp::PutReturnedCorrection`]).
    pub share_returned: Vec<crate::share::ReturnedCorrection>,
    /// Catalog submissions ([`ReviewStorageOp::PutSubmission`]).
    pub review_submissions: Vec<Submission>,
    /// Duty changes ([`ReviewStorageOp::PutDutyChange`]).
    pub review_duty_changes: Vec<DutyChange>,
    /// Service interface calls counted per grant ([`ServiceStorageOp::PutUsage`]).
    pub service_usage: Vec<(Hash, ServiceUsage)>,
    /// The last head witnessed for each child ([`LedgerStorageOp::PutWitnessed`]).
    pub ledger_witnessed: Vec<(RegionCode, WitnessedHead)>,
    /// The last of this node's heads its parent countersigned
    /// ([`LedgerStorageOp::PutAcknowledged`]).
    pub ledger_acknowledged: Option<WitnessedHead>,
    /// The parent's own newest head this node checked ([`LedgerStorageOp::PutParentHead`]).
    pub ledger_parent_head: Option<crate::ledger::head::SignedTreeHead>,
}

/// One persisted transfer: its record ([`StorageOp::PutTransfer`]), the group ranges of each
/// partition found in storage, the descendants' receipts ([`StorageOp::PutReceipt`]) and the
/// delivery attestations ([`StorageOp::PutAttestation`]).
#[derive(Clone, Debug)]
pub struct SavedTransfer {
    pub record: TransferRecord,
    pub stored: Vec<(RegionCode, Vec<Range<u64>>)>,
    pub receipts: Vec<Receipt>,
    pub attestations: Vec<Arc<SignedAttestation>>,
}

/// What [`Endpoint::new`] made of [`Saved`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestoreReport {
    pub transfers: usize,
    pub receipts: usize,
    /// Receipts that no longer fit their transfer (e.g. a newer version superseded it).
    pub receipts_skipped: usize,
    pub attestations: usize,
    /// Attestations that no longer fit their transfer.
    pub attestations_skipped: usize,
    /// Transfers that could not be restored: which dataset and why.
    pub failed: Vec<(DatasetId, ReturnFlowError)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("this node's certificate chain does not verify: {0}")]
    OwnChain(CertError),
    #[error("this node's certificate is for {region} with another key")]
    OwnKey { region: RegionCode },
    #[error("the stored catalog log does not replay: {0}")]
    Catalog(#[from] CatalogSyncError),
    #[error(transparent)]
    Tuning(#[from] TuningError),
    #[error("the stored revocations do not load: {0}")]
    Revocations(CertError),
}
/// Storage effects of all machines. Apply them in order, durably, before acting on later
/// outputs (e.g. before sending anything that acknowledges them).
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    ReturnFlow(StorageOp),
    Catalog(CatalogStorageOp),
    /// A revocation this node accepted: persist it (it is passed on only after this).
    Revocation(Revocation),
    Share(ShareStorageOp),
    Review(ReviewStorageOp),
    Service(ServiceStorageOp),
    /// The compliance ledger's witnessing ([`crate::ledger::witnessing`]).
    Ledger(LedgerStorageOp),
}

/// Observable progress, for logs, metrics, the HTTP API and simnet statistics.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<P> {
    ReturnFlow(return_flow::Event),
    Catalog(CatalogEvent),
    Share(ShareEvent),
    Review(ReviewEvent),
    Search(SearchEvent),
    Service(ServiceEvent),
    Ledger(LedgerEvent),
    PeerAdmitted {
        peer: P,
        region: RegionCode,
    },
    PeerRefused {
        peer: P,
        error: AdmissionError,
    },
    /// A frame from a peer that is not admitted (no hello yet, or refused) was dropped.
    UnadmittedFrame {
        peer: P,
    },
    /// A chunk frame held no run this node is receiving (late, duplicate or unasked).
    UnexpectedChunkFrame {
        from: RegionCode,
        runs: usize,
    },
    /// A revocation was accepted (issued here, submitted, or heard from `from`).
    RevocationApplied {
        subject: RegionCode,
        key: [u8; 32],
        from: Option<RegionCode>,
    },
    /// A revocation from `from` did not verify; it is neither applied nor passed on.
    RevocationRejected {
        from: RegionCode,
        subject: RegionCode,
        error: CertError,
    },
    /// This node's own chain no longer verifies (its key or an ancestor's was revoked, or a
    /// certificate expired): peers refuse it until it has a new certificate.
    OwnChainInvalid {
        error: CertError,
    },
    /// A delivery whose manifest nears its end could not be renewed (retried hourly).
    DeliveryNotRenewed {
        request: Hash,
        error: String,
    },
}

/// Everything the endpoint asks its shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<P> {
    /// Send a control frame to `to` over `peer`, its admitted connection. `None`: no admitted
    /// connection to that region now; the protocol retries, so dropping it is correct (a shell
    /// that can connect on demand, like simnet's, may connect and send).
    Send {
        to: RegionCode,
        peer: Option<P>,
        msg: Message,
    },
    /// Read each part's groups, encode them and send them to `to` as one chunk frame, the
    /// parts in this order (see [`return_flow::Output::ServeChunks`]).
    ServeChunks {
        to: RegionCode,
        peer: Option<P>,
        manifest: Hash,
        parts: Vec<ServePart>,
    },
    /// Close every connection to `peer` (it was refused).
    Disconnect {
        peer: P,
    },
    Storage(Storage),
    Event(Event<P>),
}

#[derive(Clone, Debug)]
struct Peer {
    auth: PeerAuth,
    region: Option<RegionCode>,
    /// The chain it was admitted with, checked again on every revocation and at `not_after`.
    chain: CertChain,
    /// When the admitted chain's earliest certificate expires; before admission, the
    /// deadline for its hello ([`HELLO_MS_MAX`] after it connected).
    not_after: UnixMs,
    /// Admitted outside the tree, for a grant's delivery only ([`grant_delivery`]): only its
    /// return-flow and chunk frames are taken, and no share act is routed through it.
    by_grant: bool,
}

/// Why this node could not revoke a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("no key given for {region}, and no peer of that region is connected to take it from")]
    NoKnownKey { region: RegionCode },
}

/// One node's protocol side. See the module docs.
#[derive(Debug)]
pub struct Endpoint<P> {
    trust: TrustStore,
    /// Every revocation accepted, by revoked key: passed to peers in line with it.
    revocations: BTreeMap<[u8; 32], Revocation>,
    rf: ReturnFlow,
    cs: CatalogSync,
    share: ShareService,
    review: CatalogReview,
    search: CatalogSearch,
    service: ServiceInterface,
    /// Ledger heads witnessed for children, and this node's own acknowledged by its parent.
    witnessing: Witnessing,
    /// Ledger inspections this node asked for and awaits ([`crate::ledger::inspection`]).
    inspections: crate::ledger::inspection::Inspections,
    peers: BTreeMap<P, Peer>,
    by_region: BTreeMap<RegionCode, P>,
    out: VecDeque<Output<P>>,
    /// A delivery's transfer completed here: record it at the next [`Self::handle_timeout`]
    /// (due at once).
    deliveries_completed: bool,
    /// When deliveries whose manifests near their end are next looked for, to renew
    /// ([`grant_delivery`]).
    renewals_due: UnixMs,
}

impl<P: Copy + Ord + Debug> Endpoint<P> {
    /// Starts a node's protocol side: checks its own chain against the anchor (no peer would
    /// accept it otherwise) and resumes everything in `saved`.
    pub fn new(
        now: UnixMs,
        config: EndpointConfig,
        saved: Saved,
    ) -> Result<(Endpoint<P>, RestoreReport), EndpointError> {
        let EndpointConfig {
            identity,
            mut trust,
            tuning,
            routing,
            catalog_log_id,
        } = config;
        tuning.validate()?;
        // Storage is trusted (each was verified before it was persisted): no signature check,
        // and revocations apply before this node's own chain is checked — a node whose key was
        // revoked does not start.
        let mut revocations = BTreeMap::new();
        for r in saved.revocations {
            trust.revoke(&r.key).map_err(EndpointError::Revocations)?;
            revocations.insert(r.key.to_bytes(), r);
        }
        let me = trust
            .verify_chain(&identity.chain, now)
            .map_err(EndpointError::OwnChain)?;
        if me.region != identity.region || me.key != identity.key.verifying_key() {
            return Err(EndpointError::OwnKey { region: me.region });
        }
        let region = identity.region;
        let mut rf_config = ReturnFlowConfig::new(identity);
        rf_config.retry_ms = tuning.retry_ms;
        rf_config.source_silence_ms_max = tuning.source_silence_ms_max;
        rf_config.groups_in_flight_max = tuning.groups_in_flight_max;
        rf_config.receipt_interval_ms = tuning.receipt_interval_ms;
        rf_config.routing = routing;
        let mut cs_config = CatalogSyncConfig::new(region, catalog_log_id);
        cs_config.retry_ms = tuning.retry_ms;
        cs_config.upstream_silence_ms_max = tuning.source_silence_ms_max;
        cs_config.versions_per_origin_max = tuning.catalog_versions_per_origin_max;
        cs_config.origin_bytes_max = tuning.catalog_origin_bytes_max;
        let cs = CatalogSync::restore(now, cs_config, saved.catalog, &saved.catalog_watermarks)?;
        let mut share = ShareService::new(region, WorkingCalendar::official(), tuning.retry_ms);
        share.restore(
            now,
            saved.share_cases,
            saved.share_transit,
            saved.share_supervised,
        );
        share.restore_rights(saved.share_rights);
        share.restore_returned(saved.share_returned);
        let mut service = ServiceInterface::new(region);
        service.restore(saved.service_usage);
        let mut review = CatalogReview::default();
        review.restore(saved.review_submissions, saved.review_duty_changes);
        let mut witnessing = Witnessing::restore(saved.ledger_witnessed, saved.ledger_acknowledged);
        witnessing.restore_parent_head(saved.ledger_parent_head);
        let mut ep = Endpoint {
            trust,
            revocations,
            rf: ReturnFlow::new(rf_config),
            cs,
            share,
            review,
            search: CatalogSearch::new(region),
            service,
            witnessing,
            inspections: Default::default(),
            peers: BTreeMap::new(),
            by_region: BTreeMap::new(),
            out: VecDeque::new(),
            deliveries_completed: false,
            renewals_due: UnixMs::ZERO,
        };
        let mut report = RestoreReport::default();
        for t in saved.transfers {
            let dataset = t.record.manifest.manifest.dataset_id();
            match ep.rf.restore(now, t.record, &t.stored) {
                Ok(_) => {
                    report.transfers += 1;
                    for r in t.receipts {
                        if ep.rf.restore_receipt(r) {
                            report.receipts += 1;
                        } else {
                            report.receipts_skipped += 1;
                        }
                    }
                    for a in t.attestations {
                        if ep.rf.restore_attestation(a) {
                            report.attestations += 1;
                        } else {
                            report.attestations_skipped += 1;
                        }
                    }
                }
                Err(e) => report.failed.push((dataset, e)),
            }
        }
        Ok((ep, report))
    }

    pub fn region(&self) -> RegionCode {
        self.rf.region()
    }

    /// This node's key and chain (departments' catalog versions are signed with it).
    pub fn identity(&self) -> &NodeIdentity {
        self.rf.identity()
    }

    /// The frame a shell sends first on every new connection (both sides do).
    pub fn hello(&self) -> Message {
        Message::Hello(Hello {
            chain: self.rf.identity().chain.clone(),
        })
    }

    pub fn return_flow(&self) -> &ReturnFlow {
        &self.rf
    }

    pub fn catalog_sync(&self) -> &CatalogSync {
        &self.cs
    }

    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The verified region of `peer`, if admitted.
    pub fn region_of(&self, peer: &P) -> Option<RegionCode> {
        self.peers.get(peer)?.region
    }

    /// The admitted peer that speaks for `region` now.
    pub fn peer_of(&self, region: RegionCode) -> Option<P> {
        self.by_region.get(&region).copied()
    }

    /// Admitted peers and their regions.
    pub fn admitted(&self) -> impl Iterator<Item = (P, RegionCode)> + '_ {
        self.peers
            .iter()
            .filter_map(|(p, s)| s.region.map(|r| (*p, r)))
    }
    /// A control frame from `peer`. A chunk frame that came on the control plane is handed
    /// back: run it through the shell's data path ([`Self::plan_chunk_frame`]).
    pub fn handle_message(&mut self, now: UnixMs, peer: P, msg: Message) -> Option<ChunkFrame> {
        if let Message::Hello(hello) = msg {
            self.handle_hello(now, peer, hello);
            return None;
        }
        let Some(from) = self.region_of(&peer) else {
            self.out
                .push_back(Output::Event(Event::UnadmittedFrame { peer }));
            return None;
        };
        let by_grant = self.peers.get(&peer).is_some_and(|p| p.by_grant);
        if by_grant
            && !matches!(
                msg,
                Message::ReturnFlow(_) | Message::Chunk(_) | Message::Service(_)
            )
        {
            // A delivery's connection carries the delivery (or the service's calls), nothing
            // else.
            self.out
                .push_back(Output::Event(Event::UnadmittedFrame { peer }));
            return None;
        }
        match msg {
            Message::Hello(_) => {}
            Message::ReturnFlow(m) => self.rf.handle_message(now, &mut self.trust, from, m),
            Message::Catalog(m) => self.cs.handle_message(now, &mut self.trust, from, m),
            Message::Chunk(frame) => return Some(frame),
            Message::Share(m) => {
                let cs = &self.cs;
                let lookup = |origin: &CatalogOrigin, id: &str| catalog_attribute(cs, origin, id);
                let identity = self.rf.identity();
                self.share
                    .handle_message(now, &mut self.trust, identity, from, m, &lookup);
            }
            Message::Search(m) => self.search.handle_message(now, from, m),
            Message::Service(m) => self.handle_service_message(now, from, m),
            Message::Ledger(m) => self.handle_ledger_message(now, peer, from, m),
            Message::Revocations(m) => {
                for r in m.revocations {
                    // A rejected one is reported as an event; the others still apply.
                    let _ = self.learn_revocation(now, &r, Some(from));
                }
            }
        }
        None
    }
    /// The publisher's node starts a dataset version it holds in full (see
    /// [`ReturnFlow::publish`]); data granted to this node goes only where the grant's
    /// provider consented (Art. 25, [`Self::check_pass_on`]: every department of the scope).
    pub fn publish(
        &mut self,
        now: UnixMs,
        manifest: SignedManifest,
        entries: Vec<PartitionEntry>,
    ) -> Result<Hash, ReturnFlowError> {
        let to = crate::share::Recipient::Region(manifest.manifest.scope);
        self.check_pass_on(now, &entries, &to)?;
        self.rf.publish(now, &mut self.trust, manifest, entries)
    }

    /// A department of this node submits a catalog version (see [`CatalogSync::submit`]).
    pub fn submit_catalog(
        &mut self,
        now: UnixMs,
        update: SignedCatalogUpdate,
    ) -> Result<crate::catalog::Applied, CatalogSyncError> {
        self.cs.submit(now, &mut self.trust, update)
    }

    /// Catalog log entries read back from storage, as asked by
    /// [`CatalogStorageOp::ReadLog`] (see [`CatalogSync::handle_log_read`]).
    pub fn handle_catalog_log(
        &mut self,
        now: UnixMs,
        from: u64,
        updates: Vec<Arc<SignedCatalogUpdate>>,
    ) {
        self.cs.handle_log_read(now, from, updates);
    }

    /// Time passed: retransmissions, fallbacks, receipts.
    pub fn handle_timeout(&mut self, now: UnixMs) {
        // An expired certificate is refused like a revoked one; a connection without a
        // hello by its deadline is closed.
        self.recheck_peers(now, true);
        self.rf.handle_tick(now);
        self.cs.handle_tick(now);
        self.share.handle_tick(now);
        self.search.handle_tick(now);
        self.service.handle_tick(now);
        self.review.handle_timeout(now);
        self.record_deliveries(now);
        self.renew_deliveries(now);
        self.close_finished_deliveries(now);
        self.expire_inspections(now);
    }

    /// When [`Self::handle_timeout`] is next due: the machines' timers, and the earliest
    /// expiry of an admitted peer's chain.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        // Admitted peers' chain expiry, and unadmitted peers' hello deadlines.
        let expiry = self
            .peers
            .values()
            .map(|p| p.not_after)
            .min()
            .filter(|t| *t != UnixMs::MAX);
        [
            self.rf.poll_timeout(),
            self.cs.poll_timeout(),
            self.share.poll_timeout(),
            self.search.poll_timeout(),
            self.service.poll_timeout(),
            self.review.poll_timeout(),
            expiry,
            self.deliveries_completed.then_some(UnixMs::ZERO),
            Some(self.renewals_due),
            self.inspections.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to do: the endpoint's own outputs first, then each machine's in turn.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if let Some(o) = self.rf.poll_output() {
            return Some(match o {
                return_flow::Output::Send { to, msg } => Output::Send {
                    to,
                    peer: self.peer_of(to),
                    msg: Message::ReturnFlow(msg),
                },
                return_flow::Output::ServeChunks {
                    to,
                    manifest,
                    parts,
                } => Output::ServeChunks {
                    to,
                    peer: self.peer_of(to),
                    manifest,
                    parts,
                },
                return_flow::Output::Storage(op) => Output::Storage(Storage::ReturnFlow(op)),
                return_flow::Output::Event(e) => {
                    if let return_flow::Event::TransferComplete { manifest } = &e {
                        self.deliveries_completed |= self.rf.is_delivery(manifest);
                    }
                    Output::Event(Event::ReturnFlow(e))
                }
            });
        }
        if let Some(o) = self.cs.poll_output() {
            return Some(match o {
                CatalogOutput::Send { to, msg } => Output::Send {
                    to,
                    peer: self.peer_of(to),
                    msg: Message::Catalog(msg),
                },
                CatalogOutput::Storage(op) => Output::Storage(Storage::Catalog(op)),
                CatalogOutput::Event(e) => Output::Event(Event::Catalog(e)),
            });
        }
        if let Some(o) = self.share.poll_output() {
            if let ShareOutput::Event(ShareEvent::CaseChanged { request, state }) = &o {
                self.drop_ended_delivery(request, *state);
            }
            return Some(match o {
                ShareOutput::Send { to, msg } => Output::Send {
                    to,
                    peer: self.peer_of(to),
                    msg: Message::Share(msg),
                },
                ShareOutput::Storage(op) => Output::Storage(Storage::Share(op)),
                ShareOutput::Event(e) => Output::Event(Event::Share(e)),
            });
        }
        if let Some(o) = self.search.poll_output() {
            return Some(match o {
                SearchOutput::Send { to, msg } => Output::Send {
                    to,
                    peer: self.peer_of(to),
                    msg: Message::Search(msg),
                },
                SearchOutput::Event(e) => Output::Event(Event::Search(e)),
            });
        }
        if let Some(o) = self.service.poll_output() {
            return Some(match o {
                ServiceOutput::Send { to, msg } => Output::Send {
                    to,
                    peer: self.peer_of(to),
                    msg: Message::Service(msg),
                },
                ServiceOutput::Storage(op) => Output::Storage(Storage::Service(op)),
                ServiceOutput::Event(e) => Output::Event(Event::Service(e)),
            });
        }
        Some(match self.review.poll_output()? {
            ReviewOutput::Storage(op) => Output::Storage(Storage::Review(op)),
            ReviewOutput::Event(e) => Output::Event(Event::Review(e)),
        })
    }
}
#[cfg(test)]
mod tests;
