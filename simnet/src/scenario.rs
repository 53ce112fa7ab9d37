//! The driver: builds the nodes a [`RunConfig`] asks for, runs the engine and checks the
//! invariants. Above both node implementations: it imports them, they never import it (what
//! they share with it — `RunConfig`, `Held`, `Inspect` — lives below them all).

use std::sync::Arc;

use backflow_topology::{Level, RegionCode, Topology};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dataset::{Layout, Part};
use crate::engine::{Engine, Limits, SimNode, Stats};
use crate::error::SimError;
use crate::inspect::{Held, Inspect};
use crate::net::{random_faults, Fault};
use crate::refmodel::{ModelConfig, ModelNode, World};
use crate::run_config::{NodeImpl, Routing, RunConfig, PROTOCOL_NODES_MAX, STRICT_SILENCE_MS};
use crate::time::{Micros, MICROS_PER_MS, MICROS_PER_S};

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
pub fn run(config: &RunConfig) -> Result<Outcome, SimError> {
    config.tuning.validate().map_err(SimError::Tuning)?;
    let topo = Arc::new(config.topology.build(config.seed)?);
    if config.node == NodeImpl::Protocol && topo.len() > PROTOCOL_NODES_MAX {
        return Err(SimError::ProtocolNodes {
            nodes: topo.len(),
            max: PROTOCOL_NODES_MAX,
        });
    }
    if let Some(p) = config.publisher {
        if !topo.contains_code(p) {
            return Err(SimError::PublisherOutside(p));
        }
    }
    for f in &config.faults {
        let node = match *f {
            Fault::Down { node, .. } | Fault::Crash { node, .. } => node,
            Fault::Partition { root, .. } => root,
            _ => continue,
        };
        if !topo.contains_code(node) {
            return Err(SimError::FaultOutside(node));
        }
    }
    let mut faults = config.faults.clone();
    faults.extend(random_faults(
        &topo,
        config.random_faults,
        config.fault_window_us,
        config.seed,
    ));
    if config.node == NodeImpl::Protocol && config.routing == Routing::Strict {
        let max_us = STRICT_SILENCE_MS.saturating_mul(MICROS_PER_MS);
        if let Some(f) = faults
            .iter()
            .find(|f| f.end_us().saturating_sub(f.start_us()) >= max_us)
        {
            return Err(SimError::StrictFaultTooLong {
                lasts_s: f.end_us().saturating_sub(f.start_us()) / MICROS_PER_S,
                max_s: max_us / MICROS_PER_S,
            });
        }
    }
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
        return Err(SimError::NoRecords);
    }
    if config.random_faults > 0 && config.fault_window_us < 2 {
        return Err(SimError::NoFaultWindow);
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
