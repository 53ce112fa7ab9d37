//! `backflow catalog add|list|show`: the data catalog (Arts. 12–17) through the running node.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::common::{call, urlencode, DataArg};

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
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

pub fn run(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Add { data, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let v = call(&data.dir, "POST", "/api/catalog", Some(&body))?;
            println!(
                "catalog version {} submitted; it syncs up to the parent",
                v["seq"]
            );
        }
        CatalogCmd::List { data } => {
            let v = call(&data.dir, "GET", "/api/catalog", None)?;
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
            let v = call(
                &data.dir,
                "GET",
                &format!("/api/catalog/{}", urlencode(&id)),
                None,
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
