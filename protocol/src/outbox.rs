//! Control-plane flow control, per peer: at most [`CONTROL_REQUESTS_IN_FLIGHT_MAX`] control
//! frames outstanding on one peer's connection, the rest queued (bounded), so a node's own
//! load can never exceed the muxer's stream limit and tear the connection down. Sans-IO like
//! the state machines: the node's shell drives it with libp2p request ids, simnet with its own,
//! so what simnet predicts is what the node does.
//!
//! Why: every control frame is one request-response exchange, and each exchange is a yamux
//! stream (or a QUIC stream) until its (empty) response arrives. A window of 1,024 one-group
//! wants to a province once meant 1,024 streams against a limit of 256 per connection, and
//! yamux answers that by closing the whole connection (`TooManyStreams`), every transfer on it
//! with it. The protocol now names a whole window in one want, but the shell holds the bound
//! whatever the state machines emit.
//!
//! When a peer's queue is full the *oldest* queued frame is dropped: the state machines retry
//! whatever still matters on their own timers, and a newer frame (a fresher receipt, the next
//! want) is worth more than an old one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Control frames sent to one peer and not yet answered. With the peer's own bound on what it
/// sends us, a connection carries at most 2 × 32 control streams, far below
/// the node's `STREAMS_PER_CONNECTION_MAX` (256), with room for the data plane, identify and ping.
pub const CONTROL_REQUESTS_IN_FLIGHT_MAX: usize = 32;
/// Control frames waiting for one peer. A frame is ≤ 4 MiB by the wire limit, but the frames
/// that pile up under load are wants and receipts of a few KiB; the protocol re-sends what is
/// dropped.
pub const CONTROL_QUEUED_PER_PEER_MAX: usize = 1_024;

/// Per-peer bounded queues of control frames. `P` is the peer, `R` a request's id.
#[derive(Debug)]
pub struct Outbox<P, R> {
    peers: HashMap<P, PeerOutbox<R>>,
    /// Frames dropped because a queue was full (for logs and tests).
    pub dropped: u64,
}

#[derive(Debug)]
struct PeerOutbox<R> {
    in_flight: HashSet<R>,
    queued: VecDeque<Vec<u8>>,
}

impl<R> Default for PeerOutbox<R> {
    fn default() -> Self {
        PeerOutbox {
            in_flight: HashSet::new(),
            queued: VecDeque::new(),
        }
    }
}

impl<P, R> Default for Outbox<P, R> {
    fn default() -> Self {
        Outbox {
            peers: HashMap::new(),
            dropped: 0,
        }
    }
}

impl<P: Hash + Eq + Copy, R: Hash + Eq + Copy> Outbox<P, R> {
    /// Sends `frame` to `peer` through `send` (which returns the request's id) if the peer has
    /// room, else queues it.
    pub fn offer(&mut self, peer: P, frame: Vec<u8>, send: impl FnOnce(Vec<u8>) -> R) {
        let p = self.peers.entry(peer).or_default();
        if p.in_flight.len() < CONTROL_REQUESTS_IN_FLIGHT_MAX {
            debug_assert!(
                p.queued.is_empty(),
                "frames wait only while the peer is full"
            );
            p.in_flight.insert(send(frame));
            return;
        }
        if p.queued.len() >= CONTROL_QUEUED_PER_PEER_MAX {
            p.queued.pop_front();
            self.dropped += 1;
        }
        p.queued.push_back(frame);
    }

    /// Request `id` to `peer` ended (answered or failed): sends queued frames into the room.
    /// An id this outbox does not know (a request of an earlier connection) frees nothing.
    pub fn completed(&mut self, peer: P, id: R, mut send: impl FnMut(Vec<u8>) -> R) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.in_flight.remove(&id) {
            return;
        }
        while p.in_flight.len() < CONTROL_REQUESTS_IN_FLIGHT_MAX {
            let Some(frame) = p.queued.pop_front() else {
                break;
            };
            p.in_flight.insert(send(frame));
        }
        if p.in_flight.is_empty() && p.queued.is_empty() {
            self.peers.remove(&peer);
        }
    }

    /// The peer's last connection closed: its requests failed and its queue is void (the
    /// protocol re-sends on reconnect).
    pub fn forget(&mut self, peer: P) {
        self.peers.remove(&peer);
    }

    /// Frames in flight and queued for `peer`.
    pub fn load(&self, peer: P) -> (usize, usize) {
        self.peers
            .get(&peer)
            .map_or((0, 0), |p| (p.in_flight.len(), p.queued.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake transport: hands out ids and records what was sent.
    #[derive(Default)]
    struct Sent {
        next: u32,
        frames: Vec<(u32, Vec<u8>)>,
    }

    impl Sent {
        fn send(&mut self, f: Vec<u8>) -> u32 {
            self.next += 1;
            self.frames.push((self.next, f));
            self.next
        }
    }

    #[test]
    fn in_flight_is_bounded_and_queued_frames_follow_in_order() {
        let mut out: Outbox<u8, u32> = Outbox::default();
        let mut sent = Sent::default();
        let n = CONTROL_REQUESTS_IN_FLIGHT_MAX + 100;
        for i in 0..n {
            out.offer(1, vec![i as u8], |f| sent.send(f));
        }
        assert_eq!(sent.frames.len(), CONTROL_REQUESTS_IN_FLIGHT_MAX);
        assert_eq!(out.load(1), (CONTROL_REQUESTS_IN_FLIGHT_MAX, 100));
        // Each answer lets exactly one queued frame go, in the order offered.
        for k in 0..100 {
            let id = sent.frames[k].0;
            out.completed(1, id, |f| sent.send(f));
            let (_, last) = sent.frames.last().unwrap();
            assert_eq!(last[0], (CONTROL_REQUESTS_IN_FLIGHT_MAX + k) as u8);
            assert!(out.load(1).0 <= CONTROL_REQUESTS_IN_FLIGHT_MAX);
        }
        assert_eq!(out.load(1), (CONTROL_REQUESTS_IN_FLIGHT_MAX, 0));
        // Another peer is not held up by the first.
        out.offer(2, vec![0], |f| sent.send(f));
        assert_eq!(out.load(2), (1, 0));
        // An unknown id (an earlier connection's request) frees nothing.
        let before = sent.frames.len();
        out.completed(1, 9_999, |f| sent.send(f));
        assert_eq!(out.load(1).0, CONTROL_REQUESTS_IN_FLIGHT_MAX);
        assert_eq!(sent.frames.len(), before);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_frame_and_forget_clears_the_peer() {
        let mut out: Outbox<u8, u32> = Outbox::default();
        let mut sent = Sent::default();
        let n = CONTROL_REQUESTS_IN_FLIGHT_MAX + CONTROL_QUEUED_PER_PEER_MAX + 3;
        for i in 0..n {
            out.offer(1, (i as u32).to_le_bytes().to_vec(), |f| sent.send(f));
        }
        assert_eq!(out.dropped, 3);
        assert_eq!(
            out.load(1),
            (CONTROL_REQUESTS_IN_FLIGHT_MAX, CONTROL_QUEUED_PER_PEER_MAX)
        );
        // The next to go is the oldest kept, not one of the three dropped.
        let id = sent.frames[0].0;
        out.completed(1, id, |f| sent.send(f));
        let (_, next) = sent.frames.last().unwrap();
        let expect = (CONTROL_REQUESTS_IN_FLIGHT_MAX + 3) as u32;
        assert_eq!(next[..], expect.to_le_bytes());
        out.forget(1);
        assert_eq!(out.load(1), (0, 0));
        out.offer(1, vec![1], |f| sent.send(f));
        assert_eq!(out.load(1), (1, 0), "a new connection starts empty");
    }
}
