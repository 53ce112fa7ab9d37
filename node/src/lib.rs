//! The Backflow node: the IO shell around `backflow-protocol`'s sans-IO state machines —
//! libp2p transport, RocksDB storage, the `backflow` CLI, the local HTTP API and the demo.

pub mod chunks;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod demo;
pub mod export;
pub mod handle;
pub mod http;
pub mod line_report;
pub mod localnet;
pub mod net;
pub mod node;
pub mod partition;
pub mod persist;
pub mod publish;
pub mod runtime;
pub mod status;
pub mod store;
pub mod tls;
pub mod township_index;
