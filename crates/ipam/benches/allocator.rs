//! Per-operation cost of first-free allocation + release, on a /8 and a /48,
//! empty and 99 % full (contiguous, and fragmented into ~168k single-address
//! holes). The claim under test: the cost does not grow with the size or the
//! fill of the pool. Results and ratios: BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vmfabric_ipam::{Cidr, Pool, Range, Reuse};

/// Holes punched into the held part of a "fragmented" pool: as many as a
/// /8 has addresses in 1 %.
const HOLES: u128 = 167_772;

fn pool(cidr: &str, fill: &str) -> Pool {
    let block = cidr.parse::<Cidr>().expect("bench CIDR").range();
    let mut p = Pool::new(block, Reuse::FirstFree, 0);
    if fill == "empty" {
        return p;
    }
    // Hold the lowest 99 %.
    let held = block.len() / 100 * 99;
    p.allocate_range(Range::new(block.first, block.first + held - 1))
        .expect("fresh pool");
    if fill == "99%-fragmented" {
        let step = held / HOLES;
        for i in 0..HOLES {
            p.release(block.first + i * step, 0).expect("held key");
        }
    }
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocate+release");
    for cidr in ["10.0.0.0/8", "2001:db8::/48"] {
        for fill in ["empty", "99%", "99%-fragmented"] {
            let mut p = pool(cidr, fill);
            g.bench_function(format!("{cidr} {fill}"), |b| {
                b.iter(|| {
                    let k = p.allocate(0).expect("free key");
                    p.release(black_box(k), 0).expect("held key");
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("allocate_at+release");
    for cidr in ["10.0.0.0/8", "2001:db8::/48"] {
        for fill in ["empty", "99%-fragmented"] {
            let mut p = pool(cidr, fill);
            let block = p.block();
            // An address in the middle of the free part.
            let k = block.last - block.len() / 300;
            g.bench_function(format!("{cidr} {fill}"), |b| {
                b.iter(|| {
                    p.allocate_at(black_box(k)).expect("free key");
                    p.release(k, 0).expect("held key");
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
