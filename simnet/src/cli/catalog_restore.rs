//! `simnet catalog-restore`: national's catalog, as `simnet catalog` leaves it in storage,
//! restored in a fresh process fed through a pipe, with the time and memory it takes.

use std::time::Instant;

use backflow_protocol::catalog::{CatalogEntry, CatalogOrigin};
use backflow_protocol::catalog_sync::{
    CatalogSync, CatalogSyncConfig, OriginRecord, SavedCatalog, SavedEntries, SavedOrigin,
};
use backflow_protocol::codec::{decode_exact, encode_value};
use backflow_protocol::time::UnixMs;
use backflow_simnet::catalog_store::CatalogStore;
use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use super::process::{mappings, mib, rss_kib};

/// One department as `simnet catalog` hands it to `simnet catalog-restore`: what the node
/// reads of it from storage at start (node/src/catalog_store.rs, `load`).
#[derive(Serialize, Deserialize)]
struct StoredDepartment {
    origin: CatalogOrigin,
    record: OriginRecord,
    entries: StoredEntries,
}

#[derive(Serialize, Deserialize)]
enum StoredEntries {
    /// National's own departments: their entries, whole.
    Local(Vec<CatalogEntry>),
    /// Every other department: its entries' ids (keys only, no entry decoded).
    Ids(Vec<String>),
}

/// Restores national's `CatalogSync` in a fresh `simnet catalog-restore` process from what
/// national stores, fed through a pipe: the log's length, then every department's record and
/// entries (ids only for other regions'). Its one-line report (or why there is none).
pub fn restore_in_child(store: &CatalogStore) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = || -> Result<String, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("catalog-restore")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        {
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
            w.write_all(&store.log_len().to_le_bytes())
                .map_err(|e| e.to_string())?;
            for (origin, stored) in store.departments() {
                let entries = if origin.region == RegionCode::NATIONAL {
                    StoredEntries::Local(stored.entries().iter().map(|e| (**e).clone()).collect())
                } else {
                    StoredEntries::Ids(stored.entries().iter().map(|e| e.id.clone()).collect())
                };
                let department = StoredDepartment {
                    origin: origin.clone(),
                    record: stored.record,
                    entries,
                };
                let bytes = encode_value(&department).map_err(|e| e.to_string())?;
                w.write_all(&(bytes.len() as u32).to_le_bytes())
                    .and_then(|_| w.write_all(&bytes))
                    .map_err(|e| e.to_string())?;
            }
            w.flush().map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run().unwrap_or_else(|e| format!("failed: {e}"))
}

/// `simnet catalog-restore`: reads national's stored catalog from stdin into a
/// `SavedCatalog` as the node builds it at start (the log's length, every department's
/// record, its own departments' entries and every other department's entry ids), calls
/// `CatalogSync::restore`, and reports how long each step took and the memory of the state
/// machine restored.
///
/// The restore runs on a thread of its own, so that glibc's allocator serves it from an
/// arena of its own: the pages of that arena (memory mappings new since the restore began)
/// are the restored state machine's, apart from the input it consumes, which was allocated
/// while reading and is freed back to the main arena (a process's RSS does not shrink when
/// small allocations are freed, so the process's RSS is reported too: state and input).
pub fn catalog_restore() -> String {
    use std::io::Read;
    let base = rss_kib("VmRSS:").unwrap_or(0);
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let started = Instant::now();
    let mut log_len = [0u8; 8];
    if input.read_exact(&mut log_len).is_err() {
        return "no input".to_string();
    }
    let log_len = u64::from_le_bytes(log_len);
    let mut origins = Vec::new();
    let mut buf = Vec::new();
    let mut len = [0u8; 4];
    let (mut encoded, mut entries) = (0u64, 0u64);
    while input.read_exact(&mut len).is_ok() {
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        if input.read_exact(&mut buf).is_err() {
            return "truncated input".to_string();
        }
        encoded += buf.len() as u64;
        let d = match decode_exact::<StoredDepartment>(&buf) {
            Ok(d) => d,
            Err(e) => return format!("decode failed: {e}"),
        };
        let entries_saved = match d.entries {
            StoredEntries::Local(local) => {
                entries += local.len() as u64;
                SavedEntries::Local(local.into_iter().map(std::sync::Arc::new).collect())
            }
            StoredEntries::Ids(ids) => {
                entries += ids.len() as u64;
                SavedEntries::Ids(ids)
            }
        };
        origins.push(SavedOrigin {
            origin: d.origin,
            record: d.record,
            entries: entries_saved,
        });
    }
    drop(buf);
    let read_s = started.elapsed().as_secs_f64();
    let read = rss_kib("VmRSS:").unwrap_or(0);
    let departments = origins.len();
    let saved = SavedCatalog { log_len, origins };
    let before = mappings();
    let started = Instant::now();
    let restored = std::thread::spawn(move || {
        let config = CatalogSyncConfig::new(RegionCode::NATIONAL, 1);
        CatalogSync::restore(UnixMs(0), config, saved, &[])
    })
    .join();
    let restore_s = started.elapsed().as_secs_f64();
    let restored_rss = rss_kib("VmRSS:").unwrap_or(0);
    let state = before.zip(mappings()).map(|(before, after)| {
        after
            .iter()
            .filter(|(start, _)| !before.contains_key(start))
            .map(|(_, rss)| rss)
            .sum::<u64>()
    });
    let ok = match &restored {
        Ok(Ok(s)) => format!("{} versions, {} departments", s.log_len(), s.origins_len()),
        Ok(Err(e)) => format!("restore failed: {e}"),
        Err(_) => "restore panicked".to_string(),
    };
    format!(
        "{departments} departments, {entries} entries ({:.1} MiB encoded), log of {log_len} read in {:.1} s (RSS {} at start, +{} holding them) → {ok}; restore {:.2} s; the state machine restored: {} ({}); process RSS +{} after the restore (state and input), peak {}",
        encoded as f64 / (1024.0 * 1024.0),
        read_s,
        mib(base),
        mib(read.saturating_sub(base)),
        restore_s,
        state.map_or("unknown".to_string(), mib),
        state.map_or("unknown".to_string(), |kib| format!(
            "{:.0} B an entry",
            kib as f64 * 1024.0 / entries.max(1) as f64
        )),
        mib(restored_rss.saturating_sub(base)),
        rss_kib("VmHWM:").map_or("unknown".to_string(), mib),
    )
}
