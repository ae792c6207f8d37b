//! Building and rendering node plans: one node with N dual-stack VMs (N =
//! 250 … 2000, to see the growth), and a 100-node cluster with 20,000 VMs.
//! Results and the target (1,000 VMs under 10 ms): BENCHMARKS.md.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vmfabric_ipam::{Cidr, key};
use vmfabric_model::names::{host_if_prefix, host_ifname};
use vmfabric_model::vm::nic_address;
use vmfabric_model::{Block, BlockRole, Cluster, ClusterInput, Mac, Nic, Node, NodeInput, Vm};
use vmfabric_plan::render::{frr, nft, summary};
use vmfabric_plan::{PlanInput, build};

fn cluster(t: &str) -> Cluster {
    let mut i = ClusterInput {
        name: "c".into(),
        network_type: t.into(),
        ..ClusterInput::default()
    };
    if t == "ip-fabric" {
        i.vm_gateway = Some("10.0.0.1".into());
        i.bgp_community = Some("65000:100".into());
        i.route_reflectors = vec!["172.16.0.2:65000".into(), "172.16.0.3:65000".into()];
    }
    i.validate().expect("bench cluster")
}

fn block(id: i64, c: &Cluster, node: Option<&str>, role: BlockRole, cidr: &str) -> Block {
    let cidr: Cidr = cidr.parse().expect("bench CIDR");
    Block {
        id,
        cluster: c.name.clone(),
        node: node.map(String::from),
        role,
        range: cidr.range(),
        cidr: Some(cidr),
        gateway: None,
    }
}

/// `count` dual-stack VMs on node `n` (index `n` spreads addresses).
fn input(t: &str, n: u32, count: u32) -> PlanInput {
    let c = cluster(t);
    let name = format!("node{n}");
    let mut ni = NodeInput {
        name: name.clone(),
        address: format!("172.16.{}.{}", n / 250, n % 250 + 1),
        ..NodeInput::default()
    };
    let (v4, v6) = if t == "routing" {
        ni.subnets = vec![format!("100.{}.0.0/16", 64 + n)];
        ni.ipv6 = Some(format!("2001:db8:{n:x}::2/64"));
        (
            block(
                1,
                &c,
                Some(&name),
                BlockRole::NodeSubnet,
                &format!("100.{}.0.0/16", 64 + n),
            ),
            block(
                2,
                &c,
                Some(&name),
                BlockRole::NodeIpv6,
                &format!("2001:db8:{n:x}::/64"),
            ),
        )
    } else {
        (
            block(1, &c, None, BlockRole::Network, "10.0.0.0/8"),
            block(2, &c, None, BlockRole::Network, "2001:db8::/32"),
        )
    };
    let node: Node = ni.validate(&c).expect("bench node").0;
    let vms = (0..count)
        .map(|i| {
            let vm = format!("n{n}-vm{i}");
            let a4 = key::addr(v4.range.first + u128::from(n) * 100_000 + u128::from(i) + 3);
            let a6 = key::addr(v6.range.first + u128::from(n) * 100_000 + u128::from(i) + 3);
            let addresses = [(a4, &v4), (a6, &v6)]
                .into_iter()
                .map(|(a, b): (IpAddr, &Block)| nic_address(&c, &node, b, a))
                .collect();
            Vm {
                name: vm.clone(),
                cluster: c.name.clone(),
                node: name.clone(),
                nics: vec![Nic {
                    index: 0,
                    mac: Mac::for_nic(1, &vm, 0, 0),
                    host_interface: host_ifname(&host_if_prefix(&vm, 0), 0).expect("bench ifname"),
                    addresses,
                }],
            }
        })
        .collect();
    PlanInput {
        networks: if t == "routing" {
            Vec::new()
        } else {
            vec![v4, v6]
        },
        cluster: c,
        node,
        vms,
    }
}

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
            let i = input(t, 0, count);
            g.bench_with_input(BenchmarkId::new(t, count), &i, |b, i| {
                b.iter(|| black_box(plan_and_render(i)))
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("cluster plans");
    g.sample_size(10);
    let nodes: Vec<PlanInput> = (0..100).map(|n| input("ip-fabric", n, 200)).collect();
    g.bench_function("100 nodes, 20000 VMs", |b| {
        b.iter(|| nodes.iter().map(plan_and_render).sum::<usize>())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
