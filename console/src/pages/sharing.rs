//! Sharing (数据共享, Arts. 20–22): the share requests this node is a party to — received
//! (this node's department provides) and filed (it requests) — and those it supervises as the
//! parties' lowest common superior; each with its state, who acts next, and its deadline in
//! working days (剩余 N 个工作日), overdue first. A department's session sees its own only.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use backflow_api::Backend;
use maud::{html, Markup};
use serde_json::Value;

use crate::format::{self, origin_label, origin_region};
use crate::guard::Ctx;
use crate::i18n::{Lang, Msg};
use crate::layout::{self, Nav};
use crate::{answer, Console};

pub async fn show<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let session = match ctx.session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let l = ctx.lang;
    let here = c.region.to_string();
    let own = session.department().map(|d| format!("{here} {d}"));
    let body = match answer(c.backend.shares(false)).await {
        Err(e) => layout::error_box(l, &e),
        Ok(all) => {
            let mut all: Vec<&Value> = all.as_array().map_or(vec![], |a| a.iter().collect());
            // A department sees the requests it is a party to.
            if let Some(own) = &own {
                all.retain(|r| r["requester"] == own.as_str() || r["provider"] == own.as_str());
            }
            // Overdue first (the node sorts so already; kept whatever the order).
            all.sort_by_key(|r| r["deadline"]["overdue"] != true);
            let supervised = |r: &&Value| r["supervised"] == true;
            let provider_here =
                |r: &&Value| origin_region(r["provider"].as_str().unwrap_or("")) == here;
            let incoming: Vec<&Value> = all
                .iter()
                .copied()
                .filter(|r| !supervised(r) && provider_here(r))
                .collect();
            let outgoing: Vec<&Value> = all
                .iter()
                .copied()
                .filter(|r| !supervised(r) && !provider_here(r))
                .collect();
            let watched: Vec<&Value> = all.iter().copied().filter(supervised).collect();
            html! {
                p.intro { (l.t(Msg::SharingIntro)) }
                h2 { (l.t(Msg::Incoming)) " (" (incoming.len()) ")" }
                (table(l, &incoming))
                h2 { (l.t(Msg::Outgoing)) " (" (outgoing.len()) ")" }
                (table(l, &outgoing))
                @if !watched.is_empty() {
                    h2 { (l.t(Msg::Supervised)) " (" (watched.len()) ")" }
                    (table(l, &watched))
                }
            }
        }
    };
    layout::page(&ctx, Nav::Sharing, l.t(Msg::NavSharing), body)
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

fn deadline(l: Lang, d: &Value) -> Markup {
    if d.is_null() {
        return html! { "—" };
    }
    html! {
        (text(d, "due"))
        @if let Some(article) = d["article"].as_u64() {
            span.muted { " (" @if l == Lang::Zh { "第" (article) "条" } @else { "Art. " (article) } ")" }
        }
        br;
        @if d["overdue"] == true {
            span.overdue { (l.t(Msg::Overdue)) }
        } @else if let Some(n) = d["working_days_left"].as_u64() {
            (l.working_days_left(u32::try_from(n).unwrap_or(u32::MAX)))
        }
    }
}

/// What else the case carries, folded: the answer (a grant's conditions or a refusal's
/// reasons), the incomplete-material notice, delivery, suspension, ending, disputes (Art. 28),
/// corrections (Art. 26) and the provider's consents to pass the data on (Art. 25).
fn details(l: Lang, r: &Value) -> Markup {
    let lines = |field: &str| -> Vec<String> {
        match &r[field] {
            Value::String(t) => vec![t.clone()],
            Value::Array(all) => all
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let parts: Vec<(Msg, Vec<String>)> = [
        (Msg::Answer, lines("answer")),
        (Msg::Notice, lines("notice")),
        (Msg::Suspension, lines("suspension")),
        (Msg::Ending, lines("ending")),
        (Msg::Disputes, lines("disputes")),
        (Msg::Corrections, lines("corrections")),
        (Msg::Consents, lines("consents")),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    let delivery = r["delivery"]["dataset"].as_str();
    html! {
        @if parts.is_empty() && delivery.is_none() { "—" } @else {
            details {
                summary { (l.t(Msg::More)) }
                dl.fields {
                    @for (msg, texts) in &parts {
                        dt { (l.t(*msg)) }
                        dd { @for (i, t) in texts.iter().enumerate() { @if i > 0 { br; } (t) } }
                    }
                    @if let Some(d) = delivery {
                        dt { (l.t(Msg::Dataset)) } dd.mono { (d) }
                    }
                }
            }
        }
    }
}

fn owner(l: Lang, r: &Value) -> &str {
    match text(r, "owner") {
        "requester" => l.t(Msg::Requester),
        "provider" => l.t(Msg::Provider),
        _ => "—",
    }
}

fn table(l: Lang, rows: &[&Value]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { (l.t(Msg::NoRequests)) }
        } @else {
            table {
                tr {
                    th { (l.t(Msg::RequestId)) } th { (l.t(Msg::Entry)) } th { (l.t(Msg::Requester)) }
                    th { (l.t(Msg::Provider)) } th { (l.t(Msg::State)) } th { (l.t(Msg::Owner)) }
                    th { (l.t(Msg::Deadline)) } th { (l.t(Msg::Method)) } th { (l.t(Msg::Scenario)) }
                    th { (l.t(Msg::UseUntil)) } th { (l.t(Msg::More)) }
                }
                @for r in rows {
                    tr class=[(r["deadline"]["overdue"] == true).then_some("overdue")] {
                        td.mono { (format::short(text(r, "id"), 12)) }
                        td { (text(r, "entry")) }
                        td { (origin_label(text(r, "requester"))) }
                        td { (origin_label(text(r, "provider"))) }
                        td {
                            @match l {
                                Lang::Zh => { (text(r, "state_zh")) }
                                Lang::En => { (text(r, "state").replace('_', " ")) }
                            }
                        }
                        td { (owner(l, r)) }
                        td { (deadline(l, &r["deadline"])) }
                        td { (text(r, "method")) }
                        td { (text(r, "scenario")) }
                        td { (text(r, "use_until")) }
                        td { (details(l, r)) }
                    }
                }
            }
        }
    }
}
