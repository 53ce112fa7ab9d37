//! Share requests between departments (Arts. 20–28): filed, acted on, delivered, called as a
//! service interface, and coordinated by the authority.

use axum::extract::{Path, Query, Request, State};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{answer, body_reader, format_named, Api};
use crate::backend::{
    Backend, ReturnedAnswerParams, ReturnedCorrectionParams, ShareActParams, ShareFileParams,
};
use crate::error::ApiError;
use crate::gate::Principal;
use crate::openapi::views::{self, ErrorBody};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ShareListQuery {
    /// Only overdue requests.
    #[serde(default)]
    overdue: bool,
}

#[utoipa::path(
    get, path = "/api/share",
    summary = "Share requests this node is a party to, overdue first",
    tag = "share",
    params(ShareListQuery),
    responses(
        (status = 200, description = "Share requests this node is a party to (or supervises), overdue first", body = Vec<views::ShareView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_list<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<ShareListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.shares(q.overdue)).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/share/{id}",
    summary = "One share request",
    tag = "share",
    params(("id" = String, Path, description = "The request id in hex, or a unique prefix of 8 or more digits")),
    responses(
        (status = 200, description = "The share request", body = views::ShareView),
        (status = 404, description = "No request with this id, or the prefix is not unique", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_show<B: Backend>(
    State(api): State<Api<B>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.share(id)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/share",
    summary = "File a share request as a department of this node (Art. 20)",
    tag = "share",
    request_body = crate::backend::ShareFileParams,
    responses(
        (status = 200, description = "Filed and persisted", body = views::ShareView),
        (status = 400, description = "A request the protocol refuses (the message says why)", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_file<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<ShareFileParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    answer(api.backend.share_file(department, params))
        .await
        .map(Json)
}

#[utoipa::path(
    post, path = "/api/share/{id}/act",
    summary = "Act on a share request as a department of this node",
    tag = "share",
    params(("id" = String, Path, description = "The request id in hex, or a unique prefix of 8 or more digits")),
    request_body = crate::backend::ShareActParams,
    responses(
        (status = 200, description = "Acted and persisted", body = views::ShareView),
        (status = 400, description = "An act the request's state or the protocol does not allow (the message says why)", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_act<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(params): Json<ShareActParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    answer(api.backend.share_act(department, id, params))
        .await
        .map(Json)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliverQuery {
    /// `csv` or `ndjson`.
    format: String,
    /// A service interface's key field (服务接口).
    #[serde(default)]
    key: Option<String>,
    /// The providing department (a department's token names its own).
    #[serde(default)]
    department: Option<String>,
}

/// The provider's department sends the granted data (streamed, as for a publish); the node
/// stores it for the requester's node alone and records the start of delivery.
#[utoipa::path(
    post, path = "/api/share/{id}/deliver",
    summary = "Deliver a granted request's data, streamed as the body (Art. 22)",
    tag = "share",
    params(("id" = String, Path, description = "The request id in hex, or a unique prefix of 8 or more digits"), DeliverQuery),
    request_body(content = views::Records, content_type = "application/octet-stream",
        description = "The granted data in `format`, streamed (any `Content-Type`)"),
    responses(
        (status = 200, description = "The delivery is durable and started", body = views::ShareView),
        (status = 400, description = "Not a granted request of this department, an unknown format or key field, or input the loader refuses", body = ErrorBody),
    ),
)]
pub(super) async fn share_deliver<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DeliverQuery>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(q.department.as_deref())?;
    let format = format_named(&q.format)?;
    let input = body_reader(request);
    // Not under the answer timeout: the body streams for as long as the data takes.
    api.backend
        .share_deliver(department, id, format, q.key, input)
        .await
        .map(Json)
}

/// The authority's coordination of a dispute (Art. 28).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoordinateParams {
    /// The coordinated outcome (协调结果).
    pub outcome: String,
    /// Refer the dispute to the people's government instead of settling it.
    #[serde(default)]
    pub refer: bool,
}

#[utoipa::path(
    post, path = "/api/share/{id}/coordinate",
    summary = "Coordinate an open dispute as the authority (Art. 28)",
    tag = "share",
    params(("id" = String, Path, description = "The request id in hex, or a unique prefix of 8 or more digits")),
    request_body = CoordinateParams,
    responses(
        (status = 200, description = "The dispute is settled or referred", body = views::ShareView),
        (status = 400, description = "No open dispute this node's authority coordinates", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_coordinate<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(params): Json<CoordinateParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The authority is the node's role, not a department's.
    principal.require_node()?;
    answer(
        api.backend
            .share_coordinate(id, params.outcome, params.refer),
    )
    .await
    .map(Json)
}

/// A call of a granted service interface (服务接口, Art. 22) by its requesting department.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupParams {
    /// The key values to look up (1 to the protocol's bound, each bounded in bytes).
    pub keys: Vec<String>,
    /// The requesting department (a department's token names its own).
    #[serde(default)]
    pub department: Option<String>,
}

#[utoipa::path(
    post, path = "/api/share/{id}/lookup",
    summary = "Call a granted service interface (服务接口, Art. 22)",
    tag = "share",
    params(("id" = String, Path, description = "The request id in hex, or a unique prefix of 8 or more digits")),
    request_body = LookupParams,
    responses(
        (status = 200, description = "The provider's answer", body = views::LookupView),
        (status = 400, description = "No keys or too many or too long; not an open service interface of this department; refused by the provider", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn share_lookup<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(params): Json<LookupParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    // Bounded before anything is asked of the node (the protocol checks the same).
    use backflow_protocol::service_interface::{LOOKUP_KEYS_MAX, LOOKUP_KEY_BYTES_MAX};
    if params.keys.is_empty()
        || params.keys.len() > LOOKUP_KEYS_MAX
        || params.keys.iter().any(|k| k.len() > LOOKUP_KEY_BYTES_MAX)
    {
        return Err(ApiError::bad_request(format!(
            "keys: 1 to {LOOKUP_KEYS_MAX} keys of at most {LOOKUP_KEY_BYTES_MAX} bytes each"
        )));
    }
    answer(api.backend.share_lookup(department, id, params.keys))
        .await
        .map(Json)
}

#[utoipa::path(
    get, path = "/api/share/returned",
    summary = "Correction requests against returned data this node is a party to (Art. 26)",
    tag = "share",
    responses(
        (status = 200, description = "As requester or publisher, open ones first, overdue first among them", body = Vec<views::ReturnedCorrectionView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn returned_list<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.returned_corrections()).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/share/returned",
    summary = "File a correction request against returned data this node holds (回流数据校核申请, Art. 26)",
    tag = "share",
    request_body = crate::backend::ReturnedCorrectionParams,
    responses(
        (status = 200, description = "Filed, persisted and on its way to the dataset's publisher", body = views::ReturnedCorrectionView),
        (status = 400, description = "No such return-flow dataset held here (or more than one: name the publisher), no records or more than 64, a record without key or problem, or a department not of this node", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn returned_file<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<ReturnedCorrectionParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    answer(api.backend.returned_correction_file(department, params))
        .await
        .map(Json)
}

#[utoipa::path(
    post, path = "/api/share/returned/{id}/answer",
    summary = "Answer a correction request against returned data as its publisher (Art. 26: 核实、更正并反馈)",
    tag = "share",
    params(("id" = String, Path, description = "The correction request's id in hex, or a unique prefix of 8 or more digits")),
    request_body = crate::backend::ReturnedAnswerParams,
    responses(
        (status = 200, description = "Answered, persisted and on its way to the requester", body = views::ReturnedCorrectionView),
        (status = 400, description = "Corrected before a later version was published, not an error without a reason, no approval, answered already, or not the publishing department", body = ErrorBody),
        (status = 404, description = "No correction request with this id, or the prefix is not unique", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn returned_answer<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(params): Json<ReturnedAnswerParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let department = principal.acting_as(params.department.as_deref())?;
    answer(
        api.backend
            .returned_correction_answer(department, id, params),
    )
    .await
    .map(Json)
}
