//! Return-flow state machine driven through the deterministic network: delivery, receipts,
//! faults, restart, skip-level fallback, and the region boundary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use backflow_protocol::cert::TrustStore;
use backflow_protocol::manifest::{
    decode_groups, ChunkError, ChunkFrame, ChunkPart, Hash, ManifestError, PartitionOutboard,
    CHUNK_GROUPS_PER_FRAME_MAX, CHUNK_GROUP_BYTES,
};
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{
    DataRouting, Event, Output, ReturnFlow, ReturnFlowConfig, ReturnFlowMsg, RoutingError,
    StorageOp, TransferRecord, WantPart,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::Message;
use backflow_protocol::RegionCode;
use common::net::{Faults, Wire};
use common::*;
use proptest::prelude::*;

const PARTS: &[(&str, usize)] = &[
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
    ("11", 0),
];

struct Node {
    rf: ReturnFlow,
    trust: TrustStore,
    config: ReturnFlowConfig,
    /// Persisted transfer records.
    records: BTreeMap<Hash, Arc<TransferRecord>>,
    /// Persisted descendants' receipts: (manifest, region) → latest.
    receipts: BTreeMap<(Hash, RegionCode), Receipt>,
    /// Chunk data: (manifest, region) → (content buffer, stored groups).
    data: BTreeMap<(Hash, RegionCode), (Vec<u8>, BTreeSet<u64>)>,
    events: Vec<Event>,
    /// Corrupt every chunk this node serves (a faulty source).
    corrupt: bool,
}

struct Sim {
    fx: Fixture,
    wire: Wire,
    nodes: BTreeMap<RegionCode, Node>,
    /// Chunk payload bytes sent per (from, to) link.
    chunk_bytes: BTreeMap<(RegionCode, RegionCode), u64>,
    /// Chunk frames sent, all links.
    frames: u64,
}

impl Sim {
    fn new(seed: u64, faults: Faults) -> Sim {
        Sim::with_routing(seed, faults, DataRouting::tree())
    }

    fn with_routing(seed: u64, faults: Faults, routing: DataRouting) -> Sim {
        let fx = Fixture::new();
        let mut nodes = BTreeMap::new();
        for s in TREE {
            let c = code(s);
            let mut config = ReturnFlowConfig::new(fx.id(s).clone());
            config.retry_ms = 2_000;
            config.source_silence_ms_max = 20_000;
            config.groups_in_flight_max = 3;
            config.receipt_interval_ms = 1_000;
            config.routing = routing.clone();
            nodes.insert(
                c,
                Node {
                    rf: ReturnFlow::new(config.clone()),
                    trust: fx.trust(),
                    config,
                    records: BTreeMap::new(),
                    receipts: BTreeMap::new(),
                    data: BTreeMap::new(),
                    events: Vec::new(),
                    corrupt: false,
                },
            );
        }
        Sim {
            wire: Wire::new(T0, seed, faults),
            fx,
            nodes,
            chunk_bytes: BTreeMap::new(),
            frames: 0,
        }
    }

    fn publish(&mut self, d: &Dataset) -> Hash {
        let now = self.wire.now;
        let publisher = d.manifest.manifest.publisher.region;
        let node = self.nodes.get_mut(&publisher).unwrap();
        let hash = node
            .rf
            .publish(now, &mut node.trust, d.manifest.clone(), d.entries.clone())
            .unwrap();
        for e in &d.entries {
            let groups = (0..e.groups()).collect();
            node.data
                .insert((hash, e.region), (d.contents[&e.region].clone(), groups));
        }
        self.flush(publisher);
        hash
    }

    /// Drains a node's outputs into the network and its storage.
    fn flush(&mut self, me: RegionCode) {
        loop {
            let node = self.nodes.get_mut(&me).unwrap();
            let Some(out) = node.rf.poll_output() else {
                break;
            };
            match out {
                Output::Send { to, msg } => {
                    if let ReturnFlowMsg::Announce(a) = &msg {
                        assert!(
                            a.entries.iter().all(|e| to.contains(e.region)),
                            "{me} announced a foreign partition to {to}"
                        );
                    }
                    self.wire.send(me, to, &Message::ReturnFlow(msg));
                }
                Output::ServeChunks {
                    to,
                    manifest,
                    parts,
                } => {
                    assert!(!parts.is_empty());
                    let total: u64 = parts.iter().map(|p| p.groups.end - p.groups.start).sum();
                    assert!(
                        total <= CHUNK_GROUPS_PER_FRAME_MAX,
                        "{total} groups in one frame"
                    );
                    let mut frame = ChunkFrame {
                        manifest,
                        parts: Vec::new(),
                        encoded: Vec::new(),
                    };
                    for p in parts {
                        let (entry, groups) = (p.entry, p.groups);
                        assert!(
                            to.contains(entry.region),
                            "{me} served {} to {to}",
                            entry.region
                        );
                        let (content, have) = &node.data[&(manifest, entry.region)];
                        assert!(groups.clone().all(|g| have.contains(&g)));
                        let ob = PartitionOutboard::new(&entry, content).unwrap();
                        let mut encoded =
                            ob.encode_groups(&entry, content, groups.clone()).unwrap();
                        assert_eq!(encoded.len() as u64, p.encoded_len, "announced length");
                        if node.corrupt {
                            let n = encoded.len();
                            encoded[n - 1] ^= 0xff;
                        }
                        frame.parts.push(ChunkPart {
                            region: entry.region,
                            first_group: groups.start,
                            group_count: groups.end - groups.start,
                            encoded_len: encoded.len() as u32,
                        });
                        frame.encoded.extend_from_slice(&encoded);
                    }
                    *self.chunk_bytes.entry((me, to)).or_default() += frame.encoded.len() as u64;
                    self.frames += 1;
                    self.wire.send(me, to, &Message::Chunk(frame));
                }
                Output::Storage(StorageOp::PutTransfer(rec)) => {
                    let h = rec.manifest.manifest.hash();
                    for e in &rec.entries {
                        node.data
                            .entry((h, e.region))
                            .or_insert_with(|| (vec![0; e.bytes as usize], BTreeSet::new()));
                    }
                    node.records.insert(h, rec);
                }
                Output::Storage(StorageOp::DropTransfer { manifest }) => {
                    node.records.remove(&manifest);
                    node.data.retain(|(h, _), _| *h != manifest);
                    node.receipts.retain(|(h, _), _| *h != manifest);
                }
                Output::Storage(StorageOp::PutReceipt { manifest, receipt }) => {
                    assert_eq!(receipt.manifest, manifest);
                    node.receipts.insert((manifest, receipt.region), receipt);
                }
                Output::Event(e) => node.events.push(e),
            }
        }
    }

    fn deliver(&mut self, from: RegionCode, to: RegionCode, msg: Message) {
        let now = self.wire.now;
        let node = self.nodes.get_mut(&to).unwrap();
        match msg {
            Message::ReturnFlow(m) => node.rf.handle_message(now, &mut node.trust, from, m),
            Message::Chunk(f) => {
                // What a real shell does: verify each part against the expected entry, store,
                // report the stored runs together.
                let mut stored = Vec::new();
                for (p, encoded) in f.parts_with_payload() {
                    let Some(entry) = node.rf.expected_partition(&f.manifest, p.region) else {
                        continue;
                    };
                    assert!(to.contains(entry.region));
                    let groups = p.groups();
                    match decode_groups(&entry, groups.clone(), encoded) {
                        Ok(bytes) => {
                            let (buf, have) = node.data.get_mut(&(f.manifest, p.region)).unwrap();
                            let at = (groups.start * CHUNK_GROUP_BYTES) as usize;
                            buf[at..at + bytes.len()].copy_from_slice(&bytes);
                            have.extend(groups.clone());
                            stored.push((p.region, groups));
                        }
                        Err(ChunkError::HashMismatch { group }) => {
                            node.rf
                                .handle_group_rejected(now, from, &f.manifest, p.region, group)
                        }
                        Err(_) => node.rf.handle_group_rejected(
                            now,
                            from,
                            &f.manifest,
                            p.region,
                            p.first_group,
                        ),
                    }
                }
                if !stored.is_empty() {
                    node.rf
                        .handle_groups_stored(now, from, &f.manifest, &stored);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        self.flush(to);
    }

    /// Runs until `done` or `limit_ms` of simulated time; returns whether `done` held.
    fn run(&mut self, limit_ms: u64, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.wire.now.plus_ms(limit_ms);
        while self.wire.now <= end {
            if done(self) {
                return true;
            }
            for (from, to, msg) in self.wire.due() {
                self.deliver(from, to, msg);
            }
            let now = self.wire.now;
            let codes: Vec<RegionCode> = self.nodes.keys().copied().collect();
            for c in &codes {
                if self.wire.down.contains(c) {
                    continue;
                }
                let node = self.nodes.get_mut(c).unwrap();
                if node.rf.poll_timeout().is_some_and(|t| t <= now) {
                    node.rf.handle_tick(now);
                    self.flush(*c);
                }
            }
            let next_timer = self
                .nodes
                .iter()
                .filter(|(c, _)| !self.wire.down.contains(c))
                .filter_map(|(_, n)| n.rf.poll_timeout())
                .min();
            let next = [self.wire.next_delivery(), next_timer]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end.plus_ms(1));
            self.wire.now = next.max(now.plus_ms(1));
        }
        done(self)
    }

    /// Restarts a node from its persisted records and stored chunks.
    fn restart(&mut self, c: RegionCode) {
        let now = self.wire.now;
        let node = self.nodes.get_mut(&c).unwrap();
        node.rf = ReturnFlow::new(node.config.clone());
        node.trust = self.fx.trust();
        let records: Vec<_> = node.records.values().cloned().collect();
        for rec in records {
            let h = rec.manifest.manifest.hash();
            let stored: Vec<(RegionCode, Vec<Range<u64>>)> = node
                .data
                .iter()
                .filter(|((m, _), _)| *m == h)
                .map(|((_, r), (_, have))| (*r, have.iter().map(|g| *g..g + 1).collect()))
                .collect();
            node.rf.restore(now, (*rec).clone(), &stored).unwrap();
        }
        for r in node.receipts.values() {
            assert!(
                node.rf.restore_receipt(r.clone()),
                "a persisted receipt was refused"
            );
        }
        self.flush(c);
    }

    /// Node `c` holds exactly its region's partitions, byte-identical and complete.
    fn holds_exactly_its_region(&self, c: RegionCode, d: &Dataset, hash: Hash) -> bool {
        let node = &self.nodes[&c];
        let expected: BTreeSet<RegionCode> = d
            .entries
            .iter()
            .map(|e| e.region)
            .filter(|r| c.contains(*r))
            .collect();
        let held: BTreeSet<RegionCode> = node
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
                .all(|r| node.data[&(hash, *r)].0 == d.contents[r])
            && (expected.is_empty() || node.rf.is_complete(&hash))
    }

    fn publisher_sees_all(&self, hash: Hash, publisher: RegionCode) -> bool {
        self.nodes[&publisher]
            .rf
            .completeness(&hash)
            .is_some_and(|r| r.is_complete())
    }
}

fn dibao(fx: &Fixture, version: u64, previous: Option<Hash>) -> Dataset {
    dataset(
        fx,
        "dibao",
        version,
        previous,
        "0",
        "0",
        PARTS,
        T0,
        30 * DAY_MS,
    )
}

fn everyone_done(sim: &Sim, d: &Dataset, hash: Hash) -> bool {
    sim.nodes
        .keys()
        .filter(|c| **c != RegionCode::NATIONAL)
        .all(|c| sim.holds_exactly_its_region(*c, d, hash))
        && sim.publisher_sees_all(hash, RegionCode::NATIONAL)
}

#[test]
fn delivers_every_partition_to_its_region_and_receipts_reach_the_publisher() {
    let mut sim = Sim::new(1, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let r = sim.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .unwrap();
    assert_eq!(r.regions_expected, PARTS.len() as u32);
    assert_eq!(
        r.records_delivered,
        PARTS.iter().map(|(_, n)| *n as u64 / 10).sum::<u64>()
    );
    assert!(r.missing.is_empty());
    // Per-region completeness is visible at the publisher through the province receipts.
    let receipts = sim.nodes[&RegionCode::NATIONAL].rf.receipts(&hash);
    assert!(receipts.iter().all(|r| r.is_complete()));
    assert!(receipts.iter().any(|r| r.region == code("11")));
}

#[test]
fn a_node_with_nothing_in_its_region_receives_nothing() {
    let mut sim = Sim::new(2, Faults::NONE);
    let parts: &[(&str, usize)] = &[("110101001", 3_000)];
    let d = dataset(&sim.fx, "narrow", 1, None, "0", "0", parts, T0, DAY_MS);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| s.holds_exactly_its_region(
        code("110101001"),
        &d,
        hash
    ) && s
        .publisher_sees_all(hash, RegionCode::NATIONAL)));
    for c in ["12", "1201", "110102", "110102001", "110101002"] {
        assert!(sim.nodes[&code(c)].records.is_empty(), "{c} got a manifest");
    }
}

#[test]
fn sibling_cannot_pull_another_regions_partition() {
    let mut sim = Sim::new(3, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let county = code("110101");
    let node = sim.nodes.get_mut(&county).unwrap();
    node.rf.handle_message(
        sim.wire.now,
        &mut node.trust,
        code("110101002"),
        ReturnFlowMsg::Want {
            manifest: hash,
            parts: vec![WantPart {
                region: code("110101001"),
                groups: std::iter::once(0..2).collect(),
            }],
        },
    );
    let mut outs = Vec::new();
    while let Some(o) = node.rf.poll_output() {
        outs.push(o);
    }
    assert!(outs
        .iter()
        .all(|o| !matches!(o, Output::ServeChunks { .. })));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::WantRefused { .. }))));
}

#[test]
fn rollback_and_expired_announces_are_rejected() {
    let mut sim = Sim::new(4, Faults::NONE);
    let v1 = dibao(&sim.fx, 1, None);
    let h1 = v1.manifest.manifest.hash();
    let v2 = dibao(&sim.fx, 2, Some(h1));
    sim.publish(&v1);
    assert!(sim.run(60_000, |s| everyone_done(s, &v1, h1)));
    let h2 = sim.publish(&v2);
    assert!(sim.run(60_000, |s| everyone_done(s, &v2, h2)));
    // The old version's data is gone everywhere.
    assert!(sim.nodes.values().all(|n| !n.records.contains_key(&h1)));

    // Replay version 1's announce to a township: rollback.
    let t = code("110101001");
    let tree = backflow_protocol::manifest::RegionTree::build(code("0"), &v1.entries).unwrap();
    let announce = |d: &Dataset| {
        ReturnFlowMsg::Announce(backflow_protocol::return_flow::Announce {
            manifest: Arc::new(d.manifest.clone()),
            entries: d
                .entries
                .iter()
                .filter(|e| e.region == t)
                .copied()
                .collect(),
            proof: tree.proof_for(t, &Default::default()).unwrap(),
        })
    };
    let now = sim.wire.now;
    let node = sim.nodes.get_mut(&t).unwrap();
    node.rf
        .handle_message(now, &mut node.trust, code("110101"), announce(&v1));
    sim.flush(t);
    assert!(sim.nodes[&t].events.iter().any(|e| matches!(
        e,
        Event::ManifestRejected {
            error: ManifestError::Rollback { .. },
            ..
        }
    )));

    // A fresh node offered an expired manifest refuses it (indefinite freeze).
    let mut fresh = Sim::new(5, Faults::NONE);
    let late = T0.plus_ms(31 * DAY_MS);
    let node = fresh.nodes.get_mut(&t).unwrap();
    node.rf
        .handle_message(late, &mut node.trust, code("110101"), announce(&v1));
    fresh.flush(t);
    assert!(fresh.nodes[&t].events.iter().any(|e| matches!(
        e,
        Event::ManifestRejected {
            error: ManifestError::Expired { .. },
            ..
        }
    )));
    assert!(fresh.nodes[&t].records.is_empty());
}

#[test]
fn announce_from_a_sibling_or_with_foreign_entries_is_rejected() {
    let mut sim = Sim::new(6, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let t = code("110101001");
    let tree = backflow_protocol::manifest::RegionTree::build(code("0"), &d.entries).unwrap();
    let mine: Vec<_> = d
        .entries
        .iter()
        .filter(|e| e.region == t)
        .copied()
        .collect();
    let sibling: Vec<_> = d
        .entries
        .iter()
        .filter(|e| e.region == code("110101002"))
        .copied()
        .collect();
    let proof = tree.proof_for(t, &Default::default()).unwrap();
    let now = sim.wire.now;
    let node = sim.nodes.get_mut(&t).unwrap();
    let mk = |entries: Vec<_>| {
        ReturnFlowMsg::Announce(backflow_protocol::return_flow::Announce {
            manifest: Arc::new(d.manifest.clone()),
            entries,
            proof: proof.clone(),
        })
    };
    node.rf
        .handle_message(now, &mut node.trust, code("110101002"), mk(mine.clone()));
    node.rf
        .handle_message(now, &mut node.trust, code("110101"), mk(sibling));
    sim.flush(t);
    let errors: Vec<_> = sim.nodes[&t]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ManifestRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(errors[0], ManifestError::NotASource { .. }));
    assert!(matches!(errors[1], ManifestError::OutsideRegion { .. }));
    assert!(sim.nodes[&t].records.is_empty());
}

#[test]
fn resumes_after_restart_without_refetching() {
    let mut sim = Sim::new(7, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    let t = code("110101001");
    // Run until the township has some but not all groups (5 groups, window 3).
    assert!(sim.run(60_000, |s| s.nodes[&t]
        .rf
        .stored_groups(&hash, t)
        .is_some_and(|n| (1..5).contains(&n))));
    let before = sim.nodes[&t].rf.stored_groups(&hash, t).unwrap();
    sim.restart(t);
    assert_eq!(sim.nodes[&t].rf.stored_groups(&hash, t), Some(before));
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    // The county also restarts after completion: it keeps serving and reporting.
    sim.restart(code("110101"));
    assert!(sim.nodes[&code("110101")].rf.is_complete(&hash));
}

#[test]
fn publisher_keeps_its_per_region_view_across_a_restart() {
    let mut sim = Sim::new(11, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
    let national = RegionCode::NATIONAL;
    let before = sim.nodes[&national].rf.receipts(&hash);
    let agg_before = sim.nodes[&national].rf.completeness(&hash).unwrap();
    assert!(!before.is_empty());
    assert_eq!(agg_before.regions_delivered, PARTS.len() as u32);
    // Cut the publisher off so nothing can arrive after the restart: what it shows then
    // comes from its own storage.
    sim.wire
        .down
        .extend(sim.nodes.keys().copied().filter(|c| *c != national));
    sim.restart(national);
    assert_eq!(sim.nodes[&national].rf.receipts(&hash), before);
    let agg = sim.nodes[&national].rf.completeness(&hash).unwrap();
    assert_eq!(agg.regions_delivered, agg_before.regions_delivered);
    assert_eq!(agg.records_delivered, agg_before.records_delivered);
    // A stored receipt that does not fit the transfer is refused.
    let mut wrong = before[0].clone();
    wrong.regions_expected += 1;
    wrong.seq += 1;
    assert!(!sim
        .nodes
        .get_mut(&national)
        .unwrap()
        .rf
        .restore_receipt(wrong));
}

#[test]
fn skip_level_fallback_when_the_county_is_down() {
    let mut sim = Sim::new(8, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let county = code("110101");
    sim.wire.down.insert(county);
    let hash = sim.publish(&d);
    let towns = [code("110101001"), code("110101002")];
    assert!(sim.run(10 * 60_000, |s| towns
        .iter()
        .all(|t| s.holds_exactly_its_region(*t, &d, hash))));
    // The city announced to the townships directly; receipts still reach the publisher,
    // which sees the county's own partition as missing.
    assert!(sim.run(10 * 60_000, |s| s.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .is_some_and(|r| r.regions_delivered == PARTS.len() as u32 - 1)));
    let r = sim.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .unwrap();
    assert_eq!(r.missing, vec![county]);
    // The county comes back and catches up.
    sim.wire.down.clear();
    assert!(sim.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
}

/// A receipt `region` would sign for `d`, with the partitions in `delivered` delivered.
fn receipt_for(
    sim: &Sim,
    d: &Dataset,
    hash: Hash,
    region: RegionCode,
    seq: u64,
    delivered: &[RegionCode],
) -> backflow_protocol::receipt::SignedReceipt {
    use backflow_protocol::receipt::SignedReceipt;
    let mut under: Vec<_> = d
        .entries
        .iter()
        .filter(|e| region.contains(e.region))
        .collect();
    under.sort_by_key(|e| e.region);
    let mut bits = vec![0u8; under.len().div_ceil(8)];
    let mut r = Receipt {
        region,
        manifest: hash,
        seq,
        at: sim.wire.now,
        regions_expected: under.len() as u32,
        regions_delivered: 0,
        records_delivered: 0,
        bytes_delivered: 0,
        missing: Vec::new(),
        delivered: Vec::new(),
    };
    for (i, e) in under.iter().enumerate() {
        if delivered.contains(&e.region) {
            bits[i / 8] |= 1 << (i % 8);
            r.regions_delivered += 1;
            r.records_delivered += e.records;
            r.bytes_delivered += e.bytes;
        } else {
            r.missing.push(e.region);
        }
    }
    r.delivered = bits;
    SignedReceipt::sign(r, sim.fx.id(&region.to_string()))
}

/// After a fallback a node holds a stale receipt from a child (its own partition only) and
/// fresher ones from the child's children: every partition is counted exactly once, at the
/// node and at the publisher. (Taking the larger of the child's count and its children's sum
/// dropped the child's own partition.)
#[test]
fn receipts_via_a_fallback_count_each_partition_once() {
    let mut sim = Sim::new(14, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let (county, t1, t2, city) = (
        code("110101"),
        code("110101001"),
        code("110101002"),
        code("1101"),
    );
    for c in [county, t1, t2] {
        sim.wire.down.insert(c);
    }
    let hash = sim.publish(&d);
    assert!(sim.run(10 * 60_000, |s| s.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .is_some_and(|r| r.regions_delivered == 3)
        && s.nodes[&city].rf.is_complete(&hash)));
    // The county reported early (its own partition only), then went silent; its townships
    // report straight to the city.
    let now = sim.wire.now;
    let stale = receipt_for(&sim, &d, hash, county, 1, &[county]);
    let r1 = receipt_for(&sim, &d, hash, t1, 1, &[t1]);
    let r2 = receipt_for(&sim, &d, hash, t2, 1, &[t2]);
    for (from, r) in [(county, stale), (t1, r1), (t2, r2.clone()), (t2, r2)] {
        let node = sim.nodes.get_mut(&city).unwrap();
        node.rf.handle_message(
            now,
            &mut node.trust,
            from,
            ReturnFlowMsg::Receipt(Arc::new(r)),
        );
    }
    sim.flush(city);
    assert!(!sim.nodes[&city]
        .events
        .iter()
        .any(|e| matches!(e, Event::ReceiptRejected { .. })));
    let at_city = sim.nodes[&city].rf.completeness(&hash).unwrap();
    let under_city: Vec<_> = d
        .entries
        .iter()
        .filter(|e| city.contains(e.region))
        .collect();
    assert_eq!(at_city.regions_expected, under_city.len() as u32);
    assert_eq!(
        at_city.regions_delivered, at_city.regions_expected,
        "{at_city:?}"
    );
    assert!(at_city.missing.is_empty());
    assert_eq!(
        at_city.records_delivered,
        under_city.iter().map(|e| e.records).sum::<u64>()
    );
    // Per child, too: the county's subtree is complete although its own receipt says 1 of 3.
    let county_view = sim.nodes[&city].rf.completeness_of(&hash, county).unwrap();
    assert_eq!(
        (county_view.regions_delivered, county_view.regions_expected),
        (3, 3)
    );
    let t1_view = sim.nodes[&city].rf.completeness_of(&hash, t1).unwrap();
    assert_eq!(
        (t1_view.regions_delivered, t1_view.regions_expected),
        (1, 1)
    );
    // The publisher's per-region view is exact too (records and bytes included).
    assert!(sim.run(10 * 60_000, |s| s
        .publisher_sees_all(hash, RegionCode::NATIONAL)));
    let at_national = sim.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .unwrap();
    assert_eq!(at_national.regions_delivered, PARTS.len() as u32);
    assert_eq!(
        at_national.records_delivered,
        d.entries.iter().map(|e| e.records).sum::<u64>()
    );
    assert_eq!(
        at_national.bytes_delivered,
        d.entries.iter().map(|e| e.bytes).sum::<u64>()
    );
}

/// A receipt whose bitmap disagrees with its counts, or whose partition count is not the
/// manifest's for its region, is refused.
#[test]
fn receipts_with_inconsistent_bitmaps_are_rejected() {
    use backflow_protocol::receipt::{ReceiptError, SignedReceipt};
    let mut sim = Sim::new(15, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let (county, t1) = (code("110101"), code("110101001"));
    let good = receipt_for(&sim, &d, hash, county, u64::MAX - 1, &[county]);
    // Bits claim two partitions, the count one.
    let mut r = good.receipt.clone();
    r.delivered = vec![0b011];
    let extra_bit = SignedReceipt::sign(r, sim.fx.id("110101"));
    // Claims one partition fewer than the manifest has in the county.
    let mut r = good.receipt.clone();
    r.regions_expected = 2;
    r.missing.truncate(1);
    let short = SignedReceipt::sign(r, sim.fx.id("110101"));
    let before = sim.nodes[&county].rf.completeness(&hash).unwrap();
    let now = sim.wire.now;
    let node = sim.nodes.get_mut(&code("1101")).unwrap();
    for r in [extra_bit, short] {
        node.rf.handle_message(
            now,
            &mut node.trust,
            county,
            ReturnFlowMsg::Receipt(Arc::new(r)),
        );
    }
    sim.flush(code("1101"));
    let errors: Vec<_> = sim.nodes[&code("1101")]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReceiptRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(
            errors[..],
            [
                ReceiptError::Inconsistent { .. },
                ReceiptError::Inconsistent { .. }
            ]
        ),
        "{errors:?}"
    );
    assert!(before.is_complete());
    assert!(sim.nodes[&code("1101")]
        .rf
        .completeness(&hash)
        .unwrap()
        .is_complete());
    let _ = t1;
}

#[test]
fn skip_level_fallback_mid_transfer_switches_source() {
    let mut sim = Sim::new(9, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    let county = code("110101");
    let t = code("110101001");
    // Let the township start, then take its county down.
    assert!(sim.run(60_000, |s| s.nodes[&t]
        .rf
        .stored_groups(&hash, t)
        .is_some_and(|n| n >= 1)));
    assert!(
        !sim.nodes[&t].rf.is_complete(&hash),
        "the test needs a partial transfer"
    );
    sim.wire.down.insert(county);
    assert!(sim.run(10 * 60_000, |s| s.holds_exactly_its_region(t, &d, hash)));
    assert!(sim.nodes[&t].events.iter().any(|e| matches!(
        e,
        Event::SourceChanged { from, to, .. } if *from == county && *to == code("1101")
    )));
}

#[test]
fn a_corrupting_source_is_detected_and_bypassed() {
    let mut sim = Sim::new(10, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    let city = code("1101");
    // Once the city holds everything, it starts corrupting what it serves.
    assert!(sim.run(60_000, |s| s.nodes[&city].rf.is_complete(&hash)));
    sim.nodes.get_mut(&city).unwrap().corrupt = true;
    assert!(sim.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
    let county = &sim.nodes[&code("110101")];
    let rejected = county
        .events
        .iter()
        .filter(|e| matches!(e, Event::ChunkRejected { .. }))
        .count();
    assert!(rejected >= 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Delivery and receipts converge under loss, duplication and reordering, on the strict
    /// tree and with province → county links.
    #[test]
    fn return_flow_converges_under_faults(
        seed in any::<u64>(),
        loss in 0.0f64..0.35,
        duplicate in 0.0f64..0.3,
        delay_ms_max in 1u64..5_000,
        direct in any::<bool>(),
    ) {
        let faults = Faults { loss, duplicate, delay_ms_max };
        if direct {
            // Province → county links: the city holds only its own partition.
            let mut sim = Sim::with_routing(seed, faults, province_to_county());
            let d = direct_dataset(&sim.fx);
            let hash = sim.publish(&d);
            prop_assert!(sim.run(6 * 3_600_000, |s| direct_done(s, &d, hash)));
        } else {
            let mut sim = Sim::new(seed, faults);
            let d = dibao(&sim.fx, 1, None);
            let hash = sim.publish(&d);
            prop_assert!(sim.run(6 * 3_600_000, |s| everyone_done(s, &d, hash)));
        }
    }
}

/// `n` synthetic townships under province `p` (codes built by arithmetic).
fn townships(p: &str, n: usize) -> Vec<RegionCode> {
    let mut out = Vec::new();
    let province = code(p);
    'outer: for c in 1..100 {
        let city = province.child(c).unwrap();
        for k in 1..100 {
            let county = city.child(k).unwrap();
            for t in 1..=100 {
                out.push(county.child(t).unwrap());
                if out.len() == n {
                    break 'outer;
                }
            }
        }
    }
    out
}

fn synthetic_entries(regions: &[RegionCode]) -> Vec<backflow_protocol::manifest::PartitionEntry> {
    let s = schema();
    regions
        .iter()
        .map(|r| backflow_protocol::manifest::PartitionEntry {
            region: *r,
            content_hash: *blake3::hash(r.to_string().as_bytes()).as_bytes(),
            bytes: 1 << 20,
            records: 1_000,
            schema_hash: s.hash(),
        })
        .collect()
}

#[test]
fn a_publisher_may_hold_more_partitions_than_one_announce() {
    use backflow_protocol::manifest::{build_manifest, SignedManifest};
    use backflow_protocol::return_flow::ReturnFlowError;
    use backflow_protocol::wire::{decode_stored, encode_value, ANNOUNCE_ENTRIES_MAX};
    let fx = Fixture::new();
    let n = ANNOUNCE_ENTRIES_MAX / 2 + 100;
    let mut regions = townships("11", n);
    regions.extend(townships("12", n));
    let entries = synthetic_entries(&regions);
    let sign = |entries: &[backflow_protocol::manifest::PartitionEntry], tweak: bool| {
        let mut m = build_manifest(
            "census".into(),
            1,
            origin("0", "国家统计局"),
            RegionCode::NATIONAL,
            T0,
            T0.plus_ms(DAY_MS),
            None,
            schema(),
            entries,
        )
        .unwrap();
        if tweak {
            m.partition_count -= 1;
        }
        SignedManifest::sign(m, fx.id("0")).unwrap()
    };
    let mut rf = ReturnFlow::new(ReturnFlowConfig::new(fx.id("0").clone()));
    let mut trust = fx.trust();
    let hash = rf
        .publish(T0, &mut trust, sign(&entries, false), entries.clone())
        .unwrap();
    // Announces go out per province, each within the limit; the record survives storage.
    let mut announced = 0;
    while let Some(o) = rf.poll_output() {
        match o {
            Output::Send {
                msg: ReturnFlowMsg::Announce(a),
                ..
            } => {
                assert!(a.entries.len() <= ANNOUNCE_ENTRIES_MAX);
                announced += a.entries.len();
            }
            Output::Storage(StorageOp::PutTransfer(rec)) => {
                let bytes = encode_value(&*rec).unwrap();
                let back: TransferRecord = decode_stored(&bytes).unwrap();
                let mut again = ReturnFlow::new(ReturnFlowConfig::new(fx.id("0").clone()));
                assert_eq!(again.restore(T0, back, &[]).unwrap(), hash);
            }
            _ => {}
        }
    }
    assert_eq!(announced, entries.len());
    // A manifest whose counts disagree with its entries is refused.
    let mut rf = ReturnFlow::new(ReturnFlowConfig::new(fx.id("0").clone()));
    assert!(matches!(
        rf.publish(T0, &mut trust, sign(&entries, true), entries.clone()),
        Err(ReturnFlowError::Manifest(ManifestError::TotalsMismatch))
    ));
    // One province over the announce limit cannot be published as a single subtree.
    let big = synthetic_entries(&townships("11", ANNOUNCE_ENTRIES_MAX + 1));
    assert!(matches!(
        rf.publish(T0, &mut trust, sign(&big, false), big.clone()),
        Err(ReturnFlowError::Manifest(ManifestError::Limit(_)))
    ));
}

#[test]
fn forged_receipts_are_rejected() {
    use backflow_protocol::receipt::{Receipt, ReceiptError, SignedReceipt};
    let mut sim = Sim::new(11, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let t = code("110101001");
    let county = code("110101");
    let receipt = Receipt {
        region: t,
        manifest: hash,
        seq: u64::MAX,
        at: sim.wire.now,
        regions_expected: 1,
        regions_delivered: 0,
        records_delivered: 0,
        bytes_delivered: 0,
        missing: vec![t],
        delivered: vec![0],
    };
    // Signed by the sibling township but claiming to be from `t`.
    let sibling = sim.fx.id("110101002");
    let forged = SignedReceipt {
        signature: sibling.sign(&backflow_protocol::wire::digest(
            b"backflow/receipt/v1",
            &receipt,
        )),
        receipt: receipt.clone(),
        signer: sibling.chain.clone(),
    };
    // Properly signed, then tampered.
    let mut tampered = SignedReceipt::sign(receipt, sim.fx.id("110101001"));
    tampered.receipt.records_delivered = 1;
    let now = sim.wire.now;
    for r in [forged, tampered] {
        let node = sim.nodes.get_mut(&county).unwrap();
        node.rf
            .handle_message(now, &mut node.trust, t, ReturnFlowMsg::Receipt(Arc::new(r)));
    }
    sim.flush(county);
    let errors: Vec<_> = sim.nodes[&county]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReceiptRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(
        errors[..],
        [ReceiptError::WrongSigner { .. }, ReceiptError::Cert(_)]
    ));
    // The county's view is unchanged: the township delivered.
    assert!(sim.nodes[&county]
        .rf
        .completeness(&hash)
        .unwrap()
        .is_complete());
}

#[test]
fn a_held_manifest_that_expires_is_reported() {
    let mut sim = Sim::new(12, Faults::NONE);
    let d = dataset(&sim.fx, "short", 1, None, "0", "0", PARTS, T0, 3_600_000);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let t = code("110101001");
    assert!(sim.run(2 * 3_600_000, |s| s.nodes[&t]
        .events
        .iter()
        .any(|e| matches!(e, Event::TransferExpired { .. }))));
}

#[test]
fn receipts_follow_a_key_rotation_and_the_old_key_is_refused() {
    use backflow_protocol::cert::{CertRequest, Certificate};
    use backflow_protocol::receipt::{ReceiptError, SignedReceipt};
    let mut sim = Sim::new(13, Faults::NONE);
    let d = dibao(&sim.fx, 1, None);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| everyone_done(s, &d, hash)));
    let (county, city) = (code("110101"), code("1101"));
    let old = sim.fx.id("110101").clone();
    let rotation = Certificate::issue_rotation(
        city,
        &key("1101"),
        &key("110101"),
        CertRequest {
            subject: county,
            subject_key: key("110101-v2").verifying_key(),
            peer_id: b"peer-110101".to_vec(),
            not_before: T0,
            not_after: T0.plus_ms(YEAR_MS),
            serial: 2,
        },
    )
    .unwrap();
    let mut new = old.clone();
    new.key = key("110101-v2");
    new.chain.truncate(2);
    new.chain.push(rotation);
    // The city learns the rotation (e.g. from the county's next Hello).
    let now = sim.wire.now;
    let node = sim.nodes.get_mut(&city).unwrap();
    node.trust.verify_chain(&new.chain, now).unwrap();
    let mut receipt = node
        .rf
        .receipts(&hash)
        .into_iter()
        .find(|r| r.region == county)
        .unwrap();
    let before = receipt.seq;
    receipt.seq += 1;
    let old_signed = SignedReceipt::sign(receipt.clone(), &old);
    receipt.seq += 1;
    let new_signed = SignedReceipt::sign(receipt, &new);
    for r in [old_signed, new_signed] {
        node.rf.handle_message(
            now,
            &mut node.trust,
            county,
            ReturnFlowMsg::Receipt(Arc::new(r)),
        );
    }
    sim.flush(city);
    let node = &sim.nodes[&city];
    let rejected: Vec<_> = node
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReceiptRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(rejected[..], [ReceiptError::Cert(_)]),
        "{rejected:?}"
    );
    let latest = node
        .rf
        .receipts(&hash)
        .into_iter()
        .find(|r| r.region == county)
        .unwrap();
    assert_eq!(latest.seq, before + 2, "the new key's receipt was recorded");
    // The county itself signs with the new key after `set_identity`.
    let node = sim.nodes.get_mut(&county).unwrap();
    node.rf.set_identity(new);
}

// ---------------------------------------------------------------------------------------------
// Direct links (DataRouting): a province serves its counties itself.

/// A dataset with data at every tier below national, including the city 1101's own partition.
const PARTS_DIRECT: &[(&str, usize)] = &[
    ("11", 2_000),
    ("1101", 3_000),
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
];

fn province_to_county() -> DataRouting {
    DataRouting::tree()
        .with_direct(
            backflow_protocol::Level::Province,
            backflow_protocol::Level::County,
        )
        .unwrap()
}

fn direct_dataset(fx: &Fixture) -> Dataset {
    dataset(
        fx,
        "dibao",
        1,
        None,
        "0",
        "0",
        PARTS_DIRECT,
        T0,
        30 * DAY_MS,
    )
}

/// The partitions node `c` stores under province → county links: its subtree, except a city
/// holds only its own partition (its counties are served by the province).
fn direct_share(c: RegionCode, d: &Dataset) -> BTreeSet<RegionCode> {
    d.entries
        .iter()
        .map(|e| e.region)
        .filter(|r| c.contains(*r))
        .filter(|r| c.level() != backflow_protocol::Level::City || *r == c)
        .collect()
}

impl Sim {
    /// Node `c` stored exactly `share` (byte-identical) and nothing else, and is complete.
    fn holds_exactly(
        &self,
        c: RegionCode,
        share: &BTreeSet<RegionCode>,
        d: &Dataset,
        hash: Hash,
    ) -> bool {
        let node = &self.nodes[&c];
        for ((h, r), (_, have)) in &node.data {
            assert!(
                *h != hash || share.contains(r) || have.is_empty(),
                "{c} stored groups of {r}, outside its share {share:?}"
            );
        }
        share.iter().all(|r| {
            node.data.get(&(hash, *r)).is_some_and(|(buf, have)| {
                buf == &d.contents[r]
                    && have.len() as u64
                        == d.entries.iter().find(|e| e.region == *r).unwrap().groups()
            })
        }) && node.rf.is_complete(&hash)
    }
}

fn direct_done(sim: &Sim, d: &Dataset, hash: Hash) -> bool {
    sim.nodes
        .keys()
        .filter(|c| **c != RegionCode::NATIONAL)
        .all(|c| sim.holds_exactly(*c, &direct_share(*c, d), d, hash))
        && sim.publisher_sees_all(hash, RegionCode::NATIONAL)
}

#[test]
fn a_province_serves_its_counties_directly_with_exact_receipts() {
    let mut sim = Sim::with_routing(21, Faults::NONE, province_to_county());
    let d = direct_dataset(&sim.fx);
    let hash = sim.publish(&d);
    assert!(sim.run(60_000, |s| direct_done(s, &d, hash)));
    let (province, city) = (code("11"), code("1101"));
    let counties = [code("110101"), code("110102")];
    // The counties were announced to, and served, by the province; the city only got its own.
    for k in counties {
        assert!(sim.nodes[&k].events.iter().any(|e| matches!(e,
            Event::ManifestAccepted { from, .. } if *from == province)));
        assert!(sim.chunk_bytes.get(&(province, k)).is_some_and(|b| *b > 0));
    }
    assert!(
        sim.chunk_bytes.keys().all(|(from, _)| *from != city),
        "the city served chunks: {:?}",
        sim.chunk_bytes
    );
    let city_bytes = sim.chunk_bytes[&(province, city)];
    assert!(
        (3_000..5_000).contains(&city_bytes),
        "city got {city_bytes} bytes"
    );
    // Receipts followed the path used: the counties reported to the province, not the city.
    let at_province = sim.nodes[&province].rf.receipts(&hash);
    for k in counties {
        assert!(at_province.iter().any(|r| r.region == k && r.is_complete()));
    }
    assert!(sim.nodes[&city].rf.receipts(&hash).is_empty());
    // The city's own view: its partition delivered, its counties' not (they are not its to hold).
    let c = sim.nodes[&city].rf.completeness(&hash).unwrap();
    assert_eq!((c.regions_expected, c.regions_delivered), (5, 1));
    // The publisher counts every partition exactly once.
    let r = sim.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness(&hash)
        .unwrap();
    assert_eq!(r.regions_expected, PARTS_DIRECT.len() as u32);
    assert_eq!(r.regions_delivered, PARTS_DIRECT.len() as u32);
    assert_eq!(
        r.records_delivered,
        PARTS_DIRECT
            .iter()
            .map(|(_, n)| *n as u64 / 10)
            .sum::<u64>()
    );
    let per_city = sim.nodes[&RegionCode::NATIONAL]
        .rf
        .completeness_of(&hash, city)
        .unwrap();
    assert_eq!(
        (per_city.regions_expected, per_city.regions_delivered),
        (5, 5)
    );
}

#[test]
fn direct_links_keep_skip_level_fallback_and_restart() {
    let mut sim = Sim::with_routing(22, Faults::NONE, province_to_county());
    let d = direct_dataset(&sim.fx);
    let province = code("11");
    sim.wire.down.insert(province);
    let hash = sim.publish(&d);
    // National announces past the silent province to whom it would have served: its city and
    // its counties, which complete without it.
    let below: Vec<RegionCode> = sim
        .nodes
        .keys()
        .copied()
        .filter(|c| province.contains(*c) && *c != province)
        .collect();
    assert!(
        sim.run(10 * 60_000, |s| below.iter().all(|c| s.holds_exactly(
            *c,
            &direct_share(*c, &d),
            &d,
            hash
        )))
    );
    assert!(sim
        .chunk_bytes
        .get(&(RegionCode::NATIONAL, code("110101")))
        .is_some_and(|b| *b > 0));
    sim.wire.down.clear();
    assert!(sim.run(10 * 60_000, |s| direct_done(s, &d, hash)));
    // A county restarts: it resumes from its store and reports to the province again.
    let county = code("110101");
    sim.restart(county);
    assert!(sim.nodes[&county].rf.is_complete(&hash));
    assert!(sim.run(60_000, |s| direct_done(s, &d, hash)));
}

#[test]
fn direct_links_converge_under_loss_duplication_and_reordering() {
    for seed in 0..6 {
        let faults = Faults {
            loss: 0.2,
            duplicate: 0.2,
            delay_ms_max: 3_000,
        };
        let mut sim = Sim::with_routing(100 + seed, faults, province_to_county());
        let d = direct_dataset(&sim.fx);
        let hash = sim.publish(&d);
        assert!(
            sim.run(6 * 3_600_000, |s| direct_done(s, &d, hash)),
            "seed {seed}"
        );
        assert!(sim
            .chunk_bytes
            .keys()
            .all(|(from, _)| *from != code("1101")));
    }
}

#[test]
fn routing_parses_and_refuses_nonsense() {
    use backflow_protocol::Level;
    assert_eq!("tree".parse::<DataRouting>(), Ok(DataRouting::tree()));
    let r: DataRouting = "province-county".parse().unwrap();
    assert_eq!(r, province_to_county());
    assert_eq!(r.to_string(), "province-county");
    assert_eq!(r.upstream_level(Level::County), Some(Level::Province));
    assert_eq!(r.upstream_level(Level::City), Some(Level::Province));
    assert_eq!(r.upstream_level(Level::National), None);
    assert_eq!(
        "province-city".parse::<DataRouting>(),
        Err(RoutingError::NotSkipping {
            upper: Level::Province,
            lower: Level::City
        })
    );
    assert_eq!(
        "province-county,national-county".parse::<DataRouting>(),
        Err(RoutingError::Conflict {
            lower: Level::County,
            existing: Level::Province
        })
    );
    assert!(matches!(
        "sideways".parse::<DataRouting>(),
        Err(RoutingError::Syntax(_))
    ));
}

/// Below the linked tiers the routing falls back to the tree: a city publishing to its own
/// region serves its counties itself (their province is no source for a city-scoped manifest).
#[test]
fn direct_links_fall_back_to_the_tree_inside_a_smaller_scope() {
    let mut sim = Sim::with_routing(23, Faults::NONE, province_to_county());
    let parts: &[(&str, usize)] = &[
        ("1101", 3_000),
        ("110101", 1_000),
        ("110101001", 7_000),
        ("110102001", 500),
    ];
    let d = dataset(
        &sim.fx,
        "city-notice",
        1,
        None,
        "1101",
        "1101",
        parts,
        T0,
        30 * DAY_MS,
    );
    let city = code("1101");
    let hash = sim.publish(&d);
    let region: Vec<RegionCode> = sim
        .nodes
        .keys()
        .copied()
        .filter(|c| city.contains(*c) && *c != city)
        .collect();
    assert!(sim.run(60_000, |s| region
        .iter()
        .all(|c| s.holds_exactly_its_region(*c, &d, hash))
        && s.publisher_sees_all(hash, city)));
    for k in [code("110101"), code("110102")] {
        assert!(sim.chunk_bytes.get(&(city, k)).is_some_and(|b| *b > 0));
    }
    assert!(sim.chunk_bytes.keys().all(|(from, _)| city.contains(*from)));
}

/// The national shape: hundreds of one-group partitions (北京's 300-odd townships, ~12 KB
/// each). One want names a window of partitions and one frame carries the runs of many, so
/// messages scale with windows, not with partitions; nothing is asked for twice on a lossless
/// link, and every partition arrives.
#[test]
fn many_small_partitions_travel_in_few_wants_and_frames() {
    let townships = backflow_topology::Topology::china().townships_under(code("1101"));
    assert!(townships.len() > 300, "{}", townships.len());
    let names: Vec<String> = townships.iter().map(|c| c.to_string()).collect();
    let parts: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 12_000)).collect();
    let fx = Fixture::new();
    let d = dataset(&fx, "census", 1, None, "11", "11", &parts, T0, DAY_MS);
    let config = |s: &str| {
        let mut c = ReturnFlowConfig::new(fx.id(s).clone());
        c.groups_in_flight_max = 256;
        c
    };
    let (p, r) = (code("11"), code("1101"));
    let mut publisher = ReturnFlow::new(config("11"));
    let mut receiver = ReturnFlow::new(config("1101"));
    let (mut p_trust, mut r_trust) = (fx.trust(), fx.trust());
    let hash = publisher
        .publish(T0, &mut p_trust, d.manifest.clone(), d.entries.clone())
        .unwrap();
    let (mut wants, mut frames) = (0usize, 0usize);
    let mut asked = BTreeMap::<RegionCode, usize>::new();
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(o) = publisher.poll_output() {
            moved = true;
            match o {
                Output::Send { to, msg } => {
                    assert_eq!(to, r);
                    receiver.handle_message(T0, &mut r_trust, p, msg);
                }
                Output::ServeChunks { to, parts, .. } => {
                    assert_eq!(to, r);
                    frames += 1;
                    let groups: u64 = parts.iter().map(|x| x.groups.end - x.groups.start).sum();
                    assert!(groups <= CHUNK_GROUPS_PER_FRAME_MAX);
                    let stored: Vec<_> = parts
                        .iter()
                        .map(|x| (x.entry.region, x.groups.clone()))
                        .collect();
                    receiver.handle_groups_stored(T0, p, &hash, &stored);
                }
                _ => {}
            }
        }
        while let Some(o) = receiver.poll_output() {
            moved = true;
            if let Output::Send { to, msg } = o {
                if to != p {
                    // Announces to its own children once complete: not part of this exchange.
                    assert!(r.contains(to));
                    continue;
                }
                if let ReturnFlowMsg::Want { parts, .. } = &msg {
                    wants += 1;
                    for x in parts {
                        *asked.entry(x.region).or_default() += 1;
                    }
                }
                publisher.handle_message(T0, &mut p_trust, r, msg);
            }
        }
        if !moved {
            break;
        }
    }
    assert!(receiver.is_complete(&hash), "every partition arrived");
    assert_eq!(asked.len(), townships.len());
    assert!(asked.values().all(|n| *n == 1), "nothing asked twice");
    // One message per partition before (≈ 340 wants and 340 frames); a handful now.
    let n = townships.len();
    assert!(wants * 40 <= n, "{wants} wants for {n} partitions");
    assert!(frames * 40 <= n, "{frames} frames for {n} partitions");
}

/// Unanswered wants are not all sent again at once: each timeout halves the window and
/// doubles the wait before the next retry; delivery restores both.
#[test]
fn timeouts_shrink_the_window_and_back_off() {
    let townships = backflow_topology::Topology::china().townships_under(code("1101"));
    let names: Vec<String> = townships.iter().map(|c| c.to_string()).collect();
    let parts: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 100)).collect();
    let fx = Fixture::new();
    let d = dataset(&fx, "census", 1, None, "11", "11", &parts, T0, DAY_MS);
    let mut config = ReturnFlowConfig::new(fx.id("1101").clone());
    config.groups_in_flight_max = 256;
    config.retry_ms = 1_000;
    config.source_silence_ms_max = 3_600_000;
    let mut publisher = ReturnFlow::new(ReturnFlowConfig::new(fx.id("11").clone()));
    let mut receiver = ReturnFlow::new(config);
    let (mut p_trust, mut r_trust) = (fx.trust(), fx.trust());
    let (p, r) = (code("11"), code("1101"));
    let hash = publisher
        .publish(T0, &mut p_trust, d.manifest.clone(), d.entries.clone())
        .unwrap();
    while let Some(o) = publisher.poll_output() {
        if let Output::Send { msg, .. } = o {
            receiver.handle_message(T0, &mut r_trust, p, msg);
        }
    }
    // The partitions named by the wants the receiver sends now.
    let wanted = |rf: &mut ReturnFlow| -> Vec<Vec<WantPart>> {
        let mut out = Vec::new();
        while let Some(o) = rf.poll_output() {
            if let Output::Send {
                msg: ReturnFlowMsg::Want { parts, .. },
                ..
            } = o
            {
                out.push(parts);
            }
        }
        out
    };
    let sizes = |w: &[Vec<WantPart>]| w.iter().map(|p| p.len()).collect::<Vec<_>>();
    assert_eq!(
        sizes(&wanted(&mut receiver)),
        [256],
        "the whole window in one want"
    );
    // Lost. Retry after 1 s: half the window.
    receiver.handle_tick(T0.plus_ms(1_000));
    assert_eq!(sizes(&wanted(&mut receiver)), [128]);
    // The next deadline is 2 s away, not 1 s.
    receiver.handle_tick(T0.plus_ms(2_000));
    assert!(wanted(&mut receiver).is_empty());
    receiver.handle_tick(T0.plus_ms(3_000));
    let retry = wanted(&mut receiver);
    assert_eq!(sizes(&retry), [64]);
    // Then 4 s, 8 s, capped at RETRY_BACKOFF_MAX × 1 s.
    receiver.handle_tick(T0.plus_ms(6_999));
    assert!(wanted(&mut receiver).is_empty());
    receiver.handle_tick(T0.plus_ms(7_000));
    assert_eq!(sizes(&wanted(&mut receiver)), [32]);
    // Answered at last: the window grows back by what arrives.
    let mut at = T0.plus_ms(7_001);
    let mut served = |publisher: &mut ReturnFlow, parts: Vec<WantPart>, at: UnixMs| {
        publisher.handle_message(
            at,
            &mut p_trust,
            r,
            ReturnFlowMsg::Want {
                manifest: hash,
                parts,
            },
        );
        let mut stored = Vec::new();
        while let Some(o) = publisher.poll_output() {
            if let Output::ServeChunks { parts, .. } = o {
                stored.extend(parts.into_iter().map(|x| (x.entry.region, x.groups)));
            }
        }
        stored
    };
    let stored = served(&mut publisher, retry.into_iter().flatten().collect(), at);
    assert_eq!(stored.len(), 64);
    receiver.handle_groups_stored(at, p, &hash, &stored);
    let next = wanted(&mut receiver);
    // Window 32 + 64 = 96 groups; the last retry's 32 partitions were among the 64 stored, so
    // nothing is in flight and the next want names 96.
    assert_eq!(sizes(&next), [96]);
    at = at.plus_ms(1);
    let stored = served(&mut publisher, next.into_iter().flatten().collect(), at);
    receiver.handle_groups_stored(at, p, &hash, &stored);
    // And the base retry interval is back: a loss now is retried after 1 s.
    let _ = wanted(&mut receiver);
    receiver.handle_tick(at.plus_ms(1_000));
    assert!(!wanted(&mut receiver).is_empty());
}
