//! What every console request passes before its page, and what every answer carries.
//!
//! Before: the API gate's `Host` check (DNS rebinding: [`AllowedHosts::allows`]); a bound on
//! the query string; for a POST, no cross-site `Origin` (besides the session's CSRF token and
//! its `SameSite=Strict` cookie); the session from its cookie; the language (`?lang=` sets
//! the `lang` cookie); a fresh nonce for the page's one inline script. These become the
//! request's [`Ctx`].
//!
//! After: `Content-Security-Policy` (nothing but this origin, and only the script bearing the
//! nonce), `X-Frame-Options: DENY`, `Cache-Control: no-store`, `nosniff`, no referrer to other sites.
//!
//! [`AllowedHosts::allows`]: backflow_api::gate::AllowedHosts::allows

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use backflow_api::gate::Gate;
use rand::RngCore;

use crate::i18n::Lang;
use crate::session::{self, Session, Sessions};

/// A console URL's query string (search words, a dataset name) is short.
pub const QUERY_BYTES_MAX: usize = 1024;

/// What the guard and the login need: the API's gate (tokens, Host names) and the sessions.
pub struct Shared {
    pub gate: Gate,
    pub sessions: Sessions,
    /// Live event streams open at once ([`crate::events`]), each asking the node every tick.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Publishes from the console running at once ([`crate::pages::publish`]).
    pub publishes: Arc<tokio::sync::Semaphore>,
}

/// A request as the pages see it.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub lang: Lang,
    pub session: Option<Session>,
    /// The nonce the page's inline script carries (and the CSP names).
    pub nonce: String,
    pub path: String,
    /// The query without `lang`, to keep it across the language switch.
    pub query_rest: String,
}

impl Ctx {
    /// The session, or a redirect (303) to the login form.
    pub fn session(&self) -> Result<&Session, Box<Response>> {
        self.session
            .as_ref()
            .ok_or_else(|| Box::new(Redirect::to("/login").into_response()))
    }
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    secure_headers(r.headers_mut(), None);
    r
}

/// A POST from another site's page: its `Origin` (or `Sec-Fetch-Site`) says so.
fn cross_site(headers: &HeaderMap, host: &[u8]) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return true;
        }
    }
    match headers.get(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let o = origin.as_bytes();
            let same = |scheme: &[u8]| o.strip_prefix(scheme) == Some(host);
            !(same(b"http://") || same(b"https://"))
        }
    }
}

fn cookies(headers: &HeaderMap) -> String {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(host) = headers
        .get(header::HOST)
        .map(|h| h.as_bytes())
        .filter(|h| shared.gate.hosts.allows(h))
    else {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header does not name this node's address",
        );
    };
    let query = request.uri().query().unwrap_or("");
    if query.len() > QUERY_BYTES_MAX {
        return refuse(StatusCode::URI_TOO_LONG, "query string too long");
    }
    if request.method() == Method::POST && cross_site(headers, host) {
        return refuse(StatusCode::FORBIDDEN, "cross-site form refused");
    }
    let cookies = cookies(headers);
    let mut set_lang = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("lang=") {
            Some(code) => set_lang = Lang::from_code(code),
            None => rest.push(pair),
        }
    }
    let lang = set_lang
        .or_else(|| session::cookie_value(&cookies, "lang").and_then(Lang::from_code))
        .unwrap_or_default();
    let session = session::id_in_cookies(&cookies).and_then(|id| shared.sessions.get(id));
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ctx = Ctx {
        lang,
        session,
        nonce: hex::encode(nonce),
        path: request.uri().path().to_string(),
        query_rest: rest.join("&"),
    };
    let nonce = ctx.nonce.clone();
    let mut request = request;
    request.extensions_mut().insert(ctx);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    secure_headers(headers, Some(&nonce));
    if let Some(lang) = set_lang {
        let cookie = format!(
            "lang={}; SameSite=Strict; Path=/; Max-Age=31536000",
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

fn secure_headers(headers: &mut HeaderMap, nonce: Option<&str>) {
    let script = nonce.map_or_else(|| "'none'".to_string(), |n| format!("'nonce-{n}'"));
    let csp = format!(
        "default-src 'none'; script-src {script}; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends a same-origin form's POST with
    // `Origin: null`, which [`cross_site`] refuses (the login form failed in Chromium).
    // `same-origin` keeps the origin on our own forms and gives other sites nothing.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}
