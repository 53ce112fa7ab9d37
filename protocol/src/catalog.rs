//! The government data catalog (政务数据目录, Arts. 12–17).
//!
//! A [`CatalogEntry`] carries every field Art. 13 requires. [`CatalogEntry::validate`] returns
//! *every* problem at once (Art. 21's "one-time notice", 一次性告知), including Art. 15's rules:
//! a conditional entry lists its sharing scope and permitted uses; a not-shared entry gives its
//! reason and the law / administrative regulation / State Council decision it rests on; and an
//! unconditional entry may not smuggle in usage conditions (不得擅自增设条件).
//!
//! A department's catalog is versioned (Art. 17, 动态更新): each [`CatalogUpdate`] carries the
//! next sequence number and a batch of add / update / withdraw changes, and is signed by the
//! department's jurisdiction ([`SignedCatalogUpdate`]). [`DepartmentCatalog::apply`] is
//! idempotent: an update at or below the current sequence is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::codec::{digest, encoded_len};
use crate::limits::{
    check_len, Bounded, LimitError, CATALOG_UPDATE_BYTES_MAX, CHANGES_PER_UPDATE_MAX,
    DATA_ITEMS_PER_ENTRY_MAX, LIST_ITEMS_MAX, NAME_BYTES_MAX, TEXT_BYTES_MAX,
};
use crate::time::UnixMs;

const UPDATE_DOMAIN: &[u8] = b"backflow/catalog-update/v1";

/// How long after signing a catalog version is still accepted when its signer's certificate
/// has expired in the meantime (it is relayed hop by hop, possibly through fallbacks).
pub const CATALOG_SIGNER_GRACE_MS: u64 = 30 * crate::time::DAY_MS;

/// One data item (数据项) of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataItem {
    pub name: String,
    pub data_type: DataType,
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    Text,
    Integer,
    Decimal,
    Boolean,
    Date,
    DateTime,
    Binary,
    /// A region code (统计用区划代码): what return-flow partitions by.
    RegionCode,
}

/// 数据格式.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFormat {
    /// Structured records (database table).
    Table,
    Csv,
    Json,
    Xml,
    Spreadsheet,
    Document,
    Image,
    Other(String),
}

/// 数据更新频率.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateFrequency {
    RealTime,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
    Irregular,
}

/// 共享方式 (Art. 22): 服务接口、批量交换、文件下载.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SharingMethod {
    ServiceApi,
    BatchExchange,
    FileDownload,
}

/// The kind of norm a not-shared entry rests on (Art. 14(3)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegalBasisKind {
    /// 法律
    Law,
    /// 行政法规
    AdministrativeRegulation,
    /// 国务院决定
    StateCouncilDecision,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalBasis {
    pub kind: LegalBasisKind,
    /// The norm and article, e.g. "《中华人民共和国保守国家秘密法》第二十八条".
    pub citation: String,
}

/// 共享属性 (Art. 14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharingAttribute {
    /// 无条件共享: available to every government department.
    Unconditional,
    /// 有条件共享: Art. 15 requires the sharing scope (共享范围) and permitted uses (使用用途).
    Conditional {
        scope: Vec<String>,
        permitted_uses: Vec<String>,
    },
    /// 不予共享: Art. 15 requires the reason (理由) and its legal basis (依据).
    NotShared {
        reason: String,
        legal_basis: Vec<LegalBasis>,
    },
}

/// 数据分级 (Data Security Law: core / important / general data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataGrade {
    Core,
    Important,
    General,
}

/// One catalog entry with every Art. 13 field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Stable identifier within the department's catalog.
    pub id: String,
    /// 数据目录名称
    pub name: String,
    /// 数据项
    pub data_items: Vec<DataItem>,
    /// 提供单位: must be the department whose catalog this is.
    pub provider: String,
    /// 数据格式
    pub format: DataFormat,
    /// 数据更新频率
    pub update_frequency: UpdateFrequency,
    /// 共享属性
    pub sharing: SharingAttribute,
    /// 共享方式
    pub sharing_methods: Vec<SharingMethod>,
    /// 使用条件 (for conditional entries; must be empty for unconditional ones).
    pub usage_conditions: String,
    /// 数据分类 (category within the classification standard).
    pub classification: String,
    /// 数据分级
    pub grade: DataGrade,
}

/// One problem found by validation; `field` is a path such as `data_items[3].name`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {kind}")]
pub struct CatalogProblem {
    pub field: String,
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    #[error("must not be empty")]
    Empty,
    #[error("{len} exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("duplicate value {0:?}")]
    Duplicate(String),
    #[error("conditional sharing must list the sharing scope (Art. 15)")]
    ConditionalWithoutScope,
    #[error("conditional sharing must list the permitted uses (Art. 15)")]
    ConditionalWithoutUses,
    #[error("not-shared data must state the reason (Art. 15)")]
    NotSharedWithoutReason,
    #[error("not-shared data must cite the law, administrative regulation or State Council decision (Arts. 14, 15)")]
    NotSharedWithoutLegalBasis,
    #[error("unconditional sharing must not add usage conditions (Art. 15)")]
    UnconditionalWithConditions,
    #[error("shared data must name at least one sharing method (Art. 22)")]
    NoSharingMethod,
    #[error("not-shared data must not offer sharing methods")]
    NotSharedWithMethods,
    #[error("provider {provider:?} is not the catalog's department {department:?}")]
    ProviderMismatch {
        provider: String,
        department: String,
    },
    #[error("entry {0:?} already exists; use update")]
    AlreadyExists(String),
    #[error("entry {0:?} does not exist")]
    NoSuchEntry(String),
    #[error("entry {0:?} is changed twice in one update")]
    ChangedTwice(String),
}

/// Collects problems so validation can report all of them.
#[derive(Default)]
struct Problems(Vec<CatalogProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, kind: ProblemKind) {
        self.0.push(CatalogProblem {
            field: field.into(),
            kind,
        });
    }

    /// Non-empty and within `max` bytes.
    fn text(&mut self, field: impl Into<String>, value: &str, max: usize, required: bool) {
        let field = field.into();
        if required && value.trim().is_empty() {
            self.push(field.clone(), ProblemKind::Empty);
        }
        if value.len() > max {
            self.push(
                field,
                ProblemKind::TooLong {
                    len: value.len(),
                    max,
                },
            );
        }
    }

    fn count(&mut self, field: &str, len: usize, max: usize) {
        if len > max {
            self.push(field, ProblemKind::TooLong { len, max });
        }
    }
}

impl CatalogEntry {
    /// Checks every Art. 13–15 rule and every size limit; returns all problems found.
    pub fn validate(&self) -> Result<(), Vec<CatalogProblem>> {
        let mut p = Problems::default();
        self.collect_problems("", &mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(p.0)
        }
    }

    fn collect_problems(&self, prefix: &str, p: &mut Problems) {
        let f = |name: &str| format!("{prefix}{name}");
        p.text(f("id"), &self.id, NAME_BYTES_MAX, true);
        p.text(f("name"), &self.name, NAME_BYTES_MAX, true);
        p.text(f("provider"), &self.provider, NAME_BYTES_MAX, true);
        p.text(
            f("classification"),
            &self.classification,
            NAME_BYTES_MAX,
            true,
        );
        p.text(
            f("usage_conditions"),
            &self.usage_conditions,
            TEXT_BYTES_MAX,
            false,
        );
        if let DataFormat::Other(name) = &self.format {
            p.text(f("format"), name, NAME_BYTES_MAX, true);
        }
        if self.data_items.is_empty() {
            p.push(f("data_items"), ProblemKind::Empty);
        }
        p.count(
            &f("data_items"),
            self.data_items.len(),
            DATA_ITEMS_PER_ENTRY_MAX,
        );
        let mut seen = BTreeSet::new();
        for (i, item) in self.data_items.iter().enumerate() {
            p.text(
                f(&format!("data_items[{i}].name")),
                &item.name,
                NAME_BYTES_MAX,
                true,
            );
            p.text(
                f(&format!("data_items[{i}].description")),
                &item.description,
                TEXT_BYTES_MAX,
                true,
            );
            if !seen.insert(item.name.as_str()) {
                p.push(
                    f(&format!("data_items[{i}].name")),
                    ProblemKind::Duplicate(item.name.clone()),
                );
            }
        }
        p.count(
            &f("sharing_methods"),
            self.sharing_methods.len(),
            LIST_ITEMS_MAX,
        );
        let methods: BTreeSet<_> = self.sharing_methods.iter().collect();
        if methods.len() != self.sharing_methods.len() {
            p.push(
                f("sharing_methods"),
                ProblemKind::Duplicate("sharing method".into()),
            );
        }
        match &self.sharing {
            SharingAttribute::Unconditional => {
                if !self.usage_conditions.trim().is_empty() {
                    p.push(
                        f("usage_conditions"),
                        ProblemKind::UnconditionalWithConditions,
                    );
                }
                if self.sharing_methods.is_empty() {
                    p.push(f("sharing_methods"), ProblemKind::NoSharingMethod);
                }
            }
            SharingAttribute::Conditional {
                scope,
                permitted_uses,
            } => {
                if scope.iter().all(|s| s.trim().is_empty()) {
                    p.push(f("sharing.scope"), ProblemKind::ConditionalWithoutScope);
                }
                if permitted_uses.iter().all(|s| s.trim().is_empty()) {
                    p.push(
                        f("sharing.permitted_uses"),
                        ProblemKind::ConditionalWithoutUses,
                    );
                }
                p.count(&f("sharing.scope"), scope.len(), LIST_ITEMS_MAX);
                p.count(
                    &f("sharing.permitted_uses"),
                    permitted_uses.len(),
                    LIST_ITEMS_MAX,
                );
                for (i, s) in scope.iter().enumerate() {
                    p.text(f(&format!("sharing.scope[{i}]")), s, TEXT_BYTES_MAX, false);
                }
                for (i, s) in permitted_uses.iter().enumerate() {
                    p.text(
                        f(&format!("sharing.permitted_uses[{i}]")),
                        s,
                        TEXT_BYTES_MAX,
                        false,
                    );
                }
                if self.sharing_methods.is_empty() {
                    p.push(f("sharing_methods"), ProblemKind::NoSharingMethod);
                }
            }
            SharingAttribute::NotShared {
                reason,
                legal_basis,
            } => {
                if reason.trim().is_empty() {
                    p.push(f("sharing.reason"), ProblemKind::NotSharedWithoutReason);
                }
                p.text(f("sharing.reason"), reason, TEXT_BYTES_MAX, false);
                if legal_basis.iter().all(|b| b.citation.trim().is_empty()) {
                    p.push(
                        f("sharing.legal_basis"),
                        ProblemKind::NotSharedWithoutLegalBasis,
                    );
                }
                p.count(&f("sharing.legal_basis"), legal_basis.len(), LIST_ITEMS_MAX);
                for (i, b) in legal_basis.iter().enumerate() {
                    p.text(
                        f(&format!("sharing.legal_basis[{i}].citation")),
                        &b.citation,
                        TEXT_BYTES_MAX,
                        false,
                    );
                }
                if !self.sharing_methods.is_empty() {
                    p.push(f("sharing_methods"), ProblemKind::NotSharedWithMethods);
                }
            }
        }
    }
}

/// Whose catalog: a department (部门) at a jurisdiction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CatalogOrigin {
    pub region: RegionCode,
    pub department: String,
}

/// One change in a catalog version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogChange {
    Add(Arc<CatalogEntry>),
    Update(Arc<CatalogEntry>),
    Withdraw { id: String, reason: String },
}

impl CatalogChange {
    pub fn entry_id(&self) -> &str {
        match self {
            CatalogChange::Add(e) | CatalogChange::Update(e) => &e.id,
            CatalogChange::Withdraw { id, .. } => id,
        }
    }
}

/// A catalog version: `seq` is the department's next sequence number (1 for the first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogUpdate {
    pub origin: CatalogOrigin,
    pub seq: u64,
    pub issued_at: UnixMs,
    pub changes: Vec<CatalogChange>,
}

impl CatalogUpdate {
    /// Validates the update on its own (every entry, every limit), returning all problems.
    /// Whether adds/updates/withdraws fit the current catalog is checked by `apply`.
    pub fn validate(&self) -> Result<(), Vec<CatalogProblem>> {
        let mut p = Problems::default();
        p.text(
            "origin.department",
            &self.origin.department,
            NAME_BYTES_MAX,
            true,
        );
        if self.seq == 0 {
            p.push("seq", ProblemKind::Empty);
        }
        if self.changes.is_empty() {
            p.push("changes", ProblemKind::Empty);
        }
        p.count("changes", self.changes.len(), CHANGES_PER_UPDATE_MAX);
        let mut ids = BTreeSet::new();
        for (i, change) in self.changes.iter().enumerate() {
            let prefix = format!("changes[{i}].");
            if !ids.insert(change.entry_id()) {
                p.push(
                    format!("{prefix}id"),
                    ProblemKind::ChangedTwice(change.entry_id().to_string()),
                );
            }
            match change {
                CatalogChange::Add(e) | CatalogChange::Update(e) => {
                    e.collect_problems(&prefix, &mut p);
                    if e.provider != self.origin.department {
                        p.push(
                            format!("{prefix}provider"),
                            ProblemKind::ProviderMismatch {
                                provider: e.provider.clone(),
                                department: self.origin.department.clone(),
                            },
                        );
                    }
                }
                CatalogChange::Withdraw { id, reason } => {
                    p.text(format!("{prefix}id"), id, NAME_BYTES_MAX, true);
                    p.text(format!("{prefix}reason"), reason, TEXT_BYTES_MAX, false);
                }
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(p.0)
        }
    }
}

/// A catalog version signed by the jurisdiction of `update.origin.region`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCatalogUpdate {
    pub update: CatalogUpdate,
    pub signer: CertChain,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid catalog update: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<CatalogProblem>),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("catalog of {origin_region} signed by {signer}, not by its own jurisdiction")]
    WrongSigner {
        origin_region: RegionCode,
        signer: RegionCode,
    },
    #[error("update {got} skips ahead of the catalog's sequence {current}")]
    Gap { current: u64, got: u64 },
    #[error("update for another department's catalog")]
    WrongOrigin,
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl SignedCatalogUpdate {
    /// Signs `update` as `identity`, which must be the jurisdiction of the update's origin.
    pub fn sign(
        update: CatalogUpdate,
        identity: &NodeIdentity,
    ) -> Result<SignedCatalogUpdate, CatalogError> {
        if identity.region != update.origin.region {
            return Err(CatalogError::WrongSigner {
                origin_region: update.origin.region,
                signer: identity.region,
            });
        }
        update.validate().map_err(CatalogError::Invalid)?;
        let signature = identity.sign(&digest(UPDATE_DOMAIN, &update));
        let signed = SignedCatalogUpdate {
            update,
            signer: identity.chain.clone(),
            signature,
        };
        signed.check_limits()?;
        Ok(signed)
    }

    /// Content hash (names the update in logs and dedup).
    pub fn hash(&self) -> [u8; 32] {
        digest(b"backflow/catalog-update-hash/v1", self)
    }

    /// Verifies limits, content rules, signer chain at `now`, and that the signer is the
    /// origin's own jurisdiction. For a *relayed* version: a signer certificate that expired
    /// after `issued_at` is tolerated for `CATALOG_SIGNER_GRACE_MS` (see the README's trust
    /// notes for the residual risk).
    pub fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), CatalogError> {
        self.verify_with_grace(trust, now, CATALOG_SIGNER_GRACE_MS)
    }

    /// [`Self::verify`] without the grace: the signer's chain must be valid at `now`. For a
    /// version entering the network at its own jurisdiction ([`crate::CatalogSync::submit`]),
    /// where nothing was in flight, so an expired key cannot inject backdated versions there.
    pub fn verify_fresh(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), CatalogError> {
        self.verify_with_grace(trust, now, 0)
    }

    fn verify_with_grace(
        &self,
        trust: &mut TrustStore,
        now: UnixMs,
        grace_ms: u64,
    ) -> Result<(), CatalogError> {
        self.check_limits()?;
        self.update.validate().map_err(CatalogError::Invalid)?;
        let d = digest(UPDATE_DOMAIN, &self.update);
        let who = if grace_ms == 0 {
            trust.verify_signed(&self.signer, now, &d, &self.signature)?
        } else {
            trust.verify_signed_relayed(
                &self.signer,
                now,
                self.update.issued_at,
                grace_ms,
                &d,
                &self.signature,
            )?
        };
        if who.region != self.update.origin.region {
            return Err(CatalogError::WrongSigner {
                origin_region: self.update.origin.region,
                signer: who.region,
            });
        }
        Ok(())
    }

    /// Whether refusing this copy with `error` (from [`Self::verify`]) is final: no other copy
    /// of the same version could pass here. True when a key in the signer's chain is revoked
    /// (random corruption cannot turn a key into a revoked one), or when the copy is authentic
    /// — chain and signature verify at its signing time, by the origin's jurisdiction — but a
    /// certificate expired beyond the grace. Anything else (bad signature, broken chain,
    /// invalid content, a certificate not yet valid, an expiry that does not verify at the
    /// signing time) may be a corrupted or forged copy of a version whose valid copy can still
    /// arrive, so a relaying node must wait for it rather than skip the version.
    pub fn refusal_is_final(&self, trust: &mut TrustStore, error: &CatalogError) -> bool {
        match error {
            CatalogError::Cert(CertError::Revoked { .. }) => true,
            CatalogError::Cert(CertError::Expired { .. }) => {
                let d = digest(UPDATE_DOMAIN, &self.update);
                trust
                    .verify_signed(&self.signer, self.update.issued_at, &d, &self.signature)
                    .is_ok_and(|who| who.region == self.update.origin.region)
            }
            _ => false,
        }
    }
}

impl Bounded for SignedCatalogUpdate {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)?;
        check_len(
            "catalog changes",
            self.update.changes.len(),
            CHANGES_PER_UPDATE_MAX,
        )?;
        check_len(
            "department bytes",
            self.update.origin.department.len(),
            NAME_BYTES_MAX,
        )?;
        // Entry contents are checked (and reported in full) by `validate`; the whole update
        // must fit comfortably in a frame so any single version can always be synced.
        check_len(
            "catalog update bytes",
            encoded_len(self),
            CATALOG_UPDATE_BYTES_MAX,
        )
    }
}

/// What applying an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The catalog advanced to the update's sequence.
    Advanced,
    /// Already at or past this sequence: nothing changed (idempotence).
    Duplicate,
}

/// One department's current catalog: the result of applying versions 1..=seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepartmentCatalog {
    pub origin: CatalogOrigin,
    pub seq: u64,
    pub entries: BTreeMap<String, Arc<CatalogEntry>>,
}

impl DepartmentCatalog {
    pub fn new(origin: CatalogOrigin) -> DepartmentCatalog {
        DepartmentCatalog {
            origin,
            seq: 0,
            entries: BTreeMap::new(),
        }
    }

    /// Applies the next version atomically: either every change applies or none does, and all
    /// problems are reported. Older or equal sequences are duplicates (no-op); a gap is an
    /// error so the sender resends from our sequence.
    pub fn apply(&mut self, update: &CatalogUpdate) -> Result<Applied, CatalogError> {
        let entries = &self.entries;
        let applied = check_next(&self.origin, self.seq, update, |id| {
            entries.contains_key(id)
        })?;
        if applied == Applied::Duplicate {
            return Ok(applied);
        }
        for change in &update.changes {
            match change {
                CatalogChange::Add(e) | CatalogChange::Update(e) => {
                    self.entries.insert(e.id.clone(), Arc::clone(e));
                }
                CatalogChange::Withdraw { id, .. } => {
                    self.entries.remove(id);
                }
            }
        }
        self.seq = update.seq;
        Ok(Applied::Advanced)
    }
}

/// Checks `update` as the next version of `origin`'s catalog, now at `seq` and holding the
/// entries for which `exists` is true: [`Applied::Duplicate`] for an older or equal sequence,
/// a gap or a change that does not fit (an add of an entry that exists, an update or a
/// withdrawal of one that does not — every problem listed) is an error, else
/// [`Applied::Advanced`] and the caller applies the changes. One rule for every holder of a
/// catalog, whether it keeps the entries ([`DepartmentCatalog`]) or only their ids
/// ([`crate::catalog_sync::CatalogSync`]).
pub fn check_next(
    origin: &CatalogOrigin,
    seq: u64,
    update: &CatalogUpdate,
    exists: impl Fn(&str) -> bool,
) -> Result<Applied, CatalogError> {
    if update.origin != *origin {
        return Err(CatalogError::WrongOrigin);
    }
    if update.seq <= seq {
        return Ok(Applied::Duplicate);
    }
    if update.seq != seq + 1 {
        return Err(CatalogError::Gap {
            current: seq,
            got: update.seq,
        });
    }
    let mut p = Problems::default();
    for (i, change) in update.changes.iter().enumerate() {
        let id = change.entry_id();
        let exists = exists(id);
        match change {
            CatalogChange::Add(_) if exists => {
                p.push(
                    format!("changes[{i}].id"),
                    ProblemKind::AlreadyExists(id.into()),
                );
            }
            CatalogChange::Update(_) | CatalogChange::Withdraw { .. } if !exists => {
                p.push(
                    format!("changes[{i}].id"),
                    ProblemKind::NoSuchEntry(id.into()),
                );
            }
            _ => {}
        }
    }
    if !p.0.is_empty() {
        return Err(CatalogError::Invalid(p.0));
    }
    Ok(Applied::Advanced)
}
