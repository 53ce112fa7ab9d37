//! What a node implementation shows the scenario at the end of a run: its holdings and its
//! catalog, for the invariants. Below the node implementations (`protonode`, `refmodel`) and
//! the scenario that checks them, so neither has to import the other.

use backflow_topology::RegionCode;

/// What a node holds at the end, for the invariants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Every partition of the node's region stored and verified.
    pub complete: bool,
    pub bytes: u64,
    pub records: u64,
    /// For a township: the content hash of the partition it holds.
    pub hash: Option<[u8; 32]>,
}

/// Node implementations expose their final holdings and catalog for checking.
pub trait Inspect {
    fn held(&self) -> Held;
    /// Catalog version this node's aggregated catalog holds for `origin` (0 if none).
    fn catalog_version(&self, origin: RegionCode) -> u64;
}
