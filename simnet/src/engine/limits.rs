//! The hard limits of one run, and why a run ended.

use crate::time::{Micros, MICROS_PER_S};

/// Hard limits of one run (TIGER_STYLE: a limit on everything).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events processed before the run is stopped as runaway.
    pub events_max: u64,
    /// Events queued at once; a run that needs more is misconfigured (e.g. zero latency storm).
    pub queue_max: usize,
    /// Simulated time after which the run stops.
    pub horizon_us: Micros,
    /// Messages one handler call may emit (a node's fan-out plus a window of frames).
    pub outputs_per_call_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The country with one dataset is ~1 M events; 50 M leaves room for loss, faults and
            // churn, and stops a runaway within minutes rather than hours.
            events_max: 50_000_000,
            queue_max: 50_000_000,
            horizon_us: 7 * 24 * 3_600 * MICROS_PER_S,
            outputs_per_call_max: 100_000,
        }
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No event left: the system is quiescent.
    Quiescent,
    HorizonReached,
    EventCapReached,
    QueueCapReached,
    OutputCapReached,
}
