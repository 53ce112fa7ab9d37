//! The engine's side of the node: start, messages, timers, crash and restart, driving the
//! endpoint and carrying out its outputs.

use backflow_protocol::endpoint::Saved;
use backflow_protocol::return_flow::ReturnFlowMsg;
use backflow_protocol::share::ShareMsg;
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::Message;
use backflow_protocol::Endpoint;
use backflow_topology::RegionCode;

use super::{own_certs, ProtoNode};
use crate::engine::{Ctx, Observation, SimNode};
use crate::protomsg::ProtoMsg;
use crate::ranges::RangeSet;
use crate::time::Micros;

impl SimNode for ProtoNode {
    type Msg = ProtoMsg;

    fn on_start(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        let publish = std::mem::take(&mut self.to_publish);
        if publish.len() > 1 {
            ctx.observe(Observation::Note("publish_split_manifests"));
        }
        for (signed, entries) in publish {
            // The publisher holds every partition in full.
            for e in &entries {
                if e.bytes > 0 {
                    self.store
                        .stored
                        .insert(e.region, RangeSet::full(e.groups()));
                    self.store.content.insert(e.region, e.content_hash);
                }
                self.stored_bytes += e.bytes;
            }
            ctx.observe(Observation::StoredBytes(self.stored_bytes));
            let published = self
                .ep
                .as_mut()
                .is_some_and(|ep| ep.publish(now, signed, entries).is_ok());
            if !published {
                ctx.observe(Observation::Note("publish_failed"));
            }
        }
        self.submit_due_changes(ctx);
        self.share_start(ctx, true);
        self.drain(ctx);
        self.share_scripts(ctx);
        // After the drain: the published transfer records are in the store now.
        if self.is_publisher() {
            ctx.observe(Observation::DataComplete);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, ProtoMsg>, from: RegionCode, msg: ProtoMsg) {
        let now = self.world.now_ms(ctx.now_us());
        let Some(ep) = self.ep.as_ref() else {
            return;
        };
        // First frame on a connection this process has not admitted: the handshake first.
        if ep.region_of(&from) != Some(from) && !self.connect(ctx, from) {
            self.drain(ctx);
            return;
        }
        match msg {
            ProtoMsg::Chunk { manifest, parts } => self.on_chunk(ctx, now, from, manifest, parts),
            ProtoMsg::ReturnFlow(m) => {
                if let ReturnFlowMsg::Receipt(r) = &m {
                    // A receipt recomputes the aggregate over every partition of the transfer.
                    let partitions = self
                        .store
                        .records
                        .get(&r.receipt.manifest)
                        .map_or(0, |rec| rec.entries.len() as u64);
                    let per = ctx.costs().receipt_cpu_ns_per_partition;
                    ctx.charge_cpu_ns(per.saturating_mul(partitions));
                }
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::ReturnFlow(m));
                }
            }
            ProtoMsg::Catalog(m) => {
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Catalog(m));
                }
            }
            ProtoMsg::Revocations(m) => {
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Revocations(m));
                }
            }
            ProtoMsg::Share { msg, hops } => {
                // The sharing scenario counts hops: an act for this node arrived, or one to
                // forward (its hops are remembered while it is held).
                let relayed = match (&msg, self.share.as_mut()) {
                    (ShareMsg::Act(act), Some(actor)) => {
                        let id = actor.act_id(act);
                        (!actor.on_act_arrived(act, id, hops)).then_some(id)
                    }
                    _ => None,
                };
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_message(now, from, Message::Share(msg));
                }
                self.drain(ctx);
                if let (Some(id), Some(actor)) = (relayed, self.share.as_mut()) {
                    actor.after_relay(&id, self.store.share_transit.contains_key(&id));
                }
            }
        }
        self.drain(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        self.submit_due_changes(ctx);
        if let Some(ep) = self.ep.as_mut() {
            ep.handle_timeout(now);
        }
        self.drain(ctx);
        self.share_scripts(ctx);
    }

    fn on_crash(&mut self) {
        // Everything in memory is gone — the endpoint with its peers and trust store — and
        // the durable store stays.
        self.ep = None;
        self.certs_verified.clear();
    }

    fn on_restart(&mut self, ctx: &mut Ctx<'_, ProtoMsg>) {
        let now = self.world.now_ms(ctx.now_us());
        // The process verifies its own chain again (its memo died with it).
        self.certs_verified = own_certs(self.me);
        let verify = ctx.costs().signature_verify_cpu_us;
        ctx.charge_cpu_ns(verify.saturating_mul(self.certs_verified.len() as u64 * 1_000));
        let config = self.world.endpoint_config(self.ix);
        let ep = match Endpoint::new(now, config.clone(), self.store.saved(self.me)) {
            Ok((ep, report)) => {
                for _ in &report.failed {
                    ctx.observe(Observation::Note("restore_failed"));
                }
                for _ in 0..report.receipts_skipped {
                    ctx.observe(Observation::Note("receipt_restore_skipped"));
                }
                Some(ep)
            }
            Err(_) => {
                // The store does not replay (it always does here): start empty rather than
                // not at all, and say so.
                ctx.observe(Observation::Note("restore_failed"));
                Endpoint::new(now, config, Saved::default())
                    .ok()
                    .map(|(ep, _)| ep)
            }
        };
        self.ep = ep;
        self.share_start(ctx, false);
        // Retransmissions are due after a restart.
        if let Some(ep) = self.ep.as_mut() {
            ep.handle_timeout(now);
        }
        self.submit_due_changes(ctx);
        self.drain(ctx);
        self.share_scripts(ctx);
    }

    fn next_timer(&self) -> Option<Micros> {
        // A past instant (the protocol's `UnixMs::ZERO`, "now") is 0 here: the engine runs
        // it at once.
        let to_us = |t: UnixMs| self.world.to_us(t);
        [
            self.ep.as_ref().and_then(Endpoint::poll_timeout).map(to_us),
            self.pending_changes.last().copied(),
            self.bulk.as_ref().and_then(|b| b.at),
            self.share.as_ref().and_then(|a| a.next_wakeup()),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t <= self.world.timer_cap_us)
        .min()
    }
}
