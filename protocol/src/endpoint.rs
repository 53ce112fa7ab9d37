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
use ed25519_dalek::VerifyingKey;

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

mod catalog_search;
mod departments;
mod grant_delivery;
mod service_calls;
mod trust_in_force;

use departments::catalog_attribute;
pub use departments::CatalogReviewFailure;
pub use grant_delivery::{DeliveryDial, DeliveryFailure, DELIVERY_RENEW_BEFORE_MS};

use crate::catalog_review::{
    CatalogReview, DutyChange, ReviewEvent, ReviewOutput, ReviewStorageOp, Submission,
};
use crate::chunk::{ChunkError, ChunkFrame};
use crate::manifest::{DatasetId, Hash, PartitionEntry, SignedManifest};
use crate::receipt::Receipt;
use crate::return_flow::{
    self, DataRouting, ReturnFlow, ReturnFlowConfig, ReturnFlowError, ServePart, StorageOp,
    TransferRecord,
};
use crate::revocation_gossip::messages_for;
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
    /// Catalog submissions ([`ReviewStorageOp::PutSubmission`]).
    pub review_submissions: Vec<Submission>,
    /// Duty changes ([`ReviewStorageOp::PutDutyChange`]).
    pub review_duty_changes: Vec<DutyChange>,
    /// Service interface calls counted per grant ([`ServiceStorageOp::PutUsage`]).
    pub service_usage: Vec<(Hash, ServiceUsage)>,
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

/// What the transport proved about a peer before any frame: the ed25519 key its handshake
/// authenticated and its transport-level id (e.g. a libp2p peer id's bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuth {
    pub key: [u8; 32],
    pub peer_id: Vec<u8>,
}

/// Why a peer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("certificate chain does not verify: {0}")]
    Chain(#[from] CertError),
    #[error("certificate for {region} belongs to another peer (key or peer id differ)")]
    WrongPeer { region: RegionCode },
    #[error("peer claims this node's own region {region}")]
    OwnRegion { region: RegionCode },
    #[error("region {region} is neither an ancestor nor a descendant of {me}")]
    NotInLine { region: RegionCode, me: RegionCode },
    #[error("too many peers (limit {max})")]
    TooManyPeers { max: usize },
    #[error("a hello arrived before the transport reported the connection")]
    NotConnected,
    #[error("no valid hello within {ms} ms of connecting")]
    HelloTimeout { ms: u64 },
}

/// The verdict on one run of a received chunk frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunVerdict {
    /// Verified and durably stored.
    Stored,
    /// Did not verify: `group` is the one to blame (the first mismatching group where the
    /// codec knows it, else the run's first).
    Rejected { group: u64, reason: String },
}

impl RunVerdict {
    /// The verdict for a run of `groups` that failed with `error`.
    pub fn rejected(groups: &Range<u64>, error: &ChunkError) -> RunVerdict {
        let group = match error {
            ChunkError::HashMismatch { group } => *group,
            _ => groups.start,
        };
        RunVerdict::Rejected {
            group,
            reason: error.to_string(),
        }
    }
}

/// The runs of a received chunk frame this node is receiving, each with the entry it must
/// verify against; every other run of the frame is to be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// The sender's verified region.
    pub from: RegionCode,
    pub runs: Vec<PlannedRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    /// Index of the run in the frame.
    pub index: usize,
    pub entry: PartitionEntry,
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
        let mut service = ServiceInterface::new(region);
        service.restore(saved.service_usage);
        let mut review = CatalogReview::default();
        review.restore(saved.review_submissions, saved.review_duty_changes);
        let mut ep = Endpoint {
            trust,
            revocations,
            rf: ReturnFlow::new(rf_config),
            cs,
            share,
            review,
            search: CatalogSearch::new(region),
            service,
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

    /// A transport connection to `peer` is up and authenticated `auth`. The shell sends
    /// [`Self::hello`] on it; the peer is admitted when its own hello verifies.
    /// A peer not admitted within [`HELLO_MS_MAX`] is refused and disconnected.
    pub fn handle_connected(&mut self, now: UnixMs, peer: P, auth: PeerAuth) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= PEERS_MAX {
            self.refuse(peer, AdmissionError::TooManyPeers { max: PEERS_MAX });
            return;
        }
        match self.peers.get_mut(&peer) {
            // Another connection of the same transport identity: same key, same admission.
            Some(p) if p.auth == auth => {}
            Some(p) => {
                p.auth = auth;
                p.chain.clear();
                p.not_after = now.plus_ms(HELLO_MS_MAX);
                if let Some(r) = p.region.take() {
                    self.unmap(peer, r);
                }
            }
            None => {
                self.peers.insert(
                    peer,
                    Peer {
                        auth,
                        region: None,
                        chain: Vec::new(),
                        not_after: now.plus_ms(HELLO_MS_MAX),
                        by_grant: false,
                    },
                );
            }
        }
    }

    /// Every connection to `peer` is gone.
    pub fn handle_disconnected(&mut self, peer: P) {
        if let Some(Peer {
            region: Some(r), ..
        }) = self.peers.remove(&peer)
        {
            self.unmap(peer, r);
        }
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
            Message::Revocations(m) => {
                for r in m.revocations {
                    // A rejected one is reported as an event; the others still apply.
                    let _ = self.learn_revocation(now, &r, Some(from));
                }
            }
        }
        None
    }

    fn handle_hello(&mut self, now: UnixMs, peer: P, hello: Hello) {
        match self.admit(now, &peer, &hello) {
            Ok((region, not_after, by_grant)) => {
                let p = self.peers.get_mut(&peer).expect("admit checked the peer");
                p.chain = hello.chain;
                p.not_after = not_after;
                p.by_grant = by_grant;
                if let Some(old) = p.region.replace(region) {
                    if old != region {
                        self.unmap(peer, old);
                    }
                }
                self.by_region.insert(region, peer);
                self.rf.handle_peer_admitted(now, region);
                self.cs.handle_peer_admitted(now, region);
                self.out
                    .push_back(Output::Event(Event::PeerAdmitted { peer, region }));
                self.service.handle_connected(region);
                if by_grant {
                    return;
                }
                self.share.handle_reachable(region, true);
                self.search.handle_reachable(region, true);
                // What it may have missed while apart: every revocation in its line.
                for msg in messages_for(self.revocations.values(), region) {
                    self.out.push_back(Output::Send {
                        to: region,
                        peer: Some(peer),
                        msg: Message::Revocations(msg),
                    });
                }
            }
            Err(error) => self.refuse(peer, error),
        }
    }

    /// Verifies a peer's chain, its binding to the transport and its place in the tree.
    fn admit(
        &mut self,
        now: UnixMs,
        peer: &P,
        hello: &Hello,
    ) -> Result<(RegionCode, UnixMs, bool), AdmissionError> {
        let auth = &self
            .peers
            .get(peer)
            .ok_or(AdmissionError::NotConnected)?
            .auth;
        let id = self.trust.verify_chain(&hello.chain, now)?;
        let region = id.region;
        if id.key.to_bytes() != auth.key || (!id.peer_id.is_empty() && id.peer_id != auth.peer_id) {
            return Err(AdmissionError::WrongPeer { region });
        }
        let me = self.rf.region();
        if region == me {
            return Err(AdmissionError::OwnRegion { region });
        }
        if me.contains(region) || region.contains(me) {
            return Ok((region, id.not_after, false));
        }
        // Outside the tree only the other party of a grant being delivered (Art. 22).
        if self.is_delivery_peer(now, region) {
            return Ok((region, id.not_after, true));
        }
        Err(AdmissionError::NotInLine { region, me })
    }

    fn refuse(&mut self, peer: P, error: AdmissionError) {
        if let Some(Peer {
            region: Some(r), ..
        }) = self.peers.remove(&peer)
        {
            self.unmap(peer, r);
        }
        self.out
            .push_back(Output::Event(Event::PeerRefused { peer, error }));
        self.out.push_back(Output::Disconnect { peer });
    }

    fn unmap(&mut self, peer: P, region: RegionCode) {
        if self.by_region.get(&region) == Some(&peer) {
            self.by_region.remove(&region);
            // (A region reaches the sharing service only on the tree; removing one that did
            // not is a no-op.)
            self.share.handle_reachable(region, false);
            self.search.handle_reachable(region, false);
        }
    }

    /// A chunk frame from `peer` carrying runs for `regions` (in frame order): which runs to
    /// verify, against which entries. `None`: drop the whole frame (the peer is not admitted,
    /// or no run is one this node is receiving; reported as an event).
    pub fn plan_chunk_frame(
        &mut self,
        peer: P,
        manifest: &Hash,
        regions: impl IntoIterator<Item = RegionCode>,
    ) -> Option<ChunkPlan> {
        let Some(from) = self.region_of(&peer) else {
            self.out
                .push_back(Output::Event(Event::UnadmittedFrame { peer }));
            return None;
        };
        let mut total = 0;
        let runs: Vec<PlannedRun> = regions
            .into_iter()
            .enumerate()
            .filter_map(|(index, region)| {
                total += 1;
                let entry = self.rf.expected_partition(manifest, region)?;
                Some(PlannedRun { index, entry })
            })
            .collect();
        if runs.is_empty() {
            self.out
                .push_back(Output::Event(Event::UnexpectedChunkFrame {
                    from,
                    runs: total,
                }));
            return None;
        }
        Some(ChunkPlan { from, runs })
    }

    /// The shell verified (and stored what verified of) the runs of a planned chunk frame:
    /// `(region, groups, verdict)` per run. Stored runs advance their transfer; a rejected run
    /// is asked for again (from another source if its source keeps failing).
    pub fn handle_chunk_verdict(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        manifest: &Hash,
        verdicts: &[(RegionCode, Range<u64>, RunVerdict)],
    ) {
        let stored: Vec<(RegionCode, Range<u64>)> = verdicts
            .iter()
            .filter(|(_, _, v)| *v == RunVerdict::Stored)
            .map(|(r, g, _)| (*r, g.clone()))
            .collect();
        if !stored.is_empty() {
            self.rf.handle_groups_stored(now, from, manifest, &stored);
        }
        for (region, _, v) in verdicts {
            if let RunVerdict::Rejected { group, .. } = v {
                self.rf
                    .handle_group_rejected(now, from, manifest, *region, *group);
            }
        }
    }

    /// The shell found stored `groups` of the partition content `content` damaged (they did
    /// not verify when served or exported; `0..groups` of the partition when the group is not
    /// known) and dropped them from its index: they are no longer served or counted in
    /// receipts, and received transfers fetch them again
    /// ([`ReturnFlow::handle_content_damaged`]).
    pub fn handle_content_damaged(&mut self, now: UnixMs, content: &Hash, groups: Range<u64>) {
        self.rf.handle_content_damaged(now, content, groups);
    }

    /// Whether the transfer of `manifest` waits for [`Self::handle_content_present`]: true
    /// right after a received record's `PutTransfer`, false for restored and published ones
    /// (their stored groups are already known), so the shell looks up storage only when asked.
    pub fn awaits_content(&self, manifest: &Hash) -> bool {
        self.rf.awaits_content(manifest)
    }

    /// The shell applied `Storage::ReturnFlow(StorageOp::PutTransfer(record))` of a received
    /// record (not `published`) for `manifest`, and reports the group ranges it already
    /// stores for each entry's content hash (content-addressed storage: what a previous
    /// version shares with this one), as at restart ([`SavedTransfer::stored`]). They count
    /// as stored and are never requested; the rest is fetched from here on (see
    /// [`ReturnFlow::handle_content_present`]). Call it right after applying that
    /// `PutTransfer`, before polling further outputs — with an empty list if nothing is
    /// stored; a shell that never calls it fetches everything, one tick later.
    pub fn handle_content_present(
        &mut self,
        now: UnixMs,
        manifest: &Hash,
        present: &[(RegionCode, Vec<Range<u64>>)],
    ) {
        self.rf.handle_content_present(now, manifest, present);
    }

    /// The publisher's node starts a dataset version it holds in full (see
    /// [`ReturnFlow::publish`]).
    pub fn publish(
        &mut self,
        now: UnixMs,
        manifest: SignedManifest,
        entries: Vec<PartitionEntry>,
    ) -> Result<Hash, ReturnFlowError> {
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

/// The identity a transport authenticates for a key, as simnet and the tests model it: the
/// key itself and no separate peer id.
pub fn auth_of_key(key: &VerifyingKey) -> PeerAuth {
    PeerAuth {
        key: key.to_bytes(),
        peer_id: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY_MS;
    use ed25519_dalek::SigningKey;

    const NOW: UnixMs = UnixMs(1_767_225_600_000);

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn child(parent: &NodeIdentity, code: &str, n: u8) -> NodeIdentity {
        parent
            .certify_child(
                &key(n),
                Vec::new(),
                NOW.minus_ms(DAY_MS),
                NOW.plus_ms(DAY_MS),
                code.parse().unwrap(),
                u64::from(n),
            )
            .unwrap()
    }

    fn endpoint(identity: &NodeIdentity, anchor: VerifyingKey) -> Endpoint<u32> {
        let config = EndpointConfig {
            identity: identity.clone(),
            trust: TrustStore::new(anchor),
            tuning: Tuning::default(),
            routing: DataRouting::tree(),
            catalog_log_id: 1,
        };
        Endpoint::new(NOW, config, Saved::default()).unwrap().0
    }

    fn events(ep: &mut Endpoint<u32>) -> Vec<Output<u32>> {
        std::iter::from_fn(|| ep.poll_output()).collect()
    }

    #[test]
    fn admits_a_parent_and_refuses_a_sibling_a_stranger_key_and_an_unconnected_hello() {
        let national = NodeIdentity::national(key(1));
        let anchor = national.key.verifying_key();
        let beijing = child(&national, "11", 2);
        let guangdong = child(&national, "44", 3);
        let mut ep = endpoint(&beijing, anchor);
        events(&mut ep);

        // The parent, on the transport that authenticated its key: admitted.
        ep.handle_connected(NOW, 7, auth_of_key(&national.key.verifying_key()));
        ep.handle_message(NOW, 7, Message::Hello(Hello { chain: vec![] }));
        assert_eq!(ep.region_of(&7), Some(RegionCode::NATIONAL));
        assert_eq!(ep.peer_of(RegionCode::NATIONAL), Some(7));

        // A sibling province: refused for its place, and disconnected.
        ep.handle_connected(NOW, 8, auth_of_key(&guangdong.key.verifying_key()));
        ep.handle_message(NOW, 8, guangdong_hello(&guangdong));
        let out = events(&mut ep);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event(Event::PeerRefused {
                peer: 8,
                error: AdmissionError::NotInLine { .. }
            })
        )));
        assert!(out.contains(&Output::Disconnect { peer: 8 }));
        assert_eq!(ep.region_of(&8), None);

        // National's chain presented over a connection that authenticated another key.
        ep.handle_connected(NOW, 9, auth_of_key(&key(99).verifying_key()));
        ep.handle_message(NOW, 9, Message::Hello(Hello { chain: vec![] }));
        assert!(events(&mut ep).iter().any(|o| matches!(
            o,
            Output::Event(Event::PeerRefused {
                peer: 9,
                error: AdmissionError::WrongPeer { .. }
            })
        )));
        // The real parent's mapping is untouched by the impostor.
        assert_eq!(ep.peer_of(RegionCode::NATIONAL), Some(7));

        // A hello with no connection behind it.
        ep.handle_message(NOW, 10, Message::Hello(Hello { chain: vec![] }));
        assert!(events(&mut ep).iter().any(|o| matches!(
            o,
            Output::Event(Event::PeerRefused {
                peer: 10,
                error: AdmissionError::NotConnected
            })
        )));

        // Frames from a refused peer never reach a machine.
        ep.handle_message(
            NOW,
            8,
            Message::Catalog(crate::catalog_sync::CatalogMsg::Probe { log_id: 1 }),
        );
        assert_eq!(
            events(&mut ep),
            vec![Output::Event(Event::UnadmittedFrame { peer: 8 })]
        );

        // Gone: outputs for its region name no peer.
        ep.handle_disconnected(7);
        assert_eq!(ep.peer_of(RegionCode::NATIONAL), None);
    }

    fn guangdong_hello(id: &NodeIdentity) -> Message {
        Message::Hello(Hello {
            chain: id.chain.clone(),
        })
    }

    #[test]
    fn a_node_whose_chain_does_not_verify_does_not_start() {
        let national = NodeIdentity::national(key(1));
        let beijing = child(&national, "11", 2);
        let config = EndpointConfig {
            identity: beijing,
            trust: TrustStore::new(key(50).verifying_key()),
            tuning: Tuning::default(),
            routing: DataRouting::tree(),
            catalog_log_id: 1,
        };
        assert!(matches!(
            Endpoint::<u32>::new(NOW, config, Saved::default()),
            Err(EndpointError::OwnChain(_))
        ));
    }
}
