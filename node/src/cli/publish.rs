//! `backflow publish`: streams a dataset file to the running node as the body of
//! `POST /api/publish` with a progress bar, and prints its report (rejects and warnings with
//! line numbers).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backflow_ingest::source::{FileFormat, FILE_FORMAT_NAMES};
use indicatif::{ProgressBar, ProgressStyle};

use super::common::{client, runtime, urlencode, DataArg};

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long)]
    dataset: String,
    /// Field holding each record's village (12-digit) or township (9-digit) code.
    #[arg(long)]
    region_field: String,
    /// csv, ndjson, xlsx or parquet (default: from the file extension). An .xlsx is read
    /// from its first worksheet (first row the header, every cell as text: numbers as their
    /// value, dates ISO 8601) and stored as CSV; a .parquet file's rows are stored as NDJSON
    /// objects (dates and timestamps ISO 8601 strings; nested and binary columns refused).
    /// The whole mapping: node/README.md, "Excel and Parquet".
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
    let format = match format {
        Some(f) => f,
        None => FileFormat::from_path(file)
            .map(|f| f.name().to_string())
            .with_context(|| {
                format!(
                    "cannot tell the format of {} from its name; pass --format \
                     {FILE_FORMAT_NAMES}",
                    file.display()
                )
            })?,
    };
    let client = client(dir)?;
    let path = format!(
        "/api/publish?dataset={}&region_field={}&format={}&strict_villages={strict_villages}",
        urlencode(&dataset),
        urlencode(&region_field),
        urlencode(&format)
    );
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "upload [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    // The data goes as the request body, read here with this user's permissions: the node
    // never opens a path a client names (except inside its configured import_dir).
    let report = runtime()?.block_on(async {
        let input = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let length = input.metadata().await?.len();
        bar.set_length(length);
        let shown = bar.clone();
        client
            .upload(&path, input, length, move |sent| {
                shown.set_position(sent);
                if sent == length {
                    shown.set_message("— partitioning and signing");
                }
            })
            .await
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            return Err(e);
        }
    };
    bar.finish_and_clear();
    let s = &report["summary"];
    let manifests = report["manifests"].as_array().map_or(0, |m| m.len());
    outln!(
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
    )?;
    let rejects = &s["rejects"];
    let total = line_report_total(rejects);
    if total > 0 {
        outln!("{total} records NOT published (listed in the node's rejects file):")?;
        print_line_report(rejects)?;
    }
    let warnings = &s["warnings"];
    let total = line_report_total(warnings);
    if total > 0 {
        outln!(
            "{total} records published WITH A WARNING (also listed in the node's rejects file, \
             reason `warning: …`):"
        )?;
        print_line_report(warnings)?;
        outln!(
            "  an unknown village's records went to its township; \
             publish with --strict-villages to reject them instead"
        )?;
    }
    outln!("delivery is under way; follow it with `backflow status --dataset {dataset}`")?;
    Ok(())
}

/// Records counted in a `{counts, first_lines}` report of the publish summary.
fn line_report_total(report: &serde_json::Value) -> u64 {
    report["counts"]
        .as_object()
        .map_or(0, |c| c.values().filter_map(|v| v.as_u64()).sum())
}

/// One line per reason: its count and its first line numbers.
fn print_line_report(report: &serde_json::Value) -> std::io::Result<()> {
    for (reason, n) in report["counts"].as_object().into_iter().flatten() {
        let lines: Vec<String> = report["first_lines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l[1].as_str() == Some(reason))
            .take(10)
            .map(|l| l[0].to_string())
            .collect();
        outln!("  {n:>8} × {reason} — lines {}", lines.join(", "))?;
    }
    Ok(())
}
