//! The unified catalog at national scale (`simnet catalog`, issue 17): every node of the real
//! division tree (or a depth-first part of it) publishes its departments' Art. 13 catalogs at
//! once, and they sync up to national through the real `Endpoint`/`CatalogSync`. Measures how
//! long until national holds every entry, the messages and bytes it took, what every tier
//! holds, and what national stores (log versions, departments, entries, encoded bytes) — its
//! `CatalogSync` holds only the departments' records and entry ids of it in memory, and is
//! restored from them at start (see `simnet catalog-restore`).

use std::sync::Arc;

use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::codec::encoded_len;
use backflow_topology::{Level, RegionCode, Topology};
use serde::Serialize;

use crate::catalog_plan::{
    CatalogPlan, DEPARTMENTS_PER_NODE_MAX, ENTRIES_PER_DEPARTMENT_MAX, ITEMS_PER_ENTRY_MAX,
};
use crate::catalog_store::CatalogStore;
use crate::engine::{Engine, Limits, StopReason};
use crate::error::SimError;
use crate::run_config::{RunConfig, TopologySpec, PROTOCOL_NODES_MAX};
use crate::sharing::sub_topology;
use crate::time::{Micros, MICROS_PER_S};

/// Everything that determines a `simnet catalog` run.
#[derive(Clone, Debug)]
pub struct CatalogScaleConfig {
    pub seed: u64,
    /// Tiers from national down: 1 (national only) … 5 (down to townships).
    pub tiers: u8,
    /// At most this many nodes: a depth-first prefix of the tree (whole provinces first).
    pub nodes: Option<usize>,
    pub plan: CatalogPlan,
    pub events_max: u64,
    pub horizon_us: Micros,
}

impl CatalogScaleConfig {
    /// The national scenario: the whole country, 7 departments × 10 entries of 4 data items per
    /// node (44,704 × 70 = 3,129,280 entries), nodes publishing within the first minute.
    pub fn national(seed: u64) -> CatalogScaleConfig {
        CatalogScaleConfig {
            seed,
            tiers: 5,
            nodes: None,
            plan: CatalogPlan {
                seed,
                departments: 7,
                entries: 10,
                items: 4,
                window_us: 60 * MICROS_PER_S,
            },
            events_max: 200_000_000,
            horizon_us: 7 * 24 * 3_600 * MICROS_PER_S,
        }
    }

    /// Checks the knobs against the plan's and the simulator's bounds.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &'static str| Err(SimError::CatalogScale(what));
        if !(1..=5).contains(&self.tiers) {
            return bad("--tiers must be 1 (national) to 5 (down to townships)");
        }
        if self.nodes == Some(0) {
            return bad("--nodes must be at least 1");
        }
        if !(1..=DEPARTMENTS_PER_NODE_MAX).contains(&self.plan.departments) {
            return bad("--departments must be 1 to 200");
        }
        if !(1..=ENTRIES_PER_DEPARTMENT_MAX).contains(&self.plan.entries) {
            return bad("--entries must be 1 to 256");
        }
        if !(1..=ITEMS_PER_ENTRY_MAX).contains(&self.plan.items) {
            return bad("--items must be 1 to 12");
        }
        Ok(())
    }
}

/// What one tier's nodes hold at the end.
#[derive(Clone, Debug, Serialize)]
pub struct TierHeld {
    pub tier: &'static str,
    pub nodes: usize,
    /// Catalog entries the nodes store (their aggregated catalogs), smallest / largest /
    /// summed over the tier.
    pub entries_min: u64,
    pub entries_max: u64,
    pub entries_total: u64,
    /// Catalog versions in the nodes' logs, summed over the tier.
    pub log_versions_total: u64,
}

/// Messages and bytes of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    pub kind: &'static str,
    pub messages: u64,
    pub bytes: u64,
}

/// The run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogScaleReport {
    pub nodes: usize,
    pub departments_per_node: u32,
    pub entries_per_department: u32,
    pub items_per_entry: u32,
    pub publish_window_s: f64,
    /// When the last node published (simulated seconds).
    pub last_publish_s: f64,
    pub entries_expected: u64,
    pub versions_expected: u64,
    /// Simulated time at which national held every version (None: never).
    pub converged_s: Option<f64>,
    /// National's holdings at 25, 50, 75 and 100 % of the versions (simulated seconds).
    pub milestones_s: Vec<(u64, f64)>,
    pub stop: StopReason,
    pub end_s: f64,
    pub events: u64,
    pub messages: u64,
    pub bytes: u64,
    pub traffic: Vec<Traffic>,
    pub tiers: Vec<TierHeld>,
    /// National's storage: versions in its log, departments and entries in its catalog, the
    /// log's encoded bytes (what it persists; its `CatalogSync` holds none of the log).
    pub national_log_versions: u64,
    pub national_departments: u64,
    pub national_entries: u64,
    pub national_log_encoded_bytes: u64,
    /// Of which the signer chains carried by every version.
    pub national_signer_bytes: u64,
    /// Log bytes national's `CatalogSync` holds in memory at the end (0: no upstream).
    pub national_log_bytes_held: u64,
    /// Departments missing or wrong at national, in its storage or its `CatalogSync` (first
    /// few).
    pub mismatches: Vec<String>,
    pub mismatch_count: u64,
    pub notes: Vec<(String, u64)>,
}

impl CatalogScaleReport {
    /// National holds exactly every entry published, and the run finished by itself.
    pub fn converged(&self) -> bool {
        self.mismatch_count == 0
            && self.national_entries == self.entries_expected
            && self.converged_s.is_some()
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        s += &format!(
            "unified catalog: {} nodes × {} departments × {} entries ({} data items each) = {} entries in {} versions, published within {:.0} s\n",
            self.nodes,
            self.departments_per_node,
            self.entries_per_department,
            self.items_per_entry,
            self.entries_expected,
            self.versions_expected,
            self.publish_window_s
        );
        s += &match self.converged_s {
            Some(t) => format!(
                "national holds every entry at {t:.1} s (simulated), {:.1} s after the last node published\n",
                t - self.last_publish_s
            ),
            None => "national never held every entry\n".to_string(),
        };
        for (n, t) in &self.milestones_s {
            s += &format!("  {n} versions at national by {t:.1} s\n");
        }
        s += &format!(
            "run: {} events, stop {:?} at {:.1} s; {} messages, {:.1} MiB\n",
            self.events,
            self.stop,
            self.end_s,
            self.messages,
            mb(self.bytes)
        );
        for t in &self.traffic {
            s += &format!(
                "  {:<16} {:>10} messages {:>10.1} MiB\n",
                t.kind,
                t.messages,
                mb(t.bytes)
            );
        }
        s += "entries held per tier (aggregated catalogs): nodes, min, max, total; log versions\n";
        for t in &self.tiers {
            s += &format!(
                "  {:<9} {:>6} {:>10} {:>10} {:>12} {:>10}\n",
                t.tier,
                t.nodes,
                t.entries_min,
                t.entries_max,
                t.entries_total,
                t.log_versions_total
            );
        }
        s += &format!(
            "national's storage: {} versions, {} departments, {} entries; log {:.1} MiB encoded ({:.0} B/entry), of which signer chains {:.1} MiB; log held in memory {} B\n",
            self.national_log_versions,
            self.national_departments,
            self.national_entries,
            mb(self.national_log_encoded_bytes),
            self.national_log_encoded_bytes as f64 / self.national_entries.max(1) as f64,
            mb(self.national_signer_bytes),
            self.national_log_bytes_held
        );
        s += &if self.mismatch_count == 0 {
            "check: national stores exactly every entry published, and its CatalogSync agrees\n"
                .to_string()
        } else {
            format!(
                "check FAILED: {} departments wrong at national, e.g. {}\n",
                self.mismatch_count,
                self.mismatches.join("; ")
            )
        };
        for (n, c) in &self.notes {
            s += &format!("  note {n}: {c}\n");
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// A run's report, and national's catalog storage (for the restore measurement).
pub struct CatalogScaleOutcome {
    pub report: CatalogScaleReport,
    pub national_store: CatalogStore,
}

/// The nodes of the run: China's first `tiers` tiers, cut to `nodes` in depth-first order
/// (every node's ancestors come first, so the cut is a tree).
pub fn topology(config: &CatalogScaleConfig) -> Result<Topology, SimError> {
    let china = Topology::china();
    let keep = |c: RegionCode| c.level().depth() < config.tiers;
    if config.tiers == 5 && config.nodes.is_none_or(|n| n >= china.len()) {
        return Ok(china.clone());
    }
    let mut order = Vec::new();
    let mut stack = vec![RegionCode::NATIONAL];
    let cap = config.nodes.unwrap_or(usize::MAX);
    while let Some(c) = stack.pop() {
        if order.len() >= cap {
            break;
        }
        order.push(c);
        stack.extend(china.children(c).iter().rev().copied().filter(|&k| keep(k)));
    }
    sub_topology(&order)
}

/// Builds the nodes, runs the engine until quiet, and checks national against the plan.
pub fn run_catalog(config: &CatalogScaleConfig) -> Result<CatalogScaleOutcome, SimError> {
    config.validate()?;
    let topo = Arc::new(topology(config)?);
    if topo.len() > PROTOCOL_NODES_MAX {
        return Err(SimError::ProtocolNodes {
            nodes: topo.len(),
            max: PROTOCOL_NODES_MAX,
        });
    }
    let mut run_config = RunConfig::return_flow(TopologySpec::China, config.seed);
    run_config.publisher = None;
    let plan = Arc::new(config.plan.clone());
    let nodes = crate::protonode::build_catalog_nodes(&topo, &run_config, &plan)?;
    let limits = Limits {
        events_max: config.events_max,
        queue_max: Limits::default().queue_max,
        horizon_us: config.horizon_us,
        outputs_per_call_max: Limits::default().outputs_per_call_max,
    };
    let engine = Engine::new(
        Arc::clone(&topo),
        nodes,
        run_config.net.clone(),
        run_config.shell,
        &[],
        limits,
        config.seed,
    );
    let (stats, nodes) = engine.run();

    let versions_expected = topo.len() as u64 * u64::from(plan.departments);
    let entries_expected = topo.len() as u64 * plan.entries_per_node();
    let converged_at = stats
        .catalog_at_national
        .iter()
        .find(|(n, _)| *n >= versions_expected)
        .map(|(_, t)| *t);
    let milestones_s = (1..=4u64)
        .filter_map(|q| {
            let want = (versions_expected * q).div_ceil(4);
            let (n, t) = stats.catalog_at_national.iter().find(|(n, _)| *n >= want)?;
            Some((*n, *t as f64 / 1e6))
        })
        .collect();

    // Per tier: what the aggregated catalogs hold.
    let mut tiers: Vec<TierHeld> = Level::ALL
        .iter()
        .map(|l| TierHeld {
            tier: l.name(),
            nodes: 0,
            entries_min: u64::MAX,
            entries_max: 0,
            entries_total: 0,
            log_versions_total: 0,
        })
        .collect();
    for n in &nodes {
        // What the node stores (its CatalogSync holds the same departments' ids, checked at
        // national below).
        let store = n.catalog_store();
        let entries = store.entries_len();
        let t = &mut tiers[n.region().level().depth() as usize];
        t.nodes += 1;
        t.entries_min = t.entries_min.min(entries);
        t.entries_max = t.entries_max.max(entries);
        t.entries_total += entries;
        t.log_versions_total += store.log_len();
    }
    tiers.retain(|t| t.nodes > 0);

    // National against the plan: every department of every node, exactly its entries in
    // national's storage, and its CatalogSync agreeing (same version, same entry ids).
    let mut nodes = nodes.into_iter();
    let national = nodes.next().filter(|n| n.region() == RegionCode::NATIONAL);
    drop(nodes);
    let mut mismatches = Vec::new();
    let mut mismatch_count = 0u64;
    let mut mismatch = |what: String| {
        mismatch_count += 1;
        if mismatches.len() < 5 {
            mismatches.push(what);
        }
    };
    let mut log_bytes = 0u64;
    let mut signer_bytes = 0u64;
    let mut log_bytes_held = 0u64;
    match national.as_ref().and_then(|n| Some((n, n.endpoint()?))) {
        Some((national, ep)) => {
            let store = national.catalog_store();
            let cs = ep.catalog_sync();
            log_bytes_held = cs.log_bytes_held() as u64;
            if cs.origins_len() != store.departments_len() || cs.log_len() != store.log_len() {
                mismatch(format!(
                    "CatalogSync holds {} departments and {} log entries, storage {} and {}",
                    cs.origins_len(),
                    cs.log_len(),
                    store.departments_len(),
                    store.log_len()
                ));
            }
            for &code in topo.codes() {
                for d in 0..plan.departments {
                    let origin = CatalogOrigin {
                        region: code,
                        department: plan.department(d),
                    };
                    let problem = match (store.department(&origin), cs.origin(&origin)) {
                        (None, _) => Some("missing".to_string()),
                        (Some(c), _) if c.record.seq != 1 => {
                            Some(format!("version {}", c.record.seq))
                        }
                        (Some(c), _) if c.entries().len() != plan.entries as usize => {
                            Some(format!("{} entries, not the plan's", c.entries().len()))
                        }
                        (Some(c), _)
                            if !(0..plan.entries).all(|e| {
                                let want = plan.entry(code, d, e);
                                c.entry(&want.id).is_some_and(|got| **got == want)
                            }) =>
                        {
                            Some("entries not exactly the plan's".to_string())
                        }
                        (Some(_), None) => Some("stored, unknown to CatalogSync".to_string()),
                        (Some(c), Some(held))
                            if held.seq != c.record.seq
                                || held.entries != c.entries().len() as u64
                                || !c.entries().iter().all(|e| cs.has_entry(&origin, &e.id)) =>
                        {
                            Some(format!(
                                "CatalogSync holds version {} with {} entries, storage {} with {}",
                                held.seq,
                                held.entries,
                                c.record.seq,
                                c.entries().len()
                            ))
                        }
                        _ => None,
                    };
                    if let Some(p) = problem {
                        mismatch(format!("{code} {}: {p}", origin.department));
                    }
                }
            }
            for u in store.log() {
                log_bytes += encoded_len(&**u) as u64;
                signer_bytes += encoded_len(&u.signer) as u64;
            }
        }
        None => mismatch_count = versions_expected,
    }
    let national_store = national.map(|n| n.into_catalog_store()).unwrap_or_default();

    let traffic: Vec<Traffic> = stats
        .kinds
        .iter()
        .map(|(k, v)| Traffic {
            kind: k,
            messages: v.sent,
            bytes: v.bytes,
        })
        .collect();
    let report = CatalogScaleReport {
        nodes: topo.len(),
        departments_per_node: plan.departments,
        entries_per_department: plan.entries,
        items_per_entry: plan.items,
        publish_window_s: plan.window_us as f64 / 1e6,
        last_publish_s: topo
            .codes()
            .iter()
            .map(|&c| plan.publish_at(c))
            .max()
            .unwrap_or(0) as f64
            / 1e6,
        entries_expected,
        versions_expected,
        converged_s: converged_at.map(|t| t as f64 / 1e6),
        milestones_s,
        stop: stats.stop,
        end_s: stats.end_us as f64 / 1e6,
        events: stats.events,
        messages: traffic.iter().map(|t| t.messages).sum(),
        bytes: traffic.iter().map(|t| t.bytes).sum(),
        traffic,
        tiers,
        national_log_versions: national_store.log_len(),
        national_departments: national_store.departments_len() as u64,
        national_entries: national_store.entries_len(),
        national_log_encoded_bytes: log_bytes,
        national_signer_bytes: signer_bytes,
        national_log_bytes_held: log_bytes_held,
        mismatches,
        mismatch_count,
        notes: stats
            .notes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    };
    Ok(CatalogScaleOutcome {
        report,
        national_store,
    })
}
