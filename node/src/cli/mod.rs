//! Subcommands of the `backflow` binary, one module each.

pub mod topology;
