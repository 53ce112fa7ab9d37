//! Connections between nodes as the engine keeps them: one per pair, each direction with
//! its bandwidth booking, the sender's outbox and its open control streams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use backflow_protocol::outbox::Outbox;

use crate::time::Micros;

/// A control frame waiting in an outbox (the outbox itself holds only its request id).
pub(super) struct Queued<M> {
    pub(super) id: u64,
    pub(super) msg: M,
    pub(super) bytes: u64,
    pub(super) since: Micros,
}

/// One direction of a connection.
pub(super) struct Direction<M> {
    /// When the sender side is free again (bandwidth serialisation).
    pub(super) link_free_at: Micros,
    /// The sender's outbox for this peer: the protocol's own, as the node uses it (its frames
    /// are the 8-byte request ids of the messages in `queued`).
    pub(super) outbox: Outbox<u32, u64>,
    pub(super) queued: VecDeque<Queued<M>>,
    /// Control requests sent and not yet completed.
    pub(super) open: u64,
    /// Completions known (the request was handled, lost or refused) but not yet applied:
    /// (when the response or failure reaches the sender, request id). Applied lazily — before
    /// the next frame is offered — or by a wake-up while frames are queued.
    pub(super) pending: BinaryHeap<Reverse<(Micros, u64)>>,
    pub(super) wake_at: Option<Micros>,
}

impl<M> Default for Direction<M> {
    fn default() -> Self {
        Direction {
            link_free_at: 0,
            outbox: Outbox::default(),
            queued: VecDeque::new(),
            open: 0,
            pending: BinaryHeap::new(),
            wake_at: None,
        }
    }
}

impl<M> Direction<M> {
    /// Requests still open at `at`.
    pub(super) fn open_at(&self, at: Micros) -> u64 {
        let done = self
            .pending
            .iter()
            .filter(|Reverse((c, _))| *c <= at)
            .count();
        self.open.saturating_sub(done as u64)
    }

    /// The connection closed: every stream and queued frame is gone; bandwidth stays booked.
    pub(super) fn close(&mut self) -> u64 {
        let lost = self.queued.len() as u64;
        *self = Direction {
            link_free_at: self.link_free_at,
            ..Direction::default()
        };
        lost
    }
}

/// The connection between two nodes (one per pair, both directions, as libp2p keeps it).
pub(super) struct Conn<M> {
    /// Bumped each time the connection closes: frames of an older generation die with it.
    pub(super) gen: u32,
    /// The endpoints' incarnations (lower index first): a crashed end closed it.
    pub(super) incarnations: [u32; 2],
    /// `dirs[0]`: lower index → higher; `dirs[1]`: the other way.
    pub(super) dirs: [Direction<M>; 2],
}

/// Key and direction of the connection carrying `from` → `to`.
pub(super) fn conn_key(from: u32, to: u32) -> ((u32, u32), usize) {
    if from < to {
        ((from, to), 0)
    } else {
        ((to, from), 1)
    }
}
