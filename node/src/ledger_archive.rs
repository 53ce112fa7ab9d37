//! The archive of pruned ledger entries (台账归档): before pruning deletes entries past their
//! retention period (`ledger_prune`), they are written to a file of their own in the node's
//! data directory, synced, so that what leaves the live store is kept, not lost — Art. 29 sets
//! a minimum (不少于3年), and an authority may want older records.
//!
//! One file per pruning: `<db>/ledger-archive/entries-<from>-<last>.jsonl`, one JSON object a
//! line: `seq`, `leaf` — the entry's logged bytes in hex, whose RFC 6962 leaf hash is the one
//! the node keeps in its tree, so an archived entry is still proved against every head the
//! node signed (`inclusion` below) — and `entry`, the same entry as `ledger show` prints it.
//! Written to a `.partial` file, synced, renamed and the directory synced before the pruning's
//! deletions are written: a crash leaves either no archive and no pruning, or the archive (a
//! pruning retried after it writes the same file again).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use backflow_protocol::ledger::entry::LedgerEntry;
use backflow_protocol::ledger::merkle::{self, NodeStore};
use serde::{Deserialize, Serialize};

use crate::ledger::StoredNodes;
use crate::ledger_api::EntryView;
use crate::store::Store;

pub const ARCHIVE_DIR: &str = "ledger-archive";

/// One line of an archive file.
#[derive(Serialize, Deserialize)]
pub struct ArchivedEntry {
    pub seq: u64,
    /// The logged bytes, hex.
    pub leaf: String,
    pub entry: EntryView,
}

/// The archive file of entries `from..below`.
pub fn archive_path(store: &Store, from: u64, below: u64) -> PathBuf {
    store
        .root()
        .join(ARCHIVE_DIR)
        .join(format!("entries-{from}-{}.jsonl", below - 1))
}

/// Writes entries `from..below` of the stored log to their archive file, durably (see the
/// module docs); returns its path.
pub fn archive(store: &Store, from: u64, below: u64) -> Result<PathBuf> {
    let path = archive_path(store, from, below);
    let dir = path.parent().expect("an archive file has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    crate::ledger::each_entry(store, from, below, |at, leaf, entry| {
        let line = ArchivedEntry {
            seq: at,
            leaf: hex::encode(leaf),
            entry: EntryView::of(&entry),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    crate::config::sync_dir(&path)?;
    Ok(path)
}

/// Checks every archive file ([`check`]); returns the entries they hold.
pub fn check_all(store: &Store) -> Result<u64> {
    let dir = store.root().join(ARCHIVE_DIR);
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for item in listing {
        let path = item?.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().try_fold(0, |n, p| Ok(n + check(store, p)?))
}

/// Checks an archive file against the node's tree: every line's bytes decode to its entry at
/// its position and hash to the leaf the tree keeps. Returns the number of entries.
pub fn check(store: &Store, path: &Path) -> Result<u64> {
    // One line: an entry of ≤ 32 KiB as hex and again as JSON text (escapes at most ×6).
    const LINE_BYTES_MAX: u64 = 8 * backflow_protocol::ledger::entry::LEDGER_ENTRY_BYTES_MAX as u64;
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading the archive {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let nodes = StoredNodes(store);
    let mut n = 0;
    let mut line = Vec::new();
    for i in 0.. {
        line.clear();
        (&mut reader)
            .take(LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading the archive {}", path.display()))?;
        if line.is_empty() {
            break;
        }
        if line.len() as u64 > LINE_BYTES_MAX {
            bail!(
                "{} line {}: longer than an archived entry can be",
                path.display(),
                i + 1
            );
        }
        let line = std::str::from_utf8(&line).unwrap_or_default().trim_end();
        let bad = |why: String| anyhow!("{} line {}: {why}", path.display(), i + 1);
        let a: ArchivedEntry =
            serde_json::from_str(line).map_err(|_| bad("not an archived entry".into()))?;
        let leaf = hex::decode(&a.leaf).map_err(|_| bad("its bytes are not hex".into()))?;
        let entry = LedgerEntry::decode(&leaf).map_err(|e| bad(e.to_string()))?;
        if entry.seq != a.seq {
            return Err(bad(format!("holds entry {}, not {}", entry.seq, a.seq)));
        }
        if EntryView::of(&entry) != a.entry {
            return Err(bad(format!(
                "entry {}'s readable form is not what its bytes say",
                a.seq
            )));
        }
        if nodes.get(0, a.seq) != Some(merkle::leaf_hash(&leaf)) {
            return Err(bad(format!(
                "entry {} is not the one the ledger's tree holds",
                a.seq
            )));
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use backflow_protocol::cert::NodeIdentity;
    use backflow_protocol::ledger::entry::EntryKind;
    use backflow_protocol::ledger::RETENTION_MS_MIN;

    use super::*;
    use crate::ledger::{Ledger, Record};

    #[test]
    fn pruned_entries_are_archived_first_and_the_archive_proves_against_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let region = "110101".parse().unwrap();
        let node = NodeIdentity {
            region,
            key: ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            chain: Vec::new(),
        };
        let mut ledger = Ledger::open(&store, region).unwrap();
        let t0 = 1_767_225_600_000;
        let record = |i: u64| Record {
            time_ms: t0 + i,
            department: None,
            kind: EntryKind::Note,
            subject: format!("case-{i}"),
            detail: format!("受理 {i}"),
        };
        ledger
            .append(&store, store.batch(), (0..20).map(record))
            .unwrap();
        crate::ledger_seal::seal(&store, &mut ledger, &node, &HashMap::new()).unwrap();
        ledger
            .append(&store, store.batch(), (20..30).map(record))
            .unwrap();
        crate::ledger_seal::seal(&store, &mut ledger, &node, &HashMap::new()).unwrap();
        ledger.sign_if_grown(&store, &node, 1).unwrap();
        // Entries 0–24 are past three years; the seal batch 20–29 is not pruned in part.
        let now = t0 + RETENTION_MS_MIN + 25;
        let p = crate::ledger_prune::prune(&store, &mut ledger, now, RETENTION_MS_MIN)
            .unwrap()
            .unwrap();
        assert_eq!((p.from, p.below), (0, 20));
        let path = archive_path(&store, 0, 20);
        assert!(
            path.ends_with("ledger-archive/entries-0-19.jsonl"),
            "{path:?}"
        );
        assert_eq!(check(&store, &path).unwrap(), 20);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("受理 0"), "{text}");
        assert!(!path.with_extension("partial").exists());
        // The pruning's own entry names the file.
        let last = crate::ledger::entries(&store, 30, 1)
            .unwrap()
            .pop()
            .unwrap();
        assert!(
            last.detail.contains("entries-0-19.jsonl"),
            "{}",
            last.detail
        );

        // An archived entry edited afterwards is named by its line.
        let edited = text.replacen("case-3", "case-X", 1);
        std::fs::write(&path, &edited).unwrap();
        let e = check(&store, &path).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        // Bytes and view edited together: the bytes are not the tree's leaf.
        let mut lines: Vec<ArchivedEntry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut entry = LedgerEntry::decode(&hex::decode(&lines[3].leaf).unwrap()).unwrap();
        entry.subject = "case-X".into();
        lines[3].leaf = hex::encode(entry.leaf_bytes().unwrap());
        lines[3].entry = EntryView::of(&entry);
        let forged: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        std::fs::write(&path, forged).unwrap();
        let e = check(&store, &path).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("not the one"), "{e}");
    }
}
