//! The report: JSON for machines, a self-contained HTML page with inline SVG for planners.
//! Only simulated quantities go in (no wall-clock figures), so the same seed and inputs give
//! byte-identical files.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use backflow_topology::Level;
use serde::Serialize;

use crate::engine::{ControlStats, KindStats, StopReason};
use crate::net::{Fault, NetConfig};
use crate::run_config::RunConfig;
use crate::scenario::{Invariant, Outcome};
use crate::shell::STREAMS_PER_CONNECTION_MAX;
use crate::time::Micros;

/// Points per CDF curve in the report (bounds file size whatever the node count).
const CDF_POINTS_MAX: usize = 200;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub simnet: &'static str,
    pub config: RunConfig,
    pub topology: TopologySummary,
    pub faults: Vec<Fault>,
    pub result: RunResult,
    /// Per tier, when nodes held their complete share (seconds of simulated time).
    pub completion: Vec<TierCompletion>,
    pub links: Vec<LinkUsage>,
    pub storage: Vec<TierStorage>,
    pub messages: BTreeMap<&'static str, KindStats>,
    /// The control plane as the node's shell sees it: streams per connection against the
    /// muxer's limit, connection resets, the outbox's queueing.
    pub control: ControlReport,
    /// CPU time per tier (see `shell::Costs`).
    pub cpu: Vec<TierCpu>,
    /// Protocol events counted during the run (source changes = skip-level fallbacks, …).
    pub protocol_events: BTreeMap<&'static str, u64>,
    /// Per region one tier below the publisher (provinces for a national dataset): when its
    /// last township was complete.
    pub regions: Vec<RegionCompletion>,
    pub catalog: Option<CatalogResult>,
    pub invariants: Vec<Invariant>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopologySummary {
    pub label: String,
    pub nodes: usize,
    pub per_level: BTreeMap<&'static str, usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub stop: StopReason,
    pub events: u64,
    pub peak_queue: usize,
    pub sim_end_s: f64,
    pub townships: usize,
    pub townships_complete: usize,
    pub nodes_complete: usize,
    /// Last township complete.
    pub all_townships_s: Option<f64>,
    /// Last province complete: every province holds its whole subtree (what the node's
    /// national bench times).
    pub all_provinces_s: Option<f64>,
    /// Publisher's receipts cover the whole dataset.
    pub receipts_complete_s: Option<f64>,
    /// The publisher's last aggregated view: partitions its receipts count as delivered, of
    /// those expected (protocol node with one manifest).
    pub publisher_view: Option<PublisherView>,
    pub dataset_bytes: u64,
    pub dataset_records: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ControlReport {
    /// The node's per-connection stream limit (`STREAMS_PER_CONNECTION_MAX`).
    pub streams_per_connection_max: usize,
    /// Whether control frames went through the per-peer outbox (as on the node).
    pub outbox: bool,
    #[serde(flatten)]
    pub stats: ControlStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierCpu {
    pub tier: &'static str,
    /// CPU seconds of the busiest node of the tier, and which node it was.
    pub busiest_s: f64,
    pub busiest: Option<String>,
    pub mean_s: f64,
    pub total_s: f64,
    /// The tier's CPU seconds until every province held its whole subtree (the window the
    /// node's `national` bench measures), if they all did.
    pub until_all_provinces_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegionCompletion {
    pub code: String,
    pub name: String,
    pub townships: usize,
    pub complete: usize,
    /// When the region's own node held its whole subtree.
    pub region_complete_s: Option<f64>,
    pub last_township_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PublisherView {
    pub at_s: f64,
    pub delivered: u64,
    pub expected: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierCompletion {
    pub tier: &'static str,
    pub nodes: usize,
    pub complete: usize,
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub max_s: Option<f64>,
    /// `(seconds, fraction of the tier complete)`, at most `CDF_POINTS_MAX` points.
    pub cdf: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkUsage {
    pub from: &'static str,
    pub to: &'static str,
    pub bytes: u64,
    pub messages: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierStorage {
    pub tier: &'static str,
    pub peak_bytes_max: u64,
    pub peak_bytes_mean: u64,
    pub total_peak_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CatalogResult {
    pub changes: usize,
    pub last_change_s: f64,
    /// When national first held every change.
    pub converged_s: Option<f64>,
    /// From the last change made to national holding all of them.
    pub lag_after_last_change_s: Option<f64>,
}

pub fn secs(us: Micros) -> f64 {
    // Round to the microsecond already held; f64 prints deterministically.
    us as f64 / 1e6
}

fn percentile(sorted: &[Micros], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest-rank: the smallest value with at least p of the samples at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(secs(sorted[rank - 1]))
}

impl Report {
    pub fn build(o: &Outcome) -> Report {
        let topo = &o.topo;
        let codes = topo.codes();
        let publisher = o.config.publisher;
        let mut completion = Vec::new();
        for level in Level::ALL {
            let in_scope: Vec<usize> = (0..codes.len())
                .filter(|&i| {
                    codes[i].level() == level && publisher.is_some_and(|p| p.contains(codes[i]))
                })
                .collect();
            let mut times: Vec<Micros> = in_scope
                .iter()
                .filter_map(|&i| o.stats.complete_at[i])
                .collect();
            times.sort_unstable();
            let n = in_scope.len();
            let step = times.len().div_ceil(CDF_POINTS_MAX).max(1);
            let mut cdf: Vec<(f64, f64)> = times
                .iter()
                .enumerate()
                .filter(|(k, _)| k % step == step - 1 || *k + 1 == times.len())
                .map(|(k, t)| (secs(*t), (k + 1) as f64 / n.max(1) as f64))
                .collect();
            cdf.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            completion.push(TierCompletion {
                tier: level.name(),
                nodes: n,
                complete: times.len(),
                p50_s: percentile(&times, 0.50),
                p90_s: percentile(&times, 0.90),
                p99_s: percentile(&times, 0.99),
                max_s: times.last().map(|t| secs(*t)),
                cdf,
            });
        }
        let mut links = Vec::new();
        for (a, from) in Level::ALL.iter().enumerate() {
            for (b, to) in Level::ALL.iter().enumerate() {
                let bytes = o.stats.link_bytes[a][b];
                if bytes > 0 || o.stats.link_messages[a][b] > 0 {
                    links.push(LinkUsage {
                        from: from.name(),
                        to: to.name(),
                        bytes,
                        messages: o.stats.link_messages[a][b],
                    });
                }
            }
        }
        let mut storage = Vec::new();
        for level in Level::ALL {
            let peaks: Vec<u64> = (0..codes.len())
                .filter(|&i| codes[i].level() == level)
                .map(|i| o.stats.stored_peak[i])
                .collect();
            let total: u64 = peaks.iter().sum();
            storage.push(TierStorage {
                tier: level.name(),
                peak_bytes_max: peaks.iter().copied().max().unwrap_or(0),
                peak_bytes_mean: total / (peaks.len().max(1) as u64),
                total_peak_bytes: total,
            });
        }
        let tier_ix = |level: Level| -> Vec<usize> {
            (0..codes.len())
                .filter(|&i| {
                    codes[i].level() == level && publisher.is_some_and(|p| p.contains(codes[i]))
                })
                .collect()
        };
        // When the last of `ix` completed, if every one of them holds its share.
        let all_complete_s = |ix: &[usize]| -> Option<f64> {
            if ix.is_empty() || !ix.iter().all(|&i| o.held[i].complete) {
                return None;
            }
            ix.iter()
                .filter_map(|&i| o.stats.complete_at[i])
                .max()
                .map(secs)
        };
        let township_ix = tier_ix(Level::Township);
        let townships_complete = township_ix.iter().filter(|&&i| o.held[i].complete).count();
        let all_townships_s = all_complete_s(&township_ix);
        let all_provinces_s = all_complete_s(&tier_ix(Level::Province));
        let cpu = Level::ALL
            .iter()
            .map(|&level| {
                let ix: Vec<usize> = (0..codes.len())
                    .filter(|&i| codes[i].level() == level)
                    .collect();
                let busy = |i: usize| o.stats.cpu_busy_us.get(i).copied().unwrap_or(0);
                let total: u64 = ix.iter().map(|&i| busy(i)).sum();
                let at_provinces = &o.stats.cpu_at_all_provinces_us;
                let until_all_provinces_s = (!at_provinces.is_empty()).then(|| {
                    secs(
                        ix.iter()
                            .map(|&i| at_provinces.get(i).copied().unwrap_or(0))
                            .sum(),
                    )
                });
                // Busiest first, lowest code on ties: deterministic.
                let top = ix.iter().copied().max_by_key(|&i| (busy(i), Reverse(i)));
                TierCpu {
                    tier: level.name(),
                    busiest_s: secs(top.map_or(0, busy)),
                    busiest: top.map(|i| codes[i].to_string()),
                    mean_s: secs(total / ix.len().max(1) as u64),
                    total_s: secs(total),
                    until_all_provinces_s,
                }
            })
            .collect();
        let catalog = (o.config.churn_townships > 0).then(|| {
            let k: u64 = o.churn.len() as u64;
            let last_change = o.churn.iter().map(|(_, t)| *t).max().unwrap_or(0);
            let converged = o
                .stats
                .catalog_at_national
                .iter()
                .find(|(n, _)| *n >= k)
                .map(|(_, t)| *t);
            CatalogResult {
                changes: o.churn.len(),
                last_change_s: secs(last_change),
                converged_s: converged.map(secs),
                lag_after_last_change_s: converged.map(|t| secs(t.saturating_sub(last_change))),
            }
        });
        Report {
            simnet: env!("CARGO_PKG_VERSION"),
            config: o.config.clone(),
            topology: TopologySummary {
                label: o.config.topology.label(),
                nodes: topo.len(),
                per_level: Level::ALL
                    .iter()
                    .map(|l| (l.name(), topo.count(*l)))
                    .collect(),
            },
            faults: o.faults.clone(),
            result: RunResult {
                stop: o.stats.stop,
                events: o.stats.events,
                peak_queue: o.stats.peak_queue,
                sim_end_s: secs(o.stats.end_us),
                townships: township_ix.len(),
                townships_complete,
                nodes_complete: o.held.iter().filter(|h| h.complete).count(),
                all_townships_s,
                all_provinces_s,
                receipts_complete_s: o.stats.receipts_complete_at.map(secs),
                publisher_view: o.stats.publisher_view.map(|(t, delivered, expected)| {
                    PublisherView {
                        at_s: secs(t),
                        delivered,
                        expected,
                    }
                }),
                dataset_bytes: o.layout.bytes_total,
                dataset_records: o.layout.records_total,
                messages_sent: o.stats.kinds.values().map(|k| k.sent).sum(),
                bytes_sent: o.stats.kinds.values().map(|k| k.bytes).sum(),
            },
            completion,
            links,
            storage,
            messages: o.stats.kinds.clone(),
            control: ControlReport {
                streams_per_connection_max: STREAMS_PER_CONNECTION_MAX,
                outbox: o.config.shell.control_outbox,
                stats: o.stats.control.clone(),
            },
            cpu,
            protocol_events: o.stats.notes.clone(),
            regions: region_completion(o),
            catalog,
            invariants: o.invariants.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn invariants_ok(&self) -> bool {
        self.invariants.iter().all(|i| i.ok)
    }

    /// One short paragraph for the terminal.
    pub fn summary(&self) -> String {
        let r = &self.result;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "topology {}: {} nodes; node implementation: {:?}; routing: {}",
            self.topology.label,
            self.topology.nodes,
            self.config.node,
            self.config.routing.name()
        );
        if self.config.publisher.is_some() {
            let _ = writeln!(
                s,
                "return-flow: {} bytes, {} records; townships complete {}/{}; all provinces at {}; all townships at {}; receipts complete at {}",
                r.dataset_bytes,
                r.dataset_records,
                r.townships_complete,
                r.townships,
                opt_s(r.all_provinces_s),
                opt_s(r.all_townships_s),
                opt_s(r.receipts_complete_s)
            );
            for t in &self.completion {
                let _ = writeln!(
                    s,
                    "  {:<9} {:>6}/{:<6} p50 {:>9} p90 {:>9} p99 {:>9} max {:>9}",
                    t.tier,
                    t.complete,
                    t.nodes,
                    opt_s(t.p50_s),
                    opt_s(t.p90_s),
                    opt_s(t.p99_s),
                    opt_s(t.max_s)
                );
            }
        }
        if let Some(c) = &self.catalog {
            let _ = writeln!(
                s,
                "catalog churn: {} changes, converged at national at {} (lag after last change {})",
                c.changes,
                opt_s(c.converged_s),
                opt_s(c.lag_after_last_change_s)
            );
        }
        let c = &self.control;
        let _ = writeln!(
            s,
            "control plane ({}): at most {} streams per direction, {} per connection (limit {}); connection resets {}; {} frames queued (longest wait {:.3} s), {} dropped",
            if c.outbox { "outbox" } else { "no outbox" },
            c.stats.streams_max_per_direction,
            c.stats.streams_max_per_connection,
            c.streams_per_connection_max,
            c.stats.connection_resets,
            c.stats.frames_queued,
            secs(c.stats.queue_wait_max_us),
            c.stats.outbox_dropped
        );
        for t in self.cpu.iter().filter(|t| t.total_s > 0.0) {
            let _ = writeln!(
                s,
                "  cpu {:<9} busiest {:>9.1} ms ({}), mean {:>7.1} ms, sum {:>8.3} s{}",
                t.tier,
                t.busiest_s * 1e3,
                t.busiest.as_deref().unwrap_or("—"),
                t.mean_s * 1e3,
                t.total_s,
                t.until_all_provinces_s
                    .map(|u| format!(" ({u:.3} s until all provinces complete)"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "events {}; messages {}; bytes {}; stop: {:?}; simulated end {:.3} s",
            r.events, r.messages_sent, r.bytes_sent, r.stop, r.sim_end_s
        );
        for i in &self.invariants {
            let _ = writeln!(
                s,
                "  [{}] {}: {}",
                if i.ok { "ok" } else { "FAIL" },
                i.name,
                i.detail
            );
        }
        s
    }

    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let title = format!("Backflow simnet — {}", esc(&self.topology.label));
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}\
th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}.ok{{color:#080}}.fail{{color:#b00;font-weight:bold}}\
code{{background:#f4f4f4;padding:0 .2em}}</style></head><body><h1>{title}</h1>"
        );
        let r = &self.result;
        let _ = write!(
            h,
            "<p>{} nodes, node implementation <code>{:?}</code>, routing <code>{}</code>, seed <code>{}</code>. \
Stopped: <code>{:?}</code> after {} events at {:.3} s simulated time.</p>",
            self.topology.nodes,
            self.config.node,
            self.config.routing.name(),
            self.config.seed,
            r.stop,
            r.events,
            r.sim_end_s
        );
        h.push_str(
            "<h2>Invariants</h2><table><tr><th>invariant</th><th>result</th><th>detail</th></tr>",
        );
        for i in &self.invariants {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(i.name),
                if i.ok { "ok" } else { "fail" },
                if i.ok { "ok" } else { "FAIL" },
                esc(&i.detail)
            );
        }
        h.push_str("</table>");
        if self.config.publisher.is_some() {
            let _ = write!(
                h,
                "<h2>Return-flow</h2><p>{} bytes, {} records; townships complete {}/{}; \
all provinces by {}; all townships by {}; publisher receipts complete at {}.</p>",
                r.dataset_bytes,
                r.dataset_records,
                r.townships_complete,
                r.townships,
                opt_s(r.all_provinces_s),
                opt_s(r.all_townships_s),
                opt_s(r.receipts_complete_s)
            );
            h.push_str("<table><tr><th>tier</th><th>nodes</th><th>complete</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>");
            for t in &self.completion {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    t.tier,
                    t.nodes,
                    t.complete,
                    opt_s(t.p50_s),
                    opt_s(t.p90_s),
                    opt_s(t.p99_s),
                    opt_s(t.max_s)
                );
            }
            h.push_str("</table><h3>Completion time CDF per tier</h3>");
            let curves: Vec<(String, &[(f64, f64)])> = self
                .completion
                .iter()
                .map(|t| (t.tier.to_string(), t.cdf.as_slice()))
                .collect();
            h.push_str(&cdf_svg(&curves));
        }
        if !self.regions.is_empty() {
            h.push_str("<h3>Per region below the publisher</h3><table><tr><th>region</th><th>name</th><th>townships</th><th>complete</th><th>region's node complete</th><th>last township</th></tr>");
            for r in &self.regions {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    r.code,
                    esc(&r.name),
                    r.townships,
                    r.complete,
                    opt_s(r.region_complete_s),
                    opt_s(r.last_township_s)
                );
            }
            h.push_str("</table>");
        }
        if let Some(c) = &self.catalog {
            let _ = write!(
                h,
                "<h2>Catalog churn</h2><p>{} townships changed a catalog entry (last change at {:.3} s); \
national held every change at {} (lag {}).</p>",
                c.changes,
                c.last_change_s,
                opt_s(c.converged_s),
                opt_s(c.lag_after_last_change_s)
            );
        }
        h.push_str("<h2>Traffic per tier-pair link</h2><table><tr><th>from</th><th>to</th><th>bytes</th><th>messages</th></tr>");
        for l in &self.links {
            let _ = write!(
                h,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td></tr>",
                l.from,
                l.to,
                human_bytes(l.bytes),
                l.messages
            );
        }
        h.push_str("</table><h2>Peak storage per tier</h2><table><tr><th>tier</th><th>max per node</th><th>mean per node</th><th>sum</th></tr>");
        for s in &self.storage {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.tier,
                human_bytes(s.peak_bytes_max),
                human_bytes(s.peak_bytes_mean),
                human_bytes(s.total_peak_bytes)
            );
        }
        h.push_str("</table><h2>Messages</h2><table><tr><th>kind</th><th>sent</th><th>bytes</th><th>delivered</th><th>lost</th><th>refused</th></tr>");
        for (k, m) in &self.messages {
            let _ = write!(
                h,
                "<tr><td>{k}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.sent,
                human_bytes(m.bytes),
                m.delivered,
                m.lost,
                m.refused
            );
        }
        h.push_str("</table>");
        let c = &self.control;
        let _ = write!(
            h,
            "<h2>Control plane</h2><p>Control frames {} the per-peer outbox. At most {} control \
streams were open on one direction of a connection, {} on one connection (the node's limit: {} \
streams per connection); <b>{} connection resets</b>. {} frames waited for a slot (longest \
wait {:.3} s; at most {} waiting for one peer), {} were dropped; {} frames were lost with \
closed connections.</p>",
            if c.outbox { "went through" } else { "bypassed" },
            c.stats.streams_max_per_direction,
            c.stats.streams_max_per_connection,
            c.streams_per_connection_max,
            c.stats.connection_resets,
            c.stats.frames_queued,
            secs(c.stats.queue_wait_max_us),
            c.stats.queued_max,
            c.stats.outbox_dropped,
            c.stats.frames_lost_to_closed_connections
        );
        if !c.stats.reset_examples.is_empty() {
            let _ = write!(h, "<pre>{}</pre>", esc(&c.stats.reset_examples.join("\n")));
        }
        h.push_str("<h2>CPU per tier</h2><table><tr><th>tier</th><th>busiest node</th><th>its CPU</th><th>mean per node</th><th>sum</th><th>sum until all provinces complete</th></tr>");
        for t in &self.cpu {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.3} s</td><td>{:.3} s</td><td>{:.3} s</td><td>{}</td></tr>",
                t.tier,
                t.busiest.as_deref().unwrap_or("—"),
                t.busiest_s,
                t.mean_s,
                t.total_s,
                t.until_all_provinces_s
                    .map_or_else(|| "—".to_string(), |u| format!("{u:.3} s"))
            );
        }
        h.push_str("</table>");
        if !self.protocol_events.is_empty() {
            h.push_str("<h2>Protocol events</h2><table><tr><th>event</th><th>count</th></tr>");
            for (k, n) in &self.protocol_events {
                let _ = write!(h, "<tr><td>{k}</td><td>{n}</td></tr>");
            }
            h.push_str("</table>");
        }
        h.push_str("<h2>Network</h2>");
        h.push_str(&net_table(&self.config.net));
        if !self.faults.is_empty() {
            let _ = write!(
                h,
                "<h2>Faults</h2><pre>{}</pre>",
                esc(&serde_json::to_string(&self.faults).unwrap_or_default())
            );
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// Completion of each child region of the publisher (at most `REGIONS_LISTED_MAX`).
fn region_completion(o: &Outcome) -> Vec<RegionCompletion> {
    const REGIONS_LISTED_MAX: usize = 100;
    let Some(publisher) = o.config.publisher else {
        return Vec::new();
    };
    let codes = o.topo.codes();
    o.topo
        .children(publisher)
        .iter()
        .take(REGIONS_LISTED_MAX)
        .map(|&region| {
            let times: Vec<Option<Micros>> = o
                .topo
                .townships_under(region)
                .iter()
                .filter_map(|t| codes.binary_search(t).ok())
                .map(|i| o.stats.complete_at[i].filter(|_| o.held[i].complete))
                .collect();
            let complete = times.iter().filter(|t| t.is_some()).count();
            RegionCompletion {
                code: region.to_string(),
                name: o
                    .topo
                    .get(region)
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
                townships: times.len(),
                complete,
                region_complete_s: codes
                    .binary_search(&region)
                    .ok()
                    .filter(|&i| o.held[i].complete)
                    .and_then(|i| o.stats.complete_at[i])
                    .map(secs),
                last_township_s: (complete == times.len())
                    .then(|| times.iter().flatten().max().copied().map(secs))
                    .flatten(),
            }
        })
        .collect()
}

fn net_table(net: &NetConfig) -> String {
    let mut h = String::from(
        "<table><tr><th>link</th><th>latency</th><th>bandwidth</th><th>loss</th></tr>",
    );
    for (d, spec) in net.tiers.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{} – {}</td><td>{:.1} ms</td><td>{} Mbit/s</td><td>{}</td></tr>",
            Level::ALL[d].name(),
            Level::ALL[d + 1].name(),
            spec.latency_us as f64 / 1e3,
            spec.bandwidth_bytes_per_s * 8 / 1_000_000,
            spec.loss
        );
    }
    h.push_str("</table>");
    let caps: Vec<String> = Level::ALL
        .iter()
        .zip(net.egress_bytes_per_s)
        .filter_map(|(l, e)| e.map(|bps| format!("{} {} Mbit/s", l.name(), bps * 8 / 1_000_000)))
        .collect();
    if !caps.is_empty() {
        let _ = write!(h, "<p>Node uplink (egress) caps: {}.</p>", caps.join(", "));
    }
    h
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |s| format!("{s:.3} s"))
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Step CDF of completion time, one coloured line per `(label, points)` curve. When the
/// slowest completion is over 30× the fastest (fault tails), the time axis is logarithmic
/// so the bulk of the curve stays readable.
pub fn cdf_svg(curves: &[(String, &[(f64, f64)])]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const L: f64 = 60.0;
    const B: f64 = 40.0;
    const COLORS: [&str; 8] = [
        "#444", "#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b", "#e377c2",
    ];
    let t_max = curves
        .iter()
        .filter_map(|(_, c)| c.last().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let t_min = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .filter(|&t| t > 0.0)
        .fold(f64::INFINITY, f64::min);
    let log = t_min.is_finite() && t_max / t_min > 30.0;
    // Log axis from the decade below the fastest completion.
    let lo = if log { t_min.log10().floor() } else { 0.0 };
    let hi = t_max.log10();
    let x = |t: f64| {
        let frac = if log {
            (t.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            t / t_max
        };
        L + (W - L - 20.0) * frac
    };
    let y = |f: f64| H - B - (H - B - 20.0) * f;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-size=\"12\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/><line x1=\"{L}\" y1=\"20\" x2=\"{L}\" y2=\"{}\" stroke=\"#000\"/>",
        H - B,
        W - 20.0,
        H - B,
        H - B
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text><line x1=\"{L}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            L - 6.0,
            y(f) + 4.0,
            f * 100.0,
            W - 20.0,
            y(f),
            y(f)
        );
        if !log {
            let t = t_max * f;
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.2} s</text>",
                x(t),
                H - B + 16.0,
                t
            );
        }
    }
    if log {
        let mut decade = lo;
        while decade <= hi + 1e-9 {
            let t = 10f64.powf(decade);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} s</text><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"20\" y2=\"{}\" stroke=\"#eee\"/>",
                x(t),
                H - B + 16.0,
                t,
                x(t),
                x(t),
                H - B
            );
            decade += 1.0;
        }
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">simulated time since publication{}</text>",
        (L + W) / 2.0,
        H - 6.0,
        if log { " (log scale)" } else { "" }
    );
    for (i, (label, cdf)) in curves.iter().enumerate() {
        if cdf.is_empty() {
            continue;
        }
        let mut d = format!("M{:.1},{:.1}", x(cdf[0].0), y(0.0));
        let mut prev = 0.0;
        for &(ts, f) in cdf.iter() {
            let _ = write!(d, " L{:.1},{:.1} L{:.1},{:.1}", x(ts), y(prev), x(ts), y(f));
            prev = f;
        }
        let _ = write!(
            s,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\" fill=\"{}\" text-anchor=\"end\">{}</text>",
            COLORS[i % COLORS.len()],
            W - 24.0,
            // Legend bottom-right: CDFs are near 100 % there, so the corner is free.
            H - B - 12.0 - 16.0 * (curves.len() - 1 - i) as f64,
            COLORS[i % COLORS.len()],
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Micros> = (1..=100).map(|s| s * 1_000_000).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
