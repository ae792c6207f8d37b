//! Lab scenario 3 with IPv6, end to end: an IP-fabric cluster with an IPv6
//! pool on a dual-stack underlay (README, "IPv6 in IP-fabric"). Every VM's
//! /128 reaches the core with the cluster's community through each route
//! reflector (FRR and BIRD 2) on its own, with the node's uplink IPv6
//! address as next hop, and IPv6 packets flow: core -> VM and VM -> VM
//! across nodes, 0 loss.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::lab::{agent, vmfabric};
use serde_json::Value;
use vmfabric_lab::scenarios::{self, FABRIC6, Topology};
use vmfabric_lab::worlds::Frr;
use vmfabric_lab::{Lab, Result};

const FRR_RR: &str = "172.16.0.2";
const BIRD_RR: &str = "172.16.0.4";

/// One path of a prefix at the core.
#[derive(Debug)]
struct Path {
    from: String,
    next_hop: String,
    community: String,
    valid: bool,
}

/// The core's BGP paths for `prefix`.
fn paths(lab: &Lab, core: &Frr, prefix: &str) -> Vec<Path> {
    let text = core
        .vtysh(lab, &format!("show bgp ipv6 unicast {prefix} json"))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    v["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Path {
            from: p["peer"]["peerId"].as_str().unwrap_or_default().into(),
            next_hop: p["nexthops"][0]["ip"].as_str().unwrap_or_default().into(),
            community: p["community"]["string"].as_str().unwrap_or_default().into(),
            valid: p["valid"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// `ping -6 -c COUNT` from `ns`: (sent, received).
fn ping6(lab: &Lab, ns: &str, target: &str, count: u32) -> (u32, u32) {
    let out = lab
        .exec(ns, "ping")
        .args([
            "-6",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
            target,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let num = |word: &str| -> u32 {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.starts_with(word))
            .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
            .unwrap_or(0)
    };
    (num("packets"), num("received"))
}

fn no_loss(lab: &Lab, ns: &str, target: &str, what: &str) {
    let (sent, got) = ping6(lab, ns, target, 20);
    assert!(sent == 20 && got == 20, "{what}: {got} of {sent} answered");
    eprintln!("{what}: {got}/{sent} answered, loss 0%");
}

/// Shut or restore the core's session with reflector `rr`.
fn core_session(lab: &Lab, core: &Frr, rr: &str, up: bool) {
    let cmd = format!("{}neighbor {rr} shutdown", if up { "no " } else { "" });
    let out = lab
        .exec(&core.ns, "vtysh")
        .arg("--vty_socket")
        .arg(&core.dir)
        .args([
            "-c",
            "configure terminal",
            "-c",
            "router bgp 65000",
            "-c",
            &cmd,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd}: {out:?}");
}

/// What the routers saw, for a world that did not come up.
fn diagnose(lab: &Lab) {
    for n in ["core", "rr1", "n1", "n2"] {
        let f = Frr {
            ns: lab.ns(n),
            dir: lab.dir.join("frr").join(lab.ns(n)),
        };
        for cmd in ["show bgp summary", "show bgp ipv6 unicast"] {
            eprintln!("--- {n}: {cmd}\n{}", f.vtysh(lab, cmd).unwrap_or_default());
        }
        eprintln!(
            "--- {n}: ip -6 route\n{}",
            lab.ip(&lab.ns(n), &["-6", "route"]).unwrap_or_default()
        );
    }
}

struct World {
    lab: Lab,
    t: Topology,
    core: Frr,
    /// VM -> (its IPv6 address, its node's uplink IPv6 address).
    vms: Vec<(String, String, String)>,
}

fn world() -> Result<World> {
    let mut lab = Lab::new("f6")?;
    let vf = vmfabric(&lab);
    let t = match scenarios::fabric_dual_stack(&mut lab, &vf) {
        Ok(t) => t,
        Err(e) => {
            diagnose(&lab);
            return Err(e);
        }
    };
    let core = t.frr("core").expect("core's FRR");
    let mut vms = Vec::new();
    for (vm, host) in [("vm1", "11"), ("vm2", "12"), ("vm3", "11")] {
        vms.push((vm.to_string(), vf.ipv6_of(vm)?, format!("{FABRIC6}{host}")));
    }
    Ok(World { lab, t, core, vms })
}

/// Every VM's /128 at the core from `reflectors` (each of them), valid,
/// with the community, next hop its node's uplink IPv6 address.
fn routes_at_core(w: &World, reflectors: &[&str]) -> usize {
    let mut n = 0;
    for (vm, ip, hop) in &w.vms {
        let prefix = format!("{ip}/128");
        let ok = w.lab.wait_for(Duration::from_secs(30), || {
            let p = paths(&w.lab, &w.core, &prefix);
            p.len() == reflectors.len() && reflectors.iter().all(|r| p.iter().any(|x| x.from == *r))
        });
        let p = paths(&w.lab, &w.core, &prefix);
        assert!(ok, "{vm} {prefix} at the core from {reflectors:?}: {p:?}");
        for x in &p {
            assert!(x.valid, "{vm}: {x:?}");
            assert_eq!(x.community, "65000:100", "{vm}: {x:?}");
            assert_eq!(&x.next_hop, hop, "{vm}: {x:?}");
        }
        n += 1;
    }
    eprintln!("{n} VM /128s at the core from {reflectors:?}, community 65000:100");
    n
}

#[test]
fn fabric_ipv6_reaches_the_core_and_carries_packets() {
    let w = world().expect("dual-stack fabric lab");
    let ns = |s: &str| w.t.ns(s).to_string();

    // Every VM got a /128 from the pool, never an anycast address.
    for (vm, ip, _) in &w.vms {
        assert!(ip.starts_with("2001:db8:77::"), "{vm}: {ip}");
        assert_ne!(ip, "2001:db8:77::", "{vm} got the subnet-router anycast");
    }
    // Through both reflectors at once.
    assert_eq!(routes_at_core(&w, &[FRR_RR, BIRD_RR]), 3);
    let kernel = w
        .lab
        .ip(&ns("core"), &["-6", "route", "show", "proto", "bgp"])
        .unwrap();
    let installed = kernel
        .lines()
        .filter(|l| l.starts_with("2001:db8:77::"))
        .count();
    assert_eq!(installed, 3, "core's kernel table:\n{kernel}");

    // The nodes report both sessions established, and nothing to change.
    for n in ["n1", "n2"] {
        let r = agent(&w.lab, &ns(n), n);
        assert_eq!(r["writes"], 0, "{r}");
        let s = r["sessions"].as_array().unwrap();
        assert!(s.iter().all(|s| s["state"] == "Established"), "{r}");
        for rr in [FRR_RR, BIRD_RR] {
            for family in ["ipv4", "ipv6"] {
                assert!(
                    s.iter().any(|s| s["peer"] == rr && s["family"] == family),
                    "{n}: no {family} session with {rr}: {r}"
                );
            }
        }
    }

    // Packets: core -> every VM, VM -> VM across nodes, IPv4 untouched.
    for (vm, ip, _) in &w.vms {
        no_loss(&w.lab, &ns("core"), ip, &format!("core -> {vm}"));
    }
    let ip = |vm: &str| w.vms.iter().find(|v| v.0 == vm).unwrap().1.clone();
    no_loss(&w.lab, &ns("vm1"), &ip("vm2"), "vm1 (n1) -> vm2 (n2)");
    no_loss(&w.lab, &ns("vm2"), &ip("vm3"), "vm2 (n2) -> vm3 (n1)");
    let v4 = vmfabric(&w.lab).ip_of("vm2").unwrap();
    assert!(w.lab.ping(&ns("core"), &v4), "core -> vm2 over IPv4");

    // Each reflector on its own: FRR, then BIRD.
    for (only, other) in [(FRR_RR, BIRD_RR), (BIRD_RR, FRR_RR)] {
        core_session(&w.lab, &w.core, other, false);
        assert_eq!(routes_at_core(&w, &[only]), 3, "through {only} alone");
        for (vm, ip, _) in &w.vms {
            no_loss(
                &w.lab,
                &ns("core"),
                ip,
                &format!("core -> {vm} via {only} alone"),
            );
        }
        core_session(&w.lab, &w.core, other, true);
        assert_eq!(routes_at_core(&w, &[FRR_RR, BIRD_RR]), 3);
    }
}
