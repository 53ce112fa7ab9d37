//! The routes. Every one sits behind the [`gate`] (Host and token; the OpenAPI
//! document needs only the Host). Each handler's `#[utoipa::path]` annotation describes it in
//! the OpenAPI document; `api/tests/openapi.rs` checks the document against [`registered_paths`]
//! and what the router answers. The handlers live by area — `data` (publish, export, jobs),
//! `catalog` (catalog and its review), `share` (share requests), `node` (status, peers,
//! revocations, departments, ledger, metrics) — and this module builds the router from them.
//!
//! | method | path                 | body / query                                            |
//! |--------|----------------------|---------------------------------------------------------|
//! | POST   | `/api/publish`       | `?dataset=&region_field=&format=csv\|ndjson[&strict_villages=true]`, the data as the body (streamed: `curl --data-binary @file`) → the publish report |
//! | POST   | `/api/publish/file`  | `{dataset, region_field, file, format?, strict_villages?}`, `file` inside `import_dir` → a job |
//! | GET    | `/api/jobs/{id}`     | a publish's progress and result                         |
//! | GET    | `/api/status`        | `?dataset=NAME&region=CODE` (CODE's children, inside this node's jurisdiction) |
//! | GET    | `/api/export`        | `?dataset=&version=` → the lines, streamed; figures in `x-backflow-*` headers |
//! | POST   | `/api/export`        | `{dataset, version?, out}`, `out` inside `export_dir`    |
//! | GET    | `/api/catalog`       | `?region=&after=&limit=`: a page of the aggregated catalog of this subtree |
//! | GET    | `/api/catalog/{id}`  | entries with this id                                    |
//! | GET    | `/api/catalog-search`| `?q=&provider=&sharing=&region=&offset=&limit=`: search the unified catalog (Art. 16) |
//! | POST   | `/api/catalog`       | a `CatalogEntry` or an array of them                    |
//! | GET    | `/api/peers`         | connected peers and their verified regions              |
//! | GET    | `/api/health`        | the data directory's disk (free, total, low) and the last contact with the parent |
//! | GET    | `/api/rights`        | authorities' acts on departments' sharing rights held here (Art. 27 ¶2) |
//! | POST   | `/api/rights`        | `RightsParams`: this node's authority suspends or reinstates a department's sharing rights (the node's token only) |
//! | GET    | `/api/share`         | `?overdue=true`: share requests this node is a party to, overdue first |
//! | POST   | `/api/share`         | `ShareFileParams`: file a request as this node's department |
//! | GET    | `/api/share/returned` | correction requests against returned data this node is a party to (Art. 26) |
//! | POST   | `/api/share/returned` | `ReturnedCorrectionParams`: a department files one against a return-flow dataset held here |
//! | POST   | `/api/share/returned/{id}/answer` | `ReturnedAnswerParams`: the publisher answers (corrected in a later version, or not an error) |
//! | GET    | `/api/share/{id}`    | one share request (id or a unique 8+ digit prefix)      |
//! | POST   | `/api/share/{id}/act`| `ShareActParams`: grant, refuse, notice, supplement, extend, delivered, withdraw, suspend, rectify, reinstate, terminate, dispose |
//! | POST   | `/api/share/{id}/deliver` | `?format=csv\|ndjson[&key=FIELD][&department=]`, the granted data as the body (streamed): a batch exchange or file download starts, or with `key` a service interface (服务接口) opens (Art. 22) |
//! | POST   | `/api/share/{id}/coordinate` | `{outcome, refer}`: the node's authority coordinates the open dispute (Art. 28; the node's token only) |
//! | POST   | `/api/share/{id}/lookup` | `LookupParams` `{keys, department?}`: the requester calls the grant's service interface |
//! | GET    | `/api/catalog-review`| `?overdue=true`: submissions and duty changes (Arts. 16–17), overdue first |
//! | POST   | `/api/catalog-review`| `ReviewSubmitParams`: a department's entries to the authority's review |
//! | POST   | `/api/catalog-review/{id}` | `ReviewDecideParams`: the authority approves (publishes) or returns |
//! | POST   | `/api/duty-changes`  | `DutyChangeParams`: a change of law or duties, the update due in 10 working days |
//! | POST   | `/api/duty-changes/{id}/extend` | `DutyExtendParams`: the authority extends it once (≤ 5) |
//! | GET    | `/api/departments`   | this node's departments (names, public keys)            |
//! | POST   | `/api/departments`   | `{name}`: a new department's key and token (the token shown once) |
//! | GET    | `/api/ledger`        | `?from=&limit=`: entries of the compliance ledger (合规台账, Art. 29), its signed and witnessed heads |
//! | POST   | `/api/ledger/verify` | the whole ledger against its tree and signed head → `{ok, …}` or the first bad entry |
//! | POST   | `/api/ledger/inspect` | `InspectParams`: another node's records over the network (查阅, Art. 29), proved against its witnessed head |
//! | POST   | `/api/ledger/record` | `UseRecordParams`: a requesting department's use record (使用记录) of granted data |
//! | GET    | `/metrics`           | the node's figures for Prometheus (OpenMetrics text; the node's token) |
//! | GET    | `/api/openapi.json`  | this API as OpenAPI 3.1 ([`openapi`](crate::openapi); no token, see [`gate::OPEN_PATHS`]) |
//!
//! A department's token (see [`gate`]) reaches only `/api/share…`, acting as
//! that department; the node's token may name any department of the node (`department`).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::RequestExt;
use axum::{Json, Router};
use backflow_ingest::partition::Format;
use backflow_ingest::source::FileFormat;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::backend::Backend;
use crate::confine::Confined;
use crate::error::ApiError;
use crate::gate::{self, Gate};
use crate::jobs::Jobs;

pub(crate) mod catalog;
pub(crate) mod data;
pub(crate) mod node;
pub(crate) mod share;

pub use node::LEDGER_PAGE_ENTRIES_MAX;
pub use share::{CoordinateParams, LookupParams};

/// A catalog entry id in a path: the protocol's bound on names (`limits::NAME_BYTES_MAX`).
const CATALOG_ID_BYTES_MAX: usize = backflow_protocol::limits::NAME_BYTES_MAX;
/// JSON request bodies (catalog batches, path-based requests) are small.
pub const JSON_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A streamed publish's body: bounded so a runaway client cannot fill the disk unnoticed; far
/// above any real regional dataset (the national population register is ~0.5 GB).
pub const UPLOAD_BYTES_MAX: usize = 64 * 1024 * 1024 * 1024;
/// A streamed upload that sends nothing for this long is abandoned.
pub const UPLOAD_IDLE_MS_MAX: u64 = 60_000;
/// A request answered by the node's event loop (status, peers, catalog) gives up after this.
pub const NODE_ANSWER_MS_MAX: u64 = 30_000;
/// Exports running at once (each streams from the store on the blocking pool).
pub const EXPORTS_RUNNING_MAX: usize = 4;
/// Bytes buffered between an export's writer and the response.
const EXPORT_PIPE_BYTES: usize = 256 * 1024;

/// Where path-based publish and export may touch files; `None`: that route is off.
#[derive(Clone, Debug, Default)]
pub struct Directories {
    pub import: Option<Confined>,
    pub export: Option<Confined>,
}

#[derive(Clone)]
pub(crate) struct Api<B> {
    backend: B,
    dirs: Directories,
    jobs: Arc<Jobs>,
    exports: Arc<Semaphore>,
}

/// The routes as registered, each path recorded as it is added: [`router`] serves them and
/// [`registered_paths`] lists them, so the check of the OpenAPI document against the router
/// (`api/tests/openapi.rs`) reads the very list the router was built from, not a copy.
struct Table<B: Backend> {
    router: Router<Api<B>>,
    paths: Vec<&'static str>,
}

impl<B: Backend> Table<B> {
    fn route(mut self, path: &'static str, methods: MethodRouter<Api<B>>) -> Table<B> {
        self.paths.push(path);
        self.router = self.router.route(path, methods);
        self
    }
}

/// The route serving the OpenAPI document, handed in by [`crate::openapi`]: the document
/// lists these routes' handlers, so this module does not import it back (no import circle).
pub(crate) type DocumentRoute<B> = MethodRouter<Api<B>>;

fn table<B: Backend>(document: DocumentRoute<B>) -> Table<B> {
    Table {
        router: Router::new(),
        paths: Vec::new(),
    }
    .route(
        "/api/publish",
        post(data::publish_stream::<B>).layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX)),
    )
    .route("/api/publish/file", post(data::publish_file::<B>))
    .route("/api/jobs/{id}", get(data::job::<B>))
    .route("/api/status", get(node::status::<B>))
    .route(
        "/api/export",
        get(data::export_stream::<B>).post(data::export_file::<B>),
    )
    .route(
        "/api/catalog",
        get(catalog::catalog_list::<B>).post(catalog::catalog_add::<B>),
    )
    .route("/api/catalog/{id}", get(catalog::catalog_show::<B>))
    .route("/api/catalog-search", get(catalog::catalog_search::<B>))
    .route("/api/peers", get(node::peers::<B>))
    .route("/api/health", get(node::health::<B>))
    .route(
        "/api/revocations",
        get(node::revocations::<B>).post(node::revoke::<B>),
    )
    .route(
        "/api/rights",
        get(node::rights::<B>).post(node::rights_order::<B>),
    )
    .route(
        "/api/share",
        get(share::share_list::<B>).post(share::share_file::<B>),
    )
    .route(
        "/api/share/returned",
        get(share::returned_list::<B>).post(share::returned_file::<B>),
    )
    .route(
        "/api/share/returned/{id}/answer",
        post(share::returned_answer::<B>),
    )
    .route("/api/share/{id}", get(share::share_show::<B>))
    .route("/api/share/{id}/act", post(share::share_act::<B>))
    .route("/api/share/{id}/lookup", post(share::share_lookup::<B>))
    .route(
        "/api/share/{id}/coordinate",
        post(share::share_coordinate::<B>),
    )
    .route(
        "/api/share/{id}/deliver",
        post(share::share_deliver::<B>).layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX)),
    )
    .route(
        "/api/catalog-review",
        get(catalog::review_list::<B>).post(catalog::review_submit::<B>),
    )
    .route(
        "/api/catalog-review/{id}",
        post(catalog::review_decide::<B>),
    )
    .route("/api/duty-changes", post(catalog::duty_change::<B>))
    .route(
        "/api/duty-changes/{id}/extend",
        post(catalog::duty_extend::<B>),
    )
    .route("/metrics", get(node::metrics::<B>))
    .route("/api/ledger", get(node::ledger::<B>))
    .route("/api/ledger/verify", post(node::ledger_verify::<B>))
    .route("/api/ledger/record", post(node::ledger_record::<B>))
    .route("/api/ledger/inspect", post(node::ledger_inspect::<B>))
    .route(
        "/api/departments",
        get(node::departments::<B>).post(node::department_add::<B>),
    )
    .route(gate::OPENAPI_PATH, document)
}

/// Every path [`router`] registers, in order (for the check of the OpenAPI document; `B` only
/// names the handlers' type, no backend is made).
pub fn registered_paths<B: Backend>() -> Vec<&'static str> {
    table::<B>(get(|| async { StatusCode::NOT_FOUND })).paths
}

/// The API's router, gate included, serving the OpenAPI document with `document` (see
/// [`crate::openapi::router`], the one caller).
pub(crate) fn router<B: Backend>(
    backend: B,
    gate: Gate,
    dirs: Directories,
    document: DocumentRoute<B>,
) -> Router {
    let api = Api {
        backend,
        dirs,
        jobs: Arc::default(),
        exports: Arc::new(Semaphore::new(EXPORTS_RUNNING_MAX)),
    };
    table::<B>(document)
        .router
        .fallback(|| async { not_found() })
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(gate),
            gate::check,
        ))
}

/// Waits for the node, but not forever.
pub async fn answer<T>(
    fut: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(Duration::from_millis(NODE_ANSWER_MS_MAX), fut)
        .await
        .map_err(|_| {
            ApiError::busy(format!(
                "the node did not answer within {} s",
                NODE_ANSWER_MS_MAX / 1000
            ))
        })?
}

/// The request body as a blocking reader, for the partitioner on the blocking pool. Nothing
/// is buffered beyond hyper's frames; a client that stalls for [`UPLOAD_IDLE_MS_MAX`] ends it.
/// (Also the console's publish form's upload.)
pub fn body_reader(request: Request) -> Box<dyn Read + Send> {
    let frames = request.into_limited_body().into_data_stream();
    let idle = Duration::from_millis(UPLOAD_IDLE_MS_MAX);
    let frames = futures::stream::unfold(Some(frames), move |state| async move {
        let mut frames = state?;
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(frames))),
            Ok(Some(Err(e))) => Some((
                Err(std::io::Error::other(format!(
                    "reading the request body: {e}"
                ))),
                None,
            )),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the upload sent nothing for {} s",
                        UPLOAD_IDLE_MS_MAX / 1000
                    ),
                )),
                None,
            )),
        }
    });
    Box::new(SyncIoBridge::new(StreamReader::new(frames.boxed())))
}

/// The format named by a request, checked before any input is read.
fn format_named(text: &str) -> Result<String, ApiError> {
    Format::parse(text)
        .map(|f| format_name(f).to_string())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A publish's or export's file format (`csv`, `ndjson`, `xlsx`, `parquet`), canonically named.
fn file_format_named(text: &str) -> Result<String, ApiError> {
    FileFormat::parse(text)
        .map(|f| f.name().to_string())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Csv => "csv",
        Format::Ndjson => "ndjson",
    }
}

/// Unmatched paths: a JSON 404 (behind the gate like everything else).
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "no such route"})),
    )
        .into_response()
}
