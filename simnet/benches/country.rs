//! Full-country benchmark: one dataset version from national to every township on the
//! protocol node, as `simnet run --topology china` does. Prints wall time, events/s and peak
//! RSS; asserts only that the run is correct (timing targets are read, not tested).
//!
//! `cargo bench -p backflow-simnet --bench country` (add `-- model` for the reference model,
//! `-- national` for the national dataset's shape: 518 MB, ~12.5 KB per township, as the
//! node's `national` bench).

use std::time::Instant;

use backflow_simnet::dataset::Spread;
use backflow_simnet::report::Report;
use backflow_simnet::run_config::{NodeImpl, RunConfig, TopologySpec};
use backflow_simnet::scenario::run;

fn main() {
    let model = std::env::args().any(|a| a == "model");
    let mut cfg = RunConfig::return_flow(TopologySpec::China, 7);
    if model {
        cfg.node = NodeImpl::Model;
    }
    if std::env::args().any(|a| a == "national") {
        cfg.spread = Spread::Even;
        cfg.dataset_bytes = 518_000_000;
        cfg.dataset_records = 6_100_000;
    }
    let started = Instant::now();
    let outcome = match run(&cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("country bench: {e}");
            std::process::exit(1);
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let report = Report::build(&outcome);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or_else(
            || "unknown".to_string(),
            |kb| format!("{:.0} MiB", kb / 1024.0),
        );
    println!(
        "country ({:?}): {} nodes, {} events, wall {:.2} s, {:.0} events/s, peak RSS {}, townships {}/{}, provinces all at {:?} s, townships all at {:?} s, connection resets {}",
        cfg.node,
        report.topology.nodes,
        report.result.events,
        wall,
        report.result.events as f64 / wall.max(1e-9),
        rss,
        report.result.townships_complete,
        report.result.townships,
        report.result.all_provinces_s,
        report.result.all_townships_s,
        report.control.stats.connection_resets,
    );
    if !report.invariants_ok() {
        eprintln!("{}", report.summary());
        std::process::exit(1);
    }
}
