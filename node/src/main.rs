//! `backflow` — the Backflow node binary: the command line (top-level `Cli` and `Command`),
//! logging setup and dispatch. Each subcommand's arguments and implementation live in its
//! own module under `cli/`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

/// Backflow: government data flowing between the five tiers of Chinese administration
/// (政务数据共享条例, 2025) — catalogs up, return-flow data down.
#[derive(Parser, Debug)]
#[command(name = "backflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Query the embedded administrative division tree (NBS 2023).
    #[command(subcommand)]
    Topology(cli::topology::TopologyCmd),
    /// Run a complete local network on loopback, publish a dataset and check delivery.
    Demo(cli::demo::DemoArgs),
    /// Create a key pair and a config for a new node.
    Init(cli::init::InitArgs),
    /// Jurisdiction certificates.
    #[command(subcommand)]
    Cert(cli::cert::CertCmd),
    /// The offline root key (the trust anchor): create it, certify the national key.
    #[command(subcommand)]
    Root(cli::root::RootCmd),
    /// Run the node daemon (libp2p + HTTP API) until SIGINT/SIGTERM.
    Run(cli::run::RunArgs),
    /// Publish a dataset (CSV or NDJSON) from this node down its subtree (via the running node).
    Publish(cli::publish::PublishArgs),
    /// Delivery status per child region.
    Status(cli::status::StatusArgs),
    /// Write this node's own-region records of a dataset, byte-identical to the published lines.
    Export(cli::export::ExportArgs),
    /// The data catalog (Arts. 12–17): add entries, list the subtree's aggregated catalog.
    #[command(subcommand)]
    Catalog(cli::catalog::CatalogCmd),
    /// Share requests between departments (共享申请, Arts. 20–22): request, answer, notice,
    /// supplement, extend, deliver, withdraw, list, show.
    Share(cli::share::ShareArgs),
    /// Departments' sharing rights (政务数据共享权限, Art. 27): as this node's authority,
    /// suspend or reinstate a department of this region or below; list what is in force.
    #[command(subcommand)]
    Rights(cli::rights::RightsCmd),
    /// This node's departments (政府部门): each acts with its own key and API token.
    #[command(subcommand)]
    Dept(cli::dept::DeptCmd),
    /// The compliance ledger (合规台账, Art. 29): every act of this node, tamper-evident.
    #[command(subcommand)]
    Ledger(cli::ledger::LedgerCmd),
    /// The statutory working-day calendar (工作日): years known, adding a year's notice, and
    /// the deadline of a period.
    #[command(subcommand)]
    Calendar(cli::calendar::CalendarCmd),
    /// The node's child process for one Excel or Parquet conversion (internal).
    #[command(name = "convert-records", hide = true)]
    ConvertRecords(cli::convert_records::ConvertArgs),
}

fn main() -> ExitCode {
    // Before any thread or TLS configuration exists (see backflow_node::faults).
    let scrubbed = backflow_node::faults::scrub_environment();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The demo prints its own report; the daemon logs at info.
        let default = if matches!(cli.command, Command::Run(_)) {
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
    if scrubbed {
        tracing::warn!(
            "SSLKEYLOGFILE is ignored: this build has no fault-injection feature, so TLS \
             session keys are never written"
        );
    }
    // Excel and Parquet conversions run in children of this binary (see
    // backflow_formats::child): a hostile file can end one, never the node.
    if !matches!(cli.command, Command::ConvertRecords(_)) {
        if let Ok(exe) = std::env::current_exe() {
            backflow_formats::child::convert_in_children(exe);
        }
    }
    let result = dispatch(cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`backflow … | head`): the output simply ends, as with any
        // Unix tool — no error, no backtrace.
        Err(error) if cli::is_output_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, so scripts and people both read it easily.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Topology(cmd) => {
            cli::topology::run(cmd, &mut cli::Output(std::io::stdout().lock()))
        }
        Command::Demo(args) => cli::demo::run(args),
        Command::Init(args) => cli::init::run(args),
        Command::Cert(cmd) => cli::cert::run(cmd),
        Command::Root(cmd) => cli::root::run(cmd),
        Command::Run(args) => cli::run::run(args),
        Command::Publish(args) => cli::publish::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::Catalog(cmd) => cli::catalog::run(cmd),
        Command::Share(args) => cli::share::run(args, &mut cli::Output(std::io::stdout().lock())),
        Command::Dept(cmd) => cli::dept::run(cmd, &mut cli::Output(std::io::stdout().lock())),
        Command::Rights(cmd) => cli::rights::run(cmd, &mut cli::Output(std::io::stdout().lock())),
        Command::Ledger(cmd) => cli::ledger::run(cmd, &mut cli::Output(std::io::stdout().lock())),
        Command::Calendar(cmd) => {
            cli::calendar::run(cmd, &mut cli::Output(std::io::stdout().lock()))
        }
        Command::ConvertRecords(args) => cli::convert_records::run(args),
    }
}
