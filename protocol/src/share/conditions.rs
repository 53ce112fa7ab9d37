//! The usage conditions of a grant (Art. 25) as the requester's node enforces them: the term
//! of use (使用时限) and "no third party" (不得擅自将获得的政务数据提供给第三方), widened only by
//! the provider's consent (经政务数据提供部门同意), a signed act of its own that references the
//! grant ([`ShareAct::ConsentPassOn`]).
//!
//! - **Term.** Past `use_until` the requester's node serves none of the data to its users: no
//!   export, no service interface call ([`ShareCase::usable`]); nor while the grant is
//!   suspended or after it ended (Art. 27).
//! - **No third party.** Passing the data on — a return-flow version (回流, Art. 24) or another
//!   grant's delivery (Art. 22) carrying it — is refused unless a consent in force names a
//!   recipient that covers it ([`ShareCase::may_pass_on`], [`Recipient::covers`]). The
//!   grant's own provider and requester are no third party.
//! - **What a node can see.** The endpoint recognises granted data by content: a partition to
//!   be published or delivered whose content hash equals that of a granted delivery held here
//!   (see `Endpoint::check_pass_on`). That catches the data passed on as it was delivered (an
//!   export fed back in); it cannot catch a subset, a reordering, a re-typing or a copy
//!   carried outside Backflow. A node cannot stop someone re-typing data; it can refuse to
//!   carry it itself, and the grant's records (Art. 29) stay the basis for supervision.
//! - **Return-flow is unconditional** (Art. 24: 不得设置额外的限制条件). Only a grant carries
//!   conditions: a return-flow manifest has no field to state any, and content the node also
//!   holds from a return-flow version is not granted data for the check above.
//!
//! Consents are kept in the case's act history (no field of the stored case changes: cases
//! stored before consents existed decode as they were), at most [`PASS_ON_CONSENTS_MAX`].

use super::case::{check_approval, check_text, Acting, ShareAct, ShareCase, ShareError};
use super::records::{Party, Recipient};
use super::ShareState;
use crate::manifest::Hash;
use crate::time::UnixMs;

/// Consents to pass the data on one grant may carry.
pub const PASS_ON_CONSENTS_MAX: u32 = 16;

/// A consent in a case's history (Art. 25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassOnConsent<'a> {
    pub ordinal: u32,
    pub at: UnixMs,
    pub recipient: &'a Recipient,
    pub purpose: &'a str,
    pub approved_by: &'a str,
}

/// Why granted data is not used or passed on here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageRefusal {
    #[error(
        "the term of use (使用时限) of share request {request} ended at Unix ms {until}: its data \
         is no longer served here (Art. 25; dispose of it, Art. 27)"
    )]
    TermEnded { request: String, until: u64 },
    #[error(
        "share request {request} is {state:?}: its data is not used while the grant is suspended \
         or after it ended (Art. 27)"
    )]
    NotInForce { request: String, state: ShareState },
    #[error(
        "the sharing rights (政务数据共享权限) of department {department} of {region} are \
         suspended by the authority of {by}: data granted to it is not used or passed on until \
         reinstated (Art. 27)"
    )]
    RightsSuspended {
        department: String,
        region: backflow_topology::RegionCode,
        by: backflow_topology::RegionCode,
    },
    #[error(
        "the sharing under share request {request} was terminated by an authority at Unix ms \
         {at} (终止共享, Art. 27): its data is no longer used here; dispose of it"
    )]
    SharingTerminated { request: String, at: u64 },
    #[error(
        "this data was granted to department {requester} under share request {request} by \
         department {provider}, and is not passed on to {recipient} without the provider's \
         consent (Art. 25: 不得擅自将获得的政务数据提供给第三方; 确需提供给第三方的，应当经政务数据\
         提供部门同意 — the provider consents with `share consent`)"
    )]
    ThirdParty {
        request: String,
        requester: String,
        provider: String,
        recipient: String,
    },
}

/// A request id as shown in messages (its first 8 hex digits, as `share list` shows them).
fn short(request: &Hash) -> String {
    request.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

impl ShareCase {
    /// The provider's consents to pass the data on, in order.
    pub fn pass_on_consents(&self) -> impl Iterator<Item = PassOnConsent<'_>> {
        self.acts.iter().filter_map(|(at, a)| match a {
            ShareAct::ConsentPassOn {
                ordinal,
                recipient,
                purpose,
                approved_by,
            } => Some(PassOnConsent {
                ordinal: *ordinal,
                at: *at,
                recipient,
                purpose,
                approved_by,
            }),
            _ => None,
        })
    }

    /// Whether the granted data may be served to the requester's users at `now` (export,
    /// service interface): the grant in force (not suspended or ended, Art. 27) and within its
    /// term of use (使用时限, Art. 25).
    pub fn usable(&self, now: UnixMs) -> Result<(), UsageRefusal> {
        let request = short(&self.request.id());
        if !self.state.in_force() {
            return Err(UsageRefusal::NotInForce {
                request,
                state: self.state,
            });
        }
        if now >= self.request.use_until {
            return Err(UsageRefusal::TermEnded {
                request,
                until: self.request.use_until.0,
            });
        }
        Ok(())
    }

    /// Whether the requester may pass the granted data on to `to` at `now`: the data usable,
    /// and `to` its own provider or requester, or covered by a consent (Art. 25).
    pub fn may_pass_on(&self, now: UnixMs, to: &Recipient) -> Result<(), UsageRefusal> {
        self.usable(now)?;
        if self.own_party(to) || self.pass_on_consents().any(|c| c.recipient.covers(to)) {
            return Ok(());
        }
        let name = |o: &crate::catalog::CatalogOrigin| {
            let d: String = o.department.chars().take(64).collect();
            format!("{d} of {}", o.region)
        };
        Err(UsageRefusal::ThirdParty {
            request: short(&self.request.id()),
            requester: name(&self.request.requester),
            provider: name(&self.request.provider),
            recipient: to.to_string(),
        })
    }

    /// Whether `to` is one of the grant's own parties (no third party).
    fn own_party(&self, to: &Recipient) -> bool {
        let r = &self.request;
        matches!(to, Recipient::Department(d) if *d == r.requester || *d == r.provider)
    }

    /// The transition of [`ShareAct::ConsentPassOn`] (called by [`ShareCase::apply`]): by the
    /// provider, while the grant is in force and within its term, numbered in order, naming a
    /// third party, with its purpose and the head's approval. The state does not change.
    pub(super) fn consent_pass_on(
        &mut self,
        now: UnixMs,
        by: Party,
        act: &ShareAct,
    ) -> Result<(), ShareError> {
        let acting = Acting::of(self.state, by, act);
        let ShareAct::ConsentPassOn {
            ordinal,
            recipient,
            purpose,
            approved_by,
        } = act
        else {
            return Err(acting.wrong());
        };
        acting.expect(Party::Provider)?;
        if !self.state.in_force() {
            return Err(acting.wrong());
        }
        if now >= self.request.use_until {
            return Err(ShareError::TermEnded { act: acting.name });
        }
        let next = self.pass_on_consents().count() as u32 + 1;
        if next > PASS_ON_CONSENTS_MAX {
            return Err(ShareError::TooLarge {
                what: "consents to pass the data on",
                len: next as usize,
                max: PASS_ON_CONSENTS_MAX as usize,
            });
        }
        if *ordinal != next {
            return Err(ShareError::WrongOrdinal {
                act: acting.name,
                expected: next,
            });
        }
        if let Recipient::Department(d) = recipient {
            if d.department.trim().is_empty() {
                return Err(ShareError::WithoutReason { act: acting.name });
            }
            check_text("recipient department", &d.department)?;
        }
        if self.own_party(recipient) {
            return Err(ShareError::NotAThirdParty {
                recipient: recipient.to_string(),
            });
        }
        if purpose.trim().is_empty() {
            return Err(ShareError::WithoutReason { act: acting.name });
        }
        check_text("purpose", purpose)?;
        check_approval(approved_by)
    }
}
