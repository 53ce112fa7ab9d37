//! Simulated time: the one unit every other file counts in. The bottom of the crate.

/// Simulated time in microseconds since the start of the run. Microseconds, not milliseconds,
/// so a 16 KiB frame on a 10 Gbit/s link still takes a non-zero time.
pub type Micros = u64;

pub const MICROS_PER_MS: Micros = 1_000;
pub const MICROS_PER_S: Micros = 1_000_000;
