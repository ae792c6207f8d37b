//! What the API sends is what a client reads back: every type survives a
//! JSON round trip unchanged.
#![allow(clippy::unwrap_used)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmfabric_model::names::{Mac, host_ifname};
use vmfabric_model::vm::{Nic, NicAddress};
use vmfabric_model::{ClusterInput, Error, NodeInput, Timestamp, Vm};

fn round<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let text = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, v, "{text}");
}

#[test]
fn domain_types_round_trip() {
    let fab = ClusterInput {
        name: "fab".into(),
        network_type: "ip-fabric".into(),
        vm_gateway: Some("10.0.0.1".into()),
        bgp_community: Some("65000:100".into()),
        route_reflectors: vec!["172.16.0.2:65000".into()],
        cooldown: Some("1h".into()),
        ..ClusterInput::default()
    }
    .validate()
    .unwrap();
    round(&fab);
    let hz = ClusterInput {
        name: "hz".into(),
        network_type: "routing".into(),
        ..ClusterInput::default()
    }
    .validate()
    .unwrap();
    let (node, _) = NodeInput {
        name: "n1".into(),
        address: "123.45.12.48/26".into(),
        subnets: vec!["203.0.113.40/29".into()],
        ipv6: Some("2a01:4f8:13b:9a7::2/64".into()),
        uplink_mac: Some("96:f7:b7:55:42:3d".into()),
        ..NodeInput::default()
    }
    .validate(&hz)
    .unwrap();
    round(&node);
    let vm = Vm {
        name: "vm1".into(),
        cluster: "fab".into(),
        node: "n1".into(),
        nics: vec![Nic {
            index: 0,
            mac: Mac::for_nic(1, "vm1", 0, 0),
            host_interface: host_ifname("vm1", 0).unwrap(),
            addresses: vec![NicAddress {
                address: "198.51.100.7".parse().unwrap(),
                prefix_len: 32,
                gateway: Some("10.0.0.1".parse().unwrap()),
            }],
        }],
    };
    round(&vm);
    round(&Timestamp(1_780_000_000_123_456));
    round(&Error::Exhausted {
        pool: "p".into(),
        family: "IPv4".into(),
        used: 8,
        usable: 1u128 << 80,
        cooling: 0,
    });
    round(&Error::invalid("cidr", "x", "rule"));
}
