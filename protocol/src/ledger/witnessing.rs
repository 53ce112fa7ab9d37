//! Witnessing up the tree (见证): a node sends its newest signed tree head to its parent; the
//! parent checks it against the last head it countersigned for that child
//! ([`super::witness::check_head`]: an append-only extension, or a named finding),
//! countersigns it and answers with the [`WitnessedHead`]; the child keeps the parent's last
//! countersignature, from which its next consistency proof starts.
//!
//! A finding — a truncated, forked, rewritten or backdated log — is raised as
//! [`LedgerEvent::Alarm`] at the parent (its shell logs it and records it in the parent's own
//! ledger, where the authority (主管部门) reading it sees it), and the child is refused with the
//! reason. The parent keeps the last good head, so every later head is checked against what
//! was witnessed before the finding: a child cannot clear a finding by sending a new head
//! built on its rewritten log.
//!
//! Sans-IO like the rest of the crate: the caller says who sent what (the peer's region and
//! its key, both from admission), passes the time, and persists the storage effects before it
//! sends the answer (a countersignature is an acknowledgement: the parent must not forget a
//! head it witnessed, or a rewritten log could be witnessed afresh after a restart).

use std::collections::BTreeMap;

use backflow_topology::RegionCode;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::head::{HeadUpdate, SignedTreeHead, WitnessedHead};
use super::inspection::{InspectAnswer, Inspected, InspectionAsked, SignedInspectQuery};
use super::witness::{check_head, WitnessError};
use crate::cert::NodeIdentity;
use crate::limits::{check_len, Bounded, LimitError, TEXT_BYTES_MAX};

/// Children whose last witnessed head a node keeps: more than any region has (national has 31
/// provinces; the largest county ~100 townships), so only a corrupt store reaches it.
pub const WITNESSED_CHILDREN_MAX: usize = 4_096;

/// The ledger's messages between a node and its parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerMsg {
    /// Child → parent: my newest head, with the consistency proof from the last head you
    /// countersigned for me.
    Head(HeadUpdate),
    /// Parent → child: your head, countersigned.
    Witnessed(WitnessedHead),
    /// Parent → child: your head of `size` entries was not countersigned, and why.
    Refused { size: u64, reason: String },
    /// Inspector → the node whose ledger it reads, hop by hop along the tree (查阅, Art. 29,
    /// [`super::inspection`]); `hops` taken so far.
    Inspect {
        hops: u8,
        query: Box<SignedInspectQuery>,
    },
    /// That node's answer → the inspector, hop by hop.
    Inspected {
        hops: u8,
        answer: Box<InspectAnswer>,
    },
    /// Child → parent, with each of its heads: send me your own newest head, with the
    /// consistency proof from the one of yours I hold (`from_size` entries; 0: none yet).
    ParentHeadWanted { from_size: u64 },
    /// Parent → child: my own newest head and that proof ([`super::parent_head`]).
    ParentHead(HeadUpdate),
}

impl Bounded for LedgerMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            LedgerMsg::Head(update) => update.check_limits(),
            LedgerMsg::Witnessed(_) => Ok(()),
            LedgerMsg::Refused { reason, .. } => {
                check_len("witness refusal bytes", reason.len(), TEXT_BYTES_MAX)
            }
            LedgerMsg::Inspect { query, .. } => query.check_limits(),
            LedgerMsg::Inspected { answer, .. } => answer.check_limits(),
            LedgerMsg::ParentHeadWanted { .. } => Ok(()),
            LedgerMsg::ParentHead(update) => update.check_limits(),
        }
    }
}

/// What the shell persists (before it sends the answer that follows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerStorageOp {
    /// Parent: the last head witnessed for `child`.
    PutWitnessed {
        child: RegionCode,
        head: WitnessedHead,
    },
    /// Child: the last of its heads its parent countersigned.
    PutAcknowledged(WitnessedHead),
    /// Child: the parent's own newest head it checked ([`super::parent_head`]).
    PutParentHead(SignedTreeHead),
}

/// What happened, for logs, the ledger and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerEvent {
    /// Parent: a child's head countersigned.
    Witnessed { child: RegionCode, size: u64 },
    /// Child: the parent countersigned this node's head.
    Acknowledged { witness: RegionCode, size: u64 },
    /// Parent: a child's head that does not extend what was witnessed — evidence that its
    /// ledger was truncated, forked or rewritten (or a bad signature or clock).
    Alarm {
        child: RegionCode,
        error: WitnessError,
    },
    /// Child: the parent refused to countersign.
    Refused {
        witness: RegionCode,
        size: u64,
        reason: String,
    },
    /// Target: an inspector may read these records; the shell reads and answers them.
    InspectionAsked(InspectionAsked),
    /// Inspector: the answer to a query, checked.
    Inspected(Inspected),
    /// Parent: a child asks for this node's own newest head with the proof from
    /// `from_size`; the shell builds it from its ledger and sends it
    /// ([`crate::Endpoint::send_parent_head`]).
    ParentHeadWanted { child: RegionCode, from_size: u64 },
    /// Child: the parent's own head of `size` entries extends the one held (kept).
    ParentHeadChecked { parent: RegionCode, size: u64 },
    /// Child: the parent's own head does not extend the one this node holds — evidence that
    /// the parent's ledger was truncated, forked or rewritten. The held head is kept (with
    /// the parent's signature on it, the evidence); the shell raises it.
    ParentAlarm {
        parent: RegionCode,
        error: WitnessError,
    },
}

/// A message handled: what to persist, what to answer (after persisting), what to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    pub storage: Option<LedgerStorageOp>,
    pub reply: Option<LedgerMsg>,
    pub event: Option<LedgerEvent>,
}

/// The witnessing state of one node: the last head it countersigned for each child, and the
/// last of its own heads its parent countersigned.
#[derive(Clone, Debug, Default)]
pub struct Witnessing {
    witnessed: BTreeMap<RegionCode, WitnessedHead>,
    acknowledged: Option<WitnessedHead>,
    /// The parent's own newest head this node checked ([`super::parent_head`]).
    pub(super) parent_head: Option<SignedTreeHead>,
}

impl Witnessing {
    /// Restores what was persisted ([`LedgerStorageOp`]); at most
    /// [`WITNESSED_CHILDREN_MAX`] children are kept (storage is trusted, but bounded).
    pub fn restore(
        witnessed: impl IntoIterator<Item = (RegionCode, WitnessedHead)>,
        acknowledged: Option<WitnessedHead>,
    ) -> Witnessing {
        Witnessing {
            witnessed: witnessed.into_iter().take(WITNESSED_CHILDREN_MAX).collect(),
            acknowledged,
            parent_head: None,
        }
    }

    /// The last of this node's heads its parent countersigned: where the next consistency
    /// proof starts.
    pub fn acknowledged(&self) -> Option<&WitnessedHead> {
        self.acknowledged.as_ref()
    }

    /// The last head countersigned for `child`.
    pub fn witnessed(&self, child: RegionCode) -> Option<&WitnessedHead> {
        self.witnessed.get(&child)
    }

    /// As the parent (`identity`): `child`'s node, whose key admission verified, sends
    /// `update`.
    pub fn on_head(
        &mut self,
        now_ms: u64,
        identity: &NodeIdentity,
        child: RegionCode,
        child_key: &VerifyingKey,
        update: HeadUpdate,
    ) -> Handled {
        let size = update.head.head.size;
        let last = self.witnessed.get(&child).map(|w| &w.head.head);
        if let Err(error) = check_head(
            child,
            child_key,
            last,
            &update.head,
            &update.consistency,
            now_ms,
        ) {
            return Handled {
                storage: None,
                reply: Some(LedgerMsg::Refused {
                    size,
                    reason: error.to_string(),
                }),
                event: Some(LedgerEvent::Alarm { child, error }),
            };
        }
        if !self.witnessed.contains_key(&child) && self.witnessed.len() >= WITNESSED_CHILDREN_MAX {
            return Handled {
                reply: Some(LedgerMsg::Refused {
                    size,
                    reason: format!("this node witnesses at most {WITNESSED_CHILDREN_MAX} logs"),
                }),
                ..Handled::default()
            };
        }
        let witnessed = WitnessedHead::countersign(update.head, identity);
        self.witnessed.insert(child, witnessed.clone());
        Handled {
            storage: Some(LedgerStorageOp::PutWitnessed {
                child,
                head: witnessed.clone(),
            }),
            reply: Some(LedgerMsg::Witnessed(witnessed)),
            event: Some(LedgerEvent::Witnessed { child, size }),
        }
    }

    /// As the child (`own` its key): the parent `witness`, whose key admission verified,
    /// answers. A countersignature is kept only if it is on a head of this node, signed by
    /// it, verifies under the parent's key, and is not older than the one kept (answers can
    /// cross). Anything else is ignored: the next head goes up all the same.
    pub fn on_answer(
        &mut self,
        region: RegionCode,
        own_key: &VerifyingKey,
        witness: RegionCode,
        witness_key: &VerifyingKey,
        answer: LedgerMsg,
    ) -> Handled {
        match answer {
            LedgerMsg::Witnessed(w) => {
                let fits = w.head.head.region == region
                    && w.witness == witness
                    && w.verify(own_key, witness_key).is_ok()
                    && self
                        .acknowledged
                        .as_ref()
                        .is_none_or(|a| a.head.head.size <= w.head.head.size);
                if !fits {
                    return Handled::default();
                }
                let size = w.head.head.size;
                self.acknowledged = Some(w.clone());
                Handled {
                    storage: Some(LedgerStorageOp::PutAcknowledged(w)),
                    reply: None,
                    event: Some(LedgerEvent::Acknowledged { witness, size }),
                }
            }
            LedgerMsg::Refused { size, reason } => Handled {
                event: Some(LedgerEvent::Refused {
                    witness,
                    size,
                    reason,
                }),
                ..Handled::default()
            },
            LedgerMsg::Head(_)
            | LedgerMsg::Inspect { .. }
            | LedgerMsg::Inspected { .. }
            | LedgerMsg::ParentHeadWanted { .. }
            | LedgerMsg::ParentHead(_) => Handled::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{append_entry, EntryKind, LedgerEntry};
    use crate::ledger::head::tests::identity;
    use crate::ledger::head::{SignedTreeHead, TreeHead};
    use crate::ledger::merkle::tests::MemStore;
    use crate::ledger::merkle::{consistency_proof, root};

    const T0: u64 = 1_767_225_600_000;
    const CHILD: &str = "110101";

    /// The child's log, as its shell keeps it.
    struct Log {
        store: MemStore,
        size: u64,
    }

    impl Log {
        fn new() -> Log {
            Log {
                store: MemStore::new(),
                size: 0,
            }
        }

        fn append(&mut self, subject: &str) {
            let entry = LedgerEntry {
                seq: self.size,
                time_ms: T0 + self.size,
                region: CHILD.parse().unwrap(),
                department: None,
                kind: EntryKind::Note,
                subject: subject.into(),
                detail: String::new(),
            };
            let (_, nodes) = append_entry(&entry, self.size, &self.store).unwrap();
            for n in nodes {
                self.store.insert((n.level, n.index), n.hash);
            }
            self.size += 1;
        }

        /// The update the child's shell sends: its head, and the proof from what the parent
        /// last countersigned.
        fn update(
            &self,
            child: &NodeIdentity,
            from: Option<&WitnessedHead>,
            time_ms: u64,
        ) -> HeadUpdate {
            let head = TreeHead {
                region: child.region,
                size: self.size,
                root: root(self.size, &self.store).unwrap(),
                time_ms,
            };
            let old = from.map_or(0, |w| w.head.head.size);
            HeadUpdate {
                head: SignedTreeHead::sign(head, child),
                consistency: consistency_proof(old, self.size, &self.store).unwrap(),
            }
        }
    }

    #[test]
    fn a_child_s_appends_are_witnessed_and_its_parent_s_countersignature_kept() {
        let parent = identity("11", 1);
        let child = identity(CHILD, 2);
        let (mut at_parent, mut at_child) = (Witnessing::default(), Witnessing::default());
        let mut log = Log::new();
        for round in 0..3u64 {
            for i in 0..5 {
                log.append(&format!("act {round}.{i}"));
            }
            let update = log.update(&child, at_child.acknowledged(), T0 + round);
            let h = at_parent.on_head(
                T0 + 10,
                &parent,
                child.region,
                &child.key.verifying_key(),
                update,
            );
            assert_eq!(
                h.event,
                Some(LedgerEvent::Witnessed {
                    child: child.region,
                    size: log.size
                })
            );
            assert!(matches!(
                h.storage,
                Some(LedgerStorageOp::PutWitnessed { .. })
            ));
            let a = at_child.on_answer(
                child.region,
                &child.key.verifying_key(),
                parent.region,
                &parent.key.verifying_key(),
                h.reply.unwrap(),
            );
            assert!(matches!(
                a.storage,
                Some(LedgerStorageOp::PutAcknowledged(_))
            ));
            assert_eq!(at_child.acknowledged().unwrap().head.head.size, log.size);
        }
        // Restored from what was persisted, the parent goes on checking against it.
        let kept = at_parent.witnessed(child.region).cloned().unwrap();
        let at_parent = Witnessing::restore([(child.region, kept)], None);
        assert_eq!(
            at_parent.witnessed(child.region).unwrap().head.head.size,
            15
        );
    }

    #[test]
    fn a_rewritten_log_raises_an_alarm_and_stays_refused() {
        let parent = identity("11", 1);
        let child = identity(CHILD, 2);
        let key = child.key.verifying_key();
        let mut at_parent = Witnessing::default();
        let mut log = Log::new();
        for i in 0..8 {
            log.append(&format!("act {i}"));
        }
        let first = at_parent.on_head(
            T0,
            &parent,
            child.region,
            &key,
            log.update(&child, None, T0),
        );
        let LedgerMsg::Witnessed(witnessed) = first.reply.unwrap() else {
            panic!("witnessed")
        };
        // The child rewrites entry 3 and appends: its new log does not extend the old one.
        let mut forged = Log::new();
        for i in 0..10 {
            forged.append(&if i == 3 {
                "act 3, rewritten".into()
            } else {
                format!("act {i}")
            });
        }
        let h = at_parent.on_head(
            T0 + 1,
            &parent,
            child.region,
            &key,
            forged.update(&child, Some(&witnessed), T0 + 1),
        );
        assert!(
            matches!(
                h.event,
                Some(LedgerEvent::Alarm {
                    error: WitnessError::Inconsistent { .. },
                    ..
                })
            ),
            "{h:?}"
        );
        assert!(matches!(h.reply, Some(LedgerMsg::Refused { size: 10, .. })));
        assert_eq!(h.storage, None, "nothing of the rewritten log is kept");
        // Its next head, built on the rewritten log, is checked against the last good one.
        forged.append("act 10");
        let h = at_parent.on_head(
            T0 + 2,
            &parent,
            child.region,
            &key,
            forged.update(&child, Some(&witnessed), T0 + 2),
        );
        assert!(matches!(h.event, Some(LedgerEvent::Alarm { .. })), "{h:?}");
        assert_eq!(at_parent.witnessed(child.region).unwrap().head.head.size, 8);
        // A truncated log is named as such.
        let mut short = Log::new();
        for i in 0..5 {
            short.append(&format!("act {i}"));
        }
        let h = at_parent.on_head(
            T0 + 3,
            &parent,
            child.region,
            &key,
            short.update(&child, None, T0 + 3),
        );
        assert!(
            matches!(
                h.event,
                Some(LedgerEvent::Alarm {
                    error: WitnessError::Truncated { .. },
                    ..
                })
            ),
            "{h:?}"
        );
    }

    #[test]
    fn a_child_keeps_only_its_own_heads_countersigned_by_its_parent() {
        let parent = identity("11", 1);
        let stranger = identity("44", 3);
        let child = identity(CHILD, 2);
        let mut log = Log::new();
        log.append("act 0");
        let mut at_parent = Witnessing::default();
        let h = at_parent.on_head(
            T0,
            &parent,
            child.region,
            &child.key.verifying_key(),
            log.update(&child, None, T0),
        );
        let answer = h.reply.unwrap();
        let mut at_child = Witnessing::default();
        // Countersigned by someone else than the parent the answer came from: ignored.
        let a = at_child.on_answer(
            child.region,
            &child.key.verifying_key(),
            stranger.region,
            &stranger.key.verifying_key(),
            answer.clone(),
        );
        assert_eq!(a, Handled::default());
        assert!(at_child.acknowledged().is_none());
        let a = at_child.on_answer(
            child.region,
            &child.key.verifying_key(),
            parent.region,
            &parent.key.verifying_key(),
            answer,
        );
        assert!(a.storage.is_some());
    }
}
