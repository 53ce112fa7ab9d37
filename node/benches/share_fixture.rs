//! The cross-country share request of issue 17's tests and bench: a 北京 county's department
//! (东城区 民政局) asks a 广东 township's (镇人社分局) for its conditional social-insurance entry,
//! by batch exchange. Shared by `benches/share.rs` and `tests/share.rs` (`#[path]`).
// Cargo also builds this file as a bench target of its own, where nothing uses it.
#![allow(dead_code)]

use backflow_api::ShareFileParams;
use backflow_node::node::now_ms;
use backflow_protocol::calendar::beijing_date;
use backflow_protocol::catalog::{
    CatalogEntry, DataFormat, DataGrade, DataItem, DataType, SharingAttribute, SharingMethod,
    UpdateFrequency,
};
use backflow_protocol::time::DAY_MS;

pub const REQUESTER: &str = "110101";
pub const PROVIDER: &str = "441900003";

/// The provider department's catalog entry (有条件共享, batch exchange).
pub fn entry() -> CatalogEntry {
    CatalogEntry {
        id: "shebao-2026".into(),
        name: "社会保险参保信息".into(),
        data_items: vec![DataItem {
            name: "公民身份号码".into(),
            data_type: DataType::Text,
            description: "18 位身份号码".into(),
        }],
        provider: "镇人社分局".into(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Conditional {
            scope: vec!["政府部门".into()],
            permitted_uses: vec!["社会救助资格核查".into()],
        },
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: "仅限核查".into(),
        classification: "社会保障".into(),
        grade: DataGrade::General,
    }
}

/// The request as the requester's department files it; `scenario` tells requests apart (a
/// request's id is a digest of what it states).
pub fn filing(scenario: &str) -> ShareFileParams {
    ShareFileParams {
        provider_region: PROVIDER.into(),
        provider_department: "镇人社分局".into(),
        entry_id: "shebao-2026".into(),
        basis: "《社会救助暂行办法》第十一条".into(),
        scenario: scenario.into(),
        scope: "东城区低保申请人".into(),
        method: "batch_exchange".into(),
        // The term of use runs well past any deadline of a run, whenever it runs.
        use_until: beijing_date(now_ms().plus_ms(300 * DAY_MS))
            .expect("a date")
            .to_string(),
        approved_by: "民政局数据共享工作机构负责人".into(),
        department: None,
    }
}
