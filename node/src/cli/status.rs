//! `backflow status`: delivery status per dataset and child region, from the running node.

use std::path::Path;

use anyhow::Result;

use backflow_node::share_api::time_text;
use backflow_node::text_width::pad;

use super::common::{call, urlencode, DataArg};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long)]
    dataset: Option<String>,
    /// Show delivery to the children of this region (a code inside this node's jurisdiction,
    /// e.g. a county to see its townships) instead of this node's children.
    #[arg(long)]
    region: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let StatusArgs {
        data,
        dataset,
        region,
        json,
    } = args;
    status(&data.dir, dataset, region, json)
}

fn status(dir: &Path, dataset: Option<String>, region: Option<String>, json: bool) -> Result<()> {
    let query: Vec<String> = [("dataset", dataset), ("region", region)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencode(&v))))
        .collect();
    let path = if query.is_empty() {
        "/api/status".to_string()
    } else {
        format!("/api/status?{}", query.join("&"))
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
                "  {:<10} {} {:<9} {:>12} {:>14} {:>14}  {}",
                c["region"].as_str().unwrap_or(""),
                pad(c["name"].as_str().unwrap_or(""), 16),
                c["state"].as_str().unwrap_or(""),
                format!("{}/{}", c["regions_delivered"], c["regions_expected"]),
                format!("{}/{}", c["records_delivered"], c["records_expected"]),
                format!("{}/{}", c["bytes_delivered"], c["bytes_expected"]),
                c["last_receipt_at"].as_u64().map_or("-".to_string(), |t| {
                    let at = backflow_protocol::time::UnixMs(t);
                    let ago = backflow_node::clock::now_ms().since_ms(at) / 1000;
                    format!("{} ({})", time_text(at), ago_text(ago))
                }),
            )?;
        }
    }
    Ok(())
}

/// How long ago, in the largest whole unit: 刚刚, N 秒前, N 分钟前, N 小时前, N 天前.
fn ago_text(secs: u64) -> String {
    match secs {
        0..=4 => "刚刚".to_string(),
        5..=59 => format!("{secs} 秒前"),
        60..=3599 => format!("{} 分钟前", secs / 60),
        3600..=86_399 => format!("{} 小时前", secs / 3600),
        _ => format!("{} 天前", secs / 86_400),
    }
}
