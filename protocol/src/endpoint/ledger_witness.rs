//! The compliance ledger's witnessing (见证, Art. 29) through the endpoint, which knows who a
//! peer is: a node's heads go to the node of its parent region, and only a direct child's
//! heads are witnessed here, each under the key its chain verifies to now (a revoked key's
//! heads are not). The checks and the countersigning are
//! [`crate::ledger::witnessing::Witnessing`]'s; the ledger itself is the shell's.

use backflow_topology::RegionCode;

use super::{Endpoint, Event, Output, Storage};
use crate::ledger::head::{HeadUpdate, WitnessedHead};
use crate::ledger::witnessing::{Handled, LedgerEvent, LedgerMsg};
use crate::time::UnixMs;
use crate::wire::Message;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// Sends this node's newest head (with the consistency proof from
    /// [`Self::ledger_acknowledged`]) to its parent region's node, if one is admitted; returns
    /// whether it went. The shell builds `update` from its ledger, on its own schedule.
    pub fn send_ledger_head(&mut self, update: HeadUpdate) -> bool {
        let sent = self.send_on_tree(self.region().parent(), LedgerMsg::Head(update));
        if sent {
            self.ask_parent_head();
        }
        sent
    }

    /// Asks the parent region's node, if admitted, for its own newest head with the proof
    /// from the one held (heads down, [`crate::ledger::parent_head`]); returns whether it
    /// went. With every head sent up, and by the shell at an interval while its own head
    /// stands still.
    pub fn ask_parent_head(&mut self) -> bool {
        let from_size = self.witnessing.parent_head_from();
        let msg = LedgerMsg::ParentHeadWanted { from_size };
        self.send_on_tree(self.region().parent(), msg)
    }

    /// Sends this node's own newest head to its direct child `child`, which asked for it
    /// ([`crate::ledger::witnessing::LedgerEvent::ParentHeadWanted`]): `update` carries the
    /// consistency proof from the size the child named. Returns whether it went.
    pub fn send_parent_head(&mut self, child: RegionCode, update: HeadUpdate) -> bool {
        if child.parent() != Some(self.region()) {
            return false;
        }
        self.send_on_tree(Some(child), LedgerMsg::ParentHead(update))
    }

    /// Sends `msg` to `to`'s node if it is admitted on the tree (not by a grant's delivery
    /// connection); returns whether it went.
    fn send_on_tree(&mut self, to: Option<RegionCode>, msg: LedgerMsg) -> bool {
        let Some(to) = to else {
            return false;
        };
        let Some(peer) = self.peer_of(to) else {
            return false;
        };
        if self.peers.get(&peer).is_none_or(|p| p.by_grant) {
            return false;
        }
        self.out.push_back(Output::Send {
            to,
            peer: Some(peer),
            msg: Message::Ledger(msg),
        });
        true
    }

    /// The parent's own newest head this node checked.
    pub fn ledger_parent_head(&self) -> Option<&crate::ledger::head::SignedTreeHead> {
        self.witnessing.parent_head()
    }

    /// The last of this node's heads its parent countersigned.
    pub fn ledger_acknowledged(&self) -> Option<&WitnessedHead> {
        self.witnessing.acknowledged()
    }

    /// The last head this node countersigned for `child`.
    pub fn ledger_witnessed(&self, child: RegionCode) -> Option<&WitnessedHead> {
        self.witnessing.witnessed(child)
    }

    pub(super) fn handle_ledger_message(
        &mut self,
        now: UnixMs,
        peer: P,
        from: RegionCode,
        msg: LedgerMsg,
    ) {
        let region = self.region();
        let expected = match msg {
            LedgerMsg::Inspect { hops, query } => return self.handle_inspect(now, hops, *query),
            LedgerMsg::Inspected { hops, answer } => {
                return self.handle_inspected(now, hops, *answer)
            }
            LedgerMsg::Head(_) | LedgerMsg::ParentHeadWanted { .. } => {
                from.parent() == Some(region)
            }
            LedgerMsg::Witnessed(_) | LedgerMsg::Refused { .. } | LedgerMsg::ParentHead(_) => {
                region.parent() == Some(from)
            }
        };
        if !expected {
            // Heads only from a direct child, answers only from the parent.
            return;
        }
        // The key the peer's chain verifies to now (admission checked it once; revocations
        // since then count).
        let Some(chain) = self.peers.get(&peer).map(|p| p.chain.clone()) else {
            return;
        };
        let Ok(verified) = self.trust.verify_chain(&chain, now) else {
            return;
        };
        let handled = match msg {
            LedgerMsg::ParentHeadWanted { from_size } => Handled {
                event: Some(LedgerEvent::ParentHeadWanted {
                    child: from,
                    from_size,
                }),
                ..Handled::default()
            },
            LedgerMsg::ParentHead(update) => {
                self.witnessing
                    .on_parent_head(now.0, from, &verified.key, update)
            }
            LedgerMsg::Head(update) => {
                let identity = self.rf.identity();
                self.witnessing
                    .on_head(now.0, identity, from, &verified.key, update)
            }
            answer => {
                let own = self.rf.identity().key.verifying_key();
                self.witnessing
                    .on_answer(region, &own, from, &verified.key, answer)
            }
        };
        let Handled {
            storage,
            reply,
            event,
        } = handled;
        // Persisted before the countersignature that acknowledges it is sent.
        if let Some(op) = storage {
            self.out.push_back(Output::Storage(Storage::Ledger(op)));
        }
        if let Some(reply) = reply {
            self.out.push_back(Output::Send {
                to: from,
                peer: Some(peer),
                msg: Message::Ledger(reply),
            });
        }
        if let Some(event) = event {
            self.out.push_back(Output::Event(Event::Ledger(event)));
        }
    }
}
