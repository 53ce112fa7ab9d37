//! The return flow's serving side: answering a want with the groups held here — only to
//! descendants, only partitions inside the requester's region, bounded per want — packed
//! into as few chunk frames as their limits allow. Same machine as [`super::ReturnFlow`].

use std::ops::Range;

use backflow_topology::RegionCode;

use super::{Event, Output, ReturnFlow, ReturnFlowMsg, ServePart, WantPart};
use crate::limits::{
    CHUNK_FRAME_BYTES_MAX, WANT_GROUPS_SERVED_MAX, WANT_PARTS_MAX, WANT_RANGES_MAX,
};
use crate::manifest::{encoded_len, Hash, PartitionEntry, CHUNK_GROUPS_PER_FRAME_MAX};
use crate::time::UnixMs;

impl ReturnFlow {
    pub(super) fn on_want(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        manifest: Hash,
        parts: Vec<WantPart>,
    ) {
        let me = self.region();
        let Some(t) = self.transfers.get(&manifest) else {
            self.send(from, ReturnFlowMsg::NotAvailable { manifest });
            return;
        };
        // An expired manifest's data is served no more (nor exported by the shell): its
        // publisher no longer vouches for it (the freeze window, see `ManifestPolicy`).
        if now >= t.record.manifest.manifest.expires_at {
            self.send(from, ReturnFlowMsg::NotAvailable { manifest });
            return;
        }
        // Only descendants, and only partitions inside the requester's own region; a grant's
        // delivery only to the node it is addressed to, and only by its publisher.
        let m = &t.record.manifest.manifest;
        let descendant = from != me && me.contains(from);
        let may_have = |region: RegionCode| {
            if m.is_delivery() {
                me == m.publisher.region && from == m.scope && region == m.scope
            } else {
                descendant && from.contains(region)
            }
        };
        let mut refused = None;
        let mut unavailable = false;
        let mut serve: Vec<(PartitionEntry, Range<u64>)> = Vec::new();
        let mut served = 0u64;
        'parts: for part in parts.into_iter().take(WANT_PARTS_MAX) {
            if !may_have(part.region) {
                refused.get_or_insert(part.region);
                continue;
            }
            let Some(i) = t.part_index(part.region) else {
                unavailable = true;
                continue;
            };
            let entry = t.record.entries[i];
            let have = &t.parts[i].have;
            let mut any = false;
            for r in part.groups.into_iter().take(WANT_RANGES_MAX) {
                // Bound the work a want can cause: at most one frame's worth per range, and
                // `WANT_GROUPS_SERVED_MAX` in all.
                let end = r
                    .end
                    .min(have.len)
                    .min(r.start.saturating_add(CHUNK_GROUPS_PER_FRAME_MAX));
                let mut g = r.start;
                while let Some(s) = have.next_with(g, true).filter(|s| *s < end) {
                    if served >= WANT_GROUPS_SERVED_MAX {
                        break 'parts;
                    }
                    let e = have.run_end(s, true, (end - s).min(WANT_GROUPS_SERVED_MAX - served));
                    serve.push((entry, s..e));
                    served += e - s;
                    any = true;
                    g = e;
                }
            }
            unavailable |= !any && !have.is_full();
        }
        if let Some(region) = refused {
            // One event per want, not per partition: a hostile want cannot flood the log.
            self.out.push_back(Output::Event(Event::WantRefused {
                from,
                manifest,
                region,
            }));
        }
        // Only a source that can serve nothing of what is asked is abandoned; one missing a few
        // partitions serves the rest, and the receiver's timeouts and fallback handle those.
        if serve.is_empty() && unavailable {
            self.send(from, ReturnFlowMsg::NotAvailable { manifest });
        }
        self.serve_packed(from, manifest, serve);
    }

    /// Packs runs into as few chunk frames as their limits allow, in order.
    fn serve_packed(
        &mut self,
        to: RegionCode,
        manifest: Hash,
        runs: Vec<(PartitionEntry, Range<u64>)>,
    ) {
        let mut frame: Vec<ServePart> = Vec::new();
        let (mut frame_groups, mut frame_bytes) = (0u64, 0u64);
        for (entry, groups) in runs {
            // `None` only for an entry no verified manifest can hold (over the partition size
            // limit): nothing to serve.
            let Some(len) = encoded_len(&entry, &groups) else {
                continue;
            };
            let n = groups.end - groups.start;
            if !frame.is_empty()
                && (frame_groups + n > CHUNK_GROUPS_PER_FRAME_MAX
                    || frame_bytes + len > CHUNK_FRAME_BYTES_MAX as u64)
            {
                let parts = std::mem::take(&mut frame);
                self.out.push_back(Output::ServeChunks {
                    to,
                    manifest,
                    parts,
                });
                (frame_groups, frame_bytes) = (0, 0);
            }
            debug_assert!(n <= CHUNK_GROUPS_PER_FRAME_MAX && len <= CHUNK_FRAME_BYTES_MAX as u64);
            frame.push(ServePart {
                entry,
                groups,
                encoded_len: len,
            });
            frame_groups += n;
            frame_bytes += len;
        }
        if !frame.is_empty() {
            self.out.push_back(Output::ServeChunks {
                to,
                manifest,
                parts: frame,
            });
        }
    }
}
