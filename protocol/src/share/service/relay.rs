//! Acts on their way between the parties: held in transit at each hop (persisted first)
//! until the next acknowledges, and routed along the tree path to the nearest region on it
//! that is connected now (skip-level when the next hop is down). Same service as
//! [`super::ShareService`].

use std::sync::Arc;

use backflow_topology::RegionCode;

use super::{ShareOutput, ShareService, ShareStorageOp, Transit};
use crate::manifest::Hash;
use crate::share::{ShareMsg, SignedShareAct};
use crate::time::UnixMs;

impl ShareService {
    /// Holds `act` for its next hop (persisted first), and sends it.
    pub(super) fn route(&mut self, now: UnixMs, act: Arc<SignedShareAct>) {
        let id = act.id();
        let hop = self.next_hop(act.body.to);
        self.out
            .push_back(ShareOutput::Storage(ShareStorageOp::PutTransit(
                Arc::clone(&act),
            )));
        self.transit.insert(
            id,
            Transit {
                act: Arc::clone(&act),
                attempts: 0,
            },
        );
        self.timers.set_send(id, Some(now.plus_ms(self.retry_ms)));
        self.send(hop, ShareMsg::Act(act));
    }

    /// Region `region` was admitted (`true`) or its connection went away.
    pub fn handle_reachable(&mut self, region: RegionCode, up: bool) {
        if !up {
            self.reachable.remove(&region);
            return;
        }
        self.reachable.insert(region);
        self.send_rights_to(region);
        // Whatever waits for this hop goes at once (at the next tick), backoff reset.
        let waiting: Vec<Hash> = self
            .transit
            .iter()
            .filter(|(_, t)| self.next_hop(t.act.body.to) == region)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(t) = self.transit.get_mut(&id) {
                t.attempts = 0;
            }
            self.timers.set_send(id, Some(UnixMs::ZERO));
        }
    }

    /// Where an act for `to` goes next: the nearest region on the tree path toward it (up to
    /// the lowest common ancestor, then down) that is connected now; if none is, the
    /// neighbour on the path (the act waits for it, retransmitted).
    pub(super) fn next_hop(&self, to: RegionCode) -> RegionCode {
        let me = self.region;
        let lca = me.lowest_common_ancestor(to);
        let up = me.ancestors().take_while(move |a| a.level() >= lca.level());
        let down = to
            .path()
            .into_iter()
            .filter(move |r| r.level() > lca.level());
        let mut path = up.chain(down).filter(|r| *r != me);
        let first = path.next();
        first
            .into_iter()
            .chain(path)
            .find(|r| self.reachable.contains(r))
            .or(first)
            .unwrap_or(RegionCode::NATIONAL)
    }
}
