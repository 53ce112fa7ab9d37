//! Data plane glue between RocksDB and the protocol's chunk format.
//!
//! Adapter note: `backflow_protocol::manifest::PartitionOutboard` takes the whole partition as
//! one in-memory slice. A node must serve partitions far larger than it should hold in memory
//! (a 10 GiB partition), so the node keeps the same bao-tree outboard (pre-order, 16 KiB
//! groups — byte-identical encoding) beside the content file, builds it *streaming* where it
//! is missing, and encodes frames reading only the requested groups, with the protocol's
//! [`backflow_protocol::manifest::encode_groups_into`]. Receivers verify with the protocol's
//! [`backflow_protocol::manifest::decode_groups_with`].

use std::ops::Range;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use backflow_protocol::chunk::{ServeError, BLOCK_SIZE};
use backflow_protocol::endpoint::RunVerdict;
use backflow_protocol::manifest::{
    check_groups, decode_groups_with, encode_groups_at, ChunkError, ChunkFrame, ChunkPart, Hash,
    OutboardBuilder, PartitionEntry, CHUNK_GROUPS_PER_FRAME_MAX, CHUNK_GROUP_BYTES,
};
use backflow_protocol::return_flow::ServePart;
use backflow_protocol::wire::CHUNK_FRAME_BYTES_MAX;
use backflow_topology::RegionCode;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::BaoTree;

use crate::aligned_buf::AlignedBuf;
use crate::publish::OUTBOARD_STORED_BYTES_MIN;
use crate::store::{is_inline, Store, StoredGroups};

/// Outboards kept in memory. An outboard is 64 B per 16 KiB of content (0.4 %), so a
/// thousand typical partitions cost little; when full the cache is simply cleared.
pub const OUTBOARD_CACHE_ENTRIES_MAX: usize = 4_096;

pub type Outboard = PreOrderOutboard<Vec<u8>>;

/// Bytes read per step while building an outboard from stored content.
const OUTBOARD_READ_BYTES: usize = 1 << 20;

/// Stored content that failed verification against its signed hash: groups `groups` of the
/// partition of `region` whose content hash is `content` (`bytes` long); the whole partition
/// when the damaged group is not known. Carried as an error (`anyhow` downcasts to it) from
/// wherever content is verified — serving, export — to the event loop, which drops it from
/// the index so it is fetched again (`runtime`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    pub content: Hash,
    pub bytes: u64,
    pub region: RegionCode,
    pub groups: Range<u64>,
}

impl Damaged {
    /// The whole partition of `entry`.
    pub fn whole(entry: &PartitionEntry) -> Damaged {
        Damaged {
            content: entry.content_hash,
            bytes: entry.bytes,
            region: entry.region,
            groups: 0..entry.groups(),
        }
    }
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the stored partition of {} does not verify against its signed hash (groups {}..{}): it is dropped and fetched again; try again when `status` shows the dataset complete",
            self.region, self.groups.start, self.groups.end
        )
    }
}

impl std::error::Error for Damaged {}

/// The outboard of a stored partition: the one kept beside its content if there is one (its
/// pairs are checked against the content hash as they are served), else built by reading and
/// hashing the content, checked against the entry's hash, and kept for next time (if the
/// partition is large enough for that to pay, see [`OUTBOARD_STORED_BYTES_MIN`]).
pub fn outboard_from_store(store: &Store, entry: &PartitionEntry) -> Result<Outboard> {
    let tree = BaoTree::new(entry.bytes, BLOCK_SIZE);
    let root = blake3::Hash::from_bytes(entry.content_hash);
    if let Some(data) = store.load_outboard(&entry.content_hash, tree.outboard_size())? {
        return Ok(Outboard { root, tree, data });
    }
    let stored = store.open_groups(&entry.content_hash, 0..entry.groups())?;
    let mut builder = OutboardBuilder::new();
    let mut buf = vec![0u8; OUTBOARD_READ_BYTES.min(entry.bytes as usize)];
    let mut at = 0u64;
    while at < entry.bytes {
        let n = (entry.bytes - at).min(buf.len() as u64) as usize;
        stored.read_exact_at(at, &mut buf[..n])?;
        builder.push(&buf[..n]);
        at += n as u64;
    }
    let (hash, data) = builder.finish();
    if hash != entry.content_hash {
        // Which group is unknown without a trusted outboard: the whole partition.
        return Err(Damaged::whole(entry).into());
    }
    if entry.bytes >= OUTBOARD_STORED_BYTES_MIN {
        store.put_outboard(&entry.content_hash, &data)?;
    }
    Ok(Outboard { root, tree, data })
}

/// Encodes `groups` of a stored partition into `out` from `out[at..]` on (the next run of a
/// chunk frame; see [`encode_groups_at`]) and returns where its encoding ends, validating the
/// stored data on the way (a node whose disk corrupted data does not serve it). Each group is
/// read straight into its place in `out` and hashed there.
pub fn encode_groups(
    store: &Store,
    outboard: &Outboard,
    entry: &PartitionEntry,
    groups: Range<u64>,
    out: &mut Vec<u8>,
    at: usize,
) -> Result<usize> {
    let stored = open_run(store, entry, &groups)?;
    encode_read(
        outboard,
        entry,
        groups,
        |offset, buf| stored.read_exact_at(offset, buf),
        out,
        at,
    )
}

/// A run's stored groups, its range checked before any IO.
fn open_run(store: &Store, entry: &PartitionEntry, groups: &Range<u64>) -> Result<StoredGroups> {
    check_groups(entry, groups).map_err(|e| anyhow::anyhow!("partition {}: {e}", entry.region))?;
    store.open_groups(&entry.content_hash, groups.clone())
}

/// [`encode_groups_at`] reading the run's content with `read` (partition offsets), its
/// errors as the node reports them (content that does not verify is [`Damaged`]).
fn encode_read(
    outboard: &Outboard,
    entry: &PartitionEntry,
    groups: Range<u64>,
    read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    out: &mut Vec<u8>,
    at: usize,
) -> Result<usize> {
    encode_groups_at(entry, outboard, groups, read, out, at).map_err(|e| match e {
        ServeError::ContentDamaged { group } => Damaged {
            content: entry.content_hash,
            bytes: entry.bytes,
            region: entry.region,
            groups: group..group + 1,
        }
        .into(),
        e => anyhow::anyhow!("encoding partition {}: {e}", entry.region),
    })
}

/// Runs of a frame that lie back to back in one segment, read with one read each, straight
/// into the frame where their encodings go: a national dataset's frame carries up to 64
/// townships of ~12 KB, which its publisher wrote one after another, and the encoding of a
/// partition of one group is its bytes (no hash pairs). Why: one `pread` per township was a
/// system call per 12 KB and — the publisher's segments being written past the page cache —
/// one device read each; reading into a scratch buffer first cost a zero-fill and a copy of
/// every byte served (`perf`, session 30).
///
/// Places run `k` at `Σ encoded_len` of the runs before it, which is where it lands if every
/// run before it is encoded (see [`serve_frame`]). Returns, per run, whether its bytes were
/// placed (`false`: read on its own). Only runs whose encoding is exactly their bytes are
/// placed; `out` grows to cover what is read.
fn read_adjacent(
    parts: &[ServePart],
    opened: &[Result<StoredGroups>],
    out: &mut Vec<u8>,
) -> Vec<bool> {
    let mut placed = vec![false; opened.len()];
    let mut planned = Vec::with_capacity(parts.len());
    let mut pos = 0u64;
    for p in parts {
        planned.push(pos);
        pos = pos.saturating_add(p.encoded_len);
    }
    // A run in a segment whose encoding is its bytes.
    let raw_span = |k: usize| -> Option<(u32, Range<u64>)> {
        let (segment, span) = opened[k].as_ref().ok()?.segment_span()?;
        (span.end - span.start == parts[k].encoded_len).then_some((segment, span))
    };
    let mut i = 0;
    while i < opened.len() {
        let Some((segment, first)) = raw_span(i) else {
            i += 1;
            continue;
        };
        // The longest run of spans each starting where the one before ended; within a
        // frame's bytes (a bound, though the index and the plan are ours).
        let mut end = first.end;
        let mut j = i + 1;
        while j < opened.len() {
            match raw_span(j) {
                Some((s, r)) if s == segment && r.start == end => {
                    end = r.end;
                    j += 1;
                }
                _ => break,
            }
        }
        let (at, len) = (planned[i], end - first.start);
        if j - i >= 2 && at.saturating_add(len) <= FRAME_BUF_BYTES_MAX as u64 {
            let (at, len) = (at as usize, len as usize);
            // A pooled buffer keeps its length: zero-filled only where it never reached.
            if out.len() < at + len {
                out.resize(at + len, 0);
            }
            let read = opened[i]
                .as_ref()
                .map(|s| s.read_segment_at(first.start, &mut out[at..at + len]));
            // Otherwise each is read on its own, failing (or not) on its own.
            if matches!(read, Ok(Ok(()))) {
                placed[i..j].fill(true);
            }
        }
        i = j;
    }
    placed
}

/// Encodes `parts` (an `Output::ServeChunks`) into one chunk frame, each run appended to the
/// pooled payload buffer where the one before it ended. A run that cannot be encoded is left
/// out (the receiver asks again and, after a while, falls back) and its outboard forgotten, as
/// that may be what is damaged; the others still go. Returns the frame (`None` if no run could
/// be encoded) and one failure per run left out. `tamper`: the multi-host fault switch.
pub fn serve_frame(
    store: &Store,
    cache: &OutboardCache,
    manifest: Hash,
    parts: &[ServePart],
    tamper: bool,
) -> (Option<ChunkFrame>, Vec<ServeFailure>) {
    let mut frame = ChunkFrame {
        manifest,
        parts: Vec::with_capacity(parts.len()),
        // Returned to the pool by the writer once sent.
        encoded: frame_buf(),
    };
    let mut failures = Vec::new();
    // Each run's place looked up once; adjacent ones in a segment read together, into place.
    let opened: Vec<Result<StoredGroups>> = parts
        .iter()
        .map(|p| open_run(store, &p.entry, &p.groups))
        .collect();
    let placed = read_adjacent(parts, &opened, &mut frame.encoded);
    // Placed bytes are where their run's encoding goes only while every run before it was
    // encoded at its planned length; after a run is left out the rest are read one by one.
    let mut in_plan = true;
    let mut at = 0;
    for ((p, stored), placed) in parts.iter().zip(opened).zip(placed) {
        let in_place = placed && in_plan;
        let run_start = p.groups.start * CHUNK_GROUP_BYTES;
        let encoded = cache.get_or_build(store, &p.entry).and_then(|ob| {
            let stored = stored?;
            let read = |offset: u64, buf: &mut [u8]| {
                if !in_place {
                    return stored.read_exact_at(offset, buf);
                }
                // The run's one leaf, which `read_adjacent` put exactly here: nothing to read
                // (the encoder hashes it where it lies).
                if offset == run_start && buf.len() as u64 == p.encoded_len {
                    Ok(())
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a placed run read other than whole",
                    ))
                }
            };
            encode_read(
                &ob,
                &p.entry,
                p.groups.clone(),
                read,
                &mut frame.encoded,
                at,
            )
        });
        let end = match encoded {
            Ok(end) => end,
            Err(e) => {
                in_plan = false;
                let mut message = format!("serving chunks: {e:#}");
                if let Err(f) = cache.forget(store, &p.entry.content_hash) {
                    message += &format!(" (and forgetting its outboard: {f:#})");
                }
                failures.push(ServeFailure {
                    damaged: e.downcast_ref::<Damaged>().cloned(),
                    message,
                });
                continue;
            }
        };
        in_plan &= (end - at) as u64 == p.encoded_len;
        if tamper && end > at {
            // The last byte of a run is content of its last group.
            frame.encoded[end - 1] ^= 0x01;
        }
        frame.parts.push(ChunkPart {
            region: p.entry.region,
            first_group: p.groups.start,
            group_count: p.groups.end - p.groups.start,
            encoded_len: (end - at) as u32,
        });
        at = end;
    }
    frame.encoded.truncate(at);
    if frame.parts.is_empty() {
        recycle_frame_buf(frame.encoded);
        return (None, failures);
    }
    (Some(frame), failures)
}

/// A run [`serve_frame`] left out: why, and the content to drop if it did not verify.
#[derive(Debug)]
pub struct ServeFailure {
    pub message: String,
    pub damaged: Option<Damaged>,
}

/// What became of a received chunk frame's runs (see [`receive_frame`]).
#[derive(Debug, Default)]
pub struct FrameVerdict {
    /// Each planned run, in frame order: `(partition region, groups, verdict)`.
    pub runs: Vec<(RegionCode, Range<u64>, RunVerdict)>,
    /// Storing failed: nothing of the frame is stored.
    pub failed: Option<String>,
}

/// Verifies each `expected` run of a received frame where it lies in `received` (`(run, the
/// entry it must verify against, where its encoding lies)`) and stores the verified ones in
/// one batch: their index entries (and small partitions' content) land together, after any
/// content files were written. Only verified bytes reach the store.
pub fn receive_frame(
    store: &Store,
    received: &[u8],
    expected: Vec<(ChunkPart, PartitionEntry, Range<usize>)>,
) -> FrameVerdict {
    let mut verdict = FrameVerdict::default();
    let mut batch = store.batch();
    // Whole small partitions, decoded back to back into one aligned buffer for one append to
    // the receiving segment (see `store::segment`): a national dataset's frame carries up to
    // 64 of them. Sized for all of them (they decode to at most what the frame carried), and
    // reused per thread (`AlignedBuf`): a fresh megabyte per frame is page faults.
    let whole_small = |part: &ChunkPart, entry: &PartitionEntry| {
        entry.bytes > 0 && is_inline(entry.bytes) && part.groups() == (0..entry.groups())
    };
    let packed_bytes: u64 = expected
        .iter()
        .filter(|(part, entry, _)| whole_small(part, entry))
        .map(|(_, entry, _)| entry.bytes)
        .sum();
    let mut packed = AlignedBuf::with_capacity(packed_bytes.min(received.len() as u64) as usize);
    let mut packed_parts: Vec<(Hash, Range<usize>)> = Vec::new();
    for (part, entry, at) in expected {
        let groups = part.groups();
        if whole_small(&part, &entry) {
            let start = packed.len();
            // A verified whole partition is exactly `entry.bytes` long; never past the
            // buffer (a frame whose runs decode to more than it carried is malformed).
            let room = (entry.bytes as usize).min(packed.capacity() - start);
            let decoded = decode_bounded(&entry, &groups, &received[at], room, |p| {
                packed.extend_from_slice(p)
            });
            let run = match decoded {
                Ok(()) => {
                    packed_parts.push((entry.content_hash, start..packed.len()));
                    RunVerdict::Stored
                }
                Err(e) => {
                    packed.truncate(start);
                    RunVerdict::rejected(&groups, &e)
                }
            };
            verdict.runs.push((part.region, groups, run));
            continue;
        }
        // Decoded straight into the (aligned, for `O_DIRECT`) buffer that is written.
        let room = (part.group_count.min(CHUNK_GROUPS_PER_FRAME_MAX) * CHUNK_GROUP_BYTES) as usize;
        let mut buf = AlignedBuf::with_capacity(room);
        let decoded = decode_bounded(&entry, &groups, &received[at], room, |p| {
            buf.extend_from_slice(p)
        });
        let rejected = match decoded {
            Ok(()) => {
                let staged = store.stage_groups(
                    &entry.content_hash,
                    entry.bytes,
                    groups.start,
                    &mut buf,
                    &mut batch,
                );
                if let Err(e) = staged {
                    verdict.failed = Some(format!("storing groups: {e:#}"));
                    return verdict;
                }
                verdict.runs.push((part.region, groups, RunVerdict::Stored));
                continue;
            }
            Err(e) => RunVerdict::rejected(&groups, &e),
        };
        verdict.runs.push((part.region, groups, rejected));
    }
    let staged = store.stage_received(&mut packed, &packed_parts, &mut batch);
    if let Err(e) = staged {
        verdict.failed = Some(format!("storing groups: {e:#}"));
        return verdict;
    }
    if verdict
        .runs
        .iter()
        .any(|(_, _, v)| *v == RunVerdict::Stored)
    {
        if let Err(e) = store.write(batch) {
            verdict.failed = Some(format!("storing groups: {e:#}"));
        }
    }
    verdict
}

/// Verifies a run where it lies in `encoded` and hands its content to `push`, at most `room`
/// bytes: a run yielding more than the buffer it is decoded into can hold is malformed, not
/// a panic or an allocation. On an error what was pushed must be discarded.
fn decode_bounded(
    entry: &PartitionEntry,
    groups: &Range<u64>,
    encoded: &[u8],
    room: usize,
    mut push: impl FnMut(&[u8]),
) -> Result<(), ChunkError> {
    let (mut pushed, mut overflow) = (0usize, false);
    decode_groups_with(entry, groups.clone(), encoded, |piece| {
        if pushed + piece.len() <= room {
            pushed += piece.len();
            push(piece);
        } else {
            overflow = true;
        }
    })?;
    if overflow {
        return Err(ChunkError::Malformed);
    }
    Ok(())
}

/// Frame buffers kept for reuse, process-wide. A frame's buffer crosses tasks and threads (a
/// served payload goes from the blocking pool to the peer's writer task; a received frame
/// from the stream reader to the blocking pool), so a thread-local pool would not see it
/// again. Why pool: allocating and zero-filling a megabyte per frame showed up in profiles.
static FRAME_BUFS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept: a transfer window (1024 groups) is 16 frames, and a node has a few peers.
/// What is beyond this is freed.
const FRAME_BUFS_POOLED_MAX: usize = 32;
/// Only frame-sized buffers are kept (a chunk frame is ≤ `CHUNK_FRAME_BYTES_MAX`).
const FRAME_BUF_BYTES_MAX: usize = CHUNK_FRAME_BYTES_MAX + 4096;

/// A buffer for one frame, reused if the pool has one. Its contents are stale: callers
/// overwrite what they read.
pub fn frame_buf() -> Vec<u8> {
    // A new one has a frame's capacity: grown piece by piece it was reallocated and copied.
    lock_frame_bufs()
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(CHUNK_FRAME_BYTES_MAX))
}

/// Returns a frame buffer for reuse.
pub fn recycle_frame_buf(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > FRAME_BUF_BYTES_MAX {
        return;
    }
    let mut pool = lock_frame_bufs();
    if pool.len() < FRAME_BUFS_POOLED_MAX {
        pool.push(buf);
    }
}

fn lock_frame_bufs() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    // Only buffers are behind this lock; a panic elsewhere leaves nothing inconsistent.
    FRAME_BUFS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small shared cache of outboards by content hash.
#[derive(Clone, Default)]
pub struct OutboardCache {
    inner: Arc<Mutex<std::collections::HashMap<Hash, Arc<Outboard>>>>,
    /// Held while building: concurrent requests for a partition whose outboard is not cached
    /// yet must not each read the whole partition (a thundering herd on a 1 GiB partition).
    building: Arc<Mutex<()>>,
}

impl OutboardCache {
    pub fn get_or_build(&self, store: &Store, entry: &PartitionEntry) -> Result<Arc<Outboard>> {
        if entry.groups() <= 1 {
            // A one-group partition (a township's ~12 KB of a national dataset) has no
            // interior hashes: its group is checked against the content hash itself as it is
            // encoded. Nothing to read or keep, and 41,352 of them would only churn the cache.
            return Ok(Arc::new(Outboard {
                root: blake3::Hash::from_bytes(entry.content_hash),
                tree: BaoTree::new(entry.bytes, BLOCK_SIZE),
                data: Vec::new(),
            }));
        }
        if let Some(ob) = self.lock().get(&entry.content_hash) {
            return Ok(Arc::clone(ob));
        }
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        // Someone else may have built it while we waited.
        if let Some(ob) = self.lock().get(&entry.content_hash) {
            return Ok(Arc::clone(ob));
        }
        // Built outside the map lock: building may read the whole partition.
        let ob = Arc::new(outboard_from_store(store, entry)?);
        self.insert(entry.content_hash, Arc::clone(&ob));
        Ok(ob)
    }

    /// Forgets a partition's outboard, here and on disk: serving from it failed, and if the
    /// outboard was what is damaged, the next request rebuilds it from the content (which is
    /// checked against the content hash).
    pub fn forget(&self, store: &Store, content: &Hash) -> Result<()> {
        self.lock().remove(content);
        store.delete_outboard(content)
    }

    fn insert(&self, content: Hash, ob: Arc<Outboard>) {
        let mut map = self.lock();
        if map.len() >= OUTBOARD_CACHE_ENTRIES_MAX {
            map.clear();
        }
        map.insert(content, ob);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Hash, Arc<Outboard>>> {
        // A panic while holding this lock leaves only a cache behind; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tests: `len` bytes of content for township 110101001, stored as a publisher stores it.
#[cfg(test)]
pub(crate) fn stored_partition(store: &Store, len: u64) -> (PartitionEntry, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let entry = PartitionEntry {
        region: backflow_topology::RegionCode::parse("110101001").unwrap(),
        content_hash: *blake3::hash(&data).as_bytes(),
        bytes: data.len() as u64,
        records: 1,
        schema_hash: [0; 32],
    };
    let mut loader = crate::publish::GroupLoader::new(store, entry.content_hash, entry.bytes);
    loader.push(&data).unwrap();
    assert_eq!(loader.finish().unwrap(), entry.bytes);
    (entry, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::GroupLoader;
    use backflow_protocol::manifest::{decode_groups, CHUNK_GROUP_BYTES};
    use backflow_topology::RegionCode;
    use bao_tree::io::outboard::PreOrderMemOutboard;

    /// 3 MiB + a short last group, stored as a publisher stores it.
    fn stored(store: &Store) -> (PartitionEntry, Vec<u8>) {
        stored_partition(store, 3 * (1u64 << 20) + 5_000)
    }

    fn serves(
        store: &Store,
        cache: &OutboardCache,
        entry: &PartitionEntry,
        g: Range<u64>,
    ) -> Result<Vec<u8>> {
        let ob = cache.get_or_build(store, entry)?;
        let mut out = frame_buf();
        let end = encode_groups(store, &ob, entry, g.clone(), &mut out, 0)?;
        decode_groups(entry, g, &out[..end]).map_err(|e| anyhow::anyhow!("{e}"))
    }

    #[test]
    fn outboard_is_kept_checked_and_rebuilt_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (entry, data) = stored(&store);
        let g = CHUNK_GROUP_BYTES as usize;
        let reference = PreOrderMemOutboard::create(&data, BLOCK_SIZE).data;
        let obao = dir
            .path()
            .join("chunks")
            .join(format!("{}.obao", hex::encode(entry.content_hash)));

        // Built from the content on first use and kept beside it.
        let cache = OutboardCache::default();
        assert_eq!(
            serves(&store, &cache, &entry, 0..64).unwrap(),
            data[..64 * g]
        );
        assert_eq!(std::fs::read(&obao).unwrap(), reference);

        // A damaged outboard on disk is loaded (it is only a cache), then caught by the checks
        // while serving: no group goes out. Forgetting it rebuilds it from the content.
        let mut bad = reference.clone();
        bad[10] ^= 1; // the root's pair: on every group's path
        std::fs::write(&obao, &bad).unwrap();
        let cold = OutboardCache::default();
        assert!(serves(&store, &cold, &entry, 100..164).is_err());
        cold.forget(&store, &entry.content_hash).unwrap();
        assert!(!obao.exists());
        let last = entry.groups() - 1;
        assert_eq!(
            serves(&store, &cold, &entry, last - 2..last + 1).unwrap(),
            data[(last as usize - 2) * g..]
        );
        assert_eq!(std::fs::read(&obao).unwrap(), reference);

        // An outboard of the wrong length is ignored and rebuilt.
        std::fs::write(&obao, &reference[..100]).unwrap();
        let cold = OutboardCache::default();
        assert_eq!(
            serves(&store, &cold, &entry, 5..6).unwrap(),
            data[5 * g..6 * g]
        );
        assert_eq!(std::fs::read(&obao).unwrap(), reference);

        // Rotten content is not served: the group that rotted fails and is named; the others
        // still serve.
        let content = dir
            .path()
            .join("chunks")
            .join(hex::encode(entry.content_hash));
        let mut rotten = std::fs::read(&content).unwrap();
        rotten[70 * g + 3] ^= 1;
        std::fs::write(&content, &rotten).unwrap();
        let ob = cold.get_or_build(&store, &entry).unwrap();
        let mut out = Vec::new();
        let err = encode_groups(&store, &ob, &entry, 64..128, &mut out, 0).unwrap_err();
        // Named as the content's damage, for the event loop to drop and fetch again.
        let damaged = err.downcast_ref::<Damaged>().expect("a Damaged error");
        assert_eq!(damaged.groups, 70..71, "{err:#}");
        assert_eq!(damaged.content, entry.content_hash);
        assert!(format!("{err:#}").contains("groups 70..71"), "{err:#}");
        assert_eq!(
            serves(&store, &cold, &entry, 0..64).unwrap(),
            data[..64 * g]
        );
        // Rebuilding from rotten content fails rather than vouch for it.
        cold.forget(&store, &entry.content_hash).unwrap();
        let err = cold.get_or_build(&store, &entry).unwrap_err();
        assert_eq!(err.downcast_ref::<Damaged>(), Some(&Damaged::whole(&entry)));
    }

    /// Small partitions, stored inline in the index: several runs packed into one frame's
    /// buffer one after another decode to their content; a one-group partition needs no
    /// outboard; rotten inline content is refused when served.
    #[test]
    fn small_partitions_pack_into_one_buffer_and_rot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = OutboardCache::default();
        let mut parts = Vec::new();
        for (i, len) in [12_000usize, 1, 16_384, 40_000, 100_000]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let entry = PartitionEntry {
                region: RegionCode::parse("110101001").unwrap(),
                content_hash: *blake3::hash(&data).as_bytes(),
                bytes: len as u64,
                records: 1,
                schema_hash: [0; 32],
            };
            let mut loader = GroupLoader::new(&store, entry.content_hash, entry.bytes);
            loader.push(&data).unwrap();
            loader.finish().unwrap();
            assert!(
                !store.content_path(&entry.content_hash).exists(),
                "inline, no file"
            );
            parts.push((entry, data));
        }
        // Packed back to back into one (stale, reused) buffer, as a chunk frame is.
        let mut out = vec![0xAA; 3 << 20];
        let mut at = 0;
        let mut runs = Vec::new();
        for (entry, _) in &parts {
            let ob = cache.get_or_build(&store, entry).unwrap();
            let groups = 0..entry.groups();
            let end = encode_groups(&store, &ob, entry, groups.clone(), &mut out, at).unwrap();
            runs.push(at..end);
            at = end;
        }
        for ((entry, data), run) in parts.iter().zip(runs) {
            let back = decode_groups(entry, 0..entry.groups(), &out[run]).unwrap();
            assert_eq!(&back, data);
        }
        // Rot in the index value of a one-group partition is caught while encoding.
        let (entry, data) = &parts[0];
        let mut value = (data.len() as u32).to_le_bytes().to_vec();
        value.extend_from_slice(data);
        value[4 + 100] ^= 1;
        store
            .put(
                crate::store::CF_CHUNKS,
                &crate::store::chunk_key(&entry.content_hash, 0),
                &value,
            )
            .unwrap();
        let ob = cache.get_or_build(&store, entry).unwrap();
        let err = encode_groups(&store, &ob, entry, 0..1, &mut out, 0).unwrap_err();
        assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    }

    /// The runs of one frame that lie back to back in a segment (a publisher's townships) are
    /// served from one read: every run decodes to its content, in frame order, around a run
    /// stored elsewhere; a rotten one among them is left out and named, the rest still go.
    #[test]
    fn adjacent_runs_in_a_segment_are_served_together_and_rot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = OutboardCache::default();
        let entry_of = |data: &[u8]| PartitionEntry {
            region: RegionCode::parse("110101001").unwrap(),
            content_hash: *blake3::hash(data).as_bytes(),
            bytes: data.len() as u64,
            records: 1,
            schema_hash: [0; 32],
        };
        let datas: Vec<Vec<u8>> = [12_000usize, 1, 16_384, 40_000, 9_999]
            .into_iter()
            .enumerate()
            .map(|(i, len)| (0..len).map(|b| (b * 13 + i) as u8).collect())
            .collect();
        let mut w = crate::store::segment::SegmentWriter::new(&store).unwrap();
        let refs: Vec<(Hash, &[u8])> = datas
            .iter()
            .map(|d| (entry_of(d).content_hash, d.as_slice()))
            .collect();
        w.store(&refs).unwrap();
        w.finish().unwrap();
        // One stored on its own (a content file) in the middle of the frame.
        let (alone, alone_data) = stored(&store);
        let mut parts: Vec<(PartitionEntry, Range<u64>, Vec<u8>)> = datas
            .iter()
            .map(|d| (entry_of(d), 0..entry_of(d).groups(), d.clone()))
            .collect();
        parts.insert(
            2,
            (
                alone,
                1..3,
                alone_data[CHUNK_GROUP_BYTES as usize..3 * CHUNK_GROUP_BYTES as usize].to_vec(),
            ),
        );
        let serve_parts: Vec<ServePart> = parts
            .iter()
            .map(|(entry, groups, _)| ServePart {
                entry: *entry,
                groups: groups.clone(),
                encoded_len: 0,
            })
            .collect();
        let check = |frame: &ChunkFrame, expect: &[&(PartitionEntry, Range<u64>, Vec<u8>)]| {
            assert_eq!(frame.parts.len(), expect.len());
            let mut at = 0;
            for (part, (entry, groups, data)) in frame.parts.iter().zip(expect) {
                let run = &frame.encoded[at..at + part.encoded_len as usize];
                assert_eq!(&decode_groups(entry, groups.clone(), run).unwrap(), data);
                at += part.encoded_len as usize;
            }
            assert_eq!(at, frame.encoded.len());
        };
        let (frame, failures) = serve_frame(&store, &cache, [9; 32], &serve_parts, false);
        assert!(failures.is_empty(), "{failures:?}");
        check(&frame.unwrap(), &parts.iter().collect::<Vec<_>>());

        // Rot in the fourth segment run: it alone is left out, as damaged.
        let seg = dir
            .path()
            .join("chunks")
            .join("segments")
            .join("00000001.seg");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[12_000 + 1 + 16_384 + 500] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        let (frame, failures) = serve_frame(&store, &cache, [9; 32], &serve_parts, false);
        assert_eq!(failures.len(), 1, "{failures:?}");
        let damaged = failures[0].damaged.as_ref().expect("named as damaged");
        assert_eq!(damaged.content, parts[4].0.content_hash);
        let rest: Vec<_> = parts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, p)| p)
            .collect();
        check(&frame.unwrap(), &rest);
    }
}
