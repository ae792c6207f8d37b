//! The allocator of one block of addresses.
//!
//! Every key of the block is in exactly one state:
//! - **fresh**: free and never handed out since the block was created;
//! - **released**: free again after being held; it may be handed out once its
//!   cool-down has passed (`usable_at <= now`);
//! - **excluded**: never handed out (network, broadcast, gateway, node
//!   addresses, operator exclusions);
//! - **held**: allocated to someone (a VM, an operator reservation).
//!
//! Held keys are not stored: they are what is left, so memory depends on
//! fragmentation, not on the size or the fill of the block.
//!
//! Order of automatic allocation ([`Reuse`]):
//! - `Last` (default): fresh keys lowest first; only when none is left, the
//!   released key that became usable earliest (least recently used). An
//!   address someone just gave up is the last one handed to somebody else.
//! - `FirstFree`: the lowest free key, fresh or released-and-cooled alike.
//!
//! Time is a caller-supplied `u64` tick (the store uses microseconds since
//! the Unix epoch); the engine never reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::cidr::Range;
use crate::key::Key;
use crate::set::RangeSet;

/// Caller-supplied time.
pub type Tick = u64;

/// Which free address an automatic allocation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Reuse {
    /// Never-used addresses first, then released ones, least recently used first.
    #[default]
    Last,
    /// Lowest free address, whether it was used before or not.
    FirstFree,
}

impl Reuse {
    pub const fn name(self) -> &'static str {
        match self {
            Reuse::Last => "last",
            Reuse::FirstFree => "first-free",
        }
    }
}

impl std::str::FromStr for Reuse {
    type Err = ();
    fn from_str(s: &str) -> Result<Reuse, ()> {
        match s {
            "last" => Ok(Reuse::Last),
            "first-free" => Ok(Reuse::FirstFree),
            _ => Err(()),
        }
    }
}

/// State of one key of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    OutOfRange,
    Fresh,
    /// Released; usable again from `usable_at`.
    Released {
        usable_at: Tick,
    },
    Excluded,
    Held,
}

/// Why an operation on a pool failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// No free key; `cooling` keys will become usable later.
    Exhausted { held: u128, cooling: u128 },
    /// The key is not inside the block.
    OutOfRange,
    /// The key is not free (allocate) or not held (release).
    WrongState(KeyState),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Exhausted { held, cooling } => {
                write!(f, "no free address ({held} held, {cooling} cooling down)")
            }
            PoolError::OutOfRange => write!(f, "address outside the block"),
            PoolError::WrongState(s) => write!(f, "address is {s:?}"),
        }
    }
}

impl std::error::Error for PoolError {}

/// Counts of a pool by state; they add up to `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub total: u128,
    pub excluded: u128,
    pub held: u128,
    /// Released, still inside the cool-down.
    pub cooling: u128,
    /// Handed out by the next automatic allocations.
    pub free: u128,
}

/// Allocator of one block.
#[derive(Debug, Clone)]
pub struct Pool {
    block: Range,
    fresh: RangeSet,
    excluded: RangeSet,
    /// Released keys ordered by (usable_at, key): the front is the least
    /// recently used one.
    released: BTreeSet<(Tick, Key)>,
    released_at: BTreeMap<Key, Tick>,
    cooldown: Tick,
    reuse: Reuse,
}

impl Pool {
    /// A block with every key fresh.
    pub fn new(block: Range, reuse: Reuse, cooldown: Tick) -> Pool {
        Pool {
            block,
            fresh: RangeSet::from_range(block),
            excluded: RangeSet::new(),
            released: BTreeSet::new(),
            released_at: BTreeMap::new(),
            cooldown,
            reuse,
        }
    }

    pub fn block(&self) -> Range {
        self.block
    }

    pub fn set_cooldown(&mut self, cooldown: Tick) {
        self.cooldown = cooldown;
    }

    pub fn state(&self, k: Key) -> KeyState {
        if !self.block.contains(k) {
            KeyState::OutOfRange
        } else if self.fresh.contains(k) {
            KeyState::Fresh
        } else if let Some(&usable_at) = self.released_at.get(&k) {
            KeyState::Released { usable_at }
        } else if self.excluded.contains(k) {
            KeyState::Excluded
        } else {
            KeyState::Held
        }
    }

    /// Take the next free key in the pool's reuse order.
    pub fn allocate(&mut self, now: Tick) -> Result<Key, PoolError> {
        if self.reuse == Reuse::FirstFree {
            self.promote_cooled(now);
        }
        if let Some(k) = self.fresh.take_first() {
            return Ok(k);
        }
        if let Some(&(usable_at, k)) = self.released.first()
            && usable_at <= now
        {
            self.released.remove(&(usable_at, k));
            self.released_at.remove(&k);
            return Ok(k);
        }
        Err(PoolError::Exhausted {
            held: self.held(),
            cooling: self.released.len() as u128,
        })
    }

    /// Take exactly `k`. An explicit request may take a released key that is
    /// still cooling down: the operator asked for that address by name.
    pub fn allocate_at(&mut self, k: Key) -> Result<(), PoolError> {
        if !self.block.contains(k) {
            return Err(PoolError::OutOfRange);
        }
        if self.fresh.remove_one(k) {
            return Ok(());
        }
        match self.state(k) {
            KeyState::Released { usable_at } => {
                self.released.remove(&(usable_at, k));
                self.released_at.remove(&k);
                Ok(())
            }
            s => Err(PoolError::WrongState(s)),
        }
    }

    /// Take every key of `r` at once (bulk import of existing holders).
    /// Fails, changing nothing, unless every key of `r` is fresh.
    pub fn allocate_range(&mut self, r: Range) -> Result<(), PoolError> {
        if !self.block.covers(&r) {
            return Err(PoolError::OutOfRange);
        }
        if self.fresh.count_within(&r) != r.len() {
            let k = (r.first..=r.last)
                .find(|k| !self.fresh.contains(*k))
                .unwrap_or(r.first);
            return Err(PoolError::WrongState(self.state(k)));
        }
        self.fresh.remove(r);
        Ok(())
    }

    /// Give a held key back; it becomes usable after the cool-down.
    pub fn release(&mut self, k: Key, now: Tick) -> Result<(), PoolError> {
        if !self.block.contains(k) {
            return Err(PoolError::OutOfRange);
        }
        if let Some(&usable_at) = self.released_at.get(&k) {
            return Err(PoolError::WrongState(KeyState::Released { usable_at }));
        }
        if self.excluded.contains(k) {
            return Err(PoolError::WrongState(KeyState::Excluded));
        }
        if self.cooldown == 0 && self.reuse == Reuse::FirstFree {
            // Nothing to wait for and no order to keep: free at once.
            return if self.fresh.insert_one(k) {
                Ok(())
            } else {
                Err(PoolError::WrongState(KeyState::Fresh))
            };
        }
        if self.fresh.contains(k) {
            return Err(PoolError::WrongState(KeyState::Fresh));
        }
        let usable_at = now.saturating_add(self.cooldown);
        self.released.insert((usable_at, k));
        self.released_at.insert(k, usable_at);
        Ok(())
    }

    /// Mark free keys of `r` (clipped to the block) as never to be handed
    /// out. Fails, changing nothing, if any key of `r` is held.
    pub fn exclude(&mut self, r: Range) -> Result<u128, PoolError> {
        let Some(r) = r.intersect(&self.block) else {
            return Ok(0);
        };
        let free_here = self.fresh.count_within(&r)
            + self.released.iter().filter(|(_, k)| r.contains(*k)).count() as u128;
        let excluded_here = self.excluded.count_within(&r);
        if free_here + excluded_here < r.len() {
            return Err(PoolError::WrongState(KeyState::Held));
        }
        self.fresh.remove(r);
        let cooled: Vec<(Tick, Key)> = self
            .released
            .iter()
            .filter(|(_, k)| r.contains(*k))
            .copied()
            .collect();
        for e in cooled {
            self.released.remove(&e);
            self.released_at.remove(&e.1);
        }
        Ok(self.excluded.insert(r))
    }

    /// Make excluded keys of `r` fresh again.
    pub fn unexclude(&mut self, r: Range) -> u128 {
        let Some(r) = r.intersect(&self.block) else {
            return 0;
        };
        let back: Vec<Range> = self.excluded.ranges_within(&r).collect();
        let mut n = 0;
        for x in back {
            n += self.excluded.remove(x);
            self.fresh.insert(x);
        }
        n
    }

    fn promote_cooled(&mut self, now: Tick) {
        while let Some(&(usable_at, k)) = self.released.first() {
            if usable_at > now {
                break;
            }
            self.released.remove(&(usable_at, k));
            self.released_at.remove(&k);
            self.fresh.insert_one(k);
        }
    }

    fn held(&self) -> u128 {
        self.block.len() - self.fresh.count() - self.excluded.count() - self.released.len() as u128
    }

    /// Counts by state at time `now`.
    pub fn usage(&self, now: Tick) -> Usage {
        let cooling = self.released.range((now.saturating_add(1), 0)..).count() as u128;
        let released = self.released.len() as u128;
        Usage {
            total: self.block.len(),
            excluded: self.excluded.count(),
            held: self.held(),
            cooling,
            free: self.fresh.count() + (released - cooling),
        }
    }

    /// The fresh ranges (for listings of free space).
    pub fn fresh_ranges(&self) -> impl Iterator<Item = Range> + '_ {
        self.fresh.ranges()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u128) -> Pool {
        Pool::new(Range::new(100, 100 + n - 1), Reuse::Last, 0)
    }

    #[test]
    fn first_free_then_exhaustion_at_capacity() {
        let mut p = pool(8);
        for i in 0..8 {
            assert_eq!(p.allocate(0), Ok(100 + i));
        }
        assert_eq!(
            p.allocate(0),
            Err(PoolError::Exhausted {
                held: 8,
                cooling: 0
            })
        );
    }

    #[test]
    fn reuse_last_prefers_fresh_then_lru() {
        let mut p = pool(4);
        let a = p.allocate(0).unwrap();
        let b = p.allocate(0).unwrap();
        p.release(b, 10).unwrap();
        p.release(a, 20).unwrap();
        assert_eq!(p.allocate(30), Ok(102));
        assert_eq!(p.allocate(30), Ok(103));
        // Fresh exhausted: least recently released first.
        assert_eq!(p.allocate(30), Ok(b));
        assert_eq!(p.allocate(30), Ok(a));
    }

    #[test]
    fn cooldown_holds_addresses_back() {
        let mut p = Pool::new(Range::new(0, 1), Reuse::FirstFree, 100);
        let a = p.allocate(0).unwrap();
        p.allocate(0).unwrap();
        p.release(a, 50).unwrap();
        assert_eq!(
            p.allocate(149),
            Err(PoolError::Exhausted {
                held: 1,
                cooling: 1
            })
        );
        assert_eq!(p.usage(149).cooling, 1);
        assert_eq!(p.usage(150).cooling, 0);
        assert_eq!(p.allocate(150), Ok(a));
    }

    #[test]
    fn first_free_reuses_lowest() {
        let mut p = Pool::new(Range::new(0, 9), Reuse::FirstFree, 0);
        for _ in 0..5 {
            p.allocate(0).unwrap();
        }
        p.release(1, 0).unwrap();
        assert_eq!(p.allocate(0), Ok(1));
    }

    #[test]
    fn explicit_and_exclusions() {
        let mut p = pool(10);
        p.exclude(Range::new(100, 100)).unwrap();
        assert_eq!(p.state(100), KeyState::Excluded);
        assert_eq!(
            p.allocate_at(100),
            Err(PoolError::WrongState(KeyState::Excluded))
        );
        p.allocate_at(105).unwrap();
        assert_eq!(p.state(105), KeyState::Held);
        assert_eq!(p.allocate(0), Ok(101));
        assert_eq!(
            p.exclude(Range::new(104, 106)),
            Err(PoolError::WrongState(KeyState::Held))
        );
        assert_eq!(p.unexclude(Range::new(90, 120)), 1);
        assert_eq!(p.allocate(0), Ok(100));
        let u = p.usage(0);
        assert_eq!(u.total, u.excluded + u.held + u.cooling + u.free);
    }
}
