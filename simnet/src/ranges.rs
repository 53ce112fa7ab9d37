//! The chunk groups a simulated node holds of one partition: a sorted, merged set of group
//! ranges, and the bytes they stand for (the last group of a partition may be short).

use std::ops::Range;

use backflow_protocol::manifest::CHUNK_GROUP_BYTES;

/// Sorted, disjoint, non-adjacent ranges of chunk groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet(Vec<Range<u64>>);

impl RangeSet {
    /// All groups `0..groups` (what a publisher holds of each partition).
    pub fn full(groups: u64) -> RangeSet {
        RangeSet(
            std::iter::once(0..groups)
                .filter(|r| !r.is_empty())
                .collect(),
        )
    }

    pub fn ranges(&self) -> &[Range<u64>] {
        &self.0
    }

    /// Whether every group of `r` is held.
    pub fn covers(&self, r: &Range<u64>) -> bool {
        self.0.iter().any(|h| h.start <= r.start && r.end <= h.end)
    }

    /// Bytes held of a partition of `bytes` bytes.
    pub fn bytes_of(&self, bytes: u64) -> u64 {
        self.0.iter().map(|r| range_bytes(bytes, r)).sum()
    }

    /// Inserts `r`; returns the groups newly covered, as ranges.
    pub fn insert(&mut self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut new = Vec::new();
        let mut cur = r.start;
        for have in &self.0 {
            if have.end <= cur {
                continue;
            }
            if have.start >= r.end {
                break;
            }
            if have.start > cur {
                new.push(cur..have.start.min(r.end));
            }
            cur = cur.max(have.end);
            if cur >= r.end {
                break;
            }
        }
        if cur < r.end {
            new.push(cur..r.end);
        }
        let list = &mut self.0;
        list.push(r);
        list.sort_unstable_by_key(|x| x.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(list.len());
        for x in list.drain(..) {
            match merged.last_mut() {
                Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
                _ => merged.push(x),
            }
        }
        *list = merged;
        new
    }
}

/// Bytes of groups `r` of a partition of `bytes` bytes.
pub fn range_bytes(bytes: u64, r: &Range<u64>) -> u64 {
    (r.end * CHUNK_GROUP_BYTES)
        .min(bytes)
        .saturating_sub(r.start * CHUNK_GROUP_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertion_reports_new_groups() {
        let mut l = RangeSet::default();
        assert_eq!(l.insert(2..4), vec![2..4]);
        assert_eq!(l.insert(0..6), vec![0..2, 4..6]);
        assert_eq!(l.ranges(), std::slice::from_ref(&(0..6)));
        assert_eq!(l.insert(1..3), Vec::<Range<u64>>::new());
        assert_eq!(l.insert(8..9), vec![8..9]);
        assert_eq!(l.ranges(), &[0..6, 8..9]);
        assert!(l.covers(&(1..6)) && l.covers(&(8..9)));
        assert!(!l.covers(&(5..8)));
        assert_eq!(RangeSet::full(3).ranges(), std::slice::from_ref(&(0..3)));
        assert_eq!(RangeSet::full(0), RangeSet::default());
    }

    #[test]
    fn last_group_may_be_short() {
        assert_eq!(range_bytes(20_000, &(0..2)), 20_000);
        assert_eq!(range_bytes(20_000, &(1..2)), 20_000 - CHUNK_GROUP_BYTES);
        assert_eq!(range_bytes(0, &(0..1)), 0);
        let mut l = RangeSet::default();
        l.insert(1..2);
        assert_eq!(l.bytes_of(20_000), 20_000 - CHUNK_GROUP_BYTES);
    }
}
