//! Search of the unified catalog (Art. 16, 统一向政府部门通告) at this node: the full-text
//! index of `backflow-catalog-index` (tantivy with jieba word segmentation), derived from
//! the catalog log in RocksDB ([`crate::catalog_store`]) by one indexer thread.
//!
//! The index is never the source of truth: its last commit records the log index it holds
//! through, and after a restart (or a crash between two commits) the indexer replays the log
//! from there. An index that cannot be opened (corrupt, from another version) is rebuilt
//! from the log. The event loop only nudges the indexer when the log grows; the indexer reads
//! the new log entries itself, so a busy catalog sync never waits for indexing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use backflow_catalog_index::{CatalogIndex, CatalogQuery, IndexError};
use backflow_protocol::catalog_search::{
    SearchHit, SearchQuery, SearchRefusal, SearchResults, SharingFilter,
};
use backflow_topology::RegionCode;
use serde::Serialize;
use tracing::{info, warn};

use crate::store::Store;

/// Log entries the indexer reads and applies between two looks at the stop flag.
const INDEX_READ_ENTRIES: usize = 256;
/// The index is committed (made durable and visible to searches) at least this often while
/// entries arrive, and whenever the indexer has caught up with the log.
const COMMIT_INTERVAL_MS: u64 = 1_000;
/// While the index is locked by a stopped node's indexer that has not let go yet (a restart in
/// the same process), wait this long for it.
const OPEN_RETRY_MS_MAX: u64 = 5_000;

/// The index directory beside the node's database.
pub fn index_dir(db_path: &Path) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push(".catalog-index");
    PathBuf::from(p)
}

/// Shared by the API (searches) and the indexer thread (updates).
#[derive(Clone)]
pub struct CatalogSearch {
    index: Arc<RwLock<CatalogIndex>>,
    /// The log index through which searches see entries (committed).
    indexed_through: Arc<AtomicU64>,
    /// The log index through which the log is durable: the indexer never gets ahead of it,
    /// so a power cut cannot leave the index holding versions the log lost.
    durable: Arc<AtomicU64>,
    nudge: SyncSender<()>,
    /// Set by [`Self::stop`]: the indexer returns at its next turn, whoever still holds a
    /// handle (an API call in flight, a test).
    stopped: Arc<AtomicBool>,
    /// The indexer thread, joined by [`Self::stop`].
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// What a search answers: the hits, who answered (this node, or the ancestor whose subtree
/// covers the search), and — answered here — how far the index is behind the catalog log.
#[derive(Clone, Debug, Serialize)]
pub struct SearchView {
    pub total: u64,
    pub hits: Vec<HitView>,
    pub answered_by: String,
    /// Catalog log entries indexed here (answered here only): searches see every entry once
    /// it equals the log's length.
    pub indexed_through: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HitView {
    pub region: String,
    pub region_name: Option<String>,
    pub department: String,
    pub entry_id: String,
    pub name: String,
    pub score: f32,
}

impl SearchView {
    pub fn of(results: SearchResults, indexed_through: Option<u64>) -> SearchView {
        SearchView {
            total: results.total,
            hits: results
                .hits
                .into_iter()
                .map(|h| HitView {
                    region: h.region.to_string(),
                    region_name: backflow_topology::Topology::china()
                        .get(h.region)
                        .map(|r| r.name.to_string()),
                    department: h.department,
                    entry_id: h.entry_id,
                    name: h.name,
                    score: h.score,
                })
                .collect(),
            answered_by: results.answered_by.to_string(),
            indexed_through,
        }
    }
}

impl CatalogSearch {
    /// Opens (or rebuilds) the index beside `db_path` and starts the indexer thread, which
    /// catches up with the log in `store` at once.
    pub fn start(store: Store, db_path: &Path) -> Result<CatalogSearch> {
        let dir = index_dir(db_path);
        let log_len = crate::catalog_store::log_len(&store)?;
        let mut index = open_or_rebuild(&dir)?;
        if index.applied_through() > log_len {
            // The database is older than the index (restored from a backup): start over.
            drop(index);
            set_aside(&dir, "it is ahead of the catalog log")?;
            index = CatalogIndex::open(&dir).map_err(|e| anyhow!("{e}"))?;
        }
        let indexed_through = Arc::new(AtomicU64::new(index.applied_through()));
        let (nudge, nudged) = sync_channel(1);
        let search = CatalogSearch {
            index: Arc::new(RwLock::new(index)),
            indexed_through,
            durable: Arc::new(AtomicU64::new(log_len)),
            nudge,
            stopped: Arc::default(),
            thread: Arc::default(),
        };
        // The thread holds no sender: when the last handle goes, it sees the channel closed,
        // stops, and the index (its writer lock) is released with the last `Arc`.
        let indexer = Indexer {
            index: Arc::clone(&search.index),
            indexed_through: Arc::clone(&search.indexed_through),
            durable: Arc::clone(&search.durable),
            stopped: Arc::clone(&search.stopped),
        };
        let thread = std::thread::Builder::new()
            .name("catalog-indexer".into())
            .spawn(move || indexer.run(store, nudged))?;
        *search
            .thread
            .lock()
            .map_err(|_| anyhow!("indexer lock poisoned"))? = Some(thread);
        Ok(search)
    }

    /// Stops the indexer and waits until its thread — and its copy of the database — is
    /// gone. Blocks (briefly: one batch of the log at most).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.nudge();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// The catalog log is durable through `log_len`: the indexer reads it. Never blocks (a
    /// nudge pending suffices).
    pub fn log_durable(&self, log_len: u64) {
        if self.durable.fetch_max(log_len, Ordering::Relaxed) < log_len {
            self.nudge();
        }
    }

    fn nudge(&self) {
        let _ = self.nudge.try_send(());
    }

    pub fn indexed_through(&self) -> u64 {
        self.indexed_through.load(Ordering::Relaxed)
    }

    /// Searches this node's own index (blocking: call from the blocking pool) — the answer
    /// to a search whose scope this node's subtree covers, asked here or by a descendant.
    pub fn search_index(
        &self,
        query: &SearchQuery,
        answered_by: RegionCode,
    ) -> Result<SearchResults, SearchRefusal> {
        let failed = |e: &dyn std::fmt::Display| {
            let mut why = e.to_string();
            why.truncate(backflow_protocol::limits::NAME_BYTES_MAX - 4);
            SearchRefusal::Failed(why)
        };
        let q = CatalogQuery {
            text: query.text.clone(),
            provider: query.provider.clone(),
            sharing: query.sharing,
            region: query.region.filter(|r| *r != RegionCode::NATIONAL),
            offset: query.offset as usize,
            limit: query.limit as usize,
        };
        let index = self
            .index
            .read()
            .map_err(|_| failed(&"the catalog index is unavailable (indexer failed)"))?;
        let found = index.search(&q).map_err(|e| failed(&e))?;
        Ok(SearchResults {
            total: found.total,
            hits: found
                .hits
                .into_iter()
                .map(|h| SearchHit {
                    region: h.region,
                    department: h.department,
                    entry_id: h.entry_id,
                    name: h.name,
                    score: h.score,
                })
                .collect(),
            answered_by,
        })
    }
}

/// The indexer thread's side.
struct Indexer {
    index: Arc<RwLock<CatalogIndex>>,
    indexed_through: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl Indexer {
    fn run(self, store: Store, nudged: Receiver<()>) {
        if let Err(e) = self.index_loop(&store, &nudged) {
            warn!(error = %format!("{e:#}"), "the catalog indexer stopped; searches see the catalog as of its last commit");
        }
    }

    fn index_loop(&self, store: &Store, nudged: &Receiver<()>) -> Result<()> {
        let mut last_commit = Instant::now();
        let mut dirty = false;
        loop {
            // Stopped, or every handle gone: stop too, even mid catch-up.
            if self.stopped.load(Ordering::Relaxed)
                || matches!(nudged.try_recv(), Err(TryRecvError::Disconnected))
            {
                return Ok(());
            }
            let from = {
                let index = self
                    .index
                    .read()
                    .map_err(|_| anyhow!("index lock poisoned"))?;
                index.pending_through() + 1
            };
            let durable = self.durable.load(Ordering::Relaxed);
            let count = durable
                .saturating_sub(from - 1)
                .min(INDEX_READ_ENTRIES as u64) as usize;
            let updates = if count == 0 {
                Vec::new()
            } else {
                crate::catalog_store::read_log(store, from, count)?
            };
            let caught_up = from + (updates.len() as u64) > durable;
            if !updates.is_empty() {
                let mut index = self
                    .index
                    .write()
                    .map_err(|_| anyhow!("index lock poisoned"))?;
                for (k, update) in updates.iter().enumerate() {
                    index
                        .apply(from + k as u64, update)
                        .map_err(|e| anyhow!("{e}"))?;
                }
                dirty = true;
            }
            let due = last_commit.elapsed() >= Duration::from_millis(COMMIT_INTERVAL_MS);
            if dirty && (caught_up || due) {
                let mut index = self
                    .index
                    .write()
                    .map_err(|_| anyhow!("index lock poisoned"))?;
                index.commit().map_err(|e| anyhow!("{e}"))?;
                self.indexed_through
                    .store(index.applied_through(), Ordering::Relaxed);
                dirty = false;
                last_commit = Instant::now();
            }
            if caught_up {
                match nudged.recv_timeout(Duration::from_millis(COMMIT_INTERVAL_MS)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
        }
    }
}

/// Opens the index in `dir`. One held by a stopped node's indexer of this process (a restart
/// in the same process) is waited for; one that cannot be read (corrupt, another version) is
/// set aside and rebuilt from the log. One held by a live writer is never touched.
fn open_or_rebuild(dir: &Path) -> Result<CatalogIndex> {
    let deadline = Instant::now() + Duration::from_millis(OPEN_RETRY_MS_MAX);
    loop {
        match CatalogIndex::open(dir) {
            Ok(index) => return Ok(index),
            Err(IndexError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e @ IndexError::Locked { .. }) => {
                return Err(anyhow!(
                    "{e}: is another node running on this data directory?"
                ))
            }
            Err(e) => {
                set_aside(dir, &e.to_string())?;
                return CatalogIndex::open(dir).map_err(|e| anyhow!("{e}"));
            }
        }
    }
}

/// Moves an unusable index out of the way (kept once, for a look), so a new one fills from
/// the log.
fn set_aside(dir: &Path, why: &str) -> Result<()> {
    let mut aside = dir.as_os_str().to_owned();
    aside.push(".unusable");
    let aside = PathBuf::from(aside);
    warn!(dir = %dir.display(), why, aside = %aside.display(), "the catalog index is set aside and rebuilt from the catalog log");
    if aside.exists() {
        std::fs::remove_dir_all(&aside)?;
    }
    std::fs::rename(dir, &aside)?;
    info!(dir = %dir.display(), "a new catalog index; it fills from the log");
    Ok(())
}

/// A search from the API's parameters; bad input is a clear error naming the field.
pub fn query_of(
    params: &backflow_api::CatalogSearchParams,
) -> Result<SearchQuery, backflow_api::ApiError> {
    use backflow_api::ApiError;
    use backflow_protocol::limits::Bounded;
    let sharing = match params.sharing.as_deref() {
        None | Some("") => None,
        Some("unconditional") => Some(SharingFilter::Unconditional),
        Some("conditional") => Some(SharingFilter::Conditional),
        Some("not_shared") => Some(SharingFilter::NotShared),
        Some(_) => {
            return Err(ApiError::bad_request(
                "sharing is one of unconditional, conditional, not_shared",
            ))
        }
    };
    let region = params
        .region
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| {
            RegionCode::parse(r).map_err(|_| {
                ApiError::bad_request(
                    "region is not a region code (0 for national, or 2, 4, 6 or 9 digits)",
                )
            })
        })
        .transpose()?;
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let query = SearchQuery {
        text: params.q.clone().unwrap_or_default(),
        provider: params.provider.clone().filter(|p| !p.is_empty()),
        sharing,
        region: region.filter(|r| *r != RegionCode::NATIONAL),
        offset: clamp(params.offset.unwrap_or(0)),
        limit: clamp(params.limit.unwrap_or(20)),
    };
    // The protocol's own bounds (text, provider, hits, offset), each error naming its field.
    query
        .check_limits()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(query)
}
