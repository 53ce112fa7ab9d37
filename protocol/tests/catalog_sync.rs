//! Catalog sync driven through the in-memory network of endpoints (`common::net`):
//! aggregation up the tree, idempotence, restart, log rebuild, skip-level fallback, and
//! relaying rules. A test that plays a peer hands its frame to the endpoint as coming from
//! that peer's connection (`Net::inject`), so admission applies to it too.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use backflow_protocol::catalog::{CatalogChange, CatalogError};
use backflow_protocol::catalog_sync::{CatalogEvent, CatalogMsg};
use backflow_protocol::endpoint::{Event as EpEvent, Output};
use backflow_protocol::wire::Message;
use backflow_protocol::RegionCode;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;
use proptest::prelude::*;

/// The final expected sequence per (region, department).
type Expected = BTreeMap<(RegionCode, String), u64>;

/// A copy to corrupt in transit once: (from, to, (origin region, department, seq)).
type CorruptOnce = Option<(RegionCode, RegionCode, (RegionCode, String, u64))>;

struct Sim {
    net: Net,
    expected: Expected,
    /// Corrupt the next copy of (origin region, department, seq) sent from → to, once.
    corrupt_once: Rc<RefCell<CorruptOnce>>,
}

impl Sim {
    /// The fixture tree with [`TEST_TUNING`] (2 s retries, 20 s fallback).
    fn new(seed: u64, faults: Faults) -> Sim {
        let mut net = Net::new(seed, faults, NetConfig::with(TEST_TUNING));
        let corrupt_once: Rc<RefCell<CorruptOnce>> = Rc::default();
        let armed = Rc::clone(&corrupt_once);
        net.tamper = Some(Box::new(move |from, to, msg| {
            maybe_corrupt(&mut armed.borrow_mut(), from, to, msg)
        }));
        Sim {
            net,
            expected: BTreeMap::new(),
            corrupt_once,
        }
    }

    /// A department at `region` publishes its next catalog version with `n` new entries.
    fn submit(&mut self, region: &str, department: &str, n: usize) {
        let c = code(region);
        let seq = self.net.cs(c).next_seq(&origin(region, department));
        let changes = (0..n)
            .map(|i| add(&format!("{region}-{department}-{seq}-{i}"), department))
            .collect();
        let u = signed_update(&self.net.fx, region, department, seq, changes);
        self.net.submit_catalog(c, u).unwrap();
        self.expected.insert((c, department.to_string()), seq);
    }

    fn run(&mut self, limit_ms: u64, done: impl Fn(&Net, &Expected) -> bool) -> bool {
        let expected = &self.expected;
        self.net.run(limit_ms, |n| done(n, expected))
    }

    fn all_aggregated(&self) -> bool {
        all_aggregated(&self.net, &self.expected)
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

/// A copy corrupted in transit (or by a faulty relay): one entry name changed after
/// signing, so the signature no longer verifies.
fn maybe_corrupt(armed: &mut CorruptOnce, from: RegionCode, to: RegionCode, m: &mut Message) {
    let Some((f, t, (region, department, seq))) = armed.as_ref() else {
        return;
    };
    if (*f, *t) != (from, to) {
        return;
    }
    let Message::Catalog(CatalogMsg::Updates { updates, .. }) = m else {
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
            *armed = None;
            return;
        }
    }
}

/// Node `c` holds exactly the catalogs of its subtree, at their final versions.
fn aggregated(net: &Net, expected: &Expected, c: RegionCode) -> bool {
    let held: Expected = net
        .cs(c)
        .origins()
        .map(|(o, k)| ((o.region, o.department.clone()), k.seq))
        .collect();
    let want: Expected = expected
        .iter()
        .filter(|((r, _), _)| c.contains(*r))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    held == want
}

fn all_aggregated(net: &Net, expected: &Expected) -> bool {
    net.nodes.keys().all(|c| aggregated(net, expected, *c))
}

fn rejections(net: &Net, c: RegionCode) -> Vec<CatalogError> {
    net.node(c)
        .catalog_events()
        .filter_map(|e| match e {
            CatalogEvent::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

fn updates(
    log_id: u64,
    first: u64,
    updates: Vec<Arc<backflow_protocol::catalog::SignedCatalogUpdate>>,
) -> Message {
    Message::Catalog(CatalogMsg::Updates {
        log_id,
        first,
        updates,
    })
}

#[test]
fn catalogs_aggregate_up_to_the_national_node() {
    let mut sim = Sim::new(1, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, all_aggregated));
    let national = sim.net.cs(RegionCode::NATIONAL);
    assert_eq!(national.origins_len(), 7);
    let o = origin("110101001", "民政办");
    assert_eq!(national.origin(&o).unwrap().seq, 2);
    assert_eq!(national.origin(&o).unwrap().entries, 3);
    // Each version was applied exactly once per node: logs hold no duplicates.
    assert_eq!(national.log_len(), 8);
    assert_eq!(sim.net.cs(code("1101")).log_len(), 6);
    // Later versions keep flowing incrementally.
    sim.submit("110102001", "民政办", 1);
    assert!(sim.run(120_000, all_aggregated));
    assert_eq!(sim.net.cs(RegionCode::NATIONAL).log_len(), 9);
}

#[test]
fn restarts_resume_from_persisted_logs_and_watermarks() {
    let mut sim = Sim::new(2, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, all_aggregated));
    // Protocol frames only: the handshakes of the restarted nodes' connections are not.
    let sent_before = sim.net.sent;
    // Both a parent and a child restart; nothing is re-applied, little is re-sent.
    sim.net.restart(code("110101"));
    sim.net.restart(code("110101001"));
    sim.net.restart(code("1101"));
    sim.submit("110101001", "民政办", 1);
    assert!(sim.run(120_000, all_aggregated));
    assert_eq!(sim.net.cs(RegionCode::NATIONAL).log_len(), 9);
    assert!(
        sim.net.sent - sent_before < 40,
        "resumed from watermarks, sent {}",
        sim.net.sent - sent_before
    );
}

#[test]
fn a_rebuilt_child_log_is_resent_and_deduplicated() {
    let mut sim = Sim::new(3, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, all_aggregated));
    // The county lost its database and rebuilt its log under a new id, with the same content
    // (and no watermarks).
    let c = code("110101");
    let node = sim.net.node_mut(c);
    node.config.catalog_log_id = 9_999;
    node.store.watermarks.clear();
    sim.net.restart(c);
    assert!(sim.run(120_000, |n, _| n.cs(c).upstream_acked()
        == Some(n.cs(c).log_len())));
    assert!(sim.all_aggregated());
    assert_eq!(sim.net.cs(RegionCode::NATIONAL).log_len(), 8);
}

/// The log lives in storage: once acknowledged, nothing of it is held in memory (national
/// never holds any), and a parent that lost everything gets its children's whole logs again,
/// read back from their storage.
#[test]
fn a_parent_that_lost_its_catalog_gets_the_logs_again_from_storage() {
    let mut sim = Sim::new(4, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, all_aggregated));
    // The last acknowledgements land.
    sim.run(5_000, |_, _| false);
    for c in ["0", "11", "1101", "110101", "110101001"] {
        assert_eq!(sim.net.cs(code(c)).log_bytes_held(), 0, "{c}");
    }
    // The city loses its database: a new, empty log and no watermarks for its children.
    let city = code("1101");
    let node = sim.net.node_mut(city);
    node.store = Default::default();
    node.config.catalog_log_id = 7_777;
    sim.net.restart(city);
    assert_eq!(sim.net.cs(city).log_len(), 0);
    // The counties' logs are all acknowledged (nothing held): they are read back.
    assert!(sim.run(120_000, |n, e| aggregated(n, e, city)));
    assert!(sim.all_aggregated());
    assert_eq!(sim.net.cs(city).log_len(), 6);
    assert_eq!(sim.net.cs(RegionCode::NATIONAL).log_len(), 8);
}

/// An acknowledgement that answers an earlier request (a duplicate probe after a reconnect,
/// a retransmitted batch) while a batch is outstanding starts no second batch: otherwise each
/// of the two answers would start one, and two streams of batches would run for good.
#[test]
fn an_answer_to_an_earlier_request_starts_no_second_stream() {
    let mut sim = Sim::new(5, Faults::NONE);
    sim.workload();
    assert!(sim.run(120_000, all_aggregated));
    sim.run(5_000, |_, _| false);
    let (county, city) = (code("110101"), code("1101"));
    let log_id = sim.net.node(county).config.catalog_log_id;
    let acked = sim.net.cs(county).upstream_acked().expect("in sync");
    assert_eq!(acked, sim.net.cs(county).log_len());
    // A new version: the county sends it to the city and waits for the answer.
    sim.submit("110101", "公安局", 1);
    let batch_to_city = |m: &(RegionCode, RegionCode, Message)| {
        m.0 == county && m.1 == city && matches!(m.2, Message::Catalog(CatalogMsg::Updates { .. }))
    };
    assert_eq!(
        sim.net
            .in_flight()
            .iter()
            .filter(|m| batch_to_city(m))
            .count(),
        1
    );
    // The city's answer to an earlier request arrives meanwhile: nothing new in it.
    let ack = Message::Catalog(CatalogMsg::Ack {
        log_id,
        watermark: acked,
    });
    let out = sim.net.inject(city, county, ack);
    let sent = out.iter().filter(|o| {
        matches!(o, Output::Send { to, msg: Message::Catalog(CatalogMsg::Updates { .. }), .. } if *to == city)
    });
    assert_eq!(sent.count(), 0, "a second batch in flight");
    assert!(sim.run(60_000, all_aggregated));
}

#[test]
fn skip_level_fallback_when_the_county_is_down() {
    let mut sim = Sim::new(4, Faults::NONE);
    sim.net.set_down(code("110101"));
    sim.submit("110101001", "民政办", 1);
    sim.submit("110102001", "民政办", 1);
    assert!(
        sim.run(600_000, |n, e| aggregated(n, e, RegionCode::NATIONAL)
            && aggregated(n, e, code("1101")))
    );
    assert!(sim
        .net
        .node(code("110101001"))
        .catalog_events()
        .any(|e| matches!(e, CatalogEvent::UpstreamChanged { .. })));
    // The county recovers and catches up; the township goes back to its parent.
    sim.net.heal();
    assert!(sim.run(1_200_000, |n, e| all_aggregated(n, e)
        && n.cs(code("110101001")).upstream() == Some(code("110101"))));
}

#[test]
fn relaying_a_foreign_or_forged_catalog_is_refused() {
    let mut sim = Sim::new(5, Faults::NONE);
    let fx = &sim.net.fx;
    let foreign = Arc::new(signed_update(
        fx,
        "110102001",
        "民政办",
        1,
        vec![add("x", "民政办")],
    ));
    let mut forged = signed_update(fx, "110101001", "民政办", 1, vec![add("y", "民政办")]);
    forged.update.changes.push(CatalogChange::Withdraw {
        id: "z".into(),
        reason: "r".into(),
    });
    let good = Arc::new(signed_update(
        fx,
        "110101001",
        "派出所",
        1,
        vec![add("w", "派出所")],
    ));
    let honest = Arc::new(signed_update(
        fx,
        "110101001",
        "民政办",
        1,
        vec![add("y", "民政办")],
    ));
    let (town, county) = (code("110101001"), code("110101"));
    // A batch over the township's own (admitted) connection.
    sim.net.inject(
        town,
        county,
        updates(1, 1, vec![foreign, Arc::new(forged), good.clone()]),
    );
    let rejected = rejections(&sim.net, county);
    assert!(matches!(rejected[0], CatalogError::WrongOrigin));
    assert!(matches!(rejected[1], CatalogError::Cert(_)));
    // The foreign version is skipped for good; the forged one holds the stream (unacked)
    // until a valid copy comes.
    assert_eq!(sim.net.cs(county).origins_len(), 0);
    assert_eq!(sim.net.store(county).watermarks[&town], (1, 1));
    assert!(
        !sim.net.in_flight().iter().any(|(_, to, _)| *to == town),
        "no ack for a held batch"
    );
    sim.net
        .inject(town, county, updates(1, 2, vec![honest, good]));
    assert_eq!(sim.net.cs(county).origins_len(), 2);
    assert_eq!(sim.net.store(county).watermarks[&town], (1, 3));
    // A sibling cannot push catalogs up through us: it is not even admitted (it never
    // reaches the machine)...
    let sibling = code("110102");
    let outs = sim.net.inject(sibling, county, updates(1, 1, vec![]));
    assert_eq!(
        outs,
        vec![Output::Event(EpEvent::UnadmittedFrame { peer: sibling })]
    );
    assert!(!sim.net.store(county).watermarks.contains_key(&sibling));
    // ...and an ancestor, admitted, is refused by the machine.
    let city = code("1101");
    sim.net.inject(city, county, updates(1, 1, vec![]));
    assert!(!sim.net.store(county).watermarks.contains_key(&city));
}

/// A relayed version corrupted on one hop is rejected (and reported) but does not poison the
/// department's stream: the relay resends it on retry and versions k..n all reach national.
#[test]
fn a_corrupted_relayed_version_is_refetched_not_skipped() {
    let mut sim = Sim::new(6, Faults::NONE);
    let (town, county, city) = (code("110101001"), code("110101"), code("1101"));
    // Corrupt version 2 of the township's department on the county → city hop.
    *sim.corrupt_once.borrow_mut() = Some((county, city, (town, "民政办".to_string(), 2)));
    for _ in 0..5 {
        sim.submit("110101001", "民政办", 1);
    }
    sim.submit("110101002", "派出所", 1);
    assert!(sim.run(600_000, all_aggregated));
    assert!(
        sim.corrupt_once.borrow().is_none(),
        "the corruption was injected"
    );
    let o = origin("110101001", "民政办");
    let national = sim.net.cs(RegionCode::NATIONAL);
    assert_eq!(national.origin(&o).unwrap().seq, 5);
    assert_eq!(national.origin(&o).unwrap().entries, 5);
    let rejected: Vec<_> = sim
        .net
        .node(city)
        .catalog_events()
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
    for n in sim.net.nodes.values() {
        assert!(!n.catalog_events().any(|e| matches!(
            e,
            CatalogEvent::Rejected {
                error: CatalogError::Gap { .. },
                ..
            }
        )));
        let mut seen = std::collections::BTreeSet::new();
        assert!(n
            .store
            .catalog_log
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
    let stop = sim.net.now.plus_ms(30_000);
    while sim.net.now < stop {
        *sim.corrupt_once.borrow_mut() = Some((county, city, (town, "民政办".to_string(), 1)));
        let until = sim.net.now.plus_ms(1_000);
        sim.run(1_000, |n, _| n.now >= until);
    }
    *sim.corrupt_once.borrow_mut() = None;
    let rejections = rejections(&sim.net, city).len();
    // retry_ms is 2 s: about one resend per retry, not one per round trip.
    assert!((5..=20).contains(&rejections), "{rejections} rejections");
    assert!(sim
        .net
        .cs(city)
        .origin(&origin("110101001", "民政办"))
        .is_none());
    // A valid copy arrives from the township itself (skip-level), and then the county's
    // own (now honest) resend is a duplicate.
    let valid = Arc::clone(&sim.net.store(town).catalog_log[0]);
    let log_id = sim.net.node(town).config.catalog_log_id;
    sim.net.inject(town, city, updates(log_id, 1, vec![valid]));
    assert!(sim.run(600_000, all_aggregated));
}

/// A version refused for good (its signer's key is revoked) is reported and skipped: no copy
/// can come valid, so it must not stall the sender's later entries.
#[test]
fn a_version_by_a_revoked_signer_does_not_stall_the_stream() {
    let mut sim = Sim::new(8, Faults::NONE);
    let revoked = Arc::new(signed_update(
        &sim.net.fx,
        "110101002",
        "派出所",
        1,
        vec![add("r", "派出所")],
    ));
    let good = Arc::new(signed_update(
        &sim.net.fx,
        "110101001",
        "民政办",
        1,
        vec![add("g", "民政办")],
    ));
    let (county, city) = (code("110101"), code("1101"));
    // The city knows the revocation (its trust store holds it from the start).
    sim.net
        .node_mut(city)
        .config
        .trust
        .revoke(&key("110101002").verifying_key())
        .unwrap();
    sim.net.restart(city);
    sim.net
        .inject(county, city, updates(1, 1, vec![revoked, good]));
    let node = sim.net.node(city);
    assert!(node.catalog_events().any(|e| matches!(
        e,
        CatalogEvent::Rejected {
            error: CatalogError::Cert(backflow_protocol::cert::CertError::Revoked { .. }),
            ..
        }
    )));
    assert!(sim
        .net
        .cs(city)
        .origin(&origin("110101001", "民政办"))
        .is_some());
    assert_eq!(node.store.watermarks[&county], (1, 2));
    assert!(sim.net.in_flight().iter().any(|(_, to, m)| *to == county
        && matches!(m, Message::Catalog(CatalogMsg::Ack { watermark: 2, .. }))));
}

/// Expired beyond the grace is final only for an authentic copy: a tampered copy of the same
/// version fails the same expiry check first, but may still be replaced by a valid one.
/// (Verification of one version only: no node is involved.)
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
        prop_assert!(sim.run(6 * 3_600_000, all_aggregated));
        // No node applied a version twice.
        for n in sim.net.nodes.values() {
            let mut seen = std::collections::BTreeSet::new();
            for u in &n.store.catalog_log {
                prop_assert!(seen.insert((u.update.origin.clone(), u.update.seq)));
            }
        }
    }
}

/// A department over its catalog quota at a node (#15 item 5): the county keeps two versions
/// of 民政办 and refuses the rest for good — they go no further up — while another department's
/// version from the same township, sent after them, still arrives everywhere (the stream does
/// not stall). Before, a department could grow every ancestor's in-memory log without bound.
#[test]
fn a_department_over_its_catalog_quota_is_refused_without_stalling_others() {
    use backflow_protocol::tuning::Tuning;
    let mut config = NetConfig::with(TEST_TUNING);
    config.tuning_of.insert(
        code("110101"),
        Tuning {
            catalog_versions_per_origin_max: 2,
            ..TEST_TUNING
        },
    );
    let mut sim = Sim {
        net: Net::new(32, Faults::NONE, config),
        expected: BTreeMap::new(),
        corrupt_once: Rc::default(),
    };
    for _ in 0..4 {
        sim.submit("110101001", "民政办", 1);
    }
    sim.submit("110101001", "卫健办", 1);
    let seq_at = |net: &Net, at: &str, department: &str| {
        net.cs(code(at))
            .origin(&origin("110101001", department))
            .map_or(0, |c| c.seq)
    };
    assert!(sim.run(60_000, |net, _| seq_at(net, "0", "卫健办") == 1));
    for at in ["110101", "1101", "11", "0"] {
        assert_eq!(seq_at(&sim.net, at, "民政办"), 2, "at {at}");
    }
    assert_eq!(seq_at(&sim.net, "110101001", "民政办"), 4);
    assert!(rejections(&sim.net, code("110101"))
        .iter()
        .any(|e| matches!(
            e,
            CatalogError::Limit(l) if l.what == "catalog versions of one department"
        )));
}
