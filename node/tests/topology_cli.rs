//! Black-box checks of `backflow topology …`: exit codes and one-line errors.

use std::process::Command;

fn backflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backflow"))
        .args(args)
        .output()
        .expect("run backflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stats_counts_every_level() {
    let (ok, out, _) = backflow(&["topology", "stats"]);
    assert!(ok);
    for line in [
        "national       1",
        "province      31",
        "city         342",
        "county      2978",
        "township   41352",
        "total      44704",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn show_prints_name_level_and_path() {
    let (ok, out, _) = backflow(&["topology", "show", "110101001"]);
    assert!(ok);
    assert!(out.contains("东华门街道"), "{out}");
    assert!(out.contains("township"), "{out}");
    assert!(
        out.contains("中华人民共和国 / 北京市 / 市辖区 / 东城区 / 东华门街道"),
        "{out}"
    );
    let (ok, out, _) = backflow(&["topology", "show", "110101001001"]);
    assert!(
        ok && out.contains("东华门街道"),
        "village resolves to its township: {out}"
    );
}

#[test]
fn children_lists_codes_and_names() {
    let (ok, out, _) = backflow(&["topology", "children", "11"]);
    assert!(ok);
    assert_eq!(out.trim(), "1101\t市辖区");
    let (ok, out, _) = backflow(&["topology", "children", "0"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 31);
}

#[test]
fn bad_codes_exit_non_zero_with_one_line() {
    for (code, message) in [
        ("9901", "unknown region code 9901"),
        ("12x", "non-digit"),
        ("12345", "has 5 digits"),
    ] {
        let (ok, out, err) = backflow(&["topology", "show", code]);
        assert!(!ok, "{code} should fail");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(message), "{code}: {err}");
    }
}

/// `backflow … | head`: a reader that goes away ends the output quietly, as with any Unix
/// tool — no panic, no backtrace, no error line. (The pipe is closed before the command
/// writes its first line.)
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_backflow"))
        .args(["topology", "children", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run backflow");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("backflow ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}
