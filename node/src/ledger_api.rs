//! The compliance ledger (合规台账, Art. 29) as the API and the CLI see it: entries as JSON,
//! the use records departments enter (使用记录), and the node's own acts it records —
//! publishing and exporting — which the protocol does not see.

use anyhow::{bail, Result};
use backflow_api::UseRecordParams;
use backflow_protocol::endpoint::Endpoint;
use backflow_protocol::ledger::entry::{EntryKind, LedgerEntry};
use backflow_protocol::ledger::head::{SignedTreeHead, WitnessedHead};
use backflow_protocol::ledger::inspection::InspectedRecords;
use backflow_protocol::ledger::seal::SealSigner;
use backflow_protocol::manifest::SignedManifest;
use backflow_protocol::share::ShareState;
use backflow_protocol::time::UnixMs;
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::ledger::Record;
use crate::share_api::{find, hex_id, time_text};

/// What the event loop does for the ledger (`ledger_cmds`).
pub(crate) enum LedgerCmd {
    /// Appends the node's own acts; replies with the first entry's number once durable.
    Append {
        records: Vec<Record>,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// A department's use record of data granted to it; replies with the entry once durable.
    UseRecord {
        department: String,
        params: UseRecordParams,
        reply: oneshot::Sender<Result<LedgerEntry>>,
    },
    /// Signs the head now if the log grew (before a verification, so it covers everything).
    /// Answers with the keys its seals are checked under.
    SignHead {
        reply: oneshot::Sender<crate::ledger_seal::SealKeys>,
    },
    /// Reads another node's records over the network (查阅, Art. 29): those of `grant` (a
    /// share request id or prefix) or, without one, all of them.
    Inspect {
        target: backflow_topology::RegionCode,
        grant: Option<String>,
        from: u64,
        limit: u32,
        reply: InspectReply,
    },
}

/// One entry as the API shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EntryView {
    pub seq: u64,
    /// Beijing time.
    pub time: String,
    pub time_ms: u64,
    pub region: String,
    pub department: Option<String>,
    /// `publish`, `delivery_complete`, `receipt`, `export`, `share_act`, `service_call`,
    /// `catalog_review`, `use_record` or `note`.
    pub kind: String,
    /// A share act's name (`grant`, `deliver`, …).
    pub act: Option<String>,
    pub subject: String,
    pub detail: String,
    /// A use record's five parts (Art. 29).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub use_record: Option<UseView>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UseView {
    pub scenario: String,
    pub process: String,
    pub effect: String,
    pub storage: String,
    pub disposal: String,
}

impl EntryView {
    pub fn of(e: &LedgerEntry) -> EntryView {
        let (kind, act, use_record) = match &e.kind {
            EntryKind::Publish => ("publish", None, None),
            EntryKind::DeliveryComplete => ("delivery_complete", None, None),
            EntryKind::Receipt => ("receipt", None, None),
            EntryKind::Export => ("export", None, None),
            EntryKind::ShareAct { act } => ("share_act", Some(act.clone()), None),
            EntryKind::ServiceCall => ("service_call", None, None),
            EntryKind::CatalogReview => ("catalog_review", None, None),
            EntryKind::UseRecord {
                scenario,
                process,
                effect,
                storage,
                disposal,
            } => (
                "use_record",
                None,
                Some(UseView {
                    scenario: scenario.clone(),
                    process: process.clone(),
                    effect: effect.clone(),
                    storage: storage.clone(),
                    disposal: disposal.clone(),
                }),
            ),
            EntryKind::Note => ("note", None, None),
            EntryKind::Pruned { .. } => ("pruned", None, None),
        };
        EntryView {
            seq: e.seq,
            time: time_text(UnixMs(e.time_ms)),
            time_ms: e.time_ms,
            region: e.region.to_string(),
            department: e.department.clone(),
            kind: kind.to_string(),
            act,
            subject: e.subject.clone(),
            detail: e.detail.clone(),
            use_record,
        }
    }
}

/// The head the node signed last, as the API shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HeadView {
    pub size: u64,
    pub root: String,
    pub time: String,
    pub signature: String,
}

impl HeadView {
    pub fn of(h: &SignedTreeHead) -> HeadView {
        HeadView {
            size: h.head.size,
            root: hex::encode(h.head.root),
            time: time_text(UnixMs(h.head.time_ms)),
            signature: hex::encode(h.signature.to_bytes()),
        }
    }
}

/// A page of the ledger: `GET /api/ledger`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LedgerPage {
    /// Entries in the log.
    pub size: u64,
    pub head: Option<HeadView>,
    /// The last of this node's heads its parent countersigned (见证).
    pub witnessed: Option<WitnessView>,
    /// The parent's own newest head this node checked extends the one it held before
    /// (heads down): its signature, kept as evidence should the parent's log ever not.
    #[serde(default)]
    pub parent_head: Option<HeadView>,
    /// Entries below this number were pruned after the retention period (Art. 29): their
    /// hashes stay in the tree, their bodies are gone.
    #[serde(default)]
    pub pruned_below: u64,
    pub entries: Vec<EntryView>,
}

/// A countersignature of this node's head by its parent.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WitnessView {
    pub witness: String,
    pub size: u64,
    pub root: String,
    /// When this node signed the head the witness countersigned.
    pub time: String,
}

impl WitnessView {
    pub fn of(w: &WitnessedHead) -> WitnessView {
        WitnessView {
            witness: w.witness.to_string(),
            size: w.head.head.size,
            root: hex::encode(w.head.head.root),
            time: time_text(UnixMs(w.head.head.time_ms)),
        }
    }
}

/// Department `department`'s use record of the data request `params.grant` brought it: only
/// the requesting department (政务数据需求部门, Art. 29) of this node records, and only for
/// data it was granted.
pub fn use_record(
    ep: &Endpoint<PeerId>,
    now: UnixMs,
    department: &str,
    params: &UseRecordParams,
) -> Result<Record> {
    let (id, case) = find(ep.share_service().cases(), &params.grant)?;
    let requester = &case.request.requester;
    if requester.region != ep.region() || requester.department != department {
        bail!(
            "use records (使用记录) are the requesting department's: request {} was filed by \
             {} {}, not by {department} of this node",
            &hex_id(id)[..16],
            requester.region,
            requester.department
        );
    }
    let granted = matches!(
        case.state,
        ShareState::Granted
            | ShareState::Delivering
            | ShareState::Delivered
            | ShareState::Suspended
            | ShareState::Terminated
            | ShareState::Disposed
    );
    if !granted {
        bail!(
            "request {} was not granted: there is no shared data to record the use of",
            &hex_id(id)[..16]
        );
    }
    Ok(Record {
        time_ms: now.0,
        department: Some(department.to_string()),
        kind: EntryKind::UseRecord {
            scenario: params.scenario.clone(),
            process: params.process.clone(),
            effect: params.effect.clone(),
            storage: params.storage.clone(),
            disposal: params.disposal.clone(),
        },
        subject: hex_id(id),
        detail: format!(
            "data of {} {} (catalog entry {})",
            case.request.provider.region, case.request.provider.department, case.request.entry_id
        ),
    })
}

/// The node's record of a version it published (数据回流发布, Art. 24).
pub fn publish_record(now: UnixMs, manifest: &SignedManifest) -> Record {
    let m = &manifest.manifest;
    Record {
        time_ms: now.0,
        department: Some(m.publisher.department.clone()),
        kind: EntryKind::Publish,
        subject: m.dataset.clone(),
        detail: format!(
            "version {} for {}: {} partitions, {} records, {} bytes; manifest {}",
            m.version,
            m.scope,
            m.partition_count,
            m.records_total,
            m.bytes_total,
            hex::encode(m.hash())
        ),
    }
}

/// The node's record of an export (导出) and where it went.
pub fn export_record(
    now: UnixMs,
    summary: &crate::export::ExportSummary,
    destination: &str,
) -> Record {
    Record {
        time_ms: now.0,
        department: None,
        kind: EntryKind::Export,
        subject: summary.dataset.clone(),
        detail: format!(
            "version {} of {} {}: {} partitions, {} records, {} bytes, to {destination}",
            summary.version,
            summary.publisher,
            summary.department,
            summary.partitions,
            summary.records,
            summary.bytes
        ),
    }
}

/// What the waiting API call gets: the records, or why there are none.
pub(crate) type InspectReply = oneshot::Sender<Result<InspectionView, InspectFailure>>;

/// Why an inspection gave no records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InspectFailure {
    /// This node would not ask: no such grant here, or it may not read that ledger.
    Refused(String),
    /// The other node refused, nothing on the way was connected, no answer came in time, or
    /// the answer did not prove itself.
    Failed(String),
}

impl std::fmt::Display for InspectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectFailure::Refused(why) | InspectFailure::Failed(why) => f.write_str(why),
        }
    }
}

/// Records read from another node, as the API and the CLI show them.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InspectionView {
    /// Whose ledger.
    pub region: String,
    /// Its head the entries are proved against.
    pub head: HeadView,
    /// The parent that countersigned that head (见证).
    pub witnessed_by: String,
    pub entries: Vec<EntryView>,
    /// Who sealed each entry, in `entries`' order (签章): `node`, or the department's name —
    /// checked by this node under its certificate.
    #[serde(default)]
    pub sealed_by: Vec<String>,
    /// Where the next page starts, if the log goes on.
    pub next: Option<u64>,
}

impl InspectionView {
    pub(crate) fn of(records: &InspectedRecords) -> InspectionView {
        InspectionView {
            region: records.head.head.head.region.to_string(),
            head: HeadView::of(&records.head.head),
            witnessed_by: records.head.witness.to_string(),
            entries: records.entries.iter().map(EntryView::of).collect(),
            sealed_by: records
                .sealed_by
                .iter()
                .map(|s| match s {
                    SealSigner::Node => "node".to_string(),
                    SealSigner::Department(d) => d.clone(),
                })
                .collect(),
            next: records.next,
        }
    }
}
