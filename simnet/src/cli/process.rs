//! This process's memory and CPU as Linux shows them in /proc (None elsewhere): RSS and
//! its peak, CPU seconds, and resident memory per mapping.

/// This process's memory mappings (Linux, /proc/self/smaps): start address → resident KiB.
/// None elsewhere.
pub fn mappings() -> Option<std::collections::BTreeMap<u64, u64>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut map = std::collections::BTreeMap::new();
    let mut start = None;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            let kib = rss.split_whitespace().next()?.parse().ok()?;
            map.insert(start.take()?, kib);
        } else if let Some((range, _)) = line.split_once(' ') {
            // A mapping's first line: `start-end perms offset dev inode [path]`.
            if let Some((from, _)) = range.split_once('-') {
                if let Ok(from) = u64::from_str_radix(from, 16) {
                    start = Some(from);
                }
            }
        }
    }
    (!map.is_empty()).then_some(map)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A line of /proc/self/status in KiB (Linux); None elsewhere.
pub fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of this process (Linux); None elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size from /proc (Linux); None elsewhere.
pub fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} MiB", kb as f64 / 1024.0))
}
