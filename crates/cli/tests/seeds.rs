//! The seed documents' three examples, driven through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, first_ip};

#[test]
fn switching_seed_192_0_2_0_27_and_192_0_2_32_27() {
    let e = Env::new();
    e.seed_world();
    let mut ips = Vec::new();
    for i in 0..56 {
        let node = if i % 2 == 0 { "kvm1" } else { "kvm2" };
        let v = e.ok(&["vm", "create", "sw", &format!("s{i}"), "--node", node]);
        ips.push(first_ip(&v));
    }
    // Never the network, broadcast, gateway or a node address.
    for never in [
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.31",
        "192.0.2.32",
        "192.0.2.33",
        "192.0.2.63",
    ] {
        assert!(!ips.contains(&never.to_string()), "{never} was handed out");
    }
    assert_eq!(ips[0], "192.0.2.4");
    assert_eq!(ips[27], "192.0.2.34");
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 56, "duplicates");
    let v = e.ok(&["vm", "show", "s0"]);
    let a = &v["nics"][0]["addresses"][0];
    assert_eq!(a["prefix_len"], 27);
    assert_eq!(a["gateway"], "192.0.2.1");
    assert_eq!(v["nics"][0]["host_interface"], "s0_net0");
    assert!(v["nics"][0]["mac"].as_str().unwrap().len() == 17);
    let err = e.fails(5, &["vm", "create", "sw", "full", "--node", "kvm1"]);
    assert_eq!(err["kind"], "exhausted");
    assert_eq!(err["used"], 56);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("the IPv4 pool of cluster sw")
    );
}

#[test]
fn routing_seed_123_45_12_48_with_203_0_113_40_29() {
    let e = Env::new();
    e.seed_world();
    let mut ips = Vec::new();
    for i in 0..8 {
        let v = e.ok(&["vm", "create", "hz", &format!("r{i}"), "--node", "hz1"]);
        let a = &v["nics"][0]["addresses"][0];
        assert_eq!(a["prefix_len"], 32);
        assert_eq!(a["gateway"], "123.45.12.48");
        ips.push(first_ip(&v));
    }
    let want: Vec<String> = (40..48).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(
        ips, want,
        "first available address of the range, every address usable"
    );
    let err = e.fails(5, &["vm", "create", "hz", "r8", "--node", "hz1"]);
    assert!(
        err["message"].as_str().unwrap().contains("node hz1"),
        "{err}"
    );
    // The other node has its own range.
    let v = e.ok(&["vm", "create", "hz", "other", "--node", "hz2"]);
    assert_eq!(first_ip(&v), "203.0.113.48");
    // First free again after a delete (reuse order: fresh first, here none left).
    e.ok(&["vm", "delete", "r3"]);
    let v = e.ok(&["vm", "create", "hz", "r9", "--node", "hz1"]);
    assert_eq!(first_ip(&v), "203.0.113.43");
}

#[test]
fn routing_ipv6_from_the_nodes_64() {
    let e = Env::new();
    e.seed_world();
    let v = e.ok(&["vm", "create", "hz", "six", "--node", "hz1", "--ipv6"]);
    let addrs = v["nics"][0]["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[1]["address"], "2a01:4f8:13b:9a7::3");
    assert_eq!(addrs[1]["prefix_len"], 64);
    assert_eq!(addrs[1]["gateway"], "2a01:4f8:13b:9a7::2");
    let only6 = e.ok(&["vm", "create", "hz", "only6", "--node", "hz1", "--no-ipv4"]);
    assert_eq!(first_ip(&only6), "2a01:4f8:13b:9a7::4");
    assert_eq!(only6["nics"][0]["addresses"].as_array().unwrap().len(), 1);
}

#[test]
fn ip_fabric_seed_198_51_100_0_24_gateway_10_0_0_1() {
    let e = Env::new();
    e.seed_world();
    for (i, node) in [(1, "node1"), (2, "node2"), (3, "node1")] {
        let v = e.ok(&["vm", "create", "fab", &format!("vm{i}"), "--node", node]);
        let a = &v["nics"][0]["addresses"][0];
        assert_eq!(a["address"], format!("198.51.100.{}", i - 1));
        assert_eq!(a["prefix_len"], 32);
        assert_eq!(a["gateway"], "10.0.0.1");
        assert_eq!(v["nics"][0]["host_interface"], format!("vm{i}_net0"));
        assert_eq!(v["node"], node);
    }
    let c = e.ok(&["cluster", "show", "fab"]);
    assert_eq!(c["type"], "ip-fabric");
    assert_eq!(c["assignment"], "to-cluster");
    assert_eq!(c["fabric"]["community"], "65000:100");
    assert_eq!(c["fabric"]["asn"], 65000);
    assert_eq!(c["vms"], 3);
}

#[test]
fn long_vm_names_get_short_unique_interface_names() {
    let e = Env::new();
    e.seed_world();
    let mut names = Vec::new();
    for i in 0..20 {
        let v = e.ok(&[
            "vm",
            "create",
            "fab",
            &format!("customer-webserver-{i:03}"),
            "--node",
            "node1",
        ]);
        let ifname = v["nics"][0]["host_interface"].as_str().unwrap().to_string();
        assert!(ifname.len() <= 15, "{ifname}");
        assert!(ifname.ends_with("_net0"));
        names.push(ifname);
    }
    let again = e.ok(&["vm", "show", "customer-webserver-007"]);
    assert_eq!(again["nics"][0]["host_interface"], names[7].as_str());
    let mut d = names.clone();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), names.len());
    // A 10-character name fits as is: 15 bytes exactly.
    let v = e.ok(&["vm", "create", "fab", "abcdefghij", "--node", "node1"]);
    assert_eq!(v["nics"][0]["host_interface"], "abcdefghij_net0");
}

#[test]
fn migration_allowed_in_switching_and_fabric_refused_in_routing() {
    let e = Env::new();
    e.seed_world();
    for (cluster, a, b) in [("sw", "kvm1", "kvm2"), ("fab", "node1", "node2")] {
        let name = format!("mig-{cluster}");
        let v = e.ok(&["vm", "create", cluster, &name, "--node", a]);
        let before = first_ip(&v);
        let m = e.ok(&["vm", "migrate", &name, "--to", b]);
        assert_eq!(m["node"], b);
        assert_eq!(first_ip(&m), before, "address kept");
        assert_eq!(e.ok(&["vm", "show", &name])["node"], b);
    }
    e.ok(&["vm", "create", "hz", "pinned", "--node", "hz1"]);
    let before = e.dump();
    let err = e.fails(4, &["vm", "migrate", "pinned", "--to", "hz2"]);
    assert!(
        err["rule"]
            .as_str()
            .unwrap()
            .starts_with("routing clusters pin addresses to their node"),
        "{err}"
    );
    assert_eq!(e.dump(), before);
    assert_eq!(e.ok(&["vm", "show", "pinned"])["node"], "hz1");
    // Not to another cluster's node either.
    e.fails(2, &["vm", "migrate", "mig-sw", "--to", "node1"]);
}

#[test]
fn history_answers_who_had_an_address_when() {
    let e = Env::new();
    e.seed_world();
    let v = e.ok(&[
        "vm",
        "create",
        "hz",
        "alice",
        "--node",
        "hz1",
        "--ip",
        "203.0.113.41",
    ]);
    assert_eq!(first_ip(&v), "203.0.113.41");
    let during_alice = e.ok(&["ip", "history", "203.0.113.41"])[0]["since"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(&["vm", "delete", "alice"]);
    e.ok(&[
        "vm",
        "create",
        "hz",
        "bob",
        "--node",
        "hz1",
        "--ip",
        "203.0.113.41",
    ]);
    let h = e.ok(&["ip", "history", "203.0.113.41"]);
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["vm"], "alice");
    assert!(h[0]["until"].is_string());
    assert_eq!(h[1]["vm"], "bob");
    assert!(h[1]["until"].is_null());
    assert_eq!(h[0]["node"], "hz1");
    // Who had it at the moment alice got it, and the moment alice's ended.
    let at = e.ok(&["ip", "history", "203.0.113.41", "--at", &during_alice]);
    assert_eq!(at.as_array().unwrap().len(), 1);
    assert_eq!(at[0]["vm"], "alice");
    let ended = h[0]["until"].as_str().unwrap();
    let at = e.ok(&["ip", "history", "203.0.113.41", "--at", ended]);
    assert!(at.as_array().unwrap().iter().all(|x| x["vm"] != "alice"));
    // Before anyone: nobody.
    let at = e.ok(&[
        "ip",
        "history",
        "203.0.113.41",
        "--at",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(at.as_array().unwrap().len(), 0);
    // Text output for people.
    let out = e
        .cmd()
        .args(["ip", "history", "203.0.113.41"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
}

#[test]
fn reserve_release_and_listing() {
    let e = Env::new();
    e.seed_world();
    let r = e.ok(&["ip", "reserve", "198.51.100.0", "--note", "router"]);
    assert_eq!(r["holder"], "reserved");
    let v = e.ok(&["vm", "create", "fab", "a", "--node", "node1"]);
    assert_eq!(first_ip(&v), "198.51.100.1", "reserved address skipped");
    let err = e.fails(
        4,
        &[
            "vm",
            "create",
            "fab",
            "b",
            "--node",
            "node1",
            "--ip",
            "198.51.100.0",
        ],
    );
    assert!(
        err["rule"]
            .as_str()
            .unwrap()
            .contains("reservation (router)"),
        "{err}"
    );
    let list = e.ok(&["ip", "list", "--cluster", "fab"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let list = e.ok(&["ip", "list", "--node", "node1"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let rel = e.ok(&["ip", "release", "198.51.100.0"]);
    assert_eq!(rel["holder"], "reserved");
    // Releasing a VM's address takes it from the VM, keeps the VM.
    e.ok(&["ip", "release", "198.51.100.1"]);
    let v = e.ok(&["vm", "show", "a"]);
    assert_eq!(v["nics"][0]["addresses"].as_array().unwrap().len(), 0);
    e.fails(4, &["ip", "release", "198.51.100.1"]);
    let free = e.ok(&["ip", "list", "--free", "--cluster", "fab"]);
    assert_eq!(free[0]["released"].as_array().unwrap().len(), 2);
    let u = e.ok(&["pool", "usage", "fab"]);
    assert_eq!(u[0]["total"], 256);
    assert_eq!(u[0]["used"], 0);
    assert_eq!(u[0]["free"], 256);
    e.ok(&["check"]);
}

#[test]
fn cooldown_holds_released_addresses_back() {
    let e = Env::new();
    e.ok(&[
        "cluster",
        "create",
        "c",
        "--type",
        "ip-fabric",
        "--vm-gateway",
        "10.0.0.1",
        "--bgp-community",
        "65000:1",
        "--route-reflector",
        "172.16.0.2:65000",
        "--cooldown",
        "2s",
        "--reuse",
        "first-free",
    ]);
    e.ok(&["network", "add", "c", "198.51.100.0/31"]);
    e.ok(&["node", "add", "c", "n", "--address", "172.16.0.11"]);
    e.ok(&["vm", "create", "c", "a", "--node", "n"]);
    e.ok(&["vm", "create", "c", "b", "--node", "n"]);
    e.ok(&["vm", "delete", "a"]);
    let err = e.fails(5, &["vm", "create", "c", "x", "--node", "n"]);
    assert_eq!(err["cooling"], 1, "{err}");
    assert!(err["message"].as_str().unwrap().contains("cooling down"));
    let u = e.ok(&["pool", "usage", "c"]);
    assert_eq!(u[0]["cooling"], 1);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let v = e.ok(&["vm", "create", "c", "x", "--node", "n"]);
    assert_eq!(first_ip(&v), "198.51.100.0");
}

#[test]
fn lists_and_text_output() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["vm", "create", "sw", "t1", "--node", "kvm1"]);
    assert_eq!(e.ok(&["cluster", "list"]).as_array().unwrap().len(), 3);
    assert_eq!(e.ok(&["network", "list"]).as_array().unwrap().len(), 3);
    assert_eq!(
        e.ok(&["network", "list", "sw"]).as_array().unwrap().len(),
        2
    );
    assert_eq!(e.ok(&["node", "list"]).as_array().unwrap().len(), 6);
    assert_eq!(
        e.ok(&["vm", "list", "--node", "kvm1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let n = e.ok(&["node", "show", "hz1"]);
    assert_eq!(n["routing"]["ipv6"]["network"], "2a01:4f8:13b:9a7::/64");
    assert_eq!(n["ranges"].as_array().unwrap().len(), 2);
    let out = e.cmd().args(["vm", "show", "t1"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("t1_net0")
            && text.contains("192.0.2.4/27")
            && text.contains("gateway 192.0.2.1"),
        "{text}"
    );
    // Delete in order: VM, network, node, cluster.
    e.fails(4, &["network", "remove", "sw", "192.0.2.0/27"]);
    e.fails(4, &["node", "remove", "kvm1"]);
    e.fails(4, &["cluster", "delete", "sw"]);
    e.ok(&["vm", "delete", "t1"]);
    e.ok(&["network", "remove", "sw", "192.0.2.0/27"]);
    e.ok(&["node", "remove", "kvm1"]);
    e.ok(&["cluster", "delete", "sw"]);
    e.ok(&["node", "remove", "hz2"]);
    assert_eq!(e.ok(&["cluster", "list"]).as_array().unwrap().len(), 2);
    e.ok(&["check"]);
}

#[test]
fn node_address_returns_to_the_pool_when_the_node_goes() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["node", "remove", "kvm1"]);
    let v = e.ok(&[
        "vm",
        "create",
        "sw",
        "x",
        "--node",
        "kvm2",
        "--ip",
        "192.0.2.2",
    ]);
    assert_eq!(first_ip(&v), "192.0.2.2");
    // And a node cannot take an address a VM holds.
    let err = e.fails(4, &["node", "add", "sw", "kvm1", "--address", "192.0.2.2"]);
    assert!(
        err["rule"].as_str().unwrap().contains("held by VM x"),
        "{err}"
    );
    e.ok(&["check"]);
}

#[test]
fn ipv6_pools_in_switching_and_fabric() {
    let e = Env::new();
    e.seed_world();
    // Switching: on-link /64, gateway ::1 by default, ::0 never handed out.
    e.ok(&["network", "add", "sw", "2001:db8:1::/64"]);
    let v = e.ok(&["vm", "create", "sw", "dual", "--node", "kvm1", "--ipv6"]);
    let a = v["nics"][0]["addresses"].as_array().unwrap();
    assert_eq!(a[0]["address"], "192.0.2.4");
    assert_eq!(a[1]["address"], "2001:db8:1::2");
    assert_eq!(a[1]["prefix_len"], 64);
    assert_eq!(a[1]["gateway"], "2001:db8:1::1");
    // IP-fabric: /128 from the pool, link-local gateway on the point-to-point link;
    // `::` is the subnet-router anycast address and never handed out.
    e.ok(&["network", "add", "fab", "2001:db8:2::/56"]);
    let v = e.ok(&["vm", "create", "fab", "six", "--node", "node1", "--no-ipv4"]);
    let a = &v["nics"][0]["addresses"][0];
    assert_eq!(a["address"], "2001:db8:2::1");
    assert_eq!(a["prefix_len"], 128);
    assert_eq!(a["gateway"], "fe80::1");
    let u = e.ok(&["pool", "usage", "fab"]);
    let six = u
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == "IPv6")
        .unwrap();
    // Beyond 2^53 a count is a decimal string, exact for any JSON reader.
    assert_eq!(six["total"], (1u128 << 72).to_string());
    assert_eq!(six["used"], 1);
    e.ok(&["check"]);
}
