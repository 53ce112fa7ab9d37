//! The Excel and Parquet converters on hostile files, reached the way a publish reaches them
//! (`records_of`, the node's entry point: the input spooled, converted on a thread into a
//! pipe) and the way an export writes them (`write_table`). Random bytes rarely get past a zip
//! directory or a Parquet footer, so most inputs describe a table instead: it is written as a
//! real workbook or Parquet file by the export path, then either read back whole or read
//! back after the input's byte edits to that file. Checked on every input:
//!
//! - no panic anywhere (libFuzzer aborts on one, in the converter's thread too), except one
//!   of the Parquet conversion raised outside our code, which `parquet_to_ndjson` catches and
//!   turns into a refusal (the parquet crate panics on some malformed footers);
//! - an export of one-line text records always succeeds within the limits, and reading it
//!   back gives every value exactly (a workbook: the CSV fields, trailing empty rows aside;
//!   Parquet: every value a JSON string) — the documented mapping of node/README.md;
//! - an edited or raw file is either refused with an error or converted into well-formed
//!   records: CSV lines that parse with no more fields than the header, or JSON objects.
#![no_main]

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backflow_formats::export::write_table;
use backflow_formats::publish_input::records_of;
use backflow_formats::records::{csv_fields, json_fields, Lines};
use backflow_ingest::fields::Format;
use backflow_ingest::source::FileFormat;
use libfuzzer_sys::fuzz_target;

/// Inputs past this are skipped: each iteration writes and reads real files.
const INPUT_BYTES_MAX: usize = 4096;
/// Field and row separators of the table description (ASCII unit and record separators).
const FIELD_SEP: u8 = 0x1f;
const ROW_SEP: u8 = 0x1e;
/// Separates the table description from the byte edits.
const EDITS_SEP: &[u8] = b"\xff\xfe";

/// The thread `records_of` converts a Parquet file on.
const PARQUET_THREAD: &str = "convert-parquet";
/// Our own sources: a panic raised there is a bug, wherever it runs.
const OURS: &str = "formats/src/";

/// libFuzzer's panic hook aborts at once, before `catch_unwind` could catch anything: this
/// one lets a panic of the Parquet conversion thread that is not raised by our own code (the
/// parquet and arrow crates', and the standard library's on their behalf, such as a capacity
/// overflow) unwind to `parquet_to_ndjson`, and aborts on every other, as libFuzzer's does.
fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |l| l.file());
            let thread = std::thread::current();
            if thread.name() == Some(PARQUET_THREAD) && !file.contains(OURS) {
                return;
            }
            fuzzer(info);
        }));
    });
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap().keep())
}

/// A table from the input: header `c0..`, rows of one-line text fields. Without U+FFFE and
/// U+FFFF, which XML cannot hold: a workbook keeps them as `_xFFFF_` escapes, and calamine
/// reads those back as written (documented in node/README.md).
fn table(cols: usize, body: &[u8]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for row in body.split(|&b| b == ROW_SEP) {
        let mut fields: Vec<String> = row
            .split(|&b| b == FIELD_SEP)
            .map(|f| {
                String::from_utf8_lossy(f).replace(['\n', '\r'], " ").replace(
                    ['\u{fffe}', '\u{ffff}'],
                    "\u{fffd}",
                )
            })
            .collect();
        fields.resize(cols, String::new());
        rows.push(fields);
    }
    rows
}

/// The rows as stored CSV records: header first, every field quoted (so no line is blank).
fn csv(cols: usize, rows: &[Vec<String>]) -> Vec<u8> {
    let mut out = String::new();
    let header: Vec<String> = (0..cols).map(|i| format!("c{i}")).collect();
    for row in std::iter::once(&header).chain(rows) {
        let quoted: Vec<String> = row
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// What the export path writes for `rows`, or `None` where it refuses (a limit).
fn export(format: FileFormat, cols: usize, rows: &[Vec<String>]) -> Option<Vec<u8>> {
    let records = csv(cols, rows);
    let mut out = Vec::new();
    let written = write_table(
        format,
        Format::Csv,
        scratch(),
        &mut |w| Ok(w.write_all(&records)?),
        &mut out,
    );
    match written {
        Ok(n) => {
            assert_eq!(n, rows.len() as u64, "every record is a row");
            Some(out)
        }
        Err(e) => {
            // Only a cell Excel cannot hold is refused; nothing here is over a limit.
            let e = format!("{e:#}");
            assert!(e.contains("not writable to Excel"), "export refused: {e}");
            None
        }
    }
}

/// The file read the way a publish reads it: its records, or the refusal.
fn publish(format: FileFormat, file: Vec<u8>) -> Result<Vec<u8>, String> {
    let (stored, mut reader) = records_of(format, Box::new(Cursor::new(file)), scratch())
        .map_err(|e| format!("{e:#}"))?;
    assert_eq!(stored, format.records());
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Records as rows of values: CSV fields (the header first), or each JSON object's values.
fn rows_of(stored: Format, records: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut lines = Lines::new(|_, line: &[u8]| {
        match stored {
            Format::Csv => {
                csv_fields(line, &mut fields).expect("a converted CSV line parses");
                rows.push(fields.drain(..).map(Some).collect());
            }
            Format::Ndjson => {
                let object = json_fields(line).expect("a converted line is a JSON object");
                rows.push(object.into_iter().map(|(_, v)| v).collect());
            }
        }
        Ok(())
    });
    std::io::Write::write_all(&mut lines, records).unwrap();
    lines.finish().unwrap();
    rows
}

fn check_well_formed(format: FileFormat, records: &[u8]) {
    let rows = rows_of(format.records(), records);
    if format == FileFormat::Xlsx {
        if let Some((header, rest)) = rows.split_first() {
            for row in rest {
                assert!(row.len() <= header.len().max(1), "a row wider than the header");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    install_panic_hook();
    if data.len() < 2 || data.len() > INPUT_BYTES_MAX {
        return;
    }
    let format = if data[0] & 1 == 0 {
        FileFormat::Xlsx
    } else {
        FileFormat::Parquet
    };
    let mode = (data[0] >> 1) % 4;
    if mode == 3 {
        // The raw bytes as the file.
        if let Ok(records) = publish(format, data[2..].to_vec()) {
            check_well_formed(format, &records);
        }
        return;
    }
    let cols = 1 + (data[1] % 8) as usize;
    let (body, edits) = match data[2..]
        .windows(EDITS_SEP.len())
        .position(|w| w == EDITS_SEP)
    {
        Some(i) => (&data[2..2 + i], &data[2 + i + EDITS_SEP.len()..]),
        None => (&data[2..], &[][..]),
    };
    let rows = table(cols, body);
    let Some(mut file) = export(format, cols, &rows) else {
        return;
    };
    if mode == 0 || edits.is_empty() {
        // Read back whole: every value exactly.
        let records = publish(format, file).expect("an exported file reads back");
        let mut got = rows_of(format.records(), &records);
        match format {
            FileFormat::Xlsx => {
                let header: Vec<Option<String>> = (0..cols).map(|i| Some(format!("c{i}"))).collect();
                assert_eq!(got.first(), Some(&header), "the header row");
                got.remove(0);
                // Empty cells are not written: pad short rows, drop trailing empty rows.
                let empty = |r: &Vec<String>| r.iter().all(String::is_empty);
                let mut want: Vec<&Vec<String>> = rows.iter().collect();
                while want.last().is_some_and(|r| empty(r)) {
                    want.pop();
                }
                for row in &mut got {
                    row.resize(cols, Some(String::new()));
                }
                let want: Vec<Vec<Option<String>>> = want
                    .into_iter()
                    .map(|r| r.iter().cloned().map(Some).collect())
                    .collect();
                assert_eq!(got, want);
            }
            _ => {
                let want: Vec<Vec<Option<String>>> = rows
                    .iter()
                    .map(|r| r.iter().cloned().map(Some).collect())
                    .collect();
                assert_eq!(got, want);
            }
        }
        return;
    }
    // Edited: (position: 2 bytes, value: 1 byte) per edit, positions modulo the length.
    for e in edits.chunks_exact(3) {
        let at = u16::from_le_bytes([e[0], e[1]]) as usize % file.len();
        file[at] = e[2];
    }
    if mode == 2 {
        file.truncate(file.len() - (edits[0] as usize % file.len()));
    }
    if let Ok(records) = publish(format, file) {
        check_well_formed(format, &records);
    }
});
