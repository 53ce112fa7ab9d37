//! A simulated node's catalog storage, as the node keeps it in RocksDB
//! (node/src/catalog_store.rs): the catalog log, and every department's record and current
//! entries. The protocol's `CatalogSync` holds only ids of other nodes' departments and the
//! part of the log its upstream still lacks; the rest is here: each
//! `CatalogStorageOp::AppendLog` appends to the log, applies the version's changes to the
//! department's entries and stores its record; `CatalogStorageOp::ReadLog` is answered from
//! the log; a restart hands back a `SavedCatalog` (the log's length, every record, this
//! node's own departments' entries whole and only the ids of the rest — what the node reads).
//!
//! Entries are the `Arc`s the versions carry (one decoded copy shared by every node holding
//! it), kept sorted by id: the simulator holds 44,704 of these stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_protocol::catalog::{CatalogChange, CatalogEntry, CatalogOrigin, SignedCatalogUpdate};
use backflow_protocol::catalog_sync::{OriginRecord, SavedCatalog, SavedEntries, SavedOrigin};
use backflow_topology::RegionCode;

/// One department's catalog as stored: its record and its current entries, sorted by id.
#[derive(Clone, Debug, Default)]
pub struct StoredCatalog {
    pub record: OriginRecord,
    entries: Vec<Arc<CatalogEntry>>,
}

impl StoredCatalog {
    /// The current entries, in id order.
    pub fn entries(&self) -> &[Arc<CatalogEntry>] {
        &self.entries
    }

    pub fn entry(&self, id: &str) -> Option<&Arc<CatalogEntry>> {
        let at = self.position(id).ok()?;
        Some(&self.entries[at])
    }

    fn position(&self, id: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.id.as_str().cmp(id))
    }

    /// Add and update put the entry, withdraw deletes it (the protocol checked the version
    /// against the department's entries before it asked for the append).
    fn apply(&mut self, change: &CatalogChange) {
        match (self.position(change.entry_id()), change) {
            (Ok(at), CatalogChange::Add(e) | CatalogChange::Update(e)) => {
                self.entries[at] = Arc::clone(e);
            }
            (Err(at), CatalogChange::Add(e) | CatalogChange::Update(e)) => {
                self.entries.insert(at, Arc::clone(e));
            }
            (Ok(at), CatalogChange::Withdraw { .. }) => {
                self.entries.remove(at);
            }
            (Err(_), CatalogChange::Withdraw { .. }) => {}
        }
    }
}

/// A node's catalog storage: the log (entries 1.. in order) and every department's catalog.
#[derive(Clone, Debug, Default)]
pub struct CatalogStore {
    log: Vec<Arc<SignedCatalogUpdate>>,
    departments: BTreeMap<CatalogOrigin, StoredCatalog>,
}

impl CatalogStore {
    /// `CatalogStorageOp::AppendLog`: appends log entry `index`, applies its changes to the
    /// department's entries and stores the department's `record`, as one write.
    pub fn append(&mut self, index: u64, update: Arc<SignedCatalogUpdate>, record: OriginRecord) {
        debug_assert_eq!(
            index,
            self.log.len() as u64 + 1,
            "log appends are contiguous"
        );
        debug_assert_eq!(record.seq, update.update.seq, "the record is the version's");
        let origin = &update.update.origin;
        let stored = match self.departments.get_mut(origin) {
            Some(stored) => stored,
            None => self.departments.entry(origin.clone()).or_default(),
        };
        for change in &update.update.changes {
            stored.apply(change);
        }
        stored.record = record;
        self.log.push(update);
    }

    /// `CatalogStorageOp::ReadLog`: log entries `from, from + 1, …`, at most `count_max`.
    pub fn read_log(&self, from: u64, count_max: usize) -> Vec<Arc<SignedCatalogUpdate>> {
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        self.log
            .iter()
            .skip(start)
            .take(count_max)
            .cloned()
            .collect()
    }

    /// The log, entries 1.. in order.
    pub fn log(&self) -> &[Arc<SignedCatalogUpdate>] {
        &self.log
    }

    pub fn log_len(&self) -> u64 {
        self.log.len() as u64
    }

    /// Every department's catalog, in origin order.
    pub fn departments(&self) -> impl Iterator<Item = (&CatalogOrigin, &StoredCatalog)> {
        self.departments.iter()
    }

    pub fn departments_len(&self) -> usize {
        self.departments.len()
    }

    pub fn department(&self, origin: &CatalogOrigin) -> Option<&StoredCatalog> {
        self.departments.get(origin)
    }

    /// Entries stored over every department.
    pub fn entries_len(&self) -> u64 {
        self.departments
            .values()
            .map(|d| d.entries.len() as u64)
            .sum()
    }

    /// What a restart hands the protocol back, as the node reads it from RocksDB: the log's
    /// length, every department's record, `local`'s own departments' entries whole and only
    /// the ids of every other department's.
    pub fn saved(&self, local: RegionCode) -> SavedCatalog {
        SavedCatalog {
            log_len: self.log_len(),
            origins: self
                .departments
                .iter()
                .map(|(origin, stored)| SavedOrigin {
                    origin: origin.clone(),
                    record: stored.record,
                    entries: if origin.region == local {
                        SavedEntries::Local(stored.entries.clone())
                    } else {
                        SavedEntries::Ids(stored.entries.iter().map(|e| e.id.clone()).collect())
                    },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backflow_protocol::catalog::{
        CatalogUpdate, DataFormat, DataGrade, SharingAttribute, UpdateFrequency,
    };
    use backflow_protocol::time::UnixMs;

    fn entry(id: &str, name: &str) -> Arc<CatalogEntry> {
        Arc::new(CatalogEntry {
            id: id.to_string(),
            name: name.to_string(),
            data_items: Vec::new(),
            provider: "民政局".to_string(),
            format: DataFormat::Table,
            update_frequency: UpdateFrequency::Monthly,
            sharing: SharingAttribute::Unconditional,
            sharing_methods: Vec::new(),
            usage_conditions: String::new(),
            classification: String::new(),
            grade: DataGrade::General,
        })
    }

    /// A version as the log holds it (the store checks no signature).
    fn version(region: &str, seq: u64, changes: Vec<CatalogChange>) -> Arc<SignedCatalogUpdate> {
        Arc::new(SignedCatalogUpdate {
            update: CatalogUpdate {
                origin: CatalogOrigin {
                    region: RegionCode::parse(region).unwrap(),
                    department: "民政局".to_string(),
                },
                seq,
                issued_at: UnixMs(0),
                changes,
            },
            signer: Vec::new(),
            signature: ed25519_dalek::Signature::from_bytes(&[0; 64]),
        })
    }

    fn record(seq: u64) -> OriginRecord {
        OriginRecord {
            seq,
            versions: seq,
            bytes: 100 * seq,
        }
    }

    /// Appends apply each version's changes to its department's entries (kept in id order)
    /// and store its record; the log reads back from any index; a restart gets the local
    /// departments' entries whole and only the others' ids.
    #[test]
    fn appends_keep_the_log_entries_and_records_agreeing() {
        let mut s = CatalogStore::default();
        let own = "11";
        s.append(
            1,
            version(
                own,
                1,
                vec![
                    CatalogChange::Add(entry("b", "B")),
                    CatalogChange::Add(entry("a", "A")),
                ],
            ),
            record(1),
        );
        s.append(
            2,
            version("1101", 1, vec![CatalogChange::Add(entry("c", "C"))]),
            record(1),
        );
        s.append(
            3,
            version(
                own,
                2,
                vec![
                    CatalogChange::Update(entry("a", "A2")),
                    CatalogChange::Withdraw {
                        id: "b".to_string(),
                        reason: "merged".to_string(),
                    },
                    CatalogChange::Add(entry("d", "D")),
                ],
            ),
            record(2),
        );
        assert_eq!(
            (s.log_len(), s.departments_len(), s.entries_len()),
            (3, 2, 3)
        );
        let (origin, stored) = s.departments().next().unwrap();
        assert_eq!(origin.region, RegionCode::parse(own).unwrap());
        assert_eq!(stored.record, record(2));
        let ids: Vec<&str> = stored.entries().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(stored.entry("a").unwrap().name, "A2");
        assert!(stored.entry("b").is_none());

        let read: Vec<u64> = s.read_log(2, 5).iter().map(|u| u.update.seq).collect();
        assert_eq!(read, [1, 2]);
        assert_eq!(s.read_log(1, 1).len(), 1);
        assert!(s.read_log(4, 5).is_empty());

        let saved = s.saved(RegionCode::parse(own).unwrap());
        assert_eq!(saved.log_len, 3);
        assert_eq!(saved.origins.len(), 2);
        assert!(matches!(&saved.origins[0].entries, SavedEntries::Local(e) if e.len() == 2));
        assert_eq!(
            saved.origins[1].entries,
            SavedEntries::Ids(vec!["c".to_string()])
        );
        assert_eq!(saved.origins[1].record, record(1));
    }
}
