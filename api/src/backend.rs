//! What the HTTP API needs from the node behind it. The node implements [`Backend`] over its
//! running handle; the API's tests and fuzz target implement it in memory, so every route,
//! the token gate and the confinement are exercised without RocksDB or a network.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use backflow_protocol::catalog::CatalogEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// How to read a published file (the request's `format`, `region_field`, `strict_villages`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishParams {
    pub dataset: String,
    pub region_field: String,
    /// `csv`, `ndjson`, `xlsx` or `parquet` (the last two converted to CSV / NDJSON records).
    pub format: String,
    /// Reject 12-digit codes of unknown villages instead of rolling them up to their township.
    #[serde(default)]
    pub strict_villages: bool,
}

/// A publish's input: the request body as it streams in, or a file of the import directory.
/// Read on the blocking pool; never buffered whole.
pub type PublishInput = Box<dyn Read + Send>;

/// Writes an export's lines; runs on the blocking pool once the export has verified.
pub type ExportWriter = Box<dyn FnOnce(&mut dyn Write) -> anyhow::Result<()> + Send>;

/// What an export will write: every partition has been re-hashed against its signed manifest
/// entry before this exists (data that does not verify is never exported), and the writer
/// re-hashes again as it writes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ExportSummary {
    pub dataset: String,
    /// The publisher's region code: with the department, whose dataset this is.
    pub publisher: String,
    pub department: String,
    pub version: u64,
    pub partitions: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Which held dataset version an export means. A dataset is (publisher region, department,
/// name); `publisher` and `department` are needed only when datasets of that name from more
/// than one owner are held here (the node then says which owners there are).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportWhich {
    pub dataset: String,
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    /// The latest held version if `None`.
    #[serde(default)]
    pub version: Option<u64>,
    /// `xlsx` or `parquet` to have the records as a table; `None` (or the published format's
    /// name): the published records byte for byte.
    #[serde(default)]
    pub format: Option<String>,
    /// Where the export goes, for the compliance ledger (Art. 29): the API's response or
    /// a file. Set by the route, never by a caller.
    #[serde(skip)]
    pub destination: String,
}

/// A requesting department's use record (使用记录) of data it was granted (Art. 29:
/// 使用场景、使用过程、应用成效、存储情况、销毁情况).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseRecordParams {
    /// The share request the data was granted by: its id, or a unique prefix of 8+ hex digits.
    pub grant: String,
    pub scenario: String,
    pub process: String,
    pub effect: String,
    pub storage: String,
    /// Empty while the data is still held.
    #[serde(default)]
    pub disposal: String,
    /// The department recording (a department's token names its own).
    #[serde(default)]
    pub department: Option<String>,
}

/// A ledger inspection (查阅, Art. 29) this node asks of another node over the network: the
/// records of `grant` (this node provides it; the other node requested it), or, with no
/// grant, every record of `region` (a region below this node: the authority above reads them
/// all). Each entry comes proved against that node's witnessed head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectParams {
    /// The region code of the node whose ledger is read.
    pub region: String,
    /// The grant (its share request id, or 8+ leading hex digits) whose records are read.
    #[serde(default)]
    pub grant: Option<String>,
    /// The first entry position.
    #[serde(default)]
    pub from: u64,
    /// Entries at most (≤ 256).
    #[serde(default = "InspectParams::default_limit")]
    pub limit: u32,
}

impl InspectParams {
    fn default_limit() -> u32 {
        100
    }
}

/// What this node's authority (政务数据共享主管部门) orders on a department's sharing rights
/// (政务数据共享权限, Art. 27 ¶2): `suspend` it for misuse, with a rectification period,
/// `reinstate` it, or — the period run out without rectification — `terminate` its sharing. The department is one of this region or a region below it; the order is
/// signed by this node, in force here at once and spread to every node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RightsParams {
    /// The department's region code.
    pub region: String,
    /// The department (部门), as its own node names it.
    pub department: String,
    /// `suspend`, `reinstate` or `terminate`.
    pub action: RightsAction,
    /// Suspend, terminate: why (擅自超出使用范围、共享目的使用, or 擅自提供给第三方).
    #[serde(default)]
    pub reason: String,
    /// Suspend: working days to rectify (限期整改), 1 to 60.
    #[serde(default)]
    pub rectify_working_days: Option<u32>,
    /// Reinstate: a note (e.g. the rectification found sufficient).
    #[serde(default)]
    pub note: String,
    /// Who approved it (the authority's head).
    pub approved_by: String,
}

/// An order on sharing rights.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RightsAction {
    Suspend,
    Reinstate,
    /// After this node's suspension's rectification period ran out without rectification
    /// (拒不整改或者整改不到位): every grant the department requested until now ends.
    Terminate,
}

/// A revocation this node is to issue: the key of `region` (a region below this node) —
/// `key` in hex, or, if absent, the key of the peer of that region connected now; or a signed
/// one to put in force (`signed`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeParams {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// Instead of `region`/`key`: a signed revocation made elsewhere (the offline root's
    /// revocation of a national key), its encoding in hex.
    #[serde(default)]
    pub signed: Option<String>,
}

/// One page of the aggregated catalog (Arts. 12–17): departments of `region`'s subtree
/// (default: this node's), in order, after `after` (`region/department`, the last of the
/// previous page), at most `limit` departments.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CatalogListParams {
    /// A region code of this node's subtree (default: this node's).
    #[serde(default)]
    pub region: Option<String>,
    /// `REGION/DEPARTMENT`: the last department of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// Departments in the page (default 1,000; at most 10,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A search of the unified catalog (Art. 16, 统一向政府部门通告): free text over entry names
/// and data items, and filters on the provider department, the sharing attribute
/// (`unconditional`, `conditional`, `not_shared`) and a region's subtree.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CatalogSearchParams {
    /// Free text over entry names and data items.
    #[serde(default)]
    pub q: Option<String>,
    /// The provider department.
    #[serde(default)]
    pub provider: Option<String>,
    /// `unconditional`, `conditional` or `not_shared`.
    #[serde(default)]
    pub sharing: Option<String>,
    /// A region code: only catalogs of its subtree.
    #[serde(default)]
    pub region: Option<String>,
    /// Hits to skip (paging).
    #[serde(default)]
    pub offset: Option<usize>,
    /// Hits in the page (default 20, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A share request to file (Art. 20) as this node's department: the provider's department and
/// catalog entry, and what the request states.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareFileParams {
    pub provider_region: String,
    pub provider_department: String,
    pub entry_id: String,
    /// 使用依据.
    pub basis: String,
    /// 使用场景.
    pub scenario: String,
    /// 使用范围.
    pub scope: String,
    /// 共享方式: `service_api`, `batch_exchange` or `file_download`.
    pub method: String,
    /// 使用时限: the last day of use, `YYYY-MM-DD`.
    pub use_until: String,
    /// The data-sharing head who approved (负责人同意).
    pub approved_by: String,
    /// The requesting department of this node; absent: the caller's (a department's token),
    /// or the node's configured department.
    #[serde(default)]
    pub department: Option<String>,
}

/// Catalog review (Arts. 16–17), through one backend call: what the caller asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewRequest {
    /// Entries of `department` (`None`: the node's configured one) to the authority's review.
    Submit {
        department: Option<String>,
        entries: Vec<CatalogEntry>,
    },
    /// Submissions and duty changes, overdue first; only `department`'s if given.
    List {
        department: Option<String>,
        overdue_only: bool,
    },
    /// The authority decides a submission.
    Decide { id: u64, params: ReviewDecideParams },
    /// A change of law or duties that obliges `department` to update its catalog.
    RecordDutyChange {
        department: Option<String>,
        params: DutyChangeParams,
    },
    /// The authority extends a duty change's update period once.
    ExtendUpdate { id: u64, params: DutyExtendParams },
}

/// Entries submitted for review.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewSubmitParams {
    /// The submitting department (a department's token names its own).
    #[serde(default)]
    pub department: Option<String>,
    #[schema(value_type = Vec<crate::openapi::views::CatalogEntry>)]
    pub entries: Vec<CatalogEntry>,
}

/// The authority's decision: `approve`, or `return` with reasons; the reviewer is named.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecideParams {
    pub decision: String,
    pub reviewer: String,
    #[serde(default)]
    pub reasons: Option<String>,
}

/// A change of law or duties (Art. 17 ¶1): the day it took effect (`YYYY-MM-DD`) and what.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DutyChangeParams {
    #[serde(default)]
    pub department: Option<String>,
    pub occurred: String,
    pub basis: String,
}

/// The one extension of an update period: 1 to 5 working days, with the authority's consent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DutyExtendParams {
    pub days: u32,
    pub consent: String,
}

/// An act on a share request by this node's department: `act` is `grant` (`approved_by`,
/// `conditions`), `refuse` (`reasons`, `approved_by`), `notice` (`missing`), `supplement`
/// (`material`), `extend` (`days`, `consent`, `reason`), `delivered`, `withdraw` (`reason`),
/// `consent` to pass the data on to a third party (Art. 25: `recipient_region`,
/// `recipient_department`, `purpose`, `approved_by`),
/// `suspend` (`reason`, `days`, `approved_by`), `rectify` (`record`), `reinstate` (`record`,
/// `approved_by`), `terminate` (`reason`, `negotiation`, `filing`, `approved_by`), `dispose`
/// (`disposal`, `record`), `dispute` (`subject`, `claim`), `escalate`, `settle` (`record`),
/// `correction` (`items`) or `answer_correction` (`corrected`, `reason`, `approved_by`): the
/// other fields are what that act needs (as the node reads them, `node/src/share_api.rs`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareActParams {
    pub act: String,
    /// The acting department of this node; absent: the caller's (a department's token), or
    /// the node's configured department.
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub approved_by: Option<String>,
    /// A grant's conditions (only those the catalog entry lists).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// A refusal's reasons.
    #[serde(default)]
    pub reasons: Option<String>,
    /// An incomplete-material notice's items, all at once.
    #[serde(default)]
    pub missing: Vec<String>,
    /// The supplemented material.
    #[serde(default)]
    pub material: Option<String>,
    /// An extension's working days (1 to 10).
    #[serde(default)]
    pub days: Option<u32>,
    /// The authority's recorded consent to an extension.
    #[serde(default)]
    pub consent: Option<String>,
    /// An extension's, a withdrawal's, a suspension's or a termination's reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// A termination's recorded negotiation with the requester (协商, Art. 27 ¶3).
    #[serde(default)]
    pub negotiation: Option<String>,
    /// A termination's filing with the same-level authority (备案, Art. 27 ¶3).
    #[serde(default)]
    pub filing: Option<String>,
    /// A disposal's method: `delete`, `return` or `archive` (Art. 27 ¶1).
    #[serde(default)]
    pub disposal: Option<String>,
    /// A rectification report, a reinstatement note, a disposal record or a dispute's
    /// settlement.
    #[serde(default)]
    pub record: Option<String>,
    /// A dispute's subject (the request, the grant, a correction, a suspension…).
    #[serde(default)]
    pub subject: Option<String>,
    /// A dispute's claim.
    #[serde(default)]
    pub claim: Option<String>,
    /// A correction request's records (校核申请, Art. 26).
    #[serde(default)]
    pub items: Vec<CorrectionItemParams>,
    /// A correction's answer: corrected (`true`) or not an error (`false`, with `reason`).
    #[serde(default)]
    pub corrected: Option<bool>,
    /// A consent to pass the data on (Art. 25: 提供给第三方): the recipient's region — with
    /// `recipient_department`, that one department; without, every department of the region
    /// and below (return-flow there).
    #[serde(default)]
    pub recipient_region: Option<String>,
    #[serde(default)]
    pub recipient_department: Option<String>,
    /// A consent's purpose: what the recipient uses the data for.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// One record a correction request names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionItemParams {
    pub key: String,
    #[serde(default)]
    pub field: String,
    pub problem: String,
}

/// A correction request against returned data (回流数据校核申请, Art. 26 with Art. 24), filed by
/// a department of this node: `dataset` names a return-flow dataset this node holds (with
/// `publisher_region` and `publisher_department` where two publishers' datasets share the
/// name); the request names the version held and goes to its publisher, which answers within
/// 10 working days.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnedCorrectionParams {
    /// The requesting department (a department's token names its own).
    #[serde(default)]
    pub department: Option<String>,
    pub dataset: String,
    #[serde(default)]
    pub publisher_region: Option<String>,
    #[serde(default)]
    pub publisher_department: Option<String>,
    /// The records believed wrong (1 to 64).
    pub items: Vec<CorrectionItemParams>,
}

/// The publisher's answer to a correction request against returned data: `corrected` (the
/// dataset published since carries the correction: that version is named) or not an error,
/// with `reason`; `approved_by` the department's head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnedAnswerParams {
    /// The publishing department (a department's token names its own).
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub corrected: bool,
    #[serde(default)]
    pub reason: String,
    pub approved_by: String,
}

pub struct Export {
    pub summary: ExportSummary,
    pub write: ExportWriter,
}

/// The node behind the API. Views are JSON values: the API passes them through unchanged.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Delivery status of every dataset held (or of `dataset`), child by child of this node's
    /// region, or of `region` (a region code inside this node's; one level of the delivery
    /// tree).
    fn status(
        &self,
        dataset: Option<String>,
        region: Option<String>,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Connected peers and their verified regions.
    fn peers(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The node's health: the data directory's disk, the last contact with the parent.
    fn health(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Revokes a descendant's key: signed by this node, in force here at once, and spread to
    /// every node in that region's line. Returns the revocation's view.
    fn revoke(
        &self,
        params: RevokeParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Every revocation in force here.
    fn revocations(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Authorities' acts on departments' sharing rights held here (the latest per department
    /// and authority), suspensions first.
    fn rights(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// This node's authority suspends or reinstates a department's sharing rights (Art. 27
    /// ¶2); returns the act, once durable.
    fn rights_order(
        &self,
        params: RightsParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// One page of the aggregated catalog of this subtree (Arts. 12–17).
    fn catalogs(
        &self,
        params: CatalogListParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Every current catalog entry with this id: an array of `{region, department, entry}`
    /// (ids are unique within a department only); empty if there is none.
    fn catalog_entry(
        &self,
        id: String,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Searches the unified catalog: `{total, hits: [{region, department, entry_id, name,
    /// score}]}`.
    fn catalog_search(
        &self,
        params: CatalogSearchParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Submits catalog entries as this node's department; returns the new sequence number.
    fn catalog_submit(
        &self,
        entries: Vec<CatalogEntry>,
    ) -> impl Future<Output = Result<u64, ApiError>> + Send;

    /// Partitions, stores, signs and publishes `input` as a new version of `params.dataset`.
    /// `job` names the publish (scratch space, rejects file); `progress` counts bytes read.
    /// Returns the publish report once the new version is durable.
    fn publish(
        &self,
        job: u64,
        params: PublishParams,
        input: PublishInput,
        progress: Arc<AtomicU64>,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Verifies the own-region records of a held dataset version and returns what will be
    /// written and the writer.
    fn export(&self, which: ExportWhich) -> impl Future<Output = Result<Export, ApiError>> + Send;

    /// Share requests this node is a party to (Arts. 20–22), overdue first; only overdue
    /// ones if `overdue_only`.
    fn shares(
        &self,
        overdue_only: bool,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// One share request by id (or a unique prefix of 8+ hex digits).
    fn share(&self, id: String)
        -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Files a share request as this node's department `department` (`None`: the node's
    /// configured one); returns it once persisted.
    fn share_file(
        &self,
        department: Option<String>,
        params: ShareFileParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Correction requests against returned data this node is a party to (as requester or
    /// publisher), open and overdue first.
    fn returned_corrections(
        &self,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Files a correction request against returned data as department `department` (`None`:
    /// the node's configured one); returns it once persisted (and on its way).
    fn returned_correction_file(
        &self,
        department: Option<String>,
        params: ReturnedCorrectionParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The publisher's department `department` answers correction request `id`; returns it
    /// once persisted.
    fn returned_correction_answer(
        &self,
        department: Option<String>,
        id: String,
        params: ReturnedAnswerParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Acts on a share request as this node's department `department` (`None`: the node's
    /// configured one); returns it once persisted.
    fn share_act(
        &self,
        department: Option<String>,
        id: String,
        params: ShareActParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The provider's department `department` (`None`: the node's configured one) delivers
    /// granted request `id`: `input` (in `format`) is the granted data — by batch exchange or
    /// file download stored for the requester's node alone, by service interface (服务接口)
    /// loaded keyed by the field `key` to answer its calls; returns the request once the
    /// delivery is durable and started.
    fn share_deliver(
        &self,
        department: Option<String>,
        id: String,
        format: String,
        key: Option<String>,
        input: PublishInput,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// This node's authority (政务数据共享主管部门) coordinates the open dispute on request `id`
    /// (Art. 28): settled with `outcome`, or referred to its people's government (`refer`).
    fn share_coordinate(
        &self,
        id: String,
        outcome: String,
        refer: bool,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The requesting department `department` calls the service interface of its granted
    /// request `id` with `keys`: `{header, records: [{key, record}], truncated}`.
    fn share_lookup(
        &self,
        department: Option<String>,
        id: String,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Catalog review and update obligations (Arts. 16–17).
    fn catalog_review(
        &self,
        request: ReviewRequest,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// This node's departments (names and public keys; never their secrets).
    fn departments(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Adds a department: its own key (certified by the jurisdiction key) and API token.
    /// Returns the department with its token, shown this once.
    fn department_add(
        &self,
        name: String,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Up to `limit` entries of this node's compliance ledger (合规台账, Art. 29) from entry
    /// `from` on, with the head the node signed last: `{size, head, entries}`.
    fn ledger(
        &self,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Checks the whole ledger against its tree and its signed head: `{ok: true, entries,
    /// root, …}`, or `{ok: false, entry, problem}` naming the first bad entry.
    fn ledger_verify(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Reads another node's records over the network (Art. 29 查阅), proved against its
    /// witnessed head: `{region, head, witnessed_by, entries, next}`.
    fn ledger_inspect(
        &self,
        params: InspectParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// The node's figures in the OpenMetrics text format (`GET /metrics`, for Prometheus).
    fn metrics(&self) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// Logs department `department`'s use record of data granted to it; returns the entry.
    fn ledger_record(
        &self,
        department: Option<String>,
        params: UseRecordParams,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;
}
