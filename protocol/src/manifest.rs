//! Return-flow manifests (回流, Art. 24): a dataset version partitioned by region, signed once by
//! its publisher, verifiable piecewise.
//!
//! # Region Merkle tree
//! Partitions are the leaves of a Merkle tree shaped like the region tree below the manifest's
//! `scope`. A tree node's hash covers its region code, its own partition's leaf hash (records
//! located at that region itself, if any) and the `(code, hash)` of each child that has data.
//! The signed manifest carries only the root. Hence:
//! - a township verifies its own partition entry with a [`RegionProof`]: the own-leaf and the
//!   siblings' *subtree hashes* at each level above it — never the siblings' data or entries;
//! - a city given the entries of its subtree recomputes its subtree hash ([`RegionTree`]) and
//!   verifies it with its own proof: the union of its counties is verified as a whole.
//!
//! # Chunks
//! A partition's content is a byte string whose blake3 hash is `content_hash`. It travels in
//! 16 KiB chunk groups encoded with bao-tree: every group arrives with the parent hashes linking
//! it to the root, so a receiver verifies each group on arrival ([`decode_groups`]), a bad group
//! is detected at once, and a transfer resumes from whichever groups are already stored.
//!
//! # Data plane stays out of the state machines
//! The return-flow state machine only tracks *which* groups are stored. The shell moves bytes:
//! the sender encodes with [`PartitionOutboard::encode_groups`], the receiver checks with
//! [`decode_groups`] and then reports `groups stored` or `group rejected` to the state machine.
//! simnet models payloads by size and hash and reports outcomes without any bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use backflow_topology::RegionCode;
use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogOrigin, DataType};
use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::time::UnixMs;
use crate::wire::{
    check_len, digest, Bounded, LimitError, ANNOUNCE_ENTRIES_MAX, CHUNK_FRAME_BYTES_MAX,
    NAME_BYTES_MAX, PARTITIONS_PER_MANIFEST_MAX, PROOF_LEVELS_MAX, PROOF_SIBLINGS_PER_LEVEL_MAX,
    SCHEMA_FIELDS_MAX, SCHEMA_HEADER_BYTES_MAX,
};

/// A blake3 digest.
pub type Hash = [u8; 32];

const MANIFEST_DOMAIN: &[u8] = b"backflow/manifest/v1";
const LEAF_DOMAIN: &[u8] = b"backflow/partition-leaf/v1";
const NODE_DOMAIN: &[u8] = b"backflow/region-node/v1";
const SCHEMA_DOMAIN: &[u8] = b"backflow/schema/v1";

/// Bytes per chunk group: bao-tree's 16 KiB groups (chunk log 4), the unit of transfer and of
/// verification. Small enough to detect a bad group early, large enough that proof overhead
/// (64 B per tree level) stays under 1 %.
pub const CHUNK_GROUP_BYTES: u64 = 16 * 1024;
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
const CHUNKS_PER_GROUP: u64 = 16;
/// Groups in one chunk frame: 64 × 16 KiB = 1 MiB, under `CHUNK_FRAME_BYTES_MAX` with proofs.
/// Large enough that per-frame costs (a stream, a task, a write, a batch) stay a few percent
/// of a transfer; small enough that a rejected frame wastes little.
pub const CHUNK_GROUPS_PER_FRAME_MAX: u64 = 64;
/// One partition's content. 1 TiB is far beyond any single region's share of a dataset.
pub const PARTITION_BYTES_MAX: u64 = 1 << 40;

/// Number of 16 KiB groups in `bytes` of content.
pub fn group_count(bytes: u64) -> u64 {
    bytes.div_ceil(CHUNK_GROUP_BYTES)
}

/// One column of a dataset schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    pub data_type: DataType,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    pub fields: Vec<SchemaField>,
    /// The file's header line exactly as published, line terminator included (a CSV header;
    /// empty for formats without one), so an export is byte-identical to the published file.
    /// Bytes, not text: a ministry's CSV may be GBK-encoded.
    #[serde(with = "serde_bytes")]
    pub header: Vec<u8>,
}

impl Schema {
    pub fn hash(&self) -> Hash {
        digest(SCHEMA_DOMAIN, self)
    }
}

/// One region's partition of a dataset version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub region: RegionCode,
    /// blake3 of the content (equal to the bao root).
    pub content_hash: Hash,
    pub bytes: u64,
    pub records: u64,
    pub schema_hash: Hash,
}

impl PartitionEntry {
    pub fn leaf_hash(&self) -> Hash {
        digest(LEAF_DOMAIN, self)
    }

    pub fn groups(&self) -> u64 {
        group_count(self.bytes)
    }

    /// Builds the entry for real content.
    pub fn for_content(region: RegionCode, content: &[u8], records: u64, schema: &Schema) -> Self {
        PartitionEntry {
            region,
            content_hash: *blake3::hash(content).as_bytes(),
            bytes: content.len() as u64,
            records,
            schema_hash: schema.hash(),
        }
    }
}

/// The signed description of one dataset version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub dataset: String,
    /// Strictly increasing per dataset; receivers refuse anything older than what they hold.
    pub version: u64,
    /// The publishing department and its jurisdiction (the signer).
    pub publisher: CatalogOrigin,
    /// Root of the partition tree: the publisher's region or a region inside it.
    pub scope: RegionCode,
    pub issued_at: UnixMs,
    /// Receivers refuse the manifest from this instant on: a replayed old manifest cannot
    /// freeze a region on stale data indefinitely.
    pub expires_at: UnixMs,
    /// Hash of the previous version's manifest, chaining versions.
    pub previous: Option<Hash>,
    pub schema: Schema,
    pub partitions_root: Hash,
    pub partition_count: u32,
    pub records_total: u64,
    pub bytes_total: u64,
}

impl Manifest {
    /// Names this version: what receipts, wants and chunk frames refer to.
    pub fn hash(&self) -> Hash {
        digest(MANIFEST_DOMAIN, self)
    }
}

/// A manifest with its publisher's chain and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub signer: CertChain,
    pub signature: Signature,
}

impl Bounded for SignedManifest {
    fn check_limits(&self) -> Result<(), LimitError> {
        let m = &self.manifest;
        check_chain_limits(&self.signer)?;
        check_len("dataset id bytes", m.dataset.len(), NAME_BYTES_MAX)?;
        check_len(
            "department bytes",
            m.publisher.department.len(),
            NAME_BYTES_MAX,
        )?;
        check_len("schema name bytes", m.schema.name.len(), NAME_BYTES_MAX)?;
        check_len("schema fields", m.schema.fields.len(), SCHEMA_FIELDS_MAX)?;
        check_len(
            "schema header bytes",
            m.schema.header.len(),
            SCHEMA_HEADER_BYTES_MAX,
        )?;
        for f in &m.schema.fields {
            check_len("schema field name bytes", f.name.len(), NAME_BYTES_MAX)?;
        }
        check_len(
            "partitions",
            m.partition_count as usize,
            PARTITIONS_PER_MANIFEST_MAX as usize,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("manifest published for {publisher} but signed by {signer}")]
    WrongSigner {
        publisher: RegionCode,
        signer: RegionCode,
    },
    #[error("scope {scope} is outside the publisher's region {publisher}")]
    ScopeOutsidePublisher {
        scope: RegionCode,
        publisher: RegionCode,
    },
    #[error("manifest issued at {issued_at} is in the future (now {now})")]
    NotYetIssued { issued_at: UnixMs, now: UnixMs },
    #[error("manifest expired at {expires_at} (now {now})")]
    Expired { expires_at: UnixMs, now: UnixMs },
    /// Longer than `ManifestPolicy::validity_ms_max`, or outliving the signer's certificate
    /// chain (`max_ms` is then the time from `issued_at` to the chain's earliest expiry).
    #[error("manifest validity of {validity_ms} ms exceeds the limit of {max_ms} ms")]
    ValidityTooLong { validity_ms: u64, max_ms: u64 },
    #[error("version 0 is not a valid version")]
    ZeroVersion,
    #[error("rollback: version {offered} of {dataset} is older than the held version {held}")]
    Rollback {
        dataset: String,
        held: u64,
        offered: u64,
    },
    #[error("equivocation: two different manifests for version {version} of {dataset}")]
    Equivocation { dataset: String, version: u64 },
    #[error("version {version} of {dataset} does not chain to the held version {held}")]
    ForkedHistory {
        dataset: String,
        version: u64,
        held: u64,
    },
    #[error("partition for {entry} is outside region {region}")]
    OutsideRegion {
        region: RegionCode,
        entry: RegionCode,
    },
    #[error("region {region} is outside the manifest scope {scope}")]
    OutsideScope {
        region: RegionCode,
        scope: RegionCode,
    },
    #[error("duplicate partition for {0}")]
    DuplicatePartition(RegionCode),
    #[error("partition for {0} has another schema than the manifest")]
    SchemaMismatch(RegionCode),
    #[error("partition for {region} is {bytes} bytes, over the limit")]
    PartitionTooLarge { region: RegionCode, bytes: u64 },
    #[error("empty partition for {0} has a non-empty content hash")]
    EmptyHashMismatch(RegionCode),
    #[error("no partitions")]
    NoPartitions,
    #[error(
        "partitions do not hash to the signed root (wrong dataset, version, region or content)"
    )]
    RootMismatch,
    #[error("malformed region proof: {0}")]
    BadProof(&'static str),
    #[error("partition count or totals do not match the manifest")]
    TotalsMismatch,
    #[error("announce from {from}, which is not a source for this node")]
    NotASource { from: RegionCode },
}

/// Knobs for manifest acceptance, set by the shell (same values on every node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestPolicy {
    /// A manifest may be valid at most this long (bounds the freeze window).
    pub validity_ms_max: u64,
    /// Tolerated clock skew for `issued_at` in the future.
    pub clock_skew_ms_max: u64,
}

impl Default for ManifestPolicy {
    fn default() -> Self {
        ManifestPolicy {
            validity_ms_max: 90 * crate::time::DAY_MS,
            clock_skew_ms_max: 5 * crate::time::MINUTE_MS,
        }
    }
}

impl SignedManifest {
    /// Signs a manifest as the publisher's jurisdiction.
    pub fn sign(
        manifest: Manifest,
        identity: &NodeIdentity,
    ) -> Result<SignedManifest, ManifestError> {
        if identity.region != manifest.publisher.region {
            return Err(ManifestError::WrongSigner {
                publisher: manifest.publisher.region,
                signer: identity.region,
            });
        }
        let signature = identity.sign(&manifest.hash());
        let signed = SignedManifest {
            manifest,
            signer: identity.chain.clone(),
            signature,
        };
        signed.check_limits()?;
        Ok(signed)
    }

    /// Verifies limits, signer chain and signature at `now`, signer = publisher, scope, and
    /// the validity window at `now`, which may not outlast the signer's chain. Returns the
    /// manifest hash.
    ///
    /// Why no grace for a publisher certificate that expires while the dataset flows: a
    /// manifest must expire no later than every certificate of its signer's chain, so every
    /// node that accepts it does so while they are all valid (`now < expires_at ≤ not_after`)
    /// — relays included — and a publisher key that has expired cannot mint backdated
    /// manifests (they would already be expired). A publisher renews its certificate before
    /// publishing a manifest that would outlive it.
    pub fn verify(
        &self,
        trust: &mut TrustStore,
        now: UnixMs,
        policy: &ManifestPolicy,
    ) -> Result<Hash, ManifestError> {
        self.check_limits()?;
        let m = &self.manifest;
        if m.version == 0 {
            return Err(ManifestError::ZeroVersion);
        }
        if !m.publisher.region.contains(m.scope) {
            return Err(ManifestError::ScopeOutsidePublisher {
                scope: m.scope,
                publisher: m.publisher.region,
            });
        }
        if m.issued_at > now.plus_ms(policy.clock_skew_ms_max) {
            return Err(ManifestError::NotYetIssued {
                issued_at: m.issued_at,
                now,
            });
        }
        if now >= m.expires_at {
            return Err(ManifestError::Expired {
                expires_at: m.expires_at,
                now,
            });
        }
        let validity_ms = m.expires_at.since_ms(m.issued_at);
        if validity_ms > policy.validity_ms_max {
            return Err(ManifestError::ValidityTooLong {
                validity_ms,
                max_ms: policy.validity_ms_max,
            });
        }
        let hash = m.hash();
        // The manifest's own validity (≤ `validity_ms_max`) bounds the grace for a publisher
        // certificate that expires while the dataset is still flowing down.
        let who = trust.verify_signed(&self.signer, now, &hash, &self.signature)?;
        if m.expires_at > who.not_after {
            return Err(ManifestError::ValidityTooLong {
                validity_ms,
                max_ms: who.not_after.since_ms(m.issued_at),
            });
        }
        if who.region != m.publisher.region {
            return Err(ManifestError::WrongSigner {
                publisher: m.publisher.region,
                signer: who.region,
            });
        }
        Ok(hash)
    }
}

/// What a receiver already holds of a dataset: its latest accepted version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldVersion {
    pub version: u64,
    pub hash: Hash,
}

/// How an offered manifest relates to the held version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Succession {
    /// Newer than anything held: accept.
    Newer,
    /// Exactly the held manifest again: idempotent no-op.
    Same,
}

/// Rollback and fork defence: only strictly newer versions are accepted; the same version must
/// be the same manifest; the immediate successor must chain to the held hash.
pub fn check_succession(
    held: Option<HeldVersion>,
    offered: &Manifest,
    offered_hash: Hash,
) -> Result<Succession, ManifestError> {
    let Some(held) = held else {
        return Ok(Succession::Newer);
    };
    let dataset = || offered.dataset.clone();
    if offered.version < held.version {
        return Err(ManifestError::Rollback {
            dataset: dataset(),
            held: held.version,
            offered: offered.version,
        });
    }
    if offered.version == held.version {
        return if offered_hash == held.hash {
            Ok(Succession::Same)
        } else {
            Err(ManifestError::Equivocation {
                dataset: dataset(),
                version: offered.version,
            })
        };
    }
    if offered.version == held.version + 1 && offered.previous != Some(held.hash) {
        return Err(ManifestError::ForkedHistory {
            dataset: dataset(),
            version: offered.version,
            held: held.version,
        });
    }
    Ok(Succession::Newer)
}

/// One level of a [`RegionProof`]: at the parent region, its own partition's leaf hash and the
/// other children's `(code, subtree hash)`, sorted by code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLevel {
    pub own: Option<Hash>,
    pub siblings: Vec<(RegionCode, Hash)>,
}

/// Path from a region's subtree hash up to the manifest root, nearest level first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionProof {
    pub levels: Vec<ProofLevel>,
}

impl Bounded for RegionProof {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len("proof levels", self.levels.len(), PROOF_LEVELS_MAX)?;
        for l in &self.levels {
            check_len(
                "proof siblings",
                l.siblings.len(),
                PROOF_SIBLINGS_PER_LEVEL_MAX,
            )?;
        }
        Ok(())
    }
}

fn node_hash(region: RegionCode, own: Option<&Hash>, children: &[(RegionCode, Hash)]) -> Hash {
    digest(NODE_DOMAIN, &(region, own, children))
}

impl RegionProof {
    /// Recomputes the root from `region`'s subtree hash. Checks structure: one level per tier
    /// between `region` and `scope`, siblings are children of that level's region, strictly
    /// sorted, and do not repeat the path child.
    pub fn root_from(
        &self,
        region: RegionCode,
        subtree_hash: Hash,
        scope: RegionCode,
    ) -> Result<Hash, ManifestError> {
        self.check_limits()?;
        if !scope.contains(region) {
            return Err(ManifestError::OutsideScope { region, scope });
        }
        let depth = (region.level().depth() - scope.level().depth()) as usize;
        if self.levels.len() != depth {
            return Err(ManifestError::BadProof("wrong number of levels"));
        }
        let (mut code, mut hash) = (region, subtree_hash);
        let mut children = Vec::new();
        for level in &self.levels {
            let parent = code
                .parent()
                .ok_or(ManifestError::BadProof("proof above the root"))?;
            children.clear();
            children.extend_from_slice(&level.siblings);
            if level
                .siblings
                .iter()
                .any(|(c, _)| c.parent() != Some(parent))
            {
                return Err(ManifestError::BadProof(
                    "sibling is not a child of the level",
                ));
            }
            if level.siblings.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(ManifestError::BadProof("siblings not strictly sorted"));
            }
            match level.siblings.binary_search_by_key(&code, |(c, _)| *c) {
                Ok(_) => return Err(ManifestError::BadProof("sibling repeats the path")),
                Err(at) => children.insert(at, (code, hash)),
            }
            hash = node_hash(parent, level.own.as_ref(), &children);
            code = parent;
        }
        debug_assert_eq!(code, scope);
        Ok(hash)
    }
}

/// The region Merkle tree over a set of partition entries below (and at) `root`.
#[derive(Clone, Debug)]
pub struct RegionTree {
    root: RegionCode,
    /// Subtree hash of every region that has data in or below it.
    hashes: BTreeMap<RegionCode, Hash>,
    own: BTreeMap<RegionCode, Hash>,
    children: BTreeMap<RegionCode, Vec<(RegionCode, Hash)>>,
}

impl RegionTree {
    /// Builds the tree. Rejects entries outside `root` and duplicate regions.
    pub fn build(
        root: RegionCode,
        entries: &[PartitionEntry],
    ) -> Result<RegionTree, ManifestError> {
        if entries.is_empty() {
            return Err(ManifestError::NoPartitions);
        }
        let mut own = BTreeMap::new();
        let mut regions = BTreeSet::new();
        for e in entries {
            if !root.contains(e.region) {
                return Err(ManifestError::OutsideRegion {
                    region: root,
                    entry: e.region,
                });
            }
            if own.insert(e.region, e.leaf_hash()).is_some() {
                return Err(ManifestError::DuplicatePartition(e.region));
            }
            let mut r = e.region;
            while r != root && regions.insert(r) {
                match r.parent() {
                    Some(p) => r = p,
                    None => break,
                }
            }
        }
        regions.insert(root);
        let mut hashes = BTreeMap::new();
        let mut children: BTreeMap<RegionCode, Vec<(RegionCode, Hash)>> = BTreeMap::new();
        // RegionCode orders by level then digits: reverse order visits children before parents.
        for &r in regions.iter().rev() {
            let kids = children.entry(r).or_default();
            kids.sort_unstable_by_key(|(c, _)| *c);
            let h = node_hash(r, own.get(&r), kids);
            hashes.insert(r, h);
            if r != root {
                if let Some(p) = r.parent() {
                    children.entry(p).or_default().push((r, h));
                }
            }
        }
        Ok(RegionTree {
            root,
            hashes,
            own,
            children,
        })
    }

    pub fn root(&self) -> RegionCode {
        self.root
    }

    pub fn root_hash(&self) -> Hash {
        self.hashes[&self.root]
    }

    /// Subtree hash of a region in the tree.
    pub fn subtree_hash(&self, region: RegionCode) -> Option<Hash> {
        self.hashes.get(&region).copied()
    }

    /// Direct children of `region` that have data.
    pub fn children_with_data(&self, region: RegionCode) -> impl Iterator<Item = RegionCode> + '_ {
        self.children
            .get(&region)
            .into_iter()
            .flatten()
            .map(|(c, _)| *c)
    }

    /// Proof for `target` (in this tree) up to this tree's root, followed by `above` (the proof
    /// of this tree's root up to the manifest scope).
    pub fn proof_for(&self, target: RegionCode, above: &RegionProof) -> Option<RegionProof> {
        self.hashes.get(&target)?;
        let mut levels = Vec::new();
        let mut code = target;
        while code != self.root {
            let parent = code.parent()?;
            let siblings = self
                .children
                .get(&parent)?
                .iter()
                .filter(|(c, _)| *c != code)
                .copied()
                .collect();
            levels.push(ProofLevel {
                own: self.own.get(&parent).copied(),
                siblings,
            });
            code = parent;
        }
        levels.extend(above.levels.iter().cloned());
        Some(RegionProof { levels })
    }
}

/// Checks partition entries for `region` received under `manifest`: all inside `region`
/// (a node never accepts a partition outside its own region), same schema, sane sizes, and
/// their region-tree hash proves up to the signed root.
pub fn verify_partitions(
    manifest: &Manifest,
    region: RegionCode,
    entries: &[PartitionEntry],
    proof: &RegionProof,
) -> Result<RegionTree, ManifestError> {
    check_len("announce entries", entries.len(), ANNOUNCE_ENTRIES_MAX)?;
    verify_partitions_unbounded(manifest, region, entries, proof)
}

/// [`verify_partitions`] for a publisher's full entry list, which may exceed one announce
/// (up to `PARTITIONS_PER_MANIFEST_MAX`); also checks the manifest's count and totals.
pub fn verify_all_partitions(
    manifest: &Manifest,
    entries: &[PartitionEntry],
) -> Result<RegionTree, ManifestError> {
    check_len(
        "partitions",
        entries.len(),
        PARTITIONS_PER_MANIFEST_MAX as usize,
    )?;
    let records: u64 = entries
        .iter()
        .map(|e| e.records)
        .fold(0, u64::saturating_add);
    let bytes: u64 = entries.iter().map(|e| e.bytes).fold(0, u64::saturating_add);
    if entries.len() != manifest.partition_count as usize
        || records != manifest.records_total
        || bytes != manifest.bytes_total
    {
        return Err(ManifestError::TotalsMismatch);
    }
    verify_partitions_unbounded(manifest, manifest.scope, entries, &RegionProof::default())
}

fn verify_partitions_unbounded(
    manifest: &Manifest,
    region: RegionCode,
    entries: &[PartitionEntry],
    proof: &RegionProof,
) -> Result<RegionTree, ManifestError> {
    if !manifest.scope.contains(region) {
        return Err(ManifestError::OutsideScope {
            region,
            scope: manifest.scope,
        });
    }
    let schema_hash = manifest.schema.hash();
    let empty_hash = *blake3::hash(&[]).as_bytes();
    for e in entries {
        if !region.contains(e.region) {
            return Err(ManifestError::OutsideRegion {
                region,
                entry: e.region,
            });
        }
        if e.schema_hash != schema_hash {
            return Err(ManifestError::SchemaMismatch(e.region));
        }
        if e.bytes > PARTITION_BYTES_MAX {
            return Err(ManifestError::PartitionTooLarge {
                region: e.region,
                bytes: e.bytes,
            });
        }
        if e.bytes == 0 && e.content_hash != empty_hash {
            return Err(ManifestError::EmptyHashMismatch(e.region));
        }
    }
    let tree = RegionTree::build(region, entries)?;
    let root = proof.root_from(region, tree.root_hash(), manifest.scope)?;
    if root != manifest.partitions_root {
        return Err(ManifestError::RootMismatch);
    }
    Ok(tree)
}

/// Builds a manifest for a full set of partitions (publisher side): computes root and totals.
#[allow(clippy::too_many_arguments)]
pub fn build_manifest(
    dataset: String,
    version: u64,
    publisher: CatalogOrigin,
    scope: RegionCode,
    issued_at: UnixMs,
    expires_at: UnixMs,
    previous: Option<Hash>,
    schema: Schema,
    entries: &[PartitionEntry],
) -> Result<Manifest, ManifestError> {
    check_len(
        "partitions",
        entries.len(),
        PARTITIONS_PER_MANIFEST_MAX as usize,
    )?;
    let tree = RegionTree::build(scope, entries)?;
    Ok(Manifest {
        dataset,
        version,
        publisher,
        scope,
        issued_at,
        expires_at,
        previous,
        schema,
        partitions_root: tree.root_hash(),
        partition_count: entries.len() as u32,
        records_total: entries
            .iter()
            .map(|e| e.records)
            .fold(0, u64::saturating_add),
        bytes_total: entries.iter().map(|e| e.bytes).fold(0, u64::saturating_add),
    })
}

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
                expected.leaf(start_chunk, data, is_root)?;
                at = place.end;
            }
        }
    }
    Ok(at)
}
