//! Building and rendering node plans: one node with N dual-stack VMs (N =
//! 250 … 2000, to see the growth), and a 100-node cluster with 20,000 VMs.
//! Results and the target (1,000 VMs under 10 ms): BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vmfabric_plan::render::{frr, nft, summary};
use vmfabric_plan::synthetic::node_input;
use vmfabric_plan::{PlanInput, build};

/// Build the plan and render everything a node needs.
fn plan_and_render(i: &PlanInput) -> usize {
    let plan = build(i);
    let mut n = nft::ruleset(&plan, Some("02:00:00:00:00:01")).len();
    n += frr::node(&plan).map_or(0, |s| s.len());
    n += summary::summary(&plan).len();
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("node plan + render");
    for t in ["ip-fabric", "routing"] {
        for count in [250u32, 500, 1000, 2000] {
            let i = node_input(t, "kvm", 0, count);
            g.bench_with_input(BenchmarkId::new(t, count), &i, |b, i| {
                b.iter(|| black_box(plan_and_render(i)))
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("cluster plans");
    g.sample_size(10);
    let nodes: Vec<PlanInput> = (0..100)
        .map(|n| node_input("ip-fabric", "kvm", n, 200))
        .collect();
    g.bench_function("100 nodes, 20000 VMs", |b| {
        b.iter(|| nodes.iter().map(plan_and_render).sum::<usize>())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
