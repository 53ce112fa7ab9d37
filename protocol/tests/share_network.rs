//! Share requests across the country (Arts. 20–22) through real endpoints: a 北京 county
//! department requests a 广东 township department's entry; the signed acts travel up to
//! national and down, hop by hop, and both parties' copies of the case agree on every state
//! and deadline — across retransmission, restart, forgery and overdue answers.

mod common;

use backflow_protocol::calendar::beijing_date;
use backflow_protocol::catalog::{SharingAttribute, SharingMethod};
use backflow_protocol::department::{DepartmentError, DepartmentIdentity};
use backflow_protocol::endpoint::Event;
use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{
    Party, ShareAct, ShareActBody, ShareActKind, ShareError, ShareEvent, ShareMsg, ShareRejection,
    ShareRequest, ShareState, SignedShareAct,
};
use backflow_protocol::time::DAY_MS;
use backflow_protocol::wire::Message;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;
use std::sync::Arc;

const TREE_CROSS: &[&str] = &[
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

fn net() -> Net {
    net_with(7, Faults::NONE)
}

/// The cross-country tree; the provider's department has published its catalog (a
/// conditional entry).
fn net_with(seed: u64, faults: Faults) -> Net {
    let mut net = Net::with_tree(seed, faults, NetConfig::with(TEST_TUNING), TREE_CROSS);
    let update = signed_update(
        &net.fx,
        PROVIDER,
        "镇人社分局",
        1,
        vec![add("shebao", "镇人社分局")],
    );
    net.submit_catalog(code(PROVIDER), update).unwrap();
    net.add_department(code(REQUESTER), "民政局");
    net.add_department(code(PROVIDER), "镇人社分局");
    net.add_department(code(PROVIDER), "镇民政办");
    net
}

fn request(net: &Net) -> ShareRequest {
    ShareRequest {
        requester: origin(REQUESTER, "民政局"),
        provider: origin(PROVIDER, "镇人社分局"),
        entry_id: "shebao".to_string(),
        basis: "《社会救助暂行办法》第十一条".to_string(),
        scenario: "低保资格核查".to_string(),
        scope: "东城区低保申请人".to_string(),
        method: SharingMethod::BatchExchange,
        use_until: net.now.plus_ms(300 * DAY_MS),
        approved_by: "民政局数据共享工作机构负责人".to_string(),
        filed_at: net.now,
    }
}

fn file(net: &mut Net) -> backflow_protocol::manifest::Hash {
    let now = net.now;
    let r = request(net);
    // The requester chose it from the unified catalog, as unconditional (stale): the
    // provider's own catalog (conditional) decides.
    let id = net
        .node_mut(code(REQUESTER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code(REQUESTER));
    id
}

/// The provider's department grants without conditions, and its node sends the act.
fn grant(net: &mut Net, id: &backflow_protocol::manifest::Hash) {
    let now = net.now;
    let act = ShareAct::Grant {
        conditions: Vec::new(),
        approved_by: "镇人社分局负责人".to_string(),
    };
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(now, id, "镇人社分局", act)
        .unwrap();
    net.flush(code(PROVIDER));
}

fn state(net: &Net, c: &str, id: &backflow_protocol::manifest::Hash) -> Option<ShareState> {
    net.ep(code(c)).share_service().case(id).map(|c| c.state)
}

/// The supervisory copy of `id` at `c`, if it keeps one.
fn supervised(
    net: &Net,
    c: &str,
    id: &backflow_protocol::manifest::Hash,
) -> Option<backflow_protocol::share::ShareCase> {
    net.ep(code(c))
        .share_service()
        .supervised()
        .find(|(k, _)| *k == id)
        .map(|(_, case)| case.clone())
}

fn share_events(net: &Net, c: &str) -> Vec<ShareEvent> {
    net.node(code(c))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Share(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_crosses_the_country_and_both_copies_agree() {
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    let (req, prov) = (
        net.ep(code(REQUESTER))
            .share_service()
            .case(&id)
            .unwrap()
            .clone(),
        net.ep(code(PROVIDER))
            .share_service()
            .case(&id)
            .unwrap()
            .clone(),
    );
    assert_eq!(req, prov, "both parties hold the same case");
    // The provider's catalog decided: conditional, 10 working days.
    assert!(matches!(
        prov.attribute,
        SharingAttribute::Conditional { .. }
    ));
    let received = beijing_date(prov.received_at.unwrap()).unwrap();
    let due = beijing_date(prov.answer_due.unwrap().minus_ms(1)).unwrap();
    assert!(due > received);
    // Relays hold no case.
    for relay in ["1101", "11", "0", "44", "4419", "441900"] {
        assert!(
            net.ep(code(relay)).share_service().case(&id).is_none(),
            "{relay}"
        );
    }
    // The provider grants; the requester's copy follows, with the same delivery deadline.
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::Grant {
                conditions: vec!["社会保障资格核验".to_string()],
                approved_by: "镇人社分局负责人".to_string(),
            },
        )
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    assert_eq!(
        net.ep(code(REQUESTER)).share_service().case(&id),
        net.ep(code(PROVIDER)).share_service().case(&id)
    );
    // Their lowest common superior (national) oversees the same case, deadlines included;
    // no other relay keeps anything.
    assert_eq!(
        supervised(&net, "0", &id).as_ref(),
        net.ep(code(PROVIDER)).share_service().case(&id)
    );
    for relay in ["1101", "11", "44", "4419", "441900"] {
        assert!(supervised(&net, relay, &id).is_none(), "{relay}");
    }
    // A department cannot act for the other party, nor receive by hand.
    let now = net.now;
    assert!(matches!(
        net.node_mut(code(REQUESTER)).ep.share_act(
            now,
            &id,
            "民政局",
            ShareAct::StartDelivery {
                route: Some(route())
            }
        ),
        Err(ShareRejection::Case(_))
    ));
    assert_eq!(
        net.node_mut(code(PROVIDER))
            .ep
            .share_act(now, &id, "镇人社分局", ShareAct::Receive),
        Err(ShareRejection::ReceivedByTheNode)
    );
    assert_eq!(
        net.node_mut(code(PROVIDER)).ep.share_act(
            now,
            &id,
            "另一部门",
            ShareAct::StartDelivery {
                route: Some(route())
            }
        ),
        Err(ShareRejection::NotAParty)
    );
}

#[test]
fn acts_survive_a_lossy_path_and_a_restart_of_the_provider() {
    let mut net = net_with(
        11,
        Faults {
            loss: 0.3,
            duplicate: 0.2,
            delay_ms_max: 500,
        },
    );
    let id = file(&mut net);
    assert!(net.run(10 * 60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    // The provider crashes and restarts: its copy and deadlines come back from its store.
    let before = net.ep(code(PROVIDER)).share_service().case(&id).cloned();
    net.restart(code(PROVIDER));
    assert_eq!(
        net.ep(code(PROVIDER)).share_service().case(&id).cloned(),
        before
    );
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::Refuse {
                reasons: "申请范围超出共享范围".to_string(),
                approved_by: "镇人社分局负责人".to_string(),
            },
        )
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(10 * 60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Refused)));
}

#[test]
fn an_act_signed_by_a_relay_for_a_party_is_refused() {
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    // The 广东 province signs a grant "by" the township's department (it is the township's
    // certificate authority, not the department) and sends it toward the requester.
    let forged = SignedShareAct::sign(
        ShareActBody {
            request: id,
            by: origin(PROVIDER, "镇人社分局"),
            to: code(REQUESTER),
            at: net.now,
            kind: ShareActKind::Act(ShareAct::Grant {
                conditions: Vec::new(),
                approved_by: "伪造".to_string(),
            }),
        },
        net.fx.id("44"),
    );
    net.inject(
        code("44"),
        code("0"),
        Message::Share(ShareMsg::Act(Arc::new(forged))),
    );
    net.run(60_000, |_| false);
    assert_eq!(state(&net, REQUESTER, &id), Some(ShareState::UnderReview));
    assert!(share_events(&net, "0").iter().any(|e| matches!(
        e,
        ShareEvent::ActRejected {
            error: ShareRejection::NotSignedByTheDepartment { .. },
            ..
        }
    )));
}

/// Each department signs with its own key, certified by its node: neither its own node's
/// jurisdiction key, nor another department of the node, nor an ancestor certifying a key in
/// its name, can act for it.
#[test]
fn a_department_cannot_be_impersonated() {
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    let forged = ShareActBody {
        request: id,
        by: origin(PROVIDER, "镇人社分局"),
        to: code(REQUESTER),
        at: net.now,
        kind: ShareActKind::Act(ShareAct::Grant {
            conditions: Vec::new(),
            approved_by: "伪造".to_string(),
        }),
    };
    let key = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let provider = net.fx.id(PROVIDER).clone();
    let province = net.fx.id("44").clone();
    // 1. The provider's node itself, without the department's key.
    let by_node = SignedShareAct::sign(forged.clone(), &provider);
    // 2. Another department of the same node.
    let other = DepartmentIdentity::certify(&provider, "镇民政办", key(5), net.now).unwrap();
    let by_other = SignedShareAct::sign_by_department(forged.clone(), &provider, &other);
    // 3. The province certifies a key in the department's name (its own region's department).
    let minted = DepartmentIdentity::certify(&province, "镇人社分局", key(6), net.now).unwrap();
    let by_province = SignedShareAct::sign_by_department(forged.clone(), &province, &minted);
    // 4. The province's key certifies a department of the township, under the township's chain.
    let mut forged_cert =
        DepartmentIdentity::certify(&provider, "镇人社分局", key(7), net.now).unwrap();
    forged_cert.cert.body.issuer_key = province.key.verifying_key();
    forged_cert.cert.signature = province.sign(&blake3::hash(b"anything").into());
    let by_forged = SignedShareAct::sign_by_department(forged.clone(), &provider, &forged_cert);
    // 5. A node act kind ("received") signed by a department.
    let mut received = forged.clone();
    received.kind = ShareActKind::Received {
        attribute: SharingAttribute::Unconditional,
    };
    let real = DepartmentIdentity::certify(&provider, "镇人社分局", key(8), net.now).unwrap();
    let node_act_by_department = SignedShareAct::sign_by_department(received, &provider, &real);
    for act in [
        by_node,
        by_other,
        by_province,
        by_forged,
        node_act_by_department,
    ] {
        net.inject(
            code("44"),
            code("0"),
            Message::Share(ShareMsg::Act(Arc::new(act))),
        );
    }
    net.run(60_000, |_| false);
    assert_eq!(state(&net, REQUESTER, &id), Some(ShareState::UnderReview));
    let rejected: Vec<ShareRejection> = share_events(&net, "0")
        .into_iter()
        .filter_map(|e| match e {
            ShareEvent::ActRejected { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 5, "{rejected:?}");
    assert!(matches!(
        rejected[0],
        ShareRejection::NotSignedByTheDepartment { .. }
    ));
    assert!(matches!(
        rejected[1],
        ShareRejection::OtherDepartment { .. }
    ));
    assert!(matches!(rejected[2], ShareRejection::WrongSigner { .. }));
    assert!(matches!(
        rejected[3],
        ShareRejection::Department(DepartmentError::WrongIssuer { .. })
    ));
    assert_eq!(rejected[4], ShareRejection::NodeActByADepartment);
    // The real department's own act goes through.
    grant(&mut net, &id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
}

#[test]
fn a_department_the_node_does_not_hold_cannot_act() {
    let mut net = net();
    let now = net.now;
    let mut r = request(&net);
    r.requester = origin(REQUESTER, "未登记部门");
    assert_eq!(
        net.node_mut(code(REQUESTER)).ep.file_share_request(
            now,
            r,
            SharingAttribute::Unconditional
        ),
        Err(ShareRejection::Department(DepartmentError::NotHeld {
            department: "未登记部门".to_string()
        }))
    );
}

#[test]
fn an_unanswered_request_is_reported_overdue_at_both_parties() {
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    let due = net
        .ep(code(PROVIDER))
        .share_service()
        .case(&id)
        .unwrap()
        .answer_due
        .unwrap();
    let overdue = |n: &Net, c: &str| {
        share_events(n, c).iter().any(|e| {
            matches!(e, ShareEvent::Overdue { request, article: 21, due: d } if *request == id && *d == due)
        })
    };
    let limit = due.since_ms(net.now) + DAY_MS;
    // At both parties and at their lowest common superior (national).
    assert!(net.run(limit, |n| overdue(n, PROVIDER)
        && overdue(n, REQUESTER)
        && overdue(n, "0")));
    assert!(net.now >= due);
    // Reported once, though the tick runs on.
    let n = share_events(&net, PROVIDER)
        .iter()
        .filter(|e| matches!(e, ShareEvent::Overdue { .. }))
        .count();
    assert_eq!(n, 1);
}

/// Two departments of one node: no hop, one copy of the case, the same deadlines. (Routed as
/// if remote, the filing went to the parent and back — and at national, to nowhere.)
#[test]
fn two_departments_of_one_node_share_without_the_network() {
    let mut net = net();
    let now = net.now;
    let mut r = request(&net);
    r.requester = origin(PROVIDER, "镇民政办");
    let id = net
        .node_mut(code(PROVIDER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    // Received at once, under the provider's catalog (conditional), before any delivery.
    let case = net
        .ep(code(PROVIDER))
        .share_service()
        .case(&id)
        .unwrap()
        .clone();
    assert_eq!(case.state, ShareState::UnderReview);
    assert!(matches!(
        case.attribute,
        SharingAttribute::Conditional { .. }
    ));
    net.flush(code(PROVIDER));
    // Each department acts as its own party on the one copy: the provider's notice, the
    // requester's supplement.
    let now = net.now;
    let ep = &mut net.node_mut(code(PROVIDER)).ep;
    let notice = ShareAct::NoticeIncomplete {
        missing: vec!["使用依据文号".to_string()],
    };
    assert_eq!(
        ep.share_act(now, &id, "镇民政办", notice.clone()),
        Err(ShareRejection::Case(ShareError::WrongParty {
            act: "an incomplete-material notice",
            expected: Party::Provider
        }))
    );
    ep.share_act(now, &id, "镇人社分局", notice).unwrap();
    let supplement = ShareAct::Supplement {
        material: "文号已补".to_string(),
    };
    ep.share_act(now, &id, "镇民政办", supplement).unwrap();
    assert_eq!(state(&net, PROVIDER, &id), Some(ShareState::UnderReview));
    net.flush(code(PROVIDER));
    grant(&mut net, &id);
    assert_eq!(state(&net, PROVIDER, &id), Some(ShareState::Granted));
    net.run(60_000, |_| false);
    // Nobody else ever heard of it, and nothing was rejected anywhere.
    for c in TREE_CROSS.iter().filter(|c| **c != PROVIDER) {
        assert!(net.ep(code(c)).share_service().case(&id).is_none(), "{c}");
        assert!(share_events(&net, c).is_empty(), "{c}");
    }
    assert!(!share_events(&net, PROVIDER)
        .iter()
        .any(|e| matches!(e, ShareEvent::ActRejected { .. })));
}

/// An entry the provider's catalog does not hold: its node refuses by itself, under its own
/// jurisdiction key (no department of it holds the entry), and the requester's copy follows.
#[test]
fn the_provider_node_refuses_an_entry_its_catalog_does_not_hold() {
    let mut net = net();
    let now = net.now;
    let mut r = request(&net);
    r.entry_id = "no-such-entry".to_string();
    let id = net
        .node_mut(code(REQUESTER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Refused)));
    assert_eq!(
        net.ep(code(REQUESTER)).share_service().case(&id),
        net.ep(code(PROVIDER)).share_service().case(&id)
    );
    for c in TREE_CROSS {
        assert!(
            !share_events(&net, c)
                .iter()
                .any(|e| matches!(e, ShareEvent::ActRejected { .. })),
            "{c}"
        );
    }
}

/// A relay on the path is down: acts go around it over the skip-level links nodes keep to
/// their further ancestors, instead of waiting for it; when it is back, acts use it again.
#[test]
fn acts_go_around_a_relay_that_is_down() {
    let mut net = net();
    net.crash(code("441900"));
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::UnderReview)));
    // The provider answers with its parent still down: up around it too.
    grant(&mut net, &id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    assert!(net.ep(code("441900")).share_service().case(&id).is_none());
    net.set_up(code("441900"));
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::StartDelivery {
                route: Some(route()),
            },
        )
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivering)));
}

/// Art. 26 for a batch exchange: the provider answers a correction request "corrected" only
/// after delivering the corrected data — a new version of the delivery, chained to the
/// delivered one — which the requester's node fetches (the changed partition, nothing else)
/// and verifies; both copies record the delivery again, and the data is versioned no further
/// without another correction request.
#[test]
fn a_correction_of_a_batch_exchange_delivers_a_new_version_to_the_requester() {
    use backflow_protocol::endpoint::DeliveryFailure;
    use backflow_protocol::share::{CorrectionItem, ShareError, ShareRejection};
    let mut net = net();
    let id = file(&mut net);
    let d1 = delivery(&net, &id, 200_000);
    let first = grant_and_deliver(&mut net, &id, d1);
    let bytes_first: u64 = net.chunk_bytes.values().sum();
    // Delivered once: without a correction request, a second version is refused.
    let d2 = delivery_version(&net, &id, 2, Some(first), 120_000);
    let now = net.now;
    let again = net.node_mut(code(PROVIDER)).ep.deliver_grant(
        now,
        &id,
        "镇人社分局",
        d2.manifest.clone(),
        d2.entries.clone(),
        vec![],
    );
    assert!(
        matches!(again, Err(DeliveryFailure::NotGranted { .. })),
        "{again:?}"
    );
    // The requester asks for a correction.
    let item = CorrectionItem {
        key: "110101199001011234".into(),
        field: "参保状态".into(),
        problem: "已于2026年11月停保，数据仍为参保".into(),
    };
    net.node_mut(code(REQUESTER))
        .ep
        .share_act(
            now,
            &id,
            "民政局",
            ShareAct::RequestCorrection {
                ordinal: 1,
                items: vec![item],
            },
        )
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(net.run(60_000, |n| n
        .ep(code(PROVIDER))
        .share_service()
        .case(&id)
        .is_some_and(|c| c.open_correction().is_some())));
    // "Corrected" before the corrected data is sent: refused.
    let corrected = ShareAct::AnswerCorrection {
        ordinal: 1,
        corrected: true,
        reason: "已更正参保状态".into(),
        approved_by: "镇人社分局负责人".into(),
    };
    let now = net.now;
    let early =
        net.node_mut(code(PROVIDER))
            .ep
            .share_act(now, &id, "镇人社分局", corrected.clone());
    assert!(
        matches!(
            early,
            Err(ShareRejection::Case(ShareError::CorrectedWithoutData {
                ordinal: 1
            }))
        ),
        "{early:?}"
    );
    // The corrected version: the delivered one's successor.
    let second = net.stage(&d2);
    net.node_mut(code(PROVIDER))
        .ep
        .deliver_grant(now, &id, "镇人社分局", d2.manifest, d2.entries, vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    let route = |n: &Net, c: &str| {
        n.ep(code(c))
            .share_service()
            .case(&id)
            .and_then(|c| c.delivery.as_ref()?.manifest)
    };
    assert!(net.run(60_000, |n| route(n, REQUESTER) == Some(second)));
    // The correction's deadline runs on while the new version travels.
    let case = net
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .unwrap()
        .clone();
    assert_eq!(case.state, ShareState::Delivering);
    assert_eq!(case.deadline().map(|(article, _)| article), Some(26));
    assert_eq!(case.corrected_delivery(1), Some(second));
    if net.ep(code(REQUESTER)).peer_of(code(PROVIDER)).is_none() {
        net.connect(code(REQUESTER), code(PROVIDER));
    }
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::Delivered)
        && state(n, REQUESTER, &id) == Some(ShareState::Delivered)));
    let held: Vec<_> = net
        .rf(code(REQUESTER))
        .held()
        .filter(|(_, h)| h.hash == second)
        .map(|(_, h)| h.version)
        .collect();
    assert_eq!(held, vec![2], "the corrected version replaces the first");
    let stored = &net.store(code(REQUESTER)).data[&(second, code(REQUESTER))];
    assert_eq!(stored.bytes, d2.contents[&code(REQUESTER)]);
    // Only the corrected partition moved: its 120 kB and the frames' framing.
    let moved = net.chunk_bytes.values().sum::<u64>() - bytes_first;
    assert!((120_000..130_000).contains(&moved), "{moved} bytes moved");
    // Now the answer stands, and closes the correction at both parties.
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(now, &id, "镇人社分局", corrected)
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| n
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .is_some_and(
            |c| c.corrections.len() == 1 && c.open_correction().is_none()
        )));
    // No open correction: versioned no further.
    let d3 = delivery_version(&net, &id, 3, Some(second), 100_000);
    let now = net.now;
    assert!(net
        .node_mut(code(PROVIDER))
        .ep
        .deliver_grant(now, &id, "镇人社分局", d3.manifest, d3.entries, vec![])
        .is_err());
}

/// Art. 27 ¶1: data held is disposed of by the end of the term of use (共享目的已实现…妥善处置);
/// undisposed, that is overdue at both parties and their common superior, until the
/// requester records the disposal and its node deletes the data.
#[test]
fn data_held_past_its_term_is_reported_until_it_is_disposed_of() {
    let mut net = net();
    let now = net.now;
    let r = ShareRequest {
        // Two days: the simulation of two nodes joined by a grant runs ~10 s a simulated day.
        use_until: now.plus_ms(2 * DAY_MS),
        ..request(&net)
    };
    let use_until = r.use_until;
    let id = net
        .node_mut(code(REQUESTER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code(REQUESTER));
    let d = delivery(&net, &id, 50_000);
    grant_and_deliver(&mut net, &id, d);
    let case = net
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .unwrap()
        .clone();
    assert_eq!(case.deadline(), Some((27, use_until)));
    let overdue = |n: &Net, c: &str| {
        share_events(n, c).iter().any(|e| {
            matches!(e, ShareEvent::Overdue { request, article: 27, due } if *request == id && *due == use_until)
        })
    };
    assert!(!overdue(&net, REQUESTER));
    // (Checked once at the end: scanning every event at every step costs minutes.)
    net.run(use_until.since_ms(net.now) + DAY_MS, |_| false);
    assert!(net.now >= use_until);
    for c in [REQUESTER, PROVIDER, "0"] {
        assert!(overdue(&net, c), "{c}");
    }
    let now = net.now;
    net.node_mut(code(REQUESTER))
        .ep
        .share_act(
            now,
            &id,
            "民政局",
            ShareAct::Dispose {
                method: backflow_protocol::share::DisposalMethod::Delete,
                record: "期满删除".into(),
            },
        )
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::Disposed)));
    for c in [REQUESTER, PROVIDER] {
        let case = net.ep(code(c)).share_service().case(&id).unwrap();
        assert_eq!(case.deadline(), None, "{c}");
    }
}

/// Request `id` (filed) is granted, and the provider's node delivers `d` by batch exchange:
/// the requester's node connects, fetches and verifies it, and both copies record the
/// delivery. Returns the delivery manifest's hash.
fn grant_and_deliver(net: &mut Net, id: &backflow_protocol::manifest::Hash, d: Dataset) -> Hash {
    assert!(net.run(60_000, |n| state(n, PROVIDER, id)
        == Some(ShareState::UnderReview)));
    grant(net, id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, id)
        == Some(ShareState::Granted)));
    let hash = net.stage(&d);
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .deliver_grant(now, id, "镇人社分局", d.manifest, d.entries, vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, id)
        == Some(ShareState::Delivering)));
    net.connect(code(REQUESTER), code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, PROVIDER, id)
        == Some(ShareState::Delivered)
        && state(n, REQUESTER, id) == Some(ShareState::Delivered)));
    hash
}

/// Version `version` of request `id`'s delivery, chained to `previous`, with `bytes` of
/// content of its own, valid for 30 days.
fn delivery_version(
    net: &Net,
    id: &backflow_protocol::manifest::Hash,
    version: u64,
    previous: Option<Hash>,
    bytes: usize,
) -> Dataset {
    delivery_of(
        net,
        id,
        version,
        previous,
        bytes,
        net.now.plus_ms(30 * DAY_MS),
    )
}

/// The granted data, as the provider's node stages it: one partition for the requester's
/// region (content of `version`'s own), under a manifest that delivers request `id` there
/// only and ends at `expires_at`.
fn delivery_of(
    net: &Net,
    id: &backflow_protocol::manifest::Hash,
    version: u64,
    previous: Option<Hash>,
    bytes: usize,
    expires_at: backflow_protocol::time::UnixMs,
) -> Dataset {
    use backflow_protocol::manifest::{build_manifest, PartitionEntry, SignedManifest};
    let data = content(code(REQUESTER), version, bytes);
    let schema = schema();
    let entry = PartitionEntry::for_content(code(REQUESTER), &data, 1_000, &schema);
    let mut m = build_manifest(
        "共享-shebao".into(),
        version,
        origin(PROVIDER, "镇人社分局"),
        code(REQUESTER),
        net.now,
        expires_at,
        previous,
        schema,
        &[entry],
    )
    .unwrap();
    m.delivers = Some(*id);
    Dataset {
        contents: [(code(REQUESTER), data)].into_iter().collect(),
        entries: vec![entry],
        manifest: SignedManifest::sign(m, net.fx.id(PROVIDER)).unwrap(),
    }
}

/// A delivery route for acts that start a batch exchange (the manifest is not checked here).
fn route() -> backflow_protocol::share::DeliveryRoute {
    backflow_protocol::share::DeliveryRoute {
        manifest: Some([7; 32]),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".to_string()],
    }
}

/// The granted data, as the provider's node stages it: one partition for the requester's
/// region, under a manifest that delivers request `id` there only.
fn delivery(net: &Net, id: &backflow_protocol::manifest::Hash, bytes: usize) -> Dataset {
    delivery_until(net, id, bytes, net.now.plus_ms(30 * DAY_MS))
}

/// [`delivery`] under a manifest that ends at `expires_at`.
fn delivery_until(
    net: &Net,
    id: &backflow_protocol::manifest::Hash,
    bytes: usize,
    expires_at: backflow_protocol::time::UnixMs,
) -> Dataset {
    delivery_of(net, id, 1, None, bytes, expires_at)
}

#[test]
fn a_grant_is_delivered_straight_to_the_requester_and_to_nobody_else() {
    use backflow_protocol::return_flow::{self, ReturnFlowMsg, WantPart};
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    // Before a grant, the two nodes (not in line) do not admit each other.
    net.connect(code(REQUESTER), code(PROVIDER));
    net.run(1_000, |_| false);
    assert_eq!(net.ep(code(PROVIDER)).peer_of(code(REQUESTER)), None);
    assert_eq!(net.ep(code(REQUESTER)).peer_of(code(PROVIDER)), None);
    grant(&mut net, &id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));

    // A delivery for another request, or to another region, is refused before any publish.
    let d = delivery(&net, &id, 300_000);
    let hash = net.stage(&d);
    let now = net.now;
    let other = delivery(&net, &[9; 32], 1_000);
    assert!(net
        .node_mut(code(PROVIDER))
        .ep
        .deliver_grant(
            now,
            &id,
            "镇人社分局",
            other.manifest,
            other.entries,
            vec![]
        )
        .is_err());
    let addresses = vec!["/ip4/10.0.0.7/tcp/4001".to_string()];
    let started = net.node_mut(code(PROVIDER)).ep.deliver_grant(
        now,
        &id,
        "镇人社分局",
        d.manifest.clone(),
        d.entries.clone(),
        addresses.clone(),
    );
    assert_eq!(started.unwrap(), hash);
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivering)));
    // The requester's node is told where to connect; the shell dials.
    let dials = net.ep(code(REQUESTER)).delivery_dials(net.now);
    assert_eq!(dials.len(), 1);
    assert_eq!(dials[0].region, code(PROVIDER));
    assert_eq!(dials[0].addresses, addresses);
    net.connect(code(REQUESTER), code(PROVIDER));
    assert!(net.run(60_000, |n| {
        ["0", REQUESTER, PROVIDER].iter().all(|c| {
            let s = if *c == "0" {
                supervised(n, c, &id).map(|c| c.state)
            } else {
                state(n, c, &id)
            };
            s == Some(ShareState::Delivered)
        })
    }));
    // Every byte arrived, verified, at the requester, straight from the provider.
    let got = &net.store(code(REQUESTER)).data[&(hash, code(REQUESTER))];
    assert_eq!(got.bytes, d.contents[&code(REQUESTER)]);
    let carried: Vec<_> = net.chunk_bytes.keys().copied().collect();
    assert_eq!(carried, vec![(code(PROVIDER), code(REQUESTER))]);
    // No other node holds the delivery, not even the relays the acts went through.
    for c in TREE_CROSS
        .iter()
        .filter(|c| **c != REQUESTER && **c != PROVIDER)
    {
        assert!(net.rf(code(c)).held().all(|(_, h)| h.hash != hash), "{c}");
    }
    assert!(net.ep(code(REQUESTER)).delivery_dials(net.now).is_empty());
    // The grant's connection closes once the delivery is done.
    assert!(net.run(10_000, |n| n
        .ep(code(PROVIDER))
        .peer_of(code(REQUESTER))
        .is_none()));

    // A node admitted to the provider on the tree (its own parent) asks for the requester's
    // partition: refused, nothing served.
    let want = ReturnFlowMsg::Want {
        manifest: hash,
        parts: vec![WantPart {
            region: code(REQUESTER),
            groups: std::iter::once(0..4).collect(),
        }],
    };
    let out = net.inject(code("441900"), code(PROVIDER), Message::ReturnFlow(want));
    assert!(!out
        .iter()
        .any(|o| matches!(o, backflow_protocol::endpoint::Output::ServeChunks { .. })));
    assert!(net.node(code(PROVIDER)).rf_events().any(|e| matches!(
        e,
        return_flow::Event::WantRefused { region, .. } if *region == code(REQUESTER)
    )));
}

#[test]
fn an_act_that_overtakes_the_one_before_it_still_applies() {
    let mut net = net();
    // Hold every act the requester's parent passes down to it: the receipt, then the grant.
    let requester = code(REQUESTER);
    net.hold = Some(Box::new(move |_, to, m| {
        to == requester && matches!(m, Message::Share(ShareMsg::Act(_)))
    }));
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    grant(&mut net, &id);
    assert!(net.run(60_000, |n| n.held.iter().any(|h| matches!(
        &h.msg,
        Message::Share(ShareMsg::Act(a)) if matches!(a.body.kind, ShareActKind::Act(ShareAct::Grant { .. }))
    ))));
    net.hold = None;
    // The grant arrives first, then the receipt.
    let held = std::mem::take(&mut net.held);
    let is_grant = |h: &common::net::Held| {
        matches!(&h.msg, Message::Share(ShareMsg::Act(a))
            if matches!(a.body.kind, ShareActKind::Act(ShareAct::Grant { .. })))
    };
    let grant_copy = held.iter().find(|h| is_grant(h)).unwrap().clone();
    let receipt = held.iter().find(|h| !is_grant(h)).unwrap().clone();
    net.release(grant_copy);
    assert_eq!(state(&net, REQUESTER, &id), Some(ShareState::Submitted));
    net.release(receipt);
    assert_eq!(state(&net, REQUESTER, &id), Some(ShareState::UnderReview));
    // The grant was not acknowledged out of order: its retransmission applies.
    assert!(net.run(120_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    assert_eq!(
        net.ep(code(REQUESTER)).share_service().case(&id),
        net.ep(code(PROVIDER)).share_service().case(&id)
    );
}

#[test]
fn the_common_superior_s_copy_takes_acts_that_arrive_out_of_order() {
    let mut net = net();
    // Hold every act the provider's side (广东) passes up to national, the parties' common
    // superior.
    let (national, guangdong) = (code("0"), code("44"));
    net.hold = Some(Box::new(move |from, to, m| {
        from == guangdong && to == national && matches!(m, Message::Share(ShareMsg::Act(_)))
    }));
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    grant(&mut net, &id);
    let is_grant = |h: &common::net::Held| {
        matches!(&h.msg, Message::Share(ShareMsg::Act(a))
            if matches!(a.body.kind, ShareActKind::Act(ShareAct::Grant { .. })))
    };
    assert!(net.run(60_000, |n| n.held.iter().any(is_grant)));
    net.hold = None;
    let held = std::mem::take(&mut net.held);
    let grant_copy = held.iter().find(|h| is_grant(h)).unwrap().clone();
    let receipt = held
        .iter()
        .find(|h| {
            matches!(&h.msg, Message::Share(ShareMsg::Act(a))
            if matches!(a.body.kind, ShareActKind::Received { .. }))
        })
        .unwrap()
        .clone();
    net.release(grant_copy);
    assert_eq!(
        supervised(&net, "0", &id).map(|c| c.state),
        Some(ShareState::Submitted)
    );
    net.release(receipt);
    // The grant, held for the copy, applies as soon as the receipt has.
    assert_eq!(
        supervised(&net, "0", &id).map(|c| c.state),
        Some(ShareState::Granted)
    );
    assert!(net.run(120_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    assert_eq!(
        supervised(&net, "0", &id).as_ref(),
        net.ep(code(PROVIDER)).share_service().case(&id)
    );
}

/// A request by service interface (服务接口), filed, received and granted; both parties know.
fn granted_service(net: &mut Net) -> backflow_protocol::manifest::Hash {
    let now = net.now;
    let mut r = request(net);
    r.method = SharingMethod::ServiceApi;
    let id = net
        .node_mut(code(REQUESTER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    grant(net, &id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    id
}

/// The answer events of service interface calls at `c`.
fn service_answers(
    net: &Net,
    c: &str,
) -> Vec<(
    u64,
    Result<
        backflow_protocol::service_interface::LookupAnswer,
        backflow_protocol::service_interface::LookupRefusal,
    >,
)> {
    use backflow_protocol::service_interface::ServiceEvent;
    net.node(code(c))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Service(ServiceEvent::Answered { id, result }) => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// 服务接口 (Art. 22): once granted and opened, the requester's department looks records up
/// by key straight at the provider's node; only the grant's requester region is answered,
/// only within its term, at a bounded rate; every call is counted, and the count survives a
/// restart.
#[test]
fn a_service_interface_answers_only_its_requester_within_its_rate_and_counts_every_call() {
    use backflow_protocol::service_interface::{
        LookupQuery, LookupRefusal, ServiceMsg, CALLS_BURST,
    };
    let mut net = net();
    let id = granted_service(&mut net);
    // Granted but not opened: nothing to call yet.
    let now = net.now;
    let keys = vec!["110101199001011234".to_string(), "不存在".to_string()];
    assert_eq!(
        net.node_mut(code(REQUESTER))
            .ep
            .call_service(now, "民政局", &id, keys.clone()),
        Err(LookupRefusal::NotGranted)
    );
    // A batch exchange's start (with a manifest) does not open a service.
    assert!(net
        .node_mut(code(PROVIDER))
        .ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::StartDelivery {
                route: Some(route())
            }
        )
        .is_err());

    // The provider loads the granted data and opens the service: delivered (Art. 22).
    net.node_mut(code(PROVIDER)).store.service_data.insert(
        id,
        [(
            "110101199001011234".to_string(),
            vec!["110101199001011234,参保".as_bytes().to_vec()],
        )]
        .into_iter()
        .collect(),
    );
    let addresses = vec!["/ip4/10.0.0.7/tcp/4001".to_string()];
    net.node_mut(code(PROVIDER))
        .ep
        .open_service(now, &id, "镇人社分局", addresses.clone())
        .unwrap();
    net.flush(code(PROVIDER));
    assert_eq!(state(&net, PROVIDER, &id), Some(ShareState::Delivered));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivered)));

    // Only the requesting department calls.
    let now = net.now;
    assert_eq!(
        net.node_mut(code(REQUESTER))
            .ep
            .call_service(now, "另一部门", &id, keys.clone()),
        Err(LookupRefusal::NotTheRequester)
    );
    // A call waits for the direct connection, which the shell dials; answered there.
    let call = net
        .node_mut(code(REQUESTER))
        .ep
        .call_service(now, "民政局", &id, keys.clone())
        .unwrap();
    let dials = net.ep(code(REQUESTER)).delivery_dials(now);
    assert_eq!(dials.len(), 1);
    assert_eq!(
        (dials[0].region, &dials[0].addresses),
        (code(PROVIDER), &addresses)
    );
    net.connect(code(REQUESTER), code(PROVIDER));
    assert!(net.run(10_000, |n| !service_answers(n, REQUESTER).is_empty()));
    let (answered, result) = service_answers(&net, REQUESTER).remove(0);
    assert_eq!(answered, call);
    let answer = result.unwrap();
    assert_eq!(answer.records.len(), 1, "one key found, the other not");
    assert_eq!(answer.records[0].key, keys[0]);
    assert_eq!(
        answer.records[0].line,
        "110101199001011234,参保".as_bytes().to_vec()
    );
    // No other node carried the call or its answer: the two nodes talk directly.
    assert!(net.ep(code(REQUESTER)).delivery_dials(net.now).is_empty());

    // Another node asking for this grant's records — here the provider's own parent — is
    // refused, and not counted against the grant.
    let lookup = |n: u64| {
        Message::Service(ServiceMsg::Lookup {
            id: n,
            query: LookupQuery {
                request: id,
                keys: keys.clone(),
            },
        })
    };
    let refusals =
        |out: &[backflow_protocol::endpoint::Output<backflow_protocol::RegionCode>]| {
            out.iter()
                .filter_map(|o| match o {
                    backflow_protocol::endpoint::Output::Send {
                        msg: Message::Service(ServiceMsg::Answer { result, .. }),
                        ..
                    } => Some(result.clone().err()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
    let out = net.inject(code("441900"), code(PROVIDER), lookup(1));
    assert_eq!(refusals(&out), vec![Some(LookupRefusal::NotTheRequester)]);

    // The rate: a burst of calls beyond the bucket is refused with when to retry.
    let mut answers = Vec::new();
    for n in 0..CALLS_BURST + 10 {
        answers.extend(refusals(&net.inject(
            code(REQUESTER),
            code(PROVIDER),
            lookup(100 + n),
        )));
    }
    let ok = answers.iter().filter(|a| a.is_none()).count() as u64;
    let limited = answers
        .iter()
        .filter(|a| matches!(a, Some(LookupRefusal::RateLimited { retry_after_ms }) if *retry_after_ms > 0))
        .count() as u64;
    // One call was spent above, moments ago.
    assert_eq!(ok + limited, CALLS_BURST + 10, "{answers:?}");
    assert!(
        ok >= CALLS_BURST - 1 && limited >= 10,
        "{ok} answered, {limited} limited"
    );
    let usage = *net.ep(code(PROVIDER)).service_usage(&id).unwrap();
    assert_eq!(usage.calls, 1 + ok);
    assert_eq!(usage.refused, limited);
    assert_eq!(usage.records, 1 + ok);
    assert_eq!(usage.keys, 2 * (1 + ok));
    // The count is persisted: a restart keeps it.
    net.restart(code(PROVIDER));
    assert_eq!(net.ep(code(PROVIDER)).service_usage(&id), Some(&usage));

    // After the term of use, no call goes out (and the provider refuses any that come).
    let late = net.now.plus_ms(301 * DAY_MS);
    assert_eq!(
        net.node_mut(code(REQUESTER))
            .ep
            .call_service(late, "民政局", &id, keys.clone()),
        Err(LookupRefusal::Expired)
    );
    assert!(net.ep(code(REQUESTER)).delivery_dials(late).is_empty());
}

/// Art. 27 on a service interface: the provider suspends the requester's sharing for misuse —
/// every call is refused, at both parties the case is suspended with its rectification
/// deadline; reinstated, calls are answered again; the sharing cannot be ended without the
/// negotiation and the filing (¶3), and with them it ends at both parties and their common
/// superior.
#[test]
fn a_suspended_grant_answers_nothing_and_ends_only_with_its_filing() {
    use backflow_protocol::service_interface::LookupRefusal;
    let mut net = net();
    let id = granted_service(&mut net);
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .open_service(now, &id, "镇人社分局", vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivered)));

    let provider_act = |net: &mut Net, act: ShareAct| {
        let now = net.now;
        let r = net
            .node_mut(code(PROVIDER))
            .ep
            .share_act(now, &id, "镇人社分局", act);
        net.flush(code(PROVIDER));
        r
    };
    let suspend = |ordinal: u32, reason: &str| ShareAct::Suspend {
        ordinal,
        reason: reason.to_string(),
        rectify_working_days: 10,
        approved_by: "镇人社分局负责人".to_string(),
    };
    // A suspension states its reason and counts.
    assert!(provider_act(&mut net, suspend(1, " ")).is_err());
    assert!(provider_act(&mut net, suspend(2, "超范围使用")).is_err());
    provider_act(&mut net, suspend(1, "超出使用范围查询")).unwrap();
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Suspended)
        && supervised(n, "0", &id).map(|c| c.state)
            == Some(ShareState::Suspended)));
    let at_requester = net.ep(code(REQUESTER)).share_service().case(&id).unwrap();
    assert_eq!(at_requester.deadline().map(|(a, _)| a), Some(27));
    assert_eq!(
        at_requester.owner(),
        Some(backflow_protocol::share::Party::Requester)
    );
    // No call goes out while suspended (and the provider would refuse one).
    let now = net.now;
    assert_eq!(
        net.node_mut(code(REQUESTER))
            .ep
            .call_service(now, "民政局", &id, vec!["k".into()]),
        Err(LookupRefusal::Suspended)
    );
    assert!(net.ep(code(PROVIDER)).delivery_dials(now).is_empty());
    // The requester reports its rectification; the provider reinstates.
    let now = net.now;
    net.node_mut(code(REQUESTER))
        .ep
        .share_act(
            now,
            &id,
            "民政局",
            ShareAct::Rectify {
                ordinal: 1,
                report: "已删除超范围查询结果并加强审批".into(),
            },
        )
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(net.run(60_000, |n| n
        .ep(code(PROVIDER))
        .share_service()
        .case(&id)
        .and_then(|c| c.suspension.as_ref())
        .is_some_and(|s| s.rectified.is_some())));
    provider_act(
        &mut net,
        ShareAct::Reinstate {
            ordinal: 1,
            note: "整改到位".into(),
            approved_by: "镇人社分局负责人".into(),
        },
    )
    .unwrap();
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivered)));
    let now = net.now;
    assert!(net
        .node_mut(code(REQUESTER))
        .ep
        .call_service(now, "民政局", &id, vec!["k".into()])
        .is_ok());

    // Ending a running service needs the negotiation and the filing (Art. 27 ¶3).
    let terminate = |negotiation: &str, filing: &str| ShareAct::Terminate {
        reason: "数据源调整".into(),
        negotiation: negotiation.into(),
        filing: filing.into(),
        approved_by: "镇人社分局负责人".into(),
    };
    assert!(matches!(
        provider_act(&mut net, terminate("", "")),
        Err(ShareRejection::Case(
            backflow_protocol::share::ShareError::TerminationWithoutFiling
        ))
    ));
    assert!(provider_act(&mut net, terminate("2026-12-01 与民政局协商一致", "")).is_err());
    provider_act(
        &mut net,
        terminate(
            "2026-12-01 与民政局协商一致",
            "东莞市数据局 2026-12-02 备案",
        ),
    )
    .unwrap();
    assert!(net.run(60_000, |n| {
        state(n, REQUESTER, &id) == Some(ShareState::Terminated)
            && supervised(n, "0", &id).map(|c| c.state) == Some(ShareState::Terminated)
    }));
    let now = net.now;
    assert_eq!(
        net.node_mut(code(REQUESTER))
            .ep
            .call_service(now, "民政局", &id, vec!["k".into()]),
        Err(LookupRefusal::Ended)
    );
    // Nothing more to suspend.
    assert!(provider_act(&mut net, suspend(2, "再次")).is_err());
}

/// Art. 27 ¶1: once the purpose is met the requester disposes of delivered data; its node
/// deletes the content and keeps the record, and the provider sees the case disposed.
#[test]
fn disposal_deletes_the_delivered_data_and_keeps_the_record() {
    use backflow_protocol::share::DisposalMethod;
    let mut net = net();
    let id = file(&mut net);
    let d = delivery(&net, &id, 100_000);
    let hash = grant_and_deliver(&mut net, &id, d);
    assert!(net
        .store(code(REQUESTER))
        .data
        .contains_key(&(hash, code(REQUESTER))));
    // Only the requester disposes, and says how.
    let dispose = |record: &str| ShareAct::Dispose {
        method: DisposalMethod::Delete,
        record: record.into(),
    };
    let now = net.now;
    assert!(net
        .node_mut(code(PROVIDER))
        .ep
        .share_act(now, &id, "镇人社分局", dispose("删除"))
        .is_err());
    assert!(net
        .node_mut(code(REQUESTER))
        .ep
        .share_act(now, &id, "民政局", dispose(""))
        .is_err());
    net.node_mut(code(REQUESTER))
        .ep
        .share_act(now, &id, "民政局", dispose("核查完成，2026-12-04 删除"))
        .unwrap();
    net.flush(code(REQUESTER));
    assert!(!net
        .store(code(REQUESTER))
        .data
        .contains_key(&(hash, code(REQUESTER))));
    assert!(net.rf(code(REQUESTER)).held().all(|(_, h)| h.hash != hash));
    assert!(net
        .store(code(PROVIDER))
        .data
        .contains_key(&(hash, code(REQUESTER))));
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::Disposed)));
    // The sharing has ended: the provider's own staged copy goes too; the case stays.
    assert!(net.rf(code(PROVIDER)).record(&hash).is_none());
    assert!(!net
        .store(code(PROVIDER))
        .data
        .contains_key(&(hash, code(REQUESTER))));
    let case = net.ep(code(REQUESTER)).share_service().case(&id).unwrap();
    assert!(matches!(
        case.ending,
        Some(backflow_protocol::share::Ending::Disposed {
            method: DisposalMethod::Delete,
            ..
        })
    ));
}

/// The stage of dispute `ordinal` in `c`'s copy (its own case, else its supervisory copy).
fn dispute_stage(
    net: &Net,
    c: &str,
    id: &backflow_protocol::manifest::Hash,
) -> Option<backflow_protocol::share::DisputeStage> {
    let s = net.ep(code(c)).share_service();
    let case = s.case(id).cloned().or_else(|| supervised(net, c, id))?;
    case.disputes.last().map(|d| d.stage.clone())
}

/// Art. 28 across regions: a 北京–广东 dispute goes at once to the parties' lowest common
/// superior (national), whose authority coordinates; its act reaches both parties. Nobody
/// else can coordinate, and a party cannot pretend to.
#[test]
fn a_dispute_between_beijing_and_guangdong_is_coordinated_by_the_national_authority() {
    use backflow_protocol::share::DisputeStage;
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    let now = net.now;
    let open = ShareAct::OpenDispute {
        ordinal: 1,
        subject: "共享申请".into(),
        claim: "提供部门要求的材料超出法定范围".into(),
    };
    net.node_mut(code(REQUESTER))
        .ep
        .share_act(now, &id, "民政局", open.clone())
        .unwrap();
    net.flush(code(REQUESTER));
    // One open at a time.
    let again = ShareAct::OpenDispute {
        ordinal: 2,
        subject: "再次".into(),
        claim: "再次".into(),
    };
    assert!(net
        .node_mut(code(REQUESTER))
        .ep
        .share_act(now, &id, "民政局", again)
        .is_err());
    let national = code("0");
    assert!(net.run(60_000, |n| {
        [REQUESTER, PROVIDER, "0"].iter().all(|c| {
            matches!(
                dispute_stage(n, c, &id),
                Some(DisputeStage::Coordinating { authority, .. }) if authority == national
            )
        })
    }));
    // A party cannot coordinate; a relay holding no copy cannot either.
    let now = net.now;
    let coordinate = ShareAct::Coordinate {
        ordinal: 1,
        outcome: "x".into(),
        refer: false,
    };
    assert!(net
        .node_mut(code(PROVIDER))
        .ep
        .share_act(now, &id, "镇人社分局", coordinate)
        .is_err());
    assert!(net
        .node_mut(code("44"))
        .ep
        .coordinate_dispute(now, &id, 1, "协调意见".into(), false)
        .is_err());
    // The national authority coordinates: settled at both parties and in its own copy.
    net.node_mut(national)
        .ep
        .coordinate_dispute(
            now,
            &id,
            1,
            "按目录所列条件补充材料，不再要求其他材料".into(),
            false,
        )
        .unwrap();
    net.flush(national);
    assert!(net.run(60_000, |n| {
        [REQUESTER, PROVIDER, "0"].iter().all(|c| {
            matches!(
                dispute_stage(n, c, &id),
                Some(DisputeStage::Settled {
                    coordinated: true,
                    ..
                })
            )
        })
    }));
    // The request itself goes on.
    assert_eq!(state(&net, PROVIDER, &id), Some(ShareState::UnderReview));
}

/// Art. 28 within one jurisdiction: two departments of one node negotiate first; taken to
/// the authority, the node's own authority coordinates — and refers it to its people's
/// government when it cannot settle it.
#[test]
fn a_dispute_within_one_node_is_negotiated_first_then_coordinated_there() {
    use backflow_protocol::share::DisputeStage;
    let mut net = net();
    let now = net.now;
    let mut r = request(&net);
    r.requester = origin(PROVIDER, "镇民政办");
    let id = net
        .node_mut(code(PROVIDER))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    let ep = &mut net.node_mut(code(PROVIDER)).ep;
    ep.share_act(
        now,
        &id,
        "镇人社分局",
        ShareAct::OpenDispute {
            ordinal: 1,
            subject: "共享申请".into(),
            claim: "申请的使用范围超出履职需要".into(),
        },
    )
    .unwrap();
    let stage = |ep: &backflow_protocol::Endpoint<backflow_protocol::RegionCode>| {
        ep.share_service().case(&id).unwrap().disputes[0]
            .stage
            .clone()
    };
    assert_eq!(stage(ep), DisputeStage::Negotiating);
    // Negotiation first: the authority cannot coordinate yet.
    assert!(ep
        .coordinate_dispute(now, &id, 1, "协调".into(), false)
        .is_err());
    // Only the party that opened it settles it by agreement.
    assert!(ep
        .share_act(
            now,
            &id,
            "镇民政办",
            ShareAct::SettleDispute {
                ordinal: 1,
                outcome: "x".into()
            }
        )
        .is_err());
    ep.share_act(
        now,
        &id,
        "镇民政办",
        ShareAct::EscalateDispute { ordinal: 1 },
    )
    .unwrap();
    assert!(matches!(
        stage(ep),
        DisputeStage::Coordinating { authority, .. } if authority == code(PROVIDER)
    ));
    ep.coordinate_dispute(now, &id, 1, "协调未果，报镇人民政府决定".into(), true)
        .unwrap();
    assert!(matches!(stage(ep), DisputeStage::Referred { .. }));
    // Referred is where it ends here.
    assert!(ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::SettleDispute {
                ordinal: 1,
                outcome: "x".into()
            }
        )
        .is_err());
}

/// Art. 28 across tiers within one city: two districts' departments (东城区, 西城区) take a
/// dispute to their lowest common superior, the city (北京市辖区), whose authority refers it to
/// its people's government; both parties see it.
#[test]
fn a_dispute_within_one_city_goes_to_the_city_s_authority() {
    use backflow_protocol::share::DisputeStage;
    const TREE_CITY: &[&str] = &["0", "11", "1101", "110101", "110102"];
    let mut net = Net::with_tree(9, Faults::NONE, NetConfig::with(TEST_TUNING), TREE_CITY);
    let update = signed_update(
        &net.fx,
        "110102",
        "区人社局",
        1,
        vec![add("shebao", "区人社局")],
    );
    net.submit_catalog(code("110102"), update).unwrap();
    net.add_department(code("110101"), "民政局");
    net.add_department(code("110102"), "区人社局");
    let now = net.now;
    let mut r = request(&net);
    r.provider = origin("110102", "区人社局");
    let id = net
        .node_mut(code("110101"))
        .ep
        .file_share_request(now, r, SharingAttribute::Unconditional)
        .unwrap();
    net.flush(code("110101"));
    assert!(net.run(60_000, |n| state(n, "110102", &id)
        == Some(ShareState::UnderReview)));
    let now = net.now;
    net.node_mut(code("110102"))
        .ep
        .share_act(
            now,
            &id,
            "区人社局",
            ShareAct::OpenDispute {
                ordinal: 1,
                subject: "使用范围".into(),
                claim: "申请的使用范围超出履职需要".into(),
            },
        )
        .unwrap();
    net.flush(code("110102"));
    let city = code("1101");
    assert!(net.run(60_000, |n| matches!(
        dispute_stage(n, "1101", &id),
        Some(DisputeStage::Coordinating { authority, .. }) if authority == city
    )));
    // Not national's to coordinate.
    let now = net.now;
    assert!(net
        .node_mut(code("0"))
        .ep
        .coordinate_dispute(now, &id, 1, "x".into(), false)
        .is_err());
    net.node_mut(city)
        .ep
        .coordinate_dispute(now, &id, 1, "协调未果，报市人民政府决定".into(), true)
        .unwrap();
    net.flush(city);
    assert!(net.run(60_000, |n| ["110101", "110102", "1101"].iter().all(
        |c| matches!(
            dispute_stage(n, c, &id),
            Some(DisputeStage::Referred { .. })
        )
    )));
}

/// Art. 26: the requester files a correction request against records of the delivered data;
/// the provider owes the answer within 10 working days — unanswered, it is overdue at both
/// parties and their common superior; "not an error" needs its reason; one request at a time.
#[test]
fn a_correction_request_is_answered_within_ten_working_days_or_reported_overdue() {
    use backflow_protocol::share::{CorrectionItem, CORRECTION_WORKING_DAYS};
    let mut net = net();
    let id = granted_service(&mut net);
    let now = net.now;
    let item = CorrectionItem {
        key: "110101199001011234".into(),
        field: "参保状态".into(),
        problem: "已于2026年11月停保，数据仍为参保".into(),
    };
    let request = |ordinal: u32| ShareAct::RequestCorrection {
        ordinal,
        items: vec![item.clone()],
    };
    // Only against delivered data.
    assert!(net
        .node_mut(code(REQUESTER))
        .ep
        .share_act(now, &id, "民政局", request(1))
        .is_err());
    net.node_mut(code(PROVIDER))
        .ep
        .open_service(now, &id, "镇人社分局", vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivered)));
    let now = net.now;
    let ep = &mut net.node_mut(code(REQUESTER)).ep;
    assert!(ep
        .share_act(
            now,
            &id,
            "民政局",
            ShareAct::RequestCorrection {
                ordinal: 1,
                items: vec![]
            }
        )
        .is_err());
    ep.share_act(now, &id, "民政局", request(1)).unwrap();
    assert!(ep.share_act(now, &id, "民政局", request(2)).is_err());
    net.flush(code(REQUESTER));
    let case = net
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .unwrap()
        .clone();
    let (article, due) = case.deadline().unwrap();
    assert_eq!(article, 26);
    assert_eq!(
        due,
        backflow_protocol::calendar::WorkingCalendar::official()
            .deadline(now, CORRECTION_WORKING_DAYS)
            .unwrap()
    );
    assert_eq!(
        case.owner(),
        Some(backflow_protocol::share::Party::Provider)
    );
    let overdue = |n: &Net, c: &str| {
        share_events(n, c).iter().any(|e| {
            matches!(e, ShareEvent::Overdue { request, article: 26, due: d } if *request == id && *d == due)
        })
    };
    let limit = due.since_ms(net.now) + DAY_MS;
    assert!(net.run(limit, |n| overdue(n, PROVIDER)
        && overdue(n, REQUESTER)
        && overdue(n, "0")));
    // The late answer: "not an error" says why; then it closes at both parties.
    let now = net.now;
    let answer = |reason: &str| ShareAct::AnswerCorrection {
        ordinal: 1,
        corrected: false,
        reason: reason.into(),
        approved_by: "镇人社分局负责人".into(),
    };
    let ep = &mut net.node_mut(code(PROVIDER)).ep;
    assert!(ep.share_act(now, &id, "镇人社分局", answer(" ")).is_err());
    ep.share_act(now, &id, "镇人社分局", answer("经核实，停保手续尚未办结"))
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| {
        n.ep(code(REQUESTER))
            .share_service()
            .case(&id)
            .is_some_and(|c| {
                c.open_correction().is_none() && c.deadline() == Some((27, c.request.use_until))
            })
    }));
}

/// A term of use longer than a manifest's validity (#17): the provider's node renews the
/// delivered data's manifest a week before it ends — the same content, a new version — and
/// the requester's node verifies it again without a byte transferred; both copies record the
/// renewal and the delivery, and the direct connection closes again.
#[test]
fn a_delivery_is_renewed_before_its_manifest_ends_while_the_term_runs() {
    use backflow_protocol::endpoint::DELIVERY_RENEW_BEFORE_MS;
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    grant(&mut net, &id);
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Granted)));
    // A manifest that ends in 8 days (a real one: 90), the term in 300.
    let d = delivery_until(&net, &id, 300_000, net.now.plus_ms(8 * DAY_MS));
    let first = net.stage(&d);
    let expires = d.manifest.manifest.expires_at;
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .deliver_grant(now, &id, "镇人社分局", d.manifest, d.entries, vec![])
        .unwrap();
    net.flush(code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, REQUESTER, &id)
        == Some(ShareState::Delivering)));
    net.connect(code(REQUESTER), code(PROVIDER));
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::Delivered)));
    let bytes_first: u64 = net.chunk_bytes.values().sum();
    assert!(bytes_first >= 300_000);
    // Nothing happens until a week before the manifest ends.
    let quiet = expires.since_ms(net.now) - DELIVERY_RENEW_BEFORE_MS - 2 * 3_600_000;
    net.run(quiet, |_| false);
    let route = |n: &Net, c: &str| {
        n.ep(code(c))
            .share_service()
            .case(&id)
            .and_then(|c| c.delivery.as_ref()?.manifest)
    };
    assert_eq!(route(&net, REQUESTER), Some(first));
    // Then it is renewed, and delivered again at both parties with nothing transferred.
    assert!(net.run(DAY_MS, |n| route(n, REQUESTER) != Some(first)));
    // The requester's node dials the provider again to verify it (the shell does; here the
    // test connects).
    let dials = net.ep(code(REQUESTER)).delivery_dials(net.now);
    assert_eq!(dials.len(), 1);
    assert_eq!(dials[0].region, code(PROVIDER));
    net.connect(code(REQUESTER), code(PROVIDER));
    let renewed_everywhere = net.run(60_000, |n| {
        route(n, REQUESTER) != Some(first)
            && state(n, REQUESTER, &id) == Some(ShareState::Delivered)
            && state(n, PROVIDER, &id) == Some(ShareState::Delivered)
    });
    assert!(
        renewed_everywhere,
        "provider {:?}, requester {:?}",
        state(&net, PROVIDER, &id),
        state(&net, REQUESTER, &id),
    );
    let renewed = route(&net, REQUESTER).unwrap();
    assert_eq!(route(&net, PROVIDER), Some(renewed));
    let held: Vec<_> = net
        .rf(code(REQUESTER))
        .held()
        .filter(|(_, h)| h.hash == renewed)
        .map(|(_, h)| h.version)
        .collect();
    assert_eq!(held, vec![2], "the renewed version replaces the first");
    let record = net.rf(code(REQUESTER)).record(&renewed).unwrap();
    assert!(record.manifest.manifest.expires_at > expires);
    assert!(net
        .store(code(REQUESTER))
        .data
        .contains_key(&(renewed, code(REQUESTER))));
    let bytes_after: u64 = net.chunk_bytes.values().sum();
    assert_eq!(bytes_after, bytes_first, "no byte transferred again");
    assert!(net.run(10_000, |n| n
        .ep(code(PROVIDER))
        .peer_of(code(REQUESTER))
        .is_none()));
}

/// Art. 27 ¶2: an authority above the requester suspends the department's sharing rights
/// (暂停政务数据共享权限); the signed act reaches every node — one that was down at its next
/// connection — survives a restart, and every node enforces it: no filing, no grant, no use
/// or passing on of data granted before, and only a reinstatement by the same authority lifts
/// it. Neither an authority without jurisdiction nor an edited act is taken.
#[test]
fn an_authority_s_suspension_of_a_department_reaches_every_node_and_is_enforced_there() {
    use backflow_protocol::share::{RightsError, RightsMsg, RightsOrder, UsageRefusal};
    let mut net = net();
    let id = file(&mut net);
    assert!(net.run(60_000, |n| state(n, PROVIDER, &id)
        == Some(ShareState::UnderReview)));
    let suspend = RightsOrder::Suspend {
        reason: "擅自将共享数据提供给第三方".into(),
        rectify_working_days: 10,
        approved_by: "政务数据共享主管部门负责人".into(),
    };
    let reinstate = RightsOrder::Reinstate {
        note: "整改到位".into(),
        approved_by: "政务数据共享主管部门负责人".into(),
    };
    let order = |net: &mut Net, authority: &str, order: &RightsOrder| {
        let now = net.now;
        let r = net.node_mut(code(authority)).ep.order_rights(
            now,
            origin(REQUESTER, "民政局"),
            order.clone(),
        );
        net.flush(code(authority));
        r
    };
    let suspended_at = |n: &Net, c: &str| {
        n.ep(code(c))
            .share_service()
            .rights()
            .suspension(&origin(REQUESTER, "民政局"))
            .map(|s| s.body.issuer)
    };
    // 广东's authority has no jurisdiction over a 北京 department.
    assert!(matches!(
        order(&mut net, "44", &suspend),
        Err(RightsError::OutsideJurisdiction { .. })
    ));
    // The provider's node is down while 北京 suspends.
    net.crash(code(PROVIDER));
    let act = order(&mut net, "11", &suspend).unwrap();
    assert!(net.run(10_000, |n| TREE_CROSS
        .iter()
        .filter(|c| **c != PROVIDER)
        .all(|c| suspended_at(n, c) == Some(code("11")))));
    assert_eq!(suspended_at(&net, PROVIDER), None);
    assert!(matches!(
        order(&mut net, "11", &suspend),
        Err(RightsError::AlreadySuspended { .. })
    ));
    // Back up, it hears of it from its parent at once.
    net.set_up(code(PROVIDER));
    assert!(net.run(10_000, |n| suspended_at(n, PROVIDER).is_some()));

    // The requester files nothing; the provider grants nothing — also after a restart.
    let now = net.now;
    let mut other = request(&net);
    other.scope = "另一批申请人".into();
    assert!(matches!(
        net.node_mut(code(REQUESTER)).ep.file_share_request(
            now,
            other,
            SharingAttribute::Unconditional
        ),
        Err(ShareRejection::RightsSuspended { .. })
    ));
    net.restart(code(PROVIDER));
    assert_eq!(suspended_at(&net, PROVIDER), Some(code("11")));
    let grant_act = ShareAct::Grant {
        conditions: Vec::new(),
        approved_by: "镇人社分局负责人".to_string(),
    };
    let now = net.now;
    let refused = net
        .node_mut(code(PROVIDER))
        .ep
        .share_act(now, &id, "镇人社分局", grant_act);
    assert!(
        matches!(refused, Err(ShareRejection::RightsSuspended { .. })),
        "{refused:?}"
    );

    // Reinstated by the same authority: granted and delivered.
    order(&mut net, "11", &reinstate).unwrap();
    assert!(net.run(10_000, |n| TREE_CROSS
        .iter()
        .all(|c| suspended_at(n, c).is_none())));
    let d = delivery(&net, &id, 4_000);
    let entries = d.entries.clone();
    grant_and_deliver(&mut net, &id, d);
    let case = net
        .ep(code(REQUESTER))
        .share_service()
        .case(&id)
        .unwrap()
        .clone();
    assert!(net
        .ep(code(REQUESTER))
        .share_service()
        .usable(&case, net.now)
        .is_ok());

    // National suspends it as well: the data granted before is no longer used or passed on
    // at the requester's node, and 北京, with no suspension of its own, cannot lift it.
    order(&mut net, "0", &suspend).unwrap();
    assert!(net.run(10_000, |n| suspended_at(n, REQUESTER) == Some(code("0"))));
    let ep = net.ep(code(REQUESTER));
    assert!(matches!(
        ep.share_service().usable(&case, net.now),
        Err(UsageRefusal::RightsSuspended { by, .. }) if by == code("0")
    ));
    let third = backflow_protocol::share::Recipient::Region(code("110102"));
    assert!(matches!(
        ep.check_pass_on(net.now, &entries, &third),
        Err(UsageRefusal::RightsSuspended { .. })
    ));
    assert!(matches!(
        order(&mut net, "11", &reinstate),
        Err(RightsError::NotSuspended { .. })
    ));
    order(&mut net, "0", &reinstate).unwrap();
    assert!(net.run(10_000, |n| suspended_at(n, REQUESTER).is_none()));

    // 北京 suspends again for one working day; the department does not rectify. Terminating
    // before the period ran out is refused; after it, the sharing ends (终止共享): the grant
    // requested before is over at both parties, while the department may file anew.
    let one_day = RightsOrder::Suspend {
        reason: "再次超范围使用".into(),
        rectify_working_days: 1,
        approved_by: "政务数据共享主管部门负责人".into(),
    };
    let terminate = RightsOrder::Terminate {
        reason: "拒不整改".into(),
        approved_by: "政务数据共享主管部门负责人".into(),
    };
    let again = order(&mut net, "11", &one_day).unwrap();
    let backflow_protocol::share::RightsDecision::Suspend { rectify_by, .. } = again.body.decision
    else {
        panic!("a suspension")
    };
    assert!(matches!(
        order(&mut net, "11", &terminate),
        Err(RightsError::RectificationRuns { .. })
    ));
    net.run(rectify_by.since_ms(net.now) + 1, |n| n.now > rectify_by);
    order(&mut net, "11", &terminate).unwrap();
    let ended = |n: &Net, c: &str| {
        let s = n.ep(code(c)).share_service();
        s.case(&id)
            .is_some_and(|case| s.ended_by_authority(case).is_some())
    };
    assert!(net.run(10_000, |n| ended(n, REQUESTER) && ended(n, PROVIDER)));
    assert_eq!(
        suspended_at(&net, REQUESTER),
        None,
        "the suspension is over"
    );
    let ep = net.ep(code(REQUESTER));
    let case = ep.share_service().case(&id).unwrap();
    assert!(matches!(
        ep.share_service().usable(case, net.now),
        Err(UsageRefusal::SharingTerminated { .. })
    ));
    let now = net.now;
    let mut anew = request(&net);
    anew.scope = "整改后的新申请".into();
    anew.filed_at = now;
    assert!(net
        .node_mut(code(REQUESTER))
        .ep
        .file_share_request(now, anew, SharingAttribute::Unconditional)
        .is_ok());

    // An act edited on its way (another department, a later number) is not taken, and not
    // passed on.
    let mut forged = (*act).clone();
    forged.body.department.department = "区卫健委".into();
    forged.body.ordinal = 9;
    net.inject(
        code("44"),
        code("0"),
        Message::Share(ShareMsg::Rights(RightsMsg {
            acts: vec![Arc::new(forged)],
        })),
    );
    net.run(5_000, |_| false);
    let health = origin(REQUESTER, "区卫健委");
    assert!(TREE_CROSS.iter().all(|c| net
        .ep(code(c))
        .share_service()
        .rights()
        .latest(&health, code("11"))
        .is_none()));
    assert!(share_events(&net, "0").iter().any(|e| matches!(
        e,
        ShareEvent::RightsRejected {
            error: RightsError::Cert(_),
            ..
        }
    )));
}

/// An act on sharing rights goes to each neighbour once, unacknowledged: on a path that loses
/// half of all frames some node misses it, and the resend of everything held every ten minutes
/// (`RIGHTS_RESYNC_MS`) brings it to every node all the same.
#[test]
fn a_suspension_lost_on_the_way_still_reaches_every_node() {
    use backflow_protocol::share::RightsOrder;
    let faults = Faults {
        loss: 0.5,
        duplicate: 0.0,
        delay_ms_max: 20,
    };
    let mut net = net_with(11, faults);
    let now = net.now;
    let order = RightsOrder::Suspend {
        reason: "擅自将共享数据提供给第三方".into(),
        rectify_working_days: 10,
        approved_by: "政务数据共享主管部门负责人".into(),
    };
    net.node_mut(code("11"))
        .ep
        .order_rights(now, origin(REQUESTER, "民政局"), order)
        .unwrap();
    net.flush(code("11"));
    let holds = |n: &Net, c: &str| {
        n.ep(code(c))
            .share_service()
            .rights()
            .suspension(&origin(REQUESTER, "民政局"))
            .is_some()
    };
    let all = |n: &Net| TREE_CROSS.iter().all(|c| holds(n, c));
    assert!(
        net.run(3 * 3_600_000, all),
        "held at {:?}",
        TREE_CROSS
            .iter()
            .filter(|c| holds(&net, c))
            .collect::<Vec<_>>()
    );
}

/// Art. 26 on returned data (Art. 24): a 北京 county department finds records of a national
/// return-flow dataset wrong and files a correction request (校核申请) against the version it
/// holds; it travels up to the ministry's node, both copies run the same 10 working days, and
/// unanswered it is reported overdue at both. "Corrected" is refused until the ministry has
/// published a later version; that version then reaches every holder, moving only the
/// corrected partition, and the answer names it at the requester.
#[test]
fn a_correction_request_against_returned_data_reaches_its_publisher_and_every_holder_the_correction(
) {
    use backflow_protocol::manifest::DatasetId;
    use backflow_protocol::share::CorrectionItem;
    let mut net = net();
    net.add_department(code("0"), "民政部");
    let parts = [(REQUESTER, 100_000), (PROVIDER, 100_000)];
    let validity_ms = 60 * DAY_MS;
    let d1 = dataset(
        &net.fx,
        "低保对象名单",
        1,
        None,
        "0",
        "0",
        &parts,
        net.now,
        validity_ms,
    );
    let h1 = net.publish(&d1);
    assert!(net.run(120_000, |n| n.delivered_everywhere(&d1, h1)));
    let dataset_id = d1.manifest.manifest.dataset_id();
    let items = vec![CorrectionItem {
        key: "110101199001011234".into(),
        field: "村居".into(),
        problem: "已迁出东城区".into(),
    }];
    // Only against returned data the node holds.
    let now = net.now;
    let other = DatasetId {
        name: "其他名单".into(),
        ..dataset_id.clone()
    };
    let ep = &mut net.node_mut(code(REQUESTER)).ep;
    let refused = ep.file_returned_correction(now, "民政局", other, items.clone());
    assert!(
        matches!(refused, Err(ShareRejection::ReturnedDataNotHeld { .. })),
        "{refused:?}"
    );
    let no_items = ep.file_returned_correction(now, "民政局", dataset_id.clone(), vec![]);
    assert!(no_items.is_err());
    let id = ep
        .file_returned_correction(now, "民政局", dataset_id.clone(), items)
        .unwrap();
    net.flush(code(REQUESTER));
    let copy = |n: &Net, c: &str| {
        n.ep(code(c))
            .share_service()
            .returned_correction(&id)
            .cloned()
    };
    assert!(net.run(60_000, |n| copy(n, "0").is_some()));
    let at_publisher = copy(&net, "0").unwrap();
    assert_eq!(at_publisher, copy(&net, REQUESTER).unwrap());
    assert_eq!(
        (at_publisher.request.version, at_publisher.request.manifest),
        (1, h1)
    );
    assert_eq!(
        at_publisher.due,
        backflow_protocol::calendar::WorkingCalendar::official()
            .deadline(now, backflow_protocol::share::CORRECTION_WORKING_DAYS)
            .unwrap()
    );
    // No relay keeps a copy: it concerns the two parties.
    assert!(copy(&net, "11").is_none() && copy(&net, "44").is_none());
    // Unanswered past 10 working days: overdue at both parties.
    let due = at_publisher.due;
    let overdue = |n: &Net, c: &str| {
        share_events(n, c).iter().any(|e| {
            matches!(e, ShareEvent::Overdue { request, article: 26, due: d } if *request == id && *d == due)
        })
    };
    let limit = due.since_ms(net.now) + DAY_MS;
    assert!(net.run(limit, |n| overdue(n, "0") && overdue(n, REQUESTER)));
    // "Corrected" before a corrected version exists: refused, with what to do.
    let now = net.now;
    let approved = "民政部数据共享工作机构负责人".to_string();
    let ep = &mut net.node_mut(code("0")).ep;
    let early =
        ep.answer_returned_correction(now, &id, "民政部", true, "".into(), approved.clone());
    assert!(
        matches!(
            early,
            Err(ShareRejection::CorrectedVersionNotPublished { version: 1 })
        ),
        "{early:?}"
    );
    // Only the publisher's department answers.
    net.add_department(code("0"), "公安部");
    let now = net.now;
    let ep = &mut net.node_mut(code("0")).ep;
    let stranger =
        ep.answer_returned_correction(now, &id, "公安部", false, "x".into(), approved.clone());
    assert!(
        matches!(stranger, Err(ShareRejection::NotAParty)),
        "{stranger:?}"
    );
    // Version 2 corrects the county's partition only.
    let bytes_before: u64 = net.chunk_bytes.values().sum();
    let guangdong_before = net.chunk_bytes.get(&(code("0"), code("44"))).copied();
    assert!(guangdong_before.is_some(), "version 1 went to 广东");
    let mut contents = d1.contents.clone();
    contents.insert(code(REQUESTER), content(code(REQUESTER), 2, 100_000));
    let d2 = dataset_of(
        &net.fx,
        "低保对象名单",
        2,
        Some(h1),
        "0",
        "0",
        contents,
        net.now,
        validity_ms,
    );
    let h2 = net.publish(&d2);
    let now = net.now;
    net.node_mut(code("0"))
        .ep
        .answer_returned_correction(now, &id, "民政部", true, "已核实并更正".into(), approved)
        .unwrap();
    net.flush(code("0"));
    assert!(net.run(120_000, |n| n.delivered_everywhere(&d2, h2)
        && copy(n, REQUESTER)
            .and_then(|c| c.answer)
            .is_some_and(|a| a.corrected_in == Some(2))));
    assert_eq!(copy(&net, REQUESTER), copy(&net, "0"));
    assert_eq!(copy(&net, REQUESTER).unwrap().deadline(), None);
    // Only the corrected partition moved: down its three hops (0 → 11 → 1101 → 110101), and
    // nothing towards 广东, whose partition did not change.
    let moved = net.chunk_bytes.values().sum::<u64>() - bytes_before;
    assert!((300_000..330_000).contains(&moved), "{moved} bytes moved");
    assert_eq!(
        net.chunk_bytes.get(&(code("0"), code("44"))).copied(),
        guangdong_before
    );
    // Kept across a restart of the requester's node.
    net.restart(code(REQUESTER));
    assert_eq!(copy(&net, REQUESTER), copy(&net, "0"));
}
