//! Excel (`.xlsx`) and Parquet at the edge of a node. On publish they are converted into the
//! record formats the node stores — a worksheet into CSV ([`xlsx_in`]), a Parquet file's rows
//! into NDJSON ([`parquet_in`]) — before the partitioner reads a byte ([`publish_input`]);
//! CSV and NDJSON pass through untouched, so their export stays byte for byte. On export the
//! stored records are written as a workbook ([`xlsx_out`]) or a Parquet file
//! ([`parquet_out`]) of text columns ([`export`], [`records`]).
//!
//! In the node's binary each conversion runs in a child process under a memory limit
//! ([`child`]): a decoder that allocates without bound on a crafted file ends that child.
//!
//! A crate of its own so the parsers (calamine, parquet + arrow) stay out of `backflow-ingest`,
//! which is fuzzed and built on its own, and out of the protocol. Streaming with bounded
//! memory; every limit is a named constant; errors never carry bytes of the input.

pub mod child;
pub mod export;
pub mod parquet_in;
pub mod parquet_out;
pub mod publish_input;
pub mod records;
pub mod xlsx_in;
pub mod xlsx_out;
