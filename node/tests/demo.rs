//! Black-box: `backflow demo`, the README's main job, runs a real local network and exits 0
//! only when every township holds exactly its own records.

use std::process::Command;

#[test]
fn demo_delivers_every_township_exactly() {
    demo_on("tcp");
}

#[test]
fn demo_over_quic_delivers_every_township_exactly() {
    demo_on("quic");
}

fn demo_on(transport: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_backflow"))
        .args([
            "demo",
            "--townships",
            "2",
            "--records",
            "500",
            "--timeout-secs",
            "90",
            "--transport",
            transport,
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run backflow demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("every township holds exactly its own records"),
        "{stdout}"
    );
    // Two townships under each county chain: four township checks, all passed.
    assert_eq!(stdout.matches("hash matches").count(), 4, "{stdout}");
    assert!(
        stdout.contains("publisher sees 4/4 townships complete"),
        "{stdout}"
    );
}

#[test]
fn demo_refuses_an_unknown_transport() {
    let out = Command::new(env!("CARGO_BIN_EXE_backflow"))
        .args(["demo", "--transport", "carrier-pigeon"])
        .output()
        .expect("run backflow demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown transport \"carrier-pigeon\" (expected tcp or quic)"),
        "{stderr}"
    );
}
