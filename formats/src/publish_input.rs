//! A publish's input in any [`FileFormat`] as the record stream the partitioner reads. CSV
//! and NDJSON pass through untouched (stored byte for byte, as always). An Excel workbook or
//! a Parquet file needs random access (zip's directory and Parquet's footer are at the end),
//! so the input — a request body, say — is first copied to a scratch file, bounded by the
//! format's size limit; then a thread converts it into a pipe that the partitioner reads,
//! so neither side holds more than a batch of rows — in a child process under a memory limit
//! where this process is the node's binary ([`crate::child`]). A conversion error reaches the reader at
//! the end of the pipe: records already read are then part of a publish that fails.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use backflow_ingest::fields::Format;
use backflow_ingest::source::FileFormat;

use crate::parquet_in::{parquet_to_ndjson, PARQUET_BYTES_MAX};
use crate::xlsx_in::{xlsx_to_csv, XLSX_BYTES_MAX};

/// Converted records may take at most this many bytes: the API's limit on a publish's body,
/// so a small file that unpacks enormously (a Parquet column of a billion nulls, a sheet of
/// empty rows) cannot publish more than a CSV could.
pub const CONVERTED_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// `input` in `format` as records in the returned [`Format`]. A converting format copies
/// `input` into an unnamed file of `scratch` first (created if missing, removed on drop).
pub fn records_of(
    format: FileFormat,
    input: Box<dyn Read + Send>,
    scratch: &Path,
) -> Result<(Format, Box<dyn Read + Send>)> {
    if !format.is_converted() {
        return Ok((format.records(), input));
    }
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let spool = tempfile::tempfile_in(scratch)
        .with_context(|| format!("creating a scratch file in {}", scratch.display()))?;
    let (reader, writer) = std::io::pipe()?;
    let thread = std::thread::Builder::new()
        .name(format!("convert-{}", format.name()))
        .spawn(move || convert(format, input, spool, writer))?;
    Ok((
        format.records(),
        Box::new(Converted {
            pipe: reader,
            thread: Some(thread),
        }),
    ))
}

fn convert(
    format: FileFormat,
    mut input: Box<dyn Read + Send>,
    mut spool: File,
    pipe: std::io::PipeWriter,
) -> Result<()> {
    let max = match format {
        FileFormat::Xlsx => XLSX_BYTES_MAX,
        _ => PARQUET_BYTES_MAX,
    };
    let copied = std::io::copy(&mut (&mut input).take(max + 1), &mut spool)?;
    if copied > max {
        bail!(
            "the {} file is over {max} bytes, the most it may have",
            format.name()
        );
    }
    spool.seek(SeekFrom::Start(0))?;
    let mut out = Capped {
        inner: BufWriter::with_capacity(256 * 1024, pipe),
        left: CONVERTED_BYTES_MAX,
    };
    // In a child process where this is the node's binary ([`crate::child`]): a file that
    // makes a decoder allocate without bound ends one publish, not the node.
    match (crate::child::program(), format) {
        (Some(program), _) => crate::child::run_child(program, &[], format, spool, &mut out)?,
        (None, FileFormat::Xlsx) => xlsx_to_csv(spool, &mut out).map(|_| ())?,
        (None, _) => parquet_to_ndjson(spool, &mut out).map(|_| ())?,
    }
    out.flush()?;
    Ok(())
}

/// The partitioner's end of the pipe; at its end, the converter's verdict.
struct Converted {
    pipe: std::io::PipeReader,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Read for Converted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(t) = self.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(std::io::Error::other(format!("{e:#}"))),
                    Err(_) => return Err(std::io::Error::other("the conversion failed")),
                }
            }
        }
        Ok(n)
    }
}

/// A writer that refuses to take more than `left` bytes.
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "the converted records exceed {CONVERTED_BYTES_MAX} bytes"
            )));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
