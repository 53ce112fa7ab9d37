//! Segment files (分段文件): a publisher's small partitions packed into a few large files.
//!
//! Why: a national dataset is 41,352 partitions of ~12 KB. Kept as RocksDB values (inline in
//! the `chunks` index) each one was copied into a memtable, then again into a blob file at
//! flush — two page-cache writes and an arena allocation per byte, the work that kept the
//! publish under its ≥ 300 MB/s target (#13, node/README.md). A segment is written once, past
//! the page cache (`O_DIRECT`, where the file system allows it) in one write per batch of
//! partitions on a writer thread ([`SegmentWriter`]), and synced once at the end of the
//! publish; the index then holds only a 16-byte pointer per group:
//!
//! `len | SEGMENT_BIT` (u32 LE) ‖ segment id (u32 LE) ‖ file offset (u64 LE)
//!
//! A segment `<db>/chunks/segments/<id as 8 hex digits>.seg` has a count key in the same
//! `chunks` CF, `seg` ‖ id (u32 BE, 7 bytes — no 40-byte chunk key can equal it), holding
//! how many partitions point into it. The count is written in the same batch as the
//! pointers (so one flush makes both durable or neither) and lowered in the same batch that
//! deletes a partition's index entries; at zero the file is removed. A segment with no count
//! key (a publish that crashed before its index was flushed, or a removal cut short) is
//! swept when the store opens.
//!
//! A *received* small partition goes into a segment too ([`Store::stage_received`]): the
//! verified whole small partitions of one chunk frame are appended to the store's receiving
//! segment in one write (padded to whole blocks, past the page cache where the file system
//! allows it), synced before the frame's index batch lands (as a content file is),
//! and the count raised in that batch. Before, they went into RocksDB as values: its WAL, its
//! memtable and again a blob file at flush — at each of a national dataset's 31 provinces
//! (#13). A receiving segment is never appended to after a restart (a new one is begun), so
//! its length needs no recovery; bytes appended whose batch never landed are dead space.
//!
//! Why not a crate: nothing packs content-addressed blobs into files beside RocksDB with
//! this contract; the code is the file format above plus a sweep.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use backflow_protocol::manifest::{Hash, CHUNK_GROUP_BYTES};

use super::{chunk_key, Batch, Store, CF_CHUNKS};
use crate::aligned_buf::{AlignedBuf, DIRECT_ALIGN_BYTES};
use std::os::unix::fs::OpenOptionsExt;

/// The directory of segment files, inside the content directory.
pub const SEGMENT_DIR: &str = "segments";
/// A segment is closed and a new one begun past this size (a national register is ~0.5 GB:
/// one segment).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Segments open for reading at once (file handles kept; each is one descriptor).
const SEGMENT_HANDLES_MAX: usize = 256;
/// Marks an index entry as a segment pointer (a group's length is at most 16 KiB).
pub(super) const SEGMENT_BIT: u32 = 1 << 31;
/// The bytes of a segment pointer after its 4-byte length.
pub(super) const POINTER_TAIL_BYTES: usize = 12;
const COUNT_KEY_PREFIX: &[u8; 3] = b"seg";

/// A segment's count key in the `chunks` CF.
pub(super) fn count_key(segment: u32) -> [u8; 7] {
    let mut key = [0u8; 7];
    key[..3].copy_from_slice(COUNT_KEY_PREFIX);
    key[3..].copy_from_slice(&segment.to_be_bytes());
    key
}

fn pointer_value(len: usize, segment: u32, offset: u64) -> [u8; 16] {
    debug_assert!(len <= CHUNK_GROUP_BYTES as usize);
    let mut value = [0u8; 16];
    value[..4].copy_from_slice(&(len as u32 | SEGMENT_BIT).to_le_bytes());
    value[4..8].copy_from_slice(&segment.to_le_bytes());
    value[8..].copy_from_slice(&offset.to_le_bytes());
    value
}

/// A segment pointer's segment and offset, from the 12 bytes after its length.
pub(super) fn pointer_tail(tail: &[u8]) -> Option<(u32, u64)> {
    let (segment, offset) = tail.split_first_chunk::<4>()?;
    let offset: [u8; 8] = offset.try_into().ok()?;
    Some((u32::from_le_bytes(*segment), u64::from_le_bytes(offset)))
}

fn file_name(segment: u32) -> String {
    format!("{segment:08x}.seg")
}

fn parse_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".seg")?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok())?
}

/// The store's segments: their directory, open handles, the next id, and the lock under
/// which counts change.
pub(super) struct Segments {
    dir: PathBuf,
    handles: Mutex<HashMap<u32, Arc<File>>>,
    next: AtomicU32,
    /// Held while a count is read and written again (publish and deletes may race).
    counts: Mutex<()>,
    /// The segment received partitions are appended to, and the appends not yet indexed.
    receiving: Mutex<Receiving>,
}

/// The receiving segment (see the module docs) and reservations in flight: a segment with
/// appends whose batch has not landed is not removed when its count reaches zero.
#[derive(Default)]
struct Receiving {
    open: Option<ReceivingSegment>,
    /// Appends reserved and not yet indexed (or failed), per segment.
    in_flight: HashMap<u32, u32>,
}

struct ReceivingSegment {
    id: u32,
    file: Arc<File>,
    len: u64,
}

/// Appended received bytes the batch must sync and count before it lands (see
/// [`Store::write`]).
pub(super) struct Appended {
    pub(super) segment: u32,
    pub(super) file: Arc<File>,
    /// Partitions the append added.
    pub(super) partitions: u64,
}

impl Segments {
    /// Opens the segment directory and sweeps segments no count key vouches for.
    pub(super) fn open(chunk_dir: &Path, db: &rocksdb::DB) -> Result<Segments> {
        let dir = chunk_dir.join(SEGMENT_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cf = db
            .cf_handle(CF_CHUNKS)
            .context("the chunks column family is missing")?;
        let mut highest = 0u32;
        let mut swept = false;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            highest = highest.max(id);
            if db.get_pinned_cf(&cf, count_key(id))?.is_none() {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
                swept = true;
                tracing::info!("removed segment {id:08x}, which no partition refers to");
            }
        }
        // Ids are never reused while a count key names them (files may be gone).
        for item in db.prefix_iterator_cf(&cf, COUNT_KEY_PREFIX) {
            let (key, _) = item?;
            if !key.starts_with(COUNT_KEY_PREFIX) {
                break;
            }
            if let Ok(id) = <[u8; 4]>::try_from(&key[3..]) {
                if key.len() == 7 {
                    highest = highest.max(u32::from_be_bytes(id));
                }
            }
        }
        if swept {
            File::open(&dir).and_then(|d| d.sync_all())?;
        }
        Ok(Segments {
            dir,
            handles: Mutex::default(),
            next: AtomicU32::new(highest.saturating_add(1)),
            counts: Mutex::default(),
            receiving: Mutex::default(),
        })
    }

    /// Reserves `bytes` (whole blocks) at the end of the receiving segment (a new one is
    /// begun when there is none or it would pass [`SEGMENT_BYTES_MAX`]; `direct`: opened
    /// with `O_DIRECT`); the caller writes there and then [`Segments::release`]s the
    /// reservation once its batch has landed or failed.
    fn reserve(&self, bytes: u64, direct: bool) -> Result<(u32, Arc<File>, u64)> {
        debug_assert!(bytes.is_multiple_of(DIRECT_ALIGN_BYTES as u64));
        let mut r = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        if r.open
            .as_ref()
            .is_none_or(|o| o.len.saturating_add(bytes) > SEGMENT_BYTES_MAX)
        {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let path = self.path(id);
            let mut options = OpenOptions::new();
            options.create_new(true).read(true).write(true);
            if let (true, Some(flag)) = (direct, crate::direct_io::O_DIRECT) {
                options.custom_flags(flag);
            }
            let file = options
                .open(&path)
                .with_context(|| format!("creating segment {}", path.display()))?;
            // Its directory entry is durable before any index entry can name it.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", self.dir.display()))?;
            r.open = Some(ReceivingSegment {
                id,
                file: Arc::new(file),
                len: 0,
            });
        }
        let open = r.open.as_mut().expect("opened above");
        let at = open.len;
        open.len += bytes;
        let (id, file) = (open.id, Arc::clone(&open.file));
        *r.in_flight.entry(id).or_default() += 1;
        Ok((id, file, at))
    }

    /// Ends a reservation of [`Segments::reserve`].
    pub(super) fn release(&self, segment: u32) {
        let mut r = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = r.in_flight.get_mut(&segment) {
            *n -= 1;
            if *n == 0 {
                r.in_flight.remove(&segment);
            }
        }
    }

    /// Whether a segment whose count reached zero may be removed: not while received bytes
    /// are being appended to it or indexed.
    fn removable(&self, segment: u32) -> bool {
        let r = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        r.open.as_ref().is_none_or(|o| o.id != segment) && !r.in_flight.contains_key(&segment)
    }

    pub(super) fn path(&self, segment: u32) -> PathBuf {
        self.dir.join(file_name(segment))
    }

    /// A segment's file, open for reading (kept open for the next read).
    pub(super) fn file(&self, segment: u32) -> Result<Arc<File>> {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = handles.get(&segment) {
            return Ok(Arc::clone(f));
        }
        let path = self.path(segment);
        let file = Arc::new(
            File::open(&path).with_context(|| format!("opening segment {}", path.display()))?,
        );
        if handles.len() >= SEGMENT_HANDLES_MAX {
            handles.clear();
        }
        handles.insert(segment, Arc::clone(&file));
        Ok(file)
    }

    fn forget(&self, segment: u32) {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        handles.remove(&segment);
    }
}

/// Whether a partition's content is stored already.
pub(super) enum Held {
    No,
    /// Stored with exactly these bytes (in this segment, if in one).
    Same(Option<u32>),
    /// Stored, but what is stored cannot be read back as these bytes.
    Other,
}

impl Store {
    /// Whether `content` is stored, and as `data`. One point lookup when it is not (the
    /// common case: a new publish).
    fn holds(&self, content: &Hash, data: &[u8]) -> Result<Held> {
        if self.get(CF_CHUNKS, &chunk_key(content, 0))?.is_none() {
            return Ok(Held::No);
        }
        let groups = (data.len() as u64).div_ceil(CHUNK_GROUP_BYTES);
        let Ok(stored) = self.open_groups(content, 0..groups) else {
            return Ok(Held::Other);
        };
        let mut back = vec![0u8; data.len()];
        if stored.read_exact_at(0, &mut back).is_err() || back != data {
            return Ok(Held::Other);
        }
        Ok(Held::Same(stored.segment()))
    }

    fn segment_count(&self, segment: u32) -> Result<u64> {
        Ok(match self.get(CF_CHUNKS, &count_key(segment))? {
            Some(v) => u64::from_le_bytes(
                v.as_slice()
                    .try_into()
                    .context("a segment count is not 8 bytes")?,
            ),
            None => 0,
        })
    }

    /// Writes `batch` after lowering the count of `segment` by one in it (a partition stored
    /// there is being deleted by the batch); removes the segment once nothing points into it.
    pub(super) fn write_releasing(&self, mut batch: Batch<'_>, segment: u32) -> Result<()> {
        let _counts = self
            .segments
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let left = self.segment_count(segment)?.saturating_sub(1);
        if left == 0 {
            batch.delete(CF_CHUNKS, &count_key(segment));
        } else {
            batch.put(CF_CHUNKS, &count_key(segment), &left.to_le_bytes());
        }
        self.write(batch)?;
        if left == 0 && self.segments.removable(segment) {
            self.segments.forget(segment);
            super::remove_if_present(&self.segments.path(segment))?;
        }
        Ok(())
    }

    /// Stages received, verified whole small partitions (`parts`: content hash and where its
    /// bytes lie in `bytes`, back to back) into `batch`: `bytes` appended to the receiving
    /// segment in one write now, the groups' pointers into the batch, which syncs the segment
    /// and raises its count before it lands ([`Store::write`]). A content received twice
    /// (frames crossing) is counted twice: its old place is dead space, never a dangling
    /// pointer.
    ///
    /// The append is padded to whole blocks and written past the page cache (`O_DIRECT`,
    /// where the file system allows it), like a publisher's segment. Why: with buffered
    /// appends the kernel's copy into fresh page-cache pages was 19 % of the `national`
    /// bench's return-flow CPU (`perf`, session 30) — a cost the single-partition transfer,
    /// whose content files are written direct, never paid. The padding is dead space, at
    /// most a block per frame (< 0.5 % of a national frame).
    pub fn stage_received(
        &self,
        bytes: &mut AlignedBuf,
        parts: &[(Hash, std::ops::Range<usize>)],
        batch: &mut Batch<'_>,
    ) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let padded = bytes.padded();
        let (id, file, at) = self.segments.reserve(padded.len() as u64, self.direct)?;
        let appended = Appended {
            segment: id,
            file,
            partitions: parts.len() as u64,
        };
        if let Err(e) = appended.file.write_all_at(padded, at) {
            self.segments.release(id);
            return Err(anyhow::Error::new(e).context(format!(
                "writing segment {}",
                self.segments.path(id).display()
            )));
        }
        for (content, range) in parts {
            debug_assert!(super::is_inline(range.len() as u64));
            let mut offset = at + range.start as u64;
            for (g, piece) in bytes.as_slice()[range.clone()]
                .chunks(CHUNK_GROUP_BYTES as usize)
                .enumerate()
            {
                batch.put(
                    CF_CHUNKS,
                    &chunk_key(content, g as u64),
                    &pointer_value(piece.len(), id, offset),
                );
                offset += piece.len() as u64;
            }
        }
        batch.appended.push(appended);
        Ok(())
    }

    /// Writes a batch that appended received partitions ([`Store::stage_received`]): each
    /// segment synced first, then the counts raised in the batch, which lands under the
    /// counts lock; the reservations end either way.
    pub(super) fn write_appended(&self, mut batch: Batch<'_>) -> Result<()> {
        let appended = std::mem::take(&mut batch.appended);
        let result = (|| {
            for a in &appended {
                a.file.sync_data().with_context(|| {
                    format!("syncing {}", self.segments.path(a.segment).display())
                })?;
            }
            let _counts = self
                .segments
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut added: Vec<(u32, u64)> = Vec::new();
            for a in &appended {
                match added.iter_mut().find(|(s, _)| *s == a.segment) {
                    Some((_, n)) => *n += a.partitions,
                    None => added.push((a.segment, a.partitions)),
                }
            }
            for (segment, n) in added {
                let count = self.segment_count(segment)? + n;
                batch.put(CF_CHUNKS, &count_key(segment), &count.to_le_bytes());
            }
            self.write(batch)
        })();
        for a in &appended {
            self.segments.release(a.segment);
        }
        result
    }
}

/// The segment a publish is writing into.
struct Open {
    id: u32,
    file: Arc<File>,
    /// Bytes of partitions placed in it (the file is this long, rounded up to a block).
    len: u64,
}

/// One write for the writer thread: `buf` (its bytes from a block boundary of the segment,
/// `at`, to the end of what is placed) goes to `file` padded to whole blocks; then the
/// pointers of the partitions it completes and the segment's new count land in one batch.
struct Job {
    segment: u32,
    file: Arc<File>,
    at: u64,
    buf: AlignedBuf,
    pointers: Vec<([u8; 40], [u8; 16])>,
    /// Partitions the pointers add to the segment's count.
    added: u64,
}

/// Staging buffers a publish cycles between its storing thread and its writer thread: one
/// filled while the other is written (two would leave the device idle while a batch is
/// gathered and hashed; more only hold memory).
const STAGING_BUFFERS: usize = 2;

/// Under buffered writes (a file system without `O_DIRECT`), after this many bytes written
/// the writer thread syncs the segment. Why: a national publish writes ~0.5 GB, far below the
/// kernel's own writeback threshold on a machine with this much memory, so without it all of
/// it went to the device in the one sync at the end, after the CPU work, not beside it.
const EARLY_SYNC_BYTES: u64 = 64 * 1024 * 1024;

/// Writes a publisher's small partitions into segments (see the module docs).
///
/// The partitions are copied into an aligned staging buffer and written past the page cache
/// (`O_DIRECT`) on a thread of its own, one write per batch; the partial block at the end of
/// each write is carried into the next buffer and written again with what follows it. Why:
/// with buffered writes the kernel's copy of ~0.5 GB into the page cache (fresh pages on every
/// publish) was 24 % of a national publish's CPU (`perf`, node/README.md, session 28), more
/// than hashing it; the copy into a reused staging buffer is a fraction of that, and the
/// device's time overlaps the next batch's work. Not durable until [`SegmentWriter::finish`]
/// syncs the segments (their sizes), which the publish does before it flushes the index and
/// long before any manifest refers to them.
pub struct SegmentWriter<'s> {
    store: &'s Store,
    open: Option<Open>,
    /// The buffer being filled: bytes of the open segment from `staged_at` on.
    staging: Option<AlignedBuf>,
    staged_at: u64,
    /// Pointers of the partitions in `staging` not yet handed to the writer.
    pointers: Vec<([u8; 40], [u8; 16])>,
    added: u64,
    /// Every segment written, to be synced at the end.
    written: Vec<Arc<File>>,
    /// Segments holding content this publish found stored already, synced at the end too.
    held: BTreeSet<u32>,
    /// Contents this publish has placed (their pointers may not have landed yet, so the index
    /// cannot say).
    placed: HashSet<Hash>,
    to_writer: Option<std::sync::mpsc::SyncSender<Job>>,
    /// Written buffers coming back for reuse.
    free: std::sync::mpsc::Receiver<AlignedBuf>,
    /// Staging buffers allocated so far (at most `STAGING_BUFFERS`).
    buffers_made: usize,
    writer: Option<std::thread::JoinHandle<Result<()>>>,
}

impl<'s> SegmentWriter<'s> {
    pub fn new(store: &'s Store) -> Result<SegmentWriter<'s>> {
        // Never full: at most `STAGING_BUFFERS` buffers exist, one of them being filled.
        let (to_writer, jobs) = std::sync::mpsc::sync_channel::<Job>(STAGING_BUFFERS);
        let (give_back, free) = std::sync::mpsc::sync_channel(STAGING_BUFFERS);
        let writer_store = store.clone();
        let writer = std::thread::Builder::new()
            .name("segment-writer".into())
            .spawn(move || write_jobs(&writer_store, jobs, give_back))
            .context("starting the thread that writes segments")?;
        Ok(SegmentWriter {
            store,
            open: None,
            staging: None,
            staged_at: 0,
            pointers: Vec::new(),
            added: 0,
            written: Vec::new(),
            held: BTreeSet::new(),
            placed: HashSet::new(),
            to_writer: Some(to_writer),
            free,
            buffers_made: 0,
            writer: Some(writer),
        })
    }

    /// Stores small partitions (`content hash`, bytes): their bytes copied into the staging
    /// buffer and handed to the writer thread in one write, their pointers and the segment's
    /// count in one unlogged batch after it. A partition already stored with the same bytes
    /// is skipped (content-addressed); one stored differently (a torn earlier publish) is
    /// replaced.
    pub fn store(&mut self, parts: &[(Hash, &[u8])]) -> Result<()> {
        for (content, data) in parts {
            debug_assert!(super::is_inline(data.len() as u64));
            if data.is_empty() || self.placed.contains(content) {
                continue;
            }
            match self.store.holds(content, data)? {
                // Its segment may hold bytes of an earlier publish that failed before its
                // sync: synced again with this publish's.
                Held::Same(segment) => {
                    self.held.extend(segment);
                    continue;
                }
                Held::No => {}
                // Stored, but not these bytes (a torn earlier publish): replaced, and its old
                // segment released.
                Held::Other => self.store.delete_content(content, data.len() as u64)?,
            }
            self.placed.insert(*content);
            self.place(content, data)?;
        }
        self.hand_over()
    }

    /// Copies one partition into the staging buffer and notes its pointers.
    fn place(&mut self, content: &Hash, data: &[u8]) -> Result<()> {
        let bytes = data.len() as u64;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.len + bytes > SEGMENT_BYTES_MAX)
        {
            // The full segment's last bytes go out before a new one begins.
            self.hand_over()?;
            if let Some(s) = self.staging.as_mut() {
                s.clear();
            }
            if let Some(o) = self.open.take() {
                self.written.push(o.file);
            }
        }
        if self.open.is_none() {
            self.open = Some(self.create()?);
            self.staged_at = 0;
        }
        let open = self.open.as_mut().expect("opened above");
        let staged = open.len - self.staged_at;
        let need = (staged + bytes) as usize;
        let staging = match self.staging.take() {
            Some(buf) if buf.capacity() >= need => buf,
            // The first buffer, or a batch larger than the last: one that holds it.
            other => {
                if other.is_none() {
                    self.buffers_made += 1;
                }
                let mut buf = AlignedBuf::with_capacity(need.max(STAGING_BYTES_MIN));
                if let Some(old) = other {
                    buf.extend_from_slice(old.as_slice());
                }
                buf
            }
        };
        let staging = self.staging.insert(staging);
        debug_assert_eq!(staging.len() as u64, staged);
        staging.extend_from_slice(data);
        let mut offset = open.len;
        for (g, piece) in data.chunks(CHUNK_GROUP_BYTES as usize).enumerate() {
            self.pointers.push((
                chunk_key(content, g as u64),
                pointer_value(piece.len(), open.id, offset),
            ));
            offset += piece.len() as u64;
        }
        open.len = offset;
        self.added += 1;
        Ok(())
    }

    fn create(&self) -> Result<Open> {
        let id = self.store.segments.next.fetch_add(1, Ordering::Relaxed);
        let path = self.store.segments.path(id);
        let mut options = OpenOptions::new();
        options.create_new(true).read(true).write(true);
        if let (true, Some(flag)) = (self.store.direct, crate::direct_io::O_DIRECT) {
            options.custom_flags(flag);
        }
        let file = options
            .open(&path)
            .with_context(|| format!("creating segment {}", path.display()))?;
        Ok(Open {
            id,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// Hands the staged bytes and their pointers to the writer thread; the partial block at
    /// their end begins the next buffer (it is written again, with what follows it).
    fn hand_over(&mut self) -> Result<()> {
        if self.added == 0 {
            return Ok(());
        }
        let (Some(open), Some(buf)) = (self.open.as_ref(), self.staging.take()) else {
            bail!("segment bytes to write without an open segment");
        };
        let tail_from = buf.len() - buf.len() % DIRECT_ALIGN_BYTES;
        let mut next = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.buffers_made < STAGING_BUFFERS => {
                self.buffers_made += 1;
                AlignedBuf::with_capacity(buf.capacity())
            }
            // Every buffer is out: wait for the writer to give one back (the device is the
            // bottleneck), unless it has stopped.
            Err(_) => match self.free.recv() {
                Ok(b) => b,
                Err(_) => return Err(self.writer_error()),
            },
        };
        next.clear();
        next.extend_from_slice(&buf.as_slice()[tail_from..]);
        let job = Job {
            segment: open.id,
            file: Arc::clone(&open.file),
            at: self.staged_at,
            buf,
            pointers: std::mem::take(&mut self.pointers),
            added: std::mem::take(&mut self.added),
        };
        self.staged_at += tail_from as u64;
        self.staging = Some(next);
        let sent = self.to_writer.as_ref().map(|tx| tx.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.writer_error()),
        }
    }

    /// The writer thread's error, once it has stopped (it stops only on one).
    fn writer_error(&mut self) -> anyhow::Error {
        self.to_writer = None;
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => anyhow::anyhow!("the thread writing segments panicked"),
            _ => anyhow::anyhow!("the thread writing segments stopped"),
        }
    }

    /// Waits for every write, then makes every segment written durable (data and sizes, then
    /// their directory entries).
    pub fn finish(mut self) -> Result<()> {
        self.hand_over()?;
        self.to_writer = None;
        if let Some(w) = self.writer.take() {
            match w.join() {
                Ok(result) => result?,
                Err(_) => bail!("the thread writing segments panicked"),
            }
        }
        if let Some(o) = self.open.take() {
            self.written.push(o.file);
        }
        for id in &self.held {
            self.store
                .segments
                .file(*id)?
                .sync_data()
                .with_context(|| format!("syncing {}", self.store.segments.path(*id).display()))?;
        }
        if self.written.is_empty() {
            return Ok(());
        }
        for file in &self.written {
            file.sync_data().context("syncing a segment")?;
        }
        File::open(&self.store.segments.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.store.segments.dir.display()))
    }
}

/// Staging buffers are at least this large (a publish's batches are ~4 MiB).
const STAGING_BYTES_MIN: usize = 4 * 1024 * 1024 + 128 * 1024;

/// The writer thread: each job written, its pointers landed, its buffer given back. Stops at
/// the first error, which [`SegmentWriter`] reports.
fn write_jobs(
    store: &Store,
    jobs: std::sync::mpsc::Receiver<Job>,
    give_back: std::sync::mpsc::SyncSender<AlignedBuf>,
) -> Result<()> {
    let mut unsynced = 0u64;
    for job in jobs {
        let file = Arc::clone(&job.file);
        let written = job.buf.len() as u64;
        let buf = write_job(store, job)?;
        unsynced += written;
        if !store.direct && unsynced >= EARLY_SYNC_BYTES {
            // The end's sync still covers everything; this one only starts the device early.
            file.sync_data().context("syncing a segment")?;
            unsynced = 0;
        }
        // The storing thread may have finished and gone: nothing to give back to.
        let _ = give_back.try_send(buf);
    }
    Ok(())
}

/// Writes one job's bytes (padded to whole blocks), then its pointers and the segment's new
/// count in one unlogged batch; returns its buffer.
fn write_job(store: &Store, mut job: Job) -> Result<AlignedBuf> {
    debug_assert!(job.at.is_multiple_of(DIRECT_ALIGN_BYTES as u64));
    job.file
        .write_all_at(job.buf.padded(), job.at)
        .with_context(|| {
            format!(
                "writing segment {}",
                store.segments.path(job.segment).display()
            )
        })?;
    let mut batch = store.batch();
    for (key, value) in &job.pointers {
        batch.put(CF_CHUNKS, key, value);
    }
    let _counts = store
        .segments
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let count = store.segment_count(job.segment)? + job.added;
    batch.put(CF_CHUNKS, &count_key(job.segment), &count.to_le_bytes());
    store.write_unlogged(batch)?;
    Ok(job.buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pointers_round_trip() {
        assert_eq!(parse_name(&file_name(0x1234_abcd)), Some(0x1234_abcd));
        assert_eq!(parse_name("1234abcd.tmp"), None);
        assert_eq!(parse_name("123.seg"), None);
        let v = pointer_value(12_345, 7, 1 << 33);
        assert_eq!(
            u32::from_le_bytes(v[..4].try_into().unwrap()),
            12_345 | SEGMENT_BIT
        );
        assert_eq!(pointer_tail(&v[4..]), Some((7, 1 << 33)));
        assert_eq!(count_key(1).len(), 7);
    }
}
