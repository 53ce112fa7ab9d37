//! The unified catalog (Art. 16, 统一向政府部门通告) as this node stores it in RocksDB: the
//! catalog log, every department's current entries and its record — the source of truth
//! that listings, lookups and the search index read, so that the protocol's catalog sync
//! holds only ids in memory (`backflow_protocol::catalog_sync::origins`) whatever the
//! country's size (≥ 3 M entries at national).
//!
//! Keys in the `catalog` column family:
//!
//! | key | value |
//! |---|---|
//! | `log/` index (u64 BE) | a `SignedCatalogUpdate` (the log, 1-based) |
//! | `wm/` region key | a sender's (region, log id, watermark) — see `persist` |
//! | `origin/` region `\0` department | the department's `OriginRecord` |
//! | `entry/` region `\0` department length (u16 BE) department id | a `CatalogEntry` |
//! | `id/` id length (u16 BE) id region `\0` department | nothing: who holds an entry of this id |
//! | `catalog/layout` | [`LAYOUT`]: entries and records derived from the log |
//!
//! Regions are written in their decimal form: a child's code extends its parent's (the
//! fixed lengths 2, 4, 6, 9, 12 per level), so a region's whole subtree is one key prefix.
//! A log entry, its changes to the entries and the record go in one atomic batch
//! ([`append`]), so a restart finds them agreeing.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, DepartmentCatalog, SignedCatalogUpdate,
};
use backflow_protocol::catalog_sync::{
    OriginRecord, SavedCatalog, SavedEntries, SavedOrigin, LOG_ENTRIES_MAX,
};
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_topology::RegionCode;
use tracing::info;

use crate::store::{Batch, Store, CF_CATALOG};

const LOG_PREFIX: &[u8] = b"log/";
const ORIGIN_PREFIX: &[u8] = b"origin/";
const ENTRY_PREFIX: &[u8] = b"entry/";
/// Ids are unique within a department only: this index finds every department's entry of one
/// id without reading the whole catalog (`GET /api/catalog/{id}`).
const ID_PREFIX: &[u8] = b"id/";
const LAYOUT_KEY: &[u8] = b"catalog/layout";
/// Layout 2: entries and records stored beside the log (layout 1 kept only the log, replayed
/// in memory at every start).
const LAYOUT: &[u8] = b"2";
/// Departments read back at start (a corrupted or hostile database cannot make the node read
/// without end): ~45 k jurisdictions × dozens of departments, with room.
pub const ORIGINS_MAX: usize = 4_000_000;
/// Entries read back at start: ≥ 3 M at national (issue 17's plan), with room.
pub const ENTRIES_MAX: usize = 64_000_000;
/// Departments in one listing page.
pub const LIST_DEPARTMENTS_MAX: usize = 10_000;

fn log_key(index: u64) -> Vec<u8> {
    let mut key = LOG_PREFIX.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn region_prefix(prefix: &[u8], region: RegionCode) -> Vec<u8> {
    let mut key = prefix.to_vec();
    if region != RegionCode::NATIONAL {
        key.extend_from_slice(region.to_string().as_bytes());
    }
    key
}

fn origin_key(origin: &CatalogOrigin) -> Vec<u8> {
    let mut key = ORIGIN_PREFIX.to_vec();
    key.extend_from_slice(origin.region.to_string().as_bytes());
    key.push(0);
    key.extend_from_slice(origin.department.as_bytes());
    key
}

fn entries_prefix(origin: &CatalogOrigin) -> Vec<u8> {
    let mut key = ENTRY_PREFIX.to_vec();
    key.extend_from_slice(origin.region.to_string().as_bytes());
    key.push(0);
    // Department names are bounded by the protocol (NAME_BYTES_MAX ≪ 65,535).
    let len = u16::try_from(origin.department.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(origin.department.as_bytes());
    key
}

fn id_prefix(id: &str) -> Vec<u8> {
    let mut key = ID_PREFIX.to_vec();
    // Entry ids are bounded by the protocol (NAME_BYTES_MAX ≪ 65,535).
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

fn id_key(origin: &CatalogOrigin, id: &str) -> Vec<u8> {
    let mut key = id_prefix(id);
    key.extend_from_slice(origin.region.to_string().as_bytes());
    key.push(0);
    key.extend_from_slice(origin.department.as_bytes());
    key
}

fn entry_key(origin: &CatalogOrigin, id: &str) -> Vec<u8> {
    let mut key = entries_prefix(origin);
    key.extend_from_slice(id.as_bytes());
    key
}

/// (origin, id) from an entry key.
fn parse_entry_key(key: &[u8]) -> Result<(CatalogOrigin, String)> {
    let rest = key
        .strip_prefix(ENTRY_PREFIX)
        .ok_or_else(|| anyhow!("not an entry key"))?;
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| anyhow!("entry key without a region"))?;
    let region = region_of(&rest[..nul])?;
    let rest = &rest[nul + 1..];
    if rest.len() < 2 {
        bail!("entry key without a department");
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < len {
        bail!("entry key shorter than its department");
    }
    let department = String::from_utf8(rest[..len].to_vec())?;
    let id = String::from_utf8(rest[len..].to_vec())?;
    Ok((CatalogOrigin { region, department }, id))
}

fn parse_origin_key(key: &[u8]) -> Result<CatalogOrigin> {
    let rest = key
        .strip_prefix(ORIGIN_PREFIX)
        .ok_or_else(|| anyhow!("not an origin key"))?;
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| anyhow!("origin key without a region"))?;
    Ok(CatalogOrigin {
        region: region_of(&rest[..nul])?,
        department: String::from_utf8(rest[nul + 1..].to_vec())?,
    })
}

fn region_of(text: &[u8]) -> Result<RegionCode> {
    let text = std::str::from_utf8(text)?;
    RegionCode::parse(text).map_err(|e| anyhow!("stored region {text:?}: {e}"))
}

/// Puts log entry `index` into `batch` with its changes to the stored entries and the
/// department's `record` ([`backflow_protocol::catalog_sync::CatalogStorageOp::AppendLog`]).
pub fn append(
    batch: &mut Batch<'_>,
    index: u64,
    update: &SignedCatalogUpdate,
    record: &OriginRecord,
) -> Result<()> {
    let value = encode_value(update).map_err(|e| anyhow!("{e}"))?;
    batch.put(CF_CATALOG, &log_key(index), &value);
    put_changes(batch, update, record)
}

fn put_changes(
    batch: &mut Batch<'_>,
    update: &SignedCatalogUpdate,
    record: &OriginRecord,
) -> Result<()> {
    let origin = &update.update.origin;
    for change in &update.update.changes {
        match change {
            CatalogChange::Add(e) | CatalogChange::Update(e) => {
                let value = encode_value(&**e).map_err(|e| anyhow!("{e}"))?;
                batch.put(CF_CATALOG, &entry_key(origin, &e.id), &value);
                batch.put(CF_CATALOG, &id_key(origin, &e.id), &[]);
            }
            CatalogChange::Withdraw { id, .. } => {
                batch.delete(CF_CATALOG, &entry_key(origin, id));
                batch.delete(CF_CATALOG, &id_key(origin, id));
            }
        }
    }
    let value = encode_value(record).map_err(|e| anyhow!("{e}"))?;
    batch.put(CF_CATALOG, &origin_key(origin), &value);
    Ok(())
}

/// Log entries `from, …`, at most `count_max` ([`CatalogStorageOp::ReadLog`]).
///
/// [`CatalogStorageOp::ReadLog`]: backflow_protocol::catalog_sync::CatalogStorageOp::ReadLog
pub fn read_log(
    store: &Store,
    from: u64,
    count_max: usize,
) -> Result<Vec<Arc<SignedCatalogUpdate>>> {
    let mut out = Vec::new();
    store.for_each_from(CF_CATALOG, &log_key(from), |key, value| {
        if !key.starts_with(LOG_PREFIX) || out.len() >= count_max {
            return Ok(false);
        }
        let update: SignedCatalogUpdate =
            decode_exact(value).map_err(|e| anyhow!("corrupt catalog log entry: {e}"))?;
        out.push(Arc::new(update));
        Ok(true)
    })?;
    Ok(out)
}

/// The log's length: its last index (the log is contiguous from 1).
pub fn log_len(store: &Store) -> Result<u64> {
    let Some(key) = store.last_key_with_prefix(CF_CATALOG, LOG_PREFIX)? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = key[LOG_PREFIX.len()..]
        .try_into()
        .map_err(|_| anyhow!("malformed catalog log key"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// What the catalog sync needs back at start: the log's length, every department's record,
/// this node's (`local`) departments' entries whole and the others' ids. Keys only are read
/// for the others (no entry is decoded): at national ~3 M keys, a few seconds.
pub fn load(store: &Store, local: RegionCode) -> Result<SavedCatalog> {
    migrate(store)?;
    let log_len = log_len(store)?;
    if log_len > LOG_ENTRIES_MAX {
        bail!("catalog log of {log_len} entries, more than {LOG_ENTRIES_MAX}");
    }
    let mut origins: Vec<SavedOrigin> = Vec::new();
    store.for_each_from(CF_CATALOG, ORIGIN_PREFIX, |key, value| {
        if !key.starts_with(ORIGIN_PREFIX) {
            return Ok(false);
        }
        if origins.len() >= ORIGINS_MAX {
            bail!("more than {ORIGINS_MAX} departments stored in the catalog");
        }
        let origin = parse_origin_key(key)?;
        let record: OriginRecord = decode_exact(value)
            .map_err(|e| anyhow!("corrupt catalog record of {}: {e}", origin.department))?;
        let entries = if origin.region == local {
            SavedEntries::Local(Vec::new())
        } else {
            SavedEntries::Ids(Vec::new())
        };
        origins.push(SavedOrigin {
            origin,
            record,
            entries,
        });
        Ok(true)
    })?;
    // Both scans go in key order, origins before their entries' keys: merge them.
    origins.sort_by_cached_key(|a| entries_prefix(&a.origin));
    let mut at = 0;
    let mut count = 0usize;
    store.for_each_from(CF_CATALOG, ENTRY_PREFIX, |key, value| {
        if !key.starts_with(ENTRY_PREFIX) {
            return Ok(false);
        }
        count += 1;
        if count > ENTRIES_MAX {
            bail!("more than {ENTRIES_MAX} catalog entries stored");
        }
        let (origin, id) = parse_entry_key(key)?;
        while at < origins.len() && origins[at].origin != origin {
            at += 1;
        }
        let Some(saved) = origins.get_mut(at) else {
            bail!(
                "stored catalog entry {id:?} of {} without its department's record",
                origin.department
            );
        };
        match &mut saved.entries {
            SavedEntries::Local(entries) => {
                let entry: CatalogEntry = decode_exact(value)
                    .map_err(|e| anyhow!("corrupt catalog entry {id:?}: {e}"))?;
                entries.push(Arc::new(entry));
            }
            SavedEntries::Ids(ids) => ids.push(id),
        }
        Ok(true)
    })?;
    Ok(SavedCatalog { log_len, origins })
}

/// A database written before layout 2 keeps only the log: derive the entries and records
/// from it once (replaying every version in order, as earlier starts did in memory).
fn migrate(store: &Store) -> Result<()> {
    if store.get(CF_CATALOG, LAYOUT_KEY)?.as_deref() == Some(LAYOUT) {
        return Ok(());
    }
    let len = log_len(store)?;
    if len > 0 {
        info!(
            versions = len,
            "deriving the stored catalog's entries from its log (once)"
        );
    }
    let mut catalogs: std::collections::BTreeMap<CatalogOrigin, (OriginRecord, DepartmentCatalog)> =
        Default::default();
    let mut from = 1;
    while from <= len {
        let updates = read_log(store, from, 1024)?;
        if updates.is_empty() {
            bail!("catalog log entry {from} is missing");
        }
        let mut batch = store.batch();
        for update in &updates {
            let origin = update.update.origin.clone();
            let (record, catalog) = catalogs
                .entry(origin.clone())
                .or_insert_with(|| (OriginRecord::default(), DepartmentCatalog::new(origin)));
            catalog
                .apply(&update.update)
                .map_err(|e| anyhow!("stored catalog log does not replay at {from}: {e}"))?;
            record.seq = catalog.seq;
            record.versions += 1;
            record.bytes += backflow_protocol::codec::encoded_len(&**update) as u64;
            put_changes(&mut batch, update, record)?;
        }
        // Records only: the entries written above are the catalogs' current state anyway.
        store.write(batch)?;
        from += updates.len() as u64;
    }
    store.put(CF_CATALOG, LAYOUT_KEY, LAYOUT)?;
    store.sync_wal()?;
    Ok(())
}

/// Marks a new database as layout 2 (nothing to migrate).
pub fn init_layout(store: &Store) -> Result<()> {
    migrate(store)
}

/// One department's catalog as listed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CatalogView {
    pub region: String,
    pub department: String,
    pub seq: u64,
    pub entries: Vec<Arc<CatalogEntry>>,
}

/// Departments' catalogs in key order, within `region`'s subtree (all for national), after
/// the department `after` (a previous page's last), at most `limit` departments.
pub fn list(
    store: &Store,
    region: RegionCode,
    after: Option<&CatalogOrigin>,
    limit: usize,
) -> Result<Vec<CatalogView>> {
    let limit = limit.min(LIST_DEPARTMENTS_MAX);
    let prefix = region_prefix(ORIGIN_PREFIX, region);
    let start = match after {
        Some(o) => {
            let mut k = origin_key(o);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let mut origins = Vec::new();
    store.for_each_from(CF_CATALOG, &start, |key, value| {
        if !key.starts_with(&prefix) || origins.len() >= limit {
            return Ok(false);
        }
        let origin = parse_origin_key(key)?;
        let record: OriginRecord = decode_exact(value).map_err(|e| anyhow!("{e}"))?;
        origins.push((origin, record));
        Ok(true)
    })?;
    origins
        .into_iter()
        .map(|(origin, record)| {
            Ok(CatalogView {
                region: origin.region.to_string(),
                department: origin.department.clone(),
                seq: record.seq,
                entries: entries_of(store, &origin)?,
            })
        })
        .collect()
}

/// A department's current entries.
pub fn entries_of(store: &Store, origin: &CatalogOrigin) -> Result<Vec<Arc<CatalogEntry>>> {
    let prefix = entries_prefix(origin);
    let mut out = Vec::new();
    store.for_each_from(CF_CATALOG, &prefix, |key, value| {
        if !key.starts_with(&prefix) {
            return Ok(false);
        }
        let entry: CatalogEntry =
            decode_exact(value).map_err(|e| anyhow!("corrupt catalog entry: {e}"))?;
        out.push(Arc::new(entry));
        Ok(true)
    })?;
    Ok(out)
}

/// One entry of a department's current catalog.
pub fn entry(store: &Store, origin: &CatalogOrigin, id: &str) -> Result<Option<CatalogEntry>> {
    match store.get(CF_CATALOG, &entry_key(origin, id))? {
        None => Ok(None),
        Some(value) => {
            Ok(Some(decode_exact(&value).map_err(|e| {
                anyhow!("corrupt catalog entry {id:?}: {e}")
            })?))
        }
    }
}

/// Every entry with this id (ids are unique per department only), at most `max`: one prefix
/// of the id index, then each entry by its key.
pub fn entries_with_id(
    store: &Store,
    id: &str,
    max: usize,
) -> Result<Vec<(CatalogOrigin, CatalogEntry)>> {
    let prefix = id_prefix(id);
    let mut origins = Vec::new();
    store.for_each_from(CF_CATALOG, &prefix, |key, _| {
        if !key.starts_with(&prefix) || origins.len() >= max {
            return Ok(false);
        }
        // The rest is the origin key's own form: region, NUL, department.
        let mut origin_key = ORIGIN_PREFIX.to_vec();
        origin_key.extend_from_slice(&key[prefix.len()..]);
        origins.push(parse_origin_key(&origin_key)?);
        Ok(true)
    })?;
    let mut out = Vec::with_capacity(origins.len());
    for origin in origins {
        // An index entry without its entry would be a torn write, which the batch rules out;
        // skip rather than fail a lookup on it.
        if let Some(e) = entry(store, &origin, id)? {
            out.push((origin, e));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backflow_protocol::catalog::CatalogUpdate;
    use backflow_protocol::time::UnixMs;

    fn catalog_entry(id: &str, name: &str) -> Arc<CatalogEntry> {
        let mut e = crate::demo::demo_catalog_entry(RegionCode::parse("4419").unwrap(), name);
        e.id = id.into();
        Arc::new(e)
    }

    fn version(
        origin: &CatalogOrigin,
        seq: u64,
        changes: Vec<CatalogChange>,
    ) -> SignedCatalogUpdate {
        SignedCatalogUpdate {
            update: CatalogUpdate {
                origin: origin.clone(),
                seq,
                issued_at: UnixMs(0),
                changes,
            },
            // The store neither verifies nor needs a signature (verified before it was stored).
            signer: Vec::new(),
            signature: ed25519_dalek::Signature::from_bytes(&[0; 64]),
        }
    }

    /// A database of layout 1 (the log alone, replayed in memory at every start) gets its
    /// entries and records from the log once, and reads back like one written by `append`.
    #[test]
    fn a_database_of_the_old_layout_is_migrated_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let city = RegionCode::parse("4419").unwrap();
        let origin = CatalogOrigin {
            region: city,
            department: "市人社局".into(),
        };
        let log = [
            version(
                &origin,
                1,
                vec![
                    CatalogChange::Add(catalog_entry("a", "东莞")),
                    CatalogChange::Add(catalog_entry("b", "东莞")),
                ],
            ),
            version(
                &origin,
                2,
                vec![
                    CatalogChange::Withdraw {
                        id: "a".into(),
                        reason: "merged".into(),
                    },
                    CatalogChange::Update(catalog_entry("b", "东莞市")),
                ],
            ),
        ];
        for (i, update) in log.iter().enumerate() {
            let value = encode_value(update).unwrap();
            store
                .put(CF_CATALOG, &log_key(i as u64 + 1), &value)
                .unwrap();
        }
        let saved = load(&store, RegionCode::NATIONAL).unwrap();
        assert_eq!(saved.log_len, 2);
        assert_eq!(saved.origins.len(), 1);
        let o = &saved.origins[0];
        assert_eq!((o.record.seq, o.record.versions), (2, 2));
        assert_eq!(o.entries, SavedEntries::Ids(vec!["b".into()]));
        // Migrated once: the layout is recorded; the node of the city gets its entries whole.
        assert_eq!(
            store.get(CF_CATALOG, LAYOUT_KEY).unwrap().as_deref(),
            Some(LAYOUT)
        );
        let own = load(&store, city).unwrap();
        let SavedEntries::Local(entries) = &own.origins[0].entries else {
            panic!("{own:?}")
        };
        assert_eq!(entries.len(), 1);
        assert!(entries[0].name.starts_with("东莞市"));
        let listed = list(&store, RegionCode::NATIONAL, None, 10).unwrap();
        assert_eq!(
            (listed.len(), listed[0].seq, listed[0].entries.len()),
            (1, 2, 1)
        );
        assert_eq!(entry_of(&store, &origin, "a"), None);
        // The id index follows adds and withdrawals.
        assert!(entries_with_id(&store, "a", 10).unwrap().is_empty());
        let b = entries_with_id(&store, "b", 10).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0, origin);
        assert!(entries_with_id(&store, "", 10).unwrap().is_empty());
        assert_eq!(read_log(&store, 2, 10).unwrap().len(), 1);
    }

    fn entry_of(store: &Store, origin: &CatalogOrigin, id: &str) -> Option<String> {
        entry(store, origin, id).unwrap().map(|e| e.name)
    }

    #[test]
    fn entry_keys_round_trip_and_a_region_s_subtree_is_one_prefix() {
        let origin = CatalogOrigin {
            region: RegionCode::parse("441900003").unwrap(),
            department: "民政办\u{0}x".into(),
        };
        let key = entry_key(&origin, "id/1");
        assert_eq!(
            parse_entry_key(&key).unwrap(),
            (origin.clone(), "id/1".to_string())
        );
        for (region, inside) in [
            ("44", true),
            ("4419", true),
            ("441900", true),
            ("4420", false),
            ("11", false),
        ] {
            let prefix = region_prefix(ENTRY_PREFIX, RegionCode::parse(region).unwrap());
            assert_eq!(key.starts_with(&prefix), inside, "{region}");
        }
        assert!(key.starts_with(&region_prefix(ENTRY_PREFIX, RegionCode::NATIONAL)));
    }
}
