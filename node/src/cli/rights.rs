//! `backflow rights …`: this node's authority (政务数据共享主管部门) suspends or reinstates a
//! department's sharing rights (政务数据共享权限, Art. 27 ¶2), through the running node's API
//! (the node's token). The act is signed by this node's jurisdiction key, in force here at
//! once and spread to every node, each of which enforces it.

use std::io::Write;

use anyhow::Result;
use backflow_api::{RightsAction, RightsParams};
use backflow_node::rights_api::RightsView;
use clap::Subcommand;

use super::common::{call, DataArg};

#[derive(Subcommand, Debug)]
pub enum RightsCmd {
    /// Suspend the sharing rights of a department of this region or one below it, for misuse
    /// (擅自超出使用范围、共享目的使用, or 擅自提供给第三方), to be rectified in N working days
    /// (限期整改): no node grants or delivers it anything, and its own node serves its users
    /// no data granted to it, until reinstated.
    Suspend {
        /// The department's region code.
        #[arg(long)]
        region: String,
        /// The department, as its own node names it.
        #[arg(long)]
        department: String,
        #[arg(long)]
        reason: String,
        /// Working days to rectify (1 to 60).
        #[arg(long = "rectify-days")]
        rectify_days: u32,
        /// Who approved it (the authority's head).
        #[arg(long = "approved-by")]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Lift this node's suspension of a department's sharing rights (恢复).
    Reinstate {
        #[arg(long)]
        region: String,
        #[arg(long)]
        department: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long = "approved-by")]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Terminate the sharing of a department this node suspended (终止共享), once the
    /// rectification period ran out without it rectifying (拒不整改或者整改不到位): every grant
    /// it requested until now ends at every node.
    Terminate {
        #[arg(long)]
        region: String,
        #[arg(long)]
        department: String,
        #[arg(long)]
        reason: String,
        #[arg(long = "approved-by")]
        approved_by: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// The acts on sharing rights this node holds, suspensions first.
    List {
        #[command(flatten)]
        data: DataArg,
    },
}

pub fn run(cmd: RightsCmd, out: &mut impl Write) -> Result<()> {
    let (dir, params) = match cmd {
        RightsCmd::List { data } => {
            let v = call(&data.dir, "GET", "/api/rights", None)?;
            let views: Vec<RightsView> = serde_json::from_value(v)?;
            if views.iter().all(|v| !v.suspended) {
                writeln!(out, "no department's sharing rights are suspended")?;
            }
            for v in &views {
                print_view(out, v)?;
            }
            return Ok(());
        }
        RightsCmd::Suspend {
            region,
            department,
            reason,
            rectify_days,
            approved_by,
            data,
        } => (
            data.dir,
            RightsParams {
                region,
                department,
                action: RightsAction::Suspend,
                reason,
                rectify_working_days: Some(rectify_days),
                note: String::new(),
                approved_by,
            },
        ),
        RightsCmd::Terminate {
            region,
            department,
            reason,
            approved_by,
            data,
        } => (
            data.dir,
            RightsParams {
                region,
                department,
                action: RightsAction::Terminate,
                reason,
                rectify_working_days: None,
                note: String::new(),
                approved_by,
            },
        ),
        RightsCmd::Reinstate {
            region,
            department,
            note,
            approved_by,
            data,
        } => (
            data.dir,
            RightsParams {
                region,
                department,
                action: RightsAction::Reinstate,
                reason: String::new(),
                rectify_working_days: None,
                note,
                approved_by,
            },
        ),
    };
    let v = call(
        &dir,
        "POST",
        "/api/rights",
        Some(&serde_json::to_value(&params)?),
    )?;
    print_view(out, &serde_json::from_value(v)?)
}

fn print_view(out: &mut impl Write, v: &RightsView) -> Result<()> {
    let what = if v.suspended {
        "suspended (暂停共享权限)"
    } else if v.terminated {
        "sharing terminated (终止共享): its grants requested until then have ended"
    } else {
        "reinstated (恢复)"
    };
    writeln!(
        out,
        "{} {}: {what} by the authority of {} at {} (its act {}), approved by {}",
        v.region, v.department, v.authority, v.at, v.ordinal, v.approved_by
    )?;
    if let Some(r) = &v.reason {
        writeln!(out, "  reason: {r}")?;
    }
    if let Some(by) = &v.rectify_by {
        writeln!(out, "  rectify by: {by}")?;
    }
    if let Some(n) = v.note.as_ref().filter(|n| !n.is_empty()) {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}
