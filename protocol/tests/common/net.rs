//! A small in-memory network of [`Endpoint`]s, driven the way a real shell drives one (see
//! node/src/runtime.rs): one node per region of the fixture tree, every ancestor–descendant
//! pair connected (`handle_connected` on both sides, then each side's `hello()` frame through
//! the network), every frame encoded and decoded, chunk frames verified with the protocol's
//! bao codec before `handle_chunk_verdict`, storage applied to an in-memory durable store, and
//! a crash rebuilding the endpoint with `Endpoint::new(now, config, saved)`.
//!
//! A transport peer `P` is named by a region code: an honest node's own region, or a spare
//! code for an intruder (whose hello may claim any region: the endpoint decides).
//!
//! Knobs: seeded loss, duplication and delay (reordering) of frames ([`Faults`]); nodes that
//! are `down` (partitioned: they neither send nor receive, their timers stop, their state
//! stays); `hold` (frames matching a predicate are captured instead of delivered, for the test
//! to drop or release); `tamper` (rewrite a frame in transit); a node's `corrupt` flag (a
//! faulty source); [`Net::restart`] (crash and restart from the durable store).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use backflow_protocol::catalog::{Applied, SignedCatalogUpdate};
use backflow_protocol::catalog_sync::{
    CatalogEvent, CatalogStorageOp, CatalogSync, CatalogSyncError,
};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::endpoint::{
    EndpointConfig, Event, Output, PeerAuth, RestoreReport, Saved, Storage,
};
use backflow_protocol::manifest::{
    ChunkFrame, Hash, PartitionEntry, SignedManifest, CHUNK_GROUPS_PER_FRAME_MAX,
};
use backflow_protocol::return_flow::{
    self, DataRouting, ReturnFlow, ReturnFlowError, ReturnFlowMsg, StorageOp,
};
use backflow_protocol::service_interface::ServiceEvent;
use backflow_protocol::time::UnixMs;
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::{decode_frame, encode_frame, Message};
use backflow_protocol::{Endpoint, RegionCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::chunks::{receive_frame, serve_frame};
use super::store::{Partition, Store};
use super::{code, Dataset, Fixture, T0, TREE};

/// The shell's name for a transport peer.
pub type Peer = RegionCode;

/// The knobs the deterministic tests were written against: fast retries, a quick fallback and
/// a transfer window of 3 groups, so a 5-group partition takes several round trips.
pub const TEST_TUNING: Tuning = Tuning {
    retry_ms: 2_000,
    source_silence_ms_max: 20_000,
    groups_in_flight_max: 3,
    receipt_interval_ms: 1_000,
    catalog_versions_per_origin_max: 65_536,
    catalog_origin_bytes_max: 64 * 1024 * 1024,
    ledger_retention_days: backflow_protocol::tuning::LEDGER_RETENTION_DAYS_MIN,
};

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub delay_ms_max: u64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        delay_ms_max: 1,
    };
}

/// How every node is set up.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub tuning: Tuning,
    /// Per-node exceptions to `tuning`.
    pub tuning_of: BTreeMap<RegionCode, Tuning>,
    pub routing: DataRouting,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tuning: Tuning::default(),
            tuning_of: BTreeMap::new(),
            routing: DataRouting::tree(),
        }
    }
}

impl NetConfig {
    pub fn with(tuning: Tuning) -> NetConfig {
        NetConfig {
            tuning,
            ..NetConfig::default()
        }
    }
}

pub struct Node {
    pub ep: Endpoint<Peer>,
    /// What the node starts with. A test may change it (a rotated identity, a trust store
    /// that knows a revocation, a fresh catalog log id) and then [`Net::restart`] the node.
    pub config: EndpointConfig,
    pub store: Store,
    /// Every event the endpoint reported, across restarts.
    pub events: Vec<Event<Peer>>,
    /// A faulty source: corrupts every run it serves.
    pub corrupt: bool,
    /// Departments' keys, as a shell keeps them: handed to the endpoint again on restart.
    pub departments: Vec<(String, ed25519_dalek::SigningKey)>,
}

impl Node {
    pub fn rf_events(&self) -> impl Iterator<Item = &return_flow::Event> {
        self.events.iter().filter_map(|e| match e {
            Event::ReturnFlow(e) => Some(e),
            _ => None,
        })
    }

    pub fn catalog_events(&self) -> impl Iterator<Item = &CatalogEvent> {
        self.events.iter().filter_map(|e| match e {
            Event::Catalog(e) => Some(e),
            _ => None,
        })
    }
}

/// What the transport of `id`'s node authenticates: its key and the peer id its certificate
/// names.
pub fn auth_of(id: &NodeIdentity) -> PeerAuth {
    PeerAuth {
        key: id.key.verifying_key().to_bytes(),
        peer_id: id
            .chain
            .last()
            .map(|c| c.body.peer_id.clone())
            .unwrap_or_default(),
    }
}

/// A control frame a node emitted (kept when [`Net::log`] is on).
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: UnixMs,
    pub from: RegionCode,
    pub to: RegionCode,
    /// The admitted connection it went over; `None`: dropped, no connection to `to`.
    pub peer: Option<Peer>,
    pub msg: Message,
}

/// A frame captured by [`Net::hold`].
#[derive(Clone, Debug)]
pub struct Held {
    pub at: UnixMs,
    pub from: Peer,
    pub to: Peer,
    pub msg: Message,
}

struct InFlight {
    at: UnixMs,
    seq: u64,
    from: Peer,
    to: Peer,
    bytes: Vec<u8>,
}

type HoldFn = Box<dyn FnMut(Peer, Peer, &Message) -> bool>;
type TamperFn = Box<dyn FnMut(Peer, Peer, &mut Message)>;

pub struct Net {
    pub fx: Fixture,
    pub now: UnixMs,
    pub nodes: BTreeMap<RegionCode, Node>,
    pub faults: Faults,
    /// Partitioned nodes: they neither send nor receive, and their timers do not run.
    pub down: BTreeSet<RegionCode>,
    /// Frames for which this returns true are captured into `held` instead of delivered.
    pub hold: Option<HoldFn>,
    pub held: Vec<Held>,
    /// Rewrites frames in transit (after decoding, before delivery).
    pub tamper: Option<TamperFn>,
    /// When `Some`, every control frame a node emits is appended (routed or not), and
    /// `storage_log` records every storage effect each node applies, in order.
    pub log: Option<Vec<Sent>>,
    pub storage_log: Vec<(RegionCode, Storage)>,
    /// Whether the shell reports stored content after a received record's `PutTransfer`
    /// (`Endpoint::handle_content_present`); off, a shell that does not.
    pub report_present: bool,
    /// Frames sent (control and chunk, hellos excluded) and their bytes.
    pub sent: u64,
    pub bytes: u64,
    /// Hello frames sent.
    pub hellos: u64,
    /// Chunk frames sent, all links, and their payload bytes per (from, to).
    pub frames: u64,
    pub chunk_bytes: BTreeMap<(RegionCode, RegionCode), u64>,
    /// Chunk groups served per (from, to).
    pub chunk_groups: BTreeMap<(RegionCode, RegionCode), u64>,
    /// Outputs naming no admitted connection (dropped; the protocol retries).
    pub unrouted: u64,
    /// Connections between nodes (ordered pairs, low first), re-established after a restart.
    links: BTreeSet<(RegionCode, RegionCode)>,
    queue: Vec<InFlight>,
    seq: u64,
    rng: ChaCha8Rng,
}

impl Net {
    /// The fixture tree ([`TREE`]), every in-line pair connected and admitted.
    pub fn new(seed: u64, faults: Faults, config: NetConfig) -> Net {
        Net::with_tree(seed, faults, config, TREE)
    }

    /// One node per region of `tree` (parents before children, national first); node `i`'s
    /// catalog log id is `1000 + i`.
    pub fn with_tree(seed: u64, faults: Faults, config: NetConfig, tree: &[&str]) -> Net {
        let fx = Fixture::with_tree(tree);
        let mut nodes = BTreeMap::new();
        for (i, s) in tree.iter().enumerate() {
            let c = code(s);
            let ec = EndpointConfig {
                identity: fx.id(s).clone(),
                trust: fx.trust(),
                tuning: config.tuning_of.get(&c).unwrap_or(&config.tuning).clone(),
                routing: config.routing.clone(),
                catalog_log_id: 1000 + i as u64,
            };
            let (ep, _) = Endpoint::new(T0, ec.clone(), Saved::default()).expect("a node starts");
            nodes.insert(
                c,
                Node {
                    ep,
                    config: ec,
                    store: Store::default(),
                    events: Vec::new(),
                    corrupt: false,
                    departments: Vec::new(),
                },
            );
        }
        let mut net = Net {
            fx,
            now: T0,
            nodes,
            faults,
            down: BTreeSet::new(),
            hold: None,
            held: Vec::new(),
            tamper: None,
            log: None,
            storage_log: Vec::new(),
            report_present: true,
            sent: 0,
            bytes: 0,
            hellos: 0,
            frames: 0,
            chunk_bytes: BTreeMap::new(),
            chunk_groups: BTreeMap::new(),
            unrouted: 0,
            links: BTreeSet::new(),
            queue: Vec::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        let codes: Vec<RegionCode> = net.nodes.keys().copied().collect();
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                if a.contains(*b) || b.contains(*a) {
                    net.connect(*a, *b);
                }
            }
        }
        net.deliver_due();
        for c in codes {
            net.flush(c);
        }
        net
    }

    pub fn node(&self, c: RegionCode) -> &Node {
        &self.nodes[&c]
    }

    pub fn node_mut(&mut self, c: RegionCode) -> &mut Node {
        self.nodes.get_mut(&c).unwrap()
    }

    pub fn ep(&self, c: RegionCode) -> &Endpoint<Peer> {
        &self.nodes[&c].ep
    }

    pub fn rf(&self, c: RegionCode) -> &ReturnFlow {
        self.nodes[&c].ep.return_flow()
    }

    pub fn cs(&self, c: RegionCode) -> &CatalogSync {
        self.nodes[&c].ep.catalog_sync()
    }

    pub fn store(&self, c: RegionCode) -> &Store {
        &self.nodes[&c].store
    }

    /// Node `c` holds exactly its region's partitions of `d`, byte-identical, and its
    /// transfer is complete. Panics if it stored a partition outside its region.
    pub fn holds_exactly_its_region(&self, c: RegionCode, d: &Dataset, hash: Hash) -> bool {
        let store = self.store(c);
        let expected: BTreeSet<RegionCode> = d
            .entries
            .iter()
            .map(|e| e.region)
            .filter(|r| c.contains(*r))
            .collect();
        let held: BTreeSet<RegionCode> = store
            .data
            .keys()
            .filter(|(h, _)| *h == hash)
            .map(|(_, r)| *r)
            .collect();
        assert!(
            held.is_subset(&expected),
            "{c} holds {held:?}, outside {expected:?}"
        );
        held == expected
            && expected
                .iter()
                .all(|r| store.data[&(hash, *r)].bytes == d.contents[r])
            && (expected.is_empty() || self.rf(c).is_complete(&hash))
    }

    /// The publisher's per-region view of `hash` is complete.
    pub fn publisher_sees_all(&self, hash: Hash, publisher: RegionCode) -> bool {
        self.rf(publisher)
            .completeness(&hash)
            .is_some_and(|r| r.is_complete())
    }

    /// Every node but the publisher holds exactly its region of `d`, and the publisher knows.
    pub fn delivered_everywhere(&self, d: &Dataset, hash: Hash) -> bool {
        let publisher = d.manifest.manifest.publisher.region;
        self.nodes
            .keys()
            .filter(|c| **c != publisher)
            .all(|c| self.holds_exactly_its_region(*c, d, hash))
            && self.publisher_sees_all(hash, publisher)
    }

    // -----------------------------------------------------------------------------------------
    // Connections

    /// Connects two nodes: each endpoint learns what the other's transport authenticated, and
    /// each side's hello goes through the network (the handshake: reliable, no delay). While
    /// either is down the link is only remembered, and made when both are up again.
    pub fn connect(&mut self, a: RegionCode, b: RegionCode) {
        self.links.insert((a.min(b), a.max(b)));
        if self.down.contains(&a) || self.down.contains(&b) {
            return;
        }
        let auth_a = auth_of(&self.nodes[&a].config.identity);
        let auth_b = auth_of(&self.nodes[&b].config.identity);
        let now = self.now;
        self.node_mut(a).ep.handle_connected(now, b, auth_b);
        self.node_mut(b).ep.handle_connected(now, a, auth_a);
        let (hello_a, hello_b) = (self.nodes[&a].ep.hello(), self.nodes[&b].ep.hello());
        self.send_hello(a, b, &hello_a);
        self.send_hello(b, a, &hello_b);
    }

    /// A transport peer `peer` that is not a node of the tree (an intruder) connects to node
    /// `to`, its transport having authenticated `auth`, and presents `hello`.
    pub fn connect_intruder(
        &mut self,
        peer: Peer,
        auth: PeerAuth,
        hello: &Message,
        to: RegionCode,
    ) {
        assert!(!self.nodes.contains_key(&peer), "{peer} is a node");
        let now = self.now;
        self.node_mut(to).ep.handle_connected(now, peer, auth);
        self.send_hello(peer, to, hello);
    }

    /// Sends a frame from any transport peer (e.g. an intruder) to `to` through the network.
    pub fn send_as(&mut self, from: Peer, to: Peer, msg: &Message) {
        self.send_frame(from, to, msg);
    }

    /// The nodes `c` has a connection with.
    fn linked(&self, c: RegionCode) -> Vec<RegionCode> {
        self.links
            .iter()
            .filter_map(|&(a, b)| (a == c).then_some(b).or((b == c).then_some(a)))
            .collect()
    }

    fn disconnect(&mut self, me: RegionCode, peer: Peer) {
        self.links.remove(&(me.min(peer), me.max(peer)));
        if let Some(n) = self.nodes.get_mut(&peer) {
            n.ep.handle_disconnected(me);
        }
    }

    /// Takes a node off the network (partitioned; its state and connections are kept).
    pub fn set_down(&mut self, c: RegionCode) {
        self.down.insert(c);
    }

    /// Takes a node off the network, and its peers notice: their connections to it close (a
    /// crashed host, where [`Net::set_down`] is a silent partition).
    pub fn crash(&mut self, c: RegionCode) {
        self.down.insert(c);
        for p in self.linked(c) {
            if let Some(n) = self.nodes.get_mut(&p) {
                n.ep.handle_disconnected(c);
            }
        }
    }

    /// Brings a node back: its connections are re-established (handshakes again).
    pub fn set_up(&mut self, c: RegionCode) {
        if !self.down.remove(&c) {
            return;
        }
        let peers = self.linked(c);
        for p in peers {
            self.connect(c, p);
        }
        self.deliver_due();
    }

    /// Every node back up.
    pub fn heal(&mut self) {
        let down: Vec<RegionCode> = self.down.iter().copied().collect();
        for c in down {
            self.set_up(c);
        }
    }

    /// Node `c` hosts department `name`, with a key derived from both (as `backflow dept add`
    /// would create and keep one).
    pub fn add_department(&mut self, c: RegionCode, name: &str) {
        let now = self.now;
        let seed = blake3::hash(format!("{c}/{name}").as_bytes());
        let key = ed25519_dalek::SigningKey::from_bytes(seed.as_bytes());
        let node = self.node_mut(c);
        node.ep
            .add_department(now, name, key.clone())
            .expect("a department");
        node.departments.push((name.to_string(), key));
    }

    /// Crashes node `c` and starts it again from its durable store alone, with its (possibly
    /// changed) config: `Endpoint::new(now, config, saved)`. Its peers see the connection drop
    /// and come back (handshakes again).
    pub fn restart(&mut self, c: RegionCode) -> RestoreReport {
        let now = self.now;
        let node = self.node_mut(c);
        let saved = node.store.saved();
        let (ep, report) =
            Endpoint::new(now, node.config.clone(), saved).expect("a restarted node starts");
        node.ep = ep;
        for (name, key) in node.departments.clone() {
            node.ep
                .add_department(now, &name, key)
                .expect("a department it held");
        }
        let peers = self.linked(c);
        for p in peers {
            self.node_mut(p).ep.handle_disconnected(c);
            self.connect(c, p);
        }
        self.deliver_due();
        self.flush(c);
        report
    }

    // -----------------------------------------------------------------------------------------
    // Inputs from tests

    /// The publisher's node starts `d`, holding every partition in full.
    pub fn publish(&mut self, d: &Dataset) -> Hash {
        let publisher = d.manifest.manifest.publisher.region;
        let hash = self.stage(d);
        let h = self
            .publish_signed(publisher, d.manifest.clone(), d.entries.clone())
            .expect("the publisher accepts its own dataset");
        assert_eq!(h, hash);
        h
    }

    /// Stores every partition of `d` in full at its publisher's node (before a publish).
    pub fn stage(&mut self, d: &Dataset) -> Hash {
        let publisher = d.manifest.manifest.publisher.region;
        let hash = d.manifest.manifest.hash();
        let store = &mut self.node_mut(publisher).store;
        for e in &d.entries {
            store.data.insert(
                (hash, e.region),
                Partition {
                    content_hash: e.content_hash,
                    bytes: d.contents[&e.region].clone(),
                    have: (0..e.groups()).collect(),
                },
            );
        }
        hash
    }

    /// `Endpoint::publish` at node `c`, then its outputs carried out.
    pub fn publish_signed(
        &mut self,
        c: RegionCode,
        manifest: SignedManifest,
        entries: Vec<PartitionEntry>,
    ) -> Result<Hash, ReturnFlowError> {
        let now = self.now;
        let r = self.node_mut(c).ep.publish(now, manifest, entries);
        self.flush(c);
        r
    }

    /// A department of node `c` submits a catalog version (`Endpoint::submit_catalog`), then
    /// its outputs carried out.
    pub fn submit_catalog(
        &mut self,
        c: RegionCode,
        update: SignedCatalogUpdate,
    ) -> Result<Applied, CatalogSyncError> {
        let now = self.now;
        let r = self.node_mut(c).ep.submit_catalog(now, update);
        self.flush(c);
        r
    }

    /// Hands `msg` to node `to` at once, as if it had just arrived from transport peer
    /// `from` (a test playing that peer), and carries out what follows; returns the outputs.
    pub fn inject(&mut self, from: Peer, to: RegionCode, msg: Message) -> Vec<Output<Peer>> {
        let mut out = Vec::new();
        self.deliver(from, to, msg, Some(&mut out));
        out
    }

    /// Node `c`'s timers as of `at` (without moving the network's clock).
    pub fn tick(&mut self, c: RegionCode, at: UnixMs) -> Vec<Output<Peer>> {
        self.node_mut(c).ep.handle_timeout(at);
        let mut out = Vec::new();
        self.drain(c, Some(&mut out));
        out
    }

    /// Delivers a frame captured by `hold` now.
    pub fn release(&mut self, held: Held) {
        self.deliver(held.from, held.to, held.msg, None);
    }

    /// Frames in flight, decoded, without delivering them.
    pub fn in_flight(&self) -> Vec<(Peer, Peer, Message)> {
        let mut q: Vec<&InFlight> = self.queue.iter().collect();
        q.sort_by_key(|m| (m.at, m.seq));
        q.into_iter()
            .map(|m| (m.from, m.to, decode_frame(&m.bytes).expect("frames decode")))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // The loop

    /// Runs until `done` or `limit_ms` of simulated time (the clock then stands just past the
    /// limit); returns whether `done` held. Each step delivers the frames due, runs the timers
    /// that are due, and jumps to the next delivery or the earliest `poll_timeout` of a node
    /// that is up.
    pub fn run(&mut self, limit_ms: u64, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now.plus_ms(limit_ms);
        while self.now <= end {
            if done(self) {
                return true;
            }
            self.deliver_due();
            let now = self.now;
            let codes: Vec<RegionCode> = self.nodes.keys().copied().collect();
            for c in codes {
                if self.down.contains(&c) {
                    continue;
                }
                if self.nodes[&c].ep.poll_timeout().is_some_and(|t| t <= now) {
                    self.node_mut(c).ep.handle_timeout(now);
                    self.flush(c);
                }
            }
            let next_timer = self
                .nodes
                .iter()
                .filter(|(c, _)| !self.down.contains(c))
                .filter_map(|(_, n)| n.ep.poll_timeout())
                .min();
            let next_delivery = self.queue.iter().map(|m| m.at).min();
            let next = [next_delivery, next_timer]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end.plus_ms(1));
            // The clock never runs past the limit: a test may act at the end of a run
            // before what is due next.
            self.now = next.max(now.plus_ms(1)).min(end.plus_ms(1));
        }
        done(self)
    }

    /// Delivers every frame due now, in (time, send order); frames sent meanwhile that are due
    /// now too (handshakes) as well.
    pub fn deliver_due(&mut self) {
        loop {
            let now = self.now;
            let mut due: Vec<InFlight> = Vec::new();
            let mut i = 0;
            while i < self.queue.len() {
                if self.queue[i].at <= now {
                    due.push(self.queue.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            if due.is_empty() {
                return;
            }
            due.sort_by_key(|m| (m.at, m.seq));
            for m in due {
                if self.down.contains(&m.to) || !self.nodes.contains_key(&m.to) {
                    continue;
                }
                let msg = decode_frame(&m.bytes).expect("frames decode");
                self.deliver(m.from, m.to, msg, None);
            }
        }
    }

    /// One frame arrives at node `to` from transport peer `from`: what the node's shell does
    /// with it (runtime.rs `on_frame` / `on_chunk` / the verdict), then its outputs.
    fn deliver(
        &mut self,
        from: Peer,
        to: RegionCode,
        mut msg: Message,
        out: Option<&mut Vec<Output<Peer>>>,
    ) {
        if let Some(t) = self.tamper.as_mut() {
            t(from, to, &mut msg);
        }
        let now = self.now;
        let node = self.nodes.get_mut(&to).unwrap();
        if let Some(frame) = node.ep.handle_message(now, from, msg) {
            Self::on_chunk(now, node, from, to, &frame);
        }
        self.drain(to, out);
    }

    /// A chunk frame: plan, verify and store, verdict.
    fn on_chunk(now: UnixMs, node: &mut Node, from: Peer, me: RegionCode, frame: &ChunkFrame) {
        let regions = frame.parts.iter().map(|p| p.region);
        let Some(plan) = node.ep.plan_chunk_frame(from, &frame.manifest, regions) else {
            return;
        };
        for run in &plan.runs {
            assert!(
                me.contains(run.entry.region),
                "{me} was planned to receive {}",
                run.entry.region
            );
        }
        let verdicts = receive_frame(&mut node.store, frame, &plan);
        node.ep
            .handle_chunk_verdict(now, plan.from, &frame.manifest, &verdicts);
    }

    /// Carries out every pending output of node `me`.
    pub fn flush(&mut self, me: RegionCode) {
        self.drain(me, None);
    }

    fn drain(&mut self, me: RegionCode, mut collect: Option<&mut Vec<Output<Peer>>>) {
        while let Some(out) = self.node_mut(me).ep.poll_output() {
            if let Some(c) = collect.as_deref_mut() {
                c.push(out.clone());
            }
            match out {
                Output::Send { to, peer, msg } => {
                    if let Message::ReturnFlow(ReturnFlowMsg::Announce(a)) = &msg {
                        assert!(
                            a.entries.iter().all(|e| to.contains(e.region)),
                            "{me} announced a foreign partition to {to}"
                        );
                    }
                    if let Some(log) = self.log.as_mut() {
                        log.push(Sent {
                            at: self.now,
                            from: me,
                            to,
                            peer,
                            msg: msg.clone(),
                        });
                    }
                    match peer {
                        Some(p) => self.send_frame(me, p, &msg),
                        None => self.unrouted += 1,
                    }
                }
                Output::ServeChunks {
                    to,
                    peer,
                    manifest,
                    parts,
                } => {
                    assert!(!parts.is_empty());
                    let total: u64 = parts.iter().map(|p| p.groups.end - p.groups.start).sum();
                    assert!(
                        total <= CHUNK_GROUPS_PER_FRAME_MAX,
                        "{total} groups in one frame"
                    );
                    for p in &parts {
                        assert!(
                            to.contains(p.entry.region),
                            "{me} served {} to {to}",
                            p.entry.region
                        );
                    }
                    let Some(peer) = peer else {
                        self.unrouted += 1;
                        continue;
                    };
                    let node = &self.nodes[&me];
                    let frame = serve_frame(me, &node.store, manifest, &parts, node.corrupt);
                    *self.chunk_bytes.entry((me, to)).or_default() += frame.encoded.len() as u64;
                    *self.chunk_groups.entry((me, to)).or_default() += total;
                    self.frames += 1;
                    self.send_frame(me, peer, &Message::Chunk(frame));
                }
                Output::Disconnect { peer } => self.disconnect(me, peer),
                Output::Storage(op) => {
                    // A received record: report what its store already holds of its content
                    // (content-addressed), before anything else of the node happens.
                    let received = match &op {
                        Storage::ReturnFlow(StorageOp::PutTransfer(r))
                            if !r.published && self.report_present =>
                        {
                            Some(r.manifest.manifest.hash())
                        }
                        _ => None,
                    };
                    if self.log.is_some() {
                        self.storage_log.push((me, op.clone()));
                    }
                    let now = self.now;
                    let node = self.node_mut(me);
                    let read = match &op {
                        Storage::Catalog(CatalogStorageOp::ReadLog { from, count_max }) => {
                            Some((*from, node.store.read_log(*from, *count_max)))
                        }
                        _ => None,
                    };
                    node.store.apply(op);
                    if let Some((from, updates)) = read {
                        node.ep.handle_catalog_log(now, from, updates);
                    }
                    if let Some(h) = received {
                        let present = node.store.present(&h);
                        node.ep.handle_content_present(now, &h, &present);
                    }
                }
                Output::Event(e) => {
                    let now = self.now;
                    let node = self.node_mut(me);
                    // A provider's store answers its service interface's calls at once.
                    if let Event::Service(ServiceEvent::Asked { id, request, keys }) = &e {
                        let answer = node.store.lookup(request, keys);
                        node.ep.answer_service_call(now, *id, Ok(answer));
                    }
                    node.events.push(e);
                }
            }
        }
    }

    fn send_frame(&mut self, from: Peer, to: Peer, msg: &Message) {
        let bytes = encode_frame(msg).expect("frames encode");
        self.sent += 1;
        self.bytes += bytes.len() as u64;
        if self.down.contains(&from) {
            return;
        }
        if let Some(hold) = self.hold.as_mut() {
            if hold(from, to, msg) {
                self.held.push(Held {
                    at: self.now,
                    from,
                    to,
                    msg: msg.clone(),
                });
                return;
            }
        }
        if self.rng.gen_bool(self.faults.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(1..=self.faults.delay_ms_max.max(1));
            self.enqueue(self.now.plus_ms(delay), from, to, bytes.clone());
        }
    }

    fn send_hello(&mut self, from: Peer, to: Peer, hello: &Message) {
        let bytes = encode_frame(hello).expect("hellos encode");
        self.hellos += 1;
        if self.down.contains(&from) {
            return;
        }
        self.enqueue(self.now, from, to, bytes);
    }

    fn enqueue(&mut self, at: UnixMs, from: Peer, to: Peer, bytes: Vec<u8>) {
        self.seq += 1;
        self.queue.push(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            bytes,
        });
    }
}
