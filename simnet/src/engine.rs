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
//!
//! This file holds the engine and its event loop: each event's handling, dispatch to a node,
//! its observations and faults. Its parts in `engine/`: `node` (what a node implements),
//! `limits` and `stats` (a run's limits and measurements), `events` (the queue), `conn`
//! (connections and their directions) and `send` (a node's outputs on their way: outbox,
//! streams, link).
//!
//! [`Outbox`]: backflow_protocol::outbox::Outbox

mod conn;
mod events;
mod limits;
mod node;
mod send;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, HashMap};

use backflow_topology::{Level, RegionCode, Topology};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::net::{Fault, NetConfig};
use crate::shell::{NodeCpu, Plane, ShellConfig};
use crate::time::Micros;

use conn::{conn_key, Conn, Direction};
use events::{EventKind, Events};
pub use limits::{Limits, StopReason};
pub use node::{Ctx, Observation, SimNode, Wire};
use stats::LEAK_EXAMPLES_MAX;
pub use stats::{ControlStats, KindStats, Stats};

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
                provinces_complete: 0,
                cpu_at_all_provinces_us: Vec::new(),
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

    fn observe(&mut self, i: u32, obs: Observation, at: Micros) {
        let i = i as usize;
        match obs {
            Observation::DataComplete => {
                if self.stats.complete_at[i].is_none() {
                    self.stats.complete_at[i] = Some(at);
                    if self.topo.codes()[i].level() == Level::Province {
                        self.stats.provinces_complete += 1;
                        if self.stats.provinces_complete == self.topo.count(Level::Province) {
                            self.stats.cpu_at_all_provinces_us =
                                self.cpu.iter().map(|c| c.busy_us).collect();
                        }
                    }
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
