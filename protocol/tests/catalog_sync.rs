//! Catalog sync driven through the deterministic network: aggregation up the tree,
//! idempotence, restart, log rebuild, skip-level fallback, and relaying rules.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_protocol::catalog::{CatalogChange, CatalogError, SignedCatalogUpdate};
use backflow_protocol::catalog_sync::{
    CatalogEvent, CatalogMsg, CatalogOutput, CatalogStorageOp, CatalogSync, CatalogSyncConfig,
};
use backflow_protocol::cert::TrustStore;
use backflow_protocol::wire::Message;
use backflow_protocol::RegionCode;
use common::net::{Faults, Wire};
use common::*;
use proptest::prelude::*;

struct Node {
    sync: CatalogSync,
    trust: TrustStore,
    config: CatalogSyncConfig,
    log: Vec<Arc<SignedCatalogUpdate>>,
    watermarks: BTreeMap<RegionCode, (u64, u64)>,
    events: Vec<CatalogEvent>,
}

struct Sim {
    fx: Fixture,
    wire: Wire,
    nodes: BTreeMap<RegionCode, Node>,
    /// Final expected sequence per (region, department).
    expected: BTreeMap<(RegionCode, String), u64>,
}

impl Sim {
    fn new(seed: u64, faults: Faults) -> Sim {
        let fx = Fixture::new();
        let mut nodes = BTreeMap::new();
        for (i, s) in TREE.iter().enumerate() {
            let c = code(s);
            let mut config = CatalogSyncConfig::new(c, 1000 + i as u64);
            config.retry_ms = 2_000;
            config.upstream_silence_ms_max = 20_000;
            config.parent_retry_ms = 120_000;
            nodes.insert(
                c,
                Node {
                    sync: CatalogSync::new(T0, config.clone()),
                    trust: fx.trust(),
                    config,
                    log: Vec::new(),
                    watermarks: BTreeMap::new(),
                    events: Vec::new(),
                },
            );
        }
        Sim {
            wire: Wire::new(T0, seed, faults),
            fx,
            nodes,
            expected: BTreeMap::new(),
        }
    }

    /// A department at `region` publishes its next catalog version with `n` new entries.
    fn submit(&mut self, region: &str, department: &str, n: usize) {
        let c = code(region);
        let now = self.wire.now;
        let node = self.nodes.get_mut(&c).unwrap();
        let seq = node.sync.next_seq(&origin(region, department));
        let changes = (0..n)
            .map(|i| add(&format!("{region}-{department}-{seq}-{i}"), department))
            .collect();
        let u = signed_update(&self.fx, region, department, seq, changes);
        node.sync.submit(now, &mut node.trust, u).unwrap();
        self.expected.insert((c, department.to_string()), seq);
        self.flush(c);
    }

    fn flush(&mut self, me: RegionCode) {
        loop {
            let node = self.nodes.get_mut(&me).unwrap();
            let Some(out) = node.sync.poll_output() else {
                break;
            };
            match out {
                CatalogOutput::Send { to, msg } => self.wire.send(me, to, &Message::Catalog(msg)),
                CatalogOutput::Storage(CatalogStorageOp::AppendLog { index, update }) => {
                    assert_eq!(
                        index,
                        node.log.len() as u64 + 1,
                        "log appends are contiguous"
                    );
                    node.log.push(update);
                }
                CatalogOutput::Storage(CatalogStorageOp::PutWatermark {
                    sender,
                    log_id,
                    watermark,
                }) => {
                    node.watermarks.insert(sender, (log_id, watermark));
                }
                CatalogOutput::Event(e) => node.events.push(e),
            }
        }
    }

    fn run(&mut self, limit_ms: u64, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.wire.now.plus_ms(limit_ms);
        while self.wire.now <= end {
            if done(self) {
                return true;
            }
            let now = self.wire.now;
            for (from, to, msg) in self.wire.due() {
                let Message::Catalog(m) = msg else { panic!() };
                let node = self.nodes.get_mut(&to).unwrap();
                node.sync.handle_message(now, &mut node.trust, from, m);
                self.flush(to);
            }
            let codes: Vec<RegionCode> = self.nodes.keys().copied().collect();
            for c in &codes {
                if self.wire.down.contains(c) {
                    continue;
                }
                let node = self.nodes.get_mut(c).unwrap();
                if node.sync.poll_timeout().is_some_and(|t| t <= now) {
                    node.sync.handle_tick(now);
                    self.flush(*c);
                }
            }
            let next_timer = self
                .nodes
                .iter()
                .filter(|(c, _)| !self.wire.down.contains(c))
                .filter_map(|(_, n)| n.sync.poll_timeout())
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

    fn restart(&mut self, c: RegionCode) {
        let node = self.nodes.get_mut(&c).unwrap();
        let marks: Vec<_> = node
            .watermarks
            .iter()
            .map(|(s, (id, w))| (*s, *id, *w))
            .collect();
        node.sync =
            CatalogSync::restore(self.wire.now, node.config.clone(), node.log.clone(), &marks)
                .unwrap();
        node.trust = self.fx.trust();
        self.flush(c);
    }

    /// Node `c` holds exactly the catalogs of its subtree, at their final versions.
    fn aggregated(&self, c: RegionCode) -> bool {
        let held: BTreeMap<(RegionCode, String), u64> = self.nodes[&c]
            .sync
            .catalogs()
            .map(|k| ((k.origin.region, k.origin.department.clone()), k.seq))
            .collect();
        let want: BTreeMap<(RegionCode, String), u64> = self
            .expected
            .iter()
            .filter(|((r, _), _)| c.contains(*r))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        held == want
    }

    fn all_aggregated(&self) -> bool {
        self.nodes.keys().all(|c| self.aggregated(*c))
    }

    fn workload(&mut self) {
        self.submit("110101001", "民政办", 2);
        self.submit("110101002", "派出所", 1);
        self.submit("110101", "公安局", 3);
        self.submit("110102001", "民政办", 1);
        self.submit("1201", "统计局", 2);
        self.submit("0", "国家数据局", 1);
        self.submit("110101001", "民政办", 1);
        self.submit("110101001", "卫健办", 1);
    }
}

#[test]
fn catalogs_aggregate_up_to_the_national_node() {
    let mut sim = Sim::new(1, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, |s| s.all_aggregated()));
    let national = &sim.nodes[&RegionCode::NATIONAL].sync;
    assert_eq!(national.catalogs().count(), 7);
    let o = origin("110101001", "民政办");
    assert_eq!(national.catalog(&o).unwrap().seq, 2);
    assert_eq!(national.catalog(&o).unwrap().entries.len(), 3);
    // Each version was applied exactly once per node: logs hold no duplicates.
    assert_eq!(national.log_len(), 8);
    assert_eq!(sim.nodes[&code("1101")].sync.log_len(), 6);
    // Later versions keep flowing incrementally.
    sim.submit("110102001", "民政办", 1);
    assert!(sim.run(120_000, |s| s.all_aggregated()));
    assert_eq!(sim.nodes[&RegionCode::NATIONAL].sync.log_len(), 9);
}

#[test]
fn restarts_resume_from_persisted_logs_and_watermarks() {
    let mut sim = Sim::new(2, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, |s| s.all_aggregated()));
    let sent_before = sim.wire.sent;
    // Both a parent and a child restart; nothing is re-applied, little is re-sent.
    sim.restart(code("110101"));
    sim.restart(code("110101001"));
    sim.restart(code("1101"));
    sim.submit("110101001", "民政办", 1);
    assert!(sim.run(120_000, |s| s.all_aggregated()));
    assert_eq!(sim.nodes[&RegionCode::NATIONAL].sync.log_len(), 9);
    assert!(
        sim.wire.sent - sent_before < 40,
        "resumed from watermarks, sent {}",
        sim.wire.sent - sent_before
    );
}

#[test]
fn a_rebuilt_child_log_is_resent_and_deduplicated() {
    let mut sim = Sim::new(3, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, |s| s.all_aggregated()));
    // The county lost its database and rebuilt its log under a new id, with the same content.
    let c = code("110101");
    let node = sim.nodes.get_mut(&c).unwrap();
    node.config.log_id = 9_999;
    let log = node.log.clone();
    node.sync = CatalogSync::restore(sim.wire.now, node.config.clone(), log, &[]).unwrap();
    assert!(
        sim.run(120_000, |s| s.nodes[&code("110101")].sync.upstream_acked()
            == Some(s.nodes[&code("110101")].sync.log_len()))
    );
    assert!(sim.all_aggregated());
    assert_eq!(sim.nodes[&RegionCode::NATIONAL].sync.log_len(), 8);
}

#[test]
fn skip_level_fallback_when_the_county_is_down() {
    let mut sim = Sim::new(4, Faults::NONE);
    sim.wire.down.insert(code("110101"));
    sim.submit("110101001", "民政办", 1);
    sim.submit("110102001", "民政办", 1);
    assert!(sim.run(600_000, |s| s.aggregated(RegionCode::NATIONAL)
        && s.aggregated(code("1101"))));
    assert!(sim.nodes[&code("110101001")]
        .events
        .iter()
        .any(|e| matches!(e, CatalogEvent::UpstreamChanged { .. })));
    // The county recovers and catches up; the township goes back to its parent.
    sim.wire.down.clear();
    assert!(sim.run(1_200_000, |s| s.all_aggregated()
        && s.nodes[&code("110101001")].sync.upstream() == Some(code("110101"))));
}

#[test]
fn relaying_a_foreign_or_forged_catalog_is_refused() {
    let mut sim = Sim::new(5, Faults::NONE);
    let now = sim.wire.now;
    let foreign = Arc::new(signed_update(
        &sim.fx,
        "110102001",
        "民政办",
        1,
        vec![add("x", "民政办")],
    ));
    let mut forged = signed_update(&sim.fx, "110101001", "民政办", 1, vec![add("y", "民政办")]);
    forged.update.changes.push(CatalogChange::Withdraw {
        id: "z".into(),
        reason: "r".into(),
    });
    let good = Arc::new(signed_update(
        &sim.fx,
        "110101001",
        "派出所",
        1,
        vec![add("w", "派出所")],
    ));
    let county = code("110101");
    let node = sim.nodes.get_mut(&county).unwrap();
    node.sync.handle_message(
        now,
        &mut node.trust,
        code("110101001"),
        CatalogMsg::Updates {
            log_id: 1,
            first: 1,
            updates: vec![foreign, Arc::new(forged), good],
        },
    );
    sim.flush(county);
    let node = &sim.nodes[&county];
    let rejected: Vec<_> = node
        .events
        .iter()
        .filter_map(|e| match e {
            CatalogEvent::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(rejected[0], CatalogError::WrongOrigin));
    assert!(matches!(rejected[1], CatalogError::Cert(_)));
    assert_eq!(node.sync.catalogs().count(), 1);
    assert_eq!(node.watermarks[&code("110101001")], (1, 3));
    // A sibling or an ancestor cannot push catalogs up through us.
    let node = sim.nodes.get_mut(&county).unwrap();
    node.sync.handle_message(
        now,
        &mut node.trust,
        code("110102"),
        CatalogMsg::Updates {
            log_id: 1,
            first: 1,
            updates: vec![],
        },
    );
    assert!(!node.watermarks.contains_key(&code("110102")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Catalog sync converges under loss, duplication and reordering.
    #[test]
    fn catalog_sync_converges_under_faults(
        seed in any::<u64>(),
        loss in 0.0f64..0.4,
        duplicate in 0.0f64..0.3,
        delay_ms_max in 1u64..6_000,
    ) {
        let mut sim = Sim::new(seed, Faults { loss, duplicate, delay_ms_max });
        sim.workload();
        prop_assert!(sim.run(6 * 3_600_000, |s| s.all_aggregated()));
        // No node applied a version twice.
        for n in sim.nodes.values() {
            let mut seen = std::collections::BTreeSet::new();
            for u in &n.log {
                prop_assert!(seen.insert((u.update.origin.clone(), u.update.seq)));
            }
        }
    }
}
