//! When the sharing service next has work, in order: each case's (and supervisory copy's)
//! next timed event — its running deadline not yet reported overdue, or the end of its term
//! of use — and each act in transit's next send. A tick visits only what is due, and
//! [`super::ShareService::poll_timeout`] is the first entry: a national node oversees tens of
//! thousands of cases (67,000 supervisory copies in simnet's national sharing scenario), and a
//! scan of them all on every event was most of its CPU there.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::Hash;
use crate::time::UnixMs;

/// A case of this node (`false`) or a supervisory copy (`true`), by request id.
pub(super) type CaseKey = (Hash, bool);

#[derive(Debug, Default)]
pub(super) struct Timers {
    cases: BTreeSet<(UnixMs, CaseKey)>,
    case_at: BTreeMap<CaseKey, UnixMs>,
    sends: BTreeSet<(UnixMs, Hash)>,
    send_at: BTreeMap<Hash, UnixMs>,
}

impl Timers {
    /// Sets (or with `None` clears) the next timed event of a case.
    pub(super) fn set_case(&mut self, key: CaseKey, at: Option<UnixMs>) {
        if let Some(old) = self.case_at.remove(&key) {
            self.cases.remove(&(old, key));
        }
        if let Some(at) = at {
            self.case_at.insert(key, at);
            self.cases.insert((at, key));
        }
    }

    /// Sets (or with `None` clears) when an act in transit is next sent.
    pub(super) fn set_send(&mut self, act: Hash, at: Option<UnixMs>) {
        if let Some(old) = self.send_at.remove(&act) {
            self.sends.remove(&(old, act));
        }
        if let Some(at) = at {
            self.send_at.insert(act, at);
            self.sends.insert((at, act));
        }
    }

    pub(super) fn next(&self) -> Option<UnixMs> {
        let case = self.cases.first().map(|(t, _)| *t);
        let send = self.sends.first().map(|(t, _)| *t);
        case.into_iter().chain(send).min()
    }

    /// The cases due at `now`, taken out (the caller sets each one's next event again).
    pub(super) fn take_due_cases(&mut self, now: UnixMs) -> Vec<CaseKey> {
        let mut due = Vec::new();
        while let Some(&(at, key)) = self.cases.first() {
            if at > now {
                break;
            }
            self.cases.pop_first();
            self.case_at.remove(&key);
            due.push(key);
        }
        due
    }

    /// The acts due to be sent at `now`, taken out (the caller sets each one's next send).
    pub(super) fn take_due_sends(&mut self, now: UnixMs) -> Vec<Hash> {
        let mut due = Vec::new();
        while let Some(&(at, act)) = self.sends.first() {
            if at > now {
                break;
            }
            self.sends.pop_first();
            self.send_at.remove(&act);
            due.push(act);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_in_order_and_resetting_moves_them() {
        let mut t = Timers::default();
        t.set_case(([1; 32], false), Some(UnixMs(30)));
        t.set_case(([2; 32], true), Some(UnixMs(10)));
        t.set_send([3; 32], Some(UnixMs(20)));
        assert_eq!(t.next(), Some(UnixMs(10)));
        t.set_case(([2; 32], true), Some(UnixMs(40)));
        assert_eq!(t.next(), Some(UnixMs(20)));
        assert_eq!(t.take_due_sends(UnixMs(25)), vec![[3; 32]]);
        assert_eq!(t.take_due_cases(UnixMs(35)), vec![([1; 32], false)]);
        assert_eq!(t.next(), Some(UnixMs(40)));
        t.set_case(([2; 32], true), None);
        assert_eq!(t.next(), None);
    }
}
