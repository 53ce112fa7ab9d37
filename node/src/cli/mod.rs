//! Subcommands of the `backflow` binary, one module each; `common` holds what several share.

/// `println!` that returns the write error instead of panicking: `backflow … | head` closes
/// the pipe early, and a command must then stop quietly, as Unix tools do (`main` treats a
/// broken pipe as the end of the output, not as an error).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

pub mod calendar;
pub mod catalog;
pub mod cert;
pub mod common;
pub mod demo;
pub mod dept;
pub mod export;
pub mod init;
pub mod publish;
pub mod root;
pub mod run;
pub mod share;
pub mod status;
pub mod topology;
