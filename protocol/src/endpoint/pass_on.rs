//! "No third party" at the requester's node (Art. 25: 不得擅自将获得的政务数据提供给第三方):
//! before this node publishes a return-flow version (Art. 24) or delivers a grant of its own
//! (Art. 22), every partition is checked against the granted data it holds as a requester —
//! the partitions of the delivery manifests ([`crate::manifest::Manifest::delivers`]) of its
//! grants. A partition with the content of a grant's delivery is refused unless the grant's
//! provider consented to passing it on to that recipient ([`crate::share::ShareCase::may_pass_on`]).
//!
//! Recognised by content hash only: the data as it was delivered (an export published or
//! delivered again). A subset, reordered or re-typed records, or a copy carried outside
//! Backflow are not recognised — the node refuses to carry what it can see is granted data, no
//! more. Content this node also holds from a return-flow version it received is not granted
//! data here: return-flow data carries no conditions (Art. 24: 不得设置额外的限制条件).

use super::Endpoint;
use crate::manifest::{Hash, PartitionEntry};
use crate::share::{Recipient, UsageRefusal};
use crate::time::UnixMs;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// Checks passing `entries` on to `to` at `now`: `Err` naming the grant and Art. 25 for
    /// the first partition that is granted data here and may not go to `to`.
    pub fn check_pass_on(
        &self,
        now: UnixMs,
        entries: &[PartitionEntry],
        to: &Recipient,
    ) -> Result<(), UsageRefusal> {
        for (request, content) in self.granted_content() {
            if !entries.iter().any(|e| e.content_hash == content) {
                continue;
            }
            if self.returned_content(&content) {
                continue;
            }
            if let Some(case) = self.share.case(&request) {
                self.share.usable(case, now)?;
                case.may_pass_on(now, to)?;
            }
        }
        Ok(())
    }

    /// (request, content hash) of every partition this node holds as the requester of a
    /// grant's delivery.
    fn granted_content(&self) -> Vec<(Hash, Hash)> {
        let me = self.region();
        let mut out = Vec::new();
        for (_, held) in self.rf.held() {
            let Some(record) = self.rf.record(&held.hash) else {
                continue;
            };
            let Some(request) = record.manifest.manifest.delivers else {
                continue;
            };
            let mine = self
                .share
                .case(&request)
                .is_some_and(|c| c.request.requester.region == me);
            if mine {
                out.extend(record.entries.iter().map(|e| (request, e.content_hash)));
            }
        }
        out
    }

    /// Whether `content` is also held here from a return-flow version this node received
    /// (not one it published itself: its own publish of granted data is what is checked).
    fn returned_content(&self, content: &Hash) -> bool {
        self.rf.held().any(|(_, held)| {
            self.rf.record(&held.hash).is_some_and(|r| {
                !r.published
                    && !r.manifest.manifest.is_delivery()
                    && r.entries.iter().any(|e| e.content_hash == *content)
            })
        })
    }
}
