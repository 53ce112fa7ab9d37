//! The sharing report computed from a run: per article the on-time rate and the overdue
//! tail, overdue reports against the truth, routing hops, the load at the common ancestors,
//! the events counted, and the invariants.

use std::collections::BTreeMap;

use backflow_protocol::share::ShareState;
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_topology::{Level, Topology};

use super::cases::{actor, CaseResult};
use super::report::{
    beijing, ArticleReport, EventSummary, HopStats, HopsReport, LcaLoad, NetworkSummary, NodeLoad,
    OnTime, OverdueSummary, Percentiles, RequestSummary, ShareReport, TierLoad, TimeSummary,
};
use crate::engine::{Stats, StopReason};
use crate::protonode::ProtoNode;
use crate::report::secs;
use crate::scenario::Invariant;
use crate::share_actor::{ActorStats, HOPS_MAX};
use crate::share_plan::{Locality, SharePlan};

/// Top nodes listed by load.
const TOP_NODES: usize = 10;
const EXAMPLES_MAX: usize = 5;

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

pub(super) fn build_report(
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
