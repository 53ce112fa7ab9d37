//! Sealing the compliance ledger (合规台账签章, Art. 29; issue 19: "each signed by the acting
//! department or node"). On its beat, before it signs the head, the node seals every entry
//! appended since the last seal: for each signer — the hosted department an entry names, else
//! the node — one signature over the small RFC 6962 tree of that signer's entries in the batch
//! ([`backflow_protocol::ledger::seal`], where the reason for batching is: one ed25519
//! signature per entry would cost more than the append itself).
//!
//! Key layout, beside `ledger`'s in the `ledger` CF: `s` ‖ to (u64 BE) → [`StoredSeals`], the
//! seals of entries `from..to`; `k` → the node key they were made with. Invariants:
//! - batches are contiguous: from the pruned mark (or 0) up to [`sealed_to`], each at most
//!   [`SEAL_ENTRIES_MAX`] entries (keyed by where they end, so the last key is how far the log
//!   is sealed); the entries after it (at most one beat's) are the unsealed
//!   tail, sealed at the next beat or at start;
//! - pruning removes whole batches only (its mark is a batch boundary, `ledger_prune`);
//! - a seal is derived from entries already durable and may be made again if lost before the
//!   write-ahead log was synced: it acknowledges nothing, so it is written unsynced and made
//!   durable with the head signed right after it.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::department::{DepartmentCert, DepartmentIdentity};
use backflow_protocol::ledger::merkle::{Hash, NodeStore};
use backflow_protocol::ledger::seal::{
    signer_for, EntrySeal, SealProof, SealSigner, SealTree, SEAL_ENTRIES_MAX,
};
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_topology::RegionCode;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::ledger::{number_of, Damage, Ledger, StoredNodes, SEAL_PREFIX};
use crate::store::{Store, CF_LEDGER};

/// Seals in one batch at most: one per signer, the node and each department it hosts.
const SEALS_PER_BATCH_MAX: usize = backflow_protocol::department::DEPARTMENTS_PER_NODE_MAX + 1;
/// Bytes of one stored batch at most (a seal is ~400 B).
const STORED_SEALS_BYTES_MAX: usize = SEALS_PER_BATCH_MAX * 1024;

/// The seals of entries `from..to` (the key holds `to`, so the last key says how far the log
/// is sealed: [`crate::ledger::sealed_to`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeals {
    pub from: u64,
    pub seals: Vec<EntrySeal>,
}

/// One batch as read: entries `from..to` and their seals.
#[derive(Clone, Debug)]
pub struct SealBatch {
    pub from: u64,
    pub to: u64,
    pub seals: Vec<EntrySeal>,
}

pub fn seal_key(to: u64) -> [u8; 9] {
    let mut key = [SEAL_PREFIX; 9];
    key[1..].copy_from_slice(&to.to_be_bytes());
    key
}

fn decode_batch(key: &[u8], value: &[u8]) -> Result<SealBatch> {
    let to = number_of(key, SEAL_PREFIX)?;
    if value.len() > STORED_SEALS_BYTES_MAX {
        bail!(
            "the seals of ledger entries below {to} are {} bytes",
            value.len()
        );
    }
    let stored: StoredSeals =
        decode_exact(value).map_err(|e| anyhow!("the seals of ledger entries below {to}: {e}"))?;
    if stored.from >= to
        || to - stored.from > SEAL_ENTRIES_MAX
        || stored.seals.len() > SEALS_PER_BATCH_MAX
    {
        bail!("the seals of ledger entries below {to} cover a range no seal may");
    }
    Ok(SealBatch {
        from: stored.from,
        to,
        seals: stored.seals,
    })
}

/// The batch covering entry `seq`, if it is sealed: the first batch ending after it.
pub fn batch_of(store: &Store, seq: u64) -> Result<Option<SealBatch>> {
    let Some(item) = store.iter_from(CF_LEDGER, &seal_key(seq + 1)).next() else {
        return Ok(None);
    };
    let (key, value) = item?;
    if key.first() != Some(&SEAL_PREFIX) {
        return Ok(None);
    }
    let batch = decode_batch(&key, &value)?;
    Ok((batch.from <= seq).then_some(batch))
}

/// Seals every entry of `ledger` not sealed yet (see the module docs); returns how many.
/// `departments` are the departments the node hosts, with their keys.
pub fn seal(
    store: &Store,
    ledger: &mut Ledger,
    node: &NodeIdentity,
    departments: &HashMap<&str, &DepartmentIdentity>,
) -> Result<u64> {
    let size = ledger.size();
    seal_until(store, ledger, node, departments, size)
}

/// [`seal`] of the entries below `upto` only (a test seals in batches of its choosing).
pub(crate) fn seal_until(
    store: &Store,
    ledger: &mut Ledger,
    node: &NodeIdentity,
    departments: &HashMap<&str, &DepartmentIdentity>,
    upto: u64,
) -> Result<u64> {
    let start = ledger.sealed_to();
    let upto = upto.min(ledger.size());
    while ledger.sealed_to() < upto {
        let from = ledger.sealed_to();
        let to = upto.min(from + SEAL_ENTRIES_MAX);
        let items = ledger.unsealed(store, from, to)?;
        let mut trees: BTreeMap<SealSigner, SealTree> = BTreeMap::new();
        for (seq, (leaf, department)) in (from..).zip(&items) {
            let signer = signer_for(department.as_deref(), |d| departments.contains_key(d));
            push(&mut trees, ledger.region(), from..to, signer, seq, leaf)
                .map_err(|e| anyhow!("sealing ledger entry {seq}: {e}"))?;
        }
        let mut seals = Vec::with_capacity(trees.len());
        for tree in trees.into_values() {
            let body = tree.body().map_err(|e| anyhow!("sealing: {e}"))?;
            let seal = match &body.signer {
                SealSigner::Node => EntrySeal::sign(body, |d| node.sign(d)),
                SealSigner::Department(name) => {
                    let id = departments[name.as_str()];
                    EntrySeal::sign(body, |d| id.sign(d))
                }
            };
            seals.push(seal);
        }
        let value = encode_value(&StoredSeals { from, seals }).map_err(|e| anyhow!("{e}"))?;
        store.put(CF_LEDGER, &seal_key(to), &value)?;
        ledger.mark_sealed(to);
    }
    Ok(ledger.sealed_to() - start)
}

/// The node key the seals were made with (32 B): a rotated key (`backflow cert rotate`) seals
/// everything again, see [`open_ledger`].
const SEALING_KEY: &[u8] = b"k";

/// Opens the ledger at start ([`Ledger::open`]) for a node whose key is `node`. If the node's
/// seals were made with another key — it was rotated, and the chain now certifies this one —
/// they would no longer check under the key an inspector can verify: they are dropped and the
/// whole log is sealed again at the first beat (reading every entry once). Department keys do
/// not change (`departments`), so their seals are made again identical in meaning.
pub fn open_ledger(store: &Store, region: RegionCode, node: &VerifyingKey) -> Result<Ledger> {
    let stored = store.get(CF_LEDGER, SEALING_KEY)?;
    if stored.as_deref() != Some(node.as_bytes().as_slice()) {
        let mut batch = store.batch();
        if stored.is_some() {
            for item in store.iter_from(CF_LEDGER, &[SEAL_PREFIX]) {
                let (key, _) = item?;
                if key.first() != Some(&SEAL_PREFIX) {
                    break;
                }
                batch.delete(CF_LEDGER, &key);
            }
            tracing::warn!(
                "this node's key changed: its ledger entries are sealed again under the new key"
            );
        }
        batch.put(CF_LEDGER, SEALING_KEY, node.as_bytes());
        store.write(batch)?;
    }
    Ledger::open(store, region)
}

/// The keys seals are checked under: the node's, and each hosted department's.
#[derive(Clone, Debug)]
pub struct SealKeys {
    pub node: VerifyingKey,
    pub departments: HashMap<String, VerifyingKey>,
}

impl SealKeys {
    pub fn node_only(node: VerifyingKey) -> SealKeys {
        SealKeys {
            node,
            departments: HashMap::new(),
        }
    }

    fn of(&self, signer: &SealSigner) -> Option<&VerifyingKey> {
        match signer {
            SealSigner::Node => Some(&self.node),
            SealSigner::Department(d) => self.departments.get(d),
        }
    }
}

/// Seal proofs for an inspector's page: the trees of the batch in hand are built once (≤
/// [`SEAL_ENTRIES_MAX`] entries read), and every entry of the page in that batch proved from
/// them.
pub struct SealProver<'s> {
    store: &'s Store,
    region: RegionCode,
    batch: Option<(SealBatch, BTreeMap<SealSigner, SealTree>)>,
}

impl<'s> SealProver<'s> {
    pub fn new(store: &'s Store, region: RegionCode) -> SealProver<'s> {
        SealProver {
            store,
            region,
            batch: None,
        }
    }

    /// The seal proof of entry `seq`, which names `department`; `None` if it is not sealed
    /// yet.
    pub fn proof(&mut self, seq: u64, department: Option<&str>) -> Result<Option<SealProof>> {
        let held = matches!(&self.batch, Some((b, _)) if b.from <= seq && seq < b.to);
        if !held {
            let Some(batch) = batch_of(self.store, seq)? else {
                return Ok(None);
            };
            let (from, to) = (batch.from, batch.to);
            let mut trees: BTreeMap<SealSigner, SealTree> = BTreeMap::new();
            // Leaf hashes as the tree keeps them (what the head signed), not rehashed from
            // the bodies: an entry edited in the store then fails its own inclusion proof,
            // and the others of its seal still prove theirs.
            let tree = StoredNodes(self.store);
            for (at, leaf, named) in crate::ledger::leaves_in(self.store, from, to)? {
                let leaf = tree.get(0, at).unwrap_or(leaf);
                let signer = signer_in(&batch, named.as_deref());
                push(&mut trees, self.region, from..to, signer, at, &leaf)
                    .map_err(|e| anyhow!("ledger entry {at}: {e}"))?;
            }
            self.batch = Some((batch, trees));
        }
        let (stored, trees) = self.batch.as_ref().expect("loaded above");
        let signer = signer_in(stored, department);
        let Some(seal) = stored.seals.iter().find(|s| s.body.signer == signer) else {
            bail!("ledger entry {seq}: its batch holds no seal of {signer}");
        };
        let Some((position, path)) = trees.get(&signer).and_then(|t| t.proof_of(seq)) else {
            bail!("ledger entry {seq} is not in its seal's tree");
        };
        Ok(Some(SealProof {
            seal: seal.clone(),
            position,
            path,
        }))
    }
}

/// Adds entry `seq` (leaf hash `leaf`) to `signer`'s tree of the batch `range`, begun if new:
/// how sealing, proving and verifying all rebuild a batch's trees.
fn push(
    trees: &mut BTreeMap<SealSigner, SealTree>,
    region: RegionCode,
    range: std::ops::Range<u64>,
    signer: SealSigner,
    seq: u64,
    leaf: &Hash,
) -> std::result::Result<(), backflow_protocol::ledger::seal::SealError> {
    trees
        .entry(signer.clone())
        .or_insert_with(|| SealTree::new(region, signer, range.start, range.end))
        .push(seq, leaf)
}

/// Who sealed an entry naming `department` in `batch`: the department, if the batch holds its
/// seal, else the node (an entry naming a department the node did not host when it was sealed,
/// or another node's).
fn signer_in(batch: &SealBatch, department: Option<&str>) -> SealSigner {
    match department {
        Some(d)
            if batch
                .seals
                .iter()
                .any(|s| matches!(&s.body.signer, SealSigner::Department(n) if n == d)) =>
        {
            SealSigner::Department(d.to_string())
        }
        _ => SealSigner::Node,
    }
}

/// `verify`'s check of the seals, fed each entry in order: every entry below
/// [`crate::ledger::sealed_to`] is
/// in exactly one seal of its batch, each seal's tree is rebuilt from the entries and its
/// signature checked under the signer's key.
pub(crate) struct SealCheck<'s> {
    store: &'s Store,
    keys: &'s SealKeys,
    region: RegionCode,
    sealed_to: u64,
    batch: Option<(SealBatch, BTreeMap<SealSigner, SealTree>)>,
    pub(crate) sealed: u64,
}

impl<'s> SealCheck<'s> {
    pub(crate) fn new(
        store: &'s Store,
        keys: &'s SealKeys,
        region: RegionCode,
    ) -> Result<SealCheck<'s>> {
        Ok(SealCheck {
            store,
            keys,
            region,
            sealed_to: crate::ledger::sealed_to(store)?,
            batch: None,
            sealed: 0,
        })
    }

    pub(crate) fn entry(
        &mut self,
        seq: u64,
        leaf: &Hash,
        department: Option<&str>,
    ) -> Result<std::result::Result<(), Damage>> {
        if seq >= self.sealed_to {
            return Ok(Ok(())); // the unsealed tail: sealed at the next beat
        }
        if self.batch.is_none() {
            let batch = match batch_of(self.store, seq) {
                Ok(Some(batch)) if batch.from == seq => batch,
                Ok(Some(batch)) => {
                    return Ok(Err(damage(
                        seq,
                        format!(
                            "its seal covers entries from {}, which are gone: entries were \
                             removed",
                            batch.from
                        ),
                    )))
                }
                Ok(None) => {
                    return Ok(Err(damage(
                        seq,
                        format!(
                            "no seal covers it, though entries up to {} are sealed: its \
                             seal was removed",
                            self.sealed_to - 1
                        ),
                    )))
                }
                Err(e) => return Ok(Err(damage(seq, format!("{e:#}")))),
            };
            self.batch = Some((batch, BTreeMap::new()));
        }
        let Some((batch, trees)) = self.batch.as_mut() else {
            unreachable!("a batch was loaded just above");
        };
        let signer = signer_in(batch, department);
        if let Err(e) = push(trees, self.region, batch.from..batch.to, signer, seq, leaf) {
            return Ok(Err(damage(seq, format!("its seal: {e}"))));
        }
        self.sealed += 1;
        if seq + 1 == batch.to {
            let (batch, trees) = self.batch.take().expect("checked above");
            return Ok(self.finish(&batch, trees));
        }
        Ok(Ok(()))
    }

    /// Every seal of the batch matches the tree rebuilt for its signer, and only those.
    fn finish(
        &self,
        batch: &SealBatch,
        mut trees: BTreeMap<SealSigner, SealTree>,
    ) -> std::result::Result<(), Damage> {
        let range = format!("entries {}–{}", batch.from, batch.to - 1);
        for seal in &batch.seals {
            let signer = &seal.body.signer;
            let Some(tree) = trees.remove(signer) else {
                return Err(damage(
                    None,
                    format!("{range}: a seal of {signer} covers none of them: it was added"),
                ));
            };
            let rebuilt = tree
                .body()
                .map_err(|e| damage(None, format!("{range}: {e}")))?;
            if rebuilt != seal.body {
                return Err(damage(
                    None,
                    format!(
                        "{range}: the seal of {signer} does not match the entries it covers: \
                         the seal was changed or replaced"
                    ),
                ));
            }
            let Some(key) = self.keys.of(signer) else {
                return Err(damage(
                    None,
                    format!("{range}: sealed by {signer}, which this node does not host"),
                ));
            };
            if let Err(e) = seal.verify(key) {
                return Err(damage(None, format!("{range}: {e}")));
            }
        }
        if let Some(signer) = trees.keys().next() {
            return Err(damage(
                None,
                format!("{range}: the entries of {signer} carry no seal: it was removed"),
            ));
        }
        Ok(())
    }

    /// After the last entry: the last batch was whole.
    pub(crate) fn end(&self, entries: u64) -> std::result::Result<(), Damage> {
        match &self.batch {
            Some((batch, _)) => Err(damage(
                entries,
                format!(
                    "missing: the seal of entries {}–{} covers entries past the log's end",
                    batch.from,
                    batch.to - 1
                ),
            )),
            None => Ok(()),
        }
    }
}

fn damage(entry: impl Into<Option<u64>>, problem: impl Into<String>) -> Damage {
    Damage {
        entry: entry.into(),
        problem: problem.into(),
    }
}

/// The certificates of the departments among `departments`, by name.
pub fn certs<'a>(
    departments: impl Iterator<Item = &'a DepartmentIdentity>,
) -> HashMap<&'a str, &'a DepartmentCert> {
    departments.map(|d| (d.name(), &d.cert)).collect()
}

#[cfg(test)]
mod tests {
    use backflow_protocol::ledger::entry::EntryKind;
    use backflow_protocol::time::UnixMs;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::ledger::{entries, Record};
    use crate::ledger_verify::verify;

    const DEPT: &str = "东城区民政局";

    fn region() -> RegionCode {
        "110101".parse().unwrap()
    }

    fn node(seed: u8) -> NodeIdentity {
        NodeIdentity {
            region: region(),
            key: SigningKey::from_bytes(&[seed; 32]),
            chain: Vec::new(),
        }
    }

    /// Entry i names the hosted department (i % 3 == 0), another node's department
    /// (i % 3 == 1) or none.
    fn record(i: u64) -> Record {
        Record {
            time_ms: 1_767_225_600_000 + i,
            department: match i % 3 {
                0 => Some(DEPT.into()),
                1 => Some("广东省卫生健康委".into()),
                _ => None,
            },
            kind: EntryKind::Note,
            subject: format!("case-{i}"),
            detail: format!("act {i}"),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        ledger: Ledger,
        node: NodeIdentity,
        dept: DepartmentIdentity,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let node = node(1);
            let ledger = open_ledger(&store, region(), &node.key.verifying_key()).unwrap();
            let dept = DepartmentIdentity::certify(
                &node,
                DEPT,
                SigningKey::from_bytes(&[9; 32]),
                UnixMs(0),
            )
            .unwrap();
            Fixture {
                _dir: dir,
                store,
                ledger,
                node,
                dept,
            }
        }

        fn append(&mut self, range: std::ops::Range<u64>) {
            self.ledger
                .append(&self.store, self.store.batch(), range.map(record))
                .unwrap();
        }

        fn seal(&mut self) -> u64 {
            let departments = HashMap::from([(DEPT, &self.dept)]);
            seal(&self.store, &mut self.ledger, &self.node, &departments).unwrap()
        }

        fn keys(&self) -> SealKeys {
            SealKeys {
                node: self.node.key.verifying_key(),
                departments: HashMap::from([(DEPT.to_string(), self.dept.cert.body.key)]),
            }
        }

        fn check(&self, keys: &SealKeys) -> std::result::Result<crate::ledger::Verified, Damage> {
            verify(&self.store, region(), keys).unwrap()
        }
    }

    #[test]
    fn each_entry_is_sealed_by_its_department_or_the_node_and_proves_it_alone() {
        let mut f = Fixture::new();
        f.append(0..30);
        assert_eq!(f.seal(), 30);
        f.append(30..40);
        assert_eq!(f.seal(), 10, "the next beat seals only what is new");
        assert_eq!(f.seal(), 0);
        let batch = batch_of(&f.store, 0).unwrap().unwrap();
        let signers: Vec<_> = batch.seals.iter().map(|s| s.body.signer.clone()).collect();
        assert_eq!(
            signers,
            [SealSigner::Node, SealSigner::Department(DEPT.into())],
            "another node's department is sealed by this node, its own by its key"
        );
        assert_eq!(
            (batch.from, batch.to, batch.seals[1].body.count),
            (0, 30, 10)
        );
        let v = f.check(&f.keys()).unwrap();
        assert_eq!((v.entries, v.sealed), (40, 40));

        // Each entry's proof on its own, under its signer's key only.
        let mut prover = SealProver::new(&f.store, region());
        for e in entries(&f.store, 0, 40).unwrap() {
            let proof = prover
                .proof(e.seq, e.department.as_deref())
                .unwrap()
                .unwrap();
            let leaf = e.leaf_hash().unwrap();
            let (right, wrong) = if e.department.as_deref() == Some(DEPT) {
                (f.dept.cert.body.key, f.node.key.verifying_key())
            } else {
                (f.node.key.verifying_key(), f.dept.cert.body.key)
            };
            proof.check(&e, &leaf, &right).unwrap();
            assert!(proof.check(&e, &leaf, &wrong).is_err(), "entry {}", e.seq);
        }

        // Entries appended since the last beat are the unsealed tail: not damage.
        f.append(40..45);
        let v = f.check(&f.keys()).unwrap();
        assert_eq!((v.entries, v.sealed), (45, 40));
        assert!(SealProver::new(&f.store, region())
            .proof(42, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_forged_removed_or_unknown_seal_is_named() {
        let mut f = Fixture::new();
        f.append(0..30);
        f.seal();
        f.append(30..40);
        f.seal();
        // Without the department's key the node cannot check its seals.
        let d = f
            .check(&SealKeys::node_only(f.node.key.verifying_key()))
            .unwrap_err();
        assert!(
            d.problem.contains("entries 0–29") && d.problem.contains("does not host"),
            "{d}"
        );

        // The operator re-signs the department's seal with the node's key.
        let original = f.store.get(CF_LEDGER, &seal_key(30)).unwrap().unwrap();
        let mut forged: StoredSeals = decode_exact(&original).unwrap();
        let body = forged.seals[1].body.clone();
        forged.seals[1] = EntrySeal::sign(body, |d| f.node.sign(d));
        let put = |s: &StoredSeals| {
            f.store
                .put(CF_LEDGER, &seal_key(30), &encode_value(s).unwrap())
                .unwrap()
        };
        put(&forged);
        let d = f.check(&f.keys()).unwrap_err();
        assert!(
            d.problem.contains("entries 0–29") && d.problem.contains(DEPT),
            "{d}"
        );

        // The node's seal dropped: its entries are named as unsealed.
        let mut dropped: StoredSeals = decode_exact(&original).unwrap();
        dropped.seals.remove(0);
        put(&dropped);
        let d = f.check(&f.keys()).unwrap_err();
        assert!(d.problem.contains("the node carry no seal"), "{d}");
        // The department's dropped: its entries fall to the node's seal, which does not
        // cover them.
        let mut dropped: StoredSeals = decode_exact(&original).unwrap();
        dropped.seals.remove(1);
        put(&dropped);
        let d = f.check(&f.keys()).unwrap_err();
        assert!(d.problem.contains("does not match the entries"), "{d}");

        // The whole first batch removed while a later one stands.
        f.store.delete(CF_LEDGER, &seal_key(30)).unwrap();
        let d = f.check(&f.keys()).unwrap_err();
        assert_eq!(d.entry, Some(0), "{d}");
        assert!(d.problem.contains("seal was removed"), "{d}");
        f.store.put(CF_LEDGER, &seal_key(30), &original).unwrap();
        assert!(f.check(&f.keys()).is_ok());
    }

    #[test]
    fn a_rotated_node_key_seals_the_log_again() {
        let mut f = Fixture::new();
        f.append(0..20);
        f.seal();
        // Restarted under a new key (backflow cert rotate): the old seals go, all are made
        // again at the first beat, and verify under the new key.
        f.node = node(2);
        f.ledger = open_ledger(&f.store, region(), &f.node.key.verifying_key()).unwrap();
        assert_eq!((f.ledger.sealed_to(), f.ledger.size()), (0, 20));
        assert_eq!(f.seal(), 20);
        assert_eq!(f.check(&f.keys()).unwrap().sealed, 20);
        // Reopened under the same key: nothing changes.
        f.ledger = open_ledger(&f.store, region(), &f.node.key.verifying_key()).unwrap();
        assert_eq!(f.ledger.sealed_to(), 20);
    }
}
