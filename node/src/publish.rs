//! Publisher side of return-flow: partition a file, store each township's partition as
//! content-addressed chunk groups, and build + sign the manifest. The signed manifest and its
//! entries are then handed to the node's `ReturnFlow` state machine, which pushes them down.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
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

/// Stores each partition as it is emitted and collects the entries.
struct StoreSink<'s> {
    store: &'s Store,
    schema_hash: [u8; 32],
    entries: Vec<PartitionEntry>,
    /// Content files written (large partitions), synced before the index is flushed.
    files: Vec<[u8; 32]>,
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
        // Pass 1: hash (blake3 = the bao root) and the outboard in the same pass, keeping
        // small partitions in memory. A kept partition is hashed once whole, not record by
        // record: blake3 hashes 16 chunks at once (SIMD) only when handed them together, and
        // per-record updates cost a national publish ~12 % of its CPU.
        let mut hasher = OutboardBuilder::new();
        let mut kept: Option<Vec<u8>> = (bytes as usize <= SMALL_PARTITION_BYTES_MAX)
            .then(|| Vec::with_capacity(bytes as usize));
        replay(&mut |piece| {
            match &mut kept {
                Some(k) => k.extend_from_slice(piece),
                None => hasher.push(piece),
            }
            Ok(())
        })?;
        if let Some(k) = &kept {
            hasher.push(k);
        }
        let (content_hash, outboard) = hasher.finish();
        // Pass 2: store 16 KiB groups under the content hash (a small partition straight
        // into the index, without the loader's aligned buffer).
        let stored = match &kept {
            Some(k) if is_inline(bytes) => {
                self.store.load_inline(&content_hash, k)?;
                k.len() as u64
            }
            Some(k) => {
                let mut loader = GroupLoader::new(self.store, content_hash, bytes);
                loader.push(k)?;
                loader.finish()?
            }
            None => {
                let mut loader = GroupLoader::new(self.store, content_hash, bytes);
                replay(&mut |piece| loader.push(piece))?;
                loader.finish()?
            }
        };
        if stored != bytes {
            bail!("partition {township}: stored {stored} bytes, expected {bytes}");
        }
        if !is_inline(bytes) {
            self.files.push(content_hash);
        }
        // Serving the partition starts from its outboard: without it the first request
        // would wait for a read and hash of the whole partition.
        if bytes >= OUTBOARD_STORED_BYTES_MIN {
            self.store.put_outboard(&content_hash, &outboard)?;
        }
        self.entries.push(PartitionEntry {
            region: township,
            content_hash,
            bytes,
            records,
            schema_hash: self.schema_hash,
        });
        Ok(())
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

/// Schema from the CSV header line (the region field typed as a region code; the line kept
/// verbatim for export), or for NDJSON just the region field.
fn schema_for(format: Format, header: &[u8], region_field: &str) -> Result<Schema> {
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
        name: match format {
            Format::Csv => "csv".into(),
            Format::Ndjson => "ndjson".into(),
        },
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
    // The schema hash goes into every entry, but the CSV header is only known after the first
    // line; so partition with a placeholder hash and fix entries up afterwards.
    let mut sink = StoreSink {
        store,
        schema_hash: [0; 32],
        entries: Vec::new(),
        files: Vec::new(),
    };
    let summary = partition(input, &cfg, &mut sink, progress)?;
    let schema = schema_for(req.format, &summary.header, &req.region_field.name)?;
    let schema_hash = schema.hash();
    let mut entries = sink.entries;
    for e in &mut entries {
        e.schema_hash = schema_hash;
    }
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
    for content in &sink.files {
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
