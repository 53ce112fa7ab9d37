//! The node's side of share requests (Arts. 20–22) for the API and the CLI: what they show
//! (parties, state, the deadline running in Beijing time and the working days left — 剩余 N
//! 个工作日 — overdue first), how their JSON input becomes protocol acts, and the commands the
//! event loop runs on the endpoint for them.

use anyhow::{anyhow, bail, Result};
use backflow_api::{ShareActParams, ShareFileParams};
use backflow_protocol::calendar::{beijing_date, end_of_day, WorkingCalendar};
use backflow_protocol::catalog::{CatalogOrigin, SharingAttribute, SharingMethod};
use backflow_protocol::endpoint::Endpoint;
use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{
    Answer, CorrectionItem, DisposalMethod, Dispute, DisputeStage, Ending, Party, Recipient,
    RightsDecision, ShareAct, ShareCase, ShareRejection, ShareRequest, ShareState, UsageRefusal,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// One share request as shown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareView {
    /// The request id in hex (any unique prefix of 8 or more digits names it).
    pub id: String,
    pub requester: String,
    pub provider: String,
    pub entry: String,
    pub state: String,
    pub state_zh: String,
    pub attribute: String,
    pub method: String,
    pub scenario: String,
    pub use_until: String,
    /// Who must act next: `requester` or `provider`.
    pub owner: Option<String>,
    pub received: Option<String>,
    pub deadline: Option<DeadlineView>,
    /// The incomplete-material notice's items (一次性告知), if given.
    pub notice: Vec<String>,
    pub answer: Option<String>,
    pub acts: usize,
    /// This node is not a party but the parties' lowest common superior (最低共同上级),
    /// overseeing the case from the acts it forwarded.
    #[serde(default)]
    pub supervised: bool,
    /// A batch exchange or file download once started: the dataset to export at the
    /// requester, and the delivery manifest.
    #[serde(default)]
    pub delivery: Option<DeliveryView>,
    /// A service interface once open: at the provider, its calls counted (每次调用计数).
    #[serde(default)]
    pub service: Option<ServiceView>,
    /// The last suspension (Art. 27 ¶2): when, why, rectify by, and the rectification report.
    #[serde(default)]
    pub suspension: Option<String>,
    /// How the sharing ended: terminated or disposed of (Art. 27).
    #[serde(default)]
    pub ending: Option<String>,
    /// Disputes (Art. 28), each with its stage and who owns the next step.
    #[serde(default)]
    pub disputes: Vec<String>,
    /// Correction requests (Art. 26), each with its due day and answer.
    #[serde(default)]
    pub corrections: Vec<String>,
    /// The provider's consents to pass the data on to a third party (Art. 25: 经政务数据提供
    /// 部门同意), each with its recipient and purpose; without one the requester's node passes
    /// none of the data on.
    #[serde(default)]
    pub consents: Vec<String>,
    /// The requesting department's sharing rights suspended by an authority (暂停政务数据共享
    /// 权限, Art. 27 ¶2), as this node holds it: who, since when, why, rectify by.
    #[serde(default)]
    pub rights_suspended: Option<String>,
}

/// An answer of a service interface (服务接口) as the requesting department sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LookupView {
    /// The CSV header line (empty for NDJSON).
    pub header: String,
    pub records: Vec<LookupRecordView>,
    /// More records matched than one answer carries.
    pub truncated: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LookupRecordView {
    pub key: String,
    /// The record as the provider loaded it (a CSV row or an NDJSON object).
    pub record: String,
}

impl LookupView {
    pub fn of(a: backflow_protocol::service_interface::LookupAnswer) -> LookupView {
        LookupView {
            header: String::from_utf8_lossy(&a.header).into_owned(),
            records: a
                .records
                .into_iter()
                .map(|r| LookupRecordView {
                    key: r.key,
                    record: String::from_utf8_lossy(&r.line).into_owned(),
                })
                .collect(),
            truncated: a.truncated,
        }
    }
}

/// A service interface (服务接口) as its provider's node counts it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceView {
    /// Calls answered (with records or none found).
    pub calls: u64,
    pub keys: u64,
    pub records: u64,
    /// Calls refused (rate, term, store).
    pub refused: u64,
    pub last_call: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryView {
    /// The delivered dataset's name (`backflow export --dataset NAME --publisher REGION`).
    pub dataset: String,
    /// The provider's region: the dataset's publisher.
    pub publisher: String,
    pub manifest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadlineView {
    /// 21 (answer), 22 (delivery), 26 (a correction's answer), 27 (rectification while
    /// suspended; disposal of the data held by the end of the term of use).
    pub article: u8,
    /// The last day, ending 24:00 Beijing time.
    pub due: String,
    pub working_days_left: Option<u32>,
    pub overdue: bool,
}

pub fn hex_id(id: &Hash) -> String {
    hex::encode(id)
}

fn origin_text(o: &CatalogOrigin) -> String {
    format!("{} {}", o.region, o.department)
}

fn day(at: UnixMs) -> String {
    beijing_date(at).map_or_else(|_| at.to_string(), |d| d.to_string())
}

/// A moment as Beijing time (UTC+8), to the second: `2026-12-04 21:05:09`.
pub fn time_text(at: UnixMs) -> String {
    const BEIJING_OFFSET_MS: u64 = 8 * 3_600_000;
    let secs_of_day = (at.0 + BEIJING_OFFSET_MS) / 1000 % 86_400;
    format!(
        "{} {:02}:{:02}:{:02}",
        day(at),
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

fn state_names(s: ShareState) -> (&'static str, &'static str) {
    match s {
        ShareState::Submitted => ("submitted", "已提交"),
        ShareState::UnderReview => ("under_review", "审核中"),
        ShareState::Incomplete => ("incomplete", "材料不全"),
        ShareState::Extended => ("extended", "已延期"),
        ShareState::Granted => ("granted", "同意共享"),
        ShareState::Delivering => ("delivering", "共享中"),
        ShareState::Delivered => ("delivered", "已共享"),
        ShareState::Refused => ("refused", "不同意共享"),
        ShareState::Withdrawn => ("withdrawn", "已撤回"),
        ShareState::Expired => ("expired", "已过期"),
        ShareState::Suspended => ("suspended", "已暂停"),
        ShareState::Terminated => ("terminated", "已终止"),
        ShareState::Disposed => ("disposed", "已处置"),
    }
}

pub fn method_name(m: SharingMethod) -> &'static str {
    match m {
        SharingMethod::ServiceApi => "service_api (服务接口)",
        SharingMethod::BatchExchange => "batch_exchange (批量交换)",
        SharingMethod::FileDownload => "file_download (文件下载)",
    }
}

pub fn view(id: &Hash, case: &ShareCase, calendar: &WorkingCalendar, now: UnixMs) -> ShareView {
    let r = &case.request;
    let (state, state_zh) = state_names(case.state);
    let deadline = case.deadline().map(|(article, due)| DeadlineView {
        article,
        due: format!("{} 24:00", day(due.minus_ms(1))),
        working_days_left: calendar.working_days_left(now, due).ok(),
        overdue: now >= due,
    });
    let answer = case.answer.as_ref().map(|a| match a {
        Answer::Granted { conditions, .. } if conditions.is_empty() => "granted".to_string(),
        Answer::Granted { conditions, .. } => {
            format!("granted, conditions: {}", conditions.join("; "))
        }
        Answer::Refused { reasons, .. } => format!("refused: {reasons}"),
    });
    ShareView {
        id: hex_id(id),
        requester: origin_text(&r.requester),
        provider: origin_text(&r.provider),
        entry: r.entry_id.clone(),
        state: state.to_string(),
        state_zh: state_zh.to_string(),
        attribute: match case.attribute {
            SharingAttribute::Unconditional => "unconditional (无条件共享)",
            SharingAttribute::Conditional { .. } => "conditional (有条件共享)",
            SharingAttribute::NotShared { .. } => "not_shared (不予共享)",
        }
        .to_string(),
        method: method_name(r.method).to_string(),
        scenario: r.scenario.clone(),
        use_until: day(r.use_until.minus_ms(1)),
        owner: case.owner().map(|p| {
            match p {
                Party::Requester => "requester",
                Party::Provider => "provider",
            }
            .to_string()
        }),
        received: case.received_at.map(day),
        deadline,
        notice: case
            .notice
            .as_ref()
            .map(|n| n.missing.clone())
            .unwrap_or_default(),
        answer,
        acts: case.acts.len(),
        supervised: false,
        delivery: case.delivery.as_ref().and_then(|d| {
            Some(DeliveryView {
                dataset: crate::delivery::dataset_name(id),
                publisher: r.provider.region.to_string(),
                manifest: hex::encode(d.manifest?),
            })
        }),
        service: None,
        suspension: case.suspension.as_ref().map(|x| {
            let mut t = format!(
                "{} #{}: {} (approved by {}); rectify by {} (整改期限)",
                day(x.at),
                case.suspensions,
                x.reason,
                x.approved_by,
                day(x.rectify_by.minus_ms(1))
            );
            if let Some((at, report)) = &x.rectified {
                t.push_str(&format!("; rectification reported {}: {report}", day(*at)));
            }
            t
        }),
        disputes: case.disputes.iter().map(dispute_text).collect(),
        rights_suspended: None,
        consents: case
            .pass_on_consents()
            .map(|c| {
                format!(
                    "#{} {}: to {} for {} (approved by {})",
                    c.ordinal,
                    day(c.at),
                    c.recipient,
                    c.purpose,
                    c.approved_by
                )
            })
            .collect(),
        corrections: case
            .corrections
            .iter()
            .map(|c| {
                let items: Vec<String> = c
                    .items
                    .iter()
                    .map(|i| format!("{} {}: {}", i.key, i.field, i.problem))
                    .collect();
                let answer = match &c.answer {
                    None => {
                        let sent = case
                            .corrected_delivery(c.ordinal)
                            .map(|m| format!(" — corrected data sent as {}", &hex::encode(m)[..16]))
                            .unwrap_or_default();
                        format!("answer due {} (Art. 26){sent}", day(c.due.minus_ms(1)))
                    }
                    Some(a) if a.corrected => format!("corrected {} {}", day(a.at), a.reason),
                    Some(a) => format!("not an error {}: {}", day(a.at), a.reason),
                };
                format!(
                    "#{} {}: {} — {answer}",
                    c.ordinal,
                    day(c.at),
                    items.join("; ")
                )
            })
            .collect(),
        ending: case.ending.as_ref().map(|e| match e {
            Ending::Terminated {
                at,
                reason,
                negotiation,
                filing,
                approved_by,
            } => {
                format!(
                "terminated {} (已终止): {reason} (approved by {approved_by}); negotiation: {}; \
                 filing: {}",
                day(*at),
                negotiation.as_deref().unwrap_or("— (not rectified in time)"),
                filing.as_deref().unwrap_or("— (not rectified in time)")
            )
            }
            Ending::Disposed { at, method, record } => format!(
                "disposed of {} (已处置) by {}: {record}",
                day(*at),
                match method {
                    DisposalMethod::Delete => "deletion (删除)",
                    DisposalMethod::Return => "return (退还)",
                    DisposalMethod::Archive => "archiving (归档)",
                }
            ),
        }),
    }
}

/// Views of `cases` (each marked whether supervised), overdue first, then by deadline, then
/// the rest.
pub fn views<'a>(
    cases: impl Iterator<Item = (&'a Hash, &'a ShareCase, bool)>,
    calendar: &WorkingCalendar,
    now: UnixMs,
    overdue_only: bool,
) -> Vec<ShareView> {
    let mut out: Vec<(bool, Option<UnixMs>, ShareView)> = cases
        .map(|(id, c, supervised)| {
            let due = c.deadline().map(|(_, d)| d);
            let mut v = view(id, c, calendar, now);
            v.supervised = supervised;
            (c.overdue(now).is_some(), due, v)
        })
        .filter(|(overdue, _, _)| !overdue_only || *overdue)
        .collect();
    out.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.is_none().cmp(&b.1.is_none()))
            .then(a.1.cmp(&b.1))
            .then(a.2.id.cmp(&b.2.id))
    });
    out.into_iter().map(|(_, _, v)| v).collect()
}

/// The case named by `id`: its full hex id or a unique prefix of at least 8 hex digits.
pub fn find<'a>(
    cases: impl Iterator<Item = (&'a Hash, &'a ShareCase)>,
    id: &str,
) -> Result<(&'a Hash, &'a ShareCase)> {
    find_named(cases, id, "share request", "backflow share list")
}

/// The item of `items` named by `id` — its full hex id or a unique prefix of at least 8 hex
/// digits — called `what` in errors, as `listed_by` shows the ids.
pub fn find_named<'a, T>(
    items: impl Iterator<Item = (&'a Hash, &'a T)>,
    id: &str,
    what: &str,
    listed_by: &str,
) -> Result<(&'a Hash, &'a T)> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() < 8 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a {what} id is 8 to 64 hex digits (as `{listed_by}` shows it)");
    }
    let mut found = items.filter(|(key, _)| hex_id(key).starts_with(&id));
    let first = found
        .next()
        .ok_or_else(|| anyhow!("no {what} {id} at this node"))?;
    if found.next().is_some() {
        bail!("{id} names more than one {what}: give more digits");
    }
    Ok(first)
}

pub fn parse_method(text: &str) -> Result<SharingMethod> {
    match text.trim() {
        "service_api" | "api" | "服务接口" => Ok(SharingMethod::ServiceApi),
        "batch_exchange" | "batch" | "批量交换" => Ok(SharingMethod::BatchExchange),
        "file_download" | "file" | "文件下载" => Ok(SharingMethod::FileDownload),
        _ => bail!("sharing method must be service_api, batch_exchange or file_download"),
    }
}

/// A filing from the API: every missing or malformed field named at once.
pub fn request_of(
    p: &ShareFileParams,
    requester: CatalogOrigin,
    now: UnixMs,
) -> Result<ShareRequest> {
    let mut problems = Vec::new();
    let provider_region = RegionCode::parse(&p.provider_region)
        .map_err(|_| problems.push("provider_region is not a region code (0, 2, 4, 6 or 9 digits)"))
        .ok();
    let method = parse_method(&p.method)
        .map_err(|_| problems.push("method must be service_api, batch_exchange or file_download"))
        .ok();
    let until = p
        .use_until
        .trim()
        .parse::<backflow_protocol::calendar::Date>()
        .ok()
        .and_then(|d| end_of_day(d).ok());
    if until.is_none() {
        problems.push("use_until must be a date as YYYY-MM-DD (使用时限)");
    }
    match (provider_region, method, until) {
        (Some(region), Some(method), Some(use_until)) if problems.is_empty() => Ok(ShareRequest {
            requester,
            provider: CatalogOrigin {
                region,
                department: p.provider_department.trim().to_string(),
            },
            entry_id: p.entry_id.trim().to_string(),
            basis: p.basis.clone(),
            scenario: p.scenario.clone(),
            scope: p.scope.clone(),
            method,
            use_until,
            approved_by: p.approved_by.clone(),
            filed_at: now,
        }),
        _ => bail!("{}", problems.join("; ")),
    }
}

/// An act from the API (`act` names it; the other fields are its content). The case gives
/// the numbers of suspensions and disputes.
pub fn act_of(p: &ShareActParams, case: &ShareCase) -> Result<ShareAct> {
    let suspensions = case.suspensions;
    let disputes = case.disputes.len() as u32;
    let need = |field: &Option<String>, name: &str| -> Result<String> {
        field
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| anyhow!("{} needs {name}", p.act))
    };
    Ok(match p.act.as_str() {
        "grant" => ShareAct::Grant {
            conditions: p.conditions.clone(),
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "refuse" => ShareAct::Refuse {
            reasons: need(&p.reasons, "reasons (Art. 21: 应当说明理由)")?,
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "notice" => {
            if p.missing.iter().all(|m| m.trim().is_empty()) {
                bail!("notice needs missing: every missing item, at once (一次性告知)");
            }
            ShareAct::NoticeIncomplete {
                missing: p.missing.clone(),
            }
        }
        "supplement" => ShareAct::Supplement {
            material: need(&p.material, "material")?,
        },
        "extend" => ShareAct::Extend {
            working_days: p
                .days
                .ok_or_else(|| anyhow!("extend needs days (1 to 10 working days)"))?,
            authority_consent: need(&p.consent, "consent (the authority's recorded consent)")?,
            reason: need(&p.reason, "reason")?,
        },
        "start_delivery" => bail!(
            "a delivery starts with its data: share deliver ID --file FILE (with --key FIELD for \
             a service interface, 服务接口)"
        ),
        "delivered" => ShareAct::Delivered,
        "withdraw" => ShareAct::Withdraw {
            reason: p.reason.clone().unwrap_or_default(),
        },
        "suspend" => ShareAct::Suspend {
            ordinal: suspensions + 1,
            reason: need(&p.reason, "reason (the misuse found)")?,
            rectify_working_days: p.days.ok_or_else(|| {
                anyhow!("suspend needs days: the rectification period (限期整改), in working days")
            })?,
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "rectify" => ShareAct::Rectify {
            ordinal: suspensions,
            report: need(&p.record, "record (the rectification report, 整改情况)")?,
        },
        "reinstate" => ShareAct::Reinstate {
            ordinal: suspensions,
            note: p.record.clone().unwrap_or_default(),
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "terminate" => ShareAct::Terminate {
            reason: need(&p.reason, "reason")?,
            negotiation: p.negotiation.clone().unwrap_or_default(),
            filing: p.filing.clone().unwrap_or_default(),
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "dispose" => ShareAct::Dispose {
            method: match need(&p.disposal, "disposal (delete, return or archive)")?.as_str() {
                "delete" | "删除" => DisposalMethod::Delete,
                "return" | "退还" => DisposalMethod::Return,
                "archive" | "归档" => DisposalMethod::Archive,
                _ => bail!("dispose: disposal is delete (删除), return (退还) or archive (归档)"),
            },
            record: need(&p.record, "record (how and when the data was disposed of)")?,
        },
        "dispute" => ShareAct::OpenDispute {
            ordinal: disputes + 1,
            subject: need(&p.subject, "subject (what the dispute is about)")?,
            claim: need(&p.claim, "claim")?,
        },
        "escalate" => ShareAct::EscalateDispute { ordinal: disputes },
        "correction" => {
            if p.items.is_empty() {
                bail!("correction needs items: each record's key, field and what is wrong");
            }
            ShareAct::RequestCorrection {
                ordinal: case.corrections.len() as u32 + 1,
                items: p
                    .items
                    .iter()
                    .map(|i| CorrectionItem {
                        key: i.key.clone(),
                        field: i.field.clone(),
                        problem: i.problem.clone(),
                    })
                    .collect(),
            }
        }
        "answer_correction" => ShareAct::AnswerCorrection {
            ordinal: case.corrections.len() as u32,
            corrected: p.corrected.ok_or_else(|| {
                anyhow!(
                    "answer_correction needs corrected: true, or false (not an error) with reason"
                )
            })?,
            reason: p.reason.clone().unwrap_or_default(),
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        "settle" => ShareAct::SettleDispute {
            ordinal: disputes,
            outcome: need(&p.record, "record (what was agreed)")?,
        },
        "consent" => ShareAct::ConsentPassOn {
            ordinal: case.pass_on_consents().count() as u32 + 1,
            recipient: recipient_of(p)?,
            purpose: need(&p.purpose, "purpose (what the recipient uses the data for)")?,
            approved_by: need(&p.approved_by, "approved_by (负责人同意)")?,
        },
        other => bail!(
            "unknown act {:?}: grant, refuse, notice, supplement, extend, delivered, \
             withdraw, suspend, rectify, reinstate, terminate, dispose, dispute, escalate, \
             settle, correction, answer_correction or consent",
            other.chars().take(32).collect::<String>()
        ),
    })
}

/// Files a request as `department` of this node: checked against the provider's catalog entry
/// when this node's catalog holds it (a provider in its subtree), else field by field — the
/// provider's own catalog decides the entry's attribute when the request arrives there.
pub fn file(
    ep: &mut Endpoint<PeerId>,
    store: &crate::store::Store,
    now: UnixMs,
    department: &str,
    params: &ShareFileParams,
) -> Result<ShareView> {
    let requester = CatalogOrigin {
        region: ep.region(),
        department: department.to_string(),
    };
    let request = request_of(params, requester, now)?;
    let entry = crate::catalog_store::entry(store, &request.provider, &request.entry_id)?;
    let problems = match &entry {
        Some(e) => request.problems(e),
        None => request.field_problems(),
    };
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        bail!("the request cannot be filed: {}", list.join("; "));
    }
    let attribute = entry.map_or(SharingAttribute::Unconditional, |e| e.sharing.clone());
    let id = ep
        .file_share_request(now, request, attribute)
        .map_err(|e| anyhow!("the request cannot be filed: {e}"))?;
    show(ep, now, &hex_id(&id))
}

/// `department` of this node acts on the request `id`.
pub fn act(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    department: &str,
    id: &str,
    params: &ShareActParams,
) -> Result<ShareView> {
    let (&request, case) = find(ep.share_service().cases(), id)?;
    let act = act_of(params, case)?;
    let (requester, provider) = (
        origin_text(&case.request.requester),
        origin_text(&case.request.provider),
    );
    ep.share_act(now, &request, department, act)
        .map_err(|e| match e {
            ShareRejection::NotAParty => anyhow!(
                "this node's department ({department}) is not a party to request {id}: the \
                 requester is {requester} and the provider {provider}"
            ),
            e => anyhow!("not done: {e}"),
        })?;
    show(ep, now, &hex_id(&request))
}

/// The recipient a consent names (Art. 25): a department of a region, or a whole region.
fn recipient_of(p: &ShareActParams) -> Result<Recipient> {
    let region = p
        .recipient_region
        .as_deref()
        .ok_or_else(|| anyhow!("consent needs recipient_region (the third party's region)"))?;
    let region = RegionCode::parse(region.trim())
        .map_err(|_| anyhow!("recipient_region is not a region code (0, 2, 4, 6 or 9 digits)"))?;
    Ok(match p.recipient_department.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => Recipient::Department(CatalogOrigin {
            region,
            department: d.to_string(),
        }),
        _ => Recipient::Region(region),
    })
}

/// A grant's delivered data is exported only while the grant is usable at this node
/// ([`ShareCase::usable`]): within its term of use (使用时限, Art. 25) — whatever the
/// delivery manifest's own expiry says — and not while the requester's sharing is suspended,
/// nor once it was terminated or disposed of (Art. 27); nor a delivery whose request this node
/// does not hold.
pub fn check_in_force(ep: &Endpoint<PeerId>, now: UnixMs, request: &Hash) -> Result<()> {
    let short = &hex_id(request)[..8];
    match ep.share_service().case(request) {
        Some(c) => match ep.share_service().usable(c, now) {
            Ok(()) => Ok(()),
            Err(UsageRefusal::NotInForce { .. }) => {
                let (en, zh) = state_names(c.state);
                bail!("share request {short} is {en} ({zh}): its data is not exported (Art. 27)")
            }
            Err(e) => bail!("{e}"),
        },
        None => bail!("no share request {short} at this node: its delivery is not exported"),
    }
}

/// One dispute as shown: number, who opened it, its claim and its stage with the owner of
/// the next step.
fn dispute_text(d: &Dispute) -> String {
    let by = match d.opened_by {
        Party::Requester => "requester",
        Party::Provider => "provider",
    };
    let stage = match &d.stage {
        DisputeStage::Negotiating => {
            "negotiating (协商): the parties; either may take it to the authority".to_string()
        }
        DisputeStage::Coordinating { authority, since } => format!(
            "at the authority of {authority} since {} (协调): its to coordinate",
            day(*since)
        ),
        DisputeStage::Settled {
            at,
            coordinated,
            outcome,
        } => format!(
            "settled {} ({}): {outcome}",
            day(*at),
            if *coordinated {
                "协调解决"
            } else {
                "协商一致"
            }
        ),
        DisputeStage::Referred { at, outcome } => format!(
            "referred to the people's government {} (报本级人民政府决定): {outcome}",
            day(*at)
        ),
    };
    format!(
        "#{} by the {by} {} on {}: {} — {stage}",
        d.ordinal,
        day(d.opened_at),
        d.subject,
        d.claim
    )
}

/// This node's authority coordinates the open dispute of request `id` (Art. 28), held as a
/// party's case or as the supervisory copy of the parties' lowest common superior.
pub fn coordinate(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    id: &str,
    outcome: String,
    refer: bool,
) -> Result<ShareView> {
    let s = ep.share_service();
    let (&request, case) = find(s.cases(), id).or_else(|_| find(s.supervised(), id))?;
    let ordinal = case
        .open_dispute()
        .map(|d| d.ordinal)
        .ok_or_else(|| anyhow!("request {id} has no open dispute"))?;
    ep.coordinate_dispute(now, &request, ordinal, outcome, refer)
        .map_err(|e| match e {
            ShareRejection::NotAParty => anyhow!(
                "this node's authority does not coordinate disputes on request {id}: the \
                 parties' lowest common superior does (Art. 28)"
            ),
            e => anyhow!("not done: {e}"),
        })?;
    show(ep, now, &hex_id(&request))
}

/// The full id of the request `id` names (see [`find`]).
pub fn request_id(ep: &Endpoint<PeerId>, id: &str) -> Result<Hash> {
    find(ep.share_service().cases(), id).map(|(h, _)| *h)
}

pub fn show(ep: &Endpoint<PeerId>, now: UnixMs, id: &str) -> Result<ShareView> {
    let s = ep.share_service();
    match find(s.cases(), id) {
        Ok((id, case)) => {
            let mut v = view(id, case, s.calendar(), now);
            v.rights_suspended = rights_text(ep, case);
            v.service = ep.service_usage(id).map(|u| ServiceView {
                calls: u.calls,
                keys: u.keys,
                records: u.records,
                refused: u.refused,
                last_call: u.last_call_at.map(time_text),
            });
            Ok(v)
        }
        Err(e) => {
            // Not a party: perhaps overseen here.
            let (id, case) = find(s.supervised(), id).map_err(|_| e)?;
            let mut v = view(id, case, s.calendar(), now);
            v.supervised = true;
            v.rights_suspended = rights_text(ep, case);
            Ok(v)
        }
    }
}

/// The suspension of `case`'s requester's sharing rights in force here, or the termination of
/// the sharing the case belongs to, as shown.
fn rights_text(ep: &Endpoint<PeerId>, case: &ShareCase) -> Option<String> {
    if let Some(at) = ep.share_service().ended_by_authority(case) {
        return Some(format!(
            "the sharing was terminated by an authority at {} (终止共享, Art. 27): this grant has \
             ended — nothing is delivered or used; dispose of the data",
            time_text(at)
        ));
    }
    let s = ep
        .share_service()
        .rights()
        .suspension(&case.request.requester)?;
    let RightsDecision::Suspend {
        reason, rectify_by, ..
    } = &s.body.decision
    else {
        return None;
    };
    Some(format!(
        "by the authority of {} since {}: {reason}; to rectify by {} (nothing is granted, \
         delivered or used until it reinstates)",
        s.body.issuer,
        time_text(s.body.at),
        time_text(*rectify_by)
    ))
}

/// Cases this node is a party to, and those it oversees as the parties' lowest common
/// superior.
pub fn list(ep: &Endpoint<PeerId>, now: UnixMs, overdue_only: bool) -> Vec<ShareView> {
    let s = ep.share_service();
    let cases = s
        .cases()
        .map(|(id, c)| (id, c, false))
        .chain(s.supervised().map(|(id, c)| (id, c, true)));
    views(cases, s.calendar(), now, overdue_only)
}

/// What a delivery of a granted request goes to (see [`delivery_target`]).
#[derive(Clone, Copy, Debug)]
pub struct DeliveryTarget {
    pub request: Hash,
    pub requester: RegionCode,
    /// The end of the grant's term of use (使用时限).
    pub use_until: UnixMs,
    /// By service interface (服务接口): the data is loaded to answer calls, not sent.
    pub service: bool,
    /// A service interface answering already: its data is loaded again (a correction).
    pub reload: bool,
    /// A batch exchange or file download delivered already, with a correction request open:
    /// the corrected data goes as the next version of the delivered one (its version, hash).
    pub corrects: Option<(u64, Hash)>,
}

/// Whether `department` of this node may deliver request `id` now (the provider, granted;
/// by batch exchange or file download only to another node).
pub fn delivery_target(
    ep: &Endpoint<PeerId>,
    department: &str,
    id: &str,
) -> Result<DeliveryTarget> {
    let (&request, case) = find(ep.share_service().cases(), id)?;
    let r = &case.request;
    if r.provider.region != ep.region() || r.provider.department != department {
        bail!(
            "request {id} is provided by {}, not by this node's department {department}",
            origin_text(&r.provider)
        );
    }
    let service = r.method == SharingMethod::ServiceApi;
    // A service interface's data may be loaded again while it answers (a correction, Art. 26).
    let reload = service && case.state == ShareState::Delivered;
    // A batch exchange's corrected data is the delivery's next version (Art. 26).
    let delivered = case.delivery.as_ref().and_then(|d| d.manifest);
    let corrects = match delivered {
        Some(m) if case.state == ShareState::Delivered && case.open_correction().is_some() => {
            let record = ep.return_flow().record(&m).ok_or_else(|| {
                anyhow!("request {id}'s delivered version is no longer held here")
            })?;
            Some((record.manifest.manifest.version, m))
        }
        _ => None,
    };
    if case.state != ShareState::Granted && !reload && corrects.is_none() {
        bail!(
            "request {id} is {}: data is delivered once, after a grant, and again only with \
             the corrected data of an open correction request (share correct; Art. 26)",
            state_names(case.state).0
        );
    }
    if !service && r.requester.region == r.provider.region {
        bail!(
            "the requester is a department of this node: export the data for it, then record \
             the delivery (share deliver --done)"
        );
    }
    Ok(DeliveryTarget {
        request,
        requester: r.requester.region,
        use_until: r.use_until,
        service,
        reload,
        corrects,
    })
}

/// Publishes a staged delivery to the requester's node and records the start, signed by
/// `department`, naming `addresses` (where the requester's node connects).
pub fn deliver(
    ep: &mut Endpoint<PeerId>,
    now: UnixMs,
    department: &str,
    request: &Hash,
    staged: crate::delivery::Staged,
    addresses: Vec<String>,
) -> Result<ShareView> {
    ep.deliver_grant(
        now,
        request,
        department,
        staged.manifest,
        vec![staged.entry],
        addresses,
    )
    .map_err(|e| anyhow!("not delivered: {e}"))?;
    show(ep, now, &hex_id(request))
}
