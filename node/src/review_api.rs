//! Catalog review and update obligations (Arts. 16–17) as the CLI and the HTTP API see them:
//! requests checked and turned into endpoint calls, and views with deadlines in Beijing dates
//! and working days left ("剩余 N 个工作日"), overdue first.

use anyhow::{anyhow, bail, Result};
use backflow_api::ReviewRequest;
use backflow_protocol::calendar::{beijing_date, WorkingCalendar};
use backflow_protocol::catalog_review::{Decision, DutyChange, ReviewState, Submission};
use backflow_protocol::time::UnixMs;
use backflow_protocol::Endpoint;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// A deadline as the views show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Due {
    /// The last day (Beijing), due at its end.
    pub day: String,
    pub working_days_left: Option<u32>,
    pub overdue: bool,
}

fn due(calendar: &WorkingCalendar, now: UnixMs, at: UnixMs) -> Due {
    Due {
        day: beijing_date(at.minus_ms(1)).map_or_else(|_| "?".into(), |d| d.to_string()),
        working_days_left: calendar.working_days_left(now, at).ok(),
        overdue: now >= at,
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubmissionView {
    pub id: u64,
    pub department: String,
    pub entries: Vec<String>,
    /// `pending` (审核中), `approved` (审核通过) or `returned` (退回).
    pub state: String,
    pub reasons: Option<String>,
    pub received: String,
    /// Art. 17 ¶2, while pending.
    pub review_due: Option<Due>,
    pub decided_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DutyChangeView {
    pub id: u64,
    pub department: String,
    pub occurred: String,
    pub basis: String,
    /// Art. 17 ¶1, while open.
    pub update_due: Option<Due>,
    pub extension: Option<String>,
    pub fulfilled_by: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewsView {
    pub submissions: Vec<SubmissionView>,
    pub duty_changes: Vec<DutyChangeView>,
}

fn submission_view(s: &Submission, calendar: &WorkingCalendar, now: UnixMs) -> SubmissionView {
    let (state, reasons) = match &s.state {
        ReviewState::Pending => ("pending", None),
        ReviewState::Approved => ("approved", None),
        ReviewState::Returned { reasons } => ("returned", Some(reasons.clone())),
    };
    SubmissionView {
        id: s.id,
        department: s.department.clone(),
        entries: s.entries.iter().map(|e| e.id.clone()).collect(),
        state: state.into(),
        reasons,
        received: beijing_date(s.received_at).map_or_else(|_| "?".into(), |d| d.to_string()),
        review_due: (s.state == ReviewState::Pending).then(|| due(calendar, now, s.due)),
        decided_by: s.decided.as_ref().map(|(_, by)| by.clone()),
    }
}

fn duty_view(d: &DutyChange, calendar: &WorkingCalendar, now: UnixMs) -> DutyChangeView {
    DutyChangeView {
        id: d.id,
        department: d.department.clone(),
        occurred: d.occurred.to_string(),
        basis: d.basis.clone(),
        update_due: d.is_open().then(|| due(calendar, now, d.due)),
        extension: d
            .extension
            .as_ref()
            .map(|(days, consent)| format!("+{days} working days: {consent}")),
        fulfilled_by: d.fulfilled_by,
    }
}

/// Carries out `request` at the endpoint; `default_department` acts where none is named.
pub fn run(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    default_department: &str,
    request: ReviewRequest,
) -> Result<serde_json::Value> {
    let calendar = ep.share_service().calendar().clone();
    let dept = |d: Option<String>| d.unwrap_or_else(|| default_department.to_string());
    let value = match request {
        ReviewRequest::Submit {
            department,
            entries,
        } => {
            let department = dept(department);
            let id = ep
                .submit_catalog_for_review(now, &department, entries)
                .map_err(|e| anyhow!("not submitted: {e}"))?;
            let s = ep
                .catalog_review()
                .submissions()
                .find(|s| s.id == id)
                .ok_or_else(|| anyhow!("submission {id} is not recorded"))?;
            serde_json::to_value(submission_view(s, &calendar, now))?
        }
        ReviewRequest::List {
            department,
            overdue_only,
        } => serde_json::to_value(list(
            ep,
            &calendar,
            now,
            department.as_deref(),
            overdue_only,
        ))?,
        ReviewRequest::Decide { id, params } => {
            let decision = match params.decision.as_str() {
                "approve" => Decision::Approve,
                "return" => Decision::Return {
                    reasons: params.reasons.unwrap_or_default(),
                },
                other => bail!(
                    "decision {:?}: approve or return",
                    other.chars().take(32).collect::<String>()
                ),
            };
            let seq = ep
                .decide_catalog_review(now, id, decision, &params.reviewer)
                .map_err(|e| anyhow!("not decided: {e}"))?;
            let s = ep
                .catalog_review()
                .submissions()
                .find(|s| s.id == id)
                .ok_or_else(|| anyhow!("submission {id} is not recorded"))?;
            let mut v = serde_json::to_value(submission_view(s, &calendar, now))?;
            v["catalog_seq"] = serde_json::json!(seq);
            v
        }
        ReviewRequest::RecordDutyChange { department, params } => {
            let occurred = params
                .occurred
                .trim()
                .parse()
                .map_err(|_| anyhow!("occurred must be a date, YYYY-MM-DD"))?;
            let id = ep
                .record_duty_change(&dept(department), occurred, &params.basis)
                .map_err(|e| anyhow!("not recorded: {e}"))?;
            let d = ep
                .catalog_review()
                .duty_changes()
                .find(|d| d.id == id)
                .ok_or_else(|| anyhow!("duty change {id} is not recorded"))?;
            serde_json::to_value(duty_view(d, &calendar, now))?
        }
        ReviewRequest::ExtendUpdate { id, params } => {
            let d = ep
                .extend_catalog_update(id, params.days, &params.consent)
                .map_err(|e| anyhow!("not extended: {e}"))?;
            serde_json::to_value(duty_view(&d, &calendar, now))?
        }
    };
    Ok(value)
}

/// Submissions and duty changes (only `department`'s if given), overdue first, then by due;
/// only overdue ones if `overdue_only` (the node keeps at most `REVIEW_ITEMS_MAX`).
pub fn list(
    ep: &Endpoint<PeerId>,
    calendar: &WorkingCalendar,
    now: UnixMs,
    department: Option<&str>,
    overdue_only: bool,
) -> ReviewsView {
    let r = ep.catalog_review();
    let mine = |d: &str| department.is_none_or(|x| x == d);
    let mut submissions: Vec<(bool, UnixMs, SubmissionView)> = r
        .submissions()
        .filter(|s| mine(&s.department))
        .map(|s| {
            let overdue = r.is_overdue(now, s.id);
            (overdue, s.due, submission_view(s, calendar, now))
        })
        .filter(|(overdue, _, _)| *overdue || !overdue_only)
        .collect();
    submissions.sort_by_key(|(overdue, due, v)| (!overdue, v.state != "pending", *due));
    let mut duty: Vec<(bool, UnixMs, DutyChangeView)> = r
        .duty_changes()
        .filter(|d| mine(&d.department))
        .map(|d| (r.is_overdue(now, d.id), d.due, duty_view(d, calendar, now)))
        .filter(|(overdue, _, _)| *overdue || !overdue_only)
        .collect();
    duty.sort_by_key(|(overdue, due, v)| (!overdue, v.fulfilled_by.is_some(), *due));
    ReviewsView {
        submissions: submissions.into_iter().map(|(_, _, v)| v).collect(),
        duty_changes: duty.into_iter().map(|(_, _, v)| v).collect(),
    }
}
