//! Routing a record's region field to its township: township codes to a dense index for the
//! whole country (so a foreign township and an unknown one differ), the publisher's scope, and
//! the village check with its policy (`--strict-villages`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::OnceLock;

use backflow_topology::{RegionCode, Topology};

use crate::line_report::RejectReason;

/// What to do with a 12-digit village code whose township is in the table but whose village
/// is unknown.
///
/// The township must exist (else [`RejectReason::UnknownRegion`]); the village is checked
/// against the NBS 2023 village list embedded in `backflow_topology`
/// ([`backflow_topology::is_known_village`], 620,573 villages). A village not in it
/// (`110101001999`, or `110101001003`: 东华门街道 has no village 003) is an *unknown village*.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VillagePolicy {
    /// Route the record to its township and publish it (villages change faster than the
    /// table), counting it in [`crate::line_report::Warnings`].
    #[default]
    RollUp,
    /// Reject the record ([`RejectReason::UnknownVillage`]): `publish --strict-villages`.
    Strict,
}

impl VillagePolicy {
    /// `Strict` if `strict`, else the default `RollUp`.
    pub fn from_strict(strict: bool) -> VillagePolicy {
        if strict {
            VillagePolicy::Strict
        } else {
            VillagePolicy::RollUp
        }
    }
}

/// The field holding each record's location (a 9-digit township or 12-digit village code),
/// and what to do with unknown villages in it. Built from the field name (`"village".into()`)
/// with the default [`VillagePolicy::RollUp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionField {
    pub name: String,
    pub villages: VillagePolicy,
}

impl RegionField {
    pub fn new(name: impl Into<String>, villages: VillagePolicy) -> RegionField {
        RegionField {
            name: name.into(),
            villages,
        }
    }
}

impl From<&str> for RegionField {
    fn from(name: &str) -> RegionField {
        RegionField::new(name, VillagePolicy::default())
    }
}

impl From<String> for RegionField {
    fn from(name: String) -> RegionField {
        RegionField::new(name, VillagePolicy::default())
    }
}

/// Identity-style hasher for u64 township digits: keys are already well spread; SipHash would
/// cost more than the whole lookup.
#[derive(Default)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FastMap<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

/// The scope-independent part of the index: every township of the country, its digits →
/// dense index, and its known villages. Built once per process from [`Topology::china`] (~20 ms
/// in release, ~6 MB kept: a bitmap of 128 bytes per township) instead of once per publish: a
/// small publish, a test or a fuzz iteration would otherwise spend nearly all its time here.
struct Country {
    by_digits: FastMap<u32>,
    codes: Vec<RegionCode>,
    /// Per township (same index), a bit per village number 000–999 in the NBS list. Why not
    /// ask the topology per record: a binary search over 620,573 codes for each of millions
    /// of records cost more than the whole partitioning pass (143 against ~400 MB/s); a bit
    /// test here is one load.
    known_villages: Vec<[u64; 16]>,
}

fn country() -> &'static Country {
    static COUNTRY: OnceLock<Country> = OnceLock::new();
    COUNTRY.get_or_init(|| {
        let codes = Topology::china().townships_under(RegionCode::NATIONAL);
        let mut by_digits = FastMap::default();
        by_digits.reserve(codes.len());
        let mut known_villages = vec![[0u64; 16]; codes.len()];
        for (i, c) in codes.iter().enumerate() {
            by_digits.insert(c.digits(), i as u32);
            for v in backflow_topology::villages_of(*c) {
                let n = (v % 1000) as usize;
                known_villages[i][n / 64] |= 1 << (n % 64);
            }
        }
        Country {
            by_digits,
            codes,
            known_villages,
        }
    })
}

/// Township digits → dense index, for the whole country (so foreign and unknown differ), and
/// which townships are in the publisher's scope.
pub(crate) struct TownshipIndex {
    country: &'static Country,
    /// Every township of the country, in code order (the dense index).
    pub(crate) codes: &'static [RegionCode],
    /// The townships of the publisher's scope: a region's townships are contiguous in code
    /// order, so a range of the dense index. Work per pass is proportional to the scope, not
    /// to the country's 41,352 townships.
    pub(crate) scope: Range<usize>,
    villages: VillagePolicy,
}

/// A routed record: its township, and whether its village is unknown (rolled up: a warning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Routed {
    pub(crate) township: u32,
    pub(crate) unknown_village: bool,
}

impl TownshipIndex {
    /// The index of [`Topology::china`] for a publisher whose region is `scope`.
    pub(crate) fn new(scope: RegionCode, villages: VillagePolicy) -> TownshipIndex {
        let country = country();
        let range = if scope == RegionCode::NATIONAL {
            0..country.codes.len()
        } else {
            // The same walk of the same tree as `country.codes`: a slice of it.
            let under = Topology::china().townships_under(scope);
            let first = under
                .first()
                .and_then(|c| country.by_digits.get(&c.digits()));
            match first {
                Some(&i) => {
                    let range = i as usize..i as usize + under.len();
                    debug_assert_eq!(country.codes.get(range.clone()), Some(&under[..]));
                    range
                }
                // Not a region of the table: no township is in it.
                None => 0..0,
            }
        };
        TownshipIndex {
            country,
            codes: &country.codes,
            scope: range,
            villages,
        }
    }

    /// Whether village number `village` (the last three digits) of township `i` is in the NBS
    /// village list.
    fn village_known(&self, i: u32, village: u16) -> bool {
        let n = usize::from(village);
        debug_assert!(n < 1000, "three digits");
        self.country.known_villages[i as usize][n / 64] >> (n % 64) & 1 == 1
    }

    /// Routes a region field value; its township or the reason it cannot be routed.
    pub(crate) fn route(&self, value: &[u8]) -> Result<Routed, RejectReason> {
        let value = value.trim_ascii();
        if value.is_empty() {
            return Err(RejectReason::MissingRegion);
        }
        let digits = match value.len() {
            9 | 12 => &value[..9],
            _ => return Err(RejectReason::MalformedRegion),
        };
        if !value.iter().all(u8::is_ascii_digit) || value[0] == b'0' {
            return Err(RejectReason::MalformedRegion);
        }
        let n = digits
            .iter()
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
        let i = match self.country.by_digits.get(&n) {
            None => return Err(RejectReason::UnknownRegion),
            Some(&i) if !self.scope.contains(&(i as usize)) => {
                return Err(RejectReason::ForeignRegion)
            }
            Some(&i) => i,
        };
        let unknown_village = value.len() == 12 && {
            let village = value[9..]
                .iter()
                .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'));
            !self.village_known(i, village)
        };
        if unknown_village && self.villages == VillagePolicy::Strict {
            return Err(RejectReason::UnknownVillage);
        }
        Ok(Routed {
            township: i,
            unknown_village,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_the_range_of_its_townships() {
        for scope in [
            "0",
            "11",
            "1101",
            "110101",
            "110101001",
            "44",
            "4419",
            "441900",
            "4690",
            "65",
            "99",
            "9999",
            "119999999",
        ] {
            let code = RegionCode::parse(scope).unwrap();
            let index = TownshipIndex::new(code, VillagePolicy::RollUp);
            let scanned: Vec<usize> = (0..index.codes.len())
                .filter(|&i| code.contains(index.codes[i]))
                .collect();
            assert_eq!(index.scope.clone().collect::<Vec<_>>(), scanned, "{scope}");
            let expected = if scope.starts_with("99") || scope == "119999999" {
                0 // no such region
            } else {
                Topology::china().townships_under(code).len()
            };
            assert_eq!(index.scope.len(), expected, "{scope}");
        }
    }
}
