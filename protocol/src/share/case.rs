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
//! | refused, delivered, withdrawn, expired | — | — | final |
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
//! Acts are idempotent: an act already applied (e.g. retransmitted to the other party's node)
//! is acknowledged and changes nothing.

use serde::{Deserialize, Serialize};

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
}

impl ShareState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ShareState::Delivered
                | ShareState::Refused
                | ShareState::Withdrawn
                | ShareState::Expired
        )
    }
}

/// Who must act next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    Requester,
    Provider,
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
    /// Requester: withdraw the request.
    Withdraw { reason: String },
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
    #[error(transparent)]
    Calendar(#[from] CalendarError),
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
            acts: Vec::new(),
        }
    }

    /// Who must act next, if anyone.
    pub fn owner(&self) -> Option<Party> {
        match self.state {
            ShareState::Incomplete => Some(Party::Requester),
            s if s.is_final() => None,
            _ => Some(Party::Provider),
        }
    }

    /// The deadline running now, if any (answer, then delivery).
    pub fn deadline(&self) -> Option<(u8, UnixMs)> {
        match self.state {
            ShareState::UnderReview | ShareState::Extended => self.answer_due.map(|d| (21, d)),
            ShareState::Granted | ShareState::Delivering => self.delivery_due.map(|d| (22, d)),
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
        if self.acts.iter().any(|(_, a)| *a == act) {
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
        let name = act_name(act);
        let expect = |party: Party| {
            if by == party {
                Ok(())
            } else {
                Err(ShareError::WrongParty {
                    act: name,
                    expected: party,
                })
            }
        };
        let state = self.state;
        let wrong = || ShareError::WrongState { act: name, state };
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

fn act_name(act: &ShareAct) -> &'static str {
    match act {
        ShareAct::Receive => "receiving",
        ShareAct::NoticeIncomplete { .. } => "an incomplete-material notice",
        ShareAct::Supplement { .. } => "supplementing",
        ShareAct::Extend { .. } => "an extension",
        ShareAct::Grant { .. } => "a grant",
        ShareAct::Refuse { .. } => "a refusal",
        ShareAct::StartDelivery { .. } => "starting delivery",
        ShareAct::Delivered => "completing delivery",
        ShareAct::Withdraw { .. } => "withdrawing",
    }
}

fn check_text(what: &'static str, text: &str) -> Result<(), ShareError> {
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

fn check_approval(approved_by: &str) -> Result<(), ShareError> {
    if approved_by.trim().is_empty() {
        return Err(ShareError::WithoutApproval);
    }
    check_text("approved_by", approved_by)
}
