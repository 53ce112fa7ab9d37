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
/// in release) instead of once per publish: a small publish, a test or a fuzz iteration would
/// otherwise spend nearly all its time here.
///
/// Why this shape: routing is one lookup per record at random places in these tables, so
/// their size decides the partitioning rate. A hash map of all 41,352 townships and a
/// 128-byte village bitmap per township (6 MB together) missed the 2 MiB L2 cache on nearly
/// every record (45 % of a national publish's partitioning time in `perf`). Counties (2,978)
/// in a small map, townships' 3-digit numbers (83 KB) and villages as one bitmap per township
/// covering only its highest village number (1.3 MB) fit in it.
struct Country {
    /// County (the first 6 digits) → its townships: a range of dense indexes. The table's
    /// townships are in code order, so a county's are contiguous and ascending.
    counties: FastMap<(u32, u32)>,
    /// Per township, its number within its county (the last 3 digits of its code).
    numbers: Vec<u16>,
    codes: Vec<RegionCode>,
    /// Per township (same index), `village_words[village_at[i]..village_at[i + 1]]` is a bit
    /// per village number 000–(highest known) in the NBS list. Why not ask the topology per
    /// record: a binary search over 620,573 codes for each of millions of records cost more
    /// than the whole partitioning pass (143 against ~400 MB/s); a bit test here is one load.
    village_at: Vec<u32>,
    village_words: Vec<u64>,
}

impl Country {
    /// The dense index of the township with these 9 digits, if the table has it.
    fn find(&self, digits: u64) -> Option<u32> {
        let &(first, count) = self.counties.get(&(digits / 1000))?;
        let number = (digits % 1000) as u16;
        let numbers = &self.numbers[first as usize..(first + count) as usize];
        let k = numbers.binary_search(&number).ok()?;
        Some(first + k as u32)
    }
}

fn country() -> &'static Country {
    static COUNTRY: OnceLock<Country> = OnceLock::new();
    COUNTRY.get_or_init(|| {
        let codes = Topology::china().townships_under(RegionCode::NATIONAL);
        let mut counties = FastMap::default();
        let mut numbers = Vec::with_capacity(codes.len());
        let mut village_at = Vec::with_capacity(codes.len() + 1);
        let mut village_words = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            let digits = c.digits();
            assert!(
                i == 0 || codes[i - 1].digits() < digits,
                "the table's townships are in code order"
            );
            counties
                .entry(digits / 1000)
                .and_modify(|(_, count)| *count += 1)
                .or_insert((i as u32, 1u32));
            numbers.push((digits % 1000) as u16);
            village_at.push(village_words.len() as u32);
            let villages: Vec<usize> = backflow_topology::villages_of(*c)
                .iter()
                .map(|v| (v % 1000) as usize)
                .collect();
            let words = villages.iter().max().map_or(0, |&n| n / 64 + 1);
            let base = village_words.len();
            village_words.resize(base + words, 0);
            for n in villages {
                village_words[base + n / 64] |= 1 << (n % 64);
            }
        }
        village_at.push(village_words.len() as u32);
        Country {
            counties,
            numbers,
            codes,
            village_at,
            village_words,
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
            let first = under.first().and_then(|c| country.find(c.digits()));
            match first {
                Some(i) => {
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
        let c = self.country;
        let (from, to) = (c.village_at[i as usize], c.village_at[i as usize + 1]);
        let words = &c.village_words[from as usize..to as usize];
        words.get(n / 64).is_some_and(|w| w >> (n % 64) & 1 == 1)
    }

    /// Routes a region field value; its township or the reason it cannot be routed.
    #[cfg(test)]
    pub(crate) fn route(&self, value: &[u8]) -> Result<Routed, RejectReason> {
        self.locate(Parsed::from_value(value)?)
    }

    /// The township of a parsed code, or why it has none. The only step that looks up tables
    /// (kept apart from parsing so a batch of lines can overlap its cache misses: see
    /// [`crate::scan`]).
    pub(crate) fn locate(&self, parsed: Parsed) -> Result<Routed, RejectReason> {
        let i = match self.country.find(parsed.township_digits) {
            None => return Err(RejectReason::UnknownRegion),
            Some(i) if !self.scope.contains(&(i as usize)) => {
                return Err(RejectReason::ForeignRegion)
            }
            Some(i) => i,
        };
        let unknown_village =
            parsed.village != Parsed::NO_VILLAGE && !self.village_known(i, parsed.village);
        if unknown_village && self.villages == VillagePolicy::Strict {
            return Err(RejectReason::UnknownVillage);
        }
        Ok(Routed {
            township: i,
            unknown_village,
        })
    }
}

/// A region field value that has the form of a township (9 digits) or village (12 digits)
/// code, not yet looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    township_digits: u64,
    /// The village number (last three digits), or [`Parsed::NO_VILLAGE`] for a 9-digit code.
    village: u16,
}

impl Parsed {
    const NO_VILLAGE: u16 = u16::MAX;

    /// Parses a region field value, or says why it is not a township or village code.
    pub(crate) fn from_value(value: &[u8]) -> Result<Parsed, RejectReason> {
        let value = value.trim_ascii();
        if value.is_empty() {
            return Err(RejectReason::MissingRegion);
        }
        if !matches!(value.len(), 9 | 12)
            || !value.iter().all(u8::is_ascii_digit)
            || value[0] == b'0'
        {
            return Err(RejectReason::MalformedRegion);
        }
        let township_digits = value[..9]
            .iter()
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
        let village = match value.get(9..) {
            Some(v) if !v.is_empty() => v
                .iter()
                .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0')),
            _ => Parsed::NO_VILLAGE,
        };
        Ok(Parsed {
            township_digits,
            village,
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

    /// The compact tables answer exactly what the division table says, for every township
    /// and every village number 000–999.
    #[test]
    fn every_township_and_village_is_found_as_the_table_has_it() {
        let index = TownshipIndex::new(RegionCode::NATIONAL, VillagePolicy::RollUp);
        for (i, code) in index.codes.iter().enumerate() {
            assert_eq!(index.country.find(code.digits()), Some(i as u32), "{code}");
            let villages = backflow_topology::villages_of(*code);
            for v in villages {
                assert!(index.village_known(i as u32, (v % 1000) as u16), "{v}");
            }
            let known = (0..1000u16)
                .filter(|&n| index.village_known(i as u32, n))
                .count();
            assert_eq!(known, villages.len(), "{code}");
        }
        for absent in [110_101_000, 110_101_999, 110_100_001, 999_999_001, 0] {
            assert_eq!(index.country.find(absent), None, "{absent}");
        }
    }

    #[test]
    fn values_are_parsed_before_they_are_looked_up() {
        let index = TownshipIndex::new(RegionCode::parse("11").unwrap(), VillagePolicy::Strict);
        for (value, expected) in [
            ("", Err(RejectReason::MissingRegion)),
            ("  ", Err(RejectReason::MissingRegion)),
            ("11010100100", Err(RejectReason::MalformedRegion)),
            ("011010100100", Err(RejectReason::MalformedRegion)),
            ("11010100100x", Err(RejectReason::MalformedRegion)),
            ("110101999", Err(RejectReason::UnknownRegion)),
            ("441900003", Err(RejectReason::ForeignRegion)),
            ("110101001999", Err(RejectReason::UnknownVillage)),
        ] {
            assert_eq!(index.route(value.as_bytes()), expected, "{value:?}");
        }
        let routed = index.route(b" 110101001 ").unwrap();
        assert_eq!(index.codes[routed.township as usize].digits(), 110_101_001);
        assert!(!routed.unknown_village);
    }
}
