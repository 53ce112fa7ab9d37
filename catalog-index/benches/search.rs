//! Builds the catalog index at national scale on disk and times searches. Prints figures; no
//! timed assertions.
//!
//! `BACKFLOW_BENCH_ENTRIES` entries (default 3,129,280 = 44,704 regions × 7 departments × 10
//! entries) over the real division tree, generated as the simulator's unified-catalog scenario
//! does (`simnet/src/catalog_plan.rs`, copied: this crate must not depend on simnet), except
//! that each region takes its 7 departments and 10 topics at a rotation of the 24 / 16 so the
//! whole vocabulary occurs, and one entry in ten is not shared (不予共享) so that filter has
//! something to find. `BACKFLOW_BENCH_DIR` puts the index there instead of a temp dir.
//!
//! `cargo bench --bench search` (release profile).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backflow_catalog_index::{CatalogIndex, CatalogQuery, SharingFilter, HITS_MAX};
use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, LegalBasis, LegalBasisKind, SharingAttribute, SharingMethod, UpdateFrequency,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::{Level, RegionCode, Topology};

#[path = "support/vocab.rs"]
mod vocab;
use vocab::{DEPARTMENTS, ITEMS, TOPICS};

const DEPARTMENTS_PER_REGION: u32 = 7;
const ENTRIES_PER_DEPARTMENT: u32 = 10;
const ITEMS_PER_ENTRY: usize = 4;
/// Commit every this many log entries (catalog versions), as a node would batch.
const COMMIT_EVERY: u64 = 20_000;
const SEARCHES: usize = 400;
const SEED: u64 = 17;

const FREQUENCIES: [UpdateFrequency; 5] = [
    UpdateFrequency::Daily,
    UpdateFrequency::Monthly,
    UpdateFrequency::RealTime,
    UpdateFrequency::Quarterly,
    UpdateFrequency::Yearly,
];

fn mix(parts: &[&[u8]]) -> [u8; 32] {
    *blake3::hash(&parts.concat()).as_bytes()
}

/// Department `d` of `region`: simnet's list, rotated per region.
fn department(region: RegionCode, d: u32) -> &'static str {
    let h = mix(&[b"dept", &region.digits().to_le_bytes(), &SEED.to_le_bytes()]);
    DEPARTMENTS[(d as usize + h[0] as usize) % DEPARTMENTS.len()]
}

/// Entry `e` of department `d` at `me`: simnet's `CatalogPlan::entry`, topics rotated per
/// (region, department), 10% not shared.
fn entry(me: RegionCode, d: u32, e: u32) -> CatalogEntry {
    let department = department(me, d);
    let b = mix(&[
        &me.digits().to_le_bytes()[..],
        &d.to_le_bytes(),
        &e.to_le_bytes(),
        &SEED.to_le_bytes(),
    ]);
    let rotation = mix(&[b"topic", &me.digits().to_le_bytes(), &d.to_le_bytes()])[0] as usize;
    let topic = TOPICS[(e as usize + rotation) % TOPICS.len()];
    let data_items = (0..ITEMS_PER_ENTRY)
        .map(|k| {
            let (name, description) = ITEMS[(b[0] as usize + k) % ITEMS.len()];
            DataItem {
                name: name.to_string(),
                data_type: DataType::Text,
                description: description.to_string(),
            }
        })
        .collect();
    let roll = b[1] % 10;
    let (sharing, sharing_methods, usage_conditions) = match roll {
        0..=3 => (
            SharingAttribute::Conditional {
                scope: vec!["政务部门".to_string()],
                permitted_uses: vec!["履行法定职责".to_string()],
            },
            vec![SharingMethod::BatchExchange, SharingMethod::ServiceApi],
            "仅限履职使用，不得向第三方提供".to_string(),
        ),
        9 => (
            SharingAttribute::NotShared {
                reason: "涉及国家秘密".to_string(),
                legal_basis: vec![LegalBasis {
                    kind: LegalBasisKind::Law,
                    citation: "《中华人民共和国保守国家秘密法》第二十八条".to_string(),
                }],
            },
            vec![],
            String::new(),
        ),
        _ => (
            SharingAttribute::Unconditional,
            vec![SharingMethod::BatchExchange, SharingMethod::ServiceApi],
            String::new(),
        ),
    };
    CatalogEntry {
        id: format!("{me}-{d:03}-{e:04}"),
        name: format!("{department}{topic}"),
        data_items,
        provider: department.to_string(),
        format: if b[2].is_multiple_of(4) {
            DataFormat::Spreadsheet
        } else {
            DataFormat::Table
        },
        update_frequency: FREQUENCIES[b[3] as usize % FREQUENCIES.len()],
        sharing,
        sharing_methods,
        usage_conditions,
        classification: format!("政务/{department}"),
        grade: if b[4].is_multiple_of(20) {
            DataGrade::Important
        } else {
            DataGrade::General
        },
    }
}

/// Department `d`'s first catalog version at `me`, with `entries` entries.
fn update(me: RegionCode, d: u32, entries: u32) -> CatalogUpdate {
    CatalogUpdate {
        origin: CatalogOrigin {
            region: me,
            department: department(me, d).to_string(),
        },
        seq: 1,
        issued_at: UnixMs(1_767_225_600_000),
        changes: (0..entries)
            .map(|e| CatalogChange::Add(Arc::new(entry(me, d, e))))
            .collect(),
    }
}

/// A `/proc/self/status` memory line, in MiB.
fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Peak resident set size so far.
fn vm_hwm_mib() -> f64 {
    status_mib("VmHWM:")
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A tiny deterministic generator (SplitMix64) so the bench needs no `rand`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// A kind of search: which conditions it sets.
struct Class {
    name: &'static str,
    text: bool,
    provider: bool,
    sharing: bool,
    region: bool,
    times: Vec<Duration>,
    totals: Vec<u64>,
    returned: Vec<usize>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i])
}

fn report(name: &str, times: &[Duration], totals: &[u64], returned: &[usize]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let n = sorted.len().max(1);
    let mut totals_sorted = totals.to_vec();
    totals_sorted.sort();
    println!(
        "  {name:<26} n={:>3}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  \
         total hits: median {:>9} max {:>9}  returned avg {:.1}",
        times.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        sorted.last().map_or(f64::NAN, |d| ms(*d)),
        totals_sorted
            .get(totals_sorted.len() / 2)
            .copied()
            .unwrap_or(0),
        totals_sorted.last().copied().unwrap_or(0),
        returned.iter().sum::<usize>() as f64 / n as f64,
    );
}

/// Builds the index in `dir` and prints the figures.
fn build(dir: &Path, regions: &[RegionCode], target: u64) {
    let start = Instant::now();
    let mut index = CatalogIndex::open(dir).expect("open");
    let mut log = 0u64;
    let mut added = 0u64;
    let mut generating = Duration::ZERO;
    let mut committing = Duration::ZERO;
    // Heap (anonymous) memory, sampled at each commit: VmHWM also counts the index's
    // memory-mapped files, which the kernel can drop.
    let mut anon_max = 0.0f64;
    'build: for &region in regions {
        for d in 0..DEPARTMENTS_PER_REGION {
            let left = target - added;
            if left == 0 {
                break 'build;
            }
            let entries = ENTRIES_PER_DEPARTMENT.min(left as u32);
            let t = Instant::now();
            let u = update(region, d, entries);
            generating += t.elapsed();
            log += 1;
            index.apply_update(log, &u).expect("apply");
            added += u64::from(entries);
            if log.is_multiple_of(COMMIT_EVERY) {
                let t = Instant::now();
                index.commit().expect("commit");
                committing += t.elapsed();
                anon_max = anon_max.max(status_mib("RssAnon:"));
            }
        }
    }
    let t = Instant::now();
    index.commit().expect("commit");
    committing += t.elapsed();
    let committed = start.elapsed();
    let segments_at_commit = index.segment_count();
    let docs = index.len();
    index.close().expect("close");
    let built = start.elapsed();
    let size = dir_bytes(dir);
    println!("build:");
    println!("  {docs} docs from {log} catalog versions; committed every {COMMIT_EVERY} versions");
    println!(
        "  indexed and committed in {:.1} s ({:.0} docs/s; of which generating entries {:.1} s, \
         commits {:.1} s), {} segments",
        committed.as_secs_f64(),
        docs as f64 / committed.as_secs_f64(),
        generating.as_secs_f64(),
        committing.as_secs_f64(),
        segments_at_commit,
    );
    println!(
        "  with background merges finished (close): {:.1} s ({:.0} docs/s)",
        built.as_secs_f64(),
        docs as f64 / built.as_secs_f64()
    );
    println!(
        "  index size on disk {:.1} MiB ({:.0} bytes/doc); peak RSS so far (VmHWM) {:.0} MiB, \
         of which anonymous at most {:.0} MiB (sampled at commits)",
        size as f64 / (1024.0 * 1024.0),
        size as f64 / docs.max(1) as f64,
        vm_hwm_mib(),
        anon_max,
    );
}

fn main() {
    let target: u64 = std::env::var("BACKFLOW_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(44_704 * 7 * 10);
    let china = Topology::china();
    let codes = china.codes();
    let per_region = u64::from(DEPARTMENTS_PER_REGION * ENTRIES_PER_DEPARTMENT);
    let regions_needed = target.div_ceil(per_region).min(codes.len() as u64) as usize;
    // Fewer entries than the whole country: regions spread evenly over the tree.
    let regions: Vec<RegionCode> = (0..regions_needed)
        .map(|i| codes[i * codes.len() / regions_needed])
        .collect();

    let temp;
    let dir = match std::env::var_os("BACKFLOW_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            temp = tempfile::tempdir().expect("temp dir");
            temp.path().join("catalog-index")
        }
    };
    println!(
        "catalog index bench: {target} entries over {} regions ({} per region), index in {}",
        regions.len(),
        per_region,
        dir.display()
    );

    // jieba loads its dictionary on first use (once per process).
    let t = Instant::now();
    let words = CatalogIndex::in_memory()
        .and_then(|i| i.query_words("公安局行政许可"))
        .expect("segment");
    println!(
        "jieba: first segmentation (loads its dictionary) {:.0} ms, {} words; RSS after {:.0} MiB",
        ms(t.elapsed()),
        words.len(),
        vm_hwm_mib()
    );

    // Build, unless BACKFLOW_BENCH_DIR already holds this index (to rerun the searches only).
    let reusable = CatalogIndex::open(&dir).is_ok_and(|existing| existing.len() == target);
    if reusable {
        println!(
            "build: reusing the {target} docs already in {}",
            dir.display()
        );
    } else {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clear the index directory");
        }
        build(&dir, &regions, target);
    }

    // Reopen.
    let t = Instant::now();
    let index = CatalogIndex::open(&dir).expect("reopen");
    let reopen = t.elapsed();
    let t = Instant::now();
    let first = index
        .search(&CatalogQuery {
            text: "行政许可".into(),
            limit: 20,
            ..Default::default()
        })
        .expect("first search");
    let first_search = t.elapsed();
    println!("reopen:");
    println!(
        "  open {:.1} ms ({} docs, {} segments, applied_through {}); first search {:.1} ms \
         ({} hits)",
        ms(reopen),
        index.len(),
        index.segment_count(),
        index.applied_through(),
        ms(first_search),
        first.total
    );

    // Searches: 1-3 words of one plausible entry (its department, its topic or the topic's
    // stem, one of its data items, or a sub-phrase a user would type), in random order, with or
    // without spaces; the provider filter is that department half the time.
    let sub_phrases = [
        "社会保障",
        "城乡建设",
        "监督管理",
        "卫生健康",
        "退役军人",
        "许可",
        "登记",
        "统计",
    ];
    let levels = [Level::Province, Level::City, Level::County, Level::Township];
    let by_level: Vec<Vec<RegionCode>> = levels
        .iter()
        .map(|l| {
            regions
                .iter()
                .copied()
                .filter(|c| c.level() == *l)
                .collect()
        })
        .collect();
    let mut rng = Rng(SEED);
    let class = |name, text, provider, sharing, region| Class {
        name,
        text,
        provider,
        sharing,
        region,
        times: vec![],
        totals: vec![],
        returned: vec![],
    };
    let mut classes = vec![
        class("text only", true, false, false, false),
        class("text + provider", true, true, false, false),
        class("text + sharing", true, false, true, false),
        class("text + region", true, false, false, true),
        class("text + all three filters", true, true, true, true),
        class("filters only (no text)", false, true, true, true),
    ];
    let mut all_times = Vec::new();
    let mut slowest: Vec<(Duration, String, u64)> = Vec::new();
    for i in 0..SEARCHES {
        let c = &mut classes[i % 6];
        let n_words = 1 + (rng.next() % 3) as usize;
        let dept = *rng.pick(&DEPARTMENTS);
        let topic = *rng.pick(&TOPICS);
        let mut candidates = vec![
            dept.to_string(),
            if rng.next().is_multiple_of(2) {
                topic.to_string()
            } else {
                topic
                    .trim_end_matches("信息")
                    .trim_end_matches("数据")
                    .to_string()
            },
            rng.pick(&ITEMS).0.to_string(),
            rng.pick(&sub_phrases).to_string(),
        ];
        let mut chosen = Vec::new();
        for _ in 0..n_words {
            let k = (rng.next() % candidates.len() as u64) as usize;
            chosen.push(candidates.swap_remove(k));
        }
        let text = if c.text {
            chosen.join(if rng.next().is_multiple_of(2) {
                " "
            } else {
                ""
            })
        } else {
            String::new()
        };
        let provider = Some(if rng.next().is_multiple_of(2) {
            dept.to_string()
        } else {
            rng.pick(&DEPARTMENTS).to_string()
        });
        let sharing = Some(*rng.pick(&[
            SharingFilter::Unconditional,
            SharingFilter::Conditional,
            SharingFilter::NotShared,
        ]));
        let level = rng.pick(&by_level);
        let region = (!level.is_empty()).then(|| *rng.pick(level));
        let q = CatalogQuery {
            text,
            provider: provider.filter(|_| c.provider),
            sharing: sharing.filter(|_| c.sharing),
            region: region.filter(|_| c.region),
            offset: 0,
            limit: 20.min(HITS_MAX),
        };
        let t = Instant::now();
        let r = index.search(&q).expect("search");
        let took = t.elapsed();
        all_times.push(took);
        slowest.push((
            took,
            format!(
                "{:?} provider {:?} sharing {:?} region {:?}",
                q.text,
                q.provider,
                q.sharing,
                q.region.map(|r| r.to_string())
            ),
            r.total,
        ));
        c.times.push(took);
        c.totals.push(r.total);
        c.returned.push(r.hits.len());
        if i < 6 {
            println!(
                "  e.g. {:?} provider {:?} sharing {:?} region {:?}: {} hits in {:.2} ms, top: {}",
                q.text,
                q.provider,
                q.sharing,
                q.region.map(|r| r.to_string()),
                r.total,
                ms(took),
                r.hits.first().map_or(String::new(), |h| format!(
                    "{} {} {} (score {:.2})",
                    h.region, h.department, h.name, h.score
                )),
            );
        }
    }
    println!("searches ({SEARCHES}, limit 20, after reopen):");
    let totals: Vec<u64> = classes.iter().flat_map(|c| c.totals.clone()).collect();
    let returned: Vec<usize> = classes.iter().flat_map(|c| c.returned.clone()).collect();
    report("all", &all_times, &totals, &returned);
    for c in &classes {
        report(c.name, &c.times, &c.totals, &c.returned);
    }

    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    println!("slowest:");
    for (took, q, total) in slowest.iter().take(5) {
        println!("  {:.2} ms  {total} hits  {q}", ms(*took));
    }

    // The broadest queries: the worst case for an exact total (every match is counted).
    println!("broad queries (median of 5 runs each):");
    let broad = [
        ("信息", None),
        ("数据", None),
        ("公安局", None),
        ("信息", Some(RegionCode::NATIONAL)),
        ("", None),
        ("登记信息", Some(regions[regions.len() / 3])),
    ];
    for (text, region) in broad {
        let q = CatalogQuery {
            text: text.into(),
            region,
            limit: 20,
            ..Default::default()
        };
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..5 {
            let t = Instant::now();
            total = index.search(&q).expect("search").total;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {text:?} region {:?}: {total} hits, {:.2} ms",
            region.map(|r| r.to_string()),
            ms(times[2])
        );
    }
    println!("peak RSS (VmHWM) {:.0} MiB", vm_hwm_mib());
}
