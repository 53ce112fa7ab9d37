//! Live delivery (数据回流, Art. 24) as server-sent events: every [`TICK`] a `delivery` event
//! whose data is the return-flow page's delivery fragment, rendered (and escaped) here; the
//! page's script swaps it in. The stream ends when the session does (logout, expiry).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use backflow_api::Backend;
use futures::Stream;

use crate::guard::Ctx;
use crate::i18n::Lang;
use crate::layout;
use crate::pages::return_flow::{fragment, DatasetQuery};
use crate::{answer, format, Console};

pub const TICK: Duration = Duration::from_secs(2);

pub async fn stream<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DatasetQuery>,
) -> Response {
    let session = match ctx.node_session() {
        Ok(s) => s.id.clone(),
        Err(r) => return *r,
    };
    let Ok(dataset) = q.dataset() else {
        return layout::bad_input(&ctx);
    };
    Sse::new(deliveries(c, session, dataset, ctx.lang))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn deliveries<B: Backend>(
    c: Console<B>,
    session: String,
    dataset: Option<String>,
    lang: Lang,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(true, move |first| {
        let (c, session, dataset) = (c.clone(), session.clone(), dataset.clone());
        async move {
            if !first {
                tokio::time::sleep(TICK).await;
            }
            c.shared.sessions.get(&session)?;
            let html = match answer(c.backend.status(dataset)).await {
                Ok(status) => fragment(lang, &status, format::now_ms()),
                Err(e) => layout::error_box(lang, &e),
            };
            Some((
                Ok(Event::default().event("delivery").data(html.into_string())),
                false,
            ))
        }
    })
}
