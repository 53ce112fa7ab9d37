//! `backflow ledger …`: the node's compliance ledger (合规台账, Art. 29) through the running
//! node's API — read it, check it, export it, and enter a department's use records.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use backflow_node::ledger_api::InspectionView;
use backflow_node::ledger_api::{EntryView, LedgerPage};
use backflow_node::text_width::pad;
use clap::{Subcommand, ValueEnum};

use super::common::{call, DataArg};

/// Entries asked for per request while exporting (the API's page limit).
const EXPORT_PAGE_ENTRIES: usize = 1_000;

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// The latest entries (or those from `--from` on), oldest first.
    Show {
        /// The first entry to show; the last `--limit` entries if not given.
        #[arg(long)]
        from: Option<u64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        data: DataArg,
    },
    /// Check the whole ledger against its Merkle tree and the head this node signed; names
    /// the first entry that does not fit (exit status 1).
    Verify {
        #[command(flatten)]
        data: DataArg,
    },
    /// Every entry, as JSON (an array) or CSV, to a file or standard output.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Where to write; standard output if not given.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Read another node's records over the network (查阅, Art. 29): as the provider of a
    /// grant, its records at the requester's node (`--grant`); as an authority above a
    /// region, all of that region's records. Every entry comes proved against that node's
    /// head as its parent witnessed it.
    Inspect {
        /// The region code of the node whose ledger is read.
        #[arg(long)]
        region: String,
        /// The grant (share request id or 8+ leading hex digits) whose records are read;
        /// all records if not given (an authority above the region only).
        #[arg(long)]
        grant: Option<String>,
        /// The first entry position to read.
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        data: DataArg,
    },
    /// A requesting department's use record (使用记录) of data it was granted: scenario,
    /// process, effect, storage and disposal, as Art. 29 lists them.
    Record {
        /// The share request the data was granted by (its id or 8+ leading hex digits).
        #[arg(long)]
        grant: String,
        /// 使用场景: what the data is used for.
        #[arg(long)]
        scenario: String,
        /// 使用过程: how it is used.
        #[arg(long)]
        process: String,
        /// 应用成效: what its use achieved.
        #[arg(long)]
        effect: String,
        /// 存储情况: where and how it is stored.
        #[arg(long)]
        storage: String,
        /// 销毁情况: how and when it was destroyed (leave out while it is held).
        #[arg(long, default_value = "")]
        disposal: String,
        /// The department recording; the node's configured department if not given.
        #[arg(long)]
        department: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
}

pub fn run(cmd: LedgerCmd, out: &mut impl Write) -> Result<()> {
    match cmd {
        LedgerCmd::Show { from, limit, data } => {
            let limit = limit.clamp(1, EXPORT_PAGE_ENTRIES);
            let from = match from {
                Some(f) => f,
                None => page(&data, 0, 1)?.size.saturating_sub(limit as u64),
            };
            let p = page(&data, from, limit)?;
            for e in &p.entries {
                writeln!(out, "{}", line(e))?;
            }
            match &p.head {
                Some(h) => writeln!(
                    out,
                    "{} entries; last signed head: {} entries at {}, root {}",
                    p.size,
                    h.size,
                    h.time,
                    &h.root[..16]
                )?,
                None => writeln!(out, "{} entries; no head signed yet", p.size)?,
            }
            match &p.witnessed {
                Some(w) => writeln!(
                    out,
                    "witnessed (见证) by {}: {} entries, signed {}",
                    w.witness, w.size, w.time
                )?,
                None => writeln!(out, "not witnessed by a parent yet")?,
            }
        }
        LedgerCmd::Verify { data } => {
            let v = call(&data.dir, "POST", "/api/ledger/verify", None)?;
            if v["ok"].as_bool() != Some(true) {
                let at = v["entry"]
                    .as_u64()
                    .map(|e| format!("entry {e}: "))
                    .unwrap_or_default();
                bail!(
                    "the ledger does not verify: {at}{}",
                    v["problem"].as_str().unwrap_or("(no reason given)")
                );
            }
            writeln!(
                out,
                "ledger verified: {} entries, root {}; they match the head this node signed \
                 ({} entries, {}); {} entries checked under the seal of the department or node \
                 that logged them; {} pruned entries in the archive checked against the tree",
                v["entries"],
                v["root"].as_str().unwrap_or_default(),
                v["head_size"],
                v["head_time"].as_str().unwrap_or("-"),
                v["sealed"],
                v["archived"]
            )?;
        }
        LedgerCmd::Export {
            format,
            out: file,
            data,
        } => match file {
            Some(path) => {
                let tmp = path.with_extension("partial");
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                let mut w = std::io::BufWriter::new(f);
                let n = export(&data, format, &mut w)?;
                w.into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()
                    .with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming to {}", path.display()))?;
                eprintln!("{n} entries written to {}", path.display());
            }
            None => {
                export(&data, format, out)?;
            }
        },
        LedgerCmd::Inspect {
            region,
            grant,
            from,
            limit,
            data,
        } => {
            let body = serde_json::json!({
                "region": region, "grant": grant, "from": from, "limit": limit,
            });
            let v = call(&data.dir, "POST", "/api/ledger/inspect", Some(&body))?;
            let i: InspectionView = serde_json::from_value(v)?;
            for (n, e) in i.entries.iter().enumerate() {
                let by = i.sealed_by.get(n).map_or("?", String::as_str);
                writeln!(out, "{}  [sealed by {by}]", line(e))?;
            }
            writeln!(
                out,
                "{} entries of {}'s ledger, each proved included in its head of {} entries \
                 (root {}, signed {}), witnessed (见证) by {}, and each under the seal (签章) \
                 of the department that logged it or of the node",
                i.entries.len(),
                i.region,
                i.head.size,
                &i.head.root[..16],
                i.head.time,
                i.witnessed_by
            )?;
            if let Some(next) = i.next {
                writeln!(out, "more from entry {next}: --from {next}")?;
            }
        }
        LedgerCmd::Record {
            grant,
            scenario,
            process,
            effect,
            storage,
            disposal,
            department,
            data,
        } => {
            let body = serde_json::json!({
                "grant": grant, "scenario": scenario, "process": process, "effect": effect,
                "storage": storage, "disposal": disposal, "department": department,
            });
            let v = call(&data.dir, "POST", "/api/ledger/record", Some(&body))?;
            let e: EntryView = serde_json::from_value(v)?;
            writeln!(out, "recorded as ledger entry {}: {}", e.seq, line(&e))?;
        }
    }
    Ok(())
}

fn page(data: &DataArg, from: u64, limit: usize) -> Result<LedgerPage> {
    let v = call(
        &data.dir,
        "GET",
        &format!("/api/ledger?from={from}&limit={limit}"),
        None,
    )?;
    Ok(serde_json::from_value(v)?)
}

fn line(e: &EntryView) -> String {
    let what = match &e.act {
        Some(act) => format!("{}:{act}", e.kind),
        None => e.kind.clone(),
    };
    let detail = match &e.use_record {
        Some(u) => format!(
            "场景 {}; 过程 {}; 成效 {}; 存储 {}",
            u.scenario, u.process, u.effect, u.storage
        ),
        None => e.detail.clone(),
    };
    format!(
        "{:>6}  {}  {}  {}  {}  {}",
        e.seq,
        e.time,
        pad(&what, 26),
        pad(e.department.as_deref().unwrap_or("-"), 14),
        pad(&e.subject.chars().take(16).collect::<String>(), 16),
        detail.chars().take(120).collect::<String>()
    )
}

/// Writes every entry, a page at a time; returns how many.
fn export(data: &DataArg, format: ExportFormat, out: &mut impl Write) -> Result<u64> {
    const CSV_HEADER: &str = "seq,time,time_ms,region,department,kind,act,subject,detail,\
                              scenario,process,effect,storage,disposal";
    match format {
        ExportFormat::Json => write!(out, "[")?,
        ExportFormat::Csv => writeln!(out, "{CSV_HEADER}")?,
    }
    let mut from = 0;
    let mut written = 0u64;
    loop {
        let p = page(data, from, EXPORT_PAGE_ENTRIES)?;
        for e in &p.entries {
            match format {
                ExportFormat::Json => {
                    if written > 0 {
                        write!(out, ",")?;
                    }
                    write!(out, "\n{}", serde_json::to_string(e)?)?;
                }
                ExportFormat::Csv => writeln!(out, "{}", csv_row(e))?,
            }
            written += 1;
        }
        match p.entries.last() {
            Some(last) if last.seq + 1 < p.size => from = last.seq + 1,
            _ => break,
        }
    }
    if let ExportFormat::Json = format {
        writeln!(out, "\n]")?;
    }
    out.flush()?;
    Ok(written)
}

fn csv_row(e: &EntryView) -> String {
    let u = e.use_record.as_ref();
    let fields: [&str; 14] = [
        &e.seq.to_string(),
        &e.time,
        &e.time_ms.to_string(),
        &e.region,
        e.department.as_deref().unwrap_or(""),
        &e.kind,
        e.act.as_deref().unwrap_or(""),
        &e.subject,
        &e.detail,
        u.map_or("", |u| &u.scenario),
        u.map_or("", |u| &u.process),
        u.map_or("", |u| &u.effect),
        u.map_or("", |u| &u.storage),
        u.map_or("", |u| &u.disposal),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4180 quoting (the csv crate is not a dependency of the binary; fourteen fields do not
/// need one). A field starting with `=`, `+`, `-` or `@` is prefixed with `'` so a
/// spreadsheet does not run it as a formula (entries hold text departments typed).
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_string()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
