//! `backflow topology …`: read-only queries on the embedded division table.

use std::io::Write;

use anyhow::Result;
use backflow_topology::{Level, Region, RegionKind, Topology};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TopologyCmd {
    /// Count of regions per level, and the total.
    Stats,
    /// A region's name, level and full path of names (CODE: 0, 2, 4, 6 or 9 digits, or a
    /// 12-digit village code, which resolves to its township).
    Show { code: String },
    /// The direct children of a region.
    Children { code: String },
}

pub fn run(cmd: TopologyCmd, out: &mut impl Write) -> Result<()> {
    let topology = Topology::china();
    match cmd {
        TopologyCmd::Stats => {
            for level in Level::ALL {
                writeln!(out, "{:<9} {:>6}", level.name(), topology.count(level))?;
            }
            writeln!(out, "{:<9} {:>6}", "total", topology.len())?;
        }
        TopologyCmd::Show { code } => {
            let region = resolve(topology, &code)?;
            writeln!(out, "code:     {}", region.code)?;
            writeln!(out, "name:     {}", region.name)?;
            writeln!(
                out,
                "level:    {} ({})",
                region.level(),
                region.level().name_zh()
            )?;
            if region.kind != RegionKind::Regular {
                writeln!(out, "kind:     {}", kind_label(region.kind))?;
            }
            writeln!(
                out,
                "path:     {}",
                topology.path_names(region.code).join(" / ")
            )?;
            writeln!(out, "children: {}", topology.children(region.code).len())?;
            writeln!(out, "subtree:  {}", topology.subtree_size(region.code))?;
        }
        TopologyCmd::Children { code } => {
            let region = resolve(topology, &code)?;
            for child in topology.children(region.code) {
                let name = topology.get(*child).map_or("", |r| r.name.as_str());
                writeln!(out, "{child}\t{name}")?;
            }
        }
    }
    Ok(())
}

/// Accepts a node code or a village code (shown as its township).
fn resolve<'t>(topology: &'t Topology, code: &str) -> Result<&'t Region> {
    if code.trim().len() == backflow_topology::VILLAGE_DIGITS {
        let township = topology.township_of(code)?;
        return Ok(topology
            .get(township)
            .expect("township_of returns known codes"));
    }
    Ok(topology.lookup(code)?)
}

fn kind_label(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Regular => "regular",
        RegionKind::MunicipalDistricts => "placeholder city of a municipality (市辖区/县)",
        RegionKind::DirectlyAdministered => "placeholder city (省直辖县级行政区划)",
        RegionKind::CityAsCounty => "placeholder county: city without a county tier",
        RegionKind::TownshipPlaceholder => "placeholder township",
        RegionKind::Synthetic => "synthetic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_to_string(cmd: TopologyCmd) -> Result<String> {
        let mut out = Vec::new();
        run(cmd, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn stats_lists_every_level() {
        let text = run_to_string(TopologyCmd::Stats).unwrap();
        assert!(text.contains("township   41352"), "{text}");
        assert!(text.contains("total      44704"), "{text}");
    }

    #[test]
    fn show_gives_path_of_names() {
        let text = run_to_string(TopologyCmd::Show {
            code: "441900003".into(),
        })
        .unwrap();
        assert!(
            text.contains("广东省 / 东莞市 / 东莞市 / 东城街道"),
            "{text}"
        );
    }

    #[test]
    fn unknown_code_is_an_error() {
        let err = run_to_string(TopologyCmd::Show {
            code: "9901".into(),
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "unknown region code 9901");
    }
}
