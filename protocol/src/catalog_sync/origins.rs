//! What a node's catalog sync holds of each department's catalog (部门目录) in its subtree:
//! enough to check and apply the next version — its sequence, its quota's use and its entries'
//! ids — and, for this node's own departments only, the entries themselves (the sharing
//! service answers requests against them, Arts. 15, 21).
//!
//! Every other department's entries are the shell's to store (from
//! [`super::CatalogStorageOp::AppendLog`]) and to index for search: at national that is the
//! whole unified catalog (Art. 16, 统一向政府部门通告), ≥ 3 M entries, which must not live
//! in the state machine's memory. What stays here is 16 bytes an entry (a hash of its id) and
//! one record a department.

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::catalog::{
    check_next, Applied, CatalogChange, CatalogEntry, CatalogError, CatalogOrigin,
    SignedCatalogUpdate,
};

/// A department's catalog as persisted with every log entry that advances it
/// ([`super::CatalogStorageOp::AppendLog`]): its sequence and its quota's use here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginRecord {
    /// The last version applied (1-based).
    pub seq: u64,
    /// Versions of this department in this node's log.
    pub versions: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// A department's catalog at a glance (status, API, simnet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginSummary {
    pub seq: u64,
    pub entries: u64,
    pub versions: u64,
    pub bytes: u64,
}

/// One department's catalog as the shell hands it back at start.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedOrigin {
    pub origin: CatalogOrigin,
    pub record: OriginRecord,
    pub entries: SavedEntries,
}

/// A department's current entries: whole for this node's own departments, ids for the rest.
#[derive(Clone, Debug, PartialEq)]
pub enum SavedEntries {
    Local(Vec<Arc<CatalogEntry>>),
    Ids(Vec<String>),
}

/// What the shell persisted of the catalog, handed back at start: the log's length (its
/// entries stay in storage and are read back only to send upstream,
/// [`super::CatalogStorageOp::ReadLog`]) and every department's record and entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SavedCatalog {
    pub log_len: u64,
    pub origins: Vec<SavedOrigin>,
}

/// An entry id as held for another node's department: the first 16 bytes of its blake3 hash.
/// Two ids of one department colliding is a 2⁻¹²⁸-per-pair event, far below a disk's error
/// rate; the full entry is the shell's (keyed by the id itself).
type EntryKey = u128;

fn entry_key(id: &str) -> EntryKey {
    let hash = blake3::hash(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    u128::from_le_bytes(bytes)
}

#[derive(Clone, Debug)]
enum Held {
    /// This node's own department: the entries.
    Local(BTreeMap<String, Arc<CatalogEntry>>),
    /// Another node's: its entries' keys, sorted.
    Ids(Vec<EntryKey>),
}

impl Held {
    fn contains(&self, id: &str) -> bool {
        match self {
            Held::Local(entries) => entries.contains_key(id),
            Held::Ids(keys) => keys.binary_search(&entry_key(id)).is_ok(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Held::Local(entries) => entries.len(),
            Held::Ids(keys) => keys.len(),
        }
    }

    fn apply(&mut self, change: &CatalogChange) {
        match (self, change) {
            (Held::Local(entries), CatalogChange::Add(e) | CatalogChange::Update(e)) => {
                entries.insert(e.id.clone(), Arc::clone(e));
            }
            (Held::Local(entries), CatalogChange::Withdraw { id, .. }) => {
                entries.remove(id);
            }
            (Held::Ids(keys), change) => {
                let key = entry_key(change.entry_id());
                match (keys.binary_search(&key), change) {
                    (Err(at), CatalogChange::Add(_) | CatalogChange::Update(_)) => {
                        keys.insert(at, key)
                    }
                    (Ok(at), CatalogChange::Withdraw { .. }) => {
                        keys.remove(at);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct OriginState {
    record: OriginRecord,
    held: Held,
}

/// Every department's catalog this node has heard of.
#[derive(Clone, Debug)]
pub(crate) struct Origins {
    local: RegionCode,
    map: BTreeMap<CatalogOrigin, OriginState>,
}

impl Origins {
    pub(crate) fn new(local: RegionCode) -> Origins {
        Origins {
            local,
            map: BTreeMap::new(),
        }
    }

    /// Rebuilds from what the shell persisted; `Err` names what does not fit (storage
    /// corruption: a department twice, this node's own department without its entries).
    pub(crate) fn restore(local: RegionCode, saved: Vec<SavedOrigin>) -> Result<Origins, String> {
        let mut origins = Origins::new(local);
        for s in saved {
            let held = match (s.origin.region == local, s.entries) {
                (true, SavedEntries::Local(entries)) => {
                    Held::Local(entries.into_iter().map(|e| (e.id.clone(), e)).collect())
                }
                (false, SavedEntries::Ids(ids)) => {
                    let mut keys: Vec<EntryKey> = ids.iter().map(|id| entry_key(id)).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    Held::Ids(keys)
                }
                (true, SavedEntries::Ids(_)) => {
                    return Err(format!(
                        "{}: own department without its entries",
                        s.origin.department
                    ));
                }
                (false, SavedEntries::Local(entries)) => {
                    let mut keys: Vec<EntryKey> =
                        entries.iter().map(|e| entry_key(&e.id)).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    Held::Ids(keys)
                }
            };
            if s.record.seq == 0 {
                return Err(format!(
                    "{} {}: sequence 0",
                    s.origin.region, s.origin.department
                ));
            }
            let state = OriginState {
                record: s.record,
                held,
            };
            if origins.map.insert(s.origin.clone(), state).is_some() {
                return Err(format!(
                    "{} {}: saved twice",
                    s.origin.region, s.origin.department
                ));
            }
        }
        Ok(origins)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn seq(&self, origin: &CatalogOrigin) -> u64 {
        self.map.get(origin).map_or(0, |s| s.record.seq)
    }

    /// (versions, bytes) of `origin` in the log: its quota's use.
    pub(crate) fn usage(&self, origin: &CatalogOrigin) -> (u64, u64) {
        self.map
            .get(origin)
            .map_or((0, 0), |s| (s.record.versions, s.record.bytes))
    }

    pub(crate) fn has_entry(&self, origin: &CatalogOrigin, id: &str) -> bool {
        self.map.get(origin).is_some_and(|s| s.held.contains(id))
    }

    /// An entry of this node's own department.
    pub(crate) fn local_entry(
        &self,
        origin: &CatalogOrigin,
        id: &str,
    ) -> Option<&Arc<CatalogEntry>> {
        match &self.map.get(origin)?.held {
            Held::Local(entries) => entries.get(id),
            Held::Ids(_) => None,
        }
    }

    pub(crate) fn summary(&self, origin: &CatalogOrigin) -> Option<OriginSummary> {
        self.map.get(origin).map(summary)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&CatalogOrigin, OriginSummary)> {
        self.map.iter().map(|(o, s)| (o, summary(s)))
    }

    /// Checks `update` as its department's next version and, if it is, applies it and counts
    /// `bytes` against the quota; returns the department's record after it.
    pub(crate) fn apply(
        &mut self,
        update: &SignedCatalogUpdate,
        bytes: u64,
    ) -> Result<(Applied, OriginRecord), CatalogError> {
        let origin = &update.update.origin;
        let (seq, applied) = match self.map.get(origin) {
            Some(s) => (
                s.record.seq,
                check_next(origin, s.record.seq, &update.update, |id| {
                    s.held.contains(id)
                })?,
            ),
            None => (0, check_next(origin, 0, &update.update, |_| false)?),
        };
        if applied == Applied::Duplicate {
            let record = self.map.get(origin).map(|s| s.record).unwrap_or_default();
            return Ok((applied, record));
        }
        debug_assert_eq!(update.update.seq, seq + 1);
        let local = origin.region == self.local;
        let state = self
            .map
            .entry(origin.clone())
            .or_insert_with(|| OriginState {
                record: OriginRecord::default(),
                held: if local {
                    Held::Local(BTreeMap::new())
                } else {
                    Held::Ids(Vec::new())
                },
            });
        for change in &update.update.changes {
            state.held.apply(change);
        }
        state.record.seq = update.update.seq;
        state.record.versions += 1;
        state.record.bytes += bytes;
        Ok((applied, state.record))
    }
}

fn summary(s: &OriginState) -> OriginSummary {
    OriginSummary {
        seq: s.record.seq,
        entries: s.held.len() as u64,
        versions: s.record.versions,
        bytes: s.record.bytes,
    }
}
