//! After a grant: corrections (Art. 26), suspension, termination and disposal (Art. 27), and
//! disputes (Art. 28) — the transitions of the acts on a [`ShareCase`] once the request was
//! answered: a correction request (校核申请) answered within 10 working days; suspension for
//! misuse, rectification, reinstatement, termination (with its negotiation and filing) and
//! disposal of the data; disputes negotiated between the parties or coordinated by their
//! lowest common superior's authority. The states, their owners and deadlines, and the
//! records these acts keep are in [`super::case`].

use backflow_topology::RegionCode;

use super::case::{
    act_name, check_approval, check_text, Acting, Applied, ShareAct, ShareCase, ShareError,
    ShareState, Suspension, RECTIFY_WORKING_DAYS_MAX, SUSPENSIONS_MAX,
};
use super::records::{
    Correction, CorrectionAnswer, CorrectionItem, Dispute, DisputeStage, Ending, Party,
    CORRECTIONS_MAX, CORRECTION_ITEMS_MAX, CORRECTION_WORKING_DAYS, DISPUTES_MAX,
};
use crate::calendar::WorkingCalendar;
use crate::manifest::Hash;
use crate::time::UnixMs;

impl ShareCase {
    /// The correction request awaiting the provider's answer, if any.
    pub fn open_correction(&self) -> Option<&Correction> {
        self.corrections.last().filter(|c| c.answer.is_none())
    }

    /// The corrected version delivered for correction request `ordinal` (a batch exchange's
    /// or file download's manifest), if one was.
    pub fn corrected_delivery(&self, ordinal: u32) -> Option<Hash> {
        self.acts.iter().find_map(|(_, a)| match a {
            ShareAct::DeliverCorrection {
                ordinal: o,
                manifest,
            } if *o == ordinal => Some(*manifest),
            _ => None,
        })
    }

    /// The authority that coordinates this case's disputes (Art. 28): the parties' lowest
    /// common superior — their own jurisdiction's when both are of one.
    pub fn dispute_authority(&self) -> RegionCode {
        let (a, b) = (self.request.requester.region, self.request.provider.region);
        a.lowest_common_ancestor(b)
    }

    /// The open dispute, if any.
    pub fn open_dispute(&self) -> Option<&Dispute> {
        self.disputes.last().filter(|d| d.stage.is_open())
    }

    /// Applies the coordinating authority's act ([`ShareAct::Coordinate`]); idempotent like
    /// [`Self::apply`].
    pub fn apply_authority(&mut self, now: UnixMs, act: ShareAct) -> Result<Applied, ShareError> {
        if self.has_applied(&act) {
            return Ok(Applied::AlreadyApplied);
        }
        let ShareAct::Coordinate {
            ordinal,
            outcome,
            refer,
        } = &act
        else {
            return Err(ShareError::ForTheAuthority {
                act: act_name(&act),
            });
        };
        let Some(d) = self.disputes.last_mut().filter(|d| d.ordinal == *ordinal) else {
            return Err(ShareError::NoSuchDispute { ordinal: *ordinal });
        };
        if !matches!(d.stage, DisputeStage::Coordinating { .. }) {
            return Err(ShareError::DisputeStage {
                act: act_name(&act),
            });
        }
        if outcome.trim().is_empty() {
            return Err(ShareError::WithoutReason {
                act: act_name(&act),
            });
        }
        check_text("coordination outcome", outcome)?;
        d.stage = if *refer {
            DisputeStage::Referred {
                at: now,
                outcome: outcome.clone(),
            }
        } else {
            DisputeStage::Settled {
                at: now,
                coordinated: true,
                outcome: outcome.clone(),
            }
        };
        self.acts.push((now, act));
        Ok(Applied::Changed)
    }

    /// The transitions of the acts above (called by [`ShareCase::apply`] through its match).
    pub(super) fn govern(
        &mut self,
        calendar: &WorkingCalendar,
        now: UnixMs,
        by: Party,
        act: &ShareAct,
    ) -> Result<(), ShareError> {
        use ShareState as S;
        let acting = Acting::of(self.state, by, act);
        let (name, state) = (acting.name, acting.state);
        let expect = |party: Party| acting.expect(party);
        let wrong = || acting.wrong();
        match act {
            ShareAct::RequestCorrection { ordinal, items } => {
                expect(Party::Requester)?;
                // Against data it received: delivered (a batch exchange's or a service's).
                if state != S::Delivered {
                    return Err(wrong());
                }
                if self.open_correction().is_some() {
                    return Err(ShareError::CorrectionOpen);
                }
                let next = self.corrections.len() as u32 + 1;
                next_ordinal(next, CORRECTIONS_MAX, "correction requests", *ordinal, name)?;
                check_correction_items(items, name)?;
                self.corrections.push(Correction {
                    ordinal: *ordinal,
                    at: now,
                    items: items.clone(),
                    due: calendar.deadline(now, CORRECTION_WORKING_DAYS)?,
                    answer: None,
                });
            }
            ShareAct::DeliverCorrection { ordinal, manifest } => {
                expect(Party::Provider)?;
                if self.open_correction().map(|c| c.ordinal) != Some(*ordinal) {
                    return Err(ShareError::NoSuchCorrection { ordinal: *ordinal });
                }
                // Once per request: what the answer vouches for is the version delivered.
                if self.corrected_delivery(*ordinal).is_some() {
                    return Err(ShareError::CorrectionDelivered { ordinal: *ordinal });
                }
                // A batch exchange or file download that was delivered: its data is versioned.
                let route = self.delivery.as_mut().filter(|r| r.manifest.is_some());
                let Some(route) = route.filter(|_| state == S::Delivered) else {
                    return Err(wrong());
                };
                if route.manifest == Some(*manifest) {
                    return Err(ShareError::CorrectionUnchanged);
                }
                route.manifest = Some(*manifest);
                // No delivery deadline runs: the correction's own does (Art. 26).
                self.delivery_due = None;
                self.state = S::Delivering;
            }
            ShareAct::AnswerCorrection {
                ordinal,
                corrected,
                reason,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if self.open_correction().map(|c| c.ordinal) != Some(*ordinal) {
                    return Err(ShareError::NoSuchCorrection { ordinal: *ordinal });
                }
                // Corrected means the corrected data was sent (Art. 26: 核实、更正并反馈): a
                // batch exchange's new version first (a service interface reloads in place).
                let versioned = self.delivery.as_ref().is_some_and(|r| r.manifest.is_some());
                if *corrected && versioned && self.corrected_delivery(*ordinal).is_none() {
                    return Err(ShareError::CorrectedWithoutData { ordinal: *ordinal });
                }
                // Not an error: say why (the requester relies on the data as it is).
                if !corrected && reason.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("correction answer", reason)?;
                check_approval(approved_by)?;
                if let Some(c) = self.corrections.last_mut() {
                    c.answer = Some(CorrectionAnswer {
                        at: now,
                        corrected: *corrected,
                        reason: reason.clone(),
                        approved_by: approved_by.clone(),
                    });
                }
            }
            ShareAct::Suspend {
                ordinal,
                reason,
                rectify_working_days,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if !state.in_force() {
                    return Err(wrong());
                }
                if self.suspensions >= SUSPENSIONS_MAX {
                    return Err(ShareError::SuspendedTooOften {
                        max: SUSPENSIONS_MAX,
                    });
                }
                if *ordinal != self.suspensions + 1 {
                    return Err(ShareError::WrongOrdinal {
                        act: name,
                        expected: self.suspensions + 1,
                    });
                }
                if reason.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("suspension reason", reason)?;
                check_approval(approved_by)?;
                if !(1..=RECTIFY_WORKING_DAYS_MAX).contains(rectify_working_days) {
                    return Err(ShareError::RectifyLength {
                        days: *rectify_working_days,
                        max: RECTIFY_WORKING_DAYS_MAX,
                    });
                }
                self.suspension = Some(Suspension {
                    at: now,
                    reason: reason.clone(),
                    approved_by: approved_by.clone(),
                    rectify_by: calendar.deadline(now, *rectify_working_days)?,
                    resume: state,
                    rectified: None,
                });
                self.suspensions += 1;
                self.state = S::Suspended;
            }
            ShareAct::Rectify { ordinal, report } => {
                expect(Party::Requester)?;
                if state != S::Suspended || *ordinal != self.suspensions {
                    return Err(wrong());
                }
                if report.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("rectification report", report)?;
                if let Some(s) = self.suspension.as_mut() {
                    s.rectified = Some((now, report.clone()));
                }
            }
            ShareAct::Reinstate {
                ordinal,
                note,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if state != S::Suspended || *ordinal != self.suspensions {
                    return Err(wrong());
                }
                check_text("reinstatement note", note)?;
                check_approval(approved_by)?;
                self.state = self.suspension.as_ref().ok_or_else(wrong)?.resume;
            }
            ShareAct::Terminate {
                reason,
                negotiation,
                filing,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if !(state.in_force() || state == S::Suspended) {
                    return Err(wrong());
                }
                if reason.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("termination reason", reason)?;
                check_text("negotiation record", negotiation)?;
                check_text("filing record", filing)?;
                check_approval(approved_by)?;
                // Art. 27 ¶2: a requester that did not rectify in time may be cut off; any other
                // end of a running service needs ¶3's negotiation and filing.
                let unrectified = state == S::Suspended
                    && self
                        .suspension
                        .as_ref()
                        .is_some_and(|s| s.rectified.is_none() && now >= s.rectify_by);
                let recorded = |t: &str| (!t.trim().is_empty()).then(|| t.to_string());
                let (negotiation, filing) = (recorded(negotiation), recorded(filing));
                if !unrectified && (negotiation.is_none() || filing.is_none()) {
                    return Err(ShareError::TerminationWithoutFiling);
                }
                self.delivery_due = None;
                self.ending = Some(Ending::Terminated {
                    at: now,
                    reason: reason.clone(),
                    negotiation,
                    filing,
                    approved_by: approved_by.clone(),
                });
                self.state = S::Terminated;
            }
            ShareAct::OpenDispute {
                ordinal,
                subject,
                claim,
            } => {
                if self.open_dispute().is_some() {
                    return Err(ShareError::DisputeOpen);
                }
                let next = self.disputes.len() as u32 + 1;
                next_ordinal(next, DISPUTES_MAX, "disputes", *ordinal, name)?;
                if subject.trim().is_empty() || claim.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("dispute subject", subject)?;
                check_text("dispute claim", claim)?;
                let same = self.request.requester.region == self.request.provider.region;
                let stage = if same {
                    DisputeStage::Negotiating
                } else {
                    DisputeStage::Coordinating {
                        authority: self.dispute_authority(),
                        since: now,
                    }
                };
                self.disputes.push(Dispute {
                    ordinal: *ordinal,
                    opened_by: by,
                    opened_at: now,
                    subject: subject.clone(),
                    claim: claim.clone(),
                    stage,
                });
            }
            ShareAct::EscalateDispute { ordinal } => {
                let authority = self.dispute_authority();
                let d = self
                    .disputes
                    .last_mut()
                    .filter(|d| d.ordinal == *ordinal)
                    .ok_or(ShareError::NoSuchDispute { ordinal: *ordinal })?;
                if d.stage != DisputeStage::Negotiating {
                    return Err(ShareError::DisputeStage { act: name });
                }
                d.stage = DisputeStage::Coordinating {
                    authority,
                    since: now,
                };
            }
            ShareAct::SettleDispute { ordinal, outcome } => {
                let d = self
                    .disputes
                    .last_mut()
                    .filter(|d| d.ordinal == *ordinal)
                    .ok_or(ShareError::NoSuchDispute { ordinal: *ordinal })?;
                expect(d.opened_by)?;
                if !d.stage.is_open() {
                    return Err(ShareError::DisputeStage { act: name });
                }
                if outcome.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("settlement", outcome)?;
                d.stage = DisputeStage::Settled {
                    at: now,
                    coordinated: false,
                    outcome: outcome.clone(),
                };
            }
            ShareAct::Coordinate { .. } => {
                return Err(ShareError::ForTheAuthority { act: name });
            }
            ShareAct::Dispose { method, record } => {
                expect(Party::Requester)?;
                if !matches!(state, S::Delivered | S::Terminated) {
                    return Err(wrong());
                }
                if record.trim().is_empty() {
                    return Err(ShareError::WithoutReason { act: name });
                }
                check_text("disposal record", record)?;
                self.ending = Some(Ending::Disposed {
                    at: now,
                    method: *method,
                    record: record.clone(),
                });
                self.state = S::Disposed;
            }
            // `ShareCase::transition` passes only the acts above.
            _ => return Err(wrong()),
        }
        Ok(())
    }
}

/// A numbered record's next number `next` (at most `max` of them): the act must carry it.
/// The records a correction request names (of a grant's data or of returned data): 1 to
/// [`CORRECTION_ITEMS_MAX`], each with its key and what is wrong.
pub(super) fn check_correction_items(
    items: &[CorrectionItem],
    act: &'static str,
) -> Result<(), ShareError> {
    if items.is_empty() || items.len() > CORRECTION_ITEMS_MAX {
        return Err(ShareError::TooLarge {
            what: "records named in a correction request (1 to the limit)",
            len: items.len(),
            max: CORRECTION_ITEMS_MAX,
        });
    }
    for i in items {
        if i.key.trim().is_empty() || i.problem.trim().is_empty() {
            return Err(ShareError::WithoutReason { act });
        }
        check_text("correction key", &i.key)?;
        check_text("correction field", &i.field)?;
        check_text("correction problem", &i.problem)?;
    }
    Ok(())
}

fn next_ordinal(
    next: u32,
    max: u32,
    what: &'static str,
    ordinal: u32,
    act: &'static str,
) -> Result<(), ShareError> {
    if next > max {
        return Err(ShareError::TooLarge {
            what,
            len: next as usize,
            max: max as usize,
        });
    }
    if ordinal != next {
        return Err(ShareError::WrongOrdinal {
            act,
            expected: next,
        });
    }
    Ok(())
}
