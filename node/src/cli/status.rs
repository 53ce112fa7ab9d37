//! `backflow status`: delivery status per dataset and child region, from the running node.

use std::path::Path;

use anyhow::Result;

use super::common::{call, urlencode, DataArg};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long)]
    dataset: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let StatusArgs {
        data,
        dataset,
        json,
    } = args;
    status(&data.dir, dataset, json)
}

fn status(dir: &Path, dataset: Option<String>, json: bool) -> Result<()> {
    let path = match &dataset {
        Some(d) => format!("/api/status?dataset={}", urlencode(d)),
        None => "/api/status".into(),
    };
    let v = call(dir, "GET", &path, None)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("no datasets held here")?;
    }
    for d in list {
        outln!(
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
        )?;
        outln!(
            "  here: {} partitions, {} records, {} bytes, {}",
            d["partitions_here"],
            d["records_here"],
            d["bytes_here"],
            if d["held_complete"].as_bool() == Some(true) {
                "all stored and verified"
            } else {
                "still arriving"
            }
        )?;
        outln!(
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
        )?;
        outln!(
            "  {:<10} {:<16} {:<9} {:>12} {:>14} {:>14}  last receipt",
            "child",
            "name",
            "state",
            "regions",
            "records",
            "bytes"
        )?;
        for c in d["children"].as_array().into_iter().flatten() {
            outln!(
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
            )?;
        }
    }
    Ok(())
}
