//! The supervisory copy (Art. 28 oversight): the parties' lowest common superior keeps a copy
//! of each cross-region case from the acts it forwards, applying each at its signed time as
//! the parties' copies do, holding (boundedly) acts that overtook an earlier one. It never
//! acts on it. Same service as [`super::ShareService`].

use std::sync::Arc;

use super::{ShareOutput, ShareService, ShareStorageOp, SHARE_CASES_MAX};
use crate::share::acts::party_of;
use crate::share::{Applied, ShareActKind, ShareCase, ShareError, SignedShareAct};

/// Acts held for one supervisory copy because an earlier act has not reached it yet.
const SUPERVISE_HELD_PER_CASE_MAX: usize = 16;

impl ShareService {
    /// An act this node forwards between two other regions: if it is their lowest common
    /// superior, its supervisory copy of the case follows the act (at its signed time, as
    /// the parties' copies do). Errors are the parties' to report; the copy just does not move.
    pub(super) fn supervise(&mut self, act: &Arc<SignedShareAct>) {
        let b = &act.body;
        let (a, z) = (b.by.region, b.to);
        if a.lowest_common_ancestor(z) != self.region || a == self.region || z == self.region {
            return;
        }
        if !self.supervise_one(act) {
            // Perhaps out of order: held until the copy moves (bounded; a copy that is final
            // takes nothing more).
            let final_copy = self
                .supervised
                .get(&b.request)
                .is_some_and(|c| c.state.is_final());
            let held = self.supervise_held.get(&b.request);
            let room = held.is_none_or(|h| h.len() < SUPERVISE_HELD_PER_CASE_MAX);
            let known = held.is_some_and(|h| h.iter().any(|h| h.id() == act.id()));
            if !final_copy && room && !known {
                self.supervise_held
                    .entry(b.request)
                    .or_default()
                    .push(Arc::clone(act));
            }
            return;
        }
        // The copy moved: acts held for it may apply now, each possibly enabling the next.
        while let Some(held) = self.supervise_held.remove(&b.request) {
            let (applied, rest): (Vec<_>, Vec<_>) =
                held.into_iter().partition(|h| self.supervise_one(h));
            let done = self
                .supervised
                .get(&b.request)
                .is_none_or(|c| c.state.is_final());
            if !rest.is_empty() && !done {
                self.supervise_held.insert(b.request, rest);
            }
            if applied.is_empty() {
                break;
            }
        }
    }

    /// Applies one act to the supervisory copy; whether the copy took it (a filing creates
    /// the copy). Already-applied acts count as taken.
    fn supervise_one(&mut self, act: &SignedShareAct) -> bool {
        let b = &act.body;
        let case = match &b.kind {
            ShareActKind::File { request, attribute } => {
                // (A mismatched or excess filing never applies: counted as taken, not held.)
                if request.id() != b.request
                    || self.supervised.contains_key(&b.request)
                    || self.supervised.len() >= SHARE_CASES_MAX
                {
                    return true;
                }
                ShareCase::new((**request).clone(), attribute.clone())
            }
            kind => {
                // The filing has not come through here yet.
                let Some(mut case) = self.supervised.get(&b.request).cloned() else {
                    return false;
                };
                let (Ok(party), Some((act, attribute))) = (party_of(&case, &b.by), kind.case_act())
                else {
                    return true;
                };
                if let Some(attribute) = attribute {
                    case.attribute = attribute;
                }
                match case.apply(&self.calendar, b.at, party, act) {
                    Ok(Applied::Changed) => case,
                    Ok(Applied::AlreadyApplied) => return true,
                    // An act before it is still on its way.
                    Err(ShareError::WrongState { .. }) => return false,
                    Err(_) => return true,
                }
            }
        };
        self.put_supervised(case);
        true
    }

    pub(super) fn put_supervised(&mut self, case: ShareCase) {
        let id = case.request.id();
        self.supervised.insert(id, case.clone());
        self.retime((id, true));
        self.out
            .push_back(ShareOutput::Storage(ShareStorageOp::PutSupervised(
                Box::new(case),
            )));
    }
}
