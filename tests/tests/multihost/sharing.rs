//! Scenario 10 (issues 17, 18): a share request across the country, answered and delivered by
//! batch exchange between two nodes that are not in line — a 北京 county and a 广东 township —
//! each in its own container, while a third node (another 北京 county) without a grant gets
//! nothing; then the grant suspended for misuse, enforced at the requester within seconds,
//! and reinstated.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::{Net, Wiring, DATA_DIR};
use crate::pki::host_backflow;
use crate::poll::wait_for;
use crate::suite::{serial, suite};

const REQUESTER: &str = "110101"; // 北京市东城区
const OTHER: &str = "110102"; // 北京市西城区: no grant
const PROVIDER: &str = "441900003"; // 广东省东莞市 (a township)

/// Parent before child: both parties' lines up to national (certificates are issued down
/// the chain), and the third node.
const NODES: [(&str, &str); 9] = [
    ("national", "0"),
    ("beijing", "11"),
    ("bj-districts", "1101"),
    ("dongcheng", REQUESTER),
    ("xicheng", OTHER),
    ("guangdong", "44"),
    ("dongguan", "4419"),
    ("dg-county", "441900"),
    ("dg-town", PROVIDER),
];

/// Every node's configured department (`config.toml`); a department of its node with a key.
const DEPARTMENT: &str = "data-authority";
const SHARE_S_MAX: u64 = 120;

fn entry() -> Value {
    serde_json::json!({
        "id": "shebao-2026",
        "name": "社会保险参保信息",
        "data_items": [
            {"name": "公民身份号码", "data_type": "Text", "description": "18 位身份号码"}
        ],
        "provider": DEPARTMENT,
        "format": "Csv",
        "update_frequency": "Monthly",
        "sharing": {"Conditional": {
            "scope": ["政府部门"],
            "permitted_uses": ["社会救助资格核查"]
        }},
        "sharing_methods": ["BatchExchange"],
        "usage_conditions": "仅限社会救助资格核查",
        "classification": "社会保障",
        "grade": "General"
    })
}

pub(crate) fn share_state(net: &Net, node: &str, id: &str) -> Option<String> {
    let v = crate::poll::http(
        &net.node(node).api(),
        "GET",
        &format!("/api/share/{id}"),
        None,
    )
    .ok()?;
    v["state"].as_str().map(str::to_string)
}

/// Waits until `node` shows the share request `id` in `state`.
pub(crate) async fn wait_share_state(net: &Net, node: &str, id: &str, state: &str) {
    wait_for(
        &format!("{node} to see the request {state}"),
        Duration::from_secs(SHARE_S_MAX),
        || async { (share_state(net, node, id).as_deref() == Some(state)).then_some(()) },
    )
    .await;
}

/// The value after `label` on a line of `backflow share` output.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_county_requests_township_data_across_the_country_and_only_it_receives() {
    let Some(suite) =
        suite("s10_county_requests_township_data_across_the_country_and_only_it_receives")
    else {
        return;
    };
    let _serial = serial().await;
    let started = Instant::now();
    let mut net = Net::new(suite, "s10");
    init_with_next_year(&mut net, &NODES);
    for (name, _) in NODES {
        net.start(name, Wiring::default()).await;
    }
    let (id, csv, dataset) = request_grant_deliver(&net, "dongcheng", "dg-town", PROVIDER).await;

    // National, their lowest common superior, sees it delivered too.
    wait_share_state(&net, "national", &id, "delivered").await;
    export_exactly(&net, "dongcheng", PROVIDER, &dataset, &csv).await;

    // Misuse (Art. 27 ¶2): the township suspends the county's sharing under the grant. The
    // signed act crosses the country (township → national → county, six hops) and every party
    // enforces it at once: the county's export is refused; reinstated, it works again.
    let suspended_at = Instant::now();
    net.cli(
        "dg-town",
        &[
            "share",
            "suspend",
            &id,
            "--reason",
            "超出使用范围",
            "--days",
            "10",
            "--approved-by",
            "人社部门负责人",
        ],
    )
    .await;
    for node in ["dongcheng", "national"] {
        wait_share_state(&net, node, &id, "suspended").await;
        println!(
            "s10: suspension in force at {node} {:.1} s after the act",
            suspended_at.elapsed().as_secs_f64()
        );
    }
    let err = export_refused(&net, &dataset, "while-suspended.csv").await;
    assert!(err.contains("suspended"), "{err}");
    net.cli(
        "dg-town",
        &[
            "share",
            "reinstate",
            &id,
            "--note",
            "整改到位",
            "--approved-by",
            "人社部门负责人",
        ],
    )
    .await;
    wait_share_state(&net, "dongcheng", &id, "delivered").await;
    export_exactly(&net, "dongcheng", PROVIDER, &dataset, &csv).await;

    // The authority above the requester (北京) suspends the department's sharing rights as a
    // whole (Art. 27 ¶2: 政务数据共享主管部门…暂停其政务数据共享权限): the act floods to every
    // node — the provider across the country hears of it through national — and each
    // enforces it: the county's export is refused again; reinstated by 北京, it works.
    let rights = |action: &'static str, text: &'static str| {
        let mut args = vec![
            "rights",
            action,
            "--region",
            REQUESTER,
            "--department",
            DEPARTMENT,
            "--approved-by",
            "北京市政务数据共享主管部门负责人",
        ];
        args.extend_from_slice(&[
            if action == "suspend" {
                "--reason"
            } else {
                "--note"
            },
            text,
        ]);
        if action == "suspend" {
            args.extend_from_slice(&["--rectify-days", "10"]);
        }
        args
    };
    let rights_suspended = |node: &'static str| {
        let net = &net;
        move || async move {
            let v = crate::poll::http(&net.node(node).api(), "GET", "/api/rights", None).ok()?;
            v.as_array()?
                .iter()
                .any(|a| a["suspended"] == true && a["region"] == REQUESTER)
                .then_some(())
        }
    };
    let ordered_at = Instant::now();
    let out = net
        .cli("beijing", &rights("suspend", "擅自将共享数据提供给第三方"))
        .await;
    assert!(out.contains("suspended"), "{out}");
    for node in ["dongcheng", "dg-town", "xicheng"] {
        wait_for(
            &format!("{node} to hold the suspension of the county's sharing rights"),
            Duration::from_secs(SHARE_S_MAX),
            rights_suspended(node),
        )
        .await;
        println!(
            "s10: the department's sharing rights suspended at {node} {:.1} s after the act",
            ordered_at.elapsed().as_secs_f64()
        );
    }
    let err = export_refused(&net, &dataset, "rights-suspended.csv").await;
    assert!(err.contains("sharing rights"), "{err}");
    // Only an authority over the department orders it: 广东's is refused.
    let (code, _, err) = net
        .cli_status("guangdong", &rights("suspend", "越权"))
        .await;
    assert_ne!(code, 0, "广东 suspended a 北京 department");
    assert!(err.contains("jurisdiction"), "{err}");
    net.cli("beijing", &rights("reinstate", "整改到位")).await;
    for node in ["dongcheng", "dg-town"] {
        wait_for(
            &format!("{node} to hold the reinstatement"),
            Duration::from_secs(SHARE_S_MAX),
            || async { rights_suspended(node)().await.is_none().then_some(()) },
        )
        .await;
    }
    export_exactly(&net, "dongcheng", PROVIDER, &dataset, &csv).await;

    // Nobody else holds a byte of it: not the third county, not the relays, not national.
    for (name, _) in NODES
        .iter()
        .filter(|(n, _)| *n != "dongcheng" && *n != "dg-town")
    {
        assert!(
            net.dataset_status(name, &dataset).is_none(),
            "{name} holds the delivery"
        );
    }
    let (code, _, err) = net
        .cli_status(
            "xicheng",
            &[
                "export",
                "--dataset",
                &dataset,
                "--out",
                &format!("{DATA_DIR}/stolen.csv"),
            ],
        )
        .await;
    assert_ne!(code, 0, "the third node exported the delivery");
    assert!(!err.is_empty());
    assert!(!net.host_path("xicheng", "stolen.csv").exists());
    crate::scenarios::elapsed("s10", started);
}

/// The county's export of the delivery to `file`, which must be refused, writing nothing:
/// the error it printed.
async fn export_refused(net: &Net, dataset: &str, file: &str) -> String {
    let out = format!("{DATA_DIR}/{file}");
    let args = [
        "export",
        "--dataset",
        dataset,
        "--publisher",
        PROVIDER,
        "--out",
        &out,
    ];
    let (code, _, err) = net.cli_status("dongcheng", &args).await;
    assert_ne!(code, 0, "the county exported data it may not use now");
    assert!(!net.host_path("dongcheng", file).exists());
    err
}

/// Creates each node (parent before child: certificates are issued down the chain) and adds
/// a stand-in arrangement for next year to its calendar. A grant today has its delivery due
/// 20 working days on, possibly into next year: every node gets next year (no holidays, no
/// make-up days) as the operator adds the State Council's notice (`calendar add`, read at
/// start). Without it a grant made now is refused, naming the missing year.
pub(crate) fn init_with_next_year(net: &mut Net, nodes: &[(&str, &str)]) {
    let year: i32 = date_in_days(0)[..4].parse().expect("a year");
    let arrangement = format!("[{}]\noff = []\nwork = []\n", year + 1);
    for &(name, region) in nodes {
        net.init(name, region);
        if region != "0" {
            net.certify(name);
        }
        let file = net.host_path(name, "next-year.toml");
        std::fs::write(&file, &arrangement).expect("calendar file");
        let dir = net.node(name).dir.to_string_lossy().to_string();
        let file = file.to_string_lossy().to_string();
        host_backflow(net.suite, &["calendar", "add", "--data", &dir, &file]);
    }
}

/// The whole exchange between two running nodes: the provider's department publishes a
/// conditional entry, the requester's files a request for it (Art. 20), the provider grants
/// (Art. 21) and delivers 50,000 records by batch exchange (Art. 22), and both record the
/// delivery. Returns the request's id, the delivered bytes and the delivery's dataset.
pub(crate) async fn request_grant_deliver(
    net: &Net,
    requester: &str,
    provider: &str,
    provider_region: &str,
) -> (String, Vec<u8>, String) {
    crate::data::catalog_add(net, provider, &entry()).await;
    let until = date_in_days(300);
    let out = net
        .cli(
            requester,
            &[
                "share",
                "request",
                "--provider-region",
                provider_region,
                "--provider-department",
                DEPARTMENT,
                "--entry",
                "shebao-2026",
                "--basis",
                "《社会救助暂行办法》第十一条",
                "--scenario",
                "最低生活保障资格核查",
                "--scope",
                "低保申请人",
                "--method",
                "batch_exchange",
                "--until",
                &until,
                "--approved-by",
                "民政局数据共享工作机构负责人",
            ],
        )
        .await;
    let id = field(&out, "id:");
    wait_share_state(net, provider, &id, "under_review").await;

    // The provider grants under a condition its catalog lists (Art. 21).
    net.cli(
        provider,
        &[
            "share",
            "answer",
            &id,
            "--grant",
            "--condition",
            "社会救助资格核查",
            "--approved-by",
            "人社部门负责人",
        ],
    )
    .await;
    wait_share_state(net, requester, &id, "granted").await;

    // It delivers the granted data by batch exchange (Art. 22).
    let mut csv = "公民身份号码,参保状态\n".as_bytes().to_vec();
    for i in 0..50_000 {
        csv.extend_from_slice(format!("1101011990{i:08},参保\n").as_bytes());
    }
    std::fs::write(net.host_path(provider, "granted.csv"), &csv).expect("write data");
    let out = net
        .cli(
            provider,
            &[
                "share",
                "deliver",
                &id,
                "--file",
                &format!("{DATA_DIR}/granted.csv"),
            ],
        )
        .await;
    assert!(out.contains("delivering"), "{out}");
    let dataset = field(&out, "delivery:  dataset")
        .split_whitespace()
        .next()
        .expect("dataset name")
        .to_string();

    // The requester's node connects to the provider's, fetches, verifies, records.
    for node in [requester, provider] {
        wait_share_state(net, node, &id, "delivered").await;
    }
    (id, csv, dataset)
}

/// `node` exports the delivery and gets `expected` byte for byte.
pub(crate) async fn export_exactly(
    net: &Net,
    node: &str,
    publisher: &str,
    dataset: &str,
    expected: &[u8],
) {
    net.cli(
        node,
        &[
            "export",
            "--dataset",
            dataset,
            "--publisher",
            publisher,
            "--out",
            &format!("{DATA_DIR}/received.csv"),
        ],
    )
    .await;
    let got = std::fs::read(net.host_path(node, "received.csv")).expect("export");
    assert!(
        got == expected,
        "{node} exports the granted data byte for byte"
    );
}

/// The Beijing date `days` from now (YYYY-MM-DD).
pub(crate) fn date_in_days(days: u64) -> String {
    use backflow_protocol::time::{UnixMs, DAY_MS};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    backflow_protocol::calendar::beijing_date(UnixMs(now + days * DAY_MS))
        .expect("a date")
        .to_string()
}
