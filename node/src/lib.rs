//! The Backflow node: the IO shell around `backflow-protocol`'s sans-IO state machines —
//! libp2p transport, RocksDB storage, the `backflow` CLI, the local HTTP API and the demo.

pub mod aligned_buf;
pub mod api_backend;
pub mod calendar_files;
pub mod catalog_search;
pub mod catalog_store;
pub mod chunks;
pub mod clock;
pub mod config;
mod content_repair;
pub mod damage;
pub mod dataplane;
pub mod delivery;
mod delivery_routes;
pub mod demo;
pub mod departments;
mod direct_io;
pub mod disk;
pub mod export;
pub mod faults;
pub mod handle;
pub mod ip_limits;
pub mod ledger;
mod ledger_acts;
pub mod ledger_api;
pub mod ledger_archive;
mod ledger_cmds;
mod ledger_inspection;
pub mod ledger_prune;
pub mod ledger_seal;
pub mod ledger_verify;
pub mod localnet;
pub mod metrics;
pub mod net;
pub mod node;
pub mod persist;
pub mod publish;
pub mod relay;
mod relay_events;
pub mod returned_api;
mod returned_cmds;
pub mod review_api;
pub mod rights_api;
pub mod runtime;
pub mod scrub;
pub mod search_requests;
pub mod service_calls;
pub mod service_store;
pub mod share_api;
pub mod status;
pub mod store;
pub mod text_width;
pub mod tls;

// The record parser and partitioner live in `backflow-ingest` (no RocksDB, fuzzed there);
// re-exported under their old paths.
pub use backflow_ingest::{line_report, partition, township_index};
