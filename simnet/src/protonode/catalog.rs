//! The node's catalog changes in the catalog scenarios: the churn department's changes as
//! they fall due, and the unified-catalog scenario's departments publishing at once.

use std::sync::Arc;

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, SharingAttribute, SharingMethod, SignedCatalogUpdate, UpdateFrequency,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;

use super::ProtoNode;
use crate::engine::{Ctx, Observation};
use crate::protomsg::ProtoMsg;
use crate::world::CHURN_DEPARTMENT;

fn churn_update(me: RegionCode, seq: u64, now: UnixMs) -> CatalogUpdate {
    let entry = CatalogEntry {
        id: format!("households-{me}"),
        name: "Registered households".to_string(),
        data_items: vec![DataItem {
            name: "household_id".to_string(),
            data_type: DataType::Text,
            description: "Household register number".to_string(),
        }],
        provider: CHURN_DEPARTMENT.to_string(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "population".to_string(),
        grade: DataGrade::General,
    };
    CatalogUpdate {
        origin: CatalogOrigin {
            region: me,
            department: CHURN_DEPARTMENT.to_string(),
        },
        seq,
        issued_at: now,
        changes: vec![if seq == 1 {
            CatalogChange::Add(Arc::new(entry))
        } else {
            CatalogChange::Update(Arc::new(entry))
        }],
    }
}

impl ProtoNode {
    /// The unified-catalog scenario: once due, every department publishes its catalog.
    fn publish_bulk(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let (Some(ep), Some(b)) = (self.ep.as_mut(), self.bulk.as_mut()) else {
            return;
        };
        if b.at.is_none_or(|t| t > ctx.now_us()) {
            return;
        }
        b.at = None;
        let now = self.world.now_ms(ctx.now_us());
        for d in 0..b.plan.departments {
            let update = b.plan.update(self.me, d, now);
            match SignedCatalogUpdate::sign(update, ep.identity()) {
                Ok(signed) => {
                    if ep.submit_catalog(now, signed).is_err() {
                        ctx.observe(Observation::Note("catalog_submit_failed"));
                    }
                }
                Err(_) => ctx.observe(Observation::Note("catalog_sign_failed")),
            }
        }
    }

    pub(super) fn submit_due_changes(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        self.publish_bulk(ctx);
        let Some(ep) = self.ep.as_mut() else {
            return;
        };
        let now_us = ctx.now_us();
        while self.pending_changes.last().is_some_and(|&t| t <= now_us) {
            self.pending_changes.pop();
            let now = self.world.now_ms(now_us);
            let origin = CatalogOrigin {
                region: self.me,
                department: CHURN_DEPARTMENT.to_string(),
            };
            let seq = ep.catalog_sync().next_seq(&origin);
            match SignedCatalogUpdate::sign(churn_update(self.me, seq, now), ep.identity()) {
                Ok(signed) => {
                    if ep.submit_catalog(now, signed).is_err() {
                        ctx.observe(Observation::Note("catalog_submit_failed"));
                    }
                }
                Err(_) => ctx.observe(Observation::Note("catalog_sign_failed")),
            }
        }
    }
}
