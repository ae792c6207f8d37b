//! Synthetic plan inputs of any size, for benchmarks (criterion here, and
//! `vmfabric bench agent`): the same objects the store would produce for
//! nodes full of dual-stack VMs.
#![allow(clippy::expect_used)]

use std::net::IpAddr;

use vmfabric_ipam::{Cidr, key};
use vmfabric_model::names::{host_if_prefix, host_ifname};
use vmfabric_model::vm::nic_address;
use vmfabric_model::{Block, BlockRole, Cluster, ClusterInput, Mac, Nic, Node, NodeInput, Vm};

use crate::PlanInput;

fn cluster(t: &str, virt: &str) -> Cluster {
    let mut i = ClusterInput {
        name: "c".into(),
        network_type: t.into(),
        virtualization: Some(virt.into()),
        ..ClusterInput::default()
    };
    if t == "ip-fabric" {
        i.vm_gateway = Some("10.0.0.1".into());
        i.bgp_community = Some("65000:100".into());
        i.route_reflectors = vec!["172.16.0.2:65000".into(), "172.16.0.3:65000".into()];
    }
    i.validate().expect("synthetic cluster")
}

fn block(id: i64, c: &Cluster, node: Option<&str>, role: BlockRole, cidr: &str) -> Block {
    let cidr: Cidr = cidr.parse().expect("synthetic CIDR");
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

/// `count` dual-stack VMs on node `n` of a cluster of type `t`
/// (`ip-fabric` or `routing`) run by `virt` (`kvm` or `lxd`); the node
/// index `n` spreads the addresses, so nodes of one cluster do not clash.
pub fn node_input(t: &str, virt: &str, n: u32, count: u32) -> PlanInput {
    let c = cluster(t, virt);
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
    let node: Node = ni.validate(&c).expect("synthetic node").0;
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
                    host_interface: host_ifname(&host_if_prefix(&vm, 0), 0)
                        .expect("synthetic ifname"),
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
