//! The national sharing scenario's driver (issue #17, `simnet share`): draws the plan
//! ([`crate::share_plan`]), builds the network it needs — the real division tree cut down to
//! the parties' nodes and every node on their paths to national — runs the protocol nodes
//! ([`crate::protonode`], each with its [`crate::share_actor`]) through the engine, and
//! measures and checks the outcome: per article (21 answer, 22 delivery) the on-time rate and
//! the overdue tail in working days, routing hops per act, the load at the parties' lowest
//! common ancestors, the events counted, and the invariants (every case's copies at the
//! requester, the provider and their LCA agree; every late deadline — each answer period's,
//! the delivery's — reported exactly once at each of them; …). Above the adapter, beside [`crate::scenario`].
//!
//! This file holds the driver: the network and the run. Its parts in `sharing/`: `cases`
//! (every request's case gathered from the nodes), `measure` (the report computed from the
//! run) and `report` (the report's contents and text).

mod cases;
mod measure;
mod report;

use std::fmt::Write as _;
use std::sync::Arc;

use backflow_topology::{RegionCode, Topology};

use crate::engine::{Engine, Stats};
use crate::error::SimError;
use crate::protonode::build_share_nodes;
use crate::run_config::{RunConfig, TopologySpec, PROTOCOL_NODES_MAX};
use crate::share_plan::{Plan, ShareConfig, SharePlan};

use cases::collect_cases;
pub use cases::CaseResult;
use measure::build_report;
pub use report::{
    beijing, ArticleReport, EventSummary, HopStats, HopsReport, LcaLoad, NetworkSummary, NodeLoad,
    OnTime, OverdueSummary, Percentiles, RequestSummary, ShareReport, TierLoad, TimeSummary,
};

/// The outcome of a sharing run.
pub struct ShareOutcome {
    pub plan: Plan,
    pub topo: Arc<Topology>,
    pub stats: Stats,
    pub cases: Vec<CaseResult>,
    pub report: ShareReport,
}

/// The real division tree cut down to `codes` (each with its ancestors), names kept.
pub fn sub_topology(codes: &[RegionCode]) -> Result<Topology, SimError> {
    let china = Topology::china();
    let mut tables: [String; 4] = Default::default();
    for t in &mut tables {
        t.push_str("code,name\n");
    }
    for &c in codes {
        let depth = c.level().depth() as usize;
        if depth == 0 {
            continue;
        }
        let name = china
            .get(c)
            .map_or("", |r| r.name.as_str())
            .replace('"', "");
        let _ = writeln!(tables[depth - 1], "{c},\"{name}\"");
    }
    let refs = [
        tables[0].as_str(),
        tables[1].as_str(),
        tables[2].as_str(),
        tables[3].as_str(),
    ];
    Topology::from_tables(&refs).map_err(SimError::ShareTopology)
}

/// Draws the plan, runs it and measures.
pub fn run_share(config: &ShareConfig) -> Result<ShareOutcome, SimError> {
    let plan: Plan = Arc::new(SharePlan::generate(config.clone())?);
    let topo = Arc::new(sub_topology(&plan.nodes)?);
    if topo.len() > PROTOCOL_NODES_MAX {
        return Err(SimError::ProtocolNodes {
            nodes: topo.len(),
            max: PROTOCOL_NODES_MAX,
        });
    }
    let mut rc = RunConfig::return_flow(TopologySpec::China, config.seed);
    rc.publisher = None;
    rc.dataset_bytes = 0;
    rc.dataset_records = 0;
    rc.net.set_loss(config.loss);
    rc.limits.horizon_us = plan.horizon_us;
    rc.limits.events_max = config.events_max;
    let nodes = build_share_nodes(&topo, &rc, &plan)?;
    let engine = Engine::new(
        Arc::clone(&topo),
        nodes,
        rc.net.clone(),
        rc.shell,
        &plan.faults,
        rc.limits,
        config.seed,
    );
    let (stats, nodes) = engine.run();
    let cases = collect_cases(&plan, &topo, &nodes, &stats);
    let report = build_report(&plan, &topo, &nodes, &stats, &cases);
    Ok(ShareOutcome {
        plan,
        topo,
        stats,
        cases,
        report,
    })
}
