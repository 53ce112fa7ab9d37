//! The discrete-event core: one thread, one priority queue of `(time, seq)` events, one seeded
//! generator. Nothing here knows what a message means; nodes are driven through [`SimNode`],
//! which the protocol adapter implements. Same seed and inputs give the same event order, so
//! the same report byte for byte.
//!
//! Besides links and faults the engine plays the node's shell (see [`crate::shell`]): control
//! frames go through a per-peer [`Outbox`] exactly as the node's do, each one holding a stream
//! of its connection until its response would be back; a connection whose streams exceed the
//! muxer's limit is closed with everything on it; and every node spends CPU time on what it
//! handles and sends, so a busy node answers late.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use backflow_protocol::outbox::Outbox;
use backflow_topology::{Level, RegionCode, Topology};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::{transmit_us, Fault, NetConfig};
use crate::shell::{
    Costs, NodeCpu, Plane, ShellConfig, NON_CONTROL_STREAMS_PER_CONNECTION,
    STREAMS_PER_CONNECTION_MAX,
};
use crate::time::{Micros, MICROS_PER_S};

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
    now: Micros,
    me: RegionCode,
    costs: &'a Costs,
    /// Extra CPU the handler declared (state-machine work the engine cannot see), ns.
    charged_ns: u64,
    out: &'a mut Vec<(RegionCode, M)>,
    obs: &'a mut Vec<Observation>,
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
        /// Bytes on the wire (for the receiver's decoding cost).
        bytes: u64,
        /// The connection's generation when sent: a frame outlives no connection close.
        gen: u32,
        /// The control request's id (its stream), `None` for chunk frames.
        request: Option<u64>,
    },
    /// A chunk frame the receiver's pool has verified and stored: its state-machine step.
    Process {
        from: u32,
        to: u32,
        msg: Box<M>,
        /// The receiver's incarnation at delivery (a crash in between loses the frame).
        incarnation: u32,
    },
    Timer {
        node: u32,
    },
    /// Control requests `from` → `to` have completed by now: the outbox may send queued ones.
    ControlWake {
        from: u32,
        to: u32,
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

/// The event queue, apart from the rest of the engine so it can be pushed to while a
/// connection is borrowed.
struct Events<M> {
    heap: BinaryHeap<Event<M>>,
    seq: u64,
    peak: usize,
}

impl<M> Events<M> {
    fn push(&mut self, at: Micros, kind: EventKind<M>) {
        self.seq += 1;
        self.heap.push(Event {
            at,
            seq: self.seq,
            kind,
        });
        self.peak = self.peak.max(self.heap.len());
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

/// The control plane as the node's shell would see it (see [`crate::shell`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ControlStats {
    /// Most control requests in flight at once on one direction of one connection.
    pub streams_max_per_direction: u64,
    /// Most control requests in flight at once on one connection, both directions.
    pub streams_max_per_connection: u64,
    /// Connections closed because their streams would have exceeded the muxer's limit.
    pub connection_resets: u64,
    /// The first few resets: where and when.
    pub reset_examples: Vec<String>,
    /// Messages (any plane) lost because their connection was closed under them (stream
    /// limit or a crashed end).
    pub frames_lost_to_closed_connections: u64,
    /// Control frames that waited in an outbox for a free slot.
    pub frames_queued: u64,
    /// Most control frames waiting for one peer at once.
    pub queued_max: u64,
    /// Longest wait of a control frame in an outbox.
    pub queue_wait_max_us: Micros,
    /// Queued control frames dropped (the oldest, when a peer's queue was full).
    pub outbox_dropped: u64,
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
    pub control: ControlStats,
    /// Per node: CPU time used, µs.
    pub cpu_busy_us: Vec<u64>,
}

const LEAK_EXAMPLES_MAX: usize = 16;
const RESET_EXAMPLES_MAX: usize = 8;

/// A control frame waiting in an outbox (the outbox itself holds only its request id).
struct Queued<M> {
    id: u64,
    msg: M,
    bytes: u64,
    since: Micros,
}

/// One direction of a connection.
struct Direction<M> {
    /// When the sender side is free again (bandwidth serialisation).
    link_free_at: Micros,
    /// The sender's outbox for this peer: the protocol's own, as the node uses it (its frames
    /// are the 8-byte request ids of the messages in `queued`).
    outbox: Outbox<u32, u64>,
    queued: VecDeque<Queued<M>>,
    /// Control requests sent and not yet completed.
    open: u64,
    /// Completions known (the request was handled, lost or refused) but not yet applied:
    /// (when the response or failure reaches the sender, request id). Applied lazily — before
    /// the next frame is offered — or by a wake-up while frames are queued.
    pending: BinaryHeap<Reverse<(Micros, u64)>>,
    wake_at: Option<Micros>,
}

impl<M> Default for Direction<M> {
    fn default() -> Self {
        Direction {
            link_free_at: 0,
            outbox: Outbox::default(),
            queued: VecDeque::new(),
            open: 0,
            pending: BinaryHeap::new(),
            wake_at: None,
        }
    }
}

impl<M> Direction<M> {
    /// Requests still open at `at`.
    fn open_at(&self, at: Micros) -> u64 {
        let done = self
            .pending
            .iter()
            .filter(|Reverse((c, _))| *c <= at)
            .count();
        self.open.saturating_sub(done as u64)
    }

    /// The connection closed: every stream and queued frame is gone; bandwidth stays booked.
    fn close(&mut self) -> u64 {
        let lost = self.queued.len() as u64;
        *self = Direction {
            link_free_at: self.link_free_at,
            ..Direction::default()
        };
        lost
    }
}

/// The connection between two nodes (one per pair, both directions, as libp2p keeps it).
struct Conn<M> {
    /// Bumped each time the connection closes: frames of an older generation die with it.
    gen: u32,
    /// The endpoints' incarnations (lower index first): a crashed end closed it.
    incarnations: [u32; 2],
    /// `dirs[0]`: lower index → higher; `dirs[1]`: the other way.
    dirs: [Direction<M>; 2],
}

/// Key and direction of the connection carrying `from` → `to`.
fn conn_key(from: u32, to: u32) -> ((u32, u32), usize) {
    if from < to {
        ((from, to), 0)
    } else {
        ((to, from), 1)
    }
}

/// The engine, generic over the node type.
pub struct Engine<N: SimNode> {
    topo: std::sync::Arc<Topology>,
    nodes: Vec<N>,
    net: NetConfig,
    shell: ShellConfig,
    limits: Limits,
    events: Events<N::Msg>,
    now: Micros,
    rng: ChaCha8Rng,
    timer_at: Vec<Option<Micros>>,
    up: Vec<bool>,
    /// Down windows and crashes currently holding each node down.
    holds: Vec<u32>,
    /// Crashed and not yet restarted (restart runs `on_restart`, not `on_timer`).
    crashed: Vec<bool>,
    /// Crashes so far per node: connections and frames of an earlier incarnation are void.
    incarnation: Vec<u32>,
    /// Roots of subtrees currently cut off from the rest of the network.
    partitions: Vec<RegionCode>,
    conns: HashMap<(u32, u32), Conn<N::Msg>>,
    next_request: u64,
    /// Per node: when its uplink is free again (only with an egress cap for its tier).
    egress_free_at: Vec<Micros>,
    cpu: Vec<NodeCpu>,
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
        shell: ShellConfig,
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
            shell,
            limits,
            events: Events {
                heap: BinaryHeap::new(),
                seq: 0,
                peak: 0,
            },
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            timer_at: vec![None; n],
            up: vec![true; n],
            holds: vec![0; n],
            crashed: vec![false; n],
            incarnation: vec![0; n],
            partitions: Vec::new(),
            conns: HashMap::new(),
            next_request: 0,
            egress_free_at: vec![0; n],
            cpu: vec![NodeCpu::default(); n],
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
                control: ControlStats::default(),
                cpu_busy_us: Vec::new(),
            },
            out: Vec::new(),
            obs: Vec::new(),
            scratch: Vec::new(),
        };
        for fault in faults {
            let at = fault.start_us();
            engine.events.push(at, EventKind::Fault(*fault));
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

    /// Runs to quiescence or a limit; returns the measurements.
    pub fn run(mut self) -> (Stats, Vec<N>) {
        for i in 0..self.nodes.len() {
            self.dispatch(i as u32, 0, 0, |node, ctx| node.on_start(ctx));
        }
        while let Some(event) = self.events.heap.pop() {
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
            if self.events.heap.len() >= self.limits.queue_max {
                self.stats.stop = StopReason::QueueCapReached;
                break;
            }
            debug_assert!(event.at >= self.now, "time never runs backwards");
            self.now = event.at;
            self.stats.events += 1;
            match event.kind {
                EventKind::Deliver {
                    from,
                    to,
                    msg,
                    bytes,
                    gen,
                    request,
                } => self.deliver(from, to, *msg, bytes, gen, request),
                EventKind::Process {
                    from,
                    to,
                    msg,
                    incarnation,
                } => self.process_chunk(from, to, *msg, incarnation),
                EventKind::Timer { node } => {
                    if self.timer_at[node as usize] == Some(event.at) {
                        self.timer_at[node as usize] = None;
                        if self.up[node as usize] {
                            self.dispatch(node, 0, self.now, |n, ctx| n.on_timer(ctx));
                        }
                    }
                }
                EventKind::ControlWake { from, to } => self.wake(from, to),
                EventKind::Fault(fault) => self.apply_fault(fault),
            }
        }
        self.stats.end_us = self.now;
        self.stats.peak_queue = self.events.peak;
        self.stats.cpu_busy_us = self.cpu.iter().map(|c| c.busy_us).collect();
        (self.stats, self.nodes)
    }

    /// Makes sure the connection between `a` and `b` exists, closed first if an end crashed
    /// since it was last used; returns its key.
    fn touch(&mut self, a: u32, b: u32) -> (u32, u32) {
        let (key, _) = conn_key(a, b);
        let now_inc = [
            self.incarnation[key.0 as usize],
            self.incarnation[key.1 as usize],
        ];
        let conn = self.conns.entry(key).or_insert_with(|| Conn {
            gen: 0,
            incarnations: now_inc,
            dirs: [Direction::default(), Direction::default()],
        });
        if conn.incarnations != now_inc {
            // A process died: its connections closed with it (the node's `ConnectionClosed`
            // forgets the peer's outbox).
            conn.incarnations = now_inc;
            conn.gen = conn.gen.wrapping_add(1);
            let lost: u64 = conn.dirs.iter_mut().map(|d| d.close()).sum();
            self.stats.control.frames_lost_to_closed_connections += lost;
        }
        key
    }

    fn deliver(
        &mut self,
        from: u32,
        to: u32,
        msg: N::Msg,
        bytes: u64,
        gen: u32,
        request: Option<u64>,
    ) {
        let kind = msg.kind();
        let key = self.touch(from, to);
        if self.conns.get(&key).is_none_or(|c| c.gen != gen) {
            // Sent on a connection that has closed since: gone with it (its stream state was
            // cleared when it closed, so no completion is due).
            let k = self.stats.kinds.entry(kind).or_default();
            k.refused += 1;
            self.stats.control.frames_lost_to_closed_connections += 1;
            return;
        }
        if !self.reachable(from, to) {
            self.stats.kinds.entry(kind).or_default().refused += 1;
            if let Some(id) = request {
                // The request fails; the sender learns it when its answer would have come.
                let back = self.latency(from, to);
                self.complete(from, to, id, self.now.saturating_add(back));
            }
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
        let plane = msg.plane();
        let costs = self.shell.costs;
        match plane {
            Plane::Chunk { .. } => {
                // Verified and stored on the pool first; the state machine hears of it after.
                let cores = costs.cores();
                let done =
                    self.cpu[to as usize].run_pool(cores, self.now, costs.pool_us(plane), None);
                let incarnation = self.incarnation[to as usize];
                if done > self.now {
                    self.events.push(
                        done,
                        EventKind::Process {
                            from,
                            to,
                            msg: Box::new(msg),
                            incarnation,
                        },
                    );
                } else {
                    self.process_chunk(from, to, msg, incarnation);
                }
            }
            Plane::Control { .. } => {
                let cost = costs.receive_loop_us(plane, bytes);
                let from_code = self.topo.codes()[from as usize];
                let done = self.dispatch(to, cost, self.now, |n, ctx| {
                    n.on_message(ctx, from_code, msg)
                });
                if let Some(id) = request {
                    // The node answers each request at once (an empty response), flushed when
                    // its event loop is done with the frame.
                    let back = self.latency(from, to);
                    self.complete(from, to, id, done.saturating_add(back));
                }
            }
        }
    }

    /// A verified chunk frame reaches the receiver's state machine (event loop).
    fn process_chunk(&mut self, from: u32, to: u32, msg: N::Msg, incarnation: u32) {
        if !self.up[to as usize] || self.incarnation[to as usize] != incarnation {
            // The receiver died with the frame in its pool.
            self.stats.kinds.entry(msg.kind()).or_default().refused += 1;
            return;
        }
        let cost = self
            .shell
            .costs
            .receive_loop_us(msg.plane(), msg.wire_bytes());
        let from_code = self.topo.codes()[from as usize];
        self.dispatch(to, cost, self.now, |n, ctx| {
            n.on_message(ctx, from_code, msg)
        });
    }

    /// One-way latency between two nodes.
    fn latency(&self, a: u32, b: u32) -> Micros {
        let codes = self.topo.codes();
        self.net
            .link(codes[a as usize], codes[b as usize])
            .latency_us
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

    /// Runs one handler on node `i` for an input ready at `at` that costs `cost` µs of event
    /// loop before the handler's effects; sends its outputs as their encoding finishes.
    /// Returns when the node's event loop is done with it.
    fn dispatch(
        &mut self,
        i: u32,
        cost: Micros,
        at: Micros,
        f: impl FnOnce(&mut N, &mut Ctx<'_, N::Msg>),
    ) -> Micros {
        let ix = i as usize;
        let me = self.topo.codes()[ix];
        let costs = self.shell.costs;
        let cores = costs.cores();
        let (start, core) = self.cpu[ix].start_loop(cores, at.max(self.now));
        let handled_at = start.saturating_add(cost);
        let mut out = std::mem::take(&mut self.out);
        let mut obs = std::mem::take(&mut self.obs);
        let charged_ns = {
            let mut ctx = Ctx {
                now: handled_at,
                me,
                costs: &costs,
                charged_ns: 0,
                out: &mut out,
                obs: &mut obs,
            };
            f(&mut self.nodes[ix], &mut ctx);
            ctx.charged_ns
        };
        if out.len() > self.limits.outputs_per_call_max {
            self.stats.stop = StopReason::OutputCapReached;
        }
        // Outputs leave one by one as the event loop encodes them; chunk frames are read and
        // encoded on the pool (not on the loop's core while it runs).
        let mut clock = handled_at.saturating_add(charged_ns.div_ceil(1_000));
        for (to, msg) in out.drain(..) {
            let plane = msg.plane();
            clock = clock.saturating_add(costs.send_loop_us(plane));
            let ready = match plane {
                Plane::Control { .. } => clock,
                // One core: the loop itself does the pool's work.
                Plane::Chunk { .. } if cores == 1 => {
                    clock = clock.saturating_add(costs.pool_us(plane));
                    clock
                }
                Plane::Chunk { .. } => {
                    self.cpu[ix].run_pool(cores, clock, costs.pool_us(plane), Some(core))
                }
            };
            self.send(i, to, msg, ready);
        }
        self.cpu[ix].end_loop(core, start, clock);
        for o in obs.drain(..) {
            self.observe(i, o, handled_at);
        }
        self.out = out;
        self.obs = obs;
        let want = self.nodes[ix].next_timer().map(|t| t.max(self.now));
        if want.is_some() && want != self.timer_at[ix] {
            self.timer_at[ix] = want;
            self.events
                .push(want.unwrap_or(self.now), EventKind::Timer { node: i });
        } else if want.is_none() {
            self.timer_at[ix] = None;
        }
        clock
    }

    /// A node's message, ready to leave at `ready`: control frames through the outbox, chunk
    /// frames straight onto the link.
    fn send(&mut self, from: u32, to_code: RegionCode, msg: N::Msg, ready: Micros) {
        let kind = msg.kind();
        let Some(to) = self.index_of(to_code) else {
            // Addressing a region that does not exist is a node bug; count it as refused.
            self.stats.kinds.entry(kind).or_default().refused += 1;
            return;
        };
        let control = matches!(msg.plane(), Plane::Control { .. });
        let bytes = self.shell.costs.wire_bytes(msg.wire_bytes(), control);
        let from_code = self.topo.codes()[from as usize];
        let stats = self.stats.kinds.entry(kind).or_default();
        stats.sent += 1;
        stats.bytes += bytes;
        let (lf, lt) = (
            from_code.level().depth() as usize,
            to_code.level().depth() as usize,
        );
        self.stats.link_bytes[lf][lt] += bytes;
        self.stats.link_messages[lf][lt] += 1;
        if !control {
            self.transmit(from, to, msg, bytes, ready, None);
            return;
        }
        self.next_request += 1;
        let id = self.next_request;
        // Requests answered by now free their slots first (as their responses would have).
        self.settle(from, to, ready);
        if !self.shell.control_outbox {
            // What-if: every frame opens its stream at once (the node before the outbox).
            self.transmit(from, to, msg, bytes, ready, Some(id));
            return;
        }
        let (key, d) = conn_key(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        let dropped = dir.outbox.dropped;
        let mut sent = false;
        dir.outbox.offer(to, id.to_le_bytes().to_vec(), |_| {
            sent = true;
            id
        });
        if sent {
            self.transmit(from, to, msg, bytes, ready, Some(id));
            return;
        }
        let control = &mut self.stats.control;
        if dir.outbox.dropped > dropped {
            // The outbox dropped its oldest queued frame for this peer: so do we.
            dir.queued.pop_front();
            control.outbox_dropped += dir.outbox.dropped - dropped;
        }
        dir.queued.push_back(Queued {
            id,
            msg,
            bytes,
            since: ready,
        });
        control.frames_queued += 1;
        control.queued_max = control.queued_max.max(dir.queued.len() as u64);
        self.schedule_wake(from, to);
    }

    /// Applies the completions of requests `from` → `to` known to be done by `at`, sending
    /// what the outbox releases at the moment each slot freed.
    fn settle(&mut self, from: u32, to: u32, at: Micros) {
        let (_, d) = conn_key(from, to);
        let key = self.touch(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        let mut released: Vec<(Micros, Queued<N::Msg>)> = Vec::new();
        while let Some(&Reverse((c, id))) = dir.pending.peek() {
            if c > at {
                break;
            }
            dir.pending.pop();
            dir.open = dir.open.saturating_sub(1);
            let mut ids = Vec::new();
            dir.outbox.completed(to, id, |frame| {
                let fid = frame
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                ids.push(fid);
                fid
            });
            for fid in ids {
                // The outbox sends in the order it was offered, as `queued` holds them.
                let Some(q) = dir.queued.pop_front() else {
                    break;
                };
                debug_assert_eq!(q.id, fid, "outbox and shadow queue agree");
                released.push((c, q));
            }
        }
        for (c, q) in released {
            let control = &mut self.stats.control;
            control.queue_wait_max_us = control.queue_wait_max_us.max(c.saturating_sub(q.since));
            self.transmit(from, to, q.msg, q.bytes, c.max(q.since), Some(q.id));
        }
    }

    /// A wake-up for queued control frames `from` → `to`.
    fn wake(&mut self, from: u32, to: u32) {
        let (key, d) = conn_key(from, to);
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(&key) {
            let dir = &mut conn.dirs[d];
            if dir.wake_at.is_some_and(|w| w <= now) {
                dir.wake_at = None;
            }
        }
        self.settle(from, to, now);
        self.schedule_wake(from, to);
    }

    /// While frames wait, makes sure a wake-up is due at the next known completion.
    fn schedule_wake(&mut self, from: u32, to: u32) {
        let (key, d) = conn_key(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        if dir.queued.is_empty() {
            return;
        }
        let Some(&Reverse((next, _))) = dir.pending.peek() else {
            return; // The in-flight requests have not arrived yet; their completions will wake.
        };
        if dir.wake_at.is_none_or(|w| next < w) {
            dir.wake_at = Some(next);
            self.events
                .push(next.max(self.now), EventKind::ControlWake { from, to });
        }
    }

    /// Request `id` `from` → `to` ends when its response (or failure) reaches `from` at `at`.
    fn complete(&mut self, from: u32, to: u32, id: u64, at: Micros) {
        let (_, d) = conn_key(from, to);
        let key = self.touch(from, to);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.dirs[d].pending.push(Reverse((at, id)));
        }
        self.schedule_wake(from, to);
    }

    /// Puts a message on the link `from` → `to` at `at`. A control request opens a stream;
    /// if the connection's streams would then exceed the muxer's limit, the connection closes.
    fn transmit(
        &mut self,
        from: u32,
        to: u32,
        msg: N::Msg,
        bytes: u64,
        at: Micros,
        request: Option<u64>,
    ) {
        let kind = msg.kind();
        let at = at.max(self.now);
        let codes = self.topo.codes();
        let (from_code, to_code) = (codes[from as usize], codes[to as usize]);
        let link = self.net.link(from_code, to_code);
        let egress = self.net.egress_bytes_per_s[from_code.level().depth() as usize];
        let egress_free = if egress.is_some() {
            self.egress_free_at[from as usize]
        } else {
            0
        };
        let (_, d) = conn_key(from, to);
        let now = self.now;
        let key = self.touch(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if request.is_some() {
            conn.dirs[d].open += 1;
            let mine = conn.dirs[d].open_at(at);
            let total = mine + conn.dirs[1 - d].open_at(at);
            let control = &mut self.stats.control;
            control.streams_max_per_direction = control.streams_max_per_direction.max(mine);
            control.streams_max_per_connection = control.streams_max_per_connection.max(total);
            if total as usize + NON_CONTROL_STREAMS_PER_CONNECTION > STREAMS_PER_CONNECTION_MAX {
                // The muxer refuses the stream and closes the connection (`TooManyStreams`):
                // every stream, queued frame and frame in flight on it is gone.
                conn.gen = conn.gen.wrapping_add(1);
                let lost = conn.dirs[0].close() + conn.dirs[1].close();
                control.connection_resets += 1;
                control.frames_lost_to_closed_connections += lost + 1;
                if control.reset_examples.len() < RESET_EXAMPLES_MAX {
                    control.reset_examples.push(format!(
                        "{from_code} → {to_code} at {at} us: {total} control streams + {NON_CONTROL_STREAMS_PER_CONNECTION} others > {STREAMS_PER_CONNECTION_MAX}"
                    ));
                }
                self.stats.kinds.entry(kind).or_default().lost += 1;
                return;
            }
        }
        // Bandwidth: the link carries one message at a time; a message waits for the one before.
        // With a node egress cap, all of the sender's messages also queue on its uplink.
        let dir = &mut conn.dirs[d];
        let start = dir.link_free_at.max(egress_free).max(at).max(now);
        let on_link = link.transmit_us(bytes);
        let on_egress = egress.map_or(0, |bps| transmit_us(bytes, bps));
        dir.link_free_at = start + on_link;
        let gen = conn.gen;
        if egress.is_some() {
            self.egress_free_at[from as usize] = start + on_egress;
        }
        let arrive = start + on_link.max(on_egress) + link.latency_us;
        if link.loss > 0.0 && self.rng.gen_bool(link.loss) {
            self.stats.kinds.entry(kind).or_default().lost += 1;
            if let Some(id) = request {
                // A failed exchange is reported to the sender when its answer would have come
                // (the stream resets). A frame that vanished silently on a live connection
                // would hold its slot until the node's request timeout (60 s); TCP does not
                // lose frames that way, so simnet's loss stands for failed exchanges.
                self.complete(from, to, id, arrive.saturating_add(link.latency_us));
            }
            return;
        }
        self.events.push(
            arrive,
            EventKind::Deliver {
                from,
                to,
                msg: Box::new(msg),
                bytes,
                gen,
                request,
            },
        );
    }

    fn observe(&mut self, i: u32, obs: Observation, at: Micros) {
        let i = i as usize;
        match obs {
            Observation::DataComplete => {
                if self.stats.complete_at[i].is_none() {
                    self.stats.complete_at[i] = Some(at);
                }
            }
            Observation::StoredBytes(b) => {
                self.stats.stored_now[i] = b;
                self.stats.stored_peak[i] = self.stats.stored_peak[i].max(b);
            }
            Observation::ReceiptsComplete => {
                if self.stats.receipts_complete_at.is_none() {
                    self.stats.receipts_complete_at = Some(at);
                }
            }
            Observation::Note(name) => *self.stats.notes.entry(name).or_default() += 1,
            Observation::PublisherView {
                delivered,
                expected,
            } => self.stats.publisher_view = Some((at, delivered, expected)),
            Observation::CatalogChanges(n) => {
                if self.topo.codes()[i].level() == Level::National {
                    self.stats.catalog_at_national.push((n, at));
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
                    self.events
                        .push(until_us, EventKind::Fault(Fault::Up { node }));
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
                            self.dispatch(i, 0, self.now, |n, ctx| n.on_restart(ctx));
                        } else {
                            // Timers that fell due while down fire now.
                            self.dispatch(i, 0, self.now, |n, ctx| n.on_timer(ctx));
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
                    // Its connections, outboxes and pending work die with the process.
                    self.incarnation[ix] = self.incarnation[ix].wrapping_add(1);
                    self.timer_at[ix] = None;
                    self.events
                        .push(restart_us, EventKind::Fault(Fault::Restart { node }));
                }
            }
            Fault::Partition { root, until_us, .. } => {
                self.partitions.push(root);
                self.events
                    .push(until_us, EventKind::Fault(Fault::Heal { root }));
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
        fn plane(&self) -> Plane {
            Plane::Control {
                verifies: 0,
                signs: 0,
            }
        }
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
        Engine::new(
            topo,
            nodes,
            net,
            ShellConfig::free(),
            faults,
            Limits::default(),
            1,
        )
        .run()
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
            let (_, nodes) = Engine::new(
                Arc::clone(&topo),
                nodes,
                net,
                ShellConfig::free(),
                &[],
                Limits::default(),
                1,
            )
            .run();
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

    /// A burst of control frames from one node to one peer, as the node once sent one want per
    /// partition with a window of 1,024 one-group partitions.
    struct Burst {
        frames: usize,
        got: usize,
        log: Vec<Micros>,
    }

    impl SimNode for Burst {
        type Msg = Ping;
        fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
            if ctx.me() == RegionCode::parse("11").unwrap() {
                for _ in 0..self.frames {
                    ctx.send(RegionCode::NATIONAL, Ping(100));
                }
            }
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
            self.got += 1;
            self.log.push(ctx.now_us());
        }
        fn on_timer(&mut self, _: &mut Ctx<'_, Ping>) {}
        fn on_crash(&mut self) {}
        fn on_restart(&mut self, _: &mut Ctx<'_, Ping>) {}
        fn next_timer(&self) -> Option<Micros> {
            None
        }
    }

    /// A node that only records when it handled each message.
    fn sink() -> Burst {
        Burst {
            frames: 0,
            got: 0,
            log: Vec::new(),
        }
    }

    fn burst(frames: usize, shell: ShellConfig) -> (Stats, usize) {
        let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
        let nodes = (0..topo.len())
            .map(|_| Burst {
                frames,
                got: 0,
                log: Vec::new(),
            })
            .collect();
        let (stats, nodes) = Engine::new(
            topo,
            nodes,
            NetConfig::default(),
            shell,
            &[],
            Limits::default(),
            1,
        )
        .run();
        (stats, nodes[0].got)
    }

    /// The old per-partition pattern: 1,024 control frames at once to one peer. Without the
    /// outbox every frame opens a stream at once, the connection passes the muxer's limit and
    /// closes (the `TooManyStreams` of issue #13); through the outbox at most 32 are in flight
    /// and all 1,024 arrive.
    #[test]
    fn the_outbox_keeps_a_burst_under_the_stream_limit() {
        use backflow_protocol::outbox::CONTROL_REQUESTS_IN_FLIGHT_MAX;
        let bypass = ShellConfig {
            control_outbox: false,
            ..ShellConfig::default()
        };
        let (stats, got) = burst(1_024, bypass);
        assert!(stats.control.connection_resets >= 1, "{:?}", stats.control);
        assert!(got < 1_024, "frames on the closed connection are lost");
        assert_eq!(
            stats.control.streams_max_per_connection as usize + NON_CONTROL_STREAMS_PER_CONNECTION,
            STREAMS_PER_CONNECTION_MAX + 1,
            "the stream that broke the limit"
        );
        let (stats, got) = burst(1_024, ShellConfig::default());
        assert_eq!(stats.control.connection_resets, 0);
        assert_eq!(got, 1_024);
        assert_eq!(
            stats.control.streams_max_per_direction as usize,
            CONTROL_REQUESTS_IN_FLIGHT_MAX
        );
        assert_eq!(
            stats.control.frames_queued as usize,
            1_024 - CONTROL_REQUESTS_IN_FLIGHT_MAX
        );
        assert!(stats.control.queue_wait_max_us > 0);
        // A burst within the limit is fine either way.
        let (stats, got) = burst(200, bypass);
        assert_eq!((stats.control.connection_resets, got), (0, 200));
    }

    /// Outbox timing by hand, free CPU: 10 ms links, a 100-byte ping takes 1 µs on 10 Gbit/s
    /// (rounded up). 33 frames: 32 go at once; the 33rd waits for the first one's response,
    /// one round trip (10,001 + 10,000 µs), then arrives 10,001 µs later.
    #[test]
    fn a_queued_frame_leaves_when_a_response_frees_a_slot() {
        let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
        let nodes: Vec<Burst> = (0..topo.len()).map(|_| sink()).collect();
        let mut net = NetConfig::default();
        net.tiers[0] = LinkSpec::new(10, 10_000, 0.0);
        let mut engine = Engine::new(
            topo,
            nodes,
            net,
            ShellConfig::free(),
            &[],
            Limits::default(),
            1,
        );
        let national = 0;
        let province = RegionCode::parse("11").unwrap();
        for _ in 0..33 {
            engine.send(national, province, Ping(100), 0);
        }
        let (stats, nodes) = engine.run();
        let times = &nodes[1].log;
        assert_eq!(times.len(), 33);
        // Serialised on the link: 1 µs apart.
        assert_eq!(times[0], 10_001);
        assert_eq!(times[31], 10_032);
        // The first response is back at 10,001 + 10,000; the 33rd leaves then.
        assert_eq!(times[32], 20_001 + 10_001);
        assert_eq!(stats.control.queue_wait_max_us, 20_001);
    }

    /// A node's event loop handles one message at a time: two control messages arriving
    /// together are handled `CONTROL_MESSAGE_CPU_US` apart, and a chunk frame's payload is
    /// verified on the pool first.
    #[test]
    fn a_busy_node_handles_its_messages_one_after_another() {
        let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
        let nodes: Vec<Burst> = (0..topo.len()).map(|_| sink()).collect();
        let mut net = NetConfig::default();
        net.tiers[0] = LinkSpec {
            latency_us: 10_000,
            bandwidth_bytes_per_s: 1 << 50,
            loss: 0.0,
        };
        let mut costs = Costs::free();
        costs.cores = 2;
        costs.control_message_cpu_us = 100;
        let shell = ShellConfig {
            costs,
            control_outbox: true,
        };
        let mut engine = Engine::new(topo, nodes, net, shell, &[], Limits::default(), 1);
        engine.send(0, RegionCode::parse("11").unwrap(), Ping(10), 0);
        engine.send(0, RegionCode::parse("11").unwrap(), Ping(10), 0);
        let (stats, nodes) = engine.run();
        // Both arrive at 10,001 (1 µs each on the wire, back to back: 10,001 and 10,002);
        // the handler runs after its 100 µs of receive work, the second after the first's.
        assert_eq!(nodes[1].log, vec![10_101, 10_201]);
        assert_eq!(stats.cpu_busy_us[1], 200);
    }
}
