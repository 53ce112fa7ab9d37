//! `backflow share returned …`: correction requests against returned data (回流数据校核申请,
//! Art. 26 with Art. 24), through the running node's API. A department that finds records of a
//! return-flow dataset its node holds wrong files one (`file`); it goes to the dataset's
//! publisher, whose department answers within 10 working days (`answer`): corrected — after
//! publishing the corrected dataset, which return flow carries to every holder — or not an
//! error, with the reason.

use std::io::Write;

use anyhow::{bail, Result};
use backflow_api::{CorrectionItemParams, ReturnedAnswerParams, ReturnedCorrectionParams};
use backflow_node::returned_api::ReturnedCorrectionView;
use clap::Subcommand;

use super::common::{call, urlencode, DataArg};

#[derive(Subcommand, Debug)]
pub enum ReturnedCmd {
    /// The correction requests this node is a party to (as requester or publisher), open ones
    /// first.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// File a correction request against a return-flow dataset this node holds, as this
    /// node's department: it names the version held and goes to the dataset's publisher.
    File {
        /// The dataset's name, as `backflow status` lists it.
        #[arg(long)]
        dataset: String,
        /// The publisher's region, where two publishers' datasets share the name.
        #[arg(long = "publisher-region")]
        publisher_region: Option<String>,
        /// The publishing department, likewise.
        #[arg(long = "publisher-department")]
        publisher_department: Option<String>,
        /// One record: "KEY|FIELD|WHAT IS WRONG" (repeat for each, at most 64).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Answer a correction request as the publishing department: --corrected once the
    /// corrected dataset is published (backflow publish), or not an error with --reason.
    Answer {
        id: String,
        #[arg(long)]
        corrected: bool,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long = "approved-by")]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
}

/// "KEY|FIELD|WHAT IS WRONG" (FIELD may be empty), as `share correct` takes it.
pub fn parse_item(item: &str) -> Result<CorrectionItemParams> {
    let mut parts = item.splitn(3, '|');
    let (Some(key), Some(field), Some(problem)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--item is \"KEY|FIELD|WHAT IS WRONG\" (FIELD may be empty)");
    };
    Ok(CorrectionItemParams {
        key: key.trim().to_string(),
        field: field.trim().to_string(),
        problem: problem.trim().to_string(),
    })
}

pub fn run(cmd: ReturnedCmd, department: Option<String>, out: &mut impl Write) -> Result<()> {
    let v = match cmd {
        ReturnedCmd::List { data } => {
            let v = call(&data.dir, "GET", "/api/share/returned", None)?;
            let views: Vec<ReturnedCorrectionView> = serde_json::from_value(v)?;
            if views.is_empty() {
                writeln!(out, "no correction requests against returned data")?;
            }
            for v in &views {
                print_view(out, v)?;
            }
            return Ok(());
        }
        ReturnedCmd::File {
            dataset,
            publisher_region,
            publisher_department,
            items,
            data,
        } => {
            let body = ReturnedCorrectionParams {
                department,
                dataset,
                publisher_region,
                publisher_department,
                items: items.iter().map(|i| parse_item(i)).collect::<Result<_>>()?,
            };
            let body = serde_json::to_value(&body)?;
            call(&data.dir, "POST", "/api/share/returned", Some(&body))?
        }
        ReturnedCmd::Answer {
            id,
            corrected,
            reason,
            approved_by,
            data,
        } => {
            let body = ReturnedAnswerParams {
                department,
                corrected,
                reason,
                approved_by,
            };
            let path = format!("/api/share/returned/{}/answer", urlencode(&id));
            call(
                &data.dir,
                "POST",
                &path,
                Some(&serde_json::to_value(&body)?),
            )?
        }
    };
    print_view(out, &serde_json::from_value(v)?)
}

fn print_view(out: &mut impl Write, v: &ReturnedCorrectionView) -> Result<()> {
    let state = match (v.state.as_str(), v.corrected_in, v.corrected_held) {
        ("open", ..) if v.overdue => format!("OVERDUE: the answer was due {}", v.due),
        ("open", ..) => format!("open: the publisher answers by {}", v.due),
        (_, Some(n), Some(true)) => format!("corrected in version {n} (held here)"),
        (_, Some(n), Some(false)) => format!("corrected in version {n} (on its way here)"),
        (_, Some(n), None) => format!("corrected in version {n}"),
        _ => "not an error".to_string(),
    };
    writeln!(
        out,
        "{}  {} {} → {} {}: {} version {} — {state}",
        v.id,
        v.requester_region,
        v.requester_department,
        v.publisher_region,
        v.publisher_department,
        v.dataset,
        v.version
    )?;
    for i in &v.items {
        writeln!(out, "  record {} {}: {}", i.key, i.field, i.problem)?;
    }
    if let (Some(at), Some(by)) = (&v.answered_at, &v.approved_by) {
        let reason = v.reason.as_deref().unwrap_or("");
        writeln!(out, "  answered {at}, approved by {by}: {reason}")?;
    }
    Ok(())
}
