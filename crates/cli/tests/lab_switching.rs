//! Lab scenario 1, switching: a data-center switch with the gateway, two
//! bridged nodes configured only by the agent, VMs from the seed's two /27
//! blocks; traffic between VMs across nodes and to the gateway; migration
//! keeps the address and the connectivity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::lab::{agent, ip_of, start_vm, vf, vmfabric};
use vmfabric_lab::{Lab, scenarios};

#[test]
fn switching_carries_packets_and_migrates() {
    let mut lab = Lab::new("sw").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::switching(&mut lab, &vf_).unwrap();
    let (dc, n1, n2) = (t.ns("dc"), t.ns("n1"), t.ns("n2"));
    // A second agent round changes nothing.
    for (ns, node) in [(n1, "n1"), (n2, "n2")] {
        assert_eq!(agent(&lab, ns, node)["writes"], 0);
    }
    // The nodes' own addresses are on their bridges.
    assert!(lab.ping(dc, "192.0.2.2"), "node n1 on vmbr0");
    assert!(lab.ping(dc, "192.0.2.3"), "node n2 on vmbr0");
    // VM to gateway, VM to VM across nodes, across the two blocks.
    assert!(lab.ping(t.ns("vm1"), "192.0.2.1"), "vm1 -> gateway");
    assert!(
        lab.ping(t.ns("vm1"), &ip_of(&lab, "vm2")),
        "vm1 -> vm2 across nodes"
    );
    assert!(lab.ping(t.ns("vm2"), &ip_of(&lab, "vm1")), "vm2 -> vm1");
    assert!(lab.ping(t.ns("vm3"), "192.0.2.33"), "vm3 -> its gateway");
    assert!(
        lab.ping(t.ns("vm3"), &ip_of(&lab, "vm2")),
        "vm3 -> vm2 through the gateway"
    );

    // Migration: the VM moves to n2 with its address.
    let before = ip_of(&lab, "vm1");
    vf(&lab, &["vm", "migrate", "vm1", "--to", "n2"]);
    let r1 = agent(&lab, n1, "n1");
    assert!(
        r1["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "- link vm1_net0"),
        "{r1}"
    );
    agent(&lab, n2, "n2");
    start_vm(&mut lab, n2, "vm1");
    assert_eq!(ip_of(&lab, "vm1"), before);
    assert!(
        lab.ping(t.ns("vm1"), "192.0.2.1"),
        "vm1 -> gateway after migration"
    );
    assert!(
        lab.ping(t.ns("vm1"), &ip_of(&lab, "vm3")),
        "vm1 (now on n2) -> vm3 on n1"
    );
    assert!(lab.ping(dc, &before), "gateway -> vm1 after migration");
}

#[test]
fn nothing_works_before_the_agent_runs() {
    let mut lab = Lab::new("s0").expect("lab");
    let dc = vmfabric_lab::worlds::switch(&mut lab, "dc").unwrap();
    lab.ip(&dc, &["addr", "add", "192.0.2.1/27", "dev", "sw"])
        .unwrap();
    let n1 = vmfabric_lab::worlds::node(&mut lab, &dc, "n1", "eno1").unwrap();
    vf(&lab, &["cluster", "create", "rack", "--type", "switching"]);
    vf(&lab, &["network", "add", "rack", "192.0.2.0/27"]);
    vf(
        &lab,
        &[
            "node",
            "add",
            "rack",
            "n1",
            "--address",
            "192.0.2.2",
            "--uplink",
            "eno1",
        ],
    );
    // The lab configured no node: only the agent makes the node reachable.
    assert!(!lab.ping(&dc, "192.0.2.2"));
    agent(&lab, &n1, "n1");
    assert!(lab.ping(&dc, "192.0.2.2"));
}
