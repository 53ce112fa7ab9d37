//! Every label of the console, Chinese first (zh-CN: the operators are a jurisdiction's
//! data-authority staff) with English beside it, in one table ([`Msg::pair`]). A page never
//! writes a label itself; it asks [`Lang::t`].

/// The page language: a `lang` cookie set by `?lang=en` / `?lang=zh`; Chinese by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// `zh` or `en` (the query and cookie value); anything else is not a language here.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "zh" | "zh-CN" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `<html lang>` attribute.
    pub fn html_tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The other language, for the switch link.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn t(self, m: Msg) -> &'static str {
        let (zh, en) = m.pair();
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// Between a label and its value: "：" / ": ".
    pub fn colon(self) -> &'static str {
        match self {
            Lang::Zh => "：",
            Lang::En => ": ",
        }
    }

    /// An age: "3 分钟前" / "3 min ago".
    pub fn ago(self, secs: u64) -> String {
        let (n, zh, en) = match secs {
            0..=59 => return self.t(Msg::JustNow).to_string(),
            60..=3_599 => (secs / 60, "分钟前", "min ago"),
            3_600..=86_399 => (secs / 3_600, "小时前", "h ago"),
            _ => (secs / 86_400, "天前", "d ago"),
        };
        match self {
            Lang::Zh => format!("{n} {zh}"),
            Lang::En => format!("{n} {en}"),
        }
    }

    /// Working days left to a deadline: "剩余 N 个工作日".
    pub fn working_days_left(self, n: u32) -> String {
        match self {
            Lang::Zh => format!("剩余 {n} 个工作日"),
            Lang::En if n == 1 => "1 working day left".to_string(),
            Lang::En => format!("{n} working days left"),
        }
    }

    /// "12 条结果" / "12 results".
    pub fn results(self, n: u64) -> String {
        match self {
            Lang::Zh => format!("共 {n} 条结果"),
            Lang::En => format!("{n} results"),
        }
    }
}

/// A label. Add a variant and its pair below; the compiler finds every use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Title,
    Switch,
    NavOverview,
    NavReturnFlow,
    NavCatalog,
    NavSharing,
    NavLedger,
    Logout,
    Login,
    TokenLabel,
    LoginHint,
    LoginRefused,
    Forbidden,
    BackendError,
    BadInput,
    CsrfRefused,
    JustNow,
    None,
    // Overview
    Jurisdiction,
    Code,
    Level,
    Ancestors,
    Children,
    Peers,
    PeerId,
    VerifiedRegion,
    Relation,
    Transport,
    Address,
    RelParent,
    RelChild,
    RelOther,
    Unverified,
    Disk,
    DiskFree,
    DiskLow,
    UpstreamContact,
    NoPeers,
    DatasetsSummary,
    DatasetsHeld,
    DatasetsComplete,
    // Return flow (数据回流)
    ReturnFlowIntro,
    Dataset,
    Version,
    Publisher,
    Department,
    Region,
    State,
    StateComplete,
    StatePartial,
    StatePending,
    StateStuck,
    StuckHint,
    Timeline,
    TimelineHint,
    TreeTop,
    Regions,
    Records,
    Bytes,
    LastReceipt,
    Progress,
    Live,
    NoDatasets,
    AllDatasets,
    HeldHere,
    PublishedHere,
    Delivered,
    Expected,
    Show,
    // Catalog (数据目录)
    CatalogIntro,
    Search,
    SearchPlaceholder,
    Score,
    EntryId,
    Name,
    Provider,
    DataItems,
    Format,
    UpdateFrequency,
    SharingAttribute,
    SharingMethods,
    UsageConditions,
    Classification,
    Grade,
    NoResults,
    NotFound,
    ItemType,
    Description,
    Scope,
    PermittedUses,
    Reason,
    LegalBasis,
    AnySharing,
    Unconditional,
    Conditional,
    NotShared,
    PendingReviews,
    DutyChanges,
    Received,
    Occurred,
    Submission,
    NothingPending,
    Upstream,
    Busy,
    Published,
    Partitions,
    PublishNew,
    Publish,
    RegionField,
    StrictVillages,
    RecordsUnit,
    RegionsUnit,
    AuthoritySession,
    Connected,
    NotConnected,
    // Sharing (数据共享)
    SharingIntro,
    Incoming,
    Outgoing,
    Supervised,
    RequestId,
    Entry,
    Requester,
    Deadline,
    Overdue,
    Owner,
    Scenario,
    Method,
    UseUntil,
    NoRequests,
    More,
    Answer,
    Notice,
    Suspension,
    Ending,
    Disputes,
    Corrections,
    Consents,
    // Ledger (合规台账)
    LedgerIntro,
    LedgerSize,
    SignedHead,
    WitnessedHead,
    Witness,
    Root,
    Time,
    Kind,
    Subject,
    Detail,
    Seq,
    RecentEntries,
    Verify,
    VerifyOk,
    VerifyFailed,
    Signature,
}

impl Msg {
    /// (中文, English).
    pub fn pair(self) -> (&'static str, &'static str) {
        use Msg::*;
        match self {
            Title => ("Backflow 节点运维控制台", "Backflow node console"),
            Switch => ("English", "中文"),
            NavOverview => ("概览", "Overview"),
            NavReturnFlow => ("数据回流", "Return flow"),
            NavCatalog => ("数据目录", "Catalog"),
            NavSharing => ("数据共享", "Sharing"),
            NavLedger => ("合规台账", "Ledger"),
            Logout => ("退出登录", "Log out"),
            Login => ("登录", "Log in"),
            TokenLabel => (
                "API 令牌（节点或部门的 api.token）",
                "API token (the node's or a department's)",
            ),
            LoginHint => (
                "令牌只用于本次登录，不会显示或记录。",
                "The token is used for this login only; it is never shown or logged.",
            ),
            LoginRefused => ("令牌不正确。", "Wrong token."),
            Forbidden => (
                "此页面仅限本节点的数据共享主管部门（节点令牌）查看。",
                "Only the node's data-sharing authority (the node's token) may open this page.",
            ),
            BackendError => ("节点未能回答", "The node did not answer"),
            BadInput => ("输入过长或无效。", "Input too long or invalid."),
            CsrfRefused => (
                "表单已失效，请刷新页面后重试。",
                "The form has expired; reload the page and try again.",
            ),
            JustNow => ("刚刚", "just now"),
            None => ("无", "none"),
            Jurisdiction => ("本节点辖区", "This node's jurisdiction"),
            Code => ("区划代码", "Region code"),
            Level => ("层级", "Level"),
            Ancestors => ("上级区划", "Above"),
            Children => ("下级区划", "Below"),
            Peers => ("已连接节点", "Connected peers"),
            PeerId => ("节点标识", "Peer id"),
            VerifiedRegion => ("已验证区划", "Verified region"),
            Relation => ("关系", "Relation"),
            Transport => ("传输方式", "Transport"),
            Address => ("地址", "Address"),
            RelParent => ("上级节点", "parent"),
            RelChild => ("下级节点", "child"),
            RelOther => ("其他", "other"),
            Unverified => ("未验证", "unverified"),
            NoPeers => ("当前没有连接的节点。", "No peer is connected."),
            DatasetsSummary => ("数据集", "Datasets"),
            DatasetsHeld => ("持有的数据集版本", "Dataset versions held"),
            DatasetsComplete => ("已全部送达", "Delivered completely"),
            ReturnFlowIntro => (
                "数据回流（第二十四条）：各数据集版本向下级区划的送达情况。",
                "Return flow (数据回流, Art. 24): delivery of each dataset version to the regions below.",
            ),
            Dataset => ("数据集", "Dataset"),
            Version => ("版本", "Version"),
            Publisher => ("发布方", "Publisher"),
            Department => ("部门", "Department"),
            Region => ("区划", "Region"),
            State => ("状态", "State"),
            Disk => ("磁盘", "Disk"),
            DiskFree => ("可用", "free"),
            DiskLow => (
                "空间不足：收到的数据可能无法存储，请及时扩容",
                "low: received data may soon fail to be stored",
            ),
            UpstreamContact => ("上级节点最近联系", "Last word from upstream"),
            StateComplete => ("已送达", "complete"),
            StatePartial => ("部分送达", "partial"),
            StatePending => ("待送达", "pending"),
            StateStuck => ("停滞", "stuck"),
            StuckHint => (
                "停滞：未送达完毕，且 10 分钟内下级未发来任何回执。",
                "Stuck: not complete, and no receipt from below for 10 minutes.",
            ),
            Timeline => ("送达时间线", "Delivery time line"),
            TimelineHint => (
                "按各下级区划最新回执累计：横轴为自发布起的时间，纵轴为已送达区划数。",
                "By each child region's latest receipt: time since the version was issued, regions delivered.",
            ),
            TreeTop => ("本节点", "This node"),
            Regions => ("区划数", "Regions"),
            Records => ("记录数", "Records"),
            Bytes => ("数据量", "Bytes"),
            LastReceipt => ("最近回执", "Last receipt"),
            Progress => ("进度", "Progress"),
            Live => ("实时更新", "live"),
            NoDatasets => ("本节点尚未持有数据集。", "No dataset is held here yet."),
            AllDatasets => ("全部数据集", "All datasets"),
            HeldHere => ("本节点持有", "Held here"),
            PublishedHere => ("本节点发布", "Published here"),
            Delivered => ("已送达", "delivered"),
            Expected => ("应送达", "expected"),
            Show => ("查看", "Show"),
            CatalogIntro => (
                "政务数据目录（第十三条、第十六条）：统一目录检索。",
                "Government data catalog (政务数据目录, Arts. 13, 16): search the unified catalog.",
            ),
            Search => ("搜索", "Search"),
            SearchPlaceholder => (
                "目录名称、提供单位或数据项",
                "entry name, provider or data item",
            ),
            Score => ("相关度", "Score"),
            EntryId => ("目录标识", "Entry id"),
            Name => ("名称", "Name"),
            Provider => ("提供单位", "Provider"),
            DataItems => ("数据项", "Data items"),
            Format => ("数据格式", "Format"),
            UpdateFrequency => ("更新频率", "Update frequency"),
            SharingAttribute => ("共享属性", "Sharing attribute"),
            SharingMethods => ("共享方式", "Sharing methods"),
            UsageConditions => ("使用条件", "Usage conditions"),
            Classification => ("数据分类", "Classification"),
            Grade => ("数据分级", "Grade"),
            NoResults => ("没有找到符合条件的目录。", "No entry matches."),
            NotFound => ("未找到。", "Not found."),
            ItemType => ("类型", "Type"),
            Description => ("说明", "Description"),
            Scope => ("共享范围", "Sharing scope"),
            PermittedUses => ("使用用途", "Permitted uses"),
            Reason => ("理由", "Reason"),
            LegalBasis => ("依据", "Legal basis"),
            AnySharing => ("全部共享属性", "any sharing attribute"),
            Unconditional => ("无条件共享", "unconditional"),
            Conditional => ("有条件共享", "conditional"),
            NotShared => ("不予共享", "not shared"),
            PendingReviews => (
                "待审核的目录提交（第十七条）",
                "Catalog submissions awaiting review (Art. 17)",
            ),
            DutyChanges => (
                "职责变更后待更新的目录（第十七条）",
                "Catalog updates due after a change of duties (Art. 17)",
            ),
            Received => ("收到日期", "Received"),
            Occurred => ("发生日期", "Occurred"),
            Submission => ("提交编号", "Submission"),
            NothingPending => ("暂无待办。", "Nothing pending."),
            Upstream => ("上级节点连接", "Upstream"),
            Busy => ("正在进行的发布过多，请稍后再试。", "Too many publishes running; try again later."),
            Published => ("已发布", "Published"),
            Partitions => ("个分区", "partitions"),
            PublishNew => ("发布新版本", "Publish a new version"),
            Publish => ("发布", "Publish"),
            RegionField => ("区划代码字段", "Region code field"),
            StrictVillages => (
                "拒绝未知的村级代码",
                "Reject unknown village codes",
            ),
            RecordsUnit => ("条记录", "records"),
            RegionsUnit => ("个区划", "regions"),
            AuthoritySession => ("本节点（主管部门）", "this node (authority)"),
            Connected => ("已连接", "connected"),
            NotConnected => ("未连接", "not connected"),
            SharingIntro => (
                "共享申请（第二十至二十二条）：逾期的排在最前。",
                "Share requests (Arts. 20–22), overdue first.",
            ),
            Incoming => (
                "收到的申请（本节点提供数据）",
                "Requests received (this node provides)",
            ),
            Outgoing => (
                "发出的申请（本节点申请数据）",
                "Requests filed (this node requests)",
            ),
            Supervised => (
                "监督的申请（本节点为最低共同上级）",
                "Supervised (this node is the lowest common superior)",
            ),
            RequestId => ("申请编号", "Request"),
            Entry => ("目录", "Entry"),
            Requester => ("申请方", "Requester"),
            Deadline => ("期限", "Deadline"),
            Overdue => ("已逾期", "overdue"),
            Owner => ("待办方", "Next step"),
            Scenario => ("使用场景", "Scenario"),
            Method => ("共享方式", "Method"),
            UseUntil => ("使用时限", "Use until"),
            NoRequests => ("暂无申请。", "No request."),
            More => ("详情", "Details"),
            Answer => ("答复", "Answer"),
            Notice => ("一次性告知的材料", "Missing material (one-time notice)"),
            Suspension => ("暂停", "Suspension"),
            Ending => ("终止或处置", "Ending"),
            Disputes => ("争议（第二十八条）", "Disputes (Art. 28)"),
            Corrections => ("校核（第二十六条）", "Corrections (Art. 26)"),
            Consents => (
                "同意提供给第三方（第二十五条）",
                "Consents to pass on to a third party (Art. 25)",
            ),
            LedgerIntro => (
                "合规台账（第二十九条）：本节点的发布、送达、导出、共享行为与使用记录，签名并由上级见证。",
                "Compliance ledger (合规台账, Art. 29): this node's publishing, deliveries, exports, share acts and use records, signed and witnessed by the parent.",
            ),
            LedgerSize => ("台账条目", "Entries"),
            SignedHead => ("最近签名的树头", "Last signed head"),
            WitnessedHead => ("最近见证的树头", "Last witnessed head"),
            Witness => ("见证方", "Witness"),
            Root => ("根哈希", "Root"),
            Time => ("时间", "Time"),
            Kind => ("类型", "Kind"),
            Subject => ("对象", "Subject"),
            Detail => ("详情", "Detail"),
            Seq => ("序号", "No."),
            RecentEntries => ("最近条目", "Recent entries"),
            Verify => ("校验整个台账", "Verify the whole ledger"),
            VerifyOk => ("校验通过", "Verified"),
            VerifyFailed => ("校验失败", "Verification failed"),
            Signature => ("签名", "Signature"),
        }
    }
}

/// The catalog's enumerated values (Art. 13: 数据格式、更新频率、共享方式、数据分级, data item
/// types, the kinds of legal basis) by their variant name, and the ledger's entry kinds; an
/// unknown name as itself.
pub fn value_label(lang: Lang, variant: &str) -> String {
    const VALUES: &[(&str, &str, &str)] = &[
        ("Table", "数据库表", "table"),
        ("Csv", "CSV", "CSV"),
        ("Json", "JSON", "JSON"),
        ("Xml", "XML", "XML"),
        ("Spreadsheet", "电子表格", "spreadsheet"),
        ("Document", "文档", "document"),
        ("Image", "图像", "image"),
        ("RealTime", "实时", "real time"),
        ("Daily", "每日", "daily"),
        ("Weekly", "每周", "weekly"),
        ("Monthly", "每月", "monthly"),
        ("Quarterly", "每季度", "quarterly"),
        ("Yearly", "每年", "yearly"),
        ("Irregular", "不定期", "irregular"),
        ("ServiceApi", "服务接口", "service interface"),
        ("BatchExchange", "批量交换", "batch exchange"),
        ("FileDownload", "文件下载", "file download"),
        ("Core", "核心数据", "core"),
        ("Important", "重要数据", "important"),
        ("General", "一般数据", "general"),
        ("Text", "文本", "text"),
        ("Integer", "整数", "integer"),
        ("Decimal", "小数", "decimal"),
        ("Boolean", "布尔", "boolean"),
        ("Date", "日期", "date"),
        ("DateTime", "日期时间", "date and time"),
        ("Binary", "二进制", "binary"),
        ("RegionCode", "区划代码", "region code"),
        ("Law", "法律", "law"),
        (
            "AdministrativeRegulation",
            "行政法规",
            "administrative regulation",
        ),
        (
            "StateCouncilDecision",
            "国务院决定",
            "State Council decision",
        ),
        // The compliance ledger's entry kinds (合规台账, Art. 29).
        ("publish", "发布", "publish"),
        ("delivery_complete", "送达完成", "delivery complete"),
        ("receipt", "回执", "receipt"),
        ("export", "导出", "export"),
        ("share_act", "共享行为", "share act"),
        ("service_call", "服务接口调用", "service call"),
        ("catalog_review", "目录审核", "catalog review"),
        ("use_record", "使用记录", "use record"),
        ("note", "备注", "note"),
    ];
    VALUES.iter().find(|(v, _, _)| *v == variant).map_or_else(
        || variant.to_string(),
        |(_, zh, en)| match lang {
            Lang::Zh => zh.to_string(),
            Lang::En => en.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_deadlines_read_naturally() {
        assert_eq!(Lang::Zh.ago(5), "刚刚");
        assert_eq!(Lang::Zh.ago(180), "3 分钟前");
        assert_eq!(Lang::En.ago(180), "3 min ago");
        assert_eq!(Lang::En.ago(2 * 86_400 + 5), "2 d ago");
        assert_eq!(Lang::Zh.working_days_left(4), "剩余 4 个工作日");
        assert_eq!(Lang::En.working_days_left(1), "1 working day left");
    }
}
