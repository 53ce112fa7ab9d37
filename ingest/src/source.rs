//! The formats a publisher may hand in, and which record format each is stored as. CSV and
//! NDJSON are stored as given (byte for byte); an Excel workbook becomes CSV and a Parquet file
//! NDJSON at the edge (the `backflow-formats` crate), before the partitioner sees a byte. This
//! enum is here, without those crates, so the API can name and check formats cheaply.

use std::path::Path;

use anyhow::{bail, Result};

use crate::fields::Format;

/// A file format accepted on publish and offered on export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Ndjson,
    /// Office Open XML workbook: the first worksheet, first row the header.
    Xlsx,
    /// Apache Parquet: one record per row.
    Parquet,
}

/// What `format` accepts, for error messages and help texts.
pub const FILE_FORMAT_NAMES: &str = "csv, ndjson, xlsx or parquet";

impl FileFormat {
    /// Every format, in the order forms and help texts list them.
    pub const ALL: [FileFormat; 4] = [
        FileFormat::Csv,
        FileFormat::Ndjson,
        FileFormat::Xlsx,
        FileFormat::Parquet,
    ];

    /// What a person calls it (forms, tables).
    pub fn label(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Ndjson => "NDJSON",
            FileFormat::Xlsx => "Excel (.xlsx)",
            FileFormat::Parquet => "Parquet",
        }
    }

    /// Guesses from the file extension (`.csv`, `.ndjson`/`.jsonl`/`.json`, `.xlsx`,
    /// `.parquet`/`.pq`).
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_str()?;
        FileFormat::parse(ext).ok()
    }

    pub fn parse(text: &str) -> Result<FileFormat> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "csv" => FileFormat::Csv,
            "ndjson" | "jsonl" | "json" => FileFormat::Ndjson,
            "xlsx" => FileFormat::Xlsx,
            "parquet" | "pq" => FileFormat::Parquet,
            other => bail!("unknown format {other:?}; expected {FILE_FORMAT_NAMES}"),
        })
    }

    /// The canonical name (what `parse` reads back).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Ndjson => "ndjson",
            FileFormat::Xlsx => "xlsx",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The record format the partitioner reads and the node stores: an Excel sheet is a
    /// table (CSV), a Parquet file's rows are objects (NDJSON).
    pub fn records(self) -> Format {
        match self {
            FileFormat::Csv | FileFormat::Xlsx => Format::Csv,
            FileFormat::Ndjson | FileFormat::Parquet => Format::Ndjson,
        }
    }

    /// Whether this format is converted at the edge (not stored as given).
    pub fn is_converted(self) -> bool {
        matches!(self, FileFormat::Xlsx | FileFormat::Parquet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_extensions_and_record_formats() {
        for f in FileFormat::ALL {
            assert_eq!(FileFormat::parse(f.name()).unwrap(), f);
        }
        assert_eq!(
            FileFormat::from_path(Path::new("低保.XLSX")),
            Some(FileFormat::Xlsx)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("a.parquet")),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_path(Path::new("a.xls")), None);
        assert_eq!(FileFormat::Xlsx.records(), Format::Csv);
        assert_eq!(FileFormat::Parquet.records(), Format::Ndjson);
        assert!(FileFormat::parse("xls")
            .unwrap_err()
            .to_string()
            .contains("xlsx"));
    }
}
