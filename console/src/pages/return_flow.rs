//! Return flow (数据回流, Art. 24): each dataset version held here and its delivery to every
//! child region — complete / partial / pending / stuck, regions, records and bytes delivered of
//! those expected, the latest receipt, and a bar — as a tree opened level by level down to
//! townships (`?region=`), with the delivery's time line; kept live by [`crate::events`].

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use backflow_api::Backend;
use backflow_topology::RegionCode;
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
    /// The region whose children to list (the delivery tree opened there); this node's when
    /// absent.
    #[serde(default)]
    pub region: Option<String>,
}

/// A dataset name over [`DATASET_BYTES_MAX`], or a region that is not a region code.
#[derive(Debug)]
pub struct BadQuery;

impl DatasetQuery {
    /// The dataset asked for (`None`: all), or `Err` if the name is over its bound.
    pub fn dataset(&self) -> Result<Option<String>, BadQuery> {
        match self.dataset.as_deref().map(str::trim) {
            Some(d) if d.len() > DATASET_BYTES_MAX => Err(BadQuery),
            Some("") | None => Ok(None),
            Some(d) => Ok(Some(d.to_string())),
        }
    }

    /// The region asked for (`None`: this node's), or `Err` if it is not a region code. Whether
    /// it lies inside this node's jurisdiction is the node's to say.
    pub fn region(&self) -> Result<Option<String>, BadQuery> {
        match self.region.as_deref().map(str::trim) {
            Some("") | None => Ok(None),
            Some(r) => RegionCode::parse(r)
                .map(|code| Some(code.to_string()))
                .map_err(|_| BadQuery),
        }
    }

    /// The live-update stream for the same view.
    pub fn events_url(dataset: Option<&str>, region: Option<&str>) -> String {
        let mut url = "/ui/events".to_string();
        let mut sep = '?';
        for (key, value) in [("dataset", dataset), ("region", region)] {
            if let Some(v) = value {
                url.push(sep);
                url.push_str(key);
                url.push('=');
                url.push_str(&format::query_escape(v));
                sep = '&';
            }
        }
        url
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
    let (Ok(dataset), Ok(region)) = (q.dataset(), q.region()) else {
        return layout::bad_input(&ctx);
    };
    let l = ctx.lang;
    let status = answer(c.backend.status(dataset.clone(), region.clone())).await;
    let events = DatasetQuery::events_url(dataset.as_deref(), region.as_deref());
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
                Ok(s) => (fragment(l, c.region, s, format::now_ms())),
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
        "stuck" => l.t(Msg::StateStuck),
        _ => l.t(Msg::StatePending),
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "complete" => "state complete",
        "partial" => "state partial",
        "stuck" => "state stuck",
        _ => "state pending",
    }
}

fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// The delivery of every dataset in `status` (the node's `DatasetStatus` array) below the
/// region it lists (`top`: this node's jurisdiction): what the page shows first and what each
/// live event replaces it with.
pub fn fragment(l: Lang, top: RegionCode, status: &Value, now: u64) -> Markup {
    let all = status.as_array().map_or(&[][..], Vec::as_slice);
    html! {
        @if all.is_empty() { p.muted { (l.t(Msg::NoDatasets)) } }
        @for d in all { (dataset(l, top, d, now)) }
    }
}

fn dataset(l: Lang, top: RegionCode, d: &Value, now: u64) -> Markup {
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
    let at = RegionCode::parse(s(d, "region")).unwrap_or(top);
    let stuck = children.iter().any(|c| c["state"] == "stuck");
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
            (crumbs(l, top, at, name))
            @if !children.is_empty() {
                table {
                    tr {
                        th { (l.t(Msg::Region)) } th { (l.t(Msg::State)) } th { (l.t(Msg::Progress)) }
                        th { (l.t(Msg::Regions)) } th { (l.t(Msg::Records)) } th { (l.t(Msg::Bytes)) }
                        th { (l.t(Msg::LastReceipt)) }
                    }
                    @for child in children { (child_row(l, name, child, now)) }
                }
                @if stuck { p.muted { (l.t(Msg::StuckHint)) } }
                (crate::timeline::chart(l, u(d, "issued_at"), children, now))
            }
        }
    }
}

/// The way from this node's jurisdiction down to the level shown, each step a link.
fn crumbs(l: Lang, top: RegionCode, at: RegionCode, dataset: &str) -> Markup {
    let mut path = Vec::new();
    let mut cur = Some(at);
    while let Some(r) = cur.filter(|r| top.contains(*r)) {
        path.push(r);
        cur = r.parent();
    }
    path.reverse();
    html! {
        nav.crumbs {
            @for (i, r) in path.iter().enumerate() {
                @if i > 0 { " › " }
                @let code = r.to_string();
                @let label = format::region_name(&code).map_or(code.clone(), str::to_string);
                @if *r == at {
                    strong { (label) }
                } @else {
                    a href=(tree_link(dataset, &code)) { (label) }
                }
                @if i == 0 { " " span.muted { "(" (l.t(Msg::TreeTop)) ")" } }
            }
        }
    }
}

fn tree_link(dataset: &str, region: &str) -> String {
    format!(
        "/ui/return-flow?dataset={}&region={}",
        format::query_escape(dataset),
        format::query_escape(region)
    )
}

fn child_row(l: Lang, dataset: &str, c: &Value, now: u64) -> Markup {
    let state = s(c, "state");
    let code = s(c, "region");
    // The division table's name; the node's own name if the code is not in it.
    let name = format::region_name(code).unwrap_or_else(|| s(c, "name"));
    let by_bytes = fraction(u(c, "bytes_delivered"), u(c, "bytes_expected"));
    let by_regions = fraction(u(c, "regions_delivered"), u(c, "regions_expected"));
    html! {
        tr {
            td {
                @if c["has_children"] == true {
                    a href=(tree_link(dataset, code)) { (name) }
                } @else {
                    (name)
                }
                " " span.muted { (code) }
            }
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
