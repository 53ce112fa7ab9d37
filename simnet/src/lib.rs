//! Backflow simnet: a deterministic, single-threaded discrete-event simulation of the whole
//! Backflow network (44,704 nodes for China), driving the protocol crate's state machines.
//!
//! - [`engine`]: event queue, links, faults; generic over [`engine::SimNode`].
//! - [`protonode`]: the adapter that runs `backflow_protocol`'s state machines as sim nodes.
//! - [`refmodel`]: a compact reference model of the same message pattern, for cross-checks.
//! - [`dataset`]: payloads by size and hash, spread over townships by real village counts.
//! - [`scenario`]: run configuration, topology specs, invariants.
//! - [`shell`]: the node's shell as simnet models it: control outbox, stream limit, CPU costs.
//! - [`report`]: JSON and self-contained HTML/SVG reports.

pub mod dataset;
pub mod engine;
pub mod net;
pub mod protonode;
pub mod refmodel;
pub mod report;
pub mod scenario;
pub mod shell;
pub mod whatif;
