//! Adapter: each simulated node runs `backflow_protocol`'s own [`ReturnFlow`] and
//! [`CatalogSync`] state machines, with a shell that plays the parts the real node's IO
//! shell plays — minus the bytes:
//!
//! - **Chunk data by size and hash.** `Output::ServeChunks` becomes a [`ProtoMsg::Chunk`]
//!   carrying each run's groups, its exact encoded length and the partition's content hash
//!   instead of a bao-encoded frame (one frame may carry the runs of many small partitions). The receiving shell "verifies" it by checking that the content hash
//!   matches the entry the state machine expects (`expected_partition`) — a frame cut from
//!   other content would fail bao verification the same way — then calls
//!   `handle_groups_stored` or `handle_group_rejected`, exactly as the node does.
//! - **Storage in memory.** `StorageOp`s and `CatalogStorageOp`s go to a per-node durable store
//!   (transfer records, stored group ranges, catalog log and watermarks). A crash discards the
//!   state machines; a restart rebuilds them with `restore` from the durable store, as the
//!   node does from RocksDB.
//! - **One trust store per province subtree.** A `TrustStore` holds the anchor, revocations
//!   (none in these scenarios) and a memo of signatures that verified — a pure function of
//!   (key, message, signature). Sharing it within a province means a signature relayed to
//!   every node there (the manifest, common certificate chains) is checked once per province
//!   instead of once per node; every receipt and catalog update is still verified, and a bad
//!   signature still fails everywhere.
//! - **Control plane and CPU are the engine's.** Every `Send` goes through the engine's model
//!   of the node's shell ([`crate::shell`]): the per-peer outbox, the stream limit, the CPU the
//!   message costs at both ends. The adapter only declares state-machine work the engine
//!   cannot size: installing a transfer (per partition) and aggregating a receipt (per
//!   partition of the transfer).
//! - **Crypto is real.** Every node has its own ed25519 key (derived from the seed) and a
//!   certificate chain from the national anchor; manifests, receipts and catalog updates are
//!   signed and verified by the protocol code.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, SharingAttribute, SharingMethod, SignedCatalogUpdate, UpdateFrequency,
};
use backflow_protocol::catalog_sync::{
    CatalogEvent, CatalogMsg, CatalogOutput, CatalogStorageOp, CatalogSync, CatalogSyncConfig,
};
use backflow_protocol::cert::{CertRequest, Certificate, NodeIdentity, TrustStore};
use backflow_protocol::manifest::{
    build_manifest, Hash, PartitionEntry, Schema, SchemaField, SignedManifest, CHUNK_GROUP_BYTES,
};
use backflow_protocol::return_flow::{
    DataRouting, Event, Output, ReturnFlow, ReturnFlowConfig, ReturnFlowMsg, StorageOp,
    TransferRecord,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::encoded_len;
use backflow_topology::{Level, RegionCode, Topology};
use ed25519_dalek::SigningKey;

use crate::dataset::Layout;
use crate::engine::{Ctx, Micros, Observation, SimNode, Wire, MICROS_PER_MS};
use crate::scenario::{Held, Inspect, Routing, RunConfig};
use crate::shell::Plane;

/// Simulated time zero: 2026-01-01T00:00:00Z. Certificates and manifests are valid around it.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// Frame envelope: version tag, message tag, lengths.
const FRAME_HEADER_BYTES: u64 = 8;
/// Chunk frame header (manifest hash, region, group range) and bao parent hashes per group.
const CHUNK_HEADER_BYTES: u64 = 64;
/// The department whose catalog changes in the churn scenario, and the publishing one.
const CHURN_DEPARTMENT: &str = "civil-affairs";
const PUBLISHER_DEPARTMENT: &str = "statistics";

/// What travels between simulated nodes.
#[derive(Clone, Debug)]
pub enum ProtoMsg {
    ReturnFlow(ReturnFlowMsg),
    Catalog(CatalogMsg),
    /// A chunk frame, by size and hash (see the module docs): runs of one or more partitions.
    Chunk {
        manifest: Hash,
        parts: Vec<SimPart>,
    },
}

/// One partition's run in a simulated chunk frame.
#[derive(Clone, Debug)]
pub struct SimPart {
    region: RegionCode,
    groups: Range<u64>,
    content_hash: Hash,
    /// The exact bao encoding length the real frame would carry (data and parent hashes).
    encoded_len: u64,
}

/// Per-part bytes of a chunk frame's head (region, first group, count, length as varints).
const CHUNK_PART_HEADER_BYTES: u64 = 24;

impl Wire for ProtoMsg {
    fn wire_bytes(&self) -> u64 {
        match self {
            ProtoMsg::ReturnFlow(m) => FRAME_HEADER_BYTES + encoded_len(m) as u64,
            ProtoMsg::Catalog(m) => FRAME_HEADER_BYTES + encoded_len(m) as u64,
            ProtoMsg::Chunk { parts, .. } => {
                FRAME_HEADER_BYTES
                    + CHUNK_HEADER_BYTES
                    + parts
                        .iter()
                        .map(|p| CHUNK_PART_HEADER_BYTES + p.encoded_len)
                        .sum::<u64>()
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ProtoMsg::ReturnFlow(m) => match m {
                ReturnFlowMsg::Announce(_) => "announce",
                ReturnFlowMsg::AnnounceAck { .. } => "announce_ack",
                ReturnFlowMsg::Want { .. } => "want",
                ReturnFlowMsg::NotAvailable { .. } => "not_available",
                ReturnFlowMsg::Receipt(_) => "receipt",
                ReturnFlowMsg::ReceiptAck { .. } => "receipt_ack",
            },
            ProtoMsg::Catalog(m) => match m {
                CatalogMsg::Probe { .. } => "catalog_probe",
                CatalogMsg::Updates { .. } => "catalog_updates",
                CatalogMsg::Ack { .. } => "catalog_ack",
            },
            ProtoMsg::Chunk { .. } => "chunk",
        }
    }

    fn plane(&self) -> Plane {
        match self {
            ProtoMsg::Chunk { parts, .. } => Plane::Chunk {
                // What the pool reads, hashes and copies: the encoding, parent hashes included.
                payload_bytes: parts.iter().map(|p| p.encoded_len).sum(),
                runs: parts.len() as u32,
            },
            // A manifest's signature is checked by every receiver (the node's trust store
            // memoises per node); each receipt is signed by its sender for its receiver.
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Announce(_)) => Plane::Control {
                verifies: 1,
                signs: 0,
            },
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Receipt(_)) => Plane::Control {
                verifies: 1,
                signs: 1,
            },
            ProtoMsg::Catalog(CatalogMsg::Updates { updates, .. }) => Plane::Control {
                verifies: updates.len() as u32,
                signs: 0,
            },
            ProtoMsg::ReturnFlow(_) | ProtoMsg::Catalog(_) => Plane::Control {
                verifies: 0,
                signs: 0,
            },
        }
    }

    fn partitions(&self, out: &mut Vec<RegionCode>) {
        match self {
            ProtoMsg::Chunk { parts, .. } => out.extend(parts.iter().map(|p| p.region)),
            // Announces list partition entries (metadata): hold them to the same rule.
            ProtoMsg::ReturnFlow(ReturnFlowMsg::Announce(a)) => {
                out.extend(a.entries.iter().map(|e| e.region))
            }
            _ => {}
        }
    }
}

/// A signed manifest and the partition entries it covers, as the publisher hands them over.
type Publication = (SignedManifest, Vec<PartitionEntry>);

/// Read-only data shared by all nodes of a run.
pub struct Shared {
    /// Every manifest of the run's dataset: (scope, hash). One, unless the protocol refused a
    /// manifest that large and it was split by region (see `build_nodes`).
    manifests: Vec<(RegionCode, Hash)>,
    rf_retry_ms: u64,
    rf_silence_ms: u64,
    rf_groups_in_flight_max: u64,
    rf_receipt_interval_ms: u64,
    /// Data-plane routing, the same on every node (as the protocol requires).
    rf_routing: DataRouting,
    /// Timers beyond this are not scheduled (the run ends before; e.g. manifest expiry).
    timer_cap_us: Micros,
}

/// One simulated node: the protocol's state machines plus an in-memory shell.
pub struct ProtoNode {
    shared: Arc<Shared>,
    me: RegionCode,
    identity: NodeIdentity,
    trust: Rc<RefCell<TrustStore>>,
    rf: ReturnFlow,
    cat: CatalogSync,
    /// Publisher only: what to publish at start.
    to_publish: Vec<Publication>,
    /// Publisher only: manifests whose receipts cover their whole scope.
    manifests_complete: std::collections::BTreeSet<Hash>,
    // Durable store (survives crashes).
    records: BTreeMap<Hash, Arc<TransferRecord>>,
    stored: BTreeMap<RegionCode, Vec<Range<u64>>>,
    stored_bytes: u64,
    cat_log: Vec<Arc<SignedCatalogUpdate>>,
    cat_watermarks: BTreeMap<RegionCode, (u64, u64)>,
    /// Catalog churn: times of this node's local changes still to make, latest first.
    pending_changes: Vec<Micros>,
    /// National only: catalog versions applied from the churn department.
    churn_applied: u64,
}

fn rf_config(identity: NodeIdentity, shared: &Shared) -> ReturnFlowConfig {
    let mut c = ReturnFlowConfig::new(identity);
    c.retry_ms = shared.rf_retry_ms;
    c.source_silence_ms_max = shared.rf_silence_ms;
    c.groups_in_flight_max = shared.rf_groups_in_flight_max;
    c.receipt_interval_ms = shared.rf_receipt_interval_ms;
    c.routing = shared.rf_routing.clone();
    c
}

fn cat_config(me: RegionCode, shared: &Shared) -> CatalogSyncConfig {
    let mut c = CatalogSyncConfig::new(me, 1);
    // Strict tree: catalogs, too, wait for the parent rather than skip a level.
    c.upstream_silence_ms_max = shared.rf_silence_ms.max(c.upstream_silence_ms_max);
    c
}

fn now_ms(us: Micros) -> UnixMs {
    UnixMs(EPOCH_MS + us / MICROS_PER_MS)
}

/// Bytes of groups `r` of a partition of `bytes` bytes.
fn range_bytes(bytes: u64, r: &Range<u64>) -> u64 {
    (r.end * CHUNK_GROUP_BYTES)
        .min(bytes)
        .saturating_sub(r.start * CHUNK_GROUP_BYTES)
}

/// Inserts `r` into a sorted, merged range list; returns the groups newly covered as ranges.
fn insert_range(list: &mut Vec<Range<u64>>, r: Range<u64>) -> Vec<Range<u64>> {
    let mut new = Vec::new();
    let mut cur = r.start;
    for have in list.iter() {
        if have.end <= cur {
            continue;
        }
        if have.start >= r.end {
            break;
        }
        if have.start > cur {
            new.push(cur..have.start.min(r.end));
        }
        cur = cur.max(have.end);
        if cur >= r.end {
            break;
        }
    }
    if cur < r.end {
        new.push(cur..r.end);
    }
    list.push(r);
    list.sort_unstable_by_key(|x| x.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(list.len());
    for x in list.drain(..) {
        match merged.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => merged.push(x),
        }
    }
    *list = merged;
    new
}

fn churn_update(me: RegionCode, seq: u64, now: UnixMs) -> CatalogUpdate {
    let entry = CatalogEntry {
        id: format!("households-{me}"),
        name: "Registered households".to_string(),
        data_items: vec![DataItem {
            name: "household_id".to_string(),
            data_type: DataType::Text,
            description: "Household register number".to_string(),
        }],
        provider: CHURN_DEPARTMENT.to_string(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "population".to_string(),
        grade: DataGrade::General,
    };
    CatalogUpdate {
        origin: CatalogOrigin {
            region: me,
            department: CHURN_DEPARTMENT.to_string(),
        },
        seq,
        issued_at: now,
        changes: vec![if seq == 1 {
            CatalogChange::Add(Arc::new(entry))
        } else {
            CatalogChange::Update(Arc::new(entry))
        }],
    }
}

/// Builds one node per region: keys from the seed, certificates from the national anchor
/// down, and (at the publisher) the signed manifest of the dataset.
pub fn build_nodes(
    topo: &Topology,
    layout: &Layout,
    config: &RunConfig,
    churn: &[(RegionCode, Micros)],
) -> Result<Vec<ProtoNode>, String> {
    let codes = topo.codes();
    let key_for = |code: RegionCode| {
        let mut h = blake3::Hasher::new();
        h.update(b"backflow-simnet/node-key/v1");
        h.update(&config.seed.to_le_bytes());
        h.update(&code.digits().to_le_bytes());
        h.update(&[code.level().depth()]);
        SigningKey::from_bytes(h.finalize().as_bytes())
    };
    let not_before = UnixMs(EPOCH_MS - DAY_MS);
    let not_after = UnixMs(EPOCH_MS + 365 * DAY_MS);
    // Keys and certificates are independent per node, so they are made on all cores (setup
    // only; the event loop stays single-threaded). Results land by index: deterministic.
    let parents: Vec<Option<usize>> = codes
        .iter()
        .map(|c| c.parent().and_then(|p| codes.binary_search(&p).ok()))
        .collect();
    if let Some(orphan) = (1..codes.len()).find(|&i| parents[i].is_none()) {
        return Err(format!(
            "region {} has no parent in the topology",
            codes[orphan]
        ));
    }
    let keys: Vec<SigningKey> = par_map(codes.len(), |i| key_for(codes[i]));
    let certs: Vec<Option<Result<Certificate, String>>> = par_map(codes.len(), |i| {
        parents[i].map(|pi| {
            Certificate::issue(
                codes[pi],
                &keys[pi],
                CertRequest {
                    subject: codes[i],
                    subject_key: keys[i].verifying_key(),
                    peer_id: Vec::new(),
                    not_before,
                    not_after,
                    serial: i as u64,
                },
            )
            .map_err(|e| format!("certifying {}: {e}", codes[i]))
        })
    });
    let mut identities: Vec<NodeIdentity> = Vec::with_capacity(codes.len());
    for (i, cert) in certs.into_iter().enumerate() {
        let id = match (parents[i], cert) {
            (Some(pi), Some(cert)) => {
                let mut chain = identities[pi].chain.clone();
                chain.push(cert?);
                NodeIdentity {
                    region: codes[i],
                    key: keys[i].clone(),
                    chain,
                }
            }
            _ => NodeIdentity::national(keys[i].clone()),
        };
        identities.push(id);
    }
    let anchor = identities[0].key.verifying_key();

    // (publisher index, [(signed manifest, entries)]) and every manifest's (scope, hash).
    let mut to_publish: Option<(usize, Vec<Publication>)> = None;
    let mut manifests: Vec<(RegionCode, Hash)> = Vec::new();
    if let Some(publisher) = config.publisher {
        let schema = Schema {
            header: b"village,payload\n".to_vec(),
            name: "simnet-records".to_string(),
            fields: vec![
                SchemaField {
                    name: "village".to_string(),
                    data_type: DataType::RegionCode,
                },
                SchemaField {
                    name: "payload".to_string(),
                    data_type: DataType::Binary,
                },
            ],
        };
        let schema_hash = schema.hash();
        let entry_of = |i: usize, c: RegionCode| PartitionEntry {
            region: c,
            content_hash: layout.parts[i].hash,
            bytes: layout.parts[i].bytes,
            records: layout.parts[i].records,
            schema_hash,
        };
        let pi = codes.binary_search(&publisher).unwrap_or(0);
        let mut published = Vec::new();
        // One manifest for the publisher's whole region if the protocol accepts it; if it
        // refuses one as too large (older protocol versions capped the publisher's own entry
        // list at one announce), one manifest per child region instead, recursively.
        let mut todo = vec![publisher];
        while let Some(scope) = todo.pop() {
            let entries: Vec<PartitionEntry> = codes
                .iter()
                .enumerate()
                .filter(|(_, c)| c.level() == Level::Township && scope.contains(**c))
                .map(|(i, &c)| entry_of(i, c))
                .collect();
            let dataset = if scope == publisher {
                layout.dataset_id.clone()
            } else {
                format!("{}@{scope}", layout.dataset_id)
            };
            let built = build_manifest(
                dataset,
                1,
                CatalogOrigin {
                    region: publisher,
                    department: PUBLISHER_DEPARTMENT.to_string(),
                },
                scope,
                UnixMs(EPOCH_MS),
                UnixMs(EPOCH_MS + 30 * DAY_MS),
                None,
                schema.clone(),
                &entries,
            );
            let manifest = match built {
                Ok(m) => m,
                // More partitions than one manifest may carry (synthetic fan-outs): split.
                Err(e)
                    if e.to_string().contains("exceeds the limit")
                        && !topo.children(scope).is_empty() =>
                {
                    todo.extend(topo.children(scope).iter().rev());
                    continue;
                }
                Err(e) => return Err(format!("building the manifest for {scope}: {e}")),
            };
            let hash = manifest.hash();
            let signed = SignedManifest::sign(manifest, &identities[pi])
                .map_err(|e| format!("signing the manifest: {e}"))?;
            // Dry run, so a manifest the protocol refuses is a clear error, not a dead run.
            let mut probe = ReturnFlow::new(ReturnFlowConfig::new(identities[pi].clone()));
            let dry = probe.publish(
                UnixMs(EPOCH_MS),
                &mut TrustStore::new(anchor),
                signed.clone(),
                entries.clone(),
            );
            match dry {
                Ok(_) => {
                    manifests.push((scope, hash));
                    published.push((signed, entries));
                }
                Err(e)
                    if e.to_string().contains("exceeds the limit")
                        && !topo.children(scope).is_empty() =>
                {
                    todo.extend(topo.children(scope).iter().rev());
                }
                Err(e) => {
                    return Err(format!(
                        "the protocol refuses to publish this dataset for {scope}: {e}"
                    ))
                }
            }
        }
        to_publish = Some((pi, published));
    }
    let tuning = &config.tuning;
    let shared = Arc::new(Shared {
        manifests,
        rf_retry_ms: tuning.retry_ms.max(1),
        rf_silence_ms: match config.routing {
            // Never give up on the parent, upwards or downwards.
            Routing::Strict => u64::MAX / 4,
            _ => tuning.source_silence_ms_max,
        },
        rf_groups_in_flight_max: tuning.groups_in_flight_max.max(1),
        rf_receipt_interval_ms: tuning.receipt_interval_ms,
        rf_routing: match config.routing {
            // Provinces announce straight to their counties (and to their cities, for the
            // cities' own partitions); fallback as in skip-level.
            Routing::Direct => DataRouting::tree()
                .with_direct(Level::Province, Level::County)
                .map_err(|e| e.to_string())?,
            Routing::Strict | Routing::SkipLevel => DataRouting::tree(),
        },
        timer_cap_us: config.limits.horizon_us,
    });
    let mut changes: BTreeMap<RegionCode, Vec<Micros>> = BTreeMap::new();
    for &(t, at) in churn {
        changes.entry(t).or_default().push(at);
    }
    // One trust store per province subtree (and one for national): each stays well under the
    // protocol's memo bound (`TRUST_CACHE_ENTRIES_MAX`, cleared when full), so shared chain
    // certificates are verified once per subtree instead of again after every clear.
    let mut stores: BTreeMap<RegionCode, Rc<RefCell<TrustStore>>> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(codes.len());
    for (i, identity) in identities.into_iter().enumerate() {
        let me = codes[i];
        let mut pending_changes = changes.remove(&me).unwrap_or_default();
        pending_changes.sort_unstable_by(|a, b| b.cmp(a));
        let publish = match &to_publish {
            Some((pi, list)) if *pi == i => list.clone(),
            _ => Vec::new(),
        };
        nodes.push(ProtoNode {
            rf: ReturnFlow::new(rf_config(identity.clone(), &shared)),
            cat: CatalogSync::new(UnixMs(EPOCH_MS), cat_config(me, &shared)),
            trust: Rc::clone(
                stores
                    .entry(
                        me.ancestor_at(Level::Province)
                            .unwrap_or(RegionCode::NATIONAL),
                    )
                    .or_insert_with(|| Rc::new(RefCell::new(TrustStore::new(anchor)))),
            ),
            shared: Arc::clone(&shared),
            me,
            identity,
            to_publish: publish,
            records: BTreeMap::new(),
            stored: BTreeMap::new(),
            stored_bytes: 0,
            cat_log: Vec::new(),
            cat_watermarks: BTreeMap::new(),
            pending_changes,
            churn_applied: 0,
            manifests_complete: Default::default(),
        });
    }
    Ok(nodes)
}

/// `(0..n).map(f)` computed on up to 4 threads, in order.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get().min(4));
    if threads < 2 || n < 1_024 {
        return (0..n).map(f).collect();
    }
    let chunk = n.div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(f)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

impl ProtoNode {
    /// Applies every pending output of both state machines.
    fn drain(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        while let Some(out) = self.rf.poll_output() {
            match out {
                Output::Send { to, msg } => ctx.send(to, ProtoMsg::ReturnFlow(msg)),
                Output::ServeChunks {
                    to,
                    manifest,
                    parts,
                } => {
                    let mut frame = Vec::with_capacity(parts.len());
                    for p in parts {
                        // The shell reads the groups from its store: they must be there.
                        let held = self.stored.get(&p.entry.region).is_some_and(|l| {
                            l.iter()
                                .any(|r| r.start <= p.groups.start && p.groups.end <= r.end)
                        });
                        if !held {
                            ctx.observe(Observation::Note("serve_of_unheld_group"));
                            continue;
                        }
                        frame.push(SimPart {
                            region: p.entry.region,
                            groups: p.groups,
                            content_hash: p.entry.content_hash,
                            encoded_len: p.encoded_len,
                        });
                    }
                    if !frame.is_empty() {
                        ctx.send(
                            to,
                            ProtoMsg::Chunk {
                                manifest,
                                parts: frame,
                            },
                        );
                    }
                }
                Output::Storage(StorageOp::PutTransfer(record)) => {
                    // Installing a transfer (publish, accepted announce, restore) builds and
                    // checks the region tree over its entries and persists the record.
                    let per = ctx.costs().transfer_install_cpu_ns_per_partition;
                    ctx.charge_cpu_ns(per.saturating_mul(record.entries.len() as u64));
                    let hash = record.manifest.manifest.hash();
                    self.records.insert(hash, record);
                }
                // simnet nodes do not restart from storage; the ledger in memory is enough.
                Output::Storage(StorageOp::PutReceipt { .. }) => {}
                Output::Storage(StorageOp::DropTransfer { manifest }) => {
                    if let Some(rec) = self.records.remove(&manifest) {
                        for e in &rec.entries {
                            self.stored.remove(&e.region);
                        }
                    }
                    self.recount_stored();
                    ctx.observe(Observation::StoredBytes(self.stored_bytes));
                }
                Output::Event(e) => self.on_rf_event(ctx, e),
            }
        }
        while let Some(out) = self.cat.poll_output() {
            match out {
                CatalogOutput::Send { to, msg } => ctx.send(to, ProtoMsg::Catalog(msg)),
                CatalogOutput::Storage(CatalogStorageOp::AppendLog { index, update }) => {
                    debug_assert_eq!(
                        index as usize,
                        self.cat_log.len() + 1,
                        "log appends are contiguous"
                    );
                    self.cat_log.push(update);
                }
                CatalogOutput::Storage(CatalogStorageOp::PutWatermark {
                    sender,
                    log_id,
                    watermark,
                }) => {
                    self.cat_watermarks.insert(sender, (log_id, watermark));
                }
                CatalogOutput::Event(e) => match e {
                    CatalogEvent::Applied { origin, .. } => {
                        if self.me.level() == Level::National
                            && origin.department == CHURN_DEPARTMENT
                        {
                            self.churn_applied += 1;
                            ctx.observe(Observation::CatalogChanges(self.churn_applied));
                        }
                    }
                    CatalogEvent::Rejected { .. } => {
                        ctx.observe(Observation::Note("catalog_rejected"))
                    }
                    CatalogEvent::UpstreamChanged { .. } => {
                        ctx.observe(Observation::Note("catalog_upstream_changed"))
                    }
                    CatalogEvent::UpstreamInSync { .. } => {}
                },
            }
        }
    }

    fn on_rf_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: Event) {
        match e {
            Event::TransferComplete { .. } => ctx.observe(Observation::DataComplete),
            Event::Completeness(r) => {
                if self.is_publisher() && self.shared.manifests.len() == 1 {
                    ctx.observe(Observation::PublisherView {
                        delivered: u64::from(r.regions_delivered),
                        expected: u64::from(r.regions_expected),
                    });
                }
                if r.is_complete() && self.is_publisher() {
                    self.manifests_complete.insert(r.manifest);
                    if self.manifests_complete.len() == self.shared.manifests.len() {
                        ctx.observe(Observation::ReceiptsComplete);
                    }
                }
            }
            Event::ManifestAccepted { .. } => {}
            Event::PartitionComplete { .. } => {}
            Event::ManifestRejected { .. } => ctx.observe(Observation::Note("manifest_rejected")),
            Event::SourceChanged { .. } => ctx.observe(Observation::Note("source_changed")),
            Event::ChunkRejected { .. } => ctx.observe(Observation::Note("chunk_rejected")),
            Event::WantRefused { .. } => ctx.observe(Observation::Note("want_refused")),
            Event::ReceiptRejected { .. } => ctx.observe(Observation::Note("receipt_rejected")),
            Event::TransferExpired { .. } => ctx.observe(Observation::Note("transfer_expired")),
        }
    }

    /// Whether this node published the dataset.
    fn is_publisher(&self) -> bool {
        self.records.values().any(|r| r.published)
    }

    fn recount_stored(&mut self) {
        let mut total = 0;
        for rec in self.records.values() {
            for e in &rec.entries {
                if let Some(list) = self.stored.get(&e.region) {
                    total += list.iter().map(|r| range_bytes(e.bytes, r)).sum::<u64>();
                }
            }
        }
        self.stored_bytes = total;
    }

    fn on_chunk(
        &mut self,
        ctx: &mut Ctx<'_, ProtoMsg>,
        from: RegionCode,
        manifest: Hash,
        parts: Vec<SimPart>,
    ) {
        let now = now_ms(ctx.now_us());
        let mut stored = Vec::with_capacity(parts.len());
        for SimPart {
            region,
            groups,
            content_hash,
            ..
        } in parts
        {
            let Some(entry) = self.rf.expected_partition(&manifest, region) else {
                continue; // Not something we are receiving: the shell drops it.
            };
            // Stand-in for bao verification: a frame cut from other content fails.
            if entry.content_hash != content_hash
                || groups.start >= groups.end
                || groups.end > entry.groups()
            {
                self.rf
                    .handle_group_rejected(now, from, &manifest, region, groups.start);
                continue;
            }
            let list = self.stored.entry(region).or_default();
            let new = insert_range(list, groups.clone());
            let added: u64 = new.iter().map(|r| range_bytes(entry.bytes, r)).sum();
            if added > 0 {
                self.stored_bytes += added;
                ctx.observe(Observation::StoredBytes(self.stored_bytes));
            }
            stored.push((region, groups));
        }
        if !stored.is_empty() {
            self.rf.handle_groups_stored(now, from, &manifest, &stored);
        }
    }

    fn submit_due_changes(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now_us = ctx.now_us();
        while self.pending_changes.last().is_some_and(|&t| t <= now_us) {
            self.pending_changes.pop();
            let now = now_ms(now_us);
            let origin = CatalogOrigin {
                region: self.me,
                department: CHURN_DEPARTMENT.to_string(),
            };
            let seq = self.cat.next_seq(&origin);
            match SignedCatalogUpdate::sign(churn_update(self.me, seq, now), &self.identity) {
                Ok(signed) => {
                    if self
                        .cat
                        .submit(now, &mut self.trust.borrow_mut(), signed)
                        .is_err()
                    {
                        ctx.observe(Observation::Note("catalog_submit_failed"));
                    }
                }
                Err(_) => ctx.observe(Observation::Note("catalog_sign_failed")),
            }
        }
    }
}

impl SimNode for ProtoNode {
    type Msg = ProtoMsg;

    fn on_start(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = now_ms(ctx.now_us());
        let publish = std::mem::take(&mut self.to_publish);
        if publish.len() > 1 {
            ctx.observe(Observation::Note("publish_split_manifests"));
        }
        for (signed, entries) in publish {
            // The publisher holds every partition in full.
            for e in &entries {
                if e.bytes > 0 {
                    self.stored
                        .insert(e.region, std::iter::once(0..e.groups()).collect());
                }
                self.stored_bytes += e.bytes;
            }
            ctx.observe(Observation::StoredBytes(self.stored_bytes));
            if self
                .rf
                .publish(now, &mut self.trust.borrow_mut(), signed, entries)
                .is_err()
            {
                ctx.observe(Observation::Note("publish_failed"));
            }
        }
        self.submit_due_changes(ctx);
        self.drain(ctx);
        // After the drain: the published transfer records are in the store now.
        if self.is_publisher() {
            ctx.observe(Observation::DataComplete);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, from: RegionCode, msg: ProtoMsg) {
        let now = now_ms(ctx.now_us());
        match msg {
            ProtoMsg::ReturnFlow(m) => {
                if let ReturnFlowMsg::Receipt(r) = &m {
                    // A receipt recomputes the aggregate over every partition of the transfer.
                    let partitions = self
                        .records
                        .get(&r.receipt.manifest)
                        .map_or(0, |rec| rec.entries.len() as u64);
                    let per = ctx.costs().receipt_cpu_ns_per_partition;
                    ctx.charge_cpu_ns(per.saturating_mul(partitions));
                }
                self.rf
                    .handle_message(now, &mut self.trust.borrow_mut(), from, m)
            }
            ProtoMsg::Catalog(m) => {
                self.cat
                    .handle_message(now, &mut self.trust.borrow_mut(), from, m)
            }
            ProtoMsg::Chunk { manifest, parts } => self.on_chunk(ctx, from, manifest, parts),
        }
        self.drain(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = now_ms(ctx.now_us());
        self.submit_due_changes(ctx);
        self.rf.handle_tick(now);
        self.cat.handle_tick(now);
        self.drain(ctx);
    }

    fn on_crash(&mut self) {
        // Everything in memory is gone; the durable store stays.
        self.rf = ReturnFlow::new(rf_config(self.identity.clone(), &self.shared));
        self.cat = CatalogSync::new(UnixMs(EPOCH_MS), cat_config(self.me, &self.shared));
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = now_ms(ctx.now_us());
        self.rf = ReturnFlow::new(rf_config(self.identity.clone(), &self.shared));
        for record in self.records.values().cloned().collect::<Vec<_>>() {
            let stored: Vec<(RegionCode, Vec<Range<u64>>)> = record
                .entries
                .iter()
                .filter_map(|e| self.stored.get(&e.region).map(|l| (e.region, l.clone())))
                .collect();
            if self.rf.restore(now, (*record).clone(), &stored).is_err() {
                ctx.observe(Observation::Note("restore_failed"));
            }
        }
        let watermarks: Vec<(RegionCode, u64, u64)> = self
            .cat_watermarks
            .iter()
            .map(|(s, (id, w))| (*s, *id, *w))
            .collect();
        match CatalogSync::restore(
            now,
            cat_config(self.me, &self.shared),
            self.cat_log.clone(),
            &watermarks,
        ) {
            Ok(c) => self.cat = c,
            Err(_) => ctx.observe(Observation::Note("restore_failed")),
        }
        // Kick both machines: retransmissions are due after a restart.
        self.rf.handle_tick(now);
        self.cat.handle_tick(now);
        self.submit_due_changes(ctx);
        self.drain(ctx);
    }

    fn next_timer(&self) -> Option<Micros> {
        let to_us = |t: UnixMs| t.0.saturating_sub(EPOCH_MS).saturating_mul(MICROS_PER_MS);
        [
            self.rf.poll_timeout().map(to_us),
            self.cat.poll_timeout().map(to_us),
            self.pending_changes.last().copied(),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t <= self.shared.timer_cap_us)
        .min()
    }
}

impl Inspect for ProtoNode {
    fn held(&self) -> Held {
        // The manifests that concern this node: those whose scope contains it (a receiver) or
        // that it contains (a publisher above the scope).
        let relevant: Vec<Hash> = self
            .shared
            .manifests
            .iter()
            .filter(|(scope, _)| scope.contains(self.me) || self.me.contains(*scope))
            .map(|(_, h)| *h)
            .collect();
        if relevant.is_empty() {
            return Held::default();
        }
        let mut held = Held {
            complete: relevant.iter().all(|h| self.rf.is_complete(h)),
            bytes: self.stored_bytes,
            records: 0,
            hash: None,
        };
        // What this node holds, from its durable store and the verified entries it received.
        for hash in &relevant {
            let Some(record) = self.records.get(hash) else {
                held.complete = false;
                continue;
            };
            for e in &record.entries {
                let full = e.bytes == 0
                    || self.stored.get(&e.region).is_some_and(|l| {
                        l.iter().map(|r| range_bytes(e.bytes, r)).sum::<u64>() == e.bytes
                    });
                if full {
                    held.records += e.records;
                }
                if e.region == self.me {
                    held.hash = Some(e.content_hash);
                }
            }
        }
        held
    }

    fn catalog_version(&self, origin: RegionCode) -> u64 {
        self.cat
            .catalog(&CatalogOrigin {
                region: origin,
                department: CHURN_DEPARTMENT.to_string(),
            })
            .map_or(0, |c| c.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_insertion_reports_new_groups() {
        let mut l = Vec::new();
        assert_eq!(insert_range(&mut l, 2..4), vec![2..4]);
        assert_eq!(insert_range(&mut l, 0..6), vec![0..2, 4..6]);
        assert_eq!(l, vec![0..6]);
        assert_eq!(insert_range(&mut l, 1..3), Vec::<Range<u64>>::new());
        assert_eq!(insert_range(&mut l, 8..9), vec![8..9]);
        assert_eq!(l, vec![0..6, 8..9]);
    }

    #[test]
    fn last_group_may_be_short() {
        assert_eq!(range_bytes(20_000, &(0..2)), 20_000);
        assert_eq!(range_bytes(20_000, &(1..2)), 20_000 - CHUNK_GROUP_BYTES);
        assert_eq!(range_bytes(0, &(0..1)), 0);
    }
}
