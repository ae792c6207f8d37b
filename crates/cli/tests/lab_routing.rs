//! Lab scenario 2, routing (Hetzner/OVH): a provider router with port
//! security on the node's port and the additional subnet routed to the
//! node's primary IP. VMs get .40, .41 and reach the provider and each
//! other while the provider drops nothing; a bridged VM with its own MAC
//! is dropped (negative control); the node's uplink MAC guard drops and
//! counts a frame with a foreign MAC. IPv6 on an on-link provider /64,
//! with kernel proxy entries and again with ndppd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::lab::{agent, ip_of, start_vm, vf, vmfabric};
use vmfabric_lab::{Lab, scenarios, worlds};

#[test]
fn routing_with_port_security_and_ipv6() {
    let mut lab = Lab::new("rt").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::routing(&mut lab, &vf_, "kernel").unwrap();
    let (dc, n1) = (t.ns("dc").to_string(), t.ns("n1").to_string());
    let (vm1, vm2) = (t.ns("vm1").to_string(), t.ns("vm2").to_string());
    let n1_mac = worlds::mac(&lab, &n1, "eno1").unwrap();
    assert_eq!(ip_of(&lab, "vm1"), "203.0.113.40");
    assert_eq!(ip_of(&lab, "vm2"), "203.0.113.41");
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);

    assert!(lab.ping(&vm1, "192.0.2.1"), "vm1 -> provider");
    assert!(lab.ping(&vm2, "192.0.2.1"), "vm2 -> provider");
    assert!(lab.ping(&vm1, "203.0.113.41"), "vm1 -> vm2");
    assert!(lab.ping(&dc, "203.0.113.40"), "provider -> vm1");
    let portsec = |lab: &Lab| worlds::counter(lab, &dc, "netdev", "portsec_p_n1").unwrap();
    assert_eq!(
        portsec(&lab),
        0,
        "the provider saw a foreign MAC from the routed node"
    );

    // IPv6, kernel proxy entries: the provider reaches the VM in its /64.
    assert!(
        lab.ping(&dc, "2001:db8:1:1::3"),
        "provider -> vm1 over IPv6 (kernel NDP proxy)"
    );
    assert!(
        lab.ping(&vm1, "2001:db8:1:1::1"),
        "vm1 -> provider over IPv6"
    );
    assert_eq!(portsec(&lab), 0);

    // The uplink MAC guard: a foreign MAC on the uplink never leaves it.
    let guard = |lab: &Lab| worlds::counter(lab, &n1, "netdev", "vmfabric").unwrap();
    assert_eq!(guard(&lab), 0);
    lab.ip(
        &n1,
        &["link", "set", "eno1", "address", "02:00:5e:00:53:99"],
    )
    .unwrap();
    assert!(
        !lab.ping(&n1, "192.0.2.1"),
        "frames with a foreign MAC must not leave"
    );
    assert!(guard(&lab) > 0, "the guard counts what it drops");
    assert_eq!(portsec(&lab), 0, "the provider never saw the foreign MAC");
    lab.ip(&n1, &["link", "set", "eno1", "address", &n1_mac])
        .unwrap();
    assert!(lab.ping(&n1, "192.0.2.1"));

    // Negative control, without vmfabric: a bridged node lets its VM's own
    // MAC reach the provider, which drops it.
    let n2 = scenarios::routed_node(&mut lab, &dc, "n2", "192.0.2.11").unwrap();
    let n2_mac = worlds::mac(&lab, &n2, "eno1").unwrap();
    lab.ip(&n2, &["addr", "flush", "dev", "eno1"]).unwrap();
    lab.ip(&n2, &["link", "add", "vmbr0", "type", "bridge"])
        .unwrap();
    lab.ip(&n2, &["link", "set", "vmbr0", "address", &n2_mac])
        .unwrap();
    lab.ip(&n2, &["link", "set", "eno1", "master", "vmbr0"])
        .unwrap();
    lab.ip(&n2, &["link", "set", "vmbr0", "up"]).unwrap();
    let rogue = lab.add_ns("rogue").unwrap();
    lab.ip(
        &n2,
        &[
            "link", "add", "r_net0", "type", "veth", "peer", "name", "eth0", "netns", &rogue,
        ],
    )
    .unwrap();
    lab.ip(&n2, &["link", "set", "r_net0", "master", "vmbr0"])
        .unwrap();
    lab.ip(&n2, &["link", "set", "r_net0", "up"]).unwrap();
    lab.ip(&rogue, &["link", "set", "eth0", "up"]).unwrap();
    lab.ip(&rogue, &["addr", "add", "192.0.2.30/26", "dev", "eth0"])
        .unwrap();
    assert!(
        !lab.ping(&rogue, "192.0.2.1"),
        "the provider must drop a VM's own MAC"
    );
    assert!(worlds::counter(&lab, &dc, "netdev", "portsec_p_n2").unwrap() > 0);

    // IPv6 again, with ndppd instead of kernel entries.
    for vm in ["vm1", "vm2"] {
        vf(&lab, &["vm", "delete", vm]);
    }
    vf(&lab, &["node", "remove", "n1"]);
    vf(
        &lab,
        &[
            "node",
            "add",
            "hz",
            "n1",
            "--address",
            "192.0.2.10/26",
            "--uplink",
            "eno1",
            "--subnet",
            "203.0.113.40/29",
            "--ipv6",
            "2001:db8:1:1::2/64",
            "--ndp-proxy",
            "ndppd",
        ],
    );
    vf(
        &lab,
        &["vm", "create", "hz", "vm3", "--node", "n1", "--ipv6"],
    );
    let r = agent(&lab, &n1, "n1");
    assert_eq!(r["ndppd_running"], true, "{r}");
    let changes: Vec<String> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        changes.iter().any(|c| c.starts_with("- neighbour proxy")),
        "{changes:?}"
    );
    let vm3 = start_vm(&mut lab, &n1, "vm3");
    let six = common::lab::vf(&lab, &["vm", "show", "vm3"])["nics"][0]["addresses"][1]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(lab.ping(&dc, &six), "provider -> vm3 over IPv6 (ndppd)");
    assert!(
        lab.ping(&vm3, "2001:db8:1:1::1"),
        "vm3 -> provider over IPv6 (ndppd)"
    );
    assert!(lab.ping(&vm3, "192.0.2.1"));
    assert_eq!(portsec(&lab), 0);
}
