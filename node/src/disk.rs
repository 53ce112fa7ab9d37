//! The data directory's disk, for the health view (`/api/health`, the console's overview, the
//! metrics): a node that cannot store what it receives cannot sign receipts for it, so an
//! operator must see a filling disk before it is full.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Below this share of the disk free, the disk is *low*.
pub const LOW_FREE_PERCENT: u64 = 10;
/// Below this many bytes free, the disk is *low* whatever its size: a national dataset's
/// version is ~0.5 GB, and RocksDB compactions need room of their own.
pub const LOW_FREE_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The file system holding a directory.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// Available to the node (not counting blocks reserved for root).
    pub free_bytes: u64,
    /// Under [`LOW_FREE_PERCENT`] or [`LOW_FREE_BYTES`] free.
    pub low: bool,
}

impl DiskUsage {
    pub fn new(total_bytes: u64, free_bytes: u64) -> DiskUsage {
        let free_bytes = free_bytes.min(total_bytes);
        let low = free_bytes < LOW_FREE_BYTES
            || u128::from(free_bytes) * 100
                < u128::from(total_bytes) * u128::from(LOW_FREE_PERCENT);
        DiskUsage {
            total_bytes,
            free_bytes,
            low,
        }
    }
}

/// The usage of the file system holding `dir` (statvfs(3)). The error names the directory,
/// never anything read from it.
pub fn usage(dir: &Path) -> Result<DiskUsage> {
    let stat = rustix::fs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    let block = stat.f_frsize.max(1);
    let total = stat.f_blocks.saturating_mul(block);
    let free = stat.f_bavail.saturating_mul(block);
    Ok(DiskUsage::new(total, free))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_under_ten_percent_or_five_gib() {
        const GIB: u64 = 1024 * 1024 * 1024;
        assert!(!DiskUsage::new(100 * GIB, 20 * GIB).low);
        assert!(DiskUsage::new(100 * GIB, 9 * GIB).low, "9 %");
        assert!(DiskUsage::new(20 * GIB, 4 * GIB).low, "4 GiB free of 20");
        assert!(!DiskUsage::new(20 * GIB, 6 * GIB).low);
        // Free never exceeds the total (a file system may say so mid-resize).
        assert_eq!(DiskUsage::new(GIB, 2 * GIB).free_bytes, GIB);
    }

    #[test]
    fn usage_of_a_real_directory_and_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let u = usage(dir.path()).unwrap();
        assert!(u.total_bytes > 0 && u.free_bytes <= u.total_bytes, "{u:?}");
        let missing = dir.path().join("nope");
        let e = usage(&missing).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
