//! Which chunk groups of a partition a node has stored: the return flow's per-partition
//! bookkeeping, apart from the machine that uses it.

use std::ops::Range;

/// Which chunk groups of a partition are stored: sorted, disjoint, non-adjacent ranges.
///
/// Memory follows fragmentation, not partition size, so a (signed but absurd) manifest
/// claiming terabyte partitions cannot make a node allocate, and simnet's per-node state stays
/// tiny: an in-order transfer is a single range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupSet {
    ranges: Vec<Range<u64>>,
    pub(crate) len: u64,
    pub(crate) count: u64,
}

impl GroupSet {
    pub(crate) fn new(len: u64) -> GroupSet {
        GroupSet {
            ranges: Vec::new(),
            len,
            count: 0,
        }
    }

    pub(crate) fn full(len: u64) -> GroupSet {
        let mut s = GroupSet::new(len);
        s.insert_range(0..len);
        s
    }

    /// Index of the first range ending after `g`.
    fn first_ending_after(&self, g: u64) -> usize {
        self.ranges.partition_point(|r| r.end <= g)
    }

    #[cfg(test)]
    fn contains(&self, g: u64) -> bool {
        self.ranges
            .get(self.first_ending_after(g))
            .is_some_and(|r| r.start <= g)
    }

    pub(crate) fn insert_range(&mut self, r: Range<u64>) {
        let (start, end) = (r.start, r.end.min(self.len));
        if start >= end {
            return;
        }
        // Ranges touching or overlapping [start, end] merge into one.
        let lo = self.ranges.partition_point(|x| x.end < start);
        let hi = self.ranges.partition_point(|x| x.start <= end);
        let mut merged = start..end;
        let mut removed = 0;
        for x in &self.ranges[lo..hi] {
            merged.start = merged.start.min(x.start);
            merged.end = merged.end.max(x.end);
            removed += x.end - x.start;
        }
        self.ranges.splice(lo..hi, std::iter::once(merged.clone()));
        self.count = self.count - removed + (merged.end - merged.start);
        debug_assert!(self.count <= self.len);
    }

    /// Forgets the groups of `r` (stored content found damaged: they are fetched again).
    pub(crate) fn remove_range(&mut self, r: Range<u64>) {
        let (start, end) = (r.start, r.end.min(self.len));
        if start >= end {
            return;
        }
        // Ranges overlapping [start, end) are cut; what lies outside it stays.
        let lo = self.ranges.partition_point(|x| x.end <= start);
        let hi = self.ranges.partition_point(|x| x.start < end);
        let mut kept: Vec<Range<u64>> = Vec::with_capacity(2);
        let mut removed = 0;
        for x in &self.ranges[lo..hi] {
            removed += x.end.min(end) - x.start.max(start);
            if x.start < start {
                kept.push(x.start..start);
            }
            if x.end > end {
                kept.push(end..x.end);
            }
        }
        self.ranges.splice(lo..hi, kept);
        self.count -= removed;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// First group at or after `from` whose presence is `present`.
    pub(crate) fn next_with(&self, from: u64, present: bool) -> Option<u64> {
        if from >= self.len {
            return None;
        }
        let i = self.first_ending_after(from);
        let g = match (self.ranges.get(i), present) {
            (Some(r), true) => r.start.max(from),
            (None, true) => return None,
            (Some(r), false) if r.start <= from => r.end,
            (_, false) => from,
        };
        (g < self.len).then_some(g)
    }

    /// End of the run starting at `start` of groups with presence `present`, at most
    /// `max_len` long and within the set.
    pub(crate) fn run_end(&self, start: u64, present: bool, max_len: u64) -> u64 {
        let limit = start.saturating_add(max_len).min(self.len);
        let i = self.first_ending_after(start);
        let end = match (self.ranges.get(i), present) {
            (Some(r), true) if r.start <= start => r.end,
            (_, true) => start,
            (Some(r), false) if r.start > start => r.start,
            (Some(_), false) => start,
            (None, false) => self.len,
        };
        end.min(limit).max(start)
    }

    /// Whether any group in `r` is missing.
    pub(crate) fn any_missing(&self, r: &Range<u64>) -> bool {
        self.next_with(r.start, false).is_some_and(|g| g < r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::GroupSet;
    use proptest::prelude::*;

    proptest! {
        /// The range set agrees with a plain bit model on every query.
        #[test]
        fn group_set_matches_a_bit_model(len in 0u64..200, ops in proptest::collection::vec((0u64..220, 0u64..40, proptest::bool::weighted(0.3)), 0..30)) {
            let mut set = GroupSet::new(len);
            let mut model = vec![false; len as usize];
            for (start, n, remove) in ops {
                if remove {
                    set.remove_range(start..start + n);
                } else {
                    set.insert_range(start..start + n);
                }
                for g in start..(start + n).min(len) {
                    model[g as usize] = !remove;
                }
                prop_assert_eq!(set.count, model.iter().filter(|b| **b).count() as u64);
                prop_assert!(set.ranges.windows(2).all(|w| w[0].end < w[1].start));
            }
            prop_assert_eq!(set.is_full(), model.iter().all(|b| *b));
            for from in 0..len + 2 {
                let has = |g: u64| g < len && model[g as usize];
                prop_assert_eq!(set.contains(from), has(from));
                for present in [true, false] {
                    let want = (from..len).find(|g| has(*g) == present);
                    prop_assert_eq!(set.next_with(from, present), want);
                    if let Some(s) = want {
                        let end = (s..len).find(|g| has(*g) != present).unwrap_or(len).min(s + 7);
                        prop_assert_eq!(set.run_end(s, present, 7), end);
                    }
                }
            }
        }
    }
}
