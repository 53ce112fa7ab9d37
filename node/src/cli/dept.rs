//! `backflow dept …`: the departments (政府部门) this node hosts, through the running node's
//! API. Each department acts with its own key, certified by the node's jurisdiction key, and
//! calls the API with its own token, which reaches only the share routes and acts only as that
//! department.

use std::io::Write;

use anyhow::Result;
use backflow_node::status::DepartmentView;
use clap::Subcommand;

use super::common::{call, DataArg};

#[derive(Subcommand, Debug)]
pub enum DeptCmd {
    /// Add a department: a new key (certified by this node's jurisdiction key) and API token.
    /// The token is printed this once; hand it to the department's system.
    Add {
        /// The department's name as its catalog entries and requests name it (e.g. 市民政局).
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// The departments of this node and their public keys.
    List {
        #[command(flatten)]
        data: DataArg,
    },
}

pub fn run(cmd: DeptCmd, out: &mut impl Write) -> Result<()> {
    match cmd {
        DeptCmd::Add { name, data } => {
            let v = call(
                &data.dir,
                "POST",
                "/api/departments",
                Some(&serde_json::json!({ "name": name })),
            )?;
            let d: DepartmentView = serde_json::from_value(v["department"].clone())?;
            let token = v["token"].as_str().unwrap_or_default();
            writeln!(out, "department {} added; key {}", d.name, d.key)?;
            writeln!(
                out,
                "API token (shown once; the department sends it as `Authorization: Bearer \
                 <token>` and may use only {}, as itself):",
                backflow_api::gate::DEPARTMENT_PATHS.join(", ")
            )?;
            writeln!(out, "{token}")?;
        }
        DeptCmd::List { data } => {
            let all: Vec<DepartmentView> =
                serde_json::from_value(call(&data.dir, "GET", "/api/departments", None)?)?;
            for d in &all {
                writeln!(out, "{}  key {}", d.name, &d.key[..16])?;
            }
            if all.is_empty() {
                writeln!(out, "no departments")?;
            }
        }
    }
    Ok(())
}
