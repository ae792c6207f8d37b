//! Golden files of every rendered output for the seed examples and mixed
//! IPv4/IPv6 (regenerate with `INSTA_UPDATE=always cargo test -p
//! vmfabric-plan`, then read the diff), and the properties that make plans
//! trustworthy: order independence, valid names everywhere.
#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;
use vmfabric_model::{Dns, GuestNetwork};
use vmfabric_plan::render::{bird, frr, guest, libvirt, lxd, ndppd, nft, summary};
use vmfabric_plan::{LinkKind, build, diff};

fn plan_json(p: &vmfabric_plan::NodePlan) -> String {
    serde_json::to_string_pretty(p).unwrap()
}

#[test]
fn switching_seed() {
    let plan = build(&common::switching());
    insta::assert_snapshot!("switching_plan", plan_json(&plan));
    insta::assert_snapshot!("switching_summary", summary::summary(&plan));
    insta::assert_snapshot!("switching_nft", nft::ruleset(&plan, None));
    assert!(frr::node(&plan).is_none());
    assert!(ndppd::conf(&plan).is_none());
    let vm = &common::switching().vms[0];
    insta::assert_snapshot!(
        "switching_cloud_init",
        guest::cloud_init(vm, &GuestNetwork::default())
    );
    insta::assert_snapshot!("switching_libvirt", libvirt::interfaces_xml(vm));
    insta::assert_snapshot!("switching_libvirt_domain", libvirt::domain(vm, None));
}

#[test]
fn routing_seed_with_kernel_ndp_proxy() {
    let input = common::routing("kernel");
    let plan = build(&input);
    insta::assert_snapshot!("routing_plan", plan_json(&plan));
    insta::assert_snapshot!("routing_summary", summary::summary(&plan));
    insta::assert_snapshot!("routing_nft", nft::ruleset(&plan, None));
    assert!(ndppd::conf(&plan).is_none());
    insta::assert_snapshot!(
        "routing_cloud_init",
        guest::cloud_init(&input.vms[0], &GuestNetwork::default())
    );
    // The node's data centre resolvers, and a provider MTU below 1500.
    let net = GuestNetwork {
        dns: Dns::parse(
            &["185.12.64.1".into(), "2a01:4ff:ff00::add:1".into()],
            &["example.com".into()],
        )
        .expect("valid DNS"),
        mtu: Some(1400),
    };
    insta::assert_snapshot!(
        "routing_cloud_init_dns_mtu",
        guest::cloud_init(&input.vms[0], &net)
    );
}

#[test]
fn routing_seed_with_ndppd() {
    let plan = build(&common::routing("ndppd"));
    assert!(
        plan.neighbour_proxies.is_empty(),
        "ndppd answers, not the kernel"
    );
    insta::assert_snapshot!("routing_ndppd", ndppd::conf(&plan).unwrap());
}

#[test]
fn fabric_seed_dual_stack() {
    let input = common::fabric("kvm");
    let plan = build(&input);
    insta::assert_snapshot!("fabric_plan", plan_json(&plan));
    insta::assert_snapshot!("fabric_summary", summary::summary(&plan));
    insta::assert_snapshot!("fabric_frr", frr::node(&plan).unwrap());
    insta::assert_snapshot!("fabric_nft", nft::ruleset(&plan, None));
    insta::assert_snapshot!(
        "fabric_cloud_init",
        guest::cloud_init(&input.vms[0], &GuestNetwork::default())
    );
    let nodes = common::fabric_nodes();
    let rr = "172.16.0.2".parse().unwrap();
    let core = ["172.16.0.3".parse().unwrap()];
    insta::assert_snapshot!(
        "fabric_rr_frr",
        frr::reflector(&input.cluster, &nodes, rr, &core).unwrap()
    );
    insta::assert_snapshot!(
        "fabric_rr_bird",
        bird::reflector(&input.cluster, &nodes, rr, &core).unwrap()
    );
}

#[test]
fn lxd_nodes_get_veth_pairs() {
    let input = common::fabric("lxd");
    let plan = build(&input);
    let vm_links: Vec<_> = plan.links.iter().filter(|l| l.vm.is_some()).collect();
    assert!(!vm_links.is_empty());
    for l in vm_links {
        assert_eq!(l.kind, LinkKind::Veth);
        let peer = l.peer.as_deref().unwrap();
        assert!(
            peer.ends_with("_g0") && peer.len() <= l.name.len(),
            "{peer}"
        );
        // The peer carries the VM's MAC: the one the firewall lets through.
        let port = plan.firewall.ports.iter().find(|p| p.ifname == l.name);
        assert_eq!(l.peer_mac.as_deref(), port.map(|p| p.mac.as_str()));
    }
    let vm = &input.vms[0];
    let text = lxd::instance(vm, &GuestNetwork::default());
    insta::assert_snapshot!("fabric_lxd", text);
    // The device's parent is the plan's peer, its hwaddr the peer's MAC.
    let l = &plan
        .links
        .iter()
        .find(|l| l.vm.as_deref() == Some(vm.name.as_str()))
        .unwrap();
    assert!(text.contains(&format!("parent: {}\n", l.peer.as_deref().unwrap())));
    assert!(text.contains(&format!("hwaddr: \"{}\"\n", l.peer_mac.as_deref().unwrap())));
}

#[test]
fn the_plan_says_where_each_address_goes() {
    // Switching: on-link, bridged, the node's address with the network prefix.
    let sw = build(&common::switching());
    assert!(sw.routes.is_empty());
    assert!(
        sw.addresses
            .iter()
            .any(|a| a.dev == "vmbr0" && a.cidr == "192.0.2.2/27")
    );
    assert!(
        sw.links
            .iter()
            .any(|l| l.name == "vmbr0" && l.mac_from_uplink)
    );
    assert!(
        sw.links
            .iter()
            .filter(|l| l.vm.is_some())
            .all(|l| l.master.as_deref() == Some("vmbr0"))
    );
    // Routing: /32 routes to the bridge, primary IP as /32 on it, proxy ARP
    // only because vm3 holds an address from the node's own /26, the guard.
    let r = build(&common::routing("kernel"));
    for dst in ["203.0.113.40/32", "203.0.113.41/32", "123.45.12.60/32"] {
        assert!(
            r.routes.iter().any(|x| x.dst == dst && x.dev == "vmbr0"),
            "{dst}"
        );
    }
    assert!(
        r.addresses
            .iter()
            .any(|a| a.dev == "vmbr0" && a.cidr == "123.45.12.48/32")
    );
    assert!(
        r.sysctls
            .iter()
            .any(|s| s.key == "net.ipv4.conf.eno1.proxy_arp")
    );
    assert!(
        r.neighbour_proxies
            .iter()
            .any(|p| p.dev == "eno1" && p.address.to_string() == "2a01:4f8:13b:9a7::3")
    );
    assert!(
        r.neighbour_proxies
            .iter()
            .any(|p| p.dev == "eno1" && p.address.to_string() == "2a01:4f8:13b:9a7::2")
    );
    assert!(
        r.neighbour_proxies
            .iter()
            .any(|p| p.dev == "vmbr0" && p.address.to_string() == "2a01:4f8:13b:9a7::1")
    );
    assert_eq!(
        r.firewall.uplink_guard.as_ref().unwrap().mac.as_deref(),
        Some("96:f7:b7:55:42:3d")
    );
    let mut no_onlink = common::routing("kernel");
    no_onlink.vms.pop();
    assert!(
        !build(&no_onlink)
            .sysctls
            .iter()
            .any(|s| s.key.ends_with("proxy_arp"))
    );
    // IP-fabric: the VM gateway on every <vm>_net0, host routes to it.
    let f = build(&common::fabric("kvm"));
    for (dev, dst) in [
        ("vm1_net0", "198.51.100.0/32"),
        ("vm1_net0", "2001:db8:2::/128"),
        ("vm3_net0", "198.51.100.2/32"),
    ] {
        assert!(
            f.routes.iter().any(|x| x.dst == dst && x.dev == dev),
            "{dst}"
        );
        assert!(
            f.addresses
                .iter()
                .any(|a| a.dev == dev && a.cidr == "10.0.0.1/32")
        );
    }
    assert!(f.links.iter().all(|l| l.master.is_none()));
    let bgp = f.bgp.unwrap();
    assert_eq!(bgp.pool_v4, ["198.51.100.0/24"]);
    assert_eq!(bgp.community, "65000:100");
}

#[test]
fn long_vm_names_give_valid_names_everywhere() {
    let plan = build(&common::fabric("kvm"));
    for l in &plan.links {
        assert!(l.name.len() <= 15 && !l.name.is_empty(), "{}", l.name);
        assert!(
            l.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        );
    }
    let long = plan
        .links
        .iter()
        .find(|l| l.vm.as_deref() == Some("customer-frontend-01"))
        .unwrap();
    assert!(long.name.ends_with("_net0"));
    let text = nft::ruleset(&plan, None);
    assert!(text.contains(&format!("\"{}\"", long.name)));
    assert!(!text.contains("customer-frontend-01_net0"));
}

#[test]
fn a_changed_plan_diffs_item_by_item() {
    let before = build(&common::fabric("kvm"));
    let mut input = common::fabric("kvm");
    input.vms.remove(1);
    let after = build(&input);
    let changes: Vec<String> = diff::diff(&before, &after)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        changes.contains(&"- route 198.51.100.2/32 dev vm3_net0".to_string()),
        "{changes:?}"
    );
    assert!(changes.contains(&"- address 10.0.0.1/32 dev vm3_net0".to_string()));
    assert!(changes.iter().all(|c| c.starts_with('-')));
    assert!(diff::diff(&after, &after).is_empty());
}

proptest! {
    /// The order in which the store lists VMs and networks never shows.
    #[test]
    fn plans_do_not_depend_on_order(seed in any::<u64>()) {
        for mut input in [common::switching(), common::routing("kernel"), common::fabric("lxd")] {
            let want = build(&input);
            let mut s = seed;
            let mut shuffle = |n: usize| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); (s >> 33) as usize % n.max(1) };
            for i in (1..input.vms.len()).rev() {
                let j = shuffle(i + 1);
                input.vms.swap(i, j);
            }
            for i in (1..input.networks.len()).rev() {
                let j = shuffle(i + 1);
                input.networks.swap(i, j);
            }
            let got = build(&input);
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(nft::ruleset(&got, None), nft::ruleset(&want, None));
            prop_assert_eq!(frr::node(&got), frr::node(&want));
        }
    }
}

/// A VM with two NICs and several addresses: one default route per family
/// in the main table, the second NIC's in a table chosen by its source
/// addresses, and every NIC in the plan and the libvirt interfaces.
#[test]
fn several_nics_and_addresses() {
    use vmfabric_model::names::{Mac, host_ifname};
    let mut input = common::fabric("kvm");
    let (c, n, nets) = (&input.cluster, &input.node, &input.networks);
    let mut multi = common::vm(
        c,
        n,
        nets,
        "multi",
        &["198.51.100.10", "198.51.100.11", "2001:db8:2::10"],
    );
    let other = common::vm(c, n, nets, "multi", &["198.51.100.12", "2001:db8:2::12"]);
    let mut second = other.nics[0].clone();
    second.index = 1;
    second.mac = Mac::for_nic(7, "multi", 1, 0);
    second.host_interface = host_ifname("multi", 1).unwrap();
    multi.nics.push(second);
    let cloud = guest::cloud_init(&multi, &GuestNetwork::default());
    insta::assert_snapshot!("several_nics_cloud_init", cloud);
    insta::assert_snapshot!("several_nics_libvirt", libvirt::interfaces_xml(&multi));
    insta::assert_snapshot!(
        "several_nics_libvirt_domain",
        libvirt::domain(&multi, Some("/srv/vm's disks/multi.img"))
    );
    let mut lxd_vm = multi.clone();
    lxd_vm.cluster = "fabric-lxd".into();
    insta::assert_snapshot!(
        "several_nics_lxd",
        lxd::instance(&lxd_vm, &GuestNetwork::default())
    );
    // One default route per family in the main table (the first NIC's
    // gateway), one in each NIC's table.
    for key in ["gateway4:", "gateway6:"] {
        assert_eq!(cloud.matches(key).count(), 1, "{cloud}");
    }
    for to in ["0.0.0.0/0", "::/0"] {
        assert_eq!(cloud.matches(&format!("to: {to}")).count(), 2, "{cloud}");
    }
    // net0: 2 routes and 3 sources; net1: 2 routes and 2 sources.
    assert_eq!(cloud.matches("table: 100").count(), 5, "{cloud}");
    assert_eq!(cloud.matches("table: 101").count(), 4, "{cloud}");
    input.vms.push(multi);
    let plan = build(&input);
    let text = plan_json(&plan);
    for name in ["multi_net0", "multi_net1"] {
        assert!(text.contains(name), "{name} missing from the plan");
    }
    for ip in ["198.51.100.11", "198.51.100.12", "2001:db8:2::12"] {
        assert!(text.contains(ip), "{ip} missing from the plan");
    }
}

/// In switching, a second NIC's table also holds its on-link network.
#[test]
fn a_second_switching_nic_keeps_its_network_on_link() {
    use vmfabric_model::names::{Mac, host_ifname};
    let input = common::switching();
    let (c, n, nets) = (&input.cluster, &input.node, &input.networks);
    let mut vm = common::vm(c, n, nets, "two", &["192.0.2.10"]);
    let other = common::vm(c, n, nets, "two", &["192.0.2.40"]);
    let mut second = other.nics[0].clone();
    second.index = 1;
    second.mac = Mac::for_nic(7, "two", 1, 0);
    second.host_interface = host_ifname("two", 1).unwrap();
    vm.nics.push(second);
    insta::assert_snapshot!(
        "switching_second_nic_cloud_init",
        guest::cloud_init(&vm, &GuestNetwork::default())
    );
}

/// Every plan the controller builds passes the check an agent applies to
/// a plan file; a file with a hostile name, sysctl or MAC does not, and
/// no mutation of a plan's JSON makes the check panic.
#[test]
fn plans_from_files_are_checked_by_the_controllers_rules() {
    use vmfabric_plan::synthetic::node_input;
    let mut plans = vec![
        build(&common::switching()),
        build(&common::routing("kernel")),
        build(&common::routing("ndppd")),
        build(&common::fabric("kvm")),
        build(&common::fabric("lxd")),
    ];
    for t in ["switching", "routing", "ip-fabric"] {
        plans.push(build(&node_input(t, "lxd", 3, 20)));
    }
    for p in &plans {
        p.check().unwrap_or_else(|e| panic!("{}: {e}", p.node));
    }
    let base = plans[3].clone();
    type Mutation = Box<dyn Fn(&mut vmfabric_plan::NodePlan)>;
    let bad: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|p| p.links[0].name = "x\" ; flush ruleset".into()),
            "plan.links[0].name",
        ),
        (Box::new(|p| p.uplink = "eno1 accept".into()), "plan.uplink"),
        (
            Box::new(|p| p.links[0].name = "a-name-longer-than-15".into()),
            "plan.links[0].name",
        ),
        (
            Box::new(|p| {
                p.sysctls.push(vmfabric_plan::Sysctl {
                    key: "kernel.core_pattern".into(),
                    value: "1".into(),
                })
            }),
            "key",
        ),
        (
            Box::new(|p| {
                p.sysctls.push(vmfabric_plan::Sysctl {
                    key: "net.ipv4.ip_forward".into(),
                    value: "|/bin/sh".into(),
                })
            }),
            "value",
        ),
        (
            Box::new(|p| p.firewall.ports[0].mac = "zz".into()),
            "plan.firewall.ports[0].mac",
        ),
        (Box::new(|p| p.node = "../etc".into()), "plan.node"),
        (
            Box::new(|p| p.routes[0].dst = "0/0".into()),
            "plan.routes[0].dst",
        ),
    ];
    for (mutate, field) in bad {
        let mut p = base.clone();
        mutate(&mut p);
        match p.check() {
            Err(vmfabric_model::Error::Invalid { field: f, .. }) => {
                assert!(f.contains(field), "{f} should name {field}")
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

proptest! {
    /// Any JSON value put anywhere in a plan decodes or is refused, and a
    /// decoded plan is checked without a panic.
    #[test]
    fn plan_files_never_panic(path_pick in any::<usize>(), v in prop_oneof![
        Just(serde_json::json!(null)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("a\u{0}b")),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        ".{0,40}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
    ]) {
        let plan = build(&common::fabric("lxd"));
        let mut doc = serde_json::to_value(&plan).unwrap();
        // Replace the value at one of the document's leaves.
        let mut leaves = Vec::new();
        fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| walk(x, format!("{at}/{k}"), out)),
                serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(x, format!("{at}/{i}"), out)),
                _ => out.push(at),
            }
        }
        walk(&doc, String::new(), &mut leaves);
        let at = &leaves[path_pick % leaves.len()];
        if let Some(slot) = doc.pointer_mut(at) {
            *slot = v;
        }
        if let Ok(p) = serde_json::from_value::<vmfabric_plan::NodePlan>(doc) {
            let _ = p.check();
        }
    }
}
