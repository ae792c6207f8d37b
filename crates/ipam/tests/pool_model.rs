//! The allocator against a naive model that keeps one state per address.
//!
//! The model is the specification written the slow, obvious way; the pool
//! must agree with it on every result of every operation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmfabric_ipam::{Key, KeyState, Pool, PoolError, Range, Reuse, key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Fresh,
    Released(u64),
    Excluded,
    Held,
}

struct Model {
    keys: BTreeMap<Key, S>,
    reuse: Reuse,
    cooldown: u64,
}

impl Model {
    fn new(block: Range, reuse: Reuse, cooldown: u64) -> Model {
        Model {
            keys: (block.first..=block.last).map(|k| (k, S::Fresh)).collect(),
            reuse,
            cooldown,
        }
    }

    fn usable(&self, s: S, now: u64) -> bool {
        match s {
            S::Fresh => true,
            S::Released(at) => at <= now,
            _ => false,
        }
    }

    fn allocate(&mut self, now: u64) -> Option<Key> {
        let pick = match self.reuse {
            Reuse::FirstFree => self
                .keys
                .iter()
                .find(|(_, s)| self.usable(**s, now))
                .map(|(k, _)| *k),
            Reuse::Last => self
                .keys
                .iter()
                .find(|(_, s)| **s == S::Fresh)
                .map(|(k, _)| *k)
                .or_else(|| {
                    self.keys
                        .iter()
                        .filter_map(|(k, s)| match s {
                            S::Released(at) if *at <= now => Some((*at, *k)),
                            _ => None,
                        })
                        .min()
                        .map(|(_, k)| k)
                }),
        }?;
        self.keys.insert(pick, S::Held);
        Some(pick)
    }

    fn count(&self, f: impl Fn(S) -> bool) -> u128 {
        self.keys.values().filter(|s| f(**s)).count() as u128
    }
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    AllocateAt(u128),
    Release(u128),
    Exclude(u128, u128),
    Unexclude(u128, u128),
    Wait(u64),
}

fn ops(size: u128) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => Just(Op::Allocate),
        2 => (0..size).prop_map(Op::AllocateAt),
        4 => (0..size).prop_map(Op::Release),
        1 => (0..size, 0..4u128).prop_map(|(a, n)| Op::Exclude(a, n)),
        1 => (0..size, 0..4u128).prop_map(|(a, n)| Op::Unexclude(a, n)),
        2 => (0..4u64).prop_map(Op::Wait),
    ];
    proptest::collection::vec(op, 1..300)
}

fn run(block: Range, reuse: Reuse, cooldown: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut pool = Pool::new(block, reuse, cooldown);
    let mut model = Model::new(block, reuse, cooldown);
    let mut now = 0u64;
    for op in ops {
        match *op {
            Op::Allocate => {
                let got = pool.allocate(now);
                let want = model.allocate(now);
                match (got, want) {
                    (Ok(g), Some(w)) => prop_assert_eq!(g, w, "allocate at {}", now),
                    (Err(PoolError::Exhausted { held, cooling }), None) => {
                        prop_assert_eq!(held, model.count(|s| s == S::Held));
                        prop_assert_eq!(cooling, model.count(|s| matches!(s, S::Released(_))));
                    }
                    (g, w) => prop_assert!(false, "pool {:?} model {:?}", g, w),
                }
            }
            Op::AllocateAt(i) => {
                let k = block.first + i;
                let free = matches!(model.keys[&k], S::Fresh | S::Released(_));
                let got = pool.allocate_at(k);
                prop_assert_eq!(got.is_ok(), free, "allocate_at {} {:?}", i, got);
                if free {
                    model.keys.insert(k, S::Held);
                }
            }
            Op::Release(i) => {
                let k = block.first + i;
                let held = model.keys[&k] == S::Held;
                let got = pool.release(k, now);
                prop_assert_eq!(got.is_ok(), held, "release {} {:?}", i, got);
                if held {
                    model.keys.insert(k, S::Released(now + model.cooldown));
                }
            }
            Op::Exclude(i, n) => {
                let last = (i + n).min(block.last - block.first);
                let r = Range::new(block.first + i, block.first + last);
                let any_held = (r.first..=r.last).any(|k| model.keys[&k] == S::Held);
                let got = pool.exclude(r);
                prop_assert_eq!(got.is_err(), any_held);
                if !any_held {
                    for k in r.first..=r.last {
                        model.keys.insert(k, S::Excluded);
                    }
                }
            }
            Op::Unexclude(i, n) => {
                let last = (i + n).min(block.last - block.first);
                let r = Range::new(block.first + i, block.first + last);
                let mut n = 0;
                for k in r.first..=r.last {
                    if model.keys[&k] == S::Excluded {
                        model.keys.insert(k, S::Fresh);
                        n += 1;
                    }
                }
                prop_assert_eq!(pool.unexclude(r), n);
            }
            Op::Wait(d) => now += d,
        }
        // Every address is in exactly one state, in both.
        for (&k, &s) in &model.keys {
            let p = pool.state(k);
            let same = match (s, p) {
                (S::Held, KeyState::Held) | (S::Excluded, KeyState::Excluded) => true,
                (S::Fresh, KeyState::Fresh) => true,
                (S::Released(a), KeyState::Released { usable_at }) => a == usable_at,
                // first-free merges cooled addresses back into the fresh set
                (S::Released(a), KeyState::Fresh) => reuse == Reuse::FirstFree && a <= now,
                _ => false,
            };
            prop_assert!(same, "key {} model {:?} pool {:?}", k - block.first, s, p);
        }
        let u = pool.usage(now);
        prop_assert_eq!(u.total, block.len());
        prop_assert_eq!(u.held, model.count(|s| s == S::Held));
        prop_assert_eq!(u.excluded, model.count(|s| s == S::Excluded));
        prop_assert_eq!(
            u.cooling,
            model.count(|s| matches!(s, S::Released(a) if a > now))
        );
        prop_assert_eq!(u.free, model.count(|s| model.usable(s, now)));
    }
    Ok(())
}

fn v4_block() -> Range {
    "192.0.2.0/27"
        .parse::<vmfabric_ipam::Cidr>()
        .unwrap()
        .range()
}

fn v6_block() -> Range {
    "2001:db8::/122"
        .parse::<vmfabric_ipam::Cidr>()
        .unwrap()
        .range()
}

fn reuse() -> impl Strategy<Value = Reuse> {
    prop_oneof![Just(Reuse::Last), Just(Reuse::FirstFree)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ipv4_pool_matches_model(reuse in reuse(), cooldown in 0..6u64, ops in ops(32)) {
        run(v4_block(), reuse, cooldown, &ops)?;
    }

    #[test]
    fn ipv6_pool_matches_model(reuse in reuse(), cooldown in 0..6u64, ops in ops(64)) {
        run(v6_block(), reuse, cooldown, &ops)?;
    }

    #[test]
    fn top_of_key_space_matches_model(reuse in reuse(), ops in ops(16)) {
        run(Range::new(u128::MAX - 15, u128::MAX), reuse, 2, &ops)?;
    }
}

/// Exhaustion comes exactly at capacity, with no duplicate on the way.
#[test]
fn exhaustion_exactly_at_capacity() {
    for (block, expect) in [(v4_block(), 32u128), (v6_block(), 64)] {
        let mut pool = Pool::new(block, Reuse::Last, 0);
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(k) = pool.allocate(0) {
            assert!(seen.insert(k), "duplicate {}", key::addr(k));
        }
        assert_eq!(seen.len() as u128, expect);
        assert_eq!(seen.first(), Some(&block.first));
        assert_eq!(seen.last(), Some(&block.last));
    }
}

/// A /8 and a /48 cost the same to set up and to use as a /30.
#[test]
fn huge_blocks_are_one_range() {
    for cidr in ["10.0.0.0/8", "2001:db8::/48", "2001:db8::/32"] {
        let block = cidr.parse::<vmfabric_ipam::Cidr>().unwrap().range();
        let mut pool = Pool::new(block, Reuse::FirstFree, 0);
        for _ in 0..1000 {
            pool.allocate(0).unwrap();
        }
        pool.release(block.first + 500, 0).unwrap();
        assert_eq!(pool.allocate(0), Ok(block.first + 500));
        assert_eq!(pool.usage(0).held, 1000);
        assert_eq!(pool.usage(0).free, block.len() - 1000);
    }
}
