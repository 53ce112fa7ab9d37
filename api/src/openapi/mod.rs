//! The API described as OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//! annotations in [`routes`], so the description is written beside the code it
//! describes; `api/tests/openapi.rs` checks it against the routes the router really serves.
//! Served at [`OPENAPI_PATH`].
//!
//! Every operation carries the gate's answers (401, 403, 421) and the node's internal failure
//! (500), added here once rather than on each handler: the gate answers them before any
//! handler runs, so a handler's annotation could not say anything more precise about them.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::ApiError;
use crate::routes;

pub mod views;

/// Where the document is served (see [`crate::gate::OPEN_PATHS`] for why without a token).
/// Defined by the gate, which must know it before any route exists (no gate ↔ openapi circle).
pub use crate::gate::OPENAPI_PATH;

/// The name of the bearer-token security scheme in the document (the `security` of
/// [`ApiDoc`] spells it out: the derive takes a literal).
pub const SECURITY_SCHEME: &str = "api_token";

pub use views::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backflow node HTTP API",
        description = "The local HTTP API of a Backflow node: ministry and department systems \
            publish datasets, export what has flowed back, keep the government data catalog \
            (Arts. 12–17), file and answer share requests (Arts. 20–28) and read the \
            compliance ledger (Art. 29).\n\n\
            Every request must carry a `Host` naming the API's own address (an IP literal or \
            `localhost` at the bound port, or a name configured in `http_hosts`; else 421) \
            and, except for this document, `Authorization: Bearer <token>`: the node's token \
            (`<data dir>/api.token`) may do everything; a department's token (`backflow dept \
            add`) only `/api/share…`, `/api/catalog-review…`, `/api/duty-changes…`, \
            `/api/catalog-search` and `/api/ledger/record`, acting as that department.\n\n\
            Errors the API answers are JSON `{\"error\": \"…\"}`. A request the framework \
            cannot parse — a missing or unknown query parameter, a JSON body of the wrong \
            shape or with an unknown field, a body without `Content-Type: application/json` — \
            is refused before any handler with 400, 415 or 422 and a plain-text message.",
        license(name = "Apache-2.0"),
    ),
    paths(
        routes::data::publish_stream,
        routes::data::publish_file,
        routes::data::job,
        routes::node::status,
        routes::data::export_stream,
        routes::data::export_file,
        routes::catalog::catalog_list,
        routes::catalog::catalog_add,
        routes::catalog::catalog_show,
        routes::catalog::catalog_search,
        routes::node::peers,
        routes::node::health,
        routes::node::revocations,
        routes::node::revoke,
        routes::node::rights,
        routes::node::rights_order,
        routes::share::share_list,
        routes::share::share_file,
        routes::share::share_show,
        routes::share::share_act,
        routes::share::share_lookup,
        routes::share::share_coordinate,
        routes::share::share_deliver,
        routes::share::returned_list,
        routes::share::returned_file,
        routes::share::returned_answer,
        routes::catalog::review_list,
        routes::catalog::review_submit,
        routes::catalog::review_decide,
        routes::catalog::duty_change,
        routes::catalog::duty_extend,
        routes::node::departments,
        routes::node::department_add,
        routes::node::ledger,
        routes::node::ledger_verify,
        routes::node::ledger_record,
        routes::node::ledger_inspect,
        routes::node::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Gated),
    security(("api_token" = [])),
    tags(
        (name = "publish", description = "A dataset's new version, streamed or from the import directory"),
        (name = "export", description = "What has flowed back to this node, verified before the first byte"),
        (name = "status", description = "Delivery, peers and trust in force"),
        (name = "catalog", description = "The government data catalog (Arts. 12–17)"),
        (name = "share", description = "Share requests between departments (Arts. 20–28)"),
        (name = "ledger", description = "The compliance ledger (合规台账, Art. 29)"),
        (name = "departments", description = "This node's departments and their tokens"),
        (name = "meta", description = "Metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// Adds the bearer-token scheme, and to every operation behind the token the gate's answers
/// and the node's internal failure.
struct Gated;

impl Modify for Gated {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The node's API token (`<data dir>/api.token`) or a department's \
                         (`backflow dept add`).",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = path == OPENAPI_PATH;
            for operation in operations(item) {
                add_error(
                    operation,
                    "421",
                    "The `Host` header does not name this API's address.",
                );
                if open {
                    continue;
                }
                add_error(operation, "401", "No token, or one the node does not know.");
                add_error(
                    operation,
                    "403",
                    "A department's token on a route that is not the department's, or naming \
                     another department; or an act that is the authority's (the node's token).",
                );
                add_error(
                    operation,
                    "500",
                    "A failure inside the node (logged there in full).",
                );
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Adds an error answer unless the handler's annotation already describes that status.
fn add_error(operation: &mut Operation, status: &str, description: &str) {
    if operation.responses.responses.contains_key(status) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    operation
        .responses
        .responses
        .insert(status.to_string(), response.into());
}

/// The document as JSON, built once: it depends only on this build.
fn document_json() -> Result<&'static [u8], ApiError> {
    static DOCUMENT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| serde_json::to_vec(&ApiDoc::openapi()).map_err(|e| e.to_string()))
        .as_ref()
        .map(Vec::as_slice)
        .map_err(|e| ApiError::internal(&anyhow::anyhow!("the OpenAPI document: {e}")))
}

/// This document (OpenAPI 3.1). Served without a token: it is the same for every node of
/// this build and says nothing the source does not — no token, key, region or data — and an
/// integrator needs it to write a client before any token is issued to it. The `Host` check
/// still applies.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    summary = "This API as OpenAPI 3.1 (no token needed)",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = views::OpenApiDocument)),
)]
async fn openapi_json() -> Result<Response, ApiError> {
    let mut response = document_json()?.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The API's router, gate included, with its OpenAPI document at [`OPENAPI_PATH`].
pub fn router<B: crate::Backend>(
    backend: B,
    gate: crate::gate::Gate,
    dirs: crate::Directories,
) -> axum::Router {
    routes::router(backend, gate, dirs, axum::routing::get(openapi_json))
}
