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

/// Peak resident memory of a running process (`VmHWM`, the kernel's high-water mark), bytes.
fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A Parquet file of `rows` rows (four text columns and an integer, ~100 bytes a record as
/// NDJSON), written a batch at a time so the test itself stays small.
fn large_parquet(rows: usize) -> std::fs::File {
    use arrow_array::Int64Array;
    const BATCH_ROWS: usize = 65_536;
    let file = tempfile::tempfile().unwrap();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut done = 0;
    while done < rows {
        let n = BATCH_ROWS.min(rows - done);
        let range = done..done + n;
        let village: Vec<String> = range
            .clone()
            .map(|i| format!("4419{:05}{:03}", i % 99_991, i % 997))
            .collect();
        let person: Vec<String> = range.clone().map(|i| format!("44190019{i:010}")).collect();
        let name: Vec<String> = range.clone().map(|i| format!("东莞居民{i}号")).collect();
        let amount: Vec<i64> = range.map(|i| (i as i64) * 37 % 1_000_003).collect();
        let batch = RecordBatch::try_from_iter([
            ("village", Arc::new(StringArray::from(village)) as ArrayRef),
            ("person", Arc::new(StringArray::from(person)) as ArrayRef),
            ("name", Arc::new(StringArray::from(name)) as ArrayRef),
            ("amount", Arc::new(Int64Array::from(amount)) as ArrayRef),
        ])
        .unwrap();
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), None).unwrap()
        });
        w.write(&batch).unwrap();
        done += n;
    }
    writer.unwrap().close().unwrap();
    let mut file = file;
    file.rewind().unwrap();
    file
}

/// A workbook of `rows` rows under a header, written by the node's own export writer
/// (rust_xlsxwriter's constant-memory mode), ~150 bytes a record as CSV.
fn large_xlsx(rows: usize) -> std::fs::File {
    let scratch = tempfile::tempdir().unwrap();
    let header: Vec<String> = ["village", "person", "name", "note"]
        .map(String::from)
        .to_vec();
    let mut table = backflow_formats::xlsx_out::XlsxTable::new(&header, scratch.path()).unwrap();
    for i in 0..rows {
        let village = format!("4419{:05}{:03}", i % 99_991, i % 997);
        let person = format!("44190019{i:010}");
        let name = format!("东莞居民{i}号");
        let note = format!("第{i}条：最低生活保障资格复核，按户比对参保状态与申请材料，结论待定");
        table
            .row(&[Some(&village), Some(&person), Some(&name), Some(&note)])
            .unwrap();
    }
    let mut file = tempfile::tempfile().unwrap();
    table.finish(&mut file).unwrap();
    file.rewind().unwrap();
    file
}

/// Converts `input` in the node's own child process (`backflow convert-records`, as a
/// publish runs it), counting its output: (records, bytes, the child's peak resident
/// memory). The peak is the kernel's high-water mark of the child, read at every chunk of
/// its output (once the child has exited, its status has no memory figures).
fn convert_measured(format: FileFormat, input: std::fs::File) -> (u64, u64, u64) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(BACKFLOW)
        .args(["convert-records", format.name()])
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    let mut peak = None;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        peak = peak_rss_bytes(child.id()).or(peak);
        bytes += n as u64;
        records += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "the converter failed: {stderr}");
    let peak = peak.expect("the child's /proc status while it wrote");
    eprintln!(
        "{} → {bytes} bytes of records ({records} lines); converter peak RSS {} MiB",
        format.name(),
        peak >> 20
    );
    (records, bytes, peak)
}

/// What a converter may hold, whatever the file's size (it measured ~30 MiB on both formats).
const CONVERTER_PEAK_RSS_BYTES_MAX: u64 = 64 << 20;

/// #20's "streaming with bounded memory": files whose records are several times what the
/// converter may hold convert with its resident memory far below their size.
#[test]
fn large_files_convert_in_bounded_memory() {
    const PARQUET_ROWS: usize = 3_000_000;
    const XLSX_ROWS: usize = 1_000_000;
    for (format, input, lines) in [
        (
            FileFormat::Parquet,
            large_parquet(PARQUET_ROWS),
            PARQUET_ROWS as u64,
        ),
        // The header line, then one line per row.
        (
            FileFormat::Xlsx,
            large_xlsx(XLSX_ROWS),
            XLSX_ROWS as u64 + 1,
        ),
    ] {
        let (records, bytes, peak) = convert_measured(format, input);
        assert_eq!(records, lines, "{}", format.name());
        assert!(
            bytes > 2 * CONVERTER_PEAK_RSS_BYTES_MAX,
            "the {} fixture is too small to show anything: {bytes} bytes",
            format.name()
        );
        assert!(
            peak < CONVERTER_PEAK_RSS_BYTES_MAX,
            "the {} converter held {} MiB for {} MiB of records",
            format.name(),
            peak >> 20,
            bytes >> 20
        );
    }
}

/// A workbook over [`backflow_formats::xlsx_in::XLSX_BYTES_MAX`] (512 MiB) is refused by its
/// size before anything is unpacked: the fixture is a sparse file, so the test writes nothing.
#[test]
fn a_workbook_over_512_mib_is_refused_before_unpacking() {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(b"PK\x03\x04").unwrap();
    f.set_len(backflow_formats::xlsx_in::XLSX_BYTES_MAX + 1)
        .unwrap();
    f.rewind().unwrap();
    let mut out = Vec::new();
    let e = run_child(Path::new(BACKFLOW), &[], FileFormat::Xlsx, f, &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("536870913 bytes") && e.contains("536870912"),
        "{e}"
    );
    assert!(out.is_empty());
}
