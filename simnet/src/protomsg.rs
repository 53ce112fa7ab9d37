//! What travels between simulated protocol nodes, and its wire-size model: control frames are
//! the protocol's own messages (their bincode length is exact); a chunk frame travels by size
//! and hash — each run's groups, its exact encoded length and the partition's content hash —
//! instead of its bao-encoded bytes, so the whole country fits in memory.

use std::ops::Range;

use backflow_protocol::catalog_sync::CatalogMsg;
use backflow_protocol::manifest::Hash;
use backflow_protocol::return_flow::ReturnFlowMsg;
use backflow_protocol::revocation_gossip::RevocationMsg;
use backflow_protocol::share::ShareMsg;
use backflow_protocol::wire::{encoded_len, Message};
use backflow_topology::RegionCode;

use crate::engine::Wire;
use crate::shell::Plane;

/// Frame envelope: version tag, message tag, lengths.
const FRAME_HEADER_BYTES: u64 = 8;
/// Chunk frame header (manifest hash, region, group range) and bao parent hashes per group.
const CHUNK_HEADER_BYTES: u64 = 64;
/// Per-part bytes of a chunk frame's head (region, first group, count, length as varints).
const CHUNK_PART_HEADER_BYTES: u64 = 24;

/// What travels between simulated nodes. Hellos do not: the shell models the connection
/// handshake in place (see [`crate::protonode`]).
#[derive(Clone, Debug)]
pub enum ProtoMsg {
    ReturnFlow(ReturnFlowMsg),
    Catalog(CatalogMsg),
    Revocations(RevocationMsg),
    /// A share act or acknowledgement, with the hops it has travelled (simnet's bookkeeping
    /// for the sharing scenario's report: not on the wire).
    Share {
        msg: ShareMsg,
        hops: u8,
    },
    /// A chunk frame, by size and hash: runs of one or more partitions.
    Chunk {
        manifest: Hash,
        parts: Vec<SimPart>,
    },
}

/// One partition's run in a simulated chunk frame.
#[derive(Clone, Debug)]
pub struct SimPart {
    pub region: RegionCode,
    pub groups: Range<u64>,
    /// What the real frame's bao encoding would verify against: a frame cut from other
    /// content carries another hash.
    pub content_hash: Hash,
    /// The exact bao encoding length the real frame would carry (data and parent hashes).
    pub encoded_len: u64,
}

impl ProtoMsg {
    /// The control frame the endpoint asked to send, as simnet carries it (`None` for hellos
    /// and chunk frames, which an endpoint never hands to `Send`, and for catalog searches,
    /// service interface calls and ledger heads, which no simnet scenario makes: one would be
    /// reported as `unexpected_send`).
    pub fn control(msg: Message) -> Option<ProtoMsg> {
        match msg {
            Message::ReturnFlow(m) => Some(ProtoMsg::ReturnFlow(m)),
            Message::Catalog(m) => Some(ProtoMsg::Catalog(m)),
            Message::Revocations(m) => Some(ProtoMsg::Revocations(m)),
            Message::Share(msg) => Some(ProtoMsg::Share { msg, hops: 0 }),
            Message::Hello(_)
            | Message::Chunk(_)
            | Message::Search(_)
            | Message::Service(_)
            | Message::Ledger(_) => None,
        }
    }
}

/// Bytes of a protocol frame on the wire (envelope included), e.g. a hello.
pub fn frame_bytes(msg: &Message) -> u64 {
    FRAME_HEADER_BYTES + encoded_len(msg) as u64
}

impl Wire for ProtoMsg {
    fn wire_bytes(&self) -> u64 {
        match self {
            ProtoMsg::ReturnFlow(m) => FRAME_HEADER_BYTES + encoded_len(m) as u64,
            ProtoMsg::Catalog(m) => FRAME_HEADER_BYTES + encoded_len(m) as u64,
            ProtoMsg::Revocations(m) => FRAME_HEADER_BYTES + encoded_len(m) as u64,
            ProtoMsg::Share { msg, .. } => FRAME_HEADER_BYTES + encoded_len(msg) as u64,
            ProtoMsg::Chunk { parts, .. } => {
                FRAME_HEADER_BYTES
                    + CHUNK_HEADER_BYTES
                    + parts
                        .iter()
                        .map(|p| CHUNK_PART_HEADER_BYTES + p.encoded_len)
                        .sum::<u64>()
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ProtoMsg::ReturnFlow(m) => match m {
                ReturnFlowMsg::Announce(_) => "announce",
                ReturnFlowMsg::AnnounceAck { .. } => "announce_ack",
                ReturnFlowMsg::Want { .. } => "want",
                ReturnFlowMsg::NotAvailable { .. } => "not_available",
                ReturnFlowMsg::Receipt(_) => "receipt",
                ReturnFlowMsg::ReceiptAck { .. } => "receipt_ack",
            },
            ProtoMsg::Catalog(m) => match m {
                CatalogMsg::Probe { .. } => "catalog_probe",
                CatalogMsg::Updates { .. } => "catalog_updates",
                CatalogMsg::Ack { .. } => "catalog_ack",
            },
            ProtoMsg::Revocations(_) => "revocations",
            ProtoMsg::Share {
                msg: ShareMsg::Act(_),
                ..
            } => "share_act",
            ProtoMsg::Share {
                msg: ShareMsg::Ack { .. },
                ..
            } => "share_ack",
            ProtoMsg::Share {
                msg: ShareMsg::Rights(_),
                ..
            } => "sharing_rights",
            ProtoMsg::Chunk { .. } => "chunk",
        }
    }

    fn plane(&self) -> Plane {
        match self {
            ProtoMsg::Chunk { parts, .. } => Plane::Chunk {
                // What the pool reads, hashes and copies: the encoding, parent hashes included.
                payload_bytes: parts.iter().map(|p| p.encoded_len).sum(),
                runs: parts.len() as u32,
            },
            // A manifest's signature is checked by every receiver (the node's trust store
            // memoises per node); each receipt is signed by its sender for its receiver.
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Announce(_)) => Plane::Control {
                verifies: 1,
                signs: 0,
            },
            // Each attestation it carries costs its receiver two checks the first time (its
            // signature and its signer's own certificate; the chain above is memoised).
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Receipt(r)) => Plane::Control {
                verifies: 1 + 2 * r.attestations.len() as u32,
                signs: 1,
            },
            ProtoMsg::Catalog(CatalogMsg::Updates { updates, .. }) => Plane::Control {
                verifies: updates.len() as u32,
                signs: 0,
            },
            // Each revocation's signature and issuer chain is checked by every receiver.
            ProtoMsg::Revocations(m) => Plane::Control {
                verifies: m.revocations.len() as u32,
                signs: 0,
            },
            // Each hop checks a share act's signature.
            ProtoMsg::Share {
                msg: ShareMsg::Act(_),
                ..
            } => Plane::Control {
                verifies: 1,
                signs: 0,
            },
            // Each act on sharing rights is checked by every receiver (signature and chain).
            ProtoMsg::Share {
                msg: ShareMsg::Rights(m),
                ..
            } => Plane::Control {
                verifies: m.acts.len() as u32,
                signs: 0,
            },
            ProtoMsg::ReturnFlow(_) | ProtoMsg::Catalog(_) | ProtoMsg::Share { .. } => {
                Plane::Control {
                    verifies: 0,
                    signs: 0,
                }
            }
        }
    }

    fn partitions(&self, out: &mut Vec<RegionCode>) {
        match self {
            ProtoMsg::Chunk { parts, .. } => out.extend(parts.iter().map(|p| p.region)),
            // Announces list partition entries (metadata): hold them to the same rule.
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Announce(a)) => {
                out.extend(a.entries.iter().map(|e| e.region))
            }
            _ => {}
        }
    }
}
