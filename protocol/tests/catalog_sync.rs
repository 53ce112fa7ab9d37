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
    /// Corrupt the next copy of (origin region, department, seq) sent from → to, once.
    corrupt_once: Option<(RegionCode, RegionCode, (RegionCode, String, u64))>,
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
            corrupt_once: None,
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
                let Message::Catalog(mut m) = msg else {
                    panic!()
                };
                self.maybe_corrupt(from, to, &mut m);
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

    /// A copy corrupted in transit (or by a faulty relay): one entry name changed after
    /// signing, so the signature no longer verifies.
    fn maybe_corrupt(&mut self, from: RegionCode, to: RegionCode, m: &mut CatalogMsg) {
        let Some((f, t, (region, department, seq))) = &self.corrupt_once else {
            return;
        };
        if (*f, *t) != (from, to) {
            return;
        }
        let CatalogMsg::Updates { updates, .. } = m else {
            return;
        };
        for u in updates.iter_mut() {
            let o = &u.update.origin;
            if o.region == *region && o.department == *department && u.update.seq == *seq {
                let mut bad = (**u).clone();
                if let Some(CatalogChange::Add(e)) = bad.update.changes.first_mut() {
                    Arc::make_mut(e).name.push_str(" (tampered)");
                }
                *u = Arc::new(bad);
                self.corrupt_once = None;
                return;
            }
        }
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
            updates: vec![foreign, Arc::new(forged), good.clone()],
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
    // The foreign version is skipped for good; the forged one holds the stream (unacked)
    // until a valid copy comes.
    assert_eq!(node.sync.catalogs().count(), 0);
    assert_eq!(node.watermarks[&code("110101001")], (1, 1));
    sim.wire.now = now.plus_ms(60_000);
    assert!(
        !sim.wire
            .due()
            .iter()
            .any(|(_, to, _)| *to == code("110101001")),
        "no ack for a held batch"
    );
    let honest = Arc::new(signed_update(
        &sim.fx,
        "110101001",
        "民政办",
        1,
        vec![add("y", "民政办")],
    ));
    let node = sim.nodes.get_mut(&county).unwrap();
    node.sync.handle_message(
        now,
        &mut node.trust,
        code("110101001"),
        CatalogMsg::Updates {
            log_id: 1,
            first: 2,
            updates: vec![honest, good],
        },
    );
    sim.flush(county);
    let node = &sim.nodes[&county];
    assert_eq!(node.sync.catalogs().count(), 2);
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

/// A relayed version corrupted on one hop is rejected (and reported) but does not poison the
/// department's stream: the relay resends it on retry and versions k..n all reach national.
#[test]
fn a_corrupted_relayed_version_is_refetched_not_skipped() {
    let mut sim = Sim::new(6, Faults::NONE);
    let (town, county, city) = (code("110101001"), code("110101"), code("1101"));
    // Corrupt version 2 of the township's department on the county → city hop.
    sim.corrupt_once = Some((county, city, (town, "民政办".to_string(), 2)));
    for _ in 0..5 {
        sim.submit("110101001", "民政办", 1);
    }
    sim.submit("110101002", "派出所", 1);
    assert!(sim.run(600_000, |s| s.all_aggregated()));
    assert!(sim.corrupt_once.is_none(), "the corruption was injected");
    let o = origin("110101001", "民政办");
    let national = &sim.nodes[&RegionCode::NATIONAL].sync;
    assert_eq!(national.catalog(&o).unwrap().seq, 5);
    assert_eq!(national.catalog(&o).unwrap().entries.len(), 5);
    let city_events = &sim.nodes[&city].events;
    let rejected: Vec<_> = city_events
        .iter()
        .filter_map(|e| match e {
            CatalogEvent::Rejected {
                from,
                origin,
                error,
            } => Some((*from, origin.clone(), error.clone())),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&rejected[..], [(f, Some(og), CatalogError::Cert(_))] if *f == county && *og == o),
        "{rejected:?}"
    );
    // Each version applied once, none refused for a sequence gap anywhere.
    for n in sim.nodes.values() {
        assert!(!n.events.iter().any(|e| matches!(
            e,
            CatalogEvent::Rejected {
                error: CatalogError::Gap { .. },
                ..
            }
        )));
        let mut seen = std::collections::BTreeSet::new();
        assert!(n
            .log
            .iter()
            .all(|u| seen.insert((u.update.origin.clone(), u.update.seq))));
    }
}

/// A relay that keeps sending a bad copy holds only its own stream, is reported on every
/// retry at the retransmission pace (no tight loop), and a valid copy arriving by another
/// path (the township falling back past its county) releases it.
#[test]
fn a_persistently_bad_relay_is_paced_and_bypassed() {
    let mut sim = Sim::new(7, Faults::NONE);
    let (town, county, city) = (code("110101001"), code("110101"), code("1101"));
    sim.submit("110101001", "民政办", 1);
    // The county's copy is bad on every send for the next 30 s.
    let start = sim.wire.now;
    let stop = start.plus_ms(30_000);
    while sim.wire.now < stop {
        sim.corrupt_once = Some((county, city, (town, "民政办".to_string(), 1)));
        let until = sim.wire.now.plus_ms(1_000);
        sim.run(1_000, |s| s.wire.now >= until);
    }
    sim.corrupt_once = None;
    let rejections = sim.nodes[&city]
        .events
        .iter()
        .filter(|e| matches!(e, CatalogEvent::Rejected { .. }))
        .count();
    // retry_ms is 2 s: about one resend per retry, not one per round trip.
    assert!((5..=20).contains(&rejections), "{rejections} rejections");
    assert!(sim.nodes[&city]
        .sync
        .catalog(&origin("110101001", "民政办"))
        .is_none());
    // A valid copy arrives from the township itself (skip-level), and then the county's
    // own (now honest) resend is a duplicate.
    let now = sim.wire.now;
    let valid = Arc::clone(&sim.nodes[&town].log[0]);
    let node = sim.nodes.get_mut(&city).unwrap();
    node.sync.handle_message(
        now,
        &mut node.trust,
        town,
        CatalogMsg::Updates {
            log_id: 1_004,
            first: 1,
            updates: vec![valid],
        },
    );
    sim.flush(city);
    assert!(sim.run(600_000, |s| s.all_aggregated()));
}

/// A version refused for good (its signer's key is revoked) is reported and skipped: no copy
/// can come valid, so it must not stall the sender's later entries.
#[test]
fn a_version_by_a_revoked_signer_does_not_stall_the_stream() {
    let mut sim = Sim::new(8, Faults::NONE);
    let now = sim.wire.now;
    let revoked = Arc::new(signed_update(
        &sim.fx,
        "110101002",
        "派出所",
        1,
        vec![add("r", "派出所")],
    ));
    let good = Arc::new(signed_update(
        &sim.fx,
        "110101001",
        "民政办",
        1,
        vec![add("g", "民政办")],
    ));
    let (county, city) = (code("110101"), code("1101"));
    let node = sim.nodes.get_mut(&city).unwrap();
    node.trust
        .revoke(&key("110101002").verifying_key())
        .unwrap();
    node.sync.handle_message(
        now,
        &mut node.trust,
        county,
        CatalogMsg::Updates {
            log_id: 1,
            first: 1,
            updates: vec![revoked, good],
        },
    );
    sim.flush(city);
    let node = &sim.nodes[&city];
    assert!(node.events.iter().any(|e| matches!(
        e,
        CatalogEvent::Rejected {
            error: CatalogError::Cert(backflow_protocol::cert::CertError::Revoked { .. }),
            ..
        }
    )));
    assert!(node.sync.catalog(&origin("110101001", "民政办")).is_some());
    assert_eq!(node.watermarks[&county], (1, 2));
    sim.wire.now = now.plus_ms(60_000);
    assert!(sim.wire.due().iter().any(|(_, to, m)| *to == county
        && matches!(m, Message::Catalog(CatalogMsg::Ack { watermark: 2, .. }))));
}

/// Expired beyond the grace is final only for an authentic copy: a tampered copy of the same
/// version fails the same expiry check first, but may still be replaced by a valid one.
#[test]
fn expiry_is_a_final_refusal_only_for_authentic_copies() {
    use backflow_protocol::catalog::CATALOG_SIGNER_GRACE_MS;
    let fx = Fixture::new();
    let mut trust = fx.trust();
    let u = signed_update(&fx, "110101001", "民政办", 1, vec![add("e", "民政办")]);
    let late = T0.plus_ms(YEAR_MS + CATALOG_SIGNER_GRACE_MS + 1);
    let e = u.verify(&mut trust, late).unwrap_err();
    assert!(matches!(
        e,
        CatalogError::Cert(backflow_protocol::cert::CertError::Expired { .. })
    ));
    assert!(u.refusal_is_final(&mut trust, &e));
    let mut tampered = u.clone();
    if let Some(CatalogChange::Add(entry)) = tampered.update.changes.first_mut() {
        Arc::make_mut(entry).name.push('!');
    }
    let e = tampered.verify(&mut trust, late).unwrap_err();
    assert!(matches!(
        e,
        CatalogError::Cert(backflow_protocol::cert::CertError::Expired { .. })
    ));
    assert!(!tampered.refusal_is_final(&mut trust, &e));
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
