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
    vf(&lab, &["vm", "delete", "vm9"]);
    vf(&lab, &["node", "remove-subnet", "n1", "203.0.113.48/29"]);
    let r = agent(&lab, &n1, "n1");
    assert!(r["changes"].to_string().contains("vm9_net0"), "{r}");
    assert!(lab.ping(&dc, "203.0.113.40"), "provider -> vm1 after");
}
