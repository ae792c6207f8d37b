//! Day two on a real kernel: a routing node that runs VMs gets a second
//! /29 (the provider routes it to the node's primary IP, as Hetzner does
//! when one is ordered), a VM is created in it and answers; a VM that was
//! running before answers every ping throughout (measured loss 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::lab::{agent, ip_of, start_vm, vf, vmfabric};
use vmfabric_lab::{Lab, scenarios};

#[test]
fn a_subnet_added_to_a_running_routing_node_carries_a_new_vm_without_loss() {
    let mut lab = Lab::new("dt").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::routing(&mut lab, &vf_, "kernel").unwrap();
    let (dc, n1) = (t.ns("dc").to_string(), t.ns("n1").to_string());
    let vm1 = t.ns("vm1").to_string();
    assert_eq!(ip_of(&lab, "vm1"), "203.0.113.40");
    assert!(lab.ping(&dc, "203.0.113.40"), "provider -> vm1 before");

    // The provider pings vm1 every 20 ms while the node changes.
    let steady = Command::new("ip")
        .args([
            "netns", "exec", &dc, "ping", "-n", "-q", "-i", "0.02", "-c", "500", "-W", "1",
        ])
        .arg("203.0.113.40")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping (iputils-ping)");

    lab.ip(
        &dc,
        &["route", "add", "203.0.113.48/29", "via", "192.0.2.10"],
    )
    .unwrap();
    let view = vf(&lab, &["node", "add-subnet", "n1", "203.0.113.48/29"]);
    assert_eq!(view["ranges"].as_array().map(Vec::len), Some(3), "{view}");
    vf(
        &lab,
        &[
            "vm",
            "create",
            "hz",
            "vm9",
            "--node",
            "n1",
            "--ip",
            "203.0.113.49",
        ],
    );
    let r = agent(&lab, &n1, "n1");
    let changes = r["changes"].to_string();
    assert!(changes.contains("vm9_net0"), "{r}");
    assert!(
        !changes.contains("vm1_net0"),
        "vm1 must not be touched: {r}"
    );
    let vm9 = start_vm(&mut lab, &n1, "vm9");
    assert!(
        lab.ping(&dc, "203.0.113.49"),
        "provider -> vm9 in the new subnet"
    );
    assert!(lab.ping(&vm9, "192.0.2.1"), "vm9 -> provider");
    assert!(lab.ping(&vm9, "203.0.113.40"), "vm9 -> vm1");
    assert!(lab.ping(&vm1, "203.0.113.49"), "vm1 -> vm9");
    // A second round changes nothing.
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);

    // An extra address on vm1's running NIC: the next of n1's ranges.
    let v = vf(&lab, &["vm", "add-address", "vm1"]);
    let extra = &v["nics"][0]["addresses"][1];
    assert_eq!(extra["address"], "203.0.113.42", "{v}");
    let r = agent(&lab, &n1, "n1");
    assert!(r["changes"].to_string().contains("203.0.113.42"), "{r}");
    let cidr = format!("203.0.113.42/{}", extra["prefix_len"]);
    lab.ip(&vm1, &["addr", "add", &cidr, "dev", "eth0"])
        .unwrap();
    assert!(
        lab.ping(&dc, "203.0.113.42"),
        "provider -> vm1's extra address"
    );

    // A second NIC on running vm2, with its own MAC and address.
    let v = vf(&lab, &["vm", "add-nic", "vm2"]);
    let nic1 = &v["nics"][1];
    assert_eq!(nic1["host_interface"], "vm2_net1", "{v}");
    assert_ne!(nic1["mac"], v["nics"][0]["mac"], "{v}");
    let addr1 = nic1["addresses"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(addr1, "203.0.113.43", "{v}");
    let r = agent(&lab, &n1, "n1");
    assert!(r["changes"].to_string().contains("vm2_net1"), "{r}");
    let g = vf_.nic_at("vm2", 1).unwrap();
    vmfabric_lab::guest::attach(&mut lab, &n1, "vm2", &g).unwrap();
    assert!(lab.ping(&dc, &addr1), "provider -> vm2's second NIC");
    assert!(lab.ping(&vm1, &addr1), "vm1 -> vm2's second NIC");
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);

    // The guests' MTU, changed in place: the running VMs' links take it
    // (the same links: the steady pings lose nothing), and the next round
    // has nothing to do.
    vf(&lab, &["cluster", "set", "hz", "--mtu", "1400"]);
    let r = agent(&lab, &n1, "n1");
    assert!(
        r["changes"].to_string().contains("vm1_net0 mtu 1400"),
        "{r}"
    );
    let link = lab.ip(&n1, &["-j", "link", "show", "vm1_net0"]).unwrap();
    assert!(link.contains("\"mtu\":1400"), "{link}");
    assert!(lab.ping(&dc, "203.0.113.40"), "provider -> vm1 at MTU 1400");
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);

    let out = steady.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("500 packets transmitted, 500 received"),
        "vm1 lost packets while its node changed: {text}"
    );

    // The subnet cannot go while vm9 holds an address in it; then it can.
    let refused = common::lab::vf_fails(&lab, &["node", "remove-subnet", "n1", "203.0.113.48/29"]);
    assert!(
        refused.to_string().contains("203.0.113.49 (VM vm9)"),
        "{refused}"
    );
    // --force releases vm9's address (recorded), the route to it goes.
    vf(
        &lab,
        &["node", "remove-subnet", "n1", "203.0.113.48/29", "--force"],
    );
    let v = vf(&lab, &["vm", "show", "vm9"]);
    assert_eq!(
        v["nics"][0]["addresses"].as_array().map(Vec::len),
        Some(0),
        "{v}"
    );
    let h = vf(&lab, &["ip", "history", "203.0.113.49"]);
    assert!(
        h[0]["until"].is_string() || h[0]["until"].is_number(),
        "{h}"
    );
    let r = agent(&lab, &n1, "n1");
    assert!(r["changes"].to_string().contains("203.0.113.49"), "{r}");
    assert!(
        !lab.ping(&dc, "203.0.113.49"),
        "vm9's released address still answers"
    );
    assert!(lab.ping(&dc, "203.0.113.40"), "provider -> vm1 after");
}

/// Switching: the pool gains a block while VMs run; a VM is created with
/// two NICs (one address in the new block), a running VM gains an extra
/// address; every address answers, and a VM that was running before
/// answers every ping throughout.
#[test]
fn a_switching_pool_grows_and_a_vm_gets_two_nics_without_loss() {
    let mut lab = Lab::new("dw").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::switching(&mut lab, &vf_).unwrap();
    let (dc, n1, n2) = (
        t.ns("dc").to_string(),
        t.ns("n1").to_string(),
        t.ns("n2").to_string(),
    );
    let (vm1, vm2) = (t.ns("vm1").to_string(), t.ns("vm2").to_string());
    let ip1 = ip_of(&lab, "vm1");
    assert!(lab.ping(&dc, &ip1), "router -> vm1 before");

    let steady = Command::new("ip")
        .args([
            "netns", "exec", &dc, "ping", "-n", "-q", "-i", "0.02", "-c", "500", "-W", "1",
        ])
        .arg(&ip1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping (iputils-ping)");

    // A third /27 on the same segment; the router is its gateway.
    lab.ip(&dc, &["addr", "add", "192.0.2.65/27", "dev", "sw"])
        .unwrap();
    vf(
        &lab,
        &[
            "network",
            "add",
            "rack",
            "192.0.2.64/27",
            "--gateway",
            "192.0.2.65",
        ],
    );
    // Two NICs at once: net0 in the new block, net1 the next free.
    let v = vf(
        &lab,
        &[
            "vm",
            "create",
            "rack",
            "vm7",
            "--node",
            "n2",
            "--nics",
            "2",
            "--ip",
            "192.0.2.70",
        ],
    );
    assert_eq!(v["nics"][0]["addresses"][0]["address"], "192.0.2.70", "{v}");
    let second = v["nics"][1]["addresses"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!second.is_empty(), "{v}");
    let r = agent(&lab, &n2, "n2");
    let changes = r["changes"].to_string();
    assert!(
        changes.contains("vm7_net0") && changes.contains("vm7_net1"),
        "{r}"
    );
    assert!(
        !changes.contains("vm2_net0"),
        "vm2 must not be touched: {r}"
    );
    let vm7 = start_vm(&mut lab, &n2, "vm7");
    let g = vf_.nic_at("vm7", 1).unwrap();
    vmfabric_lab::guest::attach(&mut lab, &n2, "vm7", &g).unwrap();
    for (from, to, what) in [
        (&dc, "192.0.2.70", "router -> vm7 net0 (new block)"),
        (&dc, second.as_str(), "router -> vm7 net1"),
        (&vm1, "192.0.2.70", "vm1 -> vm7 net0 across nodes"),
        (&vm1, second.as_str(), "vm1 -> vm7 net1 across nodes"),
        (&vm7, "192.0.2.65", "vm7 -> its gateway"),
        (&vm7, ip1.as_str(), "vm7 -> vm1"),
    ] {
        assert!(lab.ping(from, to), "{what}");
    }
    assert_eq!(agent(&lab, &n2, "n2")["writes"], 0);

    // An extra address on running vm2.
    let v = vf(&lab, &["vm", "add-address", "vm2"]);
    let extra = &v["nics"][0]["addresses"][1];
    let addr = extra["address"].as_str().unwrap_or_default().to_string();
    // Bridged: no route changes, only vm2's anti-spoofing set (without
    // it, vm2's answers from the new address would be dropped).
    let r = agent(&lab, &n2, "n2");
    assert_eq!(r["firewall_changed"], true, "{r}");
    assert_eq!(r["changes"].as_array().map(Vec::len), Some(0), "{r}");
    let cidr = format!("{addr}/{}", extra["prefix_len"]);
    lab.ip(&vm2, &["addr", "add", &cidr, "dev", "eth0"])
        .unwrap();
    assert!(lab.ping(&dc, &addr), "router -> vm2's extra address");
    assert!(lab.ping(&vm1, &addr), "vm1 -> vm2's extra address");

    // A second NIC on running vm2: its own port on the bridge, MAC and
    // address; both of vm2's NICs answer.
    let v = vf(&lab, &["vm", "add-nic", "vm2"]);
    let nic1 = v["nics"][1]["addresses"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = agent(&lab, &n2, "n2");
    assert!(r["changes"].to_string().contains("vm2_net1"), "{r}");
    let g = vf_.nic_at("vm2", 1).unwrap();
    vmfabric_lab::guest::attach(&mut lab, &n2, "vm2", &g).unwrap();
    assert!(lab.ping(&dc, &nic1), "router -> vm2's second NIC");
    assert!(lab.ping(&vm1, &nic1), "vm1 -> vm2's second NIC");
    assert!(lab.ping(&vm1, &addr), "vm1 -> vm2's first NIC still");
    // vm1's node was not part of any of this.
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);

    let out = steady.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("500 packets transmitted, 500 received"),
        "vm1 lost packets while the pool and other VMs changed: {text}"
    );
}

/// Routing: a second node that runs a VM gets its IPv6 /64 (Nodes → node →
/// IP addresses → IPv6 → add `::2/64`), the VM created without IPv6 gets
/// an address from it and answers ping6 through the NDP proxy; its IPv4
/// answers every ping throughout.
#[test]
fn a_routing_node_gets_its_ipv6_while_its_vm_runs() {
    let mut lab = Lab::new("dv").expect("lab");
    let vf_ = vmfabric(&lab);
    let mut t = scenarios::routing(&mut lab, &vf_, "kernel").unwrap();
    let dc = t.ns("dc").to_string();
    let n2 = scenarios::routed_node(&mut lab, &dc, "n2", "192.0.2.11").unwrap();
    t.ns.insert("n2".into(), n2.clone());
    lab.ip(
        &dc,
        &["route", "add", "203.0.113.48/29", "via", "192.0.2.11"],
    )
    .unwrap();
    vf(
        &lab,
        &[
            "node",
            "add",
            "hz",
            "n2",
            "--address",
            "192.0.2.11/26",
            "--uplink",
            "eno1",
            "--subnet",
            "203.0.113.48/29",
        ],
    );
    vf(&lab, &["vm", "create", "hz", "vm5", "--node", "n2"]);
    agent(&lab, &n2, "n2");
    let vm5 = start_vm(&mut lab, &n2, "vm5");
    assert!(lab.ping(&dc, "203.0.113.48"), "provider -> vm5");

    let steady = Command::new("ip")
        .args([
            "netns", "exec", &dc, "ping", "-n", "-q", "-i", "0.02", "-c", "500", "-W", "1",
        ])
        .arg("203.0.113.48")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping (iputils-ping)");

    // The provider's /64 for n2 is on-link on its segment, like n1's.
    lab.ip(
        &dc,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:1:2::1/64",
            "dev",
            "sw",
            "nodad",
        ],
    )
    .unwrap();
    let view = vf(&lab, &["node", "add-ipv6", "n2", "2001:db8:1:2::2/64"]);
    assert!(view.to_string().contains("2001:db8:1:2::"), "{view}");
    let v = vf(&lab, &["vm", "add-address", "vm5", "--ipv6"]);
    let six = &v["nics"][0]["addresses"][1];
    let addr = six["address"].as_str().unwrap_or_default().to_string();
    assert!(addr.starts_with("2001:db8:1:2::"), "{v}");
    let r = agent(&lab, &n2, "n2");
    assert!(r["changes"].to_string().contains(&addr), "{r}");
    let g = six["gateway"].as_str().unwrap_or_default().to_string();
    let cidr = format!("{addr}/{}", six["prefix_len"]);
    lab.ip(&vm5, &["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"])
        .unwrap();
    lab.ip(
        &vm5,
        &[
            "-6", "route", "replace", "default", "via", &g, "dev", "eth0",
        ],
    )
    .unwrap();
    assert!(
        lab.ipv6_settled(&n2, std::time::Duration::from_secs(10)),
        "n2's IPv6 addresses stay tentative"
    );
    assert!(
        lab.ping(&dc, &addr),
        "provider -> vm5 over IPv6 (NDP proxy)"
    );
    assert!(
        lab.ping(&vm5, "2001:db8:1:2::1"),
        "vm5 -> provider over IPv6"
    );
    // n1 and its VMs were not part of it.
    assert_eq!(agent(&lab, t.ns("n1"), "n1")["writes"], 0);

    let out = steady.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("500 packets transmitted, 500 received"),
        "vm5 lost packets while its node got IPv6: {text}"
    );
}
