//! Lab scenario 3, IP-fabric: two nodes, two route reflectors (FRR and
//! BIRD 2, both configured by `vmfabric cluster rr-config`), a core router
//! peered to both. Every VM's /32 reaches the core with the cluster's
//! community and the core pings every VM; VMs on different nodes reach each
//! other; migration moves the route; losing one reflector loses no route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::lab::{agent, ip_of, start_vm, vf, vmfabric};
use serde_json::Value;
use vmfabric_lab::worlds::Frr;
use vmfabric_lab::{Lab, scenarios};

/// The core's BGP view of `prefix`: (next hops, communities).
fn at_core(lab: &Lab, core: &Frr, prefix: &str) -> (Vec<String>, Vec<String>) {
    let text = core
        .vtysh(lab, &format!("show bgp ipv4 unicast {prefix} json"))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut hops = Vec::new();
    let mut communities = Vec::new();
    for p in v["paths"].as_array().into_iter().flatten() {
        for h in p["nexthops"].as_array().into_iter().flatten() {
            if let Some(ip) = h["ip"].as_str() {
                hops.push(ip.to_string());
            }
        }
        if let Some(c) = p["community"]["string"].as_str() {
            communities.push(c.to_string());
        }
    }
    (hops, communities)
}

/// Wait until `ns`'s kernel routes `prefix` via `hop`: the core's FIB may
/// lag its BGP table, and a route only just announced is pinged at once.
fn in_kernel(lab: &Lab, ns: &str, prefix: &str, hop: &str) -> bool {
    lab.wait_for(Duration::from_secs(30), || {
        lab.ip(ns, &["route", "show", prefix])
            .is_ok_and(|r| r.contains(hop))
    })
}

#[test]
fn fabric_announces_every_vm_and_survives_a_reflector() {
    let mut lab = Lab::new("fb").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::fabric(&mut lab, &vf_).unwrap();
    let core = t.frr("core").unwrap();
    let rr1 = t.frr("rr1").unwrap();
    let ns = |s: &str| t.ns(s).to_string();

    // Every VM's /32 at the core, with the community, via its node.
    for (vm, hop) in [
        ("vm1", "172.16.0.11"),
        ("vm2", "172.16.0.12"),
        ("vm3", "172.16.0.11"),
    ] {
        let prefix = format!("{}/32", ip_of(&lab, vm));
        let ok = lab.wait_for(Duration::from_secs(30), || {
            let (hops, _) = at_core(&lab, &core, &prefix);
            hops.len() >= 2 && hops.iter().all(|h| h == hop)
        });
        let (hops, communities) = at_core(&lab, &core, &prefix);
        assert!(
            ok,
            "{prefix} at the core through both reflectors via {hop}: {hops:?}"
        );
        assert!(
            communities.iter().all(|c| c == "65000:100"),
            "{communities:?}"
        );
        assert!(lab.ping(&ns("core"), &ip_of(&lab, vm)), "core -> {vm}");
    }
    // The node reports its sessions established.
    let r = agent(&lab, &ns("n1"), "n1");
    assert_eq!(r["writes"], 0, "{r}");
    let sessions = r["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{r}");
    assert!(sessions.iter().all(|s| s["state"] == "Established"), "{r}");
    // VMs on different nodes reach each other.
    assert!(
        lab.ping(&ns("vm1"), &ip_of(&lab, "vm2")),
        "vm1 (n1) -> vm2 (n2)"
    );
    assert!(
        lab.ping(&ns("vm2"), &ip_of(&lab, "vm3")),
        "vm2 (n2) -> vm3 (n1)"
    );

    // Migration moves the route.
    let vm1_ip = ip_of(&lab, "vm1");
    vf(&lab, &["vm", "migrate", "vm1", "--to", "n2"]);
    agent(&lab, &ns("n1"), "n1");
    agent(&lab, &ns("n2"), "n2");
    start_vm(&mut lab, &ns("n2"), "vm1");
    // Announced once the VM runs there (its link has carrier).
    agent(&lab, &ns("n2"), "n2");
    let moved = lab.wait_for(Duration::from_secs(30), || {
        let (hops, _) = at_core(&lab, &core, &format!("{vm1_ip}/32"));
        !hops.is_empty() && hops.iter().all(|h| h == "172.16.0.12")
    });
    assert!(moved, "vm1's route follows it to n2");
    assert!(
        in_kernel(&lab, &ns("core"), &format!("{vm1_ip}/32"), "172.16.0.12"),
        "vm1's route via n2 in the core's kernel"
    );
    assert!(lab.ping(&ns("core"), &vm1_ip), "core -> vm1 on n2");
    assert!(lab.ping(&ns("vm3"), &vm1_ip), "vm3 (n1) -> vm1 (n2)");

    // One reflector goes: the core keeps every route through the other.
    let rr1_pid: u32 = std::fs::read_to_string(rr1.dir.join("bgpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::process::Command::new("kill")
        .arg(rr1_pid.to_string())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for vm in ["vm1", "vm2", "vm3"] {
        let (hops, _) = at_core(&lab, &core, &format!("{}/32", ip_of(&lab, vm)));
        assert!(!hops.is_empty(), "{vm} lost at the core after rr1 stopped");
        assert!(
            lab.ping(&ns("core"), &ip_of(&lab, vm)),
            "core -> {vm} without rr1"
        );
    }
}

/// The peers of the node's established sessions, from the agent's report.
fn established(r: &Value) -> Vec<String> {
    let mut v: Vec<String> = r["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "Established")
        .filter(|s| s["family"].as_str().is_none_or(|f| f.starts_with("ipv4")))
        .filter_map(|s| s["peer"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn route_reflectors_change_live_and_the_core_keeps_every_route() {
    let mut lab = Lab::new("rrc").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::fabric(&mut lab, &vf_).unwrap();
    let core = t.frr("core").unwrap();
    let ns = |s: &str| t.ns(s).to_string();
    let vms = ["vm1", "vm2", "vm3"];
    let all_at_core = |lab: &Lab, paths: usize| {
        vms.iter().all(|vm| {
            let (hops, _) = at_core(lab, &core, &format!("{}/32", ip_of(lab, vm)));
            hops.len() == paths
        })
    };
    assert!(
        lab.wait_for(Duration::from_secs(30), || all_at_core(&lab, 2)),
        "every VM at the core through both reflectors"
    );

    // rr1 leaves the cluster: the nodes drop its session, keep rr2's, and
    // the core keeps every route (through rr2 alone).
    let c = vf(
        &lab,
        &[
            "cluster",
            "set",
            "fab",
            "--remove-route-reflector",
            "172.16.0.2",
        ],
    );
    assert_eq!(
        c["fabric"]["route_reflectors"].as_array().map(Vec::len),
        Some(1),
        "{c}"
    );
    for n in ["n1", "n2"] {
        agent(&lab, &ns(n), n);
    }
    let sessions_move = lab.wait_for(Duration::from_secs(30), || {
        ["n1", "n2"].iter().all(|n| {
            let r = agent(&lab, &ns(n), n);
            established(&r) == ["172.16.0.4"]
        })
    });
    assert!(sessions_move, "{}", agent(&lab, &ns("n1"), "n1"));
    assert!(
        lab.wait_for(Duration::from_secs(30), || all_at_core(&lab, 1)),
        "every VM at the core through rr2 alone"
    );
    for vm in vms {
        assert!(
            lab.ping(&ns("core"), &ip_of(&lab, vm)),
            "core -> {vm} via rr2"
        );
    }

    // rr1 comes back with a new community: both sessions, both paths, the
    // new community on every route.
    vf(
        &lab,
        &[
            "cluster",
            "set",
            "fab",
            "--add-route-reflector",
            "172.16.0.2:65000",
            "--bgp-community",
            "65000:200",
        ],
    );
    for n in ["n1", "n2"] {
        agent(&lab, &ns(n), n);
    }
    let back = lab.wait_for(Duration::from_secs(30), || {
        all_at_core(&lab, 2)
            && vms.iter().all(|vm| {
                let (_, cs) = at_core(&lab, &core, &format!("{}/32", ip_of(&lab, vm)));
                !cs.is_empty() && cs.iter().all(|c| c == "65000:200")
            })
    });
    assert!(back, "both reflectors and the new community at the core");
    for vm in vms {
        assert!(lab.ping(&ns("core"), &ip_of(&lab, vm)), "core -> {vm}");
    }

    // An extra /32 on running vm2, and a second NIC on running vm3: each
    // new address is announced and answers the core.
    let v = vf(&lab, &["vm", "add-address", "vm2"]);
    let extra = v["nics"][0]["addresses"][1]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    agent(&lab, &ns("n2"), "n2");
    lab.ip(
        &ns("vm2"),
        &["addr", "add", &format!("{extra}/32"), "dev", "eth0"],
    )
    .unwrap();
    let v = vf(&lab, &["vm", "add-nic", "vm3"]);
    let second = v["nics"][1]["addresses"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = agent(&lab, &ns("n1"), "n1");
    assert!(r["changes"].to_string().contains("vm3_net1"), "{r}");
    let nic = vf_.nic_at("vm3", 1).unwrap();
    vmfabric_lab::guest::attach(&mut lab, &ns("n1"), "vm3", &nic).unwrap();
    // The NIC runs now: its route is announced from this round on.
    agent(&lab, &ns("n1"), "n1");
    for (ip, hop) in [(&extra, "172.16.0.12"), (&second, "172.16.0.11")] {
        let prefix = format!("{ip}/32");
        let announced = lab.wait_for(Duration::from_secs(30), || {
            let (hops, _) = at_core(&lab, &core, &prefix);
            !hops.is_empty() && hops.iter().all(|h| h == hop)
        });
        assert!(announced, "{prefix} at the core via {hop}");
        assert!(
            in_kernel(&lab, &ns("core"), &prefix, hop),
            "{prefix} via {hop} in the core's kernel"
        );
        assert!(lab.ping(&ns("core"), ip), "core -> {ip}");
    }
    assert!(lab.ping(&ns("vm1"), &second), "vm1 -> vm3's second NIC");
}
