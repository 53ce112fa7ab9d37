//! Live delivery (数据回流, Art. 24) as server-sent events: every [`TICK`] a `delivery` event
//! whose data is the return-flow page's delivery fragment, rendered (and escaped) here; the
//! page's script swaps it in. The stream ends when the session does (logout, expiry).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use backflow_api::Backend;
use futures::Stream;
use tokio::sync::OwnedSemaphorePermit;

use crate::guard::Ctx;
use crate::i18n::Lang;
use crate::layout;
use crate::pages::return_flow::{fragment, DatasetQuery};
use crate::{answer, format, Console};

pub const TICK: Duration = Duration::from_secs(2);
/// Streams open at once (a few operators, a few tabs each); more wait for one to close.
pub const STREAMS_MAX: usize = 32;

pub async fn stream<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DatasetQuery>,
) -> Response {
    let session = match ctx.node_session() {
        Ok(s) => s.id.clone(),
        Err(r) => return *r,
    };
    let (Ok(dataset), Ok(region)) = (q.dataset(), q.region()) else {
        return layout::bad_input(&ctx);
    };
    let Ok(permit) = c.shared.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open; reload later",
        )
            .into_response();
    };
    Sse::new(deliveries(c, session, (dataset, region), ctx.lang, permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn deliveries<B: Backend>(
    c: Console<B>,
    session: String,
    (dataset, region): (Option<String>, Option<String>),
    lang: Lang,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // The permit lives as long as the stream: it is given back when the browser goes away.
    futures::stream::unfold(true, move |first| {
        let _held = &permit;
        let (c, session) = (c.clone(), session.clone());
        let (dataset, region) = (dataset.clone(), region.clone());
        async move {
            if !first {
                tokio::time::sleep(TICK).await;
            }
            c.shared.sessions.get(&session)?;
            let html = match answer(c.backend.status(dataset, region)).await {
                Ok(status) => fragment(lang, c.region, &status, format::now_ms()),
                Err(e) => layout::error_box(lang, &e),
            };
            Some((
                Ok(Event::default().event("delivery").data(html.into_string())),
                false,
            ))
        }
    })
}
