//! Correction requests against returned data (回流数据校核申请, Art. 26 with Art. 24) where they
//! meet the data plane: a department files against the return-flow version this node holds,
//! and a publisher answers "corrected" only with a later version it published — which return
//! flow then carries to every holder, moving only the partitions it changed. The requests
//! themselves live in the sharing service ([`crate::share::ReturnedCorrection`]).

use super::Endpoint;
use crate::catalog::CatalogOrigin;
use crate::manifest::{DatasetId, Hash};
use crate::share::{
    Applied, CorrectionItem, ReturnedCorrectionAnswer, ReturnedCorrectionRequest, ShareRejection,
};
use crate::time::UnixMs;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// `department` of this node files a correction request against `dataset`, a return-flow
    /// dataset this node holds, naming `items` of the version held; returns its id. The
    /// publisher answers within 10 working days.
    pub fn file_returned_correction(
        &mut self,
        now: UnixMs,
        department: &str,
        dataset: DatasetId,
        items: Vec<CorrectionItem>,
    ) -> Result<Hash, ShareRejection> {
        let held = self
            .rf
            .held()
            .find(|(d, _)| **d == dataset)
            .map(|(_, h)| *h)
            .filter(|h| !self.rf.is_delivery(&h.hash));
        let Some(held) = held else {
            return Err(ShareRejection::ReturnedDataNotHeld {
                dataset: dataset.to_string().chars().take(128).collect(),
            });
        };
        let request = ReturnedCorrectionRequest {
            requester: CatalogOrigin {
                region: self.rf.region(),
                department: department.to_string(),
            },
            dataset,
            version: held.version,
            manifest: held.hash,
            items,
            filed_at: now,
        };
        let identity = self.rf.identity();
        self.share.file_returned_correction(now, identity, request)
    }

    /// The publisher's `department` of this node answers correction request `id`: corrected
    /// (`corrected`: the version this node publishes now carries the correction, and it must
    /// be later than the one complained of), or not an error, for `reason`.
    pub fn answer_returned_correction(
        &mut self,
        now: UnixMs,
        id: &Hash,
        department: &str,
        corrected: bool,
        reason: String,
        approved_by: String,
    ) -> Result<Applied, ShareRejection> {
        let c = self
            .share
            .returned_correction(id)
            .ok_or(ShareRejection::UnknownRequest)?;
        let corrected_in = if corrected {
            let r = &c.request;
            let published = self
                .rf
                .held()
                .find(|(d, _)| **d == r.dataset)
                .map(|(_, h)| h.version)
                .filter(|v| *v > r.version);
            if published.is_none() {
                return Err(ShareRejection::CorrectedVersionNotPublished { version: r.version });
            }
            published
        } else {
            None
        };
        let answer = ReturnedCorrectionAnswer {
            at: now,
            corrected_in,
            reason,
            approved_by,
        };
        let identity = self.rf.identity();
        self.share
            .answer_returned_correction(now, identity, id, department, answer)
    }
}
