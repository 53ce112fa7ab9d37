//! A Parquet file on publish → NDJSON records: one JSON object per row, its keys the columns
//! in schema order. The type mapping:
//!
//! | Parquet / Arrow column | JSON value |
//! | --- | --- |
//! | string (`UTF8`, large, view; dictionary-encoded too) | string |
//! | signed and unsigned integers | number |
//! | float, double (half too) | number; `NaN`, `Infinity`, `-Infinity` as strings |
//! | boolean | `true` / `false` |
//! | decimal | string, exactly as stored (`"12.30"`: no binary rounding) |
//! | date | string, ISO 8601 (`"2024-03-01"`) |
//! | timestamp without a time zone | string, ISO 8601 (`"2024-03-01T08:30:00"`, fractions as stored) |
//! | timestamp with a time zone | string, ISO 8601 in UTC (`"2024-03-01T00:30:00Z"`) |
//! | time of day, duration, interval | string, as Arrow displays it |
//! | null (any column) | `null` |
//! | binary, fixed-size binary, list, struct, map, union | refused: the error names the column |
//!
//! Streaming: row groups are decoded [`PARQUET_BATCH_ROWS`] rows at a time; a row group
//! whose footer says it unpacks beyond [`PARQUET_ROW_GROUP_BYTES_MAX`] is refused before
//! reading. Errors name columns, row groups and limits, never values.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A file larger than this is refused: the same as the API takes as a publish's body.
pub const PARQUET_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// Columns (the protocol's `SCHEMA_FIELDS_MAX`, as for the other formats).
pub const PARQUET_COLUMNS_MAX: usize = 512;
/// A row group's declared unpacked size: its pages are decoded within it.
pub const PARQUET_ROW_GROUP_BYTES_MAX: i64 = 1024 * 1024 * 1024;
/// Rows decoded at a time: what one batch holds in memory.
pub const PARQUET_BATCH_ROWS: usize = 1024;

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetSummary {
    pub columns: usize,
    pub records: u64,
}

/// How a column's values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Written as the formatter prints it (integers, booleans).
    Raw,
    /// A number unless it is not finite.
    Float,
    /// A JSON string of the formatter's text.
    Text,
    /// A JSON string, with `Z` (the column was cast to UTC without its zone).
    Utc,
}

/// Converts the Parquet file `file` into NDJSON lines on `out`, each ending in `\n`.
///
/// The parquet crate panics on some malformed files instead of returning an error (an
/// `unwrap` in its footer decoder, found by `formats/fuzz`; its upstream fuzzing keeps finding
/// such cases). A hostile upload must end as a refusal naming the problem, so a panic inside
/// the decoding is caught here and reported as an unreadable file. The fuzz target still
/// aborts on any panic raised outside the parquet and arrow crates: ours are bugs.
pub fn parquet_to_ndjson(file: File, out: &mut dyn Write) -> Result<ParquetSummary> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(file, out))).unwrap_or_else(
        |_| bail!("the file is not a readable Parquet file (its decoder failed on it)"),
    )
}

fn decode(file: File, out: &mut dyn Write) -> Result<ParquetSummary> {
    let size = file.metadata()?.len();
    if size > PARQUET_BYTES_MAX {
        bail!("the Parquet file is {size} bytes, over {PARQUET_BYTES_MAX}");
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| anyhow::anyhow!("the file is not a readable Parquet file"))?;
    let fields = builder.schema().fields().clone();
    if fields.len() > PARQUET_COLUMNS_MAX {
        bail!(
            "the Parquet file has {} columns, over the {PARQUET_COLUMNS_MAX} a dataset may have",
            fields.len()
        );
    }
    let kinds: Vec<Kind> = fields.iter().map(|f| kind_of(f)).collect::<Result<_>>()?;
    for (i, g) in builder.metadata().row_groups().iter().enumerate() {
        if g.total_byte_size() > PARQUET_ROW_GROUP_BYTES_MAX {
            bail!(
                "row group {i} unpacks to {} bytes, over {PARQUET_ROW_GROUP_BYTES_MAX}; \
                 write the file with smaller row groups",
                g.total_byte_size()
            );
        }
    }
    // Each key once, JSON-escaped, with its colon.
    let keys: Vec<Vec<u8>> = fields
        .iter()
        .map(|f| {
            let mut k = serde_json::to_vec(f.name()).unwrap_or_default();
            k.push(b':');
            k
        })
        .collect();
    let reader = builder
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()
        .map_err(|_| anyhow::anyhow!("the file is not a readable Parquet file"))?;
    let options = FormatOptions::default();
    let mut records = 0u64;
    let mut line = Vec::new();
    let mut text = String::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|_| {
            anyhow::anyhow!("the Parquet file could not be decoded after record {records}")
        })?;
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(&kinds)
            .map(|(c, k)| utc_cast(c, *k))
            .collect::<Result<_>>()?;
        let formatters = columns
            .iter()
            .zip(fields.iter())
            .map(|(c, f)| {
                ArrayFormatter::try_new(c.as_ref(), &options)
                    .with_context(|| format!("column {} cannot be shown", column_name(f)))
            })
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            line.clear();
            line.push(b'{');
            for (i, ((col, fmt), kind)) in columns.iter().zip(&formatters).zip(&kinds).enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.extend_from_slice(&keys[i]);
                if col.is_null(row) {
                    line.extend_from_slice(b"null");
                    continue;
                }
                text.clear();
                use std::fmt::Write as _;
                write!(text, "{}", fmt.value(row)).map_err(|_| {
                    anyhow::anyhow!(
                        "column {}: record {} cannot be shown",
                        column_name(&fields[i]),
                        records + 1
                    )
                })?;
                match kind {
                    Kind::Raw => line.extend_from_slice(text.as_bytes()),
                    Kind::Float if text.parse::<f64>().is_ok_and(f64::is_finite) => {
                        line.extend_from_slice(text.as_bytes())
                    }
                    Kind::Float => {
                        let t = match text.as_str() {
                            "inf" | "Infinity" => "Infinity",
                            "-inf" | "-Infinity" => "-Infinity",
                            _ => "NaN",
                        };
                        serde_json::to_writer(&mut line, t)?;
                    }
                    Kind::Text => serde_json::to_writer(&mut line, &text)?,
                    Kind::Utc => {
                        text.push('Z');
                        serde_json::to_writer(&mut line, &text)?;
                    }
                }
            }
            line.extend_from_slice(b"}\n");
            out.write_all(&line)?;
            records += 1;
        }
    }
    out.flush()?;
    Ok(ParquetSummary {
        columns: fields.len(),
        records,
    })
}

/// How `field`'s values are written, or why they cannot be records.
fn kind_of(field: &Field) -> Result<Kind> {
    fn of(t: &DataType) -> Option<Kind> {
        use DataType::*;
        Some(match t {
            Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
                Kind::Raw
            }
            Float16 | Float32 | Float64 => Kind::Float,
            Utf8 | LargeUtf8 | Utf8View => Kind::Text,
            Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Kind::Text,
            Date32 | Date64 | Time32(_) | Time64(_) | Duration(_) | Interval(_) => Kind::Text,
            Timestamp(_, None) => Kind::Text,
            Timestamp(_, Some(_)) => Kind::Utc,
            Dictionary(_, value) => match of(value)? {
                Kind::Utc => return None,
                k => k,
            },
            _ => return None,
        })
    }
    of(field.data_type()).with_context(|| {
        format!(
            "column {} is of type {}: nested and binary columns cannot be records; \
             leave it out, or store it as a string",
            column_name(field),
            field.data_type()
        )
    })
}

/// A timestamp with a time zone as UTC wall-clock time: the stored values are UTC instants,
/// so only the zone is dropped (no zone database is built in, and none is needed).
fn utc_cast(column: &ArrayRef, kind: Kind) -> Result<ArrayRef> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    use arrow_schema::TimeUnit;
    let none: Option<Arc<str>> = None;
    Ok(match (kind, column.data_type()) {
        (Kind::Utc, DataType::Timestamp(unit, Some(_))) => match unit {
            TimeUnit::Second => Arc::new(
                column
                    .as_primitive::<TimestampSecondType>()
                    .clone()
                    .with_timezone_opt(none),
            ),
            TimeUnit::Millisecond => Arc::new(
                column
                    .as_primitive::<TimestampMillisecondType>()
                    .clone()
                    .with_timezone_opt(none),
            ),
            TimeUnit::Microsecond => Arc::new(
                column
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone_opt(none),
            ),
            TimeUnit::Nanosecond => Arc::new(
                column
                    .as_primitive::<TimestampNanosecondType>()
                    .clone()
                    .with_timezone_opt(none),
            ),
        },
        _ => Arc::clone(column),
    })
}

/// A column's name for messages: quoted, at most 64 characters.
fn column_name(field: &Field) -> String {
    let name: String = field.name().chars().take(64).collect();
    format!("{name:?}")
}
