//! The unified-catalog scenario's plan (`simnet catalog`, issue 17): every node's departments
//! and the Art. 13 catalog entries each publishes, and when. Deterministic from the seed;
//! below `protonode`, which publishes what it says, and `catalog_scale`, which checks national
//! against it.

use std::sync::Arc;

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, SharingAttribute, SharingMethod, UpdateFrequency,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;

use crate::time::Micros;

/// Departments of a jurisdiction, in the order nodes take them (a node with more takes
/// `name-2`, `name-3`, …).
const DEPARTMENTS: [&str; 24] = [
    "公安局",
    "民政局",
    "人力资源和社会保障局",
    "自然资源局",
    "生态环境局",
    "住房和城乡建设局",
    "交通运输局",
    "农业农村局",
    "卫生健康委员会",
    "市场监督管理局",
    "教育局",
    "财政局",
    "统计局",
    "应急管理局",
    "水利局",
    "商务局",
    "文化和旅游局",
    "退役军人事务局",
    "医疗保障局",
    "司法局",
    "审计局",
    "林业和草原局",
    "体育局",
    "政务服务和数据管理局",
];

/// What an entry's data set is about; entry `e` of a department is `TOPICS[e % len]`
/// (numbered after the first round).
const TOPICS: [&str; 16] = [
    "基础信息",
    "登记信息",
    "行政许可信息",
    "行政处罚信息",
    "年度统计数据",
    "监测数据",
    "业务办理记录",
    "服务事项目录",
    "从业人员名录",
    "专项资金拨付信息",
    "检查记录",
    "投诉举报信息",
    "资质认定信息",
    "项目备案信息",
    "证照信息",
    "信用评价信息",
];

/// Data items an entry draws from (name, type, description).
const ITEMS: [(&str, DataType, &str); 12] = [
    (
        "统一社会信用代码",
        DataType::Text,
        "18 位法人和其他组织统一社会信用代码",
    ),
    ("公民身份号码", DataType::Text, "18 位"),
    ("名称", DataType::Text, "单位或个人名称"),
    ("行政区划代码", DataType::RegionCode, "12 位统计用区划代码"),
    ("登记日期", DataType::Date, "YYYY-MM-DD"),
    ("办理时间", DataType::DateTime, "北京时间"),
    ("金额", DataType::Decimal, "单位：元"),
    ("数量", DataType::Integer, "计数"),
    ("地址", DataType::Text, "详细地址"),
    ("联系电话", DataType::Text, "固定电话或手机号码"),
    ("状态", DataType::Text, "有效、注销或吊销"),
    ("是否有效", DataType::Boolean, "是或否"),
];

const FREQUENCIES: [UpdateFrequency; 5] = [
    UpdateFrequency::Daily,
    UpdateFrequency::Monthly,
    UpdateFrequency::RealTime,
    UpdateFrequency::Quarterly,
    UpdateFrequency::Yearly,
];

/// Entries per department at most (one version carries them all).
pub const ENTRIES_PER_DEPARTMENT_MAX: u32 = 256;
/// Data items per entry at most.
pub const ITEMS_PER_ENTRY_MAX: u32 = 12;
/// Departments per node at most.
pub const DEPARTMENTS_PER_NODE_MAX: u32 = 200;

/// What every node publishes: `departments` departments, each one catalog version with
/// `entries` entries of `items` data items.
#[derive(Clone, Debug)]
pub struct CatalogPlan {
    pub seed: u64,
    pub departments: u32,
    pub entries: u32,
    pub items: u32,
    /// Nodes publish at a time drawn in [0, this] (µs).
    pub window_us: Micros,
}

impl CatalogPlan {
    /// Name of a node's department `d` (unique within the node).
    pub fn department(&self, d: u32) -> String {
        let base = DEPARTMENTS[d as usize % DEPARTMENTS.len()];
        match d as usize / DEPARTMENTS.len() {
            0 => base.to_string(),
            k => format!("{base}-{}", k + 1),
        }
    }

    /// Entry `e` of department `d` at `me`.
    pub fn entry(&self, me: RegionCode, d: u32, e: u32) -> CatalogEntry {
        let department = self.department(d);
        let topic = TOPICS[e as usize % TOPICS.len()];
        let round = e as usize / TOPICS.len();
        let name = if round == 0 {
            format!("{department}{topic}")
        } else {
            format!("{department}{topic}（{}）", round + 1)
        };
        let mix = blake3::hash(
            &[
                &me.digits().to_le_bytes()[..],
                &d.to_le_bytes(),
                &e.to_le_bytes(),
                &self.seed.to_le_bytes(),
            ]
            .concat(),
        );
        let b = mix.as_bytes();
        let data_items = (0..self.items as usize)
            .map(|k| {
                let (name, data_type, description) = &ITEMS[(b[0] as usize + k) % ITEMS.len()];
                DataItem {
                    name: name.to_string(),
                    data_type: *data_type,
                    description: description.to_string(),
                }
            })
            .collect();
        let conditional = b[1] % 10 < 4;
        CatalogEntry {
            id: format!("{me}-{d:03}-{e:04}"),
            name,
            data_items,
            provider: department,
            format: if b[2].is_multiple_of(4) {
                DataFormat::Spreadsheet
            } else {
                DataFormat::Table
            },
            update_frequency: FREQUENCIES[b[3] as usize % FREQUENCIES.len()],
            sharing: if conditional {
                SharingAttribute::Conditional {
                    scope: vec!["政务部门".to_string()],
                    permitted_uses: vec!["履行法定职责".to_string()],
                }
            } else {
                SharingAttribute::Unconditional
            },
            sharing_methods: vec![SharingMethod::BatchExchange, SharingMethod::ServiceApi],
            usage_conditions: if conditional {
                "仅限履职使用，不得向第三方提供".to_string()
            } else {
                String::new()
            },
            classification: format!("政务/{}", &DEPARTMENTS[d as usize % DEPARTMENTS.len()]),
            grade: if b[4].is_multiple_of(20) {
                DataGrade::Important
            } else {
                DataGrade::General
            },
        }
    }

    /// Department `d`'s first catalog version at `me`: every entry added.
    pub fn update(&self, me: RegionCode, d: u32, now: UnixMs) -> CatalogUpdate {
        CatalogUpdate {
            origin: CatalogOrigin {
                region: me,
                department: self.department(d),
            },
            seq: 1,
            issued_at: now,
            changes: (0..self.entries)
                .map(|e| CatalogChange::Add(Arc::new(self.entry(me, d, e))))
                .collect(),
        }
    }

    /// When `me` publishes (µs from the start).
    pub fn publish_at(&self, me: RegionCode) -> Micros {
        if self.window_us == 0 {
            return 0;
        }
        let h = blake3::hash(
            &[
                &b"catalog-at"[..],
                &me.digits().to_le_bytes(),
                &self.seed.to_le_bytes(),
            ]
            .concat(),
        );
        let mut x = [0u8; 8];
        x.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(x) % (self.window_us + 1)
    }

    /// Entries every node publishes.
    pub fn entries_per_node(&self) -> u64 {
        u64::from(self.departments) * u64::from(self.entries)
    }
}
