//! Return-flow (数据回流, Art. 24) state machine, one per node: parent → child delivery of
//! region-partitioned datasets, and receipts back up.
//!
//! # Protocol
//! 1. The publisher's node calls [`ReturnFlow::publish`]. A node holding a dataset version
//!    announces it to each child region that has data below it, once it holds that child's
//!    whole subtree ([`ReturnFlowMsg::Announce`]: signed manifest, the partition entries of the
//!    child's subtree only, and a [`RegionProof`]). Announces repeat every `retry_ms` until
//!    acknowledged.
//! 2. The child verifies the signature chain, expiry, succession (no rollback), that every
//!    entry is inside its region and that they prove to the signed root; its shell persists
//!    the record and reports which of its entries' content it already stores
//!    ([`ReturnFlow::handle_content_present`]: storage is content-addressed, so partitions a
//!    new version left unchanged are not fetched again); then it pulls missing
//!    chunk groups with [`ReturnFlowMsg::Want`], at most `groups_in_flight_max` at a time; one
//!    want names the groups of many partitions (a national dataset is 41,352 one-group
//!    partitions: a window is one message, not a thousand).
//! 3. The source answers a want with [`Output::ServeChunks`]: the shell reads the groups,
//!    encodes them ([`crate::manifest::PartitionOutboard`]) and sends a
//!    [`crate::manifest::ChunkFrame`] carrying the runs of one or more partitions. The
//!    receiving shell verifies each run ([`crate::manifest::decode_groups`]), stores the bytes,
//!    and reports [`ReturnFlow::handle_groups_stored`] once per frame (or
//!    [`ReturnFlow::handle_group_rejected`] per failing run).
//! 4. A node forwards to its own children as soon as their subtrees are complete, and sends
//!    signed receipts summarising its subtree to its source; the publisher aggregates.
//!
//! # Faults
//! - Loss, duplication, reordering: every request is retried on a timer and every handler is
//!   idempotent.
//! - Restart: the shell persists [`StorageOp::PutTransfer`] records and the chunk data; on
//!   start it calls [`ReturnFlow::restore`] with each record and the groups it has on disk,
//!   then [`ReturnFlow::restore_receipt`] with each persisted [`StorageOp::PutReceipt`].
//! - Skip-level fallback: if the source makes no progress for `source_silence_ms_max`, the
//!   receiver asks the next ancestor (up to the scope, then the publisher, then round again);
//!   symmetrically a node whose child never acknowledges announces to the child's children.
//! - Direct links ([`DataRouting`], e.g. province → county): a node announces to the
//!   descendants it serves — its region children, or past a tier — and a node at a skipped
//!   tier (the city) fetches only the partitions routed through it (its own). Receipts go to
//!   the node that serves, so they follow the path used; fallback works as above, and a
//!   silent target is bypassed towards the nodes *it* serves.
//! - A node never receives a partition outside its region: announces are filtered to the
//!   target's subtree, receivers reject foreign entries, and a source serves a want only if
//!   the requester's region contains the partition.
//!
//! # Driving it
//! Call the `handle_*` methods with the verified sender region and `now`; call
//! [`ReturnFlow::handle_tick`] at or after [`ReturnFlow::poll_timeout`]; after each call drain
//! [`ReturnFlow::poll_output`]. No method blocks, reads a clock or does IO.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use backflow_topology::RegionCode;

use crate::cert::{NodeIdentity, TrustStore};
use crate::group_set::GroupSet;
use crate::limits::{check_len, ANNOUNCE_ENTRIES_MAX};
#[cfg(doc)]
use crate::manifest::Manifest;
use crate::manifest::{
    check_succession, DatasetId, Hash, HeldVersion, ManifestError, ManifestPolicy, PartitionEntry,
    SignedManifest, Succession, CHUNK_GROUPS_PER_FRAME_MAX,
};
use crate::receipt::ReceiptLedger;
use crate::region_tree::{verify_all_partitions, verify_partitions, RegionProof, RegionTree};
use crate::time::UnixMs;
use crate::tuning::Tuning;

mod announce;
mod attested;
mod fetch;
pub(crate) mod messages;
mod outputs;
mod paths;
mod receipts;
mod routing;
mod serve;

use announce::add_target;
use attested::Attested;
use paths::{data_children, data_parent, served_via};

pub use messages::{Announce, ReturnFlowMsg, WantPart};
pub use outputs::{Event, Output, ServePart, StorageOp, TransferRecord};
pub use routing::{DataRouting, RoutingError};

/// Transfers (dataset versions) a node tracks at once. Each dataset keeps only its latest
/// version, so this bounds the number of datasets in flight through a node.
pub const TRANSFERS_MAX: usize = 1_024;

/// Largest multiplier of `retry_ms` between retries of unanswered chunk requests (5 s × 8 =
/// 40 s with the defaults, still under the 60 s of silence that triggers fallback).
pub const RETRY_BACKOFF_MAX: u32 = 8;
/// What counts as progress from a source: a frame's worth of groups (64 × 16 KiB = 1 MiB), or
/// a partition completed, within `source_silence_ms_max`. A source that trickles slower —
/// one group now and then, keeping the silence timer from firing (≈ 17 KB/s at the default
/// 60 s) — is bypassed like a silent one; an honest source on even a slow link delivers a
/// frame's worth in a minute.
pub const PROGRESS_GROUPS_MIN: u64 = CHUNK_GROUPS_PER_FRAME_MAX;

/// Per partition region, the chunk-group ranges a node has stored (input to `restore`).
pub type StoredGroups = [(RegionCode, Vec<Range<u64>>)];

/// Node-local configuration.
#[derive(Clone, Debug)]
pub struct ReturnFlowConfig {
    /// This node's region, key and chain (receipts are signed with it).
    pub identity: NodeIdentity,
    pub policy: ManifestPolicy,
    /// Retransmission interval for announces, wants and receipts.
    pub retry_ms: u64,
    /// Silence from the source (no stored group, no answer) before skip-level fallback; also
    /// how long an unacknowledged child waits before its children are announced to directly.
    pub source_silence_ms_max: u64,
    /// Chunk groups requested and not yet stored, per transfer (flow control).
    pub groups_in_flight_max: u64,
    /// Minimum interval between two receipts for the same manifest (batching).
    pub receipt_interval_ms: u64,
    /// Data-plane routing, the same on every node (default: the strict region tree).
    pub routing: DataRouting,
}

impl ReturnFlowConfig {
    /// The machine's configuration with the one set of defaults ([`Tuning::default`]); the
    /// [`crate::endpoint::Endpoint`] sets the knobs from its own `Tuning`.
    pub fn new(identity: NodeIdentity) -> ReturnFlowConfig {
        let tuning = Tuning::default();
        ReturnFlowConfig {
            identity,
            policy: ManifestPolicy::default(),
            retry_ms: tuning.retry_ms,
            source_silence_ms_max: tuning.source_silence_ms_max,
            groups_in_flight_max: tuning.groups_in_flight_max,
            receipt_interval_ms: tuning.receipt_interval_ms,
            routing: DataRouting::tree(),
        }
    }
}

#[derive(Clone, Debug)]
struct Part {
    have: GroupSet,
    /// Groups below this cursor were requested (or stored); reset on timeout / rejection.
    cursor: u64,
    /// Delivered past this node by a direct link (see [`DataRouting`]): its entry is kept
    /// (to verify the subtree and to index receipts) but it is never fetched, stored or served.
    bypassed: bool,
}

impl Part {
    /// Whether groups of this part remain to be requested.
    fn needs_fetch(&self) -> bool {
        !self.bypassed && !self.have.is_full() && self.cursor < self.have.len
    }
}

#[derive(Clone, Debug)]
struct InFlight {
    part: usize,
    groups: Range<u64>,
    deadline: UnixMs,
}

/// Announcing to one descendant.
#[derive(Clone, Debug)]
struct Target {
    /// Partitions in the target's subtree not yet complete here.
    pending: u32,
    acked: bool,
    first_sent: Option<UnixMs>,
    next_send: UnixMs,
    /// Whether its children were added as targets (skip-level fallback downwards).
    escalated: bool,
}

#[derive(Clone, Debug)]
struct Transfer {
    record: Arc<TransferRecord>,
    hash: Hash,
    /// Root of `tree`: this node, or the scope at a publisher above the scope.
    tree: RegionTree,
    /// Sorted by region; `parts[i]` tracks `record.entries[i]`.
    parts: Vec<Part>,
    complete_parts: usize,
    /// Parts delivered past this node (direct links); they count as done here.
    bypassed_parts: usize,
    /// Current source (None at the publisher).
    source: Option<RegionCode>,
    last_progress: UnixMs,
    /// Groups stored since `last_progress` (it moves once they reach
    /// [`PROGRESS_GROUPS_MIN`], or a partition completes).
    progress_groups: u64,
    inflight: Vec<InFlight>,
    /// The current window, groups (≤ `groups_in_flight_max`): halved when requests time out,
    /// grown back by what arrives.
    window: u64,
    /// Multiplier of `retry_ms` for the next requests: doubled on each timeout (up to
    /// `RETRY_BACKOFF_MAX`), back to 1 on delivery.
    retry_backoff: u32,
    /// Parts before this index need no requests (complete or fully requested): keeps a fetch
    /// round O(window) rather than O(partitions) at nodes with large subtrees.
    fetch_from: usize,
    targets: BTreeMap<RegionCode, Target>,
    ledger: ReceiptLedger,
    /// Partitions whose own region attested delivery: what completeness counts.
    attested: Attested,
    receipt_seq: u64,
    receipt_dirty: bool,
    receipt_acked: bool,
    receipt_next_send: UnixMs,
    /// Where receipts go: the nearest ancestor that acknowledges (separate from the data
    /// source, so a data-plane fallback does not divert the aggregation away from the parent).
    receipt_to: Option<RegionCode>,
    /// When the current unacknowledged receipt was first sent to `receipt_to`.
    receipt_first_sent: Option<UnixMs>,
    expired: bool,
    /// A received transfer whose content the shell has not yet reported
    /// ([`ReturnFlow::handle_content_present`]): nothing is requested meanwhile, so content
    /// already stored (e.g. what a previous version shares) is never asked for. Cleared by the
    /// report or, for a shell that does not report, by the next tick.
    content_unchecked: bool,
    /// The announcer to acknowledge once the content is checked.
    ack_pending: Option<RegionCode>,
    /// [`Transfer::partitions_under`] of each region that sent a receipt: a national node
    /// would otherwise scan all 41,352 entries for every receipt of every province.
    under: BTreeMap<RegionCode, usize>,
}

impl Transfer {
    fn is_complete(&self) -> bool {
        self.complete_parts + self.bypassed_parts == self.parts.len()
    }

    /// Partitions of this transfer inside `region`: what a receipt from `region` must count.
    /// Counted once per region (entries are sorted by level first, so a subtree's entries are
    /// not one range of them); the map is bounded by the regions that are descendants here.
    fn partitions_under(&mut self, region: RegionCode) -> usize {
        let entries = &self.record.entries;
        *self
            .under
            .entry(region)
            .or_insert_with(|| entries.iter().filter(|e| region.contains(e.region)).count())
    }

    fn part_index(&self, region: RegionCode) -> Option<usize> {
        self.record
            .entries
            .binary_search_by_key(&region, |e| e.region)
            .ok()
    }
}

/// The per-node return-flow state machine. See the module docs for how a shell drives it.
#[derive(Debug)]
pub struct ReturnFlow {
    config: ReturnFlowConfig,
    held: BTreeMap<DatasetId, HeldVersion>,
    transfers: BTreeMap<Hash, Transfer>,
    out: VecDeque<Output>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnFlowError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("this node ({node}) cannot publish a manifest scoped to {scope}")]
    NotPublisher { node: RegionCode, scope: RegionCode },
    #[error("too many transfers (limit {max})")]
    TooManyTransfers { max: usize },
    /// The endpoint's check before a publish: the version carries data granted to this node
    /// that may not go to its recipients (Art. 25, `Endpoint::check_pass_on`).
    #[error(transparent)]
    GrantedData(#[from] crate::share::UsageRefusal),
}

impl ReturnFlow {
    pub fn new(config: ReturnFlowConfig) -> ReturnFlow {
        assert!(config.retry_ms > 0, "retry_ms must be positive");
        assert!(
            config.groups_in_flight_max > 0,
            "groups_in_flight_max must be positive"
        );
        ReturnFlow {
            config,
            held: BTreeMap::new(),
            transfers: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    pub fn region(&self) -> RegionCode {
        self.config.identity.region
    }

    /// This node's signing identity (the one receipts are signed with).
    pub fn identity(&self) -> &NodeIdentity {
        &self.config.identity
    }

    /// Whether the transfer of `manifest` waits for [`Self::handle_content_present`] (a
    /// received record just installed; restored and published ones do not).
    pub fn awaits_content(&self, manifest: &Hash) -> bool {
        self.transfers
            .get(manifest)
            .is_some_and(|t| t.content_unchecked)
    }

    /// Replaces this node's signing identity after a key rotation (same region). Receipts are
    /// signed with the new key from now on.
    pub fn set_identity(&mut self, identity: NodeIdentity) {
        assert_eq!(identity.region, self.region(), "a node keeps its region");
        self.config.identity = identity;
        // Own attestations are signed again under the new chain: the old key's revocation
        // will make the old chain void upstream.
        let me = self.region();
        for t in self.transfers.values_mut() {
            if let Some(i) = t.part_index(me) {
                t.attested.forget(i, me);
                t.receipt_dirty = true;
            }
        }
    }

    /// Next output for the shell, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The latest held version of each dataset.
    pub fn held(&self) -> impl Iterator<Item = (&DatasetId, &HeldVersion)> {
        self.held.iter()
    }

    /// The partition entry a chunk frame for (`manifest`, `region`) must verify against, if this
    /// node is receiving it. The shell drops frames for anything else.
    pub fn expected_partition(
        &self,
        manifest: &Hash,
        region: RegionCode,
    ) -> Option<PartitionEntry> {
        let t = self.transfers.get(manifest)?;
        let i = t.part_index(region)?;
        let p = &t.parts[i];
        (!p.bypassed && !p.have.is_full()).then(|| t.record.entries[i])
    }

    /// Whether every partition of this node's subtree for `manifest` is stored.
    pub fn is_complete(&self, manifest: &Hash) -> bool {
        self.transfers
            .get(manifest)
            .is_some_and(|t| t.is_complete())
    }

    /// Deletes a grant's delivery held here — its data disposed of (Art. 27 ¶1): the record
    /// and content go ([`StorageOp::DropTransfer`]); nothing of it is served or exported again.
    /// Returns whether it was held. Return-flow data is never dropped this way.
    pub fn drop_delivery(&mut self, manifest: &Hash) -> bool {
        if !self.is_delivery(manifest) {
            return false;
        }
        if let Some(t) = self.transfers.remove(manifest) {
            let dataset = t.record.manifest.manifest.dataset_id();
            if self.held.get(&dataset).is_some_and(|h| h.hash == *manifest) {
                self.held.remove(&dataset);
            }
        }
        self.out.push_back(Output::Storage(StorageOp::DropTransfer {
            manifest: *manifest,
        }));
        true
    }

    /// The record of a transfer held here.
    pub fn record(&self, manifest: &Hash) -> Option<&Arc<TransferRecord>> {
        self.transfers.get(manifest).map(|t| &t.record)
    }

    /// The manifest policy this node checks manifests against (and signs its own within).
    pub fn policy(&self) -> &ManifestPolicy {
        &self.config.policy
    }

    /// Whether `manifest`, held here, is a grant's delivery ([`Manifest::delivers`]).
    pub fn is_delivery(&self, manifest: &Hash) -> bool {
        self.transfers
            .get(manifest)
            .is_some_and(|t| t.record.manifest.manifest.is_delivery())
    }

    /// Which groups of a partition are stored (for tests and status pages).
    pub fn stored_groups(&self, manifest: &Hash, region: RegionCode) -> Option<u64> {
        let t = self.transfers.get(manifest)?;
        Some(t.parts[t.part_index(region)?].have.count)
    }

    /// The publisher's node starts a dataset version it holds in full. `entries` cover the
    /// manifest scope; the node must be the scope or an ancestor of it.
    pub fn publish(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        manifest: SignedManifest,
        mut entries: Vec<PartitionEntry>,
    ) -> Result<Hash, ReturnFlowError> {
        let me = self.region();
        let scope = manifest.manifest.scope;
        // A grant's delivery goes from the provider's node to the requester's, wherever it is.
        let publishes = if manifest.manifest.is_delivery() {
            manifest.manifest.publisher.region == me
        } else {
            me.contains(scope)
        };
        if !publishes {
            return Err(ReturnFlowError::NotPublisher { node: me, scope });
        }
        let hash = manifest.verify(trust, now, &self.config.policy)?;
        entries.sort_unstable_by_key(|e| e.region);
        let tree = verify_all_partitions(&manifest.manifest, &entries)?;
        // Every announce must fit its limit: the largest is the one for a child of the scope
        // (or for the scope itself when publishing from above it).
        let first_targets: Vec<RegionCode> = if me == scope {
            tree.children_with_data(scope).collect()
        } else {
            vec![scope]
        };
        for target in first_targets {
            let n = entries.iter().filter(|e| target.contains(e.region)).count();
            check_len("announce entries", n, ANNOUNCE_ENTRIES_MAX).map_err(ManifestError::from)?;
        }
        let succession = check_succession(
            self.held.get(&manifest.manifest.dataset_id()).copied(),
            &manifest.manifest,
            hash,
        )?;
        if succession == Succession::Same {
            // Publishing the same manifest again is a no-op.
            return Ok(hash);
        }
        let record = Arc::new(TransferRecord {
            manifest: Arc::new(manifest),
            entries,
            proof: RegionProof::default(),
            published: true,
        });
        self.install(now, record, hash, tree, None, None)?;
        Ok(hash)
    }

    /// Resumes a persisted transfer after a restart. `stored` lists, per partition region, the
    /// group ranges present on disk (the shell may re-verify them first). Signatures are not
    /// re-checked (the record was verified before it was persisted); the entries are re-hashed
    /// against the proof. A record older than the version already restored for its dataset
    /// (superseded just before a crash) is not resumed but dropped ([`StorageOp::DropTransfer`]).
    pub fn restore(
        &mut self,
        now: UnixMs,
        record: TransferRecord,
        stored: &StoredGroups,
    ) -> Result<Hash, ReturnFlowError> {
        let me = self.region();
        let m = &record.manifest.manifest;
        let hash = m.hash();
        let root = if record.published { m.scope } else { me };
        let tree = if record.published {
            verify_all_partitions(m, &record.entries)?
        } else {
            verify_partitions(m, root, &record.entries, &record.proof)?
        };
        if let Some(h) = self.held.get(&m.dataset_id()) {
            if h.version > m.version {
                // A record superseded before a crash, whose drop was not applied yet (the
                // newer record is persisted first): drop it now.
                self.out
                    .push_back(Output::Storage(StorageOp::DropTransfer { manifest: hash }));
            }
            if h.version >= m.version {
                return Ok(hash);
            }
        }
        let source = if record.published {
            None
        } else {
            data_parent(&self.config.routing, me, m)
        };
        self.install(now, Arc::new(record), hash, tree, source, Some(stored))?;
        Ok(hash)
    }

    fn install(
        &mut self,
        now: UnixMs,
        record: Arc<TransferRecord>,
        hash: Hash,
        tree: RegionTree,
        source: Option<RegionCode>,
        stored: Option<&StoredGroups>,
    ) -> Result<(), ReturnFlowError> {
        let m = &record.manifest.manifest;
        if self.transfers.len() >= TRANSFERS_MAX && !self.held.contains_key(&m.dataset_id()) {
            return Err(ReturnFlowError::TooManyTransfers { max: TRANSFERS_MAX });
        }
        // Supersede the previous version of the dataset. Its record is dropped only after the
        // new one is persisted (see [`StorageOp`]): the content both share stays in use.
        let superseded = self
            .held
            .insert(
                m.dataset_id(),
                HeldVersion {
                    version: m.version,
                    hash,
                },
            )
            .filter(|old| old.hash != hash && self.transfers.remove(&old.hash).is_some())
            .map(|old| old.hash);
        let me = self.region();
        let routing = &self.config.routing;
        let parts: Vec<Part> = record
            .entries
            .iter()
            .map(|e| {
                let have = if record.published {
                    GroupSet::full(e.groups())
                } else {
                    GroupSet::new(e.groups())
                };
                // The publisher holds everything; a relay leaves alone what is routed past it.
                let bypassed = !record.published && !served_via(routing, m, me, e.region);
                Part {
                    have,
                    cursor: 0,
                    bypassed,
                }
            })
            .collect();
        let bypassed_parts = parts.iter().filter(|p| p.bypassed).count();
        let mut t = Transfer {
            hash,
            tree,
            parts,
            complete_parts: 0,
            bypassed_parts,
            source,
            last_progress: now,
            progress_groups: 0,
            inflight: Vec::new(),
            window: self.config.groups_in_flight_max,
            retry_backoff: 1,
            fetch_from: 0,
            targets: BTreeMap::new(),
            ledger: ReceiptLedger::default(),
            attested: Attested::new(record.entries.len(), !record.published),
            receipt_seq: 0,
            receipt_dirty: true,
            receipt_acked: false,
            receipt_next_send: now,
            receipt_to: source,
            receipt_first_sent: None,
            expired: false,
            // A received record waits for the shell to say what of it is stored already; a
            // restored one was told (`stored`), a published one holds everything.
            content_unchecked: stored.is_none() && !record.published,
            ack_pending: None,
            under: BTreeMap::new(),
            record,
        };
        if let Some(stored) = stored {
            mark_present(&mut t, stored);
        }
        self.out
            .push_back(Output::Storage(StorageOp::PutTransfer(Arc::clone(
                &t.record,
            ))));
        if let Some(old) = superseded {
            self.out
                .push_back(Output::Storage(StorageOp::DropTransfer { manifest: old }));
        }
        // Count complete partitions (empty, published or restored ones) before adding targets,
        // whose pending counts already exclude them.
        for i in 0..t.parts.len() {
            if t.parts[i].have.is_full() && !t.parts[i].bypassed {
                self.part_completed(&mut t, i, now);
            }
        }
        if t.bypassed_parts == t.parts.len() && !t.record.published {
            // Everything here is delivered past this node: nothing to fetch.
            self.out
                .push_back(Output::Event(Event::TransferComplete { manifest: hash }));
        }
        // Announce to the nodes this one serves: its region children on the strict tree (or
        // the scope, from a publisher above it), plus direct-link descendants.
        let initial_targets = data_children(
            &self.config.routing,
            &t.tree,
            &t.record.manifest.manifest,
            me,
        );
        for target in initial_targets {
            add_target(&self.config.routing, &mut t, target, now);
        }
        let unchecked = t.content_unchecked;
        self.transfers.insert(hash, t);
        if !unchecked {
            self.drive(now, &hash);
        }
        // Else everything waits for the shell's report (`content_checked`), so the outputs
        // come in the same order as for a transfer driven at once: wants, announces, the
        // receipt, then the acknowledgement.
        Ok(())
    }

    /// Handles a control-plane message from the (shell-verified) region `from`.
    pub fn handle_message(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        msg: ReturnFlowMsg,
    ) {
        match msg {
            ReturnFlowMsg::Announce(a) => self.on_announce(now, trust, from, a),
            ReturnFlowMsg::AnnounceAck { manifest } => {
                if let Some(t) = self.transfers.get_mut(&manifest) {
                    if let Some(target) = t.targets.get_mut(&from) {
                        target.acked = true;
                    }
                }
            }
            ReturnFlowMsg::Want { manifest, parts } => self.on_want(now, from, manifest, parts),
            ReturnFlowMsg::NotAvailable { manifest } => {
                let is_source = self
                    .transfers
                    .get(&manifest)
                    .is_some_and(|t| t.source == Some(from) && !t.is_complete());
                if is_source {
                    self.escalate(now, &manifest);
                    self.drive(now, &manifest);
                }
            }
            ReturnFlowMsg::Receipt(r) => self.on_receipt(now, trust, from, &r),
            ReturnFlowMsg::ReceiptAck { manifest, seq } => {
                if let Some(t) = self.transfers.get_mut(&manifest) {
                    if seq == t.receipt_seq && t.receipt_to == Some(from) {
                        t.receipt_acked = true;
                        t.receipt_first_sent = None;
                        t.attested.batch_acked();
                        if t.attested.has_unforwarded() {
                            // The next batch goes at once, not after the receipt interval.
                            t.receipt_dirty = true;
                            t.receipt_next_send = now;
                            self.drive(now, &manifest);
                        }
                    }
                }
            }
        }
    }

    /// Timer input: retransmissions, timeouts, fallback, receipts, expiry.
    pub fn handle_tick(&mut self, now: UnixMs) {
        let hashes: Vec<Hash> = self.transfers.keys().copied().collect();
        for h in hashes {
            if self.transfers.get(&h).is_some_and(|t| t.content_unchecked) {
                // A shell that does not report stored content: fetch everything missing.
                self.content_checked(now, &h);
            } else {
                self.drive(now, &h);
            }
        }
    }

    /// The earliest time `handle_tick` has work to do.
    /// Region `region`'s node was admitted (again): announces it has not acknowledged go at
    /// the next tick instead of at their retry time — a requester that dials for a grant's
    /// delivery, or a child back from a restart, does not wait out `retry_ms`.
    pub fn handle_peer_admitted(&mut self, now: UnixMs, region: RegionCode) {
        for t in self.transfers.values_mut() {
            if let Some(target) = t.targets.get_mut(&region).filter(|t| !t.acked) {
                target.next_send = target.next_send.min(now);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<UnixMs> {
        let mut next: Option<UnixMs> = None;
        let mut at = |t: UnixMs| next = Some(next.map_or(t, |n| n.min(t)));
        for t in self.transfers.values() {
            if t.expired {
                continue;
            }
            at(t.record.manifest.manifest.expires_at);
            if t.content_unchecked {
                // Due at once: the shell's report normally comes first.
                at(t.last_progress);
            }
            if !t.is_complete() {
                at(t.last_progress.plus_ms(self.config.source_silence_ms_max));
                for f in &t.inflight {
                    at(f.deadline);
                }
            }
            for target in t.targets.values() {
                if target.pending == 0 && !target.acked {
                    at(target.next_send);
                }
            }
            if t.receipt_dirty || (t.receipt_to.is_some() && !t.receipt_acked) {
                at(t.receipt_next_send);
            }
        }
        next
    }

    fn send(&mut self, to: RegionCode, msg: ReturnFlowMsg) {
        self.out.push_back(Output::Send { to, msg });
    }

    fn part_completed(&mut self, t: &mut Transfer, i: usize, now: UnixMs) {
        let me = self.region();
        t.complete_parts += 1;
        debug_assert!(t.complete_parts <= t.parts.len());
        let region = t.record.entries[i].region;
        if !t.record.published {
            self.out.push_back(Output::Event(Event::PartitionComplete {
                manifest: t.hash,
                region,
            }));
        }
        let m = &t.record.manifest.manifest;
        for a in std::iter::once(region).chain(region.ancestors()) {
            if a == me {
                break;
            }
            // Only targets this partition is announced through (see `add_target`).
            if !t.targets.contains_key(&a) || !served_via(&self.config.routing, m, a, region) {
                continue;
            }
            if let Some(target) = t.targets.get_mut(&a) {
                target.pending = target.pending.saturating_sub(1);
                if target.pending == 0 {
                    target.next_send = now;
                }
            }
        }
        t.receipt_dirty = true;
        if t.is_complete() && !t.record.published {
            t.inflight.clear();
            self.out
                .push_back(Output::Event(Event::TransferComplete { manifest: t.hash }));
        }
    }

    /// Runs everything time- or state-driven for one transfer.
    fn drive(&mut self, now: UnixMs, manifest: &Hash) {
        let Some(t) = self.transfers.get(manifest) else {
            return;
        };
        if t.expired {
            return;
        }
        if now >= t.record.manifest.manifest.expires_at {
            if let Some(t) = self.transfers.get_mut(manifest) {
                t.expired = true;
            }
            self.out.push_back(Output::Event(Event::TransferExpired {
                manifest: *manifest,
            }));
            return;
        }
        if !t.is_complete()
            && now.since_ms(t.last_progress) >= self.config.source_silence_ms_max
            && t.source.is_some()
        {
            self.escalate(now, manifest);
        }
        let Some(mut t) = self.transfers.remove(manifest) else {
            return;
        };
        self.fetch(now, &mut t);
        self.announce(now, &mut t);
        self.report(now, &mut t);
        self.transfers.insert(*manifest, t);
    }
}

/// Marks the group ranges the shell stores (per partition region) as had, for the parts this
/// node fetches (restore's `stored`): one binary search per region, ranges clamped to their
/// partition.
fn mark_present(t: &mut Transfer, present: &StoredGroups) {
    for (region, ranges) in present {
        if let Some(i) = t.part_index(*region).filter(|i| !t.parts[*i].bypassed) {
            for r in ranges {
                t.parts[i].have.insert_range(r.clone());
            }
        }
    }
}
