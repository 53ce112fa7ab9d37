//! The event queue: events ordered by `(time, seq)`, earliest first.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::net::Fault;
use crate::time::Micros;

#[derive(Clone, Debug)]
pub(super) enum EventKind<M> {
    /// Boxed so queue entries stay small: the heap moves entries on every push and pop.
    Deliver {
        from: u32,
        to: u32,
        msg: Box<M>,
        /// Bytes on the wire (for the receiver's decoding cost).
        bytes: u64,
        /// The connection's generation when sent: a frame outlives no connection close.
        gen: u32,
        /// The control request's id (its stream), `None` for chunk frames.
        request: Option<u64>,
    },
    /// A chunk frame the receiver's pool has verified and stored: its state-machine step.
    Process {
        from: u32,
        to: u32,
        msg: Box<M>,
        /// The receiver's incarnation at delivery (a crash in between loses the frame).
        incarnation: u32,
    },
    Timer {
        node: u32,
    },
    /// Control requests `from` → `to` have completed by now: the outbox may send queued ones.
    ControlWake {
        from: u32,
        to: u32,
    },
    Fault(Fault),
}

pub(super) struct Event<M> {
    pub(super) at: Micros,
    seq: u64,
    pub(super) kind: EventKind<M>,
}

impl<M> PartialEq for Event<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Event<M> {}
impl<M> PartialOrd for Event<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Event<M> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The event queue, apart from the rest of the engine so it can be pushed to while a
/// connection is borrowed.
pub(super) struct Events<M> {
    pub(super) heap: BinaryHeap<Event<M>>,
    pub(super) seq: u64,
    pub(super) peak: usize,
}

impl<M> Events<M> {
    pub(super) fn push(&mut self, at: Micros, kind: EventKind<M>) {
        self.seq += 1;
        self.heap.push(Event {
            at,
            seq: self.seq,
            kind,
        });
        self.peak = self.peak.max(self.heap.len());
    }
}
