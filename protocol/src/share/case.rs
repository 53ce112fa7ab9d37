//! One share request's lifecycle ([`ShareCase`]): explicit states, the acts that move it, and
//! its statutory deadlines on the working-day calendar.
//!
//! Every state has an exit and either a deadline or an owner who must act (EDC's contract
//! negotiations that hang forever are the failure this avoids):
//!
//! | state | owner | deadline | exits |
//! |---|---|---|---|
//! | submitted | provider's node (to receive it) | — | received, withdrawn, expired |
//! | under review | provider | answer (Art. 21: 1 or 10 working days from receipt) | incomplete, extended, granted, refused, withdrawn, expired |
//! | incomplete | requester (to supplement) | — | under review (supplemented), withdrawn, expired |
//! | extended | provider | answer + at most 10 working days | granted, refused, withdrawn, expired |
//! | granted / delivering | provider | delivery (Art. 22: 20 working days from the grant) | delivering, delivered, expired |
//! | refused, delivered, withdrawn, expired | — | — | final (a granted case goes on to the acts below) |
//! | suspended (Art. 27 ¶2) | requester (to rectify), then provider | rectification (限期整改) | reinstated (to where it was), terminated, expired |
//! | delivered, a correction request open (Art. 26) | provider | its answer (10 working days from the request) | answered (corrected, or not an error with reasons) |
//! | terminated, disposed (Art. 27) | — | — | final |
//!
//! **After a grant (Art. 27).** The provider suspends the requester's sharing under a grant for
//! misuse (暂停共享权限), with a rectification period in working days; while suspended nothing
//! is delivered, no service interface call is answered and the requester's node exports none
//! of the data. The provider reinstates it, or terminates the sharing: a termination needs its
//! reason and — unless the requester failed to rectify in time (拒不整改) — the recorded
//! negotiation with the requester and the filing with the same-level authority (协商，并报同级
//! 政务数据共享主管部门备案, ¶3). When the purpose is met or the sharing ended, the requester
//! disposes of the data as the provider required (妥善处置, ¶1): its node deletes the content
//! and the case keeps the record.
//!
//! "Expired": the request's own term of use (使用时限) passed before the data was delivered; the
//! request is moot. A deadline passing does not change the state — the provider still owes
//! the answer or the data — it makes the case overdue ([`ShareCase::overdue`]), visible to both
//! parties and their authorities.
//!
//! **After supplementing** (the rule Art. 21 leaves to us, documented here): the answer period
//! starts again in full from the day after the completed material is received — the provider's
//! review restarts on complete material, as a fresh receipt would — plus any extension already
//! granted. The one-shot notice is spent: a second notice is impossible.
//!
//! **Usage conditions (Art. 25).** The grant states the scope, purpose and term the request
//! asked for (使用范围, 使用场景, 使用时限) and carries "no third party" (不得擅自将获得的政务数据
//! 提供给第三方) with it; the provider widens it only by consenting, in a signed act of its own,
//! to passing the data on to a named recipient ([`ShareAct::ConsentPassOn`],
//! [`super::conditions`]). A consent changes no state.
//!
//! Acts are idempotent: an act already applied (e.g. retransmitted to the other party's node)
//! is acknowledged and changes nothing.

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use super::records::{
    Correction, CorrectionItem, DisposalMethod, Dispute, Ending, Party, Recipient,
};
use super::{
    ShareRequest, ANSWER_CONDITIONAL_WORKING_DAYS, ANSWER_UNCONDITIONAL_WORKING_DAYS,
    DELIVERY_WORKING_DAYS, EXTENSION_WORKING_DAYS_MAX, GRANT_CONDITIONS_MAX, NOTICE_ITEMS_MAX,
};
use crate::calendar::{beijing_date, end_of_day, CalendarError, WorkingCalendar};
use crate::catalog::{LegalBasis, SharingAttribute, SharingMethod};
use crate::limits::TEXT_BYTES_MAX;
use crate::manifest::Hash;
use crate::time::UnixMs;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareState {
    /// Filed by the requester, not yet received by the provider's node (已提交).
    Submitted,
    /// Received; the provider reviews (审核中).
    UnderReview,
    /// The provider notified incomplete material once (材料不全，一次性告知).
    Incomplete,
    /// The answer period was extended with the authority's consent (已延期).
    Extended,
    /// The provider consented (同意共享); the data is owed within 20 working days.
    Granted,
    /// Delivery has started (共享中).
    Delivering,
    /// The data was shared (已共享).
    Delivered,
    /// The provider did not consent, with reasons (不同意共享).
    Refused,
    /// The requester withdrew the request (已撤回).
    Withdrawn,
    /// The term of use passed before delivery (已过期).
    Expired,
    /// The requester's sharing under this grant is suspended for misuse (已暂停, Art. 27 ¶2).
    Suspended,
    /// The provider ended the sharing (已终止, Art. 27 ¶2–3).
    Terminated,
    /// The requester disposed of the data (已处置, Art. 27 ¶1).
    Disposed,
}

impl ShareState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ShareState::Delivered
                | ShareState::Refused
                | ShareState::Withdrawn
                | ShareState::Expired
                | ShareState::Terminated
                | ShareState::Disposed
        )
    }

    /// Whether the granted data may be used now: delivered or being delivered, not suspended
    /// or ended (the requester's node exports it, the provider's service answers).
    pub fn in_force(self) -> bool {
        matches!(
            self,
            ShareState::Granted | ShareState::Delivering | ShareState::Delivered
        )
    }
}

/// Suspensions one grant may see; after that, termination is the way.
pub const SUSPENSIONS_MAX: u32 = 3;
/// The longest rectification period, in working days.
pub const RECTIFY_WORKING_DAYS_MAX: u32 = 60;

/// A suspension (暂停共享权限, Art. 27 ¶2) and the rectification it asks for (限期整改).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub at: UnixMs,
    pub reason: String,
    pub approved_by: String,
    /// The end of the rectification period.
    pub rectify_by: UnixMs,
    /// Where the case returns when reinstated.
    pub resume: ShareState,
    /// The requester's rectification report, if given.
    pub rectified: Option<(UnixMs, String)>,
}

/// The one incomplete-material notice (一次性告知, Art. 21 ¶2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteNotice {
    pub at: UnixMs,
    /// Every missing item, at once.
    pub missing: Vec<String>,
}

/// The one extension of the answer period (Art. 21 ¶1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub at: UnixMs,
    pub working_days: u32,
    /// The same-level authority's recorded consent (经同级政务数据共享主管部门同意): who
    /// consented and the record's reference.
    pub authority_consent: String,
    pub reason: String,
}

/// The provider's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// 同意共享: under the conditions the catalog lists (none for an unconditional entry).
    Granted {
        at: UnixMs,
        conditions: Vec<String>,
        method: SharingMethod,
        approved_by: String,
    },
    /// 不同意共享, with reasons (Art. 21 ¶2); for a not-shared entry the catalog's reason and
    /// legal basis (Art. 15), given at once on receipt.
    Refused {
        at: UnixMs,
        reasons: String,
        legal_basis: Vec<LegalBasis>,
        approved_by: String,
    },
}

/// An act on a case, by the party named in [`ShareCase::apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareAct {
    /// The provider's node received the request (the answer period starts the next day).
    Receive,
    /// Provider: the material is incomplete; every missing item, once.
    NoticeIncomplete { missing: Vec<String> },
    /// Requester: the completed material.
    Supplement { material: String },
    /// Provider, with the authority's consent: extend the answer period once.
    Extend {
        working_days: u32,
        authority_consent: String,
        reason: String,
    },
    /// Provider: consent.
    Grant {
        conditions: Vec<String>,
        approved_by: String,
    },
    /// Provider: refusal, with reasons.
    Refuse {
        reasons: String,
        approved_by: String,
    },
    /// Provider: delivery started — where the requester's node connects, and for a batch
    /// exchange or file download the signed delivery manifest it fetches there. A service
    /// interface (服务接口) is delivered once it answers: the case is delivered at once, and
    /// the route names where the requester's node calls it. `None` is refused (kept an
    /// `Option` only so a malformed act is refused with a reason rather than undecodable).
    StartDelivery { route: Option<DeliveryRoute> },
    /// Delivery completed (the requester's node verified the data).
    Delivered,
    /// The provider's node renewed a delivered batch exchange's manifest before it expired,
    /// for a term of use longer than one manifest may vouch for (90 days): the same content
    /// under `manifest`, which the requester's node verifies again (nothing is transferred
    /// that it holds) and records as delivered.
    RenewDelivery { manifest: Hash },
    /// Requester: withdraw the request.
    Withdraw { reason: String },
    /// Provider: suspend the requester's sharing under this grant for misuse, with a
    /// rectification period (Art. 27 ¶2). `ordinal`: this case's 1st, 2nd… suspension (an
    /// act's identity: a later one with the same words is a new act).
    Suspend {
        ordinal: u32,
        reason: String,
        rectify_working_days: u32,
        approved_by: String,
    },
    /// Requester: its rectification report (整改情况).
    Rectify { ordinal: u32, report: String },
    /// Provider: lift suspension `ordinal`; the case returns to where it was.
    Reinstate {
        ordinal: u32,
        note: String,
        approved_by: String,
    },
    /// Provider: end the sharing (Art. 27 ¶2–3).
    Terminate {
        reason: String,
        negotiation: String,
        filing: String,
        approved_by: String,
    },
    /// Requester: the data disposed of as the provider required (Art. 27 ¶1).
    Dispose {
        method: DisposalMethod,
        record: String,
    },
    /// Requester: a correction request (校核申请, Art. 26) against records of the delivered
    /// data; the provider answers within 10 working days.
    RequestCorrection {
        ordinal: u32,
        items: Vec<CorrectionItem>,
    },
    /// Provider: the answer to correction request `ordinal` — corrected (the corrected data
    /// delivered: a batch exchange's new version started with [`ShareAct::DeliverCorrection`],
    /// a service interface's reloaded), or not an error, with the reason.
    AnswerCorrection {
        ordinal: u32,
        corrected: bool,
        reason: String,
        approved_by: String,
    },
    /// Either party: open dispute `ordinal` (Art. 28): negotiated first when both parties are
    /// of one jurisdiction, else at once with their lowest common superior's authority.
    OpenDispute {
        ordinal: u32,
        subject: String,
        claim: String,
    },
    /// Either party: negotiation failed; take the dispute to the parties' authority.
    EscalateDispute { ordinal: u32 },
    /// Provider: consent to the requester passing the granted data on to `recipient`, a third
    /// party, for `purpose` (Art. 25: 确需…提供给第三方的，应当经政务数据提供部门同意) — a new signed
    /// act referencing the grant; `ordinal`: its 1st, 2nd… consent ([`super::conditions`]).
    ConsentPassOn {
        ordinal: u32,
        recipient: Recipient,
        purpose: String,
        approved_by: String,
    },
    /// The party that opened it: settled by agreement (its claim met or withdrawn).
    SettleDispute { ordinal: u32, outcome: String },
    /// The coordinating authority (a node act of the authority's jurisdiction): settled, or
    /// referred to its people's government (`refer`).
    Coordinate {
        ordinal: u32,
        outcome: String,
        refer: bool,
    },
    /// Provider: the corrected data of correction request `ordinal` for a batch exchange or
    /// file download (Art. 26: 核实、更正): `manifest`, a new version of the delivery succeeding
    /// the delivered one. The requester's node fetches what it does not hold (storage is
    /// content-addressed) and records the delivery again; once per correction request. (Last
    /// of the variants: stored cases name acts by position.)
    DeliverCorrection { ordinal: u32, manifest: Hash },
}

/// Addresses one delivery route may list, and the bytes of each.
pub const DELIVERY_ADDRESSES_MAX: usize = 8;
pub const DELIVERY_ADDRESS_BYTES_MAX: usize = 256;

/// How granted data reaches the requester (Art. 22): the provider node's transport
/// addresses and, for a batch exchange or file download, the delivery manifest
/// ([`crate::manifest::Manifest::delivers`]) it publishes to the requester's region only;
/// none for a service interface, which answers calls there
/// ([`crate::service_interface`]). The grant admits the connection: the requester's node
/// dials the provider's directly; no other node carries or sees a byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRoute {
    pub manifest: Option<Hash>,
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("{act} is not possible while the request is {state:?}")]
    WrongState {
        act: &'static str,
        state: ShareState,
    },
    #[error("{act} is for the {expected:?} to do")]
    WrongParty { act: &'static str, expected: Party },
    #[error("the incomplete-material notice was given already: it lists every item at once (一次性告知)")]
    NoticeAlreadyGiven,
    #[error("an incomplete-material notice must list the missing items")]
    NoticeWithoutItems,
    #[error("a refusal must state its reasons (Art. 21: 不同意共享的，应当说明理由)")]
    RefusalWithoutReasons,
    #[error("an answer needs the approval of the department's data-sharing head (负责人同意)")]
    WithoutApproval,
    #[error("the answer period was extended already: once, at most {max} working days")]
    ExtendedAlready { max: u32 },
    #[error("an extension of {days} working days: it must be 1 to {max}")]
    ExtensionLength { days: u32, max: u32 },
    #[error("an extension needs the same-level authority's recorded consent (经同级政务数据共享主管部门同意)")]
    ExtensionWithoutConsent,
    #[error(
        "an unconditional entry cannot be granted with conditions (Art. 15: 不得擅自增设条件)"
    )]
    ConditionsOnUnconditional,
    #[error("condition {condition:?} is not one the catalog entry lists (Art. 15)")]
    ConditionNotInCatalog { condition: String },
    #[error("{what}: {len} items or bytes, more than {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "a {method:?} delivery names where it is fetched or called, with its delivery \
         manifest for a batch exchange or file download and none for a service interface \
         (share deliver)"
    )]
    DeliveryRoute { method: SharingMethod },
    #[error(
        "{act} must state its reason or record (it is what the other party and the authority read)"
    )]
    WithoutReason { act: &'static str },
    #[error(
        "{act}: expected number {expected} (a suspension's number, as `share show` counts them)"
    )]
    WrongOrdinal { act: &'static str, expected: u32 },
    #[error("this grant was suspended {max} times already: terminate it instead")]
    SuspendedTooOften { max: u32 },
    #[error("a rectification period of {days} working days: it must be 1 to {max}")]
    RectifyLength { days: u32, max: u32 },
    #[error(
        "ending a running sharing service needs the recorded negotiation with the requester \
         and the filing with the same-level authority (Art. 27: 协商，并报同级政务数据共享主管部门备案), \
         unless the requester did not rectify a suspension in time"
    )]
    TerminationWithoutFiling,
    #[error("a dispute is open already: settle it or take it to the authority first")]
    DisputeOpen,
    #[error("a correction request is open already: one at a time, the provider answers it first")]
    CorrectionOpen,
    #[error("no open correction request number {ordinal} on this request")]
    NoSuchCorrection { ordinal: u32 },
    #[error("correction request {ordinal}'s corrected data was delivered already")]
    CorrectionDelivered { ordinal: u32 },
    #[error("the corrected data names the version delivered already: nothing was corrected")]
    CorrectionUnchanged,
    #[error(
        "correction request {ordinal} is answered corrected only once the corrected data is \
         delivered (share deliver --file, then answer)"
    )]
    CorrectedWithoutData { ordinal: u32 },
    #[error("no open dispute number {ordinal} on this request")]
    NoSuchDispute { ordinal: u32 },
    #[error("{act} is not possible at the dispute's present stage")]
    DisputeStage { act: &'static str },
    #[error(
        "{act} is the coordinating authority's (the parties' lowest common superior, Art. 28)"
    )]
    ForTheAuthority { act: &'static str },
    #[error(
        "{recipient} is no third party to this grant (its own requester or provider): nothing to \
         consent to"
    )]
    NotAThirdParty { recipient: String },
    #[error("{act}: the grant's term of use (使用时限) has ended")]
    TermEnded { act: &'static str },
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(
        "a correction request against returned data goes to its publisher, whose region must \
         hold the requester's: {publisher} does not hold {requester} (returned data flows down)"
    )]
    OutsideThePublisher {
        requester: RegionCode,
        publisher: RegionCode,
    },
    #[error("this correction request was answered already, otherwise (one answer, Art. 26)")]
    ReturnedCorrectionAnswered,
}

/// What applying an act did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The same act was applied before: nothing changed.
    AlreadyApplied,
}

/// Overdue: which article's deadline passed, and when it was due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    pub article: u8,
    pub due: UnixMs,
}

/// One share request and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareCase {
    pub request: ShareRequest,
    /// The entry's sharing attribute as its catalog stated it when the request was filed.
    pub attribute: SharingAttribute,
    pub state: ShareState,
    pub received_at: Option<UnixMs>,
    /// When the answer is due (Art. 21), while one is owed.
    pub answer_due: Option<UnixMs>,
    pub notice: Option<IncompleteNotice>,
    pub extension: Option<Extension>,
    pub answer: Option<Answer>,
    /// When the data is due (Art. 22), once granted.
    pub delivery_due: Option<UnixMs>,
    pub delivered_at: Option<UnixMs>,
    /// Where a batch exchange or file download is fetched from, once started.
    pub delivery: Option<DeliveryRoute>,
    /// Suspensions so far (at most [`SUSPENSIONS_MAX`]); the last one.
    pub suspensions: u32,
    pub suspension: Option<Suspension>,
    /// How the grant ended, if it did (Art. 27).
    pub ending: Option<Ending>,
    /// Disputes, in order; at most one open (Art. 28).
    pub disputes: Vec<Dispute>,
    /// Correction requests, in order; at most one open (Art. 26).
    pub corrections: Vec<Correction>,
    /// Acts applied, in order (each kind at most once or twice: bounded by the lifecycle).
    pub acts: Vec<(UnixMs, ShareAct)>,
}

impl ShareCase {
    /// A filed request (checked with [`ShareRequest::problems`] by the requester's node).
    pub fn new(request: ShareRequest, attribute: SharingAttribute) -> ShareCase {
        ShareCase {
            request,
            attribute,
            state: ShareState::Submitted,
            received_at: None,
            answer_due: None,
            notice: None,
            extension: None,
            answer: None,
            delivery_due: None,
            delivered_at: None,
            delivery: None,
            suspensions: 0,
            suspension: None,
            ending: None,
            disputes: Vec::new(),
            corrections: Vec::new(),
            acts: Vec::new(),
        }
    }

    /// Who must act next, if anyone.
    pub fn owner(&self) -> Option<Party> {
        match self.state {
            ShareState::Incomplete => Some(Party::Requester),
            ShareState::Suspended => Some(
                if self
                    .suspension
                    .as_ref()
                    .is_some_and(|s| s.rectified.is_some())
                {
                    Party::Provider
                } else {
                    Party::Requester
                },
            ),
            // A correction request waits for the provider's answer (Art. 26).
            ShareState::Delivered if self.open_correction().is_some() => Some(Party::Provider),
            s if s.is_final() => None,
            _ => Some(Party::Provider),
        }
    }

    /// The deadline running now, if any: the answer (Art. 21), the delivery (Art. 22), a
    /// rectification (Art. 27 ¶2), a correction's answer (Art. 26), and once the data is held,
    /// its disposal by the end of the term of use (Art. 27 ¶1).
    pub fn deadline(&self) -> Option<(u8, UnixMs)> {
        match self.state {
            ShareState::UnderReview | ShareState::Extended => self.answer_due.map(|d| (21, d)),
            // A renewed or corrected version on its way: the correction's deadline still runs
            // (Art. 26), then the disposal's of the data held (Art. 27 ¶1).
            ShareState::Granted | ShareState::Delivering => self
                .delivery_due
                .map(|d| (22, d))
                .or_else(|| self.open_correction().map(|c| (26, c.due)))
                .or_else(|| self.delivered_at.map(|_| (27, self.request.use_until))),
            ShareState::Suspended => self
                .suspension
                .as_ref()
                .filter(|s| s.rectified.is_none())
                .map(|s| (27, s.rectify_by)),
            // The data held is disposed of by the term's end (Art. 27 ¶1: 共享目的已实现…应当
            // 按照政务数据提供部门的要求妥善处置), once no correction is open.
            ShareState::Delivered => self
                .open_correction()
                .map(|c| (26, c.due))
                .or(Some((27, self.request.use_until))),
            ShareState::Terminated if self.delivered_at.is_some() => {
                Some((27, self.request.use_until))
            }
            _ => None,
        }
    }

    /// The deadline that has passed without the act it requires, if any.
    pub fn overdue(&self, now: UnixMs) -> Option<Overdue> {
        self.deadline()
            .filter(|(_, due)| now >= *due)
            .map(|(article, due)| Overdue { article, due })
    }

    /// Time passed: a request whose term of use ended before delivery expires.
    pub fn tick(&mut self, now: UnixMs) -> bool {
        let open = !self.state.is_final();
        if open && now >= self.request.use_until {
            self.state = ShareState::Expired;
            self.answer_due = None;
            return true;
        }
        false
    }

    /// Whether `act` was applied to this case: since its delivery was last renewed or
    /// corrected, when the new version's verification (`Delivered`) is a new act again.
    pub fn has_applied(&self, act: &ShareAct) -> bool {
        if matches!(act, ShareAct::ConsentPassOn { .. }) {
            // Numbered: never repeated, whatever was renewed since.
            return self.acts.iter().any(|(_, a)| a == act);
        }
        let since = self
            .acts
            .iter()
            .rposition(|(_, a)| {
                matches!(
                    a,
                    ShareAct::RenewDelivery { .. } | ShareAct::DeliverCorrection { .. }
                )
            })
            .unwrap_or(0);
        self.acts[since..].iter().any(|(_, a)| a == act)
    }

    /// Applies `act` by `by` at `now`. An act already applied is acknowledged without change;
    /// anything else out of order, by the wrong party or against the regulation is refused
    /// and changes nothing.
    pub fn apply(
        &mut self,
        calendar: &WorkingCalendar,
        now: UnixMs,
        by: Party,
        act: ShareAct,
    ) -> Result<Applied, ShareError> {
        if self.has_applied(&act) {
            return Ok(Applied::AlreadyApplied);
        }
        self.tick(now);
        let mut next = self.clone();
        next.transition(calendar, now, by, &act)?;
        next.acts.push((now, act));
        *self = next;
        Ok(Applied::Changed)
    }

    fn transition(
        &mut self,
        calendar: &WorkingCalendar,
        now: UnixMs,
        by: Party,
        act: &ShareAct,
    ) -> Result<(), ShareError> {
        use ShareState as S;
        let acting = Acting::of(self.state, by, act);
        let state = acting.state;
        let expect = |party: Party| acting.expect(party);
        let wrong = || acting.wrong();
        match act {
            ShareAct::Receive => {
                expect(Party::Provider)?;
                if state != S::Submitted {
                    return Err(wrong());
                }
                self.received_at = Some(now);
                match &self.attribute {
                    // Art. 15: refused at once, with the catalog's reason and basis.
                    SharingAttribute::NotShared {
                        reason,
                        legal_basis,
                    } => {
                        self.answer = Some(Answer::Refused {
                            at: now,
                            reasons: reason.clone(),
                            legal_basis: legal_basis.clone(),
                            approved_by: "政务数据目录 (catalog: 不予共享)".to_string(),
                        });
                        self.state = S::Refused;
                    }
                    _ => {
                        self.answer_due = Some(calendar.deadline(now, self.answer_days(0))?);
                        self.state = S::UnderReview;
                    }
                }
            }
            ShareAct::NoticeIncomplete { missing } => {
                expect(Party::Provider)?;
                if self.notice.is_some() {
                    return Err(ShareError::NoticeAlreadyGiven);
                }
                if !matches!(state, S::UnderReview | S::Extended) {
                    return Err(wrong());
                }
                check_texts("missing items", missing, NOTICE_ITEMS_MAX)?;
                if missing.iter().all(|m| m.trim().is_empty()) {
                    return Err(ShareError::NoticeWithoutItems);
                }
                self.notice = Some(IncompleteNotice {
                    at: now,
                    missing: missing.clone(),
                });
                // The clock stops while the requester completes the material.
                self.answer_due = None;
                self.state = S::Incomplete;
            }
            ShareAct::Supplement { material } => {
                expect(Party::Requester)?;
                if state != S::Incomplete {
                    return Err(wrong());
                }
                check_text("supplemented material", material)?;
                let extension = self.extension.as_ref().map_or(0, |e| e.working_days);
                self.answer_due = Some(calendar.deadline(now, self.answer_days(extension))?);
                self.state = if extension > 0 {
                    S::Extended
                } else {
                    S::UnderReview
                };
            }
            ShareAct::Extend {
                working_days,
                authority_consent,
                reason,
            } => {
                expect(Party::Provider)?;
                if self.extension.is_some() {
                    return Err(ShareError::ExtendedAlready {
                        max: EXTENSION_WORKING_DAYS_MAX,
                    });
                }
                if state != S::UnderReview {
                    return Err(wrong());
                }
                if !(1..=EXTENSION_WORKING_DAYS_MAX).contains(working_days) {
                    return Err(ShareError::ExtensionLength {
                        days: *working_days,
                        max: EXTENSION_WORKING_DAYS_MAX,
                    });
                }
                if authority_consent.trim().is_empty() {
                    return Err(ShareError::ExtensionWithoutConsent);
                }
                check_text("extension consent", authority_consent)?;
                check_text("extension reason", reason)?;
                let due = self.answer_due.ok_or_else(wrong)?;
                // The extension adds working days after the last day of the current period.
                let last = beijing_date(due.minus_ms(1))?;
                let extended = calendar.last_working_day(last, *working_days)?;
                self.answer_due = Some(end_of_day(extended)?);
                self.extension = Some(Extension {
                    at: now,
                    working_days: *working_days,
                    authority_consent: authority_consent.clone(),
                    reason: reason.clone(),
                });
                self.state = S::Extended;
            }
            ShareAct::Grant {
                conditions,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if !matches!(state, S::UnderReview | S::Extended) {
                    return Err(wrong());
                }
                check_approval(approved_by)?;
                check_texts("conditions", conditions, GRANT_CONDITIONS_MAX)?;
                match &self.attribute {
                    SharingAttribute::Unconditional if !conditions.is_empty() => {
                        return Err(ShareError::ConditionsOnUnconditional)
                    }
                    SharingAttribute::Conditional {
                        scope,
                        permitted_uses,
                    } => {
                        if let Some(c) = conditions
                            .iter()
                            .find(|c| !scope.contains(c) && !permitted_uses.contains(c))
                        {
                            return Err(ShareError::ConditionNotInCatalog {
                                condition: c.chars().take(64).collect(),
                            });
                        }
                    }
                    _ => {}
                }
                self.answer = Some(Answer::Granted {
                    at: now,
                    conditions: conditions.clone(),
                    method: self.request.method,
                    approved_by: approved_by.clone(),
                });
                self.answer_due = None;
                self.delivery_due = Some(calendar.deadline(now, DELIVERY_WORKING_DAYS)?);
                self.state = S::Granted;
            }
            ShareAct::Refuse {
                reasons,
                approved_by,
            } => {
                expect(Party::Provider)?;
                if !matches!(state, S::UnderReview | S::Extended) {
                    return Err(wrong());
                }
                if reasons.trim().is_empty() {
                    return Err(ShareError::RefusalWithoutReasons);
                }
                check_text("reasons", reasons)?;
                check_approval(approved_by)?;
                self.answer = Some(Answer::Refused {
                    at: now,
                    reasons: reasons.clone(),
                    legal_basis: Vec::new(),
                    approved_by: approved_by.clone(),
                });
                self.answer_due = None;
                self.state = S::Refused;
            }
            ShareAct::StartDelivery { route } => {
                expect(Party::Provider)?;
                if state != S::Granted {
                    return Err(wrong());
                }
                let method = self.request.method;
                let service = method == SharingMethod::ServiceApi;
                let Some(r) = route else {
                    return Err(ShareError::DeliveryRoute { method });
                };
                if r.manifest.is_none() != service {
                    return Err(ShareError::DeliveryRoute { method });
                }
                check_texts("delivery addresses", &r.addresses, DELIVERY_ADDRESSES_MAX)?;
                if let Some(a) = r
                    .addresses
                    .iter()
                    .find(|a| a.len() > DELIVERY_ADDRESS_BYTES_MAX)
                {
                    return Err(ShareError::TooLarge {
                        what: "delivery address",
                        len: a.len(),
                        max: DELIVERY_ADDRESS_BYTES_MAX,
                    });
                }
                self.delivery = route.clone();
                if service {
                    // The service answers from now on: that is its delivery (Art. 22).
                    self.delivered_at = Some(now);
                    self.state = S::Delivered;
                } else {
                    self.state = S::Delivering;
                }
            }
            ShareAct::RenewDelivery { manifest } => {
                expect(Party::Provider)?;
                let route = self.delivery.as_mut().filter(|r| r.manifest.is_some());
                let Some(route) = route.filter(|_| state == S::Delivered) else {
                    return Err(wrong());
                };
                route.manifest = Some(*manifest);
                // No deadline runs: the grant was delivered on time or late already.
                self.delivery_due = None;
                self.state = S::Delivering;
            }
            ShareAct::Delivered => {
                if !matches!(state, S::Granted | S::Delivering) {
                    return Err(wrong());
                }
                self.delivered_at = Some(now);
                self.state = S::Delivered;
            }
            ShareAct::Withdraw { reason } => {
                expect(Party::Requester)?;
                if state.is_final() || matches!(state, S::Granted | S::Delivering) {
                    return Err(wrong());
                }
                check_text("withdrawal reason", reason)?;
                self.answer_due = None;
                self.state = S::Withdrawn;
            }
            ShareAct::Suspend { .. }
            | ShareAct::Rectify { .. }
            | ShareAct::Reinstate { .. }
            | ShareAct::Terminate { .. }
            | ShareAct::Dispose { .. }
            | ShareAct::OpenDispute { .. }
            | ShareAct::EscalateDispute { .. }
            | ShareAct::SettleDispute { .. }
            | ShareAct::Coordinate { .. }
            | ShareAct::RequestCorrection { .. }
            | ShareAct::DeliverCorrection { .. }
            | ShareAct::AnswerCorrection { .. } => self.govern(calendar, now, by, act)?,
            ShareAct::ConsentPassOn { .. } => self.consent_pass_on(now, by, act)?,
        }
        Ok(())
    }

    /// The answer period in working days (Art. 21), plus `extension`.
    fn answer_days(&self, extension: u32) -> u32 {
        let base = match self.attribute {
            SharingAttribute::Unconditional => ANSWER_UNCONDITIONAL_WORKING_DAYS,
            _ => ANSWER_CONDITIONAL_WORKING_DAYS,
        };
        base + extension
    }
}

/// What every transition checks first: that the right party acts, in a state that allows
/// the act (shared by the request's lifecycle and the acts after a grant).
#[derive(Clone, Copy)]
pub(super) struct Acting {
    pub by: Party,
    pub name: &'static str,
    pub state: ShareState,
}

impl Acting {
    pub(super) fn of(state: ShareState, by: Party, act: &ShareAct) -> Acting {
        Acting {
            by,
            name: act_name(act),
            state,
        }
    }

    /// `Err` unless `party` is the one acting.
    pub(super) fn expect(self, party: Party) -> Result<(), ShareError> {
        if self.by == party {
            Ok(())
        } else {
            Err(ShareError::WrongParty {
                act: self.name,
                expected: party,
            })
        }
    }

    /// The act is not possible in the case's state.
    pub(super) fn wrong(self) -> ShareError {
        ShareError::WrongState {
            act: self.name,
            state: self.state,
        }
    }
}

pub(super) fn act_name(act: &ShareAct) -> &'static str {
    match act {
        ShareAct::Receive => "receiving",
        ShareAct::NoticeIncomplete { .. } => "an incomplete-material notice",
        ShareAct::Supplement { .. } => "supplementing",
        ShareAct::Extend { .. } => "an extension",
        ShareAct::Grant { .. } => "a grant",
        ShareAct::Refuse { .. } => "a refusal",
        ShareAct::StartDelivery { .. } => "starting delivery",
        ShareAct::Delivered => "completing delivery",
        ShareAct::RenewDelivery { .. } => "renewing a delivery",
        ShareAct::Withdraw { .. } => "withdrawing",
        ShareAct::Suspend { .. } => "a suspension",
        ShareAct::Rectify { .. } => "a rectification report",
        ShareAct::Reinstate { .. } => "a reinstatement",
        ShareAct::Terminate { .. } => "a termination",
        ShareAct::Dispose { .. } => "a disposal",
        ShareAct::OpenDispute { .. } => "opening a dispute",
        ShareAct::EscalateDispute { .. } => "taking a dispute to the authority",
        ShareAct::SettleDispute { .. } => "settling a dispute",
        ShareAct::Coordinate { .. } => "the authority's coordination",
        ShareAct::RequestCorrection { .. } => "a correction request",
        ShareAct::DeliverCorrection { .. } => "delivering corrected data",
        ShareAct::AnswerCorrection { .. } => "a correction's answer",
        ShareAct::ConsentPassOn { .. } => "a consent to pass the data on",
    }
}

pub(super) fn check_text(what: &'static str, text: &str) -> Result<(), ShareError> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(ShareError::TooLarge {
            what,
            len: text.len(),
            max: TEXT_BYTES_MAX,
        });
    }
    Ok(())
}

fn check_texts(what: &'static str, texts: &[String], max: usize) -> Result<(), ShareError> {
    if texts.len() > max {
        return Err(ShareError::TooLarge {
            what,
            len: texts.len(),
            max,
        });
    }
    texts.iter().try_for_each(|t| check_text(what, t))
}

pub(super) fn check_approval(approved_by: &str) -> Result<(), ShareError> {
    if approved_by.trim().is_empty() {
        return Err(ShareError::WithoutApproval);
    }
    check_text("approved_by", approved_by)
}
