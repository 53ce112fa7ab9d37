//! A tiny deterministic network for driving state machines in tests: messages travel as
//! encoded frames through a queue with seeded loss, duplication and random delay (reordering).
#![allow(dead_code)]

use std::collections::BTreeSet;

use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{decode_frame, encode_frame, Message};
use backflow_protocol::RegionCode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub delay_ms_max: u64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        delay_ms_max: 1,
    };
}

pub struct Wire {
    pub now: UnixMs,
    queue: Vec<(UnixMs, u64, RegionCode, RegionCode, Vec<u8>)>,
    counter: u64,
    rng: ChaCha8Rng,
    pub faults: Faults,
    /// Nodes that are down: they neither send nor receive.
    pub down: BTreeSet<RegionCode>,
    pub sent: u64,
    pub bytes: u64,
}

impl Wire {
    pub fn new(now: UnixMs, seed: u64, faults: Faults) -> Wire {
        Wire {
            now,
            queue: Vec::new(),
            counter: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            down: BTreeSet::new(),
            sent: 0,
            bytes: 0,
        }
    }

    pub fn send(&mut self, from: RegionCode, to: RegionCode, msg: &Message) {
        let bytes = encode_frame(msg).expect("honest nodes emit valid frames");
        self.sent += 1;
        self.bytes += bytes.len() as u64;
        if self.down.contains(&from) || self.rng.gen_bool(self.faults.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(1..=self.faults.delay_ms_max.max(1));
            self.counter += 1;
            self.queue.push((
                self.now.plus_ms(delay),
                self.counter,
                from,
                to,
                bytes.clone(),
            ));
        }
    }

    pub fn next_delivery(&self) -> Option<UnixMs> {
        self.queue.iter().map(|m| m.0).min()
    }

    /// Pops every message due at or before `now`, in (time, send order).
    pub fn due(&mut self) -> Vec<(RegionCode, RegionCode, Message)> {
        let now = self.now;
        let mut due: Vec<_> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].0 <= now {
                due.push(self.queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.0, m.1));
        due.into_iter()
            .filter(|m| !self.down.contains(&m.3))
            .map(|(_, _, from, to, bytes)| (from, to, decode_frame(&bytes).expect("frames decode")))
            .collect()
    }
}
