//! Records on export → a Parquet file: every column a nullable UTF-8 string column named by
//! the header (CSV) or by the union of the objects' keys (NDJSON), so every value comes back
//! exactly as published; a missing value or JSON `null` is null. Rows are buffered
//! [`PARQUET_OUT_BATCH_ROWS`] at a time and row groups closed at
//! [`PARQUET_OUT_ROW_GROUP_BYTES`], so memory does not grow with the dataset; the file is
//! written to scratch, then copied to the output.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows buffered before they are encoded.
pub const PARQUET_OUT_BATCH_ROWS: usize = 8192;
/// A row group is closed once its encoded size passes this (the writer holds it in memory).
pub const PARQUET_OUT_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

pub struct ParquetTable {
    schema: SchemaRef,
    columns: Vec<StringBuilder>,
    rows: usize,
    writer: ArrowWriter<std::fs::File>,
    file: tempfile::NamedTempFile,
}

impl ParquetTable {
    pub fn new(header: &[String], scratch: &Path) -> Result<ParquetTable> {
        let schema: SchemaRef = Arc::new(Schema::new(
            header
                .iter()
                .map(|h| Field::new(h, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let file = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile_in(scratch)
            .with_context(|| format!("creating a file in {}", scratch.display()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file.reopen()?, Arc::clone(&schema), Some(props))?;
        Ok(ParquetTable {
            columns: header.iter().map(|_| StringBuilder::new()).collect(),
            schema,
            rows: 0,
            writer,
            file,
        })
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn row(&mut self, fields: &[Option<&str>]) -> Result<()> {
        for (i, c) in self.columns.iter_mut().enumerate() {
            c.append_option(fields.get(i).copied().flatten());
        }
        self.rows += 1;
        if self.rows >= PARQUET_OUT_BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)?;
        self.writer.write(&batch)?;
        self.rows = 0;
        if self.writer.in_progress_size() > PARQUET_OUT_ROW_GROUP_BYTES {
            self.writer.flush()?;
        }
        Ok(())
    }

    pub fn finish(mut self, out: &mut dyn Write) -> Result<()> {
        self.flush_batch()?;
        self.writer.close()?;
        let mut f = std::fs::File::open(self.file.path())?;
        std::io::copy(&mut f, out)?;
        out.flush()?;
        Ok(())
    }
}
