//! A set of keys stored as disjoint, coalesced ranges.
//!
//! Memory and time depend on the number of ranges (how fragmented the set
//! is), never on how many keys it holds: a whole /48 is one entry.

use std::collections::BTreeMap;

use crate::cidr::Range;
use crate::key::Key;

/// Disjoint ranges, keyed by first key; adjacent ranges are always merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<Key, Key>,
    count: u128,
}

impl RangeSet {
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    pub fn from_range(r: Range) -> RangeSet {
        let mut s = RangeSet::new();
        s.insert(r);
        s
    }

    /// Number of keys in the set (saturating).
    pub fn count(&self) -> u128 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of disjoint ranges (the fragmentation of the set).
    pub fn fragments(&self) -> usize {
        self.ranges.len()
    }

    pub fn ranges(&self) -> impl Iterator<Item = Range> + '_ {
        self.ranges.iter().map(|(&f, &l)| Range::new(f, l))
    }

    pub fn first(&self) -> Option<Key> {
        self.ranges.first_key_value().map(|(&f, _)| f)
    }

    /// The range of the set that contains `k`.
    pub fn range_containing(&self, k: Key) -> Option<Range> {
        let (&f, &l) = self.ranges.range(..=k).next_back()?;
        (l >= k).then(|| Range::new(f, l))
    }

    pub fn contains(&self, k: Key) -> bool {
        self.range_containing(k).is_some()
    }

    /// The parts of the set inside `r`, in order.
    pub fn ranges_within<'a>(&'a self, r: &'a Range) -> impl Iterator<Item = Range> + 'a {
        let start = self.range_containing(r.first).map_or(r.first, |c| c.first);
        self.ranges
            .range(start..=r.last)
            .filter_map(|(&f, &l)| Range::new(f, l).intersect(r))
    }

    /// Keys of `r` that are in the set.
    pub fn count_within(&self, r: &Range) -> u128 {
        self.ranges_within(r)
            .fold(0u128, |n, i| n.saturating_add(i.len()))
    }

    /// Whether any key of `r` is in the set.
    pub fn intersects(&self, r: &Range) -> bool {
        if self.range_containing(r.first).is_some() {
            return true;
        }
        self.ranges.range(r.first..=r.last).next().is_some()
    }

    /// Remove and return the lowest key.
    pub fn take_first(&mut self) -> Option<Key> {
        let (f, l) = self.ranges.pop_first()?;
        if f < l {
            self.ranges.insert(f + 1, l);
        }
        self.count -= 1;
        Some(f)
    }

    /// Add one key; false if it was already there. The hot path of release.
    pub fn insert_one(&mut self, k: Key) -> bool {
        let left = self.ranges.range(..=k).next_back().map(|(&f, &l)| (f, l));
        if let Some((_, l)) = left
            && l >= k
        {
            return false;
        }
        let right = k.checked_add(1).and_then(|n| self.ranges.remove(&n));
        let joins_left = left.filter(|&(_, l)| l.checked_add(1) == Some(k));
        match (joins_left, right) {
            (Some((f, _)), Some(rl)) => {
                self.ranges.insert(f, rl);
            }
            (Some((f, _)), None) => {
                self.ranges.insert(f, k);
            }
            (None, Some(rl)) => {
                self.ranges.insert(k, rl);
            }
            (None, None) => {
                self.ranges.insert(k, k);
            }
        }
        self.count = self.count.saturating_add(1);
        true
    }

    /// Remove one key; false if it was not in the set.
    pub fn remove_one(&mut self, k: Key) -> bool {
        let Some(r) = self.range_containing(k) else {
            return false;
        };
        self.ranges.remove(&r.first);
        let (left, right) = r.minus(&Range::single(k));
        if let Some(l) = left {
            self.ranges.insert(l.first, l.last);
        }
        if let Some(rt) = right {
            self.ranges.insert(rt.first, rt.last);
        }
        self.count -= 1;
        true
    }

    /// Add every key of `r`; returns how many were not there before.
    pub fn insert(&mut self, r: Range) -> u128 {
        let before = self.count_within(&r);
        let mut first = r.first;
        let mut last = r.last;
        // Absorb a range that overlaps or touches on the left.
        if let Some((&f, &l)) = self.ranges.range(..=first).next_back()
            && l.saturating_add(1) >= first
        {
            first = f;
            last = last.max(l);
            self.ranges.remove(&f);
        }
        // Absorb ranges that start inside or right after the new one.
        let stop = last.saturating_add(1);
        while let Some((&f, &l)) = self.ranges.range(first..=stop).next() {
            last = last.max(l);
            self.ranges.remove(&f);
        }
        self.ranges.insert(first, last);
        let added = r.len() - before;
        self.count = self.count.saturating_add(added);
        added
    }

    /// Remove every key of `r`; returns how many were there.
    pub fn remove(&mut self, r: Range) -> u128 {
        let start = self.range_containing(r.first).map_or(r.first, |c| c.first);
        let mut removed: u128 = 0;
        let mut from = start;
        while let Some((&f, &l)) = self.ranges.range(from..=r.last).next() {
            let have = Range::new(f, l);
            let Some(i) = have.intersect(&r) else {
                break;
            };
            removed += i.len();
            self.ranges.remove(&f);
            let (left, right) = have.minus(&r);
            if let Some(x) = left {
                self.ranges.insert(x.first, x.last);
            }
            match right {
                Some(x) => {
                    self.ranges.insert(x.first, x.last);
                    break;
                }
                None if l >= r.last => break,
                None => from = l + 1,
            }
        }
        self.count -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u128, b: u128) -> Range {
        Range::new(a, b)
    }

    #[test]
    fn insert_merges_neighbours() {
        let mut s = RangeSet::new();
        assert_eq!(s.insert(r(10, 19)), 10);
        assert_eq!(s.insert(r(30, 39)), 10);
        assert_eq!(s.insert(r(20, 29)), 10);
        assert_eq!(s.fragments(), 1);
        assert_eq!(s.count(), 30);
        assert_eq!(s.insert(r(15, 35)), 0);
        assert_eq!(s.count(), 30);
    }

    #[test]
    fn remove_splits() {
        let mut s = RangeSet::from_range(r(0, 99));
        assert_eq!(s.remove(r(10, 19)), 10);
        assert_eq!(s.remove(r(50, 50)), 1);
        assert_eq!(s.fragments(), 3);
        assert_eq!(s.count(), 89);
        assert!(!s.contains(15));
        assert!(s.contains(20));
        assert_eq!(s.count_within(&r(0, 29)), 20);
        assert_eq!(s.remove(r(5, 60)), 45);
        assert_eq!(s.count(), 44);
    }

    #[test]
    fn take_first_walks_in_order() {
        let mut s = RangeSet::from_range(r(5, 6));
        s.insert(r(9, 9));
        assert_eq!(s.take_first(), Some(5));
        assert_eq!(s.take_first(), Some(6));
        assert_eq!(s.take_first(), Some(9));
        assert_eq!(s.take_first(), None);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn edges_of_key_space() {
        let mut s = RangeSet::from_range(r(u128::MAX - 1, u128::MAX));
        s.insert(r(0, 0));
        assert_eq!(s.count(), 3);
        assert!(s.remove_one(u128::MAX));
        assert_eq!(s.first(), Some(0));
    }
}
