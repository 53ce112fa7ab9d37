//! Persistence of the protocol's state in RocksDB: the key layout, applying the endpoint's
//! [`Storage`] effects durably, and reading everything back as one [`Saved`] at start.
//! Chunk data itself is stored by the data plane (`chunks`, `store`) as it verifies.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use backflow_protocol::attestation::SignedAttestation;
use backflow_protocol::catalog_review::{
    DutyChange, ReviewStorageOp, Submission, REVIEW_ITEMS_MAX,
};
use backflow_protocol::catalog_sync::CatalogStorageOp;
use backflow_protocol::cert::Revocation;
use backflow_protocol::endpoint::{Saved, SavedTransfer, Storage};
use backflow_protocol::manifest::Hash;
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{StorageOp, TransferRecord};
use backflow_protocol::service_interface::{ServiceStorageOp, ServiceUsage};
use backflow_protocol::share::{
    ReturnedCorrection, ShareCase, ShareStorageOp, SignedRightsAct, SignedShareAct,
    RIGHTS_HELD_MAX, SHARE_CASES_MAX, SHARE_TRANSIT_MAX,
};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_topology::RegionCode;
use tracing::{debug, warn};

use crate::ledger::Ledger;
use crate::store::{region_key, Store, CF_ATTESTATIONS, CF_CATALOG, CF_RECEIPTS, CF_STATE};

const TRANSFER_KEY_PREFIX: &[u8] = b"transfer/";
const CATALOG_WM_PREFIX: &[u8] = b"wm/";
const CATALOG_LOG_ID_KEY: &[u8] = b"catalog/log_id";
const REVOCATION_KEY_PREFIX: &[u8] = b"revocation/";
const SHARE_CASE_KEY_PREFIX: &[u8] = b"share/case/";
const SHARE_TRANSIT_KEY_PREFIX: &[u8] = b"share/transit/";
/// Supervisory copies at the parties' lowest common superior.
const SHARE_SUPERVISED_KEY_PREFIX: &[u8] = b"share/supervised/";
/// Departments' sharing rights: the act in force per (department, authority), keyed by the
/// hash of both (`share/rights/` hash).
const SHARE_RIGHTS_KEY_PREFIX: &[u8] = b"share/rights/";
/// A correction request against returned data, by id (`share/returned/` id).
const SHARE_RETURNED_KEY_PREFIX: &[u8] = b"share/returned/";
/// Catalog submissions under review and duty changes (Arts. 16–17), by id.
const REVIEW_SUBMISSION_KEY_PREFIX: &[u8] = b"review/submission/";
const REVIEW_DUTY_KEY_PREFIX: &[u8] = b"review/duty/";
/// A grant's service interface calls, counted (`service/usage/` request).
const SERVICE_USAGE_KEY_PREFIX: &[u8] = b"service/usage/";
/// Bounds on what is read back at start (a corrupted or hostile database cannot make the node
/// read without end): transfers held, receipts per transfer (one per descendant region at
/// most: national has 44,703) and senders' catalog watermarks (the catalog's own bounds are
/// `catalog_store`'s).
pub const TRANSFER_RECORDS_MAX: usize = 4_096;
pub const RECEIPTS_PER_TRANSFER_MAX: usize = 65_536;
pub const CATALOG_WATERMARKS_MAX: usize = 65_536;
/// As many as the trust store can hold.
pub const REVOCATIONS_MAX: usize = backflow_protocol::cert::REVOKED_KEYS_MAX;

fn receipt_key(manifest: &Hash, region: RegionCode) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(manifest);
    key[32..].copy_from_slice(&region_key(region));
    key
}

fn transfer_key(manifest: &Hash) -> Vec<u8> {
    let mut key = TRANSFER_KEY_PREFIX.to_vec();
    key.extend_from_slice(manifest);
    key
}

/// Sorted group indexes → ranges of consecutive groups.
pub fn to_ranges(groups: &[u64]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &g in groups {
        match out.last_mut() {
            Some(r) if r.end == g => r.end = g + 1,
            _ => out.push(g..g + 1),
        }
    }
    out
}

/// This node's catalog log id, created (from the clock: fresh whenever the log is new, which
/// tells the parent to restart its watermark for us) on first start.
pub fn catalog_log_id(store: &Store, now: UnixMs) -> Result<u64> {
    match store.get(CF_STATE, CATALOG_LOG_ID_KEY)? {
        Some(v) if v.len() == 8 => Ok(u64::from_be_bytes(v.try_into().expect("8 bytes"))),
        _ => {
            let id = now.0.max(1);
            store.put(CF_STATE, CATALOG_LOG_ID_KEY, &id.to_be_bytes())?;
            Ok(id)
        }
    }
}

/// Per partition of a (received) record, the group ranges stored of its content hash —
/// storage is content-addressed, so this includes what a previous version shares with it.
/// What `load` hands back as `stored`, and what the event loop reports to
/// `Endpoint::handle_content_present` right after a received record's `PutTransfer`.
pub fn present(
    store: &Store,
    record: &TransferRecord,
) -> Result<Vec<(RegionCode, Vec<Range<u64>>)>> {
    let mut stored = Vec::new();
    for e in &record.entries {
        if e.bytes == 0 {
            continue;
        }
        let groups = store.stored_groups(&e.content_hash)?;
        if !groups.is_empty() {
            stored.push((e.region, to_ranges(&groups)));
        }
    }
    Ok(stored)
}

/// Everything persisted, for [`backflow_protocol::Endpoint::new`]: transfer records with the
/// groups found on disk and their descendants' receipts, the catalog log and watermarks.
/// The endpoint re-persists each restored record (`PutTransfer`), which is how the shell's
/// mirror of them fills again. Unreadable records and receipts are skipped with a warning (the protocol fetches again what
/// they described); an unreadable catalog record is an error (`catalog_store::load`).
pub fn load(store: &Store, region: RegionCode) -> Result<Saved> {
    let mut saved = Saved::default();
    for (key, value) in store.scan_prefix(CF_STATE, TRANSFER_KEY_PREFIX, TRANSFER_RECORDS_MAX)? {
        let record: TransferRecord = match decode_exact(&value) {
            Ok(r) => r,
            Err(e) => {
                warn!(key = %String::from_utf8_lossy(&key), error = %e, "skipping unreadable transfer record");
                continue;
            }
        };
        let stored = if record.published {
            Vec::new()
        } else {
            present(store, &record)?
        };
        let hash = record.manifest.manifest.hash();
        let mut receipts = Vec::new();
        for (_, value) in store.scan_prefix(CF_RECEIPTS, &hash, RECEIPTS_PER_TRANSFER_MAX)? {
            match decode_exact::<Receipt>(&value) {
                Ok(r) => receipts.push(r),
                Err(e) => warn!(error = %e, "skipping an unreadable stored receipt"),
            }
        }
        let mut attestations = Vec::new();
        for (_, value) in store.scan_prefix(CF_ATTESTATIONS, &hash, RECEIPTS_PER_TRANSFER_MAX)? {
            match decode_exact::<SignedAttestation>(&value) {
                Ok(a) => attestations.push(Arc::new(a)),
                Err(e) => warn!(error = %e, "skipping an unreadable stored attestation"),
            }
        }
        saved.transfers.push(SavedTransfer {
            record,
            stored,
            receipts,
            attestations,
        });
    }
    saved.catalog = crate::catalog_store::load(store, region)?;
    for (k, v) in store.scan_prefix(CF_CATALOG, CATALOG_WM_PREFIX, CATALOG_WATERMARKS_MAX)? {
        let (sender, log_id, wm): (RegionCode, u64, u64) =
            decode_exact(&v).map_err(|e| anyhow!("corrupt catalog watermark {k:?}: {e}"))?;
        saved.catalog_watermarks.push((sender, log_id, wm));
    }
    // A revocation that does not read back would silently put a revoked key back in force:
    // refuse to start instead.
    for (_, v) in store.scan_prefix(CF_STATE, REVOCATION_KEY_PREFIX, REVOCATIONS_MAX)? {
        let r: Revocation =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored revocation: {e}"))?;
        saved.revocations.push(r);
    }
    // A share case that does not read back would lose a party's obligations and deadlines:
    // refuse to start instead (like revocations).
    for (_, v) in store.scan_prefix(CF_STATE, SHARE_CASE_KEY_PREFIX, SHARE_CASES_MAX)? {
        let c: ShareCase =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored share request: {e}"))?;
        saved.share_cases.push(c);
    }
    for (_, v) in store.scan_prefix(CF_STATE, SHARE_TRANSIT_KEY_PREFIX, SHARE_TRANSIT_MAX)? {
        let a: SignedShareAct =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored share act: {e}"))?;
        saved.share_transit.push(a);
    }
    for (_, v) in store.scan_prefix(CF_STATE, SHARE_SUPERVISED_KEY_PREFIX, SHARE_CASES_MAX)? {
        let c: ShareCase =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored supervised request: {e}"))?;
        saved.share_supervised.push(c);
    }
    // A suspension that does not read back would put a suspended department back in force:
    // refuse to start instead (like revocations).
    for (_, v) in store.scan_prefix(CF_STATE, SHARE_RIGHTS_KEY_PREFIX, RIGHTS_HELD_MAX)? {
        let a: SignedRightsAct =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored sharing-rights act: {e}"))?;
        saved.share_rights.push(a);
    }
    // Like share cases: a correction request that does not read back would lose a deadline.
    for (_, v) in store.scan_prefix(CF_STATE, SHARE_RETURNED_KEY_PREFIX, SHARE_CASES_MAX)? {
        let c: ReturnedCorrection = decode_exact(&v)
            .map_err(|e| anyhow!("corrupt stored correction request against returned data: {e}"))?;
        saved.share_returned.push(c);
    }
    // Like share cases: a review that does not read back would lose a deadline.
    for (_, v) in store.scan_prefix(CF_STATE, REVIEW_SUBMISSION_KEY_PREFIX, REVIEW_ITEMS_MAX)? {
        let s: Submission =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored catalog submission: {e}"))?;
        saved.review_submissions.push(s);
    }
    for (_, v) in store.scan_prefix(CF_STATE, REVIEW_DUTY_KEY_PREFIX, REVIEW_ITEMS_MAX)? {
        let d: DutyChange =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored duty change: {e}"))?;
        saved.review_duty_changes.push(d);
    }
    // One per grant this node provides; bounded like the cases they count.
    for (k, v) in store.scan_prefix(CF_STATE, SERVICE_USAGE_KEY_PREFIX, SHARE_CASES_MAX)? {
        let request: Hash = k[SERVICE_USAGE_KEY_PREFIX.len()..]
            .try_into()
            .map_err(|_| anyhow!("corrupt stored service usage key"))?;
        let u: ServiceUsage =
            decode_exact(&v).map_err(|e| anyhow!("corrupt stored service usage: {e}"))?;
        saved.service_usage.push((request, u));
    }
    (saved.ledger_witnessed, saved.ledger_acknowledged) = crate::ledger::load_witnessing(store)?;
    saved.ledger_parent_head = crate::ledger::load_parent_head(store)?;
    Ok(saved)
}

fn review_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn share_key(prefix: &[u8], id: &Hash) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id);
    key
}

/// Applies one storage effect durably, with what the compliance ledger records of it
/// (`ledger_acts`) in the same atomic write. `records` mirrors the persisted transfer records
/// (the shell needs them to serve, export and garbage-collect content).
pub fn apply(
    store: &Store,
    records: &mut HashMap<Hash, Arc<TransferRecord>>,
    ledger: &mut Ledger,
    op: Storage,
) -> Result<()> {
    let mut batch = store.batch();
    let logged = crate::ledger_acts::records_of(store, &op, &mut batch)?;
    match op {
        Storage::ReturnFlow(StorageOp::PutTransfer(record)) => {
            let hash = record.manifest.manifest.hash();
            let value = encode_value(&*record).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_STATE, &transfer_key(&hash), &value);
            records.insert(hash, record);
        }
        Storage::ReturnFlow(StorageOp::PutReceipt { manifest, receipt }) => {
            let value = encode_value(&receipt).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_RECEIPTS, &receipt_key(&manifest, receipt.region), &value);
        }
        Storage::ReturnFlow(StorageOp::PutAttestation {
            manifest,
            attestation,
        }) => {
            let value = encode_value(&*attestation).map_err(|e| anyhow!("{e}"))?;
            let key = receipt_key(&manifest, attestation.attestation.region);
            batch.put(CF_ATTESTATIONS, &key, &value);
        }
        Storage::ReturnFlow(StorageOp::DropTransfer { manifest }) => {
            let old = records.remove(&manifest);
            store.delete(CF_STATE, &transfer_key(&manifest))?;
            let mut batch = store.batch();
            for cf in [CF_RECEIPTS, CF_ATTESTATIONS] {
                for (k, _) in store.scan_prefix(cf, &manifest, RECEIPTS_PER_TRANSFER_MAX)? {
                    batch.delete(cf, &k);
                }
            }
            store.write(batch)?;
            if let Some(old) = old {
                // Content-addressed chunks: keep any partition another transfer still uses —
                // the record superseding this one is persisted already (the protocol emits
                // its `PutTransfer` first), so every partition it left unchanged stays.
                let live: HashSet<Hash> = records
                    .values()
                    .flat_map(|r| r.entries.iter().map(|e| e.content_hash))
                    .collect();
                for e in old
                    .entries
                    .iter()
                    .filter(|e| !live.contains(&e.content_hash))
                {
                    store.delete_content(&e.content_hash, e.bytes)?;
                }
                debug!(manifest = %hex::encode(&manifest[..8]), "dropped a superseded transfer");
            }
        }
        Storage::Share(ShareStorageOp::PutCase(case)) => {
            let value = encode_value(&*case).map_err(|e| anyhow!("{e}"))?;
            let key = share_key(SHARE_CASE_KEY_PREFIX, &case.request.id());
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Share(ShareStorageOp::PutTransit(act)) => {
            let value = encode_value(&*act).map_err(|e| anyhow!("{e}"))?;
            batch.put(
                CF_STATE,
                &share_key(SHARE_TRANSIT_KEY_PREFIX, &act.id()),
                &value,
            );
        }
        Storage::Share(ShareStorageOp::PutSupervised(case)) => {
            let value = encode_value(&*case).map_err(|e| anyhow!("{e}"))?;
            let key = share_key(SHARE_SUPERVISED_KEY_PREFIX, &case.request.id());
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Share(ShareStorageOp::PutRights(act)) => {
            let value = encode_value(&*act).map_err(|e| anyhow!("{e}"))?;
            let id = encode_value(&(&act.body.department, act.body.issuer))
                .map_err(|e| anyhow!("{e}"))?;
            let key = share_key(SHARE_RIGHTS_KEY_PREFIX, blake3::hash(&id).as_bytes());
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Share(ShareStorageOp::PutReturnedCorrection(c)) => {
            let value = encode_value(&*c).map_err(|e| anyhow!("{e}"))?;
            let key = share_key(SHARE_RETURNED_KEY_PREFIX, &c.request.id());
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Share(ShareStorageOp::DropTransit { act }) => {
            batch.delete(CF_STATE, &share_key(SHARE_TRANSIT_KEY_PREFIX, &act));
        }
        Storage::Review(ReviewStorageOp::PutSubmission(s)) => {
            let value = encode_value(&*s).map_err(|e| anyhow!("{e}"))?;
            batch.put(
                CF_STATE,
                &review_key(REVIEW_SUBMISSION_KEY_PREFIX, s.id),
                &value,
            );
        }
        Storage::Review(ReviewStorageOp::PutDutyChange(d)) => {
            let value = encode_value(&*d).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_STATE, &review_key(REVIEW_DUTY_KEY_PREFIX, d.id), &value);
        }
        Storage::Ledger(op) => crate::ledger::put_witnessing(&mut batch, &op)?,
        Storage::Service(ServiceStorageOp::PutUsage { request, usage }) => {
            let key = [SERVICE_USAGE_KEY_PREFIX, request.as_slice()].concat();
            let value = encode_value(&usage).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Revocation(r) => {
            let mut key = REVOCATION_KEY_PREFIX.to_vec();
            key.extend_from_slice(r.key.as_bytes());
            let value = encode_value(&r).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_STATE, &key, &value);
        }
        Storage::Catalog(CatalogStorageOp::AppendLog {
            index,
            update,
            record,
        }) => {
            crate::catalog_store::append(&mut batch, index, &update, &record)?;
        }
        // Not a write: the runtime answers it once the writes before it are applied.
        Storage::Catalog(CatalogStorageOp::ReadLog { .. }) => {}
        Storage::Catalog(CatalogStorageOp::PutWatermark {
            sender,
            log_id,
            watermark,
        }) => {
            let mut key = CATALOG_WM_PREFIX.to_vec();
            key.extend_from_slice(&region_key(sender));
            let value = encode_value(&(sender, log_id, watermark)).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_CATALOG, &key, &value);
        }
    }
    ledger.append(store, batch, logged)
}
