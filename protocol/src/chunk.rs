//! Chunks (the data plane): a partition's content travels in 16 KiB groups encoded with
//! bao-tree, every group with the parent hashes that link it to the partition's content hash
//! (the bao root), so a receiver verifies each group on arrival. Here: the chunk frame that
//! carries runs of one or more partitions, its limits, and the in-place encoder and decoder
//! (held to bao-tree's own byte for byte by the tests). The signed manifest that names the
//! content hashes is [`crate::manifest`].

use std::ops::Range;

use backflow_topology::RegionCode;
use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use serde::{Deserialize, Serialize};

use crate::limits::{check_len, Bounded, LimitError, CHUNK_FRAME_BYTES_MAX};
use crate::manifest::{
    Hash, PartitionEntry, CHUNK_GROUPS_PER_FRAME_MAX, CHUNK_GROUP_BYTES, PARTITION_BYTES_MAX,
};

/// bao-tree's block size for [`CHUNK_GROUP_BYTES`] (16 KiB) chunk groups: chunk log 4. A shell
/// that keeps its own outboards (the node's streaming encoder) builds its trees with this.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
pub(crate) const CHUNKS_PER_GROUP: u64 = 16;

/// Data plane: runs of chunk groups of one or more partitions of one manifest, each verified
/// on arrival. Why many partitions in one frame: a national dataset is 41,352 partitions of
/// ~12 KB, and per-frame costs (a task, a write, a storage batch, a state-machine step) paid
/// per partition made such a dataset crawl; packed, a frame again carries up to a megabyte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkFrame {
    pub manifest: Hash,
    /// The runs, in payload order; at most [`CHUNK_GROUPS_PER_FRAME_MAX`] groups in all.
    pub parts: Vec<ChunkPart>,
    /// bao-tree encodings of the parts' groups (parent hashes interleaved with data), back to
    /// back, each `encoded_len` bytes long.
    /// `serde_bytes`: encoded and decoded as one block (bincode writes the same bytes as for
    /// a `Vec<u8>` sequence, but element-wise coding cost ~20 % of a transfer's CPU time).
    #[serde(with = "serde_bytes")]
    pub encoded: Vec<u8>,
}

/// One partition's run of groups in a [`ChunkFrame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPart {
    pub region: RegionCode,
    /// Groups `[first_group, first_group + group_count)`.
    pub first_group: u64,
    pub group_count: u64,
    /// Bytes of this run's encoding in the frame's payload.
    pub encoded_len: u32,
}

impl ChunkPart {
    pub fn groups(&self) -> Range<u64> {
        self.first_group..self.first_group.saturating_add(self.group_count)
    }
}

impl ChunkFrame {
    /// Each part with its slice of the payload. The limits (checked on decode and encode) make
    /// the lengths add up; a frame that breaks them yields no slice past its payload.
    pub fn parts_with_payload(&self) -> impl Iterator<Item = (&ChunkPart, &[u8])> {
        split_payload(&self.parts, 0..self.encoded.len()).map(move |(p, r)| (p, &self.encoded[r]))
    }
}

/// Where each part's encoding lies, given the payload's place `payload` in a buffer. Stops at
/// the first part that would reach past the payload (never the case for a checked frame).
pub fn split_payload(
    parts: &[ChunkPart],
    payload: Range<usize>,
) -> impl Iterator<Item = (&ChunkPart, Range<usize>)> {
    let mut at = payload.start;
    parts.iter().map_while(move |p| {
        let end = at.checked_add(p.encoded_len as usize)?;
        if end > payload.end {
            return None;
        }
        let r = at..end;
        at = end;
        Some((p, r))
    })
}

impl Bounded for ChunkFrame {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chunk_frame_limits(&self.parts, self.encoded.len())
    }
}

/// A chunk frame's limits, for an owned frame and for a borrowed view of one alike: at most
/// one frame's worth of groups over all parts (an empty part counts as one; it then fails
/// verification like any run outside its partition), and part lengths that add up to exactly
/// the payload.
pub(crate) fn check_chunk_frame_limits(
    parts: &[ChunkPart],
    encoded_len: usize,
) -> Result<(), LimitError> {
    let frame_groups = CHUNK_GROUPS_PER_FRAME_MAX as usize;
    check_len("chunk frame parts", parts.len(), frame_groups)?;
    check_len("chunk frame bytes", encoded_len, CHUNK_FRAME_BYTES_MAX)?;
    let mut groups = 0usize;
    let mut bytes = 0usize;
    for p in parts {
        // Each part has at least one group, so counting stays within the frame's groups.
        let n = usize::try_from(p.group_count).unwrap_or(usize::MAX).max(1);
        groups = groups.saturating_add(n);
        check_len("chunk groups per frame", groups, frame_groups)?;
        bytes = bytes.saturating_add(p.encoded_len as usize);
        check_len("chunk part bytes", bytes, encoded_len)?;
    }
    if bytes != encoded_len {
        // Fewer part bytes than payload: trailing bytes nobody claims.
        return Err(LimitError {
            what: "chunk frame payload beyond its parts",
            len: encoded_len,
            max: bytes,
        });
    }
    Ok(())
}

/// Exact length of the bao encoding of `groups` of `entry` (parents and data), as
/// [`encode_groups_into`] writes it; `None` if `groups` is not a valid run (see
/// [`check_groups`]). Lets a source pack several partitions' runs into one frame.
pub fn encoded_len(entry: &PartitionEntry, groups: &Range<u64>) -> Option<u64> {
    check_groups(entry, groups).ok()?;
    let tree = BaoTree::new(entry.bytes, BLOCK_SIZE);
    let mut len = 0u64;
    for item in tree.ranges_pre_order_chunks_iter_ref(&chunk_ranges(groups), 0) {
        len += match item {
            BaoChunk::Parent { .. } => 64,
            BaoChunk::Leaf { size, .. } => size as u64,
        };
    }
    Some(len)
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("groups {start}..{end} are not within the partition's {groups} groups")]
    OutOfRange { start: u64, end: u64, groups: u64 },
    #[error("chunk data does not verify against the partition hash (group {group})")]
    HashMismatch { group: u64 },
    #[error("chunk frame truncated or malformed")]
    Malformed,
    #[error("{0} unexpected trailing bytes in chunk frame")]
    TrailingBytes(usize),
    #[error("content does not match the partition entry")]
    ContentMismatch,
}

fn chunk_ranges(groups: &Range<u64>) -> ChunkRanges {
    ChunkRanges::from(
        ChunkNum(groups.start.saturating_mul(CHUNKS_PER_GROUP))
            ..ChunkNum(groups.end.saturating_mul(CHUNKS_PER_GROUP)),
    )
}

/// Checks that `groups` is a non-empty run of at most one frame's groups within the partition.
pub fn check_groups(entry: &PartitionEntry, groups: &Range<u64>) -> Result<(), ChunkError> {
    let total = entry.groups();
    if entry.bytes > PARTITION_BYTES_MAX
        || groups.start >= groups.end
        || groups.end > total
        || groups.end - groups.start > CHUNK_GROUPS_PER_FRAME_MAX
    {
        return Err(ChunkError::OutOfRange {
            start: groups.start,
            end: groups.end,
            groups: total,
        });
    }
    Ok(())
}

/// The bao outboard (interior hashes) of a partition, computed once by a node that holds the
/// content and reused to serve any group.
#[derive(Clone, Debug)]
pub struct PartitionOutboard {
    outboard: PreOrderMemOutboard,
}

impl PartitionOutboard {
    /// Computes the outboard and checks the content against `entry`.
    pub fn new(entry: &PartitionEntry, content: &[u8]) -> Result<PartitionOutboard, ChunkError> {
        if content.len() as u64 != entry.bytes {
            return Err(ChunkError::ContentMismatch);
        }
        let outboard = PreOrderMemOutboard::create(content, BLOCK_SIZE);
        if outboard.root.as_bytes() != &entry.content_hash {
            return Err(ChunkError::ContentMismatch);
        }
        Ok(PartitionOutboard { outboard })
    }

    /// Encodes groups for a [`ChunkFrame`]. Validates the content while encoding, so a node
    /// whose disk corrupted the data does not serve it.
    pub fn encode_groups(
        &self,
        entry: &PartitionEntry,
        content: &[u8],
        groups: Range<u64>,
    ) -> Result<Vec<u8>, ChunkError> {
        if content.len() as u64 != entry.bytes {
            return Err(ChunkError::ContentMismatch);
        }
        let mut out = Vec::new();
        let read = |offset: u64, buf: &mut [u8]| {
            let at = offset as usize;
            buf.copy_from_slice(&content[at..at + buf.len()]);
            Ok(())
        };
        encode_groups_into(entry, &self.outboard, groups, read, &mut out).map_err(|e| match e {
            ServeError::Chunk(e) => e,
            ServeError::ContentDamaged { group } => ChunkError::HashMismatch { group },
            // In memory: the outboard is complete and reading cannot fail.
            ServeError::MissingHashes(_) | ServeError::Read(_) => ChunkError::ContentMismatch,
        })?;
        Ok(out)
    }
}

/// Verifies a chunk frame's groups against the partition entry and returns their content
/// (starting at byte `groups.start * CHUNK_GROUP_BYTES`). The first group that fails is
/// reported at once.
pub fn decode_groups(
    entry: &PartitionEntry,
    groups: Range<u64>,
    encoded: &[u8],
) -> Result<Vec<u8>, ChunkError> {
    // Checked before sizing the buffer: a hostile entry or range must not size an allocation.
    check_groups(entry, &groups)?;
    let mut data = Vec::with_capacity(
        expected_bytes(entry, &groups).min(CHUNK_GROUPS_PER_FRAME_MAX * CHUNK_GROUP_BYTES) as usize,
    );
    decode_groups_with(entry, groups, encoded, |piece| {
        data.extend_from_slice(piece)
    })?;
    Ok(data)
}

/// Content bytes of `groups` of the partition (0 for an empty or out-of-range request).
fn expected_bytes(entry: &PartitionEntry, groups: &Range<u64>) -> u64 {
    groups
        .end
        .saturating_mul(CHUNK_GROUP_BYTES)
        .min(entry.bytes)
        .saturating_sub(groups.start.saturating_mul(CHUNK_GROUP_BYTES))
}

/// The chaining value of one leaf (a chunk group, or the whole content when it is a single
/// group) of a partition's bao tree: what bao-tree computes, from blake3's hazmat API.
fn leaf_hash(start_chunk: ChunkNum, data: &[u8], is_root: bool) -> blake3::Hash {
    use blake3::hazmat::HasherExt;
    if is_root {
        return blake3::hash(data);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(start_chunk.0 * 1024);
    hasher.update(data);
    blake3::Hash::from(hasher.finalize_non_root())
}

/// The chaining value of an interior node from its children's.
fn parent_hash(left: &blake3::Hash, right: &blake3::Hash, is_root: bool) -> blake3::Hash {
    use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, Mode};
    if is_root {
        merge_subtrees_root(left.as_bytes(), right.as_bytes(), Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(
            left.as_bytes(),
            right.as_bytes(),
            Mode::Hash,
        ))
    }
}

/// Builds a partition's bao outboard (the pre-order hash pairs above its 16 KiB groups, what
/// bao-tree's `PreOrderOutboard` holds) and its root from the content pushed in any pieces, in
/// one pass. Why not bao-tree's `CreateOutboard`: it pulls from a reader, and a publisher's
/// partitions are pushed by the partitioner; hashing them a second time just for the outboard
/// cost a whole blake3 pass over the content (tested byte for byte against bao-tree).
/// Memory: 32 bytes per group until `finish`, then the outboard (64 bytes per group).
pub struct OutboardBuilder {
    group: blake3::Hasher,
    /// Bytes pushed into `group` so far.
    group_bytes: u64,
    /// Chaining values of the finished groups (non-root).
    leaves: Vec<blake3::Hash>,
    total_bytes: u64,
}

impl Default for OutboardBuilder {
    fn default() -> Self {
        OutboardBuilder::new()
    }
}

impl OutboardBuilder {
    pub fn new() -> OutboardBuilder {
        OutboardBuilder {
            group: blake3::Hasher::new(),
            group_bytes: 0,
            leaves: Vec::new(),
            total_bytes: 0,
        }
    }

    /// Appends content.
    pub fn push(&mut self, mut piece: &[u8]) {
        use blake3::hazmat::HasherExt;
        while !piece.is_empty() {
            if self.group_bytes == CHUNK_GROUP_BYTES {
                // A full group with more content after it: not the root, so a chaining value.
                self.leaves
                    .push(blake3::Hash::from(self.group.finalize_non_root()));
                self.group = blake3::Hasher::new();
                self.group
                    .set_input_offset(self.leaves.len() as u64 * CHUNK_GROUP_BYTES);
                self.group_bytes = 0;
            }
            let take = ((CHUNK_GROUP_BYTES - self.group_bytes) as usize).min(piece.len());
            self.group.update(&piece[..take]);
            self.group_bytes += take as u64;
            self.total_bytes += take as u64;
            piece = &piece[take..];
        }
    }

    /// The content's blake3 hash (the bao root) and its outboard's hash pairs in pre-order.
    pub fn finish(self) -> (Hash, Vec<u8>) {
        if self.leaves.is_empty() {
            // One group (or none): the group is the whole tree, its hash the root, and there
            // are no parent pairs.
            return (*self.group.finalize().as_bytes(), Vec::new());
        }
        let mut leaves = self.leaves;
        leaves.push(blake3::Hash::from(
            blake3::hazmat::HasherExt::finalize_non_root(&self.group),
        ));
        let tree = BaoTree::new(self.total_bytes, BLOCK_SIZE);
        let mut pairs = Vec::with_capacity(tree.outboard_size() as usize);
        let root = pre_order_pairs(&leaves, true, &mut pairs);
        debug_assert_eq!(pairs.len() as u64, tree.outboard_size());
        (*root.as_bytes(), pairs)
    }
}

/// Writes the hash pairs of the subtree over `leaves` in pre-order (parent before its left
/// subtree before its right subtree) and returns its chaining value. blake3's trees are left
/// full: the left subtree takes the largest power of two of groups below the count. Depth is
/// bounded by the tree's height (≤ 26 levels for `PARTITION_BYTES_MAX`).
fn pre_order_pairs(leaves: &[blake3::Hash], is_root: bool, out: &mut Vec<u8>) -> blake3::Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    // The largest power of two below the count (≥ 2 here).
    let split = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
    let at = out.len();
    out.extend_from_slice(&[0u8; 64]);
    let left = pre_order_pairs(&leaves[..split], false, out);
    let right = pre_order_pairs(&leaves[split..], false, out);
    out[at..at + 32].copy_from_slice(left.as_bytes());
    out[at + 32..at + 64].copy_from_slice(right.as_bytes());
    parent_hash(&left, &right, is_root)
}

/// Hashes still expected while walking a tree in pre-order: one per tree level at most, and
/// a tree of `PARTITION_BYTES_MAX` in 16 KiB groups has 26 levels.
const HASH_STACK_DEPTH_MAX: usize = 64;

/// The verifying half of a walk over bao-tree's pre-order iterator, shared by the encoder and
/// the decoder: every item the iterator yields consumes the hash expected for it, and a
/// parent that verifies queues the hashes of the children the walk will visit.
struct ExpectedHashes(Vec<blake3::Hash>);

impl ExpectedHashes {
    fn new(root: blake3::Hash) -> ExpectedHashes {
        let mut stack = Vec::with_capacity(HASH_STACK_DEPTH_MAX);
        stack.push(root);
        ExpectedHashes(stack)
    }

    /// Checks a parent's hash pair.
    fn parent(
        &mut self,
        node: bao_tree::TreeNode,
        is_root: bool,
        (left, right): (bool, bool),
        (l, r): (blake3::Hash, blake3::Hash),
    ) -> Result<(), ChunkError> {
        // An empty stack would be a walk bao-tree's decoder also ends early (and then fails
        // its length check).
        let expected = self.0.pop().ok_or(ChunkError::Malformed)?;
        if parent_hash(&l, &r, is_root) != expected {
            return Err(ChunkError::HashMismatch {
                group: node.chunk_range().start.0 / CHUNKS_PER_GROUP,
            });
        }
        if self.0.len() + 2 > HASH_STACK_DEPTH_MAX {
            return Err(ChunkError::Malformed);
        }
        if right {
            self.0.push(r);
        }
        if left {
            self.0.push(l);
        }
        Ok(())
    }

    /// Checks a leaf's content.
    fn leaf(
        &mut self,
        start_chunk: ChunkNum,
        data: &[u8],
        is_root: bool,
    ) -> Result<(), ChunkError> {
        let expected = self.0.pop().ok_or(ChunkError::Malformed)?;
        if leaf_hash(start_chunk, data, is_root) != expected {
            return Err(ChunkError::HashMismatch {
                group: start_chunk.0 / CHUNKS_PER_GROUP,
            });
        }
        Ok(())
    }
}

/// Like [`decode_groups`], but hands the content to `sink` piece by piece, in order, so a
/// shell can place it where it will be written (no intermediate buffer). On an error, what
/// was already handed over must be discarded: only an `Ok` means all of it verified.
///
/// Verifies in place: each group is hashed where it lies in `encoded` and handed to `sink`
/// as a slice of it. Why not bao-tree's `DecodeResponseIter`: it reads every group into a
/// freshly allocated, zero-filled buffer first, a copy, a fill and an allocation per 16 KiB
/// that cost a receiver more than the hashing. The walk is the same (bao-tree's pre-order
/// iterator, the same checks) and the tests hold it to bao-tree's decoder.
pub fn decode_groups_with(
    entry: &PartitionEntry,
    groups: Range<u64>,
    encoded: &[u8],
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ChunkError> {
    check_groups(entry, &groups)?;
    let tree = BaoTree::new(entry.bytes, BLOCK_SIZE);
    let ranges = chunk_ranges(&groups);
    let mut rest = encoded;
    let mut decoded = 0u64;
    let base = groups.start.saturating_mul(CHUNK_GROUP_BYTES);
    let mut expected = ExpectedHashes::new(blake3::Hash::from_bytes(entry.content_hash));
    for item in tree.ranges_pre_order_chunks_iter_ref(&ranges, 0) {
        match item {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let Some((pair, tail)) = rest.split_first_chunk::<64>() else {
                    return Err(ChunkError::Malformed);
                };
                rest = tail;
                let (l, r) = pair.split_at(32);
                let l = blake3::Hash::from_slice(l).map_err(|_| ChunkError::Malformed)?;
                let r = blake3::Hash::from_slice(r).map_err(|_| ChunkError::Malformed)?;
                expected.parent(node, is_root, (left, right), (l, r))?;
            }
            BaoChunk::Leaf {
                start_chunk,
                size,
                is_root,
                ..
            } => {
                if rest.len() < size {
                    return Err(ChunkError::Malformed);
                }
                let (data, tail) = rest.split_at(size);
                rest = tail;
                expected.leaf(start_chunk, data, is_root)?;
                if start_chunk.to_bytes() != base + decoded {
                    return Err(ChunkError::Malformed);
                }
                decoded += data.len() as u64;
                sink(data);
            }
        }
    }
    if !rest.is_empty() {
        return Err(ChunkError::TrailingBytes(rest.len()));
    }
    if decoded != expected_bytes(entry, &groups) {
        return Err(ChunkError::Malformed);
    }
    Ok(())
}

/// Why serving stored groups failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the outboard has no hash pair for tree node {0:?}")]
    MissingHashes(bao_tree::TreeNode),
    #[error("reading stored content: {0}")]
    Read(#[from] std::io::Error),
    /// The stored content of `group` does not hash to what the (verified) hash pairs above it
    /// say: the content is damaged, not the outboard. The shell drops the group from its
    /// index so it is fetched again, and never serves it.
    #[error("stored content of group {group} does not verify against the partition hash")]
    ContentDamaged { group: u64 },
}

/// Encodes `groups` of a partition as a [`ChunkFrame`]'s payload (bao-tree's pre-order range
/// encoding: parent hash pairs interleaved with the groups), validating the content against
/// `outboard` on the way, so a node whose disk corrupted the data does not serve it.
///
/// `read(offset, buf)` fills `buf` with the content at byte `offset`, and is handed the very
/// place in `out` where those bytes go: the content is copied once, by whoever reads it
/// (the kernel, for a file), and hashed there. `out` is overwritten from its start, and grows
/// only where its old length does not reach (so a reused buffer is not zero-filled again);
/// on return its length is the encoding's. The bytes are those of bao-tree's
/// `encode_ranges_validated` (tested).
pub fn encode_groups_into<O: bao_tree::io::sync::Outboard>(
    entry: &PartitionEntry,
    outboard: &O,
    groups: Range<u64>,
    read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    out: &mut Vec<u8>,
) -> Result<(), ServeError> {
    let end = encode_groups_at(entry, outboard, groups, read, out, 0)?;
    out.truncate(end);
    Ok(())
}

/// [`encode_groups_into`] writing from `out[start..]` on, for the next run of a frame that
/// carries several; returns where the encoding ends. Bytes of `out` past that end are left as
/// they were (the caller cuts the frame to length once all its runs are in).
pub fn encode_groups_at<O: bao_tree::io::sync::Outboard>(
    entry: &PartitionEntry,
    outboard: &O,
    groups: Range<u64>,
    mut read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<usize, ServeError> {
    check_groups(entry, &groups)?;
    let tree = outboard.tree();
    if tree.size() != entry.bytes || outboard.root().as_bytes() != &entry.content_hash {
        return Err(ChunkError::ContentMismatch.into());
    }
    let ranges = chunk_ranges(&groups);
    let mut at = start;
    let grow = |out: &mut Vec<u8>, at: usize, n: usize| -> std::ops::Range<usize> {
        if out.len() < at + n {
            out.resize(at + n, 0);
        }
        at..at + n
    };
    let mut expected = ExpectedHashes::new(outboard.root());
    for item in tree.ranges_pre_order_chunks_iter_ref(&ranges, 0) {
        match item {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let (l, r) = outboard
                    .load(node)?
                    .ok_or(ServeError::MissingHashes(node))?;
                expected.parent(node, is_root, (left, right), (l, r))?;
                let place = grow(out, at, 64);
                out[place.start..place.start + 32].copy_from_slice(l.as_bytes());
                out[place.start + 32..place.end].copy_from_slice(r.as_bytes());
                at = place.end;
            }
            BaoChunk::Leaf {
                start_chunk,
                size,
                is_root,
                ..
            } => {
                let place = grow(out, at, size);
                let data = &mut out[place.clone()];
                read(start_chunk.to_bytes(), data)?;
                // Every hash pair above this leaf verified against the root already, so a
                // mismatch here is the content's fault.
                expected
                    .leaf(start_chunk, data, is_root)
                    .map_err(|e| match e {
                        ChunkError::HashMismatch { group } => ServeError::ContentDamaged { group },
                        e => e.into(),
                    })?;
                at = place.end;
            }
        }
    }
    Ok(at)
}
