//! The adapter: each simulated node is a thin shell over the protocol's own
//! [`Endpoint`]`<RegionCode>` — the same one the real node drives (node/src/runtime.rs), which
//! owns the trust store, the state machines, peer admission and the chunk verdict. Its
//! transport identity (`P`) is the peer's region: the engine's name for a node. The shell
//! plays the parts the node's IO plays, minus the bytes:
//!
//! - **Connections and admission.** The engine has no connection setup, so the shell models
//!   the node's handshake where a connection would first be needed, at both ends. When the
//!   endpoint asks to send to a region it has no admitted peer for (`peer: None`), the shell
//!   "connects": `handle_connected(region, key the transport authenticated)` and the peer's
//!   hello (its certificate chain) through `handle_message`; the endpoint verifies the chain,
//!   binds its leaf key to the authenticated one and checks the region is in line. Admitted:
//!   the frame goes; refused: it is dropped (the endpoint reports it; the protocol retries).
//!   A frame from a region the endpoint has not admitted is preceded by the same handshake at
//!   the receiver. The handshake's CPU is charged (both hellos as control messages, and the
//!   signatures of the peer's chain this node has not verified before, as the node's own
//!   trust-store memo would spare the rest); hellos take no link time. A restarted node's
//!   endpoint admits nobody until it connects again; its peers keep their admission.
//! - **Chunk data by size and hash.** `ServeChunks` becomes a [`ProtoMsg::Chunk`] of runs with
//!   their groups, exact encoded length and the partition's content hash (see
//!   [`crate::protomsg`]). The receiver asks the endpoint which runs to verify
//!   (`plan_chunk_frame`), "verifies" each against its entry — content hash and group range,
//!   what bao verification establishes — stores what verifies and hands the verdicts back
//!   (`handle_chunk_verdict`), as the node's data plane does.
//! - **Storage in memory.** The endpoint's `Storage` effects go to a per-node durable store
//!   (transfer records, stored group ranges, descendants' receipts, watermarks, and the
//!   catalog: its log and every department's record and entries, [`crate::catalog_store`]).
//!   Content is addressed by its hash, as in the node: after a received record's
//!   `PutTransfer` the shell reports the groups it holds of its entries' content
//!   (`handle_content_present`: a previous version's unchanged partitions), and a
//!   `DropTransfer` keeps the content a persisted record still uses. The catalog log's
//!   entries are read back when the endpoint asks (`ReadLog`, answered at once and charged
//!   as decoding them). A crash drops the endpoint; a restart rebuilds it in one call,
//!   `Endpoint::new(now, config, saved)`, from that store, as the node does from RocksDB
//!   (of the catalog: the log's length, the records, other departments' entry ids only).
//! - **Control plane and CPU are the engine's.** Every frame goes through the engine's model
//!   of the node's shell ([`crate::shell`]): the per-peer outbox, the stream limit, the CPU
//!   each message costs at both ends. The adapter declares only the work the engine cannot
//!   size: handshakes, installing a transfer (per partition) and aggregating a receipt (per
//!   partition of the transfer).
//! - **Crypto is real.** Keys, chains and manifests come from [`crate::world`]; manifests,
//!   receipts, hellos and catalog updates are signed and verified by the protocol code.
//!
//! This file holds the node, its building per scenario, and its carrying out of the
//! endpoint's outputs (with the handshake). Its parts in `protonode/`: `sim_node` (the
//! engine's calls), `chunks` (serving and receiving chunk data), `durable` and `storage` (the
//! store and the storage effects applied to it), `events` (the endpoint's events), `catalog`
//! and `share` (the node's part in those scenarios), `inspect` (what the invariants see).

mod catalog;
mod chunks;
mod durable;
mod events;
mod inspect;
mod share;
mod sim_node;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backflow_protocol::catalog_sync::CatalogMsg;
use backflow_protocol::endpoint::{Output, Saved};
use backflow_protocol::manifest::Hash;
use backflow_protocol::share::ShareMsg;
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{Hello, Message};
use backflow_protocol::Endpoint;
use backflow_topology::{RegionCode, Topology};

use crate::catalog_plan::CatalogPlan;
use crate::catalog_store::CatalogStore;
use crate::dataset::Layout;
use crate::engine::{Ctx, Observation};
use crate::error::SimError;
use crate::protomsg::{frame_bytes, ProtoMsg};
use crate::run_config::RunConfig;
use crate::share_actor::ShareActor;
use crate::share_plan::Plan;
use crate::time::Micros;
use crate::world::{self, Publication, World};

use durable::Durable;

/// One simulated node: the protocol's endpoint plus an in-memory shell.
pub struct ProtoNode {
    world: Arc<World>,
    /// Index in the topology (and the world).
    ix: usize,
    me: RegionCode,
    /// The protocol side; `None` while the process is down after a crash.
    ep: Option<Endpoint<RegionCode>>,
    store: Durable,
    stored_bytes: u64,
    /// Regions whose certificate this process has verified (its own chain at start, then
    /// peers'): what the node's trust-store memo spares a handshake. Lost with a crash.
    certs_verified: BTreeSet<RegionCode>,
    /// Publisher only: what to publish at start.
    to_publish: Vec<Publication>,
    /// Publisher only: manifests whose receipts cover their whole scope.
    manifests_complete: BTreeSet<Hash>,
    /// Catalog churn: times of this node's local changes still to make, latest first.
    pending_changes: Vec<Micros>,
    /// National only: catalog versions applied from the churn department.
    churn_applied: u64,
    /// The sharing scenario: this node's departments' scripts and what the node measures (`None` in the other scenarios).
    share: Option<Box<ShareActor>>,
    /// The unified-catalog scenario: what this node's departments publish (`None` elsewhere).
    bulk: Option<Box<Bulk>>,
}

/// One node's part in the unified-catalog scenario (`simnet catalog`).
struct Bulk {
    plan: Arc<CatalogPlan>,
    /// When its departments publish; `None` once they have.
    at: Option<Micros>,
    /// National only: catalog versions applied from the scenario's departments.
    applied: u64,
    /// National only: versions expected in all (observed every 1 % and at the end).
    expected: u64,
}

/// Builds one node per region over a fresh [`World`]: every node's endpoint started at time
/// zero with nothing saved, the publisher holding what it will publish.
pub fn build_nodes(
    topo: &Topology,
    layout: &Layout,
    config: &RunConfig,
    churn: &[(RegionCode, Micros)],
) -> Result<Vec<ProtoNode>, SimError> {
    let world::Built { world, publisher } = world::build(topo, layout, config)?;
    let mut changes: BTreeMap<RegionCode, Vec<Micros>> = BTreeMap::new();
    for &(t, at) in churn {
        changes.entry(t).or_default().push(at);
    }
    let mut publisher = publisher;
    let mut nodes = Vec::with_capacity(world.codes().len());
    for (ix, &me) in world.codes().iter().enumerate() {
        let mut node = ProtoNode::start(&world, ix, me)?;
        let mut pending_changes = changes.remove(&me).unwrap_or_default();
        pending_changes.sort_unstable_by(|a, b| b.cmp(a));
        let to_publish = match publisher.take() {
            Some((pi, list)) if pi == ix => list,
            other => {
                publisher = other;
                Vec::new()
            }
        };
        node.to_publish = to_publish;
        node.pending_changes = pending_changes;
        nodes.push(node);
    }
    Ok(nodes)
}

/// The sharing scenario's nodes: one per region of `topo` (the plan's network), every
/// endpoint started at the plan's epoch on the plan's calendar, with its departments' scripts.
pub fn build_share_nodes(
    topo: &Topology,
    config: &RunConfig,
    plan: &Plan,
) -> Result<Vec<ProtoNode>, SimError> {
    let layout = Layout::new(
        topo,
        RegionCode::NATIONAL,
        "no-dataset",
        0,
        0,
        crate::dataset::Spread::Even,
    );
    // One signature memo for the country: an act is checked once, not once per province.
    let memo = world::MemoScope::Country;
    let world::Built { world, .. } = world::build_at(topo, &layout, config, plan.epoch_ms, memo)?;
    let mut nodes = Vec::with_capacity(world.codes().len());
    for (ix, &me) in world.codes().iter().enumerate() {
        let mut node = ProtoNode::start(&world, ix, me)?;
        if let Some(ep) = node.ep.as_mut() {
            ep.set_calendar(plan.calendar.clone());
        }
        node.share = Some(Box::new(ShareActor::new(Arc::clone(plan), me)));
        nodes.push(node);
    }
    Ok(nodes)
}

/// The unified-catalog scenario's nodes: one per region of `topo`, each of whose departments
/// publishes its catalog (per `plan`) once, at the plan's time for the node.
pub fn build_catalog_nodes(
    topo: &Topology,
    config: &RunConfig,
    plan: &Arc<CatalogPlan>,
) -> Result<Vec<ProtoNode>, SimError> {
    let layout = Layout::new(
        topo,
        RegionCode::NATIONAL,
        "no-dataset",
        0,
        0,
        crate::dataset::Spread::Even,
    );
    let world::Built { world, .. } = world::build(topo, &layout, config)?;
    let expected = topo.len() as u64 * u64::from(plan.departments);
    let mut nodes = Vec::with_capacity(world.codes().len());
    for (ix, &me) in world.codes().iter().enumerate() {
        let mut node = ProtoNode::start(&world, ix, me)?;
        node.bulk = Some(Box::new(Bulk {
            plan: Arc::clone(plan),
            at: Some(plan.publish_at(me)),
            applied: 0,
            expected,
        }));
        nodes.push(node);
    }
    Ok(nodes)
}

/// The certificates of a node's own chain, which its endpoint verified at start: its
/// region's and its ancestors' below national.
fn own_certs(me: RegionCode) -> BTreeSet<RegionCode> {
    std::iter::successors(Some(me), |r| r.parent())
        .filter(|r| *r != RegionCode::NATIONAL)
        .collect()
}

impl ProtoNode {
    /// Node `ix` (region `me`) of `world`, its endpoint started empty at the world's epoch;
    /// the scenario's builder adds what it publishes or acts on.
    fn start(world: &Arc<World>, ix: usize, me: RegionCode) -> Result<ProtoNode, SimError> {
        let (ep, _) = Endpoint::new(
            UnixMs(world.epoch_ms),
            world.endpoint_config(ix),
            Saved::default(),
        )
        .map_err(|error| SimError::NodeStart { region: me, error })?;
        Ok(ProtoNode {
            world: Arc::clone(world),
            ix,
            me,
            ep: Some(ep),
            store: Durable::default(),
            stored_bytes: 0,
            certs_verified: own_certs(me),
            to_publish: Vec::new(),
            manifests_complete: BTreeSet::new(),
            pending_changes: Vec::new(),
            churn_applied: 0,
            share: None,
            bulk: None,
        })
    }

    /// Carries out every pending output of the endpoint.
    fn drain(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        while let Some(out) = self.ep.as_mut().and_then(Endpoint::poll_output) {
            match out {
                Output::Send { to, peer, msg } => {
                    if let (Message::Share(ShareMsg::Act(_)), Some(actor)) =
                        (&msg, self.share.as_mut())
                    {
                        // Counted whether or not the hop admits it (the service sent it).
                        actor.on_act_sent();
                    }
                    if peer.is_none() {
                        if !self.connect(ctx, to) {
                            continue;
                        }
                        // A catalog probe to a region not admitted yet is not sent: the node
                        // drops every frame for such a region (node/src/runtime.rs), and the
                        // admission just made has the endpoint probe again
                        // (`CatalogSync::handle_peer_admitted`); sending both would probe twice.
                        if matches!(msg, Message::Catalog(CatalogMsg::Probe { .. })) {
                            continue;
                        }
                    }
                    match ProtoMsg::control(msg) {
                        Some(ProtoMsg::Share {
                            msg: ShareMsg::Act(act),
                            ..
                        }) => {
                            // The hops it will have travelled at the next node.
                            let hops = self.share.as_mut().map_or(1, |a| {
                                let id = a.act_id(&act);
                                a.hops_out(&id)
                            });
                            let msg = ShareMsg::Act(act);
                            ctx.send(to, ProtoMsg::Share { msg, hops });
                        }
                        Some(m) => ctx.send(to, m),
                        None => ctx.observe(Observation::Note("unexpected_send")),
                    }
                }
                Output::ServeChunks {
                    to,
                    peer,
                    manifest,
                    parts,
                } => {
                    if peer.is_none() && !self.connect(ctx, to) {
                        continue;
                    }
                    self.serve(ctx, to, manifest, parts);
                }
                // The endpoint refused the peer and forgot it; the engine's connection carries
                // nothing more for it (no frame of a refused peer is ever handed on).
                Output::Disconnect { .. } => {}
                Output::Storage(op) => self.apply(ctx, op),
                Output::Event(e) => self.on_event(ctx, e),
            }
        }
    }

    /// The node's handshake with `peer` on a new connection, modelled in place: the transport
    /// authenticated the peer's key, and its hello carries its chain. Returns whether the
    /// endpoint admitted it.
    fn connect(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, peer: RegionCode) -> bool {
        let (Some(ep), Some(pi)) = (self.ep.as_mut(), self.world.index_of(peer)) else {
            return false;
        };
        let chain = self.world.chain(pi);
        // CPU: this node's hello out, the peer's in, and the signatures of the peer's chain
        // not yet verified by this process (its memo has its own chain and earlier peers').
        let mut new = 0;
        for cert in &chain {
            if self.certs_verified.insert(cert.body.subject) {
                new += 1;
            }
        }
        let hello = Message::Hello(Hello { chain });
        let us = ctx.costs().handshake_us(new, frame_bytes(&hello));
        ctx.charge_cpu_ns(us.saturating_mul(1_000));
        ep.handle_connected(self.world.now_ms(ctx.now_us()), peer, self.world.auth(pi));
        ep.handle_message(self.world.now_ms(ctx.now_us()), peer, hello);
        ep.peer_of(peer) == Some(peer)
    }

    /// Whether this node published the dataset.
    fn is_publisher(&self) -> bool {
        self.store.records.values().any(|r| r.published)
    }
}

impl ProtoNode {
    pub fn region(&self) -> RegionCode {
        self.me
    }

    /// The endpoint (`None` while crashed).
    pub fn endpoint(&self) -> Option<&Endpoint<RegionCode>> {
        self.ep.as_ref()
    }

    /// This node's catalog storage: its log and every department's record and entries.
    pub fn catalog_store(&self) -> &CatalogStore {
        &self.store.catalog
    }

    /// The node's catalog storage, taking it out of the node (what is left of a run).
    pub fn into_catalog_store(self) -> CatalogStore {
        self.store.catalog
    }

    /// The sharing scenario's part of this node.
    pub fn share_actor(&self) -> Option<&ShareActor> {
        self.share.as_deref()
    }
}
