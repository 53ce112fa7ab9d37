//! One node's part in the sharing scenario ([`crate::share_plan`]): its departments' scripted
//! behaviour and what the node measures. The sharing service's own timer is the endpoint's
//! (`poll_timeout`, like every other).
//! The adapter ([`crate::protonode`]) owns one per node and calls it; it never touches the
//! endpoint itself.
//!
//! - **Scripts.** Departments file their requests at the planned times and act on their cases
//!   as the plan says, each act scheduled from the case as this node's copy shows it (the
//!   provider's answer from its receipt, the requester's supplement from the notice…), so a
//!   late message makes a late act, as it would for a person.
//! - **Measures.** Hops per act (the shell tags each act message with the hops it travelled),
//!   acts forwarded (and forwarded as the parties' lowest common ancestor), retransmissions,
//!   overdue reports, rejections, answer periods and when each closed (at the provider's
//!   node).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{
    DeliveryRoute, ShareAct, ShareCase, ShareRejection, ShareState, SignedShareAct,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;

use crate::share_plan::{after, Delay, Locality, Plan, PERMITTED_USE};
use crate::time::Micros;

/// Hops counted one by one up to this; more count here.
pub const HOPS_MAX: usize = 15;
const EXAMPLES_MAX: usize = 8;

/// Which party of a request a scheduled act is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Provider,
    Requester,
}

/// A scripted act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Notice,
    Supplement,
    Extend(u32),
    /// Grant or refuse, as the script says.
    Answer,
    /// Open the service interface: its delivery.
    StartDelivery,
}

/// One answer period (Art. 21) of a case at its provider's node, and when it closed (by the
/// notice, the grant or the refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub due: UnixMs,
    pub closed_at: Option<UnixMs>,
}

/// An overdue report this node made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverdueSeen {
    pub request: u32,
    pub article: u8,
    pub due: UnixMs,
    pub at_us: Micros,
}

/// What one node measured.
#[derive(Clone, Debug, Default)]
pub struct ActorStats {
    pub filed: u64,
    pub acted: u64,
    /// Acts of other nodes this node held for forwarding (persisted in transit).
    pub acts_forwarded: u64,
    /// … of which between two regions whose lowest common ancestor this node is.
    pub acts_forwarded_as_lca: u64,
    /// Retransmissions of acts in transit (no acknowledgement within the retry time, or
    /// resent at once when the next hop is admitted again, or after a restart).
    pub retransmissions: u64,
    /// Acts addressed to this node that arrived over the network (first copies).
    pub acts_taken: u64,
    /// Per locality ([`Locality::ALL`] order), acts by hops travelled.
    pub hops: [[u64; HOPS_MAX + 1]; 3],
    pub overdue: Vec<OverdueSeen>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub rejected_examples: Vec<String>,
    pub script_errors: u64,
    pub script_error_examples: Vec<String>,
    /// Provider's node: the answer periods of each request (by plan index).
    pub periods: HashMap<u32, Vec<Period>>,
}

pub struct ShareActor {
    plan: Plan,
    me: RegionCode,
    /// Requests this node files, by filing time; the next one at `next_file`.
    files: Vec<u32>,
    next_file: usize,
    queue: BinaryHeap<Reverse<(Micros, u32, Role, u32)>>,
    scheduled: HashMap<(u32, Role), (u32, Action)>,
    generation: u32,
    /// Acts put in transit whose first send has not gone out yet (the service persists an
    /// act in transit, then sends it: every other send of an act is a retransmission).
    first_sends: u32,
    /// Hops travelled by acts held here for forwarding.
    transit_hops: HashMap<Hash, u8>,
    /// Acts addressed here that arrived (retransmitted copies are counted once).
    taken: HashSet<Hash>,
    /// The last act whose id was asked for (an act is asked for several times in a row:
    /// arrived, held in transit, sent on).
    last_act: Option<(Arc<SignedShareAct>, Hash)>,
    pub stats: ActorStats,
}

/// A name for a rejection, for the report's counters.
pub fn rejection_name(e: &ShareRejection) -> &'static str {
    match e {
        ShareRejection::Limit(_) => "limit",
        ShareRejection::Cert(_) => "certificate",
        ShareRejection::WrongSigner { .. } => "wrong_signer",
        ShareRejection::Department(_) => "department",
        ShareRejection::NotSignedByTheDepartment { .. } => "not_signed_by_the_department",
        ShareRejection::NodeActByADepartment => "node_act_by_a_department",
        ShareRejection::OtherDepartment { .. } => "other_department",
        ShareRejection::BadDepartmentSignature { .. } => "bad_department_signature",
        ShareRejection::FromTheFuture { .. } => "from_the_future",
        ShareRejection::UnknownRequest => "unknown_request",
        ShareRejection::NotAParty => "not_a_party",
        ShareRejection::MismatchedFiling => "mismatched_filing",
        ShareRejection::TooManyCases { .. } => "too_many_cases",
        ShareRejection::ReceivedByTheNode => "received_by_the_node",
        ShareRejection::NotThisDelivery => "not_this_delivery",
        ShareRejection::NoDeliveryHere => "no_delivery_here",
        ShareRejection::RightsSuspended { .. } => "rights_suspended",
        ShareRejection::SharingTerminated { .. } => "sharing_terminated",
        ShareRejection::Case(_) => "case",
        ShareRejection::ReturnedDataNotHeld { .. } => "returned_data_not_held",
        ShareRejection::CorrectedVersionNotPublished { .. } => "corrected_version_not_published",
    }
}

fn locality_ix(l: Locality) -> usize {
    match l {
        Locality::Node => 0,
        Locality::Province => 1,
        Locality::Country => 2,
    }
}

impl ShareActor {
    pub fn new(plan: Plan, me: RegionCode) -> ShareActor {
        let files = plan.files_at.get(&me).cloned().unwrap_or_default();
        ShareActor {
            plan,
            me,
            files,
            next_file: 0,
            queue: BinaryHeap::new(),
            scheduled: HashMap::new(),
            generation: 0,
            first_sends: 0,
            transit_hops: HashMap::new(),
            taken: HashSet::new(),
            last_act: None,
            stats: ActorStats::default(),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// [`SignedShareAct::id`], remembered for the last act asked about.
    pub fn act_id(&mut self, act: &Arc<SignedShareAct>) -> Hash {
        if let Some((a, id)) = &self.last_act {
            if Arc::ptr_eq(a, act) {
                return *id;
            }
        }
        let id = act.id();
        self.last_act = Some((Arc::clone(act), id));
        id
    }

    /// The request id of a case (from the plan for its own requests).
    pub fn case_id(&self, case: &ShareCase) -> Hash {
        self.plan.id_of(&case.request)
    }

    /// When the scripts next want the node: the next filing or scheduled act (a stale
    /// entry only wakes the node early).
    pub fn next_wakeup(&self) -> Option<Micros> {
        let file = self
            .files
            .get(self.next_file)
            .map(|&i| self.plan.to_us(self.plan.requests[i as usize].filed_at));
        let act = self.queue.peek().map(|Reverse((t, ..))| *t);
        file.into_iter().chain(act).min()
    }

    /// Requests due to be filed by `now`.
    pub fn due_filings(&mut self, now: Micros) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(&i) = self.files.get(self.next_file) {
            if self.plan.to_us(self.plan.requests[i as usize].filed_at) > now {
                break;
            }
            self.next_file += 1;
            out.push(i);
        }
        out
    }

    /// Scripted acts due by `now` (each still the one scheduled for its request and role).
    pub fn due_actions(&mut self, now: Micros) -> Vec<(u32, Action)> {
        let mut out = Vec::new();
        while let Some(&Reverse((t, i, role, g))) = self.queue.peek() {
            if t > now {
                break;
            }
            self.queue.pop();
            if let Some((gen, action)) = self.scheduled.get(&(i, role)).copied() {
                if gen == g {
                    self.scheduled.remove(&(i, role));
                    out.push((i, action));
                }
            }
        }
        out
    }

    /// The department acting and the act, for a scripted action on request `i`.
    pub fn act_for(&self, i: u32, action: Action) -> (u32, ShareAct) {
        let r = &self.plan.requests[i as usize];
        let approved_by = "数据共享工作机构负责人".to_string();
        match action {
            Action::Notice => (
                r.provider,
                ShareAct::NoticeIncomplete {
                    missing: vec!["使用依据的文号".to_string(), "使用范围说明".to_string()],
                },
            ),
            Action::Supplement => (
                r.requester,
                ShareAct::Supplement {
                    material: "已补充使用依据文号和使用范围说明".to_string(),
                },
            ),
            Action::Extend(days) => (
                r.provider,
                ShareAct::Extend {
                    working_days: days,
                    authority_consent: "同级政务数据共享主管部门同意 (simnet)".to_string(),
                    reason: "需会商相关部门".to_string(),
                },
            ),
            Action::Answer if r.script.refuse => (
                r.provider,
                ShareAct::Refuse {
                    reasons: "申请的使用范围超出履职需要".to_string(),
                    approved_by,
                },
            ),
            Action::Answer => (
                r.provider,
                ShareAct::Grant {
                    conditions: if self.plan.departments[r.provider as usize].conditional {
                        vec![PERMITTED_USE.to_string()]
                    } else {
                        Vec::new()
                    },
                    approved_by,
                },
            ),
            // A service interface (服务接口): no delivery manifest to name; it is delivered
            // once it answers (the calls themselves are not simulated).
            Action::StartDelivery => (
                r.provider,
                ShareAct::StartDelivery {
                    route: Some(DeliveryRoute {
                        manifest: None,
                        addresses: Vec::new(),
                    }),
                },
            ),
        }
    }

    pub fn filed(&mut self) {
        self.stats.filed += 1;
    }

    pub fn acted(&mut self) {
        self.stats.acted += 1;
    }

    pub fn script_error(&mut self, what: String) {
        self.stats.script_errors += 1;
        if self.stats.script_error_examples.len() < EXAMPLES_MAX {
            self.stats.script_error_examples.push(what);
        }
    }

    /// A case of this node changed (`case` as it is now): schedule what its parties here do
    /// next.
    pub fn on_case_changed(&mut self, now: Micros, case: &ShareCase) {
        let Some(i) = self.plan.index_of(&case.request) else {
            return;
        };
        for role in [Role::Provider, Role::Requester] {
            let here = match role {
                Role::Provider => self.plan.provider_node(i),
                Role::Requester => self.plan.requester_node(i),
            };
            if here != self.me {
                continue;
            }
            let next = self.next_action(i, role, case);
            self.schedule(now, i, role, next);
        }
    }

    fn next_action(&self, i: u32, role: Role, case: &ShareCase) -> Option<(UnixMs, Action)> {
        let s = &self.plan.requests[i as usize].script;
        let cal = &self.plan.calendar;
        let act_at = |f: &dyn Fn(&ShareAct) -> bool| {
            case.acts.iter().rev().find(|(_, a)| f(a)).map(|(t, _)| *t)
        };
        let grant_at = || act_at(&|a| matches!(a, ShareAct::Grant { .. }));
        match (role, case.state) {
            (Role::Provider, ShareState::UnderReview | ShareState::Extended) => {
                let start =
                    act_at(&|a| matches!(a, ShareAct::Supplement { .. })).or(case.received_at)?;
                if let Some((notice, _)) = s.notice {
                    if case.notice.is_none() {
                        return Some((after(cal, start, notice), Action::Notice));
                    }
                }
                if let Some((when, days)) = s.extend {
                    if case.extension.is_none() && case.state == ShareState::UnderReview {
                        return Some((after(cal, start, when), Action::Extend(days)));
                    }
                }
                Some((after(cal, start, s.answer), Action::Answer))
            }
            (Role::Requester, ShareState::Incomplete) => {
                let notice = case.notice.as_ref()?.at;
                let delay = s.notice.map_or(Delay::wd(1.0), |(_, d)| d);
                Some((after(cal, notice, delay), Action::Supplement))
            }
            // A service interface (服务接口) is delivered when it opens: the provider opens it
            // after the scripted delivery time.
            (Role::Provider, ShareState::Granted) => {
                Some((after(cal, grant_at()?, s.delivery), Action::StartDelivery))
            }
            _ => None,
        }
    }

    fn schedule(&mut self, now: Micros, i: u32, role: Role, next: Option<(UnixMs, Action)>) {
        let key = (i, role);
        let Some((at, action)) = next else {
            self.scheduled.remove(&key);
            return;
        };
        if self.scheduled.get(&key).is_some_and(|(_, a)| *a == action) {
            return;
        }
        let at = self.plan.to_us(at).max(now);
        self.generation = self.generation.wrapping_add(1);
        self.scheduled.insert(key, (self.generation, action));
        self.queue.push(Reverse((at, i, role, self.generation)));
    }

    // ---- What the sharing service did. ----

    /// The provider's node persisted its copy of a case (`old` the copy it replaces): the
    /// answer periods opened, extended and closed.
    pub fn track_periods(&mut self, case: &ShareCase, old: Option<&ShareCase>) {
        let Some(i) = self.plan.index_of(&case.request) else {
            return;
        };
        if self.plan.provider_node(i) != self.me {
            return;
        }
        let before = old.and_then(|c| c.answer_due);
        let periods = self.stats.periods.entry(i).or_default();
        match (before, case.answer_due) {
            (None, Some(due)) => periods.push(Period {
                due,
                closed_at: None,
            }),
            (Some(a), Some(b)) if a != b => {
                // Extended: the same period, later.
                if let Some(p) = periods.last_mut() {
                    p.due = b;
                }
            }
            (Some(_), None) => {
                if let Some(p) = periods.last_mut() {
                    p.closed_at = case.acts.last().map(|(t, _)| *t);
                }
            }
            _ => {}
        }
    }

    /// An act was persisted in transit (its first send follows).
    pub fn on_transit_put(&mut self, act: &SignedShareAct) {
        let b = &act.body;
        if b.by.region != self.me {
            self.stats.acts_forwarded += 1;
            if b.by.region.lowest_common_ancestor(b.to) == self.me {
                self.stats.acts_forwarded_as_lca += 1;
            }
        }
        self.first_sends += 1;
    }

    /// The endpoint sent an act: its first send after it was put in transit, or a
    /// retransmission.
    pub fn on_act_sent(&mut self) {
        if self.first_sends > 0 {
            self.first_sends -= 1;
        } else {
            self.stats.retransmissions += 1;
        }
    }

    pub fn on_transit_drop(&mut self, id: &Hash) {
        self.transit_hops.remove(id);
    }

    /// The endpoint reported a deadline overdue.
    pub fn on_overdue(&mut self, id: Hash, article: u8, due: UnixMs, now: Micros) {
        if let Some(&i) = self.plan.by_id.get(&id) {
            self.stats.overdue.push(OverdueSeen {
                request: i,
                article,
                due,
                at_us: now,
            });
        }
    }

    pub fn on_rejected(&mut self, from: RegionCode, error: &ShareRejection) {
        *self
            .stats
            .rejected
            .entry(rejection_name(error))
            .or_default() += 1;
        if self.stats.rejected_examples.len() < EXAMPLES_MAX {
            self.stats
                .rejected_examples
                .push(format!("at {} from {from}: {error}", self.me));
        }
    }

    // ---- Hops. ----

    /// An act arrived from the network having travelled `hops` hops; returns whether it is
    /// addressed here.
    pub fn on_act_arrived(&mut self, act: &SignedShareAct, id: Hash, hops: u8) -> bool {
        if act.body.to != self.me {
            self.transit_hops.entry(id).or_insert(hops);
            return false;
        }
        if self.taken.insert(id) {
            self.stats.acts_taken += 1;
            let l = self
                .plan
                .by_id
                .get(&act.body.request)
                .map_or(Locality::Country, |&i| {
                    self.plan.requests[i as usize].locality
                });
            self.stats.hops[locality_ix(l)][usize::from(hops).min(HOPS_MAX)] += 1;
        }
        true
    }

    /// After handling an act not addressed here: forget its hops unless it is `held` in
    /// transit.
    pub fn after_relay(&mut self, id: &Hash, held: bool) {
        if !held {
            self.transit_hops.remove(id);
        }
    }

    /// Hops the act will have travelled when it arrives at the next node.
    pub fn hops_out(&self, id: &Hash) -> u8 {
        self.transit_hops
            .get(id)
            .copied()
            .unwrap_or(0)
            .saturating_add(1)
    }
}
