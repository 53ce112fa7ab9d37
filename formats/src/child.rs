//! Converting in a child process. The parquet crate sizes some buffers from counts in a
//! file's footer, and a failed allocation aborts a Rust process (there is no panic to catch),
//! so a crafted file could take the whole node down with it. Where the process is the node's
//! own binary, each Excel or Parquet conversion therefore runs in a child of it
//! (`backflow convert-records <format>`: the spooled file on its stdin, the records on its
//! stdout) under an address-space limit; a child that dies — out of memory, a signal, a bug —
//! ends that one publish with a clear error, never the node. In-process embedders (tests,
//! the demo's library use) convert on a thread as before.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use backflow_ingest::source::FileFormat;

use crate::parquet_in::parquet_to_ndjson;
use crate::xlsx_in::xlsx_to_csv;

/// The subcommand of the node's binary that converts (hidden from its help).
pub const CONVERT_SUBCOMMAND: &str = "convert-records";
/// The child's address space: a row group of up to 1 GiB unpacked (`PARQUET_ROW_GROUP_BYTES_MAX`)
/// decoded a batch at a time, or a workbook's shared strings of up to 256 MiB, fit well
/// within it together with the binary's own mappings; a footer that asks for more is refused.
pub const CONVERTER_ADDRESS_SPACE_BYTES_MAX: u64 = 8 << 30;
/// Of the child's error output, this much is kept (its last `error:` line is the message).
const STDERR_KEPT_BYTES_MAX: u64 = 16 * 1024;

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// From now on, this process converts in children running `program` (the node's binary,
/// which answers [`CONVERT_SUBCOMMAND`]). Set once by the binary's `main`; a property of the
/// executable, so a process-wide one.
pub fn convert_in_children(program: PathBuf) {
    let _ = PROGRAM.set(program);
}

pub(crate) fn program() -> Option<&'static Path> {
    PROGRAM.get().map(PathBuf::as_path)
}

/// The child's side: the file on stdin (a regular file: the parent's spool) converted into
/// records on stdout. The caller has limited the address space first.
pub fn convert_stdio(format: FileFormat) -> Result<()> {
    let file = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    match format {
        FileFormat::Xlsx => xlsx_to_csv(file, &mut out).map(|_| ())?,
        FileFormat::Parquet => parquet_to_ndjson(file, &mut out).map(|_| ())?,
        other => bail!("{} is stored as given, not converted", other.name()),
    }
    out.flush()?;
    Ok(())
}

/// The parent's side: `program` converts `spool` in a child (`args` after the format: tests
/// lower its memory limit); its records are copied to `out`.
pub fn run_child(
    program: &Path,
    args: &[&str],
    format: FileFormat,
    spool: File,
    out: &mut dyn Write,
) -> Result<()> {
    let mut child = Command::new(program)
        .arg(CONVERT_SUBCOMMAND)
        .arg(format.name())
        .args(args)
        .stdin(Stdio::from(spool))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the converter process")?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("the converter process has no output");
    };
    let errors = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_KEPT_BYTES_MAX)
            .read_to_end(&mut kept);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        kept
    });
    let copied = std::io::copy(&mut stdout, out);
    if copied.is_err() {
        // Our side refused (the converted records' limit, a closed pipe): stop the child.
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for the converter process")?;
    let kept = errors.join().unwrap_or_default();
    copied?;
    if status.success() {
        return Ok(());
    }
    // Our converters' messages name rows, columns and limits, never contents.
    let said = String::from_utf8_lossy(&kept);
    match (
        status.code(),
        said.lines().rev().find_map(|l| l.strip_prefix("error: ")),
    ) {
        (Some(_), Some(message)) => bail!("{message}"),
        (Some(code), None) => bail!("the conversion failed (the converter exited with {code})"),
        (None, _) => bail!(
            "the conversion was stopped (signal {}): the file needs more memory than the \
             converter's {CONVERTER_ADDRESS_SPACE_BYTES_MAX} bytes, or is crafted to",
            status.signal().unwrap_or(0)
        ),
    }
}
