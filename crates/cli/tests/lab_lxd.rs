//! Real LXD containers (Debian's `lxd` package) in every network type,
//! attached with exactly what `vmfabric vm guest-config --format lxd`
//! renders: `nictype: physical` on the veth peer the agent made (with the
//! VM's MAC) and the cloud-init network-config the image's NoCloud seed
//! takes. The LXD daemon is the test's own, running in the node's network
//! namespace (why: `vmfabric_lab::lxd`), from an image made of the same
//! Debian root as the QEMU guests (`scripts/guest-image-lxd`, cached).
//!
//! Each test checks from inside the container that its address, MAC and
//! default routes are the plan's, pings the outside from it and it from
//! the outside, and that the agent neither fails nor touches the pair
//! while LXD holds the peer, when LXD gives it back on stop, and when the
//! container starts again. Needs root, lxd, lxd-client, mmdebstrap
//! (scripts/test installs them); a missing one fails the test with what to
//! install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::lab::{agent, vf, vmfabric};
use serde_json::{Value, json};
use vmfabric_lab::lxd::{self, Lxd};
use vmfabric_lab::scenarios::{self, Topology, Vmfabric};
use vmfabric_lab::{Lab, Result};

/// Container start to first answered ping, with room for a loaded machine.
const BOOT: Duration = Duration::from_secs(120);

/// One network type's case: the world, where the container runs, who
/// pings it, what it pings.
struct Case {
    tag: &'static str,
    world: fn(&mut Lab, &Vmfabric) -> Result<Topology>,
    /// VMs the lab attaches itself (namespaces), on which node.
    others: &'static [(&'static str, &'static str)],
    /// The namespace that pings the container (provider, router, core).
    outside: &'static str,
    /// What the container pings: fixed addresses and other VMs.
    pings: &'static [&'static str],
    ping_vms: &'static [&'static str],
    six: bool,
}

/// `ip -j link show DEV` in `ns`: (ifindex, MAC).
fn link_of(lab: &Lab, ns: &str, dev: &str) -> Option<(u64, String)> {
    let out = lab.ip(ns, &["-j", "link", "show", dev]).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    Some((
        v[0]["ifindex"].as_u64()?,
        v[0]["address"].as_str()?.to_string(),
    ))
}

/// JSON from `ip -j ...` inside the container.
fn ip_json(lxd: &Lxd, vm: &str, args: &[&str]) -> Value {
    let mut all = vec!["ip", "-j"];
    all.extend_from_slice(args);
    let out = lxd.exec(vm, &all).unwrap();
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

/// The default route of a family inside the container: (gateway, dev).
fn default_route(lxd: &Lxd, vm: &str, v6: bool) -> Option<(String, String)> {
    let fam = if v6 { "-6" } else { "-4" };
    let r = ip_json(lxd, vm, &[fam, "route", "show", "default"]);
    let r = r.as_array()?.first()?;
    Some((r["gateway"].as_str()?.into(), r["dev"].as_str()?.into()))
}

/// The agent's round must neither fail nor change anything.
fn quiet_round(lab: &Lab, ns: &str, node: &str, when: &str) {
    let r = agent(lab, ns, node);
    assert_eq!(r["failures"], json!([]), "{when}: {r}");
    assert_eq!(r["changes"], json!([]), "{when}: {r}");
}

/// The round after the container started or stopped (the lab's agents run
/// once each, not as daemons woken by the link): in ip-fabric it adds or
/// withdraws the VM's routes and nothing else (a stopped guest is not
/// announced); in the other types nothing changes.
fn guest_round(lab: &Lab, ns: &str, node: &str, host_if: &str, fabric: bool, when: &str) {
    let r = agent(lab, ns, node);
    assert_eq!(r["failures"], json!([]), "{when}: {r}");
    let changes = r["changes"].as_array().cloned().unwrap_or_default();
    if fabric {
        assert!(
            !changes.is_empty()
                && changes.iter().all(|c| c
                    .as_str()
                    .is_some_and(|c| c.contains("route ") && c.contains(host_if))),
            "{when}: only the VM's routes change: {r}"
        );
    } else {
        assert_eq!(r["changes"], json!([]), "{when}: {r}");
    }
}

fn one_container_per_type(case: &Case) {
    let t0 = Instant::now();
    let image = lxd::image().unwrap();
    let image_s = t0.elapsed().as_secs_f64();
    let mut lab = Lab::new(case.tag).expect("lab");
    let vf_ = vmfabric(&lab);
    let mut t = (case.world)(&mut lab, &vf_).unwrap();
    for (vm, node) in case.others {
        vf_.start_vm(&mut lab, &mut t, node, vm).unwrap();
        // A started guest's routes come with its node's next round.
        let r = agent(&lab, t.ns(node), node);
        assert_eq!(r["failures"], json!([]), "{vm} started: {r}");
    }
    let (vm, node) = ("vm1", "n1");
    let n1 = t.ns(node).to_string();
    let nic = vf_.nic(vm).unwrap();
    let (host, _) = link_of(&lab, &n1, &nic.host_interface).expect("host side");
    let (_, peer_mac) = link_of(&lab, &n1, &nic.peer).expect("peer on the node");
    assert_eq!(peer_mac, nic.mac, "the agent gave the peer the VM's MAC");

    // Declared after the lab: dropped (containers deleted, daemon killed)
    // before the lab's namespaces go.
    let t1 = Instant::now();
    let mut lxd = Lxd::start(&lab, &n1, node, &image).unwrap();
    let daemon_s = t1.elapsed().as_secs_f64();
    let config = vf(&lab, &["vm", "guest-config", vm, "--format", "lxd"]);
    let config = config["text"].as_str().unwrap().to_string();
    let t2 = Instant::now();
    lxd.create(vm, &config)
        .unwrap_or_else(|e| panic!("lxc init with the rendered config: {e}\n{config}"));
    let create_s = t2.elapsed().as_secs_f64();
    let t2 = Instant::now();
    lxd.start_container(vm)
        .unwrap_or_else(|e| panic!("lxc start with the rendered config: {e}\n{config}"));

    let outside = t.ns(case.outside).to_string();
    let fabric = case.outside == "core";
    let host_if = nic.host_interface.to_string();
    guest_round(&lab, &n1, node, &host_if, fabric, "container started");
    if case.outside == "core" {
        // IP-fabric: the core reaches the VMs once BGP has their routes.
        let mut vms = vec![vm];
        vms.extend(case.others.iter().map(|(v, _)| *v));
        scenarios::wait_core_routes(&lab, &vf_, &t, &vms, case.six, 60).unwrap();
    }
    let v4 = vf_.ip_of(vm).unwrap();
    assert!(
        lab.wait_for(BOOT, || lab.ping_once(&outside, &v4)),
        "{}: {vm} {v4} never answered; LXD log:\n{}",
        case.tag,
        lxd.log_text()
    );
    let first_ping = t2.elapsed().as_secs_f64();

    // The container's own view: the plan's addresses on eth0 with the
    // VM's MAC, the plan's default routes.
    let _ = lxd.exec(vm, &["cloud-init", "status", "--wait"]);
    let eth0 = ip_json(&lxd, vm, &["addr", "show", "dev", "eth0"]);
    assert_eq!(
        eth0[0]["address"].as_str(),
        Some(nic.mac.as_str()),
        "{eth0}"
    );
    let mut have: Vec<String> = eth0[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    have.sort();
    let mut want: Vec<String> = nic
        .addresses
        .iter()
        .map(|a| format!("{}/{}", a.address, a.prefix_len))
        .collect();
    want.sort();
    assert_eq!(have, want, "addresses in the container are not the plan's");
    for v6 in [false, true] {
        let gw = nic
            .addresses
            .iter()
            .find(|a| a.address.is_ipv6() == v6)
            .and_then(|a| a.gateway)
            .map(|g| (g.to_string(), "eth0".to_string()));
        assert_eq!(default_route(&lxd, vm, v6), gw, "IPv6 {v6}");
    }
    let mut targets: Vec<String> = case.pings.iter().map(|p| p.to_string()).collect();
    for other in case.ping_vms {
        targets.push(vf_.ip_of(other).unwrap());
    }
    for target in &targets {
        let ok = (0..5).any(|_| {
            lxd.exec(vm, &["ping", "-c", "1", "-W", "2", target])
                .is_ok()
        });
        assert!(ok, "{}: {vm} cannot ping {target}", case.tag);
    }
    if case.six {
        let v6 = vf_.ipv6_of(vm).unwrap();
        assert!(
            lab.wait_for(Duration::from_secs(30), || lab.ping_once(&outside, &v6)),
            "{}: {vm} {v6} never answered over IPv6",
            case.tag
        );
    }
    // LXD holds the peer: the agent leaves the pair alone.
    assert!(
        link_of(&lab, &n1, &nic.peer).is_none(),
        "the peer is in the container"
    );
    quiet_round(&lab, &n1, node, "container running");
    assert_eq!(
        link_of(&lab, &n1, &nic.host_interface).map(|l| l.0),
        Some(host)
    );

    // Stop: LXD gives the peer back (name and MAC); still nothing to do.
    lxd.stop(vm).unwrap();
    assert_eq!(
        link_of(&lab, &n1, &nic.peer).map(|l| l.1),
        Some(nic.mac.clone()),
        "the peer is back on the node with the VM's MAC"
    );
    guest_round(&lab, &n1, node, &host_if, fabric, "container stopped");
    // And again: the same pair carries the restarted container.
    let t3 = Instant::now();
    lxd.start_container(vm).unwrap();
    guest_round(&lab, &n1, node, &host_if, fabric, "container restarted");
    assert!(
        lab.wait_for(BOOT, || lab.ping_once(&outside, &v4)),
        "{}: {vm} unreachable after a restart",
        case.tag
    );
    let restart_ping = t3.elapsed().as_secs_f64();
    quiet_round(&lab, &n1, node, "container restarted");
    assert_eq!(
        link_of(&lab, &n1, &nic.host_interface).map(|l| l.0),
        Some(host)
    );
    eprintln!(
        "lxd {}: image {image_s:.1} s, daemon + image import {daemon_s:.1} s, lxc init \
         {create_s:.1} s, container start -> first ping {first_ping:.1} s, restart -> ping \
         {restart_ping:.1} s, container pinged {targets:?}; whole test {:.1} s",
        case.tag,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn switching_container_on_the_agents_veth_peer() {
    one_container_per_type(&Case {
        tag: "xs",
        world: scenarios::switching_lxd,
        others: &[("vm2", "n2")],
        outside: "dc",
        pings: &["192.0.2.1"],
        ping_vms: &["vm2"],
        six: false,
    });
}

#[test]
fn routing_container_on_the_agents_veth_peer() {
    one_container_per_type(&Case {
        tag: "xr",
        world: |lab, vf| scenarios::routing_lxd(lab, vf, "kernel"),
        others: &[("vm2", "n1")],
        outside: "dc",
        pings: &["192.0.2.1", "2001:db8:1:1::1"],
        ping_vms: &["vm2"],
        six: true,
    });
}

#[test]
fn fabric_container_on_the_agents_veth_peer() {
    one_container_per_type(&Case {
        tag: "xf",
        world: scenarios::fabric_dual_stack_lxd,
        others: &[("vm2", "n2")],
        outside: "core",
        pings: &["172.16.0.3", "2001:db8:f::3"],
        ping_vms: &["vm2"],
        six: true,
    });
}
