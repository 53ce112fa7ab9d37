//! Local HTTP JSON API (axum), loopback by default, for ministry systems and for the CLI:
//!
//! | method | path                 | body / query                                   |
//! |--------|----------------------|------------------------------------------------|
//! | POST   | `/api/publish`       | `{dataset, region_field, file, format?, strict_villages?}` → job |
//! | GET    | `/api/jobs/{id}`     | publish progress and result                    |
//! | GET    | `/api/status`        | `?dataset=NAME`                                |
//! | POST   | `/api/export`        | `{dataset, version?, out}`                     |
//! | GET    | `/api/catalog`       | the aggregated catalog of this subtree         |
//! | GET    | `/api/catalog/{id}`  | entries with this id                           |
//! | POST   | `/api/catalog`       | a `CatalogEntry` or an array of them           |
//! | GET    | `/api/peers`         | connected peers and their verified regions     |
//!
//! Paths in publish/export are files on the node's host: the API is for local systems.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backflow_protocol::catalog::CatalogEntry;
use serde::{Deserialize, Serialize};

use crate::node::NodeHandle;
use crate::partition::{Format, RegionField, VillagePolicy};
use crate::publish::{work_dir, PublishReport, PublishRequest};

/// Publish jobs remembered for progress queries; the oldest finished ones are forgotten.
const JOBS_MAX: usize = 256;
/// Request body limit: catalog batches are small; files are passed by path.
const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub node: NodeHandle,
    pub data_dir: PathBuf,
    pub department: String,
    jobs: Arc<Mutex<HashMap<u64, Arc<Job>>>>,
    next_job: Arc<AtomicU64>,
}

#[derive(Default)]
struct Job {
    bytes_read: AtomicU64,
    bytes_total: u64,
    result: Mutex<Option<std::result::Result<PublishReport, String>>>,
}

#[derive(Serialize)]
pub struct JobView {
    pub state: &'static str,
    pub bytes_read: u64,
    pub bytes_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct PublishBody {
    pub dataset: String,
    pub region_field: String,
    pub file: PathBuf,
    #[serde(default)]
    pub format: Option<String>,
    /// Reject 12-digit codes of unknown villages instead of rolling them up to their township
    /// with a warning (see [`VillagePolicy`]). Default false.
    #[serde(default)]
    pub strict_villages: bool,
}

#[derive(Deserialize)]
pub struct ExportBody {
    pub dataset: String,
    #[serde(default)]
    pub version: Option<u64>,
    pub out: PathBuf,
}

#[derive(Deserialize)]
pub struct StatusQuery {
    pub dataset: Option<String>,
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

pub fn router(node: NodeHandle, data_dir: PathBuf, department: String) -> Router {
    let state = ApiState {
        node,
        data_dir,
        department,
        jobs: Arc::default(),
        next_job: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/api/publish", post(publish))
        .route("/api/jobs/{id}", get(job))
        .route("/api/status", get(status))
        .route("/api/export", post(export))
        .route("/api/catalog", get(catalog_list).post(catalog_add))
        .route("/api/catalog/{id}", get(catalog_show))
        .route("/api/peers", get(peers))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

async fn publish(
    State(st): State<ApiState>,
    Json(body): Json<PublishBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let format = match &body.format {
        Some(f) => Format::parse(f).map_err(bad)?,
        None => Format::from_path(&body.file).ok_or_else(|| {
            bad("cannot tell the format from the file name; pass format: csv or ndjson")
        })?,
    };
    let total = std::fs::metadata(&body.file)
        .map_err(|e| bad(format!("{}: {e}", body.file.display())))?
        .len();
    let id = st.next_job.fetch_add(1, Ordering::Relaxed);
    let job = Arc::new(Job {
        bytes_total: total,
        ..Job::default()
    });
    {
        let mut jobs = st.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= JOBS_MAX {
            let finished: Vec<u64> = jobs
                .iter()
                .filter(|(_, j)| j.result.lock().map(|r| r.is_some()).unwrap_or(true))
                .map(|(k, _)| *k)
                .collect();
            for k in finished {
                jobs.remove(&k);
            }
        }
        jobs.insert(id, Arc::clone(&job));
    }
    let req = PublishRequest {
        dataset: body.dataset.clone(),
        region_field: RegionField::new(
            body.region_field,
            VillagePolicy::from_strict(body.strict_villages),
        ),
        format,
        input: body.file,
        department: st.department.clone(),
        work_dir: work_dir(&st.data_dir, &body.dataset),
        rejects_path: Some(st.data_dir.join(format!("rejects-{id}.tsv"))),
    };
    let node = st.node.clone();
    tokio::spawn(async move {
        let result = run_publish(node, req, Arc::clone(&job)).await;
        *job.result.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(result.map_err(|e| format!("{e:#}")));
    });
    Ok(Json(serde_json::json!({ "job": id })))
}

async fn run_publish(
    node: NodeHandle,
    req: PublishRequest,
    job: Arc<Job>,
) -> Result<PublishReport> {
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let j = Arc::clone(&job);
    // Mirror the node's progress counter into the job.
    let mirror = tokio::spawn(async move {
        loop {
            j.bytes_read
                .store(p.load(Ordering::Relaxed), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let dataset = req.dataset.clone();
    let result = node.publish_file(req, Arc::clone(&progress)).await;
    mirror.abort();
    job.bytes_read
        .store(progress.load(Ordering::Relaxed), Ordering::Relaxed);
    let (o, hashes) = result?;
    Ok(PublishReport {
        dataset,
        version: o.version,
        manifests: hashes.iter().map(hex::encode).collect(),
        partitions: o.partitions,
        records: o.records,
        bytes: o.bytes,
        summary: o.summary,
    })
}

async fn job(State(st): State<ApiState>, Path(id): Path<u64>) -> Result<Json<JobView>, ApiError> {
    let job = st
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let result = job.result.lock().unwrap_or_else(|e| e.into_inner());
    let (state, report, error) = match &*result {
        None => ("running", None, None),
        Some(Ok(r)) => ("done", serde_json::to_value(r).ok(), None),
        Some(Err(e)) => ("failed", None, Some(e.clone())),
    };
    Ok(Json(JobView {
        state,
        bytes_read: job.bytes_read.load(Ordering::Relaxed),
        bytes_total: job.bytes_total,
        report,
        error,
    }))
}

async fn status(
    State(st): State<ApiState>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = st.node.status(q.dataset).await.map_err(internal)?;
    Ok(Json(
        serde_json::to_value(s).map_err(|e| internal(e.into()))?,
    ))
}

async fn export(
    State(st): State<ApiState>,
    Json(body): Json<ExportBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let records = st
        .node
        .record(&body.dataset, body.version)
        .await
        .map_err(bad)?;
    let store = st.node.store.clone();
    let region = st.node.region();
    let summary = tokio::task::spawn_blocking(move || {
        let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
        crate::export::export_all(&store, &records, region, &body.out)
    })
    .await
    .map_err(|e| internal(e.into()))?
    .map_err(internal)?;
    Ok(Json(
        serde_json::to_value(summary).map_err(|e| internal(e.into()))?,
    ))
}

async fn catalog_list(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let c = st.node.catalogs().await.map_err(internal)?;
    Ok(Json(
        serde_json::to_value(c).map_err(|e| internal(e.into()))?,
    ))
}

async fn catalog_show(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = st.node.catalogs().await.map_err(internal)?;
    let found: Vec<serde_json::Value> = c
        .iter()
        .flat_map(|cat| {
            cat.entries.iter().filter(|e| e.id == id).map(|e| {
                serde_json::json!({ "region": cat.region, "department": cat.department, "seq": cat.seq, "entry": e })
            })
        })
        .collect();
    if found.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no catalog entry {id:?}"),
        ));
    }
    Ok(Json(serde_json::Value::Array(found)))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<CatalogEntry>),
    One(Box<CatalogEntry>),
}

async fn catalog_add(
    State(st): State<ApiState>,
    Json(body): Json<OneOrMany>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = match body {
        OneOrMany::Many(v) => v,
        OneOrMany::One(e) => vec![*e],
    };
    let seq = st
        .node
        .catalog_submit(st.department.clone(), entries)
        .await
        .map_err(bad)?;
    Ok(Json(serde_json::json!({ "seq": seq })))
}

async fn peers(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let p = st.node.peers().await.map_err(internal)?;
    Ok(Json(
        serde_json::to_value(p).map_err(|e| internal(e.into()))?,
    ))
}

/// A tiny blocking HTTP/1.0 client for the CLI (one request per connection, loopback only).
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
            format!("cannot reach the node's API at {addr}: is `backflow run` running?")
        })?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    let value: serde_json::Value = serde_json::from_str(body)
        .with_context(|| format!("API returned non-JSON ({code}): {body}"))?;
    if code >= 400 {
        bail!(
            "{}",
            value.get("error").and_then(|e| e.as_str()).unwrap_or(body)
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_body_strict_villages_defaults_to_false() {
        let body = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"dataset": "d", "region_field": "v", "file": "/x.csv"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<PublishBody>(v).unwrap()
        };
        assert!(!body(serde_json::json!({})).strict_villages);
        assert!(body(serde_json::json!({"strict_villages": true})).strict_villages);
        assert!(!body(serde_json::json!({"strict_villages": false})).strict_villages);
    }
}
