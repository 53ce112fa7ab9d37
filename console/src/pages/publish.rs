//! Publishing from the browser (数据回流发布, Art. 24): the return-flow page's form sends the
//! chosen file as the request body of `POST /ui/publish` (streamed to the partitioner as it
//! arrives, never buffered whole; the page shows the upload's progress), with the session's
//! CSRF token in the `x-csrf-token` header. The answer is an HTML fragment: the publish report
//! or the node's error. The authority's (the node's session) only, as in the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use backflow_api::{Backend, PublishParams};
use backflow_ingest::source::FileFormat;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::format;
use crate::guard::Ctx;
use crate::i18n::{Lang, Msg};
use crate::layout::{self, csrf_field};
use crate::Console;

/// Publishes from the console running at once (the API bounds its own separately).
pub const PUBLISHES_MAX: usize = 2;
/// Console publishes are numbered from here: apart from the API's jobs (numbered from 1),
/// so their scratch directories and rejects files never meet.
const JOB_FROM: u64 = 1 << 40;
static NEXT_JOB: AtomicU64 = AtomicU64::new(JOB_FROM);
/// A dataset name or a field name (the protocol's bound on names).
const NAME_BYTES_MAX: usize = backflow_protocol::limits::NAME_BYTES_MAX;

#[derive(Deserialize)]
pub struct PublishQuery {
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    region_field: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    strict_villages: bool,
}

fn fragment(status: StatusCode, body: Markup) -> Response {
    (status, Html(body.into_string())).into_response()
}

pub async fn publish<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<PublishQuery>,
    request: Request,
) -> Response {
    let s = match ctx.node_session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let l = ctx.lang;
    let presented = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !s.csrf_ok(presented) {
        return fragment(
            StatusCode::FORBIDDEN,
            html! { p.error { (l.t(Msg::CsrfRefused)) } },
        );
    }
    let (dataset, region_field) = (q.dataset.trim(), q.region_field.trim());
    let bad = |n: &str| n.is_empty() || n.len() > NAME_BYTES_MAX;
    let file_format = FileFormat::parse(&q.format)
        .ok()
        .filter(|_| !bad(dataset) && !bad(region_field));
    let Some(file_format) = file_format else {
        return fragment(
            StatusCode::BAD_REQUEST,
            html! { p.error { (l.t(Msg::BadInput)) } },
        );
    };
    let Ok(_permit) = c.shared.publishes.clone().try_acquire_owned() else {
        return fragment(
            StatusCode::SERVICE_UNAVAILABLE,
            html! { p.error { (l.t(Msg::Busy)) } },
        );
    };
    let params = PublishParams {
        dataset: dataset.to_string(),
        region_field: region_field.to_string(),
        format: file_format.name().to_string(),
        strict_villages: q.strict_villages,
    };
    let job = NEXT_JOB.fetch_add(1, Ordering::Relaxed);
    let input = backflow_api::routes::body_reader(request);
    // No time limit: a publish takes as long as its upload and partitioning.
    match c
        .backend
        .publish(job, params, input, Arc::new(AtomicU64::new(0)))
        .await
    {
        Ok(report) => fragment(StatusCode::OK, published(l, &report)),
        Err(e) => fragment(e.status, layout::error_box(l, &e)),
    }
}

/// The node's publish report (`PublishReport`).
fn published(l: Lang, r: &Value) -> Markup {
    let n = |f: &str| r[f].as_u64().unwrap_or(0);
    html! {
        p.ok {
            "✓ " (l.t(Msg::Published)) (l.colon())
            (r["dataset"].as_str().unwrap_or("")) " · " (l.t(Msg::Version)) " " (n("version")) " · "
            (format::count(n("partitions"))) " " (l.t(Msg::Partitions)) " · "
            (format::count(n("records"))) " " (l.t(Msg::RecordsUnit)) " · "
            (format::bytes(n("bytes")))
        }
    }
}

/// The form (the page's script sends it; without script nothing is sent).
pub fn form(ctx: &Ctx) -> Markup {
    let l = ctx.lang;
    html! {
        details.publish {
            summary { (l.t(Msg::PublishNew)) }
            form #publish .inline {
                (csrf_field(ctx))
                input type="file" name="file" required;
                input type="text" name="dataset" maxlength="256" required placeholder=(l.t(Msg::Dataset));
                input type="text" name="region_field" maxlength="256" required placeholder=(l.t(Msg::RegionField));
                // The script picks the format from the file's extension; the operator may
                // still change it.
                select name="format" {
                    @for f in FileFormat::ALL {
                        option value=(f.name()) { (f.label()) }
                    }
                }
                label { input type="checkbox" name="strict_villages" value="true"; " " (l.t(Msg::StrictVillages)) }
                button type="submit" { (l.t(Msg::Publish)) }
                progress #publish-progress max="100" value="0" {}
            }
            div #publish-result {}
        }
    }
}
