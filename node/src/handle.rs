//! [`NodeHandle`]: how the CLI, the HTTP API, the demo and the tests talk to a running node —
//! commands queued to its event loop (bounded: callers wait rather than pile up) and the
//! data-plane counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use backflow_api::{ShareActParams, ShareFileParams};
use backflow_protocol::catalog::{CatalogEntry, CatalogOrigin};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::manifest::{DatasetId, Hash, HeldVersion, PartitionEntry, SignedManifest};
use backflow_protocol::return_flow::TransferRecord;
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::catalog_store::CatalogView;
use crate::clock::now_ms;
use crate::ledger_api::{EntryView, HeadView, LedgerCmd, LedgerPage, WitnessView};
use crate::returned_api::{ReturnedCmd, ReturnedCorrectionView};
use crate::share_api::ShareView;
use crate::status::DepartmentView;
use crate::status::{DatasetStatus, PeerView, RevocationView};
use crate::store::Store;
use backflow_protocol::ledger::entry::LedgerEntry;

/// The transfer records of one dataset version (one per scope).
pub type HeldRecords = Vec<(Hash, Arc<TransferRecord>)>;

/// Which held dataset a caller means: its name, and its owner (publisher region, department)
/// when datasets of that name from more than one owner are held here — a dataset is
/// (publisher region, department, name), see [`DatasetId`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatasetQuery {
    pub name: String,
    pub publisher: Option<RegionCode>,
    pub department: Option<String>,
    /// The latest held version if `None`.
    pub version: Option<u64>,
}

impl DatasetQuery {
    pub fn named(name: &str, version: Option<u64>) -> DatasetQuery {
        DatasetQuery {
            name: name.to_string(),
            version,
            ..DatasetQuery::default()
        }
    }

    /// Whether held dataset `id` (a scoped name `NAME@SCOPE` included) is one this query means.
    pub fn matches(&self, id: &DatasetId) -> bool {
        crate::publish::name_matches(&id.name, &self.name)
            && self.publisher.is_none_or(|p| p == id.publisher)
            && self
                .department
                .as_deref()
                .is_none_or(|d| d == id.department)
    }
}

pub(crate) enum Cmd {
    Held {
        reply: oneshot::Sender<HashMap<DatasetId, HeldVersion>>,
    },
    Publish {
        manifests: Vec<(SignedManifest, Vec<PartitionEntry>)>,
        reply: oneshot::Sender<Result<Vec<Hash>>>,
    },
    Status {
        dataset: Option<String>,
        /// List the children of this region (inside the node's own) instead of the node's.
        under: Option<RegionCode>,
        reply: oneshot::Sender<Vec<DatasetStatus>>,
    },
    Record {
        query: DatasetQuery,
        reply: oneshot::Sender<Result<HeldRecords>>,
    },
    CatalogSubmit {
        department: String,
        entries: Vec<CatalogEntry>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerView>>,
    },
    CatalogSearch {
        query: backflow_protocol::catalog_search::SearchQuery,
        reply: SearchReply,
    },
    Revoke {
        region: RegionCode,
        key: Option<ed25519_dalek::VerifyingKey>,
        reply: oneshot::Sender<Result<RevocationView>>,
    },
    Revocations {
        reply: oneshot::Sender<Vec<RevocationView>>,
    },
    SubmitRevocation {
        revocation: Box<backflow_protocol::cert::Revocation>,
        reply: oneshot::Sender<Result<RevocationView>>,
    },
    /// Departments' sharing rights (Art. 27 ¶2), see [`crate::rights_api`].
    Rights {
        reply: oneshot::Sender<Vec<crate::rights_api::RightsView>>,
    },
    RightsOrder {
        params: backflow_api::RightsParams,
        reply: oneshot::Sender<Result<crate::rights_api::RightsView>>,
    },
    /// Share requests (Arts. 20–22), see [`crate::share_api`].
    Shares {
        overdue_only: bool,
        reply: oneshot::Sender<Vec<ShareView>>,
    },
    Share {
        id: String,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    ShareFile {
        department: String,
        params: Box<ShareFileParams>,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    ShareAct {
        department: String,
        id: String,
        params: Box<ShareActParams>,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    /// Checks that `department` may deliver request `id` now: its id and requester region.
    DeliveryTarget {
        department: String,
        id: String,
        reply: oneshot::Sender<Result<crate::share_api::DeliveryTarget>>,
    },
    /// Opens a granted service interface whose data is loaded ([`crate::service_store`]).
    OpenService {
        department: String,
        request: Hash,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    /// This node's authority coordinates a dispute (Art. 28).
    Coordinate {
        id: String,
        outcome: String,
        refer: bool,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    /// A department of this node calls a grant's service interface.
    CallService {
        department: String,
        id: String,
        keys: Vec<String>,
        reply: LookupReply,
    },
    /// Publishes a staged delivery ([`crate::delivery`]) and records its start.
    Deliver {
        department: String,
        request: Hash,
        staged: Box<crate::delivery::Staged>,
        reply: oneshot::Sender<Result<ShareView>>,
    },
    /// Takes a department's key ([`crate::departments`]) and certifies it.
    AddDepartment {
        name: String,
        key: Box<ed25519_dalek::SigningKey>,
        reply: oneshot::Sender<Result<DepartmentView>>,
    },
    Departments {
        reply: oneshot::Sender<Vec<DepartmentView>>,
    },
    /// The compliance ledger (Art. 29), see [`crate::ledger_api`].
    Ledger(crate::ledger_api::LedgerCmd),
    /// Correction requests against returned data (Art. 26), see [`crate::returned_api`].
    Returned(crate::returned_api::ReturnedCmd),
    /// Catalog review (Arts. 16–17), see [`crate::review_api`].
    Review {
        request: Box<backflow_api::ReviewRequest>,
        default_department: String,
        reply: oneshot::Sender<Result<serde_json::Value>>,
    },
    /// Stored content failed verification outside the event loop (an export).
    ContentDamaged(crate::chunks::Damaged),
    /// Check every partition stored whole now ([`crate::scrub`]).
    Scrub {
        reply: oneshot::Sender<Result<crate::scrub::ScrubReport>>,
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
    /// Peers refused at admission (chain, key binding or place in the tree).
    pub peers_refused: AtomicU64,
    /// Serve requests dropped because the peer had its fill of frames being encoded.
    pub serves_dropped: AtomicU64,
    /// Syncs of the write-ahead log before an acknowledgement (batched: one covers every
    /// write since the last).
    pub wal_syncs: AtomicU64,
    /// Stored chunk groups that failed verification when served or exported (dropped from
    /// the index and fetched again).
    pub groups_damaged: AtomicU64,
    /// Unix ms of the latest frame from an upstream node (one whose region contains this
    /// node's: the parent, or an ancestor after a fallback) since this node started; 0: none.
    pub upstream_contact_ms: AtomicU64,
}

impl NodeStats {
    /// Records a frame from a peer of region `from` at `now` if it is upstream of `me`.
    pub fn heard_from(&self, me: RegionCode, from: Option<RegionCode>, now: UnixMs) {
        if from.is_some_and(|r| is_upstream(me, r)) {
            self.upstream_contact_ms.store(now.0, Ordering::Relaxed);
        }
    }
}

/// Whether `region` is above `me` (the parent, or an ancestor a fallback reached).
pub fn is_upstream(me: RegionCode, region: RegionCode) -> bool {
    region != me && region.contains(me)
}

/// Who waits for a service interface call this node's department made (`Cmd::CallService`).
pub type LookupReply = oneshot::Sender<Result<backflow_protocol::service_interface::LookupAnswer>>;

/// Who waits for a catalog search this node's department asked (`Cmd::CatalogSearch`).
pub type SearchReply = oneshot::Sender<
    Result<
        backflow_protocol::catalog_search::SearchResults,
        backflow_protocol::catalog_search::SearchRefusal,
    >,
>;

/// A handle to a running node; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) cmd: mpsc::Sender<Cmd>,
    pub stats: Arc<NodeStats>,
    pub store: Store,
    /// Search of the unified catalog (its own index, fed from the catalog log).
    pub search: crate::catalog_search::CatalogSearch,
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
    pub async fn held(&self) -> Result<HashMap<DatasetId, HeldVersion>> {
        self.ask(|reply| Cmd::Held { reply }).await
    }

    /// Hands signed manifests and their entries (already stored) to the return flow.
    pub async fn publish(
        &self,
        manifests: Vec<(SignedManifest, Vec<PartitionEntry>)>,
    ) -> Result<Vec<Hash>> {
        self.ask(|reply| Cmd::Publish { manifests, reply }).await?
    }

    /// Partitions `req`'s file, stores and signs it, and publishes it. See [`Self::publish_from`].
    pub async fn publish_file(
        &self,
        req: crate::publish::PublishRequest,
        path: &std::path::Path,
        progress: Arc<AtomicU64>,
    ) -> Result<(crate::publish::PublishOutcome, Vec<Hash>)> {
        let file =
            std::fs::File::open(path).map_err(|e| anyhow!("opening {}: {e}", path.display()))?;
        self.publish_from(req, Box::new(file), progress).await
    }

    /// Partitions `input` as it streams in (blocking work runs on the blocking pool), stores
    /// and signs it, and publishes it. Returns once the new version is durable: the
    /// partitioning summary and the manifest hashes.
    pub async fn publish_from(
        &self,
        req: crate::publish::PublishRequest,
        mut input: Box<dyn std::io::Read + Send>,
        progress: Arc<AtomicU64>,
    ) -> Result<(crate::publish::PublishOutcome, Vec<Hash>)> {
        let held = self.held().await?;
        let store = self.store.clone();
        let identity = Arc::clone(&self.identity);
        let prepared = tokio::task::spawn_blocking(move || {
            crate::publish::prepare(
                &store,
                &identity,
                &|id| held.get(id).copied(),
                &req,
                &mut input,
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
        self.ask(|reply| Cmd::Status {
            dataset,
            under: None,
            reply,
        })
        .await
    }

    /// As [`Self::status`], with each dataset's delivery to the children of `under`, a region
    /// inside this node's (one level of the console's delivery tree); an `under` outside it
    /// lists this node's children.
    pub async fn status_below(
        &self,
        dataset: Option<String>,
        under: RegionCode,
    ) -> Result<Vec<DatasetStatus>> {
        self.ask(|reply| Cmd::Status {
            dataset,
            under: Some(under),
            reply,
        })
        .await
    }

    /// The transfer records of a held dataset version (latest if `version` is None): one, or
    /// one per scope if the publisher split the dataset.
    pub async fn record(&self, dataset: &str, version: Option<u64>) -> Result<HeldRecords> {
        self.record_of(DatasetQuery::named(dataset, version)).await
    }

    /// [`Self::record`] for a dataset named with its owner.
    pub async fn record_of(&self, query: DatasetQuery) -> Result<HeldRecords> {
        self.ask(|reply| Cmd::Record { query, reply }).await?
    }

    /// The records of a held, complete dataset version, every partition an export would
    /// write checked against its signed entry first (nothing is written). Content that does
    /// not verify is reported to the node — dropped from its index and fetched again — and
    /// the export refused; the error says so. An export that may go ahead is logged in the
    /// compliance ledger (Art. 29) with its `destination` before this returns.
    pub async fn verified_export(
        &self,
        query: DatasetQuery,
        destination: &str,
    ) -> Result<(crate::export::ExportSummary, Vec<Arc<TransferRecord>>)> {
        let records = self.record_of(query).await?;
        self.verify_for_export(records, destination).await
    }

    /// [`Self::verified_export`] of records already looked up.
    pub async fn verify_for_export(
        &self,
        records: HeldRecords,
        destination: &str,
    ) -> Result<(crate::export::ExportSummary, Vec<Arc<TransferRecord>>)> {
        let records: Vec<Arc<TransferRecord>> = records.into_iter().map(|(_, r)| r).collect();
        let store = self.store.clone();
        let region = self.region();
        let checked = tokio::task::spawn_blocking(move || {
            crate::export::verify(&store, &records, region).map(|s| (s, records))
        })
        .await?;
        match &checked {
            Ok((summary, _)) => {
                let record = crate::ledger_api::export_record(now_ms(), summary, destination);
                self.ledger_append(vec![record]).await?;
            }
            Err(e) => {
                if let Some(damaged) = e.downcast_ref::<crate::chunks::Damaged>() {
                    self.cmd
                        .send(Cmd::ContentDamaged(damaged.clone()))
                        .await
                        .map_err(|_| anyhow!("node has shut down"))?;
                }
            }
        }
        checked
    }

    /// Reads back every partition this node stores whole and checks it against its signed
    /// hash now (the background scrub does a bounded share a minute); what does not verify is
    /// dropped and fetched again, and listed in the report.
    pub async fn scrub(&self) -> Result<crate::scrub::ScrubReport> {
        self.ask(|reply| Cmd::Scrub { reply }).await?
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

    /// The aggregated catalog of `region`'s subtree (within this node's; all of it for
    /// national), department by department in key order after `after`, at most `limit`
    /// departments (≤ [`crate::catalog_store::LIST_DEPARTMENTS_MAX`]). Read from the store
    /// on the blocking pool, not through the event loop: at national it is the whole
    /// country's catalog.
    pub async fn catalogs(
        &self,
        region: Option<RegionCode>,
        after: Option<CatalogOrigin>,
        limit: usize,
    ) -> Result<Vec<CatalogView>> {
        let store = self.store.clone();
        let region = region.unwrap_or(RegionCode::NATIONAL);
        tokio::task::spawn_blocking(move || {
            crate::catalog_store::list(&store, region, after.as_ref(), limit)
        })
        .await?
    }

    /// Searches the unified catalog (Art. 16): answered from this node's index when its
    /// subtree covers the search, else by the nearest ancestor whose subtree does, over the
    /// overlay (a township searches the whole country through national).
    pub async fn catalog_search(
        &self,
        query: backflow_protocol::catalog_search::SearchQuery,
    ) -> Result<crate::catalog_search::SearchView> {
        let results = self
            .ask(|reply| Cmd::CatalogSearch { query, reply })
            .await?
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        let here = results.answered_by == self.region();
        let indexed = here.then(|| self.search.indexed_through());
        Ok(crate::catalog_search::SearchView::of(results, indexed))
    }

    /// Every current catalog entry with this id (ids are unique per department only).
    pub async fn catalog_entries_with_id(
        &self,
        id: String,
        max: usize,
    ) -> Result<Vec<(CatalogOrigin, CatalogEntry)>> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || crate::catalog_store::entries_with_id(&store, &id, max))
            .await?
    }

    pub async fn peers(&self) -> Result<Vec<PeerView>> {
        self.ask(|reply| Cmd::Peers { reply }).await
    }

    /// Revokes the key of `region` (below this node): `key`, or that of its peer connected
    /// now. Returns once the revocation is persisted and in force here; it spreads on.
    pub async fn revoke(
        &self,
        region: RegionCode,
        key: Option<ed25519_dalek::VerifyingKey>,
    ) -> Result<RevocationView> {
        self.ask(|reply| Cmd::Revoke { region, key, reply }).await?
    }

    /// Puts a revocation signed elsewhere in force (e.g. the root's revocation of a national
    /// key): verified, persisted, spread. Returns once it is persisted.
    pub async fn submit_revocation(
        &self,
        revocation: backflow_protocol::cert::Revocation,
    ) -> Result<RevocationView> {
        self.ask(|reply| Cmd::SubmitRevocation {
            revocation: Box::new(revocation),
            reply,
        })
        .await?
    }

    /// Every revocation in force here.
    pub async fn revocations(&self) -> Result<Vec<RevocationView>> {
        self.ask(|reply| Cmd::Revocations { reply }).await
    }

    /// Authorities' acts on departments' sharing rights held here, suspensions first.
    pub async fn rights(&self) -> Result<Vec<crate::rights_api::RightsView>> {
        self.ask(|reply| Cmd::Rights { reply }).await
    }

    /// This node's authority suspends or reinstates a department's sharing rights (Art. 27
    /// ¶2); answered once the act is durable.
    pub async fn rights_order(
        &self,
        params: backflow_api::RightsParams,
    ) -> Result<crate::rights_api::RightsView> {
        self.ask(|reply| Cmd::RightsOrder { params, reply }).await?
    }

    /// Correction requests against returned data this node is a party to.
    pub async fn returned_corrections(&self) -> Result<Vec<ReturnedCorrectionView>> {
        self.ask(|reply| Cmd::Returned(ReturnedCmd::List { reply }))
            .await
    }

    /// Files a correction request against returned data as `department`; returns once it is
    /// persisted (and on its way to the publisher).
    pub async fn returned_correction_file(
        &self,
        department: String,
        params: backflow_api::ReturnedCorrectionParams,
    ) -> Result<ReturnedCorrectionView> {
        self.ask(|reply| {
            Cmd::Returned(ReturnedCmd::File {
                department,
                params: Box::new(params),
                reply,
            })
        })
        .await?
    }

    /// The publisher's `department` answers correction request `id`; returns once persisted.
    pub async fn returned_correction_answer(
        &self,
        department: String,
        id: String,
        params: backflow_api::ReturnedAnswerParams,
    ) -> Result<ReturnedCorrectionView> {
        self.ask(|reply| {
            Cmd::Returned(ReturnedCmd::Answer {
                department,
                id,
                params: Box::new(params),
                reply,
            })
        })
        .await?
    }

    /// Share requests this node is a party to, overdue first.
    pub async fn shares(&self, overdue_only: bool) -> Result<Vec<ShareView>> {
        self.ask(|reply| Cmd::Shares {
            overdue_only,
            reply,
        })
        .await
    }

    /// One share request (its id, or a unique prefix of 8+ hex digits).
    pub async fn share(&self, id: String) -> Result<ShareView> {
        self.ask(|reply| Cmd::Share { id, reply }).await?
    }

    /// Files a share request as `department`; returns once it is persisted (and on its way).
    pub async fn share_file(
        &self,
        department: String,
        params: ShareFileParams,
    ) -> Result<ShareView> {
        self.ask(|reply| Cmd::ShareFile {
            department,
            params: Box::new(params),
            reply,
        })
        .await?
    }

    /// Acts on a share request as `department`; returns once it is persisted.
    pub async fn share_act(
        &self,
        department: String,
        id: String,
        params: ShareActParams,
    ) -> Result<ShareView> {
        self.ask(|reply| Cmd::ShareAct {
            department,
            id,
            params: Box::new(params),
            reply,
        })
        .await?
    }

    /// The provider's `department` delivers granted request `id` (Art. 22). By batch exchange
    /// or file download, `input` (the granted data, in `format`) is stored as one partition
    /// for the requester's region, under a delivery manifest the requester's node alone may
    /// fetch, directly from this node. By service interface (服务接口), `input` is loaded keyed
    /// by `key` (the field calls look up) and the service opens. Returns once it is durable
    /// and the start is recorded.
    pub async fn deliver_share(
        &self,
        department: String,
        id: String,
        format: crate::partition::Format,
        key: Option<String>,
        work_dir: std::path::PathBuf,
        mut input: Box<dyn std::io::Read + Send>,
    ) -> Result<ShareView> {
        // Checked before the data is read: a wrong id or state fails at once.
        let target = self
            .ask(|reply| Cmd::DeliveryTarget {
                department: department.clone(),
                id,
                reply,
            })
            .await??;
        let request = target.request;
        if target.service {
            let key = key.ok_or_else(|| {
                anyhow!(
                    "a service interface (服务接口) answers lookups by a key field: name it \
                     (--key FIELD, e.g. 公民身份号码)"
                )
            })?;
            let _ = std::fs::remove_dir_all(&work_dir);
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                crate::service_store::load(&store, &request, &mut input, format, &key)
            })
            .await
            .map_err(|e| anyhow!("loading the service's data: {e}"))??;
            if target.reload {
                // Answering from the new data now; the case is delivered already.
                return self.share(hex::encode(request)).await;
            }
            return self
                .ask(|reply| Cmd::OpenService {
                    department,
                    request,
                    reply,
                })
                .await?;
        }
        if key.is_some() {
            bail!("--key is for a service interface (服务接口); this grant is delivered as data");
        }
        let req = crate::delivery::DeliveryRequest {
            request,
            requester: target.requester,
            use_until: target.use_until,
            department: department.clone(),
            format,
            work_dir: work_dir.clone(),
            corrects: target.corrects,
        };
        let store = self.store.clone();
        let identity = Arc::clone(&self.identity);
        let staged = tokio::task::spawn_blocking(move || {
            crate::delivery::stage(&store, &identity, &req, &mut input, now_ms())
        })
        .await
        .map_err(|e| anyhow!("staging the delivery: {e}"));
        let _ = std::fs::remove_dir_all(&work_dir);
        let staged = staged??;
        self.ask(|reply| Cmd::Deliver {
            department,
            request,
            staged: Box::new(staged),
            reply,
        })
        .await?
    }

    /// This node's authority (政务数据共享主管部门) coordinates the open dispute on request `id`
    /// (Art. 28): settled with `outcome`, or referred to its people's government.
    pub async fn share_coordinate(
        &self,
        id: String,
        outcome: String,
        refer: bool,
    ) -> Result<ShareView> {
        self.ask(|reply| Cmd::Coordinate {
            id,
            outcome,
            refer,
            reply,
        })
        .await?
    }

    /// This node's `department` calls the service interface (服务接口) of its granted request
    /// `id` with `keys`: the matching records, straight from the provider's node.
    pub async fn share_lookup(
        &self,
        department: String,
        id: String,
        keys: Vec<String>,
    ) -> Result<backflow_protocol::service_interface::LookupAnswer> {
        self.ask(|reply| Cmd::CallService {
            department,
            id,
            keys,
            reply,
        })
        .await?
    }

    /// Certifies department `name`'s key under this node's jurisdiction key, so it can act
    /// (again at every start: the key lives in [`crate::departments`]' files).
    pub async fn add_department(
        &self,
        name: String,
        key: ed25519_dalek::SigningKey,
    ) -> Result<DepartmentView> {
        self.ask(|reply| Cmd::AddDepartment {
            name,
            key: Box::new(key),
            reply,
        })
        .await?
    }

    /// Catalog review and update obligations; `default_department` acts where the request
    /// names none. Returns once what it changed is persisted.
    pub async fn catalog_review(
        &self,
        request: backflow_api::ReviewRequest,
        default_department: String,
    ) -> Result<serde_json::Value> {
        self.ask(|reply| Cmd::Review {
            request: Box::new(request),
            default_department,
            reply,
        })
        .await?
    }

    /// This node's departments.
    pub async fn departments(&self) -> Result<Vec<DepartmentView>> {
        self.ask(|reply| Cmd::Departments { reply }).await
    }

    /// Logs the node's own acts (an export); returns the first entry's number once durable.
    pub async fn ledger_append(&self, records: Vec<crate::ledger::Record>) -> Result<u64> {
        self.ask(|reply| Cmd::Ledger(LedgerCmd::Append { records, reply }))
            .await?
    }

    /// Logs department `department`'s use record (使用记录, Art. 29) of data granted to it.
    pub async fn ledger_use_record(
        &self,
        department: String,
        params: backflow_api::UseRecordParams,
    ) -> Result<LedgerEntry> {
        self.ask(|reply| {
            Cmd::Ledger(LedgerCmd::UseRecord {
                department,
                params,
                reply,
            })
        })
        .await?
    }

    /// Reads `target`'s records over the network (查阅, Art. 29), each proved against its
    /// witnessed head; the endpoint answers within its 30 s timeout.
    pub async fn ledger_inspect(
        &self,
        target: RegionCode,
        grant: Option<String>,
        from: u64,
        limit: u32,
    ) -> Result<
        std::result::Result<crate::ledger_api::InspectionView, crate::ledger_api::InspectFailure>,
    > {
        self.ask(|reply| {
            Cmd::Ledger(LedgerCmd::Inspect {
                target,
                grant,
                from,
                limit,
                reply,
            })
        })
        .await
    }

    /// Up to `limit` entries from `from` on, with the log's size and last signed head.
    pub async fn ledger_page(&self, from: u64, limit: usize) -> Result<LedgerPage> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            Ok(LedgerPage {
                size: crate::ledger::stored_size(&store)?,
                head: crate::ledger::stored_head(&store)?
                    .as_ref()
                    .map(HeadView::of),
                witnessed: crate::ledger::load_witnessing(&store)?
                    .1
                    .as_ref()
                    .map(WitnessView::of),
                parent_head: crate::ledger::load_parent_head(&store)?
                    .as_ref()
                    .map(HeadView::of),
                pruned_below: crate::ledger::pruned_below(&store)?,
                entries: crate::ledger::entries(&store, from, limit)?
                    .iter()
                    .map(EntryView::of)
                    .collect(),
            })
        })
        .await?
    }

    /// Signs the head of everything logged so far, then checks the whole log against it
    /// ([`crate::ledger_verify::verify`]) on the blocking pool.
    pub async fn ledger_verify(
        &self,
    ) -> Result<std::result::Result<crate::ledger::Verified, crate::ledger::Damage>> {
        let keys = self
            .ask(|reply| Cmd::Ledger(LedgerCmd::SignHead { reply }))
            .await?;
        let store = self.store.clone();
        let region = self.region();
        tokio::task::spawn_blocking(move || crate::ledger_verify::verify(&store, region, &keys))
            .await?
    }

    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Cmd::Shutdown).await;
    }
}
