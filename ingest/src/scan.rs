//! The scan of a block of whole record lines: each line's region field found, parsed and
//! routed to its township — split over several threads when the block is large.
//!
//! The scan is the part of partitioning that grows with the number of records, and it is
//! independent per line; what must stay in input order (line numbers, the arena, the rejects
//! file) is applied afterwards by [`crate::partition`] on one thread, in a cheap loop.
//!
//! Within a piece the scan makes two passes: the first parses every line's field (sequential
//! reads of the block), the second looks every parsed code up in the township tables. The
//! lookups land at random places in tables larger than the L1 cache; done in a tight loop of
//! their own, the processor overlaps many of those misses instead of waiting for each between
//! two lines' parsing.

use std::borrow::Cow;

use crate::fields::{csv_field, json_field, Format};
use crate::line_report::RejectReason;
use crate::township_index::{Parsed, Routed, TownshipIndex};

/// What the scan found for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Parsed, not yet looked up (only between the two passes of [`Scanner::scan_piece`]).
    Parsed(Parsed),
    Routed(Routed),
    Rejected(RejectReason),
    /// A blank NDJSON line: not a record, and losing it loses nothing.
    Blank,
}

/// One scanned line: where it ends in its piece (after its `\n`) and what was found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScannedLine {
    pub(crate) end: u32,
    pub(crate) outcome: Outcome,
}

/// What a scan needs to know about the input: its format and where the region field is.
pub(crate) struct Scanner<'a> {
    pub(crate) format: Format,
    /// The region field's index (CSV).
    pub(crate) field_index: usize,
    /// The region field's name (NDJSON).
    pub(crate) field_name: &'a str,
    pub(crate) index: &'a TownshipIndex,
}

/// A line without its terminator (`\n`, or `\r\n`).
pub(crate) fn body(line: &[u8]) -> &[u8] {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    body.strip_suffix(b"\r").unwrap_or(body)
}

impl Scanner<'_> {
    /// The region field's value in a line's body; `Ok(None)` for a blank NDJSON line.
    pub(crate) fn field<'l>(&self, body: &'l [u8]) -> Result<Option<Cow<'l, [u8]>>, RejectReason> {
        match self.format {
            Format::Csv => match csv_field(body, self.field_index) {
                Some(v) => Ok(Some(Cow::Borrowed(v))),
                None if memchr::memchr(b'"', body).is_some() => Err(RejectReason::BadRecord),
                None => Err(RejectReason::MissingRegion),
            },
            Format::Ndjson => {
                if body.trim_ascii().is_empty() {
                    return Ok(None);
                }
                match json_field(body, self.field_name) {
                    Ok(Some(v)) => Ok(Some(Cow::Owned(v))),
                    Ok(None) => Err(RejectReason::MissingRegion),
                    Err(()) => Err(RejectReason::BadRecord),
                }
            }
        }
    }

    /// Scans `data` (whole lines, each ending in `\n`) on up to `outs.len()` threads: `data`
    /// is cut into that many pieces at line ends, piece `k` scanned into `outs[k]`. Returns
    /// where each piece starts in `data` (the pieces used; the other `outs` are left empty).
    pub(crate) fn scan(&self, data: &[u8], outs: &mut [Vec<ScannedLine>]) -> Vec<usize> {
        debug_assert!(data.is_empty() || data.ends_with(b"\n"), "whole lines only");
        assert!(!outs.is_empty(), "at least one piece");
        let mut starts = vec![0];
        for k in 1..outs.len() {
            let target = (data.len() * k / outs.len()).max(*starts.last().unwrap_or(&0));
            match memchr::memchr(b'\n', &data[target..]) {
                Some(at) if target + at + 1 < data.len() => starts.push(target + at + 1),
                _ => break,
            }
        }
        let ends: Vec<usize> = starts[1..].iter().copied().chain([data.len()]).collect();
        let (first, rest) = outs.split_at_mut(1);
        std::thread::scope(|scope| {
            for (k, out) in rest.iter_mut().enumerate() {
                out.clear();
                if let (Some(&from), Some(&to)) = (starts.get(k + 1), ends.get(k + 1)) {
                    scope.spawn(move || self.scan_piece(&data[from..to], out));
                }
            }
            self.scan_piece(&data[..ends[0]], &mut first[0]);
        });
        starts
    }

    /// Scans one piece of whole lines into `out` (cleared first), in line order.
    fn scan_piece(&self, piece: &[u8], out: &mut Vec<ScannedLine>) {
        out.clear();
        // Pass 1: find each line and parse its field (sequential reads of the piece).
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', piece) {
            let end = nl + 1;
            let outcome = match self.field(body(&piece[start..end])) {
                Ok(None) => Outcome::Blank,
                Ok(Some(value)) => match Parsed::from_value(&value) {
                    Ok(parsed) => Outcome::Parsed(parsed),
                    Err(reason) => Outcome::Rejected(reason),
                },
                Err(reason) => Outcome::Rejected(reason),
            };
            // Blocks are at most `LINE_BYTES_MAX` + 1 bytes: offsets fit u32.
            out.push(ScannedLine {
                end: end as u32,
                outcome,
            });
            start = end;
        }
        // Pass 2: look every parsed code up (random reads of the tables, overlapped).
        for line in out.iter_mut() {
            if let Outcome::Parsed(parsed) = line.outcome {
                line.outcome = match self.index.locate(parsed) {
                    Ok(routed) => Outcome::Routed(routed),
                    Err(reason) => Outcome::Rejected(reason),
                };
            }
        }
    }
}
