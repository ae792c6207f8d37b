//! Lab scenario 1, switching: a data-center switch with the gateway, two
//! bridged nodes configured only by the agent, VMs from the seed's two /27
//! blocks; traffic between VMs across nodes and to the gateway; migration
//! keeps the address and the connectivity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::lab::{agent, ip_of, start_vm, vf};
use vmfabric_lab::{Lab, worlds};

#[test]
fn switching_carries_packets_and_migrates() {
    let mut lab = Lab::new("sw").expect("lab");
    // The world: the switch and its gateway for both blocks, two nodes.
    let dc = worlds::switch(&mut lab, "dc").unwrap();
    lab.ip(&dc, &["addr", "add", "192.0.2.1/27", "dev", "sw"])
        .unwrap();
    lab.ip(&dc, &["addr", "add", "192.0.2.33/27", "dev", "sw"])
        .unwrap();
    lab.sysctl(&dc, "net.ipv4.ip_forward", "1").unwrap();
    let n1 = worlds::node(&mut lab, &dc, "n1", "eno1").unwrap();
    let n2 = worlds::node(&mut lab, &dc, "n2", "eno1").unwrap();

    // vmfabric: the seed's switching cluster.
    vf(
        &lab,
        &[
            "cluster",
            "create",
            "rack",
            "--type",
            "switching",
            "--virtualization",
            "lxd",
        ],
    );
    vf(&lab, &["network", "add", "rack", "192.0.2.0/27"]);
    vf(
        &lab,
        &[
            "network",
            "add",
            "rack",
            "192.0.2.32/27",
            "--gateway",
            "192.0.2.33",
        ],
    );
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
    vf(
        &lab,
        &[
            "node",
            "add",
            "rack",
            "n2",
            "--address",
            "192.0.2.3",
            "--uplink",
            "eno1",
        ],
    );
    vf(&lab, &["vm", "create", "rack", "vm1", "--node", "n1"]);
    vf(&lab, &["vm", "create", "rack", "vm2", "--node", "n2"]);
    vf(
        &lab,
        &[
            "vm",
            "create",
            "rack",
            "vm3",
            "--node",
            "n1",
            "--ip",
            "192.0.2.40",
        ],
    );

    // Nothing works before the agents run: the lab configured no node.
    assert!(!lab.ping(&dc, "192.0.2.2"));
    for (ns, node) in [(&n1, "n1"), (&n2, "n2")] {
        let r = agent(&lab, ns, node);
        assert!(!r["changes"].as_array().unwrap().is_empty());
        // A second round changes nothing.
        let again = agent(&lab, ns, node);
        assert_eq!(again["writes"], 0, "{again}");
    }
    let vm1 = start_vm(&mut lab, &n1, "vm1");
    let vm2 = start_vm(&mut lab, &n2, "vm2");
    let vm3 = start_vm(&mut lab, &n1, "vm3");

    // The nodes' own addresses are on their bridges.
    assert!(lab.ping(&dc, "192.0.2.2"), "node n1 on vmbr0");
    assert!(lab.ping(&dc, "192.0.2.3"), "node n2 on vmbr0");
    // VM to gateway, VM to VM across nodes, across the two blocks.
    assert!(lab.ping(&vm1, "192.0.2.1"), "vm1 -> gateway");
    assert!(
        lab.ping(&vm1, &ip_of(&lab, "vm2")),
        "vm1 -> vm2 across nodes"
    );
    assert!(lab.ping(&vm2, &ip_of(&lab, "vm1")), "vm2 -> vm1");
    assert!(lab.ping(&vm3, "192.0.2.33"), "vm3 -> its gateway");
    assert!(
        lab.ping(&vm3, &ip_of(&lab, "vm2")),
        "vm3 -> vm2 through the gateway"
    );

    // Migration: the VM moves to n2 with its address.
    let before = ip_of(&lab, "vm1");
    vf(&lab, &["vm", "migrate", "vm1", "--to", "n2"]);
    let r1 = agent(&lab, &n1, "n1");
    assert!(
        r1["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "- link vm1_net0"),
        "{r1}"
    );
    agent(&lab, &n2, "n2");
    start_vm(&mut lab, &n2, "vm1");
    assert_eq!(ip_of(&lab, "vm1"), before);
    assert!(
        lab.ping(&vm1, "192.0.2.1"),
        "vm1 -> gateway after migration"
    );
    assert!(
        lab.ping(&vm1, &ip_of(&lab, "vm3")),
        "vm1 (now on n2) -> vm3 on n1"
    );
    assert!(lab.ping(&dc, &before), "gateway -> vm1 after migration");
}
