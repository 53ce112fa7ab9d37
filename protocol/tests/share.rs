//! Share requests (Arts. 15, 20–22): every deadline path on the official calendar, the one-shot
//! notice, refusals, extensions, conditions, idempotence, restart and the lifecycle's
//! invariants under arbitrary act sequences.

use backflow_protocol::calendar::{beijing_date, CalendarError, WorkingCalendar, BEIJING};
use backflow_protocol::catalog::{
    CatalogEntry, CatalogOrigin, DataFormat, DataGrade, LegalBasis, LegalBasisKind,
    SharingAttribute, SharingMethod, UpdateFrequency,
};
use backflow_protocol::share::{
    Answer, Applied, Party, RequestProblem, ShareAct, ShareCase, ShareError, ShareRequest,
    ShareState,
};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_protocol::RegionCode;
use jiff::civil::Date;
use proptest::prelude::*;

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

/// `hh:mm` Beijing time on day `d`.
fn at(d: &str, hour: i8, minute: i8) -> UnixMs {
    let ts = BEIJING
        .to_timestamp(date(d).at(hour, minute, 0, 0))
        .unwrap();
    UnixMs(ts.as_millisecond() as u64)
}

fn last_day(due: UnixMs) -> Date {
    beijing_date(due.minus_ms(1)).unwrap()
}

fn origin(region: &str, department: &str) -> CatalogOrigin {
    CatalogOrigin {
        region: RegionCode::parse(region).unwrap(),
        department: department.to_string(),
    }
}

fn conditional() -> SharingAttribute {
    SharingAttribute::Conditional {
        scope: vec!["本省民政部门".to_string()],
        permitted_uses: vec!["低保资格核查".to_string()],
    }
}

fn entry(sharing: SharingAttribute) -> CatalogEntry {
    let methods = if matches!(sharing, SharingAttribute::NotShared { .. }) {
        Vec::new()
    } else {
        vec![SharingMethod::BatchExchange, SharingMethod::ServiceApi]
    };
    CatalogEntry {
        id: "hukou-2026".to_string(),
        name: "户籍人口信息".to_string(),
        data_items: Vec::new(),
        provider: "公安厅".to_string(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Daily,
        sharing,
        sharing_methods: methods,
        usage_conditions: String::new(),
        classification: "人口".to_string(),
        grade: DataGrade::General,
    }
}

fn request(filed_at: UnixMs) -> ShareRequest {
    ShareRequest {
        requester: origin("110101", "民政局"),
        provider: origin("44", "公安厅"),
        entry_id: "hukou-2026".to_string(),
        basis: "《社会救助暂行办法》第十一条".to_string(),
        scenario: "最低生活保障资格核查".to_string(),
        scope: "东城区低保申请人".to_string(),
        method: SharingMethod::BatchExchange,
        use_until: at("2027-12-31", 0, 0),
        approved_by: "民政局数据共享工作机构负责人 张三".to_string(),
        filed_at,
    }
}

fn case(attribute: SharingAttribute, filed: UnixMs) -> ShareCase {
    ShareCase::new(request(filed), attribute)
}

/// A case filed and received at `t`, with the official calendar.
fn received(attribute: SharingAttribute, t: UnixMs) -> (WorkingCalendar, UnixMs, ShareCase) {
    let cal = WorkingCalendar::official();
    let mut c = case(attribute, t);
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    (cal, t, c)
}

fn grant() -> ShareAct {
    ShareAct::Grant {
        conditions: Vec::new(),
        approved_by: "公安厅数据共享工作机构负责人 李四".to_string(),
    }
}

#[test]
fn an_unconditional_request_is_answered_within_one_working_day_then_delivered_within_twenty() {
    let cal = WorkingCalendar::official();
    // Friday 2026-02-13: due at the end of Saturday 02-14, a make-up working day.
    let received = at("2026-02-13", 10, 0);
    let mut c = case(SharingAttribute::Unconditional, received);
    assert_eq!(c.owner(), Some(Party::Provider));
    c.apply(&cal, received, Party::Provider, ShareAct::Receive)
        .unwrap();
    assert_eq!(c.state, ShareState::UnderReview);
    assert_eq!(last_day(c.answer_due.unwrap()), date("2026-02-14"));
    assert_eq!(c.deadline().map(|(a, _)| a), Some(21));
    // Answered on 02-14: 20 working days over the Spring Festival (02-15..23 off, 02-28 worked).
    let answered = at("2026-02-14", 16, 0);
    c.apply(&cal, answered, Party::Provider, grant()).unwrap();
    assert_eq!(c.state, ShareState::Granted);
    assert_eq!(c.answer_due, None);
    assert_eq!(last_day(c.delivery_due.unwrap()), date("2026-03-20"));
    assert_eq!(c.deadline().map(|(a, _)| a), Some(22));
    c.apply(
        &cal,
        at("2026-03-02", 9, 0),
        Party::Provider,
        ShareAct::StartDelivery {
            route: Some(route()),
        },
    )
    .unwrap();
    c.apply(
        &cal,
        at("2026-03-03", 9, 0),
        Party::Requester,
        ShareAct::Delivered,
    )
    .unwrap();
    assert_eq!(c.state, ShareState::Delivered);
    // Nobody owes an act now; the data is disposed of by the term's end (Art. 27 ¶1).
    assert_eq!(c.owner(), None);
    assert_eq!(c.deadline(), Some((27, c.request.use_until)));
}

#[test]
fn a_conditional_request_is_due_in_ten_working_days_and_overdue_after_midnight_beijing() {
    let cal = WorkingCalendar::official();
    let received = at("2026-09-30", 15, 0);
    let mut c = case(conditional(), received);
    c.apply(&cal, received, Party::Provider, ShareAct::Receive)
        .unwrap();
    let due = c.answer_due.unwrap();
    assert_eq!(last_day(due), date("2026-10-20"));
    assert_eq!(c.overdue(at("2026-10-20", 23, 59)), None);
    let overdue = c.overdue(at("2026-10-21", 0, 0)).unwrap();
    assert_eq!((overdue.article, overdue.due), (21, due));
    // Overdue changes no state: the provider still owes the answer.
    assert_eq!(c.state, ShareState::UnderReview);
}

#[test]
fn a_not_shared_entry_is_refused_at_once_with_its_reason_and_basis() {
    let cal = WorkingCalendar::official();
    let basis = vec![LegalBasis {
        kind: LegalBasisKind::Law,
        citation: "《中华人民共和国保守国家秘密法》第二十八条".to_string(),
    }];
    let attribute = SharingAttribute::NotShared {
        reason: "涉及国家秘密".to_string(),
        legal_basis: basis.clone(),
    };
    let t = at("2026-03-02", 9, 0);
    let mut c = case(attribute.clone(), t);
    assert!(request(t).problems(&entry(attribute)).is_empty());
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    assert_eq!(c.state, ShareState::Refused);
    match c.answer.as_ref().unwrap() {
        Answer::Refused {
            reasons,
            legal_basis,
            ..
        } => assert_eq!((reasons.as_str(), legal_basis), ("涉及国家秘密", &basis)),
        other => panic!("{other:?}"),
    }
    // Nothing can follow a refusal.
    assert!(matches!(
        c.apply(&cal, t, Party::Provider, grant()),
        Err(ShareError::WrongState { .. })
    ));
}

#[test]
fn incomplete_material_gets_one_notice_and_the_period_restarts_after_supplementing() {
    let (cal, t, mut c) = received(conditional(), at("2026-03-02", 9, 0));
    // A notice with no item is no notice.
    assert_eq!(
        c.apply(
            &cal,
            t,
            Party::Provider,
            ShareAct::NoticeIncomplete {
                missing: vec![" ".to_string()]
            }
        ),
        Err(ShareError::NoticeWithoutItems)
    );
    let notice = ShareAct::NoticeIncomplete {
        missing: vec![
            "使用依据的文号".to_string(),
            "数据使用安全承诺书".to_string(),
        ],
    };
    c.apply(&cal, at("2026-03-03", 9, 0), Party::Provider, notice)
        .unwrap();
    assert_eq!(c.state, ShareState::Incomplete);
    assert_eq!(c.owner(), Some(Party::Requester));
    assert_eq!((c.answer_due, c.deadline()), (None, None));
    // Only the requester supplements; a refusal is no way out of incomplete material.
    let supplement = ShareAct::Supplement {
        material: "文号：东民发〔2026〕3号；承诺书已附".to_string(),
    };
    assert!(matches!(
        c.apply(&cal, t, Party::Provider, supplement.clone()),
        Err(ShareError::WrongParty { .. })
    ));
    let refuse = ShareAct::Refuse {
        reasons: "材料不全".to_string(),
        approved_by: "李四".to_string(),
    };
    assert!(matches!(
        c.apply(&cal, t, Party::Provider, refuse),
        Err(ShareError::WrongState { .. })
    ));
    // Supplemented Friday 2026-03-06: 10 working days from Monday 03-09, due 03-20.
    c.apply(&cal, at("2026-03-06", 17, 0), Party::Requester, supplement)
        .unwrap();
    assert_eq!(c.state, ShareState::UnderReview);
    assert_eq!(last_day(c.answer_due.unwrap()), date("2026-03-20"));
    // The notice is spent.
    let again = ShareAct::NoticeIncomplete {
        missing: vec!["另一份材料".to_string()],
    };
    assert_eq!(
        c.apply(&cal, at("2026-03-09", 9, 0), Party::Provider, again),
        Err(ShareError::NoticeAlreadyGiven)
    );
}

#[test]
fn a_refusal_needs_reasons_and_an_answer_needs_the_heads_approval() {
    let (cal, t, mut c) = received(conditional(), at("2026-03-02", 9, 0));
    let before = c.clone();
    assert_eq!(
        c.apply(
            &cal,
            t,
            Party::Provider,
            ShareAct::Refuse {
                reasons: "  ".to_string(),
                approved_by: "李四".to_string()
            }
        ),
        Err(ShareError::RefusalWithoutReasons)
    );
    assert_eq!(
        c.apply(
            &cal,
            t,
            Party::Provider,
            ShareAct::Grant {
                conditions: Vec::new(),
                approved_by: String::new()
            }
        ),
        Err(ShareError::WithoutApproval)
    );
    assert_eq!(c, before, "a refused act changes nothing");
    c.apply(
        &cal,
        t,
        Party::Provider,
        ShareAct::Refuse {
            reasons: "申请的使用范围超出本条目列明的共享范围".to_string(),
            approved_by: "李四".to_string(),
        },
    )
    .unwrap();
    assert_eq!(c.state, ShareState::Refused);
}

#[test]
fn one_extension_of_at_most_ten_working_days_with_the_authoritys_consent() {
    let (cal, t, mut c) = received(conditional(), at("2026-09-30", 15, 0));
    let extend = |days: u32, consent: &str| ShareAct::Extend {
        working_days: days,
        authority_consent: consent.to_string(),
        reason: "需会同网信部门评估".to_string(),
    };
    assert_eq!(
        c.apply(&cal, t, Party::Provider, extend(5, "")),
        Err(ShareError::ExtensionWithoutConsent)
    );
    assert!(matches!(
        c.apply(
            &cal,
            t,
            Party::Provider,
            extend(11, "省数据局 2026-10-09 批复")
        ),
        Err(ShareError::ExtensionLength { days: 11, .. })
    ));
    assert!(matches!(
        c.apply(
            &cal,
            t,
            Party::Requester,
            extend(5, "省数据局 2026-10-09 批复")
        ),
        Err(ShareError::WrongParty { .. })
    ));
    // Due 10-20; ten more working days: 10-21..10-23, 10-26..10-30, 11-02..11-03.
    c.apply(
        &cal,
        at("2026-10-09", 11, 0),
        Party::Provider,
        extend(10, "省数据局 2026-10-09 批复"),
    )
    .unwrap();
    assert_eq!(c.state, ShareState::Extended);
    assert_eq!(last_day(c.answer_due.unwrap()), date("2026-11-03"));
    assert!(matches!(
        c.apply(&cal, t, Party::Provider, extend(1, "再次批复")),
        Err(ShareError::ExtendedAlready { .. })
    ));
    c.apply(&cal, at("2026-11-03", 20, 0), Party::Provider, grant())
        .unwrap();
    assert_eq!(c.state, ShareState::Granted);
}

#[test]
fn conditions_are_only_those_the_catalog_lists() {
    let cal = WorkingCalendar::official();
    let t = at("2026-03-02", 9, 0);
    let with = |conditions: &[&str]| ShareAct::Grant {
        conditions: conditions.iter().map(|c| c.to_string()).collect(),
        approved_by: "李四".to_string(),
    };
    let mut c = case(SharingAttribute::Unconditional, t);
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    assert_eq!(
        c.apply(&cal, t, Party::Provider, with(&["仅限本单位使用"])),
        Err(ShareError::ConditionsOnUnconditional)
    );
    let mut c = case(conditional(), t);
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    assert!(matches!(
        c.apply(&cal, t, Party::Provider, with(&["另行收费"])),
        Err(ShareError::ConditionNotInCatalog { .. })
    ));
    c.apply(&cal, t, Party::Provider, with(&["低保资格核查"]))
        .unwrap();
}

#[test]
fn acts_are_idempotent_and_a_restart_resumes_with_the_same_deadlines() {
    let (cal, _, mut c) = received(conditional(), at("2026-09-30", 15, 0));
    assert_eq!(
        c.apply(
            &cal,
            at("2026-10-09", 9, 0),
            Party::Provider,
            ShareAct::Receive
        ),
        Ok(Applied::AlreadyApplied)
    );
    assert_eq!(last_day(c.answer_due.unwrap()), date("2026-10-20"));
    // Persisted and read back mid-request (a restart): the same case, the same deadlines.
    let restored: ShareCase = decode_exact(&encode_value(&c).unwrap()).unwrap();
    assert_eq!(restored, c);
    let mut restored = restored;
    restored
        .apply(&cal, at("2026-10-12", 9, 0), Party::Provider, grant())
        .unwrap();
    assert_eq!(
        restored.apply(&cal, at("2026-10-13", 9, 0), Party::Provider, grant()),
        Ok(Applied::AlreadyApplied)
    );
    assert_eq!(last_day(restored.delivery_due.unwrap()), date("2026-11-09"));
}

#[test]
fn a_deadline_in_an_unknown_year_is_an_error_naming_it_and_changes_nothing() {
    let cal = WorkingCalendar::official();
    let t = at("2026-12-28", 9, 0);
    let mut c = case(conditional(), t);
    let before = c.clone();
    assert_eq!(
        c.apply(&cal, t, Party::Provider, ShareAct::Receive),
        Err(ShareError::Calendar(CalendarError::YearUnknown {
            year: 2027
        }))
    );
    assert_eq!(c, before);
}

#[test]
fn a_request_whose_term_of_use_passes_before_delivery_expires() {
    let cal = WorkingCalendar::official();
    let t = at("2026-03-02", 9, 0);
    let mut r = request(t);
    r.use_until = at("2026-03-10", 0, 0);
    let mut c = ShareCase::new(r, conditional());
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    assert!(!c.tick(at("2026-03-09", 23, 0)));
    assert!(c.tick(at("2026-03-10", 0, 0)));
    assert_eq!(
        (c.state, c.owner(), c.deadline()),
        (ShareState::Expired, None, None)
    );
}

#[test]
fn a_request_is_checked_whole_before_it_is_filed() {
    let t = at("2026-03-02", 9, 0);
    let mut r = request(t);
    r.basis = String::new();
    r.scenario = " ".to_string();
    r.method = SharingMethod::FileDownload;
    r.use_until = t;
    let problems = r.problems(&entry(SharingAttribute::Unconditional));
    assert!(
        matches!(
            problems[..],
            [
                RequestProblem::Empty { .. },
                RequestProblem::Empty { .. },
                RequestProblem::MethodNotOffered { .. },
                RequestProblem::TermInThePast
            ]
        ),
        "{problems:?}"
    );
    assert!(request(t)
        .problems(&entry(SharingAttribute::Unconditional))
        .is_empty());
}

fn any_act() -> impl Strategy<Value = (Party, ShareAct)> {
    let party = prop_oneof![Just(Party::Provider), Just(Party::Requester)];
    let act = prop_oneof![
        Just(ShareAct::Receive),
        Just(ShareAct::NoticeIncomplete {
            missing: vec!["材料".to_string()]
        }),
        Just(ShareAct::NoticeIncomplete {
            missing: Vec::new()
        }),
        Just(ShareAct::Supplement {
            material: "补正".to_string()
        }),
        (0u32..13).prop_map(|d| ShareAct::Extend {
            working_days: d,
            authority_consent: "批复".to_string(),
            reason: String::new()
        }),
        Just(grant()),
        Just(ShareAct::Refuse {
            reasons: "理由".to_string(),
            approved_by: "李四".to_string()
        }),
        Just(ShareAct::Refuse {
            reasons: String::new(),
            approved_by: "李四".to_string()
        }),
        Just(ShareAct::StartDelivery {
            route: Some(route())
        }),
        Just(ShareAct::Delivered),
        Just(ShareAct::Withdraw {
            reason: String::new()
        }),
    ];
    (party, act)
}

proptest! {
    /// Whatever acts arrive, in whatever order and from whichever party: every open state has
    /// an owner, a deadline runs exactly while the provider owes an answer or the data, final
    /// states stay final, and a refused act changes nothing.
    #[test]
    fn every_open_state_has_an_owner_and_deadlines_match_the_state(
        attribute in prop_oneof![Just(SharingAttribute::Unconditional), Just(conditional())],
        acts in proptest::collection::vec((any_act(), 0u64..3 * 86_400_000), 0..24),
    ) {
        let cal = WorkingCalendar::official();
        let mut now = at("2026-01-05", 9, 0);
        let mut c = case(attribute, now);
        for ((party, act), step) in acts {
            now = now.plus_ms(step);
            let before = c.clone();
            let was_final = c.state.is_final();
            match c.apply(&cal, now, party, act) {
                Ok(_) => {}
                Err(_) => {
                    // Only time (expiry) may have moved a refused act's case.
                    let mut expected = before.clone();
                    expected.tick(now);
                    prop_assert_eq!(&c, &expected);
                }
            }
            if was_final {
                prop_assert_eq!(c.state, before.state);
            }
            prop_assert_eq!(c.owner().is_none(), c.state.is_final());
            let answering = matches!(c.state, ShareState::UnderReview | ShareState::Extended);
            prop_assert_eq!(c.answer_due.is_some(), answering);
            let delivering = matches!(c.state, ShareState::Granted | ShareState::Delivering);
            // Data held (delivered, or terminated after delivery) is disposed of by the term's end.
            let held = c.state == ShareState::Delivered
                || (c.state == ShareState::Terminated && c.delivered_at.is_some());
            prop_assert_eq!(c.deadline().is_some(), answering || delivering || held);
            if held {
                prop_assert_eq!(c.deadline(), Some((27, c.request.use_until)));
            }
            if c.state == ShareState::Incomplete {
                prop_assert!(c.notice.is_some());
            }
            prop_assert!(c.acts.len() <= 12, "bounded history: {}", c.acts.len());
        }
    }
}

/// A delivery route for acts that start a batch exchange (the manifest is not checked here).
fn route() -> backflow_protocol::share::DeliveryRoute {
    backflow_protocol::share::DeliveryRoute {
        manifest: Some([7; 32]),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".to_string()],
    }
}
