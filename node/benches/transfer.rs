//! Return-flow transfer between two real nodes on loopback (libp2p TCP + TLS + yamux, or QUIC
//! with `BACKFLOW_BENCH_TRANSPORT=quic`; each with its own RocksDB): the national node publishes a dataset whose one partition is
//! `BACKFLOW_BENCH_MB` (default 1024 MiB) for township 110101001; the province node 11
//! pulls every 16 KiB group, verifies it against the signed manifest (bao-tree) and stores it.
//! The clock runs from handing the manifest to the return flow until the province reports
//! every partition of its subtree stored and verified.
//!
//! Run: `cargo bench -p backflow-node --bench transfer`

#[path = "common.rs"]
mod common;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::node::{now_ms, Tuning};
use backflow_node::partition::Format;
use backflow_node::publish::{prepare, PublishRequest};
use backflow_topology::RegionCode;

fn main() -> Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let mib: u64 = common::env_or("BACKFLOW_BENCH_MB", 1024);
    // BACKFLOW_BENCH_WORKERS: tokio worker threads (default: one per core, as `backflow run`).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("BACKFLOW_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.worker_threads(n);
    }
    let rt = builder.enable_all().build()?;
    rt.block_on(run(mib))
}

async fn run(mib: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("big.csv");
    {
        let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(&csv)?);
        writeln!(w, "id,village_code,payload")?;
        let payload = "x".repeat(200);
        let mut written = 0u64;
        let mut i = 0u64;
        while written < mib << 20 {
            let line = format!("{i},110101001{:03},{payload}\n", i % 300 + 1);
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            i += 1;
        }
        w.flush()?;
    }
    let national = RegionCode::NATIONAL;
    let province = RegionCode::parse("11")?;
    // BACKFLOW_BENCH_WINDOW: the transfer window (`[tuning] groups_in_flight_max`).
    let mut tuning = Tuning::default();
    if let Some(w) = std::env::var("BACKFLOW_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tuning.groups_in_flight_max = w;
    }
    println!(
        "window: {} groups of 16 KiB in flight",
        tuning.groups_in_flight_max
    );
    let transport: Transport = std::env::var("BACKFLOW_BENCH_TRANSPORT")
        .unwrap_or_else(|_| "tcp".into())
        .parse()?;
    println!("transport: {transport:?}");
    let net = LocalNet::start_on(&[national, province], dir.path(), tuning, transport).await?;
    net.wait_connected(Duration::from_secs(10)).await?;
    let pub_node = net.nodes[&national].clone();
    let store = pub_node.store.clone();
    let identity = pub_node.identity.clone();
    let req = PublishRequest {
        dataset: "bench-transfer".into(),
        region_field: "village_code".into(),
        format: Format::Csv,
        department: "bench".into(),
        work_dir: dir.path().join("spill"),
        rejects_path: None,
    };
    let t = Instant::now();
    let mut input = std::fs::File::open(&csv)?;
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(
            &store,
            &identity,
            &|_| None,
            &req,
            &mut input,
            now_ms(),
            &mut |_| {},
        )
    })
    .await??;
    let bytes: u64 = prepared.bytes();
    // The input and the partitioner's spill are not needed any more: at 10 GiB they would
    // double the disk the run needs.
    std::fs::remove_file(&csv)?;
    let _ = std::fs::remove_dir_all(dir.path().join("spill"));
    println!(
        "prepared {:.0} MiB in {} partition(s) at the publisher in {:.1}s (not timed below)",
        bytes as f64 / (1 << 20) as f64,
        prepared.partitions(),
        t.elapsed().as_secs_f64()
    );
    common::reset_peak_rss();
    let rss_before = common::rss_bytes();
    let receiver = net.nodes[&province].clone();
    let cpu_before = common::cpu_secs();
    let t = Instant::now();
    pub_node.publish(prepared.manifests).await?;
    loop {
        let st = receiver.status(Some("bench-transfer".into())).await?;
        if st.first().is_some_and(|s| s.held_complete) {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("transfer did not complete within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = common::cpu_secs() - cpu_before;
    // Check what the receiver stored, byte for byte against the entry's hash.
    let records = receiver.record("bench-transfer", None).await?;
    let mut stored = 0u64;
    for e in records.iter().flat_map(|(_, r)| r.entries.iter()) {
        let mut hasher = blake3::Hasher::new();
        receiver.store.for_each_group(&e.content_hash, |_, d| {
            hasher.update(d);
            stored += d.len() as u64;
            Ok(())
        })?;
        assert_eq!(hasher.finalize().as_bytes(), &e.content_hash);
    }
    assert_eq!(stored, bytes);
    println!(
        "transfer: {:.0} MiB verified and stored in {:.2}s = {:.0} MB/s end to end; both nodes used {:.1} CPU-s ({:.2} cores busy); peak RSS {:.0} MiB (was {:.0} MiB before)",
        bytes as f64 / (1 << 20) as f64,
        secs,
        bytes as f64 / 1e6 / secs,
        cpu,
        cpu / secs,
        common::peak_rss_bytes() as f64 / (1 << 20) as f64,
        rss_before as f64 / (1 << 20) as f64,
    );
    net.shutdown().await?;
    Ok(())
}
