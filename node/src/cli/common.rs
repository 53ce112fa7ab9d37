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

pub fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
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
