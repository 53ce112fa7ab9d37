//! The NBS 2023 village codes (村级, 12 digits): 620,573 villages in the 41,352 townships.
//!
//! The division tree stops at townships (villages are locations inside them, not nodes), but a
//! publisher must be able to tell a record's real village from a code that merely starts with
//! a real township (`110101001999`): such a record is still routed to its township (villages
//! change faster than any table), but reported, and refused under `--strict-villages`.
//!
//! `data/villages.txt` is derived from the NBS list (`villages.csv.gz`, see `data/SOURCE.md`):
//! one line per township, `TOWNSHIP:RANGES` with the villages' last three digits as ranges
//! (`110101001:1-2,5-7,9-10,13-15`), 1.1 MB, embedded with `include_str!` and parsed on first
//! use into a sorted table (~5 MB, ~30 ms; a node that never checks a village never pays).

use std::sync::OnceLock;

use crate::code::RegionCode;

const VILLAGES_TXT: &str = include_str!("../data/villages.txt");

/// Villages in the embedded list (checked when it is parsed).
pub const VILLAGES_TOTAL: usize = 620_573;

/// Every village code, sorted.
fn villages() -> &'static [u64] {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut out = Vec::with_capacity(VILLAGES_TOTAL);
        for line in VILLAGES_TXT.lines() {
            // Invariant: the embedded file is generated and checked by the tests below; a
            // malformed line is a build defect, not an input.
            let (township, ranges) = line.split_once(':').expect("TOWNSHIP:RANGES");
            let township: u64 = township.parse().expect("a township code");
            for range in ranges.split(',') {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (u64, u64) =
                    (a.parse().expect("a number"), b.parse().expect("a number"));
                out.extend((a..=b).map(|v| township * 1000 + v));
            }
        }
        debug_assert!(out.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        out
    })
}

/// Whether `village` (12 digits as a number, e.g. `110101001001`) is in the NBS 2023 list.
pub fn is_known_village(village: u64) -> bool {
    villages().binary_search(&village).is_ok()
}

/// The village codes of `township`, ascending (empty for a code that is not a township).
/// Every township of the table has at least one.
pub fn villages_of(township: RegionCode) -> &'static [u64] {
    if township.level() != crate::Level::Township {
        return &[];
    }
    let v = villages();
    let base = township.digits() * 1000;
    let lo = v.partition_point(|&c| c < base);
    let hi = v.partition_point(|&c| c < base + 1000);
    &v[lo..hi]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Level, Topology};

    #[test]
    fn the_list_is_whole_and_every_village_lies_in_a_known_township() {
        let v = villages();
        assert_eq!(v.len(), VILLAGES_TOTAL);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        let topo = Topology::china();
        let mut townships = std::collections::BTreeSet::new();
        for &code in v {
            townships.insert(code / 1000);
        }
        assert_eq!(townships.len(), topo.count(Level::Township));
        for t in townships {
            let r = RegionCode::parse(&t.to_string()).unwrap();
            assert!(topo.get(r).is_some(), "{t}");
        }
    }

    #[test]
    fn known_and_unknown_villages() {
        assert!(is_known_village(110101001001));
        assert!(is_known_village(110101001002));
        assert!(
            !is_known_village(110101001003),
            "a gap in 东华门街道's numbering"
        );
        assert!(!is_known_village(110101001999));
        assert!(!is_known_village(110101001000));
        assert!(is_known_village(350527000000), "金门's placeholder");
        let dhm = RegionCode::parse("110101001").unwrap();
        assert_eq!(
            villages_of(dhm),
            [
                110101001001,
                110101001002,
                110101001005,
                110101001006,
                110101001007,
                110101001009,
                110101001010,
                110101001013,
                110101001014,
                110101001015
            ]
        );
        assert!(villages_of(RegionCode::parse("1101").unwrap()).is_empty());
        for t in Topology::china().townships_under(RegionCode::NATIONAL) {
            assert!(!villages_of(t).is_empty(), "{t} has no village");
        }
    }
}
