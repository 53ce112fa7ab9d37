//! What became of each input line of a publish that was not simply routed: rejects (not
//! published) and warnings (published, but reported), counted by reason with their line
//! numbers, and the rejects file that lists every one of them.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Result;
use serde::Serialize;

/// Rejected and warned line numbers kept in memory for the summary (all go to the rejects
/// file).
pub const REJECT_LINES_KEPT_MAX: usize = 1_000;

/// Why a record was not routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The region field is absent or empty.
    MissingRegion,
    /// Not a 9-digit township or 12-digit village code.
    MalformedRegion,
    /// Well-formed, but no such township in the division table.
    UnknownRegion,
    /// A real township, but outside the publishing node's region.
    ForeignRegion,
    /// The line itself is unusable (bad JSON, unbalanced quotes). A line over
    /// [`crate::partition::LINE_BYTES_MAX`] is no reject: it fails the whole publish.
    BadRecord,
    /// A 12-digit code in a known township of the publisher's region whose village is unknown
    /// (see [`crate::township_index::VillagePolicy`]); a reject only under
    /// [`crate::township_index::VillagePolicy::Strict`], otherwise the record is published
    /// with a [`WarningReason::UnknownVillageRolledUp`].
    UnknownVillage,
}

impl RejectReason {
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::MissingRegion => "missing region code",
            RejectReason::MalformedRegion => "malformed region code",
            RejectReason::UnknownRegion => "unknown township",
            RejectReason::ForeignRegion => "outside the publisher's region",
            RejectReason::BadRecord => "unparseable record",
            RejectReason::UnknownVillage => "unknown village (--strict-villages)",
        }
    }
}

/// Why a record was routed, and published, but reported: a warning, not a reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningReason {
    /// A 12-digit code whose township is known but whose village is not (see
    /// [`crate::township_index::VillagePolicy`]): rolled up to the township, as villages
    /// change faster than the division table. These lines WERE published (unless
    /// [`crate::township_index::VillagePolicy::Strict`], under which they are
    /// [`RejectReason::UnknownVillage`] rejects instead and never warnings).
    UnknownVillageRolledUp,
}

impl WarningReason {
    /// The reason column of the rejects file: prefixed `warning:` so that published lines
    /// are told apart from rejected ones (`grep -v '\twarning:'` leaves only the rejects).
    pub fn label(self) -> &'static str {
        match self {
            WarningReason::UnknownVillageRolledUp => {
                "warning: unknown village, rolled up to its township (published)"
            }
        }
    }
}

/// Records counted by reason, with line numbers (1-based, header is line 1 for CSV): the
/// shape shared by [`Rejects`] and [`Warnings`].
#[derive(Debug, Serialize)]
pub struct LineReport<R: Ord> {
    pub counts: std::collections::BTreeMap<R, u64>,
    /// The first [`REJECT_LINES_KEPT_MAX`] lines reported (all of them in the rejects file).
    pub first_lines: Vec<(u64, R)>,
}

impl<R: Ord> Default for LineReport<R> {
    fn default() -> Self {
        LineReport {
            counts: Default::default(),
            first_lines: Vec::new(),
        }
    }
}

impl<R: Ord + Copy> LineReport<R> {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub(crate) fn add(&mut self, line: u64, reason: R) {
        *self.counts.entry(reason).or_default() += 1;
        if self.first_lines.len() < REJECT_LINES_KEPT_MAX {
            self.first_lines.push((line, reason));
        }
    }
}

/// Rejected records: NOT published.
pub type Rejects = LineReport<RejectReason>;

/// Records published with a warning: they are in their township's partition, and also listed
/// in the rejects file with a `warning:` reason.
pub type Warnings = LineReport<WarningReason>;

/// The rejects file: one line per rejected or warned record, `LINE\tREASON\tVALUE` (REASON is a
/// [`RejectReason::label`] or a [`WarningReason::label`], which starts with `warning:` and
/// marks a line that WAS published).
///
/// Operator-only: unlike every error and the [`LineReport`]s (line numbers and reasons, safe
/// to return through the API), VALUE is input bytes — the region field's value, or the start
/// of the line when it has none — truncated to 64 bytes and decoded lossily. The node writes
/// this file into its data directory for the operator; it must never be served back to an
/// API client (a key file published as CSV would otherwise be readable line by line).
pub(crate) struct RejectsFile(pub(crate) Option<BufWriter<File>>);

impl RejectsFile {
    pub(crate) fn write(&mut self, line: u64, label: &str, value: &[u8]) -> Result<()> {
        if let Some(file) = &mut self.0 {
            // Value shown truncated: enough to find the problem, never a whole huge line.
            let shown = String::from_utf8_lossy(&value[..value.len().min(64)]);
            writeln!(file, "{line}\t{label}\t{shown}")?;
        }
        Ok(())
    }
}
