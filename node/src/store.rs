//! RocksDB storage: one column family per kind of record, atomic write batches.
//!
//! | CF          | key                                      | value                          |
//! |-------------|------------------------------------------|--------------------------------|
//! | `catalog`   | caller-defined (origin, seq)             | encoded catalog records        |
//! | `manifests` | manifest hash (32 B)                     | encoded `StoredManifest`       |
//! | `chunks`    | content hash ‖ group (40 B)              | one verified 16 KiB group      |
//! | `receipts`  | manifest hash ‖ region                   | encoded receipt                |
//! | `state`     | caller-defined                           | protocol / node state          |
//!
//! Invariants:
//! - a chunk group is written only after it verified against its partition hash (the caller
//!   verifies; [`Store::put_groups`] is the only writer of `chunks`);
//! - a group and the bookkeeping that says it is stored land in one [`rocksdb::WriteBatch`],
//!   so after a crash the node sees exactly the groups it has and resumes from there;
//! - group values are content only: reading a partition back is concatenating its groups.
//!
//! The `chunks` CF uses RocksDB's integrated blob files: 16 KiB values stay out of the LSM
//! tree, so compaction never rewrites partition data.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use backflow_protocol::manifest::{Hash, CHUNK_GROUP_BYTES};
use backflow_topology::RegionCode;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB,
};

pub const CF_CATALOG: &str = "catalog";
pub const CF_MANIFESTS: &str = "manifests";
pub const CF_CHUNKS: &str = "chunks";
pub const CF_RECEIPTS: &str = "receipts";
pub const CF_STATE: &str = "state";
const CFS: [&str; 5] = [CF_CATALOG, CF_MANIFESTS, CF_CHUNKS, CF_RECEIPTS, CF_STATE];

/// Key of one chunk group: the partition's content hash (its blake3 = bao root) and the group
/// index, big-endian so a partition's groups are contiguous and in order. Content-addressed:
/// the key does not depend on the manifest, so the publisher can store a partition before the
/// manifest exists, and an unchanged partition in the next version is not stored twice.
pub fn chunk_key(content: &Hash, group: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(content);
    key[32..].copy_from_slice(&group.to_be_bytes());
    key
}

/// Region as 8 sortable bytes (level in the low bits keeps 4419 ≠ 441900).
pub fn region_key(region: RegionCode) -> [u8; 8] {
    (region.digits() * 8 + region.level().depth() as u64).to_be_bytes()
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        std::fs::create_dir_all(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Two cores here; more background jobs only contend.
        opts.set_max_background_jobs(2);
        let cfs = CFS.iter().map(|&name| {
            let mut cf = Options::default();
            if name == CF_CHUNKS {
                cf.set_enable_blob_files(true);
                cf.set_min_blob_size(1024);
                cf.set_blob_file_size(256 * 1024 * 1024);
                // Large memtables batch many groups per flush.
                cf.set_write_buffer_size(64 * 1024 * 1024);
                cf.set_max_write_buffer_number(3);
            }
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .with_context(|| format!("opening RocksDB at {}", path.display()))?;
        Ok(Store { db: Arc::new(db) })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every CF in `CFS` is created at open; a missing one is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    pub fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put(cf, key, value);
        self.write(batch)
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            inner: WriteBatch::default(),
        }
    }

    /// Applies a batch atomically.
    pub fn write(&self, batch: Batch<'_>) -> Result<()> {
        Ok(self.db.write(batch.inner)?)
    }

    /// Applies a batch atomically without the write-ahead log: for bulk loads that are only
    /// referenced after a later [`Store::flush`] (the publisher's partitions — a crash before
    /// the manifest is written just means publishing again).
    pub fn write_unlogged(&self, batch: Batch<'_>) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        Ok(self.db.write_opt(batch.inner, &opts)?)
    }

    pub fn delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        Ok(self.db.delete_cf(self.cf(cf), key)?)
    }

    /// All `(key, value)` pairs whose key starts with `prefix`, in key order; at most `limit`.
    pub fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Stores verified groups `first_group..` of a partition (`data` is their content,
    /// concatenated) together with `extra` bookkeeping, atomically.
    pub fn put_groups(
        &self,
        content: &Hash,
        first_group: u64,
        data: &[u8],
        mut extra: Batch<'_>,
    ) -> Result<()> {
        for (i, group) in data.chunks(CHUNK_GROUP_BYTES as usize).enumerate() {
            extra.put(
                CF_CHUNKS,
                &chunk_key(content, first_group + i as u64),
                group,
            );
        }
        self.write(extra)
    }

    /// Which groups of a partition are stored (indexes, ascending). Keys only: values (the
    /// content) are not read, so this is cheap even for large partitions.
    pub fn stored_groups(&self, content: &Hash) -> Result<Vec<u64>> {
        let prefix = &chunk_key(content, 0)[..32];
        let mut out = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        iter.seek(prefix);
        while iter.valid() {
            let Some(k) = iter.key() else { break };
            if !k.starts_with(prefix) {
                break;
            }
            let mut g = [0u8; 8];
            g.copy_from_slice(&k[32..40]);
            out.push(u64::from_be_bytes(g));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    pub fn get_group(&self, content: &Hash, group: u64) -> Result<Vec<u8>> {
        self.db
            .get_cf(self.cf(CF_CHUNKS), chunk_key(content, group))?
            .with_context(|| {
                format!(
                    "group {group} of partition {} is not stored",
                    crate::config::hex(&content[..8])
                )
            })
    }

    /// Reads `buf.len()` bytes of a partition's content at `offset` (groups must be stored).
    pub fn read_at(&self, content: &Hash, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let group = pos / CHUNK_GROUP_BYTES;
            let within = (pos % CHUNK_GROUP_BYTES) as usize;
            let Some(data) = self
                .db
                .get_pinned_cf(self.cf(CF_CHUNKS), chunk_key(content, group))?
            else {
                break;
            };
            if within >= data.len() {
                break;
            }
            let n = (data.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&data[within..within + n]);
            done += n;
        }
        Ok(done)
    }

    /// Streams a whole partition's content, group by group, in order.
    pub fn for_each_group(
        &self,
        content: &Hash,
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let prefix = &chunk_key(content, 0)[..32];
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_CHUNKS));
        iter.seek(prefix);
        while iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            if !k.starts_with(prefix) {
                break;
            }
            let mut g = [0u8; 8];
            g.copy_from_slice(&k[32..40]);
            f(u64::from_be_bytes(g), v)?;
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// Flushes memtables (used before a clean exit so a restart replays no WAL).
    pub fn flush(&self) -> Result<()> {
        for cf in CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}

/// An atomic batch across column families.
pub struct Batch<'s> {
    store: &'s Store,
    inner: WriteBatch,
}

impl Batch<'_> {
    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) {
        self.inner.put_cf(self.store.cf(cf), key, value);
    }

    pub fn delete(&mut self, cf: &str, key: &[u8]) {
        self.inner.delete_cf(self.store.cf(cf), key);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_survive_reopen_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let m = [7u8; 32];
        let content: Vec<u8> = (0..(CHUNK_GROUP_BYTES * 3 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let g = CHUNK_GROUP_BYTES as usize;
        {
            let store = Store::open(dir.path()).unwrap();
            let mut extra = store.batch();
            extra.put(CF_STATE, b"progress", b"groups 0,2");
            store.put_groups(&m, 0, &content[..g], extra).unwrap();
            store
                .put_groups(&m, 2, &content[2 * g..3 * g], store.batch())
                .unwrap();
            // Dropped without flush: the WAL must bring everything back.
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stored_groups(&m).unwrap(), vec![0, 2]);
        assert_eq!(
            store.get(CF_STATE, b"progress").unwrap().unwrap(),
            b"groups 0,2"
        );
        store
            .put_groups(&m, 1, &content[g..2 * g], store.batch())
            .unwrap();
        store
            .put_groups(&m, 3, &content[3 * g..], store.batch())
            .unwrap();
        let mut back = vec![0u8; content.len()];
        assert_eq!(store.read_at(&m, 0, &mut back).unwrap(), content.len());
        assert_eq!(back, content);
        let mut mid = vec![0u8; 20_000];
        store.read_at(&m, 10_000, &mut mid).unwrap();
        assert_eq!(mid, content[10_000..30_000]);
        // Another partition's groups are separate.
        assert!(store.stored_groups(&[8u8; 32]).unwrap().is_empty());
    }
}
