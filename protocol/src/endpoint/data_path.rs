//! The shell's data path: which runs of a received chunk frame to verify and against which
//! entries ([`ChunkPlan`]), the verdicts on them ([`RunVerdict`]), and what the shell reports
//! of content it stores (already present, or found damaged). The return flow
//! ([`ReturnFlow`]) takes them from here.

use std::fmt::Debug;
use std::ops::Range;

use backflow_topology::RegionCode;

#[cfg(doc)]
use super::SavedTransfer;
use super::{Endpoint, Event, Output};
use crate::chunk::ChunkError;
use crate::manifest::{Hash, PartitionEntry};
#[cfg(doc)]
use crate::return_flow::ReturnFlow;
use crate::time::UnixMs;

/// The verdict on one run of a received chunk frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunVerdict {
    /// Verified and durably stored.
    Stored,
    /// Did not verify: `group` is the one to blame (the first mismatching group where the
    /// codec knows it, else the run's first).
    Rejected { group: u64, reason: String },
}

impl RunVerdict {
    /// The verdict for a run of `groups` that failed with `error`.
    pub fn rejected(groups: &Range<u64>, error: &ChunkError) -> RunVerdict {
        let group = match error {
            ChunkError::HashMismatch { group } => *group,
            _ => groups.start,
        };
        RunVerdict::Rejected {
            group,
            reason: error.to_string(),
        }
    }
}

/// The runs of a received chunk frame this node is receiving, each with the entry it must
/// verify against; every other run of the frame is to be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// The sender's verified region.
    pub from: RegionCode,
    pub runs: Vec<PlannedRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    /// Index of the run in the frame.
    pub index: usize,
    pub entry: PartitionEntry,
}

impl<P: Copy + Ord + Debug> Endpoint<P> {
    /// A chunk frame from `peer` carrying runs for `regions` (in frame order): which runs to
    /// verify, against which entries. `None`: drop the whole frame (the peer is not admitted,
    /// or no run is one this node is receiving; reported as an event).
    pub fn plan_chunk_frame(
        &mut self,
        peer: P,
        manifest: &Hash,
        regions: impl IntoIterator<Item = RegionCode>,
    ) -> Option<ChunkPlan> {
        let Some(from) = self.region_of(&peer) else {
            self.out
                .push_back(Output::Event(Event::UnadmittedFrame { peer }));
            return None;
        };
        let mut total = 0;
        let runs: Vec<PlannedRun> = regions
            .into_iter()
            .enumerate()
            .filter_map(|(index, region)| {
                total += 1;
                let entry = self.rf.expected_partition(manifest, region)?;
                Some(PlannedRun { index, entry })
            })
            .collect();
        if runs.is_empty() {
            self.out
                .push_back(Output::Event(Event::UnexpectedChunkFrame {
                    from,
                    runs: total,
                }));
            return None;
        }
        Some(ChunkPlan { from, runs })
    }

    /// The shell verified (and stored what verified of) the runs of a planned chunk frame:
    /// `(region, groups, verdict)` per run. Stored runs advance their transfer; a rejected run
    /// is asked for again (from another source if its source keeps failing).
    pub fn handle_chunk_verdict(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        manifest: &Hash,
        verdicts: &[(RegionCode, Range<u64>, RunVerdict)],
    ) {
        let stored: Vec<(RegionCode, Range<u64>)> = verdicts
            .iter()
            .filter(|(_, _, v)| *v == RunVerdict::Stored)
            .map(|(r, g, _)| (*r, g.clone()))
            .collect();
        if !stored.is_empty() {
            self.rf.handle_groups_stored(now, from, manifest, &stored);
        }
        for (region, _, v) in verdicts {
            if let RunVerdict::Rejected { group, .. } = v {
                self.rf
                    .handle_group_rejected(now, from, manifest, *region, *group);
            }
        }
    }

    /// The shell found stored `groups` of the partition content `content` damaged (they did
    /// not verify when served or exported; `0..groups` of the partition when the group is not
    /// known) and dropped them from its index: they are no longer served or counted in
    /// receipts, and received transfers fetch them again
    /// ([`ReturnFlow::handle_content_damaged`]).
    pub fn handle_content_damaged(&mut self, now: UnixMs, content: &Hash, groups: Range<u64>) {
        self.rf.handle_content_damaged(now, content, groups);
    }

    /// Whether the transfer of `manifest` waits for [`Self::handle_content_present`]: true
    /// right after a received record's `PutTransfer`, false for restored and published ones
    /// (their stored groups are already known), so the shell looks up storage only when asked.
    pub fn awaits_content(&self, manifest: &Hash) -> bool {
        self.rf.awaits_content(manifest)
    }

    /// The shell applied `Storage::ReturnFlow(StorageOp::PutTransfer(record))` of a received
    /// record (not `published`) for `manifest`, and reports the group ranges it already
    /// stores for each entry's content hash (content-addressed storage: what a previous
    /// version shares with this one), as at restart ([`SavedTransfer::stored`]). They count
    /// as stored and are never requested; the rest is fetched from here on (see
    /// [`ReturnFlow::handle_content_present`]). Call it right after applying that
    /// `PutTransfer`, before polling further outputs — with an empty list if nothing is
    /// stored; a shell that never calls it fetches everything, one tick later.
    pub fn handle_content_present(
        &mut self,
        now: UnixMs,
        manifest: &Hash,
        present: &[(RegionCode, Vec<Range<u64>>)],
    ) {
        self.rf.handle_content_present(now, manifest, present);
    }
}
