//! The page shell every page shares: head, navigation (what the session may open), the
//! language switch, the logout form, and the one inline script (live refresh by server-sent
//! events; it runs only where a page has a `#delivery` element).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use backflow_api::ApiError;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::guard::Ctx;
use crate::i18n::{Lang, Msg};
use crate::session::Session;

/// Replaces `#delivery`'s content with each `delivery` event's fragment (rendered and escaped
/// by the server) and shows whether the stream is live; picks the publish form's format from
/// the chosen file's extension (as `FileFormat::from_path` does); sends the form's file as a
/// streamed body and shows the upload's progress and the answer (an escaped fragment of ours;
/// anything else as text).
const SCRIPT: &str = r#"(function () {
  var el = document.getElementById('delivery');
  if (el && window.EventSource) {
    var live = document.getElementById('live');
    var src = new EventSource(el.getAttribute('data-events'));
    src.addEventListener('delivery', function (e) { el.innerHTML = e.data; });
    src.onopen = function () { if (live) { live.className = 'live on'; } };
    src.onerror = function () { if (live) { live.className = 'live off'; } };
  }
  var pf = document.getElementById('publish');
  if (!pf) { return; }
  pf.elements['file'].addEventListener('change', function () {
    var f = this.files[0];
    var ext = f ? f.name.split('.').pop().toLowerCase() : '';
    var known = { csv: 'csv', ndjson: 'ndjson', jsonl: 'ndjson', json: 'ndjson',
                  xlsx: 'xlsx', parquet: 'parquet', pq: 'parquet' };
    if (known[ext]) { pf.elements['format'].value = known[ext]; }
  });
  pf.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var file = pf.elements['file'].files[0];
    if (!file) { return; }
    var q = ['dataset', 'region_field', 'format'].map(function (n) {
      return n + '=' + encodeURIComponent(pf.elements[n].value);
    });
    if (pf.elements['strict_villages'].checked) { q.push('strict_villages=true'); }
    var bar = document.getElementById('publish-progress');
    var out = document.getElementById('publish-result');
    var x = new XMLHttpRequest();
    x.open('POST', '/ui/publish?' + q.join('&'));
    x.setRequestHeader('x-csrf-token', pf.elements['csrf'].value);
    x.upload.onprogress = function (e) {
      if (e.lengthComputable) { bar.value = Math.floor(100 * e.loaded / e.total); }
    };
    x.onload = function () {
      var type = x.getResponseHeader('content-type') || '';
      if (type.indexOf('text/html') === 0) { out.innerHTML = x.responseText; }
      else { out.textContent = x.status + ' ' + x.responseText; }
    };
    x.onerror = function () { out.textContent = 'network error'; };
    x.send(file);
  });
})();"#;

/// Which navigation entry a page is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    ReturnFlow,
    Catalog,
    Sharing,
    Ledger,
    None,
}

const NAV: [(Nav, &str, Msg, bool); 5] = [
    (Nav::Overview, "/", Msg::NavOverview, true),
    (Nav::ReturnFlow, "/ui/return-flow", Msg::NavReturnFlow, true),
    (Nav::Catalog, "/ui/catalog", Msg::NavCatalog, false),
    (Nav::Sharing, "/ui/sharing", Msg::NavSharing, false),
    (Nav::Ledger, "/ui/ledger", Msg::NavLedger, true),
];

/// The language switch: this page, its query kept, in the other language.
fn switch_href(ctx: &Ctx) -> String {
    let sep = if ctx.query_rest.is_empty() { "" } else { "&" };
    format!(
        "{}?{}{sep}lang={}",
        ctx.path,
        ctx.query_rest,
        ctx.lang.other().code()
    )
}

/// A hidden form field with the session's CSRF token (every POST form has one).
pub fn csrf_field(ctx: &Ctx) -> Markup {
    let token = ctx.session.as_ref().map_or("", |s| s.csrf.as_str());
    html! { input type="hidden" name="csrf" value=(token); }
}

fn header(ctx: &Ctx, active: Nav) -> Markup {
    let l = ctx.lang;
    html! {
        header {
            span.brand { "Backflow" }
            @if let Some(s) = &ctx.session {
                nav {
                    @for (nav, href, msg, node_only) in NAV {
                        @if !node_only || s.is_node() {
                            a href=(href) class=[(nav == active).then_some("active")] { (l.t(msg)) }
                        }
                    }
                }
                span.who {
                    @match s.department() {
                        Some(d) => { (d) }
                        None => { (l.t(Msg::AuthoritySession)) }
                    }
                }
            }
            a.lang href=(switch_href(ctx)) { (l.t(Msg::Switch)) }
            @if ctx.session.is_some() {
                form.logout method="post" action="/logout" {
                    (csrf_field(ctx))
                    button type="submit" { (l.t(Msg::Logout)) }
                }
            }
        }
    }
}

/// A whole page.
pub fn render(ctx: &Ctx, active: Nav, title: &str, body: Markup) -> Markup {
    let l = ctx.lang;
    html! {
        (DOCTYPE)
        html lang=(l.html_tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (l.t(Msg::Title)) }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                (header(ctx, active))
                main {
                    h1 { (title) }
                    (body)
                }
                script nonce=(ctx.nonce) { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

pub fn page(ctx: &Ctx, active: Nav, title: &str, body: Markup) -> Response {
    page_with(ctx, StatusCode::OK, active, title, body)
}

pub fn page_with(
    ctx: &Ctx,
    status: StatusCode,
    active: Nav,
    title: &str,
    body: Markup,
) -> Response {
    (status, Html(render(ctx, active, title, body).into_string())).into_response()
}

/// 403: the page is the authority's (the node's token), not a department's.
pub fn forbidden(ctx: &Ctx) -> Response {
    let l = ctx.lang;
    page_with(
        ctx,
        StatusCode::FORBIDDEN,
        Nav::None,
        l.t(Msg::Forbidden),
        html! {},
    )
}

/// 400: an input over its bound or malformed.
pub fn bad_input(ctx: &Ctx) -> Response {
    let l = ctx.lang;
    page_with(
        ctx,
        StatusCode::BAD_REQUEST,
        Nav::None,
        l.t(Msg::BadInput),
        html! {},
    )
}

/// 403: a form without this session's CSRF token.
pub fn csrf_refused(ctx: &Ctx) -> Response {
    let l = ctx.lang;
    page_with(
        ctx,
        StatusCode::FORBIDDEN,
        Nav::None,
        l.t(Msg::CsrfRefused),
        html! {},
    )
}

/// The node's error, inline in a page (its message names what is wrong, never a secret).
pub fn error_box(lang: Lang, e: &ApiError) -> Markup {
    html! {
        p.error { (lang.t(Msg::BackendError)) (lang.colon()) (e.message) }
    }
}

/// A delivery bar as inline SVG: `fraction` of it filled, coloured by `state`
/// (`complete`, `partial`, `pending`, `stuck`).
pub fn bar(fraction: f64, state: &str, label: &str) -> Markup {
    const W: f64 = 160.0;
    let filled = (W * fraction.clamp(0.0, 1.0)).round();
    let class = match state {
        "complete" => "fill complete",
        "partial" => "fill partial",
        "stuck" => "fill stuck",
        _ => "fill pending",
    };
    html! {
        svg.bar width="160" height="12" viewBox="0 0 160 12" role="img" aria-label=(label) {
            rect.track x="0" y="0" width="160" height="12" rx="2" {}
            rect class=(class) x="0" y="0" width=(filled) height="12" rx="2" {}
        }
    }
}

impl Ctx {
    /// The node's session (the data-sharing authority); a department's gets 403. Here, beside
    /// [`forbidden`], so the guard need not import the page layout.
    pub fn node_session(&self) -> Result<&Session, Box<Response>> {
        let s = self.session()?;
        if s.is_node() {
            Ok(s)
        } else {
            Err(Box::new(forbidden(self)))
        }
    }
}
