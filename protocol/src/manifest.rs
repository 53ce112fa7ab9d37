//! Return-flow manifests (回流, Art. 24): a dataset version partitioned by region, signed once by
//! its publisher, verifiable piecewise.
//!
//! The region Merkle tree whose root a manifest signs is [`crate::region_tree`]; its types keep
//! their `manifest::` paths.
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

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogOrigin, DataType};
use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
// The chunk codec lives in `crate::chunk`; its types keep their `manifest::` paths.
pub use crate::chunk::{
    check_groups, decode_groups, decode_groups_with, encode_groups_at, encode_groups_into,
    encoded_len, split_payload, ChunkError, ChunkFrame, ChunkPart, OutboardBuilder,
    PartitionOutboard, ServeError,
};
use crate::codec::digest;
use crate::limits::{
    check_len, Bounded, LimitError, NAME_BYTES_MAX, PARTITIONS_PER_MANIFEST_MAX, SCHEMA_FIELDS_MAX,
    SCHEMA_HEADER_BYTES_MAX,
};
pub use crate::region_tree::{
    build_manifest, verify_all_partitions, verify_partitions, ProofLevel, RegionProof, RegionTree,
};
use crate::time::UnixMs;

/// A blake3 digest.
pub type Hash = [u8; 32];

const MANIFEST_DOMAIN: &[u8] = b"backflow/manifest/v1";
const LEAF_DOMAIN: &[u8] = b"backflow/partition-leaf/v1";
const SCHEMA_DOMAIN: &[u8] = b"backflow/schema/v1";

/// Bytes per chunk group: bao-tree's 16 KiB groups (chunk log 4), the unit of transfer and of
/// verification. Small enough to detect a bad group early, large enough that proof overhead
/// (64 B per tree level) stays under 1 %.
pub const CHUNK_GROUP_BYTES: u64 = 16 * 1024;
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

/// How far one version may run ahead of the held one ([`check_succession`]): 2^20. A
/// publisher numbers its versions held + 1, so a real jump is the versions a node missed while
/// offline; a million of them is years of hourly publishing. Without a bound, one manifest at
/// version `u64::MAX` — from a stolen key, or a bug — would lock every later real version out
/// for good (TUF's fast-forward attack); with it, even a stolen key that keeps publishing needs
/// 2^33 manifests to reach [`VERSION_MAX`], and the owner recovers by publishing held + 1.
pub const VERSION_STEP_MAX: u64 = 1 << 20;
/// The highest version there is: 2^53 − 1, so a version stays exact as a JSON number (the
/// local API, `status --json`) — and a bound for a node that holds nothing yet.
pub const VERSION_MAX: u64 = (1 << 53) - 1;

/// Who a dataset belongs to and what it is called: the publisher's jurisdiction (the region
/// whose certificate signs every version), the department (部门) that publishes it there, and
/// its name. Two datasets of the same name but another region or department are different
/// datasets; only a key certified for the publisher's region — the owner's node, including its
/// rotated key — can sign a version that supersedes one (Art. 24: each department returns its
/// own data; no other jurisdiction or department may replace or retract it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatasetId {
    pub publisher: RegionCode,
    pub department: String,
    pub name: String,
}

impl std::fmt::Display for DatasetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} of {})",
            self.name, self.department, self.publisher
        )
    }
}

/// The signed description of one dataset version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The dataset's name; with `publisher` it forms the dataset's identity ([`DatasetId`]).
    pub dataset: String,
    /// Strictly increasing per dataset; receivers refuse anything older than what they hold,
    /// and anything more than [`VERSION_STEP_MAX`] ahead of it.
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
    /// A grant's delivery by batch exchange (批量交换, Art. 22): the share request it delivers.
    /// Such a version goes from the publisher (the provider's node) straight to the node of
    /// `scope` — the requester's region, anywhere in the country — and to no other node: one
    /// partition, at `scope`. `None`: return-flow (Art. 24), down the tree inside the
    /// publisher's region.
    pub delivers: Option<Hash>,
}

impl Manifest {
    /// Whether this version is a grant's delivery to `scope` (see [`Manifest::delivers`]).
    pub fn is_delivery(&self) -> bool {
        self.delivers.is_some()
    }

    /// The dataset this manifest is a version of.
    pub fn dataset_id(&self) -> DatasetId {
        DatasetId {
            publisher: self.publisher.region,
            department: self.publisher.department.clone(),
            name: self.dataset.clone(),
        }
    }

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
    #[error(
        "a delivery must be one partition for its scope {scope}, not the publisher's own region"
    )]
    DeliveryShape { scope: RegionCode },
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
    #[error("version {0} is above the highest version {VERSION_MAX}")]
    VersionTooHigh(u64),
    #[error("rollback: version {offered} of {dataset} is older than the held version {held}")]
    Rollback {
        dataset: DatasetId,
        held: u64,
        offered: u64,
    },
    #[error(
        "version {offered} of {dataset} jumps more than {VERSION_STEP_MAX} versions ahead of the held version {held}"
    )]
    VersionJump {
        dataset: DatasetId,
        held: u64,
        offered: u64,
    },
    #[error("equivocation: two different manifests for version {version} of {dataset}")]
    Equivocation { dataset: DatasetId, version: u64 },
    #[error("version {version} of {dataset} does not chain to the held version {held}")]
    ForkedHistory {
        dataset: DatasetId,
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
        if m.version > VERSION_MAX {
            return Err(ManifestError::VersionTooHigh(m.version));
        }
        if m.is_delivery() {
            // Straight to one node: the requester's region, never the publisher's own.
            if m.partition_count != 1 || m.scope == m.publisher.region {
                return Err(ManifestError::DeliveryShape { scope: m.scope });
            }
        } else if !m.publisher.region.contains(m.scope) {
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

/// Rollback, fork and fast-forward defence, for a manifest of the dataset `held` is of (same
/// [`DatasetId`]): only strictly newer versions are accepted, at most [`VERSION_STEP_MAX`]
/// ahead; the same version must be the same manifest; the immediate successor must chain to
/// the held hash.
pub fn check_succession(
    held: Option<HeldVersion>,
    offered: &Manifest,
    offered_hash: Hash,
) -> Result<Succession, ManifestError> {
    let Some(held) = held else {
        return Ok(Succession::Newer);
    };
    let dataset = || offered.dataset_id();
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
    if offered.version - held.version > VERSION_STEP_MAX {
        return Err(ManifestError::VersionJump {
            dataset: dataset(),
            held: held.version,
            offered: offered.version,
        });
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
