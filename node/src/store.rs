//! Storage: RocksDB for every record, plain files for partition content.
//!
//! | CF          | key                                      | value                          |
//! |-------------|------------------------------------------|--------------------------------|
//! | `catalog`   | caller-defined (origin, seq)             | encoded catalog records        |
//! | `manifests` | manifest hash (32 B)                     | encoded `StoredManifest`       |
//! | `chunks`    | content hash ‖ group (40 B)              | the group's length (u32 LE), then, for a small partition, its bytes or its place in a segment |
//! | `receipts`  | manifest hash ‖ region                   | encoded receipt                |
//! | `state`     | caller-defined                           | protocol / node state          |
//! | `ledger`    | see [`crate::ledger`]                    | compliance ledger (Art. 29)    |
//!
//! The `chunks` CF is the *index* of verified chunk groups. A large partition's bytes live in
//! one file per partition content, `<db>/chunks/<content hash hex>`, at offset
//! `group × 16 KiB`. Why not RocksDB values: a value is copied into the WAL, the memtable and
//! a blob file on flush — three page-cache writes per byte, which on this kind of machine cost
//! more CPU than the whole network path (perf: ~33 % of a transfer in the kernel's page-cache
//! copy alone). Content files are written with `O_DIRECT` where the file system allows it (DMA
//! from an aligned buffer; no page-cache copy), and read back through the page cache.
//!
//! A *small* partition (≤ [`INLINE_PARTITION_BYTES_MAX`]) is the opposite case: a national
//! dataset is 41,352 partitions of ~12 KB, and a file each cost more than its bytes (create,
//! open, inode, directory entry, and a sync each once writes are made durable). Small
//! partitions are packed into *segment files* ([`segment`]), the index holding a pointer per
//! group: the publisher's in one vectored write per batch, a receiver's — whole partitions
//! verified in one chunk frame — in one append per frame, synced before the frame's index
//! batch lands. (Before, they were RocksDB values: copied into its WAL, its memtable and again
//! into a blob file at flush.) A small partition that arrives in pieces (a run of some of its
//! groups) still keeps its groups in the index entry itself, after the length, as every
//! small partition once did; the `chunks` CF keeps such values ≥ 4 KiB in blob files.
//!
//! Invariants:
//! - a chunk group is written only after it verified against its partition hash (the caller
//!   verifies; [`Store::put_groups`] and [`GroupLoader`](crate::publish) are the only writers);
//! - a group's bytes are *durable* in its file (the file synced, and its directory entry
//!   synced when it was created) before its index entry is written, so after a crash or a
//!   power cut the index names only groups whose bytes are on disk; a group whose bytes were
//!   written but whose index entry was not is simply fetched again (the publisher's bulk load
//!   keeps the same order per publish: every content file synced before the index is flushed);
//! - index entries go to the write-ahead log unsynced, and the log is synced
//!   ([`Store::sync_wal`]) before the node tells anyone what it stores (see `runtime`);
//! - a group that fails verification when served or exported is dropped from the index and
//!   fetched again (`runtime`), so it is never served, exported or receipted;
//! - a group's index entry and the bookkeeping that says it is stored land in one
//!   [`rocksdb::WriteBatch`];
//! - content is only ever read through the index: file ranges the index does not name (holes,
//!   padding after the last group) are never served.
//!
//! Beside a content file may lie its bao outboard, `<content hash hex>.obao` (64 B of hash
//! pairs per 16 KiB group, 0.4 %), so that serving a partition need not read and hash all of
//! it first. It is a cache, trusted for nothing: serving checks every pair it uses against
//! the content hash, and a missing or bad one is rebuilt from the content.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::aligned_buf::AlignedBuf;
use anyhow::{Context, Result};
use backflow_protocol::manifest::{Hash, CHUNK_GROUP_BYTES};
use backflow_topology::RegionCode;
mod groups;
mod index;
pub mod segment;
use groups::GroupData;
pub use groups::StoredGroups;

use index::{index_entry, index_len, Entry, Source};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB,
};

pub const CF_CATALOG: &str = "catalog";
pub const CF_MANIFESTS: &str = "manifests";
pub const CF_CHUNKS: &str = "chunks";
pub const CF_RECEIPTS: &str = "receipts";
/// Delivery attestations (签收), keyed like receipts: (manifest, region).
pub const CF_ATTESTATIONS: &str = "attestations";
pub const CF_STATE: &str = "state";
/// The compliance ledger (合规台账, Art. 29): entries, tree nodes, the signed head.
pub const CF_LEDGER: &str = "ledger";
const CFS: [&str; 7] = [
    CF_CATALOG,
    CF_MANIFESTS,
    CF_CHUNKS,
    CF_RECEIPTS,
    CF_ATTESTATIONS,
    CF_STATE,
    CF_LEDGER,
];

/// A key and its value, as an iterator yields them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Key of one chunk group: the partition's content hash (its blake3 = bao root) and the group
/// index, big-endian so a partition's groups are contiguous and in order. Content-addressed:
/// the key does not depend on the manifest, so the publisher can store a partition before the
/// manifest exists, and an unchanged partition in the next version is not stored twice.
pub fn chunk_key(content: &Hash, group: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(content);
    key[32..].copy_from_slice(&group.to_be_bytes());
    key
}

/// Region as 8 sortable bytes (level in the low bits keeps 4419 ≠ 441900).
pub fn region_key(region: RegionCode) -> [u8; 8] {
    (region.digits() * 8 + region.level().depth() as u64).to_be_bytes()
}

/// Partitions up to this size keep their content in the `chunks` index (see the module docs).
/// 128 KiB (8 groups): a national register's townships average ~12 KB and few reach ten times
/// that; larger partitions are streamed, where a file of their own costs nothing extra.
pub const INLINE_PARTITION_BYTES_MAX: u64 = 128 * 1024;

/// Values of the `chunks` CF at least this large go to blob files (inline content; a bare
/// 4-byte length stays in the LSM tree).
const BLOB_VALUE_BYTES_MIN: u64 = 4096;

/// Whether a partition of `bytes` keeps its groups inline in the index.
pub fn is_inline(partition_bytes: u64) -> bool {
    partition_bytes <= INLINE_PARTITION_BYTES_MAX
}

/// Directory of content files inside the RocksDB directory.
pub const CHUNK_DIR: &str = "chunks";

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    chunk_dir: Arc<PathBuf>,
    /// Whether the file system accepts `O_DIRECT` (tmpfs, for one, does not).
    direct: bool,
    /// Held while a content file is created and its directory synced.
    create_lock: Arc<std::sync::Mutex<()>>,
    /// Small partitions, packed ([`segment`]): the publisher's and received ones.
    segments: Arc<segment::Segments>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        std::fs::create_dir_all(path)?;
        let chunk_dir = path.join(CHUNK_DIR);
        std::fs::create_dir_all(&chunk_dir)
            .with_context(|| format!("creating {}", chunk_dir.display()))?;
        let direct = crate::direct_io::supported(&chunk_dir);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Two cores here; more background jobs only contend.
        opts.set_max_background_jobs(2);
        // Flushes go through the page cache, though a national publish's inline partitions
        // are copied there again at flush (~20 % of the publish's CPU in `perf`): with
        // `use_direct_io_for_flush_and_compaction` the publish ran 171–179 → 212–224 MB/s, but
        // the publisher then served every blob from disk and the `national` return flow took
        // 4.5–5.4 s against 2.9–3.1 s (interleaved, session 16). Delivery comes first.
        let cfs = CFS.iter().map(|&name| {
            let mut cf = Options::default();
            if name == CF_CHUNKS {
                // Small partitions' content (see the module docs): written once more at
                // flush, into blob files; compaction then moves only pointers, and blob files
                // whose partitions were deleted are rewritten by blob GC.
                cf.set_enable_blob_files(true);
                cf.set_min_blob_size(BLOB_VALUE_BYTES_MIN);
                cf.set_enable_blob_gc(true);
            }
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .with_context(|| format!("opening RocksDB at {}", path.display()))?;
        let segments = segment::Segments::open(&chunk_dir, &db)?;
        Ok(Store {
            db: Arc::new(db),
            chunk_dir: Arc::new(chunk_dir),
            direct,
            create_lock: Arc::default(),
            segments: Arc::new(segments),
        })
    }

    /// The store's own directory (RocksDB's files, `chunks/`, the ledger's archive).
    pub fn root(&self) -> &Path {
        self.chunk_dir.parent().unwrap_or(Path::new("."))
    }

    /// The content file of a partition.
    pub fn content_path(&self, content: &Hash) -> PathBuf {
        self.chunk_dir.join(hex::encode(content))
    }

    fn outboard_path(&self, content: &Hash) -> PathBuf {
        self.chunk_dir
            .join(format!("{}.obao", hex::encode(content)))
    }

    /// Keeps a partition's outboard beside its content (through the page cache, like the
    /// publisher's content: a cache, rebuilt from the content if lost).
    pub fn put_outboard(&self, content: &Hash, pairs: &[u8]) -> Result<()> {
        let path = self.outboard_path(content);
        std::fs::write(&path, pairs).with_context(|| format!("writing {}", path.display()))
    }

    /// The stored outboard of a partition, if there is one of `len` bytes (the size its tree
    /// implies; anything else is ignored as damaged).
    pub fn load_outboard(&self, content: &Hash, len: u64) -> Result<Option<Vec<u8>>> {
        let path = self.outboard_path(content);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", path.display()))),
        };
        // Checked before allocating: the length comes from the file system, not the tree.
        if file.metadata()?.len() != len {
            return Ok(None);
        }
        let mut pairs = vec![0u8; len as usize];
        file.read_exact_at(&mut pairs, 0)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(pairs))
    }

    /// Forgets a partition's stored outboard (it failed a check; the next use rebuilds it).
    pub fn delete_outboard(&self, content: &Hash) -> Result<()> {
        remove_if_present(&self.outboard_path(content))
    }

    /// Opens a partition's content file: for writing (created if missing) or reading, with
    /// `O_DIRECT` when `direct` (callers pass `self.direct` or `false`).
    fn open_content(&self, content: &Hash, write: bool, direct: bool) -> Result<File> {
        let path = self.content_path(content);
        let mut open = OpenOptions::new();
        if write {
            open.create(true).write(true).truncate(false);
        } else {
            open.read(true);
        }
        if let (true, Some(flag)) = (direct, crate::direct_io::O_DIRECT) {
            open.custom_flags(flag);
        }
        open.open(&path).with_context(|| {
            format!(
                "opening the content file of partition {} ({})",
                hex::encode(&content[..8]),
                path.display()
            )
        })
    }

    /// Writes `data` (whole groups, the last possibly short) into `content`'s file from
    /// `first_group` on. Durable once it returns under `O_DIRECT` (the page cache is bypassed);
    /// otherwise as durable as any buffered write.
    /// Returns the file (to be synced before the index names what was written).
    fn write_content(
        &self,
        content: &Hash,
        first_group: u64,
        data: &mut AlignedBuf,
        direct: bool,
    ) -> Result<File> {
        self.ensure_content_file(content)?;
        let file = self.open_content(content, true, direct)?;
        let offset = first_group * CHUNK_GROUP_BYTES;
        let bytes = if direct {
            data.padded()
        } else {
            data.as_slice()
        };
        file.write_all_at(bytes, offset)
            .with_context(|| format!("writing {}", self.content_path(content).display()))?;
        Ok(file)
    }

    /// Creates a partition's content file if it is not there, and makes its directory entry
    /// durable before any write into it can be indexed. Under a lock, so a frame written
    /// concurrently into the same new file cannot see it before its entry is synced.
    fn ensure_content_file(&self, content: &Hash) -> Result<()> {
        let path = self.content_path(content);
        let _created = self
            .create_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if path.exists() {
            return Ok(());
        }
        File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        self.sync_chunk_dir()
    }

    /// Makes a partition's content file durable (its data and size; a publisher's partition,
    /// written through the page cache, before anything refers to it).
    pub fn sync_content(&self, content: &Hash) -> Result<()> {
        let file = self.open_content(content, false, false)?;
        file.sync_data()
            .with_context(|| format!("syncing {}", self.content_path(content).display()))
    }

    /// Makes the content directory's entries durable (files created since the last sync).
    pub fn sync_chunk_dir(&self) -> Result<()> {
        File::open(&*self.chunk_dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.chunk_dir.display()))
    }

    /// Makes every write so far durable: one sync of RocksDB's write-ahead log (which every
    /// column family shares). Called before anything that tells the outside world a state is
    /// stored: a receipt, an acknowledgement, a publish or catalog submission returning.
    pub fn sync_wal(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .context("syncing the database's write-ahead log")
    }

    /// Index entries for groups `first_group..` of `len` content bytes (whole groups, the last
    /// possibly short).
    fn index_groups(batch: &mut Batch<'_>, content: &Hash, first_group: u64, len: usize) {
        let g = CHUNK_GROUP_BYTES as usize;
        let mut left = len;
        let mut group = first_group;
        while left > 0 {
            let n = left.min(g);
            batch.put(
                CF_CHUNKS,
                &chunk_key(content, group),
                &(n as u32).to_le_bytes(),
            );
            left -= n;
            group += 1;
        }
    }

    /// Index entries for groups `first_group..` with their bytes inline (a small partition).
    fn index_groups_inline(batch: &mut Batch<'_>, content: &Hash, first_group: u64, data: &[u8]) {
        let mut value = Vec::with_capacity(4 + CHUNK_GROUP_BYTES as usize);
        for (i, piece) in data.chunks(CHUNK_GROUP_BYTES as usize).enumerate() {
            value.clear();
            value.extend_from_slice(&(piece.len() as u32).to_le_bytes());
            value.extend_from_slice(piece);
            batch.put(
                CF_CHUNKS,
                &chunk_key(content, first_group + i as u64),
                &value,
            );
        }
    }

    /// Puts verified groups `first_group..` of a partition of `partition_bytes` (`data`, whole
    /// groups, the last possibly short) into `batch`: a small partition's bytes go into the
    /// batch with their index entries; a large one's are written to its content file now, and
    /// only the index entries are batched (so they land after the bytes). Nothing is stored
    /// until the caller writes the batch.
    pub fn stage_groups(
        &self,
        content: &Hash,
        partition_bytes: u64,
        first_group: u64,
        data: &mut AlignedBuf,
        batch: &mut Batch<'_>,
    ) -> Result<()> {
        self.stage(
            content,
            partition_bytes,
            first_group,
            data,
            batch,
            self.direct,
        )
    }

    /// The one place that decides where a partition's groups go: inline into `batch`, or into
    /// its content file (`O_DIRECT` when `direct`) with only their index entries batched.
    fn stage(
        &self,
        content: &Hash,
        partition_bytes: u64,
        first_group: u64,
        data: &mut AlignedBuf,
        batch: &mut Batch<'_>,
        direct: bool,
    ) -> Result<()> {
        if is_inline(partition_bytes) {
            Self::index_groups_inline(batch, content, first_group, data.as_slice());
        } else {
            let file = self.write_content(content, first_group, data, direct)?;
            batch.content_written(*content, file);
            Self::index_groups(batch, content, first_group, data.len());
        }
        Ok(())
    }

    /// Publisher's bulk load of a whole small partition ([`is_inline`]): its groups straight
    /// into the index, unlogged like [`Store::load_groups`].
    pub fn load_inline(&self, content: &Hash, data: &[u8]) -> Result<()> {
        debug_assert!(is_inline(data.len() as u64));
        let mut batch = self.batch();
        Self::index_groups_inline(&mut batch, content, 0, data);
        self.write_unlogged(batch)
    }

    /// Publisher's bulk load: content bytes first, then (unlogged, made durable by a later
    /// [`Store::flush`]) their index entries; a small partition's bytes go with its entries.
    /// Through the page cache, not `O_DIRECT`: a national publish writes 41,352 mostly small
    /// partitions, and a synchronous device write for each took twice as long as the whole
    /// partitioning. Durable in order all the same: [`crate::publish::prepare`] syncs each
    /// content file it wrote before it flushes the index, and the manifest is written after.
    pub fn load_groups(
        &self,
        content: &Hash,
        partition_bytes: u64,
        first_group: u64,
        data: &mut AlignedBuf,
    ) -> Result<()> {
        let mut batch = self.batch();
        self.stage(
            content,
            partition_bytes,
            first_group,
            data,
            &mut batch,
            false,
        )?;
        self.write_unlogged(batch)
    }

    /// The stored length of one group, if the index has it.
    fn group_len(&self, content: &Hash, group: u64) -> Result<Option<usize>> {
        let Some(v) = self
            .db
            .get_pinned_cf(self.cf(CF_CHUNKS), chunk_key(content, group))?
        else {
            return Ok(None);
        };
        index_len(&v).map(Some)
    }

    /// Opens stored groups `groups` of a partition for reading: every group must be in the
    /// index (one index scan over the range, not a lookup per group). Reads go through the
    /// page cache. Why not `O_DIRECT` (tried): a direct read skips the kernel's readahead, so
    /// every frame waited for the device at queue depth one, and it forces writeback of the
    /// publisher's freshly written (still dirty) content first; the transfer bench ran 10–25 %
    /// slower that way for the same CPU.
    pub fn open_groups(&self, content: &Hash, groups: Range<u64>) -> Result<StoredGroups> {
        if groups.end == groups.start + 1 {
            return self.open_group(content, groups.start);
        }
        let mut len = 0u64;
        // Inline groups are copied out as the index is scanned (a small partition's whole
        // content is at most `INLINE_PARTITION_BYTES_MAX`); segment groups must follow each
        // other in one segment.
        let mut source: Option<Source> = None;
        let mut index = self.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        index.seek(chunk_key(content, groups.start));
        for g in groups.clone() {
            let key = chunk_key(content, g);
            let value = match (index.key(), index.value()) {
                (Some(k), Some(v)) if k == key.as_slice() => v,
                _ => {
                    index.status()?;
                    anyhow::bail!(
                        "group {g} of partition {} is not stored",
                        hex::encode(&content[..8])
                    );
                }
            };
            let entry = index_entry(value)?;
            let n = entry.len();
            if n < CHUNK_GROUP_BYTES as usize && g + 1 != groups.end {
                anyhow::bail!(
                    "short group {g} inside a range of partition {}",
                    hex::encode(&content[..8])
                );
            }
            match (entry, &mut source) {
                (e, None) if g == groups.start => source = Some(Source::of(e)),
                (Entry::Inline(b), Some(Source::Inline(buf))) => buf.extend_from_slice(b),
                (Entry::File { .. }, Some(Source::File)) => {}
                (
                    Entry::Segment {
                        segment, offset, ..
                    },
                    Some(Source::Segment { id, base }),
                ) if segment == *id && offset == *base + len => {}
                _ => anyhow::bail!(
                    "partition {} has groups stored in different places",
                    hex::encode(&content[..8])
                ),
            }
            len += n as u64;
            index.next();
        }
        drop(index);
        let source = source.unwrap_or(Source::File);
        self.stored_groups_at(content, groups.start, len, source)
    }

    /// [`Store::open_groups`] of one group: a point lookup. Why apart: a national dataset is
    /// 41,352 one-group partitions, and a RocksDB iterator (built over every memtable and
    /// level, then sought) costs several times a `get` for a single key.
    fn open_group(&self, content: &Hash, group: u64) -> Result<StoredGroups> {
        let Some(value) = self
            .db
            .get_pinned_cf(self.cf(CF_CHUNKS), chunk_key(content, group))?
        else {
            anyhow::bail!(
                "group {group} of partition {} is not stored",
                hex::encode(&content[..8])
            );
        };
        let entry = index_entry(&value)?;
        self.stored_groups_at(content, group, entry.len() as u64, Source::of(entry))
    }

    /// `len` stored bytes from group `first` on, from `source`.
    fn stored_groups_at(
        &self,
        content: &Hash,
        first: u64,
        len: u64,
        source: Source,
    ) -> Result<StoredGroups> {
        let data = match source {
            Source::Inline(bytes) => GroupData::Inline(bytes),
            Source::File => GroupData::File {
                file: self.open_content(content, false, false)?,
                path: self.content_path(content),
            },
            Source::Segment { id, base } => GroupData::Segment {
                file: self.segments.file(id)?,
                segment: id,
                base,
            },
        };
        let start = first * CHUNK_GROUP_BYTES;
        Ok(StoredGroups {
            data,
            bytes: start..start + len,
        })
    }

    /// Drops groups `groups` of a partition (of `partition_bytes`) from the index: they failed
    /// verification, and must be neither served nor counted until fetched again. Returns the
    /// groups dropped. The whole partition goes with its file — and a small one
    /// ([`is_inline`]) always goes whole: it may lie in a segment, whose groups are read as
    /// one run, and fetching ≤ 128 KiB again costs nothing. A few groups of a large one go by
    /// point deletes (their file ranges are then holes the index does not name, rewritten
    /// when they arrive again).
    pub fn drop_groups(
        &self,
        content: &Hash,
        partition_bytes: u64,
        groups: Range<u64>,
    ) -> Result<Range<u64>> {
        let total = partition_bytes.div_ceil(CHUNK_GROUP_BYTES);
        if (groups.start == 0 && groups.end >= total) || is_inline(partition_bytes) {
            self.delete_content(content, partition_bytes)?;
            return Ok(0..total);
        }
        let mut batch = self.batch();
        for g in groups.start..groups.end.min(total) {
            batch.delete(CF_CHUNKS, &chunk_key(content, g));
        }
        self.write(batch)?;
        Ok(groups.start..groups.end.min(total))
    }

    /// Forgets a partition's content (of `partition_bytes`): its index entries and its file.
    pub fn delete_content(&self, content: &Hash, partition_bytes: u64) -> Result<()> {
        let mut batch = self.batch();
        if is_inline(partition_bytes) {
            // At most 8 point deletes. Not a range delete: superseding a national dataset
            // drops 41,352 small partitions, and as many range tombstones would slow every
            // later scan of the index.
            let mut segment = None;
            for g in 0..partition_bytes.div_ceil(CHUNK_GROUP_BYTES) {
                let key = chunk_key(content, g);
                if segment.is_none() {
                    if let Some(v) = self.db.get_pinned_cf(self.cf(CF_CHUNKS), key)? {
                        if let Ok(Entry::Segment { segment: id, .. }) = index_entry(&v) {
                            segment = Some(id);
                        }
                    }
                }
                batch.delete(CF_CHUNKS, &key);
            }
            if let Some(id) = segment {
                // The segment's count is lowered in the same write (and the segment removed
                // once nothing points into it).
                self.write_releasing(batch, id)?;
                return self.delete_outboard(content);
            }
        } else {
            let from = chunk_key(content, 0);
            // The range end is exclusive, so the last possible key is deleted on its own.
            let to = chunk_key(content, u64::MAX);
            batch.inner.delete_range_cf(self.cf(CF_CHUNKS), from, to);
            batch
                .inner
                .delete_cf(self.cf(CF_CHUNKS), chunk_key(content, u64::MAX));
        }
        self.write(batch)?;
        self.delete_outboard(content)?;
        remove_if_present(&self.content_path(content))
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every CF in `CFS` is created at open; a missing one is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    pub fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put(cf, key, value);
        self.write(batch)
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            inner: WriteBatch::default(),
            written: Vec::new(),
            appended: Vec::new(),
        }
    }

    /// Applies a batch atomically, after the content its index entries vouch for is durable:
    /// the content files it wrote are synced (data and size; their directory entries were
    /// synced when they were created) — so the index never names bytes a power cut can take
    /// back. One sync per file per batch (a received chunk frame, ≤ 1 MiB): measured in the
    /// transfer bench (node/README.md). The batch itself goes to the write-ahead log unsynced;
    /// what must outlive a power cut is synced before it is acknowledged ([`Store::sync_wal`]).
    pub fn write(&self, mut batch: Batch<'_>) -> Result<()> {
        if !batch.appended.is_empty() {
            return self.write_appended(batch);
        }
        let inner = std::mem::take(&mut batch.inner);
        for (content, file) in &batch.written {
            file.sync_data()
                .with_context(|| format!("syncing {}", self.content_path(content).display()))?;
        }
        Ok(self.db.write(inner)?)
    }

    /// Applies a batch atomically without the write-ahead log, and without syncing the
    /// content it wrote: for the publisher's bulk load, referenced only after
    /// [`crate::publish::prepare`] synced each content file it wrote, then the directory, then
    /// [`Store::flush`]ed the index (a crash before the manifest is written just means
    /// publishing again, which rewrites content and index alike).
    pub fn write_unlogged(&self, mut batch: Batch<'_>) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        debug_assert!(
            batch.appended.is_empty(),
            "received content is written logged"
        );
        Ok(self.db.write_opt(std::mem::take(&mut batch.inner), &opts)?)
    }

    pub fn delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        Ok(self.db.delete_cf(self.cf(cf), key)?)
    }

    /// All `(key, value)` pairs whose key starts with `prefix`, in key order; at most `limit`.
    pub fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Visits `(key, value)` pairs in key order from `start` on while `visit` returns
    /// `Ok(true)`: for scans too large to collect (the unified catalog at national).
    pub fn for_each_from(
        &self,
        cf: &str,
        start: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(start, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// `(key, value)` pairs in key order from `start` on, as an iterator: for walking two
    /// key ranges in step (the ledger's entries beside their leaf hashes).
    pub fn iter_from<'a>(
        &'a self,
        cf: &str,
        start: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(start, Direction::Forward))
            .map(|item| item.map_err(anyhow::Error::from))
    }

    /// The greatest key starting with `prefix`, if any.
    pub fn last_key_with_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        // Seek to the last key below the prefix's successor.
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < u8::MAX {
                end.push(last + 1);
                break;
            }
        }
        let mode = if end.is_empty() {
            IteratorMode::End
        } else {
            IteratorMode::From(&end, Direction::Reverse)
        };
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, _) = item?;
            if k.starts_with(prefix) {
                return Ok(Some(k.to_vec()));
            }
            if k.as_ref() < prefix {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Stores verified groups `first_group..` of a partition (`data` is their content,
    /// concatenated) together with `extra` bookkeeping: bytes into the content file first,
    /// then the index entries and `extra` in one logged batch.
    pub fn put_groups(
        &self,
        content: &Hash,
        partition_bytes: u64,
        first_group: u64,
        data: &mut AlignedBuf,
        mut extra: Batch<'_>,
    ) -> Result<()> {
        self.stage_groups(content, partition_bytes, first_group, data, &mut extra)?;
        self.write(extra)
    }

    /// Which groups of a partition are stored (indexes, ascending). Keys only: values (the
    /// content) are not read, so this is cheap even for large partitions.
    pub fn stored_groups(&self, content: &Hash) -> Result<Vec<u64>> {
        let prefix = &chunk_key(content, 0)[..32];
        let mut out = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        iter.seek(prefix);
        while iter.valid() {
            let Some(k) = iter.key() else { break };
            if !k.starts_with(prefix) {
                break;
            }
            let mut g = [0u8; 8];
            g.copy_from_slice(&k[32..40]);
            out.push(u64::from_be_bytes(g));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    pub fn get_group(&self, content: &Hash, group: u64) -> Result<Vec<u8>> {
        let stored = self.open_groups(content, group..group + 1)?;
        let mut buf = vec![0u8; (stored.bytes.end - stored.bytes.start) as usize];
        stored.read_exact_at(group * CHUNK_GROUP_BYTES, &mut buf)?;
        Ok(buf)
    }

    /// Reads `buf.len()` bytes of a partition's content at `offset`; stops early at the first
    /// group the index does not have (returns the bytes read).
    pub fn read_at(&self, content: &Hash, offset: u64, buf: &mut [u8]) -> Result<usize> {
        // How far the stored groups reach from `offset`, in the index; then one read of that.
        let first = offset / CHUNK_GROUP_BYTES;
        let mut end_group = first;
        let mut reach = first * CHUNK_GROUP_BYTES;
        let want_end = offset.saturating_add(buf.len() as u64);
        while reach < want_end {
            let Some(len) = self.group_len(content, end_group)? else {
                break;
            };
            reach += len as u64;
            end_group += 1;
            if len < CHUNK_GROUP_BYTES as usize {
                break; // the partition's short last group
            }
        }
        if end_group == first || reach <= offset {
            return Ok(0);
        }
        let n = (reach.min(want_end) - offset) as usize;
        self.open_groups(content, first..end_group)?
            .read_exact_at(offset, &mut buf[..n])?;
        Ok(n)
    }

    /// Streams a whole partition's stored content, group by group, in order.
    pub fn for_each_group(
        &self,
        content: &Hash,
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let prefix = &chunk_key(content, 0)[..32];
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        iter.seek(prefix);
        let mut file: Option<File> = None;
        let mut buf = vec![0u8; CHUNK_GROUP_BYTES as usize];
        while iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            if !k.starts_with(prefix) {
                break;
            }
            let mut g = [0u8; 8];
            g.copy_from_slice(&k[32..40]);
            let group = u64::from_be_bytes(g);
            let entry = index_entry(v)?;
            let len = entry.len().min(buf.len());
            let data = match entry {
                Entry::Inline(bytes) => &bytes[..len],
                Entry::File { .. } => {
                    let file = match &mut file {
                        Some(f) => f,
                        None => file.insert(self.open_content(content, false, false)?),
                    };
                    file.read_exact_at(&mut buf[..len], group * CHUNK_GROUP_BYTES)?;
                    &buf[..len]
                }
                Entry::Segment {
                    segment, offset, ..
                } => {
                    self.segments
                        .file(segment)?
                        .read_exact_at(&mut buf[..len], offset)
                        .with_context(|| {
                            format!("reading {}", self.segments.path(segment).display())
                        })?;
                    &buf[..len]
                }
            };
            f(group, data)?;
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// Flushes memtables (used before a clean exit so a restart replays no WAL).
    pub fn flush(&self) -> Result<()> {
        for cf in CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}

/// An atomic batch across column families, with the content files its index entries vouch
/// for (synced before it is written, see [`Store::write`]).
pub struct Batch<'s> {
    store: &'s Store,
    inner: WriteBatch,
    /// Content files written for this batch, one handle per partition.
    written: Vec<(Hash, File)>,
    /// Received small partitions appended to a segment for this batch.
    appended: Vec<segment::Appended>,
}

impl Drop for Batch<'_> {
    /// A batch dropped unwritten ends its segment reservations (the appended bytes are dead
    /// space; nothing names them).
    fn drop(&mut self) {
        for a in self.appended.drain(..) {
            self.store.segments.release(a.segment);
        }
    }
}

impl Batch<'_> {
    fn content_written(&mut self, content: Hash, file: File) {
        // A frame holds runs of few partitions: a linear scan beats a map.
        if !self.written.iter().any(|(c, _)| *c == content) {
            self.written.push((content, file));
        }
    }

    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) {
        self.inner.put_cf(self.store.cf(cf), key, value);
    }

    pub fn delete(&mut self, cf: &str, key: &[u8]) {
        self.inner.delete_cf(self.store.cf(cf), key);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// Removes a file; one that is not there is already removed.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {}", path.display()))),
    }
}

#[cfg(test)]
mod tests;
