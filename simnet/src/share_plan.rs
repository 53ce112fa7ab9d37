//! The national sharing scenario's plan (issue #17): who files which share request when, and
//! how each provider and requester behaves — all drawn from the seed before the run, so the
//! same options give the same run. Below the adapter ([`crate::protonode`]), whose nodes act
//! on it, and the driver ([`crate::sharing`]), which checks the outcome against it.
//!
//! - **Departments.** Nodes are drawn by tier weight from the real division tree, each with 2–4
//!   departments; every department that is asked for data publishes one catalog entry,
//!   conditional (有条件共享) or unconditional (无条件共享) by the configured share.
//! - **Requests.** Between random departments: some within one node, some within one
//!   province, the rest across the country. Filed in working hours over a window of calendar
//!   days (by default from 2026-09-25: 中秋节 and the National Day week), a few at any hour.
//! - **Scripts.** Each request's provider answers after a delay drawn from a configurable
//!   distribution, in working days (`wd`, counted like the statute: the k-th working day after
//!   the trigger's date) or calendar days (`d`); some send the one incomplete-material notice
//!   (the requester supplements, the period restarts), some extend once with the authority's
//!   consent, some refuse; a grant is followed by delivery (start, then delivered) after its
//!   own delay.
//! - **Faults.** A fraction of relay nodes (forwarding some request's acts; national
//!   excepted) goes down for hours within the filing window: acts wait for them (retransmitted
//!   with backoff from `retry_ms`, and at once when they are back), and their own departments
//!   act when they are back. Messages are lost
//!   at the configured rate on every link.
//!
//! The network is every node on the tree paths of the parties: each party's node and its
//! ancestors up to national, so every act between two parties can travel through their
//! lowest common ancestor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use backflow_protocol::calendar::{beijing_date, end_of_day, Date, WorkingCalendar};
use backflow_protocol::catalog::{
    CatalogEntry, CatalogOrigin, DataFormat, DataGrade, DataItem, DataType, SharingAttribute,
    SharingMethod, UpdateFrequency,
};
use backflow_protocol::manifest::Hash;
use backflow_protocol::share::{
    ShareRequest, ANSWER_CONDITIONAL_WORKING_DAYS, ANSWER_UNCONDITIONAL_WORKING_DAYS,
    EXTENSION_WORKING_DAYS_MAX,
};
use backflow_protocol::time::{UnixMs, DAY_MS, HOUR_MS};
use backflow_topology::{Level, RegionCode, Topology};
use ed25519_dalek::SigningKey;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Serialize, Serializer};

use crate::error::SimError;
use crate::net::Fault;
use crate::time::{Micros, MICROS_PER_MS};

/// A provisional 2027 arrangement (weekends and 元旦 only), so that deadlines counted into
/// 2027 — a grant in December has its delivery due in January — are defined. The State
/// Council's 2027 notice (usually published in November) replaces it: `--calendar FILE`.
pub const PROVISIONAL_2027: &str = "# Provisional: weekends and 元旦 only (not the official notice).\n[2027]\noff = [[\"2027-01-01\", \"2027-01-01\"]]\nwork = []\n";

/// The one catalog entry each provider department publishes.
pub const ENTRY_ID: &str = "shared-data-1";
/// The condition a conditional entry lists (and a grant of it carries).
pub const PERMITTED_USE: &str = "政务服务办理";
/// Department names (generic bureau names; any node may have any of them).
const DEPARTMENT_NAMES: [&str; 12] = [
    "公安",
    "民政",
    "人社",
    "卫健",
    "市场监管",
    "自然资源",
    "税务",
    "教育",
    "住建",
    "交通运输",
    "农业农村",
    "生态环境",
];
/// Departments per node with departments (uniform).
const DEPARTMENTS_PER_NODE: (usize, usize) = (2, 4);
/// Requests at most (memory: a plan entry, two or three copies of a case).
pub const REQUESTS_MAX: usize = 2_000_000;
/// Departments at most (the country has ~45 k nodes; 12 names each).
pub const DEPARTMENTS_MAX: usize = 400_000;
/// How long after the epoch the run may last: every deadline, act and term of use of the
/// scenario falls inside, and the nodes' certificates (valid a year) outlast it.
pub const HORIZON_DAYS: u64 = 330;
/// Terms of use (使用时限) end this long after filing: after the horizon, so no case expires.
const USE_DAYS: u64 = 340;
/// A plan request's scope (使用范围) names its index (its requests differ in it).
const SCOPE_PREFIX: &str = "simnet request ";
/// Working hours in which departments act on working days (Beijing time).
const WORK_START_H: u64 = 9;
const WORK_HOURS: u64 = 9;

/// Unit of a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayUnit {
    /// Working days counted as the statute counts them: `x` lands on the ⌈x⌉-th working day
    /// after the trigger's date, in working hours (a fractional part later in the day; a whole
    /// number at 18:00). So `1` meets a 1-working-day deadline and `1.2` misses it by one.
    WorkingDays,
    /// Calendar days: `x` × 24 h after the trigger.
    Days,
}

/// One delay drawn from a [`DelayDist`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delay {
    pub unit: DelayUnit,
    pub value: f64,
}

impl Delay {
    pub fn wd(value: f64) -> Delay {
        Delay {
            unit: DelayUnit::WorkingDays,
            value,
        }
    }
}

/// A delay distribution: weighted buckets, uniform within each. Spec: `UNIT:LO-HI=W,…` with
/// `UNIT` `wd` (working days) or `d` (calendar days); a bucket may be a point `V=W`. E.g.
/// `wd:0-1=88,1-2=8,2-5=3,5-15=1`: 88 % within the first working day, 1 % 5–15 working days.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayDist {
    spec: String,
    unit: DelayUnit,
    buckets: Vec<(f64, f64, u32)>,
    total: u64,
}

/// Longest delay a bucket may name (a year).
const DELAY_MAX: f64 = 366.0;
const BUCKETS_MAX: usize = 64;

impl DelayDist {
    pub fn parse(spec: &str) -> Result<DelayDist, String> {
        let spec = spec.trim();
        let (unit, rest) = if let Some(r) = spec.strip_prefix("wd:") {
            (DelayUnit::WorkingDays, r)
        } else if let Some(r) = spec.strip_prefix("d:") {
            (DelayUnit::Days, r)
        } else {
            return Err("expected wd:… (working days) or d:… (calendar days)".to_string());
        };
        let mut buckets = Vec::new();
        for part in rest.split(',') {
            let (range, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("bucket {part:?}: expected LO-HI=WEIGHT or V=WEIGHT"))?;
            let num = |s: &str| -> Result<f64, String> {
                let v: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not a number"))?;
                if !(0.0..=DELAY_MAX).contains(&v) {
                    return Err(format!("{v} is outside 0..{DELAY_MAX}"));
                }
                Ok(v)
            };
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(range)?, num(range)?),
            };
            if lo > hi {
                return Err(format!("bucket {part:?}: {lo} > {hi}"));
            }
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("bucket {part:?}: the weight must be a whole number"))?;
            if weight > 0 {
                buckets.push((lo, hi, weight));
            }
        }
        if buckets.is_empty() || buckets.len() > BUCKETS_MAX {
            return Err(format!("1 to {BUCKETS_MAX} buckets of positive weight"));
        }
        let total = buckets.iter().map(|b| u64::from(b.2)).sum();
        Ok(DelayDist {
            spec: spec.to_string(),
            unit,
            buckets,
            total,
        })
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn sample(&self, rng: &mut impl Rng) -> Delay {
        let mut pick = rng.gen_range(0..self.total);
        let mut chosen = self.buckets[0];
        for b in &self.buckets {
            if pick < u64::from(b.2) {
                chosen = *b;
                break;
            }
            pick -= u64::from(b.2);
        }
        let (lo, hi, _) = chosen;
        let value = if hi > lo { rng.gen_range(lo..hi) } else { lo };
        Delay {
            unit: self.unit,
            value,
        }
    }
}

impl Serialize for DelayDist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec)
    }
}

/// The instant `delay` after `start`, on `calendar` (see [`DelayUnit`]). A working day the
/// calendar does not know (a year without arrangement) falls back to 7/5 calendar days each.
pub fn after(calendar: &WorkingCalendar, start: UnixMs, delay: Delay) -> UnixMs {
    let v = delay.value.max(0.0);
    match delay.unit {
        DelayUnit::Days => start.plus_ms((v * DAY_MS as f64).round() as u64),
        DelayUnit::WorkingDays => {
            if v <= 0.0 {
                return start.plus_ms(HOUR_MS);
            }
            let k = v.ceil() as u32;
            let frac = v - f64::from(k - 1);
            let day = beijing_date(start)
                .and_then(|d| calendar.last_working_day(d, k))
                .and_then(end_of_day);
            match day {
                Ok(end) => {
                    let into = (frac * (WORK_HOURS * HOUR_MS) as f64).round() as u64;
                    end.minus_ms(DAY_MS)
                        .plus_ms(WORK_START_H * HOUR_MS)
                        .plus_ms(into)
                }
                Err(_) => start.plus_ms((v * 1.4 * DAY_MS as f64).round() as u64),
            }
        }
    }
}

/// How many working days `at` is after the deadline `due` (0 if before it): the working days
/// after the period's last day up to `at`'s date; at least 1 for any instant at or after
/// `due` (an act on the rest day after the period is late by the next working day).
pub fn late_working_days(calendar: &WorkingCalendar, due: UnixMs, at: UnixMs) -> u32 {
    if at < due {
        return 0;
    }
    let (Ok(last), Ok(end)) = (beijing_date(due.minus_ms(1)), beijing_date(at)) else {
        return 1;
    };
    let mut d = last;
    let mut n = 0u32;
    for _ in 0..800 {
        let Ok(next) = d.tomorrow() else { break };
        if next > end {
            break;
        }
        d = next;
        // A year the calendar does not know: weekdays count.
        let working = calendar
            .is_working_day(d)
            .unwrap_or_else(|_| !matches!(d.weekday().to_monday_one_offset(), 6 | 7));
        if working {
            n += 1;
        }
    }
    n.max(1)
}

/// 00:00 Beijing of `day`.
pub fn start_of_day(day: Date) -> Result<UnixMs, SimError> {
    end_of_day(day)
        .map(|e| e.minus_ms(DAY_MS))
        .map_err(SimError::Calendar)
}

/// Where the two parties of a request are, relative to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// Two departments of one node: no hop.
    Node,
    /// Two nodes of one province (the LCA is the province or below).
    Province,
    /// Two provinces (or national and a province): through national.
    Country,
}

impl Locality {
    pub const ALL: [Locality; 3] = [Locality::Node, Locality::Province, Locality::Country];

    pub fn name(self) -> &'static str {
        match self {
            Locality::Node => "node",
            Locality::Province => "province",
            Locality::Country => "country",
        }
    }

    pub fn of(a: RegionCode, b: RegionCode) -> Locality {
        if a == b {
            Locality::Node
        } else if a.lowest_common_ancestor(b) == RegionCode::NATIONAL {
            Locality::Country
        } else {
            Locality::Province
        }
    }
}

/// Everything that determines a sharing run. Same config → same run.
#[derive(Clone, Debug, Serialize)]
pub struct ShareConfig {
    pub seed: u64,
    pub requests: usize,
    /// Departments in the pool requests are drawn from.
    pub departments: usize,
    /// First day of the filing window (Beijing), `YYYY-MM-DD`.
    pub start: String,
    /// Calendar days of the filing window.
    pub window_days: u32,
    /// Weights of the tiers (national … township) when drawing nodes with departments.
    pub tier_weights: [u32; 5],
    /// Share of provider entries that are conditional (10 working days to answer).
    pub conditional: f64,
    /// Share of requests between two departments of one node, and within one province.
    pub local_node: f64,
    pub local_province: f64,
    /// Share of filings outside working hours (any time in the window, holidays included).
    pub off_hours: f64,
    pub answer_unconditional: DelayDist,
    pub answer_conditional: DelayDist,
    /// Requester: from the incomplete-material notice to the supplement.
    pub supplement: DelayDist,
    /// Provider: from the grant to the data delivered (delivery starts halfway).
    pub delivery: DelayDist,
    /// Shares of requests whose provider sends the incomplete-material notice, extends the
    /// answer period (with consent), refuses.
    pub incomplete: f64,
    pub extend: f64,
    pub refuse: f64,
    /// Share of relay nodes (forwarding some request's acts; national excepted) down for a
    /// while within the filing window, and for how long (hours, uniform).
    pub relay_down: f64,
    pub down_hours: (f64, f64),
    /// Message loss on every link.
    pub loss: f64,
    /// Extra calendar years (a `--calendar` file's text) instead of [`PROVISIONAL_2027`].
    #[serde(skip)]
    pub calendar_file: Option<String>,
    /// Which calendar: `official+provisional-2027` or `official+file`.
    pub calendar: &'static str,
    pub events_max: u64,
}

impl ShareConfig {
    /// The national scenario's defaults (`simnet share`).
    pub fn national(seed: u64) -> ShareConfig {
        let dist = |s: &str| DelayDist::parse(s).expect("built-in distribution");
        ShareConfig {
            seed,
            requests: 100_000,
            departments: 20_000,
            start: "2026-09-25".to_string(),
            window_days: 14,
            tier_weights: [1, 8, 22, 42, 27],
            conditional: 0.6,
            local_node: 0.05,
            local_province: 0.25,
            off_hours: 0.05,
            answer_unconditional: dist("wd:0-1=88,1-2=8,2-5=3,5-15=1"),
            answer_conditional: dist("wd:0-10=90,10-12=6,12-20=3,20-40=1"),
            supplement: dist("d:0-3=70,3-10=25,10-30=5"),
            delivery: dist("wd:0-20=92,20-25=5,25-40=3"),
            incomplete: 0.05,
            extend: 0.04,
            refuse: 0.08,
            relay_down: 0.02,
            down_hours: (1.0, 8.0),
            loss: 0.0005,
            calendar_file: None,
            calendar: "official+provisional-2027",
            events_max: 400_000_000,
        }
    }
}

/// One department of the pool.
#[derive(Clone, Debug)]
pub struct Department {
    pub node: RegionCode,
    pub name: &'static str,
    /// Its entry's sharing attribute is conditional (else unconditional).
    pub conditional: bool,
    /// A party to some request (only these get keys; providers among them publish).
    pub active: bool,
    pub provider: bool,
}

/// What the provider (and the requester) of one request will do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Script {
    /// The incomplete-material notice, after the period's start; the supplement, after the
    /// notice.
    pub notice: Option<(Delay, Delay)>,
    /// The extension: when (after the period's start) and how many working days.
    pub extend: Option<(Delay, u32)>,
    /// The answer, after the (last) period's start.
    pub answer: Delay,
    pub refuse: bool,
    /// From the grant to the data delivered; delivery starts halfway.
    pub delivery: Delay,
}

/// One request of the plan.
#[derive(Clone, Debug)]
pub struct PlannedRequest {
    pub requester: u32,
    pub provider: u32,
    pub locality: Locality,
    pub filed_at: UnixMs,
    pub script: Script,
    /// [`ShareRequest::id`] of [`SharePlan::request`].
    pub id: Hash,
}

/// The whole plan, shared read-only by every node.
pub struct SharePlan {
    pub config: ShareConfig,
    pub calendar: WorkingCalendar,
    /// Simulated time zero: 00:00 Beijing the day before the window.
    pub epoch_ms: u64,
    pub window_start: UnixMs,
    pub window_end: UnixMs,
    pub horizon_us: Micros,
    pub departments: Vec<Department>,
    pub requests: Vec<PlannedRequest>,
    pub by_id: HashMap<Hash, u32>,
    /// Every region the network needs, sorted (parties and their ancestors).
    pub nodes: Vec<RegionCode>,
    /// Active departments per node.
    pub at_node: BTreeMap<RegionCode, Vec<u32>>,
    /// Requests each node files, by filing time.
    pub files_at: BTreeMap<RegionCode, Vec<u32>>,
    pub faults: Vec<Fault>,
}

impl SharePlan {
    /// Draws the plan from `config` over the real division tree.
    pub fn generate(config: ShareConfig) -> Result<SharePlan, SimError> {
        let bad = |option: &'static str, problem: String| SimError::ShareSpec { option, problem };
        if config.requests == 0 || config.requests > REQUESTS_MAX {
            return Err(bad("--requests", format!("1 to {REQUESTS_MAX}")));
        }
        if config.departments < 2 || config.departments > DEPARTMENTS_MAX {
            return Err(bad("--departments", format!("2 to {DEPARTMENTS_MAX}")));
        }
        for (option, v) in [
            ("--conditional", config.conditional),
            ("--local-node", config.local_node),
            ("--local-province", config.local_province),
            ("--off-hours", config.off_hours),
            ("--incomplete", config.incomplete),
            ("--extend", config.extend),
            ("--refuse", config.refuse),
            ("--relay-down", config.relay_down),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(option, format!("{v} is not a share in [0, 1]")));
            }
        }
        if config.local_node + config.local_province > 1.0 {
            return Err(bad(
                "--local-node",
                "--local-node + --local-province exceed 1".to_string(),
            ));
        }
        if config.incomplete + config.extend > 1.0 {
            return Err(bad(
                "--incomplete",
                "--incomplete + --extend exceed 1".to_string(),
            ));
        }
        if !(0.0..0.9).contains(&config.loss) {
            return Err(bad(
                "--loss",
                format!("{} must be in [0, 0.9)", config.loss),
            ));
        }
        let (dlo, dhi) = config.down_hours;
        if !(0.0..=24.0 * 30.0).contains(&dlo) || !(dlo..=24.0 * 30.0).contains(&dhi) {
            return Err(bad(
                "--down-hours",
                "LO-HI hours, 0 <= LO <= HI <= 720".to_string(),
            ));
        }
        if config.tier_weights.iter().all(|w| *w == 0) {
            return Err(bad("--tiers", "every weight is 0".to_string()));
        }
        if config.window_days == 0 || config.window_days > 120 {
            return Err(bad("--window-days", "1 to 120".to_string()));
        }
        let mut calendar = WorkingCalendar::official();
        let extra = config.calendar_file.as_deref().unwrap_or(PROVISIONAL_2027);
        calendar.add_file(extra).map_err(SimError::Calendar)?;
        let start: Date = config
            .start
            .parse()
            .map_err(|e| bad("--start", format!("{:?}: {e}", config.start)))?;
        let window_start = start_of_day(start)?;
        let window_end = window_start.plus_ms(u64::from(config.window_days) * DAY_MS);
        // The whole window must be on the calendar, and leave room for every deadline.
        let last = beijing_date(window_end.minus_ms(1)).map_err(SimError::Calendar)?;
        for d in [start, last] {
            if !calendar.years().any(|y| y == d.year()) {
                return Err(bad(
                    "--start",
                    format!(
                        "{d} is in a year the calendar does not know (known: {:?}); add it with --calendar",
                        calendar.years().collect::<Vec<_>>()
                    ),
                ));
            }
        }
        let epoch_ms = window_start.minus_ms(DAY_MS).0;
        let horizon_us = HORIZON_DAYS * DAY_MS * MICROS_PER_MS;
        let china = Topology::china();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5a4e_0017);

        // Departments: nodes by tier weight, 2–4 departments each.
        let by_tier: Vec<Vec<RegionCode>> = Level::ALL
            .iter()
            .map(|l| {
                china
                    .codes()
                    .iter()
                    .copied()
                    .filter(|c| c.level() == *l)
                    .collect()
            })
            .collect();
        let weight_total: u32 = config.tier_weights.iter().sum();
        let mut chosen: BTreeSet<RegionCode> = BTreeSet::new();
        let mut departments: Vec<Department> = Vec::new();
        let mut attempts = 0usize;
        while departments.len() < config.departments {
            attempts += 1;
            if attempts > 50 * config.departments + 1_000 {
                return Err(bad(
                    "--departments",
                    format!(
                        "only {} departments fit the tier weights' nodes",
                        departments.len()
                    ),
                ));
            }
            let mut w = rng.gen_range(0..weight_total);
            let mut tier = 0;
            for (t, tw) in config.tier_weights.iter().enumerate() {
                if w < *tw {
                    tier = t;
                    break;
                }
                w -= tw;
            }
            let Some(&node) = by_tier[tier].choose(&mut rng) else {
                continue;
            };
            if !chosen.insert(node) {
                continue;
            }
            let k = rng
                .gen_range(DEPARTMENTS_PER_NODE.0..=DEPARTMENTS_PER_NODE.1)
                .min(config.departments - departments.len())
                .max(1);
            for name in DEPARTMENT_NAMES.choose_multiple(&mut rng, k) {
                departments.push(Department {
                    node,
                    name,
                    conditional: rng.gen_bool(config.conditional),
                    active: false,
                    provider: false,
                });
            }
        }
        let mut at_node_all: BTreeMap<RegionCode, Vec<u32>> = BTreeMap::new();
        let mut in_province: BTreeMap<RegionCode, Vec<u32>> = BTreeMap::new();
        for (i, d) in departments.iter().enumerate() {
            at_node_all.entry(d.node).or_default().push(i as u32);
            if let Some(p) = d.node.ancestor_at(Level::Province) {
                in_province.entry(p).or_default().push(i as u32);
            }
        }

        // Working days of the window, for filings in working hours.
        let mut working: Vec<UnixMs> = Vec::new();
        let mut d = start;
        while start_of_day(d)? < window_end {
            if calendar.is_working_day(d).map_err(SimError::Calendar)? {
                working.push(start_of_day(d)?);
            }
            d = d
                .tomorrow()
                .map_err(|e| bad("--start", format!("date overflow: {e}")))?;
        }
        if working.is_empty() {
            return Err(bad(
                "--window-days",
                "the window has no working day".to_string(),
            ));
        }

        let n = departments.len() as u32;
        let mut requests = Vec::with_capacity(config.requests);
        for _ in 0..config.requests {
            let r = rng.gen_range(0..n);
            let rn = departments[r as usize].node;
            let u: f64 = rng.gen();
            let pool: Option<&Vec<u32>> = if u < config.local_node {
                at_node_all.get(&rn)
            } else if u < config.local_node + config.local_province {
                rn.ancestor_at(Level::Province)
                    .and_then(|p| in_province.get(&p))
            } else {
                None
            };
            let pool = pool.filter(|p| p.len() > 1);
            let p = loop {
                let p = match pool {
                    Some(pool) => pool[rng.gen_range(0..pool.len())],
                    None => rng.gen_range(0..n),
                };
                if p != r {
                    break p;
                }
            };
            let filed_at = if rng.gen_bool(config.off_hours) {
                window_start.plus_ms(rng.gen_range(0..window_end.since_ms(window_start)))
            } else {
                let day = working[rng.gen_range(0..working.len())];
                day.plus_ms(WORK_START_H * HOUR_MS + rng.gen_range(0..WORK_HOURS * HOUR_MS))
            };
            let conditional = departments[p as usize].conditional;
            let (dist, base) = if conditional {
                (&config.answer_conditional, ANSWER_CONDITIONAL_WORKING_DAYS)
            } else {
                (
                    &config.answer_unconditional,
                    ANSWER_UNCONDITIONAL_WORKING_DAYS,
                )
            };
            let refuse = rng.gen_bool(config.refuse);
            let kind: f64 = rng.gen();
            let mut script = Script {
                notice: None,
                extend: None,
                answer: dist.sample(&mut rng),
                refuse,
                delivery: config.delivery.sample(&mut rng),
            };
            if kind < config.incomplete {
                script.notice = Some((dist.sample(&mut rng), config.supplement.sample(&mut rng)));
            } else if kind < config.incomplete + config.extend {
                let days = rng.gen_range(1..=EXTENSION_WORKING_DAYS_MAX);
                // Asked for on the period's last working day; the answer comes within the
                // extended period, or up to two working days after it.
                script.extend = Some((Delay::wd(f64::from(base) - 0.5), days));
                let b = f64::from(base);
                script.answer = Delay::wd(rng.gen_range(b..b + f64::from(days) + 2.0));
            }
            requests.push(PlannedRequest {
                requester: r,
                provider: p,
                locality: Locality::of(rn, departments[p as usize].node),
                filed_at,
                script,
                id: [0; 32],
            });
            departments[r as usize].active = true;
            departments[p as usize].active = true;
            departments[p as usize].provider = true;
        }

        let mut plan = SharePlan {
            config,
            calendar,
            epoch_ms,
            window_start,
            window_end,
            horizon_us,
            departments,
            requests,
            by_id: HashMap::new(),
            nodes: Vec::new(),
            at_node: BTreeMap::new(),
            files_at: BTreeMap::new(),
            faults: Vec::new(),
        };
        let mut by_id = HashMap::with_capacity(plan.requests.len());
        for i in 0..plan.requests.len() {
            let id = plan.request(i as u32).id();
            plan.requests[i].id = id;
            if by_id.insert(id, i as u32).is_some() {
                return Err(bad("--requests", format!("request {i} duplicates another")));
            }
        }
        plan.by_id = by_id;
        let mut nodes: BTreeSet<RegionCode> = BTreeSet::new();
        nodes.insert(RegionCode::NATIONAL);
        for (i, d) in plan.departments.iter().enumerate() {
            if d.active {
                plan.at_node.entry(d.node).or_default().push(i as u32);
                nodes.extend(d.node.path());
            }
        }
        for (i, r) in plan.requests.iter().enumerate() {
            let node = plan.departments[r.requester as usize].node;
            plan.files_at.entry(node).or_default().push(i as u32);
        }
        for list in plan.files_at.values_mut() {
            let reqs = &plan.requests;
            list.sort_by_key(|&i| (reqs[i as usize].filed_at, i));
        }
        plan.nodes = nodes.into_iter().collect();
        plan.nodes.sort_unstable();
        plan.faults = relay_faults(&plan, &mut rng);
        Ok(plan)
    }

    /// The share request of plan entry `i` (built again where needed: the plan keeps its id).
    pub fn request(&self, i: u32) -> ShareRequest {
        let r = &self.requests[i as usize];
        ShareRequest {
            requester: self.origin(r.requester),
            provider: self.origin(r.provider),
            entry_id: ENTRY_ID.to_string(),
            basis: "《政务数据共享条例》第二十条; 履职需要".to_string(),
            scenario: "政务服务办理".to_string(),
            scope: format!("{SCOPE_PREFIX}{i}"),
            // By service interface: delivery is the provider opening it and the requester
            // confirming (batch exchange's delivery manifests and direct transfers are not
            // simulated here).
            method: SharingMethod::ServiceApi,
            use_until: r.filed_at.plus_ms(USE_DAYS * DAY_MS),
            approved_by: "数据共享工作机构负责人".to_string(),
            filed_at: r.filed_at,
        }
    }

    /// The plan index of `r`, if it is one of the plan's requests: found by the number its
    /// scope carries and checked against the plan (no digest: the shell asks for every case
    /// it persists).
    pub fn index_of(&self, r: &ShareRequest) -> Option<u32> {
        let i: u32 = r.scope.strip_prefix(SCOPE_PREFIX)?.parse().ok()?;
        let p = self.requests.get(i as usize)?;
        let same = p.filed_at == r.filed_at
            && r.requester.region == self.departments[p.requester as usize].node
            && r.provider.region == self.departments[p.provider as usize].node
            && r.requester.department == self.departments[p.requester as usize].name
            && r.provider.department == self.departments[p.provider as usize].name;
        same.then_some(i)
    }

    /// [`ShareRequest::id`], from the plan for its own requests.
    pub fn id_of(&self, r: &ShareRequest) -> Hash {
        self.index_of(r)
            .map_or_else(|| r.id(), |i| self.requests[i as usize].id)
    }

    pub fn origin(&self, department: u32) -> CatalogOrigin {
        let d = &self.departments[department as usize];
        CatalogOrigin {
            region: d.node,
            department: d.name.to_string(),
        }
    }

    /// The department's signing key, derived from the seed.
    pub fn department_key(&self, department: u32) -> SigningKey {
        let d = &self.departments[department as usize];
        let mut h = blake3::Hasher::new();
        h.update(b"backflow-simnet/department-key/v1");
        h.update(&self.config.seed.to_le_bytes());
        h.update(&d.node.digits().to_le_bytes());
        h.update(&[d.node.level().depth()]);
        h.update(d.name.as_bytes());
        SigningKey::from_bytes(h.finalize().as_bytes())
    }

    pub fn attribute(&self, department: u32) -> SharingAttribute {
        if self.departments[department as usize].conditional {
            SharingAttribute::Conditional {
                scope: vec!["本级及下级政府部门".to_string()],
                permitted_uses: vec![PERMITTED_USE.to_string()],
            }
        } else {
            SharingAttribute::Unconditional
        }
    }

    /// The catalog entry a provider department publishes.
    pub fn entry(&self, department: u32) -> CatalogEntry {
        let d = &self.departments[department as usize];
        CatalogEntry {
            id: ENTRY_ID.to_string(),
            name: format!("{}业务数据", d.name),
            data_items: vec![DataItem {
                name: "统一社会信用代码".to_string(),
                data_type: DataType::Text,
                description: "18 位".to_string(),
            }],
            provider: d.name.to_string(),
            format: DataFormat::Table,
            update_frequency: UpdateFrequency::Daily,
            sharing: self.attribute(department),
            sharing_methods: vec![SharingMethod::BatchExchange, SharingMethod::ServiceApi],
            // Art. 15: an unconditional entry adds no conditions of use.
            usage_conditions: if d.conditional {
                "仅限履职使用".to_string()
            } else {
                String::new()
            },
            classification: "政务/业务".to_string(),
            grade: DataGrade::General,
        }
    }

    /// Simulated time of an instant (µs since the epoch; 0 before it).
    pub fn to_us(&self, t: UnixMs) -> Micros {
        t.0.saturating_sub(self.epoch_ms)
            .saturating_mul(MICROS_PER_MS)
    }

    pub fn to_ms(&self, us: Micros) -> UnixMs {
        UnixMs(self.epoch_ms + us / MICROS_PER_MS)
    }

    /// The request's lowest common ancestor of its parties' regions.
    pub fn lca(&self, i: u32) -> RegionCode {
        let r = &self.requests[i as usize];
        let a = self.departments[r.requester as usize].node;
        let b = self.departments[r.provider as usize].node;
        a.lowest_common_ancestor(b)
    }

    pub fn requester_node(&self, i: u32) -> RegionCode {
        self.departments[self.requests[i as usize].requester as usize].node
    }

    pub fn provider_node(&self, i: u32) -> RegionCode {
        self.departments[self.requests[i as usize].provider as usize].node
    }
}

/// A share of the relays — nodes that forward some request's acts (on the tree path between
/// its parties, the LCA included; they may hold departments of their own), national excepted
/// — down for a few hours each, starting within the filing window.
fn relay_faults(plan: &SharePlan, rng: &mut ChaCha8Rng) -> Vec<Fault> {
    let mut relays: BTreeSet<RegionCode> = BTreeSet::new();
    for k in 0..plan.requests.len() as u32 {
        let (a, b) = (plan.requester_node(k), plan.provider_node(k));
        let lca = a.lowest_common_ancestor(b);
        for end in [a, b] {
            relays.extend(
                end.ancestors()
                    .filter(|r| r.level() >= lca.level() && *r != a && *r != b),
            );
        }
    }
    relays.remove(&RegionCode::NATIONAL);
    let relays: Vec<RegionCode> = relays.into_iter().collect();
    let k = ((relays.len() as f64) * plan.config.relay_down).round() as usize;
    let mut down: Vec<RegionCode> = relays.choose_multiple(rng, k).copied().collect();
    down.sort_unstable();
    let (w0, w1) = (plan.to_us(plan.window_start), plan.to_us(plan.window_end));
    let (lo, hi) = plan.config.down_hours;
    down.into_iter()
        .map(|node| {
            let from_us = rng.gen_range(w0..w1);
            let hours = if hi > lo { rng.gen_range(lo..hi) } else { lo };
            let until_us = from_us + ((hours * 3_600.0 * 1e6) as Micros).max(1);
            Fault::Down {
                node,
                from_us,
                until_us,
            }
        })
        .collect()
}

/// Shared plan handle.
pub type Plan = Arc<SharePlan>;

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn at(s: &str, h: u64) -> UnixMs {
        start_of_day(date(s)).unwrap().plus_ms(h * HOUR_MS)
    }

    #[test]
    fn working_day_delays_count_like_the_statute() {
        let c = WorkingCalendar::official();
        // Wednesday 2026-09-30, 10:00: the next working day is Thursday 10-08 (National Day).
        let t = at("2026-09-30", 10);
        assert_eq!(
            beijing_date(after(&c, t, Delay::wd(1.0))).unwrap(),
            date("2026-10-08")
        );
        assert_eq!(after(&c, t, Delay::wd(1.0)), at("2026-10-08", 18));
        assert_eq!(
            beijing_date(after(&c, t, Delay::wd(0.2))).unwrap(),
            date("2026-10-08")
        );
        // Saturday 10-10 is a make-up working day.
        assert_eq!(
            beijing_date(after(&c, t, Delay::wd(3.0))).unwrap(),
            date("2026-10-10")
        );
        // The deadline of 1 working day is the end of 10-08: 1.0 meets it, 1.01 does not.
        let due = c.deadline(t, 1).unwrap();
        assert!(after(&c, t, Delay::wd(1.0)) < due);
        assert!(after(&c, t, Delay::wd(1.01)) >= due);
        assert_eq!(late_working_days(&c, due, after(&c, t, Delay::wd(1.01))), 1);
        assert_eq!(late_working_days(&c, due, after(&c, t, Delay::wd(3.5))), 3);
        assert_eq!(late_working_days(&c, due, after(&c, t, Delay::wd(0.5))), 0);
        // Calendar days ignore the calendar.
        let d = Delay {
            unit: DelayUnit::Days,
            value: 3.0,
        };
        assert_eq!(after(&c, t, d), at("2026-10-03", 10));
    }

    #[test]
    fn distributions_parse_and_sample_within_their_buckets() {
        let d = DelayDist::parse("wd:0-1=3,5=1").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut five = 0;
        for _ in 0..1_000 {
            let x = d.sample(&mut rng);
            assert_eq!(x.unit, DelayUnit::WorkingDays);
            assert!((0.0..1.0).contains(&x.value) || x.value == 5.0, "{x:?}");
            five += usize::from(x.value == 5.0);
        }
        assert!((150..350).contains(&five), "{five}");
        for bad in [
            "", "0-1=1", "wd:", "wd:1-0=1", "wd:0-1=x", "wd:0-1=0", "h:1=1", "wd:-1=1",
        ] {
            assert!(DelayDist::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_plan_is_reproducible_and_its_network_holds_every_path() {
        let mut cfg = ShareConfig::national(3);
        cfg.requests = 500;
        cfg.departments = 300;
        let a = SharePlan::generate(cfg.clone()).unwrap();
        let b = SharePlan::generate(cfg).unwrap();
        let ids = |p: &SharePlan| p.requests.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.faults, b.faults);
        for i in 0..a.requests.len() as u32 {
            for end in [a.requester_node(i), a.provider_node(i)] {
                for r in end.path() {
                    assert!(a.nodes.binary_search(&r).is_ok(), "{r}");
                }
            }
            let r = &a.requests[i as usize];
            assert!(r.filed_at >= a.window_start && r.filed_at < a.window_end);
            assert_eq!(a.id_of(&a.request(i)), a.request(i).id());
            assert_eq!(a.index_of(&a.request(i)), Some(i));
            assert_ne!(r.requester, r.provider);
        }
        for l in Locality::ALL {
            assert!(a.requests.iter().any(|r| r.locality == l), "{l:?}");
        }
    }
}
