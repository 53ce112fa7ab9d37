//! Streaming partitioner for `backflow publish`: reads a CSV or NDJSON file once, routes every
//! record to its township (12-digit village codes roll up to their 9-digit township), and emits
//! each township's records — byte-identical lines, in published order — to a [`PartitionSink`].
//!
//! Memory is bounded by [`PartitionConfig::buffer_bytes_max`], not by the input: routed records
//! are appended to one arena, and when it exceeds the cap it is written out as one *run* (a file
//! holding every buffered township's bytes contiguously, in township order; a counting sort).
//! At the end each township's partition is the concatenation of its segments across runs, in run
//! order — which is published order. A 10 GiB input therefore costs at most the cap in RAM plus
//! one small index entry per (run, township) pair.
//!
//! A record whose region field is missing, malformed, unknown or outside the publisher's region
//! is never dropped silently: it is counted by reason and its line number is written to the
//! [`Rejects`] report (the first [`REJECT_LINES_KEPT_MAX`] in memory, all of them in the rejects
//! file when one is given).
//!
//! A 12-digit village code in a known township whose village the table cannot vouch for (see
//! [`VillagePolicy`]) is rolled up to that township and published, but counted with its line
//! number as a [`Warnings`] entry and listed in the rejects file too, marked as a warning; with
//! [`VillagePolicy::Strict`] it is rejected instead ([`RejectReason::UnknownVillage`]).
//!
//! Nothing this module returns carries bytes of the input: errors name line numbers, lengths,
//! counts, the field name the publisher asked for and what is wrong, and the serialised
//! [`PartitionSummary`] holds only numbers and reasons. Whoever can make a node publish a file
//! (the HTTP API) must not be able to read it back that way, e.g. a key file published as CSV.
//! Only the operator's rejects file shows (truncated) values; see [`crate::line_report`].

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use backflow_topology::RegionCode;
use serde::Serialize;

pub use crate::fields::{csv_header_fields, field_value, Format};
use crate::line_report::RejectsFile;
pub use crate::line_report::{
    LineReport, RejectReason, Rejects, WarningReason, Warnings, REJECT_LINES_KEPT_MAX,
};
use crate::scan::{self, Outcome, ScannedLine, Scanner};
pub use crate::township_index::{RegionField, VillagePolicy};
use crate::township_index::{Routed, TownshipIndex};

/// One record may not exceed this many bytes: a longer "line" is almost certainly a wrong file
/// or a missing newline, and we refuse to buffer it unboundedly.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Read block size: large enough that per-read syscall cost vanishes against the scan.
const READ_BLOCK_BYTES: usize = 8 * 1024 * 1024;
/// The first read's block, doubled up to [`READ_BLOCK_BYTES`] while reads fill it.
const FIRST_BLOCK_BYTES: usize = 64 * 1024;

/// Streams one partition's content (whole lines, each ending in `\n`) to `out`, piece by piece.
/// May be called more than once (e.g. once to hash, once to store).
pub type Replay<'a> = dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> + 'a;

/// Receives each township's partition, townships in ascending code order.
pub trait PartitionSink {
    fn partition(
        &mut self,
        township: RegionCode,
        records: u64,
        bytes: u64,
        replay: &mut Replay<'_>,
    ) -> Result<()>;
}

#[derive(Clone, Debug)]
pub struct PartitionConfig {
    pub format: Format,
    /// The region field's name, and the [`VillagePolicy`] for unknown villages in it.
    pub region_field: RegionField,
    /// The publisher's region: records outside it are rejected as foreign.
    pub scope: RegionCode,
    /// Cap on buffered record bytes before a run is spilled to `spill_dir`.
    pub buffer_bytes_max: usize,
    /// Where runs go (deleted afterwards).
    pub spill_dir: PathBuf,
    /// Where every rejected line (and every warned one, marked `warning:`) is listed, if
    /// anywhere.
    pub rejects_path: Option<PathBuf>,
}

/// What a partitioning pass found.
#[derive(Debug, Serialize)]
pub struct PartitionSummary {
    pub input_bytes: u64,
    pub lines: u64,
    pub records_routed: u64,
    pub townships_with_records: u64,
    /// Every township of the scope, with or without records (each gets a partition).
    pub townships_in_scope: u64,
    pub runs_spilled: u64,
    /// CSV header line exactly as read, line terminator included; empty for NDJSON. Not
    /// serialised: the summary is reported through the API, and the header is input bytes
    /// (the publisher's schema carries it, signed, for those entitled to the data).
    #[serde(skip_serializing)]
    pub header: Vec<u8>,
    pub rejects: Rejects,
    /// Records routed and published, but reported (unknown villages rolled up to their
    /// township); counted in `records_routed`, not in `rejects`.
    pub warnings: Warnings,
}

/// A township's bytes in a run: (township index, offset, length, records).
type Segment = (u32, u64, u64, u64);

/// A spilled run: township index → (offset, len, records) within the run file. The file is
/// deleted when the run is dropped: after the sink has had every partition, and on every error
/// path too (a failed publish leaves no spill behind).
struct Run {
    path: PathBuf,
    segments: Vec<Segment>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Partitioner<'a> {
    cfg: &'a PartitionConfig,
    index: TownshipIndex,
    /// Routed record bytes since the last spill, in input order. One arena instead of one
    /// growing buffer per township: no per-township reallocation, no 41k small vectors.
    arena: Vec<u8>,
    /// (township index, offset in arena, length) per buffered record.
    recs: Vec<(u32, u32, u32)>,
    runs: Vec<Run>,
    /// Index of the region field (CSV only).
    field_index: usize,
    summary: PartitionSummary,
    rejects_file: RejectsFile,
    /// One scan result per thread, kept between blocks (no allocation per block).
    scanned: Vec<Vec<ScannedLine>>,
    /// Threads a large block's scan and a large spill are spread over.
    threads: usize,
    /// Blocks smaller than this are scanned on this thread alone.
    parallel_bytes_min: usize,
}

impl Partitioner<'_> {
    /// Threads worth spending on `bytes` of work: one below `parallel_bytes_min` (a thread's
    /// start costs more), else one per scan thread.
    fn threads_for(&self, bytes: usize) -> usize {
        if bytes >= self.parallel_bytes_min {
            self.threads
        } else {
            1
        }
    }

    /// What a scan of this input needs: its format and where its region field is.
    fn scanner(&self) -> Scanner<'_> {
        Scanner {
            format: self.cfg.format,
            field_index: self.field_index,
            field_name: &self.cfg.region_field.name,
            index: &self.index,
        }
    }

    /// Partitions `data`, whole lines (each ending in `\n`), the first numbered `line_no`;
    /// returns how many lines it held. Scanned on up to `scanned.len()` threads when large
    /// (see [`crate::scan`]), applied here in input order.
    fn lines(&mut self, line_no: u64, data: &[u8]) -> Result<u64> {
        let threads = self.threads_for(data.len());
        let mut outs = std::mem::take(&mut self.scanned);
        let starts = self.scanner().scan(data, &mut outs[..threads]);
        let mut next = line_no;
        let mut applied = Ok(());
        // Routed lines that follow each other in `data` are copied into the arena together:
        // one copy per run of them, not one per record (a national register's 6 M records
        // of ~80 bytes each spent a fifth of partitioning in per-record copies).
        let mut pending = 0..0;
        'pieces: for (k, &base) in starts.iter().enumerate() {
            let mut from = base;
            for line in &outs[k] {
                let to = base + line.end as usize;
                applied = self.apply(next, data, from..to, line.outcome, &mut pending);
                if applied.is_err() {
                    break 'pieces;
                }
                next += 1;
                from = to;
            }
        }
        self.arena.extend_from_slice(&data[pending]);
        self.scanned = outs;
        applied?;
        Ok(next - line_no)
    }

    /// Applies one scanned line, `data[line]` (with its `\n`), in input order: buffers a
    /// routed record, counts and reports a rejected or warned one. Routed bytes not yet in
    /// the arena are `data[pending]`, copied when a line breaks the run or before a spill.
    fn apply(
        &mut self,
        line_no: u64,
        data: &[u8],
        line: Range<usize>,
        outcome: Outcome,
        pending: &mut Range<usize>,
    ) -> Result<()> {
        match outcome {
            Outcome::Blank => {}
            Outcome::Routed(Routed {
                township,
                unknown_village,
            }) => {
                if unknown_village {
                    let reason = WarningReason::UnknownVillageRolledUp;
                    self.summary.warnings.add(line_no, reason);
                    self.report(line_no, reason.label(), &data[line.clone()])?;
                }
                if pending.end != line.start {
                    self.arena.extend_from_slice(&data[pending.clone()]);
                    *pending = line.start..line.start;
                }
                let offset = self.arena.len() + pending.len();
                // Offsets fit u32: the arena is spilled before it reaches the cap (< 4 GiB).
                self.recs.push((township, offset as u32, line.len() as u32));
                pending.end = line.end;
                self.summary.records_routed += 1;
                if offset + line.len() > self.cfg.buffer_bytes_max {
                    self.arena.extend_from_slice(&data[pending.clone()]);
                    *pending = line.end..line.end;
                    self.spill()?;
                }
            }
            Outcome::Rejected(reason) => {
                self.summary.rejects.add(line_no, reason);
                self.report(line_no, reason.label(), &data[line])?;
            }
            Outcome::Parsed(_) => unreachable!("the scan looks every parsed line up"),
        }
        Ok(())
    }

    /// Lists a line in the rejects file: its region field's value, or the whole line when
    /// the field cannot be found. Rare (rejects and warnings), so the field is found again
    /// here rather than carried for every line.
    fn report(&mut self, line_no: u64, label: &str, line: &[u8]) -> Result<()> {
        if self.rejects_file.0.is_none() {
            return Ok(());
        }
        let body = scan::body(line);
        match self.scanner().field(body) {
            Ok(Some(value)) => self.rejects_file.write(line_no, label, &value),
            _ => self.rejects_file.write(line_no, label, body),
        }
    }

    /// Counting sort of the buffered records by township: O(records + townships in scope),
    /// stable. The `j`-th township of the scope (dense index `scope.start + j`: only those are
    /// routed) has records `order[start[j]..start[j + 1]]` (their (offset, length) in the
    /// arena), in input order.
    fn group_by_township(&self) -> (Vec<u32>, Vec<(u32, u32)>) {
        let base = self.index.scope.start;
        let n = self.index.scope.len();
        let mut start = vec![0u32; n + 1];
        for &(t, _, _) in &self.recs {
            start[t as usize - base + 1] += 1;
        }
        for j in 0..n {
            start[j + 1] += start[j];
        }
        let mut next = start.clone();
        let mut order = vec![(0u32, 0u32); self.recs.len()];
        for &(t, offset, len) in &self.recs {
            let j = t as usize - base;
            order[next[j] as usize] = (offset, len);
            next[j] += 1;
        }
        (start, order)
    }

    /// Writes the buffered records out as one run, grouped by township (stable: input order
    /// within a township), and empties the arena.
    fn spill(&mut self) -> Result<()> {
        if self.recs.is_empty() {
            return Ok(());
        }
        let (start, order) = self.group_by_township();
        // One file per scan thread (for an arena worth it), each for a range of townships with
        // about as many records: gathering the records (a cache miss each) and writing them
        // is spread over the cores like the scan. A township's records of this spill are all
        // in one file, and the files are numbered in township order, so (township, run) order
        // is still published order.
        let parts = self.threads_for(self.arena.len());
        let total = self.recs.len();
        let mut bounds = vec![0usize];
        for k in 1..parts {
            let target = total * k / parts;
            // The first township before which `target` records lie.
            let j = start.partition_point(|&s| (s as usize) < target);
            bounds.push(j.clamp(*bounds.last().unwrap_or(&0), self.index.scope.len()));
        }
        bounds.push(self.index.scope.len());
        let mut files = Vec::with_capacity(parts);
        for _ in 0..parts {
            let path = self
                .cfg
                .spill_dir
                .join(format!("run-{:05}.bin", self.runs.len()));
            let file = File::create(&path)
                .with_context(|| format!("creating spill run {}", path.display()))?;
            // Pushed now, segments filled in below: a failed write still deletes the file.
            self.runs.push(Run {
                path,
                segments: Vec::new(),
            });
            files.push(file);
        }
        let base = self.index.scope.start;
        let (arena, start, order) = (&self.arena, &start, &order);
        let written: Vec<Result<Vec<Segment>>> = std::thread::scope(|scope| {
            let writers: Vec<_> = files
                .into_iter()
                .zip(bounds.windows(2))
                .map(|(file, range)| {
                    let townships = range[0]..range[1];
                    scope.spawn(move || write_run(file, arena, start, order, base, townships))
                })
                .collect();
            writers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow!("a spill thread panicked")))
                })
                .collect()
        });
        let first = self.runs.len() - parts;
        for (run, segments) in self.runs[first..].iter_mut().zip(written) {
            run.segments = segments?;
        }
        self.arena.clear();
        self.recs.clear();
        self.summary.runs_spilled += 1;
        Ok(())
    }

    /// Emits every township of the scope, in code order, to the sink.
    fn finish(mut self, sink: &mut dyn PartitionSink) -> Result<PartitionSummary> {
        // The remainder (what was not spilled) is emitted straight from the arena.
        let (mem_start, mem_order) = self.group_by_township();
        let mut files: Vec<File> = self
            .runs
            .iter()
            .map(|r| File::open(&r.path))
            .collect::<std::io::Result<_>>()?;
        // Every run's segments, (township, run, offset, len, records), sorted by township and
        // then run (= published order): one walk over the scope takes each township's in turn.
        // O(segments) however many runs there are.
        let mut all: Vec<(u32, usize, u64, u64, u64)> = self
            .runs
            .iter()
            .enumerate()
            .flat_map(|(r, run)| {
                run.segments
                    .iter()
                    .map(move |&(t, offset, len, n)| (t, r, offset, len, n))
            })
            .collect();
        all.sort_unstable_by_key(|&(t, r, ..)| (t, r));
        let largest = all.iter().map(|s| s.3).max().unwrap_or(0);
        let mut copy_buf = vec![0u8; largest.min(1024 * 1024) as usize];
        let mut next = 0;
        let scope = self.index.scope.clone();
        for i in scope.clone() {
            let code = self.index.codes[i];
            self.summary.townships_in_scope += 1;
            // This township's segments across runs, in run (= published) order.
            let first = next;
            while all.get(next).is_some_and(|s| s.0 as usize == i) {
                next += 1;
            }
            let segments = &all[first..next];
            let mut records: u64 = segments.iter().map(|s| s.4).sum();
            let mut bytes: u64 = segments.iter().map(|s| s.3).sum();
            let j = i - scope.start;
            let mem = &mem_order[mem_start[j] as usize..mem_start[j + 1] as usize];
            records += mem.len() as u64;
            bytes += mem.iter().map(|&(_, len)| u64::from(len)).sum::<u64>();
            if records > 0 {
                self.summary.townships_with_records += 1;
            }
            let mut replay = |out: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<()> {
                for &(_, r, offset, len, _) in segments {
                    let file = &mut files[r];
                    file.seek(SeekFrom::Start(offset))?;
                    let mut left = len;
                    while left > 0 {
                        let want = left.min(copy_buf.len() as u64) as usize;
                        file.read_exact(&mut copy_buf[..want])?;
                        out(&copy_buf[..want])?;
                        left -= want as u64;
                    }
                }
                gather(&self.arena, mem, out)
            };
            sink.partition(code, records, bytes, &mut replay)?;
        }
        debug_assert_eq!(next, all.len(), "every segment is of a township in scope");
        // The run files go when `self.runs` is dropped, on return.
        if let Some(f) = &mut self.rejects_file.0 {
            f.flush()?;
        }
        Ok(self.summary)
    }
}

/// Writes the grouped records of the scope's townships `townships` (dense indexes from the
/// scope's start) to `file`; returns their segments (township, offset, length, records).
fn write_run(
    file: File,
    arena: &[u8],
    start: &[u32],
    order: &[(u32, u32)],
    base: usize,
    townships: Range<usize>,
) -> Result<Vec<Segment>> {
    let mut out = BufWriter::with_capacity(4 * 1024 * 1024, file);
    let mut segments = Vec::new();
    let mut offset = 0u64;
    for j in townships {
        let (a, b) = (start[j] as usize, start[j + 1] as usize);
        if a == b {
            continue;
        }
        let mut len = 0u64;
        gather(arena, &order[a..b], &mut |record| {
            out.write_all(record)?;
            len += record.len() as u64;
            Ok(())
        })?;
        segments.push(((base + j) as u32, offset, len, (b - a) as u64));
        offset += len;
    }
    out.flush()?;
    Ok(segments)
}

/// Hands out the arena's records at `records` ((offset, length) each) in turn. The records
/// of one township lie all over the arena (hundreds of MB), so each is a cache miss: a few
/// records ahead are touched first, in a loop whose loads do not wait for each other, and the
/// processor overlaps their misses instead of taking them one by one in the copy (the
/// gathering of a national register, 6 M records, was a fifth of a publish's time in `perf`).
fn gather(
    arena: &[u8],
    records: &[(u32, u32)],
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    const AHEAD: usize = 16;
    for batch in records.chunks(AHEAD) {
        let mut touched = 0u8;
        for &(offset, len) in batch {
            // A record is at least its `\n`; its first and last byte may be two cache lines.
            let (first, last) = (offset as usize, (offset + len) as usize - 1);
            touched ^= arena[first] ^ arena[last];
        }
        std::hint::black_box(touched);
        for &(offset, len) in batch {
            out(&arena[offset as usize..(offset + len) as usize])?;
        }
    }
    Ok(())
}

/// How a partitioning pass reads and scans. The result never depends on it.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Read at most this many bytes at a time (clamped to 1..=[`LINE_BYTES_MAX`]).
    pub block_bytes: usize,
    /// Scan a block on up to this many threads (clamped to 1..=[`SCAN_THREADS_MAX`]).
    pub scan_threads: usize,
    /// Scan blocks smaller than this on one thread (a thread's start costs more than a small
    /// block's scan).
    pub parallel_bytes_min: usize,
}

/// More scan threads than this gain nothing: the in-order apply on one thread is then the
/// limit, and a publish must leave the node's own work some cores.
pub const SCAN_THREADS_MAX: usize = 4;

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            block_bytes: READ_BLOCK_BYTES,
            scan_threads: std::thread::available_parallelism().map_or(1, usize::from),
            parallel_bytes_min: 1024 * 1024,
        }
    }
}

/// Partitions `input` into townships of `cfg.scope`, calling `progress(bytes_read)` as it goes.
pub fn partition(
    input: &mut dyn Read,
    cfg: &PartitionConfig,
    sink: &mut dyn PartitionSink,
    progress: &mut dyn FnMut(u64),
) -> Result<PartitionSummary> {
    partition_tuned(input, cfg, Tuning::default(), sink, progress)
}

/// [`partition`], reading at most `block_bytes` at a time (clamped to 1..=[`LINE_BYTES_MAX`])
/// instead of 8 MiB. The result does not depend on it; tests and the fuzz target use small
/// blocks so that lines spanning reads (the carry path) are exercised by small inputs.
pub fn partition_in_blocks(
    input: &mut dyn Read,
    cfg: &PartitionConfig,
    block_bytes: usize,
    sink: &mut dyn PartitionSink,
    progress: &mut dyn FnMut(u64),
) -> Result<PartitionSummary> {
    let tuning = Tuning {
        block_bytes,
        ..Tuning::default()
    };
    partition_tuned(input, cfg, tuning, sink, progress)
}

/// [`partition`] with explicit [`Tuning`].
pub fn partition_tuned(
    input: &mut dyn Read,
    cfg: &PartitionConfig,
    tuning: Tuning,
    sink: &mut dyn PartitionSink,
    progress: &mut dyn FnMut(u64),
) -> Result<PartitionSummary> {
    std::fs::create_dir_all(&cfg.spill_dir)?;
    let index = TownshipIndex::new(cfg.scope, cfg.region_field.villages);
    // Arena offsets are u32.
    anyhow::ensure!(
        cfg.buffer_bytes_max < (u32::MAX as usize) - LINE_BYTES_MAX,
        "partition buffer must stay under 4 GiB"
    );
    let rejects_file = match &cfg.rejects_path {
        Some(p) => {
            Some(BufWriter::new(File::create(p).with_context(|| {
                format!("creating rejects file {}", p.display())
            })?))
        }
        None => None,
    };
    let mut p = Partitioner {
        cfg,
        index,
        arena: Vec::with_capacity(cfg.buffer_bytes_max.min(64 * 1024 * 1024)),
        recs: Vec::new(),
        runs: Vec::new(),
        field_index: 0,
        summary: PartitionSummary {
            input_bytes: 0,
            lines: 0,
            records_routed: 0,
            townships_with_records: 0,
            townships_in_scope: 0,
            runs_spilled: 0,
            header: Vec::new(),
            rejects: Rejects::default(),
            warnings: Warnings::default(),
        },
        rejects_file: RejectsFile(rejects_file),
        scanned: vec![Vec::new(); tuning.scan_threads.clamp(1, SCAN_THREADS_MAX)],
        threads: tuning.scan_threads.clamp(1, SCAN_THREADS_MAX),
        parallel_bytes_min: tuning.parallel_bytes_min,
    };
    // At most LINE_BYTES_MAX: a line that fits in one block is then never too long. The block
    // starts small and doubles while reads fill it, so a small file costs no 8 MiB buffer.
    let block_max = tuning.block_bytes.clamp(1, LINE_BYTES_MAX);
    let mut block = vec![0u8; block_max.min(FIRST_BLOCK_BYTES)];
    let too_long = |line_no: u64| {
        anyhow!(
            "line {line_no} is longer than {LINE_BYTES_MAX} bytes; is this a {:?} file?",
            cfg.format
        )
    };
    // Bytes of an incomplete line carried to the next block.
    let mut carry: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    let mut header_pending = cfg.format == Format::Csv;
    let mut at_eof = false;
    while !at_eof {
        let got = read_full(input, &mut block)?;
        at_eof = got == 0;
        p.summary.input_bytes += got as u64;
        progress(p.summary.input_bytes);
        let mut data = &block[..got];
        if at_eof && !carry.is_empty() {
            // A last line without a newline: give it one, so every stored line ends in '\n'.
            carry.push(b'\n');
        }
        loop {
            if !carry.is_empty() {
                match memchr::memchr(b'\n', data) {
                    Some(k) => {
                        carry.extend_from_slice(&data[..=k]);
                        data = &data[k + 1..];
                        // Its newline aside, the line must be within the limit.
                        if carry.len() > LINE_BYTES_MAX + 1 {
                            return Err(too_long(line_no + 1));
                        }
                    }
                    None if at_eof => {}
                    None => {
                        carry.extend_from_slice(data);
                        if carry.len() > LINE_BYTES_MAX {
                            return Err(too_long(line_no + 1));
                        }
                        break;
                    }
                }
                let line = std::mem::take(&mut carry);
                line_no += 1;
                handle_line(&mut p, &mut header_pending, line_no, &line)?;
                carry = line;
                carry.clear();
                if at_eof {
                    break;
                }
                continue;
            }
            if header_pending {
                match memchr::memchr(b'\n', data) {
                    Some(k) => {
                        line_no += 1;
                        handle_line(&mut p, &mut header_pending, line_no, &data[..=k])?;
                        data = &data[k + 1..];
                        continue;
                    }
                    None => {
                        carry.extend_from_slice(data);
                        break;
                    }
                }
            }
            // Every whole line left in the block at once; the incomplete tail is carried.
            let whole = memchr::memrchr(b'\n', data).map_or(0, |k| k + 1);
            line_no += p.lines(line_no + 1, &data[..whole])?;
            carry.extend_from_slice(&data[whole..]);
            break;
        }
        if got == block.len() && block.len() < block_max {
            block.resize((block.len() * 2).min(block_max), 0);
        }
    }
    if header_pending {
        bail!("empty input: a CSV file needs a header line naming the fields");
    }
    p.summary.lines = line_no;
    p.finish(sink)
}

/// The header (first CSV line) or one record.
fn handle_line(
    p: &mut Partitioner<'_>,
    header_pending: &mut bool,
    line_no: u64,
    line: &[u8],
) -> Result<()> {
    if !*header_pending {
        return p.lines(line_no, line).map(|_| ());
    }
    *header_pending = false;
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let fields = csv_header_fields(body);
    // The error names the field asked for and counts, never the header's own names: the
    // header is input bytes (a key file published as CSV would be echoed otherwise).
    p.field_index = fields
        .iter()
        .position(|f| f == &p.cfg.region_field.name)
        .with_context(|| {
            format!(
                "CSV header (line 1: {} fields, {} bytes) has no field {:?}; is this a CSV file \
                 with a header line naming the fields?",
                fields.len(),
                body.len(),
                p.cfg.region_field.name,
            )
        })?;
    p.summary.header = line.to_vec();
    Ok(())
}

/// Fills `buf` as far as the reader allows (fewer bytes only at end of input).
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backflow_topology::Topology;

    #[derive(Default)]
    struct MemSink {
        parts: Vec<(RegionCode, Vec<u8>, u64)>,
    }
    impl PartitionSink for MemSink {
        fn partition(
            &mut self,
            t: RegionCode,
            records: u64,
            bytes: u64,
            replay: &mut Replay<'_>,
        ) -> Result<()> {
            let mut content = Vec::new();
            replay(&mut |b| {
                content.extend_from_slice(b);
                Ok(())
            })?;
            // Replaying twice gives the same bytes.
            let mut again = Vec::new();
            replay(&mut |b| {
                again.extend_from_slice(b);
                Ok(())
            })?;
            assert_eq!(content, again);
            assert_eq!(content.len() as u64, bytes);
            self.parts.push((t, content, records));
            Ok(())
        }
    }

    fn run(input: &str, format: Format, scope: &str, buffer: usize) -> (MemSink, PartitionSummary) {
        let (sink, summary, _) = run_with(input, format, scope, buffer, VillagePolicy::RollUp);
        (sink, summary)
    }

    /// Also returns the rejects file's content.
    fn run_with(
        input: &str,
        format: Format,
        scope: &str,
        buffer: usize,
        villages: VillagePolicy,
    ) -> (MemSink, PartitionSummary, String) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PartitionConfig {
            format,
            region_field: RegionField::new("village", villages),
            scope: RegionCode::parse(scope).unwrap(),
            buffer_bytes_max: buffer,
            spill_dir: dir.path().join("spill"),
            rejects_path: Some(dir.path().join("rejects.tsv")),
        };
        let mut sink = MemSink::default();
        let summary = partition(&mut input.as_bytes(), &cfg, &mut sink, &mut |_| {}).unwrap();
        let rejects = std::fs::read_to_string(dir.path().join("rejects.tsv")).unwrap();
        (sink, summary, rejects)
    }

    fn part<'a>(sink: &'a MemSink, code: &str) -> &'a (RegionCode, Vec<u8>, u64) {
        let c = RegionCode::parse(code).unwrap();
        sink.parts.iter().find(|p| p.0 == c).unwrap()
    }

    const CSV: &str = "id,village,note\n\
        1,110101001001,a\n\
        2,110101002003,\"quoted, comma\"\n\
        3,,missing\n\
        4,11010100100x,bad\n\
        5,999999999999,unknown\n\
        6,\"110101001002\",quoted code\n\
        7,310101002001,shanghai\n\
        8,110101001,township code\n\
        9,110102001001,other county";

    #[test]
    fn csv_partitions_in_order_and_reports_bad_lines() {
        for buffer in [1usize, 40, 1 << 20] {
            let (sink, s) = run(CSV, Format::Csv, "1101", buffer);
            let t1 = part(&sink, "110101001");
            assert_eq!(
                t1.1,
                b"1,110101001001,a\n6,\"110101001002\",quoted code\n8,110101001,township code\n"
            );
            assert_eq!(t1.2, 3);
            assert_eq!(
                part(&sink, "110101002").1,
                b"2,110101002003,\"quoted, comma\"\n"
            );
            // Last line had no newline: it gains one.
            assert_eq!(part(&sink, "110102001").1, b"9,110102001001,other county\n");
            assert_eq!(s.records_routed, 5);
            assert_eq!(s.rejects.total(), 4);
            assert_eq!(
                s.rejects.first_lines,
                vec![
                    (4, RejectReason::MissingRegion),
                    (5, RejectReason::MalformedRegion),
                    (6, RejectReason::UnknownRegion),
                    (8, RejectReason::ForeignRegion),
                ]
            );
            assert_eq!(s.header, b"id,village,note\n");
            // Every township of the scope gets a partition, in code order.
            let codes: Vec<_> = sink.parts.iter().map(|p| p.0).collect();
            let mut sorted = codes.clone();
            sorted.sort();
            assert_eq!(codes, sorted);
            assert_eq!(
                codes.len(),
                Topology::china()
                    .townships_under(RegionCode::parse("1101").unwrap())
                    .len()
            );
            let routed: u64 = sink.parts.iter().map(|p| p.2).sum();
            assert_eq!(routed + s.rejects.total(), s.lines - 1, "nothing lost");
        }
    }

    #[test]
    fn ndjson_partitions_and_rejects() {
        let input = "{\"village\":\"110101001001\",\"x\":[1,{\"y\":2}]}\n\
            {\"x\":1}\n\
            not json\n\
            {\"village\":110101001003}\r\n\
            \n\
            {\"village\":\"310101002001\"}\n";
        let (sink, s) = run(input, Format::Ndjson, "11", 1 << 20);
        assert_eq!(
            part(&sink, "110101001").1,
            b"{\"village\":\"110101001001\",\"x\":[1,{\"y\":2}]}\n{\"village\":110101001003}\r\n"
        );
        assert_eq!(
            s.rejects.first_lines,
            vec![
                (2, RejectReason::MissingRegion),
                (3, RejectReason::BadRecord),
                (6, RejectReason::ForeignRegion),
            ]
        );
    }

    /// Villages: line 2 a known village, 3 a township code, 4 and 7 unknown villages of a
    /// known township (999 and 000 are not in the NBS list there), 5 金门's placeholder village
    /// 000, 6 the township's highest village, 8 an unknown village outside the scope (foreign
    /// wins), 9 an unknown village of an unknown township (unknown township wins).
    const VILLAGES: &str = "id,village\n\
        1,110101001001\n\
        2,110101001\n\
        3,110101001999\n\
        4,350527000000\n\
        5,110101002009\n\
        6,\"110101002000\"\n\
        7,440103001999\n\
        8,119999999999\n";

    #[test]
    fn unknown_village_is_rolled_up_and_warned_by_default() {
        for buffer in [1usize, 1 << 20] {
            let (sink, s, file) =
                run_with(VILLAGES, Format::Csv, "0", buffer, VillagePolicy::default());
            // Published: rolled up into the township, in input order.
            assert_eq!(
                part(&sink, "110101001").1,
                b"1,110101001001\n2,110101001\n3,110101001999\n"
            );
            assert_eq!(
                part(&sink, "110101002").1,
                b"5,110101002009\n6,\"110101002000\"\n"
            );
            assert_eq!(part(&sink, "350527000").1, b"4,350527000000\n");
            assert_eq!(part(&sink, "440103001").1, b"7,440103001999\n");
            assert_eq!(s.records_routed, 7);
            // ... and reported as warnings, with line numbers (the header is line 1).
            let w = WarningReason::UnknownVillageRolledUp;
            assert_eq!(s.warnings.first_lines, vec![(4, w), (7, w), (8, w)]);
            assert_eq!(s.warnings.counts, [(w, 3)].into_iter().collect());
            assert_eq!(s.warnings.total(), 3);
            // Warnings are not rejects.
            assert_eq!(
                s.rejects.first_lines,
                vec![(9, RejectReason::UnknownRegion)]
            );
            assert_eq!(s.records_routed + s.rejects.total(), s.lines - 1);
            // The rejects file lists them, marked as warnings, in line order.
            assert_eq!(
                file,
                "4\twarning: unknown village, rolled up to its township (published)\t110101001999\n\
                 7\twarning: unknown village, rolled up to its township (published)\t110101002000\n\
                 8\twarning: unknown village, rolled up to its township (published)\t440103001999\n\
                 9\tunknown township\t119999999999\n"
            );
            // The summary (the publish report) carries warnings in the shape of rejects.
            let json = serde_json::to_value(&s).unwrap();
            assert_eq!(
                json["warnings"],
                serde_json::json!({
                    "counts": { "unknown_village_rolled_up": 3 },
                    "first_lines": [
                        [4, "unknown_village_rolled_up"],
                        [7, "unknown_village_rolled_up"],
                        [8, "unknown_village_rolled_up"]
                    ]
                })
            );
        }
    }

    #[test]
    fn strict_villages_rejects_unknown_villages() {
        let (sink, s, file) = run_with(VILLAGES, Format::Csv, "11", 1 << 20, VillagePolicy::Strict);
        assert_eq!(part(&sink, "110101001").1, b"1,110101001001\n2,110101001\n");
        assert_eq!(part(&sink, "110101002").1, b"5,110101002009\n");
        assert_eq!(s.records_routed, 3);
        assert_eq!(s.warnings.total(), 0);
        assert!(s.warnings.first_lines.is_empty());
        // Outside the scope (lines 5 and 8) is foreign, whatever the village.
        assert_eq!(
            s.rejects.first_lines,
            vec![
                (4, RejectReason::UnknownVillage),
                (5, RejectReason::ForeignRegion),
                (7, RejectReason::UnknownVillage),
                (8, RejectReason::ForeignRegion),
                (9, RejectReason::UnknownRegion),
            ]
        );
        assert_eq!(s.records_routed + s.rejects.total(), s.lines - 1);
        assert_eq!(
            file.lines().next(),
            Some("4\tunknown village (--strict-villages)\t110101001999")
        );
        assert!(!file.contains("warning:"), "{file}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["rejects"]["counts"]["unknown_village"], 2);
    }

    #[test]
    fn known_villages_are_neither_warned_nor_rejected() {
        // NDJSON too, with the code as a string and as a number.
        let input = "{\"village\":\"110101001001\"}\n\
            {\"village\":110101002009}\n\
            {\"village\":\"350527000000\"}\n\
            {\"village\":\"110101001\"}\n";
        for villages in [VillagePolicy::RollUp, VillagePolicy::Strict] {
            let (sink, s, file) = run_with(input, Format::Ndjson, "0", 1 << 20, villages);
            assert_eq!(s.records_routed, 4);
            assert_eq!(s.warnings.total(), 0);
            assert_eq!(s.rejects.total(), 0);
            assert_eq!(file, "");
            assert_eq!(part(&sink, "110101001").2, 2);
        }
        // 天河区沙河街道 (440103001) has one village, 101; 650104001's are 1, 3–6 and 17–19.
        let index = TownshipIndex::new(RegionCode::NATIONAL, VillagePolicy::Strict);
        for code in [
            "440103001101",
            "650104001001",
            "650104001005",
            "650104001019",
        ] {
            assert!(index.route(code.as_bytes()).is_ok(), "{code}");
        }
        for code in ["440103001001", "650104001002", "650104001007"] {
            assert_eq!(
                index.route(code.as_bytes()),
                Err(RejectReason::UnknownVillage),
                "{code}"
            );
        }
        assert_eq!(
            index.route(b"440103001600"),
            Err(RejectReason::UnknownVillage)
        );
    }

    #[test]
    fn missing_header_field_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PartitionConfig {
            format: Format::Csv,
            region_field: "nope".into(),
            scope: RegionCode::NATIONAL,
            buffer_bytes_max: 1 << 20,
            spill_dir: dir.path().to_path_buf(),
            rejects_path: None,
        };
        let err = partition(
            &mut "a,b\n1,2\n".as_bytes(),
            &cfg,
            &mut MemSink::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("no field \"nope\""), "{err}");
    }

    /// A secret (say the first line of a key file) that a publish must never echo.
    const SECRET: &str = "SECRET-5f3a9c1d7e";

    /// Runs `partition` over `input` in blocks of `block` bytes; the error or the summary, and
    /// the rejects file.
    fn attempt(
        input: &[u8],
        format: Format,
        field: &str,
        villages: VillagePolicy,
        block: usize,
    ) -> (Result<PartitionSummary>, String) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PartitionConfig {
            format,
            region_field: RegionField::new(field, villages),
            scope: RegionCode::parse("11").unwrap(),
            buffer_bytes_max: 64,
            spill_dir: dir.path().join("spill"),
            rejects_path: Some(dir.path().join("rejects.tsv")),
        };
        let mut sink = MemSink::default();
        let result = partition_in_blocks(&mut &input[..], &cfg, block, &mut sink, &mut |_| {});
        // Spill runs are gone whether the pass succeeded or not.
        let left = std::fs::read_dir(&cfg.spill_dir).unwrap().count();
        assert_eq!(left, 0, "spill files left behind");
        let rejects = std::fs::read(dir.path().join("rejects.tsv")).unwrap_or_default();
        (result, String::from_utf8_lossy(&rejects).into_owned())
    }

    /// `text` does not hold the secret, in any form serde_json would put it: as a string, or
    /// as its bytes (`Vec<u8>` serialises as an array of numbers).
    fn assert_no_secret(text: &str, what: &str) {
        assert!(!text.contains(SECRET), "{what} echoes the input: {text}");
        let bytes = serde_json::to_string(SECRET.as_bytes()).unwrap();
        let inner = bytes.trim_start_matches('[').trim_end_matches(']');
        assert!(
            !text.contains(inner),
            "{what} echoes the input bytes: {text}"
        );
    }

    #[test]
    fn errors_and_summary_never_echo_the_input() {
        let long = "x".repeat(LINE_BYTES_MAX + 1);
        // Inputs that fail the whole pass, each with the secret in its first or a later line.
        let failing: Vec<(&str, Format, Vec<u8>)> = vec![
            (
                "no such field in the header",
                Format::Csv,
                format!("{SECRET},-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n")
                    .into_bytes(),
            ),
            (
                "no such field, header without newline",
                Format::Csv,
                format!("id,\"{SECRET}\",note").into_bytes(),
            ),
            (
                "overlong header line",
                Format::Csv,
                format!("village,{SECRET}{long}\n").into_bytes(),
            ),
            (
                "overlong record line, no newline",
                Format::Csv,
                format!("id,village\n1,110101001001\n{SECRET}{long}").into_bytes(),
            ),
            (
                "overlong record line, newline",
                Format::Csv,
                format!("id,village\n{SECRET}{long}\n2,110101001001\n").into_bytes(),
            ),
            (
                "overlong NDJSON line",
                Format::Ndjson,
                format!("{{\"village\":\"{SECRET}{long}\"}}\n").into_bytes(),
            ),
        ];
        for (shape, format, input) in &failing {
            for block in [READ_BLOCK_BYTES, 1 << 20, 7] {
                if input.len() > 1 << 20 && block == 7 {
                    continue; // 16 MiB in 7-byte reads: slow, and no new path.
                }
                let (result, _) = attempt(input, *format, "village", VillagePolicy::Strict, block);
                let err = result.err().unwrap_or_else(|| panic!("{shape}: must fail"));
                assert_no_secret(&format!("{err:#}"), shape);
                assert_no_secret(&format!("{err:?}"), shape);
            }
        }
        // The header error still says what is wrong: the field asked for, and counts.
        let (result, _) = attempt(
            &failing[0].2,
            Format::Csv,
            "village",
            VillagePolicy::Strict,
            64,
        );
        let err = format!("{:#}", result.err().unwrap());
        assert!(err.contains("no field \"village\""), "{err}");
        assert!(err.contains("2 fields"), "{err}");
        let (result, _) = attempt(
            &failing[4].2,
            Format::Csv,
            "village",
            VillagePolicy::Strict,
            64,
        );
        let err = format!("{:#}", result.err().unwrap());
        assert!(err.contains("line 2 is longer than"), "{err}");

        // Inputs that publish, with the secret in the header, in every kind of rejected or
        // warned line, and in published records.
        let csv = format!(
            "id,village,{SECRET}\n\
             {SECRET}\n\
             1,{SECRET},missing\n\
             2,,{SECRET}\n\
             3,999999999999,{SECRET}\n\
             4,120101001001,{SECRET}\n\
             5,\"{SECRET},\n\
             6,110101001999,{SECRET}\n\
             7,110101001001,{SECRET}\n"
        );
        let ndjson = format!(
            "{{\"{SECRET}\":1}}\n\
             {{\"village\":\"{SECRET}\"}}\n\
             {{\"village\":\"999999999999\",\"k\":\"{SECRET}\"}}\n\
             {{\"village\":\"120101001001\",\"k\":\"{SECRET}\"}}\n\
             {{\"village\":{SECRET}}}\n\
             {SECRET}\n\
             [\"{SECRET}\"]\n\
             {{\"village\":\"110101001999\",\"k\":\"{SECRET}\"}}\n\
             {{\"village\":\"110101001001\",\"k\":\"{SECRET}\"}}\n"
        );
        for (format, input, rejected) in [(Format::Csv, &csv, 6), (Format::Ndjson, &ndjson, 7)] {
            for villages in [VillagePolicy::RollUp, VillagePolicy::Strict] {
                for block in [READ_BLOCK_BYTES, 5] {
                    let (result, rejects_file) =
                        attempt(input.as_bytes(), format, "village", villages, block);
                    let summary = result.unwrap();
                    let strict = u64::from(villages == VillagePolicy::Strict);
                    assert_eq!(summary.rejects.total(), rejected + strict, "{format:?}");
                    assert_eq!(summary.records_routed, 2 - strict, "{format:?}");
                    let json = serde_json::to_string(&summary).unwrap();
                    assert_no_secret(&json, "the summary");
                    assert_no_secret(&format!("{:?}", summary.rejects), "the rejects report");
                    // The operator's rejects file does show values (truncated): that is what it
                    // is for, and why it stays in the node's data directory.
                    assert!(rejects_file.contains(SECRET), "{rejects_file}");
                }
            }
        }
    }

    /// Scanning on several threads gives what one thread gives: the same partitions, in the
    /// same order, the same line numbers in the summary and in the rejects file — with
    /// rejects, warnings, blank lines and spills spread over every piece.
    #[test]
    fn scan_threads_do_not_change_the_result() {
        let mut csv = String::from("id,village\n");
        let mut ndjson = String::new();
        for n in 0..3_000 {
            let value = match n % 7 {
                0 => "110101001999".to_string(), // unknown village: a warning
                1 => "44190000".to_string(),     // malformed
                2 => "441900003001".to_string(), // foreign to 北京
                _ => format!("1101010{:02}001", 1 + n % 13),
            };
            csv.push_str(&format!("{n},{value}\n"));
            ndjson.push_str(&format!("{{\"village\":\"{value}\",\"n\":{n}}}\n"));
            if n % 11 == 0 {
                ndjson.push('\n');
            }
        }
        for (input, format) in [(csv, Format::Csv), (ndjson, Format::Ndjson)] {
            let outcome = |tuning: Tuning| {
                let dir = tempfile::tempdir().unwrap();
                let cfg = PartitionConfig {
                    format,
                    region_field: "village".into(),
                    scope: RegionCode::parse("11").unwrap(),
                    buffer_bytes_max: 5_000,
                    spill_dir: dir.path().join("spill"),
                    rejects_path: Some(dir.path().join("rejects.tsv")),
                };
                let mut sink = MemSink::default();
                let s =
                    partition_tuned(&mut input.as_bytes(), &cfg, tuning, &mut sink, &mut |_| {})
                        .unwrap();
                let rejects = std::fs::read(dir.path().join("rejects.tsv")).unwrap();
                assert!(s.runs_spilled > 1, "spills happen");
                let summary = serde_json::to_string(&s).unwrap();
                (sink.parts, summary, rejects)
            };
            let serial = outcome(Tuning {
                block_bytes: 4096,
                scan_threads: 1,
                parallel_bytes_min: usize::MAX,
            });
            assert!(serial.0.len() > 5 && serial.2.len() > 1000);
            for (block_bytes, scan_threads) in [(4096, 2), (4096, 3), (50_000, 4), (997, 2)] {
                let parallel = outcome(Tuning {
                    block_bytes,
                    scan_threads,
                    parallel_bytes_min: 1,
                });
                assert!(
                    parallel == serial,
                    "{format:?}: {scan_threads} threads, {block_bytes}-byte blocks"
                );
            }
        }
    }

    #[test]
    fn block_size_does_not_change_the_result() {
        let ndjson = "{\"village\":\"110101001001\"}\n\n{\"village\":110101002003}\r\n\
                      not json\n{\"village\":\"110101001999\"}";
        for (input, format) in [
            (CSV, Format::Csv),
            (VILLAGES, Format::Csv),
            (ndjson, Format::Ndjson),
        ] {
            let outcome = |block: usize| {
                let dir = tempfile::tempdir().unwrap();
                let cfg = PartitionConfig {
                    format,
                    region_field: "village".into(),
                    scope: RegionCode::parse("11").unwrap(),
                    buffer_bytes_max: 30,
                    spill_dir: dir.path().join("spill"),
                    rejects_path: Some(dir.path().join("rejects.tsv")),
                };
                let mut sink = MemSink::default();
                let s =
                    partition_in_blocks(&mut input.as_bytes(), &cfg, block, &mut sink, &mut |_| {})
                        .unwrap();
                let rejects = std::fs::read(dir.path().join("rejects.tsv")).unwrap();
                let summary = serde_json::to_string(&s).unwrap();
                (sink.parts, summary, s.header, rejects)
            };
            let whole = outcome(READ_BLOCK_BYTES);
            for block in [1, 2, 3, 5, 16, 17, 64] {
                assert_eq!(outcome(block), whole, "{format:?}, {block}-byte blocks");
            }
        }
    }
}
