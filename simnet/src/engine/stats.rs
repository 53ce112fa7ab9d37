//! What the engine measures during a run; the report is computed from it.

use crate::time::Micros;

use super::limits::StopReason;

/// Per message kind counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KindStats {
    pub sent: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub lost: u64,
    pub refused: u64,
}

/// The control plane as the node's shell would see it (see [`crate::shell`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ControlStats {
    /// Most control requests in flight at once on one direction of one connection.
    pub streams_max_per_direction: u64,
    /// Most control requests in flight at once on one connection, both directions.
    pub streams_max_per_connection: u64,
    /// Connections closed because their streams would have exceeded the muxer's limit.
    pub connection_resets: u64,
    /// The first few resets: where and when.
    pub reset_examples: Vec<String>,
    /// Messages (any plane) lost because their connection was closed under them (stream
    /// limit or a crashed end).
    pub frames_lost_to_closed_connections: u64,
    /// Control frames that waited in an outbox for a free slot.
    pub frames_queued: u64,
    /// Most control frames waiting for one peer at once.
    pub queued_max: u64,
    /// Longest wait of a control frame in an outbox.
    pub queue_wait_max_us: Micros,
    /// Queued control frames dropped (the oldest, when a peer's queue was full).
    pub outbox_dropped: u64,
}

/// Everything measured during a run; the report is computed from this.
#[derive(Clone, Debug)]
pub struct Stats {
    pub events: u64,
    pub stop: StopReason,
    pub end_us: Micros,
    /// Per node (topology index): when it first reported `DataComplete`.
    pub complete_at: Vec<Option<Micros>>,
    pub stored_now: Vec<u64>,
    pub stored_peak: Vec<u64>,
    pub receipts_complete_at: Option<Micros>,
    /// (changes held, when) at the national node, in order.
    pub catalog_at_national: Vec<(u64, Micros)>,
    /// Bytes sent per (from level, to level).
    pub link_bytes: [[u64; 5]; 5],
    pub link_messages: [[u64; 5]; 5],
    pub kinds: std::collections::BTreeMap<&'static str, KindStats>,
    /// Partition content delivered outside the receiver's region (must stay zero).
    pub leak_count: u64,
    pub leak_examples: Vec<String>,
    pub peak_queue: usize,
    /// Counted [`Observation::Note`](super::Observation::Note)s.
    pub notes: std::collections::BTreeMap<&'static str, u64>,
    /// The publisher's latest view: (when, partitions delivered, partitions expected).
    pub publisher_view: Option<(Micros, u64, u64)>,
    pub control: ControlStats,
    /// Per node: CPU time used, µs.
    pub cpu_busy_us: Vec<u64>,
    /// Provinces that have reported `DataComplete`.
    pub provinces_complete: usize,
    /// Per node: CPU time used when the last province first held its whole subtree (empty
    /// until then). The node's `national` bench measures national and the 31 provinces over
    /// exactly this window, so this is what to calibrate the costs against.
    pub cpu_at_all_provinces_us: Vec<u64>,
}

pub(super) const LEAK_EXAMPLES_MAX: usize = 16;
pub(super) const RESET_EXAMPLES_MAX: usize = 8;
