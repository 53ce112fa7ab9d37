//! How values read on a page: Beijing time (UTC+8, `2026-12-06 08:30`), ages, byte counts,
//! region names from the division table (区划代码 → 中文名), and URL query escaping.

use std::time::{SystemTime, UNIX_EPOCH};

use backflow_topology::{RegionCode, Topology};

use crate::i18n::Lang;

const BEIJING_OFFSET_MS: i64 = 8 * 3_600_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A civil date from days since 1970-01-01 (H. Hinnant's algorithm; proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix ms as Beijing time to the minute: `2026-12-06 08:30`.
pub fn beijing(ms: u64) -> String {
    let local = i64::try_from(ms).unwrap_or(i64::MAX - BEIJING_OFFSET_MS) + BEIJING_OFFSET_MS;
    let secs = local.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", s / 3600, s / 60 % 60)
}

/// "2026-12-06 08:30（3 分钟前）": the moment and how long ago it was.
pub fn moment(lang: Lang, ms: u64, now: u64) -> String {
    let when = beijing(ms);
    if ms > now {
        return when;
    }
    match lang {
        Lang::Zh => format!("{when}（{}）", lang.ago((now - ms) / 1000)),
        Lang::En => format!("{when} ({})", lang.ago((now - ms) / 1000)),
    }
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The region's name in the division table, if `code` is one.
pub fn region_name(code: &str) -> Option<&'static str> {
    let code = RegionCode::parse(code).ok()?;
    Topology::china().get(code).map(|r| r.name.as_str())
}

/// "广东省 (44)"; an unknown code as itself.
pub fn region_label(code: &str) -> String {
    match region_name(code) {
        Some(name) => format!("{name} ({code})"),
        None => code.to_string(),
    }
}

/// A party as the node writes it ("44 民政厅": region code, department) with the region named:
/// "广东省 民政厅".
pub fn origin_label(origin: &str) -> String {
    match origin.split_once(' ') {
        Some((code, department)) => match region_name(code) {
            Some(name) => format!("{name} {department}"),
            None => origin.to_string(),
        },
        None => origin.to_string(),
    }
}

/// The region code of a party text ("44 民政厅" → "44").
pub fn origin_region(origin: &str) -> &str {
    origin.split_once(' ').map_or(origin, |(code, _)| code)
}

/// The first `n` characters of a hex digest (ids, roots), for tables.
pub fn short(hex: &str, n: usize) -> &str {
    match hex.char_indices().nth(n) {
        Some((i, _)) => &hex[..i],
        None => hex,
    }
}

/// Escapes a query value (`application/x-www-form-urlencoded`, UTF-8).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Delivered out of expected, as a fraction in 0..=1 (0 when nothing is expected).
pub fn fraction(delivered: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        (delivered as f64 / expected as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        // 2026-12-06 00:30 UTC.
        assert_eq!(beijing(1_796_517_000_000), "2026-12-06 08:30");
        assert_eq!(beijing(0), "1970-01-01 08:00");
        // Across a year end and a leap day.
        assert_eq!(
            beijing(1_798_761_600_000 - 8 * 3_600_000),
            "2027-01-01 00:00"
        );
        assert_eq!(beijing(1_709_164_800_000), "2024-02-29 08:00");
        assert_eq!(
            moment(Lang::Zh, 1_796_517_000_000, 1_796_517_180_000),
            "2026-12-06 08:30（3 分钟前）"
        );
    }

    #[test]
    fn sizes_counts_and_names() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(region_name("44"), Some("广东省"));
        assert_eq!(region_label("4401"), "广州市 (4401)");
        assert_eq!(region_label("x<"), "x<");
        assert_eq!(origin_label("44 民政厅"), "广东省 民政厅");
        assert_eq!(origin_region("44 民政厅"), "44");
        assert_eq!(short("abcdef", 4), "abcd");
        assert_eq!(query_escape("a b&户籍"), "a%20b%26%E6%88%B7%E7%B1%8D");
    }
}
