//! `backflow export`: has the running node write its own-region records of a dataset to a
//! file, byte-identical to the published lines.

use std::path::PathBuf;

use anyhow::Result;
use backflow_node::config::Config;
use backflow_node::http;

use super::common::{absolute, DataArg};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long)]
    dataset: String,
    #[arg(long)]
    version: Option<u64>,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let ExportArgs {
        data,
        dataset,
        version,
        out,
    } = args;
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
