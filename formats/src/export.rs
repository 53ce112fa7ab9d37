//! An export as a table: the records a node writes (CSV with its header line, or NDJSON) as
//! an Excel workbook or a Parquet file. Columns are the CSV header's fields, or for NDJSON the
//! union of the objects' keys in first-seen order (at most [`EXPORT_COLUMNS_MAX`]; that needs
//! one pass over the records before the table is written, so `records` is called twice).
//! Memory stays bounded: rows stream through, one line at a time.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use backflow_ingest::fields::Format;
use backflow_ingest::source::FileFormat;

use crate::parquet_out::ParquetTable;
use crate::records::{csv_fields, json_fields, Lines};
use crate::xlsx_out::XlsxTable;

/// Columns of an exported table (the protocol's `SCHEMA_FIELDS_MAX` for CSV; NDJSON keys may
/// vary by record, and their union is bounded the same).
pub const EXPORT_COLUMNS_MAX: usize = 512;

/// Writes the records `records` produces (in `stored` format) to `out` as `table`
/// ([`FileFormat::Xlsx`] or [`FileFormat::Parquet`]), with temporary files in `scratch`.
/// Returns the rows written (the header not counted).
pub fn write_table(
    table: FileFormat,
    stored: Format,
    scratch: &Path,
    records: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    out: &mut dyn Write,
) -> Result<u64> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let columns = match stored {
        Format::Csv => None,
        Format::Ndjson => Some(json_keys(records)?),
    };
    let mut sink: Option<Sink> = None;
    let open = |header: &[String]| -> Result<Sink> {
        Ok(match table {
            FileFormat::Xlsx => Sink::Xlsx(Box::new(XlsxTable::new(header, scratch)?)),
            FileFormat::Parquet => Sink::Parquet(Box::new(ParquetTable::new(header, scratch)?)),
            other => bail!("{} is not a table format", other.name()),
        })
    };
    if let Some(keys) = &columns {
        sink = Some(open(keys)?);
    }
    let mut rows = 0u64;
    let mut fields = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    {
        let mut lines = Lines::new(|n, line: &[u8]| {
            match (&columns, &mut sink) {
                (None, None) => {
                    csv_fields(line, &mut fields).context("the header line is not CSV")?;
                    if fields.len() > EXPORT_COLUMNS_MAX {
                        bail!("the header has more than {EXPORT_COLUMNS_MAX} fields");
                    }
                    sink = Some(open(&fields)?);
                    return Ok(());
                }
                (None, Some(s)) => {
                    csv_fields(line, &mut fields)
                        .with_context(|| format!("record on line {n} is not CSV"))?;
                    if fields.len() > s.width() {
                        bail!("record on line {n} has more fields than the header");
                    }
                    let values: Vec<Option<&str>> =
                        fields.iter().map(|f| Some(f.as_str())).collect();
                    s.row(&values)?;
                }
                (Some(keys), Some(s)) => {
                    let object = json_fields(line)
                        .with_context(|| format!("record on line {n} is not JSON"))?;
                    row.clear();
                    row.resize(keys.len(), None);
                    for (k, v) in object {
                        if let Some(i) = keys.iter().position(|c| *c == k) {
                            row[i] = v;
                        }
                    }
                    let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
                    s.row(&values)?;
                }
                (Some(_), None) => unreachable!("the table is opened with the keys"),
            }
            rows += 1;
            Ok(())
        });
        records(&mut lines)?;
        lines.finish()?;
    }
    match sink {
        Some(s) => s.finish(out)?,
        None => bail!("the records have no header line"),
    }
    Ok(rows)
}

/// The union of the NDJSON records' keys, first seen first.
fn json_keys(records: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut lines = Lines::new(|n, line: &[u8]| {
        let object =
            json_fields(line).with_context(|| format!("record on line {n} is not JSON"))?;
        for (k, _) in object {
            if !seen.contains(&k) {
                if keys.len() == EXPORT_COLUMNS_MAX {
                    bail!("the records have more than {EXPORT_COLUMNS_MAX} distinct keys");
                }
                seen.insert(k.clone());
                keys.push(k);
            }
        }
        Ok(())
    });
    records(&mut lines)?;
    lines.finish()?;
    Ok(keys)
}

enum Sink {
    Xlsx(Box<XlsxTable>),
    Parquet(Box<ParquetTable>),
}

impl Sink {
    fn width(&self) -> usize {
        match self {
            Sink::Xlsx(t) => t.width(),
            Sink::Parquet(t) => t.width(),
        }
    }
    fn row(&mut self, fields: &[Option<&str>]) -> Result<()> {
        match self {
            Sink::Xlsx(t) => t.row(fields),
            Sink::Parquet(t) => t.row(fields),
        }
    }
    fn finish(self, out: &mut dyn Write) -> Result<()> {
        match self {
            Sink::Xlsx(t) => t.finish(out),
            Sink::Parquet(t) => t.finish(out),
        }
    }
}
