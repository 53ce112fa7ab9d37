//! The network under test, generated datasets and the checks every scenario shares.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::net::Net;
use crate::poll::wait_for;

// Regions (NBS 2023 codes).
pub const NATIONAL: &str = "0";
pub const PROVINCE: &str = "33"; // 浙江省
pub const CITY_A: &str = "3301"; // 杭州市
pub const CITY_B: &str = "3302"; // 宁波市
pub const COUNTY_A: &str = "330102"; // 上城区
pub const COUNTY_B: &str = "330105"; // 拱墅区
pub const TOWN_A1: &str = "330102001"; // 清波街道
pub const TOWN_A2: &str = "330102003"; // 湖滨街道
pub const TOWN_B1: &str = "330105001"; // 米市巷街道

/// Node names (also part of container names), parent before child.
pub const TREE: [(&str, &str); 9] = [
    ("national", NATIONAL),
    ("province", PROVINCE),
    ("city-a", CITY_A),
    ("city-b", CITY_B),
    ("county-a", COUNTY_A),
    ("county-b", COUNTY_B),
    ("town-a1", TOWN_A1),
    ("town-a2", TOWN_A2),
    ("town-b1", TOWN_B1),
];

pub const TOWNSHIPS: [(&str, &str); 3] = [
    ("town-a1", TOWN_A1),
    ("town-a2", TOWN_A2),
    ("town-b1", TOWN_B1),
];

/// A generated CSV dataset and, per township, the exact bytes it must end up with.
pub struct Dataset {
    pub name: String,
    /// Path of the CSV inside the publisher's container.
    pub file: String,
    /// Township code → its records, in published order, byte for byte.
    pub expected: BTreeMap<String, Vec<u8>>,
    pub records: BTreeMap<String, u64>,
    /// Lines that must be rejected (missing or malformed codes), never delivered.
    pub bad: u64,
}

impl Dataset {
    pub fn good(&self) -> u64 {
        self.records.values().sum()
    }

    pub fn bytes(&self) -> u64 {
        self.expected.values().map(|v| v.len() as u64).sum()
    }

    pub fn bytes_of(&self, township: &str) -> u64 {
        self.expected.get(township).map_or(0, |v| v.len() as u64)
    }
}

/// Writes a CSV into `publisher`'s data dir: `records` rows per township, interleaved across
/// townships (so partitioning has real work), `pad` filler bytes per row, and with
/// `bad_lines` two rows that must be rejected.
pub fn write_dataset(
    net: &Net,
    publisher: &str,
    name: &str,
    townships: &[(&str, usize)],
    pad: usize,
    bad_lines: bool,
) -> Dataset {
    let mut csv = b"record_id,village_code,household,benefit_yuan,note\n".to_vec();
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut records: BTreeMap<String, u64> = BTreeMap::new();
    let max = townships.iter().map(|t| t.1).max().unwrap_or(0);
    let filler = "x".repeat(pad);
    let mut id = 0u64;
    let mut bad = 0;
    for i in 0..max {
        for (t, n) in townships {
            if i >= *n {
                continue;
            }
            id += 1;
            // A real village of the township (the NBS 2023 list embedded in the topology).
            let code = backflow_topology::RegionCode::parse(t).expect("a township code");
            let villages = backflow_topology::villages_of(code);
            let village = villages[id as usize % villages.len()];
            // Some rows carry a quoted field with a comma, as real exports do.
            let note = if id % 10 == 3 {
                format!("\"{name}, row {id}\"{filler}")
            } else {
                format!("ok{filler}")
            };
            let line = format!(
                "{id},{village},H{id:07},{},{note}\n",
                100 + (id * 37) % 4900
            );
            csv.extend_from_slice(line.as_bytes());
            expected
                .entry(t.to_string())
                .or_default()
                .extend_from_slice(line.as_bytes());
            *records.entry(t.to_string()).or_default() += 1;
        }
        if bad_lines && i == max / 2 {
            csv.extend_from_slice(
                format!("{},,H9999990,100,missing code\n", id + 1_000_000).as_bytes(),
            );
            csv.extend_from_slice(
                format!(
                    "{},33010X001001,H9999991,100,malformed code\n",
                    id + 1_000_001
                )
                .as_bytes(),
            );
            bad = 2;
        }
    }
    let file = format!("{name}.csv");
    std::fs::write(net.host_path(publisher, &file), &csv).expect("writing dataset");
    Dataset {
        name: name.to_string(),
        file: format!("{}/{file}", crate::net::DATA_DIR),
        expected,
        records,
        bad,
    }
}

/// `backflow publish` in the publisher's container; checks the report's counts.
pub async fn publish(net: &Net, publisher: &str, ds: &Dataset) -> String {
    let out = net
        .cli(
            publisher,
            &[
                "publish",
                "--dataset",
                &ds.name,
                "--region-field",
                "village_code",
                &ds.file,
            ],
        )
        .await;
    assert!(
        out.contains(&format!(
            "{} records in {} partitions",
            ds.good(),
            ds.expected.len()
        )),
        "publish report does not show {} records in {} partitions:\n{out}",
        ds.good(),
        ds.expected.len()
    );
    if ds.bad > 0 {
        assert!(
            out.contains(&format!("{} records NOT published", ds.bad)),
            "publish report does not count the {} bad lines:\n{out}",
            ds.bad
        );
    }
    out
}

/// Waits until the publisher's receipts show every region delivered; returns its status.
pub async fn wait_publisher_complete(
    net: &Net,
    publisher: &str,
    ds: &Dataset,
    limit: Duration,
) -> Value {
    let what = format!(
        "{publisher} to see {} complete (receipts from every region)",
        ds.name
    );
    wait_for(&what, limit, || async {
        let s = net.dataset_status(publisher, &ds.name)?;
        (s["complete"] == true).then_some(s)
    })
    .await
}

/// Waits until `node` holds every partition of its subtree, stored and verified.
pub async fn wait_held_complete(net: &Net, node: &str, ds: &Dataset, limit: Duration) {
    let what = format!("{node} to hold all of {} stored and verified", ds.name);
    wait_for(&what, limit, || async {
        let s = net.dataset_status(node, &ds.name)?;
        (s["held_complete"] == true).then_some(())
    })
    .await
}

/// The publisher's receipts account for exactly the dataset: every region, record and byte
/// once (a duplicate delivery would overcount, a lost one undercount).
pub fn assert_receipts_exact(status: &Value, ds: &Dataset) {
    let n = |k: &str| {
        status[k]
            .as_u64()
            .unwrap_or_else(|| panic!("status has no {k}: {status}"))
    };
    assert_eq!(
        n("regions_expected"),
        ds.expected.len() as u64,
        "regions expected: {status}"
    );
    assert_eq!(
        n("regions_delivered"),
        ds.expected.len() as u64,
        "regions delivered: {status}"
    );
    assert_eq!(
        n("records_delivered"),
        ds.good(),
        "records delivered: {status}"
    );
    assert_eq!(
        n("bytes_delivered"),
        ds.bytes(),
        "bytes delivered: {status}"
    );
    assert_eq!(status["complete"], true, "{status}");
    for c in status["children"].as_array().expect("children") {
        assert_eq!(c["state"], "complete", "child not complete: {c}");
        assert_eq!(
            c["records_delivered"], c["records_expected"],
            "child counts: {c}"
        );
        assert_eq!(
            c["bytes_delivered"], c["bytes_expected"],
            "child counts: {c}"
        );
    }
}

/// `backflow export` at a township: exactly its own records, byte-identical and in published
/// order — compared by count, blake3 and content.
pub async fn assert_township_exact(net: &Net, node: &str, township: &str, ds: &Dataset) {
    let out_file = format!("export-{}.csv", ds.name);
    let report = net
        .cli(
            node,
            &[
                "export",
                "--dataset",
                &ds.name,
                "--out",
                &format!("{}/{out_file}", crate::net::DATA_DIR),
            ],
        )
        .await;
    let text = std::fs::read(net.host_path(node, &out_file)).expect("exported file");
    let header_end = text.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(
        &text[..header_end],
        b"record_id,village_code,household,benefit_yuan,note\n",
        "{node}: export header"
    );
    let body = &text[header_end..];
    let want = ds
        .expected
        .get(township)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let got_lines = body.iter().filter(|b| **b == b'\n').count() as u64;
    let want_lines = ds.records.get(township).copied().unwrap_or(0);
    assert_eq!(
        got_lines, want_lines,
        "{node} ({township}) record count; export said: {report}"
    );
    assert_eq!(
        blake3::hash(body),
        blake3::hash(want),
        "{node} ({township}) content hash differs from the published records"
    );
    assert!(body == want, "{node} ({township}) content differs");
}

/// A valid Art. 13 catalog entry as a ministry system would submit it.
pub fn catalog_entry(id: &str, name: &str) -> Value {
    serde_json::json!({
        "id": id,
        "name": name,
        "data_items": [
            {"name": "household", "data_type": "Text", "description": "户编号"},
            {"name": "benefit_yuan", "data_type": "Integer", "description": "补贴金额(元)"}
        ],
        "provider": "data-authority",
        "format": "Csv",
        "update_frequency": "Monthly",
        "sharing": "Unconditional",
        "sharing_methods": ["FileDownload", "ServiceApi"],
        "usage_conditions": "",
        "classification": "社会保障/社会救助",
        "grade": "General"
    })
}

/// Does `node`'s aggregated catalog hold entry `id` from `region`?
pub fn catalog_has(net: &Net, node: &str, region: &str, id: &str) -> Option<Value> {
    let v = crate::poll::http(&net.node(node).api(), "GET", "/api/catalog", None).ok()?;
    v.as_array()?.iter().find_map(|c| {
        if c["region"] != region {
            return None;
        }
        c["entries"]
            .as_array()?
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
    })
}

/// Submits a catalog entry at `node` with `backflow catalog add`.
pub async fn catalog_add(net: &Net, node: &str, entry: &Value) {
    let file = format!("catalog-{}.json", entry["id"].as_str().expect("id"));
    std::fs::write(net.host_path(node, &file), entry.to_string()).expect("write entry");
    let out = net
        .cli(
            node,
            &[
                "catalog",
                "add",
                &format!("{}/{file}", crate::net::DATA_DIR),
            ],
        )
        .await;
    assert!(out.contains("submitted"), "catalog add at {node}: {out}");
}

/// Regions `node` has verified among its connected peers.
pub fn verified_regions(net: &Net, node: &str) -> Vec<String> {
    let v = net.api(node, "GET", "/api/peers", None);
    v.as_array()
        .expect("peers array")
        .iter()
        .filter_map(|p| p["region"].as_str().map(str::to_string))
        .collect()
}
