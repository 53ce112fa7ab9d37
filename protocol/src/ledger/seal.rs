//! Entry seals (签章): every ledger entry signed by the department that acted, or by the node.
//!
//! Art. 29 makes the use record the requesting department's own (政务数据需求部门应当…进行记录),
//! and an inspector reading it should see that the department — not whoever runs the node's
//! database — put it there. The node's signed tree head ([`super::head`]) vouches for the
//! *log*; a seal vouches for *who* logged each entry in it.
//!
//! Why a seal covers a batch and is not one signature per entry: an ed25519 signature costs
//! ~20 µs, which alone would hold appends below the ≥ 100,000 entries/s the ledger must keep
//! (a national node logs a receipt per township). So, as X-Road's message log does with its
//! batch signatures, the shell seals on its beat: for every signer with entries appended since
//! the last seal, one signature over the RFC 6962 root ([`super::merkle`]) of those entries'
//! (position, leaf hash) pairs. One entry's proof is the seal plus its audit path in that small
//! tree, so it is checked on its own without the batch's other entries.
//!
//! Who signs an entry ([`signer_for`]): the department the entry names, if the node hosts it
//! (it holds that department's certified key, [`crate::department`]); otherwise — the node's
//! own acts, and entries naming another node's department — the node's jurisdiction key. A
//! department's seal may cover only entries that name it.

use std::collections::HashMap;

use backflow_topology::RegionCode;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::entry::LedgerEntry;
use super::merkle::{self, Hash, MerkleError, PROOF_HASHES_MAX};
use super::verify::verify_inclusion;
use crate::codec::digest;
use crate::limits::{check_len, Bounded, LimitError, NAME_BYTES_MAX};

/// Context of a seal's signature: it cannot be replayed as a head, a receipt or a certificate.
const SEAL_DOMAIN: &[u8] = b"backflow/ledger/seal/v1";

/// Entries one seal covers at most, and the widest range of positions it spans: the shell
/// seals a longer backlog (after a restart, or a burst above ~65 k entries a beat) in several
/// seals, so building one seal's tree stays bounded (≤ 65,536 × 64 B).
pub const SEAL_ENTRIES_MAX: u64 = 65_536;

/// Who signed a seal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SealSigner {
    /// The node, with its jurisdiction key (the key its chain certifies).
    Node,
    /// A department (政府部门) the node hosts, with its own certified key.
    Department(String),
}

impl std::fmt::Display for SealSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealSigner::Node => f.write_str("the node"),
            SealSigner::Department(d) => write!(f, "department {d:?}"),
        }
    }
}

/// What a seal signs: `count` entries of `region`'s log at positions in `from..to`, all of one
/// signer's, committed to by `root` (RFC 6962 root over [`item_hash`] of each, in order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealBody {
    pub region: RegionCode,
    pub signer: SealSigner,
    pub from: u64,
    /// Exclusive.
    pub to: u64,
    pub count: u64,
    pub root: Hash,
}

/// A signed [`SealBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySeal {
    pub body: SealBody,
    pub signature: Signature,
}

/// One entry's part of a seal: the seal, the entry's place among the entries it covers, and
/// its audit path in the seal's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealProof {
    pub seal: EntrySeal,
    pub position: u64,
    pub path: Vec<Hash>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("a seal covers positions {from}..{to} with {count} entries: not a valid range")]
    BadRange { from: u64, to: u64, count: u64 },
    #[error("the seal is {sealed}'s log, the entry {entry}'s")]
    WrongRegion {
        sealed: RegionCode,
        entry: RegionCode,
    },
    #[error("the seal covers positions {from}..{to}, not entry {seq}")]
    NotCovered { seq: u64, from: u64, to: u64 },
    #[error("{signer} sealed an entry that names {named}")]
    WrongSigner { signer: SealSigner, named: String },
    #[error("the seal's signature is not {signer}'s")]
    BadSignature { signer: SealSigner },
    #[error("the entry is not among those the seal signed: {0}")]
    NotIncluded(MerkleError),
}

impl Bounded for SealBody {
    fn check_limits(&self) -> Result<(), LimitError> {
        if let SealSigner::Department(d) = &self.signer {
            check_len("seal department bytes", d.len(), NAME_BYTES_MAX)?;
        }
        Ok(())
    }
}

impl Bounded for SealProof {
    fn check_limits(&self) -> Result<(), LimitError> {
        self.seal.body.check_limits()?;
        check_len("seal path hashes", self.path.len(), PROOF_HASHES_MAX)
    }
}

/// The leaf of a seal's tree for the entry at `seq` whose leaf hash is `entry_leaf`: binding
/// the position, so a seal cannot be moved onto the same bytes logged elsewhere.
pub fn item_hash(seq: u64, entry_leaf: &Hash) -> Hash {
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    bytes[8..].copy_from_slice(entry_leaf);
    merkle::leaf_hash(&bytes)
}

/// Who signs `entry` at a node that hosts the departments `hosted` says it does (see the
/// module docs).
pub fn signer_for(entry_department: Option<&str>, hosted: impl Fn(&str) -> bool) -> SealSigner {
    match entry_department {
        Some(d) if hosted(d) => SealSigner::Department(d.to_string()),
        _ => SealSigner::Node,
    }
}

/// One signer's entries of a batch, as the shell gathers them: their positions (increasing)
/// and leaf hashes. Builds the seal and each entry's proof.
#[derive(Debug)]
pub struct SealTree {
    region: RegionCode,
    signer: SealSigner,
    from: u64,
    to: u64,
    seqs: Vec<u64>,
    nodes: HashMap<(u8, u64), Hash>,
}

impl SealTree {
    /// An empty tree for `signer`'s entries at positions in `from..to`.
    pub fn new(region: RegionCode, signer: SealSigner, from: u64, to: u64) -> SealTree {
        SealTree {
            region,
            signer,
            from,
            to,
            seqs: Vec::new(),
            nodes: HashMap::new(),
        }
    }

    /// Adds the entry at `seq` with leaf hash `entry_leaf`. Positions must increase within
    /// `from..to`, and a tree holds at most [`SEAL_ENTRIES_MAX`] — the shell's invariants.
    pub fn push(&mut self, seq: u64, entry_leaf: &Hash) -> Result<(), SealError> {
        let count = self.seqs.len() as u64;
        if seq < self.from
            || seq >= self.to
            || self.seqs.last().is_some_and(|&last| seq <= last)
            || count >= SEAL_ENTRIES_MAX
        {
            return Err(SealError::NotCovered {
                seq,
                from: self.from,
                to: self.to,
            });
        }
        for n in merkle::append(item_hash(seq, entry_leaf), count, &self.nodes)? {
            self.nodes.insert((n.level, n.index), n.hash);
        }
        self.seqs.push(seq);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// The body to sign.
    pub fn body(&self) -> Result<SealBody, SealError> {
        let count = self.seqs.len() as u64;
        Ok(SealBody {
            region: self.region,
            signer: self.signer.clone(),
            from: self.from,
            to: self.to,
            count,
            root: merkle::root(count, &self.nodes)?,
        })
    }

    /// The audit path of the entry at `seq`, and its position in the seal; `None` if the tree
    /// does not hold it.
    pub fn proof_of(&self, seq: u64) -> Option<(u64, Vec<Hash>)> {
        let position = self.seqs.binary_search(&seq).ok()? as u64;
        let path = merkle::inclusion_proof(position, self.seqs.len() as u64, &self.nodes).ok()?;
        Some((position, path))
    }
}

impl SealBody {
    pub fn signed_digest(&self) -> [u8; 32] {
        digest(SEAL_DOMAIN, self)
    }

    fn check_range(&self) -> Result<(), SealError> {
        let b = self;
        if b.from >= b.to || b.to - b.from < b.count || b.count == 0 || b.count > SEAL_ENTRIES_MAX {
            return Err(SealError::BadRange {
                from: b.from,
                to: b.to,
                count: b.count,
            });
        }
        Ok(())
    }
}

impl EntrySeal {
    /// Signs `body` with `sign` (a [`crate::cert::NodeIdentity`]'s or a
    /// [`crate::department::DepartmentIdentity`]'s `sign`).
    pub fn sign(body: SealBody, sign: impl FnOnce(&[u8; 32]) -> Signature) -> EntrySeal {
        EntrySeal {
            signature: sign(&body.signed_digest()),
            body,
        }
    }

    /// The seal's range is well formed and `key` — the signer's — signed it.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SealError> {
        self.body.check_limits()?;
        self.body.check_range()?;
        key.verify_strict(&self.body.signed_digest(), &self.signature)
            .map_err(|_| SealError::BadSignature {
                signer: self.body.signer.clone(),
            })
    }
}

impl SealProof {
    /// `entry`, whose leaf hash is `entry_leaf`, is one of those the seal covers, and the seal
    /// is signed by `key`: the signer's key — the node's, or the named department's as its
    /// certificate gives it (the caller checks the certificate). A department's seal holds
    /// only for an entry that names that department.
    pub fn check(
        &self,
        entry: &LedgerEntry,
        entry_leaf: &Hash,
        key: &VerifyingKey,
    ) -> Result<(), SealError> {
        self.check_limits()?;
        let b = &self.seal.body;
        if b.region != entry.region {
            return Err(SealError::WrongRegion {
                sealed: b.region,
                entry: entry.region,
            });
        }
        if entry.seq < b.from || entry.seq >= b.to {
            return Err(SealError::NotCovered {
                seq: entry.seq,
                from: b.from,
                to: b.to,
            });
        }
        if let SealSigner::Department(d) = &b.signer {
            if entry.department.as_deref() != Some(d.as_str()) {
                return Err(SealError::WrongSigner {
                    signer: b.signer.clone(),
                    named: entry
                        .department
                        .clone()
                        .unwrap_or_else(|| "no department".into()),
                });
            }
        }
        self.seal.verify(key)?;
        verify_inclusion(
            &item_hash(entry.seq, entry_leaf),
            self.position,
            b.count,
            &self.path,
            &b.root,
        )
        .map_err(SealError::NotIncluded)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::ledger::entry::EntryKind;

    fn entry(seq: u64, department: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            seq,
            time_ms: 1_767_225_600_000 + seq,
            region: "110101".parse().unwrap(),
            department: department.map(str::to_string),
            kind: EntryKind::Note,
            subject: format!("s{seq}"),
            detail: String::new(),
        }
    }

    /// Seals entries 0..20, where every third names 民政局 (hosted) and the rest none.
    fn sealed() -> (Vec<LedgerEntry>, HashMap<SealSigner, SealTree>) {
        let region = "110101".parse().unwrap();
        let entries: Vec<_> = (0..20)
            .map(|s| entry(s, (s % 3 == 0).then_some("民政局")))
            .collect();
        let mut trees: HashMap<SealSigner, SealTree> = HashMap::new();
        for e in &entries {
            let signer = signer_for(e.department.as_deref(), |d| d == "民政局");
            trees
                .entry(signer.clone())
                .or_insert_with(|| SealTree::new(region, signer, 0, 20))
                .push(e.seq, &e.leaf_hash().unwrap())
                .unwrap();
        }
        (entries, trees)
    }

    /// The department's key and the node's.
    fn keys() -> (SigningKey, SigningKey) {
        (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        )
    }

    fn proof(tree: &SealTree, key: &SigningKey, seq: u64) -> SealProof {
        let seal = EntrySeal::sign(tree.body().unwrap(), |d| key.sign(d));
        let (position, path) = tree.proof_of(seq).unwrap();
        SealProof {
            seal,
            position,
            path,
        }
    }

    #[test]
    fn each_entry_checks_against_its_signer_s_seal_alone() {
        let (dept, node) = keys();
        let (entries, trees) = sealed();
        let dept_tree = &trees[&SealSigner::Department("民政局".into())];
        let node_tree = &trees[&SealSigner::Node];
        assert_eq!((dept_tree.len(), node_tree.len()), (7, 13));
        for e in &entries {
            let leaf = e.leaf_hash().unwrap();
            let (tree, key) = if e.department.is_some() {
                (dept_tree, &dept)
            } else {
                (node_tree, &node)
            };
            proof(tree, key, e.seq)
                .check(e, &leaf, &key.verifying_key())
                .unwrap();
        }
    }

    #[test]
    fn a_forged_moved_or_misattributed_entry_does_not_check() {
        let (dept, node) = keys();
        let (entries, trees) = sealed();
        let dept_tree = &trees[&SealSigner::Department("民政局".into())];
        let node_tree = &trees[&SealSigner::Node];
        let e3 = &entries[3];
        let p = proof(dept_tree, &dept, 3);
        // Signed by another key (the node's, claiming to be the department).
        assert!(matches!(
            proof(dept_tree, &node, 3).check(e3, &e3.leaf_hash().unwrap(), &dept.verifying_key()),
            Err(SealError::BadSignature { .. })
        ));
        // The entry's text changed after sealing.
        let mut edited = e3.clone();
        edited.detail = "改".into();
        assert!(matches!(
            p.check(&edited, &edited.leaf_hash().unwrap(), &dept.verifying_key()),
            Err(SealError::NotIncluded(_))
        ));
        // The same bytes at another position: the seal binds positions.
        let mut moved = e3.clone();
        moved.seq = 6;
        assert!(matches!(
            p.check(&moved, &e3.leaf_hash().unwrap(), &dept.verifying_key()),
            Err(SealError::NotIncluded(_))
        ));
        // The department's seal over an entry naming another department.
        let mut other = e3.clone();
        other.department = Some("公安局".into());
        assert!(matches!(
            p.check(&other, &other.leaf_hash().unwrap(), &dept.verifying_key()),
            Err(SealError::WrongSigner { .. })
        ));
        // A node-sealed entry checks only under the node's key.
        let e4 = &entries[4];
        assert!(proof(node_tree, &node, 4)
            .check(e4, &e4.leaf_hash().unwrap(), &dept.verifying_key())
            .is_err());
        // An entry outside the seal's range.
        let mut late = e3.clone();
        late.seq = 20;
        assert!(matches!(
            p.check(&late, &late.leaf_hash().unwrap(), &dept.verifying_key()),
            Err(SealError::NotCovered { .. })
        ));
        // A body whose range cannot hold its count is refused before its signature.
        let mut bad = p.clone();
        bad.seal.body.count = 0;
        assert!(matches!(
            bad.seal.verify(&dept.verifying_key()),
            Err(SealError::BadRange { .. })
        ));
    }

    #[test]
    fn a_tree_refuses_positions_out_of_order_or_range() {
        let mut t = SealTree::new("110101".parse().unwrap(), SealSigner::Node, 10, 12);
        let h = [7u8; 32];
        assert!(t.push(9, &h).is_err());
        t.push(10, &h).unwrap();
        assert!(t.push(10, &h).is_err());
        assert!(t.push(12, &h).is_err());
        t.push(11, &h).unwrap();
        assert_eq!(t.body().unwrap().count, 2);
        assert!(t.proof_of(12).is_none());
    }
}
