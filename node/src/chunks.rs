//! Data plane glue between RocksDB and the protocol's chunk format.
//!
//! Adapter note: `backflow_protocol::manifest::PartitionOutboard` takes the whole partition as
//! one in-memory slice. A node must serve partitions far larger than it should hold in memory
//! (a 10 GiB partition), so the node builds the same bao-tree outboard (pre-order, 16 KiB
//! groups — byte-identical encoding) *streaming* from RocksDB, and encodes frames reading only
//! the requested groups. Receivers still verify with the protocol's
//! [`backflow_protocol::manifest::decode_groups`]; the sender side is the only adapter.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use backflow_protocol::manifest::{
    Hash, PartitionEntry, CHUNK_GROUPS_PER_FRAME_MAX, CHUNK_GROUP_BYTES,
};
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::{encode_ranges_validated, CreateOutboard, ReadAt};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};

use crate::store::{AlignedBuf, ContentReader, Store};

/// Same block size as the protocol: 16 KiB chunk groups (chunk log 4).
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
const CHUNKS_PER_GROUP: u64 = 16;

/// Outboards kept in memory. An outboard is 64 B per 16 KiB of content (0.4 %), so a
/// thousand typical partitions cost little; when full the cache is simply cleared.
pub const OUTBOARD_CACHE_ENTRIES_MAX: usize = 4_096;

/// Reads a stored partition by position (what bao-tree's encoder needs).
struct StoredContent<'s> {
    reader: ContentReader<'s>,
}

impl ReadAt for StoredContent<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reader
            .read_at(pos, buf)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// A range of a partition's content held in memory, addressed by partition offset.
struct SliceAt<'b> {
    base: u64,
    bytes: &'b [u8],
}

impl ReadAt for SliceAt<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(at) = pos.checked_sub(self.base) else {
            return Err(io::Error::other("read before the loaded groups"));
        };
        let at = (at as usize).min(self.bytes.len());
        let n = (self.bytes.len() - at).min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[at..at + n]);
        Ok(n)
    }
}

/// Sequential reader over a stored partition (for building the outboard in one pass).
struct SequentialContent<'s> {
    inner: StoredContent<'s>,
    pos: u64,
    len: u64,
}

impl Read for SequentialContent<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.len - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read_at(self.pos, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "partition content missing from the store",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

pub type Outboard = PreOrderOutboard<Vec<u8>>;

/// Builds the outboard of a stored partition, streaming; checks it against the entry's hash.
pub fn outboard_from_store(store: &Store, entry: &PartitionEntry) -> Result<Outboard> {
    let reader = SequentialContent {
        inner: StoredContent {
            reader: store.content_reader(&entry.content_hash)?,
        },
        pos: 0,
        len: entry.bytes,
    };
    let ob = Outboard::create_sized(reader, entry.bytes, BLOCK_SIZE)?;
    if ob.root.as_bytes() != &entry.content_hash {
        bail!("stored partition {} does not match its hash", entry.region);
    }
    Ok(ob)
}

/// Builds an outboard from any reader of `size` bytes (the publisher, from its spill data).
pub fn outboard_from_reader(reader: impl Read, size: u64) -> Result<Outboard> {
    Ok(Outboard::create_sized(reader, size, BLOCK_SIZE)?)
}

/// Encodes `groups` of a stored partition as a chunk frame's payload, validating the stored
/// data on the way (a node whose disk corrupted data does not serve it).
pub fn encode_groups(
    store: &Store,
    outboard: &Outboard,
    entry: &PartitionEntry,
    groups: Range<u64>,
) -> Result<Vec<u8>> {
    if groups.start >= groups.end
        || groups.end > entry.groups()
        || groups.end - groups.start > CHUNK_GROUPS_PER_FRAME_MAX
    {
        bail!("bad group range {groups:?} for partition {}", entry.region);
    }
    let ranges = ChunkRanges::from(
        ChunkNum(groups.start * CHUNKS_PER_GROUP)..ChunkNum(groups.end * CHUNKS_PER_GROUP),
    );
    let mut out =
        Vec::with_capacity(((groups.end - groups.start) * (CHUNK_GROUP_BYTES + 128)) as usize);
    // The groups' bytes in one (direct) read; bao-tree then reads from memory.
    let mut buf =
        AlignedBuf::with_capacity(((groups.end - groups.start) * CHUNK_GROUP_BYTES) as usize);
    store.read_groups(&entry.content_hash, groups.clone(), &mut buf)?;
    let data = SliceAt {
        base: groups.start * CHUNK_GROUP_BYTES,
        bytes: buf.as_slice(),
    };
    encode_ranges_validated(data, outboard, &ranges, &mut out)
        .map_err(|e| anyhow::anyhow!("encoding partition {}: {e}", entry.region))?;
    Ok(out)
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
        if let Some(ob) = self.lock().get(&entry.content_hash) {
            return Ok(Arc::clone(ob));
        }
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        // Someone else may have built it while we waited.
        if let Some(ob) = self.lock().get(&entry.content_hash) {
            return Ok(Arc::clone(ob));
        }
        // Built outside the map lock: building reads the whole partition.
        let ob = Arc::new(outboard_from_store(store, entry)?);
        self.insert(entry.content_hash, Arc::clone(&ob));
        Ok(ob)
    }

    pub fn insert(&self, content: Hash, ob: Arc<Outboard>) {
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

/// The tree shape of a partition (exposed for tests).
pub fn tree_of(bytes: u64) -> BaoTree {
    BaoTree::new(bytes, BLOCK_SIZE)
}
