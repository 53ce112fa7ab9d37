//! Region codes (统计用区划代码) and administrative levels.
//!
//! A code is syntactically self-describing: its length gives its level (2 digits = province,
//! 4 = city, 6 = county, 9 = township), and in the NBS table every code's parent is its own
//! prefix (checked for the whole embedded table by the tests). So parent, ancestry, containment
//! and the lowest common ancestor are pure arithmetic on the code and need no table; the
//! [`crate::Topology`] adds existence, names and children.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The five tiers of administration (五级: 国家、省、市、县、乡).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 国家 — the State Council level; the single root.
    National = 0,
    /// 省级 — provinces, autonomous regions, municipalities.
    Province = 1,
    /// 地级 — prefecture-level cities (and the table's placeholders, see [`crate::RegionKind`]).
    City = 2,
    /// 县级 — counties and districts.
    County = 3,
    /// 乡级 — townships, towns and sub-districts (乡、镇、街道).
    Township = 4,
}

impl Level {
    /// All levels, root first.
    pub const ALL: [Level; 5] = [
        Level::National,
        Level::Province,
        Level::City,
        Level::County,
        Level::Township,
    ];

    /// Distance from the root: national 0 … township 4.
    pub fn depth(self) -> u8 {
        self as u8
    }

    /// The level one tier below, if any.
    pub fn child(self) -> Option<Level> {
        Level::ALL.get(self.depth() as usize + 1).copied()
    }

    /// The level one tier above, if any.
    pub fn parent(self) -> Option<Level> {
        (self.depth() as usize)
            .checked_sub(1)
            .map(|d| Level::ALL[d])
    }

    /// Number of digits of a code at this level (the national root is written `0`).
    pub fn digits(self) -> usize {
        match self {
            Level::National => 1,
            Level::Province => 2,
            Level::City => 4,
            Level::County => 6,
            Level::Township => 9,
        }
    }

    /// Lower-case English name, as used in the CLI and reports.
    pub fn name(self) -> &'static str {
        match self {
            Level::National => "national",
            Level::Province => "province",
            Level::City => "city",
            Level::County => "county",
            Level::Township => "township",
        }
    }

    /// The Chinese tier name.
    pub fn name_zh(self) -> &'static str {
        match self {
            Level::National => "国家",
            Level::Province => "省级",
            Level::City => "地级",
            Level::County => "县级",
            Level::Township => "乡级",
        }
    }

    /// How many decimal digits this level adds to its parent's code.
    fn segment_digits(self) -> u32 {
        match self {
            Level::National => 0,
            Level::Province | Level::City | Level::County => 2,
            Level::Township => 3,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Digits of a 12-digit village code (村级, 居委会/村委会): a record *location*, not a node.
pub const VILLAGE_DIGITS: usize = 12;

/// Why a string is not a region code. Every variant carries what a user needs to fix the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("empty region code")]
    Empty,
    #[error("region code {0:?} contains a non-digit character")]
    NonDigit(String),
    #[error("region code {0:?} has {1} digits; expected 2 (province), 4 (city), 6 (county), 9 (township) or 12 (village), or 0 for national")]
    BadLength(String, usize),
    #[error("region code {0:?} starts with 0; province codes run from 11 to 99")]
    LeadingZero(String),
    #[error("{0:?} is a 12-digit village code: a record location, not a node; use its township")]
    VillageNotNode(String),
    #[error("unknown region code {0}")]
    Unknown(String),
    #[error("region {parent} has no child with segment {segment}: townships have no children, and a segment must fit its tier's width")]
    NoChild { parent: String, segment: u64 },
}

/// A region code: level plus the code's digits as a number (e.g. township `110101001`).
///
/// Ordered by level, then code, so that sorting puts parents before children.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionCode {
    level: Level,
    digits: u64,
}

impl RegionCode {
    /// The national root. Written `0`.
    pub const NATIONAL: RegionCode = RegionCode {
        level: Level::National,
        digits: 0,
    };

    /// Builds a code from its level and digits, checking the digit count fits the level.
    pub fn new(level: Level, digits: u64) -> Result<RegionCode, CodeError> {
        let code = RegionCode { level, digits };
        let text = digits.to_string();
        let ok = match level {
            Level::National => digits == 0,
            // A number has no leading zero, so the length check also rejects a leading 0.
            // Zero segments are legal: the table's placeholders use them (county 441900 东莞,
            // township 350527000 金门).
            _ => text.len() == level.digits(),
        };
        if ok {
            Ok(code)
        } else {
            Err(CodeError::BadLength(text.clone(), text.len()))
        }
    }

    /// Parses the syntax of a node code (`0`, or 2/4/6/9 digits). Existence in a table is
    /// checked by [`crate::Topology::lookup`].
    pub fn parse(text: &str) -> Result<RegionCode, CodeError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CodeError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::NonDigit(text.to_string()));
        }
        if text == "0" {
            return Ok(RegionCode::NATIONAL);
        }
        let level = match text.len() {
            2 => Level::Province,
            4 => Level::City,
            6 => Level::County,
            9 => Level::Township,
            VILLAGE_DIGITS => return Err(CodeError::VillageNotNode(text.to_string())),
            n => return Err(CodeError::BadLength(text.to_string(), n)),
        };
        if text.starts_with('0') {
            // No province code starts with 0; a leading zero would also not survive as a number.
            return Err(CodeError::LeadingZero(text.to_string()));
        }
        // Length ≤ 9 and all digits: cannot overflow u64.
        let digits: u64 = text
            .parse()
            .map_err(|_| CodeError::NonDigit(text.to_string()))?;
        RegionCode::new(level, digits)
    }

    /// Parses a record location: a node code, or a 12-digit village code rolled up to its
    /// township (records carry village codes; nodes stop at townships). Syntax only.
    pub fn parse_location(text: &str) -> Result<RegionCode, CodeError> {
        let trimmed = text.trim();
        if trimmed.len() == VILLAGE_DIGITS && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return RegionCode::parse(&trimmed[..9]);
        }
        RegionCode::parse(trimmed)
    }

    pub fn level(self) -> Level {
        self.level
    }

    /// The code's digits as a number (`0` for national).
    pub fn digits(self) -> u64 {
        self.digits
    }

    /// The parent region (`None` for national). Pure arithmetic: codes nest by prefix.
    pub fn parent(self) -> Option<RegionCode> {
        let level = self.level.parent()?;
        Some(RegionCode {
            level,
            digits: self.digits / 10u64.pow(self.level.segment_digits()),
        })
    }

    /// Path from national down to and including `self`.
    pub fn path(self) -> Vec<RegionCode> {
        let mut path: Vec<RegionCode> = std::iter::successors(Some(self), |c| c.parent()).collect();
        path.reverse();
        path
    }

    /// Strict ancestors, nearest first (parent, grandparent, …, national).
    pub fn ancestors(self) -> impl Iterator<Item = RegionCode> {
        std::iter::successors(self.parent(), |c| c.parent())
    }

    /// The ancestor (or self) at `level`, if `level` is not below `self`.
    pub fn ancestor_at(self, level: Level) -> Option<RegionCode> {
        if level > self.level {
            return None;
        }
        let mut code = self;
        while code.level > level {
            code = code.parent()?;
        }
        Some(code)
    }

    /// Whether `self` is `other` or one of its ancestors (the region contains the other).
    pub fn contains(self, other: RegionCode) -> bool {
        other.ancestor_at(self.level) == Some(self)
    }

    /// The lowest region containing both (Art. 28: disputes go to the common superior).
    pub fn lowest_common_ancestor(self, other: RegionCode) -> RegionCode {
        let level = self.level.min(other.level);
        let (mut a, mut b) = (
            self.ancestor_at(level).unwrap_or(RegionCode::NATIONAL),
            other.ancestor_at(level).unwrap_or(RegionCode::NATIONAL),
        );
        while a != b {
            a = a.parent().unwrap_or(RegionCode::NATIONAL);
            b = b.parent().unwrap_or(RegionCode::NATIONAL);
        }
        a
    }

    /// The child code with the given last segment (e.g. `child(3)` of county `110101` is
    /// `110101003`). Used by generators; errors if the segment does not fit.
    pub fn child(self, segment: u64) -> Result<RegionCode, CodeError> {
        let no_child = || CodeError::NoChild {
            parent: self.to_string(),
            segment,
        };
        let level = self.level.child().ok_or_else(no_child)?;
        let width = 10u64.pow(level.segment_digits());
        if segment >= width {
            return Err(no_child());
        }
        RegionCode::new(level, self.digits * width + segment)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.digits)
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionCode({})", self.digits)
    }
}

impl FromStr for RegionCode {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionCode::parse(s)
    }
}

/// Human-readable formats (JSON, TOML) carry the code as its string; binary formats as a
/// packed u64 (`digits * 8 + level`), fixed-size and cheap to bound.
impl Serialize for RegionCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.digits * 8 + self.level as u64)
        }
    }
}

impl<'de> Deserialize<'de> for RegionCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            RegionCode::parse(&text).map_err(D::Error::custom)
        } else {
            let packed = u64::deserialize(deserializer)?;
            let level = *Level::ALL
                .get((packed % 8) as usize)
                .ok_or_else(|| D::Error::custom("bad level tag in region code"))?;
            RegionCode::new(level, packed / 8).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_levels() {
        assert_eq!(RegionCode::parse("0").unwrap(), RegionCode::NATIONAL);
        assert_eq!(RegionCode::parse("11").unwrap().level(), Level::Province);
        assert_eq!(RegionCode::parse("1101").unwrap().level(), Level::City);
        assert_eq!(RegionCode::parse("441900").unwrap().level(), Level::County);
        assert_eq!(
            RegionCode::parse("110101001").unwrap().level(),
            Level::Township
        );
    }

    #[test]
    fn malformed_codes_are_errors() {
        assert_eq!(RegionCode::parse(""), Err(CodeError::Empty));
        assert!(matches!(
            RegionCode::parse("11a1"),
            Err(CodeError::NonDigit(_))
        ));
        assert!(matches!(
            RegionCode::parse("１１"),
            Err(CodeError::NonDigit(_))
        ));
        assert!(matches!(
            RegionCode::parse("123"),
            Err(CodeError::BadLength(_, 3))
        ));
        assert!(matches!(
            RegionCode::parse("1234567890123"),
            Err(CodeError::BadLength(_, 13))
        ));
        assert!(matches!(
            RegionCode::parse("01"),
            Err(CodeError::LeadingZero(_))
        ));
        assert!(matches!(
            RegionCode::parse("0110"),
            Err(CodeError::LeadingZero(_))
        ));
        assert!(matches!(
            RegionCode::parse("110101001001"),
            Err(CodeError::VillageNotNode(_))
        ));
        assert!(matches!(
            RegionCode::parse("-1"),
            Err(CodeError::NonDigit(_))
        ));
    }

    #[test]
    fn village_locations_roll_up() {
        let t = RegionCode::parse_location("110101001001").unwrap();
        assert_eq!(t.to_string(), "110101001");
        assert_eq!(t.level(), Level::Township);
        assert!(RegionCode::parse_location("11010100100x").is_err());
    }

    #[test]
    fn arithmetic_tree() {
        let t = RegionCode::parse("441900003").unwrap();
        let path: Vec<String> = t.path().iter().map(|c| c.to_string()).collect();
        assert_eq!(path, ["0", "44", "4419", "441900", "441900003"]);
        let county = RegionCode::parse("441900").unwrap();
        let city = RegionCode::parse("4419").unwrap();
        assert_ne!(county, city, "same padded digits, different level");
        assert!(city.contains(county) && county.contains(t) && !t.contains(county));
        let other = RegionCode::parse("440103001").unwrap();
        assert_eq!(t.lowest_common_ancestor(other).to_string(), "44");
    }
}
