//! `backflow export`: streams the running node's own-region records of a dataset into a file,
//! byte-identical to the published lines. The node verifies every partition before it sends
//! a byte; this command writes `<out>.partial` and renames it only when the whole stream
//! arrived, so a cut-off export never leaves a file that looks complete.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::common::{client, runtime, urlencode, DataArg};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long)]
    dataset: String,
    /// The publisher's region code; needed only when datasets of this name from more than one
    /// publisher or department are held here (a dataset is publisher, department and name).
    #[arg(long)]
    publisher: Option<String>,
    /// The publishing department (see `--publisher`).
    #[arg(long)]
    department: Option<String>,
    #[arg(long)]
    version: Option<u64>,
    /// xlsx or parquet: the records as a table — one worksheet / a Parquet file, every
    /// column text, named by the CSV header or (NDJSON) by the union of the records' keys in
    /// first-seen order. Default: the records as published, byte for byte.
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let ExportArgs {
        data,
        dataset,
        publisher,
        department,
        version,
        format,
        out,
    } = args;
    let client = client(&data.dir)?;
    let mut path = format!("/api/export?dataset={}", urlencode(&dataset));
    if let Some(v) = version {
        path.push_str(&format!("&version={v}"));
    }
    if let Some(p) = publisher {
        path.push_str(&format!("&publisher={}", urlencode(&p)));
    }
    if let Some(d) = department {
        path.push_str(&format!("&department={}", urlencode(&d)));
    }
    if let Some(f) = format {
        path.push_str(&format!("&format={}", urlencode(&f)));
    }
    let partial = out.with_extension("partial");
    let (headers, bytes) = runtime()?
        .block_on(async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("creating {}", partial.display()))?;
            let got = client.download(&path, &mut file).await;
            if got.is_ok() {
                file.sync_all().await?;
            }
            anyhow::Ok(got)
        })?
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
    std::fs::rename(&partial, &out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string()
    };
    outln!(
        "wrote {} records ({bytes} bytes, {} partitions) of {} v{} to {}",
        header("x-backflow-records"),
        header("x-backflow-partitions"),
        header("x-backflow-dataset"),
        header("x-backflow-version"),
        out.display()
    )?;
    Ok(())
}
