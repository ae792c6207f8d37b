//! Changing things in place: a routing node gets more subnets and ranges
//! while its VMs run, and gives them back when nothing holds them; every
//! refusal names the field and changes nothing; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, NodeInput};
use vmfabric_plan::build;
use vmfabric_store::{ChangeFilter, ListAll, NodeBlockKind, Reach, Store};

#[tokio::test]
async fn a_routing_node_gains_and_loses_subnets_while_its_vms_run() {
    for t in stores().await {
        on(t).await;
    }
}

async fn on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    for (name, addr, sub) in [
        ("h1", "123.45.12.48", "203.0.113.40/30"),
        ("h2", "123.45.12.49", "203.0.113.44/30"),
    ] {
        s.add_node(
            "hz",
            &NodeInput {
                subnets: vec![sub.into()],
                ..node(name, addr)
            },
        )
        .await
        .unwrap();
    }
    for i in 0..4 {
        s.create_vm("hz", &vm(&format!("v{i}"), "h1"))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.create_vm("hz", &vm("v4", "h1")).await,
        Err(Error::Exhausted { .. })
    ));
    let h2_plan = build(&s.plan_input("h2").await.unwrap());
    let h1_before = build(&s.plan_input("h1").await.unwrap());

    // Add a /29 and a range while v0..v3 run: new VMs take from them.
    let view = s
        .add_node_block("h1", NodeBlockKind::Subnet, "203.0.113.48/29")
        .await
        .unwrap();
    assert_eq!(view.ranges.len(), 2, "{b}");
    s.add_node_block("h1", NodeBlockKind::Range, "198.51.100.10-198.51.100.11")
        .await
        .unwrap();
    s.create_vm("hz", &vm("v4", "h1")).await.unwrap();
    assert_eq!(ip_of(s, "v4").await, "198.51.100.10", "{b}");
    // The running VMs keep their addresses; only h1's plan changed.
    let h1_after = build(&s.plan_input("h1").await.unwrap());
    // Nothing the running VMs use goes away: the new plan only adds.
    for l in &h1_before.links {
        assert!(h1_after.links.contains(l), "{b}: {l:?} went away");
    }
    for r in &h1_before.routes {
        assert!(h1_after.routes.contains(r), "{b}: {r:?} went away");
    }
    for a in &h1_before.addresses {
        assert!(h1_after.addresses.contains(a), "{b}: {a:?} went away");
    }
    assert_eq!(build(&s.plan_input("h2").await.unwrap()), h2_plan, "{b}");
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("h1".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[1].kind, "node.add-subnet", "{b}");
    assert_eq!(log[1].detail["after"], "203.0.113.48/29", "{b}");
    assert_eq!(log[1].reach, Reach::Nodes(vec!["h1".into()]), "{b}");

    // Bad input: the field, the value, the rule; nothing changes.
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/28")).await.unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    let before = s.revision().await.unwrap();
    let adds: &[(&str, NodeBlockKind, &str, &str, &str)] = &[
        (
            "h1",
            NodeBlockKind::Subnet,
            "203.0.113.44/30",
            "subnet",
            "h2",
        ),
        (
            "h1",
            NodeBlockKind::Subnet,
            "203.0.113.52/30",
            "subnet",
            "203.0.113.48/29",
        ),
        (
            "h1",
            NodeBlockKind::Subnet,
            "203.0.113.64/33",
            "subnet",
            "prefix",
        ),
        (
            "h1",
            NodeBlockKind::Subnet,
            "2a01:4f8::/64",
            "subnet",
            "--ipv6",
        ),
        (
            "h1",
            NodeBlockKind::Range,
            "198.51.100.20-198.51.100.19",
            "range",
            "",
        ),
        (
            "h1",
            NodeBlockKind::Subnet,
            "192.0.2.0/29",
            "subnet",
            "cluster sw",
        ),
        (
            "s1",
            NodeBlockKind::Subnet,
            "203.0.113.96/29",
            "subnet",
            "routing",
        ),
    ];
    for (n, kind, text, field, rule) in adds {
        match s.add_node_block(n, *kind, text).await {
            Err(
                Error::Invalid {
                    field: f, rule: r, ..
                }
                | Error::Conflict {
                    field: f, rule: r, ..
                },
            ) => {
                assert_eq!(f, *field, "{b}: {text}: {r}");
                assert!(r.contains(rule), "{b}: {text}: {r}");
            }
            other => panic!("{b}: {text}: {other:?}"),
        }
    }
    assert!(matches!(
        s.add_node_block("ghost", NodeBlockKind::Subnet, "203.0.113.96/29")
            .await,
        Err(Error::NotFound { .. })
    ));
    // Removing what holds addresses names the holders.
    match s.remove_node_block("h1", "203.0.113.40/30", false).await {
        Err(Error::Conflict { field, rule, .. }) => {
            assert_eq!(field, "block", "{b}");
            assert!(rule.contains("203.0.113.40 (VM v0)"), "{b}: {rule}");
        }
        other => panic!("{b}: {other:?}"),
    }
    assert!(matches!(
        s.remove_node_block("h1", "203.0.113.56/29", false).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.remove_node_block("h1", "bogus", false).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // Once empty, a subnet goes, and its addresses are in no block.
    let view = s
        .remove_node_block("h1", "203.0.113.48/29", false)
        .await
        .unwrap();
    assert_eq!(view.ranges.len(), 2, "{b}");
    assert!(matches!(
        s.reserve("203.0.113.50", None).await,
        Err(Error::Invalid { .. })
    ));
    s.delete_vm("v4").await.unwrap();
    s.remove_node_block("h1", "198.51.100.10-198.51.100.11", false)
        .await
        .unwrap();
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_fabric_cluster_changes_reflectors_community_and_gateway_in_place() {
    for t in stores().await {
        fabric_on(t).await;
    }
}

async fn fabric_on(t: TestStore) {
    use vmfabric_model::ClusterPatch;
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/29"))
        .await
        .unwrap();
    s.add_node("fab", &node("f1", "172.16.0.11")).await.unwrap();
    s.add_node("fab", &node("f2", "172.16.0.12")).await.unwrap();
    s.create_vm("fab", &vm("v1", "f1")).await.unwrap();
    let held = ip_of(s, "v1").await;

    // Refusals change nothing: a reflector on a VM's address, the VM
    // gateway inside the pool, an unknown cluster.
    let before = s.revision().await.unwrap();
    let on_vm = ClusterPatch {
        add_route_reflectors: vec![format!("{held}:65000")],
        ..ClusterPatch::default()
    };
    match s.update_cluster("fab", &on_vm).await {
        Err(Error::Conflict { field, rule, .. }) => {
            assert_eq!(field, "route-reflector", "{b}");
            assert!(rule.contains("v1"), "{b}: {rule}");
        }
        other => panic!("{b}: {other:?}"),
    }
    let gw_in_pool = ClusterPatch {
        vm_gateway: Some("198.51.100.6".into()),
        ..ClusterPatch::default()
    };
    assert!(matches!(
        s.update_cluster("fab", &gw_in_pool).await,
        Err(Error::Conflict { field, .. }) if field == "vm-gateway"
    ));
    assert!(matches!(
        s.update_cluster("nope", &gw_in_pool).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // A second reflector inside the pool, and a new community: the
    // reflector's address is never a VM's; every node's plan changes.
    let p = ClusterPatch {
        add_route_reflectors: vec!["198.51.100.5:65000".into()],
        bgp_community: Some("65000:200".into()),
        ..ClusterPatch::default()
    };
    let c = s.update_cluster("fab", &p).await.unwrap();
    assert_eq!(c.fabric.as_ref().unwrap().route_reflectors.len(), 2, "{b}");
    for n in ["f1", "f2"] {
        let plan = build(&s.plan_input(n).await.unwrap());
        let bgp = serde_json::to_string(&plan.bgp).unwrap();
        assert!(bgp.contains("65000:200"), "{b}: {n}: {bgp}");
        assert!(bgp.contains("198.51.100.5"), "{b}: {n}: {bgp}");
    }
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("fab".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[0].kind, "cluster.set", "{b}");
    assert_eq!(log[0].reach, Reach::Cluster, "{b}");
    assert_eq!(
        log[0].detail["before"]["fabric"]["community"], "65000:100",
        "{b}"
    );
    let mut got = Vec::new();
    for i in 2..20 {
        match s.create_vm("fab", &vm(&format!("v{i}"), "f2")).await {
            Ok(_) => got.push(ip_of(s, &format!("v{i}")).await),
            Err(Error::Exhausted { .. }) => break,
            Err(e) => panic!("{b}: {e}"),
        }
    }
    assert!(!got.contains(&"198.51.100.5".to_string()), "{b}: {got:?}");
    // Removing the reflector gives its address back to the pool.
    let p = ClusterPatch {
        remove_route_reflectors: vec!["198.51.100.5".into()],
        ..ClusterPatch::default()
    };
    s.update_cluster("fab", &p).await.unwrap();
    s.create_vm("fab", &vm("last", "f2")).await.unwrap();
    assert_eq!(ip_of(s, "last").await, "198.51.100.5", "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_running_vm_gains_and_loses_nics_and_addresses() {
    for t in stores().await {
        nics_on(t).await;
    }
}

async fn nics_on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/28")).await.unwrap();
    s.add_network("sw", &network("2001:db8:5::/64"))
        .await
        .unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    s.create_vm("sw", &vm("web", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "web").await, "192.0.2.3", "{b}");

    // IPv6 for a VM created without it, and a second IPv4 on NIC 0.
    let v = s.add_vm_address("web", 0, true, None).await.unwrap();
    assert!(v.nics[0].addresses[1].address.is_ipv6(), "{b}: {v:?}");
    let v = s.add_vm_address("web", 0, false, None).await.unwrap();
    assert_eq!(v.nics[0].addresses.len(), 3, "{b}");
    // A second NIC: its own MAC and interface, the next address.
    let v = s.add_nic("web", true, false).await.unwrap();
    assert_eq!(v.nics[1].host_interface.as_str(), "web_net1", "{b}");
    assert_ne!(v.nics[1].mac, v.nics[0].mac, "{b}");
    assert_eq!(
        v.nics[1].addresses[0].address.to_string(),
        "192.0.2.5",
        "{b}"
    );
    let nic1_ip = v.nics[1].addresses[0].address.to_string();
    // History names the NIC's holder.
    let h = s.all_history(&nic1_ip, None).await.unwrap();
    assert_eq!(h.len(), 1, "{b}");

    // Refusals, each changing nothing.
    let before = s.revision().await.unwrap();
    let bad: Vec<(Result<vmfabric_model::Vm, Error>, &str)> = vec![
        (s.add_vm_address("web", 7, false, None).await, "nic"),
        (
            s.add_vm_address("web", 0, false, Some("192.0.2.3")).await,
            "ip",
        ),
        (
            s.add_vm_address("web", 0, false, Some("203.0.113.9")).await,
            "ip",
        ),
        (
            s.add_vm_address("web", 0, true, Some("192.0.2.9")).await,
            "ip",
        ),
        (s.add_vm_address("ghost", 0, false, None).await, "vm"),
        (s.remove_vm_address("web", "192.0.2.9").await, "ip"),
        (s.remove_nic("web", 0, false).await, "nic"),
        (s.remove_nic("web", 1, false).await, "nic"),
        (s.remove_nic("web", 5, false).await, "nic"),
    ];
    for (r, field) in bad {
        match r {
            Err(Error::Invalid { field: f, .. } | Error::Conflict { field: f, .. }) => {
                assert_eq!(f, field, "{b}")
            }
            Err(Error::NotFound { object, .. }) => assert_eq!(object, field, "{b}"),
            other => panic!("{b}: {field}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // Remove the NIC's address, then the NIC; the log has each step.
    s.remove_vm_address("web", &nic1_ip).await.unwrap();
    let v = s.remove_nic("web", 1, false).await.unwrap();
    assert_eq!(v.nics.len(), 1, "{b}");
    let kinds: Vec<String> = s
        .all_changes(&ChangeFilter {
            since: Some(before),
            object: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["ip.release", "vm.remove-nic"], "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_routing_node_gets_its_ipv6_slash_64_while_its_vms_run() {
    for t in stores().await {
        ipv6_on(t).await;
    }
}

async fn ipv6_on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into()],
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    s.create_vm("hz", &vm("mail", "h1")).await.unwrap();
    // No IPv6 yet: a VM cannot get one.
    assert!(
        s.add_vm_address("mail", 0, true, None).await.is_err(),
        "{b}"
    );

    // The seed: Nodes → h1 → IP addresses → IPv6 → add ::2/64.
    let before = s.revision().await.unwrap();
    for (text, field) in [
        ("2a01:4f8:1:2::2/48", "ipv6"),
        ("203.0.113.2/64", "ipv6"),
        ("2a01:4f8:1:2::/64", "ipv6"),
    ] {
        match s.add_node_ipv6("h1", text, None).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{b}: {text}"),
            other => panic!("{b}: {text}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    let view = s
        .add_node_ipv6("h1", "2a01:4f8:1:2::2/64", None)
        .await
        .unwrap();
    let six = view.node.routing.as_ref().unwrap().ipv6.as_ref().unwrap();
    assert_eq!(six.gateway.to_string(), "fe80::1", "{b}");
    assert!(matches!(
        s.add_node_ipv6("h1", "2a01:4f8:1:3::2/64", None).await,
        Err(Error::Conflict { .. })
    ));
    // The running VM gets IPv6 in place; the node's own ::2 is never a VM's.
    let v = s.add_vm_address("mail", 0, true, None).await.unwrap();
    assert_eq!(
        v.nics[0].addresses[1].address.to_string(),
        "2a01:4f8:1:2::3",
        "{b}"
    );
    let plan = build(&s.plan_input("h1").await.unwrap());
    let text = serde_json::to_string(&plan).unwrap();
    assert!(text.contains("2a01:4f8:1:2::3"), "{b}: {text}");
    // Held: refused, naming the holder; then it goes.
    match s.remove_node_ipv6("h1", false).await {
        Err(Error::Conflict { rule, .. }) => {
            assert!(rule.contains("2a01:4f8:1:2::3 (VM mail)"), "{b}: {rule}")
        }
        other => panic!("{b}: {other:?}"),
    }
    s.remove_vm_address("mail", "2a01:4f8:1:2::3")
        .await
        .unwrap();
    let view = s.remove_node_ipv6("h1", false).await.unwrap();
    assert!(view.node.routing.as_ref().unwrap().ipv6.is_none(), "{b}");
    assert!(matches!(
        s.remove_node_ipv6("h1", false).await,
        Err(Error::NotFound { .. })
    ));
    // And back again, as a node added with it would have it.
    s.add_node_ipv6("h1", "2a01:4f8:1:2::2/64", Some("2a01:4f8:1:2::1"))
        .await
        .unwrap();
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_network_changes_its_gateway_and_exclusions_in_place() {
    for t in stores().await {
        network_on(t).await;
    }
}

async fn network_on(t: TestStore) {
    use vmfabric_model::NetworkPatch;
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/28")).await.unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    s.create_vm("sw", &vm("a", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "a").await, "192.0.2.3", "{b}");
    let patch = |gw: Option<&str>, add: &[&str], remove: &[&str]| NetworkPatch {
        shrink_to: None,
        gateway: gw.map(String::from),
        add_exclusions: add.iter().map(|x| x.to_string()).collect(),
        remove_exclusions: remove.iter().map(|x| x.to_string()).collect(),
    };

    // Refusals change nothing.
    let before = s.revision().await.unwrap();
    for (p, field) in [
        (patch(None, &[], &[]), "patch"),
        (patch(None, &["192.0.2.3"], &[]), "add-exclusion"),
        (patch(None, &["192.0.2.20"], &[]), "exclude"),
        (patch(None, &[], &["192.0.2.9"]), "remove-exclusion"),
        (patch(Some("192.0.2.3"), &[], &[]), "gateway"),
        (patch(Some("192.0.2.2"), &[], &[]), "gateway"),
        (patch(Some("198.51.100.1"), &[], &[]), "gateway"),
    ] {
        match s.update_network("sw", "192.0.2.0/28", &p).await {
            Err(Error::Invalid { field: f, rule, .. } | Error::Conflict { field: f, rule, .. }) => {
                assert_eq!(f, field, "{b}: {p:?}: {rule}")
            }
            other => panic!("{b}: {p:?}: {other:?}"),
        }
    }
    assert!(matches!(
        s.update_network("sw", "192.0.2.16/28", &patch(Some("192.0.2.14"), &[], &[]))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // The gateway moves to .14 (VMs follow) and .1 becomes a VM's;
    // .4-.6 are kept back.
    let v = s
        .update_network(
            "sw",
            "192.0.2.0/28",
            &patch(Some("192.0.2.14"), &["192.0.2.4-192.0.2.6"], &[]),
        )
        .await
        .unwrap();
    assert_eq!(v.exclusions.len(), 5, "{b}: {v:?}");
    let a = s.vm("a").await.unwrap();
    assert_eq!(
        a.nics[0].addresses[0].gateway.unwrap().to_string(),
        "192.0.2.14",
        "{b}"
    );
    s.create_vm("sw", &vm("b", "s1")).await.unwrap();
    s.create_vm("sw", &vm("c", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "b").await, "192.0.2.1", "{b}");
    assert_eq!(ip_of(s, "c").await, "192.0.2.7", "{b}");
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("192.0.2.0/28".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[0].kind, "network.set", "{b}");
    assert_eq!(log[0].reach, Reach::Cluster, "{b}");
    // Given back: the next VM takes .4.
    s.update_network(
        "sw",
        "192.0.2.0/28",
        &patch(None, &[], &["192.0.2.4-192.0.2.6"]),
    )
    .await
    .unwrap();
    s.create_vm("sw", &vm("d", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "d").await, "192.0.2.4", "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_node_changes_its_interfaces_in_place() {
    for t in stores().await {
        node_set_on(t).await;
    }
}

async fn node_set_on(t: TestStore) {
    use vmfabric_model::NodePatch;
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into()],
            ipv6: Some("2a01:4f8:1::2/64".into()),
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    s.create_vm("hz", &vm("web", "h1")).await.unwrap();
    let set = |uplink: Option<&str>, bridge: Option<&str>, ndp: Option<&str>| NodePatch {
        uplink: uplink.map(String::from),
        bridge: bridge.map(String::from),
        ndp_proxy: ndp.map(String::from),
        uplink_mac: None,
        address: None,
        primary_ip: None,
        nameservers: None,
        search_domains: None,
    };
    let before = s.revision().await.unwrap();
    for (p, field) in [
        (set(None, None, None), "patch"),
        (set(Some("lo"), None, None), "uplink"),
        (set(Some("vmbr0"), None, None), "bridge"),
        (set(None, None, Some("sometimes")), "ndp-proxy"),
        (set(Some("web_net0"), None, None), "uplink"),
        (
            set(Some("an-interface-name-too-long"), None, None),
            "uplink",
        ),
    ] {
        match s.update_node("h1", &p).await {
            Err(Error::Invalid { field: f, rule, .. } | Error::Conflict { field: f, rule, .. }) => {
                assert_eq!(f, field, "{b}: {p:?}: {rule}")
            }
            other => panic!("{b}: {p:?}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    let v = s
        .update_node("h1", &set(Some("enp1s0"), None, Some("ndppd")))
        .await
        .unwrap();
    assert_eq!(v.node.uplink.as_str(), "enp1s0", "{b}");
    assert_eq!(v.ranges.len(), 2, "{b}: blocks untouched");
    let plan = build(&s.plan_input("h1").await.unwrap());
    assert_eq!(plan.uplink, "enp1s0", "{b}");
    assert!(plan.ndp.is_some(), "{b}");
    let log = s
        .all_changes(&ChangeFilter {
            since: Some(before),
            object: None,
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "{b}");
    assert_eq!(log[0].detail["before"]["uplink"], "eno1", "{b}");
    assert_eq!(log[0].reach, Reach::Nodes(vec!["h1".into()]), "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_network_shrinks_in_place_around_what_it_holds() {
    for t in stores().await {
        shrink_on(t).await;
    }
}

async fn shrink_on(t: TestStore) {
    use vmfabric_model::NetworkPatch;
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network(
        "sw",
        &vmfabric_model::network::NetworkInput {
            exclude: vec!["192.0.2.28-192.0.2.40".into()],
            ..network("192.0.2.0/26")
        },
    )
    .await
    .unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    for name in ["a", "b", "c"] {
        s.create_vm("sw", &vm(name, "s1")).await.unwrap();
    }
    // c (.5) goes: its address cools down outside the smaller network.
    s.delete_vm("c").await.unwrap();
    s.reserve("192.0.2.20", Some("lb")).await.unwrap();
    s.reserve("192.0.2.50", None).await.unwrap();
    let shrink = |to: &str| NetworkPatch {
        shrink_to: Some(to.into()),
        ..NetworkPatch::default()
    };

    // Refusals name the field and the holders, and change nothing.
    let before = s.revision().await.unwrap();
    for (p, field, words) in [
        (shrink("192.0.2.0/27"), "shrink-to", "192.0.2.50 (reserved)"),
        (shrink("192.0.2.0/28"), "shrink-to", "192.0.2.20 (reserved)"),
        (shrink("192.0.2.32/27"), "shrink-to", "gateway 192.0.2.1"),
        (shrink("192.0.2.0/26"), "shrink-to", "smaller"),
        (shrink("192.0.2.64/27"), "shrink-to", "inside"),
        (shrink("10.0.0.0/8"), "shrink-to", "inside"),
        (shrink("192.0.2.0/33"), "shrink-to", ""),
        (
            NetworkPatch {
                gateway: Some("192.0.2.3".into()),
                ..shrink("192.0.2.0/27")
            },
            "shrink-to",
            "of its own",
        ),
    ] {
        match s.update_network("sw", "192.0.2.0/26", &p).await {
            Err(Error::Invalid { field: f, rule, .. } | Error::Conflict { field: f, rule, .. }) => {
                assert_eq!(f, field, "{b}: {p:?}: {rule}");
                assert!(rule.contains(words), "{b}: {p:?}: {rule}");
            }
            other => panic!("{b}: {p:?}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // Released, .50 is no longer in the way: the /26 becomes a /27.
    s.release("192.0.2.50").await.unwrap();
    let v = s
        .update_network("sw", "192.0.2.0/26", &shrink("192.0.2.0/27"))
        .await
        .unwrap();
    assert_eq!(
        v.block.cidr.map(|c| c.to_string()).as_deref(),
        Some("192.0.2.0/27"),
        "{b}"
    );
    let reasons: Vec<(String, String)> = v
        .exclusions
        .iter()
        .map(|e| (e.range.clone(), e.reason.clone()))
        .collect();
    // The operator's exclusion is clipped; .31 is the new broadcast.
    assert!(
        reasons.contains(&(
            "192.0.2.28-192.0.2.31".into(),
            "excluded by the operator".into()
        )),
        "{b}: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, why)| r == "192.0.2.31" && why == "broadcast address"),
        "{b}: {reasons:?}"
    );
    assert!(
        !reasons.iter().any(|(r, _)| r.contains("192.0.2.63")),
        "{b}: {reasons:?}"
    );
    // The old network is gone, the new one answers; the VMs stay.
    assert!(matches!(
        s.update_network("sw", "192.0.2.0/26", &shrink("192.0.2.0/28"))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(ip_of(s, "a").await, "192.0.2.3", "{b}");
    assert_eq!(
        s.vm("a").await.unwrap().nics[0].addresses[0].prefix_len,
        27,
        "{b}"
    );
    // .50 left the pool with the rest of the upper half: no block holds it.
    assert!(s.reserve("192.0.2.50", None).await.is_err(), "{b}");
    let log = s
        .all_changes(&ChangeFilter {
            since: Some(before),
            object: Some("192.0.2.0/27".into()),
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "{b}: {log:?}");
    assert_eq!(log[0].kind, "network.shrink", "{b}");
    assert_eq!(
        log[0].detail["before"]["cidr"], "192.0.2.0/26",
        "{b}: {:?}",
        log[0].detail
    );
    // New VMs fill what is left: .6 .. .27, never .31.
    for i in 0..22 {
        s.create_vm("sw", &vm(&format!("n{i}"), "s1"))
            .await
            .unwrap();
    }
    assert!(
        matches!(
            s.create_vm("sw", &vm("full", "s1")).await,
            Err(Error::Exhausted { .. })
        ),
        "{b}"
    );
    assert_consistent(s).await;

    // A VM on the would-be broadcast address refuses the smaller network.
    s.add_network("sw", &network("198.51.100.0/27"))
        .await
        .unwrap();
    s.create_vm(
        "sw",
        &vmfabric_model::VmInput {
            ips: vec!["198.51.100.15".into()],
            ..vm("edge", "s1")
        },
    )
    .await
    .unwrap();
    let before = s.revision().await.unwrap();
    match s
        .update_network("sw", "198.51.100.0/27", &shrink("198.51.100.0/28"))
        .await
    {
        Err(Error::Conflict { rule, .. }) => assert!(rule.contains("VM edge"), "{b}: {rule}"),
        other => panic!("{b}: {other:?}"),
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    assert_consistent(s).await;
}

#[tokio::test]
async fn a_node_changes_its_own_address_in_place() {
    for t in stores().await {
        node_address_on(t).await;
    }
}

async fn node_address_on(t: TestStore) {
    use vmfabric_model::NodePatch;
    let s = &t.store;
    let b = t.backend;
    let to = |a: &str| NodePatch {
        address: Some(a.into()),
        ..NodePatch::default()
    };
    // Routing: the primary IP follows the address, and with it the VMs'
    // IPv4 gateway.
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into()],
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.48/29".into()],
            ..node("h2", "123.45.12.49")
        },
    )
    .await
    .unwrap();
    s.create_vm("hz", &vm("web", "h1")).await.unwrap();
    let before = s.revision().await.unwrap();
    for (p, field, words) in [
        (to("123.45.12.49"), "address", "node h2"),
        (to("203.0.113.50"), "address", "another node"),
        (to("not-an-ip"), "address", ""),
        (
            NodePatch {
                primary_ip: Some("2001:db8::1".into()),
                ..NodePatch::default()
            },
            "primary-ip",
            "IPv4",
        ),
    ] {
        match s.update_node("h1", &p).await {
            Err(Error::Invalid { field: f, rule, .. } | Error::Conflict { field: f, rule, .. }) => {
                assert_eq!(f, field, "{b}: {p:?}: {rule}");
                assert!(rule.contains(words), "{b}: {p:?}: {rule}");
            }
            other => panic!("{b}: {p:?}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    let v = s.update_node("h1", &to("123.45.12.50")).await.unwrap();
    assert_eq!(v.node.address.to_string(), "123.45.12.50", "{b}");
    assert_eq!(
        v.node.routing.as_ref().map(|r| r.primary_ip.to_string()),
        Some("123.45.12.50".into()),
        "{b}"
    );
    let web = s.vm("web").await.unwrap();
    assert_eq!(
        web.nics[0].addresses[0].gateway.map(|g| g.to_string()),
        Some("123.45.12.50".into()),
        "{b}"
    );
    // The old address is free for another node now.
    s.update_node("h2", &to("123.45.12.48")).await.unwrap();
    let log = s
        .all_changes(&ChangeFilter {
            since: Some(before),
            object: Some("h1".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[0].detail["before"]["address"], "123.45.12.48", "{b}");
    assert_eq!(log[0].reach, Reach::Cluster, "{b}");

    // Switching: the node's address is carved out of the pool; a new one
    // is carved, the old one goes back to the pool.
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/29")).await.unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    s.create_vm("sw", &vm("a", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "a").await, "192.0.2.3", "{b}");
    match s.update_node("s1", &to("192.0.2.3")).await {
        Err(Error::Conflict { field, rule, .. }) => {
            assert_eq!(field, "address", "{b}");
            assert!(rule.contains("VM a"), "{b}: {rule}");
        }
        other => panic!("{b}: {other:?}"),
    }
    s.update_node("s1", &to("192.0.2.6")).await.unwrap();
    // .2 is free again, .6 is the node's: the pool hands out .2, .4, .5.
    for name in ["b", "c", "d"] {
        s.create_vm("sw", &vm(name, "s1")).await.unwrap();
    }
    let got = [
        ip_of(s, "b").await,
        ip_of(s, "c").await,
        ip_of(s, "d").await,
    ];
    assert_eq!(got, ["192.0.2.2", "192.0.2.4", "192.0.2.5"], "{b}");
    assert!(
        matches!(
            s.create_vm("sw", &vm("e", "s1")).await,
            Err(Error::Exhausted { .. })
        ),
        "{b}"
    );
    assert_consistent(s).await;
}

#[tokio::test]
async fn forced_removals_release_what_they_remove_and_record_it() {
    for t in stores().await {
        force_on(t).await;
    }
}

async fn force_on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into(), "203.0.113.48/29".into()],
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    for name in ["a", "b"] {
        s.create_vm("hz", &vm(name, "h1")).await.unwrap();
    }
    s.reserve("203.0.113.45", Some("vip")).await.unwrap();
    s.reserve("203.0.113.50", None).await.unwrap();
    s.add_nic("b", true, false).await.unwrap();
    let nic1 = s.vm("b").await.unwrap().nics[1].addresses[0]
        .address
        .to_string();

    // Without --force: refused, naming the holders, nothing changes.
    let before = s.revision().await.unwrap();
    match s.remove_node_block("h1", "203.0.113.48/29", false).await {
        Err(Error::Conflict { rule, .. }) => {
            assert!(rule.contains("203.0.113.50 (reserved)"), "{b}: {rule}");
            assert!(rule.contains("--force"), "{b}: {rule}");
        }
        other => panic!("{b}: {other:?}"),
    }
    assert!(matches!(
        s.remove_nic("b", 1, false).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        s.remove_node("h1", false).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // A NIC with its address, then a subnet with a reservation.
    let v = s.remove_nic("b", 1, true).await.unwrap();
    assert_eq!(v.nics.len(), 1, "{b}");
    let h = s.all_history(&nic1, None).await.unwrap();
    assert!(h[0].until.is_some(), "{b}: {h:?}");
    let view = s
        .remove_node_block("h1", "203.0.113.48/29", true)
        .await
        .unwrap();
    assert_eq!(view.ranges.len(), 1, "{b}");
    // The whole node: its VMs deleted, its reservation released.
    let since = s.revision().await.unwrap();
    s.remove_node("h1", true).await.unwrap();
    let kinds: Vec<(String, String)> = s
        .all_changes(&ChangeFilter {
            since: Some(since),
            object: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.subject))
        .collect();
    assert_eq!(
        kinds,
        [
            ("vm.delete".to_string(), "a".to_string()),
            ("vm.delete".into(), "b".into()),
            ("ip.release".into(), "203.0.113.45".into()),
            ("node.remove".into(), "h1".into()),
        ],
        "{b}"
    );
    for ip in [
        "203.0.113.40",
        "203.0.113.41",
        "203.0.113.45",
        "203.0.113.50",
    ] {
        let h = s.all_history(ip, None).await.unwrap();
        assert!(
            !h.is_empty() && h.iter().all(|e| e.until.is_some()),
            "{b}: {ip}: {h:?}"
        );
    }
    assert!(
        matches!(s.node("h1").await, Err(Error::NotFound { .. })),
        "{b}"
    );

    // A pool network: the VM keeps its NIC, without the address.
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/29")).await.unwrap();
    s.add_network("sw", &network("192.0.2.8/29")).await.unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    s.create_vm("sw", &vm("c", "s1")).await.unwrap();
    s.add_vm_address("c", 0, false, Some("192.0.2.10"))
        .await
        .unwrap();
    s.remove_network("sw", "192.0.2.8/29", true).await.unwrap();
    let c = s.vm("c").await.unwrap();
    let left: Vec<String> = c.nics[0]
        .addresses
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(left, ["192.0.2.3"], "{b}");
    let h = s.all_history("192.0.2.10", None).await.unwrap();
    assert!(h[0].until.is_some(), "{b}: {h:?}");
    assert_consistent(s).await;
}

/// The guests' DNS and MTU: set at creation, changed and cleared in place
/// on the cluster, replaced per routing node; refusals change nothing;
/// what a VM's guest config says follows.
#[tokio::test]
async fn guest_dns_and_mtu_change_in_place() {
    for t in stores().await {
        guest_settings_on(t).await;
    }
}

async fn guest_settings_on(t: TestStore) {
    use vmfabric_model::{ClusterPatch, GuestNetwork, NodePatch};
    use vmfabric_plan::files::{GuestFormat, guest_file};
    let s = &t.store;
    let b = t.backend;
    let strs = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    s.create_cluster(&vmfabric_model::ClusterInput {
        nameservers: strs(&["192.0.2.53"]),
        search_domains: strs(&["example.com"]),
        mtu: Some("1400".into()),
        ..cluster("hz", "routing")
    })
    .await
    .unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into()],
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    s.create_vm("hz", &vm("v1", "h1")).await.unwrap();
    let rendered = || async {
        let v = s.vm("v1").await.unwrap();
        let c = s.cluster("hz").await.unwrap().cluster;
        let n = s.node("h1").await.unwrap().node;
        guest_file(&v, &c, &n, GuestFormat::CloudInit, &Default::default())
            .unwrap()
            .text
    };
    let text = rendered().await;
    assert!(text.contains("mtu: 1400"), "{b}: {text}");
    assert!(text.contains("\"192.0.2.53\""), "{b}: {text}");

    // Refusals change nothing.
    let before = s.revision().await.unwrap();
    for (patch, field) in [
        (
            ClusterPatch {
                mtu: Some("100".into()),
                ..ClusterPatch::default()
            },
            "mtu",
        ),
        (
            ClusterPatch {
                nameservers: Some(strs(&["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"])),
                ..ClusterPatch::default()
            },
            "nameserver",
        ),
        (
            ClusterPatch {
                search_domains: Some(strs(&["bad_domain"])),
                ..ClusterPatch::default()
            },
            "search-domain",
        ),
    ] {
        match s.update_cluster("hz", &patch).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{b}"),
            other => panic!("{b}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // The node's own resolvers replace the cluster's for its VMs; the
    // cluster's MTU stays.
    let n = s
        .update_node(
            "h1",
            &NodePatch {
                nameservers: Some(strs(&["213.133.98.98", "2a01:4f8:0:1::add:1010"])),
                ..NodePatch::default()
            },
        )
        .await
        .unwrap();
    let dns = n.node.routing.as_ref().unwrap().dns.clone().unwrap();
    assert_eq!(dns.nameservers.len(), 2, "{b}");
    let c = s.cluster("hz").await.unwrap().cluster;
    let g = GuestNetwork::of(&c, Some(&n.node));
    assert_eq!(g.dns, dns, "{b}");
    assert_eq!(g.mtu, Some(1400), "{b}");
    let text = rendered().await;
    assert!(text.contains("\"213.133.98.98\""), "{b}: {text}");
    assert!(!text.contains("192.0.2.53"), "{b}: {text}");

    // Cleared on the node: the cluster's again; cluster MTU back to auto
    // and new cluster resolvers.
    s.update_node(
        "h1",
        &NodePatch {
            nameservers: Some(Vec::new()),
            search_domains: Some(Vec::new()),
            ..NodePatch::default()
        },
    )
    .await
    .unwrap();
    let c = s
        .update_cluster(
            "hz",
            &ClusterPatch {
                mtu: Some("auto".into()),
                nameservers: Some(strs(&["198.51.100.53"])),
                ..ClusterPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.mtu, None, "{b}");
    assert_eq!(c.dns.search, vec!["example.com"], "{b}");
    let text = rendered().await;
    assert!(!text.contains("mtu:"), "{b}: {text}");
    assert!(text.contains("\"198.51.100.53\""), "{b}: {text}");
    assert!(text.contains("\"example.com\""), "{b}: {text}");

    // Logged with before and after.
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("hz".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[0].kind, "cluster.set", "{b}");
    assert_eq!(log[0].detail["before"]["mtu"], 1400, "{b}");
    assert!(log[0].detail["after"].get("mtu").is_none(), "{b}");

    // Only routing nodes take their own DNS.
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_node("sw", &node("s1", "10.1.0.1")).await.unwrap();
    match s
        .update_node(
            "s1",
            &NodePatch {
                nameservers: Some(strs(&["192.0.2.53"])),
                ..NodePatch::default()
            },
        )
        .await
    {
        Err(Error::Invalid { field, rule, .. }) => {
            assert_eq!(field, "nameserver", "{b}");
            assert!(rule.contains("cluster set"), "{b}: {rule}");
        }
        other => panic!("{b}: {other:?}"),
    }
    assert_consistent(s).await;
}
