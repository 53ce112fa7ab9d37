//! Starting a node: open storage, build the protocol [`Endpoint`] from what was persisted,
//! listen, dial upstream, and hand the event loop ([`crate::runtime`]) to tokio.
//!
//! How the rooms divide the node: `runtime` is the event loop (feeds the endpoint, carries out
//! its outputs); `dataplane` moves chunk frames on their own streams and runs verification and
//! serving on the blocking pool; `persist` is the endpoint's storage in RocksDB; `status` the
//! views the CLI and API show; `handle` the command interface to a running node. Control
//! plane and data plane stay apart: control frames travel by request-response through the
//! swarm and the loop; chunk frames never wait behind them. The endpoint's flow control
//! (`groups_in_flight_max`) bounds how much data-plane work can be outstanding.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use backflow_protocol::calendar::WorkingCalendar;
use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::endpoint::EndpointConfig;
use backflow_protocol::outbox::Outbox;
use backflow_protocol::return_flow::DataRouting;
use backflow_protocol::Endpoint;
use ed25519_dalek::VerifyingKey;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::chunks::OutboardCache;
use crate::dataplane::{accept_chunks, Admitted, DataPlane};
use crate::net::{build_swarm, keypair_from_signing_key, CHUNK_PROTOCOL};
use crate::runtime::{encode_hello, Runtime};
use crate::store::Store;

pub use crate::catalog_store::CatalogView;
pub use crate::clock::now_ms;
pub use crate::handle::{DatasetQuery, HeldRecords, NodeHandle, NodeStats};
pub use crate::net::peer_id_of;
pub use crate::status::{ChildStatus, DatasetStatus, PeerView, RevocationView};
pub use backflow_protocol::tuning::Tuning;

/// Commands queued to the event loop. Bounded: callers wait rather than pile up.
const COMMAND_QUEUE_MAX: usize = 256;
/// Results of blocking work queued back to the loop.
const WORK_QUEUE_MAX: usize = 4_096;
/// Listen addresses must resolve within this time at start.
const LISTEN_WAIT_MS_MAX: u64 = 10_000;

/// Everything needed to start a node.
pub struct NodeSetup {
    pub identity: NodeIdentity,
    pub anchor: VerifyingKey,
    pub db_path: PathBuf,
    pub listen: Vec<Multiaddr>,
    /// Parent first, then further ancestors (skip-level fallback); each with `/p2p/<id>`.
    pub upstream: Vec<Multiaddr>,
    pub tuning: Tuning,
    /// The working-day calendar: the official years plus the operator's
    /// ([`crate::calendar_files::load`]).
    pub calendar: WorkingCalendar,
    /// Fault injection for the multi-host tests: serve chunk frames with one byte flipped.
    /// Set only from the environment (`BACKFLOW_FAULT_TAMPER_SERVE=1`), never from a config
    /// file, announced with a warning at start, and refused by a build without the
    /// `fault-injection` feature ([`crate::faults`]).
    pub fault_tamper_serve: bool,
}

/// Starts a node: opens storage, restores state, listens, dials upstream. Returns once the
/// listen addresses are known.
pub async fn start(setup: NodeSetup) -> Result<(NodeHandle, tokio::task::JoinHandle<Result<()>>)> {
    setup.tuning.validate()?;
    if setup.fault_tamper_serve && !crate::faults::FAULT_INJECTION {
        bail!("fault injection asked for, but this build has no fault-injection feature");
    }
    if setup.fault_tamper_serve {
        warn!(
            "FAULT INJECTION ON (BACKFLOW_FAULT_TAMPER_SERVE=1): this node serves chunk frames \
             with a flipped byte; receivers will reject them. Test use only."
        );
    }
    if let Some(path) =
        std::env::var_os("SSLKEYLOGFILE").filter(|_| crate::faults::key_log_allowed())
    {
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
    let search = crate::catalog_search::CatalogSearch::start(store.clone(), &setup.db_path)?;
    let keypair = keypair_from_signing_key(&identity.key);
    let peer_id = keypair.public().to_peer_id();
    let relay = crate::relay::RelayState::default();
    let mut swarm = build_swarm(keypair, &relay.admission)?;
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
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LISTEN_WAIT_MS_MAX);
    while listen_addrs.len() < setup.listen.len() {
        let ev =
            tokio::time::timeout_at(deadline, futures::StreamExt::select_next_some(&mut swarm))
                .await
                .context("timed out waiting for listen addresses")?;
        if let SwarmEvent::NewListenAddr { address, .. } = ev {
            crate::net::listen_addr_added(&mut swarm, &address);
            listen_addrs.push(address.with(Protocol::P2p(peer_id)));
        }
    }
    let now = now_ms();
    let config = EndpointConfig {
        identity: (*identity).clone(),
        trust: TrustStore::new(setup.anchor),
        tuning: setup.tuning.clone(),
        routing: DataRouting::tree(),
        catalog_log_id: crate::persist::catalog_log_id(&store, now)?,
    };
    let saved = crate::persist::load(&store, identity.region)?;
    let (mut ep, report) = Endpoint::new(now, config, saved)?;
    ep.set_calendar(setup.calendar.clone());
    for (dataset, error) in &report.failed {
        warn!(%dataset, %error, "could not restore a transfer");
    }
    if report.transfers > 0 {
        info!(
            restored = report.transfers,
            receipts = report.receipts,
            "resumed transfers from storage"
        );
    }
    if report.receipts_skipped > 0 {
        debug!(
            skipped = report.receipts_skipped,
            "stored receipts that no longer fit their transfer"
        );
    }
    let hello = encode_hello(&ep)?;
    // Upstream nodes are dialled at their address alone: a `/p2p/<id>` in the configuration
    // is dropped, so a parent that rotated its key (a new peer id) is still reached. Who
    // answers is decided by admission (its chain, its key bound to the transport, its region
    // an ancestor), not by the id pinned in a config file.
    let upstream = setup
        .upstream
        .iter()
        .map(|a| (crate::net::without_peer_id(a), None))
        .collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
    let (work_tx, work_rx) = mpsc::channel(WORK_QUEUE_MAX);
    let admitted = Admitted::default();
    let accept_task = tokio::spawn(accept_chunks(incoming, work_tx.clone(), admitted.clone()));
    let mut rt = Runtime {
        swarm,
        store: store.clone(),
        search: search.clone(),
        catalog_log_len: 0,
        searches: HashMap::new(),
        service_calls: HashMap::new(),
        ep,
        hello,
        outbox: Outbox::default(),
        addrs: HashMap::new(),
        upstream,
        last_redial: Instant::now() - Duration::from_secs(3600),
        records: HashMap::new(),
        ledger: crate::ledger_seal::open_ledger(
            &store,
            identity.region,
            &identity.key.verifying_key(),
        )?,
        ledger_head_sent: None,
        parent_head_asked: None,
        ledger_retention_ms: setup.tuning.ledger_retention_days * backflow_protocol::time::DAY_MS,
        ledger_pruned_at: None,
        ledger_alarms: HashMap::new(),
        inspections_waiting: HashMap::new(),
        data: DataPlane {
            store: store.clone(),
            outboards: OutboardCache::default(),
            work: work_tx,
            tamper: setup.fault_tamper_serve,
            admitted,
            encoding: Default::default(),
        },
        control,
        chunk_out: HashMap::new(),
        accept_task,
        stats: Arc::default(),
        unsynced: false,
        scrub: Default::default(),
        recent_drops: Default::default(),
        relay,
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
            search,
            identity,
            peer_id,
            listen_addrs,
        },
        task,
    ))
}
