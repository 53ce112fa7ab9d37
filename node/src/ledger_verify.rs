//! `ledger verify` (合规台账核验): the whole stored log checked against its tree, the head the
//! node signed, its pruning record and every entry's seal, naming the first entry that does
//! not hold. Apart from `ledger` (storage) so that the checks of the seals (`ledger_seal`),
//! which build on the storage, do not make the two depend on each other.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use backflow_protocol::ledger::entry::{EntryKind, LedgerEntry};
use backflow_protocol::ledger::head::SignedTreeHead;
use backflow_protocol::ledger::merkle::{self, Hash, NodeStore};
use backflow_topology::RegionCode;

use crate::ledger::{
    damage, entry_key, pruned_below, seq_of, stored_head, Damage, StoredNodes, Verified,
    ENTRY_PREFIX,
};
use crate::store::{Store, CF_LEDGER};

/// Checks the whole log: entries numbered 0, 1, 2… without a gap, each decoding to itself and
/// this node's region, each leaf and every tree node recomputed from the entries equal to the
/// stored one, and the root at the signed head's size equal to the signed root, under `key`
/// (the node's own), and every entry's seal ([`crate::ledger_seal`]) under the key of the
/// department or node that sealed it (`keys`). Names the first entry that does not hold.
/// Reads each entry once and
/// keeps only the tree's right edge in memory (≤ 64 hashes), so a log of any length verifies
/// in bounded memory. `Err` is an IO failure; `Ok(Err(_))` is damage found.
pub fn verify(
    store: &Store,
    region: RegionCode,
    keys: &crate::ledger_seal::SealKeys,
) -> Result<std::result::Result<Verified, Damage>> {
    let key = &keys.node;
    let head = match stored_head(store) {
        Ok(head) => head,
        Err(e) => return Ok(Err(damage(None, format!("{e:#}")))),
    };
    if let Some(h) = &head {
        if h.head.region != region {
            return Ok(Err(damage(None, "the stored head is another region's")));
        }
        if h.verify(key).is_err() {
            return Ok(Err(damage(
                None,
                "the stored head's signature is not this node's key: the head was replaced",
            )));
        }
    }
    let stored = StoredNodes(store);
    // The right edge of the tree rebuilt so far: the perfect subtrees of `seq`'s set bits.
    let mut edge: BTreeMap<(u8, u64), Hash> = BTreeMap::new();
    let pruned = match pruned_below(store) {
        Ok(pruned) => pruned,
        Err(e) => return Ok(Err(damage(None, format!("{e:#}")))),
    };
    // Pruned entries (Art. 29, after the retention period): their leaves stay in the tree.
    for seq in 0..pruned {
        let Some(leaf) = stored.get(0, seq) else {
            return Ok(Err(damage(
                seq,
                "pruned, and its hash is missing from the tree: the tree was cut",
            )));
        };
        if let Err(d) = add_leaf(&stored, &mut edge, seq, leaf, head.as_ref())? {
            return Ok(Err(d));
        }
    }
    let mut seq = pruned;
    let mut pruned_record = None;
    let mut seal_damage = None;
    let mut seals = match crate::ledger_seal::SealCheck::new(store, keys, region) {
        Ok(seals) => seals,
        Err(e) => return Ok(Err(damage(None, format!("{e:#}")))),
    };
    for item in store.iter_from(CF_LEDGER, &entry_key(pruned)) {
        let (k, bytes) = item?;
        if k.first() != Some(&ENTRY_PREFIX) {
            break;
        }
        let at = match seq_of(&k) {
            Ok(at) => at,
            Err(e) => return Ok(Err(damage(seq, format!("{e:#}")))),
        };
        if at != seq {
            return Ok(Err(damage(
                seq,
                format!("missing: the next stored entry is {at} (entries were removed)"),
            )));
        }
        let entry = match LedgerEntry::decode(&bytes) {
            Ok(entry) => entry,
            Err(e) => return Ok(Err(damage(seq, format!("does not decode ({e}): edited")))),
        };
        if entry.seq != seq {
            return Ok(Err(damage(
                seq,
                format!(
                    "holds entry {}: entries were moved, reordered or inserted",
                    entry.seq
                ),
            )));
        }
        if entry.region != region {
            return Ok(Err(damage(seq, "is another region's entry")));
        }
        if let EntryKind::Pruned { below, .. } = entry.kind {
            pruned_record = Some(below);
        }
        let leaf = merkle::leaf_hash(&bytes);
        if let Err(d) = add_leaf(&stored, &mut edge, seq, leaf, head.as_ref())? {
            return Ok(Err(d));
        }
        // A seal's damage is named after the log's own (an edited entry, cut tree, faked
        // pruning), which says more; checking stops at the first.
        if seal_damage.is_none() {
            if let Err(d) = seals.entry(seq, &leaf, entry.department.as_deref())? {
                seal_damage = Some(d);
            }
        }
        seq += 1;
    }
    if pruned > 0 && pruned_record != Some(pruned) {
        return Ok(Err(damage(
            None,
            format!(
                "entries 0–{} are gone without the log's own record of their pruning: they \
                 were removed behind the node's back",
                pruned - 1
            ),
        )));
    }
    if let Some(h) = head.as_ref().filter(|h| h.head.size > seq) {
        return Ok(Err(damage(
            seq,
            format!(
                "missing: the log ends at {seq} entries, but this node signed a head of {} \
                 (entries were removed from its end)",
                h.head.size
            ),
        )));
    }
    if let Some(d) = seal_damage.or_else(|| seals.end(seq).err()) {
        return Ok(Err(d));
    }
    let archived = match crate::ledger_archive::check_all(store) {
        Ok(n) => n,
        Err(e) => {
            return Ok(Err(damage(
                None,
                format!("the archive of pruned entries: {e:#}"),
            )))
        }
    };
    let root = merkle::root(seq, &edge).map_err(|e| anyhow!("{e}"))?;
    Ok(Ok(Verified {
        entries: seq,
        root,
        head_size: head.as_ref().map(|h| h.head.size),
        head_time_ms: head.as_ref().map(|h| h.head.time_ms),
        sealed: seals.sealed,
        archived,
    }))
}

/// Adds leaf `seq` (its hash `leaf`) to the tree rebuilt so far (`edge`): every tree node it
/// completes must be the stored one, and at the signed head's size the root the signed one.
fn add_leaf(
    stored: &StoredNodes<'_>,
    edge: &mut BTreeMap<(u8, u64), Hash>,
    seq: u64,
    leaf: Hash,
    head: Option<&SignedTreeHead>,
) -> Result<std::result::Result<(), Damage>> {
    let nodes =
        merkle::append(leaf, seq, &*edge).map_err(|e| anyhow!("rebuilding the tree: {e}"))?;
    for n in &nodes {
        match stored.get(n.level, n.index) {
            Some(h) if h == n.hash => {}
            Some(_) if n.level == 0 => {
                return Ok(Err(damage(
                    seq,
                    "changed after it was logged: its hash is not the one in the tree",
                )))
            }
            Some(_) => {
                return Ok(Err(damage(
                    seq,
                    format!(
                        "the stored tree node (level {}, index {}) above it — over entries \
                         {}–{} — was changed",
                        n.level,
                        n.index,
                        n.index << n.level,
                        ((n.index + 1) << n.level) - 1
                    ),
                )))
            }
            None => {
                return Ok(Err(damage(
                    seq,
                    format!(
                        "the tree node (level {}, index {}) is missing: entries were \
                         added outside the ledger or its tree was cut",
                        n.level, n.index
                    ),
                )))
            }
        }
        edge.insert((n.level, n.index), n.hash);
    }
    let size = seq + 1;
    edge.retain(|&(level, index), _| is_edge(size, level, index));
    if let Some(h) = head.filter(|h| h.head.size == size) {
        let root = merkle::root(size, &*edge).map_err(|e| anyhow!("{e}"))?;
        if root != h.head.root {
            return Ok(Err(damage(
                None,
                format!(
                    "entries 0–{} do not have the root this node signed for them: \
                     entries and tree were rewritten together",
                    seq
                ),
            )));
        }
    }
    Ok(Ok(()))
}

/// Whether node (`level`, `index`) is one of the perfect subtrees a log of `size` leaves
/// splits into (one per set bit of `size`, the largest leftmost): the only nodes appending
/// and the root need.
fn is_edge(size: u64, level: u8, index: u64) -> bool {
    level < 64 && size >> level & 1 == 1 && index == (size >> level) - 1
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use backflow_protocol::cert::NodeIdentity;
    use backflow_protocol::ledger::entry::{LEDGER_DETAIL_BYTES_MAX, LEDGER_SUBJECT_BYTES_MAX};

    use super::*;
    use crate::ledger::*;
    use backflow_protocol::ledger::verify::verify_inclusion;
    use backflow_protocol::ledger::RETENTION_MS_MIN;

    fn region() -> RegionCode {
        "110101".parse().unwrap()
    }

    fn node_identity(seed: u8) -> NodeIdentity {
        NodeIdentity {
            region: region(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            chain: Vec::new(),
        }
    }

    fn record(i: u64) -> Record {
        Record {
            time_ms: 1_767_225_600_000 + i,
            department: Some("东城区民政局".into()),
            kind: EntryKind::Note,
            subject: format!("case-{i}"),
            detail: format!("act {i}"),
        }
    }

    fn ledger_of(n: u64) -> (tempfile::TempDir, Store, Ledger, NodeIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let identity = node_identity(1);
        let mut ledger = Ledger::open(&store, region()).unwrap();
        // Batches of 1, 2, 3… entries: appends within a batch see each other's nodes.
        let mut i = 0;
        let mut batch_len = 1;
        while i < n {
            let end = (i + batch_len).min(n);
            ledger
                .append(&store, store.batch(), (i..end).map(record))
                .unwrap();
            i = end;
            batch_len += 1;
        }
        // Sealed in batches of ten, as beats would: pruning goes by whole batches.
        for to in (10..n).step_by(10).chain([n]) {
            crate::ledger_seal::seal_until(&store, &mut ledger, &identity, &HashMap::new(), to)
                .unwrap();
        }
        ledger.sign_if_grown(&store, &identity, 1).unwrap();
        (dir, store, ledger, identity)
    }

    fn check(store: &Store, identity: &NodeIdentity) -> std::result::Result<Verified, Damage> {
        let keys = crate::ledger_seal::SealKeys::node_only(identity.key.verifying_key());
        verify(store, region(), &keys).unwrap()
    }

    #[test]
    fn appended_entries_read_back_and_prove_inclusion_under_the_signed_head() {
        let (_dir, store, ledger, identity) = ledger_of(100);
        assert_eq!(ledger.size(), 100);
        let read = entries(&store, 40, 5).unwrap();
        assert_eq!(read.len(), 5);
        assert_eq!(read[0].seq, 40);
        assert_eq!(read[0].subject, "case-40");
        let head = stored_head(&store).unwrap().unwrap();
        assert_eq!(head.head.size, 100);
        head.verify(&identity.key.verifying_key()).unwrap();
        let path = merkle::inclusion_proof(40, 100, &StoredNodes(&store)).unwrap();
        let leaf = read[0].leaf_hash().unwrap();
        verify_inclusion(&leaf, 40, 100, &path, &head.head.root).unwrap();
        let ok = check(&store, &identity).unwrap();
        assert_eq!((ok.entries, ok.root), (100, head.head.root));
        // Reopened, the log goes on where it was.
        let _ = ledger;
        let mut again = Ledger::open(&store, region()).unwrap();
        assert_eq!(again.size(), 100);
        again.append(&store, store.batch(), [record(100)]).unwrap();
        assert_eq!(check(&store, &identity).unwrap().entries, 101);
    }

    #[test]
    fn texts_over_the_limits_are_clipped_not_refused() {
        let (_dir, store, mut ledger, identity) = ledger_of(0);
        let mut long = record(0);
        long.detail = "数".repeat(LEDGER_DETAIL_BYTES_MAX);
        long.subject = "x".repeat(LEDGER_SUBJECT_BYTES_MAX + 1);
        ledger.append(&store, store.batch(), [long]).unwrap();
        let e = &entries(&store, 0, 1).unwrap()[0];
        assert!(e.detail.len() <= LEDGER_DETAIL_BYTES_MAX && e.detail.starts_with('数'));
        assert_eq!(e.subject.len(), LEDGER_SUBJECT_BYTES_MAX);
        assert!(check(&store, &identity).is_ok());
    }

    fn stored_entry(store: &Store, seq: u64) -> Vec<u8> {
        store.get(CF_LEDGER, &entry_key(seq)).unwrap().unwrap()
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (_dir, store, _ledger, identity) = ledger_of(50);
        let mut e = LedgerEntry::decode(&stored_entry(&store, 17)).unwrap();
        e.detail = "act 17, as someone would rather it read".into();
        store
            .put(CF_LEDGER, &entry_key(17), &e.leaf_bytes().unwrap())
            .unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(17), "{d}");
        assert!(d.problem.contains("changed after it was logged"), "{d}");
        // Bytes that no longer decode at all are named too.
        store.put(CF_LEDGER, &entry_key(18), b"garbage").unwrap();
        store
            .put(CF_LEDGER, &entry_key(17), &stored_entry_of(17))
            .unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(18), "{d}");
    }

    /// Entry `seq` as `ledger_of` wrote it.
    fn stored_entry_of(seq: u64) -> Vec<u8> {
        record(seq).into_entry(seq, region()).leaf_bytes().unwrap()
    }

    #[test]
    fn a_deleted_entry_is_named_in_the_middle_and_at_the_end() {
        let (_dir, store, _ledger, identity) = ledger_of(50);
        store.delete(CF_LEDGER, &entry_key(30)).unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(30), "{d}");
        assert!(d.problem.contains("missing"), "{d}");

        let (_dir, store, _ledger, identity) = ledger_of(50);
        store.delete(CF_LEDGER, &entry_key(49)).unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(49), "{d}");
        assert!(d.problem.contains("signed a head of 50"), "{d}");
    }

    #[test]
    fn reordered_entries_are_named() {
        let (_dir, store, _ledger, identity) = ledger_of(50);
        let (a, b) = (stored_entry(&store, 10), stored_entry(&store, 11));
        store.put(CF_LEDGER, &entry_key(10), &b).unwrap();
        store.put(CF_LEDGER, &entry_key(11), &a).unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(10), "{d}");
        assert!(d.problem.contains("holds entry 11"), "{d}");
    }

    #[test]
    fn an_inserted_entry_is_named() {
        // Someone shifts entries 20.. up by one and puts a made-up entry at 20, renumbered
        // so that each decodes to its own position — but not one of them fits the tree.
        let (_dir, store, _ledger, identity) = ledger_of(50);
        for seq in (20..50).rev() {
            let mut e = LedgerEntry::decode(&stored_entry(&store, seq)).unwrap();
            e.seq = seq + 1;
            store
                .put(CF_LEDGER, &entry_key(seq + 1), &e.leaf_bytes().unwrap())
                .unwrap();
        }
        let mut made_up = record(999).into_entry(20, region());
        made_up.detail = "an act that never happened".into();
        store
            .put(CF_LEDGER, &entry_key(20), &made_up.leaf_bytes().unwrap())
            .unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(20), "{d}");
    }

    #[test]
    fn a_rewritten_log_does_not_match_the_signed_head() {
        // The whole tree recomputed after an edit (as a tool with write access could) still
        // fails: the root differs from the one the node signed.
        let (_dir, store, _ledger, identity) = ledger_of(20);
        let dir2 = tempfile::tempdir().unwrap();
        let other = Store::open(dir2.path()).unwrap();
        let mut forged = Ledger::open(&other, region()).unwrap();
        let mut records: Vec<Record> = (0..20).map(record).collect();
        records[5].detail = "rewritten".into();
        forged.append(&other, other.batch(), records).unwrap();
        for seq in 0..20 {
            store
                .put(
                    CF_LEDGER,
                    &entry_key(seq),
                    &other.get(CF_LEDGER, &entry_key(seq)).unwrap().unwrap(),
                )
                .unwrap();
        }
        for (k, v) in other.scan_prefix(CF_LEDGER, &[NODE_PREFIX], 1_000).unwrap() {
            store.put(CF_LEDGER, &k, &v).unwrap();
        }
        let d = check(&store, &identity).unwrap_err();
        assert!(
            d.problem.contains("do not have the root this node signed"),
            "{d}"
        );
        // And a head signed by another key is refused outright.
        let stranger = node_identity(2);
        forged.sign_if_grown(&other, &stranger, 2).unwrap();
        store
            .put(
                CF_LEDGER,
                HEAD_KEY,
                &other.get(CF_LEDGER, HEAD_KEY).unwrap().unwrap(),
            )
            .unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert!(d.problem.contains("not this node's key"), "{d}");
    }

    #[test]
    fn a_log_with_a_missing_tree_node_does_not_open() {
        let (_dir, store, _ledger, _identity) = ledger_of(8);
        store.delete(CF_LEDGER, &node_key(3, 0)).unwrap();
        let e = Ledger::open(&store, region()).err().unwrap().to_string();
        assert!(e.contains("damaged") && e.contains("backup"), "{e}");
    }

    /// `record(i)` is recorded at T0 + i ms; pruning at T0 + 3 years + `cut` ms.
    fn prune_at(
        store: &Store,
        ledger: &mut Ledger,
        cut: u64,
    ) -> Option<crate::ledger_prune::Pruning> {
        let now = record(0).time_ms + RETENTION_MS_MIN + cut;
        crate::ledger_prune::prune(store, ledger, now, RETENTION_MS_MIN).unwrap()
    }

    #[test]
    fn pruning_removes_only_entries_past_three_years_and_keeps_heads_and_proofs() {
        let (_dir, store, mut ledger, identity) = ledger_of(50);
        let old_head = stored_head(&store).unwrap().unwrap();
        // Below three years: refused, whatever is asked.
        let short = RETENTION_MS_MIN - 1;
        assert!(crate::ledger_prune::prune(&store, &mut ledger, u64::MAX, short).is_err());
        // Nothing is three years old yet.
        assert_eq!(prune_at(&store, &mut ledger, 0), None);
        let p = prune_at(&store, &mut ledger, 30).unwrap();
        assert_eq!(
            (p.from, p.below),
            (0, 30),
            "entries 0–29 are past, 30– are not"
        );
        assert_eq!(pruned_below(&store).unwrap(), 30);
        assert_eq!(ledger.size(), 51, "the pruning is recorded in the log");
        // Their seals went with them (whole batches of ten here); the rest are still checked.
        assert!(crate::ledger_seal::batch_of(&store, 20).unwrap().is_none());
        assert!(crate::ledger_seal::batch_of(&store, 30).unwrap().is_some());
        let left = entries(&store, 0, 100).unwrap();
        assert_eq!(left.first().map(|e| e.seq), Some(30));
        assert!(matches!(
            left.last().map(|e| &e.kind),
            Some(EntryKind::Pruned {
                from: 0,
                below: 30,
                ..
            })
        ));
        // Every tree node stayed: the head signed before still holds, and an inclusion
        // proof of a pruned entry still proves against the new head.
        let stored = StoredNodes(&store);
        assert_eq!(merkle::root(50, &stored).unwrap(), old_head.head.root);
        ledger.sign_if_grown(&store, &identity, 2).unwrap();
        let head = stored_head(&store).unwrap().unwrap();
        let leaf = stored.get(0, 7).unwrap();
        let proof = merkle::inclusion_proof(7, 51, &stored).unwrap();
        assert!(verify_inclusion(&leaf, 7, 51, &proof, &head.head.root).is_ok());
        assert_eq!(
            check(&store, &identity).map(|v| (v.entries, v.sealed)),
            Ok((51, 20)),
            "30–49 under their seals; the pruning's own entry is sealed at the next beat"
        );
        assert_eq!(stored_size(&store).unwrap(), 51);
        // Again at once: nothing more is due; later, the rest (not the pruning's own entry,
        // recorded now).
        assert_eq!(prune_at(&store, &mut ledger, 30), None);
        let p = prune_at(&store, &mut ledger, 1_000).unwrap();
        assert_eq!((p.from, p.below), (30, 50));
        ledger.sign_if_grown(&store, &identity, 3).unwrap();
        assert_eq!(check(&store, &identity).map(|v| v.entries), Ok(52));
    }

    #[test]
    fn pruning_waits_for_a_signed_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ledger = Ledger::open(&store, region()).unwrap();
        ledger
            .append(&store, store.batch(), (0..5).map(record))
            .unwrap();
        assert_eq!(prune_at(&store, &mut ledger, 1_000), None);
    }

    #[test]
    fn pruning_faked_or_cut_behind_the_node_s_back_is_named() {
        let (_dir, store, mut ledger, identity) = ledger_of(50);
        prune_at(&store, &mut ledger, 30).unwrap();
        ledger.sign_if_grown(&store, &identity, 2).unwrap();
        // Entries 30–34, young, deleted and the mark moved past them by hand.
        for seq in 30..35 {
            store.delete(CF_LEDGER, &entry_key(seq)).unwrap();
        }
        store
            .put(CF_LEDGER, PRUNED_KEY, &35u64.to_be_bytes())
            .unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert!(d.problem.contains("behind the node's back"), "{d}");
        // A pruned entry's leaf hash changed: named.
        let (_dir, store, mut ledger, identity) = ledger_of(50);
        prune_at(&store, &mut ledger, 30).unwrap();
        ledger.sign_if_grown(&store, &identity, 2).unwrap();
        // (The node over entries 10–11 no longer fits once entry 11 is added.)
        store.put(CF_LEDGER, &node_key(0, 11), &[9u8; 32]).unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(11), "{d}");
        assert!(d.problem.contains("entries 10–11"), "{d}");
        // And its leaf hash deleted: named too.
        store.delete(CF_LEDGER, &node_key(0, 11)).unwrap();
        let d = check(&store, &identity).unwrap_err();
        assert_eq!(d.entry, Some(11), "{d}");
        assert!(d.problem.contains("hash is missing"), "{d}");
    }

    #[test]
    fn the_edge_is_the_subtrees_of_the_size_s_set_bits() {
        // 6 = 4 + 2: leaves 0–3 (level 2, index 0) and 4–5 (level 1, index 2).
        assert!(is_edge(6, 2, 0) && is_edge(6, 1, 2));
        assert!(!is_edge(6, 0, 5) && !is_edge(6, 1, 0) && !is_edge(6, 2, 1));
        assert!(is_edge(u64::MAX, 63, 0));
    }
}
