//! Ledger inspection (查阅, Art. 29) through the endpoint, which knows who a peer is, which
//! grants this node holds and the head its parent witnessed: queries and answers are routed
//! hop by hop along the tree, the target checks who asks and hands the shell what to read,
//! and the inspector checks every answer's proofs before its shell sees an entry. The rules
//! and the checks are [`crate::ledger::inspection`]'s; reading the ledger is the shell's.

use backflow_topology::RegionCode;

use super::{Endpoint, Event, Output};
use crate::ledger::inspection::{
    check_page, may_inspect, InspectAnswer, InspectPage, InspectRefusal, InspectScope, Inspected,
    InspectedRecords, InspectionAsked, SignedInspectQuery, INSPECT_CLOCK_SKEW_MS_MAX,
    INSPECT_HOPS_MAX,
};
use crate::ledger::witnessing::{LedgerEvent, LedgerMsg};
use crate::time::UnixMs;
use crate::wire::Message;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// Asks the node of `target` for a page of its records (`scope` from entry `from`, at
    /// most `limit`): the result comes as [`LedgerEvent::Inspected`] with the returned id —
    /// within [`crate::ledger::inspection::INSPECT_TIMEOUT_MS`] at the latest.
    pub fn inspect_ledger(
        &mut self,
        now: UnixMs,
        target: RegionCode,
        scope: InspectScope,
        from: u64,
        limit: u32,
    ) -> Result<u64, InspectRefusal> {
        let me = self.region();
        if target == me {
            return Err(InspectRefusal::NotAllowed {
                inspector: me,
                why: "this node's own ledger is read with `ledger show`".into(),
            });
        }
        // What the target would refuse is refused here already, where it is clearer.
        may_inspect(me, target, &scope, self.grant_parties(&scope))?;
        let hop = self
            .inspection_hop(target)
            .ok_or(InspectRefusal::Unreachable(target))?;
        let query = self
            .inspections
            .start(now, me, target, scope, from, limit)?;
        let id = query.id;
        let signed = SignedInspectQuery::sign(query, self.rf.identity());
        self.send_inspection(
            hop,
            LedgerMsg::Inspect {
                hops: 0,
                query: Box::new(signed),
            },
        );
        Ok(id)
    }

    /// The shell read what [`LedgerEvent::InspectionAsked`] `id` asked for (or could not):
    /// the page goes back to `inspector` with this node's chain.
    pub fn answer_inspection(
        &mut self,
        id: u64,
        inspector: RegionCode,
        result: Result<InspectPage, String>,
    ) {
        let chain = self.rf.identity().chain.clone();
        let answer = InspectAnswer {
            id,
            inspector,
            target: self.region(),
            result: result
                .map(|page| (page, chain))
                .map_err(InspectRefusal::Failed),
        };
        self.route_inspection_answer(0, answer);
    }

    /// The admitted tree neighbour an inspection message for `to` goes to: the nearest region
    /// on the tree path toward it (up to the lowest common ancestor, then down) that is
    /// connected now — never a connection opened for a grant's delivery.
    fn inspection_hop(&self, to: RegionCode) -> Option<(RegionCode, P)> {
        let me = self.region();
        let lca = me.lowest_common_ancestor(to);
        let up = me.ancestors().take_while(|a| a.level() >= lca.level());
        let down = to.path().into_iter().filter(|r| r.level() > lca.level());
        up.chain(down).filter(|r| *r != me).find_map(|r| {
            let peer = self.peer_of(r)?;
            let tree = self.peers.get(&peer).is_some_and(|p| !p.by_grant);
            tree.then_some((r, peer))
        })
    }

    /// The regions of the provider and the requester of the grant `scope` names, if this node
    /// knows that grant.
    fn grant_parties(&self, scope: &InspectScope) -> Option<(RegionCode, RegionCode)> {
        match scope {
            InspectScope::Grant(g) => self
                .share
                .case(g)
                .map(|c| (c.request.provider.region, c.request.requester.region)),
            InspectScope::All => None,
        }
    }

    fn send_inspection(&mut self, (to, peer): (RegionCode, P), msg: LedgerMsg) {
        self.out.push_back(Output::Send {
            to,
            peer: Some(peer),
            msg: Message::Ledger(msg),
        });
    }

    fn route_inspection_answer(&mut self, hops: u8, answer: InspectAnswer) {
        // An answer nobody on the way can take is dropped: the inspector times out.
        if let Some(hop) = self.inspection_hop(answer.inspector) {
            let answer = Box::new(answer);
            self.send_inspection(hop, LedgerMsg::Inspected { hops, answer });
        }
    }

    pub(super) fn handle_inspect(&mut self, now: UnixMs, hops: u8, query: SignedInspectQuery) {
        if hops >= INSPECT_HOPS_MAX {
            return;
        }
        let me = self.region();
        let q = &query.query;
        if q.target != me {
            match self.inspection_hop(q.target) {
                Some(hop) => {
                    let query = Box::new(query);
                    let hops = hops + 1;
                    self.send_inspection(hop, LedgerMsg::Inspect { hops, query });
                }
                None => {
                    let answer = InspectAnswer {
                        id: q.id,
                        inspector: q.inspector,
                        target: q.target,
                        result: Err(InspectRefusal::Unreachable(q.target)),
                    };
                    self.route_inspection_answer(0, answer);
                }
            }
            return;
        }
        let checked = self.check_inspect(now, &query);
        let q = query.query;
        match checked {
            Ok(head) => {
                self.out
                    .push_back(Output::Event(Event::Ledger(LedgerEvent::InspectionAsked(
                        InspectionAsked {
                            id: q.id,
                            inspector: q.inspector,
                            scope: q.scope,
                            from: q.from,
                            limit: q.limit,
                            head,
                        },
                    ))))
            }
            Err(refusal) => {
                let answer = InspectAnswer {
                    id: q.id,
                    inspector: q.inspector,
                    target: me,
                    result: Err(refusal),
                };
                self.route_inspection_answer(0, answer);
            }
        }
    }

    /// At the target: the query is fresh, signed by its inspector, allowed, and there is a
    /// witnessed head to prove entries against.
    fn check_inspect(
        &mut self,
        now: UnixMs,
        query: &SignedInspectQuery,
    ) -> Result<crate::ledger::head::WitnessedHead, InspectRefusal> {
        let q = &query.query;
        let skew = now.0.abs_diff(q.time_ms);
        if skew > INSPECT_CLOCK_SKEW_MS_MAX {
            return Err(InspectRefusal::BadQuery(format!(
                "it was asked {skew} ms from this node's time (at most \
                 {INSPECT_CLOCK_SKEW_MS_MAX})"
            )));
        }
        query.verify(&mut self.trust, now)?;
        may_inspect(
            q.inspector,
            self.region(),
            &q.scope,
            self.grant_parties(&q.scope),
        )?;
        self.witnessing
            .acknowledged()
            .cloned()
            .ok_or(InspectRefusal::NotWitnessed)
    }

    pub(super) fn handle_inspected(&mut self, now: UnixMs, hops: u8, answer: InspectAnswer) {
        if hops >= INSPECT_HOPS_MAX {
            return;
        }
        if answer.inspector != self.region() {
            self.route_inspection_answer(hops + 1, answer);
            return;
        }
        let Some(query) = self.inspections.take(answer.id, answer.target) else {
            // Late (timed out already), or not asked for.
            return;
        };
        let result = match answer.result {
            Ok((page, chain)) => check_page(&mut self.trust, now, &query, &page, &chain)
                .map(|(entries, sealed_by)| InspectedRecords {
                    head: page.head,
                    entries,
                    sealed_by,
                    next: page.next,
                })
                .map_err(|e| format!("the answer does not prove itself: {e}")),
            Err(refusal) => Err(refusal.to_string()),
        };
        self.out
            .push_back(Output::Event(Event::Ledger(LedgerEvent::Inspected(
                Inspected {
                    id: query.id,
                    target: query.target,
                    result,
                },
            ))));
    }

    /// Queries past their deadline are reported as timed out.
    pub(super) fn expire_inspections(&mut self, now: UnixMs) {
        for q in self.inspections.expired(now) {
            self.out
                .push_back(Output::Event(Event::Ledger(LedgerEvent::Inspected(
                    Inspected {
                        id: q.id,
                        target: q.target,
                        result: Err(InspectRefusal::TimedOut.to_string()),
                    },
                ))));
        }
    }
}
