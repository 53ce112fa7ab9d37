//! Excel and Parquet conversions in a child process of the node's binary
//! (`backflow convert-records`, `backflow_formats::child`): the same records as converting in
//! process; a bad file refused with the converter's own message; a child that runs out of its
//! memory limit (here lowered so that it must) ends that conversion with a clear error while
//! the calling process goes on.

use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use backflow_formats::child::run_child;
use backflow_formats::parquet_in::parquet_to_ndjson;
use backflow_formats::xlsx_in::xlsx_to_csv;
use backflow_ingest::source::FileFormat;
use parquet::arrow::ArrowWriter;

const BACKFLOW: &str = env!("CARGO_BIN_EXE_backflow");

fn file_of(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.rewind().unwrap();
    f
}

fn parquet() -> Vec<u8> {
    let villages: Vec<String> = (0..5_000)
        .map(|i| format!("110101001{:03}", i % 1000))
        .collect();
    let names: Vec<String> = (0..5_000).map(|i| format!("张{i}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("village", Arc::new(StringArray::from(villages)) as ArrayRef),
        ("name", Arc::new(StringArray::from(names)) as ArrayRef),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn xlsx() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let s = book.add_worksheet();
    s.write_string(0, 0, "village").unwrap();
    s.write_string(0, 1, "金额").unwrap();
    for r in 1..2_000u32 {
        s.write_string(r, 0, format!("110101001{:03}", r % 1000))
            .unwrap();
        s.write_number(r, 1, f64::from(r) / 4.0).unwrap();
    }
    book.save_to_buffer().unwrap()
}

fn in_child(args: &[&str], format: FileFormat, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    run_child(Path::new(BACKFLOW), args, format, file_of(bytes), &mut out)?;
    Ok(out)
}

#[test]
fn a_child_converts_exactly_as_the_process_does() {
    let p = parquet();
    let mut here = Vec::new();
    parquet_to_ndjson(file_of(&p), &mut here).unwrap();
    assert_eq!(in_child(&[], FileFormat::Parquet, &p).unwrap(), here);
    assert_eq!(here.iter().filter(|b| **b == b'\n').count(), 5_000);

    let x = xlsx();
    let mut here = Vec::new();
    xlsx_to_csv(file_of(&x), &mut here).unwrap();
    assert_eq!(in_child(&[], FileFormat::Xlsx, &x).unwrap(), here);
    assert!(String::from_utf8(here)
        .unwrap()
        .starts_with("village,金额\n110101001001,0.25\n"));
}

#[test]
fn a_bad_file_is_refused_with_the_converters_message() {
    let e = in_child(
        &[],
        FileFormat::Parquet,
        b"village,name\n110101001001,secret\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a readable Parquet file"), "{e}");
    assert!(!e.contains("secret"), "echoes the file: {e}");
    let e = in_child(&[], FileFormat::Xlsx, b"PK\x03\x04 not a zip")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a readable .xlsx workbook"), "{e}");
}

#[test]
fn a_child_out_of_memory_ends_its_conversion_not_the_caller() {
    // 32 MiB of address space: less than the binary's own mappings, so the child's first
    // large allocation fails and it aborts.
    let limit = (32u64 << 20).to_string();
    let e = in_child(
        &["--address-space-bytes-max", &limit],
        FileFormat::Parquet,
        &parquet(),
    )
    .unwrap_err()
    .to_string();
    // Rust aborts on a failed allocation: SIGABRT, reported as such.
    assert!(
        e.contains("stopped (signal 6)"),
        "not reported as the converter dying: {e}"
    );
    // And this process goes on: the next conversion, with the default limit, works.
    assert!(in_child(&[], FileFormat::Parquet, &parquet()).is_ok());
}
