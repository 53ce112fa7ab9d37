//! Control-plane messages of the return flow: what one [`super::ReturnFlow`] sends another,
//! and their limits. [`crate::wire::Message`] carries them; the machine makes and handles them.

use std::ops::Range;
use std::sync::Arc;

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::limits::{
    check_len, Bounded, LimitError, ANNOUNCE_ENTRIES_MAX, WANT_PARTS_MAX, WANT_RANGES_MAX,
};
use crate::manifest::{Hash, PartitionEntry, SignedManifest};
use crate::receipt::SignedReceipt;
use crate::region_tree::RegionProof;

/// Control-plane messages of the return flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReturnFlowMsg {
    /// Ancestor → descendant: a dataset version with the entries of the receiver's subtree.
    Announce(Announce),
    /// Descendant → ancestor: the announce was accepted (or was already held).
    AnnounceAck { manifest: Hash },
    /// Descendant → source: send these chunk groups of these partitions (one message for a
    /// whole window, however many partitions it spans).
    Want {
        manifest: Hash,
        parts: Vec<WantPart>,
    },
    /// Source → descendant: cannot serve this (unknown manifest, or not yet held).
    NotAvailable { manifest: Hash },
    /// Descendant → source: a signed subtree receipt.
    Receipt(Arc<SignedReceipt>),
    /// Source → descendant: receipt `seq` recorded.
    ReceiptAck { manifest: Hash, seq: u64 },
}

/// The groups of one partition a [`ReturnFlowMsg::Want`] asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantPart {
    pub region: RegionCode,
    pub groups: Vec<Range<u64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    pub manifest: Arc<SignedManifest>,
    /// Partitions inside the receiver's region only.
    pub entries: Vec<PartitionEntry>,
    /// From the receiver's region up to the manifest scope.
    pub proof: RegionProof,
}

impl Bounded for ReturnFlowMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            ReturnFlowMsg::Announce(a) => {
                a.manifest.check_limits()?;
                check_len("announce entries", a.entries.len(), ANNOUNCE_ENTRIES_MAX)?;
                a.proof.check_limits()
            }
            ReturnFlowMsg::Want { parts, .. } => {
                check_len("want partitions", parts.len(), WANT_PARTS_MAX)?;
                let ranges = parts
                    .iter()
                    .map(|p| p.groups.len())
                    .fold(0usize, usize::saturating_add);
                check_len("want ranges", ranges, WANT_RANGES_MAX)
            }
            ReturnFlowMsg::Receipt(r) => r.check_limits(),
            ReturnFlowMsg::AnnounceAck { .. }
            | ReturnFlowMsg::NotAvailable { .. }
            | ReturnFlowMsg::ReceiptAck { .. } => Ok(()),
        }
    }
}
