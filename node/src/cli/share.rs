//! `backflow share …`: share requests between departments (政务数据共享申请, Arts. 20–22),
//! through the running node's API. A department of this node acts — `--department`, or the
//! one in `config.toml` — as the requester when it files, as the provider when it answers;
//! it signs with its own key (`backflow dept add`).

use std::io::Write;

use anyhow::Result;
use backflow_api::{ShareActParams, ShareFileParams};
use backflow_node::share_api::ShareView;
use clap::{Args, Subcommand};

use super::common::{call, urlencode, DataArg};

#[derive(Args, Debug)]
pub struct ShareArgs {
    #[command(subcommand)]
    pub cmd: ShareCmd,
    /// The department of this node that acts (default: the one in config.toml).
    #[arg(long, global = true)]
    pub department: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ShareCmd {
    /// File a request for another department's catalog entry (Art. 20), approved by this
    /// department's data-sharing head.
    Request(RequestArgs),
    /// Answer a request this department provides (Art. 21): --grant or --refuse.
    Answer(AnswerArgs),
    /// Tell the requester the material is incomplete, listing every missing item at once
    /// (一次性告知; once per request).
    Notice {
        id: String,
        /// A missing item (repeat for each).
        #[arg(long = "missing", required = true)]
        missing: Vec<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Complete the material after a notice; the answer period starts again.
    Supplement {
        id: String,
        #[arg(long)]
        material: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Extend the answer period once, by at most 10 working days, with the same-level
    /// authority's recorded consent (经同级政务数据共享主管部门同意).
    Extend {
        id: String,
        #[arg(long)]
        days: u32,
        /// The authority's consent: who, and the record's reference.
        #[arg(long)]
        consent: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Deliver granted data (Art. 22) with --file (CSV with its header line, or NDJSON). By
    /// batch exchange or file download the data is sent: only the requester's node fetches
    /// it, straight from this node, and verifies it; its node records the delivery. By
    /// service interface (服务接口) it is loaded here keyed by --key and the service opens:
    /// the requester looks records up (share lookup). --done records a delivery made outside
    /// the network (to a department of this same node). While a correction request is open,
    /// --file sends the corrected data again: a batch exchange's next version (the requester's
    /// node fetches what changed), a service interface's data loaded again.
    Deliver {
        id: String,
        /// The granted data (the scope the grant names, prepared by the provider).
        #[arg(long, conflicts_with = "done", required_unless_present = "done")]
        file: Option<std::path::PathBuf>,
        /// csv or ndjson (default: from the file's extension).
        #[arg(long, requires = "file")]
        format: Option<String>,
        /// A service interface's key field: the field calls look up (e.g. 公民身份号码).
        #[arg(long, requires = "file")]
        key: Option<String>,
        /// Delivery is complete.
        #[arg(long)]
        done: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Look records up through a granted service interface (服务接口, Art. 22): the records
    /// whose key field holds each --key, straight from the provider's node.
    Lookup {
        id: String,
        /// A key value to look up (repeat for each, at most 100).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Suspend the requester's sharing under a grant this department provides, for misuse
    /// (暂停共享权限, Art. 27 ¶2), with a rectification period (限期整改) in working days:
    /// nothing is delivered, no call answered, none of the data exported meanwhile.
    Suspend {
        id: String,
        #[arg(long)]
        reason: String,
        /// The rectification period, in working days (1 to 60).
        #[arg(long)]
        days: u32,
        #[arg(long)]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Consent, as the provider, to the requester passing the granted data on to a third
    /// party (Art. 25: 确需提供给第三方的，应当经政务数据提供部门同意): --to-region alone covers
    /// every department of that region and below (return-flow there); with --to-department,
    /// that one department (a delivery to it). Without a consent the requester's node refuses
    /// to publish or deliver the data it was granted.
    Consent {
        id: String,
        #[arg(long)]
        to_region: String,
        #[arg(long)]
        to_department: Option<String>,
        /// What the recipient uses the data for.
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Report the rectification of a suspended grant (整改情况), as the requester.
    Rectify {
        id: String,
        #[arg(long)]
        report: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Lift the suspension of a grant this department provides.
    Reinstate {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// End the sharing under a grant this department provides (Art. 27 ¶3): with the recorded
    /// negotiation with the requester and the filing with the same-level authority — both
    /// may be left out only when a suspension's rectification period passed unrectified.
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
        /// The negotiation with the requester (协商): when, and what was agreed.
        #[arg(long, default_value = "")]
        negotiation: String,
        /// The filing with the same-level authority (备案): who, and the record's reference.
        #[arg(long, default_value = "")]
        filing: String,
        #[arg(long)]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Record that the data of a grant was disposed of as the provider required (Art. 27
    /// ¶1), as the requester: this node deletes the delivered content; the record stays.
    Dispose {
        id: String,
        /// delete (删除), return (退还) or archive (归档).
        #[arg(long)]
        method: String,
        /// How and when.
        #[arg(long)]
        record: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// File a correction request against records of the delivered data (校核申请, Art. 26), as
    /// the requester: the provider answers within 10 working days.
    Correct {
        id: String,
        /// One record: "KEY|FIELD|WHAT IS WRONG" (repeat for each, at most 64).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Answer the open correction request, as the provider: --corrected (the corrected data
    /// sent first: share deliver --file, with --key for a service interface), or not an
    /// error, with --reason.
    AnswerCorrection {
        id: String,
        #[arg(long)]
        corrected: bool,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Open a dispute on a request, a grant, a correction or a suspension (Art. 28), as
    /// either party: negotiated first within one jurisdiction, else taken at once to the
    /// parties' lowest common superior's authority.
    Dispute {
        id: String,
        /// What it is about.
        #[arg(long)]
        subject: String,
        #[arg(long)]
        claim: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Take the open dispute to the parties' authority (negotiation failed).
    Escalate {
        id: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Settle the open dispute this department opened, by agreement.
    Settle {
        id: String,
        #[arg(long)]
        outcome: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Correction requests against returned data (回流数据校核申请, Art. 26): file one against
    /// a return-flow dataset this node holds, list them, or answer one as its publisher.
    #[command(subcommand)]
    Returned(super::returned::ReturnedCmd),
    /// As this node's authority (the node's token), coordinate the open dispute of a request
    /// whose parties' lowest common superior this node is: settle it, or --refer it to the
    /// people's government (报本级人民政府决定).
    Coordinate {
        id: String,
        #[arg(long)]
        outcome: String,
        #[arg(long)]
        refer: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Withdraw a request this department filed.
    Withdraw {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Requests this node is a party to, overdue first.
    List {
        /// Only those whose answer (Art. 21) or delivery (Art. 22) is overdue.
        #[arg(long)]
        overdue: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// One request in full (its id, or a unique prefix of 8+ hex digits).
    Show {
        id: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The provider's region code (e.g. 441900003).
    #[arg(long)]
    pub provider_region: String,
    /// The provider department, as its catalog names it.
    #[arg(long)]
    pub provider_department: String,
    /// The catalog entry's id.
    #[arg(long)]
    pub entry: String,
    /// 使用依据: the legal basis of the duty that needs the data.
    #[arg(long)]
    pub basis: String,
    /// 使用场景.
    #[arg(long)]
    pub scenario: String,
    /// 使用范围.
    #[arg(long)]
    pub scope: String,
    /// 共享方式: service_api, batch_exchange or file_download.
    #[arg(long)]
    pub method: String,
    /// 使用时限: the last day of use (YYYY-MM-DD).
    #[arg(long)]
    pub until: String,
    /// The department's data-sharing head who approved (负责人同意).
    #[arg(long)]
    pub approved_by: String,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    pub id: String,
    /// Consent (同意共享).
    #[arg(long, conflicts_with = "refuse")]
    pub grant: bool,
    /// Refusal (不同意共享), with --reason.
    #[arg(long)]
    pub refuse: bool,
    /// A condition of the grant, one the catalog entry lists (repeat for each).
    #[arg(long = "condition")]
    pub conditions: Vec<String>,
    /// The reasons of a refusal (Art. 21: 应当说明理由).
    #[arg(long)]
    pub reason: Option<String>,
    /// The department's data-sharing head who approved the answer.
    #[arg(long)]
    pub approved_by: String,
    #[command(flatten)]
    pub data: DataArg,
}

fn act(act: &str) -> ShareActParams {
    ShareActParams {
        act: act.to_string(),
        ..ShareActParams::default()
    }
}

pub fn run(args: ShareArgs, out: &mut impl Write) -> Result<()> {
    let department = args.department;
    let (dir, id, mut params) = match args.cmd {
        ShareCmd::Request(a) => {
            let body = ShareFileParams {
                provider_region: a.provider_region,
                provider_department: a.provider_department,
                entry_id: a.entry,
                basis: a.basis,
                scenario: a.scenario,
                scope: a.scope,
                method: a.method,
                use_until: a.until,
                approved_by: a.approved_by,
                department,
            };
            let v = call(
                &a.data.dir,
                "POST",
                "/api/share",
                Some(&serde_json::to_value(&body)?),
            )?;
            return print_one(out, v);
        }
        ShareCmd::Returned(cmd) => return super::returned::run(cmd, department, out),
        ShareCmd::List { overdue, data } => {
            let path = if overdue {
                "/api/share?overdue=true"
            } else {
                "/api/share"
            };
            let views: Vec<ShareView> =
                serde_json::from_value(call(&data.dir, "GET", path, None)?)?;
            for v in &views {
                let deadline = v.deadline.as_ref().map_or(String::new(), |d| {
                    let left = d
                        .working_days_left
                        .map_or(String::new(), |n| format!(", 剩余 {n} 个工作日"));
                    let late = if d.overdue { " OVERDUE 已逾期" } else { "" };
                    format!("Art. {} due {}{left}{late}", d.article, d.due)
                });
                let role = if v.supervised {
                    "  [supervising 监督]"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{}  {:<13} {}  {} → {}  {}{role}",
                    &v.id[..12],
                    v.state,
                    v.state_zh,
                    v.requester,
                    v.provider,
                    deadline
                )?;
            }
            if views.is_empty() {
                writeln!(out, "no share requests")?;
            }
            return Ok(());
        }
        ShareCmd::Show { id, data } => {
            let v = call(
                &data.dir,
                "GET",
                &format!("/api/share/{}", urlencode(&id)),
                None,
            )?;
            return print_one(out, v);
        }
        ShareCmd::Answer(a) => {
            if !a.grant && !a.refuse {
                anyhow::bail!("answer with --grant or --refuse");
            }
            let mut p = act(if a.grant { "grant" } else { "refuse" });
            p.conditions = a.conditions;
            p.reasons = a.reason;
            p.approved_by = Some(a.approved_by);
            (a.data.dir, a.id, p)
        }
        ShareCmd::Notice { id, missing, data } => {
            let mut p = act("notice");
            p.missing = missing;
            (data.dir, id, p)
        }
        ShareCmd::Supplement { id, material, data } => {
            let mut p = act("supplement");
            p.material = Some(material);
            (data.dir, id, p)
        }
        ShareCmd::Extend {
            id,
            days,
            consent,
            reason,
            data,
        } => {
            let mut p = act("extend");
            p.days = Some(days);
            p.consent = Some(consent);
            p.reason = Some(reason);
            (data.dir, id, p)
        }
        ShareCmd::Deliver {
            id,
            file: Some(file),
            format,
            key,
            data,
            ..
        } => {
            let v = deliver(&data.dir, &id, department.as_deref(), &file, format, key)?;
            return print_one(out, v);
        }
        ShareCmd::Deliver { id, data, .. } => (data.dir, id, act("delivered")),
        ShareCmd::Lookup { id, keys, data } => {
            let body = serde_json::json!({ "keys": keys, "department": department });
            let path = format!("/api/share/{}/lookup", urlencode(&id));
            let v = call(&data.dir, "POST", &path, Some(&body))?;
            return print_lookup(out, v);
        }
        ShareCmd::Suspend {
            id,
            reason,
            days,
            approved_by,
            data,
        } => {
            let mut p = act("suspend");
            p.reason = Some(reason);
            p.days = Some(days);
            p.approved_by = Some(approved_by);
            (data.dir, id, p)
        }
        ShareCmd::Consent {
            id,
            to_region,
            to_department,
            purpose,
            approved_by,
            data,
        } => {
            let mut p = act("consent");
            p.recipient_region = Some(to_region);
            p.recipient_department = to_department;
            p.purpose = Some(purpose);
            p.approved_by = Some(approved_by);
            (data.dir, id, p)
        }
        ShareCmd::Rectify { id, report, data } => {
            let mut p = act("rectify");
            p.record = Some(report);
            (data.dir, id, p)
        }
        ShareCmd::Reinstate {
            id,
            note,
            approved_by,
            data,
        } => {
            let mut p = act("reinstate");
            p.record = Some(note);
            p.approved_by = Some(approved_by);
            (data.dir, id, p)
        }
        ShareCmd::Terminate {
            id,
            reason,
            negotiation,
            filing,
            approved_by,
            data,
        } => {
            let mut p = act("terminate");
            p.reason = Some(reason);
            p.negotiation = Some(negotiation);
            p.filing = Some(filing);
            p.approved_by = Some(approved_by);
            (data.dir, id, p)
        }
        ShareCmd::Dispose {
            id,
            method,
            record,
            data,
        } => {
            let mut p = act("dispose");
            p.disposal = Some(method);
            p.record = Some(record);
            (data.dir, id, p)
        }
        ShareCmd::Dispute {
            id,
            subject,
            claim,
            data,
        } => {
            let mut p = act("dispute");
            p.subject = Some(subject);
            p.claim = Some(claim);
            (data.dir, id, p)
        }
        ShareCmd::Escalate { id, data } => (data.dir, id, act("escalate")),
        ShareCmd::Correct { id, items, data } => {
            let mut p = act("correction");
            for item in items {
                p.items.push(super::returned::parse_item(&item)?);
            }
            (data.dir, id, p)
        }
        ShareCmd::AnswerCorrection {
            id,
            corrected,
            reason,
            approved_by,
            data,
        } => {
            let mut p = act("answer_correction");
            p.corrected = Some(corrected);
            p.reason = Some(reason);
            p.approved_by = Some(approved_by);
            (data.dir, id, p)
        }
        ShareCmd::Settle { id, outcome, data } => {
            let mut p = act("settle");
            p.record = Some(outcome);
            (data.dir, id, p)
        }
        ShareCmd::Coordinate {
            id,
            outcome,
            refer,
            data,
        } => {
            let body = serde_json::json!({ "outcome": outcome, "refer": refer });
            let path = format!("/api/share/{}/coordinate", urlencode(&id));
            let v = call(&data.dir, "POST", &path, Some(&body))?;
            return print_one(out, v);
        }
        ShareCmd::Withdraw { id, reason, data } => {
            let mut p = act("withdraw");
            p.reason = Some(reason);
            (data.dir, id, p)
        }
    };
    params.department = department;
    let path = format!("/api/share/{}/act", urlencode(&id));
    let v = call(&dir, "POST", &path, Some(&serde_json::to_value(&params)?))?;
    print_one(out, v)
}

/// Streams `file` as the granted data of request `id` (the node reads nothing by path).
fn deliver(
    dir: &std::path::Path,
    id: &str,
    department: Option<&str>,
    file: &std::path::Path,
    format: Option<String>,
    key: Option<String>,
) -> Result<serde_json::Value> {
    use anyhow::Context;
    let format = match format {
        Some(f) => f,
        None => match backflow_node::partition::Format::from_path(file) {
            Some(f) => f.name().to_string(),
            None => anyhow::bail!(
                "cannot tell the format of {} from its name; pass --format csv or ndjson",
                file.display()
            ),
        },
    };
    let mut path = format!(
        "/api/share/{}/deliver?format={}",
        urlencode(id),
        urlencode(&format)
    );
    if let Some(d) = department {
        path.push_str(&format!("&department={}", urlencode(d)));
    }
    if let Some(k) = key {
        path.push_str(&format!("&key={}", urlencode(&k)));
    }
    let client = super::common::client(dir)?;
    super::common::runtime()?.block_on(async {
        let input = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let length = input.metadata().await?.len();
        client.upload(&path, input, length, |_| {}).await
    })
}

/// The records found, as the provider loaded them: the CSV header line first (if any), then
/// each record; the count and whether more matched go to stderr.
fn print_lookup(out: &mut impl Write, v: serde_json::Value) -> Result<()> {
    let v: backflow_node::share_api::LookupView = serde_json::from_value(v)?;
    if !v.header.is_empty() {
        writeln!(out, "{}", v.header)?;
    }
    for r in &v.records {
        writeln!(out, "{}", r.record)?;
    }
    eprintln!(
        "{} record(s){}",
        v.records.len(),
        if v.truncated {
            "; more matched than one answer carries: ask for fewer keys"
        } else {
            ""
        }
    );
    Ok(())
}

fn print_one(out: &mut impl Write, v: serde_json::Value) -> Result<()> {
    let v: ShareView = serde_json::from_value(v)?;
    writeln!(out, "id:        {}", v.id)?;
    writeln!(out, "state:     {} ({})", v.state, v.state_zh)?;
    writeln!(out, "requester: {}", v.requester)?;
    writeln!(out, "provider:  {}  entry {}", v.provider, v.entry)?;
    writeln!(out, "attribute: {}", v.attribute)?;
    writeln!(out, "method:    {}", v.method)?;
    writeln!(out, "scenario:  {}", v.scenario)?;
    writeln!(out, "use until: {}", v.use_until)?;
    if let Some(r) = &v.received {
        writeln!(out, "received:  {r}")?;
    }
    if let Some(d) = &v.deadline {
        let left = d
            .working_days_left
            .map_or(String::new(), |n| format!(" (剩余 {n} 个工作日)"));
        let late = if d.overdue {
            " — OVERDUE (已逾期)"
        } else {
            ""
        };
        writeln!(out, "due:       Art. {} {}{left}{late}", d.article, d.due)?;
    }
    if let Some(o) = &v.owner {
        writeln!(out, "to act:    {o}")?;
    }
    if !v.notice.is_empty() {
        writeln!(out, "missing:   {}", v.notice.join("; "))?;
    }
    if let Some(a) = &v.answer {
        writeln!(out, "answer:    {a}")?;
    }
    if let Some(s) = &v.suspension {
        writeln!(out, "suspended: {s}")?;
    }
    if let Some(s) = &v.rights_suspended {
        writeln!(
            out,
            "requester's sharing rights suspended (暂停共享权限): {s}"
        )?;
    }
    if let Some(e) = &v.ending {
        writeln!(out, "ended:     {e}")?;
    }
    for c in &v.corrections {
        writeln!(out, "correction: {c}")?;
    }
    for d in &v.disputes {
        writeln!(out, "dispute:   {d}")?;
    }
    for c in &v.consents {
        writeln!(out, "consent:   {c}")?;
    }
    if let Some(s) = &v.service {
        writeln!(
            out,
            "service:   {} call(s), {} key(s), {} record(s) sent, {} refused{}",
            s.calls,
            s.keys,
            s.records,
            s.refused,
            s.last_call
                .as_ref()
                .map_or(String::new(), |t| format!("; last {t}"))
        )?;
    }
    if let Some(d) = &v.delivery {
        writeln!(
            out,
            "delivery:  dataset {} from {} (manifest {})",
            d.dataset,
            d.publisher,
            &d.manifest[..16]
        )?;
        writeln!(
            out,
            "           at the requester, once delivered: backflow export --dataset {} --publisher {}",
            d.dataset, d.publisher
        )?;
    }
    Ok(())
}
