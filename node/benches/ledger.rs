//! The compliance ledger (合规台账, Art. 29) in a node's RocksDB (issue 19): how fast entries
//! are appended — one write per act, as `persist` appends them beside each act, and in
//! batches, as a burst of receipts or a bulk import would — with the seals the node's beat
//! makes (`ledger_seal`, here every 100,000 entries), and how fast a log of a million entries
//! verifies (`ledger_verify::verify`: every entry read, decoded, rehashed and checked against
//! its stored tree nodes, its seal and the signed head). Prints figures; `cargo test --workspace` only
//! builds it.
//!
//! `cargo bench -p backflow-node --bench ledger`, or `BACKFLOW_BENCH_ENTRIES=100000`.

use std::collections::HashMap;
use std::time::Instant;

use backflow_node::ledger::{Ledger, Record};
use backflow_node::ledger_seal::{seal, SealKeys};
use backflow_node::ledger_verify::verify;
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
    // Entries are sealed (`ledger_seal`) every 100,000 entries, as the node's one-second beat
    // would at this rate; the time includes it, and what sealing alone took is printed.
    let mut sealing = std::time::Duration::ZERO;
    let mut seal_if_due = |ledger: &mut Ledger| -> anyhow::Result<()> {
        if ledger.size() - ledger.sealed_to() >= 100_000 {
            let t = Instant::now();
            seal(&store, ledger, &identity, &HashMap::new())?;
            sealing += t.elapsed();
        }
        Ok(())
    };
    let t = Instant::now();
    for i in 0..single {
        ledger.append(&store, store.batch(), [record(i)])?;
        seal_if_due(&mut ledger)?;
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
        seal_if_due(&mut ledger)?;
        i = end;
    }
    let s = t.elapsed().as_secs_f64();
    let batched = entries.saturating_sub(single);
    println!(
        "append, 1,000 entries per write: {batched} entries in {s:.2} s = {:.0} entries/s",
        batched as f64 / s
    );
    let t = Instant::now();
    seal(&store, &mut ledger, &identity, &HashMap::new())?;
    sealing += t.elapsed();
    println!(
        "of which sealing (one signature per signer and 100,000 entries): {:.2} s in all",
        sealing.as_secs_f64()
    );
    ledger.sign_if_grown(&store, &identity, 1)?;
    store.sync_wal()?;

    let t = Instant::now();
    let keys = SealKeys::node_only(identity.key.verifying_key());
    let verified = verify(&store, region, &keys)?
        .map_err(|d| anyhow::anyhow!("the bench's own log does not verify: {d}"))?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "verify: {} entries ({} under their seals) in {s:.2} s = {:.0} entries/s; peak RSS {} MiB",
        verified.entries,
        verified.sealed,
        verified.entries as f64 / s,
        common::peak_rss_bytes() >> 20
    );
    Ok(())
}
