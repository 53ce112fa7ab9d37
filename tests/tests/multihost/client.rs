//! Clients of running nodes: `backflow` commands inside a container (`docker exec`), the
//! node's HTTP API from the test process, and its container logs.
//!
//! What the scenarios and checks read and do once the nodes are up; built on [`Net`] and
//! [`crate::poll`], used by nothing else in the harness.

use std::time::Duration;

use serde_json::Value;
use testcontainers::core::{CmdWaitFor, ExecCommand};
use testcontainers::{ContainerAsync, GenericImage};

use crate::net::{Net, DATA_DIR};
use crate::poll::http;

/// Bound on one command run in a container.
const EXEC_S_MAX: u64 = 120;

impl Net {
    /// Runs `backflow ARGS --data /data` inside `name`'s container; returns stdout. Panics
    /// (with stdout and stderr) on a non-zero exit.
    pub async fn cli(&self, name: &str, args: &[&str]) -> String {
        let (code, out, err) = self.cli_status(name, args).await;
        assert_eq!(
            code,
            0,
            "`backflow {}` in {name} exited {code}:\n{out}\n{err}",
            args.join(" ")
        );
        out
    }

    /// Like [`Net::cli`] but returns (exit code, stdout, stderr).
    pub async fn cli_status(&self, name: &str, args: &[&str]) -> (i64, String, String) {
        let mut cmd = vec!["/backflow"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&["--data", DATA_DIR]);
        exec(self.node(name).container(), &cmd).await
    }

    /// GET/POST the node's HTTP API from the test process (over the private network).
    pub fn api(&self, name: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
        let node = self.node(name);
        http(&node.api(), method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {name}: {e}"))
    }

    /// The node's `/api/status?dataset=` entry for `dataset`, if it holds it.
    pub fn dataset_status(&self, name: &str, dataset: &str) -> Option<Value> {
        let node = self.node(name);
        let v = http(
            &node.api(),
            "GET",
            &format!("/api/status?dataset={dataset}"),
            None,
        )
        .ok()?;
        v.as_array()?
            .iter()
            .find(|d| d["dataset"] == dataset)
            .cloned()
    }

    /// Container logs (stdout + stderr) so far.
    pub async fn logs(&self, name: &str) -> String {
        let c = self.node(name).container();
        let mut s =
            String::from_utf8_lossy(&c.stdout_to_vec().await.unwrap_or_default()).to_string();
        s.push_str(&String::from_utf8_lossy(
            &c.stderr_to_vec().await.unwrap_or_default(),
        ));
        s
    }
}

/// Runs a command in a container; returns (exit code, stdout, stderr). Bounded.
pub async fn exec(container: &ContainerAsync<GenericImage>, cmd: &[&str]) -> (i64, String, String) {
    let run = async {
        let mut res = container
            .exec(
                ExecCommand::new(cmd.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit()),
            )
            .await
            .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
        let out = res.stdout_to_vec().await.unwrap_or_default();
        let err = res.stderr_to_vec().await.unwrap_or_default();
        let code = res.exit_code().await.ok().flatten().unwrap_or(-1);
        (
            code,
            String::from_utf8_lossy(&out).to_string(),
            String::from_utf8_lossy(&err).to_string(),
        )
    };
    tokio::time::timeout(Duration::from_secs(EXEC_S_MAX), run)
        .await
        .unwrap_or_else(|_| panic!("exec {cmd:?} did not finish within {EXEC_S_MAX} s"))
}
