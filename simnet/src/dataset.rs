//! Return-flow payloads modelled by size and hash: how a dataset of S bytes and R records is
//! spread over the townships, and the per-region totals every node must end up holding.

use std::io::Read;
use std::sync::OnceLock;

use backflow_topology::{Level, RegionCode, Topology};

use crate::error::{SimError, VillageTableError};

/// `township,villages` per line, gzip; see `data/SOURCE.md`.
const VILLAGES_GZ: &[u8] = include_bytes!("../data/township_villages.csv.gz");

/// Village counts of the real townships, sorted by code. Parsed once.
pub fn village_counts() -> &'static [(RegionCode, u32)] {
    static TABLE: OnceLock<Vec<(RegionCode, u32)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Compiled in and checked by the tests: failure here is a build defect.
        parse_village_table(VILLAGES_GZ).expect("embedded village table is valid")
    })
}

/// Parses the gzip table (exposed for the test that re-derives it from the source).
pub fn parse_village_table(gz: &[u8]) -> Result<Vec<(RegionCode, u32)>, SimError> {
    let bad = SimError::VillageTable;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| bad(VillageTableError::Unreadable(e.to_string())))?;
    let mut out = Vec::with_capacity(42_000);
    for (n, line) in text.lines().enumerate().skip(1) {
        let line_no = n + 1;
        let (code, count) = line
            .split_once(',')
            .ok_or_else(|| bad(VillageTableError::NoComma { line: line_no }))?;
        let code = RegionCode::parse(code).map_err(|error| {
            bad(VillageTableError::Code {
                line: line_no,
                error,
            })
        })?;
        let count = count
            .parse()
            .map_err(|_| bad(VillageTableError::BadCount { line: line_no }))?;
        out.push((code, count));
    }
    if !out.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err(bad(VillageTableError::NotSorted));
    }
    Ok(out)
}

/// One partition: what a region must hold, as size, record count and a content digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Part {
    pub bytes: u64,
    pub records: u64,
    /// blake3 of (dataset id, region, records, bytes): stands for the real content hash.
    pub hash: [u8; 32],
}

/// The dataset laid over a topology: per node index, its subtree's totals, and where its
/// share sits inside its parent's (children's shares are concatenated in code order).
#[derive(Clone, Debug)]
pub struct Layout {
    pub dataset_id: String,
    pub bytes_total: u64,
    pub records_total: u64,
    /// Per node index: the whole subtree's partition (townships: their own records).
    pub parts: Vec<Part>,
    /// Per node index: byte offset of this node's share inside its parent's share.
    pub offset_in_parent: Vec<u64>,
    /// Per node index: weight used to spread records (villages of a township, else 0).
    pub weight: Vec<u64>,
}

/// How a dataset's records spread over the townships.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// In proportion to each township's real village count (a register of villages: a
    /// township of 40 villages gets 40 times one of 1).
    #[default]
    Villages,
    /// The same share for every township, as the node's national bench generates its
    /// population register (`node/benches/common.rs`: records to townships uniformly at
    /// random, ~12.5 KB each at 518 MB): every partition one small chunk group.
    Even,
}

impl Spread {
    pub fn parse(text: &str) -> Result<Spread, SimError> {
        match text {
            "villages" => Ok(Spread::Villages),
            "even" => Ok(Spread::Even),
            _ => Err(SimError::UnknownSpread(text.to_string())),
        }
    }
}

impl Layout {
    /// Spreads `records` over the townships under `root` (the publisher's region) by `spread`
    /// (largest remainder, so the totals are exact), and `bytes` in proportion to records
    /// (same method). Regions outside `root` get nothing.
    pub fn new(
        topo: &Topology,
        root: RegionCode,
        dataset_id: &str,
        bytes: u64,
        records: u64,
        spread: Spread,
    ) -> Layout {
        let codes = topo.codes();
        let n = codes.len();
        let real = village_counts();
        let mut weight = vec![0u64; n];
        for (i, code) in codes.iter().enumerate() {
            if code.level() == Level::Township && root.contains(*code) {
                // Real townships use their village count; synthetic ones (or a table mismatch)
                // count as one village each, so they still receive records.
                weight[i] = match (spread, real.binary_search_by_key(code, |(c, _)| *c)) {
                    (Spread::Villages, Ok(k)) => u64::from(real[k].1.max(1)),
                    _ => 1,
                };
            }
        }
        let recs = apportion(records, &weight);
        let byte_share = apportion(bytes, &recs);
        let mut parts = vec![Part::default(); n];
        for i in 0..n {
            if codes[i].level() == Level::Township {
                parts[i].records = recs[i];
                parts[i].bytes = byte_share[i];
            }
        }
        // Children come after parents in (level, code) order: sum bottom-up.
        let mut offset_in_parent = vec![0u64; n];
        for i in (0..n).rev() {
            let children = topo.children(codes[i]);
            if children.is_empty() {
                continue;
            }
            let mut off = 0;
            let (mut b, mut r) = (0, 0);
            for child in children {
                let c = codes.binary_search(child).unwrap_or(i);
                offset_in_parent[c] = off;
                off += parts[c].bytes;
                b += parts[c].bytes;
                r += parts[c].records;
            }
            parts[i].bytes = b;
            parts[i].records = r;
        }
        for i in 0..n {
            let p = &mut parts[i];
            let mut h = blake3::Hasher::new();
            h.update(dataset_id.as_bytes());
            h.update(&codes[i].digits().to_le_bytes());
            h.update(&[codes[i].level().depth()]);
            h.update(&p.records.to_le_bytes());
            h.update(&p.bytes.to_le_bytes());
            // Empty content has the empty hash (the protocol checks this for empty partitions).
            p.hash = if p.bytes == 0 {
                *blake3::hash(&[]).as_bytes()
            } else {
                *h.finalize().as_bytes()
            };
        }
        debug_assert_eq!(parts[0].bytes, if records > 0 { bytes } else { 0 });
        Layout {
            dataset_id: dataset_id.to_string(),
            bytes_total: parts[0].bytes,
            records_total: parts[0].records,
            parts,
            offset_in_parent,
            weight,
        }
    }
}

#[cfg(test)]
mod scoped_tests {
    use super::*;

    #[test]
    fn a_provincial_dataset_stays_in_its_province() {
        let topo = Topology::synthetic(backflow_topology::Fanout::fixed(2, 2, 2, 3), 3).unwrap();
        let p = RegionCode::parse("12").unwrap();
        let l = Layout::new(&topo, p, "d", 1_000, 100, Spread::Villages);
        let i = topo.codes().binary_search(&p).unwrap();
        assert_eq!((l.parts[i].bytes, l.parts[i].records), (1_000, 100));
        assert_eq!(l.bytes_total, 1_000);
    }
}

/// Splits `total` over `weights` proportionally; the result sums to exactly `total` when any
/// weight is non-zero (largest remainder; ties to the lower index, so deterministic).
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut out = vec![0u64; weights.len()];
    if sum == 0 {
        return out;
    }
    let mut rema: Vec<(u128, usize)> = Vec::new();
    let mut given: u64 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(w);
        out[i] = (exact / sum) as u64;
        given += out[i];
        if w > 0 {
            rema.push((exact % sum, i));
        }
    }
    let mut left = total - given;
    rema.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &rema {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    debug_assert_eq!(out.iter().sum::<u64>(), total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_covers_every_real_township() {
        let t = village_counts();
        let china = Topology::china();
        assert_eq!(t.len(), china.count(Level::Township));
        assert_eq!(t.iter().map(|(_, n)| u64::from(*n)).sum::<u64>(), 620_573);
        assert!(t.iter().all(|(c, _)| china.contains_code(*c)));
    }

    /// Re-derives the table from `shared/` (present in CI) so a drifted copy fails.
    #[test]
    fn village_table_matches_source() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/divisions/villages.csv.gz");
        let Ok(raw) = std::fs::read(&src) else {
            eprintln!("skipping: {} not present", src.display());
            return;
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        let mut counts = std::collections::BTreeMap::<RegionCode, u32>::new();
        for line in text.lines().skip(1) {
            let code = &line[..9];
            *counts.entry(RegionCode::parse(code).unwrap()).or_default() += 1;
        }
        let derived: Vec<(RegionCode, u32)> = counts.into_iter().collect();
        assert_eq!(derived, village_counts());
    }

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0, 2, 5]), vec![0, 2, 5]);
        assert_eq!(apportion(5, &[0, 0]), vec![0, 0]);
        assert_eq!(apportion(0, &[3]), vec![0]);
    }

    #[test]
    fn layout_sums_up_the_tree() {
        let topo = Topology::synthetic(backflow_topology::Fanout::fixed(2, 2, 2, 3), 3).unwrap();
        let l = Layout::new(
            &topo,
            RegionCode::NATIONAL,
            "d",
            1_000_000,
            10_000,
            Spread::Villages,
        );
        assert_eq!(l.bytes_total, 1_000_000);
        assert_eq!(l.records_total, 10_000);
        for (i, code) in topo.codes().iter().enumerate() {
            let kids = topo.children(*code);
            if kids.is_empty() {
                continue;
            }
            let sum: u64 = kids
                .iter()
                .map(|k| l.parts[topo.codes().binary_search(k).unwrap()].bytes)
                .sum();
            assert_eq!(sum, l.parts[i].bytes);
        }
    }

    /// The national bench's shape: 518 MB over all 41,352 townships, evenly: every partition
    /// is ~12.5 KB (147 or 148 records, bytes in proportion), one chunk group.
    #[test]
    fn an_even_spread_gives_every_township_the_same_share() {
        let china = Topology::china();
        let l = Layout::new(
            china,
            RegionCode::NATIONAL,
            "d",
            518_000_000,
            6_100_000,
            Spread::Even,
        );
        let sizes: Vec<u64> = china
            .codes()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.level() == Level::Township)
            .map(|(i, _)| l.parts[i].bytes)
            .collect();
        assert_eq!(sizes.len(), 41_352);
        assert_eq!(sizes.iter().sum::<u64>(), 518_000_000);
        assert!(sizes.iter().all(|b| (12_440..=12_610).contains(b)));
    }
}
