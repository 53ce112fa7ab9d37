//! The authority's pending catalog work (Arts. 16–17), shown under the catalog search for the
//! node's session: submissions awaiting its review (审核) and catalogs due for an update after a
//! change of law or duties, each with its due day and working days left, overdue first.

use maud::{html, Markup};
use serde_json::Value;

use crate::i18n::{Lang, Msg};

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// A review view's `Due` (`{day, working_days_left, overdue}`).
fn due(l: Lang, d: &Value) -> Markup {
    html! {
        (s(d, "day")) " "
        @if d["overdue"] == true {
            span.overdue { (l.t(Msg::Overdue)) }
        } @else if let Some(n) = d["working_days_left"].as_u64() {
            span.muted { (l.working_days_left(u32::try_from(n).unwrap_or(u32::MAX))) }
        }
    }
}

fn overdue_first<'a>(rows: impl Iterator<Item = &'a Value>, due: &str) -> Vec<&'a Value> {
    let mut rows: Vec<&Value> = rows.filter(|r| !r[due].is_null()).collect();
    rows.sort_by_key(|r| r[due]["overdue"] != true);
    rows
}

/// The node's `ReviewsView` (`{submissions, duty_changes}`): what is still open.
pub fn pending(l: Lang, reviews: &Value) -> Markup {
    let empty = Vec::new();
    let submissions = overdue_first(
        reviews["submissions"].as_array().unwrap_or(&empty).iter(),
        "review_due",
    );
    let duties = overdue_first(
        reviews["duty_changes"].as_array().unwrap_or(&empty).iter(),
        "update_due",
    );
    html! {
        h2 { (l.t(Msg::PendingReviews)) " (" (submissions.len()) ")" }
        @if submissions.is_empty() {
            p.muted { (l.t(Msg::NothingPending)) }
        } @else {
            table {
                tr {
                    th { (l.t(Msg::Submission)) } th { (l.t(Msg::Department)) }
                    th { (l.t(Msg::EntryId)) } th { (l.t(Msg::Received)) } th { (l.t(Msg::Deadline)) }
                }
                @for r in &submissions {
                    tr class=[(r["review_due"]["overdue"] == true).then_some("overdue")] {
                        td.num { (r["id"].as_u64().unwrap_or(0)) }
                        td { (s(r, "department")) }
                        td.mono {
                            @for (i, e) in r["entries"].as_array().unwrap_or(&empty).iter().enumerate() {
                                @if i > 0 { ", " }
                                (e.as_str().unwrap_or(""))
                            }
                        }
                        td { (s(r, "received")) }
                        td { (due(l, &r["review_due"])) }
                    }
                }
            }
        }
        h2 { (l.t(Msg::DutyChanges)) " (" (duties.len()) ")" }
        @if duties.is_empty() {
            p.muted { (l.t(Msg::NothingPending)) }
        } @else {
            table {
                tr {
                    th { (l.t(Msg::Department)) } th { (l.t(Msg::Occurred)) }
                    th { (l.t(Msg::LegalBasis)) } th { (l.t(Msg::Deadline)) }
                }
                @for r in &duties {
                    tr class=[(r["update_due"]["overdue"] == true).then_some("overdue")] {
                        td { (s(r, "department")) }
                        td { (s(r, "occurred")) }
                        td { (s(r, "basis")) }
                        td {
                            (due(l, &r["update_due"]))
                            @if let Some(x) = r["extension"].as_str() { br; span.muted { (x) } }
                        }
                    }
                }
            }
        }
    }
}
