//! Departments' sharing rights in force on this node ([`crate::share::rights`], Art. 27 ¶2):
//! this node's authority suspends or reinstates a department within its jurisdiction, acts
//! heard from peers are verified, persisted and flooded on, and the service refuses what a
//! suspended requester may not do. Same service as [`super::ShareService`].

use std::sync::Arc;

use backflow_topology::RegionCode;

use super::{ShareEvent, ShareOutput, ShareService, ShareStorageOp};
use crate::catalog::CatalogOrigin;
use crate::cert::{NodeIdentity, TrustStore};
use crate::share::rights::{
    RightsActBody, RightsDecision, RightsError, RightsMsg, SharingRights, SignedRightsAct,
    RIGHTS_RESYNC_MS,
};
use crate::share::{
    ShareAct, ShareCase, ShareMsg, ShareRejection, UsageRefusal, RECTIFY_WORKING_DAYS_MAX,
};
use crate::time::UnixMs;

/// What an authority decides, before it is numbered, dated and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RightsOrder {
    /// Suspend, to be rectified within `rectify_working_days` (限期整改).
    Suspend {
        reason: String,
        rectify_working_days: u32,
        approved_by: String,
    },
    Reinstate {
        note: String,
        approved_by: String,
    },
    /// Terminate the sharing, after the rectification period ran out (Art. 27 ¶2).
    Terminate {
        reason: String,
        approved_by: String,
    },
}

impl ShareService {
    /// Departments' sharing rights as this node knows them.
    pub fn rights(&self) -> &SharingRights {
        &self.rights
    }

    /// Restart: the acts persisted by [`ShareStorageOp::PutRights`] (verified before they
    /// were).
    pub fn restore_rights(&mut self, acts: Vec<SignedRightsAct>) {
        for a in acts {
            // Bounded by what was stored, which was bounded when taken.
            let _ = self.rights.take(Arc::new(a));
        }
        if self.rights.acts().next().is_some() {
            self.rights_resync_at = Some(UnixMs::ZERO);
        }
    }

    /// Every [`RIGHTS_RESYNC_MS`], every act held to every tree neighbour again.
    pub(super) fn resync_rights(&mut self, now: UnixMs) {
        if self.rights_resync_at.is_none_or(|at| now < at) {
            return;
        }
        self.rights_resync_at = Some(now.plus_ms(RIGHTS_RESYNC_MS));
        let to: Vec<RegionCode> = self.reachable.iter().copied().collect();
        for region in to {
            self.send_rights_to(region);
        }
    }

    /// This node's authority (政务数据共享主管部门) decides on the sharing rights of
    /// `department`, a department of this region or one below (Art. 27 ¶2): the act is
    /// numbered, signed, in force here at once and flooded to every node.
    pub fn order_rights(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        identity: &NodeIdentity,
        department: CatalogOrigin,
        order: RightsOrder,
    ) -> Result<Arc<SignedRightsAct>, RightsError> {
        let me = identity.region;
        let held = self.rights.latest(&department, me);
        let suspended = held.is_some_and(|a| a.suspends());
        let (region, name) = (department.region, department.department.clone());
        let decision = match order {
            RightsOrder::Suspend {
                reason,
                rectify_working_days,
                approved_by,
            } => {
                if suspended {
                    return Err(RightsError::AlreadySuspended {
                        department: name,
                        region,
                    });
                }
                if !(1..=RECTIFY_WORKING_DAYS_MAX).contains(&rectify_working_days) {
                    return Err(crate::share::ShareError::RectifyLength {
                        days: rectify_working_days,
                        max: RECTIFY_WORKING_DAYS_MAX,
                    }
                    .into());
                }
                let rectify_by = self
                    .calendar
                    .deadline(now, rectify_working_days)
                    .map_err(crate::share::ShareError::from)?;
                RightsDecision::Suspend {
                    reason,
                    rectify_by,
                    approved_by,
                }
            }
            RightsOrder::Reinstate { note, approved_by } => {
                if !suspended {
                    return Err(RightsError::NotSuspended {
                        department: name,
                        region,
                    });
                }
                RightsDecision::Reinstate { note, approved_by }
            }
            RightsOrder::Terminate {
                reason,
                approved_by,
            } => {
                let Some(RightsDecision::Suspend { rectify_by, .. }) =
                    held.map(|a| &a.body.decision)
                else {
                    return Err(RightsError::NotSuspended {
                        department: name,
                        region,
                    });
                };
                if now < *rectify_by {
                    return Err(RightsError::RectificationRuns {
                        until: rectify_by.0,
                    });
                }
                RightsDecision::Terminate {
                    reason,
                    approved_by,
                }
            }
        };
        let body = RightsActBody {
            department,
            issuer: me,
            ordinal: held.map_or(1, |a| a.body.ordinal + 1),
            at: now,
            decision,
        };
        let act = Arc::new(SignedRightsAct::sign(identity, body));
        // Checked as every receiver will check it, before anything is kept or sent.
        act.verify(trust, now)?;
        self.learn_rights(Arc::clone(&act), None)?;
        Ok(act)
    }

    /// An act on sharing rights from `from` (admitted on the tree): verified, taken if new,
    /// persisted and passed on. A rejected one is reported.
    pub(super) fn handle_rights(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        msg: RightsMsg,
    ) {
        for act in msg.acts {
            // Only what is newer than the act held is checked at all (a resync resends all).
            let held = self.rights.latest(&act.body.department, act.body.issuer);
            if held.is_some_and(|h| h.body.ordinal >= act.body.ordinal) {
                continue;
            }
            let result = act
                .verify(trust, now)
                .and_then(|()| self.learn_rights(act.clone(), Some(from)));
            if let Err(error) = result {
                self.out
                    .push_back(ShareOutput::Event(ShareEvent::RightsRejected {
                        from,
                        error,
                    }));
            }
        }
    }

    /// Takes a verified act; if new, persists it and sends it to every tree neighbour but
    /// `from`, and reports it.
    fn learn_rights(
        &mut self,
        act: Arc<SignedRightsAct>,
        from: Option<RegionCode>,
    ) -> Result<(), RightsError> {
        if !self.rights.take(Arc::clone(&act))? {
            return Ok(());
        }
        if self.rights_resync_at.is_none() {
            self.rights_resync_at = Some(act.body.at.plus_ms(RIGHTS_RESYNC_MS));
        }
        self.out
            .push_back(ShareOutput::Storage(ShareStorageOp::PutRights(Arc::clone(
                &act,
            ))));
        self.out
            .push_back(ShareOutput::Event(ShareEvent::RightsChanged {
                department: act.body.department.clone(),
                issuer: act.body.issuer,
                suspended: act.suspends(),
                from,
            }));
        let to: Vec<RegionCode> = self
            .reachable
            .iter()
            .copied()
            .filter(|r| Some(*r) != from)
            .collect();
        for region in to {
            let acts = vec![Arc::clone(&act)];
            self.send(region, ShareMsg::Rights(RightsMsg { acts }));
        }
        Ok(())
    }

    /// Every act held, to a tree neighbour just admitted (what it may have missed).
    pub(super) fn send_rights_to(&mut self, region: RegionCode) {
        for msg in self.rights.messages() {
            self.send(region, ShareMsg::Rights(msg));
        }
    }

    /// Refuses what `requester` may not receive while its rights are suspended.
    pub fn check_rights(&self, requester: &CatalogOrigin) -> Result<(), ShareRejection> {
        match self.rights.suspension(requester) {
            None => Ok(()),
            Some(s) => Err(ShareRejection::RightsSuspended {
                department: requester.department.chars().take(64).collect(),
                region: requester.region,
                by: s.body.issuer,
            }),
        }
    }

    /// Whether `case`'s requester may receive what a provider's act gives it: a grant, a
    /// delivery, a corrected version, a widening of what it holds.
    pub(super) fn check_rights_for(
        &self,
        case: &ShareCase,
        act: &ShareAct,
    ) -> Result<(), ShareRejection> {
        let gives = matches!(
            act,
            ShareAct::Grant { .. }
                | ShareAct::StartDelivery { .. }
                | ShareAct::DeliverCorrection { .. }
                | ShareAct::ConsentPassOn { .. }
        );
        if gives {
            self.check_rights(&case.request.requester)?;
            if let Some(at) = self.ended_by_authority(case) {
                return Err(ShareRejection::SharingTerminated {
                    department: case.request.requester.department.chars().take(64).collect(),
                    region: case.request.requester.region,
                    at,
                });
            }
        }
        Ok(())
    }

    /// When an authority terminated the sharing of `case`'s requester, if the case was
    /// requested by then (its grant has ended, Art. 27 ¶2).
    pub fn ended_by_authority(&self, case: &ShareCase) -> Option<UnixMs> {
        self.rights
            .terminated_at(&case.request.requester)
            .filter(|at| case.request.filed_at <= *at)
    }

    /// Whether `case`'s granted data may be served to its requester's users at `now`
    /// (export, service calls): the grant usable ([`ShareCase::usable`], Arts. 25, 27) and
    /// the requester's sharing rights not suspended (Art. 27 ¶2).
    pub fn usable(&self, case: &ShareCase, now: UnixMs) -> Result<(), UsageRefusal> {
        case.usable(now)?;
        if let Some(at) = self.ended_by_authority(case) {
            return Err(UsageRefusal::SharingTerminated {
                request: case
                    .request
                    .id()
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                at: at.0,
            });
        }
        match self.rights.suspension(&case.request.requester) {
            None => Ok(()),
            Some(s) => Err(UsageRefusal::RightsSuspended {
                department: case.request.requester.department.chars().take(64).collect(),
                region: case.request.requester.region,
                by: s.body.issuer,
            }),
        }
    }

    /// Whether `case`'s requester receives nothing now: its rights are suspended here, or
    /// an authority terminated the sharing the case belongs to.
    pub fn requester_suspended(&self, case: &ShareCase) -> bool {
        self.rights.suspension(&case.request.requester).is_some()
            || self.ended_by_authority(case).is_some()
    }
}
