//! A node built for use carries no test-only switch: resolving `backflow-node`'s features as
//! `cargo build --release --bin backflow` (or `cargo install --path node`) does — normal and
//! build dependencies, no dev-dependencies — leaves `fault-injection` off, while this test
//! build turns it on for the container image (tests/Cargo.toml).

use std::process::Command;

#[test]
fn the_shipped_node_has_no_fault_injection_feature() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let features = |edges: &str| {
        let out = Command::new(&cargo)
            .args(["tree", "--offline", "--manifest-path", manifest])
            .args(["-p", "backflow-node", "-e", edges, "--depth", "0"])
            .args(["-f", "{p} [{f}]", "--prefix", "none"])
            .output()
            .expect("running cargo tree");
        assert!(
            out.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shipped = features("normal,build");
    assert!(shipped.contains("backflow-node"), "{shipped}");
    assert!(!shipped.contains("fault-injection"), "{shipped}");
}
