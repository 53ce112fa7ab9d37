//! Catalog (政务数据目录): searching the unified catalog (统一目录, Art. 16) by words over names
//! and data items, provider and sharing attribute; and one entry with every field Art. 13
//! requires (名称、数据项、提供单位、数据格式、更新频率、共享属性、共享方式、使用条件、分类、分级).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use backflow_api::{Backend, CatalogSearchParams, ReviewRequest};
use backflow_protocol::catalog::{CatalogEntry, DataFormat, SharingAttribute};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::format::{self, region_label};
use crate::guard::Ctx;
use crate::i18n::{value_label, Lang, Msg};
use crate::layout::{self, Nav};
use crate::{answer, Console};

/// Search words, in bytes (the protocol's bound on a search's text).
pub const QUERY_BYTES_MAX: usize = backflow_protocol::catalog_search::QUERY_TEXT_BYTES_MAX;
/// A provider name or an entry id (the protocol's bound on names).
pub const NAME_BYTES_MAX: usize = backflow_protocol::limits::NAME_BYTES_MAX;
/// Results per page (at most the protocol's hits per answer), and how deep paging goes.
const PAGE: usize = 50;
const OFFSET_MAX: usize = backflow_protocol::catalog_search::OFFSET_MAX as usize;

const SHARING: [(&str, Msg); 3] = [
    ("unconditional", Msg::Unconditional),
    ("conditional", Msg::Conditional),
    ("not_shared", Msg::NotShared),
];

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    sharing: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl SearchQuery {
    /// The search to run (`None`: nothing asked yet), or `Err` for input over its bounds.
    fn params(&self) -> Result<Option<CatalogSearchParams>, ()> {
        let q = nonempty(&self.q);
        let provider = nonempty(&self.provider);
        let sharing = nonempty(&self.sharing);
        if q.as_ref().is_some_and(|q| q.len() > QUERY_BYTES_MAX)
            || provider.as_ref().is_some_and(|p| p.len() > NAME_BYTES_MAX)
            || sharing
                .as_ref()
                .is_some_and(|s| !SHARING.iter().any(|(v, _)| v == s))
            || self.offset.is_some_and(|o| o > OFFSET_MAX)
        {
            return Err(());
        }
        if q.is_none() && provider.is_none() && sharing.is_none() {
            return Ok(None);
        }
        Ok(Some(CatalogSearchParams {
            q,
            provider,
            sharing,
            region: None,
            offset: self.offset,
            limit: Some(PAGE),
        }))
    }
}

pub async fn search<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Query(query): Query<SearchQuery>,
) -> Response {
    // A department searches the catalog it requests from (Arts. 16, 20), as in the API.
    let session = match ctx.session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(params) = query.params() else {
        return layout::bad_input(&ctx);
    };
    let l = ctx.lang;
    let links = session.is_node();
    let results = match &params {
        Some(p) => Some(answer(c.backend.catalog_search(p.clone())).await),
        None => None,
    };
    // The authority's open review work (Arts. 16–17), for the node's session.
    let reviews = if links {
        Some(
            answer(c.backend.catalog_review(ReviewRequest::List {
                department: None,
                overdue_only: false,
            }))
            .await,
        )
    } else {
        None
    };
    let sharing = nonempty(&query.sharing);
    let body = html! {
        p.intro { (l.t(Msg::CatalogIntro)) }
        form.search method="get" action="/ui/catalog" {
            input type="search" name="q" maxlength="256" value=[nonempty(&query.q)]
                placeholder=(l.t(Msg::SearchPlaceholder));
            input type="text" name="provider" maxlength="256" value=[nonempty(&query.provider)]
                placeholder=(l.t(Msg::Provider));
            select name="sharing" {
                option value="" { (l.t(Msg::AnySharing)) }
                @for (value, msg) in SHARING {
                    option value=(value) selected[sharing.as_deref() == Some(value)] { (l.t(msg)) }
                }
            }
            button type="submit" { (l.t(Msg::Search)) }
        }
        @match &results {
            None => {}
            Some(Err(e)) => (layout::error_box(l, e)),
            Some(Ok(r)) => (hits(l, r, links, &query)),
        }
        @match &reviews {
            None => {}
            Some(Err(e)) => (layout::error_box(l, e)),
            Some(Ok(r)) => (super::reviews::pending(l, r)),
        }
    };
    layout::page(&ctx, Nav::Catalog, l.t(Msg::NavCatalog), body)
}

fn hits(l: Lang, r: &Value, links: bool, query: &SearchQuery) -> Markup {
    let all = r["hits"].as_array().map_or(&[][..], Vec::as_slice);
    let total = r["total"].as_u64().unwrap_or(all.len() as u64);
    let offset = query.offset.unwrap_or(0);
    let next = (offset + all.len() < total as usize && offset + PAGE <= OFFSET_MAX).then(|| {
        let mut href = String::from("/ui/catalog?");
        for (k, v) in [
            ("q", &query.q),
            ("provider", &query.provider),
            ("sharing", &query.sharing),
        ] {
            if let Some(v) = nonempty(v) {
                href.push_str(&format!("{k}={}&", format::query_escape(&v)));
            }
        }
        format!("{href}offset={}", offset + PAGE)
    });
    html! {
        p.muted { (l.results(total)) }
        @if all.is_empty() {
            p.muted { (l.t(Msg::NoResults)) }
        } @else {
            table {
                tr {
                    th { (l.t(Msg::Name)) } th { (l.t(Msg::EntryId)) } th { (l.t(Msg::Region)) }
                    th { (l.t(Msg::Provider)) } th { (l.t(Msg::Score)) }
                }
                @for h in all {
                    @let id = h["entry_id"].as_str().unwrap_or("");
                    @let name = h["name"].as_str().unwrap_or("");
                    tr {
                        td {
                            @if links {
                                a href={ "/ui/catalog/" (format::query_escape(id)) } { (name) }
                            } @else { (name) }
                        }
                        td.mono { (id) }
                        td { (region_label(h["region"].as_str().unwrap_or(""))) }
                        td { (h["department"].as_str().unwrap_or("")) }
                        td.num { (format!("{:.2}", h["score"].as_f64().unwrap_or(0.0))) }
                    }
                }
            }
            @if let Some(href) = next { p { a href=(href) { "→ " (offset + PAGE + 1) } } }
        }
    }
}

pub async fn entry<B: Backend>(
    State(c): State<Console<B>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = ctx.node_session() {
        return *r;
    }
    if id.is_empty() || id.len() > NAME_BYTES_MAX {
        return layout::bad_input(&ctx);
    }
    let l = ctx.lang;
    let found = answer(c.backend.catalog_entry(id.clone())).await;
    let (status, body) = match &found {
        Err(e) => (e.status, layout::error_box(l, e)),
        Ok(v) => {
            let all = v.as_array().map_or(&[][..], Vec::as_slice);
            if all.is_empty() {
                (
                    StatusCode::NOT_FOUND,
                    html! { p.muted { (l.t(Msg::NotFound)) } },
                )
            } else {
                (
                    StatusCode::OK,
                    html! { @for e in all { (entry_fields(l, e)) } },
                )
            }
        }
    };
    let title = format!("{} {id}", l.t(Msg::EntryId));
    layout::page_with(&ctx, status, Nav::Catalog, &title, body)
}

fn list(items: &[String]) -> String {
    items.join("；")
}

/// One `{region, department, entry}` with every Art. 13 field; an entry of an unknown shape
/// as its JSON.
fn entry_fields(l: Lang, found: &Value) -> Markup {
    let origin = html! {
        (region_label(found["region"].as_str().unwrap_or(""))) " "
        (found["department"].as_str().unwrap_or(""))
    };
    let Ok(e) = serde_json::from_value::<CatalogEntry>(found["entry"].clone()) else {
        return html! {
            section { p { (origin) } pre { (serde_json::to_string_pretty(&found["entry"]).unwrap_or_default()) } }
        };
    };
    let format = match &e.format {
        DataFormat::Other(other) => other.clone(),
        f => value_label(l, &format!("{f:?}")),
    };
    let methods: Vec<String> = e
        .sharing_methods
        .iter()
        .map(|m| value_label(l, &format!("{m:?}")))
        .collect();
    html! {
        section {
            h2 { (e.name) }
            dl.fields {
                dt { (l.t(Msg::EntryId)) } dd.mono { (e.id) }
                dt { (l.t(Msg::Region)) } dd { (origin) }
                dt { (l.t(Msg::Provider)) } dd { (e.provider) }
                dt { (l.t(Msg::Format)) } dd { (format) }
                dt { (l.t(Msg::UpdateFrequency)) } dd { (value_label(l, &format!("{:?}", e.update_frequency))) }
                dt { (l.t(Msg::SharingAttribute)) }
                dd { (sharing(l, &e.sharing)) }
                dt { (l.t(Msg::SharingMethods)) } dd { (list(&methods)) }
                dt { (l.t(Msg::UsageConditions)) }
                dd { @if e.usage_conditions.is_empty() { "—" } @else { (e.usage_conditions) } }
                dt { (l.t(Msg::Classification)) } dd { (e.classification) }
                dt { (l.t(Msg::Grade)) } dd { (value_label(l, &format!("{:?}", e.grade))) }
            }
            h2 { (l.t(Msg::DataItems)) " (" (e.data_items.len()) ")" }
            table {
                tr { th { (l.t(Msg::Name)) } th { (l.t(Msg::ItemType)) } th { (l.t(Msg::Description)) } }
                @for item in &e.data_items {
                    tr {
                        td { (item.name) }
                        td { (value_label(l, &format!("{:?}", item.data_type))) }
                        td { (item.description) }
                    }
                }
            }
        }
    }
}

fn sharing(l: Lang, s: &SharingAttribute) -> Markup {
    match s {
        SharingAttribute::Unconditional => html! { (l.t(Msg::Unconditional)) },
        SharingAttribute::Conditional {
            scope,
            permitted_uses,
        } => html! {
            (l.t(Msg::Conditional))
            br; (l.t(Msg::Scope)) (l.colon()) (list(scope))
            br; (l.t(Msg::PermittedUses)) (l.colon()) (list(permitted_uses))
        },
        SharingAttribute::NotShared {
            reason,
            legal_basis,
        } => html! {
            (l.t(Msg::NotShared))
            br; (l.t(Msg::Reason)) (l.colon()) (reason)
            @for b in legal_basis {
                br; (l.t(Msg::LegalBasis)) (l.colon()) (value_label(l, &format!("{:?}", b.kind))) " " (b.citation)
            }
        },
    }
}
