//! Catalog review and the update obligation (目录审核与动态更新, Arts. 16–17).
//!
//! - Art. 16: a department's catalog (政务数据目录) goes to its same-level data-sharing authority
//!   (同级政务数据共享主管部门) for review; only after approval is it published to other
//!   departments. Here a department's new or changed entries wait in a [`Submission`] and take
//!   effect — enter the catalog log, become visible and flow upward — only when the authority
//!   approves them ([`CatalogReview::decide`]); returned entries never take effect.
//! - Art. 17 ¶2: the authority reviews and publishes within **2 working days** of receiving
//!   them ([`REVIEW_WORKING_DAYS`]).
//! - Art. 17 ¶1: when a law, an administrative regulation, a State Council decision or the
//!   department's duties change, the department completes the update and submits it for review
//!   within **10 working days** of the day the change took effect ([`UPDATE_WORKING_DAYS`]),
//!   extendable once by **5** with the authority's consent ([`UPDATE_EXTENSION_WORKING_DAYS`]).
//!   A [`DutyChange`] records the change and its date; the department's next submission after
//!   it fulfils it.
//! - Overdue reviews and updates are reported once ([`ReviewEvent::Overdue`]) and listed at the
//!   department and the authority (both sit on the same node: the authority is a role of the
//!   jurisdiction).
//!
//! Periods start the day after the triggering act and end at 24:00 Beijing time of their last
//! working day ([`crate::calendar`]). Local to one node: no messages. Bounded: open items and
//! entries per submission.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::calendar::{end_of_day, CalendarError, Date, WorkingCalendar};
use crate::catalog::{CatalogChange, CatalogEntry, CatalogOrigin, CatalogProblem, CatalogUpdate};
use crate::limits::{check_len, LimitError, NAME_BYTES_MAX};
use crate::time::UnixMs;

/// Art. 17 ¶2: the authority reviews an (updated) catalog within 2 working days of receipt.
pub const REVIEW_WORKING_DAYS: u32 = 2;
/// Art. 17 ¶1: the department updates its catalog within 10 working days of a change.
pub const UPDATE_WORKING_DAYS: u32 = 10;
/// Art. 17 ¶1: once, by 5 working days, with the authority's consent.
pub const UPDATE_EXTENSION_WORKING_DAYS: u32 = 5;
/// Submissions and duty changes a node keeps (decided ones included, as the record).
pub const REVIEW_ITEMS_MAX: usize = 100_000;
/// A reason, basis or consent text.
pub const REVIEW_TEXT_BYTES_MAX: usize = 4_096;

/// Where a submission stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewState {
    /// With the authority (审核中).
    Pending,
    /// Approved and published (审核通过): its entries are in the catalog.
    Approved,
    /// Returned to the department with the authority's reasons (退回): nothing took effect.
    Returned { reasons: String },
}

/// A department's catalog entries waiting for (or decided by) the authority's review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub id: u64,
    pub department: String,
    pub entries: Vec<Arc<CatalogEntry>>,
    pub received_at: UnixMs,
    /// Art. 17 ¶2: review due.
    pub due: UnixMs,
    pub state: ReviewState,
    /// When and by whom it was decided (the authority's reviewer).
    pub decided: Option<(UnixMs, String)>,
}

/// A change of law or duties that obliges a department to update its catalog (Art. 17 ¶1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyChange {
    pub id: u64,
    pub department: String,
    /// The day the change took effect (调整、变化发生之日).
    #[serde(with = "date_text")]
    pub occurred: Date,
    /// What changed: the law or decision, or the duties (e.g. its document number).
    pub basis: String,
    /// The update is due (with an extension, if granted).
    pub due: UnixMs,
    /// The one extension: working days and the authority's recorded consent.
    pub extension: Option<(u32, String)>,
    /// The submission that fulfilled it.
    pub fulfilled_by: Option<u64>,
}

impl DutyChange {
    pub fn is_open(&self) -> bool {
        self.fulfilled_by.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("a submission needs at least one entry")]
    Empty,
    #[error("the entries cannot be submitted: {problems}")]
    Entries { problems: String },
    #[error("no such submission or duty change: {id}")]
    Unknown { id: u64 },
    #[error("submission {id} was decided already")]
    Decided { id: u64 },
    #[error("a returned submission must state its reasons")]
    ReturnWithoutReasons,
    #[error("the reviewer must be named")]
    NoReviewer,
    #[error("a duty change needs its basis (the law, decision or duty that changed)")]
    NoBasis,
    #[error("the update period was extended already (once, by {max} working days)")]
    ExtendedAlready { max: u32 },
    #[error(
        "an extension needs the authority's recorded consent (经同级政务数据共享主管部门同意)"
    )]
    ExtensionWithoutConsent,
    #[error("an extension is 1 to {max} working days, not {days}")]
    ExtensionLength { days: u32, max: u32 },
    #[error("duty change {id} is fulfilled already")]
    Fulfilled { id: u64 },
    #[error("this node holds {max} review records already")]
    TooMany { max: usize },
}

/// The authority's decision on a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Return { reasons: String },
}

/// Storage effects: apply durably before acknowledging the act that caused them.
#[derive(Clone, Debug, PartialEq)]
pub enum ReviewStorageOp {
    PutSubmission(Box<Submission>),
    PutDutyChange(Box<DutyChange>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewEvent {
    /// A review (Art. 17 ¶2) or an update (Art. 17 ¶1) passed its deadline undone; once each.
    Overdue {
        what: Overdue,
        id: u64,
        department: String,
        due: UnixMs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Overdue {
    /// The authority's review of a submission.
    Review,
    /// The department's catalog update after a duty change.
    Update,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReviewOutput {
    Storage(ReviewStorageOp),
    Event(ReviewEvent),
}

/// One node's reviews and update obligations.
#[derive(Debug, Default)]
pub struct CatalogReview {
    submissions: BTreeMap<u64, Submission>,
    duty_changes: BTreeMap<u64, DutyChange>,
    next_id: u64,
    reported: BTreeSet<(Overdue, u64)>,
    out: VecDeque<ReviewOutput>,
}

fn check_text(what: &'static str, text: &str) -> Result<(), ReviewError> {
    Ok(check_len(what, text.len(), REVIEW_TEXT_BYTES_MAX)?)
}

impl CatalogReview {
    /// Restart: what [`ReviewStorageOp`] persisted.
    pub fn restore(&mut self, submissions: Vec<Submission>, duty_changes: Vec<DutyChange>) {
        for s in submissions {
            self.next_id = self.next_id.max(s.id + 1);
            self.submissions.insert(s.id, s);
        }
        for d in duty_changes {
            self.next_id = self.next_id.max(d.id + 1);
            self.duty_changes.insert(d.id, d);
        }
    }

    pub fn submissions(&self) -> impl Iterator<Item = &Submission> {
        self.submissions.values()
    }

    pub fn duty_changes(&self) -> impl Iterator<Item = &DutyChange> {
        self.duty_changes.values()
    }

    pub fn poll_output(&mut self) -> Option<ReviewOutput> {
        self.out.pop_front()
    }

    /// The next deadline not yet reported overdue.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        let reviews = self
            .submissions
            .values()
            .filter(|s| s.state == ReviewState::Pending)
            .filter(|s| !self.reported.contains(&(Overdue::Review, s.id)))
            .map(|s| s.due);
        let updates = self
            .duty_changes
            .values()
            .filter(|d| d.is_open())
            .filter(|d| !self.reported.contains(&(Overdue::Update, d.id)))
            .map(|d| d.due);
        reviews.chain(updates).min()
    }

    fn take_id(&mut self) -> Result<u64, ReviewError> {
        if self.submissions.len() + self.duty_changes.len() >= REVIEW_ITEMS_MAX {
            return Err(ReviewError::TooMany {
                max: REVIEW_ITEMS_MAX,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// `origin` (this node's department) submits new or changed entries for review (Art. 16): checked entry by
    /// entry (every problem of every entry at once), then pending with the authority, due in
    /// 2 working days. Fulfils the department's open duty changes (Art. 17 ¶1: the update is
    /// complete once submitted for review).
    pub fn submit(
        &mut self,
        now: UnixMs,
        calendar: &WorkingCalendar,
        origin: &CatalogOrigin,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64, ReviewError> {
        if entries.is_empty() {
            return Err(ReviewError::Empty);
        }
        // Checked as the update they will become: every entry, its provider, every limit.
        let trial = CatalogUpdate {
            origin: origin.clone(),
            seq: 1,
            issued_at: now,
            changes: entries
                .iter()
                .map(|e| CatalogChange::Add(Arc::new(e.clone())))
                .collect(),
        };
        if let Err(problems) = trial.validate() {
            let list: Vec<String> = problems.iter().map(CatalogProblem::to_string).collect();
            return Err(ReviewError::Entries {
                problems: list.join("; "),
            });
        }
        let department = origin.department.as_str();
        let due = calendar.deadline(now, REVIEW_WORKING_DAYS)?;
        let id = self.take_id()?;
        let s = Submission {
            id,
            department: department.to_string(),
            entries: entries.into_iter().map(Arc::new).collect(),
            received_at: now,
            due,
            state: ReviewState::Pending,
            decided: None,
        };
        self.put_submission(s);
        let fulfilled: Vec<u64> = self
            .duty_changes
            .values()
            .filter(|d| d.is_open() && d.department == department)
            .map(|d| d.id)
            .collect();
        for d in fulfilled {
            if let Some(mut change) = self.duty_changes.get(&d).cloned() {
                change.fulfilled_by = Some(id);
                self.put_duty_change(change);
            }
        }
        Ok(id)
    }

    /// The authority decides submission `id`. Returns the submission; on approval the caller
    /// publishes its entries (the catalog log), in the same step.
    pub fn decide(
        &mut self,
        now: UnixMs,
        id: u64,
        decision: Decision,
        reviewer: &str,
    ) -> Result<Submission, ReviewError> {
        let reviewer = reviewer.trim();
        if reviewer.is_empty() {
            return Err(ReviewError::NoReviewer);
        }
        check_text("reviewer", reviewer)?;
        let mut s = self
            .submissions
            .get(&id)
            .cloned()
            .ok_or(ReviewError::Unknown { id })?;
        if s.state != ReviewState::Pending {
            return Err(ReviewError::Decided { id });
        }
        s.state = match decision {
            Decision::Approve => ReviewState::Approved,
            Decision::Return { reasons } => {
                let reasons = reasons.trim().to_string();
                if reasons.is_empty() {
                    return Err(ReviewError::ReturnWithoutReasons);
                }
                check_text("reasons", &reasons)?;
                ReviewState::Returned { reasons }
            }
        };
        s.decided = Some((now, reviewer.to_string()));
        self.put_submission(s.clone());
        Ok(s)
    }

    /// Records that a law, decision or `department`'s duties changed on `occurred` (Art. 17
    /// ¶1): its catalog update is due 10 working days after that day.
    pub fn record_duty_change(
        &mut self,
        calendar: &WorkingCalendar,
        department: &str,
        occurred: Date,
        basis: &str,
    ) -> Result<u64, ReviewError> {
        check_len("department name", department.len(), NAME_BYTES_MAX)?;
        let basis = basis.trim();
        if basis.is_empty() {
            return Err(ReviewError::NoBasis);
        }
        check_text("basis", basis)?;
        // Counted from the day after the change (its day's end is in that day).
        let due = calendar.deadline(end_of_day(occurred)?.minus_ms(1), UPDATE_WORKING_DAYS)?;
        let id = self.take_id()?;
        self.put_duty_change(DutyChange {
            id,
            department: department.to_string(),
            occurred,
            basis: basis.to_string(),
            due,
            extension: None,
            fulfilled_by: None,
        });
        Ok(id)
    }

    /// Extends the update period of duty change `id` once, with the authority's consent.
    pub fn extend_update(
        &mut self,
        calendar: &WorkingCalendar,
        id: u64,
        days: u32,
        consent: &str,
    ) -> Result<DutyChange, ReviewError> {
        let mut d = self
            .duty_changes
            .get(&id)
            .cloned()
            .ok_or(ReviewError::Unknown { id })?;
        if !d.is_open() {
            return Err(ReviewError::Fulfilled { id });
        }
        if d.extension.is_some() {
            return Err(ReviewError::ExtendedAlready {
                max: UPDATE_EXTENSION_WORKING_DAYS,
            });
        }
        if days == 0 || days > UPDATE_EXTENSION_WORKING_DAYS {
            return Err(ReviewError::ExtensionLength {
                days,
                max: UPDATE_EXTENSION_WORKING_DAYS,
            });
        }
        let consent = consent.trim();
        if consent.is_empty() {
            return Err(ReviewError::ExtensionWithoutConsent);
        }
        check_text("consent", consent)?;
        // The extension continues the period: `days` working days after the original last day.
        d.due = calendar.deadline(d.due.minus_ms(1), days)?;
        d.extension = Some((days, consent.to_string()));
        // A new deadline may be reported overdue again.
        self.reported.remove(&(Overdue::Update, id));
        self.put_duty_change(d.clone());
        Ok(d)
    }

    /// Time passed: report each review and update that is overdue, once.
    pub fn handle_timeout(&mut self, now: UnixMs) {
        let reviews: Vec<(u64, String, UnixMs)> = self
            .submissions
            .values()
            .filter(|s| s.state == ReviewState::Pending && now >= s.due)
            .map(|s| (s.id, s.department.clone(), s.due))
            .collect();
        let updates: Vec<(u64, String, UnixMs)> = self
            .duty_changes
            .values()
            .filter(|d| d.is_open() && now >= d.due)
            .map(|d| (d.id, d.department.clone(), d.due))
            .collect();
        for (what, items) in [(Overdue::Review, reviews), (Overdue::Update, updates)] {
            for (id, department, due) in items {
                if self.reported.insert((what, id)) {
                    self.out
                        .push_back(ReviewOutput::Event(ReviewEvent::Overdue {
                            what,
                            id,
                            department,
                            due,
                        }));
                }
            }
        }
    }

    /// Whether submission `id` or duty change `id` is overdue now.
    pub fn is_overdue(&self, now: UnixMs, id: u64) -> bool {
        self.submissions
            .get(&id)
            .is_some_and(|s| s.state == ReviewState::Pending && now >= s.due)
            || self
                .duty_changes
                .get(&id)
                .is_some_and(|d| d.is_open() && now >= d.due)
    }

    fn put_submission(&mut self, s: Submission) {
        self.submissions.insert(s.id, s.clone());
        self.out
            .push_back(ReviewOutput::Storage(ReviewStorageOp::PutSubmission(
                Box::new(s),
            )));
    }

    fn put_duty_change(&mut self, d: DutyChange) {
        self.duty_changes.insert(d.id, d.clone());
        self.out
            .push_back(ReviewOutput::Storage(ReviewStorageOp::PutDutyChange(
                Box::new(d),
            )));
    }
}

/// A civil date as `YYYY-MM-DD` (jiff's serde support is a feature this crate leaves off).
mod date_text {
    use super::Date;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
