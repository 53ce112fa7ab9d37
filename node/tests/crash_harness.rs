//! Crash harness (issue #15, item 4): `kill -9` the publishing and the receiving nodes at 100+
//! seeded random points — during a publish, during the transfer, around the receipt — restart
//! them, and check that nothing acknowledged is lost and that, once the killing stops, every
//! township completes with verified content.
//!
//! Black-box: real `backflow` processes on 127.0.0.1 TCP ports, built with the documented CLI
//! only (`topology children`, `root init`, `init`, `root certify`, `cert issue`,
//! `cert install`, `run`, `publish`, `export`); statuses are read as `backflow status --json`
//! reads them, from the documented `GET /api/status` with the node's token (straight over
//! HTTP: a CLI process per poll cost ~0.1 CPU-s, which the daemons need). Three daemons run:
//! - the national node (region 0), the publisher;
//! - 北京 (11), its child;
//! - 东华门街道 (110101001), a township of 东城区, whose upstream (`--parent`) is the province.
//!   `cert issue` certifies only a region child, so its chain runs through 市辖区 (1101) and
//!   东城区 (110101) as the real tree does; those two are data directories that certify and
//!   never run. The province reaches the township by the protocol's downward skip-level
//!   fallback (a silent city is bypassed towards its counties, a silent county towards its
//!   townships); the township fetches and sends its receipts by the upward one.
//!
//! Besides the CLI, each `config.toml` gets the documented `[tuning]` keys `retry_ms`,
//! `source_silence_ms_max` and `receipt_interval_ms` set short, so retries and those
//! fallbacks take about a second rather than minutes.
//!
//! The dataset: records routed (by 9-digit township code) to the 32 townships of 东城区 and
//! 西城区; three partitions (the township node's among them) are 220–550 KB, so they are
//! stored in content files, the rest a few KB each (inline in RocksDB). Every publish changes
//! one to four records, so successive versions differ in a few partitions.
//!
//! Each step (kind, victims and delays drawn from a seeded RNG: the seed is printed and
//! `BACKFLOW_CRASH_SEED` replays a plan — timing is real, so a replay hits nearby moments, not
//! identical ones) kills with SIGKILL (`Child::kill`) and restarts with the same `run --data`:
//! - *publish*: national while `backflow publish` runs against it (sometimes a receiver too);
//! - *transfer*: after a publish returned, a receiver (or the national node, its source) after
//!   a random delay, sometimes two nodes;
//! - *receipt*: the township as soon as the publisher shows its signed receipt for the latest
//!   version, or a receiver (province or township) the moment its own status shows that
//!   version held — complete or just before — each together with its upstream.
//!
//! Checked ("nothing acknowledged is lost"):
//! 1. after every restart of national, its status holds the dataset at a version at least
//!    every version a publish returned (and every version it showed before);
//! 2. a receiver killed after the publisher showed its receipt for v (the township), or after
//!    its own status said v was held complete (`held_complete`: "all stored and verified"),
//!    holds v complete, or a later version, when restarted alone — its upstream is killed with
//!    it and restarted only after that check, so nothing can be fetched again meanwhile;
//! 3. at the end, within 90 s, every node holds the latest version complete and the publisher
//!    has the township's receipt for it; `export` (which verifies every partition against the
//!    signed manifest) at national, province and township writes exactly the records that
//!    version published for its region. That version may be one a killed publish made durable
//!    without answering: each version is matched to the publish attempt that made it.
//!
//! Every wait is for a condition with a deadline, and fails naming what did not happen (with
//! the tail of each daemon's log and the regions each is connected to); waits poll statuses
//! every 25 ms (see `POLL`). Steps run in seeded shuffles of ten (four publish, three
//! transfer, three receipt) until 100 nodes were killed; at least 20 kill points in each phase
//! and 15 of each node are asserted (a phase the timing missed fails the run). The summary —
//! seed, kill points per phase and per node, versions, elapsed — is printed with `eprintln!`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_backflow");
const DATASET: &str = "crash";
const DEFAULT_SEED: u64 = 1_504;
const KILLS_MIN: usize = 100;
const KILLS_PER_PHASE_MIN: usize = 20;
const KILLS_PER_NODE_MIN: usize = 15;
/// The township that runs a node; its partition is one of the large ones.
const TOWNSHIP: &str = "110101001";
/// The counties whose townships the records go to (东城区, 西城区).
const COUNTIES: [&str; 2] = ["110101", "110102"];
const HEADER: &str = "id,township,payload\n";
/// `[tuning]` for every node: fallbacks after a second of silence, not a minute.
const TUNING: [(&str, i64); 3] = [
    ("retry_ms", 250),
    ("source_silence_ms_max", 1_000),
    ("receipt_interval_ms", 100),
];

const NAT: usize = 0;
const PROV: usize = 1;
const TOWN: usize = 2;
const NAMES: [&str; 3] = ["national", "province", "township"];
const REGIONS: [&str; 3] = ["0", "11", TOWNSHIP];

const PHASES: [&str; 3] = ["publish", "transfer", "receipt"];
const PUBLISH: usize = 0;
const TRANSFER: usize = 1;
const RECEIPT: usize = 2;

/// A daemon's HTTP API comes up within this after `run`.
const START_MAX: Duration = Duration::from_secs(30);
/// A step's condition (a version held, a receipt at the publisher) holds within this.
const STEP_WAIT_MAX: Duration = Duration::from_secs(45);
/// After the last kill, every node holds the latest version within this.
const FINAL_WAIT_MAX: Duration = Duration::from_secs(90);
/// How often a wait polls a node's status. Fast on purpose: a node's event loop once re-armed
/// its housekeeping sleep on every event, so an API asked something more often than once a
/// second kept the node from ever redialling a restarted upstream — this harness found that.
const POLL: Duration = Duration::from_millis(25);

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn backflow(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running backflow")
}

fn ok(args: &[&str]) -> String {
    let out = backflow(args);
    assert!(
        out.status.success(),
        "`backflow {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value printed after `label` on a line of `out`.
fn printed(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

/// A free loopback port below the kernel's ephemeral range, so that no outgoing connection
/// takes it while its node is down between a kill and the restart.
fn fixed_port(taken: &mut Vec<u16>) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let mut rng = rand::thread_rng();
    for _ in 0..1_000 {
        let port = rng.gen_range(10_000..ephemeral_low.max(10_100));
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_low}");
}

/// The 9-digit township codes below `county`, from the embedded division table.
fn townships_of(county: &str) -> Vec<String> {
    ok(&["topology", "children", county])
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|c| c.len() == 9)
        .map(str::to_string)
        .collect()
}

fn payload(rng: &mut StdRng, generation: u64) -> String {
    let noise: String = rng
        .sample_iter(&Alphanumeric)
        .take(84)
        .map(char::from)
        .collect();
    format!("g{generation:04}-{noise}")
}

/// The published records: per record (its id is its place in the file), its township (an
/// index into `townships`) and payload.
struct Dataset {
    townships: Vec<String>,
    records: Vec<(usize, String)>,
    generation: u64,
}

impl Dataset {
    fn new(townships: Vec<String>, rng: &mut StdRng) -> Dataset {
        let node = townships
            .iter()
            .position(|t| t == TOWNSHIP)
            .expect("the township node's code among the townships");
        let mut large = vec![node];
        while large.len() < 3 {
            let t = rng.gen_range(0..townships.len());
            if !large.contains(&t) {
                large.push(t);
            }
        }
        let mut records = Vec::new();
        for t in 0..townships.len() {
            // ~100 bytes a line: 220–550 KB (content files) or 1.5–5 KB (inline).
            let n = if large.contains(&t) {
                rng.gen_range(2_200..5_500)
            } else {
                rng.gen_range(15..50)
            };
            records.extend((0..n).map(|_| (t, payload(rng, 0))));
        }
        records.shuffle(rng);
        Dataset {
            townships,
            records,
            generation: 0,
        }
    }

    /// The next version: one to four records of random townships change.
    fn change(&mut self, rng: &mut StdRng) {
        self.generation += 1;
        for _ in 0..rng.gen_range(1..=4) {
            let t = rng.gen_range(0..self.townships.len());
            let of_t: Vec<usize> = (0..self.records.len())
                .filter(|&i| self.records[i].0 == t)
                .collect();
            let i = *of_t.choose(rng).expect("every township has records");
            self.records[i].1 = payload(rng, self.generation);
        }
    }

    fn csv(&self) -> Vec<u8> {
        let mut out = HEADER.to_string();
        for (id, (t, p)) in self.records.iter().enumerate() {
            out.push_str(&format!("{id},{},{p}\n", self.townships[*t]));
        }
        out.into_bytes()
    }
}

/// What `export` at `region` must write for a published `csv`: the header, then the
/// partitions inside `region` in region-code order, each in published line order.
fn expected_export(csv: &[u8], region: &str) -> Vec<u8> {
    let text = std::str::from_utf8(csv).expect("generated CSV is UTF-8");
    let mut lines = text.split_inclusive('\n');
    let mut out = lines.next().expect("a header").to_string();
    let mut partitions: BTreeMap<&str, String> = BTreeMap::new();
    for line in lines {
        let township = line.split(',').nth(1).expect("a township field");
        if region == "0" || township.starts_with(region) {
            partitions.entry(township).or_default().push_str(line);
        }
    }
    out.extend(partitions.into_values());
    out.into_bytes()
}

/// Where two byte strings first differ, as line numbers and text, for a failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let got = String::from_utf8_lossy(got);
    let want = String::from_utf8_lossy(want);
    let (mut g, mut w) = (got.lines(), want.lines());
    for n in 1.. {
        match (g.next(), w.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => return format!("line {n}: got {a:?}, want {b:?}"),
        }
    }
    "identical lines, different line endings".into()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A node's view of the dataset, from its status (what `backflow status --json` prints).
#[derive(Debug, Clone, Copy)]
struct Held {
    version: u64,
    /// `held_complete`: every partition of the node's subtree stored and verified here.
    complete: bool,
    /// `regions_delivered`: partitions of this version that signed receipts attest (national
    /// and the province have none of their own, so ≥ 1 there is the township's receipt).
    receipted: u64,
}

impl Held {
    fn at_least(held: Option<Held>, version: u64, complete: bool) -> bool {
        held.is_some_and(|h| {
            h.version > version || (h.version == version && (h.complete || !complete))
        })
    }
}

fn parse_status(json: &str) -> Result<Option<Held>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("status is not JSON ({e}): {json}"))?;
    let list = v
        .as_array()
        .ok_or_else(|| format!("status is not a list: {json}"))?;
    let Some(d) = list.iter().find(|d| d["dataset"] == DATASET) else {
        return Ok(None);
    };
    let field = |name: &str| d[name].as_u64().ok_or_else(|| format!("no {name} in {d}"));
    Ok(Some(Held {
        version: field("version")?,
        complete: d["held_complete"]
            .as_bool()
            .ok_or_else(|| format!("no held_complete in {d}"))?,
        receipted: field("regions_delivered")?,
    }))
}

/// One daemon: its data directory and, while it runs, its process (killed when dropped).
struct Node {
    name: &'static str,
    data: PathBuf,
    http: SocketAddr,
    log: PathBuf,
    process: Option<Child>,
}

impl Node {
    fn start(&mut self) -> Result<(), String> {
        assert!(self.process.is_none(), "{} already runs", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the node's log");
        let mut child = Command::new(BIN)
            .args(["run", "--data", s(&self.data)])
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting backflow run");
        let t = Instant::now();
        while TcpStream::connect_timeout(&self.http, Duration::from_millis(200)).is_err() {
            if let Some(exit) = child.try_wait().expect("polling the daemon") {
                return Err(format!("the {} daemon exited on start: {exit}", self.name));
            }
            if t.elapsed() > START_MAX {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the {} daemon's HTTP API did not come up in {START_MAX:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = Some(child);
        Ok(())
    }

    /// SIGKILL (`Child::kill` on Unix), never a graceful stop.
    fn kill(&mut self) {
        let mut child = self
            .process
            .take()
            .unwrap_or_else(|| panic!("killing the {}, which is not running", self.name));
        child.kill().expect("kill -9");
        child.wait().expect("reaping the killed daemon");
    }

    /// The node's view of the dataset (`None`: not held), or why the status request failed:
    /// `GET /api/status?dataset=` with the node's token, as `backflow status --json` asks it.
    fn held(&self) -> Result<Option<Held>, String> {
        let token = std::fs::read_to_string(self.data.join("api.token"))
            .map_err(|e| format!("reading the API token: {e}"))?;
        let body = http_get(
            self.http,
            &format!("/api/status?dataset={DATASET}"),
            token.trim(),
        )
        .map_err(|e| format!("status at the {}: {e}", self.name))?;
        parse_status(&body)
    }

    /// The regions of the peers connected now (`GET /api/peers`), for failure messages.
    fn peers(&self) -> String {
        if self.process.is_none() {
            return "(not running)".into();
        }
        let token = std::fs::read_to_string(self.data.join("api.token")).unwrap_or_default();
        match http_get(self.http, "/api/peers", token.trim()) {
            Ok(body) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let regions: Vec<String> = v
                        .as_array()?
                        .iter()
                        .map(|p| p["region"].as_str().unwrap_or("unadmitted").to_string())
                        .collect();
                    Some(format!("[{}]", regions.join(", ")))
                })
                .unwrap_or(body),
            Err(e) => e,
        }
    }
}

/// One `GET` to a node's API (HTTP/1.1, `Connection: close`); the body of a 200 response.
fn http_get(addr: SocketAddr, path: &str, token: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(35)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {addr}: {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{status}: {body}"));
    }
    Ok(body.to_string())
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A publish attempt: the CLI child and which CSV it sends.
struct Publishing {
    cli: Child,
    attempt: usize,
    started: Instant,
}

struct Harness {
    seed: u64,
    rng: StdRng,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    data: Dataset,
    /// Every publish attempt's CSV.
    attempts: Vec<Vec<u8>>,
    /// The attempt each version national has shown came from.
    versions: BTreeMap<u64, usize>,
    /// The highest version a `publish` returned.
    acked: u64,
    /// The latest attempt that did not return: its version may exist at national or not.
    unanswered: Option<usize>,
    /// How long the latest successful publish took (the range of kill delays during one).
    publish_time: Duration,
    /// Kill points, per phase and node.
    kills: [[usize; 3]; 3],
    /// Versions whose receipt or completeness was checked after a kill (invariant 2).
    survived: usize,
    /// Versions made by a publish that was killed before it answered.
    unanswered_versions: usize,
    /// The kinds of the next steps.
    plan: Vec<usize>,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut rng = StdRng::seed_from_u64(seed);
        let townships: Vec<String> = COUNTIES.into_iter().flat_map(townships_of).collect();
        assert!(
            (20..=40).contains(&townships.len()),
            "{} townships in {COUNTIES:?}",
            townships.len()
        );
        let data = Dataset::new(townships, &mut rng);
        let nodes = build_network(dir.path());
        Harness {
            seed,
            rng,
            dir,
            nodes,
            data,
            attempts: Vec::new(),
            versions: BTreeMap::new(),
            acked: 0,
            unanswered: None,
            publish_time: Duration::from_millis(300),
            kills: [[0; 3]; 3],
            survived: 0,
            unanswered_versions: 0,
            plan: Vec::new(),
        }
    }

    /// Panics with `msg`, the seed and the tail of every daemon's log.
    fn fail(&self, msg: impl Display) -> ! {
        for n in &self.nodes {
            eprintln!(
                "---- last lines of the {} log ({}) ----",
                n.name,
                n.log.display()
            );
            eprintln!("{}", log_tail(&n.log, 30));
        }
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{} → {}", n.name, n.peers()))
            .collect();
        panic!(
            "crash harness, seed {}: {msg}\nconnected regions now: {}",
            self.seed,
            peers.join("; ")
        );
    }

    fn total_kills(&self) -> usize {
        self.kills.iter().flatten().sum()
    }

    fn latest(&self) -> u64 {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }

    fn start(&mut self, i: usize) {
        if let Err(e) = self.nodes[i].start() {
            self.fail(e);
        }
        if i == NAT {
            self.check_national();
        }
    }

    fn kill(&mut self, i: usize, phase: usize) {
        self.nodes[i].kill();
        self.kills[phase][i] += 1;
    }

    /// Restarts the killed nodes, in random order.
    fn restart(&mut self, mut killed: Vec<usize>) {
        killed.shuffle(&mut self.rng);
        for i in killed {
            self.start(i);
        }
    }

    /// The running node's view; it must answer.
    fn held_now(&self, i: usize) -> Option<Held> {
        self.nodes[i].held().unwrap_or_else(|e| self.fail(e))
    }

    /// Polls until `probe` gives a value, or fails naming `what`.
    fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut(&Self) -> Result<Option<T>, String>,
    ) -> T {
        let t = Instant::now();
        let mut last = String::new();
        loop {
            match probe(self) {
                Ok(Some(v)) => return v,
                Ok(None) => {}
                Err(e) => last = e,
            }
            if t.elapsed() > limit {
                self.fail(format!(
                    "timed out after {limit:?} waiting for {what} (last status error: {last:?})"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Invariant 1, after every restart of national: it still holds every version a publish
    /// returned, and every version it showed before; a new version is the unanswered attempt's.
    fn check_national(&mut self) {
        let held = self.held_now(NAT);
        let latest = self.latest();
        let version = held.map_or(0, |h| h.version);
        if version < self.acked {
            self.fail(format!(
                "invariant 1: a publish returned v{}, but after a kill -9 and a restart national \
                 shows {held:?}",
                self.acked
            ));
        }
        if version < latest {
            self.fail(format!(
                "national showed v{latest} before a kill -9, and {held:?} after the restart"
            ));
        }
        if version > latest {
            match self.unanswered {
                Some(attempt) => {
                    self.versions.insert(version, attempt);
                    self.unanswered_versions += 1;
                }
                None => self.fail(format!(
                    "national holds v{version}, which no publish attempt made (latest v{latest})"
                )),
            }
        }
        self.unanswered = None;
    }

    fn spawn_publish(&mut self) -> Publishing {
        self.data.change(&mut self.rng);
        let csv = self.data.csv();
        let path = self.dir.path().join("publish.csv");
        std::fs::write(&path, &csv).expect("writing the CSV");
        self.attempts.push(csv);
        let cli = Command::new(BIN)
            .args([
                "publish",
                "--data",
                s(&self.nodes[NAT].data),
                "--dataset",
                DATASET,
                "--region-field",
                "township",
                s(&path),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting backflow publish");
        Publishing {
            cli,
            attempt: self.attempts.len() - 1,
            started: Instant::now(),
        }
    }

    /// The version a publish returned, recorded as acknowledged; its error if it failed.
    fn finish_publish(&mut self, p: Publishing) -> Result<u64, String> {
        let out = p
            .cli
            .wait_with_output()
            .expect("waiting for backflow publish");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            self.unanswered = Some(p.attempt);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let version = stdout
            .split(&format!("published {DATASET} v"))
            .nth(1)
            .and_then(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| self.fail(format!("no version in the publish report: {stdout}")));
        if version <= self.latest() {
            self.fail(format!(
                "a publish returned v{version}, not above v{} held before",
                self.latest()
            ));
        }
        self.versions.insert(version, p.attempt);
        self.acked = version;
        self.unanswered = None;
        Ok(version)
    }

    /// A publish nothing interrupts: it must succeed.
    fn publish(&mut self) -> u64 {
        let p = self.spawn_publish();
        let started = p.started;
        let out = self.finish_publish(p);
        let version = out.unwrap_or_else(|e| {
            self.fail(format!(
                "a publish to the running national node failed: {e}"
            ))
        });
        self.publish_time = started.elapsed();
        version
    }

    /// Kills national while a publish runs against it (sometimes a receiver right after).
    fn kill_during_publish(&mut self) {
        let mut p = self.spawn_publish();
        // Within the time the last publish took (process start, upload, partitioning,
        // signing, storing, answering): most kills land before it answers, a few just after
        // it made the version durable.
        let ms = self.publish_time.as_millis() as u64;
        let delay = self.rng.gen_range(0..=ms);
        let second = self
            .rng
            .gen_bool(0.4)
            .then(|| [PROV, TOWN][self.rng.gen_range(0..2)]);
        std::thread::sleep(Duration::from_millis(delay));
        let returned = p.cli.try_wait().expect("polling publish").is_some();
        let phase = if returned { TRANSFER } else { PUBLISH };
        self.kill(NAT, phase);
        let mut killed = vec![NAT];
        if let Some(r) = second {
            self.kill(r, phase);
            killed.push(r);
        }
        // Failing is allowed here: national was killed under it.
        let _ = self.finish_publish(p);
        self.restart(killed);
    }

    /// After a publish returned, kills one or two nodes after random delays.
    fn kill_during_transfer(&mut self) {
        self.publish();
        let first = *[NAT, PROV, PROV, TOWN, TOWN]
            .choose(&mut self.rng)
            .expect("a victim");
        let mut victims = vec![first];
        if self.rng.gen_bool(0.4) {
            victims.push((first + self.rng.gen_range(1..3)) % 3);
        }
        // The township fetches after the province holds the version and its fallback to
        // the township (about two seconds); national and province work at once.
        let mut at: Vec<(u64, usize)> = victims
            .iter()
            .map(|&v| {
                let max = if v == TOWN { 3_000 } else { 400 };
                (self.rng.gen_range(0..=max), v)
            })
            .collect();
        at.sort_unstable();
        let t = Instant::now();
        for (ms, v) in at {
            let due = Duration::from_millis(ms);
            std::thread::sleep(due.saturating_sub(t.elapsed()));
            self.kill(v, TRANSFER);
        }
        self.restart(victims);
    }

    /// Kills a receiver at a receipt or completion it showed, with its upstream; restarts it
    /// alone and checks invariant 2, then restarts the upstream.
    fn kill_around_receipt(&mut self) {
        if self.latest() == 0 || self.rng.gen_bool(0.75) {
            self.publish();
        }
        let v = self.latest();
        let (receiver, claimed, why) = match self.rng.gen_range(0..3) {
            0 => {
                self.wait_for(
                    &format!("national to hold the township's receipt for v{v}"),
                    STEP_WAIT_MAX,
                    |h| {
                        let held = h.nodes[NAT].held()?;
                        Ok(held.filter(|n| n.version == v && n.receipted >= 1))
                    },
                );
                (TOWN, Some(v), "the publisher held its signed receipt")
            }
            k => {
                let receiver = if k == 1 { TOWN } else { PROV };
                let complete = self.rng.gen_bool(0.5);
                let held = self.wait_for(
                    &format!("the {} to hold v{v}", NAMES[receiver]),
                    STEP_WAIT_MAX,
                    |h| {
                        let held = h.nodes[receiver].held()?;
                        Ok(held.filter(|_| Held::at_least(held, v, complete)))
                    },
                );
                let claimed = held.complete.then_some(held.version);
                (receiver, claimed, "its own status said it held it complete")
            }
        };
        let upstream = receiver - 1;
        self.kill(receiver, RECEIPT);
        self.kill(upstream, RECEIPT);
        self.start(receiver);
        if let Some(v) = claimed {
            let held = self.held_now(receiver);
            if !Held::at_least(held, v, true) {
                self.fail(format!(
                    "invariant 2: {why} v{v}; after a kill -9 and a restart with its upstream \
                     down, the {} shows {held:?}",
                    NAMES[receiver]
                ));
            }
            self.survived += 1;
        }
        self.start(upstream);
    }

    /// One step: the kinds come in seeded shuffles of ten — four publish, three transfer and
    /// three receipt steps — so every run covers each phase.
    fn step(&mut self) {
        if self.plan.is_empty() {
            self.plan = vec![PUBLISH; 4];
            self.plan.extend([TRANSFER; 3]);
            self.plan.extend([RECEIPT; 3]);
            self.plan.shuffle(&mut self.rng);
        }
        match self.plan.pop() {
            Some(PUBLISH) => self.kill_during_publish(),
            Some(TRANSFER) => self.kill_during_transfer(),
            _ => self.kill_around_receipt(),
        }
    }

    /// Waits until every node holds the latest version complete and the publisher holds the
    /// township's receipt for it; returns that version.
    fn converge(&self, limit: Duration) -> u64 {
        let v = self.latest();
        self.wait_for(
            &format!("every node to hold v{v} complete and national the township's receipt for it"),
            limit,
            |h| {
                let nat = h.nodes[NAT].held()?;
                let prov = h.nodes[PROV].held()?;
                let town = h.nodes[TOWN].held()?;
                let done = nat.is_some_and(|n| n.version == v && n.receipted >= 1)
                    && [prov, town]
                        .iter()
                        .all(|r| r.is_some_and(|r| r.version == v && r.complete));
                Ok(done.then_some(()))
            },
        );
        v
    }

    /// Invariant 3: each node's export of version `v` is exactly what `v` published for its
    /// region.
    fn check_exports(&self, v: u64) {
        let csv = &self.attempts[self.versions[&v]];
        for i in [NAT, PROV, TOWN] {
            let out = self.dir.path().join(format!("export-{}.csv", NAMES[i]));
            let result = backflow(&[
                "export",
                "--data",
                s(&self.nodes[i].data),
                "--dataset",
                DATASET,
                "--version",
                &v.to_string(),
                "--out",
                s(&out),
            ]);
            if !result.status.success() {
                self.fail(format!(
                    "export of v{v} at the {} failed: {}",
                    NAMES[i],
                    String::from_utf8_lossy(&result.stderr)
                ));
            }
            let got = std::fs::read(&out).expect("reading the export");
            let want = expected_export(csv, REGIONS[i]);
            if got != want {
                self.fail(format!(
                    "the {}'s export of v{v} ({} bytes) is not what v{v} published for {} \
                     ({} bytes): {}",
                    NAMES[i],
                    got.len(),
                    REGIONS[i],
                    want.len(),
                    first_difference(&got, &want)
                ));
            }
        }
    }

    fn summary(&self, steps: usize, final_version: u64, converged: Duration, elapsed: Duration) {
        let by_phase: Vec<String> = (0..3)
            .map(|p| format!("{} {}", PHASES[p], self.kills[p].iter().sum::<usize>()))
            .collect();
        let by_node: Vec<String> = (0..3)
            .map(|n| {
                format!(
                    "{} {}",
                    NAMES[n],
                    self.kills.iter().map(|p| p[n]).sum::<usize>()
                )
            })
            .collect();
        eprintln!(
            "crash harness: seed {} ({} steps), {} kill points in {elapsed:.1?}",
            self.seed,
            steps,
            self.total_kills()
        );
        eprintln!("  by phase: {}", by_phase.join(", "));
        eprintln!("  by node:  {}", by_node.join(", "));
        eprintln!(
            "  {} publish attempts, {} versions ({} from publishes that never answered); \
             {} receipts/completions checked after a kill; final v{final_version} everywhere \
             {converged:.1?} after the last kill, exports verified",
            self.attempts.len(),
            self.versions.len(),
            self.unanswered_versions,
            self.survived
        );
    }
}

/// Creates the root, the national, province, city, county and township data directories, and
/// the certificate chain (the city and county only certify); returns the three daemons,
/// configured and not yet started.
fn build_network(dir: &Path) -> Vec<Node> {
    let root = dir.join("root");
    let anchor = printed(
        &ok(&["root", "init", "--dir", s(&root)]),
        "root public key:",
    );
    let mut nodes: Vec<Node> = Vec::new();
    let mut parent: Option<String> = None;
    let mut issuer = dir.join("nat");
    let mut ports = Vec::new();
    // (region, runs, directory)
    let tiers = [
        ("0", true, "nat"),
        ("11", true, "bj"),
        ("1101", false, "city"),
        ("110101", false, "county"),
        (TOWNSHIP, true, "township"),
    ];
    for (region, runs, name) in tiers {
        let data = dir.join(name);
        let port = fixed_port(&mut ports);
        let http: SocketAddr = format!("127.0.0.1:{}", fixed_port(&mut ports))
            .parse()
            .expect("an address");
        let listen = format!("/ip4/127.0.0.1/tcp/{port}");
        let http_arg = http.to_string();
        let mut args = vec![
            "init",
            "--data",
            s(&data),
            "--region",
            region,
            "--anchor",
            &anchor,
            "--listen",
            &listen,
            "--http",
            &http_arg,
        ];
        if runs {
            if let Some(p) = &parent {
                args.extend(["--parent", p]);
            }
        }
        let out = ok(&args);
        let key = printed(&out, "public key:");
        let chain = dir.join(format!("{region}.chain"));
        if region == "0" {
            ok(&[
                "root",
                "certify",
                "--dir",
                s(&root),
                "--key",
                &key,
                "--out",
                s(&chain),
            ]);
        } else {
            ok(&[
                "cert",
                "issue",
                "--data",
                s(&issuer),
                "--region",
                region,
                "--key",
                &key,
                "--out",
                s(&chain),
            ]);
        }
        ok(&["cert", "install", "--data", s(&data), s(&chain)]);
        issuer = data.clone();
        if runs {
            let peer = printed(&out, "peer id:");
            parent = Some(format!("{listen}/p2p/{peer}"));
            set_tuning(&data);
            nodes.push(Node {
                name: NAMES[nodes.len()],
                log: dir.join(format!("{name}.log")),
                data,
                http,
                process: None,
            });
        }
    }
    nodes
}

/// Sets the documented `[tuning]` keys of a node's `config.toml`.
fn set_tuning(data: &Path) {
    let path = data.join("config.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&path)
        .expect("reading config.toml")
        .parse()
        .expect("config.toml is TOML");
    let tuning = cfg
        .entry("tuning")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[tuning] is a table");
    for (key, value) in TUNING {
        tuning.insert(key.to_string(), toml::Value::Integer(value));
    }
    std::fs::write(&path, toml::to_string(&cfg).expect("TOML")).expect("writing config.toml");
}

#[test]
fn kill_9_at_random_points_loses_nothing_acknowledged_and_every_township_completes() {
    let started = Instant::now();
    let seed = std::env::var("BACKFLOW_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("BACKFLOW_CRASH_SEED is a u64"))
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash harness: seed {seed} (BACKFLOW_CRASH_SEED=<u64> to change it)");
    let mut h = Harness::new(seed);
    for i in [NAT, PROV, TOWN] {
        h.start(i);
    }
    // Before any kill, the network delivers (and the publish time is measured).
    h.publish();
    h.converge(FINAL_WAIT_MAX);
    let mut steps = 0;
    while h.total_kills() < KILLS_MIN {
        h.step();
        steps += 1;
    }
    let last_kill = Instant::now();
    let v = h.converge(FINAL_WAIT_MAX);
    let converged = last_kill.elapsed();
    h.check_exports(v);
    h.summary(steps, v, converged, started.elapsed());
    assert!(h.total_kills() >= KILLS_MIN);
    for (phase, kills) in PHASES.iter().zip(&h.kills) {
        let n: usize = kills.iter().sum();
        assert!(
            n >= KILLS_PER_PHASE_MIN,
            "only {n} kill points in the {phase} phase (seed {seed})"
        );
    }
    for (node, name) in NAMES.iter().enumerate() {
        let n: usize = h.kills.iter().map(|p| p[node]).sum();
        assert!(
            n >= KILLS_PER_NODE_MIN,
            "the {name} was killed only {n} times (seed {seed})"
        );
    }
}
