//! Reference model: a compact stand-in for the protocol's return-flow and catalog-sync state
//! machines, implementing the same message pattern (announce → want → frames → store →
//! forward → receipts up, skip-level fallback; catalog updates up by watermark). It exists so
//! the engine, scenarios, faults and report can be exercised independently of the protocol
//! crate, and as a cross-check. Reports say which node implementation ran (`"node": "model"`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backflow_topology::{Level, RegionCode, Topology};

use crate::dataset::Layout;
use crate::engine::{Ctx, Observation, SimNode, Wire};
use crate::inspect::{Held, Inspect};
use crate::shell::Plane;
use crate::time::{Micros, MICROS_PER_MS};

/// Knobs of the return-flow behaviour.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Payload bytes per chunk frame (protocol: a few 16 KiB chunk groups).
    pub frame_bytes: u64,
    /// Bytes a child asks for ahead of what it holds (flow-control window).
    pub window_bytes: u64,
    /// No progress for this long → ask again.
    pub retry_us: Micros,
    /// Retries without progress before falling back to the next ancestor (0 = never: strict tree).
    pub fallback_after_retries: u32,
    /// Data-plane parent of each node, if not its region parent (province→county direct links).
    pub upstream_override: BTreeMap<RegionCode, RegionCode>,
    /// Nodes publish/aggregate catalog changes to their parent in batches this often.
    pub catalog_batch_us: Micros,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            frame_bytes: 256 * 1024,
            window_bytes: 4 * 1024 * 1024,
            retry_us: 2_000 * MICROS_PER_MS,
            fallback_after_retries: 3,
            upstream_override: BTreeMap::new(),
            catalog_batch_us: 500 * MICROS_PER_MS,
        }
    }
}

/// Frame header bytes (version tag, region, offsets, chunk-group parent hashes).
const HEADER_BYTES: u64 = 96;

#[derive(Clone, Debug)]
pub enum ModelMsg {
    /// A dataset version is available for `region` (the receiver's region).
    Announce {
        bytes: u64,
    },
    /// Send me bytes `[from, upto)` of my share; `restart` = resend from `from` (loss/fallback).
    Want {
        region: RegionCode,
        from: u64,
        upto: u64,
        restart: bool,
    },
    /// Bytes `[offset, offset+len)` of `region`'s share.
    Frame {
        region: RegionCode,
        offset: u64,
        len: u64,
    },
    /// The announce reached the child (it will pull, or already holds the data).
    AnnounceAck,
    /// `region` and its whole data-plane subtree hold their shares, verified.
    Receipt {
        region: RegionCode,
    },
    ReceiptAck {
        region: RegionCode,
    },
    /// Catalog changes (origin, version) after the sender's log position `base`.
    Catalog {
        base: u64,
        changes: Vec<(RegionCode, u64)>,
    },
    CatalogAck {
        upto: u64,
    },
}

impl Wire for ModelMsg {
    fn wire_bytes(&self) -> u64 {
        match self {
            ModelMsg::Announce { .. } => 400,
            ModelMsg::Want { .. } => 64,
            ModelMsg::AnnounceAck => 48,
            ModelMsg::Frame { len, .. } => HEADER_BYTES + len,
            ModelMsg::Receipt { .. } => 160,
            ModelMsg::ReceiptAck { .. } => 48,
            ModelMsg::Catalog { changes, .. } => 64 + 2_048 * changes.len() as u64,
            ModelMsg::CatalogAck { .. } => 48,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            ModelMsg::Announce { .. } => "announce",
            ModelMsg::Want { .. } => "want",
            ModelMsg::AnnounceAck => "announce_ack",
            ModelMsg::Frame { .. } => "chunk",
            ModelMsg::Receipt { .. } => "receipt",
            ModelMsg::ReceiptAck { .. } => "receipt_ack",
            ModelMsg::Catalog { .. } => "catalog_update",
            ModelMsg::CatalogAck { .. } => "catalog_ack",
        }
    }
    fn partitions(&self, out: &mut Vec<RegionCode>) {
        if let ModelMsg::Frame { region, .. } = self {
            out.push(*region);
        }
    }
    fn plane(&self) -> Plane {
        match self {
            ModelMsg::Frame { len, .. } => Plane::Chunk {
                payload_bytes: *len,
                runs: 1,
            },
            // The model signs nothing, but it stands for the protocol: charge what it would.
            ModelMsg::Announce { .. } | ModelMsg::Receipt { .. } => Plane::Control {
                verifies: 1,
                signs: u32::from(matches!(self, ModelMsg::Receipt { .. })),
            },
            _ => Plane::Control {
                verifies: 0,
                signs: 0,
            },
        }
    }
}

/// What the run shares between nodes (read-only).
pub struct World {
    pub topo: Arc<Topology>,
    pub layout: Layout,
    pub cfg: ModelConfig,
    /// Where the dataset is published; `None` runs no return-flow (catalog churn only).
    pub publisher: Option<RegionCode>,
    /// Catalog churn: `(township, at)` changes to inject.
    pub catalog_changes: Vec<(RegionCode, Micros)>,
}

impl World {
    fn ix(&self, code: RegionCode) -> usize {
        self.topo.codes().binary_search(&code).unwrap_or(0)
    }
}

/// Per child: what we have promised and sent.
#[derive(Clone, Copy, Debug, Default)]
struct Serving {
    sent: u64,
    allowed: u64,
}

/// Changes per catalog batch message (protocol: `UPDATES_PER_BATCH_MAX`).
const CATALOG_BATCH_MAX: usize = 32;

pub struct ModelNode {
    world: Arc<World>,
    me: RegionCode,
    ix: usize,
    // Durable (survives a crash: it is in the node's store).
    have: u64,
    announced: bool,
    receipts: BTreeSet<RegionCode>,
    catalog_log: Vec<(RegionCode, u64)>,
    catalog_view: BTreeMap<RegionCode, u64>,
    // Volatile.
    receipt_acked: bool,
    catalog_acked: usize,
    upstream: Option<RegionCode>,
    requested: u64,
    retries: u32,
    serving: BTreeMap<RegionCode, Serving>,
    /// Children announced to that have not acknowledged, with attempts so far.
    announce_wait: BTreeMap<RegionCode, u32>,
    next_retry: Option<Micros>,
    announce_retry: Option<Micros>,
    catalog_flush: Option<Micros>,
    /// Local catalog changes still to make, latest first (so `pop` gives the next).
    pending_local_changes: Vec<Micros>,
}

impl ModelNode {
    pub fn new(world: Arc<World>, ix: usize) -> ModelNode {
        let me = world.topo.codes()[ix];
        let mut pending_local_changes: Vec<Micros> = world
            .catalog_changes
            .iter()
            .filter(|(t, _)| *t == me)
            .map(|(_, at)| *at)
            .collect();
        pending_local_changes.sort_unstable_by(|a, b| b.cmp(a));
        ModelNode {
            world,
            me,
            ix,
            have: 0,
            announced: false,
            receipts: BTreeSet::new(),
            catalog_log: Vec::new(),
            catalog_view: BTreeMap::new(),
            receipt_acked: false,
            catalog_acked: 0,
            upstream: None,
            requested: 0,
            retries: 0,
            serving: BTreeMap::new(),
            announce_wait: BTreeMap::new(),
            next_retry: None,
            announce_retry: None,
            catalog_flush: None,
            pending_local_changes,
        }
    }

    fn share(&self) -> u64 {
        self.world.layout.parts[self.ix].bytes
    }

    /// Whether the node holds its whole share.
    pub fn complete(&self) -> bool {
        self.announced && self.have >= self.share()
    }

    /// Bytes held for the dataset.
    pub fn stored(&self) -> u64 {
        self.have
    }

    /// The catalog versions this node's aggregated catalog holds, per origin.
    pub fn catalog(&self) -> &BTreeMap<RegionCode, u64> {
        &self.catalog_view
    }

    fn data_parent(&self) -> Option<RegionCode> {
        if Some(self.me) == self.world.publisher {
            return None;
        }
        self.world
            .cfg
            .upstream_override
            .get(&self.me)
            .copied()
            .or_else(|| self.me.parent())
    }

    /// Children on the data plane: region children, redirected per `upstream_override`.
    fn data_children_of(world: &World, node: RegionCode) -> Vec<RegionCode> {
        let mut out: Vec<RegionCode> = world
            .topo
            .children(node)
            .iter()
            .copied()
            .filter(|c| !world.cfg.upstream_override.contains_key(c))
            .collect();
        for (child, up) in &world.cfg.upstream_override {
            if *up == node {
                out.push(*child);
            }
        }
        out
    }

    fn data_children(&self) -> Vec<RegionCode> {
        Self::data_children_of(&self.world, self.me)
    }

    /// Bytes of `child`'s share that we hold (a prefix of it).
    fn available_for(&self, child: RegionCode) -> u64 {
        let w = &self.world;
        let len = w.layout.parts[w.ix(child)].bytes;
        // The child's share sits inside ours at an offset that may pass through intermediate
        // regions (skip-level and direct links jump over one or more tiers).
        let mut off = 0;
        let mut code = child;
        while code != self.me {
            off += w.layout.offset_in_parent[w.ix(code)];
            let Some(p) = code.parent() else { break };
            code = p;
        }
        self.have.saturating_sub(off).min(len)
    }

    fn serve(&mut self, ctx: &mut Ctx<'_, ModelMsg>, child: RegionCode) {
        let avail = self.available_for(child);
        let frame = self.world.cfg.frame_bytes;
        let Some(s) = self.serving.get_mut(&child) else {
            return;
        };
        let limit = avail.min(s.allowed);
        while s.sent < limit {
            let len = (limit - s.sent).min(frame);
            ctx.send(
                child,
                ModelMsg::Frame {
                    region: child,
                    offset: s.sent,
                    len,
                },
            );
            s.sent += len;
        }
    }

    fn serve_all(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        let kids: Vec<RegionCode> = self.serving.keys().copied().collect();
        for k in kids {
            self.serve(ctx, k);
        }
    }

    fn announce_to(&mut self, ctx: &mut Ctx<'_, ModelMsg>, child: RegionCode) {
        let bytes = self.world.layout.parts[self.world.ix(child)].bytes;
        ctx.send(child, ModelMsg::Announce { bytes });
        self.announce_wait.entry(child).or_insert(0);
        if self.announce_retry.is_none() {
            self.announce_retry = Some(ctx.now_us() + self.world.cfg.retry_us);
        }
    }

    fn announce_down(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        for child in self.data_children() {
            self.announce_to(ctx, child);
        }
    }

    fn request(&mut self, ctx: &mut Ctx<'_, ModelMsg>, restart: bool) {
        let Some(up) = self.upstream else { return };
        if self.complete() {
            return;
        }
        let share = self.share();
        let window = self.world.cfg.window_bytes;
        let upto = (self.have + window).min(share);
        let top_up =
            upto >= self.requested + window / 2 || (upto == share && self.requested < share);
        if restart || top_up {
            ctx.send(
                up,
                ModelMsg::Want {
                    region: self.me,
                    from: self.have,
                    upto,
                    restart,
                },
            );
            self.requested = upto;
        }
        self.next_retry = Some(ctx.now_us() + self.world.cfg.retry_us);
    }

    /// Complete, and every data child has receipted its subtree.
    fn ready_to_receipt(&self) -> bool {
        self.complete()
            && self
                .data_children()
                .iter()
                .all(|c| self.receipts.contains(c))
    }

    fn maybe_receipt(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        if !self.ready_to_receipt() || self.receipt_acked {
            return;
        }
        if Some(self.me) == self.world.publisher {
            self.receipt_acked = true;
            ctx.observe(Observation::ReceiptsComplete);
            return;
        }
        // The data parent must hear it (it aggregates our subtree), whoever served us; the
        // current upstream (after a fallback) is told too, so it stops re-announcing.
        let parent = self.data_parent();
        if let Some(p) = parent {
            ctx.send(p, ModelMsg::Receipt { region: self.me });
        }
        if let Some(up) = self.upstream.filter(|u| Some(*u) != parent) {
            ctx.send(up, ModelMsg::Receipt { region: self.me });
        }
        self.next_retry = Some(ctx.now_us() + self.world.cfg.retry_us);
    }

    /// Next ancestor above the current upstream, within the publisher's region; wraps to the
    /// data parent past the top (the parent may be back).
    fn fallback(&mut self) {
        let next = self
            .upstream
            .and_then(|u| u.parent())
            .filter(|p| self.world.publisher.is_some_and(|top| top.contains(*p)));
        self.upstream = next.or_else(|| self.data_parent());
        self.retries = 0;
    }

    fn schedule_catalog(&mut self, now: Micros) {
        let next_local = self.pending_local_changes.last().copied();
        let retry = (self.catalog_acked < self.catalog_log.len()
            && self.me.level() != Level::National)
            .then_some(now + self.world.cfg.retry_us);
        self.catalog_flush = match (next_local, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn catalog_tick(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        let now = ctx.now_us();
        let mut new = false;
        while self
            .pending_local_changes
            .last()
            .is_some_and(|&at| at <= now)
        {
            self.pending_local_changes.pop();
            let v = self.catalog_view.get(&self.me).copied().unwrap_or(0) + 1;
            self.catalog_view.insert(self.me, v);
            self.catalog_log.push((self.me, v));
            new = true;
        }
        if new && self.me.level() == Level::National {
            ctx.observe(Observation::CatalogChanges(
                self.catalog_view.values().sum(),
            ));
        }
        if self.me.level() != Level::National && self.catalog_acked < self.catalog_log.len() {
            if let Some(p) = self.me.parent() {
                let changes: Vec<(RegionCode, u64)> = self.catalog_log[self.catalog_acked..]
                    .iter()
                    .take(CATALOG_BATCH_MAX)
                    .copied()
                    .collect();
                ctx.send(
                    p,
                    ModelMsg::Catalog {
                        base: self.catalog_acked as u64,
                        changes,
                    },
                );
            }
        }
        self.schedule_catalog(now);
    }
}

impl SimNode for ModelNode {
    type Msg = ModelMsg;

    fn on_start(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        if Some(self.me) == self.world.publisher {
            self.announced = true;
            self.have = self.share();
            ctx.observe(Observation::StoredBytes(self.have));
            ctx.observe(Observation::DataComplete);
            self.announce_down(ctx);
            self.maybe_receipt(ctx);
        }
        self.schedule_catalog(ctx.now_us());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, ModelMsg>, from: RegionCode, msg: ModelMsg) {
        let now = ctx.now_us();
        match msg {
            ModelMsg::Announce { bytes } => {
                if bytes != self.share() || !from.contains(self.me) {
                    return; // Not ours: a real node rejects it on the manifest.
                }
                ctx.send(from, ModelMsg::AnnounceAck);
                if self.complete() {
                    // The announcer may have lost our receipt, or is new upstream: tell it.
                    if self.ready_to_receipt() {
                        ctx.send(from, ModelMsg::Receipt { region: self.me });
                    }
                    return;
                }
                let first = !self.announced;
                self.announced = true;
                if self.upstream.is_none() {
                    self.upstream = Some(from);
                    self.request(ctx, true);
                }
                if first {
                    // Cut-through: children can start pulling while we are still receiving.
                    self.announce_down(ctx);
                }
            }
            ModelMsg::AnnounceAck => {
                self.announce_wait.remove(&from);
            }
            ModelMsg::Want {
                region,
                from: start,
                upto,
                restart,
            } => {
                if !self.me.contains(region) || region == self.me || !self.announced {
                    return; // Never serve outside our region.
                }
                self.announce_wait.remove(&region);
                let s = self.serving.entry(region).or_default();
                if restart {
                    s.sent = start;
                    s.allowed = upto;
                } else {
                    s.allowed = s.allowed.max(upto);
                }
                self.serve(ctx, region);
            }
            ModelMsg::Frame {
                region,
                offset,
                len,
            } => {
                if region != self.me || offset != self.have || Some(from) != self.upstream {
                    return; // Out of order (a loss before it) or stale: the retry resends.
                }
                self.have += len;
                self.retries = 0;
                ctx.observe(Observation::StoredBytes(self.have));
                if self.complete() {
                    ctx.observe(Observation::DataComplete);
                    self.next_retry = None;
                    self.maybe_receipt(ctx);
                } else {
                    self.request(ctx, false);
                }
                self.serve_all(ctx);
            }
            ModelMsg::Receipt { region } => {
                if !self.me.contains(region) || region == self.me {
                    return;
                }
                ctx.send(from, ModelMsg::ReceiptAck { region });
                self.serving.remove(&region);
                self.announce_wait.remove(&region);
                if self.receipts.insert(region) {
                    self.maybe_receipt(ctx);
                }
            }
            ModelMsg::ReceiptAck { region } => {
                // Only the data parent's ack ends the retries (see `maybe_receipt`).
                if region == self.me && Some(from) == self.data_parent() {
                    self.receipt_acked = true;
                    if self.complete() {
                        self.next_retry = None;
                    }
                }
            }
            ModelMsg::Catalog { base, changes } => {
                // Idempotent: apply each (origin, version) as a max; ack the sender's position.
                let mut new = false;
                for (origin, v) in &changes {
                    if !self.me.contains(*origin) {
                        continue;
                    }
                    let cur = self.catalog_view.entry(*origin).or_default();
                    if *v > *cur {
                        *cur = *v;
                        self.catalog_log.push((*origin, *v));
                        new = true;
                    }
                }
                ctx.send(
                    from,
                    ModelMsg::CatalogAck {
                        upto: base + changes.len() as u64,
                    },
                );
                if new {
                    if self.me.level() == Level::National {
                        ctx.observe(Observation::CatalogChanges(
                            self.catalog_view.values().sum(),
                        ));
                    } else {
                        // Batch: forward after a short delay so siblings' changes travel together.
                        let at = now + self.world.cfg.catalog_batch_us;
                        self.catalog_flush = Some(self.catalog_flush.map_or(at, |t| t.min(at)));
                    }
                }
            }
            ModelMsg::CatalogAck { upto } => {
                let upto = (upto as usize).min(self.catalog_log.len());
                self.catalog_acked = self.catalog_acked.max(upto);
                if self.catalog_acked < self.catalog_log.len() {
                    self.catalog_tick(ctx);
                } else {
                    self.schedule_catalog(now);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        let now = ctx.now_us();
        if self.catalog_flush.is_some_and(|t| t <= now) {
            self.catalog_flush = None;
            self.catalog_tick(ctx);
        }
        if self.announce_retry.is_some_and(|t| t <= now) {
            self.announce_retry = None;
            let limit = self.world.cfg.fallback_after_retries;
            let waiting: Vec<(RegionCode, u32)> =
                self.announce_wait.iter().map(|(k, v)| (*k, *v)).collect();
            for (child, attempts) in waiting {
                self.announce_wait.insert(child, attempts + 1);
                self.announce_to(ctx, child);
                if limit > 0 && attempts + 1 == limit {
                    // Skip-level fallback, push side: the child stays unreachable, so tell
                    // its children that they can pull from us.
                    for grandchild in Self::data_children_of(&self.world, child) {
                        self.announce_to(ctx, grandchild);
                    }
                }
            }
        }
        if self.next_retry.is_some_and(|t| t <= now) {
            self.next_retry = None;
            if self.complete() {
                self.maybe_receipt(ctx);
            } else if self.announced {
                self.retries += 1;
                let limit = self.world.cfg.fallback_after_retries;
                if limit > 0 && self.retries >= limit {
                    self.fallback();
                }
                self.request(ctx, true);
            }
        }
    }

    fn on_crash(&mut self) {
        self.upstream = None;
        self.requested = 0;
        self.retries = 0;
        self.serving.clear();
        self.announce_wait.clear();
        self.next_retry = None;
        self.announce_retry = None;
        self.catalog_flush = None;
        self.receipt_acked = false;
        // The acked watermark is volatile: resending from 0 is safe (updates are idempotent).
        self.catalog_acked = 0;
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, ModelMsg>) {
        if self.announced {
            if !self.complete() {
                self.upstream = self.data_parent();
                self.request(ctx, true);
            }
            // Children may have been waiting on us: tell them again.
            self.announce_down(ctx);
            self.maybe_receipt(ctx);
        } else if Some(self.me) == self.world.publisher {
            self.on_start(ctx);
        }
        self.schedule_catalog(ctx.now_us());
        if self.catalog_acked < self.catalog_log.len() {
            self.catalog_flush = Some(ctx.now_us());
        }
    }

    fn next_timer(&self) -> Option<Micros> {
        [self.next_retry, self.announce_retry, self.catalog_flush]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Inspect for ModelNode {
    fn held(&self) -> Held {
        let complete = self.complete();
        Held {
            complete,
            bytes: self.have,
            // The model moves bytes, not records: a complete share carries its records.
            records: if complete {
                self.world.layout.parts[self.ix].records
            } else {
                0
            },
            hash: None,
        }
    }

    fn catalog_version(&self, origin: RegionCode) -> u64 {
        self.catalog_view.get(&origin).copied().unwrap_or(0)
    }
}
