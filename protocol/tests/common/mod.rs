//! Shared fixtures: deterministic keys, a small administrative tree with certificates, catalog
//! entries and datasets; and ([`net`]) the in-memory network of endpoints every driving test
//! uses, with its durable store ([`store`]) and data plane ([`chunks`]).
#![allow(dead_code)]

pub mod chunks;
pub mod net;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, SharingAttribute, SharingMethod, SignedCatalogUpdate, UpdateFrequency,
};
use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::manifest::{
    build_manifest, PartitionEntry, Schema, SchemaField, SignedManifest,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::RegionCode;
use ed25519_dalek::SigningKey;

pub const T0: UnixMs = UnixMs(1_750_000_000_000);
pub const YEAR_MS: u64 = 365 * DAY_MS;

pub fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

/// A deterministic key from a label.
pub fn key(label: &str) -> SigningKey {
    SigningKey::from_bytes(blake3::hash(label.as_bytes()).as_bytes())
}

/// The test tree: national → 11 → 1101 → {110101 → {110101001, 110101002}, 110102 → {110102001}},
/// plus province 12 → 1201 (a sibling branch).
pub const TREE: &[&str] = &[
    "0",
    "11",
    "1101",
    "110101",
    "110101001",
    "110101002",
    "110102",
    "110102001",
    "12",
    "1201",
];

pub struct Fixture {
    pub ids: BTreeMap<RegionCode, NodeIdentity>,
    pub root_key: SigningKey,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_tree(TREE)
    }

    /// Certifies every region in `tree` (parents listed before children), valid for a year.
    pub fn with_tree(tree: &[&str]) -> Fixture {
        let root_key = key("national");
        let mut ids = BTreeMap::new();
        ids.insert(
            RegionCode::NATIONAL,
            NodeIdentity::national(root_key.clone()),
        );
        for s in tree.iter().skip(1) {
            let c = code(s);
            let parent = &ids[&c.parent().unwrap()];
            let id = parent
                .certify_child(
                    &key(s),
                    format!("peer-{s}").into_bytes(),
                    T0.minus_ms(DAY_MS),
                    T0.plus_ms(YEAR_MS),
                    c,
                    1,
                )
                .unwrap();
            ids.insert(c, id);
        }
        Fixture { ids, root_key }
    }

    pub fn id(&self, s: &str) -> &NodeIdentity {
        &self.ids[&code(s)]
    }

    pub fn trust(&self) -> TrustStore {
        TrustStore::new(self.root_key.verifying_key())
    }
}

pub fn entry(id: &str, department: &str) -> CatalogEntry {
    CatalogEntry {
        id: id.to_string(),
        name: format!("{id} 户籍人口信息"),
        data_items: vec![
            DataItem {
                name: "公民身份号码".into(),
                data_type: DataType::Text,
                description: "18 位身份号码".into(),
            },
            DataItem {
                name: "户籍地".into(),
                data_type: DataType::RegionCode,
                description: "12 位统计用区划代码".into(),
            },
        ],
        provider: department.to_string(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Daily,
        sharing: SharingAttribute::Conditional {
            scope: vec!["本省政府部门".into()],
            permitted_uses: vec!["社会保障资格核验".into()],
        },
        sharing_methods: vec![SharingMethod::ServiceApi, SharingMethod::BatchExchange],
        usage_conditions: "仅限核验,不得留存".into(),
        classification: "人口/户籍".into(),
        grade: DataGrade::Important,
    }
}

pub fn origin(region: &str, department: &str) -> CatalogOrigin {
    CatalogOrigin {
        region: code(region),
        department: department.to_string(),
    }
}

pub fn signed_update(
    fx: &Fixture,
    region: &str,
    department: &str,
    seq: u64,
    changes: Vec<CatalogChange>,
) -> SignedCatalogUpdate {
    SignedCatalogUpdate::sign(
        CatalogUpdate {
            origin: origin(region, department),
            seq,
            issued_at: T0,
            changes,
        },
        fx.id(region),
    )
    .unwrap()
}

pub fn add(id: &str, department: &str) -> CatalogChange {
    CatalogChange::Add(Arc::new(entry(id, department)))
}

pub fn schema() -> Schema {
    Schema {
        header: "姓名,村居\n".as_bytes().to_vec(),
        name: "低保对象名单".into(),
        fields: vec![
            SchemaField {
                name: "姓名".into(),
                data_type: DataType::Text,
            },
            SchemaField {
                name: "村居".into(),
                data_type: DataType::RegionCode,
            },
        ],
    }
}

/// Deterministic content for a partition: `len` bytes derived from the region and version.
pub fn content(region: RegionCode, version: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut reader = blake3::Hasher::new()
        .update(format!("{region}/{version}").as_bytes())
        .finalize_xof();
    reader.fill(&mut out);
    out
}

/// A dataset: content per region, entries, and the signed manifest.
pub struct Dataset {
    pub contents: BTreeMap<RegionCode, Vec<u8>>,
    pub entries: Vec<PartitionEntry>,
    pub manifest: SignedManifest,
}

/// Publishes `dataset` version `version` at `publisher` with scope `scope`, one partition per
/// listed region with `sizes` bytes.
#[allow(clippy::too_many_arguments)]
pub fn dataset(
    fx: &Fixture,
    name: &str,
    version: u64,
    previous: Option<[u8; 32]>,
    publisher: &str,
    scope: &str,
    parts: &[(&str, usize)],
    issued_at: UnixMs,
    validity_ms: u64,
) -> Dataset {
    let contents = parts
        .iter()
        .map(|(r, len)| (code(r), content(code(r), version, *len)))
        .collect();
    dataset_of(
        fx,
        name,
        version,
        previous,
        publisher,
        scope,
        contents,
        issued_at,
        validity_ms,
    )
}

/// [`dataset`] with the content of every partition given (e.g. a new version that changes
/// only some); each partition counts one record per 10 bytes.
#[allow(clippy::too_many_arguments)]
pub fn dataset_of(
    fx: &Fixture,
    name: &str,
    version: u64,
    previous: Option<[u8; 32]>,
    publisher: &str,
    scope: &str,
    contents: BTreeMap<RegionCode, Vec<u8>>,
    issued_at: UnixMs,
    validity_ms: u64,
) -> Dataset {
    let schema = schema();
    let entries: Vec<PartitionEntry> = contents
        .iter()
        .map(|(c, data)| PartitionEntry::for_content(*c, data, data.len() as u64 / 10, &schema))
        .collect();
    let m = build_manifest(
        name.into(),
        version,
        origin(publisher, "民政部"),
        code(scope),
        issued_at,
        issued_at.plus_ms(validity_ms),
        previous,
        schema,
        &entries,
    )
    .unwrap();
    let manifest = SignedManifest::sign(m, fx.id(publisher)).unwrap();
    Dataset {
        contents,
        entries,
        manifest,
    }
}
