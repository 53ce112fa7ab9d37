//! Overview (概览): this node's jurisdiction and its place in the division tree (the regions
//! above it and below it, by name), the peers connected now with the region their certificate
//! proved and the transport, and the datasets held with their delivery at a glance.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use backflow_api::Backend;
use backflow_topology::{RegionCode, Topology};
use maud::{html, Markup};
use serde_json::Value;

use crate::format::{self, fraction, region_label};
use crate::guard::Ctx;
use crate::i18n::{Lang, Msg};
use crate::layout::{self, bar, Nav};
use crate::{answer, Console};

/// Children listed by name; a national node has 31, a county a few dozen townships.
const CHILDREN_SHOWN_MAX: usize = 200;

pub async fn show<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let s = match ctx.session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !s.is_node() {
        return Redirect::to("/ui/sharing").into_response();
    }
    let l = ctx.lang;
    let (peers, status, health) = tokio::join!(
        answer(c.backend.peers()),
        answer(c.backend.status(None, None)),
        answer(c.backend.health())
    );
    let body = html! {
        (jurisdiction(l, c.region))
        @if let (Some(parent), Ok(p)) = (c.region.parent(), &peers) {
            p { (l.t(Msg::Upstream)) (l.colon()) (upstream(l, parent, p)) }
        }
        @match &health {
            Ok(h) => (health_line(l, h, format::now_ms())),
            Err(e) => (layout::error_box(l, e)),
        }
        h2 { (l.t(Msg::Peers)) }
        @match &peers {
            Ok(p) => (peer_table(l, c.region, p)),
            Err(e) => (layout::error_box(l, e)),
        }
        h2 { (l.t(Msg::DatasetsSummary)) }
        @match &status {
            Ok(s) => (datasets(l, s)),
            Err(e) => (layout::error_box(l, e)),
        }
    };
    layout::page(&ctx, Nav::Overview, l.t(Msg::NavOverview), body)
}

fn level_name(l: Lang, code: RegionCode) -> &'static str {
    match l {
        Lang::Zh => code.level().name_zh(),
        Lang::En => code.level().name(),
    }
}

fn jurisdiction(l: Lang, region: RegionCode) -> Markup {
    let topo = Topology::china();
    let name = topo.get(region).map_or("", |r| r.name.as_str());
    let mut above: Vec<RegionCode> = region.ancestors().collect();
    above.reverse();
    let children = topo.children(region);
    html! {
        section {
            dl.fields {
                dt { (l.t(Msg::Jurisdiction)) } dd { strong { (name) } }
                dt { (l.t(Msg::Code)) } dd { code { (region) } }
                dt { (l.t(Msg::Level)) } dd { (level_name(l, region)) }
                dt { (l.t(Msg::Ancestors)) }
                dd {
                    @if above.is_empty() { (l.t(Msg::None)) }
                    @for (i, a) in above.iter().enumerate() {
                        @if i > 0 { " › " }
                        (topo.get(*a).map_or(a.to_string(), |r| r.name.clone()))
                    }
                }
                dt { (l.t(Msg::Children)) " (" (children.len()) ")" }
                dd {
                    @if children.is_empty() { (l.t(Msg::None)) }
                    ul.names {
                        @for child in children.iter().take(CHILDREN_SHOWN_MAX) {
                            li { (topo.get(*child).map_or("", |r| r.name.as_str())) " " span.muted { (child) } }
                        }
                    }
                }
            }
        }
    }
}

/// The node's health: the data directory's disk (red when low) and the latest word from
/// upstream.
fn health_line(l: Lang, h: &Value, now: u64) -> Markup {
    let disk = &h["disk"];
    let (free, total) = (
        disk["free_bytes"].as_u64().unwrap_or(0),
        disk["total_bytes"].as_u64().unwrap_or(0),
    );
    let percent = (free as f64 * 100.0 / total.max(1) as f64).round();
    html! {
        p #health {
            (l.t(Msg::Disk)) (l.colon())
            span class=(if disk["low"] == true { "error" } else { "ok" }) {
                (format::bytes(free)) " / " (format::bytes(total)) " " (l.t(Msg::DiskFree))
                " (" (percent) " %)"
                @if disk["low"] == true { " · " (l.t(Msg::DiskLow)) }
            }
            @if !h["parent"].is_null() {
                " · " (l.t(Msg::UpstreamContact)) (l.colon())
                @match h["parent"]["last_contact_at"].as_u64() {
                    Some(at) => (format::moment(l, at, now)),
                    None => (l.t(Msg::None)),
                }
            }
        }
    }
}

/// `/ip4/…/tcp/…` or `/…/udp/…/quic-v1`.
fn transport(addr: &str) -> &'static str {
    if addr.contains("/quic") {
        "QUIC"
    } else if addr.contains("/tcp/") {
        "TCP"
    } else {
        "—"
    }
}

fn relation(l: Lang, me: RegionCode, peer: Option<RegionCode>) -> &'static str {
    match peer {
        Some(p) if Some(p) == me.parent() => l.t(Msg::RelParent),
        Some(p) if p.parent() == Some(me) => l.t(Msg::RelChild),
        Some(_) => l.t(Msg::RelOther),
        None => l.t(Msg::Unverified),
    }
}

/// Whether the parent's node is connected now, and by which transport.
fn upstream(l: Lang, parent: RegionCode, peers: &Value) -> Markup {
    let parent = parent.to_string();
    let up = peers
        .as_array()
        .and_then(|all| all.iter().find(|p| p["region"] == parent.as_str()));
    html! {
        @match up {
            Some(p) => span.ok { (l.t(Msg::Connected)) " · " (region_label(&parent)) " · "
                (transport(p["addr"].as_str().unwrap_or(""))) },
            None => span.error { (l.t(Msg::NotConnected)) " · " (region_label(&parent)) },
        }
    }
}

fn peer_table(l: Lang, me: RegionCode, peers: &Value) -> Markup {
    let peers = peers.as_array().map_or(&[][..], Vec::as_slice);
    html! {
        @if peers.is_empty() {
            p.muted { (l.t(Msg::NoPeers)) }
        } @else {
            table {
                tr {
                    th { (l.t(Msg::VerifiedRegion)) } th { (l.t(Msg::Relation)) }
                    th { (l.t(Msg::Transport)) } th { (l.t(Msg::PeerId)) } th { (l.t(Msg::Address)) }
                }
                @for p in peers {
                    @let region = p["region"].as_str();
                    @let addr = p["addr"].as_str().unwrap_or("");
                    tr {
                        td { (region.map_or_else(|| l.t(Msg::Unverified).to_string(), region_label)) }
                        td { (relation(l, me, region.and_then(|r| RegionCode::parse(r).ok()))) }
                        td { (transport(addr)) }
                        td.mono { (format::short(p["peer"].as_str().unwrap_or(""), 16)) "…" }
                        td.mono { (addr) }
                    }
                }
            }
        }
    }
}

fn datasets(l: Lang, status: &Value) -> Markup {
    let all = status.as_array().map_or(&[][..], Vec::as_slice);
    let complete = all.iter().filter(|d| d["complete"] == true).count();
    html! {
        @if all.is_empty() {
            p.muted { (l.t(Msg::NoDatasets)) }
        } @else {
            div.figures {
                div { strong { (all.len()) } (l.t(Msg::DatasetsHeld)) }
                div { strong { (complete) } (l.t(Msg::DatasetsComplete)) }
            }
            table {
                tr {
                    th { (l.t(Msg::Dataset)) } th { (l.t(Msg::Version)) } th { (l.t(Msg::Publisher)) }
                    th { (l.t(Msg::Regions)) } th { (l.t(Msg::Progress)) }
                }
                @for d in all {
                    @let name = d["dataset"].as_str().unwrap_or("");
                    @let delivered = d["regions_delivered"].as_u64().unwrap_or(0);
                    @let expected = d["regions_expected"].as_u64().unwrap_or(0);
                    @let state = if d["complete"] == true { "complete" } else if delivered > 0 { "partial" } else { "pending" };
                    tr {
                        td { a href={ "/ui/return-flow?dataset=" (format::query_escape(name)) } { (name) } }
                        td.num { (d["version"].as_u64().unwrap_or(0)) }
                        td { (region_label(d["publisher"].as_str().unwrap_or(""))) " " (d["department"].as_str().unwrap_or("")) }
                        td.num { (delivered) " / " (expected) }
                        td { (bar(fraction(delivered, expected), state, name)) }
                    }
                }
            }
        }
    }
}
