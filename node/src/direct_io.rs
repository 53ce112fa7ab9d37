//! Writing past the page cache (`O_DIRECT`): the flag, and whether a directory's file system
//! accepts it (tmpfs, for one, does not).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `O_DIRECT` for `open(2)` (not taken from the libc crate: adding a dependency here would
/// change the feature set the RocksDB build is keyed on, and with it a 20-minute rebuild).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) const O_DIRECT: Option<i32> = Some(0o40000);
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(crate) const O_DIRECT: Option<i32> = Some(0o200000);
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub(crate) const O_DIRECT: Option<i32> = None;

/// Whether files in `dir` can be opened with `O_DIRECT` (a probe file is created and removed).
pub(crate) fn supported(dir: &Path) -> bool {
    O_DIRECT.is_some_and(|flag| {
        let probe = dir.join(".direct-probe");
        let ok = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(flag)
            .open(&probe)
            .is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    })
}
