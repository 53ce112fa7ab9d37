//! Backflow protocol core: wire types and sans-IO, deterministic state machines.
//!
//! Like quinn-proto under quinn, this crate does no IO, reads no clock and draws no
//! randomness: time (`now`) and every message come in as inputs, and everything the node must
//! do — send, store, report — comes out as outputs the shell drains. The real node (tokio,
//! libp2p, RocksDB) and simnet (a discrete-event simulator of all 44,704 nodes) drive exactly
//! this code.
//!
//! - [`limits`]: every named hard limit, [`limits::Bounded`]; the bottom, importing nothing.
//! - [`codec`]: the one bincode configuration, value encoding and decoding, [`codec::digest`].
//! - [`time`]: [`UnixMs`], the input time.
//! - [`calendar`]: statutory working days (工作日) on the official holiday calendar, deadlines
//!   at 24:00 Beijing time.
//! - [`wire`]: frames (version tag + [`wire::Message`]), the top that gathers every message.
//! - [`cert`]: jurisdiction certificates, chain verification, key rotation, [`TrustStore`].
//! - [`department`]: a node's departments (政府部门), each with its own key certified by the
//!   jurisdiction key.
//! - [`catalog`]: Art. 13 catalog entries, validation (all problems at once), signed versions.
//! - [`manifest`]: signed return-flow manifests, their partitions and succession.
//! - [`region_tree`]: the region Merkle tree a manifest signs: proofs, partition checks.
//! - [`chunk`]: 16 KiB chunk groups, chunk frames and their bao-tree encoding.
//! - [`attestation`]: a region's own signed delivery attestation (签收), what completeness
//!   counts.
//! - [`receipt`]: signed subtree delivery receipts (claims) that carry attestations upward.
//! - [`outbox`]: per-peer bounds on control frames in flight, the same in the node and simnet.
//! - [`catalog_review`]: the authority's review of departments' catalog entries and the
//!   update obligation after a change of law or duties (Arts. 16–17).
//! - [`catalog_sync`]: [`CatalogSync`], child → parent catalog sync.
//! - [`return_flow`]: [`ReturnFlow`], parent → child dataset delivery with receipts up.
//! - [`share`]: share requests between departments (Arts. 15, 20–22): the request and its
//!   lifecycle with statutory deadlines ([`share::ShareCase`]).
//! - [`revocation_gossip`]: revocations spread to every node in line with the revoked region.
//! - [`tuning`]: [`tuning::Tuning`], the one set of defaults both shells start from.
//! - [`endpoint`]: [`Endpoint`], which owns the trust store, the machines and peer admission:
//!   the one thing a shell drives.
//!
//! # Identity at the boundary
//! State machines name peers by [`RegionCode`]. The [`Endpoint`] admits each connection (the
//! peer's [`wire::Hello`] chain verified by [`TrustStore::verify_chain`], its key matched
//! against the key the transport authenticated, its region in line with this node's) and
//! hands the machines the verified region as `from`.

pub mod attestation;
pub mod calendar;
pub mod catalog;
pub mod catalog_review;
pub mod catalog_search;
pub mod catalog_sync;
pub mod cert;
pub mod chunk;
pub mod codec;
pub mod department;
pub mod endpoint;
mod group_set;
pub mod ledger;
pub mod limits;
pub mod manifest;
pub mod outbox;
pub mod receipt;
pub mod region_tree;
pub mod return_flow;
pub mod revocation_gossip;
pub mod service_interface;
pub mod share;
pub mod time;
pub mod tuning;
pub mod wire;

pub use backflow_topology::{Level, RegionCode};
pub use catalog_sync::CatalogSync;
pub use cert::TrustStore;
pub use endpoint::Endpoint;
pub use return_flow::ReturnFlow;
pub use time::UnixMs;
