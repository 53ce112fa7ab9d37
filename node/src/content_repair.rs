//! The event loop's part in keeping stored content sound: content that fails verification
//! where it is read (served, exported, scrubbed) leaves the index and is fetched again, and
//! background scrub rounds read back what nobody reads ([`crate::scrub`] checks it).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use backflow_protocol::manifest::{Hash, PartitionEntry};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::clock::now_ms;
use crate::dataplane::Work;
use crate::runtime::Runtime;
use crate::scrub::{RoundGuard, ScrubReport, SCRUB_BYTES_PER_ROUND_MAX, SCRUB_INTERVAL_MS};

impl Runtime {
    /// Stored content failed verification (when served or exported): it leaves the index and
    /// the protocol stops counting it as stored, so it is neither served, exported nor
    /// receipted, and a received transfer fetches it again from its source.
    pub(crate) fn on_damaged(&mut self, damaged: crate::chunks::Damaged) {
        let crate::chunks::Damaged {
            content,
            bytes,
            region,
            groups,
        } = damaged;
        if !self.recent_drops.is_news(&content, &groups, now_ms().0) {
            debug!(%region, ?groups, "a damage report from a read before the last repair: ignored");
            return;
        }
        warn!(%region, content = %hex::encode(&content[..8]), ?groups, "stored content does not verify; dropping it from the index");
        self.stats
            .groups_damaged
            .fetch_add(groups.end - groups.start, Ordering::Relaxed);
        // Not synced: a drop lost in a crash is only found (and dropped) again.
        let dropped = self
            .store
            .drop_groups(&content, bytes, groups.clone())
            .and_then(|dropped| self.data.forget_outboard(&content).map(|()| dropped));
        let groups = match dropped {
            Ok(dropped) => dropped,
            Err(e) => panic!("storage failure: dropping damaged content: {e:#}"),
        };
        self.ep.handle_content_damaged(now_ms(), &content, groups);
    }

    /// Every partition this node stores whole, once per content, in content-hash order.
    fn stored_whole(&self) -> BTreeMap<Hash, PartitionEntry> {
        let rf = self.ep.return_flow();
        let mut out = BTreeMap::new();
        for (hash, record) in &self.records {
            for e in &record.entries {
                if e.bytes > 0 && rf.stored_groups(hash, e.region) == Some(e.groups()) {
                    out.entry(e.content_hash).or_insert(*e);
                }
            }
        }
        out
    }

    /// A background scrub round, when one is due and none is running: the next
    /// `SCRUB_BYTES_PER_ROUND_MAX` of stored content after where the last round stopped
    /// (wrapping around), checked on the blocking pool.
    pub(crate) fn scrub_round(&mut self) {
        let now = now_ms().0;
        if self.scrub.running.load(Ordering::Acquire)
            || now < self.scrub.last_round_ms.saturating_add(SCRUB_INTERVAL_MS)
        {
            return;
        }
        self.scrub.last_round_ms = now;
        let all = self.stored_whole();
        let from = match self.scrub.after.take() {
            Some(h) => std::ops::Bound::Excluded(h),
            None => std::ops::Bound::Unbounded,
        };
        let mut round = Vec::new();
        let mut bytes = 0u64;
        for e in all
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, e)| *e)
        {
            if bytes >= SCRUB_BYTES_PER_ROUND_MAX {
                break;
            }
            bytes += e.bytes;
            round.push(e);
        }
        // None when the end is reached: the next round starts over.
        self.scrub.after = round.last().map(|e| e.content_hash);
        if round.is_empty() {
            return;
        }
        self.scrub.running.store(true, Ordering::Release);
        let guard = RoundGuard(Arc::clone(&self.scrub.running));
        let (store, work) = (self.store.clone(), self.data.work.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            match crate::scrub::check(&store, &round) {
                Ok((_, damaged)) => {
                    for d in damaged {
                        let _ = work.blocking_send(Work::Damaged(d));
                    }
                }
                Err(e) => {
                    let _ = work.blocking_send(Work::Failed(format!("scrubbing: {e:#}")));
                }
            }
        });
    }

    /// Checks every partition stored whole now (off the event loop), reports what does not
    /// verify to the loop, and answers with what was checked.
    pub(crate) fn scrub_all(&self, reply: oneshot::Sender<Result<ScrubReport>>) {
        let entries: Vec<PartitionEntry> = self.stored_whole().into_values().collect();
        let (store, work) = (self.store.clone(), self.data.work.clone());
        tokio::spawn(async move {
            let checked =
                tokio::task::spawn_blocking(move || crate::scrub::check(&store, &entries)).await;
            let result = match checked {
                Ok(Ok((report, damaged))) => {
                    for d in damaged {
                        let _ = work.send(Work::Damaged(d)).await;
                    }
                    Ok(report)
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow!("scrub task failed: {e}")),
            };
            let _ = reply.send(result);
        });
    }
}
