//! A node's outputs on their way out, as its shell sends them: control frames through the
//! per-peer outbox and its completions, each control request holding a stream of its
//! connection (closed when the muxer's limit is passed), then bandwidth, egress and loss on
//! the link.

use std::cmp::Reverse;

use backflow_topology::RegionCode;
use rand::Rng;

use super::conn::{conn_key, Queued};
use super::events::EventKind;
use super::node::{SimNode, Wire};
use super::stats::RESET_EXAMPLES_MAX;
use super::Engine;
use crate::net::transmit_us;
use crate::shell::{Plane, NON_CONTROL_STREAMS_PER_CONNECTION, STREAMS_PER_CONNECTION_MAX};
use crate::time::Micros;

impl<N: SimNode> Engine<N> {
    /// A node's message, ready to leave at `ready`: control frames through the outbox, chunk
    /// frames straight onto the link.
    pub(super) fn send(&mut self, from: u32, to_code: RegionCode, msg: N::Msg, ready: Micros) {
        let kind = msg.kind();
        let Some(to) = self.index_of(to_code) else {
            // Addressing a region that does not exist is a node bug; count it as refused.
            self.stats.kinds.entry(kind).or_default().refused += 1;
            return;
        };
        let control = matches!(msg.plane(), Plane::Control { .. });
        let bytes = self.shell.costs.wire_bytes(msg.wire_bytes(), control);
        let from_code = self.topo.codes()[from as usize];
        let stats = self.stats.kinds.entry(kind).or_default();
        stats.sent += 1;
        stats.bytes += bytes;
        let (lf, lt) = (
            from_code.level().depth() as usize,
            to_code.level().depth() as usize,
        );
        self.stats.link_bytes[lf][lt] += bytes;
        self.stats.link_messages[lf][lt] += 1;
        if !control {
            self.transmit(from, to, msg, bytes, ready, None);
            return;
        }
        self.next_request += 1;
        let id = self.next_request;
        // Requests answered by now free their slots first (as their responses would have).
        self.settle(from, to, ready);
        if !self.shell.control_outbox {
            // What-if: every frame opens its stream at once (the node before the outbox).
            self.transmit(from, to, msg, bytes, ready, Some(id));
            return;
        }
        let (key, d) = conn_key(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        let dropped = dir.outbox.dropped;
        let mut sent = false;
        dir.outbox.offer(to, id.to_le_bytes().to_vec(), |_| {
            sent = true;
            id
        });
        if sent {
            self.transmit(from, to, msg, bytes, ready, Some(id));
            return;
        }
        let control = &mut self.stats.control;
        if dir.outbox.dropped > dropped {
            // The outbox dropped its oldest queued frame for this peer: so do we.
            dir.queued.pop_front();
            control.outbox_dropped += dir.outbox.dropped - dropped;
        }
        dir.queued.push_back(Queued {
            id,
            msg,
            bytes,
            since: ready,
        });
        control.frames_queued += 1;
        control.queued_max = control.queued_max.max(dir.queued.len() as u64);
        self.schedule_wake(from, to);
    }

    /// Applies the completions of requests `from` → `to` known to be done by `at`, sending
    /// what the outbox releases at the moment each slot freed.
    pub(super) fn settle(&mut self, from: u32, to: u32, at: Micros) {
        let (_, d) = conn_key(from, to);
        let key = self.touch(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        let mut released: Vec<(Micros, Queued<N::Msg>)> = Vec::new();
        while let Some(&Reverse((c, id))) = dir.pending.peek() {
            if c > at {
                break;
            }
            dir.pending.pop();
            dir.open = dir.open.saturating_sub(1);
            let mut ids = Vec::new();
            dir.outbox.completed(to, id, |frame| {
                let fid = frame
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                ids.push(fid);
                fid
            });
            for fid in ids {
                // The outbox sends in the order it was offered, as `queued` holds them.
                let Some(q) = dir.queued.pop_front() else {
                    break;
                };
                debug_assert_eq!(q.id, fid, "outbox and shadow queue agree");
                released.push((c, q));
            }
        }
        for (c, q) in released {
            let control = &mut self.stats.control;
            control.queue_wait_max_us = control.queue_wait_max_us.max(c.saturating_sub(q.since));
            self.transmit(from, to, q.msg, q.bytes, c.max(q.since), Some(q.id));
        }
    }

    /// A wake-up for queued control frames `from` → `to`.
    pub(super) fn wake(&mut self, from: u32, to: u32) {
        let (key, d) = conn_key(from, to);
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(&key) {
            let dir = &mut conn.dirs[d];
            if dir.wake_at.is_some_and(|w| w <= now) {
                dir.wake_at = None;
            }
        }
        self.settle(from, to, now);
        self.schedule_wake(from, to);
    }

    /// While frames wait, makes sure a wake-up is due at the next known completion.
    pub(super) fn schedule_wake(&mut self, from: u32, to: u32) {
        let (key, d) = conn_key(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let dir = &mut conn.dirs[d];
        if dir.queued.is_empty() {
            return;
        }
        let Some(&Reverse((next, _))) = dir.pending.peek() else {
            return; // The in-flight requests have not arrived yet; their completions will wake.
        };
        if dir.wake_at.is_none_or(|w| next < w) {
            dir.wake_at = Some(next);
            self.events
                .push(next.max(self.now), EventKind::ControlWake { from, to });
        }
    }

    /// Request `id` `from` → `to` ends when its response (or failure) reaches `from` at `at`.
    pub(super) fn complete(&mut self, from: u32, to: u32, id: u64, at: Micros) {
        let (_, d) = conn_key(from, to);
        let key = self.touch(from, to);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.dirs[d].pending.push(Reverse((at, id)));
        }
        self.schedule_wake(from, to);
    }

    /// Puts a message on the link `from` → `to` at `at`. A control request opens a stream;
    /// if the connection's streams would then exceed the muxer's limit, the connection closes.
    pub(super) fn transmit(
        &mut self,
        from: u32,
        to: u32,
        msg: N::Msg,
        bytes: u64,
        at: Micros,
        request: Option<u64>,
    ) {
        let kind = msg.kind();
        let at = at.max(self.now);
        let codes = self.topo.codes();
        let (from_code, to_code) = (codes[from as usize], codes[to as usize]);
        let link = self.net.link(from_code, to_code);
        let egress = self.net.egress_bytes_per_s[from_code.level().depth() as usize];
        let egress_free = if egress.is_some() {
            self.egress_free_at[from as usize]
        } else {
            0
        };
        let (_, d) = conn_key(from, to);
        let now = self.now;
        let key = self.touch(from, to);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if request.is_some() {
            conn.dirs[d].open += 1;
            let mine = conn.dirs[d].open_at(at);
            let total = mine + conn.dirs[1 - d].open_at(at);
            let control = &mut self.stats.control;
            control.streams_max_per_direction = control.streams_max_per_direction.max(mine);
            control.streams_max_per_connection = control.streams_max_per_connection.max(total);
            if total as usize + NON_CONTROL_STREAMS_PER_CONNECTION > STREAMS_PER_CONNECTION_MAX {
                // The muxer refuses the stream and closes the connection (`TooManyStreams`):
                // every stream, queued frame and frame in flight on it is gone.
                conn.gen = conn.gen.wrapping_add(1);
                let lost = conn.dirs[0].close() + conn.dirs[1].close();
                control.connection_resets += 1;
                control.frames_lost_to_closed_connections += lost + 1;
                if control.reset_examples.len() < RESET_EXAMPLES_MAX {
                    control.reset_examples.push(format!(
                        "{from_code} → {to_code} at {at} us: {total} control streams + {NON_CONTROL_STREAMS_PER_CONNECTION} others > {STREAMS_PER_CONNECTION_MAX}"
                    ));
                }
                self.stats.kinds.entry(kind).or_default().lost += 1;
                return;
            }
        }
        // Bandwidth: the link carries one message at a time; a message waits for the one before.
        // With a node egress cap, all of the sender's messages also queue on its uplink.
        let dir = &mut conn.dirs[d];
        let start = dir.link_free_at.max(egress_free).max(at).max(now);
        let on_link = link.transmit_us(bytes);
        let on_egress = egress.map_or(0, |bps| transmit_us(bytes, bps));
        dir.link_free_at = start + on_link;
        let gen = conn.gen;
        if egress.is_some() {
            self.egress_free_at[from as usize] = start + on_egress;
        }
        let arrive = start + on_link.max(on_egress) + link.latency_us;
        if link.loss > 0.0 && self.rng.gen_bool(link.loss) {
            self.stats.kinds.entry(kind).or_default().lost += 1;
            if let Some(id) = request {
                // A failed exchange is reported to the sender when its answer would have come
                // (the stream resets). A frame that vanished silently on a live connection
                // would hold its slot until the node's request timeout (60 s); TCP does not
                // lose frames that way, so simnet's loss stands for failed exchanges.
                self.complete(from, to, id, arrive.saturating_add(link.latency_us));
            }
            return;
        }
        self.events.push(
            arrive,
            EventKind::Deliver {
                from,
                to,
                msg: Box::new(msg),
                bytes,
                gen,
                request,
            },
        );
    }
}
