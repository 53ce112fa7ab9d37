//! The routes. Every one sits behind the [`gate`](crate::gate) (Host and token).
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
use axum::routing::{get, post};
use axum::RequestExt;
use axum::{Extension, Json, Router};
use backflow_ingest::partition::Format;
use backflow_protocol::catalog::CatalogEntry;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::backend::{
    Backend, CatalogListParams, CatalogSearchParams, DutyChangeParams, DutyExtendParams,
    ExportWhich, PublishParams, ReviewDecideParams, ReviewRequest, ReviewSubmitParams,
    RevokeParams, ShareActParams, ShareFileParams, UseRecordParams,
};
use crate::confine::{self, Confined};
use crate::error::ApiError;
use crate::gate::{self, Gate, Principal};
use crate::jobs::{JobView, Jobs};

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

/// The API's router, gate included.
pub fn router<B: Backend>(backend: B, gate: Gate, dirs: Directories) -> Router {
    let api = Api {
        backend,
        dirs,
        jobs: Arc::default(),
        exports: Arc::new(Semaphore::new(EXPORTS_RUNNING_MAX)),
    };
    Router::new()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishQuery {
    dataset: String,
    region_field: String,
    format: String,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFileBody {
    dataset: String,
    region_field: String,
    file: PathBuf,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    strict_villages: bool,
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

async fn publish_file<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<PublishFileBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(serde_json::json!({ "job": id })))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    dataset: Option<String>,
    /// List the children of this region (inside the node's) instead of the node's.
    region: Option<String>,
}

async fn status<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.status(q.dataset, q.region))
        .await
        .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    dataset: String,
    version: Option<u64>,
    publisher: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportFileBody {
    dataset: String,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    department: Option<String>,
    out: PathBuf,
}

async fn export_file<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<ExportFileBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let mut v = serde_json::to_value(&summary).map_err(|e| ApiError::internal(&e.into()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("out".into(), path.display().to_string().into());
    }
    Ok(Json(v))
}

async fn catalog_list<B: Backend>(
    State(api): State<Api<B>>,
    Query(params): Query<CatalogListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.catalogs(params)).await.map(Json)
}

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

async fn catalog_search<B: Backend>(
    State(api): State<Api<B>>,
    Query(params): Query<CatalogSearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.catalog_search(params)).await.map(Json)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<CatalogEntry>),
    One(Box<CatalogEntry>),
}

async fn catalog_add<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<OneOrMany>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = match body {
        OneOrMany::Many(v) => v,
        OneOrMany::One(e) => vec![*e],
    };
    let seq = answer(api.backend.catalog_submit(entries)).await?;
    Ok(Json(serde_json::json!({ "seq": seq })))
}

async fn peers<B: Backend>(State(api): State<Api<B>>) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.peers()).await.map(Json)
}

async fn revocations<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.revocations()).await.map(Json)
}

async fn revoke<B: Backend>(
    State(api): State<Api<B>>,
    Json(params): Json<RevokeParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.revoke(params)).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareListQuery {
    #[serde(default)]
    overdue: bool,
}

async fn share_list<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<ShareListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.shares(q.overdue)).await.map(Json)
}

async fn share_show<B: Backend>(
    State(api): State<Api<B>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.share(id)).await.map(Json)
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverQuery {
    format: String,
    /// A service interface's key field (服务接口).
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

/// The provider's department sends the granted data (streamed, as for a publish); the node
/// stores it for the requester's node alone and records the start of delivery.
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinateParams {
    pub outcome: String,
    #[serde(default)]
    pub refer: bool,
}

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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupParams {
    pub keys: Vec<String>,
    #[serde(default)]
    pub department: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewListQuery {
    #[serde(default)]
    overdue: bool,
}

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

async fn departments<B: Backend>(
    State(api): State<Api<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.departments()).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentAddBody {
    name: String,
}

async fn department_add<B: Backend>(
    State(api): State<Api<B>>,
    Json(body): Json<DepartmentAddBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    answer(api.backend.department_add(body.name))
        .await
        .map(Json)
}

/// Unmatched paths: a JSON 404 (behind the gate like everything else).
/// For Prometheus (the node's token only: a scrape job sends it as a bearer token).
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Entries one ledger page holds at most (the node reads no more at once).
pub const LEDGER_PAGE_ENTRIES_MAX: usize = 1_000;

/// The compliance ledger (合规台账, Art. 29): the authority's to read.
async fn ledger<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    let limit = q.limit.unwrap_or(100).clamp(1, LEDGER_PAGE_ENTRIES_MAX);
    answer(api.backend.ledger(q.from, limit)).await.map(Json)
}

async fn ledger_verify<B: Backend>(
    State(api): State<Api<B>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_node()?;
    // Not under the answer timeout: a long log takes seconds to read through.
    api.backend.ledger_verify().await.map(Json)
}

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

pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "no such route"})),
    )
        .into_response()
}
