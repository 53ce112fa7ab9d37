//! `backflow demo`: a complete local network on loopback (`backflow_node::demo`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::common::runtime;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Townships per county chain (each runs its own node).
    #[arg(long, default_value_t = 4)]
    townships: usize,
    /// Records per township, on average.
    #[arg(long, default_value_t = 2_000)]
    records: usize,
    /// Give up (and exit non-zero) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Keep the network's data in this directory instead of a temp dir.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// libp2p transport between the demo's nodes: tcp (TLS/noise + yamux) or quic.
    #[arg(long, default_value = "tcp")]
    transport: backflow_node::localnet::Transport,
    /// After delivery, keep the network running and serve every node's operator console
    /// (web dashboard) on loopback; prints each node's address and API token. Ctrl-C stops it.
    #[arg(long)]
    serve: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let DemoArgs {
        townships,
        records,
        timeout_secs,
        keep,
        transport,
        serve,
    } = args;
    runtime()?.block_on(backflow_node::demo::run(backflow_node::demo::DemoOptions {
        townships_per_county: townships,
        records_per_township: records,
        timeout: Duration::from_secs(timeout_secs),
        keep,
        transport,
        serve,
        ..Default::default()
    }))
}
