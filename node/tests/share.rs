//! #17 end to end with real nodes on loopback: a 北京 county department (东城区) requests a
//! 广东 township department's conditional catalog entry; the request crosses the country over
//! the nodes' own connections (up to national, down to the township), the township answers,
//! and both nodes hold the same case with the same statutory deadlines — also after the
//! provider restarts; the granted data is delivered, not passed on to a third department
//! without the provider's consent (Art. 25), suspended and disposed of (Art. 27).

use std::time::Duration;

use anyhow::Result;
use backflow_api::{ShareActParams, ShareFileParams};
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::partition::Format;
use backflow_topology::RegionCode;
use common::{calendar, code, fast, wait_until};

mod common;
#[path = "../benches/share_fixture.rs"]
mod share_fixture;

use share_fixture::{entry, PROVIDER, REQUESTER};

fn filing() -> ShareFileParams {
    share_fixture::filing("最低生活保障资格核查")
}

/// 北京 东城区 (the requester's node, its 民政局) to a 东莞 township (the provider's), through
/// national and every level between, connected.
async fn cross_country(dir: &std::path::Path) -> Result<LocalNet> {
    let regions: Vec<RegionCode> = [
        "0", "11", "1101", REQUESTER, "44", "4419", "441900", PROVIDER,
    ]
    .iter()
    .map(|s| code(s))
    .collect();
    let mut net = LocalNet::start_with(&regions, dir, fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    net.add_department(code(REQUESTER), "民政局").await?;
    Ok(net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_department_requests_a_township_entry_across_the_country() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut net = cross_country(dir.path()).await?;
    net.add_department(code(PROVIDER), "镇人社分局").await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let provider = net.nodes[&code(PROVIDER)].clone();
    provider
        .catalog_submit("镇人社分局".into(), vec![entry()])
        .await?;

    // Bad input is refused with every problem named, nothing filed.
    let mut bad = filing();
    bad.basis = String::new();
    bad.method = "fax".into();
    bad.use_until = "tomorrow".into();
    let e = format!(
        "{:#}",
        requester
            .share_file("民政局".into(), bad)
            .await
            .unwrap_err()
    );
    assert!(e.contains("method") && e.contains("use_until"), "{e}");
    assert!(requester.shares(false).await?.is_empty());
    // A department this node does not hold cannot file.
    let e = format!(
        "{:#}",
        requester
            .share_file("未登记部门".into(), filing())
            .await
            .unwrap_err()
    );
    assert!(e.contains("not one this node holds"), "{e}");

    let filed = requester.share_file("民政局".into(), filing()).await?;
    assert_eq!(filed.state, "submitted");
    let id = filed.id.clone();
    wait_until(
        "the provider to receive the request",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "under_review"))
        },
    )
    .await?;
    let at_provider = provider.share(id[..12].to_string()).await?;
    let at_requester = requester.share(id.clone()).await?;
    assert_eq!(at_provider, at_requester, "both parties hold the same case");
    assert!(at_provider.attribute.starts_with("conditional"));
    let deadline = at_provider
        .deadline
        .clone()
        .expect("an answer deadline runs");
    assert_eq!(deadline.article, 21);
    assert!(!deadline.overdue);

    // Only the provider's department answers; a grant's conditions come from the catalog.
    let grant = |conditions: Vec<String>| ShareActParams {
        act: "grant".into(),
        approved_by: Some("镇人社分局负责人".into()),
        conditions,
        ..ShareActParams::default()
    };
    let e = format!(
        "{:#}",
        requester
            .share_act("民政局".into(), id.clone(), grant(Vec::new()))
            .await
            .unwrap_err()
    );
    assert!(e.contains("not done"), "{e}");
    let e = format!(
        "{:#}",
        provider
            .share_act("其他部门".into(), id.clone(), grant(Vec::new()))
            .await
            .unwrap_err()
    );
    assert!(e.contains("not a party"), "{e}");
    let e = format!(
        "{:#}",
        provider
            .share_act(
                "镇人社分局".into(),
                id.clone(),
                grant(vec!["另行收费".into()])
            )
            .await
            .unwrap_err()
    );
    assert!(e.contains("catalog entry lists"), "{e}");

    // The provider restarts before answering: the case and its deadline come back.
    // (A handle keeps the node's database open: let go of ours first.)
    drop(provider);
    net.stop(code(PROVIDER)).await?;
    net.restart(code(PROVIDER)).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let provider = net.nodes[&code(PROVIDER)].clone();
    assert_eq!(provider.share(id.clone()).await?, at_provider);
    let granted = provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            grant(vec!["社会救助资格核查".into()]),
        )
        .await?;
    assert_eq!(granted.state, "granted");
    assert_eq!(granted.deadline.as_ref().map(|d| d.article), Some(22));
    wait_until(
        "the requester to hear of the grant",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "granted"))
        },
    )
    .await?;
    assert_eq!(
        requester.share(id.clone()).await?,
        provider.share(id.clone()).await?
    );
    // The parties' lowest common superior (national) oversees the case: the same state and
    // deadline, marked supervised. Other relays hold nothing.
    let national = net.nodes[&code("0")].clone();
    let at_provider = provider.share(id.clone()).await?;
    wait_until(
        "national to see the grant",
        Duration::from_secs(30),
        async || {
            Ok(national
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "granted"))
        },
    )
    .await?;
    let overseen = national.share(id.clone()).await?;
    assert!(overseen.supervised);
    assert_eq!(overseen.deadline, at_provider.deadline);
    assert_eq!(national.shares(false).await?.len(), 1);
    drop(national);
    for relay in ["11", "44", "441900"] {
        assert!(
            net.nodes[&code(relay)].shares(false).await?.is_empty(),
            "{relay}"
        );
    }

    // Batch exchange (Art. 22): the provider sends the granted data; the requester's node
    // connects to the provider's directly (the two are not in line: only the grant admits
    // it), fetches and verifies it, and its node records the delivery.
    let mut data = "公民身份号码,参保状态\r\n".as_bytes().to_vec();
    let header_len = data.len();
    for i in 0..20_000 {
        data.extend_from_slice(format!("11010119900101{i:04},参保\r\n").as_bytes());
    }
    let input =
        |d: &[u8]| -> Box<dyn std::io::Read + Send> { Box::new(std::io::Cursor::new(d.to_vec())) };
    // Only the provider's department delivers, and only what it granted.
    let e = format!(
        "{:#}",
        requester
            .deliver_share(
                "民政局".into(),
                id.clone(),
                Format::Csv,
                None,
                dir.path().join("w1"),
                input(&data)
            )
            .await
            .unwrap_err()
    );
    assert!(e.contains("provided by"), "{e}");
    let provider_delivers = async |work: &str, bytes: &[u8]| {
        let work = dir.path().join(work);
        let department = "镇人社分局".to_string();
        provider
            .deliver_share(
                department,
                id.clone(),
                Format::Csv,
                None,
                work,
                input(bytes),
            )
            .await
    };
    let delivered_at_both = async |what: &str| -> Result<()> {
        for (name, node) in [("requester", &requester), ("provider", &provider)] {
            wait_until(
                &format!("the {name} to record {what}"),
                Duration::from_secs(60),
                async || {
                    Ok(node
                        .share(id.clone())
                        .await
                        .is_ok_and(|v| v.state == "delivered"))
                },
            )
            .await?;
        }
        Ok(())
    };
    let started = provider_delivers("w2", &data).await?;
    assert_eq!(started.state, "delivering");
    let delivery = started.delivery.clone().expect("the delivery is named");
    // Once only.
    assert!(provider_delivers("w3", &data).await.is_err());
    delivered_at_both("the delivery").await?;
    let record = requester.record(&delivery.dataset, None).await?.remove(0).1;
    let out = dir.path().join("delivered.csv");
    let summary = backflow_node::export::export(&requester.store, &record, code(REQUESTER), &out)?;
    assert_eq!(summary.records, 20_000);
    assert_eq!(std::fs::read(&out)?, data, "exported byte for byte");
    assert!(header_len > 0);
    // Nobody else holds it: not national, not the provider's own parent.
    for other in ["0", "11", "1101", "44", "4419", "441900"] {
        assert!(
            net.nodes[&code(other)]
                .record(&delivery.dataset, None)
                .await
                .is_err(),
            "{other} holds the delivery"
        );
    }
    // The grant's direct connection is closed again once delivered.
    wait_until(
        "the delivery connection to close",
        Duration::from_secs(30),
        async || {
            Ok(!provider
                .peers()
                .await?
                .iter()
                .any(|p| p.region.as_deref() == Some(REQUESTER)))
        },
    )
    .await?;

    // Art. 26 for a batch exchange: the requester names a wrong record; "corrected" is refused
    // until the corrected data is sent; it goes as the delivery's next version to the
    // requester's node alone (the grant's connection opens again), which then exports the
    // corrected data byte for byte, and the answer closes the request at both parties.
    requester
        .share_act(
            "民政局".into(),
            id.clone(),
            ShareActParams {
                act: "correction".into(),
                items: vec![backflow_api::CorrectionItemParams {
                    key: "110101199001010042".into(),
                    field: "参保状态".into(),
                    problem: "已于2026年11月停保".into(),
                }],
                ..ShareActParams::default()
            },
        )
        .await?;
    wait_until(
        "the provider to receive the correction request",
        Duration::from_secs(30),
        async || {
            Ok(provider
                .share(id.clone())
                .await
                .is_ok_and(|v| v.deadline.is_some_and(|d| d.article == 26)))
        },
    )
    .await?;
    let answer_corrected = ShareActParams {
        act: "answer_correction".into(),
        corrected: Some(true),
        reason: Some("已更正参保状态".into()),
        approved_by: Some("镇人社分局负责人".into()),
        ..ShareActParams::default()
    };
    let e = format!(
        "{:#}",
        provider
            .share_act("镇人社分局".into(), id.clone(), answer_corrected.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("corrected data is delivered"), "{e}");
    let fixed = String::from_utf8(data.clone())?
        .replace("110101199001010042,参保", "110101199001010042,停保")
        .into_bytes();
    assert_ne!(fixed, data);
    let resent = provider_delivers("w2b", &fixed).await?;
    assert_eq!(resent.state, "delivering");
    let corrected = resent
        .delivery
        .clone()
        .expect("the corrected version is named");
    assert_eq!(
        corrected.dataset, delivery.dataset,
        "the same delivery, a new version"
    );
    assert!(
        resent.corrections[0].contains("corrected data sent"),
        "{:?}",
        resent.corrections
    );
    // Once per correction request.
    assert!(provider_delivers("w2c", &fixed).await.is_err());
    delivered_at_both("the corrected delivery").await?;
    let record = requester.record(&delivery.dataset, None).await?.remove(0).1;
    assert_eq!(record.manifest.manifest.version, 2);
    let out = dir.path().join("corrected.csv");
    backflow_node::export::export(&requester.store, &record, code(REQUESTER), &out)?;
    assert_eq!(
        std::fs::read(&out)?,
        fixed,
        "the corrected data, byte for byte"
    );
    let answered = provider
        .share_act("镇人社分局".into(), id.clone(), answer_corrected)
        .await?;
    // Answered: what runs now is the data's disposal by the term's end (Art. 27 ¶1).
    assert_eq!(
        answered.deadline.map(|d| d.article),
        Some(27),
        "{:?}",
        answered.corrections
    );
    wait_until(
        "the requester to see the answer",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.corrections[0].contains("已更正参保状态")))
        },
    )
    .await?;

    // Art. 25, no third party (不得擅自将获得的政务数据提供给第三方): a 东莞 city department asks
    // 东城's 民政局 for an entry of its own and is granted it. Delivering under that grant the
    // data 东城 was granted is refused, naming the grant and the article — until the provider
    // consents to that department, in a signed act that reaches the requester's node.
    net.add_department(code("441900"), "市民政局").await?;
    let third = net.nodes[&code("441900")].clone();
    let mut own = entry();
    own.id = "dibao-2026".into();
    own.provider = "民政局".into();
    requester.catalog_submit("民政局".into(), vec![own]).await?;
    let second = third
        .share_file(
            "市民政局".into(),
            ShareFileParams {
                provider_region: REQUESTER.into(),
                provider_department: "民政局".into(),
                entry_id: "dibao-2026".into(),
                scope: "东莞市低保申请人".into(),
                ..filing()
            },
        )
        .await?
        .id;
    wait_until(
        "东城 to receive the second request",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(second.clone())
                .await
                .is_ok_and(|v| v.state == "under_review"))
        },
    )
    .await?;
    requester
        .share_act("民政局".into(), second.clone(), grant(Vec::new()))
        .await?;
    // What 东城 holds now is the corrected version (the content it was granted).
    let deliver_second = async |work: &str| {
        requester
            .deliver_share(
                "民政局".into(),
                second.clone(),
                Format::Csv,
                None,
                dir.path().join(work),
                input(&fixed),
            )
            .await
    };
    let e = format!("{:#}", deliver_second("w4").await.unwrap_err());
    assert!(
        e.contains(&id[..8]) && e.contains("Art. 25") && e.contains("市民政局"),
        "{e}"
    );
    assert_eq!(requester.share(second.clone()).await?.state, "granted");
    let consent = ShareActParams {
        act: "consent".into(),
        approved_by: Some("镇人社分局负责人".into()),
        recipient_region: Some("441900".into()),
        recipient_department: Some("市民政局".into()),
        purpose: Some("东莞市低保资格联审".into()),
        ..ShareActParams::default()
    };
    // Not the requester's to give itself.
    assert!(requester
        .share_act("民政局".into(), id.clone(), consent.clone())
        .await
        .is_err());
    let consented = provider
        .share_act("镇人社分局".into(), id.clone(), consent)
        .await?;
    assert_eq!(consented.consents.len(), 1, "{consented:?}");
    assert_eq!(consented.state, "delivered", "a consent changes no state");
    wait_until(
        "the requester to hold the consent",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.consents.len() == 1))
        },
    )
    .await?;
    assert_eq!(deliver_second("w5").await?.state, "delivering");
    wait_until(
        "the third department to receive the data",
        Duration::from_secs(60),
        async || {
            Ok(third
                .share(second.clone())
                .await
                .is_ok_and(|v| v.state == "delivered"))
        },
    )
    .await?;
    drop(third);

    // Art. 27: the provider suspends the requester's sharing for misuse; the requester's node
    // exports nothing of it meanwhile; reinstated, it does again.
    let act = |name: &str| ShareActParams {
        act: name.into(),
        approved_by: Some("镇人社分局负责人".into()),
        ..ShareActParams::default()
    };
    let e = format!(
        "{:#}",
        provider
            .share_act("镇人社分局".into(), id.clone(), act("suspend"))
            .await
            .unwrap_err()
    );
    assert!(e.contains("needs reason"), "{e}");
    let suspended = provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            ShareActParams {
                reason: Some("超出使用范围".into()),
                days: Some(10),
                ..act("suspend")
            },
        )
        .await?;
    assert_eq!(suspended.state, "suspended");
    assert!(suspended.suspension.is_some());
    let exported = async |node: &backflow_node::handle::NodeHandle| {
        node.verified_export(
            backflow_node::handle::DatasetQuery::named(&delivery.dataset, None),
            "a test",
        )
        .await
    };
    wait_until(
        "the requester to see the suspension",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "suspended"))
        },
    )
    .await?;
    let e = format!("{:#}", exported(&requester).await.unwrap_err());
    assert!(e.contains("suspended"), "{e}");
    provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            ShareActParams {
                record: Some("整改到位".into()),
                ..act("reinstate")
            },
        )
        .await?;
    wait_until(
        "the requester to be reinstated",
        Duration::from_secs(30),
        async || Ok(exported(&requester).await.is_ok()),
    )
    .await?;
    // The purpose met, the requester disposes of the data: its node deletes it.
    let disposed = requester
        .share_act(
            "民政局".into(),
            id.clone(),
            ShareActParams {
                act: "dispose".into(),
                disposal: Some("delete".into()),
                record: Some("核查完成后删除".into()),
                ..ShareActParams::default()
            },
        )
        .await?;
    assert_eq!(disposed.state, "disposed");
    assert!(disposed.ending.is_some_and(|e| e.contains("已处置")));
    assert!(requester.record(&delivery.dataset, None).await.is_err());
    wait_until(
        "the provider to see the disposal",
        Duration::from_secs(30),
        async || {
            Ok(provider
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "disposed"))
        },
    )
    .await?;
    drop((requester, provider));
    net.shutdown().await
}

/// 服务接口 (Art. 22) with real nodes: the 广东 township's department loads the granted data
/// keyed by 公民身份号码 and opens the service; the 北京 county's department looks records up
/// straight at the provider's node (dialled on the first call) and gets only the records of
/// the keys it asks for. Other departments and nodes get nothing; every call is counted at
/// the provider, and the count and the service survive its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_interface_answers_the_requester_straight_from_the_provider() -> Result<()> {
    use backflow_protocol::catalog::SharingMethod;
    let dir = tempfile::tempdir()?;
    let mut net = cross_country(dir.path()).await?;
    net.add_department(code(REQUESTER), "公安分局").await?;
    net.add_department(code(PROVIDER), "镇人社分局").await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let provider = net.nodes[&code(PROVIDER)].clone();
    let mut e = entry();
    e.sharing_methods.push(SharingMethod::ServiceApi);
    provider
        .catalog_submit("镇人社分局".into(), vec![e])
        .await?;
    let mut f = share_fixture::filing("最低生活保障资格核查（接口）");
    f.method = "service_api".into();
    let id = requester.share_file("民政局".into(), f).await?.id;
    wait_until(
        "the provider to receive the request",
        Duration::from_secs(30),
        async || {
            Ok(provider
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "under_review"))
        },
    )
    .await?;
    provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            ShareActParams {
                act: "grant".into(),
                approved_by: Some("镇人社分局负责人".into()),
                conditions: vec!["社会救助资格核查".into()],
                ..ShareActParams::default()
            },
        )
        .await?;
    wait_until(
        "the requester to hear of the grant",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "granted"))
        },
    )
    .await?;

    let mut data = "公民身份号码,参保状态\r\n".as_bytes().to_vec();
    for i in 0..5_000 {
        data.extend_from_slice(format!("11010119900101{i:04},参保\r\n").as_bytes());
    }
    let input =
        |d: &[u8]| -> Box<dyn std::io::Read + Send> { Box::new(std::io::Cursor::new(d.to_vec())) };
    let deliver = |key: Option<&str>, n: u32| {
        provider.deliver_share(
            "镇人社分局".into(),
            id.clone(),
            Format::Csv,
            key.map(str::to_string),
            dir.path().join(format!("w{n}")),
            input(&data),
        )
    };
    // A service interface needs its key field, one the data has.
    let e = format!("{:#}", deliver(None, 1).await.unwrap_err());
    assert!(e.contains("key field"), "{e}");
    let e = format!("{:#}", deliver(Some("姓名"), 2).await.unwrap_err());
    assert!(e.contains("no field named"), "{e}");
    // Calls before it opens are refused.
    let keys = vec!["110101199001010042".to_string(), "不存在".to_string()];
    let e = format!(
        "{:#}",
        requester
            .share_lookup("民政局".into(), id.clone(), keys.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("no grant of a service interface"), "{e}");
    let opened = deliver(Some("公民身份号码"), 3).await?;
    assert_eq!(
        opened.state, "delivered",
        "a service is delivered once it answers"
    );
    wait_until(
        "the requester to see the service open",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "delivered"))
        },
    )
    .await?;

    // The first call dials the provider's node directly (the two are not in line).
    let answer = requester
        .share_lookup("民政局".into(), id.clone(), keys.clone())
        .await?;
    assert_eq!(answer.header, "公民身份号码,参保状态".as_bytes());
    assert_eq!(answer.records.len(), 1, "one key found, the other not");
    assert_eq!(answer.records[0].line, "110101199001010042,参保".as_bytes());
    assert!(!answer.truncated);
    // Only the requesting department calls; nodes without the grant have no case to call.
    let e = format!(
        "{:#}",
        requester
            .share_lookup("公安分局".into(), id.clone(), keys.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("only the requesting department"), "{e}");
    for other in ["0", "1101", "441900"] {
        assert!(
            net.nodes[&code(other)]
                .share_lookup("民政局".into(), id.clone(), keys.clone())
                .await
                .is_err(),
            "{other}"
        );
    }
    // Counted at the provider.
    let service = provider.share(id.clone()).await?.service.expect("counted");
    assert_eq!((service.calls, service.keys, service.records), (1, 2, 1));

    // Art. 27 ¶2: the national authority suspends 民政局's sharing rights as a whole. The act
    // reaches the provider across the country, and neither node answers its calls until
    // national reinstates it. An authority without jurisdiction, or an order without its
    // rectification period, is refused.
    let national = net.nodes[&code("0")].clone();
    let order =
        |action: backflow_api::RightsAction, rectify: Option<u32>| backflow_api::RightsParams {
            region: REQUESTER.into(),
            department: "民政局".into(),
            action,
            reason: "超出共享目的调用服务接口".into(),
            rectify_working_days: rectify,
            note: "整改到位".into(),
            approved_by: "国家政务数据共享主管部门负责人".into(),
        };
    use backflow_api::RightsAction::{Reinstate, Suspend};
    let e = format!(
        "{:#}",
        net.nodes[&code("44")]
            .rights_order(order(Suspend, Some(10)))
            .await
            .unwrap_err()
    );
    assert!(e.contains("jurisdiction"), "{e}");
    let e = format!(
        "{:#}",
        national
            .rights_order(order(Suspend, None))
            .await
            .unwrap_err()
    );
    assert!(e.contains("rectify_working_days"), "{e}");
    let suspended = national.rights_order(order(Suspend, Some(10))).await?;
    assert!(suspended.suspended && suspended.rectify_by.is_some());
    let held_by = |node: backflow_node::handle::NodeHandle, suspended: bool| async move {
        Ok(node
            .rights()
            .await?
            .iter()
            .any(|r| r.region == REQUESTER && r.suspended == suspended))
    };
    wait_until(
        "the provider to hold the suspension",
        Duration::from_secs(30),
        async || held_by(provider.clone(), true).await,
    )
    .await?;
    let e = format!(
        "{:#}",
        requester
            .share_lookup("民政局".into(), id.clone(), keys.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("sharing rights"), "{e}");
    let shown = provider.share(id.clone()).await?.rights_suspended;
    assert!(
        shown
            .as_deref()
            .is_some_and(|s| s.contains("authority of 0")),
        "{shown:?}"
    );
    // Terminating the sharing waits for the rectification period to run out (Art. 27 ¶2).
    let e = format!(
        "{:#}",
        national
            .rights_order(order(backflow_api::RightsAction::Terminate, None))
            .await
            .unwrap_err()
    );
    assert!(e.contains("rectification period"), "{e}");
    national.rights_order(order(Reinstate, None)).await?;
    wait_until(
        "the requester and the provider to hold the reinstatement",
        Duration::from_secs(30),
        async || {
            Ok(
                held_by(provider.clone(), false).await?
                    && held_by(requester.clone(), false).await?,
            )
        },
    )
    .await?;
    wait_until(
        "a call after the reinstatement",
        Duration::from_secs(60),
        async || {
            Ok(requester
                .share_lookup("民政局".into(), id.clone(), keys.clone())
                .await
                .is_ok())
        },
    )
    .await?;
    let service = provider.share(id.clone()).await?.service.expect("counted");

    // The provider restarts: the count and the service come back; the requester redials.
    drop(provider);
    net.stop(code(PROVIDER)).await?;
    net.restart(code(PROVIDER)).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let provider = net.nodes[&code(PROVIDER)].clone();
    assert_eq!(provider.share(id.clone()).await?.service, Some(service));
    assert!(
        held_by(provider.clone(), false).await?,
        "the reinstatement is kept across the restart"
    );
    wait_until(
        "a call after the provider's restart",
        Duration::from_secs(60),
        async || {
            Ok(requester
                .share_lookup(
                    "民政局".into(),
                    id.clone(),
                    vec!["110101199001014999".into()],
                )
                .await
                .is_ok_and(|a| a.records.len() == 1))
        },
    )
    .await?;
    let service = provider.share(id.clone()).await?.service.expect("counted");
    assert!(service.calls >= 2, "{service:?}");

    // Art. 26: the requester files a correction request; the provider loads the corrected
    // data (the service answers from it at once, whole) and answers "corrected".
    let filed = requester
        .share_act(
            "民政局".into(),
            id.clone(),
            ShareActParams {
                act: "correction".into(),
                items: vec![backflow_api::CorrectionItemParams {
                    key: "110101199001010042".into(),
                    field: "参保状态".into(),
                    problem: "已停保".into(),
                }],
                ..ShareActParams::default()
            },
        )
        .await?;
    assert!(filed.deadline.as_ref().is_some_and(|d| d.article == 26));
    wait_until(
        "the provider to receive the correction request",
        Duration::from_secs(30),
        async || {
            Ok(provider
                .share(id.clone())
                .await
                .is_ok_and(|v| v.deadline.is_some_and(|d| d.article == 26)))
        },
    )
    .await?;
    let corrected_data = "公民身份号码,参保状态\r\n110101199001010042,停保\r\n"
        .as_bytes()
        .to_vec();
    provider
        .deliver_share(
            "镇人社分局".into(),
            id.clone(),
            Format::Csv,
            Some("公民身份号码".into()),
            dir.path().join("w9"),
            input(&corrected_data),
        )
        .await?;
    let answered = provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            ShareActParams {
                act: "answer_correction".into(),
                corrected: Some(true),
                reason: Some("已更正".into()),
                approved_by: Some("镇人社分局负责人".into()),
                ..ShareActParams::default()
            },
        )
        .await?;
    assert_eq!(answered.deadline.map(|d| d.article), Some(27));
    let after = requester
        .share_lookup("民政局".into(), id.clone(), keys.clone())
        .await?;
    assert_eq!(after.records.len(), 1);
    assert_eq!(after.records[0].line, "110101199001010042,停保".as_bytes());

    // Art. 28: a 北京–广东 dispute goes to the national authority, which coordinates; both
    // parties see the outcome. The provider's own node cannot coordinate.
    let opened = requester
        .share_act(
            "民政局".into(),
            id.clone(),
            ShareActParams {
                act: "dispute".into(),
                subject: Some("服务接口调用频率".into()),
                claim: Some("每分钟调用上限不足以支撑核查业务".into()),
                ..ShareActParams::default()
            },
        )
        .await?;
    assert!(
        opened.disputes[0].contains("at the authority of 0"),
        "{:?}",
        opened.disputes
    );
    wait_until(
        "national to hold the dispute",
        Duration::from_secs(30),
        async || {
            Ok(national
                .share(id.clone())
                .await
                .is_ok_and(|v| v.disputes.len() == 1))
        },
    )
    .await?;
    assert!(provider
        .share_coordinate(id.clone(), "x".into(), false)
        .await
        .is_err());
    let coordinated = national
        .share_coordinate(id.clone(), "调用上限按业务量调整".into(), false)
        .await?;
    assert!(
        coordinated.disputes[0].contains("协调解决"),
        "{:?}",
        coordinated.disputes
    );
    for (name, node) in [("requester", &requester), ("provider", &provider)] {
        wait_until(
            &format!("the {name} to see the coordination"),
            Duration::from_secs(30),
            async || {
                Ok(node
                    .share(id.clone())
                    .await
                    .is_ok_and(|v| v.disputes.first().is_some_and(|d| d.contains("协调解决"))))
            },
        )
        .await?;
    }
    // Art. 27 ¶3: the provider ends the service, negotiated and filed; its node deletes the
    // data it loaded to answer calls, and the case keeps the record.
    provider
        .share_act(
            "镇人社分局".into(),
            id.clone(),
            ShareActParams {
                act: "terminate".into(),
                reason: Some("数据源调整".into()),
                negotiation: Some("2026-12-05 与民政局协商一致".into()),
                filing: Some("东莞市数据局 2026-12-06 备案".into()),
                approved_by: Some("镇人社分局负责人".into()),
                ..ShareActParams::default()
            },
        )
        .await?;
    wait_until(
        "the requester to see the service terminated",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "terminated"))
        },
    )
    .await?;
    assert_eq!(provider.share(id.clone()).await?.state, "terminated");
    drop((requester, provider, national));
    net.shutdown().await?;
    let store = backflow_node::store::Store::open(&dir.path().join(format!("node-{PROVIDER}")))?;
    let request: [u8; 32] = hex::decode(&id)?.try_into().expect("a request id");
    assert!(backflow_node::service_store::meta(&store, &request)?.is_none());
    let left = store.scan_prefix(backflow_node::store::CF_STATE, b"svc/", 1)?;
    assert!(left.is_empty(), "the ended service's records are deleted");
    Ok(())
}

/// Art. 26 on returned data (Art. 24), over the HTTP API of real nodes: 东城区's 民政局 finds a
/// record of a national return-flow dataset wrong and files a correction request (回流数据校核
/// 申请) against the version it holds; it reaches national, whose department may answer
/// "corrected" only after publishing the corrected dataset; that version comes back down and
/// 东城区's export gives the corrected record; both ledgers hold the filing and the answer, and
/// the request survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_s_correction_of_returned_data_goes_to_its_publisher_and_the_correction_comes_back(
) -> Result<()> {
    use backflow_api::client::Client;
    use serde_json::json;
    let dir = tempfile::tempdir()?;
    let regions = ["0", "11", "1101", REQUESTER, "110102"].map(code);
    let mut net =
        LocalNet::start_with(&regions, dir.path(), fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    net.add_department(code(REQUESTER), "民政局").await?;
    // The department national publishes as (the served API's configured one).
    net.add_department(code("0"), "data-authority").await?;
    let http = net.serve_http().await?;
    let client = |r: &str| Client::new(http[&code(r)].addr, http[&code(r)].token.clone());
    let (national, county) = (client("0"), client(REQUESTER));
    let publish = async |csv: &str| -> Result<()> {
        let data = csv.as_bytes().to_vec();
        let len = data.len() as u64;
        let path = "/api/publish?dataset=dibao&region_field=village&format=csv";
        national
            .upload(path, std::io::Cursor::new(data), len, |_| {})
            .await?;
        Ok(())
    };
    let export = async |c: &Client| -> Result<String> {
        let mut out = Vec::new();
        c.download("/api/export?dataset=dibao", &mut out).await?;
        Ok(String::from_utf8(out)?)
    };
    let header = "id,village,status\n";
    let west = "r2,110102001001,在册\n";
    publish(&format!("{header}r1,110101001001,在册\n{west}")).await?;
    wait_until(
        "东城区 to hold version 1",
        Duration::from_secs(60),
        async || Ok(export(&county).await.is_ok_and(|t| t.contains("r1,"))),
    )
    .await?;

    // A dataset it does not hold: refused, saying so.
    let item = json!([{"key": "r1", "field": "status", "problem": "已于11月迁出东城区"}]);
    let body = |dataset: &str| json!({"department": "民政局", "dataset": dataset, "items": item});
    let e = county
        .json("POST", "/api/share/returned", Some(&body("无此数据")))
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("holds no return-flow dataset"),
        "{e:#}"
    );
    let filed = county
        .json("POST", "/api/share/returned", Some(&body("dibao")))
        .await?;
    assert_eq!(
        (&filed["state"], &filed["version"], &filed["role"]),
        (&json!("open"), &json!(1), &json!("requester")),
        "{filed}"
    );
    let id = filed["id"].as_str().unwrap().to_string();
    let held_at = async |c: &Client| -> Result<Option<serde_json::Value>> {
        let list = c.json("GET", "/api/share/returned", None).await?;
        Ok(list
            .as_array()
            .and_then(|l| l.iter().find(|v| v["id"] == json!(id)).cloned()))
    };
    wait_until(
        "national to hold the request",
        Duration::from_secs(30),
        async || Ok(held_at(&national).await?.is_some()),
    )
    .await?;
    let at_national = held_at(&national).await?.unwrap();
    assert_eq!(at_national["role"], "publisher");
    assert_eq!(
        at_national["due"], filed["due"],
        "both run the same 10 working days"
    );

    // "Corrected" before the corrected version is published: refused, saying what to do.
    let answer_path = format!("/api/share/returned/{}/answer", &id[..12]);
    let corrected = json!({"department": "data-authority", "corrected": true,
        "reason": "已核实并更正", "approved_by": "国家数据局 李四"});
    let early = national
        .json("POST", &answer_path, Some(&corrected))
        .await
        .unwrap_err();
    assert!(
        format!("{early:#}").contains("publish the corrected dataset first"),
        "{early:#}"
    );
    publish(&format!("{header}r1,110101001001,已迁出\n{west}")).await?;
    let answered = national
        .json("POST", &answer_path, Some(&corrected))
        .await?;
    assert_eq!(
        (&answered["state"], &answered["corrected_in"]),
        (&json!("corrected"), &json!(2))
    );
    wait_until(
        "东城区 to hold the answer and version 2",
        Duration::from_secs(60),
        async || {
            let v = held_at(&county).await?;
            Ok(v.is_some_and(|v| v["state"] == "corrected" && v["corrected_held"] == true))
        },
    )
    .await?;
    assert_eq!(
        export(&county).await?,
        format!("{header}r1,110101001001,已迁出\n")
    );
    // Both ledgers hold the filing and the answer.
    for r in ["0", REQUESTER] {
        let page = net.nodes[&code(r)].ledger_page(0, 1_000).await?;
        let acts: Vec<String> = page
            .entries
            .iter()
            .filter(|e| e.subject == id)
            .filter_map(|e| e.act.clone())
            .collect();
        assert_eq!(
            acts,
            ["returned-correction-filed", "returned-correction-answered"],
            "at {r}"
        );
    }
    // Kept across a restart.
    for (_, h) in http {
        h.stop().await?;
    }
    net.stop(code(REQUESTER)).await?;
    net.restart(code(REQUESTER)).await?;
    let after = net.nodes[&code(REQUESTER)].returned_corrections().await?;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].corrected_in, Some(2));
    net.shutdown().await
}
