//! Reports of damaged stored content, taken once. Several reads of the same groups can be in
//! flight when one of them finds damage (a peer may have up to 32 frames being read at once):
//! the first report drops the groups from the index and they are fetched again, but a report
//! from a read that began before the repair can arrive after it and would drop the repaired
//! groups once more — the node flapping between complete and incomplete. So a report of
//! groups inside a range dropped within [`DAMAGE_DEBOUNCE_MS`] is ignored; content that is
//! truly damaged again is found by the next read (serve, export or scrub) after the window.

use std::collections::VecDeque;
use std::ops::Range;

use backflow_protocol::manifest::Hash;

/// How long a drop makes later reports of the same groups stale.
pub const DAMAGE_DEBOUNCE_MS: u64 = 30_000;
/// Drops remembered (oldest forgotten first): damage is rare; this only bounds memory.
pub const DAMAGE_RECENT_MAX: usize = 4_096;

#[derive(Debug, Default)]
pub struct RecentDrops {
    drops: VecDeque<(Hash, Range<u64>, u64)>,
}

impl RecentDrops {
    /// Whether a report of `groups` of `content` at `now_ms` is news; if so, it is remembered.
    pub fn is_news(&mut self, content: &Hash, groups: &Range<u64>, now_ms: u64) -> bool {
        while self
            .drops
            .front()
            .is_some_and(|(_, _, at)| now_ms.saturating_sub(*at) >= DAMAGE_DEBOUNCE_MS)
        {
            self.drops.pop_front();
        }
        let stale = self
            .drops
            .iter()
            .any(|(c, r, _)| c == content && r.start <= groups.start && groups.end <= r.end);
        if stale {
            return false;
        }
        if self.drops.len() >= DAMAGE_RECENT_MAX {
            self.drops.pop_front();
        }
        self.drops.push_back((*content, groups.clone(), now_ms));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_read_before_the_repair_is_stale_for_a_while() {
        let mut r = RecentDrops::default();
        let (a, b) = ([1; 32], [2; 32]);
        assert!(r.is_news(&a, &(3..4), 1_000));
        assert!(
            !r.is_news(&a, &(3..4), 2_000),
            "the same group again: stale"
        );
        assert!(r.is_news(&a, &(7..8), 2_000), "another group: news");
        assert!(r.is_news(&a, &(0..20), 2_000), "the whole partition: news");
        assert!(r.is_news(&b, &(3..4), 2_000), "another content: news");
        assert!(r.is_news(&a, &(3..4), 1_000 + DAMAGE_DEBOUNCE_MS + 5_000));
    }
}
