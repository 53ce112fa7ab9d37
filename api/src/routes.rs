//! The routes. Every one sits behind the [`gate`](crate::gate) (Host and token; the OpenAPI
//! document needs only the Host). Each handler's `#[utoipa::path]` annotation describes it in
//! the OpenAPI document; `api/tests/openapi.rs` checks the document against [`registered_paths`]
//! and what the router answers.
//!
//! | method | path                 | body / query                                            |
//! |--------|----------------------|---------------------------------------------------------|
//! | POST   | `/api/publish`       | `?dataset=&region_field=&format=csv\|ndjson[&strict_villages=true]`, the data as the body (streamed: `curl --data-binary @file`) → the publish report |
//! | POST   | `/api/publish/file`  | `{dataset, region_field, file, format?, strict_villages?}`, `file` inside `import_dir` → a job |
//! | GET    | `/api/jobs/{id}`     | a publish's progress and result                         |
//! | GET    | `/api/status`        | `?dataset=NAME`                                         |
//! | GET    | `/api/export`        | `?dataset=&version=` → the lines, streamed; figures in `x-backflow-*` headers |
//! | POST   | `/api/export`        | `{dataset, version?, out}`, `out` inside `export_dir`    |
//! | GET    | `/api/catalog`       | `?region=&after=&limit=`: a page of the aggregated catalog of this subtree |
//! | GET    | `/api/catalog/{id}`  | entries with this id                                    |
//! | GET    | `/api/catalog-search`| `?q=&provider=&sharing=&region=&offset=&limit=`: search the unified catalog (Art. 16) |
//! | POST   | `/api/catalog`       | a `CatalogEntry` or an array of them                    |
//! | GET    | `/api/peers`         | connected peers and their verified regions              |
//! | GET    | `/api/share`         | `?overdue=true`: share requests this node is a party to, overdue first |
//! | POST   | `/api/share`         | `ShareFileParams`: file a request as this node's department |
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
//! | POST   | `/api/ledger/record` | `UseRecordParams`: a requesting department's use record (使用记录) of granted data |
//! | GET    | `/metrics`           | the node's figures for Prometheus (OpenMetrics text; the node's token) |
//! | GET    | `/api/openapi.json`  | this API as OpenAPI 3.1 ([`openapi`](crate::openapi); no token, see [`gate::OPEN_PATHS`]) |
//!
//! A department's token (see [`gate`](crate::gate)) reaches only `/api/share…`, acting as
//! that department; the node's token may name any department of the node (`department`).

use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::RequestExt;
use axum::{Extension, Json, Router};
use backflow_ingest::partition::Format;
use backflow_protocol::catalog::CatalogEntry;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};
use utoipa::{IntoParams, ToSchema};

use crate::backend::{
    Backend, CatalogListParams, CatalogSearchParams, DutyChangeParams, DutyExtendParams,
    ExportWhich, PublishParams, ReviewDecideParams, ReviewRequest, ReviewSubmitParams,
    RevokeParams, ShareActParams, ShareFileParams, UseRecordParams,
};
use crate::confine::{self, Confined};
use crate::error::ApiError;
use crate::gate::{self, Gate, Principal};
use crate::jobs::{JobView, Jobs};
use crate::openapi::views;
use crate::openapi::ErrorBody;

/// JSON request bodies (catalog batches, path-based requests) are small.
/// A catalog entry id in a path: the protocol's bound on names (`limits::NAME_BYTES_MAX`).
const CATALOG_ID_BYTES_MAX: usize = backflow_protocol::limits::NAME_BYTES_MAX;
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
struct Api<B> {
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

fn table<B: Backend>() -> Table<B> {
    Table {
        router: Router::new(),
        paths: Vec::new(),
    }
    .route(
        "/api/publish",
        post(publish_stream::<B>).layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX)),
    )
    .route("/api/publish/file", post(publish_file::<B>))
    .route("/api/jobs/{id}", get(job::<B>))
    .route("/api/status", get(status::<B>))
    .route(
        "/api/export",
        get(export_stream::<B>).post(export_file::<B>),
    )
    .route(
        "/api/catalog",
        get(catalog_list::<B>).post(catalog_add::<B>),
    )
    .route("/api/catalog/{id}", get(catalog_show::<B>))
    .route("/api/catalog-search", get(catalog_search::<B>))
    .route("/api/peers", get(peers::<B>))
    .route("/api/revocations", get(revocations::<B>).post(revoke::<B>))
    .route("/api/share", get(share_list::<B>).post(share_file::<B>))
    .route("/api/share/{id}", get(share_show::<B>))
    .route("/api/share/{id}/act", post(share_act::<B>))
    .route("/api/share/{id}/lookup", post(share_lookup::<B>))
    .route("/api/share/{id}/coordinate", post(share_coordinate::<B>))
    .route(
        "/api/share/{id}/deliver",
        post(share_deliver::<B>).layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX)),
    )
    .route(
        "/api/catalog-review",
        get(review_list::<B>).post(review_submit::<B>),
    )
    .route("/api/catalog-review/{id}", post(review_decide::<B>))
    .route("/api/duty-changes", post(duty_change::<B>))
    .route("/api/duty-changes/{id}/extend", post(duty_extend::<B>))
    .route("/metrics", get(metrics::<B>))
    .route("/api/ledger", get(ledger::<B>))
    .route("/api/ledger/verify", post(ledger_verify::<B>))
    .route("/api/ledger/record", post(ledger_record::<B>))
    .route(
        "/api/departments",
        get(departments::<B>).post(department_add::<B>),
    )
    .route(
        crate::openapi::OPENAPI_PATH,
        get(crate::openapi::openapi_json),
    )
}

/// Every path [`router`] registers, in order (for the check of the OpenAPI document; `B` only
/// names the handlers' type, no backend is made).
pub fn registered_paths<B: Backend>() -> Vec<&'static str> {
    table::<B>().paths
}

/// The API's router, gate included.
pub fn router<B: Backend>(backend: B, gate: Gate, dirs: Directories) -> Router {
    let api = Api {
        backend,
        dirs,
        jobs: Arc::default(),
        exports: Arc::new(Semaphore::new(EXPORTS_RUNNING_MAX)),
    };
    table::<B>()
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PublishQuery {
    /// The dataset's name (a new version of it if it exists).
    dataset: String,
    /// The field holding each record's region code (a 9-digit township or 12-digit village).
    region_field: String,
    /// `csv` or `ndjson`.
    format: String,
    /// Reject 12-digit codes of unknown villages instead of rolling them up to their township.
    #[serde(default)]
    strict_villages: bool,
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

#[utoipa::path(
    post, path = "/api/publish",
    summary = "Publish a dataset's new version, the data streamed as the body",
    tag = "publish",
    params(PublishQuery),
    request_body(content = views::Records, content_type = "application/octet-stream",
        description = "The dataset's records in `format`, streamed (any `Content-Type`; `curl --data-binary @file`); at most 64 GiB"),
    responses(
        (status = 200, description = "The new version is durable", body = views::PublishReport),
        (status = 400, description = "An unknown format, or input the partitioner refuses (the message names the line and field)", body = ErrorBody),
        (status = 503, description = "Publishes are already running at the bound; try again when one ends", body = ErrorBody),
    ),
)]
async fn publish_stream<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<PublishQuery>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let format = format_named(&q.format)?;
    let (id, job, _permit) = api.jobs.start(length)?;
    let params = PublishParams {
        dataset: q.dataset,
        region_field: q.region_field,
        format,
        strict_villages: q.strict_villages,
    };
    let input = body_reader(request);
    let result = api
        .backend
        .publish(id, params, input, Arc::clone(&job.bytes_read))
        .await
        .map(|report| with_job(report, id));
    job.finish(match &result {
        Ok(r) => Ok(r.clone()),
        Err(e) => Err(e.message.clone()),
    });
    result.map(Json)
}

fn with_job(mut report: serde_json::Value, id: u64) -> serde_json::Value {
    if let Some(o) = report.as_object_mut() {
        o.insert("job".into(), id.into());
    }
    report
}

/// A publish of a file of the import directory.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishFileBody {
    dataset: String,
    region_field: String,
    /// A path inside `import_dir` (relative to it, or absolute within it).
    #[schema(value_type = String)]
    file: PathBuf,
    /// `csv` or `ndjson`; absent: told by the file name's extension.
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    strict_villages: bool,
}

/// A publish started in the background: follow it at `GET /api/jobs/{job}`.
#[derive(Serialize, ToSchema)]
struct JobStarted {
    job: u64,
}

/// The format named by a request, checked before any input is read.
fn format_named(text: &str) -> Result<String, ApiError> {
    Format::parse(text)
        .map(|f| format_name(f).to_string())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Csv => "csv",
        Format::Ndjson => "ndjson",
    }
}

#[utoipa::path(
    post, path = "/api/publish/file",
    summary = "Publish a file of the import directory, in the background",
    tag = "publish",
    request_body = PublishFileBody,
    responses(
        (status = 200, description = "Started; follow it at GET /api/jobs/{job}", body = JobStarted),
        (status = 400, description = "An unknown format, or none the file name tells", body = ErrorBody),
        (status = 403, description = "Publishing by path is off (no `import_dir`), the file is outside `import_dir` or cannot be read; or a department's token", body = ErrorBody),
        (status = 404, description = "No such file in `import_dir`", body = ErrorBody),
        (status = 503, description = "Publishes are already running at the bound", body = ErrorBody),
    ),
)]
async fn publish_file<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<PublishFileBody>,
) -> Result<Json<JobStarted>, ApiError> {
    let dir = api.dirs.import.as_ref().ok_or_else(|| {
        ApiError::forbidden(
            "publishing a file by path is off: set import_dir in config.toml, \
             or send the data as the body of POST /api/publish",
        )
    })?;
    let format = match body.format {
        Some(f) => format_named(&f)?,
        None => Format::from_path(&body.file)
            .map(|f| format_name(f).to_string())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "cannot tell the format from the file name; pass format: csv or ndjson",
                )
            })?,
    };
    let (file, len) = dir.open(&body.file)?;
    let (id, job, permit) = api.jobs.start(Some(len))?;
    let params = PublishParams {
        dataset: body.dataset,
        region_field: body.region_field,
        format,
        strict_villages: body.strict_villages,
    };
    let backend = api.backend.clone();
    tokio::spawn(async move {
        let result = backend
            .publish(id, params, Box::new(file), Arc::clone(&job.bytes_read))
            .await;
        job.finish(result.map_err(|e| e.message));
        drop(permit);
    });
    Ok(Json(JobStarted { job: id }))
}

#[utoipa::path(
    get, path = "/api/jobs/{id}",
    summary = "A publish's progress and report",
    tag = "publish",
    params(("id" = u64, Path, description = "The job number a publish answered")),
    responses(
        (status = 200, description = "The publish's progress, and its report or error once it ended", body = JobView),
        (status = 404, description = "No such job (or forgotten: the oldest finished are)", body = ErrorBody),
    ),
)]
async fn job<B: Backend>(
    State(api): State<Api<B>>,
    Path(id): Path<u64>,
) -> Result<Json<JobView>, ApiError> {
    let job = api
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(Json(job.view()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    /// Only datasets of this name.
    dataset: Option<String>,
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
async fn status<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.status(q.dataset)).await.map(Json)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// The dataset's name.
    dataset: String,
    /// The version (default: the latest held).
    version: Option<u64>,
    /// The publisher's region code: needed only when datasets of this name from more than
    /// one owner are held here.
    publisher: Option<String>,
    /// The publisher's department (as `publisher`).
    department: Option<String>,
}

fn summary_headers(summary: &crate::backend::ExportSummary) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-backflow-dataset", summary.dataset.clone());
    put("x-backflow-publisher", summary.publisher.clone());
    put("x-backflow-version", summary.version.to_string());
    put("x-backflow-partitions", summary.partitions.to_string());
    put("x-backflow-records", summary.records.to_string());
    put("x-backflow-bytes", summary.bytes.to_string());
    headers
}

/// Streams a verified export. If writing fails midway (the store changed under it), the
/// response is cut off without its final chunk, so no client takes it for a whole file.
#[utoipa::path(
    get, path = "/api/export",
    summary = "Export this node's records of a dataset version, streamed",
    tag = "export",
    params(ExportQuery),
    responses(
        (status = 200, description = "This node's own records of the version, every partition verified against its signed manifest first; a body cut off without its final chunk means the export failed midway", body = views::Records, content_type = "application/octet-stream",
            headers(
                ("x-backflow-dataset" = String, description = "The dataset's name"),
                ("x-backflow-publisher" = String, description = "The publisher's region code"),
                ("x-backflow-version" = u64, description = "The version exported"),
                ("x-backflow-partitions" = u64, description = "Partitions exported"),
                ("x-backflow-records" = u64, description = "Records exported"),
                ("x-backflow-bytes" = u64, description = "Bytes exported"),
            )),
        (status = 400, description = "A publisher that is not a region code", body = ErrorBody),
        (status = 404, description = "No such dataset version held here (or several owners: name publisher and department)", body = ErrorBody),
        (status = 503, description = "Exports are already running at the bound", body = ErrorBody),
    ),
)]
async fn export_stream<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let permit = Arc::clone(&api.exports)
        .try_acquire_owned()
        .map_err(|_| ApiError::busy(format!("{EXPORTS_RUNNING_MAX} exports are running")))?;
    let export = api
        .backend
        .export(ExportWhich {
            dataset: q.dataset,
            publisher: q.publisher,
            department: q.department,
            version: q.version,
            destination: "the API's response (GET /api/export)".into(),
        })
        .await?;
    let headers = summary_headers(&export.summary);
    let (reader, writer) = tokio::io::duplex(EXPORT_PIPE_BYTES);
    let write = export.write;
    let task = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::new(SyncIoBridge::new(writer));
        let result = write(&mut out).and_then(|()| {
            std::io::Write::flush(&mut out)?;
            Ok(())
        });
        drop(permit);
        result
    });
    let ending = futures::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!("export cut off: {e:#}");
                Some(Err(std::io::Error::other("export failed")))
            }
            Err(_) => Some(Err(std::io::Error::other("export failed"))),
        }
    })
    .filter_map(|x| async move { x });
    let body = Body::from_stream(ReaderStream::new(reader).chain(ending).into_stream());
    let mut response = body.into_response();
    response.headers_mut().extend(headers);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// An export to a file of the export directory.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExportFileBody {
    dataset: String,
    /// Default: the latest held.
    #[serde(default)]
    version: Option<u64>,
    /// Needed only when datasets of this name from more than one owner are held here.
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    department: Option<String>,
    /// A new file's path inside `export_dir`.
    #[schema(value_type = String)]
    out: PathBuf,
}

/// What an export to a file wrote, and where.
#[derive(Serialize, ToSchema)]
struct ExportFileReport {
    #[serde(flatten)]
    summary: crate::backend::ExportSummary,
    /// The file written.
    out: String,
}

#[utoipa::path(
    post, path = "/api/export",
    summary = "Export this node's records of a dataset version to a file of the export directory",
    tag = "export",
    request_body = ExportFileBody,
    responses(
        (status = 200, description = "Written (to a temporary name, then renamed into place)", body = ExportFileReport),
        (status = 400, description = "A path or publisher the API refuses", body = ErrorBody),
        (status = 403, description = "Exporting to a path is off (no `export_dir`), the path is outside it, or cannot be created; or a department's token", body = ErrorBody),
        (status = 404, description = "No such dataset version held here, or the file's directory does not exist", body = ErrorBody),
        (status = 503, description = "Exports are already running at the bound", body = ErrorBody),
    ),
)]
async fn export_file<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<ExportFileBody>,
) -> Result<Json<ExportFileReport>, ApiError> {
    let dir = api.dirs.export.as_ref().ok_or_else(|| {
        ApiError::forbidden(
            "exporting to a path is off: set export_dir in config.toml, \
             or GET /api/export and save the response",
        )
    })?;
    let _permit = Arc::clone(&api.exports)
        .try_acquire_owned()
        .map_err(|_| ApiError::busy(format!("{EXPORTS_RUNNING_MAX} exports are running")))?;
    let mut out = dir.create(&body.out)?;
    let export = api
        .backend
        .export(ExportWhich {
            dataset: body.dataset,
            publisher: body.publisher,
            department: body.department,
            version: body.version,
            destination: format!("file {}", body.out.display()),
        })
        .await?;
    let summary = export.summary;
    let write = export.write;
    let path = tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        let file = out
            .take_file()
            .ok_or_else(|| anyhow::anyhow!("export file already taken"))?;
        let mut w = BufWriter::with_capacity(1024 * 1024, file);
        write(&mut w)?;
        let file = confine::finish(w)?;
        out.commit(file)
    })
    .await
    .map_err(|e| ApiError::internal(&e.into()))?
    .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(ExportFileReport {
        summary,
        out: path.display().to_string(),
    }))
}

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
async fn catalog_list<B: Backend>(
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
async fn catalog_show<B: Backend>(
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
async fn catalog_search<B: Backend>(
    State(api): State<Api<B>>,
    Query(params): Query<CatalogSearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.catalog_search(params)).await.map(Json)
}

/// The department's catalog once the entries are in it.
#[derive(Serialize, ToSchema)]
struct CatalogSubmitted {
    /// The catalog's new version (sequence number).
    seq: u64,
}

/// One catalog entry or an array of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum OneOrMany {
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
async fn catalog_add<B: Backend>(
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

#[utoipa::path(
    get, path = "/api/peers",
    summary = "Connected peers and their verified regions",
    tag = "status",
    responses(
        (status = 200, description = "Connected peers and their verified regions", body = Vec<views::PeerView>),
        (status = 503, description = "The node did not answer in time.", body = ErrorBody),
    ),
)]
async fn peers<B: Backend>(State(api): State<Api<B>>) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.peers()).await.map(Json)
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
async fn revocations<B: Backend>(
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
async fn revoke<B: Backend>(
    State(api): State<Api<B>>,
    Json(params): Json<RevokeParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.revoke(params)).await.map(Json)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ShareListQuery {
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
async fn share_list<B: Backend>(
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
async fn share_show<B: Backend>(
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
async fn share_file<B: Backend>(
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
async fn share_act<B: Backend>(
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
struct DeliverQuery {
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
async fn share_deliver<B: Backend>(
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
async fn share_coordinate<B: Backend>(
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
async fn share_lookup<B: Backend>(
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReviewListQuery {
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
async fn review_list<B: Backend>(
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
async fn review_submit<B: Backend>(
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
async fn review_decide<B: Backend>(
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
async fn duty_change<B: Backend>(
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
async fn duty_extend<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<u64>,
    Json(params): Json<DutyExtendParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    let request = ReviewRequest::ExtendUpdate { id, params };
    answer(api.backend.catalog_review(request)).await.map(Json)
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
async fn departments<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.departments()).await.map(Json)
}

/// A department to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DepartmentAddBody {
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
async fn department_add<B: Backend>(
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
async fn metrics<B: Backend>(
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
struct LedgerQuery {
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
async fn ledger<B: Backend>(
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
async fn ledger_verify<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    // Not under the answer timeout: a long log takes seconds to read through.
    api.backend.ledger_verify().await.map(Json)
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
async fn ledger_record<B: Backend>(
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

/// Unmatched paths: a JSON 404 (behind the gate like everything else).
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "no such route"})),
    )
        .into_response()
}
