//! Return flow (数据回流, Art. 24): each dataset version held here and its delivery to every
//! child region — complete / partial / pending, regions, records and bytes delivered of those
//! expected, the latest receipt, and a bar — kept live by [`crate::events`].

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use backflow_api::Backend;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::format::{self, fraction, moment, region_label};
use crate::guard::Ctx;
use crate::i18n::{Lang, Msg};
use crate::layout::{self, bar, Nav};
use crate::{answer, Console};

/// A dataset name (the protocol's bound on names).
pub const DATASET_BYTES_MAX: usize = 256;

#[derive(Deserialize, Default)]
pub struct DatasetQuery {
    #[serde(default)]
    pub dataset: Option<String>,
}

/// A dataset name over [`DATASET_BYTES_MAX`].
#[derive(Debug)]
pub struct TooLong;

impl DatasetQuery {
    /// The dataset asked for (`None`: all), or `Err` if the name is over its bound.
    pub fn dataset(&self) -> Result<Option<String>, TooLong> {
        match self.dataset.as_deref().map(str::trim) {
            Some(d) if d.len() > DATASET_BYTES_MAX => Err(TooLong),
            Some("") | None => Ok(None),
            Some(d) => Ok(Some(d.to_string())),
        }
    }
}

pub async fn show<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DatasetQuery>,
) -> Response {
    if let Err(r) = ctx.node_session() {
        return *r;
    }
    let Ok(dataset) = q.dataset() else {
        return layout::bad_input(&ctx);
    };
    let l = ctx.lang;
    let status = answer(c.backend.status(dataset.clone())).await;
    let events = match &dataset {
        Some(d) => format!("/ui/events?dataset={}", format::query_escape(d)),
        None => "/ui/events".to_string(),
    };
    let body = html! {
        p.intro { (l.t(Msg::ReturnFlowIntro)) " " span #live .live.off { (l.t(Msg::Live)) } }
        (super::publish::form(&ctx))
        form.inline method="get" action="/ui/return-flow" {
            input type="search" name="dataset" maxlength="256" value=[dataset.as_deref()]
                placeholder=(l.t(Msg::AllDatasets));
            button type="submit" { (l.t(Msg::Show)) }
        }
        div #delivery data-events=(events) {
            @match &status {
                Ok(s) => (fragment(l, s, format::now_ms())),
                Err(e) => (layout::error_box(l, e)),
            }
        }
    };
    layout::page(&ctx, Nav::ReturnFlow, l.t(Msg::NavReturnFlow), body)
}

fn state_label(l: Lang, state: &str) -> &'static str {
    match state {
        "complete" => l.t(Msg::StateComplete),
        "partial" => l.t(Msg::StatePartial),
        _ => l.t(Msg::StatePending),
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "complete" => "state complete",
        "partial" => "state partial",
        _ => "state pending",
    }
}

fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// The delivery of every dataset in `status` (the node's `DatasetStatus` array): what the
/// page shows first and what each live event replaces it with.
pub fn fragment(l: Lang, status: &Value, now: u64) -> Markup {
    let all = status.as_array().map_or(&[][..], Vec::as_slice);
    html! {
        @if all.is_empty() { p.muted { (l.t(Msg::NoDatasets)) } }
        @for d in all { (dataset(l, d, now)) }
    }
}

fn dataset(l: Lang, d: &Value, now: u64) -> Markup {
    let name = s(d, "dataset");
    let (delivered, expected) = (u(d, "regions_delivered"), u(d, "regions_expected"));
    let state = if d["complete"] == true {
        "complete"
    } else if delivered > 0 {
        "partial"
    } else {
        "pending"
    };
    let children = d["children"].as_array().map_or(&[][..], Vec::as_slice);
    html! {
        section {
            h2 {
                (name) " · " (l.t(Msg::Version)) " " (u(d, "version")) " "
                span class=(state_class(state)) { (state_label(l, state)) }
            }
            dl.fields {
                dt { (l.t(Msg::Publisher)) }
                dd {
                    (region_label(s(d, "publisher"))) " " (s(d, "department"))
                    @if d["published_here"] == true { " · " (l.t(Msg::PublishedHere)) }
                }
                dt { (l.t(Msg::HeldHere)) }
                dd {
                    (format::count(u(d, "records_here"))) " " (l.t(Msg::RecordsUnit)) " · "
                    (format::bytes(u(d, "bytes_here")))
                }
                dt { (l.t(Msg::Progress)) }
                dd {
                    (bar(fraction(delivered, expected), state, name)) " "
                    (delivered) " / " (expected) " " (l.t(Msg::RegionsUnit)) " · "
                    (format::count(u(d, "records_delivered"))) " " (l.t(Msg::RecordsUnit)) " · "
                    (format::bytes(u(d, "bytes_delivered")))
                }
            }
            @if !children.is_empty() {
                table {
                    tr {
                        th { (l.t(Msg::Region)) } th { (l.t(Msg::State)) } th { (l.t(Msg::Progress)) }
                        th { (l.t(Msg::Regions)) } th { (l.t(Msg::Records)) } th { (l.t(Msg::Bytes)) }
                        th { (l.t(Msg::LastReceipt)) }
                    }
                    @for child in children { (child_row(l, child, now)) }
                }
            }
        }
    }
}

fn child_row(l: Lang, c: &Value, now: u64) -> Markup {
    let state = s(c, "state");
    let code = s(c, "region");
    // The division table's name; the node's own name if the code is not in it.
    let name = format::region_name(code).unwrap_or_else(|| s(c, "name"));
    let by_bytes = fraction(u(c, "bytes_delivered"), u(c, "bytes_expected"));
    let by_regions = fraction(u(c, "regions_delivered"), u(c, "regions_expected"));
    html! {
        tr {
            td { (name) " " span.muted { (code) } }
            td { span class=(state_class(state)) { (state_label(l, state)) } }
            td { (bar(by_bytes.max(by_regions), state, name)) }
            td.num { (u(c, "regions_delivered")) " / " (u(c, "regions_expected")) }
            td.num { (format::count(u(c, "records_delivered"))) " / " (format::count(u(c, "records_expected"))) }
            td.num { (format::bytes(u(c, "bytes_delivered"))) " / " (format::bytes(u(c, "bytes_expected"))) }
            td {
                @match c["last_receipt_at"].as_u64() {
                    Some(at) => (moment(l, at, now)),
                    None => "—",
                }
            }
        }
    }
}
