//! Black-box: the offline root ceremony with the `backflow` binary — `root init` (refusing a
//! node's data directory, the key owner-only), `init --region 0 --anchor`, `root certify`
//! (refusing a peer id that is not the key's), `cert install`, a province certified by the
//! national node; a national daemon starts with its national certificate, and one whose key
//! is the anchor is refused.

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

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = backflow(args);
    assert!(ok, "`backflow {}` failed: {out}{err}", args.join(" "));
    out
}

fn fails(args: &[&str]) -> String {
    let (ok, out, err) = backflow(args);
    assert!(!ok, "`backflow {}` should fail: {out}", args.join(" "));
    err
}

fn printed(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The daemon, stopped when the test ends, even on failure.
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

struct Initialised {
    public_key: String,
    peer_id: String,
    http: SocketAddr,
}

fn init(data: &Path, region: &str, anchor: &str) -> Initialised {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = ok(&[
        "init",
        "--data",
        s(data),
        "--region",
        region,
        "--anchor",
        anchor,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        &http.to_string(),
    ]);
    Initialised {
        public_key: printed(&out, "public key:"),
        peer_id: printed(&out, "peer id:"),
        http,
    }
}

#[test]
fn the_root_certifies_the_national_key_and_stays_out_of_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let nat = tmp.path().join("nat");
    let bj = tmp.path().join("bj");

    // The root: its own directory, the key owner-only, the public key printed and in root.pub.
    let out = ok(&["root", "init", "--dir", s(&root)]);
    let anchor = printed(&out, "root public key:");
    assert_eq!(anchor.len(), 64);
    assert_eq!(
        std::fs::read_to_string(root.join("root.pub"))
            .unwrap()
            .trim(),
        anchor
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = fails(&["root", "init", "--dir", s(&root)]);
    assert!(err.contains("already holds a root key"), "{err}");

    // The national node needs the anchor like every node; a node never lives in the root's
    // directory, and the root never in a node's.
    let err = fails(&["init", "--data", s(&nat), "--region", "0"]);
    assert!(err.contains("--anchor"), "{err}");
    let err = fails(&[
        "init",
        "--data",
        s(&root),
        "--region",
        "0",
        "--anchor",
        &anchor,
    ]);
    assert!(err.contains("holds the root key"), "{err}");
    let national = init(&nat, "0", &anchor);
    let err = fails(&["root", "init", "--dir", s(&nat)]);
    assert!(err.contains("node's data directory"), "{err}");

    // Before its certificate is installed, the national node says what to do.
    let err = fails(&[
        "cert",
        "issue",
        "--data",
        s(&nat),
        "--region",
        "11",
        "--key",
        &anchor,
        "--out",
        s(&tmp.path().join("x.chain")),
    ]);
    assert!(err.contains("backflow root certify"), "{err}");

    // The root certifies the national key; a peer id that is not the key's is refused.
    let chain = tmp.path().join("national.chain");
    let other = init(&tmp.path().join("other"), "11", &anchor);
    let err = fails(&[
        "root",
        "certify",
        "--dir",
        s(&root),
        "--key",
        &national.public_key,
        "--peer-id",
        &other.peer_id,
        "--out",
        s(&chain),
    ]);
    assert!(err.contains("does not belong to --key"), "{err}");
    let err = fails(&[
        "root",
        "certify",
        "--dir",
        s(&root),
        "--key",
        &anchor,
        "--out",
        s(&chain),
    ]);
    assert!(err.contains("never itself"), "{err}");
    ok(&[
        "root",
        "certify",
        "--dir",
        s(&root),
        "--key",
        &national.public_key,
        "--peer-id",
        &national.peer_id,
        "--days",
        "730",
        "--out",
        s(&chain),
    ]);
    // Only the national node can install it.
    let err = fails(&[
        "cert",
        "install",
        "--data",
        s(&tmp.path().join("other")),
        s(&chain),
    ]);
    assert!(err.contains("not for this node"), "{err}");
    ok(&["cert", "install", "--data", s(&nat), s(&chain)]);

    // The national node certifies a province as before; its chain opens with the national
    // certificate.
    let province = init(&bj, "11", &anchor);
    let bj_chain = tmp.path().join("11.chain");
    ok(&[
        "cert",
        "issue",
        "--data",
        s(&nat),
        "--region",
        "11",
        "--key",
        &province.public_key,
        "--out",
        s(&bj_chain),
    ]);
    let out = ok(&["cert", "install", "--data", s(&bj), s(&bj_chain)]);
    assert!(out.contains("installed certificate chain for 11"), "{out}");
    // A province's chain is not the national node's.
    let err = fails(&["cert", "install", "--data", s(&nat), s(&bj_chain)]);
    assert!(err.contains("not for this node"), "{err}");

    // The national daemon starts with its national certificate (its API comes up).
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_backflow"))
            .args(["run", "--data", s(&nat)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting backflow run"),
    );
    let t = Instant::now();
    while TcpStream::connect_timeout(&national.http, Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the national daemon's HTTP API did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The root revokes a national key (say, the one the national node ran on before a
    // rotation); the national node takes the signed revocation and keeps it in force. A
    // revocation signed by another root is refused.
    let old = init(&tmp.path().join("nat-old"), "0", &anchor);
    let revocation = tmp.path().join("revocation.bin");
    let out = ok(&[
        "root",
        "revoke",
        "--dir",
        s(&root),
        "--key",
        &old.public_key,
        "--out",
        s(&revocation),
    ]);
    assert!(out.contains("cert revoke --file"), "{out}");
    let out = ok(&[
        "cert",
        "revoke",
        "--data",
        s(&nat),
        "--file",
        s(&revocation),
    ]);
    assert!(out.contains("in force here"), "{out}");
    let listed = ok(&["cert", "revocations", "--data", s(&nat)]);
    assert!(
        listed.contains(&old.public_key) && listed.contains("\"issuer\": \"root\""),
        "{listed}"
    );
    let other_root = tmp.path().join("other-root");
    ok(&["root", "init", "--dir", s(&other_root)]);
    let forged = tmp.path().join("forged.bin");
    ok(&[
        "root",
        "revoke",
        "--dir",
        s(&other_root),
        "--key",
        &national.public_key,
        "--out",
        s(&forged),
    ]);
    let err = fails(&["cert", "revoke", "--data", s(&nat), "--file", s(&forged)]);
    assert!(err.contains("revocation refused"), "{err}");
    drop(daemon);
}

#[test]
fn a_national_node_whose_key_is_the_anchor_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let nat = tmp.path().join("nat");
    let out = ok(&["root", "init", "--dir", s(&tmp.path().join("root"))]);
    let placeholder = printed(&out, "root public key:");
    let national = init(&nat, "0", &placeholder);
    // As a data dir from before the root: the anchor is the national node's own key.
    let config = nat.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&placeholder, &national.public_key)).unwrap();
    let err = fails(&["run", "--data", s(&nat)]);
    assert!(
        err.contains("the trust anchor's key must stay offline"),
        "{err}"
    );
    assert!(err.contains("backflow root init"), "{err}");
}
