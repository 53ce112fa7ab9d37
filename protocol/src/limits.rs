//! Named hard limits: every collection and string that crosses the wire or is read back from
//! storage has one, with the reason for its value. The bottom of the crate: it imports nothing.
//!
//! Limits are enforced twice: bincode's byte limit bounds what the decoder may read (and so what
//! it may allocate, see [`crate::codec`]), and after decoding [`Bounded::check_limits`] checks
//! every collection and string against its named limit below. Encoding runs the same checks, so
//! an honest node never emits a frame its peer would refuse.

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
/// Delivery attestations forwarded with one receipt: each ≤ ~1.6 KiB (a chain of
/// `CERT_CHAIN_LEN_MAX` certificates and a signature), so a receipt stays well inside
/// `FRAME_BYTES_MAX`; a province with thousands of townships forwards them in a few receipts.
pub const ATTESTATIONS_PER_RECEIPT_MAX: usize = 1_024;
/// Bytes of a receipt's delivered bitmap: one bit per partition of the signer's subtree, which
/// came in one announce (≤ `ANNOUNCE_ENTRIES_MAX` entries), so ≤ 2 KiB.
pub const RECEIPT_DELIVERED_BYTES_MAX: usize = ANNOUNCE_ENTRIES_MAX.div_ceil(8);
/// Encoded bytes of one chunk frame: `CHUNK_GROUPS_PER_FRAME_MAX` groups of 16 KiB plus bao
/// parent hashes (64 B per parent node: < 64 KiB for 64 groups and the path to the root). A
/// source packing runs of several partitions adds one only while the frame stays within this.
pub const CHUNK_FRAME_BYTES_MAX: usize = 1024 * 1024 + 64 * 1024;

/// Records a node reads back from its own storage (e.g. a publisher's `TransferRecord` with
/// one entry per region of the country, ~3.5 MB) may exceed a frame; they are still bounded.
pub const STORED_RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

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

/// `text` cut to at most `max` bytes, at a character boundary: for text that is kept or sent
/// shortened rather than refused (a refusal's reason, a ledger entry's description).
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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
