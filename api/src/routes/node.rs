//! The node itself: delivery status, peers, revocations, departments, the compliance ledger
//! and metrics.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{answer, Api};
use crate::backend::{Backend, RevokeParams, UseRecordParams};
use crate::error::ApiError;
use crate::gate::Principal;
use crate::openapi::views::{self, ErrorBody};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    /// Only datasets of this name.
    dataset: Option<String>,
    /// List the delivery to the children of this region (a code inside this node's
    /// jurisdiction, e.g. a county for its townships) instead of this node's children.
    region: Option<String>,
}

#[utoipa::path(
    get, path = "/api/status",
    summary = "Delivery status of the datasets held here",
    tag = "status",
    params(StatusQuery),
    responses(
        (status = 200, description = "Every held dataset version (or those named) and its delivery below this node", body = Vec<views::DatasetStatus>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn status<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.status(q.dataset, q.region))
        .await
        .map(Json)
}

#[utoipa::path(
    get, path = "/api/peers",
    summary = "Connected peers and their verified regions",
    tag = "status",
    responses(
        (status = 200, description = "Connected peers and their verified regions", body = Vec<views::PeerView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn peers<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.peers()).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/health",
    summary = "The node's health: its disk and its parent",
    tag = "status",
    responses(
        (status = 200, description = "The data directory's disk and the last contact with the parent node", body = views::Health),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn health<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.health()).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/revocations",
    summary = "Revocations in force here",
    tag = "status",
    responses(
        (status = 200, description = "Every revocation in force here", body = Vec<views::RevocationView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn revocations<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.revocations()).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/revocations",
    summary = "Revoke a descendant's key, or put a signed revocation in force",
    tag = "status",
    request_body = crate::backend::RevokeParams,
    responses(
        (status = 200, description = "Signed by this node, in force here at once and spread to that region's line", body = views::RevocationView),
        (status = 400, description = "Neither or both of region and signed; not a region below this node; a key or signed revocation that does not decode", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn revoke<B: Backend>(
    State(api): State<Api<B>>,
    Json(params): Json<RevokeParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.revoke(params)).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/rights",
    summary = "Departments' sharing rights suspended or reinstated (Art. 27)",
    tag = "share",
    responses(
        (status = 200, description = "Every act held here, the latest per department and authority, suspensions first", body = Vec<views::RightsView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn rights<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    answer(api.backend.rights()).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/rights",
    summary = "Suspend or reinstate a department's sharing rights as this node's authority (Art. 27)",
    tag = "share",
    request_body = crate::backend::RightsParams,
    responses(
        (status = 200, description = "Signed by this node, durable, in force here at once and spread to every node", body = views::RightsView),
        (status = 400, description = "A department outside this node's jurisdiction, a suspension without reason or approval or with a rectification period outside 1–60 working days, a suspension already in force, or a reinstatement of none", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn rights_order<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<crate::backend::RightsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The authority is the node's role, not a department's.
    principal.require_node()?;
    if params.region.len() > 12 {
        return Err(ApiError::bad_request("region too long"));
    }
    answer(api.backend.rights_order(params)).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/departments",
    summary = "This node's departments",
    tag = "departments",
    responses(
        (status = 200, description = "This node's departments", body = Vec<views::DepartmentView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn departments<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.departments()).await.map(Json)
}

/// A department to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DepartmentAddBody {
    /// Its name (政府部门), unique within the node.
    name: String,
}

#[utoipa::path(
    post, path = "/api/departments",
    summary = "Add a department: its key and its API token",
    tag = "departments",
    request_body = DepartmentAddBody,
    responses(
        (status = 200, description = "Added; its token is in this answer only", body = views::DepartmentAdded),
        (status = 400, description = "A name the node refuses (empty, too long, or taken)", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn department_add<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<DepartmentAddBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.department_add(body.name))
        .await
        .map(Json)
}

/// For Prometheus (the node's token only: a scrape job sends it as a bearer token).
#[utoipa::path(
    get, path = "/metrics",
    summary = "The node's metrics for Prometheus (OpenMetrics text)",
    tag = "meta",
    responses(
        (status = 200, description = "The node's figures for Prometheus (the node's token only)", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn metrics<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    principal.require_node()?;
    let text = answer(api.backend.metrics()).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct LedgerQuery {
    /// The first entry's number (default 0).
    #[serde(default)]
    from: u64,
    /// Entries in the page (default 100, at most 1,000).
    #[serde(default)]
    limit: Option<usize>,
}

/// Entries one ledger page holds at most (the node reads no more at once).
pub const LEDGER_PAGE_ENTRIES_MAX: usize = 1_000;

/// The compliance ledger (合规台账, Art. 29): the authority's to read.
#[utoipa::path(
    get, path = "/api/ledger",
    summary = "A page of the compliance ledger (Art. 29)",
    tag = "ledger",
    params(LedgerQuery),
    responses(
        (status = 200, description = "A page of entries, with the signed and witnessed heads (the node's token only)", body = views::LedgerPage),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn ledger<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    let limit = q.limit.unwrap_or(100).clamp(1, LEDGER_PAGE_ENTRIES_MAX);
    answer(api.backend.ledger(q.from, limit)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/ledger/verify",
    summary = "Verify the whole ledger against its tree and signed head",
    tag = "ledger",
    responses(
        (status = 200, description = "The verification's outcome (`ok` false names the first bad entry; the node's token only)", body = views::LedgerVerification),
    ),
)]
pub(super) async fn ledger_verify<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    // Not under the answer timeout: a long log takes seconds to read through.
    api.backend.ledger_verify().await.map(Json)
}

#[utoipa::path(
    post, path = "/api/ledger/inspect",
    summary = "Inspect another node's records over the network (查阅, Art. 29)",
    tag = "ledger",
    request_body = crate::backend::InspectParams,
    responses(
        (status = 200, description = "A page of that node's records, each proved against its head witnessed by its parent (the node's token only)", body = views::LedgerInspection),
        (status = 400, description = "A bad region or grant, or an inspection this node may not make (not the grant's provider, not above the region)", body = ErrorBody),
        (status = 502, description = "The other node refused, did not answer within 30 s, or answered with records that do not prove themselves", body = ErrorBody),
    ),
)]
pub(super) async fn ledger_inspect<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<crate::backend::InspectParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    if params.region.len() > 12 || params.grant.as_ref().is_some_and(|g| g.len() > 64) {
        return Err(ApiError::bad_request("region or grant too long"));
    }
    // Not under the answer timeout: the node waits for the other node at most 30 s.
    api.backend.ledger_inspect(params).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/ledger/record",
    summary = "Record a department's use of granted data (使用记录, Art. 29)",
    tag = "ledger",
    request_body = crate::backend::UseRecordParams,
    responses(
        (status = 200, description = "The use record's ledger entry, once durable", body = views::LedgerEntry),
        (status = 400, description = "An Art. 29 text empty or too long, a grant id too long, or no such grant of this department", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn ledger_record<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<UseRecordParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    use backflow_protocol::ledger::entry::LEDGER_USE_FIELD_BYTES_MAX as MAX;
    for (name, text) in [
        ("scenario (使用场景)", &params.scenario),
        ("process (使用过程)", &params.process),
        ("effect (应用成效)", &params.effect),
        ("storage (存储情况)", &params.storage),
    ] {
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "{name} is empty: Art. 29 records it"
            )));
        }
        if text.len() > MAX {
            return Err(ApiError::bad_request(format!(
                "{name} is {} bytes; at most {MAX}",
                text.len()
            )));
        }
    }
    if params.disposal.len() > MAX || params.grant.len() > 64 {
        return Err(ApiError::bad_request(format!(
            "disposal (销毁情况): at most {MAX} bytes; grant: an id of at most 64 hex digits"
        )));
    }
    answer(api.backend.ledger_record(department, params))
        .await
        .map(Json)
}
