//! Faults injected into a running [`Net`]: partitions (`docker network disconnect`), SIGKILL
//! and restart, and link shaping with `tc` on a container's host-side veth (whose counters
//! also measure the bytes a node received).
//!
//! The only harness file that touches host networking (`tc`, `nsenter`, `ip`); it refuses to
//! touch any interface but a container's veth.

use std::process::Command;
use std::time::Duration;

use crate::net::Net;
use crate::poll::{http, wait_for};

impl Net {
    /// Docker CLI against this test's network only.
    pub fn docker(&self, args: &[&str]) {
        let out = Command::new("docker")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("docker {args:?}: {e}"));
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts the node off this test's network (a partition), or reconnects it.
    pub fn disconnect(&self, name: &str) {
        self.docker(&[
            "network",
            "disconnect",
            &self.network,
            &self.node(name).id(),
        ]);
    }

    pub fn reconnect(&self, name: &str) {
        let node = self.node(name);
        self.docker(&["network", "connect", &self.network, &node.id()]);
        // Its children dial the old address; Docker hands the freed address back, and this
        // checks it (`--ip` would need a network with a user-configured subnet).
        let ip = docker_output(&[
            "inspect",
            "--format",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                self.network
            ),
            &node.id(),
        ]);
        assert_eq!(
            ip.trim(),
            node.ip().to_string(),
            "{name} came back at another address; its children dial the old one"
        );
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    pub fn kill(&self, name: &str) {
        self.docker(&["kill", "--signal", "KILL", &self.node(name).id()]);
    }

    /// Starts a stopped/killed container again (same data dir, same config) and waits for
    /// its API. Asserts it came back at its old address (its peers dial that address).
    pub async fn restart(&mut self, name: &str) {
        let node = self.nodes.get_mut(name).expect("node");
        let before = node.ip();
        node.container()
            .start()
            .await
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        let after = node
            .container()
            .get_bridge_ip_address()
            .await
            .unwrap_or_else(|e| panic!("ip of {name}: {e}"));
        assert_eq!(
            after, before,
            "{name} came back at another address; its children dial the old one"
        );
        let api = node.api();
        wait_for(
            &format!("{name}'s HTTP API after restart"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { http(&api, "GET", "/api/status", None).ok().map(|_| ()) }
            },
        )
        .await;
    }

    /// The process id of the node's container (to enter its network namespace).
    fn container_pid(&self, name: &str) -> String {
        docker_output(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.node(name).id(),
        ])
    }

    /// The host-side veth of the node's container (its traffic *into* the container leaves
    /// the bridge through it). Resolved over netlink (`ip`), which — unlike /sys, whose view
    /// belongs to the mount namespace — answers for the namespace it runs in.
    pub fn host_veth(&self, name: &str) -> String {
        let pid = self.container_pid(name);
        let out = Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "ip", "-o", "link"])
            .output()
            .expect("nsenter");
        assert!(
            out.status.success(),
            "nsenter into {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "NN: eth0@ifMM: <...>": MM is the host-side peer's index. (After a reconnect the
        // interface may be eth1: take the one veth the container has.)
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let peer_index = text
            .lines()
            .find_map(|l| {
                l.split_once("@if")
                    .and_then(|(_, rest)| rest.split(':').next())
            })
            .unwrap_or_else(|| panic!("no veth peer in {name}'s `ip link`: {text}"))
            .to_string();
        let host = Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link");
        let host = String::from_utf8_lossy(&host.stdout).to_string();
        let veth = host
            .lines()
            .find_map(|l| {
                let (idx, rest) = l.split_once(": ")?;
                (idx.trim() == peer_index)
                    .then(|| rest.split(['@', ':']).next().map(str::to_string))?
            })
            .unwrap_or_else(|| {
                panic!("no host interface with index {peer_index} (the veth of {name})")
            });
        // Never shape or read anything but a container's veth.
        assert!(
            veth.starts_with("veth"),
            "resolved {name}'s host interface to {veth:?}, which is not a veth; refusing to touch it"
        );
        veth
    }

    /// No route between two nodes, both ways, while both keep their links to everyone else:
    /// a blackhole route to the other's address in each container's network namespace (as
    /// two data centres whose private networks do not reach each other). Each sees its
    /// packets to the other dropped at once.
    pub fn cut_between(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            let pid = self.container_pid(from);
            let target = format!("{}/32", self.node(to).ip());
            let out = Command::new("nsenter")
                .args([
                    "-t",
                    pid.trim(),
                    "-n",
                    "ip",
                    "route",
                    "add",
                    "blackhole",
                    &target,
                ])
                .output()
                .expect("nsenter");
            assert!(
                out.status.success(),
                "cutting {from} off {to} (ip route in {from}'s namespace) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Whether a TCP connection from `from`'s network namespace to `to`'s libp2p port opens
    /// (within 3 s).
    pub fn can_connect(&self, from: &str, to: &str) -> bool {
        let pid = self.container_pid(from);
        let probe = format!(
            "exec 3<>/dev/tcp/{}/{}",
            self.node(to).ip(),
            crate::net::P2P_PORT
        );
        Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "timeout", "3", "bash", "-c", &probe])
            .output()
            .expect("nsenter")
            .status
            .success()
    }

    /// Bytes the container has received through its current veth, with that veth's
    /// identity (name, ifindex): a restart may or may not replace the veth, and a replaced
    /// one counts from zero.
    pub fn rx_bytes_on(&self, name: &str) -> (String, u64, u64) {
        let veth = self.host_veth(name);
        let read = |f: &str| -> u64 {
            std::fs::read_to_string(format!("/sys/class/net/{veth}/{f}"))
                .unwrap_or_else(|e| panic!("{veth}/{f}: {e}"))
                .trim()
                .parse()
                .expect("a number")
        };
        let index = read("ifindex");
        let bytes = read("statistics/tx_bytes");
        (veth, index, bytes)
    }

    pub fn rx_bytes(&self, name: &str) -> u64 {
        self.rx_bytes_on(name).2
    }

    /// Removes any rate limit from the node's current veth.
    pub fn unthrottle(&self, name: &str) {
        let veth = self.host_veth(name);
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", &veth, "root"])
            .output();
    }

    /// Limits the rate of traffic into the node's container (token bucket on its host veth),
    /// so a transfer lasts long enough to interrupt.
    pub fn throttle(&self, name: &str, kbit: u64) {
        let veth = self.host_veth(name);
        let rate = format!("{kbit}kbit");
        let out = Command::new("tc")
            .args([
                "qdisc", "replace", "dev", &veth, "root", "tbf", "rate", &rate, "burst", "32kb",
                "latency", "200ms",
            ])
            .output()
            .expect("tc");
        assert!(
            out.status.success(),
            "throttling {name} with tc on {veth} failed (needs tc and NET_ADMIN on the host): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn docker_output(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
