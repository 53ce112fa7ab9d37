//! Backflow simnet: a deterministic, single-threaded discrete-event simulation of the whole
//! Backflow network (44,704 nodes for China), driving the protocol crate's own `Endpoint`.
//! Files from the top down (each imports only files below it; see README.md, Architecture):
//!
//! - [`catalog_scale`]: the unified catalog at national scale (`simnet catalog`, issue 17):
//!   every node's departments publish, national must hold every entry.
//! - [`whatif`], [`report`]: variants side by side; JSON and self-contained HTML/SVG reports.
//! - [`scenario`]: the driver — builds the nodes, runs the engine, checks the invariants.
//! - [`sharing`]: the national sharing scenario's driver (`simnet share`, Arts. 20–22): its
//!   network, run, report and invariants.
//! - [`protonode`]: the adapter, a thin shell over `backflow_protocol::Endpoint` per node.
//! - [`share_actor`]: one node's part in the sharing scenario: scripted departments and
//!   measures.
//! - [`share_plan`]: the sharing scenario's plan: departments, requests, scripts, faults.
//! - [`catalog_plan`]: that scenario's plan: departments and Art. 13 entries per node.
//! - [`catalog_store`]: a node's catalog storage: the log, every department's record and
//!   entries (what the node keeps in RocksDB).
//! - [`refmodel`]: a compact reference model of the same message pattern, for cross-checks.
//! - [`world`]: keys, certificate chains, manifests and endpoint setup shared by all nodes.
//! - [`protomsg`]: what protocol nodes send each other, and its wire-size model.
//! - [`run_config`]: everything that determines a run (topology spec, tuning, routing, …).
//! - [`engine`]: event queue, links, faults, the node's shell; generic over [`engine::SimNode`].
//! - [`net`]: link model per tier pair, and faults.
//! - [`shell`]: the node's shell as simnet models it: control outbox, stream limit, CPU costs.
//! - [`inspect`]: what a node shows the invariants at the end.
//! - [`dataset`]: payloads by size and hash, spread over townships by real village counts.
//! - [`ranges`]: sets of chunk-group ranges a node holds.
//! - [`error`], [`time`]: typed errors; simulated time units.

pub mod catalog_plan;
pub mod catalog_scale;
pub mod catalog_store;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod inspect;
pub mod net;
pub mod protomsg;
pub mod protonode;
pub mod ranges;
pub mod refmodel;
pub mod report;
pub mod run_config;
pub mod scenario;
pub mod share_actor;
pub mod share_plan;
pub mod sharing;
pub mod shell;
pub mod time;
pub mod whatif;
pub mod world;
