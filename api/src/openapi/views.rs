//! Schemas of the node's answers that this crate does not type: the [`Backend`] hands the API
//! `serde_json::Value`s that the node builds from its own view types (`node/src/status.rs`,
//! `share_api.rs`, `review_api.rs`, `ledger_api.rs`, `api_backend.rs`, `catalog_search.rs`),
//! and the API passes them through unchanged. Mirroring those types field by field here would
//! be a second copy that drifts silently from the node's; instead each answer is a named
//! object whose description names the fields the node's view type really has. The
//! descriptions are these types' doc comments, so the Rust docs and the document say the same.
//!
//! [`Backend`]: crate::Backend

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// Every error the API itself answers: `{"error": "…"}`. The message names what is wrong (a
/// field, a line, a limit), never request bodies, file contents, tokens or keys.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// One described object: a unit struct (never built; it only names a schema) whose doc
/// comment is the schema's description.
macro_rules! described_object {
    ($($(#[doc = $doc:literal])+ $name:ident;)+) => {$(
        $(#[doc = $doc])+
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                object_described(&[$($doc),+])
            }
        }

        impl utoipa::ToSchema for $name {}
    )+};
}

fn object_described(lines: &[&str]) -> RefOr<Schema> {
    let text = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(text.trim().to_string()))
            .build(),
    ))
}

/// Bytes as they are (a streamed upload or export): CSV or NDJSON records.
pub struct Records;

impl utoipa::PartialSchema for Records {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .description(Some(
                    "The records: CSV (a header line, then one record a line) or NDJSON (one \
                     JSON object a line), streamed; never buffered whole.",
                ))
                .build(),
        ))
    }
}

impl utoipa::ToSchema for Records {}

described_object! {
    /// A publish report, once the new version is durable: `dataset`, `version`, `manifests`
    /// (one manifest hash in hex per scope, usually one), `partitions`, `records`, `bytes`,
    /// and `summary` (the partitioner's: `input_bytes`, `lines`, `records_routed`,
    /// `townships_with_records`, `townships_in_scope`, `runs_spilled`, `rejects`, `warnings`).
    /// `POST /api/publish` adds `job`, the publish's number for `GET /api/jobs/{id}`.
    PublishReport;

    /// One held dataset version and its delivery below this node: `dataset`, `version`,
    /// `manifest` (hex), `publisher` (region code), `department`, `published_here`,
    /// `issued_at` (Unix ms), `region` (whose children are listed), `held_complete`,
    /// `partitions_here`, `records_here`, `bytes_here`, `regions_expected`,
    /// `regions_delivered`, `records_delivered`, `bytes_delivered`, `complete`, and `children`:
    /// per child region `region`, `name`, `state` (`pending`, `partial`, `complete`, or `stuck`:
    /// short of complete with no receipt from below for 10 minutes), `has_children` (regions
    /// with partitions below it: `?region=` opens it), `regions_expected`, `regions_delivered`, `records_expected`, `records_delivered`,
    /// `bytes_expected`, `bytes_delivered`, `last_receipt_at` (Unix ms or null).
    DatasetStatus;

    /// A connected peer: `peer` (its libp2p id), `region` (its verified region code, or null
    /// before it is verified), `addr` (the latest connection's remote address, which shows the
    /// transport: `/tcp/` or `/quic-v1`).
    PeerView;

    /// The node's health: `disk` — the file system holding the data directory: `total_bytes`,
    /// `free_bytes` (available to the node), `low` (true under 10 % or 5 GiB free: received data
    /// and receipts may soon fail to be stored) — and `parent` (null at the national node): its
    /// `region`, `connected`, and `last_contact_at` (Unix ms of the latest message from it since
    /// this node started, or null).
    Health;

    /// A revocation in force here: `subject` (the region whose key is revoked), `key` (hex),
    /// `at` (issued, Unix ms), `issuer` (the issuer's region, or `root` for the offline root).
    RevocationView;

    /// An authority's act on a department's sharing rights (政务数据共享权限, Art. 27 ¶2):
    /// `region` and `department` (whose rights), `authority` (the region whose authority
    /// signed), `ordinal` (that authority's 1st, 2nd… act about the department), `at` (Beijing
    /// time), `suspended` (true: 暂停; false: reinstated, 恢复), `reason`, `rectify_by` (Beijing
    /// time, for a suspension) or `note`, and `approved_by`.
    RightsView;

    /// A correction request against returned data (回流数据校核申请, Art. 26 with Art. 24):
    /// `id` (hex), `role` (`requester` or `publisher`: this node's part), `requester_region`,
    /// `requester_department`, `dataset`, `publisher_region`, `publisher_department`,
    /// `version` (the version complained of), `items` (`key`, `field`, `problem`), `filed_at`
    /// and `due` (Beijing time; 10 working days), `state` (`open`, `corrected` or
    /// `not_an_error`), `overdue`, and once answered `answered_at`, `corrected_in` (the version
    /// carrying the correction), `corrected_held` (at the requester: whether this node holds
    /// that version or a later one, complete — exportable), `reason` and `approved_by`.
    ReturnedCorrectionView;

    /// One department's catalog within the page: `region`, `department`, `seq` (its catalog's
    /// version) and `entries` (catalog entries with every Art. 13 field; see CatalogEntry).
    DepartmentCatalog;

    /// A catalog entry found by id: `region` and `department` (whose catalog) and `entry` (the
    /// catalog entry with every Art. 13 field; see CatalogEntry).
    EntryWithOrigin;

    /// A search of the unified catalog: `total` (matches in all), `hits` (this page, best
    /// first: `region`, `region_name`, `department`, `entry_id`, `name`, `score`),
    /// `answered_by` (the region whose node searched: this node, or the nearest ancestor whose
    /// subtree covers the search) and `indexed_through` (catalog log entries indexed, when
    /// answered here; else null).
    SearchView;

    /// A catalog entry (数据目录) with every Art. 13 field: `id`, `name`, `data_items`
    /// (`name`, `data_type`, `description`), `provider` (the department whose catalog it is),
    /// `format`, `update_frequency`, `sharing` (`"Unconditional"`, `{"Conditional": {scope,
    /// permitted_uses}}` or `{"NotShared": {reason, legal_basis}}`), `sharing_methods`
    /// (`ServiceApi`, `BatchExchange`, `FileDownload`), `usage_conditions`, `classification`,
    /// `grade` (`Core`, `Important`, `General`). `node/catalog-entry.example.json` is a whole
    /// one.
    CatalogEntry;

    /// One share request (Arts. 20–28) as this node sees it: `id` (hex; a unique prefix of 8+
    /// digits names it), `requester`, `provider`, `entry`, `state`, `state_zh`, `attribute`,
    /// `method`, `scenario`, `use_until`, `owner` (`requester` or `provider`: who acts next),
    /// `received`, `deadline` (`article`, `due`, `working_days_left`, `overdue`), `notice`,
    /// `answer`, `acts`, `supervised`, `delivery` (`dataset`, `publisher`, `manifest`),
    /// `service` (`calls`, `keys`, `records`, `refused`, `last_call`), `suspension`, `ending`,
    /// `disputes`, `corrections`.
    ShareView;

    /// A service interface's answer (服务接口, Art. 22): `header` (the CSV header line; empty
    /// for NDJSON), `records` (`key`, and `record`: the line as the provider loaded it) and
    /// `truncated` (more records matched than one answer carries).
    LookupView;

    /// Catalog review (Arts. 16–17), overdue first: `submissions` (each a SubmissionView) and
    /// `duty_changes` (each a DutyChangeView); a department's token sees its own only.
    ReviewsView;

    /// A submission of catalog entries to the authority's review: `id`, `department`,
    /// `entries` (their ids), `state` (`pending`, `approved` or `returned`), `reasons`,
    /// `received`, `review_due` (`day`, `working_days_left`, `overdue`; while pending),
    /// `decided_by`. A decision's answer adds `catalog_seq` (the catalog's new version).
    SubmissionView;

    /// A change of law or duties that obliges a department to update its catalog: `id`,
    /// `department`, `occurred`, `basis`, `update_due` (`day`, `working_days_left`,
    /// `overdue`; while open), `extension`, `fulfilled_by` (the submission that fulfilled it).
    DutyChangeView;

    /// A department of this node: `name`, `key` (its public key, hex), `certified_until`
    /// (Unix ms). Never its secrets.
    DepartmentView;

    /// A department just added: `department` (a DepartmentView) and `token`, its API token,
    /// shown this once (the node keeps it only in the department's owner-only file).
    DepartmentAdded;

    /// A page of the compliance ledger (合规台账, Art. 29): `size` (entries in the log),
    /// `head` (the head the node signed last: `size`, `root`, `time`, `signature`; or null),
    /// `witnessed` (the last head its parent countersigned: `witness`, `size`, `root`, `time`;
    /// or null) and `entries` (each a LedgerEntry).
    LedgerPage;

    /// One ledger entry: `seq`, `time` (Beijing time), `time_ms`, `region`, `department`,
    /// `kind` (`publish`, `delivery_complete`, `receipt`, `export`, `share_act`,
    /// `service_call`, `catalog_review`, `use_record` or `note`), `act` (a share act's name),
    /// `subject`, `detail`, and for a use record `use_record` (`scenario`, `process`,
    /// `effect`, `storage`, `disposal`).
    LedgerEntry;

    /// The ledger checked against its tree, its signed head and every entry's seal:
    /// `{ok: true, entries, root, head_size, head_time, sealed, archived}` (`sealed`: entries
    /// whose seal was checked; `archived`: pruned entries in the archive files, checked against
    /// the tree), or `{ok: false, entry, problem}` naming the first bad entry.
    LedgerVerification;

    /// Another node's records read over the network (查阅, Art. 29): `region`, `head` (its
    /// head: `size`, `root`, `time`), `witnessed_by` (the parent that countersigned it),
    /// `entries` (each a LedgerEntry, proved included in that head), `sealed_by` (who sealed
    /// each entry, in order: `node` or the department's name, checked under its certificate)
    /// and `next` (where the next page starts, or null).
    LedgerInspection;

    /// This document: OpenAPI 3.1, generated from the handlers' annotations.
    OpenApiDocument;
}
