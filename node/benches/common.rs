//! Shared helpers for the bench binaries.

/// Whether this is a measuring run: `cargo bench` passes `--bench`, while `cargo test
/// --workspace` (which builds and runs the bench binaries too, so they stay compiled) does not,
/// and then the heavy run is skipped with a line saying so.
#[allow(dead_code)]
pub fn measuring() -> bool {
    let on = std::env::args().any(|a| a == "--bench");
    if !on {
        println!("benchmark skipped (run it with `cargo bench`)");
    }
    on
}

/// A numeric knob from the environment (`BACKFLOW_BENCH_*`), or its default.
#[allow(dead_code)]
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process (VmHWM), in bytes.
#[allow(dead_code)]
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Current resident set size (VmRSS), in bytes.
#[allow(dead_code)]
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak RSS counter (Linux ≥ 4.0: write 5 to clear_refs).
#[allow(dead_code)]
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time (user + system) this process has used so far, in seconds (from /proc/self/stat;
/// clock ticks are 1/100 s on Linux).
#[allow(dead_code)]
pub fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Writes a national return-flow CSV of at least `bytes_min` bytes: every one of the 41,352
/// townships appears (then townships at random), each record with a village code of its
/// township's real villages (the NBS 2023 list) and ~50 bytes of payload fields.
/// Returns the number of records.
#[allow(dead_code)]
pub fn write_national_csv(
    path: &std::path::Path,
    bytes_min: u64,
    seed: u64,
) -> anyhow::Result<u64> {
    use backflow_topology::{RegionCode, Topology};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let townships = Topology::china().townships_under(RegionCode::NATIONAL);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    writeln!(w, "id,village_code,name,amount,date,note")?;
    let mut written = 0u64;
    let mut records = 0u64;
    while written < bytes_min {
        let t = if records < townships.len() as u64 {
            townships[records as usize]
        } else {
            townships[rng.gen_range(0..townships.len())]
        };
        let line = format!(
            "{records},{},resident-{:08},{}.{:02},2025-{:02}-{:02},benefit payment record\n",
            {
                let v = backflow_topology::villages_of(t);
                v[rng.gen_range(0..v.len())]
            },
            rng.gen_range(0..100_000_000u32),
            rng.gen_range(0..100_000),
            rng.gen_range(0..100),
            rng.gen_range(1..=12),
            rng.gen_range(1..=28),
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        records += 1;
    }
    w.flush()?;
    Ok(records)
}
