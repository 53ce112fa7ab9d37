//! Subcommands of the `backflow` binary, one module each; `common` holds what several share.

/// `println!` that returns the write error instead of panicking: `backflow … | head` closes
/// the pipe early, and a command must then stop quietly, as Unix tools do (`main` treats a
/// closed standard output as the end of the output, not as an error: see [`OutputClosed`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(crate::cli::output_error)
    }};
}

/// The reader of this process's standard output went away. Only a write to standard output
/// is tagged so: a broken pipe anywhere else (the node's socket dying under a publish's
/// upload) is a failure, and must never end a command quietly as if it had succeeded.
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Tags a standard-output write error as [`OutputClosed`] when the pipe is broken.
pub fn output_error(error: std::io::Error) -> std::io::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, OutputClosed)
    } else {
        error
    }
}

/// Standard output for commands that write through a `Write`, its errors tagged as by
/// [`output_error`].
pub struct Output<W>(pub W);

impl<W: std::io::Write> std::io::Write for Output<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes).map_err(output_error)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(output_error)
    }
}

/// Whether `error` is standard output having closed (and nothing else).
pub fn is_output_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref())
            .is_some_and(|inner| inner.is::<OutputClosed>())
    })
}

pub mod calendar;
pub mod catalog;
pub mod cert;
pub mod common;
pub mod convert_records;
pub mod demo;
pub mod dept;
pub mod export;
pub mod init;
pub mod ledger;
pub mod publish;
pub mod returned;
pub mod rights;
pub mod root;
pub mod run;
pub mod share;
pub mod status;
pub mod topology;

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken pipe that is not standard output (a socket under an upload) is an error.
    #[test]
    fn only_a_closed_standard_output_is_quiet() {
        let socket = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let failed = anyhow::Error::new(socket).context("uploading to the node");
        assert!(!is_output_closed(&failed));
        let stdout = output_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let closed = anyhow::Error::new(stdout).context("listing");
        assert!(is_output_closed(&closed));
        let other = output_error(std::io::Error::from(std::io::ErrorKind::Other));
        assert!(!is_output_closed(&anyhow::Error::new(other)));
    }
}
