//! Publisher side of return-flow: partition a file, store each township's partition as
//! content-addressed chunk groups, and build + sign the manifest. The signed manifest and its
//! entries are then handed to the node's `ReturnFlow` state machine, which pushes them down.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{anyhow, bail, Result};
use backflow_protocol::catalog::{CatalogOrigin, DataType};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::manifest::{
    build_manifest, DatasetId, HeldVersion, OutboardBuilder, PartitionEntry, Schema, SchemaField,
    SignedManifest, CHUNK_GROUP_BYTES,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::{
    ANNOUNCE_ENTRIES_MAX, NAME_BYTES_MAX, PARTITIONS_PER_MANIFEST_MAX, SCHEMA_FIELDS_MAX,
    SCHEMA_HEADER_BYTES_MAX,
};
use backflow_topology::RegionCode;
use serde::Serialize;

use crate::aligned_buf::AlignedBuf;
use crate::partition::{
    partition, Format, PartitionConfig, PartitionSink, PartitionSummary, RegionField, Replay,
};
use crate::store::segment::SegmentWriter;
use crate::store::{is_inline, Store};

/// How long a published manifest stays valid: receivers refuse it afterwards (freeze defence),
/// so the publisher re-publishes at least this often.
pub const MANIFEST_VALIDITY_MS: u64 = 30 * DAY_MS;
/// Buffered record bytes before the partitioner spills a run to disk.
pub const PARTITION_BUFFER_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Content bytes per write while loading a partition (a whole number of 16 KiB groups).
const LOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;
const _: () = assert!(LOAD_BATCH_BYTES.is_multiple_of(CHUNK_GROUP_BYTES as usize));
/// A partition up to this size is kept in memory between hashing and storing (one read).
const SMALL_PARTITION_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub dataset: String,
    /// The region field's name and its village policy: `"village".into()` rolls unknown
    /// villages up with a warning; [`crate::partition::VillagePolicy::Strict`]
    /// (`publish --strict-villages`) rejects them.
    pub region_field: RegionField,
    pub format: Format,
    pub department: String,
    /// Scratch space for spilled runs.
    pub work_dir: PathBuf,
    pub rejects_path: Option<PathBuf>,
}

/// A dataset version ready to hand to the return-flow state machine: one signed manifest per
/// scope (usually one; see [`publish_scopes`]) with its entries.
pub struct Prepared {
    pub manifests: Vec<(SignedManifest, Vec<PartitionEntry>)>,
    pub summary: PartitionSummary,
}

impl Prepared {
    pub fn partitions(&self) -> usize {
        self.manifests.iter().map(|(_, e)| e.len()).sum()
    }
    pub fn records(&self) -> u64 {
        self.manifests
            .iter()
            .flat_map(|(_, e)| e)
            .map(|e| e.records)
            .sum()
    }
    pub fn bytes(&self) -> u64 {
        self.manifests
            .iter()
            .flat_map(|(_, e)| e)
            .map(|e| e.bytes)
            .sum()
    }
}

/// The dataset name of the manifest for `scope` (`NAME`, or `NAME@SCOPE` when split).
pub fn scoped_name(dataset: &str, publisher: RegionCode, scope: RegionCode) -> String {
    if scope == publisher {
        dataset.to_string()
    } else {
        format!("{dataset}@{scope}")
    }
}

/// Whether a held dataset name belongs to user-facing dataset `name`.
pub fn name_matches(held: &str, name: &str) -> bool {
    held == name
        || held
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// Splits entries into manifest scopes. One manifest covers the publisher's whole subtree
/// (so a ministry publishes a dataset once, under one version) as long as it stays within
/// `PARTITIONS_PER_MANIFEST_MAX` and every announce it causes — one per child region with
/// data, a protocol limit the state machine checks on publish — fits `ANNOUNCE_ENTRIES_MAX`.
/// For China at national that is one manifest: the largest province has ~3,400 townships.
/// Only a child subtree over the announce limit gets manifests of its own, recursively.
pub fn publish_scopes(
    publisher: RegionCode,
    entries: Vec<PartitionEntry>,
) -> Vec<(RegionCode, Vec<PartitionEntry>)> {
    let Some(child_level) = publisher.level().child() else {
        return vec![(publisher, entries)];
    };
    let mut by_child: std::collections::BTreeMap<RegionCode, Vec<PartitionEntry>> =
        Default::default();
    let mut here = Vec::new();
    for e in entries {
        match e.region.ancestor_at(child_level) {
            Some(c) => by_child.entry(c).or_default().push(e),
            None => here.push(e),
        }
    }
    let mut split = Vec::new();
    for (child, es) in by_child {
        if es.len() > ANNOUNCE_ENTRIES_MAX {
            split.push((child, es));
        } else {
            here.extend(es);
        }
    }
    if here.len() > PARTITIONS_PER_MANIFEST_MAX as usize {
        // Too many for one manifest even so: every child subtree gets its own.
        let mut own = Vec::new();
        let mut by_child: std::collections::BTreeMap<RegionCode, Vec<PartitionEntry>> =
            Default::default();
        for e in here {
            match e.region.ancestor_at(child_level) {
                Some(c) => by_child.entry(c).or_default().push(e),
                None => own.push(e),
            }
        }
        here = own;
        split.extend(by_child);
    }
    let mut out = Vec::new();
    if !here.is_empty() {
        here.sort_unstable_by_key(|e| e.region);
        out.push((publisher, here));
    }
    for (child, es) in split {
        out.extend(publish_scopes(child, es));
    }
    out
}

/// What a publish did (before delivery).
#[derive(Debug, Serialize)]
pub struct PublishOutcome {
    pub version: u64,
    pub partitions: usize,
    pub records: u64,
    pub bytes: u64,
    pub summary: PartitionSummary,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub dataset: String,
    pub version: u64,
    /// One manifest hash per scope (usually one).
    pub manifests: Vec<String>,
    pub partitions: usize,
    pub records: u64,
    pub bytes: u64,
    pub summary: PartitionSummary,
}

/// Partitions from this size on keep their outboard on disk. Below it, building the outboard
/// when the partition is first served reads and hashes under a megabyte (well under a
/// millisecond), and a national publish would otherwise write thousands of tiny files more.
pub const OUTBOARD_STORED_BYTES_MIN: u64 = 1 << 20;

/// Kept partitions handed to the storing thread in one message (fewer wake-ups for 41,352
/// partitions of ~12 KB than one message each).
const STORE_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Messages waiting for the storing thread. Memory bound: a message holds at most
/// `STORE_BATCH_BYTES` plus one kept partition (≤ `SMALL_PARTITION_BYTES_MAX`), so at most
/// 4 × 20 MiB wait, plus the message being stored and the one being filled.
const STORE_QUEUE_MESSAGES: usize = 4;

/// A small partition's bytes on their way to the storing thread.
struct Kept {
    /// Its place among the partitions emitted, so entries keep the partitioner's order.
    seq: usize,
    township: RegionCode,
    records: u64,
    data: Vec<u8>,
}

/// What has been stored: entries (tagged with their place in the partitioner's order) and
/// the content files written, to be synced before the index is flushed.
#[derive(Default)]
struct Stored {
    entries: Vec<(usize, PartitionEntry)>,
    files: Vec<[u8; 32]>,
}

impl Stored {
    /// Records a partition whose content is stored (and its outboard, if it keeps one).
    fn add(
        &mut self,
        store: &Store,
        seq: usize,
        region: RegionCode,
        records: u64,
        (content_hash, outboard): ([u8; 32], Vec<u8>),
        bytes: u64,
    ) -> Result<()> {
        if !is_inline(bytes) {
            self.files.push(content_hash);
        }
        // Serving the partition starts from its outboard: without it the first request
        // would wait for a read and hash of the whole partition.
        if bytes >= OUTBOARD_STORED_BYTES_MIN {
            store.put_outboard(&content_hash, &outboard)?;
        }
        self.entries.push((
            seq,
            PartitionEntry {
                region,
                content_hash,
                bytes,
                records,
                // Known only after the header line; `prepare` fills it in.
                schema_hash: [0; 32],
            },
        ));
        Ok(())
    }
}

/// The storing thread: hashes and stores kept partitions while the partitioner goes on with
/// the next ones. Publishing is one pass of partitioning (one core) and one of hashing and
/// storing; on two cores the second no longer waits for the first (a national publish,
/// `partition` bench: see node/README.md).
fn store_kept(store: &Store, batches: Receiver<Vec<Kept>>) -> Result<Stored> {
    let mut stored = Stored::default();
    // Small partitions go into segment files: written once, one write per batch, synced
    // once at the end (see `store::segment`).
    let mut segments = SegmentWriter::new(store)?;
    for batch in batches {
        let mut small: Vec<([u8; 32], &[u8])> = Vec::with_capacity(batch.len());
        for k in &batch {
            // Hashed once whole, not piece by piece: blake3 hashes 16 chunks at once (SIMD)
            // only when handed them together (per-record updates had cost ~12 % of the CPU).
            let mut hasher = OutboardBuilder::new();
            hasher.push(&k.data);
            let hashed = hasher.finish();
            let bytes = k.data.len() as u64;
            if is_inline(bytes) {
                small.push((hashed.0, &k.data));
            } else {
                let mut loader = GroupLoader::new(store, hashed.0, bytes);
                loader.push(&k.data)?;
                loader.finish()?;
            }
            stored.add(store, k.seq, k.township, k.records, hashed, bytes)?;
        }
        segments.store(&small)?;
    }
    segments.finish()?;
    Ok(stored)
}

/// Hands each partition as it is emitted to the storing thread (small ones, kept in memory)
/// or stores it here (large ones, read twice from the partitioner's runs).
struct StoreSink<'s> {
    store: &'s Store,
    /// Partitions emitted so far.
    seq: usize,
    batch: Vec<Kept>,
    batch_bytes: usize,
    to_storer: Option<SyncSender<Vec<Kept>>>,
    /// Large partitions, stored on this thread.
    stored: Stored,
}

impl StoreSink<'_> {
    /// Sends the batch being filled to the storing thread.
    fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let sent = self.to_storer.as_ref().map(|tx| tx.send(batch));
        match sent {
            Some(Ok(())) => Ok(()),
            // The storing thread ended early: its own error is the one reported.
            _ => bail!("the storing thread stopped"),
        }
    }
}

impl PartitionSink for StoreSink<'_> {
    fn partition(
        &mut self,
        township: RegionCode,
        records: u64,
        bytes: u64,
        replay: &mut Replay<'_>,
    ) -> Result<()> {
        if records == 0 {
            // Only regions with records get a partition: the manifest stays as small as the
            // data, and no node is asked to confirm an empty delivery.
            return Ok(());
        }
        let seq = self.seq;
        self.seq += 1;
        if bytes as usize <= SMALL_PARTITION_BYTES_MAX {
            let mut data = Vec::with_capacity(bytes as usize);
            replay(&mut |piece| {
                data.extend_from_slice(piece);
                Ok(())
            })?;
            if data.len() as u64 != bytes {
                bail!(
                    "partition {township}: replayed {} bytes, expected {bytes}",
                    data.len()
                );
            }
            self.batch_bytes += data.len();
            self.batch.push(Kept {
                seq,
                township,
                records,
                data,
            });
            if self.batch_bytes >= STORE_BATCH_BYTES {
                self.send()?;
            }
            return Ok(());
        }
        // A large partition: pass 1 hashes (blake3 = the bao root) and builds the outboard,
        // pass 2 stores 16 KiB groups under the content hash.
        let mut hasher = OutboardBuilder::new();
        replay(&mut |piece| {
            hasher.push(piece);
            Ok(())
        })?;
        let hashed = hasher.finish();
        let mut loader = GroupLoader::new(self.store, hashed.0, bytes);
        replay(&mut |piece| loader.push(piece))?;
        let stored = loader.finish()?;
        if stored != bytes {
            bail!("partition {township}: stored {stored} bytes, expected {bytes}");
        }
        self.stored
            .add(self.store, seq, township, records, hashed, bytes)
    }
}

/// Writes a partition's byte stream into its content file in batches of whole 16 KiB groups
/// (the index entries unlogged: `prepare` flushes before anything refers to them).
pub struct GroupLoader<'s> {
    store: &'s Store,
    content: [u8; 32],
    /// Groups not yet written, starting at `first_group`.
    buf: AlignedBuf,
    first_group: u64,
    total: u64,
    /// The partition's size (a small partition is stored inline: see `store`).
    bytes: u64,
}

impl<'s> GroupLoader<'s> {
    /// `bytes`: the partition's size, so a small partition does not allocate a whole batch.
    pub fn new(store: &'s Store, content: [u8; 32], bytes: u64) -> GroupLoader<'s> {
        GroupLoader {
            store,
            content,
            buf: AlignedBuf::with_capacity(LOAD_BATCH_BYTES.min(bytes.max(1) as usize)),
            first_group: 0,
            total: 0,
            bytes,
        }
    }

    pub fn push(&mut self, mut piece: &[u8]) -> Result<()> {
        self.total += piece.len() as u64;
        while !piece.is_empty() {
            let take = (self.buf.capacity() - self.buf.len()).min(piece.len());
            self.buf.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.buf.len() == self.buf.capacity() {
                self.write()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered groups (whole groups, except at the very end).
    fn write(&mut self) -> Result<()> {
        self.store
            .load_groups(&self.content, self.bytes, self.first_group, &mut self.buf)?;
        self.first_group += (self.buf.len() as u64).div_ceil(CHUNK_GROUP_BYTES);
        self.buf.clear();
        Ok(())
    }

    /// Writes the rest (the last group may be short); returns the bytes stored.
    pub fn finish(mut self) -> Result<u64> {
        if !self.buf.is_empty() {
            self.write()?;
        }
        Ok(self.total)
    }
}

/// Partitions `input` on this thread while a second one hashes and stores what it emits; the
/// entries come back in the partitioner's order (their schema hash left for the caller).
fn partition_and_store(
    store: &Store,
    input: &mut dyn Read,
    cfg: &PartitionConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<(PartitionSummary, Stored)> {
    let (summary, here, there) = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(STORE_QUEUE_MESSAGES);
        let storer = scope.spawn(move || store_kept(store, rx));
        let mut sink = StoreSink {
            store,
            seq: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            to_storer: Some(tx),
            stored: Stored::default(),
        };
        let summary = partition(input, cfg, &mut sink, progress).and_then(|summary| {
            sink.send()?;
            Ok(summary)
        });
        // Closing the channel ends the storing thread's loop.
        sink.to_storer = None;
        let there = storer
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the storing thread panicked")));
        (summary, sink.stored, there)
    });
    // The storing thread's error first: the partitioner only saw the channel close.
    let there = there?;
    let summary = summary?;
    let mut stored = here;
    stored.entries.extend(there.entries);
    stored.entries.sort_unstable_by_key(|(seq, _)| *seq);
    stored.files.extend(there.files);
    Ok((summary, stored))
}

/// Schema from the CSV header line (the region field typed as a region code; the line kept
/// verbatim for export), or for NDJSON just the region field.
pub(crate) fn schema_for(format: Format, header: &[u8], region_field: &str) -> Result<Schema> {
    let names: Vec<String> = match format {
        Format::Csv => {
            let body = header.strip_suffix(b"\n").unwrap_or(header);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            crate::partition::csv_header_fields(body)
        }
        Format::Ndjson => vec![region_field.to_string()],
    };
    if names.len() > SCHEMA_FIELDS_MAX {
        bail!(
            "{} fields exceed the limit of {SCHEMA_FIELDS_MAX}",
            names.len()
        );
    }
    if header.len() > SCHEMA_HEADER_BYTES_MAX {
        bail!(
            "the header line has {} bytes, over the limit of {SCHEMA_HEADER_BYTES_MAX}",
            header.len()
        );
    }
    let fields = names
        .into_iter()
        .map(|name| {
            if name.len() > NAME_BYTES_MAX {
                bail!("field name {name:?} exceeds {NAME_BYTES_MAX} bytes");
            }
            let data_type = if name == region_field {
                DataType::RegionCode
            } else {
                DataType::Text
            };
            Ok(SchemaField { name, data_type })
        })
        .collect::<Result<_>>()?;
    Ok(Schema {
        name: format.name().into(),
        fields,
        header: match format {
            Format::Csv => header.to_vec(),
            Format::Ndjson => Vec::new(),
        },
    })
}

/// Partitions and stores `input` (read once, as it streams: a file or a request body), then
/// builds and signs the manifest(s) (version = held + 1, per scope). `held` gives the
/// currently held version of a (scoped) dataset name.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    store: &Store,
    identity: &NodeIdentity,
    held: &dyn Fn(&DatasetId) -> Option<HeldVersion>,
    req: &PublishRequest,
    input: &mut dyn Read,
    now: UnixMs,
    progress: &mut dyn FnMut(u64),
) -> Result<Prepared> {
    if req.dataset.is_empty() || req.dataset.len() > NAME_BYTES_MAX {
        bail!("dataset name must be 1..={NAME_BYTES_MAX} bytes");
    }
    let cfg = PartitionConfig {
        format: req.format,
        region_field: req.region_field.clone(),
        scope: identity.region,
        buffer_bytes_max: PARTITION_BUFFER_BYTES_MAX,
        spill_dir: req.work_dir.clone(),
        rejects_path: req.rejects_path.clone(),
    };
    let (summary, stored) = partition_and_store(store, input, &cfg, progress)?;
    let schema = schema_for(req.format, &summary.header, &req.region_field.name)?;
    let schema_hash = schema.hash();
    let entries: Vec<PartitionEntry> = stored
        .entries
        .into_iter()
        .map(|(_, e)| PartitionEntry { schema_hash, ..e })
        .collect();
    if entries.is_empty() {
        bail!(
            "no record of {} could be routed to a township in {} ({} rejected)",
            req.dataset,
            identity.region,
            summary.rejects.total()
        );
    }
    // Partitions were written through the page cache and their index without the WAL: make
    // them durable before anything refers to them — content first (synced at the end rather
    // than per partition, so the kernel writes back while partitioning goes on), then the
    // index (a flush writes and syncs its tables). The manifest that refers to them is
    // written after, and synced before the publish returns (`runtime`).
    for content in &stored.files {
        store.sync_content(content)?;
    }
    store.flush()?;
    let mut manifests = Vec::new();
    for (scope, entries) in publish_scopes(identity.region, entries) {
        let name = scoped_name(&req.dataset, identity.region, scope);
        if name.len() > NAME_BYTES_MAX {
            bail!("dataset name {name:?} exceeds {NAME_BYTES_MAX} bytes");
        }
        let held = held(&DatasetId {
            publisher: identity.region,
            department: req.department.clone(),
            name: name.clone(),
        });
        let manifest = build_manifest(
            name,
            held.map_or(1, |h| h.version + 1),
            CatalogOrigin {
                region: identity.region,
                department: req.department.clone(),
            },
            scope,
            now,
            now.plus_ms(MANIFEST_VALIDITY_MS),
            held.map(|h| h.hash),
            schema.clone(),
            &entries,
        )?;
        manifests.push((SignedManifest::sign(manifest, identity)?, entries));
    }
    Ok(Prepared { manifests, summary })
}

/// Default scratch directory for a publish under a data dir.
pub fn work_dir(data_dir: &Path, dataset: &str) -> PathBuf {
    let safe: String = dataset
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    data_dir.join("spill").join(safe)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use backflow_protocol::manifest::RegionProof;
    use backflow_protocol::return_flow::TransferRecord;

    use super::*;

    /// Publish → store → export: every township's export is its published lines, byte for
    /// byte, in published order, under the original header; bad lines are reported.
    #[test]
    fn export_is_byte_identical_to_published_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let identity = NodeIdentity::national(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
        let input = dir.path().join("in.csv");
        let mut f = std::fs::File::create(&input).unwrap();
        writeln!(f, "id,village,text").unwrap();
        let mut want: std::collections::BTreeMap<&str, Vec<u8>> = Default::default();
        // Big enough that one partition spans several 16 KiB groups.
        for i in 0..5000 {
            let t = ["110101001", "440103001", "650104001"][i % 3];
            let line = format!(
                "{i},{t}{:03},\"text, {}\"\n",
                i % 50 + 1,
                "z".repeat(i % 40)
            );
            f.write_all(line.as_bytes()).unwrap();
            want.entry(t)
                .or_default()
                .extend_from_slice(line.as_bytes());
        }
        writeln!(f, "5000,12345,short code").unwrap();
        drop(f);
        let p = prepare_csv(&store, &identity, input, "village".into());
        assert_eq!(p.partitions(), 3);
        assert_eq!(
            p.summary.rejects.first_lines,
            vec![(5002, crate::partition::RejectReason::MalformedRegion)]
        );
        let (manifest, entries) = p.manifests.into_iter().next().unwrap();
        assert_eq!(manifest.manifest.version, 1);
        let record = TransferRecord {
            manifest: Arc::new(manifest),
            entries,
            proof: RegionProof::default(),
            published: true,
        };
        for (t, lines) in &want {
            let out = dir.path().join(format!("{t}.csv"));
            let region = RegionCode::parse(t).unwrap();
            let s = crate::export::export(&store, &record, region, &out).unwrap();
            let mut expected = b"id,village,text\n".to_vec();
            expected.extend_from_slice(lines);
            assert_eq!(std::fs::read(&out).unwrap(), expected);
            assert_eq!(s.partitions, 1);
        }
        // A province's export holds exactly its township's lines.
        let out = dir.path().join("44.csv");
        let s =
            crate::export::export(&store, &record, RegionCode::parse("44").unwrap(), &out).unwrap();
        assert_eq!(s.bytes as usize, want["440103001"].len());
    }

    /// The village policy travels from the request to the partitioner: by default an unknown
    /// village is published with a warning; strict, it is rejected.
    #[test]
    fn request_village_policy_decides_unknown_villages() {
        use crate::partition::{RejectReason, VillagePolicy, WarningReason};
        for strict in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db")).unwrap();
            let identity = NodeIdentity::national(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
            let input = dir.path().join("in.csv");
            std::fs::write(&input, "id,village\n1,110101001001\n2,110101001999\n").unwrap();
            let field = RegionField::new("village", VillagePolicy::from_strict(strict));
            let p = prepare_csv(&store, &identity, input, field);
            let s = &p.summary;
            if strict {
                assert_eq!(p.records(), 1);
                assert_eq!(
                    s.rejects.first_lines,
                    vec![(3, RejectReason::UnknownVillage)]
                );
                assert_eq!(s.warnings.total(), 0);
            } else {
                assert_eq!(p.records(), 2);
                assert_eq!(s.rejects.total(), 0);
                assert_eq!(
                    s.warnings.first_lines,
                    vec![(3, WarningReason::UnknownVillageRolledUp)]
                );
            }
        }
    }

    /// Prepares the CSV file `input` as dataset "t" of department "d" (spilling beside it).
    fn prepare_csv(
        store: &Store,
        identity: &NodeIdentity,
        input: std::path::PathBuf,
        region_field: RegionField,
    ) -> Prepared {
        let work_dir = input.with_extension("spill");
        let req = PublishRequest {
            dataset: "t".into(),
            region_field,
            format: Format::Csv,
            department: "d".into(),
            work_dir,
            rejects_path: None,
        };
        let mut file = std::fs::File::open(&input).unwrap();
        prepare(
            store,
            identity,
            &|_| None,
            &req,
            &mut file,
            UnixMs(1_000),
            &mut |_| {},
        )
        .unwrap()
    }

    fn township_entries(under: RegionCode) -> Vec<PartitionEntry> {
        backflow_topology::Topology::china()
            .townships_under(under)
            .into_iter()
            .map(|t| PartitionEntry {
                region: t,
                content_hash: [0; 32],
                bytes: 1,
                records: 1,
                schema_hash: [0; 32],
            })
            .collect()
    }

    #[test]
    fn national_publishes_the_whole_country_under_one_manifest() {
        let scopes = publish_scopes(RegionCode::NATIONAL, township_entries(RegionCode::NATIONAL));
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0].0, RegionCode::NATIONAL);
        assert_eq!(scopes[0].1.len(), 41_352);
        assert!(scopes[0].1.windows(2).all(|w| w[0].region < w[1].region));
        assert!(name_matches("b@44", "b") && name_matches("b", "b") && !name_matches("bc", "b"));
    }

    #[test]
    fn only_a_child_over_the_announce_limit_gets_its_own_manifest() {
        // A made-up Guangdong with over 16,384 partitions (its townships repeated): over the
        // announce limit, so it gets a manifest of its own, whose announces go to its cities.
        let gd = RegionCode::parse("44").unwrap();
        let mut entries = township_entries(RegionCode::parse("11").unwrap());
        let gd_towns = township_entries(gd);
        let mut big = Vec::new();
        while big.len() + gd_towns.len() <= ANNOUNCE_ENTRIES_MAX {
            big.extend(gd_towns.iter().copied());
        }
        big.extend(gd_towns.iter().copied());
        assert!(big.len() > ANNOUNCE_ENTRIES_MAX);
        let n_beijing = entries.len();
        entries.extend(big);
        let scopes = publish_scopes(RegionCode::NATIONAL, entries);
        assert_eq!(scopes[0].0, RegionCode::NATIONAL);
        assert_eq!(
            scopes[0].1.len(),
            n_beijing,
            "Beijing stays in the national manifest"
        );
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[1].0, gd);
        assert!(scopes[1].1.len() > ANNOUNCE_ENTRIES_MAX);
    }
}
