//! The event loop: one tokio task owning the libp2p swarm and the protocol [`Endpoint`]. It
//! feeds the endpoint what happens — connections, control frames, chunk verdicts from the
//! data plane, commands, the clock — and carries out its outputs: control frames through the
//! per-peer outbox, chunk frames through the data plane, storage through `persist`, events to
//! the log and the counters. Nothing protocol-side is decided here.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use backflow_protocol::catalog::CatalogEntry;
use backflow_protocol::catalog_sync::{CatalogEvent, CatalogStorageOp};
use backflow_protocol::endpoint::{Event, Output, RunVerdict, Storage};
use backflow_protocol::manifest::{DatasetId, Hash, HeldVersion};
use backflow_protocol::outbox::Outbox;
use backflow_protocol::return_flow::{self, StorageOp, TransferRecord};
use backflow_protocol::share::ShareEvent;
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{decode_frame, encode_frame, Message};
use backflow_protocol::Endpoint;
use backflow_topology::RegionCode;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::dataplane::{
    write_chunks, DataPlane, PeerOut, ReceivedChunk, Work, CHUNK_FRAMES_QUEUED_MAX,
};
use crate::handle::{Cmd, DatasetQuery, HeldRecords, NodeStats};
use crate::net::{auth_of_peer, without_peer_id, Behaviour, BehaviourEvent};
use crate::scrub::ScrubState;
use crate::status::{PeerView, RevocationView};
use crate::store::Store;

/// Upstream addresses are dialled again at most this often while not connected.
const REDIAL_INTERVAL_MS: u64 = 2_000;
/// The loop's housekeeping beat (redials, scrub rounds; a clock that jumped).
const LOOP_WAIT_MS_MAX: u64 = 1_000;

pub(crate) struct Runtime {
    pub swarm: Swarm<Behaviour>,
    pub store: Store,
    /// Search of the unified catalog: told how far the catalog log is durable.
    pub search: crate::catalog_search::CatalogSearch,
    /// The catalog log's length as appended (durable at the next `make_durable`).
    pub catalog_log_len: u64,
    /// Searches this node's departments asked, by the protocol's id.
    pub searches: HashMap<u64, crate::handle::SearchReply>,
    /// Service interface calls this node's departments made, by the protocol's id.
    pub service_calls: HashMap<u64, crate::handle::LookupReply>,
    pub ep: Endpoint<PeerId>,
    /// This node's hello frame, encoded once.
    pub hello: Vec<u8>,
    /// Control frames in flight and queued per peer (see [`backflow_protocol::outbox`]).
    pub outbox: Outbox<PeerId, request_response::OutboundRequestId>,
    /// Remote address of each connected peer's latest connection, for `peers`.
    pub addrs: HashMap<PeerId, Multiaddr>,
    /// Upstream addresses (without a peer id) and the peer last connected at each.
    pub upstream: Vec<(Multiaddr, Option<PeerId>)>,
    pub last_redial: Instant,
    /// The persisted transfer records, mirrored (serving, export, content garbage collection).
    pub records: HashMap<Hash, Arc<TransferRecord>>,
    /// The compliance ledger (合规台账, Art. 29): every act stored is logged with it.
    pub ledger: crate::ledger::Ledger,
    /// The last head sent up to be witnessed (size, root) and when (see `ledger_cmds`).
    pub ledger_head_sent: Option<(u64, [u8; 32], Instant)>,
    /// When the parent's own ledger head was last asked for while this node's stood still.
    pub parent_head_asked: Option<Instant>,
    /// Ledger retention (`tuning.ledger_retention_days`) and the last pruning ([`crate::ledger_prune`]).
    pub ledger_retention_ms: u64,
    pub ledger_pruned_at: Option<Instant>,
    /// The last witness alarm recorded per child (the same finding is recorded once).
    pub ledger_alarms: HashMap<RegionCode, String>,
    /// API calls waiting for the answer to this node's ledger inspections, by query id.
    pub inspections_waiting: HashMap<u64, crate::ledger_api::InspectReply>,
    pub data: DataPlane,
    /// Opens data-plane streams.
    pub control: libp2p_stream::Control,
    /// The queue of each admitted peer's data-plane writer task (see [`write_chunks`]).
    pub chunk_out: HashMap<PeerId, PeerOut>,
    /// Accepts inbound data-plane streams; stopped with the node.
    pub accept_task: tokio::task::JoinHandle<()>,
    pub stats: Arc<NodeStats>,
    /// Whether anything was written since the write-ahead log was last synced (see
    /// [`Runtime::make_durable`]).
    pub unsynced: bool,
    /// The background scrub's place ([`crate::scrub`]).
    pub scrub: ScrubState,
    /// Damaged groups dropped lately: later reports of them from older reads are stale.
    pub recent_drops: crate::damage::RecentDrops,
    /// Who may relay through this node, and its reservations upstream ([`crate::relay`]).
    pub relay: crate::relay::RelayState,
}

impl Runtime {
    pub async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut work_rx: mpsc::Receiver<Work>,
    ) -> Result<()> {
        // Housekeeping on a fixed beat, not a sleep created afresh each turn: a node whose
        // API is asked something every half second (a dashboard, a test polling status) once
        // never reached its sleep, so it never redialled a restarted parent.
        let mut beat = tokio::time::interval(Duration::from_millis(LOOP_WAIT_MS_MAX));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // An absolute deadline: recreated each turn, it still fires on time.
            let due = self.next_due();
            tokio::select! {
                ev = futures::StreamExt::select_next_some(&mut self.swarm) => self.on_swarm(ev),
                cmd = cmd_rx.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => break,
                    Some(cmd) => self.on_cmd(cmd),
                },
                Some(work) = work_rx.recv() => self.on_work(work),
                _ = tokio::time::sleep_until(due) => self.ep.handle_timeout(now_ms()),
                _ = beat.tick() => {
                    // Also covers a wall clock that jumped past the endpoint's deadline.
                    self.ep.handle_timeout(now_ms());
                    self.redial();
                    self.scrub_round();
                    self.sign_ledger_head();
                    self.send_ledger_head();
                }
            }
            self.drain();
        }
        info!(region = %self.ep.region(), "node shutting down");
        self.accept_task.abort();
        self.sign_ledger_head();
        // The indexer's copy of the database goes before the node is reported stopped: a
        // process that exits right after (a test, a restart) never has RocksDB torn down
        // under a running thread.
        let search = self.search.clone();
        tokio::task::spawn_blocking(move || search.stop())
            .await
            .map_err(|e| anyhow!("stopping the catalog indexer: {e}"))?;
        self.store.flush()?;
        Ok(())
    }

    /// When the endpoint next has timed work (at the latest one beat from now).
    fn next_due(&self) -> tokio::time::Instant {
        let now = now_ms();
        let ms = self
            .ep
            .poll_timeout()
            .map_or(LOOP_WAIT_MS_MAX, |t| t.since_ms(now).min(LOOP_WAIT_MS_MAX));
        tokio::time::Instant::now() + Duration::from_millis(ms)
    }

    pub fn redial(&mut self) {
        if self.last_redial.elapsed() < Duration::from_millis(REDIAL_INTERVAL_MS) {
            return;
        }
        self.last_redial = Instant::now();
        for (addr, peer) in &self.upstream {
            let connected = peer.is_some_and(|p| self.swarm.is_connected(&p));
            if !connected {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "dial failed");
                }
            }
        }
        self.dial_deliveries();
        self.reserve_relays();
    }

    /// Sends a control frame to `peer`, or queues it while the peer has its fill of requests
    /// in flight (see [`backflow_protocol::outbox`]).
    fn send_control(&mut self, peer: PeerId, bytes: Vec<u8>) {
        let frames = &mut self.swarm.behaviour_mut().frames;
        let dropped = self.outbox.dropped;
        self.outbox
            .offer(peer, bytes, |b| frames.send_request(&peer, b));
        if self.outbox.dropped > dropped {
            self.stats
                .control_frames_dropped
                .fetch_add(self.outbox.dropped - dropped, Ordering::Relaxed);
            debug!(%peer, "control queue full; the oldest queued frame was dropped");
        }
    }

    /// A control request to `peer` ended: the next queued frames go.
    fn control_completed(&mut self, peer: PeerId, id: request_response::OutboundRequestId) {
        let frames = &mut self.swarm.behaviour_mut().frames;
        self.outbox
            .completed(peer, id, |b| frames.send_request(&peer, b));
    }

    /// The data-plane queue to an admitted peer; starts its writer task on first use.
    fn chunk_sender(&mut self, peer: PeerId) -> PeerOut {
        let out = self.chunk_out.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(CHUNK_FRAMES_QUEUED_MAX);
            tokio::spawn(write_chunks(peer, self.control.clone(), rx));
            PeerOut {
                queue: tx,
                serving: Arc::default(),
            }
        });
        out.clone()
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let dialled = without_peer_id(address);
                    for (addr, peer) in &mut self.upstream {
                        if *addr == dialled {
                            *peer = Some(peer_id);
                        }
                    }
                }
                self.addrs
                    .insert(peer_id, endpoint.get_remote_address().clone());
                let Some(auth) = auth_of_peer(&peer_id) else {
                    warn!(peer = %peer_id, "refusing a peer whose id is not an ed25519 key");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                self.ep.handle_connected(now_ms(), peer_id, auth);
                // Both sides introduce themselves; each endpoint admits the other.
                let hello = self.hello.clone();
                self.send_control(peer_id, hello);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                self.stats
                    .connections_closed
                    .fetch_add(1, Ordering::Relaxed);
                if num_established > 0 {
                    debug!(peer = %peer_id, cause = ?cause, "a connection closed; others remain");
                    return;
                }
                self.addrs.remove(&peer_id);
                self.outbox.forget(peer_id);
                // Its writer task ends with its queue.
                self.chunk_out.remove(&peer_id);
                if let Some(region) = self.ep.region_of(&peer_id) {
                    info!(peer = %peer_id, %region, cause = ?cause, "peer disconnected");
                }
                self.ep.handle_disconnected(peer_id);
                self.data.admitted.remove(&peer_id);
                self.relay.admission.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, error = %error, "outgoing connection failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Refusals over a connection limit land here; at debug level, so a flood
                // does not flood the log too.
                debug!(addr = %send_back_addr, error = %error, "incoming connection refused or failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Frames(ev)) => self.on_frames(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(ev)) => self.on_relay_server(ev),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(ev)) => self.on_relay_client(ev),
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.relay_listener_closed(listener_id)
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                debug!(%address, "listening");
                crate::net::listen_addr_added(&mut self.swarm, &address)
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                crate::net::listen_addr_expired(&mut self.swarm, &address)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => {
                debug!(event = ?ev, "identify");
            }
            _ => {}
        }
    }

    fn on_frames(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // Acknowledge at once: the protocol's own acks and retries carry meaning.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .frames
                        .send_response(channel, Vec::new());
                    self.on_frame(peer, &request);
                }
                request_response::Message::Response {
                    response,
                    request_id,
                } => {
                    self.control_completed(peer, request_id);
                    if !response.is_empty() {
                        self.on_frame(peer, &response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.control_completed(peer, request_id);
                debug!(%peer, %error, "request failed; the protocol will retry");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_frame(&mut self, peer: PeerId, bytes: &[u8]) {
        let msg = match decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                warn!(%peer, error = %e, "dropping malformed frame");
                return;
            }
        };
        let now = now_ms();
        self.stats
            .heard_from(self.ep.region(), self.ep.region_of(&peer), now);
        // A chunk frame on the control plane: handled like one on the data plane.
        if let Some(frame) = self.ep.handle_message(now, peer, msg) {
            self.on_chunk(peer, frame.into());
        }
    }

    fn on_chunk(&mut self, peer: PeerId, chunk: ReceivedChunk) {
        let regions = chunk.frame.parts.iter().map(|p| p.region);
        match self
            .ep
            .plan_chunk_frame(peer, &chunk.frame.manifest, regions)
        {
            Some(plan) => self.data.receive(chunk, plan),
            None => crate::chunks::recycle_frame_buf(chunk.buf),
        }
    }

    fn on_work(&mut self, work: Work) {
        match work {
            Work::Chunk { peer, chunk } => self.on_chunk(peer, chunk),
            Work::Verdict {
                from,
                manifest,
                runs,
            } => {
                for (region, groups, verdict) in &runs {
                    match verdict {
                        RunVerdict::Stored => {
                            self.unsynced = true;
                            self.stats
                                .groups_stored
                                .fetch_add(groups.end - groups.start, Ordering::Relaxed);
                        }
                        RunVerdict::Rejected { group, reason } => {
                            self.stats.groups_rejected.fetch_add(1, Ordering::Relaxed);
                            warn!(%from, %region, group, %reason, "chunk frame failed verification");
                        }
                    }
                }
                self.ep
                    .handle_chunk_verdict(now_ms(), from, &manifest, &runs);
            }
            Work::Failed(e) => warn!(error = %e, "background work failed"),
            Work::Damaged(d) => self.on_damaged(d),
            Work::SearchAnswered { id, result } => self.ep.answer_catalog_search(id, result),
            Work::ServiceAnswered { id, result } => {
                self.ep.answer_service_call(now_ms(), id, result)
            }
        }
    }

    /// Carries out every pending output of the endpoint.
    pub fn drain(&mut self) {
        while let Some(out) = self.ep.poll_output() {
            match out {
                Output::Send { to, peer, msg } => {
                    let Some(peer) = peer else {
                        debug!(%to, "no admitted connection to region; the protocol will retry");
                        continue;
                    };
                    if msg.acknowledges_stored_state() {
                        self.make_durable();
                    }
                    match encode_frame(&msg) {
                        Ok(bytes) => self.send_control(peer, bytes),
                        Err(e) => warn!(%to, error = %e, "could not encode a frame"),
                    }
                }
                Output::ServeChunks {
                    to,
                    peer,
                    manifest,
                    parts,
                } => {
                    let Some(peer) = peer else {
                        debug!(%to, "no admitted connection to region; the protocol will retry");
                        continue;
                    };
                    let groups: u64 = parts.iter().map(|p| p.groups.end - p.groups.start).sum();
                    let out = self.chunk_sender(peer);
                    if self.data.serve(to, &out, manifest, parts) {
                        self.stats
                            .groups_served
                            .fetch_add(groups, Ordering::Relaxed);
                    } else {
                        self.stats.serves_dropped.fetch_add(1, Ordering::Relaxed);
                        debug!(%to, "peer has its fill of frames being served; it will ask again");
                    }
                }
                Output::Disconnect { peer } => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                // A read, not a write: the writes before it are applied already.
                Output::Storage(Storage::Catalog(CatalogStorageOp::ReadLog {
                    from,
                    count_max,
                })) => self.answer_log_read(from, count_max),
                Output::Storage(op) => {
                    let received = match &op {
                        Storage::ReturnFlow(StorageOp::PutTransfer(r))
                            if self.ep.awaits_content(&r.manifest.manifest.hash()) =>
                        {
                            Some(Arc::clone(r))
                        }
                        _ => None,
                    };
                    let catalog_grew = match &op {
                        Storage::Catalog(CatalogStorageOp::AppendLog { index, .. }) => Some(*index),
                        _ => None,
                    };
                    self.unsynced = true;
                    if let Err(e) =
                        crate::persist::apply(&self.store, &mut self.records, &mut self.ledger, op)
                    {
                        // Durability failed: stop rather than acknowledge what is not stored.
                        panic!("storage failure: {e:#}");
                    }
                    if let Some(record) = received {
                        self.report_present(&record);
                    }
                    if let Some(index) = catalog_grew {
                        self.catalog_log_len = index;
                    }
                }
                Output::Event(ev) => self.on_event(ev),
            }
        }
    }

    /// "Nothing acknowledged is lost": before this node tells anyone what it stores — a
    /// receipt, an acknowledgement, a publish or a catalog submission returning — every write
    /// so far is made durable with one sync of the write-ahead log (content files were synced
    /// before their index entries were written, see `store`). Writes since the last sync are
    /// batched into it; nothing written means no sync.
    pub(crate) fn make_durable(&mut self) {
        if !self.unsynced {
            return;
        }
        if let Err(e) = self.store.sync_wal() {
            // As for any storage failure: stop rather than acknowledge what may not be stored.
            panic!("storage failure: {e:#}");
        }
        self.unsynced = false;
        self.stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
        // The catalog log is durable this far: its search index may follow.
        self.search.log_durable(self.catalog_log_len);
    }

    /// Right after a received record is persisted: the groups already stored of its
    /// entries' content (content-addressed — what the previous version shares with it) count
    /// as stored, so unchanged partitions are not fetched again.
    fn report_present(&mut self, record: &TransferRecord) {
        let hash = record.manifest.manifest.hash();
        let present = match crate::persist::present(&self.store, record) {
            Ok(p) => p,
            Err(e) => {
                // Not fatal: the transfer then fetches what it cannot see.
                warn!(error = %e, "could not read which content is stored; fetching it all");
                Vec::new()
            }
        };
        if !present.is_empty() {
            let groups: u64 = present
                .iter()
                .flat_map(|(_, r)| r.iter().map(|r| r.end - r.start))
                .sum();
            debug!(manifest = %hex::encode(&hash[..8]), partitions = present.len(), groups, "content already stored");
        }
        self.ep.handle_content_present(now_ms(), &hash, &present);
    }

    fn on_event(&mut self, ev: Event<PeerId>) {
        match ev {
            Event::Search(e) => self.on_search_event(e),
            Event::Service(e) => self.on_service_event(e),
            Event::Ledger(e) => self.on_ledger_event(e),
            Event::PeerAdmitted { peer, region } => {
                self.data.admitted.admit(peer);
                self.relay.admission.admit(self.ep.region(), peer, region);
                info!(%peer, %region, "peer verified");
                self.reserve_relays();
            }
            Event::PeerRefused { peer, error } => {
                self.data.admitted.remove(&peer);
                self.relay.admission.remove(&peer);
                self.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
                warn!(%peer, reason = %error, "refusing peer");
            }
            Event::UnadmittedFrame { peer } => {
                debug!(%peer, "dropping a frame from an unverified peer")
            }
            Event::UnexpectedChunkFrame { from, runs } => {
                debug!(%from, runs, "dropping a chunk frame nobody asked for")
            }
            Event::RevocationApplied { subject, key, from } => {
                let from = from
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "this node".into());
                warn!(%subject, key = %hex::encode(key), %from, "key revoked: refused from now on, with every certificate it issued")
            }
            Event::RevocationRejected {
                from,
                subject,
                error,
            } => warn!(%from, %subject, %error, "revocation rejected"),
            Event::DeliveryNotRenewed { request, error } => warn!(
                request = %hex::encode(&request[..8]),
                %error,
                "a delivery nearing its manifest's end was not renewed; retried hourly"
            ),
            Event::OwnChainInvalid { error } => {
                tracing::error!(%error, "this node's own certificate chain no longer verifies: peers refuse it until it is certified again (backflow cert rotate / cert install)")
            }
            Event::ReturnFlow(ev) => self.on_return_flow_event(ev),
            Event::Share(ev) => match ev {
                ShareEvent::CaseChanged { request, state } => {
                    info!(request = %hex::encode(&request[..8]), ?state, "share request changed");
                    self.drop_ended_service(&request, state);
                    if state == backflow_protocol::share::ShareState::Delivering {
                        // A provider started a delivery this node may fetch: dial it now.
                        self.dial_deliveries();
                    }
                }
                ShareEvent::Overdue {
                    request,
                    article,
                    due,
                } => {
                    warn!(request = %hex::encode(&request[..8]), article, due = due.0, "share request overdue")
                }
                ShareEvent::ActRejected {
                    from,
                    request,
                    error,
                } => {
                    warn!(%from, request = %hex::encode(&request[..8]), %error, "share act rejected")
                }
                ShareEvent::RightsChanged {
                    department,
                    issuer,
                    suspended,
                    from,
                } => {
                    let (region, department) = (department.region, department.department);
                    let from = from.map_or_else(|| "this node".to_string(), |f| f.to_string());
                    if suspended {
                        warn!(%region, %department, authority = %issuer, %from, "a department's sharing rights are suspended (Art. 27): it is granted and delivered nothing, and uses no granted data, until reinstated");
                    } else {
                        info!(%region, %department, authority = %issuer, %from, "a department's sharing rights are reinstated");
                    }
                    // Connections of its grants' deliveries close (or may open again).
                    self.dial_deliveries();
                }
                ShareEvent::RightsRejected { from, error } => {
                    warn!(%from, %error, "an act on sharing rights was rejected")
                }
                ShareEvent::ReturnedCorrectionChanged { id, answered } => {
                    info!(id = %hex::encode(&id[..8]), answered, "correction request against returned data (Art. 26) filed or answered")
                }
            },
            Event::Review(backflow_protocol::catalog_review::ReviewEvent::Overdue {
                what,
                id,
                department,
                due,
            }) => {
                warn!(?what, id, %department, due = due.0, "catalog review or update overdue (Art. 17)")
            }
            Event::Catalog(ev) => match ev {
                CatalogEvent::Applied { origin, seq, from } => {
                    info!(origin = %origin.region, department = %origin.department, seq, %from, "catalog version applied");
                }
                CatalogEvent::Rejected {
                    from,
                    origin,
                    error,
                } => {
                    warn!(%from, origin = ?origin, %error, "catalog version rejected");
                }
                other => debug!(event = ?other, "catalog"),
            },
        }
    }

    fn on_return_flow_event(&mut self, ev: return_flow::Event) {
        use return_flow::Event as E;
        match ev {
            E::ManifestAccepted {
                dataset,
                version,
                from,
                ..
            } => info!(%dataset, version, %from, "manifest accepted"),
            E::ManifestRejected { from, error } => warn!(%from, %error, "manifest rejected"),
            E::PartitionComplete { region, .. } => debug!(%region, "partition complete"),
            E::TransferComplete { manifest } => {
                let name = self
                    .records
                    .get(&manifest)
                    .map(|r| r.manifest.manifest.dataset.clone())
                    .unwrap_or_default();
                info!(dataset = %name, manifest = %hex::encode(&manifest[..8]), "all partitions of this subtree stored and verified");
            }
            E::SourceChanged { from, to, .. } => {
                warn!(%from, %to, "switching source (skip-level fallback)")
            }
            E::ChunkRejected {
                region,
                group,
                from,
                ..
            } => warn!(%region, group, %from, "chunk rejected"),
            E::ContentDamaged {
                region,
                groups,
                refetch: true,
                ..
            } => info!(%region, ?groups, "fetching damaged content again from the source"),
            E::ContentDamaged {
                region,
                groups,
                refetch: false,
                ..
            } => {
                tracing::error!(%region, ?groups, "published content is damaged on this node's disk and no other node can supply it: publish the dataset again")
            }
            E::WantRefused { from, region, .. } => {
                warn!(%from, %region, "refused a request for a partition outside the requester's region")
            }
            E::ReceiptRejected { from, error } => warn!(%from, %error, "receipt rejected"),
            E::AttestationRejected { from, error } => {
                warn!(%from, %error, "delivery attestation rejected")
            }
            E::Completeness(r) => {
                // Derived from the transfer and the delivery attestations (persisted through
                // `StorageOp::PutAttestation`), so not stored itself.
                debug!(region = %r.region, delivered = r.regions_delivered, expected = r.regions_expected, "completeness");
            }
            E::TransferExpired { manifest } => {
                warn!(manifest = %hex::encode(&manifest[..8]), "manifest expired before a newer version arrived")
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = now_ms();
        match cmd {
            Cmd::Held { reply } => {
                let held = self
                    .ep
                    .return_flow()
                    .held()
                    .map(|(d, h)| (d.clone(), *h))
                    .collect();
                let _ = reply.send(held);
            }
            Cmd::Publish { manifests, reply } => {
                let mut hashes = Vec::new();
                let mut result = Ok(());
                let mut logged = Vec::new();
                for (manifest, entries) in manifests {
                    logged.push(crate::ledger_api::publish_record(now, &manifest));
                    match self.ep.publish(now, manifest, entries) {
                        Ok(h) => hashes.push(h),
                        Err(e) => {
                            result = Err(anyhow!("publish refused: {e}"));
                            break;
                        }
                    }
                }
                // Stored for good, and logged, before the publisher hears it is done.
                self.drain();
                logged.truncate(hashes.len());
                let appended = self.ledger_append(logged);
                let _ = reply.send(result.and(appended).map(|_| hashes));
            }
            Cmd::Status {
                dataset,
                under,
                reply,
            } => {
                let _ = reply.send(crate::status::datasets(
                    &self.ep,
                    &self.records,
                    dataset.as_deref(),
                    under,
                    now_ms(),
                ));
            }
            Cmd::Record { query, reply } => {
                let _ = reply.send(self.record(&query));
            }
            Cmd::CatalogSubmit {
                department,
                entries,
                reply,
            } => {
                let result = self.catalog_submit(now, department, entries);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::ContentDamaged(d) => self.on_damaged(d),
            Cmd::Scrub { reply } => self.scrub_all(reply),
            Cmd::CatalogSearch { query, reply } => self.ask_search(query, reply),
            Cmd::Coordinate {
                id,
                outcome,
                refer,
                reply,
            } => {
                let result = crate::share_api::coordinate(&mut self.ep, now, &id, outcome, refer);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::CallService {
                department,
                id,
                keys,
                reply,
            } => self.call_service(&department, &id, keys, reply),
            Cmd::OpenService {
                department,
                request,
                reply,
            } => {
                let _ = reply.send(self.open_service(&department, &request));
            }
            Cmd::Peers { reply } => {
                let v = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerView {
                        peer: p.to_string(),
                        region: self.ep.region_of(p).map(|r| r.to_string()),
                        addr: self.addrs.get(p).map(|a| a.to_string()),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            Cmd::Revoke { region, key, reply } => {
                let result = self
                    .ep
                    .revoke(now, region, key)
                    .map_err(|e| anyhow!("cannot revoke: {e}"));
                // Persisted (and the peers dropped) before the caller hears it is done.
                self.drain();
                self.make_durable();
                let _ = reply.send(result.map(|r| RevocationView::of(&r)));
            }
            Cmd::SubmitRevocation { revocation, reply } => {
                let result = self
                    .ep
                    .submit_revocation(now, &revocation)
                    .map(|_| RevocationView::of(&revocation))
                    .map_err(|e| anyhow!("revocation refused: {e}"));
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::Shares {
                overdue_only,
                reply,
            } => {
                let _ = reply.send(crate::share_api::list(&self.ep, now, overdue_only));
            }
            Cmd::Share { id, reply } => {
                let _ = reply.send(crate::share_api::show(&self.ep, now, &id));
            }
            Cmd::ShareFile {
                department,
                params,
                reply,
            } => {
                let result =
                    crate::share_api::file(&mut self.ep, &self.store, now, &department, &params);
                // Persisted before the caller hears it is filed.
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::ShareAct {
                department,
                id,
                params,
                reply,
            } => {
                let result = crate::share_api::act(&mut self.ep, now, &department, &id, &params);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::DeliveryTarget {
                department,
                id,
                reply,
            } => {
                let _ = reply.send(crate::share_api::delivery_target(
                    &self.ep,
                    &department,
                    &id,
                ));
            }
            Cmd::Deliver {
                department,
                request,
                staged,
                reply,
            } => {
                let addresses = self.delivery_addresses();
                let result = crate::share_api::deliver(
                    &mut self.ep,
                    now,
                    &department,
                    &request,
                    *staged,
                    addresses,
                );
                // Durable before the provider hears the delivery started.
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::AddDepartment { name, key, reply } => {
                let result = self
                    .ep
                    .add_department(now, &name, *key)
                    .map_err(|e| anyhow!("department {name:?}: {e}"))
                    .and_then(|()| {
                        crate::status::departments(&self.ep)
                            .into_iter()
                            .find(|d| d.name == name)
                            .ok_or_else(|| anyhow!("department {name:?} was not added"))
                    });
                let _ = reply.send(result);
            }
            Cmd::Review {
                request,
                default_department,
                reply,
            } => {
                let result =
                    crate::review_api::run(&mut self.ep, now, &default_department, *request);
                // Persisted (and an approved version in the log) before the caller hears it.
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::Ledger(cmd) => self.on_ledger(cmd, now),
            Cmd::Returned(cmd) => self.on_returned(cmd, now),
            Cmd::Departments { reply } => {
                let _ = reply.send(crate::status::departments(&self.ep));
            }
            Cmd::Rights { reply } => {
                let _ = reply.send(crate::rights_api::list(&self.ep));
            }
            Cmd::RightsOrder { params, reply } => {
                let result = crate::rights_api::order(&mut self.ep, now, params);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            Cmd::Revocations { reply } => {
                let _ = reply.send(self.ep.revocations().map(RevocationView::of).collect());
            }
            Cmd::Shutdown => {}
        }
    }

    /// The transfer records of a held, complete dataset version (for export).
    fn record(&self, query: &DatasetQuery) -> Result<HeldRecords> {
        let rf = self.ep.return_flow();
        let dataset = &query.name;
        let version = query.version;
        let held: Vec<(&DatasetId, HeldVersion)> = rf
            .held()
            .filter(|(d, _)| query.matches(d))
            .map(|(d, h)| (d, *h))
            .collect();
        if held.is_empty() {
            bail!("dataset {dataset:?} is not held here (of the publisher and department given, if any)");
        }
        // Datasets of one name from several owners are different datasets: never merged.
        let owners: BTreeSet<(RegionCode, &str)> = held
            .iter()
            .map(|(d, _)| (d.publisher, d.department.as_str()))
            .collect();
        if owners.len() > 1 {
            let list: Vec<String> = owners
                .iter()
                .map(|(p, d)| format!("publisher {p} department {d}"))
                .collect();
            bail!(
                "datasets named {dataset:?} from {} owners are held here ({}); say which with publisher and department",
                owners.len(),
                list.join("; ")
            );
        }
        let mut out = Vec::new();
        for (id, held) in held {
            let name = &id.name;
            if let Some(v) = version {
                if v != held.version {
                    bail!(
                        "version {v} of {name:?} is not held here (held: {})",
                        held.version
                    );
                }
            }
            let rec = self
                .records
                .get(&held.hash)
                .ok_or_else(|| anyhow!("no transfer record for {name:?}"))?;
            let expires_at = rec.manifest.manifest.expires_at;
            let now = now_ms();
            if now >= expires_at {
                bail!(
                    "version {} of {name:?} expired {} days ago (at Unix ms {}) and no newer version has arrived; its publisher no longer vouches for it, so it is not exported",
                    held.version,
                    now.since_ms(expires_at) / backflow_protocol::time::DAY_MS,
                    expires_at.0
                );
            }
            if let Some(request) = rec.manifest.manifest.delivers {
                crate::share_api::check_in_force(&self.ep, now, &request)?;
            }
            if !rf.is_complete(&held.hash) && !rec.published {
                bail!(
                    "version {} of {name:?} is still arriving; try again when `status` shows it complete",
                    held.version
                );
            }
            out.push((held.hash, Arc::clone(rec)));
        }
        Ok(out)
    }

    /// The authority's own catalog publication (in force at once; see
    /// [`Endpoint::publish_catalog_entries`]).
    fn catalog_submit(
        &mut self,
        now: UnixMs,
        department: String,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64> {
        Ok(self.ep.publish_catalog_entries(now, &department, entries)?)
    }
}

/// An encoded hello for `ep`, sent first on every connection.
pub(crate) fn encode_hello(ep: &Endpoint<PeerId>) -> Result<Vec<u8>> {
    let hello: Message = ep.hello();
    Ok(encode_frame(&hello)?)
}
