//! Wire format: every frame is `version: u16` followed by one [`Message`], both encoded with
//! bincode 2 (serde, standard varint configuration). Decoding untrusted bytes is total: it
//! returns a [`WireError`] for anything malformed, oversized or over a named limit, and never
//! panics (fuzzed by `protocol/fuzz`).
//!
//! Limits are enforced twice: bincode's byte limit bounds what the decoder may read (and so what
//! it may allocate), and after decoding [`Bounded::check_limits`] checks every collection and
//! string against its named limit below. Encoding runs the same checks, so an honest node never
//! emits a frame its peer would refuse.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::catalog_sync::CatalogMsg;
use crate::cert::CertChain;
use crate::manifest::{split_payload, ChunkFrame, ChunkPart};
use crate::return_flow::ReturnFlowMsg;

/// Version tag carried by every frame. Bumped on any incompatible change of [`Message`].
/// 2: receipts carry a delivered bitmap (exact aggregation after fallbacks).
/// 3: a manifest's schema carries the published header line verbatim.
/// 4: a want names many partitions, a chunk frame carries runs of many partitions.
pub const PROTOCOL_VERSION: u16 = 4;

// ---- Named hard limits. Units last. Each says why it has the value it has. ----

/// Whole frame. Large enough for an announce carrying a province's subtree of partition
/// entries (≤ `ANNOUNCE_ENTRIES_MAX` × ~100 B) and a batch of catalog updates; small enough that a
/// hostile peer cannot make us buffer much.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Short identifiers and names (dataset id, department, entry name, field name).
pub const NAME_BYTES_MAX: usize = 256;
/// Free text (descriptions, reasons, legal basis, usage conditions).
pub const TEXT_BYTES_MAX: usize = 4 * 1024;
/// A libp2p peer id is a multihash of ≤ 42 bytes for ed25519 identities; 64 leaves room.
pub const PEER_ID_BYTES_MAX: usize = 64;
/// Certificates between the national anchor and a township: province, city, county, township.
pub const CERT_CHAIN_LEN_MAX: usize = 4;
/// Data items (数据项) of one catalog entry.
pub const DATA_ITEMS_PER_ENTRY_MAX: usize = 512;
/// Short lists inside a catalog entry (sharing methods, permitted uses, scope regions).
pub const LIST_ITEMS_MAX: usize = 32;
/// Encoded bytes of one signed catalog version: a quarter frame, so a batch always carries at
/// least one and typically many.
pub const CATALOG_UPDATE_BYTES_MAX: usize = FRAME_BYTES_MAX / 4;
/// Changes in one signed catalog version.
pub const CHANGES_PER_UPDATE_MAX: usize = 256;
/// Catalog updates in one sync batch; with `CHANGES_PER_UPDATE_MAX` bounds a batch's work.
pub const UPDATES_PER_BATCH_MAX: usize = 32;
/// Partitions in one manifest: there are 44,704 regions, so one partition per region fits.
pub const PARTITIONS_PER_MANIFEST_MAX: u32 = 65_536;
/// Partition entries in one announce: a province subtree has ≤ ~3,500 regions.
pub const ANNOUNCE_ENTRIES_MAX: usize = 16_384;
/// Proof levels from a region up to a manifest's scope (township → national is 4).
pub const PROOF_LEVELS_MAX: usize = 4;
/// Siblings listed at one proof level (a county has at most a few hundred townships).
pub const PROOF_SIBLINGS_PER_LEVEL_MAX: usize = 1_024;
/// Partitions named in one want: a window of 1,024 one-group partitions (a national dataset's
/// shape, ~12 KB per township) is one message, not a thousand.
pub const WANT_PARTS_MAX: usize = 1_024;
/// Chunk-group ranges in one want, over all its partitions.
pub const WANT_RANGES_MAX: usize = 1_024;
/// Chunk groups one want makes a source serve (64 MiB): bounds the work one message causes,
/// whatever its ranges claim; a receiver with a larger window sends more wants.
pub const WANT_GROUPS_SERVED_MAX: u64 = 4_096;
/// Fields in a dataset schema.
pub const SCHEMA_FIELDS_MAX: usize = 512;
/// A schema's verbatim header line: `SCHEMA_FIELDS_MAX` names of up to 64 bytes with quoting;
/// a manifest stays far below a frame.
pub const SCHEMA_HEADER_BYTES_MAX: usize = 64 * 1024;
/// Regions a receipt names as missing; the count beyond is still reported.
pub const MISSING_REGIONS_REPORTED_MAX: usize = 64;
/// Bytes of a receipt's delivered bitmap: one bit per partition of the signer's subtree, which
/// came in one announce (≤ `ANNOUNCE_ENTRIES_MAX` entries), so ≤ 2 KiB.
pub const RECEIPT_DELIVERED_BYTES_MAX: usize = ANNOUNCE_ENTRIES_MAX.div_ceil(8);
/// Encoded bytes of one chunk frame: `CHUNK_GROUPS_PER_FRAME_MAX` groups of 16 KiB plus bao
/// parent hashes (64 B per parent node: < 64 KiB for 64 groups and the path to the root). A
/// source packing runs of several partitions adds one only while the frame stays within this.
pub const CHUNK_FRAME_BYTES_MAX: usize = 1024 * 1024 + 64 * 1024;

/// Why bytes are not an acceptable frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unsupported protocol version {got} (this node speaks {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes { extra: usize },
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// A collection or string over its named limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {len} exceeds the limit of {max}")]
pub struct LimitError {
    pub what: &'static str,
    pub len: usize,
    pub max: usize,
}

/// `Err` if `len > max`.
pub fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError { what, len, max })
    } else {
        Ok(())
    }
}

/// Types that carry collections or strings check them against the named limits.
pub trait Bounded {
    fn check_limits(&self) -> Result<(), LimitError>;
}

impl<T: Bounded> Bounded for std::sync::Arc<T> {
    fn check_limits(&self) -> Result<(), LimitError> {
        (**self).check_limits()
    }
}

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
}

impl Bounded for Message {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            Message::Hello(m) => m.check_limits(),
            Message::Catalog(m) => m.check_limits(),
            Message::ReturnFlow(m) => m.check_limits(),
            Message::Chunk(m) => m.check_limits(),
        }
    }
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_BYTES_MAX>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<FRAME_BYTES_MAX>()
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
    crate::manifest::check_chunk_frame_limits(&frame.parts, frame.encoded.len())?;
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

/// Records a node reads back from its own storage (e.g. a publisher's `TransferRecord` with
/// one entry per region of the country, ~3.5 MB) may exceed a frame; they are still bounded.
pub const STORED_RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Decodes a value read from local storage: like [`decode_exact`] but under
/// `STORED_RECORD_BYTES_MAX`. Corrupt storage yields an error, never a panic.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > STORED_RECORD_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            len: bytes.len(),
            max: STORED_RECORD_BYTES_MAX,
        });
    }
    let config = bincode::config::standard().with_limit::<STORED_RECORD_BYTES_MAX>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Encodes any value with the wire configuration (used for storage records too).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes a value that must span all of `bytes`, under the frame byte limit.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), WireError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// Domain-separated digest of a value's canonical encoding: what signatures sign and what
/// hashes name. Domain tags keep a signature over one type from being replayed as another.
pub fn digest<T: Serialize + ?Sized>(domain: &[u8], value: &T) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(domain.len() as u64).to_le_bytes());
    hasher.update(domain);
    // Invariant: encoding our own in-memory values cannot fail (bincode only fails on
    // unknown-length sequences, which serde derive never produces) and writing into a hasher is
    // infallible. This never sees untrusted bytes.
    bincode::serde::encode_into_std_write(value, &mut hasher, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    *hasher.finalize().as_bytes()
}

/// Encoded size of a value in bytes (without allocating the encoding).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut w = bincode::enc::write::SizeWriter::default();
    // Invariant as in `digest`: encoding an in-memory value cannot fail.
    bincode::serde::encode_into_writer(value, &mut w, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    w.bytes_written
}
