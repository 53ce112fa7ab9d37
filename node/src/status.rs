//! What `backflow status` and `peers` show, computed from the endpoint's
//! state: per dataset, this node's own holdings and the delivery below it, child by child.

use std::collections::HashMap;
use std::sync::Arc;

use backflow_protocol::manifest::Hash;
use backflow_protocol::return_flow::TransferRecord;
use backflow_protocol::time::{UnixMs, MINUTE_MS};
use backflow_protocol::Endpoint;
use backflow_topology::{RegionCode, Topology};
use libp2p::PeerId;
use serde::Serialize;

/// A child region short of complete with no receipt from its subtree for this long (nor since
/// the version was issued) is shown *stuck* (停滞): deliveries of a whole country's townships
/// take seconds to minutes (see node/README.md), so ten minutes without any word from below
/// means a node down, unreachable or refusing — something an operator should look at — not a
/// slow transfer.
pub const STUCK_AFTER_MS: u64 = 10 * MINUTE_MS;

/// Per-child-region delivery state, as `backflow status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ChildStatus {
    pub region: String,
    pub name: String,
    /// pending / partial / complete, or stuck: not complete and no receipt from below for
    /// [`STUCK_AFTER_MS`].
    pub state: &'static str,
    /// Whether the row has regions below it with partitions of their own (the console opens
    /// it as a tree); false for a partition's own region, e.g. a township.
    pub has_children: bool,
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
    /// With `publisher` and `dataset`, the dataset's identity: a dataset of the same name from
    /// another region or department is another dataset.
    pub department: String,
    pub published_here: bool,
    /// When the publisher issued this version (Unix ms): the start of its delivery's time line.
    pub issued_at: u64,
    /// The region whose children `children` lists: this node's own, or one below it that was
    /// asked for (the console's delivery tree, opened down to townships).
    pub region: String,
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

/// A department of this node (政府部门), as `backflow dept list` and the API show it: never its
/// secrets.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DepartmentView {
    pub name: String,
    /// Its public key (hex), as its signed acts carry it.
    pub key: String,
    /// Its certificate's end (Unix ms): the jurisdiction certificate's.
    pub certified_until: u64,
}

/// This node's departments, by name.
pub fn departments<P: Copy + Ord + std::fmt::Debug>(
    ep: &backflow_protocol::Endpoint<P>,
) -> Vec<DepartmentView> {
    ep.share_service()
        .departments()
        .map(|d| DepartmentView {
            name: d.name().to_string(),
            key: hex::encode(d.cert.body.key.as_bytes()),
            certified_until: d.cert.body.not_after.0,
        })
        .collect()
}

/// A revocation in force here, as `backflow cert revocations` and the API show it.
#[derive(Clone, Debug, Serialize)]
pub struct RevocationView {
    /// The region whose key is revoked.
    pub subject: String,
    /// The revoked key (hex).
    pub key: String,
    /// When it was issued (Unix ms).
    pub at: u64,
    /// Who signed it: the issuer's region, or `root` for the offline root.
    pub issuer: String,
}

impl RevocationView {
    pub fn of(r: &backflow_protocol::cert::Revocation) -> RevocationView {
        RevocationView {
            subject: r.subject.to_string(),
            key: hex::encode(r.key.as_bytes()),
            at: r.at.0,
            issuer: r
                .issuer_chain
                .last()
                .map_or_else(|| "root".to_string(), |c| c.body.subject.to_string()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub peer: String,
    pub region: Option<String>,
    /// The remote address of the latest connection (shows the transport: `/tcp/` or `/quic-v1`).
    pub addr: Option<String>,
}

/// Every held dataset (or those matching `dataset`) with its delivery below `under` (this
/// node's region when `None`; the caller checks that `under` is inside it). Each
/// child's figures are the endpoint's exact view of that child's subtree
/// ([`backflow_protocol::ReturnFlow::completeness_of`]): the union of whatever receipts attest
/// its partitions, so a skip-level fallback that delivered past the child still counts.
pub fn datasets(
    ep: &Endpoint<PeerId>,
    records: &HashMap<Hash, Arc<TransferRecord>>,
    dataset: Option<&str>,
    under: Option<RegionCode>,
    now: UnixMs,
) -> Vec<DatasetStatus> {
    let topo = Topology::china();
    let me = ep.region();
    let under = under.filter(|u| me.contains(*u)).unwrap_or(me);
    let rf = ep.return_flow();
    let mut out = Vec::new();
    for (id, held) in rf.held() {
        let name = id.name.as_str();
        if dataset.is_some_and(|d| !crate::publish::name_matches(name, d)) {
            continue;
        }
        let Some(rec) = records.get(&held.hash) else {
            continue;
        };
        let m = &rec.manifest.manifest;
        let receipts = rf.receipts(&held.hash);
        let mut children = Vec::new();
        for &child in topo.children(under) {
            let Some(view) = rf.completeness_of(&held.hash, child) else {
                continue;
            };
            if view.regions_expected == 0 {
                continue;
            }
            // One pass over the held partitions (at the publisher, the whole country's):
            // what is expected under the child, and whether any lies below it.
            let (records_expected, bytes_expected, has_children) = rec
                .entries
                .iter()
                .filter(|e| child.contains(e.region))
                .fold((0, 0, false), |(records, bytes, below), e| {
                    (
                        records + e.records,
                        bytes + e.bytes,
                        below || e.region != child,
                    )
                });
            let delivered = u64::from(view.regions_delivered);
            let expected = u64::from(view.regions_expected);
            let last_receipt_at = receipts
                .iter()
                .filter(|r| child.contains(r.region))
                .map(|r| r.at.0)
                .max();
            let quiet_since = last_receipt_at.unwrap_or(0).max(m.issued_at.0);
            let state = if delivered >= expected {
                "complete"
            } else if now.0.saturating_sub(quiet_since) >= STUCK_AFTER_MS {
                "stuck"
            } else if delivered > 0 {
                "partial"
            } else {
                "pending"
            };
            children.push(ChildStatus {
                region: child.to_string(),
                name: topo.get(child).map_or(String::new(), |r| r.name.clone()),
                state,
                has_children,
                regions_expected: expected,
                regions_delivered: delivered,
                records_expected,
                records_delivered: view.records_delivered,
                bytes_expected,
                bytes_delivered: view.bytes_delivered,
                last_receipt_at,
            });
        }
        let (regions_expected, regions_delivered, records_delivered, bytes_delivered) = rf
            .completeness(&held.hash)
            .as_ref()
            .map_or((0, 0, 0, 0), |r| {
                (
                    u64::from(r.regions_expected),
                    u64::from(r.regions_delivered),
                    r.records_delivered,
                    r.bytes_delivered,
                )
            });
        out.push(DatasetStatus {
            dataset: name.to_string(),
            version: held.version,
            manifest: hex::encode(held.hash),
            publisher: m.publisher.region.to_string(),
            department: m.publisher.department.clone(),
            published_here: rec.published,
            issued_at: m.issued_at.0,
            region: under.to_string(),
            held_complete: rec.published || rf.is_complete(&held.hash),
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
