//! The discrete-event core: one thread, one priority queue of `(time, seq)` events, one seeded
//! generator. Nothing here knows what a message means; nodes are driven through [`SimNode`],
//! which the protocol adapter implements. Same seed and inputs give the same event order, so
//! the same report byte for byte.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use backflow_topology::{Level, RegionCode, Topology};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::{transmit_us, Fault, NetConfig};

/// Simulated time in microseconds since the start of the run. Microseconds, not milliseconds,
/// so a 16 KiB frame on a 10 Gbit/s link still takes a non-zero time.
pub type Micros = u64;

pub const MICROS_PER_MS: Micros = 1_000;
pub const MICROS_PER_S: Micros = 1_000_000;

/// Kinds of message a node type can send, for the per-kind counters of the report.
pub trait Wire {
    /// Encoded size on the wire, frame header included.
    fn wire_bytes(&self) -> u64;
    /// Short stable name ("announce", "chunk", …) for the report.
    fn kind(&self) -> &'static str;
    /// Regions whose partition *content* this message carries (not mere mentions in a
    /// manifest): the engine checks each is inside the receiver's region.
    fn partitions(&self, out: &mut Vec<RegionCode>);
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
    now: Micros,
    me: RegionCode,
    out: &'a mut Vec<(RegionCode, M)>,
    obs: &'a mut Vec<Observation>,
}

impl<M> Ctx<'_, M> {
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

/// Hard limits of one run (TIGER_STYLE: a limit on everything).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events processed before the run is stopped as runaway.
    pub events_max: u64,
    /// Events queued at once; a run that needs more is misconfigured (e.g. zero latency storm).
    pub queue_max: usize,
    /// Simulated time after which the run stops.
    pub horizon_us: Micros,
    /// Messages one handler call may emit (a node's fan-out plus a window of frames).
    pub outputs_per_call_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The country with one dataset is ~1 M events; 50 M leaves room for loss, faults and
            // churn, and stops a runaway within minutes rather than hours.
            events_max: 50_000_000,
            queue_max: 50_000_000,
            horizon_us: 7 * 24 * 3_600 * MICROS_PER_S,
            outputs_per_call_max: 100_000,
        }
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No event left: the system is quiescent.
    Quiescent,
    HorizonReached,
    EventCapReached,
    QueueCapReached,
    OutputCapReached,
}

#[derive(Clone, Debug)]
enum EventKind<M> {
    /// Boxed so queue entries stay small: the heap moves entries on every push and pop.
    Deliver {
        from: u32,
        to: u32,
        msg: Box<M>,
    },
    Timer {
        node: u32,
    },
    Fault(Fault),
}

struct Event<M> {
    at: Micros,
    seq: u64,
    kind: EventKind<M>,
}

impl<M> PartialEq for Event<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Event<M> {}
impl<M> PartialOrd for Event<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Event<M> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Per message kind counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KindStats {
    pub sent: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub lost: u64,
    pub refused: u64,
}

/// Everything measured during a run; the report is computed from this.
#[derive(Clone, Debug)]
pub struct Stats {
    pub events: u64,
    pub stop: StopReason,
    pub end_us: Micros,
    /// Per node (topology index): when it first reported `DataComplete`.
    pub complete_at: Vec<Option<Micros>>,
    pub stored_now: Vec<u64>,
    pub stored_peak: Vec<u64>,
    pub receipts_complete_at: Option<Micros>,
    /// (changes held, when) at the national node, in order.
    pub catalog_at_national: Vec<(u64, Micros)>,
    /// Bytes sent per (from level, to level).
    pub link_bytes: [[u64; 5]; 5],
    pub link_messages: [[u64; 5]; 5],
    pub kinds: std::collections::BTreeMap<&'static str, KindStats>,
    /// Partition content delivered outside the receiver's region (must stay zero).
    pub leak_count: u64,
    pub leak_examples: Vec<String>,
    pub peak_queue: usize,
    /// Counted [`Observation::Note`]s.
    pub notes: std::collections::BTreeMap<&'static str, u64>,
    /// The publisher's latest view: (when, partitions delivered, partitions expected).
    pub publisher_view: Option<(Micros, u64, u64)>,
}

const LEAK_EXAMPLES_MAX: usize = 16;

/// The engine, generic over the node type.
pub struct Engine<N: SimNode> {
    topo: std::sync::Arc<Topology>,
    nodes: Vec<N>,
    net: NetConfig,
    limits: Limits,
    queue: BinaryHeap<Event<N::Msg>>,
    seq: u64,
    now: Micros,
    rng: ChaCha8Rng,
    timer_at: Vec<Option<Micros>>,
    up: Vec<bool>,
    /// Down windows and crashes currently holding each node down.
    holds: Vec<u32>,
    /// Crashed and not yet restarted (restart runs `on_restart`, not `on_timer`).
    crashed: Vec<bool>,
    /// Roots of subtrees currently cut off from the rest of the network.
    partitions: Vec<RegionCode>,
    /// Per directed link: when its sender side is free again (bandwidth serialisation).
    link_free_at: HashMap<(u32, u32), Micros>,
    /// Per node: when its uplink is free again (only with an egress cap for its tier).
    egress_free_at: Vec<Micros>,
    stats: Stats,
    out: Vec<(RegionCode, N::Msg)>,
    obs: Vec<Observation>,
    scratch: Vec<RegionCode>,
}

impl<N: SimNode> Engine<N> {
    /// `nodes[i]` runs region `topo.codes()[i]`.
    pub fn new(
        topo: std::sync::Arc<Topology>,
        nodes: Vec<N>,
        net: NetConfig,
        faults: &[Fault],
        limits: Limits,
        seed: u64,
    ) -> Engine<N> {
        assert_eq!(nodes.len(), topo.len(), "one node per region");
        let n = nodes.len();
        let mut engine = Engine {
            topo,
            nodes,
            net,
            limits,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            timer_at: vec![None; n],
            up: vec![true; n],
            holds: vec![0; n],
            crashed: vec![false; n],
            partitions: Vec::new(),
            link_free_at: HashMap::new(),
            egress_free_at: vec![0; n],
            stats: Stats {
                events: 0,
                stop: StopReason::Quiescent,
                end_us: 0,
                complete_at: vec![None; n],
                stored_now: vec![0; n],
                stored_peak: vec![0; n],
                receipts_complete_at: None,
                catalog_at_national: Vec::new(),
                link_bytes: [[0; 5]; 5],
                link_messages: [[0; 5]; 5],
                kinds: Default::default(),
                leak_count: 0,
                leak_examples: Vec::new(),
                peak_queue: 0,
                notes: Default::default(),
                publisher_view: None,
            },
            out: Vec::new(),
            obs: Vec::new(),
            scratch: Vec::new(),
        };
        for fault in faults {
            let at = fault.start_us();
            engine.push(at, EventKind::Fault(*fault));
        }
        engine
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    pub fn index_of(&self, code: RegionCode) -> Option<u32> {
        self.topo
            .codes()
            .binary_search(&code)
            .ok()
            .map(|i| i as u32)
    }

    fn push(&mut self, at: Micros, kind: EventKind<N::Msg>) {
        self.seq += 1;
        self.queue.push(Event {
            at,
            seq: self.seq,
            kind,
        });
        self.stats.peak_queue = self.stats.peak_queue.max(self.queue.len());
    }

    /// Runs to quiescence or a limit; returns the measurements.
    pub fn run(mut self) -> (Stats, Vec<N>) {
        for i in 0..self.nodes.len() {
            self.dispatch(i as u32, |node, ctx| node.on_start(ctx));
        }
        while let Some(event) = self.queue.pop() {
            if self.stats.stop != StopReason::Quiescent {
                break;
            }
            if event.at > self.limits.horizon_us {
                self.stats.stop = StopReason::HorizonReached;
                break;
            }
            if self.stats.events >= self.limits.events_max {
                self.stats.stop = StopReason::EventCapReached;
                break;
            }
            if self.queue.len() >= self.limits.queue_max {
                self.stats.stop = StopReason::QueueCapReached;
                break;
            }
            debug_assert!(event.at >= self.now, "time never runs backwards");
            self.now = event.at;
            self.stats.events += 1;
            match event.kind {
                EventKind::Deliver { from, to, msg } => self.deliver(from, to, *msg),
                EventKind::Timer { node } => {
                    if self.timer_at[node as usize] == Some(event.at) {
                        self.timer_at[node as usize] = None;
                        if self.up[node as usize] {
                            self.dispatch(node, |n, ctx| n.on_timer(ctx));
                        }
                    }
                }
                EventKind::Fault(fault) => self.apply_fault(fault),
            }
        }
        self.stats.end_us = self.now;
        (self.stats, self.nodes)
    }

    fn deliver(&mut self, from: u32, to: u32, msg: N::Msg) {
        let kind = msg.kind();
        if !self.reachable(from, to) {
            self.stats.kinds.entry(kind).or_default().refused += 1;
            return;
        }
        self.stats.kinds.entry(kind).or_default().delivered += 1;
        let to_code = self.topo.codes()[to as usize];
        self.scratch.clear();
        msg.partitions(&mut self.scratch);
        for &region in &self.scratch {
            if !to_code.contains(region) {
                self.stats.leak_count += 1;
                if self.stats.leak_examples.len() < LEAK_EXAMPLES_MAX {
                    self.stats.leak_examples.push(format!(
                        "partition {region} delivered to {to_code} at {} us",
                        self.now
                    ));
                }
            }
        }
        let from_code = self.topo.codes()[from as usize];
        self.dispatch(to, |n, ctx| n.on_message(ctx, from_code, msg));
    }

    /// Whether a message between the two nodes gets through right now.
    fn reachable(&self, a: u32, b: u32) -> bool {
        if !self.up[a as usize] || !self.up[b as usize] {
            // A down sender cannot have a connection open either: in-flight data is cut.
            return false;
        }
        let (ca, cb) = (self.topo.codes()[a as usize], self.topo.codes()[b as usize]);
        !self
            .partitions
            .iter()
            .any(|root| root.contains(ca) != root.contains(cb))
    }

    /// Runs one handler on node `i` and turns its outputs into events.
    fn dispatch(&mut self, i: u32, f: impl FnOnce(&mut N, &mut Ctx<'_, N::Msg>)) {
        let me = self.topo.codes()[i as usize];
        let mut out = std::mem::take(&mut self.out);
        let mut obs = std::mem::take(&mut self.obs);
        {
            let mut ctx = Ctx {
                now: self.now,
                me,
                out: &mut out,
                obs: &mut obs,
            };
            f(&mut self.nodes[i as usize], &mut ctx);
        }
        if out.len() > self.limits.outputs_per_call_max {
            self.stats.stop = StopReason::OutputCapReached;
        }
        for (to, msg) in out.drain(..) {
            self.send(i, to, msg);
        }
        for o in obs.drain(..) {
            self.observe(i, o);
        }
        self.out = out;
        self.obs = obs;
        let want = self.nodes[i as usize].next_timer().map(|t| t.max(self.now));
        if want.is_some() && want != self.timer_at[i as usize] {
            self.timer_at[i as usize] = want;
            self.push(want.unwrap_or(self.now), EventKind::Timer { node: i });
        } else if want.is_none() {
            self.timer_at[i as usize] = None;
        }
    }

    fn send(&mut self, from: u32, to_code: RegionCode, msg: N::Msg) {
        let kind = msg.kind();
        let bytes = msg.wire_bytes();
        let Some(to) = self.index_of(to_code) else {
            // Addressing a region that does not exist is a node bug; count it as refused.
            self.stats.kinds.entry(kind).or_default().refused += 1;
            return;
        };
        let from_code = self.topo.codes()[from as usize];
        let link = self.net.link(from_code, to_code);
        let stats = self.stats.kinds.entry(kind).or_default();
        stats.sent += 1;
        stats.bytes += bytes;
        let (lf, lt) = (
            from_code.level().depth() as usize,
            to_code.level().depth() as usize,
        );
        self.stats.link_bytes[lf][lt] += bytes;
        self.stats.link_messages[lf][lt] += 1;
        // Bandwidth: the link carries one message at a time; a message waits for the one before.
        // With a node egress cap, all of the sender's messages also queue on its uplink.
        let link_free = self.link_free_at.get(&(from, to)).copied().unwrap_or(0);
        let egress = self.net.egress_bytes_per_s[lf];
        let egress_free = if egress.is_some() {
            self.egress_free_at[from as usize]
        } else {
            0
        };
        let start = link_free.max(egress_free).max(self.now);
        let on_link = link.transmit_us(bytes);
        let on_egress = egress.map_or(0, |bps| transmit_us(bytes, bps));
        self.link_free_at.insert((from, to), start + on_link);
        if egress.is_some() {
            self.egress_free_at[from as usize] = start + on_egress;
        }
        let arrive = start + on_link.max(on_egress) + link.latency_us;
        if link.loss > 0.0 && self.rng.gen_bool(link.loss) {
            self.stats.kinds.entry(kind).or_default().lost += 1;
            return;
        }
        self.push(
            arrive,
            EventKind::Deliver {
                from,
                to,
                msg: Box::new(msg),
            },
        );
    }

    fn observe(&mut self, i: u32, obs: Observation) {
        let i = i as usize;
        match obs {
            Observation::DataComplete => {
                if self.stats.complete_at[i].is_none() {
                    self.stats.complete_at[i] = Some(self.now);
                }
            }
            Observation::StoredBytes(b) => {
                self.stats.stored_now[i] = b;
                self.stats.stored_peak[i] = self.stats.stored_peak[i].max(b);
            }
            Observation::ReceiptsComplete => {
                if self.stats.receipts_complete_at.is_none() {
                    self.stats.receipts_complete_at = Some(self.now);
                }
            }
            Observation::Note(name) => *self.stats.notes.entry(name).or_default() += 1,
            Observation::PublisherView {
                delivered,
                expected,
            } => self.stats.publisher_view = Some((self.now, delivered, expected)),
            Observation::CatalogChanges(n) => {
                if self.topo.codes()[i].level() == Level::National {
                    self.stats.catalog_at_national.push((n, self.now));
                }
            }
        }
    }

    /// One more down window or crash holds node `i` down.
    fn hold(&mut self, i: u32) {
        let ix = i as usize;
        self.holds[ix] += 1;
        self.up[ix] = false;
    }

    /// Faults on one node may overlap: a node is up when no down window and no crash holds
    /// it. A crash always wipes volatile state (even inside a down window), and the node comes
    /// back through `on_restart` when the last hold ends.
    fn apply_fault(&mut self, fault: Fault) {
        match fault {
            Fault::Down { node, until_us, .. } => {
                if let Some(i) = self.index_of(node) {
                    self.hold(i);
                    self.push(until_us, EventKind::Fault(Fault::Up { node }));
                }
            }
            Fault::Up { node } | Fault::Restart { node } => {
                if let Some(i) = self.index_of(node) {
                    let ix = i as usize;
                    debug_assert!(self.holds[ix] > 0, "release without hold");
                    self.holds[ix] = self.holds[ix].saturating_sub(1);
                    if self.holds[ix] == 0 {
                        self.up[ix] = true;
                        if std::mem::take(&mut self.crashed[ix]) {
                            self.dispatch(i, |n, ctx| n.on_restart(ctx));
                        } else {
                            // Timers that fell due while down fire now.
                            self.dispatch(i, |n, ctx| n.on_timer(ctx));
                        }
                    }
                }
            }
            Fault::Crash {
                node, restart_us, ..
            } => {
                if let Some(i) = self.index_of(node) {
                    let ix = i as usize;
                    self.hold(i);
                    self.nodes[ix].on_crash();
                    self.crashed[ix] = true;
                    self.timer_at[ix] = None;
                    self.push(restart_us, EventKind::Fault(Fault::Restart { node }));
                }
            }
            Fault::Partition { root, until_us, .. } => {
                self.partitions.push(root);
                self.push(until_us, EventKind::Fault(Fault::Heal { root }));
            }
            Fault::Heal { root } => {
                if let Some(p) = self.partitions.iter().position(|&r| r == root) {
                    self.partitions.remove(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use backflow_topology::Fanout;

    use super::*;
    use crate::net::LinkSpec;

    #[derive(Clone, Debug)]
    struct Ping(u64);

    impl Wire for Ping {
        fn wire_bytes(&self) -> u64 {
            self.0
        }
        fn kind(&self) -> &'static str {
            "ping"
        }
        fn partitions(&self, _: &mut Vec<RegionCode>) {}
    }

    /// Records what happened to it; the root pings its first child at start.
    #[derive(Default)]
    struct Probe {
        log: Vec<(&'static str, Micros)>,
    }

    impl SimNode for Probe {
        type Msg = Ping;
        fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
            if ctx.me() == RegionCode::NATIONAL {
                ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
                ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
            }
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
            self.log.push(("message", ctx.now_us()));
        }
        fn on_timer(&mut self, ctx: &mut Ctx<'_, Ping>) {
            self.log.push(("timer", ctx.now_us()));
        }
        fn on_crash(&mut self) {
            self.log.push(("crash", 0));
        }
        fn on_restart(&mut self, ctx: &mut Ctx<'_, Ping>) {
            self.log.push(("restart", ctx.now_us()));
        }
        fn next_timer(&self) -> Option<Micros> {
            None
        }
    }

    fn engine(faults: &[Fault]) -> (Stats, Vec<Probe>) {
        let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
        let nodes = (0..topo.len()).map(|_| Probe::default()).collect();
        let mut net = NetConfig::default();
        // 1 MB/s and 10 ms: a 1,000-byte ping takes 1 ms on the wire.
        net.tiers[0] = LinkSpec::new(10, 8, 0.0);
        Engine::new(topo, nodes, net, faults, Limits::default(), 1).run()
    }

    #[test]
    fn bandwidth_serialises_messages_on_a_link() {
        let (stats, nodes) = engine(&[]);
        // First ping: 1 ms transmit + 10 ms; the second waits for the first to leave.
        assert_eq!(nodes[1].log, vec![("message", 11_000), ("message", 12_000)]);
        assert_eq!(stats.link_bytes[0][1], 2_000);
        assert_eq!(stats.stop, StopReason::Quiescent);
    }

    #[test]
    fn an_egress_cap_serialises_a_nodes_links() {
        let topo = Arc::new(Topology::synthetic(Fanout::fixed(2, 1, 1, 1), 1).unwrap());
        let run = |egress: Option<u64>| {
            let nodes: Vec<Fanned> = (0..topo.len()).map(|_| Fanned::default()).collect();
            let mut net = NetConfig::default();
            net.tiers[0] = LinkSpec::new(10, 8, 0.0);
            net.egress_bytes_per_s[0] = egress;
            let (_, nodes) =
                Engine::new(Arc::clone(&topo), nodes, net, &[], Limits::default(), 1).run();
            [nodes[1].got, nodes[2].got]
        };
        // Separate links: both 1,000-byte pings arrive after 1 ms + 10 ms.
        assert_eq!(run(None), [Some(11_000), Some(11_000)]);
        // One 1 MB/s uplink for both: the second waits for the first.
        assert_eq!(run(Some(1_000_000)), [Some(11_000), Some(12_000)]);
        // A fat uplink: only its 1 µs (rounded up) per message.
        assert_eq!(run(Some(1 << 40)), [Some(11_000), Some(11_001)]);
    }

    /// The root pings both provinces at start; each records when its ping arrived.
    #[derive(Default)]
    struct Fanned {
        got: Option<Micros>,
    }

    impl SimNode for Fanned {
        type Msg = Ping;
        fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
            if ctx.me() == RegionCode::NATIONAL {
                ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
                ctx.send(RegionCode::parse("12").unwrap(), Ping(1_000));
            }
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
            self.got = Some(ctx.now_us());
        }
        fn on_timer(&mut self, _: &mut Ctx<'_, Ping>) {}
        fn on_crash(&mut self) {}
        fn on_restart(&mut self, _: &mut Ctx<'_, Ping>) {}
        fn next_timer(&self) -> Option<Micros> {
            None
        }
    }

    #[test]
    fn overlapping_faults_hold_a_node_until_the_last_ends() {
        let p = RegionCode::parse("11").unwrap();
        let faults = [
            Fault::Down {
                node: p,
                from_us: 0,
                until_us: 100_000,
            },
            Fault::Crash {
                node: p,
                at_us: 50_000,
                restart_us: 70_000,
            },
        ];
        let (stats, nodes) = engine(&faults);
        // Both pings refused (down); the crash inside the window still wipes state, and the
        // node comes back through a restart when the down window ends.
        assert_eq!(nodes[1].log, vec![("crash", 0), ("restart", 100_000)]);
        assert_eq!(stats.kinds["ping"].refused, 2);
    }
}
