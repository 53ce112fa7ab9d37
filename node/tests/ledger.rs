//! #19 with real nodes on loopback: the acts of a share request, a return flow and an export
//! land in the compliance ledger (合规台账, Art. 29) of each node that took part, in the order
//! they happened; only the requesting department records its use of granted data; each
//! node's head is witnessed by its parent; an entry edited in a stopped node's database is
//! named by `verify` after the restart; and a log rewritten whole and signed again with the
//! node's own key — which no local check can see — raises a witness alarm at its parent.

use std::time::Duration;

use anyhow::Result;
use backflow_api::{ShareActParams, ShareFileParams, UseRecordParams};
use backflow_node::handle::{DatasetQuery, NodeHandle};
use backflow_node::ledger::entry_key;
use backflow_node::ledger_api::EntryView;
use backflow_node::ledger_api::InspectFailure;
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::partition::Format;
use backflow_node::publish::PublishRequest;
use backflow_node::store::{Store, CF_LEDGER};
use backflow_protocol::catalog::CatalogEntry;
use backflow_protocol::ledger::entry::{EntryKind, LedgerEntry};
use backflow_topology::{RegionCode, Topology};
use common::{calendar, code, fast, wait_until};

mod common;
#[path = "../benches/share_fixture.rs"]
mod share_fixture;

const REQUESTER: &str = "110101";
const PROVIDER: &str = "11";

async fn all_entries(node: &NodeHandle) -> Result<Vec<EntryView>> {
    Ok(node.ledger_page(0, 1_000).await?.entries)
}

/// `kind` or `kind:act` of each entry, in order.
fn kinds(entries: &[EntryView]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match &e.act {
            Some(a) => format!("{}:{a}", e.kind),
            None => e.kind.clone(),
        })
        .collect()
}

/// The provider's department publishes the fixture's catalog entry and the requester's
/// 民政局 files a request for it (`scenario`); returns the request's id once the requester
/// sees it under review (received by the provider).
async fn file_request(
    requester: &NodeHandle,
    provider: &NodeHandle,
    department: &str,
    scenario: &str,
) -> Result<String> {
    provider
        .catalog_submit(
            department.into(),
            vec![CatalogEntry {
                provider: department.into(),
                ..share_fixture::entry()
            }],
        )
        .await?;
    let id = requester
        .share_file(
            "民政局".into(),
            ShareFileParams {
                provider_region: provider.region().to_string(),
                provider_department: department.into(),
                ..share_fixture::filing(scenario)
            },
        )
        .await?
        .id;
    wait_until(
        "the provider to receive it",
        Duration::from_secs(30),
        async || {
            Ok(requester
                .share(id.clone())
                .await
                .is_ok_and(|v| v.state == "under_review"))
        },
    )
    .await?;
    Ok(id)
}

/// The provider's `department` grants request `id`; returns once the requester knows.
async fn grant(
    requester: &NodeHandle,
    provider: &NodeHandle,
    department: &str,
    id: &str,
) -> Result<()> {
    provider
        .share_act(
            department.into(),
            id.into(),
            ShareActParams {
                act: "grant".into(),
                approved_by: Some(format!("{department}负责人")),
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
                .share(id.into())
                .await
                .is_ok_and(|v| v.state == "granted"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acts_are_logged_where_they_happen_and_an_edited_entry_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // 东城区's first township runs a node too: the return flow's partitions are townships'.
    let townships = Topology::china().townships_under(code(REQUESTER));
    let township = townships[0];
    let mut regions: Vec<RegionCode> = ["0", PROVIDER, "1101", REQUESTER]
        .iter()
        .map(|s| code(s))
        .collect();
    regions.push(township);
    let mut net =
        LocalNet::start_with(&regions, dir.path(), fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    net.add_department(code(REQUESTER), "民政局").await?;
    net.add_department(code(PROVIDER), "市人社局").await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let provider = net.nodes[&code(PROVIDER)].clone();
    let national = net.nodes[&code("0")].clone();

    // A share request, 东城区 民政局 → 北京 市人社局.
    let id = file_request(&requester, &provider, "市人社局", "低保资格复核").await?;
    let use_record = UseRecordParams {
        grant: id[..12].to_string(),
        scenario: "低保资格复核".into(),
        process: "按户比对参保状态".into(),
        effect: "复核 312 户,发现 4 户不符".into(),
        storage: "本局业务库,加密存储".into(),
        ..UseRecordParams::default()
    };
    // Nothing granted yet: no use to record.
    let e = format!(
        "{:#}",
        requester
            .ledger_use_record("民政局".into(), use_record.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("not granted"), "{e}");
    grant(&requester, &provider, "市人社局", &id).await?;
    // Use records are the requesting department's (Art. 29), at its own node.
    let e = format!(
        "{:#}",
        provider
            .ledger_use_record("市人社局".into(), use_record.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("requesting department"), "{e}");
    net.add_department(code(REQUESTER), "教育局").await?;
    let e = format!(
        "{:#}",
        requester
            .ledger_use_record("教育局".into(), use_record.clone())
            .await
            .unwrap_err()
    );
    assert!(e.contains("requesting department"), "{e}");
    let logged = requester
        .ledger_use_record("民政局".into(), use_record.clone())
        .await?;
    assert_eq!(logged.department.as_deref(), Some("民政局"));
    assert!(
        matches!(&logged.kind, EntryKind::UseRecord { effect, .. } if effect.contains("312")),
        "{logged:?}"
    );

    // A return flow from national down to 东城区's townships, exported at 东城区.
    let csv = dir.path().join("rf.csv");
    let mut text = String::from("id,village\n");
    for (i, t) in townships.iter().enumerate() {
        text.push_str(&format!("r{i},{t}\n"));
    }
    std::fs::write(&csv, text)?;
    let req = PublishRequest {
        dataset: "rf".into(),
        region_field: "village".into(),
        format: Format::Csv,
        department: "国家数据局".into(),
        work_dir: dir.path().join("spill"),
        rejects_path: None,
    };
    national.publish_file(req, &csv, Default::default()).await?;
    wait_until(
        "东城区 to export the return flow",
        Duration::from_secs(60),
        async || {
            Ok(requester
                .verified_export(DatasetQuery::named("rf", None), "file rf-东城区.csv")
                .await
                .is_ok())
        },
    )
    .await?;

    // Each node's ledger holds its own part, in order.
    let at_requester = kinds(&all_entries(&requester).await?);
    let at_provider = kinds(&all_entries(&provider).await?);
    let at_national = kinds(&all_entries(&national).await?);
    let position = |log: &[String], kind: &str| log.iter().position(|k| k == kind);
    for log in [&at_requester, &at_provider] {
        let (request, receive, grant) = (
            position(log, "share_act:request"),
            position(log, "share_act:receive"),
            position(log, "share_act:grant"),
        );
        assert!(
            request.is_some() && request < receive && receive < grant,
            "the request, its receipt and the grant, in order: {log:?}"
        );
        assert_eq!(
            log.iter().filter(|k| *k == "share_act:grant").count(),
            1,
            "each act once, though the case is stored on every change: {log:?}"
        );
    }
    assert!(position(&at_requester, "use_record") > position(&at_requester, "share_act:grant"));
    // The township attests its partition (签收); the attestation travels up with receipts
    // and is recorded at each ancestor.
    wait_until(
        "the township's attestation to reach national",
        Duration::from_secs(30),
        async || {
            Ok(kinds(&all_entries(&national).await?).contains(&"delivery_complete".to_string()))
        },
    )
    .await?;
    let at_township = kinds(&all_entries(&net.nodes[&township]).await?);
    assert!(
        at_township.contains(&"delivery_complete".to_string()),
        "{at_township:?}"
    );
    let at_requester = kinds(&all_entries(&requester).await?);
    assert!(
        at_requester.contains(&"delivery_complete".to_string()),
        "{at_requester:?}"
    );
    assert_eq!(
        at_requester.iter().filter(|k| *k == "export").count(),
        1,
        "{at_requester:?}"
    );
    assert!(!at_provider.contains(&"use_record".to_string()));
    assert!(
        at_national.contains(&"publish".to_string()),
        "{at_national:?}"
    );
    assert!(
        at_national.contains(&"receipt".to_string()),
        "{at_national:?}"
    );
    let exported = all_entries(&requester)
        .await?
        .into_iter()
        .find(|e| e.kind == "export")
        .unwrap();
    assert!(exported.detail.contains("rf-东城区.csv"), "{exported:?}");
    wait_until(
        "东城区's ledger to be witnessed by 东城区's city",
        Duration::from_secs(30),
        async || {
            let page = requester.ledger_page(0, 1).await?;
            Ok(page.witnessed.as_ref().is_some_and(|w| {
                w.witness == "1101" && page.head.as_ref().is_some_and(|h| h.size == w.size)
            }))
        },
    )
    .await?;
    // Heads down: 东城区 holds its city's own head, checked against the one before — one the
    // city signed (its log only grows: no larger than the city's newest, the same root when
    // it is the newest).
    let city = net.nodes[&code("1101")].clone();
    wait_until(
        "东城区 to hold its city's own ledger head",
        Duration::from_secs(30),
        async || {
            let held = requester.ledger_page(0, 0).await?.parent_head;
            let city_head = city.ledger_page(0, 0).await?.head;
            Ok(match (held, city_head) {
                (Some(h), Some(c)) => {
                    h.size > 0 && h.size <= c.size && (h.size < c.size || h.root == c.root)
                }
                _ => false,
            })
        },
    )
    .await?;
    // The same figures for Prometheus (`GET /metrics`).
    let rf = "dataset=\"rf\",publisher=\"0\",department=\"国家数据局\",version=\"1\"";
    let metrics = backflow_node::metrics::scrape(&requester, dir.path()).await?;
    let size = requester.ledger_page(0, 1).await?.size;
    for line in [
        "backflow_share_requests{state=\"granted\"} 1".to_string(),
        // The disk under the data directory is read (any size: a real file system's).
        "backflow_disk_total_bytes ".to_string(),
        // 东城区 holds all 17 townships' partitions; one township runs a node and took its own.
        format!("backflow_dataset_held_complete{{{rf}}} 1"),
        format!(
            "backflow_dataset_regions_expected{{{rf}}} {}",
            townships.len()
        ),
        format!("backflow_dataset_regions_delivered{{{rf}}} 1"),
        "backflow_peers{tier=\"city\"} 1".to_string(),
        format!("backflow_ledger_entries {size}"),
    ] {
        assert!(metrics.contains(&line), "{line} is not in:\n{metrics}");
    }
    for node in [&requester, &provider, &national] {
        let v = node.ledger_verify().await?;
        let v = v.map_err(|d| anyhow::anyhow!("{} does not verify: {d}", node.region()))?;
        assert_eq!(v.head_size, Some(v.entries), "the head covers every entry");
        assert_eq!(v.sealed, v.entries, "every entry under its seal");
    }

    // Someone with the database files rewrites the use record while the node is stopped.
    let seq = logged.seq;
    drop(requester);
    net.stop(code(REQUESTER)).await?;
    {
        let store = Store::open(&dir.path().join(format!("node-{REQUESTER}")))?;
        let bytes = store.get(CF_LEDGER, &entry_key(seq))?.expect("the entry");
        let mut entry = LedgerEntry::decode(&bytes)?;
        if let EntryKind::UseRecord { effect, .. } = &mut entry.kind {
            *effect = "复核 312 户,全部相符".into();
        }
        store.put(CF_LEDGER, &entry_key(seq), &entry.leaf_bytes()?)?;
    }
    net.restart(code(REQUESTER)).await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let damage = requester
        .ledger_verify()
        .await?
        .expect_err("the edit is found");
    assert_eq!(damage.entry, Some(seq), "{damage}");
    assert!(
        damage.problem.contains("changed after it was logged"),
        "{damage}"
    );

    // Someone with the files *and the node's key* rebuilds the whole log around the edit and
    // signs it again: it verifies locally — but its parent, which witnessed the original,
    // raises an alarm and records it in its own ledger.
    let identity = requester.identity.clone();
    drop(requester);
    net.stop(code(REQUESTER)).await?;
    rewrite(&dir.path().join(format!("node-{REQUESTER}")), &identity)?;
    net.restart(code(REQUESTER)).await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    requester.ledger_verify().await?.map_err(|d| {
        anyhow::anyhow!("a log rewritten with the node's key verifies locally: {d}")
    })?;
    let city = net.nodes[&code("1101")].clone();
    wait_until(
        "东城区's city to raise a witness alarm",
        Duration::from_secs(30),
        async || {
            Ok(all_entries(&city).await?.iter().any(|e| {
                e.kind == "note"
                    && e.subject.contains("witness alarm")
                    && e.subject.contains(REQUESTER)
            }))
        },
    )
    .await?;
    drop((requester, provider, national, city));
    net.shutdown().await
}

/// Rebuilds a stopped node's whole ledger from its (edited) entries — every tree node anew —
/// and signs the new head with the node's own key, as someone holding both could; the seals
/// go too, and the node makes them again under its own and its departments' keys at start.
fn rewrite(path: &std::path::Path, identity: &backflow_protocol::cert::NodeIdentity) -> Result<()> {
    use backflow_node::ledger::{entries, Ledger, Record};
    let store = Store::open(path)?;
    let mut all = Vec::new();
    loop {
        let page = entries(&store, all.len() as u64, 1_000)?;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    for prefix in [b"e", b"n", b"h", b"s", b"k"] {
        for (k, _) in store.scan_prefix(CF_LEDGER, prefix, 10_000_000)? {
            store.delete(CF_LEDGER, &k)?;
        }
    }
    let mut ledger = Ledger::open(&store, identity.region)?;
    let records = all.into_iter().map(|e| Record {
        time_ms: e.time_ms,
        department: e.department,
        kind: e.kind,
        subject: e.subject,
        detail: e.detail,
    });
    ledger.append(&store, store.batch(), records)?;
    let now = backflow_node::node::now_ms().0;
    ledger.sign_if_grown(&store, identity, now)?;
    store.flush()?;
    Ok(())
}

/// Art. 29 查阅 across the country: a 广东 provider reads the records of its grant at the 北京
/// requester's node, and national (the authority above) reads all of them — each entry proved
/// against the requester's head as its city witnessed it. Who may not read is refused, and an
/// entry edited in the requester's database is caught by the provider's check of its proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_across_the_country_inspects_its_grant_s_records_with_proofs() -> Result<()> {
    const GUANGDONG: &str = "44";
    let dir = tempfile::tempdir()?;
    let regions: Vec<RegionCode> = ["0", "11", "1101", REQUESTER, GUANGDONG]
        .iter()
        .map(|s| code(s))
        .collect();
    let mut net =
        LocalNet::start_with(&regions, dir.path(), fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    net.add_department(code(REQUESTER), "民政局").await?;
    net.add_department(code(GUANGDONG), "省人社厅").await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let provider = net.nodes[&code(GUANGDONG)].clone();
    let national = net.nodes[&code("0")].clone();
    let city = net.nodes[&code("1101")].clone();

    let id = file_request(&requester, &provider, "省人社厅", "跨省低保资格复核").await?;
    grant(&requester, &provider, "省人社厅", &id).await?;
    let logged = requester
        .ledger_use_record(
            "民政局".into(),
            UseRecordParams {
                grant: id.clone(),
                scenario: "跨省低保资格复核".into(),
                process: "按户比对广东参保状态".into(),
                effect: "复核 57 户".into(),
                storage: "本局业务库,加密存储".into(),
                ..UseRecordParams::default()
            },
        )
        .await?;
    // Records are shown once the requester's city has witnessed a head that holds them.
    wait_until(
        "北京 东城区's use record to be witnessed",
        Duration::from_secs(30),
        async || {
            let page = requester.ledger_page(0, 1).await?;
            Ok(page.witnessed.is_some_and(|w| w.size > logged.seq))
        },
    )
    .await?;

    // The provider reads its grant's records at the requester, two hops up and two down.
    let seen = provider
        .ledger_inspect(code(REQUESTER), Some(id[..12].to_string()), 0, 100)
        .await?
        .map_err(|e| anyhow::anyhow!("the provider's inspection: {e}"))?;
    assert_eq!(seen.region, REQUESTER);
    assert_eq!(seen.witnessed_by, "1101");
    assert!(
        seen.entries.iter().all(|e| e.subject == id),
        "only the grant's records: {:?}",
        kinds(&seen.entries)
    );
    let got = kinds(&seen.entries);
    for k in ["share_act:request", "share_act:grant", "use_record"] {
        assert!(got.contains(&k.to_string()), "{k} is not in {got:?}");
    }
    let used = seen
        .entries
        .iter()
        .find(|e| e.kind == "use_record")
        .unwrap();
    assert_eq!(used.seq, logged.seq);
    assert!(used.use_record.as_ref().unwrap().effect.contains("57"));
    // Sealed by the department that entered it (its key, certified by 东城区's), as the
    // provider checked; the node's own acts by the node.
    let sealed_by = |seq: u64| {
        let i = seen.entries.iter().position(|e| e.seq == seq).unwrap();
        seen.sealed_by[i].clone()
    };
    assert_eq!(sealed_by(logged.seq), "民政局", "{:?}", seen.sealed_by);

    // National, the authority above, reads every record, contiguous from the first.
    let all = national
        .ledger_inspect(code(REQUESTER), None, 0, 256)
        .await?
        .map_err(|e| anyhow::anyhow!("national's inspection: {e}"))?;
    assert!(all
        .entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.seq == i as u64));
    assert!(
        seen.entries.iter().all(|e| all.entries.contains(e)),
        "the grant's records are among all of them"
    );
    let page = national
        .ledger_inspect(code(REQUESTER), None, 1, 2)
        .await?
        .map_err(|e| anyhow::anyhow!("a page: {e}"))?;
    assert!(all.entries.len() >= 4, "{:?}", kinds(&all.entries));
    assert_eq!(page.entries, all.entries[1..3]);
    // The page says where to go on.
    assert_eq!(page.next, Some(3));

    // Who may not: the provider all records (it is not above 北京), the requester's city the
    // grant's (it is not the provider), a node its own ledger.
    for (who, grant, why) in [
        (&provider, None, "only an authority above"),
        (&city, Some(id.clone()), "no share request"),
        (&requester, None, "ledger show"),
    ] {
        let e = who
            .ledger_inspect(code(REQUESTER), grant, 0, 10)
            .await?
            .expect_err("refused");
        assert!(
            matches!(&e, InspectFailure::Refused(m) if m.contains(why)),
            "{}: {e:?}",
            who.region()
        );
    }

    // Someone edits the use record in the requester's database while it is stopped: the
    // node still answers from its log, but the provider's check of the proof against the
    // witnessed head names the entry.
    drop(requester);
    net.stop(code(REQUESTER)).await?;
    {
        let store = Store::open(&dir.path().join(format!("node-{REQUESTER}")))?;
        let bytes = store
            .get(CF_LEDGER, &entry_key(logged.seq))?
            .expect("the entry");
        let mut entry = LedgerEntry::decode(&bytes)?;
        if let EntryKind::UseRecord { effect, .. } = &mut entry.kind {
            *effect = "复核 57 户,全部相符".into();
        }
        store.put(CF_LEDGER, &entry_key(logged.seq), &entry.leaf_bytes()?)?;
    }
    net.restart(code(REQUESTER)).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let e = provider
        .ledger_inspect(code(REQUESTER), Some(id.clone()), 0, 100)
        .await?
        .expect_err("an edited entry does not prove itself")
        .to_string();
    assert!(
        e.contains("does not prove itself") && e.contains(&format!("position {}", logged.seq)),
        "{e}"
    );
    drop((provider, national, city));
    net.shutdown().await
}
