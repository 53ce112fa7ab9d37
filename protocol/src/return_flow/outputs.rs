//! What the return-flow machine asks of its shell: [`Output`]s to carry out, the storage
//! effects ([`StorageOp`]) and the [`TransferRecord`] they persist, and the [`Event`]s it
//! reports. The machine itself is [`super::ReturnFlow`].

use std::ops::Range;
use std::sync::Arc;

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::ReturnFlow;
use super::ReturnFlowMsg;
use crate::attestation::{AttestationError, SignedAttestation};
use crate::manifest::{DatasetId, Hash, ManifestError, PartitionEntry, SignedManifest};
use crate::receipt::{Receipt, ReceiptError};
use crate::region_tree::RegionProof;

/// What the shell persists to resume a transfer after a restart (chunk data is stored
/// separately, by the shell, as it is verified).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub manifest: Arc<SignedManifest>,
    /// Partitions this node receives (its subtree, or the whole scope at the publisher).
    pub entries: Vec<PartitionEntry>,
    /// This node's proof up to the scope (empty at the publisher).
    pub proof: RegionProof,
    /// Whether this node is the publisher (it then holds everything from the start).
    pub published: bool,
}

/// Storage effects. The shell applies them in order, durably, before acting on later outputs
/// that depend on them (e.g. acknowledging).
///
/// Ordering rule: a `DropTransfer` never precedes the `PutTransfer` of the record that
/// supersedes it. Chunk data is content-addressed (a partition's content hash), so content a
/// new version shares with the old one — every partition it left unchanged — is still in use
/// when the old record is dropped, and a shell that deletes "what no persisted record uses"
/// keeps it. (A crash between the two leaves both records persisted; [`ReturnFlow::restore`]
/// of the older one then asks for its `DropTransfer` again.)
#[derive(Clone, Debug, PartialEq)]
pub enum StorageOp {
    /// Persist (or overwrite) a transfer record. For a received record (not `published`), the
    /// shell then reports what of its entries' content it already stores
    /// ([`ReturnFlow::handle_content_present`]); until it does (or the next tick), the
    /// transfer requests nothing.
    PutTransfer(Arc<TransferRecord>),
    /// Forget a transfer (superseded by a newer version) and delete its chunk data that no
    /// persisted record still uses: content shared with the record that superseded it stays.
    DropTransfer { manifest: Hash },
    /// Persist (or overwrite) the latest verified receipt of a descendant `region` for
    /// `manifest`, so the publisher's per-region view survives a restart; hand it back with
    /// [`ReturnFlow::restore_receipt`]. Dropped with the transfer.
    PutReceipt { manifest: Hash, receipt: Receipt },
    /// Persist a verified delivery attestation (a descendant's, or this node's own) for
    /// `manifest`: it is what completeness counts, and the evidence of delivery; hand it back
    /// with [`ReturnFlow::restore_attestation`]. Written once per region; dropped with the
    /// transfer.
    PutAttestation {
        manifest: Hash,
        attestation: Arc<SignedAttestation>,
    },
}

/// Observable progress, for logs, metrics, the HTTP API and simnet statistics.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    ManifestAccepted {
        manifest: Hash,
        dataset: DatasetId,
        version: u64,
        from: RegionCode,
    },
    ManifestRejected {
        from: RegionCode,
        error: ManifestError,
    },
    PartitionComplete {
        manifest: Hash,
        region: RegionCode,
    },
    /// Every partition of this node's subtree is stored and verified.
    TransferComplete {
        manifest: Hash,
    },
    /// Skip-level fallback (or return to the parent).
    SourceChanged {
        manifest: Hash,
        from: RegionCode,
        to: RegionCode,
    },
    ChunkRejected {
        manifest: Hash,
        region: RegionCode,
        group: u64,
        from: RegionCode,
    },
    /// Stored content of a partition was found damaged (it did not verify when served or
    /// exported) and is no longer counted as stored. `refetch`: it is fetched again from the
    /// transfer's source; false at the publisher, which has no source — its operator must
    /// publish the dataset again.
    ContentDamaged {
        manifest: Hash,
        region: RegionCode,
        groups: Range<u64>,
        refetch: bool,
    },
    /// A want for a partition outside the requester's region, or from a non-descendant.
    WantRefused {
        from: RegionCode,
        manifest: Hash,
        region: RegionCode,
    },
    ReceiptRejected {
        from: RegionCode,
        error: ReceiptError,
    },
    /// An attestation carried by `from` did not verify (e.g. a relay signing for a region
    /// below it): not counted, not forwarded.
    AttestationRejected {
        from: RegionCode,
        error: AttestationError,
    },
    /// This node's aggregated view of its subtree changed (at the publisher: per-region
    /// completeness of the whole dataset).
    Completeness(Receipt),
    /// The held manifest expired before a newer one arrived.
    TransferExpired {
        manifest: Hash,
    },
}

/// Everything a state machine asks its shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: RegionCode,
        msg: ReturnFlowMsg,
    },
    /// Read each part's groups, encode them and send them to `to` as one chunk frame, the
    /// parts in this order. Together the parts hold at most `CHUNK_GROUPS_PER_FRAME_MAX`
    /// groups and encode to at most `CHUNK_FRAME_BYTES_MAX` bytes.
    ServeChunks {
        to: RegionCode,
        manifest: Hash,
        parts: Vec<ServePart>,
    },
    Storage(StorageOp),
    Event(Event),
}

/// One partition's run of groups in an [`Output::ServeChunks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServePart {
    pub entry: PartitionEntry,
    pub groups: Range<u64>,
    /// Exact length of its encoding ([`crate::manifest::encoded_len`]).
    pub encoded_len: u64,
}
