//! `backflow publish`: hands a dataset file to the running node, follows the publish job
//! with a progress bar, and prints its report (rejects and warnings with line numbers).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use backflow_node::config::Config;
use backflow_node::http;
use indicatif::{ProgressBar, ProgressStyle};

use super::common::{absolute, DataArg};

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
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
}

pub fn run(args: PublishArgs) -> Result<()> {
    let PublishArgs {
        data,
        dataset,
        region_field,
        format,
        strict_villages,
        file,
    } = args;
    publish(
        &data.dir,
        dataset,
        region_field,
        format,
        strict_villages,
        &file,
    )
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
