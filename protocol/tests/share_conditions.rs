//! Usage conditions of a grant (Art. 25), enforced at the requester's node: the term of use,
//! "no third party" (不得擅自将获得的政务数据提供给第三方) refused for a return-flow publish and
//! for another grant's delivery of the granted data, then allowed after the provider's signed
//! consent; return-flow data (Art. 24) passed on with no condition at all; the consent act's
//! rules and invariants; and cases stored before consents existed still decode.

mod common;

use std::collections::BTreeMap;

use backflow_protocol::calendar::{WorkingCalendar, BEIJING};
use backflow_protocol::catalog::{SharingAttribute, SharingMethod};
use backflow_protocol::manifest::{build_manifest, Hash, PartitionEntry, SignedManifest};
use backflow_protocol::return_flow::ReturnFlowError;
use backflow_protocol::share::{
    CorrectionItem, DeliveryRoute, Party, Recipient, ShareAct, ShareCase, ShareError, ShareRequest,
    ShareState, UsageRefusal, PASS_ON_CONSENTS_MAX,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::{decode_exact, encode_value};
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;
use proptest::prelude::*;

// ---- The case: the consent act and the checks -------------------------------------------

fn at(d: &str, hour: i8, minute: i8) -> UnixMs {
    let date: jiff::civil::Date = d.parse().unwrap();
    let ts = BEIJING.to_timestamp(date.at(hour, minute, 0, 0)).unwrap();
    UnixMs(ts.as_millisecond() as u64)
}

fn case_request(t: UnixMs, method: SharingMethod) -> ShareRequest {
    ShareRequest {
        requester: origin("110101", "民政局"),
        provider: origin("44", "公安厅"),
        entry_id: "hukou-2026".to_string(),
        basis: "b".to_string(),
        scenario: "s".to_string(),
        scope: "sc".to_string(),
        method,
        use_until: at("2027-12-31", 0, 0),
        approved_by: "张三".to_string(),
        filed_at: t,
    }
}

fn batch_route() -> DeliveryRoute {
    DeliveryRoute {
        manifest: Some([7; 32]),
        addresses: vec!["a".into()],
    }
}

/// A case granted at `t` + 1 h, and delivered at `t` + 2.5 h (batch exchange).
fn delivered_case(t: UnixMs) -> (WorkingCalendar, ShareCase) {
    let cal = WorkingCalendar::official();
    let r = case_request(t, SharingMethod::BatchExchange);
    let mut c = ShareCase::new(r, SharingAttribute::Unconditional);
    c.apply(&cal, t, Party::Provider, ShareAct::Receive)
        .unwrap();
    let grant = ShareAct::Grant {
        conditions: vec![],
        approved_by: "李四".into(),
    };
    c.apply(&cal, t.plus_ms(3_600_000), Party::Provider, grant)
        .unwrap();
    let start = ShareAct::StartDelivery {
        route: Some(batch_route()),
    };
    c.apply(&cal, t.plus_ms(7_200_000), Party::Provider, start)
        .unwrap();
    c.apply(
        &cal,
        t.plus_ms(9_000_000),
        Party::Requester,
        ShareAct::Delivered,
    )
    .unwrap();
    (cal, c)
}

fn consent(ordinal: u32, recipient: Recipient) -> ShareAct {
    ShareAct::ConsentPassOn {
        ordinal,
        recipient,
        purpose: "区社会救助联审".into(),
        approved_by: "公安厅数据共享工作机构负责人".into(),
    }
}

/// A case stored by the code before consents existed (Art. 25): received, granted, delivery
/// started and verified, a correction request, a suspension — encoded then, decoded now.
const OLD_CASE: &str = "fcab700d0009e6b091e694bfe5b180fb610109e585ace5ae89e58e850a68756b6f752d323032360162017302736301fd00305f1faa01000006e5bca0e4b889fd80260fac9c010000000a01fd80260fac9c0100000000000100fd001546ac9c010000000106e69d8ee59b9b01fd0030793f9d01000001fdc07a98ac9c010000010107070707070707070707070707070707070707070707070707070707070707070101610101fd40ffb6ac9c010000017206e69d8ee59b9bfd00a453d39c010000060000000101fd00bda7ac9c01000001016b01660170fd002860f79c0100000006fd80260fac9c01000000fd001546ac9c010000040006e69d8ee59b9bfd80037dac9c0100000601010707070707070707070707070707070707070707070707070707070707070707010161fdc07a98ac9c01000007fd00bda7ac9c0100000f0101016b01660170fd40ffb6ac9c0100000a0101720506e69d8ee59b9b";

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_case_stored_before_consents_existed_still_decodes() {
    let t = at("2026-03-02", 9, 0);
    let (cal, mut c) = delivered_case(t);
    c.request.basis = "b".into();
    let item = CorrectionItem {
        key: "k".into(),
        field: "f".into(),
        problem: "p".into(),
    };
    let correction = ShareAct::RequestCorrection {
        ordinal: 1,
        items: vec![item],
    };
    c.apply(&cal, t.plus_ms(10_000_000), Party::Requester, correction)
        .unwrap();
    let suspend = ShareAct::Suspend {
        ordinal: 1,
        reason: "r".into(),
        rectify_working_days: 5,
        approved_by: "李四".into(),
    };
    c.apply(&cal, t.plus_ms(11_000_000), Party::Provider, suspend)
        .unwrap();
    let old: ShareCase = decode_exact(&decode_hex(OLD_CASE)).unwrap();
    assert_eq!(old, c);
    // And the encoding did not change: what is stored now is what was stored then.
    assert_eq!(encode_value(&c).unwrap(), decode_hex(OLD_CASE));
    assert_eq!(old.pass_on_consents().count(), 0);
}

#[test]
fn only_the_provider_consents_to_a_named_third_party_while_the_grant_is_in_force() {
    let t = at("2026-03-02", 9, 0);
    let (cal, mut c) = delivered_case(t);
    let now = t.plus_ms(DAY_MS);
    let third = Recipient::Department(origin("110102", "西城区民政局"));
    // Not the requester's to give.
    assert!(matches!(
        c.apply(&cal, now, Party::Requester, consent(1, third.clone())),
        Err(ShareError::WrongParty { .. })
    ));
    // The grant's own parties are no third party.
    for own in [origin("110101", "民政局"), origin("44", "公安厅")] {
        assert!(matches!(
            c.apply(
                &cal,
                now,
                Party::Provider,
                consent(1, Recipient::Department(own))
            ),
            Err(ShareError::NotAThirdParty { .. })
        ));
    }
    // Numbered in order; with a purpose and the head's approval.
    assert!(matches!(
        c.apply(&cal, now, Party::Provider, consent(2, third.clone())),
        Err(ShareError::WrongOrdinal { expected: 1, .. })
    ));
    let mut no_purpose = consent(1, third.clone());
    if let ShareAct::ConsentPassOn { purpose, .. } = &mut no_purpose {
        purpose.clear();
    }
    assert!(c.apply(&cal, now, Party::Provider, no_purpose).is_err());
    let before = c.clone();
    // Refused before: a third party, no consent.
    assert!(matches!(
        c.may_pass_on(now, &third),
        Err(UsageRefusal::ThirdParty { .. })
    ));
    // The grant's provider may always have its data back.
    assert!(c
        .may_pass_on(now, &Recipient::Department(origin("44", "公安厅")))
        .is_ok());
    assert_eq!(c, before, "refused acts change nothing");
    c.apply(&cal, now, Party::Provider, consent(1, third.clone()))
        .unwrap();
    assert_eq!(c.state, ShareState::Delivered, "a consent changes no state");
    assert_eq!(
        c.apply(&cal, now, Party::Provider, consent(1, third.clone())),
        Ok(backflow_protocol::share::Applied::AlreadyApplied)
    );
    assert!(c.may_pass_on(now, &third).is_ok());
    // A department consent covers that department only: not another, nor a return-flow.
    assert!(c
        .may_pass_on(
            now,
            &Recipient::Department(origin("110102", "西城区卫健委"))
        )
        .is_err());
    assert!(c
        .may_pass_on(now, &Recipient::Region(code("110102")))
        .is_err());
    // A region consent covers return-flow inside it and every department there.
    c.apply(
        &cal,
        now,
        Party::Provider,
        consent(2, Recipient::Region(code("1101"))),
    )
    .unwrap();
    assert!(c
        .may_pass_on(now, &Recipient::Region(code("110105")))
        .is_ok());
    assert!(c
        .may_pass_on(
            now,
            &Recipient::Department(origin("110105", "朝阳区卫健委"))
        )
        .is_ok());
    assert!(c.may_pass_on(now, &Recipient::Region(code("11"))).is_err());

    // Suspended (Art. 27): nothing passes on and no consent is given, whatever was consented.
    let suspend = ShareAct::Suspend {
        ordinal: 1,
        reason: "超范围使用".into(),
        rectify_working_days: 5,
        approved_by: "李四".into(),
    };
    c.apply(&cal, now, Party::Provider, suspend).unwrap();
    assert!(matches!(
        c.may_pass_on(now, &third),
        Err(UsageRefusal::NotInForce { .. })
    ));
    assert!(matches!(
        c.apply(&cal, now, Party::Provider, consent(3, third.clone())),
        Err(ShareError::WrongState { .. })
    ));
}

#[test]
fn past_its_term_granted_data_is_neither_used_nor_passed_on_nor_widened() {
    let t = at("2026-03-02", 9, 0);
    let (cal, mut c) = delivered_case(t);
    let third = Recipient::Region(code("110102"));
    c.apply(
        &cal,
        t.plus_ms(DAY_MS),
        Party::Provider,
        consent(1, third.clone()),
    )
    .unwrap();
    let until = c.request.use_until;
    assert!(c.usable(until.minus_ms(1)).is_ok());
    assert!(c.may_pass_on(until.minus_ms(1), &third).is_ok());
    // The delivered case stays delivered (a final state), but its term has ended.
    assert!(matches!(
        c.usable(until),
        Err(UsageRefusal::TermEnded { until: u, .. }) if u == until.0
    ));
    assert!(matches!(
        c.may_pass_on(until, &third),
        Err(UsageRefusal::TermEnded { .. })
    ));
    assert!(matches!(
        c.apply(
            &cal,
            until,
            Party::Provider,
            consent(2, Recipient::Region(code("11")))
        ),
        Err(ShareError::TermEnded { .. })
    ));
    // The message names the grant and the article.
    let e = c.usable(until).unwrap_err().to_string();
    let short: String = c.request.id()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        e.contains(&short) && e.contains("Art. 25") && e.contains("使用时限"),
        "{e}"
    );
}

#[test]
fn consents_are_bounded() {
    let t = at("2026-03-02", 9, 0);
    let (cal, mut c) = delivered_case(t);
    let now = t.plus_ms(DAY_MS);
    for n in 1..=PASS_ON_CONSENTS_MAX {
        let to = Recipient::Department(origin("110102", &format!("部门{n}")));
        c.apply(&cal, now, Party::Provider, consent(n, to)).unwrap();
    }
    let to = Recipient::Department(origin("110102", "再一个部门"));
    let next = PASS_ON_CONSENTS_MAX + 1;
    assert!(matches!(
        c.apply(&cal, now, Party::Provider, consent(next, to)),
        Err(ShareError::TooLarge { .. })
    ));
}

fn any_recipient() -> impl Strategy<Value = Recipient> {
    prop_oneof![
        prop_oneof![Just("110101"), Just("110102"), Just("44"), Just("1101")]
            .prop_map(|r| Recipient::Region(code(r))),
        (
            prop_oneof![Just("110101"), Just("110102"), Just("44")],
            prop_oneof![Just("民政局"), Just("公安厅"), Just("卫健委"), Just("")]
        )
            .prop_map(|(r, d)| Recipient::Department(origin(r, d))),
    ]
}

proptest! {
    /// Whatever consents arrive, by whichever party, in whatever order, mixed with
    /// suspensions and reinstatements: a consent never changes the state, exists only if given
    /// while the grant was in force, stays within its bound and numbers 1, 2, 3…; and pass-on
    /// is allowed only to the grant's parties or to a recipient some consent covers, only
    /// while the grant is usable.
    #[test]
    fn consents_keep_the_case_s_invariants(
        acts in proptest::collection::vec(
            (any::<bool>(), 0u32..4, any_recipient(), 0u8..6, 0u64..40 * DAY_MS),
            0..32,
        ),
        probe in any_recipient(),
    ) {
        let t = at("2026-03-02", 9, 0);
        let (cal, mut c) = delivered_case(t);
        let mut now = t.plus_ms(DAY_MS);
        let mut suspensions = 0;
        for (by_provider, ordinal, recipient, kind, step) in acts {
            now = now.plus_ms(step);
            let by = if by_provider { Party::Provider } else { Party::Requester };
            let act = match kind {
                0 => {
                    suspensions += 1;
                    ShareAct::Suspend {
                        ordinal: suspensions,
                        reason: "r".into(),
                        rectify_working_days: 5,
                        approved_by: "a".into(),
                    }
                }
                1 => ShareAct::Reinstate { ordinal: suspensions, note: String::new(), approved_by: "a".into() },
                _ => consent(ordinal, recipient),
            };
            let before = c.clone();
            let consent_act = matches!(act, ShareAct::ConsentPassOn { .. });
            match c.apply(&cal, now, by, act) {
                Ok(backflow_protocol::share::Applied::Changed) if consent_act => {
                    prop_assert_eq!(c.state, before.state);
                    prop_assert!(before.state.in_force() && now < c.request.use_until);
                }
                Ok(_) => {}
                Err(_) => {
                    suspensions = c.suspensions;
                    // Only time (expiry) may have moved a refused act's case.
                    let mut expected = before.clone();
                    expected.tick(now);
                    prop_assert_eq!(&c, &expected);
                }
            }
            let ordinals: Vec<u32> = c.pass_on_consents().map(|k| k.ordinal).collect();
            prop_assert_eq!(ordinals, (1..=c.pass_on_consents().count() as u32).collect::<Vec<_>>());
            prop_assert!(c.pass_on_consents().count() as u32 <= PASS_ON_CONSENTS_MAX);
            let allowed = c.may_pass_on(now, &probe).is_ok();
            let own = matches!(&probe, Recipient::Department(d)
                if *d == c.request.requester || *d == c.request.provider);
            let covered = c.pass_on_consents().any(|k| k.recipient.covers(&probe));
            prop_assert_eq!(allowed, c.usable(now).is_ok() && (own || covered));
        }
    }
}

// ---- At the requester's node: through real endpoints ------------------------------------

const TREE: &[&str] = &[
    "0",
    "11",
    "1101",
    "110101",
    "44",
    "4419",
    "441900",
    "441900003",
];
const REQUESTER: &str = "110101";
const PROVIDER: &str = "441900003";
/// A third department: a city department in 广东 that asks the requester for the data.
const THIRD: &str = "441900";

fn net() -> Net {
    let mut net = Net::with_tree(11, Faults::NONE, NetConfig::with(TEST_TUNING), TREE);
    let update = signed_update(
        &net.fx,
        PROVIDER,
        "镇人社分局",
        1,
        vec![add("shebao", "镇人社分局")],
    );
    net.submit_catalog(code(PROVIDER), update).unwrap();
    let update = signed_update(
        &net.fx,
        REQUESTER,
        "民政局",
        1,
        vec![add("dibao", "民政局")],
    );
    net.submit_catalog(code(REQUESTER), update).unwrap();
    net.add_department(code(REQUESTER), "民政局");
    net.add_department(code(PROVIDER), "镇人社分局");
    net.add_department(code(THIRD), "市民政局");
    net
}

fn state(net: &Net, c: &str, id: &Hash) -> Option<ShareState> {
    net.ep(code(c)).share_service().case(id).map(|c| c.state)
}

/// `requester` files a batch-exchange request for `provider`'s `entry`; its provider grants.
fn granted(net: &mut Net, requester: (&str, &str), provider: (&str, &str), entry: &str) -> Hash {
    let now = net.now;
    let r = ShareRequest {
        requester: origin(requester.0, requester.1),
        provider: origin(provider.0, provider.1),
        entry_id: entry.to_string(),
        basis: "《社会救助暂行办法》第十一条".to_string(),
        scenario: "低保资格核查".to_string(),
        scope: "低保申请人".to_string(),
        method: SharingMethod::BatchExchange,
        use_until: now.plus_ms(300 * DAY_MS),
        approved_by: "数据共享工作机构负责人".to_string(),
        filed_at: now,
    };
    let id = net
        .node_mut(code(requester.0))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code(requester.0));
    assert!(net.run(60_000, |n| state(n, provider.0, &id)
        == Some(ShareState::UnderReview)));
    let grant = ShareAct::Grant {
        conditions: Vec::new(),
        approved_by: "负责人".to_string(),
    };
    let now = net.now;
    net.node_mut(code(provider.0))
        .ep
        .share_act(now, &id, provider.1, grant)
        .unwrap();
    net.flush(code(provider.0));
    assert!(net.run(60_000, |n| state(n, requester.0, &id)
        == Some(ShareState::Granted)));
    id
}

/// `data` as a delivery of request `id` from `provider`'s department to `to`'s region.
fn delivery(net: &Net, id: &Hash, provider: (&str, &str), to: &str, data: &[u8]) -> Dataset {
    let schema = schema();
    let entry = PartitionEntry::for_content(code(to), data, 1_000, &schema);
    let mut m = build_manifest(
        format!("共享-{}", provider.1),
        1,
        origin(provider.0, provider.1),
        code(to),
        net.now,
        net.now.plus_ms(30 * DAY_MS),
        None,
        schema,
        &[entry],
    )
    .unwrap();
    m.delivers = Some(*id);
    Dataset {
        contents: [(code(to), data.to_vec())].into_iter().collect(),
        entries: vec![entry],
        manifest: SignedManifest::sign(m, net.fx.id(provider.0)).unwrap(),
    }
}

/// The provider delivers `data` under `id` and the requester's node verifies every byte.
fn deliver(net: &mut Net, id: &Hash, data: &[u8]) {
    let d = delivery(net, id, (PROVIDER, "镇人社分局"), REQUESTER, data);
    net.stage(&d);
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .deliver_grant(now, id, "镇人社分局", d.manifest, d.entries, vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, id)
        == Some(ShareState::Delivering)));
    net.connect(code(REQUESTER), code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, id)
        == Some(ShareState::Delivered)));
}

/// A return-flow version of `data` published at the requester for its own region.
fn republished(net: &Net, name: &str, data: &[u8]) -> Dataset {
    let contents: BTreeMap<_, _> = [(code(REQUESTER), data.to_vec())].into_iter().collect();
    dataset_of(
        &net.fx,
        name,
        1,
        None,
        REQUESTER,
        REQUESTER,
        contents,
        net.now,
        30 * DAY_MS,
    )
}

/// The provider consents (signed by its department) and the act reaches the requester.
fn provider_consents(net: &mut Net, id: &Hash, ordinal: u32, to: Recipient) {
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(now, id, "镇人社分局", consent(ordinal, to))
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| n
        .ep(code(REQUESTER))
        .share_service()
        .case(id)
        .is_some_and(|c| c.pass_on_consents().count() == ordinal as usize)));
}

#[test]
fn granted_data_is_not_returned_down_the_tree_until_the_provider_consents() {
    let mut net = net();
    let id = granted(
        &mut net,
        (REQUESTER, "民政局"),
        (PROVIDER, "镇人社分局"),
        "shebao",
    );
    let data = content(code(PROVIDER), 7, 40_000);
    deliver(&mut net, &id, &data);

    // The requester's node publishes the granted data as its own return-flow: refused, naming
    // the grant and the article; nothing is published.
    let d = republished(&net, "转发低保核查名单", &data);
    net.stage(&d);
    let refused = net.publish_signed(code(REQUESTER), d.manifest.clone(), d.entries.clone());
    let Err(ReturnFlowError::GrantedData(e @ UsageRefusal::ThirdParty { .. })) = refused else {
        panic!("{refused:?}");
    };
    let text = e.to_string();
    let short: String = id[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        text.contains(&short) && text.contains("Art. 25") && text.contains("第三方"),
        "{text}"
    );
    let hash = d.manifest.manifest.hash();
    assert!(net.rf(code(REQUESTER)).record(&hash).is_none());

    // Other data of the requester's own is published as ever.
    let own = republished(&net, "本区低保名单", &content(code(REQUESTER), 1, 5_000));
    net.publish(&own);

    // A consent for one department does not cover a return-flow (it reaches every department).
    provider_consents(
        &mut net,
        &id,
        1,
        Recipient::Department(origin(REQUESTER, "卫健委")),
    );
    assert!(net
        .publish_signed(code(REQUESTER), d.manifest.clone(), d.entries.clone())
        .is_err());
    // The provider consents to the requester's region: the same version now goes.
    provider_consents(&mut net, &id, 2, Recipient::Region(code(REQUESTER)));
    assert_eq!(net.publish(&d), hash);
}

#[test]
fn granted_data_is_not_delivered_to_another_department_until_the_provider_consents() {
    let mut net = net();
    let id = granted(
        &mut net,
        (REQUESTER, "民政局"),
        (PROVIDER, "镇人社分局"),
        "shebao",
    );
    let data = content(code(PROVIDER), 7, 40_000);
    deliver(&mut net, &id, &data);
    // A 广东 city department asks the requester's department for its own entry, and is
    // granted it; the requester's department would deliver the data it was granted.
    let second = granted(
        &mut net,
        (THIRD, "市民政局"),
        (REQUESTER, "民政局"),
        "dibao",
    );
    let d = delivery(&net, &second, (REQUESTER, "民政局"), THIRD, &data);
    net.stage(&d);
    let deliver_second = |net: &mut Net| {
        let now = net.now;
        let (m, e) = (d.manifest.clone(), d.entries.clone());
        let r =
            net.node_mut(code(REQUESTER))
                .ep
                .deliver_grant(now, &second, "民政局", m, e, vec![]);
        net.flush(code(REQUESTER));
        r
    };
    let refused = deliver_second(&mut net);
    let Err(backflow_protocol::endpoint::DeliveryFailure::GrantedData(UsageRefusal::ThirdParty {
        recipient,
        ..
    })) = &refused
    else {
        panic!("{refused:?}");
    };
    assert!(recipient.contains("市民政局"), "{recipient}");
    assert_eq!(state(&net, REQUESTER, &second), Some(ShareState::Granted));

    // After the provider's consent naming that department, the granted data goes.
    provider_consents(
        &mut net,
        &id,
        1,
        Recipient::Department(origin(THIRD, "市民政局")),
    );
    deliver_second(&mut net).unwrap();
    assert!(net.run(60_000, |n| state(n, THIRD, &second)
        == Some(ShareState::Delivering)));
}

#[test]
fn past_the_term_the_requester_s_node_passes_nothing_on_even_with_consent() {
    let mut net = net();
    let id = granted(
        &mut net,
        (REQUESTER, "民政局"),
        (PROVIDER, "镇人社分局"),
        "shebao",
    );
    let data = content(code(PROVIDER), 7, 40_000);
    deliver(&mut net, &id, &data);
    provider_consents(&mut net, &id, 1, Recipient::Region(code(REQUESTER)));
    let d = republished(&net, "转发", &data);
    net.stage(&d);
    let until = net
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .unwrap()
        .request
        .use_until;
    let r = net
        .node_mut(code(REQUESTER))
        .ep
        .publish(until, d.manifest.clone(), d.entries.clone());
    assert!(
        matches!(
            r,
            Err(ReturnFlowError::GrantedData(UsageRefusal::TermEnded { .. }))
        ),
        "{r:?}"
    );
}

/// Art. 24: return-flow carries no extra conditions (不得设置额外的限制条件). A return-flow
/// manifest has nothing to state a condition in — the only mark of a grant is `delivers`,
/// which makes it a delivery to one region, not a return-flow — and data a node received by
/// return-flow goes on with no consent: returned further down, or delivered under a grant,
/// even when the same content was also granted to it.
#[test]
fn return_flow_data_is_passed_on_without_any_condition() {
    let mut net = net();
    // 北京 returns a dataset to 东城 (110101), down the tree.
    let data = content(code("11"), 3, 20_000);
    let contents: BTreeMap<_, _> = [(code(REQUESTER), data.clone())].into_iter().collect();
    let returned = dataset_of(
        &net.fx,
        "北京户籍回流",
        1,
        None,
        "11",
        "11",
        contents,
        net.now,
        30 * DAY_MS,
    );
    assert!(returned.manifest.manifest.delivers.is_none());
    let hash = net.publish(&returned);
    assert!(net.run(120_000, |n| n.rf(code(REQUESTER)).is_complete(&hash)));
    // 东城 returns it on (its own scope) with no grant, no consent.
    let again = republished(&net, "东城转发回流", &data);
    net.publish(&again);
    // And delivers it under a grant of its own to a 广东 department: no consent asked.
    let second = granted(
        &mut net,
        (THIRD, "市民政局"),
        (REQUESTER, "民政局"),
        "dibao",
    );
    let d = delivery(&net, &second, (REQUESTER, "民政局"), THIRD, &data);
    net.stage(&d);
    let now = net.now;
    net.node_mut(code(REQUESTER))
        .ep
        .deliver_grant(
            now,
            &second,
            "民政局",
            d.manifest.clone(),
            d.entries.clone(),
            vec![],
        )
        .unwrap();

    // The same content granted to 东城 as well: still free to pass on, as return-flow data.
    let mut net = self::net();
    let hash = net.publish(&dataset_of(
        &net.fx,
        "北京户籍回流",
        1,
        None,
        "11",
        "11",
        [(code(REQUESTER), data.clone())].into_iter().collect(),
        net.now,
        30 * DAY_MS,
    ));
    assert!(net.run(120_000, |n| n.rf(code(REQUESTER)).is_complete(&hash)));
    let id = granted(
        &mut net,
        (REQUESTER, "民政局"),
        (PROVIDER, "镇人社分局"),
        "shebao",
    );
    deliver(&mut net, &id, &data);
    let again = republished(&net, "东城转发回流", &data);
    net.publish(&again);
}
