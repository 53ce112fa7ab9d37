//! The national sharing scenario's driver (issue #17, `simnet share`): draws the plan
//! ([`crate::share_plan`]), builds the network it needs — the real division tree cut down to
//! the parties' nodes and every node on their paths to national — runs the protocol nodes
//! ([`crate::protonode`], each with its [`crate::share_actor`]) through the engine, and
//! measures and checks the outcome: per article (21 answer, 22 delivery) the on-time rate and
//! the overdue tail in working days, routing hops per act, the load at the parties' lowest
//! common ancestors, the events counted, and the invariants (every case's copies at the
//! requester, the provider and their LCA agree; every late deadline — each answer period's,
//! the delivery's — reported exactly once at each of them; …). Above the adapter, beside [`crate::scenario`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use backflow_protocol::calendar::beijing_date;
use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{ShareCase, ShareState};
use backflow_protocol::time::{UnixMs, DAY_MS, HOUR_MS, MINUTE_MS};
use backflow_topology::{Level, RegionCode, Topology};
use serde::Serialize;

use crate::engine::{Engine, KindStats, Stats, StopReason};
use crate::error::SimError;
use crate::net::Fault;
use crate::protonode::{build_share_nodes, ProtoNode};
use crate::report::secs;
use crate::run_config::{RunConfig, TopologySpec, PROTOCOL_NODES_MAX};
use crate::scenario::Invariant;
use crate::share_actor::{ActorStats, Period, HOPS_MAX};
use crate::share_plan::{late_working_days, Locality, Plan, ShareConfig, SharePlan};

/// Top nodes listed by load.
const TOP_NODES: usize = 10;
const EXAMPLES_MAX: usize = 5;

/// One request at the end of the run.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub request: u32,
    /// The provider's copy's state (`None`: the filing never reached it).
    pub state: Option<ShareState>,
    pub requester_state: Option<ShareState>,
    pub conditional: bool,
    /// Art. 21: the answer periods at the provider's node.
    pub periods: Vec<Period>,
    /// Art. 21: some period's answer (notice, grant, refusal) came at or after its deadline,
    /// or never; and by how many working days at most.
    pub answer_late_wd: Option<u32>,
    /// Art. 22 (granted cases): the delivery deadline and when the data was delivered.
    pub delivery_due: Option<UnixMs>,
    pub delivered_at: Option<UnixMs>,
    pub delivery_late_wd: Option<u32>,
    /// Overdue reports per article (index 0: Art. 21, 1: Art. 22) at the requester's node,
    /// the provider's node and their LCA (one node for a same-node request: counted once,
    /// as the provider's).
    pub overdue: [[u32; 3]; 2],
    /// The deadlines (`due`) those reports named, in the same layout, in report order.
    pub overdue_dues: [[Vec<UnixMs>; 3]; 2],
    /// Reports at any other node.
    pub overdue_elsewhere: u32,
    pub copies_agree: bool,
}

/// The outcome of a sharing run.
pub struct ShareOutcome {
    pub plan: Plan,
    pub topo: Arc<Topology>,
    pub stats: Stats,
    pub cases: Vec<CaseResult>,
    pub report: ShareReport,
}

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

fn index(topo: &Topology, c: RegionCode) -> Option<usize> {
    topo.codes().binary_search(&c).ok()
}

fn actor(nodes: &[ProtoNode], i: usize) -> Option<&ActorStats> {
    nodes.get(i).and_then(|n| n.share_actor()).map(|a| &a.stats)
}

fn case_at<'a>(nodes: &'a [ProtoNode], i: Option<usize>, id: &Hash) -> Option<&'a ShareCase> {
    nodes.get(i?)?.endpoint()?.share_service().case(id)
}

/// Every request's end state, its deadlines met or missed, and who reported what.
fn collect_cases(
    plan: &SharePlan,
    topo: &Topology,
    nodes: &[ProtoNode],
    stats: &Stats,
) -> Vec<CaseResult> {
    let end = plan.to_ms(stats.end_us);
    let cal = &plan.calendar;
    // Supervisory copies, by request.
    let mut supervised: HashMap<Hash, (usize, &ShareCase)> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(ep) = n.endpoint() {
            for (id, c) in ep.share_service().supervised() {
                supervised.insert(*id, (i, c));
            }
        }
    }
    // Overdue reports, by request: (node, article, due).
    let mut reports: HashMap<u32, Vec<(usize, u8, UnixMs)>> = HashMap::new();
    for (i, _) in nodes.iter().enumerate() {
        if let Some(a) = actor(nodes, i) {
            for o in &a.overdue {
                reports
                    .entry(o.request)
                    .or_default()
                    .push((i, o.article, o.due));
            }
        }
    }
    let mut out = Vec::with_capacity(plan.requests.len());
    for (k, r) in plan.requests.iter().enumerate() {
        let k = k as u32;
        let (rn, pn, lca) = (plan.requester_node(k), plan.provider_node(k), plan.lca(k));
        let (ri, pi, li) = (index(topo, rn), index(topo, pn), index(topo, lca));
        let prov = case_at(nodes, pi, &r.id);
        let req = case_at(nodes, ri, &r.id);
        let periods = pi
            .and_then(|i| actor(nodes, i))
            .and_then(|a| a.periods.get(&k))
            .cloned()
            .unwrap_or_default();
        // Art. 21: the latest of the periods' lateness.
        let mut answer_late_wd = None;
        for p in &periods {
            let closed = p.closed_at.unwrap_or(end);
            if p.closed_at.is_none() && end < p.due {
                continue; // Still running when the run ended (cannot happen after quiescence).
            }
            let late = late_working_days(cal, p.due, closed);
            if late > 0 {
                answer_late_wd = Some(answer_late_wd.unwrap_or(0).max(late));
            }
        }
        let delivery_due = prov.and_then(|c| c.delivery_due);
        let delivered_at = prov.and_then(|c| c.delivered_at);
        let delivery_late_wd = delivery_due.and_then(|due| {
            let at = delivered_at.unwrap_or(end);
            let late = late_working_days(cal, due, at);
            (late > 0).then_some(late)
        });
        let sup = (lca != rn && lca != pn)
            .then(|| supervised.get(&r.id))
            .flatten();
        let copies_agree = match prov {
            None => false,
            Some(p) => {
                req == Some(p)
                    && (lca == rn
                        || lca == pn
                        || sup.is_some_and(|(i, c)| Some(*i) == li && *c == p))
            }
        };
        let mut overdue = [[0u32; 3]; 2];
        let mut overdue_dues: [[Vec<UnixMs>; 3]; 2] = Default::default();
        let mut overdue_elsewhere = 0;
        for &(node, article, due) in reports.get(&k).map_or(&[][..], |v| v.as_slice()) {
            let a = usize::from(article == 22);
            let who = if Some(node) == pi {
                Some(1)
            } else if Some(node) == ri {
                Some(0)
            } else if Some(node) == li {
                Some(2)
            } else {
                None
            };
            match who {
                Some(w) => {
                    overdue[a][w] += 1;
                    overdue_dues[a][w].push(due);
                }
                None => overdue_elsewhere += 1,
            }
        }
        out.push(CaseResult {
            request: k,
            state: prov.map(|c| c.state),
            requester_state: req.map(|c| c.state),
            conditional: plan.departments[r.provider as usize].conditional,
            periods,
            answer_late_wd,
            delivery_due,
            delivered_at,
            delivery_late_wd,
            overdue,
            overdue_dues,
            overdue_elsewhere,
            copies_agree,
        });
    }
    out
}

fn percentiles(sorted: &[u32]) -> Percentiles {
    let at = |p: f64| {
        if sorted.is_empty() {
            return None;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: sorted.last().copied(),
    }
}

fn histogram(late: &[u32]) -> Vec<(&'static str, usize)> {
    let buckets: [(&str, u32, u32); 6] = [
        ("1", 1, 1),
        ("2", 2, 2),
        ("3-5", 3, 5),
        ("6-10", 6, 10),
        ("11-20", 11, 20),
        (">20", 21, u32::MAX),
    ];
    buckets
        .iter()
        .map(|(name, lo, hi)| {
            (
                *name,
                late.iter().filter(|l| (*lo..=*hi).contains(*l)).count(),
            )
        })
        .collect()
}

fn rate(on_time: usize, cases: usize) -> f64 {
    if cases == 0 {
        return 1.0;
    }
    // Rounded to 1e-6: stable text in the JSON.
    (on_time as f64 / cases as f64 * 1e6).round() / 1e6
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

fn build_report(
    plan: &SharePlan,
    topo: &Topology,
    nodes: &[ProtoNode],
    stats: &Stats,
    cases: &[CaseResult],
) -> ShareReport {
    let n = plan.requests.len();
    let end = plan.to_ms(stats.end_us);
    let codes = topo.codes();
    let actors: Vec<Option<&ActorStats>> = (0..nodes.len()).map(|i| actor(nodes, i)).collect();
    let sum =
        |f: &dyn Fn(&ActorStats) -> u64| -> u64 { actors.iter().flatten().map(|a| f(a)).sum() };

    // ---- Requests.
    let mut by_locality: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut by_lca_tier: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (k, r) in plan.requests.iter().enumerate() {
        *by_locality.entry(r.locality.name()).or_default() += 1;
        let tier = if r.locality == Locality::Node {
            "node"
        } else {
            plan.lca(k as u32).level().name()
        };
        *by_lca_tier.entry(tier).or_default() += 1;
    }
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for c in cases {
        let s = c
            .state
            .map_or("never received".to_string(), |s| format!("{s:?}"));
        *states.entry(s).or_default() += 1;
    }
    let scripts = plan.requests.iter().map(|r| r.script);
    let requests = RequestSummary {
        planned: n,
        filed: sum(&|a| a.filed),
        by_locality,
        by_lca_tier,
        states,
        scripted_notices: scripts.clone().filter(|s| s.notice.is_some()).count(),
        scripted_extensions: scripts.clone().filter(|s| s.extend.is_some()).count(),
        scripted_refusals: scripts.filter(|s| s.refuse).count(),
    };

    // ---- Art. 21.
    let received: Vec<&CaseResult> = cases.iter().filter(|c| !c.periods.is_empty()).collect();
    let mut late21: Vec<u32> = received.iter().filter_map(|c| c.answer_late_wd).collect();
    late21.sort_unstable();
    let mut by_attribute: BTreeMap<&'static str, OnTime> = BTreeMap::new();
    for c in &received {
        let e = by_attribute
            .entry(if c.conditional {
                "conditional"
            } else {
                "unconditional"
            })
            .or_default();
        e.cases += 1;
        e.on_time += usize::from(c.answer_late_wd.is_none());
    }
    for e in by_attribute.values_mut() {
        e.rate = rate(e.on_time, e.cases);
    }
    let periods: usize = received.iter().map(|c| c.periods.len()).sum();
    let periods_late = received
        .iter()
        .flat_map(|c| c.periods.iter())
        .filter(|p| p.closed_at.unwrap_or(end) >= p.due)
        .count();
    let art21 = ArticleReport {
        article: 21,
        deadline: "answer: 1 working day (unconditional) or 10 (conditional) after receipt, again after a supplement, plus an extension of at most 10 with consent",
        cases: received.len(),
        on_time: received.len() - late21.len(),
        on_time_rate: rate(received.len() - late21.len(), received.len()),
        late: late21.len(),
        never_done: received
            .iter()
            .filter(|c| c.periods.last().is_some_and(|p| p.closed_at.is_none()))
            .count(),
        late_wd: percentiles(&late21),
        late_wd_histogram: histogram(&late21),
        by_attribute,
        periods,
        periods_late,
    };
    // ---- Art. 22.
    let granted: Vec<&CaseResult> = cases.iter().filter(|c| c.delivery_due.is_some()).collect();
    let mut late22: Vec<u32> = granted.iter().filter_map(|c| c.delivery_late_wd).collect();
    late22.sort_unstable();
    let art22 = ArticleReport {
        article: 22,
        deadline: "delivery: 20 working days after the grant",
        cases: granted.len(),
        on_time: granted.len() - late22.len(),
        on_time_rate: rate(granted.len() - late22.len(), granted.len()),
        late: late22.len(),
        never_done: granted.iter().filter(|c| c.delivered_at.is_none()).count(),
        late_wd: percentiles(&late22),
        late_wd_histogram: histogram(&late22),
        by_attribute: BTreeMap::new(),
        periods: granted.len(),
        periods_late: late22.len(),
    };

    // ---- Overdue reports against the truth.
    let mut od = OverdueSummary {
        reports: 0,
        by_article: BTreeMap::new(),
        at_requester: 0,
        at_provider: 0,
        at_lca: 0,
        elsewhere: 0,
        duplicates: 0,
        missing: 0,
        false_at_actor: 0,
        in_flight: 0,
        later_periods_late: 0,
        later_periods_unreported: 0,
    };
    let mut examples: Vec<String> = Vec::new();
    for c in cases {
        let k = c.request;
        let (rn, pn, lca) = (plan.requester_node(k), plan.provider_node(k), plan.lca(k));
        od.elsewhere += c.overdue_elsewhere as usize;
        // The late deadlines: each answer period's that closed at or after its due (or never
        // closed), the delivery's if late.
        let late21: Vec<UnixMs> = c
            .periods
            .iter()
            .filter(|p| p.closed_at.unwrap_or(end) >= p.due)
            .map(|p| p.due)
            .collect();
        let late22: Vec<UnixMs> = c
            .delivery_due
            .filter(|_| c.delivery_late_wd.is_some())
            .into_iter()
            .collect();
        od.later_periods_late += late21.len().saturating_sub(1);
        for (a, article, late) in [(0usize, 21u8, &late21), (1, 22, &late22)] {
            let counts = c.overdue[a];
            let total: u32 = counts.iter().sum();
            od.reports += total as usize;
            *od.by_article.entry(article).or_default() += total as usize;
            od.at_requester += counts[0] as usize;
            od.at_provider += counts[1] as usize;
            od.at_lca += counts[2] as usize;
            // Holders: the provider's node (for a same-node request the one copy), the
            // requester's if another, the LCA if a third node.
            let holders = [rn != pn, true, lca != rn && lca != pn];
            // The party whose act closes the deadline: the provider answers, the requester
            // confirms delivery.
            let actor = if a == 0 { 1 } else { 0 };
            for (w, held) in holders.iter().enumerate() {
                if !held {
                    continue;
                }
                let got = &c.overdue_dues[a][w];
                let mut distinct: Vec<UnixMs> = got.clone();
                distinct.sort_unstable();
                distinct.dedup();
                od.duplicates += got.len() - distinct.len();
                for (j, due) in late.iter().enumerate() {
                    if got.contains(due) {
                        continue;
                    }
                    od.missing += 1;
                    if j > 0 {
                        od.later_periods_unreported += 1;
                    }
                    if examples.len() < EXAMPLES_MAX {
                        examples.push(format!(
                            "request {k} Art. {article} due {}: not reported at {}",
                            beijing(*due),
                            ["requester", "provider", "LCA"][w]
                        ));
                    }
                }
                // Reports of a deadline that was met.
                let at_actor = w == actor || (rn == pn && w == 1);
                for due in distinct.iter().filter(|d| !late.contains(d)) {
                    if at_actor {
                        od.false_at_actor += 1;
                        if examples.len() < EXAMPLES_MAX {
                            examples.push(format!(
                                "request {k} Art. {article} due {}: met, reported at {}",
                                beijing(*due),
                                ["requester", "provider", "LCA"][w]
                            ));
                        }
                    } else {
                        od.in_flight += 1;
                    }
                }
            }
        }
    }

    // ---- Hops.
    let mut distribution = vec![0u64; HOPS_MAX + 1];
    let mut by_locality: BTreeMap<&'static str, HopStats> = BTreeMap::new();
    for (li, l) in Locality::ALL.iter().enumerate() {
        let mut h = HopStats::default();
        let mut total = 0u64;
        for a in actors.iter().flatten() {
            for (hops, count) in a.hops[li].iter().enumerate() {
                distribution[hops] += count;
                h.acts += count;
                total += hops as u64 * count;
                if *count > 0 {
                    h.max = h.max.max(hops);
                }
            }
        }
        h.mean = if h.acts == 0 {
            0.0
        } else {
            (total as f64 / h.acts as f64 * 1e3).round() / 1e3
        };
        if h.acts > 0 {
            by_locality.insert(l.name(), h);
        }
    }
    let acts: u64 = distribution.iter().sum();
    let weighted: u64 = distribution
        .iter()
        .enumerate()
        .map(|(h, c)| h as u64 * c)
        .sum();
    while distribution.last() == Some(&0) {
        distribution.pop();
    }
    let hops = HopsReport {
        acts,
        mean: if acts == 0 {
            0.0
        } else {
            (weighted as f64 / acts as f64 * 1e3).round() / 1e3
        },
        distribution,
        by_locality,
        same_node_requests: plan
            .requests
            .iter()
            .filter(|r| r.locality == Locality::Node)
            .count(),
        retransmissions: sum(&|a| a.retransmissions),
    };

    // ---- Load at the common ancestors.
    let supervised: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.endpoint()
                .map_or(0, |ep| ep.share_service().supervised().count())
        })
        .collect();
    let own_cases: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.endpoint()
                .map_or(0, |ep| ep.share_service().cases().count())
        })
        .collect();
    let cpu = |i: usize| stats.cpu_busy_us.get(i).copied().unwrap_or(0);
    let fwd = |i: usize| actors[i].map_or(0, |a| a.acts_forwarded);
    let fwd_lca = |i: usize| actors[i].map_or(0, |a| a.acts_forwarded_as_lca);
    let mut per_tier = Vec::new();
    for level in Level::ALL {
        let ix: Vec<usize> = (0..codes.len())
            .filter(|&i| codes[i].level() == level)
            .collect();
        let busiest = ix
            .iter()
            .copied()
            .max_by_key(|&i| (supervised[i], std::cmp::Reverse(i)));
        per_tier.push(TierLoad {
            tier: level.name(),
            nodes: ix.len(),
            requests_as_lca: by_lca_tier_count(plan, level),
            acts_forwarded: ix.iter().map(|&i| fwd(i)).sum(),
            acts_forwarded_as_lca: ix.iter().map(|&i| fwd_lca(i)).sum(),
            supervised_copies: ix.iter().map(|&i| supervised[i]).sum(),
            busiest_supervised: busiest.map_or(0, |i| supervised[i]),
            busiest: busiest.map(|i| codes[i].to_string()),
            cpu_s: secs(ix.iter().map(|&i| cpu(i)).sum()),
        });
    }
    let mut order: Vec<usize> = (0..codes.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(fwd(i)), i));
    let china = Topology::china();
    let top = order
        .iter()
        .take(TOP_NODES)
        .filter(|&&i| fwd(i) > 0)
        .map(|&i| NodeLoad {
            code: codes[i].to_string(),
            name: china
                .get(codes[i])
                .map_or(String::new(), |r| r.name.clone()),
            tier: codes[i].level().name(),
            acts_forwarded: fwd(i),
            acts_forwarded_as_lca: fwd_lca(i),
            supervised_copies: supervised[i],
            cases: own_cases[i],
            cpu_s: secs(cpu(i)),
        })
        .collect();

    // ---- Events.
    let mut acts_rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut acts_rejected_examples = Vec::new();
    let mut script_error_examples = Vec::new();
    for a in actors.iter().flatten() {
        for (k, v) in &a.rejected {
            *acts_rejected.entry(k).or_default() += v;
        }
        for e in &a.rejected_examples {
            if acts_rejected_examples.len() < EXAMPLES_MAX {
                acts_rejected_examples.push(e.clone());
            }
        }
        for e in &a.script_error_examples {
            if script_error_examples.len() < EXAMPLES_MAX {
                script_error_examples.push(e.clone());
            }
        }
    }
    let kind = |k: &str| stats.kinds.get(k).cloned().unwrap_or_default();
    let events = EventSummary {
        overdue_reported: od.reports,
        acts_rejected,
        acts_rejected_examples,
        script_errors: sum(&|a| a.script_errors),
        script_error_examples,
        share_act_messages: kind("share_act"),
        share_ack_messages: kind("share_ack"),
        catalog_messages: ["catalog_probe", "catalog_updates", "catalog_ack"]
            .iter()
            .map(|k| kind(k).sent)
            .sum(),
        connection_resets: stats.control.connection_resets,
        protocol_notes: stats.notes.clone(),
    };

    // ---- Time.
    let first = plan.requests.iter().map(|r| r.filed_at).min();
    let last = plan.requests.iter().map(|r| r.filed_at).max();
    let last_act = cases
        .iter()
        .filter_map(|c| {
            let p = c.periods.iter().filter_map(|p| p.closed_at).max();
            p.into_iter().chain(c.delivered_at).max()
        })
        .max()
        .unwrap_or(plan.window_start);
    let time = TimeSummary {
        window: (beijing(plan.window_start), beijing(plan.window_end)),
        first_filing: first.map_or_else(String::new, beijing),
        last_filing: last.map_or_else(String::new, beijing),
        last_act: beijing(last_act),
        simulated_days: (last_act.since_ms(plan.window_start) as f64 / DAY_MS as f64 * 100.0)
            .round()
            / 100.0,
        sim_end_s: secs(stats.end_us),
        stop: stats.stop,
        events: stats.events,
    };

    // ---- Invariants.
    let mut invariants = Vec::new();
    invariants.push(Invariant {
        name: "the run finished (no event left)",
        ok: stats.stop == StopReason::Quiescent,
        detail: format!(
            "stopped: {:?} at {} ({} events)",
            stats.stop,
            beijing(end),
            stats.events
        ),
    });
    let closed = |s: Option<ShareState>| {
        matches!(s, Some(ShareState::Delivered) | Some(ShareState::Refused))
    };
    let open: Vec<&CaseResult> = cases
        .iter()
        .filter(|c| !closed(c.state) || !closed(c.requester_state))
        .collect();
    invariants.push(Invariant {
        name: "every request filed, received and closed (delivered or refused) at both parties",
        ok: requests.filed as usize == n && open.is_empty(),
        detail: format!(
            "{} of {n} filed; {} not closed{}",
            requests.filed,
            open.len(),
            examples_of(open.iter().map(|c| format!(
                "request {}: provider {:?}, requester {:?}",
                c.request, c.state, c.requester_state
            )))
        ),
    });
    let disagree: Vec<&CaseResult> = cases.iter().filter(|c| !c.copies_agree).collect();
    invariants.push(Invariant {
        name: "every case's copies at the requester, the provider and their LCA agree",
        ok: disagree.is_empty(),
        detail: format!(
            "{} cases compared ({} with a supervisory copy); {} differ{}",
            cases.len(),
            plan.requests
                .iter()
                .enumerate()
                .filter(|(k, _)| {
                    let k = *k as u32;
                    let (r, p, l) = (plan.requester_node(k), plan.provider_node(k), plan.lca(k));
                    l != r && l != p
                })
                .count(),
            disagree.len(),
            examples_of(disagree.iter().map(|c| format!("request {}", c.request)))
        ),
    });
    invariants.push(Invariant {
        name: "every late deadline (each answer period's, the delivery's) reported overdue exactly once at each holder (requester, provider, LCA)",
        ok: od.duplicates == 0
            && od.missing == 0
            && od.elsewhere == 0
            && od.later_periods_unreported == 0,
        detail: format!(
            "{} reports; {} late deadlines unreported ({} of {} later answer periods), {} reported more than once, {} at other nodes{}",
            od.reports,
            od.missing,
            od.later_periods_unreported,
            od.later_periods_late,
            od.duplicates,
            od.elsewhere,
            examples_of(examples.into_iter())
        ),
    });
    invariants.push(Invariant {
        name: "no met deadline reported overdue by the party who met it",
        ok: od.false_at_actor == 0,
        detail: format!(
            "{} false reports at the acting party; {} at copies the act had not reached yet (in flight)",
            od.false_at_actor, od.in_flight
        ),
    });
    let rejected: u64 = events.acts_rejected.values().sum();
    invariants.push(Invariant {
        name: "no share act rejected, every scripted act taken",
        ok: rejected == 0 && events.script_errors == 0,
        detail: format!(
            "{rejected} acts rejected, {} scripted acts refused{}",
            events.script_errors,
            examples_of(
                events
                    .acts_rejected_examples
                    .iter()
                    .chain(&events.script_error_examples)
                    .cloned()
            )
        ),
    });
    invariants.push(Invariant {
        name: "no connection reset",
        ok: stats.control.connection_resets == 0,
        detail: format!("{} resets", stats.control.connection_resets),
    });

    let mut per_tier_nodes = BTreeMap::new();
    for l in Level::ALL {
        per_tier_nodes.insert(l.name(), topo.count(l));
    }
    let active = plan.departments.iter().filter(|d| d.active).count();
    let providers = plan.departments.iter().filter(|d| d.provider);
    ShareReport {
        simnet: env!("CARGO_PKG_VERSION"),
        scenario: plan.config.clone(),
        calendar_years: plan.calendar.years().collect(),
        network: NetworkSummary {
            nodes: topo.len(),
            per_tier: per_tier_nodes,
            departments_pool: plan.departments.len(),
            departments_active: active,
            providers: providers.clone().count(),
            providers_conditional: providers.filter(|d| d.conditional).count(),
            relays_down: plan.faults.len(),
        },
        time,
        requests,
        articles: vec![art21, art22],
        overdue: od,
        hops,
        lca_load: LcaLoad { per_tier, top },
        events,
        faults: plan.faults.clone(),
        invariants,
    }
}

fn by_lca_tier_count(plan: &SharePlan, level: Level) -> usize {
    (0..plan.requests.len() as u32)
        .filter(|&k| {
            plan.requests[k as usize].locality != Locality::Node && plan.lca(k).level() == level
        })
        .count()
}

fn examples_of(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.take(EXAMPLES_MAX).collect();
    if v.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", v.join("; "))
    }
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
