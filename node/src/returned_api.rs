//! Correction requests against returned data (回流数据校核申请, Art. 26 with Art. 24) at the
//! node: what a department files against a return-flow dataset this node holds, what the
//! publisher answers, and the requests as the API, CLI and console show them. The protocol
//! carries them and keeps both parties' copies ([`backflow_protocol::share::ReturnedCorrection`]).

use anyhow::{anyhow, bail, Result};
use backflow_api::{ReturnedAnswerParams, ReturnedCorrectionParams};
use backflow_protocol::manifest::{DatasetId, Hash};
use backflow_protocol::share::{CorrectionItem, ReturnedCorrection, CORRECTION_ITEMS_MAX};
use backflow_protocol::time::UnixMs;
use backflow_protocol::Endpoint;
use backflow_topology::RegionCode;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::share_api::{hex_id, time_text};

/// One record named as wrong.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemView {
    pub key: String,
    pub field: String,
    pub problem: String,
}

/// A correction request against returned data, as shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReturnedCorrectionView {
    pub id: String,
    /// This node's part: `requester` or `publisher`.
    pub role: String,
    pub requester_region: String,
    pub requester_department: String,
    pub dataset: String,
    pub publisher_region: String,
    pub publisher_department: String,
    /// The version complained of.
    pub version: u64,
    pub items: Vec<ItemView>,
    pub filed_at: String,
    /// The end of the 10 working days (Beijing time).
    pub due: String,
    /// `open`, `corrected` or `not_an_error`.
    pub state: String,
    pub overdue: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_in: Option<u64>,
    /// At the requester, once corrected: whether this node holds that version (or a later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_held: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// What the API asks of the runtime.
#[derive(Debug)]
pub enum ReturnedCmd {
    List {
        reply: oneshot::Sender<Vec<ReturnedCorrectionView>>,
    },
    File {
        department: String,
        params: Box<ReturnedCorrectionParams>,
        reply: oneshot::Sender<Result<ReturnedCorrectionView>>,
    },
    Answer {
        department: String,
        id: String,
        params: Box<ReturnedAnswerParams>,
        reply: oneshot::Sender<Result<ReturnedCorrectionView>>,
    },
}

fn view(
    ep: &Endpoint<PeerId>,
    now: UnixMs,
    id: &Hash,
    c: &ReturnedCorrection,
) -> ReturnedCorrectionView {
    let r = &c.request;
    let me = ep.return_flow().region();
    // Held *and complete*: what the requester can export. A version whose manifest was
    // accepted while its partitions are still arriving does not count (an export of it is
    // refused until it is complete).
    let rf = ep.return_flow();
    let held_version = rf
        .held()
        .find(|(d, _)| **d == r.dataset)
        .filter(|(_, h)| rf.is_complete(&h.hash))
        .map(|(_, h)| h.version);
    let a = c.answer.as_ref();
    ReturnedCorrectionView {
        id: hex_id(id),
        role: if r.requester.region == me {
            "requester"
        } else {
            "publisher"
        }
        .into(),
        requester_region: r.requester.region.to_string(),
        requester_department: r.requester.department.clone(),
        dataset: r.dataset.name.clone(),
        publisher_region: r.dataset.publisher.to_string(),
        publisher_department: r.dataset.department.clone(),
        version: r.version,
        items: r
            .items
            .iter()
            .map(|i| ItemView {
                key: i.key.clone(),
                field: i.field.clone(),
                problem: i.problem.clone(),
            })
            .collect(),
        filed_at: time_text(r.filed_at),
        due: time_text(c.due),
        state: match a {
            None => "open",
            Some(a) if a.corrected_in.is_some() => "corrected",
            Some(_) => "not_an_error",
        }
        .into(),
        overdue: c.overdue(now).is_some(),
        answered_at: a.map(|a| time_text(a.at)),
        corrected_in: a.and_then(|a| a.corrected_in),
        corrected_held: a
            .and_then(|a| a.corrected_in)
            .filter(|_| r.requester.region == me)
            .map(|v| held_version.is_some_and(|h| h >= v)),
        reason: a.map(|a| a.reason.clone()),
        approved_by: a.map(|a| a.approved_by.clone()),
    }
}

/// Every correction request here: open ones first (overdue first among them), then by filing.
pub fn list(ep: &Endpoint<PeerId>, now: UnixMs) -> Vec<ReturnedCorrectionView> {
    let mut all: Vec<(&Hash, &ReturnedCorrection)> =
        ep.share_service().returned_corrections().collect();
    all.sort_by_key(|(_, c)| {
        (
            c.answer.is_some(),
            c.overdue(now).is_none(),
            std::cmp::Reverse(c.request.filed_at),
        )
    });
    all.into_iter()
        .map(|(id, c)| view(ep, now, id, c))
        .collect()
}

/// The return-flow dataset `params` names among those this node holds.
fn dataset_of(ep: &Endpoint<PeerId>, params: &ReturnedCorrectionParams) -> Result<DatasetId> {
    let name = params.dataset.trim();
    if name.is_empty() || name.len() > 256 {
        bail!("dataset names a return-flow dataset held here (1 to 256 bytes)");
    }
    let region = match params.publisher_region.as_deref().map(str::trim) {
        Some(r) => Some(RegionCode::parse(r).map_err(|_| {
            anyhow!(
                "publisher_region is not a region code (0 for national, or 2, 4, 6 or 9 digits)"
            )
        })?),
        None => None,
    };
    let department = params.publisher_department.as_deref().map(str::trim);
    let rf = ep.return_flow();
    let found: Vec<DatasetId> = rf
        .held()
        .filter(|(d, h)| {
            d.name == name
                && region.is_none_or(|r| d.publisher == r)
                && department.is_none_or(|p| d.department == p)
                && !rf.is_delivery(&h.hash)
        })
        .map(|(d, _)| d.clone())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "this node holds no return-flow dataset {name:?}{} (backflow status lists what it holds)",
            if region.is_some() || department.is_some() { " from that publisher" } else { "" }
        ),
        many => bail!(
            "{} return-flow datasets named {name:?} are held here, from {}: name the publisher \
             (publisher_region, publisher_department)",
            many.len(),
            many.iter()
                .map(|d| format!("{} {}", d.publisher, d.department))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `department` of this node files `params`.
pub fn file(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    department: &str,
    params: ReturnedCorrectionParams,
) -> Result<ReturnedCorrectionView> {
    let dataset = dataset_of(ep, &params)?;
    if params.items.is_empty() || params.items.len() > CORRECTION_ITEMS_MAX {
        bail!("items: name 1 to {CORRECTION_ITEMS_MAX} records believed wrong");
    }
    let items = params
        .items
        .into_iter()
        .map(|i| CorrectionItem {
            key: i.key.trim().to_string(),
            field: i.field.trim().to_string(),
            problem: i.problem.trim().to_string(),
        })
        .collect();
    let id = ep
        .file_returned_correction(now, department, dataset, items)
        .map_err(|e| anyhow!("not filed: {e}"))?;
    shown(ep, now, &id)
}

/// The publisher's `department` answers the request `id` names.
pub fn answer(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    department: &str,
    id: &str,
    params: ReturnedAnswerParams,
) -> Result<ReturnedCorrectionView> {
    let id = find(ep, id)?;
    ep.answer_returned_correction(
        now,
        &id,
        department,
        params.corrected,
        params.reason.trim().to_string(),
        params.approved_by.trim().to_string(),
    )
    .map_err(|e| anyhow!("not answered: {e}"))?;
    shown(ep, now, &id)
}

fn shown(ep: &Endpoint<PeerId>, now: UnixMs, id: &Hash) -> Result<ReturnedCorrectionView> {
    let c = ep
        .share_service()
        .returned_correction(id)
        .ok_or_else(|| anyhow!("the correction request is not held here"))?;
    Ok(view(ep, now, id, c))
}

/// The request named by `id`: its full hex id or a unique prefix of at least 8 hex digits.
fn find(ep: &Endpoint<PeerId>, id: &str) -> Result<Hash> {
    let items = ep.share_service().returned_corrections();
    let what = "correction request";
    crate::share_api::find_named(items, id, what, "backflow share returned list").map(|(h, _)| *h)
}
