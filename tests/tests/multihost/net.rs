//! One test's network: the nodes ([`Node`]), the private Docker network and the containers
//! ([`Net`]), and the wiring (`config.toml`) each node starts with.
//!
//! Containers and the network are removed when the [`Net`] drops — also when a test panics.
//! Certificates (`pki`), faults (`faults`) and commands against running nodes (`client`)
//! add their own `impl Net` blocks in their files, on top of this one.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::poll::{http, wait_for, Api};
use crate::suite::{Suite, IMAGE_NAME, IMAGE_TAG};

/// Inside every container: the data directory (a bind mount of a host temp dir), libp2p port,
/// and the HTTP API (bound on all of the container's interfaces so the test can poll it over
/// the private network; the CLI in the container reaches it as well).
pub const DATA_DIR: &str = "/data";
pub const P2P_PORT: u16 = 7400;
pub const HTTP_PORT: u16 = 7480;
/// Bound on a container's start.
const CONTAINER_START_S_MAX: u64 = 60;

/// A node's identity and host-side data directory.
pub struct Node {
    pub name: String,
    pub region: String,
    pub dir: PathBuf,
    pub public_key: String,
    pub peer_id: String,
    pub ip: Option<IpAddr>,
    pub container: Option<ContainerAsync<GenericImage>>,
}

impl Node {
    pub fn ip(&self) -> IpAddr {
        self.ip
            .unwrap_or_else(|| panic!("{} has not been started", self.name))
    }

    /// The node's libp2p address on the private network.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/{}/tcp/{P2P_PORT}/p2p/{}", self.ip(), self.peer_id)
    }

    /// The node's API: its address on the private network and the token `init` wrote.
    pub fn api(&self) -> Api {
        let token = std::fs::read_to_string(self.dir.join("api.token"))
            .unwrap_or_else(|e| panic!("{}'s api.token: {e}", self.name));
        Api {
            addr: SocketAddr::new(self.ip(), HTTP_PORT),
            token: token.trim().to_string(),
        }
    }

    pub fn container(&self) -> &ContainerAsync<GenericImage> {
        self.container
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no container", self.name))
    }

    /// The container's id.
    pub fn id(&self) -> String {
        self.container().id().to_string()
    }
}

/// One test's network: a temp dir with every node's data dir, a private Docker network, and
/// the nodes' containers.
pub struct Net {
    pub name: String,
    pub network: String,
    pub nodes: BTreeMap<String, Node>,
    pub anchor: String,
    pub suite: &'static Suite,
    /// `[tuning]` keys written into every node's config.toml at start (the node's own
    /// defaults otherwise).
    pub tuning: Vec<(&'static str, i64)>,
    // Dropped last: the containers (which write into it) go first.
    pub tmp: tempfile::TempDir,
}

static NET_SEQ: AtomicU64 = AtomicU64::new(0);

/// Options of a node's `config.toml` beyond what `init` writes.
#[derive(Default, Clone)]
pub struct Wiring {
    /// Overrides the parent address (default: the parent region's node).
    pub parent: Option<String>,
    /// Overrides the ancestors list (default: every further ancestor's node, nearest first).
    pub ancestors: Option<Vec<String>>,
    /// Extra environment variables for the node's process.
    pub env: Vec<(String, String)>,
}

impl Net {
    /// Creates the temp dir and a unique network name; no container yet.
    pub fn new(suite: &'static Suite, test: &str) -> Net {
        let seq = NET_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("bf-{test}-{}-{seq}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temp dir");
        Net {
            network: name.clone(),
            name,
            nodes: BTreeMap::new(),
            anchor: String::new(),
            suite,
            tuning: Vec::new(),
            tmp,
        }
    }

    /// The node whose region is `region`'s parent.
    pub fn parent_of(&self, region: &str) -> Option<&Node> {
        let p = parent_region(region)?;
        self.nodes.values().find(|n| n.region == p)
    }

    /// Every ancestor node of `region` present in this net, nearest first (parent included).
    pub fn ancestors_of(&self, region: &str) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut r = region.to_string();
        while let Some(p) = parent_region(&r) {
            if let Some(n) = self.nodes.values().find(|n| n.region == p) {
                out.push(n);
            }
            r = p;
        }
        out
    }

    /// Writes the node's wiring into its config.toml and starts its container; waits until
    /// its HTTP API answers.
    pub async fn start(&mut self, name: &str, wiring: Wiring) {
        let region = self.nodes[name].region.clone();
        let ups: Vec<String> = self
            .ancestors_of(&region)
            .iter()
            .map(|n| n.multiaddr())
            .collect();
        let parent = wiring.parent.or_else(|| ups.first().cloned());
        let ancestors = wiring
            .ancestors
            .unwrap_or_else(|| ups.iter().skip(1).cloned().collect());
        let node = self.nodes.get_mut(name).expect("node");
        write_wiring(&node.dir, parent.as_deref(), &ancestors, &self.tuning);
        let mut request = GenericImage::new(IMAGE_NAME, IMAGE_TAG)
            .with_wait_for(WaitFor::message_on_stdout("HTTP API on"))
            .with_network(self.network.clone())
            .with_container_name(format!("{}-{name}", self.name))
            .with_label("backflow.test", self.name.clone())
            .with_mount(Mount::bind_mount(
                node.dir.to_string_lossy().to_string(),
                DATA_DIR,
            ))
            // BACKFLOW_MULTIHOST_RUST_LOG (e.g. `debug,libp2p_relay=trace`) while debugging.
            .with_env_var(
                "RUST_LOG",
                std::env::var("BACKFLOW_MULTIHOST_RUST_LOG")
                    .unwrap_or_else(|_| "info,libp2p=warn".into()),
            )
            .with_env_var("NO_COLOR", "1")
            .with_cmd(["run", "--data", DATA_DIR])
            .with_startup_timeout(Duration::from_secs(CONTAINER_START_S_MAX));
        for (k, v) in wiring.env {
            request = request.with_env_var(k, v);
        }
        let container = request
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting container for {name} ({region}): {e}"));
        let ip = container
            .get_bridge_ip_address()
            .await
            .unwrap_or_else(|e| panic!("ip of {name}: {e}"));
        node.ip = Some(ip);
        node.container = Some(container);
        let api = node.api();
        wait_for(
            &format!("{name}'s HTTP API"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { http(&api, "GET", "/api/status", None).ok().map(|_| ()) }
            },
        )
        .await;
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A file in the node's data dir, as the test process sees it.
    pub fn host_path(&self, name: &str, file: &str) -> PathBuf {
        self.node(name).dir.join(file)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The nodes' own account of what happened, before the containers go.
            for node in self.nodes.values() {
                let Some(c) = &node.container else { continue };
                let out = Command::new("docker")
                    .args(["logs", "--tail", "60", c.id()])
                    .output();
                if let Ok(out) = out {
                    let _ = writeln!(
                        std::io::stderr(),
                        "---- {} ({}) last 60 log lines ----\n{}{}",
                        node.name,
                        node.region,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        // Containers are removed by testcontainers when they drop (the network with the
        // last of them). Drop them here, before the temp dir they write into.
        for node in self.nodes.values_mut() {
            node.container.take();
        }
    }
}

pub fn parent_region(region: &str) -> Option<String> {
    match region.len() {
        1 => None,
        2 => Some("0".into()),
        4 | 6 => Some(region[..region.len() - 2].to_string()),
        9 => Some(region[..6].to_string()),
        _ => panic!("not a region code: {region}"),
    }
}

/// Sets `parent` and `ancestors` in the node's config.toml (the rest is `init`'s).
pub fn write_wiring(
    dir: &Path,
    parent: Option<&str>,
    ancestors: &[String],
    tuning: &[(&'static str, i64)],
) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    let mut table: toml::Table = text.parse().expect("config.toml parses");
    match parent {
        Some(p) => {
            table.insert("parent".into(), toml::Value::String(p.to_string()));
        }
        None => {
            table.remove("parent");
        }
    }
    // The API listens on the container's interfaces so the test can reach it (token required).
    table.insert("http_allow_remote".into(), toml::Value::Boolean(true));
    table.insert(
        "ancestors".into(),
        toml::Value::Array(ancestors.iter().cloned().map(toml::Value::String).collect()),
    );
    if !tuning.is_empty() {
        let section: toml::Table = tuning
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::Integer(*v)))
            .collect();
        table.insert("tuning".into(), toml::Value::Table(section));
    }
    std::fs::write(&path, toml::to_string(&table).expect("toml")).expect("write config.toml");
}
