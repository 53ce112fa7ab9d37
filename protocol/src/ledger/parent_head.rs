//! Heads down (#19): the parent's own newest head travels to each child, which checks it
//! extends the one of the parent's it holds — the same check a parent makes of its child's
//! heads ([`super::witness::check_head`]) — so a township can show that its county's log was
//! not truncated, forked or rewritten either, and the two directions together leave no node
//! whose history only it has seen.
//!
//! With each of its own heads going up, a child asks for the parent's
//! ([`LedgerMsg::ParentHeadWanted`], naming the size it holds); the parent's shell answers
//! with its newest signed head and the consistency proof from that size
//! ([`LedgerMsg::ParentHead`]). A head that extends what is held replaces it (persisted); one
//! that does not raises [`LedgerEvent::ParentAlarm`] and the held head — signed by the parent
//! — stays, the evidence an authority above can check against the parent's next one.

use backflow_topology::RegionCode;
use ed25519_dalek::VerifyingKey;

use super::head::{HeadUpdate, SignedTreeHead};
use super::witness::check_head;
use super::witnessing::{Handled, LedgerEvent, LedgerStorageOp, Witnessing};

impl Witnessing {
    /// Restores the parent's head persisted by [`LedgerStorageOp::PutParentHead`].
    pub fn restore_parent_head(&mut self, head: Option<SignedTreeHead>) {
        self.parent_head = head;
    }

    /// The parent's own newest head this node checked.
    pub fn parent_head(&self) -> Option<&SignedTreeHead> {
        self.parent_head.as_ref()
    }

    /// What this node asks its parent for: the parent's newest head from the size held.
    pub fn parent_head_from(&self) -> u64 {
        self.parent_head.as_ref().map_or(0, |h| h.head.size)
    }

    /// As the child: the parent `parent`, whose key admission verified, sends its own head.
    pub fn on_parent_head(
        &mut self,
        now_ms: u64,
        parent: RegionCode,
        parent_key: &VerifyingKey,
        update: HeadUpdate,
    ) -> Handled {
        let held = self.parent_head.as_ref().map(|h| &h.head);
        if held.is_some_and(|h| *h == update.head.head) {
            return Handled::default();
        }
        if let Err(error) = check_head(
            parent,
            parent_key,
            held,
            &update.head,
            &update.consistency,
            now_ms,
        ) {
            return Handled {
                event: Some(LedgerEvent::ParentAlarm { parent, error }),
                ..Handled::default()
            };
        }
        let size = update.head.head.size;
        self.parent_head = Some(update.head.clone());
        Handled {
            storage: Some(LedgerStorageOp::PutParentHead(update.head)),
            reply: None,
            event: Some(LedgerEvent::ParentHeadChecked { parent, size }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{append_entry, EntryKind, LedgerEntry};
    use crate::ledger::head::tests::identity;
    use crate::ledger::head::TreeHead;
    use crate::ledger::merkle::tests::MemStore;
    use crate::ledger::merkle::{consistency_proof, root};
    use crate::ledger::witness::WitnessError;

    const T0: u64 = 1_767_225_600_000;

    /// The parent's log: entries whose subjects are `subjects`.
    fn log(subjects: &[String]) -> MemStore {
        let store = MemStore::new();
        let mut store = store;
        for (seq, s) in subjects.iter().enumerate() {
            let entry = LedgerEntry {
                seq: seq as u64,
                time_ms: T0 + seq as u64,
                region: "11".parse().unwrap(),
                department: None,
                kind: EntryKind::Note,
                subject: s.clone(),
                detail: String::new(),
            };
            let (_, nodes) = append_entry(&entry, seq as u64, &store).unwrap();
            for n in nodes {
                store.insert((n.level, n.index), n.hash);
            }
        }
        store
    }

    fn update(
        parent: &crate::cert::NodeIdentity,
        store: &MemStore,
        size: u64,
        from: u64,
        time_ms: u64,
    ) -> HeadUpdate {
        let head = TreeHead {
            region: parent.region,
            size,
            root: root(size, store).unwrap(),
            time_ms,
        };
        HeadUpdate {
            head: SignedTreeHead::sign(head, parent),
            consistency: consistency_proof(from, size, store).unwrap(),
        }
    }

    #[test]
    fn a_child_keeps_its_parent_s_heads_while_they_extend_and_raises_a_rewrite() {
        let parent = identity("11", 1);
        let key = parent.key.verifying_key();
        let subjects: Vec<String> = (0..12).map(|i| format!("act {i}")).collect();
        let store = log(&subjects);
        let mut at_child = Witnessing::default();
        assert_eq!(at_child.parent_head_from(), 0);
        let h = at_child.on_parent_head(T0, parent.region, &key, update(&parent, &store, 5, 0, T0));
        assert_eq!(
            h.event,
            Some(LedgerEvent::ParentHeadChecked {
                parent: parent.region,
                size: 5
            })
        );
        assert!(matches!(h.storage, Some(LedgerStorageOp::PutParentHead(_))));
        let h = at_child.on_parent_head(
            T0 + 1,
            parent.region,
            &key,
            update(&parent, &store, 12, at_child.parent_head_from(), T0 + 1),
        );
        assert!(h.storage.is_some(), "{h:?}");
        assert_eq!(at_child.parent_head_from(), 12);

        // The parent rewrites entry 7 and appends: its next head does not extend the held one.
        let mut rewritten = subjects.clone();
        rewritten[7] = "act 7, rewritten".into();
        rewritten.push("act 12".into());
        let forged = log(&rewritten);
        let h = at_child.on_parent_head(
            T0 + 2,
            parent.region,
            &key,
            update(&parent, &forged, 13, 12, T0 + 2),
        );
        assert!(
            matches!(
                h.event,
                Some(LedgerEvent::ParentAlarm {
                    error: WitnessError::Inconsistent { .. },
                    ..
                })
            ),
            "{h:?}"
        );
        assert_eq!(h.storage, None);
        assert_eq!(
            at_child.parent_head().unwrap().head.size,
            12,
            "the evidence stays"
        );
        // Truncated, or signed by another key: named, nothing kept.
        let h = at_child.on_parent_head(
            T0 + 3,
            parent.region,
            &key,
            update(&parent, &store, 4, 0, T0 + 3),
        );
        assert!(matches!(
            h.event,
            Some(LedgerEvent::ParentAlarm {
                error: WitnessError::Truncated { .. },
                ..
            })
        ));
        let stranger = identity("11", 9);
        let h = at_child.on_parent_head(
            T0 + 4,
            parent.region,
            &key,
            update(&stranger, &store, 12, 12, T0 + 4),
        );
        assert!(matches!(
            h.event,
            Some(LedgerEvent::ParentAlarm {
                error: WitnessError::BadSignature { .. },
                ..
            })
        ));
        assert_eq!(at_child.parent_head().unwrap().head.size, 12);
    }
}
