//! The unified catalog at national scale (`simnet catalog`, issue 17) on small parts of the
//! real tree: every node's departments publish, and national ends holding exactly every entry
//! published; a run cut short is reported as not converged. Quick in debug builds.

use std::process::Command;

use backflow_simnet::catalog_scale::{run_catalog, topology, CatalogScaleConfig};

fn small(tiers: u8, nodes: usize) -> CatalogScaleConfig {
    let mut c = CatalogScaleConfig::national(5);
    c.tiers = tiers;
    c.nodes = Some(nodes);
    c.plan.departments = 3;
    c.plan.entries = 4;
    c.plan.items = 3;
    c.plan.window_us = 5_000_000;
    c
}

/// 300 nodes down to townships (a depth-first cut: Beijing's districts and townships first),
/// 3 departments × 4 entries each: national holds exactly the 3,600 entries, every tier holds
/// its subtree's, and the traffic is catalog sync only.
#[test]
fn national_holds_exactly_every_entry_published() {
    let c = small(5, 300);
    let o = run_catalog(&c).unwrap();
    let r = &o.report;
    assert!(r.converged(), "{}", r.summary());
    assert_eq!(r.nodes, 300);
    assert_eq!(r.entries_expected, 300 * 12);
    assert_eq!(r.national_entries, r.entries_expected, "{}", r.summary());
    assert_eq!(r.national_departments, 300 * 3);
    assert_eq!(r.national_log_versions, 300 * 3);
    // National's storage holds the log and every department; its CatalogSync none of the log.
    assert_eq!(o.national_store.log_len(), 300 * 3);
    assert_eq!(o.national_store.departments_len(), 300 * 3);
    assert_eq!(o.national_store.entries_len(), r.entries_expected);
    assert_eq!(r.national_log_bytes_held, 0);
    assert_eq!(r.mismatch_count, 0, "{:?}", r.mismatches);
    // Every tier present, and each node holds at least its own departments' entries.
    assert_eq!(r.tiers.len(), 5, "{}", r.summary());
    assert!(
        r.tiers.iter().all(|t| t.entries_min >= 12),
        "{}",
        r.summary()
    );
    // What a tier holds is its nodes' subtrees: summed over a tier, no more than the total.
    assert!(r
        .tiers
        .iter()
        .all(|t| t.entries_total <= r.entries_expected));
    let converged = r.converged_s.unwrap();
    assert!(converged >= r.last_publish_s && converged < r.last_publish_s + 60.0);
    assert!(r.traffic.iter().all(|t| t.kind.starts_with("catalog_")));
    assert!(r.national_log_encoded_bytes > r.entries_expected * 100);
}

/// The same run cut off after a few hundred events: national does not hold everything, and the
/// report says so (the check can fail).
#[test]
fn a_run_cut_short_is_not_converged() {
    let mut c = small(4, 120);
    c.events_max = 300;
    let r = run_catalog(&c).unwrap().report;
    assert!(!r.converged(), "{}", r.summary());
    assert!(r.mismatch_count > 0);
    assert!(r.national_entries < r.entries_expected);
}

/// `--tiers` and `--nodes` cut the tree depth-first: every node's parent is kept.
#[test]
fn the_cut_is_a_tree() {
    let c = small(4, 1_000);
    let t = topology(&c).unwrap();
    assert_eq!(t.len(), 1_000);
    for &code in t.codes() {
        assert!(code.level().depth() < 4);
        if let Some(p) = code.parent() {
            assert!(t.contains_code(p), "{code} without {p}");
        }
    }
}

/// The CLI runs the scenario, measures national's restart in a child process (its
/// CatalogSync restored from the records and entry ids it stores), writes both files and
/// exits 0 when national holds everything.
#[test]
fn the_cli_reports_convergence_and_national_memory() {
    let out = std::env::temp_dir().join(format!("simnet-catalog-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_simnet"))
        .args([
            "catalog",
            "--tiers",
            "3",
            "--nodes",
            "100",
            "--departments",
            "2",
        ])
        .args(["--entries", "3", "--window-s", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("national holds every entry"), "{text}");
    assert!(text.contains("national restart"), "{text}");
    assert!(text.contains("→ 200 versions, 200 departments"), "{text}");
    assert!(text.contains("200 departments, 600 entries"), "{text}");
    assert!(text.contains("the state machine restored: "), "{text}");
    let json = std::fs::read_to_string(out.join("catalog.json")).unwrap();
    assert!(json.contains("\"national_entries\": 600"), "{json}");
    std::fs::remove_dir_all(&out).ok();
}
