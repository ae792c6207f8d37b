//! Every operation of the store, on both backends: listings, free space,
//! reservations, removals, deletion, and `check` after each step.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, NodeInput};
use vmfabric_store::ListAll;
use vmfabric_store::{AddressFilter, Store};

#[tokio::test]
async fn the_whole_lifecycle() {
    for t in stores().await {
        lifecycle(t).await;
    }
}

async fn lifecycle(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.add_node("sw", &node("n1", "192.0.2.2")).await.unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    let hz = NodeInput {
        subnets: vec!["203.0.113.40/29".into()],
        ipv6: Some("2a01:4f8:1::2/64".into()),
        ..node("h1", "123.45.12.48")
    };
    s.add_node("hz", &hz).await.unwrap();
    s.create_vm("sw", &vm("a", "n1")).await.unwrap();
    let mut six = vm("b", "h1");
    six.ipv6 = true;
    s.create_vm("hz", &six).await.unwrap();
    s.reserve("192.0.2.10", Some("router")).await.unwrap();
    assert_consistent(s).await;

    assert_eq!(s.all_clusters().await.unwrap().len(), 2, "{b}");
    assert_eq!(s.cluster("sw").await.unwrap().vms, 1, "{b}");
    assert_eq!(s.all_networks(Some("sw")).await.unwrap().len(), 1, "{b}");
    assert_eq!(s.all_nodes(None).await.unwrap().len(), 2, "{b}");
    assert_eq!(s.node("h1").await.unwrap().ranges.len(), 2, "{b}");
    assert_eq!(
        s.all_vms(&AddressFilter::default()).await.unwrap().len(),
        2,
        "{b}"
    );
    let all = s.all_allocations(&AddressFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4, "{b}: {all:?}");
    let h1 = AddressFilter {
        node: Some("h1".into()),
        ..AddressFilter::default()
    };
    assert_eq!(s.all_allocations(&h1).await.unwrap().len(), 2, "{b}");
    let free = s.all_free_space(&h1, 10).await.unwrap();
    assert_eq!(free.len(), 2, "{b}");
    let usage = s.all_usage(Some("hz")).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).sum::<u128>(), 2, "{b}");
    assert_eq!(
        s.all_history("192.0.2.10", None).await.unwrap().len(),
        1,
        "{b}"
    );

    // Removals refuse while something is held, then succeed.
    assert!(
        matches!(
            s.remove_network("sw", "192.0.2.0/27", false).await,
            Err(Error::Conflict { .. })
        ),
        "{b}"
    );
    assert!(
        matches!(
            s.remove_node("h1", false).await,
            Err(Error::Conflict { .. })
        ),
        "{b}"
    );
    assert!(
        matches!(s.delete_cluster("hz").await, Err(Error::Conflict { .. })),
        "{b}"
    );
    s.delete_vm("b").await.unwrap();
    s.remove_node("h1", false).await.unwrap();
    s.delete_cluster("hz").await.unwrap();
    s.delete_vm("a").await.unwrap();
    assert!(
        matches!(s.delete_cluster("sw").await, Err(Error::Conflict { .. })),
        "{b}: reservation"
    );
    s.release("192.0.2.10").await.unwrap();
    s.remove_node("n1", false).await.unwrap();
    s.remove_network("sw", "192.0.2.0/27", false).await.unwrap();
    s.delete_cluster("sw").await.unwrap();
    assert!(s.all_clusters().await.unwrap().is_empty(), "{b}");
    // History outlives everything.
    assert_eq!(
        s.all_history("192.0.2.10", None).await.unwrap().len(),
        1,
        "{b}"
    );
    assert_consistent(s).await;
}

/// A VM whose name is another VM's shortened interface name cannot use it:
/// the first round trip checks only a fitting name itself, so the next
/// candidates are asked for one by one; each VM still gets its own name.
#[tokio::test]
async fn interface_names_never_clash() {
    for t in stores().await {
        let (s, b) = (&t.store, t.backend);
        s.create_cluster(&cluster("sw", "switching")).await.unwrap();
        s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
        s.add_node("sw", &node("n1", "192.0.2.2")).await.unwrap();
        let long = "customer-alpha-000001";
        let shortened = vmfabric_model::names::host_if_prefix(long, 0);
        assert_ne!(shortened, long, "{b}");
        let a = s.create_vm("sw", &vm(long, "n1")).await.unwrap();
        // Named exactly like a's interface prefix: its own first candidate is taken.
        let c = s.create_vm("sw", &vm(&shortened, "n1")).await.unwrap();
        let (ia, ic) = (&a.nics[0].host_interface, &c.nics[0].host_interface);
        assert_eq!(ia.to_string(), format!("{shortened}_net0"), "{b}");
        assert_ne!(ia, ic, "{b}");
        assert_eq!(
            ic.to_string(),
            format!(
                "{}_net0",
                vmfabric_model::names::host_if_prefix(&shortened, 1)
            ),
            "{b}"
        );
        assert_ne!(a.nics[0].mac, c.nics[0].mac, "{b}");
        assert_consistent(s).await;
    }
}

#[tokio::test]
async fn a_route_reflector_inside_a_pool_is_never_handed_out() {
    for t in stores().await {
        route_reflector_hole(t).await;
    }
}

async fn route_reflector_hole(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    // The reflector is 172.16.0.2 (common::cluster); the pool holds it.
    s.create_cluster(&cluster("f", "ip-fabric")).await.unwrap();
    let net = s.add_network("f", &network("172.16.0.0/30")).await.unwrap();
    assert!(
        net.exclusions
            .iter()
            .any(|x| x.range == "172.16.0.2" && x.reason.contains("route reflector 172.16.0.2")),
        "{b}: {net:?}"
    );
    s.add_node("f", &node("n1", "192.168.50.11")).await.unwrap();
    let asked = vmfabric_model::VmInput {
        ips: vec!["172.16.0.2".into()],
        ..vm("rr", "n1")
    };
    let err = s.create_vm("f", &asked).await.unwrap_err().to_string();
    assert!(err.contains("route reflector"), "{b}: {err}");
    let got: Vec<String> = {
        let mut v = Vec::new();
        for name in ["a", "b", "c"] {
            let r = s.create_vm("f", &vm(name, "n1")).await;
            if let Ok(vm) = r {
                v.push(vm.nics[0].addresses[0].address.to_string());
            }
        }
        v
    };
    assert_eq!(got, ["172.16.0.0", "172.16.0.1", "172.16.0.3"], "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn exhaustion_inside_a_batch_counts_the_batch() {
    for t in stores().await {
        let s = &t.store;
        let b = t.backend;
        s.create_cluster(&cluster("f", "ip-fabric")).await.unwrap();
        s.add_network("f", &network("198.51.100.0/30"))
            .await
            .unwrap();
        s.add_node("f", &node("n1", "192.168.50.11")).await.unwrap();
        s.create_vm("f", &vm("first", "n1")).await.unwrap();
        let reqs: Vec<vmfabric_store::VmRequest> = (0..4)
            .map(|i| vmfabric_store::VmRequest::new("f", vm(&format!("v{i}"), "n1")))
            .collect();
        let out = s.create_vms(&reqs).await.unwrap();
        assert!(out[..3].iter().all(Result::is_ok), "{b}: {out:?}");
        match &out[3] {
            Err(Error::Exhausted { used, usable, .. }) => {
                assert_eq!((*used, *usable), (4, 4), "{b}")
            }
            other => panic!("{b}: {other:?}"),
        }
        assert_consistent(s).await;
    }
}

#[tokio::test]
async fn held_back_addresses_stay_held_back() {
    for t in stores().await {
        held_back(t).await;
    }
}

async fn held_back(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    // Node addresses that are also the network address or an operator
    // exclusion: removing the nodes must not free them.
    s.create_cluster(&cluster("s", "switching")).await.unwrap();
    s.add_node("s", &node("nx", "192.0.2.16")).await.unwrap();
    s.add_node("s", &node("ny", "192.0.2.20")).await.unwrap();
    let net = vmfabric_model::NetworkInput {
        exclude: vec!["192.0.2.20".into()],
        ..network("192.0.2.16/29")
    };
    s.add_network("s", &net).await.unwrap();
    s.add_node("s", &node("nz", "192.0.2.30")).await.unwrap();
    s.remove_node("nx", false).await.unwrap();
    s.remove_node("ny", false).await.unwrap();
    let mut got = Vec::new();
    for i in 0..8 {
        match s.create_vm("s", &vm(&format!("v{i}"), "nz")).await {
            Ok(v) => got.push(v.nics[0].addresses[0].address.to_string()),
            Err(Error::Exhausted { used, usable, .. }) => {
                assert_eq!(used, usable, "{b}");
                break;
            }
            Err(e) => panic!("{b}: {e}"),
        }
    }
    // .16 network, .17 gateway, .20 excluded, .23 broadcast; .16 was nx's.
    assert_eq!(
        got,
        ["192.0.2.18", "192.0.2.19", "192.0.2.21", "192.0.2.22"],
        "{b}"
    );
    assert_consistent(s).await;

    // Another cluster's node address is not a pool address.
    s.create_cluster(&cluster("s2", "switching")).await.unwrap();
    let e = s
        .add_network("s2", &network("192.0.2.24/29"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("192.0.2.30, the address of node nz of cluster s"),
        "{b}: {e}"
    );

    // The ip-fabric IPv6 VM gateway is never a pool address.
    let f = vmfabric_model::ClusterInput {
        vm_gateway6: Some("2001:db8:7::1".into()),
        ..cluster("f", "ip-fabric")
    };
    s.create_cluster(&f).await.unwrap();
    let e = s
        .add_network("f", &network("2001:db8:7::/126"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("2001:db8:7::1, the VM gateway"), "{b}: {e}");

    // A routing node's IPv6 gateway inside its /64 is never a VM's.
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    let hz = NodeInput {
        ipv6: Some("2a01:4f8:1::2/64".into()),
        ipv6_gateway: Some("2a01:4f8:1::3".into()),
        subnets: vec!["203.0.113.40/29".into()],
        ..node("h1", "123.45.12.48")
    };
    s.add_node("hz", &hz).await.unwrap();
    let mut six = vm("r1", "h1");
    six.ipv6 = true;
    let v = s.create_vm("hz", &six).await.unwrap();
    let addrs: Vec<String> = v.nics[0]
        .addresses
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(addrs, ["203.0.113.40", "2a01:4f8:1::4"], "{b}");
    assert_consistent(s).await;
}
