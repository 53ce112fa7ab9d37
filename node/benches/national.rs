//! A national dataset in its real shape: one dataset of 41,352 small partitions (~518 MB, a
//! population register: ~12 KB a township) from the national node to all 31 provinces, each
//! a real node on loopback (one process; every node with its own libp2p swarm, TCP + TLS +
//! yamux, and its own RocksDB), with the shipping defaults (`Tuning::default()`).
//!
//! Prints the publish preparation (partition + hash + store + sign) rate, then the time from
//! handing the manifest to the return flow until every province holds its whole subtree
//! verified and stored, the bytes per second that makes, the CPU seconds of all nodes, peak
//! RSS, and the connections closed on the way (there must be none).
//!
//! `BACKFLOW_BENCH_SHAPE=chain`: one province's chain down to every township of one county
//! instead (北京 → 市辖区 → 东城区 → its townships, each a real node), the same dataset.
//! `BACKFLOW_BENCH_MB`: dataset size (default 518).
//!
//! Run: `cargo bench --workspace --bench national` (not `-p`: another feature set, another
//! RocksDB build).

#[path = "common.rs"]
mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_node::localnet::LocalNet;
use backflow_node::node::{now_ms, Tuning};
use backflow_node::partition::Format;
use backflow_node::publish::{prepare, PublishRequest};
use backflow_topology::{Level, RegionCode, Topology};

fn main() -> Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let mb: u64 = common::env_or("BACKFLOW_BENCH_MB", 518);
    let chain = std::env::var("BACKFLOW_BENCH_SHAPE").is_ok_and(|s| s == "chain");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(mb, chain))
}

async fn run(mb: u64, chain: bool) -> Result<()> {
    let topo = Topology::china();
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("national.csv");
    let t = Instant::now();
    let records = common::write_national_csv(&csv, mb * 1_000_000, 7)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "generated {:.0} MB, {records} records over 41,352 townships in {:.1}s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let mut regions = vec![RegionCode::NATIONAL];
    if chain {
        let county = RegionCode::parse("110101")?;
        regions.extend(county.ancestors().filter(|a| *a != RegionCode::NATIONAL));
        regions.push(county);
        regions.extend(topo.children(county).iter().copied());
    } else {
        regions.extend(topo.children(RegionCode::NATIONAL).iter().copied());
    }
    let receivers: Vec<RegionCode> = regions[1..].to_vec();
    println!(
        "nodes: national + {} ({})",
        receivers.len(),
        if chain {
            "北京 → 市辖区 → 东城区 → its townships"
        } else {
            "all 31 provinces"
        }
    );
    let net = LocalNet::start(&regions, dir.path(), Tuning::default()).await?;
    net.wait_connected(Duration::from_secs(60)).await?;
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    let store = national.store.clone();
    let identity = national.identity.clone();
    let req = PublishRequest {
        dataset: "register".into(),
        region_field: "village_code".into(),
        format: Format::Csv,
        department: "bench".into(),
        work_dir: dir.path().join("spill"),
        rejects_path: None,
    };
    common::reset_peak_rss();
    let cpu = common::cpu_secs();
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
    let secs = t.elapsed().as_secs_f64();
    let bytes = prepared.bytes();
    println!(
        "publish (partition + hash + store + sign): {:.0} MB in {} partitions, {:.2}s = {:.0} MB/s of input, {:.1} CPU-s, peak RSS {:.0} MiB",
        size as f64 / 1e6,
        prepared.partitions(),
        secs,
        size as f64 / 1e6 / secs,
        common::cpu_secs() - cpu,
        common::peak_rss_bytes() as f64 / (1 << 20) as f64,
    );
    std::fs::remove_file(&csv)?;
    let _ = std::fs::remove_dir_all(dir.path().join("spill"));
    // What the receivers must end up holding: each its own subtree.
    let entries: Vec<_> = prepared
        .manifests
        .iter()
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    let subtree_bytes = |r: RegionCode| -> u64 {
        entries
            .iter()
            .filter(|e| r.contains(e.region))
            .map(|e| e.bytes)
            .sum()
    };
    let delivered: u64 = receivers
        .iter()
        .filter(|r| chain || r.level() == Level::Province)
        .map(|r| subtree_bytes(*r))
        .sum();
    common::reset_peak_rss();
    let cpu = common::cpu_secs();
    let t = Instant::now();
    national.publish(prepared.manifests).await?;
    let mut pending = receivers.clone();
    let mut done_at = Vec::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for r in pending {
            // `record` answers only once the node holds its whole subtree: a lookup, where
            // `status` would build the per-child view of thousands of partitions 50 times a
            // second on each of 31 nodes and weigh on the very run it measures.
            if net.nodes[&r].record("register", None).await.is_ok() {
                done_at.push((r, t.elapsed().as_secs_f64()));
            } else {
                still.push(r);
            }
        }
        pending = still;
        if t.elapsed() > Duration::from_secs(900) {
            bail!(
                "{} receivers incomplete after 900 s: {pending:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = common::cpu_secs() - cpu;
    let closed: u64 = net
        .nodes
        .values()
        .map(|h| h.stats.connections_closed.load(Relaxed))
        .sum();
    let dropped: u64 = net
        .nodes
        .values()
        .map(|h| h.stats.control_frames_dropped.load(Relaxed))
        .sum();
    done_at.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (last, last_secs) = done_at.last().copied().expect("receivers");
    println!(
        "return flow: {:.0} MB ({} of {} bytes of the dataset) verified and stored at {} receivers in {:.2}s = {:.0} MB/s; all nodes used {:.1} CPU-s ({:.2} cores busy); peak RSS {:.0} MiB; connections closed: {closed}; control frames dropped: {dropped}",
        delivered as f64 / 1e6,
        delivered,
        bytes,
        receivers.len(),
        secs,
        delivered as f64 / 1e6 / secs,
        cpu,
        cpu / secs,
        common::peak_rss_bytes() as f64 / (1 << 20) as f64,
    );
    println!(
        "first complete: {} at {:.2}s; last: {} ({}) at {last_secs:.2}s",
        done_at[0].0,
        done_at[0].1,
        last,
        topo.get(last).map_or("", |r| r.name.as_str()),
    );
    // Check what every receiver stored against the signed entries, byte for byte.
    for r in &receivers {
        let h = &net.nodes[r];
        for (_, rec) in h.record("register", None).await? {
            for e in &rec.entries {
                let mut hasher = blake3::Hasher::new();
                h.store.for_each_group(&e.content_hash, |_, d| {
                    hasher.update(d);
                    Ok(())
                })?;
                if hasher.finalize().as_bytes() != &e.content_hash {
                    bail!("{r} holds a partition of {} that does not verify", e.region);
                }
            }
        }
    }
    println!("every receiver's partitions verified against the manifest");
    if closed > 0 {
        bail!("{closed} connections closed during the run");
    }
    net.shutdown().await
}
