//! Topology what-ifs: the same scenario under several routing variants and fan-outs, side by side.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::SimError;
use crate::report::Report;
use crate::run_config::{Routing, RunConfig, TopologySpec};
use crate::scenario::run;

#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub name: String,
    pub report: Report,
}

/// Runs `base` once per (topology, routing) pair, on either node implementation.
pub fn run_variants(
    base: &RunConfig,
    topologies: &[TopologySpec],
    routings: &[Routing],
) -> Result<Vec<Variant>, SimError> {
    let mut out = Vec::new();
    for topo in topologies {
        for &routing in routings {
            let mut cfg = base.clone();
            cfg.topology = topo.clone();
            cfg.routing = routing;
            let outcome = run(&cfg)?;
            out.push(Variant {
                name: format!("{} / {}", topo.label(), routing.name()),
                report: Report::build(&outcome),
            });
        }
    }
    Ok(out)
}

pub fn to_json(variants: &[Variant]) -> String {
    serde_json::to_string_pretty(variants).unwrap_or_default() + "\n"
}

fn row(v: &Variant) -> [String; 9] {
    let r = &v.report;
    let town = r.completion.iter().find(|t| t.tier == "township");
    let f = |x: Option<f64>| x.map_or_else(|| "—".to_string(), |s| format!("{s:.3}"));
    [
        v.name.clone(),
        r.topology.nodes.to_string(),
        format!("{}/{}", r.result.townships_complete, r.result.townships),
        f(town.and_then(|t| t.p50_s)),
        f(town.and_then(|t| t.p99_s)),
        f(town.and_then(|t| t.max_s)),
        f(r.result.receipts_complete_s),
        r.result.bytes_sent.to_string(),
        if r.invariants_ok() { "ok" } else { "FAIL" }.to_string(),
    ]
}

const HEAD: [&str; 9] = [
    "variant",
    "nodes",
    "townships",
    "township p50 s",
    "township p99 s",
    "township max s",
    "receipts s",
    "bytes sent",
    "invariants",
];

pub fn summary(variants: &[Variant]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", HEAD.join(" | "));
    for v in variants {
        let _ = writeln!(s, "{}", row(v).join(" | "));
    }
    s
}

pub fn to_html(variants: &[Variant]) -> String {
    let mut h = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Backflow simnet what-ifs</title>\
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}\
td:first-child{text-align:left}</style></head><body><h1>Backflow simnet — topology what-ifs</h1><table><tr>",
    );
    for c in HEAD {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr>");
    for v in variants {
        h.push_str("<tr>");
        for c in row(v) {
            let _ = write!(h, "<td>{}</td>", c.replace('<', "&lt;"));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Township completion time CDF per variant</h2>");
    let curves: Vec<(String, &[(f64, f64)])> = variants
        .iter()
        .filter_map(|v| {
            v.report
                .completion
                .iter()
                .find(|t| t.tier == "township")
                .map(|t| (v.name.clone(), t.cdf.as_slice()))
        })
        .collect();
    h.push_str(&crate::report::cdf_svg(&curves));
    h.push_str("<p>Each variant's full report is in whatif.json.</p></body></html>\n");
    h
}
