//! The return flow's announce side: taking an announce (verify, install, acknowledge) and
//! announcing to the nodes this one serves once their subtrees are complete here, with the
//! skip-level fallback downwards past a silent target. Same machine as [`super::ReturnFlow`].

use std::sync::Arc;

use backflow_topology::RegionCode;

use super::paths::{data_children, served_via, valid_sources};
use super::{
    Announce, DataRouting, Event, Output, ReturnFlow, ReturnFlowError, ReturnFlowMsg, Target,
    Transfer, TransferRecord,
};
use crate::cert::TrustStore;
use crate::manifest::{check_succession, ManifestError, PartitionEntry, Succession};
use crate::region_tree::verify_partitions;
use crate::time::UnixMs;

impl ReturnFlow {
    pub(super) fn on_announce(
        &mut self,
        now: UnixMs,
        trust: &mut TrustStore,
        from: RegionCode,
        a: Announce,
    ) {
        let me = self.region();
        let reject = |s: &mut Self, error| {
            s.out
                .push_back(Output::Event(Event::ManifestRejected { from, error }));
        };
        let m = &a.manifest.manifest;
        // Cheap checks first: who may announce to us, and whether we already hold exactly this
        // (verified) manifest — retransmitted announces then cost no signature checks.
        if !valid_sources(me, m).contains(&from) {
            return reject(self, ManifestError::NotASource { from });
        }
        let hash = m.hash();
        if let Some(t) = self.transfers.get_mut(&hash) {
            // Already held: acknowledge again (the ack may have been lost), prefer a nearer
            // source, and resend our receipt (the sender may have restarted).
            if let Some(src) = t.source {
                if from.level() > src.level() {
                    t.source = Some(from);
                }
            }
            if let Some(to) = t.receipt_to {
                if from.level() > to.level() {
                    t.receipt_to = Some(from);
                    t.receipt_first_sent = None;
                    t.attested.destination_changed();
                } else if from == to {
                    // Our receipt destination announces again: it may have restarted or
                    // installed the manifest only now, so forward every attestation again
                    // (it skips those it holds before any signature check).
                    t.attested.destination_changed();
                }
                if t.attested.has_unforwarded() {
                    t.receipt_dirty = true;
                }
            }
            t.receipt_acked = false;
            t.receipt_next_send = now;
            self.send(from, ReturnFlowMsg::AnnounceAck { manifest: hash });
            self.drive(now, &hash);
            return;
        }
        if let Err(e) = a.manifest.verify(trust, now, &self.config.policy) {
            return reject(self, e);
        }
        match check_succession(self.held.get(&m.dataset_id()).copied(), m, hash) {
            Ok(Succession::Newer) => {}
            Ok(Succession::Same) => {
                self.send(from, ReturnFlowMsg::AnnounceAck { manifest: hash });
                return;
            }
            Err(e) => return reject(self, e),
        }
        let mut entries = a.entries;
        entries.sort_unstable_by_key(|e| e.region);
        let tree = match verify_partitions(m, me, &entries, &a.proof) {
            Ok(t) => t,
            Err(e) => return reject(self, e),
        };
        self.out.push_back(Output::Event(Event::ManifestAccepted {
            manifest: hash,
            dataset: m.dataset_id(),
            version: m.version,
            from,
        }));
        let record = Arc::new(TransferRecord {
            manifest: a.manifest,
            entries,
            proof: a.proof,
            published: false,
        });
        match self.install(now, record, hash, tree, Some(from), None) {
            // Acknowledged once the shell has reported what it stores (`content_checked`).
            Ok(()) => match self.transfers.get_mut(&hash) {
                Some(t) if t.content_unchecked => t.ack_pending = Some(from),
                _ => self.send(from, ReturnFlowMsg::AnnounceAck { manifest: hash }),
            },
            Err(ReturnFlowError::Manifest(e)) => reject(self, e),
            Err(_) => {}
        }
    }

    /// Announces to targets whose subtree is complete here; escalates past silent ones.
    pub(super) fn announce(&mut self, now: UnixMs, t: &mut Transfer) {
        let silence = self.config.source_silence_ms_max;
        let mut escalate = Vec::new();
        let mut due = Vec::new();
        for (code, target) in t.targets.iter_mut() {
            if target.pending > 0 || target.acked {
                continue;
            }
            if let Some(first) = target.first_sent {
                if !target.escalated && now.since_ms(first) >= silence {
                    target.escalated = true;
                    escalate.push(*code);
                }
            }
            if target.next_send <= now {
                target.first_sent.get_or_insert(now);
                target.next_send = now.plus_ms(self.config.retry_ms);
                due.push(*code);
            }
        }
        for code in escalate {
            // The nodes the silent one would have served (region children on the tree).
            let kids = data_children(
                &self.config.routing,
                &t.tree,
                &t.record.manifest.manifest,
                code,
            );
            for k in kids {
                if !t.targets.contains_key(&k) {
                    add_target(&self.config.routing, t, k, now);
                    if t.targets[&k].pending == 0 {
                        due.push(k);
                        if let Some(target) = t.targets.get_mut(&k) {
                            target.first_sent = Some(now);
                            target.next_send = now.plus_ms(self.config.retry_ms);
                        }
                    }
                }
            }
        }
        for code in due {
            let entries: Vec<PartitionEntry> = t
                .record
                .entries
                .iter()
                .filter(|e| code.contains(e.region))
                .copied()
                .collect();
            let Some(proof) = t.tree.proof_for(code, &t.record.proof) else {
                continue;
            };
            debug_assert!(entries.iter().all(|e| code.contains(e.region)));
            self.send(
                code,
                ReturnFlowMsg::Announce(Announce {
                    manifest: Arc::clone(&t.record.manifest),
                    entries,
                    proof,
                }),
            );
        }
    }
}

/// Starts announcing to `target` once the partitions it fetches through this node — its
/// subtree, minus what direct links deliver past it — are complete here. (The announce itself
/// lists the whole subtree: the receiver verifies it against the signed root and indexes
/// receipts by it.)
pub(super) fn add_target(routing: &DataRouting, t: &mut Transfer, target: RegionCode, now: UnixMs) {
    let m = &t.record.manifest.manifest;
    let pending = t
        .record
        .entries
        .iter()
        .zip(&t.parts)
        .filter(|(e, p)| {
            target.contains(e.region)
                && !p.have.is_full()
                && !p.bypassed
                && served_via(routing, m, target, e.region)
        })
        .count() as u32;
    t.targets.insert(
        target,
        Target {
            pending,
            acked: false,
            first_sent: None,
            next_send: now,
            escalated: false,
        },
    );
}
