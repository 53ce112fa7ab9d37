//! Every request's case at the end of the run, gathered from the nodes: its end state at
//! each party, its deadlines met or missed, and who reported what.

use std::collections::HashMap;

use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{ShareCase, ShareState};
use backflow_protocol::time::UnixMs;
use backflow_topology::{RegionCode, Topology};

use crate::engine::Stats;
use crate::protonode::ProtoNode;
use crate::share_actor::{ActorStats, Period};
use crate::share_plan::{late_working_days, SharePlan};

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

fn index(topo: &Topology, c: RegionCode) -> Option<usize> {
    topo.codes().binary_search(&c).ok()
}

pub(super) fn actor(nodes: &[ProtoNode], i: usize) -> Option<&ActorStats> {
    nodes.get(i).and_then(|n| n.share_actor()).map(|a| &a.stats)
}

fn case_at<'a>(nodes: &'a [ProtoNode], i: Option<usize>, id: &Hash) -> Option<&'a ShareCase> {
    nodes.get(i?)?.endpoint()?.share_service().case(id)
}

/// Every request's end state, its deadlines met or missed, and who reported what.
pub(super) fn collect_cases(
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
            // The answer's and the delivery's deadlines (Arts. 21–22); the later ones
            // (corrections, rectification, disposal) are not what the plan measures.
            let a = match article {
                21 => 0,
                22 => 1,
                _ => continue,
            };
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
