//! Ledger (合规台账, Art. 29): the latest entries of this node's compliance ledger, the head it
//! signed last and the last one its parent witnessed (见证), and a button that checks the whole
//! ledger against its tree and signed head. The authority's page (the node's session).

use axum::extract::{Form, State};
use axum::response::Response;
use axum::Extension;
use backflow_api::{ApiError, Backend};
use maud::{html, Markup};
use serde_json::Value;

use crate::format::{self, region_label};
use crate::guard::Ctx;
use crate::i18n::{value_label, Lang, Msg};
use crate::layout::{self, csrf_field, Nav};
use crate::pages::login::CsrfForm;
use crate::{answer, Console};

/// Entries shown, newest first.
pub const RECENT: usize = 50;

pub async fn show<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    if let Err(r) = ctx.node_session() {
        return *r;
    }
    page(&c, &ctx, None).await
}

pub async fn verify<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match ctx.node_session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !s.csrf_ok(&form.csrf) {
        return layout::csrf_refused(&ctx);
    }
    let result = answer(c.backend.ledger_verify()).await;
    page(&c, &ctx, Some(result)).await
}

/// The newest [`RECENT`] entries: the size first, then the page that ends there.
async fn recent<B: Backend>(c: &Console<B>) -> Result<Value, ApiError> {
    let first = answer(c.backend.ledger(0, 1)).await?;
    let size = first["size"].as_u64().unwrap_or(0);
    if size <= 1 {
        return Ok(first);
    }
    let from = size.saturating_sub(RECENT as u64);
    answer(c.backend.ledger(from, RECENT)).await
}

async fn page<B: Backend>(
    c: &Console<B>,
    ctx: &Ctx,
    verified: Option<Result<Value, ApiError>>,
) -> Response {
    let l = ctx.lang;
    let ledger = recent(c).await;
    let body = html! {
        p.intro { (l.t(Msg::LedgerIntro)) }
        form.inline method="post" action="/ui/ledger/verify" {
            (csrf_field(ctx))
            button type="submit" { (l.t(Msg::Verify)) }
        }
        @if let Some(v) = &verified { (verification(l, v)) }
        @match &ledger {
            Err(e) => (layout::error_box(l, e)),
            Ok(page) => { (heads(l, page)) (entries(l, page)) }
        }
    };
    layout::page(ctx, Nav::Ledger, l.t(Msg::NavLedger), body)
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

fn verification(l: Lang, v: &Result<Value, ApiError>) -> Markup {
    html! {
        section {
            @match v {
                Err(e) => (layout::error_box(l, e)),
                Ok(r) if r["ok"] == true => {
                    p.ok { "✓ " (l.t(Msg::VerifyOk)) }
                    dl.fields {
                        dt { (l.t(Msg::LedgerSize)) } dd { (r["entries"].as_u64().unwrap_or(0)) }
                        dt { (l.t(Msg::Root)) } dd.mono { (s(r, "root")) }
                        @if let Some(t) = r["head_time"].as_str() {
                            dt { (l.t(Msg::SignedHead)) } dd { (r["head_size"].as_u64().unwrap_or(0)) " · " (t) }
                        }
                    }
                }
                Ok(r) => {
                    p.error { "✗ " (l.t(Msg::VerifyFailed)) }
                    dl.fields {
                        dt { (l.t(Msg::Seq)) } dd { (r["entry"].as_u64().map_or("—".to_string(), |n| n.to_string())) }
                        dt { (l.t(Msg::Detail)) } dd { (s(r, "problem")) }
                    }
                }
            }
        }
    }
}

fn heads(l: Lang, page: &Value) -> Markup {
    let head = &page["head"];
    let witnessed = &page["witnessed"];
    html! {
        section {
            dl.fields {
                dt { (l.t(Msg::LedgerSize)) } dd { (format::count(page["size"].as_u64().unwrap_or(0))) }
                dt { (l.t(Msg::SignedHead)) }
                dd {
                    @if head.is_null() { (l.t(Msg::None)) } @else {
                        (head["size"].as_u64().unwrap_or(0)) " · " (s(head, "time"))
                        br; span.mono { (l.t(Msg::Root)) " " (format::short(s(head, "root"), 16)) "… "
                            (l.t(Msg::Signature)) " " (format::short(s(head, "signature"), 16)) "…" }
                    }
                }
                dt { (l.t(Msg::WitnessedHead)) }
                dd {
                    @if witnessed.is_null() { (l.t(Msg::None)) } @else {
                        (witnessed["size"].as_u64().unwrap_or(0)) " · " (s(witnessed, "time")) " · "
                        (l.t(Msg::Witness)) " " (region_label(s(witnessed, "witness")))
                        br; span.mono { (l.t(Msg::Root)) " " (format::short(s(witnessed, "root"), 16)) "…" }
                    }
                }
            }
        }
    }
}

fn entries(l: Lang, page: &Value) -> Markup {
    let mut all: Vec<&Value> = page["entries"]
        .as_array()
        .map_or(vec![], |a| a.iter().collect());
    all.reverse();
    html! {
        h2 { (l.t(Msg::RecentEntries)) }
        table {
            tr {
                th { (l.t(Msg::Seq)) } th { (l.t(Msg::Time)) } th { (l.t(Msg::Kind)) }
                th { (l.t(Msg::Department)) } th { (l.t(Msg::Subject)) } th { (l.t(Msg::Detail)) }
            }
            @for e in all {
                tr {
                    td.num { (e["seq"].as_u64().unwrap_or(0)) }
                    td {
                        @match e["time_ms"].as_u64() {
                            Some(ms) => (format::beijing(ms)),
                            None => (s(e, "time")),
                        }
                    }
                    td { (value_label(l, s(e, "kind"))) @if let Some(act) = e["act"].as_str() { " · " (act) } }
                    td { (e["department"].as_str().unwrap_or("—")) }
                    td.mono { (format::short(s(e, "subject"), 40)) }
                    td { (s(e, "detail")) }
                }
            }
        }
    }
}
