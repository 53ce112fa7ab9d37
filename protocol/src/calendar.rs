//! The statutory working-day calendar (工作日): deadlines of the regulation counted in working
//! days on the official holiday arrangement, in Beijing time.
//!
//! The regulation counts its deadlines in working days (e.g. Art. 21: 1 个工作日 for an
//! unconditional share request, 10 for a conditional one; Art. 22: 20 to deliver; Art. 26: 10 to
//! answer a correction). A working day is a weekday that the State Council's notice for the year
//! (国务院办公厅关于YYYY年部分节假日安排的通知) does not give off, or a weekend day it makes a
//! working day (调休上班). How a period is counted follows the Civil Code (民法典):
//! - Art. 201: the day of the triggering act is not counted (开始的当日不计入) — counting starts
//!   the day after;
//! - Art. 203: the period ends at 24:00 of its last day (期间的最后一日的截止时间为二十四时),
//!   here 24:00 Beijing time (UTC+8, no daylight saving), the time of the administration.
//!
//! The 2025 and 2026 notices are embedded ([`OFFICIAL_HOLIDAYS_TOML`], checked against the
//! notices); an operator adds a later year's notice as a file in the same format
//! ([`WorkingCalendar::add_file`]). A date in a year the calendar does not know is an explicit
//! error naming the missing year — a deadline is never guessed.
//!
//! Dates use `jiff`'s civil dates (leap years and weekdays done by a well-kept crate); the
//! calendar itself is plain data, so the protocol stays free of clocks and files: the shells
//! pass `now` and the operator's files' text.

use std::collections::{BTreeMap, BTreeSet};

/// A civil (calendar) date, as the calendar's API takes and gives them.
pub use jiff::civil::Date;
use jiff::civil::Weekday;
use jiff::tz::{self, Offset};
use jiff::Timestamp;
use serde::Deserialize;

use crate::time::UnixMs;

/// The official arrangements for 2025 (国办发明电〔2024〕12号) and 2026 (notice of 2025-11-04).
pub const OFFICIAL_HOLIDAYS_TOML: &str = include_str!("../data/cn-official-holidays.toml");

/// Beijing time, the clock of every statutory deadline.
pub const BEIJING: Offset = tz::offset(8);

/// Bounds on an operator's calendar file (hostile input like any other): its size, the years
/// it may define, the off ranges per year and their length, and the make-up days per year.
/// A real notice has 7 ranges of at most 9 days and at most 7 make-up days.
pub const CALENDAR_FILE_BYTES_MAX: usize = 64 * 1024;
pub const CALENDAR_YEAR_MIN: i16 = 2000;
pub const CALENDAR_YEAR_MAX: i16 = 2100;
pub const OFF_RANGES_PER_YEAR_MAX: usize = 32;
pub const OFF_RANGE_DAYS_MAX: u32 = 31;
pub const WORK_DAYS_PER_YEAR_MAX: usize = 32;
/// Working days a single period may count: the regulation's longest is 20 (Art. 22), an
/// extension adds at most 10; far beyond is a caller's mistake, not a deadline.
pub const WORKING_DAYS_MAX: u32 = 366;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar has no official arrangement for `year`: add that year's notice.
    #[error(
        "the working-day calendar has no official arrangement for {year}: add the State \
         Council's notice for {year} (国务院办公厅关于{year}年部分节假日安排的通知) as a calendar \
         file"
    )]
    YearUnknown { year: i16 },
    #[error("calendar file: {0}")]
    Invalid(String),
    /// A period longer than [`WORKING_DAYS_MAX`] working days.
    #[error("{days} working days is more than a statutory period can be ({max} at most)")]
    PeriodTooLong { days: u32, max: u32 },
    /// A time outside what a civil date can express.
    #[error("time {0} is outside the calendar's range")]
    TimeOutOfRange(UnixMs),
}

/// One year's arrangement as the file states it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearTable {
    #[serde(default)]
    off: Vec<(String, String)>,
    #[serde(default)]
    work: Vec<String>,
}

/// Working days on the official arrangements of the years it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingCalendar {
    /// Years with an official arrangement (a date of any other year is an error).
    years: BTreeSet<i16>,
    /// Days off that would otherwise be working days (and weekend days inside off ranges).
    off: BTreeSet<Date>,
    /// Weekend days made working days (调休上班).
    work: BTreeSet<Date>,
}

impl WorkingCalendar {
    /// The embedded official arrangements (2025 and 2026).
    pub fn official() -> WorkingCalendar {
        let mut c = WorkingCalendar::empty();
        // The embedded file is checked by this crate's tests: failing here is a build defect.
        c.add_file(OFFICIAL_HOLIDAYS_TOML)
            .expect("the embedded official calendar is valid");
        c
    }

    /// A calendar that knows no year.
    pub fn empty() -> WorkingCalendar {
        WorkingCalendar {
            years: BTreeSet::new(),
            off: BTreeSet::new(),
            work: BTreeSet::new(),
        }
    }

    /// Years with an official arrangement.
    pub fn years(&self) -> impl Iterator<Item = i16> + '_ {
        self.years.iter().copied()
    }

    /// Adds the years of a calendar file (the format of [`OFFICIAL_HOLIDAYS_TOML`]): a table per
    /// year with `off` (inclusive date ranges) and `work` (make-up days, each a Saturday or
    /// Sunday). Every problem is checked before anything is added. A year already known must
    /// be stated identically (a second copy of a notice is harmless; two different versions
    /// of one year are an error, never a silent override).
    pub fn add_file(&mut self, text: &str) -> Result<(), CalendarError> {
        if text.len() > CALENDAR_FILE_BYTES_MAX {
            return Err(CalendarError::Invalid(format!(
                "{} bytes, more than {CALENDAR_FILE_BYTES_MAX}",
                text.len()
            )));
        }
        let tables: BTreeMap<String, YearTable> =
            toml::from_str(text).map_err(|e| CalendarError::Invalid(toml_message(&e, text)))?;
        let mut incoming = WorkingCalendar::empty();
        for (key, table) in &tables {
            let year = parse_year(key)?;
            incoming.add_year(year, table)?;
        }
        for &year in &incoming.years {
            if self.years.contains(&year) && self.year_view(year) != incoming.year_view(year) {
                return Err(CalendarError::Invalid(format!(
                    "[{year}] differs from the arrangement already known for {year}"
                )));
            }
        }
        let off_and_work = incoming.off.intersection(&self.work).next().copied();
        let work_and_off = incoming.work.intersection(&self.off).next().copied();
        if let Some(d) = off_and_work.or(work_and_off) {
            return Err(CalendarError::Invalid(format!(
                "{d} is a day off in one year's table and a working day in another's"
            )));
        }
        self.years.extend(incoming.years);
        self.off.extend(incoming.off);
        self.work.extend(incoming.work);
        Ok(())
    }

    fn add_year(&mut self, year: i16, table: &YearTable) -> Result<(), CalendarError> {
        if table.off.len() > OFF_RANGES_PER_YEAR_MAX {
            return Err(CalendarError::Invalid(format!(
                "[{year}] has {} off ranges, more than {OFF_RANGES_PER_YEAR_MAX}",
                table.off.len()
            )));
        }
        if table.work.len() > WORK_DAYS_PER_YEAR_MAX {
            return Err(CalendarError::Invalid(format!(
                "[{year}] has {} make-up days, more than {WORK_DAYS_PER_YEAR_MAX}",
                table.work.len()
            )));
        }
        // A notice may list a day of an adjacent year (the 2019 notice made 2018-12-29 a
        // working day for 元旦): allowed, one year either side.
        let near = |d: Date| (d.year() - year).abs() <= 1;
        for (from, to) in &table.off {
            let (from, to) = (parse_date(year, from)?, parse_date(year, to)?);
            if !near(from) || !near(to) || to < from {
                return Err(CalendarError::Invalid(format!(
                    "[{year}] off range {from}..{to} is reversed or not near {year}"
                )));
            }
            let mut d = from;
            let mut days = 0;
            while d <= to {
                days += 1;
                if days > OFF_RANGE_DAYS_MAX {
                    return Err(CalendarError::Invalid(format!(
                        "[{year}] off range {from}..{to} is longer than {OFF_RANGE_DAYS_MAX} days"
                    )));
                }
                self.off.insert(d);
                d = next_day(d)?;
            }
        }
        for w in &table.work {
            let d = parse_date(year, w)?;
            if !near(d) {
                return Err(CalendarError::Invalid(format!(
                    "[{year}] make-up day {d} is not near {year}"
                )));
            }
            if !is_weekend(d) {
                return Err(CalendarError::Invalid(format!(
                    "[{year}] make-up day {d} is a {:?}: make-up working days (调休上班) fall on \
                     a Saturday or Sunday",
                    d.weekday()
                )));
            }
            if self.off.contains(&d) {
                return Err(CalendarError::Invalid(format!(
                    "[{year}] {d} is both a day off and a make-up working day"
                )));
            }
            self.work.insert(d);
        }
        self.years.insert(year);
        Ok(())
    }

    /// The off and work days of `year`'s own dates (to compare two statements of one year).
    fn year_view(&self, year: i16) -> (Vec<Date>, Vec<Date>) {
        let of = |s: &BTreeSet<Date>| s.iter().filter(|d| d.year() == year).copied().collect();
        (of(&self.off), of(&self.work))
    }

    /// Whether `day` is a working day (工作日). Errors if its year is unknown.
    pub fn is_working_day(&self, day: Date) -> Result<bool, CalendarError> {
        if !self.years.contains(&day.year()) {
            return Err(CalendarError::YearUnknown { year: day.year() });
        }
        Ok(if self.work.contains(&day) {
            true
        } else {
            !is_weekend(day) && !self.off.contains(&day)
        })
    }

    /// The last day of a period of `days` working days triggered on `start`: counting starts the
    /// day after `start` (民法典 Art. 201). For 0 days, `start` itself.
    pub fn last_working_day(&self, start: Date, days: u32) -> Result<Date, CalendarError> {
        if days > WORKING_DAYS_MAX {
            return Err(CalendarError::PeriodTooLong {
                days,
                max: WORKING_DAYS_MAX,
            });
        }
        let mut d = start;
        let mut counted = 0;
        while counted < days {
            d = next_day(d)?;
            if self.is_working_day(d)? {
                counted += 1;
            }
        }
        Ok(d)
    }

    /// The deadline of a period of `days` working days triggered at `at`: the instant its last
    /// working day ends, 24:00 Beijing time (民法典 Art. 203). Overdue means `now >= deadline`.
    pub fn deadline(&self, at: UnixMs, days: u32) -> Result<UnixMs, CalendarError> {
        let last = self.last_working_day(beijing_date(at)?, days)?;
        end_of_day(last)
    }

    /// Working days left before `deadline` as of `now`, counting today if it is a working day
    /// ("剩余 N 个工作日"); 0 once it has passed.
    pub fn working_days_left(&self, now: UnixMs, deadline: UnixMs) -> Result<u32, CalendarError> {
        if now >= deadline {
            return Ok(0);
        }
        // The deadline is a day's end: its day is the one just before it.
        let last = beijing_date(deadline.minus_ms(1))?;
        let mut d = beijing_date(now)?;
        let mut left = 0;
        while d <= last {
            if self.is_working_day(d)? {
                left += 1;
            }
            if left > WORKING_DAYS_MAX {
                break;
            }
            d = next_day(d)?;
        }
        Ok(left)
    }
}

/// The Beijing calendar date of an instant.
pub fn beijing_date(at: UnixMs) -> Result<Date, CalendarError> {
    let ms = i64::try_from(at.0).map_err(|_| CalendarError::TimeOutOfRange(at))?;
    let ts = Timestamp::from_millisecond(ms).map_err(|_| CalendarError::TimeOutOfRange(at))?;
    Ok(BEIJING.to_datetime(ts).date())
}

/// The instant `day` ends in Beijing (24:00, i.e. 00:00 of the next day).
pub fn end_of_day(day: Date) -> Result<UnixMs, CalendarError> {
    let next = next_day(day)?;
    let ts = BEIJING
        .to_timestamp(next.at(0, 0, 0, 0))
        .map_err(|_| CalendarError::Invalid(format!("{day} is outside the calendar's range")))?;
    u64::try_from(ts.as_millisecond())
        .map(UnixMs)
        .map_err(|_| CalendarError::Invalid(format!("{day} is before 1970")))
}

fn next_day(d: Date) -> Result<Date, CalendarError> {
    d.tomorrow()
        .map_err(|_| CalendarError::Invalid(format!("no day after {d}")))
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn parse_year(key: &str) -> Result<i16, CalendarError> {
    key.parse::<i16>()
        .ok()
        .filter(|y| (CALENDAR_YEAR_MIN..=CALENDAR_YEAR_MAX).contains(y))
        .ok_or_else(|| {
            // The key is the operator's text: named only if short and plain.
            let shown = if key.len() <= 8 && key.chars().all(|c| c.is_ascii_alphanumeric()) {
                key
            } else {
                "(unreadable)"
            };
            CalendarError::Invalid(format!(
                "table [{shown}] is not a year from {CALENDAR_YEAR_MIN} to {CALENDAR_YEAR_MAX}"
            ))
        })
}

fn parse_date(year: i16, text: &str) -> Result<Date, CalendarError> {
    text.parse::<Date>().map_err(|_| {
        let shown = if text.len() <= 16 && text.chars().all(|c| c.is_ascii_graphic()) {
            text
        } else {
            "(unreadable)"
        };
        CalendarError::Invalid(format!("[{year}] {shown} is not a date (YYYY-MM-DD)"))
    })
}

/// A TOML error as a line number only: the parser's own message may quote the file (a key, a
/// value), and an error never echoes file contents.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let what = "not valid TOML, or not a calendar table ([YYYY] with `off` = [[first, last], …] \
                and `work` = [date, …], dates as YYYY-MM-DD)";
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |head| head.bytes().filter(|b| *b == b'\n').count())
                + 1;
            format!("line {line}: {what}")
        }
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    /// Beijing midday of `s` as an instant.
    fn noon(s: &str) -> UnixMs {
        let ts = BEIJING.to_timestamp(date(s).at(12, 0, 0, 0)).unwrap();
        UnixMs(ts.as_millisecond() as u64)
    }

    fn due(c: &WorkingCalendar, received: &str, days: u32) -> Date {
        let deadline = c.deadline(noon(received), days).unwrap();
        // The deadline is the end of its last day.
        let last = beijing_date(deadline.minus_ms(1)).unwrap();
        assert_eq!(beijing_date(deadline).unwrap(), last.tomorrow().unwrap());
        last
    }

    /// The examples of issue #17, which must hold.
    #[test]
    fn the_issues_examples_hold() {
        let c = WorkingCalendar::official();
        // Friday 2026-02-13, 1 working day: Saturday 2026-02-14 is a make-up working day.
        assert_eq!(due(&c, "2026-02-13", 1), date("2026-02-14"));
        // 10 working days over the Spring Festival (02-15..02-23 off, 02-28 worked).
        assert_eq!(due(&c, "2026-02-13", 10), date("2026-03-05"));
        // National Day week off, Saturday 2026-10-10 worked.
        assert_eq!(due(&c, "2026-09-30", 10), date("2026-10-20"));
    }

    #[test]
    fn a_period_ends_at_midnight_beijing_time() {
        let c = WorkingCalendar::official();
        // Received 23:30 Beijing on Friday 2026-02-13 (15:30 UTC): still that day.
        let late = BEIJING
            .to_timestamp(date("2026-02-13").at(23, 30, 0, 0))
            .unwrap();
        let deadline = c.deadline(UnixMs(late.as_millisecond() as u64), 1).unwrap();
        // 2026-02-15T00:00+08:00 = 2026-02-14T16:00Z.
        let expected: Timestamp = "2026-02-14T16:00:00Z".parse().unwrap();
        assert_eq!(deadline.0 as i64, expected.as_millisecond());
        // Received 00:30 Beijing on Saturday 02-14 (16:30 UTC on Friday): the period starts
        // on Sunday 02-15, in the Spring Festival; the next working day is 02-24.
        let early = BEIJING
            .to_timestamp(date("2026-02-14").at(0, 30, 0, 0))
            .unwrap();
        let d = c
            .deadline(UnixMs(early.as_millisecond() as u64), 1)
            .unwrap();
        assert_eq!(beijing_date(d.minus_ms(1)).unwrap(), date("2026-02-24"));
    }

    #[test]
    fn across_the_2025_2026_boundary() {
        let c = WorkingCalendar::official();
        // 2026-01-01..03 off, Sunday 01-04 worked.
        assert_eq!(due(&c, "2025-12-31", 1), date("2026-01-04"));
        assert_eq!(due(&c, "2025-12-31", 2), date("2026-01-05"));
        // National Day 2025: 10-01..08 off, Saturday 10-11 worked.
        assert_eq!(due(&c, "2025-09-30", 1), date("2025-10-09"));
        assert_eq!(due(&c, "2025-09-30", 3), date("2025-10-11"));
        // An ordinary week: Friday + 1 is Monday.
        assert_eq!(due(&c, "2026-03-06", 1), date("2026-03-09"));
        // 0 days: the day itself.
        assert_eq!(due(&c, "2026-03-07", 0), date("2026-03-07"));
    }

    #[test]
    fn a_missing_year_is_an_error_naming_it_never_a_guess() {
        let c = WorkingCalendar::official();
        let e = c.deadline(noon("2026-12-28"), 10).unwrap_err();
        assert_eq!(e, CalendarError::YearUnknown { year: 2027 });
        assert!(e.to_string().contains("2027年部分节假日安排"), "{e}");
        assert!(c.is_working_day(date("2024-06-03")).is_err());
        // Adding the year's notice makes it work.
        let mut c = c;
        c.add_file("[2027]\noff = [[\"2027-01-01\", \"2027-01-01\"]]\nwork = []\n")
            .unwrap();
        assert!(c.deadline(noon("2026-12-28"), 10).is_ok());
        assert_eq!(c.years().collect::<Vec<_>>(), vec![2025, 2026, 2027]);
    }

    #[test]
    fn working_days_left_counts_today() {
        let c = WorkingCalendar::official();
        let deadline = c.deadline(noon("2026-09-30"), 10).unwrap();
        assert_eq!(c.working_days_left(noon("2026-09-30"), deadline), Ok(11));
        assert_eq!(c.working_days_left(noon("2026-10-08"), deadline), Ok(10));
        assert_eq!(c.working_days_left(noon("2026-10-20"), deadline), Ok(1));
        assert_eq!(c.working_days_left(deadline, deadline), Ok(0));
    }

    #[test]
    fn hostile_calendar_files_are_refused_with_a_clear_error() {
        let bad = [
            ("[2027]\nwork = [\"2027-01-04\"]\n", "Monday"),
            (
                "[2027]\noff = [[\"2027-02-10\", \"2027-02-01\"]]\n",
                "reversed",
            ),
            (
                "[2027]\noff = [[\"2027-01-01\", \"2027-03-01\"]]\n",
                "longer than",
            ),
            (
                "[2027]\noff = [[\"2030-01-01\", \"2030-01-02\"]]\n",
                "not near",
            ),
            ("[2027]\nwork = [\"2027-13-01\"]\n", "not a date"),
            ("[1066]\n", "not a year"),
            ("[2027]\nholidays = []\n", "not valid TOML"),
            ("[2027\n", "not valid TOML"),
            (
                "[2027]\noff = [[\"2027-01-02\", \"2027-01-03\"]]\nwork = [\"2027-01-02\"]\n",
                "both",
            ),
            // A second, different statement of a known year.
            ("[2026]\noff = []\nwork = []\n", "differs"),
        ];
        for (text, expected) in bad {
            let mut c = WorkingCalendar::official();
            let before = c.clone();
            let e = c.add_file(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
            assert_eq!(c, before, "nothing added on error");
        }
        let huge = "#".repeat(CALENDAR_FILE_BYTES_MAX + 1);
        assert!(WorkingCalendar::empty().add_file(&huge).is_err());
        // The same notice twice is harmless.
        let mut c = WorkingCalendar::official();
        c.add_file(OFFICIAL_HOLIDAYS_TOML).unwrap();
        assert_eq!(c, WorkingCalendar::official());
        assert!(matches!(
            c.last_working_day(date("2026-01-05"), WORKING_DAYS_MAX + 1),
            Err(CalendarError::PeriodTooLong { .. })
        ));
    }

    /// The embedded file is the one in `../shared` the issue names (kept in the crate so a
    /// clean clone builds); every listed make-up day is a weekend day and every year known.
    #[test]
    fn the_embedded_calendar_is_the_official_one() {
        let c = WorkingCalendar::official();
        assert_eq!(c.years().collect::<Vec<_>>(), vec![2025, 2026]);
        assert!(c.is_working_day(date("2026-02-14")).unwrap()); // Saturday, 调休
        assert!(!c.is_working_day(date("2026-02-16")).unwrap()); // Monday, 春节
        assert!(!c.is_working_day(date("2026-03-07")).unwrap()); // an ordinary Saturday
        assert!(c.is_working_day(date("2026-03-09")).unwrap()); // an ordinary Monday
    }
}
