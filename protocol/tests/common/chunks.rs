//! The data plane of a test node, as node/src/chunks.rs does it with the protocol's bao codec:
//! a source encodes the runs of an `Output::ServeChunks` back to back into one chunk frame
//! (`OutboardBuilder` + `encode_groups_at`); a receiver verifies each planned run against its
//! entry (`decode_groups_with`), stores what verifies and reports a `RunVerdict` per run,
//! blaming the mismatching group (`RunVerdict::rejected`).
#![allow(dead_code)]

use std::ops::Range;

use backflow_protocol::chunk::BLOCK_SIZE;
use backflow_protocol::endpoint::{ChunkPlan, RunVerdict};
use backflow_protocol::manifest::{
    decode_groups_with, encode_groups_at, ChunkError, ChunkFrame, ChunkPart, Hash, OutboardBuilder,
    PartitionEntry, CHUNK_GROUPS_PER_FRAME_MAX, CHUNK_GROUP_BYTES,
};
use backflow_protocol::return_flow::ServePart;
use backflow_protocol::RegionCode;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::BaoTree;

use super::store::Store;

/// A partition's bao outboard, built from its content in one pass (as the node builds one
/// from stored content).
fn outboard(entry: &PartitionEntry, content: &[u8]) -> PreOrderOutboard<Vec<u8>> {
    let mut builder = OutboardBuilder::new();
    builder.push(content);
    let (root, data) = builder.finish();
    assert_eq!(
        root, entry.content_hash,
        "{} stored content is intact",
        entry.region
    );
    PreOrderOutboard {
        root: bao_tree::blake3::Hash::from_bytes(root),
        tree: BaoTree::new(entry.bytes, BLOCK_SIZE),
        data,
    }
}

/// Encodes `parts` (an `Output::ServeChunks` of `me`) from `store` into one chunk frame, each
/// run where the one before it ended. `tamper`: a faulty source, which flips the last byte of
/// every run (content of the run's last group).
pub fn serve_frame(
    me: RegionCode,
    store: &Store,
    manifest: Hash,
    parts: &[ServePart],
    tamper: bool,
) -> ChunkFrame {
    let mut frame = ChunkFrame {
        manifest,
        parts: Vec::with_capacity(parts.len()),
        encoded: Vec::new(),
    };
    let mut at = 0;
    for p in parts {
        let (entry, groups) = (&p.entry, p.groups.clone());
        let stored = &store.data[&(manifest, entry.region)];
        assert!(
            groups.clone().all(|g| stored.have.contains(&g)),
            "{me} serves groups {groups:?} of {} it does not hold",
            entry.region
        );
        let content = &stored.bytes;
        let ob = outboard(entry, content);
        let read = |offset: u64, buf: &mut [u8]| {
            let o = offset as usize;
            buf.copy_from_slice(&content[o..o + buf.len()]);
            Ok(())
        };
        let end = encode_groups_at(entry, &ob, groups.clone(), read, &mut frame.encoded, at)
            .expect("an honest node encodes what it holds");
        assert_eq!((end - at) as u64, p.encoded_len, "announced length");
        if tamper {
            frame.encoded[end - 1] ^= 0xff;
        }
        frame.parts.push(ChunkPart {
            region: entry.region,
            first_group: groups.start,
            group_count: groups.end - groups.start,
            encoded_len: (end - at) as u32,
        });
        at = end;
    }
    frame.encoded.truncate(at);
    frame
}

/// Verifies each planned run of a received frame against its entry, writes the verified runs
/// into `store` (only verified bytes reach it) and returns the verdict per run, in frame
/// order, for `Endpoint::handle_chunk_verdict`.
pub fn receive_frame(
    store: &mut Store,
    frame: &ChunkFrame,
    plan: &ChunkPlan,
) -> Vec<(RegionCode, Range<u64>, RunVerdict)> {
    let payloads: Vec<(&ChunkPart, &[u8])> = frame.parts_with_payload().collect();
    let mut verdicts = Vec::with_capacity(plan.runs.len());
    for run in &plan.runs {
        let (part, encoded) = payloads[run.index];
        let entry = &run.entry;
        let groups = part.groups();
        // Decoded into a staging buffer bounded by what the run's groups can hold: a run
        // yielding more is malformed, not a panic.
        let cap = (part.group_count.min(CHUNK_GROUPS_PER_FRAME_MAX) * CHUNK_GROUP_BYTES) as usize;
        let mut staged = Vec::with_capacity(cap);
        let mut overflow = false;
        let decoded = decode_groups_with(entry, groups.clone(), encoded, |piece| {
            if staged.len() + piece.len() <= cap {
                staged.extend_from_slice(piece);
            } else {
                overflow = true;
            }
        });
        let verdict = match decoded {
            Ok(()) if !overflow => {
                let stored = store
                    .data
                    .get_mut(&(frame.manifest, entry.region))
                    .expect("a partition being received has a record");
                if stored.bytes.len() as u64 != entry.bytes {
                    stored.bytes.resize(entry.bytes as usize, 0);
                }
                let at = (groups.start * CHUNK_GROUP_BYTES) as usize;
                stored.bytes[at..at + staged.len()].copy_from_slice(&staged);
                stored.have.extend(groups.clone());
                RunVerdict::Stored
            }
            Ok(()) => RunVerdict::rejected(&groups, &ChunkError::Malformed),
            Err(e) => RunVerdict::rejected(&groups, &e),
        };
        verdicts.push((part.region, groups, verdict));
    }
    verdicts
}
