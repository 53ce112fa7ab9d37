//! `backflow` — the Backflow node binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use backflow_node::config::{self, Config};
use backflow_node::http;
use backflow_node::node::{now_ms, peer_id_of, start, NodeSetup, Tuning};
use backflow_protocol::cert::TrustStore;
use backflow_protocol::time::DAY_MS;
use backflow_topology::{RegionCode, Topology};
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

mod cli;

/// Backflow: government data flowing between the five tiers of Chinese administration
/// (政务数据共享条例, 2025) — catalogs up, return-flow data down.
#[derive(Parser, Debug)]
#[command(name = "backflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct DataArg {
    /// The node's data directory.
    #[arg(long = "data", env = "BACKFLOW_DATA", default_value = "backflow-data")]
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Query the embedded administrative division tree (NBS 2023).
    #[command(subcommand)]
    Topology(cli::topology::TopologyCmd),
    /// Run a complete local network on loopback, publish a dataset and check delivery.
    Demo {
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
    },
    /// Create a key pair and a config for a new node.
    Init {
        #[command(flatten)]
        data: DataArg,
        /// This node's region code (0 for national).
        #[arg(long)]
        region: String,
        /// National root public key (hex). Omit at the national node: its key is the anchor.
        #[arg(long)]
        anchor: Option<String>,
        /// libp2p listen address.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/7400")]
        listen: String,
        /// Parent's multiaddr with /p2p/<peer id>.
        #[arg(long)]
        parent: Option<String>,
        /// HTTP API address (keep it on loopback unless behind a proxy).
        #[arg(long, default_value = "127.0.0.1:7480")]
        http: SocketAddr,
        /// Department that publishes from this node.
        #[arg(long, default_value = "data-authority")]
        department: String,
    },
    /// Jurisdiction certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Run the node daemon (libp2p + HTTP API) until SIGINT/SIGTERM.
    Run {
        #[command(flatten)]
        data: DataArg,
    },
    /// Publish a dataset (CSV or NDJSON) from this node down its subtree (via the running node).
    Publish {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        dataset: String,
        /// Field holding each record's village (12-digit) or township (9-digit) code.
        #[arg(long)]
        region_field: String,
        /// csv or ndjson (default: from the file extension).
        #[arg(long)]
        format: Option<String>,
        /// Reject records whose 12-digit village code is unknown (its township is known)
        /// instead of rolling them up to the township and publishing them with a warning.
        #[arg(long)]
        strict_villages: bool,
        file: PathBuf,
    },
    /// Delivery status per child region.
    Status {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        dataset: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write this node's own-region records of a dataset, byte-identical to the published lines.
    Export {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The data catalog (Arts. 12–17): add entries, list the subtree's aggregated catalog.
    #[command(subcommand)]
    Catalog(CatalogCmd),
}

#[derive(Subcommand, Debug)]
enum CertCmd {
    /// Sign a child's certificate with this (parent) node's key; writes the child's chain.
    Issue {
        #[command(flatten)]
        data: DataArg,
        /// The child's region code.
        #[arg(long)]
        region: String,
        /// The child's public key (hex, printed by its `backflow init`).
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Install the chain issued by the parent into this node's data dir (after verifying it).
    Install {
        #[command(flatten)]
        data: DataArg,
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogCmd {
    /// Add or update entries from a JSON file (one CatalogEntry or an array).
    Add {
        #[command(flatten)]
        data: DataArg,
        file: PathBuf,
    },
    /// List the aggregated catalog (at national: the whole country's).
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Show one entry by id.
    Show {
        #[command(flatten)]
        data: DataArg,
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The demo prints its own report; the daemon logs at info.
        let default = if matches!(cli.command, Command::Run { .. }) {
            "info"
        } else {
            "warn"
        };
        tracing_subscriber::EnvFilter::new(default)
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = dispatch(cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, so scripts and people both read it easily.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Topology(cmd) => cli::topology::run(cmd, &mut std::io::stdout().lock()),
        Command::Demo {
            townships,
            records,
            timeout_secs,
            keep,
            transport,
        } => runtime()?.block_on(backflow_node::demo::run(backflow_node::demo::DemoOptions {
            townships_per_county: townships,
            records_per_township: records,
            timeout: Duration::from_secs(timeout_secs),
            keep,
            transport,
            ..Default::default()
        })),
        Command::Init {
            data,
            region,
            anchor,
            listen,
            parent,
            http,
            department,
        } => init(&data.dir, &region, anchor, listen, parent, http, department),
        Command::Cert(CertCmd::Issue {
            data,
            region,
            key,
            days,
            out,
        }) => cert_issue(&data.dir, &region, &key, days, &out),
        Command::Cert(CertCmd::Install { data, file }) => cert_install(&data.dir, &file),
        Command::Run { data } => runtime()?.block_on(run(data.dir)),
        Command::Publish {
            data,
            dataset,
            region_field,
            format,
            strict_villages,
            file,
        } => publish(
            &data.dir,
            dataset,
            region_field,
            format,
            strict_villages,
            &file,
        ),
        Command::Status {
            data,
            dataset,
            json,
        } => status(&data.dir, dataset, json),
        Command::Export {
            data,
            dataset,
            version,
            out,
        } => {
            let cfg = Config::load(&data.dir)?;
            let out = absolute(&out)?;
            let v = http::call(
                cfg.http,
                "POST",
                "/api/export",
                Some(&serde_json::json!({ "dataset": dataset, "version": version, "out": out })),
            )?;
            println!(
                "wrote {} records ({} bytes, {} partitions) of {} v{} to {}",
                v["records"],
                v["bytes"],
                v["partitions"],
                v["dataset"],
                v["version"],
                out.display()
            );
            Ok(())
        }
        Command::Catalog(cmd) => catalog(cmd),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn init(
    dir: &Path,
    region: &str,
    anchor: Option<String>,
    listen: String,
    parent: Option<String>,
    http: SocketAddr,
    department: String,
) -> Result<()> {
    if dir.join(config::CONFIG_FILE).exists() {
        bail!("{} is already initialised", dir.display());
    }
    let code = Topology::china().lookup(region)?.code;
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = config::hex(key.verifying_key().as_bytes());
    let anchor = match (code == RegionCode::NATIONAL, anchor) {
        (true, None) => public.clone(),
        (true, Some(_)) => bail!("the national node's key is the trust anchor; omit --anchor"),
        (false, Some(a)) => {
            config::parse_public_key(&a)?;
            a
        }
        (false, None) => {
            bail!("--anchor (the national root public key) is required below national")
        }
    };
    if code != RegionCode::NATIONAL && parent.is_none() {
        eprintln!("note: no --parent given; add `parent = \"/ip4/…/tcp/…/p2p/…\"` to config.toml before `run`");
    }
    config::save_key(dir, &key)?;
    let cfg = Config {
        region: code.to_string(),
        department,
        listen: vec![listen],
        parent,
        ancestors: Vec::new(),
        trust_anchor: anchor,
        http,
        tuning: Tuning::default(),
    };
    cfg.save(dir)?;
    let peer = peer_id_of(&key.verifying_key())?;
    println!("initialised {} for region {code}", dir.display());
    println!("public key: {public}");
    println!("peer id:    {peer}");
    if code != RegionCode::NATIONAL {
        println!(
            "next: the parent runs `backflow cert issue --region {code} --key {public} --out {code}.chain`, \
             then here `backflow cert install {code}.chain`"
        );
    }
    Ok(())
}

fn cert_issue(dir: &Path, region: &str, key: &str, days: u64, out: &Path) -> Result<()> {
    let cfg = Config::load(dir)?;
    let identity = config::load_identity(dir, &cfg)?;
    let child = Topology::china().lookup(region)?.code;
    if child.parent() != Some(identity.region) {
        bail!(
            "{child} is not a child of this node's region {}; only the parent issues its certificate",
            identity.region
        );
    }
    let child_key = config::parse_public_key(key)?;
    let now = now_ms();
    let cert = backflow_protocol::cert::Certificate::issue(
        identity.region,
        &identity.key,
        backflow_protocol::cert::CertRequest {
            subject: child,
            subject_key: child_key,
            peer_id: peer_id_of(&child_key)?.to_bytes(),
            not_before: now.minus_ms(5 * 60_000),
            not_after: now.plus_ms(days * DAY_MS),
            serial: now.0,
        },
    )?;
    let mut chain = identity.chain.clone();
    chain.push(cert);
    config::save_chain(out, &chain)?;
    println!(
        "issued certificate for {child} valid {days} days → {}",
        out.display()
    );
    Ok(())
}

fn cert_install(dir: &Path, file: &Path) -> Result<()> {
    let cfg = Config::load(dir)?;
    let key = config::load_key(dir)?;
    let bytes = std::fs::read(file)?;
    let chain: backflow_protocol::cert::CertChain =
        backflow_protocol::wire::decode_exact(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a certificate chain: {e}", file.display()))?;
    let id = TrustStore::new(cfg.anchor()?)
        .verify_chain(&chain, now_ms())
        .map_err(|e| anyhow::anyhow!("certificate chain does not verify: {e}"))?;
    if id.region != cfg.region_code()? || id.key != key.verifying_key() {
        bail!(
            "this certificate is for {} with another key, not for this node",
            id.region
        );
    }
    config::save_chain(&dir.join(config::CHAIN_FILE), &chain)?;
    println!(
        "installed certificate chain for {} (valid until {} ms)",
        id.region, id.not_after.0
    );
    Ok(())
}

async fn run(dir: PathBuf) -> Result<()> {
    let cfg = Config::load(&dir)?;
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
        tuning: Tuning {
            fault_tamper_serve: std::env::var("BACKFLOW_FAULT_TAMPER_SERVE")
                .is_ok_and(|v| v == "1"),
            ..cfg.tuning.clone()
        },
    })
    .await?;
    for a in &node.listen_addrs {
        println!("listening on {a}");
    }
    let app = http::router(node.clone(), dir.clone(), cfg.department.clone());
    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", cfg.http))?;
    println!("HTTP API on http://{}", cfg.http);
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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    node.shutdown().await;
    task.await??;
    println!("stopped cleanly");
    Ok(())
}

fn publish(
    dir: &Path,
    dataset: String,
    region_field: String,
    format: Option<String>,
    strict_villages: bool,
    file: &Path,
) -> Result<()> {
    let cfg = Config::load(dir)?;
    let file = absolute(file)?;
    let v = http::call(
        cfg.http,
        "POST",
        "/api/publish",
        Some(&serde_json::json!({
            "dataset": dataset, "region_field": region_field, "file": file, "format": format,
            "strict_villages": strict_villages
        })),
    )?;
    let job = v["job"].as_u64().context("API did not return a job id")?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "partition [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )?
        .progress_chars("=> "),
    );
    let report = loop {
        let j = http::call(cfg.http, "GET", &format!("/api/jobs/{job}"), None)?;
        bar.set_length(j["bytes_total"].as_u64().unwrap_or(0));
        bar.set_position(j["bytes_read"].as_u64().unwrap_or(0));
        match j["state"].as_str() {
            Some("done") => break j["report"].clone(),
            Some("failed") => {
                bar.abandon();
                bail!("{}", j["error"].as_str().unwrap_or("publish failed"));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    bar.finish_and_clear();
    let s = &report["summary"];
    let manifests = report["manifests"].as_array().map_or(0, |m| m.len());
    println!(
        "published {} v{} ({} signed manifest{}): {} records in {} partitions, {} bytes",
        report["dataset"].as_str().unwrap_or(""),
        report["version"],
        manifests,
        if manifests == 1 {
            ""
        } else {
            "s, one per scope"
        },
        report["records"],
        report["partitions"],
        report["bytes"]
    );
    let rejects = &s["rejects"];
    let total = line_report_total(rejects);
    if total > 0 {
        println!("{total} records NOT published (listed in the node's rejects file):");
        print_line_report(rejects);
    }
    let warnings = &s["warnings"];
    let total = line_report_total(warnings);
    if total > 0 {
        println!(
            "{total} records published WITH A WARNING (also listed in the node's rejects file, \
             reason `warning: …`):"
        );
        print_line_report(warnings);
        println!(
            "  an unknown village's records went to its township; \
             publish with --strict-villages to reject them instead"
        );
    }
    println!("delivery is under way; follow it with `backflow status --dataset {dataset}`");
    Ok(())
}

/// Records counted in a `{counts, first_lines}` report of the publish summary.
fn line_report_total(report: &serde_json::Value) -> u64 {
    report["counts"]
        .as_object()
        .map_or(0, |c| c.values().filter_map(|v| v.as_u64()).sum())
}

/// One line per reason: its count and its first line numbers.
fn print_line_report(report: &serde_json::Value) {
    for (reason, n) in report["counts"].as_object().into_iter().flatten() {
        let lines: Vec<String> = report["first_lines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l[1].as_str() == Some(reason))
            .take(10)
            .map(|l| l[0].to_string())
            .collect();
        println!("  {n:>8} × {reason} — lines {}", lines.join(", "));
    }
}

fn status(dir: &Path, dataset: Option<String>, json: bool) -> Result<()> {
    let cfg = Config::load(dir)?;
    let path = match &dataset {
        Some(d) => format!("/api/status?dataset={}", urlencode(d)),
        None => "/api/status".into(),
    };
    let v = http::call(cfg.http, "GET", &path, None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no datasets held here");
    }
    for d in list {
        println!(
            "{} v{}  manifest {}…  publisher {}{}",
            d["dataset"].as_str().unwrap_or(""),
            d["version"],
            &d["manifest"].as_str().unwrap_or("")[..16],
            d["publisher"].as_str().unwrap_or(""),
            if d["published_here"].as_bool() == Some(true) {
                " (published here)"
            } else {
                ""
            }
        );
        println!(
            "  here: {} partitions, {} records, {} bytes, {}",
            d["partitions_here"],
            d["records_here"],
            d["bytes_here"],
            if d["held_complete"].as_bool() == Some(true) {
                "all stored and verified"
            } else {
                "still arriving"
            }
        );
        println!(
            "  delivered: {}/{} regions, {} records, {} bytes{}",
            d["regions_delivered"],
            d["regions_expected"],
            d["records_delivered"],
            d["bytes_delivered"],
            if d["complete"].as_bool() == Some(true) {
                " — COMPLETE"
            } else {
                ""
            }
        );
        println!(
            "  {:<10} {:<16} {:<9} {:>12} {:>14} {:>14}  last receipt",
            "child", "name", "state", "regions", "records", "bytes"
        );
        for c in d["children"].as_array().into_iter().flatten() {
            println!(
                "  {:<10} {:<16} {:<9} {:>12} {:>14} {:>14}  {}",
                c["region"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or(""),
                c["state"].as_str().unwrap_or(""),
                format!("{}/{}", c["regions_delivered"], c["regions_expected"]),
                format!("{}/{}", c["records_delivered"], c["records_expected"]),
                format!("{}/{}", c["bytes_delivered"], c["bytes_expected"]),
                c["last_receipt_at"]
                    .as_u64()
                    .map_or("-".to_string(), |t| format!("{t} ms")),
            );
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
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

fn catalog(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Add { data, file } => {
            let cfg = Config::load(&data.dir)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let v = http::call(cfg.http, "POST", "/api/catalog", Some(&body))?;
            println!(
                "catalog version {} submitted; it syncs up to the parent",
                v["seq"]
            );
        }
        CatalogCmd::List { data } => {
            let cfg = Config::load(&data.dir)?;
            let v = http::call(cfg.http, "GET", "/api/catalog", None)?;
            let mut n = 0;
            for c in v.as_array().into_iter().flatten() {
                for e in c["entries"].as_array().into_iter().flatten() {
                    n += 1;
                    println!(
                        "{:<10} {:<24} {:<24} {}",
                        c["region"].as_str().unwrap_or(""),
                        c["department"].as_str().unwrap_or(""),
                        e["id"].as_str().unwrap_or(""),
                        e["name"].as_str().unwrap_or("")
                    );
                }
            }
            println!("{n} entries");
        }
        CatalogCmd::Show { data, id } => {
            let cfg = Config::load(&data.dir)?;
            let v = http::call(
                cfg.http,
                "GET",
                &format!("/api/catalog/{}", urlencode(&id)),
                None,
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
