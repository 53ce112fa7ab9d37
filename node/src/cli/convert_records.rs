//! `backflow convert-records <format>` (hidden): the node's own child process for one Excel or
//! Parquet conversion (`backflow_formats::child`): the spooled file on stdin, records on
//! stdout, under an address-space limit so that a file that makes a decoder allocate without
//! bound ends this process, not the node.

use anyhow::{Context, Result};
use backflow_formats::child::{convert_stdio, CONVERTER_ADDRESS_SPACE_BYTES_MAX};
use backflow_ingest::source::FileFormat;
use clap::Args;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// xlsx or parquet.
    format: String,
    /// The address-space limit in bytes (tests lower it).
    #[arg(long, default_value_t = CONVERTER_ADDRESS_SPACE_BYTES_MAX)]
    address_space_bytes_max: u64,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let format = FileFormat::parse(&args.format)?;
    let limit = rustix::process::Rlimit {
        current: Some(args.address_space_bytes_max),
        maximum: Some(args.address_space_bytes_max),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, limit)
        .context("limiting the converter's memory")?;
    convert_stdio(format)
}
