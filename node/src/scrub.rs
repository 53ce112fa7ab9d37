//! Scrubbing: stored content is read back and checked against its signed hash in the
//! background, a bounded amount per round, so damage at rest (bit rot, a torn write the device
//! acknowledged) is found even where nobody serves or exports it — and repaired the same way
//! (`Damaged` → dropped from the index → fetched again from the source). Content is also
//! checked wherever it is read anyway (serving, export); this covers the rest, as ZFS's and
//! Ceph's scrubs do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use backflow_protocol::manifest::{Hash, PartitionEntry};
use serde::Serialize;

use crate::chunks::Damaged;
use crate::store::Store;

/// A background round starts at most this often.
pub const SCRUB_INTERVAL_MS: u64 = 60_000;
/// Content bytes checked per background round: 64 MiB a minute re-reads 90 GB a day, a small
/// share of a disk's bandwidth (a full pass over a province's few GB takes about an hour).
pub const SCRUB_BYTES_PER_ROUND_MAX: u64 = 64 * 1024 * 1024;

/// What one scrub checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubReport {
    pub partitions: u64,
    pub bytes: u64,
    /// Partitions whose stored content did not verify (dropped and fetched again).
    pub damaged: Vec<String>,
}

/// Where the background scrub is: the last partition content it checked, and whether a round
/// is running (one at a time).
#[derive(Default)]
pub struct ScrubState {
    pub after: Option<Hash>,
    pub running: Arc<AtomicBool>,
    pub last_round_ms: u64,
}

/// Checks each entry's stored content against its hash. A partition not stored whole (still
/// arriving, or being deleted while it was read) is skipped: only what the index says is
/// complete can be judged.
pub fn check(store: &Store, entries: &[PartitionEntry]) -> Result<(ScrubReport, Vec<Damaged>)> {
    let mut report = ScrubReport::default();
    let mut damaged = Vec::new();
    for e in entries {
        let whole = |store: &Store| -> Result<bool> {
            Ok(store.stored_groups(&e.content_hash)?.len() as u64 == e.groups())
        };
        if !whole(store)? {
            continue;
        }
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        store.for_each_group(&e.content_hash, |_, data| {
            hasher.update(data);
            bytes += data.len() as u64;
            Ok(())
        })?;
        report.partitions += 1;
        report.bytes += bytes;
        let verifies = bytes == e.bytes && hasher.finalize().as_bytes() == &e.content_hash;
        // Still whole after reading: the mismatch is the content's, not a concurrent delete's.
        if !verifies && whole(store)? {
            report.damaged.push(e.region.to_string());
            damaged.push(Damaged::whole(e));
        }
    }
    Ok((report, damaged))
}

/// Clears `running` when a round ends, whatever the way out.
pub struct RoundGuard(pub Arc<AtomicBool>);

impl Drop for RoundGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
