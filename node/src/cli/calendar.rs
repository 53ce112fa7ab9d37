//! `backflow calendar …`: the statutory working-day calendar (工作日) deadlines are counted on —
//! which years it knows, adding a year's State Council notice, and what a period's deadline is.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use backflow_node::calendar_files;
use backflow_protocol::calendar::{beijing_date, end_of_day};
use clap::Subcommand;

use super::common::DataArg;

#[derive(Subcommand, Debug)]
pub enum CalendarCmd {
    /// The years the calendar knows (embedded, and added under <data>/calendar/), and whether
    /// next year's notice is still missing.
    Show {
        #[command(flatten)]
        data: DataArg,
    },
    /// Add a year's official arrangement (国务院办公厅关于YYYY年部分节假日安排的通知) from a
    /// file in the embedded calendar's format: a table [YYYY] with `off` = [[first, last], …]
    /// and `work` = [make-up days]. Checked before it is installed; restart the node to use it.
    Add {
        /// The notice as a TOML file.
        file: PathBuf,
        #[command(flatten)]
        data: DataArg,
    },
    /// The deadline of a period of DAYS working days triggered on a date: counting starts the
    /// next day (民法典 Art. 201) and ends at 24:00 Beijing time of the last working day
    /// (Art. 203).
    Due {
        /// The day of the triggering act (YYYY-MM-DD, Beijing time); default today.
        #[arg(long)]
        from: Option<String>,
        /// Working days (e.g. 1 or 10 to answer a share request, Art. 21; 20 to deliver,
        /// Art. 22).
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        data: DataArg,
    },
}

pub fn run(cmd: CalendarCmd, out: &mut impl Write) -> Result<()> {
    let today = beijing_date(backflow_node::clock::now_ms())?;
    match cmd {
        CalendarCmd::Show { data } => {
            let calendar = calendar_files::load(&data.dir)?;
            let years: Vec<String> = calendar.years().map(|y| y.to_string()).collect();
            writeln!(out, "years known: {}", years.join(", "))?;
            let next = today.year() + 1;
            if !calendar.years().any(|y| y == next) {
                writeln!(
                    out,
                    "missing: {next} — deadlines reaching into {next} cannot be computed until \
                     its notice is added (backflow calendar add FILE)"
                )?;
            }
        }
        CalendarCmd::Add { file, data } => {
            let added = calendar_files::add(&data.dir, &file)?;
            if added.is_empty() {
                writeln!(
                    out,
                    "nothing added: every year in the file is known already"
                )?;
            } else {
                let years: Vec<String> = added.iter().map(|y| y.to_string()).collect();
                writeln!(
                    out,
                    "added {} (restart the node to use it)",
                    years.join(", ")
                )?;
            }
        }
        CalendarCmd::Due { from, days, data } => {
            let calendar = calendar_files::load(&data.dir)?;
            let from = match from {
                Some(text) => text
                    .trim()
                    .parse()
                    .ok()
                    .context("--from must be a date as YYYY-MM-DD")?,
                None => today,
            };
            let last = calendar.last_working_day(from, days)?;
            let deadline = end_of_day(last)?;
            let left = calendar.working_days_left(backflow_node::clock::now_ms(), deadline)?;
            writeln!(out, "triggered:  {from}")?;
            writeln!(out, "due:        {last} 24:00 (Beijing time)")?;
            writeln!(
                out,
                "remaining:  {left} working days (剩余 {left} 个工作日)"
            )?;
        }
    }
    Ok(())
}
