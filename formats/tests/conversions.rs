//! Round trips through the real writers and readers: a workbook written by rust_xlsxwriter
//! and a Parquet file written by the parquet crate, converted on publish; records exported as
//! a workbook or a Parquet file and read back with calamine and parquet.

use std::io::{Cursor, Read, Write};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, TimestampMillisecondArray,
};
use backflow_formats::export::write_table;
use backflow_formats::parquet_in::parquet_to_ndjson;
use backflow_formats::publish_input::records_of;
use backflow_formats::xlsx_in::xlsx_to_csv;
use backflow_ingest::fields::Format;
use backflow_ingest::source::FileFormat;
use calamine::{Data, Reader, Xlsx};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook};

fn workbook(fill: impl FnOnce(&mut rust_xlsxwriter::Worksheet)) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    fill(sheet);
    book.save_to_buffer().unwrap()
}

fn xlsx_csv(bytes: Vec<u8>) -> anyhow::Result<String> {
    let mut out = Vec::new();
    xlsx_to_csv(Cursor::new(bytes), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn xlsx_cells_become_csv_text() {
    let date = CellFormat::new().set_num_format("yyyy-mm-dd");
    let datetime = CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let bytes = workbook(|s| {
        for (c, h) in [
            "村代码",
            "姓名",
            "金额",
            "人数",
            "日期",
            "时间",
            "在册",
            "备注",
        ]
        .iter()
        .enumerate()
        {
            s.write_string(0, c as u16, *h).unwrap();
        }
        // row 2: every type
        s.write_string(1, 0, "110101001001").unwrap();
        s.write_string(1, 1, "张三").unwrap();
        s.write_number(1, 2, 1234.5).unwrap();
        s.write_number(1, 3, 3.0).unwrap();
        s.write_datetime_with_format(1, 4, ExcelDateTime::from_ymd(2024, 3, 1).unwrap(), &date)
            .unwrap();
        s.write_datetime_with_format(
            1,
            5,
            ExcelDateTime::from_ymd(2024, 3, 1)
                .unwrap()
                .and_hms(8, 30, 0)
                .unwrap(),
            &datetime,
        )
        .unwrap();
        s.write_boolean(1, 6, true).unwrap();
        s.write_string(1, 7, "低保, \"特困\"").unwrap();
        // row 3: a number region code, empty cells, a float Excel keeps to 15 digits
        s.write_number(2, 0, 110101001002.0).unwrap();
        s.write_number(2, 2, 0.1 + 0.2).unwrap();
        s.write_boolean(2, 6, false).unwrap();
        // row 4: nothing; row 5: one cell
        s.write_string(4, 1, "李四").unwrap();
    });
    assert_eq!(
        xlsx_csv(bytes).unwrap(),
        "村代码,姓名,金额,人数,日期,时间,在册,备注\n\
         110101001001,张三,1234.5,3,2024-03-01,2024-03-01T08:30:00,true,\"低保, \"\"特困\"\"\"\n\
         110101001002,,0.3,,,,false,\n\
         ,,,,,,,\n\
         ,李四,,,,,,\n"
    );
}

#[test]
fn xlsx_refused_with_clear_errors() {
    // too wide: a header cell in column 601
    let wide = workbook(|s| {
        s.write_string(0, 0, "a").unwrap();
        s.write_string(0, 600, "b").unwrap();
    });
    let e = xlsx_csv(wide).unwrap_err().to_string();
    assert!(e.contains("512 columns"), "{e}");
    // a value right of the header
    let ragged = workbook(|s| {
        s.write_string(0, 0, "a").unwrap();
        s.write_string(1, 3, "secret-value").unwrap();
    });
    let e = xlsx_csv(ragged).unwrap_err().to_string();
    assert!(e.contains("D2") && !e.contains("secret"), "{e}");
    // a line break in a cell
    let multiline = workbook(|s| {
        s.write_string(0, 0, "a").unwrap();
        s.write_string(1, 0, "secret\nline").unwrap();
    });
    let e = xlsx_csv(multiline).unwrap_err().to_string();
    assert!(
        e.contains("A2") && e.contains("line break") && !e.contains("secret"),
        "{e}"
    );
    // not a workbook at all, and an empty one
    let e = xlsx_csv(b"PK\x03\x04 secret bytes".to_vec())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a readable .xlsx") && !e.contains("secret"),
        "{e}"
    );
    let e = xlsx_csv(workbook(|_| {})).unwrap_err().to_string();
    assert!(e.contains("no header row"), "{e}");
}

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    out
}

fn parquet_json(bytes: &[u8]) -> anyhow::Result<String> {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    let mut out = Vec::new();
    parquet_to_ndjson(f, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn parquet_rows_become_ndjson() {
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "village",
            Arc::new(StringArray::from(vec![Some("110101001001"), None])),
        ),
        (
            "名称",
            Arc::new(StringArray::from(vec!["东华门街道", "a\"b"])),
        ),
        ("n", Arc::new(Int64Array::from(vec![Some(-7), None]))),
        ("x", Arc::new(Float64Array::from(vec![1.5, f64::NAN]))),
        ("ok", Arc::new(BooleanArray::from(vec![true, false]))),
        ("d", Arc::new(Date32Array::from(vec![19783, 0]))),
        (
            "t",
            Arc::new(TimestampMillisecondArray::from(vec![1_709_281_800_000, 0])),
        ),
        (
            "tz",
            Arc::new(
                TimestampMillisecondArray::from(vec![1_709_281_800_000, 0]).with_timezone("+08:00"),
            ),
        ),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(vec![1230, -5])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    assert_eq!(
        parquet_json(&parquet_bytes(&batch)).unwrap(),
        "{\"village\":\"110101001001\",\"名称\":\"东华门街道\",\"n\":-7,\"x\":1.5,\"ok\":true,\
         \"d\":\"2024-03-01\",\"t\":\"2024-03-01T08:30:00\",\"tz\":\"2024-03-01T08:30:00Z\",\
         \"amount\":\"12.30\"}\n\
         {\"village\":null,\"名称\":\"a\\\"b\",\"n\":null,\"x\":\"NaN\",\"ok\":false,\
         \"d\":\"1970-01-01\",\"t\":\"1970-01-01T00:00:00\",\"tz\":\"1970-01-01T00:00:00Z\",\
         \"amount\":\"-0.05\"}\n"
    );
}

#[test]
fn parquet_refused_with_clear_errors() {
    let binary = RecordBatch::try_from_iter(vec![
        (
            "village",
            Arc::new(StringArray::from(vec!["1"])) as ArrayRef,
        ),
        ("photo", Arc::new(BinaryArray::from(vec![&b"secret"[..]]))),
    ])
    .unwrap();
    let e = parquet_json(&parquet_bytes(&binary))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"photo\"") && e.contains("binary"), "{e}");
    let mut list = ListBuilder::new(StringBuilder::new());
    list.values().append_value("x");
    list.append(true);
    let nested =
        RecordBatch::try_from_iter(vec![("members", Arc::new(list.finish()) as ArrayRef)]).unwrap();
    let e = parquet_json(&parquet_bytes(&nested))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"members\"") && e.contains("nested"), "{e}");
    let wide: Vec<(String, ArrayRef)> = (0..513)
        .map(|i| {
            (
                format!("c{i}"),
                Arc::new(Int64Array::from(vec![1])) as ArrayRef,
            )
        })
        .collect();
    let wide = RecordBatch::try_from_iter(wide).unwrap();
    let e = parquet_json(&parquet_bytes(&wide)).unwrap_err().to_string();
    assert!(e.contains("513 columns"), "{e}");
    let e = parquet_json(b"PAR1 secret PAR1").unwrap_err().to_string();
    assert!(
        e.contains("not a readable Parquet") && !e.contains("secret"),
        "{e}"
    );
}

#[test]
fn publish_input_converts_through_the_pipe_and_reports_errors_at_its_end() {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = workbook(|s| {
        s.write_string(0, 0, "village").unwrap();
        s.write_string(1, 0, "110101001001").unwrap();
    });
    let (format, mut r) = records_of(
        FileFormat::Xlsx,
        Box::new(Cursor::new(bytes)),
        scratch.path(),
    )
    .unwrap();
    assert_eq!(format, Format::Csv);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "village\n110101001001\n");
    let (_, mut r) = records_of(
        FileFormat::Parquet,
        Box::new(Cursor::new(b"not parquet".to_vec())),
        scratch.path(),
    )
    .unwrap();
    let e = r.read_to_end(&mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("not a readable Parquet"), "{e}");
    // CSV passes through untouched.
    let (format, mut r) = records_of(
        FileFormat::Csv,
        Box::new(Cursor::new(b"a\r\n1\r\n".to_vec())),
        scratch.path(),
    )
    .unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!((format, &got[..]), (Format::Csv, &b"a\r\n1\r\n"[..]));
}

fn export(table: FileFormat, stored: Format, records: &str) -> Vec<u8> {
    let scratch = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    write_table(
        table,
        stored,
        scratch.path(),
        &mut |w| {
            // in pieces, so lines span writes
            for piece in records.as_bytes().chunks(7) {
                w.write_all(piece)?;
            }
            Ok(())
        },
        &mut out,
    )
    .unwrap();
    out
}

fn xlsx_rows(bytes: Vec<u8>) -> Vec<Vec<String>> {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    other => panic!("not text: {other:?}"),
                })
                .collect()
        })
        .collect()
}

fn parquet_rows(bytes: Vec<u8>) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&bytes).unwrap();
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for b in r {
        let b = b.unwrap();
        names = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                        (!s.is_null(i)).then(|| s.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    (names, rows)
}

use arrow_array::Array;

const CSV: &str = "village,姓名,金额\n110101001001,张三,007\n110101001002,\"李, \"\"四\"\"\",\n";

#[test]
fn csv_records_export_as_xlsx_and_parquet() {
    let rows = xlsx_rows(export(FileFormat::Xlsx, Format::Csv, CSV));
    assert_eq!(
        rows,
        [
            ["village", "姓名", "金额"],
            ["110101001001", "张三", "007"],
            ["110101001002", "李, \"四\"", ""],
        ]
    );
    let (names, rows) = parquet_rows(export(FileFormat::Parquet, Format::Csv, CSV));
    assert_eq!(names, ["village", "姓名", "金额"]);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            vec![s("110101001001"), s("张三"), s("007")],
            vec![s("110101001002"), s("李, \"四\""), s("")],
        ]
    );
}

#[test]
fn ndjson_records_export_with_the_union_of_keys() {
    let ndjson = "{\"v\":\"110101001001\",\"n\":1.50}\n{\"v\":\"110101001002\",\"名\":\"王五\",\"n\":null}\n";
    let (names, rows) = parquet_rows(export(FileFormat::Parquet, Format::Ndjson, ndjson));
    assert_eq!(names, ["v", "n", "名"]);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            vec![s("110101001001"), s("1.5"), None],
            vec![s("110101001002"), None, s("王五")],
        ]
    );
    let rows = xlsx_rows(export(FileFormat::Xlsx, Format::Ndjson, ndjson));
    assert_eq!(
        rows,
        [
            ["v", "n", "名"],
            ["110101001001", "1.5", ""],
            ["110101001002", "", "王五"],
        ]
    );
}

/// A Parquet file with its footer (the thrift metadata) damaged byte by byte: every one is
/// refused or read, never a panic — the parquet crate panics on some (found by
/// `formats/fuzz`), and `parquet_to_ndjson` turns those into a refusal.
#[test]
fn parquet_with_a_damaged_footer_is_refused_not_a_panic() {
    let file = export(
        FileFormat::Parquet,
        Format::Csv,
        "village,name\n110101001001,甲\n440100001001,乙\n",
    );
    let footer = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap());
    let start = file.len() - 8 - footer as usize;
    let (mut refused, mut contained) = (0, 0);
    for at in start..file.len() - 8 {
        for value in [0x00, 0xff, 0x7f, file[at] ^ 0x80] {
            let mut bad = file.clone();
            bad[at] = value;
            let answer = std::panic::catch_unwind(|| parquet_json(&bad))
                .unwrap_or_else(|_| panic!("a panic escaped for byte {at} = {value:#x}"));
            if let Err(e) = answer {
                refused += 1;
                let e = format!("{e:#}");
                contained += usize::from(e.contains("its decoder failed on it"));
                assert!(
                    !e.contains("甲") && !e.contains("乙"),
                    "echoes content: {e}"
                );
            }
        }
    }
    println!(
        "{} damaged footers: {refused} refused, {contained} of them by a contained panic",
        4 * (file.len() - 8 - start)
    );
    assert!(refused > 0);
}

/// A workbook whose shared strings unpack past [`XLSX_PART_BYTES_MAX`] (256 MiB) — calamine
/// reads that part whole before the first cell — is refused by the part's size before it is
/// read. The fixture stores the part uncompressed (257 MiB of spaces, in a temporary file).
#[test]
fn a_workbook_part_unpacking_past_256_mib_is_refused_before_it_is_read() {
    use backflow_formats::xlsx_in::XLSX_PART_BYTES_MAX;
    use std::io::Seek;
    let mut file = tempfile::tempfile().unwrap();
    {
        let mut zip = zip::ZipWriter::new(&mut file);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("xl/sharedStrings.xml", stored).unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..(XLSX_PART_BYTES_MAX >> 20) + 1 {
            zip.write_all(&spaces).unwrap();
        }
        zip.finish().unwrap();
    }
    file.rewind().unwrap();
    let mut out = Vec::new();
    let e = xlsx_to_csv(file, &mut out).unwrap_err().to_string();
    assert!(
        e.contains("shared strings") && e.contains(&format!("over {XLSX_PART_BYTES_MAX}")),
        "{e}"
    );
    assert!(out.is_empty());
}
