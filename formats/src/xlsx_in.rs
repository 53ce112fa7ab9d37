//! An Excel workbook (`.xlsx`) on publish → CSV records: the first worksheet, its first row
//! with a cell the header, every cell as text, one CSV line per sheet row (line *n* of the
//! publish report is the *n*-th row counted from the header row). The mapping:
//!
//! | cell | text |
//! | --- | --- |
//! | text | as is (RFC 4180 quoting where needed) |
//! | number | its value, up to the 15 significant digits Excel keeps; integers without `.0` (`42`, `0.3`, `-1.25`) — not the cell's display format |
//! | date / time (by the cell's number format) | ISO 8601: `2024-03-01`, `2024-03-01T08:30:00`, `08:30:00` (`.mmm` when there are milliseconds) |
//! | duration (`[h]:mm:ss`) | ISO 8601 duration: `PT27H30M0S` |
//! | boolean | `true` / `false` |
//! | error | as Excel shows it: `#DIV/0!`, `#N/A`, … |
//! | empty | empty |
//!
//! A row without any cell becomes an empty record (the partitioner rejects it for its missing
//! region, with its line number); a cell holding a line break is refused (a record is one
//! line). Streaming: calamine's cell reader walks the sheet's XML once; what it reads whole —
//! shared strings, styles, the workbook part — is bounded by [`XLSX_PART_BYTES_MAX`] before it
//! does. Errors name rows, columns and limits, never cell contents.

use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{bail, Result};
use calamine::{DataRef, ExcelDateTime, ExcelDateTimeType, Reader, Xlsx};

/// A workbook larger than this is refused: it is unpacked, not streamed, by zip's central
/// directory, and 512 MiB of compressed XML is far beyond Excel's own 1,048,576 rows of
/// ordinary data.
pub const XLSX_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Any part of the workbook other than a worksheet (shared strings, styles, workbook) may
/// unpack to at most this: calamine reads those whole into memory before the first cell.
pub const XLSX_PART_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Columns of the header (the protocol's `SCHEMA_FIELDS_MAX`: a wider header could not be
/// signed into the manifest anyway).
pub const XLSX_COLUMNS_MAX: u32 = 512;
/// Rows of a worksheet: Excel's own limit. Also what stops a hostile file from placing one
/// cell at row 4,000,000,000 and making us write billions of empty records.
pub const XLSX_ROWS_MAX: u32 = 1_048_576;
/// One cell's text: Excel's 32,767 characters, at most 3 UTF-8 bytes each.
pub const XLSX_CELL_BYTES_MAX: usize = 32_767 * 3;

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XlsxSummary {
    /// Header columns.
    pub columns: u32,
    /// Record lines after the header (empty rows included).
    pub records: u64,
}

/// Converts the first worksheet of the workbook in `file` into CSV lines (header first) on
/// `out`, each ending in `\n`.
pub fn xlsx_to_csv<F: Read + Seek>(mut file: F, out: &mut dyn Write) -> Result<XlsxSummary> {
    let size = file.seek(SeekFrom::End(0))?;
    if size > XLSX_BYTES_MAX {
        bail!("the workbook is {size} bytes, over the {XLSX_BYTES_MAX} bytes an .xlsx may have");
    }
    file.seek(SeekFrom::Start(0))?;
    check_parts(&mut file)?;
    file.seek(SeekFrom::Start(0))?;
    let mut book: Xlsx<F> = Xlsx::new(file).map_err(|_| not_xlsx())?;
    let Some(sheet) = book.sheet_names().into_iter().next() else {
        bail!("the workbook has no worksheet");
    };
    let mut cells = book
        .worksheet_cells_reader(&sheet)
        .map_err(|_| not_xlsx())?;
    let mut table = Table::default();
    let mut text = String::new();
    loop {
        let cell = match cells.next_cell() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(_) => bail!(
                "the first worksheet is malformed after row {}",
                table.row.map_or(0, |r| r + 1)
            ),
        };
        let (row, col) = cell.get_position();
        text.clear();
        cell_text(cell.get_value(), &mut text);
        table.cell(row, col, &text, out)?;
    }
    table.finish(out)
}

fn not_xlsx() -> anyhow::Error {
    anyhow::anyhow!("the file is not a readable .xlsx workbook (an Office Open XML spreadsheet)")
}

/// Refuses a workbook whose non-worksheet parts would unpack beyond [`XLSX_PART_BYTES_MAX`].
fn check_parts<F: Read + Seek>(file: &mut F) -> Result<()> {
    let mut zip = zip::ZipArchive::new(file).map_err(|_| not_xlsx())?;
    for i in 0..zip.len() {
        let part = zip.by_index_raw(i).map_err(|_| not_xlsx())?;
        if !part.name().starts_with("xl/worksheets/") && part.size() > XLSX_PART_BYTES_MAX {
            bail!(
                "a part of the workbook other than a worksheet (shared strings, styles) unpacks \
                 to {} bytes, over {XLSX_PART_BYTES_MAX}",
                part.size()
            );
        }
    }
    Ok(())
}

/// The sheet's rows as CSV lines: header width fixed by the header row.
#[derive(Default)]
struct Table {
    /// The header's row (0-based), once seen.
    header_row: Option<u32>,
    columns: u32,
    /// The row being collected, and its fields.
    row: Option<u32>,
    fields: Vec<String>,
    records: u64,
}

impl Table {
    fn cell(&mut self, row: u32, col: u32, text: &str, out: &mut dyn Write) -> Result<()> {
        let name = || cell_name(row, col);
        if row >= XLSX_ROWS_MAX {
            bail!("cell {} lies beyond Excel's {XLSX_ROWS_MAX} rows", name());
        }
        if let Some(current) = self.row {
            if row < current {
                bail!("the worksheet's cells are out of order at row {}", row + 1);
            }
            if row > current {
                self.end_row(out)?;
                // Rows without any cell in between: empty records, so lines stay rows.
                if self.header_row.is_some() {
                    for _ in current + 1..row {
                        self.write_fields(&[], out)?;
                    }
                }
            }
        }
        self.row = Some(row);
        if text.len() > XLSX_CELL_BYTES_MAX {
            bail!(
                "cell {} holds {} bytes of text, over {XLSX_CELL_BYTES_MAX}",
                name(),
                text.len()
            );
        }
        if text.contains(['\n', '\r']) {
            bail!(
                "cell {} holds a line break: a record is one line; remove it, or publish CSV",
                name()
            );
        }
        let in_header = self.header_row.is_none();
        if in_header {
            if col >= XLSX_COLUMNS_MAX {
                bail!(
                    "the header row has a cell in column {}, over the {XLSX_COLUMNS_MAX} columns \
                     a dataset may have",
                    col_name(col)
                );
            }
        } else if col >= self.columns {
            if text.is_empty() {
                return Ok(());
            }
            bail!(
                "cell {} holds a value right of the header's last column {}",
                name(),
                col_name(self.columns.saturating_sub(1))
            );
        }
        let col = col as usize;
        if self.fields.len() <= col {
            self.fields.resize(col + 1, String::new());
        }
        self.fields[col].clear();
        self.fields[col].push_str(text);
        Ok(())
    }

    /// Writes the collected row (the header, the first time).
    fn end_row(&mut self, out: &mut dyn Write) -> Result<()> {
        if self.row.is_none() {
            return Ok(());
        }
        let mut fields = std::mem::take(&mut self.fields);
        if self.header_row.is_none() {
            // Trailing empty header cells are not columns.
            while fields.last().is_some_and(|f| f.is_empty()) {
                fields.pop();
            }
            if fields.is_empty() {
                // A row of only empty cells: not the header yet.
                self.row = None;
                return Ok(());
            }
            self.header_row = self.row;
            self.columns = fields.len() as u32;
            write_csv_line(&fields, self.columns as usize, out)?;
        } else {
            self.write_fields(&fields, out)?;
        }
        fields.iter_mut().for_each(String::clear);
        self.fields = fields;
        Ok(())
    }

    fn write_fields(&mut self, fields: &[String], out: &mut dyn Write) -> Result<()> {
        write_csv_line(fields, self.columns as usize, out)?;
        self.records += 1;
        Ok(())
    }

    fn finish(mut self, out: &mut dyn Write) -> Result<XlsxSummary> {
        self.end_row(out)?;
        if self.header_row.is_none() {
            bail!("the first worksheet has no header row (it is empty)");
        }
        out.flush()?;
        Ok(XlsxSummary {
            columns: self.columns,
            records: self.records,
        })
    }
}

/// One CSV line of exactly `width` fields (missing ones empty), quoted where RFC 4180 needs it.
fn write_csv_line(fields: &[String], width: usize, out: &mut dyn Write) -> Result<()> {
    for i in 0..width {
        if i > 0 {
            out.write_all(b",")?;
        }
        let f = fields.get(i).map_or("", String::as_str);
        if f.contains([',', '"']) || f.starts_with(' ') || f.ends_with(' ') {
            out.write_all(b"\"")?;
            out.write_all(f.replace('"', "\"\"").as_bytes())?;
            out.write_all(b"\"")?;
        } else {
            out.write_all(f.as_bytes())?;
        }
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// A cell's text (see the module's table).
fn cell_text(value: &DataRef<'_>, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        DataRef::Empty => {}
        DataRef::String(s) => out.push_str(s),
        DataRef::SharedString(s) => out.push_str(s),
        DataRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        DataRef::Float(f) => number_text(*f, out),
        DataRef::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        DataRef::DateTime(d) if d.is_duration() => duration_text(d.as_f64(), out),
        DataRef::DateTime(d) => {
            // Rounded to Excel's milliseconds here: calamine's own split can yield
            // `08:29:59.1000` for 08:30.
            let ms = (d.as_f64() * 86_400_000.0).round() as i64;
            let (days, ms) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
            let is_1904 = *d == ExcelDateTime::new(d.as_f64(), ExcelDateTimeType::DateTime, true);
            let (y, mo, day, ..) =
                ExcelDateTime::new(days as f64, ExcelDateTimeType::DateTime, is_1904)
                    .to_ymd_hms_milli();
            let (h, mi, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
            let has_date = days >= 1;
            let has_time = ms != 0 || (h, mi, s) != (0, 0, 0);
            if has_date || !has_time {
                let _ = write!(out, "{y:04}-{mo:02}-{day:02}");
            }
            if has_time {
                if has_date {
                    out.push('T');
                }
                let _ = write!(out, "{h:02}:{mi:02}:{s:02}");
                if ms != 0 {
                    let _ = write!(out, ".{ms:03}");
                }
            }
        }
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => out.push_str(s),
        DataRef::Error(e) => {
            let _ = write!(out, "{e}");
        }
    }
}

/// A number as Excel keeps it: 15 significant digits, shortest form, no `.0` on integers.
fn number_text(f: f64, out: &mut String) {
    use std::fmt::Write as _;
    if !f.is_finite() {
        out.push_str(if f.is_nan() { "NaN" } else { "Infinity" });
        return;
    }
    let kept: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    if kept == 0.0 {
        out.push('0');
    } else if kept.fract() == 0.0 && kept.abs() < 1e15 {
        let _ = write!(out, "{}", kept as i64);
    } else {
        let _ = write!(out, "{kept}");
    }
}

/// An Excel duration (days) as ISO 8601 (`PT27H30M0S`, `-PT1H0M0S`).
fn duration_text(days: f64, out: &mut String) {
    use std::fmt::Write as _;
    let ms = (days * 86_400_000.0).round() as i64;
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let _ = write!(out, "{sign}PT{h}H{m}M{s}");
    if milli != 0 {
        let _ = write!(out, ".{milli:03}");
    }
    out.push('S');
}

/// `A1` notation of a 0-based cell.
fn cell_name(row: u32, col: u32) -> String {
    format!("{}{}", col_name(col), u64::from(row) + 1)
}

/// `A`, `B`, …, `Z`, `AA`, … of a 0-based column.
fn col_name(col: u32) -> String {
    let mut n = u64::from(col) + 1;
    let mut name = Vec::new();
    while n > 0 {
        let d = ((n - 1) % 26) as u8;
        name.push(b'A' + d);
        n = (n - 1) / 26;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_excel_keeps_them() {
        let t = |f: f64| {
            let mut s = String::new();
            number_text(f, &mut s);
            s
        };
        assert_eq!(t(42.0), "42");
        assert_eq!(t(-1.25), "-1.25");
        assert_eq!(t(0.1 + 0.2), "0.3");
        assert_eq!(t(110101001001.0), "110101001001");
        assert_eq!(t(-0.0), "0");
        assert_eq!(t(1e20), "100000000000000000000");
    }

    #[test]
    fn cell_and_column_names() {
        assert_eq!(cell_name(0, 0), "A1");
        assert_eq!(cell_name(9, 25), "Z10");
        assert_eq!(col_name(26), "AA");
        assert_eq!(col_name(16_383), "XFD");
    }

    #[test]
    fn durations() {
        let mut s = String::new();
        duration_text(27.5 / 24.0, &mut s);
        assert_eq!(s, "PT27H30M0S");
    }
}
