//! The unified catalog in a node's RocksDB at national scale (issue 17): every jurisdiction of
//! the division tree × 7 departments × 10 entries (3,129,280 by default) written the way the
//! node writes them (`catalog_store::append`: log entry, entries, record in one batch per
//! version), then what a restart reads (`catalog_store::load`: the log's length, every record,
//! 3 M entry ids from the keys alone) and what the API reads (a page of the listing, entries
//! by id). Prints figures; `cargo test --workspace` only builds it.
//!
//! `cargo bench -p backflow-node --bench catalog` (release), or
//! `BACKFLOW_BENCH_ENTRIES=313000` for a tenth of the country.

use std::sync::Arc;
use std::time::Instant;

use backflow_node::catalog_store;
use backflow_node::store::Store;
use backflow_protocol::catalog::{
    CatalogChange, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem, DataType,
    SharingAttribute, SharingMethod, SignedCatalogUpdate, UpdateFrequency,
};
use backflow_protocol::catalog_sync::OriginRecord;
use backflow_protocol::time::UnixMs;
use backflow_topology::{RegionCode, Topology};

#[path = "common.rs"]
mod common;

const DEPARTMENTS: [&str; 7] = [
    "公安局",
    "民政局",
    "人力资源和社会保障局",
    "自然资源局",
    "市场监督管理局",
    "卫生健康委员会",
    "教育局",
];
const ENTRIES_PER_DEPARTMENT: usize = 10;

fn entry(
    department: &str,
    region: RegionCode,
    k: usize,
) -> backflow_protocol::catalog::CatalogEntry {
    backflow_protocol::catalog::CatalogEntry {
        id: format!("{region}-{k}"),
        name: format!("{department}行政许可信息{k}"),
        data_items: (0..4)
            .map(|i| DataItem {
                name: format!("数据项{i}"),
                data_type: DataType::Text,
                description: "统一社会信用代码".into(),
            })
            .collect(),
        provider: department.into(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "政务服务".into(),
        grade: DataGrade::General,
    }
}

fn main() -> anyhow::Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let entries_max: usize = common::env_or("BACKFLOW_BENCH_ENTRIES", 3_129_280);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let regions: Vec<RegionCode> = {
        let t = Topology::china();
        let mut all = vec![RegionCode::NATIONAL];
        all.extend(t.descendants(RegionCode::NATIONAL));
        all
    };
    let started = Instant::now();
    let mut written = 0usize;
    let mut index = 0u64;
    {
        let store = Store::open(&path)?;
        catalog_store::init_layout(&store)?;
        'all: for region in &regions {
            for department in DEPARTMENTS {
                if written >= entries_max {
                    break 'all;
                }
                let origin = CatalogOrigin {
                    region: *region,
                    department: department.into(),
                };
                let changes = (0..ENTRIES_PER_DEPARTMENT)
                    .map(|k| CatalogChange::Add(Arc::new(entry(department, *region, k))))
                    .collect();
                let update = SignedCatalogUpdate {
                    update: CatalogUpdate {
                        origin,
                        seq: 1,
                        issued_at: UnixMs(0),
                        changes,
                    },
                    // Stored as verified; the store checks no signature.
                    signer: Vec::new(),
                    signature: ed25519_dalek::Signature::from_bytes(&[0; 64]),
                };
                index += 1;
                let record = OriginRecord {
                    seq: 1,
                    versions: 1,
                    bytes: 0,
                };
                let mut batch = store.batch();
                catalog_store::append(&mut batch, index, &update, &record)?;
                store.write(batch)?;
                written += ENTRIES_PER_DEPARTMENT;
            }
        }
        store.sync_wal()?;
        store.flush()?;
    }
    let write_s = started.elapsed().as_secs_f64();
    println!(
        "write: {written} entries in {index} versions, {write_s:.1} s ({:.0} entries/s)",
        written as f64 / write_s
    );

    let t = Instant::now();
    let store = Store::open(&path)?;
    let open_s = t.elapsed().as_secs_f64();
    let rss_before = common::rss_bytes();
    let t = Instant::now();
    let saved = catalog_store::load(&store, RegionCode::NATIONAL)?;
    let load_s = t.elapsed().as_secs_f64();
    let ids: usize = saved
        .origins
        .iter()
        .map(|o| match &o.entries {
            backflow_protocol::catalog_sync::SavedEntries::Ids(ids) => ids.len(),
            backflow_protocol::catalog_sync::SavedEntries::Local(e) => e.len(),
        })
        .sum();
    assert_eq!(ids, written, "every entry read back");
    println!(
        "restart read (national): open {open_s:.2} s, load {load_s:.2} s — log {} versions, {} departments, {ids} entry ids; RSS +{} MiB",
        saved.log_len,
        saved.origins.len(),
        common::rss_bytes().saturating_sub(rss_before) >> 20
    );
    drop(saved);

    let t = Instant::now();
    let page = catalog_store::list(&store, RegionCode::NATIONAL, None, 1_000)?;
    println!(
        "listing: first page of {} departments ({} entries) in {:.1} ms",
        page.len(),
        page.iter().map(|c| c.entries.len()).sum::<usize>(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let county = RegionCode::parse("441900")?;
    let t = Instant::now();
    let page = catalog_store::list(&store, county, None, 1_000)?;
    println!(
        "listing: a county's subtree ({} departments) in {:.1} ms",
        page.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let found = catalog_store::entries_with_id(&store, "441900-3", 1_000)?;
    println!(
        "entries by id (the id index): {} found in {:.2} ms",
        found.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "peak RSS {} MiB; database {} MiB",
        common::peak_rss_bytes() >> 20,
        dir_bytes(&path) >> 20
    );
    Ok(())
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
