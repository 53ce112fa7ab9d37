//! Excel and Parquet end to end, over the real HTTP API of real nodes: a ministry publishes an
//! `.xlsx` and a `.parquet` at national; a township's own export holds exactly its records
//! (the workbook's as CSV lines, the Parquet file's as NDJSON objects), and its `xlsx` and
//! `parquet` exports read back — with calamine and parquet — to the same records.

mod common;

use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use arrow_array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use backflow_api::client::Client;
use backflow_node::localnet::LocalNet;
use calamine::{Data, Reader, Xlsx};
use common::{code, fast, wait_until};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook};

const TOWNSHIP: &str = "110101001";
const SIBLING: &str = "110101002";

/// The ministry's workbook: townships in column A, a date, a number, Chinese text.
fn workbook() -> Vec<u8> {
    let mut book = Workbook::new();
    let s = book.add_worksheet();
    let date = CellFormat::new().set_num_format("yyyy-mm-dd");
    for (c, h) in ["乡镇代码", "姓名", "金额", "发放日期"].iter().enumerate() {
        s.write_string(0, c as u16, *h).unwrap();
    }
    let rows = [
        (TOWNSHIP, "张三", 1200.5, 1),
        (SIBLING, "李四", 300.0, 2),
        (TOWNSHIP, "王五", 0.25, 3),
    ];
    for (i, (t, name, amount, day)) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        s.write_string(r, 0, *t).unwrap();
        s.write_string(r, 1, *name).unwrap();
        s.write_number(r, 2, *amount).unwrap();
        s.write_datetime_with_format(r, 3, ExcelDateTime::from_ymd(2024, 3, *day).unwrap(), &date)
            .unwrap();
    }
    book.save_to_buffer().unwrap()
}

/// The ministry's Parquet file: townships as integers, a null, a date.
fn parquet_file() -> Vec<u8> {
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "township",
            Arc::new(Int64Array::from(vec![110101001, 110101002, 110101001])),
        ),
        (
            "户主",
            Arc::new(StringArray::from(vec![Some("赵六"), Some("钱七"), None])),
        ),
        ("补贴", Arc::new(Float64Array::from(vec![88.5, 1.0, 2.25]))),
        (
            "日期",
            Arc::new(Date32Array::from(vec![19783, 19784, 19785])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

async fn publish(client: &Client, dataset: &str, field: &str, format: &str, data: Vec<u8>) {
    let len = data.len() as u64;
    let report = client
        .upload(
            &format!("/api/publish?dataset={dataset}&region_field={field}&format={format}"),
            Cursor::new(data),
            len,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report["records"], 3, "{report}");
}

async fn export(client: &Client, dataset: &str, format: Option<&str>) -> Result<Vec<u8>> {
    let mut path = format!("/api/export?dataset={dataset}");
    if let Some(f) = format {
        path.push_str(&format!("&format={f}"));
    }
    let mut out = Vec::new();
    client.download(&path, &mut out).await?;
    Ok(out)
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
                    other => panic!("not a text cell: {other:?}"),
                })
                .collect()
        })
        .collect()
}

fn parquet_rows(bytes: Vec<u8>) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&bytes).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let (mut names, mut rows) = (Vec::new(), Vec::new());
    for b in reader {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_and_parquet_published_at_national_reach_a_township_and_export_as_tables() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let regions = ["0", "11", "1101", "110101", TOWNSHIP, SIBLING].map(code);
    let net = LocalNet::start(&regions, tmp.path(), fast()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let http = net.serve_http().await?;
    let client_of = |r: &str| {
        let h = &http[&code(r)];
        Client::new(h.addr, h.token.clone())
    };
    let national = client_of("0");
    publish(&national, "benefits", "乡镇代码", "xlsx", workbook()).await;
    publish(
        &national,
        "subsidies",
        "township",
        "parquet",
        parquet_file(),
    )
    .await;

    let township = client_of(TOWNSHIP);
    for dataset in ["benefits", "subsidies"] {
        wait_until(dataset, Duration::from_secs(60), async || {
            Ok(export(&township, dataset, None).await.is_ok())
        })
        .await?;
    }
    // Exactly the township's records, as the converted CSV and NDJSON lines.
    assert_eq!(
        String::from_utf8(export(&township, "benefits", None).await?)?,
        "乡镇代码,姓名,金额,发放日期\n\
         110101001,张三,1200.5,2024-03-01\n\
         110101001,王五,0.25,2024-03-03\n"
    );
    assert_eq!(
        String::from_utf8(export(&township, "subsidies", None).await?)?,
        "{\"township\":110101001,\"户主\":\"赵六\",\"补贴\":88.5,\"日期\":\"2024-03-01\"}\n\
         {\"township\":110101001,\"户主\":null,\"补贴\":2.25,\"日期\":\"2024-03-03\"}\n"
    );
    // The same records as tables.
    let s = |v: &str| v.to_string();
    assert_eq!(
        xlsx_rows(export(&township, "benefits", Some("xlsx")).await?),
        [
            ["乡镇代码", "姓名", "金额", "发放日期"].map(s),
            ["110101001", "张三", "1200.5", "2024-03-01"].map(s),
            ["110101001", "王五", "0.25", "2024-03-03"].map(s),
        ]
    );
    let (names, rows) = parquet_rows(export(&township, "benefits", Some("parquet")).await?);
    assert_eq!(names, ["乡镇代码", "姓名", "金额", "发放日期"]);
    let o = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            vec![o("110101001"), o("张三"), o("1200.5"), o("2024-03-01")],
            vec![o("110101001"), o("王五"), o("0.25"), o("2024-03-03")],
        ]
    );
    let (names, rows) = parquet_rows(export(&township, "subsidies", Some("parquet")).await?);
    assert_eq!(names, ["township", "户主", "补贴", "日期"]);
    assert_eq!(
        rows,
        [
            vec![o("110101001"), o("赵六"), o("88.5"), o("2024-03-01")],
            vec![o("110101001"), None, o("2.25"), o("2024-03-03")],
        ]
    );
    assert_eq!(
        xlsx_rows(export(&township, "subsidies", Some("xlsx")).await?),
        [
            ["township", "户主", "补贴", "日期"].map(s),
            ["110101001", "赵六", "88.5", "2024-03-01"].map(s),
            ["110101001", "", "2.25", "2024-03-03"].map(s),
        ]
    );
    // A CSV export of an NDJSON dataset is refused, not invented.
    let e = export(&township, "subsidies", Some("csv"))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("stored as ndjson"), "{e:#}");
    for (_, h) in http {
        h.stop().await?;
    }
    net.shutdown().await?;
    Ok(())
}
