//! Link model per tier pair, and faults.

use backflow_topology::{Level, RegionCode, Topology};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{FaultError, SimError};
use crate::time::{Micros, MICROS_PER_MS, MICROS_PER_S};

/// One directed link's characteristics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LinkSpec {
    /// One-way propagation delay.
    pub latency_us: Micros,
    /// Sustained throughput, bytes per second (> 0).
    pub bandwidth_bytes_per_s: u64,
    /// Probability that a message is lost, 0 ≤ loss < 1.
    pub loss: f64,
}

impl LinkSpec {
    pub fn new(latency_ms: u64, bandwidth_mbit_per_s: u64, loss: f64) -> LinkSpec {
        LinkSpec {
            latency_us: latency_ms * MICROS_PER_MS,
            bandwidth_bytes_per_s: (bandwidth_mbit_per_s * 1_000_000 / 8).max(1),
            loss,
        }
    }

    /// Time to put `bytes` on the wire, rounded up to whole microseconds.
    pub fn transmit_us(&self, bytes: u64) -> Micros {
        transmit_us(bytes, self.bandwidth_bytes_per_s)
    }
}

/// Time to send `bytes` at `bytes_per_s` (> 0), rounded up to whole microseconds.
pub fn transmit_us(bytes: u64, bytes_per_s: u64) -> Micros {
    debug_assert!(bytes_per_s > 0);
    let num = u128::from(bytes) * u128::from(MICROS_PER_S);
    let den = u128::from(bytes_per_s.max(1));
    num.div_ceil(den).min(u128::from(u64::MAX)) as u64
}

/// Links per tier pair. `tiers[d]` is the link between depth `d` and depth `d + 1` (national–
/// province, province–city, city–county, county–township). A link that skips tiers (skip-level
/// fallback, province→county direct links) adds the latencies and takes the slowest bandwidth
/// and the worst loss of the hops it replaces, unless `direct` overrides it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetConfig {
    pub tiers: [LinkSpec; 4],
    /// Overrides for specific non-adjacent tier pairs `(upper depth, lower depth, spec)`.
    pub direct: Vec<(u8, u8, LinkSpec)>,
    /// Per tier (by depth): a node's total sending capacity, shared by all its links (its
    /// uplink). `None`: each link has its own bandwidth (the default).
    pub egress_bytes_per_s: [Option<u64>; 5],
}

impl Default for NetConfig {
    /// Plausible government extranet (电子政务外网) figures: fat national and provincial
    /// backbones, thinner links towards townships.
    fn default() -> Self {
        NetConfig {
            tiers: [
                LinkSpec::new(20, 10_000, 0.0),
                LinkSpec::new(10, 2_000, 0.0),
                LinkSpec::new(8, 1_000, 0.0),
                LinkSpec::new(5, 100, 0.0),
            ],
            direct: Vec::new(),
            egress_bytes_per_s: [None; 5],
        }
    }
}

impl NetConfig {
    /// The link between two nodes (symmetric in spec; each direction queues separately).
    pub fn link(&self, a: RegionCode, b: RegionCode) -> LinkSpec {
        let (da, db) = (a.level().depth(), b.level().depth());
        let (hi, lo) = (da.min(db), da.max(db));
        if let Some(&(_, _, spec)) = self.direct.iter().find(|(u, l, _)| (*u, *l) == (hi, lo)) {
            return spec;
        }
        if hi == lo {
            // Same tier (not used by the tree protocols): one hop of that tier's uplink.
            return self.tiers[(hi.max(1) - 1) as usize];
        }
        let hops = &self.tiers[hi as usize..lo as usize];
        LinkSpec {
            latency_us: hops.iter().map(|h| h.latency_us).sum(),
            bandwidth_bytes_per_s: hops
                .iter()
                .map(|h| h.bandwidth_bytes_per_s)
                .min()
                .unwrap_or(1),
            loss: hops.iter().fold(0.0, |acc, h| acc.max(h.loss)),
        }
    }

    pub fn set_loss(&mut self, loss: f64) {
        for t in &mut self.tiers {
            t.loss = loss;
        }
    }
}

/// A fault injected at a given simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// The node is unreachable from `from_us` to `until_us` but keeps its memory (a network
    /// outage at the site).
    Down {
        node: RegionCode,
        from_us: Micros,
        until_us: Micros,
    },
    /// The process dies at `at_us`, losing all volatile state, and restarts at `restart_us`.
    Crash {
        node: RegionCode,
        at_us: Micros,
        restart_us: Micros,
    },
    /// The subtree under `root` is cut off from the rest of the network.
    Partition {
        root: RegionCode,
        from_us: Micros,
        until_us: Micros,
    },
    /// Internal: end of a `Down` window.
    Up { node: RegionCode },
    /// Internal: restart after a `Crash`.
    Restart { node: RegionCode },
    /// Internal: end of a `Partition`.
    Heal { root: RegionCode },
}

impl Fault {
    pub fn start_us(&self) -> Micros {
        match *self {
            Fault::Down { from_us, .. } | Fault::Partition { from_us, .. } => from_us,
            Fault::Crash { at_us, .. } => at_us,
            Fault::Up { .. } | Fault::Restart { .. } | Fault::Heal { .. } => 0,
        }
    }

    /// When the fault is over.
    pub fn end_us(&self) -> Micros {
        match *self {
            Fault::Down { until_us, .. } | Fault::Partition { until_us, .. } => until_us,
            Fault::Crash { restart_us, .. } => restart_us,
            Fault::Up { .. } | Fault::Restart { .. } | Fault::Heal { .. } => 0,
        }
    }

    /// Parses `down:CODE:FROM_S:UNTIL_S`, `crash:CODE:AT_S:RESTART_S` or
    /// `partition:CODE:FROM_S:UNTIL_S` (seconds of simulated time; fractions allowed).
    pub fn parse(text: &str, topo: &Topology) -> Result<Fault, SimError> {
        let bad = |problem: FaultError| SimError::Fault {
            text: text.to_string(),
            problem,
        };
        let parts: Vec<&str> = text.split(':').collect();
        let [kind, code, a, b] = parts[..] else {
            return Err(bad(FaultError::Format));
        };
        let region = topo
            .lookup(code)
            .map_err(|e| bad(FaultError::Region(e)))?
            .code;
        let secs = |s: &str| -> Result<Micros, SimError> {
            let v: f64 = s
                .parse()
                .map_err(|_| bad(FaultError::NotSeconds(s.to_string())))?;
            if !(0.0..=1e9).contains(&v) {
                return Err(bad(FaultError::OutOfRange(s.to_string())));
            }
            Ok((v * MICROS_PER_S as f64).round() as Micros)
        };
        let (start, end) = (secs(a)?, secs(b)?);
        if end <= start {
            return Err(bad(FaultError::EndNotAfterStart));
        }
        match kind {
            "down" => Ok(Fault::Down {
                node: region,
                from_us: start,
                until_us: end,
            }),
            "crash" => Ok(Fault::Crash {
                node: region,
                at_us: start,
                restart_us: end,
            }),
            "partition" if region.level() != Level::National => Ok(Fault::Partition {
                root: region,
                from_us: start,
                until_us: end,
            }),
            "partition" => Err(bad(FaultError::WholeCountry)),
            other => Err(bad(FaultError::UnknownKind(other.to_string()))),
        }
    }
}

/// `count` random faults (a mix of down windows, crashes and partitions) on non-national nodes,
/// all starting and ending within `[0, window_us]`. Deterministic in `seed`.
pub fn random_faults(topo: &Topology, count: usize, window_us: Micros, seed: u64) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa17_fa17);
    let codes = topo.codes();
    let mut faults = Vec::with_capacity(count);
    if codes.len() < 2 || window_us < 2 {
        return faults;
    }
    for _ in 0..count {
        let node = codes[rng.gen_range(1..codes.len())];
        let start = rng.gen_range(0..window_us / 2);
        let end = rng.gen_range(start + 1..=window_us);
        faults.push(match rng.gen_range(0..3) {
            0 => Fault::Down {
                node,
                from_us: start,
                until_us: end,
            },
            1 => Fault::Crash {
                node,
                at_us: start,
                restart_us: end,
            },
            _ => Fault::Partition {
                root: node,
                from_us: start,
                until_us: end,
            },
        });
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_time_rounds_up() {
        let l = LinkSpec::new(5, 8, 0.0); // 1 MB/s
        assert_eq!(l.transmit_us(1_000_000), 1_000_000);
        assert_eq!(l.transmit_us(1), 1);
        assert_eq!(l.transmit_us(0), 0);
    }

    #[test]
    fn skip_level_link_combines_hops() {
        let net = NetConfig::default();
        let p = RegionCode::parse("44").unwrap();
        let c = RegionCode::parse("441900").unwrap();
        let l = net.link(p, c);
        assert_eq!(
            l.latency_us,
            net.tiers[1].latency_us + net.tiers[2].latency_us
        );
        assert_eq!(
            l.bandwidth_bytes_per_s,
            net.tiers[2]
                .bandwidth_bytes_per_s
                .min(net.tiers[1].bandwidth_bytes_per_s)
        );
    }

    #[test]
    fn fault_parse_errors_are_one_line() {
        let topo = Topology::synthetic(backflow_topology::Fanout::fixed(2, 2, 2, 2), 1).unwrap();
        assert!(Fault::parse("down:11:1:2", &topo).is_ok());
        for (bad, want) in [
            ("down:11:2:1", FaultError::EndNotAfterStart),
            ("melt:11:1:2", FaultError::UnknownKind("melt".to_string())),
            ("down:11", FaultError::Format),
            ("down:11:x:2", FaultError::NotSeconds("x".to_string())),
            ("partition:0:1:2", FaultError::WholeCountry),
        ] {
            let e = Fault::parse(bad, &topo).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
            assert_eq!(
                e,
                SimError::Fault {
                    text: bad.to_string(),
                    problem: want
                }
            );
        }
        let e = Fault::parse("down:99:1:2", &topo).unwrap_err();
        assert!(
            matches!(
                e,
                SimError::Fault {
                    problem: FaultError::Region(_),
                    ..
                }
            ),
            "{e}"
        );
    }
}
