//! The node's side of the engine: what a node type must implement ([`SimNode`]), what its
//! messages must tell ([`Wire`]), the handle it gets while handling an input ([`Ctx`]) and
//! what it reports about itself ([`Observation`]).

use backflow_topology::RegionCode;

use crate::shell::{Costs, Plane};
use crate::time::Micros;

/// Kinds of message a node type can send, for the per-kind counters of the report.
pub trait Wire {
    /// Encoded size on the wire, frame header included (the transport's own overhead is
    /// added by the engine, see [`Costs::wire_bytes`]).
    fn wire_bytes(&self) -> u64;
    /// Short stable name ("announce", "chunk", …) for the report.
    fn kind(&self) -> &'static str;
    /// Regions whose partition *content* this message carries (not mere mentions in a
    /// manifest): the engine checks each is inside the receiver's region.
    fn partitions(&self, out: &mut Vec<RegionCode>);
    /// Control or data plane, and what handling it costs.
    fn plane(&self) -> Plane;
}

/// What a node reports about itself; the engine turns it into metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The node holds, verified, every partition of its own region (its subtree's data).
    DataComplete,
    /// Bytes of payload the node now stores (current total, not a delta).
    StoredBytes(u64),
    /// The publisher's receipts now cover every region of the dataset.
    ReceiptsComplete,
    /// Catalog changes from the churn scenario that this node's aggregated catalog now holds.
    CatalogChanges(u64),
    /// A protocol event worth counting (fallbacks, rejections), by name.
    Note(&'static str),
    /// The publisher's aggregated receipts now count `delivered` of `expected` partitions.
    PublisherView { delivered: u64, expected: u64 },
}

/// The handle a node gets while handling one input: the clock, and where to put outputs.
pub struct Ctx<'a, M> {
    pub(super) now: Micros,
    pub(super) me: RegionCode,
    pub(super) costs: &'a Costs,
    /// Extra CPU the handler declared (state-machine work the engine cannot see), ns.
    pub(super) charged_ns: u64,
    pub(super) out: &'a mut Vec<(RegionCode, M)>,
    pub(super) obs: &'a mut Vec<Observation>,
}

impl<M> Ctx<'_, M> {
    /// The node's clock: when its CPU got to this input (at or after the event's time).
    pub fn now_us(&self) -> Micros {
        self.now
    }
    pub fn me(&self) -> RegionCode {
        self.me
    }
    pub fn send(&mut self, to: RegionCode, msg: M) {
        self.out.push((to, msg));
    }
    pub fn observe(&mut self, obs: Observation) {
        self.obs.push(obs);
    }
    /// The run's cost model (for work only the node can size, e.g. per partition).
    pub fn costs(&self) -> &Costs {
        self.costs
    }
    /// This handler did `ns` of CPU work beyond the per-message costs: its outputs leave
    /// that much later and the node is busy that much longer.
    pub fn charge_cpu_ns(&mut self, ns: u64) {
        self.charged_ns = self.charged_ns.saturating_add(ns);
    }
}

/// A node as the engine sees it: sans-IO, deterministic, time as an input.
pub trait SimNode {
    type Msg: Wire;
    /// Called once at time 0 (publishers publish here).
    fn on_start(&mut self, ctx: &mut Ctx<'_, Self::Msg>);
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self::Msg>, from: RegionCode, msg: Self::Msg);
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self::Msg>);
    /// Process dies: everything not durably stored is lost.
    fn on_crash(&mut self);
    /// Process starts again from its durable store.
    fn on_restart(&mut self, ctx: &mut Ctx<'_, Self::Msg>);
    /// When the node next wants `on_timer` (absolute), if at all.
    fn next_timer(&self) -> Option<Micros>;
}
