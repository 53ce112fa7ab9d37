//! Catalog review (Arts. 16–17) with real nodes: a city department's entries wait for the
//! city's authority; nothing reaches the catalog or the province until approval, a returned
//! submission never does, and the record (with its deadlines) survives a restart.

use std::time::Duration;

use anyhow::Result;
use backflow_api::{DutyChangeParams, ReviewDecideParams, ReviewRequest};
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::review_api::ReviewsView;
use backflow_protocol::catalog::{
    CatalogEntry, DataFormat, DataGrade, DataItem, DataType, SharingAttribute, SharingMethod,
    UpdateFrequency,
};
use common::{calendar, code, fast, wait_until};

mod common;

const CITY: &str = "4419";
const DEPT: &str = "市人社局";

fn entry(id: &str) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        name: "社会保险参保信息".into(),
        data_items: vec![DataItem {
            name: "公民身份号码".into(),
            data_type: DataType::Text,
            description: "18 位身份号码".into(),
        }],
        provider: DEPT.into(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "社会保障".into(),
        grade: DataGrade::General,
    }
}

fn decide(decision: &str, reasons: Option<&str>) -> ReviewDecideParams {
    ReviewDecideParams {
        decision: decision.into(),
        reviewer: "市数据局 王五".into(),
        reasons: reasons.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_entries_the_authority_approved_take_effect_and_sync_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let regions: Vec<_> = ["0", "44", CITY].iter().map(|s| code(s)).collect();
    let mut net =
        LocalNet::start_with(&regions, dir.path(), fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let city = net.nodes[&code(CITY)].clone();
    let province = net.nodes[&code("44")].clone();
    let submit = |id: &str| ReviewRequest::Submit {
        department: Some(DEPT.into()),
        entries: vec![entry(id)],
    };
    let duty = city
        .catalog_review(
            ReviewRequest::RecordDutyChange {
                department: None,
                params: DutyChangeParams {
                    department: None,
                    occurred: "2026-11-30".into(),
                    basis: "市人社局职责调整".into(),
                },
            },
            DEPT.into(),
        )
        .await?;
    assert!(duty["update_due"]["day"].is_string(), "{duty}");
    // An entry of another department is refused, its problem named.
    let mut wrong = entry("x");
    wrong.provider = "市公安局".into();
    let e = city
        .catalog_review(
            ReviewRequest::Submit {
                department: Some(DEPT.into()),
                entries: vec![wrong],
            },
            DEPT.into(),
        )
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("provider"), "{e:#}");
    let kept_back = city
        .catalog_review(submit("kept-back"), DEPT.into())
        .await?;
    let shebao = city.catalog_review(submit("shebao"), DEPT.into()).await?;
    assert_eq!(shebao["state"], "pending");
    // Two working days after today, today counted if it is one ("剩余 N 个工作日").
    let left = shebao["review_due"]["working_days_left"].as_u64();
    assert!(matches!(left, Some(2..=3)), "{shebao}");
    let has = async |node: &backflow_node::node::NodeHandle, id: &str| -> Result<bool> {
        Ok(node
            .catalogs(None, None, 1_000)
            .await?
            .iter()
            .any(|c| c.department == DEPT && c.entries.iter().any(|e| e.id == id)))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!has(&city, "shebao").await? && !has(&province, "shebao").await?);

    let id = |v: &serde_json::Value| v["id"].as_u64().unwrap();
    let returned = city
        .catalog_review(
            ReviewRequest::Decide {
                id: id(&kept_back),
                params: decide("return", Some("数据项说明不全")),
            },
            DEPT.into(),
        )
        .await?;
    assert_eq!(returned["state"], "returned");
    let approved = city
        .catalog_review(
            ReviewRequest::Decide {
                id: id(&shebao),
                params: decide("approve", None),
            },
            DEPT.into(),
        )
        .await?;
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["catalog_seq"], 1);
    wait_until(
        "the approved entry to reach the province",
        Duration::from_secs(30),
        async || has(&province, "shebao").await,
    )
    .await?;
    assert!(has(&city, "shebao").await?);
    assert!(!has(&province, "kept-back").await? && !has(&city, "kept-back").await?);

    // The record comes back after a restart: both decisions, and the duty change fulfilled
    // by the department's submissions.
    drop((city, province));
    net.stop(code(CITY)).await?;
    net.restart(code(CITY)).await?;
    let city = net.nodes[&code(CITY)].clone();
    let view: ReviewsView = serde_json::from_value(
        city.catalog_review(
            ReviewRequest::List {
                department: None,
                overdue_only: false,
            },
            DEPT.into(),
        )
        .await?,
    )?;
    let states: Vec<&str> = view.submissions.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states.len(), 2, "{view:?}");
    assert!(states.contains(&"approved") && states.contains(&"returned"));
    assert!(view.duty_changes[0].fulfilled_by.is_some(), "{view:?}");
    drop(city);
    net.shutdown().await
}
