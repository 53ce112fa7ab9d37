//! The region Merkle tree of a manifest's partitions: building it, proving a region's subtree
//! up to the signed root, verifying received partition entries against a manifest, and
//! computing a new manifest's root and totals ([`build_manifest`]).
//!
//! # Shape
//! Partitions are the leaves of a Merkle tree shaped like the region tree below the manifest's
//! `scope`. A tree node's hash covers its region code, its own partition's leaf hash (records
//! located at that region itself, if any) and the `(code, hash)` of each child that has data.
//! The signed manifest carries only the root. Hence:
//! - a township verifies its own partition entry with a [`RegionProof`]: the own-leaf and the
//!   siblings' *subtree hashes* at each level above it — never the siblings' data or entries;
//! - a city given the entries of its subtree recomputes its subtree hash ([`RegionTree`]) and
//!   verifies it with its own proof: the union of its counties is verified as a whole.

use std::collections::{BTreeMap, BTreeSet};

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogOrigin;
use crate::codec::digest;
use crate::limits::{
    check_len, Bounded, LimitError, ANNOUNCE_ENTRIES_MAX, PARTITIONS_PER_MANIFEST_MAX,
    PROOF_LEVELS_MAX, PROOF_SIBLINGS_PER_LEVEL_MAX,
};
use crate::manifest::{Hash, Manifest, ManifestError, PartitionEntry, Schema, PARTITION_BYTES_MAX};
use crate::time::UnixMs;

const NODE_DOMAIN: &[u8] = b"backflow/region-node/v1";

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
        delivers: None,
    })
}
