//! The records a [`ShareCase`](super::ShareCase) keeps after a grant, and who acts: how the
//! data is disposed of and how the grant ended (Art. 27), corrections (Art. 26), disputes
//! (Art. 28), and whom the provider consented the data may be passed on to (Art. 25,
//! [`Recipient`]). Types only: the transitions that write them are in [`super::case`],
//! [`super::governance`] and [`super::conditions`].

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogOrigin;
use crate::time::UnixMs;

/// How the requester disposes of the data (Art. 27 ¶1: 按照政务数据提供部门的要求妥善处置).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisposalMethod {
    /// 删除: the node deletes the content.
    Delete,
    /// 退还: handed back to the provider; the node's copy is deleted.
    Return,
    /// 归档: archived outside the sharing platform as the provider required; the node's copy
    /// is deleted.
    Archive,
}

/// Working days the provider has to verify, correct and answer a correction request
/// (Art. 26: 自收到政务数据校核申请之日起10个工作日内予以核实、更正并反馈).
pub const CORRECTION_WORKING_DAYS: u32 = 10;
/// Correction requests one grant may see (one open at a time), and records one may name.
pub const CORRECTIONS_MAX: u32 = 16;
pub const CORRECTION_ITEMS_MAX: usize = 64;

/// One record the requester believes wrong: its key, the field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectionItem {
    pub key: String,
    pub field: String,
    pub problem: String,
}

/// A correction request (政务数据校核申请, Art. 26) and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub ordinal: u32,
    pub at: UnixMs,
    pub items: Vec<CorrectionItem>,
    /// The end of the 10 working days.
    pub due: UnixMs,
    pub answer: Option<CorrectionAnswer>,
}

/// The provider's answer (反馈校核处理结果): corrected, or not an error with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectionAnswer {
    pub at: UnixMs,
    pub corrected: bool,
    pub reason: String,
    pub approved_by: String,
}

/// Disputes one case may see (one open at a time).
pub const DISPUTES_MAX: u32 = 4;

/// A dispute over a request, a grant, a correction or a suspension (政务数据共享争议, Art. 28).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub ordinal: u32,
    pub opened_by: Party,
    pub opened_at: UnixMs,
    /// What it is about (the request, the grant, a correction, a suspension…).
    pub subject: String,
    pub claim: String,
    pub stage: DisputeStage,
}

/// Where a dispute stands, and who owns its next step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeStage {
    /// 协商: parties of one jurisdiction negotiate first (Art. 28 ¶2); either may take it to
    /// their authority.
    Negotiating,
    /// 协调: at the authority of `authority` — the parties' own (one jurisdiction) or their
    /// lowest common superior's (跨层级、跨地域), which coordinates.
    Coordinating {
        authority: RegionCode,
        since: UnixMs,
    },
    /// Settled: agreed between the parties, or at the authority's coordination.
    Settled {
        at: UnixMs,
        coordinated: bool,
        outcome: String,
    },
    /// Not settled at the authority: referred to its people's government to decide
    /// (报本级人民政府决定) — the final recorded state here.
    Referred { at: UnixMs, outcome: String },
}

impl DisputeStage {
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            DisputeStage::Negotiating | DisputeStage::Coordinating { .. }
        )
    }
}

/// The end of a grant (Art. 27): termination or disposal, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    Terminated {
        at: UnixMs,
        reason: String,
        /// The recorded negotiation with the requester (协商); `None` only after a failed
        /// rectification.
        negotiation: Option<String>,
        /// The filing with the same-level authority (备案); as above.
        filing: Option<String>,
        approved_by: String,
    },
    Disposed {
        at: UnixMs,
        method: DisposalMethod,
        record: String,
    },
}

/// Who must act next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    Requester,
    Provider,
}

/// Whom granted data is passed on to (Art. 25: 提供给第三方). Any department other than the
/// grant's own requester and provider is a third party (第三方) — another department of the
/// requester's own region too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Recipient {
    /// One department of a region: the requester of another share request that a department
    /// of the requester's node would deliver the data under (Backflow's sharing, Art. 22).
    Department(CatalogOrigin),
    /// Every department of a region and of every region below it: a return-flow version
    /// (回流, Art. 24) scoped inside it — return-flow reaches every node of its scope — or a
    /// delivery to any department there.
    Region(RegionCode),
}

impl Recipient {
    /// Whether a consent naming `self` covers passing the data on to `to`: a region covers its
    /// own and its subtree's departments and return-flow scoped inside it; a department covers
    /// deliveries to that department only (a return-flow reaches more than one department).
    pub fn covers(&self, to: &Recipient) -> bool {
        match (self, to) {
            (Recipient::Region(r), Recipient::Region(s)) => r.contains(*s),
            (Recipient::Region(r), Recipient::Department(d)) => r.contains(d.region),
            (Recipient::Department(a), Recipient::Department(b)) => a == b,
            (Recipient::Department(_), Recipient::Region(_)) => false,
        }
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Department(d) => {
                let name: String = d.department.chars().take(64).collect();
                write!(f, "department {name} of {}", d.region)
            }
            Recipient::Region(r) => write!(f, "the departments of region {r} and below"),
        }
    }
}
