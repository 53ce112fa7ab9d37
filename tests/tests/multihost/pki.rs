//! PKI: keys and certificates issued down the chain with the host's `backflow` binary
//! (`root init`, `root certify`, `init`, `cert issue`, `cert install`), exactly as operators
//! do it before a node's first start — and `bring_up`, which does that for a list of nodes
//! and starts them. Each net has an offline root of its own: its directory lies beside the
//! data directories and is mounted into no container; its public key is every node's anchor.
//!
//! Kept apart from `net` so that forged or mis-issued chains (scenario 7) can be built with
//! the same functions, outside any [`Net`].

use std::path::Path;
use std::process::Command;

use crate::net::{Net, Node, Wiring, HTTP_PORT, P2P_PORT};
use crate::suite::Suite;

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

impl Net {
    /// `backflow init` for a node. The first node initialised must be national: the net's
    /// root is created with it and certifies its key ([`init_national`]); the root's public
    /// key is the anchor of every node.
    pub fn init(&mut self, name: &str, region: &str) {
        let node = if region == "0" {
            let (node, anchor) = init_national(self.suite, self.tmp.path(), name);
            self.anchor = anchor;
            node
        } else {
            assert!(
                !self.anchor.is_empty(),
                "initialise the national node first"
            );
            init_node(
                self.suite,
                self.tmp.path(),
                name,
                region,
                Some(&self.anchor),
            )
        };
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
}

/// `backflow init` on the host into `<root>/<name>`, with `anchor` as the trust anchor. A
/// national node without an anchor gets a root of its own ([`init_national`]), which has
/// certified it when this returns.
pub fn init_node(
    suite: &Suite,
    root: &Path,
    name: &str,
    region: &str,
    anchor: Option<&str>,
) -> Node {
    match anchor {
        Some(anchor) => init_with_anchor(suite, root, name, region, anchor),
        None if region == "0" => init_national(suite, root, name).0,
        None => panic!("{name} ({region}) needs the anchor: initialise the national node first"),
    }
}

/// The ceremony for a national node: `backflow root init` in `<root>/<name>.root` (beside the
/// data directories, mounted into no container — the stand-in for the offline machine), the
/// national node's `backflow init --anchor <root public key>`, `backflow root certify` of
/// its key and `backflow cert install` of the national certificate. Returns the node and the
/// anchor (the root's public key).
pub fn init_national(suite: &Suite, root: &Path, name: &str) -> (Node, String) {
    let root_dir = root.join(format!("{name}.root"));
    let root_dir_s = root_dir.to_string_lossy().to_string();
    let out = host_backflow(suite, &["root", "init", "--dir", &root_dir_s]);
    let anchor = printed(&out, "root public key:", "root init");
    let node = init_with_anchor(suite, root, name, "0", &anchor);
    let chain = node.dir.join("national.chain");
    host_backflow(
        suite,
        &[
            "root",
            "certify",
            "--dir",
            &root_dir_s,
            "--key",
            &node.public_key,
            "--peer-id",
            &node.peer_id,
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
            &node.dir.to_string_lossy(),
            &chain.to_string_lossy(),
        ],
    );
    (node, anchor)
}

/// The value after `label` on a line of a command's output.
fn printed(out: &str, label: &str, command: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("`backflow {command}` printed no {label:?} line:\n{out}"))
}

/// `backflow init` on the host into `<root>/<name>`.
fn init_with_anchor(suite: &Suite, root: &Path, name: &str, region: &str, anchor: &str) -> Node {
    let dir = root.join(name);
    let dir_s = dir.to_string_lossy().to_string();
    let listen = format!("/ip4/0.0.0.0/tcp/{P2P_PORT}");
    let http_addr = format!("0.0.0.0:{HTTP_PORT}");
    let args = [
        "init", "--data", &dir_s, "--region", region, "--listen", &listen, "--http", &http_addr,
        "--anchor", anchor,
    ];
    let out = host_backflow(suite, &args);
    let field = |label: &str| printed(&out, label, "init");
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
