//! The return flow's fetch side: requesting missing chunk groups from the source within the
//! in-flight window (halved on timeouts, grown back by deliveries, retries backing off), what
//! the shell reports of stored, present, rejected and damaged groups, and the skip-level
//! fallback to the next source. Same machine as [`super::ReturnFlow`].

use std::ops::Range;

use backflow_topology::RegionCode;

use super::paths::valid_sources;
#[cfg(doc)]
use super::StorageOp;
use super::{
    Event, InFlight, Output, ReturnFlow, ReturnFlowMsg, StoredGroups, Transfer, WantPart,
    PROGRESS_GROUPS_MIN, RETRY_BACKOFF_MAX,
};
use crate::limits::{WANT_PARTS_MAX, WANT_RANGES_MAX};
use crate::manifest::{Hash, CHUNK_GROUPS_PER_FRAME_MAX};
use crate::time::UnixMs;

impl ReturnFlow {
    /// The shell verified and durably stored these runs of groups (`(partition region,
    /// groups)`, typically the parts of one chunk frame).
    pub fn handle_groups_stored(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        manifest: &Hash,
        parts: &[(RegionCode, Range<u64>)],
    ) {
        let _ = from;
        let Some(mut t) = self.transfers.remove(manifest) else {
            return;
        };
        let mut new_groups = 0u64;
        let mut completed = false;
        for (region, groups) in parts {
            let Some(i) = t.part_index(*region).filter(|i| !t.parts[*i].bypassed) else {
                continue;
            };
            let was_full = t.parts[i].have.is_full();
            let before = t.parts[i].have.count;
            t.parts[i].have.insert_range(groups.clone());
            new_groups += t.parts[i].have.count - before;
            if !was_full && t.parts[i].have.is_full() {
                self.part_completed(&mut t, i, now);
                completed = true;
            }
        }
        if new_groups > 0 {
            t.progress_groups += new_groups;
            if t.progress_groups >= PROGRESS_GROUPS_MIN || completed {
                t.last_progress = now;
                t.progress_groups = 0;
            }
            // The path delivers: grow the window back (by what arrived, as TCP's slow start
            // does) and retry at the base interval again.
            t.window = t
                .window
                .saturating_add(new_groups)
                .min(self.config.groups_in_flight_max);
            t.retry_backoff = 1;
        }
        let parts_of = &t.parts;
        t.inflight
            .retain(|f| parts_of[f.part].have.any_missing(&f.groups));
        self.transfers.insert(*manifest, t);
        self.drive(now, manifest);
    }

    /// The shell applied [`StorageOp::PutTransfer`] of a received record for `manifest` and
    /// reports, per partition region, the group ranges it already stores for that entry's
    /// content hash (storage is content-addressed: typically the partitions a previous version
    /// shares with this one) — the same input as [`Self::restore`]'s `stored`. Those groups
    /// count as stored: they are never requested, complete parts report
    /// [`Event::PartitionComplete`], and announces and receipts follow as usual. Then the
    /// transfer requests what is missing. Ranges outside a partition, regions not in the record
    /// and partitions delivered past this node are ignored; unknown manifests too. Call it
    /// right after applying the `PutTransfer`, with an empty list if nothing is stored.
    pub fn handle_content_present(&mut self, now: UnixMs, manifest: &Hash, present: &StoredGroups) {
        let Some(mut t) = self.transfers.remove(manifest) else {
            return;
        };
        for (region, ranges) in present {
            let Some(i) = t.part_index(*region).filter(|i| !t.parts[*i].bypassed) else {
                continue;
            };
            let was_full = t.parts[i].have.is_full();
            for r in ranges {
                t.parts[i].have.insert_range(r.clone());
            }
            if !was_full && t.parts[i].have.is_full() {
                self.part_completed(&mut t, i, now);
            }
        }
        let parts_of = &t.parts;
        t.inflight
            .retain(|f| parts_of[f.part].have.any_missing(&f.groups));
        self.transfers.insert(*manifest, t);
        self.content_checked(now, manifest);
    }

    /// Runs a transfer once what its shell already stores is known (or the shell did not say
    /// by the next tick): fetches what is missing, announces, reports, then acknowledges the
    /// announce that brought it.
    pub(super) fn content_checked(&mut self, now: UnixMs, manifest: &Hash) {
        let Some(t) = self.transfers.get_mut(manifest) else {
            return;
        };
        t.content_unchecked = false;
        let ack = t.ack_pending.take();
        self.drive(now, manifest);
        if let Some(to) = ack {
            self.send(
                to,
                ReturnFlowMsg::AnnounceAck {
                    manifest: *manifest,
                },
            );
        }
    }

    /// The shell received a chunk frame for `group` that failed verification. The source is
    /// treated as faulty: the group is re-requested from the next ancestor.
    pub fn handle_group_rejected(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        manifest: &Hash,
        region: RegionCode,
        group: u64,
    ) {
        let Some(t) = self.transfers.get_mut(manifest) else {
            return;
        };
        self.out.push_back(Output::Event(Event::ChunkRejected {
            manifest: *manifest,
            region,
            group,
            from,
        }));
        if let Some(i) = t.part_index(region) {
            t.parts[i].cursor = t.parts[i].cursor.min(group);
            t.fetch_from = t.fetch_from.min(i);
            t.inflight
                .retain(|f| !(f.part == i && f.groups.contains(&group)));
        }
        if t.source == Some(from) {
            self.escalate(now, manifest);
        }
        self.drive(now, manifest);
    }

    /// The shell found stored `groups` of the partition content `content` (its hash) damaged —
    /// they did not verify when served or exported; the whole partition when the damaged
    /// group is unknown — and dropped them from its index. "Data that does not verify is
    /// never served, exported or receipted": every transfer with a partition of that content
    /// forgets those groups, so they are neither served (wants see them missing) nor counted
    /// in the next receipt, and a received transfer fetches them again from its source
    /// ([`Event::ContentDamaged`]). Unknown content is ignored.
    pub fn handle_content_damaged(&mut self, now: UnixMs, content: &Hash, groups: Range<u64>) {
        let hashes: Vec<Hash> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.record.entries.iter().any(|e| e.content_hash == *content))
            .map(|(h, _)| *h)
            .collect();
        for hash in hashes {
            let Some(mut t) = self.transfers.remove(&hash) else {
                continue;
            };
            let mut changed = false;
            for i in 0..t.parts.len() {
                if t.record.entries[i].content_hash != *content || t.parts[i].bypassed {
                    continue;
                }
                let part = &mut t.parts[i];
                let was_full = part.have.is_full();
                let before = part.have.count;
                part.have.remove_range(groups.clone());
                if part.have.count == before {
                    continue;
                }
                part.cursor = part.cursor.min(groups.start);
                t.fetch_from = t.fetch_from.min(i);
                if was_full {
                    debug_assert!(t.complete_parts > 0);
                    t.complete_parts -= 1;
                }
                changed = true;
                self.out.push_back(Output::Event(Event::ContentDamaged {
                    manifest: hash,
                    region: t.record.entries[i].region,
                    groups: groups.clone(),
                    refetch: t.source.is_some(),
                }));
            }
            if changed {
                t.receipt_dirty = true;
                // The silence clock starts now: the source had nothing to send until this.
                t.last_progress = now;
                t.progress_groups = 0;
            }
            self.transfers.insert(hash, t);
            self.drive(now, &hash);
        }
    }

    /// Skip-level fallback: move to the next candidate source.
    pub(super) fn escalate(&mut self, now: UnixMs, manifest: &Hash) {
        let me = self.region();
        let Some(t) = self.transfers.get_mut(manifest) else {
            return;
        };
        let Some(current) = t.source else {
            return;
        };
        let candidates = valid_sources(me, &t.record.manifest.manifest);
        if candidates.is_empty() {
            return;
        }
        let next = match candidates.iter().position(|c| *c == current) {
            Some(i) => candidates[(i + 1) % candidates.len()],
            None => candidates[0],
        };
        t.source = Some(next);
        t.last_progress = now;
        t.progress_groups = 0;
        t.inflight.clear();
        // A new source starts with the full window and the base retry interval.
        t.window = self.config.groups_in_flight_max;
        t.retry_backoff = 1;
        for p in &mut t.parts {
            p.cursor = 0;
        }
        t.fetch_from = 0;
        if next != current {
            self.out.push_back(Output::Event(Event::SourceChanged {
                manifest: *manifest,
                from: current,
                to: next,
            }));
        }
    }

    /// Requests missing groups within the in-flight window, as few wants as the limits allow.
    pub(super) fn fetch(&mut self, now: UnixMs, t: &mut Transfer) {
        let Some(source) = t.source else {
            return;
        };
        if t.is_complete() || t.content_unchecked {
            return;
        }
        // Time out requests; their groups become requestable again.
        let mut timed_out = Vec::new();
        t.inflight.retain(|f| {
            let keep = f.deadline > now;
            if !keep {
                timed_out.push((f.part, f.groups.start));
            }
            keep
        });
        if !timed_out.is_empty() {
            // Requests went unanswered: the path lost or stalled them. Ask for less, and wait
            // longer before asking again, so a struggling source or link is never hit with
            // the whole window at once; delivery restores both (`handle_groups_stored`).
            t.window = (t.window / 2).max(1);
            t.retry_backoff = t.retry_backoff.saturating_mul(2).min(RETRY_BACKOFF_MAX);
        }
        for (part, start) in timed_out {
            t.parts[part].cursor = t.parts[part].cursor.min(start);
            t.fetch_from = t.fetch_from.min(part);
        }
        let in_flight: u64 = t
            .inflight
            .iter()
            .map(|f| f.groups.end - f.groups.start)
            .sum();
        let mut budget = t.window.saturating_sub(in_flight);
        // Refill in batches (a frame's worth, or a quarter of a small window) rather than one
        // want per stored group: with one-group partitions every frame would otherwise trigger
        // a want of its own.
        let refill_min = (t.window / 4).clamp(1, CHUNK_GROUPS_PER_FRAME_MAX);
        if in_flight > 0 && budget < refill_min {
            return;
        }
        let deadline = now.plus_ms(
            self.config
                .retry_ms
                .saturating_mul(u64::from(t.retry_backoff)),
        );
        while t.parts.get(t.fetch_from).is_some_and(|p| !p.needs_fetch()) {
            t.fetch_from += 1;
        }
        let mut want: Vec<WantPart> = Vec::new();
        let mut want_ranges = 0usize;
        for i in t.fetch_from..t.parts.len() {
            if budget == 0 {
                break;
            }
            if !t.parts[i].needs_fetch() {
                continue;
            }
            if want.len() == WANT_PARTS_MAX || want_ranges == WANT_RANGES_MAX {
                self.send_want(source, t.hash, std::mem::take(&mut want));
                want_ranges = 0;
            }
            let part = &mut t.parts[i];
            let mut ranges = Vec::new();
            let mut s = part.cursor;
            while budget > 0 && want_ranges + ranges.len() < WANT_RANGES_MAX {
                let Some(start) = part.have.next_with(s, false) else {
                    s = part.have.len;
                    break;
                };
                let end = part
                    .have
                    .run_end(start, false, CHUNK_GROUPS_PER_FRAME_MAX.min(budget));
                ranges.push(start..end);
                budget -= end - start;
                s = end;
            }
            part.cursor = s;
            if ranges.is_empty() {
                part.cursor = part.have.len;
                continue;
            }
            for r in &ranges {
                t.inflight.push(InFlight {
                    part: i,
                    groups: r.clone(),
                    deadline,
                });
            }
            want_ranges += ranges.len();
            want.push(WantPart {
                region: t.record.entries[i].region,
                groups: ranges,
            });
        }
        if !want.is_empty() {
            self.send_want(source, t.hash, want);
        }
    }

    fn send_want(&mut self, to: RegionCode, manifest: Hash, parts: Vec<WantPart>) {
        debug_assert!(parts.len() <= WANT_PARTS_MAX);
        self.send(to, ReturnFlowMsg::Want { manifest, parts });
    }
}
