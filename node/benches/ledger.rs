//! The compliance ledger (合规台账, Art. 29) in a node's RocksDB (issue 19): how fast entries
//! are appended — one write per act, as `persist` appends them beside each act, and in
//! batches, as a burst of receipts or a bulk import would — and how fast a log of a million
//! entries verifies (`ledger::verify`: every entry read, decoded, rehashed and checked against
//! its stored tree nodes and the signed head). Prints figures; `cargo test --workspace` only
//! builds it.
//!
//! `cargo bench -p backflow-node --bench ledger`, or `BACKFLOW_BENCH_ENTRIES=100000`.

use std::time::Instant;

use backflow_node::ledger::{verify, Ledger, Record};
use backflow_node::store::Store;
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::ledger::entry::EntryKind;
use backflow_topology::RegionCode;

#[path = "common.rs"]
mod common;

/// A receipt-like entry (the commonest kind at a national node), ~200 bytes encoded.
fn record(i: u64) -> Record {
    Record {
        time_ms: 1_767_225_600_000 + i,
        department: None,
        kind: EntryKind::Receipt,
        subject: format!("{:064x}", i * 7_919),
        detail: format!(
            "4419000{:02}: 1/1 regions delivered, 242 records, 12,288 bytes (seq {i})",
            i % 100
        ),
    }
}

fn main() -> anyhow::Result<()> {
    if !common::measuring() {
        return Ok(());
    }
    let entries: u64 = common::env_or("BACKFLOW_BENCH_ENTRIES", 1_000_000);
    let single: u64 = common::env_or("BACKFLOW_BENCH_SINGLE", 100_000);
    let region = RegionCode::NATIONAL;
    let identity = NodeIdentity::national(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let mut ledger = Ledger::open(&store, region)?;

    // One act, one write (the WAL is not synced per write: the node syncs it once before it
    // acknowledges anything, for every write since the last sync).
    let t = Instant::now();
    for i in 0..single {
        ledger.append(&store, store.batch(), [record(i)])?;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "append, one entry per write: {single} entries in {s:.2} s = {:.0} entries/s",
        single as f64 / s
    );

    // Batches of 1,000.
    let t = Instant::now();
    let mut i = single;
    while i < entries {
        let end = (i + 1_000).min(entries);
        ledger.append(&store, store.batch(), (i..end).map(record))?;
        i = end;
    }
    let s = t.elapsed().as_secs_f64();
    let batched = entries.saturating_sub(single);
    println!(
        "append, 1,000 entries per write: {batched} entries in {s:.2} s = {:.0} entries/s",
        batched as f64 / s
    );
    ledger.sign_if_grown(&store, &identity, 1)?;
    store.sync_wal()?;

    let t = Instant::now();
    let verified = verify(&store, region, &identity.key.verifying_key())?
        .map_err(|d| anyhow::anyhow!("the bench's own log does not verify: {d}"))?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "verify: {} entries in {s:.2} s = {:.0} entries/s; peak RSS {} MiB",
        verified.entries,
        verified.entries as f64 / s,
        common::peak_rss_bytes() >> 20
    );
    Ok(())
}
