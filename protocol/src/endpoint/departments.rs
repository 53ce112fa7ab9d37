//! What a node's departments and its data-sharing authority do on this node: share requests
//! (Arts. 20–22) through the [`ShareService`], departments' keys ([`crate::department`]),
//! catalog review and update obligations (Arts. 16–17, [`CatalogReview`]), and catalog
//! versions the authority publishes. The network side stays in `endpoint.rs`.

use std::sync::Arc;

use super::Endpoint;
use crate::calendar::WorkingCalendar;
use crate::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, SharingAttribute,
    SignedCatalogUpdate,
};
use crate::catalog_review::{
    CatalogReview, Decision as ReviewDecision, DutyChange, ReviewError, ReviewState,
};
use crate::catalog_sync::{CatalogSync, CatalogSyncError};
use crate::limits::{CATALOG_UPDATE_BYTES_MAX, CHANGES_PER_UPDATE_MAX};
use crate::manifest::Hash;
use crate::share::{
    Applied as ShareApplied, RightsError, RightsOrder, ShareAct, ShareRejection, ShareRequest,
    ShareService, SignedRightsAct,
};
use crate::time::UnixMs;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// The sharing service (share requests this node is a party to).
    pub fn share_service(&self) -> &ShareService {
        &self.share
    }

    /// Adds the operator's calendar years (see [`WorkingCalendar::add_file`]) to the
    /// official ones the endpoint starts with.
    pub fn set_calendar(&mut self, calendar: WorkingCalendar) {
        self.share.set_calendar(calendar);
    }

    /// A department of this node files a share request (Art. 20); see [`ShareService::file`].
    pub fn file_share_request(
        &mut self,
        now: UnixMs,
        request: ShareRequest,
        attribute: SharingAttribute,
    ) -> Result<Hash, ShareRejection> {
        let identity = self.rf.identity();
        let cs = &self.cs;
        let lookup = |origin: &CatalogOrigin, id: &str| catalog_attribute(cs, origin, id);
        self.share.file(now, identity, request, attribute, &lookup)
    }

    /// Takes the key of this node's department `name` and certifies it under the jurisdiction
    /// key (at every start: the shell keeps the keys). Acts of a department not added here are
    /// refused ([`crate::department::DepartmentError::NotHeld`]).
    pub fn add_department(
        &mut self,
        now: UnixMs,
        name: &str,
        key: ed25519_dalek::SigningKey,
    ) -> Result<(), crate::department::DepartmentError> {
        let identity = self.rf.identity();
        self.share.add_department(now, identity, name, key)
    }

    /// The authority's catalog reviews and the update obligations (Arts. 16–17).
    pub fn catalog_review(&self) -> &CatalogReview {
        &self.review
    }

    /// `department` of this node submits catalog entries to its same-level authority's
    /// review (Art. 16); they take effect only when approved ([`Self::decide_catalog_review`]).
    /// Fulfils the department's open duty changes (Art. 17 ¶1).
    pub fn submit_catalog_for_review(
        &mut self,
        now: UnixMs,
        department: &str,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64, ReviewError> {
        let origin = CatalogOrigin {
            region: self.region(),
            department: department.to_string(),
        };
        let calendar = self.share.calendar();
        self.review.submit(now, calendar, &origin, entries)
    }

    /// The authority decides submission `id`; an approval publishes its entries at once — a
    /// catalog version signed by this node enters the log and syncs upward — and returns its
    /// sequence number.
    pub fn decide_catalog_review(
        &mut self,
        now: UnixMs,
        id: u64,
        decision: ReviewDecision,
        reviewer: &str,
    ) -> Result<Option<u64>, CatalogReviewFailure> {
        // Checked before anything is recorded: the version must apply to the catalog as it is.
        let pending = self
            .review
            .submissions()
            .find(|s| s.id == id)
            .cloned()
            .ok_or(ReviewError::Unknown { id })?;
        let publish = decision == ReviewDecision::Approve && pending.state == ReviewState::Pending;
        let update = publish
            .then(|| self.catalog_version(now, &pending.department, &pending.entries))
            .transpose()?;
        let decided = self.review.decide(now, id, decision, reviewer)?;
        debug_assert_eq!(decided.state == ReviewState::Approved, update.is_some());
        update.map(|u| self.submit_version(now, u)).transpose()
    }

    /// The authority publishes `department`'s `entries` itself (its own act, reviewed in the
    /// same step): a catalog version signed by this node enters the log and syncs upward.
    /// Returns its sequence number.
    pub fn publish_catalog_entries(
        &mut self,
        now: UnixMs,
        department: &str,
        entries: Vec<CatalogEntry>,
    ) -> Result<u64, CatalogReviewFailure> {
        let entries: Vec<Arc<CatalogEntry>> = entries.into_iter().map(Arc::new).collect();
        // More entries than one version carries (its count and bytes limits) go as
        // consecutive versions, in order: a department's whole catalog file in one call. The
        // first version refused stops the rest; the error says how many took effect.
        let mut seq = None;
        let mut done = 0;
        for part in version_parts(&entries) {
            let result = self
                .catalog_version(now, department, part)
                .and_then(|update| self.submit_version(now, update));
            match result {
                Ok(s) => {
                    seq = Some(s);
                    done += part.len();
                }
                Err(error) if done > 0 => {
                    return Err(CatalogReviewFailure::Partly {
                        done,
                        total: entries.len(),
                        error: Box::new(error),
                    })
                }
                Err(error) => return Err(error),
            }
        }
        match seq {
            Some(s) => Ok(s),
            // No entries: the version says why.
            None => {
                let update = self.catalog_version(now, department, &entries)?;
                self.submit_version(now, update)
            }
        }
    }

    fn submit_version(
        &mut self,
        now: UnixMs,
        update: SignedCatalogUpdate,
    ) -> Result<u64, CatalogReviewFailure> {
        let seq = update.update.seq;
        self.cs.submit(now, &mut self.trust, update)?;
        Ok(seq)
    }

    /// A catalog version of `department` putting `entries` in force (added, or updating the
    /// entries of the same id), signed by this node.
    fn catalog_version(
        &self,
        now: UnixMs,
        department: &str,
        entries: &[Arc<CatalogEntry>],
    ) -> Result<SignedCatalogUpdate, CatalogReviewFailure> {
        let origin = CatalogOrigin {
            region: self.region(),
            department: department.to_string(),
        };
        let changes = entries
            .iter()
            .map(|e| {
                if self.cs.has_entry(&origin, &e.id) {
                    CatalogChange::Update(Arc::clone(e))
                } else {
                    CatalogChange::Add(Arc::clone(e))
                }
            })
            .collect();
        let update = CatalogUpdate {
            seq: self.cs.next_seq(&origin),
            origin,
            issued_at: now,
            changes,
        };
        SignedCatalogUpdate::sign(update, self.rf.identity())
            .map_err(|e| CatalogReviewFailure::Sign(e.to_string()))
    }

    /// Records a change of law or of `department`'s duties on `occurred` (Art. 17 ¶1).
    pub fn record_duty_change(
        &mut self,
        department: &str,
        occurred: crate::calendar::Date,
        basis: &str,
    ) -> Result<u64, ReviewError> {
        let calendar = self.share.calendar();
        self.review
            .record_duty_change(calendar, department, occurred, basis)
    }

    /// Extends a duty change's update period once, with the authority's consent.
    pub fn extend_catalog_update(
        &mut self,
        id: u64,
        days: u32,
        consent: &str,
    ) -> Result<DutyChange, ReviewError> {
        let calendar = self.share.calendar();
        self.review.extend_update(calendar, id, days, consent)
    }

    /// `department` of this node acts on a share request; see [`ShareService::act`].
    pub fn share_act(
        &mut self,
        now: UnixMs,
        request: &Hash,
        department: &str,
        act: ShareAct,
    ) -> Result<ShareApplied, ShareRejection> {
        let identity = self.rf.identity();
        let dispose = matches!(act, ShareAct::Dispose { .. });
        let applied = self.share.act(now, identity, request, department, act)?;
        if dispose {
            // Disposed of (Art. 27 ¶1): the delivered content goes; the case keeps the record.
            let manifest = self
                .share
                .case(request)
                .and_then(|c| c.delivery.as_ref())
                .and_then(|d| d.manifest);
            if let Some(m) = manifest {
                self.rf.drop_delivery(&m);
            }
        }
        Ok(applied)
    }

    /// This node's authority (政务数据共享主管部门) suspends or reinstates the sharing rights
    /// of `department`, a department of this region or one below it (Art. 27 ¶2); see
    /// [`crate::share::SharingRights`]. In force here at once, flooded to every node. A
    /// suspended requester's delivery connections close at the next tick.
    pub fn order_rights(
        &mut self,
        now: UnixMs,
        department: CatalogOrigin,
        order: RightsOrder,
    ) -> Result<Arc<SignedRightsAct>, RightsError> {
        let identity = self.rf.identity();
        self.share
            .order_rights(now, &mut self.trust, identity, department, order)
    }

    /// This node's authority (政务数据共享主管部门) coordinates dispute `ordinal` on `request`
    /// (Art. 28): settled with `outcome`, or referred to its people's government (`refer`).
    /// Only the parties' lowest common superior may; both parties' nodes get the act.
    pub fn coordinate_dispute(
        &mut self,
        now: UnixMs,
        request: &Hash,
        ordinal: u32,
        outcome: String,
        refer: bool,
    ) -> Result<ShareApplied, ShareRejection> {
        let identity = self.rf.identity();
        let act = ShareAct::Coordinate {
            ordinal,
            outcome,
            refer,
        };
        self.share.coordinate(now, identity, request, act)
    }
}

/// Why a review decision (or the authority's own catalog publication) was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CatalogReviewFailure {
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("the entries do not apply to the catalog: {0}")]
    Catalog(#[from] CatalogSyncError),
    #[error("signing the catalog version: {0}")]
    Sign(String),
    #[error("the first {done} of {total} entries took effect; the rest did not: {error}")]
    Partly {
        done: usize,
        total: usize,
        error: Box<CatalogReviewFailure>,
    },
}

/// `entries` cut into runs that each fit one catalog version: at most
/// [`CHANGES_PER_UPDATE_MAX`] changes and half of [`CATALOG_UPDATE_BYTES_MAX`] of entries (the
/// rest is the version's own fields and signature).
fn version_parts(entries: &[Arc<CatalogEntry>]) -> Vec<&[Arc<CatalogEntry>]> {
    let bytes_max = CATALOG_UPDATE_BYTES_MAX / 2;
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in entries.iter().enumerate() {
        let len = crate::codec::encoded_len(&**e);
        if i > start && (i - start == CHANGES_PER_UPDATE_MAX || bytes + len > bytes_max) {
            parts.push(&entries[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < entries.len() {
        parts.push(&entries[start..]);
    }
    parts
}

/// The sharing attribute of a department's entry in this node's catalog, if held.
pub(super) fn catalog_attribute(
    cs: &CatalogSync,
    origin: &CatalogOrigin,
    id: &str,
) -> Option<SharingAttribute> {
    // The provider is one of this node's own departments: its entries are held whole.
    cs.local_entry(origin, id).map(|e| e.sharing.clone())
}
