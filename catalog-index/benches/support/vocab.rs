//! The simulator's catalog vocabulary (copied from `simnet/src/catalog_plan.rs`, which this
//! crate must not depend on): department names, entry topics and data items. Shared by the
//! bench and the tests (`#[path]`).

/// Departments of a jurisdiction.
pub const DEPARTMENTS: [&str; 24] = [
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

/// What an entry's data set is about; entry `e` of a department is `TOPICS[e % len]`.
pub const TOPICS: [&str; 16] = [
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

/// Data items an entry draws from: (name, description).
pub const ITEMS: [(&str, &str); 12] = [
    ("统一社会信用代码", "18 位法人和其他组织统一社会信用代码"),
    ("公民身份号码", "18 位"),
    ("名称", "单位或个人名称"),
    ("行政区划代码", "12 位统计用区划代码"),
    ("登记日期", "YYYY-MM-DD"),
    ("办理时间", "北京时间"),
    ("金额", "单位：元"),
    ("数量", "计数"),
    ("地址", "详细地址"),
    ("联系电话", "固定电话或手机号码"),
    ("状态", "有效、注销或吊销"),
    ("是否有效", "是或否"),
];
