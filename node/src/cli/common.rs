//! Helpers shared by the subcommands: the `--data` argument, the tokio runtime, and what a
//! request to the running node's HTTP API needs (absolute paths, URL-encoded parameters).
//! The subcommand modules import this one; it imports none of them.

use std::path::{Path, PathBuf};

use anyhow::Result;

#[derive(clap::Args, Debug, Clone)]
pub struct DataArg {
    /// The node's data directory.
    #[arg(long = "data", env = "BACKFLOW_DATA", default_value = "backflow-data")]
    pub dir: PathBuf,
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A client for the running node's API: its address from the config, its token from the
/// data directory (readable only by the node's operator).
pub fn client(dir: &Path) -> Result<backflow_api::client::Client> {
    let cfg = backflow_node::config::Config::load(dir)?;
    let token = backflow_api::ApiToken::load(dir)?;
    Ok(backflow_api::client::Client::new(cfg.http, token))
}

/// One JSON request to the running node's API.
pub fn call(
    dir: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let client = client(dir)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client.json(method, path, body))
}
