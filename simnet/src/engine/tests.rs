//! The engine's unit tests: bandwidth, egress, overlapping faults, the outbox and the
//! stream limit, a busy node's event loop.

use std::sync::Arc;

use backflow_topology::Fanout;

use super::*;
use crate::net::LinkSpec;
use crate::shell::{Costs, NON_CONTROL_STREAMS_PER_CONNECTION, STREAMS_PER_CONNECTION_MAX};

#[derive(Clone, Debug)]
struct Ping(u64);

impl Wire for Ping {
    fn wire_bytes(&self) -> u64 {
        self.0
    }
    fn kind(&self) -> &'static str {
        "ping"
    }
    fn partitions(&self, _: &mut Vec<RegionCode>) {}
    fn plane(&self) -> Plane {
        Plane::Control {
            verifies: 0,
            signs: 0,
        }
    }
}

/// Records what happened to it; the root pings its first child at start.
#[derive(Default)]
struct Probe {
    log: Vec<(&'static str, Micros)>,
}

impl SimNode for Probe {
    type Msg = Ping;
    fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
        if ctx.me() == RegionCode::NATIONAL {
            ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
            ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
        self.log.push(("message", ctx.now_us()));
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Ping>) {
        self.log.push(("timer", ctx.now_us()));
    }
    fn on_crash(&mut self) {
        self.log.push(("crash", 0));
    }
    fn on_restart(&mut self, ctx: &mut Ctx<'_, Ping>) {
        self.log.push(("restart", ctx.now_us()));
    }
    fn next_timer(&self) -> Option<Micros> {
        None
    }
}

fn engine(faults: &[Fault]) -> (Stats, Vec<Probe>) {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
    let nodes = (0..topo.len()).map(|_| Probe::default()).collect();
    let mut net = NetConfig::default();
    // 1 MB/s and 10 ms: a 1,000-byte ping takes 1 ms on the wire.
    net.tiers[0] = LinkSpec::new(10, 8, 0.0);
    Engine::new(
        topo,
        nodes,
        net,
        ShellConfig::free(),
        faults,
        Limits::default(),
        1,
    )
    .run()
}

#[test]
fn bandwidth_serialises_messages_on_a_link() {
    let (stats, nodes) = engine(&[]);
    // First ping: 1 ms transmit + 10 ms; the second waits for the first to leave.
    assert_eq!(nodes[1].log, vec![("message", 11_000), ("message", 12_000)]);
    assert_eq!(stats.link_bytes[0][1], 2_000);
    assert_eq!(stats.stop, StopReason::Quiescent);
}

#[test]
fn an_egress_cap_serialises_a_nodes_links() {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(2, 1, 1, 1), 1).unwrap());
    let run = |egress: Option<u64>| {
        let nodes: Vec<Fanned> = (0..topo.len()).map(|_| Fanned::default()).collect();
        let mut net = NetConfig::default();
        net.tiers[0] = LinkSpec::new(10, 8, 0.0);
        net.egress_bytes_per_s[0] = egress;
        let (_, nodes) = Engine::new(
            Arc::clone(&topo),
            nodes,
            net,
            ShellConfig::free(),
            &[],
            Limits::default(),
            1,
        )
        .run();
        [nodes[1].got, nodes[2].got]
    };
    // Separate links: both 1,000-byte pings arrive after 1 ms + 10 ms.
    assert_eq!(run(None), [Some(11_000), Some(11_000)]);
    // One 1 MB/s uplink for both: the second waits for the first.
    assert_eq!(run(Some(1_000_000)), [Some(11_000), Some(12_000)]);
    // A fat uplink: only its 1 µs (rounded up) per message.
    assert_eq!(run(Some(1 << 40)), [Some(11_000), Some(11_001)]);
}

/// The root pings both provinces at start; each records when its ping arrived.
#[derive(Default)]
struct Fanned {
    got: Option<Micros>,
}

impl SimNode for Fanned {
    type Msg = Ping;
    fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
        if ctx.me() == RegionCode::NATIONAL {
            ctx.send(RegionCode::parse("11").unwrap(), Ping(1_000));
            ctx.send(RegionCode::parse("12").unwrap(), Ping(1_000));
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
        self.got = Some(ctx.now_us());
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn on_crash(&mut self) {}
    fn on_restart(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn next_timer(&self) -> Option<Micros> {
        None
    }
}

#[test]
fn overlapping_faults_hold_a_node_until_the_last_ends() {
    let p = RegionCode::parse("11").unwrap();
    let faults = [
        Fault::Down {
            node: p,
            from_us: 0,
            until_us: 100_000,
        },
        Fault::Crash {
            node: p,
            at_us: 50_000,
            restart_us: 70_000,
        },
    ];
    let (stats, nodes) = engine(&faults);
    // Both pings refused (down); the crash inside the window still wipes state, and the
    // node comes back through a restart when the down window ends.
    assert_eq!(nodes[1].log, vec![("crash", 0), ("restart", 100_000)]);
    assert_eq!(stats.kinds["ping"].refused, 2);
}

/// A burst of control frames from one node to one peer, as the node once sent one want per
/// partition with a window of 1,024 one-group partitions.
struct Burst {
    frames: usize,
    got: usize,
    log: Vec<Micros>,
}

impl SimNode for Burst {
    type Msg = Ping;
    fn on_start(&mut self, ctx: &mut Ctx<'_, Ping>) {
        if ctx.me() == RegionCode::parse("11").unwrap() {
            for _ in 0..self.frames {
                ctx.send(RegionCode::NATIONAL, Ping(100));
            }
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
        self.got += 1;
        self.log.push(ctx.now_us());
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn on_crash(&mut self) {}
    fn on_restart(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn next_timer(&self) -> Option<Micros> {
        None
    }
}

/// A node that only records when it handled each message.
fn sink() -> Burst {
    Burst {
        frames: 0,
        got: 0,
        log: Vec::new(),
    }
}

fn burst(frames: usize, shell: ShellConfig) -> (Stats, usize) {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
    let nodes = (0..topo.len())
        .map(|_| Burst {
            frames,
            got: 0,
            log: Vec::new(),
        })
        .collect();
    let (stats, nodes) = Engine::new(
        topo,
        nodes,
        NetConfig::default(),
        shell,
        &[],
        Limits::default(),
        1,
    )
    .run();
    (stats, nodes[0].got)
}

/// The old per-partition pattern: 1,024 control frames at once to one peer. Without the
/// outbox every frame opens a stream at once, the connection passes the muxer's limit and
/// closes (the `TooManyStreams` of issue #13); through the outbox at most 32 are in flight
/// and all 1,024 arrive.
#[test]
fn the_outbox_keeps_a_burst_under_the_stream_limit() {
    use backflow_protocol::outbox::CONTROL_REQUESTS_IN_FLIGHT_MAX;
    let bypass = ShellConfig {
        control_outbox: false,
        ..ShellConfig::default()
    };
    let (stats, got) = burst(1_024, bypass);
    assert!(stats.control.connection_resets >= 1, "{:?}", stats.control);
    assert!(got < 1_024, "frames on the closed connection are lost");
    assert_eq!(
        stats.control.streams_max_per_connection as usize + NON_CONTROL_STREAMS_PER_CONNECTION,
        STREAMS_PER_CONNECTION_MAX + 1,
        "the stream that broke the limit"
    );
    let (stats, got) = burst(1_024, ShellConfig::default());
    assert_eq!(stats.control.connection_resets, 0);
    assert_eq!(got, 1_024);
    assert_eq!(
        stats.control.streams_max_per_direction as usize,
        CONTROL_REQUESTS_IN_FLIGHT_MAX
    );
    assert_eq!(
        stats.control.frames_queued as usize,
        1_024 - CONTROL_REQUESTS_IN_FLIGHT_MAX
    );
    assert!(stats.control.queue_wait_max_us > 0);
    // A burst within the limit is fine either way.
    let (stats, got) = burst(200, bypass);
    assert_eq!((stats.control.connection_resets, got), (0, 200));
}

/// Outbox timing by hand, free CPU: 10 ms links, a 100-byte ping takes 1 µs on 10 Gbit/s
/// (rounded up). 33 frames: 32 go at once; the 33rd waits for the first one's response,
/// one round trip (10,001 + 10,000 µs), then arrives 10,001 µs later.
#[test]
fn a_queued_frame_leaves_when_a_response_frees_a_slot() {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
    let nodes: Vec<Burst> = (0..topo.len()).map(|_| sink()).collect();
    let mut net = NetConfig::default();
    net.tiers[0] = LinkSpec::new(10, 10_000, 0.0);
    let mut engine = Engine::new(
        topo,
        nodes,
        net,
        ShellConfig::free(),
        &[],
        Limits::default(),
        1,
    );
    let national = 0;
    let province = RegionCode::parse("11").unwrap();
    for _ in 0..33 {
        engine.send(national, province, Ping(100), 0);
    }
    let (stats, nodes) = engine.run();
    let times = &nodes[1].log;
    assert_eq!(times.len(), 33);
    // Serialised on the link: 1 µs apart.
    assert_eq!(times[0], 10_001);
    assert_eq!(times[31], 10_032);
    // The first response is back at 10,001 + 10,000; the 33rd leaves then.
    assert_eq!(times[32], 20_001 + 10_001);
    assert_eq!(stats.control.queue_wait_max_us, 20_001);
}

/// A node's event loop handles one message at a time: two control messages arriving
/// together are handled `CONTROL_MESSAGE_CPU_US` apart, and a chunk frame's payload is
/// verified on the pool first.
#[test]
fn a_busy_node_handles_its_messages_one_after_another() {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(1, 1, 1, 1), 1).unwrap());
    let nodes: Vec<Burst> = (0..topo.len()).map(|_| sink()).collect();
    let mut net = NetConfig::default();
    net.tiers[0] = LinkSpec {
        latency_us: 10_000,
        bandwidth_bytes_per_s: 1 << 50,
        loss: 0.0,
    };
    let mut costs = Costs::free();
    costs.cores = 2;
    costs.control_message_cpu_us = 100;
    let shell = ShellConfig {
        costs,
        control_outbox: true,
    };
    let mut engine = Engine::new(topo, nodes, net, shell, &[], Limits::default(), 1);
    engine.send(0, RegionCode::parse("11").unwrap(), Ping(10), 0);
    engine.send(0, RegionCode::parse("11").unwrap(), Ping(10), 0);
    let (stats, nodes) = engine.run();
    // Both arrive at 10,001 (1 µs each on the wire, back to back: 10,001 and 10,002);
    // the handler runs after its 100 µs of receive work, the second after the first's.
    assert_eq!(nodes[1].log, vec![10_101, 10_201]);
    assert_eq!(stats.cpu_busy_us[1], 200);
}

/// Observes `DataComplete` when a province gets its first message.
#[derive(Default)]
struct Completes;

impl SimNode for Completes {
    type Msg = Ping;
    fn on_start(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn on_message(&mut self, ctx: &mut Ctx<'_, Ping>, _: RegionCode, _: Ping) {
        if ctx.me().level() == Level::Province {
            ctx.observe(Observation::DataComplete);
        }
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn on_crash(&mut self) {}
    fn on_restart(&mut self, _: &mut Ctx<'_, Ping>) {}
    fn next_timer(&self) -> Option<Micros> {
        None
    }
}

/// The CPU every node had used when the last province completed is kept apart from the
/// run's total (the window the node's `national` bench measures): work after it is not in it.
#[test]
fn cpu_is_snapshotted_when_the_last_province_completes() {
    let topo = Arc::new(Topology::synthetic(Fanout::fixed(2, 1, 1, 1), 1).unwrap());
    let provinces = topo.children(RegionCode::NATIONAL).to_vec();
    assert_eq!(provinces.len(), 2);
    let ix = |code: RegionCode| topo.codes().iter().position(|c| *c == code).unwrap();
    let (first, second) = (ix(provinces[0]), ix(provinces[1]));
    let nodes: Vec<Completes> = (0..topo.len()).map(|_| Completes).collect();
    let mut costs = Costs::free();
    costs.cores = 2;
    costs.control_message_cpu_us = 100;
    let shell = ShellConfig {
        costs,
        control_outbox: true,
    };
    let mut engine = Engine::new(
        Arc::clone(&topo),
        nodes,
        NetConfig::default(),
        shell,
        &[],
        Limits::default(),
        1,
    );
    engine.send(0, provinces[0], Ping(10), 0);
    engine.send(0, provinces[1], Ping(10), 1_000_000);
    // After both are complete: counted in the total, not in the snapshot.
    engine.send(0, provinces[0], Ping(10), 2_000_000);
    let (stats, _) = engine.run();
    assert_eq!(stats.provinces_complete, 2);
    assert_eq!(stats.cpu_busy_us[first], 200);
    assert_eq!(stats.cpu_at_all_provinces_us[first], 100);
    assert_eq!(stats.cpu_at_all_provinces_us[second], 100);
}
