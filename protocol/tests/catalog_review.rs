//! Catalog review and the update obligation (Arts. 16–17): a department's entries take effect
//! — enter the catalog and flow upward — only after its same-level authority approves them,
//! within 2 working days; a change of law or duties obliges an update within 10 working days
//! (once extendable by 5 with the authority's consent); overdue ones are reported once.

mod common;

use backflow_protocol::calendar::{beijing_date, end_of_day, Date, WorkingCalendar};
use backflow_protocol::catalog_review::{
    CatalogReview, Decision, Overdue, ReviewError, ReviewEvent, ReviewOutput, ReviewState,
};
use backflow_protocol::endpoint::{CatalogReviewFailure, Event};
use backflow_protocol::time::UnixMs;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;

const TREE: &[&str] = &["0", "44", "4419"];
const DEPT: &str = "市人社局";

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

/// Noon in Beijing on `day`.
fn noon(day: &str) -> UnixMs {
    end_of_day(date(day)).unwrap().minus_ms(12 * 3_600_000)
}

fn due_day(due: UnixMs) -> Date {
    beijing_date(due.minus_ms(1)).unwrap()
}

fn events(review: &mut CatalogReview) -> Vec<ReviewEvent> {
    let mut out = Vec::new();
    while let Some(o) = review.poll_output() {
        if let ReviewOutput::Event(e) = o {
            out.push(e);
        }
    }
    out
}

#[test]
fn review_and_update_deadlines_follow_the_official_calendar() {
    let cal = WorkingCalendar::official();
    let mut review = CatalogReview::default();
    let origin = origin("4419", DEPT);
    // Received Friday 2026-02-13: the make-up Saturday counts, then the Spring Festival week
    // does not: due at the end of Tuesday 2026-02-24.
    let received = noon("2026-02-13");
    let id = review
        .submit(received, &cal, &origin, vec![entry("shebao", DEPT)])
        .unwrap();
    let s = review.submissions().find(|s| s.id == id).unwrap().clone();
    assert_eq!(due_day(s.due), date("2026-02-24"));
    // A change of duties on 2026-09-30: 10 working days, across the National Day week off
    // and its make-up Saturday → end of 2026-10-20; one extension by 5 → 2026-10-27.
    let duty = review
        .record_duty_change(&cal, DEPT, date("2026-09-30"), "《机构改革方案》职责调整")
        .unwrap();
    let d = review.duty_changes().find(|d| d.id == duty).unwrap();
    assert_eq!(due_day(d.due), date("2026-10-20"));
    assert_eq!(
        review.extend_update(&cal, duty, 6, "市数据局同意"),
        Err(ReviewError::ExtensionLength { days: 6, max: 5 })
    );
    assert_eq!(
        review.extend_update(&cal, duty, 5, "  "),
        Err(ReviewError::ExtensionWithoutConsent)
    );
    let d = review
        .extend_update(&cal, duty, 5, "市数据局 2026-10-16 同意")
        .unwrap();
    assert_eq!(due_day(d.due), date("2026-10-27"));
    assert_eq!(
        review.extend_update(&cal, duty, 1, "again"),
        Err(ReviewError::ExtendedAlready { max: 5 })
    );
    // A year the calendar does not know is an error, not a guess.
    assert!(matches!(
        review.record_duty_change(&cal, DEPT, date("2031-03-02"), "x"),
        Err(ReviewError::Calendar(_))
    ));
}

#[test]
fn bad_submissions_and_decisions_are_refused_with_every_problem_named() {
    let cal = WorkingCalendar::official();
    let mut review = CatalogReview::default();
    let origin = origin("4419", DEPT);
    let now = noon("2026-03-02");
    assert_eq!(
        review.submit(now, &cal, &origin, Vec::new()),
        Err(ReviewError::Empty)
    );
    // Another department's entry, and the same id twice.
    let e = review
        .submit(
            now,
            &cal,
            &origin,
            vec![entry("a", "市公安局"), entry("b", DEPT), entry("b", DEPT)],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("provider") && e.contains("twice"), "{e}");
    let id = review
        .submit(now, &cal, &origin, vec![entry("a", DEPT)])
        .unwrap();
    assert_eq!(
        review.decide(
            now,
            id,
            Decision::Return {
                reasons: " ".into()
            },
            "王五"
        ),
        Err(ReviewError::ReturnWithoutReasons)
    );
    assert_eq!(
        review.decide(now, id, Decision::Approve, ""),
        Err(ReviewError::NoReviewer)
    );
    let returned = review
        .decide(
            now,
            id,
            Decision::Return {
                reasons: "共享属性依据不足".into(),
            },
            "王五",
        )
        .unwrap();
    assert!(matches!(returned.state, ReviewState::Returned { .. }));
    assert_eq!(
        review.decide(now, id, Decision::Approve, "王五"),
        Err(ReviewError::Decided { id })
    );
    assert_eq!(
        review.decide(now, 99, Decision::Approve, "王五"),
        Err(ReviewError::Unknown { id: 99 })
    );
}

#[test]
fn overdue_reviews_and_updates_are_reported_once_and_a_submission_fulfils_the_update() {
    let cal = WorkingCalendar::official();
    let mut review = CatalogReview::default();
    let origin = origin("4419", DEPT);
    let duty = review
        .record_duty_change(&cal, DEPT, date("2026-03-02"), "《条例》修订")
        .unwrap();
    let other = review
        .record_duty_change(&cal, "市公安局", date("2026-03-02"), "职责调整")
        .unwrap();
    let id = review
        .submit(noon("2026-03-03"), &cal, &origin, vec![entry("a", DEPT)])
        .unwrap();
    // The department's submission fulfilled its own update, not another department's.
    let fulfilled =
        |r: &CatalogReview, d: u64| r.duty_changes().find(|c| c.id == d).unwrap().fulfilled_by;
    assert_eq!(fulfilled(&review, duty), Some(id));
    assert_eq!(fulfilled(&review, other), None);
    events(&mut review);
    let due = review.poll_timeout().unwrap();
    // The review (due end of 2026-03-05) is overdue first; once, however often time passes.
    assert_eq!(due_day(due), date("2026-03-05"));
    review.handle_timeout(due.minus_ms(1));
    assert!(events(&mut review).is_empty());
    review.handle_timeout(due);
    review.handle_timeout(due.plus_ms(1));
    assert_eq!(
        events(&mut review),
        vec![ReviewEvent::Overdue {
            what: Overdue::Review,
            id,
            department: DEPT.into(),
            due,
        }]
    );
    assert!(review.is_overdue(due, id));
    let later = review.poll_timeout().unwrap();
    assert_eq!(due_day(later), date("2026-03-16"));
    review.handle_timeout(later);
    let e = events(&mut review);
    assert!(matches!(
        e.as_slice(),
        [ReviewEvent::Overdue { what: Overdue::Update, id, .. }] if *id == other
    ));
    assert_eq!(review.poll_timeout(), None);
}

/// Through the endpoint, on the network: nothing of a pending or returned submission reaches
/// the catalog or the parent; an approved one does, and survives a restart with its record.
#[test]
fn only_approved_entries_take_effect_and_flow_upward() {
    let mut net = Net::with_tree(3, Faults::NONE, NetConfig::with(TEST_TUNING), TREE);
    let c = code("4419");
    let origin = origin("4419", DEPT);
    let now = net.now;
    let returned = net
        .node_mut(c)
        .ep
        .submit_catalog_for_review(now, DEPT, vec![entry("kept-back", DEPT)])
        .unwrap();
    let approved = net
        .node_mut(c)
        .ep
        .submit_catalog_for_review(now, DEPT, vec![entry("shebao", DEPT)])
        .unwrap();
    net.flush(c);
    net.run(30_000, |_| false);
    for r in ["4419", "44"] {
        assert!(
            net.ep(code(r)).catalog_sync().origin(&origin).is_none(),
            "{r}"
        );
    }
    let now = net.now;
    let ep = &mut net.node_mut(c).ep;
    let no = ep
        .decide_catalog_review(
            now,
            returned,
            Decision::Return {
                reasons: "数据项不全".into(),
            },
            "市数据局 王五",
        )
        .unwrap();
    assert_eq!(no, None);
    let seq = ep
        .decide_catalog_review(now, approved, Decision::Approve, "市数据局 王五")
        .unwrap();
    assert_eq!(seq, Some(1));
    assert!(matches!(
        ep.decide_catalog_review(now, approved, Decision::Approve, "市数据局 王五"),
        Err(CatalogReviewFailure::Review(ReviewError::Decided { .. }))
    ));
    net.flush(c);
    for r in ["4419", "44", "0"] {
        assert!(
            net.run(60_000, |n| n
                .ep(code(r))
                .catalog_sync()
                .origin(&origin)
                .is_some()),
            "{r}"
        );
        // The protocol holds the entries' ids; the node's store holds the entries.
        assert!(net.ep(code(r)).catalog_sync().has_entry(&origin, "shebao"));
        let catalog = net.store(code(r)).catalog(&origin).unwrap();
        let ids: Vec<&String> = catalog.entries.keys().collect();
        assert_eq!(ids, ["shebao"], "{r}");
    }
    // The record of both decisions comes back after a restart.
    net.restart(c);
    let states: Vec<ReviewState> = net
        .ep(c)
        .catalog_review()
        .submissions()
        .map(|s| s.state.clone())
        .collect();
    assert!(matches!(
        states.as_slice(),
        [ReviewState::Returned { .. }, ReviewState::Approved]
    ));
    // No overdue event for reviews decided in time.
    assert!(!net
        .node(c)
        .events
        .iter()
        .any(|e| matches!(e, Event::Review(_))));
}

/// The authority's own publication of a large catalog file (600 entries, more than one
/// catalog version carries): published as consecutive versions in one call, every entry in
/// force here and upward.
#[test]
fn a_catalog_larger_than_one_version_is_published_in_consecutive_versions() {
    let mut net = Net::with_tree(4, Faults::NONE, NetConfig::with(TEST_TUNING), TREE);
    let c = code("4419");
    let origin = origin("4419", DEPT);
    let entries: Vec<_> = (0..600).map(|i| entry(&format!("e{i:03}"), DEPT)).collect();
    let now = net.now;
    let seq = net
        .node_mut(c)
        .ep
        .publish_catalog_entries(now, DEPT, entries)
        .unwrap();
    assert_eq!(seq, 3, "256 + 256 + 88");
    net.flush(c);
    for r in ["4419", "0"] {
        assert!(
            net.run(60_000, |n| n
                .store(code(r))
                .catalog(&origin)
                .is_some_and(|cat| cat.entries.len() == 600)),
            "{r}"
        );
    }
}
