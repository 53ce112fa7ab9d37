//! What determines a run: the topology spec, the node implementation, routing variant,
//! dataset, tuning, shell and network models, faults and limits. Same config, same report.
//! Below the scenario driver and the node implementations, which all read it.

use backflow_protocol::tuning::{Tuning, TUNING_MS_MAX};
use backflow_topology::{Fanout, RegionCode, Topology};
use serde::Serialize;

use crate::dataset::Spread;
use crate::engine::Limits;
use crate::error::SimError;
use crate::net::{Fault, NetConfig};
use crate::shell::ShellConfig;
use crate::time::{Micros, MICROS_PER_S};

/// Which tree to simulate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopologySpec {
    China,
    /// Child-count range per tier (provinces, cities per province, counties per city,
    /// townships per county).
    Synthetic {
        fanout: [(u32, u32); 4],
    },
}

impl TopologySpec {
    /// `china`, or `synthetic:P,C,K,T` where each of P, C, K, T is a count `N` or a range
    /// `MIN-MAX` (e.g. `synthetic:4,5,6,8` or `synthetic:31,8-14,6-12,10-16`).
    pub fn parse(text: &str) -> Result<TopologySpec, SimError> {
        let text = text.trim();
        if text == "china" {
            return Ok(TopologySpec::China);
        }
        let Some(rest) = text.strip_prefix("synthetic:") else {
            return Err(SimError::UnknownTopology(text.to_string()));
        };
        let parts: Vec<&str> = rest.split(',').collect();
        if parts.len() != 4 {
            return Err(SimError::FanoutCount {
                spec: text.to_string(),
                got: parts.len(),
            });
        }
        let mut fanout = [(0, 0); 4];
        for (i, p) in parts.iter().enumerate() {
            let num = |s: &str| -> Result<u32, SimError> {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| SimError::FanoutNotACount {
                        spec: text.to_string(),
                        part: s.to_string(),
                    })
            };
            let (lo, hi) = match p.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(p)?, num(p)?),
            };
            if lo == 0 || lo > hi {
                return Err(SimError::FanoutRange {
                    spec: text.to_string(),
                    part: p.to_string(),
                });
            }
            fanout[i] = (lo, hi);
        }
        Ok(TopologySpec::Synthetic { fanout })
    }

    pub fn build(&self, seed: u64) -> Result<Topology, SimError> {
        match self {
            TopologySpec::China => Ok(Topology::china().clone()),
            TopologySpec::Synthetic { fanout } => {
                let f = Fanout {
                    province: fanout[0],
                    city: fanout[1],
                    county: fanout[2],
                    township: fanout[3],
                };
                // Guard the size before allocating: the simulator keeps every node in memory.
                let max_nodes: u64 = fanout
                    .iter()
                    .scan(1u64, |acc, (_, hi)| {
                        *acc = acc.saturating_mul(u64::from(*hi));
                        Some(*acc)
                    })
                    .sum();
                if max_nodes > NODES_MAX {
                    return Err(SimError::TooManyNodes {
                        nodes: max_nodes,
                        max: NODES_MAX,
                    });
                }
                Topology::synthetic(f, seed).map_err(SimError::Synthetic)
            }
        }
    }

    pub fn label(&self) -> String {
        match self {
            TopologySpec::China => "china".to_string(),
            TopologySpec::Synthetic { fanout } => {
                let p: Vec<String> = fanout
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("synthetic:{}", p.join(","))
            }
        }
    }
}

/// Nodes in one simulation (the country has 44,704; leave room for what-if fan-outs).
pub const NODES_MAX: u64 = 500_000;
/// Nodes with the protocol node implementation: each holds a real key and certificate, an
/// endpoint and a durable store (~30 KiB with the engine's share: 1.33 GiB for the country),
/// so 150,000 nodes stay under ~4.5 GiB.
pub const PROTOCOL_NODES_MAX: usize = 150_000;

/// Data-plane routing variant (topology what-ifs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Only the region tree: a node waits for its parent however long it is down (return-flow
    /// and catalog sync alike).
    Strict,
    /// Parent → child, falling back to the nearest reachable ancestor (the protocol's default).
    SkipLevel,
    /// Provinces serve their counties directly (province → county links), with skip-level
    /// fallback. On the protocol node (`DataRouting` province-county) cities then hold and
    /// report only their own partitions; the reference model still feeds cities their share.
    Direct,
}

impl Routing {
    pub fn parse(text: &str) -> Result<Routing, SimError> {
        match text {
            "strict" => Ok(Routing::Strict),
            "skip-level" => Ok(Routing::SkipLevel),
            "direct" => Ok(Routing::Direct),
            _ => Err(SimError::UnknownRouting(text.to_string())),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Routing::Strict => "strict",
            Routing::SkipLevel => "skip-level",
            Routing::Direct => "direct",
        }
    }
}

/// What strict routing sets `source_silence_ms_max` to on every protocol node (return flow and
/// catalog sync alike): the longest silence the protocol accepts (`TUNING_MS_MAX`, a day), so
/// a node waits for its parent through any fault shorter than that. A strict run with a
/// longer fault is refused ([`SimError::StrictFaultTooLong`]) rather than let it fall back.
pub const STRICT_SILENCE_MS: u64 = TUNING_MS_MAX;

/// Which node implementation to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeImpl {
    /// The protocol crate's state machines (what the real node runs).
    Protocol,
    /// The compact reference model in `refmodel` (cross-check).
    Model,
}

/// Everything that determines a run. Same config → same report.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub topology: TopologySpec,
    pub seed: u64,
    pub node: NodeImpl,
    pub routing: Routing,
    /// Return-flow dataset: published at `publisher` (None: no return-flow).
    pub publisher: Option<RegionCode>,
    pub dataset_bytes: u64,
    pub dataset_records: u64,
    /// How records (and bytes) spread over the townships.
    pub spread: Spread,
    /// The protocol node's tuning: the protocol's one set of defaults, as the node ships
    /// them. simnet-only knobs are layered on top by [`RunConfig::node_tuning`].
    pub tuning: Tuning,
    /// The node's shell: control outbox, CPU costs, transport overhead.
    pub shell: ShellConfig,
    /// Catalog churn: this many townships change a catalog entry, at random times in
    /// `[0, churn_window_us]`.
    pub churn_townships: usize,
    pub churn_window_us: Micros,
    pub net: NetConfig,
    pub faults: Vec<Fault>,
    /// Extra random faults drawn from `seed`, within `[0, fault_window_us]`.
    pub random_faults: usize,
    pub fault_window_us: Micros,
    #[serde(skip)]
    pub limits: Limits,
}

impl RunConfig {
    /// The default scenario: one return-flow from national to every township.
    pub fn return_flow(topology: TopologySpec, seed: u64) -> RunConfig {
        RunConfig {
            topology,
            seed,
            node: NodeImpl::Protocol,
            routing: Routing::SkipLevel,
            publisher: Some(RegionCode::NATIONAL),
            dataset_bytes: 1 << 30,
            dataset_records: 10_000_000,
            spread: Spread::Villages,
            tuning: Tuning::default(),
            shell: ShellConfig::default(),
            churn_townships: 0,
            churn_window_us: 60 * MICROS_PER_S,
            net: NetConfig::default(),
            faults: Vec::new(),
            random_faults: 0,
            fault_window_us: 600 * MICROS_PER_S,
            limits: Limits::default(),
        }
    }

    /// The tuning every protocol node of this run gets: [`RunConfig::tuning`] with the
    /// routing variant's simnet-only override (strict: [`STRICT_SILENCE_MS`]).
    pub fn node_tuning(&self) -> Tuning {
        let mut t = self.tuning.clone();
        if self.routing == Routing::Strict {
            t.source_silence_ms_max = STRICT_SILENCE_MS;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_specs_parse_and_round_trip() {
        assert_eq!(TopologySpec::parse("china").unwrap(), TopologySpec::China);
        let s = TopologySpec::parse("synthetic:31,8-14,6-12,10-16").unwrap();
        assert_eq!(s.label(), "synthetic:31,8-14,6-12,10-16");
        assert_eq!(TopologySpec::parse(&s.label()).unwrap(), s);
        for bad in [
            "",
            "China",
            "synthetic:",
            "synthetic:1,2,3",
            "synthetic:1,2,3,4,5",
            "synthetic:0,1,1,1",
            "synthetic:3-2,1,1,1",
            "synthetic:a,1,1,1",
            "synthetic:-1,1,1,1",
        ] {
            let e = TopologySpec::parse(bad).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{bad}: {e}");
        }
        assert!(matches!(
            TopologySpec::parse("mars"),
            Err(SimError::UnknownTopology(_))
        ));
        assert!(matches!(
            TopologySpec::parse("synthetic:1,2,3"),
            Err(SimError::FanoutCount { got: 3, .. })
        ));
        assert!(matches!(
            TopologySpec::parse("synthetic:a,1,1,1"),
            Err(SimError::FanoutNotACount { .. })
        ));
        assert!(matches!(
            TopologySpec::parse("synthetic:3-2,1,1,1"),
            Err(SimError::FanoutRange { .. })
        ));
    }

    #[test]
    fn synthetic_size_is_bounded_before_building() {
        let s = TopologySpec::parse("synthetic:89,99,99,999").unwrap();
        assert!(matches!(
            s.build(1),
            Err(SimError::TooManyNodes { max: NODES_MAX, .. })
        ));
        // Within the code widths but over the node limit.
        let s = TopologySpec::parse("synthetic:10,10,10,600").unwrap();
        assert!(matches!(s.build(1), Err(SimError::TooManyNodes { .. })));
        let s = TopologySpec::parse("synthetic:2,2,2,2").unwrap();
        assert_eq!(s.build(1).unwrap().len(), 31);
    }

    /// The protocol's own defaults, as the node ships them; strict routing layers its
    /// simnet-only silence on top and nothing else.
    #[test]
    fn nodes_get_the_protocols_tuning_with_strict_layered_on_top() {
        let mut cfg = RunConfig::return_flow(TopologySpec::China, 1);
        assert_eq!(cfg.tuning, Tuning::default());
        assert_eq!(cfg.node_tuning(), Tuning::default());
        cfg.routing = Routing::Strict;
        assert_eq!(
            cfg.node_tuning(),
            Tuning {
                source_silence_ms_max: STRICT_SILENCE_MS,
                ..Tuning::default()
            }
        );
        // Within what the protocol (and the node's config) accepts.
        assert_eq!(cfg.node_tuning().validate(), Ok(()));
    }
}
