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

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use backflow_protocol::attestation::SignedAttestation;
use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, SharingAttribute, SharingMethod, SignedCatalogUpdate, UpdateFrequency,
};
use backflow_protocol::catalog_review::{DutyChange, ReviewEvent, ReviewStorageOp, Submission};
use backflow_protocol::catalog_sync::{CatalogEvent, CatalogMsg, CatalogStorageOp};
use backflow_protocol::cert::Revocation;
use backflow_protocol::chunk::{check_groups, ChunkError};
use backflow_protocol::codec::encoded_len;
use backflow_protocol::endpoint::{Event, Output, RunVerdict, Saved, SavedTransfer, Storage};
use backflow_protocol::manifest::{Hash, PartitionEntry};
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{self, ReturnFlowMsg, ServePart, StorageOp, TransferRecord};
use backflow_protocol::service_interface::{ServiceStorageOp, ServiceUsage};
use backflow_protocol::share::{ShareCase, ShareEvent, ShareMsg, ShareStorageOp, SignedShareAct};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{Hello, Message};
use backflow_protocol::Endpoint;
use backflow_topology::{Level, RegionCode, Topology};

use crate::catalog_plan::CatalogPlan;
use crate::catalog_store::CatalogStore;
use crate::dataset::Layout;
use crate::engine::{Ctx, Observation, SimNode};
use crate::error::SimError;
use crate::inspect::{Held, Inspect};
use crate::protomsg::{frame_bytes, ProtoMsg, SimPart};
use crate::ranges::RangeSet;
use crate::run_config::RunConfig;
use crate::share_actor::ShareActor;
use crate::share_plan::Plan;
use crate::time::Micros;
use crate::world::{self, Publication, World, CHURN_DEPARTMENT};

/// What a node has durably stored: it survives a crash, and a restart hands it back whole.
#[derive(Default)]
struct Durable {
    records: BTreeMap<Hash, Arc<TransferRecord>>,
    /// Group ranges held, per partition region, of the content named in `content`.
    stored: BTreeMap<RegionCode, RangeSet>,
    /// The content hash whose groups `stored` holds, per partition region (storage is
    /// content-addressed, as in the node: a new version's unchanged partition is the same
    /// content, and the same groups).
    content: BTreeMap<RegionCode, Hash>,
    /// Descendants' latest receipts, per transfer.
    receipts: BTreeMap<Hash, BTreeMap<RegionCode, Receipt>>,
    /// Delivery attestations held, per transfer.
    attestations: BTreeMap<Hash, BTreeMap<RegionCode, Arc<SignedAttestation>>>,
    /// The catalog log and every department's record and entries.
    catalog: CatalogStore,
    cat_watermarks: BTreeMap<RegionCode, (u64, u64)>,
    revocations: Vec<Revocation>,
    share_cases: BTreeMap<Hash, ShareCase>,
    share_transit: BTreeMap<Hash, SignedShareAct>,
    share_supervised: BTreeMap<Hash, ShareCase>,
    review_submissions: BTreeMap<u64, Submission>,
    review_duty_changes: BTreeMap<u64, DutyChange>,
    service_usage: BTreeMap<Hash, ServiceUsage>,
}

impl Durable {
    /// Everything persisted, as [`Endpoint::new`] takes it back at `me`.
    fn saved(&self, me: RegionCode) -> Saved {
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
            review_submissions: self.review_submissions.values().cloned().collect(),
            review_duty_changes: self.review_duty_changes.values().cloned().collect(),
            service_usage: self.service_usage.iter().map(|(r, u)| (*r, *u)).collect(),
        }
    }

    /// The groups held of `e`'s content, if any.
    fn held(&self, e: &PartitionEntry) -> Option<&RangeSet> {
        if self.content.get(&e.region) != Some(&e.content_hash) {
            return None;
        }
        self.stored.get(&e.region)
    }

    /// Per partition of `record`, the group ranges held of its content.
    fn present(&self, record: &TransferRecord) -> Vec<(RegionCode, Vec<Range<u64>>)> {
        record
            .entries
            .iter()
            .filter_map(|e| Some((e.region, self.held(e)?.ranges().to_vec())))
            .filter(|(_, ranges)| !ranges.is_empty())
            .collect()
    }

    /// Whether a persisted record still uses the content held for `region`.
    fn content_in_use(&self, region: RegionCode) -> bool {
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
    fn insert(&mut self, e: &PartitionEntry, groups: Range<u64>) -> Vec<Range<u64>> {
        if self.content.insert(e.region, e.content_hash) != Some(e.content_hash) {
            self.stored.remove(&e.region);
        }
        self.stored.entry(e.region).or_default().insert(groups)
    }

    /// Payload bytes held over every transfer.
    fn stored_bytes(&self) -> u64 {
        self.records
            .values()
            .flat_map(|rec| rec.entries.iter())
            .filter_map(|e| Some(self.held(e)?.bytes_of(e.bytes)))
            .sum()
    }
}

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

fn churn_update(me: RegionCode, seq: u64, now: UnixMs) -> CatalogUpdate {
    let entry = CatalogEntry {
        id: format!("households-{me}"),
        name: "Registered households".to_string(),
        data_items: vec![DataItem {
            name: "household_id".to_string(),
            data_type: DataType::Text,
            description: "Household register number".to_string(),
        }],
        provider: CHURN_DEPARTMENT.to_string(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "population".to_string(),
        grade: DataGrade::General,
    };
    CatalogUpdate {
        origin: CatalogOrigin {
            region: me,
            department: CHURN_DEPARTMENT.to_string(),
        },
        seq,
        issued_at: now,
        changes: vec![if seq == 1 {
            CatalogChange::Add(Arc::new(entry))
        } else {
            CatalogChange::Update(Arc::new(entry))
        }],
    }
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

    /// `ServeChunks`: the shell reads each part's groups from its store and sends them as one
    /// chunk frame (by size and hash).
    fn serve(
        &mut self,
        ctx: &mut Ctx<'_, ProtoMsg>,
        to: RegionCode,
        manifest: Hash,
        parts: Vec<ServePart>,
    ) {
        let mut frame = Vec::with_capacity(parts.len());
        for p in parts {
            // The groups must be in the store.
            let held = self
                .store
                .held(&p.entry)
                .is_some_and(|l| l.covers(&p.groups));
            if !held {
                ctx.observe(Observation::Note("serve_of_unheld_group"));
                continue;
            }
            frame.push(SimPart {
                region: p.entry.region,
                groups: p.groups,
                content_hash: p.entry.content_hash,
                encoded_len: p.encoded_len,
            });
        }
        if !frame.is_empty() {
            ctx.send(
                to,
                ProtoMsg::Chunk {
                    manifest,
                    parts: frame,
                },
            );
        }
    }

    /// Applies one storage effect to the durable store.
    fn apply(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, op: Storage) {
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
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: Event<RegionCode>) {
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

    /// The sharing scenario's part of a share event: schedule the parties' next acts, count.
    fn on_share_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: ShareEvent) {
        let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_ref()) else {
            return;
        };
        match e {
            ShareEvent::CaseChanged { request, .. } => {
                if let Some(case) = ep.share_service().case(&request) {
                    actor.on_case_changed(ctx.now_us(), case);
                }
            }
            ShareEvent::Overdue {
                request,
                article,
                due,
            } => actor.on_overdue(request, article, due, ctx.now_us()),
            ShareEvent::ActRejected { from, error, .. } => actor.on_rejected(from, &error),
        }
    }

    /// The sharing scenario at start (and restart): departments' keys, the providers'
    /// catalog entries (at start only).
    fn share_start(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, publish: bool) {
        let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
            return;
        };
        let now = self.world.now_ms(ctx.now_us());
        let plan = Arc::clone(actor.plan());
        ep.set_calendar(plan.calendar.clone());
        for &d in plan.at_node.get(&self.me).map_or(&[][..], |v| v.as_slice()) {
            let name = plan.departments[d as usize].name;
            if let Err(e) = ep.add_department(now, name, plan.department_key(d)) {
                actor.script_error(format!("adding department {name} at {}: {e}", self.me));
            }
            if publish && plan.departments[d as usize].provider {
                if let Err(e) = ep.publish_catalog_entries(now, name, vec![plan.entry(d)]) {
                    actor.script_error(format!("publishing {name}'s entry at {}: {e}", self.me));
                }
            }
        }
    }

    /// The sharing scenario's scripts: file what is due, act as scheduled.
    fn share_scripts(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now_us = ctx.now_us();
        let now = self.world.now_ms(now_us);
        let Some(actor) = self.share.as_mut() else {
            return;
        };
        let plan = Arc::clone(actor.plan());
        for i in actor.due_filings(now_us) {
            let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
                return;
            };
            let attribute = plan.attribute(plan.requests[i as usize].provider);
            match ep.file_share_request(now, plan.request(i), attribute) {
                Ok(_) => actor.filed(),
                Err(e) => actor.script_error(format!("filing request {i}: {e}")),
            }
            self.drain(ctx);
        }
        let Some(actor) = self.share.as_mut() else {
            return;
        };
        for (i, action) in actor.due_actions(now_us) {
            let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
                return;
            };
            let (department, act) = actor.act_for(i, action);
            let name = plan.departments[department as usize].name;
            let id = plan.requests[i as usize].id;
            match ep.share_act(now, &id, name, act) {
                Ok(_) => actor.acted(),
                Err(e) => actor.script_error(format!("request {i}, {action:?}: {e}")),
            }
            self.drain(ctx);
        }
    }

    /// Whether this node published the dataset.
    fn is_publisher(&self) -> bool {
        self.store.records.values().any(|r| r.published)
    }

    /// A chunk frame from `from` (admitted): the endpoint names the runs to verify; each is
    /// checked as bao verification would (the content it was cut from, its group range),
    /// stored if it passes, and the verdicts go back to the endpoint.
    fn on_chunk(
        &mut self,
        ctx: &mut Ctx<'_, ProtoMsg>,
        now: UnixMs,
        from: RegionCode,
        manifest: Hash,
        parts: Vec<SimPart>,
    ) {
        let Some(ep) = self.ep.as_mut() else {
            return;
        };
        let Some(plan) = ep.plan_chunk_frame(from, &manifest, parts.iter().map(|p| p.region))
        else {
            return; // Nothing this node is receiving: dropped (the endpoint reports it).
        };
        let mut verdicts = Vec::with_capacity(plan.runs.len());
        for run in &plan.runs {
            let part = &parts[run.index];
            let groups = part.groups.clone();
            let verified = if part.content_hash != run.entry.content_hash {
                Err(ChunkError::ContentMismatch)
            } else {
                check_groups(&run.entry, &groups)
            };
            let verdict = match verified {
                Ok(()) => {
                    let replaces = self
                        .store
                        .content
                        .get(&run.entry.region)
                        .is_some_and(|h| *h != run.entry.content_hash);
                    let added: u64 = self
                        .store
                        .insert(&run.entry, groups.clone())
                        .iter()
                        .map(|r| crate::ranges::range_bytes(run.entry.bytes, r))
                        .sum();
                    if replaces {
                        self.stored_bytes = self.store.stored_bytes();
                        ctx.observe(Observation::StoredBytes(self.stored_bytes));
                    } else if added > 0 {
                        self.stored_bytes += added;
                        ctx.observe(Observation::StoredBytes(self.stored_bytes));
                    }
                    RunVerdict::Stored
                }
                Err(e) => RunVerdict::rejected(&groups, &e),
            };
            verdicts.push((run.entry.region, groups, verdict));
        }
        ep.handle_chunk_verdict(now, plan.from, &manifest, &verdicts);
    }

    /// The unified-catalog scenario: once due, every department publishes its catalog.
    fn publish_bulk(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let (Some(ep), Some(b)) = (self.ep.as_mut(), self.bulk.as_mut()) else {
            return;
        };
        if b.at.is_none_or(|t| t > ctx.now_us()) {
            return;
        }
        b.at = None;
        let now = self.world.now_ms(ctx.now_us());
        for d in 0..b.plan.departments {
            let update = b.plan.update(self.me, d, now);
            match SignedCatalogUpdate::sign(update, ep.identity()) {
                Ok(signed) => {
                    if ep.submit_catalog(now, signed).is_err() {
                        ctx.observe(Observation::Note("catalog_submit_failed"));
                    }
                }
                Err(_) => ctx.observe(Observation::Note("catalog_sign_failed")),
            }
        }
    }

    fn submit_due_changes(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        self.publish_bulk(ctx);
        let Some(ep) = self.ep.as_mut() else {
            return;
        };
        let now_us = ctx.now_us();
        while self.pending_changes.last().is_some_and(|&t| t <= now_us) {
            self.pending_changes.pop();
            let now = self.world.now_ms(now_us);
            let origin = CatalogOrigin {
                region: self.me,
                department: CHURN_DEPARTMENT.to_string(),
            };
            let seq = ep.catalog_sync().next_seq(&origin);
            match SignedCatalogUpdate::sign(churn_update(self.me, seq, now), ep.identity()) {
                Ok(signed) => {
                    if ep.submit_catalog(now, signed).is_err() {
                        ctx.observe(Observation::Note("catalog_submit_failed"));
                    }
                }
                Err(_) => ctx.observe(Observation::Note("catalog_sign_failed")),
            }
        }
    }
}

impl SimNode for ProtoNode {
    type Msg = ProtoMsg;

    fn on_start(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        let publish = std::mem::take(&mut self.to_publish);
        if publish.len() > 1 {
            ctx.observe(Observation::Note("publish_split_manifests"));
        }
        for (signed, entries) in publish {
            // The publisher holds every partition in full.
            for e in &entries {
                if e.bytes > 0 {
                    self.store
                        .stored
                        .insert(e.region, RangeSet::full(e.groups()));
                    self.store.content.insert(e.region, e.content_hash);
                }
                self.stored_bytes += e.bytes;
            }
            ctx.observe(Observation::StoredBytes(self.stored_bytes));
            let published = self
                .ep
                .as_mut()
                .is_some_and(|ep| ep.publish(now, signed, entries).is_ok());
            if !published {
                ctx.observe(Observation::Note("publish_failed"));
            }
        }
        self.submit_due_changes(ctx);
        self.share_start(ctx, true);
        self.drain(ctx);
        self.share_scripts(ctx);
        // After the drain: the published transfer records are in the store now.
        if self.is_publisher() {
            ctx.observe(Observation::DataComplete);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, from: RegionCode, msg: ProtoMsg) {
        let now = self.world.now_ms(ctx.now_us());
        let Some(ep) = self.ep.as_ref() else {
            return;
        };
        // First frame on a connection this process has not admitted: the handshake first.
        if ep.region_of(&from) != Some(from) && !self.connect(ctx, from) {
            self.drain(ctx);
            return;
        }
        match msg {
            ProtoMsg::Chunk { manifest, parts } => self.on_chunk(ctx, now, from, manifest, parts),
            ProtoMsg::ReturnFlow(m) => {
                if let ReturnFlowMsg::Receipt(r) = &m {
                    // A receipt recomputes the aggregate over every partition of the transfer.
                    let partitions = self
                        .store
                        .records
                        .get(&r.receipt.manifest)
                        .map_or(0, |rec| rec.entries.len() as u64);
                    let per = ctx.costs().receipt_cpu_ns_per_partition;
                    ctx.charge_cpu_ns(per.saturating_mul(partitions));
                }
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::ReturnFlow(m));
                }
            }
            ProtoMsg::Catalog(m) => {
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Catalog(m));
                }
            }
            ProtoMsg::Revocations(m) => {
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Revocations(m));
                }
            }
            ProtoMsg::Share { msg, hops } => {
                // The sharing scenario counts hops: an act for this node arrived, or one to
                // forward (its hops are remembered while it is held).
                let relayed = match (&msg, self.share.as_mut()) {
                    (ShareMsg::Act(act), Some(actor)) => {
                        let id = actor.act_id(act);
                        (!actor.on_act_arrived(act, id, hops)).then_some(id)
                    }
                    _ => None,
                };
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Share(msg));
                }
                self.drain(ctx);
                if let (Some(id), Some(actor)) = (relayed, self.share.as_mut()) {
                    actor.after_relay(&id, self.store.share_transit.contains_key(&id));
                }
            }
        }
        self.drain(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        self.submit_due_changes(ctx);
        if let Some(ep) = self.ep.as_mut() {
            ep.handle_timeout(now);
        }
        self.drain(ctx);
        self.share_scripts(ctx);
    }

    fn on_crash(&mut self) {
        // Everything in memory is gone — the endpoint with its peers and trust store — and
        // the durable store stays.
        self.ep = None;
        self.certs_verified.clear();
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        // The process verifies its own chain again (its memo died with it).
        self.certs_verified = own_certs(self.me);
        let verify = ctx.costs().signature_verify_cpu_us;
        ctx.charge_cpu_ns(verify.saturating_mul(self.certs_verified.len() as u64 * 1_000));
        let config = self.world.endpoint_config(self.ix);
        let ep = match Endpoint::new(now, config.clone(), self.store.saved(self.me)) {
            Ok((ep, report)) => {
                for _ in &report.failed {
                    ctx.observe(Observation::Note("restore_failed"));
                }
                for _ in 0..report.receipts_skipped {
                    ctx.observe(Observation::Note("receipt_restore_skipped"));
                }
                Some(ep)
            }
            Err(_) => {
                // The store does not replay (it always does here): start empty rather than
                // not at all, and say so.
                ctx.observe(Observation::Note("restore_failed"));
                Endpoint::new(now, config, Saved::default())
                    .ok()
                    .map(|(ep, _)| ep)
            }
        };
        self.ep = ep;
        self.share_start(ctx, false);
        // Retransmissions are due after a restart.
        if let Some(ep) = self.ep.as_mut() {
            ep.handle_timeout(now);
        }
        self.submit_due_changes(ctx);
        self.drain(ctx);
        self.share_scripts(ctx);
    }

    fn next_timer(&self) -> Option<Micros> {
        // A past instant (the protocol's `UnixMs::ZERO`, "now") is 0 here: the engine runs
        // it at once.
        let to_us = |t: UnixMs| self.world.to_us(t);
        [
            self.ep.as_ref().and_then(Endpoint::poll_timeout).map(to_us),
            self.pending_changes.last().copied(),
            self.bulk.as_ref().and_then(|b| b.at),
            self.share.as_ref().and_then(|a| a.next_wakeup()),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t <= self.world.timer_cap_us)
        .min()
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

impl Inspect for ProtoNode {
    fn held(&self) -> Held {
        // The manifests that concern this node: those whose scope contains it (a receiver) or
        // that it contains (a publisher above the scope).
        let relevant: Vec<Hash> = self
            .world
            .manifests
            .iter()
            .filter(|(scope, _)| scope.contains(self.me) || self.me.contains(*scope))
            .map(|(_, h)| *h)
            .collect();
        if relevant.is_empty() {
            return Held::default();
        }
        let rf = self.ep.as_ref().map(|ep| ep.return_flow());
        let mut held = Held {
            complete: relevant
                .iter()
                .all(|h| rf.is_some_and(|rf| rf.is_complete(h))),
            bytes: self.stored_bytes,
            records: 0,
            hash: None,
        };
        // What this node holds, from its durable store and the verified entries it received.
        for hash in &relevant {
            let Some(record) = self.store.records.get(hash) else {
                held.complete = false;
                continue;
            };
            for e in &record.entries {
                let full = e.bytes == 0
                    || self
                        .store
                        .held(e)
                        .is_some_and(|l| l.bytes_of(e.bytes) == e.bytes);
                if full {
                    held.records += e.records;
                }
                if e.region == self.me {
                    held.hash = Some(e.content_hash);
                }
            }
        }
        held
    }

    fn catalog_version(&self, origin: RegionCode) -> u64 {
        let origin = CatalogOrigin {
            region: origin,
            department: CHURN_DEPARTMENT.to_string(),
        };
        self.ep
            .as_ref()
            .and_then(|ep| ep.catalog_sync().origin(&origin))
            .map_or(0, |c| c.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Spread;
    use crate::engine::{Engine, Limits};
    use crate::net::{Fault, NetConfig};
    use crate::run_config::TopologySpec;
    use crate::shell::ShellConfig;
    use crate::time::MICROS_PER_S;

    /// `synthetic:2,2,2,2` with a 1 MiB dataset from national, run to the end; the nodes as
    /// they are then.
    fn run(faults: &[Fault]) -> (Arc<Topology>, Vec<ProtoNode>) {
        let (topo, _, nodes) = run_with(faults, |_| Vec::new());
        (topo, nodes)
    }

    /// [`run`] with the catalog changes `churn` picks, and the run's stats.
    fn run_with(
        faults: &[Fault],
        churn: impl Fn(&Topology) -> Vec<(RegionCode, Micros)>,
    ) -> (Arc<Topology>, crate::engine::Stats, Vec<ProtoNode>) {
        let mut cfg = RunConfig::return_flow(TopologySpec::parse("synthetic:2,2,2,2").unwrap(), 3);
        cfg.dataset_bytes = 1 << 20;
        cfg.dataset_records = 100;
        let topo = Arc::new(cfg.topology.build(cfg.seed).unwrap());
        let layout = Layout::new(
            &topo,
            RegionCode::NATIONAL,
            "t",
            cfg.dataset_bytes,
            cfg.dataset_records,
            Spread::Even,
        );
        let nodes = build_nodes(&topo, &layout, &cfg, &churn(&topo)).unwrap();
        let engine = Engine::new(
            Arc::clone(&topo),
            nodes,
            NetConfig::default(),
            ShellConfig::default(),
            faults,
            Limits::default(),
            cfg.seed,
        );
        let (stats, nodes) = engine.run();
        (topo, stats, nodes)
    }

    fn admitted(node: &ProtoNode) -> BTreeSet<RegionCode> {
        let ep = node.ep.as_ref().expect("running");
        ep.admitted().map(|(_, r)| r).collect()
    }

    /// Admission runs in simnet as on the node: every node ends with its parent and its
    /// children admitted (both ends of each connection ran the handshake), nobody else, and
    /// paid for the certificates it had not verified before: its children's. Every node
    /// probes its parent once: the probe that made the connection is not sent (the node drops
    /// frames for a region not admitted), the one admission prompts is.
    #[test]
    fn both_ends_of_every_link_admit_each_other() {
        let (topo, stats, nodes) = run_with(&[], |_| Vec::new());
        let probes = stats.kinds.get("catalog_probe").map_or(0, |k| k.sent);
        assert_eq!(probes, topo.len() as u64 - 1);
        for (i, &me) in topo.codes().iter().enumerate() {
            let mut expected: BTreeSet<RegionCode> = topo.children(me).iter().copied().collect();
            expected.extend(me.parent());
            assert_eq!(admitted(&nodes[i]), expected, "{me}");
            let mut certs = own_certs(me);
            certs.extend(topo.children(me).iter().copied());
            assert_eq!(nodes[i].certs_verified, certs, "{me}");
            assert!(nodes[i].ep.as_ref().unwrap().return_flow().held().count() == 1);
        }
    }

    /// A crashed city comes back with an endpoint that admits nobody; it connects again as it
    /// needs to, while its peers kept it admitted. Its descendants' receipts, persisted before
    /// the crash, are restored with its transfer (nobody sends them again: all were acked).
    #[test]
    fn a_restarted_node_reconnects_and_restores_its_receipts() {
        let city = RegionCode::parse("1101").unwrap();
        let (topo, nodes) = run(&[Fault::Crash {
            node: city,
            at_us: 30 * MICROS_PER_S,
            restart_us: 40 * MICROS_PER_S,
        }]);
        let ix = topo.codes().binary_search(&city).unwrap();
        let node = &nodes[ix];
        let ep = node.ep.as_ref().expect("restarted");
        // Its catalog sync probes the parent at once, so the parent is admitted again.
        assert!(admitted(node).contains(&RegionCode::parse("11").unwrap()));
        // The parent never dropped it.
        let province = topo
            .codes()
            .binary_search(&RegionCode::parse("11").unwrap())
            .unwrap();
        assert!(admitted(&nodes[province]).contains(&city));
        let (_, hash) = node.world.manifests[0];
        assert!(ep.return_flow().is_complete(&hash));
        let receipts: BTreeSet<RegionCode> = ep
            .return_flow()
            .receipts(&hash)
            .iter()
            .map(|r| r.region)
            .collect();
        let counties: BTreeSet<RegionCode> = topo.children(city).iter().copied().collect();
        assert_eq!(receipts, counties);
        assert_eq!(node.store.receipts[&hash].len(), counties.len());
        // Restoring from the store now hands every persisted receipt back.
        let (_, report) = Endpoint::<RegionCode>::new(
            UnixMs(node.world.epoch_ms + 50_000),
            node.world.endpoint_config(ix),
            node.store.saved(node.me),
        )
        .unwrap();
        assert_eq!((report.transfers, report.receipts), (1, counties.len()));
        assert!(report.failed.is_empty());
    }

    /// A city cut off from its province while its townships change their catalogs, then
    /// crashed: it restarts holding none of its log in memory, and once the cut heals reads
    /// back what its upstream lacks (`ReadLog`) and sends it on. National ends with every
    /// township's version; every node's CatalogSync agrees with its storage.
    #[test]
    fn a_restarted_node_reads_back_the_log_its_upstream_lacks() {
        let city = RegionCode::parse("1101").unwrap();
        let faults = [
            Fault::Partition {
                root: city,
                from_us: MICROS_PER_S / 2,
                until_us: 60 * MICROS_PER_S,
            },
            Fault::Crash {
                node: city,
                at_us: 30 * MICROS_PER_S,
                restart_us: 40 * MICROS_PER_S,
            },
        ];
        let townships = |topo: &Topology| -> Vec<RegionCode> {
            topo.codes()
                .iter()
                .copied()
                .filter(|&c| c.level() == Level::Township && city.contains(c))
                .collect()
        };
        let (topo, stats, nodes) = run_with(&faults, |topo| {
            townships(topo)
                .into_iter()
                .map(|t| (t, MICROS_PER_S))
                .collect()
        });
        let changed = townships(&topo);
        assert!(!changed.is_empty());
        assert!(stats.notes.get("catalog_log_read").is_some_and(|&n| n > 0));
        assert!(!stats.notes.contains_key("catalog_log_unreadable"));
        for &t in &changed {
            assert_eq!(nodes[0].catalog_version(t), 1, "{t} at national");
        }
        for node in &nodes {
            let ep = node.ep.as_ref().expect("running");
            let cs = ep.catalog_sync();
            let store = node.catalog_store();
            assert_eq!(cs.log_len(), store.log_len(), "{}", node.me);
            assert_eq!(cs.origins_len(), store.departments_len(), "{}", node.me);
            for (origin, stored) in store.departments() {
                let held = cs.origin(origin).expect("known to CatalogSync");
                assert_eq!(held.seq, stored.record.seq);
                assert_eq!(held.entries, stored.entries().len() as u64);
            }
        }
        // The city's own upstream window is empty again: everything was acknowledged.
        let ix = topo.codes().binary_search(&city).unwrap();
        let cs = nodes[ix].ep.as_ref().unwrap().catalog_sync();
        assert_eq!(cs.log_bytes_held(), 0);
        assert_eq!(cs.upstream_acked(), Some(cs.log_len()));
    }
}
