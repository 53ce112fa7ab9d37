//! Share requests across the country (Arts. 20–22) through real endpoints: a 北京 county
//! department requests a 广东 township department's entry; the signed acts travel up to
//! national and down, hop by hop, and both parties' copies of the case agree on every state
//! and deadline — across retransmission, restart, forgery and overdue answers.

mod common;

use backflow_protocol::calendar::beijing_date;
use backflow_protocol::catalog::{SharingAttribute, SharingMethod};
use backflow_protocol::endpoint::Event;
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

fn state(net: &Net, c: &str, id: &backflow_protocol::manifest::Hash) -> Option<ShareState> {
    net.ep(code(c)).share_service().case(id).map(|c| c.state)
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
    // A department cannot act for the other party, nor receive by hand.
    let now = net.now;
    assert!(matches!(
        net.node_mut(code(REQUESTER))
            .ep
            .share_act(now, &id, "民政局", ShareAct::StartDelivery),
        Err(ShareRejection::Case(_))
    ));
    assert_eq!(
        net.node_mut(code(PROVIDER))
            .ep
            .share_act(now, &id, "镇人社分局", ShareAct::Receive),
        Err(ShareRejection::ReceivedByTheNode)
    );
    assert_eq!(
        net.node_mut(code(PROVIDER))
            .ep
            .share_act(now, &id, "另一部门", ShareAct::StartDelivery),
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
            error: ShareRejection::WrongSigner { .. },
            ..
        }
    )));
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
    assert!(net.run(limit, |n| overdue(n, PROVIDER) && overdue(n, REQUESTER)));
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
    let now = net.now;
    net.node_mut(code(PROVIDER))
        .ep
        .share_act(
            now,
            &id,
            "镇人社分局",
            ShareAct::Grant {
                conditions: Vec::new(),
                approved_by: "镇人社分局负责人".to_string(),
            },
        )
        .unwrap();
    net.flush(code(PROVIDER));
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
