//! Share requests (政务数据共享申请) between departments, Arts. 15 and 20–22: what a requesting
//! department files, and the lifecycle of one request ([`ShareCase`]) on the statutory
//! working-day calendar ([`crate::calendar`]).
//!
//! - Art. 20: the requesting department (政务数据需求部门), choosing from the unified catalog,
//!   files a request stating its basis (使用依据), scenario (使用场景), scope (使用范围), sharing
//!   method (共享方式) and term of use (使用时限), after its data-sharing head's approval
//!   (经本部门政务数据共享工作机构负责人同意). The provider (政务数据提供部门) answers after its own
//!   head's approval.
//! - Art. 21: the answer is due 1 working day after receipt for an unconditional entry, 10 for a
//!   conditional one; one extension of at most 10 working days needs the same-level authority's
//!   consent and a notice to the requester. Incomplete material gets one notice listing every
//!   missing item (一次性告知), never a refusal; a refusal states its reasons.
//! - Art. 22: after consent, the data is shared within 20 working days, by 服务接口, 批量交换 or
//!   文件下载.
//! - Art. 15: a 不予共享 entry is refused at once with the catalog's reason and legal basis; an
//!   unconditional one cannot be burdened with conditions (不得擅自增设条件), a conditional one
//!   only with the conditions its catalog entry lists.
//!
//! This module is the deterministic core both parties' nodes apply the same acts to; routing
//! the acts over the overlay and signing them per department come with the node's sharing
//! service.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogEntry, CatalogOrigin, SharingAttribute, SharingMethod};
use crate::codec::digest;
use crate::limits::TEXT_BYTES_MAX;
use crate::manifest::Hash;
use crate::time::UnixMs;

mod acts;
mod case;
mod conditions;
mod governance;
mod records;
mod returned;
mod rights;
mod service;
mod timers;

pub use acts::{
    ShareActBody, ShareActKind, ShareMsg, ShareRejection, SignedShareAct, SHARE_CLOCK_SKEW_MS_MAX,
};
pub use case::{
    Answer, Applied, DeliveryRoute, Extension, IncompleteNotice, Overdue, ShareAct, ShareCase,
    ShareError, ShareState, Suspension, DELIVERY_ADDRESSES_MAX, DELIVERY_ADDRESS_BYTES_MAX,
    RECTIFY_WORKING_DAYS_MAX, SUSPENSIONS_MAX,
};
pub use conditions::{PassOnConsent, UsageRefusal, PASS_ON_CONSENTS_MAX};
pub use records::{
    Correction, CorrectionAnswer, CorrectionItem, DisposalMethod, Dispute, DisputeStage, Ending,
    Party, Recipient, CORRECTIONS_MAX, CORRECTION_ITEMS_MAX, CORRECTION_WORKING_DAYS, DISPUTES_MAX,
};
pub use returned::{ReturnedCorrection, ReturnedCorrectionAnswer, ReturnedCorrectionRequest};
pub use rights::{
    RightsActBody, RightsDecision, RightsError, RightsMsg, SharingRights, SignedRightsAct,
    RIGHTS_HELD_MAX, RIGHTS_PER_MESSAGE_MAX,
};
pub use service::{
    RightsOrder, ShareEvent, ShareOutput, ShareService, ShareStorageOp, SHARE_CASES_MAX,
    SHARE_TRANSIT_MAX,
};

const REQUEST_DOMAIN: &[u8] = b"backflow/share-request/v1";

/// Working days to answer an unconditional request (Art. 21: 1个工作日内).
pub const ANSWER_UNCONDITIONAL_WORKING_DAYS: u32 = 1;
/// Working days to answer a conditional request (Art. 21: 10个工作日内).
pub const ANSWER_CONDITIONAL_WORKING_DAYS: u32 = 10;
/// The longest extension of the answer period (Art. 21: 最长不得超过10个工作日).
pub const EXTENSION_WORKING_DAYS_MAX: u32 = 10;
/// Working days to share the data after consent (Art. 22: 20个工作日内).
pub const DELIVERY_WORKING_DAYS: u32 = 20;
/// Items one incomplete-material notice may list, and conditions one grant may carry.
pub const NOTICE_ITEMS_MAX: usize = 64;
pub const GRANT_CONDITIONS_MAX: usize = 64;

/// 政务数据共享申请 (Art. 20 ¶2): what the requesting department files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequest {
    /// 政务数据需求部门.
    pub requester: CatalogOrigin,
    /// 政务数据提供部门: the catalog entry's department.
    pub provider: CatalogOrigin,
    /// The entry of the provider's catalog requested.
    pub entry_id: String,
    /// 使用依据: the legal basis of the requester's duty that needs the data.
    pub basis: String,
    /// 使用场景.
    pub scenario: String,
    /// 使用范围.
    pub scope: String,
    /// 共享方式.
    pub method: SharingMethod,
    /// 使用时限: the data is used until this instant.
    pub use_until: UnixMs,
    /// The requester's data-sharing head who approved filing (负责人同意), by name or post.
    pub approved_by: String,
    pub filed_at: UnixMs,
}

/// What is wrong with a request before it is filed (all problems at once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestProblem {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes, more than {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the entry is offered by {offered:?}, not by {requested:?}")]
    MethodNotOffered {
        requested: SharingMethod,
        offered: Vec<SharingMethod>,
    },
    #[error("the term of use ends before the request is filed")]
    TermInThePast,
    #[error("a department cannot request its own entry")]
    OwnEntry,
    #[error("the request names entry {requested}, not {entry}")]
    WrongEntry { requested: String, entry: String },
}

impl ShareRequest {
    /// The request's identity: a digest of everything it states.
    pub fn id(&self) -> Hash {
        digest(REQUEST_DOMAIN, self)
    }

    /// Checks the request against the catalog entry it names; every problem at once. A
    /// not-shared entry passes here: it is refused, with its reason and basis, on receipt.
    pub fn problems(&self, entry: &CatalogEntry) -> Vec<RequestProblem> {
        let mut out = self.field_problems();
        if self.entry_id != entry.id {
            out.push(RequestProblem::WrongEntry {
                requested: bounded(&self.entry_id),
                entry: bounded(&entry.id),
            });
        }
        let offered = &entry.sharing_methods;
        if !matches!(entry.sharing, SharingAttribute::NotShared { .. })
            && !offered.contains(&self.method)
        {
            out.push(RequestProblem::MethodNotOffered {
                requested: self.method,
                offered: offered.clone(),
            });
        }
        // Field problems first, then the entry's, then time and parties (a stable order).
        out.sort_by_key(|p| match p {
            RequestProblem::Empty { .. } | RequestProblem::TooLong { .. } => 0,
            RequestProblem::WrongEntry { .. } | RequestProblem::MethodNotOffered { .. } => 1,
            RequestProblem::TermInThePast | RequestProblem::OwnEntry => 2,
        });
        out
    }

    /// The checks that need no catalog entry (the requester's node may not hold the
    /// provider's catalog; the provider's node checks the entry when the request arrives).
    pub fn field_problems(&self) -> Vec<RequestProblem> {
        let mut out = Vec::new();
        for (field, text) in [
            ("entry_id", &self.entry_id),
            ("basis (使用依据)", &self.basis),
            ("scenario (使用场景)", &self.scenario),
            ("scope (使用范围)", &self.scope),
            ("approved_by (负责人)", &self.approved_by),
            ("requester department", &self.requester.department),
            ("provider department", &self.provider.department),
        ] {
            if text.trim().is_empty() {
                out.push(RequestProblem::Empty { field });
            } else if text.len() > TEXT_BYTES_MAX {
                out.push(RequestProblem::TooLong {
                    field,
                    len: text.len(),
                    max: TEXT_BYTES_MAX,
                });
            }
        }
        if self.use_until <= self.filed_at {
            out.push(RequestProblem::TermInThePast);
        }
        if self.requester == self.provider {
            out.push(RequestProblem::OwnEntry);
        }
        out
    }
}

/// An identifier shown in an error, cut short (it is the caller's text).
fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
}
