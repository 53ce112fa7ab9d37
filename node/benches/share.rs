//! Share requests between real nodes on loopback (issue 17's figures): a 北京 county's
//! department (东城区, 110101) and a 广东 township's (441900003), with every node of the tree
//! path between them (through national).
//!
//! 1. Requests per second: the county's department files `BACKFLOW_BENCH_REQUESTS` (default
//!    2,000) requests through the node's API path (each returns once persisted); the clock runs
//!    until the township's node has received every one (each act signed, verified at every
//!    hop, persisted before it is acknowledged).
//! 2. A granted dataset's delivery by batch exchange: `BACKFLOW_BENCH_MB` (default 1024) MiB of
//!    CSV, staged at the provider (stored, hashed, synced: timed apart), then fetched by the
//!    requester's node over a direct connection and verified; the clock runs from the start
//!    of the delivery until the requester's node has recorded it delivered. Compare with the
//!    `transfer` bench (one 1 GiB partition between two nodes in line), run interleaved.
//!
//! Run: `cargo bench -p backflow-node --bench share`

#[path = "common.rs"]
mod common;
#[path = "share_fixture.rs"]
mod share_fixture;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_api::ShareActParams;
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::node::now_ms;
use backflow_node::node::Tuning;
use backflow_node::partition::Format;
use backflow_protocol::calendar::{beijing_date, WorkingCalendar};
use backflow_topology::RegionCode;
use share_fixture::{entry, filing, PROVIDER, REQUESTER};

fn main() -> Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let requests: usize = common::env_or("BACKFLOW_BENCH_REQUESTS", 2_000);
    let mib: u64 = common::env_or("BACKFLOW_BENCH_MB", 1024);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(requests, mib))
}

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("a region code")
}

/// The official calendar, plus a stand-in year (no holidays, no make-up days) for this year and
/// the next where the official one has none: a grant late in a year has its delivery due in the
/// next, which the calendar must know (or the grant is refused, naming the year).
fn calendar() -> WorkingCalendar {
    let mut c = WorkingCalendar::official();
    let this_year = beijing_date(now_ms()).expect("a date").year();
    for year in this_year..=this_year + 1 {
        if !c.years().any(|y| y == year) {
            println!("calendar: a stand-in {year} without holidays (no official notice embedded)");
            c.add_file(&format!("[{year}]\noff = []\nwork = []\n"))
                .expect("a stand-in year");
        }
    }
    c
}

async fn run(requests: usize, mib: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let regions: Vec<RegionCode> = [
        "0", "11", "1101", REQUESTER, "44", "4419", "441900", PROVIDER,
    ]
    .iter()
    .map(|s| code(s))
    .collect();
    let mut net = LocalNet::start_with(
        &regions,
        dir.path(),
        Tuning::default(),
        Transport::Tcp,
        calendar(),
    )
    .await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    net.add_department(code(REQUESTER), "民政局").await?;
    net.add_department(code(PROVIDER), "镇人社分局").await?;
    let requester = net.nodes[&code(REQUESTER)].clone();
    let provider = net.nodes[&code(PROVIDER)].clone();
    provider
        .catalog_submit("镇人社分局".into(), vec![entry()])
        .await?;

    // 1. Requests per second, across the country.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(requests);
    for n in 0..requests {
        let scenario = format!("最低生活保障资格核查 第 {n} 批");
        ids.push(
            requester
                .share_file("民政局".into(), filing(&scenario))
                .await?
                .id,
        );
    }
    let filed = t.elapsed().as_secs_f64();
    loop {
        let received = provider
            .shares(false)
            .await?
            .iter()
            .filter(|v| v.state == "under_review")
            .count();
        if received == requests {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("{received} of {requests} requests received within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = t.elapsed().as_secs_f64();
    println!(
        "requests: {requests} filed in {filed:.2} s ({:.0}/s, each persisted before it returns); \
         all received by the provider 7 hops away in {received:.2} s ({:.0}/s)",
        requests as f64 / filed,
        requests as f64 / received
    );

    // 2. One granted dataset delivered by batch exchange.
    let id = ids[0].clone();
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
    while requester.share(id.clone()).await?.state != "granted" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let csv = dir.path().join("granted.csv");
    let mut bytes = 0u64;
    {
        let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(&csv)?);
        let header = "公民身份号码,参保状态,备注\n";
        w.write_all(header.as_bytes())?;
        let payload = "x".repeat(200);
        let mut i = 0u64;
        while bytes < mib << 20 {
            let line = format!("1101011990{i:08},参保,{payload}\n");
            w.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
            i += 1;
        }
        w.flush()?;
    }
    let t = Instant::now();
    let started = provider
        .deliver_share(
            "镇人社分局".into(),
            id.clone(),
            Format::Csv,
            None,
            dir.path().join("spill"),
            Box::new(std::fs::File::open(&csv)?),
        )
        .await?;
    let staged = t.elapsed().as_secs_f64();
    std::fs::remove_file(&csv)?;
    let dataset = started.delivery.expect("a delivery").dataset;
    let t = Instant::now();
    loop {
        if requester.share(id.clone()).await?.state == "delivered" {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("delivery did not complete within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    // What the requester holds, byte for byte against the signed entry.
    let record = requester.record(&dataset, None).await?.remove(0).1;
    let e = record.entries[0];
    let mut hasher = blake3::Hasher::new();
    let mut stored = 0u64;
    requester.store.for_each_group(&e.content_hash, |_, d| {
        hasher.update(d);
        stored += d.len() as u64;
        Ok(())
    })?;
    if stored != e.bytes || hasher.finalize().as_bytes() != &e.content_hash {
        bail!("the requester's copy does not match the signed entry");
    }
    println!(
        "delivery: {:.0} MiB staged at the provider in {staged:.2} s ({:.0} MB/s); fetched and \
         verified by the requester in {secs:.2} s: {:.0} MB/s",
        stored as f64 / (1 << 20) as f64,
        stored as f64 / 1e6 / staged,
        stored as f64 / 1e6 / secs
    );
    drop((requester, provider));
    net.shutdown().await
}
