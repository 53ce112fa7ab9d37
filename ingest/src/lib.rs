//! Record ingestion for `backflow publish`: parsing a CSV or NDJSON file and partitioning its
//! records by township in one streaming pass, with bounded memory (spill files), reporting
//! every line it could not route. Pure parsing and partitioning: no RocksDB, no network, so
//! it builds in seconds and can be fuzzed on its own (`fuzz/`).
//!
//! Errors and the summary never carry bytes of the input (a file published by mistake, say a
//! key file, must not be echoed back through the API): only line numbers, counts, lengths,
//! the field name asked for and what is wrong. The rejects file, written for the operator
//! only, shows a truncated value per rejected line.

pub mod fields;
pub mod line_report;
pub mod partition;
mod scan;
pub mod source;
pub mod township_index;
