//! What simnet models of the node's IO shell beyond links: the control plane's per-peer bound
//! (the protocol's own [`backflow_protocol::outbox::Outbox`], driven as the node drives it),
//! the muxer's stream limit per connection, and the CPU each message costs at both ends.
//!
//! Why: a simulator without these once predicted "every township complete in 1.35 s" for a
//! national dataset of 41,352 small partitions while the real node, sending one control
//! request (one yamux stream) per partition, tore its connections down (`TooManyStreams`)
//! every few seconds. Stream limits and per-message costs are what separate that shape from
//! one big partition; simnet must pay them as the node does.
//!
//! # CPU model
//! Each node has `cores` CPU clocks (busy-until times). Two kinds of work use them:
//! - the **event loop** (one at a time, like the node's single event-loop task): every
//!   control message handled or sent, every timer, the state-machine step of each chunk frame;
//!   a handler starts when the loop and a core are free and its outputs leave when its work,
//!   including encoding them, is done;
//! - the **pool** (any free core, like the node's blocking pool): a chunk frame's payload read,
//!   validated and encoded at the sender, verified and written at the receiver.
//!
//! So a busy node answers late, and a message's processing delays the next. Work is reserved
//! first come, first served in simulated time; the node's finer scheduling (preemption,
//! page-cache writeback, tokio's work stealing) is not modelled.
//!
//! # Calibration
//! Every figure below says where it comes from; the `costs` example
//! (`cargo run --release -p backflow-simnet --example costs`) re-measures the protocol-side
//! ones on any machine. The transport's own share (libp2p request-response, yamux, TLS,
//! syscalls) is not measurable without the node; it is taken from the node's transfer bench
//! or estimated, and is what a real-node bench should calibrate. All are fields of [`Costs`],
//! so a run can use other values without rebuilding.

use serde::Serialize;

/// The node's per-connection stream limit (inbound + outbound, yamux and QUIC alike):
/// `STREAMS_PER_CONNECTION_MAX` in node/src/net.rs, mirrored here because simnet does not
/// depend on the node. A connection that would exceed it is closed by the muxer
/// (`TooManyStreams`), with every stream and frame on it.
pub const STREAMS_PER_CONNECTION_MAX: usize = 256;

/// Streams a connection holds besides control requests: a data-plane chunk stream each way
/// (node/src/dataplane.rs `write_chunks` keeps one open per peer), identify and ping.
pub const NON_CONTROL_STREAMS_PER_CONNECTION: usize = 4;

// With the outbox, a connection carries at most its bound in each direction plus the other
// streams: under the limit, so the node never resets a connection of its own making.
const _: () = assert!(
    2 * backflow_protocol::outbox::CONTROL_REQUESTS_IN_FLIGHT_MAX
        + NON_CONTROL_STREAMS_PER_CONNECTION
        <= STREAMS_PER_CONNECTION_MAX
);

/// Cores of a node's machine (the 2-core machines the node is benchmarked on).
pub const NODE_CORES: u32 = 2;
/// Most cores a simulated node may have (bounds per-node state).
pub const NODE_CORES_MAX: u32 = 8;

/// Event-loop CPU per control message at each end: at the sender, encoding the frame and
/// opening its request stream; at the receiver, accepting the stream, decoding, answering
/// and the state machine's step. Measured (`costs` example, this machine): the return-flow
/// state machine handles a want of up to 1,024 partitions in 26–30 µs, a small frame encodes and
/// decodes in 1–3 µs. The transport's share (yamux stream, multistream-select, request-response
/// task, TLS record, syscalls) is estimated at ~15 µs per end: 40 µs in all, to calibrate.
pub const CONTROL_MESSAGE_CPU_US: u64 = 40;
/// Receiver's CPU per byte of a control frame (decoding): an announce of 1,757 entries
/// (129 KB) encodes and decodes in 445–475 µs, ~1.8 ns/byte each way (`costs` example). The
/// entries' Merkle verification is charged per partition instead
/// ([`TRANSFER_INSTALL_CPU_NS_PER_PARTITION`]).
pub const CONTROL_CPU_PS_PER_BYTE: u64 = 2_000;
/// One ed25519 verification (receipts, manifests, catalog versions): 34 µs measured
/// (`costs` example, ed25519-dalek, this machine).
pub const SIGNATURE_VERIFY_CPU_US: u64 = 34;
/// One ed25519 signature (a node signs each receipt it sends): 15 µs measured.
pub const SIGNATURE_SIGN_CPU_US: u64 = 15;
/// Event-loop CPU per chunk frame at each end: handing it to and from the pool, the frame
/// head, the state machine (`handle_groups_stored` of a 64-partition frame: 23–24 µs measured),
/// the storage batch's submission.
pub const CHUNK_FRAME_CPU_US: u64 = 25;
/// CPU per partition run in a chunk frame at each end, on top of its bytes: everything the
/// real node spends on a national dataset of many small partitions beyond what the same
/// bytes cost as one partition. Calibrated against the node's benches, not the protocol's
/// own code (which is ~1 µs a run: the `costs` example verifies 64 runs of 12.5 KB in 204 µs
/// and one run of 1 MiB in 174 µs). The `national` bench (41,352 partitions to the 31
/// provinces) spends 2.0–2.7× the CPU of the `transfer` bench at the same bytes as one
/// partition (3.8–3.9 against 1.9 CPU-s on the session-28 machine, 2.9–3.2 against 1.2 on
/// session 27's); `perf` puts the difference in the transport (1.4× the single partition's,
/// 31 connections at once), serving (2.2×: a storage lookup, a read and a hash per
/// partition), receiving (1.75×), fresh frame buffers and the endpoint's per-partition
/// steps. With 2 µs a run simnet spent 1.6× for the same comparison (`simnet run --bytes
/// 518MB --records 6100000 --spread even` with every city down until the provinces are
/// complete: national and provinces 1.71 CPU-s until all provinces hold their subtrees,
/// against 1.07 for the bytes alone); 10 µs brings it to ~2.2×, inside the measured span.
pub const CHUNK_PART_CPU_US: u64 = 10;
/// Pool CPU per payload byte at each end: reading or writing, hashing (the sender validates
/// what it serves, the receiver verifies), copying through yamux, TLS and the kernel. From the
/// node's transfer bench (node/README.md, session-5 machine): 1 GiB national → province on
/// loopback costs 2.0–2.2 CPU-s for both nodes, ~1.0 ns/byte per end. (blake3 alone is
/// 0.15–0.20 ns/byte here; the protocol's own encode and verify 0.2–0.9 ns/byte: `costs`
/// example.)
pub const CHUNK_CPU_PS_PER_BYTE: u64 = 1_000;
/// Event-loop CPU per partition when a node installs a transfer (publish, or an accepted
/// announce): building and checking the region Merkle tree over the entries and persisting
/// the record. Measured: publishing 41,352 partitions takes 136 ms in the state machine
/// (3.1–3.3 µs each); a province verifies and installs an announce of 1,757 entries in
/// 3.6–3.7 ms (2.1 µs each). 3 µs, plus the record's write.
pub const TRANSFER_INSTALL_CPU_NS_PER_PARTITION: u64 = 3_000;
/// Event-loop CPU per partition of the receiver's transfer for each receipt it takes (the
/// aggregate over every partition is recomputed): the national node takes a province's receipt
/// in 0.93–1.49 ms for 41,352 partitions (two runs on a loaded machine), 22–36 ns each
/// (`costs` example); the higher taken.
pub const RECEIPT_CPU_NS_PER_PARTITION: u64 = 36;
/// Bytes a control request adds on the wire in its direction: yamux stream open, data and
/// close headers (3 × 12), multistream-select's lazy negotiation of `/backflow/frame/1`
/// (~40), the length prefix and TLS record overhead (2 × 22): ~124. The (empty) response's
/// bytes travel the other way and are not charged to any link.
pub const CONTROL_OVERHEAD_BYTES: u64 = 128;
/// Bytes the transport adds per 16 KiB of any frame: a yamux data header (12; libp2p-yamux
/// splits at 16 KiB) and a TLS record's header and tag (22). TCP/IP headers are not counted:
/// link bandwidths are taken as what TCP delivers.
pub const TRANSPORT_OVERHEAD_BYTES_PER_16_KIB: u64 = 34;

/// Per-message and per-byte costs of a node (see the module docs and each constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Costs {
    pub cores: u32,
    pub control_message_cpu_us: u64,
    pub control_cpu_ps_per_byte: u64,
    pub signature_verify_cpu_us: u64,
    pub signature_sign_cpu_us: u64,
    pub chunk_frame_cpu_us: u64,
    pub chunk_part_cpu_us: u64,
    pub chunk_cpu_ps_per_byte: u64,
    pub transfer_install_cpu_ns_per_partition: u64,
    pub receipt_cpu_ns_per_partition: u64,
    pub control_overhead_bytes: u64,
    pub transport_overhead_bytes_per_16_kib: u64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            cores: NODE_CORES,
            control_message_cpu_us: CONTROL_MESSAGE_CPU_US,
            control_cpu_ps_per_byte: CONTROL_CPU_PS_PER_BYTE,
            signature_verify_cpu_us: SIGNATURE_VERIFY_CPU_US,
            signature_sign_cpu_us: SIGNATURE_SIGN_CPU_US,
            chunk_frame_cpu_us: CHUNK_FRAME_CPU_US,
            chunk_part_cpu_us: CHUNK_PART_CPU_US,
            chunk_cpu_ps_per_byte: CHUNK_CPU_PS_PER_BYTE,
            transfer_install_cpu_ns_per_partition: TRANSFER_INSTALL_CPU_NS_PER_PARTITION,
            receipt_cpu_ns_per_partition: RECEIPT_CPU_NS_PER_PARTITION,
            control_overhead_bytes: CONTROL_OVERHEAD_BYTES,
            transport_overhead_bytes_per_16_kib: TRANSPORT_OVERHEAD_BYTES_PER_16_KIB,
        }
    }
}

impl Costs {
    /// Nothing costs anything: infinitely fast nodes and a transport without overhead (how
    /// simnet ran before it modelled costs; hand-computed timing tests use it).
    pub fn free() -> Costs {
        Costs {
            cores: 1,
            control_message_cpu_us: 0,
            control_cpu_ps_per_byte: 0,
            signature_verify_cpu_us: 0,
            signature_sign_cpu_us: 0,
            chunk_frame_cpu_us: 0,
            chunk_part_cpu_us: 0,
            chunk_cpu_ps_per_byte: 0,
            transfer_install_cpu_ns_per_partition: 0,
            receipt_cpu_ns_per_partition: 0,
            control_overhead_bytes: 0,
            transport_overhead_bytes_per_16_kib: 0,
        }
    }

    /// Cores, within `1..=NODE_CORES_MAX`.
    pub fn cores(&self) -> usize {
        self.cores.clamp(1, NODE_CORES_MAX) as usize
    }

    /// Bytes on the wire for a message of `bytes` (control requests carry their stream's
    /// overhead too).
    pub fn wire_bytes(&self, bytes: u64, control: bool) -> u64 {
        let records = bytes.div_ceil(16 * 1024).max(1);
        bytes
            .saturating_add(records.saturating_mul(self.transport_overhead_bytes_per_16_kib))
            .saturating_add(if control {
                self.control_overhead_bytes
            } else {
                0
            })
    }

    /// Sender's event-loop CPU for a message of this plane.
    pub fn send_loop_us(&self, plane: Plane) -> u64 {
        match plane {
            Plane::Control { signs, .. } => self
                .control_message_cpu_us
                .saturating_add(u64::from(signs).saturating_mul(self.signature_sign_cpu_us)),
            Plane::Chunk { .. } => self.chunk_frame_cpu_us,
        }
    }

    /// Receiver's event-loop CPU for a message of `bytes` of this plane.
    pub fn receive_loop_us(&self, plane: Plane, bytes: u64) -> u64 {
        match plane {
            Plane::Control { verifies, .. } => self
                .control_message_cpu_us
                .saturating_add(ps_to_us(bytes, self.control_cpu_ps_per_byte))
                .saturating_add(u64::from(verifies).saturating_mul(self.signature_verify_cpu_us)),
            Plane::Chunk { .. } => self.chunk_frame_cpu_us,
        }
    }

    /// Event-loop CPU of admitting a peer on a new connection, at each end: sending this
    /// node's hello and receiving the peer's (a control message of `hello_bytes` each way),
    /// and verifying the `new_signatures` of the peer's chain this node has not verified
    /// before (its trust store memoises the rest: its own chain's, earlier peers').
    pub fn handshake_us(&self, new_signatures: u32, hello_bytes: u64) -> u64 {
        let hello = |verifies| Plane::Control { verifies, signs: 0 };
        self.send_loop_us(hello(0))
            .saturating_add(self.receive_loop_us(hello(new_signatures), hello_bytes))
    }

    /// Pool CPU for a chunk frame's payload at either end (0 for control messages).
    pub fn pool_us(&self, plane: Plane) -> u64 {
        match plane {
            Plane::Control { .. } => 0,
            Plane::Chunk {
                payload_bytes,
                runs,
            } => u64::from(runs)
                .saturating_mul(self.chunk_part_cpu_us)
                .saturating_add(ps_to_us(payload_bytes, self.chunk_cpu_ps_per_byte)),
        }
    }
}

/// `bytes × ps_per_byte` picoseconds in whole microseconds, rounded up (any work takes time).
fn ps_to_us(bytes: u64, ps_per_byte: u64) -> u64 {
    let ps = u128::from(bytes) * u128::from(ps_per_byte);
    ps.div_ceil(1_000_000).min(u128::from(u64::MAX)) as u64
}

/// Which plane a message travels on, and what it costs to handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// A control frame: one request-response exchange (one stream until its empty response
    /// arrives), through the sender's per-peer outbox. `verifies`: signatures the receiver
    /// checks; `signs`: signatures the sender made for it.
    Control { verifies: u32, signs: u32 },
    /// A chunk frame on the data-plane stream: `runs` partition runs, `payload_bytes` of
    /// content.
    Chunk { payload_bytes: u64, runs: u32 },
}

/// How the node's shell is modelled in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ShellConfig {
    pub costs: Costs,
    /// Control frames go through the per-peer outbox (at most
    /// `CONTROL_REQUESTS_IN_FLIGHT_MAX` in flight per peer), as on the node. Off: every frame
    /// opens its stream at once, as the node did before the outbox (issue #13) — a what-if
    /// that shows the stream limit being hit.
    pub control_outbox: bool,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig {
            costs: Costs::default(),
            control_outbox: true,
        }
    }
}

impl ShellConfig {
    /// No costs, outbox on (timing as before costs were modelled).
    pub fn free() -> ShellConfig {
        ShellConfig {
            costs: Costs::free(),
            control_outbox: true,
        }
    }
}

/// Per node: the CPU clocks (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeCpu {
    /// When the event loop is free.
    pub loop_free_at: u64,
    /// When each core is free (only the first `cores` are used).
    pub core_free_at: [u64; NODE_CORES_MAX as usize],
    /// CPU time used in all, µs.
    pub busy_us: u64,
}

impl NodeCpu {
    /// The core free first (lowest index on ties), skipping `except`.
    fn earliest_core(&self, cores: usize, except: Option<usize>) -> usize {
        (0..cores)
            .filter(|&k| Some(k) != except || cores == 1)
            .min_by_key(|&k| (self.core_free_at[k], k))
            .unwrap_or(0)
    }

    /// Starts event-loop work ready at `at`: returns (start, core). The caller ends it with
    /// [`NodeCpu::end_loop`] once it knows the work's length.
    pub fn start_loop(&self, cores: usize, at: u64) -> (u64, usize) {
        let k = self.earliest_core(cores, None);
        (at.max(self.loop_free_at).max(self.core_free_at[k]), k)
    }

    pub fn end_loop(&mut self, core: usize, start: u64, end: u64) {
        self.loop_free_at = end;
        self.core_free_at[core] = self.core_free_at[core].max(end);
        self.busy_us = self.busy_us.saturating_add(end.saturating_sub(start));
    }

    /// Pool work of `cost` ready at `at`, not on core `except` (the event loop's, while it
    /// runs; with one core the caller does pool work on the loop instead): returns when it is
    /// done.
    pub fn run_pool(&mut self, cores: usize, at: u64, cost: u64, except: Option<usize>) -> u64 {
        if cost == 0 {
            return at;
        }
        let k = self.earliest_core(cores, except);
        let start = at.max(self.core_free_at[k]);
        let end = start.saturating_add(cost);
        self.core_free_at[k] = end;
        self.busy_us = self.busy_us.saturating_add(cost);
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_loop_is_serial_and_the_pool_uses_the_other_core() {
        let mut cpu = NodeCpu::default();
        let (s, k) = cpu.start_loop(2, 10);
        assert_eq!(s, 10);
        // While the loop runs on core k, a pool job goes to the other core at once.
        let done = cpu.run_pool(2, 10, 50, Some(k));
        assert_eq!(done, 60);
        cpu.end_loop(k, s, 30);
        // The next loop work waits for the loop, not for the pool's core.
        assert_eq!(cpu.start_loop(2, 20), (30, k));
        // A second pool job takes the core free first: the loop's (30) before the pool's (60).
        assert_eq!(cpu.run_pool(2, 20, 5, None), 35);
        assert_eq!(cpu.busy_us, 20 + 50 + 5);
    }

    #[test]
    fn costs_are_integer_and_round_up() {
        let c = Costs::default();
        // 1 MiB of chunk payload at 1 ns/byte: 1,049 µs (rounded up), plus one run.
        let p = Plane::Chunk {
            payload_bytes: 1 << 20,
            runs: 1,
        };
        assert_eq!(c.pool_us(p), 1_049 + CHUNK_PART_CPU_US);
        assert_eq!(Costs::free().pool_us(p), 0);
        // A control message of 1 byte still costs its whole fixed part at the receiver.
        let ctl = Plane::Control {
            verifies: 1,
            signs: 0,
        };
        assert_eq!(
            c.receive_loop_us(ctl, 1),
            CONTROL_MESSAGE_CPU_US + 1 + SIGNATURE_VERIFY_CPU_US
        );
        assert_eq!(c.wire_bytes(100, true), 100 + 34 + 128);
        // A handshake: a hello each way (1 µs to decode 200 bytes), one new signature.
        assert_eq!(
            c.handshake_us(1, 200),
            2 * CONTROL_MESSAGE_CPU_US + 1 + SIGNATURE_VERIFY_CPU_US
        );
        assert_eq!(Costs::free().handshake_us(4, 1_000), 0);
        assert_eq!(Costs::free().wire_bytes(100, true), 100);
    }

    /// The stream limit is mirrored from the node by hand; when the node's source is at hand
    /// (a workspace checkout) it must say the same.
    #[test]
    fn the_stream_limit_is_the_nodes() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/net.rs");
        let Ok(text) = std::fs::read_to_string(&src) else {
            eprintln!("skipping: {} not present", src.display());
            return;
        };
        let want =
            format!("pub const STREAMS_PER_CONNECTION_MAX: usize = {STREAMS_PER_CONNECTION_MAX};");
        assert!(
            text.contains(&want),
            "node/src/net.rs no longer says {want}"
        );
    }
}
