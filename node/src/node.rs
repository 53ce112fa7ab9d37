//! The node runtime: one tokio task owning the libp2p swarm and the protocol state machines
//! (`ReturnFlow`, `CatalogSync`), driving them with messages, timer ticks and storage
//! results, and carrying out their outputs.
//!
//! Control plane and data plane are kept apart. Control frames travel by request-response
//! through the swarm and this loop. Chunk frames travel on one data-plane stream per peer
//! (`/backflow/chunks/1`): a writer task per peer sends them, a reader task per inbound stream
//! decodes them, and this loop only routes a decoded frame to the state machine. Verifying and
//! storing received chunk frames and reading + encoding served ones run on the blocking pool
//! and report back through a channel. The state machines' own flow control
//! (`groups_in_flight_max`) bounds how much of that work can be outstanding.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, SignedCatalogUpdate,
};
use backflow_protocol::catalog_sync::{
    CatalogEvent, CatalogOutput, CatalogStorageOp, CatalogSync, CatalogSyncConfig,
};
use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::manifest::{ChunkFrame, ChunkPart, Hash, HeldVersion, PartitionEntry};
use backflow_protocol::outbox::Outbox;
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{
    Event, Output, ReturnFlow, ReturnFlowConfig, StorageOp, TransferRecord,
};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{
    decode_chunk_frame, decode_exact, decode_frame, encode_chunk_frame_head, encode_frame,
    encode_value, ChunkFrameView, Hello, Message,
};
use backflow_topology::{RegionCode, Topology};
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::chunks::{frame_buf, receive_frame, recycle_frame_buf, serve_frame, OutboardCache};
use crate::config::hex;
use crate::net::{
    build_swarm, keypair_from_signing_key, read_frame_into, write_frame_parts, Behaviour,
    BehaviourEvent, CHUNK_PROTOCOL,
};
use crate::store::{region_key, Store, CF_CATALOG, CF_RECEIPTS, CF_STATE};

/// Commands queued to the event loop. Bounded: callers wait rather than pile up.
const COMMAND_QUEUE_MAX: usize = 256;
/// Results of blocking work queued back to the loop.
const WORK_QUEUE_MAX: usize = 4_096;
/// How often unreachable upstream peers are redialled.
const REDIAL_INTERVAL_MS: u64 = 2_000;
/// Upper bound on one wait of the event loop (timers are re-evaluated at least this often).
const LOOP_WAIT_MS_MAX: u64 = 1_000;
/// Chunk frames (≤ 1 MiB + 64 KiB each) queued for one peer's data-plane stream. The transfer
/// window (`groups_in_flight_max`, 64 groups per frame) keeps far fewer in flight per
/// transfer; this bounds the memory a slow peer can pin.
const CHUNK_FRAMES_QUEUED_MAX: usize = 64;
/// Receipts persisted per manifest for `status` after a restart.
const TRANSFER_KEY_PREFIX: &[u8] = b"transfer/";
const CATALOG_LOG_PREFIX: &[u8] = b"log/";
const CATALOG_WM_PREFIX: &[u8] = b"wm/";
const CATALOG_LOG_ID_KEY: &[u8] = b"catalog/log_id";
/// Transfer records read at start (TRANSFERS_MAX in the protocol bounds them anyway).
const TRANSFER_RECORDS_MAX: usize = 4_096;
/// Descendants' receipts kept per transfer: at most one per region below this node, and there
/// are 44,703 regions below national.
const RECEIPTS_PER_TRANSFER_MAX: usize = 65_536;

/// `receipts` CF key: manifest hash ‖ the descendant region (sortable), so one transfer's
/// receipts are one prefix scan.
fn receipt_key(manifest: &Hash, region: RegionCode) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(manifest);
    key[32..].copy_from_slice(&region_key(region));
    key
}

/// Knobs of the protocol state machines, set by the shell; the `[tuning]` section of
/// `config.toml` (every field optional; absent fields keep these defaults).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// A chunk or announce request not answered within this time is sent again.
    pub retry_ms: u64,
    /// A source silent this long is abandoned for the next ancestor (skip-level fallback).
    pub source_silence_ms_max: u64,
    /// Chunk groups (16 KiB) requested and not yet stored, per transfer: the transfer window.
    pub groups_in_flight_max: u64,
    pub receipt_interval_ms: u64,
    /// Fault injection for the multi-host tests: serve chunk frames with one byte flipped.
    /// Set only from the environment (`BACKFLOW_FAULT_TAMPER_SERVE=1`), never from a config
    /// file, and announced with a warning at start.
    #[serde(skip)]
    pub fault_tamper_serve: bool,
}

/// Bounds on the tuning knobs: outside them a node either floods its peers or never notices
/// a dead source, so `Tuning::validate` refuses such a config at start.
pub const TUNING_MS_MIN: u64 = 50;
pub const TUNING_MS_MAX: u64 = 24 * 60 * 60 * 1000;
pub const GROUPS_IN_FLIGHT_MAX: u64 = 65_536;

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            retry_ms: 5_000,
            source_silence_ms_max: 60_000,
            // 1024 × 16 KiB = 16 MiB in flight: enough to fill a fast link's pipe.
            groups_in_flight_max: 1_024,
            receipt_interval_ms: 1_000,
            fault_tamper_serve: false,
        }
    }
}

impl Tuning {
    /// Every problem at once, one line each.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (name, v) in [
            ("retry_ms", self.retry_ms),
            ("source_silence_ms_max", self.source_silence_ms_max),
            ("receipt_interval_ms", self.receipt_interval_ms),
        ] {
            if !(TUNING_MS_MIN..=TUNING_MS_MAX).contains(&v) {
                problems.push(format!(
                    "tuning.{name} = {v} is outside {TUNING_MS_MIN}..={TUNING_MS_MAX} ms"
                ));
            }
        }
        if self.source_silence_ms_max < self.retry_ms {
            problems.push(format!(
                "tuning.source_silence_ms_max ({}) must be at least tuning.retry_ms ({}): a \
                 source must get at least one retry before it is abandoned",
                self.source_silence_ms_max, self.retry_ms
            ));
        }
        if !(1..=GROUPS_IN_FLIGHT_MAX).contains(&self.groups_in_flight_max) {
            problems.push(format!(
                "tuning.groups_in_flight_max = {} is outside 1..={GROUPS_IN_FLIGHT_MAX}",
                self.groups_in_flight_max
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }
}

/// Everything needed to start a node.
pub struct NodeSetup {
    pub identity: NodeIdentity,
    pub anchor: VerifyingKey,
    pub db_path: PathBuf,
    pub listen: Vec<Multiaddr>,
    /// Parent first, then further ancestors (skip-level fallback); each with `/p2p/<id>`.
    pub upstream: Vec<Multiaddr>,
    pub tuning: Tuning,
}

pub fn now_ms() -> UnixMs {
    UnixMs(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// The libp2p peer id of an ed25519 verifying key (node keys double as libp2p keys).
pub fn peer_id_of(key: &VerifyingKey) -> Result<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())?;
    Ok(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// Per-child-region delivery state, as `backflow status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ChildStatus {
    pub region: String,
    pub name: String,
    /// pending / partial / complete
    pub state: &'static str,
    pub regions_expected: u64,
    pub regions_delivered: u64,
    pub records_expected: u64,
    pub records_delivered: u64,
    pub bytes_expected: u64,
    pub bytes_delivered: u64,
    /// Unix ms of the latest receipt counted for this child.
    pub last_receipt_at: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetStatus {
    pub dataset: String,
    pub version: u64,
    pub manifest: String,
    pub publisher: String,
    pub published_here: bool,
    /// Every partition of this node's subtree is stored and verified here.
    pub held_complete: bool,
    pub partitions_here: u64,
    pub records_here: u64,
    pub bytes_here: u64,
    /// Aggregated over the subtree from receipts (at the publisher: the whole dataset).
    pub regions_expected: u64,
    pub regions_delivered: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    pub complete: bool,
    pub children: Vec<ChildStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CatalogView {
    pub region: String,
    pub department: String,
    pub seq: u64,
    pub entries: Vec<Arc<CatalogEntry>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub peer: String,
    pub region: Option<String>,
    /// The remote address of the latest connection (shows the transport: `/tcp/` or `/quic-v1`).
    pub addr: Option<String>,
}

/// The transfer records of one dataset version (one per scope).
pub type HeldRecords = Vec<(Hash, Arc<TransferRecord>)>;

enum Cmd {
    Held {
        reply: oneshot::Sender<HashMap<String, HeldVersion>>,
    },
    Publish {
        manifests: Vec<(
            backflow_protocol::manifest::SignedManifest,
            Vec<backflow_protocol::manifest::PartitionEntry>,
        )>,
        reply: oneshot::Sender<Result<Vec<Hash>>>,
    },
    Status {
        dataset: Option<String>,
        reply: oneshot::Sender<Vec<DatasetStatus>>,
    },
    Record {
        dataset: String,
        version: Option<u64>,
        reply: oneshot::Sender<Result<HeldRecords>>,
    },
    CatalogSubmit {
        department: String,
        entries: Vec<CatalogEntry>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Catalogs {
        reply: oneshot::Sender<Vec<CatalogView>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerView>>,
    },
    Shutdown,
}

/// Data-plane counters (for tests, benchmarks and logs).
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Chunk groups received, verified and stored.
    pub groups_stored: AtomicU64,
    /// Chunk groups that failed verification.
    pub groups_rejected: AtomicU64,
    /// Chunk groups served to descendants.
    pub groups_served: AtomicU64,
    /// Connections closed, for any reason (a healthy network under load closes none).
    pub connections_closed: AtomicU64,
    /// Control frames dropped because a peer's control queue was full.
    pub control_frames_dropped: AtomicU64,
}

/// A handle to a running node; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    cmd: mpsc::Sender<Cmd>,
    pub stats: Arc<NodeStats>,
    pub store: Store,
    pub identity: Arc<NodeIdentity>,
    pub peer_id: PeerId,
    /// Listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
}

impl NodeHandle {
    pub fn region(&self) -> RegionCode {
        self.identity.region
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("node has shut down"))?;
        rx.await.map_err(|_| anyhow!("node has shut down"))
    }

    /// Every dataset (scoped name) held here and its latest version.
    pub async fn held(&self) -> Result<HashMap<String, HeldVersion>> {
        self.ask(|reply| Cmd::Held { reply }).await
    }

    /// Hands signed manifests and their entries (already stored) to the return flow.
    pub async fn publish(
        &self,
        manifests: Vec<(
            backflow_protocol::manifest::SignedManifest,
            Vec<backflow_protocol::manifest::PartitionEntry>,
        )>,
    ) -> Result<Vec<Hash>> {
        self.ask(|reply| Cmd::Publish { manifests, reply }).await?
    }

    /// Partitions `req`'s file, stores and signs it, and publishes it (blocking work runs on
    /// the blocking pool). Returns the partitioning summary and the manifest hashes.
    pub async fn publish_file(
        &self,
        req: crate::publish::PublishRequest,
        progress: Arc<AtomicU64>,
    ) -> Result<(crate::publish::PublishOutcome, Vec<Hash>)> {
        let held = self.held().await?;
        let store = self.store.clone();
        let identity = Arc::clone(&self.identity);
        let prepared = tokio::task::spawn_blocking(move || {
            crate::publish::prepare(
                &store,
                &identity,
                &|name| held.get(name).copied(),
                &req,
                now_ms(),
                &mut |b| progress.store(b, Ordering::Relaxed),
            )
        })
        .await??;
        let outcome = crate::publish::PublishOutcome {
            version: prepared
                .manifests
                .iter()
                .map(|(m, _)| m.manifest.version)
                .max()
                .unwrap_or(0),
            partitions: prepared.partitions(),
            records: prepared.records(),
            bytes: prepared.bytes(),
            summary: prepared.summary,
        };
        let hashes = self.publish(prepared.manifests).await?;
        Ok((outcome, hashes))
    }

    pub async fn status(&self, dataset: Option<String>) -> Result<Vec<DatasetStatus>> {
        self.ask(|reply| Cmd::Status { dataset, reply }).await
    }

    /// The transfer records of a held dataset version (latest if `version` is None): one, or
    /// one per scope if the publisher split the dataset.
    pub async fn record(&self, dataset: &str, version: Option<u64>) -> Result<HeldRecords> {
        let dataset = dataset.to_string();
        self.ask(|reply| Cmd::Record {
            dataset,
            version,
            reply,
        })
        .await?
    }

    pub async fn catalog_submit(
        &self,
        department: String,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64> {
        self.ask(|reply| Cmd::CatalogSubmit {
            department,
            entries,
            reply,
        })
        .await?
    }

    pub async fn catalogs(&self) -> Result<Vec<CatalogView>> {
        self.ask(|reply| Cmd::Catalogs { reply }).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerView>> {
        self.ask(|reply| Cmd::Peers { reply }).await
    }

    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Cmd::Shutdown).await;
    }
}

/// A chunk frame queued for a data-plane stream: its encoded head, then its payload (written
/// from this buffer, not copied into a frame).
struct ChunkOut {
    head: Vec<u8>,
    payload: Vec<u8>,
}

/// A chunk frame as received: its fields, and the buffer it was read into with the payload
/// left in place (`buf[frame.payload]`), so a megabyte is not copied out of it.
struct ReceivedChunk {
    frame: ChunkFrameView,
    buf: Vec<u8>,
}

impl From<ChunkFrame> for ReceivedChunk {
    fn from(frame: ChunkFrame) -> ReceivedChunk {
        let (frame, buf) = frame.into();
        ReceivedChunk { frame, buf }
    }
}

enum Work {
    /// A chunk frame read and decoded from a peer's data-plane stream.
    Chunk {
        peer: PeerId,
        chunk: ReceivedChunk,
    },
    /// The verified runs of one chunk frame, stored.
    Stored {
        from: RegionCode,
        manifest: Hash,
        parts: Vec<(RegionCode, Range<u64>)>,
    },
    Rejected {
        from: RegionCode,
        manifest: Hash,
        region: RegionCode,
        group: u64,
        reason: String,
    },
    Failed(String),
}

struct Runtime {
    swarm: Swarm<Behaviour>,
    store: Store,
    trust: TrustStore,
    rf: ReturnFlow,
    cs: CatalogSync,
    identity: Arc<NodeIdentity>,
    hello: Vec<u8>,
    /// Verified peers.
    regions: HashMap<PeerId, RegionCode>,
    /// Control frames in flight and queued per peer (see [`backflow_protocol::outbox`]).
    outbox: Outbox<PeerId, request_response::OutboundRequestId>,
    by_region: HashMap<RegionCode, PeerId>,
    /// Remote address of each connected peer's latest connection, for `peers`.
    addrs: HashMap<PeerId, libp2p::Multiaddr>,
    upstream: Vec<(Multiaddr, Option<PeerId>)>,
    last_redial: Instant,
    records: HashMap<Hash, Arc<TransferRecord>>,
    outboards: OutboardCache,
    work_tx: mpsc::Sender<Work>,
    /// Opens data-plane streams.
    control: libp2p_stream::Control,
    /// The queue of each verified peer's data-plane writer task (see [`write_chunks`]).
    chunk_out: HashMap<PeerId, mpsc::Sender<ChunkOut>>,
    /// Accepts inbound data-plane streams; stopped with the node.
    accept_task: tokio::task::JoinHandle<()>,
    stats: Arc<NodeStats>,
    /// See [`Tuning::fault_tamper_serve`].
    fault_tamper_serve: bool,
}

/// Starts a node: opens storage, restores state, listens, dials upstream. Returns once the
/// listen addresses are known.
pub async fn start(setup: NodeSetup) -> Result<(NodeHandle, tokio::task::JoinHandle<Result<()>>)> {
    setup.tuning.validate()?;
    if setup.tuning.fault_tamper_serve {
        warn!(
            "FAULT INJECTION ON (BACKFLOW_FAULT_TAMPER_SERVE=1): this node serves chunk frames \
             with a flipped byte; receivers will reject them. Test use only."
        );
    }
    if let Some(path) = std::env::var_os("SSLKEYLOGFILE") {
        // rustls, as libp2p-tls and libp2p-quic configure it, logs TLS secrets to this file
        // (inbound TCP and all QUIC connections; the TCP dialer in tls.rs does not).
        warn!(
            path = %path.to_string_lossy(),
            "SSLKEYLOGFILE is set: the TLS session keys of this node's connections are written \
             to that file; unset it unless you are debugging"
        );
    }
    let identity = Arc::new(setup.identity);
    let store = Store::open(&setup.db_path)?;
    let keypair = keypair_from_signing_key(&identity.key);
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair)?;
    let mut control = swarm.behaviour().chunks.new_control();
    let incoming = control
        .accept(CHUNK_PROTOCOL)
        .map_err(|_| anyhow!("the chunk protocol is registered twice"))?;
    for addr in &setup.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }
    // Collect the actual listen addresses (port 0 resolves here).
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listen_addrs.len() < setup.listen.len() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .context("timed out waiting for listen addresses")?;
        if let SwarmEvent::NewListenAddr { address, .. } = ev {
            listen_addrs.push(address.with(Protocol::P2p(peer_id)));
        }
    }
    let now = now_ms();
    let mut trust = TrustStore::new(setup.anchor);
    // Our own chain must verify against the anchor, or no peer will accept us.
    let me = trust
        .verify_chain(&identity.chain, now)
        .map_err(|e| anyhow!("this node's certificate chain does not verify: {e}"))?;
    if me.region != identity.region || me.key != identity.key.verifying_key() {
        bail!(
            "this node's certificate is for {} with another key",
            me.region
        );
    }
    let mut rf_cfg = ReturnFlowConfig::new((*identity).clone());
    rf_cfg.retry_ms = setup.tuning.retry_ms;
    rf_cfg.source_silence_ms_max = setup.tuning.source_silence_ms_max;
    rf_cfg.groups_in_flight_max = setup.tuning.groups_in_flight_max;
    rf_cfg.receipt_interval_ms = setup.tuning.receipt_interval_ms;
    let mut rf = ReturnFlow::new(rf_cfg);
    let cs = restore_catalog(&store, identity.region, now)?;
    // Resume transfers: the persisted records plus whichever groups are on disk.
    let mut restored = 0;
    for (key, value) in store.scan_prefix(CF_STATE, TRANSFER_KEY_PREFIX, TRANSFER_RECORDS_MAX)? {
        let record: TransferRecord = match decode_exact(&value) {
            Ok(r) => r,
            Err(e) => {
                warn!(key = %String::from_utf8_lossy(&key), error = %e, "skipping unreadable transfer record");
                continue;
            }
        };
        let mut stored = Vec::new();
        if !record.published {
            for e in &record.entries {
                let groups = store.stored_groups(&e.content_hash)?;
                if !groups.is_empty() {
                    stored.push((e.region, to_ranges(&groups)));
                }
            }
        }
        match rf.restore(now, record, &stored) {
            Ok(h) => {
                restored += 1;
                // The descendants' receipts: the publisher's per-region view, kept as it was.
                let mut receipts = 0;
                for (_, value) in store.scan_prefix(CF_RECEIPTS, &h, RECEIPTS_PER_TRANSFER_MAX)? {
                    match decode_exact::<Receipt>(&value) {
                        Ok(r) if rf.restore_receipt(r.clone()) => receipts += 1,
                        Ok(r) => {
                            debug!(region = %r.region, "stored receipt no longer fits; skipped")
                        }
                        Err(e) => warn!(error = %e, "skipping an unreadable stored receipt"),
                    }
                }
                debug!(manifest = %hex(&h[..8]), receipts, "restored transfer");
            }
            Err(e) => warn!(error = %e, "could not restore a transfer"),
        }
    }
    if restored > 0 {
        info!(restored, "resumed transfers from storage");
    }
    let hello = encode_frame(&Message::Hello(Hello {
        chain: identity.chain.clone(),
    }))?;
    let upstream = setup
        .upstream
        .iter()
        .map(|a| {
            let peer = a.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            });
            (a.clone(), peer)
        })
        .collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
    let (work_tx, work_rx) = mpsc::channel(WORK_QUEUE_MAX);
    let accept_task = tokio::spawn(accept_chunks(incoming, work_tx.clone()));
    let mut rt = Runtime {
        swarm,
        store: store.clone(),
        trust,
        rf,
        cs,
        identity: Arc::clone(&identity),
        hello,
        regions: HashMap::new(),
        outbox: Outbox::default(),
        by_region: HashMap::new(),
        addrs: HashMap::new(),
        upstream,
        last_redial: Instant::now() - Duration::from_secs(3600),
        records: HashMap::new(),
        outboards: OutboardCache::default(),
        work_tx,
        control,
        chunk_out: HashMap::new(),
        accept_task,
        stats: Arc::default(),
        fault_tamper_serve: setup.tuning.fault_tamper_serve,
    };
    let stats = Arc::clone(&rt.stats);
    rt.redial();
    rt.drain();
    info!(region = %identity.region, peer = %peer_id, addrs = ?listen_addrs, "node started");
    let task = tokio::spawn(rt.run(cmd_rx, work_rx));
    Ok((
        NodeHandle {
            cmd: cmd_tx,
            stats,
            store,
            identity,
            peer_id,
            listen_addrs,
        },
        task,
    ))
}

fn restore_catalog(store: &Store, region: RegionCode, now: UnixMs) -> Result<CatalogSync> {
    let log_id = match store.get(CF_STATE, CATALOG_LOG_ID_KEY)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.try_into().expect("8 bytes")),
        _ => {
            // A fresh log: a new id tells the parent to restart its watermark for us.
            let id = now.0.max(1);
            store.put(CF_STATE, CATALOG_LOG_ID_KEY, &id.to_be_bytes())?;
            id
        }
    };
    let config = CatalogSyncConfig::new(region, log_id);
    let mut log = Vec::new();
    for (_, v) in store.scan_prefix(CF_CATALOG, CATALOG_LOG_PREFIX, usize::MAX)? {
        let update: SignedCatalogUpdate =
            decode_exact(&v).map_err(|e| anyhow!("corrupt catalog log entry: {e}"))?;
        log.push(Arc::new(update));
    }
    let mut watermarks = Vec::new();
    for (k, v) in store.scan_prefix(CF_CATALOG, CATALOG_WM_PREFIX, usize::MAX)? {
        let (sender, log_id, wm): (RegionCode, u64, u64) =
            decode_exact(&v).map_err(|e| anyhow!("corrupt catalog watermark {k:?}: {e}"))?;
        watermarks.push((sender, log_id, wm));
    }
    Ok(CatalogSync::restore(now, config, log, &watermarks)?)
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

/// Accepts inbound data-plane streams, one reader task each. Bounded by the muxer: at most
/// `STREAMS_PER_CONNECTION_MAX` streams per connection.
async fn accept_chunks(mut incoming: libp2p_stream::IncomingStreams, work: mpsc::Sender<Work>) {
    while let Some((peer, stream)) = incoming.next().await {
        tokio::spawn(read_chunks(peer, stream, work.clone()));
    }
}

/// Reads one inbound data-plane stream: chunk frames back to back, decoded here (off the event
/// loop) and handed to it. Waiting on a full work queue holds back the sender (backpressure).
/// Anything but a well-formed chunk frame closes the stream; frames from a peer that has not
/// verified are dropped by the event loop like any other.
async fn read_chunks(peer: PeerId, mut stream: libp2p::Stream, work: mpsc::Sender<Work>) {
    loop {
        // Each frame's buffer travels on with it (to the blocking pool, which verifies and
        // stores the payload where it lies) and comes back through the frame-buffer pool.
        let mut buf = frame_buf();
        let len = match read_frame_into(&mut stream, &mut buf).await {
            Ok(len) => len,
            Err(e) => {
                debug!(%peer, error = %e, "chunk stream ended");
                recycle_frame_buf(buf);
                return;
            }
        };
        match decode_chunk_frame(&buf[..len]) {
            Ok(frame) => {
                let chunk = ReceivedChunk { frame, buf };
                if work.send(Work::Chunk { peer, chunk }).await.is_err() {
                    return; // the node stopped
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "malformed chunk frame; closing the stream");
                return;
            }
        }
    }
}

/// Writes chunk frames to one peer over one data-plane stream, opened on first use and opened
/// again after an error. A frame that cannot be written is dropped: the receiver's state
/// machine asks for its groups again after `retry_ms`. Ends when the queue closes (the peer
/// disconnected or the node stopped).
async fn write_chunks(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut frames: mpsc::Receiver<ChunkOut>,
) {
    let mut stream: Option<libp2p::Stream> = None;
    while let Some(frame) = frames.recv().await {
        let s = match &mut stream {
            Some(s) => s,
            None => match control.open_stream(peer, CHUNK_PROTOCOL).await {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    debug!(%peer, error = %e, "cannot open a chunk stream; frame dropped");
                    continue;
                }
            },
        };
        let written = write_frame_parts(s, &[&frame.head, &frame.payload]).await;
        recycle_frame_buf(frame.payload);
        if let Err(e) = written {
            debug!(%peer, error = %e, "chunk stream failed; frame dropped");
            stream = None;
        }
    }
    if let Some(mut s) = stream {
        let _ = futures::AsyncWriteExt::close(&mut s).await;
    }
}

impl Runtime {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut work_rx: mpsc::Receiver<Work>,
    ) -> Result<()> {
        loop {
            let wait = self.next_wait();
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = cmd_rx.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => break,
                    Some(cmd) => self.on_cmd(cmd),
                },
                Some(work) = work_rx.recv() => self.on_work(work),
                _ = tokio::time::sleep(wait) => {
                    let now = now_ms();
                    self.rf.handle_tick(now);
                    self.cs.handle_tick(now);
                    self.redial();
                }
            }
            self.drain();
        }
        info!(region = %self.identity.region, "node shutting down");
        self.accept_task.abort();
        self.store.flush()?;
        Ok(())
    }

    fn next_wait(&self) -> Duration {
        let now = now_ms();
        let next = [self.rf.poll_timeout(), self.cs.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let ms = next.map_or(LOOP_WAIT_MS_MAX, |t| t.since_ms(now).min(LOOP_WAIT_MS_MAX));
        Duration::from_millis(ms)
    }

    fn redial(&mut self) {
        if self.last_redial.elapsed() < Duration::from_millis(REDIAL_INTERVAL_MS) {
            return;
        }
        self.last_redial = Instant::now();
        for (addr, peer) in &self.upstream {
            let connected = peer.is_some_and(|p| self.swarm.is_connected(&p));
            if !connected {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "dial failed");
                }
            }
        }
    }

    fn send_to_region(&mut self, to: RegionCode, bytes: Vec<u8>) {
        match self.by_region.get(&to) {
            Some(&peer) => self.send_control(peer, bytes),
            None => debug!(%to, "no verified connection to region; the protocol will retry"),
        }
    }

    /// Sends a control frame to `peer`, or queues it while the peer has its fill of requests
    /// in flight (see [`backflow_protocol::outbox`]).
    fn send_control(&mut self, peer: PeerId, bytes: Vec<u8>) {
        let frames = &mut self.swarm.behaviour_mut().frames;
        let dropped = self.outbox.dropped;
        self.outbox
            .offer(peer, bytes, |b| frames.send_request(&peer, b));
        if self.outbox.dropped > dropped {
            self.stats
                .control_frames_dropped
                .fetch_add(self.outbox.dropped - dropped, Ordering::Relaxed);
            debug!(%peer, "control queue full; the oldest queued frame was dropped");
        }
    }

    /// A control request to `peer` ended: the next queued frames go.
    fn control_completed(&mut self, peer: PeerId, id: request_response::OutboundRequestId) {
        let frames = &mut self.swarm.behaviour_mut().frames;
        self.outbox
            .completed(peer, id, |b| frames.send_request(&peer, b));
    }

    /// The data-plane queue to a verified region's peer; starts its writer task on first use.
    fn chunk_sender(&mut self, to: RegionCode) -> Option<mpsc::Sender<ChunkOut>> {
        let peer = *self.by_region.get(&to)?;
        let out = self.chunk_out.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(CHUNK_FRAMES_QUEUED_MAX);
            tokio::spawn(write_chunks(peer, self.control.clone(), rx));
            tx
        });
        Some(out.clone())
    }

    fn send_msg(&mut self, to: RegionCode, msg: Message) {
        match encode_frame(&msg) {
            Ok(bytes) => self.send_to_region(to, bytes),
            Err(e) => warn!(%to, error = %e, "could not encode a frame"),
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.addrs
                    .insert(peer_id, endpoint.get_remote_address().clone());
                // Both sides introduce themselves; each verifies the other's chain.
                let hello = self.hello.clone();
                self.send_control(peer_id, hello);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                self.stats
                    .connections_closed
                    .fetch_add(1, Ordering::Relaxed);
                if num_established > 0 {
                    debug!(peer = %peer_id, cause = ?cause, "a connection closed; others remain");
                    return;
                }
                self.addrs.remove(&peer_id);
                self.outbox.forget(peer_id);
                // Its writer task ends with its queue.
                self.chunk_out.remove(&peer_id);
                if let Some(region) = self.regions.remove(&peer_id) {
                    if self.by_region.get(&region) == Some(&peer_id) {
                        self.by_region.remove(&region);
                    }
                    info!(peer = %peer_id, %region, cause = ?cause, "peer disconnected");
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, error = %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Frames(ev)) => self.on_frames(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => {
                debug!(event = ?ev, "identify");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            _ => {}
        }
    }

    fn on_frames(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // Acknowledge at once: the protocol's own acks and retries carry meaning.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .frames
                        .send_response(channel, Vec::new());
                    self.on_frame(peer, &request);
                }
                request_response::Message::Response {
                    response,
                    request_id,
                } => {
                    self.control_completed(peer, request_id);
                    if !response.is_empty() {
                        self.on_frame(peer, &response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.control_completed(peer, request_id);
                debug!(%peer, %error, "request failed; the protocol will retry");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_frame(&mut self, peer: PeerId, bytes: &[u8]) {
        match decode_frame(bytes) {
            Ok(m) => self.on_message(peer, m),
            Err(e) => warn!(%peer, error = %e, "dropping malformed frame"),
        }
    }

    fn on_message(&mut self, peer: PeerId, msg: Message) {
        if let Message::Hello(hello) = msg {
            self.on_hello(peer, hello);
            return;
        }
        let Some(&from) = self.regions.get(&peer) else {
            debug!(%peer, "dropping a frame from an unverified peer");
            return;
        };
        let now = now_ms();
        match msg {
            Message::Hello(_) => {}
            Message::ReturnFlow(m) => self.rf.handle_message(now, &mut self.trust, from, m),
            Message::Catalog(m) => self.cs.handle_message(now, &mut self.trust, from, m),
            // A chunk frame on the control plane: handled like one on the data plane.
            Message::Chunk(frame) => self.on_chunk(from, frame.into()),
        }
    }

    /// Verifies a peer's certificate chain and its place in the tree; refuses with a reason.
    fn on_hello(&mut self, peer: PeerId, hello: Hello) {
        let me = self.identity.region;
        let verdict = (|| -> Result<RegionCode> {
            let id = self
                .trust
                .verify_chain(&hello.chain, now_ms())
                .map_err(|e| anyhow!("certificate chain does not verify: {e}"))?;
            let transport_peer = peer_id_of(&id.key)?;
            if transport_peer != peer || (!id.peer_id.is_empty() && id.peer_id != peer.to_bytes()) {
                bail!("certificate for {} belongs to another peer id", id.region);
            }
            let r = id.region;
            if r == me {
                bail!("peer claims this node's own region {r}");
            }
            if !(me.contains(r) || r.contains(me)) {
                bail!("region {r} is neither an ancestor nor a descendant of {me}");
            }
            Ok(r)
        })();
        match verdict {
            Ok(region) => {
                if self.regions.insert(peer, region).is_none() {
                    info!(%peer, %region, "peer verified");
                }
                self.by_region.insert(region, peer);
            }
            Err(reason) => {
                warn!(%peer, %reason, "refusing peer");
                self.regions.remove(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn on_chunk(&mut self, from: RegionCode, chunk: ReceivedChunk) {
        let ReceivedChunk {
            frame,
            buf: received,
        } = chunk;
        // The runs this node is receiving, each with the entry it must verify against; the
        // rest of the frame is dropped.
        let expected: Vec<(ChunkPart, PartitionEntry, Range<usize>)> = frame
            .parts_in_buffer()
            .filter_map(|(part, at)| {
                let entry = self.rf.expected_partition(&frame.manifest, part.region)?;
                Some((*part, entry, at))
            })
            .collect();
        if expected.is_empty() {
            debug!(%from, parts = frame.parts.len(), "dropping a chunk frame nobody asked for");
            recycle_frame_buf(received);
            return;
        }
        let manifest = frame.manifest;
        let store = self.store.clone();
        let tx = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let verdict = receive_frame(&store, &received, expected);
            recycle_frame_buf(received);
            if let Some(e) = verdict.failed {
                let _ = tx.blocking_send(Work::Failed(e));
            } else if !verdict.stored.is_empty() {
                let _ = tx.blocking_send(Work::Stored {
                    from,
                    manifest,
                    parts: verdict.stored,
                });
            }
            for (region, group, reason) in verdict.rejected {
                let _ = tx.blocking_send(Work::Rejected {
                    from,
                    manifest,
                    region,
                    group,
                    reason,
                });
            }
        });
    }

    fn on_work(&mut self, work: Work) {
        let now = now_ms();
        match work {
            Work::Stored {
                from,
                manifest,
                parts,
            } => {
                let groups: u64 = parts.iter().map(|(_, g)| g.end - g.start).sum();
                self.stats
                    .groups_stored
                    .fetch_add(groups, Ordering::Relaxed);
                self.rf.handle_groups_stored(now, from, &manifest, &parts)
            }
            Work::Rejected {
                from,
                manifest,
                region,
                group,
                reason,
            } => {
                self.stats.groups_rejected.fetch_add(1, Ordering::Relaxed);
                warn!(%from, %region, group, %reason, "chunk frame failed verification");
                self.rf
                    .handle_group_rejected(now, from, &manifest, region, group);
            }
            Work::Chunk { peer, chunk } => match self.regions.get(&peer) {
                Some(&from) => self.on_chunk(from, chunk),
                None => debug!(%peer, "dropping a chunk frame from an unverified peer"),
            },
            Work::Failed(e) => warn!(error = %e, "background work failed"),
        }
    }

    /// Carries out every pending output of both state machines.
    fn drain(&mut self) {
        while let Some(out) = self.rf.poll_output() {
            match out {
                Output::Send { to, msg } => self.send_msg(to, Message::ReturnFlow(msg)),
                Output::ServeChunks {
                    to,
                    manifest,
                    parts,
                } => {
                    let Some(queue) = self.chunk_sender(to) else {
                        debug!(%to, "no verified connection to region; the protocol will retry");
                        continue;
                    };
                    let groups: u64 = parts.iter().map(|p| p.groups.end - p.groups.start).sum();
                    self.stats
                        .groups_served
                        .fetch_add(groups, Ordering::Relaxed);
                    let store = self.store.clone();
                    let cache = self.outboards.clone();
                    let tx = self.work_tx.clone();
                    let tamper = self.fault_tamper_serve;
                    tokio::task::spawn_blocking(move || {
                        let (frame, failures) =
                            serve_frame(&store, &cache, manifest, &parts, tamper);
                        for failed in failures {
                            let _ = tx.blocking_send(Work::Failed(failed));
                        }
                        let Some(frame) = frame else {
                            return;
                        };
                        let out = match encode_chunk_frame_head(&frame) {
                            Ok(head) => ChunkOut {
                                head,
                                payload: frame.encoded,
                            },
                            Err(e) => {
                                let _ =
                                    tx.blocking_send(Work::Failed(format!("serving chunks: {e}")));
                                return;
                            }
                        };
                        // Straight to the peer's writer, not through the event loop. A closed
                        // queue means the peer left; the receiver will ask again.
                        if queue.blocking_send(out).is_err() {
                            debug!(%to, "peer gone; served frame dropped");
                        }
                    });
                }
                Output::Storage(op) => {
                    if let Err(e) = self.apply_storage(op) {
                        // Durability failed: stop rather than acknowledge what is not stored.
                        panic!("storage failure: {e:#}");
                    }
                }
                Output::Event(ev) => self.on_rf_event(ev),
            }
        }
        while let Some(out) = self.cs.poll_output() {
            match out {
                CatalogOutput::Send { to, msg } => self.send_msg(to, Message::Catalog(msg)),
                CatalogOutput::Storage(op) => {
                    let r = match op {
                        CatalogStorageOp::AppendLog { index, update } => {
                            let mut key = CATALOG_LOG_PREFIX.to_vec();
                            key.extend_from_slice(&index.to_be_bytes());
                            encode_value(&*update)
                                .map_err(|e| anyhow!("{e}"))
                                .and_then(|v| self.store.put(CF_CATALOG, &key, &v))
                        }
                        CatalogStorageOp::PutWatermark {
                            sender,
                            log_id,
                            watermark,
                        } => {
                            let mut key = CATALOG_WM_PREFIX.to_vec();
                            key.extend_from_slice(&region_key(sender));
                            encode_value(&(sender, log_id, watermark))
                                .map_err(|e| anyhow!("{e}"))
                                .and_then(|v| self.store.put(CF_CATALOG, &key, &v))
                        }
                    };
                    if let Err(e) = r {
                        panic!("storage failure: {e:#}");
                    }
                }
                CatalogOutput::Event(ev) => match ev {
                    CatalogEvent::Applied { origin, seq, from } => {
                        info!(origin = %origin.region, department = %origin.department, seq, %from, "catalog version applied");
                    }
                    CatalogEvent::Rejected {
                        from,
                        origin,
                        error,
                    } => {
                        warn!(%from, origin = ?origin, %error, "catalog version rejected");
                    }
                    other => debug!(event = ?other, "catalog"),
                },
            }
        }
    }

    fn apply_storage(&mut self, op: StorageOp) -> Result<()> {
        match op {
            StorageOp::PutTransfer(record) => {
                let hash = record.manifest.manifest.hash();
                let mut key = TRANSFER_KEY_PREFIX.to_vec();
                key.extend_from_slice(&hash);
                let value = encode_value(&*record).map_err(|e| anyhow!("{e}"))?;
                self.store.put(CF_STATE, &key, &value)?;
                self.records.insert(hash, record);
            }
            StorageOp::PutReceipt { manifest, receipt } => {
                let value = encode_value(&receipt).map_err(|e| anyhow!("{e}"))?;
                self.store
                    .put(CF_RECEIPTS, &receipt_key(&manifest, receipt.region), &value)?;
            }
            StorageOp::DropTransfer { manifest } => {
                let mut key = TRANSFER_KEY_PREFIX.to_vec();
                key.extend_from_slice(&manifest);
                let old = self.records.remove(&manifest);
                self.store.delete(CF_STATE, &key)?;
                let mut batch = self.store.batch();
                for (k, _) in
                    self.store
                        .scan_prefix(CF_RECEIPTS, &manifest, RECEIPTS_PER_TRANSFER_MAX)?
                {
                    batch.delete(CF_RECEIPTS, &k);
                }
                self.store.write(batch)?;
                if let Some(old) = old {
                    // Content-addressed chunks: keep any partition another transfer still uses.
                    let live: std::collections::HashSet<Hash> = self
                        .records
                        .values()
                        .flat_map(|r| r.entries.iter().map(|e| e.content_hash))
                        .collect();
                    for e in old
                        .entries
                        .iter()
                        .filter(|e| !live.contains(&e.content_hash))
                    {
                        self.store.delete_content(&e.content_hash, e.bytes)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_rf_event(&mut self, ev: Event) {
        match ev {
            Event::ManifestAccepted {
                dataset,
                version,
                from,
                ..
            } => info!(%dataset, version, %from, "manifest accepted"),
            Event::ManifestRejected { from, error } => warn!(%from, %error, "manifest rejected"),
            Event::PartitionComplete { region, .. } => debug!(%region, "partition complete"),
            Event::TransferComplete { manifest } => {
                let name = self
                    .records
                    .get(&manifest)
                    .map(|r| r.manifest.manifest.dataset.clone())
                    .unwrap_or_default();
                info!(dataset = %name, manifest = %hex(&manifest[..8]), "all partitions of this subtree stored and verified");
            }
            Event::SourceChanged { from, to, .. } => {
                warn!(%from, %to, "switching source (skip-level fallback)")
            }
            Event::ChunkRejected {
                region,
                group,
                from,
                ..
            } => warn!(%region, group, %from, "chunk rejected"),
            Event::WantRefused { from, region, .. } => {
                warn!(%from, %region, "refused a request for a partition outside the requester's region")
            }
            Event::ReceiptRejected { from, error } => warn!(%from, %error, "receipt rejected"),
            Event::Completeness(r) => {
                // Derived from the transfer and the descendants' receipts (persisted through
                // `StorageOp::PutReceipt`), so not stored itself.
                debug!(region = %r.region, delivered = r.regions_delivered, expected = r.regions_expected, "completeness");
            }
            Event::TransferExpired { manifest } => {
                warn!(manifest = %hex(&manifest[..8]), "manifest expired before a newer version arrived")
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = now_ms();
        match cmd {
            Cmd::Held { reply } => {
                let held = self.rf.held().map(|(d, h)| (d.to_string(), *h)).collect();
                let _ = reply.send(held);
            }
            Cmd::Publish { manifests, reply } => {
                let mut hashes = Vec::new();
                let mut result = Ok(());
                for (manifest, entries) in manifests {
                    match self.rf.publish(now, &mut self.trust, manifest, entries) {
                        Ok(h) => hashes.push(h),
                        Err(e) => {
                            result = Err(anyhow!("publish refused: {e}"));
                            break;
                        }
                    }
                }
                let _ = reply.send(result.map(|()| hashes));
            }
            Cmd::Status { dataset, reply } => {
                let _ = reply.send(self.status(dataset.as_deref()));
            }
            Cmd::Record {
                dataset,
                version,
                reply,
            } => {
                let r = (|| {
                    let held: Vec<(String, HeldVersion)> = self
                        .rf
                        .held()
                        .filter(|(d, _)| crate::publish::name_matches(d, &dataset))
                        .map(|(d, h)| (d.to_string(), *h))
                        .collect();
                    if held.is_empty() {
                        bail!("dataset {dataset:?} is not held here");
                    }
                    let mut out = Vec::new();
                    for (name, held) in held {
                        if let Some(v) = version {
                            if v != held.version {
                                bail!(
                                    "version {v} of {name:?} is not held here (held: {})",
                                    held.version
                                );
                            }
                        }
                        let rec = self
                            .records
                            .get(&held.hash)
                            .ok_or_else(|| anyhow!("no transfer record for {name:?}"))?;
                        if !self.rf.is_complete(&held.hash) && !rec.published {
                            bail!(
                                "version {} of {name:?} is still arriving; try again when `status` shows it complete",
                                held.version
                            );
                        }
                        out.push((held.hash, Arc::clone(rec)));
                    }
                    Ok(out)
                })();
                let _ = reply.send(r);
            }
            Cmd::CatalogSubmit {
                department,
                entries,
                reply,
            } => {
                let _ = reply.send(self.catalog_submit(now, department, entries));
            }
            Cmd::Catalogs { reply } => {
                let views = self
                    .cs
                    .catalogs()
                    .map(|c| CatalogView {
                        region: c.origin.region.to_string(),
                        department: c.origin.department.clone(),
                        seq: c.seq,
                        entries: c.entries.values().cloned().collect(),
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Cmd::Peers { reply } => {
                let v = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerView {
                        peer: p.to_string(),
                        region: self.regions.get(p).map(|r| r.to_string()),
                        addr: self.addrs.get(p).map(|a| a.to_string()),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            Cmd::Shutdown => {}
        }
    }

    fn catalog_submit(
        &mut self,
        now: UnixMs,
        department: String,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64> {
        let origin = CatalogOrigin {
            region: self.identity.region,
            department,
        };
        let existing = self.cs.catalog(&origin);
        let changes = entries
            .into_iter()
            .map(|e| {
                let e = Arc::new(e);
                if existing.is_some_and(|c| c.entries.contains_key(&e.id)) {
                    CatalogChange::Update(e)
                } else {
                    CatalogChange::Add(e)
                }
            })
            .collect();
        let seq = self.cs.next_seq(&origin);
        let update = CatalogUpdate {
            origin,
            seq,
            issued_at: now,
            changes,
        };
        let signed = SignedCatalogUpdate::sign(update, &self.identity)?;
        self.cs.submit(now, &mut self.trust, signed)?;
        Ok(seq)
    }

    fn status(&self, dataset: Option<&str>) -> Vec<DatasetStatus> {
        let topo = Topology::china();
        let me = self.identity.region;
        let mut out = Vec::new();
        for (name, held) in self.rf.held() {
            if dataset.is_some_and(|d| !crate::publish::name_matches(name, d)) {
                continue;
            }
            let Some(rec) = self.records.get(&held.hash) else {
                continue;
            };
            let m = &rec.manifest.manifest;
            let agg = self.rf.completeness(&held.hash);
            let receipts: BTreeMap<RegionCode, Receipt> = self
                .rf
                .receipts(&held.hash)
                .into_iter()
                .map(|r| (r.region, r))
                .collect();
            let mut children = Vec::new();
            for &child in topo.children(me) {
                let under: Vec<_> = rec
                    .entries
                    .iter()
                    .filter(|e| child.contains(e.region))
                    .collect();
                if under.is_empty() {
                    continue;
                }
                // The child's own receipt, or (skip-level) the outermost receipts below it.
                let counted: Vec<&Receipt> = match receipts.get(&child) {
                    Some(r) => vec![r],
                    None => receipts
                        .values()
                        .filter(|r| {
                            child.contains(r.region)
                                && !r
                                    .region
                                    .ancestors()
                                    .take_while(|a| *a != child)
                                    .any(|a| receipts.contains_key(&a))
                        })
                        .collect(),
                };
                let regions_delivered: u64 =
                    counted.iter().map(|r| r.regions_delivered as u64).sum();
                let records_delivered = counted.iter().map(|r| r.records_delivered).sum();
                let bytes_delivered = counted.iter().map(|r| r.bytes_delivered).sum();
                let expected = under.len() as u64;
                let state = if regions_delivered >= expected {
                    "complete"
                } else if regions_delivered > 0 || !counted.is_empty() {
                    "partial"
                } else {
                    "pending"
                };
                children.push(ChildStatus {
                    region: child.to_string(),
                    name: topo.get(child).map_or(String::new(), |r| r.name.clone()),
                    state,
                    regions_expected: expected,
                    regions_delivered,
                    records_expected: under.iter().map(|e| e.records).sum(),
                    records_delivered,
                    bytes_expected: under.iter().map(|e| e.bytes).sum(),
                    bytes_delivered,
                    last_receipt_at: counted.iter().map(|r| r.at.0).max(),
                });
            }
            let (regions_expected, regions_delivered, records_delivered, bytes_delivered) =
                agg.as_ref().map_or((0, 0, 0, 0), |r| {
                    (
                        r.regions_expected as u64,
                        r.regions_delivered as u64,
                        r.records_delivered,
                        r.bytes_delivered,
                    )
                });
            out.push(DatasetStatus {
                dataset: name.to_string(),
                version: held.version,
                manifest: hex(&held.hash),
                publisher: m.publisher.region.to_string(),
                published_here: rec.published,
                held_complete: rec.published || self.rf.is_complete(&held.hash),
                partitions_here: rec.entries.len() as u64,
                records_here: rec.entries.iter().map(|e| e.records).sum(),
                bytes_here: rec.entries.iter().map(|e| e.bytes).sum(),
                regions_expected,
                regions_delivered,
                records_delivered,
                bytes_delivered,
                complete: regions_expected > 0 && regions_delivered >= regions_expected,
                children,
            });
        }
        out
    }
}
