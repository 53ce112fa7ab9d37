//! Suite bootstrap: find the `backflow` binary, build the node's image from it once per
//! binary, and hold the lock that runs scenarios one at a time.
//!
//! Everything here happens once per test process, before any network exists; the other
//! harness files take a [`Suite`] and never reach back into it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

/// The image the harness builds and runs.
pub const IMAGE_NAME: &str = "backflow-node";
pub const IMAGE_TAG: &str = "test";

/// What every scenario needs once: the binary, and its image built.
pub struct Suite {
    pub binary: PathBuf,
}

/// Scenarios share 2 cores: running them one at a time keeps their timing meaningful.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static SUITE: OnceLock<Result<Option<Suite>, String>> = OnceLock::new();
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Returns the suite, building the image if needed; `None` (after printing a SKIPPED line)
/// when Docker is unavailable outside CI. With `CI=true` and no Docker it panics: CI must not
/// pass a suite it did not run.
pub fn suite(test: &str) -> Option<&'static Suite> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let result = SUITE.get_or_init(|| {
        if let Err(why) = docker_available() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err(format!(
                    "CI=true but Docker is unavailable ({why}): the multi-host suite cannot run"
                ));
            }
            return Ok(None);
        }
        let binary = locate_binary()?;
        build_image(&binary)?;
        Ok(Some(Suite { binary }))
    });
    match result {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            // Written to the real stderr: libtest captures print!/eprint! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Docker is not available (set CI=true to make this an error)"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Holds the one-scenario-at-a-time lock for a test's lifetime.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn docker_available() -> Result<(), String> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run the docker CLI: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The `backflow` binary next to this test executable (target/<profile>/deps/.. → target/<profile>).
fn locate_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut candidates = Vec::new();
    if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
        candidates.push(profile_dir.join("backflow"));
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug/backflow"));
    }
    let binary = candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "no `backflow` binary at {candidates:?}: run `cargo build -p backflow-node --bin backflow` \
             (or `cargo test --workspace`, which builds it) before this suite"
        )
    })?;
    warn_if_stale(&binary);
    Ok(binary)
}

/// `cargo test -p backflow-tests` alone does not rebuild the node's binary: say so loudly if
/// the sources are newer than the binary under test.
fn warn_if_stale(binary: &Path) {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for dir in ["node/src", "protocol/src", "topology/src"] {
        visit(&workspace.join(dir), &mut |p| {
            if let Ok(t) = p.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, p.to_path_buf()));
                }
            }
        });
    }
    if let Some((t, p)) = newest {
        if t > built {
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: {} is newer than {}; the containers run the OLD binary. \
                 Run `cargo build -p backflow-node --bin backflow` first.",
                p.display(),
                binary.display()
            );
        }
    }
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            visit(&p, f);
        } else {
            f(&p);
        }
    }
}

/// Builds the image with tests/image/build.sh unless the image already carries this
/// binary's hash.
fn build_image(binary: &Path) -> Result<(), String> {
    // Streamed: a debug binary is ~500 MB.
    let file =
        std::fs::File::open(binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let id = blake3::Hasher::new()
        .update_reader(file)
        .map_err(|e| format!("hashing {}: {e}", binary.display()))?
        .finalize()
        .to_hex()
        .to_string();
    let image = format!("{IMAGE_NAME}:{IMAGE_TAG}");
    let current = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"backflow.binary\"}}",
            &image,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if current.status.success() && String::from_utf8_lossy(&current.stdout).trim() == id {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/build.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(binary)
        .arg(&image)
        .env("BACKFLOW_BINARY_ID", &id)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "built image {image} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
