//! `backflow demo`: a real local network on loopback, a real publish, a real check.
//!
//! Nodes (one per region, in-process, each with its own RocksDB and libp2p swarm):
//! national; 北京市 → 市辖区 → 东城区 → several 街道; 广东省 → 东莞市 → 东莞市(county) → several
//! 街道. A CSV with real village codes (township code + 3-digit village number) is generated,
//! including some bad lines, published at the national node, delivered down the tree, and
//! every township's stored records are checked against what was generated (count + blake3).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use backflow_topology::{Level, RegionCode, Topology};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::localnet::{LocalNet, Transport};
use crate::node::Tuning;
use crate::partition::Format;
use crate::publish::PublishRequest;

pub struct DemoOptions {
    /// Townships per county chain.
    pub townships_per_county: usize,
    /// Records per township (on average).
    pub records_per_township: usize,
    pub timeout: Duration,
    /// Keep the temp directory (for inspection).
    pub keep: Option<PathBuf>,
    pub seed: u64,
    /// The libp2p transport the nodes listen on.
    pub transport: Transport,
    /// After the checks, serve every node's HTTP API and operator console on loopback, print
    /// their addresses and tokens, and keep the network running until Ctrl-C.
    pub serve: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            townships_per_county: 4,
            records_per_township: 2_000,
            timeout: Duration::from_secs(120),
            keep: None,
            seed: 2025,
            transport: Transport::Tcp,
            serve: false,
        }
    }
}

/// The demo's regions: national plus two full chains down to townships.
pub fn demo_regions(townships_per_county: usize) -> Result<Vec<RegionCode>> {
    let topo = Topology::china();
    let mut regions = vec![RegionCode::NATIONAL];
    for county in ["110101", "441900"] {
        let county = topo.lookup(county)?.code;
        regions.extend(county.path().into_iter().skip(1));
        let townships = topo.children(county);
        if townships.len() < townships_per_county {
            bail!("county {county} has only {} townships", townships.len());
        }
        regions.extend_from_slice(&townships[..townships_per_county]);
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// What each township should receive: its lines in order.
struct Expected {
    records: u64,
    hasher: blake3::Hasher,
}

/// Writes the demo CSV; returns per-township expectations and the number of bad lines.
fn generate(
    path: &Path,
    townships: &[RegionCode],
    per_township: usize,
    seed: u64,
) -> Result<(BTreeMap<RegionCode, Expected>, u64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "record_id,village_code,household,benefit_yuan,note")?;
    let mut expected: BTreeMap<RegionCode, Expected> = townships
        .iter()
        .map(|t| {
            (
                *t,
                Expected {
                    records: 0,
                    hasher: blake3::Hasher::new(),
                },
            )
        })
        .collect();
    let total = per_township * townships.len();
    let mut bad = 0u64;
    for id in 0..total {
        // Every ~500th line is bad in one of the ways a real export goes wrong.
        if id % 500 == 499 {
            let line = match (id / 500) % 3 {
                0 => format!("{id},,H{id:07},{},missing code\n", rng.gen_range(100..5000)),
                1 => format!(
                    "{id},1101010X1001,H{id:07},{},malformed code\n",
                    rng.gen_range(100..5000)
                ),
                _ => format!(
                    "{id},110101999001,H{id:07},{},no such township\n",
                    rng.gen_range(100..5000)
                ),
            };
            w.write_all(line.as_bytes())?;
            bad += 1;
            continue;
        }
        let t = townships[rng.gen_range(0..townships.len())];
        // A real village of the township (the NBS 2023 list embedded in the topology).
        let villages = backflow_topology::villages_of(t);
        let village = villages[rng.gen_range(0..villages.len())];
        let note = if rng.gen_bool(0.1) {
            "\"quoted, with comma\""
        } else {
            "ok"
        };
        let line = format!(
            "{id},{village},H{id:07},{},{note}\n",
            rng.gen_range(100..5000)
        );
        w.write_all(line.as_bytes())?;
        let e = expected.get_mut(&t).expect("township in map");
        e.records += 1;
        e.hasher.update(line.as_bytes());
    }
    w.flush()?;
    Ok((expected, bad))
}

/// Runs the demo; `Ok(())` only if every township holds exactly its own records.
pub async fn run(opts: DemoOptions) -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let dir = match &opts.keep {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            p.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let topo = Topology::china();
    let regions = demo_regions(opts.townships_per_county)?;
    let townships: Vec<RegionCode> = regions
        .iter()
        .copied()
        .filter(|r| r.level() == Level::Township)
        .collect();
    println!(
        "Backflow demo — {} nodes on 127.0.0.1, data in {}",
        regions.len(),
        dir.display()
    );
    for r in &regions {
        let indent = "  ".repeat(r.level().depth() as usize);
        let name = topo.get(*r).map_or("", |x| x.name.as_str());
        println!("  {indent}{r:<9} {name} ({})", r.level().name());
    }

    let tuning = Tuning {
        // Loopback: retry fast so the demo finishes in seconds even if a message is lost.
        retry_ms: 500,
        source_silence_ms_max: 5_000,
        receipt_interval_ms: 200,
        ..Tuning::default()
    };
    let net = LocalNet::start_on(&regions, &dir, tuning, opts.transport).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    println!(
        "✓ {} nodes up; a fresh root certified the national key, and every child verified its \
         parent's certificate chain",
        regions.len()
    );

    let csv = dir.join("benefits.csv");
    let (expected, bad) = generate(&csv, &townships, opts.records_per_township, opts.seed)?;
    let size = std::fs::metadata(&csv)?.len();
    let routed: u64 = expected.values().map(|e| e.records).sum();
    println!(
        "✓ generated {} ({} records for {} townships, {bad} bad lines, {:.1} MB)",
        csv.display(),
        routed,
        townships.len(),
        size as f64 / 1e6
    );

    // Publish at the national node.
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    let req = PublishRequest {
        dataset: "demo-benefits".into(),
        region_field: "village_code".into(),
        format: Format::Csv,
        department: "ministry-of-civil-affairs".into(),
        work_dir: dir.join("spill"),
        rejects_path: Some(dir.join("rejects.tsv")),
    };
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template(
            "  partition [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
        )?
        .progress_chars("=> "),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let publishing = {
        let national = national.clone();
        let progress = Arc::clone(&progress);
        let csv = csv.clone();
        tokio::spawn(async move { national.publish_file(req, &csv, progress).await })
    };
    while !publishing.is_finished() {
        bar.set_position(progress.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (outcome, manifests) = publishing.await??;
    bar.finish_and_clear();
    let s = &outcome.summary;
    println!(
        "✓ partitioned {} lines: {} records routed into {} partitions, {} rejected",
        s.lines,
        s.records_routed,
        outcome.partitions,
        s.rejects.total()
    );
    for (reason, n) in &s.rejects.counts {
        let lines: Vec<String> = s
            .rejects
            .first_lines
            .iter()
            .filter(|(_, r)| r == reason)
            .take(5)
            .map(|(l, _)| l.to_string())
            .collect();
        println!(
            "    {n:>5} × {} (lines {} …)",
            reason.label(),
            lines.join(", ")
        );
    }
    if s.rejects.total() != bad || s.records_routed != routed {
        bail!(
            "partitioning disagrees with the generator: routed {} (expected {routed}), rejected {} (expected {bad})",
            s.records_routed,
            s.rejects.total()
        );
    }
    println!(
        "✓ signed manifest {} published at national; delivering…",
        hex::encode(&manifests[0][..8])
    );

    // Wait for every township's receipt to reach the publisher.
    let bar = ProgressBar::new(townships.len() as u64).with_style(
        ProgressStyle::with_template(
            "  delivery  [{bar:40}] {pos}/{len} townships confirmed {elapsed}",
        )?
        .progress_chars("=> "),
    );
    let deadline = Instant::now() + opts.timeout;
    let status = loop {
        let st = national.status(Some("demo-benefits".into())).await?;
        let s = st.into_iter().next().context("national lost the dataset")?;
        bar.set_position(s.regions_delivered);
        if s.complete {
            break s;
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!(
                "demo timed out after {:?}: {} of {} townships confirmed delivery",
                opts.timeout,
                s.regions_delivered,
                s.regions_expected
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    println!(
        "✓ publisher sees {}/{} townships complete: {} records, {} bytes",
        status.regions_delivered,
        status.regions_expected,
        status.records_delivered,
        status.bytes_delivered
    );

    // Per-region report and the real check: read every township's own store.
    println!();
    println!(
        "  {:<10} {:<14} {:<9} {:>10} {:>10} {:>9}  check",
        "region", "name", "level", "partitions", "records", "bytes"
    );
    let mut failures = Vec::new();
    for (r, h) in &net.nodes {
        let name = topo.get(*r).map_or("", |x| x.name.as_str());
        let st = h.status(Some("demo-benefits".into())).await?;
        let Some(s) = st.first() else {
            failures.push(format!("{r} {name}: does not hold the dataset"));
            continue;
        };
        let mut check = String::from("-");
        if r.level() == Level::Township {
            let records = h.record("demo-benefits", None).await?;
            let mut got_records = 0u64;
            let mut hasher = blake3::Hasher::new();
            for e in records.iter().flat_map(|(_, r)| r.entries.iter()) {
                if e.region != *r {
                    failures.push(format!(
                        "{r} {name}: holds a partition of another region {}",
                        e.region
                    ));
                    continue;
                }
                h.store.for_each_group(&e.content_hash, |_, data| {
                    got_records += memchr::memchr_iter(b'\n', data).count() as u64;
                    hasher.update(data);
                    Ok(())
                })?;
            }
            let want = &expected[r];
            if got_records == want.records && hasher.finalize() == want.hasher.finalize() {
                check = format!("✓ {} records, hash matches", want.records);
            } else {
                check = "✗ MISMATCH".into();
                failures.push(format!(
                    "{r} {name}: holds {got_records} records, expected {} (or hash differs)",
                    want.records
                ));
            }
        }
        println!(
            "  {:<10} {} {:<9} {:>10} {:>10} {:>9}  {check}",
            r.to_string(),
            crate::text_width::pad(name, 14),
            r.level().name(),
            s.partitions_here,
            s.records_here,
            s.bytes_here
        );
    }
    println!();
    println!("  national status by child region:");
    for c in &status.children {
        println!(
            "    {:<4} {:<10} {:<8} {}/{} regions, {} records, {} bytes",
            c.region,
            c.name,
            c.state,
            c.regions_delivered,
            c.regions_expected,
            c.records_delivered,
            c.bytes_delivered
        );
    }

    // Catalogs flow up: every node's department registers one entry; the national node ends
    // up holding the whole network's catalog.
    for (r, h) in &net.nodes {
        if *r == RegionCode::NATIONAL {
            continue;
        }
        let name = topo.get(*r).map_or("", |x| x.name.as_str());
        h.catalog_submit("civil-affairs".into(), vec![demo_catalog_entry(*r, name)])
            .await?;
    }
    let want = net.nodes.len() - 1;
    let deadline = Instant::now() + opts.timeout;
    let national = &net.nodes[&RegionCode::NATIONAL];
    loop {
        let got = national
            .catalogs(None, None, crate::catalog_store::LIST_DEPARTMENTS_MAX)
            .await?
            .len();
        if got >= want {
            println!(
                "✓ catalog sync: national holds the catalogs of all {want} jurisdictions below it"
            );
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "catalog sync: national holds {got} of {want} catalogs"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The unified catalog is searchable from anywhere (Art. 16): a township asks, and
    // national — the only node holding all of it — answers over the overlay.
    if let Some((town, h)) = net
        .nodes
        .iter()
        .find(|(r, _)| r.level() == backflow_topology::Level::Township)
    {
        let query = backflow_protocol::catalog_search::SearchQuery {
            text: "低保对象名册".into(),
            limit: 5,
            ..Default::default()
        };
        let mut found = None;
        while Instant::now() < deadline {
            match h.catalog_search(query.clone()).await {
                Ok(v) if v.total as usize >= want => {
                    found = Some(v);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        match found {
            Some(v) => println!(
                "✓ catalog search: township {town} finds all {} benefit registers (低保对象名册), answered by {}",
                v.total,
                if v.answered_by == "0" { "national".to_string() } else { v.answered_by }
            ),
            None => failures.push(format!(
                "catalog search: township {town} did not find all {want} registers"
            )),
        }
    }
    if opts.serve && failures.is_empty() {
        serve_until_ctrl_c(&net).await?;
    }
    net.shutdown().await?;
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("✗ {f}");
        }
        bail!(
            "{} township(s) do not hold exactly their own records",
            failures.len()
        );
    }
    println!();
    println!(
        "✓ every township holds exactly its own records (count and blake3) — {:.1}s total",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--serve`: every node's console on a free loopback port, its address and token printed,
/// until Ctrl-C.
async fn serve_until_ctrl_c(net: &LocalNet) -> Result<()> {
    let topo = Topology::china();
    let served = net.serve_http().await?;
    println!();
    println!("Operator console (运维控制台) of every node — open one and log in with its token:");
    println!();
    for (r, http) in &served {
        let name = topo.get(*r).map_or("", |x| x.name.as_str());
        println!(
            "  {:<9} {} {:<26} token {}",
            r.to_string(),
            crate::text_width::pad(name, 14),
            http.url(),
            http.token.expose()
        );
    }
    println!();
    println!(
        "  (each token is also in its node's {}; national's return-flow page shows the \
         delivery, a county's shows its townships)",
        served.values().next().map_or_else(String::new, |h| h
            .data_dir
            .join(backflow_api::token::TOKEN_FILE)
            .display()
            .to_string())
    );
    println!("Serving; press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping…");
    for http in served.into_values() {
        http.stop().await?;
    }
    Ok(())
}

/// A complete Art. 13 catalog entry for a jurisdiction's benefit register.
pub fn demo_catalog_entry(
    region: RegionCode,
    name: &str,
) -> backflow_protocol::catalog::CatalogEntry {
    use backflow_protocol::catalog::*;
    CatalogEntry {
        id: format!("benefit-register-{region}"),
        name: format!("{name} 低保对象名册 (minimum-living-allowance register)"),
        data_items: vec![
            DataItem {
                name: "household".into(),
                data_type: DataType::Text,
                description: "household identifier".into(),
            },
            DataItem {
                name: "village_code".into(),
                data_type: DataType::RegionCode,
                description: "12-digit village code (统计用区划代码)".into(),
            },
        ],
        provider: "civil-affairs".into(),
        format: DataFormat::Csv,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Conditional {
            scope: vec!["civil affairs departments".into()],
            permitted_uses: vec!["benefit eligibility checks".into()],
        },
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: "use only for eligibility checks; no onward disclosure".into(),
        classification: "social assistance".into(),
        grade: DataGrade::Important,
    }
}
