//! Chunk data by size and hash: serving a part's groups from the store as one chunk frame,
//! and a received frame's runs verified against their entries, stored and reported back.

use backflow_protocol::chunk::{check_groups, ChunkError};
use backflow_protocol::endpoint::RunVerdict;
use backflow_protocol::manifest::Hash;
use backflow_protocol::return_flow::ServePart;
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;

use super::ProtoNode;
use crate::engine::{Ctx, Observation};
use crate::protomsg::{ProtoMsg, SimPart};

impl ProtoNode {
    /// `ServeChunks`: the shell reads each part's groups from its store and sends them as one
    /// chunk frame (by size and hash).
    pub(super) fn serve(
        &mut self,
        ctx: &mut Ctx<'_, ProtoMsg>,
        to: RegionCode,
        manifest: Hash,
        parts: Vec<ServePart>,
    ) {
        let mut frame = Vec::with_capacity(parts.len());
        for p in parts {
            // The groups must be in the store.
            let held = self
                .store
                .held(&p.entry)
                .is_some_and(|l| l.covers(&p.groups));
            if !held {
                ctx.observe(Observation::Note("serve_of_unheld_group"));
                continue;
            }
            frame.push(SimPart {
                region: p.entry.region,
                groups: p.groups,
                content_hash: p.entry.content_hash,
                encoded_len: p.encoded_len,
            });
        }
        if !frame.is_empty() {
            ctx.send(
                to,
                ProtoMsg::Chunk {
                    manifest,
                    parts: frame,
                },
            );
        }
    }

    /// A chunk frame from `from` (admitted): the endpoint names the runs to verify; each is
    /// checked as bao verification would (the content it was cut from, its group range),
    /// stored if it passes, and the verdicts go back to the endpoint.
    pub(super) fn on_chunk(
        &mut self,
        ctx: &mut Ctx<'_, ProtoMsg>,
        now: UnixMs,
        from: RegionCode,
        manifest: Hash,
        parts: Vec<SimPart>,
    ) {
        let Some(ep) = self.ep.as_mut() else {
            return;
        };
        let Some(plan) = ep.plan_chunk_frame(from, &manifest, parts.iter().map(|p| p.region))
        else {
            return; // Nothing this node is receiving: dropped (the endpoint reports it).
        };
        let mut verdicts = Vec::with_capacity(plan.runs.len());
        for run in &plan.runs {
            let part = &parts[run.index];
            let groups = part.groups.clone();
            let verified = if part.content_hash != run.entry.content_hash {
                Err(ChunkError::ContentMismatch)
            } else {
                check_groups(&run.entry, &groups)
            };
            let verdict = match verified {
                Ok(()) => {
                    let replaces = self
                        .store
                        .content
                        .get(&run.entry.region)
                        .is_some_and(|h| *h != run.entry.content_hash);
                    let added: u64 = self
                        .store
                        .insert(&run.entry, groups.clone())
                        .iter()
                        .map(|r| crate::ranges::range_bytes(run.entry.bytes, r))
                        .sum();
                    if replaces {
                        self.stored_bytes = self.store.stored_bytes();
                        ctx.observe(Observation::StoredBytes(self.stored_bytes));
                    } else if added > 0 {
                        self.stored_bytes += added;
                        ctx.observe(Observation::StoredBytes(self.stored_bytes));
                    }
                    RunVerdict::Stored
                }
                Err(e) => RunVerdict::rejected(&groups, &e),
            };
            verdicts.push((run.entry.region, groups, verdict));
        }
        ep.handle_chunk_verdict(now, plan.from, &manifest, &verdicts);
    }
}
