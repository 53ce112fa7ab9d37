//! Subcommands of the `backflow` binary, one module each; `common` holds what several share.

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
