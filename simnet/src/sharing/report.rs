//! The sharing report: what it holds (its JSON), its text summary, and Beijing time as it
//! prints it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use backflow_protocol::calendar::beijing_date;
use backflow_protocol::time::{UnixMs, DAY_MS, HOUR_MS, MINUTE_MS};
use serde::Serialize;

use crate::engine::{KindStats, StopReason};
use crate::net::Fault;
use crate::scenario::Invariant;
use crate::share_plan::ShareConfig;

#[derive(Clone, Debug, Serialize)]
pub struct ShareReport {
    pub simnet: &'static str,
    pub scenario: ShareConfig,
    pub calendar_years: Vec<i16>,
    pub network: NetworkSummary,
    pub time: TimeSummary,
    pub requests: RequestSummary,
    /// Art. 21 (answer) and Art. 22 (delivery).
    pub articles: Vec<ArticleReport>,
    pub overdue: OverdueSummary,
    pub hops: HopsReport,
    pub lca_load: LcaLoad,
    pub events: EventSummary,
    pub faults: Vec<Fault>,
    pub invariants: Vec<Invariant>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkSummary {
    pub nodes: usize,
    pub per_tier: BTreeMap<&'static str, usize>,
    pub departments_pool: usize,
    /// Departments party to a request (each with its own key).
    pub departments_active: usize,
    pub providers: usize,
    pub providers_conditional: usize,
    pub relays_down: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimeSummary {
    /// Beijing times.
    pub window: (String, String),
    pub first_filing: String,
    pub last_filing: String,
    pub last_act: String,
    /// From the window's start to the last act.
    pub simulated_days: f64,
    pub sim_end_s: f64,
    pub stop: StopReason,
    pub events: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestSummary {
    pub planned: usize,
    pub filed: u64,
    pub by_locality: BTreeMap<&'static str, usize>,
    /// The tier of the parties' lowest common ancestor (`node`: two departments of one node).
    pub by_lca_tier: BTreeMap<&'static str, usize>,
    /// Final states of the provider's copies.
    pub states: BTreeMap<String, usize>,
    pub scripted_notices: usize,
    pub scripted_extensions: usize,
    pub scripted_refusals: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArticleReport {
    pub article: u8,
    pub deadline: &'static str,
    /// Cases with this deadline (Art. 21: every received case; Art. 22: every grant).
    pub cases: usize,
    pub on_time: usize,
    pub on_time_rate: f64,
    pub late: usize,
    /// Late and still without the act when the run ended.
    pub never_done: usize,
    /// How late, in working days (the late cases).
    pub late_wd: Percentiles,
    /// Late cases by working days late: 1, 2, 3–5, 6–10, 11–20, more.
    pub late_wd_histogram: Vec<(&'static str, usize)>,
    /// Art. 21 by the entry's sharing attribute.
    pub by_attribute: BTreeMap<&'static str, OnTime>,
    /// Art. 21: answer periods (a supplement starts another), and late ones.
    pub periods: usize,
    pub periods_late: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OnTime {
    pub cases: usize,
    pub on_time: usize,
    pub rate: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<u32>,
    pub p90: Option<u32>,
    pub p99: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OverdueSummary {
    pub reports: usize,
    pub by_article: BTreeMap<u8, usize>,
    pub at_requester: usize,
    pub at_provider: usize,
    pub at_lca: usize,
    pub elsewhere: usize,
    /// (request, article) reported more than once at one node.
    pub duplicates: usize,
    /// Late deadlines a holder never reported.
    pub missing: usize,
    /// Reports of a deadline that was met, at the party who met it (must be 0).
    pub false_at_actor: usize,
    /// Reports of a deadline that was met, at a copy the act had not reached yet (in flight).
    pub in_flight: usize,
    /// Late answer periods after a case's first (a supplement starts another period).
    pub later_periods_late: usize,
    /// … of which a holder did not report (counted in `missing` too; must be 0).
    pub later_periods_unreported: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct HopsReport {
    /// Acts carried over the network (first copies at their destination).
    pub acts: u64,
    pub mean: f64,
    /// Acts by hops travelled (index = hops; the last counts that many or more).
    pub distribution: Vec<u64>,
    pub by_locality: BTreeMap<&'static str, HopStats>,
    /// Requests between two departments of one node: their acts travel no hop.
    pub same_node_requests: usize,
    /// Act retransmissions (no acknowledgement within the retry time, backing off; or at
    /// once when the next hop is admitted again).
    pub retransmissions: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HopStats {
    pub acts: u64,
    pub mean: f64,
    pub max: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LcaLoad {
    pub per_tier: Vec<TierLoad>,
    /// Busiest nodes by acts forwarded.
    pub top: Vec<NodeLoad>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierLoad {
    pub tier: &'static str,
    pub nodes: usize,
    /// Requests whose parties' LCA is a node of this tier.
    pub requests_as_lca: usize,
    pub acts_forwarded: u64,
    pub acts_forwarded_as_lca: u64,
    pub supervised_copies: usize,
    pub busiest_supervised: usize,
    pub busiest: Option<String>,
    pub cpu_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeLoad {
    pub code: String,
    pub name: String,
    pub tier: &'static str,
    pub acts_forwarded: u64,
    pub acts_forwarded_as_lca: u64,
    pub supervised_copies: usize,
    pub cases: usize,
    pub cpu_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventSummary {
    pub overdue_reported: usize,
    pub acts_rejected: BTreeMap<&'static str, u64>,
    pub acts_rejected_examples: Vec<String>,
    pub script_errors: u64,
    pub script_error_examples: Vec<String>,
    pub share_act_messages: KindStats,
    pub share_ack_messages: KindStats,
    pub catalog_messages: u64,
    pub connection_resets: u64,
    pub protocol_notes: BTreeMap<&'static str, u64>,
}

/// `YYYY-MM-DD HH:MM` Beijing time.
pub fn beijing(t: UnixMs) -> String {
    let date = beijing_date(t).map_or_else(|_| "?".to_string(), |d| d.to_string());
    let of_day = (t.0 + 8 * HOUR_MS) % DAY_MS;
    format!(
        "{date} {:02}:{:02}",
        of_day / HOUR_MS,
        (of_day % HOUR_MS) / MINUTE_MS
    )
}

impl ShareReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn invariants_ok(&self) -> bool {
        self.invariants.iter().all(|i| i.ok)
    }

    /// The text report (also printed).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.scenario;
        let nw = &self.network;
        let _ = writeln!(
            s,
            "sharing scenario: {} requests among {} departments ({} providers, {} conditional), seed {}",
            self.requests.planned, nw.departments_active, nw.providers, nw.providers_conditional, c.seed
        );
        let _ = writeln!(
            s,
            "network: {} nodes ({}); {} relays down for {}-{} h each; loss {}",
            nw.nodes,
            nw.per_tier
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            nw.relays_down,
            c.down_hours.0,
            c.down_hours.1,
            c.loss
        );
        let t = &self.time;
        let _ = writeln!(
            s,
            "time: filings {} .. {} (window {} .. {}); last act {}; {} simulated days after the window opened; calendar {} ({:?})",
            t.first_filing, t.last_filing, t.window.0, t.window.1, t.last_act, t.simulated_days, c.calendar, self.calendar_years
        );
        let r = &self.requests;
        let _ = writeln!(
            s,
            "requests: {} filed; by locality {}; LCA tier {}; final {}",
            r.filed,
            fmt_map(&r.by_locality),
            fmt_map(&r.by_lca_tier),
            fmt_map(&r.states)
        );
        for a in &self.articles {
            let _ = writeln!(
                s,
                "Art. {}: on time {}/{} = {:.2} %; late {} (never done {}); working days late p50 {} p90 {} p99 {} max {}; histogram {}{}",
                a.article,
                a.on_time,
                a.cases,
                a.on_time_rate * 100.0,
                a.late,
                a.never_done,
                opt(a.late_wd.p50),
                opt(a.late_wd.p90),
                opt(a.late_wd.p99),
                opt(a.late_wd.max),
                a.late_wd_histogram
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                if a.by_attribute.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {}",
                        a.by_attribute
                            .iter()
                            .map(|(k, v)| format!("{k} {:.2} % of {}", v.rate * 100.0, v.cases))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        let o = &self.overdue;
        let _ = writeln!(
            s,
            "overdue reports: {} (Art. 21 {}, Art. 22 {}) at requester {}, provider {}, LCA {}; in flight {}; missing {}; duplicates {}; later answer periods late {}, unreported {}",
            o.reports,
            o.by_article.get(&21).unwrap_or(&0),
            o.by_article.get(&22).unwrap_or(&0),
            o.at_requester,
            o.at_provider,
            o.at_lca,
            o.in_flight,
            o.missing,
            o.duplicates,
            o.later_periods_late,
            o.later_periods_unreported
        );
        let h = &self.hops;
        let _ = writeln!(
            s,
            "hops: {} acts over the network, mean {}; distribution {}; {}; {} same-node requests; {} retransmissions",
            h.acts,
            h.mean,
            h.distribution
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" "),
            h.by_locality
                .iter()
                .map(|(k, v)| format!("{k} mean {} max {}", v.mean, v.max))
                .collect::<Vec<_>>()
                .join(", "),
            h.same_node_requests,
            h.retransmissions
        );
        let _ = writeln!(s, "load at common ancestors (per tier):");
        for t in &self.lca_load.per_tier {
            let _ = writeln!(
                s,
                "  {:<9} {:>6} nodes; LCA of {:>7} requests; forwarded {:>8} acts ({:>8} as LCA); supervised copies {:>7} (most {} at {}); cpu {:.1} s",
                t.tier,
                t.nodes,
                t.requests_as_lca,
                t.acts_forwarded,
                t.acts_forwarded_as_lca,
                t.supervised_copies,
                t.busiest_supervised,
                t.busiest.as_deref().unwrap_or("—"),
                t.cpu_s
            );
        }
        let _ = writeln!(s, "busiest nodes (acts forwarded):");
        for n in &self.lca_load.top {
            let _ = writeln!(
                s,
                "  {:<10} {:<12} {:<9} forwarded {:>8} (as LCA {:>8}); supervised {:>7}; cases {:>5}; cpu {:.1} s",
                n.code, n.name, n.tier, n.acts_forwarded, n.acts_forwarded_as_lca, n.supervised_copies, n.cases, n.cpu_s
            );
        }
        let e = &self.events;
        let _ = writeln!(
            s,
            "events: share acts sent {} (lost {}, refused {}), acks sent {}; acts rejected {}; scripted acts refused {}; catalog messages {}; connection resets {}; {} engine events",
            e.share_act_messages.sent,
            e.share_act_messages.lost,
            e.share_act_messages.refused,
            e.share_ack_messages.sent,
            fmt_map(&e.acts_rejected),
            e.script_errors,
            e.catalog_messages,
            e.connection_resets,
            t.events
        );
        for i in &self.invariants {
            let _ = writeln!(
                s,
                "[{}] {}: {}",
                if i.ok { "ok" } else { "FAIL" },
                i.name,
                i.detail
            );
        }
        s
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or("—".to_string(), |v| v.to_string())
}

fn fmt_map<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
