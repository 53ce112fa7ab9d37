//! Helpers the node's network tests share: region codes, fast tuning, waiting for a
//! condition, and checking stored content against its signed hashes.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_node::node::{NodeHandle, Tuning};
use backflow_topology::RegionCode;

pub fn fast() -> Tuning {
    Tuning {
        retry_ms: 300,
        source_silence_ms_max: 3_000,
        receipt_interval_ms: 100,
        ..Tuning::default()
    }
}

pub fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let t = Instant::now();
    while !f().await? {
        if t.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every partition of the held `dataset` under `node`'s region is stored whole and hashes to
/// its signed content hash.
pub async fn holds_verified(node: &NodeHandle, dataset: &str) -> Result<()> {
    for (_, record) in node.record(dataset, None).await? {
        for e in record
            .entries
            .iter()
            .filter(|e| node.region().contains(e.region))
        {
            let mut hasher = blake3::Hasher::new();
            node.store.for_each_group(&e.content_hash, |_, d| {
                hasher.update(d);
                Ok(())
            })?;
            assert_eq!(
                hasher.finalize().as_bytes(),
                &e.content_hash,
                "{} holds {} whole",
                node.region(),
                e.region
            );
        }
    }
    Ok(())
}

/// The official calendar, plus — for a year whose notice the build does not know (this test
/// runs on the real clock, possibly after the last embedded year) — a test year of weekends
/// only. The deadlines' arithmetic is checked against the real notices in the protocol's
/// tests; here what matters is that both nodes compute the same.
pub fn calendar() -> backflow_protocol::calendar::WorkingCalendar {
    let mut c = backflow_protocol::calendar::WorkingCalendar::official();
    let this_year = backflow_protocol::calendar::beijing_date(backflow_node::node::now_ms())
        .expect("a date")
        .year();
    for year in this_year..=this_year + 1 {
        if !c.years().any(|y| y == year) {
            c.add_file(&format!("[{year}]\noff = []\nwork = []\n"))
                .expect("a test year");
        }
    }
    c
}
