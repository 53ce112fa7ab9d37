//! `backflow export`: writes the records a node holds for its own region, each line
//! byte-identical to the published line. Within a township, lines are in published order;
//! across townships (at a county or above), partitions follow in region-code order.
//!
//! Every partition is re-hashed while it is written and must match its manifest entry, so an
//! export never contains data that does not verify.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use backflow_protocol::return_flow::TransferRecord;
use backflow_topology::RegionCode;
use serde::Serialize;

use crate::store::Store;

#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub dataset: String,
    /// The publisher's region and department: with `dataset`, whose dataset this is.
    pub publisher: RegionCode,
    pub department: String,
    pub version: u64,
    pub partitions: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Writes the partitions of `record` inside `region` to the file `out` (atomically: a temp
/// file renamed). For the CLI's and the tests' own files; the API writes through [`write`].
pub fn export(
    store: &Store,
    record: &TransferRecord,
    region: RegionCode,
    out: &Path,
) -> Result<ExportSummary> {
    export_all(store, &[record], region, out)
}

/// Like [`export`] over several records of one dataset version (a dataset the publisher split
/// into per-scope manifests), in scope order.
pub fn export_all<R: std::ops::Deref<Target = TransferRecord>>(
    store: &Store,
    records: &[R],
    region: RegionCode,
    out: &Path,
) -> Result<ExportSummary> {
    let tmp = out.with_extension("partial");
    let mut w = BufWriter::with_capacity(
        1024 * 1024,
        File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let summary = write(store, records, region, &mut w)?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(summary)
}

/// Checks every partition that an export would write against its signed manifest entry
/// (bytes, hash, line count) without writing anything: a streamed export calls this first,
/// so data that does not verify never starts to leave the node.
pub fn verify<R: std::ops::Deref<Target = TransferRecord>>(
    store: &Store,
    records: &[R],
    region: RegionCode,
) -> Result<ExportSummary> {
    write(store, records, region, &mut std::io::sink())
}

/// Writes the header and the partitions inside `region`, re-hashing each as it goes; fails
/// (mid-stream) on the first partition that does not match its manifest entry.
pub fn write<R: std::ops::Deref<Target = TransferRecord>>(
    store: &Store,
    records: &[R],
    region: RegionCode,
    w: &mut dyn Write,
) -> Result<ExportSummary> {
    let Some(first) = records.first() else {
        bail!("nothing to export");
    };
    let m = &first.manifest.manifest;
    // The published header line, byte for byte (terminator included).
    w.write_all(&m.schema.header)?;
    let mut summary = ExportSummary {
        dataset: m.dataset.split('@').next().unwrap_or_default().to_string(),
        publisher: m.publisher.region,
        department: m.publisher.department.clone(),
        version: m.version,
        partitions: 0,
        records: 0,
        bytes: 0,
    };
    let mut records: Vec<&TransferRecord> = records.iter().map(|r| &**r).collect();
    records.sort_by_key(|r| r.manifest.manifest.scope);
    let entries = records
        .iter()
        .flat_map(|r| r.entries.iter())
        .filter(|e| region.contains(e.region));
    for e in entries {
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        let mut records = 0u64;
        store.for_each_group(&e.content_hash, |_, data| {
            hasher.update(data);
            bytes += data.len() as u64;
            records += memchr::memchr_iter(b'\n', data).count() as u64;
            w.write_all(data)?;
            Ok(())
        })?;
        if bytes != e.bytes || hasher.finalize().as_bytes() != &e.content_hash {
            // Not exported; the caller reports it, and the node fetches it again.
            return Err(crate::chunks::Damaged::whole(e).into());
        }
        if records != e.records {
            bail!(
                "partition of {} has {records} lines, manifest says {}",
                e.region,
                e.records
            );
        }
        summary.partitions += 1;
        summary.records += records;
        summary.bytes += bytes;
    }
    w.flush()?;
    Ok(summary)
}
