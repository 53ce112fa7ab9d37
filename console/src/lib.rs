//! `backflow-console` — the node's web operator console (运维控制台): server-rendered pages
//! over the same [`Backend`] as the HTTP API, for a jurisdiction's data-authority staff.
//!
//! | method | path                  | page |
//! |--------|-----------------------|------|
//! | GET    | `/`                   | overview: the jurisdiction in the tree, peers, datasets |
//! | GET    | `/login`, POST `/login` | login with the node's or a department's API token |
//! | POST   | `/logout`             | ends the session |
//! | GET    | `/ui/return-flow`     | `?dataset=&region=`: delivery per child region of this node's jurisdiction or of `region` below it, down to townships, with its time line (数据回流, Art. 24) |
//! | GET    | `/ui/events`          | `?dataset=&region=`: the same, live, as server-sent events |
//! | POST   | `/ui/publish`         | `?dataset=&region_field=&format=`: the return-flow page's publish form; the file as the body |
//! | GET    | `/ui/catalog`         | `?q=&sharing=&offset=`: search the unified catalog (Art. 16) |
//! | GET    | `/ui/catalog/{id}`    | an entry's Art. 13 fields (政务数据目录) |
//! | GET    | `/ui/sharing`         | share requests in and out, overdue first (Arts. 20–22) |
//! | GET    | `/ui/ledger`, POST `/ui/ledger/verify` | the compliance ledger (合规台账, Art. 29) |
//! | GET    | `/ui/style.css`       | the stylesheet |
//! | GET    | `/favicon.ico`        | the icon (an SVG): a browser asks for it on every page, and the API's gate would answer 401, an error in the browser's console |
//!
//! Every page but the login form and the stylesheet needs a session ([`session`]); a
//! department's session opens only the sharing page (and the catalog search its token may
//! use in the API). The router has no fallback: the node merges it into the API's router,
//! whose fallback (behind the API's token gate) answers everything else.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use backflow_api::gate::Gate;
use backflow_api::Backend;
use backflow_topology::RegionCode;

pub mod events;
pub mod format;
pub mod guard;
pub mod i18n;
pub mod layout;
pub mod pages;
pub mod session;
pub mod timeline;

use guard::Shared;
use session::Sessions;

/// A console form (login, logout, verify) is a few hundred bytes.
pub const FORM_BYTES_MAX: usize = 8 * 1024;
/// Waits for the node, but not forever: the API's own bound (`NODE_ANSWER_MS_MAX`).
pub use backflow_api::routes::answer;

const STYLE: &str = include_str!("style.css");

/// What every console handler holds.
#[derive(Clone)]
pub struct Console<B> {
    pub backend: B,
    pub shared: Arc<Shared>,
    /// This node's jurisdiction (its region code).
    pub region: RegionCode,
}

/// The console's router: the node's backend, the API's gate (its tokens admit logins, its
/// Host names are the console's too) and the node's jurisdiction.
pub fn router<B: Backend>(backend: B, gate: Gate, jurisdiction: RegionCode) -> Router {
    let shared = Arc::new(Shared {
        gate,
        sessions: Sessions::default(),
        streams: Arc::new(tokio::sync::Semaphore::new(events::STREAMS_MAX)),
        publishes: Arc::new(tokio::sync::Semaphore::new(pages::publish::PUBLISHES_MAX)),
    });
    let console = Console {
        backend,
        shared: shared.clone(),
        region: jurisdiction,
    };
    Router::new()
        .route("/", get(pages::overview::show::<B>))
        .route(
            "/login",
            get(pages::login::form).post(pages::login::login::<B>),
        )
        .route("/logout", post(pages::login::logout::<B>))
        .route("/ui/return-flow", get(pages::return_flow::show::<B>))
        .route("/ui/events", get(events::stream::<B>))
        .route(
            "/ui/publish",
            post(pages::publish::publish::<B>).layer(DefaultBodyLimit::max(
                backflow_api::routes::UPLOAD_BYTES_MAX,
            )),
        )
        .route("/ui/catalog", get(pages::catalog::search::<B>))
        .route("/ui/catalog/{id}", get(pages::catalog::entry::<B>))
        .route("/ui/sharing", get(pages::sharing::show::<B>))
        .route("/ui/ledger", get(pages::ledger::show::<B>))
        .route("/ui/ledger/verify", post(pages::ledger::verify::<B>))
        .route("/ui/style.css", get(style))
        .route("/favicon.ico", get(icon))
        .layer(DefaultBodyLimit::max(FORM_BYTES_MAX))
        .with_state(console)
        .layer(axum::middleware::from_fn_with_state(shared, guard::guard))
}

/// A blue square with a white down arrow (data flowing back down the tree).
const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1d4ed8"/><path d="M8 3v8M4.5 7.5 8 11l3.5-3.5" stroke="#fff" stroke-width="2" fill="none"/></svg>"##;

async fn icon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON)
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
