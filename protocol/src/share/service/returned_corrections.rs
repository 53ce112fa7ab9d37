//! Correction requests against returned data ([`crate::share::ReturnedCorrection`], Art. 26
//! with Art. 24) in the sharing service: filed by a department of this node and carried to the
//! publisher's, answered there and carried back, each party's copy persisted, its deadline
//! timed and reported overdue once. Same service as [`super::ShareService`]; the acts travel
//! as share acts do ([`super::relay`]).

use super::{ShareEvent, ShareOutput, ShareService, ShareStorageOp, SHARE_CASES_MAX};
use crate::catalog::CatalogOrigin;
use crate::cert::NodeIdentity;
use crate::manifest::Hash;
use crate::share::acts::{sign_act, ShareActKind, SignedShareAct};
use crate::share::{
    Applied, ReturnedCorrection, ReturnedCorrectionAnswer, ReturnedCorrectionRequest,
    ShareRejection,
};
use crate::time::UnixMs;

impl ShareService {
    /// Correction requests against returned data this node is a party to, by id.
    pub fn returned_corrections(&self) -> impl Iterator<Item = (&Hash, &ReturnedCorrection)> {
        self.returned.iter()
    }

    pub fn returned_correction(&self, id: &Hash) -> Option<&ReturnedCorrection> {
        self.returned.get(id)
    }

    /// Restart: hands back what [`ShareStorageOp::PutReturnedCorrection`] persisted.
    pub fn restore_returned(&mut self, corrections: Vec<ReturnedCorrection>) {
        for c in corrections {
            let id = c.request.id();
            self.returned.insert(id, c);
            self.retime((id, false));
        }
    }

    /// A department of this node files `request` (the endpoint filled in the version it
    /// holds); returns its id. Sent to the publisher's node, signed by the department.
    pub fn file_returned_correction(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        request: ReturnedCorrectionRequest,
    ) -> Result<Hash, ShareRejection> {
        if request.requester.region != self.region {
            return Err(ShareRejection::NotAParty);
        }
        let department = self.department(&request.requester.department)?;
        let id = request.id();
        if self.returned.contains_key(&id) {
            return Ok(id);
        }
        self.room_for_one()?;
        let correction = ReturnedCorrection::filed(&self.calendar, request.clone())?;
        let (by, to) = (request.requester.clone(), request.dataset.publisher);
        self.put_returned(id, correction);
        let kind = ShareActKind::FileReturnedCorrection {
            request: Box::new(request),
        };
        let act = sign_act(identity, Some(&department), now, id, by, to, kind);
        self.deliver(now, identity, act, &super::no_catalog);
        Ok(id)
    }

    /// The publisher's department `department` of this node answers correction request `id`:
    /// corrected in version `corrected_in` (checked by the endpoint against what it
    /// published), or not an error for `reason`.
    pub fn answer_returned_correction(
        &mut self,
        now: UnixMs,
        identity: &NodeIdentity,
        id: &Hash,
        department: &str,
        answer: ReturnedCorrectionAnswer,
    ) -> Result<Applied, ShareRejection> {
        let c = self
            .returned
            .get(id)
            .ok_or(ShareRejection::UnknownRequest)?;
        let by = CatalogOrigin {
            region: self.region,
            department: department.to_string(),
        };
        if by != c.request.publisher() {
            return Err(ShareRejection::NotAParty);
        }
        let department = self.department(department)?;
        let to = c.request.requester.region;
        let kind = ShareActKind::AnswerReturnedCorrection {
            corrected_in: answer.corrected_in,
            reason: answer.reason.clone(),
            approved_by: answer.approved_by.clone(),
        };
        let applied = self.answer_here(id, answer)?;
        if applied == Applied::Changed {
            let act = sign_act(identity, Some(&department), now, *id, by, to, kind);
            self.deliver(now, identity, act, &super::no_catalog);
        }
        Ok(applied)
    }

    /// Whether this node's copy holds `act` already (a retransmission).
    pub(super) fn returned_applied_here(&self, act: &SignedShareAct) -> Option<bool> {
        let held = self.returned.get(&act.body.request);
        match &act.body.kind {
            ShareActKind::FileReturnedCorrection { .. } => Some(held.is_some()),
            ShareActKind::AnswerReturnedCorrection { .. } => {
                Some(held.is_some_and(|c| c.answer.is_some()))
            }
            _ => None,
        }
    }

    /// An act on a correction request against returned data addressed to this node: the
    /// filing, taken by the publisher's node (checked again: every input is hostile), or the
    /// answer, taken by the requester's. `None`: another kind of act.
    pub(super) fn take_returned(
        &mut self,
        act: &SignedShareAct,
    ) -> Option<Result<(), ShareRejection>> {
        let b = &act.body;
        Some(match &b.kind {
            ShareActKind::FileReturnedCorrection { request } => {
                self.take_returned_filing(b.request, &b.by, request)
            }
            ShareActKind::AnswerReturnedCorrection {
                corrected_in,
                reason,
                approved_by,
            } => match self.returned.get(&b.request) {
                None => Err(ShareRejection::UnknownRequest),
                Some(c) if c.request.publisher() != b.by => Err(ShareRejection::NotAParty),
                Some(_) => {
                    let answer = ReturnedCorrectionAnswer {
                        at: b.at,
                        corrected_in: *corrected_in,
                        reason: reason.clone(),
                        approved_by: approved_by.clone(),
                    };
                    self.answer_here(&b.request, answer).map(|_| ())
                }
            },
            _ => return None,
        })
    }

    fn take_returned_filing(
        &mut self,
        id: Hash,
        by: &CatalogOrigin,
        request: &ReturnedCorrectionRequest,
    ) -> Result<(), ShareRejection> {
        if request.id() != id || *by != request.requester {
            return Err(ShareRejection::MismatchedFiling);
        }
        if request.dataset.publisher != self.region {
            return Err(ShareRejection::NotAParty);
        }
        self.room_for_one()?;
        let correction = ReturnedCorrection::filed(&self.calendar, request.clone())?;
        self.put_returned(id, correction);
        Ok(())
    }

    fn answer_here(
        &mut self,
        id: &Hash,
        answer: ReturnedCorrectionAnswer,
    ) -> Result<Applied, ShareRejection> {
        let mut c = self
            .returned
            .get(id)
            .ok_or(ShareRejection::UnknownRequest)?
            .clone();
        let applied = c.answer(answer)?;
        if applied == Applied::Changed {
            self.put_returned(*id, c);
        }
        Ok(applied)
    }

    /// Cases and correction requests share one bound: what a node keeps of both.
    fn room_for_one(&self) -> Result<(), ShareRejection> {
        if self.cases.len() + self.returned.len() >= SHARE_CASES_MAX {
            return Err(ShareRejection::TooManyCases {
                max: SHARE_CASES_MAX,
            });
        }
        Ok(())
    }

    fn put_returned(&mut self, id: Hash, c: ReturnedCorrection) {
        let answered = c.answer.is_some();
        self.returned.insert(id, c.clone());
        self.retime((id, false));
        self.out
            .push_back(ShareOutput::Storage(ShareStorageOp::PutReturnedCorrection(
                Box::new(c),
            )));
        self.out
            .push_back(ShareOutput::Event(ShareEvent::ReturnedCorrectionChanged {
                id,
                answered,
            }));
    }

    /// The next timed event of correction request `id`: its deadline, unless reported.
    pub(super) fn returned_timer(&self, id: &Hash) -> Option<UnixMs> {
        let c = self.returned.get(id)?;
        c.deadline()
            .filter(|due| !self.overdue_reported.contains(&(*id, 26, *due)))
    }

    /// Time passed for correction request `id`: overdue reported once (at both parties).
    pub(super) fn tick_returned(&mut self, now: UnixMs, id: &Hash) {
        let Some(o) = self.returned.get(id).and_then(|c| c.overdue(now)) else {
            return;
        };
        if self.overdue_reported.insert((*id, o.article, o.due)) {
            self.out.push_back(ShareOutput::Event(ShareEvent::Overdue {
                request: *id,
                article: o.article,
                due: o.due,
            }));
        }
    }
}
