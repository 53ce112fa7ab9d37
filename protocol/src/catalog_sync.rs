//! Catalog sync (目录汇聚), child → parent, one state machine per node.
//!
//! Modelled on Syncthing's index updates. Every node keeps an append-only *log* of the catalog
//! versions it has accepted — its own departments' and those relayed from its subtree — and
//! each log entry has an index (1-based). A parent remembers, per sender, the highest index it
//! has applied (the *watermark*) together with the sender's `log_id` (a new id means the log
//! was rebuilt, so the watermark restarts at 0). Sync is therefore:
//! - incremental: the child sends only entries after the parent's watermark, in batches;
//! - idempotent: re-sent entries at or below the watermark, and catalog versions a parent
//!   already applied via another path, are no-ops;
//! - never lossy: the watermark only moves past an entry once it is applied, a duplicate, or
//!   refused for good (a foreign origin for this sender; a revoked signer; an authentic
//!   version whose signer expired beyond the grace —
//!   [`SignedCatalogUpdate::refusal_is_final`]). A relayed copy that fails verification
//!   otherwise — corrupted or forged — is reported ([`CatalogEvent::Rejected`]) and *holds*
//!   the sender's watermark below it, unacknowledged, so the sender's retransmission brings it
//!   again after `retry_ms` (a valid copy from any sender also releases it, as a duplicate).
//!   Skipping it would stall the department's later versions on a sequence gap for good;
//! - resumable: both sides persist (log entries, watermarks) through [`CatalogStorageOp`],
//!   and after a restart the child probes for the watermark and continues from there;
//! - bounded in memory, whatever the size of the unified catalog (Art. 16): the log stays in
//!   the shell's storage, and only the entries still to be sent upstream are held (a window,
//!   [`log_window`], read back with [`CatalogStorageOp::ReadLog`] when needed); of each
//!   department's catalog only its record and its entries' ids are held ([`origins`]) —
//!   except this node's own departments, whose entries the sharing service answers from. The
//!   entries are the shell's to store and index (the node: RocksDB and a search index).
//!
//! Everything a parent applies is appended to its own log, so it flows on up: each parent
//! holds its subtree's aggregated catalog and the national node the whole country's. Every
//! relayed version keeps its origin's signature and is verified at every hop; a sender may
//! only relay catalogs of regions inside its own.
//!
//! Skip-level fallback: if the upstream does not answer for `upstream_silence_ms_max`, the
//! node sends to the next ancestor (round-robin up to national), and periodically retries
//! its parent.
//!
//! Drive it like [`crate::return_flow::ReturnFlow`]: `handle_*` with `now`, `handle_tick` at
//! `poll_timeout`, then drain `poll_output`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use backflow_topology::RegionCode;

use crate::catalog::{Applied, CatalogEntry, CatalogError, CatalogOrigin, SignedCatalogUpdate};
use crate::cert::TrustStore;
use crate::codec::encoded_len;
use crate::limits::{LimitError, FRAME_BYTES_MAX, UPDATES_PER_BATCH_MAX};
use crate::time::UnixMs;
use crate::tuning::Tuning;

pub mod log_window;
pub(crate) mod messages;
pub mod origins;

pub use messages::CatalogMsg;
pub use origins::{OriginRecord, OriginSummary, SavedCatalog, SavedEntries, SavedOrigin};

use log_window::LogWindow;
use origins::Origins;

/// Bytes of catalog updates in one batch: a frame minus room for the envelope.
pub const BATCH_BYTES_MAX: usize = FRAME_BYTES_MAX - 64 * 1024;
/// Log entries a node holds. The national node holds every department's every version; 16 M
/// is orders of magnitude above the ~45 k jurisdictions × a few dozen departments × versions.
pub const LOG_ENTRIES_MAX: u64 = 16 * 1024 * 1024;
/// Senders (children, and descendants during fallback) a parent tracks.
pub const SENDERS_MAX: usize = 65_536;
/// Log entries asked of storage at once ([`CatalogStorageOp::ReadLog`]): a few batches.
pub const LOG_READ_ENTRIES_MAX: usize = 4 * UPDATES_PER_BATCH_MAX;

#[derive(Clone, Debug)]
pub struct CatalogSyncConfig {
    pub region: RegionCode,
    /// Identifies this node's log; choose a fresh value (e.g. from the creation time) whenever
    /// the log is created from scratch, and persist it with the log.
    pub log_id: u64,
    pub retry_ms: u64,
    pub upstream_silence_ms_max: u64,
    /// While on a fallback upstream, retry the parent this often.
    pub parent_retry_ms: u64,
    /// Quota per department (`Tuning::catalog_versions_per_origin_max`).
    pub versions_per_origin_max: u64,
    /// Quota per department (`Tuning::catalog_origin_bytes_max`).
    pub origin_bytes_max: u64,
}

impl CatalogSyncConfig {
    /// The one set of defaults ([`Tuning::default`]) for the knobs it shares with the return
    /// flow; the [`crate::endpoint::Endpoint`] sets them from its own `Tuning`.
    pub fn new(region: RegionCode, log_id: u64) -> CatalogSyncConfig {
        let tuning = Tuning::default();
        CatalogSyncConfig {
            region,
            log_id,
            retry_ms: tuning.retry_ms,
            upstream_silence_ms_max: tuning.source_silence_ms_max,
            parent_retry_ms: 300_000,
            versions_per_origin_max: tuning.catalog_versions_per_origin_max,
            origin_bytes_max: tuning.catalog_origin_bytes_max,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CatalogStorageOp {
    /// Append entry `index` (1-based, contiguous) to this node's log, apply its changes to the
    /// department's stored entries (add/update put, withdraw deletes) and store the
    /// department's `record` — atomically, so that a restart finds the three agreeing.
    AppendLog {
        index: u64,
        update: Arc<SignedCatalogUpdate>,
        record: OriginRecord,
    },
    /// Read log entries `from, from + 1, …` (at most `count_max`) back from storage and hand
    /// them to [`CatalogSync::handle_log_read`] (the endpoint's `handle_catalog_log`). Not a
    /// write: answer it as soon as the writes before it are applied.
    ReadLog { from: u64, count_max: usize },
    /// Persist a sender's watermark.
    PutWatermark {
        sender: RegionCode,
        log_id: u64,
        watermark: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum CatalogEvent {
    /// A catalog version was applied (locally submitted when `from` is this node).
    Applied {
        origin: CatalogOrigin,
        seq: u64,
        from: RegionCode,
    },
    /// A relayed version was refused (bad signature, wrong signer, foreign region, invalid…).
    /// Unless the refusal is final (foreign region, revoked signer, authentic but expired
    /// beyond the grace), the version holds its sender's stream until a valid copy arrives,
    /// and is reported again on each retry (about one per sender per `retry_ms`).
    Rejected {
        from: RegionCode,
        origin: Option<CatalogOrigin>,
        error: CatalogError,
    },
    UpstreamChanged {
        from: RegionCode,
        to: RegionCode,
    },
    /// Everything in the log is acknowledged upstream.
    UpstreamInSync {
        watermark: u64,
    },
    /// The shell could not hand back log entry `from` (storage lost or corrupted it); asked
    /// again every `retry_ms`. An operator must act: the upstream lacks what follows.
    LogUnreadable {
        from: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum CatalogOutput {
    Send { to: RegionCode, msg: CatalogMsg },
    Storage(CatalogStorageOp),
    Event(CatalogEvent),
}

#[derive(Clone, Copy, Debug)]
struct SenderState {
    log_id: u64,
    watermark: u64,
}

#[derive(Clone, Debug)]
struct Upstream {
    target: RegionCode,
    since: UnixMs,
    /// Parent's watermark once known.
    acked: Option<u64>,
    /// Outstanding probe or batch: retransmit at this time.
    retry_at: Option<UnixMs>,
    last_heard: UnixMs,
    in_sync_reported: bool,
}

/// The per-node catalog sync state machine.
#[derive(Debug)]
pub struct CatalogSync {
    config: CatalogSyncConfig,
    /// Entries in the log (the shell stores them).
    log_len: u64,
    /// What is held of the log to send upstream (none at national).
    window: LogWindow<SignedCatalogUpdate>,
    /// A [`CatalogStorageOp::ReadLog`] outstanding: its first index, and when to ask again.
    reading: Option<(u64, UnixMs)>,
    /// Every department's catalog heard of: record and entry ids.
    origins: Origins,
    senders: BTreeMap<RegionCode, SenderState>,
    upstream: Option<Upstream>,
    out: VecDeque<CatalogOutput>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogSyncError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("catalog of {origin} cannot be submitted at {node}")]
    NotLocal {
        origin: RegionCode,
        node: RegionCode,
    },
    #[error("catalog log is full ({max} entries)")]
    LogFull { max: u64 },
    #[error("stored catalog state is inconsistent: {0}")]
    Corrupt(String),
}

impl CatalogSync {
    pub fn new(now: UnixMs, config: CatalogSyncConfig) -> CatalogSync {
        assert!(config.retry_ms > 0, "retry_ms must be positive");
        let upstream = config.region.parent().map(|p| Upstream {
            target: p,
            since: now,
            acked: None,
            retry_at: None,
            last_heard: now,
            in_sync_reported: false,
        });
        let origins = Origins::new(config.region);
        CatalogSync {
            config,
            log_len: 0,
            window: LogWindow::new(1),
            reading: None,
            origins,
            senders: BTreeMap::new(),
            upstream,
            out: VecDeque::new(),
        }
    }

    /// Rebuilds state after a restart from what the shell persisted: the log's length and
    /// every department's record and entries (verified before they were persisted, so not
    /// again), and the senders' watermarks. Nothing of the log is read: what the upstream
    /// still lacks is read back when it asks ([`CatalogStorageOp::ReadLog`]).
    pub fn restore(
        now: UnixMs,
        config: CatalogSyncConfig,
        saved: SavedCatalog,
        watermarks: &[(RegionCode, u64, u64)],
    ) -> Result<CatalogSync, CatalogSyncError> {
        let mut s = CatalogSync::new(now, config);
        if saved.log_len > LOG_ENTRIES_MAX {
            return Err(CatalogSyncError::Corrupt(format!(
                "{} log entries, more than {LOG_ENTRIES_MAX}",
                saved.log_len
            )));
        }
        s.origins =
            Origins::restore(s.config.region, saved.origins).map_err(CatalogSyncError::Corrupt)?;
        s.log_len = saved.log_len;
        s.window = LogWindow::new(saved.log_len + 1);
        for &(sender, log_id, watermark) in watermarks {
            s.senders.insert(sender, SenderState { log_id, watermark });
        }
        Ok(s)
    }

    pub fn region(&self) -> RegionCode {
        self.config.region
    }

    pub fn poll_output(&mut self) -> Option<CatalogOutput> {
        self.out.pop_front()
    }

    /// The aggregated catalog at a glance: every department in this node's subtree it has
    /// heard of (the entries themselves are the shell's).
    pub fn origins(&self) -> impl Iterator<Item = (&CatalogOrigin, OriginSummary)> {
        self.origins.iter()
    }

    /// Departments heard of.
    pub fn origins_len(&self) -> usize {
        self.origins.len()
    }

    pub fn origin(&self, origin: &CatalogOrigin) -> Option<OriginSummary> {
        self.origins.summary(origin)
    }

    /// Whether `origin`'s current catalog has entry `id`.
    pub fn has_entry(&self, origin: &CatalogOrigin, id: &str) -> bool {
        self.origins.has_entry(origin, id)
    }

    /// An entry of one of this node's own departments (others' are the shell's to look up).
    pub fn local_entry(&self, origin: &CatalogOrigin, id: &str) -> Option<&Arc<CatalogEntry>> {
        self.origins.local_entry(origin, id)
    }

    /// The sequence the next local version of `origin` must carry.
    pub fn next_seq(&self, origin: &CatalogOrigin) -> u64 {
        self.origins.seq(origin) + 1
    }

    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Encoded bytes of log entries held in memory to send upstream (≤
    /// [`log_window::LOG_WINDOW_BYTES_MAX`]; always 0 at national).
    pub fn log_bytes_held(&self) -> usize {
        self.window.bytes()
    }

    /// Upstream's acknowledged watermark, if known.
    pub fn upstream_acked(&self) -> Option<u64> {
        self.upstream.as_ref().and_then(|u| u.acked)
    }

    /// Current upstream (parent, or a fallback ancestor).
    pub fn upstream(&self) -> Option<RegionCode> {
        self.upstream.as_ref().map(|u| u.target)
    }

    /// A local department publishes a new catalog version (signed by this node with
    /// [`SignedCatalogUpdate::sign`]). Verified like a relayed version, except that the signer's
    /// certificate must be valid at `now` ([`SignedCatalogUpdate::verify_fresh`]).
    pub fn submit(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        update: SignedCatalogUpdate,
    ) -> Result<Applied, CatalogSyncError> {
        let me = self.region();
        if update.update.origin.region != me {
            return Err(CatalogSyncError::NotLocal {
                origin: update.update.origin.region,
                node: me,
            });
        }
        // No grace for expired signers here: a local version is signed now, not in flight.
        update.verify_fresh(trust, now)?;
        self.check_quota(&update)
            .map_err(|e| CatalogSyncError::Catalog(CatalogError::Limit(e)))?;
        self.check_log_room()?;
        let update = Arc::new(update);
        let applied = self.apply_and_log(&update)?;
        if applied == Applied::Advanced {
            self.out
                .push_back(CatalogOutput::Event(CatalogEvent::Applied {
                    origin: update.update.origin.clone(),
                    seq: update.update.seq,
                    from: me,
                }));
        }
        self.pump(now);
        Ok(applied)
    }

    fn check_log_room(&self) -> Result<(), CatalogSyncError> {
        if self.log_len >= LOG_ENTRIES_MAX {
            return Err(CatalogSyncError::LogFull {
                max: LOG_ENTRIES_MAX,
            });
        }
        Ok(())
    }

    /// Applies `update` to its department's catalog and, if it advanced it, appends it to the
    /// log (persisted with the department's record, held in the window if it fits).
    fn apply_and_log(
        &mut self,
        update: &Arc<SignedCatalogUpdate>,
    ) -> Result<Applied, CatalogError> {
        debug_assert!(self.log_len < LOG_ENTRIES_MAX, "check_log_room first");
        let bytes = encoded_len(&**update);
        let (applied, record) = self.origins.apply(update, bytes as u64)?;
        if applied == Applied::Advanced {
            self.log_len += 1;
            let index = self.log_len;
            self.out
                .push_back(CatalogOutput::Storage(CatalogStorageOp::AppendLog {
                    index,
                    update: Arc::clone(update),
                    record,
                }));
            if self.upstream.is_some() {
                self.window.push(index, Arc::clone(update), bytes);
            }
        }
        Ok(applied)
    }

    /// Whether one more version of `update`'s department fits its quota here. Checked before
    /// a version is applied (a version over quota changes nothing); not at restore (what was
    /// persisted stays, whatever the limits are now).
    fn check_quota(&self, update: &SignedCatalogUpdate) -> Result<(), LimitError> {
        let (versions, bytes) = self.origins.usage(&update.update.origin);
        if versions >= self.config.versions_per_origin_max {
            return Err(LimitError {
                what: "catalog versions of one department",
                len: versions as usize + 1,
                max: self.config.versions_per_origin_max as usize,
            });
        }
        let total = bytes.saturating_add(encoded_len(update) as u64);
        if total > self.config.origin_bytes_max {
            return Err(LimitError {
                what: "catalog bytes of one department",
                len: total as usize,
                max: self.config.origin_bytes_max as usize,
            });
        }
        Ok(())
    }

    /// Handles a message from the (shell-verified) region `from`.
    pub fn handle_message(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        msg: CatalogMsg,
    ) {
        match msg {
            CatalogMsg::Probe { log_id } => {
                if !self.is_descendant(from) {
                    return;
                }
                let watermark = self
                    .senders
                    .get(&from)
                    .filter(|s| s.log_id == log_id)
                    .map_or(0, |s| s.watermark);
                self.send(from, CatalogMsg::Ack { log_id, watermark });
            }
            CatalogMsg::Updates {
                log_id,
                first,
                updates,
            } => self.on_updates(now, trust, from, log_id, first, updates),
            CatalogMsg::Ack { log_id, watermark } => {
                let log_len = self.log_len();
                let Some(up) = self.upstream.as_mut() else {
                    return;
                };
                if from != up.target || log_id != self.config.log_id {
                    return;
                }
                // The upstream's word is authoritative (it may have lost state).
                let acked = watermark.min(log_len);
                if up.retry_at.is_some() && up.acked == Some(acked) {
                    // Nothing new, and a request is outstanding: this answers an earlier
                    // request (a duplicate probe, a retransmitted batch). Sending on it would
                    // run a second stream of batches beside the first, each ack starting one;
                    // the outstanding request's own answer (or its retry) carries on.
                    up.last_heard = now;
                    return;
                }
                up.acked = Some(acked);
                up.retry_at = None;
                up.last_heard = now;
                self.window.trim_through(acked);
                self.pump(now);
            }
        }
    }

    fn is_descendant(&self, from: RegionCode) -> bool {
        from != self.region() && self.region().contains(from)
    }

    fn on_updates(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        log_id: u64,
        first: u64,
        updates: Vec<Arc<SignedCatalogUpdate>>,
    ) {
        if !self.is_descendant(from) {
            self.out
                .push_back(CatalogOutput::Event(CatalogEvent::Rejected {
                    from,
                    origin: None,
                    error: CatalogError::WrongOrigin,
                }));
            return;
        }
        if !self.senders.contains_key(&from) && self.senders.len() >= SENDERS_MAX {
            return;
        }
        let state = self.senders.entry(from).or_insert(SenderState {
            log_id,
            watermark: 0,
        });
        if state.log_id != log_id {
            // The sender rebuilt its log: start over (re-sent versions are duplicates).
            *state = SenderState {
                log_id,
                watermark: 0,
            };
        }
        let before = state.watermark;
        let mut watermark = before;
        if first == 0 || first > watermark + 1 {
            self.send(from, CatalogMsg::Ack { log_id, watermark });
            return;
        }
        // Set when an entry fails verification or does not apply: the watermark stays below
        // it so the sender resends it (see `hold` below).
        let mut held = false;
        for (k, update) in updates.into_iter().enumerate() {
            let index = first + k as u64;
            if index <= watermark {
                continue;
            }
            let origin = update.update.origin.clone();
            if !from.contains(origin.region) {
                // This sender may never relay this origin, whatever the copy: skipping it
                // loses nothing (the origin's versions reach us through its own branch).
                self.reject(from, Some(origin), CatalogError::WrongOrigin);
                watermark = index;
                continue;
            }
            // Cheap duplicate check first: a version we already hold needs no verification.
            // This is also how a held stream resumes when a valid copy arrived another way.
            if self.origins.seq(&origin) >= update.update.seq {
                watermark = index;
                continue;
            }
            if let Err(e) = update.verify(trust, now) {
                let final_refusal = update.refusal_is_final(trust, &e);
                self.reject(from, Some(origin), e);
                if final_refusal {
                    // Authentic but unacceptable here (revoked, or expired beyond the grace):
                    // no copy can do better, and holding would stall every later entry.
                    watermark = index;
                    continue;
                }
                // Possibly a corrupted or forged copy: do not move past it, or the
                // department's later versions would stall here on a sequence gap for good.
                held = true;
                break;
            }
            if let Err(limit) = self.check_quota(&update) {
                // Authentic, but over its department's quota here: final (another copy is no
                // smaller), so skip it rather than stall the sender's later entries. The
                // department's later versions then fail on the sequence gap, also for good.
                self.reject(from, Some(origin), CatalogError::Limit(limit));
                watermark = index;
                continue;
            }
            if self.check_log_room().is_err() {
                // Log full: stop here; the sender retries later (an operator must act).
                let full = LimitError {
                    what: "catalog log entries",
                    len: self.log_len as usize + 1,
                    max: LOG_ENTRIES_MAX as usize,
                };
                self.reject(from, Some(origin), CatalogError::Limit(full));
                held = true;
                break;
            }
            match self.apply_and_log(&update) {
                Ok(Applied::Advanced) => {
                    let seq = update.update.seq;
                    watermark = index;
                    self.out
                        .push_back(CatalogOutput::Event(CatalogEvent::Applied {
                            origin,
                            seq,
                            from,
                        }));
                }
                Ok(Applied::Duplicate) => watermark = index,
                Err(e) => {
                    // Verified, so exactly what the origin signed: another copy cannot apply
                    // either. (A gap only follows a version refused for good.)
                    self.reject(from, Some(origin), e);
                    watermark = index;
                }
            }
        }
        debug_assert!(watermark >= before);
        self.senders.insert(from, SenderState { log_id, watermark });
        if watermark != before || !held {
            self.out
                .push_back(CatalogOutput::Storage(CatalogStorageOp::PutWatermark {
                    sender: from,
                    log_id,
                    watermark,
                }));
        }
        if held {
            // No ack: the sender's retransmission timer paces the retry (probe, our
            // watermark, then the held entry again, from the same sender or any other
            // path), so a persistently bad copy costs one batch per `retry_ms`, not a loop.
        } else {
            self.send(from, CatalogMsg::Ack { log_id, watermark });
        }
        self.pump(now);
    }

    fn reject(&mut self, from: RegionCode, origin: Option<CatalogOrigin>, error: CatalogError) {
        self.out
            .push_back(CatalogOutput::Event(CatalogEvent::Rejected {
                from,
                origin,
                error,
            }));
    }

    /// Timer input: retransmission and skip-level fallback.
    pub fn handle_tick(&mut self, now: UnixMs) {
        let me = self.region();
        let silence = self.config.upstream_silence_ms_max;
        let parent_retry = self.config.parent_retry_ms;
        if let Some(up) = self.upstream.as_mut() {
            let waiting = up.retry_at.is_some();
            let parent = me.parent().unwrap_or(RegionCode::NATIONAL);
            let next = if waiting && now.since_ms(up.last_heard) >= silence {
                // Round-robin through the ancestors: parent, grandparent, …, national, parent.
                Some(up.target.parent().unwrap_or(parent))
            } else if up.target != parent && now.since_ms(up.since) >= parent_retry {
                Some(parent)
            } else {
                None
            };
            if let Some(to) = next {
                let from = up.target;
                *up = Upstream {
                    target: to,
                    since: now,
                    acked: None,
                    retry_at: None,
                    last_heard: now,
                    in_sync_reported: false,
                };
                if from != to {
                    self.out
                        .push_back(CatalogOutput::Event(CatalogEvent::UpstreamChanged {
                            from,
                            to,
                        }));
                }
            } else if up.retry_at.is_some_and(|t| t <= now) {
                up.retry_at = None;
                // Unknown state on the other side: ask again rather than guess.
                up.acked = None;
            }
        }
        if let Some((from, again)) = self.reading {
            if again <= now {
                // Storage did not answer: say so, and ask again (below).
                self.reading = None;
                self.out
                    .push_back(CatalogOutput::Event(CatalogEvent::LogUnreadable { from }));
            }
        }
        self.pump(now);
    }

    /// A connection to `region` was (re)admitted. If it is the upstream, its state is unknown
    /// again — it may have restarted from a lost or restored database — so it is probed
    /// rather than trusted to hold what it acknowledged before (a probe is one small message
    /// per reconnection). A request still in flight may be answered too: an acknowledgement
    /// that changes nothing while a request is outstanding starts no send (see the `Ack`
    /// arm of [`Self::handle_message`]), so two answers never become two streams of batches.
    pub fn handle_peer_admitted(&mut self, now: UnixMs, region: RegionCode) {
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        if up.target != region {
            return;
        }
        up.acked = None;
        up.retry_at = None;
        up.last_heard = now;
        self.pump(now);
    }

    /// Log entries `from, from + 1, …` read back from storage, as asked by
    /// [`CatalogStorageOp::ReadLog`]. An answer nobody asked for (stale, or for another
    /// index) is ignored; an empty one means storage lacks the entry (reported at the retry).
    pub fn handle_log_read(
        &mut self,
        now: UnixMs,
        from: u64,
        updates: Vec<Arc<SignedCatalogUpdate>>,
    ) {
        if self.reading.map(|(f, _)| f) != Some(from) || updates.is_empty() {
            return;
        }
        self.reading = None;
        let sized = updates
            .into_iter()
            .take(LOG_READ_ENTRIES_MAX)
            .map(|u| {
                let bytes = encoded_len(&*u);
                (u, bytes)
            })
            .collect();
        self.window.refill(from, sized);
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<UnixMs> {
        let up = self.upstream.as_ref()?;
        if let Some((_, again)) = self.reading {
            return Some(again);
        }
        let idle = up.retry_at.is_none() && up.acked.is_none_or(|a| a < self.log_len());
        if idle {
            // Something to probe or send (e.g. just restored): due immediately.
            return Some(up.since);
        }
        let parent_check = (Some(up.target) != self.region().parent())
            .then(|| up.since.plus_ms(self.config.parent_retry_ms));
        [up.retry_at, parent_check].into_iter().flatten().min()
    }

    /// Sends the next probe or batch upstream if nothing is outstanding.
    fn pump(&mut self, now: UnixMs) {
        let log_len = self.log_len();
        let log_id = self.config.log_id;
        let retry = self.config.retry_ms;
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        if up.retry_at.is_some() || self.reading.is_some() {
            return;
        }
        let target = up.target;
        let msg = match up.acked {
            None => CatalogMsg::Probe { log_id },
            Some(acked) if acked < log_len => {
                let first = acked + 1;
                let Some(updates) = self.window.batch(first) else {
                    // Not held (after a restart, or beyond the window): read it back first.
                    self.reading = Some((first, now.plus_ms(retry)));
                    self.out
                        .push_back(CatalogOutput::Storage(CatalogStorageOp::ReadLog {
                            from: first,
                            count_max: LOG_READ_ENTRIES_MAX,
                        }));
                    return;
                };
                CatalogMsg::Updates {
                    log_id,
                    first,
                    updates,
                }
            }
            Some(acked) => {
                if !up.in_sync_reported {
                    up.in_sync_reported = true;
                    self.out
                        .push_back(CatalogOutput::Event(CatalogEvent::UpstreamInSync {
                            watermark: acked,
                        }));
                }
                return;
            }
        };
        up.in_sync_reported = false;
        up.retry_at = Some(now.plus_ms(retry));
        self.send(target, msg);
    }

    fn send(&mut self, to: RegionCode, msg: CatalogMsg) {
        self.out.push_back(CatalogOutput::Send { to, msg });
    }
}
