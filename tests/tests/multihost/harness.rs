//! Test harness: the node's image, a private Docker network per test, one container per node,
//! certificates issued down the chain, and `backflow` commands run inside the containers.
//!
//! Every wait is bounded and fails with a message naming what it waited for. Containers and
//! the network are removed when the [`Net`] drops — also when a test panics.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use testcontainers::core::{CmdWaitFor, ExecCommand, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The image the harness builds and runs.
pub const IMAGE_NAME: &str = "backflow-node";
pub const IMAGE_TAG: &str = "test";
/// Inside every container: the data directory (a bind mount of a host temp dir), libp2p port,
/// and the HTTP API (bound on all of the container's interfaces so the test can poll it over
/// the private network; the CLI in the container reaches it as well).
pub const DATA_DIR: &str = "/data";
pub const P2P_PORT: u16 = 7400;
pub const HTTP_PORT: u16 = 7480;
/// Bounds on waits that are not scenario-specific.
const CONTAINER_START_S_MAX: u64 = 60;
const EXEC_S_MAX: u64 = 120;
const HTTP_TIMEOUT_MS: u64 = 5_000;

/// What every scenario needs once: the binary, and its image built.
pub struct Suite {
    pub binary: PathBuf,
}

/// Scenarios share 2 cores: running them one at a time keeps their timing meaningful.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static SUITE: OnceLock<Result<Option<Suite>, String>> = OnceLock::new();
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Returns the suite, building the image if needed; `None` (after printing a SKIPPED line)
/// when Docker is unavailable outside CI. With `CI=true` and no Docker it panics: CI must not
/// pass a suite it did not run.
pub fn suite(test: &str) -> Option<&'static Suite> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let result = SUITE.get_or_init(|| {
        if let Err(why) = docker_available() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err(format!(
                    "CI=true but Docker is unavailable ({why}): the multi-host suite cannot run"
                ));
            }
            return Ok(None);
        }
        let binary = locate_binary()?;
        build_image(&binary)?;
        Ok(Some(Suite { binary }))
    });
    match result {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            // Written to the real stderr: libtest captures print!/eprint! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Docker is not available (set CI=true to make this an error)"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Holds the one-scenario-at-a-time lock for a test's lifetime.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn docker_available() -> Result<(), String> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run the docker CLI: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The `backflow` binary next to this test executable (target/<profile>/deps/.. → target/<profile>).
fn locate_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut candidates = Vec::new();
    if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
        candidates.push(profile_dir.join("backflow"));
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug/backflow"));
    }
    let binary = candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "no `backflow` binary at {candidates:?}: run `cargo build -p backflow-node --bin backflow` \
             (or `cargo test --workspace`, which builds it) before this suite"
        )
    })?;
    warn_if_stale(&binary);
    Ok(binary)
}

/// `cargo test -p backflow-tests` alone does not rebuild the node's binary: say so loudly if
/// the sources are newer than the binary under test.
fn warn_if_stale(binary: &Path) {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for dir in ["node/src", "protocol/src", "topology/src"] {
        visit(&workspace.join(dir), &mut |p| {
            if let Ok(t) = p.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, p.to_path_buf()));
                }
            }
        });
    }
    if let Some((t, p)) = newest {
        if t > built {
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: {} is newer than {}; the containers run the OLD binary. \
                 Run `cargo build -p backflow-node --bin backflow` first.",
                p.display(),
                binary.display()
            );
        }
    }
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            visit(&p, f);
        } else {
            f(&p);
        }
    }
}

/// Builds the image with tests/image/build.sh unless the image already carries this
/// binary's hash.
fn build_image(binary: &Path) -> Result<(), String> {
    // Streamed: a debug binary is ~500 MB.
    let file =
        std::fs::File::open(binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let id = blake3::Hasher::new()
        .update_reader(file)
        .map_err(|e| format!("hashing {}: {e}", binary.display()))?
        .finalize()
        .to_hex()
        .to_string();
    let image = format!("{IMAGE_NAME}:{IMAGE_TAG}");
    let current = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"backflow.binary\"}}",
            &image,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if current.status.success() && String::from_utf8_lossy(&current.stdout).trim() == id {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/build.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(binary)
        .arg(&image)
        .env("BACKFLOW_BINARY_ID", &id)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "built image {image} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the host's `backflow` binary (setup only: key generation and certificate issuing,
/// exactly as an operator does it before a node's first start).
pub fn host_backflow(suite: &Suite, args: &[&str]) -> String {
    let out = Command::new(&suite.binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", suite.binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "`backflow {}` failed: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

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

    pub fn api(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), HTTP_PORT)
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

    /// `backflow init` for a node (the first node initialised must be national: its key is
    /// the trust anchor).
    pub fn init(&mut self, name: &str, region: &str) {
        let anchor = if region == "0" {
            None
        } else {
            assert!(
                !self.anchor.is_empty(),
                "initialise the national node first"
            );
            Some(self.anchor.clone())
        };
        let node = init_node(self.suite, self.tmp.path(), name, region, anchor.as_deref());
        if region == "0" {
            self.anchor = node.public_key.clone();
        }
        self.nodes.insert(name.to_string(), node);
    }

    /// The parent region's node issues `child`'s certificate, and the child installs it.
    pub fn certify(&self, child: &str) {
        let c = &self.nodes[child];
        let parent = self
            .parent_of(&c.region)
            .unwrap_or_else(|| panic!("no parent node for {}", c.region));
        issue_and_install(self.suite, parent, c);
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
            .with_env_var("RUST_LOG", "info,libp2p=warn")
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
            || async move { http(api, "GET", "/api/status", None).ok().map(|_| ()) },
        )
        .await;
    }

    /// Initialises, certifies and starts the given nodes, top-down (they must be listed
    /// parent before child).
    pub async fn bring_up(&mut self, nodes: &[(&str, &str)]) {
        for (name, region) in nodes {
            self.init(name, region);
            if *region != "0" {
                self.certify(name);
            }
        }
        for (name, _) in nodes {
            self.start(name, Wiring::default()).await;
        }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Runs `backflow ARGS --data /data` inside `name`'s container; returns stdout. Panics
    /// (with stdout and stderr) on a non-zero exit.
    pub async fn cli(&self, name: &str, args: &[&str]) -> String {
        let (code, out, err) = self.cli_status(name, args).await;
        assert_eq!(
            code,
            0,
            "`backflow {}` in {name} exited {code}:\n{out}\n{err}",
            args.join(" ")
        );
        out
    }

    /// Like [`Net::cli`] but returns (exit code, stdout, stderr).
    pub async fn cli_status(&self, name: &str, args: &[&str]) -> (i64, String, String) {
        let mut cmd = vec!["/backflow"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&["--data", DATA_DIR]);
        exec(self.node(name).container(), &cmd).await
    }

    /// GET/POST the node's HTTP API from the test process (over the private network).
    pub fn api(&self, name: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
        let node = self.node(name);
        http(node.api(), method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {name}: {e}"))
    }

    /// The node's `/api/status?dataset=` entry for `dataset`, if it holds it.
    pub fn dataset_status(&self, name: &str, dataset: &str) -> Option<Value> {
        let node = self.node(name);
        let v = http(
            node.api(),
            "GET",
            &format!("/api/status?dataset={dataset}"),
            None,
        )
        .ok()?;
        v.as_array()?
            .iter()
            .find(|d| d["dataset"] == dataset)
            .cloned()
    }

    /// A file in the node's data dir, as the test process sees it.
    pub fn host_path(&self, name: &str, file: &str) -> PathBuf {
        self.node(name).dir.join(file)
    }

    /// Container logs (stdout + stderr) so far.
    pub async fn logs(&self, name: &str) -> String {
        let c = self.node(name).container();
        let mut s =
            String::from_utf8_lossy(&c.stdout_to_vec().await.unwrap_or_default()).to_string();
        s.push_str(&String::from_utf8_lossy(
            &c.stderr_to_vec().await.unwrap_or_default(),
        ));
        s
    }

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
            || async move { http(api, "GET", "/api/status", None).ok().map(|_| ()) },
        )
        .await;
    }

    /// The host-side veth of the node's container (its traffic *into* the container leaves
    /// the bridge through it). Resolved over netlink (`ip`), which — unlike /sys, whose view
    /// belongs to the mount namespace — answers for the namespace it runs in.
    pub fn host_veth(&self, name: &str) -> String {
        let pid = docker_output(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.node(name).id(),
        ]);
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

pub fn parent_region(region: &str) -> Option<String> {
    match region.len() {
        1 => None,
        2 => Some("0".into()),
        4 | 6 => Some(region[..region.len() - 2].to_string()),
        9 => Some(region[..6].to_string()),
        _ => panic!("not a region code: {region}"),
    }
}

/// `backflow init` on the host into `<root>/<name>`.
pub fn init_node(
    suite: &Suite,
    root: &Path,
    name: &str,
    region: &str,
    anchor: Option<&str>,
) -> Node {
    let dir = root.join(name);
    let dir_s = dir.to_string_lossy().to_string();
    let listen = format!("/ip4/0.0.0.0/tcp/{P2P_PORT}");
    let http_addr = format!("0.0.0.0:{HTTP_PORT}");
    let mut args = vec![
        "init", "--data", &dir_s, "--region", region, "--listen", &listen, "--http", &http_addr,
    ];
    if let Some(a) = anchor {
        args.extend_from_slice(&["--anchor", a]);
    }
    let out = host_backflow(suite, &args);
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("`backflow init` printed no {label:?} line:\n{out}"))
    };
    Node {
        name: name.to_string(),
        region: region.to_string(),
        public_key: field("public key:"),
        peer_id: field("peer id:"),
        dir,
        ip: None,
        container: None,
    }
}

/// `parent` signs `child`'s certificate; `child` installs (and thereby verifies) it.
pub fn issue_and_install(suite: &Suite, parent: &Node, child: &Node) {
    let chain = child.dir.join("issued.chain");
    host_backflow(
        suite,
        &[
            "cert",
            "issue",
            "--data",
            &parent.dir.to_string_lossy(),
            "--region",
            &child.region,
            "--key",
            &child.public_key,
            "--out",
            &chain.to_string_lossy(),
        ],
    );
    host_backflow(
        suite,
        &[
            "cert",
            "install",
            "--data",
            &child.dir.to_string_lossy(),
            &chain.to_string_lossy(),
        ],
    );
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

/// Runs a command in a container; returns (exit code, stdout, stderr). Bounded.
pub async fn exec(container: &ContainerAsync<GenericImage>, cmd: &[&str]) -> (i64, String, String) {
    let run = async {
        let mut res = container
            .exec(
                ExecCommand::new(cmd.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit()),
            )
            .await
            .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
        let out = res.stdout_to_vec().await.unwrap_or_default();
        let err = res.stderr_to_vec().await.unwrap_or_default();
        let code = res.exit_code().await.ok().flatten().unwrap_or(-1);
        (
            code,
            String::from_utf8_lossy(&out).to_string(),
            String::from_utf8_lossy(&err).to_string(),
        )
    };
    tokio::time::timeout(Duration::from_secs(EXEC_S_MAX), run)
        .await
        .unwrap_or_else(|_| panic!("exec {cmd:?} did not finish within {EXEC_S_MAX} s"))
}

/// A minimal HTTP/1.0 JSON client for the nodes' APIs on the private network.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let timeout = Duration::from_millis(HTTP_TIMEOUT_MS);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("non-JSON ({code}): {e}: {body}"))?;
    if code >= 400 {
        return Err(format!("HTTP {code}: {v}"));
    }
    Ok(v)
}

/// Polls `probe` every 250 ms until it returns `Some`, for at most `limit`; panics with
/// `what` on timeout. No blind sleeps: the wait ends as soon as the condition holds.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
