//! Records on export → an Excel workbook: one worksheet, the header in row 1, every value a
//! text cell (so `007`, `110101001001` and `1.50` come back exactly as published; a missing
//! value is an empty cell). rust_xlsxwriter's constant-memory worksheet writes each row to a
//! temporary file as it goes; the workbook is assembled there and then copied to the output
//! (a zip needs to seek back, a response body cannot).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rust_xlsxwriter::Workbook;

/// Rows of one worksheet, the header included: Excel's own limit.
pub const XLSX_OUT_ROWS_MAX: u32 = 1_048_576;

/// A workbook being written, row by row.
pub struct XlsxTable {
    book: Workbook,
    row: u32,
    width: usize,
    file: tempfile::NamedTempFile,
}

impl XlsxTable {
    /// A workbook with `header` as its first row; temporary files in `scratch`.
    pub fn new(header: &[String], scratch: &Path) -> Result<XlsxTable> {
        let mut book = Workbook::new();
        book.set_tempdir(scratch)
            .with_context(|| format!("using {} for temporary files", scratch.display()))?;
        book.add_worksheet_with_constant_memory();
        let file = tempfile::Builder::new()
            .suffix(".xlsx")
            .tempfile_in(scratch)
            .with_context(|| format!("creating a file in {}", scratch.display()))?;
        let mut t = XlsxTable {
            book,
            row: 0,
            width: header.len(),
            file,
        };
        let header: Vec<Option<&str>> = header.iter().map(|h| Some(h.as_str())).collect();
        t.row(&header)?;
        Ok(t)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn row(&mut self, fields: &[Option<&str>]) -> Result<()> {
        if self.row >= XLSX_OUT_ROWS_MAX {
            bail!(
                "more than {} records: over what one Excel worksheet holds; export parquet or \
                 the published format instead",
                XLSX_OUT_ROWS_MAX - 1
            );
        }
        let sheet = self.book.worksheet_from_index(0)?;
        for (col, value) in fields.iter().enumerate() {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                sheet
                    .write_string(self.row, col as u16, v)
                    .with_context(|| {
                        format!(
                            "record {}, column {}: not writable to Excel",
                            self.row,
                            col + 1
                        )
                    })?;
            }
        }
        self.row += 1;
        Ok(())
    }

    /// Assembles the workbook and copies it to `out`.
    pub fn finish(mut self, out: &mut dyn Write) -> Result<()> {
        self.book.save(self.file.path())?;
        let mut f = std::fs::File::open(self.file.path())?;
        std::io::copy(&mut f, out)?;
        out.flush()?;
        Ok(())
    }
}
