//! `backflow catalog …`: the data catalog (Arts. 12–17) through the running node. `add` is the
//! authority's own publication (the node's token: in force at once); a department's entries go
//! through `submit` to the authority's review (`reviews`, `approve`, `return`) and take effect
//! only when approved (Art. 16); `duty-change` records a change of law or duties that obliges
//! an update within 10 working days, `extend-update` the authority's one extension (Art. 17).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use backflow_api::ReviewDecideParams;
use backflow_node::review_api::{Due, ReviewsView};

use backflow_node::text_width::pad;

use super::common::{call, urlencode, DataArg};

/// Departments asked for per page by `catalog list`.
const CATALOG_PAGE: usize = 1_000;

fn due_text(d: &Due) -> String {
    let left = d
        .working_days_left
        .map_or(String::new(), |n| format!(", 剩余 {n} 个工作日"));
    let late = if d.overdue { " OVERDUE 已逾期" } else { "" };
    format!("due {} 24:00{left}{late}", d.day)
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// Add or update entries from a JSON file (one CatalogEntry or an array).
    Add {
        #[command(flatten)]
        data: DataArg,
        file: PathBuf,
    },
    /// List the aggregated catalog (at national: the whole country's), page by page.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Only this region's subtree (a region code).
        #[arg(long)]
        region: Option<String>,
        /// Stop after this many departments (default: all).
        #[arg(long)]
        departments: Option<usize>,
    },
    /// Search the unified catalog (Art. 16): words of an entry's name or data items
    /// (Chinese is segmented into words), and filters.
    Search {
        #[command(flatten)]
        data: DataArg,
        /// Words to find, e.g. 行政许可; empty lists by the filters alone.
        #[arg(default_value = "")]
        text: String,
        /// Only entries of this provider department (提供单位), exactly.
        #[arg(long)]
        provider: Option<String>,
        /// Only entries with this sharing attribute: unconditional, conditional, not_shared.
        #[arg(long)]
        sharing: Option<String>,
        /// Only this region's subtree.
        #[arg(long)]
        region: Option<String>,
        /// Hits to show (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one entry by id.
    Show {
        #[command(flatten)]
        data: DataArg,
        id: String,
    },
    /// Submit a department's entries (JSON file: one CatalogEntry or an array) to the
    /// same-level authority's review (Art. 16); due within 2 working days.
    Submit {
        #[command(flatten)]
        data: DataArg,
        /// The department of this node (default: the one in config.toml).
        #[arg(long)]
        department: Option<String>,
        file: PathBuf,
    },
    /// Submissions and duty changes, overdue first (剩余 N 个工作日).
    Reviews {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        overdue: bool,
    },
    /// The authority approves a submission: its entries take effect and sync upward.
    Approve {
        #[command(flatten)]
        data: DataArg,
        id: u64,
        /// The reviewer (审核人).
        #[arg(long)]
        reviewer: String,
    },
    /// The authority returns a submission with its reasons; nothing takes effect.
    Return {
        #[command(flatten)]
        data: DataArg,
        id: u64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        reviewer: String,
    },
    /// Record a change of law or of a department's duties (Art. 17): its catalog update is due
    /// within 10 working days of the day it took effect.
    DutyChange {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        department: Option<String>,
        /// The day it took effect (YYYY-MM-DD).
        #[arg(long)]
        occurred: String,
        /// What changed (the law, decision or duty; its document number).
        #[arg(long)]
        basis: String,
    },
    /// The authority extends an update period once, by at most 5 working days.
    ExtendUpdate {
        #[command(flatten)]
        data: DataArg,
        id: u64,
        #[arg(long)]
        days: u32,
        /// The authority's recorded consent.
        #[arg(long)]
        consent: String,
    },
}

/// The authority's decision on submission `id`.
fn decide(
    dir: &std::path::Path,
    id: u64,
    decision: &str,
    reviewer: String,
    reasons: Option<String>,
) -> Result<serde_json::Value> {
    let params = ReviewDecideParams {
        decision: decision.to_string(),
        reviewer,
        reasons,
    };
    let path = format!("/api/catalog-review/{id}");
    call(dir, "POST", &path, Some(&serde_json::to_value(params)?))
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn read_entries(file: &std::path::Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    Ok(match v {
        serde_json::Value::Array(_) => v,
        one => serde_json::Value::Array(vec![one]),
    })
}

pub fn run(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Add { data, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let v = call(&data.dir, "POST", "/api/catalog", Some(&body))?;
            outln!(
                "catalog version {} submitted; it syncs up to the parent",
                v["seq"]
            )?;
        }
        CatalogCmd::List {
            data,
            region,
            departments,
        } => {
            let (mut n, mut shown) = (0u64, 0usize);
            let mut after: Option<String> = None;
            loop {
                let page = CATALOG_PAGE.min(departments.map_or(usize::MAX, |d| d - shown));
                if page == 0 {
                    break;
                }
                let mut path = format!("/api/catalog?limit={page}");
                if let Some(r) = &region {
                    path.push_str(&format!("&region={}", urlencode(r)));
                }
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", urlencode(a)));
                }
                let v = call(&data.dir, "GET", &path, None)?;
                let cats = v.as_array().cloned().unwrap_or_default();
                for c in &cats {
                    for e in c["entries"].as_array().into_iter().flatten() {
                        n += 1;
                        outln!(
                            "{:<10} {} {:<24} {}",
                            c["region"].as_str().unwrap_or(""),
                            pad(c["department"].as_str().unwrap_or(""), 24),
                            e["id"].as_str().unwrap_or(""),
                            e["name"].as_str().unwrap_or("")
                        )?;
                    }
                }
                shown += cats.len();
                match cats.last() {
                    Some(last) if cats.len() == page => {
                        after = Some(format!(
                            "{}/{}",
                            last["region"].as_str().unwrap_or(""),
                            last["department"].as_str().unwrap_or("")
                        ));
                    }
                    _ => break,
                }
            }
            outln!("{n} entries")?;
        }
        CatalogCmd::Search {
            data,
            text,
            provider,
            sharing,
            region,
            limit,
        } => {
            let mut path = format!("/api/catalog-search?q={}&limit={limit}", urlencode(&text));
            for (k, v) in [
                ("provider", &provider),
                ("sharing", &sharing),
                ("region", &region),
            ] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", urlencode(v)));
                }
            }
            let v = call(&data.dir, "GET", &path, None)?;
            for h in v["hits"].as_array().into_iter().flatten() {
                outln!(
                    "{:<10} {} {} {:<24} {}",
                    h["region"].as_str().unwrap_or(""),
                    pad(h["region_name"].as_str().unwrap_or(""), 12),
                    pad(h["department"].as_str().unwrap_or(""), 24),
                    h["entry_id"].as_str().unwrap_or(""),
                    h["name"].as_str().unwrap_or("")
                )?;
            }
            outln!(
                "{} of {} matching entries (searched at {})",
                v["hits"].as_array().map_or(0, |h| h.len()),
                v["total"],
                v["answered_by"].as_str().unwrap_or("?")
            )?;
        }
        CatalogCmd::Submit {
            data,
            department,
            file,
        } => {
            let body = serde_json::json!({
                "department": department,
                "entries": read_entries(&file)?,
            });
            let v = call(&data.dir, "POST", "/api/catalog-review", Some(&body))?;
            outln!(
                "submission {} of {} to the authority's review (审核中), due {} 24:00",
                v["id"],
                v["department"].as_str().unwrap_or(""),
                v["review_due"]["day"].as_str().unwrap_or("?")
            )?;
        }
        CatalogCmd::Reviews { data, overdue } => {
            let path = if overdue {
                "/api/catalog-review?overdue=true"
            } else {
                "/api/catalog-review"
            };
            let v: ReviewsView = serde_json::from_value(call(&data.dir, "GET", path, None)?)?;
            for s in &v.submissions {
                let due = s.review_due.as_ref().map_or(String::new(), due_text);
                outln!(
                    "submission {:<5} {:<9} {:<20} {} entries  {due}",
                    s.id,
                    s.state,
                    s.department,
                    s.entries.len()
                )?;
            }
            for d in &v.duty_changes {
                let due = d.update_due.as_ref().map_or_else(
                    || format!("updated by submission {}", d.fulfilled_by.unwrap_or(0)),
                    due_text,
                );
                outln!(
                    "duty change {:<4} {:<20} {} ({})  {due}",
                    d.id,
                    d.department,
                    d.occurred,
                    d.basis
                )?;
            }
            if v.submissions.is_empty() && v.duty_changes.is_empty() {
                outln!("nothing to review")?;
            }
        }
        CatalogCmd::Approve { data, id, reviewer } => {
            let v = decide(&data.dir, id, "approve", reviewer, None)?;
            outln!(
                "submission {id} approved: catalog version {} of {} in force; it syncs up",
                v["catalog_seq"],
                v["department"].as_str().unwrap_or("")
            )?;
        }
        CatalogCmd::Return {
            data,
            id,
            reason,
            reviewer,
        } => {
            let v = decide(&data.dir, id, "return", reviewer, Some(reason))?;
            print_json(&v)?;
        }
        CatalogCmd::DutyChange {
            data,
            department,
            occurred,
            basis,
        } => {
            let body = serde_json::json!({
                "department": department, "occurred": occurred, "basis": basis,
            });
            let v = call(&data.dir, "POST", "/api/duty-changes", Some(&body))?;
            print_json(&v)?;
        }
        CatalogCmd::ExtendUpdate {
            data,
            id,
            days,
            consent,
        } => {
            let body = serde_json::json!({"days": days, "consent": consent});
            let v = call(
                &data.dir,
                "POST",
                &format!("/api/duty-changes/{id}/extend"),
                Some(&body),
            )?;
            print_json(&v)?;
        }
        CatalogCmd::Show { data, id } => {
            let v = call(
                &data.dir,
                "GET",
                &format!("/api/catalog/{}", urlencode(&id)),
                None,
            )?;
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        }
    }
    Ok(())
}
