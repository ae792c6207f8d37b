//! Plan inputs for the seed examples, built the way the store builds them:
//! from checked model inputs, with addresses as the allocator hands them out.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;

use vmfabric_ipam::{Cidr, key};
use vmfabric_model::names::{host_if_prefix, host_ifname};
use vmfabric_model::vm::nic_address;
use vmfabric_model::{Block, BlockRole, Cluster, ClusterInput, Mac, Nic, Node, NodeInput, Vm};
use vmfabric_plan::PlanInput;

pub fn cluster(name: &str, t: &str, virt: &str) -> Cluster {
    let mut i = ClusterInput {
        name: name.into(),
        network_type: t.into(),
        virtualization: Some(virt.into()),
        ..ClusterInput::default()
    };
    if t == "ip-fabric" {
        i.vm_gateway = Some("10.0.0.1".into());
        i.bgp_community = Some("65000:100".into());
        i.route_reflectors = vec!["172.16.0.2:65000".into(), "172.16.0.3:65000".into()];
    }
    i.validate().unwrap()
}

pub fn node(c: &Cluster, input: NodeInput) -> Node {
    input.validate(c).unwrap().0
}

pub fn block(id: i64, c: &Cluster, node: Option<&str>, role: BlockRole, cidr: &str) -> Block {
    let cidr: Cidr = cidr.parse().unwrap();
    Block {
        id,
        cluster: c.name.clone(),
        node: node.map(String::from),
        role,
        range: cidr.range(),
        cidr: Some(cidr),
        gateway: (c.network_type == vmfabric_model::NetworkType::Switching)
            .then(|| key::addr(cidr.range().first + 1)),
    }
}

/// A VM on `node` holding `ips` (each from the block that contains it).
pub fn vm(c: &Cluster, node: &Node, blocks: &[Block], name: &str, ips: &[&str]) -> Vm {
    let addresses = ips
        .iter()
        .map(|ip| {
            let ip: IpAddr = ip.parse().unwrap();
            let b = blocks.iter().find(|b| b.contains(ip)).unwrap();
            nic_address(c, node, b, ip)
        })
        .collect();
    Vm {
        name: name.into(),
        cluster: c.name.clone(),
        node: node.name.clone(),
        nics: vec![Nic {
            index: 0,
            mac: Mac::for_nic(7, name, 0, 0),
            host_interface: host_ifname(&host_if_prefix(name, 0), 0).unwrap(),
            addresses,
        }],
    }
}

/// The seed's switching example: 192.0.2.0/27 and 192.0.2.32/27, node kvm1
/// holding 192.0.2.2 on vmbr0.
pub fn switching() -> PlanInput {
    let c = cluster("rack1", "switching", "kvm");
    let n = node(
        &c,
        NodeInput {
            name: "kvm1".into(),
            address: "192.0.2.2".into(),
            uplink: Some("enp3s0f0".into()),
            ..NodeInput::default()
        },
    );
    let networks = vec![
        block(1, &c, None, BlockRole::Network, "192.0.2.0/27"),
        block(2, &c, None, BlockRole::Network, "192.0.2.32/27"),
    ];
    let vms = vec![
        vm(&c, &n, &networks, "web1", &["192.0.2.4"]),
        vm(&c, &n, &networks, "db1", &["192.0.2.34"]),
    ];
    PlanInput {
        cluster: c,
        node: n,
        networks,
        vms,
    }
}

/// The seed's routing example: primary 123.45.12.48, 203.0.113.40/29, and
/// the seed's IPv6 2a01:4f8:13b:9a7::2/64 with kernel NDP proxying.
pub fn routing(ndp: &str) -> PlanInput {
    let c = cluster("hetzner", "routing", "kvm");
    let n = node(
        &c,
        NodeInput {
            name: "node1".into(),
            address: "123.45.12.48/26".into(),
            uplink: Some("eno1".into()),
            uplink_mac: Some("96:f7:b7:55:42:3d".into()),
            subnets: vec!["203.0.113.40/29".into()],
            ranges: vec!["123.45.12.60".into()],
            ipv6: Some("2a01:4f8:13b:9a7::2/64".into()),
            ndp_proxy: Some(ndp.into()),
            ..NodeInput::default()
        },
    );
    let blocks = vec![
        block(
            1,
            &c,
            Some("node1"),
            BlockRole::NodeSubnet,
            "203.0.113.40/29",
        ),
        block(
            2,
            &c,
            Some("node1"),
            BlockRole::NodeRange,
            "123.45.12.60/32",
        ),
        block(
            3,
            &c,
            Some("node1"),
            BlockRole::NodeIpv6,
            "2a01:4f8:13b:9a7::/64",
        ),
    ];
    let vms = vec![
        vm(
            &c,
            &n,
            &blocks,
            "vm1",
            &["203.0.113.40", "2a01:4f8:13b:9a7::3"],
        ),
        vm(&c, &n, &blocks, "vm2", &["203.0.113.41"]),
        // A single extra IP from the node's own on-link /26: proxy ARP.
        vm(&c, &n, &blocks, "vm3", &["123.45.12.60"]),
    ];
    PlanInput {
        cluster: c,
        node: n,
        networks: Vec::new(),
        vms,
    }
}

/// The seed's ip-fabric example: pool 198.51.100.0/24 (and an IPv6 pool),
/// VM gateway 10.0.0.1, vm1 and vm3 on node1.
pub fn fabric(virt: &str) -> PlanInput {
    let c = cluster("fabric", "ip-fabric", virt);
    let n = node(
        &c,
        NodeInput {
            name: "node1".into(),
            address: "172.16.0.11".into(),
            uplink: Some("uplink0".into()),
            ..NodeInput::default()
        },
    );
    let networks = vec![
        block(1, &c, None, BlockRole::Network, "198.51.100.0/24"),
        block(2, &c, None, BlockRole::Network, "2001:db8:2::/48"),
    ];
    let vms = vec![
        vm(&c, &n, &networks, "vm1", &["198.51.100.0", "2001:db8:2::"]),
        vm(&c, &n, &networks, "vm3", &["198.51.100.2"]),
        vm(&c, &n, &networks, "customer-frontend-01", &["198.51.100.3"]),
    ];
    PlanInput {
        cluster: c,
        node: n,
        networks,
        vms,
    }
}

/// All nodes of the fabric cluster, for the route reflector configs.
pub fn fabric_nodes() -> Vec<Node> {
    let c = cluster("fabric", "ip-fabric", "kvm");
    ["172.16.0.11", "172.16.0.12"]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            node(
                &c,
                NodeInput {
                    name: format!("node{}", i + 1),
                    address: (*a).into(),
                    ..NodeInput::default()
                },
            )
        })
        .collect()
}
