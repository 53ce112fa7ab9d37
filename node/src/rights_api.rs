//! Departments' sharing rights (政务数据共享权限, Art. 27 ¶2) at the node: what its authority
//! orders (suspend, reinstate) and the acts it holds, as the API, CLI and console show them.
//! The protocol keeps, spreads and enforces them ([`backflow_protocol::share::SharingRights`]).

use anyhow::{anyhow, Result};
use backflow_api::{RightsAction, RightsParams};
use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::share::{RightsDecision, RightsOrder, SignedRightsAct};
use backflow_protocol::time::UnixMs;
use backflow_protocol::Endpoint;
use backflow_topology::RegionCode;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::share_api::time_text;

/// One act on a department's sharing rights, as shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RightsView {
    pub region: String,
    pub department: String,
    /// The region whose authority signed.
    pub authority: String,
    pub ordinal: u32,
    /// Beijing time.
    pub at: String,
    pub suspended: bool,
    /// The sharing terminated (终止共享): every grant the department requested until `at`
    /// has ended.
    #[serde(default)]
    pub terminated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rectify_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub approved_by: String,
}

impl RightsView {
    pub fn of(act: &SignedRightsAct) -> RightsView {
        let b = &act.body;
        let (reason, rectify_by, note, approved_by) = match &b.decision {
            RightsDecision::Suspend {
                reason,
                rectify_by,
                approved_by,
            } => (
                Some(reason.clone()),
                Some(time_text(*rectify_by)),
                None,
                approved_by.clone(),
            ),
            RightsDecision::Reinstate { note, approved_by } => {
                (None, None, Some(note.clone()), approved_by.clone())
            }
            RightsDecision::Terminate {
                reason,
                approved_by,
            } => (Some(reason.clone()), None, None, approved_by.clone()),
        };
        RightsView {
            terminated: matches!(b.decision, RightsDecision::Terminate { .. }),
            region: b.department.region.to_string(),
            department: b.department.department.clone(),
            authority: b.issuer.to_string(),
            ordinal: b.ordinal,
            at: time_text(b.at),
            suspended: act.suspends(),
            reason,
            rectify_by,
            note,
            approved_by,
        }
    }
}

/// Every act held here, suspensions first.
pub fn list(ep: &Endpoint<PeerId>) -> Vec<RightsView> {
    let mut views: Vec<RightsView> = ep
        .share_service()
        .rights()
        .acts()
        .map(|a| RightsView::of(a))
        .collect();
    views.sort_by_key(|v| !v.suspended);
    views
}

/// This node's authority orders `params` (checked and signed by the endpoint).
pub fn order(ep: &mut Endpoint<PeerId>, now: UnixMs, params: RightsParams) -> Result<RightsView> {
    let region = RegionCode::parse(params.region.trim()).map_err(|_| {
        anyhow!("region is not a region code (0 for national, or 2, 4, 6, 9 or 12 digits)")
    })?;
    let department = CatalogOrigin {
        region,
        department: params.department.trim().to_string(),
    };
    let order = match params.action {
        RightsAction::Suspend => RightsOrder::Suspend {
            reason: params.reason,
            rectify_working_days: params.rectify_working_days.ok_or_else(|| {
                anyhow!("a suspension needs rectify_working_days (限期整改: 1 to 60 working days)")
            })?,
            approved_by: params.approved_by,
        },
        RightsAction::Reinstate => RightsOrder::Reinstate {
            note: params.note,
            approved_by: params.approved_by,
        },
        RightsAction::Terminate => RightsOrder::Terminate {
            reason: params.reason,
            approved_by: params.approved_by,
        },
    };
    let act = ep
        .order_rights(now, department, order)
        .map_err(|e| anyhow!("not done: {e}"))?;
    Ok(RightsView::of(&act))
}
