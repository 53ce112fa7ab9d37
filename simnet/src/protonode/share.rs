//! The node's part in the sharing scenario: its departments set up at start, their scripts
//! run (requests filed, acts taken), and share events handed to its
//! [`ShareActor`](crate::share_actor::ShareActor).

use std::sync::Arc;

use backflow_protocol::share::ShareEvent;

use super::ProtoNode;
use crate::engine::Ctx;
use crate::protomsg::ProtoMsg;

impl ProtoNode {
    /// The sharing scenario's part of a share event: schedule the parties' next acts, count.
    pub(super) fn on_share_event(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, e: ShareEvent) {
        let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_ref()) else {
            return;
        };
        match e {
            ShareEvent::CaseChanged { request, .. } => {
                if let Some(case) = ep.share_service().case(&request) {
                    actor.on_case_changed(ctx.now_us(), case);
                }
            }
            ShareEvent::Overdue {
                request,
                article,
                due,
            } => actor.on_overdue(request, article, due, ctx.now_us()),
            ShareEvent::ActRejected { from, error, .. } => actor.on_rejected(from, &error),
            // No simnet scenario suspends a department's sharing rights or corrects returned
            // data.
            ShareEvent::RightsChanged { .. }
            | ShareEvent::RightsRejected { .. }
            | ShareEvent::ReturnedCorrectionChanged { .. } => {}
        }
    }

    /// The sharing scenario at start (and restart): departments' keys, the providers'
    /// catalog entries (at start only).
    pub(super) fn share_start(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, publish: bool) {
        let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
            return;
        };
        let now = self.world.now_ms(ctx.now_us());
        let plan = Arc::clone(actor.plan());
        ep.set_calendar(plan.calendar.clone());
        for &d in plan.at_node.get(&self.me).map_or(&[][..], |v| v.as_slice()) {
            let name = plan.departments[d as usize].name;
            if let Err(e) = ep.add_department(now, name, plan.department_key(d)) {
                actor.script_error(format!("adding department {name} at {}: {e}", self.me));
            }
            if publish && plan.departments[d as usize].provider {
                if let Err(e) = ep.publish_catalog_entries(now, name, vec![plan.entry(d)]) {
                    actor.script_error(format!("publishing {name}'s entry at {}: {e}", self.me));
                }
            }
        }
    }

    /// The sharing scenario's scripts: file what is due, act as scheduled.
    pub(super) fn share_scripts(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now_us = ctx.now_us();
        let now = self.world.now_ms(now_us);
        let Some(actor) = self.share.as_mut() else {
            return;
        };
        let plan = Arc::clone(actor.plan());
        for i in actor.due_filings(now_us) {
            let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
                return;
            };
            let attribute = plan.attribute(plan.requests[i as usize].provider);
            match ep.file_share_request(now, plan.request(i), attribute) {
                Ok(_) => actor.filed(),
                Err(e) => actor.script_error(format!("filing request {i}: {e}")),
            }
            self.drain(ctx);
        }
        let Some(actor) = self.share.as_mut() else {
            return;
        };
        for (i, action) in actor.due_actions(now_us) {
            let (Some(actor), Some(ep)) = (self.share.as_mut(), self.ep.as_mut()) else {
                return;
            };
            let (department, act) = actor.act_for(i, action);
            let name = plan.departments[department as usize].name;
            let id = plan.requests[i as usize].id;
            match ep.share_act(now, &id, name, act) {
                Ok(_) => actor.acted(),
                Err(e) => actor.script_error(format!("request {i}, {action:?}: {e}")),
            }
            self.drain(ctx);
        }
    }
}
