//! The adapter's unit tests: admission at both ends of every link, a restarted node's
//! reconnection, restored receipts and catalog log read back.

use super::*;
use crate::dataset::{Layout, Spread};
use crate::engine::{Engine, Limits};
use crate::inspect::Inspect;
use crate::net::{Fault, NetConfig};
use crate::run_config::{RunConfig, TopologySpec};
use crate::shell::ShellConfig;
use crate::time::MICROS_PER_S;
use backflow_topology::{Level, Topology};

/// `synthetic:2,2,2,2` with a 1 MiB dataset from national, run to the end; the nodes as
/// they are then.
fn run(faults: &[Fault]) -> (Arc<Topology>, Vec<ProtoNode>) {
    let (topo, _, nodes) = run_with(faults, |_| Vec::new());
    (topo, nodes)
}

/// [`run`] with the catalog changes `churn` picks, and the run's stats.
fn run_with(
    faults: &[Fault],
    churn: impl Fn(&Topology) -> Vec<(RegionCode, Micros)>,
) -> (Arc<Topology>, crate::engine::Stats, Vec<ProtoNode>) {
    let mut cfg = RunConfig::return_flow(TopologySpec::parse("synthetic:2,2,2,2").unwrap(), 3);
    cfg.dataset_bytes = 1 << 20;
    cfg.dataset_records = 100;
    let topo = Arc::new(cfg.topology.build(cfg.seed).unwrap());
    let layout = Layout::new(
        &topo,
        RegionCode::NATIONAL,
        "t",
        cfg.dataset_bytes,
        cfg.dataset_records,
        Spread::Even,
    );
    let nodes = build_nodes(&topo, &layout, &cfg, &churn(&topo)).unwrap();
    let engine = Engine::new(
        Arc::clone(&topo),
        nodes,
        NetConfig::default(),
        ShellConfig::default(),
        faults,
        Limits::default(),
        cfg.seed,
    );
    let (stats, nodes) = engine.run();
    (topo, stats, nodes)
}

fn admitted(node: &ProtoNode) -> BTreeSet<RegionCode> {
    let ep = node.ep.as_ref().expect("running");
    ep.admitted().map(|(_, r)| r).collect()
}

/// Admission runs in simnet as on the node: every node ends with its parent and its
/// children admitted (both ends of each connection ran the handshake), nobody else, and
/// paid for the certificates it had not verified before: its children's. Every node
/// probes its parent once: the probe that made the connection is not sent (the node drops
/// frames for a region not admitted), the one admission prompts is.
#[test]
fn both_ends_of_every_link_admit_each_other() {
    let (topo, stats, nodes) = run_with(&[], |_| Vec::new());
    let probes = stats.kinds.get("catalog_probe").map_or(0, |k| k.sent);
    assert_eq!(probes, topo.len() as u64 - 1);
    for (i, &me) in topo.codes().iter().enumerate() {
        let mut expected: BTreeSet<RegionCode> = topo.children(me).iter().copied().collect();
        expected.extend(me.parent());
        assert_eq!(admitted(&nodes[i]), expected, "{me}");
        let mut certs = own_certs(me);
        certs.extend(topo.children(me).iter().copied());
        assert_eq!(nodes[i].certs_verified, certs, "{me}");
        assert!(nodes[i].ep.as_ref().unwrap().return_flow().held().count() == 1);
    }
}

/// A crashed city comes back with an endpoint that admits nobody; it connects again as it
/// needs to, while its peers kept it admitted. Its descendants' receipts, persisted before
/// the crash, are restored with its transfer (nobody sends them again: all were acked).
#[test]
fn a_restarted_node_reconnects_and_restores_its_receipts() {
    let city = RegionCode::parse("1101").unwrap();
    let (topo, nodes) = run(&[Fault::Crash {
        node: city,
        at_us: 30 * MICROS_PER_S,
        restart_us: 40 * MICROS_PER_S,
    }]);
    let ix = topo.codes().binary_search(&city).unwrap();
    let node = &nodes[ix];
    let ep = node.ep.as_ref().expect("restarted");
    // Its catalog sync probes the parent at once, so the parent is admitted again.
    assert!(admitted(node).contains(&RegionCode::parse("11").unwrap()));
    // The parent never dropped it.
    let province = topo
        .codes()
        .binary_search(&RegionCode::parse("11").unwrap())
        .unwrap();
    assert!(admitted(&nodes[province]).contains(&city));
    let (_, hash) = node.world.manifests[0];
    assert!(ep.return_flow().is_complete(&hash));
    let receipts: BTreeSet<RegionCode> = ep
        .return_flow()
        .receipts(&hash)
        .iter()
        .map(|r| r.region)
        .collect();
    let counties: BTreeSet<RegionCode> = topo.children(city).iter().copied().collect();
    assert_eq!(receipts, counties);
    assert_eq!(node.store.receipts[&hash].len(), counties.len());
    // Restoring from the store now hands every persisted receipt back.
    let (_, report) = Endpoint::<RegionCode>::new(
        UnixMs(node.world.epoch_ms + 50_000),
        node.world.endpoint_config(ix),
        node.store.saved(node.me),
    )
    .unwrap();
    assert_eq!((report.transfers, report.receipts), (1, counties.len()));
    assert!(report.failed.is_empty());
}

/// A city cut off from its province while its townships change their catalogs, then
/// crashed: it restarts holding none of its log in memory, and once the cut heals reads
/// back what its upstream lacks (`ReadLog`) and sends it on. National ends with every
/// township's version; every node's CatalogSync agrees with its storage.
#[test]
fn a_restarted_node_reads_back_the_log_its_upstream_lacks() {
    let city = RegionCode::parse("1101").unwrap();
    let faults = [
        Fault::Partition {
            root: city,
            from_us: MICROS_PER_S / 2,
            until_us: 60 * MICROS_PER_S,
        },
        Fault::Crash {
            node: city,
            at_us: 30 * MICROS_PER_S,
            restart_us: 40 * MICROS_PER_S,
        },
    ];
    let townships = |topo: &Topology| -> Vec<RegionCode> {
        topo.codes()
            .iter()
            .copied()
            .filter(|&c| c.level() == Level::Township && city.contains(c))
            .collect()
    };
    let (topo, stats, nodes) = run_with(&faults, |topo| {
        townships(topo)
            .into_iter()
            .map(|t| (t, MICROS_PER_S))
            .collect()
    });
    let changed = townships(&topo);
    assert!(!changed.is_empty());
    assert!(stats.notes.get("catalog_log_read").is_some_and(|&n| n > 0));
    assert!(!stats.notes.contains_key("catalog_log_unreadable"));
    for &t in &changed {
        assert_eq!(nodes[0].catalog_version(t), 1, "{t} at national");
    }
    for node in &nodes {
        let ep = node.ep.as_ref().expect("running");
        let cs = ep.catalog_sync();
        let store = node.catalog_store();
        assert_eq!(cs.log_len(), store.log_len(), "{}", node.me);
        assert_eq!(cs.origins_len(), store.departments_len(), "{}", node.me);
        for (origin, stored) in store.departments() {
            let held = cs.origin(origin).expect("known to CatalogSync");
            assert_eq!(held.seq, stored.record.seq);
            assert_eq!(held.entries, stored.entries().len() as u64);
        }
    }
    // The city's own upstream window is empty again: everything was acknowledged.
    let ix = topo.codes().binary_search(&city).unwrap();
    let cs = nodes[ix].ep.as_ref().unwrap().catalog_sync();
    assert_eq!(cs.log_bytes_held(), 0);
    assert_eq!(cs.upstream_acked(), Some(cs.log_len()));
}
