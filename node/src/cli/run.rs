//! `backflow run`: the node daemon (libp2p + HTTP API) until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use backflow_api::ApiToken;
use backflow_node::api_backend::api_router;
use backflow_node::config::{self, Config};
use backflow_node::node::{start, NodeSetup};
use tracing::{info, warn};

use super::common::{runtime, DataArg};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    data: DataArg,
}

pub fn run(args: RunArgs) -> Result<()> {
    runtime()?.block_on(daemon(args.data.dir))
}

async fn daemon(dir: PathBuf) -> Result<()> {
    let cfg = Config::load(&dir)?;
    cfg.check_http_bind()?;
    // Secrets are checked before anything starts (load_identity checks the key).
    if dir.join(backflow_api::token::TOKEN_FILE).exists() {
        ApiToken::load(&dir)?;
    }
    let identity = config::load_identity(&dir, &cfg)?;
    let mut upstream = Vec::new();
    for a in cfg.parent.iter().chain(cfg.ancestors.iter()) {
        upstream.push(a.parse().with_context(|| format!("bad multiaddr {a}"))?);
    }
    let listen = cfg
        .listen
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("bad listen multiaddr {a}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let (node, task) = start(NodeSetup {
        identity,
        anchor: cfg.anchor()?,
        db_path: config::db_path(&dir),
        listen,
        upstream,
        tuning: cfg.tuning.clone(),
        calendar: backflow_node::calendar_files::load(&dir)?,
        fault_tamper_serve: backflow_node::faults::tamper_serve(|name| std::env::var(name).ok()),
    })
    .await?;
    for a in &node.listen_addrs {
        outln!("listening on {a}")?;
    }
    let app = api_router(&dir, &cfg, node.clone()).await?;
    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", cfg.http))?;
    if !cfg.http.ip().is_loopback() {
        warn!(
            "the HTTP API listens on {}, a non-loopback address (http_allow_remote = true): \
             anyone who reaches it with the token controls this node; put it behind TLS",
            cfg.http
        );
    }
    outln!("HTTP API on http://{}", cfg.http)?;
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("signal received; shutting down");
    };
    backflow_api::serve::serve(listener, app, shutdown).await?;
    node.shutdown().await;
    task.await??;
    outln!("stopped cleanly")?;
    Ok(())
}
