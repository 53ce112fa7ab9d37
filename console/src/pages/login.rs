//! Login with the node's or a department's API token, and logout. The token is compared by
//! the API's gate ([`Gate::principal_for_token`], constant time) and is never written into a
//! page or a log; what the browser keeps is a session id ([`crate::session`]).
//!
//! [`Gate::principal_for_token`]: backflow_api::gate::Gate::principal_for_token

use axum::extract::{Form, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use backflow_api::Backend;
use maud::{html, Markup};
use serde::Deserialize;

use crate::guard::Ctx;
use crate::i18n::Msg;
use crate::layout::{self, Nav};
use crate::session::{self, Session};
use crate::Console;

/// A token is 64 hex digits; anything much longer is not one.
const TOKEN_CHARS_MAX: usize = 256;

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

fn login_page(ctx: &Ctx, status: StatusCode, refused: bool) -> Response {
    let l = ctx.lang;
    let body: Markup = html! {
        section.login {
            @if refused { p.error { (l.t(Msg::LoginRefused)) } }
            form method="post" action="/login" {
                label for="token" { (l.t(Msg::TokenLabel)) }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { (l.t(Msg::Login)) }
            }
            p.muted { (l.t(Msg::LoginHint)) }
        }
    };
    layout::page_with(ctx, status, Nav::None, l.t(Msg::Login), body)
}

pub async fn form(Extension(ctx): Extension<Ctx>) -> Response {
    login_page(&ctx, StatusCode::OK, false)
}

pub async fn login<B: Backend>(
    State(console): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<LoginForm>,
) -> Response {
    let principal = (form.token.len() <= TOKEN_CHARS_MAX)
        .then(|| console.shared.gate.principal_for_token(&form.token))
        .flatten();
    let Some(principal) = principal else {
        tracing::info!("console login refused (wrong token)");
        return login_page(&ctx, StatusCode::UNAUTHORIZED, true);
    };
    let session: Session = console.shared.sessions.create(principal);
    let home = if session.is_node() {
        "/"
    } else {
        "/ui/sharing"
    };
    ([(header::SET_COOKIE, session.cookie())], Redirect::to(home)).into_response()
}

pub async fn logout<B: Backend>(
    State(console): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match ctx.session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !s.csrf_ok(&form.csrf) {
        return layout::csrf_refused(&ctx);
    }
    console.shared.sessions.remove(&s.id);
    (
        [(header::SET_COOKIE, session::cookie_cleared())],
        Redirect::to("/login"),
    )
        .into_response()
}
