//! `publish` partition rate: a ≥ 500 MB CSV whose records carry real village codes spread
//! over all 41,352 townships, partitioned by the same code `backflow publish` runs.
//!
//! Prints records/s, MB/s and peak RSS for (1) partitioning alone and (2) the full publish
//! preparation (partition + blake3 + store every partition in RocksDB + build and sign the
//! manifest). Size: `BACKFLOW_BENCH_MB` (default 520).
//!
//! Run: `cargo bench -p backflow-node --bench partition`

#[path = "common.rs"]
mod common;

use std::time::Instant;

use anyhow::Result;
use backflow_node::partition::{partition, Format, PartitionConfig, PartitionSink, Replay};
use backflow_node::publish::{prepare, PublishRequest};
use backflow_node::store::Store;
use backflow_protocol::cert::NodeIdentity;
use backflow_topology::{RegionCode, Topology};

/// Consumes partitions like a sink that must touch every byte (so nothing is optimised away).
struct CountingSink {
    bytes: u64,
    partitions: u64,
}

impl PartitionSink for CountingSink {
    fn partition(
        &mut self,
        _: RegionCode,
        records: u64,
        _: u64,
        replay: &mut Replay<'_>,
    ) -> Result<()> {
        if records > 0 {
            self.partitions += 1;
            replay(&mut |b| {
                self.bytes += b.len() as u64;
                Ok(())
            })?;
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let target_mb: u64 = common::env_or("BACKFLOW_BENCH_MB", 520);
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("bench.csv");
    let townships = Topology::china().townships_under(RegionCode::NATIONAL);
    assert_eq!(townships.len(), 41_352);
    let t0 = Instant::now();
    let records = common::write_national_csv(&csv, target_mb * 1_000_000, 7)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "generated {:.0} MB, {records} records over {} townships in {:.1}s",
        size as f64 / 1e6,
        townships.len(),
        t0.elapsed().as_secs_f64()
    );

    // (1) Partition only.
    common::reset_peak_rss();
    let cfg = PartitionConfig {
        format: Format::Csv,
        region_field: "village_code".into(),
        scope: RegionCode::NATIONAL,
        buffer_bytes_max: backflow_node::publish::PARTITION_BUFFER_BYTES_MAX,
        spill_dir: dir.path().join("spill"),
        rejects_path: None,
    };
    let mut sink = CountingSink {
        bytes: 0,
        partitions: 0,
    };
    let t = Instant::now();
    let summary = partition(
        &mut std::fs::File::open(&csv)?,
        &cfg,
        &mut sink,
        &mut |_| {},
    )?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(summary.records_routed, records);
    assert_eq!(sink.partitions, townships.len() as u64);
    println!(
        "partition only:    {:>10.0} records/s  {:>7.1} MB/s  {:.2}s  peak RSS {:.0} MiB  ({} runs spilled)",
        records as f64 / secs,
        size as f64 / 1e6 / secs,
        secs,
        common::peak_rss_bytes() as f64 / (1 << 20) as f64,
        summary.runs_spilled
    );

    // (2) Full publish preparation into RocksDB.
    common::reset_peak_rss();
    let store = Store::open(&dir.path().join("db"))?;
    let identity =
        NodeIdentity::national(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng));
    let req = PublishRequest {
        dataset: "bench".into(),
        region_field: "village_code".into(),
        format: Format::Csv,
        department: "bench".into(),
        work_dir: dir.path().join("spill2"),
        rejects_path: None,
    };
    let t = Instant::now();
    let mut input = std::fs::File::open(&csv)?;
    let prepared = prepare(
        &store,
        &identity,
        &|_| None,
        &req,
        &mut input,
        backflow_node::node::now_ms(),
        &mut |_| {},
    )?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(prepared.partitions(), townships.len());
    println!(
        "publish (stored):  {:>10.0} records/s  {:>7.1} MB/s  {:.2}s  peak RSS {:.0} MiB  ({} partitions, manifest signed)",
        records as f64 / secs,
        size as f64 / 1e6 / secs,
        secs,
        common::peak_rss_bytes() as f64 / (1 << 20) as f64,
        prepared.partitions()
    );
    println!(
        "  ({} signed manifest(s): one for the whole subtree unless a child region exceeds the announce limit)",
        prepared.manifests.len()
    );
    Ok(())
}
