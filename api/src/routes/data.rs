//! Publishing and exporting: the data streamed in as a request body or read from the import
//! directory, and streamed out verified or written into the export directory; a publish's
//! progress as a job.

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use backflow_ingest::source::{FileFormat, FILE_FORMAT_NAMES};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::io::{ReaderStream, SyncIoBridge};
use utoipa::{IntoParams, ToSchema};

use super::{body_reader, file_format_named, Api, EXPORTS_RUNNING_MAX, EXPORT_PIPE_BYTES};
use crate::backend::{Backend, ExportWhich, PublishParams};
use crate::confine;
use crate::error::ApiError;
use crate::jobs::JobView;
use crate::openapi::views::{self, ErrorBody};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishQuery {
    /// The dataset's name (a new version of it if it exists).
    dataset: String,
    /// The field holding each record's region code (a 9-digit township or 12-digit village).
    region_field: String,
    /// `csv`, `ndjson`, `xlsx` (the first worksheet; converted to CSV records) or `parquet`
    /// (converted to NDJSON records); the mapping is in node/README.md.
    format: String,
    /// Reject 12-digit codes of unknown villages instead of rolling them up to their township.
    #[serde(default)]
    strict_villages: bool,
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
pub(super) async fn publish_stream<B: Backend>(
    State(api): State<Api<B>>,
    Query(q): Query<PublishQuery>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let format = file_format_named(&q.format)?;
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
pub(super) struct PublishFileBody {
    dataset: String,
    region_field: String,
    /// A path inside `import_dir` (relative to it, or absolute within it).
    #[schema(value_type = String)]
    file: PathBuf,
    /// `csv`, `ndjson`, `xlsx` or `parquet`; absent: told by the file name's extension.
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    strict_villages: bool,
}

/// A publish started in the background: follow it at `GET /api/jobs/{job}`.
#[derive(Serialize, ToSchema)]
pub(super) struct JobStarted {
    job: u64,
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
pub(super) async fn publish_file<B: Backend>(
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
        Some(f) => file_format_named(&f)?,
        None => FileFormat::from_path(&body.file)
            .map(|f| f.name().to_string())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "cannot tell the format from the file name; pass format: {FILE_FORMAT_NAMES}"
                ))
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
pub(super) async fn job<B: Backend>(
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
pub(super) struct ExportQuery {
    /// The dataset's name.
    dataset: String,
    /// The version (default: the latest held).
    version: Option<u64>,
    /// The publisher's region code: needed only when datasets of this name from more than
    /// one owner are held here.
    publisher: Option<String>,
    /// The publisher's department (as `publisher`).
    department: Option<String>,
    /// `xlsx` or `parquet`: the records as a table (every column text; node/README.md has
    /// the mapping). Absent: the published records, byte for byte.
    format: Option<String>,
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
        (status = 400, description = "A publisher that is not a region code, or an unknown format", body = ErrorBody),
        (status = 404, description = "No such dataset version held here (or several owners: name publisher and department)", body = ErrorBody),
        (status = 503, description = "Exports are already running at the bound", body = ErrorBody),
    ),
)]
pub(super) async fn export_stream<B: Backend>(
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
            format: q.format.as_deref().map(file_format_named).transpose()?,
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
pub(super) struct ExportFileBody {
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
    /// `xlsx` or `parquet`: the records as a table. Absent: the published records, byte for
    /// byte.
    #[serde(default)]
    format: Option<String>,
}

/// What an export to a file wrote, and where.
#[derive(Serialize, ToSchema)]
pub(super) struct ExportFileReport {
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
pub(super) async fn export_file<B: Backend>(
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
            format: body.format.as_deref().map(file_format_named).transpose()?,
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
