//! Run configuration: topology spec, scenario, routing variant, faults; and the driver that
//! builds the nodes, runs the engine and checks the invariants.

use std::sync::Arc;

use backflow_topology::{Fanout, Level, RegionCode, Topology};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dataset::{Layout, Part, Spread};
use crate::engine::{Engine, Limits, Micros, SimNode, Stats, MICROS_PER_S};
use crate::net::{random_faults, Fault, NetConfig};
use crate::refmodel::{ModelConfig, ModelNode, World};
use crate::shell::ShellConfig;

/// Which tree to simulate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopologySpec {
    China,
    /// Child-count range per tier (provinces, cities per province, counties per city,
    /// townships per county).
    Synthetic {
        fanout: [(u32, u32); 4],
    },
}

impl TopologySpec {
    /// `china`, or `synthetic:P,C,K,T` where each of P, C, K, T is a count `N` or a range
    /// `MIN-MAX` (e.g. `synthetic:4,5,6,8` or `synthetic:31,8-14,6-12,10-16`).
    pub fn parse(text: &str) -> Result<TopologySpec, String> {
        let text = text.trim();
        if text == "china" {
            return Ok(TopologySpec::China);
        }
        let Some(rest) = text.strip_prefix("synthetic:") else {
            return Err(format!(
                "unknown topology {text:?}: expected `china` or `synthetic:P,C,K,T` (fan-out per tier, e.g. synthetic:4,5,6,8)"
            ));
        };
        let parts: Vec<&str> = rest.split(',').collect();
        if parts.len() != 4 {
            return Err(format!(
                "topology {text:?}: expected 4 fan-outs (provinces, cities, counties, townships), got {}",
                parts.len()
            ));
        }
        let mut fanout = [(0, 0); 4];
        for (i, p) in parts.iter().enumerate() {
            let num = |s: &str| -> Result<u32, String> {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("topology {text:?}: {s:?} is not a fan-out count"))
            };
            let (lo, hi) = match p.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(p)?, num(p)?),
            };
            if lo == 0 || lo > hi {
                return Err(format!(
                    "topology {text:?}: fan-out {p:?} must be at least 1 and MIN <= MAX"
                ));
            }
            fanout[i] = (lo, hi);
        }
        Ok(TopologySpec::Synthetic { fanout })
    }

    pub fn build(&self, seed: u64) -> Result<Topology, String> {
        match self {
            TopologySpec::China => Ok(Topology::china().clone()),
            TopologySpec::Synthetic { fanout } => {
                let f = Fanout {
                    province: fanout[0],
                    city: fanout[1],
                    county: fanout[2],
                    township: fanout[3],
                };
                // Guard the size before allocating: the simulator keeps every node in memory.
                let max_nodes: u64 = fanout
                    .iter()
                    .scan(1u64, |acc, (_, hi)| {
                        *acc = acc.saturating_mul(u64::from(*hi));
                        Some(*acc)
                    })
                    .sum();
                if max_nodes > NODES_MAX {
                    return Err(format!(
                        "synthetic topology could have {max_nodes} nodes; the limit is {NODES_MAX}"
                    ));
                }
                Topology::synthetic(f, seed).map_err(|e| format!("synthetic topology: {e}"))
            }
        }
    }

    pub fn label(&self) -> String {
        match self {
            TopologySpec::China => "china".to_string(),
            TopologySpec::Synthetic { fanout } => {
                let p: Vec<String> = fanout
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("synthetic:{}", p.join(","))
            }
        }
    }
}

/// Nodes in one simulation (the country has 44,704; leave room for what-if fan-outs).
pub const NODES_MAX: u64 = 500_000;
/// Nodes with the protocol node implementation: each holds real keys, certificate chains and
/// state machines (~25 KiB), so 150,000 nodes stay under ~4 GiB.
pub const PROTOCOL_NODES_MAX: usize = 150_000;

/// Data-plane routing variant (topology what-ifs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Only the region tree: a node waits for its parent however long it is down (return-flow
    /// and catalog sync alike).
    Strict,
    /// Parent → child, falling back to the nearest reachable ancestor (the protocol's default).
    SkipLevel,
    /// Provinces serve their counties directly (province → county links), with skip-level
    /// fallback. On the protocol node (`DataRouting` province-county) cities then hold and
    /// report only their own partitions; the reference model still feeds cities their share.
    Direct,
}

impl Routing {
    pub fn parse(text: &str) -> Result<Routing, String> {
        match text {
            "strict" => Ok(Routing::Strict),
            "skip-level" => Ok(Routing::SkipLevel),
            "direct" => Ok(Routing::Direct),
            _ => Err(format!(
                "unknown routing {text:?}: expected strict, skip-level or direct"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Routing::Strict => "strict",
            Routing::SkipLevel => "skip-level",
            Routing::Direct => "direct",
        }
    }
}

/// The return flow's tuning on the protocol node. Defaults are the node's shipping defaults
/// (node/src/node.rs `Tuning::default()`), kept equal by hand until the protocol's `Endpoint`
/// (issue #16) gives the node and simnet one `Tuning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tuning {
    /// Retransmission interval of announces, wants and receipts.
    pub retry_ms: u64,
    /// Silence from a source before skip-level fallback (not used with strict routing).
    pub source_silence_ms_max: u64,
    /// Chunk groups (16 KiB) requested and not yet stored, per transfer.
    pub groups_in_flight_max: u64,
    /// Minimum interval between two receipts for one manifest.
    pub receipt_interval_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            retry_ms: 5_000,
            source_silence_ms_max: 60_000,
            groups_in_flight_max: 1_024,
            receipt_interval_ms: 1_000,
        }
    }
}

/// Which node implementation to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeImpl {
    /// The protocol crate's state machines (what the real node runs).
    Protocol,
    /// The compact reference model in `refmodel` (cross-check).
    Model,
}

/// Everything that determines a run. Same config → same report.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub topology: TopologySpec,
    pub seed: u64,
    pub node: NodeImpl,
    pub routing: Routing,
    /// Return-flow dataset: published at `publisher` (None: no return-flow).
    pub publisher: Option<RegionCode>,
    pub dataset_bytes: u64,
    pub dataset_records: u64,
    /// How records (and bytes) spread over the townships.
    pub spread: Spread,
    /// The protocol node's return-flow tuning.
    pub tuning: Tuning,
    /// The node's shell: control outbox, CPU costs, transport overhead.
    pub shell: ShellConfig,
    /// Catalog churn: this many townships change a catalog entry, at random times in
    /// `[0, churn_window_us]`.
    pub churn_townships: usize,
    pub churn_window_us: Micros,
    pub net: NetConfig,
    pub faults: Vec<Fault>,
    /// Extra random faults drawn from `seed`, within `[0, fault_window_us]`.
    pub random_faults: usize,
    pub fault_window_us: Micros,
    #[serde(skip)]
    pub limits: Limits,
}

impl RunConfig {
    /// The default scenario: one return-flow from national to every township.
    pub fn return_flow(topology: TopologySpec, seed: u64) -> RunConfig {
        RunConfig {
            topology,
            seed,
            node: NodeImpl::Protocol,
            routing: Routing::SkipLevel,
            publisher: Some(RegionCode::NATIONAL),
            dataset_bytes: 1 << 30,
            dataset_records: 10_000_000,
            spread: Spread::Villages,
            tuning: Tuning::default(),
            shell: ShellConfig::default(),
            churn_townships: 0,
            churn_window_us: 60 * MICROS_PER_S,
            net: NetConfig::default(),
            faults: Vec::new(),
            random_faults: 0,
            fault_window_us: 600 * MICROS_PER_S,
            limits: Limits::default(),
        }
    }
}

/// What a node holds at the end, for the invariants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Every partition of the node's region stored and verified.
    pub complete: bool,
    pub bytes: u64,
    pub records: u64,
    /// For a township: the content hash of the partition it holds.
    pub hash: Option<[u8; 32]>,
}

/// Node implementations expose their final holdings and catalog for checking.
pub trait Inspect {
    fn held(&self) -> Held;
    /// Catalog version this node's aggregated catalog holds for `origin` (0 if none).
    fn catalog_version(&self, origin: RegionCode) -> u64;
}

/// Name of the receipts invariant (tests single it out).
pub const RECEIPTS_INVARIANT: &str = "publisher receipts cover every region";

/// One invariant's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Output of a run, before rendering.
pub struct Outcome {
    pub config: RunConfig,
    pub topo: Arc<Topology>,
    pub layout: Layout,
    pub faults: Vec<Fault>,
    pub churn: Vec<(RegionCode, Micros)>,
    pub stats: Stats,
    pub invariants: Vec<Invariant>,
    pub held: Vec<Held>,
}

/// Builds everything from the config and runs it.
pub fn run(config: &RunConfig) -> Result<Outcome, String> {
    let topo = Arc::new(config.topology.build(config.seed)?);
    if config.node == NodeImpl::Protocol && topo.len() > PROTOCOL_NODES_MAX {
        return Err(format!(
            "{} nodes is over the protocol node limit of {PROTOCOL_NODES_MAX} (memory); use --node model for larger what-ifs",
            topo.len()
        ));
    }
    if let Some(p) = config.publisher {
        if !topo.contains_code(p) {
            return Err(format!("publisher {p} is not a region of this topology"));
        }
    }
    for f in &config.faults {
        let node = match *f {
            Fault::Down { node, .. } | Fault::Crash { node, .. } => node,
            Fault::Partition { root, .. } => root,
            _ => continue,
        };
        if !topo.contains_code(node) {
            return Err(format!("fault names region {node}, not in this topology"));
        }
    }
    let mut faults = config.faults.clone();
    faults.extend(random_faults(
        &topo,
        config.random_faults,
        config.fault_window_us,
        config.seed,
    ));
    let bytes = if config.publisher.is_some() {
        config.dataset_bytes
    } else {
        0
    };
    let records = if config.publisher.is_some() {
        config.dataset_records
    } else {
        0
    };
    if bytes > 0 && records == 0 {
        return Err(
            "a dataset of more than 0 bytes needs at least 1 record (--records)".to_string(),
        );
    }
    if config.random_faults > 0 && config.fault_window_us < 2 {
        return Err("random faults need a fault window of more than 0 s".to_string());
    }
    let root = config.publisher.unwrap_or(RegionCode::NATIONAL);
    let layout = Layout::new(&topo, root, "simnet-dataset", bytes, records, config.spread);
    let churn = churn_schedule(&topo, config);
    let mut limits = config.limits;
    // The run must outlast the faults, or "nothing lost after faults" cannot be judged.
    let last_fault = faults.iter().map(|f| f.end_us()).max().unwrap_or(0);
    limits.horizon_us = limits.horizon_us.max(last_fault + 3_600 * MICROS_PER_S);

    let (stats, held, catalog_ok) = match config.node {
        NodeImpl::Model => {
            let mut cfg = ModelConfig::default();
            match config.routing {
                Routing::Strict => cfg.fallback_after_retries = 0,
                Routing::SkipLevel => {}
                Routing::Direct => {
                    for &c in topo.codes() {
                        if c.level() == Level::County {
                            if let Some(p) = c.ancestor_at(Level::Province) {
                                cfg.upstream_override.insert(c, p);
                            }
                        }
                    }
                }
            }
            let world = Arc::new(World {
                topo: Arc::clone(&topo),
                layout: layout.clone(),
                cfg,
                publisher: config.publisher,
                catalog_changes: churn.clone(),
            });
            let nodes: Vec<ModelNode> = (0..topo.len())
                .map(|i| ModelNode::new(Arc::clone(&world), i))
                .collect();
            drive(&topo, nodes, config, &faults, limits, &churn)
        }
        NodeImpl::Protocol => {
            let nodes = crate::protonode::build_nodes(&topo, &layout, config, &churn)?;
            drive(&topo, nodes, config, &faults, limits, &churn)
        }
    };
    let invariants = check_invariants(&topo, &layout, config, &stats, &held, catalog_ok);
    Ok(Outcome {
        config: config.clone(),
        topo,
        layout,
        faults,
        churn,
        stats,
        invariants,
        held,
    })
}

fn drive<N: SimNode + Inspect>(
    topo: &Arc<Topology>,
    nodes: Vec<N>,
    config: &RunConfig,
    faults: &[Fault],
    limits: Limits,
    churn: &[(RegionCode, Micros)],
) -> (Stats, Vec<Held>, bool) {
    let engine = Engine::new(
        Arc::clone(topo),
        nodes,
        config.net.clone(),
        config.shell,
        faults,
        limits,
        config.seed,
    );
    let (stats, nodes) = engine.run();
    let held = nodes.iter().map(|n| n.held()).collect();
    // Catalog: national must hold the latest version of every churned township.
    let mut expected = std::collections::BTreeMap::<RegionCode, u64>::new();
    for (t, _) in churn {
        *expected.entry(*t).or_default() += 1;
    }
    let catalog_ok = expected
        .iter()
        .all(|(t, v)| nodes[0].catalog_version(*t) == *v);
    (stats, held, catalog_ok)
}

/// `churn_townships` distinct townships, each changing once at a random time.
fn churn_schedule(topo: &Topology, config: &RunConfig) -> Vec<(RegionCode, Micros)> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x0ca7_a109);
    let townships: Vec<RegionCode> = topo
        .codes()
        .iter()
        .copied()
        .filter(|c| c.level() == Level::Township)
        .collect();
    let k = config.churn_townships.min(townships.len());
    let mut chosen: Vec<RegionCode> = townships.choose_multiple(&mut rng, k).copied().collect();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|t| (t, rng.gen_range(0..=config.churn_window_us)))
        .collect()
}

fn check_invariants(
    topo: &Topology,
    layout: &Layout,
    config: &RunConfig,
    stats: &Stats,
    held: &[Held],
    catalog_ok: bool,
) -> Vec<Invariant> {
    let mut out = Vec::new();
    if let Some(publisher) = config.publisher {
        // 1. Every township under the publisher holds exactly its records.
        let mut wrong = Vec::new();
        let mut checked = 0usize;
        for (i, code) in topo.codes().iter().enumerate() {
            if code.level() != Level::Township || !publisher.contains(*code) {
                continue;
            }
            checked += 1;
            let want: &Part = &layout.parts[i];
            let h = held[i];
            let ok = h.complete
                && h.records == want.records
                && h.bytes == want.bytes
                && h.hash.is_none_or(|x| x == want.hash);
            if !ok && wrong.len() < 8 {
                wrong.push(format!(
                    "{code}: holds {} records / {} bytes (complete: {}), expected {} / {}",
                    h.records, h.bytes, h.complete, want.records, want.bytes
                ));
            }
        }
        out.push(Invariant {
            name: "every township holds exactly its records",
            ok: wrong.is_empty(),
            detail: if wrong.is_empty() {
                format!("{checked} townships checked: records, bytes and content hash match")
            } else {
                wrong.join("; ")
            },
        });
        // 3. Nothing lost after faults: every node of the publisher's region holds its share.
        let incomplete: Vec<String> = topo
            .codes()
            .iter()
            .enumerate()
            .filter(|(i, c)| publisher.contains(**c) && !held[*i].complete)
            .map(|(_, c)| c.to_string())
            .collect();
        out.push(Invariant {
            name: "nothing lost after faults",
            ok: incomplete.is_empty(),
            detail: format!(
                "{} of {} nodes incomplete{}",
                incomplete.len(),
                topo.subtree_size(publisher),
                if incomplete.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (e.g. {})",
                        incomplete
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            ),
        });
        // 4. The publisher sees it: receipts flowing up cover every region.
        out.push(Invariant {
            name: RECEIPTS_INVARIANT,
            ok: stats.receipts_complete_at.is_some(),
            detail: match stats.receipts_complete_at {
                Some(t) => format!("complete at {:.3} s", t as f64 / 1e6),
                None => match stats.publisher_view {
                    Some((t, d, e)) => format!(
                        "the publisher's aggregated receipts never covered every region: \
                         last view {d} of {e} partitions at {:.3} s",
                        t as f64 / 1e6
                    ),
                    None => {
                        "the publisher's aggregated receipts never covered every region".to_string()
                    }
                },
            },
        });
    }
    // 2. No partition ever reached a node outside its region's ancestor chain.
    out.push(Invariant {
        name: "no partition reached a node outside its region's ancestor chain",
        ok: stats.leak_count == 0,
        detail: if stats.leak_count == 0 {
            format!(
                "{} chunk messages checked on delivery",
                stats.kinds.get("chunk").map_or(0, |k| k.delivered)
            )
        } else {
            format!(
                "{} leaks, e.g. {}",
                stats.leak_count,
                stats.leak_examples.join("; ")
            )
        },
    });
    if config.churn_townships > 0 {
        out.push(Invariant {
            name: "national catalog holds every change",
            ok: catalog_ok,
            detail: format!("{} township changes", config.churn_townships),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_specs_parse_and_round_trip() {
        assert_eq!(TopologySpec::parse("china").unwrap(), TopologySpec::China);
        let s = TopologySpec::parse("synthetic:31,8-14,6-12,10-16").unwrap();
        assert_eq!(s.label(), "synthetic:31,8-14,6-12,10-16");
        assert_eq!(TopologySpec::parse(&s.label()).unwrap(), s);
        for bad in [
            "",
            "China",
            "synthetic:",
            "synthetic:1,2,3",
            "synthetic:1,2,3,4,5",
            "synthetic:0,1,1,1",
            "synthetic:3-2,1,1,1",
            "synthetic:a,1,1,1",
            "synthetic:-1,1,1,1",
        ] {
            let e = TopologySpec::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn synthetic_size_is_bounded_before_building() {
        let s = TopologySpec::parse("synthetic:89,99,99,999").unwrap();
        assert!(s.build(1).unwrap_err().contains("limit"));
        // Within the code widths but over the node limit.
        let s = TopologySpec::parse("synthetic:10,10,10,600").unwrap();
        assert!(s.build(1).is_err());
        let s = TopologySpec::parse("synthetic:2,2,2,2").unwrap();
        assert_eq!(s.build(1).unwrap().len(), 31);
    }

    /// simnet keeps the node's shipping tuning by hand (it does not depend on the node). When
    /// the node's source is at hand (a workspace checkout), its `Tuning::default()` must hold
    /// the same numbers.
    #[test]
    fn tuning_defaults_are_the_nodes() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/node.rs");
        let Ok(text) = std::fs::read_to_string(&src) else {
            eprintln!("skipping: {} not present", src.display());
            return;
        };
        let start = text
            .find("impl Default for Tuning")
            .expect("the node defines Tuning's defaults");
        let block = &text[start..];
        let block = &block[..block.find("\n}\n").unwrap_or(block.len())];
        let value = |field: &str| -> u64 {
            let at = block.find(&format!("{field}:")).expect(field) + field.len() + 1;
            let v: String = block[at..]
                .chars()
                .take_while(|c| *c != ',')
                .filter(|c| c.is_ascii_digit())
                .collect();
            v.parse().expect(field)
        };
        let t = Tuning::default();
        assert_eq!(value("retry_ms"), t.retry_ms);
        assert_eq!(value("source_silence_ms_max"), t.source_silence_ms_max);
        assert_eq!(value("groups_in_flight_max"), t.groups_in_flight_max);
        assert_eq!(value("receipt_interval_ms"), t.receipt_interval_ms);
    }
}
