//! The sharing service (共享服务): carries the signed acts of share requests between the two
//! parties' nodes over the administrative tree, and keeps each party's copy of the case.
//!
//! - A party's node signs each act of its department ([`SignedShareAct`]), applies it to its own
//!   copy of the [`ShareCase`], and routes it toward the other party's region: up to the lowest
//!   common ancestor, then down (each hop is a parent–child connection the nodes already hold).
//! - Every hop verifies the signature (and that the signer's region is the acting
//!   department's) before it persists, acknowledges and forwards the act; a relay keeps it
//!   until the next hop acknowledges, retransmitting every `retry_ms` (like receipts).
//! - The destination applies the act at the time it was *signed* (`at`), so both copies reach
//!   the same state and the same deadlines; an act that does not apply there is reported
//!   ([`ShareEvent::ActRejected`]) and acknowledged, so it does not circle forever.
//! - The provider's node answers a filing with a `Receive` act at once (the answer period runs
//!   from receipt, Art. 21), and refuses a request for a not-shared entry at once with the
//!   catalog's reason and basis (Art. 15), or for an entry its catalog does not hold.
//!
//! - The parties' lowest common superior (最低共同上级: the lowest common ancestor of their two
//!   regions, through which every act between them passes) keeps a supervisory copy of each
//!   cross-region case from the acts it forwards, so overdue answers and deliveries are
//!   visible to that authority too ([`ShareService::supervised`]); it never acts on it.
//! - Departments sign their own acts with their own keys ([`crate::department`]); the node's
//!   jurisdiction key signs only what the node does by itself: receiving a filing, and
//!   refusing one for an entry its catalog does not hold. A verifier checks which is which.
//!
//! Bounded: cases and acts in transit per node, acts per case, departments per node, and clock
//! skew of a signed `at`.
//! - Skip-level: an act goes to the nearest region on its tree path that is connected now;
//!   when the next hop is down, a node connected to a farther one on the path (a skip-level
//!   fallback link, as the data plane uses) sends it there instead of waiting. (Skipping the
//!   parties' lowest common superior leaves its supervisory copy behind for that act.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use backflow_topology::RegionCode;

use super::acts::{
    not_in_catalog_refusal, party_of, sign_act, ShareActKind, ShareMsg, ShareRejection,
    SignedShareAct,
};
use super::timers::{CaseKey, Timers};
use super::{DeliveryRoute, Party, ShareAct, ShareCase, ShareError, ShareRequest};
use crate::calendar::WorkingCalendar;
use crate::catalog::{CatalogOrigin, SharingAttribute, SharingMethod};
use crate::cert::{NodeIdentity, TrustStore};
use crate::department::{DepartmentError, DepartmentIdentity, DEPARTMENTS_PER_NODE_MAX};
use crate::manifest::Hash;
use crate::time::UnixMs;

mod relay;
mod returned_corrections;
mod rights_in_force;
mod supervision;

pub use rights_in_force::RightsOrder;

/// The name the coordinating authority acts under (政务数据共享主管部门: a role of the
/// jurisdiction key, Art. 28).
pub const AUTHORITY_NAME: &str = "政务数据共享主管部门";

/// The catalog lookup for acts that need none (only a filing does).
fn no_catalog(_: &CatalogOrigin, _: &str) -> Option<SharingAttribute> {
    None
}

/// Cases a node keeps (as requester's or provider's node); beyond, new filings are refused.
pub const SHARE_CASES_MAX: usize = 1_000_000;
/// Acts a relay holds in transit at once; beyond, it does not acknowledge (the sender
/// retries later).
pub const SHARE_TRANSIT_MAX: usize = 65_536;

/// Storage effects: apply durably before acting on later outputs.
#[derive(Clone, Debug, PartialEq)]
pub enum ShareStorageOp {
    /// Persist (overwrite) this node's copy of a case.
    PutCase(Box<ShareCase>),
    /// Persist an act held for forwarding.
    PutTransit(Arc<SignedShareAct>),
    /// The next hop has it: forget it.
    DropTransit { act: Hash },
    /// Persist (overwrite) a supervisory copy ([`ShareService::supervised`]).
    PutSupervised(Box<ShareCase>),
    /// Persist (overwrite) the act in force on a department's sharing rights for its
    /// department and authority ([`super::SignedRightsAct`]; passed on only after this).
    PutRights(Arc<super::SignedRightsAct>),
    /// Persist (overwrite) this node's copy of a correction request against returned data.
    PutReturnedCorrection(Box<super::ReturnedCorrection>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShareEvent {
    /// A case here changed (filed, answered, delivered…).
    CaseChanged {
        request: Hash,
        state: super::ShareState,
    },
    /// A deadline passed without its act (Art. 21 answer, Art. 22 delivery).
    Overdue {
        request: Hash,
        article: u8,
        due: UnixMs,
    },
    /// An act from `from` was not taken (it is acknowledged all the same, so the sender
    /// stops).
    ActRejected {
        from: RegionCode,
        request: Hash,
        error: ShareRejection,
    },
    /// A department's sharing rights were suspended or reinstated by an authority (Art. 27
    /// ¶2): by this node's own (`from` none) or heard from `from`.
    RightsChanged {
        department: CatalogOrigin,
        issuer: RegionCode,
        suspended: bool,
        from: Option<RegionCode>,
    },
    /// An act on sharing rights from `from` was not taken.
    RightsRejected {
        from: RegionCode,
        error: super::RightsError,
    },
    /// A correction request against returned data here was filed or answered.
    ReturnedCorrectionChanged { id: Hash, answered: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShareOutput {
    Send { to: RegionCode, msg: ShareMsg },
    Storage(ShareStorageOp),
    Event(ShareEvent),
}

#[derive(Clone, Debug)]
struct Transit {
    act: Arc<SignedShareAct>,
    /// Sends so far without an acknowledgement (the retry interval doubles with each, up
    /// to [`SHARE_RETRY_BACKOFF_MAX`] times the base).
    attempts: u32,
}

/// The longest retry interval of an act in transit, as a multiple of `retry_ms` (5 s × 8 =
/// 40 s with the defaults): a hop that is down for hours is not sent every act every 5 s;
/// when it comes back (admitted again) everything bound for it goes at once.
pub const SHARE_RETRY_BACKOFF_MAX: u64 = 8;

/// One node's side of the sharing service.
#[derive(Debug)]
pub struct ShareService {
    region: RegionCode,
    calendar: WorkingCalendar,
    retry_ms: u64,
    cases: BTreeMap<Hash, ShareCase>,
    /// Correction requests against returned data this node is a party to (Art. 26).
    returned: BTreeMap<Hash, super::ReturnedCorrection>,
    transit: BTreeMap<Hash, Transit>,
    /// (request, article, due) reported overdue, so each deadline is reported once — a new
    /// answer period after a supplement is a new deadline.
    overdue_reported: BTreeSet<(Hash, u8, UnixMs)>,
    /// When each case, copy and act in transit is next due.
    timers: Timers,
    /// Acts forwarded here that the supervisory copy could not take yet (out of order: an
    /// earlier act is still on its way), tried again whenever the copy moves. Not persisted:
    /// oversight only (a restart may leave the copy behind).
    supervise_held: BTreeMap<Hash, Vec<Arc<SignedShareAct>>>,
    /// Cases between two other regions whose lowest common superior this node is: copies
    /// kept from the acts forwarded, for oversight only.
    supervised: BTreeMap<Hash, ShareCase>,
    /// This node's departments, by name, each certified by the current jurisdiction key.
    departments: BTreeMap<String, DepartmentIdentity>,
    /// Regions connected (admitted) now: where an act may go next.
    reachable: BTreeSet<RegionCode>,
    /// Departments' sharing rights suspended by authorities, network-wide (Art. 27 ¶2).
    rights: super::SharingRights,
    /// When every act on sharing rights held goes to the tree neighbours again (none held:
    /// never).
    rights_resync_at: Option<UnixMs>,
    out: VecDeque<ShareOutput>,
}

impl ShareService {
    pub fn new(region: RegionCode, calendar: WorkingCalendar, retry_ms: u64) -> ShareService {
        ShareService {
            region,
            calendar,
            retry_ms: retry_ms.max(1),
            cases: BTreeMap::new(),
            returned: BTreeMap::new(),
            transit: BTreeMap::new(),
            overdue_reported: BTreeSet::new(),
            timers: Timers::default(),
            supervise_held: BTreeMap::new(),
            supervised: BTreeMap::new(),
            departments: BTreeMap::new(),
            reachable: BTreeSet::new(),
            rights: super::SharingRights::default(),
            rights_resync_at: None,
            out: VecDeque::new(),
        }
    }

    /// Restart: hands back what [`ShareStorageOp`] persisted.
    pub fn restore(
        &mut self,
        now: UnixMs,
        cases: Vec<ShareCase>,
        transit: Vec<SignedShareAct>,
        supervised: Vec<ShareCase>,
    ) {
        for c in supervised {
            let id = c.request.id();
            self.supervised.insert(id, c);
            self.retime((id, true));
        }
        for c in cases {
            let id = c.request.id();
            self.cases.insert(id, c);
            self.retime((id, false));
        }
        for act in transit {
            let id = act.id();
            self.transit.insert(
                id,
                Transit {
                    act: Arc::new(act),
                    attempts: 0,
                },
            );
            self.timers.set_send(id, Some(now));
        }
    }

    /// Takes department `name`'s key (the shell keeps it) and certifies it under `identity`,
    /// this node's jurisdiction; again for a known name replaces its key.
    pub fn add_department(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        name: &str,
        key: ed25519_dalek::SigningKey,
    ) -> Result<(), DepartmentError> {
        if !self.departments.contains_key(name)
            && self.departments.len() >= DEPARTMENTS_PER_NODE_MAX
        {
            return Err(DepartmentError::TooMany {
                max: DEPARTMENTS_PER_NODE_MAX,
            });
        }
        let d = DepartmentIdentity::certify(identity, name, key, now)?;
        self.departments.insert(name.to_string(), d);
        Ok(())
    }

    /// This node's departments.
    pub fn departments(&self) -> impl Iterator<Item = &DepartmentIdentity> {
        self.departments.values()
    }

    fn department(&self, name: &str) -> Result<DepartmentIdentity, ShareRejection> {
        self.departments.get(name).cloned().ok_or_else(|| {
            DepartmentError::NotHeld {
                department: name.to_string(),
            }
            .into()
        })
    }

    pub fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }

    /// Replaces the calendar (the official years plus the operator's); cases keep the
    /// deadlines they were given.
    pub fn set_calendar(&mut self, calendar: WorkingCalendar) {
        self.calendar = calendar;
    }

    /// Cases by request id ([`ShareRequest::id`]).
    pub fn cases(&self) -> impl Iterator<Item = (&Hash, &ShareCase)> {
        self.cases.iter()
    }

    pub fn case(&self, request: &Hash) -> Option<&ShareCase> {
        self.cases.get(request)
    }

    /// Cases this node oversees as the parties' lowest common superior, by request id.
    pub fn supervised(&self) -> impl Iterator<Item = (&Hash, &ShareCase)> {
        self.supervised.iter()
    }

    pub fn poll_output(&mut self) -> Option<ShareOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<UnixMs> {
        self.timers
            .next()
            .into_iter()
            .chain(self.rights_resync_at)
            .min()
    }

    /// A case's next timed event: its running deadline not yet reported, or the end of its
    /// term of use.
    fn case_timer(&self, id: &Hash, c: &ShareCase) -> Option<UnixMs> {
        let deadline = c
            .deadline()
            .filter(|(a, d)| !self.overdue_reported.contains(&(*id, *a, *d)))
            .map(|(_, d)| d);
        let expiry = (!c.state.is_final()).then_some(c.request.use_until);
        deadline.into_iter().chain(expiry).min()
    }

    /// Sets a case's (or copy's) next timed event from its current state.
    fn retime(&mut self, key: CaseKey) {
        let (id, supervised) = key;
        let held = if supervised {
            &self.supervised
        } else {
            &self.cases
        };
        let at = match held.get(&id) {
            Some(c) => self.case_timer(&id, c),
            None if !supervised => self.returned_timer(&id),
            None => None,
        };
        self.timers.set_case(key, at);
    }

    /// A department of this node files `request` (checked by the caller against the catalog
    /// entry with [`ShareRequest::problems`]); returns the request's id. `provider_attribute`
    /// looks up this node's own catalog, for a provider department of this very node.
    pub fn file(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: ShareRequest,
        attribute: SharingAttribute,
        provider_attribute: &dyn Fn(&CatalogOrigin, &str) -> Option<SharingAttribute>,
    ) -> Result<Hash, ShareRejection> {
        if request.requester.region != self.region {
            return Err(ShareRejection::NotAParty);
        }
        if self.cases.len() >= SHARE_CASES_MAX {
            return Err(ShareRejection::TooManyCases {
                max: SHARE_CASES_MAX,
            });
        }
        let department = self.department(&request.requester.department)?;
        self.check_rights(&request.requester)?;
        let id = request.id();
        if self.cases.contains_key(&id) {
            return Ok(id);
        }
        let (by, to) = (request.requester.clone(), request.provider.region);
        let kind = ShareActKind::File {
            request: Box::new(request.clone()),
            attribute: attribute.clone(),
        };
        self.put_case(id, ShareCase::new(request, attribute));
        let act = sign_act(identity, Some(&department), now, id, by, to, kind);
        self.deliver(now, identity, act, provider_attribute);
        Ok(id)
    }

    /// A department of this node acts on a case it is a party to.
    /// `department` of this node acts: it must be the request's requester or provider (both
    /// may be departments of this node).
    pub fn act(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: &Hash,
        department: &str,
        act: ShareAct,
    ) -> Result<super::Applied, ShareRejection> {
        if act == ShareAct::Receive {
            // The provider's node receives a filing itself, when it arrives.
            return Err(ShareRejection::ReceivedByTheNode);
        }
        let case = self
            .cases
            .get(request)
            .ok_or(ShareRejection::UnknownRequest)?;
        let by = CatalogOrigin {
            region: self.region,
            department: department.to_string(),
        };
        let party = party_of(case, &by)?;
        let department = self.department(department)?;
        if party == Party::Provider {
            self.check_rights_for(case, &act)?;
        }
        let to = match party {
            Party::Provider => case.request.requester.region,
            Party::Requester => case.request.provider.region,
        };
        let applied = self.apply_to(request, now, party, act.clone(), None)?;
        if applied == super::Applied::Changed {
            let kind = ShareActKind::Act(act);
            let act = sign_act(identity, Some(&department), now, *request, by, to, kind);
            self.deliver(now, identity, act, &no_catalog);
        }
        Ok(applied)
    }

    /// This node's authority coordinates a dispute on `request` (Art. 28): it must be the
    /// parties' lowest common superior — holding the case as a party's node when both are its
    /// departments, else as the supervisory copy. The act is applied here and sent, signed by
    /// the node, to each party's node.
    pub fn coordinate(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: &Hash,
        act: ShareAct,
    ) -> Result<super::Applied, ShareRejection> {
        let (mut case, own) = match (self.cases.get(request), self.supervised.get(request)) {
            (Some(c), _) => (c.clone(), true),
            (None, Some(c)) => (c.clone(), false),
            (None, None) => return Err(ShareRejection::UnknownRequest),
        };
        if case.dispute_authority() != self.region {
            return Err(ShareRejection::NotAParty);
        }
        let applied = case.apply_authority(now, act.clone())?;
        if applied == super::Applied::AlreadyApplied {
            return Ok(applied);
        }
        let parties = [case.request.requester.region, case.request.provider.region];
        if own {
            self.put_case(*request, case);
        } else {
            self.put_supervised(case);
        }
        let by = CatalogOrigin {
            region: self.region,
            department: AUTHORITY_NAME.to_string(),
        };
        let mut sent = BTreeSet::new();
        for to in parties {
            if to != self.region && sent.insert(to) {
                let kind = ShareActKind::Act(act.clone());
                let signed = sign_act(identity, None, now, *request, by.clone(), to, kind);
                self.deliver(now, identity, signed, &no_catalog);
            }
        }
        Ok(applied)
    }

    /// The provider's node renewed the delivery of `request` under `manifest` (published
    /// already): it records the renewal, signed by the node, and tells the requester.
    pub fn delivery_renewed(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: &Hash,
        manifest: Hash,
    ) -> Result<super::Applied, ShareRejection> {
        let case = self
            .cases
            .get(request)
            .ok_or(ShareRejection::UnknownRequest)?;
        let r = &case.request;
        if r.provider.region != self.region {
            return Err(ShareRejection::NotAParty);
        }
        let (by, to) = (r.provider.clone(), r.requester.region);
        let act = ShareAct::RenewDelivery { manifest };
        let applied = self.apply_to(request, now, Party::Provider, act, None)?;
        if applied == super::Applied::Changed {
            let kind = ShareActKind::DeliveryRenewed { manifest };
            let act = sign_act(identity, None, now, *request, by, to, kind);
            self.deliver(now, identity, act, &no_catalog);
        }
        Ok(applied)
    }

    /// The requester's node verified every byte of `manifest`, the delivery of `request`
    /// (batch exchange): it records the delivery, signed by the node, and tells the provider
    /// (and, on the way, the parties' lowest common superior).
    pub fn delivery_verified(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: &Hash,
        manifest: Hash,
    ) -> Result<super::Applied, ShareRejection> {
        let case = self
            .cases
            .get(request)
            .ok_or(ShareRejection::UnknownRequest)?;
        let r = &case.request;
        if r.requester.region != self.region
            || case.delivery.as_ref().and_then(|d| d.manifest) != Some(manifest)
        {
            return Err(ShareRejection::NoDeliveryHere);
        }
        let (by, to) = (r.requester.clone(), r.provider.region);
        let applied = self.apply_to(request, now, Party::Requester, ShareAct::Delivered, None)?;
        if applied == super::Applied::Changed {
            let kind = ShareActKind::DeliveryVerified { manifest };
            let act = sign_act(identity, None, now, *request, by, to, kind);
            self.deliver(now, identity, act, &no_catalog);
        }
        Ok(applied)
    }

    /// Regions this node exchanges a grant's delivery with now: for each batch exchange or
    /// file download granted and not yet delivered, and each service interface open (granted,
    /// or delivered and within its term of use), the other party's region — the provider a
    /// requester fetches from or calls (with the addresses its start named), or the requester
    /// a provider serves. The endpoint admits these connections outside the tree.
    pub fn delivery_peers(
        &self,
        now: UnixMs,
    ) -> impl Iterator<Item = (RegionCode, Option<&DeliveryRoute>)> {
        let me = self.region;
        self.cases.values().filter_map(move |c| {
            let r = &c.request;
            use super::ShareState as S;
            let open = match r.method {
                SharingMethod::ServiceApi => {
                    matches!(c.state, S::Granted | S::Delivered) && now < r.use_until
                }
                _ => matches!(c.state, S::Granted | S::Delivering),
            };
            // A suspended requester receives nothing (Art. 27 ¶2): its connections close.
            if !open || r.requester.region == r.provider.region || self.requester_suspended(c) {
                return None;
            }
            if r.provider.region == me {
                Some((r.requester.region, None))
            } else if r.requester.region == me {
                c.delivery.as_ref().map(|d| (r.provider.region, Some(d)))
            } else {
                None
            }
        })
    }

    /// A message from the neighbouring region `from` (admitted by the endpoint).
    /// `provider_attribute` looks up an entry in this node's own catalog: the attribute of
    /// (department, entry id), if held.
    pub fn handle_message(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        identity: &NodeIdentity,
        from: RegionCode,
        msg: ShareMsg,
        provider_attribute: &dyn Fn(&CatalogOrigin, &str) -> Option<SharingAttribute>,
    ) {
        match msg {
            ShareMsg::Rights(m) => self.handle_rights(now, trust, from, m),
            ShareMsg::Ack { act } => {
                if self.transit.remove(&act).is_some() {
                    self.timers.set_send(act, None);
                    self.out
                        .push_back(ShareOutput::Storage(ShareStorageOp::DropTransit { act }));
                }
            }
            ShareMsg::Act(act) => {
                let id = act.id();
                let request = act.body.request;
                // Held already (a retransmission): acknowledge again, nothing else.
                if self.transit.contains_key(&id) || self.applied_here(&act) {
                    self.send(from, ShareMsg::Ack { act: id });
                    return;
                }
                if let Err(error) = act.verify(trust, now) {
                    // Not acknowledged: a forged or damaged copy must not stop a good one.
                    return self.reject(from, request, error);
                }
                if act.body.to == self.region {
                    let result = self.take(now, identity, &act, provider_attribute);
                    if let Err(error) = result {
                        if self.may_apply_later(&request, &error) {
                            // Out of order: an act before it is still on its way. Not
                            // acknowledged, so the sender retries (backing off); it applies
                            // once the earlier one has.
                            return;
                        }
                        self.reject(from, request, error);
                    }
                    self.send(from, ShareMsg::Ack { act: id });
                } else if self.transit.len() < SHARE_TRANSIT_MAX {
                    self.supervise(&act);
                    self.route(now, act);
                    self.send(from, ShareMsg::Ack { act: id });
                }
                // Else: full; the sender retries.
            }
        }
    }

    /// Whether an act that failed on this node's copy of its case may apply later: the case
    /// is not here yet, or not in the state the act follows, and not final (a final case
    /// takes no act, ever).
    fn may_apply_later(&self, request: &Hash, error: &ShareRejection) -> bool {
        match error {
            ShareRejection::UnknownRequest => true,
            ShareRejection::Case(ShareError::WrongState { .. }) => {
                self.cases.get(request).is_some_and(|c| !c.state.is_final())
            }
            // A dispute's act overtook the one that opened or escalated it.
            ShareRejection::Case(
                ShareError::NoSuchDispute { .. } | ShareError::DisputeStage { .. },
            ) => self.cases.contains_key(request),
            _ => false,
        }
    }

    /// Time passed: retransmit acts in transit that are due; expire cases; report overdue
    /// ones once. Visits only what is due ([`Timers`]).
    pub fn handle_tick(&mut self, now: UnixMs) {
        for id in self.timers.take_due_sends(now) {
            if let Some(t) = self.transit.get_mut(&id) {
                t.attempts = t.attempts.saturating_add(1);
                let factor = 1u64 << t.attempts.min(3);
                let wait = self.retry_ms * factor.min(SHARE_RETRY_BACKOFF_MAX);
                let act = Arc::clone(&t.act);
                self.timers.set_send(id, Some(now.plus_ms(wait)));
                let hop = self.next_hop(act.body.to);
                self.send(hop, ShareMsg::Act(act));
            }
        }
        for key in self.timers.take_due_cases(now) {
            self.tick_case(now, key);
            self.retime(key);
        }
        self.resync_rights(now);
    }

    /// Time passed for one case of this node (or supervisory copy): expiry, and its overdue
    /// deadline reported once.
    fn tick_case(&mut self, now: UnixMs, (id, supervised): CaseKey) {
        if !supervised && self.returned.contains_key(&id) {
            return self.tick_returned(now, &id);
        }
        {
            let held = if supervised {
                &mut self.supervised
            } else {
                &mut self.cases
            };
            let Some(case) = held.get_mut(&id) else {
                return;
            };
            let expired = case.tick(now).then(|| case.clone());
            let overdue = case.overdue(now);
            match expired {
                Some(case) if supervised => self.put_supervised(case),
                Some(case) => self.put_case(id, case),
                None => {}
            }
            if let Some(o) = overdue {
                if self.overdue_reported.insert((id, o.article, o.due)) {
                    self.out.push_back(ShareOutput::Event(ShareEvent::Overdue {
                        request: id,
                        article: o.article,
                        due: o.due,
                    }));
                }
            }
        }
    }

    /// Whether this node's copy of the case already holds `act`.
    fn applied_here(&self, act: &SignedShareAct) -> bool {
        if act.body.to != self.region {
            return false;
        }
        if let Some(held) = self.returned_applied_here(act) {
            return held;
        }
        let Some(case) = self.cases.get(&act.body.request) else {
            return false;
        };
        match &act.body.kind {
            ShareActKind::File { .. } => true,
            ShareActKind::Received { .. } => case.received_at.is_some(),
            kind => kind.case_act().is_some_and(|(a, _)| case.has_applied(&a)),
        }
    }

    /// An act addressed to this node: apply it to the case (creating it for a filing).
    fn take(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        act: &SignedShareAct,
        provider_attribute: &dyn Fn(&CatalogOrigin, &str) -> Option<SharingAttribute>,
    ) -> Result<(), ShareRejection> {
        if let Some(taken) = self.take_returned(act) {
            return taken;
        }
        let b = &act.body;
        match &b.kind {
            ShareActKind::File { request, .. } => {
                if request.id() != b.request || b.by != request.requester {
                    return Err(ShareRejection::MismatchedFiling);
                }
                if request.provider.region != self.region {
                    return Err(ShareRejection::NotAParty);
                }
                if self.cases.len() >= SHARE_CASES_MAX {
                    return Err(ShareRejection::TooManyCases {
                        max: SHARE_CASES_MAX,
                    });
                }
                // The provider's own catalog decides the attribute; an entry it does not hold
                // is refused with that reason.
                let held = provider_attribute(&request.provider, &request.entry_id);
                let attribute = held.clone().unwrap_or(SharingAttribute::Unconditional);
                self.put_case(
                    b.request,
                    ShareCase::new((**request).clone(), attribute.clone()),
                );
                self.receive(now, identity, &b.request, attribute)?;
                if held.is_none() {
                    // The node answers by itself: no department holds the entry.
                    let refusal = not_in_catalog_refusal();
                    self.apply_to(&b.request, now, Party::Provider, refusal, None)?;
                    let (by, to) = (request.provider.clone(), request.requester.region);
                    let kind = ShareActKind::NotInCatalog;
                    let act = sign_act(identity, None, now, b.request, by, to, kind);
                    self.deliver(now, identity, act, &no_catalog);
                }
                Ok(())
            }
            // The coordinating authority's act: from the parties' lowest common superior only.
            ShareActKind::Act(a) if b.kind.is_authority_act() => {
                let case = self
                    .cases
                    .get(&b.request)
                    .ok_or(ShareRejection::UnknownRequest)?;
                if b.by.region != case.dispute_authority() || act.department.is_some() {
                    return Err(ShareRejection::NotAParty);
                }
                let mut case = case.clone();
                if case.apply_authority(b.at, a.clone())? == super::Applied::Changed {
                    self.put_case(b.request, case);
                }
                Ok(())
            }
            // At the time it was done, so both copies agree on every deadline.
            kind => {
                let case = self
                    .cases
                    .get(&b.request)
                    .ok_or(ShareRejection::UnknownRequest)?;
                let party = party_of(case, &b.by)?;
                if kind.node_party().is_some_and(|p| p != party) {
                    return Err(ShareRejection::NotAParty);
                }
                if let ShareActKind::DeliveryVerified { manifest } = kind {
                    if case.delivery.as_ref().and_then(|d| d.manifest) != Some(*manifest) {
                        return Err(ShareRejection::NotThisDelivery);
                    }
                }
                if let Some((act, attribute)) = kind.case_act() {
                    self.apply_to(&b.request, b.at, party, act, attribute)?;
                }
                Ok(())
            }
        }
    }

    /// The provider's node receives a filing: applies `Receive` under the attribute its own
    /// catalog states, and tells the requester both.
    fn receive(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: &Hash,
        attribute: SharingAttribute,
    ) -> Result<(), ShareRejection> {
        self.apply_to(request, now, Party::Provider, ShareAct::Receive, None)?;
        let r = &self.cases[request].request;
        let (by, to) = (r.provider.clone(), r.requester.region);
        let kind = ShareActKind::Received { attribute };
        let act = sign_act(identity, None, now, *request, by, to, kind);
        self.deliver(now, identity, act, &no_catalog);
        Ok(())
    }

    /// Applies `act` by `party` at `at` to this node's copy of the case (first taking the
    /// provider's `attribute`, if given) and persists it if it changed.
    fn apply_to(
        &mut self,
        request: &Hash,
        at: UnixMs,
        party: Party,
        act: ShareAct,
        attribute: Option<SharingAttribute>,
    ) -> Result<super::Applied, ShareRejection> {
        let mut case = self
            .cases
            .get(request)
            .ok_or(ShareRejection::UnknownRequest)?
            .clone();
        if let Some(attribute) = attribute {
            case.attribute = attribute;
        }
        let applied = case.apply(&self.calendar, at, party, act)?;
        if applied == super::Applied::Changed {
            self.put_case(*request, case);
        }
        Ok(applied)
    }

    fn put_case(&mut self, id: Hash, case: ShareCase) {
        let state = case.state;
        self.cases.insert(id, case.clone());
        self.retime((id, false));
        self.out
            .push_back(ShareOutput::Storage(ShareStorageOp::PutCase(Box::new(
                case,
            ))));
        self.out
            .push_back(ShareOutput::Event(ShareEvent::CaseChanged {
                request: id,
                state,
            }));
    }

    /// Takes `act` here if it is addressed to this node (two departments of one node: no hop,
    /// and the one copy of the case is theirs both), else routes it.
    fn deliver(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        act: Arc<SignedShareAct>,
        provider_attribute: &dyn Fn(&CatalogOrigin, &str) -> Option<SharingAttribute>,
    ) {
        if act.body.to != self.region {
            return self.route(now, act);
        }
        let request = act.body.request;
        if let Err(error) = self.take(now, identity, &act, provider_attribute) {
            let me = self.region;
            self.reject(me, request, error);
        }
    }

    fn send(&mut self, to: RegionCode, msg: ShareMsg) {
        self.out.push_back(ShareOutput::Send { to, msg });
    }

    fn reject(&mut self, from: RegionCode, request: Hash, error: ShareRejection) {
        self.out
            .push_back(ShareOutput::Event(ShareEvent::ActRejected {
                from,
                request,
                error,
            }));
    }
}
