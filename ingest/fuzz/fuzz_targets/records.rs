//! `partition` on arbitrary bytes, read as CSV and as NDJSON, under both village policies, with
//! a tiny arena (spills all the time) and tiny read blocks (lines span reads), into an
//! in-memory sink; the spill runs go to a temp dir. Checked on every input:
//!
//! - no panic, and an error only where one belongs (a CSV header without the field, or no
//!   header at all), saying so without quoting the input;
//! - the counts add up: every line is the header, a blank NDJSON line, routed or rejected; the
//!   reported line numbers are real record lines, and no warned line is rejected;
//! - the sink gets every township of the scope once, in code order, each partition's record
//!   count, byte count and replays agreeing, and every routed line byte for byte, in input
//!   order within its township (CSV: the line holds its township's code);
//! - the result does not depend on the arena or block size (compared with a pass that reads
//!   the input in one block and spills nothing), and `Strict` is `RollUp` with every warned
//!   line rejected as an unknown village instead;
//! - no spill file is left behind.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use backflow_ingest::partition::{
    csv_header_fields, partition, partition_in_blocks, partition_tuned, Format, PartitionConfig,
    PartitionSink, PartitionSummary, RegionField, RejectReason, Replay, Tuning, VillagePolicy,
    REJECT_LINES_KEPT_MAX,
};
use backflow_topology::{RegionCode, Topology};
use libfuzzer_sys::fuzz_target;

/// Inputs past this are skipped: each iteration stays well under a millisecond or so.
const INPUT_BYTES_MAX: usize = 4096;
/// Put before the CSV bytes on half the inputs, so most get past the header.
const HEADER: &[u8] = b"id,village,note\n";
/// Publishers: provinces, cities, counties, a township, 东莞 (no county tier of its own). Not
/// the national node: its passes hand the sink 41,352 partitions each, which made an
/// iteration some 50 times slower; the unit tests cover it.
const SCOPES: [&str; 8] = [
    "11",
    "1101",
    "110101",
    "110101001",
    "4419",
    "441900",
    "46",
    "6501",
];

#[derive(Default)]
struct MemSink {
    /// Partitions with records: township, records, content.
    parts: Vec<(RegionCode, u64, Vec<u8>)>,
    /// Every call, empty partitions included.
    calls: u64,
    last: Option<RegionCode>,
}

impl PartitionSink for MemSink {
    fn partition(
        &mut self,
        township: RegionCode,
        records: u64,
        bytes: u64,
        replay: &mut Replay<'_>,
    ) -> Result<()> {
        assert!(
            self.last < Some(township),
            "townships in ascending code order, once each"
        );
        self.last = Some(township);
        self.calls += 1;
        let mut content = Vec::new();
        replay(&mut |b| {
            content.extend_from_slice(b);
            Ok(())
        })?;
        assert_eq!(content.len() as u64, bytes, "reported bytes");
        let newlines = content.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(newlines, records, "one line per record");
        assert!(content.is_empty() || content.ends_with(b"\n"));
        if records > 0 {
            let mut again = Vec::new();
            replay(&mut |b| {
                again.extend_from_slice(b);
                Ok(())
            })?;
            assert_eq!(again, content, "a replay gives the same bytes");
            self.parts.push((township, records, content));
        }
        Ok(())
    }
}

fn spill_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("spill");
        (dir, path)
    });
    path
}

/// How many townships a publisher of `SCOPES[i]` has.
fn townships_in(i: usize) -> u64 {
    static COUNTS: OnceLock<Vec<u64>> = OnceLock::new();
    COUNTS.get_or_init(|| {
        SCOPES
            .iter()
            .map(|s| {
                let scope = RegionCode::parse(s).unwrap();
                Topology::china().townships_under(scope).len() as u64
            })
            .collect()
    })[i]
}

struct Pass {
    result: Result<PartitionSummary>,
    sink: MemSink,
}

/// One `partition` pass; `block: None` is `partition` itself (reads of up to 8 MiB).
fn run(
    input: &[u8],
    format: Format,
    villages: VillagePolicy,
    scope: RegionCode,
    buffer: usize,
    block: Option<usize>,
) -> Pass {
    let cfg = PartitionConfig {
        format,
        region_field: RegionField::new("village", villages),
        scope,
        buffer_bytes_max: buffer,
        spill_dir: spill_dir().to_path_buf(),
        rejects_path: None,
    };
    let mut sink = MemSink::default();
    let mut read = 0;
    let mut progress = |n: u64| {
        assert!(
            n >= read && n <= input.len() as u64,
            "progress {n} after {read}"
        );
        read = n;
    };
    let result = match block {
        // The roll-up pass also scans every block's lines on two threads.
        Some(b) if villages == VillagePolicy::RollUp => {
            let tuning = Tuning {
                block_bytes: b,
                scan_threads: 2,
                parallel_bytes_min: 1,
            };
            partition_tuned(&mut &input[..], &cfg, tuning, &mut sink, &mut progress)
        }
        Some(b) => partition_in_blocks(&mut &input[..], &cfg, b, &mut sink, &mut progress),
        None => partition(&mut &input[..], &cfg, &mut sink, &mut progress),
    };
    let left = std::fs::read_dir(spill_dir()).map_or(0, |d| d.count());
    assert_eq!(left, 0, "spill runs left behind");
    Pass { result, sink }
}

/// The input's lines as the partitioner cuts them: after each `\n`, the last one given a `\n`
/// if it has none.
fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = input
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with(b"\n") {
            last.push(b'\n');
        }
    }
    lines
}

/// A line without its terminator (`\n`, and a `\r` before it).
fn body(line: &[u8]) -> &[u8] {
    let b = line.strip_suffix(b"\n").unwrap_or(line);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn has_region_field(header_line: &[u8]) -> bool {
    csv_header_fields(body(header_line))
        .iter()
        .any(|f| f == "village")
}

/// Every check on one pass that needs no other pass; the summary if it succeeded.
fn check<'p>(
    pass: &'p Pass,
    format: Format,
    villages: VillagePolicy,
    scope: usize,
    lines: &[Vec<u8>],
) -> Option<&'p PartitionSummary> {
    let s = match &pass.result {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e:#}");
            assert_eq!(format, Format::Csv, "NDJSON this short never fails: {msg}");
            match lines.first() {
                None => assert!(msg.starts_with("empty input"), "{msg}"),
                Some(header) => {
                    assert!(!has_region_field(header), "a good header refused: {msg}");
                    assert!(msg.starts_with("CSV header (line 1: "), "{msg}");
                }
            }
            assert_eq!(pass.sink.calls, 0, "nothing emitted on error");
            return None;
        }
    };
    assert_eq!(s.lines, lines.len() as u64);
    let first_record = match format {
        Format::Csv => {
            assert!(
                has_region_field(&lines[0]),
                "a header without the field accepted"
            );
            assert_eq!(s.header, lines[0], "the header as read");
            1
        }
        Format::Ndjson => {
            assert!(s.header.is_empty());
            0
        }
    };
    // Line numbers (1-based) of the lines that are records.
    let records: Vec<u64> = (first_record..lines.len())
        .filter(|&i| format == Format::Csv || !body(&lines[i]).trim_ascii().is_empty())
        .map(|i| i as u64 + 1)
        .collect();
    assert_eq!(
        s.records_routed + s.rejects.total(),
        records.len() as u64,
        "every record routed or rejected"
    );
    let max = REJECT_LINES_KEPT_MAX as u64;
    assert_eq!(
        s.rejects.first_lines.len() as u64,
        s.rejects.total().min(max)
    );
    assert_eq!(
        s.warnings.first_lines.len() as u64,
        s.warnings.total().min(max)
    );
    for report in [
        s.rejects
            .first_lines
            .iter()
            .map(|l| l.0)
            .collect::<Vec<_>>(),
        s.warnings.first_lines.iter().map(|l| l.0).collect(),
    ] {
        assert!(report.windows(2).all(|w| w[0] < w[1]), "in line order");
        assert!(
            report.iter().all(|l| records.binary_search(l).is_ok()),
            "record lines"
        );
    }
    let rejected: Vec<u64> = s.rejects.first_lines.iter().map(|l| l.0).collect();
    for (line, _) in &s.warnings.first_lines {
        assert!(
            rejected.binary_search(line).is_err(),
            "line {line} warned and rejected"
        );
    }
    assert!(s.warnings.total() <= s.records_routed);
    if villages == VillagePolicy::Strict {
        assert_eq!(s.warnings.total(), 0, "strict never warns");
    }

    // The sink: every township of the scope, the routed records and nothing else.
    let sink = &pass.sink;
    assert_eq!(sink.calls, s.townships_in_scope);
    assert_eq!(s.townships_in_scope, townships_in(scope));
    assert_eq!(sink.parts.len() as u64, s.townships_with_records);
    let routed: u64 = sink.parts.iter().map(|p| p.1).sum();
    assert_eq!(routed, s.records_routed);
    let scope_code = RegionCode::parse(SCOPES[scope]).unwrap();
    for (code, _, content) in &sink.parts {
        assert!(scope_code.contains(*code), "{code} outside {scope_code}");
        if format == Format::Csv {
            // The field's value, whose first 9 digits are the township, is part of the line.
            let digits = code.to_string();
            for line in content.split_inclusive(|&b| b == b'\n') {
                let found = line.windows(digits.len()).any(|w| w == digits.as_bytes());
                assert!(found, "a line without {digits} routed there");
            }
        }
    }
    if s.rejects.total() <= max {
        // Every rejected line is known: the rest must reach the sink byte for byte.
        let expected: Vec<&[u8]> = records
            .iter()
            .filter(|l| rejected.binary_search(l).is_err())
            .map(|&l| &lines[l as usize - 1][..])
            .collect();
        let mut got: Vec<&[u8]> = sink
            .parts
            .iter()
            .flat_map(|p| p.2.split_inclusive(|&b| b == b'\n'))
            .collect();
        let mut want = expected.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert!(got == want, "routed lines differ from the sink's");
        // Within a township, in input order: a subsequence of the routed lines.
        for (code, _, content) in &sink.parts {
            let mut rest = expected.iter();
            for line in content.split_inclusive(|&b| b == b'\n') {
                assert!(rest.any(|e| *e == line), "{code}: out of input order");
            }
        }
    }
    Some(s)
}

/// A summary as JSON without `runs_spilled` (which depends on the arena size).
fn comparable(s: &PartitionSummary) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap();
    v.as_object_mut().unwrap().remove("runs_spilled");
    v
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 || data.len() > INPUT_BYTES_MAX + 3 {
        return;
    }
    let (knobs, bytes) = data.split_at(3);
    let scope_index = usize::from(knobs[0] & 7);
    let scope = RegionCode::parse(SCOPES[scope_index]).unwrap();
    let buffer = 1 + usize::from(knobs[1]) * 4;
    let block = 1 + usize::from(knobs[2] % 64);
    let csv = if knobs[0] & 8 != 0 {
        [HEADER, bytes].concat()
    } else {
        bytes.to_vec()
    };
    for (format, input) in [(Format::Csv, &csv[..]), (Format::Ndjson, bytes)] {
        let lines = lines_of(input);
        let roll = run(
            input,
            format,
            VillagePolicy::RollUp,
            scope,
            buffer,
            Some(block),
        );
        let strict = run(
            input,
            format,
            VillagePolicy::Strict,
            scope,
            buffer,
            Some(block),
        );
        // `partition` itself: the input in one read, nothing spilled (an arena larger than
        // any input, and no larger: it is allocated up front).
        let unspilled = 2 * INPUT_BYTES_MAX;
        let whole = run(input, format, VillagePolicy::RollUp, scope, unspilled, None);
        let r = check(&roll, format, VillagePolicy::RollUp, scope_index, &lines);
        let s = check(&strict, format, VillagePolicy::Strict, scope_index, &lines);
        let w = check(&whole, format, VillagePolicy::RollUp, scope_index, &lines);
        let (Some(r), Some(s), Some(w)) = (r, s, w) else {
            assert!(
                r.is_none() && s.is_none() && w.is_none(),
                "fails in one pass only"
            );
            continue;
        };
        // Arena and read size change nothing but the spills.
        assert_eq!(w.runs_spilled, 0);
        assert_eq!(
            comparable(r),
            comparable(w),
            "summary depends on buffer or block"
        );
        assert!(
            roll.sink.parts == whole.sink.parts,
            "partitions depend on buffer or block"
        );
        // Strict = RollUp with the warned lines rejected as unknown villages.
        assert_eq!(s.records_routed + r.warnings.total(), r.records_routed);
        let mut counts: BTreeMap<RejectReason, u64> = r.rejects.counts.clone();
        if r.warnings.total() > 0 {
            *counts.entry(RejectReason::UnknownVillage).or_default() += r.warnings.total();
        }
        assert_eq!(
            s.rejects.counts, counts,
            "strict rejects = rejects + warned"
        );
    }
});
