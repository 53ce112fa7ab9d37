//! Wire format: every frame is `version: u16` followed by one [`Message`], both encoded with
//! bincode 2 (serde, standard varint configuration, [`crate::codec`]). Decoding untrusted bytes
//! is total: it returns a [`WireError`] for anything malformed, oversized or over a named limit
//! ([`crate::limits`]), and never panics (fuzzed by `protocol/fuzz`).
//!
//! The top of the crate's message side: [`Message`] gathers every module's messages. The
//! foundations every module uses — limits, [`Bounded`], the codec, [`digest`] — live in
//! [`crate::limits`] and [`crate::codec`]; they keep their old `wire::` paths for other crates.

use serde::{Deserialize, Serialize};

use crate::catalog_sync::messages::CatalogMsg;
use crate::cert::CertChain;
use crate::chunk::{check_chunk_frame_limits, split_payload, ChunkFrame, ChunkPart};
use crate::codec::{config, decode_prefix};
use crate::return_flow::messages::ReturnFlowMsg;
use crate::revocation_gossip::RevocationMsg;
use crate::share::ShareMsg;

pub use crate::codec::{decode_exact, decode_stored, digest, encode_value, encoded_len, WireError};
pub use crate::limits::{
    check_len, Bounded, LimitError, ANNOUNCE_ENTRIES_MAX, CATALOG_UPDATE_BYTES_MAX,
    CERT_CHAIN_LEN_MAX, CHANGES_PER_UPDATE_MAX, CHUNK_FRAME_BYTES_MAX, DATA_ITEMS_PER_ENTRY_MAX,
    FRAME_BYTES_MAX, LIST_ITEMS_MAX, MISSING_REGIONS_REPORTED_MAX, NAME_BYTES_MAX,
    PARTITIONS_PER_MANIFEST_MAX, PEER_ID_BYTES_MAX, PROOF_LEVELS_MAX, PROOF_SIBLINGS_PER_LEVEL_MAX,
    RECEIPT_DELIVERED_BYTES_MAX, SCHEMA_FIELDS_MAX, SCHEMA_HEADER_BYTES_MAX,
    STORED_RECORD_BYTES_MAX, TEXT_BYTES_MAX, UPDATES_PER_BATCH_MAX, WANT_GROUPS_SERVED_MAX,
    WANT_PARTS_MAX, WANT_RANGES_MAX,
};

/// Version tag carried by every frame. Bumped on any incompatible change of [`Message`].
/// 2: receipts carry a delivered bitmap (exact aggregation after fallbacks).
/// 3: a manifest's schema carries the published header line verbatim.
/// 4: a want names many partitions, a chunk frame carries runs of many partitions.
/// 5: revocations travel on the control plane ([`Message::Revocations`]).
/// 6: catalog searches travel up the tree and back ([`Message::Search`]).
/// 7: service interface calls ([`Message::Service`]).
/// 8: ledger heads and their witnesses' countersignatures ([`Message::Ledger`]).
/// 9: ledger inspection over the network ([`crate::ledger::inspection`]).
/// 10: a correction's corrected data as a delivery's next version
/// ([`crate::share::ShareAct::DeliverCorrection`]).
/// 11: authorities' acts on departments' sharing rights ([`crate::share::RightsMsg`]).
/// 12: correction requests against returned data ([`crate::share::ReturnedCorrection`]).
/// 13: inspected ledger entries carry their seals ([`crate::ledger::seal`]).
pub const PROTOCOL_VERSION: u16 = 13;

/// Identity exchange on connection: the sender's certificate chain (anchor-most first). The
/// shell verifies it with [`crate::cert::TrustStore::verify_chain`], checks the leaf's peer id
/// against the transport's, and from then on passes the verified region as `from` to the state
/// machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub chain: CertChain,
}

impl Bounded for Hello {
    fn check_limits(&self) -> Result<(), LimitError> {
        crate::cert::check_chain_limits(&self.chain)
    }
}

/// Everything that crosses the wire between two nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    /// Control plane: catalog sync (child → parent, acks back).
    Catalog(CatalogMsg),
    /// Control plane: return-flow announce / want / receipts.
    ReturnFlow(ReturnFlowMsg),
    /// Data plane: verified chunk groups of a partition. Handled by the shell (see
    /// [`crate::manifest::ChunkFrame`]); never fed to a state machine as bytes.
    Chunk(ChunkFrame),
    /// Control plane: signed revocations, to every peer in line with their subjects
    /// ([`crate::revocation_gossip`]).
    Revocations(RevocationMsg),
    /// Control plane: share requests' signed acts, hop by hop toward the other party
    /// ([`crate::share`]).
    Share(ShareMsg),
    /// Control plane: searches of the unified catalog, up to the node whose subtree covers
    /// them and back ([`crate::catalog_search`]).
    Search(crate::catalog_search::SearchMsg),
    /// Control plane: calls of a granted service interface (服务接口) and their answers,
    /// directly between the grant's two parties ([`crate::service_interface`]).
    Service(crate::service_interface::ServiceMsg),
    /// Control plane: compliance-ledger heads up to the parent and its countersignatures
    /// back ([`crate::ledger::witnessing`]).
    Ledger(crate::ledger::witnessing::LedgerMsg),
}

impl Bounded for Message {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            Message::Hello(m) => m.check_limits(),
            Message::Catalog(m) => m.check_limits(),
            Message::ReturnFlow(m) => m.check_limits(),
            Message::Chunk(m) => m.check_limits(),
            Message::Revocations(m) => m.check_limits(),
            Message::Share(m) => m.check_limits(),
            Message::Search(m) => m.check_limits(),
            Message::Service(m) => m.check_limits(),
            Message::Ledger(m) => m.check_limits(),
        }
    }
}

impl Message {
    /// Whether sending this message tells its receiver that state of this node is stored:
    /// an acknowledgement (of an announce, a receipt, catalog entries), a receipt (the groups
    /// it counts are stored), catalog entries or revocations passed on (persisted before), or
    /// an announce (the record it names is held). Before sending one, the shell makes every
    /// storage effect it has applied so far durable (the node syncs its write-ahead log), so
    /// a crash or power cut after the send cannot undo what the peer was told — "nothing
    /// acknowledged is lost". Requests (hello, want, probe), refusals and chunk frames tell
    /// nothing of the sender's storage and go without a sync: a want is sent per delivered
    /// frame, and a sync each would cost the data plane its line rate.
    pub fn acknowledges_stored_state(&self) -> bool {
        match self {
            Message::Hello(_) | Message::Chunk(_) => false,
            Message::Catalog(m) => !matches!(m, CatalogMsg::Probe { .. }),
            Message::ReturnFlow(m) => !matches!(
                m,
                ReturnFlowMsg::Want { .. } | ReturnFlowMsg::NotAvailable { .. }
            ),
            Message::Revocations(_) => true,
            // An act is persisted (case or transit) before it is sent; an ack says so.
            Message::Share(_) => true,
            // A search reads what is published; it tells nothing of what is stored.
            Message::Search(_) => false,
            // An answer is counted (the grant's usage persisted) before it is sent.
            Message::Service(m) => matches!(m, crate::service_interface::ServiceMsg::Answer { .. }),
            // A countersignature is persisted before it is sent: the witness never forgets a
            // head it vouched for.
            Message::Ledger(m) => matches!(m, crate::ledger::witnessing::LedgerMsg::Witnessed(_)),
        }
    }
}

/// Encodes one frame (version tag + message), checking limits first.
pub fn encode_frame(message: &Message) -> Result<Vec<u8>, WireError> {
    message.check_limits()?;
    // Sized up front: a chunk frame is its payload plus a few dozen bytes, and growing the
    // buffer by doubling would copy the payload again.
    let hint = match message {
        Message::Chunk(f) => f.encoded.len() + 128,
        _ => 1024,
    };
    let mut out = Vec::with_capacity(hint);
    bincode::serde::encode_into_std_write(PROTOCOL_VERSION, &mut out, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    bincode::serde::encode_into_std_write(message, &mut out, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    check_len("frame bytes", out.len(), FRAME_BYTES_MAX).map_err(|_| WireError::FrameTooLarge {
        len: out.len(),
        max: FRAME_BYTES_MAX,
    })?;
    Ok(out)
}

/// A frame as a hostile peer could send it: encoded without the limit check, so tests can
/// show that decoding refuses what encoding never produces.
#[cfg(test)]
pub(crate) fn encode_unchecked_for_tests(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    bincode::serde::encode_into_std_write(PROTOCOL_VERSION, &mut out, config()).unwrap();
    bincode::serde::encode_into_std_write(message, &mut out, config()).unwrap();
    out
}

/// The frame of `Message::Chunk(frame)` up to its payload: `head ‖ frame.encoded` is
/// byte-identical to `encode_frame(&Message::Chunk(frame))` (tested), so a sender writes the
/// megabyte payload straight from its buffer instead of copying it into a frame first.
/// Checks the same limits as [`encode_frame`].
pub fn encode_chunk_frame_head(frame: &ChunkFrame) -> Result<Vec<u8>, WireError> {
    // Within CHUNK_FRAME_BYTES_MAX, head + payload is far below FRAME_BYTES_MAX.
    frame.check_limits()?;
    // The frame with an empty payload ends in the payload's length, 0, one varint byte;
    // replace it with the real length (bincode writes a byte block's length as a u64 varint).
    // Encoded without `encode_frame`'s limit check: the parts' lengths do not add up to the
    // empty payload, and the real frame was checked above.
    let empty = Message::Chunk(ChunkFrame {
        manifest: frame.manifest,
        parts: frame.parts.clone(),
        encoded: Vec::new(),
    });
    let mut head = Vec::with_capacity(64 + frame.parts.len() * 24);
    bincode::serde::encode_into_std_write(PROTOCOL_VERSION, &mut head, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    bincode::serde::encode_into_std_write(&empty, &mut head, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    let last = head.pop();
    debug_assert_eq!(
        last,
        Some(0),
        "an empty byte block is coded as the varint 0"
    );
    bincode::serde::encode_into_std_write(frame.encoded.len() as u64, &mut head, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(head)
}

/// Decodes one frame from untrusted bytes. Total: never panics.
pub fn decode_frame(bytes: &[u8]) -> Result<Message, WireError> {
    let message: Message = decode_exact(frame_body(bytes)?)?;
    message.check_limits()?;
    Ok(message)
}

/// A frame's message bytes, after checking the frame's size and its version tag.
fn frame_body(bytes: &[u8]) -> Result<&[u8], WireError> {
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            len: bytes.len(),
            max: FRAME_BYTES_MAX,
        });
    }
    let (version, used): (u16, usize) = decode_prefix(bytes)?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    Ok(&bytes[used..])
}

/// A chunk frame decoded without copying its payload (see [`decode_chunk_frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFrameView {
    pub manifest: crate::manifest::Hash,
    pub parts: Vec<ChunkPart>,
    /// Where [`ChunkFrame::encoded`] lies in the decoded bytes.
    pub payload: std::ops::Range<usize>,
}

impl ChunkFrameView {
    /// Each part with where its encoding lies in the decoded bytes.
    pub fn parts_in_buffer(&self) -> impl Iterator<Item = (&ChunkPart, std::ops::Range<usize>)> {
        split_payload(&self.parts, self.payload.clone())
    }
}

impl From<ChunkFrame> for (ChunkFrameView, Vec<u8>) {
    /// An owned frame as a view over its own payload buffer.
    fn from(frame: ChunkFrame) -> (ChunkFrameView, Vec<u8>) {
        let view = ChunkFrameView {
            manifest: frame.manifest,
            parts: frame.parts,
            payload: 0..frame.encoded.len(),
        };
        (view, frame.encoded)
    }
}

/// [`Message`] with the chunk payload borrowed. Same variants in the same order, so the same
/// bytes decode the same way (tested against [`Message`]).
#[derive(Deserialize)]
enum MessageRef<'a> {
    #[allow(dead_code)] // decoded only to be refused
    Hello(Hello),
    #[allow(dead_code)]
    Catalog(CatalogMsg),
    #[allow(dead_code)]
    ReturnFlow(ReturnFlowMsg),
    #[serde(borrow)]
    Chunk(ChunkFrameRef<'a>),
}

/// [`ChunkFrame`] with `encoded` borrowed from the frame.
#[derive(Deserialize)]
struct ChunkFrameRef<'a> {
    manifest: crate::manifest::Hash,
    parts: Vec<ChunkPart>,
    #[serde(borrow)]
    encoded: &'a [u8],
}

/// Decodes a frame that must hold a [`Message::Chunk`], leaving the payload where it lies in
/// `bytes` (a data-plane reader hands the whole buffer on instead of copying a megabyte out of
/// it). Same checks as [`decode_frame`]; any other message is an error. Total: never panics.
pub fn decode_chunk_frame(bytes: &[u8]) -> Result<ChunkFrameView, WireError> {
    let body = frame_body(bytes)?;
    let (message, read): (MessageRef<'_>, usize) =
        bincode::serde::borrow_decode_from_slice(body, config())
            .map_err(|e| WireError::Malformed(e.to_string()))?;
    if read != body.len() {
        return Err(WireError::TrailingBytes {
            extra: body.len() - read,
        });
    }
    let MessageRef::Chunk(frame) = message else {
        return Err(WireError::Malformed(
            "a control message where a chunk frame belongs".into(),
        ));
    };
    check_chunk_frame_limits(&frame.parts, frame.encoded.len())?;
    // `encoded` borrows from `bytes`, so its offset is a difference of addresses. Checked all
    // the same (an empty slice need not point into `bytes`): this decoder must stay total.
    let len = frame.encoded.len();
    let payload = match (frame.encoded.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize) {
        Some(start) if start + len <= bytes.len() => start..start + len,
        _ if len == 0 => bytes.len()..bytes.len(),
        _ => {
            return Err(WireError::Malformed(
                "chunk payload outside the frame".into(),
            ))
        }
    };
    Ok(ChunkFrameView {
        manifest: frame.manifest,
        parts: frame.parts,
        payload,
    })
}
