//! The government data catalog (Arts. 12–17): the aggregated catalog, its search, entries
//! added by the authority, and the review of departments' submissions and duty changes.

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use backflow_protocol::catalog::CatalogEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{answer, Api, CATALOG_ID_BYTES_MAX};
use crate::backend::{
    Backend, CatalogListParams, CatalogSearchParams, DutyChangeParams, DutyExtendParams,
    ReviewDecideParams, ReviewRequest, ReviewSubmitParams,
};
use crate::error::ApiError;
use crate::gate::Principal;
use crate::openapi::views::{self, ErrorBody};

#[utoipa::path(
    get, path = "/api/catalog",
    summary = "A page of the aggregated catalog of this subtree",
    tag = "catalog",
    params(crate::backend::CatalogListParams),
    responses(
        (status = 200, description = "One page of the aggregated catalog of this subtree, departments in order", body = Vec<views::DepartmentCatalog>),
        (status = 400, description = "A region or `after` the node cannot read", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn catalog_list<B: Backend>(
    State(api): State<Api<B>>,
    Query(params): Query<CatalogListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.catalogs(params)).await.map(Json)
}

#[utoipa::path(
    get, path = "/api/catalog/{id}",
    summary = "The catalog entries with this id",
    tag = "catalog",
    params(("id" = String, Path, description = "A catalog entry id (unique within a department)")),
    responses(
        (status = 200, description = "Every current entry with this id, one per department using it", body = Vec<views::EntryWithOrigin>),
        (status = 400, description = "An id longer than the protocol's bound on names", body = ErrorBody),
        (status = 404, description = "No entry with this id", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn catalog_show<B: Backend>(
    State(api): State<Api<B>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if id.len() > CATALOG_ID_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "a catalog entry id is at most {CATALOG_ID_BYTES_MAX} bytes"
        )));
    }
    let found = answer(api.backend.catalog_entry(id.clone())).await?;
    if found.as_array().is_none_or(|a| a.is_empty()) {
        return Err(ApiError::not_found(format!("no catalog entry {id:?}")));
    }
    Ok(Json(found))
}

#[utoipa::path(
    get, path = "/api/catalog-search",
    summary = "Search the unified catalog (Art. 16)",
    tag = "catalog",
    params(crate::backend::CatalogSearchParams),
    responses(
        (status = 200, description = "A page of matching entries, best first", body = views::SearchView),
        (status = 400, description = "A filter the node cannot read, or one beyond the protocol's bounds", body = ErrorBody),
        (status = 503, description = "Nobody above reachable to answer, or the node did not answer in time", body = ErrorBody),
    ),
)]
pub(super) async fn catalog_search<B: Backend>(
    State(api): State<Api<B>>,
    Query(params): Query<CatalogSearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.catalog_search(params)).await.map(Json)
}

/// The department's catalog once the entries are in it.
#[derive(Serialize, ToSchema)]
pub(super) struct CatalogSubmitted {
    /// The catalog's new version (sequence number).
    seq: u64,
}

/// One catalog entry or an array of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    #[schema(value_type = Vec<views::CatalogEntry>)]
    Many(Vec<CatalogEntry>),
    #[schema(value_type = views::CatalogEntry)]
    One(Box<CatalogEntry>),
}

#[utoipa::path(
    post, path = "/api/catalog",
    summary = "Add entries to this node's department's catalog (the authority's own act)",
    tag = "catalog",
    request_body = OneOrMany,
    responses(
        (status = 200, description = "The entries are in this node's department's catalog", body = CatalogSubmitted),
        (status = 400, description = "An entry that does not validate (the message names the field)", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn catalog_add<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<OneOrMany>,
) -> Result<Json<CatalogSubmitted>, ApiError> {
    let entries = match body {
        OneOrMany::Many(v) => v,
        OneOrMany::One(e) => vec![*e],
    };
    let seq = answer(api.backend.catalog_submit(entries)).await?;
    Ok(Json(CatalogSubmitted { seq }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ReviewListQuery {
    /// Only overdue submissions and duty changes.
    #[serde(default)]
    overdue: bool,
}

#[utoipa::path(
    get, path = "/api/catalog-review",
    summary = "Catalog submissions and duty changes, overdue first",
    tag = "catalog",
    params(ReviewListQuery),
    responses(
        (status = 200, description = "Submissions and duty changes, overdue first", body = views::ReviewsView),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn review_list<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ReviewListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // A department sees its own; the authority all.
    let department = principal.acting_as(None)?;
    let request = ReviewRequest::List {
        department,
        overdue_only: q.overdue,
    };
    answer(api.backend.catalog_review(request)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/catalog-review",
    summary = "Submit catalog entries to the authority's review (Art. 16)",
    tag = "catalog",
    request_body = crate::backend::ReviewSubmitParams,
    responses(
        (status = 200, description = "Submitted for the authority's review", body = views::SubmissionView),
        (status = 400, description = "Entries that do not validate", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn review_submit<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<ReviewSubmitParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = ReviewRequest::Submit {
        department: principal.acting_as(params.department.as_deref())?,
        entries: params.entries,
    };
    answer(api.backend.catalog_review(request)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/catalog-review/{id}",
    summary = "Approve or return a submission (the authority)",
    tag = "catalog",
    params(("id" = u64, Path, description = "The submission's number")),
    request_body = crate::backend::ReviewDecideParams,
    responses(
        (status = 200, description = "Decided; an approval publishes the entries (`catalog_seq`)", body = views::SubmissionView),
        (status = 400, description = "Not `approve` or `return`, no such pending submission", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn review_decide<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<u64>,
    Json(params): Json<ReviewDecideParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    let request = ReviewRequest::Decide { id, params };
    answer(api.backend.catalog_review(request)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/duty-changes",
    summary = "Record a change of law or duties (Art. 17)",
    tag = "catalog",
    request_body = crate::backend::DutyChangeParams,
    responses(
        (status = 200, description = "Recorded; the catalog update is due in 10 working days", body = views::DutyChangeView),
        (status = 400, description = "`occurred` is not a date (YYYY-MM-DD), or the change is refused", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn duty_change<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Json(params): Json<DutyChangeParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = ReviewRequest::RecordDutyChange {
        department: principal.acting_as(params.department.as_deref())?,
        params,
    };
    answer(api.backend.catalog_review(request)).await.map(Json)
}

#[utoipa::path(
    post, path = "/api/duty-changes/{id}/extend",
    summary = "Extend a duty change's update period once (the authority)",
    tag = "catalog",
    params(("id" = u64, Path, description = "The duty change's number")),
    request_body = crate::backend::DutyExtendParams,
    responses(
        (status = 200, description = "Extended (once, by 1 to 5 working days)", body = views::DutyChangeView),
        (status = 400, description = "Already extended, days out of range, or no such open duty change", body = ErrorBody),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
pub(super) async fn duty_extend<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<u64>,
    Json(params): Json<DutyExtendParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    let request = ReviewRequest::ExtendUpdate { id, params };
    answer(api.backend.catalog_review(request)).await.map(Json)
}
