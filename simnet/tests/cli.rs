//! The binary: bad input gives one line on stderr and exit status 2; a run writes its reports.

use std::process::Command;

fn simnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simnet"))
        .args(args)
        .output()
        .expect("run simnet")
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempdir();
    let out = dir.to_str().unwrap();
    for bad in [
        vec!["run", "--topology", "synthetic:2,2,2", "--out", out],
        vec!["run", "--topology", "mars", "--out", out],
        vec!["run", "--topology", "synthetic:2,x,2,2", "--out", out],
        vec!["run", "--topology", "synthetic:0,2,2,2", "--out", out],
        vec!["run", "--topology", "synthetic:99,99,99,999", "--out", out],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--fault",
            "down:77:1:2",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--routing",
            "zigzag",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--bytes",
            "12XB",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--link",
            "a=1,2,3",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--loss",
            "1.5",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--publisher",
            "99",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--spread",
            "lumpy",
            "--out",
            out,
        ],
        vec![
            "run",
            "--topology",
            "synthetic:2,2,2,2",
            "--costs",
            "cheap",
            "--out",
            out,
        ],
    ] {
        let o = simnet(&bad);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bad:?}: {stderr}");
        assert!(stderr.starts_with("simnet: error: "), "{stderr}");
    }
}

#[test]
fn run_writes_json_and_html() {
    let dir = tempdir();
    let o = simnet(&[
        "run",
        "--topology",
        "synthetic:2,2,2,3",
        "--bytes",
        "1MiB",
        "--records",
        "100",
        "--scenario",
        "both",
        "--churn",
        "5",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("townships complete 24/24"), "{stdout}");
    assert!(stdout.contains("events/s"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["result"]["townships_complete"], 24);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("</html>"));
    assert!(!html.contains("<script"), "self-contained, no scripts");
}

/// The national bench's shape on a small tree, and the what-if without the outbox: the report
/// says when every province was complete and how the control plane fared.
#[test]
fn run_reports_provinces_and_the_control_plane() {
    for extra in [&[][..], &["--no-outbox"][..]] {
        let dir = tempdir();
        let mut args = vec![
            "run",
            "--topology",
            "synthetic:2,2,2,3",
            "--bytes",
            "300KB",
            "--records",
            "2400",
            "--spread",
            "even",
            "--out",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = simnet(&args);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{stdout}");
        assert!(stdout.contains("all provinces at 0."), "{stdout}");
        assert!(stdout.contains("connection resets 0"), "{stdout}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["control"]["outbox"], extra.is_empty());
        assert_eq!(json["control"]["streams_per_connection_max"], 256);
        assert_eq!(json["config"]["spread"], "even");
        assert_eq!(json["config"]["tuning"]["groups_in_flight_max"], 1024);
        assert!(json["result"]["all_provinces_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn whatif_compares_routings() {
    let dir = tempdir();
    let o = simnet(&[
        "whatif",
        "--topology",
        "synthetic:2,2,2,3",
        "--also-topology",
        "synthetic:2,3,2,2",
        "--node",
        "model",
        "--bytes",
        "1MiB",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("whatif.json")).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 6, "2 topologies × 3 routings");
}

#[test]
fn whatif_on_the_protocol_node_runs_direct_links() {
    let dir = tempdir();
    let o = simnet(&[
        "whatif",
        "--topology",
        "synthetic:2,2,2,3",
        "--node",
        "protocol",
        "--bytes",
        "1MiB",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!stdout.contains("skipped"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("whatif.json")).unwrap()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("/ direct")), "{names:?}");
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "simnet-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
