//! PKI: keys and certificates issued down the chain with the host's `backflow` binary
//! (`init`, `cert issue`, `cert install`), exactly as an operator does it before a node's
//! first start — and `bring_up`, which does that for a list of nodes and starts them.
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
