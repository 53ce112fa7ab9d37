//! `simnet`: simulate Backflow over the whole country (or a synthetic tree) and report.
//!
//! Exit status: 0 run complete and every invariant holds; 1 an invariant failed or the run hit
//! a limit; 2 bad input (one-line error on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use backflow_simnet::catalog_scale::{run_catalog, CatalogScaleConfig};
use backflow_simnet::dataset::Spread;
use backflow_simnet::error::SimError;
use backflow_simnet::net::{Fault, LinkSpec};
use backflow_simnet::report::Report;
use backflow_simnet::run_config::{NodeImpl, Routing, RunConfig, TopologySpec};
use backflow_simnet::scenario::run;
use backflow_simnet::share_plan::{DelayDist, ShareConfig};
use backflow_simnet::sharing::run_share;
use backflow_simnet::shell::Costs;
use backflow_simnet::time::MICROS_PER_S;
use backflow_simnet::whatif;
use backflow_topology::{CodeError, Level, RegionCode};
use clap::{Args, Parser, Subcommand};

mod cli;

use cli::catalog_restore::{catalog_restore, restore_in_child};
use cli::process::{cpu_seconds, mib, peak_rss, rss_kib};

/// Why the command line cannot be run (exit status 2, one line on stderr).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("unknown node {0:?}: expected protocol or model")]
    UnknownNode(String),
    #[error("--publisher: {0}")]
    Publisher(#[source] CodeError),
    #[error("unknown scenario {0:?}: expected return-flow, catalog-churn or both")]
    UnknownScenario(String),
    #[error("unknown costs {0:?}: expected default or none")]
    UnknownCosts(String),
    #[error("--egress {spec:?}: {problem}")]
    Egress { spec: String, problem: SpecError },
    #[error("--link {spec:?}: {problem}")]
    Link { spec: String, problem: SpecError },
    #[error("--bytes {spec:?}: {problem}")]
    Bytes { spec: String, problem: SpecError },
    #[error("loss {0} must be in [0, 0.9)")]
    Loss(f64),
    #[error("{option}: {value} is out of range (0 to 1e8 seconds)")]
    Seconds { option: &'static str, value: f64 },
    #[error("--random-faults: at most {max}")]
    RandomFaults { max: usize },
    #[error("cannot create {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("--{option} {spec:?}: {problem}")]
    ShareOption {
        option: &'static str,
        spec: String,
        problem: String,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// What is wrong with an option's value.
#[derive(Debug, thiserror::Error)]
enum SpecError {
    #[error("expected {0}")]
    Format(&'static str),
    #[error("unknown tier {0:?} (national … township)")]
    UnknownTier(String),
    #[error("unknown tier pair {0:?} (UPPER-LOWER, e.g. county-township or province-county)")]
    UnknownTierPair(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
}

/// `--random-faults` at most this many.
const RANDOM_FAULTS_MAX: usize = 100_000;

#[derive(Parser)]
#[command(
    name = "simnet",
    version,
    about = "Deterministic simulation of the Backflow network"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and write DIR/report.json and DIR/report.html.
    Run(RunArgs),
    /// Run the scenario under each routing variant (and each --topology) side by side; writes
    /// DIR/whatif.json and DIR/whatif.html.
    Whatif(WhatifArgs),
    /// The national sharing scenario (Arts. 20–22): share requests between departments across
    /// the country on the real division tree, with answer and delivery times, holidays and
    /// faults; writes DIR/share.json and DIR/share.txt.
    Share(ShareArgs),
    /// The unified catalog at national scale (issue 17): every node's departments publish
    /// their Art. 13 catalogs, which sync up to national through the real CatalogSync;
    /// reports convergence, traffic, entries per tier, and national's memory (a fresh process
    /// restoring national's CatalogSync from what it stores, as a node does at start). Writes
    /// DIR/catalog.json and DIR/catalog.txt.
    Catalog(CatalogArgs),
    /// Internal: restore national's CatalogSync from its stored catalog read from stdin and
    /// report time and memory (used by `catalog`).
    #[command(hide = true)]
    CatalogRestore,
}

/// Options of `simnet catalog`; the defaults are the national scenario (3,129,280 entries).
#[derive(Args)]
struct CatalogArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Tiers from national down: 1 (national only) … 5 (down to townships).
    #[arg(long, default_value_t = 5)]
    tiers: u8,
    /// At most this many nodes, taken depth-first (whole provinces first) [default: all].
    #[arg(long)]
    nodes: Option<usize>,
    /// Departments per node, each publishing one catalog version.
    #[arg(long, default_value_t = 7)]
    departments: u32,
    /// Catalog entries per department.
    #[arg(long, default_value_t = 10)]
    entries: u32,
    /// Data items per entry.
    #[arg(long, default_value_t = 4)]
    items: u32,
    /// Nodes publish at random times in [0, this] seconds.
    #[arg(long, default_value_t = 60.0)]
    window_s: f64,
    /// Skip the restore measurement (a child process restoring national's CatalogSync).
    #[arg(long)]
    no_restore: bool,
    /// Hard cap on processed events.
    #[arg(long, default_value_t = 200_000_000)]
    events_max: u64,
}

/// Options of `simnet share`; each defaults to the national scenario's value (shown).
#[derive(Args)]
struct ShareArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Share requests filed [default: 100000].
    #[arg(long)]
    requests: Option<usize>,
    /// Departments in the pool requests are drawn from (2–4 per node) [default: 20000].
    #[arg(long)]
    departments: Option<usize>,
    /// First day of the filing window, Beijing [default: 2026-09-25, before 中秋节 and the
    /// National Day week].
    #[arg(long)]
    start: Option<String>,
    /// Calendar days of the filing window [default: 14].
    #[arg(long)]
    window_days: Option<u32>,
    /// Weights of national,province,city,county,township when drawing nodes with departments
    /// [default: 1,8,22,42,27].
    #[arg(long)]
    tiers: Option<String>,
    /// Share of provider entries that are conditional [default: 0.6].
    #[arg(long)]
    conditional: Option<f64>,
    /// Share of requests between two departments of one node [default: 0.05].
    #[arg(long)]
    local_node: Option<f64>,
    /// Share of requests within one province [default: 0.25].
    #[arg(long)]
    local_province: Option<f64>,
    /// Share of filings outside working hours [default: 0.05].
    #[arg(long)]
    off_hours: Option<f64>,
    /// Answer time of an unconditional request: `wd:` (working days) or `d:` (calendar days),
    /// then weighted buckets LO-HI=W [default: wd:0-1=88,1-2=8,2-5=3,5-15=1].
    #[arg(long)]
    answer_unconditional: Option<String>,
    /// Answer time of a conditional request [default: wd:0-10=90,10-12=6,12-20=3,20-40=1].
    #[arg(long)]
    answer_conditional: Option<String>,
    /// From the incomplete-material notice to the supplement [default: d:0-3=70,3-10=25,10-30=5].
    #[arg(long)]
    supplement: Option<String>,
    /// From the grant to the data delivered (delivery starts halfway) [default:
    /// wd:0-20=92,20-25=5,25-40=3].
    #[arg(long)]
    delivery: Option<String>,
    /// Share of requests answered first with the incomplete-material notice [default: 0.05].
    #[arg(long)]
    incomplete: Option<f64>,
    /// Share of requests whose answer period is extended with consent [default: 0.04].
    #[arg(long)]
    extend: Option<f64>,
    /// Share of requests refused [default: 0.08].
    #[arg(long)]
    refuse: Option<f64>,
    /// Share of relay nodes down for a while within the filing window [default: 0.02].
    #[arg(long)]
    relay_down: Option<f64>,
    /// How long each relay is down, hours LO-HI [default: 1-8].
    #[arg(long)]
    down_hours: Option<String>,
    /// Message loss on every link [default: 0.0005].
    #[arg(long)]
    loss: Option<f64>,
    /// Calendar file with further years (the official 2025/2026 format), instead of the
    /// provisional 2027 (weekends and 元旦 only).
    #[arg(long)]
    calendar: Option<PathBuf>,
    /// Hard cap on processed events [default: 400000000].
    #[arg(long)]
    events_max: Option<u64>,
}

#[derive(Args, Clone)]
struct Common {
    /// `china` or `synthetic:P,C,K,T` (fan-out per tier; each N or MIN-MAX).
    #[arg(long, default_value = "china")]
    topology: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// `return-flow`, `catalog-churn` or `both`.
    #[arg(long, default_value = "return-flow")]
    scenario: String,
    /// Node implementation: `protocol` (the real state machines) or `model` (reference model).
    #[arg(long, default_value = "protocol")]
    node: String,
    /// Dataset size, bytes (suffixes K, M, G, KiB, MiB, GiB accepted).
    #[arg(long, default_value = "1GiB")]
    bytes: String,
    /// Dataset records, spread over townships (see --spread).
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// How records and bytes spread over townships: `villages` (by real village counts) or
    /// `even` (the same share each, as the node's national bench: `--bytes 518MB --spread even`).
    #[arg(long, default_value = "villages")]
    spread: String,
    /// Node CPU and transport costs: `default` (see simnet/src/shell.rs) or `none` (infinitely
    /// fast nodes, no transport overhead).
    #[arg(long, default_value = "default")]
    costs: String,
    /// What-if: control frames bypass the per-peer outbox and open their streams at once (the
    /// node before issue #13's fix), so the muxer's stream limit can be hit.
    #[arg(long)]
    no_outbox: bool,
    /// Region code of the publishing node (0 = national).
    #[arg(long, default_value = "0")]
    publisher: String,
    /// Catalog churn: number of townships that change a catalog entry.
    #[arg(long, default_value_t = 1_000)]
    churn: usize,
    /// Catalog churn: changes happen at random times in [0, this] seconds.
    #[arg(long, default_value_t = 60.0)]
    churn_window_s: f64,
    /// Link per tier pair: `UPPER-LOWER=LATENCY_MS,MBIT_PER_S,LOSS`, e.g. `county-township=5,100,0`,
    /// or a tier-skipping pair such as `province-county` (else hops are combined). Repeatable.
    #[arg(long = "link")]
    links: Vec<String>,
    /// A node's total sending capacity per tier, shared by all its links: `TIER=MBIT_PER_S`
    /// (e.g. `county=200`). Repeatable. Default: every link has its own bandwidth.
    #[arg(long = "egress")]
    egress: Vec<String>,
    /// Message loss probability on every tier (overrides --link loss).
    #[arg(long)]
    loss: Option<f64>,
    /// `down:CODE:FROM_S:UNTIL_S`, `crash:CODE:AT_S:RESTART_S` or `partition:CODE:FROM_S:UNTIL_S`. Repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Random faults drawn from the seed (down windows, crashes, partitions).
    #[arg(long, default_value_t = 0)]
    random_faults: usize,
    /// Random faults start and end within [0, this] seconds.
    #[arg(long, default_value_t = 600.0)]
    fault_window_s: f64,
    /// Hard cap on processed events.
    #[arg(long, default_value_t = 50_000_000)]
    events_max: u64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// `strict`, `skip-level` or `direct` (provinces serve their counties directly, with
    /// skip-level fallback).
    #[arg(long, default_value = "skip-level")]
    routing: String,
}

#[derive(Args)]
struct WhatifArgs {
    #[command(flatten)]
    common: Common,
    /// Extra topologies to compare (fan-out changes); the --topology one is always included.
    #[arg(long = "also-topology")]
    also: Vec<String>,
    /// Routing variants to compare, comma-separated.
    #[arg(long, default_value = "strict,skip-level,direct")]
    routings: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simnet: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.cmd {
        Cmd::Run(args) => {
            let mut cfg = config(&args.common)?;
            cfg.routing = Routing::parse(&args.routing)?;
            prepare_out(&args.common.out)?;
            let started = Instant::now();
            let outcome = run(&cfg)?;
            let wall = started.elapsed().as_secs_f64();
            let report = Report::build(&outcome);
            write(&args.common.out.join("report.json"), &report.to_json())?;
            write(&args.common.out.join("report.html"), &report.to_html())?;
            say(&report.summary());
            sayln(format!(
                "wall {:.2} s; {:.0} events/s; peak RSS {}",
                wall,
                report.result.events as f64 / wall.max(1e-9),
                peak_rss().unwrap_or_else(|| "unknown".to_string())
            ));
            sayln(format!(
                "wrote {}",
                args.common.out.join("report.{json,html}").display()
            ));
            Ok(exit_for(report.invariants_ok() && finished(&report)))
        }
        Cmd::Whatif(args) => {
            let cfg = config(&args.common)?;
            let mut topologies = vec![cfg.topology.clone()];
            for t in &args.also {
                topologies.push(TopologySpec::parse(t)?);
            }
            let routings: Vec<Routing> = args
                .routings
                .split(',')
                .map(|r| Routing::parse(r.trim()))
                .collect::<Result<_, SimError>>()?;
            prepare_out(&args.common.out)?;
            let started = Instant::now();
            let variants = whatif::run_variants(&cfg, &topologies, &routings)?;
            write(
                &args.common.out.join("whatif.json"),
                &whatif::to_json(&variants),
            )?;
            write(
                &args.common.out.join("whatif.html"),
                &whatif::to_html(&variants),
            )?;
            say(&whatif::summary(&variants));
            say(&format!("wall {:.2} s\n", started.elapsed().as_secs_f64()));
            sayln(format!(
                "wrote {}",
                args.common.out.join("whatif.{json,html}").display()
            ));
            Ok(exit_for(
                variants
                    .iter()
                    .all(|v| v.report.invariants_ok() && finished(&v.report)),
            ))
        }
        Cmd::Share(args) => {
            let cfg = share_config(&args)?;
            prepare_out(&args.out)?;
            let started = Instant::now();
            let outcome = run_share(&cfg)?;
            let wall = started.elapsed().as_secs_f64();
            let report = &outcome.report;
            let text = report.summary();
            write(&args.out.join("share.json"), &report.to_json())?;
            write(&args.out.join("share.txt"), &text)?;
            say(&text);
            sayln(format!(
                "wall {:.1} s; {:.0} events/s; peak RSS {}",
                wall,
                report.time.events as f64 / wall.max(1e-9),
                peak_rss().unwrap_or_else(|| "unknown".to_string())
            ));
            sayln(format!(
                "wrote {}",
                args.out.join("share.{json,txt}").display()
            ));
            Ok(exit_for(report.invariants_ok()))
        }
        Cmd::Catalog(args) => catalog(&args),
        Cmd::CatalogRestore => {
            say(&catalog_restore());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn catalog(a: &CatalogArgs) -> Result<ExitCode, CliError> {
    let mut cfg = CatalogScaleConfig::national(a.seed);
    cfg.tiers = a.tiers;
    cfg.nodes = a.nodes;
    cfg.plan.departments = a.departments;
    cfg.plan.entries = a.entries;
    cfg.plan.items = a.items;
    cfg.plan.window_us = seconds(a.window_s, "--window-s")?;
    cfg.events_max = a.events_max;
    prepare_out(&a.out)?;
    let rss_before = rss_kib("VmRSS:");
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let outcome = run_catalog(&cfg)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let report = &outcome.report;
    let mut text = report.summary();
    text += &format!(
        "process: wall {:.1} s, CPU {}, RSS before the run {}, peak RSS {}\n",
        wall,
        cpu.map_or("unknown".to_string(), |c| format!("{c:.1} s")),
        rss_before.map_or("unknown".to_string(), mib),
        rss_kib("VmHWM:").map_or("unknown".to_string(), mib),
    );
    let restore = if a.no_restore {
        None
    } else {
        Some(restore_in_child(&outcome.national_store))
    };
    if let Some(r) = &restore {
        text += &format!(
            "national restart (a fresh process restoring national's CatalogSync from its storage): {r}\n"
        );
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&report.to_json()).unwrap_or(serde_json::Value::Null);
    if let Some(o) = json.as_object_mut() {
        o.insert("wall_s".into(), wall.into());
        o.insert("cpu_s".into(), cpu.into());
        o.insert("peak_rss_kib".into(), rss_kib("VmHWM:").into());
        o.insert("rss_before_run_kib".into(), rss_before.into());
        o.insert("national_restore".into(), restore.clone().into());
    }
    write(
        &a.out.join("catalog.json"),
        &serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    write(&a.out.join("catalog.txt"), &text)?;
    say(&text);
    sayln(format!(
        "wrote {}",
        a.out.join("catalog.{json,txt}").display()
    ));
    Ok(exit_for(report.converged()))
}

fn share_config(a: &ShareArgs) -> Result<ShareConfig, CliError> {
    let mut c = ShareConfig::national(a.seed);
    let dist = |option: &'static str, spec: &Option<String>, into: &mut DelayDist| {
        if let Some(spec) = spec {
            *into = DelayDist::parse(spec).map_err(|problem| CliError::ShareOption {
                option,
                spec: spec.clone(),
                problem,
            })?;
        }
        Ok::<(), CliError>(())
    };
    dist(
        "answer-unconditional",
        &a.answer_unconditional,
        &mut c.answer_unconditional,
    )?;
    dist(
        "answer-conditional",
        &a.answer_conditional,
        &mut c.answer_conditional,
    )?;
    dist("supplement", &a.supplement, &mut c.supplement)?;
    dist("delivery", &a.delivery, &mut c.delivery)?;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        requests,
        departments,
        start,
        window_days,
        conditional,
        local_node,
        local_province,
        off_hours,
        incomplete,
        extend,
        refuse,
        relay_down,
        loss,
        events_max
    );
    if let Some(t) = &a.tiers {
        let bad = |problem: &str| CliError::ShareOption {
            option: "tiers",
            spec: t.clone(),
            problem: problem.to_string(),
        };
        let w: Vec<u32> = t
            .split(',')
            .map(|x| x.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("expected five whole numbers"))?;
        c.tier_weights = w
            .try_into()
            .map_err(|_| bad("expected five weights: national,province,city,county,township"))?;
    }
    if let Some(h) = &a.down_hours {
        let bad = || CliError::ShareOption {
            option: "down-hours",
            spec: h.clone(),
            problem: "expected LO-HI hours".to_string(),
        };
        let (lo, hi) = h.split_once('-').ok_or_else(bad)?;
        c.down_hours = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
    }
    if let Some(path) = &a.calendar {
        let text = std::fs::read_to_string(path).map_err(|error| CliError::Read {
            path: path.clone(),
            error,
        })?;
        c.calendar_file = Some(text);
        c.calendar = "official+file";
    }
    Ok(c)
}

fn finished(r: &Report) -> bool {
    use backflow_simnet::engine::StopReason;
    matches!(
        r.result.stop,
        StopReason::Quiescent | StopReason::HorizonReached
    )
}

fn exit_for(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn config(c: &Common) -> Result<RunConfig, CliError> {
    let topology = TopologySpec::parse(&c.topology)?;
    let mut cfg = RunConfig::return_flow(topology, c.seed);
    cfg.node = match c.node.as_str() {
        "protocol" => NodeImpl::Protocol,
        "model" => NodeImpl::Model,
        other => return Err(CliError::UnknownNode(other.to_string())),
    };
    let publisher = RegionCode::parse(&c.publisher).map_err(CliError::Publisher)?;
    let (flow, churn) = match c.scenario.as_str() {
        "return-flow" => (true, false),
        "catalog-churn" => (false, true),
        "both" => (true, true),
        other => return Err(CliError::UnknownScenario(other.to_string())),
    };
    cfg.publisher = flow.then_some(publisher);
    cfg.dataset_bytes = parse_bytes(&c.bytes)?;
    cfg.dataset_records = c.records;
    cfg.spread = Spread::parse(&c.spread)?;
    cfg.shell.costs = match c.costs.as_str() {
        "default" => Costs::default(),
        "none" => Costs::free(),
        other => return Err(CliError::UnknownCosts(other.to_string())),
    };
    cfg.shell.control_outbox = !c.no_outbox;
    cfg.churn_townships = if churn { c.churn } else { 0 };
    cfg.churn_window_us = seconds(c.churn_window_s, "--churn-window-s")?;
    for l in &c.links {
        let ((upper, lower), spec) = parse_link(l)?;
        if lower == upper + 1 {
            cfg.net.tiers[upper as usize] = spec;
        } else {
            // A link that skips tiers (skip-level fallback, direct links).
            cfg.net
                .direct
                .retain(|(u, l, _)| (*u, *l) != (upper, lower));
            cfg.net.direct.push((upper, lower, spec));
        }
    }
    for e in &c.egress {
        let bad = |problem| CliError::Egress {
            spec: e.clone(),
            problem,
        };
        let (tier, mbit) = e
            .split_once('=')
            .ok_or_else(|| bad(SpecError::Format("TIER=MBIT_PER_S")))?;
        let depth = Level::ALL
            .iter()
            .find(|l| l.name() == tier)
            .map(|l| l.depth() as usize)
            .ok_or_else(|| bad(SpecError::UnknownTier(tier.to_string())))?;
        let mbit: f64 = mbit
            .trim()
            .parse()
            .map_err(|_| bad(SpecError::NotANumber(mbit.to_string())))?;
        if !(0.001..=1e7).contains(&mbit) {
            return Err(bad(SpecError::OutOfRange("0.001..1e7 Mbit/s")));
        }
        cfg.net.egress_bytes_per_s[depth] = Some(((mbit * 1e6 / 8.0).round() as u64).max(1));
    }
    if let Some(loss) = c.loss {
        check_loss(loss)?;
        cfg.net.set_loss(loss);
    }
    let topo = cfg.topology.build(cfg.seed)?;
    for f in &c.faults {
        cfg.faults.push(Fault::parse(f, &topo)?);
    }
    cfg.random_faults = c.random_faults;
    if cfg.random_faults > RANDOM_FAULTS_MAX {
        return Err(CliError::RandomFaults {
            max: RANDOM_FAULTS_MAX,
        });
    }
    cfg.fault_window_us = seconds(c.fault_window_s, "--fault-window-s")?;
    cfg.limits.events_max = c.events_max;
    Ok(cfg)
}

fn seconds(v: f64, option: &'static str) -> Result<u64, CliError> {
    if !(0.0..=1e8).contains(&v) {
        return Err(CliError::Seconds { option, value: v });
    }
    Ok((v * MICROS_PER_S as f64).round() as u64)
}

fn check_loss(loss: f64) -> Result<(), CliError> {
    if (0.0..0.9).contains(&loss) {
        Ok(())
    } else {
        Err(CliError::Loss(loss))
    }
}

/// Parses `UPPER-LOWER=LATENCY_MS,MBIT_PER_S,LOSS`; returns the (upper, lower) depths.
fn parse_link(text: &str) -> Result<((u8, u8), LinkSpec), CliError> {
    let bad = |problem| CliError::Link {
        spec: text.to_string(),
        problem,
    };
    let (tier, rest) = text
        .split_once('=')
        .ok_or_else(|| bad(SpecError::Format("TIER=LATENCY_MS,MBIT_PER_S,LOSS")))?;
    let depth = |name: &str| {
        Level::ALL
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.depth())
    };
    let pair = tier
        .split_once('-')
        .and_then(|(a, b)| Some((depth(a)?, depth(b)?)))
        .filter(|(a, b)| a < b);
    let Some(tier) = pair else {
        return Err(bad(SpecError::UnknownTierPair(tier.to_string())));
    };
    let f: Vec<&str> = rest.split(',').collect();
    let [lat, bw, loss] = f[..] else {
        return Err(bad(SpecError::Format("LATENCY_MS,MBIT_PER_S,LOSS")));
    };
    let num = |s: &str| -> Result<f64, CliError> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| bad(SpecError::NotANumber(s.to_string())))
    };
    let (lat, bw, loss) = (num(lat)?, num(bw)?, num(loss)?);
    if !(0.0..=600_000.0).contains(&lat) || !(0.001..=1e7).contains(&bw) {
        return Err(bad(SpecError::OutOfRange(
            "latency must be 0..600000 ms and bandwidth 0.001..1e7 Mbit/s",
        )));
    }
    check_loss(loss)?;
    Ok((
        tier,
        LinkSpec {
            latency_us: (lat * 1e3).round() as u64,
            bandwidth_bytes_per_s: ((bw * 1e6 / 8.0).round() as u64).max(1),
            loss,
        },
    ))
}

fn parse_bytes(text: &str) -> Result<u64, CliError> {
    let bad = |problem| CliError::Bytes {
        spec: text.to_string(),
        problem,
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(SpecError::Format("a number with an optional unit")))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => return Err(bad(SpecError::UnknownUnit(other.to_string()))),
    };
    // 64 TiB: far beyond one return-flow; keeps group counts within the protocol's limits.
    let too_large = || bad(SpecError::OutOfRange("at most 64 TiB"));
    let v = n.checked_mul(mult).ok_or_else(too_large)?;
    if v > 1 << 46 {
        return Err(too_large());
    }
    Ok(v)
}

fn prepare_out(dir: &PathBuf) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|error| CliError::CreateDir {
        path: dir.clone(),
        error,
    })
}

fn write(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|error| CliError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes to stdout, ignoring a closed pipe (`simnet run … | head` must not panic).
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn sayln(text: String) {
    say(&(text + "\n"));
}
