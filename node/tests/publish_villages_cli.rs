//! Black-box: `backflow publish` against a running national daemon (CLI → HTTP API → node),
//! with and without `--strict-villages`: an unknown village is published with a warning by
//! default, rejected when strict, and the CLI says so with line numbers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn backflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backflow"))
        .args(args)
        .output()
        .expect("running backflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The daemon, stopped (by its own handle) when the test ends, even on failure.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The value printed after `label` on a line of `out`.
fn printed(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

/// A national node certified by an offline root (`root init`, `init --anchor`,
/// `root certify`, `cert install`), running.
fn start_national(data: &Path) -> Daemon {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let data_arg = data.to_str().unwrap();
    let root = data.with_extension("root");
    let root_arg = root.to_str().unwrap();
    let (ok, out, err) = backflow(&["root", "init", "--dir", root_arg]);
    assert!(ok, "root init failed: {out}{err}");
    let anchor = printed(&out, "root public key:");
    let (ok, out, err) = backflow(&[
        "init",
        "--data",
        data_arg,
        "--region",
        "0",
        "--anchor",
        &anchor,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        &http.to_string(),
    ]);
    assert!(ok, "init failed: {out}{err}");
    let key = printed(&out, "public key:");
    let chain = root.join("national.chain");
    let chain_arg = chain.to_str().unwrap();
    let (ok, out, err) = backflow(&[
        "root", "certify", "--dir", root_arg, "--key", &key, "--out", chain_arg,
    ]);
    assert!(ok, "root certify failed: {out}{err}");
    let (ok, out, err) = backflow(&["cert", "install", "--data", data_arg, chain_arg]);
    assert!(ok, "cert install failed: {out}{err}");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_backflow"))
            .args(["run", "--data", data_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting backflow run"),
    );
    let t = Instant::now();
    while TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the daemon's HTTP API did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon
}

#[test]
fn publish_warns_about_unknown_villages_and_strict_rejects_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nat");
    let _daemon = start_national(&data);
    let csv = dir.path().join("benefits.csv");
    // Line 3: a village not in the NBS list, in a known township.
    std::fs::write(
        &csv,
        "id,village_code\n1,110101001001\n2,110101001999\n3,440103001101\n",
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let csv_arg = csv.to_str().unwrap();

    let (ok, out, err) = backflow(&[
        "publish",
        "--data",
        data_arg,
        "--dataset",
        "lenient",
        "--region-field",
        "village_code",
        csv_arg,
    ]);
    assert!(ok, "publish failed: {out}{err}");
    assert!(out.contains(": 3 records in 2 partitions"), "{out}");
    assert!(out.contains("1 records published WITH A WARNING"), "{out}");
    assert!(
        out.contains("unknown_village_rolled_up — lines 3\n"),
        "{out}"
    );
    assert!(out.contains("--strict-villages"), "{out}");
    assert!(!out.contains("NOT published"), "{out}");
    // The node's rejects file lists the line, marked as a warning.
    let listed: String = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rejects-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        listed.contains(
            "3\twarning: unknown village, rolled up to its township (published)\t110101001999\n"
        ),
        "{listed}"
    );

    let (ok, out, err) = backflow(&[
        "publish",
        "--data",
        data_arg,
        "--dataset",
        "strict",
        "--region-field",
        "village_code",
        "--strict-villages",
        csv_arg,
    ]);
    assert!(ok, "strict publish failed: {out}{err}");
    assert!(out.contains(": 2 records in 2 partitions"), "{out}");
    assert!(out.contains("1 records NOT published"), "{out}");
    assert!(out.contains("unknown_village — lines 3\n"), "{out}");
    assert!(!out.contains("WITH A WARNING"), "{out}");
}
